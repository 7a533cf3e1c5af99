//! Days without a Z report (issue 15 point 5): which Z series have fiscal events on an FDM date
//! before today that no Z report covers yet.
//!
//! Kept incrementally, so that status costs nothing that grows with the journal: read once at
//! start-up ([`DailyClose::load`]: each series' last Z report by the series index, then the
//! dates of each register's fiscal events after its series' last Z, from the index columns
//! alone; a register that never made a Z through the request index, so a spare or revoked
//! till does not make every start read the whole journal), then advanced by every fiscal event
//! journaled ([`DailyClose::saw`]) and every Z report ([`DailyClose::closed`]). What it holds is
//! bounded by the series and the days still open: per series, per FDM date, the last sequence
//! number of that date.

use super::{ReportError, ReportKind, envelope_body, report_series};
use crate::journal::query::FiscalEventsOf;
use crate::journal::record::RecordKind;
use crate::journal::{Appended, Clock, format_time, query};
use crate::service::{Numbering, SeriesScope};
use crate::status::{Problem, ProblemCode};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Per Z series, per FDM date (`YYYY-MM-DD`), the last fiscal event of that date not yet
/// covered by a Z report.
type Open = BTreeMap<String, BTreeMap<String, u64>>;

/// The open periods of every Z series.
pub struct DailyClose {
    numbering: Numbering,
    clock: Arc<dyn Clock>,
    /// None until read from the journal.
    open: Mutex<Option<Open>>,
}

impl DailyClose {
    /// Nothing known yet (nothing reported until [`DailyClose::load`] or [`DailyClose::start_empty`]).
    pub fn new(numbering: Numbering, clock: Arc<dyn Clock>) -> Self {
        DailyClose {
            numbering,
            clock,
            open: Mutex::new(None),
        }
    }

    /// For a new, empty journal: nothing open.
    pub fn start_empty(&self) {
        *self.lock() = Some(Open::new());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Open>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The Z series a fiscal event from `register` belongs to.
    fn series_of(&self, register: Option<&str>) -> String {
        report_series(&self.numbering, register, ReportKind::Z)
    }

    fn add(&self, open: &mut Open, seq: u64, time: &str, body: &Map<String, Value>) {
        let register = body.get("register").and_then(Value::as_str);
        let date = time.get(..10).unwrap_or(time).to_owned();
        let last = open
            .entry(self.series_of(register))
            .or_default()
            .entry(date)
            .or_insert(seq);
        *last = (*last).max(seq);
    }

    /// Reads what is open from the journal at `path`. `registers` are the registers whose
    /// series may be open (every enrolled one, revoked ones too) when each register has its own
    /// series; the fiscal events read are those after the oldest last Z report among them.
    /// Call it before any record is journaled (the daemon does, before the restaurant state is
    /// ready, which orders and reports wait for).
    pub fn load(&self, path: &Path, registers: &[String]) -> Result<(), ReportError> {
        if !path.exists() {
            self.start_empty();
            return Ok(());
        }
        let conn = query::open_read_only(path).map_err(|e| ReportError::Read(e.to_string()))?;
        let open = query::in_snapshot(&conn, |conn| self.read(conn, registers))?;
        *self.lock() = Some(open);
        Ok(())
    }

    fn read(&self, conn: &rusqlite::Connection, registers: &[String]) -> Result<Open, ReportError> {
        let mut open = Open::new();
        if self.numbering.scope == SeriesScope::Establishment {
            let series = self.series_of(None);
            let up_to = self.closed_up_to(conn, &series)?;
            let days = query::fiscal_days(conn, FiscalEventsOf::AllRegisters, up_to)?;
            Self::merge(&mut open, series, days);
            return Ok(open);
        }
        // Each register from its own series' last Z: a register that never made one (a
        // revoked till, a spare handheld) is read through the request index, so that it does
        // not make every start read the whole journal.
        let mut closed: BTreeMap<String, u64> = BTreeMap::new();
        for register in registers {
            let series = self.series_of(Some(register));
            let up_to = match closed.get(&series) {
                Some(n) => *n,
                None => {
                    let n = self.closed_up_to(conn, &series)?;
                    closed.insert(series.clone(), n);
                    n
                }
            };
            let of = if up_to == 0 {
                FiscalEventsOf::RegisterByIndex(register)
            } else {
                FiscalEventsOf::RegisterAfter(register)
            };
            let days = query::fiscal_days(conn, of, up_to)?;
            Self::merge(&mut open, series, days);
        }
        Ok(open)
    }

    /// The last record the last Z report of `series` covered (0 when it has none).
    fn closed_up_to(&self, conn: &rusqlite::Connection, series: &str) -> Result<u64, ReportError> {
        Ok(match query::last_in_series(conn, series)? {
            Some(z) => {
                let body = Value::Object(envelope_body(&z.canonical, z.seq)?);
                body.pointer("/period/last_seq")
                    .and_then(Value::as_u64)
                    .unwrap_or(z.seq)
            }
            None => 0,
        })
    }

    fn merge(open: &mut Open, series: String, days: Vec<(String, u64)>) {
        if days.is_empty() {
            return;
        }
        let dates = open.entry(series).or_default();
        for (date, last) in days {
            let l = dates.entry(date).or_insert(last);
            *l = (*l).max(last);
        }
    }

    /// A record was journaled: a fiscal event opens (or extends) its series' day.
    pub fn saw(&self, a: &Appended) {
        if a.duplicate || a.kind != RecordKind::FiscalEvent {
            return;
        }
        if let Some(open) = self.lock().as_mut() {
            self.add(open, a.seq, &a.time, &a.body);
        }
    }

    /// A Z report of `series` covering the records up to `last_seq` was journaled.
    pub fn closed(&self, series: &str, last_seq: u64) {
        if let Some(open) = self.lock().as_mut()
            && let Some(dates) = open.get_mut(series)
        {
            dates.retain(|_, last| *last > last_seq);
            if dates.is_empty() {
                open.remove(series);
            }
        }
    }

    /// Every series with fiscal events on a date before today (the clock's FDM date) that no Z
    /// report covers: the series and the first such date.
    pub fn missing(&self) -> Vec<(String, String)> {
        let now = format_time(self.clock.now());
        let today = now.get(..10).unwrap_or(&now);
        self.lock()
            .as_ref()
            .map(|open| {
                open.iter()
                    .filter_map(|(series, dates)| {
                        let (first, _) = dates.first_key_value()?;
                        (first.as_str() < today).then(|| (series.clone(), first.clone()))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The `z_report_missing` problems: one per series.
    pub fn problems(&self) -> Vec<Problem> {
        self.missing()
            .into_iter()
            .map(|(series, since)| Problem {
                code: ProblemCode::ZReportMissing,
                headline: format!("{} since {since}", ProblemCode::ZReportMissing.headline()),
                detail: Some(format!("no Z report for series {series} since {since}")),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, FixedOffset};
    use serde_json::json;

    struct At(Mutex<DateTime<FixedOffset>>);
    impl Clock for At {
        fn now(&self) -> DateTime<FixedOffset> {
            *self.0.lock().unwrap()
        }
    }

    fn event(seq: u64, time: &str, register: &str) -> Appended {
        let Value::Object(body) = json!({"register": register}) else {
            unreachable!()
        };
        Appended {
            seq,
            kind: RecordKind::FiscalEvent,
            time: time.into(),
            fdm_id: String::new(),
            signer_id: String::new(),
            hash: [0; 32],
            signature: Vec::new(),
            body,
            duplicate: false,
            storage_nearly_full: false,
        }
    }

    #[test]
    fn a_past_day_stays_missing_until_a_z_covers_its_last_event() {
        let clock = Arc::new(At(Mutex::new(
            DateTime::parse_from_rfc3339("2026-12-05T09:00:00+01:00").unwrap(),
        )));
        let d = DailyClose::new(Numbering::default(), clock.clone());
        d.start_empty();
        d.saw(&event(1, "2026-12-04T20:00:00.000+01:00", "till-1"));
        d.saw(&event(2, "2026-12-04T21:00:00.000+01:00", "till-1"));
        d.saw(&event(3, "2026-12-05T08:00:00.000+01:00", "till-2"));
        assert_eq!(
            d.missing(),
            [("register/till-1/Z".to_owned(), "2026-12-04".to_owned())]
        );
        // A Z that stopped short of the day's last event does not close it.
        d.closed("register/till-1/Z", 1);
        assert_eq!(d.missing().len(), 1);
        d.closed("register/till-1/Z", 3);
        assert!(d.missing().is_empty());
        // The next day, till-2's day is missing.
        *clock.0.lock().unwrap() += chrono::Duration::days(1);
        assert_eq!(
            d.missing(),
            [("register/till-2/Z".to_owned(), "2026-12-05".to_owned())]
        );
    }
}
