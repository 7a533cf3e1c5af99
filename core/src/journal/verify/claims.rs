//! What a fiscal event claims about its own lines, recomputed from them: each line's total, the
//! ticket total, the VAT per letter and the PLU hash (`docs/journal-format.md` §4.1, §6), with
//! the functions that computed them when the ticket was made (`fiscal::sale`, `vat`, `plu`).
//! Pure functions of one record: they run with its other own checks, on every core.
//!
//! The body's members are read into typed structs straight from their bytes (the one-pass scan's
//! slices) or from the parsed envelope (the general path), never into a `Value` tree of their own.

use crate::fiscal::money::{format_amount, round_cents};
use crate::fiscal::order::Unit;
use crate::fiscal::plu::{plu_hash, plu_record};
use crate::fiscal::vat::{VatLetter, breakdown};
use crate::reports::figures::{LineText, VatText};
use rust_decimal::Decimal;
use serde::Deserialize;
use std::borrow::Cow;

/// One line as the record holds it (other members are not needed here).
#[derive(Debug, Deserialize)]
pub(crate) struct ClaimedLine<'a> {
    #[serde(borrow)]
    description: Cow<'a, str>,
    #[serde(borrow)]
    quantity: Cow<'a, str>,
    #[serde(borrow, default)]
    unit: Option<Cow<'a, str>>,
    #[serde(borrow)]
    unit_price: Cow<'a, str>,
    #[serde(borrow)]
    total: Cow<'a, str>,
    #[serde(borrow)]
    vat: Cow<'a, str>,
}

/// One entry of the body's `vat` array.
#[derive(Debug, Deserialize)]
pub(crate) struct ClaimedVat<'a> {
    #[serde(borrow)]
    rate: Cow<'a, str>,
    #[serde(borrow)]
    percent: Cow<'a, str>,
    #[serde(borrow)]
    total: Cow<'a, str>,
    #[serde(borrow)]
    vat: Cow<'a, str>,
    #[serde(borrow)]
    base: Cow<'a, str>,
}

impl<'a> From<LineText<'a>> for ClaimedLine<'a> {
    fn from(l: LineText<'a>) -> Self {
        ClaimedLine {
            description: l.description,
            quantity: l.quantity,
            unit: l.unit,
            unit_price: l.unit_price,
            total: l.total,
            vat: l.vat,
        }
    }
}

impl<'a> From<VatText<'a>> for ClaimedVat<'a> {
    fn from(v: VatText<'a>) -> Self {
        ClaimedVat {
            rate: v.rate,
            percent: v.percent,
            total: v.total,
            vat: v.vat,
            base: v.base,
        }
    }
}

/// The members of a fiscal event's body that its lines determine.
pub(crate) struct ClaimedEvent<'a> {
    /// `source`: `order` or `precomputed`.
    pub(crate) source: Option<&'a str>,
    /// `lines`, `None` when missing or not an array of lines.
    pub(crate) lines: Option<Vec<ClaimedLine<'a>>>,
    /// `vat`, `None` when missing or malformed.
    pub(crate) vat: Option<Vec<ClaimedVat<'a>>>,
    /// `total`.
    pub(crate) total: Option<&'a str>,
    /// `plu_hash`.
    pub(crate) plu_hash: Option<&'a str>,
}

/// What the record holds and what its lines give.
fn differs(what: &str, expected: &str, found: &str) -> String {
    format!("{what}: the lines give {expected}, the record says {found}")
}

/// Line `i`'s member `name` as a decimal number (the message is made only when it is not one).
fn decimal(i: usize, name: &str, text: &str) -> Result<Decimal, String> {
    text.parse::<Decimal>()
        .map_err(|_| format!("lines[{i}].{name} {text:?} is not a decimal number"))
}

/// `format_amount(value) == text`, without allocating: `text` must be the amount rounded to the
/// cent with exactly two decimals (`"4.40"`, `"-0.50"`, `"0.00"`).
fn amount_is(value: Decimal, text: &str) -> bool {
    let b = text.as_bytes();
    let digits = b.strip_prefix(b"-").unwrap_or(b);
    // No `+`, no leading zero: the form format_amount writes.
    let plain = digits.first().is_some_and(u8::is_ascii_digit)
        && (digits[0] != b'0' || digits.get(1) == Some(&b'.'));
    plain
        && b.len() >= 4
        && b[b.len() - 3] == b'.'
        && text.parse::<Decimal>().is_ok_and(|claimed| {
            claimed == round_cents(value) && !(claimed.is_zero() && b[0] == b'-')
        })
}

/// The first claim of a fiscal event its lines contradict, as the problem to report. Pre-computed
/// events (a POS's own figures, no lines) have nothing to recompute.
pub(crate) fn event_problem(event: &ClaimedEvent<'_>) -> Option<String> {
    match event.source {
        Some("order") => order_problem(event).err(),
        Some("precomputed") => None,
        Some(other) => Some(format!(
            "fiscal event with unknown source {other:?} (order or precomputed)"
        )),
        None => Some("fiscal event without a source (order or precomputed)".into()),
    }
}

fn order_problem(event: &ClaimedEvent<'_>) -> Result<(), String> {
    let lines = event
        .lines
        .as_ref()
        .ok_or("fiscal event of source order without readable lines")?;
    let mut computed: Vec<(VatLetter, Decimal)> = Vec::with_capacity(lines.len());
    let mut plu: Vec<String> = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        let quantity = decimal(i, "quantity", &line.quantity)?;
        let unit_price = decimal(i, "unit_price", &line.unit_price)?;
        let letter = VatLetter::parse(&line.vat)
            .ok_or_else(|| format!("lines[{i}].vat {:?} is not a VAT letter", line.vat))?;
        let unit = match line.unit.as_deref() {
            None | Some("piece") => Unit::Piece,
            Some("kg") => Unit::Kg,
            Some("l") => Unit::L,
            Some(other) => return Err(format!("lines[{i}].unit {other:?} is not a unit")),
        };
        let total = round_cents(quantity * unit_price);
        if !amount_is(total, &line.total) {
            return Err(differs(
                &format!("lines[{i}].total ({} x {})", line.quantity, line.unit_price),
                &format_amount(total),
                &line.total,
            ));
        }
        computed.push((letter, total));
        plu.push(plu_record(
            unit.plu_quantity(quantity),
            &line.description,
            total,
            letter,
        ));
    }
    let total: Decimal = computed.iter().map(|(_, t)| *t).sum();
    let found = event.total.ok_or("fiscal event without a total")?;
    if !amount_is(total, found) {
        return Err(differs("total", &format_amount(total), found));
    }
    let vat = event
        .vat
        .as_ref()
        .ok_or("fiscal event of source order without a readable vat breakdown")?;
    let expected_vat = breakdown(computed);
    for (i, want) in expected_vat.iter().enumerate() {
        let letter = want.letter.as_str();
        let Some(got) = vat.get(i) else {
            return Err(format!(
                "vat: the lines use letter {letter}, which the record's vat does not list"
            ));
        };
        if got.rate != letter {
            return Err(format!(
                "vat[{i}]: the lines give letter {letter} there, the record says {:?}",
                got.rate
            ));
        }
        let percent = match want.letter {
            VatLetter::A => "21",
            VatLetter::B => "12",
            VatLetter::C => "6",
            VatLetter::D | VatLetter::X => "0",
        };
        if got.percent != percent {
            return Err(differs(
                &format!("VAT of letter {letter}, percent"),
                percent,
                &got.percent,
            ));
        }
        let fields = [
            ("total", want.total, &got.total),
            ("vat", want.vat, &got.vat),
            ("base", want.base, &got.base),
        ];
        for (name, expected, found) in fields {
            if !amount_is(expected, found) {
                return Err(differs(
                    &format!("VAT of letter {letter}, {name}"),
                    &format_amount(expected),
                    found,
                ));
            }
        }
    }
    if let Some(extra) = vat.get(expected_vat.len()) {
        return Err(format!(
            "vat: the record lists letter {:?}, which no line uses",
            extra.rate
        ));
    }
    let expected = plu_hash(plu.iter().map(String::as_str));
    let found = event.plu_hash.ok_or("fiscal event without a plu_hash")?;
    if expected != found {
        return Err(differs("plu_hash", &expected, found));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn event<'a>(lines: &'a str, vat: &'a str, total: &'a str, plu: &'a str) -> ClaimedEvent<'a> {
        ClaimedEvent {
            source: Some("order"),
            lines: serde_json::from_str(lines).ok(),
            vat: serde_json::from_str(vat).ok(),
            total: Some(total),
            plu_hash: Some(plu),
        }
    }

    const LINES: &str = r#"[{"description":"Cola","quantity":"1","unit":"piece","unit_price":"2.20","total":"2.20","vat":"A"},
        {"description":"Snack","quantity":"1","unit":"piece","unit_price":"11.90","total":"11.90","vat":"B"}]"#;
    const VAT: &str = r#"[{"rate":"A","percent":"21","total":"2.20","vat":"0.38","base":"1.82"},
        {"rate":"B","percent":"12","total":"11.90","vat":"1.28","base":"10.62"}]"#;
    const PLU: &str = "c2b9e6b5bb6a9fc6e0ad3f4cb09c8e31797bc46f";

    #[test]
    fn the_efsta_sample_holds_and_each_wrong_claim_is_named() {
        let plu = plu_hash([
            "0001COLA                00000220A",
            "0001SNACK               00001190B",
        ]);
        assert!(plu.ends_with("797bc46f"));
        assert_eq!(event_problem(&event(LINES, VAT, "14.10", &plu)), None);
        for not_canonical in ["14.1", "014.10", "+14.10", "14.100"] {
            assert!(event_problem(&event(LINES, VAT, not_canonical, &plu)).is_some());
        }
        assert!(amount_is(Decimal::ZERO, "0.00") && !amount_is(Decimal::ZERO, "-0.00"));
        assert!(amount_is("-6.5".parse().unwrap(), "-6.50"));
        let wrong_total = event_problem(&event(LINES, VAT, "14.20", &plu)).unwrap();
        assert_eq!(
            wrong_total,
            "total: the lines give 14.10, the record says 14.20"
        );
        let vat = VAT.replace("\"0.38\"", "\"0.39\"");
        let wrong_vat = event_problem(&event(LINES, &vat, "14.10", &plu)).unwrap();
        assert!(wrong_vat.contains("VAT of letter A, vat"), "{wrong_vat}");
        let lines = LINES.replace("\"total\":\"11.90\"", "\"total\":\"11.80\"");
        let wrong_line = event_problem(&event(&lines, VAT, "14.10", &plu)).unwrap();
        assert!(wrong_line.starts_with("lines[1].total"), "{wrong_line}");
        let wrong_plu = event_problem(&event(LINES, VAT, "14.10", PLU)).unwrap();
        assert!(wrong_plu.starts_with("plu_hash"), "{wrong_plu}");
    }
}
