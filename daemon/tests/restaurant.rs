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
    /// The admin token: restaurant reads, reports.
    token: String,
    /// till-1's own token: its orders.
    register_token: String,
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
        let register_token = r["http_token"].as_str().unwrap().to_owned();
        Till {
            d,
            token,
            register_token,
        }
    }

    fn post(&self, order: Value) -> (StatusCode, Value) {
        self.d.request(
            Method::POST,
            "/v1/registers/till-1/orders",
            Some(&self.register_token),
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

/// An RFC 3339 time `s` seconds from now.
fn in_seconds(s: i64) -> String {
    (chrono::Local::now() + chrono::Duration::seconds(s))
        .fixed_offset()
        .to_rfc3339()
}

/// Sleeps until just after `t` (bounded: `t` is a few seconds away).
fn wait_until(t: &str) {
    let end = chrono::DateTime::parse_from_rfc3339(t).unwrap();
    for _ in 0..200 {
        if chrono::Local::now().fixed_offset() > end + chrono::Duration::milliseconds(100) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("{t} did not pass within 10 s");
}

fn sale(id: &str, description: &str, price: &str) -> Value {
    json!({"request_id": id, "operator": ANNA, "event_type": "normal",
        "lines": [line(description, 1, price, "A")], "payments": [{"method": "card", "amount": price}]})
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
        "original": {"request_id": "s-1"}, "lines": [line("Croque", -1, "9.00", "B"), line("Cola", -1, "5.00", "A")]}), "lines");
    assert!(m.contains("more than what is left"), "{m}");
    // Without line references, each article is still capped at what was sold of it.
    let m = t.refused(json!({"request_id": "r-4", "operator": ANNA, "event_type": "normal",
        "original": {"request_id": "s-1"}, "lines": [line("Cola", -1, "2.50", "A"), line("Cola", -1, "2.50", "A")]}), "lines[1].quantity");
    assert!(m.contains("2 sold, 2 already given back"), "{m}");
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
    // of 1000 (700 after the deposit) before the party, and a supplement of 200 after it (here
    // settled early, before the end the estimate named).
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
        "catering_end": in_seconds(3600),
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
        "catering_settle": true,
        "lines": [{"description": "Supplement 8 p.", "quantity": 1, "unit_price": "200.00", "vat": "B", "category": "meal"}],
        "payments": [{"method": "transfer", "amount": "200.00"}]}));
    assert_eq!(sup["label"], "NS");
    assert_eq!(sup["catering_role"], "supplement");
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
    // at B (source 003's own example); redeemed with the voucher. The parts are named in the
    // tickets' language (French by default).
    let menu = t.ok(json!({"request_id": "m-1", "operator": ANNA, "event_type": "normal",
        "lines": [{"description": "Menu 3 services", "quantity": 1, "unit_price": "50.00", "menu_split": "coefficient"}],
        "payments": [{"method": "voucher", "amount": "50.00"}]}));
    assert_eq!(
        descriptions(&menu),
        [
            "1 Menu 3 services - boissons 17.50",
            "1 Menu 3 services - nourriture 32.50"
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

#[test]
fn faq_catering_the_supplement_or_closing_is_the_first_operation_after_the_event() {
    // Source 003: a communion (deposit 300, estimate 1000, supplement 200 the next morning) and a
    // VIP dinner for 480 whose estimate was right. Both end at the same time; after that, the
    // establishment registers nothing but their settlements (and clockings).
    let mut t = Till::start("");
    t.ok(staff("in", ANNA, "work_in"));
    let dep = t.ok(json!({"request_id": "dep-1", "operator": ANNA, "event_type": "normal", "purpose": "deposit",
        "catering_event": "comm-1",
        "lines": [{"description": "Acompte communion", "quantity": 1, "unit_price": "300.00", "vat": "B"}],
        "payments": [{"method": "transfer", "amount": "300.00"}]}));
    assert_eq!(dep["catering_role"], "deposit");
    let estimate = |end: Option<String>| {
        json!({"request_id": "est-1", "operator": ANNA, "event_type": "normal", "catering_event": "comm-1",
            "catering_end": end,
            "lines": [{"description": "Communion 40 p.", "quantity": 1, "unit_price": "1000.00", "vat": "B"}],
            "deposits": [{"request_id": "dep-1"}], "payments": [{"method": "transfer", "amount": "700.00"}]})
    };
    let m = t.refused(estimate(None), "catering_end");
    assert!(m.contains("names when the event ends"), "{m}");
    let m = t.refused(estimate(Some(in_seconds(-60))), "catering_end");
    assert!(m.contains("not in the future"), "{m}");
    // Far enough ahead for three orders on a loaded CI machine.
    let end = in_seconds(8);
    let est = t.ok(estimate(Some(end.clone())));
    assert_eq!(
        (
            est["label"].as_str(),
            est["total"].as_str(),
            est["ticket_number"].as_str()
        ),
        (Some("NS"), Some("700.00"), Some("000003"))
    );
    assert_eq!(
        (est["catering_role"].as_str(), est["catering_end"].as_str()),
        (Some("estimate"), Some(end.as_str()))
    );
    let text = est["text"].as_str().unwrap();
    assert!(
        text.contains("comm-1 (devis)") && text.contains("Fin de l'evenement"),
        "{text}"
    );
    let vip = t.ok(json!({"request_id": "vip-est", "operator": ANNA, "event_type": "normal", "catering_event": "vip-1",
        "catering_end": end,
        "lines": [{"description": "Diner VIP", "quantity": 480, "unit_price": "55.00", "vat": "B"}],
        "payments": [{"method": "transfer", "amount": "26400.00"}]}));
    assert_eq!(vip["total"], "26400.00");
    // During the events the restaurant works as usual.
    t.ok(sale("s-1", "Cola", "2.50"));
    wait_until(&end);
    // After them, every other operation is refused until each event is settled.
    let m = t.refused(sale("s-2", "Cola", "2.50"), "catering_event");
    assert!(
        m.contains(&format!("catering event comm-1 ended at {end}"))
            && m.contains("vip-1")
            && m.contains("catering_close"),
        "{m}"
    );
    let round = json!({"request_id": "t3", "operator": ANNA, "event_type": "pro_forma", "table": "3", "lines": [line("Cola", 1, "2.50", "A")]});
    t.refused(round, "catering_event");
    t.refused(json!({"request_id": "tr", "operator": ANNA, "event_type": "training", "lines": [line("Cola", 1, "2.50", "A")]}), "catering_event");
    t.refused(json!({"request_id": "c-1", "operator": ANNA, "event_type": "copy", "original": {"request_id": "s-1"}}), "catering_event");
    t.refused(json!({"request_id": "dep-2", "operator": ANNA, "event_type": "normal", "purpose": "deposit", "catering_event": "comm-1",
        "lines": [line("Acompte", 1, "50.00", "B")]}), "catering_event");
    // Staff still clock in: the supplement is registered the next morning by whoever is there.
    t.ok(staff("in-b", BERT, "work_in"));
    let status = t.get("/v1/status");
    assert_eq!(
        status["catering_due"].as_array().unwrap().len(),
        2,
        "{status}"
    );
    // The rule survives a restart: the state is folded from the journal again.
    t.d.restart();
    t.refused(sale("s-2", "Cola", "2.50"), "catering_event");
    let sup = t.ok(json!({"request_id": "sup-1", "operator": BERT, "event_type": "normal", "catering_event": "comm-1",
        "lines": [{"description": "Supplement 8 p.", "quantity": 1, "unit_price": "200.00", "vat": "B"}],
        "payments": [{"method": "transfer", "amount": "200.00"}]}));
    assert_eq!(
        (
            sup["label"].as_str(),
            sup["ticket_number"].as_str(),
            sup["catering_role"].as_str()
        ),
        (Some("NS"), Some("000007"), Some("supplement"))
    );
    assert_eq!(
        (sup["event_counter"].as_u64(), sup["total"].as_str()),
        (Some(7), Some("200.00"))
    );
    // vip-1 still waits for its settlement.
    let m = t.refused(sale("s-2", "Cola", "2.50"), "catering_event");
    assert!(m.contains("vip-1") && !m.contains("comm-1"), "{m}");
    let close = t.ok(
        json!({"request_id": "vip-ok", "operator": BERT, "event_type": "normal",
        "purpose": "catering_close", "catering_event": "vip-1"}),
    );
    assert_eq!(
        (
            close["label"].as_str(),
            close["total"].as_str(),
            close["ticket_number"].as_str()
        ),
        (Some("NS"), Some("0.00"), Some("000008"))
    );
    assert_eq!(close["catering_role"], "no_correction");
    assert_eq!(
        (
            close["lines"][0]["description"].as_str(),
            close["lines"][0]["vat"].as_str()
        ),
        (Some("NO CORRECTION"), Some("D"))
    );
    assert!(
        close["text"]
            .as_str()
            .unwrap()
            .contains("vip-1 (devis confirme, sans correction)")
    );
    // Settled: operations go on, and the events' tickets are closed.
    let s2 = t.ok(sale("s-2", "Cola", "2.50"));
    assert_eq!(s2["ticket_number"], "000009");
    let m = t.refused(json!({"request_id": "sup-2", "operator": BERT, "event_type": "normal", "catering_event": "comm-1",
        "lines": [line("Extra", 1, "20.00", "B")]}), "catering_event");
    assert!(m.contains("was settled by journal record"), "{m}");
    assert!(
        t.get("/v1/status")["catering_due"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    // Every ticket of the event, reprinted for the client.
    let ev = t.get("/v1/catering/comm-1");
    assert_eq!(
        (ev["status"].as_str(), ev["ends_at"].as_str()),
        (Some("settled"), Some(end.as_str()))
    );
    assert_eq!(ev["settled_by"]["request_id"], "sup-1");
    let tickets = ev["tickets"].as_array().unwrap();
    let got: Vec<(&str, &str)> = tickets
        .iter()
        .map(|x| {
            (
                x["total"].as_str().unwrap(),
                x["catering_role"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("300.00", "deposit"),
            ("700.00", "estimate"),
            ("200.00", "supplement")
        ]
    );
    for (x, n) in tickets.iter().zip([2, 3, 7]) {
        let text = x["text"].as_str().unwrap();
        for needle in ["TICKET DE CAISSE TVA", &format!("NS {n:06}"), "comm-1 ("] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
    }
    let vip = t.get("/v1/catering/vip-1");
    assert_eq!(vip["settled_by"]["catering_role"], "no_correction");
    t.verify();
}

#[test]
fn a_counter_check_is_tracked_from_its_pro_forma_to_its_sale() {
    let mut t = Till::start("");
    t.ok(staff("in", ANNA, "work_in"));
    // A counter bill printed before payment: a pro forma with a check id, no table.
    let bill = t.ok(
        json!({"request_id": "c17-1", "operator": ANNA, "event_type": "pro_forma", "check": "C-17",
        "lines": [line("Wafel", 2, "4.50", "C"), line("Koffie", 2, "3.00", "A")]}),
    );
    assert_eq!(
        (bill["label"].as_str(), bill["check"].as_str()),
        (Some("PS"), Some("C-17"))
    );
    assert!(bill["text"].as_str().unwrap().contains("C-17"));
    // The customer adds a coffee: a second pro forma round, and the reprinted bill.
    t.ok(
        json!({"request_id": "c17-2", "operator": ANNA, "event_type": "pro_forma", "check": "C-17",
        "lines": [line("Koffie", 1, "3.00", "A")]}),
    );
    let again = t.ok(json!({"request_id": "c17-3", "operator": ANNA, "event_type": "pro_forma", "check": "C-17", "bill": true}));
    assert_eq!(
        (again["table_role"].as_str(), again["total"].as_str()),
        (Some("bill"), Some("18.00"))
    );
    let open = t.get("/v1/tables");
    assert_eq!(open.as_array().unwrap().len(), 1, "{open}");
    assert_eq!(
        (open[0]["check"].as_str(), open[0]["total"].as_str()),
        (Some("C-17"), Some("18.00"))
    );
    assert!(open[0]["table"].is_null());
    assert_eq!(open[0]["pro_formas"].as_array().unwrap().len(), 3);
    // It is open in the status document, after a restart, and fdmctl lists it.
    t.d.restart();
    let status = t.get("/v1/status");
    assert_eq!(status["open_tables"][0]["check"], "C-17", "{status}");
    let cfg = t.d.config_file.clone().unwrap();
    let (code, out) = fdmctl(&["tables", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("check C-17") && out.contains("18.00"), "{out}");
    // Every pro forma ends in a normal sale: the Z report names the open check.
    t.ok(staff("out", ANNA, "work_out"));
    let (code, z) = t.d.request(
        Method::POST,
        "/v1/admin/reports",
        Some(&t.token),
        Some(br#"{"kind":"z","register":"till-1"}"#.to_vec()),
    );
    assert_eq!(code, StatusCode::CONFLICT, "{z}");
    assert_eq!(z["open_tables"][0]["check"], "C-17", "{z}");
    t.ok(staff("in-2", ANNA, "work_in"));
    // The sale closes it and lists every line of its pro formas.
    let paid = t.ok(
        json!({"request_id": "c17-pay", "operator": ANNA, "event_type": "normal", "check": "C-17",
        "payments": [{"method": "cash", "amount": "18.00"}]}),
    );
    assert_eq!(
        (paid["label"].as_str(), paid["table_role"].as_str()),
        (Some("NS"), Some("final"))
    );
    assert_eq!(
        descriptions(&paid),
        ["2 Wafel 9.00", "2 Koffie 6.00", "1 Koffie 3.00"]
    );
    assert!(t.get("/v1/tables").as_array().unwrap().is_empty());
    // A check and a table together are refused.
    t.refused(json!({"request_id": "bad", "operator": ANNA, "event_type": "pro_forma", "check": "C-18", "table": "4",
        "lines": [line("Koffie", 1, "3.00", "A")]}), "check");
    t.verify();
}

#[test]
fn refund_lines_are_matched_to_the_original_line() {
    let mut t = Till::start("");
    t.ok(staff("in", ANNA, "work_in"));
    // Two lines of the same wine at two prices (happy hour), and a dish.
    t.ok(json!({"request_id": "s-1", "operator": ANNA, "event_type": "normal",
        "lines": [line("Wijn", 3, "6.00", "A"), line("Wijn", 2, "4.50", "A"), line("Pasta", 1, "16.00", "B")],
        "payments": [{"method": "card", "amount": "43.00"}]}));
    let refund = |id: &str, lines: Value| json!({"request_id": id, "operator": ANNA, "event_type": "normal", "original": {"request_id": "s-1"}, "lines": lines});
    let wine = |q: i64, price: &str, at: u64| json!({"description": "Wijn", "quantity": q, "unit_price": price, "vat": "A", "original_line": at});
    let r = t.ok(refund("r-1", json!([wine(-2, "4.50", 1)])));
    assert_eq!(
        (r["label"].as_str(), r["total"].as_str()),
        (Some("NR"), Some("-9.00"))
    );
    assert_eq!(r["lines"][0]["original_line"], 1);
    assert_eq!(r["refund_of"]["request_id"], "s-1");
    let m = t.refused(
        refund("r-2", json!([wine(-1, "4.50", 1)])),
        "lines[0].quantity",
    );
    assert!(
        m.contains("more than line 1 of ticket s-1 has left: 2 sold, 2 already given back"),
        "{m}"
    );
    let m = t.refused(
        refund("r-3", json!([wine(-1, "4.50", 0)])),
        "lines[0].original_line",
    );
    assert!(
        m.contains("line 0 of ticket s-1 is \"Wijn\" at 6.00 (A)"),
        "{m}"
    );
    let m = t.refused(
        refund("r-4", json!([wine(-1, "6.00", 7)])),
        "lines[0].original_line",
    );
    assert!(m.contains("has 3 line(s)"), "{m}");
    // Within one refund too: 2 + 2 of line 0 is more than its 3.
    t.refused(
        refund("r-5", json!([wine(-2, "6.00", 0), wine(-2, "6.00", 0)])),
        "lines[1].quantity",
    );
    let r = t.ok(refund("r-6", json!([wine(-2, "6.00", 0)])));
    assert_eq!(r["total"], "-12.00");
    // The state is rebuilt from the journal: after a restart line 0 has 1 left.
    t.d.restart();
    t.refused(
        refund("r-7", json!([wine(-2, "6.00", 0)])),
        "lines[0].quantity",
    );
    let r = t.ok(refund("r-8", json!([wine(-1, "6.00", 0)])));
    assert_eq!(r["ticket_number"], "000005");
    // Every glass of wine is back; a refund without a line reference is capped too.
    let m = t.refused(
        refund("r-9", json!([line("Wijn", -1, "6.00", "A")])),
        "lines[0].quantity",
    );
    assert!(m.contains("5 sold, 5 already given back"), "{m}");
    t.verify();
}
