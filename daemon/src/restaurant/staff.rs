//! Staff presence: WORK IN and WORK OUT.
//!
//! Operators are identified by their INSZ/BIS number. Under FDM v1 a clock-in or clock-out is a
//! signed NS of amount 0 with one line at VAT D (reference §6); fdmd marks those records with
//! `purpose` `work_in` / `work_out`. The presence is a fold over the journal
//! ([`Presence::apply_fiscal`]): rebuilt at start-up, advanced after each durable record.

use crate::fiscal::plu::{plu_hash, plu_record, short_plu};
use crate::fiscal::vat::VatLetter;
use rust_decimal::Decimal;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// A WORK IN or WORK OUT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// Clocked in.
    In,
    /// Clocked out.
    Out,
}

/// The PLU hash of a clocking ticket: one line `WORK IN` / `WORK OUT`, quantity 1, 0.00, VAT D
/// (what fdmd registers, and what a FDM v1 POS hashes when its clocking product has that name;
/// the reference does not give Odoo's product name, so this is an assumption).
pub fn clocking_plu_hash(work: Work) -> String {
    let text = match work {
        Work::In => "WORK IN",
        Work::Out => "WORK OUT",
    };
    let record = plu_record(Decimal::ONE, text, Decimal::ZERO, VatLetter::D);
    plu_hash([record.as_str()])
}

/// Whether a fiscal event body is a WORK IN or WORK OUT. Recognised, in order:
/// - `"purpose": "work_in"` / `"work_out"` (orders with that purpose);
/// - a 0.00 NS whose first line is `WORK IN` / `WORK OUT` (the FDM v1 practice of the reference
///   §6, sent as a plain order);
/// - a 0.00 NS pre-computed event (FDM v1 `H`, no lines) whose PLU hash is the one of that single
///   line ([`clocking_plu_hash`]; the last 8 characters when the POS sent only those).
pub fn work_event(body: &Map<String, Value>) -> Option<Work> {
    match body.get("purpose").and_then(Value::as_str) {
        Some("work_in") => return Some(Work::In),
        Some("work_out") => return Some(Work::Out),
        _ => {}
    }
    if body.get("label").and_then(Value::as_str) != Some("NS")
        || body.get("total").and_then(Value::as_str) != Some("0.00")
    {
        return None;
    }
    if body.get("source").and_then(Value::as_str) == Some("precomputed") {
        let sent = body.get("plu_hash").and_then(Value::as_str)?;
        return [Work::In, Work::Out]
            .into_iter()
            .find(|w| precomputed_plu_matches(sent, &clocking_plu_hash(*w)));
    }
    let first = body
        .get("lines")
        .and_then(Value::as_array)
        .and_then(|l| l.first())
        .and_then(|l| l.get("description"))
        .and_then(Value::as_str)?;
    let normalised: String = first.split_whitespace().collect::<Vec<_>>().join(" ");
    match normalised.to_ascii_uppercase().as_str() {
        "WORK IN" => Some(Work::In),
        "WORK OUT" => Some(Work::Out),
        _ => None,
    }
}

/// A PLU hash as a FDM v1 POS sent it (40 hex characters, or only the last 8) against a full one.
pub fn precomputed_plu_matches(sent: &str, full: &str) -> bool {
    let sent = sent.trim().to_ascii_lowercase();
    match sent.len() {
        40 => sent == full,
        8 => sent == short_plu(full),
        _ => false,
    }
}

/// An operator at work now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnDuty {
    /// INSZ/BIS number.
    pub operator: String,
    /// FDM time of the WORK IN.
    pub since: String,
    /// Register the WORK IN was sent from.
    pub register: String,
    /// Journal sequence number of the WORK IN.
    pub seq: u64,
}

/// One span of presence: WORK IN to WORK OUT (or still open).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shift {
    /// INSZ/BIS number.
    pub operator: String,
    /// FDM time of the WORK IN.
    pub start: String,
    /// FDM time of the WORK OUT, if the operator has clocked out.
    pub end: Option<String>,
    /// Journal sequence numbers of the WORK IN and WORK OUT records.
    pub start_seq: u64,
    /// See `start_seq`.
    pub end_seq: Option<u64>,
}

impl Shift {
    /// As JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "operator": self.operator, "start": self.start, "end": self.end,
            "work_in_seq": self.start_seq, "work_out_seq": self.end_seq,
        })
    }
}

/// Who is clocked in now. Past shifts are not kept here (they grow with history): the daily
/// list is looked up in the journal (`Restaurant::shifts_on`).
///
/// Query API for other modules (the Z report refuses while [`Presence::clocked_in`] is not
/// empty): [`Presence::clocked_in`], [`Presence::is_clocked_in`].
/// Get a snapshot with `App::restaurant.presence()`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Presence {
    on_duty: BTreeMap<String, OnDuty>,
}

impl Presence {
    /// Operators clocked in now, by INSZ.
    pub fn clocked_in(&self) -> Vec<OnDuty> {
        self.on_duty.values().cloned().collect()
    }

    /// True when `operator` is clocked in.
    pub fn is_clocked_in(&self, operator: &str) -> bool {
        self.on_duty.contains_key(operator)
    }

    /// The WORK IN records of the operators clocked in.
    pub fn records(&self) -> impl Iterator<Item = u64> + '_ {
        self.on_duty.values().map(|d| d.seq)
    }

    /// Advances the presence with a durable `fiscal_event` record.
    pub fn apply_fiscal(&mut self, seq: u64, time: &str, body: &serde_json::Map<String, Value>) {
        let get = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or_default();
        let operator = get("operator").to_owned();
        match work_event(body) {
            Some(Work::In) => {
                self.on_duty.insert(
                    operator.clone(),
                    OnDuty {
                        operator,
                        since: time.to_owned(),
                        register: get("register").to_owned(),
                        seq,
                    },
                );
            }
            Some(Work::Out) => {
                self.on_duty.remove(&operator);
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(purpose: &str, op: &str) -> serde_json::Map<String, Value> {
        match json!({"purpose": purpose, "operator": op, "register": "till-1", "label": "NS"}) {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn work_in_and_out_make_shifts_per_day() {
        let mut p = Presence::default();
        let mut h = super::super::history::History::in_memory();
        for (seq, time, purpose, op) in [
            (1, "2026-11-22T09:00:00.000+01:00", "work_in", "A"),
            (2, "2026-11-22T10:00:00.000+01:00", "work_in", "B"),
            (3, "2026-11-22T10:30:00.000+01:00", "sale", "B"),
            (4, "2026-11-22T15:00:00.000+01:00", "work_out", "A"),
            (5, "2026-11-23T01:00:00.000+01:00", "work_out", "B"),
            (6, "2026-11-23T18:00:00.000+01:00", "work_in", "A"),
        ] {
            p.apply_fiscal(seq, time, &ev(purpose, op));
            h.record(seq, time, &ev(purpose, op));
        }
        assert_eq!(p.clocked_in().len(), 1);
        assert!(p.is_clocked_in("A") && !p.is_clocked_in("B"));
        let d22 = h.shifts_on("2026-11-22").unwrap();
        assert_eq!(d22.len(), 2);
        assert_eq!(d22[0].end.as_deref(), Some("2026-11-22T15:00:00.000+01:00"));
        assert_eq!(d22[0].end_seq, Some(4));
        let d23 = h.shifts_on("2026-11-23").unwrap();
        assert_eq!(d23.len(), 2, "B's night shift and A's evening");
        assert_eq!((d23[0].operator.as_str(), d23[0].end_seq), ("B", Some(5)));
        assert_eq!(d23[1].end, None);
        assert!(h.shifts_on("2026-11-21").unwrap().is_empty());
    }

    #[test]
    fn clockings_are_recognised_in_every_form() {
        let body = |v: Value| match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        };
        let line = |op: &str, what: &str| {
            body(json!({"label":"NS","total":"0.00","operator":op,
                "lines":[{"description":what,"total":"0.00"}]}))
        };
        assert_eq!(work_event(&line("a", "WORK IN")), Some(Work::In));
        assert_eq!(work_event(&line("a", "work  out")), Some(Work::Out));
        assert_eq!(work_event(&line("a", "Cola")), None);
        let full = clocking_plu_hash(Work::In);
        let h = |plu: &str, total: &str| {
            body(
                json!({"label":"NS","total":total,"operator":"a","source":"precomputed","plu_hash":plu}),
            )
        };
        assert_eq!(work_event(&h(&full, "0.00")), Some(Work::In));
        assert_eq!(work_event(&h(short_plu(&full), "0.00")), Some(Work::In));
        let out = clocking_plu_hash(Work::Out);
        assert_eq!(work_event(&h(short_plu(&out), "0.00")), Some(Work::Out));
        assert_eq!(work_event(&h(&full, "2.50")), None);
        assert_eq!(work_event(&h("0123abcd", "0.00")), None);
        let mut p = Presence::default();
        p.apply_fiscal(1, "2026-11-22T09:00:00.000+01:00", &h(&full, "0.00"));
        assert!(p.is_clocked_in("a"));
    }
}
