//! The members of a record the back office uses, read from its canonical bytes (after the
//! record verified: the bytes are canonical JSON with the envelope of
//! `docs/journal-format.md` §2).

use chrono::NaiveDate;
use fdmd_core::fiscal::Label;
use fdmd_core::journal::record::RecordKind;
use fdmd_core::journal::verify::DeclaredSigner;
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde::Deserialize;
use serde_json::Value;

/// A record's envelope, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Sequence number.
    pub seq: u64,
    /// Kind.
    pub kind: RecordKind,
    /// FDM time as written (RFC 3339 with the box's offset).
    pub time: String,
    /// The local date of `time`.
    pub fdm_date: NaiveDate,
    /// The FDM production number.
    pub fdm_id: String,
    /// The signer that signed it.
    pub signer_id: String,
    /// The previous record's hash.
    pub prev_hash: [u8; 32],
    /// What the back office reads from the body.
    pub content: Content,
}

/// The body, as far as the back office needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// A fiscal event.
    Fiscal(Fiscal),
    /// An X or Z report.
    Report {
        /// `X` or `Z`.
        report: String,
        /// Its series and number.
        series: Option<(String, u64)>,
    },
    /// `journal_open` or `signer_change`: a signer declared.
    Declaration(DeclaredSigner),
    /// Any other kind.
    Other,
}

/// A fiscal event's counters and turnover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fiscal {
    /// Label (`NS`, `NR`, `PS`…).
    pub label: String,
    /// Counter of the label.
    pub event_counter: u64,
    /// Counter of all fiscal events.
    pub total_counter: u64,
    /// Ticket series and number (orders).
    pub series: Option<(String, u64)>,
    /// Turnover of this event: only NS and NR are turnover (empty otherwise).
    pub turnover: Vec<RateAmount>,
}

/// A ticket's amount at one VAT letter, in cents. Letter `-`: a pre-computed event's total,
/// which carries no VAT split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateAmount {
    /// VAT letter, or `-`.
    pub rate: String,
    /// Total VAT included, in cents.
    pub total_cents: i64,
    /// VAT, in cents.
    pub vat_cents: i64,
}

/// Why a verified record's envelope cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("record {seq}: {problem}")]
pub struct EnvelopeError {
    /// Sequence number.
    pub seq: u64,
    /// What is wrong.
    pub problem: String,
}

/// The envelope's members; the body is read by a second pass into the struct its kind needs
/// (never into a `serde_json::Value` tree: that was a large part of the ingest's CPU).
#[derive(Deserialize)]
struct RawEnvelope {
    seq: u64,
    kind: String,
    time: String,
    fdm_id: String,
    signer_id: String,
    prev_hash: String,
    #[serde(rename = "body")]
    _body: IgnoredBody,
}

/// The body must be an object; its members are read by [`BodyOf`].
#[derive(Deserialize)]
struct IgnoredBody {}

/// Only the envelope's body, read into `B` (the other members are skipped).
#[derive(Deserialize)]
struct BodyOf<B> {
    body: B,
}

#[derive(Deserialize)]
struct RawFiscal {
    label: String,
    event_counter: u64,
    total_counter: u64,
    ticket_series: Option<String>,
    ticket_number: Option<u64>,
    total: String,
    #[serde(default)]
    lines: Option<Vec<serde::de::IgnoredAny>>,
    #[serde(default)]
    vat: Vec<RawVat>,
}

#[derive(Deserialize)]
struct RawVat {
    rate: String,
    total: String,
    vat: String,
}

/// A report's members, read leniently (as `Value::as_str` / `as_u64` would).
#[derive(Deserialize)]
struct RawReport {
    #[serde(default)]
    report: Option<Value>,
    #[serde(default)]
    ticket_series: Option<Value>,
    #[serde(default)]
    ticket_number: Option<Value>,
}

#[derive(Deserialize)]
struct RawDeclaration {
    #[serde(default)]
    signer: Option<Value>,
}

/// Reads the envelope of canonical bytes.
pub fn parse(seq: u64, canonical: &[u8]) -> Result<Envelope, EnvelopeError> {
    let fail = |problem: String| EnvelopeError { seq, problem };
    let raw: RawEnvelope =
        serde_json::from_slice(canonical).map_err(|e| fail(format!("envelope: {e}")))?;
    let kind = RecordKind::parse(&raw.kind).ok_or_else(|| fail(format!("kind {:?}", raw.kind)))?;
    let time = chrono::DateTime::parse_from_rfc3339(&raw.time)
        .map_err(|e| fail(format!("time {:?}: {e}", raw.time)))?;
    let prev_hash: [u8; 32] = hex::decode(&raw.prev_hash)
        .ok()
        .and_then(|h| h.try_into().ok())
        .ok_or_else(|| fail("prev_hash is not 64 hex characters".into()))?;
    let content = match kind {
        RecordKind::FiscalEvent => {
            let f: BodyOf<RawFiscal> = serde_json::from_slice(canonical)
                .map_err(|e| fail(format!("fiscal event body: {e}")))?;
            Content::Fiscal(fiscal(seq, f.body)?)
        }
        RecordKind::Report => {
            let r: BodyOf<RawReport> =
                serde_json::from_slice(canonical).map_err(|e| fail(format!("report body: {e}")))?;
            let r = r.body;
            let series = match (
                r.ticket_series.as_ref().and_then(Value::as_str),
                r.ticket_number.as_ref().and_then(Value::as_u64),
            ) {
                (Some(s), Some(n)) => Some((s.to_owned(), n)),
                _ => None,
            };
            Content::Report {
                report: r
                    .report
                    .as_ref()
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                series,
            }
        }
        RecordKind::JournalOpen | RecordKind::SignerChange => {
            let d: Option<BodyOf<RawDeclaration>> = serde_json::from_slice(canonical).ok();
            let signer = d
                .and_then(|d| d.body.signer)
                .and_then(|s| serde_json::from_value::<DeclaredSigner>(s).ok())
                .ok_or_else(|| fail("signer declaration is malformed".into()))?;
            Content::Declaration(signer)
        }
        _ => Content::Other,
    };
    if raw.seq != seq {
        return Err(fail(format!("the envelope says seq {}", raw.seq)));
    }
    Ok(Envelope {
        seq,
        kind,
        fdm_date: time.date_naive(),
        time: raw.time,
        fdm_id: raw.fdm_id,
        signer_id: raw.signer_id,
        prev_hash,
        content,
    })
}

fn fiscal(seq: u64, f: RawFiscal) -> Result<Fiscal, EnvelopeError> {
    let label = Label::parse(&f.label).ok_or_else(|| EnvelopeError {
        seq,
        problem: format!("unknown label {:?}", f.label),
    })?;
    let mut turnover = Vec::new();
    if label.is_vat_receipt() {
        if f.lines.is_some() {
            for v in &f.vat {
                turnover.push(RateAmount {
                    rate: v.rate.clone(),
                    total_cents: cents(seq, &v.total)?,
                    vat_cents: cents(seq, &v.vat)?,
                });
            }
        } else {
            // A pre-computed event: only its total is known (as in the daemon's Z figures).
            turnover.push(RateAmount {
                rate: "-".into(),
                total_cents: cents(seq, &f.total)?,
                vat_cents: 0,
            });
        }
    }
    let series = match (f.ticket_series, f.ticket_number) {
        (Some(s), Some(n)) => Some((s, n)),
        _ => None,
    };
    Ok(Fiscal {
        label: f.label,
        event_counter: f.event_counter,
        total_counter: f.total_counter,
        series,
        turnover,
    })
}

/// An amount with at most two decimals (`"14.10"`, `"-2.20"`) in cents.
pub fn cents(seq: u64, text: &str) -> Result<i64, EnvelopeError> {
    text.parse::<Decimal>()
        .ok()
        .and_then(|d| d.checked_mul(Decimal::ONE_HUNDRED))
        .filter(|c| c.fract().is_zero())
        .and_then(|c| c.to_i64())
        .ok_or_else(|| EnvelopeError {
            seq,
            problem: format!("{text:?} is not an amount in cents"),
        })
}

/// An amount in cents as a decimal string with two decimals.
pub fn format_cents(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_in_cents() {
        assert_eq!(cents(1, "14.10"), Ok(1410));
        assert_eq!(cents(1, "-2.20"), Ok(-220));
        assert_eq!(cents(1, "0.00"), Ok(0));
        assert!(cents(1, "1.005").is_err());
        assert!(cents(1, "x").is_err());
        assert_eq!(format_cents(-220), "-2.20");
        assert_eq!(format_cents(5), "0.05");
        assert_eq!(format_cents(141_000), "1410.00");
    }
}
