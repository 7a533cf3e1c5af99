//! Health and status: what `GET /v1/status`, the retained MQTT status topic, `fdmctl status` and
//! the systemd watchdog report.

use crate::journal::JournalStats;
use crate::signer::{Signer, SignerError, SignerState};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a status problem is about: a stable code (snake_case in JSON, in `/metrics` and in
/// `docs/status.md`), whatever its message says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProblemCode {
    /// No signing card, or a card that does not sign (201).
    NoSigningCard,
    /// The signer waits for its PIN (202).
    SignerPinRequired,
    /// The signing card is blocked (203).
    SigningCardBlocked,
    /// The card is not one fdmd can sign with (210).
    SigningCardIncompatible,
    /// The clock is behind the journal's last record: nothing is signed (209).
    ClockBehindJournal,
    /// Another process changed the journal: nothing is signed (208).
    JournalNotWritable,
    /// The journal reached its size limit (205).
    StorageFull,
    /// The journal uses 90 % of its size limit (101).
    StorageNearlyFull,
    /// Little free space on the journal's file system (101).
    StorageLow,
    /// The MQTT side is not serving.
    MqttNotServing,
    /// The HTTP side is not serving.
    HttpNotServing,
    /// A loop (or the journal writer) made no progress for 30 s.
    LoopStalled,
    /// A plugin's transport failed.
    PluginError,
    /// The restaurant state is still being read from the journal (orders wait).
    RestaurantStateLoading,
    /// A numbering series has fiscal events on a past day and no Z report covering them.
    ZReportMissing,
    /// The GKS 2.0 FDM fdmd signs with does not answer (down, or no answer in time) (208).
    Gks2FdmDown,
    /// The GKS 2.0 FDM refuses fdmd's requests: wrong shared secret or device id (208).
    Gks2AuthRefused,
    /// The GKS 2.0 FDM's clock and fdmd's differ (a refusal, or a warning on signed events).
    Gks2ClockDifference,
    /// The GKS 2.0 FDM's buffer is full: it signs nothing until it has sent it (208).
    Gks2BufferFull,
    /// The GKS 2.0 FDM's buffer is nearly full (it still signs).
    Gks2BufferNearlyFull,
    /// The FDM v1 box fdmd signs with does not answer (link down, no ACK or no response) (208).
    FdmV1Down,
    /// The FDM v1 box answers with an error: no card, card blocked, memory full, clock… (2xx).
    FdmV1Refused,
    /// The FDM v1 box's card needs its PIN (202, or 204 after a wrong one).
    FdmV1PinRequired,
    /// The FDM v1 box's memory is 90 % full (101; it still signs).
    FdmV1MemoryNearlyFull,
}

impl ProblemCode {
    /// Every code, in the order `/metrics` lists them.
    pub const ALL: [ProblemCode; 24] = [
        ProblemCode::NoSigningCard,
        ProblemCode::SignerPinRequired,
        ProblemCode::SigningCardBlocked,
        ProblemCode::SigningCardIncompatible,
        ProblemCode::ClockBehindJournal,
        ProblemCode::JournalNotWritable,
        ProblemCode::StorageFull,
        ProblemCode::StorageNearlyFull,
        ProblemCode::StorageLow,
        ProblemCode::MqttNotServing,
        ProblemCode::HttpNotServing,
        ProblemCode::LoopStalled,
        ProblemCode::PluginError,
        ProblemCode::RestaurantStateLoading,
        ProblemCode::ZReportMissing,
        ProblemCode::Gks2FdmDown,
        ProblemCode::Gks2AuthRefused,
        ProblemCode::Gks2ClockDifference,
        ProblemCode::Gks2BufferFull,
        ProblemCode::Gks2BufferNearlyFull,
        ProblemCode::FdmV1Down,
        ProblemCode::FdmV1Refused,
        ProblemCode::FdmV1PinRequired,
        ProblemCode::FdmV1MemoryNearlyFull,
    ];

    /// The stable code.
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemCode::NoSigningCard => "no_signing_card",
            ProblemCode::SignerPinRequired => "signer_pin_required",
            ProblemCode::SigningCardBlocked => "signing_card_blocked",
            ProblemCode::SigningCardIncompatible => "signing_card_incompatible",
            ProblemCode::ClockBehindJournal => "clock_behind_journal",
            ProblemCode::JournalNotWritable => "journal_not_writable",
            ProblemCode::StorageFull => "storage_full",
            ProblemCode::StorageNearlyFull => "storage_nearly_full",
            ProblemCode::StorageLow => "storage_low",
            ProblemCode::MqttNotServing => "mqtt_not_serving",
            ProblemCode::HttpNotServing => "http_not_serving",
            ProblemCode::LoopStalled => "loop_stalled",
            ProblemCode::PluginError => "plugin_error",
            ProblemCode::RestaurantStateLoading => "restaurant_state_loading",
            ProblemCode::ZReportMissing => "z_report_missing",
            ProblemCode::Gks2FdmDown => "gks2_fdm_down",
            ProblemCode::Gks2AuthRefused => "gks2_auth_refused",
            ProblemCode::Gks2ClockDifference => "gks2_clock_difference",
            ProblemCode::Gks2BufferFull => "gks2_buffer_full",
            ProblemCode::Gks2BufferNearlyFull => "gks2_buffer_nearly_full",
            ProblemCode::FdmV1Down => "fdm_v1_down",
            ProblemCode::FdmV1Refused => "fdm_v1_refused",
            ProblemCode::FdmV1PinRequired => "fdm_v1_pin_required",
            ProblemCode::FdmV1MemoryNearlyFull => "fdm_v1_memory_nearly_full",
        }
    }

    /// The short message anyone may see (the public status shows only this).
    pub fn headline(self) -> &'static str {
        match self {
            ProblemCode::NoSigningCard => "no signing card (201)",
            ProblemCode::SignerPinRequired => "signer needs its PIN (202)",
            ProblemCode::SigningCardBlocked => "signing card blocked (203)",
            ProblemCode::SigningCardIncompatible => "signing card not compatible (210)",
            ProblemCode::ClockBehindJournal => "clock behind the journal (209)",
            ProblemCode::JournalNotWritable => "journal not writable (208)",
            ProblemCode::StorageFull => "journal storage full (205)",
            ProblemCode::StorageNearlyFull => "journal storage 90% full (101)",
            ProblemCode::StorageLow => "journal storage low (101)",
            ProblemCode::MqttNotServing => "MQTT not serving",
            ProblemCode::HttpNotServing => "HTTP not serving",
            ProblemCode::LoopStalled => "a loop is stalled",
            ProblemCode::PluginError => "a plugin failed",
            ProblemCode::RestaurantStateLoading => "restaurant state loading",
            ProblemCode::ZReportMissing => "Z report missing",
            ProblemCode::Gks2FdmDown => "GKS 2.0 FDM not answering (208)",
            ProblemCode::Gks2AuthRefused => "GKS 2.0 FDM refuses fdmd's authentication (208)",
            ProblemCode::Gks2ClockDifference => "clock differs from the GKS 2.0 FDM's",
            ProblemCode::Gks2BufferFull => "GKS 2.0 FDM buffer full (208)",
            ProblemCode::Gks2BufferNearlyFull => "GKS 2.0 FDM buffer nearly full",
            ProblemCode::FdmV1Down => "FDM v1 box not answering (208)",
            ProblemCode::FdmV1Refused => "FDM v1 box refuses to sign",
            ProblemCode::FdmV1PinRequired => "FDM v1 box needs its card's PIN (202)",
            ProblemCode::FdmV1MemoryNearlyFull => "FDM v1 box memory 90% full (101)",
        }
    }

    /// Whether the problem makes fdmd `degraded` (it cannot sign, or serve, as it should). A
    /// missing Z report does not: fdmd signs on, and says so until the report is made.
    pub fn degrades(self) -> bool {
        !matches!(self, ProblemCode::ZReportMissing)
    }
}

impl std::fmt::Display for ProblemCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One thing wrong: its code, its short public message, and the details behind it (a path, a
/// reader's name, a reason, a register) that only trusted clients see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The stable code.
    pub code: ProblemCode,
    /// The short message (no details).
    pub headline: String,
    /// The details, if any.
    pub detail: Option<String>,
}

impl Problem {
    /// A problem with the code's own headline.
    pub fn new(code: ProblemCode, detail: Option<String>) -> Self {
        Problem {
            code,
            headline: code.headline().to_owned(),
            detail,
        }
    }

    /// The whole message: the headline, then the details after `: `.
    pub fn message(&self) -> String {
        match &self.detail {
            Some(d) => format!("{}: {d}", self.headline),
            None => self.headline.clone(),
        }
    }

    /// `{"code": …, "message": …}` with the whole message (trusted clients).
    pub fn to_json(&self) -> Value {
        json!({"code": self.code.as_str(), "message": self.message()})
    }

    /// `{"code": …, "message": …}` with the headline only (the public status).
    pub fn public_json(&self) -> Value {
        json!({"code": self.code.as_str(), "message": self.headline})
    }
}

/// `ready`, or `degraded` when a problem [degrades](ProblemCode::degrades).
pub fn overall(problems: &[Problem]) -> &'static str {
    if problems.iter().any(|p| p.code.degrades()) {
        "degraded"
    } else {
        "ready"
    }
}

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
    sources: Mutex<Vec<ProblemSource>>,
    admin_sections: Mutex<Vec<(&'static str, AdminSection)>>,
}

/// A member of the admin status document kept elsewhere ([`Status::add_admin_section`]).
type AdminSection = Box<dyn Fn() -> Value + Send + Sync>;

/// Problems known elsewhere ([`Status::add_problem_source`]).
type ProblemSource = Box<dyn Fn() -> Vec<Problem> + Send + Sync>;

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
            sources: Mutex::new(Vec::new()),
            admin_sections: Mutex::new(Vec::new()),
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

    /// Adds a member of the admin status document (`GET /v1/status` with the admin token only),
    /// asked each time the document is made: the back office copy (`replication/`).
    pub fn add_admin_section(
        &self,
        name: &'static str,
        section: impl Fn() -> Value + Send + Sync + 'static,
    ) {
        self.admin_sections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((name, Box::new(section)));
    }

    /// The admin-only members of the status document.
    pub fn admin_sections(&self) -> Vec<(&'static str, Value)> {
        self.admin_sections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(name, f)| (*name, f()))
            .collect()
    }

    /// Adds a source of problems that live outside this struct (the restaurant state still
    /// being read, a missing Z report): asked each time the problems are.
    pub fn add_problem_source(&self, source: impl Fn() -> Vec<Problem> + Send + Sync + 'static) {
        self.sources
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Box::new(source));
    }

    /// What is wrong now; empty when all is well. Only problems that
    /// [degrade](ProblemCode::degrades) make the daemon `degraded`.
    pub fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        match self.signer.state() {
            SignerState::Ready => {}
            SignerState::PinRequired { .. } => {
                out.push(Problem::new(ProblemCode::SignerPinRequired, None))
            }
            SignerState::Absent => out.push(Problem::new(
                ProblemCode::NoSigningCard,
                match self.signer.identity() {
                    Err(SignerError::NoCard(why)) => Some(why),
                    _ => None,
                },
            )),
            SignerState::Blocked => out.push(Problem::new(ProblemCode::SigningCardBlocked, None)),
            SignerState::Incompatible { reason } => out.push(Problem::new(
                ProblemCode::SigningCardIncompatible,
                Some(reason),
            )),
        }
        if let Some(why) = self.journal.clock_behind() {
            out.push(Problem::new(ProblemCode::ClockBehindJournal, Some(why)));
        }
        if let Some(reason) = self.journal.diverged() {
            out.push(Problem::new(
                ProblemCode::JournalNotWritable,
                Some(reason.to_owned()),
            ));
        }
        if self.journal.usage().is_some_and(|u| u >= 1.0) {
            out.push(Problem::new(ProblemCode::StorageFull, None));
        } else if self.journal.usage().is_some_and(|u| u >= 0.9) {
            out.push(Problem::new(ProblemCode::StorageNearlyFull, None));
        } else if self.journal.storage_low() {
            let free_mib = self.journal.free_bytes().unwrap_or(0) / (1024 * 1024);
            out.push(Problem::new(
                ProblemCode::StorageLow,
                Some(format!("{free_mib} MiB free on its file system")),
            ));
        }
        if !self.mqtt_up.load(Ordering::Relaxed) {
            out.push(Problem::new(ProblemCode::MqttNotServing, None));
        }
        if !self.http_up.load(Ordering::Relaxed) {
            out.push(Problem::new(ProblemCode::HttpNotServing, None));
        }
        for name in self.stalled(Duration::from_secs(30)) {
            out.push(Problem::new(
                ProblemCode::LoopStalled,
                Some(format!("{name} loop stalled")),
            ));
        }
        for (name, state) in self
            .plugins
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            if let Some(error) = state.get("transport_error").and_then(Value::as_str) {
                out.push(Problem::new(
                    ProblemCode::PluginError,
                    Some(format!("plugin {name}: {error}")),
                ));
            }
        }
        for source in self
            .sources
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            out.extend(source());
        }
        out
    }

    /// The status document (`problems` as `{"code", "message"}` objects).
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
            "status": overall(&problems),
            "problems": problems.iter().map(Problem::to_json).collect::<Vec<_>>(),
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

    /// The version of fdmd.
    pub fn version(&self) -> &'static str {
        self.version
    }

    /// Prometheus text exposition of the main figures, and one `fdmd_problem{code="…"}` gauge
    /// for every problem code (1 while a problem of that code is listed, else 0).
    pub fn metrics(&self) -> String {
        let problems = self.problems();
        let ready = u8::from(overall(&problems) == "ready");
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
        out.push_str(
            "# HELP fdmd_problem 1 while status lists a problem of this code (docs/status.md)\n# TYPE fdmd_problem gauge\n",
        );
        for code in ProblemCode::ALL {
            let active = u8::from(problems.iter().any(|p| p.code == code));
            out.push_str(&format!(
                "fdmd_problem{{code=\"{}\"}} {active}\n",
                code.as_str()
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signer::SoftwareSigner;

    #[test]
    fn every_problem_code_is_documented_and_in_the_openapi_schema() {
        let docs = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs");
        let page = std::fs::read_to_string(format!("{docs}/status.md")).unwrap();
        let openapi: Value =
            serde_json::from_slice(&std::fs::read(format!("{docs}/openapi.json")).unwrap())
                .unwrap();
        let listed: Vec<&str> = openapi
            .pointer("/components/schemas/Problem/properties/code/enum")
            .and_then(Value::as_array)
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        let codes: Vec<&str> = ProblemCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(listed, codes, "docs/openapi.json Problem.code");
        for code in codes {
            assert!(
                page.contains(&format!("| `{code}` |")),
                "{code} is not in the table of docs/status.md"
            );
        }
    }

    #[test]
    fn metrics_have_a_gauge_for_every_code_and_problems_carry_their_code() {
        let journal = Arc::new(JournalStats::default());
        let status = Status::new(Arc::new(SoftwareSigner::from_seed([1; 32])), journal);
        status.set_mqtt_up(true);
        status.add_problem_source(|| {
            vec![Problem {
                code: ProblemCode::ZReportMissing,
                headline: "Z report missing since 2026-12-04".into(),
                detail: Some("no Z report for series establishment/Z since 2026-12-04".into()),
            }]
        });
        let metrics = status.metrics();
        for code in ProblemCode::ALL {
            let active = matches!(
                code,
                ProblemCode::HttpNotServing | ProblemCode::ZReportMissing
            );
            assert!(
                metrics.contains(&format!(
                    "fdmd_problem{{code=\"{code}\"}} {}\n",
                    u8::from(active)
                )),
                "{code}: {metrics}"
            );
        }
        let doc = status.snapshot();
        assert_eq!(doc["status"], "degraded", "HTTP is not serving: {doc}");
        assert_eq!(
            doc["problems"][1],
            json!({"code": "z_report_missing", "message": "Z report missing since 2026-12-04: no Z report for series establishment/Z since 2026-12-04"})
        );
        status.set_http_up(true);
        // A missing Z report alone does not make fdmd degraded.
        assert_eq!(status.snapshot()["status"], "ready");
        assert!(status.metrics().contains("fdmd_ready 1\n"));
    }

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
