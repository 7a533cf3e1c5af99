//! Helpers shared by the end-to-end tests and the `journal-load` helper binary.
//!
//! The tests run real processes: `journal-load` (this package) and `fdmctl` (package `fdmd`).
//! Cargo only builds the binaries of the packages a command selects, so `fdmctl` must have been
//! built by the same command or before it: `cargo test --workspace` and `cargo nextest run
//! --workspace` build it; `cargo test -p fdmd-tests` alone does not (run `cargo build -p fdmd
//! --bins` first). [`fdmctl_path`] says so when the binary is missing or older than the daemon's
//! sources.

pub mod storage;

use fdmd::service::{Numbering, SeriesScope};
use serde_json::{Value, json};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime};

/// FDM production number used by every test journal.
pub const FDM_ID: &str = "DEVFDMD0001";

/// Seed of the software signer `journal-load` signs with.
pub const LOAD_SEED: [u8; 32] = [42; 32];

/// Operator INSZ used in every order.
pub const OPERATOR: &str = "85073003328";

/// Numbering used by `journal-load`: one establishment-wide series per event type, so that all
/// threads compete for the same ticket numbers.
pub const LOAD_NUMBERING: Numbering = Numbering {
    scope: SeriesScope::Establishment,
    digits: 8,
    groups: std::collections::BTreeMap::new(),
};

/// An order as a register sends it.
pub fn order(request_id: &str, event_type: &str, lines: &[(&str, i64, &str, &str)]) -> Vec<u8> {
    let lines: Vec<Value> = lines
        .iter()
        .map(|(d, q, p, v)| json!({"description": d, "quantity": q, "unit_price": p, "vat": v}))
        .collect();
    let v = json!({
        "request_id": request_id,
        "operator": OPERATOR,
        "event_type": event_type,
        "lines": lines,
    });
    // A `Value` always serialises.
    serde_json::to_vec(&v).unwrap_or_default()
}

/// The order `journal-load` sends for `request_id`: a pure function of the id, so a test can send
/// exactly the same bytes again. About one in five is a refund (label NR), so two labels share
/// the establishment's N series.
pub fn load_order(request_id: &str) -> Vec<u8> {
    let h = fnv1a(request_id.as_bytes());
    let quantity = if h.is_multiple_of(5) {
        -1
    } else {
        1 + (h % 3) as i64
    };
    let cents = 100 + (h >> 8) % 2000;
    let price = format!("{}.{:02}", cents / 100, cents % 100);
    let vat = ["A", "B", "C", "D"][((h >> 20) % 4) as usize];
    order(
        request_id,
        "normal",
        &[
            ("Spaghetti bolognese", quantity, &price, vat),
            ("Water plat 50cl", 1, "2.80", "A"),
        ],
    )
}

/// FNV-1a, 64 bits.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A small deterministic PRNG (xorshift64*), good enough for delays and sampling.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (0 is replaced by a fixed constant).
    pub fn new(seed: u64) -> Self {
        Rng(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    /// A seed from the clock, or from the environment variable `var` when set (to replay a run).
    pub fn seed_from_env_or_time(var: &str) -> u64 {
        if let Some(seed) = std::env::var(var).ok().and_then(|s| s.parse().ok()) {
            return seed;
        }
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        fnv1a(&nanos.to_le_bytes()) ^ u64::from(std::process::id())
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
}

/// The `fdmctl` binary of the same build as `sibling` (a binary of this package, given as
/// `env!("CARGO_BIN_EXE_journal-load")`): same target directory, same profile.
///
/// Panics with instructions when it is missing, or older than a source file of fdmctl or the
/// crates it uses (a `cargo test -p fdmd-tests` after editing them would otherwise test the old
/// binary).
pub fn fdmctl_path(sibling: &Path) -> PathBuf {
    let dir = sibling.parent().unwrap_or(Path::new("."));
    let path = dir.join(format!("fdmctl{}", std::env::consts::EXE_SUFFIX));
    let Ok(meta) = std::fs::metadata(&path) else {
        panic!(
            "fdmctl not found at {}: these tests run the real fdmctl of package fdmctl, which \
             `cargo test -p fdmd-tests` does not build. Run `cargo build -p fdmctl` first, \
             or use `cargo test --workspace` / `cargo nextest run --workspace`.",
            path.display()
        );
    };
    let built = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let newest = ["daemon/src", "core/src", "fdmctl/src"]
        .iter()
        .filter_map(|dir| newest_file(&root.join(dir), 6))
        .max();
    if let Some((newest, file)) = newest
        && newest > built
    {
        panic!(
            "{} is older than {}: it was built before the daemon's last change. Run `cargo \
             build -p fdmctl` (or `cargo test --workspace`) so the test runs the current \
             fdmctl.",
            path.display(),
            file.display()
        );
    }
    path
}

/// The newest modification time of a file under `dir` (bounded depth).
fn newest_file(dir: &Path, depth: u32) -> Option<(SystemTime, PathBuf)> {
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let Ok(meta) = entry.metadata() else { continue };
        let candidate = if meta.is_dir() {
            if depth == 0 {
                continue;
            }
            newest_file(&path, depth - 1)
        } else {
            meta.modified().ok().map(|t| (t, path))
        };
        if let Some(c) = candidate
            && newest.as_ref().is_none_or(|n| c.0 > n.0)
        {
            newest = Some(c);
        }
    }
    newest
}

/// What a finished command printed.
#[derive(Debug, Clone)]
pub struct Finished {
    /// Exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Finished {
    /// Both streams, for assertion messages.
    pub fn text(&self) -> String {
        format!(
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `cmd` to the end, killing it (and panicking) after `timeout`.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Finished {
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {shown}: {e}"));
    let read = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_string(&mut text);
            }
            text
        })
    };
    let out = read(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = read(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let status = wait_with_deadline(&mut child, timeout);
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{shown} did not finish within {timeout:?}");
    };
    Finished {
        code: status.code(),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// Waits for `child` at most `timeout`; `None` if it is still running.
pub fn wait_with_deadline(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            _ => return None,
        }
    }
}

/// Kills the child (SIGKILL) and reaps it when dropped, so a failing test leaves no process.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `fdmctl verify --data-dir DIR [extra…]`, bounded to one minute.
pub fn fdmctl_verify_dir(fdmctl: &Path, data_dir: &Path, extra: &[&str]) -> Finished {
    run_with_timeout(
        Command::new(fdmctl)
            .arg("verify")
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra),
        Duration::from_secs(60),
    )
}

/// `fdmctl verify --data-dir DIR --json`, asserting success; returns the summary.
pub fn fdmctl_verify_ok(fdmctl: &Path, data_dir: &Path) -> Value {
    let out = fdmctl_verify_dir(fdmctl, data_dir, &["--json"]);
    assert_eq!(
        out.code,
        Some(0),
        "fdmctl verify of {} failed:\n{}",
        data_dir.display(),
        out.text()
    );
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "fdmctl verify --json printed no JSON ({e}):\n{}",
            out.text()
        )
    })
}
