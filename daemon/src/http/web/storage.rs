//! `GET /ui/api/storage`: the journal's size and how long the storage lasts at this pace.
//!
//! The pace is estimated from what the daemon has cheaply: the records written over the last
//! [`WINDOW_DAYS`] days (the first record of the window is found by bisection on the sequence
//! numbers, [`query::first_seq_at_or_after_time`]: about 2·log2(records) primary-key seeks) times
//! the journal's mean bytes per record (file size over record count). Nothing is scanned, so
//! the cost does not grow with the journal's history. The room is the smaller of the free space
//! of the journal's file system and what `journal.max_size_mib` still allows.

use crate::journal::query;
use chrono::{DateTime, Duration};
use serde_json::{Value, json};
use std::path::Path;

/// How many days back the pace is measured.
pub const WINDOW_DAYS: i64 = 7;
/// The shortest span the pace is divided by: a journal a few minutes old does not project
/// its first minutes onto a whole day.
const MIN_SPAN_SECONDS: u64 = 86_400;

/// The journal's size and the storage forecast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forecast {
    /// Bytes of the journal on disk (database file and its write-ahead log).
    pub journal_bytes: u64,
    /// Records in the journal.
    pub records: u64,
    /// Records written since the start of the window (or the journal's first record).
    pub recent_records: u64,
    /// Seconds the recent records span (at least a day).
    pub span_seconds: u64,
    /// Estimated bytes written per day; `None` for an empty journal.
    pub bytes_per_day: Option<u64>,
    /// Bytes the journal may still grow: `None` when neither the free space nor a limit is
    /// known.
    pub room_bytes: Option<u64>,
    /// What bounds the room: `"disk"` or `"max_size"`.
    pub room_bound: Option<&'static str>,
    /// Whole days the room lasts at this pace; `None` when nothing is being written or the room
    /// is unknown.
    pub days_left: Option<u64>,
}

/// Bytes of the journal file and of its write-ahead log, if any.
pub fn journal_bytes(path: &Path) -> u64 {
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    size(path).saturating_add(size(Path::new(&wal)))
}

/// The forecast from the journal's figures. `now` is the FDM time; `free_bytes` the free space
/// of the journal's file system, `max_bytes` the configured limit, when known.
pub fn forecast(
    conn: &rusqlite::Connection,
    journal_bytes: u64,
    now: &str,
    free_bytes: Option<u64>,
    max_bytes: Option<u64>,
) -> rusqlite::Result<Forecast> {
    let (records, recent_records, span_seconds) = match query::seq_bounds(conn)? {
        None => (0, 0, MIN_SPAN_SECONDS),
        Some((first, last)) => {
            let records = last - first + 1;
            let now_time = DateTime::parse_from_rfc3339(now).ok();
            let window_start = now_time
                .map(|t| {
                    (t - Duration::days(WINDOW_DAYS))
                        .format("%Y-%m-%d")
                        .to_string()
                })
                .unwrap_or_default();
            let since = query::first_seq_at_or_after_time(conn, &window_start)?.unwrap_or(last);
            let since_time = query::time_at_or_after(conn, since)?
                .and_then(|(_, t)| DateTime::parse_from_rfc3339(&t).ok());
            let span = match (now_time, since_time) {
                (Some(n), Some(s)) => u64::try_from((n - s).num_seconds()).unwrap_or(0),
                _ => 0,
            };
            (records, last - since + 1, span.max(MIN_SPAN_SECONDS))
        }
    };
    Ok(project(
        journal_bytes,
        records,
        recent_records,
        span_seconds,
        free_bytes,
        max_bytes,
    ))
}

/// The arithmetic of [`forecast`], in whole bytes (128-bit intermediates: no overflow).
pub fn project(
    journal_bytes: u64,
    records: u64,
    recent_records: u64,
    span_seconds: u64,
    free_bytes: Option<u64>,
    max_bytes: Option<u64>,
) -> Forecast {
    let bytes_per_day = (records > 0).then(|| {
        let per_day = u128::from(recent_records) * u128::from(journal_bytes) * 86_400
            / (u128::from(records) * u128::from(span_seconds.max(1)));
        u64::try_from(per_day).unwrap_or(u64::MAX)
    });
    let by_limit = max_bytes.map(|m| m.saturating_sub(journal_bytes));
    let (room_bytes, room_bound) = match (free_bytes, by_limit) {
        (Some(f), Some(l)) if l < f => (Some(l), Some("max_size")),
        (Some(f), _) => (Some(f), Some("disk")),
        (None, Some(l)) => (Some(l), Some("max_size")),
        (None, None) => (None, None),
    };
    let days_left = match (room_bytes, bytes_per_day) {
        (Some(room), Some(per_day)) if per_day > 0 => Some(room / per_day),
        _ => None,
    };
    Forecast {
        journal_bytes,
        records,
        recent_records,
        span_seconds,
        bytes_per_day,
        room_bytes,
        room_bound,
        days_left,
    }
}

impl Forecast {
    /// The JSON answer (bytes as integers; `null` for what is unknown).
    pub fn to_json(&self) -> Value {
        json!({
            "journal_bytes": self.journal_bytes,
            "records": self.records,
            "recent_records": self.recent_records,
            "window_days": WINDOW_DAYS,
            "span_seconds": self.span_seconds,
            "bytes_per_day": self.bytes_per_day,
            "room_bytes": self.room_bytes,
            "room_bound": self.room_bound,
            "days_left": self.days_left,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_pace_is_the_recent_records_times_the_mean_record_size() {
        // 1,000 records in 10 MB: 10 kB each; 700 of them in the last 7 days: 100 a day,
        // 1 MB a day; 50 MB free: 50 days.
        let f = project(10_000_000, 1_000, 700, 7 * 86_400, Some(50_000_000), None);
        assert_eq!(f.bytes_per_day, Some(1_000_000));
        assert_eq!(f.room_bytes, Some(50_000_000));
        assert_eq!(f.room_bound, Some("disk"));
        assert_eq!(f.days_left, Some(50));
        // A limit below the free space bounds the room.
        let f = project(
            10_000_000,
            1_000,
            700,
            7 * 86_400,
            Some(50_000_000),
            Some(30_000_000),
        );
        assert_eq!(
            (f.room_bytes, f.room_bound, f.days_left),
            (Some(20_000_000), Some("max_size"), Some(20))
        );
        // Nothing known, nothing claimed.
        let f = project(0, 0, 0, 86_400, None, None);
        assert_eq!(
            (f.bytes_per_day, f.room_bytes, f.days_left),
            (None, None, None)
        );
        // Nothing written lately: no end in sight.
        let f = project(10_000_000, 1_000, 0, 7 * 86_400, Some(1), None);
        assert_eq!((f.bytes_per_day, f.days_left), (Some(0), None));
    }

    #[test]
    fn a_young_journal_is_measured_over_one_day() {
        use crate::journal::record::RecordKind;
        use crate::journal::{Entry, Journal, JournalConfig};
        use fdmd_core::signer::SoftwareSigner;
        use std::sync::Arc;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.sqlite");
        let signer = Arc::new(SoftwareSigner::from_seed([5; 32]));
        let journal = Journal::open(JournalConfig::new(&path, "DEVFDMD0001"), signer).unwrap();
        for i in 0..20 {
            let mut body = serde_json::Map::new();
            body.insert("n".into(), json!(i));
            journal
                .append_blocking(Entry::new(RecordKind::MoneyMovement, body))
                .unwrap();
        }
        journal.close();
        let conn = query::open_read_only(&path).unwrap();
        let bytes = journal_bytes(&path);
        assert!(bytes > 0);
        let now = crate::journal::format_time(chrono::Local::now().fixed_offset());
        let f = forecast(&conn, bytes, &now, Some(bytes * 10), None).unwrap();
        assert_eq!(f.records, 21, "journal_open and 20 entries");
        assert_eq!(f.recent_records, 21, "all of them written today");
        assert_eq!(f.span_seconds, 86_400, "a young journal counts as one day");
        assert_eq!(f.bytes_per_day, Some(bytes));
        assert_eq!(f.days_left, Some(10));
    }
}
