//! `fdmd-bench`: a load generator for a running fdmd. N registers send orders over MQTT or HTTP,
//! at a fixed total rate or as fast as answers come; reports orders/s, publish-to-receipt latency
//! (p50, p99, max), errors, and the daemon's resident memory and CPU per order (with `--pid`),
//! the CPU also as a multiple of one Ed25519 signature measured in the same run (the
//! development signer's, on one core of this machine), so runs on machines of different speed
//! compare.

use clap::{Parser, ValueEnum};
use hyper::{Method, StatusCode};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, mpsc};

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Transport {
    Mqtt,
    Http,
}

#[derive(Parser, Clone)]
#[command(
    name = "fdmd-bench",
    version,
    about = "Load generator for fdmd (MQTT or HTTP)"
)]
struct Args {
    /// Transport.
    #[arg(long, value_enum, default_value = "mqtt")]
    transport: Transport,
    /// MQTT broker address.
    #[arg(long, default_value = "127.0.0.1:1883")]
    mqtt: SocketAddr,
    /// HTTP API address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    /// Topic prefix.
    #[arg(long, default_value = "fdm/v1")]
    prefix: String,
    /// Number of registers (bench-1 … bench-N). Against a production daemon give --credentials.
    #[arg(long, default_value_t = 16)]
    registers: usize,
    /// Total orders per second over all registers; 0 = each register sends its next order as
    /// soon as the previous receipt arrives (closed loop, up to --window in flight).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Orders in flight per register in closed-loop mode.
    #[arg(long, default_value_t = 8)]
    window: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Lines per order.
    #[arg(long, default_value_t = 3)]
    lines: usize,
    /// JSON file with a list of credentials ({id, mqtt_username, mqtt_password, http_token}),
    /// e.g. from `fdmctl register add --json`. Without it, --registers new registers are
    /// enrolled through the HTTP admin API with the admin token of --data-dir.
    #[arg(long)]
    credentials: Option<std::path::PathBuf>,
    /// The daemon's data directory, for its `admin.token` (without --credentials).
    #[arg(long, default_value = "fdmd-data")]
    data_dir: std::path::PathBuf,
    /// PID of the daemon, to report its resident memory.
    #[arg(long)]
    pid: Option<u32>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Default)]
struct Cred {
    id: String,
    user: Option<String>,
    pass: Option<String>,
    token: Option<String>,
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
}

/// A tag unique to this run, so request ids never repeat across runs against one journal (a
/// repeated id is answered from the journal with 102 instead of being signed again).
fn run_tag() -> &'static str {
    static TAG: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TAG.get_or_init(|| {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        format!("{ms:x}")
    })
}

/// The `lines` member of every order: built once, since only the request id changes.
fn lines_json(lines: usize) -> String {
    let lines: Vec<Value> = (0..lines)
        .map(|i| {
            let vat = ["A", "B", "C"][i % 3];
            let station = (i == 0).then_some("kitchen");
            json!({"description": format!("Item {i}"), "quantity": 1 + (i % 3), "unit_price": "2.50", "vat": vat, "station": station})
        })
        .collect();
    serde_json::to_string(&lines).unwrap_or_default()
}

/// Order number `n` of `register` (request ids are plain ASCII: no escaping needed).
fn order(register: &str, n: u64, lines_json: &str) -> Vec<u8> {
    format!(
        r#"{{"request_id":"{register}-{}-{n}","operator":"85073003328","event_type":"normal","lines":{lines_json}}}"#,
        run_tag()
    )
    .into_bytes()
}

/// The two members of a receipt the generator looks at; the rest is skipped unparsed.
#[derive(serde::Deserialize)]
struct ReceiptHead<'a> {
    #[serde(borrow)]
    request_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    status: Option<std::borrow::Cow<'a, str>>,
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The CPU time (user + system, every thread) the process `pid` has used so far.
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: the fields after it follow its ')'.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace();
    // Fields 3… from here: utime and stime are fields 14 and 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let ticks = rustix::param::clock_ticks_per_second();
    (ticks > 0).then(|| Duration::from_secs_f64((utime + stime) as f64 / ticks as f64))
}

/// The time of one Ed25519 signature by the development signer on this thread: the median of
/// five rounds of 400, so a round disturbed by another process does not count.
fn signature_time() -> Duration {
    use fdmd::signer::Signer;
    let signer = fdmd::signer::SoftwareSigner::from_seed([9; 32]);
    let id = signer.identity().map(|i| i.id).unwrap_or_default();
    let mut rounds: Vec<Duration> = (0..5u8)
        .map(|round| {
            let start = Instant::now();
            for i in 0..400u32 {
                let mut digest = [round; 32];
                digest[..4].copy_from_slice(&i.to_le_bytes());
                let _ = std::hint::black_box(signer.sign(&id, &digest));
            }
            start.elapsed() / 400
        })
        .collect();
    rounds.sort_unstable();
    rounds[2]
}

fn cred_of(c: &Value) -> Cred {
    Cred {
        id: c["id"].as_str().unwrap_or_default().to_owned(),
        user: c["mqtt_username"].as_str().map(str::to_owned),
        pass: c["mqtt_password"].as_str().map(str::to_owned),
        token: c["http_token"].as_str().map(str::to_owned),
    }
}

/// The registers to run: from --credentials, or enrolled now (`bench-TAG-N`, new ids each run)
/// with the daemon's admin token.
async fn load_credentials(args: &Args) -> anyhow::Result<Vec<Cred>> {
    if let Some(path) = &args.credentials {
        let v: Value = serde_json::from_slice(&std::fs::read(path)?)?;
        let list = match v {
            Value::Array(a) => a,
            other => vec![other],
        };
        return Ok(list.iter().map(cred_of).collect());
    }
    let token_file = args.data_dir.join("admin.token");
    let token = std::fs::read_to_string(&token_file)
        .map_err(|e| {
            anyhow::anyhow!(
                "no --credentials, and the admin token {} cannot be read ({e}): give --data-dir",
                token_file.display()
            )
        })?
        .trim()
        .to_owned();
    let mut creds = Vec::with_capacity(args.registers);
    for i in 1..=args.registers {
        let id = format!("bench-{}-{i}", run_tag());
        let (status, body) = fdmd::client::request(
            args.http,
            Method::POST,
            "/v1/admin/registers",
            Some(&token),
            Some(serde_json::to_vec(&json!({"id": id}))?),
            Duration::from_secs(10),
        )
        .await?;
        anyhow::ensure!(
            status == StatusCode::CREATED,
            "enrolling {id}: {status} {}",
            String::from_utf8_lossy(&body)
        );
        creds.push(cred_of(&serde_json::from_slice(&body)?));
    }
    Ok(creds)
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("fdmd-bench: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

/// Runs the load; true when every order got its signed receipt (and there was at least one)
/// and the daemon (with --pid) is still there.
fn run() -> anyhow::Result<bool> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let creds = rt.block_on(load_credentials(&args))?;
    anyhow::ensure!(!creds.is_empty(), "no registers");
    let rss_before = args.pid.and_then(rss_kib);
    let signature = args.pid.map(|_| signature_time());
    let cpu_before = args.pid.and_then(cpu_time);
    let tally = Arc::new(Mutex::new(Tally::default()));
    let started = Instant::now();
    let peak_rss = Arc::new(std::sync::atomic::AtomicU64::new(rss_before.unwrap_or(0)));
    rt.block_on(async {
        if let Some(pid) = args.pid {
            let peak = peak_rss.clone();
            tokio::spawn(async move {
                loop {
                    if let Some(r) = rss_kib(pid) {
                        peak.fetch_max(r, std::sync::atomic::Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            });
        }
        let per_register_rate = (args.rate > 0).then(|| args.rate as f64 / creds.len() as f64);
        let mut tasks = Vec::new();
        for cred in creds.clone() {
            let (args, tally) = (args.clone(), tally.clone());
            tasks.push(tokio::spawn(async move {
                let result = match args.transport {
                    Transport::Mqtt => {
                        run_mqtt(&args, &cred, per_register_rate, tally.clone()).await
                    }
                    Transport::Http => {
                        run_http(&args, &cred, per_register_rate, tally.clone()).await
                    }
                };
                if let Err(e) = result {
                    let mut t = tally.lock().await;
                    t.errors += 1;
                    t.first_error.get_or_insert(format!("{}: {e:#}", cred.id));
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_used = match (args.pid.and_then(cpu_time), cpu_before) {
        (Some(after), Some(before)) => Some(after.saturating_sub(before)),
        _ => None,
    };
    let mut t = rt.block_on(async { std::mem::take(&mut *tally.lock().await) });
    t.latencies_us.sort_unstable();
    let n = t.latencies_us.len();
    let pct = |p: f64| {
        if n == 0 {
            0
        } else {
            t.latencies_us[((n as f64 * p) as usize).min(n - 1)]
        }
    };
    let report = json!({
        "transport": match args.transport { Transport::Mqtt => "mqtt", Transport::Http => "http" },
        "registers": creds.len(),
        "target_rate": args.rate,
        "seconds": elapsed,
        "orders": n,
        "orders_per_s": n as f64 / elapsed,
        "latency_ms": {"p50": pct(0.50) as f64 / 1000.0, "p99": pct(0.99) as f64 / 1000.0, "max": t.latencies_us.last().copied().unwrap_or(0) as f64 / 1000.0},
        "errors": t.errors,
        "first_error": t.first_error,
        "daemon_rss_kib": {"before": rss_before, "peak": args.pid.map(|_| peak_rss.load(std::sync::atomic::Ordering::Relaxed))},
        "daemon_cpu_us_per_order": cpu_used.filter(|_| n > 0).map(|c| c.as_secs_f64() * 1e6 / n as f64),
        "signature_us": signature.map(|d| d.as_secs_f64() * 1e6),
    });
    let cpu_per_order = report["daemon_cpu_us_per_order"].as_f64();
    let signature_us = report["signature_us"].as_f64();
    if args.json {
        println!("{report}");
    } else {
        println!(
            "{} orders in {:.1} s over {} ({} registers): {:.0} orders/s; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {} errors{}",
            n,
            elapsed,
            report["transport"].as_str().unwrap_or(""),
            creds.len(),
            report["orders_per_s"].as_f64().unwrap_or(0.0),
            report["latency_ms"]["p50"].as_f64().unwrap_or(0.0),
            report["latency_ms"]["p99"].as_f64().unwrap_or(0.0),
            report["latency_ms"]["max"].as_f64().unwrap_or(0.0),
            t.errors,
            rss_before
                .map(|b| format!(
                    "; daemon RSS {b} KiB before, {} KiB peak",
                    peak_rss.load(std::sync::atomic::Ordering::Relaxed)
                ))
                .unwrap_or_default()
        );
        if let (Some(cpu), Some(sig)) = (cpu_per_order, signature_us) {
            println!(
                "daemon CPU per order {cpu:.0} µs (all threads) = {:.1}× one Ed25519 signature ({sig:.1} µs, measured here before the run)",
                cpu / sig
            );
        }
        if let Some(e) = &t.first_error {
            println!("first error: {e}");
        }
    }
    let daemon_gone = args
        .pid
        .is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists());
    if daemon_gone {
        eprintln!("fdmd-bench: the daemon (pid {:?}) is gone", args.pid);
    }
    if t.errors > 0 || n == 0 {
        eprintln!("fdmd-bench: {} orders failed, {n} signed", t.errors);
    }
    Ok(t.errors == 0 && n > 0 && !daemon_gone)
}

async fn pace(rate: Option<f64>, sent: u64, start: Instant) {
    if let Some(r) = rate {
        let due = start + Duration::from_secs_f64(sent as f64 / r);
        tokio::time::sleep_until(due.into()).await;
    }
}

async fn run_http(
    args: &Args,
    cred: &Cred,
    rate: Option<f64>,
    tally: Arc<Mutex<Tally>>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(args.duration);
    let start = Instant::now();
    let path = format!("/v1/registers/{}/orders", cred.id);
    let lines = lines_json(args.lines);
    let mut n = 0u64;
    while Instant::now() < deadline {
        pace(rate, n, start).await;
        n += 1;
        let t0 = Instant::now();
        let answer = fdmd::client::request(
            args.http,
            Method::POST,
            &path,
            cred.token.as_deref(),
            Some(order(&cred.id, n, &lines)),
            Duration::from_secs(30),
        )
        .await;
        let mut t = tally.lock().await;
        match answer {
            Ok((StatusCode::CREATED, _)) => t.latencies_us.push(t0.elapsed().as_micros() as u64),
            Ok((status, body)) => {
                t.errors += 1;
                t.first_error
                    .get_or_insert(format!("{status}: {}", String::from_utf8_lossy(&body)));
            }
            Err(e) => {
                t.errors += 1;
                t.first_error.get_or_insert(e.to_string());
            }
        }
    }
    Ok(())
}

async fn run_mqtt(
    args: &Args,
    cred: &Cred,
    rate: Option<f64>,
    tally: Arc<Mutex<Tally>>,
) -> anyhow::Result<()> {
    let mut options = MqttOptions::new(
        format!("bench-{}-{}", cred.id, std::process::id()),
        args.mqtt.ip().to_string(),
        args.mqtt.port(),
    );
    options.set_keep_alive(Duration::from_secs(30));
    options.set_max_packet_size(1 << 20, 1 << 20);
    options.set_inflight(args.window.max(1) as u16 * 2);
    if let (Some(u), Some(p)) = (&cred.user, &cred.pass) {
        options.set_credentials(u.clone(), p.clone());
    }
    let (client, mut eventloop) = AsyncClient::new(options, 1024);
    eventloop.network_options.set_tcp_nodelay(true);
    let receipts = format!("{}/registers/{}/receipts", args.prefix, cred.id);
    let orders = format!("{}/registers/{}/orders", args.prefix, cred.id);
    let (rx_tx, mut rx) = mpsc::channel::<bytes::Bytes>(4096);
    let lines = lines_json(args.lines);
    let (sub_tx, mut sub_rx) = mpsc::channel::<()>(1);
    // The event loop runs in its own task; publishing happens elsewhere (rumqttc deadlock rule).
    let events = tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if rx_tx.send(p.payload).await.is_err() {
                        break;
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    let _ = sub_tx.try_send(());
                }
                Ok(_) => {}
                Err(e) => return Err(anyhow::anyhow!("MQTT connection: {e}")),
            }
        }
        Ok(())
    });
    client.subscribe(&receipts, QoS::AtLeastOnce).await?;
    tokio::time::timeout(Duration::from_secs(10), sub_rx.recv())
        .await
        .map_err(|_| anyhow::anyhow!("no SUBACK within 10 s"))?;
    let deadline = Instant::now() + Duration::from_secs(args.duration);
    let start = Instant::now();
    let mut pending: HashMap<String, Instant> = HashMap::new();
    let mut n = 0u64;
    let window = if rate.is_some() {
        usize::MAX
    } else {
        args.window.max(1)
    };
    loop {
        let now = Instant::now();
        if now >= deadline && pending.is_empty() {
            break;
        }
        if now >= deadline + Duration::from_secs(10) {
            let mut t = tally.lock().await;
            t.errors += pending.len() as u64;
            t.first_error.get_or_insert(format!(
                "{} orders without receipt 10 s after the end",
                pending.len()
            ));
            break;
        }
        let can_send = now < deadline && pending.len() < window;
        let next_due = rate.map(|r| start + Duration::from_secs_f64(n as f64 / r));
        tokio::select! {
            payload = rx.recv() => {
                let Some(payload) = payload else { break };
                let head: Option<ReceiptHead> = serde_json::from_slice(&payload).ok();
                let id = head.as_ref().and_then(|h| h.request_id.as_deref()).unwrap_or("");
                if let Some(t0) = pending.remove(id) {
                    let mut t = tally.lock().await;
                    if head.as_ref().and_then(|h| h.status.as_deref()) == Some("signed") {
                        t.latencies_us.push(t0.elapsed().as_micros() as u64);
                    } else {
                        t.errors += 1;
                        t.first_error
                            .get_or_insert(String::from_utf8_lossy(&payload).into_owned());
                    }
                }
            }
            _ = async { if let Some(due) = next_due { tokio::time::sleep_until(due.into()).await } }, if can_send => {
                n += 1;
                pending.insert(format!("{}-{}-{n}", cred.id, run_tag()), Instant::now());
                client.publish(&orders, QoS::AtLeastOnce, false, order(&cred.id, n, &lines)).await?;
            }
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
    if !pending.is_empty() {
        // The connection ended (the daemon died, the broker closed it) with orders unanswered.
        let mut t = tally.lock().await;
        t.errors += pending.len() as u64;
        t.first_error.get_or_insert(format!(
            "{}: {} orders without receipt when the connection ended",
            cred.id,
            pending.len()
        ));
    }
    let _ = client.disconnect().await;
    events.abort();
    Ok(())
}
