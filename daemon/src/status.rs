//! Health and status: what `GET /v1/status`, the retained MQTT status topic, `fdmctl status` and
//! the systemd watchdog report.

use crate::journal::JournalStats;
use crate::signer::{Signer, SignerError, SignerState};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A loop that must keep making progress for the watchdog to be fed.
#[derive(Debug)]
pub struct Heartbeat {
    name: &'static str,
    last: AtomicU64,
}

impl Heartbeat {
    /// A heartbeat for the named loop.
    pub fn new(name: &'static str) -> Self {
        Heartbeat {
            name,
            last: AtomicU64::new(0),
        }
    }

    /// The loop made progress now.
    pub fn beat(&self, clock: &Instant) {
        self.last
            .store(clock.elapsed().as_millis() as u64 + 1, Ordering::Relaxed);
    }
}

/// Live state of the daemon.
pub struct Status {
    started: Instant,
    version: &'static str,
    signer: Arc<dyn Signer>,
    journal: Arc<JournalStats>,
    mqtt_up: AtomicBool,
    http_up: AtomicBool,
    registers_seen: Mutex<BTreeMap<String, u64>>,
    heartbeats: Mutex<Vec<Arc<Heartbeat>>>,
    orders: AtomicU64,
    errors: AtomicU64,
    plugins: Mutex<BTreeMap<String, Value>>,
}

impl Status {
    /// Status for a daemon using this signer and journal.
    pub fn new(signer: Arc<dyn Signer>, journal: Arc<JournalStats>) -> Self {
        Status {
            started: Instant::now(),
            version: env!("CARGO_PKG_VERSION"),
            signer,
            journal,
            mqtt_up: AtomicBool::new(false),
            http_up: AtomicBool::new(false),
            registers_seen: Mutex::new(BTreeMap::new()),
            heartbeats: Mutex::new(Vec::new()),
            orders: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            plugins: Mutex::new(BTreeMap::new()),
        }
    }

    /// Registers a loop the watchdog watches.
    pub fn heartbeat(&self, name: &'static str) -> Arc<Heartbeat> {
        let hb = Arc::new(Heartbeat::new(name));
        hb.beat(&self.started);
        self.heartbeats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(hb.clone());
        hb
    }

    /// Records a beat of `hb` now.
    pub fn beat(&self, hb: &Heartbeat) {
        hb.beat(&self.started);
    }

    /// Names of loops that have not made progress within `max_age` (the journal writer counts
    /// when appends wait on it that long without any answer).
    pub fn stalled(&self, max_age: Duration) -> Vec<&'static str> {
        let now = self.started.elapsed().as_millis() as u64;
        let journal = self.journal.stalled(max_age).then_some("journal writer");
        self.heartbeats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|hb| {
                now.saturating_sub(hb.last.load(Ordering::Relaxed)) > max_age.as_millis() as u64
            })
            .map(|hb| hb.name)
            .chain(journal)
            .collect()
    }

    /// The MQTT side is (not) serving.
    pub fn set_mqtt_up(&self, up: bool) {
        self.mqtt_up.store(up, Ordering::Relaxed);
    }

    /// The HTTP side is (not) serving.
    pub fn set_http_up(&self, up: bool) {
        self.http_up.store(up, Ordering::Relaxed);
    }

    /// A register sent something.
    pub fn saw_register(&self, register: &str, unix_ms: u64) {
        let mut seen = self
            .registers_seen
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if seen.len() < 1024 || seen.contains_key(register) {
            seen.insert(register.to_owned(), unix_ms);
        }
    }

    /// Counts an answered order.
    pub fn count_order(&self, ok: bool) {
        self.orders.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Sets what the status says about a plugin instance (loaded, refused and why, errors).
    pub fn set_plugin(&self, name: &str, state: Value) {
        self.plugins
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned(), state);
    }

    /// Changes what the status says about a plugin instance, if it says anything yet, under
    /// one lock: two changes at once never lose one of them.
    pub fn update_plugin(&self, name: &str, change: impl FnOnce(&mut Value)) {
        let mut plugins = self.plugins.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(state) = plugins.get_mut(name) {
            change(state);
        }
    }

    /// What the status says about a plugin instance.
    pub fn plugin(&self, name: &str) -> Option<Value> {
        self.plugins
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// Why the daemon is degraded; empty when ready.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        match self.signer.state() {
            SignerState::Ready => {}
            SignerState::PinRequired { .. } => out.push("signer needs its PIN (202)".to_owned()),
            SignerState::Absent => out.push(match self.signer.identity() {
                Err(SignerError::NoCard(why)) => format!("no signing card (201): {why}"),
                _ => "no signing card (201)".to_owned(),
            }),
            SignerState::Blocked => out.push("signing card blocked (203)".to_owned()),
            SignerState::Incompatible { reason } => {
                out.push(format!("signing card not compatible (210): {reason}"))
            }
        }
        if let Some(why) = self.journal.clock_behind() {
            out.push(format!(
                "clock behind the journal (209, clock_behind_journal): {why}"
            ));
        }
        if let Some(reason) = self.journal.diverged() {
            out.push(format!("journal not writable (208): {reason}"));
        }
        if self.journal.usage().is_some_and(|u| u >= 1.0) {
            out.push("journal storage full (205)".to_owned());
        } else if self.journal.usage().is_some_and(|u| u >= 0.9) {
            out.push("journal storage 90% full (101)".to_owned());
        } else if self.journal.storage_low() {
            let free_mib = self.journal.free_bytes().unwrap_or(0) / (1024 * 1024);
            out.push(format!(
                "journal storage low (101, storage_low): {free_mib} MiB free on its file system"
            ));
        }
        if !self.mqtt_up.load(Ordering::Relaxed) {
            out.push("MQTT not serving".to_owned());
        }
        if !self.http_up.load(Ordering::Relaxed) {
            out.push("HTTP not serving".to_owned());
        }
        for name in self.stalled(Duration::from_secs(30)) {
            out.push(format!("{name} loop stalled"));
        }
        for (name, state) in self
            .plugins
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            if let Some(error) = state.get("transport_error").and_then(Value::as_str) {
                out.push(format!("plugin {name}: {error}"));
            }
        }
        out
    }

    /// The status document.
    pub fn snapshot(&self) -> Value {
        let problems = self.problems();
        let mut signer = match self.signer.identity() {
            Ok(id) => {
                json!({"vsc_id": id.id, "algorithm": id.algorithm, "certified": id.certified, "state": self.signer.state()})
            }
            Err(e) => {
                json!({"state": self.signer.state(), "error": e.to_string(), "code": e.code().number()})
            }
        };
        if let Value::Object(map) = &mut signer {
            for (k, v) in self.signer.details() {
                map.entry(k).or_insert(v);
            }
        }
        let seen: BTreeMap<String, u64> = self
            .registers_seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        json!({
            "status": if problems.is_empty() { "ready" } else { "degraded" },
            "problems": problems,
            "version": self.version,
            "uptime_s": self.started.elapsed().as_secs(),
            "signer": signer,
            "journal": {
                "last_seq": self.journal.last_seq.load(Ordering::Relaxed),
                "records": self.journal.records.load(Ordering::Relaxed),
                "commits": self.journal.commits.load(Ordering::Relaxed),
                "usage": self.journal.usage(),
                "free_bytes": self.journal.free_bytes(),
            },
            "clock": crate::clock_sync::read(),
            "orders": {"answered": self.orders.load(Ordering::Relaxed), "errors": self.errors.load(Ordering::Relaxed)},
            "registers_seen": seen,
            "plugins": self.plugins.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        })
    }

    /// Prometheus text exposition of the main figures.
    pub fn metrics(&self) -> String {
        let ready = u8::from(self.problems().is_empty());
        let mut out = String::new();
        let mut metric = |name: &str, help: &str, kind: &str, value: String| {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
            ));
        };
        metric(
            "fdmd_ready",
            "1 when fdmd is ready to sign",
            "gauge",
            ready.to_string(),
        );
        metric(
            "fdmd_journal_last_seq",
            "Sequence number of the last durable record",
            "gauge",
            self.journal.last_seq.load(Ordering::Relaxed).to_string(),
        );
        metric(
            "fdmd_journal_records_total",
            "Records written since start",
            "counter",
            self.journal.records.load(Ordering::Relaxed).to_string(),
        );
        metric(
            "fdmd_journal_commits_total",
            "Journal transactions committed since start",
            "counter",
            self.journal.commits.load(Ordering::Relaxed).to_string(),
        );
        metric(
            "fdmd_orders_total",
            "Orders answered since start",
            "counter",
            self.orders.load(Ordering::Relaxed).to_string(),
        );
        metric(
            "fdmd_order_errors_total",
            "Orders answered with an error since start",
            "counter",
            self.errors.load(Ordering::Relaxed).to_string(),
        );
        if let Some(u) = self.journal.usage() {
            metric(
                "fdmd_journal_usage_ratio",
                "Journal storage used, 0 to 1",
                "gauge",
                format!("{u:.4}"),
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signer::SoftwareSigner;

    #[test]
    fn plugin_changes_made_at_once_are_all_kept() {
        let status = Arc::new(Status::new(
            Arc::new(SoftwareSigner::from_seed([1; 32])),
            Arc::new(JournalStats::default()),
        ));
        status.set_plugin("vendor-1", serde_json::json!({"errors": 0}));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let status = status.clone();
                std::thread::spawn(move || {
                    for _ in 0..500 {
                        status.update_plugin("vendor-1", |v| {
                            v["errors"] = serde_json::json!(v["errors"].as_u64().unwrap_or(0) + 1)
                        });
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(status.plugin("vendor-1").unwrap()["errors"], 4000);
    }

    #[test]
    fn a_journal_that_owes_answers_too_long_is_stalled() {
        let journal = Arc::new(JournalStats::default());
        let status = Status::new(
            Arc::new(SoftwareSigner::from_seed([1; 32])),
            journal.clone(),
        );
        assert!(status.stalled(Duration::from_secs(30)).is_empty());
        journal.pending.store(1, Ordering::Relaxed);
        journal.waiting_since_ms.store(1, Ordering::Relaxed);
        assert_eq!(status.stalled(Duration::from_secs(30)), ["journal writer"]);
        let hb = status.heartbeat("mqtt");
        hb.last.store(0, Ordering::Relaxed);
        assert!(
            status
                .stalled(Duration::from_millis(0))
                .contains(&"journal writer")
        );
    }
}
