//! The yearly threshold report: is the establishment obliged to use a registered cash system?
//!
//! Source 001 (employers' note, 2014): the system is mandatory when meals consumed on site
//! (take-away meals and drinks excluded) are at least **10 %** of the establishment's total
//! horeca turnover, both **excluding VAT**, computed per establishment on the previous year.
//! The **€25,000** rule (yearly turnover of restaurant services, drinks excluded, above €25,000
//! excluding VAT) is the later rule of the Royal Decree of 2016; it is **not** in the reference
//! material here, so it is reported as an indication to check with an accountant.
//!
//! Both are computed from the `category` of each line of the year's NS and NR tickets:
//! `meal` (consumed on site), `takeaway_meal`, `drink`, `other` (room hire, delivery costs…).
//! Lines without a category count in the total horeca turnover but not as meals, and are shown
//! so that the owner can see how much was not classified. Amounts excluding VAT are computed per
//! (category, VAT rate) over the year: `total - total·t/(100+t)`, rounded half-up once.
//! Training, pro forma and copy events are not turnover. The year is the local date of the FDM
//! time of each record. One fdmd is one establishment (GKS 2.0 forbids sharing an FDM between
//! establishments).

use super::ReportError;
use crate::fiscal::VatLetter;
use crate::fiscal::money::format_amount;
use crate::fiscal::vat::vat_included;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Category names as lines carry them; `uncategorised` for lines without one.
pub const CATEGORIES: [&str; 5] = ["meal", "takeaway_meal", "drink", "other", "uncategorised"];

/// The €25,000 figure (excluding VAT).
pub fn meal_turnover_limit() -> Decimal {
    Decimal::from(25_000)
}

/// Sums of one year, VAT included, per (category, VAT letter).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct YearSums {
    /// (category, letter) → total VAT included.
    pub buckets: BTreeMap<(String, String), Decimal>,
    /// Totals of events without lines (pre-computed), VAT included.
    pub without_lines: Decimal,
    /// Tickets counted.
    pub tickets: u64,
}

impl YearSums {
    /// Adds one fiscal event body (only NS and NR count).
    pub fn add(&mut self, body: &serde_json::Map<String, Value>) {
        let label = body.get("label").and_then(Value::as_str).unwrap_or("");
        if label != "NS" && label != "NR" {
            return;
        }
        self.tickets += 1;
        let Some(lines) = body.get("lines").and_then(Value::as_array) else {
            if let Some(t) = body
                .get("total")
                .and_then(Value::as_str)
                .and_then(|t| t.parse::<Decimal>().ok())
            {
                self.without_lines += t;
            }
            return;
        };
        for line in lines {
            let category = line
                .get("category")
                .and_then(Value::as_str)
                .unwrap_or("uncategorised");
            let letter = line.get("vat").and_then(Value::as_str).unwrap_or("?");
            if let Some(t) = line
                .get("total")
                .and_then(Value::as_str)
                .and_then(|t| t.parse::<Decimal>().ok())
            {
                *self
                    .buckets
                    .entry((category.to_owned(), letter.to_owned()))
                    .or_default() += t;
            }
        }
    }

    /// Per category, excluding VAT.
    pub fn excluding_vat(&self) -> BTreeMap<String, Decimal> {
        let mut out: BTreeMap<String, Decimal> = CATEGORIES
            .iter()
            .map(|c| ((*c).to_owned(), Decimal::ZERO))
            .collect();
        for ((category, letter), total) in &self.buckets {
            let percent = VatLetter::parse(letter).map_or(Decimal::ZERO, VatLetter::percent);
            *out.entry(category.clone()).or_default() += *total - vat_included(*total, percent);
        }
        out
    }

    /// The report as JSON.
    pub fn report(&self, year: i32) -> Value {
        let by = self.excluding_vat();
        let get = |c: &str| by.get(c).copied().unwrap_or_default();
        let meals = get("meal");
        let total: Decimal = by.values().copied().sum();
        let percent = if total.is_zero() {
            Decimal::ZERO
        } else {
            (meals * Decimal::ONE_HUNDRED / total).round_dp(2)
        };
        let categories: serde_json::Map<String, Value> = by
            .iter()
            .map(|(k, v)| (k.clone(), json!(format_amount(*v))))
            .collect();
        json!({
            "year": year,
            "tickets": self.tickets,
            "excluding_vat": categories,
            "meals_on_site": format_amount(meals),
            "total_horeca_turnover": format_amount(total),
            "meal_share_percent": percent.normalize().to_string(),
            "ten_percent_rule_met": total > Decimal::ZERO && meals * Decimal::from(10) >= total,
            "meal_turnover_above_25000": meals > meal_turnover_limit(),
            "without_lines_vat_included": format_amount(self.without_lines),
            "note": "meals consumed on site (take-away meals and drinks excluded) against total horeca turnover, excluding VAT, per establishment (source 001); the 25,000 EUR rule is not in the reference material: check it with an accountant",
        })
    }
}

/// Sums the fiscal events of `year` in a journal database.
pub fn year_sums(conn: &rusqlite::Connection, year: i32) -> Result<YearSums, ReportError> {
    let read = |e: rusqlite::Error| ReportError::Read(e.to_string());
    let year = format!("{year:04}");
    // The year's records, then its fiscal events among them (through the store: the stored
    // form of a record depends on the journal's schema).
    let range: (Option<i64>, Option<i64>) = conn
        .query_row(
            "SELECT min(seq), max(seq) FROM records WHERE substr(time, 1, 4) = ?1",
            [&year],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(read)?;
    let mut sums = YearSums::default();
    let (Some(first), Some(last)) = range else {
        return Ok(sums);
    };
    let mut bad = None;
    crate::journal::store::for_each_in_range(
        conn,
        first as u64,
        last as u64,
        |r| -> Result<(), rusqlite::Error> {
            if bad.is_none()
                && r.kind == crate::journal::record::RecordKind::FiscalEvent.as_str()
                && r.time.starts_with(&year)
            {
                match super::envelope_body(&r.canonical, r.seq) {
                    Ok(body) => sums.add(&body),
                    Err(e) => bad = Some(e),
                }
            }
            Ok(())
        },
    )
    .map_err(read)?;
    if let Some(e) = bad {
        return Err(e);
    }
    Ok(sums)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_percent_rule_on_known_figures() {
        let mut y = YearSums::default();
        let add = |y: &mut YearSums, label: &str, lines: Value| {
            let b = json!({"label": label, "lines": lines});
            y.add(b.as_object().unwrap());
        };
        // 112.00 of meals at 12 % = 100.00 excl. VAT; 1210.00 of drinks at 21 % = 1000.00.
        add(
            &mut y,
            "NS",
            json!([{"category":"meal","vat":"B","total":"112.00"},
                                 {"category":"drink","vat":"A","total":"1210.00"}]),
        );
        // Take-away meal 53.00 at 6 % = 50.00; training is not counted.
        add(
            &mut y,
            "NS",
            json!([{"category":"takeaway_meal","vat":"C","total":"53.00"}]),
        );
        add(
            &mut y,
            "TS",
            json!([{"category":"meal","vat":"B","total":"1120.00"}]),
        );
        let r = y.report(2026);
        assert_eq!(r["meals_on_site"], "100.00");
        assert_eq!(r["total_horeca_turnover"], "1150.00");
        assert_eq!(r["ten_percent_rule_met"], false);
        assert_eq!(r["meal_share_percent"], "8.7");
        add(
            &mut y,
            "NS",
            json!([{"category":"meal","vat":"B","total":"22.40"}]),
        );
        let r = y.report(2026);
        // 120.00 / 1170.00 = 10.26 %
        assert_eq!(r["ten_percent_rule_met"], true);
        assert_eq!(r["meal_turnover_above_25000"], false);
    }
}
