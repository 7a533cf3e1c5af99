//! Registration: from an order (or a pre-computed event) to a durable, signed record and the
//! receipt the register gets back. Transports (MQTT, HTTP, plugins) call this; nothing else
//! writes fiscal events.

use crate::fiscal::money::format_amount;
use crate::fiscal::order::Order;
use crate::fiscal::order::vouchers_json;
use crate::fiscal::sale::check_payments;
use crate::fiscal::{EventType, FdmCode, PrecomputedEvent, Sale, ValidationError};
use crate::journal::canonical::to_canonical;
use crate::journal::record::{RecordKind, sha256_hex, short_signature};
use crate::journal::{AppendError, Appended, Entry, Journal, RequestKey, Sealed};
use crate::restaurant::Prepared;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// Which registers share a ticket-number series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeriesScope {
    /// Each register numbers its own tickets.
    #[default]
    PerRegister,
    /// All registers of the establishment share one series.
    Establishment,
    /// Named groups of registers share a series each (`[numbering.groups]`); a register in no
    /// group numbers its own tickets.
    Group,
}

impl SeriesScope {
    /// The name reports carry in `scope`.
    pub fn as_str(self) -> &'static str {
        match self {
            SeriesScope::PerRegister => "register",
            SeriesScope::Establishment => "establishment",
            SeriesScope::Group => "group",
        }
    }
}

/// How ticket numbers are given (Royal Decree of 13 Dec 2022: 4 to 8 positions, uninterrupted).
/// Each event type (N, P, T, C) has its own series within the scope; the reference leaves open
/// whether pro formas share the VAT tickets' series (see docs/journal-format.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Numbering {
    /// Who shares a series.
    pub scope: SeriesScope,
    /// Positions printed (4–8).
    pub digits: u8,
    /// With [`SeriesScope::Group`]: each grouped register's group name.
    pub groups: BTreeMap<String, String>,
}

impl Default for Numbering {
    fn default() -> Self {
        Numbering {
            scope: SeriesScope::PerRegister,
            digits: 6,
            groups: BTreeMap::new(),
        }
    }
}

impl Numbering {
    /// The part of a series key before the event or report type: `register/ID`, `group/NAME`
    /// or `establishment` (also for a report that names no register).
    pub fn series_base(&self, register: Option<&str>) -> String {
        match (self.scope, register) {
            (SeriesScope::Establishment, _) | (_, None) => "establishment".to_owned(),
            (SeriesScope::Group, Some(r)) => match self.groups.get(r) {
                Some(group) => format!("group/{group}"),
                None => format!("register/{r}"),
            },
            (SeriesScope::PerRegister, Some(r)) => format!("register/{r}"),
        }
    }

    /// The series key an event of `event_type` from `register` takes its number from.
    pub fn series_for(&self, register: &str, event_type: EventType) -> String {
        format!(
            "{}/{}",
            self.series_base(Some(register)),
            event_type.letter()
        )
    }

    /// The registers that share `register`'s series; `None` when every register does.
    pub fn members(&self, register: Option<&str>) -> Option<BTreeSet<String>> {
        match (self.scope, register) {
            (SeriesScope::Establishment, _) | (_, None) => None,
            (SeriesScope::Group, Some(r)) => match self.groups.get(r) {
                Some(group) => Some(
                    self.groups
                        .iter()
                        .filter(|(_, g)| *g == group)
                        .map(|(member, _)| member.clone())
                        .collect(),
                ),
                None => Some(BTreeSet::from([r.to_owned()])),
            },
            (SeriesScope::PerRegister, Some(r)) => Some(BTreeSet::from([r.to_owned()])),
        }
    }

    /// The ticket number as printed: the last `digits` digits, zero-padded.
    pub fn display(&self, number: u64) -> String {
        let digits = u32::from(self.digits.clamp(4, 8));
        let modulus = 10u64.pow(digits);
        format!("{:0width$}", number % modulus, width = digits as usize)
    }
}

/// The answer to one order: a signed receipt, or an error. Serialises to the receipt JSON of
/// `docs/mqtt.md`.
#[derive(Debug, Clone, PartialEq)]
pub enum Receipt {
    /// Durable and signed (codes 000, 101, 102).
    Signed(Value),
    /// Not registered; nothing was journaled.
    Error {
        /// The request id, when it could be read.
        request_id: Option<String>,
        /// FDM code.
        code: FdmCode,
        /// What went wrong.
        message: String,
        /// The field at fault, when one is.
        field: Option<String>,
        /// Every problem, when validation found several.
        problems: Vec<Value>,
    },
}

impl Receipt {
    /// The receipt as JSON.
    pub fn to_json(&self) -> Value {
        match self {
            Receipt::Signed(v) => v.clone(),
            Receipt::Error {
                request_id,
                code,
                message,
                field,
                problems,
            } => {
                let mut v = json!({
                    "request_id": request_id,
                    "status": "error",
                    "code": code.number(),
                    "message": message,
                });
                if let Some(f) = field {
                    v["field"] = json!(f);
                }
                if problems.len() > 1 {
                    v["problems"] = Value::Array(problems.clone());
                }
                v
            }
        }
    }

    /// The FDM code.
    pub fn code(&self) -> FdmCode {
        match self {
            Receipt::Signed(v) => v
                .get("code")
                .and_then(Value::as_u64)
                .and_then(|n| FdmCode::from_number(n as u16))
                .unwrap_or(FdmCode::Ok),
            Receipt::Error { code, .. } => *code,
        }
    }

    /// An order refused by a rule on the state (restaurant): code 207 with the field at fault.
    pub fn refused(request_id: Option<String>, field: &str, message: &str) -> Receipt {
        Receipt::Error {
            request_id,
            code: FdmCode::InvalidData,
            message: format!("{field}: {message}"),
            field: Some(field.to_owned()),
            problems: Vec::new(),
        }
    }

    /// An order that failed validation: code 207 with every problem.
    pub fn invalid(request_id: Option<String>, e: &ValidationError) -> Receipt {
        let first = e.first();
        Receipt::Error {
            request_id,
            code: FdmCode::InvalidData,
            message: e.to_string(),
            field: (!first.field.is_empty()).then(|| first.field.clone()),
            problems: e
                .problems
                .iter()
                .map(|p| json!({"field": p.field, "message": p.message}))
                .collect(),
        }
    }

    fn failed(request_id: Option<String>, e: &AppendError) -> Receipt {
        let field = matches!(e, AppendError::Conflict { .. }).then(|| "request_id".to_owned());
        Receipt::Error {
            request_id,
            code: e.code(),
            message: e.to_string(),
            field,
            problems: Vec::new(),
        }
    }
}

/// Best effort to read `request_id` from a payload that failed validation, so the error
/// receipt can still be matched by the register.
pub fn sniff_request_id(bytes: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(bytes).ok()?;
    let id = v.get("request_id")?.as_str()?;
    crate::fiscal::order::is_valid_id(id, 64).then(|| id.to_owned())
}

/// Registers orders and pre-computed events in the journal.
#[derive(Clone)]
pub struct Registrar {
    journal: Journal,
    numbering: Numbering,
    /// With `[signer] backend = "gks2"`: the FDM that signs each fiscal event first.
    gks2: Option<std::sync::Arc<crate::gks2::backend::Backend>>,
    /// With `[signer] backend = "fdm-v1"`: the FDM v1 box that signs each fiscal event first.
    fdm_v1: Option<std::sync::Arc<crate::fdm_v1::backend::Backend>>,
}

impl Registrar {
    /// A registrar writing to `journal`.
    pub fn new(journal: Journal, numbering: Numbering) -> Self {
        Registrar {
            journal,
            numbering,
            gks2: None,
            fdm_v1: None,
        }
    }

    /// The GKS 2.0 FDM that signs fiscal events and reports first, if any (docs/gks2.md §8).
    pub fn gks2(&self) -> Option<&std::sync::Arc<crate::gks2::backend::Backend>> {
        self.gks2.as_ref()
    }

    /// Has a GKS 2.0 FDM sign every fiscal event before it is journaled (docs/gks2.md §8).
    pub fn with_gks2(mut self, backend: std::sync::Arc<crate::gks2::backend::Backend>) -> Self {
        self.gks2 = Some(backend);
        self
    }

    /// Has an FDM v1 box sign every fiscal event before it is journaled
    /// (docs/fdm-v1-backend.md).
    pub fn with_fdm_v1(mut self, backend: std::sync::Arc<crate::fdm_v1::backend::Backend>) -> Self {
        self.fdm_v1 = Some(backend);
        self
    }

    /// The FDM v1 box fdmd signs with, if any (its PIN goes to it).
    pub fn fdm_v1(&self) -> Option<&std::sync::Arc<crate::fdm_v1::backend::Backend>> {
        self.fdm_v1.as_ref()
    }

    /// The journal.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// The numbering rules.
    pub fn numbering(&self) -> &Numbering {
        &self.numbering
    }

    /// Validates and computes an order into a sealed journal entry (its body encoded), or the
    /// error receipt, as [`Registrar::register_prepared`] would journal it when the restaurant
    /// rules add nothing. For benchmarks of the journal alone; orders are registered through
    /// `App::handle_order`.
    pub fn prepare_order(&self, register: &str, bytes: &[u8]) -> Result<Sealed, Receipt> {
        let order = Order::from_json(register, bytes)
            .map_err(|e| Receipt::invalid(sniff_request_id(bytes), &e))?;
        let prepared = Prepared {
            kind: RecordKind::FiscalEvent,
            order: order.clone(),
            extra: Map::new(),
        };
        self.entry_for(&order, prepared).map(Entry::seal)
    }

    /// Journals an order the restaurant layer has checked and completed. The idempotency digest
    /// is the one of the order as `received`, so a resend is recognised whatever the state.
    /// Gives back the durable record too, so the caller can advance its state.
    pub async fn register_prepared(
        &self,
        received: &Order,
        prepared: Prepared,
    ) -> (Receipt, Option<Appended>) {
        match self.append_prepared(received, prepared).await {
            Ok(a) => (Receipt::Signed(self.receipt_json(&a)), Some(a)),
            Err(receipt) => (receipt, None),
        }
    }

    /// Like [`Registrar::register_prepared`], for the order path: `durable` sees the record
    /// first (the restaurant state and the reports advance from it), then the record's body
    /// moves into the receipt instead of being copied. Gives back whether the record is the
    /// stored answer to an earlier request (code 102), when one was journaled.
    pub async fn register_prepared_with(
        &self,
        received: &Order,
        prepared: Prepared,
        durable: impl FnOnce(&Appended),
    ) -> (Receipt, Option<bool>) {
        match self.append_prepared(received, prepared).await {
            Ok(a) => {
                durable(&a);
                let duplicate = a.duplicate;
                (Receipt::Signed(self.into_receipt(a)), Some(duplicate))
            }
            Err(receipt) => (receipt, None),
        }
    }

    /// Journals a prepared order (signed by the FDM first, when one signs): the durable record,
    /// or the error receipt.
    async fn append_prepared(
        &self,
        received: &Order,
        mut prepared: Prepared,
    ) -> Result<Appended, Receipt> {
        // GKS 2.0 or FDM v1: the FDM signs the event first; its answer goes into the record. A
        // request already journaled is answered from the journal (the FDM is not asked again).
        // A GKS 2.0 FDM also signs table moves and merges (signCostCenterChange) and voucher
        // sales (signMoneyInOut).
        let signs = match prepared.kind {
            RecordKind::FiscalEvent => self.gks2.is_some() || self.fdm_v1.is_some(),
            RecordKind::TableChange | RecordKind::MoneyMovement => self.gks2.is_some(),
            _ => false,
        };
        if signs
            && self
                .stored(&received.register, &received.request_id)
                .await
                .is_none()
        {
            let signed = if let Some(fdm) = &self.gks2 {
                self.gks2_member(fdm, received, &prepared)
                    .await
                    .map(|m| ("gks2", m))
            } else if let Some(fdm) = &self.fdm_v1 {
                let id = Some(received.request_id.clone());
                match Sale::compute(&prepared.order) {
                    Err(e) => Err(Receipt::invalid(id, &e)),
                    Ok(sale) => fdm
                        .sign(&prepared.order, &sale)
                        .await
                        .map(|m| ("fdm_v1", m))
                        .map_err(|r| Self::refused(received, r.code, r.message)),
                }
            } else {
                Err(Self::refused(
                    received,
                    FdmCode::NotOperational,
                    "no FDM backend is set up".to_owned(),
                ))
            };
            match signed {
                Ok((name, member)) => {
                    prepared.extra.insert(name.into(), member);
                }
                Err(receipt) => return Err(receipt),
            }
        }
        let entry = self.entry_for(received, prepared)?;
        self.journal
            .append(entry)
            .await
            .map_err(|e| Receipt::failed(Some(received.request_id.clone()), &e))
    }

    /// The error receipt of an event the FDM did not sign.
    fn refused(received: &Order, code: FdmCode, message: String) -> Receipt {
        Receipt::Error {
            request_id: Some(received.request_id.clone()),
            code,
            message,
            field: None,
            problems: Vec::new(),
        }
    }

    /// Has the GKS 2.0 FDM sign a prepared event (docs/gks2.md §6): a copy with the FDM
    /// reference of the ticket it reprints (read from the original's record), a table move or
    /// merge with the lines it moves (the prepared order's lines), any other fiscal event with
    /// its computed ticket. Answers the `gks2` member of the record, or the error receipt.
    async fn gks2_member(
        &self,
        fdm: &crate::gks2::backend::Backend,
        received: &Order,
        prepared: &Prepared,
    ) -> Result<Value, Receipt> {
        let order = &prepared.order;
        let refused = |r: crate::gks2::backend::Refusal| Self::refused(received, r.code, r.message);
        if prepared.kind == RecordKind::TableChange {
            return fdm
                .sign_table_change(order, &order.lines)
                .await
                .map_err(refused);
        }
        if prepared.kind == RecordKind::MoneyMovement {
            // Checked as the journal will before the FDM is asked (docs/gks2.md §6.5).
            let total: rust_decimal::Decimal = order.vouchers.iter().map(|v| v.amount).sum();
            check_payments(order, total)
                .map_err(|e| Receipt::invalid(Some(received.request_id.clone()), &e))?;
            return fdm.sign_money_in_out(order).await.map_err(refused);
        }
        // Computed before the FDM is asked, a copy's too: an event the journal would refuse is
        // never signed.
        let sale = Sale::compute(order)
            .map_err(|e| Receipt::invalid(Some(received.request_id.clone()), &e))?;
        if order.event_type == EventType::Copy {
            let original = match &order.original {
                Some(r) => self.stored(&r.register, &r.request_id).await,
                None => None,
            };
            let Some(fdm_ref) = original.as_ref().and_then(|o| {
                serde_json::from_value::<crate::gks2::model::FdmRef>(
                    o.body.get("gks2")?.get("fdmRef")?.clone(),
                )
                .ok()
            }) else {
                return Err(Self::refused(
                    received,
                    FdmCode::InvalidData,
                    "the original ticket was not signed by a GKS 2.0 FDM: its copy cannot be signed (signCopy needs the original's fdmRef)".into(),
                ));
            };
            return fdm.sign_copy(order, &fdm_ref).await.map_err(refused);
        }
        let refunded = if prepared.extra.contains_key("refund_of") {
            self.fully_refunded(order, &sale).await
        } else {
            None
        };
        fdm.sign(order, &sale, refunded.as_ref())
            .await
            .map_err(refused)
    }

    /// The FDM reference of the sale a refund gives back, when the refund is a full one — it
    /// gives back the original's whole total, so nothing was refunded before (the restaurant
    /// layer refuses a refund beyond what is left) — and the original was signed by a GKS 2.0
    /// FDM (docs/gks2.md §6.4). `None` for a partial refund, or an original journaled without an
    /// FDM: signed without `fdmRef`, as before.
    async fn fully_refunded(
        &self,
        order: &Order,
        sale: &Sale,
    ) -> Option<crate::gks2::model::FdmRef> {
        let r = order.original.as_ref()?;
        let original = self.stored(&r.register, &r.request_id).await?;
        let total: rust_decimal::Decimal = original.body.get("total")?.as_str()?.parse().ok()?;
        if total.is_zero() || sale.total != -total {
            return None;
        }
        serde_json::from_value(original.body.get("gks2")?.get("fdmRef")?.clone()).ok()
    }

    fn entry_for(&self, received: &Order, prepared: Prepared) -> Result<Entry, Receipt> {
        let id = || Some(received.request_id.clone());
        let digest = request_digest(received).map_err(|e| Receipt::failed(id(), &e))?;
        let key = Some(RequestKey {
            register: received.register.clone(),
            request_id: received.request_id.clone(),
            digest,
        });
        let order = &prepared.order;
        match prepared.kind {
            RecordKind::FiscalEvent => {
                let sale = Sale::compute(order).map_err(|e| Receipt::invalid(id(), &e))?;
                let mut body = sale.journal_body(order);
                body.extend(prepared.extra);
                Ok(Entry {
                    kind: RecordKind::FiscalEvent,
                    key,
                    counters: Some(sale.label),
                    series: Some(self.numbering.series_for(&order.register, order.event_type)),
                    body,
                })
            }
            RecordKind::MoneyMovement => {
                let total: rust_decimal::Decimal = order.vouchers.iter().map(|v| v.amount).sum();
                let rounding =
                    check_payments(order, total).map_err(|e| Receipt::invalid(id(), &e))?;
                let mut body = Map::new();
                body.insert("type".into(), json!("voucher_sale"));
                body.insert("operator".into(), json!(order.operator));
                body.insert("vouchers".into(), vouchers_json(&order.vouchers));
                body.insert("total".into(), json!(format_amount(total)));
                body.insert(
                    "payments".into(),
                    Value::Array(
                        order
                            .payments
                            .iter()
                            .map(|p| json!({"method": p.method.as_str(), "amount": format_amount(p.amount)}))
                            .collect(),
                    ),
                );
                body.insert("cash_rounding".into(), json!(format_amount(rounding)));
                body.insert("pos_time".into(), json!(order.pos_time));
                body.extend(prepared.extra);
                Ok(Entry {
                    kind: RecordKind::MoneyMovement,
                    key,
                    counters: None,
                    series: None,
                    body,
                })
            }
            kind => Ok(Entry {
                kind,
                key,
                counters: None,
                series: None,
                body: prepared.extra,
            }),
        }
    }

    /// The answer to a resend of `order` that was journaled before: its stored receipt (code
    /// 102), or a conflict when the request id was used for other content.
    pub fn resend_answer(&self, order: &Order, stored: &Appended) -> Receipt {
        let id = Some(order.request_id.clone());
        match request_digest(order) {
            Ok(d) if stored.body.get("request_digest").and_then(Value::as_str) == Some(&d) => {
                Receipt::Signed(self.receipt_json(stored))
            }
            Ok(_) => Receipt::failed(
                id,
                &AppendError::Conflict {
                    request_id: order.request_id.clone(),
                },
            ),
            Err(e) => Receipt::failed(id, &e),
        }
    }

    /// The stored record of an earlier request, if any (read-only lookup).
    pub async fn stored(&self, register: &str, request_id: &str) -> Option<Appended> {
        let journal = self.journal.clone();
        let (reg, id) = (register.to_owned(), request_id.to_owned());
        tokio::task::spawn_blocking(move || journal.find_request(&reg, &id))
            .await
            .ok()
            .and_then(Result::ok)
            .flatten()
    }

    /// Journals a pre-computed event (FDM v1 `H`): no lines, the POS's own ticket number.
    pub async fn register_precomputed(&self, event: &PrecomputedEvent) -> Receipt {
        self.register_precomputed_appended(event).await.0
    }

    /// Like [`Registrar::register_precomputed`], and gives back the durable record too, so the
    /// caller can advance its state.
    pub async fn register_precomputed_appended(
        &self,
        event: &PrecomputedEvent,
    ) -> (Receipt, Option<Appended>) {
        if let Err(e) = event.validate() {
            return (Receipt::invalid(Some(event.request_id.clone()), &e), None);
        }
        // Events a POS computed itself have no GKS 2.0 form yet: with a GKS 2.0 FDM they are
        // refused rather than journaled without its signature (docs/gks2.md §8).
        if self.gks2.is_some() {
            return (
                Receipt::Error {
                    request_id: Some(event.request_id.clone()),
                    code: FdmCode::InvalidData,
                    message: "pre-computed events are not signed by a GKS 2.0 FDM yet; with [signer] backend = \"gks2\" they are refused".into(),
                    field: None,
                    problems: Vec::new(),
                },
                None,
            );
        }
        // An event a POS computed itself carries no lines to hash nor a sale to check: with an
        // FDM v1 box as signer it is refused rather than journaled without the box's signature
        // (docs/fdm-v1-backend.md §3).
        if self.fdm_v1.is_some() {
            return (
                Receipt::Error {
                    request_id: Some(event.request_id.clone()),
                    code: FdmCode::InvalidData,
                    message: "pre-computed events are not sent to an FDM v1 box; with [signer] backend = \"fdm-v1\" they are refused".into(),
                    field: None,
                    problems: Vec::new(),
                },
                None,
            );
        }
        let body = event.journal_body();
        let digest = match digest_of(&Value::Object(body.clone())) {
            Ok(d) => d,
            Err(e) => return (Receipt::failed(Some(event.request_id.clone()), &e), None),
        };
        let entry = Entry {
            kind: RecordKind::FiscalEvent,
            key: Some(RequestKey {
                register: event.register.clone(),
                request_id: event.request_id.clone(),
                digest,
            }),
            counters: Some(event.label),
            series: None,
            body,
        };
        match self.journal.append(entry).await {
            Ok(appended) => (
                Receipt::Signed(self.receipt_json(&appended)),
                Some(appended),
            ),
            Err(e) => (Receipt::failed(Some(event.request_id.clone()), &e), None),
        }
    }

    /// The signed receipt of a durable fiscal record.
    pub fn receipt_json(&self, a: &Appended) -> Value {
        receipt_of(&self.numbering, a, |k| a.body.get(k).cloned())
    }

    /// [`Registrar::receipt_json`] of a record the caller is done with: the body's members move
    /// into the receipt instead of being copied (the same receipt).
    pub fn into_receipt(&self, mut a: Appended) -> Value {
        let mut body = std::mem::take(&mut a.body);
        receipt_of(&self.numbering, &a, |k| body.remove(k))
    }
}

/// The receipt of `a`, its body's members read through `take` (each member once at most).
fn receipt_of(
    numbering: &Numbering,
    a: &Appended,
    mut take: impl FnMut(&str) -> Option<Value>,
) -> Value {
    let mut get = |k: &str| take(k).unwrap_or(Value::Null);
    let request_id = get("request_id");
    let register = get("register");
    let ticket_number = match get("ticket_number").as_u64() {
        Some(n) => json!(numbering.display(n)),
        None => get("pos_ticket_number"),
    };
    let code = a.code();
    let mut receipt = Map::new();
    for (k, v) in [
        ("request_id", request_id),
        ("status", json!("signed")),
        ("code", json!(code.number())),
        ("register", register),
        ("ticket_number", ticket_number),
        ("label", get("label")),
        ("event_counter", get("event_counter")),
        ("total_counter", get("total_counter")),
        ("fdm_id", json!(a.fdm_id)),
        ("vsc_id", json!(a.signer_id)),
        ("fdm_time", json!(a.time)),
        ("total", get("total")),
        ("vat", get("vat")),
        ("plu_hash", get("plu_hash")),
        ("signed_digest", json!(hex::encode(a.hash))),
        ("signature", json!(hex::encode(&a.signature))),
        ("short_signature", json!(short_signature(&a.signature))),
        ("journal_seq", json!(a.seq)),
    ] {
        receipt.insert(k.into(), v);
    }
    // The GKS 2.0 FDM's answer, when an FDM signed the event (docs/gks2.md §8).
    if let Some(g) = take("gks2") {
        receipt.insert("gks2".into(), g);
    }
    // The FDM v1 box's answer, when a box signed the event (docs/fdm-v1-backend.md).
    if let Some(f) = take("fdm_v1") {
        receipt.insert("fdm_v1".into(), f);
    }
    if code != FdmCode::Ok {
        receipt.insert(
                "message".into(),
                json!(match code {
                    FdmCode::AlreadyHandled =>
                        "already handled: this is the stored receipt of the first request",
                    FdmCode::StorageNearlyFull => "journal storage nearly full (90% of its cap, or little free space on its file system)",
                    _ => "",
                }),
            );
    }
    if let Some(rounding) = take("cash_rounding") {
        receipt.insert("cash_rounding".into(), rounding);
    }
    if a.kind != RecordKind::FiscalEvent {
        receipt.insert("record_kind".into(), json!(a.kind.as_str()));
    }
    // What a handheld needs to show or print the ticket (restaurant members when present).
    for k in RECEIPT_EXTRAS {
        if let Some(v) = take(k)
            && !v.is_null()
        {
            receipt.insert(k.into(), v);
        }
    }
    Value::Object(receipt)
}

/// The body members a receipt carries when present and not null (what a handheld needs to show
/// or print the ticket, restaurant members included).
const RECEIPT_EXTRAS: [&str; 19] = [
    "operator",
    "table",
    "pos_time",
    "lines",
    "payments",
    "purpose",
    "table_role",
    "copy_of",
    "refund_of",
    "deposits_applied",
    "discounts",
    "catering_event",
    "catering_role",
    "catering_end",
    "check",
    "vouchers",
    "action",
    "from",
    "to",
];

/// The idempotency digest of an order, encoded from the typed order (the same bytes as the
/// canonical encoding of `Order::to_json`, see `fdmd_core::fiscal::request`).
/// In debug builds (every test) each digest is also computed from the `Value` form and the two
/// must agree, so a member added to `to_json` and not to the typed encoder fails a test.
fn request_digest(order: &Order) -> Result<String, AppendError> {
    let digest = order
        .request_digest()
        .map_err(|e| AppendError::Encoding(e.to_string()))?;
    debug_assert_eq!(
        digest_of(&order.to_json()).ok().as_deref(),
        Some(digest.as_str()),
        "the typed request digest differs from the canonical encoding of Order::to_json"
    );
    Ok(digest)
}

fn digest_of(value: &Value) -> Result<String, AppendError> {
    to_canonical(value)
        .map(|bytes| sha256_hex(&bytes))
        .map_err(|e| AppendError::Encoding(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbering_series_and_display() {
        let n = Numbering {
            scope: SeriesScope::PerRegister,
            digits: 6,
            groups: BTreeMap::new(),
        };
        assert_eq!(
            n.series_for("till-1", EventType::Normal),
            "register/till-1/N"
        );
        assert_eq!(n.display(42), "000042");
        assert_eq!(n.display(1_234_567), "234567");
        let shared = Numbering {
            scope: SeriesScope::Establishment,
            digits: 4,
            groups: BTreeMap::new(),
        };
        assert_eq!(
            shared.series_for("till-1", EventType::ProForma),
            "establishment/P"
        );
        assert_eq!(shared.display(7), "0007");
        let grouped = Numbering {
            scope: SeriesScope::Group,
            digits: 6,
            groups: BTreeMap::from([
                ("till-1".to_owned(), "bar".to_owned()),
                ("till-2".to_owned(), "bar".to_owned()),
                ("hh-1".to_owned(), "terrace".to_owned()),
            ]),
        };
        assert_eq!(
            grouped.series_for("till-2", EventType::Normal),
            "group/bar/N"
        );
        assert_eq!(
            grouped.series_for("hh-1", EventType::Normal),
            "group/terrace/N"
        );
        assert_eq!(
            grouped.series_for("kiosk", EventType::Normal),
            "register/kiosk/N"
        );
        assert_eq!(
            grouped.members(Some("till-1")),
            Some(BTreeSet::from(["till-1".to_owned(), "till-2".to_owned()]))
        );
        assert_eq!(
            grouped.members(Some("kiosk")),
            Some(BTreeSet::from(["kiosk".to_owned()]))
        );
    }

    use proptest::prelude::*;

    /// Every member `receipt_of` reads, and one it does not.
    const RECEIPT_KEYS: [&str; 30] = [
        "request_id",
        "register",
        "ticket_number",
        "pos_ticket_number",
        "label",
        "event_counter",
        "total_counter",
        "total",
        "vat",
        "plu_hash",
        "gks2",
        "fdm_v1",
        "cash_rounding",
        "operator",
        "table",
        "pos_time",
        "lines",
        "payments",
        "purpose",
        "table_role",
        "copy_of",
        "refund_of",
        "deposits_applied",
        "discounts",
        "catering_event",
        "check",
        "vouchers",
        "action",
        "request_digest",
        "source",
    ];

    /// `Registrar::receipt_json` as it was before the receipt could be moved out of the record
    /// (456cbe4), kept as the reference.
    fn receipt_before(numbering: &Numbering, a: &Appended) -> Value {
        let body = &a.body;
        let get = |k: &str| body.get(k).cloned().unwrap_or(Value::Null);
        let ticket_number = match a.body_u64("ticket_number") {
            Some(n) => json!(numbering.display(n)),
            None => get("pos_ticket_number"),
        };
        let code = a.code();
        let mut receipt = Map::new();
        for (k, v) in [
            ("request_id", get("request_id")),
            ("status", json!("signed")),
            ("code", json!(code.number())),
            ("register", get("register")),
            ("ticket_number", ticket_number),
            ("label", get("label")),
            ("event_counter", get("event_counter")),
            ("total_counter", get("total_counter")),
            ("fdm_id", json!(a.fdm_id)),
            ("vsc_id", json!(a.signer_id)),
            ("fdm_time", json!(a.time)),
            ("total", get("total")),
            ("vat", get("vat")),
            ("plu_hash", get("plu_hash")),
            ("signed_digest", json!(hex::encode(a.hash))),
            ("signature", json!(hex::encode(&a.signature))),
            ("short_signature", json!(short_signature(&a.signature))),
            ("journal_seq", json!(a.seq)),
        ] {
            receipt.insert(k.into(), v);
        }
        // The GKS 2.0 FDM's answer, when an FDM signed the event (docs/gks2.md §8).
        if let Some(g) = body.get("gks2") {
            receipt.insert("gks2".into(), g.clone());
        }
        // The FDM v1 box's answer, when a box signed the event (docs/fdm-v1-backend.md).
        if let Some(f) = body.get("fdm_v1") {
            receipt.insert("fdm_v1".into(), f.clone());
        }
        if code != FdmCode::Ok {
            receipt.insert(
                "message".into(),
                json!(match code {
                    FdmCode::AlreadyHandled =>
                        "already handled: this is the stored receipt of the first request",
                    FdmCode::StorageNearlyFull => "journal storage nearly full (90% of its cap, or little free space on its file system)",
                    _ => "",
                }),
            );
        }
        if body.get("cash_rounding").is_some() {
            receipt.insert("cash_rounding".into(), get("cash_rounding"));
        }
        if a.kind != RecordKind::FiscalEvent {
            receipt.insert("record_kind".into(), json!(a.kind.as_str()));
        }
        // What a handheld needs to show or print the ticket (restaurant members when present).
        for k in [
            "operator",
            "table",
            "pos_time",
            "lines",
            "payments",
            "purpose",
            "table_role",
            "copy_of",
            "refund_of",
            "deposits_applied",
            "discounts",
            "catering_event",
            "catering_role",
            "catering_end",
            "check",
            "vouchers",
            "action",
            "from",
            "to",
        ] {
            if let Some(v) = body.get(k)
                && !v.is_null()
            {
                receipt.insert(k.into(), v.clone());
            }
        }
        Value::Object(receipt)
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            ".{0,8}".prop_map(Value::String),
            (0u64..100_000_000).prop_map(|n| json!(n)),
            Just(json!([{"description": "Cola", "total": "2.20"}, {"a": [1, null]}])),
            Just(json!({"fdmRef": {"id": "x"}, "n": -1})),
        ]
    }

    proptest! {
        /// The receipt made by moving the body's members (`into_receipt`, the order path) and
        /// the one made by copying them (`receipt_json`, resends and lookups) are both byte for
        /// byte the receipt of 456cbe4.
        #[test]
        fn the_moved_receipt_equals_the_copied_one(
            members in prop::collection::vec((prop::sample::select(&RECEIPT_KEYS[..]), arb_value()), 0..30),
            kind in prop::sample::select(&RecordKind::ALL[..]),
            duplicate in any::<bool>(),
            storage_nearly_full in any::<bool>(),
            seq in 1u64..1_000_000,
            digits in 4u8..=8,
        ) {
            let a = Appended {
                seq,
                kind,
                time: "2026-12-08T02:00:00.000+01:00".into(),
                fdm_id: "FDMD0001".into(),
                signer_id: "VSC-1".into(),
                hash: [7; 32],
                signature: vec![9; 64],
                body: members.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
                duplicate,
                storage_nearly_full,
            };
            let numbering = Numbering { digits, ..Numbering::default() };
            let copied = receipt_of(&numbering, &a, |k| a.body.get(k).cloned());
            let mut body = a.body.clone();
            let moved = receipt_of(&numbering, &a, |k| body.remove(k));
            let before = serde_json::to_string(&receipt_before(&numbering, &a)).unwrap();
            prop_assert_eq!(serde_json::to_string(&copied).unwrap(), before.clone());
            prop_assert_eq!(serde_json::to_string(&moved).unwrap(), before);
        }
    }

    #[test]
    fn sniffs_request_ids_only_when_valid() {
        assert_eq!(
            sniff_request_id(br#"{"request_id":"r-1","x":1}"#).as_deref(),
            Some("r-1")
        );
        assert_eq!(sniff_request_id(br#"{"request_id":"bad id"}"#), None);
        assert_eq!(sniff_request_id(b"garbage"), None);
    }
}
