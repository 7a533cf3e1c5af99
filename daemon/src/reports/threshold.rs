//! The yearly threshold report: is the establishment obliged to use a registered cash system?
//!
//! Source 001 (employers' note, 2014): the system is mandatory when meals consumed on site
//! (take-away meals and drinks excluded) are at least **10 %** of the establishment's total
//! horeca turnover, both **excluding VAT**, computed per establishment on the previous year.
//! Source 003 (the tax administration's FAQ, current) gives the **€25,000** rule: the system is
//! mandatory when at least €25,000 of the yearly turnover, excluding VAT, comes from restaurant
//! or catering services (meals served, drinks excluded; here the `meal` category). fdmd reports
//! both rules and says a registered cash system is required when either is met.
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
use crate::journal::record::RecordKind;
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
        self.add_lines(lines);
    }

    /// Adds a ticket's lines to the buckets. Two lines are not taken at their face:
    /// - a part of an all-in menu at rate A is the menu's drinks (source 003: the coefficient's
    ///   35 % of drinks at 21 %; components at 21 % are drinks too), whatever the menu's category;
    /// - a discount line (one per VAT letter, `role` `discount`) is shared out over the ticket's
    ///   other lines of its letter in proportion to their categories' totals, so a discount on
    ///   meals lowers meals; only a discount with no such line stays `uncategorised`.
    fn add_lines(&mut self, lines: &[Value]) {
        let mut discounts: Vec<(String, Decimal)> = Vec::new();
        let mut ticket: BTreeMap<(String, String), Decimal> = BTreeMap::new();
        for line in lines {
            let letter = line.get("vat").and_then(Value::as_str).unwrap_or("?");
            let Some(total) = line
                .get("total")
                .and_then(Value::as_str)
                .and_then(|t| t.parse::<Decimal>().ok())
            else {
                continue;
            };
            let role = line.get("role").and_then(Value::as_str);
            let category = match role {
                Some("discount") => {
                    discounts.push((letter.to_owned(), total));
                    continue;
                }
                Some("menu_part") if letter == "A" => "drink",
                _ => line
                    .get("category")
                    .and_then(Value::as_str)
                    .unwrap_or("uncategorised"),
            };
            *ticket
                .entry((category.to_owned(), letter.to_owned()))
                .or_default() += total;
        }
        for (letter, amount) in discounts {
            let shares: Vec<(String, Decimal)> = ticket
                .iter()
                .filter(|((_, l), t)| *l == letter && t.is_sign_positive() && !t.is_zero())
                .map(|((c, _), t)| (c.clone(), *t))
                .collect();
            if shares.is_empty() {
                *ticket
                    .entry(("uncategorised".to_owned(), letter))
                    .or_default() += amount;
                continue;
            }
            let weights: Vec<Decimal> = shares.iter().map(|(_, t)| *t).collect();
            let parts = crate::fiscal::order::allocate(amount.abs(), &weights);
            for ((category, _), part) in shares.into_iter().zip(parts) {
                let signed = if amount.is_sign_negative() {
                    -part
                } else {
                    part
                };
                *ticket.entry((category, letter.clone())).or_default() += signed;
            }
        }
        for (key, total) in ticket {
            *self.buckets.entry(key).or_default() += total;
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
            "meal_turnover_at_least_25000": meals >= meal_turnover_limit(),
            "cash_system_required": (total > Decimal::ZERO && meals * Decimal::from(10) >= total)
                || meals >= meal_turnover_limit(),
            "without_lines_vat_included": format_amount(self.without_lines),
            "note": "meals consumed on site (take-away meals and drinks excluded), excluding VAT, per establishment: at least 10 % of the total horeca turnover (source 001), or at least 25,000 EUR (source 003); a registered cash system is required when either is met. All-in menus count their drinks share as drinks; discounts lower the categories they were given on",
        })
    }
}

/// Sums the fiscal events of `year` in a journal database.
pub fn year_sums(conn: &rusqlite::Connection, year: i32) -> Result<YearSums, ReportError> {
    let mut sums = YearSums::default();
    crate::journal::query::for_each_of_kind_in_year(
        conn,
        RecordKind::FiscalEvent,
        year,
        |r| -> Result<(), ReportError> {
            sums.add(&super::envelope_body(&r.canonical, r.seq)?);
            Ok(())
        },
    )?;
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
        assert_eq!(r["meal_turnover_at_least_25000"], false);
        assert_eq!(r["cash_system_required"], true);
    }

    #[test]
    fn menus_count_their_drinks_as_drinks_and_discounts_lower_their_categories() {
        // The all-in menu: 50.00 sent as a meal, split by the coefficient into 17.50
        // at A and 32.50 at B: meals 29.02, drinks 14.46 excluding VAT (not meals 43.48).
        let mut y = YearSums::default();
        let menu = json!({"label": "NS", "lines": [
            {"category":"meal","role":"menu_part","vat":"A","total":"17.50"},
            {"category":"meal","role":"menu_part","vat":"B","total":"32.50"}]});
        y.add(menu.as_object().unwrap());
        let by = y.excluding_vat();
        assert_eq!(by["meal"], "29.02".parse().unwrap());
        assert_eq!(by["drink"], "14.46".parse().unwrap());
        // A 10 % discount on a ticket of a meal (B 22.40) and a drink (A 12.10): each letter's
        // discount line lowers the category of that letter, nothing is uncategorised.
        let mut y = YearSums::default();
        let ticket = json!({"label": "NS", "lines": [
            {"category":"meal","vat":"B","total":"22.40"},
            {"category":"drink","vat":"A","total":"12.10"},
            {"role":"discount","vat":"B","total":"-2.24"},
            {"role":"discount","vat":"A","total":"-1.21"}]});
        y.add(ticket.as_object().unwrap());
        let by = y.excluding_vat();
        assert_eq!(by["meal"], "18.00".parse().unwrap());
        assert_eq!(by["drink"], "9.00".parse().unwrap());
        assert_eq!(by["uncategorised"], Decimal::ZERO);
    }

    #[test]
    fn the_25000_rule_of_source_003() {
        let mut y = YearSums::default();
        // 28,000.00 of meals at 12 % = 25,000.00 excluding VAT, and 302,500.00 of drinks at 21 %
        // = 250,000.00: below 10 %, at least 25,000: required.
        let b = json!({"label": "NS", "lines": [
            {"category":"meal","vat":"B","total":"28000.00"},
            {"category":"drink","vat":"A","total":"302500.00"}]});
        y.add(b.as_object().unwrap());
        let r = y.report(2026);
        assert_eq!(r["ten_percent_rule_met"], false);
        assert_eq!(r["meal_turnover_at_least_25000"], true);
        assert_eq!(r["cash_system_required"], true);
    }
}
