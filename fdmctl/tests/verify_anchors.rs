//! `fdmctl verify FILE` on exports built here with the test's own Ed25519 keys: where signer keys
//! may come from (the chain, `--key`; never the unsigned header alone) and outside anchors
//! (`--anchor SEQ:HASH`), run on the real binary.
#![allow(clippy::unwrap_used)]

use fdmd::journal::record::{Envelope, GENESIS_PREV_HASH, RecordKind, record_hash};
use fdmd::signer::{Signer, SoftwareSigner};
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;

const FDMCTL: &str = env!("CARGO_BIN_EXE_fdmctl");
const TIME: &str = "2026-12-06T06:00:00.000+01:00";
const REAL: [u8; 32] = [7; 32];
const FORGER: [u8; 32] = [3; 32];
const RECORDS: u64 = 10;

struct Record {
    seq: u64,
    canonical: String,
    hash: [u8; 32],
    signature: Vec<u8>,
}

fn signer(seed: [u8; 32]) -> (SoftwareSigner, String, String) {
    let s = SoftwareSigner::from_seed(seed);
    let identity = s.identity().unwrap();
    (s, identity.id, hex::encode(identity.public_key))
}

fn declaration(seed: [u8; 32]) -> Value {
    let (_, id, public_key) = signer(seed);
    json!({"id": id, "algorithm": "ed25519", "public_key": public_key})
}

fn sign(seq: u64, kind: RecordKind, prev: &[u8; 32], body: &Value, seed: [u8; 32]) -> Record {
    let (s, id, _) = signer(seed);
    let body: Map<String, Value> = body.as_object().cloned().unwrap();
    let canonical = Envelope {
        seq,
        kind,
        time: TIME,
        fdm_id: "DEVFDMD0001",
        signer_id: &id,
        prev_hash: prev,
        body: &body,
    }
    .canonical_bytes()
    .unwrap();
    let hash = record_hash(&canonical);
    Record {
        seq,
        canonical: String::from_utf8(canonical).unwrap(),
        hash,
        signature: s.sign(&id, &hash).unwrap(),
    }
}

fn sale(n: u64) -> Value {
    json!({"source": "precomputed", "label": "NS", "event_counter": n, "total_counter": n,
        "ticket_series": "N", "ticket_number": n, "total": "1.00"})
}

/// A journal of `RECORDS` records signed with `REAL`; from record `forged_from` on (if any),
/// re-signed by `FORGER` under its own id, which no record declares.
fn journal(forged_from: Option<u64>) -> Vec<Record> {
    let mut signer = declaration(REAL);
    signer["certified"] = json!(false);
    let mut rows = vec![sign(
        1,
        RecordKind::JournalOpen,
        &GENESIS_PREV_HASH,
        &json!({"signer": signer}),
        REAL,
    )];
    for seq in 2..=RECORDS {
        let seed = if forged_from.is_some_and(|f| seq >= f) {
            FORGER
        } else {
            REAL
        };
        let prev = rows[rows.len() - 1].hash;
        rows.push(sign(
            seq,
            RecordKind::FiscalEvent,
            &prev,
            &sale(seq - 1),
            seed,
        ));
    }
    rows
}

/// The export of `rows[from - 1..to]`, its header listing `header_signers`.
fn export(rows: &[Record], from: u64, to: u64, header_signers: &[[u8; 32]]) -> String {
    let slice = &rows[from as usize - 1..to as usize];
    let signers: Vec<Value> = header_signers.iter().map(|s| declaration(*s)).collect();
    let mut lines = vec![
        json!({"type": "header", "format": "fdmd-journal-export", "version": 1,
            "fdm_id": "DEVFDMD0001", "first_seq": from, "last_seq": to,
            "exported_at": TIME, "signers": signers})
        .to_string(),
    ];
    for r in slice {
        lines.push(
            json!({"type": "record", "seq": r.seq, "hash": hex::encode(r.hash),
                "signature": hex::encode(&r.signature), "record": r.canonical})
            .to_string(),
        );
    }
    lines.push(
        json!({"type": "end", "records": slice.len(),
            "last_hash": slice.last().map(|r| hex::encode(r.hash))})
        .to_string(),
    );
    lines.join("\n") + "\n"
}

struct Files(tempfile::TempDir);

impl Files {
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

fn verify(file: &Path, extra: &[&str]) -> (i32, String) {
    let out = Command::new(FDMCTL)
        .arg("verify")
        .arg(file)
        .args(extra)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

fn anchor(rows: &[Record], seq: u64) -> String {
    format!("{seq}:{}", hex::encode(rows[seq as usize - 1].hash))
}

#[test]
fn an_untouched_export_verifies() {
    let files = Files(tempfile::tempdir().unwrap());
    let rows = journal(None);
    let file = files.write("whole.jsonl", &export(&rows, 1, RECORDS, &[REAL]));
    let (code, out) = verify(&file, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("OK"), "{out}");
    assert!(
        out.contains("keys were taken from the journal itself"),
        "{out}"
    );
}

#[test]
fn a_tail_re_signed_with_a_key_only_the_header_lists_fails() {
    let files = Files(tempfile::tempdir().unwrap());
    let rows = journal(Some(8));
    let (_, forger_id, _) = signer(FORGER);
    let file = files.write("forged.jsonl", &export(&rows, 1, RECORDS, &[REAL, FORGER]));
    let (code, out) = verify(&file, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAILED"), "{out}");
    assert!(
        out.contains(&format!(
            "record 8: signer {forger_id} is not declared in the chain"
        )),
        "{out}"
    );
}

#[test]
fn a_slice_needs_its_header_keys_anchored() {
    let files = Files(tempfile::tempdir().unwrap());
    let rows = journal(None);
    let (_, _, real_key) = signer(REAL);
    let file = files.write("slice.jsonl", &export(&rows, 4, RECORDS, &[REAL]));
    // Nothing ties the header's key to the journal.
    let (code, out) = verify(&file, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAILED"), "{out}");
    assert!(
        out.contains("unanchored key: signer") && out.contains(&real_key),
        "{out}"
    );
    assert!(out.contains("records 4 to 10"), "{out}");
    let (code, out) = verify(&file, &["--json"]);
    assert_eq!(code, 1, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], false, "{out}");
    assert_eq!(v["unanchored_keys"][0]["signer"]["public_key"], real_key);
    // The key given: OK.
    let (code, out) = verify(&file, &["--key", &real_key]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("OK"), "{out}");
    // An anchor at the last record it signed: OK; at an earlier record: not enough.
    let (code, out) = verify(&file, &["--anchor", &anchor(&rows, RECORDS)]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("anchor 10 matches"), "{out}");
    let (code, out) = verify(&file, &["--anchor", &anchor(&rows, 9)]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&real_key), "{out}");
}

#[test]
fn anchors_must_match_and_be_reached() {
    let files = Files(tempfile::tempdir().unwrap());
    let rows = journal(None);
    let whole = files.write("whole.jsonl", &export(&rows, 1, RECORDS, &[REAL]));
    // Matching anchors: OK, and named.
    let (code, out) = verify(
        &whole,
        &[
            "--anchor",
            &anchor(&rows, 5),
            "--anchor",
            &anchor(&rows, 10),
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("anchor 5 matches"), "{out}");
    assert!(out.contains("anchor 10 matches"), "{out}");
    let (code, out) = verify(&whole, &["--json", "--anchor", &anchor(&rows, 5)]);
    assert_eq!(code, 0, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], true, "{out}");
    assert_eq!(v["anchors"][0]["seq"], 5, "{out}");
    // Another hash at record 5.
    let wrong = format!("5:{}", hex::encode(rows[5].hash));
    let (code, out) = verify(&whole, &["--anchor", &wrong]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAILED") && out.contains("anchor 5: "),
        "{out}"
    );
    let (code, out) = verify(&whole, &["--json", "--anchor", &wrong]);
    assert_eq!(code, 1, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["ok"].clone(), v["anchor"].clone()),
        (json!(false), json!(5))
    );
    // The export cut at its tail (a proper end line, records 9 and 10 left out): the anchor at
    // record 10, from a receipt, is not reached.
    let cut = files.write("cut.jsonl", &export(&rows, 1, 8, &[REAL]));
    let (code, out) = verify(&cut, &[]);
    assert_eq!(code, 0, "a cut chain verifies on its own: {out}");
    let (code, out) = verify(&cut, &["--anchor", &anchor(&rows, 10)]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAILED") && out.contains("anchor 10: "),
        "{out}"
    );
    // An anchor before the export's first record cannot be checked: a failure too.
    let slice = files.write("slice.jsonl", &export(&rows, 4, RECORDS, &[REAL]));
    let (code, out) = verify(&slice, &["--anchor", &anchor(&rows, 2)]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("anchor 2: "), "{out}");
    // A malformed anchor is a usage error.
    let (code, out) = verify(&whole, &["--anchor", "5:abc"]);
    assert_eq!(code, 2, "{out}");
}
