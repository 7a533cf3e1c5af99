//! Reading records one at a time, for folds and on-demand lookups whose memory must not grow
//! with the journal.
//!
//! [`for_each_raw`] streams the records after a sequence number with only the columns a fold
//! needs (kind, time, canonical bytes), borrowed from SQLite's row buffer: nothing is kept
//! between two records. [`body_at`] parses one record's body, [`hash_at`] gives the hash a
//! snapshot names, so its caller can check it against the chain.

use super::record::RecordKind;
use super::store;
use rusqlite::Connection;
use serde_json::{Map, Value};

/// One record as a fold sees it, borrowed for the duration of the callback.
#[derive(Debug, Clone, Copy)]
pub struct RawRecord<'a> {
    /// Sequence number.
    pub seq: u64,
    /// Kind name.
    pub kind: &'a str,
    /// FDM time.
    pub time: &'a str,
    /// Canonical bytes (the signed JSON envelope).
    pub canonical: &'a [u8],
}

impl RawRecord<'_> {
    /// The parsed kind, if known.
    pub fn kind(&self) -> Option<RecordKind> {
        RecordKind::parse(self.kind)
    }

    /// The record's body, parsed (None when the bytes are not a JSON envelope with a body).
    pub fn body(&self) -> Option<Map<String, Value>> {
        body_of(self.canonical)
    }
}

/// Parses the body out of canonical bytes.
pub fn body_of(canonical: &[u8]) -> Option<Map<String, Value>> {
    #[derive(serde::Deserialize)]
    struct Envelope {
        body: Map<String, Value>,
    }
    serde_json::from_slice::<Envelope>(canonical)
        .ok()
        .map(|e| e.body)
}

/// Calls `f` for every record of one of `kinds` with `seq > after`, in order, stopping at `f`'s
/// first error. Memory: one record at a time. The records are read through the store, so both
/// layouts (schema 1 rows, schema 2 compressed frames) give the same canonical bytes; meant for
/// kinds that make up most of the journal, such as fiscal events.
pub fn for_each_raw<E: From<rusqlite::Error>>(
    conn: &Connection,
    after: u64,
    kinds: &[RecordKind],
    mut f: impl FnMut(RawRecord<'_>) -> Result<(), E>,
) -> Result<(), E> {
    let names: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
    store::for_each_in_range(conn, after.saturating_add(1), u64::MAX, |r| {
        if names.contains(&r.kind.as_str()) {
            f(RawRecord {
                seq: r.seq,
                kind: &r.kind,
                time: &r.time,
                canonical: &r.canonical,
            })
        } else {
            Ok(())
        }
    })
}

/// A record's kind, FDM time and parsed body.
pub type KindTimeBody = (RecordKind, String, Map<String, Value>);

/// The kind, time and parsed body of the record `seq`.
pub fn body_at(conn: &Connection, seq: u64) -> rusqlite::Result<Option<KindTimeBody>> {
    Ok(store::record(conn, seq)?.and_then(|r| {
        let kind = RecordKind::parse(&r.kind)?;
        Some((kind, r.time, body_of(&r.canonical)?))
    }))
}

/// The hash of the record `seq`, if there is one.
pub fn hash_at(conn: &Connection, seq: u64) -> rusqlite::Result<Option<Vec<u8>>> {
    Ok(store::record(conn, seq)?.map(|r| r.hash))
}

/// The last sequence number (0 for an empty journal).
pub fn last_seq(conn: &Connection) -> rusqlite::Result<u64> {
    let last: Option<i64> = conn.query_row("SELECT max(seq) FROM records", [], |r| r.get(0))?;
    Ok(last.unwrap_or(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journal(dir: &tempfile::TempDir) -> Connection {
        let conn = store::open_for_writing(&dir.path().join("j.sqlite"), None).unwrap();
        for (seq, kind, body) in [
            (1, "journal_open", r#"{"x":1}"#),
            (2, "fiscal_event", r#"{"label":"NS"}"#),
            (3, "table_change", r#"{"from":"1"}"#),
            (4, "fiscal_event", r#"{"label":"PS"}"#),
        ] {
            let canonical = format!(r#"{{"body":{body},"seq":{seq}}}"#);
            store::insert(
                &conn,
                &store::StoredRecord {
                    seq,
                    kind: kind.into(),
                    canonical: canonical.into_bytes(),
                    prev_hash: vec![0; 32],
                    hash: vec![seq as u8; 32],
                    signature: vec![],
                    signer_id: "s".into(),
                    time: format!("t{seq}"),
                    index: store::IndexColumns::default(),
                },
            )
            .unwrap();
        }
        conn
    }

    #[test]
    fn streams_the_kinds_asked_after_a_seq_and_reads_one_record() {
        let dir = tempfile::tempdir().unwrap();
        let conn = journal(&dir);
        let mut seen = Vec::new();
        for_each_raw::<rusqlite::Error>(
            &conn,
            1,
            &[RecordKind::FiscalEvent, RecordKind::TableChange],
            |r| {
                seen.push((r.seq, r.kind.to_owned(), r.time.to_owned(), r.body()));
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[0].0, 2);
        assert_eq!(seen[1].1, "table_change");
        assert_eq!(seen[2].3.as_ref().unwrap()["label"], "PS");
        let mut after3 = 0;
        for_each_raw::<rusqlite::Error>(&conn, 3, &[RecordKind::FiscalEvent], |_| {
            after3 += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(after3, 1);
        let (kind, time, body) = body_at(&conn, 3).unwrap().unwrap();
        assert_eq!(
            (kind, time.as_str(), &body["from"]),
            (RecordKind::TableChange, "t3", &Value::from("1"))
        );
        assert!(body_at(&conn, 9).unwrap().is_none());
        assert_eq!(hash_at(&conn, 4).unwrap(), Some(vec![4; 32]));
        assert_eq!(last_seq(&conn).unwrap(), 4);
    }
}
