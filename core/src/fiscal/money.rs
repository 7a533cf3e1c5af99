//! Money as `rust_decimal` (never a float): parsing decimal strings, rounding rules, cents.

use super::error::FieldError;
use rust_decimal::{Decimal, RoundingStrategy};

/// The largest amount (in euro, either sign) any single price or total may have.
pub const MAX_AMOUNT: Decimal = Decimal::from_parts(1_000_000_000, 0, 0, false, 2); // 10,000,000.00

/// Parses a money amount given as a decimal string: optional sign, at most two decimals, within
/// ±[`MAX_AMOUNT`]. JSON numbers are refused by the callers before this (floats lose cents).
pub fn parse_amount(field: &str, text: &str) -> Result<Decimal, FieldError> {
    let value = parse_decimal(field, text, 2, "amount")?;
    if value.abs() > MAX_AMOUNT {
        return Err(FieldError::new(
            field,
            format!("amount {text} is out of range (at most {MAX_AMOUNT} either way)"),
        ));
    }
    Ok(value)
}

/// Parses a plain decimal string with at most `max_dp` decimal places.
pub fn parse_decimal(
    field: &str,
    text: &str,
    max_dp: u32,
    what: &str,
) -> Result<Decimal, FieldError> {
    let trimmed = text.trim();
    let well_formed = !trimmed.is_empty()
        && trimmed.len() <= 24
        && trimmed == text
        && trimmed
            .trim_start_matches(['-', '+'])
            .chars()
            .all(|c| c.is_ascii_digit() || c == '.')
        && trimmed.matches('.').count() <= 1
        && trimmed.chars().filter(|c| *c == '-' || *c == '+').count() <= 1
        && trimmed
            .trim_start_matches(['-', '+'])
            .chars()
            .any(|c| c.is_ascii_digit());
    if !well_formed {
        return Err(FieldError::new(
            field,
            format!(
                "{what} must be a decimal string like \"2.20\", got \"{}\"",
                shorten(text)
            ),
        ));
    }
    let value: Decimal = trimmed.parse().map_err(|_| {
        FieldError::new(
            field,
            format!("{what} \"{}\" is not a decimal number", shorten(text)),
        )
    })?;
    if value.scale() > max_dp && value.normalize().scale() > max_dp {
        return Err(FieldError::new(
            field,
            format!("{what} \"{trimmed}\" has more than {max_dp} decimal places"),
        ));
    }
    Ok(value.normalize())
}

/// Rounds to the cent, half away from zero ("half-up" for both signs).
pub fn round_cents(value: Decimal) -> Decimal {
    value.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

/// Rounds a cash amount to €0.05, half away from zero.
pub fn round_cash(value: Decimal) -> Decimal {
    let twenty = Decimal::from(20);
    let steps = (value * twenty).round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero);
    round_cents(steps / twenty)
}

/// The amount in whole cents. The amount must already be rounded to the cent.
pub fn to_cents(value: Decimal) -> i64 {
    let cents = round_cents(value) * Decimal::ONE_HUNDRED;
    // Amounts are bounded by MAX_AMOUNT times the line limit, far inside i64.
    i64::try_from(cents.trunc()).unwrap_or(i64::MAX)
}

/// Formats an amount with exactly two decimals: `2.2` → `"2.20"`, `-0.5` → `"-0.50"`.
pub fn format_amount(value: Decimal) -> String {
    let mut v = round_cents(value);
    if v.is_zero() {
        v = Decimal::ZERO;
    }
    v.rescale(2);
    v.to_string()
}

/// Formats a quantity with no trailing zeros: `1.500` → `"1.5"`, `2` → `"2"`.
pub fn format_quantity(value: Decimal) -> String {
    value.normalize().to_string()
}

fn shorten(text: &str) -> String {
    text.chars().take(32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn parses_amounts() {
        assert_eq!(parse_amount("p", "2.20").unwrap(), d("2.2"));
        assert_eq!(parse_amount("p", "-0.5").unwrap(), d("-0.5"));
        assert_eq!(parse_amount("p", "12").unwrap(), d("12"));
        assert_eq!(parse_amount("p", "1.500").unwrap(), d("1.5"));
        for bad in [
            "", " 1", "1,20", "abc", "1.234", "1e3", "--1", "1.2.3", "+", ".", "NaN",
        ] {
            let err = parse_amount("lines[0].unit_price", bad).unwrap_err();
            assert_eq!(err.field, "lines[0].unit_price", "{bad}");
        }
        assert!(parse_amount("p", "10000000.01").is_err());
        assert!(parse_amount("p", "-10000000.00").is_ok());
    }

    #[test]
    fn rounds_cash_to_five_cents_half_up() {
        assert_eq!(round_cash(d("13.12")), d("13.10"));
        assert_eq!(round_cash(d("13.125")), d("13.15"));
        assert_eq!(round_cash(d("13.13")), d("13.15"));
        assert_eq!(round_cash(d("13.17")), d("13.15"));
        assert_eq!(round_cash(d("13.175")), d("13.20"));
        assert_eq!(round_cash(d("-13.125")), d("-13.15"));
    }

    #[test]
    fn formats() {
        assert_eq!(format_amount(d("2.2")), "2.20");
        assert_eq!(format_amount(d("-0.5")), "-0.50");
        assert_eq!(format_amount(d("-0.00")), "0.00");
        assert_eq!(format_quantity(d("1.500")), "1.5");
        assert_eq!(to_cents(d("13.10")), 1310);
        assert_eq!(to_cents(d("-0.05")), -5);
    }

    proptest! {
        #[test]
        fn cash_rounding_moves_at_most_two_and_a_half_cents(cents in -10_000_000i64..10_000_000) {
            let v = Decimal::new(cents, 2);
            let r = round_cash(v);
            prop_assert!((r - v).abs() <= d("0.025"));
            prop_assert_eq!(to_cents(r) % 5, 0);
        }

        #[test]
        fn amount_text_round_trips(cents in -1_000_000_000i64..1_000_000_000) {
            let v = Decimal::new(cents, 2);
            let text = format_amount(v);
            prop_assert_eq!(parse_amount("x", &text).unwrap(), v.normalize());
        }
    }
}
