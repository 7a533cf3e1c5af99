//! `fdmd-bench` as its users run it against a `--dev` daemon: it enrols its registers with the
//! daemon's admin token (no anonymous clients), reports the daemon's CPU per order, and exits
//! non-zero when orders fail or the daemon dies under it (issue 15 point 11).
#![allow(clippy::unwrap_used)]

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::Daemon;

const BENCH: &str = env!("CARGO_BIN_EXE_fdmd-bench");

fn bench(d: &Daemon, seconds: u64) -> Command {
    let mut c = Command::new(BENCH);
    c.args(["--registers", "2", "--duration", &seconds.to_string()])
        .arg("--mqtt")
        .arg(d.mqtt.to_string())
        .arg("--http")
        .arg(d.http.to_string())
        .arg("--data-dir")
        .arg(d.data_dir())
        .arg("--pid")
        .arg(d.child.as_ref().unwrap().id().to_string());
    c
}

#[test]
fn a_run_against_a_healthy_daemon_succeeds_and_reports_cpu_per_order() {
    let d = Daemon::start_dev();
    let out = bench(&d, 1).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(" 0 errors"), "{text}");
    assert!(text.contains("daemon CPU per order"), "{text}");
}

#[test]
fn the_bench_fails_when_the_daemon_dies_under_it() {
    let mut d = Daemon::start_dev();
    let mut run = bench(&d, 4)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let mut daemon = d.child.take().unwrap();
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = run.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "fdmd-bench did not end");
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = run.wait_with_output().unwrap();
    assert!(
        !status.success(),
        "a run whose daemon died exits non-zero: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn without_credentials_or_admin_token_the_bench_says_why() {
    let d = Daemon::start_dev();
    let out = Command::new(BENCH)
        .args([
            "--registers",
            "1",
            "--duration",
            "1",
            "--data-dir",
            "/nonexistent",
        ])
        .arg("--http")
        .arg(d.http.to_string())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("admin token"), "{err}");
}
