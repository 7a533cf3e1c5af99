//! `GET /ui/api/today`: today's turnover per hour and per VAT rate, for the chart of the
//! at-a-glance page.
//!
//! Only N events (NS, NR) are turnover (as in the reports, `reports::figures`): P, T and C
//! events are left out. An event's amount per rate is the VAT-inclusive `total` of each of its
//! `vat` entries; a pre-computed event (no lines, no reliable split) counts under
//! [`UNSPLIT`]. The hour is the hour of the event's FDM time (the establishment's local time).
//!
//! Cost: today's records only. The first record of today is found by bisection on the
//! sequence numbers ([`query::seq_range_of_dates_bisected`]), then today's records are read in
//! order; nothing before today is read.

use crate::fiscal::Label;
use crate::fiscal::money::format_amount;
use crate::journal::query;
use crate::journal::read::body_of;
use crate::journal::record::RecordKind;
use rust_decimal::Decimal;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// The rate key of events without a VAT split (pre-computed events).
pub const UNSPLIT: &str = "unsplit";

/// Why today's figures could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TodayError {
    /// Reading the journal failed.
    #[error("journal: {0}")]
    Journal(#[from] rusqlite::Error),
    /// A fiscal event of today is not what the journal format says.
    #[error("record {seq}: {problem}")]
    Event {
        /// Its sequence number.
        seq: u64,
        /// What is wrong.
        problem: String,
    },
}

/// The turnover of one hour.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hour {
    /// NS and NR tickets.
    pub events: u64,
    /// Their total, VAT included.
    pub total: Decimal,
    /// Per VAT rate letter (or [`UNSPLIT`]), VAT included.
    pub by_rate: BTreeMap<String, Decimal>,
}

/// Today's turnover.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Today {
    /// The FDM date, `YYYY-MM-DD`.
    pub date: String,
    /// Per hour of the day (0–23), only the hours with turnover.
    pub hours: BTreeMap<u8, Hour>,
}

fn amount(seq: u64, v: Option<&Value>, what: &str) -> Result<Decimal, TodayError> {
    v.and_then(Value::as_str)
        .and_then(|s| s.parse::<Decimal>().ok())
        .ok_or_else(|| TodayError::Event {
            seq,
            problem: format!("{what} is not a decimal amount"),
        })
}

impl Today {
    /// No turnover yet on `date`.
    pub fn empty(date: &str) -> Today {
        Today {
            date: date.to_owned(),
            hours: BTreeMap::new(),
        }
    }

    /// Adds one fiscal event (its sequence number, FDM time and body).
    pub fn add(
        &mut self,
        seq: u64,
        time: &str,
        body: &Map<String, Value>,
    ) -> Result<(), TodayError> {
        let label_text = body.get("label").and_then(Value::as_str).unwrap_or("");
        let label = Label::parse(label_text).ok_or_else(|| TodayError::Event {
            seq,
            problem: format!("unknown label {label_text:?}"),
        })?;
        if !label.is_vat_receipt() {
            return Ok(());
        }
        let hour = time
            .get(11..13)
            .and_then(|h| h.parse::<u8>().ok())
            .filter(|h| *h < 24)
            .ok_or_else(|| TodayError::Event {
                seq,
                problem: format!("time {time:?} has no hour"),
            })?;
        let total = amount(seq, body.get("total"), "total")?;
        let slot = self.hours.entry(hour).or_default();
        slot.events += 1;
        slot.total += total;
        let split = body.get("lines").and_then(Value::as_array).is_some();
        let vat = body.get("vat").and_then(Value::as_array);
        match vat {
            Some(entries) if split && !entries.is_empty() => {
                for v in entries {
                    let rate = v
                        .get("rate")
                        .and_then(Value::as_str)
                        .filter(|r| !r.is_empty() && r.len() <= 8)
                        .ok_or_else(|| TodayError::Event {
                            seq,
                            problem: "a vat entry has no rate".into(),
                        })?;
                    *slot.by_rate.entry(rate.to_owned()).or_default() +=
                        amount(seq, v.get("total"), "vat total")?;
                }
            }
            _ => *slot.by_rate.entry(UNSPLIT.to_owned()).or_default() += total,
        }
        Ok(())
    }

    /// The day's total, VAT included.
    pub fn total(&self) -> Decimal {
        self.hours.values().map(|h| h.total).sum()
    }

    /// The JSON answer: amounts as decimal strings (two decimals).
    pub fn to_json(&self) -> Value {
        let rates: BTreeSet<&str> = self
            .hours
            .values()
            .flat_map(|h| h.by_rate.keys().map(String::as_str))
            .collect();
        let hours: Vec<Value> = self
            .hours
            .iter()
            .map(|(hour, h)| {
                let by_rate: Map<String, Value> = h
                    .by_rate
                    .iter()
                    .map(|(r, t)| (r.clone(), Value::String(format_amount(*t))))
                    .collect();
                json!({"hour": hour, "events": h.events, "total": format_amount(h.total), "rates": by_rate})
            })
            .collect();
        json!({
            "date": self.date,
            "currency": "EUR",
            "events": self.hours.values().map(|h| h.events).sum::<u64>(),
            "total": format_amount(self.total()),
            "rates": rates,
            "hours": hours,
        })
    }
}

/// Reads the turnover of the FDM date `date` (`YYYY-MM-DD`) from the journal.
pub fn read(conn: &rusqlite::Connection, date: &str) -> Result<Today, TodayError> {
    let mut today = Today::empty(date);
    let Some((first, last)) = query::seq_range_of_dates_bisected(conn, date, date)? else {
        return Ok(today);
    };
    let fiscal = RecordKind::FiscalEvent.as_str();
    query::for_each_in_range(conn, first, last, |r| {
        if r.kind != fiscal {
            return Ok(());
        }
        let body = body_of(&r.canonical).ok_or_else(|| TodayError::Event {
            seq: r.seq,
            problem: "no body".into(),
        })?;
        today.add(r.seq, &r.time, &body)
    })?;
    Ok(today)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn body(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn sums_n_events_per_hour_and_rate_and_leaves_the_others_out() {
        let mut t = Today::empty("2026-12-07");
        let ns = body(
            json!({"label": "NS", "total": "27.00", "lines": [{"total": "27.00"}],
            "vat": [{"rate": "A", "total": "12.10", "vat": "2.10"}, {"rate": "B", "total": "14.90", "vat": "0.84"}]}),
        );
        let nr = body(
            json!({"label": "NR", "total": "-4.40", "lines": [{"total": "-4.40"}],
            "vat": [{"rate": "A", "total": "-4.40", "vat": "-0.76"}]}),
        );
        let ts = body(
            json!({"label": "TS", "total": "99.00", "lines": [{"total": "99.00"}],
            "vat": [{"rate": "A", "total": "99.00", "vat": "17.18"}]}),
        );
        let ps = body(
            json!({"label": "PS", "total": "50.00", "lines": [{"total": "50.00"}],
            "vat": [{"rate": "B", "total": "50.00", "vat": "2.83"}]}),
        );
        let precomputed = body(json!({"label": "NS", "total": "10.00"}));
        t.add(1, "2026-12-07T12:05:00+01:00", &ns).unwrap();
        t.add(2, "2026-12-07T12:59:59+01:00", &nr).unwrap();
        t.add(3, "2026-12-07T12:30:00+01:00", &ts).unwrap();
        t.add(4, "2026-12-07T13:00:00+01:00", &ps).unwrap();
        t.add(5, "2026-12-07T19:00:00+01:00", &precomputed).unwrap();
        assert_eq!(t.total(), "32.60".parse::<Decimal>().unwrap());
        let j = t.to_json();
        assert_eq!(j["events"], 3);
        assert_eq!(j["total"], "32.60");
        assert_eq!(j["rates"], json!(["A", "B", UNSPLIT]));
        assert_eq!(j["hours"][0]["hour"], 12);
        assert_eq!(j["hours"][0]["total"], "22.60");
        assert_eq!(j["hours"][0]["rates"]["A"], "7.70");
        assert_eq!(j["hours"][0]["rates"]["B"], "14.90");
        assert_eq!(j["hours"][1]["hour"], 19);
        assert_eq!(j["hours"][1]["rates"][UNSPLIT], "10.00");
        assert_eq!(j["hours"].as_array().unwrap().len(), 2, "{j}");
    }

    #[test]
    fn bad_events_are_named() {
        let mut t = Today::empty("2026-12-07");
        let e = t
            .add(
                9,
                "2026-12-07T12:00:00+01:00",
                &body(json!({"label": "NS", "total": 3})),
            )
            .unwrap_err();
        assert_eq!(e.to_string(), "record 9: total is not a decimal amount");
        let e = t
            .add(
                10,
                "2026-12-07",
                &body(json!({"label": "NS", "total": "3.00"})),
            )
            .unwrap_err();
        assert!(e.to_string().contains("no hour"), "{e}");
    }
}
