//! Verification of a journal or an export: every hash, link, signature and counter.
//!
//! The checks follow `docs/journal-format.md` so that an independent verifier written from that
//! page finds the same first bad record:
//! 1. sequence numbers follow each other without gap or repeat;
//! 2. SHA-256 of the canonical bytes equals the stored hash;
//! 3. the bytes are canonical JSON and their `seq` is the record's;
//! 4. `prev_hash` is the previous record's hash (64 zeros before the first);
//! 5. the signer is declared (journal_open / signer_change, or the export header) and, when keys
//!    are given, is one of them; the signature over the hash verifies;
//! 6. fiscal counters, ticket numbers and report numbers continue without gap.

use super::canonical::to_canonical;
use super::record::{FORMAT_VERSION, GENESIS_PREV_HASH, RecordKind, record_hash};
use super::store::StoredRecord;
use crate::signer::verify_ed25519;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;

/// A signer as declared in the journal or an export header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeclaredSigner {
    /// Signer (VSC) id.
    pub id: String,
    /// Algorithm (`ed25519`).
    pub algorithm: String,
    /// Public key, hex.
    pub public_key: String,
}

/// The first bad record and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("record {seq}: {problem}")]
pub struct VerifyError {
    /// Sequence number of the first bad record (as the record claims, or where one is missing).
    pub seq: u64,
    /// What is wrong.
    pub problem: String,
}

/// What a successful verification covered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifySummary {
    /// Records checked.
    pub records: u64,
    /// First sequence number.
    pub first_seq: Option<u64>,
    /// Last sequence number.
    pub last_seq: Option<u64>,
    /// Hash of the last record, hex.
    pub last_hash: Option<String>,
    /// Fiscal events among them.
    pub fiscal_events: u64,
    /// Signers whose signatures were checked.
    pub signers: Vec<DeclaredSigner>,
    /// True when every signer key was among the keys given to the verifier; false when keys
    /// were taken from the journal itself (compare them with the card or `/v1/signer`).
    pub keys_trusted: bool,
}

/// Checks records one by one, in order.
pub struct Verifier {
    expect_genesis: bool,
    trusted: Vec<Vec<u8>>,
    signers: HashMap<String, DeclaredSigner>,
    prev: Option<(u64, [u8; 32])>,
    total_counter: Option<u64>,
    event_counters: HashMap<String, u64>,
    series: HashMap<String, u64>,
    used_signers: Vec<DeclaredSigner>,
    summary: VerifySummary,
}

fn fail<T>(seq: u64, problem: impl Into<String>) -> Result<T, VerifyError> {
    Err(VerifyError {
        seq,
        problem: problem.into(),
    })
}

impl Verifier {
    /// A verifier for a whole journal (must start at record 1 with `journal_open`), or for a
    /// slice when `expect_genesis` is false. `trusted_keys` are public keys given out of band;
    /// `known_signers` are declarations from an export header (used when a slice starts after
    /// the signer's own declaration).
    pub fn new(
        expect_genesis: bool,
        trusted_keys: Vec<Vec<u8>>,
        known_signers: Vec<DeclaredSigner>,
    ) -> Self {
        Verifier {
            expect_genesis,
            summary: VerifySummary {
                keys_trusted: !trusted_keys.is_empty(),
                ..VerifySummary::default()
            },
            trusted: trusted_keys,
            signers: known_signers
                .into_iter()
                .map(|s| (s.id.clone(), s))
                .collect(),
            prev: None,
            total_counter: None,
            event_counters: HashMap::new(),
            series: HashMap::new(),
            used_signers: Vec::new(),
        }
    }

    /// Checks the next record from an export or a database: its claimed sequence number,
    /// canonical bytes, stored hash and signature. Returns the parsed envelope.
    pub fn check(
        &mut self,
        seq: u64,
        canonical: &[u8],
        hash: &[u8],
        signature: &[u8],
    ) -> Result<Value, VerifyError> {
        // 1. sequence
        match self.prev {
            Some((prev_seq, _)) if seq != prev_seq + 1 => {
                if seq > prev_seq + 1 {
                    return fail(
                        prev_seq + 1,
                        format!(
                            "record is missing (record {prev_seq} is followed by record {seq})"
                        ),
                    );
                }
                return fail(
                    seq,
                    format!("appears out of order or twice (after record {prev_seq})"),
                );
            }
            None if self.expect_genesis && seq != 1 => {
                return fail(
                    1,
                    format!("record is missing (the journal starts at record {seq})"),
                );
            }
            _ => {}
        }
        // 2. hash
        let computed = record_hash(canonical);
        if computed.as_slice() != hash {
            return fail(
                seq,
                "contents do not match the record's hash (the record was changed)",
            );
        }
        // 3. canonical JSON with the right seq
        let envelope: Value = serde_json::from_slice(canonical)
            .or_else(|e| fail(seq, format!("record is not JSON: {e}")))?;
        match to_canonical(&envelope) {
            Ok(bytes) if bytes == canonical => {}
            _ => return fail(seq, "record bytes are not in canonical form"),
        }
        if envelope.get("v").and_then(Value::as_u64) != Some(FORMAT_VERSION) {
            return fail(
                seq,
                format!("unknown record format version (expected {FORMAT_VERSION})"),
            );
        }
        if envelope.get("seq").and_then(Value::as_u64) != Some(seq) {
            return fail(
                seq,
                "the sequence number inside the record differs from its position",
            );
        }
        let kind = envelope
            .get("kind")
            .and_then(Value::as_str)
            .and_then(RecordKind::parse)
            .map_or_else(|| fail(seq, "unknown record kind"), Ok)?;
        // 4. chain
        let prev_hash = envelope
            .get("prev_hash")
            .and_then(Value::as_str)
            .and_then(|h| hex::decode(h).ok())
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .map_or_else(|| fail(seq, "prev_hash is not 64 hex characters"), Ok)?;
        match self.prev {
            Some((prev_seq, expected)) if prev_hash != expected => {
                return fail(
                    seq,
                    format!(
                        "does not follow record {prev_seq}: its prev_hash differs from record {prev_seq}'s hash (a record was inserted, removed, changed or reordered)"
                    ),
                );
            }
            None if self.expect_genesis
                && (prev_hash != GENESIS_PREV_HASH || kind != RecordKind::JournalOpen) =>
            {
                return fail(
                    seq,
                    "the first record must be journal_open with a prev_hash of zeros",
                );
            }
            _ => {}
        }
        // 5. signer and signature
        let body = envelope.get("body").cloned().unwrap_or(Value::Null);
        if matches!(kind, RecordKind::JournalOpen | RecordKind::SignerChange) {
            let declared: DeclaredSigner = body
                .get("signer")
                .cloned()
                .and_then(|s| serde_json::from_value(s).ok())
                .map_or_else(|| fail(seq, "signer declaration is malformed"), Ok)?;
            self.signers.insert(declared.id.clone(), declared);
        }
        let signer_id = envelope
            .get("signer_id")
            .and_then(Value::as_str)
            .unwrap_or("");
        let Some(signer) = self.signers.get(signer_id).cloned() else {
            return fail(
                seq,
                format!(
                    "signed by {signer_id:?}, a signer never declared (give its key with --key)"
                ),
            );
        };
        if signer.algorithm != "ed25519" {
            return fail(
                seq,
                format!(
                    "signer {signer_id} uses {:?}, which this verifier does not know",
                    signer.algorithm
                ),
            );
        }
        let key = hex::decode(&signer.public_key).unwrap_or_default();
        if !self.trusted.is_empty() && !self.trusted.contains(&key) {
            return fail(
                seq,
                format!(
                    "signer {signer_id}'s key {} is not among the trusted keys",
                    signer.public_key
                ),
            );
        }
        if !verify_ed25519(&key, hash, signature) {
            return fail(seq, format!("bad signature (signer {signer_id})"));
        }
        if !self.used_signers.contains(&signer) {
            self.used_signers.push(signer);
        }
        // 6. counters and numbers
        if kind == RecordKind::FiscalEvent {
            self.check_counters(seq, &body)?;
            self.summary.fiscal_events += 1;
        }
        if kind == RecordKind::Report {
            self.check_series(seq, &body)?;
        }
        self.prev = Some((seq, computed));
        self.summary.records += 1;
        self.summary.first_seq.get_or_insert(seq);
        self.summary.last_seq = Some(seq);
        self.summary.last_hash = Some(hex::encode(computed));
        Ok(envelope)
    }

    fn check_counters(&mut self, seq: u64, body: &Value) -> Result<(), VerifyError> {
        let label = body
            .get("label")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let event = body.get("event_counter").and_then(Value::as_u64);
        let total = body.get("total_counter").and_then(Value::as_u64);
        let (Some(event), Some(total)) = (event, total) else {
            return fail(seq, "fiscal event without event and total counters");
        };
        let expect_from = |last: Option<u64>, genesis: bool| last.or(genesis.then_some(0));
        if let Some(last) = expect_from(self.total_counter, self.expect_genesis)
            && total != last + 1
        {
            return fail(
                seq,
                format!(
                    "total counter {total} follows {last} (a fiscal event is missing or repeated)"
                ),
            );
        }
        if let Some(last) = expect_from(
            self.event_counters.get(&label).copied(),
            self.expect_genesis,
        ) && event != last + 1
        {
            return fail(
                seq,
                format!(
                    "{label} counter {event} follows {last} (a {label} event is missing or repeated)"
                ),
            );
        }
        self.total_counter = Some(total);
        self.event_counters.insert(label, event);
        self.check_series(seq, body)
    }

    /// Ticket and report numbers continue without gap within their series.
    fn check_series(&mut self, seq: u64, body: &Value) -> Result<(), VerifyError> {
        let expect_from = |last: Option<u64>, genesis: bool| last.or(genesis.then_some(0));
        if let (Some(series), Some(number)) = (
            body.get("ticket_series").and_then(Value::as_str),
            body.get("ticket_number").and_then(Value::as_u64),
        ) {
            if let Some(last) = expect_from(self.series.get(series).copied(), self.expect_genesis)
                && number != last + 1
            {
                return fail(
                    seq,
                    format!(
                        "ticket number {number} in series {series} follows {last} (the series is interrupted)"
                    ),
                );
            }
            self.series.insert(series.to_owned(), number);
        }
        Ok(())
    }

    /// Checks a database row: the record itself, then that its index columns say what its
    /// canonical bytes say (the columns are not hashed, so they must not be trusted unchecked).
    pub fn check_stored(&mut self, r: &StoredRecord) -> Result<Value, VerifyError> {
        let envelope = self.check(r.seq, &r.canonical, &r.hash, &r.signature)?;
        let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
        let body = envelope.get("body");
        let field = |name: &str| body.and_then(|b| b.get(name));
        let mismatch = |column: &str| {
            fail(
                r.seq,
                format!("column {column} differs from the signed record"),
            )
        };
        if text(envelope.get("kind")).as_deref() != Some(r.kind.as_str()) {
            return mismatch("kind");
        }
        if text(envelope.get("signer_id")).as_deref() != Some(r.signer_id.as_str()) {
            return mismatch("signer_id");
        }
        if text(envelope.get("time")).as_deref() != Some(r.time.as_str()) {
            return mismatch("time");
        }
        if text(envelope.get("prev_hash")) != Some(hex::encode(&r.prev_hash)) {
            return mismatch("prev_hash");
        }
        let i = &r.index;
        let fiscal = r.kind == RecordKind::FiscalEvent.as_str();
        let pairs: [(&str, Option<String>, Option<String>); 3] = [
            (
                "register_id",
                i.register_id.clone(),
                if i.request_digest.is_some() {
                    text(field("register"))
                } else {
                    None
                },
            ),
            (
                "request_id",
                i.request_id.clone(),
                if i.request_digest.is_some() {
                    text(field("request_id"))
                } else {
                    None
                },
            ),
            (
                "label",
                i.label.clone(),
                if fiscal { text(field("label")) } else { None },
            ),
        ];
        for (name, column, signed) in pairs {
            if column != signed {
                return mismatch(name);
            }
        }
        let num = |name: &str| field(name).and_then(Value::as_u64);
        if i.event_counter != (if fiscal { num("event_counter") } else { None })
            || i.total_counter != (if fiscal { num("total_counter") } else { None })
        {
            return mismatch("event_counter/total_counter");
        }
        if i.series != text(field("ticket_series")) || i.series_number != num("ticket_number") {
            return mismatch("series/series_number");
        }
        if i.request_digest.is_some() != i.request_id.is_some()
            || (i.request_digest.is_some() && i.request_digest != text(field("request_digest")))
        {
            return mismatch("request_digest");
        }
        Ok(envelope)
    }

    /// Ends verification.
    pub fn finish(mut self) -> VerifySummary {
        self.summary.signers = self.used_signers;
        self.summary
    }
}
