//! `journal-load`: registers orders from several threads until it is killed, printing one line
//! per signed receipt. Used by the crash test (`tests/crash.rs`), which SIGKILLs it at random
//! moments and then checks that every receipt it printed is in the journal.
//!
//! ```text
//! journal-load --data-dir DIR --run N [--threads 4] [--max-orders 20000] [--max-secs 30]
//! ```
//!
//! Each stdout line is a JSON object, written and flushed only after the receipt came back, i.e.
//! after the record's COMMIT:
//! `{"register":…,"request_id":…,"code":…,"seq":…,"ticket":…,"label":…,"event":…,"total":…,"digest":…,"signature":…}`.
//! Request ids are `<run>-<thread>-<i>`; the order is `fdmd_tests::load_order(request_id)`.
//! It stops by itself after `--max-orders` orders per thread or `--max-secs` seconds. Any
//! receipt that is not signed is printed to stderr and ends the process with exit code 3.

use anyhow::{Context, bail};
use fdmd::assembly::{AppBuilder, BlockingApp};
use fdmd::journal::{Journal, JournalConfig};
use fdmd::paths;
use fdmd::service::Receipt;
use fdmd::signer::SoftwareSigner;
use fdmd_tests::{FDM_ID, LOAD_NUMBERING, LOAD_SEED, load_order};
use serde_json::{Value, json};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Args {
    data_dir: PathBuf,
    run: u64,
    threads: usize,
    max_orders: u64,
    max_secs: u64,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        data_dir: PathBuf::new(),
        run: 0,
        threads: 4,
        max_orders: 20_000,
        max_secs: 30,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--data-dir" => args.data_dir = value.into(),
            "--run" => args.run = value.parse()?,
            "--threads" => args.threads = value.parse()?,
            "--max-orders" => args.max_orders = value.parse()?,
            "--max-secs" => args.max_secs = value.parse()?,
            other => bail!("unknown argument {other}"),
        }
    }
    if args.data_dir.as_os_str().is_empty() {
        bail!(
            "usage: journal-load --data-dir DIR --run N [--threads T] [--max-orders M] [--max-secs S]"
        );
    }
    Ok(args)
}

fn report_line(register: &str, receipt: &Value) -> anyhow::Result<String> {
    let ticket: u64 = receipt["ticket_number"]
        .as_str()
        .context("receipt without ticket_number")?
        .parse()?;
    Ok(json!({
        "register": register,
        "request_id": receipt["request_id"],
        "code": receipt["code"],
        "seq": receipt["journal_seq"],
        "ticket": ticket,
        "label": receipt["label"],
        "event": receipt["event_counter"],
        "total": receipt["total_counter"],
        "digest": receipt["signed_digest"],
        "signature": receipt["signature"],
    })
    .to_string())
}

fn worker(
    registrar: BlockingApp,
    run: u64,
    thread: usize,
    args_max: u64,
    deadline: Instant,
) -> anyhow::Result<()> {
    let register = format!("till-{thread}");
    for i in 0..args_max {
        if Instant::now() >= deadline {
            break;
        }
        let request_id = format!("{run}-{thread}-{i}");
        match registrar.handle_order_enrolling(&register, &load_order(&request_id)) {
            Receipt::Signed(receipt) => {
                let line = report_line(&register, &receipt)?;
                // One locked write + flush per line: lines never interleave, and a line is only
                // cut short if the process is killed inside this write.
                let mut out = std::io::stdout().lock();
                writeln!(out, "{line}")?;
                out.flush()?;
            }
            other => bail!("request {request_id} was not signed: {}", other.to_json()),
        }
    }
    Ok(())
}

fn run(args: Args) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir)?;
    let signer = Arc::new(SoftwareSigner::from_seed(LOAD_SEED));
    let journal = Journal::open(
        JournalConfig::new(paths::journal_file(&args.data_dir), FDM_ID),
        signer,
    )?;
    let registrar = AppBuilder::for_journal(journal.clone(), LOAD_NUMBERING)
        .context("assembling the App on the journal")?;
    let deadline = Instant::now() + Duration::from_secs(args.max_secs);
    let workers: Vec<_> = (0..args.threads.max(1))
        .map(|t| {
            let registrar = registrar.clone();
            let (run, max) = (args.run, args.max_orders);
            std::thread::spawn(move || worker(registrar, run, t, max, deadline))
        })
        .collect();
    drop(registrar);
    let mut result = Ok(());
    for w in workers {
        match w.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => result = Err(e),
            Err(_) => result = Err(anyhow::anyhow!("a worker thread panicked")),
        }
    }
    journal.close();
    result
}

fn main() -> ExitCode {
    match parse_args().and_then(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("journal-load: {e:#}");
            ExitCode::from(3)
        }
    }
}
