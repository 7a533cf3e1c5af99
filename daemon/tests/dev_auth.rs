//! Development mode authenticates HTTP like production (issue 15, point 10): without a token,
//! with a wrong one, for a register never enrolled or revoked, an order is refused; the status
//! document tells anyone on the LAN only whether fdmd is ready, and the rest to the admin and
//! enrolled registers.
#![allow(clippy::unwrap_used)]

mod support;

use hyper::{Method, StatusCode};
use serde_json::Value;
use support::{Daemon, fdmctl, order};

fn dev_token(d: &Daemon) -> String {
    let creds: Value =
        serde_json::from_slice(&std::fs::read(d.data_dir().join("dev-credentials.json")).unwrap())
            .unwrap();
    creds["http_token"].as_str().unwrap().to_owned()
}

#[test]
fn dev_mode_checks_http_tokens_as_production_does() {
    let d = Daemon::start_dev();
    let token = dev_token(&d);
    let post = |register: &str, token: Option<&str>, id: &str| {
        d.request(
            Method::POST,
            &format!("/v1/registers/{register}/orders"),
            token,
            Some(order(id, &[("Cola", 1, "2.20", "A")])),
        )
    };
    assert_eq!(
        post("dev-register", None, "r-1").0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        post("dev-register", Some("not-a-token"), "r-1").0,
        StatusCode::UNAUTHORIZED
    );
    // The dev register's token is for the dev register only.
    assert_eq!(
        post("never-enrolled", Some(&token), "r-1").0,
        StatusCode::UNAUTHORIZED
    );
    let (code, r) = post("dev-register", Some(&token), "r-1");
    assert_eq!(code, StatusCode::CREATED, "{r}");

    // A revoked register is refused at once.
    let (data, http) = (d.data_dir(), d.http.to_string());
    let args = ["--data-dir", data.to_str().unwrap(), "--http", &http];
    let (code, out) = fdmctl(&[&["register", "add", "till-9", "--json"][..], &args].concat());
    assert_eq!(code, 0, "{out}");
    let till: Value = serde_json::from_str(out.trim()).unwrap();
    let till_token = till["http_token"].as_str().unwrap().to_owned();
    assert_eq!(
        post("till-9", Some(&till_token), "t-1").0,
        StatusCode::CREATED
    );
    let (code, out) = fdmctl(&[&["register", "revoke", "till-9"][..], &args].concat());
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        post("till-9", Some(&till_token), "t-2").0,
        StatusCode::UNAUTHORIZED
    );

    // The restaurant's state and receipts are not open either.
    for path in ["/v1/tables", "/v1/registers/dev-register/tables"] {
        assert_eq!(
            d.request(Method::GET, path, None, None).0,
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
    }
    assert_eq!(
        d.request(Method::GET, "/v1/receipts/dev-register/r-1", None, None)
            .0,
        StatusCode::UNAUTHORIZED
    );
}

#[test]
fn the_status_tells_the_lan_only_whether_fdmd_is_ready() {
    let d = Daemon::start_dev();
    let (code, public) = d.request(Method::GET, "/v1/status", None, None);
    assert_eq!(code, StatusCode::OK);
    let mut keys: Vec<&str> = public
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["problems", "status", "version"], "{public}");
    assert_eq!(public["status"], "ready");
    // With a wrong token: the same public view.
    let (_, wrong) = d.request(Method::GET, "/v1/status", Some("nope"), None);
    assert_eq!(wrong, public);
    // An enrolled register and the admin see the whole document.
    for token in [dev_token(&d), d.admin_token()] {
        let (code, full) = d.request(Method::GET, "/v1/status", Some(&token), None);
        assert_eq!(code, StatusCode::OK);
        assert!(
            full["open_tables"].is_array() && full["clocked_in"].is_array(),
            "{full}"
        );
        assert!(
            full["signer"].is_object() && full["journal"].is_object(),
            "{full}"
        );
        // Whether the kernel's clock is synchronised (adjtimex; issue 15 point 4).
        assert!(full["clock"]["synchronised"].is_boolean(), "{full}");
    }
    assert!(public.get("clock").is_none(), "{public}");
}
