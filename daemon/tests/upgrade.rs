//! Upgrade: a journal written by an older build (the fixture of `tests/fixtures/journal-15940aa/`,
//! made by fdmd at commit 15940aa, before the core redesign) verifies with today's fdmctl and is
//! served by today's fdmd: stored answers come back (102) byte for byte, numbering continues,
//! refunds of its tickets are checked against what was given back already, and its open tables,
//! check, deposit and clocked-in operator are still there.
#![allow(clippy::unwrap_used)]

mod support;

use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use support::{Daemon, fdmctl};

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/journal-15940aa")
}

fn fixture_receipts() -> Value {
    let text = std::fs::read_to_string(fixture_dir().join("receipts.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A copy of the fixture's journal and signer key in `data`.
fn copy_fixture(data: &Path) {
    for name in ["journal.sqlite", "dev-signer.key"] {
        std::fs::copy(fixture_dir().join(name), data.join(name)).unwrap();
    }
    // git checks files out 0644; fdmd refuses a key file readable by others.
    std::fs::set_permissions(
        data.join("dev-signer.key"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
}

/// The order s-1 exactly as the fixture's script sent it (same request digest).
fn order_s1() -> Value {
    json!({"request_id": "s-1", "operator": "85073003328", "event_type": "normal",
           "lines": [{"description": "Cola", "quantity": 2, "unit_price": "2.20", "vat": "A"},
                     {"description": "Wijn", "quantity": 2, "unit_price": "6.50", "vat": "A"},
                     {"description": "Croque", "quantity": 1, "unit_price": "9.80", "vat": "B"}],
           "payments": [{"method": "cash", "amount": "27.20"}]})
}

fn refund_one_wijn(request_id: &str) -> Value {
    json!({"request_id": request_id, "operator": "85073003328", "event_type": "normal",
           "original": {"request_id": "s-1"},
           "lines": [{"description": "Wijn", "quantity": -1, "unit_price": "6.50", "vat": "A",
                      "original_line": 1}],
           "payments": [{"method": "cash", "amount": "-6.50"}]})
}

fn post(d: &Daemon, token: &str, body: &Value) -> (StatusCode, Value) {
    d.request(
        Method::POST,
        "/v1/registers/dev-register/orders",
        Some(token),
        Some(serde_json::to_vec(body).unwrap()),
    )
}

#[test]
fn the_old_fixture_journal_and_its_export_verify_with_todays_fdmctl() {
    let dir = fixture_dir();
    let (code, out) = fdmctl(&["verify", "--data-dir", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("14 records"), "{out}");
    assert!(
        out.contains("8a9a1bf72d3260cbc6438fe3d451c42d2ed88680980cecc5efab8a75fc2f3760"),
        "the last hash of the old journal is unchanged: {out}"
    );
    let export = dir.join("export.jsonl");
    let (code, out) = fdmctl(&["verify", export.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn an_old_journal_is_served_after_the_upgrade() {
    let mut d = Daemon::start_dev_on(copy_fixture);
    let token = d.dev_register_token();
    let admin = d.admin_token();
    let old = fixture_receipts();

    // A resend of an order the old build signed gets its stored answer, signature included.
    let (status, resent) = post(&d, &token, &order_s1());
    assert_eq!(status, StatusCode::OK, "{resent}");
    assert_eq!(resent["code"], 102, "{resent}");
    for key in [
        "signature",
        "ticket_number",
        "journal_seq",
        "plu_hash",
        "event_counter",
    ] {
        assert_eq!(resent[key], old["s-1"][key], "{key} of the stored answer");
    }

    // Numbering continues: the old build's last NS/NR number in this series was 5 (r-1).
    assert_eq!(old["r-1"]["ticket_number"], "000005");
    let sale = json!({"request_id": "after-1", "operator": "85073003328", "event_type": "normal",
                      "lines": [{"description": "Cola", "quantity": 1, "unit_price": "2.20", "vat": "A"}],
                      "payments": [{"method": "cash", "amount": "2.20"}]});
    let (status, receipt) = post(&d, &token, &sale);
    assert!(status.is_success(), "{receipt}");
    assert_eq!(receipt["label"], "NS");
    assert_eq!(receipt["ticket_number"], "000006", "{receipt}");

    // s-1 line 1 (two Wijn) had one given back by r-1: one more is allowed, then no more.
    let (status, refund) = post(&d, &token, &refund_one_wijn("r-2"));
    assert!(status.is_success(), "{refund}");
    assert_eq!(refund["label"], "NR");
    assert_eq!(refund["ticket_number"], "000007", "{refund}");
    let (status, refused) = post(&d, &token, &refund_one_wijn("r-3"));
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert!(
        refused.to_string().contains("lines[0].quantity"),
        "the refusal names the line: {refused}"
    );

    // The open table, check and deposit of the old journal are still open.
    let (status, tables) = d.request(Method::GET, "/v1/tables", Some(&admin), None);
    assert_eq!(status, StatusCode::OK);
    let names: Vec<String> = tables
        .as_array()
        .unwrap()
        .iter()
        .map(|t| format!("{}/{}", t["table"], t["check"]))
        .collect();
    assert_eq!(names, ["\"12\"/null", "null/\"C-17\""], "{tables}");
    let (status, deposits) = d.request(Method::GET, "/v1/deposits", Some(&admin), None);
    assert_eq!(status, StatusCode::OK);
    assert_eq!(deposits[0]["request_id"], "dep-1", "{deposits}");
    let (_, status_doc) = d.request(Method::GET, "/v1/status", Some(&admin), None);
    assert_eq!(
        status_doc["clocked_in"][0]["operator"], "85073003328",
        "{status_doc}"
    );

    // Table 12 can be paid: its round from the old journal is on the final ticket.
    let pay = json!({"request_id": "pay-12", "operator": "85073003328", "event_type": "normal",
                     "table": "12", "lines": [], "payments": [{"method": "cash", "amount": "5.00"}]});
    let (status, paid) = post(&d, &token, &pay);
    assert!(status.is_success(), "{paid}");
    assert_eq!(paid["lines"][0]["description"], "Spa", "{paid}");

    assert!(d.stop().success());
    let (code, out) = fdmctl(&["verify", "--data-dir", d.data_dir().to_str().unwrap()]);
    assert_eq!(code, 0, "old and new records verify as one chain: {out}");
}
