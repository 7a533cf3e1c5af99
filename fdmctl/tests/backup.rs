//! `fdmctl backup FILE` on a journal whose writer is still running (its records still in the
//! WAL): the copy is one self-contained file that verifies; an existing file is never
//! overwritten, and a copy that does not verify with the given key is not left behind.
#![allow(clippy::unwrap_used)]

use fdmd::journal::export::verify_database;
use fdmd::journal::record::RecordKind;
use fdmd::journal::{CheckpointLimits, Entry, Journal, JournalConfig, query};
use fdmd::signer::{Signer, SoftwareSigner};
use serde_json::json;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

const FDMCTL: &str = env!("CARGO_BIN_EXE_fdmctl");

fn backup(data_dir: &Path, file: &Path, extra: &[&str]) -> (i32, String) {
    let out = Command::new(FDMCTL)
        .arg("backup")
        .arg("--data-dir")
        .arg(data_dir)
        .args(extra)
        .arg(file)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn a_live_journal_is_copied_whole_into_one_file_that_verifies() {
    let data = tempfile::tempdir().unwrap();
    let signer = Arc::new(SoftwareSigner::from_seed([7; 32]));
    let mut config = JournalConfig::new(data.path().join("journal.sqlite"), "DEVFDMD0001");
    // No checkpoint while the test runs: every record stays in the WAL.
    config.checkpoints = CheckpointLimits {
        background_pages: u32::MAX,
        inline_pages: u32::MAX,
    };
    let journal = Journal::open(config, signer.clone()).unwrap();
    for i in 0..20 {
        let body = json!({"reason": format!("test {i}")});
        journal
            .append_blocking(Entry::new(
                RecordKind::DaemonStop,
                body.as_object().unwrap().clone(),
            ))
            .unwrap();
    }
    // The first record declares the signer.
    let last = query::load_heads(&query::open_read_only(journal.path()).unwrap())
        .unwrap()
        .last_seq;
    assert_eq!(last, 21);
    let wal = data.path().join("journal.sqlite-wal");
    assert!(
        std::fs::metadata(&wal).unwrap().len() > 0,
        "records in the WAL"
    );

    let out_dir = tempfile::tempdir().unwrap();
    let file = out_dir.path().join("journal-backup.sqlite");
    let (code, out) = backup(data.path(), &file, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("21 records (1 to 21)"), "{out}");
    assert!(!out_dir.path().join("journal-backup.sqlite-wal").exists());
    assert!(
        !out_dir
            .path()
            .join("journal-backup.sqlite.partial")
            .exists()
    );
    // The file alone, moved elsewhere, is the whole journal.
    let elsewhere = tempfile::tempdir().unwrap();
    let moved = elsewhere.path().join("copy.sqlite");
    std::fs::copy(&file, &moved).unwrap();
    let conn = query::open_read_only(&moved).unwrap();
    let key = signer.identity().unwrap().public_key;
    let summary = verify_database(&conn, vec![key.clone()]).unwrap();
    assert_eq!((summary.records, summary.last_seq), (last, Some(last)));

    // Never overwrites.
    let before = std::fs::read(&file).unwrap();
    let (code, out) = backup(data.path(), &file, &[]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("exists"), "{out}");
    assert_eq!(std::fs::read(&file).unwrap(), before);

    // Verified with a key that did not sign it: refused, and nothing left behind.
    let other = out_dir.path().join("other.sqlite");
    let wrong = hex::encode([1u8; 32]);
    let (code, out) = backup(data.path(), &other, &["--key", &wrong]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("does not verify"), "{out}");
    assert!(!other.exists());
    assert!(!out_dir.path().join("other.sqlite.partial").exists());
    journal.shutdown().unwrap();
}
