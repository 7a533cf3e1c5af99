//! The figures of an X or Z report, summed from the fiscal events of its period: one
//! implementation, used by the daemon to make reports and by `fdmctl verify` to check them
//! (`docs/journal-format.md` §4.4).
//!
//! Only N events (NS, NR) are turnover. P (pro forma), T (training) and C (copy) events are
//! counted per label but never added to turnover, VAT, payments or operator turnover.
//!
//! Definitions (Royal Decree of 13 Dec 2022, source 004, items e–h):
//! - `gross`: the sum of every positive line total (VAT included) of NS and NR tickets (item e);
//! - `discounts`: the discount lines (`role` `discount`) of NS tickets, as a positive amount;
//! - `refunds`: the negative lines of NR tickets, as a positive amount (item f, "réductions et
//!   remboursements", is `discounts + refunds`);
//! - `deposits_deducted`: deposits received earlier (on their own ticket) and deducted on an NS
//!   ticket (`role` `deposit_applied`): not a reduction, the deposit's ticket was turnover;
//! - `line_corrections`: the other negative lines of NS tickets (a line ordered earlier and
//!   cancelled or corrected, e.g. on a table's final ticket; a discount the register sends as a
//!   negative item also lands here);
//! - `net`: `gross - discounts - refunds - deposits_deducted - line_corrections`, which is also
//!   the sum of the NS and NR ticket totals (item g);
//! - `vat`: per rate, the sum of the tickets' VAT-inclusive totals, of the VAT the tickets showed,
//!   and the base (`total - vat`) (item h). Pre-computed events (FDM v1 `H`) carry no reliable
//!   split, so their total is under `net_without_vat_split`.
//! - `corrections`: the PR events (corrections of a pro forma before the final sale).
//!
//! Reports written before `deposits_deducted` and `line_corrections` existed (builds before
//! 6e5b125) counted every negative line of an NS ticket under `discounts`:
//! [`Turnover::to_json_in`] with [`Shape::Legacy`] writes that shape, for checking them.
//!
//! An event is read once into an [`EventFigures`] (what it adds to a report), from the body's
//! JSON tree ([`EventFigures::from_body`], the daemon) or from its bytes
//! ([`EventFigures::from_slice`], the verifier); the same typed reading serves both.

use crate::fiscal::Label;
use crate::fiscal::money::format_amount;
use rust_decimal::Decimal;
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, IntoDeserializer, Visitor};
use serde_json::{Map, Value, json};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

/// A count and a sum.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// How many.
    pub count: u64,
    /// Their sum, VAT included.
    pub total: Decimal,
}

impl Tally {
    fn add(&mut self, amount: Decimal) {
        self.count += 1;
        self.total += amount;
    }

    fn merge(&mut self, other: Tally) {
        self.count += other.count;
        self.total += other.total;
    }

    fn to_json(self) -> Value {
        json!({"count": self.count, "total": format_amount(self.total)})
    }
}

/// Per VAT letter: VAT-inclusive total and the VAT shown on the tickets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VatSum {
    /// Total including VAT.
    pub total: Decimal,
    /// VAT as shown on the tickets, summed.
    pub vat: Decimal,
}

/// Which JSON shape of the figures a report has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Today's: `discounts`, `deposits_deducted` and `line_corrections` apart.
    Current,
    /// Reports of builds before 6e5b125: every negative line of an NS ticket under
    /// `discounts`, no `deposits_deducted` nor `line_corrections`.
    Legacy,
}

/// Turnover figures of one group of events (the whole report, one operator, one register).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Turnover {
    /// Count and sum per label (all labels, training included).
    pub labels: BTreeMap<String, Tally>,
    /// Positive line totals of NS/NR.
    pub gross: Decimal,
    /// Discount lines of NS tickets (positive amount).
    pub discounts: Decimal,
    /// Deposits deducted on NS tickets (positive amount).
    pub deposits_deducted: Decimal,
    /// Other negative lines of NS tickets (positive amount).
    pub line_corrections: Decimal,
    /// Negative lines of NR tickets (positive amount).
    pub refunds: Decimal,
    /// Sum of NS and NR totals.
    pub net: Decimal,
    /// Per VAT letter (NS/NR orders only).
    pub vat: BTreeMap<String, VatSum>,
    /// NS/NR totals of events without a VAT split (pre-computed events).
    pub net_without_vat_split: Decimal,
    /// Payments per method (NS/NR only).
    pub payments: BTreeMap<String, Decimal>,
    /// Cash rounding (NS/NR only): cash received less cash due.
    pub cash_rounding: Decimal,
    /// PR events.
    pub corrections: Tally,
}

/// A fiscal event as the report needs it.
#[derive(Debug, Clone)]
pub struct Event<'a> {
    /// Journal sequence number.
    pub seq: u64,
    /// Register that sent it.
    pub register: &'a str,
    /// Operator (INSZ/BIS).
    pub operator: &'a str,
    /// The record body.
    pub body: &'a Map<String, Value>,
}

/// Why an event could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("record {seq}: {problem}")]
pub struct EventError {
    /// Sequence number.
    pub seq: u64,
    /// What is wrong.
    pub problem: String,
}

/// A member read as text when it is a string; `Absent` when missing, `Other` when it is any
/// other JSON value (so a malformed member is named, as a missing one is, not a parse error).
#[derive(Debug, Default)]
enum Text<'a> {
    #[default]
    Absent,
    Str(Cow<'a, str>),
    Other,
}

impl Text<'_> {
    fn as_str(&self) -> Option<&str> {
        match self {
            Text::Str(s) => Some(s),
            _ => None,
        }
    }
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Text<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Text<'de>, E> {
        Ok(Text::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Text<'de>, E> {
        Ok(Text::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Text<'de>, E> {
        Ok(Text::Str(Cow::Owned(v)))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Text<'de>, E> {
        Ok(Text::Other)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Text<'de>, E> {
        Ok(Text::Other)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Text<'de>, E> {
        Ok(Text::Other)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Text<'de>, E> {
        Ok(Text::Other)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Text<'de>, E> {
        Ok(Text::Other)
    }
    fn visit_none<E: de::Error>(self) -> Result<Text<'de>, E> {
        Ok(Text::Other)
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Text<'de>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Text::Other)
    }
    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Text<'de>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Text::Other)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TextVisitor)
    }
}

/// An array member: `None` when missing or not an array; items that are not objects read as
/// `T::default()` (every member absent).
#[derive(Debug)]
struct List<T>(Option<Vec<T>>);

impl<T> Default for List<T> {
    fn default() -> Self {
        List(None)
    }
}

struct ListVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de> + Default> Visitor<'de> for ListVisitor<T> {
    type Value = List<T>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<List<T>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(256));
        while let Some(Item(item)) = seq.next_element::<Item<T>>()? {
            items.push(item);
        }
        Ok(List(Some(items)))
    }
    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<List<T>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(List(None))
    }
    fn visit_borrowed_str<E: de::Error>(self, _: &'de str) -> Result<List<T>, E> {
        Ok(List(None))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<List<T>, E> {
        Ok(List(None))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<List<T>, E> {
        Ok(List(None))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<List<T>, E> {
        Ok(List(None))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<List<T>, E> {
        Ok(List(None))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<List<T>, E> {
        Ok(List(None))
    }
    fn visit_unit<E: de::Error>(self) -> Result<List<T>, E> {
        Ok(List(None))
    }
}

impl<'de, T: Deserialize<'de> + Default> Deserialize<'de> for List<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ListVisitor(PhantomData))
    }
}

/// An array item: an object read into `T`, anything else `T::default()`.
struct Item<T>(T);

struct ItemVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de> + Default> Visitor<'de> for ItemVisitor<T> {
    type Value = Item<T>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Item<T>, A::Error> {
        T::deserialize(de::value::MapAccessDeserializer::new(map)).map(Item)
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Item<T>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Item(T::default()))
    }
    fn visit_borrowed_str<E: de::Error>(self, _: &'de str) -> Result<Item<T>, E> {
        Ok(Item(T::default()))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Item<T>, E> {
        Ok(Item(T::default()))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Item<T>, E> {
        Ok(Item(T::default()))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Item<T>, E> {
        Ok(Item(T::default()))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Item<T>, E> {
        Ok(Item(T::default()))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Item<T>, E> {
        Ok(Item(T::default()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Item<T>, E> {
        Ok(Item(T::default()))
    }
}

impl<'de, T: Deserialize<'de> + Default> Deserialize<'de> for Item<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ItemVisitor(PhantomData))
    }
}

/// A line's members: those the figures sum, and those the verifier's claims recompute
/// ([`EventRead::line_texts`]).
#[derive(Debug, Default, serde::Deserialize)]
struct LineBody<'a> {
    #[serde(borrow, default)]
    total: Text<'a>,
    #[serde(borrow, default)]
    role: Text<'a>,
    #[serde(borrow, default)]
    description: Text<'a>,
    #[serde(borrow, default)]
    quantity: Text<'a>,
    #[serde(borrow, default)]
    unit: Text<'a>,
    #[serde(borrow, default)]
    unit_price: Text<'a>,
    #[serde(borrow, default)]
    vat: Text<'a>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct VatBody<'a> {
    #[serde(borrow, default)]
    rate: Text<'a>,
    #[serde(borrow, default)]
    total: Text<'a>,
    #[serde(borrow, default)]
    vat: Text<'a>,
    #[serde(borrow, default)]
    percent: Text<'a>,
    #[serde(borrow, default)]
    base: Text<'a>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct PaymentBody<'a> {
    #[serde(borrow, default)]
    method: Text<'a>,
    #[serde(borrow, default)]
    amount: Text<'a>,
}

/// The members of a fiscal event's body that reports sum.
#[derive(Debug, Default, serde::Deserialize)]
struct EventBody<'a> {
    #[serde(borrow, default)]
    label: Text<'a>,
    #[serde(borrow, default)]
    total: Text<'a>,
    #[serde(borrow, default)]
    lines: List<LineBody<'a>>,
    #[serde(borrow, default)]
    vat: List<VatBody<'a>>,
    #[serde(borrow, default)]
    payments: List<PaymentBody<'a>>,
    #[serde(borrow, default)]
    cash_rounding: Text<'a>,
    #[serde(borrow, default)]
    register: Text<'a>,
    #[serde(borrow, default)]
    operator: Text<'a>,
}

fn amount(seq: u64, v: &Text<'_>, what: &str) -> Result<Decimal, EventError> {
    v.as_str()
        .and_then(|s| s.parse::<Decimal>().ok())
        .ok_or_else(|| EventError {
            seq,
            problem: format!("{what} is not a decimal amount"),
        })
}

/// A fiscal event's body read once from its bytes (the verifier): its figures, and the members
/// of its lines and VAT entries as text for the checks of what it claims, so that the body is not
/// parsed again for them.
pub(crate) struct EventRead<'a> {
    body: Result<EventBody<'a>, String>,
}

/// A line's members as the claims read them, when each is a string (`unit` may be absent).
pub(crate) struct LineText<'a> {
    pub(crate) description: Cow<'a, str>,
    pub(crate) quantity: Cow<'a, str>,
    pub(crate) unit: Option<Cow<'a, str>>,
    pub(crate) unit_price: Cow<'a, str>,
    pub(crate) total: Cow<'a, str>,
    pub(crate) vat: Cow<'a, str>,
}

/// A VAT entry's members as the claims read them, when each is a string.
pub(crate) struct VatText<'a> {
    pub(crate) rate: Cow<'a, str>,
    pub(crate) percent: Cow<'a, str>,
    pub(crate) total: Cow<'a, str>,
    pub(crate) vat: Cow<'a, str>,
    pub(crate) base: Cow<'a, str>,
}

fn string<'a>(t: &Text<'a>) -> Option<Cow<'a, str>> {
    match t {
        Text::Str(s) => Some(s.clone()),
        _ => None,
    }
}

impl<'a> EventRead<'a> {
    /// Reads a fiscal event's body from its JSON bytes.
    pub(crate) fn from_slice(body: &'a [u8]) -> Self {
        EventRead {
            body: serde_json::from_slice(body).map_err(|e| e.to_string()),
        }
    }

    /// What the event adds to a report (as [`EventFigures::from_slice`] on the same bytes).
    pub(crate) fn figures(&self, seq: u64) -> Result<EventFigures, EventError> {
        match &self.body {
            Ok(b) => EventFigures::read(seq, b),
            Err(problem) => Err(EventError {
                seq,
                problem: problem.clone(),
            }),
        }
    }

    /// The lines' members, when `lines` is an array of objects whose members `description`,
    /// `quantity`, `unit_price`, `total` and `vat` are strings and `unit` a string or absent:
    /// exactly the lines a strict typed reading accepts, with the same texts. `None` for anything
    /// else (the caller then reads the lines strictly, as before).
    pub(crate) fn line_texts(&self) -> Option<Vec<LineText<'a>>> {
        let lines = self.body.as_ref().ok()?.lines.0.as_ref()?;
        lines
            .iter()
            .map(|l| {
                let unit = match &l.unit {
                    Text::Absent => None,
                    Text::Str(u) => Some(u.clone()),
                    Text::Other => return None,
                };
                Some(LineText {
                    description: string(&l.description)?,
                    quantity: string(&l.quantity)?,
                    unit,
                    unit_price: string(&l.unit_price)?,
                    total: string(&l.total)?,
                    vat: string(&l.vat)?,
                })
            })
            .collect()
    }

    /// The VAT entries' members, when `vat` is an array of objects whose members `rate`,
    /// `percent`, `total`, `vat` and `base` are strings; `None` for anything else.
    pub(crate) fn vat_texts(&self) -> Option<Vec<VatText<'a>>> {
        let vat = self.body.as_ref().ok()?.vat.0.as_ref()?;
        vat.iter()
            .map(|v| {
                Some(VatText {
                    rate: string(&v.rate)?,
                    percent: string(&v.percent)?,
                    total: string(&v.total)?,
                    vat: string(&v.vat)?,
                    base: string(&v.base)?,
                })
            })
            .collect()
    }
}

/// What one fiscal event adds to a report's figures, read once from its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFigures {
    /// Journal sequence number.
    pub seq: u64,
    /// `register` of the body (empty when missing).
    pub register: String,
    /// `operator` of the body (empty when missing).
    pub operator: String,
    /// The label (`NS`).
    label_text: String,
    total: Decimal,
    /// For NS/NR events: the turnover parts (`None` for the other labels).
    turnover: Option<EventTurnover>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct EventTurnover {
    gross: Decimal,
    discounts: Decimal,
    deposits_deducted: Decimal,
    line_corrections: Decimal,
    refunds: Decimal,
    /// Per `vat` entry: rate, total, VAT (in the body's order). Boxed slices, not vectors: the
    /// verifier keeps the events of its last records (no spare capacity).
    vat: Box<[(String, Decimal, Decimal)]>,
    /// Without lines: a pre-computed event (no VAT split).
    precomputed: bool,
    payments: Box<[(String, Decimal)]>,
    cash_rounding: Option<Decimal>,
}

impl EventFigures {
    /// Reads a fiscal event from its body's JSON tree (`register` and `operator` are the body's).
    pub fn from_body(seq: u64, body: &Map<String, Value>) -> Result<Self, EventError> {
        let read = EventBody::deserialize(body.into_deserializer()).map_err(|e| EventError {
            seq,
            problem: e.to_string(),
        })?;
        Self::read(seq, &read)
    }

    /// Reads a fiscal event from its body's JSON bytes.
    pub fn from_slice(seq: u64, body: &[u8]) -> Result<Self, EventError> {
        let read: EventBody<'_> = serde_json::from_slice(body).map_err(|e| EventError {
            seq,
            problem: e.to_string(),
        })?;
        Self::read(seq, &read)
    }

    fn read(seq: u64, b: &EventBody<'_>) -> Result<Self, EventError> {
        let label_text = b.label.as_str().unwrap_or("");
        let label = Label::parse(label_text).ok_or_else(|| EventError {
            seq,
            problem: format!("unknown label {label_text:?}"),
        })?;
        let total = amount(seq, &b.total, "total")?;
        let mut figures = EventFigures {
            seq,
            register: b.register.as_str().unwrap_or("").to_owned(),
            operator: b.operator.as_str().unwrap_or("").to_owned(),
            label_text: label.to_string(),
            total,
            turnover: None,
        };
        if !label.is_vat_receipt() {
            return Ok(figures);
        }
        let refund = figures.label_text == "NR";
        let mut t = EventTurnover {
            gross: Decimal::ZERO,
            discounts: Decimal::ZERO,
            deposits_deducted: Decimal::ZERO,
            line_corrections: Decimal::ZERO,
            refunds: Decimal::ZERO,
            vat: Box::default(),
            precomputed: false,
            payments: Box::default(),
            cash_rounding: None,
        };
        match &b.lines.0 {
            Some(lines) => {
                for line in lines {
                    let lt = amount(seq, &line.total, "line total")?;
                    if lt.is_sign_negative() {
                        match (refund, line.role.as_str()) {
                            (true, _) => t.refunds -= lt,
                            (false, Some("discount")) => t.discounts -= lt,
                            (false, Some("deposit_applied")) => t.deposits_deducted -= lt,
                            (false, _) => t.line_corrections -= lt,
                        }
                    } else {
                        t.gross += lt;
                    }
                }
                let mut vat = Vec::new();
                for v in b.vat.0.iter().flatten() {
                    let rate = v.rate.as_str().unwrap_or("?").to_owned();
                    let vt = amount(seq, &v.total, "vat total")?;
                    let vv = amount(seq, &v.vat, "vat amount")?;
                    vat.push((rate, vt, vv));
                }
                t.vat = vat.into_boxed_slice();
            }
            None => {
                // A pre-computed event: only its total is known.
                if total.is_sign_negative() {
                    t.refunds -= total;
                } else {
                    t.gross += total;
                }
                t.precomputed = true;
            }
        }
        let mut payments = Vec::new();
        for p in b.payments.0.iter().flatten() {
            let method = p.method.as_str().unwrap_or("other").to_owned();
            payments.push((method, amount(seq, &p.amount, "payment amount")?));
        }
        t.payments = payments.into_boxed_slice();
        if !matches!(b.cash_rounding, Text::Absent) {
            t.cash_rounding = Some(amount(seq, &b.cash_rounding, "cash_rounding")?);
        }
        figures.turnover = Some(t);
        Ok(figures)
    }
}

impl Turnover {
    /// Adds one fiscal event.
    pub fn add(&mut self, e: &Event<'_>) -> Result<(), EventError> {
        self.add_figures(&EventFigures::from_body(e.seq, e.body)?);
        Ok(())
    }

    /// Adds one fiscal event read beforehand.
    pub fn add_figures(&mut self, e: &EventFigures) {
        let label = e.label_text.as_str();
        if label == "PR" {
            self.corrections.add(e.total);
        }
        slot(&mut self.labels, label).add(e.total);
        let Some(t) = &e.turnover else {
            return;
        };
        self.net += e.total;
        self.gross += t.gross;
        self.discounts += t.discounts;
        self.deposits_deducted += t.deposits_deducted;
        self.line_corrections += t.line_corrections;
        self.refunds += t.refunds;
        if t.precomputed {
            self.net_without_vat_split += e.total;
        }
        for (rate, total, vat) in &t.vat {
            let sum = slot(&mut self.vat, rate);
            sum.total += *total;
            sum.vat += *vat;
        }
        for (method, amount) in &t.payments {
            *slot(&mut self.payments, method) += *amount;
        }
        if let Some(r) = t.cash_rounding {
            self.cash_rounding += r;
        }
    }

    /// Adds the figures of other events (sums are exact: the order does not matter).
    pub fn merge(&mut self, other: &Turnover) {
        for (label, tally) in &other.labels {
            self.labels.entry(label.clone()).or_default().merge(*tally);
        }
        self.gross += other.gross;
        self.discounts += other.discounts;
        self.deposits_deducted += other.deposits_deducted;
        self.line_corrections += other.line_corrections;
        self.refunds += other.refunds;
        self.net += other.net;
        for (rate, s) in &other.vat {
            let sum = self.vat.entry(rate.clone()).or_default();
            sum.total += s.total;
            sum.vat += s.vat;
        }
        self.net_without_vat_split += other.net_without_vat_split;
        for (method, amount) in &other.payments {
            *self.payments.entry(method.clone()).or_default() += *amount;
        }
        self.cash_rounding += other.cash_rounding;
        self.corrections.merge(other.corrections);
    }

    /// The figures as JSON, amounts as decimal strings (today's shape).
    pub fn to_json(&self) -> Value {
        self.to_json_in(Shape::Current)
    }

    /// The figures as JSON in the given shape.
    pub fn to_json_in(&self, shape: Shape) -> Value {
        let labels: Map<String, Value> = self
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.to_json()))
            .collect();
        let vat: Vec<Value> = self
            .vat
            .iter()
            .map(|(rate, s)| {
                let percent = crate::fiscal::VatLetter::parse(rate)
                    .map(|l| l.percent().to_string())
                    .unwrap_or_default();
                json!({
                    "rate": rate,
                    "percent": percent,
                    "total": format_amount(s.total),
                    "vat": format_amount(s.vat),
                    "base": format_amount(s.total - s.vat),
                })
            })
            .collect();
        let payments: Map<String, Value> = self
            .payments
            .iter()
            .map(|(k, v)| (k.clone(), json!(format_amount(*v))))
            .collect();
        let discounts = match shape {
            Shape::Current => self.discounts,
            Shape::Legacy => self.discounts + self.deposits_deducted + self.line_corrections,
        };
        let mut v = json!({
            "labels": labels,
            "gross": format_amount(self.gross),
            "discounts": format_amount(discounts),
            "refunds": format_amount(self.refunds),
            "discounts_and_refunds": format_amount(discounts + self.refunds),
            "net": format_amount(self.net),
            "vat": vat,
            "net_without_vat_split": format_amount(self.net_without_vat_split),
            "payments": payments,
            "cash_rounding": format_amount(self.cash_rounding),
            "corrections": self.corrections.to_json(),
        });
        if shape == Shape::Current {
            v["deposits_deducted"] = json!(format_amount(self.deposits_deducted));
            v["line_corrections"] = json!(format_amount(self.line_corrections));
        }
        v
    }
}

/// Everything a report sums: the whole, per operator and per register.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Figures {
    /// All events of the report.
    pub all: Turnover,
    /// Per operator (the user report).
    pub operators: BTreeMap<String, Turnover>,
    /// Per register.
    pub registers: BTreeMap<String, Turnover>,
    /// The last fiscal event covered.
    pub last_event: Option<u64>,
}

impl Figures {
    /// Adds one fiscal event.
    pub fn add(&mut self, e: &Event<'_>) -> Result<(), EventError> {
        let mut figures = EventFigures::from_body(e.seq, e.body)?;
        e.register.clone_into(&mut figures.register);
        e.operator.clone_into(&mut figures.operator);
        self.add_figures(&figures);
        Ok(())
    }

    /// Adds one fiscal event read beforehand (under its `register` and `operator`).
    pub fn add_figures(&mut self, e: &EventFigures) {
        self.all.add_figures(e);
        self.operators
            .entry(e.operator.clone())
            .or_default()
            .add_figures(e);
        self.registers
            .entry(e.register.clone())
            .or_default()
            .add_figures(e);
        self.last_event = Some(e.seq);
    }
}

/// The figures of one register's events, whole and per operator: what [`Figures`] of any set of
/// registers is made of ([`ByRegister::figures`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ByRegister {
    registers: BTreeMap<String, (Turnover, BTreeMap<String, Turnover>)>,
    last_event: BTreeMap<String, u64>,
}

impl ByRegister {
    /// Adds one fiscal event.
    pub fn add_figures(&mut self, e: &EventFigures) {
        let (whole, operators) = slot(&mut self.registers, &e.register);
        whole.add_figures(e);
        slot(operators, &e.operator).add_figures(e);
        *slot(&mut self.last_event, &e.register) = e.seq;
    }

    /// The figures of the events of the registers `keep` accepts, as [`Figures::add`] of those
    /// events in order gives them.
    pub fn figures(&self, keep: impl Fn(&str) -> bool) -> Figures {
        let mut f = Figures::default();
        for (register, (whole, operators)) in &self.registers {
            if !keep(register) {
                continue;
            }
            f.all.merge(whole);
            f.registers.insert(register.clone(), whole.clone());
            for (operator, t) in operators {
                f.operators.entry(operator.clone()).or_default().merge(t);
            }
            let last = self.last_event.get(register).copied();
            f.last_event = f.last_event.max(last);
        }
        f
    }
}

/// The entry of `key` in `map`, inserted when absent; the key is copied only then (the
/// verifier adds every fiscal event of a journal on one thread).
fn slot<'m, V: Default>(map: &'m mut BTreeMap<String, V>, key: &str) -> &'m mut V {
    if map.get(key).is_none() {
        map.insert(key.to_owned(), V::default());
    }
    map.get_mut(key)
        .unwrap_or_else(|| unreachable!("inserted just above"))
}

/// The first place where `found` (what a record says) differs from `expected` (what its events
/// give): the JSON path (`totals.vat[1].total`), the expected value and the found one
/// (`None`: absent).
pub fn first_difference(
    path: &str,
    expected: &Value,
    found: &Value,
) -> Option<(String, Option<Value>, Option<Value>)> {
    match (expected, found) {
        (Value::Object(e), Value::Object(f)) => {
            let mut keys: Vec<&String> = e.keys().chain(f.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter().find_map(|k| {
                let sub = if k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                    format!("{path}.{k}")
                } else {
                    format!("{path}[{k:?}]")
                };
                match (e.get(k), f.get(k)) {
                    (Some(a), Some(b)) => first_difference(&sub, a, b),
                    (a, b) => Some((sub, a.cloned(), b.cloned())),
                }
            })
        }
        (Value::Array(e), Value::Array(f)) => (0..e.len().max(f.len())).find_map(|i| {
            let sub = format!("{path}[{i}]");
            match (e.get(i), f.get(i)) {
                (Some(a), Some(b)) => first_difference(&sub, a, b),
                (a, b) => Some((sub, a.cloned(), b.cloned())),
            }
        }),
        (a, b) if a == b => None,
        (a, b) => Some((path.to_owned(), Some(a.clone()), Some(b.clone()))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn body(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn sums_turnover_and_keeps_training_out() {
        let ns = body(json!({"label":"NS","total":"27.00",
            "lines":[{"total":"30.00"},{"total":"-3.00","role":"discount"}],
            "vat":[{"rate":"B","total":"27.00","vat":"2.89"}],
            "payments":[{"method":"cash","amount":"27.00"}],"cash_rounding":"0.00"}));
        let nr = body(json!({"label":"NR","total":"-4.40",
            "lines":[{"total":"-4.40"}],"vat":[{"rate":"A","total":"-4.40","vat":"-0.76"}],
            "payments":[{"method":"card","amount":"-4.40"}]}));
        let ts = body(
            json!({"label":"TS","total":"99.00","lines":[{"total":"99.00"}],
            "vat":[{"rate":"A","total":"99.00","vat":"17.18"}],"payments":[{"method":"cash","amount":"99.00"}]}),
        );
        let pr = body(json!({"label":"PR","total":"-2.00","lines":[{"total":"-2.00"}]}));
        let mut f = Figures::default();
        for (seq, b) in [(1, &ns), (2, &nr), (3, &ts), (4, &pr)] {
            f.add(&Event {
                seq,
                register: "till-1",
                operator: "op",
                body: b,
            })
            .unwrap();
        }
        let t = &f.all;
        assert_eq!(t.gross, "30.00".parse().unwrap());
        assert_eq!(t.discounts, "3.00".parse().unwrap());
        assert_eq!(t.refunds, "4.40".parse().unwrap());
        assert_eq!(t.net, "22.60".parse().unwrap());
        assert_eq!(t.gross - t.discounts - t.refunds, t.net);
        assert_eq!(t.payments["cash"], "27.00".parse().unwrap());
        assert_eq!(t.vat["A"].vat, "-0.76".parse().unwrap());
        assert_eq!(t.labels["TS"].count, 1);
        assert_eq!(t.corrections.count, 1);
        assert_eq!(f.last_event, Some(4));
        let j = t.to_json();
        assert_eq!(j["vat"][1]["base"], "24.11");
        assert_eq!(j["discounts_and_refunds"], "7.40");
    }

    #[test]
    fn discounts_deposits_and_corrections_are_separate_figures() {
        // One day of the issue: a 3.60 discount, a 100.00 deposit deducted on the final ticket,
        // and a 3.00 line of the table cancelled on it; plus the deposit's own ticket.
        let deposit = body(json!({"label":"NS","total":"100.00",
            "lines":[{"total":"100.00"}],"vat":[{"rate":"B","total":"100.00","vat":"10.71"}]}));
        let bill = body(json!({"label":"NS","total":"129.40",
            "lines":[{"total":"236.00"},{"total":"-3.00"},{"total":"-3.60","role":"discount"},
                     {"total":"-100.00","role":"deposit_applied"}],
            "vat":[{"rate":"B","total":"129.40","vat":"13.86"}]}));
        let mut t = Turnover::default();
        for (seq, b) in [(1, &deposit), (2, &bill)] {
            t.add(&Event {
                seq,
                register: "till-1",
                operator: "op",
                body: b,
            })
            .unwrap();
        }
        let d = |x: &str| x.parse::<Decimal>().unwrap();
        assert_eq!(t.discounts, d("3.60"));
        assert_eq!(t.deposits_deducted, d("100.00"));
        assert_eq!(t.line_corrections, d("3.00"));
        assert_eq!(t.gross, d("336.00"));
        assert_eq!(t.net, d("229.40"));
        assert_eq!(
            t.gross - t.discounts - t.refunds - t.deposits_deducted - t.line_corrections,
            t.net
        );
        let j = t.to_json();
        assert_eq!(j["discounts_and_refunds"], "3.60");
        assert_eq!(j["deposits_deducted"], "100.00");
        assert_eq!(j["line_corrections"], "3.00");
    }

    #[test]
    fn bad_amounts_are_named() {
        let b = body(json!({"label":"NS","total":"x"}));
        let e = Figures::default()
            .add(&Event {
                seq: 9,
                register: "r",
                operator: "o",
                body: &b,
            })
            .unwrap_err();
        assert_eq!(e.to_string(), "record 9: total is not a decimal amount");
    }

    #[test]
    fn per_register_sums_and_bytes_give_what_the_tree_gives() {
        let bodies = [
            json!({"label":"NS","total":"129.40","register":"till-1","operator":"a",
                "lines":[{"total":"236.00"},{"total":"-3.00"},{"total":"-3.60","role":"discount"},
                         {"total":"-100.00","role":"deposit_applied"}],
                "vat":[{"rate":"B","total":"129.40","vat":"13.86"}],
                "payments":[{"method":"cash","amount":"129.40"}],"cash_rounding":"0.00"}),
            json!({"label":"NR","total":"-4.40","register":"till-2","operator":"a",
                "lines":[{"total":"-4.40"}],"vat":[{"rate":"A","total":"-4.40","vat":"-0.76"}],
                "payments":[{"method":"card","amount":"-4.40"}]}),
            json!({"label":"NS","total":"12.00","register":"till-2","operator":"b"}),
            json!({"label":"PS","total":"8.00","register":"till-1","operator":"b",
                "lines":[{"total":"8.00"}]}),
        ];
        let mut direct = Figures::default();
        let mut split = ByRegister::default();
        for (i, b) in bodies.iter().enumerate() {
            let seq = i as u64 + 1;
            let Value::Object(m) = b else { panic!() };
            let e = Event {
                seq,
                register: m["register"].as_str().unwrap(),
                operator: m["operator"].as_str().unwrap(),
                body: m,
            };
            direct.add(&e).unwrap();
            let bytes = serde_json::to_vec(b).unwrap();
            let read = EventFigures::from_slice(seq, &bytes).unwrap();
            assert_eq!(read, EventFigures::from_body(seq, m).unwrap());
            split.add_figures(&read);
        }
        assert_eq!(split.figures(|_| true), direct);
        let only_two = split.figures(|r| r == "till-2");
        assert_eq!(only_two.all.net, "7.60".parse().unwrap());
        assert_eq!(only_two.last_event, Some(3));
        assert_eq!(only_two.operators.len(), 2);
        let legacy = direct.all.to_json_in(Shape::Legacy);
        assert_eq!(legacy["discounts"], "106.60");
        assert_eq!(legacy["discounts_and_refunds"], "111.00");
        assert!(legacy.get("deposits_deducted").is_none());
    }

    #[test]
    fn the_first_difference_is_named_by_its_path() {
        let a = json!({"net":"1.00","vat":[{"rate":"A","total":"2.00"}],"ops":{"85 x":{"n":1}}});
        let mut b = a.clone();
        assert_eq!(first_difference("totals", &a, &b), None);
        b["vat"][0]["total"] = json!("2.01");
        let (path, e, f) = first_difference("totals", &a, &b).unwrap();
        assert_eq!(path, "totals.vat[0].total");
        assert_eq!((e, f), (Some(json!("2.00")), Some(json!("2.01"))));
        b = a.clone();
        b["ops"]["85 x"]["m"] = json!(2);
        let (path, e, _) = first_difference("o", &a, &b).unwrap();
        assert_eq!((path.as_str(), e), ("o.ops[\"85 x\"].m", None));
    }
}
