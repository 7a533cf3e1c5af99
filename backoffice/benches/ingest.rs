//! The back office's scale benchmark (issue 19): ingest and verify N establishments'
//! segments into PostgreSQL on this machine, then a chain-wide turnover report over a year.
//!
//! `cargo bench -p fdmd-backoffice --bench ingest` (release profile). Settings (environment):
//! `FDMD_BO_BENCH_ESTABLISHMENTS` (20), `FDMD_BO_BENCH_RECORDS` (50000, per establishment),
//! `FDMD_BO_BENCH_FSYNC_OFF` (0: PostgreSQL with its durable defaults; 1: the tests' cluster
//! with fsync off), `FDMD_BO_BENCH_SEGMENT` (4000 records), `FDMD_BO_BENCH_PARALLEL` (2 establishments sent at
//! once), `FDMD_BO_BENCH_REPORT_ESTABLISHMENTS` (500: turnover rows of a year for the report).
//!
//! The journal is written once by the daemon's own registration path (orders spread over a
//! year) and cached in `target/tmp/backoffice-bench/`. Every establishment sends that same
//! journal, enrolled with its key: the back office verifies each establishment's chain on its
//! own (hashes, signatures, counters), so the work per record is the work of distinct boxes.
//! The back office is the library's server in this process (HTTP on loopback), PostgreSQL a
//! throwaway cluster (`tests/common/pg.rs`) on the same machine. The bench's HTTP client runs
//! on threads of its own, which read their CPU time: the server's CPU is the process's minus
//! theirs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

// The server's allocator (src/main.rs), since the server runs in this process.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod support;
use support::{load_average, setting};

#[path = "../tests/common/mod.rs"]
mod common;

use common::fdmbox::FdmBox;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Busy and total jiffies of the whole machine (`/proc/stat`).
fn machine_jiffies() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let cpu: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: u64 = cpu.iter().sum();
    let idle = cpu.get(3).copied().unwrap_or(0) + cpu.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// CPU seconds (user + system, 100 Hz ticks) of a `/proc/…/stat` file.
fn stat_cpu(path: &str) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, a)| a);
    let f: Vec<&str> = after.split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (t(11) + t(12)) / 100.0
}

/// CPU seconds of this process.
fn own_cpu() -> f64 {
    stat_cpu("/proc/self/stat")
}

/// CPU seconds of the calling thread.
fn thread_cpu() -> f64 {
    stat_cpu("/proc/thread-self/stat")
}

/// CPU seconds of a process (user + system, 100 Hz ticks) and its parent's pid.
fn process_cpu(pid: u32) -> Option<(f64, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    Some(((t(11) + t(12)) / 100.0, f.get(1)?.parse().ok()?))
}

/// CPU seconds of the cluster: the postmaster and its children (backends, WAL writer,
/// checkpointer…) now alive. The pool keeps its backends for the whole run.
fn cluster_cpu(postmaster: Option<u32>) -> f64 {
    let Some(pm) = postmaster else { return 0.0 };
    let mut total = process_cpu(pm).map_or(0.0, |c| c.0);
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
            && let Some((cpu, ppid)) = process_cpu(pid)
            && ppid == pm
        {
            total += cpu;
        }
    }
    total
}

/// The cached journal of `records` records (at least), written once.
fn journal(records: u64) -> FdmBox {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("backoffice-bench")
        .join(format!("journal-{records}"));
    let done = dir.join("complete");
    if done.exists() {
        let b = FdmBox::new(&dir, [9; 32]);
        return b;
    }
    let _ = std::fs::remove_dir_all(&dir);
    let start = Instant::now();
    let mut b = FdmBox::new(&dir, [9; 32]);
    // ~500 records a day: a year's orders are spread over the year, a Z report each day.
    let per_day = 500u64;
    let mut written = 0;
    while written < records {
        let n = per_day.min(records - written);
        b.orders(n);
        b.z_report();
        b.clock
            .advance(chrono::Duration::seconds(86_400 - n as i64));
        written = b.last_seq();
        eprint!("\rwriting the journal: {written} records");
    }
    b.close();
    std::fs::write(&done, b"").unwrap();
    eprintln!(
        "\rjournal of {written} records written in {:.0} s",
        start.elapsed().as_secs_f64()
    );
    b.reopen();
    b
}

/// `openssl speed -seconds 3 ed25519`'s verify rate on one core (per CPU-second of its own),
/// taken in the same sitting as the ingest so that the figures can be read as ratios.
fn openssl_verify_rate() -> Option<f64> {
    let out = std::process::Command::new("openssl")
        .args(["speed", "-seconds", "3", "ed25519"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // " 253 bits EdDSA (Ed25519)   0.0000s   0.0001s  27383.2  10429.3": the last is verify/s.
    text.lines()
        .filter(|l| l.contains("Ed25519"))
        .find_map(|l| l.split_whitespace().last()?.parse().ok())
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken from the command line.
    let establishments = setting("FDMD_BO_BENCH_ESTABLISHMENTS", 20);
    let records = setting("FDMD_BO_BENCH_RECORDS", 50_000);
    let segment = setting("FDMD_BO_BENCH_SEGMENT", 4_000);
    let parallel = setting("FDMD_BO_BENCH_PARALLEL", 2).max(1);
    let report_establishments = setting("FDMD_BO_BENCH_REPORT_ESTABLISHMENTS", 500);

    let mut b = journal(records);
    let last = b.last_seq();
    let key = b.public_key();
    let segments = Arc::new(common::segments(&b, 1, last, segment));
    b.close();
    let bytes: usize = segments.iter().map(Vec::len).sum();
    println!(
        "journal: {last} records, {} segments of {segment}, {:.0} MiB as exports",
        segments.len(),
        bytes as f64 / 1048576.0
    );

    let openssl = openssl_verify_rate();
    match openssl {
        Some(rate) => {
            println!("openssl speed ed25519 (one core, same sitting): {rate:.0} verify/s")
        }
        None => println!("openssl speed ed25519: not measured (no openssl command)"),
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        // PostgreSQL's durable defaults unless FDMD_BO_BENCH_FSYNC_OFF=1 (the tests' settings).
        let office = if setting("FDMD_BO_BENCH_FSYNC_OFF", 0) == 1 {
            common::Office::start().await
        } else {
            common::Office::start_durable().await
        };
        let office = Arc::new(office);
        let mut credentials = Vec::new();
        for e in 0..establishments {
            let id = format!("e{e:04}");
            let c = office.enrol(&id, vec![key.clone()]).await;
            credentials.push((id, c));
        }
        let queue = Arc::new(std::sync::Mutex::new(credentials));
        let postmaster = office.pg.pid();
        let pg0 = cluster_cpu(postmaster);
        let (cpu0, (busy0, total0)) = (own_cpu(), machine_jiffies());
        let load_before = load_average();
        let start = Instant::now();
        // The bench's HTTP client runs on threads of its own (one per establishment sent at
        // once, each with a current-thread runtime), so that the server's CPU can be told from
        // the client's: each client thread reads its own CPU time when it is done.
        let mut workers = Vec::new();
        for w in 0..parallel {
            let (office, queue, segments) = (office.clone(), queue.clone(), segments.clone());
            let thread = std::thread::Builder::new()
                .name(format!("bench-client-{w}"))
                .spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    rt.block_on(async move {
                        loop {
                            let next = queue.lock().unwrap().pop();
                            let Some((id, credential)) = next else { break };
                            for s in segments.iter() {
                                let (status, answer) = office.push(&id, &credential, s).await;
                                assert_eq!(status, 200, "{id}: {answer}");
                            }
                        }
                    });
                    thread_cpu()
                })
                .unwrap();
            workers.push(thread);
        }
        let mut client_cpu = 0.0;
        for w in workers {
            client_cpu += tokio::task::spawn_blocking(move || w.join().unwrap())
                .await
                .unwrap();
        }
        let took = start.elapsed().as_secs_f64();
        let (cpu1, (busy1, total1)) = (own_cpu(), machine_jiffies());
        let pg1 = cluster_cpu(postmaster);
        let total_records = last * establishments;
        let stored = office.count("SELECT count(*) FROM records").await as u64;
        assert_eq!(stored, total_records, "every record stored once");
        let machine_busy = (busy1 - busy0) as f64 / (total1 - total0).max(1) as f64;
        let rate = total_records as f64 / took;
        println!(
            "ingested and verified {total_records} records ({establishments} establishments × {last}) in {took:.1} s: {rate:.0} records/s{}",
            openssl.map_or_else(String::new, |o| format!(" = {:.2}x openssl's one-core verify rate", rate / o))
        );
        let server_cpu = cpu1 - cpu0 - client_cpu;
        println!(
            "CPU: the back office's server (HTTP, parsing, verification, COPY) {server_cpu:.1} s ({:.0} µs a record), the bench's client {client_cpu:.2} s ({:.0} µs a record)",
            server_cpu * 1e6 / total_records as f64,
            client_cpu * 1e6 / total_records as f64,
        );
        println!(
            "CPU: this process (server + client) {:.1} s ({:.0} µs a record), PostgreSQL {:.1} s ({:.0} µs a record); machine busy {:.0} % of 2 cores over {took:.1} s (anything else running included); load average before {load_before}, after {}",
            cpu1 - cpu0,
            (cpu1 - cpu0) * 1e6 / total_records as f64,
            pg1 - pg0,
            (pg1 - pg0) * 1e6 / total_records as f64,
            machine_busy * 100.0,
            load_average()
        );

        // The chain-wide report over a year: turnover rows of report_establishments
        // establishments × 365 days × 4 rates (the rows ingest keeps per day and rate).
        {
            let client = office.pool.get().await.unwrap();
            client
                .batch_execute(&format!(
                    "INSERT INTO establishments (id, name, vat_number, credential_sha256)
                       SELECT 'r' || lpad(g::text, 4, '0'), 'report ' || g, 'BE0123456749', sha256(g::text::bytea)
                       FROM generate_series(1, {report_establishments}) g;
                     INSERT INTO turnover_daily (establishment_id, fdm_date, rate, tickets, total_cents, vat_cents)
                       SELECT 'r' || lpad(g::text, 4, '0'), d::date, r, 100, 150000 + g, 20000
                       FROM generate_series(1, {report_establishments}) g,
                            generate_series('2025-01-01'::date, '2025-12-31'::date, '1 day') d,
                            unnest(ARRAY['A','B','C','D']) r;
                     ANALYZE turnover_daily;"
                ))
                .await
                .unwrap();
        }
        let rows = office.count("SELECT count(*) FROM turnover_daily").await;
        let mut times = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            let (status, body) = office.get("/v1/turnover?from=2025-01-01&to=2025-12-31").await;
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
            times.push(t.elapsed());
        }
        times.sort();
        println!(
            "chain-wide turnover report over 2025 ({rows} turnover rows, {report_establishments} establishments): median {:.0} ms, slowest {:.0} ms of 5",
            times[2].as_secs_f64() * 1000.0,
            times[4].as_secs_f64() * 1000.0
        );
        if let Ok(o) = Arc::try_unwrap(office) {
            tokio::time::timeout(Duration::from_secs(30), o.stop()).await.ok();
        }
    });
}
