//! The card backend without libpcsclite (issue 15, point 9): fdmd loads the PC/SC library at
//! run time, so it builds without it; selecting the card backend on a box without the library
//! must give a clear signer state and status problem, not a crash or a refusal to start.
#![allow(clippy::unwrap_used)]

mod support;

use hyper::{Method, StatusCode};
use support::Daemon;

#[test]
fn the_card_backend_without_libpcsclite_reports_why_and_the_daemon_runs_on() {
    let d = Daemon::start_with_config(
        "[signer]\nbackend = \"pcsc\"\n[signer.pcsc]\nreader = \"Virtual PCD\"\n",
        &[(
            "FDMD_PCSC_LIBRARY",
            "/nonexistent/libpcsclite.so.1".to_owned(),
        )],
    );
    let expected = "PC/SC library /nonexistent/libpcsclite.so.1 cannot be loaded";
    // The monitor thread reports it as soon as it starts: bounded wait.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = loop {
        let (code, status) = d.request(Method::GET, "/v1/status", Some(&d.admin_token()), None);
        assert_eq!(code, StatusCode::OK, "{status}");
        if status["signer"]["error"]
            .as_str()
            .is_some_and(|e| e.contains(expected))
            || std::time::Instant::now() > deadline
        {
            break status;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(status["status"], "degraded", "{status}");
    assert_eq!(status["signer"]["state"]["state"], "absent", "{status}");
    assert_eq!(status["signer"]["code"], 201, "{status}");
    let problem = status["problems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["code"] == "no_signing_card")
        .unwrap_or_else(|| panic!("no no_signing_card problem: {status}"));
    let message = problem["message"].as_str().unwrap();
    assert!(
        message.starts_with("no signing card (201)")
            && message.contains(expected)
            && message.contains("install libpcsclite1"),
        "{status}"
    );
}
