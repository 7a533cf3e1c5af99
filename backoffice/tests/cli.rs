//! `fdmd-backoffice migrate` and `enrol` as an administrator runs them, on a real PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_fdmd-backoffice");

fn run(db: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(BIN)
        .arg("--db")
        .arg(db)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn migrate_is_idempotent_and_enrol_prints_the_credential_once() {
    let pg = common::pg::Pg::start();
    pg.psql("postgres", "CREATE DATABASE office");
    let db = pg.conninfo("office");
    let (ok, out) = run(&db, &["migrate"]);
    assert!(ok, "{out}");
    assert!(out.contains("applied migrations [1]"), "{out}");
    let (ok, out) = run(&db, &["migrate"]);
    assert!(ok, "{out}");
    assert!(out.contains("schema is up to date (version 1)"), "{out}");
    assert_eq!(
        pg.psql("office", "SELECT count(*) FROM schema_migrations"),
        "1"
    );
    let key = "11".repeat(32);
    let (ok, out) = run(
        &db,
        &[
            "enrol",
            "--id",
            "bxl-01",
            "--name",
            "Brasserie",
            "--vat-number",
            "BE0123456749",
            "--key",
            &key,
        ],
    );
    assert!(ok, "{out}");
    let credential = out.lines().last().unwrap().trim().to_owned();
    assert_eq!(credential.len(), 64, "{out}");
    // Only its hash is stored.
    let stored = pg.psql(
        "office",
        "SELECT encode(credential_sha256, 'hex') FROM establishments",
    );
    assert_ne!(stored, credential);
    assert_eq!(
        stored,
        hex::encode(fdmd_backoffice::credential::hash(&credential))
    );
    assert_eq!(
        pg.psql(
            "office",
            "SELECT encode(public_key, 'hex') FROM enrolled_keys"
        ),
        key
    );
    // Enrolling it again, or with a bad key, fails.
    let (ok, out) = run(
        &db,
        &[
            "enrol",
            "--id",
            "bxl-01",
            "--name",
            "B",
            "--vat-number",
            "BE0123456749",
            "--key",
            &key,
        ],
    );
    assert!(!ok && out.contains("enrolled already"), "{out}");
    let (ok, out) = run(
        &db,
        &[
            "enrol",
            "--id",
            "x",
            "--name",
            "B",
            "--vat-number",
            "BE0123456749",
            "--key",
            "abc",
        ],
    );
    assert!(!ok && out.contains("64 hex"), "{out}");
    let (ok, out) = run(
        &db,
        &["add-key", "--id", "bxl-01", "--key", &"22".repeat(32)],
    );
    assert!(ok, "{out}");
    assert_eq!(pg.psql("office", "SELECT count(*) FROM enrolled_keys"), "2");
}

#[test]
fn the_openapi_document_lists_every_route() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/openapi-backoffice.json"
    );
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    let mut documented = Vec::new();
    for (route, ops) in paths {
        for method in ops.as_object().unwrap().keys() {
            documented.push((method.to_uppercase(), route.clone()));
        }
    }
    let mut served: Vec<(String, String)> = fdmd_backoffice::http::ROUTES
        .iter()
        .map(|(m, r)| (m.to_string(), r.to_string()))
        .collect();
    documented.sort();
    served.sort();
    assert_eq!(documented, served);
}
