//! The GKS 2.0 types as they travel (docs/gks2.md §2–3): inputs of the signing mutations and the
//! `SignResult`. Field names are the wire's camelCase; enums are the wire's upper-case names.
//! Amounts are `rust_decimal::Decimal` inside; on the wire they are JSON numbers ([`amount`]).

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Serde for amounts: JSON numbers on the wire, [`Decimal`] inside, never `f64` arithmetic.
///
/// A number is read from its shortest decimal representation (what `serde_json` gives back for a
/// number without an exponent of up to 15 significant digits is exactly the text that was sent),
/// a string is read as text. Writing goes the other way and refuses a value that would not come
/// back identical.
pub mod amount {
    use rust_decimal::Decimal;
    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};
    use std::fmt;
    use std::str::FromStr;

    /// Largest magnitude accepted for any amount or quantity.
    pub const LIMIT: i64 = 1_000_000_000;

    /// Reads an amount.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
        d.deserialize_any(AmountVisitor)
    }

    /// Writes an amount as a JSON number.
    pub fn serialize<S: Serializer>(value: &Decimal, s: S) -> Result<S::Ok, S::Error> {
        let v = value.normalize();
        if v.scale() == 0
            && let Ok(i) = i64::try_from(v.mantissa())
        {
            return s.serialize_i64(i);
        }
        let text = v.to_string();
        let float = f64::from_str(&text).map_err(serde::ser::Error::custom)?;
        // The shortest representation of the float must be the decimal itself.
        if Decimal::from_str(&format!("{float}")).ok() != Some(v) {
            return Err(serde::ser::Error::custom(format!(
                "amount {text} has too many digits for a JSON number"
            )));
        }
        s.serialize_f64(float)
    }

    struct AmountVisitor;

    fn checked<E: de::Error>(d: Decimal) -> Result<Decimal, E> {
        if d.abs() > Decimal::from(LIMIT) || d.scale() > 6 {
            return Err(E::custom(format!(
                "amount {d} is out of range (at most {LIMIT}, 6 decimals)"
            )));
        }
        Ok(d)
    }

    impl Visitor<'_> for AmountVisitor {
        type Value = Decimal;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a decimal number")
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Decimal, E> {
            checked(Decimal::from(v))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Decimal, E> {
            checked(Decimal::from(v))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Decimal, E> {
            if !v.is_finite() {
                return Err(E::custom("amount is not finite"));
            }
            // `{}` prints the shortest text that reads back as the same float: the sender's text.
            let d = Decimal::from_str(&format!("{v}")).map_err(E::custom)?;
            checked(d.normalize())
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Decimal, E> {
            if v.len() > 32 {
                return Err(E::custom("amount text too long"));
            }
            checked(Decimal::from_str(v).map_err(E::custom)?)
        }
    }
}

/// Like [`amount`] for an optional field.
pub mod amount_opt {
    use rust_decimal::Decimal;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Reads an optional amount.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
        #[derive(Deserialize)]
        struct W(#[serde(with = "super::amount")] Decimal);
        Ok(Option::<W>::deserialize(d)?.map(|w| w.0))
    }

    /// Writes an optional amount.
    pub fn serialize<S: Serializer>(v: &Option<Decimal>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(d) => super::amount::serialize(d, s),
            None => s.serialize_none(),
        }
    }
}

macro_rules! wire_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[allow(non_camel_case_types, clippy::upper_case_acronyms, missing_docs)]
        pub enum $name { $($(#[$vm])* $v),+ }
        impl $name {
            /// The wire name.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$v => stringify!($v)),+ }
            }
        }
    };
}

wire_enum!(
    /// Ticket language.
    Language { NL, FR, DE, EN }
);
wire_enum!(
    /// VAT label (docs/gks2.md §2.2): A 21 %, B 12 %, C 6 %, D 0 %, X out of scope.
    VatLabel { A, B, C, D, X }
);
wire_enum!(
    /// Event label: N normal, P pro forma, F financial, S social, I invoice, R report, C copy,
    /// T training.
    EventLabel { N, P, F, S, I, R, C, T }
);
wire_enum!(
    /// What an event was.
    EventOperation {
        WORK_IN, WORK_OUT, SALE, INVOICE, COST_CENTER_CHANGE, ORDER, PRE_BILL, MONEY_IN_OUT,
        DRAWER_OPEN, PAYMENT_CORRECTION, COPY, REPORT_TURNOVER_X, REPORT_TURNOVER_Z,
        REPORT_USER_X, REPORT_USER_Z
    }
);
wire_enum!(
    /// Why a quantity is negative: the four of [FT]'s enum, and the two more [OD] sends
    /// (`COST_CENTER_CHANGE` on the lines leaving a cost centre, `PRICE_CHANGE`).
    NegQuantityReason { REFUND, CORRECTION, WASTE, DAMAGE, COST_CENTER_CHANGE, PRICE_CHANGE }
);
wire_enum!(
    /// Unit of a quantity.
    QuantityType { PIECE, KILOGRAM, METER, LITRE, HOUR }
);
wire_enum!(
    /// One product, or a composite whose sub-products carry the VAT.
    TransactionLineType { SINGLE_PRODUCT, COMPOSITE_PRODUCT }
);
wire_enum!(
    /// What a cost centre is.
    CostCenterType { TABLE, CHAIR, ROOM, CUSTOMER, ON_HOLD, KIOSK, PLATFORM, WEBSHOP, OTHER }
);
wire_enum!(
    /// Payment method type.
    PaymentType {
        UNKNOWN, CASH, CARD_UNKNOWN, CARD_DEBIT, CARD_CREDIT, CARD_OTHER, CHEQUE_MEAL,
        CHEQUE_OTHER, APP, ONLINE, CUSTOMER_CREDIT, ROOM_CREDIT, LOYALTY_REWARDS, VOUCHER_STORE,
        VOUCHER_SUPPLIER, VOUCHER_OTHER, OTHER
    }
);

impl VatLabel {
    /// The same letter in fdmd's fiscal core.
    pub fn letter(self) -> crate::fiscal::vat::VatLetter {
        use crate::fiscal::vat::VatLetter;
        match self {
            VatLabel::A => VatLetter::A,
            VatLabel::B => VatLetter::B,
            VatLabel::C => VatLetter::C,
            VatLabel::D => VatLetter::D,
            VatLabel::X => VatLetter::X,
        }
    }

    /// The label of one of fdmd's VAT letters (the same five).
    pub fn of(letter: crate::fiscal::vat::VatLetter) -> Self {
        use crate::fiscal::vat::VatLetter;
        match letter {
            VatLetter::A => VatLabel::A,
            VatLetter::B => VatLabel::B,
            VatLetter::C => VatLabel::C,
            VatLetter::D => VatLabel::D,
            VatLetter::X => VatLabel::X,
        }
    }
}

/// The signing mutations (docs/gks2.md §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mutation {
    /// `signSale`.
    Sale,
    /// `signInvoice`.
    Invoice,
    /// `signOrder`.
    Order,
    /// `signPreBill`.
    PreBill,
    /// `signCostCenterChange`.
    CostCenterChange,
    /// `signWorkIn`.
    WorkIn,
    /// `signWorkOut`.
    WorkOut,
    /// `signCopy`.
    Copy,
    /// `signMoneyInOut`.
    MoneyInOut,
    /// `signDrawerOpen`.
    DrawerOpen,
    /// `signPaymentCorrection`.
    PaymentCorrection,
    /// `signReportTurnoverX`.
    ReportTurnoverX,
    /// `signReportTurnoverZ`.
    ReportTurnoverZ,
    /// `signReportUserX`.
    ReportUserX,
    /// `signReportUserZ`.
    ReportUserZ,
}

impl Mutation {
    /// Every mutation.
    pub const ALL: [Mutation; 15] = [
        Mutation::Sale,
        Mutation::Invoice,
        Mutation::Order,
        Mutation::PreBill,
        Mutation::CostCenterChange,
        Mutation::WorkIn,
        Mutation::WorkOut,
        Mutation::Copy,
        Mutation::MoneyInOut,
        Mutation::DrawerOpen,
        Mutation::PaymentCorrection,
        Mutation::ReportTurnoverX,
        Mutation::ReportTurnoverZ,
        Mutation::ReportUserX,
        Mutation::ReportUserZ,
    ];

    /// The GraphQL field name.
    pub fn field(self) -> &'static str {
        match self {
            Mutation::Sale => "signSale",
            Mutation::Invoice => "signInvoice",
            Mutation::Order => "signOrder",
            Mutation::PreBill => "signPreBill",
            Mutation::CostCenterChange => "signCostCenterChange",
            Mutation::WorkIn => "signWorkIn",
            Mutation::WorkOut => "signWorkOut",
            Mutation::Copy => "signCopy",
            Mutation::MoneyInOut => "signMoneyInOut",
            Mutation::DrawerOpen => "signDrawerOpen",
            Mutation::PaymentCorrection => "signPaymentCorrection",
            Mutation::ReportTurnoverX => "signReportTurnoverX",
            Mutation::ReportTurnoverZ => "signReportTurnoverZ",
            Mutation::ReportUserX => "signReportUserX",
            Mutation::ReportUserZ => "signReportUserZ",
        }
    }

    /// The mutation of a GraphQL field name.
    pub fn from_field(name: &str) -> Option<Mutation> {
        Mutation::ALL.into_iter().find(|m| m.field() == name)
    }

    /// The input type name.
    pub fn input_type(self) -> &'static str {
        match self {
            Mutation::Sale => "SaleInput",
            Mutation::Invoice => "InvoiceInput",
            Mutation::Order => "OrderInput",
            Mutation::PreBill => "PreBillInput",
            Mutation::CostCenterChange => "CostCenterChangeInput",
            Mutation::WorkIn | Mutation::WorkOut => "WorkInOutInput",
            Mutation::Copy => "CopyInput",
            Mutation::MoneyInOut => "MoneyInOutInput",
            Mutation::DrawerOpen => "DrawerOpenInput",
            Mutation::PaymentCorrection => "PaymentCorrectionInput",
            Mutation::ReportTurnoverX => "ReportTurnoverXInput",
            Mutation::ReportTurnoverZ => "ReportTurnoverZInput",
            Mutation::ReportUserX => "ReportUserXInput",
            Mutation::ReportUserZ => "ReportUserZInput",
        }
    }

    /// The operation the answer names.
    pub fn operation(self) -> EventOperation {
        match self {
            Mutation::Sale => EventOperation::SALE,
            Mutation::Invoice => EventOperation::INVOICE,
            Mutation::Order => EventOperation::ORDER,
            Mutation::PreBill => EventOperation::PRE_BILL,
            Mutation::CostCenterChange => EventOperation::COST_CENTER_CHANGE,
            Mutation::WorkIn => EventOperation::WORK_IN,
            Mutation::WorkOut => EventOperation::WORK_OUT,
            Mutation::Copy => EventOperation::COPY,
            Mutation::MoneyInOut => EventOperation::MONEY_IN_OUT,
            Mutation::DrawerOpen => EventOperation::DRAWER_OPEN,
            Mutation::PaymentCorrection => EventOperation::PAYMENT_CORRECTION,
            Mutation::ReportTurnoverX => EventOperation::REPORT_TURNOVER_X,
            Mutation::ReportTurnoverZ => EventOperation::REPORT_TURNOVER_Z,
            Mutation::ReportUserX => EventOperation::REPORT_USER_X,
            Mutation::ReportUserZ => EventOperation::REPORT_USER_Z,
        }
    }

    /// The event label (docs/gks2.md §2, inferred from the names; training is always T).
    pub fn label(self, training: bool) -> EventLabel {
        if training {
            return EventLabel::T;
        }
        match self {
            Mutation::Sale => EventLabel::N,
            Mutation::Invoice => EventLabel::I,
            Mutation::Order | Mutation::PreBill | Mutation::CostCenterChange => EventLabel::P,
            Mutation::WorkIn | Mutation::WorkOut => EventLabel::S,
            Mutation::Copy => EventLabel::C,
            Mutation::MoneyInOut | Mutation::DrawerOpen | Mutation::PaymentCorrection => {
                EventLabel::F
            }
            Mutation::ReportTurnoverX
            | Mutation::ReportTurnoverZ
            | Mutation::ReportUserX
            | Mutation::ReportUserZ => EventLabel::R,
        }
    }

    /// Whether the answer carries `shortSignature`, `verificationUrl` and `vatCalc` (a VAT
    /// receipt) — only `signSale` asks for them in the public clients.
    pub fn is_vat_receipt(self) -> bool {
        self == Mutation::Sale
    }

    /// Whether the input carries `transaction` lines the FDM computes VAT from.
    pub fn has_lines(self) -> bool {
        matches!(
            self,
            Mutation::Sale
                | Mutation::Invoice
                | Mutation::Order
                | Mutation::PreBill
                | Mutation::CostCenterChange
        )
    }
}

/// The fields every input has.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BaseInput {
    /// Ticket language.
    pub language: Language,
    /// VAT number of the business.
    pub vat_no: String,
    /// Establishment number.
    pub est_no: String,
    /// The POS system's id.
    pub pos_id: String,
    /// The POS's ticket number (a resend key).
    pub pos_fiscal_ticket_no: u64,
    /// The POS's time of the event, ISO 8601 (a resend key).
    pub pos_date_time: String,
    /// POS software version.
    pub pos_sw_version: String,
    /// The terminal (register) id (a resend key).
    pub terminal_id: String,
    /// The device id of the terminal.
    pub device_id: String,
    /// Booking period (UUID).
    pub booking_period_id: String,
    /// Booking date, `YYYY-MM-DD`.
    pub booking_date: String,
    /// `PAPER`, `DIGITAL`…
    pub ticket_medium: String,
    /// INSZ/BIS of the operator.
    pub employee_id: String,
}

/// A price change (discount, surcharge) on one VAT part of a product.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PriceChange {
    /// Groups changes that belong together.
    pub grouping_id: i64,
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Scope (wire value kept as text: the enum's values are not all known).
    pub scope: String,
    /// Type (wire value kept as text).
    #[serde(rename = "type")]
    pub kind: String,
    /// Amount, VAT included (negative for a discount).
    #[serde(with = "amount")]
    pub amount: Decimal,
}

/// One VAT part of a product's price.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VatPart {
    /// Label.
    pub label: VatLabel,
    /// Price of this part for the whole line (quantity × unit price, price changes apart), VAT
    /// included: [FT]'s test sale (quantity 2, `unitPrice` 12, `price` 24) and [OD] send it so.
    #[serde(with = "amount")]
    pub price: Decimal,
    /// Price changes of this part (for the whole line).
    #[serde(default)]
    pub price_changes: Vec<PriceChange>,
}

/// A product on a line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Product {
    /// GTIN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtin: Option<String>,
    /// Product id.
    pub product_id: String,
    /// Name.
    pub product_name: String,
    /// Department id.
    pub department_id: String,
    /// Department name.
    pub department_name: String,
    /// Quantity (negative: with a reason).
    #[serde(with = "amount")]
    pub quantity: Decimal,
    /// Unit.
    pub quantity_type: QuantityType,
    /// Required for a negative quantity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub neg_quantity_reason: Option<NegQuantityReason>,
    /// Unit price, VAT included.
    #[serde(with = "amount")]
    pub unit_price: Decimal,
    /// VAT parts (empty for the main product of a composite line).
    #[serde(default)]
    pub vats: Vec<VatPart>,
}

/// A cost centre (table, room…), possibly inside another.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CostCenter {
    /// Id.
    pub id: String,
    /// Kind.
    #[serde(rename = "type")]
    pub kind: CostCenterType,
    /// Reference.
    pub reference: String,
    /// The enclosing cost centre.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_center: Option<Box<CostCenter>>,
}

/// One transaction line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransactionLine {
    /// Single or composite.
    pub line_type: TransactionLineType,
    /// The product.
    pub main_product: Product,
    /// Parts of a composite product.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_products: Option<Vec<Product>>,
    /// Cost centre of this line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_center: Option<CostCenter>,
    /// Total of the line, VAT and price changes included.
    #[serde(with = "amount")]
    pub line_total: Decimal,
}

/// The lines of an event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Transaction {
    /// Lines in chronological order.
    pub transaction_lines: Vec<TransactionLine>,
    /// Σ lineTotal.
    #[serde(with = "amount")]
    pub transaction_total: Decimal,
}

/// A payment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentLine {
    /// Payment method id.
    pub id: String,
    /// Payment method name.
    pub name: String,
    /// Kind.
    #[serde(rename = "type")]
    pub kind: PaymentType,
    /// Provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// How it was entered (wire value kept as text).
    pub input_method: String,
    /// Amount in euro.
    #[serde(with = "amount")]
    pub amount: Decimal,
    /// Nature of the payment (wire value kept as text).
    pub amount_type: String,
    /// Reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

/// The FDM's reference of an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FdmRef {
    /// FDM id.
    pub fdm_id: String,
    /// FDM time.
    pub fdm_date_time: String,
    /// Label.
    pub event_label: EventLabel,
    /// Counter of the label.
    pub event_counter: u64,
    /// Counter over all labels.
    pub total_counter: u64,
}

/// `SaleInput`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SaleInput {
    /// Common fields.
    #[serde(flatten)]
    pub base: BaseInput,
    /// For a full refund: the original's reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fdm_ref: Option<FdmRef>,
    /// Cost centre.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_center: Option<CostCenter>,
    /// Lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction: Option<Transaction>,
    /// Payments.
    pub financials: Vec<PaymentLine>,
}

/// `OrderInput` and `PreBillInput` (an order requires its cost centre).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProFormaInput {
    /// Common fields.
    #[serde(flatten)]
    pub base: BaseInput,
    /// Cost centre.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_center: Option<CostCenter>,
    /// Lines.
    pub transaction: Transaction,
    /// Payments (pre-bill only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub financials: Option<Vec<PaymentLine>>,
}

/// One side of a cost-centre change (`TransferItemInput`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransferItem {
    /// Cost centre.
    pub cost_center: CostCenter,
    /// Lines moved: negative quantities on the side they leave, as they are on the side they
    /// join (docs/gks2.md §2.2).
    pub transaction: Transaction,
}

/// `transfer` of a cost-centre change (`TransferInput`).
///
/// The public clients disagree on its shape: [FT] types `from` and `to` as lists of
/// `TransferItemInput`, [OD] documents and sends one `TransferItemInput` each. GraphQL coerces a
/// single value where a list is expected (input coercion of lists), so fdmd sends one object per
/// side (valid for both schemas: [`serialize_side`]), and the emulator reads both forms
/// ([`Transfer::normalised`] turns single objects into lists of one before reading).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transfer {
    /// Where the lines come from.
    #[serde(serialize_with = "serialize_side")]
    pub from: Vec<TransferItem>,
    /// Where they go.
    #[serde(serialize_with = "serialize_side")]
    pub to: Vec<TransferItem>,
}

/// One side of a transfer on the wire: a single object when it has one item (the form [OD]
/// sends), a list otherwise.
pub fn serialize_side<S: serde::Serializer>(
    side: &[TransferItem],
    s: S,
) -> Result<S::Ok, S::Error> {
    match side {
        [one] => one.serialize(s),
        many => many.serialize(s),
    }
}

impl Transfer {
    /// `data` with `transfer.from` and `transfer.to` as lists (a single object becomes a list of
    /// one, as GraphQL input coercion does), ready to be read as a [`CostCenterChangeInput`].
    pub fn normalised(data: &Value) -> Value {
        let mut data = data.clone();
        if let Some(transfer) = data.get_mut("transfer").and_then(Value::as_object_mut) {
            for side in ["from", "to"] {
                if let Some(v) = transfer.get_mut(side)
                    && v.is_object()
                {
                    *v = Value::Array(vec![v.take()]);
                }
            }
        }
        data
    }
}

/// `CostCenterChangeInput`: the common fields and what moves where.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CostCenterChangeInput {
    /// Common fields.
    #[serde(flatten)]
    pub base: BaseInput,
    /// What moves where.
    pub transfer: Transfer,
}

/// `CopyInput` ([FT] `Models/Copy/CopyInput.cs`, [OD] `generateCopyInput`): the common fields and
/// the FDM reference of the event the copy reprints (`FdmReferenceInput`, the five fields of
/// [`FdmRef`], all required).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CopyInput {
    /// Common fields.
    #[serde(flatten)]
    pub base: BaseInput,
    /// The reprinted event's `fdmRef`, as its `SignResult` gave it.
    pub fdm_ref: FdmRef,
}

wire_enum!(
    /// What a money in/out line is ([OD] `MoneyInOutLineInput.amountType: MoneyInOutLineType!`
    /// sends `MONEY_IN_OUT`; a third public client's sample also sends `DRAWER_DECLARATION`).
    MoneyInOutLineType { MONEY_IN_OUT, DRAWER_DECLARATION }
);

/// A cash drawer (`DrawerInput` [OD]: `id`, `name`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrawerInput {
    /// Drawer id.
    pub id: String,
    /// Drawer name.
    pub name: String,
}

/// One line of a money in/out (`MoneyInOutLineInput` [OD]): a payment means put in (positive)
/// or taken out (negative).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MoneyInOutLine {
    /// Payment method id.
    pub id: String,
    /// Payment method name.
    pub name: String,
    /// Kind (the payment type enum of sales).
    #[serde(rename = "type")]
    pub kind: PaymentType,
    /// Provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// How it was entered (wire value kept as text).
    pub input_method: String,
    /// Amount in euro.
    #[serde(with = "amount")]
    pub amount: Decimal,
    /// Nature of the line.
    pub amount_type: MoneyInOutLineType,
    /// Reference (fdmd: the voucher codes of a voucher sale).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// The drawer the money went into or came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drawer: Option<DrawerInput>,
}

/// `MoneyInOutInput` ([OD] `generateMoneyInOutInput`, [FT] `signMoneyInOut`): the common fields
/// and `financials: [MoneyInOutLineInput!]!`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MoneyInOutInput {
    /// Common fields.
    #[serde(flatten)]
    pub base: BaseInput,
    /// The money put in or taken out, one line per payment type.
    pub financials: Vec<MoneyInOutLine>,
}

/// Inputs typed only in their common fields in this stage (work in/out, money in/out,
/// drawer, payment correction, invoice): the rest travels as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OtherInput {
    /// Common fields.
    #[serde(flatten)]
    pub base: BaseInput,
    /// The other members, as sent.
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// `PosDeviceInput` of a report: the period one terminal covers (docs/gks2.md §2.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PosDeviceInput {
    /// The POS system's id.
    pub pos_id: String,
    /// The terminal.
    pub terminal_id: String,
    /// `posDateTime` of the terminal's first event in the period.
    pub first_pos_date_time: String,
    /// `posDateTime` of its last event.
    pub last_pos_date_time: String,
}

/// `FdmDeviceInput` of a report: the FDM events the report covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FdmDeviceInput {
    /// The FDM.
    pub fdm_id: String,
    /// `fdmDateTime` of its first event in the period.
    pub first_fdm_date_time: String,
    /// `totalCounter` of that event.
    pub first_total_counter: u64,
    /// `fdmDateTime` of its last event.
    pub last_fdm_date_time: String,
    /// `totalCounter` of that event.
    pub last_total_counter: u64,
}

/// `EventTotalInput`: events of one label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventTotalInput {
    /// Label.
    pub event_label: EventLabel,
    /// How many events.
    pub ticket_count: u64,
    /// Their total.
    #[serde(with = "amount")]
    pub amount: Decimal,
}

/// `DepartmentTotalInput`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DepartmentTotalInput {
    /// Id.
    pub department_id: String,
    /// Name.
    pub department_name: String,
    /// Total.
    #[serde(with = "amount")]
    pub amount: Decimal,
}

/// `VatTotalInput`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VatTotalInput {
    /// Label.
    pub label: VatLabel,
    /// Rate in percent.
    #[serde(with = "amount")]
    pub rate: Decimal,
    /// Base.
    #[serde(with = "amount")]
    pub taxable_amount: Decimal,
    /// VAT.
    #[serde(with = "amount")]
    pub vat_amount: Decimal,
    /// Total with VAT.
    #[serde(with = "amount")]
    pub total_amount: Decimal,
}

/// `PaymentTotalAmountInput`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentTotalAmountInput {
    /// `PAYMENT`, `TIP`, `ROUNDING`.
    #[serde(rename = "type")]
    pub kind: PaymentAmountType,
    /// Amount without corrections.
    #[serde(with = "amount")]
    pub normal_amount: Decimal,
    /// Negative corrections.
    #[serde(with = "amount")]
    pub negative_corrections: Decimal,
    /// Positive corrections.
    #[serde(with = "amount")]
    pub positive_corrections: Decimal,
    /// How many corrections.
    pub corrections_count: u64,
    /// Total.
    #[serde(with = "amount")]
    pub total_amount: Decimal,
    /// In a foreign currency.
    #[serde(default, with = "amount_opt", skip_serializing_if = "Option::is_none")]
    pub normal_foreign: Option<Decimal>,
    /// Corrections in a foreign currency.
    #[serde(default, with = "amount_opt", skip_serializing_if = "Option::is_none")]
    pub corrections_foreign: Option<Decimal>,
}

wire_enum!(
    /// What a payment total amount is.
    PaymentAmountType { PAYMENT, TIP, ROUNDING }
);

/// `PaymentTotalInput`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentTotalInput {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Payment type.
    #[serde(rename = "type")]
    pub kind: PaymentType,
    /// Amounts.
    pub amount: Vec<PaymentTotalAmountInput>,
}

/// `NegQuantityTotalInput`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NegQuantityTotalInput {
    /// Why.
    pub neg_quantity_reason: NegQuantityReason,
    /// How many negative lines.
    pub neg_quantity_count: u64,
    /// On how many tickets.
    pub ticket_count: u64,
    /// Their total (negative).
    #[serde(with = "amount")]
    pub amount: Decimal,
}

/// `PriceChangeVatTotalInput`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceChangeVatTotalInput {
    /// Label.
    pub label: VatLabel,
    /// Negative changes.
    #[serde(with = "amount")]
    pub negative: Decimal,
    /// Positive changes.
    #[serde(with = "amount")]
    pub positive: Decimal,
}

/// `PriceChangeTotalInput`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceChangeTotalInput {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Type (kept as text: the enum's values are not all known).
    #[serde(rename = "type")]
    pub kind: String,
    /// Per VAT label.
    pub amount: Vec<PriceChangeVatTotalInput>,
}

/// `InvoiceTotalInput`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvoiceTotalInput {
    /// Invoice number.
    pub invoice_no: String,
    /// Total.
    #[serde(with = "amount")]
    pub amount: Decimal,
}

/// `TurnoverInput`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TurnoverInput {
    /// Per event label.
    pub transactions: Vec<EventTotalInput>,
    /// Per department.
    pub departments: Vec<DepartmentTotalInput>,
    /// Per VAT label.
    pub vats: Vec<VatTotalInput>,
    /// Per payment method.
    pub payments: Vec<PaymentTotalInput>,
    /// Drawer openings.
    #[serde(default)]
    pub drawers_open_count: u64,
    /// Negative quantities per reason.
    pub neg_quantities: Vec<NegQuantityTotalInput>,
    /// Price changes.
    pub price_changes: Vec<PriceChangeTotalInput>,
    /// Invoices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invoices: Option<Vec<InvoiceTotalInput>>,
}

/// `ReportTurnoverXInput` and (with `reportNo`, `reportBookingDate`) `ReportTurnoverZInput`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportTurnoverInput {
    /// Common fields.
    #[serde(flatten)]
    pub base: BaseInput,
    /// Z only: the report's number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_no: Option<u64>,
    /// Z only: the booking date the report closes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_booking_date: Option<String>,
    /// The terminals covered.
    pub pos_devices: Vec<PosDeviceInput>,
    /// The FDM events covered.
    pub fdm_devices: Vec<FdmDeviceInput>,
    /// The figures.
    pub turnover: TurnoverInput,
}

/// `InOutItemInput` of a user report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InOutItemInput {
    /// When.
    pub pos_date_time: String,
    /// `IN` or `OUT` (kept as text).
    pub in_out: String,
}

/// `UserItemInput` of a user report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserItemInput {
    /// INSZ/BIS.
    pub employee_id: String,
    /// Total.
    #[serde(with = "amount")]
    pub total_amount: Decimal,
    /// First event.
    pub first_pos_date_time: String,
    /// Last event.
    pub last_pos_date_time: String,
    /// Work in / out.
    #[serde(default)]
    pub social_events: Vec<InOutItemInput>,
    /// Payments.
    #[serde(default)]
    pub payments: Vec<PaymentTotalInput>,
}

/// `ReportUserXInput` and (with `reportNo`, `reportBookingDate`) `ReportUserZInput`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportUserInput {
    /// Common fields.
    #[serde(flatten)]
    pub base: BaseInput,
    /// Z only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_no: Option<u64>,
    /// Z only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_booking_date: Option<String>,
    /// The terminals covered.
    pub pos_devices: Vec<PosDeviceInput>,
    /// The FDM events covered.
    pub fdm_devices: Vec<FdmDeviceInput>,
    /// Per user.
    pub users: Vec<UserItemInput>,
}

/// One line of `vatCalc`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VatCalc {
    /// Label.
    pub label: VatLabel,
    /// Rate in percent.
    #[serde(with = "amount")]
    pub rate: Decimal,
    /// Base without VAT.
    #[serde(with = "amount")]
    pub taxable_amount: Decimal,
    /// VAT.
    #[serde(with = "amount")]
    pub vat_amount: Decimal,
    /// Total with VAT.
    #[serde(with = "amount")]
    pub total_amount: Decimal,
    /// Out of the scope of VAT (label X).
    pub out_of_scope: bool,
}

/// `{name, value}` of a message's extensions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataItem {
    /// Name.
    pub name: String,
    /// Value.
    pub value: String,
}

/// A message's extensions.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Extensions {
    /// Category.
    #[serde(default)]
    pub category: String,
    /// Code.
    #[serde(default)]
    pub code: String,
    /// Data.
    #[serde(default)]
    pub data: Vec<DataItem>,
    /// Show to the operator.
    #[serde(default)]
    pub show_pos: bool,
}

/// A warning, an information or a GraphQL error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Text.
    pub message: String,
    /// Extensions.
    #[serde(default)]
    pub extensions: Extensions,
}

impl Message {
    /// A message with a category and code.
    pub fn new(category: &str, code: &str, message: impl Into<String>, show_pos: bool) -> Self {
        Message {
            message: message.into(),
            extensions: Extensions {
                category: category.into(),
                code: code.into(),
                data: Vec::new(),
                show_pos,
            },
        }
    }
}

/// The FDM's answer to a signing mutation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignResult {
    /// Echo.
    pub pos_id: String,
    /// Echo.
    pub pos_fiscal_ticket_no: u64,
    /// Echo.
    pub pos_date_time: String,
    /// Echo.
    pub terminal_id: String,
    /// Echo.
    pub device_id: String,
    /// Operation.
    pub event_operation: EventOperation,
    /// The FDM's reference.
    pub fdm_ref: FdmRef,
    /// FDM software version.
    pub fdm_sw_version: String,
    /// Signature, base64.
    pub digital_signature: String,
    /// Short signature (VAT receipts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub short_signature: Option<String>,
    /// QR-code URL (VAT receipts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification_url: Option<String>,
    /// VAT computed by the FDM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vat_calc: Option<Vec<VatCalc>>,
    /// Buffer use.
    #[serde(with = "amount")]
    pub buffer_capacity_used: Decimal,
    /// Warnings.
    #[serde(default)]
    pub warnings: Vec<Message>,
    /// Informations.
    #[serde(default)]
    pub informations: Vec<Message>,
    /// Lines to print at the foot of the ticket.
    #[serde(default)]
    pub footer: Vec<String>,
}

/// The selection set fdmd's client asks for: every field of [`SignResult`].
pub const SIGN_RESULT_SELECTION: &str = "posId posFiscalTicketNo posDateTime terminalId deviceId eventOperation fdmRef {fdmId fdmDateTime eventLabel eventCounter totalCounter} fdmSwVersion digitalSignature shortSignature verificationUrl vatCalc {label rate taxableAmount vatAmount totalAmount outOfScope} bufferCapacityUsed warnings {message extensions {category code data {name value} showPos}} informations {message extensions {category code data {name value} showPos}} footer";

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn amounts_read_from_numbers_exactly_and_write_back_as_numbers() {
        #[derive(Serialize, Deserialize)]
        struct A(#[serde(with = "amount")] Decimal);
        for text in ["2.2", "0.1", "11.9", "-3", "1234567.89", "0.333"] {
            let a: A = serde_json::from_str(text).unwrap();
            assert_eq!(a.0, text.parse::<Decimal>().unwrap(), "{text}");
            assert_eq!(serde_json::to_string(&a).unwrap(), text);
        }
        assert!(serde_json::from_str::<A>("1e12").is_err());
        assert!(serde_json::from_str::<A>("0.1234567").is_err());
        assert_eq!(
            serde_json::from_str::<A>("\"2.20\"").unwrap().0,
            Decimal::new(220, 2)
        );
    }
}
