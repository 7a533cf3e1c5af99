//! fdmd's checked orders as GKS 2.0 mutation inputs (docs/gks2.md §6): sales, pro formas and
//! clockings ([`map_order`]), full refunds ([`map_refund`]), copies ([`map_copy`]) and table moves and merges
//! ([`map_table_change`]); and the comparison of the FDM's `vatCalc` with fdmd's own VAT (§8: a
//! ticket is refused when they differ). Called by `[signer] backend = "gks2"` (`backend.rs`).

use super::model::{
    BaseInput, CopyInput, CostCenter, CostCenterChangeInput, CostCenterType, FdmRef, Language,
    MoneyInOutInput, MoneyInOutLine, MoneyInOutLineType, Mutation, NegQuantityReason, PaymentLine,
    PaymentType, ProFormaInput, Product, QuantityType, SaleInput, Transaction, TransactionLine,
    TransactionLineType, Transfer, TransferItem, VatCalc, VatLabel, VatPart,
};
use crate::fiscal::money::round_cents;
use crate::fiscal::order::{Order, OrderLine, PaymentMethod, Purpose, Unit};
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

/// One line as the FDM reads it: a single product at its unit price whose one VAT part has the
/// line's price (`VatInput.price` = the line total, quantity × unit price, as [FT]'s test sale
/// and [OD] send it; docs/gks2.md §9), the line total as fdmd computed it, and `reason` on a
/// negative quantity.
fn product_line(l: &OrderLine, total: Decimal, reason: NegQuantityReason) -> TransactionLine {
    TransactionLine {
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
                price: total,
                price_changes: Vec::new(),
            }],
        },
        sub_products: None,
        cost_center: None,
        line_total: total,
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
        .map(|(l, total)| product_line(l, *total, reason))
        .collect();
    Transaction {
        transaction_lines: lines,
        transaction_total: sale.total,
    }
}

/// The payment type of one of fdmd's payment methods (sales and money in/out alike).
fn payment_type(method: PaymentMethod) -> PaymentType {
    match method {
        PaymentMethod::Cash => PaymentType::CASH,
        PaymentMethod::Card => PaymentType::CARD_UNKNOWN,
        PaymentMethod::Voucher => PaymentType::VOUCHER_OTHER,
        PaymentMethod::Transfer | PaymentMethod::Other => PaymentType::OTHER,
    }
}

fn financials(order: &Order) -> Vec<PaymentLine> {
    order
        .payments
        .iter()
        .map(|p| PaymentLine {
            id: p.method.as_str().into(),
            name: p.method.as_str().into(),
            kind: payment_type(p.method),
            provider: None,
            input_method: "MANUAL".into(),
            amount: p.amount,
            amount_type: "PAYMENT".into(),
            reference: None,
        })
        .collect()
}

fn table(order: &Order) -> Option<CostCenter> {
    order.table.as_deref().map(table_named)
}

fn table_named(t: &str) -> CostCenter {
    CostCenter {
        id: t.to_owned(),
        kind: CostCenterType::TABLE,
        reference: t.to_owned(),
        cost_center: None,
    }
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
        // A copy needs the FDM reference of the ticket it reprints: `map_copy`.
        EventType::Copy => Err(MapError::Unsupported(
            "a copy without its original's FDM reference".into(),
        )),
    }
}

/// `signSale` of a full refund: the refund's lines as [`map_order`] sends them (negative
/// quantities with `REFUND`) and `fdmRef`, an exact copy of the reference the FDM answered for
/// the sale it gives back ([FT]: a complete refund must reference the earlier transaction;
/// docs/gks2.md §6.4). Only an order that refunds an earlier ticket (`original` set) and maps
/// to `signSale` qualifies.
pub fn map_refund(
    order: &Order,
    sale: &Sale,
    original: &FdmRef,
    ctx: &PosContext,
) -> Result<Mapped, MapError> {
    if order.original.is_none() || order.event_type == EventType::Copy {
        return Err(MapError::Unsupported(
            "a full refund without the ticket it gives back".into(),
        ));
    }
    let mut mapped = map_order(order, sale, ctx)?;
    if mapped.mutation != Mutation::Sale {
        return Err(MapError::Unsupported(format!(
            "{} as a full refund",
            mapped.mutation.field()
        )));
    }
    let Value::Object(data) = &mut mapped.data else {
        return Err(MapError::Encode("SaleInput is not an object".into()));
    };
    data.insert("fdmRef".into(), encode(original)?);
    Ok(mapped)
}

/// `signCopy` of a copy (`event_type` copy, completed from its original by the restaurant
/// layer): the common fields and `original`, the `fdmRef` the FDM answered for the ticket it
/// reprints (docs/gks2.md §6.2). Never training: a copy is its own event type.
pub fn map_copy(order: &Order, original: &FdmRef, ctx: &PosContext) -> Result<Mapped, MapError> {
    if order.event_type != EventType::Copy {
        return Err(MapError::Unsupported(format!(
            "{} as a copy",
            order.event_type.as_str()
        )));
    }
    let input = CopyInput {
        base: base(order, ctx),
        fdm_ref: original.clone(),
    };
    Ok(Mapped {
        mutation: Mutation::Copy,
        training: false,
        data: encode(&input)?,
    })
}

/// The longest `reference` fdmd sends on a money in/out line (the emulator's limit on every text
/// field; a certified FDM's is not public).
pub const MAX_REFERENCE: usize = 600;

/// The `reference` of a voucher sale's money in/out lines: the codes of the vouchers sold,
/// comma-separated in the order sent, at most [`MAX_REFERENCE`] characters (checked before any
/// key is reserved, so a sale refused for it uses no POS ticket number).
pub fn voucher_reference(order: &Order) -> Result<String, MapError> {
    let reference = order
        .vouchers
        .iter()
        .map(|v| v.code.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let len = reference.chars().count();
    if len > MAX_REFERENCE {
        return Err(MapError::Encode(format!(
            "the voucher codes of one sale take {len} characters, more than the {MAX_REFERENCE} of one reference: sell fewer vouchers at a time"
        )));
    }
    Ok(reference)
}

/// `signMoneyInOut` of a voucher sale (`purpose` `voucher_sale`, docs/gks2.md §6.5): a
/// multi-purpose voucher sold is money received in advance, not turnover, so it has no lines and
/// no VAT. One `MoneyInOutLineInput` per payment received (in the order sent): its payment type,
/// the amount received, `amountType` `MONEY_IN_OUT`, and `reference` the codes of the vouchers
/// sold (comma-separated, in the order sent). Printed: `ticketMedium` `PAPER`.
pub fn map_money_in_out(order: &Order, ctx: &PosContext) -> Result<Mapped, MapError> {
    if order.purpose != Purpose::VoucherSale {
        return Err(MapError::Unsupported(format!(
            "purpose {} as a money in/out",
            order.purpose.as_str()
        )));
    }
    if order.payments.is_empty() {
        return Err(MapError::Encode(
            "a voucher sale without payments has no money in".into(),
        ));
    }
    let reference = voucher_reference(order)?;
    let lines = order
        .payments
        .iter()
        .map(|p| MoneyInOutLine {
            id: p.method.as_str().into(),
            name: p.method.as_str().into(),
            kind: payment_type(p.method),
            provider: None,
            input_method: "MANUAL".into(),
            amount: p.amount,
            amount_type: MoneyInOutLineType::MONEY_IN_OUT,
            reference: (!reference.is_empty()).then(|| reference.clone()),
            drawer: None,
        })
        .collect();
    let input = MoneyInOutInput {
        base: base(order, ctx),
        financials: lines,
    };
    Ok(Mapped {
        mutation: Mutation::MoneyInOut,
        training: order.event_type == EventType::Training,
        data: encode(&input)?,
    })
}

/// `signCostCenterChange` of a table move or merge (`purpose` `table_move` / `table_merge`):
/// `moved` are the lines registered on `order.table` (the restaurant's open-table state, in
/// order, corrections as negative lines). They leave `table` — each line negated, a negative
/// quantity with `COST_CENTER_CHANGE`, as [OD] sends it — and join `to_table` as they are (a
/// correction keeps `CORRECTION`). Nothing is printed: `ticketMedium` `NONE`, as [OD]
/// (docs/gks2.md §6.3).
pub fn map_table_change(
    order: &Order,
    moved: &[OrderLine],
    ctx: &PosContext,
) -> Result<Mapped, MapError> {
    if !matches!(order.purpose, Purpose::TableMove | Purpose::TableMerge) {
        return Err(MapError::Unsupported(format!(
            "purpose {} as a table change",
            order.purpose.as_str()
        )));
    }
    let (Some(from), Some(to)) = (&order.table, &order.to_table) else {
        return Err(MapError::Encode(
            "a table change names table and to_table".into(),
        ));
    };
    let totals: Vec<Decimal> = moved
        .iter()
        .map(|l| round_cents(l.quantity * l.unit_price))
        .collect();
    let total: Decimal = totals.iter().copied().sum();
    let joining: Vec<TransactionLine> = moved
        .iter()
        .zip(&totals)
        .map(|(l, t)| product_line(l, *t, NegQuantityReason::CORRECTION))
        .collect();
    let leaving: Vec<TransactionLine> = moved
        .iter()
        .zip(&totals)
        .map(|(l, t)| {
            let negated = OrderLine {
                quantity: -l.quantity,
                ..l.clone()
            };
            product_line(&negated, -*t, NegQuantityReason::COST_CENTER_CHANGE)
        })
        .collect();
    let mut base = base(order, ctx);
    base.ticket_medium = "NONE".into();
    let input = CostCenterChangeInput {
        base,
        transfer: Transfer {
            from: vec![TransferItem {
                cost_center: table_named(from),
                transaction: Transaction {
                    transaction_lines: leaving,
                    transaction_total: -total,
                },
            }],
            to: vec![TransferItem {
                cost_center: table_named(to),
                transaction: Transaction {
                    transaction_lines: joining,
                    transaction_total: total,
                },
            }],
        },
    };
    Ok(Mapped {
        mutation: Mutation::CostCenterChange,
        training: false,
        data: encode(&input)?,
    })
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::gks2::fdm::{Fdm, FdmSettings};
    use crate::gks2::model::EventLabel;
    use serde_json::json;

    fn ctx() -> PosContext {
        PosContext {
            pos_id: "CFDMD0000001".into(),
            pos_sw_version: "fdmd-test".into(),
            vat_no: "BE0123456749".into(),
            est_no: "2000000042".into(),
            terminal_id: "TER-1".into(),
            device_id: "till-1".into(),
            booking_period_id: "7f2c1a52-3c1e-4a55-9c59-2d0f6f0c0001".into(),
            booking_date: "2026-12-07".into(),
            language: Language::NL,
            pos_fiscal_ticket_no: 7,
            pos_date_time: chrono::Local::now()
                .format("%Y-%m-%dT%H:%M:%S%:z")
                .to_string(),
        }
    }

    fn order(json: &str) -> Order {
        Order::from_json("till-1", json.as_bytes()).unwrap()
    }

    fn fdm(dir: &std::path::Path) -> Fdm {
        Fdm::open(
            dir,
            FdmSettings {
                fdm_id: "FDMUNIT0001".into(),
                device_id: "dev".into(),
                buffer_capacity: 100,
                clock_tolerance_s: 300,
            },
        )
        .unwrap()
    }

    fn moved() -> Vec<OrderLine> {
        vec![
            OrderLine::item("Water", Decimal::TWO, Decimal::new(300, 2), VatLetter::A),
            OrderLine::item("Soep", Decimal::ONE, Decimal::new(650, 2), VatLetter::C),
            OrderLine::item(
                "Water",
                Decimal::NEGATIVE_ONE,
                Decimal::new(300, 2),
                VatLetter::A,
            ),
            // A discount: positive quantity, negative price.
            OrderLine::item("Korting", Decimal::ONE, Decimal::new(-50, 2), VatLetter::A),
        ]
    }

    #[test]
    fn a_voucher_sale_is_money_in_one_line_per_payment_naming_the_vouchers() {
        let o = order(
            r#"{"request_id": "v-1", "operator": "85073003328", "event_type": "normal",
                "purpose": "voucher_sale",
                "vouchers": [{"code": "GIFT-0001", "amount": "50.00"}, {"code": "GIFT-0002", "amount": "25.00"}],
                "payments": [{"method": "card", "amount": "60.00"}, {"method": "cash", "amount": "15.00"}]}"#,
        );
        let m = map_money_in_out(&o, &ctx()).unwrap();
        assert_eq!((m.mutation, m.training), (Mutation::MoneyInOut, false));
        let d = &m.data;
        assert_eq!(d["ticketMedium"], "PAPER");
        assert_eq!(d["employeeId"], "85073003328");
        assert_eq!(
            d["financials"],
            json!([
                {"id": "card", "name": "card", "type": "CARD_UNKNOWN", "inputMethod": "MANUAL",
                 "amount": 60, "amountType": "MONEY_IN_OUT", "reference": "GIFT-0001,GIFT-0002"},
                {"id": "cash", "name": "cash", "type": "CASH", "inputMethod": "MANUAL",
                 "amount": 15, "amountType": "MONEY_IN_OUT", "reference": "GIFT-0001,GIFT-0002"}
            ])
        );
        assert!(d.get("transaction").is_none(), "no lines, no VAT: {d}");
        // Only a voucher sale maps so.
        let sale = order(
            r#"{"request_id": "s-1", "operator": "85073003328", "event_type": "normal",
                "lines": [{"description": "Cola", "quantity": 1, "unit_price": "2.20", "vat": "A"}]}"#,
        );
        assert!(matches!(
            map_money_in_out(&sale, &ctx()),
            Err(MapError::Unsupported(_))
        ));
        // The emulator reads it as a typed MoneyInOutInput and signs it F 1/1, without VAT.
        let dir = tempfile::tempdir().unwrap();
        let mut fdm = fdm(dir.path());
        let r = fdm
            .sign(m.mutation, &m.data, false, chrono::Local::now())
            .unwrap();
        assert_eq!(r.fdm_ref.event_label, EventLabel::F);
        assert_eq!((r.fdm_ref.event_counter, r.fdm_ref.total_counter), (1, 1));
        assert!(r.vat_calc.is_none() && r.short_signature.is_none(), "{r:?}");
        // A line of 0, no lines, an unknown amountType, a missing type: refused, not counted.
        let with = |f: &dyn Fn(&mut Value)| {
            let mut d = m.data.clone();
            d["posFiscalTicketNo"] = json!(8);
            f(&mut d);
            d
        };
        for (bad, code, field) in [
            (
                with(&|d| d["financials"][1]["amount"] = json!(0)),
                "BAD_USER_INPUT",
                "data.financials[1].amount",
            ),
            (
                with(&|d| d["financials"] = json!([])),
                "BAD_USER_INPUT",
                "data.financials",
            ),
            (
                with(&|d| d["financials"][0]["amountType"] = json!("PAYMENT")),
                "BAD_USER_INPUT",
                "data.financials[0].amountType",
            ),
            (
                with(&|d| {
                    d["financials"][0].as_object_mut().unwrap().remove("type");
                }),
                "BAD_USER_INPUT",
                "data.financials[0]",
            ),
        ] {
            let e = fdm
                .sign(Mutation::MoneyInOut, &bad, false, chrono::Local::now())
                .unwrap_err();
            assert_eq!(e[0].extensions.code, code, "{e:?}");
            assert!(
                e[0].message
                    .contains(&format!("MoneyInOutInput at {field}")),
                "{e:?}"
            );
        }
        let again = fdm
            .sign(m.mutation, &with(&|_| {}), false, chrono::Local::now())
            .unwrap();
        assert_eq!(
            again.fdm_ref.event_counter, 2,
            "the refusals were not counted"
        );
        // Ten codes of 64 characters are more than one reference holds.
        let many: Vec<String> = (0..10)
            .map(|i| format!(r#"{{"code": "{}{i}", "amount": "1.00"}}"#, "V".repeat(63)))
            .collect();
        let long = order(&format!(
            r#"{{"request_id": "v-2", "operator": "85073003328", "event_type": "normal",
                "purpose": "voucher_sale", "vouchers": [{}],
                "payments": [{{"method": "card", "amount": "10.00"}}]}}"#,
            many.join(",")
        ));
        assert!(matches!(voucher_reference(&long), Err(MapError::Encode(_))));
        assert!(map_money_in_out(&long, &ctx()).is_err());
    }

    #[test]
    fn a_table_move_leaves_its_table_negated_and_joins_the_other_as_registered() {
        let o = order(
            r#"{"request_id": "mv-1", "operator": "85073003328", "event_type": "normal",
                "purpose": "table_move", "table": "7", "to_table": "9"}"#,
        );
        let m = map_table_change(&o, &moved(), &ctx()).unwrap();
        assert_eq!(
            (m.mutation, m.training),
            (Mutation::CostCenterChange, false)
        );
        let d = &m.data;
        assert_eq!(d["ticketMedium"], "NONE");
        assert_eq!(d["employeeId"], "85073003328");
        assert_eq!(d["posFiscalTicketNo"], 7);
        // One object per side (the form Odoo sends; a list-typed schema coerces it).
        let (from, to) = (&d["transfer"]["from"], &d["transfer"]["to"]);
        assert!(from.is_object() && to.is_object(), "{d}");
        assert_eq!(
            from["costCenter"],
            json!({"id": "7", "type": "TABLE", "reference": "7"})
        );
        assert_eq!(to["costCenter"]["id"], "9");
        assert_eq!(to["transaction"]["transactionTotal"], json!(9));
        assert_eq!(from["transaction"]["transactionTotal"], json!(-9));
        let product = |side: &Value, i: usize| side["transaction"]["transactionLines"][i].clone();
        // Joining: as registered; the correction keeps its reason.
        assert_eq!(product(to, 0)["mainProduct"]["quantity"], json!(2));
        assert!(
            product(to, 0)["mainProduct"]
                .get("negQuantityReason")
                .is_none()
        );
        assert_eq!(
            product(to, 2)["mainProduct"]["negQuantityReason"],
            "CORRECTION"
        );
        // Leaving: quantities, totals and VAT prices (the line's price) negated, the unit price
        // as it is.
        assert_eq!(product(from, 0)["mainProduct"]["quantity"], json!(-2));
        assert_eq!(
            product(from, 0)["mainProduct"]["negQuantityReason"],
            "COST_CENTER_CHANGE"
        );
        assert_eq!(
            product(from, 0)["mainProduct"]["vats"][0]["price"],
            json!(-6)
        );
        assert_eq!(product(from, 0)["mainProduct"]["unitPrice"], json!(3));
        assert_eq!(product(to, 0)["mainProduct"]["vats"][0]["price"], json!(6));
        assert_eq!(product(from, 0)["lineTotal"], json!(-6));
        assert_eq!(product(from, 2)["mainProduct"]["quantity"], json!(1));
        assert!(
            product(from, 2)["mainProduct"]
                .get("negQuantityReason")
                .is_none()
        );
        assert_eq!(product(from, 3)["lineTotal"], json!(0.5));
        assert_eq!(
            product(from, 3)["mainProduct"]["negQuantityReason"],
            "COST_CENTER_CHANGE"
        );
        // fdmd's own emulator takes it as it is.
        let dir = tempfile::tempdir().unwrap();
        let r = fdm(dir.path())
            .sign(m.mutation, &m.data, false, chrono::Local::now())
            .unwrap();
        assert_eq!(
            (r.fdm_ref.event_label, r.fdm_ref.event_counter),
            (EventLabel::P, 1)
        );
    }

    #[test]
    fn a_copy_names_its_originals_fdm_reference_and_only_a_copy_maps_so() {
        let original = FdmRef {
            fdm_id: "FDMUNIT0001".into(),
            fdm_date_time: "2026-12-07T19:00:00+01:00".into(),
            event_label: EventLabel::N,
            event_counter: 1,
            total_counter: 1,
        };
        let copy = order(
            r#"{"request_id": "c-1", "operator": "85073003328", "event_type": "copy",
                "original": {"request_id": "s-1"}}"#,
        );
        let m = map_copy(&copy, &original, &ctx()).unwrap();
        assert_eq!((m.mutation, m.training), (Mutation::Copy, false));
        assert_eq!(
            m.data["fdmRef"],
            json!({"fdmId": "FDMUNIT0001", "fdmDateTime": "2026-12-07T19:00:00+01:00",
                   "eventLabel": "N", "eventCounter": 1, "totalCounter": 1})
        );
        assert_eq!(m.data["ticketMedium"], "PAPER");
        // No lines, no payments: the FDM knows the original by its reference.
        assert!(m.data.get("transaction").is_none() && m.data.get("financials").is_none());
        // Without the reference a copy has no GKS 2.0 form; a sale is not a copy.
        let sale = Sale::compute(&copy).unwrap();
        assert!(matches!(
            map_order(&copy, &sale, &ctx()),
            Err(MapError::Unsupported(_))
        ));
        let normal = order(
            r#"{"request_id": "s-1", "operator": "85073003328", "event_type": "normal",
                "lines": [{"description": "Cola", "quantity": 1, "unit_price": "2.20", "vat": "A"}]}"#,
        );
        assert!(map_copy(&normal, &original, &ctx()).is_err());
        // fdmd's own emulator refuses a copy of an event it never signed, and signs one of an
        // event it did.
        let dir = tempfile::tempdir().unwrap();
        let mut fdm = fdm(dir.path());
        let e = fdm
            .sign(m.mutation, &m.data, false, chrono::Local::now())
            .unwrap_err();
        assert_eq!(e[0].extensions.code, "FDM_REF_NOT_FOUND");
        let sale_m = map_order(&normal, &Sale::compute(&normal).unwrap(), &ctx()).unwrap();
        let signed = fdm
            .sign(sale_m.mutation, &sale_m.data, false, chrono::Local::now())
            .unwrap();
        let mut again = ctx();
        again.pos_fiscal_ticket_no = 8;
        let m = map_copy(&copy, &signed.fdm_ref, &again).unwrap();
        let r = fdm
            .sign(m.mutation, &m.data, false, chrono::Local::now())
            .unwrap();
        assert_eq!(
            (r.fdm_ref.event_label, r.fdm_ref.event_counter),
            (EventLabel::C, 1)
        );
    }

    #[test]
    fn a_full_refund_carries_its_originals_fdm_reference_and_refund_lines() {
        let dir = tempfile::tempdir().unwrap();
        let mut fdm = fdm(dir.path());
        let normal = order(
            r#"{"request_id": "s-1", "operator": "85073003328", "event_type": "normal",
                "lines": [{"description": "Cola", "quantity": 2, "unit_price": "2.20", "vat": "A"}]}"#,
        );
        // Not a refund: no original to name.
        let sale = Sale::compute(&normal).unwrap();
        let signed = fdm
            .sign(
                Mutation::Sale,
                &map_order(&normal, &sale, &ctx()).unwrap().data,
                false,
                chrono::Local::now(),
            )
            .unwrap();
        assert!(matches!(
            map_refund(&normal, &sale, &signed.fdm_ref, &ctx()),
            Err(MapError::Unsupported(_))
        ));
        let refund = order(
            r#"{"request_id": "r-1", "operator": "85073003328", "event_type": "normal",
                "original": {"request_id": "s-1"},
                "lines": [{"description": "Cola", "quantity": -2, "unit_price": "2.20", "vat": "A"}]}"#,
        );
        let sale = Sale::compute(&refund).unwrap();
        let mut again = ctx();
        again.pos_fiscal_ticket_no = 8;
        let m = map_refund(&refund, &sale, &signed.fdm_ref, &again).unwrap();
        assert_eq!((m.mutation, m.training), (Mutation::Sale, false));
        assert_eq!(
            m.data["fdmRef"],
            serde_json::to_value(&signed.fdm_ref).unwrap()
        );
        let product = &m.data["transaction"]["transactionLines"][0]["mainProduct"];
        assert_eq!(product["negQuantityReason"], "REFUND");
        assert_eq!(m.data["transaction"]["transactionTotal"], json!(-4.4));
        // Without a reference (a partial refund) the same order maps without fdmRef.
        assert!(
            map_order(&refund, &sale, &again)
                .unwrap()
                .data
                .get("fdmRef")
                .is_none()
        );
        let r = fdm
            .sign(m.mutation, &m.data, false, chrono::Local::now())
            .unwrap();
        assert_eq!(
            (r.fdm_ref.event_label, r.fdm_ref.event_counter),
            (EventLabel::N, 2)
        );
    }
}
