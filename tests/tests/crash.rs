//! Crash test: `journal-load` registers orders from 4 threads and is SIGKILLed at a random moment,
//! over and over on the same journal. After every kill:
//! - every receipt it printed (printed only after the record's COMMIT) is in the journal with
//!   the same sequence number, ticket number, counters, digest and signature;
//! - sequence numbers, ticket numbers per series, event counters per label and the total counter
//!   run from 1 without gap or repeat;
//! - the real `fdmctl verify --data-dir DIR` exits 0.
//!
//! At the end, a few printed requests are sent again (answer 102, same signature) and one new
//! order takes the next numbers.
//!
//! What this covers is a crash of the *process* (SIGKILL): what was written to the kernel stays.
//! A power cut (losing the page cache) is not simulated here.
//!
//! The seed of the random delays is printed; `FDMD_CRASH_SEED=<seed>` replays a run.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use fdmd::assembly::AppBuilder;
use fdmd::journal::{Journal, JournalConfig, store};
use fdmd::paths;
use fdmd::service::Receipt;
use fdmd::signer::SoftwareSigner;
use fdmd_tests::{
    FDM_ID, KillOnDrop, LOAD_NUMBERING, LOAD_SEED, Rng, fdmctl_path, fdmctl_verify_ok, load_order,
    wait_with_deadline,
};
use rusqlite::Connection;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const LOAD: &str = env!("CARGO_BIN_EXE_journal-load");
/// Most kill cycles.
const ITERATIONS: u64 = 25;
/// No new cycle starts after this long.
const BUDGET: Duration = Duration::from_secs(60);
/// Kill delay range, milliseconds.
const DELAY_MS: (u64, u64) = (20, 300);

/// One line `journal-load` printed.
#[derive(Debug, Clone, Deserialize)]
struct Reported {
    register: String,
    request_id: String,
    code: u64,
    seq: u64,
    ticket: u64,
    label: String,
    event: u64,
    total: u64,
    digest: String,
    signature: String,
}

/// Complete lines of a run's stdout; a last line without its newline (the process was killed
/// while writing it) is ignored.
fn read_reports(path: &Path) -> Vec<Reported> {
    let text = std::fs::read_to_string(path).unwrap();
    let complete = match text.rfind('\n') {
        Some(end) => &text[..=end],
        None => "",
    };
    complete
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("bad line from journal-load ({e}): {line:?}"))
        })
        .collect()
}

/// Checks numbering with plain SQL on the index columns (fdmctl checks them against the signed
/// bytes). Returns the number of records.
fn check_numbering(conn: &Connection) -> u64 {
    let (count, max): (i64, Option<i64>) = conn
        .query_row("SELECT count(*), max(seq) FROM records", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(
        count,
        max.unwrap_or(0),
        "sequence numbers have a gap or repeat"
    );
    let mut stmt = conn
        .prepare(
            "SELECT seq, label, event_counter, total_counter, series, series_number FROM records
             WHERE label IS NOT NULL ORDER BY seq",
        )
        .unwrap();
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, i64>(5)?,
            ))
        })
        .unwrap();
    let mut total = 0;
    let mut events: HashMap<String, i64> = HashMap::new();
    let mut series: HashMap<String, i64> = HashMap::new();
    for row in rows {
        let (seq, label, event, t, s, number) = row.unwrap();
        total += 1;
        assert_eq!(
            t, total,
            "record {seq}: total counter {t}, expected {total}"
        );
        let e = events.entry(label.clone()).or_default();
        *e += 1;
        assert_eq!(
            event, *e,
            "record {seq}: {label} counter {event}, expected {e}"
        );
        let n = series.entry(s.clone()).or_default();
        *n += 1;
        assert_eq!(
            number, *n,
            "record {seq}: ticket {number} in {s}, expected {n}"
        );
    }
    count as u64
}

/// Every reported receipt is in the journal as reported.
fn check_reported(conn: &Connection, reported: &[Reported]) {
    for r in reported {
        let stored = store::find_request(conn, &r.register, &r.request_id)
            .unwrap()
            .unwrap_or_else(|| {
                panic!(
                    "request {} of {} was acknowledged (seq {}) but is not in the journal",
                    r.request_id, r.register, r.seq
                )
            });
        let i = &stored.index;
        assert_eq!(
            (
                stored.seq,
                i.series_number,
                i.label.as_deref(),
                i.event_counter,
                i.total_counter,
            ),
            (
                r.seq,
                Some(r.ticket),
                Some(r.label.as_str()),
                Some(r.event),
                Some(r.total),
            ),
            "request {}: journal differs from its receipt",
            r.request_id
        );
        assert_eq!(hex::encode(&stored.hash), r.digest, "{}", r.request_id);
        assert_eq!(
            hex::encode(&stored.signature),
            r.signature,
            "{}",
            r.request_id
        );
    }
}

#[test]
fn sigkill_under_load_loses_no_acknowledged_order_and_leaves_no_gap() {
    let fdmctl = fdmctl_path(Path::new(LOAD));
    let seed = Rng::seed_from_env_or_time("FDMD_CRASH_SEED");
    println!("crash test seed {seed} (replay with FDMD_CRASH_SEED={seed})");
    let mut rng = Rng::new(seed);
    let work = tempfile::tempdir().unwrap();
    let data_dir = work.path().join("data");
    let journal_file = paths::journal_file(&data_dir);
    let started = Instant::now();
    let mut reported: Vec<Reported> = Vec::new();
    let mut runs = 0u64;
    let mut killed = 0u64;
    for run in 0..ITERATIONS {
        if started.elapsed() > BUDGET {
            println!("time budget reached after {run} runs");
            break;
        }
        runs += 1;
        let delay = Duration::from_millis(rng.range(DELAY_MS.0, DELAY_MS.1));
        let out_path = work.path().join(format!("run-{run}.out"));
        let err_path = work.path().join(format!("run-{run}.err"));
        let mut child = KillOnDrop(
            Command::new(LOAD)
                .arg("--data-dir")
                .arg(&data_dir)
                .args(["--run", &run.to_string(), "--threads", "4"])
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(&out_path).unwrap())
                .stderr(std::fs::File::create(&err_path).unwrap())
                .spawn()
                .unwrap(),
        );
        std::thread::sleep(delay);
        // Still running (the normal case), or did it stop by itself?
        let early = child.0.try_wait().unwrap();
        if early.is_none() {
            child.0.kill().unwrap();
            killed += 1;
        }
        let status = wait_with_deadline(&mut child.0, Duration::from_secs(10))
            .expect("journal-load did not die after SIGKILL");
        drop(child);
        if let Some(status) = early {
            assert!(
                status.success(),
                "run {run}: journal-load stopped by itself with {status}: {}",
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        let new = read_reports(&out_path);
        println!(
            "run {run}: killed after {delay:?} ({status}), {} receipts reported",
            new.len()
        );
        assert!(
            new.iter().all(|r| r.code == 0),
            "run {run}: a new order got a code other than 0"
        );
        reported.extend(new);
        if !journal_file.exists() {
            assert!(reported.is_empty(), "receipts reported but no journal file");
            continue;
        }
        {
            let conn = store::open_read_only(&journal_file).unwrap();
            check_reported(&conn, &reported);
            let records = check_numbering(&conn);
            let summary = fdmctl_verify_ok(&fdmctl, &data_dir);
            assert_eq!(
                summary["records"].as_u64(),
                Some(records),
                "run {run} (seed {seed})"
            );
        }
    }
    println!(
        "{runs} runs, {killed} killed, {} receipts reported, {:?}",
        reported.len(),
        started.elapsed()
    );
    assert!(killed > 0, "journal-load was never killed while running");
    assert!(
        !reported.is_empty(),
        "no receipt was ever reported: the test checked nothing (seed {seed})"
    );

    // Restart in this process: resends are answered from the journal, new orders continue.
    let conn = store::open_read_only(&journal_file).unwrap();
    let records_before = check_numbering(&conn);
    let (max_total, max_ticket): (i64, i64) = conn
        .query_row(
            "SELECT (SELECT max(total_counter) FROM records),
                    (SELECT max(series_number) FROM records WHERE series = 'establishment/N')",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    drop(conn);
    let journal = Journal::open(
        JournalConfig::new(&journal_file, FDM_ID),
        Arc::new(SoftwareSigner::from_seed(LOAD_SEED)),
    )
    .unwrap();
    let registrar = AppBuilder::for_journal(journal.clone(), LOAD_NUMBERING).unwrap();
    // Eight random receipts, plus the first and the last one reported.
    let picks: Vec<&Reported> = (0..8)
        .map(|_| &reported[rng.range(0, reported.len() as u64 - 1) as usize])
        .chain([&reported[0], &reported[reported.len() - 1]])
        .collect();
    for r in picks {
        let receipt = registrar.handle_order_enrolling(&r.register, &load_order(&r.request_id));
        let Receipt::Signed(v) = receipt else {
            panic!("resend of {} refused: {}", r.request_id, receipt.to_json());
        };
        assert_eq!(v["code"], 102, "resend of {}: {v}", r.request_id);
        assert_eq!(v["signature"].as_str(), Some(r.signature.as_str()));
        assert_eq!(v["signed_digest"].as_str(), Some(r.digest.as_str()));
        assert_eq!(v["journal_seq"].as_u64(), Some(r.seq));
        assert_eq!(v["total_counter"].as_u64(), Some(r.total));
        assert_eq!(
            v["ticket_number"]
                .as_str()
                .map(|t| t.parse::<u64>().unwrap()),
            Some(r.ticket)
        );
    }
    let fresh = registrar.handle_order_enrolling("till-0", &load_order("after-restart-1"));
    let Receipt::Signed(v) = fresh else {
        panic!("new order after restart refused: {}", fresh.to_json());
    };
    assert_eq!(v["code"], 0);
    assert_eq!(v["journal_seq"].as_u64(), Some(records_before + 1));
    assert_eq!(v["total_counter"].as_i64(), Some(max_total + 1));
    assert_eq!(
        v["ticket_number"]
            .as_str()
            .map(|t| t.parse::<i64>().unwrap()),
        Some(max_ticket + 1)
    );
    drop(registrar);
    journal.close();
    let summary = fdmctl_verify_ok(&fdmctl, &data_dir);
    assert_eq!(summary["last_seq"].as_u64(), Some(records_before + 1));
    println!("crash test done in {:?}", started.elapsed());
}
