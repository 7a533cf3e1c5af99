//! VAT letters and the per-letter breakdown: VAT = total × t/(100+t), half-up to the cent.

use super::money::{format_amount, round_cents};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// A Belgian VAT letter (reference §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum VatLetter {
    /// 21 %.
    A,
    /// 12 %.
    B,
    /// 6 %.
    C,
    /// 0 %.
    D,
    /// Outside the scope of VAT (deposits, multi-purpose vouchers); 0 %.
    X,
}

impl VatLetter {
    /// Every letter, in ticket order.
    pub const ALL: [VatLetter; 5] = [
        VatLetter::A,
        VatLetter::B,
        VatLetter::C,
        VatLetter::D,
        VatLetter::X,
    ];

    /// The rate in percent.
    pub fn percent(self) -> Decimal {
        match self {
            VatLetter::A => Decimal::from(21),
            VatLetter::B => Decimal::from(12),
            VatLetter::C => Decimal::from(6),
            VatLetter::D | VatLetter::X => Decimal::ZERO,
        }
    }

    /// Parses `"A"`…`"D"`, `"X"`.
    pub fn parse(text: &str) -> Option<VatLetter> {
        match text {
            "A" => Some(VatLetter::A),
            "B" => Some(VatLetter::B),
            "C" => Some(VatLetter::C),
            "D" => Some(VatLetter::D),
            "X" => Some(VatLetter::X),
            _ => None,
        }
    }

    /// The letter as a one-character string.
    pub fn as_str(self) -> &'static str {
        match self {
            VatLetter::A => "A",
            VatLetter::B => "B",
            VatLetter::C => "C",
            VatLetter::D => "D",
            VatLetter::X => "X",
        }
    }
}

impl fmt::Display for VatLetter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// VAT of a VAT-inclusive total at `percent`: total × t/(100+t), rounded half-up to the cent.
pub fn vat_included(total: Decimal, percent: Decimal) -> Decimal {
    if percent.is_zero() {
        return Decimal::ZERO;
    }
    round_cents(total * percent / (Decimal::ONE_HUNDRED + percent))
}

/// The figures of one VAT letter on a ticket or report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VatAmounts {
    /// The letter.
    pub letter: VatLetter,
    /// Total including VAT.
    pub total: Decimal,
    /// VAT included in `total`.
    pub vat: Decimal,
    /// `total - vat`.
    pub base: Decimal,
}

impl VatAmounts {
    /// The figures for `total` (VAT included) at the letter's rate.
    pub fn of_total(letter: VatLetter, total: Decimal) -> Self {
        let vat = vat_included(total, letter.percent());
        VatAmounts {
            letter,
            total,
            vat,
            base: total - vat,
        }
    }

    /// The JSON shape used in receipts and journal records: amounts as decimal strings.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "rate": self.letter.as_str(),
            "percent": self.letter.percent().to_string(),
            "total": format_amount(self.total),
            "vat": format_amount(self.vat),
            "base": format_amount(self.base),
        })
    }
}

/// Sums VAT-inclusive amounts per letter and computes VAT and base once per letter (never per
/// line, so rounding happens once). Letters appear in A, B, C, D, X order, only those used.
pub fn breakdown(amounts: impl IntoIterator<Item = (VatLetter, Decimal)>) -> Vec<VatAmounts> {
    let mut totals: BTreeMap<VatLetter, Decimal> = BTreeMap::new();
    for (letter, amount) in amounts {
        *totals.entry(letter).or_default() += amount;
    }
    totals
        .into_iter()
        .map(|(letter, total)| VatAmounts::of_total(letter, total))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn vat_of_known_totals() {
        // 2.20 at 21 %: 2.20 × 21/121 = 0.3818… → 0.38
        assert_eq!(vat_included(d("2.20"), d("21")), d("0.38"));
        // 11.90 at 12 %: 1.275 → 1.28 (half-up)
        assert_eq!(vat_included(d("11.90"), d("12")), d("1.28"));
        // 10.60 at 6 %: exactly 0.60
        assert_eq!(vat_included(d("10.60"), d("6")), d("0.60"));
        assert_eq!(vat_included(d("-11.90"), d("12")), d("-1.28"));
        assert_eq!(vat_included(d("5.00"), Decimal::ZERO), Decimal::ZERO);
    }

    #[test]
    fn breakdown_groups_and_orders_letters() {
        let b = breakdown([
            (VatLetter::B, d("11.90")),
            (VatLetter::A, d("2.20")),
            (VatLetter::A, d("1.00")),
        ]);
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].letter, VatLetter::A);
        assert_eq!(b[0].total, d("3.20"));
        assert_eq!(b[0].vat, d("0.56"));
        assert_eq!(b[0].base, d("2.64"));
        assert_eq!(b[1].letter, VatLetter::B);
        assert_eq!(b[1].vat, d("1.28"));
    }

    proptest! {
        #[test]
        fn base_plus_vat_is_total_and_vat_is_within_half_a_cent(
            cents in -100_000_000i64..100_000_000,
            letter in prop::sample::select(VatLetter::ALL.to_vec()),
        ) {
            let total = Decimal::new(cents, 2);
            let a = VatAmounts::of_total(letter, total);
            prop_assert_eq!(a.base + a.vat, total);
            let exact = total * letter.percent() / (Decimal::ONE_HUNDRED + letter.percent());
            prop_assert!((a.vat - exact).abs() <= d("0.005"));
            prop_assert_eq!(a.vat.scale() <= 2, true);
            // Symmetric: a refund's VAT mirrors the sale's.
            prop_assert_eq!(VatAmounts::of_total(letter, -total).vat, -a.vat);
        }
    }
}
