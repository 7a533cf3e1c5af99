//! An order's request form (`Order::to_json`) encoded canonically straight from the typed
//! order, for the idempotency digest: the same bytes as `to_canonical(&order.to_json())`
//! without building a `serde_json::Value` tree first (checked by the property test below).
//!
//! Members are written in canonical order by hand: every key is ASCII, so the UTF-16 order
//! of JCS is the byte order the lists below are written in.

use super::money::format_amount;
use super::order::{Discount, Order, OrderLine, Payment, Reference, Voucher};
use crate::journal::canonical::{CanonicalError, write_canonical_str, write_canonical_u64};
use crate::journal::record::sha256_hex;
use rust_decimal::Decimal;
use std::fmt::Write as _;

impl Order {
    /// The SHA-256 (hex) of the canonical encoding of [`Order::to_json`]: the request digest
    /// that recognises a resend.
    pub fn request_digest(&self) -> Result<String, CanonicalError> {
        let mut out = Vec::with_capacity(512);
        write_request(&mut out, self)?;
        Ok(sha256_hex(&out))
    }
}

/// Appends the canonical encoding of `order.to_json()` to `out`.
pub fn write_request(out: &mut Vec<u8>, order: &Order) -> Result<(), CanonicalError> {
    let mut o = Members::open(out);
    if order.bill {
        o.key("bill").extend_from_slice(b"true");
    }
    if let Some(e) = &order.catering_end {
        write_canonical_str(o.key("catering_end"), e);
    }
    if let Some(e) = &order.catering_event {
        write_canonical_str(o.key("catering_event"), e);
    }
    if order.catering_settle {
        o.key("catering_settle").extend_from_slice(b"true");
    }
    if let Some(c) = &order.check {
        write_canonical_str(o.key("check"), c);
    }
    if !order.deposits.is_empty() {
        write_array(o.key("deposits"), &order.deposits, |out, r| {
            write_reference(out, r);
            Ok(())
        })?;
    }
    if !order.discounts.is_empty() {
        write_array(o.key("discounts"), &order.discounts, |out, d| {
            write_discount(out, d);
            Ok(())
        })?;
    }
    write_canonical_str(o.key("event_type"), order.event_type.as_str());
    write_array(o.key("lines"), &order.lines, write_line)?;
    write_canonical_str(o.key("operator"), &order.operator);
    if let Some(r) = &order.original {
        write_reference(o.key("original"), r);
    }
    write_array(o.key("payments"), &order.payments, |out, p| {
        write_payment(out, p);
        Ok(())
    })?;
    write_opt_str(o.key("pos_time"), order.pos_time.as_deref());
    if order.purpose != super::order::Purpose::Sale {
        write_canonical_str(o.key("purpose"), order.purpose.as_str());
    }
    write_canonical_str(o.key("register"), &order.register);
    write_canonical_str(o.key("request_id"), &order.request_id);
    write_opt_str(o.key("table"), order.table.as_deref());
    if let Some(t) = &order.to_table {
        write_canonical_str(o.key("to_table"), t);
    }
    if !order.vouchers.is_empty() {
        write_array(o.key("vouchers"), &order.vouchers, |out, v| {
            write_voucher(out, v);
            Ok(())
        })?;
    }
    o.close();
    Ok(())
}

/// An object being written: `{`, then `"key":` before each value, commas between.
struct Members<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Members<'a> {
    fn open(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Members { out, first: true }
    }

    /// Writes the separator and `"key":`, and gives the buffer for the value.
    fn key(&mut self, key: &str) -> &mut Vec<u8> {
        if !std::mem::take(&mut self.first) {
            self.out.push(b',');
        }
        write_canonical_str(self.out, key);
        self.out.push(b':');
        self.out
    }

    fn close(self) {
        self.out.push(b'}');
    }
}

fn write_array<T>(
    out: &mut Vec<u8>,
    items: &[T],
    mut write: impl FnMut(&mut Vec<u8>, &T) -> Result<(), CanonicalError>,
) -> Result<(), CanonicalError> {
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write(out, item)?;
    }
    out.push(b']');
    Ok(())
}

fn write_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => write_canonical_str(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

/// `d.normalize().to_string()` as a canonical string.
fn write_decimal(out: &mut Vec<u8>, d: Decimal) {
    let mut text = String::with_capacity(24);
    // Writing to a String cannot fail.
    let _ = write!(text, "{}", d.normalize());
    write_canonical_str(out, &text);
}

fn write_line(out: &mut Vec<u8>, l: &OrderLine) -> Result<(), CanonicalError> {
    let mut o = Members::open(out);
    write_opt_str(o.key("category"), l.category.map(|c| c.as_str()));
    write_canonical_str(o.key("description"), &l.description);
    if let Some(menu) = &l.menu {
        write_canonical_str(o.key("menu"), menu);
    }
    if let Some(i) = l.original_line {
        write_canonical_u64(o.key("original_line"), i as u64)?;
    }
    write_decimal(o.key("quantity"), l.quantity);
    if l.menu.is_some() {
        write_canonical_str(o.key("role"), l.role.as_str());
    }
    write_opt_str(o.key("station"), l.station.as_deref());
    write_canonical_str(o.key("unit"), l.unit.as_str());
    write_decimal(o.key("unit_price"), l.unit_price);
    write_canonical_str(o.key("vat"), l.vat.as_str());
    o.close();
    Ok(())
}

fn write_payment(out: &mut Vec<u8>, p: &Payment) {
    let mut o = Members::open(out);
    write_decimal(o.key("amount"), p.amount);
    write_canonical_str(o.key("method"), p.method.as_str());
    o.close();
}

fn write_reference(out: &mut Vec<u8>, r: &Reference) {
    let mut o = Members::open(out);
    write_canonical_str(o.key("register"), &r.register);
    write_canonical_str(o.key("request_id"), &r.request_id);
    o.close();
}

fn write_discount(out: &mut Vec<u8>, d: &Discount) {
    let mut o = Members::open(out);
    write_opt_str(o.key("amount"), d.amount.map(format_amount).as_deref());
    write_canonical_str(o.key("description"), &d.description);
    match d.percent {
        Some(p) => write_decimal(o.key("percent"), p),
        None => o.key("percent").extend_from_slice(b"null"),
    }
    o.close();
}

fn write_voucher(out: &mut Vec<u8>, v: &Voucher) {
    let mut o = Members::open(out);
    write_canonical_str(o.key("amount"), &format_amount(v.amount));
    write_canonical_str(o.key("code"), &v.code);
    o.close();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fiscal::order::{Category, LineOrigin, LineRole, PaymentMethod, Purpose, Unit};
    use crate::fiscal::{EventType, VatLetter};
    use crate::journal::canonical::to_canonical;
    use proptest::prelude::*;

    fn decimal() -> impl Strategy<Value = Decimal> {
        (-10_000_000i64..10_000_000, 0u32..6).prop_map(|(m, s)| Decimal::new(m, s))
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-zA-Z0-9 _-]{0,12}",
            ".{0,8}",
            Just("quote \" back \\ tab \t nl \n nul \u{0} é €".to_owned()),
        ]
    }

    fn reference() -> impl Strategy<Value = Reference> {
        (text(), text()).prop_map(|(register, request_id)| Reference {
            register,
            request_id,
        })
    }

    fn line() -> impl Strategy<Value = OrderLine> {
        (
            (text(), decimal(), decimal(), 0usize..3, 0usize..5),
            (
                prop::option::of(text()),
                prop::option::of(0usize..5),
                0usize..4,
                prop::option::of(text()),
                prop::option::of(0usize..1000),
            ),
        )
            .prop_map(
                |(
                    (description, quantity, unit_price, unit, vat),
                    (station, category, role, menu, original_line),
                )| {
                    OrderLine {
                        description,
                        quantity,
                        unit: [Unit::Piece, Unit::Kg, Unit::L][unit],
                        unit_price,
                        vat: [
                            VatLetter::A,
                            VatLetter::B,
                            VatLetter::C,
                            VatLetter::D,
                            VatLetter::X,
                        ][vat],
                        station,
                        category: category.and_then(|c| {
                            [
                                Category::Meal,
                                Category::Drink,
                                Category::TakeawayMeal,
                                Category::Other,
                            ]
                            .get(c)
                            .copied()
                        }),
                        role: [
                            LineRole::Item,
                            LineRole::MenuPart,
                            LineRole::Discount,
                            LineRole::DepositApplied,
                        ][role],
                        menu,
                        origin: (role == 3).then(|| LineOrigin {
                            seq: 7,
                            label: "PS".into(),
                            ticket_number: Some(3),
                        }),
                        original_line,
                    }
                },
            )
    }

    fn order() -> impl Strategy<Value = Order> {
        (
            (
                text(),
                text(),
                text(),
                0usize..4,
                prop::option::of(text()),
                prop::option::of(text()),
            ),
            (
                prop::collection::vec(line(), 0..5),
                prop::collection::vec((0usize..5, decimal()), 0..3),
                0usize..8,
                any::<bool>(),
                prop::option::of(text()),
                prop::option::of(reference()),
                prop::collection::vec(reference(), 0..2),
            ),
            (
                prop::collection::vec(
                    (
                        text(),
                        prop::option::of(decimal()),
                        prop::option::of(decimal()),
                    ),
                    0..2,
                ),
                prop::collection::vec((text(), decimal()), 0..2),
                prop::option::of(text()),
                prop::option::of(text()),
                any::<bool>(),
                prop::option::of(text()),
            ),
        )
            .prop_map(
                |(
                    (request_id, register, operator, event, table, pos_time),
                    (lines, payments, purpose, bill, to_table, original, deposits),
                    (discounts, vouchers, catering_event, catering_end, catering_settle, check),
                )| Order {
                    request_id,
                    register,
                    operator,
                    event_type: EventType::ALL[event],
                    table,
                    pos_time,
                    lines,
                    payments: payments
                        .into_iter()
                        .map(|(m, amount)| Payment {
                            method: [
                                PaymentMethod::Cash,
                                PaymentMethod::Card,
                                PaymentMethod::Voucher,
                                PaymentMethod::Transfer,
                                PaymentMethod::Other,
                            ][m],
                            amount,
                        })
                        .collect(),
                    purpose: [
                        Purpose::Sale,
                        Purpose::WorkIn,
                        Purpose::WorkOut,
                        Purpose::Deposit,
                        Purpose::VoucherSale,
                        Purpose::TableMove,
                        Purpose::TableMerge,
                        Purpose::CateringClose,
                    ][purpose],
                    bill,
                    to_table,
                    original,
                    deposits,
                    discounts: discounts
                        .into_iter()
                        .map(|(description, amount, percent)| Discount {
                            description,
                            amount,
                            percent,
                        })
                        .collect(),
                    vouchers: vouchers
                        .into_iter()
                        .map(|(code, amount)| Voucher { code, amount })
                        .collect(),
                    catering_event,
                    catering_end,
                    catering_settle,
                    check,
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn typed_request_bytes_equal_the_value_encoding(order in order()) {
            let mut typed = Vec::new();
            write_request(&mut typed, &order).unwrap();
            let expected = to_canonical(&order.to_json()).unwrap();
            prop_assert_eq!(String::from_utf8_lossy(&typed), String::from_utf8_lossy(&expected));
            prop_assert_eq!(order.request_digest().unwrap(), sha256_hex(&expected));
        }
    }
}
