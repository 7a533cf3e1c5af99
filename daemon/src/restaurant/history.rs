//! What the restaurant needs from the past, looked up on demand instead of held in memory:
//! refunds already given on a ticket (per line and per article), which record deducted a
//! deposit, the tickets of a settled catering event, and the shifts of any day.
//!
//! Small side tables (an index) name the journal records that matter for each key; a lookup
//! reads those records back from the journal ([`crate::journal::read::body_at`]) and computes
//! the answer from their bodies, checking each one really is about the key. The index is
//! derived data: it is filled as records are folded, emptied and refilled whenever the state
//! is rebuilt from the journal, and never trusted over the records it names. It lives in its
//! own SQLite file beside the journal (`restaurant-state.sqlite`), never in the journal file:
//! the journal's writer stays its only writer, and a journal on a full disk still opens.
//!
//! Without a journal (unit tests, [`super::Restaurant::new`]) the bodies of the indexed records
//! are kept in memory instead.

use super::catering::{Catering, Event};
use super::staff::{Shift, Work, work_event};
use crate::fiscal::order::{OrderLine, Reference};
use crate::fiscal::vat::VatLetter;
use crate::journal::read;
use crate::journal::record::RecordKind;
use rusqlite::{Connection, OptionalExtension, params};
use rust_decimal::Decimal;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::path::Path;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS refunds (register TEXT NOT NULL, request_id TEXT NOT NULL,
    seq INTEGER NOT NULL, PRIMARY KEY (register, request_id, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS deposit_uses (register TEXT NOT NULL, request_id TEXT NOT NULL,
    seq INTEGER NOT NULL, PRIMARY KEY (register, request_id, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS catering (event TEXT NOT NULL, seq INTEGER NOT NULL,
    PRIMARY KEY (event, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS shifts (start_seq INTEGER PRIMARY KEY, operator TEXT NOT NULL,
    start TEXT NOT NULL, end_seq INTEGER, end TEXT);
CREATE INDEX IF NOT EXISTS shifts_open ON shifts (operator) WHERE end_seq IS NULL;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB) WITHOUT ROWID;
";

/// Quantities and amounts already given back on one original ticket.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Refunded {
    /// Sum of the refunds' totals (positive).
    pub total: Decimal,
    /// Quantity given back per line index of the original (lines with `original_line`).
    pub lines: HashMap<usize, Decimal>,
    /// Quantity given back per article (description, VAT letter).
    pub articles: HashMap<(String, VatLetter), Decimal>,
}

enum Source {
    /// Read-only connection to the journal the index names records of.
    Journal(Connection),
    /// No journal: the bodies of the indexed records, kept as they are folded.
    Memory(HashMap<u64, TimeBody>),
}

/// A record's FDM time and body.
type TimeBody = (String, Map<String, Value>);

/// The index and where the records it names are read from.
pub struct History {
    index: Option<Connection>,
    source: Source,
    /// Why the index cannot be trusted (a write failed): lookups are refused until a rebuild.
    broken: Option<String>,
}

fn text<'a>(body: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    body.get(key).and_then(Value::as_str)
}

fn reference_in(v: &Value) -> Option<Reference> {
    Some(Reference {
        register: v.get("register")?.as_str()?.to_owned(),
        request_id: v.get("request_id")?.as_str()?.to_owned(),
    })
}

fn day(time: &str) -> &str {
    time.get(..10).unwrap_or(time)
}

impl History {
    /// No journal and no index file: bodies in memory (unit tests).
    pub fn in_memory() -> History {
        History {
            index: Connection::open_in_memory()
                .and_then(|c| c.execute_batch(SCHEMA).map(|()| c))
                .ok(),
            source: Source::Memory(HashMap::new()),
            broken: None,
        }
    }

    /// Nothing is indexed and every lookup finds nothing (a fold for reports, which only read
    /// the floor and who is clocked in).
    pub fn none() -> History {
        History {
            index: None,
            source: Source::Memory(HashMap::new()),
            broken: None,
        }
    }

    /// An index in memory over the journal at `journal` (offline readers such as `fdmctl`).
    pub fn over_journal(journal: &Path) -> rusqlite::Result<History> {
        let index = Connection::open_in_memory()?;
        index.execute_batch(SCHEMA)?;
        Ok(History {
            index: Some(index),
            source: Source::Journal(crate::journal::query::open_read_only(journal)?),
            broken: None,
        })
    }

    /// The index file `file` over the journal at `journal` (the daemon). A file that cannot be
    /// opened as an index is replaced.
    pub fn open(file: &Path, journal: &Path) -> rusqlite::Result<History> {
        let index = match open_index(file) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(file = %file.display(), error = %e, "restaurant index unreadable: starting a new one");
                for suffix in ["", "-wal", "-shm"] {
                    let mut p = file.as_os_str().to_owned();
                    p.push(suffix);
                    let _ = std::fs::remove_file(p);
                }
                open_index(file)?
            }
        };
        Ok(History {
            index: Some(index),
            source: Source::Journal(crate::journal::query::open_read_only(journal)?),
            broken: None,
        })
    }

    /// The read-only journal connection, when there is one.
    pub fn journal(&self) -> Option<&Connection> {
        match &self.source {
            Source::Journal(c) => Some(c),
            Source::Memory(_) => None,
        }
    }

    /// The index connection (for the snapshot, which is stored beside it).
    pub fn index(&self) -> Option<&Connection> {
        self.index.as_ref()
    }

    /// Empties the index (before a fold from the first record).
    pub fn clear(&mut self) -> rusqlite::Result<()> {
        if let Some(c) = &self.index {
            c.execute_batch(
                "DELETE FROM refunds; DELETE FROM deposit_uses; DELETE FROM catering;
                 DELETE FROM shifts; DELETE FROM meta;",
            )?;
        }
        if let Source::Memory(m) = &mut self.source {
            m.clear();
        }
        self.broken = None;
        Ok(())
    }

    /// Forgets what the index says about records after `seq` (before they are folded again
    /// from a snapshot taken at `seq`).
    pub fn forget_after(&self, seq: u64) -> rusqlite::Result<()> {
        if let Some(c) = &self.index {
            let s = seq as i64;
            c.execute("DELETE FROM refunds WHERE seq > ?1", [s])?;
            c.execute("DELETE FROM deposit_uses WHERE seq > ?1", [s])?;
            c.execute("DELETE FROM catering WHERE seq > ?1", [s])?;
            c.execute("DELETE FROM shifts WHERE start_seq > ?1", [s])?;
            c.execute(
                "UPDATE shifts SET end_seq = NULL, end = NULL WHERE end_seq > ?1",
                [s],
            )?;
        }
        Ok(())
    }

    /// Starts one transaction for many [`History::record`] calls (a fold).
    pub fn begin(&self) -> rusqlite::Result<()> {
        match &self.index {
            Some(c) => c.execute_batch("BEGIN"),
            None => Ok(()),
        }
    }

    /// Ends the transaction [`History::begin`] started.
    pub fn commit(&self) -> rusqlite::Result<()> {
        match &self.index {
            Some(c) if !c.is_autocommit() => c.execute_batch("COMMIT"),
            _ => Ok(()),
        }
    }

    /// Indexes a durable N or P fiscal event. A failed write marks the index broken (lookups
    /// are refused until the state is rebuilt at the next start).
    pub fn record(&mut self, seq: u64, time: &str, body: &Map<String, Value>) {
        let Some(c) = &self.index else {
            return;
        };
        let normal = text(body, "label").is_some_and(|l| l.starts_with('N'));
        let mut keep = false;
        let result = (|| -> rusqlite::Result<()> {
            if let Some(r) = body.get("refund_of").and_then(reference_in) {
                c.prepare_cached("INSERT OR IGNORE INTO refunds VALUES (?1, ?2, ?3)")?
                    .execute(params![r.register, r.request_id, seq as i64])?;
                keep = true;
            }
            if let Some(Value::Array(applied)) = body.get("deposits_applied") {
                for r in applied.iter().filter_map(reference_in) {
                    c.prepare_cached("INSERT OR IGNORE INTO deposit_uses VALUES (?1, ?2, ?3)")?
                        .execute(params![r.register, r.request_id, seq as i64])?;
                    keep = true;
                }
            }
            if normal && let Some(event) = text(body, "catering_event") {
                c.prepare_cached("INSERT OR IGNORE INTO catering VALUES (?1, ?2)")?
                    .execute(params![event, seq as i64])?;
                keep = true;
            }
            let operator = text(body, "operator").unwrap_or_default();
            match work_event(body) {
                Some(Work::In) => {
                    c.prepare_cached(
                        "INSERT OR REPLACE INTO shifts VALUES (?1, ?2, ?3, NULL, NULL)",
                    )?
                    .execute(params![seq as i64, operator, time])?;
                    keep = true;
                }
                Some(Work::Out) => {
                    c.prepare_cached(
                        "UPDATE shifts SET end_seq = ?1, end = ?2 WHERE start_seq = (SELECT max(start_seq)
                         FROM shifts WHERE operator = ?3 AND end_seq IS NULL AND start_seq < ?1)",
                    )?
                    .execute(params![seq as i64, time, operator])?;
                    keep = true;
                }
                None => {}
            }
            Ok(())
        })();
        if let Err(e) = result {
            tracing::error!(seq, error = %e, "restaurant index not written: refunds, deposits, catering and shifts are refused until fdmd restarts");
            self.broken = Some(e.to_string());
        }
        if keep && let Source::Memory(m) = &mut self.source {
            m.insert(seq, (time.to_owned(), body.clone()));
        }
    }

    /// True when a write to the index failed since it was last rebuilt.
    pub fn is_broken(&self) -> bool {
        self.broken.is_some()
    }

    fn usable(&self) -> Result<&Connection, String> {
        if let Some(reason) = &self.broken {
            return Err(format!("the restaurant index is not up to date ({reason})"));
        }
        self.index
            .as_ref()
            .ok_or_else(|| "no restaurant history in this mode".to_owned())
    }

    fn seqs(&self, sql: &str, a: &str, b: Option<&str>) -> Result<Vec<u64>, String> {
        let c = self.usable()?;
        let run = || -> rusqlite::Result<Vec<u64>> {
            let mut stmt = c.prepare_cached(sql)?;
            let args: Vec<&str> = std::iter::once(a).chain(b).collect();
            let rows = stmt.query_map(rusqlite::params_from_iter(args), |r| r.get::<_, i64>(0))?;
            rows.map(|r| r.map(|s| s as u64)).collect()
        };
        run().map_err(|e| e.to_string())
    }

    /// The FDM time and body of record `seq`, from the journal (or memory).
    fn body(&self, seq: u64) -> Result<Option<TimeBody>, String> {
        match &self.source {
            Source::Journal(c) => match read::body_at(c, seq) {
                Ok(Some((RecordKind::FiscalEvent, time, body))) => Ok(Some((time, body))),
                Ok(_) => Ok(None),
                Err(e) => Err(e.to_string()),
            },
            Source::Memory(m) => Ok(m.get(&seq).cloned()),
        }
    }

    /// What the refunds journaled so far gave back on the ticket `r`.
    pub fn refunded(&self, r: &Reference) -> Result<Refunded, String> {
        if self.index.is_none() {
            return Ok(Refunded::default());
        }
        let mut out = Refunded::default();
        for seq in self.seqs(
            "SELECT seq FROM refunds WHERE register = ?1 AND request_id = ?2 ORDER BY seq",
            &r.register,
            Some(&r.request_id),
        )? {
            let Some((_, body)) = self.body(seq)? else {
                continue;
            };
            // The index names the record; its body decides.
            if body.get("refund_of").and_then(reference_in).as_ref() != Some(r) {
                continue;
            }
            let total: Decimal = text(&body, "total")
                .and_then(|t| t.parse().ok())
                .unwrap_or_default();
            out.total -= total;
            if let Some(Value::Array(lines)) = body.get("lines") {
                for l in lines.iter().filter_map(OrderLine::from_journal) {
                    if let Some(k) = l.original_line {
                        *out.lines.entry(k).or_default() -= l.quantity;
                    }
                    *out.articles.entry((l.description, l.vat)).or_default() -= l.quantity;
                }
            }
        }
        Ok(out)
    }

    /// The record that deducted the deposit `r`, if one did.
    pub fn deposit_used_by(&self, r: &Reference) -> Result<Option<u64>, String> {
        if self.index.is_none() {
            return Ok(None);
        }
        for seq in self.seqs(
            "SELECT seq FROM deposit_uses WHERE register = ?1 AND request_id = ?2 ORDER BY seq",
            &r.register,
            Some(&r.request_id),
        )? {
            let Some((_, body)) = self.body(seq)? else {
                continue;
            };
            if let Some(Value::Array(applied)) = body.get("deposits_applied")
                && applied.iter().filter_map(reference_in).any(|d| &d == r)
            {
                return Ok(Some(seq));
            }
        }
        Ok(None)
    }

    /// The catering event `event` rebuilt from its tickets in the journal.
    pub fn catering_event(&self, event: &str) -> Result<Option<Event>, String> {
        if self.index.is_none() {
            return Ok(None);
        }
        let mut c = Catering::default();
        for seq in self.seqs(
            "SELECT seq FROM catering WHERE event = ?1 ORDER BY seq",
            event,
            None,
        )? {
            if let Some((time, body)) = self.body(seq)?
                && text(&body, "catering_event") == Some(event)
            {
                c.apply_fiscal(seq, &time, &body);
            }
        }
        Ok(c.get(event).cloned())
    }

    /// Every shift that overlaps `date` (`YYYY-MM-DD`, the local date of FDM times), by start.
    pub fn shifts_on(&self, date: &str) -> Result<Vec<Shift>, String> {
        if self.index.is_none() {
            return Ok(Vec::new());
        }
        let c = self.usable()?;
        let rows = (|| -> rusqlite::Result<Vec<(u64, String, Option<u64>)>> {
            let mut stmt = c.prepare_cached(
                "SELECT start_seq, operator, end_seq FROM shifts
                 WHERE substr(start, 1, 10) <= ?1 AND (end IS NULL OR substr(end, 1, 10) >= ?1)
                 ORDER BY start, start_seq",
            )?;
            let rows = stmt.query_map([date], |r| {
                Ok((
                    r.get::<_, i64>(0)? as u64,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<i64>>(2)?.map(|s| s as u64),
                ))
            })?;
            rows.collect()
        })()
        .map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        for (start_seq, operator, end_seq) in rows {
            let Some((start, body)) = self.body(start_seq)? else {
                continue;
            };
            if work_event(&body) != Some(Work::In)
                || text(&body, "operator") != Some(operator.as_str())
            {
                continue;
            }
            let end = match end_seq {
                Some(s) => match self.body(s)? {
                    Some((t, b))
                        if work_event(&b) == Some(Work::Out)
                            && text(&b, "operator") == Some(operator.as_str()) =>
                    {
                        Some((s, t))
                    }
                    _ => None,
                },
                None => None,
            };
            if day(&start) > date || end.as_ref().is_some_and(|(_, t)| day(t) < date) {
                continue;
            }
            out.push(Shift {
                operator,
                start,
                start_seq,
                end_seq: end.as_ref().map(|(s, _)| *s),
                end: end.map(|(_, t)| t),
            });
        }
        Ok(out)
    }

    /// A value stored beside the index (the snapshot).
    pub fn meta(&self, key: &str) -> rusqlite::Result<Option<Vec<u8>>> {
        match &self.index {
            Some(c) => c
                .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
                .query_row([key], |r| r.get(0))
                .optional(),
            None => Ok(None),
        }
    }

    /// Stores a value beside the index.
    pub fn set_meta(&self, key: &str, value: &[u8]) -> rusqlite::Result<()> {
        if let Some(c) = &self.index {
            c.prepare_cached("INSERT OR REPLACE INTO meta VALUES (?1, ?2)")?
                .execute(params![key, value])?;
        }
        Ok(())
    }
}

fn open_index(file: &Path) -> rusqlite::Result<Connection> {
    let c = Connection::open(file)?;
    c.busy_timeout(std::time::Duration::from_secs(5))?;
    // Derived data: WAL without a sync per commit; a torn file is rebuilt from the journal.
    c.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))?;
    c.execute_batch("PRAGMA synchronous=NORMAL;")?;
    c.execute_batch(SCHEMA)?;
    Ok(c)
}
