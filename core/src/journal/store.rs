//! The SQLite file: schema, append-only triggers, pragmas, and row access.

mod packing;

pub use packing::{Packer, UnpackError};

use super::record::RecordKind;
use packing::Unpacker;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// Schema version of the journals this build creates, stored in `PRAGMA user_version`.
pub const SCHEMA_VERSION: i64 = 2;

/// How a journal file stores its records. A journal keeps the layout it was created with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Schema version 1 (journals made before schema 2): the canonical bytes as they are, with
    /// `prev_hash`, `signer_id`, `request_digest` and the kind's name in columns of their own.
    V1,
    /// Schema version 2: the canonical bytes zstd-compressed with a dictionary kept in the file;
    /// what the canonical bytes already say is not stored again, except what is searched on
    /// (ADR 0003, docs/journal-format.md §8).
    V2,
}

impl Layout {
    /// The `PRAGMA user_version` of this layout.
    pub fn version(self) -> i64 {
        match self {
            Layout::V1 => 1,
            Layout::V2 => 2,
        }
    }
}

/// The layout of an open journal.
pub fn layout(conn: &Connection) -> rusqlite::Result<Layout> {
    let version: i64 = conn
        .prepare_cached("PRAGMA user_version")?
        .query_row([], |r| r.get(0))?;
    match version {
        1 => Ok(Layout::V1),
        2 => Ok(Layout::V2),
        v => Err(rusqlite::Error::InvalidParameterName(format!(
            "journal schema version {v} is not one this fdmd reads (1 or {SCHEMA_VERSION})"
        ))),
    }
}

const SCHEMA_V1: &str = "
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
";

/// Schema 2. Small columns first (SQLite reads a row's columns in order), the compressed
/// canonical bytes last. `kind_code` is [`kind_code`]; fiscal events, nearly every record, are
/// left out of the kind index. Column names differ from schema 1 wherever the content does
/// (`kind_code`, `packed`), so that a query written for schema 1 fails instead of reading
/// something else.
const SCHEMA_V2: &str = "
CREATE TABLE IF NOT EXISTS records (
    seq            INTEGER PRIMARY KEY,
    kind_code      INTEGER NOT NULL,
    time           TEXT    NOT NULL,
    hash           BLOB    NOT NULL,
    register_id    TEXT,
    request_id     TEXT,
    label          TEXT,
    event_counter  INTEGER,
    total_counter  INTEGER,
    series         TEXT,
    series_number  INTEGER,
    signature      BLOB    NOT NULL,
    dictionary     INTEGER NOT NULL,
    packed         BLOB    NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS dictionaries (
    id             INTEGER PRIMARY KEY,
    bytes          BLOB    NOT NULL
) STRICT;
CREATE UNIQUE INDEX IF NOT EXISTS records_request ON records(register_id, request_id)
    WHERE request_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS records_label ON records(label, event_counter) WHERE label IS NOT NULL;
CREATE INDEX IF NOT EXISTS records_series ON records(series, series_number) WHERE series IS NOT NULL;
CREATE INDEX IF NOT EXISTS records_kind ON records(kind_code) WHERE kind_code <> 2;
CREATE TRIGGER IF NOT EXISTS dictionaries_no_update BEFORE UPDATE ON dictionaries
    BEGIN SELECT RAISE(ABORT, 'journal dictionaries are append-only: UPDATE refused'); END;
CREATE TRIGGER IF NOT EXISTS dictionaries_no_delete BEFORE DELETE ON dictionaries
    BEGIN SELECT RAISE(ABORT, 'journal dictionaries are append-only: DELETE refused'); END;
CREATE TRIGGER IF NOT EXISTS dictionaries_no_replace BEFORE INSERT ON dictionaries
    WHEN EXISTS (SELECT 1 FROM dictionaries WHERE id = NEW.id)
    BEGIN SELECT RAISE(ABORT, 'journal dictionaries are append-only: INSERT over an existing dictionary refused'); END;
";

/// The append-only triggers a journal file of this layout must have, as SQLite keeps their text
/// (`sqlite_master.sql`: the statement without `IF NOT EXISTS` and the final `;`).
fn expected_triggers(layout: Layout) -> Vec<(String, String)> {
    let mut sources = vec![RECORD_TRIGGERS];
    if layout == Layout::V2 {
        sources.push(SCHEMA_V2);
    }
    sources
        .into_iter()
        .flat_map(|text| text.split("CREATE TRIGGER IF NOT EXISTS ").skip(1))
        .map(|chunk| {
            let chunk = chunk.trim_end().trim_end_matches(';');
            let name = chunk.split_whitespace().next().unwrap_or("").to_owned();
            (name, format!("CREATE TRIGGER {chunk}"))
        })
        .collect()
}

/// The first append-only trigger of the journal file that is missing or not the one fdmd
/// creates (someone dropped or replaced it to change records in place), or `None`.
pub fn trigger_problem(conn: &Connection) -> rusqlite::Result<Option<String>> {
    let layout = layout(conn)?;
    let mut stmt =
        conn.prepare("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = ?1")?;
    for (name, sql) in expected_triggers(layout) {
        let found: Option<Option<String>> = stmt
            .query_row([&name], |row| row.get::<_, Option<String>>(0))
            .optional()?;
        match found {
            None => {
                return Ok(Some(format!(
                    "the append-only trigger {name} is missing: the records can be changed in place (the file was altered outside fdmd)"
                )));
            }
            Some(found) if found.as_deref() != Some(sql.as_str()) => {
                return Ok(Some(format!(
                    "the append-only trigger {name} is not the one fdmd creates: the file was altered outside fdmd"
                )));
            }
            Some(_) => {}
        }
    }
    Ok(None)
}

/// The unique index on `(register_id, request_id)` as SQLite keeps its text (the same in both
/// layouts).
fn expected_request_index() -> String {
    SCHEMA_V2
        .split("CREATE UNIQUE INDEX IF NOT EXISTS records_request ")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .map(|chunk| format!("CREATE UNIQUE INDEX records_request {}", chunk.trim_end()))
        .unwrap_or_default()
}

/// A problem with the journal file's UNIQUE index `records_request` on `(register_id,
/// request_id)` (missing, or not the one fdmd creates), or `None`. `fdmctl verify --data-dir`
/// relies on it for "a register uses a request_id once" instead of keeping every request seen.
pub fn request_index_problem(conn: &Connection) -> rusqlite::Result<Option<String>> {
    let found: Option<Option<String>> = conn
        .query_row(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = 'records_request'",
            [],
            |row| row.get::<_, Option<String>>(0),
        )
        .optional()?;
    Ok(match found {
        None => Some(
            "the unique index records_request is missing: a register's request_id can be used twice (the file was altered outside fdmd)".to_owned(),
        ),
        Some(sql) if sql.as_deref() != Some(expected_request_index().as_str()) => Some(
            "the unique index records_request is not the one fdmd creates (UNIQUE on register_id, request_id): the file was altered outside fdmd".to_owned(),
        ),
        Some(_) => None,
    })
}

/// The append-only triggers on `records`, the same in both layouts.
const RECORD_TRIGGERS: &str = "
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

/// The code stored for a kind in schema 2 (fixed forever: never renumber).
pub fn kind_code(kind: RecordKind) -> i64 {
    match kind {
        RecordKind::JournalOpen => 1,
        RecordKind::FiscalEvent => 2,
        RecordKind::Report => 3,
        RecordKind::DeviceChange => 4,
        RecordKind::ConfigChange => 5,
        RecordKind::SignerChange => 6,
        RecordKind::DaemonStart => 7,
        RecordKind::DaemonStop => 8,
        RecordKind::TableChange => 9,
        RecordKind::MoneyMovement => 10,
    }
}

fn kind_of_code(code: i64) -> Option<RecordKind> {
    RecordKind::ALL.into_iter().find(|k| kind_code(*k) == code)
}

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
/// A new journal gets the current layout ([`Layout::V2`]); an existing one keeps its own.
pub fn open_for_writing(path: &Path, max_bytes: Option<u64>) -> rusqlite::Result<Connection> {
    open_for_writing_as(path, max_bytes, Layout::V2)
}

/// Like [`open_for_writing`], creating a new journal with `new_layout` (an existing journal
/// keeps its own). Schema 1 is still written to journals made with it; creating one new is for
/// tests of that layout.
pub fn open_for_writing_as(
    path: &Path,
    max_bytes: Option<u64>,
    new_layout: Layout,
) -> rusqlite::Result<Connection> {
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
    // Only a new file is written to here: opening an existing journal must work on a full disk
    // (to answer resends and to start at all), so nothing is written to a journal that has a
    // schema. Version 0 is a file without one (SQLite's default).
    if version == 0 {
        create(&conn, new_layout)?;
    } else {
        layout(&conn)?;
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

/// Creates the schema of `layout` in an empty file, in one transaction.
fn create(conn: &Connection, layout: Layout) -> rusqlite::Result<()> {
    let schema = match layout {
        Layout::V1 => SCHEMA_V1,
        Layout::V2 => SCHEMA_V2,
    };
    conn.execute_batch(&format!("BEGIN IMMEDIATE; {schema} {RECORD_TRIGGERS}"))?;
    let filled = (|| {
        if layout == Layout::V2 {
            conn.execute(
                "INSERT INTO dictionaries (id, bytes) VALUES (?1, ?2)",
                params![packing::FIRST_DICTIONARY_ID, packing::FIRST_DICTIONARY],
            )?;
        }
        conn.execute_batch(&format!(
            "PRAGMA user_version={}; COMMIT;",
            layout.version()
        ))
    })();
    if filled.is_err() && !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    filled
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

const INSERT_V1: &str = "INSERT INTO records (seq, kind, canonical, prev_hash, hash, signature, signer_id, time,
    register_id, request_id, request_digest, label, event_counter, total_counter, series, series_number)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)";

const INSERT_V2: &str = "INSERT INTO records (seq, kind_code, time, hash, register_id, request_id,
    label, event_counter, total_counter, series, series_number, signature, dictionary, packed)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)";

/// The columns of a schema 1 record (a macro, so the lookups below are literals too).
macro_rules! select_v1 {
    () => {
        "SELECT seq, kind, canonical, prev_hash, hash, signature, signer_id, time,
    register_id, request_id, request_digest, label, event_counter, total_counter, series, series_number
    FROM records"
    };
}

/// The columns of a schema 2 record.
macro_rules! select_v2 {
    () => {
        "SELECT seq, kind_code, time, hash, register_id, request_id, label,
    event_counter, total_counter, series, series_number, signature, dictionary, packed
    FROM records"
    };
}

const SELECT_V1: &str = select_v1!();

const SELECT_V2: &str = select_v2!();

/// A register's request (the writer's idempotency lookup, once per record).
const FIND_REQUEST_V1: &str = concat!(select_v1!(), " WHERE register_id = ?1 AND request_id = ?2");
const FIND_REQUEST_V2: &str = concat!(select_v2!(), " WHERE register_id = ?1 AND request_id = ?2");

fn select(layout: Layout) -> &'static str {
    match layout {
        Layout::V1 => SELECT_V1,
        Layout::V2 => SELECT_V2,
    }
}

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
#[cfg_attr(not(feature = "raw-store"), allow(dead_code))] // tamper tests
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

/// Inserts one record from borrowed parts, in the journal's layout. (The writer keeps a
/// [`Writing`] instead, which compresses without loading the dictionary for every record.)
pub fn insert_new(conn: &Connection, r: &NewRecord<'_>) -> rusqlite::Result<()> {
    Writing::for_journal(conn)?.insert(conn, r)
}

/// Inserts records in one journal's layout, with what that takes kept from one record to the
/// next (for schema 2, the compressor and its dictionary).
#[derive(Debug)]
pub struct Writing {
    packer: Option<Packer>,
}

impl Writing {
    /// For the journal open on `conn`.
    pub fn for_journal(conn: &Connection) -> rusqlite::Result<Writing> {
        Ok(Writing {
            packer: match layout(conn)? {
                Layout::V1 => None,
                Layout::V2 => Some(Packer::for_journal(conn)?),
            },
        })
    }

    /// The layout records are written in.
    #[cfg_attr(not(feature = "raw-store"), allow(dead_code))] // tamper tests
    pub fn layout(&self) -> Layout {
        if self.packer.is_some() {
            Layout::V2
        } else {
            Layout::V1
        }
    }

    /// Inserts one record.
    pub fn insert(&mut self, conn: &Connection, r: &NewRecord<'_>) -> rusqlite::Result<()> {
        let i = r.index;
        let Some(packer) = self.packer.as_mut() else {
            conn.prepare_cached(INSERT_V1)?.execute(params![
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
            return Ok(());
        };
        let kind = RecordKind::parse(r.kind).ok_or_else(|| {
            rusqlite::Error::InvalidParameterName(format!("unknown record kind {:?}", r.kind))
        })?;
        let packed = packer.pack(r.canonical)?;
        conn.prepare_cached(INSERT_V2)?.execute(params![
            r.seq as i64,
            kind_code(kind),
            r.time,
            r.hash,
            i.register_id,
            i.request_id,
            i.label,
            i.event_counter.map(|v| v as i64),
            i.total_counter.map(|v| v as i64),
            i.series,
            i.series_number.map(|v| v as i64),
            r.signature,
            packer.dictionary(),
            packed,
        ])?;
        Ok(())
    }
}

/// The stored form of `canonical` in the journal open on `conn`: the bytes themselves in
/// schema 1, with the id of the dictionary they are compressed with in schema 2 (for tools and
/// tests that edit a journal below this module).
#[cfg_attr(not(feature = "raw-store"), allow(dead_code))] // tamper tests
pub fn stored_form(
    conn: &Connection,
    canonical: &[u8],
) -> rusqlite::Result<(Option<i64>, Vec<u8>)> {
    match layout(conn)? {
        Layout::V1 => Ok((None, canonical.to_vec())),
        Layout::V2 => {
            let mut packer = Packer::for_journal(conn)?;
            Ok((Some(packer.dictionary()), packer.pack(canonical)?))
        }
    }
}

/// A record whose stored bytes cannot be turned back into its canonical bytes (schema 2: the
/// compressed frame or its dictionary was damaged or changed). Carried inside the
/// `rusqlite::Error` the read functions return; see [`unreadable_record`].
#[derive(Debug, thiserror::Error)]
#[error("record {seq}: {problem}")]
pub struct UnreadableRecord {
    /// The record.
    pub seq: u64,
    /// What is wrong with it.
    pub problem: UnpackError,
}

/// The unreadable record behind a read error, if that is what it is (so that a verifier can
/// name the record instead of failing as a whole).
pub fn unreadable_record(e: &rusqlite::Error) -> Option<&UnreadableRecord> {
    match e {
        rusqlite::Error::FromSqlConversionFailure(_, _, inner) => inner.downcast_ref(),
        _ => None,
    }
}

fn from_row_v1(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredRecord> {
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

/// The members of the canonical bytes that schema 1 kept in columns too.
#[derive(serde::Deserialize, Default)]
struct Envelope {
    #[serde(default)]
    prev_hash: String,
    #[serde(default)]
    signer_id: String,
    #[serde(default)]
    body: EnvelopeBody,
}

#[derive(serde::Deserialize, Default)]
struct EnvelopeBody {
    request_digest: Option<String>,
}

fn from_row_v2(
    conn: &Connection,
    unpacker: &mut Unpacker,
    row: &rusqlite::Row<'_>,
) -> rusqlite::Result<StoredRecord> {
    let opt_u64 = |i: usize| -> rusqlite::Result<Option<u64>> {
        Ok(row.get::<_, Option<i64>>(i)?.map(|v| v as u64))
    };
    let seq = row.get::<_, i64>(0)? as u64;
    let code: i64 = row.get(1)?;
    let dictionary: i64 = row.get(12)?;
    let packed = row.get_ref(13)?.as_blob()?;
    let canonical = unpacker
        .unpack(conn, dictionary, packed)?
        .map_err(|problem| {
            rusqlite::Error::FromSqlConversionFailure(
                13,
                rusqlite::types::Type::Blob,
                Box::new(UnreadableRecord { seq, problem }),
            )
        })?;
    // What schema 1 stored beside the canonical bytes is read from them. Bytes that do not
    // parse give empty values: the verifier refuses such a record anyway (its hash, or its
    // JSON), and nothing else trusts these values more than the canonical bytes.
    let envelope: Envelope = serde_json::from_slice(&canonical).unwrap_or_default();
    let request_id: Option<String> = row.get(5)?;
    Ok(StoredRecord {
        seq,
        kind: kind_of_code(code)
            .map_or_else(|| format!("kind code {code}"), |k| k.as_str().to_owned()),
        prev_hash: hex::decode(&envelope.prev_hash).unwrap_or_default(),
        hash: row.get(3)?,
        signature: row.get(11)?,
        signer_id: envelope.signer_id,
        time: row.get(2)?,
        index: IndexColumns {
            register_id: row.get(4)?,
            // As schema 1 stored it: with the request key, from the body.
            request_digest: request_id.as_ref().and(envelope.body.request_digest),
            request_id,
            label: row.get(6)?,
            event_counter: opt_u64(7)?,
            total_counter: opt_u64(8)?,
            series: row.get(9)?,
            series_number: opt_u64(10)?,
        },
        canonical,
    })
}

/// Reads records from rows of [`select`] in either layout.
struct Reader<'c> {
    conn: &'c Connection,
    layout: Layout,
    unpacker: Unpacker,
}

impl<'c> Reader<'c> {
    fn new(conn: &'c Connection) -> rusqlite::Result<Self> {
        Ok(Reader {
            conn,
            layout: layout(conn)?,
            unpacker: Unpacker::default(),
        })
    }

    fn select(&self) -> &'static str {
        select(self.layout)
    }

    fn record(&mut self, row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredRecord> {
        match self.layout {
            Layout::V1 => from_row_v1(row),
            Layout::V2 => from_row_v2(self.conn, &mut self.unpacker, row),
        }
    }

    /// The first record `sql` (after the SELECT) finds.
    fn one(
        &mut self,
        filter: &str,
        params: impl rusqlite::Params,
    ) -> rusqlite::Result<Option<StoredRecord>> {
        let conn = self.conn;
        let mut stmt = conn.prepare_cached(&format!("{} {filter}", self.select()))?;
        let mut rows = stmt.query(params)?;
        match rows.next()? {
            Some(row) => self.record(row).map(Some),
            None => Ok(None),
        }
    }
}

/// The record with sequence number `seq`.
pub fn record(conn: &Connection, seq: u64) -> rusqlite::Result<Option<StoredRecord>> {
    Reader::new(conn)?.one("WHERE seq = ?1", [seq as i64])
}

/// The record a register's request produced, if any.
pub fn find_request(
    conn: &Connection,
    register: &str,
    request_id: &str,
) -> rusqlite::Result<Option<StoredRecord>> {
    find_request_in(conn, layout(conn)?, register, request_id)
}

/// [`find_request`] in a journal whose layout the caller knows (the writer, which looks up every
/// record's request: no `PRAGMA user_version` and no SQL text built per lookup).
pub fn find_request_in(
    conn: &Connection,
    layout: Layout,
    register: &str,
    request_id: &str,
) -> rusqlite::Result<Option<StoredRecord>> {
    let sql = match layout {
        Layout::V1 => FIND_REQUEST_V1,
        Layout::V2 => FIND_REQUEST_V2,
    };
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params![register, request_id])?;
    let mut reader = Reader {
        conn,
        layout,
        unpacker: Unpacker::default(),
    };
    match rows.next()? {
        Some(row) => reader.record(row).map(Some),
        None => Ok(None),
    }
}

/// Calls `f` for every record with `from <= seq <= to`, in order, stopping at `f`'s first error.
pub fn for_each_in_range<E: From<rusqlite::Error>>(
    conn: &Connection,
    from: u64,
    to: u64,
    f: impl FnMut(StoredRecord) -> Result<(), E>,
) -> Result<(), E> {
    for_each_in_range_in_steps(conn, from, to, u64::MAX, f)
}

/// As [`for_each_in_range`], reading at most `step` records per statement. Outside an explicit
/// transaction each statement is a read transaction of its own, so a long range never holds
/// one WAL snapshot from start to end: the checkpoint can restart the WAL between steps, and
/// the writer does not have to grow it (and sync its growth) while a slow or low-priority
/// reader goes through the range. Records never change once written, so the records seen are
/// the same as one statement's.
pub fn for_each_in_range_in_steps<E: From<rusqlite::Error>>(
    conn: &Connection,
    from: u64,
    to: u64,
    step: u64,
    mut f: impl FnMut(StoredRecord) -> Result<(), E>,
) -> Result<(), E> {
    let mut reader = Reader::new(conn)?;
    // Steps end at the last record there is, not at `to` (often `u64::MAX`).
    let last: Option<i64> = conn.query_row("SELECT max(seq) FROM records", [], |r| r.get(0))?;
    let to = to.min(last.map_or(0, |l| l.max(0) as u64));
    let step = step.max(1);
    let mut first = from;
    while first <= to {
        let last = first.saturating_add(step - 1).min(to);
        let mut stmt = conn.prepare_cached(&format!(
            "{} WHERE seq BETWEEN ?1 AND ?2 ORDER BY seq",
            reader.select()
        ))?;
        let mut rows = stmt.query(params![first as i64, last as i64])?;
        while let Some(row) = rows.next()? {
            f(reader.record(row)?)?;
        }
        match last.checked_add(1) {
            Some(next) => first = next,
            None => break,
        }
    }
    Ok(())
}

/// Records of the given kinds, in order (signer declarations are few).
pub fn records_of_kind(
    conn: &Connection,
    kinds: &[RecordKind],
) -> rusqlite::Result<Vec<StoredRecord>> {
    let mut reader = Reader::new(conn)?;
    let mut out = Vec::new();
    for kind in kinds {
        let mut stmt = match reader.layout {
            Layout::V1 => {
                let mut stmt =
                    conn.prepare_cached(&format!("{SELECT_V1} WHERE kind = ?1 ORDER BY seq"))?;
                stmt.raw_bind_parameter(1, kind.as_str())?;
                stmt
            }
            Layout::V2 => {
                let code = kind_code(*kind);
                // The kind index leaves fiscal events out; a query can use it only if it
                // repeats the index's condition with the same constant.
                let sql = if *kind == RecordKind::FiscalEvent {
                    format!("{SELECT_V2} WHERE kind_code = {code} ORDER BY seq")
                } else {
                    format!(
                        "{SELECT_V2} WHERE kind_code = {code} AND kind_code <> {} ORDER BY seq",
                        kind_code(RecordKind::FiscalEvent)
                    )
                };
                conn.prepare_cached(&sql)?
            }
        };
        let mut rows = stmt.raw_query();
        while let Some(row) = rows.next()? {
            out.push(reader.record(row)?);
        }
    }
    out.sort_by_key(|r| r.seq);
    Ok(out)
}

/// Which fiscal events [`fiscal_days`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FiscalEventsOf<'a> {
    /// Every register's.
    AllRegisters,
    /// One register's, found through its sequence numbers (`seq > after`): the cheap way when
    /// `after` is recent.
    RegisterAfter(&'a str),
    /// One register's, found through the request index: the cheap way when the register has
    /// few records after `after` but the journal has many (a register that never made a Z).
    RegisterByIndex(&'a str),
}

/// The query of [`fiscal_days`]: `?1` is `after`, `?2` the register.
pub(crate) fn fiscal_days_sql(layout: Layout, of: FiscalEventsOf<'_>) -> String {
    let fiscal = match layout {
        Layout::V1 => format!("kind = '{}'", RecordKind::FiscalEvent.as_str()),
        Layout::V2 => format!("kind_code = {}", kind_code(RecordKind::FiscalEvent)),
    };
    // `+register_id` keeps SQLite on the sequence-number range; `request_id IS NOT NULL` lets
    // it use the partial request index (every record with a register has a request id).
    let register = match of {
        FiscalEventsOf::AllRegisters => "",
        FiscalEventsOf::RegisterAfter(_) => " AND +register_id = ?2",
        FiscalEventsOf::RegisterByIndex(_) => " AND register_id = ?2 AND request_id IS NOT NULL",
    };
    format!(
        "SELECT substr(time, 1, 10), max(seq) FROM records \
         WHERE seq > ?1 AND {fiscal}{register} GROUP BY 1 ORDER BY 1"
    )
}

/// The FDM dates (`YYYY-MM-DD`) of the fiscal events after `after`, each with the last
/// sequence number of that date, read from the index columns only (no record is decoded).
pub fn fiscal_days(
    conn: &Connection,
    of: FiscalEventsOf<'_>,
    after: u64,
) -> rusqlite::Result<Vec<(String, u64)>> {
    let sql = fiscal_days_sql(layout(conn)?, of);
    let mut stmt = conn.prepare_cached(&sql)?;
    let after = after.min(i64::MAX as u64) as i64;
    let row =
        |r: &rusqlite::Row<'_>| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?.max(0) as u64));
    let rows = match of {
        FiscalEventsOf::AllRegisters => stmt.query_map(params![after], row)?,
        FiscalEventsOf::RegisterAfter(r) | FiscalEventsOf::RegisterByIndex(r) => {
            stmt.query_map(params![after, r], row)?
        }
    };
    rows.collect()
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
    /// FDM time of the last record: no record is signed with an earlier one.
    pub last_time: Option<chrono::DateTime<chrono::FixedOffset>>,
}

/// Reads the heads with indexed queries (no full scan of the records).
pub fn load_heads(conn: &Connection) -> rusqlite::Result<Heads> {
    let mut heads = Heads::default();
    if let Some((seq, hash, time)) = conn
        .query_row(
            "SELECT seq, hash, time FROM records ORDER BY seq DESC LIMIT 1",
            [],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, String>(2)?,
                ))
            },
        )
        .optional()?
    {
        heads.last_seq = seq as u64;
        heads.last_time = chrono::DateTime::parse_from_rfc3339(&time).ok();
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
    for declaration in records_of_kind(conn, &[RecordKind::JournalOpen, RecordKind::SignerChange])?
    {
        heads.signers.insert(declaration.signer_id);
    }
    Ok(heads)
}

/// Pages used and the configured maximum, for the storage warning.
pub fn page_usage(conn: &Connection) -> rusqlite::Result<(u64, u64)> {
    let used: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    let max: i64 = conn.query_row("PRAGMA max_page_count", [], |r| r.get(0))?;
    Ok((used as u64, max as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::record::{Envelope, GENESIS_PREV_HASH, record_hash};
    use serde_json::{Map, Value, json};

    /// Records 1 (journal_open), 2–4 (fiscal events, one with a request key), 5 (report).
    fn records() -> Vec<StoredRecord> {
        let mut out: Vec<StoredRecord> = Vec::new();
        let mut prev = GENESIS_PREV_HASH;
        for seq in 1..=5u64 {
            let (kind, body, index) = match seq {
                1 => (
                    RecordKind::JournalOpen,
                    json!({"signer": {"id": "DEVSW-1", "algorithm": "ed25519", "public_key": "00", "certified": false}}),
                    IndexColumns::default(),
                ),
                5 => (
                    RecordKind::Report,
                    json!({"report": "Z", "ticket_series": "establishment/Z", "ticket_number": 1}),
                    IndexColumns {
                        series: Some("establishment/Z".into()),
                        series_number: Some(1),
                        ..IndexColumns::default()
                    },
                ),
                n => (
                    RecordKind::FiscalEvent,
                    json!({"label": "NS", "event_counter": n - 1, "total_counter": n - 1,
                        "register": "till-1", "request_id": format!("r-{n}"),
                        "request_digest": format!("{n:064}"), "total": "1.00",
                        "ticket_series": "establishment/N", "ticket_number": n - 1,
                        "lines": [{"description": "Thé à la menthe", "total": "1.00"}]}),
                    IndexColumns {
                        register_id: Some("till-1".into()),
                        request_id: Some(format!("r-{n}")),
                        request_digest: Some(format!("{n:064}")),
                        label: Some("NS".into()),
                        event_counter: Some(n - 1),
                        total_counter: Some(n - 1),
                        series: Some("establishment/N".into()),
                        series_number: Some(n - 1),
                    },
                ),
            };
            let Value::Object(body) = body else {
                unreachable!()
            };
            let body: Map<String, Value> = body;
            let time = format!("2026-12-0{seq}T10:00:00.000+01:00");
            let canonical = Envelope {
                seq,
                kind,
                time: &time,
                fdm_id: "DEVFDMD0001",
                signer_id: "DEVSW-1",
                prev_hash: &prev,
                body: &body,
            }
            .canonical_bytes()
            .unwrap();
            let hash = record_hash(&canonical);
            out.push(StoredRecord {
                seq,
                kind: kind.as_str().into(),
                canonical,
                prev_hash: prev.to_vec(),
                hash: hash.to_vec(),
                signature: vec![seq as u8; 64],
                signer_id: "DEVSW-1".into(),
                time,
                index,
            });
            prev = hash;
        }
        out
    }

    fn journal(dir: &tempfile::TempDir, layout: Layout) -> Connection {
        let path = dir.path().join(format!("{layout:?}.sqlite"));
        let conn = open_for_writing_as(&path, None, layout).unwrap();
        let mut writing = Writing::for_journal(&conn).unwrap();
        assert_eq!(writing.layout(), layout);
        for r in records() {
            writing
                .insert(
                    &conn,
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
                .unwrap();
        }
        conn
    }

    #[test]
    fn both_layouts_give_back_the_same_records() {
        let dir = tempfile::tempdir().unwrap();
        let expected = records();
        for layout in [Layout::V1, Layout::V2] {
            let conn = journal(&dir, layout);
            assert_eq!(super::layout(&conn).unwrap(), layout);
            let mut all = Vec::new();
            for_each_in_range(&conn, 1, u64::MAX, |r| -> rusqlite::Result<()> {
                all.push(r);
                Ok(())
            })
            .unwrap();
            assert_eq!(all, expected, "{layout:?}");
            assert_eq!(record(&conn, 3).unwrap().as_ref(), Some(&expected[2]));
            assert_eq!(record(&conn, 9).unwrap(), None);
            assert_eq!(
                find_request(&conn, "till-1", "r-4").unwrap().as_ref(),
                Some(&expected[3])
            );
            assert_eq!(find_request(&conn, "till-2", "r-4").unwrap(), None);
            assert_eq!(
                records_of_kind(&conn, &[RecordKind::Report, RecordKind::JournalOpen]).unwrap(),
                vec![expected[0].clone(), expected[4].clone()]
            );
            assert_eq!(
                records_of_kind(&conn, &[RecordKind::FiscalEvent]).unwrap(),
                expected[1..4].to_vec()
            );
            let heads = load_heads(&conn).unwrap();
            assert_eq!(heads.last_seq, 5);
            assert_eq!(heads.last_hash.to_vec(), expected[4].hash);
            assert_eq!(heads.total_counter, 3);
            assert_eq!(heads.event_counters.get("NS"), Some(&3));
            assert_eq!(heads.series.get("establishment/N"), Some(&3));
            assert_eq!(heads.series.get("establishment/Z"), Some(&1));
            assert_eq!(heads.signers, HashSet::from(["DEVSW-1".to_owned()]));
        }
    }

    /// `(pages in the WAL, pages copied back)` after a PASSIVE checkpoint on `conn`.
    fn passive_checkpoint(conn: &Connection) -> (i64, i64) {
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get(1)?, r.get(2)?))
        })
        .unwrap()
    }

    #[test]
    fn a_range_read_in_steps_sees_the_same_records_and_lets_go_of_its_snapshot_between_steps() {
        let dir = tempfile::tempdir().unwrap();
        let expected = records();
        let writer = journal(&dir, Layout::V2);
        writer
            .execute_batch("CREATE TABLE scratch(x); PRAGMA wal_checkpoint(TRUNCATE);")
            .unwrap();
        let reader = Connection::open(dir.path().join("V2.sqlite")).unwrap();
        for step in [1, 2, 3, 5, 100, u64::MAX] {
            let mut all = Vec::new();
            for_each_in_range_in_steps(&reader, 1, u64::MAX, step, |r| -> rusqlite::Result<()> {
                all.push(r);
                Ok(())
            })
            .unwrap();
            assert_eq!(all, expected, "step {step}");
        }
        // Steps of two: records 1–2, 3–4, 5. A commit made while the first step is read is
        // past that step's snapshot, so a checkpoint cannot copy it back then; once the second
        // step has begun nothing older is held, and the checkpoint copies everything.
        let mut seen = Vec::new();
        for_each_in_range_in_steps(&reader, 1, 5, 2, |r| -> rusqlite::Result<()> {
            if r.seq == 2 {
                writer
                    .execute("INSERT INTO scratch VALUES (2)", [])
                    .unwrap();
                let (log, copied) = passive_checkpoint(&writer);
                assert!(copied < log, "held by the first step: {copied} of {log}");
            }
            if r.seq == 3 {
                let (log, copied) = passive_checkpoint(&writer);
                assert_eq!(copied, log, "nothing held from the first step");
            }
            seen.push(r.seq);
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, [1, 2, 3, 4, 5]);
    }

    #[test]
    fn schema_2_stores_less_than_schema_1() {
        let dir = tempfile::tempdir().unwrap();
        let stored = |layout| {
            let conn = journal(&dir, layout);
            let column = match layout {
                Layout::V1 => "canonical",
                Layout::V2 => "packed",
            };
            conn.query_row(
                &format!("SELECT sum(length({column})) FROM records"),
                [],
                |r| r.get::<_, i64>(0),
            )
            .unwrap()
        };
        let (v1, v2) = (stored(Layout::V1), stored(Layout::V2));
        assert!(v2 * 2 < v1, "compressed {v2} bytes, canonical {v1}");
    }

    #[test]
    fn an_existing_journal_keeps_its_layout_and_a_newer_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(journal(&dir, Layout::V1));
        let path = dir.path().join("V1.sqlite");
        let conn = open_for_writing(&path, None).unwrap();
        assert_eq!(layout(&conn).unwrap(), Layout::V1);
        assert_eq!(Writing::for_journal(&conn).unwrap().layout(), Layout::V1);
        conn.execute_batch("PRAGMA user_version = 3").unwrap();
        drop(conn);
        let refused = open_for_writing(&path, None).unwrap_err().to_string();
        assert!(refused.contains("schema version 3"), "{refused}");
        let fresh = open_for_writing(&dir.path().join("new.sqlite"), None).unwrap();
        assert_eq!(layout(&fresh).unwrap(), Layout::V2);
    }

    #[test]
    fn a_damaged_frame_is_named_and_other_bytes_are_given_back_as_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let conn = journal(&dir, Layout::V2);
        conn.execute_batch("DROP TRIGGER records_no_update")
            .unwrap();
        // A frame cut short does not decompress: the read error names the record.
        conn.execute(
            "UPDATE records SET packed = substr(packed, 1, length(packed) - 3) WHERE seq = 3",
            [],
        )
        .unwrap();
        let e = record(&conn, 3).unwrap_err();
        let unreadable = unreadable_record(&e).unwrap();
        assert_eq!(unreadable.seq, 3);
        // Another record's frame in its place decompresses, to that record's bytes: the hash
        // stored beside it no longer matches them (the verifier's check).
        conn.execute(
            "UPDATE records SET packed = (SELECT packed FROM records WHERE seq = 2) WHERE seq = 4",
            [],
        )
        .unwrap();
        let r = record(&conn, 4).unwrap().unwrap();
        assert_eq!(r.canonical, records()[1].canonical);
        assert_ne!(record_hash(&r.canonical).to_vec(), r.hash);
        assert!(unreadable_record(&rusqlite::Error::QueryReturnedNoRows).is_none());
    }
}
