//! Tamper test: a journal of 30 records (record 1 `journal_open`, records 2–30 orders) is copied
//! once per scenario and edited with plain SQL, as someone with write access to the file could
//! (the append-only triggers are dropped first: they are a guard rail, not a protection). The
//! real `fdmctl verify --data-dir DIR` must exit 1 and name the first bad record. The untouched
//! copy verifies, the triggers refuse UPDATE and DELETE, and an edited export is caught too.
//!
//! Journals are made in the current layout (schema 2: canonical bytes compressed with a
//! dictionary kept in the file); the edits that depend on the layout are made on a schema-1
//! journal too (journals made before schema 2 keep their layout and must stay as well guarded).
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use ed25519_dalek::{Signer as _, SigningKey};
use fdmd::assembly::AppBuilder;
use fdmd::journal::canonical::to_canonical;
use fdmd::journal::record::{Envelope, RecordKind, record_hash};
use fdmd::journal::{Journal, JournalConfig};
use fdmd::paths;
use fdmd::service::{Numbering, Receipt};
use fdmd::signer::{Signer, SoftwareSigner};
use fdmd_core::journal::store::{self, IndexColumns, Layout, StoredRecord};
use fdmd_tests::{FDM_ID, Finished, fdmctl_path, fdmctl_verify_dir, order, run_with_timeout};
use rusqlite::{Connection, params};
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

const LOAD: &str = env!("CARGO_BIN_EXE_journal-load");
const SEED: [u8; 32] = [7; 32];
const FORGER_SEED: [u8; 32] = [66; 32];
/// Records in the base journal.
const RECORDS: u64 = 30;

/// The intact journal every scenario starts from.
struct Base {
    dir: tempfile::TempDir,
    data: PathBuf,
    fdmctl: PathBuf,
    /// Receipts of records 2..=30, in order.
    receipts: Vec<Value>,
}

impl Base {
    fn new() -> Self {
        Self::with_layout(Layout::V2)
    }

    /// The base journal, created in `layout`.
    fn with_layout(layout: Layout) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("intact");
        std::fs::create_dir_all(&data).unwrap();
        drop(store::open_for_writing_as(&paths::journal_file(&data), None, layout).unwrap());
        let journal = Journal::open(
            JournalConfig::new(paths::journal_file(&data), FDM_ID),
            Arc::new(SoftwareSigner::from_seed(SEED)),
        )
        .unwrap();
        let registrar = AppBuilder::for_journal(journal.clone(), Numbering::default()).unwrap();
        let receipts: Vec<Value> = (2..=RECORDS)
            .map(|seq| {
                let quantity = if seq % 7 == 0 { -1 } else { 1 };
                let price = format!("{seq}.50");
                let body = order(
                    &format!("t-{seq}"),
                    "normal",
                    &[("Frieten groot", quantity, &price, "B")],
                );
                match registrar.handle_order_enrolling("till-1", &body) {
                    Receipt::Signed(v) => v,
                    other => panic!("order refused: {}", other.to_json()),
                }
            })
            .collect();
        assert_eq!(receipts[10]["journal_seq"], 12);
        assert_eq!(receipts.last().unwrap()["journal_seq"], RECORDS);
        drop(registrar);
        // The last handle: joins the writer, so the file is closed before it is copied.
        journal.close();
        Base {
            fdmctl: fdmctl_path(Path::new(LOAD)),
            dir,
            data,
            receipts,
        }
    }

    /// A copy of the journal's files (database, and WAL files if any) in a new data directory.
    fn copy(&self, name: &str) -> PathBuf {
        let to = self.dir.path().join(name);
        std::fs::create_dir_all(&to).unwrap();
        for entry in std::fs::read_dir(&self.data).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
        to
    }

    /// A copy edited by `edit` through plain SQL, with the append-only triggers dropped, and put
    /// back afterwards as they were (`fdmctl verify --data-dir` names a missing one).
    fn tamper(&self, name: &str, edit: impl FnOnce(&Connection)) -> PathBuf {
        let dir = self.copy(name);
        let conn = Connection::open(paths::journal_file(&dir)).unwrap();
        let triggers: Vec<String> = conn
            .prepare(
                "SELECT sql FROM sqlite_master WHERE type = 'trigger' \
                 AND name IN ('records_no_update', 'records_no_delete') ORDER BY name",
            )
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(triggers.len(), 2);
        conn.execute_batch("DROP TRIGGER records_no_update; DROP TRIGGER records_no_delete;")
            .unwrap();
        edit(&conn);
        for sql in &triggers {
            conn.execute_batch(sql).unwrap();
        }
        drop(conn);
        dir
    }

    fn verify(&self, dir: &Path, extra: &[&str]) -> Finished {
        fdmctl_verify_dir(&self.fdmctl, dir, extra)
    }

    /// Asserts that verification fails (exit 1) and names `seq` as the first bad record, with a
    /// problem containing `problem`.
    fn assert_first_bad(&self, dir: &Path, extra: &[&str], seq: u64, problem: &str) {
        let out = self.verify(dir, extra);
        assert_first_bad(&out, seq, problem, &dir.display().to_string());
    }

    fn public_key_hex(&self) -> String {
        hex::encode(
            SoftwareSigner::from_seed(SEED)
                .identity()
                .unwrap()
                .public_key,
        )
    }
}

fn assert_first_bad(out: &Finished, seq: u64, problem: &str, what: &str) {
    assert_eq!(out.code, Some(1), "{what} should fail:\n{}", out.text());
    let line = format!("first bad record: record {seq}: ");
    assert!(
        out.stdout.contains(&line),
        "{what}: expected {line:?}\n{}",
        out.text()
    );
    assert!(
        out.stdout.contains(problem),
        "{what}: expected the problem {problem:?}\n{}",
        out.text()
    );
}

fn record(conn: &Connection, seq: u64) -> StoredRecord {
    store::record(conn, seq).unwrap().unwrap()
}

/// Stores other canonical bytes, hash and signature for record `seq`, in the journal's layout
/// (schema 2: the bytes compressed with the journal's dictionary, as the writer stores them).
fn set_signed(conn: &Connection, seq: u64, canonical: &[u8], hash: &[u8], signature: &[u8]) {
    let n = match store::stored_form(conn, canonical).unwrap() {
        (None, bytes) => conn.execute(
            "UPDATE records SET canonical = ?1, hash = ?2, signature = ?3 WHERE seq = ?4",
            params![bytes, hash, signature, seq as i64],
        ),
        (Some(dictionary), packed) => conn.execute(
            "UPDATE records SET packed = ?1, dictionary = ?2, hash = ?3, signature = ?4
             WHERE seq = ?5",
            params![packed, dictionary, hash, signature, seq as i64],
        ),
    }
    .unwrap();
    assert_eq!(n, 1);
}

/// The canonical bytes of `r` with its body's `total` replaced.
fn with_total(r: &StoredRecord, total: &str) -> Vec<u8> {
    let mut envelope: Value = serde_json::from_slice(&r.canonical).unwrap();
    assert!(
        envelope["body"]["total"].is_string(),
        "no total in {envelope}"
    );
    envelope["body"]["total"] = json!(total);
    to_canonical(&envelope).unwrap()
}

fn body_of(r: &StoredRecord) -> Map<String, Value> {
    let envelope: Value = serde_json::from_slice(&r.canonical).unwrap();
    envelope["body"].as_object().unwrap().clone()
}

/// Builds, hashes and signs (with `key`, whatever `signer_id` says) a record and appends it.
fn append_forged(
    conn: &Connection,
    seq: u64,
    kind: RecordKind,
    signer_id: &str,
    key: &SigningKey,
    body: &Map<String, Value>,
    index: IndexColumns,
) {
    let prev = record(conn, seq - 1);
    let prev_hash: [u8; 32] = prev.hash.as_slice().try_into().unwrap();
    let time = prev.time.clone();
    let canonical = Envelope {
        seq,
        kind,
        time: &time,
        fdm_id: FDM_ID,
        signer_id,
        prev_hash: &prev_hash,
        body,
    }
    .canonical_bytes()
    .unwrap();
    let hash = record_hash(&canonical);
    let signature = key.sign(&hash).to_bytes().to_vec();
    store::insert(
        conn,
        &StoredRecord {
            seq,
            kind: kind.as_str().to_owned(),
            canonical,
            prev_hash: prev_hash.to_vec(),
            hash: hash.to_vec(),
            signature,
            signer_id: signer_id.to_owned(),
            time,
            index,
        },
    )
    .unwrap();
}

fn delete(conn: &Connection, seq: u64) {
    let n = conn
        .execute("DELETE FROM records WHERE seq = ?1", [seq as i64])
        .unwrap();
    assert_eq!(n, 1);
}

#[test]
fn the_untouched_copy_verifies() {
    let base = Base::new();
    let dir = base.copy("untouched");
    let out = base.verify(&dir, &["--key", &base.public_key_hex()]);
    assert_eq!(out.code, Some(0), "{}", out.text());
    assert!(
        out.stdout
            .contains("30 records (1 to 30), 29 fiscal events"),
        "{}",
        out.text()
    );
}

#[test]
fn a_changed_field_is_caught_by_the_hash_and_a_rehashed_one_by_the_signature() {
    for layout in [Layout::V2, Layout::V1] {
        let base = Base::with_layout(layout);
        let changed = base.tamper("changed-total", |conn| {
            let r = record(conn, 12);
            set_signed(conn, 12, &with_total(&r, "0.01"), &r.hash, &r.signature);
        });
        base.assert_first_bad(&changed, &[], 12, "do not match the record's hash");

        // The forger also stores the matching hash: only the signature can tell.
        let rehashed = base.tamper("changed-total-rehashed", |conn| {
            let r = record(conn, 12);
            let canonical = with_total(&r, "0.01");
            set_signed(conn, 12, &canonical, &record_hash(&canonical), &r.signature);
        });
        base.assert_first_bad(&rehashed, &[], 12, "bad signature");
    }
}

/// Schema 2 stores records compressed: any change of a stored frame, however small, is caught
/// (either the frame no longer decompresses, or it gives other bytes than were hashed).
#[test]
fn a_changed_byte_of_a_compressed_record_is_caught() {
    let base = Base::new();
    let packed: Vec<u8> = {
        let conn = Connection::open(paths::journal_file(&base.data)).unwrap();
        conn.query_row("SELECT packed FROM records WHERE seq = 12", [], |r| {
            r.get(0)
        })
        .unwrap()
    };
    let mut caught = 0;
    // Bytes of the frame, each changed in its own copy: all of zstd's header and the first
    // blocks' headers, then every fifth.
    let bytes: Vec<usize> = (0..packed.len())
        .filter(|at| *at < 16 || at % 5 == 0 || *at == packed.len() - 1)
        .collect();
    for &at in &bytes {
        let dir = base.tamper(&format!("packed-byte-{at}"), |conn| {
            let mut edited = packed.clone();
            edited[at] ^= 0x20;
            let n = conn
                .execute(
                    "UPDATE records SET packed = ?1 WHERE seq = 12",
                    params![edited],
                )
                .unwrap();
            assert_eq!(n, 1);
        });
        let out = base.verify(&dir, &[]);
        if out.code == Some(0) {
            // A few bits of a zstd frame do not change what it decodes to (for example a
            // literal's Huffman weight that no literal uses): then the record itself is unchanged,
            // byte for byte, and so is everything its hash and signature cover.
            let conn = store::open_read_only(&paths::journal_file(&dir)).unwrap();
            let read = record(&conn, 12);
            let intact = record(
                &store::open_read_only(&paths::journal_file(&base.data)).unwrap(),
                12,
            );
            assert_eq!(read, intact, "byte {at}: verified, yet the record differs");
        } else {
            assert_eq!(out.code, Some(1), "byte {at}: {}", out.text());
            assert!(
                out.stdout.contains("first bad record: record 12: "),
                "byte {at}: {}",
                out.text()
            );
            caught += 1;
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
    // Nearly every change is a change of the record.
    assert!(
        caught * 10 >= bytes.len() * 9,
        "{caught} of {} changes caught",
        bytes.len()
    );
}

/// The dictionary is part of every record's stored form: changing it is caught at the first
/// record, and its own triggers refuse UPDATE and DELETE.
#[test]
fn a_changed_dictionary_is_caught() {
    let base = Base::new();
    let dir = base.copy("dictionary-triggers");
    let conn = Connection::open(paths::journal_file(&dir)).unwrap();
    for sql in [
        "UPDATE dictionaries SET bytes = x'00' WHERE id = 1",
        "DELETE FROM dictionaries",
        "INSERT OR REPLACE INTO dictionaries (id, bytes) VALUES (1, x'00')",
    ] {
        let refused = conn.execute(sql, []).unwrap_err().to_string();
        assert!(
            refused.contains("journal dictionaries are append-only"),
            "{sql}: {refused}"
        );
    }
    drop(conn);

    let dir = base.tamper("dictionary-changed", |conn| {
        conn.execute_batch("DROP TRIGGER dictionaries_no_update;")
            .unwrap();
        let n = conn
            .execute(
                "UPDATE dictionaries
                 SET bytes = CAST(replace(CAST(bytes AS TEXT), 'fiscal_event', 'fiscal_evenT') AS BLOB)",
                [],
            )
            .unwrap();
        assert_eq!(n, 1);
    });
    let out = base.verify(&dir, &[]);
    assert_eq!(out.code, Some(1), "{}", out.text());
    assert!(
        out.stdout.contains("first bad record: record "),
        "{}",
        out.text()
    );

    let dir = base.tamper("dictionary-deleted", |conn| {
        conn.execute_batch("DROP TRIGGER dictionaries_no_delete; DELETE FROM dictionaries;")
            .unwrap();
    });
    base.assert_first_bad(&dir, &[], 1, "its dictionary 1 is not in the journal");
}

#[test]
fn a_deleted_record_is_named() {
    let base = Base::new();
    let dir = base.tamper("deleted-12", |conn| delete(conn, 12));
    base.assert_first_bad(
        &dir,
        &[],
        12,
        "record is missing (record 11 is followed by record 13)",
    );
}

#[test]
fn swapped_records_are_caught() {
    let base = Base::new();
    let dir = base.tamper("swapped-12-13", |conn| {
        let (a, b) = (record(conn, 12), record(conn, 13));
        set_signed(conn, 12, &b.canonical, &b.hash, &b.signature);
        set_signed(conn, 13, &a.canonical, &a.hash, &a.signature);
    });
    base.assert_first_bad(
        &dir,
        &[],
        12,
        "the sequence number inside the record differs from its position",
    );
}

/// With INTEGER PRIMARY KEY sequence numbers and each record's `seq` inside its signed bytes, a
/// record cannot be slid in between two others; the closest a forger gets is replacing the tail.
#[test]
fn a_forged_record_signed_with_another_key_is_caught() {
    let base = Base::new();
    let forger = SigningKey::from_bytes(&FORGER_SEED);
    let real_id = SoftwareSigner::from_seed(SEED).identity().unwrap().id;

    // Claims to be signed by the real signer.
    let dir = base.tamper("forged-tail-real-id", |conn| {
        let last = record(conn, RECORDS);
        delete(conn, RECORDS);
        let mut body = body_of(&last);
        body.insert("total".into(), json!("0.01"));
        append_forged(
            conn,
            RECORDS,
            RecordKind::FiscalEvent,
            &real_id,
            &forger,
            &body,
            last.index.clone(),
        );
    });
    base.assert_first_bad(&dir, &[], RECORDS, "bad signature");

    // Signed under the forger's own, undeclared id.
    let forger_id = SoftwareSigner::from_seed(FORGER_SEED)
        .identity()
        .unwrap()
        .id;
    let dir = base.tamper("forged-tail-own-id", |conn| {
        let last = record(conn, RECORDS);
        delete(conn, RECORDS);
        append_forged(
            conn,
            RECORDS,
            RecordKind::FiscalEvent,
            &forger_id,
            &forger,
            &body_of(&last),
            last.index.clone(),
        );
    });
    base.assert_first_bad(&dir, &[], RECORDS, "a signer never declared");
}

/// The forger declares its own key with a `signer_change` record (declarations are signed by the
/// key they declare, docs/journal-format.md §5). The journal is then self-consistent: without
/// trusted keys `fdmctl verify` passes, and says the keys came from the journal itself. Given the
/// real key (`--key`), it names the forged declaration.
#[test]
fn a_self_declared_forger_is_caught_only_against_a_trusted_key() {
    let base = Base::new();
    let forger = SoftwareSigner::from_seed(FORGER_SEED);
    let forger_key = SigningKey::from_bytes(&FORGER_SEED);
    let identity = forger.identity().unwrap();
    let dir = base.tamper("forged-signer-change", |conn| {
        let last = record(conn, RECORDS);
        delete(conn, RECORDS);
        let mut declaration = Map::new();
        declaration.insert(
            "signer".into(),
            json!({
                "id": identity.id,
                "algorithm": identity.algorithm,
                "public_key": hex::encode(&identity.public_key),
                "certified": false,
            }),
        );
        append_forged(
            conn,
            RECORDS,
            RecordKind::SignerChange,
            &identity.id,
            &forger_key,
            &declaration,
            IndexColumns::default(),
        );
        // Self-consistent: a changed total would contradict the lines (verify recomputes it).
        let mut body = body_of(&last);
        body.insert("pos_time".into(), json!("forged"));
        append_forged(
            conn,
            RECORDS + 1,
            RecordKind::FiscalEvent,
            &identity.id,
            &forger_key,
            &body,
            last.index.clone(),
        );
    });
    let out = base.verify(&dir, &[]);
    assert_eq!(
        out.code,
        Some(0),
        "without trusted keys a self-declared signer verifies (documented):\n{}",
        out.text()
    );
    assert!(
        out.stdout
            .contains("note: keys were taken from the journal itself"),
        "{}",
        out.text()
    );
    assert!(out.stdout.contains(&identity.id), "{}", out.text());
    base.assert_first_bad(
        &dir,
        &["--key", &base.public_key_hex()],
        RECORDS,
        "is not among the trusted keys",
    );
}

#[test]
fn a_changed_index_column_is_caught() {
    for layout in [Layout::V2, Layout::V1] {
        let base = Base::with_layout(layout);
        let mut columns = vec![
            ("label", json!("NR"), "column label differs"),
            ("request_id", json!("t-99"), "column request_id differs"),
            ("register_id", json!("till-9"), "column register_id differs"),
            (
                "time",
                json!("2020-01-01T00:00:00.000+01:00"),
                "column time differs",
            ),
            (
                "series_number",
                json!(99),
                "column series/series_number differs",
            ),
            (
                "total_counter",
                json!(99),
                "column event_counter/total_counter differs",
            ),
        ];
        match layout {
            // Schema 1 also stored these beside the canonical bytes; schema 2 reads them from
            // the canonical bytes.
            Layout::V1 => columns.extend([
                (
                    "request_digest",
                    json!("0".repeat(64)),
                    "column request_digest differs",
                ),
                ("kind", json!("report"), "column kind differs"),
                (
                    "signer_id",
                    json!("DEVSW-00000000"),
                    "column signer_id differs",
                ),
            ]),
            Layout::V2 => columns.push(("kind_code", json!(3), "column kind differs")),
        }
        for (column, value, problem) in columns {
            let dir = base.tamper(&format!("column-{column}"), |conn| {
                let sql = format!("UPDATE records SET {column} = ?1 WHERE seq = 12");
                let value = match &value {
                    Value::String(s) => rusqlite::types::Value::Text(s.clone()),
                    v => rusqlite::types::Value::Integer(v.as_i64().unwrap()),
                };
                assert_eq!(conn.execute(&sql, [value]).unwrap(), 1);
            });
            base.assert_first_bad(&dir, &[], 12, problem);
        }
    }
}

/// A hash chain cannot show that records were cut off at its end (docs/journal-format.md §7,
/// "Limit"): the shortened journal is a valid journal of 29 records, and `fdmctl verify` passes.
/// Only something kept outside the journal shows it, e.g. the register's last receipt, whose
/// `journal_seq` is 30 and whose `signed_digest` no longer exists.
#[test]
fn tail_truncation_is_not_visible_to_the_chain_alone() {
    let base = Base::new();
    let dir = base.tamper("truncated", |conn| delete(conn, RECORDS));
    let out = base.verify(&dir, &["--key", &base.public_key_hex()]);
    assert_eq!(out.code, Some(0), "{}", out.text());
    assert!(
        out.stdout.contains("29 records (1 to 29)"),
        "{}",
        out.text()
    );
    // What reveals it: the last receipt a register holds.
    let last_receipt = base.receipts.last().unwrap();
    assert_eq!(last_receipt["journal_seq"], RECORDS);
    let conn = store::open_read_only(&paths::journal_file(&dir)).unwrap();
    assert!(store::record(&conn, RECORDS).unwrap().is_none());
    assert!(
        store::find_request(&conn, "till-1", "t-30")
            .unwrap()
            .is_none(),
        "the receipt's request is gone from the journal"
    );
}

#[test]
fn the_triggers_refuse_update_and_delete() {
    for layout in [Layout::V2, Layout::V1] {
        triggers_refuse(layout);
    }
}

fn triggers_refuse(layout: Layout) {
    let base = Base::with_layout(layout);
    let dir = base.copy("triggers");
    let conn = Connection::open(paths::journal_file(&dir)).unwrap();
    let update = conn
        .execute("UPDATE records SET label = 'NR' WHERE seq = 12", [])
        .unwrap_err()
        .to_string();
    assert!(
        update.contains("journal records are append-only: UPDATE refused"),
        "{update}"
    );
    let upsert = conn
        .execute(
            "INSERT INTO records SELECT * FROM records WHERE seq = 12
             ON CONFLICT (seq) DO UPDATE SET hash = excluded.signature",
            [],
        )
        .unwrap_err()
        .to_string();
    assert!(
        upsert.contains("INSERT over an existing record refused"),
        "{upsert}"
    );
    for sql in [
        "DELETE FROM records WHERE seq = 12",
        "DELETE FROM records WHERE seq = 30",
        "DELETE FROM records",
    ] {
        let delete = conn.execute(sql, []).unwrap_err().to_string();
        assert!(
            delete.contains("journal records are append-only: DELETE refused"),
            "{sql}: {delete}"
        );
    }
    // INSERT OR REPLACE would delete the old row by conflict resolution, which fires no DELETE
    // trigger (recursive_triggers is off by default); the BEFORE INSERT trigger refuses it.
    let replaced = conn
        .execute(
            "INSERT OR REPLACE INTO records SELECT * FROM records WHERE seq = 12",
            [],
        )
        .unwrap_err()
        .to_string();
    assert!(
        replaced.contains("INSERT over an existing record refused"),
        "{replaced}"
    );
    let count: i64 = conn
        .query_row("SELECT count(*) FROM records", [], |r| r.get(0))
        .unwrap();
    assert_eq!(count, RECORDS as i64);
    drop(conn);
    let out = base.verify(&dir, &[]);
    assert_eq!(out.code, Some(0), "{}", out.text());
}

fn export(base: &Base, name: &str) -> (PathBuf, Vec<String>) {
    let file = base.dir.path().join(name);
    let out = run_with_timeout(
        Command::new(&base.fdmctl)
            .arg("export")
            .arg("--data-dir")
            .arg(&base.data)
            .arg("-o")
            .arg(&file),
        Duration::from_secs(60),
    );
    assert_eq!(out.code, Some(0), "{}", out.text());
    let lines = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    (file, lines)
}

fn verify_file(base: &Base, file: &Path, extra: &[&str]) -> Finished {
    run_with_timeout(
        Command::new(&base.fdmctl)
            .arg("verify")
            .args(extra)
            .arg(file),
        Duration::from_secs(60),
    )
}

fn write_lines(base: &Base, name: &str, lines: &[String]) -> PathBuf {
    let file = base.dir.path().join(name);
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    file
}

/// Index of the line of record `seq` in an export.
fn line_of(lines: &[String], seq: u64) -> usize {
    lines
        .iter()
        .position(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["type"] == "record" && v["seq"] == seq
        })
        .unwrap()
}

#[test]
fn a_tampered_export_is_caught() {
    let base = Base::new();
    let (file, lines) = export(&base, "export.jsonl");
    assert_eq!(lines.len() as u64, RECORDS + 2, "header, records, end");
    let out = verify_file(&base, &file, &["--key", &base.public_key_hex()]);
    assert_eq!(out.code, Some(0), "{}", out.text());
    let wrong_key = hex::encode(
        SoftwareSigner::from_seed(FORGER_SEED)
            .identity()
            .unwrap()
            .public_key,
    );
    let out = verify_file(&base, &file, &["--key", &wrong_key]);
    assert_first_bad(
        &out,
        1,
        "is not among the trusted keys",
        "export, wrong key",
    );

    let at = line_of(&lines, 12);
    let mut line: Value = serde_json::from_str(&lines[at]).unwrap();
    let mut envelope: Value = serde_json::from_str(line["record"].as_str().unwrap()).unwrap();
    envelope["body"]["total"] = json!("0.01");
    let canonical = to_canonical(&envelope).unwrap();
    line["record"] = json!(String::from_utf8(canonical.clone()).unwrap());

    let mut edited = lines.clone();
    edited[at] = line.to_string();
    let out = verify_file(&base, &write_lines(&base, "edited.jsonl", &edited), &[]);
    assert_first_bad(&out, 12, "do not match the record's hash", "edited export");

    line["hash"] = json!(hex::encode(record_hash(&canonical)));
    edited[at] = line.to_string();
    let out = verify_file(&base, &write_lines(&base, "rehashed.jsonl", &edited), &[]);
    assert_first_bad(&out, 12, "bad signature", "edited and rehashed export");

    let mut removed = lines.clone();
    removed.remove(at);
    let out = verify_file(&base, &write_lines(&base, "removed.jsonl", &removed), &[]);
    assert_first_bad(&out, 12, "record is missing", "export without record 12");

    // Cut short: without its end line an export is refused, even though every record is intact.
    let cut = &lines[..lines.len() - 1];
    let out = verify_file(&base, &write_lines(&base, "cut.jsonl", cut), &[]);
    assert_eq!(out.code, Some(1), "{}", out.text());
    assert!(out.stdout.contains("cut short"), "{}", out.text());
}
