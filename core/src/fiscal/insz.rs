//! INSZ/NISS and BIS numbers (reference §6): 11 digits `YYMMDD SSS CC`, with
//! CC = 97 − (first nine digits mod 97), or the same with a `2` put in front for births from 2000.
//! BIS numbers raise the month by 20 (sex unknown) or 40 (sex known).

use std::fmt;

/// What kind of number an operator id is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperatorIdKind {
    /// A national register (INSZ/NISS) number.
    Insz,
    /// A BIS number (month + 20 or + 40).
    Bis,
}

/// Why an operator id is not a valid INSZ or BIS number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InszError {
    /// Not exactly 11 ASCII digits.
    #[error("INSZ/BIS number must be exactly 11 digits (no dots or dashes)")]
    Format,
    /// Month field is not 00–12, 20–32 or 40–52.
    #[error("month {0:02} is not a valid INSZ (00-12) or BIS (20-32, 40-52) month")]
    Month(u32),
    /// Day field is above 31.
    #[error("day {0:02} is not a valid day")]
    Day(u32),
    /// Neither the pre-2000 nor the post-2000 check digits match.
    #[error("INSZ check digits do not match")]
    CheckDigits,
}

/// An operator's INSZ/BIS number as printed on tickets and reports: its last four digits only
/// (`...3328`). The number itself is personal data and is never printed.
pub fn masked(id: &str) -> String {
    let tail: String = id
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("...{tail}")
}

/// Validates an operator's INSZ or BIS number and tells which it is.
pub fn validate_operator_id(id: &str) -> Result<OperatorIdKind, InszError> {
    if id.len() != 11 || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(InszError::Format);
    }
    let digits = |range: std::ops::Range<usize>| -> u64 {
        id[range]
            .bytes()
            .fold(0u64, |acc, b| acc * 10 + u64::from(b - b'0'))
    };
    let month = digits(2..4) as u32;
    let day = digits(4..6) as u32;
    let kind = match month {
        0..=12 => OperatorIdKind::Insz,
        20..=32 | 40..=52 => OperatorIdKind::Bis,
        _ => return Err(InszError::Month(month)),
    };
    if day > 31 {
        return Err(InszError::Day(day));
    }
    let body = digits(0..9);
    let check = digits(9..11);
    let before_2000 = 97 - body % 97;
    let from_2000 = 97 - (2_000_000_000 + body) % 97;
    if check == before_2000 || check == from_2000 {
        Ok(kind)
    } else {
        Err(InszError::CheckDigits)
    }
}

impl fmt::Display for OperatorIdKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OperatorIdKind::Insz => "INSZ",
            OperatorIdKind::Bis => "BIS",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Builds a valid number from its first nine digits with the chosen century rule.
    fn with_check(body: u64, from_2000: bool) -> String {
        let n = if from_2000 {
            2_000_000_000 + body
        } else {
            body
        };
        format!("{body:09}{:02}", 97 - n % 97)
    }

    #[test]
    fn known_numbers() {
        // 85.07.30-033.28, the usual published example (pre-2000 rule).
        assert_eq!(
            validate_operator_id("85073003328"),
            Ok(OperatorIdKind::Insz)
        );
        // GKS 2.0 fixed ids: technician (pre-2000 rule) and robot (post-2000 rule).
        assert_eq!(
            validate_operator_id("00000000097"),
            Ok(OperatorIdKind::Insz)
        );
        assert_eq!(
            validate_operator_id("00000000029"),
            Ok(OperatorIdKind::Insz)
        );
        // Born 2001-02-03, post-2000 rule.
        assert_eq!(
            validate_operator_id(&with_check(10203001, true)),
            Ok(OperatorIdKind::Insz)
        );
        // BIS: month + 40.
        assert_eq!(
            validate_operator_id(&with_check(854730033, false)),
            Ok(OperatorIdKind::Bis)
        );
    }

    #[test]
    fn errors_are_specific() {
        assert_eq!(
            validate_operator_id("85073003329"),
            Err(InszError::CheckDigits)
        );
        assert_eq!(
            validate_operator_id("85.07.30-033.28"),
            Err(InszError::Format)
        );
        assert_eq!(validate_operator_id("8507300332"), Err(InszError::Format));
        assert_eq!(validate_operator_id("８5073003328"), Err(InszError::Format));
        assert_eq!(
            validate_operator_id(&with_check(851530033, false)),
            Err(InszError::Month(15))
        );
        assert_eq!(
            validate_operator_id(&with_check(850732033, false)),
            Err(InszError::Day(32))
        );
    }

    proptest! {
        #[test]
        fn every_valid_body_validates_with_either_rule(
            yy in 0u64..100, mm in 1u64..13, dd in 1u64..29, sss in 1u64..999, post in any::<bool>(),
            bis in prop::sample::select(vec![0u64, 20, 40]),
        ) {
            let body = yy * 10_000_000 + (mm + bis) * 100_000 + dd * 1000 + sss;
            let id = with_check(body, post);
            prop_assert!(validate_operator_id(&id).is_ok());
        }

        #[test]
        fn a_changed_digit_is_caught(
            yy in 0u64..100, mm in 1u64..13, dd in 1u64..29, sss in 1u64..999,
            pos in 0usize..11, delta in 1u8..10,
        ) {
            let body = yy * 10_000_000 + mm * 100_000 + dd * 1000 + sss;
            let id = with_check(body, false);
            let mut bytes = id.into_bytes();
            bytes[pos] = b'0' + (bytes[pos] - b'0' + delta) % 10;
            let changed = String::from_utf8(bytes).unwrap();
            // A single changed digit never passes: mod 97 catches every single-digit error,
            // unless the change moved it to a number valid under the other century rule.
            if validate_operator_id(&changed).is_ok() {
                let b: u64 = changed[..9].parse().unwrap();
                let c: u64 = changed[9..].parse().unwrap();
                prop_assert_eq!(c, 97 - (2_000_000_000 + b) % 97);
            }
        }
    }
}
