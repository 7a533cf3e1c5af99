//! What the back office reports, read from PostgreSQL: turnover by day and VAT rate (per
//! establishment and chain-wide, from `turnover_daily`), the Z reports as issued, and the
//! establishments with their head, flags and silence.

use crate::Error;
use crate::envelope::format_cents;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use std::time::Duration;
use tokio_postgres::GenericClient;

/// A date range, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    /// First day.
    pub from: NaiveDate,
    /// Last day.
    pub to: NaiveDate,
}

impl Period {
    /// Reads `YYYY-MM-DD` dates; `to` must not come before `from`.
    pub fn parse(from: &str, to: &str) -> Result<Period, Error> {
        let date = |field: &'static str, text: &str| {
            NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .map_err(|_| Error::invalid(field, format!("{text:?} is not a date YYYY-MM-DD")))
        };
        let period = Period {
            from: date("from", from)?,
            to: date("to", to)?,
        };
        if period.to < period.from {
            return Err(Error::invalid("to", "the period ends before it starts"));
        }
        Ok(period)
    }
}

/// Turnover of one day at one VAT rate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnoverRow {
    /// FDM date.
    pub date: NaiveDate,
    /// VAT letter, or `-` for pre-computed events without a VAT split.
    pub rate: String,
    /// NS and NR tickets with an amount at this rate.
    pub tickets: i64,
    /// Total VAT included, in cents.
    pub total_cents: i64,
    /// VAT, in cents.
    pub vat_cents: i64,
}

/// A [`TurnoverRow`] as the API shows it (amounts as decimal strings).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TurnoverLine {
    /// FDM date, `YYYY-MM-DD`.
    pub date: String,
    /// VAT letter, or `-`.
    pub rate: String,
    /// Tickets.
    pub tickets: i64,
    /// Total VAT included.
    pub total: String,
    /// VAT.
    pub vat: String,
    /// Total without VAT.
    pub base: String,
}

impl From<&TurnoverRow> for TurnoverLine {
    fn from(r: &TurnoverRow) -> Self {
        TurnoverLine {
            date: r.date.to_string(),
            rate: r.rate.clone(),
            tickets: r.tickets,
            total: format_cents(r.total_cents),
            vat: format_cents(r.vat_cents),
            base: format_cents(r.total_cents - r.vat_cents),
        }
    }
}

/// Turnover by day and rate, of one establishment or (None) of every establishment.
pub async fn turnover(
    client: &impl GenericClient,
    establishment: Option<&str>,
    period: Period,
) -> Result<Vec<TurnoverRow>, Error> {
    let rows = client
        .query(
            "SELECT fdm_date, rate, sum(tickets)::bigint, sum(total_cents)::bigint,
                    sum(vat_cents)::bigint
               FROM turnover_daily
              WHERE fdm_date BETWEEN $1 AND $2
                AND ($3::text IS NULL OR establishment_id = $3)
              GROUP BY fdm_date, rate ORDER BY fdm_date, rate",
            &[&period.from, &period.to, &establishment],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| TurnoverRow {
            date: r.get(0),
            rate: r.get(1),
            tickets: r.get(2),
            total_cents: r.get(3),
            vat_cents: r.get(4),
        })
        .collect())
}

/// A Z report as issued: its record, and its body as the box signed it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ZReport {
    /// Journal seq of the report record.
    pub seq: i64,
    /// FDM time of the report.
    pub time: String,
    /// Hash of the record, hex.
    pub hash: String,
    /// The record's body (`docs/journal-format.md` §4.2).
    pub body: serde_json::Value,
}

/// The Z reports of an establishment made in the period (by FDM date).
pub async fn z_reports(
    client: &impl GenericClient,
    establishment: &str,
    period: Period,
) -> Result<Vec<ZReport>, Error> {
    let rows = client
        .query(
            "SELECT seq, fdm_time, hash, canonical FROM records
              WHERE establishment_id = $1 AND report = 'Z' AND fdm_date BETWEEN $2 AND $3
              ORDER BY seq",
            &[&establishment, &period.from, &period.to],
        )
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let canonical: Vec<u8> = r.get(3);
        let envelope: serde_json::Value = serde_json::from_slice(&canonical)
            .map_err(|e| Error::invalid("records.canonical", e.to_string()))?;
        let hash: Vec<u8> = r.get(2);
        out.push(ZReport {
            seq: r.get(0),
            time: r.get(1),
            hash: hex::encode(hash),
            body: envelope
                .get("body")
                .cloned()
                .unwrap_or(serde_json::Value::Null),
        });
    }
    Ok(out)
}

/// An establishment as the overview shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EstablishmentState {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// VAT number.
    pub vat_number: String,
    /// FDM production number (from its first record).
    pub fdm_id: Option<String>,
    /// Last stored record.
    pub last_seq: i64,
    /// Its FDM time.
    pub last_record_time: Option<String>,
    /// When the back office last stored a record of it (RFC 3339, UTC).
    pub last_received_at: Option<String>,
    /// No record arrived for longer than the configured time (or none ever did).
    pub silent: bool,
    /// A segment was refused.
    pub flagged: bool,
    /// The code of the last refusal that flagged it.
    pub flag_code: Option<String>,
    /// Its problem.
    pub flag_problem: Option<String>,
    /// Refused segments kept as evidence.
    pub refused_segments: i64,
    /// FDM dates (`YYYY-MM-DD`) before the date of the last record that have NS/NR events no
    /// Z report covers: the events after the last Z report, as the box's own
    /// `z_report_missing` counts them (with per-register Z series, any register's Z counts here).
    pub days_without_z: Vec<String>,
}

/// Every establishment, with `silent` for those quiet longer than `silent_after`.
pub async fn establishments(
    client: &impl GenericClient,
    silent_after: Duration,
) -> Result<Vec<EstablishmentState>, Error> {
    let rows = client
        .query(
            "SELECT e.id, e.name, e.vat_number, e.fdm_id, e.last_seq, e.last_fdm_time,
                    e.last_received_at, e.flagged, e.flag_code, e.flag_problem,
                    (SELECT count(*) FROM refused_segments r WHERE r.establishment_id = e.id),
                    now(),
                    ARRAY(SELECT DISTINCT r.fdm_date::text FROM records r
                           WHERE r.establishment_id = e.id AND r.label IN ('NS', 'NR')
                             AND r.seq > coalesce((SELECT max(z.seq) FROM records z
                                                    WHERE z.establishment_id = e.id
                                                      AND z.report = 'Z'), 0)
                             AND r.fdm_date < (SELECT l.fdm_date FROM records l
                                                WHERE l.establishment_id = e.id
                                                  AND l.seq = e.last_seq)
                           ORDER BY 1)
               FROM establishments e ORDER BY e.id",
            &[],
        )
        .await?;
    let silent_after = chrono::Duration::from_std(silent_after).unwrap_or(chrono::Duration::MAX);
    Ok(rows
        .iter()
        .map(|r| {
            let last: Option<DateTime<Utc>> = r.get(6);
            let now: DateTime<Utc> = r.get(11);
            EstablishmentState {
                id: r.get(0),
                name: r.get(1),
                vat_number: r.get(2),
                fdm_id: r.get(3),
                last_seq: r.get(4),
                last_record_time: r.get(5),
                last_received_at: last
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
                silent: last.is_none_or(|t| now - t > silent_after),
                flagged: r.get(7),
                flag_code: r.get(8),
                flag_problem: r.get(9),
                refused_segments: r.get(10),
                days_without_z: r.get(12),
            }
        })
        .collect())
}
