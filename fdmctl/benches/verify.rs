//! `fdmctl verify` against the machine's own Ed25519 speed.
//!
//! ```text
//! cargo bench -p fdmctl --bench verify                      # 200,000 records, 3 runs each
//! FDMD_VERIFY_RECORDS=1000000 cargo bench -p fdmctl --bench verify
//! cargo bench -p fdmctl --bench verify -- --test            # CI: 2,000 records, one run, seconds
//! ```
//!
//! Builds a journal of N records once with the real writer (`Journal` + `SoftwareSigner`,
//! `App::handle_order` and `fdmd_tests::load_order` from 32 threads) and its export with the real
//! `fdmctl export`, both cached under `target/tmp/verify-bench/` keyed by N and the formats
//! (a half-built cache is redone). Then, in the same sitting, runs `openssl speed -seconds 3
//! ed25519` (one core) and times the real `fdmctl verify --data-dir` and `fdmctl verify FILE`,
//! printing records/s, the child's peak RSS and CPU (sampled from `/proc/<pid>/status` and
//! `/proc/<pid>/stat` every 5 ms) and the ratio to openssl's single-core verify rate, also per
//! CPU-second (openssl's own rate is per CPU-second of user time).

use fdmd::assembly::AppBuilder;
use fdmd::journal::SCHEMA_VERSION;
use fdmd::journal::record::FORMAT_VERSION;
use fdmd::journal::{Journal, JournalConfig};
use fdmd::service::Receipt;
use fdmd::signer::SoftwareSigner;
use fdmd_tests::{FDM_ID, LOAD_NUMBERING, LOAD_SEED, load_order};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

type Error = Box<dyn std::error::Error>;

const WRITERS: u64 = 32;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("verify bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Error> {
    let quick = std::env::args().any(|a| a == "--test");
    let records: u64 = match std::env::var("FDMD_VERIFY_RECORDS") {
        Ok(n) => n.parse()?,
        Err(_) if quick => 2_000,
        Err(_) => 200_000,
    };
    let runs = if quick { 1 } else { 3 };
    let fdmctl = PathBuf::from(env!("CARGO_BIN_EXE_fdmctl"));
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("verify-bench")
        .join(format!(
            "n{records}-record{FORMAT_VERSION}-schema{SCHEMA_VERSION}-export{}",
            fdmd::journal::export::EXPORT_VERSION
        ));
    let export = dir.join("journal.export");
    prepare(&dir, &export, records, &fdmctl)?;

    println!("machine: {}, {} CPUs", cpu_model(), cpus());
    let openssl = openssl_verify_rate(if quick { 1 } else { 3 })?;
    // openssl speed divides by the user CPU time it used (not wall time) unless -elapsed is given,
    // so on a busy machine its rate is that of a core to itself; the per-CPU-second figures below
    // compare like with like.
    println!("openssl speed ed25519 (one core): {openssl:.0} verify/s");
    let data_dir = dir.to_string_lossy().into_owned();
    let export_file = export.to_string_lossy().into_owned();
    for (what, args) in [
        (
            "fdmctl verify --data-dir",
            vec!["verify", "--data-dir", &data_dir],
        ),
        ("fdmctl verify FILE", vec!["verify", &export_file]),
    ] {
        for run in 1..=runs {
            let m = measure(&fdmctl, &args)?;
            let checked = m.records.ok_or("fdmctl verify printed no record count")?;
            let rate = checked as f64 / m.wall.as_secs_f64();
            let per_cpu_second = checked as f64 / m.cpu.as_secs_f64().max(1e-3);
            println!(
                "{what} (run {run}/{runs}): {checked} records in {:.2} s = {rate:.0} records/s = {:.2}x openssl; \
                 peak RSS {:.1} MiB; CPU {:.2} s ({:.0} %, {:.1} us/record, {per_cpu_second:.0} records per CPU-second = {:.2}x openssl per core)",
                m.wall.as_secs_f64(),
                rate / openssl,
                m.peak_rss_kib as f64 / 1024.0,
                m.cpu.as_secs_f64(),
                100.0 * m.cpu.as_secs_f64() / m.wall.as_secs_f64(),
                1e6 * m.cpu.as_secs_f64() / checked as f64,
                per_cpu_second / openssl,
            );
        }
    }
    Ok(())
}

/// Builds the journal and the export unless a complete copy is cached.
fn prepare(dir: &Path, export: &Path, records: u64, fdmctl: &Path) -> Result<(), Error> {
    let done = dir.join("complete");
    if done.exists() {
        println!("journal of {records} records: cached in {}", dir.display());
        return Ok(());
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    let started = Instant::now();
    build_journal(dir, records)?;
    let out = Command::new(fdmctl)
        .args(["export", "--data-dir"])
        .arg(dir)
        .arg("--output")
        .arg(export)
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "fdmctl export failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    std::fs::write(&done, b"")?;
    println!(
        "journal of {records} records and its export built in {:.1} s in {}",
        started.elapsed().as_secs_f64(),
        dir.display()
    );
    Ok(())
}

/// `records` records: the journal's own first ones and orders from [`WRITERS`] threads.
fn build_journal(dir: &Path, records: u64) -> Result<(), Error> {
    let signer = Arc::new(SoftwareSigner::from_seed(LOAD_SEED));
    let journal = Journal::open(
        JournalConfig::new(fdmd::paths::journal_file(dir), FDM_ID),
        signer,
    )?;
    let registrar = AppBuilder::for_journal(journal.clone(), LOAD_NUMBERING)
        .map_err(|e| Error::from(e.to_string()))?;
    let orders = records.saturating_sub(1);
    let workers: Vec<_> = (0..WRITERS)
        .map(|t| {
            let registrar = registrar.clone();
            let mine = orders / WRITERS + u64::from(t < orders % WRITERS);
            std::thread::spawn(move || -> Result<(), String> {
                let register = format!("till-{t}");
                for i in 0..mine {
                    let id = format!("bench-{t}-{i}");
                    match registrar.handle_order_enrolling(&register, &load_order(&id)) {
                        Receipt::Signed(_) => {}
                        other => return Err(format!("{id} not signed: {}", other.to_json())),
                    }
                }
                Ok(())
            })
        })
        .collect();
    drop(registrar);
    let mut result = Ok(());
    for w in workers {
        match w.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => result = Err(e.into()),
            Err(_) => result = Err("a writer thread panicked".into()),
        }
    }
    journal.close();
    result
}

struct Measured {
    wall: Duration,
    cpu: Duration,
    peak_rss_kib: u64,
    records: Option<u64>,
}

/// Runs `fdmctl ARGS`, sampling its peak RSS and CPU time while it runs.
fn measure(fdmctl: &Path, args: &[&str]) -> Result<Measured, Error> {
    let started = Instant::now();
    let mut child = Command::new(fdmctl)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let proc_dir = PathBuf::from(format!("/proc/{}", child.id()));
    let (mut peak_rss_kib, mut cpu) = (0, Duration::ZERO);
    let status = loop {
        if let Some((rss, time)) = sample(&proc_dir) {
            peak_rss_kib = peak_rss_kib.max(rss);
            cpu = cpu.max(time);
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let wall = started.elapsed();
    let out = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !status.success() {
        return Err(format!("fdmctl {} failed: {stdout}", args.join(" ")).into());
    }
    // "  200001 records (1..=200001), …"
    let records = stdout
        .lines()
        .find_map(|l| l.trim().split_once(" records (")?.0.parse().ok());
    Ok(Measured {
        wall,
        cpu,
        peak_rss_kib,
        records,
    })
}

/// The high-water RSS (KiB) and user + system CPU time of a running process.
fn sample(proc_dir: &Path) -> Option<(u64, Duration)> {
    let status = std::fs::read_to_string(proc_dir.join("status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string(proc_dir.join("stat")).ok()?;
    // Fields after the command name (which is in parentheses): state is field 3, utime 14.
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on Linux.
    Some((rss, Duration::from_millis(ticks * 10)))
}

/// `openssl speed -seconds S ed25519`: verifications per second on one core.
fn openssl_verify_rate(seconds: u32) -> Result<f64, Error> {
    let out = Command::new("openssl")
        .args(["speed", "-seconds", &seconds.to_string(), "ed25519"])
        .stderr(Stdio::null())
        .output()
        .map_err(|e| format!("openssl: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    // " 253 bits EdDSA (Ed25519)   0.0000s   0.0001s  27383.2  10429.3": the last is verify/s.
    text.lines()
        .filter(|l| l.contains("Ed25519"))
        .find_map(|l| l.split_whitespace().last()?.parse().ok())
        .ok_or_else(|| format!("no Ed25519 line in openssl's output: {text}").into())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}
