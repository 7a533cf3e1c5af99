//! The test vectors of docs/test-vectors/ give the verdicts `expected.json` states when checked
//! with the real `fdmctl verify`: the first bad record and exit 1 for every tampered file, exit 0
//! for the good ones, and a refusal when a stated anchor is given.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use serde_json::Value;
use std::path::Path;
use std::process::Command;

const FDMCTL: &str = env!("CARGO_BIN_EXE_fdmctl");

fn verify(file: &Path, anchors: &[&str]) -> (i32, String) {
    let mut cmd = Command::new(FDMCTL);
    cmd.arg("verify").arg(file);
    for a in anchors {
        cmd.args(["--anchor", a]);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn every_vector_gets_its_expected_verdict() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/test-vectors");
    let expected: Value =
        serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
    let cases = expected.as_object().unwrap();
    assert!(cases.len() >= 9, "{} vectors", cases.len());
    for (name, case) in cases {
        let file = dir.join(name);
        let (code, out) = verify(&file, &[]);
        if case["valid"] == true {
            assert_eq!(code, 0, "{name} should verify: {out}");
        } else {
            assert_eq!(code, 1, "{name} should be refused: {out}");
            if let Some(seq) = case["first_bad_record"].as_u64() {
                assert!(
                    out.contains(&format!("first bad record: record {seq}:")),
                    "{name}: first bad record should be {seq}: {out}"
                );
            }
        }
        if let Some(anchors) = case["anchors"].as_array() {
            let anchors: Vec<&str> = anchors.iter().map(|a| a.as_str().unwrap()).collect();
            let (code, out) = verify(&file, &anchors);
            assert_eq!(
                code, 1,
                "{name} with anchors {anchors:?} should be refused: {out}"
            );
        }
    }
    // Every file in the directory is a stated case.
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".jsonl") {
            assert!(cases.contains_key(&name), "{name} has no expected verdict");
        }
    }
}
