//! The installer's and owner's web page in a real headless Chromium (WebDriver), against the
//! real `fdmd` binary: set-up code then password, status, CSRF forgery refused, a register
//! enrolled in the page whose shown credentials a real MQTT client uses, X and Z reports, an
//! export downloaded and verified with `fdmctl verify`, sign-out and the old session refused;
//! and the card's PIN given in the page to a virtual card. Screenshots go to
//! `$CARGO_TARGET_DIR/web-screenshots/`. See `web_common` for the browser.
#![allow(clippy::unwrap_used)]

mod support;
mod vsc_common;
mod web_common;

use fantoccini::Locator;
use hyper::Method;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::Value;
use std::time::{Duration, Instant};
use support::{Daemon, fdmctl, order};
use web_common::{Browser, SOON, browser_binaries, header, raw_http};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The set-up code fdmd printed in its log.
fn setup_code(d: &Daemon) -> String {
    let deadline = Instant::now() + SOON;
    loop {
        let log = d.log();
        if let Some(at) = log.find("set-up code ") {
            let code: String = log[at + "set-up code ".len()..].chars().take(14).collect();
            return code;
        }
        assert!(
            Instant::now() < deadline,
            "no set-up code in the log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `GET path` with `token`, on a thread of its own (callable from async code).
fn blocking_request(d: &Daemon, path: &str, token: Option<&str>) -> (hyper::StatusCode, Value) {
    std::thread::scope(|s| {
        s.spawn(|| d.request(Method::GET, path, token, None))
            .join()
            .unwrap()
    })
}

/// Signs in through the page's form with `secret`.
async fn sign_in(b: &Browser, secret: &str) {
    b.goto("/").await;
    b.wait_shown("login").await;
    b.type_into("secret", secret).await;
    b.click("#login-form button[type=submit]").await;
}

/// A POST made by script in the page with the session cookie: returns the status.
async fn page_post(b: &Browser, path: &str, csrf: Option<&str>) -> u64 {
    let header = csrf.map_or(String::new(), |c| format!(", 'X-CSRF-Token': '{c}'"));
    let script = format!(
        "const done = arguments[arguments.length - 1];
         fetch('{path}', {{method: 'POST', credentials: 'same-origin',
             headers: {{'Content-Type': 'application/json'{header}}},
             body: JSON.stringify({{id: 'forged'}})}})
           .then(r => done(r.status), e => done(String(e)));"
    );
    b.run_async(&script).await.as_u64().unwrap()
}

/// Sends one order over MQTT with the credentials the page showed; returns the receipt.
async fn order_over_mqtt(d: &Daemon, creds: &Value) -> Value {
    let id = creds["id"].as_str().unwrap();
    let mut options = MqttOptions::new(format!("web-{id}"), "127.0.0.1", d.mqtt.port());
    options.set_credentials(
        creds["mqtt_username"].as_str().unwrap(),
        creds["mqtt_password"].as_str().unwrap(),
    );
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(options, 16);
    let receipts = format!("fdm/v1/registers/{id}/receipts");
    client
        .subscribe(receipts.clone(), QoS::AtLeastOnce)
        .await
        .unwrap();
    let mut published = false;
    let deadline = tokio::time::Instant::now() + SOON;
    loop {
        let event = tokio::time::timeout_at(deadline, eventloop.poll())
            .await
            .expect("no receipt over MQTT in time")
            .expect("MQTT connection with the page's credentials");
        match event {
            Event::Incoming(Packet::SubAck(_)) if !published => {
                published = true;
                client
                    .publish(
                        format!("fdm/v1/registers/{id}/orders"),
                        QoS::AtLeastOnce,
                        false,
                        order("web-order-1", &[("Soep", 1, "6.50", "B")]),
                    )
                    .await
                    .unwrap();
            }
            Event::Incoming(Packet::Publish(p)) if p.topic == receipts => {
                return serde_json::from_slice(&p.payload).unwrap();
            }
            _ => {}
        }
    }
}

#[test]
fn sign_in_enrol_reports_export_csrf_and_sign_out_in_a_browser() {
    let Some((chromium, chromedriver)) = browser_binaries() else {
        return;
    };
    let mut d = Daemon::start_dev_with_config("");
    let base = format!("http://{}", d.http);
    let code = setup_code(&d);
    let password = "een lang wachtwoord 42";
    runtime().block_on(async {
        let b = Browser::start(&chromium, &chromedriver, &base).await;

        // The page and its headers: strict CSP, nothing from outside the box.
        let (status, headers, html) = raw_http(d.http, "GET", "/ui/", &[], "");
        assert_eq!(status, 200);
        let csp = header(&headers, "content-security-policy").unwrap();
        assert!(
            csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
            "{csp}"
        );
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "{html}"
        );
        let (status, headers, _) = raw_http(d.http, "GET", "/ui/api/session", &[], "");
        assert_eq!(status, 401);
        assert_eq!(header(&headers, "cache-control"), Some("no-store"));

        // Set-up code, then the owner's password.
        sign_in(&b, "WRONG-CODE-0000").await;
        b.wait_text("notice", |t| !t.is_empty()).await;
        b.screenshot("01-sign-in").await;
        sign_in(&b, &code).await;
        b.wait_shown("setpw").await;
        b.type_into("newpw", password).await;
        b.click("#setpw-form button[type=submit]").await;
        b.wait_shown("status").await;
        b.wait_text("overall", |t| t == "ready" || t == "degraded")
            .await;
        b.screenshot("02-status").await;

        // The session cookie is HttpOnly and SameSite=Strict; scripts cannot read it.
        let cookie = b.client.get_named_cookie("fdmd_session").await.unwrap();
        assert_eq!(cookie.http_only(), Some(true));
        assert_eq!(format!("{:?}", cookie.same_site()), "Some(Strict)");
        let session = cookie.value().to_owned();
        let seen = b
            .client
            .execute("return document.cookie;", vec![])
            .await
            .unwrap();
        assert!(
            !seen.as_str().unwrap_or("").contains("fdmd_session"),
            "{seen}"
        );

        // A change without the session's CSRF token, or with a forged one, is refused, in the
        // browser and from outside it.
        assert_eq!(page_post(&b, "/v1/admin/registers", None).await, 403);
        assert_eq!(
            page_post(&b, "/v1/admin/registers", Some("00ff")).await,
            403
        );
        let cookie_header = format!("fdmd_session={session}");
        let (status, _, body) = raw_http(
            d.http,
            "POST",
            "/v1/admin/registers",
            &[
                ("Cookie", &cookie_header),
                ("Content-Type", "application/json"),
            ],
            r#"{"id":"forged"}"#,
        );
        assert_eq!(status, 403, "{body}");
        let (status, _, body) = raw_http(
            d.http,
            "POST",
            "/ui/api/logout",
            &[("Cookie", &cookie_header), ("X-CSRF-Token", "forged")],
            "{}",
        );
        assert_eq!(status, 403, "{body}");
        let (_, list) = blocking_request(&d, "/v1/admin/registers", Some(&d.admin_token()));
        assert!(!list.to_string().contains("forged"), "{list}");

        // Enrol a register in the page; its shown credentials work with a real MQTT client.
        b.goto("/ui/#registers").await;
        b.wait_shown("registers").await;
        b.type_into("enrol-id", "till-1").await;
        b.click("#enrol-form button[type=submit]").await;
        b.wait_shown("creds").await;
        let creds: Value =
            serde_json::from_str(&b.wait_text("creds-text", |t| t.contains("till-1")).await)
                .unwrap();
        let qr = b
            .client
            .find(Locator::Id("creds-qr"))
            .await
            .unwrap()
            .attr("src")
            .await
            .unwrap()
            .unwrap_or_default();
        assert!(qr.starts_with("data:image/svg+xml,"), "{qr}");
        b.wait_text("enrolled", |t| t.contains("till-1")).await;
        b.screenshot("03-registers").await;
        let receipt = order_over_mqtt(&d, &creds).await;
        assert_eq!(receipt["status"], "signed", "{receipt}");
        // The HTTP token shown works too.
        let (status, _) = blocking_request(
            &d,
            "/v1/registers/till-1/tables",
            creds["http_token"].as_str(),
        );
        assert_eq!(status, hyper::StatusCode::OK);

        // X then Z report, printable text in the page.
        b.goto("/ui/#reports").await;
        b.wait_shown("reports").await;
        // Without a register the refusal is shown and explained.
        b.click("#make-report").await;
        b.wait_text("report-out", |t| t.starts_with("Refused: register"))
            .await;
        b.type_into("report-register", "till-1").await;
        b.click("#make-report").await;
        let x = b
            .wait_text("report-out", |t| {
                !t.is_empty() && !t.starts_with("Refused: register")
            })
            .await;
        assert!(!x.starts_with("Refused"), "{x}");
        b.click("#report-kind option[value=z]").await;
        b.click("#make-report").await;
        let z = b.wait_text("report-out", |t| t != x && !t.is_empty()).await;
        assert!(!z.starts_with("Refused"), "{z}");
        b.screenshot("04-reports").await;

        // Download the export as a person does (the link), then verify it.
        b.click("#export-link").await;
        let deadline = Instant::now() + SOON;
        let file = loop {
            let done = std::fs::read_dir(&b.downloads)
                .unwrap()
                .filter_map(Result::ok)
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|e| e == "jsonl"));
            if let Some(f) = done {
                break f;
            }
            assert!(Instant::now() < deadline, "the export was not downloaded");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let (rc, out) = fdmctl(&["verify", file.to_str().unwrap()]);
        assert_eq!(rc, 0, "{out}");

        // The device registry: link the register to its production number, see its history,
        // deactivate it with a reason (its credentials stop working).
        b.goto("/ui/#registers").await;
        b.wait_shown("registers").await;
        b.type_into("dev-id", "till-1").await;
        b.type_into("dev-production", "BODO0010000001").await;
        b.click("#dev-link").await;
        b.wait_text("device-out", |t| t.contains("BODO0010000001"))
            .await;
        b.click("#dev-history").await;
        b.wait_text("device-out", |t| t.starts_with('[') || t.starts_with('{'))
            .await;
        b.click("#dev-reason option[value=sold]").await;
        b.click("#dev-deactivate").await;
        b.wait_text("device-out", |t| t.contains("sold")).await;
        let (status, _) = blocking_request(
            &d,
            "/v1/registers/till-1/tables",
            creds["http_token"].as_str(),
        );
        assert_eq!(
            status,
            hyper::StatusCode::UNAUTHORIZED,
            "a deactivated register's token still works"
        );
        b.screenshot("05-registry").await;

        // Sign out: the old session is refused afterwards, in the page and outside it.
        b.click("#logout").await;
        b.wait_shown("login").await;
        b.screenshot("08-signed-out").await;
        let (status, _, _) = raw_http(
            d.http,
            "GET",
            "/v1/admin/registers",
            &[("Cookie", &cookie_header)],
            "",
        );
        assert_eq!(status, 401);
        let (status, _, _) = raw_http(
            d.http,
            "GET",
            "/ui/api/session",
            &[("Cookie", &cookie_header)],
            "",
        );
        assert_eq!(status, 401);

        // The set-up code was used once; the password and the admin token sign in.
        sign_in(&b, &code).await;
        b.wait_text("notice", |t| t.starts_with("Refused")).await;
        sign_in(&b, password).await;
        b.wait_shown("status").await;
        b.click("#logout").await;
        b.wait_shown("login").await;
        sign_in(&b, &d.admin_token()).await;
        b.wait_shown("status").await;

        // The language picker translates the page and sets its lang attribute.
        b.click("#lang option[value=nl]").await;
        let lang = b
            .client
            .execute("return document.documentElement.lang;", vec![])
            .await
            .unwrap();
        assert_eq!(lang, "nl");
        b.wait_text("status-h", |t| t == "Status").await;
        b.wait_text("logout", |t| t == "Afmelden").await;
        b.close().await;
    });
    assert!(d.stop().success());
}

#[test]
fn card_pin_given_in_the_page() {
    let Some((chromium, chromedriver)) = browser_binaries() else {
        return;
    };
    let Some(lab) = vsc_common::Lab::start(0) else {
        return;
    };
    let mut d = Daemon::start_with_config(&lab.config(), &lab.env());
    let base = format!("http://{}", d.http);
    runtime().block_on(async {
        let b = Browser::start(&chromium, &chromedriver, &base).await;
        sign_in(&b, &d.admin_token()).await;
        b.wait_shown("status").await;
        b.wait_text("problems", |t| t.contains("signer_pin_required"))
            .await;
        b.screenshot("06-status-pin-required").await;
        b.goto("/ui/#card").await;
        b.wait_shown("card").await;
        b.wait_text("card-state", |t| t == "pin_required").await;
        let autocomplete = b
            .client
            .find(Locator::Id("pin"))
            .await
            .unwrap()
            .attr("autocomplete")
            .await
            .unwrap();
        assert_eq!(autocomplete.as_deref(), Some("off"));
        b.type_into("pin", vsc_common::PIN).await;
        b.click("#pin-form button[type=submit]").await;
        b.wait_text("pin-result", |t| t == "PIN accepted").await;
        // The field is emptied: the browser keeps no PIN.
        let value = b
            .client
            .find(Locator::Id("pin"))
            .await
            .unwrap()
            .prop("value")
            .await
            .unwrap();
        assert_eq!(value.as_deref(), Some(""));
        b.wait_text("card-state", |t| t != "pin_required" && !t.is_empty())
            .await;
        b.screenshot("07-card").await;
        b.close().await;
    });
    assert!(d.stop().success());
    let log = d.log();
    assert!(
        !log.lines()
            .any(|l| l.to_lowercase().contains("pin") && l.contains(vsc_common::PIN)),
        "the PIN appears in the log:\n{log}"
    );
}
