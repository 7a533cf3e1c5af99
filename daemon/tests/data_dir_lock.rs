//! One fdmd per data directory (issue 15, point 12): a second daemon on the same directory
//! refuses to start and writes nothing, the first keeps signing, `fdmctl`'s read-only commands
//! keep working beside it; and a journal changed under a running writer (by a process that
//! went past the lock) makes the daemon stop signing and say why.
#![allow(clippy::unwrap_used)]

mod support;

use fdmd::journal::record::RecordKind;
use fdmd::journal::{Entry, Journal, JournalConfig};
use fdmd::signer::SoftwareSigner;
use hyper::{Method, StatusCode};
use serde_json::Value;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{Daemon, FDMD, fdmctl, free_port, order};

fn dev_token(d: &Daemon) -> String {
    let creds: Value =
        serde_json::from_slice(&std::fs::read(d.data_dir().join("dev-credentials.json")).unwrap())
            .unwrap();
    creds["http_token"].as_str().unwrap().to_owned()
}

fn send(d: &Daemon, token: &str, request_id: &str) -> (StatusCode, Value) {
    d.request(
        Method::POST,
        "/v1/registers/dev-register/orders",
        Some(token),
        Some(order(request_id, &[("Cola", 1, "2.20", "A")])),
    )
}

fn status(d: &Daemon) -> Value {
    let (code, status) = d.request(Method::GET, "/v1/status", Some(&d.admin_token()), None);
    assert_eq!(code, StatusCode::OK, "{status}");
    status
}

#[test]
fn a_second_daemon_on_the_same_data_directory_refuses_to_start_and_writes_nothing() {
    let d = Daemon::start_dev();
    let token = dev_token(&d);
    let (code, first) = send(&d, &token, "r-1");
    assert_eq!(code, StatusCode::CREATED, "{first}");
    let before = status(&d)["journal"]["last_seq"].as_u64().unwrap();
    let journal = fdmd::paths::journal_file(&d.data_dir());
    let bytes_before = std::fs::read(&journal).unwrap().len();

    let log = d.dir.path().join("second.log");
    let mut second = Command::new(FDMD)
        .args(["--dev", "--data-dir"])
        .arg(d.data_dir())
        .args([
            "--http-listen",
            &format!("127.0.0.1:{}", free_port()),
            "--mqtt-listen",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    // Bounded: a second daemon that does not stop at once is the failure this test is about.
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(exit) = second.try_wait().unwrap() {
            break exit;
        }
        if Instant::now() > deadline {
            let _ = second.kill();
            let _ = second.wait();
            panic!("a second fdmd on the same data directory kept running");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        exit.code(),
        Some(fdmd::datadir_lock::EXIT_LOCKED as i32),
        "{stderr}"
    );
    let holder = d.child.as_ref().unwrap().id();
    assert!(
        stderr.contains("in use by another fdmd") && stderr.contains(&format!("process {holder}")),
        "{stderr}"
    );

    // Nothing was written: the first daemon's chain goes on where it was, and it keeps signing.
    assert_eq!(status(&d)["journal"]["last_seq"].as_u64(), Some(before));
    assert_eq!(std::fs::read(&journal).unwrap().len(), bytes_before);
    let (code, second) = send(&d, &token, "r-2");
    assert_eq!(code, StatusCode::CREATED, "{second}");
    assert_eq!(second["ticket_number"], "000002");
    let status = status(&d);
    assert_eq!(status["status"], "ready", "{status}");
    assert_eq!(status["journal"]["last_seq"].as_u64(), Some(before + 1));

    // fdmctl's read-only commands work beside the running daemon.
    let data = d.data_dir();
    let (code, out) = fdmctl(&["verify", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    let export = d.dir.path().join("export.jsonl");
    let (code, out) = fdmctl(&[
        "export",
        "--data-dir",
        data.to_str().unwrap(),
        "--output",
        export.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(std::fs::read_to_string(&export).unwrap().lines().count() as u64 > before);
    let http = d.http.to_string();
    let (code, out) = fdmctl(&[
        "status",
        "--data-dir",
        data.to_str().unwrap(),
        "--http",
        &http,
    ]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn a_journal_changed_under_the_running_daemon_stops_its_signing_with_a_clear_status() {
    let d = Daemon::start_dev();
    let token = dev_token(&d);
    let (code, first) = send(&d, &token, "r-1");
    assert_eq!(code, StatusCode::CREATED, "{first}");
    let before = status(&d);
    assert_eq!(before["status"], "ready", "{before}");

    // A second writer past the lock (as an fdmd from before the lock would be): it appends
    // one record after the daemon's last.
    let other = Journal::open(
        JournalConfig::new(fdmd::paths::journal_file(&d.data_dir()), "DEVFDMD0001"),
        Arc::new(SoftwareSigner::from_seed([9; 32])),
    )
    .unwrap();
    let mut body = serde_json::Map::new();
    body.insert("pid".into(), Value::from(1));
    other
        .append_blocking(Entry::new(RecordKind::DaemonStart, body))
        .unwrap();
    other.close();

    // Every order from now on is refused with the reason, and nothing more is signed.
    let deadline = Instant::now() + Duration::from_secs(10);
    for request_id in ["r-2", "r-3"] {
        let (code, refused) = send(&d, &token, request_id);
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{refused}");
        assert_eq!(refused["code"], 208, "{refused}");
        let message = refused["message"].as_str().unwrap();
        assert!(
            message.contains("changed by another process") && message.contains("stopped signing"),
            "{refused}"
        );
        assert!(refused.get("signature").is_none(), "{refused}");
        assert!(Instant::now() < deadline);
    }
    let status = status(&d);
    assert_eq!(status["status"], "degraded", "{status}");
    let problem = status["problems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["code"] == "journal_not_writable")
        .unwrap_or_else(|| panic!("no journal_not_writable problem: {status}"));
    let message = problem["message"].as_str().unwrap();
    assert!(
        message.starts_with("journal not writable (208)")
            && message.contains("changed by another process"),
        "{status}"
    );
}
