//! A box without a hardware clock (issue 15 point 4): fdmd never signs a record earlier than the
//! one before it. With the clock set back, within a run or across a restart, orders are refused
//! with 209 and status names `clock_behind_journal`; once the clock has passed the journal's last
//! record again, signing goes on, and the chain's times never go back.
#![allow(clippy::unwrap_used)]

use chrono::{DateTime, Duration, FixedOffset};
use fdmd::assembly::{AppBuilder, BlockingApp};
use fdmd::journal::{Clock, Journal, JournalConfig};
use fdmd::service::{Numbering, Receipt};
use fdmd::signer::SoftwareSigner;
use serde_json::Value;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// A clock the test sets by hand.
struct TestClock(Mutex<DateTime<FixedOffset>>);

impl Clock for TestClock {
    fn now(&self) -> DateTime<FixedOffset> {
        *self.0.lock().unwrap()
    }
}

impl TestClock {
    fn shift(&self, d: Duration) {
        *self.0.lock().unwrap() += d;
    }
}

fn open(path: &Path, clock: Arc<TestClock>) -> BlockingApp {
    let mut config = JournalConfig::new(path, "DEVFDMD0001");
    config.clock = clock;
    let journal = Journal::open(config, Arc::new(SoftwareSigner::from_seed([3; 32]))).unwrap();
    AppBuilder::for_journal(journal, Numbering::default()).unwrap()
}

fn sale(id: &str) -> Vec<u8> {
    format!(
        r#"{{"request_id":"{id}","operator":"85073003328","event_type":"normal","lines":[{{"description":"Cola","quantity":1,"unit_price":"2.20","vat":"A"}}]}}"#
    )
    .into_bytes()
}

fn send(app: &BlockingApp, id: &str) -> Value {
    app.handle_order_enrolling("till-1", &sale(id)).to_json()
}

/// The codes of the problems status lists.
fn problems(app: &BlockingApp) -> Vec<String> {
    app.app().status.snapshot()["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["code"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_clock_set_back_stops_signing_until_it_has_passed_the_last_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.sqlite");
    let start = DateTime::parse_from_rfc3339("2026-12-06T12:00:00+01:00").unwrap();
    let clock = Arc::new(TestClock(Mutex::new(start)));
    let app = open(&path, clock.clone());
    assert_eq!(send(&app, "r-1")["status"], "signed");

    // Back one day within the run: refused with 209, nothing written, status says why.
    clock.shift(Duration::days(-1));
    let last = app
        .journal()
        .stats()
        .last_seq
        .load(std::sync::atomic::Ordering::Relaxed);
    let refused = send(&app, "r-2");
    assert_eq!(refused["code"], 209, "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("behind the journal"),
        "{refused}"
    );
    assert_eq!(
        app.journal()
            .stats()
            .last_seq
            .load(std::sync::atomic::Ordering::Relaxed),
        last,
        "nothing written"
    );
    assert!(
        problems(&app).contains(&"clock_behind_journal".to_owned()),
        "{:?}",
        problems(&app)
    );

    // The clock catches up: signing goes on and the problem is gone.
    clock.shift(Duration::days(1) + Duration::seconds(1));
    assert_eq!(send(&app, "r-2")["status"], "signed");
    assert!(!problems(&app).contains(&"clock_behind_journal".to_owned()));
    let journal = app.journal().clone();
    drop(app);
    journal.close();

    // Ten years back across a restart: the reopened journal knows its last record's time.
    clock.shift(Duration::days(-3650));
    let app = open(&path, clock.clone());
    let refused = send(&app, "r-3");
    assert_eq!(refused["code"], 209, "{refused}");
    clock.shift(Duration::days(3650) + Duration::seconds(1));
    let signed = send(&app, "r-3");
    assert_eq!(signed["status"], "signed", "{signed}");
    let journal = app.journal().clone();
    drop(app);
    journal.close();
}

#[test]
fn a_receipt_refused_for_the_clock_is_an_error_not_a_signature() {
    let dir = tempfile::tempdir().unwrap();
    let start = DateTime::parse_from_rfc3339("2026-12-06T12:00:00+01:00").unwrap();
    let clock = Arc::new(TestClock(Mutex::new(start)));
    let app = open(&dir.path().join("journal.sqlite"), clock.clone());
    assert!(matches!(
        app.handle_order_enrolling("till-1", &sale("a")),
        Receipt::Signed(_)
    ));
    clock.shift(Duration::seconds(-5));
    assert!(matches!(
        app.handle_order_enrolling("till-1", &sale("b")),
        Receipt::Error { .. }
    ));
    let journal = app.journal().clone();
    drop(app);
    journal.close();
}
