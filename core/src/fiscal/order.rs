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

/// What an order asks for. Everything but `sale` is a restaurant workflow (docs/orders.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// A ticket of its event type (default).
    #[default]
    Sale,
    /// The operator clocks in (FDM v1: a signed zero NS, reference §6).
    WorkIn,
    /// The operator clocks out.
    WorkOut,
    /// A deposit (acompte) received: VAT is due, so it is a normal ticket.
    Deposit,
    /// Multi-purpose vouchers sold: money in, not a sale, no VAT ticket.
    VoucherSale,
    /// An open table moves to a free table.
    TableMove,
    /// An open table is merged into another open table.
    TableMerge,
    /// A catering event ended as estimated: no correction is needed. Registered as the first
    /// operation after the event (a signed NS of 0.00), it settles the event.
    CateringClose,
}

impl Purpose {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Sale => "sale",
            Purpose::WorkIn => "work_in",
            Purpose::WorkOut => "work_out",
            Purpose::Deposit => "deposit",
            Purpose::VoucherSale => "voucher_sale",
            Purpose::TableMove => "table_move",
            Purpose::TableMerge => "table_merge",
            Purpose::CateringClose => "catering_close",
        }
    }

    /// Parses the wire name.
    pub fn parse(text: &str) -> Option<Purpose> {
        parse_serde(text)
    }
}

/// Why a line is on a ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LineRole {
    /// Sent by the register as it is.
    #[default]
    Item,
    /// One VAT part of an all-in menu.
    MenuPart,
    /// A discount's share for one VAT letter.
    Discount,
    /// A deposit received earlier, deducted on the final ticket.
    DepositApplied,
}

impl LineRole {
    /// Name in journal bodies.
    pub fn as_str(self) -> &'static str {
        match self {
            LineRole::Item => "item",
            LineRole::MenuPart => "menu_part",
            LineRole::Discount => "discount",
            LineRole::DepositApplied => "deposit_applied",
        }
    }

    /// Parses a journal name.
    pub fn parse(text: &str) -> Option<LineRole> {
        [
            LineRole::Item,
            LineRole::MenuPart,
            LineRole::Discount,
            LineRole::DepositApplied,
        ]
        .into_iter()
        .find(|r| r.as_str() == text)
    }
}

/// Where a line of a final ticket was first registered (a pro forma of the table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineOrigin {
    /// Journal sequence number of the pro forma.
    pub seq: u64,
    /// Its label (PS or PR).
    pub label: String,
    /// Its ticket number.
    pub ticket_number: Option<u64>,
}

/// A reference to an earlier request: the register (default: the sender) and its request id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Reference {
    /// Register that sent it.
    pub register: String,
    /// Its request id.
    pub request_id: String,
}

impl Reference {
    /// As stored in journal bodies.
    pub fn to_json(&self) -> Value {
        json!({"register": self.register, "request_id": self.request_id})
    }
}

/// A ticket-wide discount, split over the VAT letters in proportion.
#[derive(Debug, Clone, PartialEq)]
pub struct Discount {
    /// Printed description.
    pub description: String,
    /// A fixed amount off (positive), VAT included…
    pub amount: Option<Decimal>,
    /// …or a percentage of the ticket.
    pub percent: Option<Decimal>,
}

/// A multi-purpose voucher sold.
#[derive(Debug, Clone, PartialEq)]
pub struct Voucher {
    /// The voucher's code.
    pub code: String,
    /// Its value.
    pub amount: Decimal,
}

/// The administration's coefficient for all-in menus of three courses or more (decision
/// E.T. 117.557): 35 % of the price is drinks at 21 %, the rest food at 12 % (source 003).
pub const MENU_DRINKS_SHARE: Decimal = Decimal::from_parts(35, 0, 0, false, 2);

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
    /// Why the line is there.
    pub role: LineRole,
    /// The all-in menu this line is a part of.
    pub menu: Option<String>,
    /// The pro forma the line was first registered on (lines of a final table ticket).
    pub origin: Option<LineOrigin>,
    /// On a refund: the index of the line of the original ticket it gives back.
    pub original_line: Option<usize>,
}

impl OrderLine {
    /// A plain line.
    pub fn item(description: &str, quantity: Decimal, unit_price: Decimal, vat: VatLetter) -> Self {
        OrderLine {
            description: description.to_owned(),
            quantity,
            unit: Unit::Piece,
            unit_price,
            vat,
            station: None,
            category: None,
            role: LineRole::Item,
            menu: None,
            origin: None,
            original_line: None,
        }
    }

    /// Rebuilds a line from a journal body's `lines` member.
    pub fn from_journal(v: &Value) -> Option<OrderLine> {
        let text = |k: &str| v.get(k).and_then(Value::as_str);
        Some(OrderLine {
            description: text("description")?.to_owned(),
            quantity: text("quantity")?.parse().ok()?,
            unit: parse_serde(text("unit").unwrap_or("piece"))?,
            unit_price: text("unit_price")?.parse().ok()?,
            vat: VatLetter::parse(text("vat")?)?,
            station: text("station").map(str::to_owned),
            category: text("category").and_then(parse_serde),
            role: text("role").and_then(LineRole::parse).unwrap_or_default(),
            menu: text("menu").map(str::to_owned),
            origin: v.get("origin").and_then(|o| {
                Some(LineOrigin {
                    seq: o.get("seq")?.as_u64()?,
                    label: o.get("label")?.as_str()?.to_owned(),
                    ticket_number: o.get("ticket_number").and_then(Value::as_u64),
                })
            }),
            original_line: v
                .get("original_line")
                .and_then(Value::as_u64)
                .and_then(|i| usize::try_from(i).ok()),
        })
    }

    /// True when `other` is the same article (description, unit, price, VAT): what a correction
    /// must match.
    pub fn same_article(&self, other: &OrderLine) -> bool {
        self.description == other.description
            && self.unit == other.unit
            && self.unit_price == other.unit_price
            && self.vat == other.vat
    }
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
    /// What the order asks for.
    pub purpose: Purpose,
    /// A pro forma that is the table's bill printed before payment (lines: the table's).
    pub bill: bool,
    /// Target table of a move or merge.
    pub to_table: Option<String>,
    /// The ticket a copy reprints or a refund gives back.
    pub original: Option<Reference>,
    /// Deposits received earlier that this final ticket deducts.
    pub deposits: Vec<Reference>,
    /// Ticket-wide discounts.
    pub discounts: Vec<Discount>,
    /// Vouchers sold (purpose `voucher_sale`).
    pub vouchers: Vec<Voucher>,
    /// Catering event this ticket belongs to (estimate, supplement, correction).
    pub catering_event: Option<String>,
    /// When the catering event ends (RFC 3339), named by its estimate (or deposit).
    pub catering_end: Option<String>,
    /// This ticket settles the catering event (its supplement or correction) although the
    /// event's end has not come yet (it ended early).
    pub catering_settle: bool,
    /// A check (bill) id: tracks pro formas without a table to their normal sale.
    pub check: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireReference {
    #[serde(default)]
    register: Option<String>,
    request_id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireDiscount {
    description: String,
    #[serde(default)]
    amount: Option<Value>,
    #[serde(default)]
    percent: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireVoucher {
    code: String,
    amount: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireComponent {
    description: String,
    unit_price: Value,
    vat: String,
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
    #[serde(default)]
    purpose: Option<String>,
    #[serde(default)]
    bill: bool,
    #[serde(default)]
    to_table: Option<String>,
    #[serde(default)]
    original: Option<WireReference>,
    #[serde(default)]
    deposits: Vec<WireReference>,
    #[serde(default)]
    discounts: Vec<WireDiscount>,
    #[serde(default)]
    vouchers: Vec<WireVoucher>,
    #[serde(default)]
    catering_event: Option<String>,
    #[serde(default)]
    catering_end: Option<String>,
    #[serde(default)]
    catering_settle: bool,
    #[serde(default)]
    check: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireLine {
    description: String,
    quantity: Value,
    #[serde(default)]
    unit: Option<String>,
    unit_price: Value,
    #[serde(default)]
    vat: Option<String>,
    #[serde(default)]
    station: Option<String>,
    #[serde(default)]
    category: Option<String>,
    #[serde(default)]
    menu_split: Option<String>,
    #[serde(default)]
    components: Option<Vec<WireComponent>>,
    #[serde(default)]
    original_line: Option<u32>,
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
    } else if text.chars().any(is_bidi_control) {
        problems.push(
            field,
            "must not contain bidirectional text controls (U+202A-U+202E, U+2066-U+2069, U+200E, U+200F, U+061C): they make printed text read differently from what is signed",
        );
    }
}

/// Unicode's explicit bidirectional formatting characters: they reorder how a line is shown
/// (a U+202E prints the rest of a description reversed) without changing what is stored.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
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

/// Parses a string as a serde value of type `T` (an enum named by its serde name), if it is one.
pub fn parse_serde<T: serde::de::DeserializeOwned>(text: &str) -> Option<T> {
    serde_json::from_value(Value::String(text.to_owned())).ok()
}

impl Order {
    /// Parses and validates an order sent by `register` (the register the transport
    /// authenticated). Returns every problem found, each with its field path. Menu parts split
    /// by the coefficient are named in English; see [`Order::from_json_localised`].
    pub fn from_json(register: &str, bytes: &[u8]) -> Result<Order, ValidationError> {
        Self::from_json_localised(register, bytes, MenuPartNames::ENGLISH)
    }

    /// [`Order::from_json`], naming the parts of a menu split by the coefficient in the
    /// tickets' language.
    pub fn from_json_localised(
        register: &str,
        bytes: &[u8],
        names: MenuPartNames,
    ) -> Result<Order, ValidationError> {
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
        Self::validate(register, wire, names)
    }

    fn validate(
        register: &str,
        wire: WireOrder,
        names: MenuPartNames,
    ) -> Result<Order, ValidationError> {
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
            let menu = l.menu_split.is_some() || l.components.is_some();
            let vat = match (&l.vat, menu) {
                (Some(v), false) => enum_field(
                    &mut p,
                    &at("vat"),
                    v,
                    VatLetter::parse,
                    "VAT letter",
                    "A, B, C, D or X",
                ),
                (None, false) => {
                    p.push(at("vat"), "missing field `vat`");
                    None
                }
                (Some(_), true) => {
                    p.push(
                        at("vat"),
                        "an all-in menu has no VAT letter of its own: its parts have theirs",
                    );
                    None
                }
                // A menu's parts carry the letters; D is never used for it.
                (None, true) => Some(VatLetter::D),
            };
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
            let split = menu_split(&mut p, i, l, names);
            if l.original_line.is_some() && menu {
                p.push(
                    at("original_line"),
                    "refund a menu's parts line by line, not the menu",
                );
            }
            if let Some(n) = l.original_line
                && n as usize >= MAX_LINES
            {
                p.push(
                    at("original_line"),
                    format!("must be a line index below {MAX_LINES}"),
                );
            }
            if let (Some(quantity), Some(unit), Some(unit_price), Some(vat), Some(category)) =
                (quantity, unit, unit_price, vat, category)
            {
                let line = OrderLine {
                    description: l.description.clone(),
                    quantity,
                    unit,
                    unit_price,
                    vat,
                    station: l.station.clone(),
                    category,
                    role: LineRole::Item,
                    menu: None,
                    origin: None,
                    original_line: l.original_line.map(|i| i as usize),
                };
                match split {
                    None if !menu => lines.push(line),
                    None => {}
                    Some(parts) => lines.extend(expand_menu(&line, &parts)),
                }
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
        let purpose = match &wire.purpose {
            None => Some(Purpose::Sale),
            Some(t) => enum_field(
                &mut p,
                "purpose",
                t,
                Purpose::parse,
                "purpose",
                "sale, work_in, work_out, deposit, voucher_sale, table_move, table_merge or catering_close",
            ),
        };
        let reference = |r: &WireReference, field: &str, p: &mut Problems| {
            let reg = r.register.clone().unwrap_or_else(|| register.to_owned());
            if !is_valid_id(&reg, 32) {
                p.push(format!("{field}.register"), "must be a register id");
            }
            if !is_valid_id(&r.request_id, 64) {
                p.push(
                    format!("{field}.request_id"),
                    "must be 1-64 characters of A-Z a-z 0-9 . _ : -",
                );
            }
            Reference {
                register: reg,
                request_id: r.request_id.clone(),
            }
        };
        let original = wire
            .original
            .as_ref()
            .map(|r| reference(r, "original", &mut p));
        if wire.deposits.len() > MAX_PAYMENTS {
            p.push("deposits", format!("at most {MAX_PAYMENTS} deposits"));
        }
        let deposits: Vec<Reference> = wire
            .deposits
            .iter()
            .take(MAX_PAYMENTS)
            .enumerate()
            .map(|(i, r)| reference(r, &format!("deposits[{i}]"), &mut p))
            .collect();
        if wire.discounts.len() > MAX_PAYMENTS {
            p.push("discounts", format!("at most {MAX_PAYMENTS} discounts"));
        }
        let mut discounts = Vec::new();
        for (i, d) in wire.discounts.iter().enumerate().take(MAX_PAYMENTS) {
            let at = |f: &str| format!("discounts[{i}].{f}");
            check_text(
                &mut p,
                &at("description"),
                &d.description,
                MAX_DESCRIPTION_CHARS,
            );
            let amount = d
                .amount
                .as_ref()
                .and_then(|a| p.take(money_field(&at("amount"), a)));
            let percent = match &d.percent {
                Some(Value::String(s)) => p.take(parse_decimal(&at("percent"), s, 2, "percent")),
                Some(_) => {
                    p.push(at("percent"), "must be a decimal string like \"10\"");
                    None
                }
                None => None,
            };
            match (amount, percent) {
                (Some(a), None) if a > Decimal::ZERO => {}
                (None, Some(pc)) if pc > Decimal::ZERO && pc <= Decimal::ONE_HUNDRED => {}
                (None, None) if d.amount.is_some() || d.percent.is_some() => {}
                (Some(_), None) => {
                    p.push(at("amount"), "must be more than 0 (the amount taken off)")
                }
                (None, Some(_)) => p.push(at("percent"), "must be more than 0 and at most 100"),
                _ => p.push(at("amount"), "give either amount or percent"),
            }
            discounts.push(Discount {
                description: d.description.clone(),
                amount,
                percent,
            });
        }
        if wire.vouchers.len() > MAX_PAYMENTS {
            p.push("vouchers", format!("at most {MAX_PAYMENTS} vouchers"));
        }
        let mut vouchers = Vec::new();
        for (i, v) in wire.vouchers.iter().enumerate().take(MAX_PAYMENTS) {
            if !is_valid_id(&v.code, 64) {
                p.push(
                    format!("vouchers[{i}].code"),
                    "must be 1-64 characters of A-Z a-z 0-9 . _ : -",
                );
            }
            if let Some(amount) = p.take(money_field(&format!("vouchers[{i}].amount"), &v.amount)) {
                if amount <= Decimal::ZERO {
                    p.push(format!("vouchers[{i}].amount"), "must be more than 0");
                }
                vouchers.push(Voucher {
                    code: v.code.clone(),
                    amount,
                });
            }
        }
        if let Some(t) = &wire.to_table {
            check_text(&mut p, "to_table", t, 32);
        }
        if let Some(e) = &wire.catering_event
            && !is_valid_id(e, 64)
        {
            p.push(
                "catering_event",
                "must be 1-64 characters of A-Z a-z 0-9 . _ : -",
            );
        }
        if let Some(t) = &wire.catering_end
            && chrono::DateTime::parse_from_rfc3339(t).is_err()
        {
            p.push(
                "catering_end",
                "must be an RFC 3339 date and time like 2026-05-10T23:00:00+02:00",
            );
        }
        if let Some(c) = &wire.check
            && !is_valid_id(c, 32)
        {
            p.push("check", "must be 1-32 characters of A-Z a-z 0-9 . _ : -");
        }
        if let (Some(purpose), Some(event_type)) = (purpose, event_type) {
            check_purpose(&mut p, &wire, purpose, event_type);
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
            purpose: purpose.unwrap_or_default(),
            bill: wire.bill,
            to_table: wire.to_table,
            original,
            deposits,
            discounts,
            vouchers,
            catering_event: wire.catering_event,
            catering_end: wire.catering_end,
            catering_settle: wire.catering_settle,
            check: wire.check,
        })
    }

    /// The order in canonical form, used for the idempotency digest and the journal: every
    /// field, amounts as strings.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
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
        });
        // Restaurant members only when used, so plain orders keep the digest they always had.
        if let Value::Object(m) = &mut v {
            if self.purpose != Purpose::Sale {
                m.insert("purpose".into(), json!(self.purpose.as_str()));
            }
            if self.bill {
                m.insert("bill".into(), json!(true));
            }
            if let Some(t) = &self.to_table {
                m.insert("to_table".into(), json!(t));
            }
            if let Some(o) = &self.original {
                m.insert("original".into(), o.to_json());
            }
            if !self.deposits.is_empty() {
                m.insert(
                    "deposits".into(),
                    Value::Array(self.deposits.iter().map(Reference::to_json).collect()),
                );
            }
            if !self.discounts.is_empty() {
                m.insert("discounts".into(), discounts_json(&self.discounts));
            }
            if !self.vouchers.is_empty() {
                m.insert("vouchers".into(), vouchers_json(&self.vouchers));
            }
            if let Some(e) = &self.catering_event {
                m.insert("catering_event".into(), json!(e));
            }
            if let Some(e) = &self.catering_end {
                m.insert("catering_end".into(), json!(e));
            }
            if self.catering_settle {
                m.insert("catering_settle".into(), json!(true));
            }
            if let Some(c) = &self.check {
                m.insert("check".into(), json!(c));
            }
            if let Some(Value::Array(lines)) = m.get_mut("lines") {
                for (l, line) in lines.iter_mut().zip(&self.lines) {
                    let Value::Object(l) = l else { continue };
                    if let Some(menu) = &line.menu {
                        l.insert("menu".into(), json!(menu));
                        l.insert("role".into(), json!(line.role.as_str()));
                    }
                    if let Some(i) = line.original_line {
                        l.insert("original_line".into(), json!(i));
                    }
                }
            }
        }
        v
    }
}

/// Discounts as stored in journal bodies.
pub fn discounts_json(discounts: &[Discount]) -> Value {
    Value::Array(
        discounts
            .iter()
            .map(|d| {
                json!({
                    "description": d.description,
                    "amount": d.amount.map(super::money::format_amount),
                    "percent": d.percent.map(|p| p.normalize().to_string()),
                })
            })
            .collect(),
    )
}

/// Vouchers as stored in journal bodies.
pub fn vouchers_json(vouchers: &[Voucher]) -> Value {
    Value::Array(
        vouchers
            .iter()
            .map(|v| json!({"code": v.code, "amount": super::money::format_amount(v.amount)}))
            .collect(),
    )
}

/// Names of the two parts of a menu split by the coefficient (`"menu_split": "coefficient"`),
/// in the language of the establishment's tickets. They become part of the signed line
/// descriptions ("Menu - boissons"), which tickets print as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MenuPartNames {
    /// The drinks part (35 % at A).
    pub drinks: &'static str,
    /// The food part (the rest, at B).
    pub food: &'static str,
}

impl MenuPartNames {
    /// English, the default of [`Order::from_json`].
    pub const ENGLISH: MenuPartNames = MenuPartNames {
        drinks: "drinks",
        food: "food",
    };

    /// The names for a ticket language (`fr`, `nl`, `de`, `en`); English for any other.
    pub fn for_language(language: &str) -> MenuPartNames {
        match language {
            "fr" => MenuPartNames {
                drinks: "boissons",
                food: "nourriture",
            },
            "nl" => MenuPartNames {
                drinks: "dranken",
                food: "eten",
            },
            "de" => MenuPartNames {
                drinks: "Getränke",
                food: "Speisen",
            },
            _ => MenuPartNames::ENGLISH,
        }
    }
}

/// How a menu line is split: (description suffix, VAT letter, weight). Weights are relative.
type MenuParts = Vec<(String, VatLetter, Decimal)>;

fn menu_split(p: &mut Problems, i: usize, l: &WireLine, names: MenuPartNames) -> Option<MenuParts> {
    let at = |f: &str| format!("lines[{i}].{f}");
    match (&l.menu_split, &l.components) {
        (None, None) => None,
        (Some(_), Some(_)) => {
            p.push(
                at("menu_split"),
                "give either menu_split or components, not both",
            );
            None
        }
        (Some(s), None) if s == "coefficient" => Some(vec![
            (names.drinks.to_owned(), VatLetter::A, MENU_DRINKS_SHARE),
            (
                names.food.to_owned(),
                VatLetter::B,
                Decimal::ONE - MENU_DRINKS_SHARE,
            ),
        ]),
        (Some(s), None) => {
            p.push(
                at("menu_split"),
                format!(
                    "unknown menu split \"{}\" (expected coefficient)",
                    s.chars().take(32).collect::<String>()
                ),
            );
            None
        }
        (None, Some(parts)) => {
            if parts.is_empty() || parts.len() > 20 {
                p.push(at("components"), "must have 1 to 20 components");
                return None;
            }
            let mut out = Vec::new();
            for (j, c) in parts.iter().enumerate() {
                let f = |x: &str| format!("lines[{i}].components[{j}].{x}");
                check_text(p, &f("description"), &c.description, MAX_DESCRIPTION_CHARS);
                let price = p.take(money_field(&f("unit_price"), &c.unit_price));
                let vat = enum_field(
                    p,
                    &f("vat"),
                    &c.vat,
                    VatLetter::parse,
                    "VAT letter",
                    "A, B, C, D or X",
                );
                if let Some(pr) = price
                    && pr <= Decimal::ZERO
                {
                    p.push(f("unit_price"), "must be more than 0");
                }
                if let (Some(pr), Some(v)) = (price, vat) {
                    out.push((c.description.clone(), v, pr));
                }
            }
            (out.len() == parts.len()).then_some(out)
        }
    }
}

/// Splits a menu line into one line per part: the menu's unit price is shared out in proportion
/// to the parts' weights (the coefficient, or the components' own prices, so a menu cheaper than
/// its parts lowers each part in proportion, as source 003 asks), in cents, the last cent going
/// to the largest remainders.
fn expand_menu(line: &OrderLine, parts: &MenuParts) -> Vec<OrderLine> {
    let shares = allocate(
        line.unit_price,
        &parts.iter().map(|(_, _, w)| *w).collect::<Vec<_>>(),
    );
    parts
        .iter()
        .zip(shares)
        .map(|((name, vat, _), share)| OrderLine {
            description: truncate(
                &format!("{} - {name}", line.description),
                MAX_DESCRIPTION_CHARS,
            ),
            unit_price: share,
            vat: *vat,
            role: LineRole::MenuPart,
            menu: Some(line.description.clone()),
            ..line.clone()
        })
        .collect()
}

fn truncate(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// Shares `amount` (in cents) out in proportion to `weights`; the shares add up to `amount`
/// exactly (largest remainder). Weights must not all be zero.
pub fn allocate(amount: Decimal, weights: &[Decimal]) -> Vec<Decimal> {
    let sum: Decimal = weights.iter().copied().sum();
    if weights.is_empty() || sum.is_zero() {
        return weights.iter().map(|_| Decimal::ZERO).collect();
    }
    let cents = super::money::to_cents(amount);
    let exact: Vec<Decimal> = weights
        .iter()
        .map(|w| Decimal::from(cents) * *w / sum)
        .collect();
    let mut floor: Vec<i64> = exact
        .iter()
        .map(|e| i64::try_from(e.floor()).unwrap_or(0))
        .collect();
    let mut left = cents - floor.iter().sum::<i64>();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|a, b| {
        let ra = exact[*a] - exact[*a].floor();
        let rb = exact[*b] - exact[*b].floor();
        rb.cmp(&ra).then(a.cmp(b))
    });
    let step = if left >= 0 { 1 } else { -1 };
    let mut k = 0;
    while left != 0 && !order.is_empty() {
        floor[order[k % order.len()]] += step;
        left -= step;
        k += 1;
    }
    floor.into_iter().map(|c| Decimal::new(c, 2)).collect()
}

/// Which members go with which purpose and event type.
fn check_purpose(p: &mut Problems, w: &WireOrder, purpose: Purpose, event_type: EventType) {
    let refuse = |p: &mut Problems, field: &str, why: &str| p.push(field, why.to_owned());
    if purpose != Purpose::Sale && event_type != EventType::Normal {
        refuse(
            p,
            "purpose",
            "work_in, work_out, deposit, voucher_sale, table_move, table_merge and catering_close are sent with event_type normal",
        );
    }
    let no_lines = matches!(
        purpose,
        Purpose::WorkIn
            | Purpose::WorkOut
            | Purpose::VoucherSale
            | Purpose::TableMove
            | Purpose::TableMerge
            | Purpose::CateringClose
    );
    if no_lines && !w.lines.is_empty() {
        refuse(p, "lines", "this purpose takes no lines");
    }
    if matches!(
        purpose,
        Purpose::WorkIn
            | Purpose::WorkOut
            | Purpose::TableMove
            | Purpose::TableMerge
            | Purpose::CateringClose
    ) && !w.payments.is_empty()
    {
        refuse(p, "payments", "this purpose takes no payments");
    }
    if matches!(purpose, Purpose::TableMove | Purpose::TableMerge) {
        if w.table.is_none() {
            refuse(p, "table", "name the table to move or merge");
        }
        if w.to_table.is_none() {
            refuse(p, "to_table", "name the table to move or merge into");
        }
    } else if w.to_table.is_some() {
        refuse(
            p,
            "to_table",
            "only table_move and table_merge have a to_table",
        );
    }
    if purpose == Purpose::VoucherSale {
        if w.vouchers.is_empty() {
            refuse(p, "vouchers", "a voucher sale lists the vouchers sold");
        }
        if w.payments.is_empty() {
            refuse(p, "payments", "a voucher sale is paid when sold");
        }
    } else if !w.vouchers.is_empty() {
        refuse(
            p,
            "vouchers",
            "vouchers are listed only when sold (purpose voucher_sale); a redeemed voucher is a payment with method voucher",
        );
    }
    let pays_something_open = w.table.is_some()
        || w.check.is_some()
        || w.catering_event.is_some()
        || w.original.is_some()
        || !w.deposits.is_empty();
    // A copy takes its lines from its original (refused elsewhere when it names none).
    if purpose == Purpose::Sale
        && event_type != EventType::Copy
        && w.lines.is_empty()
        && !pays_something_open
    {
        refuse(
            p,
            "lines",
            "a sale has at least one line (an order without lines pays an open table, check or catering event)",
        );
    }
    if purpose == Purpose::Deposit && w.lines.is_empty() {
        refuse(
            p,
            "lines",
            "a deposit has lines at the VAT rates of what it is paid for",
        );
    }
    if w.bill && event_type != EventType::ProForma {
        refuse(p, "bill", "only a pro forma is a bill before payment");
    }
    if w.bill && w.table.is_none() && w.check.is_none() {
        refuse(
            p,
            "table",
            "a bill before payment is the bill of a table (or of a check)",
        );
    }
    if w.check.is_some() {
        if w.table.is_some() {
            refuse(
                p,
                "check",
                "a check tracks pro formas without a table: give table or check, not both",
            );
        }
        if !matches!(event_type, EventType::Normal | EventType::ProForma)
            || purpose != Purpose::Sale
            || w.original.is_some()
        {
            refuse(
                p,
                "check",
                "a check is named by pro formas and by the normal sale that closes them",
            );
        }
    }
    if w.bill && !w.lines.is_empty() {
        refuse(
            p,
            "lines",
            "a bill lists the table's registered lines: send new lines in a pro forma round first",
        );
    }
    match event_type {
        // A copy's original and lines are checked by the restaurant layer (App): the
        // registrar alone still journals a copy as sent.
        EventType::Copy => {}
        _ if w.original.is_some()
            && !(event_type == EventType::Normal && purpose == Purpose::Sale) =>
        {
            refuse(
                p,
                "original",
                "only a copy or a refund (normal sale) names an original",
            );
        }
        _ => {}
    }
    let plain_sale = event_type == EventType::Normal && purpose == Purpose::Sale;
    if !w.deposits.is_empty() && !plain_sale {
        refuse(p, "deposits", "deposits are deducted on a normal sale");
    }
    if !w.discounts.is_empty() && !matches!(purpose, Purpose::Sale) {
        refuse(p, "discounts", "discounts go on a sale");
    }
    if w.catering_event.is_some()
        && !(event_type == EventType::Normal
            && matches!(
                purpose,
                Purpose::Sale | Purpose::Deposit | Purpose::CateringClose
            ))
    {
        refuse(
            p,
            "catering_event",
            "a catering event's tickets are normal sales, refunds, deposits or its catering_close",
        );
    }
    if purpose == Purpose::CateringClose && w.catering_event.is_none() {
        refuse(
            p,
            "catering_event",
            "catering_close names the catering event it settles",
        );
    }
    if w.catering_end.is_some()
        && (w.catering_event.is_none()
            || !matches!(purpose, Purpose::Sale | Purpose::Deposit)
            || w.catering_settle)
    {
        refuse(
            p,
            "catering_end",
            "the end of a catering event is named by its estimate or deposit (with catering_event)",
        );
    }
    if w.catering_settle && (w.catering_event.is_none() || purpose != Purpose::Sale) {
        refuse(
            p,
            "catering_settle",
            "only a normal sale or refund with catering_event settles a catering event",
        );
    }
    if purpose == Purpose::CateringClose && w.table.is_some() {
        refuse(p, "table", "catering_close is not a table's ticket");
    }
    if w.lines.iter().any(|l| l.original_line.is_some()) && w.original.is_none() {
        refuse(
            p,
            "original",
            "lines with original_line refund the ticket named in original",
        );
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
    fn a_sale_without_lines_is_refused_unless_it_pays_something_open() {
        let e = order(&format!(
            r#"{{"request_id":"r-1","operator":"{OP}","event_type":"normal","lines":[]}}"#
        ))
        .unwrap_err();
        assert!(
            fields(e)
                .iter()
                .any(|f| f.starts_with("lines: a sale has at least one line")),
            "an empty sale is refused"
        );
        for open in [
            r#""table":"12""#,
            r#""check":"C-1""#,
            r#""catering_event":"wedding""#,
            r#""original":{"request_id":"s-1"}"#,
            r#""deposits":[{"request_id":"d-1"}]"#,
        ] {
            let body = format!(
                r#"{{"request_id":"r-1","operator":"{OP}","event_type":"normal","lines":[],{open}}}"#
            );
            let problems = order(&body).err().map(fields).unwrap_or_default();
            assert!(
                !problems.iter().any(|f| f.starts_with("lines:")),
                "{open}: {problems:?}"
            );
        }
    }

    #[test]
    fn bidirectional_controls_are_refused_in_texts() {
        for c in ['\u{202E}', '\u{2066}', '\u{200F}'] {
            let body = format!(
                r#"{{"request_id":"r-1","operator":"{OP}","event_type":"normal","lines":[{{"description":"Cola{c}ecnarf","quantity":1,"unit_price":"2.20","vat":"A"}}]}}"#
            );
            let problems = fields(order(&body).unwrap_err());
            assert!(
                problems
                    .iter()
                    .any(|f| f.starts_with("lines[0].description: must not contain bidirectional")),
                "{c:?}: {problems:?}"
            );
        }
        // Letters of right-to-left scripts themselves are fine.
        let body = format!(
            r#"{{"request_id":"r-1","operator":"{OP}","event_type":"normal","lines":[{{"description":"شاي","quantity":1,"unit_price":"2.20","vat":"A"}}]}}"#
        );
        assert!(order(&body).is_ok());
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

    #[test]
    fn allocate_shares_exactly_by_largest_remainder() {
        let d = |x: &str| x.parse::<Decimal>().unwrap();
        assert_eq!(
            allocate(d("5.00"), &[d("10"), d("20")]),
            [d("1.67"), d("3.33")]
        );
        assert_eq!(
            allocate(
                d("50.00"),
                &[MENU_DRINKS_SHARE, Decimal::ONE - MENU_DRINKS_SHARE]
            ),
            [d("17.50"), d("32.50")]
        );
        let parts = allocate(d("0.10"), &[d("1"), d("1"), d("1")]);
        assert_eq!(parts.iter().copied().sum::<Decimal>(), d("0.10"));
        assert_eq!(parts, [d("0.04"), d("0.03"), d("0.03")]);
        assert_eq!(allocate(d("1.00"), &[Decimal::ZERO]), [Decimal::ZERO]);
    }

    #[test]
    fn menu_parts_are_named_in_the_tickets_language() {
        let body = format!(
            r#"{{"request_id":"r","operator":"{OP}","event_type":"normal",
            "lines":[{{"description":"Menu","quantity":1,"unit_price":"50.00","menu_split":"coefficient"}}]}}"#
        );
        let names = |language: &str| -> Vec<String> {
            Order::from_json_localised(
                "till-1",
                body.as_bytes(),
                MenuPartNames::for_language(language),
            )
            .unwrap()
            .lines
            .iter()
            .map(|l| l.description.clone())
            .collect()
        };
        assert_eq!(names("fr"), ["Menu - boissons", "Menu - nourriture"]);
        assert_eq!(names("nl"), ["Menu - dranken", "Menu - eten"]);
        assert_eq!(names("de"), ["Menu - Getränke", "Menu - Speisen"]);
        assert_eq!(names("en"), ["Menu - drinks", "Menu - food"]);
        assert_eq!(names("en"), names("xx"));
    }

    #[test]
    fn menus_split_into_parts_with_their_own_vat() {
        let o = order(&format!(r#"{{"request_id":"r","operator":"{OP}","event_type":"normal",
            "lines":[{{"description":"Menu","quantity":2,"unit_price":"50.00","menu_split":"coefficient"}},
                     {{"description":"Duo","quantity":1,"unit_price":"30.00","components":[
                        {{"description":"wine","unit_price":"10.00","vat":"A"}},
                        {{"description":"food","unit_price":"30.00","vat":"B"}}]}}]}}"#)).unwrap();
        let got: Vec<(String, String, VatLetter, LineRole)> = o
            .lines
            .iter()
            .map(|l| {
                (
                    l.description.clone(),
                    l.unit_price.to_string(),
                    l.vat,
                    l.role,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    "Menu - drinks".into(),
                    "17.50".into(),
                    VatLetter::A,
                    LineRole::MenuPart
                ),
                (
                    "Menu - food".into(),
                    "32.50".into(),
                    VatLetter::B,
                    LineRole::MenuPart
                ),
                (
                    "Duo - wine".into(),
                    "7.50".into(),
                    VatLetter::A,
                    LineRole::MenuPart
                ),
                (
                    "Duo - food".into(),
                    "22.50".into(),
                    VatLetter::B,
                    LineRole::MenuPart
                ),
            ]
        );
        assert_eq!(o.lines[0].quantity, Decimal::from(2));
        let e = order(&format!(r#"{{"request_id":"r","operator":"{OP}","event_type":"normal",
            "lines":[{{"description":"Menu","quantity":1,"unit_price":"50.00","vat":"B","menu_split":"coefficient"}},
                     {{"description":"Menu","quantity":1,"unit_price":"50.00","menu_split":"half"}},
                     {{"description":"Menu","quantity":1,"unit_price":"50.00"}}]}}"#)).unwrap_err();
        assert_eq!(
            fields(e),
            [
                "lines[0].vat: an all-in menu has no VAT letter of its own: its parts have theirs",
                "lines[1].menu_split: unknown menu split \"half\" (expected coefficient)",
                "lines[2].vat: missing field `vat`",
            ]
        );
    }

    #[test]
    fn purposes_take_only_their_members() {
        let e = order(&format!(
            r#"{{"request_id":"r","operator":"{OP}","event_type":"pro_forma","purpose":"work_in",
            "lines":[{{"description":"a","quantity":1,"unit_price":"1.00","vat":"A"}}]}}"#
        ))
        .unwrap_err();
        assert_eq!(
            fields(e),
            [
                "purpose: work_in, work_out, deposit, voucher_sale, table_move, table_merge and catering_close are sent with event_type normal",
                "lines: this purpose takes no lines",
            ]
        );
        let e = order(&format!(r#"{{"request_id":"r","operator":"{OP}","event_type":"normal","purpose":"table_move","table":"1"}}"#)).unwrap_err();
        assert_eq!(e.first().field, "to_table");
        let e = order(&format!(
            r#"{{"request_id":"r","operator":"{OP}","event_type":"normal","purpose":"voucher_sale",
            "vouchers":[{{"code":"bad code","amount":"-5.00"}}]}}"#
        ))
        .unwrap_err();
        let f: Vec<String> = e.problems.iter().map(|p| p.field.clone()).collect();
        assert_eq!(f, ["vouchers[0].code", "vouchers[0].amount", "payments"]);
        let e = order(&format!(r#"{{"request_id":"r","operator":"{OP}","event_type":"normal",
            "discounts":[{{"description":"x","amount":"1.00","percent":"10"}},{{"description":"y","percent":"120"}}]}}"#)).unwrap_err();
        let f: Vec<String> = e.problems.iter().map(|p| p.field.clone()).collect();
        assert_eq!(f, ["discounts[0].amount", "discounts[1].percent", "lines"]);
        let e = order(&format!(r#"{{"request_id":"r","operator":"{OP}","event_type":"normal","table":"4","bill":true}}"#)).unwrap_err();
        assert_eq!(e.first().field, "bill");
        // A plain order keeps the canonical form (and digest) it always had.
        let o = order(&format!(
            r#"{{"request_id":"r","operator":"{OP}","event_type":"normal","lines":[{{"description":"Cola","quantity":1,"unit_price":"2.20","vat":"A"}}]}}"#
        ))
        .unwrap();
        let keys: Vec<String> = o.to_json().as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            keys,
            [
                "event_type",
                "lines",
                "operator",
                "payments",
                "pos_time",
                "register",
                "request_id",
                "table"
            ]
        );
    }

    #[test]
    fn catering_checks_and_refund_lines_take_only_their_members() {
        let ok = order(&format!(
            r#"{{"request_id":"r","operator":"{OP}","event_type":"normal","catering_event":"comm-1",
            "catering_end":"2026-05-10T23:00:00+02:00",
            "lines":[{{"description":"Communion","quantity":1,"unit_price":"700.00","vat":"B"}}]}}"#
        ))
        .unwrap();
        assert_eq!(
            ok.catering_end.as_deref(),
            Some("2026-05-10T23:00:00+02:00")
        );
        assert_eq!(ok.to_json()["catering_end"], "2026-05-10T23:00:00+02:00");
        let close = order(&format!(
            r#"{{"request_id":"r","operator":"{OP}","event_type":"normal","purpose":"catering_close","catering_event":"comm-1"}}"#
        ))
        .unwrap();
        assert_eq!(close.purpose, Purpose::CateringClose);
        let e = order(&format!(
            r#"{{"request_id":"r","operator":"{OP}","event_type":"normal","purpose":"catering_close",
            "catering_end":"tomorrow","catering_settle":true}}"#
        ))
        .unwrap_err();
        let f: Vec<String> = e.problems.iter().map(|p| p.field.clone()).collect();
        assert_eq!(
            f,
            [
                "catering_end",
                "catering_event",
                "catering_end",
                "catering_settle"
            ]
        );
        // A check is for pro formas and their sale, never with a table.
        let c = order(&format!(
            r#"{{"request_id":"r","operator":"{OP}","event_type":"pro_forma","check":"C-17","bill":true}}"#
        ))
        .unwrap();
        assert_eq!(c.to_json()["check"], "C-17");
        let e = order(&format!(
            r#"{{"request_id":"r","operator":"{OP}","event_type":"training","check":"C 17","table":"4"}}"#
        ))
        .unwrap_err();
        let f: Vec<String> = e.problems.iter().map(|p| p.field.clone()).collect();
        assert_eq!(f, ["check", "check", "check"]);
        // original_line goes with original; it is kept in the canonical form.
        let e = order(&format!(
            r#"{{"request_id":"r","operator":"{OP}","event_type":"normal",
            "lines":[{{"description":"Cola","quantity":-1,"unit_price":"2.50","vat":"A","original_line":0}}]}}"#
        ))
        .unwrap_err();
        assert_eq!(e.first().field, "original");
        let r = order(&format!(
            r#"{{"request_id":"r","operator":"{OP}","event_type":"normal","original":{{"request_id":"s-1"}},
            "lines":[{{"description":"Cola","quantity":-1,"unit_price":"2.50","vat":"A","original_line":3}}]}}"#
        ))
        .unwrap();
        assert_eq!(r.lines[0].original_line, Some(3));
        assert_eq!(r.to_json()["lines"][0]["original_line"], 3);
    }
}
