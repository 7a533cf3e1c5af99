//! The one-by-one verifier as it was before verification ran on every core (at 5bb5262), kept
//! for the tests only: the parallel verifier must name the same first bad record with the same
//! problem for every input. Its checks follow `docs/journal-format.md` so that an independent verifier written from that
//! page finds the same first bad record:
//! 1. sequence numbers follow each other without gap or repeat;
//! 2. SHA-256 of the canonical bytes equals the stored hash;
//! 3. the bytes are canonical JSON and their `seq` is the record's;
//! 4. `prev_hash` is the previous record's hash (64 zeros before the first);
//! 5. the signer is declared (journal_open / signer_change; for a slice also the export header,
//!    whose keys are then reported as unanchored) and, when keys are given, is one of them; the
//!    signature over the hash verifies;
//! 6. fiscal counters, ticket numbers and report numbers continue without gap.

#![allow(clippy::unwrap_used)]

use super::{
    Anchor, AnchorError, DeclaredSigner, TrustBook, VerifyError, VerifySummary, undeclared,
};
use crate::journal::canonical::to_canonical;
use crate::journal::export::{EXPORT_FORMAT, EXPORT_VERSION, ExportError, ExportHeader};
use crate::journal::record::{FORMAT_VERSION, GENESIS_PREV_HASH, RecordKind, record_hash};
use crate::journal::store::StoredRecord;
use crate::signer::verify_ed25519;
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;
use std::io::BufRead;

/// Checks records one by one, in order.
pub struct Verifier {
    expect_genesis: bool,
    trusted: Vec<Vec<u8>>,
    /// Each signer, and whether only the export header declares it.
    signers: HashMap<String, (DeclaredSigner, bool)>,
    prev: Option<(u64, [u8; 32])>,
    total_counter: Option<u64>,
    event_counters: HashMap<String, u64>,
    series: HashMap<String, u64>,
    used_signers: Vec<DeclaredSigner>,
    trust: TrustBook,
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
            signers: if expect_genesis {
                HashMap::new()
            } else {
                known_signers
                    .into_iter()
                    .map(|s| (s.id.clone(), (s, true)))
                    .collect()
            },
            prev: None,
            total_counter: None,
            event_counters: HashMap::new(),
            series: HashMap::new(),
            used_signers: Vec::new(),
            trust: TrustBook::default(),
        }
    }

    pub fn with_anchors(mut self, anchors: Vec<Anchor>) -> Self {
        self.trust = TrustBook::new(anchors);
        self
    }

    pub fn anchor_problem(&self) -> Option<AnchorError> {
        self.trust
            .problem(self.summary.first_seq, self.summary.last_seq)
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
            self.signers.insert(declared.id.clone(), (declared, false));
        }
        let signer_id = envelope
            .get("signer_id")
            .and_then(Value::as_str)
            .unwrap_or("");
        let Some((signer, from_header)) = self.signers.get(signer_id).cloned() else {
            return fail(seq, undeclared(signer_id, self.expect_genesis));
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
        if from_header {
            self.trust.header_signed(&signer, seq);
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
        self.trust.record(seq, &computed);
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
        self.trust.settle(&mut self.summary, &self.trusted);
        self.summary
    }
}

#[derive(Deserialize)]
struct RecordLine {
    #[serde(rename = "type")]
    #[allow(dead_code)]
    line_type: String,
    seq: u64,
    hash: String,
    signature: String,
    record: String,
}

#[derive(Deserialize)]
struct EndLine {
    #[serde(rename = "type")]
    #[allow(dead_code)]
    line_type: String,
    records: u64,
    last_hash: Option<String>,
}

const MAX_LINE_BYTES: usize = crate::journal::export::MAX_LINE_BYTES;

/// Verifies an export file on its own. `trusted_keys` are public keys given out of band; without
/// them the keys declared in the journal and the header are used (and the summary says so).
pub(super) fn verify_export(
    input: impl BufRead,
    trusted_keys: Vec<Vec<u8>>,
    anchors: Vec<Anchor>,
) -> Result<(ExportHeader, VerifySummary), ExportError> {
    let mut lines = BoundedLines { input, line: 0 };
    let format = |line: u64, problem: String| ExportError::Format { line, problem };
    let first = lines
        .next_line()?
        .ok_or_else(|| format(1, "the export is empty".into()))?;
    let header: ExportHeader = serde_json::from_str(&first)
        .map_err(|e| format(1, format!("not an export header: {e}")))?;
    if header.line_type != "header"
        || header.format != EXPORT_FORMAT
        || header.version != EXPORT_VERSION
    {
        return Err(format(
            1,
            format!("not a {EXPORT_FORMAT} version {EXPORT_VERSION} header"),
        ));
    }
    let mut verifier = Verifier::new(header.first_seq == 1, trusted_keys, header.signers.clone())
        .with_anchors(anchors);
    let mut end: Option<EndLine> = None;
    let mut count = 0u64;
    while let Some(text) = lines.next_line()? {
        let n = lines.line;
        if end.is_some() {
            return Err(format(n, "text after the end line".into()));
        }
        let value: Value =
            serde_json::from_str(&text).map_err(|e| format(n, format!("not JSON: {e}")))?;
        match value.get("type").and_then(Value::as_str) {
            Some("record") => {
                let r: RecordLine = serde_json::from_value(value)
                    .map_err(|e| format(n, format!("bad record line: {e}")))?;
                if count == 0 && r.seq != header.first_seq {
                    return Err(VerifyError {
                        seq: header.first_seq,
                        problem: format!(
                            "record is missing (the export starts at record {})",
                            r.seq
                        ),
                    }
                    .into());
                }
                let hash = hex::decode(&r.hash).map_err(|_| format(n, "hash is not hex".into()))?;
                let signature = hex::decode(&r.signature)
                    .map_err(|_| format(n, "signature is not hex".into()))?;
                verifier.check(r.seq, r.record.as_bytes(), &hash, &signature)?;
                count += 1;
            }
            Some("end") => {
                end = Some(
                    serde_json::from_value(value)
                        .map_err(|e| format(n, format!("bad end line: {e}")))?,
                );
            }
            _ => return Err(format(n, "unknown line type".into())),
        }
    }
    let Some(end) = end else {
        return Err(format(
            lines.line + 1,
            "the end line is missing: the export was cut short".into(),
        ));
    };
    let anchor_problem = verifier.anchor_problem();
    let summary = verifier.finish();
    if end.records != count
        || summary.last_seq.unwrap_or(0) != header.last_seq
        || end.last_hash != summary.last_hash
    {
        return Err(VerifyError {
            seq: summary.last_seq.map_or(header.first_seq, |s| s + 1),
            problem: format!(
                "the export announces records {} to {} ({} records) but holds {count}{}",
                header.first_seq,
                header.last_seq,
                end.records,
                summary
                    .last_seq
                    .map_or(String::new(), |seq| format!(" ending at record {seq}"))
            ),
        }
        .into());
    }
    if let Some(e) = anchor_problem {
        return Err(e.into());
    }
    Ok((header, summary))
}

struct BoundedLines<R> {
    input: R,
    line: u64,
}

impl<R: BufRead> BoundedLines<R> {
    fn next_line(&mut self) -> Result<Option<String>, ExportError> {
        let mut buf = Vec::new();
        let read = std::io::Read::take(&mut self.input, MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut buf)?;
        if read == 0 {
            return Ok(None);
        }
        self.line += 1;
        if buf.len() > MAX_LINE_BYTES {
            return Err(ExportError::Format {
                line: self.line,
                problem: format!("line longer than {MAX_LINE_BYTES} bytes"),
            });
        }
        if buf.last() == Some(&b'\n') {
            buf.pop();
        }
        String::from_utf8(buf)
            .map(Some)
            .map_err(|_| ExportError::Format {
                line: self.line,
                problem: "not UTF-8".into(),
            })
    }
}
