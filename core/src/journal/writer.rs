//! The single writer: group commit of signed, hash-chained records.

use super::body::EncodedBody;
use super::checkpoint::Checkpointer;
use super::record::{Envelope, GENESIS_PREV_HASH, RecordKind, record_hash};
use super::signing::SigningThread;
use super::store::{self, Heads, IndexColumns, NewRecord, StoredRecord};
use super::{AppendError, Appended, Entry, JournalConfig, JournalStats, WriteRequest, format_time};
use crate::signer::{Signer, SignerIdentity};
use rusqlite::{Connection, ErrorCode, OptionalExtension};
use serde_json::{Map, Value, json};
use std::cell::RefCell;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

pub(super) struct Writer {
    /// Declared before `conn`: stopped before the writer's connection closes, so that the
    /// last close checkpoints and removes the WAL as usual.
    checkpointer: Option<Checkpointer>,
    conn: Connection,
    heads: Heads,
    config: JournalConfig,
    signer: Arc<dyn Signer>,
    stats: Arc<JournalStats>,
    /// Reused for every record's canonical bytes when records are signed one at a time.
    canonical: Vec<u8>,
    /// Signs while the writer stores, when the signer allows it (see [`super::signing`]).
    signing: Option<SigningThread>,
    /// Inserts rows in the journal's layout, keeping its compressor from one record to the
    /// next. `None` if it could not be set up: each insert then sets up its own (slower, the
    /// same rows).
    writing: RefCell<Option<store::Writing>>,
    /// The journal's layout, read once: every record's idempotency lookup uses it (`None` if it
    /// could not be read: each lookup reads it again).
    layout: Option<store::Layout>,
    /// When the file system's free space was last measured.
    free_space_checked: std::cell::Cell<Option<std::time::Instant>>,
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
        mut conn: Connection,
        heads: Heads,
        config: JournalConfig,
        signer: Arc<dyn Signer>,
        stats: Arc<JournalStats>,
    ) -> Self {
        // Without the thread the writer signs every record itself: slower, never wrong.
        let signing = if signer.allows_speculative_signing() {
            SigningThread::start(signer.clone()).ok()
        } else {
            None
        };
        // Without the thread SQLite checkpoints inside the writer's commits: slower, never wrong.
        let checkpointer = Checkpointer::start(&mut conn, &config.path, config.checkpoints).ok();
        let writing = RefCell::new(store::Writing::for_journal(&conn).ok());
        let layout = store::layout(&conn).ok();
        stats.measure_free_space(&config.path);
        Writer {
            free_space_checked: std::cell::Cell::new(Some(std::time::Instant::now())),
            writing,
            layout,
            checkpointer,
            conn,
            heads,
            config,
            signer,
            stats,
            canonical: Vec::with_capacity(8192),
            signing,
        }
    }

    /// Writes what comes in until every handle is dropped or [`super::Journal::shutdown`] asks
    /// it to stop (`stop` receives, or disconnects); then writes what is already queued,
    /// checkpoints the whole WAL into the database file and returns.
    /// Gives back why the final checkpoint left records in the WAL, if it did.
    pub(super) fn run(
        mut self,
        rx: flume::Receiver<WriteRequest>,
        stop: flume::Receiver<()>,
    ) -> Result<(), String> {
        let max_batch = self.config.max_batch.max(1);
        let mut batch = Vec::with_capacity(max_batch);
        let mut next = Vec::with_capacity(max_batch);
        let mut ahead: Option<Ahead> = None;
        let mut stopping = false;
        loop {
            if batch.is_empty() {
                let first = if stopping {
                    rx.try_recv().ok()
                } else {
                    flume::Selector::new()
                        .recv(&rx, Result::ok)
                        .recv(&stop, |_| None)
                        .wait()
                };
                match first {
                    Some(first) => batch.push(first),
                    // Asked to stop: take what is still queued, then stop.
                    None if !stopping && !rx.is_disconnected() => {
                        stopping = true;
                        continue;
                    }
                    None => break,
                }
            }
            // What came in while the previous batch committed joins this one (and its plan).
            take_waiting(&rx, &mut batch, max_batch);
            ahead = self.write_batch(&mut batch, ahead.take(), &rx, &mut next);
            std::mem::swap(&mut batch, &mut next);
        }
        // Before the connection closes (its close checkpoints and removes the WAL).
        if let Some(checkpointer) = self.checkpointer.as_mut() {
            checkpointer.stop();
        }
        // The close's own checkpoint is skipped while another connection (a reader) is open:
        // copy the whole WAL into the database file now, so that `journal.sqlite` alone holds
        // every record after a clean stop, and empty the WAL.
        self.checkpoint_all()
    }

    /// `wal_checkpoint(TRUNCATE)`: every WAL frame into the database file (synced), WAL emptied.
    /// An error if a reader kept part of the WAL in use.
    fn checkpoint_all(&self) -> Result<(), String> {
        let (busy, log, copied): (i64, i64, i64) = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .map_err(|e| e.to_string())?;
        if busy != 0 || copied < log {
            return Err(format!(
                "busy ({copied} of {log} WAL pages copied); the WAL keeps the rest"
            ));
        }
        Ok(())
    }

    /// Writes and answers `batch` (planned ahead if `ahead` is there). Takes the entries that
    /// wait meanwhile into `next`, and gives back their plan if it made one (see
    /// [`Writer::plan_ahead`]).
    fn write_batch(
        &mut self,
        batch: &mut Vec<WriteRequest>,
        ahead: Option<Ahead>,
        rx: &flume::Receiver<WriteRequest>,
        next: &mut Vec<WriteRequest>,
    ) -> Option<Ahead> {
        let (results, ahead) = match self.try_write_batch(batch.as_mut_slice(), ahead, rx, next) {
            Ok(written) => written,
            Err(BatchFailure(e)) => {
                if !self.conn.is_autocommit() {
                    let _ = self.conn.execute_batch("ROLLBACK");
                }
                (batch.iter().map(|_| Err(e.clone())).collect(), None)
            }
        };
        for result in &results {
            match result {
                Ok(appended) if !appended.duplicate => self.stats.set_clock_behind(None),
                Err(e @ AppendError::ClockBehind { .. }) => {
                    self.stats.set_clock_behind(Some(e.to_string()))
                }
                _ => {}
            }
        }
        for (request, result) in batch.drain(..).zip(results) {
            // The caller may have gone away; the record is durable either way.
            let _ = request.reply.send(result);
        }
        ahead
    }

    /// Writes the batch in one transaction. On success the heads advance; on failure they are
    /// untouched, because every change is made on a copy first, and no plan ahead is left
    /// (`ahead` is undone whenever it is not used). The entries' bodies are moved into their
    /// answers (an entry that failed is answered with the error only).
    fn try_write_batch(
        &mut self,
        batch: &mut [WriteRequest],
        ahead: Option<Ahead>,
        rx: &flume::Receiver<WriteRequest>,
        next: &mut Vec<WriteRequest>,
    ) -> Result<Written, BatchFailure> {
        let identity = match self.signer.identity() {
            Ok(identity) => identity,
            Err(e) => {
                self.undo(ahead, batch);
                return Ok((batch.iter().map(|_| Err(e.clone().into())).collect(), None));
            }
        };
        let mut heads = self.heads.clone();
        if let Err(e) = self.conn.execute_batch("BEGIN IMMEDIATE") {
            self.undo(ahead, batch);
            return Err(BatchFailure(storage_error(e)));
        }
        if let Err(e) = self.check_not_diverged() {
            self.undo(ahead, batch);
            let _ = self.conn.execute_batch("ROLLBACK");
            return Ok((batch.iter().map(|_| Err(e.clone())).collect(), None));
        }
        let declared = self.declare_signer(&mut heads, &identity);
        // The plan holds only if it was made from exactly these heads, for this signer.
        let ahead = match ahead {
            Some(ahead) if declared.is_ok() && ahead.fits(&heads, &identity) => Some(ahead),
            other => {
                self.undo(other, batch);
                None
            }
        };
        // Entries that joined after the plan was made: planned on from where it ends, unless
        // one repeats a request (then the batch is written one record at a time).
        let ahead = match ahead {
            Some(ahead) if ahead.planned.slots.len() < batch.len() && !pipelines(batch) => {
                self.undo(Some(ahead), batch);
                None
            }
            ahead => ahead,
        };
        let mut results = match declared {
            Err(Stage::Batch(f)) => return Err(f),
            Err(Stage::Entry(e)) => batch.iter().map(|_| Err(e.clone())).collect(),
            Ok(()) => match self.signing.take() {
                Some(signing) if ahead.is_some() || pipelines(batch) => {
                    let planned = match ahead {
                        Some(ahead) => self.plan_more(&signing, ahead.planned, &identity, batch),
                        None => self.plan(&signing, &heads, &identity, batch),
                    };
                    let results = planned.and_then(|planned| {
                        self.store_planned(&signing, &mut heads, &identity, batch, planned)
                    });
                    self.signing = Some(signing);
                    results?
                }
                signing => {
                    self.signing = signing;
                    self.write_one_by_one(&mut heads, &identity, batch)?
                }
            },
        };
        let ahead = self.plan_ahead(rx, next, &heads, &identity);
        if let Err(e) = self.conn.execute_batch("COMMIT") {
            self.undo(ahead, next);
            return Err(BatchFailure(storage_error(e)));
        }
        self.heads = heads;
        let written = results
            .iter()
            .flatten()
            .filter(|appended| !appended.duplicate)
            .count() as u64;
        self.publish_stats(written);
        let nearly_full = self.stats.usage().is_some_and(|u| u >= 0.9) || self.stats.storage_low();
        for appended in results.iter_mut().flatten() {
            appended.storage_nearly_full = nearly_full;
        }
        Ok((results, ahead))
    }

    /// Checks, inside the write transaction, that the journal still ends with this writer's
    /// last record. Another process that appended (a second fdmd on the same data directory,
    /// past its lock) moved the chain on: everything this writer would number from its heads
    /// is refused, so it stops signing for good and says why (in [`JournalStats::diverged`]
    /// and in every answer), instead of failing each batch on a refused INSERT. One indexed
    /// lookup per batch.
    fn check_not_diverged(&self) -> Result<(), AppendError> {
        if let Some(reason) = self.stats.diverged() {
            return Err(AppendError::Diverged(reason.to_owned()));
        }
        let last: Option<(i64, Vec<u8>)> = self
            .conn
            .prepare_cached("SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1")
            .and_then(|mut stmt| {
                stmt.query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
            })
            .map_err(storage_error)?;
        let (seq, hash) = last.map_or((0, Vec::new()), |(seq, hash)| (seq as u64, hash));
        let ours = self.heads.last_seq;
        if seq == ours && (seq == 0 || hash == self.heads.last_hash) {
            return Ok(());
        }
        let reason = format!(
            "the journal was changed by another process (its last record is {seq}, this fdmd wrote up to {ours}): fdmd stopped signing; stop the other process and restart fdmd"
        );
        let _ = self.stats.diverged.set(reason);
        Err(AppendError::Diverged(
            self.stats.diverged().unwrap_or_default().to_owned(),
        ))
    }

    /// Before the COMMIT (whose `fsync` the writer waits for), takes the entries waiting into
    /// `next` and plans them from the heads this batch leaves: numbered, encoded, hashed, their
    /// hashes handed to the signing thread, which signs them while the disk syncs. The
    /// idempotency lookups see this batch's rows (same connection, same transaction). The plan
    /// is used only if the COMMIT succeeds and the next batch starts from exactly these heads;
    /// otherwise it is undone and the entries are written afresh.
    fn plan_ahead(
        &mut self,
        rx: &flume::Receiver<WriteRequest>,
        next: &mut Vec<WriteRequest>,
        heads: &Heads,
        identity: &SignerIdentity,
    ) -> Option<Ahead> {
        let signing = self.signing.take()?;
        take_waiting(rx, next, self.config.max_batch.max(1));
        let ahead = if pipelines(next) {
            self.plan(&signing, heads, identity, next)
                .ok()
                .map(|planned| Ahead {
                    from_seq: heads.last_seq,
                    from_hash: heads.last_hash,
                    signer_id: identity.id.clone(),
                    planned,
                })
        } else {
            None
        };
        self.signing = Some(signing);
        ahead
    }

    /// Throws a plan made ahead away, if there is one (see [`undo_plan`]): its entries are
    /// written afresh.
    fn undo(&self, ahead: Option<Ahead>, batch: &mut [WriteRequest]) {
        // A plan exists only while the signing thread does, and the thread is in `self`
        // wherever this is called.
        if let (Some(ahead), Some(signing)) = (ahead, &self.signing) {
            undo_plan(signing, ahead.planned, batch);
        }
    }

    /// Numbers, encodes, signs and inserts the entries one after the other.
    fn write_one_by_one(
        &mut self,
        heads: &mut Heads,
        identity: &SignerIdentity,
        batch: &mut [WriteRequest],
    ) -> Result<Vec<Result<Appended, AppendError>>, BatchFailure> {
        let mut results = Vec::with_capacity(batch.len());
        for request in batch.iter_mut() {
            results.push(self.write_entry_here(heads, identity, request)?);
        }
        Ok(results)
    }

    fn write_entry_here(
        &mut self,
        heads: &mut Heads,
        identity: &SignerIdentity,
        request: &mut WriteRequest,
    ) -> Result<Result<Appended, AppendError>, BatchFailure> {
        match self.write_entry(
            heads,
            identity,
            &mut request.entry,
            request.encoded.as_ref(),
        ) {
            Ok(appended) => Ok(Ok(appended)),
            Err(Stage::Entry(e)) => Ok(Err(e)),
            Err(Stage::Batch(f)) => Err(f),
        }
    }

    /// Plans the batch for the signing thread: every entry is numbered, encoded and hashed on
    /// a copy of `heads`; the hashes are handed over together at the end (one wake-up of the
    /// thread per batch). Entries answered without a new record (stored answers, errors) are
    /// planned as done. If the thread is gone, [`Writer::store_planned`] fails the entry whose
    /// signature does not come and writes the rest one at a time. On a storage failure nothing
    /// stays planned: the signatures are dropped and the bodies given back.
    fn plan(
        &self,
        signing: &SigningThread,
        heads: &Heads,
        identity: &SignerIdentity,
        batch: &mut [WriteRequest],
    ) -> Result<Planned, BatchFailure> {
        let signer_id: Arc<str> = Arc::from(identity.id.as_str());
        let mut plan = heads.clone();
        let mut planned = Planned {
            slots: Vec::with_capacity(batch.len()),
            outstanding: 0,
            end: Heads::default(),
        };
        for index in 0..batch.len() {
            let request = &mut batch[index];
            let entry = &mut request.entry;
            let slot = match stored_answer(&self.conn, self.layout, &self.config.fdm_id, entry) {
                Ok(Some(appended)) => Slot::Done(Ok(appended)),
                Err(Stage::Entry(e)) => Slot::Done(Err(e)),
                Err(Stage::Batch(f)) => {
                    undo_plan(signing, planned, batch);
                    return Err(f);
                }
                Ok(None) => {
                    let numbered = number_entry(&plan, entry, request.encoded.as_ref());
                    let mut canonical = Vec::with_capacity(4096);
                    let staged =
                        encode_record(&self.config, &mut canonical, &plan, identity, numbered);
                    match staged {
                        Err(e) => Slot::Done(Err(e)),
                        Ok(staged) => {
                            signing.submit(&signer_id, staged.hash);
                            planned.outstanding += 1;
                            staged.advance(&mut plan);
                            Slot::Signing(Box::new((staged, canonical)))
                        }
                    }
                }
            };
            planned.slots.push(slot);
        }
        signing.hand_over();
        planned.end = plan;
        Ok(planned)
    }

    /// Extends a plan made ahead to the entries that joined the batch after it, numbered on
    /// from where the plan ends.
    fn plan_more(
        &self,
        signing: &SigningThread,
        mut planned: Planned,
        identity: &SignerIdentity,
        batch: &mut [WriteRequest],
    ) -> Result<Planned, BatchFailure> {
        let done = planned.slots.len();
        if done >= batch.len() {
            return Ok(planned);
        }
        let (_, joined) = batch.split_at_mut(done);
        match self.plan(signing, &planned.end, identity, joined) {
            Ok(more) => {
                planned.slots.extend(more.slots);
                planned.outstanding += more.outstanding;
                planned.end = more.end;
                Ok(planned)
            }
            Err(f) => {
                undo_plan(signing, planned, batch);
                Err(f)
            }
        }
    }

    /// Inserts a planned batch: the rows in order as the signatures come back, `heads`
    /// advancing row by row. If a signature fails, that entry fails and the entries after it
    /// are written again one at a time from `heads` (their planned numbers and chain assumed
    /// the failed record); the rows already inserted stay. Entries past the plan are written
    /// one at a time too. The same records as [`Writer::write_one_by_one`].
    fn store_planned(
        &mut self,
        signing: &SigningThread,
        heads: &mut Heads,
        identity: &SignerIdentity,
        batch: &mut [WriteRequest],
        planned: Planned,
    ) -> Result<Vec<Result<Appended, AppendError>>, BatchFailure> {
        let Planned {
            slots, outstanding, ..
        } = planned;
        let planned = slots.len();
        let mut results = Vec::with_capacity(batch.len());
        let mut collected = 0usize;
        let mut failed = false;
        for (slot, request) in slots.into_iter().zip(batch.iter_mut()) {
            let (staged, canonical) = match slot {
                Slot::Done(result) => {
                    results.push(result);
                    continue;
                }
                Slot::Signing(planned) => *planned,
            };
            if failed {
                request.entry.body = staged.body;
                results.push(self.write_entry_here(heads, identity, request)?);
                continue;
            }
            collected += 1;
            let signature = match signing.collect() {
                Ok(signature) => signature,
                Err(e) => {
                    signing.discard(outstanding - collected);
                    failed = true;
                    results.push(Err(e.into()));
                    continue;
                }
            };
            if let Err(Stage::Batch(f)) =
                self.insert_record(identity, &staged, &canonical, &signature)
            {
                signing.discard(outstanding - collected);
                return Err(f);
            }
            staged.advance(heads);
            results.push(Ok(staged.into_appended(
                &self.config.fdm_id,
                identity,
                signature,
            )));
        }
        for request in batch.iter_mut().skip(planned) {
            results.push(self.write_entry_here(heads, identity, request)?);
        }
        Ok(results)
    }

    fn publish_stats(&self, written: u64) {
        self.stats
            .last_seq
            .store(self.heads.last_seq, Ordering::Relaxed);
        self.stats.commits.fetch_add(1, Ordering::Relaxed);
        self.stats.records.fetch_add(written, Ordering::Relaxed);
        // The file system's free space, at most once a second (one statvfs).
        if self
            .free_space_checked
            .get()
            .is_none_or(|at| at.elapsed() >= std::time::Duration::from_secs(1))
        {
            self.stats.measure_free_space(&self.config.path);
            self.free_space_checked.set(Some(std::time::Instant::now()));
        }
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
        let numbered = Numbered {
            kind,
            body,
            index: IndexColumns::default(),
            advance: Advance::default(),
            encoded: None,
        };
        self.sign_and_insert(heads, identity, numbered)?;
        heads.signers.insert(identity.id.clone());
        Ok(())
    }

    fn write_entry(
        &mut self,
        heads: &mut Heads,
        identity: &SignerIdentity,
        entry: &mut Entry,
        encoded: Option<&EncodedBody>,
    ) -> Result<Appended, Stage> {
        if let Some(appended) = stored_answer(&self.conn, self.layout, &self.config.fdm_id, entry)?
        {
            return Ok(appended);
        }
        let numbered = number_entry(heads, entry, encoded);
        self.sign_and_insert(heads, identity, numbered)
    }

    /// Encodes, hashes, signs and inserts one record; advances `last_seq` and `last_hash` only
    /// when the row is in.
    fn sign_and_insert(
        &mut self,
        heads: &mut Heads,
        identity: &SignerIdentity,
        numbered: Numbered<'_>,
    ) -> Result<Appended, Stage> {
        // One buffer serves every record: taken here, given back whatever the outcome.
        let mut canonical = std::mem::take(&mut self.canonical);
        canonical.clear();
        let result = self.encode_sign_insert(&mut canonical, heads, identity, numbered);
        self.canonical = canonical;
        result
    }

    fn encode_sign_insert(
        &self,
        canonical: &mut Vec<u8>,
        heads: &mut Heads,
        identity: &SignerIdentity,
        numbered: Numbered<'_>,
    ) -> Result<Appended, Stage> {
        let staged = encode_record(&self.config, canonical, heads, identity, numbered)
            .map_err(Stage::Entry)?;
        let signature = self
            .signer
            .sign(&identity.id, &staged.hash)
            .map_err(|e| Stage::Entry(e.into()))?;
        self.insert_record(identity, &staged, canonical, &signature)?;
        staged.advance(heads);
        Ok(staged.into_appended(&self.config.fdm_id, identity, signature))
    }
}

impl Writer {
    /// Inserts a signed record's row (in the journal's layout, see [`store::Writing`]).
    fn insert_record(
        &self,
        identity: &SignerIdentity,
        staged: &Staged,
        canonical: &[u8],
        signature: &[u8],
    ) -> Result<(), Stage> {
        let record = NewRecord {
            seq: staged.seq,
            kind: staged.kind.as_str(),
            canonical,
            prev_hash: &staged.prev_hash,
            hash: &staged.hash,
            signature,
            signer_id: &identity.id,
            time: &staged.time,
            index: &staged.index,
        };
        match self.writing.borrow_mut().as_mut() {
            Some(writing) => writing.insert(&self.conn, &record),
            None => store::insert_new(&self.conn, &record),
        }
        .map_err(|e| Stage::Batch(BatchFailure(storage_error(e))))
    }
}

/// The answer stored for an entry's request, if it was journaled before (code 102); an error
/// if the same request id came with other content.
fn stored_answer(
    conn: &Connection,
    layout: Option<store::Layout>,
    fdm_id: &str,
    entry: &Entry,
) -> Result<Option<Appended>, Stage> {
    let Some(key) = &entry.key else {
        return Ok(None);
    };
    let found = match layout {
        Some(layout) => store::find_request_in(conn, layout, &key.register, &key.request_id),
        None => store::find_request(conn, &key.register, &key.request_id),
    };
    let Some(stored) = found.map_err(|e| Stage::Batch(BatchFailure(storage_error(e))))? else {
        return Ok(None);
    };
    if stored.index.request_digest.as_deref() != Some(key.digest.as_str()) {
        return Err(Stage::Entry(AppendError::Conflict {
            request_id: key.request_id.clone(),
        }));
    }
    appended_from_stored(&stored, fdm_id)
        .map(Some)
        .map_err(Stage::Entry)
}

/// A batch's answers, and the next batch's plan if one was made.
type Written = (Vec<Result<Appended, AppendError>>, Option<Ahead>);

/// Moves what waits in the channel into `batch`, up to `max_batch` entries.
fn take_waiting(
    rx: &flume::Receiver<WriteRequest>,
    batch: &mut Vec<WriteRequest>,
    max_batch: usize,
) {
    while batch.len() < max_batch {
        match rx.try_recv() {
            Ok(request) => batch.push(request),
            Err(_) => break,
        }
    }
}

/// Whether the batch's signatures can be made on the signing thread: more than one entry, and
/// no request twice (the second must see the first's row, so such a batch is written one
/// record at a time).
fn pipelines(batch: &[WriteRequest]) -> bool {
    batch.len() > 1 && !repeats_a_request(batch)
}

/// Throws a plan away: its signatures are collected and dropped, and every planned entry gets
/// its body back.
fn undo_plan(signing: &SigningThread, planned: Planned, batch: &mut [WriteRequest]) {
    signing.discard(planned.outstanding);
    for (slot, request) in planned.slots.into_iter().zip(batch.iter_mut()) {
        if let Slot::Signing(planned) = slot {
            request.entry.body = planned.0.body;
        }
    }
}

/// A batch planned for the signing thread (see [`Writer::plan`]).
struct Planned {
    /// One per entry of the batch, in order.
    slots: Vec<Slot>,
    /// Signatures handed over and not yet collected.
    outstanding: usize,
    /// The heads after the last planned entry.
    end: Heads,
}

/// The next batch, planned before the current one commits (see [`Writer::plan_ahead`]).
struct Ahead {
    /// The heads it was planned from: those the batch before leaves if it commits.
    from_seq: u64,
    from_hash: [u8; 32],
    signer_id: String,
    planned: Planned,
}

impl Ahead {
    /// Whether the plan starts from `heads`, for this signer.
    fn fits(&self, heads: &Heads, identity: &SignerIdentity) -> bool {
        self.from_seq == heads.last_seq
            && self.from_hash == heads.last_hash
            && self.signer_id == identity.id
    }
}

/// True if two entries of the batch carry the same request (the second must see the first's
/// row, so the batch is written one record at a time).
fn repeats_a_request(batch: &[WriteRequest]) -> bool {
    let mut seen = HashSet::with_capacity(batch.len());
    batch
        .iter()
        .filter_map(|request| request.entry.key.as_ref())
        .any(|key| !seen.insert((key.register.as_str(), key.request_id.as_str())))
}

/// What numbering an entry takes from the heads, applied once its row is in.
#[derive(Default)]
struct Advance {
    event: Option<(String, u64, u64)>,
    series: Option<(String, u64)>,
}

impl Advance {
    fn apply(&self, heads: &mut Heads) {
        if let Some((label, counter, total)) = &self.event {
            set_counter(&mut heads.event_counters, label, *counter);
            heads.total_counter = *total;
        }
        if let Some((series, next)) = &self.series {
            set_counter(&mut heads.series, series, *next);
        }
    }
}

fn set_counter(counters: &mut std::collections::HashMap<String, u64>, key: &str, value: u64) {
    match counters.get_mut(key) {
        Some(n) => *n = value,
        None => {
            counters.insert(key.to_owned(), value);
        }
    }
}

/// Takes the entry's body and adds what the writer decides: the request key, the counters
/// and the ticket number that follow `heads`.
fn number_entry<'a>(
    heads: &Heads,
    entry: &mut Entry,
    encoded: Option<&'a EncodedBody>,
) -> Numbered<'a> {
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
    let mut advance = Advance::default();
    if let Some(label) = entry.counters {
        let label = label.to_string();
        let counter = heads.event_counters.get(&label).copied().unwrap_or(0) + 1;
        let total = heads.total_counter + 1;
        body.insert("event_counter".into(), json!(counter));
        body.insert("total_counter".into(), json!(total));
        index.label = Some(label.clone());
        index.event_counter = Some(counter);
        index.total_counter = Some(total);
        advance.event = Some((label, counter, total));
    }
    if let Some(series) = &entry.series {
        let next = heads.series.get(series).copied().unwrap_or(0) + 1;
        body.insert("ticket_series".into(), json!(series));
        body.insert("ticket_number".into(), json!(next));
        index.series = Some(series.clone());
        index.series_number = Some(next);
        advance.series = Some((series.clone(), next));
    }
    Numbered {
        kind: entry.kind,
        body,
        index,
        advance,
        encoded,
    }
}

/// A record numbered, encoded and hashed, waiting for its signature.
struct Staged {
    seq: u64,
    kind: RecordKind,
    time: String,
    /// `time`, for the heads (the next record may not be earlier).
    at: chrono::DateTime<chrono::FixedOffset>,
    prev_hash: [u8; 32],
    hash: [u8; 32],
    body: Map<String, Value>,
    index: IndexColumns,
    advance: Advance,
}

impl Staged {
    /// Moves `heads` past this record: sequence, chain and numbering. Called once its row is
    /// in (or, for the signing thread's plan, once it is planned).
    fn advance(&self, heads: &mut Heads) {
        heads.last_seq = self.seq;
        heads.last_hash = self.hash;
        heads.last_time = Some(self.at);
        self.advance.apply(heads);
    }

    fn into_appended(
        self,
        fdm_id: &str,
        identity: &SignerIdentity,
        signature: Vec<u8>,
    ) -> Appended {
        Appended {
            seq: self.seq,
            kind: self.kind,
            time: self.time,
            fdm_id: fdm_id.to_owned(),
            signer_id: identity.id.clone(),
            hash: self.hash,
            signature,
            body: self.body,
            duplicate: false,
            storage_nearly_full: false,
        }
    }
}

/// An entry of a batch during a pipelined write.
enum Slot {
    /// Answered without a new record (a stored answer), or failed before signing.
    Done(Result<Appended, AppendError>),
    /// Encoded and hashed (with its canonical bytes and numbering), its signature on the way.
    Signing(Box<(Staged, Vec<u8>)>),
}

/// A record's content once numbered, before it is encoded.
struct Numbered<'a> {
    kind: RecordKind,
    /// The members the writer set, added to the body the entry carried: the whole body, or
    /// nothing else when the caller kept it and sent it `encoded`.
    body: Map<String, Value>,
    index: IndexColumns,
    advance: Advance,
    /// The body's other members, encoded by the caller.
    encoded: Option<&'a EncodedBody>,
}

/// The record that follows `heads`: its canonical bytes into `canonical`, and its hash.
fn encode_record(
    config: &JournalConfig,
    canonical: &mut Vec<u8>,
    heads: &Heads,
    identity: &SignerIdentity,
    numbered: Numbered<'_>,
) -> Result<Staged, AppendError> {
    let Numbered {
        kind,
        body,
        index,
        advance,
        encoded,
    } = numbered;
    let seq = heads.last_seq + 1;
    let at = config.clock.now();
    // Records never go back in time: a clock set back (a box without a hardware clock, a
    // wrong NTP server) stops signing until it has passed the journal's last record again.
    if let Some(last) = heads.last_time
        && at < last
    {
        return Err(AppendError::ClockBehind {
            now: format_time(at),
            last: format_time(last),
        });
    }
    let time = format_time(at);
    let prev_hash = if heads.last_seq == 0 {
        GENESIS_PREV_HASH
    } else {
        heads.last_hash
    };
    let envelope = Envelope {
        seq,
        kind,
        time: &time,
        fdm_id: &config.fdm_id,
        signer_id: &identity.id,
        prev_hash: &prev_hash,
        body: &body,
    };
    match encoded {
        Some(encoded) => {
            envelope.write_canonical_with_body(canonical, |out| encoded.write_with(out, &index))
        }
        None => envelope.write_canonical(canonical),
    }
    .map_err(|e| AppendError::Encoding(e.to_string()))?;
    // The merged bytes must be the body's own canonical bytes; every test run checks it.
    #[cfg(debug_assertions)]
    assert!(
        encoded.is_none_or(|encoded| encoded.matches_canonical(&envelope, &body, canonical)),
        "merged body encoding differs from the canonical encoding"
    );
    let hash = record_hash(canonical);
    Ok(Staged {
        at,
        seq,
        kind,
        time,
        prev_hash,
        hash,
        body,
        index,
        advance,
    })
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
