//! `fdmctl verify FILE` on the export of the fixture journal (written by an older build): the
//! untouched file verifies, and one changed amount is named with its record.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

const FDMCTL: &str = env!("CARGO_BIN_EXE_fdmctl");

fn fixture_export() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/journal-15940aa/export.jsonl")
}

fn verify(file: &Path) -> (i32, String) {
    let out = Command::new(FDMCTL)
        .arg("verify")
        .arg(file)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn the_fixture_export_verifies() {
    let (code, out) = verify(&fixture_export());
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("14 records"), "{out}");
}

#[test]
fn a_changed_price_in_the_export_is_named() {
    let text = std::fs::read_to_string(fixture_export()).unwrap();
    // The Croque of s-1 (record 5) costs 9.80; make it 8.80.
    let price = r#"unit_price\":\"9.80\""#;
    assert_eq!(
        text.matches(price).count(),
        1,
        "the fixture has one Croque line"
    );
    let dir = tempfile::tempdir().unwrap();
    let forged = dir.path().join("forged.jsonl");
    std::fs::write(&forged, text.replace(price, r#"unit_price\":\"8.80\""#)).unwrap();
    let (code, out) = verify(&forged);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("record 5"), "{out}");
}
