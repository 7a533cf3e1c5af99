//! The periods of X and Z reports and the checkpoint each carries (`docs/journal-format.md`
//! §4.4), checked in journal order against the records themselves: a report's period starts
//! right after the previous Z report of its series (or at record 1), ends before the report, and
//! its checkpoint's `records`, `chain_head` (the hash of the period's last record) and
//! `merkle_root` (RFC 6962 over the period's record hashes) are what those records give; its
//! figures (`totals`, `operators`, `per_register`, `last_operation.seq`) are what the fiscal
//! events of the period give ([`crate::reports::figures`], the daemon's own computation), for the
//! registers of the report (all of them when its `scope` is `establishment`).
//!
//! Memory stays bounded: the hashes and fiscal events' figures of the last [`WINDOW`] records are
//! kept (a report's period ends at the last record that existed when it was computed, a few
//! records before it at most), and per period start still open one Merkle accumulator
//! ([`MerkleStream`], O(log n)) and one figures accumulator ([`ByRegister`]: per register and
//! operator, not per record), which take each record as it leaves the window.

use crate::reports::figures::{
    ByRegister, EventError, EventFigures, Figures, Shape, first_difference,
};
use crate::reports::merkle::MerkleStream;
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

/// Records whose hashes are kept for the periods' ends.
pub(crate) const WINDOW: usize = 16_384;

/// What a report record claims about its period.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ReportClaim {
    report: String,
    #[serde(default)]
    ticket_series: Option<String>,
    #[serde(default)]
    ticket_number: Option<u64>,
    period: PeriodClaim,
    checkpoint: CheckpointClaim,
    /// `register` or `establishment` (`group` for a group's series).
    #[serde(default)]
    scope: Option<String>,
    /// The registers the report is about.
    #[serde(default)]
    registers: Option<Vec<String>>,
    #[serde(default)]
    totals: Option<Value>,
    #[serde(default)]
    operators: Option<Value>,
    #[serde(default)]
    per_register: Option<Value>,
    /// `null` (no fiscal event) or `{"seq": …, "short_signature": …}`.
    #[serde(default)]
    last_operation: Value,
}

/// A fiscal event's figures as the window keeps them (`Err`: its body cannot be summed).
pub(crate) type EventEntry = Result<Arc<EventFigures>, EventError>;

/// What is summed from a period start on.
#[derive(Debug, Clone)]
struct Open {
    merkle: MerkleStream,
    /// The figures, or the first fiscal event that could not be summed.
    figures: Result<ByRegister, EventError>,
}

impl Default for Open {
    fn default() -> Self {
        Open {
            merkle: MerkleStream::default(),
            figures: Ok(ByRegister::default()),
        }
    }
}

impl Open {
    fn push(&mut self, leaf: [u8; 32], event: Option<&EventEntry>) {
        self.merkle.push_leaf(leaf);
        add_event(&mut self.figures, event);
    }
}

fn add_event(figures: &mut Result<ByRegister, EventError>, event: Option<&EventEntry>) {
    match (figures.as_mut(), event) {
        (Ok(f), Some(Ok(e))) => f.add_figures(e),
        (Ok(_), Some(Err(e))) => *figures = Err(e.clone()),
        _ => {}
    }
}

#[derive(Debug, Clone, Deserialize)]
struct PeriodClaim {
    first_seq: u64,
    last_seq: u64,
}

#[derive(Debug, Clone, Deserialize)]
struct CheckpointClaim {
    first_seq: u64,
    last_seq: u64,
    records: u64,
    chain_head: Option<String>,
    merkle_root: Option<String>,
}

impl ReportClaim {
    /// `X report 3 of series register/till-1/X`, for messages.
    fn name(&self) -> String {
        format!(
            "{} report {} of series {}",
            self.report,
            self.ticket_number.map_or("?".into(), |n| n.to_string()),
            self.ticket_series.as_deref().unwrap_or("?")
        )
    }

    /// The Z series whose last report opens this report's period.
    fn z_series(&self) -> String {
        let series = self.ticket_series.as_deref().unwrap_or("");
        match series.strip_suffix("/X") {
            Some(base) => format!("{base}/Z"),
            None => series.to_owned(),
        }
    }
}

/// The state of the periods while records are checked in order.
type Kept = (u64, [u8; 32], [u8; 32], Option<EventEntry>);

#[derive(Debug)]
pub(crate) struct Periods {
    /// The last records: (seq, hash, Merkle leaf, a fiscal event's figures).
    window: VecDeque<Kept>,
    /// The last record that left the window (0: none yet).
    left_window: u64,
    /// The first record checked.
    first_seen: Option<u64>,
    /// One accumulator per period start still open, fed with the records that left the window.
    streams: BTreeMap<u64, Open>,
    /// Per Z series, the first record of its next period.
    next_start: HashMap<String, u64>,
    /// A whole journal: a series without a Z report so far starts at record 1.
    whole: bool,
}

impl Periods {
    pub(crate) fn new(whole: bool) -> Self {
        let mut streams = BTreeMap::new();
        if whole {
            streams.insert(1, Open::default());
        }
        Periods {
            window: VecDeque::with_capacity(WINDOW + 1),
            left_window: 0,
            first_seen: None,
            streams,
            next_start: HashMap::new(),
            whole,
        }
    }

    /// A record passed its checks (after [`Periods::check_report`] for a report); `event`: a
    /// fiscal event's figures.
    pub(crate) fn record(
        &mut self,
        seq: u64,
        hash: [u8; 32],
        leaf: [u8; 32],
        event: Option<EventEntry>,
    ) {
        self.first_seen.get_or_insert(seq);
        self.window.push_back((seq, hash, leaf, event));
        if self.window.len() > WINDOW
            && let Some((old, _, leaf, event)) = self.window.pop_front()
        {
            for stream in self.streams.range_mut(..=old).map(|(_, s)| s) {
                stream.push(leaf, event.as_ref());
            }
            self.left_window = old;
        }
    }

    /// Checks the period and checkpoint of the report at `seq` against the records before it;
    /// the problem names the report.
    pub(crate) fn check_report(&mut self, seq: u64, claim: &ReportClaim) -> Result<(), String> {
        self.check(seq, claim)
            .map_err(|problem| format!("{}: {problem}", claim.name()))
    }

    fn check(&mut self, seq: u64, claim: &ReportClaim) -> Result<(), String> {
        let (period, cp) = (&claim.period, &claim.checkpoint);
        if (period.first_seq, period.last_seq) != (cp.first_seq, cp.last_seq) {
            return Err(format!(
                "its period (records {} to {}) and its checkpoint (records {} to {}) differ",
                period.first_seq, period.last_seq, cp.first_seq, cp.last_seq
            ));
        }
        let (first, last) = (cp.first_seq, cp.last_seq);
        if first == 0 || last >= seq || first > last + 1 {
            return Err(format!(
                "its period, records {first} to {last}, is not a range of records before the report"
            ));
        }
        let z_series = claim.z_series();
        let start = self
            .next_start
            .get(&z_series)
            .copied()
            .or(self.whole.then_some(1));
        if let Some(start) = start
            && first != start
        {
            return Err(if start == 1 {
                format!(
                    "its period starts at record {first}, but no Z report of series {z_series} comes before it: it starts at record 1"
                )
            } else {
                format!(
                    "its period starts at record {first}, but the previous Z report of series {z_series} ends at record {}",
                    start - 1
                )
            });
        }
        let records = last + 1 - first;
        if cp.records != records {
            return Err(format!(
                "checkpoint records: records {first} to {last} are {records}, the report says {}",
                cp.records
            ));
        }
        self.check_chain_head(last, cp.chain_head.as_deref())?;
        if let Some(root) = self.root(first, last) {
            let expected = root.map(hex::encode);
            if expected.as_deref() != cp.merkle_root.as_deref() {
                return Err(format!(
                    "checkpoint merkle_root: records {first} to {last} give {}, the report says {}",
                    expected.as_deref().unwrap_or("null"),
                    cp.merkle_root.as_deref().unwrap_or("null")
                ));
            }
        }
        if let Some(summed) = self.summed(first, last) {
            let summed = summed.map_err(|e| {
                format!("its figures cannot be recomputed from records {first} to {last}: {e}")
            })?;
            check_figures(claim, &summed)
                .map_err(|problem| format!("records {first} to {last}: {problem}"))?;
        }
        if claim.report == "Z" {
            self.close(z_series, last + 1);
        }
        Ok(())
    }

    /// The chain head must be the hash of record `last`, when it is among the records checked.
    fn check_chain_head(&self, last: u64, claimed: Option<&str>) -> Result<(), String> {
        if self.first_seen.is_none_or(|f| last < f) {
            // Before the first record checked (a slice): nothing to compare with.
            return Ok(());
        }
        let Some(&(_, hash, _, _)) = self.in_window(last) else {
            return Err(format!(
                "its period ends at record {last}, more than {WINDOW} records before the report: its checkpoint cannot be checked"
            ));
        };
        let expected = hex::encode(hash);
        if claimed != Some(expected.as_str()) {
            return Err(format!(
                "checkpoint chain_head: record {last}'s hash is {expected}, the report says {}",
                claimed.unwrap_or("null")
            ));
        }
        Ok(())
    }

    fn in_window(&self, seq: u64) -> Option<&Kept> {
        let front = self.window.front()?.0;
        let at = usize::try_from(seq.checked_sub(front)?).ok()?;
        self.window.get(at).filter(|(s, _, _, _)| *s == seq)
    }

    /// The Merkle root over records `first..=last` (`Some(None)`: an empty period), or `None`
    /// when the records checked do not hold the whole period (a slice).
    fn root(&self, first: u64, last: u64) -> Option<Option<[u8; 32]>> {
        if first > last {
            return Some(None);
        }
        let mut stream = self.streams.get(&first)?.merkle.clone();
        for (_, _, leaf, _) in self
            .window
            .iter()
            .filter(|(s, _, _, _)| (first..=last).contains(s))
        {
            stream.push_leaf(*leaf);
        }
        Some(stream.root())
    }

    /// The figures of the fiscal events of records `first..=last`, per register, or `None` when
    /// the records checked do not hold the whole period (a slice).
    fn summed(&self, first: u64, last: u64) -> Option<Result<ByRegister, EventError>> {
        if first > last {
            return Some(Ok(ByRegister::default()));
        }
        let mut figures = self.streams.get(&first)?.figures.clone();
        for (_, _, _, event) in self
            .window
            .iter()
            .filter(|(s, _, _, _)| (first..=last).contains(s))
        {
            add_event(&mut figures, event.as_ref());
        }
        Some(figures)
    }

    /// A Z report closed its series' period at `next - 1`: the next one starts at `next`.
    fn close(&mut self, series: String, next: u64) {
        self.next_start.insert(series, next);
        if next > self.left_window && self.first_seen.is_some_and(|f| next >= f) {
            self.streams.entry(next).or_default();
        }
        let whole = self.whole;
        let open: Vec<u64> = self.next_start.values().copied().collect();
        self.streams
            .retain(|start, _| (whole && *start == 1) || open.contains(start));
    }
}

/// A figure's value for a message: a string as it is, anything else as compact JSON (cut
/// after 200 characters), `nothing` when absent.
fn show(v: Option<&Value>) -> String {
    match v {
        None => "nothing".into(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            let text = other.to_string();
            match text.char_indices().nth(200) {
                Some((cut, _)) => format!("{}…", &text[..cut]),
                None => text,
            }
        }
    }
}

/// The report's figures against those of its period's fiscal events: the first that differs,
/// by its JSON path. The figures are compared in the shape the report was written in (a report
/// without `deposits_deducted` and `line_corrections` in its `totals` is of a build before them,
/// which counted every negative line of an NS ticket under `discounts`).
fn check_figures(claim: &ReportClaim, summed: &ByRegister) -> Result<(), String> {
    let Some(totals) = &claim.totals else {
        return Err("the report has no totals".into());
    };
    let everything = claim.scope.as_deref() == Some("establishment") || claim.registers.is_none();
    let registers = claim.registers.as_deref().unwrap_or_default();
    let figures: Figures = summed.figures(|r| everything || registers.iter().any(|x| x == r));
    let shape =
        if totals.get("deposits_deducted").is_some() || totals.get("line_corrections").is_some() {
            Shape::Current
        } else {
            Shape::Legacy
        };
    let per = |m: &BTreeMap<String, crate::reports::figures::Turnover>| {
        Value::Object(
            m.iter()
                .map(|(k, t)| (k.clone(), t.to_json_in(shape)))
                .collect(),
        )
    };
    for (name, expected, found) in [
        ("totals", figures.all.to_json_in(shape), Some(totals)),
        (
            "operators",
            per(&figures.operators),
            claim.operators.as_ref(),
        ),
        (
            "per_register",
            per(&figures.registers),
            claim.per_register.as_ref(),
        ),
    ] {
        let Some(found) = found else {
            return Err(format!("the report has no {name}"));
        };
        if let Some((path, e, f)) = first_difference(name, &expected, found) {
            return Err(format!(
                "figure {path}: the records give {}, the report says {}",
                show(e.as_ref()),
                show(f.as_ref())
            ));
        }
    }
    {
        let claimed = claim.last_operation.get("seq").and_then(Value::as_u64);
        if claimed != figures.last_event {
            let text = |n: Option<u64>| n.map_or("null".to_owned(), |n| n.to_string());
            return Err(format!(
                "figure last_operation.seq: the records give {}, the report says {}",
                text(figures.last_event),
                text(claimed)
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::reports::merkle::{leaf, merkle_root};

    fn hash(seq: u64) -> [u8; 32] {
        let mut h = [0u8; 32];
        h[..8].copy_from_slice(&seq.to_le_bytes());
        h
    }

    fn z(first: u64, last: u64, root: Option<[u8; 32]>, head: [u8; 32]) -> ReportClaim {
        serde_json::from_value(serde_json::json!({
            "report": "Z", "ticket_series": "register/till-1/Z", "ticket_number": 1,
            "period": {"first_seq": first, "last_seq": last},
            "checkpoint": {"first_seq": first, "last_seq": last, "records": last + 1 - first,
                "chain_head": hex::encode(head), "merkle_root": root.map(hex::encode)},
            "scope": "register", "registers": ["till-1"], "totals": Figures::default().all.to_json(),
            "operators": {}, "per_register": {}, "last_operation": null,
        }))
        .unwrap()
    }

    /// Z reports past the window, each ending a few records before itself: the streamed roots
    /// are the whole-list roots, and a wrong one is named.
    #[test]
    fn periods_longer_than_the_window_get_the_whole_list_root() {
        let mut periods = Periods::new(true);
        let mut first = 1;
        let ends = [
            3 * WINDOW as u64 + 7,
            3 * WINDOW as u64 + 900,
            5 * WINDOW as u64,
        ];
        let mut reports = ends.iter().map(|e| (e + 5, *e)).peekable();
        for seq in 1..=5 * WINDOW as u64 + 5 {
            if let Some(&(at, last)) = reports.peek()
                && at == seq
            {
                reports.next();
                let hashes: Vec<[u8; 32]> = (first..=last).map(hash).collect();
                let root = merkle_root(&hashes);
                let mut wrong = root.unwrap();
                wrong[0] ^= 1;
                let problem = periods
                    .check_report(seq, &z(first, last, Some(wrong), hash(last)))
                    .unwrap_err();
                assert!(problem.contains("merkle_root"), "{problem}");
                periods
                    .check_report(seq, &z(first, last, root, hash(last)))
                    .unwrap();
                first = last + 1;
            }
            periods.record(seq, hash(seq), leaf(&hash(seq)), None);
        }
        assert!(reports.peek().is_none());
    }
}
