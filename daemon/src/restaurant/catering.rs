//! Catering and events (source 003): the estimate is registered in advance, and the correction
//! or supplement is **the first operation registered after the event**.
//!
//! Every ticket of an event carries `catering_event`. The estimate (or the deposit) names when
//! the event ends (`catering_end`). Once the FDM clock has passed that end and the event has not
//! been settled, the event is *due*: the establishment's next operation must settle it — its
//! supplement (an NS), its correction (an NR), or `purpose: catering_close` when the estimate was
//! right (a signed NS of 0.00) — and any other operation is refused ([`Catering::due`]). Records
//! carry `catering_role` (`deposit`, `estimate`, `supplement`, `correction`, `no_correction`) so
//! the fold ([`Catering::apply_fiscal`]) rebuilds the same state from the journal after a restart.

use chrono::{DateTime, FixedOffset};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// What a ticket is to its catering event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A deposit received before the event.
    Deposit,
    /// The estimate registered in advance (one or more tickets).
    Estimate,
    /// The first operation after the event, adding to the estimate (NS).
    Supplement,
    /// The first operation after the event, giving back part of the estimate (NR).
    Correction,
    /// The first operation after the event when the estimate was right (NS of 0.00).
    NoCorrection,
}

impl Role {
    /// Name in journal bodies (`catering_role`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Deposit => "deposit",
            Role::Estimate => "estimate",
            Role::Supplement => "supplement",
            Role::Correction => "correction",
            Role::NoCorrection => "no_correction",
        }
    }

    /// Parses a journal name.
    pub fn parse(text: &str) -> Option<Role> {
        [
            Role::Deposit,
            Role::Estimate,
            Role::Supplement,
            Role::Correction,
            Role::NoCorrection,
        ]
        .into_iter()
        .find(|r| r.as_str() == text)
    }

    /// True for the roles that settle the event.
    pub fn settles(self) -> bool {
        matches!(
            self,
            Role::Supplement | Role::Correction | Role::NoCorrection
        )
    }
}

/// One catering event as the journal records it.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The event id (`catering_event`).
    pub event: String,
    /// When it ends, as registered (RFC 3339), and parsed.
    pub ends_at: Option<(String, DateTime<FixedOffset>)>,
    /// Journal sequence number of the record that named the end last.
    pub end_seq: Option<u64>,
    /// Every ticket of the event, in order (summaries, see [`Event::to_json`]).
    pub tickets: Vec<Value>,
    /// The record that settled the event (supplement, correction or no correction), if any.
    pub settled: Option<Value>,
}

impl Event {
    /// True when the event has ended at `now` and is not settled: the next operation must be
    /// its settlement.
    pub fn is_due(&self, now: DateTime<FixedOffset>) -> bool {
        self.settled.is_none() && self.ends_at.as_ref().is_some_and(|(_, end)| *end <= now)
    }

    /// True when the event has ended at `now` (settled or not).
    pub fn has_ended(&self, now: DateTime<FixedOffset>) -> bool {
        self.ends_at.as_ref().is_some_and(|(_, end)| *end <= now)
    }

    /// `open` (before its end), `due` (ended, waiting for its settlement), `settled`, or
    /// `undated` (no end registered yet).
    pub fn status(&self, now: DateTime<FixedOffset>) -> &'static str {
        if self.settled.is_some() {
            "settled"
        } else if self.ends_at.is_none() {
            "undated"
        } else if self.is_due(now) {
            "due"
        } else {
            "open"
        }
    }

    /// The event as `GET /v1/catering/{event}` shows it (without the reprinted texts).
    pub fn to_json(&self, now: DateTime<FixedOffset>) -> Value {
        json!({
            "event": self.event,
            "ends_at": self.ends_at.as_ref().map(|(t, _)| t),
            "status": self.status(now),
            "settled_by": self.settled,
            "tickets": self.tickets,
        })
    }

    /// "catering event X ended at T", for messages.
    fn describe(&self) -> String {
        let end = self.ends_at.as_ref().map_or("?", |(t, _)| t.as_str());
        format!("catering event {} ended at {end}", self.event)
    }
}

/// Every catering event of the establishment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Catering {
    events: BTreeMap<String, Event>,
}

fn text<'a>(body: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    body.get(key).and_then(Value::as_str)
}

/// Parses an RFC 3339 time (as orders send `catering_end` and the journal writes FDM times).
pub fn parse_time(t: &str) -> Option<DateTime<FixedOffset>> {
    DateTime::parse_from_rfc3339(t).ok()
}

impl Catering {
    /// One event.
    pub fn get(&self, event: &str) -> Option<&Event> {
        self.events.get(event)
    }

    /// Drops the events that are settled (they are looked up in the journal when asked for).
    pub fn forget_settled(&mut self) {
        self.events.retain(|_, e| e.settled.is_none());
    }

    /// The tickets of the events held (open ones): folded again, they give the same events.
    pub fn records(&self) -> impl Iterator<Item = u64> + '_ {
        self.events
            .values()
            .flat_map(|e| e.tickets.iter().filter_map(|t| t["journal_seq"].as_u64()))
    }

    /// Events that have ended at `now` and wait for their settlement, by id.
    pub fn due(&self, now: DateTime<FixedOffset>) -> Vec<&Event> {
        self.events.values().filter(|e| e.is_due(now)).collect()
    }

    /// Advances with a durable NS/NR record that names `catering_event`.
    pub fn apply_fiscal(&mut self, seq: u64, time: &str, body: &Map<String, Value>) {
        let (Some(event), Some(label)) = (text(body, "catering_event"), text(body, "label")) else {
            return;
        };
        if !label.starts_with('N') {
            return;
        }
        let role = text(body, "catering_role").and_then(Role::parse);
        let summary = json!({
            "journal_seq": seq, "fdm_time": time,
            "register": body.get("register"), "request_id": body.get("request_id"),
            "label": label, "ticket_number": body.get("ticket_number"),
            "purpose": text(body, "purpose").unwrap_or("sale"),
            "catering_role": role.map(Role::as_str),
            "total": body.get("total"),
        });
        let e = self
            .events
            .entry(event.to_owned())
            .or_insert_with(|| Event {
                event: event.to_owned(),
                ends_at: None,
                end_seq: None,
                tickets: Vec::new(),
                settled: None,
            });
        if let Some(end) = text(body, "catering_end")
            && let Some(parsed) = parse_time(end)
        {
            e.ends_at = Some((end.to_owned(), parsed));
            e.end_seq = Some(seq);
        }
        if role.is_some_and(Role::settles) && e.settled.is_none() {
            e.settled = Some(summary.clone());
        }
        e.tickets.push(summary);
    }
}

/// Why an operation is refused while events are due: names each due event and what settles it.
pub fn due_message(due: &[&Event]) -> String {
    let events: Vec<String> = due.iter().map(|e| e.describe()).collect();
    let ids: Vec<&str> = due.iter().map(|e| e.event.as_str()).collect();
    format!(
        "{}: the first operation registered after a catering event must be its supplement \
         (a normal sale with catering_event {id}), its correction (a refund with catering_event \
         {id}) or, when the estimate was right, an order with purpose catering_close and \
         catering_event {id}; nothing else is registered until then (source 003)",
        events.join("; "),
        id = ids.join(" or "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn an_event_is_due_from_its_end_until_settled() {
        let mut c = Catering::default();
        let t = |s: &str| parse_time(s).unwrap();
        c.apply_fiscal(
            1,
            "2026-05-01T10:00:00+02:00",
            &body(json!({"catering_event":"comm-1","label":"NS","catering_role":"deposit","total":"300.00"})),
        );
        assert_eq!(
            c.get("comm-1")
                .unwrap()
                .status(t("2026-05-09T00:00:00+02:00")),
            "undated"
        );
        c.apply_fiscal(
            2,
            "2026-05-09T10:00:00+02:00",
            &body(
                json!({"catering_event":"comm-1","label":"NS","catering_role":"estimate",
                "catering_end":"2026-05-10T23:00:00+02:00","total":"700.00"}),
            ),
        );
        // Training and pro formas are never an event's tickets.
        c.apply_fiscal(
            3,
            "x",
            &body(json!({"catering_event":"comm-1","label":"TS"})),
        );
        let e = c.get("comm-1").unwrap();
        assert_eq!(e.tickets.len(), 2);
        assert!(c.due(t("2026-05-10T22:59:59+02:00")).is_empty());
        assert_eq!(c.due(t("2026-05-10T23:00:00+02:00")).len(), 1);
        let m = due_message(&c.due(t("2026-05-11T08:00:00+02:00")));
        assert!(
            m.contains("catering event comm-1 ended at 2026-05-10T23:00:00+02:00"),
            "{m}"
        );
        c.apply_fiscal(
            4,
            "2026-05-11T08:00:00+02:00",
            &body(json!({"catering_event":"comm-1","label":"NS","catering_role":"supplement","total":"200.00"})),
        );
        assert!(c.due(t("2026-05-11T09:00:00+02:00")).is_empty());
        let e = c.get("comm-1").unwrap();
        assert_eq!(e.status(t("2026-05-11T09:00:00+02:00")), "settled");
        assert_eq!(e.settled.as_ref().unwrap()["journal_seq"], 4);
    }
}
