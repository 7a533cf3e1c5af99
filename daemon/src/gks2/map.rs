//! fdmd's checked orders as GKS 2.0 mutation inputs (docs/gks2.md §6), and the comparison of
//! the FDM's `vatCalc` with fdmd's own VAT (§8: a ticket is refused when they differ). The
//! first pieces of `[signer] backend = "gks2"`; the registration path does not call them yet.

use super::model::{
    BaseInput, CostCenter, CostCenterType, Language, Mutation, NegQuantityReason, PaymentLine,
    PaymentType, ProFormaInput, Product, QuantityType, SaleInput, Transaction, TransactionLine,
    TransactionLineType, VatCalc, VatLabel, VatPart,
};
use crate::fiscal::order::{Order, PaymentMethod, Purpose, Unit};
use crate::fiscal::vat::VatLetter;
use crate::fiscal::{EventType, Sale};
use rust_decimal::Decimal;
use serde_json::Value;

/// What the POS side fixes for one request before the first attempt, and keeps for resends
/// (the five keys: posId, posDateTime, terminalId, the label, posFiscalTicketNo).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PosContext {
    /// The POS system's id.
    pub pos_id: String,
    /// POS software version.
    pub pos_sw_version: String,
    /// VAT number of the business.
    pub vat_no: String,
    /// Establishment number.
    pub est_no: String,
    /// Terminal id of the register.
    pub terminal_id: String,
    /// Device id of the register.
    pub device_id: String,
    /// Booking period (UUID).
    pub booking_period_id: String,
    /// Booking date.
    pub booking_date: String,
    /// Ticket language.
    pub language: Language,
    /// The POS ticket number reserved for this request.
    pub pos_fiscal_ticket_no: u64,
    /// The POS time taken once for this request.
    pub pos_date_time: String,
}

/// A mutation ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapped {
    /// Which mutation.
    pub mutation: Mutation,
    /// `isTraining`.
    pub training: bool,
    /// `data`.
    pub data: Value,
}

/// Why an order has no GKS 2.0 form yet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    /// Not mapped in this stage.
    #[error("{0} is not mapped to GKS 2.0 yet")]
    Unsupported(String),
    /// The input could not be built.
    #[error("GKS 2.0 input: {0}")]
    Encode(String),
}

fn base(order: &Order, ctx: &PosContext) -> BaseInput {
    BaseInput {
        language: ctx.language,
        vat_no: ctx.vat_no.clone(),
        est_no: ctx.est_no.clone(),
        pos_id: ctx.pos_id.clone(),
        pos_fiscal_ticket_no: ctx.pos_fiscal_ticket_no,
        pos_date_time: ctx.pos_date_time.clone(),
        pos_sw_version: ctx.pos_sw_version.clone(),
        terminal_id: ctx.terminal_id.clone(),
        device_id: ctx.device_id.clone(),
        booking_period_id: ctx.booking_period_id.clone(),
        booking_date: ctx.booking_date.clone(),
        ticket_medium: "PAPER".into(),
        employee_id: order.operator.clone(),
    }
}

/// The lines in the order sent (never consolidated); a negative quantity is a REFUND on a
/// refund of an earlier ticket, a CORRECTION otherwise.
fn transaction(order: &Order, sale: &Sale) -> Transaction {
    let reason = if order.original.is_some() {
        NegQuantityReason::REFUND
    } else {
        NegQuantityReason::CORRECTION
    };
    let lines = order
        .lines
        .iter()
        .zip(&sale.line_totals)
        .map(|(l, total)| TransactionLine {
            line_type: TransactionLineType::SINGLE_PRODUCT,
            main_product: Product {
                gtin: None,
                product_id: l.description.clone(),
                product_name: l.description.clone(),
                department_id: l.category.map_or("none", |c| c.as_str()).into(),
                department_name: l.category.map_or("none", |c| c.as_str()).into(),
                quantity: l.quantity,
                quantity_type: match l.unit {
                    Unit::Piece => QuantityType::PIECE,
                    Unit::Kg => QuantityType::KILOGRAM,
                    Unit::L => QuantityType::LITRE,
                },
                neg_quantity_reason: (l.quantity < Decimal::ZERO).then_some(reason),
                unit_price: l.unit_price,
                vats: vec![VatPart {
                    label: VatLabel::of(l.vat),
                    price: l.unit_price,
                    price_changes: Vec::new(),
                }],
            },
            sub_products: None,
            cost_center: None,
            line_total: *total,
        })
        .collect();
    Transaction {
        transaction_lines: lines,
        transaction_total: sale.total,
    }
}

fn financials(order: &Order) -> Vec<PaymentLine> {
    order
        .payments
        .iter()
        .map(|p| PaymentLine {
            id: p.method.as_str().into(),
            name: p.method.as_str().into(),
            kind: match p.method {
                PaymentMethod::Cash => PaymentType::CASH,
                PaymentMethod::Card => PaymentType::CARD_UNKNOWN,
                PaymentMethod::Voucher => PaymentType::VOUCHER_OTHER,
                PaymentMethod::Transfer | PaymentMethod::Other => PaymentType::OTHER,
            },
            provider: None,
            input_method: "MANUAL".into(),
            amount: p.amount,
            amount_type: "PAYMENT".into(),
            reference: None,
        })
        .collect()
}

fn table(order: &Order) -> Option<CostCenter> {
    order.table.as_ref().map(|t| CostCenter {
        id: t.clone(),
        kind: CostCenterType::TABLE,
        reference: t.clone(),
        cost_center: None,
    })
}

fn encode<T: serde::Serialize>(v: &T) -> Result<Value, MapError> {
    serde_json::to_value(v).map_err(|e| MapError::Encode(e.to_string()))
}

/// The mutation of a checked order and its computed ticket (docs/gks2.md §6).
pub fn map_order(order: &Order, sale: &Sale, ctx: &PosContext) -> Result<Mapped, MapError> {
    let training = order.event_type == EventType::Training;
    let mapped = |mutation, data| Mapped {
        mutation,
        training,
        data,
    };
    match order.purpose {
        Purpose::WorkIn => return Ok(mapped(Mutation::WorkIn, encode(&base(order, ctx))?)),
        Purpose::WorkOut => return Ok(mapped(Mutation::WorkOut, encode(&base(order, ctx))?)),
        Purpose::Sale | Purpose::Deposit | Purpose::CateringClose => {}
        other => return Err(MapError::Unsupported(format!("purpose {}", other.as_str()))),
    }
    match order.event_type {
        EventType::Normal | EventType::Training => {
            let input = SaleInput {
                base: base(order, ctx),
                fdm_ref: None,
                cost_center: table(order),
                transaction: Some(transaction(order, sale)),
                financials: financials(order),
            };
            Ok(mapped(Mutation::Sale, encode(&input)?))
        }
        EventType::ProForma => {
            // An order round on a table is signOrder; a bill (or a pro forma without a table)
            // is signPreBill.
            let mutation = if order.table.is_some() && !order.bill {
                Mutation::Order
            } else {
                Mutation::PreBill
            };
            let input = ProFormaInput {
                base: base(order, ctx),
                cost_center: table(order),
                transaction: transaction(order, sale),
                financials: None,
            };
            Ok(mapped(mutation, encode(&input)?))
        }
        EventType::Copy => Err(MapError::Unsupported("a copy".into())),
    }
}

/// The FDM's VAT differs from fdmd's: the ticket must not be issued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "VAT {letter}: fdmd computed total {ours_total} VAT {ours_vat}, the FDM {fdm_total} VAT {fdm_vat}"
)]
pub struct VatMismatch {
    /// The letter that differs.
    pub letter: String,
    /// fdmd's total.
    pub ours_total: String,
    /// fdmd's VAT.
    pub ours_vat: String,
    /// The FDM's total.
    pub fdm_total: String,
    /// The FDM's VAT.
    pub fdm_vat: String,
}

/// Compares the FDM's `vatCalc` with fdmd's VAT per letter (total, VAT and base; a letter
/// present on one side only differs).
pub fn check_vat(sale: &Sale, fdm: &[VatCalc]) -> Result<(), VatMismatch> {
    let show = |d: Option<Decimal>| d.map_or_else(|| "none".to_owned(), |d| d.to_string());
    let mut letters: Vec<VatLetter> = sale.vat.iter().map(|v| v.letter).collect();
    letters.extend(fdm.iter().map(|v| v.label.letter()));
    letters.sort();
    letters.dedup();
    for letter in letters {
        let ours = sale.vat.iter().find(|v| v.letter == letter);
        let theirs = fdm.iter().find(|v| v.label.letter() == letter);
        let same = match (ours, theirs) {
            (Some(o), Some(t)) => {
                o.total == t.total_amount && o.vat == t.vat_amount && o.base == t.taxable_amount
            }
            _ => false,
        };
        if !same {
            return Err(VatMismatch {
                letter: letter.as_str().into(),
                ours_total: show(ours.map(|o| o.total)),
                ours_vat: show(ours.map(|o| o.vat)),
                fdm_total: show(theirs.map(|t| t.total_amount)),
                fdm_vat: show(theirs.map(|t| t.vat_amount)),
            });
        }
    }
    Ok(())
}
