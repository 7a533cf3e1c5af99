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

#[test]
fn copies_refunds_and_training() {
    let t = Till::start("");
    t.ok(staff("in", ANNA, "work_in"));
    let sale = t.ok(
        json!({"request_id": "s-1", "operator": ANNA, "event_type": "normal",
        "lines": [line("Cola", 2, "2.50", "A"), line("Croque", 1, "9.00", "B")],
        "payments": [{"method": "cash", "amount": "14.00"}]}),
    );
    assert_eq!(sale["label"], "NS");
    // A copy reprints the original: CS, its own series, referencing it, same lines and total.
    let copy = t.ok(json!({"request_id": "c-1", "operator": ANNA, "event_type": "copy", "original": {"request_id": "s-1"}}));
    assert_eq!(
        (copy["label"].as_str(), copy["ticket_number"].as_str()),
        (Some("CS"), Some("000001"))
    );
    assert_eq!(copy["copy_of"]["request_id"], "s-1");
    assert_eq!(copy["copy_of"]["journal_seq"], sale["journal_seq"]);
    assert_eq!(copy["total"], "14.00");
    assert_eq!(copy["plu_hash"], sale["plu_hash"]);
    assert_eq!(copy["payments"], sale["payments"]);
    t.refused(
        json!({"request_id": "c-2", "operator": ANNA, "event_type": "copy"}),
        "original",
    );
    t.refused(json!({"request_id": "c-3", "operator": ANNA, "event_type": "copy", "original": {"request_id": "nope"}}), "original");
    // A refund references the original: NR; only its articles, never more than it was.
    let refund = t.ok(
        json!({"request_id": "r-1", "operator": ANNA, "event_type": "normal",
        "original": {"request_id": "s-1"}, "lines": [line("Cola", -1, "2.50", "A")],
        "payments": [{"method": "cash", "amount": "-2.50"}]}),
    );
    assert_eq!(
        (refund["label"].as_str(), refund["total"].as_str()),
        (Some("NR"), Some("-2.50"))
    );
    assert_eq!(
        refund["refund_of"]["ticket_number"], 2,
        "the work in took NS 1"
    );
    t.refused(
        json!({"request_id": "r-2", "operator": ANNA, "event_type": "normal",
        "original": {"request_id": "s-1"}, "lines": [line("Steak", -1, "2.50", "A")]}),
        "lines[0]",
    );
    let m = t.refused(json!({"request_id": "r-3", "operator": ANNA, "event_type": "normal",
        "original": {"request_id": "s-1"}, "lines": [line("Croque", -1, "9.00", "B"), line("Cola", -1, "2.50", "A"), line("Cola", -1, "2.50", "A")]}), "lines");
    assert!(m.contains("more than what is left"), "{m}");
    // A copy of the refund is a CR.
    let cr = t.ok(json!({"request_id": "c-4", "operator": ANNA, "event_type": "copy", "original": {"request_id": "r-1"}}));
    assert_eq!(cr["label"], "CR");
    // Training: TS, its own series, no clock-in needed, never touches tables.
    let tr = t.ok(json!({"request_id": "tr-1", "operator": BERT, "event_type": "training", "table": "5",
        "lines": [line("Cola", 1, "2.50", "A")], "payments": [{"method": "cash", "amount": "2.50"}]}));
    assert_eq!(
        (tr["label"].as_str(), tr["ticket_number"].as_str()),
        (Some("TS"), Some("000001"))
    );
    assert!(t.get("/v1/tables").as_array().unwrap().is_empty());
    t.verify();
}

#[test]
fn faq_deposit_and_catering_estimate_then_supplement() {
    // Source 003: a caterer receives a deposit of 300 for a communion, registers the estimate
    // of 1000 (700 after the deposit) before the party, and a supplement of 200 after it.
    let t = Till::start("");
    t.ok(staff("in", ANNA, "work_in"));
    let dep = t.ok(json!({"request_id": "dep-1", "operator": ANNA, "event_type": "normal", "purpose": "deposit",
        "catering_event": "communion-1",
        "lines": [{"description": "Acompte communion", "quantity": 1, "unit_price": "300.00", "vat": "B", "category": "meal"}],
        "payments": [{"method": "transfer", "amount": "300.00"}]}));
    assert_eq!(
        (dep["label"].as_str(), dep["total"].as_str()),
        (Some("NS"), Some("300.00"))
    );
    assert_eq!(dep["vat"][0]["vat"], "32.14");
    assert_eq!(t.get("/v1/deposits").as_array().unwrap().len(), 1);
    let est = t.ok(json!({"request_id": "est-1", "operator": ANNA, "event_type": "normal", "catering_event": "communion-1",
        "lines": [{"description": "Communion 40 p.", "quantity": 1, "unit_price": "1000.00", "vat": "B", "category": "meal"}],
        "deposits": [{"request_id": "dep-1"}],
        "payments": [{"method": "transfer", "amount": "700.00"}]}));
    assert_eq!(est["total"], "700.00");
    assert_eq!(
        descriptions(&est),
        ["1 Communion 40 p. 1000.00", "-1 Acompte communion -300.00"]
    );
    assert_eq!(est["lines"][1]["role"], "deposit_applied");
    assert_eq!(est["deposits_applied"][0]["request_id"], "dep-1");
    // Deducted once.
    let m = t.refused(
        json!({"request_id": "est-2", "operator": ANNA, "event_type": "normal",
        "lines": [line("x", 1, "400.00", "B")], "deposits": [{"request_id": "dep-1"}]}),
        "deposits",
    );
    assert!(m.contains("already deducted"), "{m}");
    assert!(t.get("/v1/deposits").as_array().unwrap().is_empty());
    let sup = t.ok(json!({"request_id": "sup-1", "operator": ANNA, "event_type": "normal", "catering_event": "communion-1",
        "lines": [{"description": "Supplement 8 p.", "quantity": 1, "unit_price": "200.00", "vat": "B", "category": "meal"}],
        "payments": [{"method": "transfer", "amount": "200.00"}]}));
    assert_eq!(sup["label"], "NS");
    // All three tickets (300, 700, 200) are listed for the client and reprinted as copies.
    let ev = t.get("/v1/catering/communion-1");
    let tickets = ev["tickets"].as_array().unwrap();
    let totals: Vec<&str> = tickets
        .iter()
        .map(|x| x["total"].as_str().unwrap())
        .collect();
    assert_eq!(totals, ["300.00", "700.00", "200.00"]);
    for (i, x) in tickets.iter().enumerate() {
        let c = t.ok(
            json!({"request_id": format!("copy-{i}"), "operator": ANNA, "event_type": "copy",
            "original": {"request_id": x["request_id"]}}),
        );
        assert_eq!(c["label"], "CS");
        assert_eq!(c["total"], x["total"]);
    }
    t.verify();
}

#[test]
fn faq_vouchers_menus_and_discounts() {
    let t = Till::start("");
    t.ok(staff("in", ANNA, "work_in"));
    // Selling a multi-purpose voucher is money in, not a sale: no label, no ticket number.
    let v = t.ok(json!({"request_id": "v-1", "operator": ANNA, "event_type": "normal", "purpose": "voucher_sale",
        "vouchers": [{"code": "GIFT-0001", "amount": "50.00"}],
        "payments": [{"method": "cash", "amount": "50.00"}]}));
    assert_eq!(v["record_kind"], "money_movement");
    assert!(
        v["label"].is_null() && v["ticket_number"].is_null() && v["event_counter"].is_null(),
        "{v}"
    );
    t.refused(json!({"request_id": "v-2", "operator": ANNA, "event_type": "normal", "purpose": "voucher_sale",
        "vouchers": [{"code": "GIFT-0002", "amount": "50.00"}], "payments": [{"method": "card", "amount": "40.00"}]}), "payments");
    // All-in menu of 50.00 with the administration's coefficient: 17.50 drinks at A, 32.50 food
    // at B (source 003's own example); redeemed with the voucher.
    let menu = t.ok(json!({"request_id": "m-1", "operator": ANNA, "event_type": "normal",
        "lines": [{"description": "Menu 3 services", "quantity": 1, "unit_price": "50.00", "menu_split": "coefficient"}],
        "payments": [{"method": "voucher", "amount": "50.00"}]}));
    assert_eq!(
        descriptions(&menu),
        [
            "1 Menu 3 services - drinks 17.50",
            "1 Menu 3 services - food 32.50"
        ]
    );
    assert_eq!(
        (
            menu["lines"][0]["vat"].as_str(),
            menu["lines"][1]["vat"].as_str()
        ),
        (Some("A"), Some("B"))
    );
    assert_eq!(menu["lines"][0]["role"], "menu_part");
    assert_eq!(menu["vat"][0]["vat"], "3.04");
    assert_eq!(menu["vat"][1]["vat"], "3.48");
    // A menu of 2 × 45.00 whose parts cost 20 (wine, A) + 40 (food, B) separately: the
    // reduction is shared in proportion (15.00 / 30.00).
    let comp = t.ok(
        json!({"request_id": "m-2", "operator": ANNA, "event_type": "normal",
        "lines": [{"description": "Menu vin", "quantity": 2, "unit_price": "45.00", "components": [
            {"description": "wijn", "unit_price": "20.00", "vat": "A"},
            {"description": "eten", "unit_price": "40.00", "vat": "B"}]}]}),
    );
    assert_eq!(
        descriptions(&comp),
        ["2 Menu vin - wijn 30.00", "2 Menu vin - eten 60.00"]
    );
    // A discount is separate lines, split per VAT rate in proportion: 10 % of 20 (A) + 80 (B).
    let disc = t.ok(
        json!({"request_id": "d-1", "operator": ANNA, "event_type": "normal",
        "lines": [line("Wijn", 1, "20.00", "A"), line("Steak", 2, "40.00", "B")],
        "discounts": [{"description": "Korting 10%", "percent": "10"}],
        "payments": [{"method": "card", "amount": "90.00"}]}),
    );
    assert_eq!(
        descriptions(&disc),
        [
            "1 Wijn 20.00",
            "2 Steak 80.00",
            "1 Korting 10% -2.00",
            "1 Korting 10% -8.00"
        ]
    );
    assert_eq!(disc["lines"][2]["role"], "discount");
    assert_eq!(
        (
            disc["lines"][2]["vat"].as_str(),
            disc["lines"][3]["vat"].as_str()
        ),
        (Some("A"), Some("B"))
    );
    // A fixed 5.00 on 10.00 (A) + 20.00 (B): 1.67 / 3.33.
    let fixed = t.ok(
        json!({"request_id": "d-2", "operator": ANNA, "event_type": "normal",
        "lines": [line("Bier", 4, "2.50", "A"), line("Pasta", 1, "20.00", "B")],
        "discounts": [{"description": "Korting", "amount": "5.00"}]}),
    );
    assert_eq!(fixed["total"], "25.00");
    assert_eq!(fixed["lines"][2]["total"], "-1.67");
    assert_eq!(fixed["lines"][3]["total"], "-3.33");
    t.refused(json!({"request_id": "d-3", "operator": ANNA, "event_type": "normal",
        "lines": [line("Bier", 1, "2.50", "A")], "discounts": [{"description": "Korting", "amount": "5.00"}]}), "discounts[0]");
    t.verify();
}
