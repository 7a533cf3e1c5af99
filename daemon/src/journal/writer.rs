//! The single writer: group commit of signed, hash-chained records.

use super::record::{Envelope, GENESIS_PREV_HASH, RecordKind, record_hash};
use super::store::{self, Heads, IndexColumns, NewRecord, StoredRecord};
use super::{AppendError, Appended, Entry, JournalConfig, JournalStats, WriteRequest, format_time};
use crate::signer::{Signer, SignerIdentity};
use rusqlite::{Connection, ErrorCode};
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::mpsc;

pub(super) struct Writer {
    conn: Connection,
    heads: Heads,
    config: JournalConfig,
    signer: Arc<dyn Signer>,
    stats: Arc<JournalStats>,
    /// Reused for every record's canonical bytes.
    canonical: Vec<u8>,
}

/// Why a batch has to be rolled back as a whole.
struct BatchFailure(AppendError);

fn storage_error(e: rusqlite::Error) -> AppendError {
    match e.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => AppendError::StorageFull,
        _ => AppendError::Storage(e.to_string()),
    }
}

impl Writer {
    pub(super) fn new(
        conn: Connection,
        heads: Heads,
        config: JournalConfig,
        signer: Arc<dyn Signer>,
        stats: Arc<JournalStats>,
    ) -> Self {
        Writer {
            conn,
            heads,
            config,
            signer,
            stats,
            canonical: Vec::with_capacity(8192),
        }
    }

    pub(super) fn run(mut self, mut rx: mpsc::Receiver<WriteRequest>) {
        let max_batch = self.config.max_batch.max(1);
        let mut batch = Vec::with_capacity(max_batch);
        while let Some(first) = rx.blocking_recv() {
            batch.push(first);
            while batch.len() < max_batch {
                match rx.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            self.write_batch(&mut batch);
        }
    }

    fn write_batch(&mut self, batch: &mut Vec<WriteRequest>) {
        let results = match self.try_write_batch(batch.as_mut_slice()) {
            Ok(results) => results,
            Err(BatchFailure(e)) => {
                if !self.conn.is_autocommit() {
                    let _ = self.conn.execute_batch("ROLLBACK");
                }
                batch.iter().map(|_| Err(e.clone())).collect()
            }
        };
        for (request, result) in batch.drain(..).zip(results) {
            // The caller may have gone away; the record is durable either way.
            let _ = request.reply.send(result);
        }
    }

    /// Writes the batch in one transaction. On success the heads advance; on failure they are
    /// untouched, because every change is made on a copy first. The entries' bodies are moved
    /// into their answers (an entry that failed is answered with the error only).
    fn try_write_batch(
        &mut self,
        batch: &mut [WriteRequest],
    ) -> Result<Vec<Result<Appended, AppendError>>, BatchFailure> {
        let identity = match self.signer.identity() {
            Ok(identity) => identity,
            Err(e) => return Ok(batch.iter().map(|_| Err(e.clone().into())).collect()),
        };
        let mut heads = self.heads.clone();
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| BatchFailure(storage_error(e)))?;
        let mut declare_failed = None;
        if let Err(e) = self.declare_signer(&mut heads, &identity) {
            match e {
                Stage::Batch(f) => return Err(f),
                Stage::Entry(e) => declare_failed = Some(e),
            }
        }
        let mut results = Vec::with_capacity(batch.len());
        let mut written = 0u64;
        for request in batch.iter_mut() {
            if let Some(e) = &declare_failed {
                results.push(Err(e.clone()));
                continue;
            }
            match self.write_entry(&mut heads, &identity, &mut request.entry) {
                Ok(appended) => {
                    if !appended.duplicate {
                        written += 1;
                    }
                    results.push(Ok(appended));
                }
                Err(Stage::Entry(e)) => results.push(Err(e)),
                Err(Stage::Batch(f)) => return Err(f),
            }
        }
        self.conn
            .execute_batch("COMMIT")
            .map_err(|e| BatchFailure(storage_error(e)))?;
        self.heads = heads;
        self.publish_stats(written);
        let nearly_full = self.stats.usage().is_some_and(|u| u >= 0.9);
        for appended in results.iter_mut().flatten() {
            appended.storage_nearly_full = nearly_full;
        }
        Ok(results)
    }

    fn publish_stats(&self, written: u64) {
        self.stats
            .last_seq
            .store(self.heads.last_seq, Ordering::Relaxed);
        self.stats.commits.fetch_add(1, Ordering::Relaxed);
        self.stats.records.fetch_add(written, Ordering::Relaxed);
        if self.config.max_bytes.is_some()
            && let Ok((used, max)) = store::page_usage(&self.conn)
        {
            self.stats.pages_used.store(used, Ordering::Relaxed);
            self.stats.pages_max.store(max, Ordering::Relaxed);
        }
    }

    /// Anchors the chain (first record) or declares a signer not seen before.
    fn declare_signer(
        &mut self,
        heads: &mut Heads,
        identity: &SignerIdentity,
    ) -> Result<(), Stage> {
        if heads.last_seq > 0 && heads.signers.contains(&identity.id) {
            return Ok(());
        }
        let signer = json!({
            "id": identity.id,
            "algorithm": identity.algorithm,
            "public_key": hex::encode(&identity.public_key),
            "certified": identity.certified,
        });
        let (kind, body) = if heads.last_seq == 0 {
            (
                RecordKind::JournalOpen,
                json!({
                    "fdm_id": self.config.fdm_id,
                    "signer": signer,
                    "software": concat!("fdmd ", env!("CARGO_PKG_VERSION")),
                    "format": "fdmd-record/1",
                }),
            )
        } else {
            (RecordKind::SignerChange, json!({ "signer": signer }))
        };
        let Value::Object(body) = body else {
            return Err(Stage::Entry(AppendError::Encoding("signer body".into())));
        };
        self.sign_and_insert(heads, identity, kind, body, &IndexColumns::default())?;
        heads.signers.insert(identity.id.clone());
        Ok(())
    }

    fn write_entry(
        &mut self,
        heads: &mut Heads,
        identity: &SignerIdentity,
        entry: &mut Entry,
    ) -> Result<Appended, Stage> {
        if let Some(key) = &entry.key
            && let Some(stored) = store::find_request(&self.conn, &key.register, &key.request_id)
                .map_err(|e| Stage::Batch(BatchFailure(storage_error(e))))?
        {
            if stored.index.request_digest.as_deref() != Some(key.digest.as_str()) {
                return Err(Stage::Entry(AppendError::Conflict {
                    request_id: key.request_id.clone(),
                }));
            }
            return appended_from_stored(&stored, &self.config.fdm_id).map_err(Stage::Entry);
        }
        // The body goes into the record and then into the answer: moved, not copied.
        let mut body = std::mem::take(&mut entry.body);
        let mut index = IndexColumns::default();
        if let Some(key) = &entry.key {
            body.insert("register".into(), json!(key.register));
            body.insert("request_id".into(), json!(key.request_id));
            body.insert("request_digest".into(), json!(key.digest));
            index.register_id = Some(key.register.clone());
            index.request_id = Some(key.request_id.clone());
            index.request_digest = Some(key.digest.clone());
        }
        // The counters this record takes; the heads advance only once it is inserted.
        let mut event = None;
        if let Some(label) = entry.counters {
            let label = label.to_string();
            let counter = heads.event_counters.get(&label).copied().unwrap_or(0) + 1;
            let total = heads.total_counter + 1;
            body.insert("event_counter".into(), json!(counter));
            body.insert("total_counter".into(), json!(total));
            index.label = Some(label.clone());
            index.event_counter = Some(counter);
            index.total_counter = Some(total);
            event = Some((label, counter, total));
        }
        let mut number = None;
        if let Some(series) = &entry.series {
            let next = heads.series.get(series).copied().unwrap_or(0) + 1;
            body.insert("ticket_series".into(), json!(series));
            body.insert("ticket_number".into(), json!(next));
            index.series = Some(series.clone());
            index.series_number = Some(next);
            number = Some(next);
        }
        let appended = self.sign_and_insert(heads, identity, entry.kind, body, &index)?;
        if let Some((label, counter, total)) = event {
            heads.event_counters.insert(label, counter);
            heads.total_counter = total;
        }
        if let (Some(series), Some(next)) = (&entry.series, number) {
            match heads.series.get_mut(series) {
                Some(n) => *n = next,
                None => {
                    heads.series.insert(series.clone(), next);
                }
            }
        }
        Ok(appended)
    }

    /// Encodes, hashes, signs and inserts one record; advances `last_seq` and `last_hash` only
    /// when the row is in.
    fn sign_and_insert(
        &mut self,
        heads: &mut Heads,
        identity: &SignerIdentity,
        kind: RecordKind,
        body: Map<String, Value>,
        index: &IndexColumns,
    ) -> Result<Appended, Stage> {
        // One buffer serves every record: taken here, given back whatever the outcome.
        let mut canonical = std::mem::take(&mut self.canonical);
        canonical.clear();
        let result = self.encode_sign_insert(&mut canonical, heads, identity, kind, body, index);
        self.canonical = canonical;
        result
    }

    fn encode_sign_insert(
        &self,
        canonical: &mut Vec<u8>,
        heads: &mut Heads,
        identity: &SignerIdentity,
        kind: RecordKind,
        body: Map<String, Value>,
        index: &IndexColumns,
    ) -> Result<Appended, Stage> {
        let seq = heads.last_seq + 1;
        let time = format_time(self.config.clock.now());
        let prev_hash = if heads.last_seq == 0 {
            GENESIS_PREV_HASH
        } else {
            heads.last_hash
        };
        Envelope {
            seq,
            kind,
            time: &time,
            fdm_id: &self.config.fdm_id,
            signer_id: &identity.id,
            prev_hash: &prev_hash,
            body: &body,
        }
        .write_canonical(canonical)
        .map_err(|e| Stage::Entry(AppendError::Encoding(e.to_string())))?;
        let hash = record_hash(canonical);
        let signature = self
            .signer
            .sign(&identity.id, &hash)
            .map_err(|e| Stage::Entry(e.into()))?;
        store::insert_new(
            &self.conn,
            &NewRecord {
                seq,
                kind: kind.as_str(),
                canonical,
                prev_hash: &prev_hash,
                hash: &hash,
                signature: &signature,
                signer_id: &identity.id,
                time: &time,
                index,
            },
        )
        .map_err(|e| Stage::Batch(BatchFailure(storage_error(e))))?;
        heads.last_seq = seq;
        heads.last_hash = hash;
        Ok(Appended {
            seq,
            kind,
            time,
            fdm_id: self.config.fdm_id.clone(),
            signer_id: identity.id.clone(),
            hash,
            signature,
            body,
            duplicate: false,
            storage_nearly_full: false,
        })
    }
}

/// Where a failure stops: this entry only, or the whole batch (storage).
enum Stage {
    Entry(AppendError),
    Batch(BatchFailure),
}

/// Rebuilds the answer to a request from its stored record (for code 102).
pub(super) fn appended_from_stored(
    stored: &StoredRecord,
    fdm_id: &str,
) -> Result<Appended, AppendError> {
    let envelope: Value = serde_json::from_slice(&stored.canonical)
        .map_err(|e| AppendError::Storage(format!("record {} is not JSON: {e}", stored.seq)))?;
    let body = match envelope.get("body") {
        Some(Value::Object(map)) => map.clone(),
        _ => {
            return Err(AppendError::Storage(format!(
                "record {} has no body",
                stored.seq
            )));
        }
    };
    let hash = <[u8; 32]>::try_from(stored.hash.as_slice())
        .map_err(|_| AppendError::Storage(format!("record {} hash is not 32 bytes", stored.seq)))?;
    Ok(Appended {
        seq: stored.seq,
        kind: RecordKind::parse(&stored.kind).unwrap_or(RecordKind::FiscalEvent),
        time: stored.time.clone(),
        fdm_id: envelope
            .get("fdm_id")
            .and_then(Value::as_str)
            .unwrap_or(fdm_id)
            .to_owned(),
        signer_id: stored.signer_id.clone(),
        hash,
        signature: stored.signature.clone(),
        body,
        duplicate: true,
        storage_nearly_full: false,
    })
}
