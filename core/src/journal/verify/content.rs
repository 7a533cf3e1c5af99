//! The checks a record passes on its own bytes, without looking at any other record: its hash,
//! its canonical form, the envelope's fields and (for a database row) its index columns. They are
//! pure functions of the record, so they run on any thread, many records at once; what they find
//! is kept in a [`Prepared`] for the checks that follow the chain ([`super::Verifier`]).

use super::{DeclaredSigner, VerifyError, fail};
use crate::journal::canonical::to_canonical;
use crate::journal::record::{FORMAT_VERSION, RecordKind, record_hash};
use crate::journal::store::StoredRecord;
use serde_json::Value;

/// One record after the checks of its own bytes.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    /// Sequence number the record is stored or exported under.
    pub(crate) seq: u64,
    /// SHA-256 of the canonical bytes (equal to the stored hash when `content` is `Ok`).
    pub(crate) hash: [u8; 32],
    /// The stored signature.
    pub(crate) signature: Vec<u8>,
    /// The envelope's fields, or the first problem of the record's own bytes (hash, JSON,
    /// canonical form, version, inner `seq`, kind, `prev_hash` syntax), in the documented order.
    pub(crate) content: Result<Content, VerifyError>,
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
        signature,
        content: content.map(|(content, _)| content),
    }
}

/// Checks a database row: the record, then its index columns against the signed bytes.
pub(crate) fn prepare_stored(r: &StoredRecord) -> Prepared {
    let (computed, content) = examine(r.seq, &r.canonical, &r.hash);
    Prepared {
        seq: r.seq,
        hash: computed,
        signature: r.signature.clone(),
        content: content.map(|(mut content, envelope)| {
            content.column_problem = column_problem(r, &envelope).map(|column| VerifyError {
                seq: r.seq,
                problem: format!("column {column} differs from the signed record"),
            });
            content
        }),
    }
}

fn examine(
    seq: u64,
    canonical: &[u8],
    hash: &[u8],
) -> ([u8; 32], Result<(Content, Value), VerifyError>) {
    let computed = record_hash(canonical);
    (computed, examine_bytes(seq, canonical, &computed, hash))
}

fn examine_bytes(
    seq: u64,
    canonical: &[u8],
    computed: &[u8; 32],
    hash: &[u8],
) -> Result<(Content, Value), VerifyError> {
    // 2. hash
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
    // 4. the chain's link, as far as the record's own bytes go
    let prev_hash = envelope
        .get("prev_hash")
        .and_then(Value::as_str)
        .and_then(|h| hex::decode(h).ok())
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .map_or_else(|| fail(seq, "prev_hash is not 64 hex characters"), Ok)?;
    let body = envelope.get("body");
    let field = |name: &str| body.and_then(|b| b.get(name));
    let declaration =
        matches!(kind, RecordKind::JournalOpen | RecordKind::SignerChange).then(|| {
            field("signer")
                .cloned()
                .and_then(|s| serde_json::from_value::<DeclaredSigner>(s).ok())
        });
    let counters = (kind == RecordKind::FiscalEvent).then(|| Counters {
        label: field("label")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned(),
        event: field("event_counter").and_then(Value::as_u64),
        total: field("total_counter").and_then(Value::as_u64),
    });
    let series = match (
        field("ticket_series").and_then(Value::as_str),
        field("ticket_number").and_then(Value::as_u64),
    ) {
        (Some(series), Some(number)) => Some((series.to_owned(), number)),
        _ => None,
    };
    let signer_id = envelope
        .get("signer_id")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    Ok((
        Content {
            kind,
            prev_hash,
            signer_id,
            declaration,
            counters,
            series,
            column_problem: None,
        },
        envelope,
    ))
}

/// The first index column of a row that says something else than its canonical bytes (the
/// columns are not hashed, so they must not be trusted unchecked).
fn column_problem(r: &StoredRecord, envelope: &Value) -> Option<&'static str> {
    fn text(v: Option<&Value>) -> Option<&str> {
        v.and_then(Value::as_str)
    }
    let body = envelope.get("body");
    let field = |name: &str| body.and_then(|b| b.get(name));
    if text(envelope.get("kind")) != Some(r.kind.as_str()) {
        return Some("kind");
    }
    if text(envelope.get("signer_id")) != Some(r.signer_id.as_str()) {
        return Some("signer_id");
    }
    if text(envelope.get("time")) != Some(r.time.as_str()) {
        return Some("time");
    }
    if text(envelope.get("prev_hash")) != Some(hex::encode(&r.prev_hash).as_str()) {
        return Some("prev_hash");
    }
    let i = &r.index;
    let fiscal = r.kind == RecordKind::FiscalEvent.as_str();
    let with_digest = i.request_digest.is_some();
    let pairs: [(&'static str, Option<&str>, Option<&str>); 3] = [
        (
            "register_id",
            i.register_id.as_deref(),
            if with_digest {
                text(field("register"))
            } else {
                None
            },
        ),
        (
            "request_id",
            i.request_id.as_deref(),
            if with_digest {
                text(field("request_id"))
            } else {
                None
            },
        ),
        (
            "label",
            i.label.as_deref(),
            if fiscal { text(field("label")) } else { None },
        ),
    ];
    for (name, column, signed) in pairs {
        if column != signed {
            return Some(name);
        }
    }
    let num = |name: &str| field(name).and_then(Value::as_u64);
    if i.event_counter != (if fiscal { num("event_counter") } else { None })
        || i.total_counter != (if fiscal { num("total_counter") } else { None })
    {
        return Some("event_counter/total_counter");
    }
    if i.series.as_deref() != text(field("ticket_series"))
        || i.series_number != num("ticket_number")
    {
        return Some("series/series_number");
    }
    if i.request_digest.is_some() != i.request_id.is_some()
        || (with_digest && i.request_digest.as_deref() != text(field("request_digest")))
    {
        return Some("request_digest");
    }
    None
}
