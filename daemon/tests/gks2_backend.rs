//! `[signer] backend = "gks2"` end to end (issue 18, first stage): a register's order over HTTP →
//! fdmd (backend gks2) → a second fdmd serving the GKS 2.0 emulator → the receipt carries the
//! FDM's answer. A resend is answered from the journal without a second FDM event; with the FDM
//! down there is an error receipt and no record.
#![allow(clippy::unwrap_used)]

#[path = "support/gks2.rs"]
mod gks2_support;
mod support;
#[path = "support/test_ca.rs"]
mod test_ca;

use gks2_support::{
    DEVICE, emulator, emulator_with, https_with_client_certificates, mtls, pos_of, pos_with_timeout,
};
use hyper::{Method, StatusCode};
use serde_json::Value;
use support::{Daemon, order};

const SECRET: &str = "another-test-secret";

/// The codes of the problems in fdmd's status (admin view); `degraded` whenever there are any.
fn problems(d: &Daemon) -> Vec<String> {
    let (code, status) = d.request(Method::GET, "/v1/status", Some(&d.admin_token()), None);
    assert_eq!(code, StatusCode::OK, "{status}");
    let codes: Vec<String> = status["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["code"].as_str().unwrap().to_owned())
        .collect();
    let expected = if codes.is_empty() {
        "ready"
    } else {
        "degraded"
    };
    assert_eq!(status["status"], expected, "{status}");
    codes
}

#[test]
fn the_fdms_buffer_and_a_wrong_secret_show_as_status_problems_and_error_codes() {
    let secrets = tempfile::tempdir().unwrap();
    let secret_file = secrets.path().join("secret");
    std::fs::write(&secret_file, SECRET).unwrap();
    let wrong_file = secrets.path().join("wrong");
    std::fs::write(&wrong_file, "not-the-secret").unwrap();
    // An FDM whose buffer holds ten events: a warning from the tenth (90 %), full at the 11th.
    let (_fdm, addr) = emulator_with("FDMEMU00010", &secret_file, "buffer_capacity = 10\n");

    // The wrong shared secret: 208 naming the cause, and the status says what to fix.
    let stranger = pos_of(addr, &wrong_file, "");
    let (code, refused) = stranger.request(
        Method::POST,
        "/v1/registers/dev-register/orders",
        Some(&stranger.dev_register_token()),
        Some(order("w-1", &[("Water", 1, "2.00", "A")])),
    );
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{refused}");
    assert_eq!(refused["code"], 208, "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap_or_default()
            .ends_with("(gks2_auth_refused)"),
        "{refused}"
    );
    assert_eq!(problems(&stranger), ["gks2_auth_refused"]);

    let pos = pos_of(addr, &secret_file, "");
    let token = pos.dev_register_token();
    let post = |i: u32| {
        pos.request(
            Method::POST,
            "/v1/registers/dev-register/orders",
            Some(&token),
            Some(order(&format!("b-{i}"), &[("Water", 1, "2.00", "A")])),
        )
    };
    for i in 1..=9 {
        let (code, r) = post(i);
        assert_eq!(code, StatusCode::CREATED, "{r}");
    }
    assert!(problems(&pos).is_empty());
    let (code, r) = post(10);
    assert_eq!(
        code,
        StatusCode::CREATED,
        "signed, with the FDM's warning: {r}"
    );
    assert_eq!(problems(&pos), ["gks2_buffer_nearly_full"]);
    let (code, r) = post(11);
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{r}");
    assert!(
        r["message"]
            .as_str()
            .unwrap_or_default()
            .ends_with("(gks2_buffer_full)"),
        "{r}"
    );
    assert_eq!(
        problems(&pos),
        ["gks2_buffer_full", "gks2_buffer_nearly_full"]
    );
}

#[test]
fn over_https_with_client_certificates_only_a_pos_with_one_is_signed_for() {
    let dir = tempfile::tempdir().unwrap();
    let ca = test_ca::make(dir.path());
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, SECRET).unwrap();
    let (fdm, addr) = emulator_with(
        "FDMEMU00011",
        &secret_file,
        &https_with_client_certificates(&ca),
    );
    let log = fdm.log();
    assert!(log.contains("HTTPS, client certificates required"), "{log}");
    let pos_with = |extra: &str| pos_of(addr, &secret_file, extra);
    let order_on = |pos: &Daemon, id: &str| {
        pos.request(
            Method::POST,
            "/v1/registers/dev-register/orders",
            Some(&pos.dev_register_token()),
            Some(order(id, &[("Water", 1, "2.00", "A")])),
        )
    };

    // The CA and a client certificate: signed by the FDM over mTLS.
    let good = pos_with(&mtls(&ca, &ca));
    let (code, signed) = order_on(&good, "t-1");
    assert_eq!(code, StatusCode::CREATED, "{signed}");
    assert_eq!(signed["gks2"]["fdmRef"]["fdmId"], "FDMEMU00011", "{signed}");
    assert!(problems(&good).is_empty());

    // Without a client certificate the FDM refuses the handshake: no record, and the cause.
    let anonymous = pos_with(&format!("ca_file = \"{}\"\n", ca.ca.display()));
    let (code, refused) = order_on(&anonymous, "t-2");
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{refused}");
    let message = refused["message"].as_str().unwrap_or_default();
    assert!(message.contains("TLS"), "{refused}");
    assert!(message.ends_with("(gks2_auth_refused)"), "{refused}");
    assert_eq!(problems(&anonymous), ["gks2_auth_refused"]);

    // Plain HTTP to an HTTPS FDM, or a CA that did not sign the FDM's certificate: refused too.
    let other = tempfile::tempdir().unwrap();
    let other_ca = test_ca::make(other.path());
    let wrong_ca = pos_with(&mtls(&other_ca, &ca));
    let (code, refused) = order_on(&wrong_ca, "t-3");
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap_or_default()
            .contains("TLS"),
        "{refused}"
    );
    let plain = pos_with("");
    let (code, refused) = order_on(&plain, "t-4");
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{refused}");
}

#[test]
fn orders_are_signed_by_the_gks2_fdm_once_and_never_without_it() {
    let secrets = tempfile::tempdir().unwrap();
    let secret_file = secrets.path().join("secret");
    std::fs::write(&secret_file, SECRET).unwrap();
    let (mut fdm, addr) = emulator(&secret_file);
    let pos = pos_of(addr, &secret_file, "");
    let token = pos.dev_register_token();
    let post = |id: &str, lines: &[(&str, i64, &str, &str)]| {
        pos.request(
            Method::POST,
            "/v1/registers/dev-register/orders",
            Some(&token),
            Some(order(id, lines)),
        )
    };

    let (code, first) = post("g-1", &[("Cola", 2, "2.20", "A"), ("Soep", 1, "6.50", "C")]);
    assert_eq!(code, StatusCode::CREATED, "{first}");
    let g = &first["gks2"];
    assert_eq!(g["fdmRef"]["fdmId"], "FDMEMU00009", "{first}");
    assert_eq!(g["fdmRef"]["eventLabel"], "N");
    assert_eq!(g["fdmRef"]["eventCounter"], 1);
    assert_eq!(g["fdmRef"]["totalCounter"], 1);
    assert_eq!(g["posFiscalTicketNo"], 1);
    assert_eq!(g["terminalId"], "dev-register");
    assert_eq!(g["shortSignature"].as_str().unwrap().len(), 8);
    assert!(g["verificationUrl"].as_str().unwrap().contains(".invalid/"));
    // The FDM's VAT (amounts as decimal strings in the record) is fdmd's VAT.
    let ours: Vec<(String, String)> = first["vat"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["rate"].as_str().unwrap().into(),
                v["vat"]
                    .as_str()
                    .unwrap()
                    .parse::<rust_decimal::Decimal>()
                    .unwrap()
                    .normalize()
                    .to_string(),
            )
        })
        .collect();
    let theirs: Vec<(String, String)> = g["vatCalc"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["label"].as_str().unwrap().into(),
                v["vatAmount"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(ours, theirs);
    // The printed ticket carries the FDM's reference, signature and verification URL.
    let text = first["text"].as_str().unwrap();
    for shown in [
        "GKS 2.0 FDM",
        "FDMEMU00009",
        "N 1/1",
        g["shortSignature"].as_str().unwrap(),
        "not certified",
    ] {
        assert!(text.contains(shown), "{shown} not in\n{text}");
    }

    // A resend: the stored receipt, the same FDM answer, no second FDM event.
    let (code, again) = post("g-1", &[("Cola", 2, "2.20", "A"), ("Soep", 1, "6.50", "C")]);
    assert_eq!(code, StatusCode::OK, "{again}");
    assert_eq!(again["gks2"], first["gks2"]);
    let (code, second) = post("g-2", &[("Water", 1, "2.00", "A")]);
    assert_eq!(code, StatusCode::CREATED, "{second}");
    assert_eq!(second["gks2"]["fdmRef"]["totalCounter"], 2);
    assert_eq!(second["gks2"]["posFiscalTicketNo"], 2);

    // The FDM goes down: an error receipt, and no record for that request.
    assert!(fdm.stop().success());
    let (code, refused) = post("g-3", &[("Water", 1, "2.00", "A")]);
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap_or_default()
            .ends_with("(gks2_fdm_down)"),
        "{refused}"
    );
    assert_eq!(problems(&pos), ["gks2_fdm_down"]);
    let (code, stored) = pos.request(
        Method::GET,
        "/v1/receipts/dev-register/g-3",
        Some(&token),
        None,
    );
    assert_ne!(code, StatusCode::OK, "{stored}");
    let _: Value = stored;

    // The journal, with the FDM's answers in its records, still verifies with fdmd's own key.
    use fdmd::signer::Signer;
    let key = fdmd::signer::SoftwareSigner::open_or_create(&pos.data_dir().join("dev-signer.key"))
        .unwrap()
        .identity()
        .unwrap()
        .public_key;
    let conn =
        fdmd::journal::query::open_read_only(&pos.data_dir().join("journal.sqlite")).unwrap();
    let summary = fdmd::journal::export::verify_database(&conn, vec![key]).unwrap();
    assert_eq!(
        summary.fiscal_events, 2,
        "g-1 and g-2, not g-3: {summary:?}"
    );
}

/// The emulator's events per label, read from its store (`gks2-fdm.sqlite`).
fn fdm_events(fdm: &Daemon) -> Vec<(String, i64)> {
    let conn = rusqlite::Connection::open_with_flags(
        fdm.data_dir().join("gks2-fdm.sqlite"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut stmt = conn
        .prepare("SELECT label, COUNT(*) FROM events GROUP BY label ORDER BY label")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn journal_last_seq(pos: &Daemon) -> u64 {
    let conn =
        fdmd::journal::query::open_read_only(&pos.data_dir().join("journal.sqlite")).unwrap();
    fdmd::journal::query::last_seq(&conn).unwrap()
}

#[test]
fn x_and_z_reports_are_signed_by_the_gks2_fdm_before_they_are_journaled() {
    let (_secrets, mut fdm, addr, pos) = restartable_fdm_and_pos("FDMEMU00012");
    let token = pos.dev_register_token();
    let reports = "/v1/registers/dev-register/reports";
    for (id, lines) in [
        (
            "r-1",
            vec![("Cola", 2, "2.20", "A"), ("Soep", 1, "6.50", "C")],
        ),
        (
            "r-2",
            vec![("Water", 2, "2.00", "A"), ("Cola", -1, "2.20", "A")],
        ),
    ] {
        let (code, r) = pos.request(
            Method::POST,
            "/v1/registers/dev-register/orders",
            Some(&token),
            Some(order(id, &lines)),
        );
        assert_eq!(code, StatusCode::CREATED, "{r}");
    }

    // An X report: the FDM's R event, its counters and signature in the answer and the record.
    let (code, x) = pos.request(
        Method::POST,
        reports,
        Some(&token),
        Some(br#"{"kind":"x","request_id":"x-1"}"#.to_vec()),
    );
    assert_eq!(code, StatusCode::CREATED, "{x}");
    let g = &x["gks2"];
    assert_eq!(g["eventOperation"], "REPORT_TURNOVER_X", "{x}");
    assert_eq!(g["fdmRef"]["fdmId"], "FDMEMU00012");
    assert_eq!(g["fdmRef"]["eventLabel"], "R");
    assert_eq!(g["fdmRef"]["eventCounter"], 1);
    assert_eq!(g["fdmRef"]["totalCounter"], 3, "after the two sales: {x}");
    assert_eq!(g["terminalId"], "dev-register");
    assert_eq!(
        g["posFiscalTicketNo"], 3,
        "the terminal's next POS number: {x}"
    );
    assert_eq!(g["shortSignature"].as_str().unwrap().len(), 8, "{x}");
    assert!(g["verificationUrl"].as_str().unwrap().contains(".invalid/"));
    let x_seq = x["journal_seq"].as_u64().unwrap();
    assert_eq!(journal_last_seq(&pos), x_seq);
    // A resend of the same request: the stored report, no second FDM event.
    let (code, again) = pos.request(
        Method::POST,
        reports,
        Some(&token),
        Some(br#"{"kind":"x","request_id":"x-1"}"#.to_vec()),
    );
    assert_eq!(code, StatusCode::OK, "{again}");
    assert_eq!(again["gks2"], x["gks2"]);
    assert_eq!(fdm_events(&fdm), [("N".into(), 2), ("R".into(), 1)]);

    // The printed X report (text) carries the FDM's reference.
    let (code, text) = pos.request(
        Method::POST,
        &format!("{reports}?format=text"),
        Some(&token),
        Some(br#"{"kind":"x"}"#.to_vec()),
    );
    assert_eq!(code, StatusCode::CREATED, "{text}");
    let text = text.as_str().unwrap();
    for shown in [
        "GKS 2.0 FDM",
        "FDMEMU00012",
        "R 2/4",
        "gks2-emulator.fdmd.invalid",
        "not certified",
    ] {
        assert!(text.contains(shown), "{shown} not in\n{text}");
    }

    // The FDM goes down: the Z report is refused (208, gks2_fdm_down) and nothing is journaled.
    let before = journal_last_seq(&pos);
    assert!(fdm.stop().success());
    let (code, refused) = pos.request(
        Method::POST,
        reports,
        Some(&token),
        Some(br#"{"kind":"z","request_id":"z-1"}"#.to_vec()),
    );
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{refused}");
    assert_eq!(refused["code"], 208, "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap_or_default()
            .ends_with("(gks2_fdm_down)"),
        "{refused}"
    );
    assert_eq!(journal_last_seq(&pos), before, "no record without the FDM");
    assert_eq!(problems(&pos), ["gks2_fdm_down"]);

    // The FDM comes back (same store, same port): the Z report is made with the first Z number,
    // and the FDM's counters go on from its store.
    restart(&mut fdm, addr);
    let (code, z) = pos.request(
        Method::POST,
        reports,
        Some(&token),
        Some(br#"{"kind":"z","request_id":"z-1"}"#.to_vec()),
    );
    assert_eq!(code, StatusCode::CREATED, "{z}");
    assert_eq!(z["report"], "Z");
    assert_eq!(z["ticket_number"], 1, "no gap in the Z numbering: {z}");
    assert_eq!(z["journal_seq"].as_u64().unwrap(), before + 1, "{z}");
    let g = &z["gks2"];
    assert_eq!(g["eventOperation"], "REPORT_TURNOVER_Z", "{z}");
    assert_eq!(g["fdmRef"]["eventLabel"], "R");
    assert_eq!(g["fdmRef"]["eventCounter"], 3, "{z}");
    assert_eq!(g["fdmRef"]["totalCounter"], 5, "{z}");
    // The keys reserved at the refused attempt are the ones sent once the FDM is back: the POS
    // number 5 (3 and 4 were the X reports'), not a new one.
    assert_eq!(g["posFiscalTicketNo"], 5, "{z}");
    assert!(problems(&pos).is_empty());
    assert_eq!(fdm_events(&fdm), [("N".into(), 2), ("R".into(), 3)]);
    // Orders after the Z: the next period.
    let (code, r) = pos.request(
        Method::POST,
        "/v1/registers/dev-register/orders",
        Some(&token),
        Some(order("r-3", &[("Water", 1, "2.00", "A")])),
    );
    assert_eq!(code, StatusCode::CREATED, "{r}");

    // fdmctl verify accepts the journal with the `gks2` members of its reports.
    let (code, out) = support::fdmctl(&["verify", "--data-dir", pos.data_dir().to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
}

/// An emulator on a fixed port (so that it can come back where the POS looks for it, see
/// [`restart`]) and a POS signing with it; the secrets' directory lives as long as the caller
/// keeps it.
fn restartable_fdm_and_pos(
    fdm_id: &str,
) -> (tempfile::TempDir, Daemon, std::net::SocketAddr, Daemon) {
    let secrets = tempfile::tempdir().unwrap();
    let secret_file = secrets.path().join("secret");
    std::fs::write(&secret_file, SECRET).unwrap();
    let port = support::free_port();
    let fdm = Daemon::start_dev_with_config(&format!(
        "[gks2_fdm]\nlisten = \"127.0.0.1:{port}\"\ndevice_id = \"{DEVICE}\"\nfdm_id = \"{fdm_id}\"\nsecret_file = \"{}\"\n",
        secret_file.display()
    ));
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let pos = pos_of(addr, &secret_file, "");
    (secrets, fdm, addr, pos)
}

/// Starts a stopped emulator again on its configuration, data directory and (fixed) port.
fn restart(fdm: &mut Daemon, addr: std::net::SocketAddr) {
    let child = std::process::Command::new(support::FDMD)
        .arg("--dev")
        .arg("--config")
        .arg(fdm.config_file.as_ref().unwrap())
        .arg("--data-dir")
        .arg(fdm.data_dir())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    fdm.child = Some(child);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the FDM did not come back"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn copies_and_table_moves_are_signed_by_the_gks2_fdm_and_refused_without_it() {
    let (_secrets, mut fdm, addr, pos) = restartable_fdm_and_pos("FDMEMU00013");
    let token = pos.dev_register_token();
    let post = |body: Value| {
        pos.request(
            Method::POST,
            "/v1/registers/dev-register/orders",
            Some(&token),
            Some(serde_json::to_vec(&body).unwrap()),
        )
    };
    let op = "85073003328";
    let copy_of = |id: &str, original: &str| {
        serde_json::json!({"request_id": id, "operator": op, "event_type": "copy",
            "original": {"request_id": original}})
    };
    let change = |id: &str, purpose: &str, from: &str, to: &str| {
        serde_json::json!({"request_id": id, "operator": op, "event_type": "normal",
            "purpose": purpose, "table": from, "to_table": to})
    };
    let round = |id: &str, table: &str, lines: Value| {
        serde_json::json!({"request_id": id, "operator": op, "event_type": "pro_forma",
            "table": table, "lines": lines})
    };

    // A sale, then its copy: signCopy with the sale's FDM reference, label C.
    let (code, sale) = pos.request(
        Method::POST,
        "/v1/registers/dev-register/orders",
        Some(&token),
        Some(order("s-1", &[("Cola", 2, "2.20", "A")])),
    );
    assert_eq!(code, StatusCode::CREATED, "{sale}");
    let (code, copy) = post(copy_of("c-1", "s-1"));
    assert_eq!(code, StatusCode::CREATED, "{copy}");
    let g = &copy["gks2"];
    assert_eq!(g["eventOperation"], "COPY", "{copy}");
    assert_eq!(g["fdmRef"]["fdmId"], "FDMEMU00013");
    assert_eq!(g["fdmRef"]["eventLabel"], "C");
    assert_eq!(g["fdmRef"]["eventCounter"], 1);
    assert_eq!(g["fdmRef"]["totalCounter"], 2);
    assert_eq!(g["posFiscalTicketNo"], 2, "{copy}");
    assert_eq!(copy["total"], sale["total"], "the copy reprints the sale");
    // The copy's ticket shows the FDM's answer, as a sale's does.
    let text = copy["text"].as_str().unwrap();
    for shown in ["GKS 2.0 FDM", "FDMEMU00013", "C 1/2", "not certified"] {
        assert!(text.contains(shown), "{shown} not in\n{text}");
    }
    // A resend: the stored copy, no second FDM event.
    let (code, again) = post(copy_of("c-1", "s-1"));
    assert_eq!(code, StatusCode::OK, "{again}");
    assert_eq!(again["gks2"], copy["gks2"]);

    // Table 7 gets two rounds (the second with a correction), moves to 9, and 9 is merged into
    // 12: each change is signCostCenterChange with the moved lines, label P.
    for (id, table, lines) in [
        (
            "t7-1",
            "7",
            serde_json::json!([{"description": "Water", "quantity": 2, "unit_price": "3.00", "vat": "A"},
                {"description": "Soep", "quantity": 1, "unit_price": "6.50", "vat": "C"}]),
        ),
        (
            "t7-2",
            "7",
            serde_json::json!([{"description": "Water", "quantity": -1, "unit_price": "3.00", "vat": "A"}]),
        ),
        (
            "t12-1",
            "12",
            serde_json::json!([{"description": "Wijn", "quantity": 1, "unit_price": "5.00", "vat": "A"}]),
        ),
    ] {
        let (code, r) = post(round(id, table, lines));
        assert_eq!(code, StatusCode::CREATED, "{r}");
        assert_eq!(r["gks2"]["eventOperation"], "ORDER", "{r}");
    }
    let (code, mv) = post(change("mv-1", "table_move", "7", "9"));
    assert_eq!(code, StatusCode::CREATED, "{mv}");
    assert_eq!(mv["record_kind"], "table_change", "{mv}");
    let g = &mv["gks2"];
    assert_eq!(g["eventOperation"], "COST_CENTER_CHANGE", "{mv}");
    assert_eq!(g["fdmRef"]["eventLabel"], "P");
    assert_eq!(g["fdmRef"]["eventCounter"], 4, "three rounds before: {mv}");
    assert_eq!(g["fdmRef"]["totalCounter"], 6);
    let (code, again) = post(change("mv-1", "table_move", "7", "9"));
    assert_eq!(code, StatusCode::OK, "{again}");
    assert_eq!(again["gks2"], mv["gks2"]);
    let (code, mg) = post(change("mg-1", "table_merge", "9", "12"));
    assert_eq!(code, StatusCode::CREATED, "{mg}");
    assert_eq!(mg["gks2"]["eventOperation"], "COST_CENTER_CHANGE", "{mg}");
    assert_eq!(mg["gks2"]["fdmRef"]["eventCounter"], 5, "{mg}");
    assert_eq!(
        fdm_events(&fdm),
        [("C".into(), 1), ("N".into(), 1), ("P".into(), 5)]
    );

    // The FDM goes down: a copy and a move are refused (208), nothing is journaled, the table
    // stays where it was.
    let before = journal_last_seq(&pos);
    assert!(fdm.stop().success());
    for body in [
        copy_of("c-2", "s-1"),
        change("mv-2", "table_move", "12", "14"),
    ] {
        let (code, refused) = post(body);
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{refused}");
        assert_eq!(refused["code"], 208, "{refused}");
        assert!(
            refused["message"]
                .as_str()
                .unwrap_or_default()
                .ends_with("(gks2_fdm_down)"),
            "{refused}"
        );
    }
    assert_eq!(journal_last_seq(&pos), before, "no record without the FDM");
    assert_eq!(problems(&pos), ["gks2_fdm_down"]);
    let (code, tables) = pos.request(Method::GET, "/v1/tables", Some(&pos.admin_token()), None);
    assert_eq!(code, StatusCode::OK, "{tables}");
    let open: Vec<&str> = tables
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["table"].as_str())
        .collect();
    assert_eq!(open, ["12"], "{tables}");

    // The FDM is back: the same requests are signed with the keys reserved at the refused
    // attempts, and the copy takes the next copy number (no gap).
    restart(&mut fdm, addr);
    let (code, copy2) = post(copy_of("c-2", "s-1"));
    assert_eq!(code, StatusCode::CREATED, "{copy2}");
    assert_eq!(copy2["gks2"]["fdmRef"]["eventCounter"], 2, "{copy2}");
    let number = |r: &Value| r["ticket_number"].as_str().unwrap().parse::<u64>().unwrap();
    assert_eq!(number(&copy2), number(&copy) + 1, "{copy} {copy2}");
    assert_eq!(copy2["journal_seq"].as_u64().unwrap(), before + 1);
    let (code, mv2) = post(change("mv-2", "table_move", "12", "14"));
    assert_eq!(code, StatusCode::CREATED, "{mv2}");
    assert_eq!(mv2["gks2"]["fdmRef"]["eventCounter"], 6, "{mv2}");
    assert!(problems(&pos).is_empty());
    assert_eq!(
        fdm_events(&fdm),
        [("C".into(), 2), ("N".into(), 1), ("P".into(), 6)]
    );

    let (code, out) = support::fdmctl(&["verify", "--data-dir", pos.data_dir().to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
}

/// A refund of an earlier ticket under `gks2` (docs/gks2.md §6.4): a full refund is `signSale`
/// with the original's `fdmRef`, which the FDM checks (a fresh FDM with the same id, which never
/// signed the original, refuses it: FDM_REF_NOT_FOUND); a partial refund is sent without one.
/// With the FDM down a full refund is refused 208 and nothing is journaled; once back, it is
/// signed with the next counters (no gap).
#[test]
fn a_full_refund_is_signed_with_the_originals_fdm_ref_and_refused_without_the_fdm() {
    let (secrets, mut fdm, addr, pos) = restartable_fdm_and_pos("FDMEMU00017");
    let token = pos.dev_register_token();
    let post = |body: Value| {
        pos.request(
            Method::POST,
            "/v1/registers/dev-register/orders",
            Some(&token),
            Some(serde_json::to_vec(&body).unwrap()),
        )
    };
    let op = "85073003328";
    let line = |d: &str, q: i64, p: &str, v: &str| serde_json::json!({"description": d, "quantity": q, "unit_price": p, "vat": v});
    let sale = |id: &str, lines: Value, paid: &str| {
        serde_json::json!({"request_id": id, "operator": op, "event_type": "normal",
            "lines": lines, "payments": [{"method": "cash", "amount": paid}]})
    };
    let refund = |id: &str, original: &str, lines: Value, paid: &str| {
        serde_json::json!({"request_id": id, "operator": op, "event_type": "normal",
            "original": {"request_id": original}, "lines": lines,
            "payments": [{"method": "cash", "amount": paid}]})
    };
    let full_s1 = || {
        refund(
            "f-1",
            "s-1",
            serde_json::json!([line("Cola", -2, "2.20", "A"), line("Soep", -1, "6.50", "C")]),
            "-10.90",
        )
    };
    let message = |r: &Value| r["message"].as_str().unwrap_or_default().to_owned();

    for (id, lines, paid) in [
        (
            "s-1",
            serde_json::json!([line("Cola", 2, "2.20", "A"), line("Soep", 1, "6.50", "C")]),
            "10.90",
        ),
        (
            "s-2",
            serde_json::json!([line("Water", 2, "2.00", "A")]),
            "4.00",
        ),
        (
            "s-3",
            serde_json::json!([line("Wijn", 1, "5.00", "A")]),
            "5.00",
        ),
    ] {
        let (code, r) = post(sale(id, lines, paid));
        assert_eq!(code, StatusCode::CREATED, "{r}");
        assert_eq!(r["gks2"]["fdmRef"]["eventLabel"], "N", "{r}");
    }
    // A partial refund (one of the two waters) is signed without fdmRef: N 4.
    let (code, p1) = post(refund(
        "p-1",
        "s-2",
        serde_json::json!([line("Water", -1, "2.00", "A")]),
        "-2.00",
    ));
    assert_eq!(code, StatusCode::CREATED, "{p1}");
    assert_eq!(p1["label"], "NR", "{p1}");
    assert_eq!(p1["gks2"]["fdmRef"]["totalCounter"], 4, "{p1}");

    // The FDM goes down: the full refund is refused, nothing is journaled.
    let before = journal_last_seq(&pos);
    assert!(fdm.stop().success());
    let (code, refused) = post(full_s1());
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{refused}");
    assert_eq!(refused["code"], 208, "{refused}");
    assert!(message(&refused).ends_with("(gks2_fdm_down)"), "{refused}");
    assert_eq!(journal_last_seq(&pos), before, "no record without the FDM");
    let (code, stored) = pos.request(
        Method::GET,
        "/v1/receipts/dev-register/f-1",
        Some(&token),
        None,
    );
    assert_ne!(code, StatusCode::OK, "{stored}");

    // Back: the full refund is signed (N 5, no gap), an NR referencing s-1; a resend is
    // answered from the journal.
    restart(&mut fdm, addr);
    let (code, f1) = post(full_s1());
    assert_eq!(code, StatusCode::CREATED, "{f1}");
    assert_eq!(f1["label"], "NR", "{f1}");
    assert_eq!(f1["total"], "-10.90", "{f1}");
    assert_eq!(f1["refund_of"]["request_id"], "s-1", "{f1}");
    let g = &f1["gks2"];
    assert_eq!(g["eventOperation"], "SALE", "{f1}");
    assert_eq!(g["fdmRef"]["eventLabel"], "N");
    assert_eq!(g["fdmRef"]["eventCounter"], 5);
    assert_eq!(g["fdmRef"]["totalCounter"], 5);
    assert_eq!(f1["journal_seq"].as_u64().unwrap(), before + 1);
    let (code, again) = post(full_s1());
    assert_eq!(code, StatusCode::OK, "{again}");
    assert_eq!(again["gks2"], f1["gks2"]);
    assert_eq!(fdm_events(&fdm), [("N".into(), 5)]);
    assert!(problems(&pos).is_empty());

    // A fresh FDM with the same id (its store lost) never signed s-3: the full refund of s-3
    // carries s-3's fdmRef and is refused (207, FDM_REF_NOT_FOUND), not journaled; the rest of
    // s-2 (a partial refund, no fdmRef) is still signed.
    assert!(fdm.stop().success());
    let fresh = Daemon::start_dev_with_config(&format!(
        "[gks2_fdm]\nlisten = \"{addr}\"\ndevice_id = \"{DEVICE}\"\nfdm_id = \"FDMEMU00017\"\nsecret_file = \"{}\"\n",
        secrets.path().join("secret").display()
    ));
    let before = journal_last_seq(&pos);
    let (code, refused) = post(refund(
        "f-3",
        "s-3",
        serde_json::json!([line("Wijn", -1, "5.00", "A")]),
        "-5.00",
    ));
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(refused["code"], 207, "{refused}");
    assert!(message(&refused).contains("FDM_REF_NOT_FOUND"), "{refused}");
    assert!(message(&refused).contains("N 3/3"), "{refused}");
    assert_eq!(journal_last_seq(&pos), before);
    let (code, p2) = post(refund(
        "p-2",
        "s-2",
        serde_json::json!([line("Water", -1, "2.00", "A")]),
        "-2.00",
    ));
    assert_eq!(code, StatusCode::CREATED, "{p2}");
    assert_eq!(p2["gks2"]["fdmRef"]["totalCounter"], 1, "{p2}");
    drop(fresh);

    let (code, out) = support::fdmctl(&["verify", "--data-dir", pos.data_dir().to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
}

/// A voucher sale under `gks2` (docs/gks2.md §6.5): `signMoneyInOut`, label F, signed by the FDM
/// before its money movement is journaled; the answer is the record's and the receipt's `gks2`
/// member and is printed. With the FDM down it is refused 208 and nothing is journaled; once back
/// the same request is signed with the next F counter (no gap), and a resend is answered from the
/// journal without a second FDM event.
#[test]
fn voucher_sales_are_signed_as_money_in_by_the_gks2_fdm_and_refused_without_it() {
    let (_secrets, mut fdm, addr, pos) = restartable_fdm_and_pos("FDMEMU00019");
    let token = pos.dev_register_token();
    let post = |body: Value| {
        pos.request(
            Method::POST,
            "/v1/registers/dev-register/orders",
            Some(&token),
            Some(serde_json::to_vec(&body).unwrap()),
        )
    };
    let op = "85073003328";
    let voucher_sale = |id: &str, codes: &[(&str, &str)], payments: Value| {
        let vouchers: Vec<Value> = codes
            .iter()
            .map(|(c, a)| serde_json::json!({"code": c, "amount": a}))
            .collect();
        serde_json::json!({"request_id": id, "operator": op, "event_type": "normal",
            "purpose": "voucher_sale", "vouchers": vouchers, "payments": payments})
    };
    let v1 = || {
        voucher_sale(
            "v-1",
            &[("GIFT-0001", "50.00"), ("GIFT-0002", "25.00")],
            serde_json::json!([{"method": "card", "amount": "60.00"}, {"method": "cash", "amount": "15.00"}]),
        )
    };

    let (code, v) = post(v1());
    assert_eq!(code, StatusCode::CREATED, "{v}");
    assert_eq!(v["record_kind"], "money_movement", "{v}");
    let g = &v["gks2"];
    assert_eq!(g["eventOperation"], "MONEY_IN_OUT", "{v}");
    assert_eq!(g["fdmRef"]["fdmId"], "FDMEMU00019");
    assert_eq!(g["fdmRef"]["eventLabel"], "F");
    assert_eq!(g["fdmRef"]["eventCounter"], 1);
    assert_eq!(g["fdmRef"]["totalCounter"], 1);
    assert!(
        g["digitalSignature"]
            .as_str()
            .is_some_and(|s| !s.is_empty()),
        "{v}"
    );
    assert!(g.get("vatCalc").is_none_or(Value::is_null), "no VAT: {v}");
    let text = v["text"].as_str().unwrap();
    for shown in ["GKS 2.0 FDM", "FDMEMU00019", "F 1/1", "not certified"] {
        assert!(text.contains(shown), "{shown} not in\n{text}");
    }
    // The journaled money movement holds the FDM's answer.
    let conn =
        fdmd::journal::query::open_read_only(&pos.data_dir().join("journal.sqlite")).unwrap();
    let moves = fdmd::journal::query::records_of_kind(
        &conn,
        &[fdmd::journal::record::RecordKind::MoneyMovement],
    )
    .unwrap();
    assert_eq!(moves.len(), 1);
    let canonical = String::from_utf8(moves[0].canonical.clone()).unwrap();
    for member in [
        "\"eventOperation\":\"MONEY_IN_OUT\"",
        "\"eventLabel\":\"F\"",
        "\"type\":\"voucher_sale\"",
    ] {
        assert!(canonical.contains(member), "{member} not in {canonical}");
    }
    drop(conn);
    // A resend: the stored receipt, no second FDM event.
    let (code, again) = post(v1());
    assert_eq!(code, StatusCode::OK, "{again}");
    assert_eq!(again["gks2"], v["gks2"]);
    assert_eq!(fdm_events(&fdm), [("F".into(), 1)]);

    // The FDM goes down: the next voucher sale is refused 208, nothing is journaled.
    let v2 = || {
        voucher_sale(
            "v-2",
            &[("GIFT-0003", "20.00")],
            serde_json::json!([{"method": "cash", "amount": "20.00"}]),
        )
    };
    let before = journal_last_seq(&pos);
    assert!(fdm.stop().success());
    let (code, refused) = post(v2());
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{refused}");
    assert_eq!(refused["code"], 208, "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap_or_default()
            .ends_with("(gks2_fdm_down)"),
        "{refused}"
    );
    assert_eq!(journal_last_seq(&pos), before, "no record without the FDM");
    assert_eq!(problems(&pos), ["gks2_fdm_down"]);

    // Back: signed F 2/2 with the keys reserved at the refused attempt.
    restart(&mut fdm, addr);
    let (code, v2r) = post(v2());
    assert_eq!(code, StatusCode::CREATED, "{v2r}");
    assert_eq!(v2r["gks2"]["fdmRef"]["eventCounter"], 2, "{v2r}");
    assert_eq!(v2r["gks2"]["fdmRef"]["totalCounter"], 2, "{v2r}");
    assert_eq!(v2r["journal_seq"].as_u64().unwrap(), before + 1);
    assert_eq!(
        v2r["gks2"]["posFiscalTicketNo"].as_u64().unwrap(),
        v["gks2"]["posFiscalTicketNo"].as_u64().unwrap() + 1,
        "the refused attempt's ticket number: {v} {v2r}"
    );
    assert!(problems(&pos).is_empty());
    // A voucher sale whose payments do not cover it is refused before the FDM is asked.
    let (code, bad) = post(voucher_sale(
        "v-3",
        &[("GIFT-0004", "20.00")],
        serde_json::json!([{"method": "card", "amount": "10.00"}]),
    ));
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    // Ten codes of 64 characters are more than one reference holds: refused (207) before a POS
    // ticket number is reserved, so the next voucher sale gets the next number.
    let long: Vec<(String, &str)> = (0..10)
        .map(|i| (format!("{}{i}", "V".repeat(63)), "1.00"))
        .collect();
    let long: Vec<(&str, &str)> = long.iter().map(|(c, a)| (c.as_str(), *a)).collect();
    let (code, bad) = post(voucher_sale(
        "v-4",
        &long,
        serde_json::json!([{"method": "card", "amount": "10.00"}]),
    ));
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    assert_eq!(bad["code"], 207, "{bad}");
    let (code, v5) = post(voucher_sale(
        "v-5",
        &[("GIFT-0005", "10.00")],
        serde_json::json!([{"method": "card", "amount": "10.00"}]),
    ));
    assert_eq!(code, StatusCode::CREATED, "{v5}");
    assert_eq!(
        v5["gks2"]["posFiscalTicketNo"].as_u64().unwrap(),
        v2r["gks2"]["posFiscalTicketNo"].as_u64().unwrap() + 1,
        "no number for the refused sales: {v5}"
    );
    assert_eq!(fdm_events(&fdm), [("F".into(), 3)]);

    let (code, out) = support::fdmctl(&["verify", "--data-dir", pos.data_dir().to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
}

/// A Z report waiting for a slow GKS 2.0 FDM does not keep orders waiting (docs/gks2.md §6.1):
/// the emulator takes 2.5 s to sign a report (`test_report_delay_ms`); meanwhile an order from
/// another register and one from the Z's own register are answered at once. The Z covers the
/// period up to the last record before its check (the sale before it), and the order of its own
/// register journaled while it waited is in the next Z's period: no record is in neither.
#[test]
fn a_z_report_waiting_for_the_gks2_fdm_keeps_no_order_waiting() {
    let secrets = tempfile::tempdir().unwrap();
    let secret_file = secrets.path().join("secret");
    std::fs::write(&secret_file, SECRET).unwrap();
    let (fdm, addr) = emulator_with("FDMEMU00021", &secret_file, "test_report_delay_ms = 6000\n");
    // The FDM's answer to the Z comes after 6 s: fdmd waits up to 9 s for it.
    let pos = pos_with_timeout(addr, &secret_file, 9000, "");
    let cfg = pos
        .config_file
        .as_ref()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let (code, out) = support::fdmctl(&["register", "add", "till-2", "--json", "--config", &cfg]);
    assert_eq!(code, 0, "{out}");
    let creds: Value = serde_json::from_str(&out[..out.rfind('}').unwrap() + 1]).unwrap();
    let till2 = creds["http_token"].as_str().unwrap().to_owned();
    let token = pos.dev_register_token();
    let sale = |register: &str, token: &str, id: &str, price: &str| {
        pos.request(
            Method::POST,
            &format!("/v1/registers/{register}/orders"),
            Some(token),
            Some(order(id, &[("Cola", 1, price, "A")])),
        )
    };
    let (code, s1) = sale("dev-register", &token, "s-1", "2.20");
    assert_eq!(code, StatusCode::CREATED, "{s1}");

    let reports = "/v1/registers/dev-register/reports";
    let started = std::time::Instant::now();
    let (z, during) = std::thread::scope(|scope| {
        let z = scope.spawn(|| {
            let r = pos.request(
                Method::POST,
                reports,
                Some(&token),
                Some(br#"{"kind":"z","request_id":"z-1"}"#.to_vec()),
            );
            (r, started.elapsed())
        });
        // The Z is with the FDM (6 s) by now. Each order may take 2 s on a loaded machine: both
        // are answered before the Z (0.7 + 2 × 2 < 6), and an order kept out by the Z would wait
        // more than 5 s.
        std::thread::sleep(std::time::Duration::from_millis(700));
        let mut during = Vec::new();
        for (register, token, id, price) in [
            ("till-2", till2.as_str(), "t2-1", "3.00"),
            ("dev-register", token.as_str(), "s-2", "4.00"),
        ] {
            let asked = std::time::Instant::now();
            let (code, r) = sale(register, token, id, price);
            assert_eq!(code, StatusCode::CREATED, "{r}");
            assert!(
                !z.is_finished(),
                "the order {id} was answered after the Z: the Z did not wait for the FDM long enough to test"
            );
            assert!(
                asked.elapsed() < std::time::Duration::from_millis(2000),
                "the order {id} waited {:?} for the Z",
                asked.elapsed()
            );
            during.push(r);
        }
        (z.join().unwrap(), during)
    });
    let ((code, z), took) = z;
    assert_eq!(code, StatusCode::CREATED, "{z}");
    assert!(took >= std::time::Duration::from_millis(6000), "{took:?}");
    assert_eq!(z["gks2"]["eventOperation"], "REPORT_TURNOVER_Z", "{z}");
    // The Z covers s-1 only; its record comes after the two orders journaled while it waited.
    let seq = |r: &Value| r["journal_seq"].as_u64().unwrap();
    let last = z["period"]["last_seq"].as_u64().unwrap();
    assert!(
        last >= seq(&s1) && last < seq(&during[0]) && last < seq(&during[1]),
        "{z}"
    );
    assert!(seq(&z) > seq(&during[1]), "{z}");
    assert_eq!(z["totals"]["net"], s1["total"], "{z}");

    // The next Z of dev-register covers s-2, journaled while the first one waited.
    let (code, z2) = pos.request(
        Method::POST,
        reports,
        Some(&token),
        Some(br#"{"kind":"z","request_id":"z-2"}"#.to_vec()),
    );
    assert_eq!(code, StatusCode::CREATED, "{z2}");
    assert_eq!(
        z2["period"]["first_seq"].as_u64().unwrap(),
        last + 1,
        "{z2}"
    );
    assert_eq!(z2["totals"]["net"], during[1]["total"], "{z2}");
    assert_eq!(
        fdm_events(&fdm),
        [("N".into(), 3), ("R".into(), 2)],
        "one FDM event per order and per report"
    );
    let (code, out) = support::fdmctl(&["verify", "--data-dir", pos.data_dir().to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
}
