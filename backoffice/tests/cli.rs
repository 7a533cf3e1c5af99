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
    assert!(out.contains("applied migrations [1, 2]"), "{out}");
    let (ok, out) = run(&db, &["migrate"]);
    assert!(ok, "{out}");
    assert!(out.contains("schema is up to date (version 2)"), "{out}");
    assert_eq!(
        pg.psql("office", "SELECT count(*) FROM schema_migrations"),
        "2"
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
    // A flag is cleared by an administrator only.
    pg.psql(
        "office",
        "UPDATE establishments SET flagged = true, flag_code = 'fork' WHERE id = 'bxl-01'",
    );
    let (ok, out) = run(&db, &["unflag", "--id", "bxl-01"]);
    assert!(ok && out.contains("flag cleared"), "{out}");
    assert_eq!(
        pg.psql(
            "office",
            "SELECT flagged, flag_code IS NULL FROM establishments"
        ),
        "f|t"
    );
    let (ok, out) = run(&db, &["unflag", "--id", "bxl-01"]);
    assert!(ok && out.contains("was not flagged"), "{out}");
    let (ok, out) = run(&db, &["unflag", "--id", "nobody"]);
    assert!(!ok && out.contains("no establishment"), "{out}");
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

#[test]
fn serve_refuses_an_old_schema_then_serves_and_stops_on_sigterm() {
    use std::io::{BufRead, BufReader, Read, Write};
    let pg = common::pg::Pg::start();
    pg.psql("postgres", "CREATE DATABASE office");
    let db = pg.conninfo("office");
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("admin-token");
    std::fs::write(&token, format!("{}\n", common::ADMIN)).unwrap();
    let serve = |db: &str| {
        let mut cmd = Command::new(BIN);
        cmd.arg("--db")
            .arg(db)
            .args(["serve", "--listen", "127.0.0.1:0", "--admin-token-file"])
            .arg(&token)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        cmd
    };
    // Before `migrate`: refused, with the way out.
    let out = serve(&db).output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("fdmd-backoffice migrate"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(run(&db, &["migrate"]).0);
    let mut child = serve(&db).spawn().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("{line}"))
        .to_owned();
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("fdmd_backoffice_establishments{state=\"enrolled\"} 0"));
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > std::time::Duration::from_secs(20) {
            let _ = child.kill();
            panic!("fdmd-backoffice did not stop on SIGTERM");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
}
