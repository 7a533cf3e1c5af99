#![allow(clippy::unwrap_used)] // benchmark set-up: a failed unwrap is a broken benchmark
//! Benchmarks of the fiscal core: what one order costs in CPU, how long one order takes to
//! become durable, and how many signed, durable records per second the journal takes from
//! concurrent registers. See `docs/benchmarks.md` for how to run them and what was measured.
//!
//! Journals live under `CARGO_TARGET_TMPDIR` (inside `target/`, on the real disk), never in
//! `/tmp`, which may be a tmpfs where `fsync` costs nothing.
//!
//! `cargo bench -p fdmd -- --test` runs every benchmark once (a CI smoke test).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use fdmd::assembly::{AppBuilder, BlockingApp};
use fdmd::fiscal::plu::{plu_hash, plu_record};
use fdmd::fiscal::{Order, Sale};
use fdmd::journal::record::{Envelope, RecordKind, record_hash};
use fdmd::journal::{Journal, JournalConfig};
use fdmd::service::{Numbering, Receipt};
use fdmd::signer::{Signer, SoftwareSigner};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The daemon's allocator (see `daemon/src/main.rs`), so the figures are the daemon's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const OPERATOR: &str = "85073003328";
const FDM_ID: &str = "DEVFDMD0001";

/// Unique request ids across every benchmark of the run.
static NEXT_REQUEST: AtomicU64 = AtomicU64::new(1);

/// A realistic 10-line restaurant order (mixed VAT letters, accents, a correction, a weighed
/// line, card payment), as a register sends it.
fn order_bytes(request_id: &str) -> Vec<u8> {
    let lines = json!([
        {"description": "Spaghetti bolognese", "quantity": 2, "unit_price": "14.50", "vat": "B", "station": "kitchen", "category": "meal"},
        {"description": "Croque monsieur", "quantity": 1, "unit_price": "9.80", "vat": "B", "station": "kitchen", "category": "meal"},
        {"description": "Salade niçoise", "quantity": 1, "unit_price": "13.20", "vat": "B", "station": "kitchen", "category": "meal"},
        {"description": "Crème brûlée", "quantity": 2, "unit_price": "7.50", "vat": "B", "category": "meal"},
        {"description": "Coca-Cola 33cl", "quantity": 3, "unit_price": "3.20", "vat": "A", "station": "bar", "category": "drink"},
        {"description": "Westmalle Tripel", "quantity": 2, "unit_price": "5.60", "vat": "A", "station": "bar", "category": "drink"},
        {"description": "Spa bruis 1L", "quantity": 1, "unit_price": "6.90", "vat": "A", "station": "bar", "category": "drink"},
        {"description": "Koffie", "quantity": 2, "unit_price": "3.10", "vat": "A", "station": "bar", "category": "drink"},
        {"description": "Pralines", "quantity": "0.250", "unit": "kg", "unit_price": "48.00", "vat": "C", "category": "other"},
        {"description": "Koffie", "quantity": -1, "unit_price": "3.10", "vat": "A", "station": "bar", "category": "drink"}
    ]);
    let total = order_total(&lines);
    serde_json::to_vec(&json!({
        "request_id": request_id,
        "operator": OPERATOR,
        "event_type": "normal",
        "table": "12",
        "lines": lines,
        "payments": [{"method": "card", "amount": total}],
    }))
    .unwrap()
}

/// The order's total as a decimal string, computed the way a register would.
fn order_total(lines: &Value) -> String {
    let cents: i64 = lines
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let price = cents_of(l["unit_price"].as_str().unwrap());
            match &l["quantity"] {
                Value::Number(n) => n.as_i64().unwrap() * price,
                // "0.250" kg: thousandths, rounded half up to the cent.
                Value::String(s) => (cents_of_milli(s) * price + 500) / 1000,
                _ => unreachable!(),
            }
        })
        .sum();
    format!("{}.{:02}", cents / 100, cents % 100)
}

fn cents_of(text: &str) -> i64 {
    let (units, cents) = text.split_once('.').unwrap();
    units.parse::<i64>().unwrap() * 100 + cents.parse::<i64>().unwrap()
}

fn cents_of_milli(text: &str) -> i64 {
    let (units, milli) = text.split_once('.').unwrap();
    units.parse::<i64>().unwrap() * 1000 + milli.parse::<i64>().unwrap()
}

fn next_order() -> Vec<u8> {
    order_bytes(&format!(
        "bench-{}",
        NEXT_REQUEST.fetch_add(1, Ordering::Relaxed)
    ))
}

fn expect_signed(receipt: Receipt) {
    if let Receipt::Error { message, code, .. } = receipt {
        panic!("order refused with {code:?}: {message}");
    }
}

/// A fresh journal on the real disk, already anchored (its first record written).
struct Bench {
    registrar: Option<BlockingApp>,
    name: &'static str,
    _dir: tempfile::TempDir,
}

impl Drop for Bench {
    /// Reports group commit at work (how many records each transaction, each fsync, carried),
    /// then stops the writer before the directory goes, so that its last checkpoint does not
    /// run during the next benchmark.
    fn drop(&mut self) {
        let Some(registrar) = self.registrar.take() else {
            return;
        };
        let journal = registrar.journal().clone();
        drop(registrar);
        let stats = journal.stats();
        let commits = stats.commits.load(Ordering::Relaxed);
        let records = stats.records.load(Ordering::Relaxed);
        if commits > 10 {
            eprintln!(
                "{}: {records} records in {commits} commits, {:.1} records per commit",
                self.name,
                records as f64 / commits as f64
            );
        }
        journal.close();
    }
}

impl Bench {
    fn new(name: &'static str) -> Self {
        let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        std::fs::create_dir_all(&root).unwrap();
        warn_if_tmpfs(&root);
        let dir = tempfile::Builder::new()
            .prefix("fdmd-bench-")
            .tempdir_in(&root)
            .unwrap();
        let signer = Arc::new(SoftwareSigner::from_seed([7; 32]));
        let journal = Journal::open(
            JournalConfig::new(dir.path().join("journal.sqlite"), FDM_ID),
            signer,
        )
        .unwrap();
        let registrar = AppBuilder::for_journal(journal, Numbering::default()).unwrap();
        // The registers the benchmarks use (up to 256 threads), enrolled as an installer would
        // (nothing journaled).
        for t in 0..256 {
            registrar.enrol_register(&format!("till-{t}")).unwrap();
        }
        expect_signed(registrar.handle_order("till-0", &next_order()));
        Bench {
            registrar: Some(registrar),
            name,
            _dir: dir,
        }
    }

    fn registrar(&self) -> &BlockingApp {
        self.registrar.as_ref().unwrap()
    }
}

/// Durability benchmarks are meaningless on a tmpfs; say so loudly rather than report them.
fn warn_if_tmpfs(dir: &Path) {
    let Ok(dir) = dir.canonicalize() else { return };
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
        return;
    };
    let fstype = mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split(' ');
            Some((f.next()?, f.next()?, f.next()?))
        })
        .filter(|(_, point, _)| dir.starts_with(point))
        .max_by_key(|(_, point, _)| point.len())
        .map(|(_, _, fstype)| fstype.to_owned());
    if let Some(fstype) = fstype
        && matches!(fstype.as_str(), "tmpfs" | "ramfs")
    {
        eprintln!(
            "WARNING: {} is on {fstype}: fsync is free there, durability figures are not real",
            dir.display()
        );
    }
}

/// Per-order latencies collected by the latency benchmarks (criterion reports means of
/// samples; the target is stated as a per-record median).
fn report_latencies(name: &str, latencies: &mut [Duration]) {
    if latencies.is_empty() {
        return;
    }
    latencies.sort_unstable();
    let pct = |p: f64| {
        let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[i].as_secs_f64() * 1e3
    };
    eprintln!(
        "{name}: {} runs, latency p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        latencies.len(),
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(1.0)
    );
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// utime + stime of a `/proc/.../stat` line (in USER_HZ = 100 ticks per second).
fn stat_cpu(stat: &str) -> Option<Duration> {
    // After the command name in parentheses: field 3 (state) is index 0, utime (14) index 11.
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split(' ').collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// CPU time used so far by the whole process (every thread, finished ones included), and by
/// each thread alive now, summed per thread name (`journal-writer`, `journal-signer`,
/// `tokio-rt-worker`…).
fn cpu_now() -> Option<(Duration, BTreeMap<String, Duration>)> {
    let process = stat_cpu(&std::fs::read_to_string("/proc/self/stat").ok()?)?;
    let mut threads = BTreeMap::new();
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) {
            *threads.entry(comm.trim().to_owned()).or_default() +=
                stat_cpu(&stat).unwrap_or_default();
        }
    }
    Some((process, threads))
}

/// CPU time per record over the timed parts of a benchmark: all threads (registers, writer,
/// signer, checkpoints; user and kernel), and per thread name. Unlike wall-clock throughput
/// these hardly depend on what else the machine is doing. They bound the throughput: at most
/// `cores / all_threads` records per second, and at most `1 / writer` (the writer is one
/// thread).
#[derive(Default)]
struct CpuMeter(Mutex<(Duration, BTreeMap<String, Duration>, u64)>);

impl CpuMeter {
    fn measure<T>(&self, records: u64, f: impl FnOnce() -> T) -> T {
        let before = cpu_now();
        let out = f();
        if let (Some(before), Some(after)) = (before, cpu_now()) {
            let mut m = self.0.lock().unwrap();
            m.0 += after.0.saturating_sub(before.0);
            for (name, used) in after.1 {
                let earlier = before.1.get(&name).copied().unwrap_or_default();
                *m.1.entry(name).or_default() += used.saturating_sub(earlier);
            }
            m.2 += records;
        }
        out
    }

    fn report(&self, name: &str) {
        let (all, threads, records) = &*self.0.lock().unwrap();
        // Below half a second the 10 ms ticks make the figures meaningless (e.g. with --test).
        if *records == 0 || *all < Duration::from_millis(500) {
            return;
        }
        let per = |d: Duration| d.as_secs_f64() * 1e6 / *records as f64;
        let writer = threads.get("journal-writer").copied().unwrap_or_default();
        let by_thread: Vec<String> = threads
            .iter()
            .filter(|(_, used)| per(**used) >= 0.5)
            .map(|(thread, used)| format!("{thread} {:.0}", per(*used)))
            .collect();
        eprintln!(
            "{name}: CPU per record {:.0} µs all threads (at most {:.0}/s on {} cores), \
             {:.0} µs writer thread (at most {:.0}/s); µs by thread: {}",
            per(*all),
            cores() as f64 * 1e6 / per(*all),
            cores(),
            per(writer),
            1e6 / per(writer).max(f64::MIN_POSITIVE),
            by_thread.join(", "),
        );
    }
}

/// (a) One order at a time: parse, validate, compute, journal (one transaction, one fsync),
/// sign, receipt.
fn single_writer(c: &mut Criterion) {
    const NAME: &str = "journal/single_order_latency";
    let bench = Bench::new(NAME);
    let latencies = Mutex::new(Vec::new());
    let meter = CpuMeter::default();
    let mut group = c.benchmark_group("journal");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(8))
        .throughput(Throughput::Elements(1));
    group.bench_function("single_order_latency", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut mine = Vec::with_capacity(iters as usize);
            meter.measure(iters, || {
                for _ in 0..iters {
                    let bytes = next_order();
                    let start = Instant::now();
                    let receipt = bench.registrar().handle_order("till-1", &bytes);
                    let took = start.elapsed();
                    expect_signed(receipt);
                    total += took;
                    mine.push(took);
                }
            });
            latencies.lock().unwrap().extend(mine);
            total
        });
    });
    group.finish();
    report_latencies(NAME, &mut latencies.into_inner().unwrap());
    meter.report(NAME);
}

/// (b) Concurrent registers: `threads` OS threads, each registering `PER_THREAD` orders one
/// after the other through the blocking API (a closed loop: each waits for its receipt).
fn concurrent_threads(c: &mut Criterion) {
    const PER_THREAD: u64 = 32;
    let mut group = c.benchmark_group("journal/concurrent_threads");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(10));
    for (threads, name) in [
        (16u64, "journal/concurrent_threads/16"),
        (64, "journal/concurrent_threads/64"),
    ] {
        let bench = Bench::new(name);
        let meter = CpuMeter::default();
        group.throughput(Throughput::Elements(threads * PER_THREAD));
        group.bench_with_input(BenchmarkId::from_parameter(threads), &threads, |b, &n| {
            b.iter_custom(|iters| {
                meter.measure(iters * n * PER_THREAD, || {
                    let start = Instant::now();
                    for _ in 0..iters {
                        std::thread::scope(|s| {
                            for t in 0..n {
                                let registrar = bench.registrar();
                                s.spawn(move || {
                                    let register = format!("till-{t}");
                                    for _ in 0..PER_THREAD {
                                        expect_signed(
                                            registrar.handle_order(&register, &next_order()),
                                        );
                                    }
                                });
                            }
                        });
                    }
                    start.elapsed()
                })
            });
        });
        meter.report(name);
    }
    group.finish();
}

/// A tokio runtime like the daemon's: multi-threaded, one worker per core.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores())
        .build()
        .unwrap()
}

/// (b') Concurrent registers the way the daemon serves them: 256 async tasks on a
/// multi-threaded runtime, each registering 4 orders and awaiting each receipt.
fn concurrent_tasks(c: &mut Criterion) {
    const NAME: &str = "journal/concurrent_tasks/256";
    const TASKS: u64 = 256;
    const PER_TASK: u64 = 4;
    let runtime = runtime();
    let bench = Bench::new(NAME);
    let meter = CpuMeter::default();
    let mut group = c.benchmark_group("journal/concurrent_tasks");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(10))
        .throughput(Throughput::Elements(TASKS * PER_TASK));
    group.bench_with_input(BenchmarkId::from_parameter(TASKS), &TASKS, |b, &n| {
        b.iter_custom(|iters| {
            meter.measure(iters * n * PER_TASK, || {
                let start = Instant::now();
                for _ in 0..iters {
                    runtime.block_on(async {
                        let handles: Vec<_> = (0..n)
                            .map(|t| {
                                let app = bench.registrar().app().clone();
                                tokio::spawn(async move {
                                    let register = format!("till-{}", t % 32);
                                    for _ in 0..PER_TASK {
                                        let bytes = next_order();
                                        expect_signed(app.handle_order(&register, &bytes).await);
                                    }
                                })
                            })
                            .collect();
                        for h in handles {
                            h.await.unwrap();
                        }
                    });
                }
                start.elapsed()
            })
        });
    });
    group.finish();
    meter.report(NAME);
}

/// (b'') The journal alone: the same 256 concurrent tasks append entries that were prepared
/// (parsed, validated, computed) before the clock started, so only numbering, encoding,
/// hashing, signing, inserting and group commit are measured. The gap to (b') is the cost of
/// order processing on the callers' side.
fn journal_only(c: &mut Criterion) {
    const NAME: &str = "journal/append_prepared/256";
    const TASKS: u64 = 256;
    const PER_TASK: u64 = 4;
    let runtime = runtime();
    let bench = Bench::new(NAME);
    let journal = bench.registrar().journal();
    let meter = CpuMeter::default();
    let mut group = c.benchmark_group("journal/append_prepared");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(8))
        .throughput(Throughput::Elements(TASKS * PER_TASK));
    group.bench_with_input(BenchmarkId::from_parameter(TASKS), &TASKS, |b, &n| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                // Set-up, not timed: every task's entries, prepared on the runtime's workers
                // as the daemon prepares them (not on this thread: blocks it allocated and the
                // workers free would cost mimalloc's slow cross-thread path, which the daemon
                // does not take).
                let work: Vec<Vec<fdmd::journal::Sealed>> = runtime.block_on(async {
                    let handles: Vec<_> = (0..n)
                        .map(|t| {
                            let app = bench.registrar().app().clone();
                            tokio::spawn(async move {
                                let register = format!("till-{}", t % 32);
                                (0..PER_TASK)
                                    .map(|_| {
                                        app.registrar
                                            .prepare_order(&register, &next_order())
                                            .map_err(|r| r.to_json())
                                            .unwrap()
                                    })
                                    .collect::<Vec<_>>()
                            })
                        })
                        .collect();
                    let mut work = Vec::with_capacity(handles.len());
                    for h in handles {
                        work.push(h.await.unwrap());
                    }
                    work
                });
                total += meter.measure(n * PER_TASK, || {
                    let start = Instant::now();
                    runtime.block_on(async {
                        let handles: Vec<_> = work
                            .into_iter()
                            .map(|entries| {
                                let journal = journal.clone();
                                tokio::spawn(async move {
                                    for entry in entries {
                                        journal.append(entry).await.unwrap();
                                    }
                                })
                            })
                            .collect();
                        for h in handles {
                            h.await.unwrap();
                        }
                    });
                    start.elapsed()
                });
            }
            total
        });
    });
    group.finish();
    meter.report(NAME);
}

/// The disk's own cost of durability, for scale: append 4 KiB to a file and `fdatasync` it,
/// in the directory the journals use. A commit cannot be faster than one of these.
fn raw_fsync(c: &mut Criterion) {
    use std::io::Write;
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(&root).unwrap();
    let mut file = tempfile::tempfile_in(&root).unwrap();
    let page = [0x5a_u8; 4096];
    let latencies = Mutex::new(Vec::new());
    let mut group = c.benchmark_group("disk");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    group.bench_function("append_4k_fdatasync", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut mine = Vec::with_capacity(iters as usize);
            for _ in 0..iters {
                file.write_all(&page).unwrap();
                let start = Instant::now();
                file.sync_data().unwrap();
                let took = start.elapsed();
                total += took;
                mine.push(took);
            }
            latencies.lock().unwrap().extend(mine);
            total
        });
    });
    group.finish();
    report_latencies(
        "disk/append_4k_fdatasync",
        &mut latencies.into_inner().unwrap(),
    );
}

/// (c) The pure CPU parts of one order.
fn cpu(c: &mut Criterion) {
    let bench = Bench::new("cpu");
    let bytes = order_bytes("cpu-1");
    let order = Order::from_json("till-1", &bytes).unwrap();
    let sale = Sale::compute(&order).unwrap();
    assert_eq!(order.lines.len(), 10);

    let mut group = c.benchmark_group("cpu");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));

    group.bench_function("order_parse_validate_compute_10_lines", |b| {
        b.iter(|| {
            let order = Order::from_json("till-1", black_box(&bytes)).unwrap();
            Sale::compute(&order).unwrap()
        });
    });
    // What a register's request costs before it reaches the writer thread: the above plus the
    // request digest and the journal body.
    group.bench_function("prepare_order_10_lines", |b| {
        b.iter(|| {
            bench
                .registrar()
                .app()
                .registrar
                .prepare_order("till-1", black_box(&bytes))
                .map_err(|_| ())
                .unwrap()
        });
    });
    group.bench_function("plu_hash_10_lines", |b| {
        b.iter(|| {
            let records: Vec<String> = order
                .lines
                .iter()
                .zip(&sale.line_totals)
                .map(|(l, t)| {
                    plu_record(l.unit.plu_quantity(l.quantity), &l.description, *t, l.vat)
                })
                .collect();
            plu_hash(records.iter().map(String::as_str))
        });
    });

    // One record as the writer builds it: the body with the fields the journal adds.
    let entry = bench
        .registrar()
        .app()
        .registrar
        .prepare_order("till-1", &bytes)
        .map_err(|_| ())
        .unwrap()
        .into_entry();
    let mut body = entry.body.clone();
    let key = entry.key.unwrap();
    for (k, v) in [
        ("register", json!(key.register)),
        ("request_id", json!(key.request_id)),
        ("request_digest", json!(key.digest)),
        ("event_counter", json!(123_456)),
        ("total_counter", json!(234_567)),
        ("ticket_series", json!(entry.series.unwrap())),
        ("ticket_number", json!(123_456)),
    ] {
        body.insert(k.into(), v);
    }
    let signer = SoftwareSigner::from_seed([7; 32]);
    let identity = signer.identity().unwrap();
    let prev_hash = [0xab; 32];
    let envelope = Envelope {
        seq: 234_600,
        kind: RecordKind::FiscalEvent,
        time: "2026-11-22T20:00:00.000+01:00",
        fdm_id: FDM_ID,
        signer_id: &identity.id,
        prev_hash: &prev_hash,
        body: &body,
    };
    let canonical = envelope.canonical_bytes().unwrap();
    let hash = record_hash(&canonical);

    group.bench_function("record_canonical_encoding", |b| {
        b.iter(|| black_box(&envelope).canonical_bytes().unwrap());
    });
    group.throughput(Throughput::Bytes(canonical.len() as u64));
    group.bench_function("record_sha256", |b| {
        b.iter(|| record_hash(black_box(&canonical)));
    });
    group.throughput(Throughput::Elements(1));
    group.bench_function("record_ed25519_sign", |b| {
        b.iter(|| signer.sign(&identity.id, black_box(&hash)).unwrap());
    });
    group.bench_function("record_encode_hash_sign", |b| {
        b.iter(|| {
            let canonical = black_box(&envelope).canonical_bytes().unwrap();
            let hash = record_hash(&canonical);
            signer.sign(&identity.id, &hash).unwrap()
        });
    });
    group.finish();
}

criterion_group!(
    benches,
    cpu,
    raw_fsync,
    single_writer,
    concurrent_threads,
    concurrent_tasks,
    journal_only
);
criterion_main!(benches);
