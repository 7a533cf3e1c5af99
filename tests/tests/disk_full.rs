//! Disk-full test on a real, small filesystem: a 2 MiB tmpfs mounted for the test (needs root, or
//! the mount permission in a container). The journal lives on it; a filler file takes almost all
//! the remaining space; orders are registered until one is refused. Then:
//! - the refusal is code 205 (SQLite's SQLITE_FULL from ENOSPC); nothing half-written: `fdmctl
//!   verify` passes and the last record is the last acknowledged one;
//! - once the filler is deleted, the *same running journal* takes the refused request (and the
//!   next one) with the next numbers, and the journal still verifies.
//!
//! A second test restarts the journal while the disk is still full: opening an existing journal
//! writes nothing, so it answers resends and goes on once space is freed.
//!
//! If the tmpfs cannot be mounted the test fails and says why, unless `FDMD_ALLOW_NO_MOUNT=1`
//! is set, in which case it prints why and passes without testing anything.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use fdmd::assembly::{AppBuilder, BlockingApp};
use fdmd::journal::{Journal, JournalConfig};
use fdmd::paths;
use fdmd::service::{Numbering, Receipt};
use fdmd::signer::SoftwareSigner;
use fdmd_tests::{FDM_ID, fdmctl_path, fdmctl_verify_ok, order, run_with_timeout};
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const LOAD: &str = env!("CARGO_BIN_EXE_journal-load");
/// Space left free after the filler: room for a few orders, so the journal fills by itself.
const SLACK: u64 = 48 * 1024;
/// Most orders tried before giving up on ever filling the disk.
const MAX_ORDERS: usize = 500;
const BUDGET: Duration = Duration::from_secs(60);
const SEED: [u8; 32] = [5; 32];

/// A mounted tmpfs, unmounted when dropped (also when the test panics).
struct TmpfsMount {
    path: PathBuf,
}

impl TmpfsMount {
    /// Creates `path` and mounts a tmpfs of `size` on it; `None` (the test skips) when that is
    /// impossible and FDMD_ALLOW_NO_MOUNT=1, otherwise a failure that says why.
    fn mount_or_skip(path: &Path, size: &str) -> Option<TmpfsMount> {
        std::fs::create_dir_all(path).unwrap();
        match TmpfsMount::mount(path, size) {
            Ok(m) => Some(m),
            Err(why) => {
                if std::env::var("FDMD_ALLOW_NO_MOUNT").as_deref() == Ok("1") {
                    println!("SKIPPED (FDMD_ALLOW_NO_MOUNT=1): {why}");
                    return None;
                }
                panic!(
                    "the disk-full tests need a small real filesystem and could not mount one: \
                     {why}\nRun as root (or with CAP_SYS_ADMIN), or set FDMD_ALLOW_NO_MOUNT=1 \
                     to skip them."
                );
            }
        }
    }

    fn mount(path: &Path, size: &str) -> Result<TmpfsMount, String> {
        let out = run_with_timeout(
            Command::new("mount")
                .args([
                    "-t",
                    "tmpfs",
                    "-o",
                    &format!("size={size},mode=0700"),
                    "tmpfs",
                ])
                .arg(path),
            Duration::from_secs(30),
        );
        if out.code == Some(0) {
            Ok(TmpfsMount {
                path: path.to_owned(),
            })
        } else {
            Err(format!(
                "mount -t tmpfs -o size={size} tmpfs {} failed: {}",
                path.display(),
                out.text()
            ))
        }
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let umount = |lazy: bool| {
            let mut cmd = Command::new("umount");
            if lazy {
                cmd.arg("-l");
            }
            cmd.arg(&self.path)
                .output()
                .is_ok_and(|o| o.status.success())
        };
        // A journal writer thread left behind by a panic may still hold the file: then detach.
        if !umount(false) && !umount(true) {
            eprintln!("could not unmount {}", self.path.display());
        }
    }
}

/// The codes of the problems a status document lists.
fn problem_codes(status: &Value) -> Vec<String> {
    status["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["code"].as_str().unwrap().to_owned())
        .collect()
}

fn signed(receipt: Receipt) -> Value {
    match receipt {
        Receipt::Signed(v) => v,
        other => panic!("expected a signed receipt, got {}", other.to_json()),
    }
}

/// Writes zeros to `path` until the filesystem refuses (ENOSPC), then gives `slack` bytes back.
fn fill(path: &Path, slack: u64) -> u64 {
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 16 * 1024];
    let mut written = 0u64;
    // Bounded: the filesystem is 2 MiB.
    for _ in 0..10_000 {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(28) => break,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    let kept = written.saturating_sub(slack);
    file.set_len(kept).unwrap();
    file.sync_all().unwrap();
    written
}

/// A journal on a tmpfs that has just refused an order for lack of space. Fields drop in order:
/// the journal first, then the mount, then the temporary directory.
struct Full {
    registrar: Option<BlockingApp>,
    journal: Option<Journal>,
    accepted: Vec<Value>,
    refused_i: usize,
    fillers: Vec<PathBuf>,
    data: PathBuf,
    fdmctl: PathBuf,
    started: Instant,
    _mount: TmpfsMount,
    _work: tempfile::TempDir,
}

/// The order number `i` (request id `r{i}`), about 4 KiB of canonical record.
fn big_order(i: usize) -> Vec<u8> {
    let lines = vec![("A rather long description for padding", 1, "1.00", "A"); 40];
    order(&format!("r{i}"), "normal", &lines)
}

fn open(data: &Path) -> (Journal, BlockingApp) {
    let journal = Journal::open(
        JournalConfig::new(paths::journal_file(data), FDM_ID),
        Arc::new(SoftwareSigner::from_seed(SEED)),
    )
    .unwrap();
    let registrar = AppBuilder::for_journal(journal.clone(), Numbering::default()).unwrap();
    (journal, registrar)
}

impl Full {
    fn registrar(&self) -> &BlockingApp {
        self.registrar.as_ref().unwrap()
    }

    /// Closes the journal (joining its writer).
    fn close(&mut self) {
        drop(self.registrar.take());
        if let Some(j) = self.journal.take() {
            j.close();
        }
    }

    fn last_ok(&self) -> u64 {
        self.accepted.last().unwrap()["journal_seq"]
            .as_u64()
            .unwrap()
    }

    /// Mounts a 2 MiB tmpfs, opens a journal there, registers 5 orders, fills the disk but for
    /// `slack` bytes and registers orders until one is refused, which must be with 205. `None`
    /// when mounting is impossible and FDMD_ALLOW_NO_MOUNT=1.
    fn new(slack: u64) -> Option<Full> {
        let fdmctl = fdmctl_path(Path::new(LOAD));
        let started = Instant::now();
        let work = tempfile::tempdir().unwrap();
        let data = work.path().join("mnt");
        let mount = TmpfsMount::mount_or_skip(&data, "2m")?;
        let (journal, registrar) = open(&data);
        let mut accepted: Vec<Value> = Vec::new();
        for i in 0..5 {
            accepted.push(signed(
                registrar.handle_order_enrolling("till-1", &big_order(i)),
            ));
        }
        let filler = data.join("filler");
        let filled = fill(&filler, slack);
        println!("filler wrote {filled} bytes, gave back {slack}");

        let mut refusal = None;
        for i in accepted.len()..MAX_ORDERS {
            if started.elapsed() > BUDGET {
                break;
            }
            match registrar.handle_order_enrolling("till-1", &big_order(i)) {
                Receipt::Signed(v) => {
                    // A 2 MiB file system is always below the free-space warning: 101.
                    assert_eq!(v["code"], 101, "{v}");
                    accepted.push(v);
                }
                err => {
                    refusal = Some((i, err.to_json()));
                    break;
                }
            }
        }
        let (refused_i, refusal) = refusal.expect("the filesystem never filled up");
        println!(
            "{} orders accepted, order r{refused_i} refused: {refusal}",
            accepted.len()
        );
        assert_eq!(
            refusal["code"], 205,
            "a full disk should give 205 (storage full); 208 means SQLite reported another I/O \
             error than SQLITE_FULL: {refusal}"
        );
        assert_eq!(refusal["request_id"], format!("r{refused_i}"));
        let full = Full {
            registrar: Some(registrar),
            journal: Some(journal),
            accepted,
            refused_i,
            fillers: vec![filler],
            data,
            fdmctl,
            started,
            _mount: mount,
            _work: work,
        };
        let stats = full.journal.as_ref().unwrap().stats();
        assert_eq!(stats.last_seq.load(Ordering::Relaxed), full.last_ok());
        Some(full)
    }

    /// Frees the space, then: the refused request and the next one take the next numbers, an
    /// order acknowledged before is answered from the journal (102), and the journal verifies.
    fn free_space_and_check_recovery(mut self) {
        let last_ok = self.last_ok();
        let n = self.accepted.len() as u64;
        let refused_i = self.refused_i;
        for filler in &self.fillers {
            std::fs::remove_file(filler).unwrap();
        }
        let registrar = self.registrar();
        let retry = signed(registrar.handle_order_enrolling("till-1", &big_order(refused_i)));
        assert_eq!(
            retry["code"], 101,
            "signed, with the low-space warning: {retry}"
        );
        assert_eq!(retry["journal_seq"].as_u64(), Some(last_ok + 1));
        assert_eq!(retry["total_counter"].as_u64(), Some(n + 1));
        assert_eq!(retry["ticket_number"], format!("{:06}", n + 1));
        let next = signed(registrar.handle_order_enrolling("till-1", &big_order(refused_i + 1)));
        assert_eq!(next["journal_seq"].as_u64(), Some(last_ok + 2));
        assert_eq!(next["ticket_number"], format!("{:06}", n + 2));
        let resend = signed(registrar.handle_order_enrolling("till-1", &big_order(refused_i - 1)));
        assert_eq!(resend["code"], 102);
        assert_eq!(
            resend["signature"],
            self.accepted.last().unwrap()["signature"]
        );
        self.close();
        let summary = fdmctl_verify_ok(&self.fdmctl, &self.data);
        assert_eq!(summary["last_seq"].as_u64(), Some(last_ok + 2), "{summary}");
        assert_eq!(summary["fiscal_events"].as_u64(), Some(n + 2));
        println!("done in {:?}", self.started.elapsed());
    }
}

#[test]
fn a_full_disk_refuses_with_205_writes_nothing_and_recovers_when_space_is_freed() {
    let Some(full) = Full::new(SLACK) else {
        return;
    };
    let last_ok = full.last_ok();
    // Still full: refused again, and no number is used up by the refusals.
    let again = full
        .registrar()
        .handle_order_enrolling("till-1", &big_order(full.refused_i))
        .to_json();
    assert_eq!(again["code"], 205, "{again}");
    // Nothing half-written: the journal verifies and ends at the last acknowledged record
    // (read by fdmctl while the writer still has the file open).
    let summary = fdmctl_verify_ok(&full.fdmctl, &full.data);
    assert_eq!(summary["last_seq"].as_u64(), Some(last_ok), "{summary}");
    assert_eq!(
        summary["fiscal_events"].as_u64(),
        Some(full.accepted.len() as u64)
    );
    // Space is freed: the same running journal goes on with the next numbers.
    full.free_space_and_check_recovery();
}

/// fdmd restarted while the disk is still full: the journal should open (nothing needs writing
/// to open an existing journal), answer resends of acknowledged orders (102), refuse new ones
/// with 205, and go on once space is freed.
///
/// (This failed while `store::open_for_writing` wrote `PRAGMA user_version` on every open.)
#[test]
fn a_restart_on_a_full_disk_still_answers_and_recovers() {
    // No slack: the very next order is refused before SQLite could extend the WAL at all. (With
    // slack, a refused transaction leaves WAL space allocated past the last commit, and the
    // one-page write at open fits in it: then the bug does not show.)
    let Some(mut full) = Full::new(0) else { return };
    assert_eq!(
        full.accepted.len(),
        5,
        "the order after the filler should be refused"
    );
    let last_ok = full.last_ok();
    full.close();
    let (journal, registrar) = match Journal::open(
        JournalConfig::new(paths::journal_file(&full.data), FDM_ID),
        Arc::new(SoftwareSigner::from_seed(SEED)),
    ) {
        Ok(j) => {
            let r = AppBuilder::for_journal(j.clone(), Numbering::default()).unwrap();
            (j, r)
        }
        Err(e) => panic!("the journal does not open on a full disk: {e}"),
    };
    let resend = signed(registrar.handle_order_enrolling("till-1", &big_order(full.refused_i - 1)));
    assert_eq!(resend["code"], 102);
    assert_eq!(resend["journal_seq"].as_u64(), Some(last_ok));
    let refused = registrar
        .handle_order_enrolling("till-1", &big_order(full.refused_i))
        .to_json();
    assert_eq!(refused["code"], 205, "{refused}");
    full.registrar = Some(registrar);
    full.journal = Some(journal);
    full.free_space_and_check_recovery();
}

/// With the shipped configuration (no `max_size_mib`), a file system running out of space is not
/// silent: below 64 MiB free (or 5 % of it), receipts carry 101 and status is degraded with
/// `storage_low`, while orders are still signed (issue 15 point 3).
#[test]
fn low_free_space_warns_with_101_and_storage_low_before_the_disk_is_full() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("mnt");
    let Some(_mount) = TmpfsMount::mount_or_skip(&data, "96m") else {
        return;
    };
    let (journal, app) = open(&data);
    let first = signed(app.handle_order_enrolling("till-1", &big_order(0)));
    assert_eq!(first["code"], 0, "96 MiB free: no warning yet: {first}");
    // (No transports here: status names MQTT and HTTP as not serving, never storage.)
    let status = app.app().status.snapshot();
    assert!(
        !problem_codes(&status)
            .iter()
            .any(|c| c.starts_with("storage")),
        "{status}"
    );
    assert!(status["journal"]["free_bytes"].as_u64().unwrap() > 64 << 20);
    // Leave about 40 MiB free (the filler is written, not sparse: tmpfs counts it).
    let filler = data.join("filler");
    let mut file = std::fs::File::create(&filler).unwrap();
    let chunk = vec![1u8; 1 << 20];
    for _ in 0..56 {
        file.write_all(&chunk).unwrap();
    }
    file.sync_all().unwrap();
    drop(file);
    // Free space is measured at most once a second.
    std::thread::sleep(Duration::from_millis(1100));
    let warned = signed(app.handle_order_enrolling("till-1", &big_order(1)));
    assert_eq!(warned["code"], 101, "{warned}");
    let status = app.app().status.snapshot();
    assert_eq!(status["status"], "degraded", "{status}");
    assert!(
        problem_codes(&status).contains(&"storage_low".to_owned()),
        "{status}"
    );
    // Space given back: the warning goes away.
    std::fs::remove_file(&filler).unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    let fine = signed(app.handle_order_enrolling("till-1", &big_order(2)));
    assert_eq!(fine["code"], 0, "{fine}");
    drop(app);
    journal.close();
}
