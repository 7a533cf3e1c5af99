//! The computed content of a ticket: line totals, label, VAT per letter, payments and cash
//! rounding, PLU hash. Everything the journal stores for an order, before numbering.

use super::error::{Problems, ValidationError};
use super::label::Label;
use super::money::{format_amount, round_cash, round_cents};
use super::order::{LineRole, Order, PaymentMethod, Purpose};
use super::plu::{plu_hash, plu_record};
use super::vat::{VatAmounts, breakdown};
use rust_decimal::Decimal;
use serde_json::{Map, Value, json};

/// A ticket computed from an order.
#[derive(Debug, Clone, PartialEq)]
pub struct Sale {
    /// The label (NS, PR…).
    pub label: Label,
    /// Each line's total, VAT included, rounded to the cent, in order.
    pub line_totals: Vec<Decimal>,
    /// VAT per letter.
    pub vat: Vec<VatAmounts>,
    /// Ticket total, VAT included, before cash rounding.
    pub total: Decimal,
    /// Difference between the cash paid and the cash due (rounding to €0.05).
    pub cash_rounding: Decimal,
    /// PLU hash, 40 lower-case hex characters.
    pub plu_hash: String,
}

impl Sale {
    /// Computes the ticket of an order and checks that its payments balance.
    pub fn compute(order: &Order) -> Result<Sale, ValidationError> {
        let line_totals: Vec<Decimal> = order
            .lines
            .iter()
            .map(|l| round_cents(l.quantity * l.unit_price))
            .collect();
        let total: Decimal = line_totals.iter().copied().sum();
        let vat = breakdown(
            order
                .lines
                .iter()
                .zip(&line_totals)
                .map(|(l, t)| (l.vat, *t)),
        );
        let records: Vec<String> = order
            .lines
            .iter()
            .zip(&line_totals)
            .map(|(l, t)| plu_record(l.unit.plu_quantity(l.quantity), &l.description, *t, l.vat))
            .collect();
        let plu_hash = plu_hash(records.iter().map(String::as_str));
        let label = Label::for_ticket(
            order.event_type,
            total,
            order.lines.first().map(|l| l.quantity),
        );
        let cash_rounding = check_payments(order, total)?;
        Ok(Sale {
            label,
            line_totals,
            vat,
            total,
            cash_rounding,
            plu_hash,
        })
    }

    /// The journal body of this ticket (before numbering; the journal adds `register`,
    /// `request_id` and `request_digest`): the order's content with every computed figure,
    /// amounts as decimal strings.
    pub fn journal_body(&self, order: &Order) -> Map<String, Value> {
        let lines: Vec<Value> = order
            .lines
            .iter()
            .zip(&self.line_totals)
            .map(|(l, total)| {
                let mut v = json!({
                    "description": l.description,
                    "quantity": l.quantity.normalize().to_string(),
                    "unit": l.unit.as_str(),
                    "unit_price": format_amount(l.unit_price),
                    "total": format_amount(*total),
                    "vat": l.vat.as_str(),
                    "station": l.station,
                    "category": l.category.map(|c| c.as_str()),
                });
                // Restaurant members only when used (docs/journal-format.md §4.1).
                if l.role != LineRole::Item {
                    v["role"] = json!(l.role.as_str());
                }
                if let Some(m) = &l.menu {
                    v["menu"] = json!(m);
                }
                if let Some(i) = l.original_line {
                    v["original_line"] = json!(i);
                }
                if let Some(o) = &l.origin {
                    v["origin"] =
                        json!({"seq": o.seq, "label": o.label, "ticket_number": o.ticket_number});
                }
                v
            })
            .collect();
        let payments: Vec<Value> = order
            .payments
            .iter()
            .map(|p| json!({"method": p.method.as_str(), "amount": format_amount(p.amount)}))
            .collect();
        let body = json!({
            "source": "order",
            "operator": order.operator,
            "label": self.label.to_string(),
            "table": order.table,
            "pos_time": order.pos_time,
            "lines": lines,
            "vat": self.vat.iter().map(VatAmounts::to_json).collect::<Vec<_>>(),
            "total": format_amount(self.total),
            "payments": payments,
            "cash_rounding": format_amount(self.cash_rounding),
            "plu_hash": self.plu_hash,
        });
        match body {
            Value::Object(mut map) => {
                if order.purpose != Purpose::Sale {
                    map.insert("purpose".into(), json!(order.purpose.as_str()));
                }
                if let Some(e) = &order.catering_event {
                    map.insert("catering_event".into(), json!(e));
                }
                map
            }
            _ => Map::new(),
        }
    }
}

/// Checks that payments (when any are given) settle the total, and returns the cash rounding.
/// Cash pays what is left after the other methods, rounded to €0.05 half-up.
pub fn check_payments(order: &Order, total: Decimal) -> Result<Decimal, ValidationError> {
    if order.payments.is_empty() {
        return Ok(Decimal::ZERO);
    }
    let mut p = Problems::default();
    let non_cash: Decimal = order
        .payments
        .iter()
        .filter(|p| p.method != PaymentMethod::Cash)
        .map(|p| p.amount)
        .sum();
    let cash: Decimal = order
        .payments
        .iter()
        .filter(|p| p.method == PaymentMethod::Cash)
        .map(|p| p.amount)
        .sum();
    let has_cash = order
        .payments
        .iter()
        .any(|p| p.method == PaymentMethod::Cash);
    let mut rounding = Decimal::ZERO;
    if has_cash {
        let cash_due = total - non_cash;
        let rounded = round_cash(cash_due);
        rounding = rounded - cash_due;
        if cash != rounded {
            p.push(
                "payments",
                format!(
                    "cash paid is {} but the cash due is {} (total {} less {} by other methods, rounded to 0.05)",
                    format_amount(cash),
                    format_amount(rounded),
                    format_amount(total),
                    format_amount(non_cash)
                ),
            );
        }
    } else if non_cash != total {
        p.push(
            "payments",
            format!(
                "payments add up to {} but the ticket total is {}",
                format_amount(non_cash),
                format_amount(total)
            ),
        );
    }
    p.finish()?;
    Ok(rounding)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sale(lines: &str, payments: &str) -> Result<Sale, ValidationError> {
        let o = Order::from_json(
            "till-1",
            format!(r#"{{"request_id":"r","operator":"85073003328","event_type":"normal","lines":[{lines}],"payments":[{payments}]}}"#).as_bytes(),
        )?;
        Sale::compute(&o)
    }

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    const EFSTA: &str = r#"{"description":"Cola","quantity":1,"unit_price":"2.20","vat":"A"},
                           {"description":"Snack","quantity":1,"unit_price":"11.90","vat":"B"}"#;

    #[test]
    fn efsta_sample_ticket() {
        let s = sale(EFSTA, r#"{"method":"cash","amount":"14.10"}"#).unwrap();
        assert_eq!(s.label.to_string(), "NS");
        assert_eq!(s.total, d("14.10"));
        assert!(s.plu_hash.ends_with("797bc46f"));
        assert_eq!(s.vat[0].vat, d("0.38"));
        assert_eq!(s.vat[1].vat, d("1.28"));
        assert_eq!(s.cash_rounding, Decimal::ZERO);
    }

    #[test]
    fn cash_rounding_is_recorded() {
        let lines = r#"{"description":"Koffie","quantity":3,"unit_price":"2.71","vat":"A"}"#;
        // 8.13 due in cash → 8.15 paid, rounding +0.02
        let s = sale(lines, r#"{"method":"cash","amount":"8.15"}"#).unwrap();
        assert_eq!(s.cash_rounding, d("0.02"));
        // card 5.00 + cash for the rest (3.13 → 3.15)
        let s = sale(
            lines,
            r#"{"method":"card","amount":"5.00"},{"method":"cash","amount":"3.15"}"#,
        )
        .unwrap();
        assert_eq!(s.cash_rounding, d("0.02"));
        let e = sale(lines, r#"{"method":"cash","amount":"8.13"}"#).unwrap_err();
        assert!(e.to_string().contains("cash due is 8.15"), "{e}");
        let e = sale(lines, r#"{"method":"card","amount":"8.00"}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "payments: payments add up to 8.00 but the ticket total is 8.13"
        );
    }

    #[test]
    fn refunds_and_discounts() {
        let s = sale(
            r#"{"description":"Cola","quantity":-2,"unit_price":"2.20","vat":"A"}"#,
            "",
        )
        .unwrap();
        assert_eq!(s.label.to_string(), "NR");
        assert_eq!(s.total, d("-4.40"));
        let s = sale(
            r#"{"description":"Menu","quantity":1,"unit_price":"30.00","vat":"B"},
                       {"description":"Korting","quantity":1,"unit_price":"-3.00","vat":"B"}"#,
            "",
        )
        .unwrap();
        assert_eq!(s.total, d("27.00"));
        assert_eq!(s.vat.len(), 1);
        assert_eq!(s.vat[0].vat, d("2.89"));
    }

    #[test]
    fn weighed_lines_round_to_the_cent() {
        let s = sale(r#"{"description":"Kaas","quantity":"0.333","unit":"kg","unit_price":"19.99","vat":"C"}"#, "").unwrap();
        // 0.333 × 19.99 = 6.65667 → 6.66
        assert_eq!(s.total, d("6.66"));
    }
}
