//! The journal through its public interface: receipts, idempotency, numbering under
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test
//! concurrency, signer changes, storage limits, export and verification.

use fdmd::assembly::{AppBuilder, BlockingApp};
use fdmd::fiscal::{EventType, FdmCode, Label, PrecomputedEvent};
use fdmd::journal::export::{verify_database, verify_export, write_export};
use fdmd::journal::record::RecordKind;
use fdmd::journal::{CheckpointLimits, Entry, Journal, JournalConfig, RequestKey, query};
use fdmd::service::{Numbering, Receipt, SeriesScope};
use fdmd::signer::{Signer, SoftwareSigner, verify_ed25519};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;

const OP: &str = "85073003328";

fn order(request_id: &str, event_type: &str, lines: &[(&str, i64, &str, &str)]) -> Vec<u8> {
    let lines: Vec<Value> = lines
        .iter()
        .map(|(d, q, p, v)| json!({"description": d, "quantity": q, "unit_price": p, "vat": v}))
        .collect();
    serde_json::to_vec(&json!({"request_id": request_id, "operator": OP, "event_type": event_type, "lines": lines})).unwrap()
}

/// A copy (CS/CR) of the register's earlier ticket `original`.
fn copy_of(request_id: &str, original: &str) -> Vec<u8> {
    serde_json::to_vec(
        &json!({"request_id": request_id, "operator": OP, "event_type": "copy",
                               "original": {"request_id": original}}),
    )
    .unwrap()
}

struct Fixture {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    signer: Arc<SoftwareSigner>,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.sqlite");
        Fixture {
            _dir: dir,
            path,
            signer: Arc::new(SoftwareSigner::from_seed([9; 32])),
        }
    }

    fn registrar(&self, numbering: Numbering) -> BlockingApp {
        self.registrar_with(numbering, CheckpointLimits::default())
    }

    fn registrar_with(&self, numbering: Numbering, checkpoints: CheckpointLimits) -> BlockingApp {
        let mut config = JournalConfig::new(&self.path, "DEVFDMD0001");
        config.checkpoints = checkpoints;
        let journal = Journal::open(config, self.signer.clone()).unwrap();
        AppBuilder::for_journal(journal, numbering).unwrap()
    }

    /// Size of the database file itself (not its WAL): it grows only when a checkpoint copies
    /// pages from the WAL into it.
    fn database_file_len(&self) -> u64 {
        std::fs::metadata(&self.path).unwrap().len()
    }

    /// Registers `count` orders one by one (one commit each, so the WAL grows by pages).
    fn register_orders(&self, reg: &BlockingApp, count: usize) {
        self.register_orders_from(reg, 0, count);
    }

    fn register_orders_from(&self, reg: &BlockingApp, first: usize, count: usize) {
        for i in first..first + count {
            let id = format!("wal-{i}");
            signed(
                reg.handle_order_enrolling("a", &order(&id, "normal", &[("x", 1, "1.00", "A")])),
            );
        }
    }

    fn verify(&self) -> fdmd::journal::verify::VerifySummary {
        let conn = query::open_read_only(&self.path).unwrap();
        verify_database(&conn, vec![self.signer.identity().unwrap().public_key]).unwrap()
    }
}

fn signed(r: Receipt) -> Value {
    match r {
        Receipt::Signed(v) => v,
        other => panic!("expected a signed receipt, got {:?}", other.to_json()),
    }
}

#[test]
fn an_order_becomes_a_signed_receipt_that_verifies() {
    let f = Fixture::new();
    let reg = f.registrar(Numbering::default());
    let r = signed(reg.handle_order_enrolling(
        "till-1",
        &order(
            "r-1",
            "normal",
            &[("Cola", 1, "2.20", "A"), ("Snack", 1, "11.90", "B")],
        ),
    ));
    assert_eq!(r["status"], "signed");
    assert_eq!(r["code"], 0);
    assert_eq!(r["request_id"], "r-1");
    assert_eq!(r["register"], "till-1");
    assert_eq!(r["label"], "NS");
    assert_eq!(r["ticket_number"], "000001");
    assert_eq!(r["event_counter"], 1);
    assert_eq!(r["total_counter"], 1);
    assert_eq!(r["fdm_id"], "DEVFDMD0001");
    assert_eq!(r["total"], "14.10");
    assert_eq!(
        r["vat"][0],
        json!({"rate": "A", "percent": "21", "total": "2.20", "vat": "0.38", "base": "1.82"})
    );
    assert_eq!(r["vat"][1]["vat"], "1.28");
    assert!(r["plu_hash"].as_str().unwrap().ends_with("797bc46f"));
    // Record 1 anchors the chain; the order is record 2.
    assert_eq!(r["journal_seq"], 2);
    let digest = hex::decode(r["signed_digest"].as_str().unwrap()).unwrap();
    let sig = hex::decode(r["signature"].as_str().unwrap()).unwrap();
    assert!(verify_ed25519(
        &f.signer.identity().unwrap().public_key,
        &digest,
        &sig
    ));
    assert_eq!(
        r["short_signature"].as_str().unwrap(),
        &r["signature"].as_str().unwrap()[120..].to_uppercase()
    );
    let summary = f.verify();
    assert_eq!(summary.records, 2);
    assert_eq!(summary.fiscal_events, 1);
}

#[test]
fn invalid_orders_are_refused_with_the_field_and_nothing_is_written() {
    let f = Fixture::new();
    let reg = f.registrar(Numbering::default());
    let r = reg.handle_order_enrolling(
        "till-1",
        &order("r-1", "normal", &[("Cola", 1, "2.20", "E")]),
    );
    let v = r.to_json();
    assert_eq!(v["status"], "error");
    assert_eq!(v["code"], 207);
    assert_eq!(v["field"], "lines[0].vat");
    assert_eq!(v["request_id"], "r-1");
    assert_eq!(
        v["message"],
        "lines[0].vat: unknown VAT letter \"E\" (expected A, B, C, D or X)"
    );
    assert_eq!(
        reg.journal()
            .stats()
            .last_seq
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

#[test]
fn a_resend_returns_the_first_receipt_and_a_changed_resend_is_refused() {
    let f = Fixture::new();
    let reg = f.registrar(Numbering::default());
    let body = order("r-7", "normal", &[("Cola", 2, "2.20", "A")]);
    let first = signed(reg.handle_order_enrolling("till-1", &body));
    let again = signed(reg.handle_order_enrolling("till-1", &body));
    assert_eq!(again["code"], 102);
    for k in [
        "signature",
        "signed_digest",
        "ticket_number",
        "journal_seq",
        "fdm_time",
        "event_counter",
    ] {
        assert_eq!(first[k], again[k], "{k}");
    }
    // Same id from another register is another request.
    let other = signed(reg.handle_order_enrolling("till-2", &body));
    assert_eq!(other["code"], 0);
    // Same id, other content: refused.
    let changed = reg
        .handle_order_enrolling(
            "till-1",
            &order("r-7", "normal", &[("Cola", 3, "2.20", "A")]),
        )
        .to_json();
    assert_eq!(changed["code"], 207);
    assert_eq!(changed["field"], "request_id");
    assert_eq!(f.verify().fiscal_events, 2);
}

#[test]
fn numbering_stays_uninterrupted_under_concurrent_registers() {
    let f = Fixture::new();
    let reg = f.registrar(Numbering {
        scope: SeriesScope::Establishment,
        digits: 8,
        ..Default::default()
    });
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let reg = reg.clone();
            std::thread::spawn(move || {
                (0..100)
                    .map(|i| {
                        let kind = if i % 3 == 0 { "pro_forma" } else { "normal" };
                        let q = if i % 7 == 0 { -1 } else { 1 };
                        signed(reg.handle_order_enrolling(
                            &format!("till-{t}"),
                            &order(&format!("r-{i}"), kind, &[("Item", q, "1.50", "A")]),
                        ))
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let receipts: Vec<Value> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert_eq!(receipts.len(), 800);
    let mut by_type: std::collections::HashMap<char, BTreeSet<u64>> = Default::default();
    let mut totals = BTreeSet::new();
    let mut seqs = BTreeSet::new();
    for r in &receipts {
        let label = r["label"].as_str().unwrap();
        let n: u64 = r["ticket_number"].as_str().unwrap().parse().unwrap();
        assert!(
            by_type
                .entry(label.chars().next().unwrap())
                .or_default()
                .insert(n),
            "duplicate ticket number {n}"
        );
        assert!(totals.insert(r["total_counter"].as_u64().unwrap()));
        assert!(seqs.insert(r["journal_seq"].as_u64().unwrap()));
    }
    for (t, numbers) in &by_type {
        assert_eq!(
            numbers.iter().copied().collect::<Vec<_>>(),
            (1..=numbers.len() as u64).collect::<Vec<_>>(),
            "series {t}"
        );
    }
    assert_eq!(totals, (1..=800).collect());
    let summary = f.verify();
    assert_eq!(summary.fiscal_events, 800);
    // Group commit: far fewer transactions than records.
    let stats = reg.journal().stats();
    assert!(stats.commits.load(std::sync::atomic::Ordering::Relaxed) < 800);
}

#[test]
fn per_register_series_and_label_counters() {
    let f = Fixture::new();
    let reg = f.registrar(Numbering {
        scope: SeriesScope::PerRegister,
        digits: 4,
        ..Default::default()
    });
    let a1 =
        signed(reg.handle_order_enrolling("a", &order("1", "normal", &[("x", 1, "1.00", "A")])));
    let b1 =
        signed(reg.handle_order_enrolling("b", &order("1", "normal", &[("x", 1, "1.00", "A")])));
    let a2 =
        signed(reg.handle_order_enrolling("a", &order("2", "normal", &[("x", -1, "1.00", "A")])));
    let a3 =
        signed(reg.handle_order_enrolling("a", &order("3", "training", &[("x", 1, "1.00", "A")])));
    assert_eq!(
        (
            a1["ticket_number"].as_str(),
            b1["ticket_number"].as_str(),
            a2["ticket_number"].as_str()
        ),
        (Some("0001"), Some("0001"), Some("0002"))
    );
    assert_eq!(a3["ticket_number"], "0001");
    assert_eq!(
        (a2["label"].as_str(), a2["event_counter"].as_u64()),
        (Some("NR"), Some(1))
    );
    assert_eq!(
        (b1["label"].as_str(), b1["event_counter"].as_u64()),
        (Some("NS"), Some(2))
    );
    assert_eq!(
        (a3["label"].as_str(), a3["total_counter"].as_u64()),
        (Some("TS"), Some(4))
    );
}

#[test]
fn numbering_continues_after_reopening() {
    let f = Fixture::new();
    let reg = f.registrar(Numbering::default());
    signed(reg.handle_order_enrolling("a", &order("1", "normal", &[("x", 1, "1.00", "A")])));
    reg.journal().clone().close();
    drop(reg);
    let reg = f.registrar(Numbering::default());
    let r =
        signed(reg.handle_order_enrolling("a", &order("2", "normal", &[("x", 1, "1.00", "A")])));
    assert_eq!(
        (
            r["ticket_number"].as_str(),
            r["event_counter"].as_u64(),
            r["journal_seq"].as_u64()
        ),
        (Some("000002"), Some(2), Some(3))
    );
    // A resend after the restart is still recognised.
    let again =
        signed(reg.handle_order_enrolling("a", &order("1", "normal", &[("x", 1, "1.00", "A")])));
    assert_eq!(again["code"], 102);
}

#[test]
fn precomputed_events_share_counters_with_orders() {
    let f = Fixture::new();
    let reg = f.registrar(Numbering::default());
    signed(reg.handle_order_enrolling("till-1", &order("1", "normal", &[("x", 1, "1.00", "A")])));
    let event = PrecomputedEvent {
        request_id: "h-01".into(),
        register: "ecr-1".into(),
        pos_date: "20261122".into(),
        pos_time: "201500".into(),
        operator: OP.into(),
        ecr_id: "BODO0010000001".into(),
        ticket_number: "   123".into(),
        label: Label::parse("NS").unwrap(),
        total: "14.10".parse().unwrap(),
        rate_amounts: vec![("21".parse().unwrap(), "0.38".parse().unwrap())],
        plu_hash: format!("{:0>40}", "797bc46f"),
    };
    reg.enrol_register(&event.register).unwrap();
    let r = signed(reg.handle_precomputed(&event));
    assert_eq!(
        (
            r["ticket_number"].as_str(),
            r["event_counter"].as_u64(),
            r["total_counter"].as_u64()
        ),
        (Some("123"), Some(2), Some(2))
    );
    let again = signed(reg.handle_precomputed(&event));
    assert_eq!(
        (again["code"].as_u64(), &again["signature"]),
        (Some(102), &r["signature"])
    );
    assert_eq!(f.verify().fiscal_events, 2);
}

#[test]
fn a_new_signer_is_declared_and_both_keys_verify() {
    let f = Fixture::new();
    let reg = f.registrar(Numbering::default());
    signed(reg.handle_order_enrolling("a", &order("1", "normal", &[("x", 1, "1.00", "A")])));
    reg.journal().clone().close();
    drop(reg);
    let second = Arc::new(SoftwareSigner::from_seed([10; 32]));
    let journal =
        Journal::open(JournalConfig::new(&f.path, "DEVFDMD0001"), second.clone()).unwrap();
    let reg = AppBuilder::for_journal(journal, Numbering::default()).unwrap();
    let r =
        signed(reg.handle_order_enrolling("a", &order("2", "normal", &[("x", 1, "1.00", "A")])));
    assert_eq!(r["vsc_id"], second.identity().unwrap().id);
    assert_eq!(r["journal_seq"], 4, "record 3 declares the new signer");
    let conn = query::open_read_only(&f.path).unwrap();
    let changes = query::records_of_kind(&conn, &[RecordKind::SignerChange]).unwrap();
    assert_eq!(changes.len(), 1);
    let keys = vec![
        f.signer.identity().unwrap().public_key,
        second.identity().unwrap().public_key,
    ];
    assert_eq!(verify_database(&conn, keys).unwrap().signers.len(), 2);
    // Trusting only the first key, the second signer's records are refused.
    let err = verify_database(&conn, vec![f.signer.identity().unwrap().public_key]).unwrap_err();
    assert!(err.to_string().contains("record 3"), "{err}");
}

#[test]
fn a_full_journal_refuses_with_205_writes_nothing_and_recovers_with_more_room() {
    let f = Fixture::new();
    let mut config = JournalConfig::new(&f.path, "DEVFDMD0001");
    config.max_bytes = Some(96 * 1024);
    let journal = Journal::open(config.clone(), f.signer.clone()).unwrap();
    let reg = AppBuilder::for_journal(journal, Numbering::default()).unwrap();
    let long_lines: Vec<(&str, i64, &str, &str)> =
        vec![("A rather long description for padding", 1, "1.00", "A"); 40];
    let mut accepted = Vec::new();
    let mut warned = false;
    let mut refusal = None;
    for i in 0..500 {
        match reg.handle_order_enrolling("a", &order(&format!("r{i}"), "normal", &long_lines)) {
            Receipt::Signed(v) => {
                warned |= v["code"] == 101;
                accepted.push(v)
            }
            err => {
                refusal = Some(err.to_json());
                break;
            }
        }
    }
    let refusal = refusal.expect("the journal never filled up");
    assert_eq!(refusal["code"], 205, "{refusal}");
    assert!(warned, "no 101 warning before the journal was full");
    let last_ok = accepted.last().unwrap()["journal_seq"].as_u64().unwrap();
    reg.journal().clone().close();
    drop(reg);
    let conn = query::open_read_only(&f.path).unwrap();
    let summary = verify_database(&conn, vec![]).unwrap();
    assert_eq!(
        summary.last_seq,
        Some(last_ok),
        "a refused order left a record"
    );
    drop(conn);
    // More room: the same request goes through with the next numbers.
    config.max_bytes = Some(4 * 1024 * 1024);
    let reg = AppBuilder::for_journal(
        Journal::open(config, f.signer.clone()).unwrap(),
        Numbering::default(),
    )
    .unwrap();
    let retry_id = refusal["request_id"].as_str().unwrap().to_owned();
    let r = signed(reg.handle_order_enrolling("a", &order(&retry_id, "normal", &long_lines)));
    assert_eq!(r["journal_seq"].as_u64(), Some(last_ok + 1));
    assert_eq!(
        r["ticket_number"]
            .as_str()
            .unwrap()
            .parse::<usize>()
            .unwrap(),
        accepted.len() + 1
    );
    f.verify();
}

#[test]
fn exports_verify_whole_and_as_slices() {
    let f = Fixture::new();
    let reg = f.registrar(Numbering::default());
    for i in 0..20 {
        signed(reg.handle_order_enrolling(
            "a",
            &order(&i.to_string(), "normal", &[("Soep", 1, "6.50", "B")]),
        ));
    }
    let extra = Entry::new(
        RecordKind::DaemonStop,
        serde_json::Map::from_iter([("reason".to_string(), json!("test"))]),
    );
    reg.journal().append_blocking(extra).unwrap();
    let conn = query::open_read_only(&f.path).unwrap();
    let key = f.signer.identity().unwrap().public_key;
    let mut whole = Vec::new();
    write_export(
        &conn,
        1,
        u64::MAX,
        "2026-11-22T00:00:00.000+01:00",
        &mut whole,
    )
    .unwrap();
    let (header, summary) = verify_export(&whole[..], vec![key.clone()]).unwrap();
    assert_eq!(
        (header.first_seq, header.last_seq, summary.records),
        (1, 22, 22)
    );
    let mut slice = Vec::new();
    write_export(&conn, 8, 15, "now", &mut slice).unwrap();
    let (header, summary) = verify_export(&slice[..], vec![key]).unwrap();
    assert_eq!((header.first_seq, summary.records), (8, 8));
    // Without trusted keys, the header's declared signer is used.
    assert!(!verify_export(&slice[..], vec![]).unwrap().1.keys_trusted);
    // A cut-off export is refused.
    let text = String::from_utf8(slice).unwrap();
    let cut: Vec<&str> = text.lines().collect();
    let truncated = cut[..cut.len() - 2].join("\n");
    assert!(verify_export(truncated.as_bytes(), vec![]).is_err());
    // A record removed from the middle is named.
    let mut lines: Vec<&str> = text.lines().collect();
    lines.remove(4);
    let err = verify_export(lines.join("\n").as_bytes(), vec![]).unwrap_err();
    assert!(
        err.to_string().starts_with("record 11: record is missing"),
        "{err}"
    );
}

#[test]
fn labels_cover_every_event_type() {
    let f = Fixture::new();
    let reg = f.registrar(Numbering::default());
    let mut seen = BTreeSet::new();
    for (i, t) in EventType::ALL.iter().enumerate() {
        for q in [1, -1] {
            // A copy names the ticket it reprints: the normal sale or refund of the same sign.
            let body = if *t == EventType::Copy {
                copy_of(&format!("{i}{q}"), &format!("0{q}"))
            } else {
                order(&format!("{i}{q}"), t.as_str(), &[("x", q, "1.00", "D")])
            };
            let r = signed(reg.handle_order_enrolling("a", &body));
            seen.insert(r["label"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(seen.len(), 8);
    assert_eq!(FdmCode::from_number(205), Some(FdmCode::StorageFull));
}

mod numbering_properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 12, .. ProptestConfig::default() })]

        /// Whatever the mix of threads, registers, event types and refunds, every series and
        /// counter is 1..=n without gap or duplicate, and the journal verifies.
        #[test]
        fn counters_and_series_are_uninterrupted(
            plan in prop::collection::vec(prop::collection::vec((0usize..4, any::<bool>()), 1..15), 1..6),
            shared in any::<bool>(),
        ) {
            let f = Fixture::new();
            let scope = if shared { SeriesScope::Establishment } else { SeriesScope::PerRegister };
            let reg = f.registrar(Numbering {
                scope,
                digits: 8,
                ..Default::default()
            });
            let threads: Vec<_> = plan.into_iter().enumerate().map(|(t, orders)| {
                let reg = reg.clone();
                std::thread::spawn(move || {
                    // The last normal sale and refund of this register, for copies to name.
                    let mut last_normal: [Option<String>; 2] = [None, None];
                    orders.into_iter().enumerate().map(|(i, (kind, refund))| {
                        let kind = EventType::ALL[kind];
                        let q = if refund { -1 } else { 1 };
                        let id = format!("{i}");
                        let body = match (&kind, &last_normal[usize::from(refund)]) {
                            (EventType::Copy, Some(original)) => copy_of(&id, original),
                            (EventType::Copy, None) | (EventType::Normal, _) => {
                                last_normal[usize::from(refund)] = Some(id.clone());
                                order(&id, "normal", &[("x", q, "1.00", "A")])
                            }
                            _ => order(&id, kind.as_str(), &[("x", q, "1.00", "A")]),
                        };
                        signed(reg.handle_order_enrolling(&format!("t{t}"), &body))
                    }).collect::<Vec<_>>()
                })
            }).collect();
            let receipts: Vec<Value> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
            let mut series: std::collections::HashMap<String, Vec<u64>> = Default::default();
            let mut labels: std::collections::HashMap<String, Vec<u64>> = Default::default();
            let mut totals = Vec::new();
            for r in &receipts {
                let label = r["label"].as_str().unwrap().to_owned();
                let key = if shared { label[..1].to_owned() } else { format!("{}/{}", r["register"], &label[..1]) };
                series.entry(key).or_default().push(r["ticket_number"].as_str().unwrap().parse().unwrap());
                labels.entry(label).or_default().push(r["event_counter"].as_u64().unwrap());
                totals.push(r["total_counter"].as_u64().unwrap());
            }
            for numbers in series.values_mut().chain(labels.values_mut()).chain(std::iter::once(&mut totals)) {
                numbers.sort_unstable();
                prop_assert_eq!(numbers.clone(), (1..=numbers.len() as u64).collect::<Vec<_>>());
            }
            prop_assert_eq!(f.verify().fiscal_events, receipts.len() as u64);
        }
    }
}

/// A development signer that refuses every `fail_every`-th signature, as a card pulled out for
/// a moment would; it allows speculative signing, so the writer signs on its second thread.
struct FlakySigner {
    inner: SoftwareSigner,
    calls: std::sync::atomic::AtomicU64,
    fail_every: u64,
}

impl Signer for FlakySigner {
    fn identity(&self) -> Result<fdmd::signer::SignerIdentity, fdmd::signer::SignerError> {
        self.inner.identity()
    }
    fn state(&self) -> fdmd::signer::SignerState {
        self.inner.state()
    }
    fn sign(&self, id: &str, digest: &[u8; 32]) -> Result<Vec<u8>, fdmd::signer::SignerError> {
        let n = self
            .calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if n > 0 && n % self.fail_every == 0 {
            return Err(fdmd::signer::SignerError::NoCard("pulled out".into()));
        }
        self.inner.sign(id, digest)
    }
    fn allows_speculative_signing(&self) -> bool {
        true
    }
}

#[test]
fn a_signature_failing_inside_a_batch_fails_that_order_only_and_leaves_no_gap() {
    let f = Fixture::new();
    let signer = Arc::new(FlakySigner {
        inner: SoftwareSigner::from_seed([9; 32]),
        calls: Default::default(),
        fail_every: 7,
    });
    let journal =
        Journal::open(JournalConfig::new(&f.path, "DEVFDMD0001"), signer.clone()).unwrap();
    let reg = AppBuilder::for_journal(journal, Numbering::default()).unwrap();
    let threads: Vec<_> = (0..32)
        .map(|t| {
            let reg = reg.clone();
            std::thread::spawn(move || {
                (0..15)
                    .map(|i| {
                        let bytes = order(&format!("r-{i}"), "normal", &[("Item", 1, "2.00", "A")]);
                        (
                            t,
                            i,
                            reg.handle_order_enrolling(&format!("till-{t}"), &bytes),
                        )
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut refused = Vec::new();
    let mut totals = BTreeSet::new();
    for (t, i, receipt) in threads.into_iter().flat_map(|t| t.join().unwrap()) {
        match receipt {
            Receipt::Signed(v) => {
                assert_eq!(v["code"], 0, "{v}");
                assert!(totals.insert(v["total_counter"].as_u64().unwrap()));
            }
            other => {
                assert_eq!(other.code(), FdmCode::NoCard, "{:?}", other.to_json());
                refused.push((t, i));
            }
        }
    }
    assert!(!refused.is_empty(), "the signer never failed");
    assert!(
        reg.journal()
            .stats()
            .commits
            .load(std::sync::atomic::Ordering::Relaxed)
            < 480,
        "no batch held more than one order"
    );
    // Counters of the signed orders are uninterrupted: a refusal took no number.
    assert_eq!(totals, (1..=totals.len() as u64).collect());
    // The refused orders go through when sent again.
    for (t, i) in &refused {
        let bytes = order(&format!("r-{i}"), "normal", &[("Item", 1, "2.00", "A")]);
        let mut receipt = reg.handle_order_enrolling(&format!("till-{t}"), &bytes);
        if receipt.code() == FdmCode::NoCard {
            receipt = reg.handle_order_enrolling(&format!("till-{t}"), &bytes);
        }
        assert_eq!(signed(receipt)["code"], 0);
    }
    reg.journal().clone().close();
    assert_eq!(f.verify().fiscal_events, 480);
}

/// Registers `per_thread` orders from each of `threads` registers at once (`till-{t}`,
/// request ids `r-{i}`), one at a time per register, and gives back every receipt.
fn register_concurrently(
    reg: &BlockingApp,
    threads: usize,
    per_thread: usize,
    lines: &'static [(&'static str, i64, &'static str, &'static str)],
) -> Vec<(usize, usize, Receipt)> {
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let reg = reg.clone();
            std::thread::spawn(move || {
                (0..per_thread)
                    .map(|i| {
                        let bytes = order(&format!("r-{i}"), "normal", lines);
                        let receipt = reg.handle_order_enrolling(&format!("till-{t}"), &bytes);
                        (t, i, receipt)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect()
}

/// A development signer that becomes another one (a card swapped) after `switch_after`
/// signatures; it allows speculative signing, so batches are planned ahead while it switches.
struct SwappedSigner {
    first: SoftwareSigner,
    second: SoftwareSigner,
    calls: std::sync::atomic::AtomicU64,
    switch_after: u64,
}

impl SwappedSigner {
    fn current(&self) -> &SoftwareSigner {
        if self.calls.load(std::sync::atomic::Ordering::Relaxed) < self.switch_after {
            &self.first
        } else {
            &self.second
        }
    }
}

impl Signer for SwappedSigner {
    fn identity(&self) -> Result<fdmd::signer::SignerIdentity, fdmd::signer::SignerError> {
        self.current().identity()
    }
    fn state(&self) -> fdmd::signer::SignerState {
        self.current().state()
    }
    fn sign(&self, id: &str, digest: &[u8; 32]) -> Result<Vec<u8>, fdmd::signer::SignerError> {
        let signer = self.current();
        self.calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        signer.sign(id, digest)
    }
    fn allows_speculative_signing(&self) -> bool {
        true
    }
}

#[test]
fn a_card_swapped_under_load_is_declared_and_leaves_no_gap() {
    let f = Fixture::new();
    let signer = Arc::new(SwappedSigner {
        first: SoftwareSigner::from_seed([9; 32]),
        second: SoftwareSigner::from_seed([10; 32]),
        calls: Default::default(),
        switch_after: 150,
    });
    let journal =
        Journal::open(JournalConfig::new(&f.path, "DEVFDMD0001"), signer.clone()).unwrap();
    let reg = AppBuilder::for_journal(journal, Numbering::default()).unwrap();
    let receipts = register_concurrently(&reg, 32, 10, &[("Item", 1, "2.00", "A")]);
    let mut totals = BTreeSet::new();
    let mut by_signer = std::collections::BTreeMap::<String, usize>::new();
    for (_, _, receipt) in &receipts {
        // Orders whose signature was asked of the card just as it was swapped are refused
        // with a signer error; every other one is signed.
        if let Receipt::Signed(v) = receipt {
            assert!(totals.insert(v["total_counter"].as_u64().unwrap()));
            *by_signer
                .entry(v["vsc_id"].as_str().unwrap().to_owned())
                .or_default() += 1;
        } else {
            assert!(
                (201..=210).contains(&receipt.code().number()),
                "{:?}",
                receipt.to_json()
            );
        }
    }
    assert_eq!(by_signer.len(), 2, "both cards signed: {by_signer:?}");
    assert_eq!(totals, (1..=totals.len() as u64).collect());
    reg.journal().clone().close();
    let conn = query::open_read_only(&f.path).unwrap();
    let keys = vec![
        signer.first.identity().unwrap().public_key,
        signer.second.identity().unwrap().public_key,
    ];
    let summary = verify_database(&conn, keys).unwrap();
    assert_eq!(summary.fiscal_events, totals.len() as u64);
    assert_eq!(summary.signers.len(), 2);
}

#[test]
fn a_journal_filling_up_under_load_keeps_every_acknowledged_order_and_no_gap() {
    let f = Fixture::new();
    let mut config = JournalConfig::new(&f.path, "DEVFDMD0001");
    config.max_bytes = Some(256 * 1024);
    let journal = Journal::open(config.clone(), f.signer.clone()).unwrap();
    let reg = AppBuilder::for_journal(journal, Numbering::default()).unwrap();
    const LINES: &[(&str, i64, &str, &str)] =
        &[("A rather long description for padding", 1, "1.00", "A"); 12];
    let receipts = register_concurrently(&reg, 32, 15, LINES);
    let mut signed_seqs = BTreeSet::new();
    let mut refused = Vec::new();
    for (t, i, receipt) in receipts {
        match receipt {
            Receipt::Signed(v) => {
                assert!(signed_seqs.insert(v["journal_seq"].as_u64().unwrap()));
            }
            other => {
                assert_eq!(other.code(), FdmCode::StorageFull, "{:?}", other.to_json());
                refused.push((t, i));
            }
        }
    }
    assert!(!refused.is_empty(), "the journal never filled up");
    reg.journal().clone().close();
    drop(reg);
    // Every acknowledged record is there, and nothing else: the seqs after the anchor are
    // exactly the signed ones.
    let summary = f.verify();
    assert_eq!(summary.fiscal_events, signed_seqs.len() as u64);
    let last = summary.last_seq.unwrap();
    assert_eq!(signed_seqs.last().copied(), Some(last));
    assert_eq!(
        signed_seqs.len() as u64,
        last - 1,
        "record 1 anchors the chain"
    );
    // With more room the refused orders go through, numbered on from there.
    config.max_bytes = Some(16 * 1024 * 1024);
    let reg = AppBuilder::for_journal(
        Journal::open(config, f.signer.clone()).unwrap(),
        Numbering::default(),
    )
    .unwrap();
    for (n, (t, i)) in refused.iter().enumerate() {
        let bytes = order(&format!("r-{i}"), "normal", LINES);
        let r = signed(reg.handle_order_enrolling(&format!("till-{t}"), &bytes));
        assert_eq!(r["journal_seq"].as_u64(), Some(last + 1 + n as u64));
    }
    reg.journal().clone().close();
    assert_eq!(
        f.verify().fiscal_events,
        (signed_seqs.len() + refused.len()) as u64
    );
}

#[test]
fn an_appended_entry_answers_with_its_whole_body_as_stored() {
    let f = Fixture::new();
    let reg = f.registrar(Numbering::default());
    let journal = reg.journal().clone();
    let entry = || {
        let mut entry = Entry::new(
            RecordKind::FiscalEvent,
            json!({"label": "NS", "total": "4.50", "lines": [{"d": "Café", "q": 1}], "zeta": null})
                .as_object()
                .unwrap()
                .clone(),
        );
        entry.key = Some(RequestKey {
            register: "till-1".into(),
            request_id: "r-1".into(),
            digest: "ab".repeat(32),
        });
        entry.counters = Label::parse("NS");
        entry.series = Some("all".into());
        entry
    };
    // Sealed before (the body encoded early), or sealed on the way in: the same answer.
    let first = journal.append_blocking(entry().seal()).unwrap();
    let expected = json!({
        "label": "NS", "total": "4.50", "lines": [{"d": "Café", "q": 1}], "zeta": null,
        "register": "till-1", "request_id": "r-1", "request_digest": "ab".repeat(32),
        "event_counter": 1, "total_counter": 1, "ticket_series": "all", "ticket_number": 1,
    });
    assert_eq!(Value::Object(first.body.clone()), expected);
    let again = journal.append_blocking(entry()).unwrap();
    assert!(again.duplicate);
    assert_eq!(again.body, first.body);
    assert_eq!((again.seq, again.hash), (first.seq, first.hash));
    // The stored record's body is the one answered.
    let conn = query::open_read_only(&f.path).unwrap();
    let stored = query::find_request(&conn, "till-1", "r-1")
        .unwrap()
        .unwrap();
    let record: Value = serde_json::from_slice(&stored.canonical).unwrap();
    assert_eq!(record["body"], expected);
}

#[test]
fn the_same_request_sent_at_once_from_many_threads_is_signed_once() {
    let f = Fixture::new();
    let reg = f.registrar(Numbering::default());
    let barrier = Arc::new(std::sync::Barrier::new(16));
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let (reg, barrier) = (reg.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let bytes = order("same", "normal", &[("Item", 1, "3.00", "B")]);
                signed(reg.handle_order_enrolling("till-1", &bytes))
            })
        })
        .collect();
    let receipts: Vec<Value> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let firsts = receipts.iter().filter(|r| r["code"] == 0).count();
    assert_eq!(firsts, 1, "{receipts:?}");
    assert!(
        receipts
            .iter()
            .all(|r| r["signature"] == receipts[0]["signature"])
    );
    assert_eq!(f.verify().fiscal_events, 1);
}

#[test]
fn the_wal_is_checkpointed_only_as_the_limits_say() {
    // Limits too high to be reached: the WAL is never copied into the database file while the
    // journal is open (SQLite's own automatic checkpoint is replaced, not added to).
    let f = Fixture::new();
    let never = CheckpointLimits {
        background_pages: u32::MAX,
        inline_pages: u32::MAX,
    };
    let reg = f.registrar_with(Numbering::default(), never);
    let before = f.database_file_len();
    f.register_orders(&reg, 40);
    assert_eq!(f.database_file_len(), before, "nothing may checkpoint");
    reg.journal().clone().close();
    drop(reg);

    // An inline limit of a few pages: the writer checkpoints right after its commit, so the
    // pages are in the database file by the time the receipt is back.
    let inline = CheckpointLimits {
        background_pages: u32::MAX,
        inline_pages: 8,
    };
    let reg = f.registrar_with(Numbering::default(), inline);
    let before = f.database_file_len();
    f.register_orders_from(&reg, 40, 40);
    assert!(
        f.database_file_len() > before,
        "the writer checkpoints inline"
    );
    reg.journal().clone().close();
    drop(reg);
    assert_eq!(f.verify().records, 1 + 40 + 40);
}

#[test]
fn the_checkpoint_thread_copies_the_wal_once_it_passes_the_background_limit() {
    let f = Fixture::new();
    let background = CheckpointLimits {
        background_pages: 8,
        inline_pages: u32::MAX,
    };
    let reg = f.registrar_with(Numbering::default(), background);
    let before = f.database_file_len();
    f.register_orders(&reg, 40);
    // The thread runs on its own; wait for it, bounded.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while f.database_file_len() == before && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        f.database_file_len() > before,
        "the checkpoint thread copied pages into the database file"
    );
    // The journal keeps working during and after checkpoints, and verifies.
    f.register_orders_from(&reg, 40, 20);
    reg.journal().clone().close();
    drop(reg);
    assert_eq!(f.verify().records, 1 + 60);
}

#[test]
fn a_shutdown_leaves_every_record_in_the_database_file_alone() {
    let f = Fixture::new();
    let reg = f.registrar(Numbering::default());
    for i in 0..30 {
        signed(reg.handle_order_enrolling(
            "a",
            &order(&i.to_string(), "normal", &[("Soep", 1, "6.50", "B")]),
        ));
    }
    // Another handle stays alive and a reader stays open (as the daemon's do at stop): neither
    // keeps the records in the WAL.
    let other = reg.journal().clone();
    let reader = query::open_read_only(&f.path).unwrap();
    let last = query::load_heads(&reader).unwrap().last_seq;
    assert!(last >= 30, "{last}");
    reg.journal().clone().shutdown().unwrap();
    let wal = f.path.with_extension("sqlite-wal");
    let wal_len = std::fs::metadata(&wal).map_or(0, |m| m.len());
    assert_eq!(wal_len, 0, "the WAL still holds {wal_len} bytes");
    // A copy of journal.sqlite alone (no -wal, no -shm) is the whole journal, and verifies.
    let copy_dir = tempfile::tempdir().unwrap();
    let copy = copy_dir.path().join("journal.sqlite");
    std::fs::copy(&f.path, &copy).unwrap();
    let conn = query::open_read_only(&copy).unwrap();
    let key = f.signer.identity().unwrap().public_key;
    let summary = verify_database(&conn, vec![key]).unwrap();
    assert_eq!(summary.last_seq, Some(last));
    assert_eq!(summary.records, last);
    // The writer is gone for every handle.
    let late = Entry::new(
        RecordKind::DaemonStop,
        serde_json::Map::from_iter([("reason".to_string(), json!("late"))]),
    );
    assert!(other.append_blocking(late).is_err());
    drop(reader);
}
