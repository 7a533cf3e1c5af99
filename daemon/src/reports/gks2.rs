//! An X or Z report as a GKS 2.0 `signReportTurnoverX` / `signReportTurnoverZ` input
//! (docs/gks2.md §2.3, §6): the figures fdmd computed for the report ([`super::figures`]) plus
//! what only the period's records tell (the FDM and terminal ranges from their `gks2` members,
//! the events per FDM label, departments and negative-quantity counts), gathered in the same
//! pass over the period as the figures.

use crate::fiscal::money::round_cents;
use crate::fiscal::vat::VatLetter;
use crate::gks2::model::{
    DepartmentTotalInput, EventLabel, EventTotalInput, FdmDeviceInput, NegQuantityReason,
    NegQuantityTotalInput, PaymentAmountType, PaymentTotalAmountInput, PaymentTotalInput,
    PaymentType, PosDeviceInput, TurnoverInput, VatLabel, VatTotalInput,
};
use rust_decimal::Decimal;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// What the period's fiscal events add to a GKS 2.0 report input beyond fdmd's figures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeriodTally {
    /// Per FDM id: (first fdmDateTime, first totalCounter, last fdmDateTime, last totalCounter).
    fdms: BTreeMap<String, (String, u64, String, u64)>,
    /// Per (posId, terminalId): (first posDateTime, last posDateTime).
    terminals: BTreeMap<(String, String), (String, String)>,
    /// Per FDM event label: (events, sum of their totals).
    labels: BTreeMap<EventLabel, (u64, Decimal)>,
    /// Per department (the line `category`, `none` without one) of NS/NR lines: their total.
    departments: BTreeMap<String, Decimal>,
    /// Per reason: (negative lines, tickets with one).
    negatives: BTreeMap<NegQuantityReason, (u64, u64)>,
}

fn text<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

fn decimal(v: Option<&Value>) -> Option<Decimal> {
    v.and_then(Value::as_str).and_then(|s| s.parse().ok())
}

fn fdm_label(text: &str) -> Option<EventLabel> {
    Some(match text {
        "N" => EventLabel::N,
        "P" => EventLabel::P,
        "F" => EventLabel::F,
        "S" => EventLabel::S,
        "I" => EventLabel::I,
        "R" => EventLabel::R,
        "C" => EventLabel::C,
        "T" => EventLabel::T,
        _ => return None,
    })
}

impl PeriodTally {
    /// Adds one fiscal event of the report's scope (its record body), in journal order.
    pub fn add(&mut self, body: &Map<String, Value>) {
        let label_text = body.get("label").and_then(Value::as_str).unwrap_or("");
        let gks2 = body.get("gks2");
        if let Some(g) = gks2 {
            self.note_fdm_event(g);
        }
        // The FDM's label when it signed the event, fdmd's type letter otherwise (events
        // journaled before the box signed with a GKS 2.0 FDM).
        let label = gks2
            .and_then(|g| text(g, "/fdmRef/eventLabel"))
            .or_else(|| label_text.get(..1))
            .and_then(fdm_label);
        let total = decimal(body.get("total")).unwrap_or_default();
        if let Some(label) = label {
            let e = self.labels.entry(label).or_default();
            e.0 += 1;
            e.1 += total;
        }
        if !matches!(label_text, "NS" | "NR") {
            return;
        }
        let refund = label_text == "NR";
        let mut counted: BTreeMap<NegQuantityReason, u64> = BTreeMap::new();
        for line in body
            .get("lines")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let Some(line_total) = decimal(line.get("total")) else {
                continue;
            };
            let department = line
                .get("category")
                .and_then(Value::as_str)
                .unwrap_or("none");
            *self.departments.entry(department.to_owned()).or_default() += line_total;
            if !line_total.is_sign_negative() || line_total.is_zero() {
                continue;
            }
            // As the figures class them: refunds, and the negative lines of a sale that are
            // neither discounts nor deducted deposits (line corrections).
            let reason = match (refund, line.get("role").and_then(Value::as_str)) {
                (true, _) => NegQuantityReason::REFUND,
                (false, Some("discount" | "deposit_applied")) => continue,
                (false, _) => NegQuantityReason::CORRECTION,
            };
            *counted.entry(reason).or_default() += 1;
        }
        for (reason, lines) in counted {
            let e = self.negatives.entry(reason).or_default();
            e.0 += lines;
            e.1 += 1;
        }
    }

    /// Adds one record of the report's scope that an FDM signed but that is not a fiscal event
    /// (docs/gks2.md §6.1, §9): a table move or merge (`table_change`, the P event of
    /// `signCostCenterChange`) or a voucher sale (`money_movement`, the F event of
    /// `signMoneyInOut`). It extends the FDM and terminal ranges and counts under its FDM label;
    /// its amount is 0 for a table change (it moves lines, it adds no turnover) and the money
    /// received for a voucher sale. Nothing else of the tally changes; a record without a
    /// `gks2` member (journaled by another backend) adds nothing.
    pub fn add_signed_other(&mut self, kind: &str, body: &Map<String, Value>) {
        let Some(g) = body.get("gks2") else {
            return;
        };
        self.note_fdm_event(g);
        let Some(label) = text(g, "/fdmRef/eventLabel").and_then(fdm_label) else {
            return;
        };
        let amount = match kind {
            "money_movement" => decimal(body.get("total")).unwrap_or_default(),
            _ => Decimal::ZERO,
        };
        let e = self.labels.entry(label).or_default();
        e.0 += 1;
        e.1 += amount;
    }

    /// The FDM's and the terminal's ranges of one `gks2` member.
    fn note_fdm_event(&mut self, g: &Value) {
        if let (Some(fdm), Some(time), Some(counter)) = (
            text(g, "/fdmRef/fdmId"),
            text(g, "/fdmRef/fdmDateTime"),
            g.pointer("/fdmRef/totalCounter").and_then(Value::as_u64),
        ) {
            let entry = self
                .fdms
                .entry(fdm.to_owned())
                .or_insert_with(|| (time.to_owned(), counter, time.to_owned(), counter));
            if counter < entry.1 {
                (entry.0, entry.1) = (time.to_owned(), counter);
            }
            if counter >= entry.3 {
                (entry.2, entry.3) = (time.to_owned(), counter);
            }
        }
        if let (Some(pos), Some(terminal), Some(time)) = (
            text(g, "/posId"),
            text(g, "/terminalId"),
            text(g, "/posDateTime"),
        ) {
            let entry = self
                .terminals
                .entry((pos.to_owned(), terminal.to_owned()))
                .or_insert_with(|| (time.to_owned(), time.to_owned()));
            entry.1 = time.to_owned();
        }
    }

    /// The FDMs whose events the period holds.
    pub fn fdm_devices(&self) -> Vec<FdmDeviceInput> {
        self.fdms
            .iter()
            .map(|(id, (ft, fc, lt, lc))| FdmDeviceInput {
                fdm_id: id.clone(),
                first_fdm_date_time: ft.clone(),
                first_total_counter: *fc,
                last_fdm_date_time: lt.clone(),
                last_total_counter: *lc,
            })
            .collect()
    }

    /// The terminals whose FDM-signed events the period holds.
    pub fn pos_devices(&self) -> Vec<PosDeviceInput> {
        self.terminals
            .iter()
            .map(|((pos, terminal), (first, last))| PosDeviceInput {
                pos_id: pos.clone(),
                terminal_id: terminal.clone(),
                first_pos_date_time: first.clone(),
                last_pos_date_time: last.clone(),
            })
            .collect()
    }

    /// The `turnover` of the report input: fdmd's figures of the whole report (`all`) and
    /// this tally.
    pub fn turnover(&self, all: &super::figures::Turnover) -> TurnoverInput {
        let transactions = self
            .labels
            .iter()
            .map(|(label, (count, amount))| EventTotalInput {
                event_label: *label,
                ticket_count: *count,
                amount: *amount,
            })
            .collect();
        let departments = self
            .departments
            .iter()
            .map(|(id, amount)| DepartmentTotalInput {
                department_id: id.clone(),
                department_name: id.clone(),
                amount: *amount,
            })
            .collect();
        let vats = all
            .vat
            .iter()
            .filter_map(|(rate, sum)| {
                let letter = VatLetter::parse(rate)?;
                Some(VatTotalInput {
                    label: VatLabel::of(letter),
                    rate: letter.percent(),
                    taxable_amount: round_cents(sum.total - sum.vat),
                    vat_amount: round_cents(sum.vat),
                    total_amount: round_cents(sum.total),
                })
            })
            .collect();
        let mut payments: Vec<PaymentTotalInput> = all
            .payments
            .iter()
            .map(|(method, amount)| PaymentTotalInput {
                id: method.clone(),
                name: method.clone(),
                kind: payment_type(method),
                amount: vec![payment_amount(PaymentAmountType::PAYMENT, *amount)],
            })
            .collect();
        if !all.cash_rounding.is_zero() {
            let rounding = payment_amount(PaymentAmountType::ROUNDING, all.cash_rounding);
            match payments.iter_mut().find(|p| p.kind == PaymentType::CASH) {
                Some(cash) => cash.amount.push(rounding),
                None => payments.push(PaymentTotalInput {
                    id: "cash".into(),
                    name: "cash".into(),
                    kind: PaymentType::CASH,
                    amount: vec![rounding],
                }),
            }
        }
        let neg_quantities = [
            (NegQuantityReason::REFUND, all.refunds),
            (NegQuantityReason::CORRECTION, all.line_corrections),
        ]
        .into_iter()
        .filter_map(|(reason, positive)| {
            let (lines, tickets) = self.negatives.get(&reason).copied().unwrap_or_default();
            (lines > 0 || !positive.is_zero()).then(|| NegQuantityTotalInput {
                neg_quantity_reason: reason,
                neg_quantity_count: lines,
                ticket_count: tickets,
                amount: round_cents(-positive),
            })
        })
        .collect();
        TurnoverInput {
            transactions,
            departments,
            vats,
            payments,
            drawers_open_count: 0,
            neg_quantities,
            // fdmd sends discounts to the FDM as lines, never as price changes (§6).
            price_changes: Vec::new(),
            invoices: None,
        }
    }
}

fn payment_amount(kind: PaymentAmountType, amount: Decimal) -> PaymentTotalAmountInput {
    let amount = round_cents(amount);
    PaymentTotalAmountInput {
        kind,
        normal_amount: amount,
        negative_corrections: Decimal::ZERO,
        positive_corrections: Decimal::ZERO,
        corrections_count: 0,
        total_amount: amount,
        normal_foreign: None,
        corrections_foreign: None,
    }
}

/// The payment type of an fdmd payment method, as the sales' `financials` send it
/// (`gks2::map`).
fn payment_type(method: &str) -> PaymentType {
    match method {
        "cash" => PaymentType::CASH,
        "card" => PaymentType::CARD_UNKNOWN,
        "voucher" => PaymentType::VOUCHER_OTHER,
        _ => PaymentType::OTHER,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn body(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn the_turnover_input_takes_vat_payments_and_negative_totals_from_the_figures() {
        use crate::reports::figures::{Turnover, VatSum};
        let mut all = Turnover::default();
        all.vat.insert(
            "A".into(),
            VatSum {
                total: Decimal::new(1210, 2),
                vat: Decimal::new(210, 2),
            },
        );
        all.payments.insert("cash".into(), Decimal::new(1000, 2));
        all.payments.insert("card".into(), Decimal::new(220, 2));
        all.cash_rounding = Decimal::new(-2, 2);
        all.refunds = Decimal::new(700, 2);
        all.line_corrections = Decimal::new(200, 2);
        let mut t = PeriodTally::default();
        t.add(&body(json!({"label": "NR", "total": "-7.00",
            "lines": [{"total": "-3.00"}, {"total": "-4.00"}]})));
        let input = t.turnover(&all);
        assert_eq!(input.vats.len(), 1);
        let vat = &input.vats[0];
        assert_eq!((vat.label, vat.rate), (VatLabel::A, Decimal::from(21)));
        assert_eq!(vat.taxable_amount, Decimal::new(1000, 2));
        assert_eq!(vat.vat_amount + vat.taxable_amount, vat.total_amount);
        let cash = input.payments.iter().find(|p| p.id == "cash").unwrap();
        assert_eq!(cash.kind, PaymentType::CASH);
        assert_eq!(
            cash.amount
                .iter()
                .map(|a| (a.kind, a.total_amount))
                .collect::<Vec<_>>(),
            [
                (PaymentAmountType::PAYMENT, Decimal::new(1000, 2)),
                (PaymentAmountType::ROUNDING, Decimal::new(-2, 2))
            ]
        );
        let card = input.payments.iter().find(|p| p.id == "card").unwrap();
        assert_eq!(card.kind, PaymentType::CARD_UNKNOWN);
        let neg: Vec<_> = input
            .neg_quantities
            .iter()
            .map(|n| {
                (
                    n.neg_quantity_reason,
                    n.neg_quantity_count,
                    n.ticket_count,
                    n.amount,
                )
            })
            .collect();
        assert_eq!(
            neg,
            [
                (NegQuantityReason::REFUND, 2, 1, Decimal::new(-700, 2)),
                (NegQuantityReason::CORRECTION, 0, 0, Decimal::new(-200, 2))
            ]
        );
        assert!(input.price_changes.is_empty());
        assert_eq!(input.transactions[0].event_label, EventLabel::N);
    }

    #[test]
    fn the_tally_keeps_fdm_and_terminal_ranges_labels_departments_and_negative_lines() {
        let mut t = PeriodTally::default();
        t.add(&body(json!({
            "label": "NS", "total": "5.00",
            "lines": [
                {"total": "7.00", "category": "drink"},
                {"total": "-2.00", "category": "drink"},
                {"total": "-1.00", "role": "discount"},
                {"total": "1.00"}
            ],
            "gks2": {"posId": "P", "terminalId": "T1", "posDateTime": "2026-12-07T10:00:00+01:00",
                     "fdmRef": {"fdmId": "F", "fdmDateTime": "2026-12-07T10:00:01+01:00",
                                "eventLabel": "N", "totalCounter": 4}}
        })));
        t.add(&body(json!({
            "label": "PS", "total": "3.00", "lines": [{"total": "3.00"}],
            "gks2": {"posId": "P", "terminalId": "T1", "posDateTime": "2026-12-07T11:00:00+01:00",
                     "fdmRef": {"fdmId": "F", "fdmDateTime": "2026-12-07T11:00:01+01:00",
                                "eventLabel": "P", "totalCounter": 9}}
        })));
        t.add(&body(json!({"label": "NR", "total": "-7.00",
            "lines": [{"total": "-7.00", "category": "drink"}]})));
        let fdms = t.fdm_devices();
        assert_eq!(fdms.len(), 1);
        assert_eq!(
            (fdms[0].first_total_counter, fdms[0].last_total_counter),
            (4, 9)
        );
        let pos = t.pos_devices();
        assert_eq!(pos[0].last_pos_date_time, "2026-12-07T11:00:00+01:00");
        assert_eq!(t.labels[&EventLabel::N], (2, Decimal::new(-200, 2)));
        assert_eq!(t.labels[&EventLabel::P], (1, Decimal::new(300, 2)));
        assert_eq!(t.departments["drink"], Decimal::new(-200, 2));
        assert_eq!(t.negatives[&NegQuantityReason::CORRECTION], (1, 1));
        assert_eq!(t.negatives[&NegQuantityReason::REFUND], (1, 1));
    }

    #[test]
    fn table_changes_and_voucher_sales_signed_by_the_fdm_count_under_their_labels() {
        let signed = |label: &str, counter: u64, time: &str| {
            json!({"posId": "P", "terminalId": "T1", "posDateTime": time,
                   "fdmRef": {"fdmId": "F", "fdmDateTime": time, "eventLabel": label,
                              "totalCounter": counter}})
        };
        let mut t = PeriodTally::default();
        t.add(&body(
            json!({"label": "PS", "total": "3.00", "lines": [{"total": "3.00"}],
            "gks2": signed("P", 4, "2026-12-07T10:00:00+01:00")}),
        ));
        t.add_signed_other(
            "table_change",
            &body(json!({"action": "move", "lines": 1, "total": "3.00",
                "gks2": signed("P", 5, "2026-12-07T11:00:00+01:00")})),
        );
        t.add_signed_other(
            "money_movement",
            &body(json!({"type": "voucher_sale", "total": "50.00",
                "gks2": signed("F", 6, "2026-12-07T12:00:00+01:00")})),
        );
        // Journaled without an FDM: nothing.
        t.add_signed_other(
            "money_movement",
            &body(json!({"type": "voucher_sale", "total": "20.00"})),
        );
        assert_eq!(t.labels[&EventLabel::P], (2, Decimal::new(300, 2)));
        assert_eq!(t.labels[&EventLabel::F], (1, Decimal::new(5000, 2)));
        let fdms = t.fdm_devices();
        assert_eq!(
            (fdms[0].first_total_counter, fdms[0].last_total_counter),
            (4, 6)
        );
        assert_eq!(
            t.pos_devices()[0].last_pos_date_time,
            "2026-12-07T12:00:00+01:00"
        );
        assert!(t.departments.is_empty() && t.negatives.is_empty());
    }
}
