//! The checks a record passes on its own bytes, without looking at any other record: its hash,
//! its canonical form, the envelope's fields and (for a database row) its index columns. They are
//! pure functions of the record, so they run on any thread, many records at once; what they find
//! is kept in a [`Prepared`] for the checks that follow the chain ([`super::Verifier`]).

use super::claims::{ClaimedEvent, ClaimedLine, ClaimedVat, event_problem};
use super::periods::{EventEntry, ReportClaim};
use super::scan::{Read, Scanned, scan};
use super::{DeclaredSigner, VerifyError, fail};
use crate::journal::canonical::to_canonical;
use crate::journal::record::{FORMAT_VERSION, RecordKind, record_hash};
use crate::journal::store::StoredRecord;
use crate::reports::figures::{EventFigures, EventRead};
use crate::reports::merkle::leaf;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The envelope's members (§2 of `docs/journal-format.md`), in canonical order: every record
/// has exactly these, whatever build wrote it (the fixture of 15940aa included).
pub(crate) const ENVELOPE_MEMBERS: [&str; 8] = [
    "body",
    "fdm_id",
    "kind",
    "prev_hash",
    "seq",
    "signer_id",
    "time",
    "v",
];

/// One record after the checks of its own bytes.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    /// Sequence number the record is stored or exported under.
    pub(crate) seq: u64,
    /// SHA-256 of the canonical bytes (equal to the stored hash when `content` is `Ok`).
    pub(crate) hash: [u8; 32],
    /// The hash's Merkle leaf (for the checkpoints of reports).
    pub(crate) leaf: [u8; 32],
    /// The stored signature.
    pub(crate) signature: Vec<u8>,
    /// The envelope's fields, or the first problem of the record's own bytes (hash, JSON,
    /// canonical form, version, inner `seq`, kind, `prev_hash` syntax), in the documented order.
    pub(crate) content: Result<Content, VerifyError>,
    /// The signature as checked ahead of the chain with a guessed key ([`super::speculate`]);
    /// `None` until then, or when nothing could be guessed.
    pub(crate) checked: Option<super::speculate::Checked>,
}

/// What the envelope says, as far as the later checks need it.
#[derive(Debug, Clone)]
pub(crate) struct Content {
    pub(crate) kind: RecordKind,
    pub(crate) prev_hash: [u8; 32],
    /// `signer_id`, empty when missing or not a string.
    pub(crate) signer_id: String,
    /// For `journal_open` and `signer_change`: the declared signer, `None` when malformed.
    pub(crate) declaration: Option<Option<DeclaredSigner>>,
    /// For fiscal events: the counters.
    pub(crate) counters: Option<Counters>,
    /// `ticket_series` and `ticket_number` of the body, when both are there.
    pub(crate) series: Option<(String, u64)>,
    /// For a database row: the first index column that differs from the signed record.
    pub(crate) column_problem: Option<VerifyError>,
    /// For a fiscal event: the first claim its lines contradict (checked after the signature).
    pub(crate) claim_problem: Option<String>,
    /// For a record with a `request_digest`: its register's request, for the duplicate check.
    pub(crate) request: Option<Request>,
    /// For a report: its period and checkpoint, or why they cannot be read.
    pub(crate) report: Option<Result<ReportClaim, String>>,
    /// For a fiscal event: what it adds to the figures of the reports whose period holds it.
    pub(crate) figures: Option<EventEntry>,
}

/// A register's request (`register`, `request_id`) and a 128-bit digest of the pair: the
/// verifier keeps the digests of every request seen (16 bytes each), not the strings.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub(crate) key: u128,
    pub(crate) register: String,
    pub(crate) request_id: String,
}

impl Request {
    fn new(register: &str, request_id: &str) -> Self {
        let mut h = Sha256::new();
        h.update((register.len() as u64).to_le_bytes());
        h.update(register.as_bytes());
        h.update(request_id.as_bytes());
        let digest = h.finalize();
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest[..16]);
        Request {
            key: u128::from_le_bytes(key),
            register: register.to_owned(),
            request_id: request_id.to_owned(),
        }
    }
}

/// The counters of a fiscal event.
#[derive(Debug, Clone)]
pub(crate) struct Counters {
    /// `label`, empty when missing.
    pub(crate) label: String,
    pub(crate) event: Option<u64>,
    pub(crate) total: Option<u64>,
}

/// Checks a record from an export (or given by its parts).
pub(crate) fn prepare(seq: u64, canonical: &[u8], hash: &[u8], signature: Vec<u8>) -> Prepared {
    let (computed, content) = examine(seq, canonical, hash);
    Prepared {
        seq,
        hash: computed,
        leaf: leaf(&computed),
        signature,
        content: content.map(|(content, _)| content),
        checked: None,
    }
}

/// Checks a database row: the record, then its index columns against the signed bytes.
pub(crate) fn prepare_stored(r: &StoredRecord) -> Prepared {
    let (computed, content) = examine(r.seq, &r.canonical, &r.hash);
    Prepared {
        seq: r.seq,
        hash: computed,
        leaf: leaf(&computed),
        signature: r.signature.clone(),
        content: content.map(|(mut content, envelope)| {
            content.column_problem = column_problem(r, &envelope).map(|column| VerifyError {
                seq: r.seq,
                problem: format!("column {column} differs from the signed record"),
            });
            content
        }),
        checked: None,
    }
}

fn examine<'a>(
    seq: u64,
    canonical: &'a [u8],
    hash: &[u8],
) -> ([u8; 32], Result<(Content, Envelope<'a>), VerifyError>) {
    let computed = record_hash(canonical);
    (computed, examine_bytes(seq, canonical, &computed, hash))
}

/// The envelope, read in one pass ([`scan`]) or parsed into a `Value` (the general path).
pub(super) enum Envelope<'a> {
    Scanned(Scanned<'a>),
    Parsed(Value),
}

impl Envelope<'_> {
    /// `envelope.get(name).and_then(Value::as_str)`.
    fn top_str(&self, name: &str) -> Option<&str> {
        match self {
            Envelope::Scanned(s) => as_str(s.top(name)),
            Envelope::Parsed(v) => v.get(name).and_then(Value::as_str),
        }
    }

    /// `envelope.get(name).and_then(Value::as_u64)`.
    fn top_u64(&self, name: &str) -> Option<u64> {
        match self {
            Envelope::Scanned(s) => as_u64(s.top(name)),
            Envelope::Parsed(v) => v.get(name).and_then(Value::as_u64),
        }
    }

    /// The body's member `name` as a string (`None` also when there is no body object).
    fn body_str(&self, name: &str) -> Option<&str> {
        match self {
            Envelope::Scanned(s) => as_str(s.body(name)),
            Envelope::Parsed(v) => v
                .get("body")
                .and_then(|b| b.get(name))
                .and_then(Value::as_str),
        }
    }

    fn body_u64(&self, name: &str) -> Option<u64> {
        match self {
            Envelope::Scanned(s) => as_u64(s.body(name)),
            Envelope::Parsed(v) => v
                .get("body")
                .and_then(|b| b.get(name))
                .and_then(Value::as_u64),
        }
    }

    /// The body's `signer` declaration (never reached for a scanned envelope: [`scan`] leaves
    /// declarations to the general path).
    fn declared_signer(&self) -> Option<DeclaredSigner> {
        match self {
            Envelope::Scanned(_) => None,
            Envelope::Parsed(v) => v
                .get("body")
                .and_then(|b| b.get("signer"))
                .cloned()
                .and_then(|s| serde_json::from_value::<DeclaredSigner>(s).ok()),
        }
    }
}

impl<'a> Envelope<'a> {
    /// The envelope's member names that §2 does not specify, and those it lacks.
    fn member_problem(&self) -> Option<String> {
        if let Envelope::Scanned(s) = self
            && s.top_names()
                .eq(ENVELOPE_MEMBERS.iter().map(|n| n.as_bytes()))
        {
            return None;
        }
        let names: Vec<&str> = match self {
            Envelope::Scanned(s) => s
                .top_names()
                .map(|k| std::str::from_utf8(k).unwrap_or("?"))
                .collect(),
            Envelope::Parsed(v) => v
                .as_object()
                .map(|m| m.keys().map(String::as_str).collect())
                .unwrap_or_default(),
        };
        if names == ENVELOPE_MEMBERS {
            return None;
        }
        let extra: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| !ENVELOPE_MEMBERS.contains(n))
            .collect();
        let missing: Vec<&str> = ENVELOPE_MEMBERS
            .iter()
            .copied()
            .filter(|n| !names.contains(n))
            .collect();
        Some(match (extra.is_empty(), missing.is_empty()) {
            (false, _) => format!(
                "the envelope has member(s) {} that the format does not specify (exactly {} are)",
                extra.join(", "),
                ENVELOPE_MEMBERS.join(", ")
            ),
            _ => format!("the envelope lacks member(s) {}", missing.join(", ")),
        })
    }

    fn body_is_object(&self) -> bool {
        match self {
            Envelope::Scanned(s) => s.top_raw("body").is_some_and(|b| b.first() == Some(&b'{')),
            Envelope::Parsed(v) => v.get("body").is_some_and(Value::is_object),
        }
    }

    /// A body member read into `T` from its bytes or from the parsed tree.
    fn body_typed<T: Deserialize<'a>>(&'a self, name: &str) -> Option<T> {
        match self {
            Envelope::Scanned(s) => serde_json::from_slice(s.body_raw(name)?).ok(),
            Envelope::Parsed(v) => T::deserialize(v.get("body")?.get(name)?).ok(),
        }
    }

    /// The whole body read into `T`.
    fn body_whole<T: Deserialize<'a>>(&'a self) -> Result<T, String> {
        match self {
            Envelope::Scanned(s) => serde_json::from_slice(s.top_raw("body").unwrap_or(b"null"))
                .map_err(|e| e.to_string()),
            Envelope::Parsed(v) => match v.get("body") {
                Some(body) => T::deserialize(body).map_err(|e| e.to_string()),
                None => Err("no body".into()),
            },
        }
    }

    /// A fiscal event's body read once from its bytes (one-pass scan only), for its figures and
    /// the claims of its lines.
    fn event_read(&self) -> Option<EventRead<'a>> {
        match self {
            Envelope::Scanned(s) => {
                Some(EventRead::from_slice(s.top_raw("body").unwrap_or(b"null")))
            }
            Envelope::Parsed(_) => None,
        }
    }

    /// A fiscal event's figures, from the body read once or from the parsed tree.
    fn event_figures(&self, seq: u64, read: Option<&EventRead<'_>>) -> EventEntry {
        match (self, read) {
            (_, Some(read)) => read.figures(seq),
            (Envelope::Scanned(s), None) => {
                EventFigures::from_slice(seq, s.top_raw("body").unwrap_or(b"null"))
            }
            (Envelope::Parsed(v), None) => match v.get("body") {
                Some(Value::Object(body)) => EventFigures::from_body(seq, body),
                _ => EventFigures::from_slice(seq, b"null"),
            },
        }
        .map(std::sync::Arc::new)
    }

    /// What a fiscal event claims. Lines and VAT entries come from the body read once when they
    /// have the usual shape (every member a string); otherwise they are read strictly, as typed
    /// structs, which gives the same result for the usual shape and the reference one otherwise.
    fn claimed_event(&'a self, read: Option<&EventRead<'a>>) -> ClaimedEvent<'a> {
        let lines = read
            .and_then(EventRead::line_texts)
            .map(|lines| lines.into_iter().map(ClaimedLine::from).collect())
            .or_else(|| self.body_typed("lines"));
        let vat = read
            .and_then(EventRead::vat_texts)
            .map(|vat| vat.into_iter().map(ClaimedVat::from).collect())
            .or_else(|| self.body_typed("vat"));
        ClaimedEvent {
            source: self.body_str("source"),
            lines,
            vat,
            total: self.body_str("total"),
            plu_hash: self.body_str("plu_hash"),
        }
    }
}

/// `time` as every build writes it: RFC 3339 with milliseconds and a numeric offset
/// (`2026-11-22T20:15:03.120+01:00`).
pub(crate) fn is_fdm_time(time: &str) -> bool {
    let b = time.as_bytes();
    let digits = |range: std::ops::Range<usize>| b[range].iter().all(u8::is_ascii_digit);
    b.len() == 29
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b[19] == b'.'
        && digits(20..23)
        && matches!(b[23], b'+' | b'-')
        && digits(24..26)
        && b[26] == b':'
        && digits(27..29)
        && chrono::DateTime::parse_from_rfc3339(time).is_ok()
}

fn as_str(read: Read<'_>) -> Option<&str> {
    match read {
        Read::Str(s) => Some(s),
        _ => None,
    }
}

fn as_u64(read: Read<'_>) -> Option<u64> {
    match read {
        Read::U64(n) => Some(n),
        _ => None,
    }
}

fn examine_bytes<'a>(
    seq: u64,
    canonical: &'a [u8],
    computed: &[u8; 32],
    hash: &[u8],
) -> Result<(Content, Envelope<'a>), VerifyError> {
    // 2. hash
    if computed.as_slice() != hash {
        return fail(
            seq,
            "contents do not match the record's hash (the record was changed)",
        );
    }
    // 3. canonical JSON with the right seq
    let envelope = match scan(canonical) {
        Some(scanned) => Envelope::Scanned(scanned),
        None => Envelope::Parsed(parse_canonical(seq, canonical)?),
    };
    let content = read_content(seq, &envelope)?;
    Ok((content, envelope))
}

/// The general path of check 3: parse, and encode again to compare.
fn parse_canonical(seq: u64, canonical: &[u8]) -> Result<Value, VerifyError> {
    let envelope: Value = serde_json::from_slice(canonical)
        .or_else(|e| fail(seq, format!("record is not JSON: {e}")))?;
    match to_canonical(&envelope) {
        Ok(bytes) if bytes == canonical => Ok(envelope),
        _ => fail(seq, "record bytes are not in canonical form"),
    }
}

/// The rest of check 3, the syntax of check 4, and the members the later checks need.
fn read_content(seq: u64, envelope: &Envelope<'_>) -> Result<Content, VerifyError> {
    if envelope.top_u64("v") != Some(FORMAT_VERSION) {
        return fail(
            seq,
            format!("unknown record format version (expected {FORMAT_VERSION})"),
        );
    }
    if envelope.top_u64("seq") != Some(seq) {
        return fail(
            seq,
            "the sequence number inside the record differs from its position",
        );
    }
    if let Some(problem) = envelope.member_problem() {
        return fail(seq, problem);
    }
    if !envelope.body_is_object() {
        return fail(seq, "the body is not an object");
    }
    let kind = envelope
        .top_str("kind")
        .and_then(RecordKind::parse)
        .map_or_else(|| fail(seq, "unknown record kind"), Ok)?;
    match envelope.top_str("time") {
        Some(time) if is_fdm_time(time) => {}
        Some(time) => {
            return fail(
                seq,
                format!(
                    "time {time:?} is not an RFC 3339 time with milliseconds and an offset (like 2026-11-22T20:15:03.120+01:00)"
                ),
            );
        }
        None => return fail(seq, "time is not a string"),
    }
    // 4. the chain's link, as far as the record's own bytes go
    let prev_hash = envelope
        .top_str("prev_hash")
        .and_then(|h| hex::decode(h).ok())
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .map_or_else(|| fail(seq, "prev_hash is not 64 hex characters"), Ok)?;
    let declaration = matches!(kind, RecordKind::JournalOpen | RecordKind::SignerChange)
        .then(|| envelope.declared_signer());
    let counters = (kind == RecordKind::FiscalEvent).then(|| Counters {
        label: envelope.body_str("label").unwrap_or("").to_owned(),
        event: envelope.body_u64("event_counter"),
        total: envelope.body_u64("total_counter"),
    });
    let series = match (
        envelope.body_str("ticket_series"),
        envelope.body_u64("ticket_number"),
    ) {
        (Some(series), Some(number)) => Some((series.to_owned(), number)),
        _ => None,
    };
    let read = (kind == RecordKind::FiscalEvent)
        .then(|| envelope.event_read())
        .flatten();
    let claim_problem = if kind == RecordKind::FiscalEvent {
        event_problem(&envelope.claimed_event(read.as_ref()))
    } else {
        None
    };
    let request = match (
        envelope.body_str("request_digest"),
        envelope.body_str("register"),
        envelope.body_str("request_id"),
    ) {
        (Some(_), Some(register), Some(request_id)) => Some(Request::new(register, request_id)),
        _ => None,
    };
    let report = (kind == RecordKind::Report).then(|| envelope.body_whole::<ReportClaim>());
    let figures =
        (kind == RecordKind::FiscalEvent).then(|| envelope.event_figures(seq, read.as_ref()));
    Ok(Content {
        kind,
        prev_hash,
        signer_id: envelope.top_str("signer_id").unwrap_or("").to_owned(),
        declaration,
        counters,
        series,
        column_problem: None,
        claim_problem,
        request,
        report,
        figures,
    })
}

/// The first index column of a row that says something else than its canonical bytes (the
/// columns are not hashed, so they must not be trusted unchecked).
fn column_problem(r: &StoredRecord, envelope: &Envelope<'_>) -> Option<&'static str> {
    if envelope.top_str("kind") != Some(r.kind.as_str()) {
        return Some("kind");
    }
    if envelope.top_str("signer_id") != Some(r.signer_id.as_str()) {
        return Some("signer_id");
    }
    if envelope.top_str("time") != Some(r.time.as_str()) {
        return Some("time");
    }
    if envelope.top_str("prev_hash") != Some(hex::encode(&r.prev_hash).as_str()) {
        return Some("prev_hash");
    }
    let i = &r.index;
    let fiscal = r.kind == RecordKind::FiscalEvent.as_str();
    let with_digest = i.request_digest.is_some();
    let text = |name: &str| envelope.body_str(name);
    let pairs: [(&'static str, Option<&str>, Option<&str>); 3] = [
        (
            "register_id",
            i.register_id.as_deref(),
            if with_digest { text("register") } else { None },
        ),
        (
            "request_id",
            i.request_id.as_deref(),
            if with_digest {
                text("request_id")
            } else {
                None
            },
        ),
        (
            "label",
            i.label.as_deref(),
            if fiscal { text("label") } else { None },
        ),
    ];
    for (name, column, signed) in pairs {
        if column != signed {
            return Some(name);
        }
    }
    let num = |name: &str| envelope.body_u64(name);
    if i.event_counter != (if fiscal { num("event_counter") } else { None })
        || i.total_counter != (if fiscal { num("total_counter") } else { None })
    {
        return Some("event_counter/total_counter");
    }
    if i.series.as_deref() != text("ticket_series") || i.series_number != num("ticket_number") {
        return Some("series/series_number");
    }
    if i.request_digest.is_some() != i.request_id.is_some()
        || (with_digest && i.request_digest.as_deref() != text("request_digest"))
    {
        return Some("request_digest");
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    /// Whenever the one-pass scan accepts bytes, the general path accepts them too and reads the
    /// same members: checked on a record and every one-byte change of it.
    #[test]
    fn the_scan_accepts_only_what_the_general_path_accepts_and_reads_the_same() {
        let odd = json!({"event_counter": 17, "label": "NS", "lines": [{"d": "x\u{1}\"é", "q": -3}, null, true],
            "register": "till-1", "request_digest": "ab", "request_id": "r-1", "ticket_number": 9,
            "ticket_series": "N", "total_counter": 40});
        // Lines and VAT entries of the usual shape: their claims are read from the body read
        // once for the figures (`EventRead`), which must give what the strict reading gives.
        let usual = json!({"event_counter": 17, "label": "NS", "source": "order", "total": "4.40",
            "lines": [{"description": "Cola", "quantity": "2", "unit": "piece", "unit_price": "2.20",
                "total": "4.40", "vat": "A"}],
            "vat": [{"rate": "A", "percent": "21", "total": "4.40", "vat": "0.76", "base": "3.64"}],
            "payments": [{"method": "cash", "amount": "4.40"}], "plu_hash": "00",
            "register": "till-1", "operator": "op", "total_counter": 40});
        scan_and_general_path_agree(odd, "t");
        scan_and_general_path_agree(usual, "2026-12-06T06:00:00.000+01:00");
    }

    fn scan_and_general_path_agree(body: Value, time: &str) {
        let envelope = json!({"body": body, "fdm_id": "DEVFDMD0001", "kind": "fiscal_event",
            "prev_hash": "ab".repeat(32), "seq": 5, "signer_id": "DEVSW-1", "time": time, "v": 1});
        let bytes = to_canonical(&envelope).unwrap();
        assert!(
            scan(&bytes).is_some(),
            "the record itself takes the fast path"
        );
        let (mut accepted, mut tried) = (0, 0);
        for at in 0..bytes.len() {
            for change in [1u8, 2, 4, 8, 16, 32, 64, 128, b'0' ^ b'1', b'"' ^ b'\\'] {
                let mut b = bytes.clone();
                b[at] ^= change;
                for candidate in [b.clone(), {
                    let mut c = bytes.clone();
                    c.insert(at, bytes[at] ^ change);
                    c
                }] {
                    tried += 1;
                    let Some(scanned) = scan(&candidate) else {
                        continue;
                    };
                    accepted += 1;
                    let parsed = parse_canonical(5, &candidate)
                        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&candidate)));
                    let fast = read_content(5, &Envelope::Scanned(scanned));
                    let slow = read_content(5, &Envelope::Parsed(parsed));
                    assert_eq!(format!("{fast:?}"), format!("{slow:?}"));
                }
            }
        }
        assert!(accepted > 100 && accepted < tried, "{accepted} of {tried}");
    }
}
