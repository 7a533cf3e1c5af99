//! Replication: fdmd copies its journal to the back office (`fdmd-backoffice`,
//! `docs/backoffice.md`) as it grows.
//!
//! One task of its own on the runtime: it reads the journal through read-only SQLite
//! connections on a thread at idle priority (`idle.rs`: orders first), builds segments in the export format of
//! `docs/journal-format.md` §9 with the core's own export code, and POSTs them. Orders never
//! wait for it: the writer does not know it exists, and a WAL reader never blocks the writer.
//!
//! The cursor (the last record the back office acknowledged) is kept in
//! `DATA_DIR/backoffice-cursor.json`, written atomically after each accepted segment, and
//! corrected from the back office's answer (`gap` names the next record it wants). After a
//! failure the task waits `retry_min_ms`, doubled at each failure up to `retry_max_ms`, each
//! wait drawn between half and all of it (jitter: boxes of a chain do not retry in step).
//! A refusal that is evidence (`fork`, `verification_failed`, …) stops sending until fdmd is
//! restarted: resending it would only pile up copies of the same evidence.

pub mod client;
pub mod config;
mod idle;

use crate::app::App;
use crate::journal::export::write_export;
use crate::journal::query;
use config::BackofficeSection;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// File name of the cursor in the data directory.
pub const CURSOR_FILE: &str = "backoffice-cursor.json";

/// Longest credential read (a back office credential is 64 hex characters).
const MAX_CREDENTIAL_BYTES: u64 = 4096;

/// What the status document says about the copy (`backoffice`).
#[derive(Debug, Default, Clone, Serialize)]
pub struct ReplicationState {
    /// Where segments go (never the credential).
    pub target: String,
    /// The establishment's id in the back office.
    pub establishment: String,
    /// The last record the back office acknowledged.
    pub last_sent_seq: u64,
    /// The journal's last record.
    pub journal_last_seq: u64,
    /// Records not copied yet.
    pub behind_records: u64,
    /// Age of the oldest record not copied yet, in seconds (0 when up to date).
    pub behind_seconds: u64,
    /// FDM time of the oldest record not copied yet.
    pub oldest_unsent_time: Option<String>,
    /// When a segment was last accepted (Unix ms).
    pub last_success_unix_ms: Option<u64>,
    /// The last failure, if the last attempt failed.
    pub last_error: Option<String>,
    /// When it happened (Unix ms).
    pub last_error_unix_ms: Option<u64>,
    /// Failures in a row.
    pub failures: u32,
    /// The back office refused a segment as evidence: nothing is sent until fdmd restarts.
    pub halted: bool,
    /// Segments accepted since start.
    pub segments_sent: u64,
    /// Records the back office newly stored since start.
    pub records_stored: u64,
}

/// Shared between the task and the status document.
#[derive(Debug, Default)]
pub struct ReplicationStatus(Mutex<ReplicationState>);

impl ReplicationStatus {
    fn update(&self, f: impl FnOnce(&mut ReplicationState)) {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// A copy of the state.
    pub fn get(&self) -> ReplicationState {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The `backoffice` member of the status document.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self.get()).unwrap_or(Value::Null)
    }
}

/// The cursor kept in the data directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    /// Where it was acknowledged.
    pub target: String,
    /// The last record acknowledged.
    pub last_seq: u64,
}

/// Reads the cursor; a missing, unreadable or other target's cursor starts from 0 (the back
/// office answers records it holds as `already_stored`, or `gap` with the record it wants).
pub fn load_cursor(data_dir: &Path, target: &str) -> u64 {
    std::fs::read(data_dir.join(CURSOR_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice::<Cursor>(&b).ok())
        .filter(|c| c.target == target)
        .map_or(0, |c| c.last_seq)
}

/// Writes the cursor atomically (temporary file, fsync, rename, fsync of the directory).
pub fn save_cursor(data_dir: &Path, target: &str, last_seq: u64) -> std::io::Result<()> {
    let cursor = Cursor {
        target: target.to_owned(),
        last_seq,
    };
    let bytes = serde_json::to_vec(&cursor).map_err(std::io::Error::other)?;
    crate::access::write_private_atomically(&data_dir.join(CURSOR_FILE), &bytes)
}

/// Reads the credential: the configured file, else the systemd credential. Never logged.
pub fn read_credential(section: &BackofficeSection) -> Result<String, String> {
    let path: PathBuf = match &section.credential_file {
        Some(p) => p.clone(),
        None => match std::env::var_os("CREDENTIALS_DIRECTORY") {
            Some(dir) => Path::new(&dir).join(config::SYSTEMD_CREDENTIAL),
            None => {
                return Err(
                    "no credential: set backoffice.credential_file or the systemd credential fdmd-backoffice"
                        .into(),
                );
            }
        },
    };
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(&path)
        .and_then(|f| f.take(MAX_CREDENTIAL_BYTES).read_to_string(&mut text))
        .map_err(|e| format!("credential {}: {e}", path.display()))?;
    let credential = text.trim();
    if credential.is_empty() || !credential.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "credential {}: empty or not one printable line",
            path.display()
        ));
    }
    Ok(credential.to_owned())
}

/// Exponential back-off with jitter.
#[derive(Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    /// From the first wait to the longest.
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max,
            failures: 0,
        }
    }

    /// The wait after one more failure: min × 2^(failures−1), at most max, drawn in [½, 1] of it.
    pub fn next_wait(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let exp = self.failures.saturating_sub(1).min(30);
        let full = self.min.saturating_mul(1u32 << exp).min(self.max);
        let mut byte = [0u8; 2];
        let r = getrandom::fill(&mut byte).map_or(u16::MAX, |()| u16::from_le_bytes(byte));
        full / 2 + full.mul_f64(f64::from(r) / f64::from(u16::MAX) / 2.0)
    }

    /// Failures in a row.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// After a success.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A segment read from the journal.
struct Segment {
    bytes: Vec<u8>,
    last_seq: u64,
}

/// Reads records `from..=to` as an export (on the copy's idle thread).
fn build_segment(journal: &Path, from: u64, to: u64) -> Result<Segment, String> {
    let conn = query::open_read_only(journal).map_err(|e| format!("journal: {e}"))?;
    let now = crate::journal::format_time(chrono::Local::now().fixed_offset());
    let mut bytes = Vec::new();
    let header = write_export(&conn, from, to, &now, &mut bytes).map_err(|e| e.to_string())?;
    Ok(Segment {
        bytes,
        last_seq: header.last_seq,
    })
}

/// The FDM time of a record, and its age in seconds.
fn record_age(journal: &Path, seq: u64) -> Option<(String, u64)> {
    let conn = query::open_read_only(journal).ok()?;
    let r = query::record(&conn, seq).ok()??;
    let v: Value = serde_json::from_slice(&r.canonical).ok()?;
    let time = v.get("time")?.as_str()?.to_owned();
    let t = chrono::DateTime::parse_from_rfc3339(&time).ok()?;
    let age = (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
        .num_seconds()
        .max(0) as u64;
    Some((time, age))
}

/// Starts the replication task when `[backoffice]` is enabled; its status goes into the
/// status document. Returns `None` when it is off.
pub fn spawn(app: &Arc<App>) -> Option<Arc<ReplicationStatus>> {
    let section = app.config.backoffice.clone();
    if !section.enabled {
        return None;
    }
    let status = Arc::new(ReplicationStatus::default());
    let task_status = status.clone();
    let app = app.clone();
    tokio::spawn(async move { run(app, section, task_status).await });
    Some(status)
}

/// What one attempt led to.
enum Step {
    /// Up to date: wait for new records.
    Idle,
    /// Progress: go on at once.
    Progress,
    /// A failure: wait (back-off), then retry.
    Failed(String),
    /// Refused as evidence: stop sending.
    Halt(String),
}

async fn run(app: Arc<App>, section: BackofficeSection, status: Arc<ReplicationStatus>) {
    let target = match client::Target::parse(&section.url, &section.establishment) {
        Ok(t) => t,
        Err(e) => {
            status.update(|s| s.last_error = Some(e.to_string()));
            return;
        }
    };
    let described = target.describe();
    let tls = if target.tls() {
        match client::tls_config(section.ca_file.as_deref()) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::error!("back office replication off: {e}");
                status.update(|s| {
                    s.target = described.clone();
                    s.last_error = Some(e.to_string());
                    s.halted = true;
                });
                return;
            }
        }
    } else {
        None
    };
    let data_dir = app.config.fdm.data_dir.clone();
    let journal_path = app.registrar.journal().path().to_path_buf();
    let mut cursor = load_cursor(&data_dir, &described);
    let mut segment_records = section.segment_records;
    status.update(|s| {
        s.target = described.clone();
        s.establishment = section.establishment.clone();
        s.last_sent_seq = cursor;
    });
    tracing::info!(
        "copying the journal to the back office {described} from record {}",
        cursor + 1
    );
    let mut backoff = Backoff::new(
        Duration::from_millis(section.retry_min_ms),
        Duration::from_millis(section.retry_max_ms),
    );
    let poll = Duration::from_millis(section.poll_ms);
    let timeout = Duration::from_millis(section.timeout_ms);
    loop {
        if app.shutdown.is_cancelled() {
            break;
        }
        let journal_last = app
            .registrar
            .journal()
            .stats()
            .last_seq
            .load(std::sync::atomic::Ordering::Relaxed);
        if cursor > journal_last {
            // The data directory was restored from an older copy with a newer cursor: send
            // what the journal holds now; the back office tells a fork from a resend.
            tracing::warn!(
                "back office cursor {cursor} is past the journal's last record {journal_last}"
            );
            cursor = journal_last;
        }
        let behind = journal_last - cursor;
        let age = if behind > 0 {
            let path = journal_path.clone();
            let seq = cursor + 1;
            tokio::task::spawn_blocking(move || record_age(&path, seq))
                .await
                .ok()
                .flatten()
        } else {
            None
        };
        status.update(|s| {
            s.journal_last_seq = journal_last;
            s.last_sent_seq = cursor;
            s.behind_records = behind;
            s.behind_seconds = age.as_ref().map_or(0, |a| a.1);
            s.oldest_unsent_time = age.map(|a| a.0);
        });
        let step = if behind == 0 {
            Step::Idle
        } else {
            attempt(
                &section,
                &target,
                tls.as_ref(),
                &journal_path,
                &data_dir,
                &described,
                &mut cursor,
                &mut segment_records,
                journal_last,
                timeout,
                &status,
            )
            .await
        };
        let wait = match step {
            Step::Idle => poll,
            Step::Progress => {
                backoff.reset();
                status.update(|s| {
                    s.failures = 0;
                    s.last_error = None;
                });
                continue;
            }
            Step::Failed(e) => {
                let wait = backoff.next_wait();
                tracing::warn!(
                    "back office: {e}; retrying in {} ms (failure {})",
                    wait.as_millis(),
                    backoff.failures()
                );
                let failures = backoff.failures();
                status.update(|s| {
                    s.last_error = Some(e);
                    s.last_error_unix_ms = Some(unix_ms());
                    s.failures = failures;
                });
                wait
            }
            Step::Halt(e) => {
                tracing::error!(
                    "back office refused a segment: {e}; nothing more is sent until fdmd restarts"
                );
                status.update(|s| {
                    s.last_error = Some(e);
                    s.last_error_unix_ms = Some(unix_ms());
                    s.halted = true;
                });
                app.shutdown.cancelled().await;
                break;
            }
        };
        tokio::select! {
            _ = app.shutdown.cancelled() => break,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn attempt(
    section: &BackofficeSection,
    target: &client::Target,
    tls: Option<&Arc<rustls::ClientConfig>>,
    journal_path: &Path,
    data_dir: &Path,
    described: &str,
    cursor: &mut u64,
    segment_records: &mut u64,
    journal_last: u64,
    timeout: Duration,
    status: &ReplicationStatus,
) -> Step {
    let credential = match read_credential(section) {
        Ok(c) => c,
        Err(e) => return Step::Failed(e),
    };
    let from = *cursor + 1;
    let to = journal_last.min(cursor.saturating_add(*segment_records));
    let path = journal_path.to_path_buf();
    let segment = match idle::run("fdmd-copy", move || build_segment(&path, from, to)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) | Err(e) => return Step::Failed(format!("reading records {from}..={to}: {e}")),
    };
    let sent_to = segment.last_seq;
    let answer = match client::post_segment(target, tls, &credential, segment.bytes, timeout).await
    {
        Ok(a) => a,
        Err(e) => return Step::Failed(format!("sending records {from}..={sent_to}: {e}")),
    };
    let code = answer
        .body
        .get("error")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let message = answer
        .body
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    match answer.status {
        200 => {
            let acknowledged = answer
                .body
                .get("last_seq")
                .and_then(Value::as_u64)
                .unwrap_or(sent_to);
            let stored = answer
                .body
                .get("stored")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            // The back office holds everything up to its last_seq, and at least this segment.
            *cursor = acknowledged.max(sent_to).min(journal_last);
            if let Err(e) = save_cursor(data_dir, described, *cursor) {
                tracing::warn!("back office cursor not saved: {e}");
            }
            *segment_records = section.segment_records;
            status.update(|s| {
                s.last_sent_seq = *cursor;
                s.segments_sent += 1;
                s.records_stored += stored;
                s.last_success_unix_ms = Some(unix_ms());
            });
            Step::Progress
        }
        409 if code == "gap" => match answer.body.get("next_seq").and_then(Value::as_u64) {
            Some(next) if next >= 1 && next <= from => {
                tracing::info!("back office wants records from {next}");
                *cursor = next - 1;
                Step::Progress
            }
            _ => Step::Failed(format!("gap answer without a usable next_seq: {message}")),
        },
        413 if *segment_records > 1 => {
            *segment_records = (*segment_records / 2).max(1);
            Step::Failed(format!(
                "segment too large; sending {} records at a time",
                segment_records
            ))
        }
        409 | 422 => Step::Halt(format!(
            "records {from}..={sent_to} refused ({} {code}): {message}",
            answer.status
        )),
        401 => Step::Failed("credential refused (401 unauthorized)".into()),
        s => Step::Failed(format!(
            "records {from}..={sent_to}: HTTP {s} {code} {message}"
        )),
    }
}

/// The `backoffice` member of the status document, when replication is on.
pub fn status_json(status: &Option<Arc<ReplicationStatus>>) -> Option<Value> {
    status.as_ref().map(|s| s.to_json())
}

/// What `fdmctl backoffice status` prints when fdmd is down: the cursor and the journal.
pub fn offline_summary(data_dir: &Path) -> Value {
    let cursor = std::fs::read(data_dir.join(CURSOR_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice::<Cursor>(&b).ok());
    json!({"cursor": cursor})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_limit() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000));
        let waits: Vec<Duration> = (0..8).map(|_| b.next_wait()).collect();
        let bounds = [100, 200, 400, 800, 1000, 1000, 1000, 1000];
        for (w, full) in waits.iter().zip(bounds) {
            let full = Duration::from_millis(full);
            assert!(
                *w >= full / 2 && *w <= full,
                "{w:?} not in [{:?}, {full:?}]",
                full / 2
            );
        }
        b.reset();
        assert!(b.next_wait() <= Duration::from_millis(100));
    }

    #[test]
    fn cursor_round_trip_and_other_target() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load_cursor(dir.path(), "http://a"), 0);
        save_cursor(dir.path(), "http://a", 42).unwrap();
        assert_eq!(load_cursor(dir.path(), "http://a"), 42);
        assert_eq!(load_cursor(dir.path(), "http://b"), 0);
    }

    #[test]
    fn credential_is_bounded_and_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cred");
        std::fs::write(&file, "abc123\n").unwrap();
        let mut s = BackofficeSection {
            credential_file: Some(file.clone()),
            ..Default::default()
        };
        assert_eq!(read_credential(&s).unwrap(), "abc123");
        std::fs::write(&file, "\n").unwrap();
        assert!(read_credential(&s).is_err());
        s.credential_file = Some(dir.path().join("missing"));
        let e = read_credential(&s).unwrap_err();
        assert!(e.contains("missing"), "{e}");
    }
}
