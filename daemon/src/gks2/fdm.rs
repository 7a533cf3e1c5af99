//! The emulated FDM itself, without HTTP: validates an input, recognises a resend by its five
//! keys, counts, computes `vatCalc`, signs and stores (docs/gks2.md §7, ADR 0005). Not certified:
//! for development and tests.

use super::model::{
    BaseInput, CopyInput, CostCenterChangeInput, EventLabel, EventOperation, FdmDeviceInput,
    FdmRef, Message, MoneyInOutInput, Mutation, OtherInput, PosDeviceInput, ProFormaInput, Product,
    ReportTurnoverInput, ReportUserInput, SaleInput, SignResult, Transaction, TransactionLineType,
    Transfer, VatCalc, VatLabel,
};
use crate::fiscal::money::round_cents;
use crate::fiscal::vat::breakdown;
use crate::signer::{Signer, SoftwareSigner};
use chrono::{DateTime, FixedOffset, Local, NaiveDateTime};
use rusqlite::{OptionalExtension, params};
use rust_decimal::Decimal;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;

/// What every answer and the start-up log say.
pub const NOT_CERTIFIED: &str = "fdmd GKS 2.0 emulator: not certified, for development and tests";
/// The software version the emulator reports.
pub const FDM_SW_VERSION: &str = concat!("fdmd-gks2-emulator-", env!("CARGO_PKG_VERSION"));
/// First line of the signed text (docs/gks2.md §7).
pub const SIGNED_TEXT_TAG: &str = "fdmd-gks2-emulator-v1";
/// Most transaction lines in one event.
pub const MAX_LINES: usize = 2_000;
/// Longest text field (the public clients' documented limit).
pub const MAX_TEXT: usize = 600;

/// The emulator's settings.
#[derive(Debug, Clone)]
pub struct FdmSettings {
    /// The FDM's id (`fdmRef.fdmId`).
    pub fdm_id: String,
    /// The device id of the path.
    pub device_id: String,
    /// Events the buffer holds before it is full.
    pub buffer_capacity: u64,
    /// `posDateTime` further than this from the FDM's clock gets a warning.
    pub clock_tolerance_s: i64,
}

/// Why the emulator could not open.
#[derive(Debug, thiserror::Error)]
pub enum FdmOpenError {
    /// The store.
    #[error("GKS 2.0 emulator store: {0}")]
    Store(#[from] rusqlite::Error),
    /// The key.
    #[error("GKS 2.0 emulator key: {0}")]
    Key(String),
}

/// The emulated FDM.
pub struct Fdm {
    conn: rusqlite::Connection,
    signer: SoftwareSigner,
    settings: FdmSettings,
    counters: HashMap<EventLabel, u64>,
    total: u64,
    stored: u64,
}

/// A GraphQL error (category, code, message).
pub type Refusal = Message;

fn refusal(code: &str, message: impl Into<String>) -> Refusal {
    Message::new("VALIDATION", code, message, true)
}

impl Fdm {
    /// Opens (or creates) `gks2-fdm.sqlite` and `gks2-fdm.key` in `dir`.
    pub fn open(dir: &Path, settings: FdmSettings) -> Result<Fdm, FdmOpenError> {
        let signer = SoftwareSigner::open_or_create(&dir.join("gks2-fdm.key"))
            .map_err(|e| FdmOpenError::Key(e.to_string()))?;
        let conn = rusqlite::Connection::open(dir.join("gks2-fdm.sqlite"))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS events (
                total_counter INTEGER PRIMARY KEY,
                label TEXT NOT NULL,
                event_counter INTEGER NOT NULL,
                pos_id TEXT NOT NULL,
                pos_date_time TEXT NOT NULL,
                terminal_id TEXT NOT NULL,
                pos_fiscal_ticket_no INTEGER NOT NULL,
                result TEXT NOT NULL,
                UNIQUE (pos_id, pos_date_time, terminal_id, label, pos_fiscal_ticket_no)
            );
            CREATE TABLE IF NOT EXISTS full_refunds (
                sale_total_counter INTEGER PRIMARY KEY,
                refund_total_counter INTEGER NOT NULL
            );",
        )?;
        let mut counters = HashMap::new();
        {
            let mut stmt =
                conn.prepare("SELECT label, MAX(event_counter) FROM events GROUP BY label")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
            for row in rows {
                let (label, n) = row?;
                if let Ok(label) = serde_json::from_value::<EventLabel>(Value::String(label)) {
                    counters.insert(label, u64::try_from(n).unwrap_or(0));
                }
            }
        }
        let (total, stored): (i64, i64) = conn.query_row(
            "SELECT COALESCE(MAX(total_counter), 0), COUNT(*) FROM events",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(Fdm {
            conn,
            signer,
            settings,
            counters,
            total: u64::try_from(total).unwrap_or(0),
            stored: u64::try_from(stored).unwrap_or(0),
        })
    }

    /// The Ed25519 public key that verifies `digitalSignature`.
    pub fn public_key(&self) -> Vec<u8> {
        self.signer
            .identity()
            .map(|i| i.public_key)
            .unwrap_or_default()
    }

    /// The settings.
    pub fn settings(&self) -> &FdmSettings {
        &self.settings
    }

    /// Signs one event (or answers the stored result of a resend).
    pub fn sign(
        &mut self,
        mutation: Mutation,
        data: &Value,
        training: bool,
        now: DateTime<Local>,
    ) -> Result<SignResult, Vec<Refusal>> {
        check_texts(data, 0).map_err(|e| vec![e])?;
        let (base, vat_calc) = typed(mutation, data).map_err(|e| vec![e])?;
        let pos_time = parse_pos_time(&base.pos_date_time).ok_or_else(|| {
            vec![refusal(
                "BAD_USER_INPUT",
                "posDateTime is not an ISO 8601 date and time",
            )]
        })?;
        let label = mutation.label(training);
        let key_time = pos_time.key;
        if let Some(stored) = self.lookup(&base, &key_time, label).map_err(store_error)? {
            return Ok(stored);
        }
        // A copy names the event it reprints, a full refund the sale it gives back.
        if matches!(mutation, Mutation::Copy | Mutation::Sale) {
            self.check_referenced(mutation, data).map_err(|e| vec![e])?;
        }
        let used = self.buffer_used();
        if self.stored >= self.settings.buffer_capacity {
            return Err(vec![Message::new(
                "FDM",
                "BUFFER_FULL",
                "the FDM's buffer is full; events cannot be signed until it is sent",
                true,
            )]);
        }
        let mut warnings = Vec::new();
        if used >= Decimal::from(90) {
            warnings.push(Message::new(
                "FDM",
                "BUFFER_NEARLY_FULL",
                format!("the FDM's buffer is {used} % full"),
                true,
            ));
        }
        if let Some(at) = pos_time.instant {
            let diff = (at.with_timezone(&Local) - now).num_seconds();
            if diff.abs() > self.settings.clock_tolerance_s {
                warnings.push(Message::new(
                    "FDM",
                    "CLOCK_DIFFERENCE",
                    format!("posDateTime is {diff} s away from the FDM's clock"),
                    true,
                ));
            }
        }
        let event_counter = self.counters.get(&label).copied().unwrap_or(0) + 1;
        let total_counter = self.total + 1;
        let fdm_ref = FdmRef {
            fdm_id: self.settings.fdm_id.clone(),
            fdm_date_time: now.format("%Y-%m-%dT%H:%M:%S%:z").to_string(),
            event_label: label,
            event_counter,
            total_counter,
        };
        // A VAT receipt, and (an emulator choice, docs/gks2.md §9) a report: both are printed.
        let receipt = (mutation.is_vat_receipt() || label == EventLabel::R) && !training;
        let mut result = SignResult {
            pos_id: base.pos_id.clone(),
            pos_fiscal_ticket_no: base.pos_fiscal_ticket_no,
            pos_date_time: base.pos_date_time.clone(),
            terminal_id: base.terminal_id.clone(),
            device_id: base.device_id.clone(),
            event_operation: mutation.operation(),
            fdm_ref,
            fdm_sw_version: FDM_SW_VERSION.into(),
            digital_signature: String::new(),
            short_signature: None,
            verification_url: None,
            vat_calc,
            buffer_capacity_used: used,
            warnings,
            informations: vec![Message::new("INFO", "NOT_CERTIFIED", NOT_CERTIFIED, true)],
            footer: vec![NOT_CERTIFIED.into()],
        };
        let text = signed_text(&self.settings.device_id, &result, training, data);
        let digest: [u8; 32] = Sha256::digest(text.as_bytes()).into();
        let id = self.signer.identity().map_err(|e| vec![sign_error(e)])?.id;
        let signature = self
            .signer
            .sign(&id, &digest)
            .map_err(|e| vec![sign_error(e)])?;
        result.digital_signature = super::auth::base64_encode(&signature);
        if receipt {
            let short = hex::encode_upper(&Sha256::digest(&signature)[..4]);
            result.verification_url = Some(format!(
                "https://gks2-emulator.fdmd.invalid/verify?fdm={}&tc={}&ss={}",
                self.settings.fdm_id, total_counter, short
            ));
            result.short_signature = Some(short);
        }
        let json = serde_json::to_string(&result)
            .map_err(|e| vec![Message::new("FDM", "INTERNAL", e.to_string(), false)])?;
        // A full refund of one of its own sales is remembered with the event, in one
        // transaction: that sale cannot be given back in full again.
        let refunded = match mutation {
            Mutation::Sale => own_reference(&self.settings.fdm_id, data),
            _ => None,
        };
        let tx = self.conn.transaction().map_err(store_error)?;
        if let Some(r) = &refunded {
            tx.execute(
                "INSERT INTO full_refunds (sale_total_counter, refund_total_counter) VALUES (?1, ?2)",
                params![
                    i64::try_from(r.total_counter).unwrap_or(i64::MAX),
                    i64::try_from(total_counter).unwrap_or(i64::MAX)
                ],
            )
            .map_err(store_error)?;
        }
        tx
            .execute(
                "INSERT INTO events (total_counter, label, event_counter, pos_id, pos_date_time,
                 terminal_id, pos_fiscal_ticket_no, result) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    i64::try_from(total_counter).unwrap_or(i64::MAX),
                    label.as_str(),
                    i64::try_from(event_counter).unwrap_or(i64::MAX),
                    base.pos_id,
                    key_time,
                    base.terminal_id,
                    i64::try_from(base.pos_fiscal_ticket_no).unwrap_or(i64::MAX),
                    json
                ],
            )
            .map_err(store_error)?;
        tx.commit().map_err(store_error)?;
        // Counted only once the event is stored.
        self.counters.insert(label, event_counter);
        self.total = total_counter;
        self.stored += 1;
        Ok(result)
    }

    fn buffer_used(&self) -> Decimal {
        if self.settings.buffer_capacity == 0 {
            return Decimal::ONE_HUNDRED;
        }
        round_cents(
            Decimal::from(self.stored) * Decimal::ONE_HUNDRED
                / Decimal::from(self.settings.buffer_capacity),
        )
    }

    /// The `fdmRef` of a copy or of a full refund (`signSale` with `fdmRef`), when it names
    /// one of this FDM's own events, must name an event it signed (the same total counter,
    /// label and label counter): `FDM_REF_NOT_FOUND` otherwise. A full refund's must moreover
    /// name a normal sale (`FDM_REF_NOT_A_SALE`) not refunded in full before
    /// (`FDM_REF_ALREADY_REFUNDED`). A reference to another FDM's event (an FDM replaced since)
    /// is not checked; a sale without `fdmRef` has nothing to check.
    fn check_referenced(&self, mutation: Mutation, data: &Value) -> Result<(), Refusal> {
        let Some(r) = own_reference(&self.settings.fdm_id, data) else {
            return Ok(());
        };
        let total_counter = i64::try_from(r.total_counter).unwrap_or(i64::MAX);
        let found: Option<(String, i64, String)> = self
            .conn
            .query_row(
                "SELECT label, event_counter, result FROM events WHERE total_counter = ?1",
                params![total_counter],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .optional()
            .map_err(|e| store_error(e).remove(0))?;
        let Some((label, counter, result)) = found.filter(|(label, counter, _)| {
            *label == r.event_label.as_str()
                && u64::try_from(*counter).ok() == Some(r.event_counter)
        }) else {
            return Err(refusal(
                "FDM_REF_NOT_FOUND",
                format!(
                    "{} at data.fdmRef: this FDM signed no event {} {}/{}",
                    mutation.input_type(),
                    r.event_label.as_str(),
                    r.event_counter,
                    r.total_counter
                ),
            ));
        };
        if mutation != Mutation::Sale {
            return Ok(());
        }
        // A full refund gives back a normal sale (label N, signSale, a positive total: not a
        // refund, a pro forma, a training ticket…), and only once (docs/gks2.md §7).
        let stored: Option<SignResult> = serde_json::from_str(&result).ok();
        let total: Decimal = stored
            .as_ref()
            .and_then(|s| s.vat_calc.as_ref())
            .map_or(Decimal::ZERO, |v| v.iter().map(|c| c.total_amount).sum());
        let is_sale = label == EventLabel::N.as_str()
            && stored
                .as_ref()
                .is_some_and(|s| s.event_operation == EventOperation::SALE)
            && total > Decimal::ZERO;
        if !is_sale {
            return Err(refusal(
                "FDM_REF_NOT_A_SALE",
                format!(
                    "{} at data.fdmRef: event {label} {counter}/{} is not a normal sale (a full refund gives back a sale of label N with a positive total)",
                    mutation.input_type(),
                    r.total_counter
                ),
            ));
        }
        let refunded: Option<i64> = self
            .conn
            .query_row(
                "SELECT refund_total_counter FROM full_refunds WHERE sale_total_counter = ?1",
                params![total_counter],
                |row| row.get(0),
            )
            .optional()
            .map_err(|e| store_error(e).remove(0))?;
        match refunded {
            None => Ok(()),
            Some(by) => Err(refusal(
                "FDM_REF_ALREADY_REFUNDED",
                format!(
                    "{} at data.fdmRef: the sale N {}/{} was already refunded in full (event {by})",
                    mutation.input_type(),
                    r.event_counter,
                    r.total_counter
                ),
            )),
        }
    }

    fn lookup(
        &self,
        base: &BaseInput,
        key_time: &str,
        label: EventLabel,
    ) -> Result<Option<SignResult>, rusqlite::Error> {
        let text: Option<String> = self
            .conn
            .query_row(
                "SELECT result FROM events WHERE pos_id = ?1 AND pos_date_time = ?2
                 AND terminal_id = ?3 AND label = ?4 AND pos_fiscal_ticket_no = ?5",
                params![
                    base.pos_id,
                    key_time,
                    base.terminal_id,
                    label.as_str(),
                    i64::try_from(base.pos_fiscal_ticket_no).unwrap_or(i64::MAX)
                ],
                |r| r.get(0),
            )
            .optional()?;
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
    }
}

/// The `fdmRef` of `data` when it names one of this FDM's own events (`fdm_id`); a reference to
/// another FDM's event (an FDM replaced since) is not checked nor remembered.
fn own_reference(fdm_id: &str, data: &Value) -> Option<FdmRef> {
    data.get("fdmRef")
        .and_then(|v| serde_json::from_value::<FdmRef>(v.clone()).ok())
        .filter(|r| r.fdm_id == fdm_id)
}

fn store_error(e: rusqlite::Error) -> Vec<Refusal> {
    vec![Message::new(
        "FDM",
        "STORAGE",
        format!("the FDM could not store the event: {e}"),
        true,
    )]
}

fn sign_error(e: impl std::fmt::Display) -> Refusal {
    Message::new("FDM", "SIGNATURE", format!("signing failed: {e}"), true)
}

struct PosTime {
    /// The resend key: the instant normalised (or the local time as sent, without an offset).
    key: String,
    /// The instant, when the text has an offset.
    instant: Option<DateTime<FixedOffset>>,
}

fn parse_pos_time(text: &str) -> Option<PosTime> {
    if text.len() > 40 {
        return None;
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(PosTime {
            key: t
                .with_timezone(&chrono::Utc)
                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            instant: Some(t),
        });
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(n) = NaiveDateTime::parse_from_str(text, format) {
            let instant = n
                .and_local_timezone(Local)
                .single()
                .map(|t| t.fixed_offset());
            return Some(PosTime {
                key: n.format("%Y-%m-%dT%H:%M:%S%.f").to_string(),
                instant,
            });
        }
    }
    None
}

/// Refuses text fields over [`MAX_TEXT`] characters and nesting beyond 32 levels.
fn check_texts(v: &Value, depth: usize) -> Result<(), Refusal> {
    if depth > 32 {
        return Err(refusal("BAD_USER_INPUT", "input nested too deeply"));
    }
    match v {
        Value::String(s) if s.chars().count() > MAX_TEXT => Err(refusal(
            "BAD_USER_INPUT",
            format!("a text field is longer than {MAX_TEXT} characters"),
        )),
        Value::Array(items) => items.iter().try_for_each(|i| check_texts(i, depth + 1)),
        Value::Object(map) => map.values().try_for_each(|i| check_texts(i, depth + 1)),
        _ => Ok(()),
    }
}

fn read<T: serde::de::DeserializeOwned>(mutation: Mutation, data: &Value) -> Result<T, Refusal> {
    serde_path_to_error::deserialize(data).map_err(|e| {
        refusal(
            "BAD_USER_INPUT",
            format!(
                "{} at data.{}: {}",
                mutation.input_type(),
                e.path(),
                e.inner()
            ),
        )
    })
}

/// The typed input's common fields and, for inputs with lines, the VAT the FDM computes.
fn typed(mutation: Mutation, data: &Value) -> Result<(BaseInput, Option<Vec<VatCalc>>), Refusal> {
    match mutation {
        Mutation::Sale => {
            let s: SaleInput = read(mutation, data)?;
            if let Some(r) = &s.fdm_ref {
                check_fdm_ref(mutation, "fdmRef", r)?;
            }
            let vat = match &s.transaction {
                Some(t) => Some(vat_calc(&[t])?),
                None => Some(Vec::new()),
            };
            Ok((s.base, vat))
        }
        Mutation::Order | Mutation::PreBill => {
            let p: ProFormaInput = read(mutation, data)?;
            if mutation == Mutation::Order && p.cost_center.is_none() {
                return Err(refusal(
                    "BAD_USER_INPUT",
                    "OrderInput at data.costCenter: required",
                ));
            }
            let vat = vat_calc(&[&p.transaction])?;
            Ok((p.base, Some(vat)))
        }
        Mutation::CostCenterChange => {
            // `from` / `to` as one object ([OD]) or a list ([FT]): GraphQL list coercion.
            let c: CostCenterChangeInput = read(mutation, &Transfer::normalised(data))?;
            check_transfer(&c.transfer)?;
            Ok((c.base, None))
        }
        Mutation::MoneyInOut => {
            let m: MoneyInOutInput = read(mutation, data)?;
            check_money_in_out(&m)?;
            Ok((m.base, None))
        }
        Mutation::Copy => {
            let c: CopyInput = read(mutation, data)?;
            check_fdm_ref(mutation, "fdmRef", &c.fdm_ref)?;
            Ok((c.base, None))
        }
        Mutation::ReportTurnoverX | Mutation::ReportTurnoverZ => {
            let r: ReportTurnoverInput = read(mutation, data)?;
            check_report(
                mutation,
                r.report_no,
                r.report_booking_date.as_deref(),
                &r.pos_devices,
                &r.fdm_devices,
            )?;
            let t = &r.turnover;
            let lists = [
                ("turnover.transactions", t.transactions.len()),
                ("turnover.departments", t.departments.len()),
                ("turnover.vats", t.vats.len()),
                ("turnover.payments", t.payments.len()),
                ("turnover.negQuantities", t.neg_quantities.len()),
                ("turnover.priceChanges", t.price_changes.len()),
                ("turnover.invoices", t.invoices.as_ref().map_or(0, Vec::len)),
            ];
            for (name, len) in lists {
                check_list_len(mutation, name, len)?;
            }
            for (i, p) in t.payments.iter().enumerate() {
                check_list_len(
                    mutation,
                    &format!("turnover.payments[{i}].amount"),
                    p.amount.len(),
                )?;
            }
            for (i, v) in t.vats.iter().enumerate() {
                if v.taxable_amount + v.vat_amount != v.total_amount {
                    return Err(refusal(
                        "REPORT_TOTAL_MISMATCH",
                        format!(
                            "{} at data.turnover.vats[{i}]: taxableAmount {} + vatAmount {} is not totalAmount {}",
                            mutation.input_type(),
                            v.taxable_amount,
                            v.vat_amount,
                            v.total_amount
                        ),
                    ));
                }
            }
            Ok((r.base, None))
        }
        Mutation::ReportUserX | Mutation::ReportUserZ => {
            let r: ReportUserInput = read(mutation, data)?;
            check_report(
                mutation,
                r.report_no,
                r.report_booking_date.as_deref(),
                &r.pos_devices,
                &r.fdm_devices,
            )?;
            check_list_len(mutation, "users", r.users.len())?;
            for (i, u) in r.users.iter().enumerate() {
                check_list_len(
                    mutation,
                    &format!("users[{i}].socialEvents"),
                    u.social_events.len(),
                )?;
                check_list_len(mutation, &format!("users[{i}].payments"), u.payments.len())?;
                for (name, time) in [
                    ("firstPosDateTime", &u.first_pos_date_time),
                    ("lastPosDateTime", &u.last_pos_date_time),
                ] {
                    check_time(mutation, &format!("users[{i}].{name}"), time)?;
                }
            }
            Ok((r.base, None))
        }
        _ => {
            let o: OtherInput = read(mutation, data)?;
            Ok((o.base, None))
        }
    }
}

/// A cost-centre change moves lines out of its `from` cost centres and into its `to` ones: each
/// side names at least one cost centre and has at least one line, every side's lines are checked like a sale's (line and
/// transaction totals, a reason on each negative quantity), and per VAT label the `from` side
/// amounts to exactly the negation of the `to` side ([OD] sends the leaving lines negated with
/// `COST_CENTER_CHANGE`): `TRANSFER_MISMATCH` otherwise (docs/gks2.md §6.3, §7).
fn check_transfer(t: &Transfer) -> Result<(), Refusal> {
    let input = Mutation::CostCenterChange.input_type();
    for (name, side) in [("from", &t.from), ("to", &t.to)] {
        if side.is_empty() {
            return Err(refusal(
                "BAD_USER_INPUT",
                format!("{input} at data.transfer.{name}: at least one cost centre"),
            ));
        }
        check_list_len(
            Mutation::CostCenterChange,
            &format!("transfer.{name}"),
            side.len(),
        )?;
        if side
            .iter()
            .all(|i| i.transaction.transaction_lines.is_empty())
        {
            return Err(refusal(
                "BAD_USER_INPUT",
                format!("{input} at data.transfer.{name}: no lines (a change moves lines)"),
            ));
        }
    }
    let from: Vec<&Transaction> = t.from.iter().map(|i| &i.transaction).collect();
    let to: Vec<&Transaction> = t.to.iter().map(|i| &i.transaction).collect();
    let (leaving, joining) = (vat_calc(&from)?, vat_calc(&to)?);
    let negated: Vec<(VatLabel, Decimal)> =
        joining.iter().map(|v| (v.label, -v.total_amount)).collect();
    let left: Vec<(VatLabel, Decimal)> =
        leaving.iter().map(|v| (v.label, v.total_amount)).collect();
    if left != negated {
        let show = |v: &[(VatLabel, Decimal)]| {
            v.iter()
                .map(|(l, a)| format!("{} {a}", l.as_str()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(refusal(
            "TRANSFER_MISMATCH",
            format!(
                "a cost-centre change moves the lines it takes from `from` (negative quantities) to `to`: per VAT label `from` must be the negation of `to`, but `from` is [{}] and `to` is [{}]",
                show(&left),
                show(
                    &joining
                        .iter()
                        .map(|v| (v.label, v.total_amount))
                        .collect::<Vec<_>>()
                )
            ),
        ));
    }
    Ok(())
}

/// A money in/out moves money, so it has at least one line and no line of zero (docs/gks2.md §7).
fn check_money_in_out(m: &MoneyInOutInput) -> Result<(), Refusal> {
    let mutation = Mutation::MoneyInOut;
    let input = mutation.input_type();
    if m.financials.is_empty() {
        return Err(refusal(
            "BAD_USER_INPUT",
            format!("{input} at data.financials: at least one line"),
        ));
    }
    check_list_len(mutation, "financials", m.financials.len())?;
    for (i, l) in m.financials.iter().enumerate() {
        if l.amount.is_zero() {
            return Err(refusal(
                "BAD_USER_INPUT",
                format!("{input} at data.financials[{i}].amount: must not be 0"),
            ));
        }
        for (name, text) in [("id", &l.id), ("name", &l.name)] {
            if text.is_empty() {
                return Err(refusal(
                    "BAD_USER_INPUT",
                    format!("{input} at data.financials[{i}].{name}: empty"),
                ));
            }
        }
    }
    Ok(())
}

/// An `FdmReferenceInput` as an FDM answered it: an ISO 8601 `fdmDateTime` and counters from 1,
/// the label's counter never above the total counter.
fn check_fdm_ref(mutation: Mutation, field: &str, r: &FdmRef) -> Result<(), Refusal> {
    let input = mutation.input_type();
    let bad = |what: &str, why: &str| {
        refusal(
            "BAD_USER_INPUT",
            format!("{input} at data.{field}.{what}: {why}"),
        )
    };
    if r.fdm_id.is_empty() {
        return Err(bad("fdmId", "empty"));
    }
    check_time(mutation, &format!("{field}.fdmDateTime"), &r.fdm_date_time)?;
    if r.event_counter == 0 {
        return Err(bad("eventCounter", "must be 1 or more"));
    }
    if r.total_counter < r.event_counter {
        return Err(bad("totalCounter", "less than eventCounter"));
    }
    Ok(())
}

fn check_list_len(mutation: Mutation, field: &str, len: usize) -> Result<(), Refusal> {
    if len > MAX_LINES {
        return Err(refusal(
            "BAD_USER_INPUT",
            format!(
                "{} at data.{field}: at most {MAX_LINES} items",
                mutation.input_type()
            ),
        ));
    }
    Ok(())
}

fn check_time(mutation: Mutation, field: &str, text: &str) -> Result<(), Refusal> {
    match parse_pos_time(text) {
        Some(_) => Ok(()),
        None => Err(refusal(
            "BAD_USER_INPUT",
            format!(
                "{} at data.{field}: not an ISO 8601 date and time",
                mutation.input_type()
            ),
        )),
    }
}

/// The fields every report input has beyond the common ones: `reportNo` and
/// `reportBookingDate` on a Z report only, the POS and FDM devices the report covers.
fn check_report(
    mutation: Mutation,
    report_no: Option<u64>,
    report_booking_date: Option<&str>,
    pos_devices: &[PosDeviceInput],
    fdm_devices: &[FdmDeviceInput],
) -> Result<(), Refusal> {
    let input = mutation.input_type();
    let bad = |field: &str, what: &str| {
        refusal("BAD_USER_INPUT", format!("{input} at data.{field}: {what}"))
    };
    let z = matches!(mutation, Mutation::ReportTurnoverZ | Mutation::ReportUserZ);
    if z {
        match report_no {
            None => return Err(bad("reportNo", "required")),
            Some(0) => return Err(bad("reportNo", "must be 1 or more")),
            Some(_) => {}
        }
        match report_booking_date {
            None => return Err(bad("reportBookingDate", "required")),
            Some(d) if chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").is_err() => {
                return Err(bad("reportBookingDate", "not a date (YYYY-MM-DD)"));
            }
            Some(_) => {}
        }
    } else if report_no.is_some() || report_booking_date.is_some() {
        let field = if report_no.is_some() {
            "reportNo"
        } else {
            "reportBookingDate"
        };
        return Err(bad(field, "not a field of an X report's input"));
    }
    check_list_len(mutation, "posDevices", pos_devices.len())?;
    check_list_len(mutation, "fdmDevices", fdm_devices.len())?;
    for (i, d) in pos_devices.iter().enumerate() {
        check_time(
            mutation,
            &format!("posDevices[{i}].firstPosDateTime"),
            &d.first_pos_date_time,
        )?;
        check_time(
            mutation,
            &format!("posDevices[{i}].lastPosDateTime"),
            &d.last_pos_date_time,
        )?;
    }
    for (i, d) in fdm_devices.iter().enumerate() {
        check_time(
            mutation,
            &format!("fdmDevices[{i}].firstFdmDateTime"),
            &d.first_fdm_date_time,
        )?;
        check_time(
            mutation,
            &format!("fdmDevices[{i}].lastFdmDateTime"),
            &d.last_fdm_date_time,
        )?;
        if d.first_total_counter > d.last_total_counter {
            return Err(bad(
                &format!("fdmDevices[{i}].firstTotalCounter"),
                "greater than lastTotalCounter",
            ));
        }
    }
    Ok(())
}

/// The amount of one product per VAT label: the part's price (for the whole line), plus the
/// part's price changes.
fn product_amounts(p: &Product, out: &mut Vec<(VatLabel, Decimal)>) -> Result<Decimal, Refusal> {
    if p.quantity.is_sign_negative() && !p.quantity.is_zero() && p.neg_quantity_reason.is_none() {
        return Err(refusal(
            "NEG_QUANTITY_REASON_MISSING",
            format!(
                "product {:?} has a negative quantity without negQuantityReason",
                p.product_id
            ),
        ));
    }
    let mut sum = Decimal::ZERO;
    for v in &p.vats {
        // `price` is the VAT part's price for the whole line (quantity included), as [FT] and
        // [OD] send it (docs/gks2.md §9).
        let mut amount = v.price;
        for c in &v.price_changes {
            amount += c.amount;
        }
        out.push((v.label, amount));
        sum += amount;
    }
    Ok(sum)
}

/// `vatCalc` of transactions: the lines checked against their totals, then fdmd's own VAT
/// breakdown (once per label, half-up to the cent).
pub fn vat_calc(transactions: &[&Transaction]) -> Result<Vec<VatCalc>, Refusal> {
    let mut parts = Vec::new();
    let mut lines = 0usize;
    for t in transactions {
        let mut total = Decimal::ZERO;
        for (i, line) in t.transaction_lines.iter().enumerate() {
            lines += 1;
            if lines > MAX_LINES {
                return Err(refusal("BAD_USER_INPUT", "too many transaction lines"));
            }
            let computed = match line.line_type {
                TransactionLineType::SINGLE_PRODUCT => {
                    product_amounts(&line.main_product, &mut parts)?
                }
                TransactionLineType::COMPOSITE_PRODUCT => {
                    if !line.main_product.vats.is_empty() {
                        return Err(refusal(
                            "BAD_USER_INPUT",
                            format!("line {i}: the main product of a composite line has no vats"),
                        ));
                    }
                    product_amounts(&line.main_product, &mut parts)?;
                    let mut sum = Decimal::ZERO;
                    for sub in line.sub_products.iter().flatten() {
                        sum += product_amounts(sub, &mut parts)?;
                    }
                    sum
                }
            };
            if computed != line.line_total {
                return Err(refusal(
                    "LINE_TOTAL_MISMATCH",
                    format!(
                        "line {i}: lineTotal {} but the products amount to {computed}",
                        line.line_total
                    ),
                ));
            }
            total += computed;
        }
        if total != t.transaction_total {
            return Err(refusal(
                "TRANSACTION_TOTAL_MISMATCH",
                format!(
                    "transactionTotal {} but the lines amount to {total}",
                    t.transaction_total
                ),
            ));
        }
    }
    let to_label = |l: crate::fiscal::vat::VatLetter| match l {
        crate::fiscal::vat::VatLetter::A => VatLabel::A,
        crate::fiscal::vat::VatLetter::B => VatLabel::B,
        crate::fiscal::vat::VatLetter::C => VatLabel::C,
        crate::fiscal::vat::VatLetter::D => VatLabel::D,
        crate::fiscal::vat::VatLetter::X => VatLabel::X,
    };
    Ok(breakdown(
        parts
            .into_iter()
            .map(|(label, amount)| (label.letter(), amount)),
    )
    .into_iter()
    .map(|v| VatCalc {
        label: to_label(v.letter),
        rate: v.letter.percent(),
        taxable_amount: v.base,
        vat_amount: v.vat,
        total_amount: v.total,
        out_of_scope: v.letter == crate::fiscal::vat::VatLetter::X,
    })
    .collect())
}

/// JSON with object keys sorted at every level, no spaces: the form the signed text hashes.
pub fn canonical_json(v: &Value) -> String {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let members: Vec<String> = keys
                .into_iter()
                .map(|k| {
                    format!(
                        "{}:{}",
                        Value::String(k.clone()),
                        canonical_json(&map[k.as_str()])
                    )
                })
                .collect();
            format!("{{{}}}", members.join(","))
        }
        Value::Array(items) => format!(
            "[{}]",
            items
                .iter()
                .map(canonical_json)
                .collect::<Vec<_>>()
                .join(",")
        ),
        other => other.to_string(),
    }
}

/// The text whose SHA-256 the emulator signs (docs/gks2.md §7), from an answer and the `data`
/// that was sent.
pub fn signed_text(device_id: &str, r: &SignResult, training: bool, data: &Value) -> String {
    let data_hash = hex::encode(Sha256::digest(canonical_json(data).as_bytes()));
    let vat = serde_json::to_value(&r.vat_calc).unwrap_or(Value::Null);
    [
        SIGNED_TEXT_TAG.to_owned(),
        device_id.to_owned(),
        r.fdm_ref.fdm_id.clone(),
        r.event_operation.as_str().to_owned(),
        r.fdm_ref.event_label.as_str().to_owned(),
        r.fdm_ref.event_counter.to_string(),
        r.fdm_ref.total_counter.to_string(),
        r.fdm_ref.fdm_date_time.clone(),
        r.pos_id.clone(),
        r.terminal_id.clone(),
        r.pos_date_time.clone(),
        r.pos_fiscal_ticket_no.to_string(),
        training.to_string(),
        data_hash,
        canonical_json(&vat),
    ]
    .join("\n")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn settings() -> FdmSettings {
        FdmSettings {
            fdm_id: "FDMTEST0001".into(),
            device_id: "dev".into(),
            buffer_capacity: 10,
            clock_tolerance_s: 300,
        }
    }

    fn work_in(ticket: u64) -> Value {
        json!({
            "language": "FR", "vatNo": "BE0123456749", "estNo": "2000000042", "posId": "CPOS1",
            "posFiscalTicketNo": ticket, "posDateTime": "2026-12-06T21:00:00+01:00",
            "posSwVersion": "1", "terminalId": "T1", "deviceId": "D1",
            "bookingPeriodId": "b", "bookingDate": "2026-12-06", "ticketMedium": "PAPER",
            "employeeId": "85073003328"
        })
    }

    #[test]
    fn a_report_with_too_many_items_in_a_list_is_refused_and_not_counted() {
        let dir = tempfile::tempdir().unwrap();
        let mut fdm = Fdm::open(dir.path(), settings()).unwrap();
        let mut data = work_in(1);
        let fields = json!({
            "posDevices": [], "fdmDevices": [],
            "turnover": {"transactions": [], "departments": [], "vats": [], "payments": [],
                "negQuantities": [], "priceChanges": []}
        });
        for (k, v) in fields.as_object().unwrap() {
            data[k] = v.clone();
        }
        let mut big = data.clone();
        big["turnover"]["departments"] = Value::Array(
            (0..=MAX_LINES)
                .map(|i| json!({"departmentId": i.to_string(), "departmentName": "d", "amount": 1}))
                .collect(),
        );
        let e = fdm
            .sign(Mutation::ReportTurnoverX, &big, false, Local::now())
            .unwrap_err();
        assert_eq!(e[0].extensions.code, "BAD_USER_INPUT");
        assert!(
            e[0].message
                .contains("data.turnover.departments: at most 2000 items"),
            "{}",
            e[0].message
        );
        let r = fdm
            .sign(Mutation::ReportTurnoverX, &data, false, Local::now())
            .unwrap();
        assert_eq!(
            (r.fdm_ref.event_label, r.fdm_ref.event_counter),
            (EventLabel::R, 1)
        );
        assert_eq!(r.fdm_ref.total_counter, 1);
    }

    #[test]
    fn counters_and_resends_survive_a_restart_and_the_buffer_fills() {
        let dir = tempfile::tempdir().unwrap();
        let now = Local::now();
        let first = {
            let mut fdm = Fdm::open(dir.path(), settings()).unwrap();
            let r = fdm.sign(Mutation::WorkIn, &work_in(1), false, now).unwrap();
            assert!(r.clock_difference(), "posDateTime is far from now");
            r
        };
        let mut fdm = Fdm::open(dir.path(), settings()).unwrap();
        // The same five keys after a restart: the stored answer, not a new event.
        assert_eq!(
            fdm.sign(Mutation::WorkIn, &work_in(1), false, now).unwrap(),
            first
        );
        // The same keys with another time spelling of the same instant are the same event.
        let mut utc = work_in(1);
        utc["posDateTime"] = json!("2026-12-06T20:00:00Z");
        assert_eq!(fdm.sign(Mutation::WorkIn, &utc, false, now).unwrap(), first);
        let second = fdm
            .sign(Mutation::WorkOut, &work_in(2), false, now)
            .unwrap();
        assert_eq!(
            (second.fdm_ref.event_counter, second.fdm_ref.total_counter),
            (2, 2)
        );
        for t in 3..=9 {
            fdm.sign(Mutation::WorkIn, &work_in(t), false, now).unwrap();
        }
        let r = fdm
            .sign(Mutation::WorkIn, &work_in(10), false, now)
            .unwrap();
        assert!(r.buffer_nearly_full(), "{:?}", r.warnings);
        let e = fdm
            .sign(Mutation::WorkIn, &work_in(11), false, now)
            .unwrap_err();
        assert_eq!(e[0].extensions.code, "BUFFER_FULL");
    }

    /// A sale of one line at `price` (negative: a refund line), `fdm_ref` when a full refund.
    fn sale(ticket: u64, price: i64, fdm_ref: Option<&FdmRef>) -> Value {
        let mut d = work_in(ticket);
        let (q, reason) = if price < 0 {
            (-1, Some("REFUND"))
        } else {
            (1, None)
        };
        let amount = Decimal::new(price.abs(), 2);
        let mut product = json!({
            "productId": "p", "productName": "Cola", "departmentId": "d", "departmentName": "D",
            "quantity": q, "quantityType": "PIECE", "unitPrice": amount, "vats": [{"label": "A", "price": Decimal::new(price, 2)}]
        });
        if let Some(r) = reason {
            product["negQuantityReason"] = json!(r);
        }
        d["transaction"] = json!({"transactionLines": [{"lineType": "SINGLE_PRODUCT",
            "mainProduct": product, "lineTotal": Decimal::new(price, 2)}],
            "transactionTotal": Decimal::new(price, 2)});
        d["financials"] = json!([]);
        if let Some(r) = fdm_ref {
            d["fdmRef"] = serde_json::to_value(r).unwrap();
        }
        d
    }

    #[test]
    fn a_full_refund_must_name_a_normal_sale_not_refunded_in_full_before() {
        let dir = tempfile::tempdir().unwrap();
        let now = Local::now();
        let mut s = settings();
        s.buffer_capacity = 100;
        let mut fdm = Fdm::open(dir.path(), s.clone()).unwrap();
        let sold = fdm
            .sign(Mutation::Sale, &sale(1, 250, None), false, now)
            .unwrap();
        let partial = fdm
            .sign(Mutation::Sale, &sale(2, -100, None), false, now)
            .unwrap();
        let order = {
            let mut d = work_in(3);
            d["costCenter"] = json!({"id": "7", "type": "TABLE", "reference": "7"});
            d["transaction"] = sale(3, 250, None)["transaction"].clone();
            fdm.sign(Mutation::Order, &d, false, now).unwrap()
        };
        let training = fdm
            .sign(Mutation::Sale, &sale(4, 250, None), true, now)
            .unwrap();
        // Not a sale: a refund (negative total), a pro forma order, a training ticket.
        for (t, r) in [(5, &partial), (6, &order), (7, &training)] {
            let e = fdm
                .sign(Mutation::Sale, &sale(t, -250, Some(&r.fdm_ref)), false, now)
                .unwrap_err();
            assert_eq!(e[0].extensions.code, "FDM_REF_NOT_A_SALE", "{e:?}");
            assert!(e[0].message.contains("SaleInput at data.fdmRef"), "{e:?}");
        }
        // The sale, refunded in full once; a second full refund (another ticket) is refused,
        // after a restart too; the resend of the first is its stored answer.
        let first = sale(8, -250, Some(&sold.fdm_ref));
        let refund = fdm.sign(Mutation::Sale, &first, false, now).unwrap();
        assert_eq!(refund.fdm_ref.event_label, EventLabel::N);
        let mut fdm = Fdm::open(dir.path(), s).unwrap();
        let e = fdm
            .sign(
                Mutation::Sale,
                &sale(9, -250, Some(&sold.fdm_ref)),
                false,
                now,
            )
            .unwrap_err();
        assert_eq!(e[0].extensions.code, "FDM_REF_ALREADY_REFUNDED", "{e:?}");
        assert_eq!(
            fdm.sign(Mutation::Sale, &first, false, now).unwrap(),
            refund
        );
        // The refusals were not counted: the next event is 6th in total.
        let next = fdm
            .sign(Mutation::WorkIn, &work_in(10), false, now)
            .unwrap();
        assert_eq!(next.fdm_ref.total_counter, 6);
    }
}
