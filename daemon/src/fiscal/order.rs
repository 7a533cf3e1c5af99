//! Orders from registers: parsing the wire JSON with field paths, bounds, and validation.
//!
//! The wire format is documented in `docs/orders.md`. Money is always a decimal string; a JSON
//! number where money is expected is refused, because floats lose cents.

use super::error::{FieldError, Problems, ValidationError};
use super::insz::validate_operator_id;
use super::label::EventType;
use super::money::{parse_amount, parse_decimal};
use super::vat::VatLetter;
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{Value, json};

/// Largest accepted order, in bytes of JSON.
pub const MAX_ORDER_BYTES: usize = 256 * 1024;
/// Most lines one order may have.
pub const MAX_LINES: usize = 500;
/// Most payments one order may have.
pub const MAX_PAYMENTS: usize = 20;
/// Longest line description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 64;
/// Largest absolute quantity.
pub const MAX_QUANTITY: Decimal = Decimal::from_parts(99_999, 0, 0, false, 0);

/// The unit a line's quantity is counted in. The PLU hash counts weight in grams and volume in
/// millilitres (reference §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// Pieces (default).
    #[default]
    Piece,
    /// Kilograms.
    Kg,
    /// Litres.
    L,
}

impl Unit {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Piece => "piece",
            Unit::Kg => "kg",
            Unit::L => "l",
        }
    }

    /// The quantity as the PLU hash counts it: pieces, grams or millilitres.
    pub fn plu_quantity(self, quantity: Decimal) -> Decimal {
        match self {
            Unit::Piece => quantity,
            Unit::Kg | Unit::L => quantity * Decimal::from(1000),
        }
    }
}

/// What a line is, for the meal-turnover threshold and reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// A meal consumed on site.
    Meal,
    /// A drink.
    Drink,
    /// A take-away meal.
    TakeawayMeal,
    /// Anything else.
    Other,
}

impl Category {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Meal => "meal",
            Category::Drink => "drink",
            Category::TakeawayMeal => "takeaway_meal",
            Category::Other => "other",
        }
    }
}

/// How a ticket was paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentMethod {
    /// Cash: rounded to €0.05.
    Cash,
    /// Debit or credit card.
    Card,
    /// A multi-purpose voucher redeemed.
    Voucher,
    /// Bank transfer or invoice.
    Transfer,
    /// Anything else.
    Other,
}

impl PaymentMethod {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentMethod::Cash => "cash",
            PaymentMethod::Card => "card",
            PaymentMethod::Voucher => "voucher",
            PaymentMethod::Transfer => "transfer",
            PaymentMethod::Other => "other",
        }
    }
}

/// A validated order line.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderLine {
    /// Description as printed.
    pub description: String,
    /// Quantity, in `unit`; negative for corrections.
    pub quantity: Decimal,
    /// Unit of the quantity.
    pub unit: Unit,
    /// Unit price, VAT included; negative for discounts.
    pub unit_price: Decimal,
    /// VAT letter.
    pub vat: VatLetter,
    /// Station the line is prepared at (kitchen, bar…), if any.
    pub station: Option<String>,
    /// Category, if given.
    pub category: Option<Category>,
}

/// A validated payment.
#[derive(Debug, Clone, PartialEq)]
pub struct Payment {
    /// Method.
    pub method: PaymentMethod,
    /// Amount paid with that method.
    pub amount: Decimal,
}

/// A validated order from a register.
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    /// Idempotency key, unique per register.
    pub request_id: String,
    /// The register it came from (from the authenticated transport).
    pub register: String,
    /// Operator's INSZ or BIS number.
    pub operator: String,
    /// Event type.
    pub event_type: EventType,
    /// Table, for table service.
    pub table: Option<String>,
    /// The POS's own date and time of the ticket, if it sent one.
    pub pos_time: Option<String>,
    /// Lines, in the order entered.
    pub lines: Vec<OrderLine>,
    /// Payments.
    pub payments: Vec<Payment>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireOrder {
    request_id: String,
    #[serde(default)]
    register: Option<String>,
    operator: String,
    event_type: String,
    #[serde(default)]
    table: Option<String>,
    #[serde(default)]
    pos_time: Option<String>,
    #[serde(default)]
    lines: Vec<WireLine>,
    #[serde(default)]
    payments: Vec<WirePayment>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireLine {
    description: String,
    quantity: Value,
    #[serde(default)]
    unit: Option<String>,
    unit_price: Value,
    vat: String,
    #[serde(default)]
    station: Option<String>,
    #[serde(default)]
    category: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WirePayment {
    method: String,
    amount: Value,
}

/// True for identifiers used in topics and keys: 1–`max` of `A–Z a–z 0–9 . _ : -`.
pub fn is_valid_id(text: &str, max: usize) -> bool {
    !text.is_empty()
        && text.len() <= max
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'))
}

fn check_text(problems: &mut Problems, field: &str, text: &str, max_chars: usize) {
    if text.trim().is_empty() {
        problems.push(field, "must not be empty");
    } else if text.chars().count() > max_chars {
        problems.push(field, format!("is longer than {max_chars} characters"));
    } else if text.chars().any(char::is_control) {
        problems.push(field, "must not contain control characters");
    }
}

fn money_field(field: &str, value: &Value) -> Result<Decimal, FieldError> {
    match value {
        Value::String(s) => parse_amount(field, s),
        Value::Number(n) => Err(FieldError::new(
            field,
            format!("money must be a decimal string like \"2.20\", not the JSON number {n}"),
        )),
        _ => Err(FieldError::new(
            field,
            "money must be a decimal string like \"2.20\"",
        )),
    }
}

fn quantity_field(field: &str, value: &Value) -> Result<Decimal, FieldError> {
    let q = match value {
        Value::Number(n) => match n.as_i64() {
            Some(i) => Decimal::from(i),
            None => {
                return Err(FieldError::new(
                    field,
                    format!(
                        "a fractional quantity must be a decimal string like \"0.350\", not the JSON number {n}"
                    ),
                ));
            }
        },
        Value::String(s) => parse_decimal(field, s, 3, "quantity")?,
        _ => {
            return Err(FieldError::new(
                field,
                "quantity must be an integer or a decimal string",
            ));
        }
    };
    if q.is_zero() {
        return Err(FieldError::new(field, "quantity must not be zero"));
    }
    if q.abs() > MAX_QUANTITY {
        return Err(FieldError::new(
            field,
            format!("quantity {q} is out of range (at most {MAX_QUANTITY} either way)"),
        ));
    }
    Ok(q)
}

fn enum_field<T>(
    problems: &mut Problems,
    field: &str,
    text: &str,
    parse: impl Fn(&str) -> Option<T>,
    what: &str,
    valid: &str,
) -> Option<T> {
    let parsed = parse(text);
    if parsed.is_none() {
        problems.push(
            field,
            format!(
                "unknown {what} \"{}\" (expected {valid})",
                text.chars().take(32).collect::<String>()
            ),
        );
    }
    parsed
}

fn parse_serde<T: serde::de::DeserializeOwned>(text: &str) -> Option<T> {
    serde_json::from_value(Value::String(text.to_owned())).ok()
}

impl Order {
    /// Parses and validates an order sent by `register` (the register the transport
    /// authenticated). Returns every problem found, each with its field path.
    pub fn from_json(register: &str, bytes: &[u8]) -> Result<Order, ValidationError> {
        if bytes.len() > MAX_ORDER_BYTES {
            return Err(ValidationError::single(
                "",
                format!(
                    "order is {} bytes; at most {MAX_ORDER_BYTES} are accepted",
                    bytes.len()
                ),
            ));
        }
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let wire: WireOrder = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let message = describe_serde_error(e.inner());
            let missing = message
                .strip_prefix("missing field `")
                .and_then(|rest| rest.split('`').next());
            let field = match (path.as_str(), missing) {
                (".", Some(name)) => name.to_owned(),
                (".", None) => String::new(),
                (p, Some(name)) => format!("{p}.{name}"),
                (p, None) => p.to_owned(),
            };
            ValidationError::single(field, message)
        })?;
        if let Err(e) = de.end() {
            return Err(ValidationError::single(
                "",
                format!("trailing data after the order: {e}"),
            ));
        }
        Self::validate(register, wire)
    }

    fn validate(register: &str, wire: WireOrder) -> Result<Order, ValidationError> {
        let mut p = Problems::default();
        if !is_valid_id(&wire.request_id, 64) {
            p.push(
                "request_id",
                "must be 1-64 characters of A-Z a-z 0-9 . _ : -",
            );
        }
        if let Some(r) = &wire.register
            && r != register
        {
            p.push(
                "register",
                format!(
                    "order names register \"{}\" but was sent by register \"{register}\"",
                    r.chars().take(32).collect::<String>()
                ),
            );
        }
        if let Err(e) = validate_operator_id(&wire.operator) {
            p.push("operator", e.to_string());
        }
        let event_type = enum_field(
            &mut p,
            "event_type",
            &wire.event_type,
            EventType::parse,
            "event type",
            "normal, pro_forma, training or copy",
        );
        if let Some(t) = &wire.table {
            check_text(&mut p, "table", t, 32);
        }
        if let Some(t) = &wire.pos_time
            && chrono::DateTime::parse_from_rfc3339(t).is_err()
        {
            p.push(
                "pos_time",
                "must be an RFC 3339 date and time like 2026-11-22T20:15:00+01:00",
            );
        }
        if wire.lines.len() > MAX_LINES {
            p.push(
                "lines",
                format!(
                    "has {} lines; at most {MAX_LINES} are accepted",
                    wire.lines.len()
                ),
            );
        }
        if wire.payments.len() > MAX_PAYMENTS {
            p.push(
                "payments",
                format!(
                    "has {} payments; at most {MAX_PAYMENTS} are accepted",
                    wire.payments.len()
                ),
            );
        }
        let mut lines = Vec::with_capacity(wire.lines.len());
        for (i, l) in wire.lines.iter().enumerate().take(MAX_LINES) {
            let at = |f: &str| format!("lines[{i}].{f}");
            check_text(
                &mut p,
                &at("description"),
                &l.description,
                MAX_DESCRIPTION_CHARS,
            );
            let quantity = p.take(quantity_field(&at("quantity"), &l.quantity));
            let unit = match &l.unit {
                None => Some(Unit::Piece),
                Some(u) => enum_field(
                    &mut p,
                    &at("unit"),
                    u,
                    parse_serde::<Unit>,
                    "unit",
                    "piece, kg or l",
                ),
            };
            let unit_price = p.take(money_field(&at("unit_price"), &l.unit_price));
            let vat = enum_field(
                &mut p,
                &at("vat"),
                &l.vat,
                VatLetter::parse,
                "VAT letter",
                "A, B, C, D or X",
            );
            if let Some(s) = &l.station
                && !is_valid_id(s, 32)
            {
                p.push(
                    at("station"),
                    "must be 1-32 characters of A-Z a-z 0-9 . _ : -",
                );
            }
            let category = match &l.category {
                None => Some(None),
                Some(c) => enum_field(
                    &mut p,
                    &at("category"),
                    c,
                    parse_serde::<Category>,
                    "category",
                    "meal, drink, takeaway_meal or other",
                )
                .map(Some),
            };
            if let (Some(quantity), Some(unit), Some(unit_price), Some(vat), Some(category)) =
                (quantity, unit, unit_price, vat, category)
            {
                lines.push(OrderLine {
                    description: l.description.clone(),
                    quantity,
                    unit,
                    unit_price,
                    vat,
                    station: l.station.clone(),
                    category,
                });
            }
        }
        let mut payments = Vec::with_capacity(wire.payments.len());
        for (i, pay) in wire.payments.iter().enumerate().take(MAX_PAYMENTS) {
            let method = enum_field(
                &mut p,
                &format!("payments[{i}].method"),
                &pay.method,
                parse_serde::<PaymentMethod>,
                "payment method",
                "cash, card, voucher, transfer or other",
            );
            let amount = p.take(money_field(&format!("payments[{i}].amount"), &pay.amount));
            if let (Some(method), Some(amount)) = (method, amount) {
                payments.push(Payment { method, amount });
            }
        }
        if event_type == Some(EventType::ProForma) && !wire.payments.is_empty() {
            p.push(
                "payments",
                "a pro forma is not paid: send payments with the normal sale",
            );
        }
        p.finish()?;
        Ok(Order {
            request_id: wire.request_id,
            register: register.to_owned(),
            operator: wire.operator,
            // Present: a missing event type was recorded as a problem above.
            event_type: event_type.unwrap_or(EventType::Normal),
            table: wire.table,
            pos_time: wire.pos_time,
            lines,
            payments,
        })
    }

    /// The order in canonical form, used for the idempotency digest and the journal: every
    /// field, amounts as strings.
    pub fn to_json(&self) -> Value {
        json!({
            "request_id": self.request_id,
            "register": self.register,
            "operator": self.operator,
            "event_type": self.event_type.as_str(),
            "table": self.table,
            "pos_time": self.pos_time,
            "lines": self.lines.iter().map(|l| json!({
                "description": l.description,
                "quantity": l.quantity.normalize().to_string(),
                "unit": l.unit.as_str(),
                "unit_price": l.unit_price.normalize().to_string(),
                "vat": l.vat.as_str(),
                "station": l.station,
                "category": l.category.map(Category::as_str),
            })).collect::<Vec<_>>(),
            "payments": self.payments.iter().map(|p| json!({
                "method": p.method.as_str(),
                "amount": p.amount.normalize().to_string(),
            })).collect::<Vec<_>>(),
        })
    }
}

fn describe_serde_error(e: &serde_json::Error) -> String {
    use serde_json::error::Category as C;
    let text = e.to_string();
    // serde appends " at line L column C"; the field path already says where.
    let text = match text.rfind(" at line ") {
        Some(i) => text[..i].to_owned(),
        None => text,
    };
    match e.classify() {
        C::Syntax | C::Eof => format!("not valid JSON: {text}"),
        C::Data | C::Io => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OP: &str = "85073003328";

    fn order(body: &str) -> Result<Order, ValidationError> {
        Order::from_json("till-1", body.as_bytes())
    }

    fn fields(e: ValidationError) -> Vec<String> {
        e.problems.into_iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn parses_a_complete_order() {
        let o = order(&format!(r#"{{"request_id":"r-1","operator":"{OP}","event_type":"normal","table":"12",
            "lines":[{{"description":"Cola","quantity":2,"unit_price":"2.20","vat":"A","station":"bar","category":"drink"}},
                     {{"description":"Kaas","quantity":"0.350","unit":"kg","unit_price":"20.00","vat":"C"}}],
            "payments":[{{"method":"card","amount":"11.40"}}]}}"#)).unwrap();
        assert_eq!(o.lines.len(), 2);
        assert_eq!(
            o.lines[1].unit.plu_quantity(o.lines[1].quantity),
            Decimal::from(350)
        );
        assert_eq!(o.payments[0].method, PaymentMethod::Card);
        assert_eq!(o.table.as_deref(), Some("12"));
    }

    #[test]
    fn names_the_field_at_fault() {
        let e = order(&format!(
            r#"{{"request_id":"r-1","operator":"{OP}","event_type":"normal",
            "lines":[{{"description":"a","quantity":1,"unit_price":"1.00","vat":"A"}},
                     {{"description":"b","quantity":1,"unit_price":"1.00","vat":"A"}},
                     {{"description":"c","quantity":1,"unit_price":"1.00","vat":"E"}}]}}"#
        ))
        .unwrap_err();
        assert_eq!(
            fields(e),
            [r#"lines[2].vat: unknown VAT letter "E" (expected A, B, C, D or X)"#]
        );
    }

    #[test]
    fn reports_every_problem() {
        let e = order(
            r#"{"request_id":"has space","operator":"85073003329","event_type":"sale",
            "lines":[{"description":"","quantity":0,"unit_price":2.2,"vat":"A"}]}"#,
        )
        .unwrap_err();
        assert_eq!(
            fields(e),
            [
                "request_id: must be 1-64 characters of A-Z a-z 0-9 . _ : -",
                "operator: INSZ check digits do not match",
                "event_type: unknown event type \"sale\" (expected normal, pro_forma, training or copy)",
                "lines[0].description: must not be empty",
                "lines[0].quantity: quantity must not be zero",
                "lines[0].unit_price: money must be a decimal string like \"2.20\", not the JSON number 2.2",
            ]
        );
    }

    #[test]
    fn structural_errors_carry_paths() {
        let e = order(r#"{"request_id":"r","operator":"x","event_type":"normal","lines":[{"description":"a","quantity":1,"unit_price":"1","vat":"A","colour":"red"}]}"#).unwrap_err();
        assert_eq!(e.first().field, "lines[0].colour");
        assert!(e.first().message.contains("unknown field `colour`"), "{e}");
        let e = order(r#"{"request_id":"r","operator":"x","event_type":"normal","lines":"none"}"#)
            .unwrap_err();
        assert_eq!(e.first().field, "lines");
        let e = order("not json").unwrap_err();
        assert!(e.first().message.starts_with("not valid JSON"), "{e}");
        let e = order(r#"{"operator":"x","event_type":"normal"}"#).unwrap_err();
        assert!(
            e.first().message.contains("missing field `request_id`"),
            "{e}"
        );
    }

    #[test]
    fn bounds() {
        let line = r#"{"description":"a","quantity":1,"unit_price":"1.00","vat":"A"}"#;
        let many = vec![line; MAX_LINES + 1].join(",");
        let e = order(&format!(
            r#"{{"request_id":"r","operator":"{OP}","event_type":"normal","lines":[{many}]}}"#
        ))
        .unwrap_err();
        assert_eq!(
            e.first().to_string(),
            "lines: has 501 lines; at most 500 are accepted"
        );
        let big = "x".repeat(MAX_ORDER_BYTES + 1);
        assert!(order(&big).unwrap_err().first().message.contains("bytes"));
        let e = order(&format!(r#"{{"request_id":"r","operator":"{OP}","event_type":"normal","lines":[{{"description":"{}","quantity":100000,"unit_price":"1.001","vat":"A"}}]}}"#, "d".repeat(65))).unwrap_err();
        assert_eq!(e.problems.len(), 3, "{e}");
    }

    #[test]
    fn register_must_match_the_sender() {
        let e = order(&format!(
            r#"{{"request_id":"r","register":"till-2","operator":"{OP}","event_type":"normal"}}"#
        ))
        .unwrap_err();
        assert_eq!(e.first().field, "register");
    }

    #[test]
    fn pro_forma_has_no_payments() {
        let e = order(&format!(r#"{{"request_id":"r","operator":"{OP}","event_type":"pro_forma","payments":[{{"method":"cash","amount":"1.00"}}]}}"#)).unwrap_err();
        assert_eq!(e.first().field, "payments");
    }
}
