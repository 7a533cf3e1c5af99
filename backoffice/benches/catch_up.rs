//! Issue 19: does a box catching up days of journal slow its own order path? A/B pairs in one
//! sitting: `fdmd --dev` with a backlog of N records that the back office has not seen, its
//! registers sending orders at a fixed rate over MQTT (`fdmd-bench`, 16 registers, 500 orders/s
//! by default), with the copy on (B: it sends the whole backlog while the orders come) and off
//! (A: the same box, the same backlog, `[backoffice]` not enabled). Reported per run: latency
//! p50/p99/max, the daemon's CPU per order, and for B the time until the back office held every
//! record (the box's status document: `backoffice.last_sent_seq` = `journal.last_seq`).
//!
//! ```text
//! cargo build --release -p fdmd --bins
//! cargo bench -p fdmd-backoffice --bench catch_up
//! ```
//!
//! With `--test` (the test command runs it so) it makes one short pair on a small backlog and
//! fails unless every order was answered and the backlog copied.
//!
//! Settings (environment): `FDMD_CATCHUP_BACKLOG` (50000 records: ten days of a box signing
//! 5,000 records a day, ten times the issue's 500 a day), `FDMD_CATCHUP_RATE` (500 orders/s),
//! `FDMD_CATCHUP_SECS` (20 s per run), `FDMD_CATCHUP_WARM_UP_SECS` (5 s of orders after each
//! start, not measured, before the copy gets its credential), `FDMD_CATCHUP_PAIRS` (3), `FDMD_CATCHUP_FDMD` (the fdmd
//! binary to run, default this build's), `FDMD_CATCHUP_OFFICE` (`idle`: the back office and
//! its PostgreSQL run at `SCHED_IDLE`, only on a core no box thread wants, standing in for a back
//! office on another machine, as it is in the field; `nice`: at `FDMD_CATCHUP_NICE`, default 19,
//! where they still hold a core for up to a scheduler slice when a box thread wakes; `nice` with
//! `FDMD_CATCHUP_NICE=0` makes them compete with the box as equals, the worst case, as `--test`
//! does; `sink`: no back office, a thread of the bench at `SCHED_IDLE` takes each segment and
//! answers at once, so that only the box's own share of the copy is measured).
//!
//! The backlog is written once per run of the bench through the daemon itself (`fdmd-bench`
//! closed loop, copy off), then copied for each run, so every run starts from the same journal
//! and each B run is a new establishment of the back office with the whole backlog to send.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;
use support::{load_average, setting};

#[allow(dead_code)] // the tests use more of it than the bench
#[path = "../tests/common/pg.rs"]
mod pg;

use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const OFFICE_BIN: &str = env!("CARGO_BIN_EXE_fdmd-backoffice");
const ADMIN: &str = "admin-token-for-the-catch-up-bench-0123";

/// A binary of the same build as this bench (`cargo build --release -p fdmd --bins`).
fn sibling(name: &str) -> PathBuf {
    let path = Path::new(OFFICE_BIN).with_file_name(name);
    assert!(
        path.exists(),
        "{} not found: run `cargo build --release -p fdmd --bins` first",
        path.display()
    );
    path
}

/// The daemon under test: `FDMD_CATCHUP_FDMD` (another build's binary, for an A/B of two
/// builds in one sitting) or this build's.
fn fdmd_bin() -> PathBuf {
    std::env::var_os("FDMD_CATCHUP_FDMD")
        .map(PathBuf::from)
        .unwrap_or_else(|| sibling("fdmd"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET with a bearer token, bounded in time; the JSON body, `Null` when anything fails.
fn get_json(addr: SocketAddr, path: &str, token: Option<&str>) -> Value {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    match rt.block_on(fdmd::client::request(
        addr,
        hyper::Method::GET,
        path,
        token,
        None,
        Duration::from_secs(5),
    )) {
        Ok((_, bytes)) => serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

/// Polls `check` every 50 ms for at most `limit`; the time it took, `None` when it never held.
fn wait_for(limit: Duration, mut check: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// One `fdmd --dev` process on a data directory, with or without the copy to `office`.
struct Box {
    child: Child,
    http: SocketAddr,
    mqtt: SocketAddr,
    data: PathBuf,
}

impl Box {
    fn start(dir: &Path, office: Option<(SocketAddr, &str)>) -> Box {
        std::fs::create_dir_all(dir.join("conf.d")).unwrap();
        let data = dir.join("data");
        let http: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let mqtt: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        std::fs::write(
            dir.join("fdmd.toml"),
            format!(
                "[fdm]\nid = \"DEVFDMD0001\"\ndata_dir = \"{}\"\n[establishment]\nname = \"Bench\"\naddress = \"Grote Markt 1, 1000 Brussel\"\nvat_number = \"BE0123456749\"\n",
                data.display()
            ),
        )
        .unwrap();
        let copy = dir.join("conf.d/50-backoffice.toml");
        match office {
            // The shipped defaults for segments, polling and back-off: only where and who.
            Some((addr, id)) => std::fs::write(
                &copy,
                format!(
                    "[backoffice]\nenabled = true\nurl = \"http://{addr}\"\nestablishment = \"{id}\"\ncredential_file = \"{}\"\nretry_min_ms = 200\nretry_max_ms = 500\n",
                    dir.join("credential").display()
                ),
            )
            .unwrap(),
            None => {
                let _ = std::fs::remove_file(&copy);
            }
        }
        let log = std::fs::File::create(dir.join("fdmd.log")).unwrap();
        let child = Command::new(fdmd_bin())
            .arg("--dev")
            .arg("--config")
            .arg(dir.join("fdmd.toml"))
            .arg("--data-dir")
            .arg(&data)
            .args(["--http-listen", &http.to_string()])
            .args(["--mqtt-listen", &mqtt.to_string()])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut b = Box {
            child,
            http,
            mqtt,
            data,
        };
        let ready = wait_for(Duration::from_secs(60), || {
            matches!(b.child.try_wait(), Ok(Some(_)))
                || !get_json(http, "/v1/signer", None).is_null()
        });
        let log = || std::fs::read_to_string(dir.join("fdmd.log")).unwrap_or_default();
        if let Ok(Some(status)) = b.child.try_wait() {
            panic!("fdmd ended at start ({status}):\n{}", log());
        }
        assert!(
            ready.is_some(),
            "fdmd did not answer within 60 s:\n{}",
            log()
        );
        b
    }

    fn status(&self) -> Value {
        let admin = fdmd::access::read_admin_token(&self.data).unwrap();
        get_json(self.http, "/v1/status", Some(&admin))
    }

    fn last_seq(&self) -> u64 {
        self.status()["journal"]["last_seq"].as_u64().unwrap_or(0)
    }

    /// `fdmd-bench` against this box: its JSON report.
    fn bench(&self, rate: u64, secs: u64) -> Value {
        let out = Command::new(sibling("fdmd-bench"))
            .args(["--mqtt", &self.mqtt.to_string()])
            .args(["--http", &self.http.to_string()])
            .arg("--data-dir")
            .arg(&self.data)
            .args(["--registers", "16", "--rate", &rate.to_string()])
            .args(["--duration", &secs.to_string(), "--json"])
            .args(["--pid", &self.child.id().to_string()])
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        assert!(out.status.success(), "fdmd-bench failed");
        let text = String::from_utf8_lossy(&out.stdout);
        let last = text.lines().last().unwrap_or("");
        serde_json::from_str(last).unwrap()
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "fdmd did not stop within 30 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Box {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `fdmd-backoffice` with these arguments; its standard output (it must succeed).
fn office_cli(db: &str, args: &[&str]) -> String {
    let out = Command::new(OFFICE_BIN)
        .arg("--db")
        .arg(db)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "fdmd-backoffice {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// How the back office and its PostgreSQL share the box's two cores.
#[derive(Clone, Copy, PartialEq)]
enum OfficePriority {
    /// `SCHED_IDLE`: they run only on a core no box thread wants, and a box thread that wakes
    /// takes its core at once: the nearest this machine comes to a back office on another one.
    Idle,
    /// `SCHED_OTHER` at this nice value: they still hold a core for up to a scheduler slice
    /// when a box thread wakes.
    Nice(u64),
}

impl OfficePriority {
    fn describe(self) -> String {
        match self {
            OfficePriority::Idle => "at SCHED_IDLE".into(),
            OfficePriority::Nice(n) => format!("at nice {n}"),
        }
    }

    /// Applies it to a running process, every thread (children started later inherit it).
    fn apply(self, pid: u32) {
        let pid = pid.to_string();
        let status = match self {
            OfficePriority::Idle => Command::new("chrt")
                .args(["--all-tasks", "--idle", "--pid", "0", &pid])
                .status(),
            OfficePriority::Nice(n) => Command::new("renice")
                .args(["-n", &n.to_string(), "-p", &pid])
                .stdout(Stdio::null())
                .status(),
        };
        assert!(
            status.is_ok_and(|s| s.success()),
            "could not set the priority of process {pid}"
        );
    }

    /// A command that starts `program` at this priority.
    fn command(self, program: &Path) -> Command {
        match self {
            OfficePriority::Idle => {
                let mut c = Command::new("chrt");
                c.args(["--idle", "0"]).arg(program);
                c
            }
            OfficePriority::Nice(n) => {
                let mut c = Command::new("nice");
                c.args(["-n", &n.to_string()]).arg(program);
                c
            }
        }
    }
}

fn main() {
    // `--test` (the test command's one pass): a small backlog, one short pair, and the run
    // fails unless every order is answered and the whole backlog is copied within the run.
    let test = std::env::args().any(|a| a == "--test");
    let small = |name: &str, bench: u64, test_value: u64| {
        if test {
            test_value
        } else {
            setting(name, bench)
        }
    };
    let backlog = small("FDMD_CATCHUP_BACKLOG", 50_000, 2_000);
    let rate = small("FDMD_CATCHUP_RATE", 500, 100);
    let secs = small("FDMD_CATCHUP_SECS", 20, 5);
    let pairs = small("FDMD_CATCHUP_PAIRS", 3, 1);
    let warm_up = small("FDMD_CATCHUP_WARM_UP_SECS", 5, 1);
    let priority = match std::env::var("FDMD_CATCHUP_OFFICE").as_deref() {
        Ok("idle") | Err(_) if !test => Some(OfficePriority::Idle),
        Ok("nice") if !test => Some(OfficePriority::Nice(setting("FDMD_CATCHUP_NICE", 19))),
        Ok("sink") if !test => None,
        Ok(other) if !test => panic!("FDMD_CATCHUP_OFFICE={other}: idle, nice or sink"),
        _ => Some(OfficePriority::Nice(0)),
    };
    // The boxes on the target directory's disk; PostgreSQL's cluster where TMPDIR says (give
    // TMPDIR=/dev/shm to keep its writes off the box's disk, as a remote back office's are).
    let root = tempfile::Builder::new()
        .prefix("fdmd-catch-up")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();

    // The backlog: a box signs orders with its copy off until its journal holds `backlog`.
    let template = root.path().join("template");
    let start = Instant::now();
    let b = Box::start(&template, None);
    for _ in 0..200 {
        if b.last_seq() >= backlog {
            break;
        }
        b.bench(0, 3);
    }
    let written = b.last_seq();
    assert!(
        written >= backlog,
        "the backlog reached only {written} records"
    );
    let key = get_json(b.http, "/v1/signer", None)["public_key"]
        .as_str()
        .unwrap()
        .to_owned();
    b.stop();
    println!(
        "backlog: {written} records written in {:.0} s; load average {}",
        start.elapsed().as_secs_f64(),
        load_average()
    );

    // Where the copy goes: the back office, durable, at `priority` (PostgreSQL's backends
    // inherit the postmaster's); or a sink that takes each segment and answers at once.
    let office_addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let office = match priority {
        None => {
            sink(office_addr);
            None
        }
        Some(priority) => Some(Office::start(priority, office_addr, root.path())),
    };
    println!(
        "{pairs} pairs, {rate} orders/s for {secs} s each, 16 registers over MQTT; {}",
        priority.map_or(
            "a sink taking each segment in place of the back office".into(),
            |p| format!("back office and PostgreSQL {}", p.describe())
        )
    );
    println!(
        "run | copy | orders/s | p50 ms | p99 ms | max ms | errors | daemon µs/order | backlog copied after | load"
    );
    for run in 0..pairs * 2 {
        let copying = run % 2 == 0;
        let dir = root.path().join(format!("run-{run}"));
        let copied = Command::new("cp")
            .arg("-a")
            .arg(&template)
            .arg(&dir)
            .status()
            .unwrap();
        assert!(copied.success());
        // The copy's pages go to disk now: left dirty, the box's first checkpoint would have to
        // write them (tens of MB) inside the measured run.
        let _ = Command::new("sync").status();
        let id = format!("bench-{run}");
        let mut credential = String::new();
        if copying {
            credential = match &office {
                Some(office) => office.enrol(&id, &key),
                None => "sink".into(),
            };
        }
        let b = Box::start(&dir, copying.then_some((office_addr, id.as_str())));
        // Warm up (the first seconds after a start are slower, copy or not), then give the
        // copy its credential: it starts sending the backlog within half a second, as the
        // measured run begins. Until then it fails for want of a credential and retries.
        b.bench(rate, warm_up);
        if copying {
            std::fs::write(dir.join("credential"), format!("{credential}\n")).unwrap();
        }
        // Watch the copy while the registers send: the time until the back office holds
        // everything the journal had when the run began. The status is read in both runs
        // alike, so that its own cost is on both sides of the pair.
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let watch = {
            let (http, data, done) = (b.http, b.data.clone(), done.clone());
            std::thread::spawn(move || {
                let admin = fdmd::access::read_admin_token(&data).unwrap();
                wait_for(Duration::from_secs(secs + 60), || {
                    let s = get_json(http, "/v1/status", Some(&admin));
                    std::thread::sleep(Duration::from_millis(200));
                    done.load(std::sync::atomic::Ordering::Relaxed)
                        || s["backoffice"]["last_sent_seq"].as_u64().unwrap_or(0) >= written
                })
                .filter(|_| !done.load(std::sync::atomic::Ordering::Relaxed))
            })
        };
        let r = b.bench(rate, secs);
        // The test waits for the copy to end (at most a minute more): a debug build on a busy
        // machine may need longer than the run; the bench reports what the run saw.
        if !test {
            done.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let caught_up = copying.then(|| watch.join().unwrap());
        b.stop();
        let _ = std::fs::remove_dir_all(&dir);
        if test {
            assert_eq!(r["errors"], 0, "orders refused or lost: {r}");
            assert!(
                !copying || matches!(caught_up, Some(Some(_))),
                "the backlog was not copied within the run"
            );
        }
        let ms = |k: &str| r["latency_ms"][k].as_f64().unwrap_or(f64::NAN);
        println!(
            "{run} | {} | {:.0} | {:.2} | {:.2} | {:.1} | {} | {:.0} | {} | {}",
            if copying { "on" } else { "off" },
            r["orders_per_s"].as_f64().unwrap_or(0.0),
            ms("p50"),
            ms("p99"),
            ms("max"),
            r["errors"],
            r["daemon_cpu_us_per_order"].as_f64().unwrap_or(f64::NAN),
            match caught_up {
                Some(Some(d)) => format!("{:.1} s", d.as_secs_f64()),
                Some(None) => "not within the run".into(),
                None => "-".into(),
            },
            load_average()
        );
    }
    drop(office);
}

/// The back office and its PostgreSQL, stopped when dropped.
struct Office {
    /// Stopped when dropped, after the back office (`Drop` below runs first).
    _pg: pg::Pg,
    db: String,
    child: Child,
}

impl Office {
    fn start(priority: OfficePriority, addr: SocketAddr, dir: &Path) -> Office {
        let pg = pg::Pg::start_durable();
        pg.psql("postgres", "CREATE DATABASE office");
        let db = pg.conninfo("office");
        office_cli(&db, &["migrate"]);
        if let Some(pid) = pg.pid() {
            priority.apply(pid);
        }
        let token_file = dir.join("admin-token");
        std::fs::write(&token_file, format!("{ADMIN}\n")).unwrap();
        let child = priority
            .command(Path::new(OFFICE_BIN))
            .arg("--db")
            .arg(&db)
            .args(["serve", "--listen", &addr.to_string()])
            .arg("--admin-token-file")
            .arg(&token_file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let up = wait_for(Duration::from_secs(30), || {
            get_json(addr, "/v1/establishments", Some(ADMIN)).is_array()
                || get_json(addr, "/v1/establishments", Some(ADMIN))["establishments"].is_array()
        });
        assert!(up.is_some(), "the back office did not answer");
        Office { _pg: pg, db, child }
    }

    /// Enrols a new establishment with the box's key; returns its credential.
    fn enrol(&self, id: &str, key: &str) -> String {
        let out = office_cli(
            &self.db,
            &[
                "enrol",
                "--id",
                id,
                "--name",
                id,
                "--vat-number",
                "BE0123456749",
                "--key",
                key,
            ],
        );
        out.lines().last().unwrap().trim().to_owned()
    }
}

impl Drop for Office {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// In place of the back office: takes each segment (one HTTP/1.1 request per connection, as
/// the box sends them), reads it to the end and answers 200 at once, so that a run measures the
/// box's own share of the copy. Runs on a thread of its own at `SCHED_IDLE`.
fn sink(addr: SocketAddr) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind(addr).unwrap();
    std::thread::spawn(move || {
        // This thread only (`--all-tasks` would take the bench with it, and the boxes and
        // load generators it starts after).
        if let Ok(me) = std::fs::read_link("/proc/thread-self") {
            let tid = me.file_name().unwrap().to_string_lossy().into_owned();
            let status = Command::new("chrt")
                .args(["--idle", "--pid", "0", &tid])
                .status();
            assert!(status.is_ok_and(|s| s.success()), "chrt of the sink failed");
        }
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
            let mut reader = BufReader::new(stream);
            let mut length = 0u64;
            let mut line = String::new();
            for _ in 0..100 {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((name, value)) = line.split_once(':')
                    && name.eq_ignore_ascii_case("content-length")
                {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
            let _ = std::io::copy(&mut (&mut reader).take(length), &mut std::io::sink());
            let _ = reader.get_mut().write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
            );
        }
    });
}
