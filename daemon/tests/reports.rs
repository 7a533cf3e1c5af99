//! X and Z reports over a few simulated days with several registers and operators (open tables,
//! training, refunds, corrections, cash rounding), every figure compared with an independent
//! summation of the exported journal (the test's own code over the JSON lines, in cents).
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use chrono::{DateTime, Duration, FixedOffset, TimeZone};
use fdmd::assembly::{AppBuilder, BlockingApp};
use fdmd::journal::export::{verify_export, write_export};
use fdmd::journal::{Clock, Journal, JournalConfig, query};
use fdmd::reports::{Establishment, ReportError, ReportKind, ReportRequest, Reports};
use fdmd::service::{Numbering, Receipt, SeriesScope};
use fdmd::signer::{Signer, SoftwareSigner};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

const OPS: [&str; 3] = ["85073003328", "90010100123", "92020200241"];

/// A clock the test moves by hand.
struct TestClock(Mutex<DateTime<FixedOffset>>);

impl Clock for TestClock {
    fn now(&self) -> DateTime<FixedOffset> {
        *self.0.lock().unwrap()
    }
}

impl TestClock {
    fn advance(&self, d: Duration) {
        let mut t = self.0.lock().unwrap();
        *t += d;
    }
}

/// A small deterministic generator (no dependency, same run every time).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

struct Sim {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    clock: Arc<TestClock>,
    signer: Arc<SoftwareSigner>,
    registrar: BlockingApp,
    reports: Reports,
    rt: tokio::runtime::Runtime,
    n: u64,
}

impl Sim {
    fn new(scope: SeriesScope) -> Sim {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.sqlite");
        let clock = Arc::new(TestClock(Mutex::new(
            FixedOffset::east_opt(3600)
                .unwrap()
                .with_ymd_and_hms(2026, 11, 2, 10, 0, 0)
                .unwrap(),
        )));
        let signer = Arc::new(SoftwareSigner::from_seed([7; 32]));
        let mut config = JournalConfig::new(&path, "BMC01000001");
        config.clock = clock.clone();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let journal = rt.block_on(async { Journal::open(config, signer.clone()).unwrap() });
        let registrar = AppBuilder::for_journal(
            journal,
            Numbering {
                scope,
                digits: 6,
                ..Default::default()
            },
        )
        .unwrap();
        let reports = Reports::new(
            registrar.app().registrar.clone(),
            Establishment {
                name: "De Gouden Lepel".into(),
                address: "Markt 1, 9000 Gent".into(),
                vat_number: "BE0123456749".into(),
            },
        );
        Sim {
            _dir: dir,
            path,
            clock,
            signer,
            registrar,
            reports,
            rt,
            n: 0,
        }
    }

    fn order(&mut self, register: &str, mut order: Value) -> Value {
        self.n += 1;
        order["request_id"] = json!(format!("r-{}", self.n));
        self.clock.advance(Duration::seconds(37));
        let bytes = serde_json::to_vec(&order).unwrap();
        match self.registrar.handle_order_enrolling(register, &bytes) {
            Receipt::Signed(v) => v,
            other => panic!("order refused: {:?}\n{order}", other.to_json()),
        }
    }

    fn report(
        &self,
        kind: ReportKind,
        register: Option<&str>,
        override_reason: Option<&str>,
    ) -> Result<Value, ReportError> {
        self.clock.advance(Duration::seconds(5));
        self.rt.block_on(self.reports.make(&ReportRequest {
            kind,
            register: register.map(str::to_owned),
            requested_by: "admin".into(),
            request_id: None,
            override_reason: override_reason.map(str::to_owned),
        }))
    }
}

fn line(description: &str, quantity: i64, price: &str, vat: &str, category: &str) -> Value {
    json!({"description": description, "quantity": quantity, "unit_price": price, "vat": vat, "category": category})
}

fn work(operator: &str, what: &str) -> Value {
    json!({"operator": operator, "event_type": "normal",
           "lines": [{"description": what, "quantity": 1, "unit_price": "0.00", "vat": "D"}]})
}

/// Cents from a decimal string, by hand (not rust_decimal: an independent path).
fn cents(text: &str) -> i64 {
    let negative = text.starts_with('-');
    let t = text.trim_start_matches(['-', '+']);
    let (whole, frac) = t.split_once('.').unwrap_or((t, "0"));
    let frac = format!("{frac:0<2}");
    let v = whole.parse::<i64>().unwrap() * 100 + frac[..2].parse::<i64>().unwrap();
    if negative { -v } else { v }
}

fn money(c: i64) -> String {
    let sign = if c < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", c.abs() / 100, c.abs() % 100)
}

/// The price list the simulation draws from: (description, price, VAT letter, category).
const MENU: [(&str, &str, &str, &str); 6] = [
    ("Cola", "2.72", "A", "drink"),
    ("Pils", "2.90", "A", "drink"),
    ("Stoofvlees", "19.50", "B", "meal"),
    ("Soep", "6.48", "B", "meal"),
    ("Frieten mee", "4.13", "C", "takeaway_meal"),
    ("Zaalhuur", "50.00", "A", "other"),
];

/// Cash due for a total in cents, rounded to 5 cents half away from zero.
fn cash_rounded(total: i64) -> i64 {
    let a = total.abs();
    let r = a % 5;
    let rounded = if r >= 3 { a - r + 5 } else { a - r };
    total.signum() * rounded
}

/// One day of service.
fn day(sim: &mut Sim, rng: &mut Lcg, day_no: u32) {
    let registers = ["till-1", "till-2"];
    for op in OPS {
        sim.order("till-1", work(op, "WORK IN"));
    }
    // Table service: rounds from the handheld as pro formas, a correction, then the bill.
    for table in 0..4 {
        let table_id = format!("{}{table}", day_no);
        let mut lines = Vec::new();
        for _ in 0..2 {
            let (d, p, v, c) = MENU[rng.next(4) as usize];
            let q = 1 + rng.next(3) as i64;
            let round = vec![line(d, q, p, v, c)];
            sim.order(
                "hh-1",
                json!({"operator": OPS[table % 3], "event_type": "pro_forma", "table": table_id, "lines": round}),
            );
            lines.push(line(d, q, p, v, c));
        }
        if table == 1 {
            // A correction before the bill: one item less (PR), and on the final ticket.
            let (d, p, v, c) = (
                lines[0]["description"].as_str().unwrap().to_owned(),
                lines[0]["unit_price"].as_str().unwrap().to_owned(),
                lines[0]["vat"].as_str().unwrap().to_owned(),
                lines[0]["category"].as_str().unwrap().to_owned(),
            );
            sim.order(
                "hh-1",
                json!({"operator": OPS[1], "event_type": "pro_forma", "table": table_id,
                       "lines": [line(&d, -1, &p, &v, &c)]}),
            );
            lines.push(line(&d, -1, &p, &v, &c));
        }
        // The final ticket lists the rounds itself (restaurant rules); it adds only its own
        // lines, here a discount on table 2.
        let own_lines = if table == 2 {
            vec![line("Korting", 1, "-1.00", "B", "meal")]
        } else {
            Vec::new()
        };
        lines.extend(own_lines.iter().cloned());
        let total: i64 = lines
            .iter()
            .map(|l| l["quantity"].as_i64().unwrap() * cents(l["unit_price"].as_str().unwrap()))
            .sum();
        let payments = if table % 2 == 0 {
            json!([{"method": "cash", "amount": money(cash_rounded(total))}])
        } else {
            json!([{"method": "card", "amount": money(total - 500)}, {"method": "cash", "amount": money(cash_rounded(500))}])
        };
        sim.order(
            registers[table % 2],
            json!({"operator": OPS[(table + 1) % 3], "event_type": "normal", "table": table_id,
                   "lines": own_lines, "payments": payments}),
        );
    }
    // Counter sales, a refund, a training session.
    for i in 0..6 {
        let (d, p, v, c) = MENU[rng.next(6) as usize];
        let q = 1 + rng.next(2) as i64;
        let total = q * cents(p);
        sim.order(
            registers[i % 2],
            json!({"operator": OPS[i % 3], "event_type": "normal", "lines": [line(d, q, p, v, c)],
                   "payments": [{"method": "cash", "amount": money(cash_rounded(total))}]}),
        );
    }
    sim.order(
        "till-2",
        json!({"operator": OPS[2], "event_type": "normal", "lines": [line("Pils", -2, "2.90", "A", "drink")],
               "payments": [{"method": "card", "amount": "-5.80"}]}),
    );
    sim.order(
        "till-1",
        json!({"operator": OPS[0], "event_type": "training", "lines": [line("Stoofvlees", 3, "19.50", "B", "meal")]}),
    );
    sim.clock.advance(Duration::hours(11));
}

fn cash_rounding_sanity() {
    assert_eq!(cash_rounded(813), 815);
    assert_eq!(cash_rounded(812), 810);
    assert_eq!(cash_rounded(-813), -815);
    assert_eq!(cash_rounded(-812), -810);
    assert_eq!(cash_rounded(500), 500);
}

/// The export, parsed: seq → (kind, body, hash hex, signature hex).
struct Exported {
    records: BTreeMap<u64, (String, Value, String, String)>,
}

fn export(sim: &Sim) -> (Vec<u8>, Exported) {
    let conn = query::open_read_only(&sim.path).unwrap();
    let mut out = Vec::new();
    write_export(&conn, 1, u64::MAX, "now", &mut out).unwrap();
    let mut records = BTreeMap::new();
    for line in out.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let v: Value = serde_json::from_slice(line).unwrap();
        if v["type"] == "record" {
            let rec: Value = serde_json::from_str(v["record"].as_str().unwrap()).unwrap();
            records.insert(
                v["seq"].as_u64().unwrap(),
                (
                    rec["kind"].as_str().unwrap().to_owned(),
                    rec["body"].clone(),
                    v["hash"].as_str().unwrap().to_owned(),
                    v["signature"].as_str().unwrap().to_owned(),
                ),
            );
        }
    }
    (out, Exported { records })
}

/// The test's own Merkle root (RFC 6962), over hex hashes.
fn merkle(hashes: &[Vec<u8>]) -> Vec<u8> {
    if hashes.len() == 1 {
        let mut h = Sha256::new();
        h.update([0]);
        h.update(&hashes[0]);
        return h.finalize().to_vec();
    }
    let mut k = 1;
    while k * 2 < hashes.len() {
        k *= 2;
    }
    let mut h = Sha256::new();
    h.update([1]);
    h.update(merkle(&hashes[..k]));
    h.update(merkle(&hashes[k..]));
    h.finalize().to_vec()
}

#[derive(Default, Debug, PartialEq)]
struct Sums {
    labels: BTreeMap<String, (u64, i64)>,
    gross: i64,
    discounts: i64,
    refunds: i64,
    deposits: i64,
    line_corrections: i64,
    net: i64,
    vat: BTreeMap<String, (i64, i64)>,
    payments: BTreeMap<String, i64>,
    rounding: i64,
    corrections: (u64, i64),
}

impl Sums {
    fn add(&mut self, b: &Value) {
        let label = b["label"].as_str().unwrap().to_owned();
        let total = cents(b["total"].as_str().unwrap());
        let e = self.labels.entry(label.clone()).or_default();
        e.0 += 1;
        e.1 += total;
        if label == "PR" {
            self.corrections.0 += 1;
            self.corrections.1 += total;
        }
        if !label.starts_with('N') {
            return;
        }
        self.net += total;
        for l in b["lines"].as_array().unwrap() {
            let t = cents(l["total"].as_str().unwrap());
            match (t < 0, label.as_str(), l["role"].as_str()) {
                (false, _, _) => self.gross += t,
                (true, "NR", _) => self.refunds -= t,
                (true, _, Some("discount")) => self.discounts -= t,
                (true, _, Some("deposit_applied")) => self.deposits -= t,
                (true, _, _) => self.line_corrections -= t,
            }
        }
        for v in b["vat"].as_array().unwrap() {
            let e = self
                .vat
                .entry(v["rate"].as_str().unwrap().to_owned())
                .or_default();
            e.0 += cents(v["total"].as_str().unwrap());
            e.1 += cents(v["vat"].as_str().unwrap());
        }
        for p in b["payments"].as_array().unwrap() {
            *self
                .payments
                .entry(p["method"].as_str().unwrap().to_owned())
                .or_default() += cents(p["amount"].as_str().unwrap());
        }
        self.rounding += cents(b["cash_rounding"].as_str().unwrap());
    }

    /// Compares with a report's figures (the `totals` object or one operator's).
    fn check(&self, f: &Value, what: &str) {
        let labels: BTreeMap<String, (u64, i64)> = f["labels"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    (
                        v["count"].as_u64().unwrap(),
                        cents(v["total"].as_str().unwrap()),
                    ),
                )
            })
            .collect();
        assert_eq!(labels, self.labels, "{what}: labels");
        let c = |k: &str| cents(f[k].as_str().unwrap());
        assert_eq!(c("gross"), self.gross, "{what}: gross");
        assert_eq!(c("discounts"), self.discounts, "{what}: discounts");
        assert_eq!(c("refunds"), self.refunds, "{what}: refunds");
        assert_eq!(c("discounts_and_refunds"), self.discounts + self.refunds);
        assert_eq!(c("net"), self.net, "{what}: net");
        assert_eq!(c("deposits_deducted"), self.deposits, "{what}: deposits");
        assert_eq!(
            c("line_corrections"),
            self.line_corrections,
            "{what}: line corrections"
        );
        assert_eq!(
            self.gross - self.discounts - self.refunds - self.deposits - self.line_corrections,
            self.net
        );
        assert_eq!(c("cash_rounding"), self.rounding, "{what}: cash rounding");
        let vat: BTreeMap<String, (i64, i64)> = f["vat"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                let (t, x) = (
                    cents(v["total"].as_str().unwrap()),
                    cents(v["vat"].as_str().unwrap()),
                );
                assert_eq!(cents(v["base"].as_str().unwrap()), t - x);
                (v["rate"].as_str().unwrap().to_owned(), (t, x))
            })
            .collect();
        assert_eq!(vat, self.vat, "{what}: VAT");
        let payments: BTreeMap<String, i64> = f["payments"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), cents(v.as_str().unwrap())))
            .collect();
        assert_eq!(payments, self.payments, "{what}: payments");
        assert_eq!(
            (
                f["corrections"]["count"].as_u64().unwrap(),
                cents(f["corrections"]["total"].as_str().unwrap())
            ),
            self.corrections,
            "{what}: corrections"
        );
    }
}

/// Checks every report record of the export against the test's own sums.
fn check_reports(x: &Exported) -> usize {
    let mut checked = 0;
    let mut last_number: BTreeMap<String, u64> = BTreeMap::new();
    let mut last_z_end: BTreeMap<String, u64> = BTreeMap::new();
    for (seq, (kind, body, _, _)) in &x.records {
        if kind != "report" {
            continue;
        }
        // Numbers follow each other within the series.
        let series = body["ticket_series"].as_str().unwrap().to_owned();
        let number = body["ticket_number"].as_u64().unwrap();
        assert_eq!(
            number,
            last_number.get(&series).copied().unwrap_or(0) + 1,
            "{series}"
        );
        last_number.insert(series.clone(), number);
        let first = body["period"]["first_seq"].as_u64().unwrap();
        let last = body["period"]["last_seq"].as_u64().unwrap();
        assert!(last < *seq, "a report covers only records before it");
        let z_series = series.trim_end_matches(['X', 'Z']).to_owned() + "Z";
        // Periods tile: each starts right after the previous Z of its series.
        assert_eq!(
            first,
            last_z_end.get(&z_series).copied().unwrap_or(0) + 1,
            "report {seq}"
        );
        if body["report"] == "Z" {
            last_z_end.insert(z_series, last);
        }
        let registers: Vec<&str> = body["registers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect();
        let mut all = Sums::default();
        let mut per_op: BTreeMap<String, Sums> = BTreeMap::new();
        let mut last_op = None;
        for (s, (k, b, _, sig)) in x.records.range(first..=last) {
            if k != "fiscal_event" || !registers.contains(&b["register"].as_str().unwrap()) {
                continue;
            }
            all.add(b);
            per_op
                .entry(b["operator"].as_str().unwrap().to_owned())
                .or_default()
                .add(b);
            last_op = Some((*s, sig.to_uppercase()[sig.len() - 8..].to_owned()));
        }
        all.check(&body["totals"], &format!("report {seq}"));
        let ops = body["operators"].as_object().unwrap();
        assert_eq!(ops.len(), per_op.len(), "report {seq}: operators");
        for (op, sums) in &per_op {
            sums.check(&ops[op], &format!("report {seq} operator {op}"));
        }
        let (op_seq, short) = last_op.unwrap();
        assert_eq!(body["last_operation"]["seq"], json!(op_seq));
        assert_eq!(body["last_operation"]["short_signature"], json!(short));
        // The checkpoint: chain head and Merkle root over every record of the period.
        let hashes: Vec<Vec<u8>> = x
            .records
            .range(first..=last)
            .map(|(_, (_, _, h, _))| hex::decode(h).unwrap())
            .collect();
        assert_eq!(body["checkpoint"]["records"], json!(hashes.len()));
        assert_eq!(
            body["checkpoint"]["chain_head"].as_str().unwrap(),
            x.records[&last].2
        );
        assert_eq!(
            body["checkpoint"]["merkle_root"].as_str().unwrap(),
            hex::encode(merkle(&hashes))
        );
        checked += 1;
    }
    checked
}

#[test]
fn three_days_per_register_series_every_figure_matches_the_export() {
    cash_rounding_sanity();
    let mut sim = Sim::new(SeriesScope::PerRegister);
    let mut rng = Lcg(42);
    for d in 1..=3u32 {
        day(&mut sim, &mut rng, d);
        // A table left open on the handheld: its Z is refused and names the table.
        let open = sim.order(
            "hh-1",
            json!({"operator": OPS[0], "event_type": "pro_forma", "table": format!("late{d}"),
                   "lines": [line("Cola", 1, "2.70", "A", "drink")]}),
        );
        assert_eq!(open["label"], "PS");
        let x = sim.report(ReportKind::X, Some("till-1"), None).unwrap();
        assert_eq!(x["report"], "X");
        match sim.report(ReportKind::Z, Some("hh-1"), None) {
            Err(ReportError::OpenTables(t)) => {
                assert_eq!(t.len(), 1);
                assert_eq!(t[0].table, format!("late{d}"));
                let e = ReportError::OpenTables(t).to_json();
                assert_eq!(e["code"], 207);
                assert_eq!(e["open_tables"][0]["table"], json!(format!("late{d}")));
            }
            other => panic!("Z with an open table: {other:?}"),
        }
        sim.order(
            "till-1",
            json!({"operator": OPS[0], "event_type": "normal", "table": format!("late{d}"),
                   "lines": [], "payments": [{"method": "card", "amount": "2.70"}]}),
        );
        // Operators are still clocked in (on till-1): refused without an override.
        match sim.report(ReportKind::Z, Some("till-1"), None) {
            Err(ReportError::ClockedIn(ops)) => assert_eq!(ops.len(), 3),
            other => panic!("Z with operators clocked in: {other:?}"),
        }
        // The handheld has nobody clocked in on it: its Z passes now.
        let z = sim.report(ReportKind::Z, Some("hh-1"), None).unwrap();
        assert_eq!(z["report_number"], json!(format!("{d:06}")));
        for op in OPS {
            sim.order("till-1", work(op, "WORK OUT"));
        }
        let z1 = sim.report(ReportKind::Z, Some("till-1"), None).unwrap();
        assert!(z1.get("override").is_none());
        // till-2 closes with an override while someone clocked in on it.
        sim.order("till-2", work(OPS[1], "WORK IN"));
        assert!(matches!(
            sim.report(ReportKind::Z, Some("till-2"), None),
            Err(ReportError::ClockedIn(_))
        ));
        let z2 = sim
            .report(ReportKind::Z, Some("till-2"), Some("night shift continues"))
            .unwrap();
        assert_eq!(z2["override"]["reason"], "night shift continues");
        assert_eq!(z2["override"]["clocked_in"][0]["operator"], OPS[1]);
        sim.order("till-2", work(OPS[1], "WORK OUT"));
        // Training never counts as turnover.
        assert!(z1["totals"]["labels"]["TS"]["count"].as_u64().unwrap() >= 1);
        sim.clock.advance(Duration::hours(12));
    }
    let (bytes, exported) = export(&sim);
    let checked = check_reports(&exported);
    let roundings = exported
        .records
        .values()
        .filter(|(k, b, _, _)| k == "report" && b["totals"]["cash_rounding"] != "0.00")
        .count();
    assert!(roundings > 0, "the simulation must exercise cash rounding");
    assert_eq!(
        checked,
        3 * 4,
        "3 days × (X till-1, Z hh-1, Z till-1, Z till-2)"
    );
    // The export verifies on its own with the signer's key.
    let key = sim.signer.identity().unwrap().public_key;
    let (_, summary) = verify_export(&bytes[..], vec![key]).unwrap();
    assert!(summary.keys_trusted);
    // Reports' text carries the Royal Decree items.
    let z = sim.report(ReportKind::X, Some("till-1"), None).unwrap();
    let text = fdmd::reports::text::render(&z);
    assert!(text.contains("X REPORT"), "{text}");
    assert!(text.contains("BE0123456749"), "{text}");
}

#[test]
fn establishment_series_covers_every_register() {
    let mut sim = Sim::new(SeriesScope::Establishment);
    let mut rng = Lcg(7);
    for d in 1..=2u32 {
        day(&mut sim, &mut rng, d);
        for op in OPS {
            sim.order("till-1", work(op, "WORK OUT"));
        }
        let z = sim.report(ReportKind::Z, None, None).unwrap();
        assert_eq!(z["scope"], "establishment");
        assert_eq!(z["ticket_series"], "establishment/Z");
        let registers = z["registers"].as_array().unwrap().len();
        assert_eq!(registers, 3, "{}", z["registers"]);
        sim.clock.advance(Duration::hours(12));
    }
    // A Z with nothing new is still a numbered, signed report with an empty turnover.
    let empty = sim.report(ReportKind::Z, None, None).unwrap();
    assert_eq!(empty["totals"]["net"], "0.00");
    assert_eq!(empty["report_number"], "000003");
    let (bytes, exported) = export(&sim);
    // The empty report has no last operation; check the others.
    let without_empty = Exported {
        records: exported
            .records
            .into_iter()
            .filter(|(seq, _)| *seq < empty["journal_seq"].as_u64().unwrap())
            .collect(),
    };
    assert_eq!(check_reports(&without_empty), 2);
    assert!(verify_export(&bytes[..], vec![]).is_ok());
}

#[test]
fn a_register_request_is_idempotent_and_a_changed_one_conflicts() {
    let mut sim = Sim::new(SeriesScope::PerRegister);
    sim.order(
        "till-1",
        json!({"operator": OPS[0], "event_type": "normal", "lines": [line("Cola", 1, "2.70", "A", "drink")],
               "payments": [{"method": "card", "amount": "2.70"}]}),
    );
    let req =
        ReportRequest::from_json(br#"{"kind":"x","request_id":"x-1"}"#, Some("till-1")).unwrap();
    let first = sim.rt.block_on(sim.reports.make(&req)).unwrap();
    let again = sim.rt.block_on(sim.reports.make(&req)).unwrap();
    assert_eq!(first["journal_seq"], again["journal_seq"]);
    assert_eq!(again["code"], 102);
    let changed =
        ReportRequest::from_json(br#"{"kind":"z","request_id":"x-1"}"#, Some("till-1")).unwrap();
    let e = sim.rt.block_on(sim.reports.make(&changed)).unwrap_err();
    assert_eq!(e.code().number(), 207);
    // A register cannot ask for another register's report.
    let e = ReportRequest::from_json(br#"{"kind":"x","register":"till-2"}"#, Some("till-1"))
        .unwrap_err();
    assert!(e.to_string().starts_with("register:"), "{e}");
    let e = ReportRequest::from_json(br#"{"kind":"y"}"#, None).unwrap_err();
    assert!(e.to_string().starts_with("kind:"), "{e}");
}
