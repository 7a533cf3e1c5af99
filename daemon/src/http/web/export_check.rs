//! `GET /ui/api/export/check?from_date=…&to_date=…` (or `from_seq`/`to_seq`): fdmd makes the
//! same export `GET /v1/journal/export` gives for that query and verifies it with the core's
//! verifier (`journal::export::verify_export`, what `fdmctl verify FILE` runs), streaming it
//! from the writer to the verifier through a bounded pipe (memory does not grow with the
//! export). The
//! page shows the verdict next to the download link.
//!
//! The keys the signatures are checked with are those the box's own journal declares up to the
//! export's last record (`journal_open`, `signer_change`): the verdict says that the export is
//! intact and signed by this box's signers, not that those keys are the certified card's (an
//! inspector checks those with `fdmctl verify --key`).
//!
//! Bounded: one check at a time (429 otherwise) and at most [`MAX_RECORDS`] records (larger
//! ranges are refused with the advice to use `fdmctl verify`), so a check ends well within the
//! HTTP request time limit.

use crate::http::admin::ExportRange;
use crate::journal::export::{ExportError, declared_signers, verify_export, write_export};
use crate::journal::query;
use serde_json::{Value, json};
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// The most records one check in the page verifies.
pub const MAX_RECORDS: u64 = 200_000;

/// Why no verdict could be given.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// Reading the journal failed.
    #[error("journal: {0}")]
    Journal(#[from] rusqlite::Error),
    /// Making the export failed.
    #[error("{0}")]
    Export(String),
    /// No record in the range.
    #[error("no record in that range")]
    Empty,
    /// More records than a check in the page verifies.
    #[error(
        "{0} records: more than {MAX_RECORDS} to check in the page; download the export and run fdmctl verify FILE"
    )]
    TooMany(u64),
    /// Another check is running.
    #[error("another export is being checked; try again in a moment")]
    Busy,
    /// The pipe between writer and verifier could not be made.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The verdict on one export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every record verified.
    Ok {
        /// Records checked.
        records: u64,
        /// First and last sequence numbers.
        first_seq: Option<u64>,
        /// Last sequence number.
        last_seq: Option<u64>,
        /// Hash of the last record, hex.
        last_hash: Option<String>,
        /// Fiscal events among them.
        fiscal_events: u64,
        /// The signers whose signatures were checked.
        signers: Vec<String>,
    },
    /// The first problem the verifier found.
    Failed(String),
}

impl Verdict {
    /// The JSON answer.
    pub fn to_json(&self) -> Value {
        match self {
            Verdict::Ok {
                records,
                first_seq,
                last_seq,
                last_hash,
                fiscal_events,
                signers,
            } => json!({
                "ok": true, "records": records, "first_seq": first_seq, "last_seq": last_seq,
                "last_hash": last_hash, "fiscal_events": fiscal_events, "signers": signers,
                "chain": "ok", "signatures": "ok",
            }),
            Verdict::Failed(problem) => json!({"ok": false, "error": problem}),
        }
    }
}

/// Verifies an export read from `input` with `keys`.
pub fn verdict_of(input: impl std::io::BufRead, keys: Vec<Vec<u8>>) -> Verdict {
    match verify_export(input, keys) {
        Ok((_, s)) if s.unanchored_keys.is_empty() => Verdict::Ok {
            records: s.records,
            first_seq: s.first_seq,
            last_seq: s.last_seq,
            last_hash: s.last_hash,
            fiscal_events: s.fiscal_events,
            signers: s.signers.into_iter().map(|d| d.id).collect(),
        },
        Ok((_, s)) => Verdict::Failed(format!(
            "{} signer key(s) are declared only by the export's header",
            s.unanchored_keys.len()
        )),
        Err(e) => Verdict::Failed(e.to_string()),
    }
}

static RUNNING: AtomicBool = AtomicBool::new(false);

struct Running;

impl Drop for Running {
    fn drop(&mut self) {
        RUNNING.store(false, Ordering::Release);
    }
}

/// Makes the export of `range` from the journal at `path` and verifies it (blocking: call it
/// off the async threads).
pub fn check(path: &Path, range: ExportRange, now: &str) -> Result<Verdict, CheckError> {
    if RUNNING.swap(true, Ordering::AcqRel) {
        return Err(CheckError::Busy);
    }
    let _running = Running;
    let conn = query::open_read_only(path)?;
    let (from, to) = range.resolve(&conn)?.ok_or(CheckError::Empty)?;
    let last = query::last_seq(&conn)?;
    let (from, to) = (from.max(1), to.min(last));
    if from > to {
        return Err(CheckError::Empty);
    }
    let count = to - from + 1;
    if count > MAX_RECORDS {
        return Err(CheckError::TooMany(count));
    }
    let keys = declared_signers(&conn, to)
        .map_err(|e| CheckError::Export(e.to_string()))?
        .into_iter()
        .filter_map(|s| hex::decode(s.public_key).ok())
        .collect::<Vec<_>>();
    drop(conn);
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(PIPE_CHUNKS);
    let writer_path: PathBuf = path.to_path_buf();
    let now = now.to_owned();
    let producer = std::thread::Builder::new()
        .name("web-export-check".into())
        .spawn(move || -> Result<(), ExportError> {
            let conn = query::open_read_only(&writer_path)?;
            let mut out = ChunkWriter {
                tx,
                buf: Vec::new(),
            };
            write_export(&conn, from, to, &now, &mut out)?;
            out.flush()?;
            Ok(())
        })?;
    let verdict = verdict_of(
        BufReader::new(ChunkReader {
            rx,
            chunk: Vec::new(),
            at: 0,
        }),
        keys,
    );
    let produced = producer
        .join()
        .map_err(|_| CheckError::Export("the export writer panicked".into()))?;
    match produced {
        Ok(()) => Ok(verdict),
        // The verifier stopped reading at the first problem and the writer then found the pipe
        // closed: the verdict is the verifier's.
        Err(ExportError::Io(e))
            if e.kind() == std::io::ErrorKind::BrokenPipe
                && matches!(verdict, Verdict::Failed(_)) =>
        {
            Ok(verdict)
        }
        Err(e) => Err(CheckError::Export(e.to_string())),
    }
}

/// Chunks in flight between the export's writer and the verifier (of [`CHUNK_BYTES`] each).
const PIPE_CHUNKS: usize = 4;
/// Bytes the writer gathers before handing them over.
const CHUNK_BYTES: usize = 64 * 1024;

/// The writing end of the pipe: chunks over a bounded channel.
struct ChunkWriter {
    tx: std::sync::mpsc::SyncSender<Vec<u8>>,
    buf: Vec<u8>,
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK_BYTES {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.tx
            .send(std::mem::take(&mut self.buf))
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))
    }
}

/// The reading end: the end of the export when the writer is gone.
struct ChunkReader {
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    at: usize,
}

impl std::io::Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.at >= self.chunk.len() {
            match self.rx.recv() {
                Ok(next) => {
                    self.chunk = next;
                    self.at = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.chunk.len() - self.at);
        out[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::journal::record::RecordKind;
    use crate::journal::{Entry, Journal, JournalConfig};
    use fdmd_core::signer::SoftwareSigner;
    use std::sync::Arc;

    fn journal(dir: &Path) -> PathBuf {
        let path = dir.join("journal.sqlite");
        let signer = Arc::new(SoftwareSigner::from_seed([7; 32]));
        let journal = Journal::open(JournalConfig::new(&path, "DEVFDMD0001"), signer).unwrap();
        for i in 0..10 {
            let mut body = serde_json::Map::new();
            body.insert("n".into(), json!(i));
            journal
                .append_blocking(Entry::new(RecordKind::MoneyMovement, body))
                .unwrap();
        }
        journal.close();
        path
    }

    #[test]
    fn a_date_range_verifies_and_a_tampered_export_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = journal(dir.path());
        let now = crate::journal::format_time(chrono::Local::now().fixed_offset());
        let today = chrono::NaiveDate::parse_from_str(&now[..10], "%Y-%m-%d").unwrap();
        let verdict = check(&path, ExportRange::Dates(today, today), &now).unwrap();
        match &verdict {
            Verdict::Ok {
                records,
                first_seq,
                last_seq,
                ..
            } => assert_eq!((*records, *first_seq, *last_seq), (11, Some(1), Some(11))),
            Verdict::Failed(e) => panic!("{e}"),
        }
        // A slice verifies too, with the box's own keys.
        let slice = check(&path, ExportRange::Seq(4, 6), &now).unwrap();
        assert!(matches!(slice, Verdict::Ok { records: 3, .. }), "{slice:?}");
        let yesterday = today.pred_opt().unwrap();
        assert!(matches!(
            check(&path, ExportRange::Dates(yesterday, yesterday), &now),
            Err(CheckError::Empty)
        ));

        // One changed amount in a record: the verdict names the problem.
        let conn = query::open_read_only(&path).unwrap();
        let mut export = Vec::new();
        write_export(&conn, 1, u64::MAX, &now, &mut export).unwrap();
        let text = String::from_utf8(export).unwrap();
        let tampered = text.replacen(r#"\"n\":3"#, r#"\"n\":4"#, 1);
        assert_ne!(tampered, text);
        let keys = Vec::new();
        match verdict_of(tampered.as_bytes(), keys) {
            Verdict::Failed(e) => assert!(e.contains('5') || e.contains("record"), "{e}"),
            ok => panic!("a tampered export verified: {ok:?}"),
        }
    }
}
