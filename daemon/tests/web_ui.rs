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
use web_common::{Browser, SOON, axe_script, browser_binaries, header, raw_http};

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

/// Runs axe-core on the page as shown (unless FDMD_SKIP_AXE=1) and fails on any violation of
/// impact serious or critical, listing them.
async fn accessible(b: &Browser, axe: Option<&str>, page: &str) {
    let Some(axe) = axe else {
        return;
    };
    let violations = b.axe(axe).await;
    assert!(
        violations.is_empty(),
        "axe-core: {} serious or critical violation(s) on the {page} page:\n{}",
        violations.len(),
        violations.join("\n")
    );
}

/// Clicks the download link `css` and waits for the file named `name` in the downloads.
async fn download(b: &Browser, css: &str, name: &str) -> std::path::PathBuf {
    b.click(css).await;
    let file = b.downloads.join(name);
    let deadline = Instant::now() + SOON;
    while !file.is_file() {
        assert!(Instant::now() < deadline, "{name} was not downloaded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    file
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
    let axe = axe_script();
    let axe = axe.as_deref();
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
        accessible(&b, axe, "sign-in").await;
        sign_in(&b, &code).await;
        b.wait_shown("setpw").await;
        accessible(&b, axe, "set-password").await;
        b.type_into("newpw", password).await;
        b.click("#setpw-form button[type=submit]").await;
        b.wait_shown("status").await;
        b.wait_text("overall", |t| t == "ready" || t == "degraded")
            .await;
        // The journal section in words and units, never raw keys or null; the storage
        // forecast beside it.
        let journal = b.wait_text("journal", |t| t.contains("Journal size")).await;
        for raw in ["null", "free_bytes", "last_seq", "usage", "undefined", "NaN"] {
            assert!(!journal.contains(raw), "{raw} in the journal section: {journal}");
        }
        for label in ["Last record", "Free space on the disk", "Written per day", "The storage lasts"] {
            assert!(journal.contains(label), "{label} missing: {journal}");
        }
        assert!(
            journal.contains(" MB") || journal.contains(" GB") || journal.contains(" kB"),
            "{journal}"
        );
        accessible(&b, axe, "status").await;

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
        accessible(&b, axe, "registers").await;
        let receipt = order_over_mqtt(&d, &creds).await;
        assert_eq!(receipt["status"], "signed", "{receipt}");
        // The HTTP token shown works too.
        let (status, _) = blocking_request(
            &d,
            "/v1/registers/till-1/tables",
            creds["http_token"].as_str(),
        );
        assert_eq!(status, hyper::StatusCode::OK);

        // Today's turnover on the status page: the order's 6.50 at rate B, as a chart (SVG
        // drawn by the page) and as a table.
        b.goto("/ui/#status").await;
        b.wait_shown("status").await;
        let total = b.wait_text("turnover-total", |t| t.starts_with("6.50 €")).await;
        assert!(total.ends_with("· 1 ticket"), "{total}");
        let bars = b
            .client
            .find_all(Locator::Css("#chart svg rect.rate-0"))
            .await
            .unwrap();
        assert_eq!(bars.len(), 1, "one bar: one hour, one rate");
        let legend = b.wait_text("chart-legend", |t| !t.is_empty()).await;
        assert_eq!(legend, "VAT rate B");
        let staff = b.wait_text("staff", |t| !t.is_empty()).await;
        assert!(!staff.contains("undefined"), "{staff}");
        b.screenshot("02-status").await;
        accessible(&b, axe, "status with turnover").await;

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
        accessible(&b, axe, "reports").await;

        // Export by date (today, the default of the form), downloaded as a person does, then
        // verified with `fdmctl verify`; and verified by fdmd, with the verdict in the page.
        let today = b
            .client
            .find(Locator::Id("from-date"))
            .await
            .unwrap()
            .prop("value")
            .await
            .unwrap()
            .unwrap();
        let file = download(
            &b,
            "#export-date-link",
            &format!("fdmd-export-{today}-{today}.jsonl"),
        )
        .await;
        let (rc, out) = fdmctl(&["verify", file.to_str().unwrap()]);
        assert_eq!(rc, 0, "{out}");
        let exported = std::fs::read_to_string(&file).unwrap();
        let records = exported.lines().filter(|l| l.contains(r#""type":"record""#)).count();
        assert!(records > 3, "{exported}");
        b.click("#check-date").await;
        let verdict = b
            .wait_text("export-verdict", |t| t.contains("verifies") || t.contains("NOT"))
            .await;
        assert!(verdict.starts_with("The export verifies."), "{verdict}");
        assert!(verdict.contains(&format!("Records\n{records}")), "{verdict}");
        b.client
            .execute(
                "document.getElementById('export-date-h').scrollIntoView();",
                vec![],
            )
            .await
            .unwrap();
        b.screenshot("09-export-verified").await;
        // A date with no record: the refusal is shown.
        b.client
            .execute(
                "const f = document.getElementById('from-date'), t = document.getElementById('to-date');
                 f.value = '2001-01-01'; t.value = '2001-01-02';
                 f.dispatchEvent(new Event('input'));",
                vec![],
            )
            .await
            .unwrap();
        b.click("#check-date").await;
        b.wait_text("export-verdict", |t| t.starts_with("Refused: no record"))
            .await;
        // And by record range, through the other link.
        let file = download(&b, "#export-link", "fdmd-export.jsonl").await;
        let (rc, out) = fdmctl(&["verify", file.to_str().unwrap()]);
        assert_eq!(rc, 0, "{out}");
        b.click("#check-seq").await;
        b.wait_text("export-verdict", |t| t.starts_with("The export verifies."))
            .await;

        // The card page: state, and the card replacement recorded in the journal; a forged
        // replacement (no CSRF token) is refused.
        b.goto("/ui/#card").await;
        b.wait_shown("card").await;
        b.wait_text("card-info", |t| t.contains("Card id")).await;
        accessible(&b, axe, "card").await;
        assert_eq!(page_post(&b, "/v1/admin/devices/card/replace", None).await, 403);
        b.type_into("new-vsc", "0000000196-999").await;
        b.click("#replace-reason option[value=replaced]").await;
        b.click("#replace-submit").await;
        let replaced = b
            .wait_text("replace-result", |t| !t.is_empty())
            .await;
        assert!(
            replaced.starts_with("Recorded: card ") && replaced.ends_with(" replaced by 0000000196-999."),
            "{replaced}"
        );
        let (_, history) = blocking_request(&d, "/v1/admin/devices/card/x/history", Some(&d.admin_token()));
        let (_, devices) = blocking_request(&d, "/v1/admin/devices", Some(&d.admin_token()));
        assert!(
            history.to_string().contains("0000000196-999") || devices.to_string().contains("0000000196-999"),
            "the replacement is not in the registry: {history} {devices}"
        );
        b.screenshot("10-card").await;

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
        // The figures are drawn again in the chosen language.
        b.wait_text("journal", |t| t.contains("Laatste record")).await;
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
