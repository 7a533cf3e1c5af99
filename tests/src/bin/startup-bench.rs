//! `startup-bench`: how long the real `fdmd --dev` takes to become ready on a journal of N
//! records, and how much memory it holds (issue 14: start-up and memory must not grow with the
//! journal).
//!
//! ```text
//! startup-bench [--records N] [--after 5000] [--cache DIR] [--quick] [--cold] [--keep-copy]
//!               [--fdmd PATH] [--restarts K]
//! ```
//!
//! 1. Builds a journal of about N records once, in process, through the same code the daemon
//!    runs (`App::handle_order`, through `fdmd::assembly::AppBuilder`) with the
//!    development signer's key: 32 registers each with its operator clocking in and out, counter
//!    sales, table service (two pro forma rounds then the final ticket), refunds of one line of
//!    an earlier ticket, deposits deducted later. It is cached under `--cache` (default
//!    `target/startup-bench`) keyed by N and reused by later runs.
//! 2. Copies it, starts `fdmd --dev --data-dir COPY` (the binary beside this one) on free
//!    loopback ports, and measures the time to the first `GET /v1/status` answered 200 and to
//!    the first order accepted, VmRSS after start, then sends `--after` orders (sales and table
//!    rounds) and reads VmRSS and VmHWM (the peak, start-up included) from `/proc/PID/status`.
//!
//! `--fdmd` runs another build of the daemon (to compare with an older one). `--restarts K`
//! stops the daemon cleanly after the run and measures K more starts on the same copy (with
//! whatever state the daemon saved at its stop). `--cold` drops the copy's files from the page cache before the start (GNU `dd iflag=nocache
//! count=0`, i.e. `posix_fadvise(DONTNEED)`, for those files only). `--quick` is the CI mode:
//! 2,000 records and 200 orders after start.
//! The result is one JSON line on stdout.

use anyhow::{Context, bail};
use fdmd::app::App;
use fdmd::assembly::AppBuilder;
use fdmd::journal::{Journal, JournalConfig};
use fdmd::paths;
use fdmd::service::Receipt;
use fdmd::signer::SoftwareSigner;
use fdmd_tests::{FDM_ID, KillOnDrop, LOAD_NUMBERING, fnv1a};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const REGISTERS: usize = 32;
const DAY: u64 = 400;

struct Args {
    records: u64,
    after: u64,
    cache: PathBuf,
    cold: bool,
    keep_copy: bool,
    fdmd: Option<PathBuf>,
    restarts: u32,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        records: 100_000,
        after: 5_000,
        cache: PathBuf::from("target/startup-bench"),
        cold: false,
        keep_copy: false,
        fdmd: None,
        restarts: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--records" => args.records = value()?.parse()?,
            "--after" => args.after = value()?.parse()?,
            "--cache" => args.cache = value()?.into(),
            "--quick" => {
                args.records = 2_000;
                args.after = 200;
            }
            "--cold" => args.cold = true,
            "--keep-copy" => args.keep_copy = true,
            "--fdmd" => args.fdmd = Some(value()?.into()),
            "--restarts" => args.restarts = value()?.parse()?,
            other => bail!(
                "unknown argument {other}; usage: startup-bench [--records N] [--after M] [--cache DIR] [--quick] [--cold] [--keep-copy]"
            ),
        }
    }
    Ok(args)
}

/// The order number `k` of register `r`'s stream (a pure function of both).
fn stream_order(r: usize, k: u64) -> Value {
    // An INSZ number per register: 9 digits and their check digits (97 - n mod 97).
    let n = 850_730_100 + r as u64;
    let op = format!("{n:09}{:02}", 97 - n % 97);
    let id = format!("g{r}-{k}");
    let h = fnv1a(id.as_bytes());
    let line = |d: &str, q: i64, cents: u64, v: &str| json!({"description": d, "quantity": q, "unit_price": format!("{}.{:02}", cents / 100, cents % 100), "vat": v});
    let table = format!("T{r}-{}", k / 20 % 8);
    match (k % DAY, k % 20, k % 50, k % 100) {
        (0, ..) => {
            json!({"request_id": id, "operator": op, "event_type": "normal", "purpose": "work_in"})
        }
        (x, ..) if x == DAY - 1 => {
            json!({"request_id": id, "operator": op, "event_type": "normal", "purpose": "work_out"})
        }
        (_, 1 | 2, ..) => json!({"request_id": id, "operator": op, "event_type": "pro_forma",
            "table": table, "lines": [line("Pintje", 2, 280, "A"), line("Croque monsieur", 1, 950 + h % 300, "B")]}),
        (_, 3, ..) => {
            json!({"request_id": id, "operator": op, "event_type": "normal", "table": table,
            "lines": [line("Koffie", 2, 300, "A")], "payments": []})
        }
        (_, _, 10, _) => {
            // Gives back one of line 0 of the counter sale 5 orders before (k-5 is a sale).
            json!({"request_id": id, "operator": op, "event_type": "normal",
                "original": {"request_id": format!("g{r}-{}", k - 5)},
                "lines": [{"description": "Spaghetti bolognese", "quantity": -1,
                    "unit_price": price_of(r, k - 5), "vat": "B", "original_line": 0}]})
        }
        (_, _, _, 30) => {
            json!({"request_id": id, "operator": op, "event_type": "normal", "purpose": "deposit",
            "lines": [line("Voorschot", 1, 5000, "B")]})
        }
        (_, _, _, 66) => json!({"request_id": id, "operator": op, "event_type": "normal",
            "lines": [line("Menu", 2, 4500, "B")], "deposits": [{"request_id": format!("g{r}-{}", k - 36)}]}),
        _ => json!({"request_id": id, "operator": op, "event_type": "normal", "lines": [
            {"description": "Spaghetti bolognese", "quantity": 1 + h % 3, "unit_price": price_of(r, k), "vat": "B"},
            line("Water plat 50cl", 1, 280, "A"),
            line("Tiramisu", 1, 650, "B")]}),
    }
}

fn price_of(r: usize, k: u64) -> String {
    let cents = 1000 + fnv1a(format!("p{r}-{k}").as_bytes()) % 800;
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// Registers one order through the daemon's own path (`App::handle_order`).
async fn register(app: &App, register: &str, v: &Value) -> anyhow::Result<()> {
    match app.handle_order(register, v.to_string().as_bytes()).await {
        Receipt::Signed(_) => Ok(()),
        other => bail!("{v} not signed: {}", other.to_json()),
    }
}

fn build_journal(dir: &Path, records: u64) -> anyhow::Result<()> {
    let tmp = dir.with_extension("partial");
    let _ = std::fs::remove_dir_all(&tmp);
    make_private_dir(&tmp)?;
    let signer = Arc::new(SoftwareSigner::open_or_create(&paths::dev_signer_key(
        &tmp,
    ))?);
    let journal = Journal::open(
        JournalConfig::new(paths::journal_file(&tmp), FDM_ID),
        signer,
    )?;
    let desk = AppBuilder::for_journal(journal.clone(), LOAD_NUMBERING)?;
    for r in 0..REGISTERS {
        desk.enrol_register(&format!("till-{r}"))?;
    }
    let app = desk.app().clone();
    let per_register = records.div_ceil(REGISTERS as u64);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let started = Instant::now();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for r in 0..REGISTERS {
            let app = app.clone();
            tasks.push(tokio::spawn(async move {
                let name = format!("till-{r}");
                for k in 0..per_register {
                    register(&app, &name, &stream_order(r, k)).await?;
                    if r == 0 && k % 10_000 == 0 && k > 0 {
                        eprintln!(
                            "startup-bench: {} records in {:.0} s",
                            k * REGISTERS as u64,
                            started.elapsed().as_secs_f64()
                        );
                    }
                }
                anyhow::Ok(())
            }));
        }
        for t in tasks {
            t.await??;
        }
        anyhow::Ok(())
    })?;
    drop(app);
    drop(desk);
    journal.close();
    // What building left beside the journal (the App's restaurant state, the access store) is
    // not part of the cached journal: a first start folds the journal itself.
    for name in [
        "restaurant-state.sqlite",
        "restaurant-state.sqlite-wal",
        "restaurant-state.sqlite-shm",
        "access.json",
        "admin.token",
    ] {
        let _ = std::fs::remove_file(tmp.join(name));
    }
    let conn = rusqlite::Connection::open(paths::journal_file(&tmp))?;
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    drop(conn);
    std::fs::rename(&tmp, dir)?;
    eprintln!(
        "startup-bench: journal of {} records built in {:.0} s",
        per_register * REGISTERS as u64,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn make_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    let _ = std::fs::remove_dir_all(to);
    make_private_dir(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        if e.file_type()?.is_file() {
            std::fs::copy(e.path(), to.join(e.file_name()))?;
        }
    }
    Ok(())
}

/// Drops the files of `dir` from the page cache (`dd iflag=nocache`, GNU coreutils).
fn drop_from_cache(dir: &Path) -> anyhow::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        let ok = Command::new("dd")
            .arg(format!("if={}", p.display()))
            .args(["iflag=nocache", "count=0", "status=none"])
            .status()?
            .success();
        if !ok {
            bail!("dd iflag=nocache failed on {}", p.display());
        }
    }
    Ok(())
}

fn free_port() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// A minimal HTTP/1.1 client on one kept-alive connection.
struct Http {
    addr: SocketAddr,
    conn: Option<BufReader<TcpStream>>,
}

impl Http {
    fn request(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &[u8],
    ) -> anyhow::Result<(u16, Vec<u8>)> {
        if self.conn.is_none() {
            let s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2))?;
            s.set_read_timeout(Some(Duration::from_secs(30)))?;
            self.conn = Some(BufReader::new(s));
        }
        let result = self.exchange(method, path, token, body);
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    fn exchange(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &[u8],
    ) -> anyhow::Result<(u16, Vec<u8>)> {
        let conn = self.conn.as_mut().context("not connected")?;
        let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.addr,
            body.len()
        );
        let s = conn.get_mut();
        s.write_all(head.as_bytes())?;
        s.write_all(body)?;
        let mut line = String::new();
        conn.read_line(&mut line)?;
        let code: u16 = line
            .split_whitespace()
            .nth(1)
            .context("no status line")?
            .parse()?;
        let mut length = 0usize;
        loop {
            line.clear();
            conn.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse()?;
            }
        }
        let mut buf = vec![0; length];
        conn.read_exact(&mut buf)?;
        Ok((code, buf))
    }
}

fn proc_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = text
        .lines()
        .find(|l| l.starts_with(field))
        .with_context(|| format!("no {field} in /proc/{pid}/status"))?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("empty field")?
        .parse()?)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn after_order(tag: u128, i: u64) -> Value {
    let id = format!("after-{tag}-{i}");
    if i % 10 < 2 {
        json!({"request_id": id, "operator": "85073003328", "event_type": "pro_forma",
            "table": format!("A{}", i / 10 % 16), "lines": [{"description": "Pintje", "quantity": 1, "unit_price": "2.80", "vat": "A"}]})
    } else if i % 10 == 2 {
        json!({"request_id": id, "operator": "85073003328", "event_type": "normal",
            "table": format!("A{}", i / 10 % 16), "lines": []})
    } else {
        json!({"request_id": id, "operator": "85073003328", "event_type": "normal",
            "lines": [{"description": "Spaghetti bolognese", "quantity": 1, "unit_price": "14.50", "vat": "B"},
                      {"description": "Water plat 50cl", "quantity": 1, "unit_price": "2.80", "vat": "A"}]})
    }
}

fn run(args: Args) -> anyhow::Result<Value> {
    let cached = args.cache.join(format!("journal-{}", args.records));
    if !cached.join("journal.sqlite").exists() {
        std::fs::create_dir_all(&args.cache)?;
        build_journal(&cached, args.records)?;
    }
    let conn = rusqlite::Connection::open_with_flags(
        paths::journal_file(&cached),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    let records: i64 = conn.query_row("SELECT count(*) FROM records", [], |r| r.get(0))?;
    drop(conn);
    let bytes = std::fs::metadata(paths::journal_file(&cached))?.len();
    let copy = args.cache.join("run");
    copy_dir(&cached, &copy)?;
    let fdmd = match &args.fdmd {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("fdmd"),
    };
    if !fdmd.exists() {
        bail!(
            "{} is missing: build it with the same profile (cargo build -p fdmd --bin fdmd)",
            fdmd.display()
        );
    }
    let mut runs = Vec::new();
    for k in 0..=args.restarts {
        if args.cold {
            drop_from_cache(&copy)?;
        }
        let after = if k == 0 { args.after } else { 0 };
        runs.push(start_and_measure(&fdmd, &copy, after)?);
    }
    if !args.keep_copy {
        let _ = std::fs::remove_dir_all(&copy);
    }
    Ok(json!({
        "records": records,
        "journal_mib": (bytes as f64 / 1048576.0).round(),
        "fdmd": fdmd.display().to_string(),
        "cold": args.cold,
        "runs": runs,
    }))
}

/// Starts `fdmd` on `copy`, measures readiness and memory, sends `after` orders, stops it.
fn start_and_measure(fdmd: &Path, copy: &Path, after: u64) -> anyhow::Result<Value> {
    let (http, mqtt) = (free_port()?, free_port()?);
    let started = Instant::now();
    let child = Command::new(fdmd)
        .arg("--dev")
        .arg("--data-dir")
        .arg(copy)
        .arg("--http-listen")
        .arg(http.to_string())
        .arg("--mqtt-listen")
        .arg(mqtt.to_string())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", fdmd.display()))?;
    let mut child = KillOnDrop(child);
    let pid = child.0.id();
    let mut client = Http {
        addr: http,
        conn: None,
    };
    let deadline = started + Duration::from_secs(600);
    let status_ready = loop {
        if Instant::now() > deadline {
            bail!("fdmd did not answer /v1/status within 600 s");
        }
        if let Some(s) = child.0.try_wait()? {
            bail!("fdmd exited during start-up: {s}");
        }
        if let Ok((200, _)) = client.request("GET", "/v1/status", None, b"") {
            break started.elapsed();
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let creds_file = copy.join("dev-credentials.json");
    let mut order_ready = None;
    let mut token = None;
    let mut i = 0u64;
    let tag = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos();
    while order_ready.is_none() {
        if Instant::now() > deadline {
            bail!("fdmd accepted no order within 600 s");
        }
        if token.is_none()
            && let Ok(bytes) = std::fs::read(&creds_file)
            && let Ok(v) = serde_json::from_slice::<Value>(&bytes)
        {
            token = v["http_token"].as_str().map(str::to_owned);
        }
        if let Some(t) = &token {
            let body = after_order(tag, i).to_string();
            match client.request(
                "POST",
                "/v1/registers/dev-register/orders",
                Some(t),
                body.as_bytes(),
            ) {
                Ok((201, _)) => {
                    order_ready = Some(started.elapsed());
                    i += 1;
                }
                Ok((code, b)) if code != 503 => {
                    bail!(
                        "first order answered {code}: {}",
                        String::from_utf8_lossy(&b)
                    )
                }
                _ => {}
            }
        }
        if order_ready.is_none() {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    let rss_start = proc_kib(pid, "VmRSS:")?;
    let hwm_start = proc_kib(pid, "VmHWM:")?;
    let token = token.context("no token")?;
    let t_orders = Instant::now();
    let threads: Vec<_> = (0..16u64)
        .map(|t| {
            let token = token.clone();
            std::thread::spawn(move || -> anyhow::Result<()> {
                let mut c = Http {
                    addr: http,
                    conn: None,
                };
                let mut j = 1 + t;
                while j < after {
                    let body = after_order(tag, j).to_string();
                    let (code, b) = c.request(
                        "POST",
                        "/v1/registers/dev-register/orders",
                        Some(&token),
                        body.as_bytes(),
                    )?;
                    if code != 201 {
                        bail!("order answered {code}: {}", String::from_utf8_lossy(&b));
                    }
                    j += 16;
                }
                Ok(())
            })
        })
        .collect();
    for t in threads {
        t.join()
            .map_err(|_| anyhow::anyhow!("a client thread panicked"))??;
    }
    let orders_secs = t_orders.elapsed().as_secs_f64();
    let rss_after = proc_kib(pid, "VmRSS:")?;
    let hwm = proc_kib(pid, "VmHWM:")?;
    let _ = Command::new("kill").arg(pid.to_string()).status();
    let stopped = fdmd_tests::wait_with_deadline(&mut child.0, Duration::from_secs(120));
    Ok(json!({
        "status_ready_s": status_ready.as_secs_f64(),
        "orders_ready_s": order_ready.map(|d| d.as_secs_f64()),
        "rss_after_start_mib": mib(rss_start),
        "peak_at_start_mib": mib(hwm_start),
        "orders_after": after,
        "orders_after_s": orders_secs,
        "rss_after_orders_mib": mib(rss_after),
        "peak_rss_mib": mib(hwm),
        "clean_stop": stopped.is_some_and(|s| s.success()),
    }))
}

fn main() -> ExitCode {
    match parse_args().and_then(run) {
        Ok(v) => {
            println!("{v}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("startup-bench: {e:#}");
            ExitCode::from(3)
        }
    }
}
