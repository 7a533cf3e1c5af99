//! The tamper-evident journal: one writer thread, append-only SQLite, hash chain, signatures.
//!
//! Data flow: callers build an [`Entry`] and call [`Journal::append`]. The writer thread
//! (`writer.rs`) takes every entry waiting, opens one transaction, and for each entry assigns the
//! sequence number, counters and ticket number, encodes the record canonically, hashes it
//! (chaining the previous hash), has the signer sign the hash and inserts the row. One COMMIT
//! (one fsync, `synchronous=FULL`) makes the whole batch durable; only then does any caller get
//! its [`Appended`] answer. A failed commit rolls everything back: no number is used. The WAL
//! is copied into the database file on a thread of its own (`checkpoint.rs`).

mod body;
pub mod canonical;
mod checkpoint;
pub mod export;
pub mod query;
pub mod read;
pub mod record;
mod signing;
/// The SQLite layout of the journal file. Private: readers go through [`query`] and [`read`],
/// writers through [`Journal`]. The `raw-store` feature opens it to the tamper tests and the
/// storage benchmark, which must write rows the writer never would.
#[cfg(feature = "raw-store")]
pub mod store;
#[cfg(not(feature = "raw-store"))]
mod store;
pub mod verify;
mod writer;

use crate::fiscal::{FdmCode, Label};
use crate::signer::{Signer, SignerError};
pub use checkpoint::CheckpointLimits;
use chrono::{DateTime, FixedOffset, SecondsFormat};
use record::RecordKind;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
/// The version of the journal file's schema this build writes (`PRAGMA user_version`).
pub use store::SCHEMA_VERSION;

/// Where time comes from (the FDM time of each record). Tests and simulations inject their own.
pub trait Clock: Send + Sync {
    /// The current time with the local offset.
    fn now(&self) -> DateTime<FixedOffset>;
}

/// The system clock in the machine's time zone.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<FixedOffset> {
        chrono::Local::now().fixed_offset()
    }
}

/// Formats an FDM time as stored in records: RFC 3339 with milliseconds and offset.
pub fn format_time(t: DateTime<FixedOffset>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, false)
}

/// How the journal is opened.
#[derive(Clone)]
pub struct JournalConfig {
    /// The SQLite file.
    pub path: PathBuf,
    /// This module's 11-character production number, written into every record.
    pub fdm_id: String,
    /// Largest size the file may grow to; 90 % gives warning 101, full gives 205.
    pub max_bytes: Option<u64>,
    /// Clock for record times.
    pub clock: Arc<dyn Clock>,
    /// Most entries in one transaction.
    pub max_batch: usize,
    /// Queue length before `append` waits.
    pub queue: usize,
    /// When the WAL is checkpointed (on the `journal-checkpoint` thread, or inline).
    pub checkpoints: CheckpointLimits,
}

impl JournalConfig {
    /// Defaults for a journal file: system clock, no size limit, batches of up to 512.
    pub fn new(path: impl Into<PathBuf>, fdm_id: impl Into<String>) -> Self {
        JournalConfig {
            path: path.into(),
            fdm_id: fdm_id.into(),
            max_bytes: None,
            clock: Arc::new(SystemClock),
            max_batch: 512,
            queue: 8192,
            checkpoints: CheckpointLimits::default(),
        }
    }
}

/// The idempotency key of an entry: the same request from the same register is answered from
/// the journal, and the same id with other content is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestKey {
    /// Register id.
    pub register: String,
    /// Request id, unique per register.
    pub request_id: String,
    /// SHA-256 hex of the request's canonical content.
    pub digest: String,
}

/// Something to append.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Record kind.
    pub kind: RecordKind,
    /// Idempotency key, if the entry answers a request.
    pub key: Option<RequestKey>,
    /// For fiscal events: the label whose event counter (and the total counter) it takes.
    pub counters: Option<Label>,
    /// A numbering series to take the next number of (stored as `ticket_series` and
    /// `ticket_number` in the body).
    pub series: Option<String>,
    /// Kind-specific content.
    pub body: Map<String, Value>,
}

impl Entry {
    /// An entry with only a kind and a body.
    pub fn new(kind: RecordKind, body: Map<String, Value>) -> Self {
        Entry {
            kind,
            key: None,
            counters: None,
            series: None,
            body,
        }
    }
}

/// A record that is durable in the journal.
#[derive(Debug, Clone, PartialEq)]
pub struct Appended {
    /// Sequence number.
    pub seq: u64,
    /// Kind.
    pub kind: RecordKind,
    /// FDM time.
    pub time: String,
    /// FDM production number.
    pub fdm_id: String,
    /// Signer (VSC) id.
    pub signer_id: String,
    /// SHA-256 of the canonical record: the signed digest.
    pub hash: [u8; 32],
    /// Signature over `hash`.
    pub signature: Vec<u8>,
    /// The body, with counters and ticket number filled in.
    pub body: Map<String, Value>,
    /// True when this is the stored answer to a request handled before (code 102).
    pub duplicate: bool,
    /// True when storage is 90 % full or more (code 101).
    pub storage_nearly_full: bool,
}

impl Appended {
    /// The code a receipt for this record carries.
    pub fn code(&self) -> FdmCode {
        if self.duplicate {
            FdmCode::AlreadyHandled
        } else if self.storage_nearly_full {
            FdmCode::StorageNearlyFull
        } else {
            FdmCode::Ok
        }
    }

    /// A `u64` field of the body (counters, ticket number).
    pub fn body_u64(&self, field: &str) -> Option<u64> {
        self.body.get(field).and_then(Value::as_u64)
    }
}

/// Why an entry was not appended. Nothing was written for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    /// The signer could not sign.
    #[error(transparent)]
    Signer(#[from] SignerError),
    /// Storage is full (205).
    #[error("journal storage is full: nothing can be signed until space is freed")]
    StorageFull,
    /// The request id was used before for other content (207).
    #[error("request_id {request_id} was already used by this register for a different request")]
    Conflict {
        /// The reused id.
        request_id: String,
    },
    /// The record could not be encoded (207).
    #[error("record cannot be encoded: {0}")]
    Encoding(String),
    /// SQLite failed for another reason (208).
    #[error("journal write failed: {0}")]
    Storage(String),
    /// The writer has stopped (208).
    #[error("the journal writer has stopped")]
    Closed,
    /// Another process wrote to the journal under this writer (208): it signs nothing more.
    #[error("{0}")]
    Diverged(String),
    /// The clock is earlier than the journal's last record: signing now would put a record
    /// before the one it follows.
    #[error(
        "the clock ({now}) is behind the journal's last record ({last}): nothing is signed until the clock is right (see docs/time.md)"
    )]
    ClockBehind {
        /// The clock's time.
        now: String,
        /// The last record's time.
        last: String,
    },
}

impl AppendError {
    /// The FDM code of the error.
    pub fn code(&self) -> FdmCode {
        match self {
            AppendError::Signer(e) => e.code(),
            AppendError::StorageFull => FdmCode::StorageFull,
            AppendError::ClockBehind { .. } => FdmCode::ClockCorrupt,
            AppendError::Conflict { .. } | AppendError::Encoding(_) => FdmCode::InvalidData,
            AppendError::Storage(_) | AppendError::Closed | AppendError::Diverged(_) => {
                FdmCode::NotOperational
            }
        }
    }
}

/// Why the journal could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// SQLite refused.
    #[error("journal {path}: {source}")]
    Sqlite {
        /// File.
        path: String,
        /// Cause.
        source: rusqlite::Error,
    },
    /// The writer thread could not start.
    #[error("journal writer thread: {0}")]
    Thread(std::io::Error),
}

struct WriteRequest {
    /// The entry; its body is empty when `encoded` is there (the caller kept it).
    entry: Entry,
    /// The body's members encoded by the caller (`None` if they have no canonical form: the
    /// writer then encodes the body itself and answers with the error).
    encoded: Option<body::EncodedBody>,
    reply: flume::Sender<Result<Appended, AppendError>>,
}

/// An entry whose body is already encoded canonically: what [`Journal::append`] takes (an
/// [`Entry`] is sealed on the way in). Sealing encodes the body on the caller's thread (see
/// [`body`]); a caller that builds entries ahead of time seals them right away, while the body
/// is still in the CPU's cache. The body itself stays with the caller: the writer gets its
/// encoding only, and answers with its own members, added to the kept body on return.
#[derive(Debug)]
pub struct Sealed {
    entry: Entry,
    encoded: Option<body::EncodedBody>,
    /// The body the writer gets only encoded (`None` if it gets the body itself).
    kept: Option<Map<String, Value>>,
}

impl Entry {
    /// Encodes the body now (see [`Sealed`]).
    pub fn seal(mut self) -> Sealed {
        let encoded = body::EncodedBody::of(&self);
        let kept = encoded.as_ref().map(|_| std::mem::take(&mut self.body));
        Sealed {
            entry: self,
            encoded,
            kept,
        }
    }
}

impl From<Entry> for Sealed {
    fn from(entry: Entry) -> Self {
        entry.seal()
    }
}

impl Sealed {
    /// The entry again, with its body (the encoding is dropped).
    pub fn into_entry(self) -> Entry {
        let mut entry = self.entry;
        if let Some(body) = self.kept {
            entry.body = body;
        }
        entry
    }

    /// The request for the writer, and what the caller keeps for [`KeptBody::complete`].
    fn into_request(
        self,
        reply: flume::Sender<Result<Appended, AppendError>>,
    ) -> (WriteRequest, KeptBody) {
        let request = WriteRequest {
            entry: self.entry,
            encoded: self.encoded,
            reply,
        };
        (request, KeptBody(self.kept))
    }
}

/// The body of an entry the writer got only encoded (`None` if it got the body itself).
struct KeptBody(Option<Map<String, Value>>);

impl KeptBody {
    /// The writer's answer with the whole body: for a new record it carries only the members
    /// the writer set, which are added to (and replace any of the same name in) the kept body.
    /// A stored answer (102) carries the stored body, which is the whole one.
    fn complete(self, result: Result<Appended, AppendError>) -> Result<Appended, AppendError> {
        let Some(mut body) = self.0 else {
            return result;
        };
        result.map(|mut appended| {
            if !appended.duplicate {
                // A handful of members: inserted one by one (`Map::append` rebuilds the tree).
                for (key, value) in std::mem::take(&mut appended.body) {
                    body.insert(key, value);
                }
                appended.body = body;
            }
            appended
        })
    }
}

/// Figures the writer publishes for status and metrics.
#[derive(Debug, Default)]
pub struct JournalStats {
    /// Sequence number of the last durable record.
    pub last_seq: AtomicU64,
    /// Pages used (when a size limit is set).
    pub pages_used: AtomicU64,
    /// Page limit (0 when none).
    pub pages_max: AtomicU64,
    /// Transactions committed.
    pub commits: AtomicU64,
    /// Records committed.
    pub records: AtomicU64,
    /// Appends waiting for an answer.
    pub pending: AtomicU64,
    /// Since when (ms since the Unix epoch) the writer has owed an answer without giving one.
    pub waiting_since_ms: AtomicU64,
    /// Set once, when the writer found records it did not write after its own: why it stopped
    /// signing.
    diverged: std::sync::OnceLock<String>,
    /// Why the last order was refused for a clock behind the journal, until a record is
    /// written again.
    clock_behind: std::sync::Mutex<Option<String>>,
    /// Bytes free for the journal on its file system (`u64::MAX` until first measured).
    free_bytes: AtomicU64,
    /// Size of that file system in bytes (0 until first measured).
    filesystem_bytes: AtomicU64,
}

/// Below this much free space on the journal's file system, receipts carry 101 and status
/// says `storage_low` (also below [`LOW_FREE_PERCENT`] of the file system, whichever is more).
pub const LOW_FREE_BYTES: u64 = 64 * 1024 * 1024;
/// See [`LOW_FREE_BYTES`].
pub const LOW_FREE_PERCENT: u64 = 5;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl JournalStats {
    fn request_sent(&self) {
        if self.pending.fetch_add(1, Ordering::AcqRel) == 0 {
            self.waiting_since_ms.store(now_ms(), Ordering::Release);
        }
    }

    fn answer_received(&self) {
        // An answer is progress: whoever still waits now waits since this moment.
        self.waiting_since_ms.store(now_ms(), Ordering::Release);
        self.pending.fetch_sub(1, Ordering::AcqRel);
    }

    /// True when appends have waited longer than `max_age` without the writer answering any:
    /// the writer is stuck (a hung disk, a signer that never returns).
    pub fn stalled(&self, max_age: std::time::Duration) -> bool {
        self.pending.load(Ordering::Acquire) > 0
            && now_ms().saturating_sub(self.waiting_since_ms.load(Ordering::Acquire))
                > max_age.as_millis() as u64
    }

    /// Why the writer stopped signing, if another process changed the journal under it.
    pub fn diverged(&self) -> Option<&str> {
        self.diverged.get().map(String::as_str)
    }

    /// Why signing stopped for a clock behind the journal's last record (set by a refused
    /// record, cleared by the next one written).
    pub fn clock_behind(&self) -> Option<String> {
        self.clock_behind
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn set_clock_behind(&self, why: Option<String>) {
        *self.clock_behind.lock().unwrap_or_else(|p| p.into_inner()) = why;
    }

    /// Bytes free for the journal on its file system, once measured.
    pub fn free_bytes(&self) -> Option<u64> {
        let free = self.free_bytes.load(Ordering::Relaxed);
        (self.filesystem_bytes.load(Ordering::Relaxed) > 0).then_some(free)
    }

    /// True when the journal's file system has less free space than [`LOW_FREE_BYTES`] or
    /// [`LOW_FREE_PERCENT`] of its size, whichever is more.
    pub fn storage_low(&self) -> bool {
        let size = self.filesystem_bytes.load(Ordering::Relaxed);
        size > 0
            && self.free_bytes.load(Ordering::Relaxed)
                < LOW_FREE_BYTES.max(size / 100 * LOW_FREE_PERCENT)
    }

    /// Records the free space of the file system holding `path` (statvfs: space available to
    /// unprivileged writers). Errors leave the last figures.
    pub(crate) fn measure_free_space(&self, path: &std::path::Path) {
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        if let Ok(fs) = rustix::fs::statvfs(dir.unwrap_or(std::path::Path::new("."))) {
            let unit = fs.f_frsize.max(1);
            self.free_bytes
                .store(fs.f_bavail.saturating_mul(unit), Ordering::Relaxed);
            self.filesystem_bytes
                .store(fs.f_blocks.saturating_mul(unit), Ordering::Relaxed);
        }
    }

    /// Storage use as a fraction, when a limit is set.
    pub fn usage(&self) -> Option<f64> {
        let max = self.pages_max.load(Ordering::Relaxed);
        (max > 0).then(|| self.pages_used.load(Ordering::Relaxed) as f64 / max as f64)
    }
}

/// The writer thread; it ends with why its final checkpoint left records in the WAL, if it did.
type WriterThread = std::thread::JoinHandle<Result<(), String>>;

/// A handle to the journal; cheap to clone. The writer stops when every handle is dropped.
#[derive(Clone)]
pub struct Journal {
    tx: flume::Sender<WriteRequest>,
    stats: Arc<JournalStats>,
    path: PathBuf,
    thread: Arc<std::sync::Mutex<Option<WriterThread>>>,
    /// Asks the writer to stop for every handle ([`Journal::shutdown`]).
    stop: flume::Sender<()>,
    signer: Arc<dyn Signer>,
    clock: Arc<dyn Clock>,
}

/// Why a clean stop did not leave the whole journal in its database file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShutdownError {
    /// The writer thread panicked.
    #[error("the journal writer thread panicked")]
    Panicked,
    /// The final checkpoint could not copy the whole WAL (a reader held it); the records are
    /// safe in `journal.sqlite-wal`, which SQLite replays on the next open.
    #[error("final checkpoint: {0}")]
    Checkpoint(String),
}

impl Journal {
    /// Opens or creates the journal and starts its writer thread.
    pub fn open(config: JournalConfig, signer: Arc<dyn Signer>) -> Result<Journal, OpenError> {
        let sqlite = |source| OpenError::Sqlite {
            path: config.path.display().to_string(),
            source,
        };
        let conn = store::open_for_writing(&config.path, config.max_bytes).map_err(sqlite)?;
        let heads = store::load_heads(&conn).map_err(sqlite)?;
        let stats = Arc::new(JournalStats::default());
        stats.last_seq.store(heads.last_seq, Ordering::Relaxed);
        if let Ok((used, max)) = store::page_usage(&conn)
            && config.max_bytes.is_some()
        {
            stats.pages_used.store(used, Ordering::Relaxed);
            stats.pages_max.store(max, Ordering::Relaxed);
        }
        let (tx, rx) = flume::bounded(config.queue.max(1));
        let (stop, stop_rx) = flume::bounded(1);
        let path = config.path.clone();
        let clock = config.clock.clone();
        let writer = writer::Writer::new(conn, heads, config, signer.clone(), stats.clone());
        let thread = std::thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || writer.run(rx, stop_rx))
            .map_err(OpenError::Thread)?;
        Ok(Journal {
            tx,
            stats,
            path,
            thread: Arc::new(std::sync::Mutex::new(Some(thread))),
            stop,
            signer,
            clock,
        })
    }

    /// Appends an entry; returns once it is durable (or why it was not written).
    pub async fn append(&self, entry: impl Into<Sealed>) -> Result<Appended, AppendError> {
        let (reply, answer) = flume::bounded(1);
        self.stats.request_sent();
        let (request, kept) = entry.into().into_request(reply);
        let result = match self.tx.send_async(request).await {
            Ok(()) => answer
                .recv_async()
                .await
                .unwrap_or(Err(AppendError::Closed)),
            Err(_) => Err(AppendError::Closed),
        };
        self.stats.answer_received();
        kept.complete(result)
    }

    /// Like [`Journal::append`], for threads outside an async runtime.
    pub fn append_blocking(&self, entry: impl Into<Sealed>) -> Result<Appended, AppendError> {
        let (reply, answer) = flume::bounded(1);
        self.stats.request_sent();
        let (request, kept) = entry.into().into_request(reply);
        let result = match self.tx.send(request) {
            Ok(()) => answer.recv().unwrap_or(Err(AppendError::Closed)),
            Err(_) => Err(AppendError::Closed),
        };
        self.stats.answer_received();
        kept.complete(result)
    }

    /// The stored answer to a register's request, if the journal has one (read-only lookup on
    /// its own connection, safe while the writer runs).
    pub fn find_request(
        &self,
        register: &str,
        request_id: &str,
    ) -> Result<Option<Appended>, AppendError> {
        let conn =
            store::open_read_only(&self.path).map_err(|e| AppendError::Storage(e.to_string()))?;
        let stored = store::find_request(&conn, register, request_id)
            .map_err(|e| AppendError::Storage(e.to_string()))?;
        stored
            .map(|s| writer::appended_from_stored(&s, ""))
            .transpose()
    }

    /// Writer statistics (shared, for status and metrics).
    pub fn stats_handle(&self) -> Arc<JournalStats> {
        self.stats.clone()
    }

    /// Writer statistics.
    pub fn stats(&self) -> &JournalStats {
        &self.stats
    }

    /// The signer the writer signs with.
    pub fn signer(&self) -> Arc<dyn Signer> {
        self.signer.clone()
    }

    /// The clock that times the records (the FDM time, so also the FDM date of "today").
    pub fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Drops this handle; if it was the last one, lets the writer finish what it has queued and
    /// waits for it to stop.
    pub fn close(self) {
        let Journal {
            tx, thread, stop, ..
        } = self;
        drop(tx);
        drop(stop);
        if Arc::strong_count(&thread) == 1 {
            let handle = thread.lock().ok().and_then(|mut t| t.take());
            if let Some(h) = handle {
                let _ = h.join();
            }
        }
    }

    /// Stops the writer for every handle, and waits for it: what is already queued is written
    /// and answered, the WAL is checkpointed into the database file (so that `journal.sqlite`
    /// alone holds every record) and the writer's connection is closed. Appends after this
    /// (through any handle) fail with [`AppendError::Closed`]. A clean stop of the daemon.
    pub fn shutdown(self) -> Result<(), ShutdownError> {
        let _ = self.stop.try_send(());
        let handle = self.thread.lock().ok().and_then(|mut t| t.take());
        match handle {
            // Another handle's shutdown already waited for it.
            None => Ok(()),
            Some(h) => match h.join() {
                Ok(result) => result.map_err(ShutdownError::Checkpoint),
                Err(_) => Err(ShutdownError::Panicked),
            },
        }
    }
}
