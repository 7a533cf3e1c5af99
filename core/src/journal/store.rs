//! The SQLite file: schema, append-only triggers, pragmas, and row access.

use super::record::RecordKind;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// Schema version stored in `PRAGMA user_version`.
pub const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS records (
    seq            INTEGER PRIMARY KEY,
    kind           TEXT    NOT NULL,
    canonical      BLOB    NOT NULL,
    prev_hash      BLOB    NOT NULL,
    hash           BLOB    NOT NULL,
    signature      BLOB    NOT NULL,
    signer_id      TEXT    NOT NULL,
    time           TEXT    NOT NULL,
    register_id    TEXT,
    request_id     TEXT,
    request_digest TEXT,
    label          TEXT,
    event_counter  INTEGER,
    total_counter  INTEGER,
    series         TEXT,
    series_number  INTEGER
) STRICT;
CREATE UNIQUE INDEX IF NOT EXISTS records_request ON records(register_id, request_id)
    WHERE request_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS records_label ON records(label, event_counter) WHERE label IS NOT NULL;
CREATE INDEX IF NOT EXISTS records_series ON records(series, series_number) WHERE series IS NOT NULL;
CREATE INDEX IF NOT EXISTS records_kind ON records(kind, seq);
CREATE TRIGGER IF NOT EXISTS records_no_update BEFORE UPDATE ON records
    BEGIN SELECT RAISE(ABORT, 'journal records are append-only: UPDATE refused'); END;
CREATE TRIGGER IF NOT EXISTS records_no_delete BEFORE DELETE ON records
    BEGIN SELECT RAISE(ABORT, 'journal records are append-only: DELETE refused'); END;
CREATE TRIGGER IF NOT EXISTS records_no_replace BEFORE INSERT ON records
    WHEN EXISTS (SELECT 1 FROM records WHERE seq = NEW.seq)
      OR (NEW.request_id IS NOT NULL AND EXISTS (SELECT 1 FROM records
            WHERE register_id = NEW.register_id AND request_id = NEW.request_id))
    BEGIN SELECT RAISE(ABORT, 'journal records are append-only: INSERT over an existing record refused'); END;
";

/// A record as stored, with the columns the writer indexes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    /// Sequence number.
    pub seq: u64,
    /// Kind name.
    pub kind: String,
    /// Canonical bytes (hashed and signed).
    pub canonical: Vec<u8>,
    /// Hash of the previous record (also inside `canonical`).
    pub prev_hash: Vec<u8>,
    /// SHA-256 of `canonical`.
    pub hash: Vec<u8>,
    /// Signature over `hash`.
    pub signature: Vec<u8>,
    /// Signer id (also inside `canonical`).
    pub signer_id: String,
    /// FDM time (also inside `canonical`).
    pub time: String,
    /// Index columns copied from the body, checked by the verifier.
    pub index: IndexColumns,
}

/// Columns copied from a record's body so the writer can look things up without parsing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexColumns {
    /// Register of a fiscal event.
    pub register_id: Option<String>,
    /// Request id (idempotency key).
    pub request_id: Option<String>,
    /// SHA-256 hex of the request's canonical content.
    pub request_digest: Option<String>,
    /// Event label.
    pub label: Option<String>,
    /// Counter of the label.
    pub event_counter: Option<u64>,
    /// Counter over all labels.
    pub total_counter: Option<u64>,
    /// Numbering series key.
    pub series: Option<String>,
    /// Number in the series.
    pub series_number: Option<u64>,
}

/// Opens (creating if needed) the journal for writing: WAL, `synchronous=FULL`, schema, triggers.
pub fn open_for_writing(path: &Path, max_bytes: Option<u64>) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "journal_mode is {mode}, WAL is required"
        )));
    }
    conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "journal schema version {version} is newer than this fdmd ({SCHEMA_VERSION})"
        )));
    }
    // Only a new file is written to here: opening an existing journal must work on a full disk
    // (to answer resends and to start at all), so nothing is written when the schema is current.
    if version != SCHEMA_VERSION {
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {SCHEMA} PRAGMA user_version={SCHEMA_VERSION}; COMMIT;"
        ))?;
    }
    if let Some(max) = max_bytes {
        let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        let pages = (max / page_size.max(1) as u64).max(16);
        conn.query_row(&format!("PRAGMA max_page_count={pages}"), [], |r| {
            r.get::<_, i64>(0)
        })?;
    }
    Ok(conn)
}

/// Opens the journal read-only (for verification and export while the daemon may run).
pub fn open_read_only(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

const INSERT: &str = "INSERT INTO records (seq, kind, canonical, prev_hash, hash, signature, signer_id, time,
    register_id, request_id, request_digest, label, event_counter, total_counter, series, series_number)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)";

const SELECT: &str = "SELECT seq, kind, canonical, prev_hash, hash, signature, signer_id, time,
    register_id, request_id, request_digest, label, event_counter, total_counter, series, series_number
    FROM records";

/// A record to insert, borrowed from whoever built it (the writer inserts without copying).
#[derive(Debug, Clone, Copy)]
pub struct NewRecord<'a> {
    /// Sequence number.
    pub seq: u64,
    /// Kind name.
    pub kind: &'a str,
    /// Canonical bytes (hashed and signed).
    pub canonical: &'a [u8],
    /// Hash of the previous record.
    pub prev_hash: &'a [u8],
    /// SHA-256 of `canonical`.
    pub hash: &'a [u8],
    /// Signature over `hash`.
    pub signature: &'a [u8],
    /// Signer id.
    pub signer_id: &'a str,
    /// FDM time.
    pub time: &'a str,
    /// Index columns.
    pub index: &'a IndexColumns,
}

/// Inserts one record.
pub fn insert(conn: &Connection, r: &StoredRecord) -> rusqlite::Result<()> {
    insert_new(
        conn,
        &NewRecord {
            seq: r.seq,
            kind: &r.kind,
            canonical: &r.canonical,
            prev_hash: &r.prev_hash,
            hash: &r.hash,
            signature: &r.signature,
            signer_id: &r.signer_id,
            time: &r.time,
            index: &r.index,
        },
    )
}

/// Inserts one record from borrowed parts.
pub fn insert_new(conn: &Connection, r: &NewRecord<'_>) -> rusqlite::Result<()> {
    let i = r.index;
    conn.prepare_cached(INSERT)?.execute(params![
        r.seq as i64,
        r.kind,
        r.canonical,
        r.prev_hash,
        r.hash,
        r.signature,
        r.signer_id,
        r.time,
        i.register_id,
        i.request_id,
        i.request_digest,
        i.label,
        i.event_counter.map(|v| v as i64),
        i.total_counter.map(|v| v as i64),
        i.series,
        i.series_number.map(|v| v as i64),
    ])?;
    Ok(())
}

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredRecord> {
    let opt_u64 = |i: usize| -> rusqlite::Result<Option<u64>> {
        Ok(row.get::<_, Option<i64>>(i)?.map(|v| v as u64))
    };
    Ok(StoredRecord {
        seq: row.get::<_, i64>(0)? as u64,
        kind: row.get(1)?,
        canonical: row.get(2)?,
        prev_hash: row.get(3)?,
        hash: row.get(4)?,
        signature: row.get(5)?,
        signer_id: row.get(6)?,
        time: row.get(7)?,
        index: IndexColumns {
            register_id: row.get(8)?,
            request_id: row.get(9)?,
            request_digest: row.get(10)?,
            label: row.get(11)?,
            event_counter: opt_u64(12)?,
            total_counter: opt_u64(13)?,
            series: row.get(14)?,
            series_number: opt_u64(15)?,
        },
    })
}

/// The record with sequence number `seq`.
pub fn record(conn: &Connection, seq: u64) -> rusqlite::Result<Option<StoredRecord>> {
    conn.prepare_cached(&format!("{SELECT} WHERE seq = ?1"))?
        .query_row([seq as i64], from_row)
        .optional()
}

/// The record a register's request produced, if any.
pub fn find_request(
    conn: &Connection,
    register: &str,
    request_id: &str,
) -> rusqlite::Result<Option<StoredRecord>> {
    conn.prepare_cached(&format!(
        "{SELECT} WHERE register_id = ?1 AND request_id = ?2"
    ))?
    .query_row(params![register, request_id], from_row)
    .optional()
}

/// Calls `f` for every record with `from <= seq <= to`, in order, stopping at `f`'s first error.
pub fn for_each_in_range<E: From<rusqlite::Error>>(
    conn: &Connection,
    from: u64,
    to: u64,
    mut f: impl FnMut(StoredRecord) -> Result<(), E>,
) -> Result<(), E> {
    let mut stmt = conn.prepare(&format!(
        "{SELECT} WHERE seq BETWEEN ?1 AND ?2 ORDER BY seq"
    ))?;
    let mut rows = stmt.query(params![from as i64, to.min(i64::MAX as u64) as i64])?;
    while let Some(row) = rows.next()? {
        f(from_row(row)?)?;
    }
    Ok(())
}

/// Records of the given kinds, in order (signer declarations are few).
pub fn records_of_kind(
    conn: &Connection,
    kinds: &[RecordKind],
) -> rusqlite::Result<Vec<StoredRecord>> {
    let mut out = Vec::new();
    for kind in kinds {
        let mut stmt = conn.prepare_cached(&format!("{SELECT} WHERE kind = ?1 ORDER BY seq"))?;
        let rows = stmt.query_map([kind.as_str()], from_row)?;
        for r in rows {
            out.push(r?);
        }
    }
    out.sort_by_key(|r| r.seq);
    Ok(out)
}

/// Where the chain and every counter stand, read from the records themselves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Heads {
    /// Sequence number of the last record (0 when empty).
    pub last_seq: u64,
    /// Hash of the last record (zeros when empty).
    pub last_hash: [u8; 32],
    /// Last total counter.
    pub total_counter: u64,
    /// Last event counter per label.
    pub event_counters: HashMap<String, u64>,
    /// Last number per numbering series.
    pub series: HashMap<String, u64>,
    /// Signer ids declared so far.
    pub signers: HashSet<String>,
}

/// Reads the heads with indexed queries (no full scan of the records).
pub fn load_heads(conn: &Connection) -> rusqlite::Result<Heads> {
    let mut heads = Heads::default();
    if let Some((seq, hash)) = conn
        .query_row(
            "SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)),
        )
        .optional()?
    {
        heads.last_seq = seq as u64;
        heads.last_hash = <[u8; 32]>::try_from(hash.as_slice()).map_err(|_| {
            rusqlite::Error::InvalidColumnType(1, "hash".into(), rusqlite::types::Type::Blob)
        })?;
    }
    heads.total_counter = conn
        .query_row(
            "SELECT total_counter FROM records WHERE total_counter IS NOT NULL ORDER BY seq DESC LIMIT 1",
            [],
            |r| r.get::<_, i64>(0),
        )
        .optional()?
        .unwrap_or(0) as u64;
    for label in crate::fiscal::Label::all() {
        let label = label.to_string();
        let last: Option<i64> = conn.query_row(
            "SELECT max(event_counter) FROM records WHERE label = ?1",
            [&label],
            |r| r.get(0),
        )?;
        if let Some(n) = last {
            heads.event_counters.insert(label, n as u64);
        }
    }
    // One index seek per series (a skip-scan of `records_series`), not a walk of the whole
    // index as GROUP BY does: start-up must not grow with the journal (0.61 s -> 0.04 s with
    // 1,000,001 records).
    let mut stmt = conn.prepare(
        "WITH RECURSIVE s(series) AS (
            SELECT min(series) FROM records WHERE series IS NOT NULL
            UNION ALL
            SELECT (SELECT min(series) FROM records WHERE series > s.series) FROM s
            WHERE s.series IS NOT NULL)
         SELECT series, (SELECT max(series_number) FROM records WHERE records.series = s.series)
         FROM s WHERE series IS NOT NULL",
    )?;
    for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
        let (series, n) = row?;
        heads.series.insert(series, n as u64);
    }
    let mut stmt = conn.prepare(
        "SELECT DISTINCT signer_id FROM records WHERE kind IN ('journal_open', 'signer_change')",
    )?;
    for row in stmt.query_map([], |r| r.get::<_, String>(0))? {
        heads.signers.insert(row?);
    }
    Ok(heads)
}

/// Pages used and the configured maximum, for the storage warning.
pub fn page_usage(conn: &Connection) -> rusqlite::Result<(u64, u64)> {
    let used: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    let max: i64 = conn.query_row("PRAGMA max_page_count", [], |r| r.get(0))?;
    Ok((used as u64, max as u64))
}
