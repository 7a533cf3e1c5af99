//! The figures of an X or Z report, summed from the fiscal events of its period.
//!
//! Only N events (NS, NR) are turnover. P (pro forma), T (training) and C (copy) events are
//! counted per label but never added to turnover, VAT, payments or operator turnover.
//!
//! Definitions (Royal Decree of 13 Dec 2022, source 004, items e–h):
//! - `gross`: the sum of every positive line total (VAT included) of NS and NR tickets (item e);
//! - `discounts`: the discount lines (`role` `discount`) of NS tickets, as a positive amount;
//! - `refunds`: the negative lines of NR tickets, as a positive amount (item f, "réductions et
//!   remboursements", is `discounts + refunds`);
//! - `deposits_deducted`: deposits received earlier (on their own ticket) and deducted on an NS
//!   ticket (`role` `deposit_applied`): not a reduction, the deposit's ticket was turnover;
//! - `line_corrections`: the other negative lines of NS tickets (a line ordered earlier and
//!   cancelled or corrected, e.g. on a table's final ticket; a discount the register sends as a
//!   negative item also lands here);
//! - `net`: `gross - discounts - refunds - deposits_deducted - line_corrections`, which is also
//!   the sum of the NS and NR ticket totals (item g);
//! - `vat`: per rate, the sum of the tickets' VAT-inclusive totals, of the VAT the tickets showed,
//!   and the base (`total - vat`) (item h). Pre-computed events (FDM v1 `H`) carry no reliable
//!   split, so their total is under `net_without_vat_split`.
//! - `corrections`: the PR events (corrections of a pro forma before the final sale).

use crate::fiscal::Label;
use crate::fiscal::money::format_amount;
use rust_decimal::Decimal;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// A count and a sum.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// How many.
    pub count: u64,
    /// Their sum, VAT included.
    pub total: Decimal,
}

impl Tally {
    fn add(&mut self, amount: Decimal) {
        self.count += 1;
        self.total += amount;
    }

    fn to_json(self) -> Value {
        json!({"count": self.count, "total": format_amount(self.total)})
    }
}

/// Per VAT letter: VAT-inclusive total and the VAT shown on the tickets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VatSum {
    /// Total including VAT.
    pub total: Decimal,
    /// VAT as shown on the tickets, summed.
    pub vat: Decimal,
}

/// Turnover figures of one group of events (the whole report, one operator, one register).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Turnover {
    /// Count and sum per label (all labels, training included).
    pub labels: BTreeMap<String, Tally>,
    /// Positive line totals of NS/NR.
    pub gross: Decimal,
    /// Discount lines of NS tickets (positive amount).
    pub discounts: Decimal,
    /// Deposits deducted on NS tickets (positive amount).
    pub deposits_deducted: Decimal,
    /// Other negative lines of NS tickets (positive amount).
    pub line_corrections: Decimal,
    /// Negative lines of NR tickets (positive amount).
    pub refunds: Decimal,
    /// Sum of NS and NR totals.
    pub net: Decimal,
    /// Per VAT letter (NS/NR orders only).
    pub vat: BTreeMap<String, VatSum>,
    /// NS/NR totals of events without a VAT split (pre-computed events).
    pub net_without_vat_split: Decimal,
    /// Payments per method (NS/NR only).
    pub payments: BTreeMap<String, Decimal>,
    /// Cash rounding (NS/NR only): cash received less cash due.
    pub cash_rounding: Decimal,
    /// PR events.
    pub corrections: Tally,
}

/// A fiscal event as the report needs it.
#[derive(Debug, Clone)]
pub struct Event<'a> {
    /// Journal sequence number.
    pub seq: u64,
    /// Register that sent it.
    pub register: &'a str,
    /// Operator (INSZ/BIS).
    pub operator: &'a str,
    /// The record body.
    pub body: &'a Map<String, Value>,
}

/// Why an event could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("record {seq}: {problem}")]
pub struct EventError {
    /// Sequence number.
    pub seq: u64,
    /// What is wrong.
    pub problem: String,
}

fn amount(seq: u64, v: Option<&Value>, what: &str) -> Result<Decimal, EventError> {
    v.and_then(Value::as_str)
        .and_then(|s| s.parse::<Decimal>().ok())
        .ok_or_else(|| EventError {
            seq,
            problem: format!("{what} is not a decimal amount"),
        })
}

impl Turnover {
    /// Adds one fiscal event.
    pub fn add(&mut self, e: &Event<'_>) -> Result<(), EventError> {
        let seq = e.seq;
        let label_text = e.body.get("label").and_then(Value::as_str).unwrap_or("");
        let label = Label::parse(label_text).ok_or_else(|| EventError {
            seq,
            problem: format!("unknown label {label_text:?}"),
        })?;
        let total = amount(seq, e.body.get("total"), "total")?;
        self.labels.entry(label.to_string()).or_default().add(total);
        if label.to_string() == "PR" {
            self.corrections.add(total);
        }
        if !label.is_vat_receipt() {
            return Ok(());
        }
        self.net += total;
        let refund = label.to_string() == "NR";
        match e.body.get("lines").and_then(Value::as_array) {
            Some(lines) => {
                for line in lines {
                    let t = amount(seq, line.get("total"), "line total")?;
                    if t.is_sign_negative() {
                        let role = line.get("role").and_then(Value::as_str);
                        match (refund, role) {
                            (true, _) => self.refunds -= t,
                            (false, Some("discount")) => self.discounts -= t,
                            (false, Some("deposit_applied")) => self.deposits_deducted -= t,
                            (false, _) => self.line_corrections -= t,
                        }
                    } else {
                        self.gross += t;
                    }
                }
                for v in e
                    .body
                    .get("vat")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let rate = v.get("rate").and_then(Value::as_str).unwrap_or("?");
                    let sum = self.vat.entry(rate.to_owned()).or_default();
                    sum.total += amount(seq, v.get("total"), "vat total")?;
                    sum.vat += amount(seq, v.get("vat"), "vat amount")?;
                }
            }
            None => {
                // A pre-computed event: only its total is known.
                if total.is_sign_negative() {
                    self.refunds -= total;
                } else {
                    self.gross += total;
                }
                self.net_without_vat_split += total;
            }
        }
        for p in e
            .body
            .get("payments")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let method = p.get("method").and_then(Value::as_str).unwrap_or("other");
            *self.payments.entry(method.to_owned()).or_default() +=
                amount(seq, p.get("amount"), "payment amount")?;
        }
        if let Some(r) = e.body.get("cash_rounding") {
            self.cash_rounding += amount(seq, Some(r), "cash_rounding")?;
        }
        Ok(())
    }

    /// The figures as JSON, amounts as decimal strings.
    pub fn to_json(&self) -> Value {
        let labels: Map<String, Value> = self
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.to_json()))
            .collect();
        let vat: Vec<Value> = self
            .vat
            .iter()
            .map(|(rate, s)| {
                let percent = crate::fiscal::VatLetter::parse(rate)
                    .map(|l| l.percent().to_string())
                    .unwrap_or_default();
                json!({
                    "rate": rate,
                    "percent": percent,
                    "total": format_amount(s.total),
                    "vat": format_amount(s.vat),
                    "base": format_amount(s.total - s.vat),
                })
            })
            .collect();
        let payments: Map<String, Value> = self
            .payments
            .iter()
            .map(|(k, v)| (k.clone(), json!(format_amount(*v))))
            .collect();
        json!({
            "labels": labels,
            "gross": format_amount(self.gross),
            "discounts": format_amount(self.discounts),
            "refunds": format_amount(self.refunds),
            "discounts_and_refunds": format_amount(self.discounts + self.refunds),
            "deposits_deducted": format_amount(self.deposits_deducted),
            "line_corrections": format_amount(self.line_corrections),
            "net": format_amount(self.net),
            "vat": vat,
            "net_without_vat_split": format_amount(self.net_without_vat_split),
            "payments": payments,
            "cash_rounding": format_amount(self.cash_rounding),
            "corrections": self.corrections.to_json(),
        })
    }
}

/// Everything a report sums: the whole, per operator and per register.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Figures {
    /// All events of the report.
    pub all: Turnover,
    /// Per operator (the user report).
    pub operators: BTreeMap<String, Turnover>,
    /// Per register.
    pub registers: BTreeMap<String, Turnover>,
    /// The last fiscal event covered: (seq, signature).
    pub last_event: Option<u64>,
}

impl Figures {
    /// Adds one fiscal event.
    pub fn add(&mut self, e: &Event<'_>) -> Result<(), EventError> {
        self.all.add(e)?;
        self.operators
            .entry(e.operator.to_owned())
            .or_default()
            .add(e)?;
        self.registers
            .entry(e.register.to_owned())
            .or_default()
            .add(e)?;
        self.last_event = Some(e.seq);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn sums_turnover_and_keeps_training_out() {
        let ns = body(json!({"label":"NS","total":"27.00",
            "lines":[{"total":"30.00"},{"total":"-3.00","role":"discount"}],
            "vat":[{"rate":"B","total":"27.00","vat":"2.89"}],
            "payments":[{"method":"cash","amount":"27.00"}],"cash_rounding":"0.00"}));
        let nr = body(json!({"label":"NR","total":"-4.40",
            "lines":[{"total":"-4.40"}],"vat":[{"rate":"A","total":"-4.40","vat":"-0.76"}],
            "payments":[{"method":"card","amount":"-4.40"}]}));
        let ts = body(
            json!({"label":"TS","total":"99.00","lines":[{"total":"99.00"}],
            "vat":[{"rate":"A","total":"99.00","vat":"17.18"}],"payments":[{"method":"cash","amount":"99.00"}]}),
        );
        let pr = body(json!({"label":"PR","total":"-2.00","lines":[{"total":"-2.00"}]}));
        let mut f = Figures::default();
        for (seq, b) in [(1, &ns), (2, &nr), (3, &ts), (4, &pr)] {
            f.add(&Event {
                seq,
                register: "till-1",
                operator: "op",
                body: b,
            })
            .unwrap();
        }
        let t = &f.all;
        assert_eq!(t.gross, "30.00".parse().unwrap());
        assert_eq!(t.discounts, "3.00".parse().unwrap());
        assert_eq!(t.refunds, "4.40".parse().unwrap());
        assert_eq!(t.net, "22.60".parse().unwrap());
        assert_eq!(t.gross - t.discounts - t.refunds, t.net);
        assert_eq!(t.payments["cash"], "27.00".parse().unwrap());
        assert_eq!(t.vat["A"].vat, "-0.76".parse().unwrap());
        assert_eq!(t.labels["TS"].count, 1);
        assert_eq!(t.corrections.count, 1);
        assert_eq!(f.last_event, Some(4));
        let j = t.to_json();
        assert_eq!(j["vat"][1]["base"], "24.11");
        assert_eq!(j["discounts_and_refunds"], "7.40");
    }

    #[test]
    fn discounts_deposits_and_corrections_are_separate_figures() {
        // One day of the issue: a 3.60 discount, a 100.00 deposit deducted on the final ticket,
        // and a 3.00 line of the table cancelled on it; plus the deposit's own ticket.
        let deposit = body(json!({"label":"NS","total":"100.00",
            "lines":[{"total":"100.00"}],"vat":[{"rate":"B","total":"100.00","vat":"10.71"}]}));
        let bill = body(json!({"label":"NS","total":"129.40",
            "lines":[{"total":"236.00"},{"total":"-3.00"},{"total":"-3.60","role":"discount"},
                     {"total":"-100.00","role":"deposit_applied"}],
            "vat":[{"rate":"B","total":"129.40","vat":"13.86"}]}));
        let mut t = Turnover::default();
        for (seq, b) in [(1, &deposit), (2, &bill)] {
            t.add(&Event {
                seq,
                register: "till-1",
                operator: "op",
                body: b,
            })
            .unwrap();
        }
        let d = |x: &str| x.parse::<Decimal>().unwrap();
        assert_eq!(t.discounts, d("3.60"));
        assert_eq!(t.deposits_deducted, d("100.00"));
        assert_eq!(t.line_corrections, d("3.00"));
        assert_eq!(t.gross, d("336.00"));
        assert_eq!(t.net, d("229.40"));
        assert_eq!(
            t.gross - t.discounts - t.refunds - t.deposits_deducted - t.line_corrections,
            t.net
        );
        let j = t.to_json();
        assert_eq!(j["discounts_and_refunds"], "3.60");
        assert_eq!(j["deposits_deducted"], "100.00");
        assert_eq!(j["line_corrections"], "3.00");
    }

    #[test]
    fn bad_amounts_are_named() {
        let b = body(json!({"label":"NS","total":"x"}));
        let e = Figures::default()
            .add(&Event {
                seq: 9,
                register: "r",
                operator: "o",
                body: &b,
            })
            .unwrap_err();
        assert_eq!(e.to_string(), "record 9: total is not a decimal amount");
    }
}
