//! X and Z financial reports, the yearly threshold report, and period exports.
//!
//! A report covers the fiscal events journaled since the previous Z report of its numbering
//! series (per register, or the establishment's when registers share a series, as the tickets
//! do). It is computed from the journal records themselves ([`figures`]), then appended as a
//! signed `report` record with its own uninterrupted number. A Z report also carries the
//! integrity checkpoint of its period: the chain head and a Merkle root ([`merkle`]) over the
//! hashes of every record of the period.
//!
//! Reports are serialised: one at a time, so two Z reports can never cover the same records.
//! Records journaled while a report is being computed belong to the next period (the period
//! ends at the last record that existed when the computation started).

pub mod closing;
pub use fdmd_core::reports::{figures, merkle};
pub mod gks2;
pub mod period;
pub mod text;
pub mod threshold;

use crate::fiscal::FdmCode;
use crate::journal::canonical::to_canonical;
use crate::journal::record::{RecordKind, sha256_hex, short_signature};
use crate::journal::{AppendError, Appended, Entry, RequestKey, query};
use crate::restaurant::Restaurant;
use crate::service::{Numbering, Registrar, SeriesScope};
use figures::{Event, Figures};
use serde_json::{Map, Value, json};
use std::path::Path;
use std::sync::Arc;

/// A table (or check) with a pro forma and no final sale, as a Z refusal names it: one entry per
/// register that sent a pro forma for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenTable {
    /// Table name, or check id when `check` is true.
    pub table: String,
    /// True for a check (pro formas without a table).
    pub check: bool,
    /// Register of the last pro forma it sent for the table.
    pub register: String,
    /// Journal sequence number of that pro forma.
    pub seq: u64,
}

/// X (figures so far) or Z (closes the period).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportKind {
    /// Shows the figures without closing the period.
    X,
    /// Closes the daily opening period.
    Z,
}

impl ReportKind {
    /// `X` or `Z`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReportKind::X => "X",
            ReportKind::Z => "Z",
        }
    }

    /// Parses `x`, `X`, `z` or `Z`.
    pub fn parse(text: &str) -> Option<ReportKind> {
        match text {
            "x" | "X" => Some(ReportKind::X),
            "z" | "Z" => Some(ReportKind::Z),
            _ => None,
        }
    }
}

/// The business the reports are made for (from the configuration).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Establishment {
    /// Name.
    pub name: String,
    /// Address.
    pub address: String,
    /// VAT number.
    pub vat_number: String,
}

/// A request for a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportRequest {
    /// X or Z.
    pub kind: ReportKind,
    /// The register whose series the report closes (needed when each register has its own
    /// series; ignored when the establishment shares one).
    pub register: Option<String>,
    /// Who asked: `admin` or `register:ID`.
    pub requested_by: String,
    /// Idempotency: a register's request id (a resend gets the stored report back).
    pub request_id: Option<String>,
    /// Makes a Z report although operators are still clocked in; recorded in the report.
    pub override_reason: Option<String>,
}

impl ReportRequest {
    /// Parses `{"kind":"z","register":"till-1","request_id":"…","override_reason":"…"}`.
    /// `from_register` is the register that sent it (MQTT topic or HTTP token), if any: it is
    /// then the report's register.
    pub fn from_json(bytes: &[u8], from_register: Option<&str>) -> Result<Self, ReportError> {
        let invalid = |field: &str, message: &str| ReportError::Invalid {
            field: field.to_owned(),
            message: message.to_owned(),
        };
        if bytes.len() > 4096 {
            return Err(invalid("", "a report request is at most 4096 bytes"));
        }
        let v: Value =
            serde_json::from_slice(bytes).map_err(|e| invalid("", &format!("not JSON: {e}")))?;
        let Some(obj) = v.as_object() else {
            return Err(invalid("", "must be a JSON object"));
        };
        for key in obj.keys() {
            if !["kind", "register", "request_id", "override_reason"].contains(&key.as_str()) {
                return Err(invalid(key, "unknown field"));
            }
        }
        let text = |k: &str| -> Result<Option<String>, ReportError> {
            match obj.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(invalid(k, "must be a string")),
            }
        };
        let kind = text("kind")?
            .as_deref()
            .and_then(ReportKind::parse)
            .ok_or_else(|| invalid("kind", "must be \"x\" or \"z\""))?;
        let mut register = text("register")?;
        if let Some(from) = from_register {
            if register.as_deref().is_some_and(|r| r != from) {
                return Err(invalid(
                    "register",
                    "a register can only ask for its own report",
                ));
            }
            register = Some(from.to_owned());
        }
        if let Some(r) = &register
            && !crate::fiscal::order::is_valid_id(r, 32)
        {
            return Err(invalid("register", "not a valid register id"));
        }
        let request_id = text("request_id")?;
        if let Some(id) = &request_id
            && !crate::fiscal::order::is_valid_id(id, 64)
        {
            return Err(invalid(
                "request_id",
                "1-64 characters of A-Z a-z 0-9 . _ : -",
            ));
        }
        let override_reason = text("override_reason")?;
        if let Some(r) = &override_reason
            && (r.trim().is_empty() || r.chars().count() > 200)
        {
            return Err(invalid("override_reason", "must be 1-200 characters"));
        }
        Ok(ReportRequest {
            kind,
            register,
            requested_by: from_register
                .map_or_else(|| "admin".to_owned(), |r| format!("register:{r}")),
            request_id,
            override_reason,
        })
    }

    fn canonical_digest(&self) -> Result<String, AppendError> {
        to_canonical(&json!({
            "kind": self.kind.as_str(),
            "register": self.register,
            "override_reason": self.override_reason,
        }))
        .map(|b| sha256_hex(&b))
        .map_err(|e| AppendError::Encoding(e.to_string()))
    }
}

/// Why no report was made. Nothing was journaled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    /// The request is not valid (207).
    #[error("{field}: {message}")]
    Invalid {
        /// Field at fault (empty for the whole request).
        field: String,
        /// What is wrong.
        message: String,
    },
    /// Tables have a pro forma and no final sale (207).
    #[error("Z report refused: {} open table(s) have a pro forma without a final sale: {}", .0.len(), describe_tables(.0))]
    OpenTables(Vec<OpenTable>),
    /// Operators are still clocked in and no override was given (207).
    #[error("Z report refused: operator(s) still clocked in: {} (clock them out, or give override_reason to close anyway; the override is recorded)", describe_operators(.0))]
    ClockedIn(Vec<(String, String)>),
    /// The journal could not be read (208).
    #[error("journal could not be read: {0}")]
    Read(String),
    /// The GKS 2.0 FDM did not sign the report (`[signer] backend = "gks2"`): 208 when the FDM
    /// or the link failed (the message ends with the status problem's code, e.g.
    /// `(gks2_fdm_down)`), 207 when it refused the input. Nothing was journaled.
    #[error("{message}")]
    Fdm {
        /// The FDM code of the error answer.
        code: FdmCode,
        /// What the FDM or the link said.
        message: String,
    },
    /// The report could not be journaled.
    #[error(transparent)]
    Journal(#[from] AppendError),
}

fn describe_tables(tables: &[OpenTable]) -> String {
    tables
        .iter()
        .map(|t| {
            format!(
                "{} {} (register {}, record {})",
                if t.check { "check" } else { "table" },
                t.table,
                t.register,
                t.seq
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn describe_operators(ops: &[(String, String)]) -> String {
    ops.iter()
        .map(|(o, r)| format!("{o} on {r}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl ReportError {
    /// The FDM code of the error.
    pub fn code(&self) -> FdmCode {
        match self {
            ReportError::Invalid { .. }
            | ReportError::OpenTables(_)
            | ReportError::ClockedIn(_) => FdmCode::InvalidData,
            ReportError::Read(_) => FdmCode::NotOperational,
            ReportError::Fdm { code, .. } => *code,
            ReportError::Journal(e) => e.code(),
        }
    }

    /// The error as JSON (`status`, `code`, `message`, and the lists when there are some).
    pub fn to_json(&self) -> Value {
        let mut v =
            json!({"status": "error", "code": self.code().number(), "message": self.to_string()});
        match self {
            ReportError::Invalid { field, .. } if !field.is_empty() => v["field"] = json!(field),
            ReportError::OpenTables(t) => {
                v["open_tables"] = Value::Array(t.iter().map(table_json).collect());
            }
            ReportError::ClockedIn(ops) => {
                v["clocked_in"] = Value::Array(ops.iter().map(operator_json).collect());
            }
            _ => {}
        }
        v
    }
}

fn table_json(t: &OpenTable) -> Value {
    if t.check {
        json!({"check": t.table, "register": t.register, "seq": t.seq})
    } else {
        json!({"table": t.table, "register": t.register, "seq": t.seq})
    }
}

fn operator_json((operator, register): &(String, String)) -> Value {
    json!({"operator": operator, "register": register})
}

/// The numbering series of a report: like the tickets', with `X` or `Z` as the type.
pub fn report_series(numbering: &Numbering, register: Option<&str>, kind: ReportKind) -> String {
    format!("{}/{}", numbering.series_base(register), kind.as_str())
}

/// Makes reports: one at a time.
pub struct Reports {
    registrar: Registrar,
    establishment: Establishment,
    restaurant: Option<Arc<Restaurant>>,
    closing: Option<Arc<closing::DailyClose>>,
    lock: tokio::sync::Mutex<()>,
}

/// A report computed but not journaled yet.
struct Draft {
    body: Map<String, Value>,
    /// The restaurant state folded from the same snapshot, when no running state is attached.
    floor: Option<Restaurant>,
    /// The registers the report is about; `None`: all of them.
    registers_in_scope: Option<std::collections::BTreeSet<String>>,
    /// What the GKS 2.0 input needs, gathered only under `[signer] backend = "gks2"`.
    gks2: Option<Gks2Draft>,
}

/// The period as a GKS 2.0 FDM is told it.
struct Gks2Draft {
    /// The figures of the whole report.
    all: figures::Turnover,
    /// What else the input needs from the period.
    tally: gks2::PeriodTally,
    /// The number the report will have in its series.
    number: u64,
}

impl Reports {
    /// Reports over the journal of `registrar`.
    pub fn new(registrar: Registrar, establishment: Establishment) -> Self {
        Reports {
            registrar,
            establishment,
            restaurant: None,
            closing: None,
            lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Takes open tables and clocked-in operators from the running restaurant state (the
    /// daemon's). Without it, each report folds the restaurant state from the journal snapshot
    /// it reads ([`Restaurant::from_connection`]): the same fold, so the same answer.
    pub fn with_restaurant(mut self, restaurant: Arc<Restaurant>) -> Self {
        self.restaurant = Some(restaurant);
        self
    }

    /// Tells `closing` of every Z report journaled (the daemon's: status names the series
    /// with a past day and no Z report).
    pub fn with_closing(mut self, closing: Arc<closing::DailyClose>) -> Self {
        self.closing = Some(closing);
        self
    }

    /// A record was journaled (an order's): a fiscal event opens its series' day (see
    /// [`closing`]).
    pub fn saw(&self, a: &Appended) {
        if let Some(closing) = &self.closing {
            closing.saw(a);
        }
    }

    /// Open tables (and checks) and clocked-in operators now, from the restaurant state.
    fn floor_now(r: &Restaurant) -> (Vec<OpenTable>, Vec<(String, String)>) {
        let tables = r
            .open_tables()
            .iter()
            .flat_map(|t| {
                // One entry per register that sent a pro forma for the table, the last of each.
                let mut by_register: std::collections::BTreeMap<&str, u64> =
                    std::collections::BTreeMap::new();
                for rec in &t.records {
                    by_register.insert(rec.register.as_str(), rec.seq);
                }
                by_register
                    .into_iter()
                    .map(|(register, seq)| OpenTable {
                        table: t.table.clone(),
                        check: t.check,
                        register: register.to_owned(),
                        seq,
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        let clocked = r
            .presence()
            .clocked_in()
            .into_iter()
            .map(|d| (d.operator, d.register))
            .collect();
        (tables, clocked)
    }

    /// Computes, checks (Z), journals and signs a report; returns its JSON (the record body
    /// with the signature and record data, see `docs/journal-format.md`).
    pub async fn make(&self, req: &ReportRequest) -> Result<Value, ReportError> {
        let numbering = self.registrar.numbering().clone();
        if numbering.scope != SeriesScope::Establishment && req.register.is_none() {
            return Err(ReportError::Invalid {
                field: "register".into(),
                message: match numbering.scope {
                    SeriesScope::Group => {
                        "registers share series by group: name a register (its group's report is made)"
                    }
                    _ => "each register has its own numbering series: name the register",
                }
                .into(),
            });
        }
        let _one_at_a_time = self.lock.lock().await;
        let journal = self.registrar.journal();
        let key = match (&req.request_id, req.requested_by.strip_prefix("register:")) {
            (Some(id), Some(register)) => Some(RequestKey {
                register: register.to_owned(),
                request_id: id.clone(),
                digest: req.canonical_digest()?,
            }),
            _ => None,
        };
        if let Some(k) = &key
            && let Some(stored) = journal.find_request(&k.register, &k.request_id)?
        {
            if stored.kind != RecordKind::Report
                || stored.body.get("request_digest").and_then(Value::as_str) != Some(&k.digest)
            {
                return Err(AppendError::Conflict {
                    request_id: k.request_id.clone(),
                }
                .into());
            }
            return Ok(self.report_json(&stored));
        }
        let path = journal.path().to_path_buf();
        let request = req.clone();
        let establishment = self.establishment.clone();
        let fold_floor = self.restaurant.is_none();
        let for_gks2 = self.registrar.gks2().is_some();
        if let Some(r) = &self.restaurant {
            // Open tables and presence come from the running state: wait until it is read.
            r.ready().await;
        }
        let numbering_for_compute = numbering.clone();
        let draft = tokio::task::spawn_blocking(move || {
            compute(
                &path,
                &numbering_for_compute,
                &request,
                &establishment,
                fold_floor,
                for_gks2,
            )
        })
        .await
        .map_err(|e| ReportError::Read(e.to_string()))??;
        let mut body = draft.body;
        // A Z report keeps new orders out from its check of tables and staff to its record, so
        // no table opens and nobody clocks in in between (held until the end of this call) —
        // except while a GKS 2.0 FDM signs it (below).
        let floor_held = match (&self.restaurant, req.kind) {
            (Some(r), ReportKind::Z) => Some(r.exclusive().await),
            _ => None,
        };
        let (open_now, clocked_now) = match (self.restaurant.as_deref(), &draft.floor) {
            (Some(r), _) | (None, Some(r)) => Self::floor_now(r),
            (None, None) => (Vec::new(), Vec::new()),
        };
        if req.kind == ReportKind::Z {
            let scoped = |register: &str| {
                draft
                    .registers_in_scope
                    .as_ref()
                    .is_none_or(|members| members.contains(register))
            };
            let mut open: Vec<OpenTable> = open_now
                .into_iter()
                .filter(|t| scoped(&t.register))
                .collect();
            open.dedup_by(|a, b| a.table == b.table && a.check == b.check);
            if !open.is_empty() {
                return Err(ReportError::OpenTables(open));
            }
            let clocked: Vec<(String, String)> =
                clocked_now.into_iter().filter(|(_, r)| scoped(r)).collect();
            if !clocked.is_empty() {
                let Some(reason) = &req.override_reason else {
                    return Err(ReportError::ClockedIn(clocked));
                };
                body.insert(
                    "override".into(),
                    json!({
                        "reason": reason,
                        "clocked_in": clocked.iter().map(operator_json).collect::<Vec<_>>(),
                    }),
                );
            }
        } else {
            body.insert(
                "open_tables".into(),
                Value::Array(open_now.iter().map(table_json).collect()),
            );
            body.insert(
                "clocked_in".into(),
                Value::Array(clocked_now.iter().map(operator_json).collect()),
            );
        }
        let series = report_series(&numbering, req.register.as_deref(), req.kind);
        // With a GKS 2.0 FDM, the FDM signs the report before it is journaled; when it does
        // not, nothing is journaled and the report number is not used (docs/gks2.md §6).
        if let Some(fdm) = self.registrar.gks2() {
            // Orders are not kept waiting while the FDM takes its time (up to twice its
            // timeout): the floor is released before it is asked. What they journal meanwhile
            // comes after the period's last record (`period.last_seq`, read before the check),
            // so it belongs to the next Z's period, as records journaled between the snapshot
            // and the check already do; the tables and staff checked were those of the period's
            // end or later (docs/gks2.md §6.1).
            drop(floor_held);
            let g = draft
                .gks2
                .ok_or_else(|| read_err("the period's GKS 2.0 figures were not gathered"))?;
            let last_seq = body
                .get("period")
                .and_then(|p| p.get("last_seq"))
                .and_then(Value::as_u64)
                .unwrap_or(0);
            let signed = fdm
                .sign_report(crate::gks2::backend::ReportToSign {
                    z: req.kind == ReportKind::Z,
                    register: req.register.clone(),
                    identity: format!("{series}/{}/{last_seq}", g.number),
                    report_no: g.number,
                    pos_devices: g.tally.pos_devices(),
                    fdm_devices: g.tally.fdm_devices(),
                    turnover: g.tally.turnover(&g.all),
                })
                .await
                .map_err(|r| ReportError::Fdm {
                    code: r.code,
                    message: r.message,
                })?;
            body.insert("gks2".into(), signed);
        }
        let entry = Entry {
            kind: RecordKind::Report,
            key,
            counters: None,
            series: Some(series.clone()),
            body,
        };
        let appended = journal.append(entry).await?;
        if req.kind == ReportKind::Z
            && !appended.duplicate
            && let Some(closing) = &self.closing
        {
            let last_seq = appended
                .body
                .get("period")
                .and_then(|p| p.get("last_seq"))
                .and_then(Value::as_u64)
                .unwrap_or(appended.seq);
            closing.closed(&series, last_seq);
        }
        Ok(self.report_json(&appended))
    }

    /// The answer for a report record: its body plus the record's signature data.
    pub fn report_json(&self, a: &Appended) -> Value {
        let mut v = a.body.clone();
        let number = a.body_u64("ticket_number").unwrap_or(0);
        v.insert("status".into(), json!("signed"));
        v.insert("code".into(), json!(a.code().number()));
        v.insert(
            "report_number".into(),
            json!(self.registrar.numbering().display(number)),
        );
        v.insert("fdm_id".into(), json!(a.fdm_id));
        v.insert("vsc_id".into(), json!(a.signer_id));
        v.insert("fdm_time".into(), json!(a.time));
        v.insert("journal_seq".into(), json!(a.seq));
        v.insert("signed_digest".into(), json!(hex::encode(a.hash)));
        v.insert("signature".into(), json!(hex::encode(&a.signature)));
        v.insert(
            "short_signature".into(),
            json!(short_signature(&a.signature)),
        );
        Value::Object(v)
    }
}

impl From<rusqlite::Error> for ReportError {
    fn from(e: rusqlite::Error) -> Self {
        ReportError::Read(e.to_string())
    }
}

fn read_err(e: impl std::fmt::Display) -> ReportError {
    ReportError::Read(e.to_string())
}

fn envelope_body(canonical: &[u8], seq: u64) -> Result<Map<String, Value>, ReportError> {
    let v: Value =
        serde_json::from_slice(canonical).map_err(|e| read_err(format!("record {seq}: {e}")))?;
    match v.get("body") {
        Some(Value::Object(m)) => Ok(m.clone()),
        _ => Err(read_err(format!("record {seq} has no body"))),
    }
}

/// The last report record of a series, if any.
pub fn last_of_series(
    conn: &rusqlite::Connection,
    series: &str,
) -> Result<Option<query::StoredRecord>, ReportError> {
    query::last_in_series(conn, series).map_err(read_err)
}

fn compute(
    path: &Path,
    numbering: &Numbering,
    req: &ReportRequest,
    establishment: &Establishment,
    fold_floor: bool,
    for_gks2: bool,
) -> Result<Draft, ReportError> {
    let conn = query::open_read_only(path).map_err(read_err)?;
    // Every reader sees one snapshot: the period cannot move while it is summed.
    query::in_snapshot(&conn, |conn| {
        compute_in_snapshot(conn, numbering, req, establishment, fold_floor, for_gks2)
    })
}

fn compute_in_snapshot(
    conn: &rusqlite::Connection,
    numbering: &Numbering,
    req: &ReportRequest,
    establishment: &Establishment,
    fold_floor: bool,
    for_gks2: bool,
) -> Result<Draft, ReportError> {
    let register = match numbering.scope {
        SeriesScope::PerRegister | SeriesScope::Group => req.register.clone(),
        SeriesScope::Establishment => None,
    };
    let members = numbering.members(register.as_deref());
    let z_series = report_series(numbering, register.as_deref(), ReportKind::Z);
    let previous = last_of_series(conn, &z_series)?;
    let mut first_seq = 1;
    let mut from_time = None;
    let mut previous_z = Value::Null;
    if let Some(prev) = &previous {
        let body = Value::Object(envelope_body(&prev.canonical, prev.seq)?);
        first_seq = body
            .pointer("/period/last_seq")
            .and_then(Value::as_u64)
            .unwrap_or(prev.seq)
            + 1;
        from_time = Some(prev.time.clone());
        previous_z = json!({"seq": prev.seq, "number": body.get("ticket_number")});
    }
    let number = if for_gks2 {
        let own_series = report_series(numbering, register.as_deref(), req.kind);
        match last_of_series(conn, &own_series)? {
            Some(last) => {
                envelope_body(&last.canonical, last.seq)?
                    .get("ticket_number")
                    .and_then(Value::as_u64)
                    .unwrap_or(0)
                    + 1
            }
            None => 1,
        }
    } else {
        0
    };
    let last_seq = query::last_seq(conn).map_err(read_err)?;
    let mut figures = Figures::default();
    let mut tally = for_gks2.then(gks2::PeriodTally::default);
    let mut hashes: Vec<[u8; 32]> = Vec::new();
    let mut last_operation = Value::Null;
    let mut to_time = None;
    let mut chain_head = None;
    let mut first_error = None;
    query::for_each_in_range(
        conn,
        first_seq,
        last_seq,
        |r| -> Result<(), rusqlite::Error> {
            if first_error.is_some() {
                return Ok(());
            }
            let hash = <[u8; 32]>::try_from(r.hash.as_slice()).unwrap_or([0; 32]);
            hashes.push(hash);
            from_time.get_or_insert_with(|| r.time.clone());
            to_time = Some(r.time.clone());
            chain_head = Some(hash);
            // Under gks2, table changes and voucher sales were signed by the FDM too: they go in
            // the report input's FDM ranges and label counts (docs/gks2.md §6.1), not in the
            // figures.
            let fiscal = r.kind == RecordKind::FiscalEvent.as_str();
            let signed_other = tally.is_some()
                && (r.kind == RecordKind::TableChange.as_str()
                    || r.kind == RecordKind::MoneyMovement.as_str());
            if !fiscal && !signed_other {
                return Ok(());
            }
            let body = match envelope_body(&r.canonical, r.seq) {
                Ok(b) => b,
                Err(e) => {
                    first_error = Some(e);
                    return Ok(());
                }
            };
            let from = body.get("register").and_then(Value::as_str).unwrap_or("");
            if members.as_ref().is_some_and(|m| !m.contains(from)) {
                return Ok(());
            }
            if !fiscal {
                if let Some(tally) = tally.as_mut() {
                    tally.add_signed_other(&r.kind, &body);
                }
                return Ok(());
            }
            let operator = body.get("operator").and_then(Value::as_str).unwrap_or("");
            if let Err(e) = figures.add(&Event {
                seq: r.seq,
                register: from,
                operator,
                body: &body,
            }) {
                first_error = Some(read_err(e));
                return Ok(());
            }
            if let Some(tally) = tally.as_mut() {
                tally.add(&body);
            }
            last_operation =
                json!({"seq": r.seq, "short_signature": short_signature(&r.signature)});
            Ok(())
        },
    )
    .map_err(read_err)?;
    if let Some(e) = first_error {
        return Err(e);
    }
    if chain_head.is_none() && last_seq > 0 {
        chain_head = query::record(conn, last_seq)
            .map_err(read_err)?
            .and_then(|r| <[u8; 32]>::try_from(r.hash.as_slice()).ok());
    }
    // Tables and staff from the same snapshot, by the restaurant workflows' own fold (it knows
    // moves, merges, checks and every form of clocking).
    let floor = if fold_floor {
        Some(Restaurant::from_connection(conn, false).map_err(read_err)?)
    } else {
        None
    };
    let registers: Vec<String> = match &members {
        Some(m) => m.iter().cloned().collect(),
        None => figures.registers.keys().cloned().collect(),
    };
    let per = |m: &std::collections::BTreeMap<String, figures::Turnover>| -> Map<String, Value> {
        m.iter().map(|(k, t)| (k.clone(), t.to_json())).collect()
    };
    let body = json!({
        "report": req.kind.as_str(),
        "scope": numbering.scope.as_str(),
        "registers": registers,
        "establishment": {
            "name": establishment.name,
            "address": establishment.address,
            "vat_number": establishment.vat_number,
        },
        "requested_by": req.requested_by,
        "period": {
            "first_seq": first_seq,
            "last_seq": last_seq,
            "from": from_time,
            "to": to_time,
            "previous_z": previous_z,
        },
        "totals": figures.all.to_json(),
        "operators": per(&figures.operators),
        "per_register": per(&figures.registers),
        "last_operation": last_operation,
        "checkpoint": {
            "first_seq": first_seq,
            "last_seq": last_seq,
            "records": hashes.len(),
            "chain_head": chain_head.map(hex::encode),
            "merkle_root": merkle::merkle_root(&hashes).map(hex::encode),
        },
    });
    let Value::Object(body) = body else {
        return Err(read_err("report body"));
    };
    Ok(Draft {
        body,
        floor,
        registers_in_scope: members,
        gks2: tally.map(|tally| Gks2Draft {
            all: figures.all,
            tally,
            number,
        }),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::journal::{Journal, JournalConfig};
    use fdmd_core::signer::SoftwareSigner;

    fn signed(label: &str, total_counter: u64) -> Value {
        json!({"posId": "P", "terminalId": "T1", "posDateTime": "2026-12-07T10:00:00+01:00",
               "fdmRef": {"fdmId": "F", "fdmDateTime": "2026-12-07T10:00:01+01:00",
                          "eventLabel": label, "eventCounter": 1, "totalCounter": total_counter}})
    }

    /// Under gks2 the period's FDM-signed table changes and voucher sales are in the report
    /// input (docs/gks2.md §6.1): the FDM range, and P and F in `transactions`.
    #[test]
    fn a_gks2_report_counts_the_fdm_signed_table_changes_and_voucher_sales_of_its_period() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.sqlite");
        let journal = Journal::open(
            JournalConfig::new(&path, "DEVFDMD0001"),
            Arc::new(SoftwareSigner::from_seed([7; 32])),
        )
        .unwrap();
        for (kind, body) in [
            (
                RecordKind::TableChange,
                json!({"action": "move", "from": "7", "to": "9", "lines": 1, "total": "3.00",
                       "gks2": signed("P", 4)}),
            ),
            (
                RecordKind::MoneyMovement,
                json!({"type": "voucher_sale", "total": "50.00", "gks2": signed("F", 5)}),
            ),
            // Journaled by another backend: not an FDM event.
            (
                RecordKind::MoneyMovement,
                json!({"type": "voucher_sale", "total": "20.00"}),
            ),
        ] {
            let Value::Object(body) = body else {
                panic!("not an object")
            };
            journal.append_blocking(Entry::new(kind, body)).unwrap();
        }
        journal.close();
        let req = ReportRequest {
            kind: ReportKind::X,
            register: None,
            requested_by: "admin".into(),
            request_id: None,
            override_reason: None,
        };
        let establishment = Establishment {
            name: "Test".into(),
            address: "Grote Markt 1".into(),
            vat_number: "BE0123456749".into(),
        };
        let draft = compute(
            &path,
            &Numbering::default(),
            &req,
            &establishment,
            false,
            true,
        )
        .unwrap();
        let g = draft.gks2.unwrap();
        let fdms = g.tally.fdm_devices();
        assert_eq!(fdms.len(), 1);
        assert_eq!(
            (fdms[0].first_total_counter, fdms[0].last_total_counter),
            (4, 5)
        );
        assert_eq!(g.tally.pos_devices().len(), 1);
        let transactions: Vec<_> = g
            .tally
            .turnover(&g.all)
            .transactions
            .iter()
            .map(|t| (t.event_label.as_str(), t.ticket_count, t.amount.to_string()))
            .collect();
        assert_eq!(
            transactions,
            [("P", 1, "0".to_owned()), ("F", 1, "50.00".to_owned())]
        );
        // Without gks2 nothing is gathered.
        let draft = compute(
            &path,
            &Numbering::default(),
            &req,
            &establishment,
            false,
            false,
        )
        .unwrap();
        assert!(draft.gks2.is_none());
    }
}
