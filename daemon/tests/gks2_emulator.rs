//! The GKS 2.0 FDM emulator (`[gks2_fdm]`, issue 18) through its public interface: a real
//! `fdmd --dev` serving it on a free loopback port, driven by fdmd's own GKS 2.0 client.
//! The scenario uses the official scenario names the public clients use (docs/gks2.md); every
//! answer is checked: counters, signature (with the emulator's public key), vatCalc against
//! fdmd's own ticket computation. Resends, authentication and bounds are checked too.
#![allow(clippy::unwrap_used)]

#[path = "support/gks2.rs"]
mod gks2_support;
mod support;
#[path = "support/test_ca.rs"]
mod test_ca;

use fdmd::gks2::auth;
use fdmd::gks2::client::{Client, ClientConfig, Gks2Error};
use fdmd::gks2::fdm::signed_text;
use fdmd::gks2::model::{EventLabel, Mutation, SignResult};
use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::time::Duration;
use support::{Daemon, free_port};

const DEVICE: &str = "emu-device-1";
const SECRET: &str = "s3cret-of-the-test";
const MAX_BODY: usize = 8 * 1024;

struct Emu {
    daemon: Daemon,
    addr: std::net::SocketAddr,
    client: Client,
    rt: tokio::runtime::Runtime,
    _secret_dir: tempfile::TempDir,
}

fn start() -> Emu {
    start_with("")
}

/// The emulator with `extra` lines added to its `[gks2_fdm]` section.
fn start_with(extra: &str) -> Emu {
    let secret_dir = tempfile::tempdir().unwrap();
    let secret_file = secret_dir.path().join("gks2.secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    // Port 0: the emulator binds a free port itself and logs it (no race with other tests).
    let daemon = Daemon::start_dev_with_config(&format!(
        "[gks2_fdm]\nlisten = \"127.0.0.1:0\"\ndevice_id = \"{DEVICE}\"\nfdm_id = \"FDMEMU00042\"\nsecret_file = \"{}\"\nmax_body_bytes = {MAX_BODY}\n{extra}",
        secret_file.display()
    ));
    let log = daemon.log();
    assert!(
        log.contains("not certified, for development and tests"),
        "{log}"
    );
    let addr = gks2_support::emulator_addr(&log);
    let client = client(addr, DEVICE, SECRET);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    Emu {
        daemon,
        addr,
        client,
        rt,
        _secret_dir: secret_dir,
    }
}

fn base(ticket: u64, time: &str) -> Value {
    json!({
        "language": "NL", "vatNo": "BE0123456749", "estNo": "2000000042",
        "posId": "CFDMD0000001", "posFiscalTicketNo": ticket, "posDateTime": time,
        "posSwVersion": "fdmd-test", "terminalId": "TER-1-BAR", "deviceId": "till-1",
        "bookingPeriodId": "7f2c1a52-3c1e-4a55-9c59-2d0f6f0c0001", "bookingDate": "2026-12-06",
        "ticketMedium": "PAPER", "employeeId": "85073003328"
    })
}

fn now_text() -> String {
    chrono::Local::now()
        .format("%Y-%m-%dT%H:%M:%S%:z")
        .to_string()
}

/// A single-product line: (name, quantity, unit price, VAT label, negative reason).
fn line(name: &str, qty: i64, price: &str, vat: &str, reason: Option<&str>) -> Value {
    let p: rust_decimal::Decimal = price.parse().unwrap();
    let total = p * rust_decimal::Decimal::from(qty);
    let price_num: Value = serde_json::from_str(&p.to_string()).unwrap();
    let total_num: Value = serde_json::from_str(&total.normalize().to_string()).unwrap();
    let mut product = json!({
        "productId": name, "productName": name, "departmentId": "1", "departmentName": "Drinks",
        "quantity": qty, "quantityType": "PIECE", "unitPrice": price_num,
        "vats": [{"label": vat, "price": total_num, "priceChanges": []}]
    });
    if let Some(r) = reason {
        product["negQuantityReason"] = json!(r);
    }
    json!({"lineType": "SINGLE_PRODUCT", "mainProduct": product, "lineTotal": total_num})
}

/// Lines as they leave a cost centre ([OD]'s `negateTransactionLine`): quantity, VAT prices and
/// line total negated, `COST_CENTER_CHANGE` on each quantity that becomes negative.
fn leaving(lines: &[Value]) -> Vec<Value> {
    let negate = |v: &Value| -> Value {
        let d: rust_decimal::Decimal = v.to_string().parse().unwrap();
        serde_json::from_str(&(-d).normalize().to_string()).unwrap()
    };
    lines
        .iter()
        .map(|l| {
            let mut l = l.clone();
            l["mainProduct"]["quantity"] = negate(&l["mainProduct"]["quantity"]);
            l["lineTotal"] = negate(&l["lineTotal"]);
            if let Some(vats) = l["mainProduct"]["vats"].as_array_mut() {
                for v in vats {
                    v["price"] = negate(&v["price"]);
                }
            }
            if l["mainProduct"]["quantity"].as_f64().unwrap() < 0.0 {
                l["mainProduct"]["negQuantityReason"] = json!("COST_CENTER_CHANGE");
            } else {
                l["mainProduct"]
                    .as_object_mut()
                    .unwrap()
                    .remove("negQuantityReason");
            }
            l
        })
        .collect()
}

fn transaction(lines: Vec<Value>) -> Value {
    let total: rust_decimal::Decimal = lines
        .iter()
        .map(|l| {
            l["lineTotal"]
                .to_string()
                .parse::<rust_decimal::Decimal>()
                .unwrap()
        })
        .sum();
    json!({"transactionLines": lines, "transactionTotal": serde_json::from_str::<Value>(&total.normalize().to_string()).unwrap()})
}

fn with(mut base: Value, extra: Value) -> Value {
    for (k, v) in extra.as_object().unwrap() {
        base[k] = v.clone();
    }
    base
}

/// The own fields of a turnover report input (docs/gks2.md §2.3): X without `report_no`, Z
/// with it.
fn report_fields(report_no: Option<u64>) -> Value {
    let mut v = json!({
        "posDevices": [{"posId": "CFDMD0000001", "terminalId": "TER-1-BAR",
            "firstPosDateTime": "2026-12-06T10:00:00+01:00",
            "lastPosDateTime": "2026-12-06T22:00:00+01:00"}],
        "fdmDevices": [{"fdmId": "FDMEMU00042", "firstFdmDateTime": "2026-12-06T10:00:01+01:00",
            "firstTotalCounter": 1, "lastFdmDateTime": "2026-12-06T22:00:01+01:00",
            "lastTotalCounter": 12}],
        "turnover": {
            "transactions": [{"eventLabel": "N", "ticketCount": 4, "amount": 10.5}],
            "departments": [{"departmentId": "drink", "departmentName": "drink", "amount": 10.5}],
            "vats": [{"label": "A", "rate": 21, "taxableAmount": 8.68, "vatAmount": 1.82,
                "totalAmount": 10.5}],
            "payments": [{"id": "cash", "name": "cash", "type": "CASH", "amount": [
                {"type": "PAYMENT", "normalAmount": 10.5, "negativeCorrections": 0,
                 "positiveCorrections": 0, "correctionsCount": 0, "totalAmount": 10.5}]}],
            "drawersOpenCount": 0,
            "negQuantities": [{"negQuantityReason": "CORRECTION", "negQuantityCount": 1,
                "ticketCount": 1, "amount": -2.2}],
            "priceChanges": []
        }
    });
    if let Some(n) = report_no {
        v["reportNo"] = json!(n);
        v["reportBookingDate"] = json!("2026-12-06");
    }
    v
}

fn cash(amount: &str) -> Value {
    json!([{"id": "cash", "name": "Cash", "type": "CASH", "inputMethod": "MANUAL",
            "amount": serde_json::from_str::<Value>(amount).unwrap(), "amountType": "PAYMENT"}])
}

fn table(n: u32) -> Value {
    json!({"id": format!("T{n}"), "type": "TABLE", "reference": format!("Table {n}")})
}

impl Emu {
    fn sign(&self, m: Mutation, data: &Value, training: bool) -> Result<SignResult, Gks2Error> {
        self.rt.block_on(self.client.sign(m, data, training))
    }

    fn public_key(&self) -> Vec<u8> {
        let device = self.rt.block_on(self.client.device()).unwrap();
        assert_eq!(device["id"], DEVICE);
        assert_eq!(device["certified"], false);
        auth::base64_decode(device["publicKey"].as_str().unwrap()).unwrap()
    }
}

fn verifies(key: &[u8], r: &SignResult, training: bool, data: &Value) -> bool {
    let digest = Sha256::digest(signed_text(DEVICE, r, training, data).as_bytes());
    let signature = auth::base64_decode(&r.digital_signature).unwrap();
    fdmd::signer::verify_ed25519(key, &digest, &signature)
}

/// fdmd's own VAT for the same lines, from a real order through its HTTP API.
fn fdmd_vat(
    d: &Daemon,
    id: &str,
    lines: &[(&str, i64, &str, &str)],
) -> Vec<(String, String, String, String)> {
    let token = d.dev_register_token();
    let (code, receipt) = d.request(
        Method::POST,
        "/v1/registers/dev-register/orders",
        Some(&token),
        Some(support::order(id, lines)),
    );
    assert_eq!(code, StatusCode::CREATED, "{receipt}");
    receipt["vat"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let s = |k: &str| {
                v[k].as_str()
                    .unwrap()
                    .parse::<rust_decimal::Decimal>()
                    .unwrap()
                    .normalize()
                    .to_string()
            };
            (
                v["rate"].as_str().unwrap().to_owned(),
                s("base"),
                s("vat"),
                s("total"),
            )
        })
        .collect()
}

fn emu_vat(r: &SignResult) -> Vec<(String, String, String, String)> {
    r.vat_calc
        .as_ref()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v.label.as_str().to_owned(),
                v.taxable_amount.normalize().to_string(),
                v.vat_amount.normalize().to_string(),
                v.total_amount.normalize().to_string(),
            )
        })
        .collect()
}

#[test]
fn the_official_scenario_signs_counts_and_computes_vat_like_fdmd() {
    let emu = start();
    let key = emu.public_key();
    let mut total = 0u64;
    let mut ticket = 100u64;
    let mut step = |name: &str,
                    m: Mutation,
                    data: Value,
                    training: bool,
                    label: EventLabel,
                    counter: u64|
     -> SignResult {
        let r = emu
            .sign(m, &data, training)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        total += 1;
        assert_eq!(r.fdm_ref.event_label, label, "{name}");
        assert_eq!(r.fdm_ref.event_counter, counter, "{name}");
        assert_eq!(r.fdm_ref.total_counter, total, "{name}");
        assert_eq!(r.fdm_ref.fdm_id, "FDMEMU00042", "{name}");
        assert_eq!(r.event_operation, m.operation(), "{name}");
        assert_eq!(
            r.pos_fiscal_ticket_no,
            data["posFiscalTicketNo"].as_u64().unwrap()
        );
        assert!(verifies(&key, &r, training, &data), "{name}: signature");
        // One changed counter and the signature no longer verifies.
        let mut forged = r.clone();
        forged.fdm_ref.event_counter += 1;
        assert!(!verifies(&key, &forged, training, &data), "{name}: forged");
        assert!(
            r.footer.iter().any(|l| l.contains("not certified")),
            "{name}"
        );
        r
    };
    let mut next = || {
        ticket += 1;
        base(ticket, &now_text())
    };

    step(
        "M140_signWorkIn",
        Mutation::WorkIn,
        next(),
        false,
        EventLabel::S,
        1,
    );
    let order_lines = vec![
        line("Cola", 2, "2.20", "A", None),
        line("Spaghetti", 1, "14.50", "B", None),
    ];
    let r = step(
        "M121_signOrder",
        Mutation::Order,
        with(
            next(),
            json!({"costCenter": table(5), "transaction": transaction(order_lines.clone())}),
        ),
        false,
        EventLabel::P,
        1,
    );
    assert!(r.short_signature.is_none() && r.verification_url.is_none());
    step(
        "M123_signPreBill",
        Mutation::PreBill,
        with(
            next(),
            json!({"costCenter": table(5), "transaction": transaction(order_lines.clone())}),
        ),
        false,
        EventLabel::P,
        2,
    );
    step(
        "M122_signCostCenterChange",
        Mutation::CostCenterChange,
        with(
            next(),
            // As Odoo sends it: one object per side, the leaving lines negated.
            json!({"transfer": {
            "from": {"costCenter": table(5), "transaction": transaction(leaving(&order_lines))},
            "to": {"costCenter": table(7), "transaction": transaction(order_lines.clone())}}}),
        ),
        false,
        EventLabel::P,
        3,
    );
    let sale = step(
        "M110_signSale",
        Mutation::Sale,
        with(
            next(),
            json!({"costCenter": table(7), "transaction": transaction(order_lines.clone()),
                            "financials": cash("18.9")}),
        ),
        false,
        EventLabel::N,
        1,
    );
    assert_eq!(sale.short_signature.as_ref().unwrap().len(), 8);
    assert!(
        sale.verification_url
            .as_ref()
            .unwrap()
            .contains(".invalid/")
    );
    assert_eq!(
        emu_vat(&sale),
        fdmd_vat(
            &emu.daemon,
            "sale-1",
            &[("Cola", 2, "2.20", "A"), ("Spaghetti", 1, "14.50", "B")]
        )
    );
    // M160: a copy of the sale names its FDM reference; label C, no VAT receipt.
    let copy = step(
        "M160_signCopy",
        Mutation::Copy,
        with(next(), json!({"fdmRef": sale.fdm_ref})),
        false,
        EventLabel::C,
        1,
    );
    assert!(copy.short_signature.is_none() && copy.vat_calc.is_none());
    // UC230: a correction within the sale (a line and its negative), with its reason.
    let correction = step(
        "UC230_signSale_Correction",
        Mutation::Sale,
        with(
            next(),
            json!({"transaction": transaction(vec![
            line("Cola", 3, "2.20", "A", None),
            line("Cola", -1, "2.20", "A", Some("CORRECTION")),
            line("Koffie", 1, "2.71", "C", None)]),
            "financials": cash("7.11")}),
        ),
        false,
        EventLabel::N,
        2,
    );
    assert_eq!(
        emu_vat(&correction),
        fdmd_vat(
            &emu.daemon,
            "corr-1",
            &[
                ("Cola", 3, "2.20", "A"),
                ("Cola", -1, "2.20", "A"),
                ("Koffie", 1, "2.71", "C")
            ]
        )
    );
    let refund = step(
        "M112_signSale_RefundPartial",
        Mutation::Sale,
        with(
            next(),
            json!({"transaction": transaction(vec![line("Cola", -1, "2.20", "A", Some("REFUND"))]),
                            "financials": cash("-2.2")}),
        ),
        false,
        EventLabel::N,
        3,
    );
    assert_eq!(
        emu_vat(&refund),
        vec![("A".into(), "-1.82".into(), "-0.38".into(), "-2.2".into())]
    );
    // Training: the same mutation, label T; no VAT receipt; N does not advance.
    let training = step(
        "M110_signSale training",
        Mutation::Sale,
        with(
            next(),
            json!({"transaction": transaction(vec![line("Cola", 1, "2.20", "A", None)]),
                            "financials": cash("2.2")}),
        ),
        true,
        EventLabel::T,
        1,
    );
    assert!(training.short_signature.is_none());
    step(
        "M110_signSale after training",
        Mutation::Sale,
        with(
            next(),
            json!({"transaction": transaction(vec![line("Water", 1, "2.00", "A", None)]),
                            "financials": cash("2")}),
        ),
        false,
        EventLabel::N,
        4,
    );
    step(
        "M141_signWorkOut",
        Mutation::WorkOut,
        next(),
        false,
        EventLabel::S,
        2,
    );
    step(
        "M180_signReportTurnoverX",
        Mutation::ReportTurnoverX,
        with(next(), report_fields(None)),
        false,
        EventLabel::R,
        1,
    );
    step(
        "M181_signReportTurnoverZ",
        Mutation::ReportTurnoverZ,
        with(next(), report_fields(Some(1))),
        false,
        EventLabel::R,
        2,
    );

    // Refused events are not counted: a negative quantity without its reason, a wrong total.
    let e = emu
        .sign(
            Mutation::Sale,
            &with(
                next(),
                json!({"transaction": transaction(vec![line("Cola", -1, "2.20", "A", None)]),
                                 "financials": cash("-2.2")}),
            ),
            false,
        )
        .unwrap_err();
    assert_eq!(e.codes(), vec!["NEG_QUANTITY_REASON_MISSING"], "{e}");
    let mut wrong = transaction(vec![line("Cola", 1, "2.20", "A", None)]);
    wrong["transactionLines"][0]["lineTotal"] = json!(2.3);
    let e = emu
        .sign(
            Mutation::Sale,
            &with(
                next(),
                json!({"transaction": wrong, "financials": cash("2.3")}),
            ),
            false,
        )
        .unwrap_err();
    assert_eq!(e.codes(), vec!["LINE_TOTAL_MISMATCH"], "{e}");
    let e = emu
        .sign(
            Mutation::Sale,
            &with(next(), json!({"financials": "cash"})),
            false,
        )
        .unwrap_err();
    assert_eq!(e.codes(), vec!["BAD_USER_INPUT"], "{e}");
    let r = emu.sign(Mutation::WorkIn, &next(), false).unwrap();
    assert_eq!(
        (r.fdm_ref.event_counter, r.fdm_ref.total_counter),
        (3, total + 1)
    );
}

#[test]
fn report_inputs_are_validated_field_by_field_and_refusals_are_not_counted() {
    let emu = start();
    let key = emu.public_key();
    let mut ticket = 500u64;
    let mut next = || {
        ticket += 1;
        base(ticket, &now_text())
    };
    let refused = |m: Mutation, data: Value| -> (Vec<String>, String) {
        let e = emu.sign(m, &data, false).unwrap_err();
        (
            e.codes().into_iter().map(str::to_owned).collect(),
            e.to_string(),
        )
    };
    let mut cases: Vec<(Mutation, Value, &str, &str)> = Vec::new();
    let mut z = with(next(), report_fields(Some(3)));
    z.as_object_mut().unwrap().remove("reportNo");
    cases.push((
        Mutation::ReportTurnoverZ,
        z,
        "BAD_USER_INPUT",
        "data.reportNo: required",
    ));
    let mut z = with(next(), report_fields(Some(3)));
    z["reportBookingDate"] = json!("yesterday");
    cases.push((
        Mutation::ReportTurnoverZ,
        z,
        "BAD_USER_INPUT",
        "data.reportBookingDate",
    ));
    cases.push((
        Mutation::ReportTurnoverX,
        with(next(), report_fields(Some(3))),
        "BAD_USER_INPUT",
        "data.reportNo: not a field",
    ));
    let mut x = with(next(), report_fields(None));
    x.as_object_mut().unwrap().remove("turnover");
    cases.push((
        Mutation::ReportTurnoverX,
        x,
        "BAD_USER_INPUT",
        "missing field `turnover`",
    ));
    let mut x = with(next(), report_fields(None));
    x["turnover"]["vats"][0]["rate"] = json!("twenty-one");
    cases.push((
        Mutation::ReportTurnoverX,
        x,
        "BAD_USER_INPUT",
        "data.turnover.vats",
    ));
    let mut x = with(next(), report_fields(None));
    x["turnover"]["vats"][0]["vatAmount"] = json!(1.83);
    cases.push((
        Mutation::ReportTurnoverX,
        x,
        "REPORT_TOTAL_MISMATCH",
        "data.turnover.vats[0]",
    ));
    let mut x = with(next(), report_fields(None));
    x["fdmDevices"][0]["firstTotalCounter"] = json!(13);
    cases.push((
        Mutation::ReportTurnoverX,
        x,
        "BAD_USER_INPUT",
        "data.fdmDevices[0].firstTotalCounter",
    ));
    let mut x = with(next(), report_fields(None));
    x["posDevices"][0]["lastPosDateTime"] = json!("late");
    cases.push((
        Mutation::ReportTurnoverX,
        x,
        "BAD_USER_INPUT",
        "data.posDevices[0].lastPosDateTime",
    ));
    let mut x = with(next(), report_fields(None));
    x["turnover"]["negQuantities"][0]["negQuantityReason"] = json!("LOST");
    cases.push((
        Mutation::ReportTurnoverX,
        x,
        "BAD_USER_INPUT",
        "data.turnover.negQuantities",
    ));
    let user = |report_no: Option<u64>| {
        let mut v = report_fields(report_no);
        v.as_object_mut().unwrap().remove("turnover");
        v["users"] = json!([{"employeeId": "85073003328", "totalAmount": 10.5,
            "firstPosDateTime": "2026-12-06T10:00:00+01:00",
            "lastPosDateTime": "2026-12-06T22:00:00+01:00",
            "socialEvents": [{"posDateTime": "2026-12-06T10:00:00+01:00", "inOut": "IN"}],
            "payments": []}]);
        v
    };
    let mut u = with(next(), user(None));
    u["users"][0].as_object_mut().unwrap().remove("totalAmount");
    cases.push((Mutation::ReportUserX, u, "BAD_USER_INPUT", "data.users[0]"));
    cases.push((
        Mutation::ReportUserZ,
        with(next(), user(None)),
        "BAD_USER_INPUT",
        "data.reportNo: required",
    ));
    for (m, data, code, needle) in cases {
        let (codes, text) = refused(m, data);
        assert_eq!(codes, vec![code.to_owned()], "{m:?}: {text}");
        assert!(text.contains(needle), "{m:?}: {needle:?} not in {text}");
    }
    // None of them was counted: the valid reports are R 1, 2, 3, 4 and the first events.
    let mut total = 0;
    for (i, (m, data)) in [
        (Mutation::ReportTurnoverX, with(next(), report_fields(None))),
        (
            Mutation::ReportTurnoverZ,
            with(next(), report_fields(Some(3))),
        ),
        (Mutation::ReportUserX, with(next(), user(None))),
        (Mutation::ReportUserZ, with(next(), user(Some(3)))),
    ]
    .into_iter()
    .enumerate()
    {
        let r = emu
            .sign(m, &data, false)
            .unwrap_or_else(|e| panic!("{m:?}: {e}"));
        total += 1;
        assert_eq!(r.fdm_ref.event_label, EventLabel::R, "{m:?}");
        assert_eq!(r.fdm_ref.event_counter, i as u64 + 1, "{m:?}");
        assert_eq!(r.fdm_ref.total_counter, total, "{m:?}");
        assert_eq!(r.event_operation, m.operation());
        assert!(verifies(&key, &r, false, &data), "{m:?}: signature");
        assert!(
            r.short_signature.is_some() && r.verification_url.is_some(),
            "{m:?}"
        );
    }
}

#[test]
fn copies_and_cost_centre_changes_are_validated_and_refusals_are_not_counted() {
    let emu = start();
    let key = emu.public_key();
    let mut ticket = 700u64;
    let mut next = || {
        ticket += 1;
        base(ticket, &now_text())
    };
    let sale = emu
        .sign(
            Mutation::Sale,
            &with(
                next(),
                json!({"transaction": transaction(vec![line("Cola", 2, "2.20", "A", None)]),
                       "financials": cash("4.4")}),
            ),
            false,
        )
        .unwrap();
    let sale_ref = serde_json::to_value(&sale.fdm_ref).unwrap();
    let lines = vec![
        line("Cola", 2, "2.20", "A", None),
        line("Cola", -1, "2.20", "A", Some("CORRECTION")),
        line("Soep", 1, "6.50", "C", None),
    ];
    let side = |n: u32, lines: Vec<Value>| json!({"costCenter": table(n), "transaction": transaction(lines)});
    let change = |from: Value, to: Value| json!({"transfer": {"from": from, "to": to}});

    let mut cases: Vec<(Mutation, Value, &str, &str)> = Vec::new();
    cases.push((
        Mutation::Copy,
        next(),
        "BAD_USER_INPUT",
        "missing field `fdmRef`",
    ));
    for (field, value, needle) in [
        ("fdmDateTime", json!("yesterday"), "data.fdmRef.fdmDateTime"),
        ("eventCounter", json!(0), "data.fdmRef.eventCounter"),
        ("totalCounter", json!(0), "data.fdmRef.totalCounter"),
        ("eventLabel", json!("Q"), "data.fdmRef.eventLabel"),
        ("fdmId", json!(""), "data.fdmRef.fdmId"),
    ] {
        let mut r = sale_ref.clone();
        r[field] = value;
        cases.push((
            Mutation::Copy,
            with(next(), json!({"fdmRef": r})),
            "BAD_USER_INPUT",
            needle,
        ));
    }
    let mut unknown = sale_ref.clone();
    unknown["eventCounter"] = json!(7);
    unknown["totalCounter"] = json!(9);
    cases.push((
        Mutation::Copy,
        with(next(), json!({"fdmRef": unknown})),
        "FDM_REF_NOT_FOUND",
        "signed no event N 7/9",
    ));
    cases.push((
        Mutation::CostCenterChange,
        with(
            next(),
            json!({"transfer": {"from": side(5, leaving(&lines))}}),
        ),
        "BAD_USER_INPUT",
        "missing field `to`",
    ));
    cases.push((
        Mutation::CostCenterChange,
        with(next(), change(json!([]), side(7, lines.clone()))),
        "BAD_USER_INPUT",
        "data.transfer.from: at least one cost centre",
    ));
    cases.push((
        Mutation::CostCenterChange,
        with(next(), change(side(5, vec![]), side(7, vec![]))),
        "BAD_USER_INPUT",
        "data.transfer.from: no lines",
    ));
    let mut no_type = side(5, leaving(&lines));
    no_type["costCenter"]
        .as_object_mut()
        .unwrap()
        .remove("type");
    cases.push((
        Mutation::CostCenterChange,
        with(next(), change(json!([no_type]), side(7, lines.clone()))),
        "BAD_USER_INPUT",
        "data.transfer.from[0].costCenter",
    ));
    // The lines leaving a table with positive quantities: not a move.
    cases.push((
        Mutation::CostCenterChange,
        with(
            next(),
            change(side(5, lines.clone()), side(7, lines.clone())),
        ),
        "TRANSFER_MISMATCH",
        "must be the negation of `to`",
    ));
    // Less leaves than arrives.
    cases.push((
        Mutation::CostCenterChange,
        with(
            next(),
            change(side(5, leaving(&lines[..2])), side(7, lines.clone())),
        ),
        "TRANSFER_MISMATCH",
        "C",
    ));
    let mut no_reason = leaving(&lines);
    no_reason[0]["mainProduct"]
        .as_object_mut()
        .unwrap()
        .remove("negQuantityReason");
    cases.push((
        Mutation::CostCenterChange,
        with(next(), change(side(5, no_reason), side(7, lines.clone()))),
        "NEG_QUANTITY_REASON_MISSING",
        "Cola",
    ));
    let mut bad_total = side(7, lines.clone());
    bad_total["transaction"]["transactionTotal"] = json!(9);
    cases.push((
        Mutation::CostCenterChange,
        with(next(), change(side(5, leaving(&lines)), bad_total)),
        "TRANSACTION_TOTAL_MISMATCH",
        "transactionTotal 9",
    ));
    for (m, data, code, needle) in cases {
        let e = emu.sign(m, &data, false).unwrap_err();
        let text = e.to_string();
        assert_eq!(e.codes(), vec![code], "{m:?}: {text}");
        assert!(text.contains(needle), "{m:?}: {needle:?} not in {text}");
    }

    // None was counted: the valid events go on from the sale (total 1).
    let mut other_fdm = sale_ref.clone();
    other_fdm["fdmId"] = json!("FDMOTHER0001");
    other_fdm["eventCounter"] = json!(40);
    other_fdm["totalCounter"] = json!(90);
    let merged = change(
        json!([side(5, leaving(&lines[..2])), side(6, leaving(&lines[2..]))]),
        json!([side(7, lines.clone())]),
    );
    let valid = [
        (
            Mutation::Copy,
            with(next(), json!({"fdmRef": sale_ref})),
            false,
            EventLabel::C,
            1,
        ),
        // A copy of a ticket another FDM signed (one replaced since) is not checked here.
        (
            Mutation::Copy,
            with(next(), json!({"fdmRef": other_fdm})),
            false,
            EventLabel::C,
            2,
        ),
        (
            Mutation::CostCenterChange,
            with(
                next(),
                change(side(5, leaving(&lines)), side(7, lines.clone())),
            ),
            false,
            EventLabel::P,
            1,
        ),
        (
            Mutation::CostCenterChange,
            with(next(), merged),
            false,
            EventLabel::P,
            2,
        ),
        (
            Mutation::Copy,
            with(next(), json!({"fdmRef": sale_ref})),
            true,
            EventLabel::T,
            1,
        ),
    ];
    for (i, (m, data, training, label, counter)) in valid.into_iter().enumerate() {
        let r = emu
            .sign(m, &data, training)
            .unwrap_or_else(|e| panic!("{m:?}: {e}"));
        assert_eq!(
            (r.fdm_ref.event_label, r.fdm_ref.event_counter),
            (label, counter),
            "{m:?}"
        );
        assert_eq!(r.fdm_ref.total_counter, i as u64 + 2, "{m:?}");
        assert_eq!(r.event_operation, m.operation());
        assert!(verifies(&key, &r, training, &data), "{m:?}: signature");
        assert!(r.short_signature.is_none() && r.vat_calc.is_none(), "{m:?}");
    }
}

/// A full refund is `signSale` with `fdmRef`, the reference of the sale it gives back
/// (docs/gks2.md §6.4): checked as a copy's (its fields, and an own event must exist), refusals
/// not counted; a sale without `fdmRef` (a partial refund) is not checked.
#[test]
fn a_full_refunds_fdm_ref_is_checked_like_a_copys_and_refusals_are_not_counted() {
    let emu = start();
    let key = emu.public_key();
    let mut ticket = 800u64;
    let mut next = || {
        ticket += 1;
        base(ticket, &now_text())
    };
    let sold = vec![
        line("Cola", 2, "2.20", "A", None),
        line("Soep", 1, "6.50", "C", None),
    ];
    let sale = emu
        .sign(
            Mutation::Sale,
            &with(
                next(),
                json!({"transaction": transaction(sold), "financials": cash("10.9")}),
            ),
            false,
        )
        .unwrap();
    let sale_ref = serde_json::to_value(&sale.fdm_ref).unwrap();
    let back = || {
        json!({"transaction": transaction(vec![
                line("Cola", -2, "2.20", "A", Some("REFUND")),
                line("Soep", -1, "6.50", "C", Some("REFUND")),
            ]),
            "financials": cash("-10.9")})
    };
    let refund = |base: Value, r: &Value| {
        let mut data = with(base, back());
        data["fdmRef"] = r.clone();
        data
    };

    let mut cases: Vec<(Value, &str, &str)> = Vec::new();
    for (field, value, needle) in [
        (
            "fdmDateTime",
            json!("yesterday"),
            "SaleInput at data.fdmRef.fdmDateTime",
        ),
        (
            "eventCounter",
            json!(0),
            "SaleInput at data.fdmRef.eventCounter",
        ),
        (
            "totalCounter",
            json!(0),
            "SaleInput at data.fdmRef.totalCounter",
        ),
        ("eventLabel", json!("Q"), "data.fdmRef.eventLabel"),
        ("fdmId", json!(""), "SaleInput at data.fdmRef.fdmId"),
    ] {
        let mut r = sale_ref.clone();
        r[field] = value;
        cases.push((refund(next(), &r), "BAD_USER_INPUT", needle));
    }
    let mut unknown = sale_ref.clone();
    unknown["eventCounter"] = json!(7);
    unknown["totalCounter"] = json!(9);
    cases.push((
        refund(next(), &unknown),
        "FDM_REF_NOT_FOUND",
        "SaleInput at data.fdmRef: this FDM signed no event N 7/9",
    ));
    // The right counters under another label are not the sale's reference either.
    let mut wrong_label = sale_ref.clone();
    wrong_label["eventLabel"] = json!("P");
    cases.push((
        refund(next(), &wrong_label),
        "FDM_REF_NOT_FOUND",
        "signed no event P 1/1",
    ));
    for (data, code, needle) in cases {
        let e = emu.sign(Mutation::Sale, &data, false).unwrap_err();
        let text = e.to_string();
        assert_eq!(e.codes(), vec![code], "{text}");
        assert!(text.contains(needle), "{needle:?} not in {text}");
    }

    // None was counted: the full refund is N 2, a refund of another FDM's sale (one replaced
    // since) N 3, a refund without `fdmRef` (partial) N 4.
    let mut other_fdm = sale_ref.clone();
    other_fdm["fdmId"] = json!("FDMOTHER0001");
    other_fdm["totalCounter"] = json!(90);
    let valid = [
        refund(next(), &sale_ref),
        refund(next(), &other_fdm),
        with(
            next(),
            json!({"transaction": transaction(vec![line("Cola", -1, "2.20", "A", Some("REFUND"))]),
                   "financials": cash("-2.2")}),
        ),
    ];
    for (i, data) in valid.iter().enumerate() {
        let r = emu
            .sign(Mutation::Sale, data, false)
            .unwrap_or_else(|e| panic!("refund {i}: {e}"));
        assert_eq!(r.fdm_ref.event_label, EventLabel::N, "refund {i}");
        assert_eq!(r.fdm_ref.event_counter, i as u64 + 2, "refund {i}");
        assert_eq!(r.fdm_ref.total_counter, i as u64 + 2, "refund {i}");
        assert!(verifies(&key, &r, false, data), "refund {i}: signature");
        let vat = r.vat_calc.as_ref().unwrap();
        assert!(
            vat.iter()
                .all(|v| v.total_amount < rust_decimal::Decimal::ZERO),
            "refund {i}: {vat:?}"
        );
    }

    // The sale was refunded in full (N 2): a second full refund of it is refused, and so is a
    // full refund naming the refund (not a sale); neither is counted (docs/gks2.md §7).
    let refund_ref = json!({"fdmId": sale.fdm_ref.fdm_id, "fdmDateTime": sale.fdm_ref.fdm_date_time,
        "eventLabel": "N", "eventCounter": 2, "totalCounter": 2});
    for (r, code, needle) in [
        (
            &sale_ref,
            "FDM_REF_ALREADY_REFUNDED",
            "SaleInput at data.fdmRef: the sale N 1/1 was already refunded in full",
        ),
        (
            &refund_ref,
            "FDM_REF_NOT_A_SALE",
            "SaleInput at data.fdmRef: event N 2/2 is not a normal sale",
        ),
    ] {
        let e = emu
            .sign(Mutation::Sale, &refund(next(), r), false)
            .unwrap_err();
        let text = e.to_string();
        assert_eq!(e.codes(), vec![code], "{text}");
        assert!(text.contains(needle), "{needle:?} not in {text}");
    }
    let after = emu.sign(Mutation::WorkIn, &next(), false).unwrap();
    assert_eq!(
        after.fdm_ref.total_counter, 5,
        "the refusals were not counted"
    );
}

#[test]
fn a_resend_after_a_lost_answer_gets_the_same_result_and_one_event() {
    let emu = start();
    let data = with(
        base(7, &now_text()),
        json!({"transaction": transaction(vec![line("Cola", 1, "2.20", "A", None)]),
               "financials": cash("2.2")}),
    );
    let body = Client::request_body(Mutation::Sale, &data, false).unwrap();
    // The first request arrives, but its answer is lost: the POS closes the connection.
    {
        let date = auth::http_date(chrono::Utc::now());
        let authorization = auth::authorization("POST", &date, SECRET, &body);
        let addr: std::net::SocketAddr = emu.client_addr();
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(
            s,
            "POST /{DEVICE}/graphql HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nDate: {date}\r\nAuthorization: {authorization}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .unwrap();
        s.write_all(&body).unwrap();
        s.flush().unwrap();
    }
    // The resend (same body, new Date and digest) answers the event the FDM signed, every time.
    let first = emu
        .rt
        .block_on(emu.client.send(Mutation::Sale, &body))
        .unwrap();
    let again = emu
        .rt
        .block_on(emu.client.send(Mutation::Sale, &body))
        .unwrap();
    assert_eq!(first, again);
    assert_eq!(
        first.fdm_ref.total_counter, 1,
        "the lost answer's event is the first and only one"
    );
    assert_eq!(first.fdm_ref.event_counter, 1);
    // A different posFiscalTicketNo is a new event: counted once, right after.
    let other = with(data.clone(), json!({"posFiscalTicketNo": 8}));
    let next = emu.sign(Mutation::Sale, &other, false).unwrap();
    assert_eq!(
        (next.fdm_ref.event_counter, next.fdm_ref.total_counter),
        (2, 2)
    );
    // The same five keys in training are another label, so another event.
    let t = emu.sign(Mutation::Sale, &data, true).unwrap();
    assert_eq!(
        (t.fdm_ref.event_label, t.fdm_ref.total_counter),
        (EventLabel::T, 3)
    );
}

/// A GKS 2.0 client of the emulator at `addr` (10 s timeout).
fn client(addr: std::net::SocketAddr, device_id: &str, secret: &str) -> Client {
    Client::new(ClientConfig {
        addr,
        device_id: device_id.into(),
        secret: secret.into(),
        timeout: Duration::from_secs(10),
        tls: None,
    })
}

impl Emu {
    fn client_addr(&self) -> std::net::SocketAddr {
        self.addr
    }
}

#[test]
fn wrong_secrets_stale_dates_big_bodies_and_other_graphql_are_refused() {
    let emu = start();
    let addr = emu.client_addr();
    let data = with(base(1, &now_text()), json!({}));
    let wrong = client(addr, DEVICE, "not-the-secret");
    let e = emu
        .rt
        .block_on(wrong.sign(Mutation::WorkIn, &data, false))
        .unwrap_err();
    assert!(matches!(e, Gks2Error::AuthenticationRefused(_)), "{e}");

    let body = Client::request_body(Mutation::WorkIn, &data, false).unwrap();
    // A correct digest over a stale Date.
    let stale = auth::http_date(chrono::Utc::now() - chrono::Duration::seconds(600));
    let authorization = auth::authorization("POST", &stale, SECRET, &body);
    let (status, answer) = emu
        .rt
        .block_on(emu.client.post(&body, &stale, Some(&authorization)))
        .unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer:?}");
    let answer: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(
        answer["errors"][0]["extensions"]["code"],
        "DATE_OUT_OF_RANGE"
    );
    let r = emu.sign(Mutation::WorkIn, &data, false);
    assert!(r.is_ok(), "the same body with a fresh Date passes: {r:?}");
    // The digest covers the body: a changed body with the old digest is refused.
    let date = auth::http_date(chrono::Utc::now());
    let authorization = auth::authorization("POST", &date, SECRET, &body);
    let mut changed = body.clone();
    changed.push(b' ');
    let (status, _) = emu
        .rt
        .block_on(emu.client.post(&changed, &date, Some(&authorization)))
        .unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = emu
        .rt
        .block_on(emu.client.post(&body, &date, None))
        .unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // An oversized body is refused before it is read whole.
    let big = with(data.clone(), json!({"padding": "x".repeat(MAX_BODY)}));
    let e = emu
        .rt
        .block_on(emu.client.sign(Mutation::WorkIn, &big, false))
        .unwrap_err();
    assert!(matches!(e, Gks2Error::TooLarge), "{e}");

    // Without a Content-Length (chunked), the body is cut off at the limit while it is read.
    {
        use std::io::Read;
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let chunk = vec![b'x'; MAX_BODY + 1];
        write!(
            s,
            "POST /{DEVICE}/graphql HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
            chunk.len()
        )
        .unwrap();
        s.write_all(&chunk).unwrap();
        s.write_all(b"\r\n0\r\n\r\n").unwrap();
        let mut answer = [0u8; 64];
        let n = s.read(&mut answer).unwrap();
        let status_line = String::from_utf8_lossy(&answer[..n]).into_owned();
        assert!(status_line.starts_with("HTTP/1.1 413"), "{status_line}");
    }

    // GraphQL outside the subset: an error answer, nothing signed.
    for (query, code) in [
        (
            "mutation A { signWorkIn(data: {}) { posId } } mutation B { signWorkOut(data: {}) { posId } }",
            "GRAPHQL_UNSUPPORTED",
        ),
        (
            "mutation { signWorkIn(data: $data) { ...F } }",
            "GRAPHQL_UNSUPPORTED",
        ),
        (
            "mutation { signEverything(data: {}) { posId } }",
            "GRAPHQL_VALIDATION_FAILED",
        ),
        ("mutation { signWorkIn(data: ", "GRAPHQL_PARSE_FAILED"),
    ] {
        let body = serde_json::to_vec(&json!({"query": query})).unwrap();
        let date = auth::http_date(chrono::Utc::now());
        let authorization = auth::authorization("POST", &date, SECRET, &body);
        let (status, answer) = emu
            .rt
            .block_on(emu.client.post(&body, &date, Some(&authorization)))
            .unwrap();
        let answer: Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(status, StatusCode::OK, "{query}");
        assert_eq!(
            answer["errors"][0]["extensions"]["code"], code,
            "{query}: {answer}"
        );
        assert_eq!(answer["data"], Value::Null);
    }
    // Only the one WORK_IN above was counted.
    let r = emu
        .sign(
            Mutation::WorkOut,
            &with(base(2, &now_text()), json!({})),
            false,
        )
        .unwrap();
    assert_eq!(r.fdm_ref.total_counter, 2);

    // Another device id: not found; nothing listening: the FDM is down.
    let other = client(addr, "another-device", SECRET);
    let e = emu
        .rt
        .block_on(other.sign(Mutation::WorkIn, &data, false))
        .unwrap_err();
    assert!(
        matches!(
            e,
            Gks2Error::Http {
                status: StatusCode::NOT_FOUND,
                ..
            }
        ),
        "{e}"
    );
    let down = client(([127, 0, 0, 1], free_port()).into(), DEVICE, SECRET);
    let e = emu
        .rt
        .block_on(down.sign(Mutation::WorkIn, &data, false))
        .unwrap_err();
    assert!(matches!(e, Gks2Error::FdmDown { .. }), "{e}");
}

#[test]
fn the_request_corpus_in_both_client_styles_is_answered() {
    let emu = start();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gks2");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 7, "{files:?}");
    for (i, file) in files.iter().enumerate() {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let fixture: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
        let (request, expect) = (&fixture["request"], &fixture["expect"]);
        let body = serde_json::to_vec(request).unwrap();
        let date = auth::http_date(chrono::Utc::now());
        let authorization = auth::authorization("POST", &date, SECRET, &body);
        let (status, answer) = emu
            .rt
            .block_on(emu.client.post(&body, &date, Some(&authorization)))
            .unwrap();
        let answer: Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(status, StatusCode::OK, "{name}: {answer}");
        assert!(answer.get("errors").is_none(), "{name}: {answer}");
        // The answer is under the response key: the field's alias if the query gave one
        // (`signResult: signSale(…)`), and so are aliased fields of the selection.
        let data = answer["data"].as_object().unwrap();
        assert_eq!(data.len(), 1, "{name}: {answer}");
        let result = &data[expect["field"].as_str().unwrap()];
        let key = |field: &str| -> String {
            expect["aliases"][field]
                .as_str()
                .unwrap_or(field)
                .to_owned()
        };
        let fdm_ref = &result[key("fdmRef")];
        assert_eq!(fdm_ref[key("eventLabel")], expect["eventLabel"], "{name}");
        assert_eq!(result["eventOperation"], expect["eventOperation"], "{name}");
        assert_eq!(fdm_ref[key("totalCounter")], json!(i + 1), "{name}");
        if let Some(aliases) = expect["aliases"].as_object() {
            for field in aliases.keys() {
                assert!(
                    result.get(field).is_none() && fdm_ref.get(field).is_none(),
                    "{name}: {field} answered under its name, not its alias"
                );
            }
        }
        assert_eq!(
            result.get("vatCalc"),
            expect["vatCalc"].as_array().map(|_| &expect["vatCalc"]),
            "{name}"
        );
        // Only what the query selected comes back.
        let query = request["query"].as_str().unwrap();
        for key in result.as_object().unwrap().keys() {
            assert!(
                query.contains(key.as_str()),
                "{name}: {key} was not selected"
            );
        }
    }
}

/// The first pieces of `[signer] backend = "gks2"`: an fdmd order, checked and computed by
/// fdmd's core, mapped to its mutation, signed by the emulator; the FDM's VAT must equal
/// fdmd's, and a difference is caught.
#[test]
fn fdmd_orders_map_to_mutations_whose_vat_matches_fdmds() {
    use fdmd::fiscal::{Order, Sale};
    use fdmd::gks2::map::{PosContext, check_vat, map_order};
    use fdmd::gks2::model::Language;
    let emu = start();
    let ctx = |ticket: u64| PosContext {
        pos_id: "CFDMD0000001".into(),
        pos_sw_version: "fdmd".into(),
        vat_no: "BE0123456749".into(),
        est_no: "2000000042".into(),
        terminal_id: "dev-register".into(),
        device_id: "dev-register".into(),
        booking_period_id: "7f2c1a52-3c1e-4a55-9c59-2d0f6f0c0001".into(),
        booking_date: "2026-12-06".into(),
        language: Language::FR,
        pos_fiscal_ticket_no: ticket,
        pos_date_time: now_text(),
    };
    let orders = [
        (
            json!({"request_id": "m-1", "operator": "85073003328", "event_type": "normal",
                   "lines": [{"description": "Cola", "quantity": 3, "unit_price": "2.20", "vat": "A"},
                             {"description": "Cola", "quantity": -1, "unit_price": "2.20", "vat": "A"},
                             {"description": "Kaas", "quantity": "0.333", "unit": "kg", "unit_price": "19.99", "vat": "C"},
                             {"description": "Menu", "quantity": 1, "unit_price": "30.00", "vat": "B"}],
                   "payments": [{"method": "card", "amount": "41.06"}]}),
            Mutation::Sale,
            EventLabel::N,
        ),
        (
            json!({"request_id": "m-2", "operator": "85073003328", "event_type": "pro_forma", "table": "12",
                   "lines": [{"description": "Spaghetti", "quantity": 2, "unit_price": "14.50", "vat": "B"}]}),
            Mutation::Order,
            EventLabel::P,
        ),
        (
            json!({"request_id": "m-3", "operator": "85073003328", "event_type": "training",
                   "lines": [{"description": "Water", "quantity": 1, "unit_price": "2.00", "vat": "A"}]}),
            Mutation::Sale,
            EventLabel::T,
        ),
    ];
    for (i, (json_order, mutation, label)) in orders.into_iter().enumerate() {
        let order =
            Order::from_json("dev-register", &serde_json::to_vec(&json_order).unwrap()).unwrap();
        let sale = Sale::compute(&order).unwrap();
        let mapped = map_order(&order, &sale, &ctx(i as u64 + 1)).unwrap();
        assert_eq!(mapped.mutation, mutation, "{json_order}");
        let r = emu
            .sign(mapped.mutation, &mapped.data, mapped.training)
            .unwrap();
        assert_eq!(r.fdm_ref.event_label, label);
        let vat = r.vat_calc.clone().unwrap();
        check_vat(&sale, &vat).unwrap();
        // One cent of difference on one letter and the ticket is refused.
        let mut off = vat.clone();
        off[0].vat_amount += rust_decimal::Decimal::new(1, 2);
        assert!(check_vat(&sale, &off).is_err());
        assert!(check_vat(&sale, &vat[1..]).is_err() || vat.len() == 1);
    }
}

#[test]
fn idle_and_unauthenticated_connections_never_take_the_pos_systems_slots() {
    // Two slots; sixty idle sockets and three connections whose requests fail the digest.
    let emu = start_with("max_connections = 2\n");
    let addr = emu.client_addr();
    let idle: Vec<std::net::TcpStream> = (0..60)
        .map(|_| std::net::TcpStream::connect(addr).unwrap())
        .collect();
    let data = with(base(1, &now_text()), json!({}));
    let wrong = client(addr, DEVICE, "not-the-secret");
    for _ in 0..3 {
        let e = emu
            .rt
            .block_on(wrong.sign(Mutation::WorkIn, &data, false))
            .unwrap_err();
        assert!(matches!(e, Gks2Error::AuthenticationRefused(_)), "{e}");
    }
    // The POS system with the secret is served at once, twice over (its two slots).
    let started = std::time::Instant::now();
    for ticket in 1..=2 {
        let data = with(base(ticket, &now_text()), json!({}));
        let r = emu.sign(Mutation::WorkIn, &data, false);
        assert!(r.is_ok(), "ticket {ticket}: {r:?}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    drop(idle);
}
