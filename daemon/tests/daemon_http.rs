//! The real `fdmd` binary over HTTP: orders, receipts, enrolment through fdmctl, limits,
//! export, metrics, configuration errors, systemd notifications and shutdown.
#![allow(clippy::unwrap_used)]

mod support;

use fdmd::journal::export::verify_export;
use fdmd::signer::verify_ed25519;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use support::{Daemon, FDMD, fdmctl, order};

fn signer_key(d: &Daemon) -> Vec<u8> {
    let (status, signer) = d.request(Method::GET, "/v1/signer", None, None);
    assert_eq!(status, StatusCode::OK);
    assert_eq!(signer["algorithm"], "ed25519");
    assert_eq!(signer["certified"], false);
    hex::decode(signer["public_key"].as_str().unwrap()).unwrap()
}

fn assert_signed_by(receipt: &Value, key: &[u8]) {
    let digest = hex::decode(receipt["signed_digest"].as_str().unwrap()).unwrap();
    let sig = hex::decode(receipt["signature"].as_str().unwrap()).unwrap();
    assert!(
        verify_ed25519(key, &digest, &sig),
        "receipt signature does not verify: {receipt}"
    );
}

#[test]
fn dev_mode_signs_orders_with_the_printed_credentials() {
    let mut d = Daemon::start_dev();
    let creds: Value =
        serde_json::from_slice(&std::fs::read(d.data_dir().join("dev-credentials.json")).unwrap())
            .unwrap();
    assert_eq!(creds["id"], "dev-register");
    let token = creds["http_token"].as_str().unwrap();
    let (status, r) = d.request(
        Method::POST,
        "/v1/registers/dev-register/orders",
        Some(token),
        Some(order(
            "r-1",
            &[("Cola", 1, "2.20", "A"), ("Snack", 1, "11.90", "B")],
        )),
    );
    assert_eq!(status, StatusCode::CREATED, "{r}");
    assert_eq!(
        (
            r["label"].as_str(),
            r["total"].as_str(),
            r["ticket_number"].as_str()
        ),
        (Some("NS"), Some("14.10"), Some("000001"))
    );
    assert!(r["plu_hash"].as_str().unwrap().ends_with("797bc46f"));
    assert_signed_by(&r, &signer_key(&d));
    let (status, again) = d.request(
        Method::GET,
        "/v1/receipts/dev-register/r-1",
        Some(token),
        None,
    );
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["signature"], r["signature"]);
    let (status, _) = d.request(
        Method::GET,
        "/v1/receipts/dev-register/nope",
        Some(token),
        None,
    );
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(d.stop().success());
    // The journal verifies offline, and ends with the stop record.
    let (code, out) = fdmctl(&["verify", "--data-dir", d.data_dir().to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn production_mode_enforces_tokens_limits_and_revocation() {
    let mut d = Daemon::start_with_config("[http]\nmax_body_bytes = 4096\n", &[]);
    let cfg = d.config_file.clone().unwrap();
    let cfg = cfg.to_str().unwrap();
    let (code, out) = fdmctl(&["register", "add", "till-1", "--json", "--config", cfg]);
    assert_eq!(code, 0, "{out}");
    let creds: Value = serde_json::from_str(&out[..out.rfind('}').unwrap() + 1]).unwrap();
    let token = creds["http_token"].as_str().unwrap().to_owned();
    let path = "/v1/registers/till-1/orders";
    // No token, wrong token, another register's token: refused, nothing journaled.
    assert_eq!(
        d.request(
            Method::POST,
            path,
            None,
            Some(order("a", &[("x", 1, "1.00", "A")]))
        )
        .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        d.request(
            Method::POST,
            path,
            Some("wrong"),
            Some(order("a", &[("x", 1, "1.00", "A")]))
        )
        .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        d.request(
            Method::POST,
            "/v1/registers/till-2/orders",
            Some(&token),
            Some(order("a", &[("x", 1, "1.00", "A")]))
        )
        .0,
        StatusCode::UNAUTHORIZED
    );
    // Accepted, resent, reused id.
    let (status, first) = d.request(
        Method::POST,
        path,
        Some(&token),
        Some(order("a", &[("x", 1, "1.00", "A")])),
    );
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let (status, resent) = d.request(
        Method::POST,
        path,
        Some(&token),
        Some(order("a", &[("x", 1, "1.00", "A")])),
    );
    assert_eq!(
        (status, resent["code"].as_u64()),
        (StatusCode::OK, Some(102))
    );
    assert_eq!(resent["signature"], first["signature"]);
    let (status, reused) = d.request(
        Method::POST,
        path,
        Some(&token),
        Some(order("a", &[("x", 2, "1.00", "A")])),
    );
    assert_eq!(
        (status, reused["field"].as_str()),
        (StatusCode::CONFLICT, Some("request_id"))
    );
    // Bad input.
    let (status, bad) = d.request(Method::POST, path, Some(&token), Some(b"not json".to_vec()));
    assert_eq!(
        (status, bad["code"].as_u64()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some(207))
    );
    let (status, _) = d.request(Method::POST, path, Some(&token), Some(vec![b' '; 5000]));
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    // A declared length over the limit is refused at once, before the body is sent.
    {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(d.http).unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\nContent-Length: 100000000\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).unwrap();
        let mut answer = [0u8; 64];
        let read = stream
            .read(&mut answer)
            .expect("413 without waiting for the body");
        assert!(
            answer[..read].starts_with(b"HTTP/1.1 413"),
            "{}",
            String::from_utf8_lossy(&answer[..read])
        );
    }
    assert_eq!(
        d.request(Method::GET, path, Some(&token), None).0,
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(
        d.request(Method::GET, "/v1/nothing", None, None).0,
        StatusCode::NOT_FOUND
    );
    // Listing and revoking through fdmctl.
    let (code, out) = fdmctl(&["register", "list", "--config", cfg]);
    assert!(
        code == 0 && out.contains("till-1") && out.contains("active"),
        "{out}"
    );
    let (code, out) = fdmctl(&["register", "revoke", "till-1", "--config", cfg]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        d.request(
            Method::POST,
            path,
            Some(&token),
            Some(order("b", &[("x", 1, "1.00", "A")]))
        )
        .0,
        StatusCode::UNAUTHORIZED
    );
    // Export over HTTP needs the admin token and verifies with the signer's key.
    assert_eq!(
        d.request(Method::GET, "/v1/journal/export", Some(&token), None)
            .0,
        StatusCode::UNAUTHORIZED
    );
    let admin = d.admin_token();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (status, export) = rt
        .block_on(fdmd::client::request(
            d.http,
            Method::GET,
            "/v1/journal/export?from_seq=1",
            Some(&admin),
            None,
            std::time::Duration::from_secs(10),
        ))
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    let (header, summary) = verify_export(&export[..], vec![signer_key(&d)]).unwrap();
    assert_eq!(header.first_seq, 1);
    assert_eq!(summary.fiscal_events, 1);
    let text = String::from_utf8_lossy(&export);
    assert_eq!(
        text.matches("device_change").count(),
        2,
        "enrolment and revocation are journaled"
    );
    let (status, metrics) = d.request(Method::GET, "/metrics", None, None);
    assert_eq!(status, StatusCode::OK);
    assert!(metrics.as_str().unwrap().contains("fdmd_orders_total"));
    let (code, out) = fdmctl(&["status", "--config", cfg]);
    assert!(out.contains("\"journal\""), "{code} {out}");
    assert!(d.stop().success());
    let (code, out) = fdmctl(&["status", "--config", cfg]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("not answering"), "{out}");
}

#[test]
fn a_bad_configuration_exits_78_and_names_every_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "[numbering]\ndigits = 3\n[fdm]\nid = \"short\"\ndata_dir = \"/tmp/x\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(FDMD)
        .args(["check-config", "--config", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("fdm.id") && err.contains("numbering.digits"),
        "{err}"
    );
    let (code, out) = fdmctl(&["check-config", "--config", file.to_str().unwrap()]);
    assert_eq!(code, 78, "{out}");
    let out = std::process::Command::new(FDMD)
        .args(["--config", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(78),
        "running with a bad configuration exits 78 too"
    );
    let good = support::write_config(dir.path(), 1, 2, "");
    let out = std::process::Command::new(FDMD)
        .args(["check-config", "--config", good.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_config_warns_when_the_box_is_not_on_belgian_time() {
    let dir = tempfile::tempdir().unwrap();
    let good = support::write_config(dir.path(), 1, 2, "");
    let check = |tz: &str| {
        let out = std::process::Command::new(FDMD)
            .env("TZ", tz)
            .args(["check-config", "--config", good.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "a warning is not an error");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let utc = check("Etc/UTC");
    assert!(
        utc.contains("time zone is Etc/UTC") && utc.contains("timedatectl set-timezone"),
        "{utc}"
    );
    let brussels = check("Europe/Brussels");
    assert!(!brussels.contains("time zone"), "{brussels}");
}

#[test]
fn tells_systemd_ready_watchdog_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let mut d = Daemon::start_with_config(
        "",
        &[
            ("NOTIFY_SOCKET", sock_path.display().to_string()),
            ("WATCHDOG_USEC", "400000".into()),
        ],
    );
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !(seen.contains("READY=1") && seen.contains("WATCHDOG=1"))
        && std::time::Instant::now() < deadline
    {
        let n = sock.recv(&mut buf).unwrap();
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        seen.push('\n');
    }
    assert!(
        seen.contains("READY=1") && seen.contains("WATCHDOG=1"),
        "{seen}"
    );
    assert!(d.stop().success());
    let mut after = String::new();
    while let Ok(n) = sock.recv(&mut buf) {
        after.push_str(&String::from_utf8_lossy(&buf[..n]));
        if after.contains("STOPPING=1") {
            break;
        }
    }
    assert!(after.contains("STOPPING=1"), "{after}");
}

#[test]
fn the_openapi_document_matches_the_routes() {
    let doc: Value = serde_json::from_slice(
        &std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json")).unwrap(),
    )
    .unwrap();
    let mut documented = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            documented.push((method.to_uppercase(), path.clone()));
        }
    }
    documented.sort();
    let mut served: Vec<(String, String)> = fdmd::http::ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    served.sort();
    assert_eq!(
        documented, served,
        "docs/openapi.json and the router disagree"
    );
    // Every documented route is answered by the running daemon (never "no route").
    let d = Daemon::start_with_config("", &[]);
    let admin = d.admin_token();
    for (method, template) in &served {
        let path = template
            .replace("{register}", "r1")
            .replace("{request_id}", "x")
            .replace("{id}", "nobody");
        let method: Method = method.parse().unwrap();
        let body = (method == Method::POST).then(|| b"{}".to_vec());
        let (status, answer) = d.request(method.clone(), &path, Some(&admin), body);
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        if status == StatusCode::NOT_FOUND {
            assert!(
                !answer.to_string().contains("no route"),
                "{method} {path} is not routed: {answer}"
            );
        }
    }
}

/// Datagrams on a notify socket until `until` has been seen in one of them (bounded: 20 s).
fn notifications_until(sock: &std::os::unix::net::UnixDatagram, until: &str) -> String {
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !seen.contains(until) && std::time::Instant::now() < deadline {
        match sock.recv(&mut buf) {
            Ok(n) => {
                seen.push_str(&String::from_utf8_lossy(&buf[..n]));
                seen.push('\n');
            }
            Err(_) => break,
        }
    }
    seen
}

#[test]
fn ready_does_not_wait_for_a_card_signer_without_a_reader() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let mut d = Daemon::start_with_config(
        "[signer]\nbackend = \"pcsc\"\n[signer.pcsc]\nreader = \"no such reader in this test\"\n",
        &[("NOTIFY_SOCKET", sock_path.display().to_string())],
    );
    let seen = notifications_until(&sock, "READY=1");
    assert!(seen.contains("READY=1"), "no READY=1: {seen}");
    assert!(seen.contains("STATUS=serving"), "{seen}");
    assert!(seen.contains("signer not ready"), "{seen}");
    // Serving: the status says why orders cannot be signed yet.
    let admin = d.admin_token();
    let (status, doc) = d.request(Method::GET, "/v1/status", Some(&admin), None);
    assert_eq!(status, StatusCode::OK, "{doc}");
    assert!(doc["signer"]["error"].is_string(), "{doc}");
    assert!(d.stop().success());
}

#[test]
fn a_clean_stop_leaves_every_record_in_journal_sqlite() {
    let mut d = Daemon::start_dev();
    let token = d.dev_register_token();
    for i in 0..5 {
        let (status, r) = d.request(
            Method::POST,
            "/v1/registers/dev-register/orders",
            Some(&token),
            Some(order(&format!("r-{i}"), &[("Cola", 1, "2.20", "A")])),
        );
        assert_eq!(status, StatusCode::CREATED, "{r}");
    }
    assert!(d.stop().success());
    let journal = d.data_dir().join("journal.sqlite");
    let wal = d.data_dir().join("journal.sqlite-wal");
    let wal_len = std::fs::metadata(&wal).map_or(0, |m| m.len());
    assert_eq!(wal_len, 0, "journal.sqlite-wal still holds {wal_len} bytes");
    // journal.sqlite copied alone is the whole journal: five orders and the stop record.
    let copy = tempfile::tempdir().unwrap();
    std::fs::copy(&journal, copy.path().join("journal.sqlite")).unwrap();
    let conn = fdmd::journal::query::open_read_only(&copy.path().join("journal.sqlite")).unwrap();
    let stops = fdmd::journal::query::records_of_kind(
        &conn,
        &[fdmd::journal::record::RecordKind::DaemonStop],
    )
    .unwrap();
    assert_eq!(stops.len(), 1);
    let orders = fdmd::journal::query::records_of_kind(
        &conn,
        &[fdmd::journal::record::RecordKind::FiscalEvent],
    )
    .unwrap();
    assert_eq!(orders.len(), 5);
}

/// What an order is refused for over HTTP, with which status (issue 17 point 11): a missing or
/// malformed request id is invalid data (422), only a reused one is a conflict (409); an
/// empty sale and bidirectional text controls are refused; the admin token signs no orders.
#[test]
fn orders_are_refused_with_the_status_that_names_the_fault() {
    let d = Daemon::start_dev();
    let creds: Value =
        serde_json::from_slice(&std::fs::read(d.data_dir().join("dev-credentials.json")).unwrap())
            .unwrap();
    let token = creds["http_token"].as_str().unwrap().to_owned();
    let post = |token: &str, body: Value| {
        d.request(
            Method::POST,
            "/v1/registers/dev-register/orders",
            Some(token),
            Some(serde_json::to_vec(&body).unwrap()),
        )
    };
    let line = json!({"description": "Cola", "quantity": 1, "unit_price": "2.20", "vat": "A"});
    let op = "85073003328";
    let cases = [
        (
            json!({"operator": op, "event_type": "normal", "lines": [line]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "request_id",
        ),
        (
            json!({"request_id": "bad id!", "operator": op, "event_type": "normal", "lines": [line]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "request_id",
        ),
        (
            json!({"request_id": "e-1", "operator": op, "event_type": "normal", "lines": []}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "lines",
        ),
        (
            json!({"request_id": "b-1", "operator": op, "event_type": "normal",
            "lines": [{"description": "Cola\u{202E}ecnarf", "quantity": 1, "unit_price": "2.20", "vat": "A"}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "lines[0].description",
        ),
    ];
    for (body, status, field) in cases {
        let (code, r) = post(&token, body);
        assert_eq!((code, r["field"].as_str()), (status, Some(field)), "{r}");
    }
    let sale =
        json!({"request_id": "s-1", "operator": op, "event_type": "normal", "lines": [line]});
    let (code, r) = post(&token, sale);
    assert_eq!(code, StatusCode::CREATED, "{r}");
    let other = json!({"request_id": "s-1", "operator": op, "event_type": "normal",
        "lines": [{"description": "Wijn", "quantity": 1, "unit_price": "6.50", "vat": "A"}]});
    let (code, r) = post(&token, other);
    assert_eq!(code, StatusCode::CONFLICT, "a reused request id: {r}");
    let admin = d.admin_token();
    let sale =
        json!({"request_id": "s-2", "operator": op, "event_type": "normal", "lines": [line]});
    let (code, r) = post(&admin, sale);
    assert_eq!(
        code,
        StatusCode::FORBIDDEN,
        "the admin token signs no orders: {r}"
    );
}
