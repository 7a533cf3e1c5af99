//! Restaurant workflows end to end through the real binary over HTTP: staff clocking, table
//! service (rounds, corrections, bill, final ticket, moves, merges), copies, refunds, training,
//! the FAQ cases (deposits, catering, vouchers, menus, discounts), and that the journal verifies.
#![allow(clippy::unwrap_used)]

mod support;

use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use support::{Daemon, fdmctl};

const ANNA: &str = "85073003328";
const BERT: &str = "00000000097";

struct Till {
    d: Daemon,
    token: String,
}

impl Till {
    fn start(extra: &str) -> Till {
        let d = Daemon::start_with_config(
            &format!("[restaurant]\nrequire_work_in = true\n{extra}"),
            &[],
        );
        let token = d.admin_token();
        let (status, r) = d.request(
            Method::POST,
            "/v1/admin/registers",
            Some(&token),
            Some(br#"{"id":"till-1"}"#.to_vec()),
        );
        assert_eq!(status, StatusCode::CREATED, "{r}");
        Till { d, token }
    }

    fn post(&self, order: Value) -> (StatusCode, Value) {
        self.d.request(
            Method::POST,
            "/v1/registers/till-1/orders",
            Some(&self.token),
            Some(serde_json::to_vec(&order).unwrap()),
        )
    }

    fn ok(&self, order: Value) -> Value {
        let (status, r) = self.post(order);
        assert_eq!(status, StatusCode::CREATED, "{r}");
        r
    }

    fn refused(&self, order: Value, field: &str) -> String {
        let (status, r) = self.post(order);
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{r}");
        assert_eq!(r["field"], field, "{r}");
        r["message"].as_str().unwrap().to_owned()
    }

    fn get(&self, path: &str) -> Value {
        let (status, v) = self.d.request(Method::GET, path, Some(&self.token), None);
        assert_eq!(status, StatusCode::OK, "{v}");
        v
    }

    fn verify(&self) {
        let (code, out) = fdmctl(&["verify", "--data-dir", self.d.data_dir().to_str().unwrap()]);
        assert_eq!(code, 0, "{out}");
    }
}

fn line(d: &str, q: i64, p: &str, v: &str) -> Value {
    json!({"description": d, "quantity": q, "unit_price": p, "vat": v})
}

fn staff(id: &str, op: &str, purpose: &str) -> Value {
    json!({"request_id": id, "operator": op, "event_type": "normal", "purpose": purpose})
}

fn descriptions(r: &Value) -> Vec<String> {
    r["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            format!(
                "{} {} {}",
                l["quantity"].as_str().unwrap(),
                l["description"].as_str().unwrap(),
                l["total"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn staff_must_clock_in_and_presence_survives_a_restart() {
    let mut t = Till::start("");
    let sale = json!({"request_id": "s-1", "operator": ANNA, "event_type": "normal",
        "lines": [line("Cola", 1, "2.50", "A")], "payments": [{"method": "cash", "amount": "2.50"}]});
    let m = t.refused(sale.clone(), "operator");
    assert!(m.contains("has not clocked in"), "{m}");
    let w = t.ok(staff("in-1", ANNA, "work_in"));
    // FDM v1: a signed NS of 0 with one line at D.
    assert_eq!(
        (w["label"].as_str(), w["total"].as_str()),
        (Some("NS"), Some("0.00"))
    );
    assert_eq!(w["purpose"], "work_in");
    assert_eq!(w["lines"][0]["description"], "WORK IN");
    assert_eq!(w["lines"][0]["vat"], "D");
    t.refused(staff("in-2", ANNA, "work_in"), "operator");
    t.refused(staff("out-0", BERT, "work_out"), "operator");
    let s = t.ok(sale.clone());
    assert_eq!(s["ticket_number"], "000002");
    // A resend after the state moved on still gets its stored receipt (102).
    let (status, again) = t.post(staff("in-1", ANNA, "work_in"));
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["code"], 102);
    t.ok(staff("in-b", BERT, "work_in"));
    let status = t.get("/v1/status");
    assert_eq!(
        status["clocked_in"].as_array().unwrap().len(),
        2,
        "{status}"
    );
    t.d.restart();
    // Rebuilt from the journal: Anna is still clocked in, and can clock out.
    let p = t.get("/v1/staff/presence");
    assert_eq!(p["clocked_in"].as_array().unwrap().len(), 2, "{p}");
    t.ok(staff("out-1", ANNA, "work_out"));
    t.refused(
        json!({"request_id": "s-2", "operator": ANNA, "event_type": "normal", "lines": [line("Cola", 1, "2.50", "A")]}),
        "operator",
    );
    let p = t.get("/v1/staff/presence");
    let shifts = p["shifts"].as_array().unwrap();
    assert_eq!(shifts.len(), 2, "{p}");
    let anna = shifts.iter().find(|s| s["operator"] == ANNA).unwrap();
    assert!(
        anna["start"].is_string() && anna["end"].is_string(),
        "{anna}"
    );
    let bert = shifts.iter().find(|s| s["operator"] == BERT).unwrap();
    assert!(bert["end"].is_null());
    let cfg = t.d.config_file.clone().unwrap();
    let (code, out) = fdmctl(&["presence", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(ANNA) && out.contains("(at work)"), "{out}");
    t.verify();
}

#[test]
fn table_service_rounds_corrections_bill_move_merge_and_final_ticket() {
    let mut t = Till::start("");
    t.ok(staff("in", ANNA, "work_in"));
    let round = |id: &str, table: &str, lines: Vec<Value>| json!({"request_id": id, "operator": ANNA, "event_type": "pro_forma", "table": table, "lines": lines});
    // Round 1 and 2 on table 12; a correction is a new negative line (PR).
    let r1 = t.ok(round(
        "t12-1",
        "12",
        vec![line("Cola", 2, "2.50", "A"), line("Steak", 2, "24.00", "B")],
    ));
    assert_eq!(
        (r1["label"].as_str(), r1["table_role"].as_str()),
        (Some("PS"), Some("round"))
    );
    let c = t.ok(round("t12-2", "12", vec![line("Steak", -1, "24.00", "B")]));
    assert_eq!(c["label"], "PR");
    assert_eq!(c["ticket_number"], "000002");
    // Frozen lines: you cannot take away what the table does not have.
    let m = t.refused(
        round("t12-3", "12", vec![line("Cola", -3, "2.50", "A")]),
        "lines[0].quantity",
    );
    assert!(m.contains("has 2 of \"Cola\""), "{m}");
    t.refused(
        round("t12-4", "12", vec![line("Wine", -1, "5.00", "A")]),
        "lines[0].quantity",
    );
    // Table 7 opens, moves to 9, and is merged into 12.
    t.ok(round("t7-1", "7", vec![line("Water", 1, "3.00", "A")]));
    t.refused(json!({"request_id": "mv-bad", "operator": ANNA, "event_type": "normal", "purpose": "table_move", "table": "7", "to_table": "12"}), "to_table");
    let mv = t.ok(json!({"request_id": "mv-1", "operator": ANNA, "event_type": "normal", "purpose": "table_move", "table": "7", "to_table": "9"}));
    assert_eq!(mv["record_kind"], "table_change");
    assert!(
        mv["label"].is_null() && mv["ticket_number"].is_null(),
        "{mv}"
    );
    let tables = t.get("/v1/tables");
    let names: Vec<&str> = tables
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["table"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["12", "9"]);
    t.ok(json!({"request_id": "mg-1", "operator": ANNA, "event_type": "normal", "purpose": "table_merge", "table": "9", "to_table": "12"}));
    // The bill before payment is a pro forma of the table's lines; it adds nothing.
    let bill = t.ok(json!({"request_id": "bill-1", "operator": ANNA, "event_type": "pro_forma", "table": "12", "bill": true}));
    assert_eq!(
        (bill["label"].as_str(), bill["total"].as_str()),
        (Some("PS"), Some("32.00"))
    );
    assert_eq!(bill["table_role"], "bill");
    // Open tables survive a restart (rebuilt from the journal) and fdmctl shows them.
    t.d.restart();
    let cfg = t.d.config_file.clone().unwrap();
    let (code, out) = fdmctl(&["tables", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("table 12") && out.contains("32.00"), "{out}");
    assert!(t.get("/v1/status")["open_tables"].as_array().unwrap().len() == 1);
    // The final ticket lists every operation, corrections included, plus what is added now.
    let fin = t.ok(
        json!({"request_id": "pay-12", "operator": ANNA, "event_type": "normal", "table": "12",
        "lines": [line("Koffie", 2, "2.80", "A")],
        "payments": [{"method": "card", "amount": "37.60"}]}),
    );
    assert_eq!(
        (fin["label"].as_str(), fin["total"].as_str()),
        (Some("NS"), Some("37.60"))
    );
    assert_eq!(fin["table_role"], "final");
    assert_eq!(
        descriptions(&fin),
        [
            "2 Cola 5.00",
            "2 Steak 48.00",
            "-1 Steak -24.00",
            "1 Water 3.00",
            "2 Koffie 5.60"
        ]
    );
    assert_eq!(fin["lines"][2]["origin"]["label"], "PR");
    assert!(t.get("/v1/tables").as_array().unwrap().is_empty());
    // Every pro forma ended in a normal sale; the journal verifies.
    t.verify();
}
