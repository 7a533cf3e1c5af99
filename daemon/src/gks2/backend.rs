//! `[signer] backend = "gks2"` (docs/gks2.md §8): before fdmd journals a fiscal event, a GKS 2.0
//! FDM signs it. The five resend keys of each request are reserved (and made durable) before the
//! first attempt, so a retry after a timeout, a lost answer or a crash sends the same keys and
//! the FDM answers its first event: never two FDM events for one order. The FDM's `SignResult`
//! becomes the `gks2` member of the record body; the journal stays hash-chained and signed by
//! fdmd's own key. The ticket is refused when the FDM's VAT differs from fdmd's.

use super::client::{Client, ClientConfig, Gks2Error, Tls};
use super::map::{
    Mapped, PosContext, check_vat, map_copy, map_money_in_out, map_order, map_refund,
    map_table_change,
};
use super::model::{
    BaseInput, FdmDeviceInput, FdmRef, Language, Mutation, PosDeviceInput, ReportTurnoverInput,
    SignResult, TurnoverInput,
};
use crate::config::Gks2SignerSection;
use crate::fiscal::order::OrderLine;
use crate::fiscal::{FdmCode, Order, Sale};
use crate::status::{Problem, ProblemCode};
use rusqlite::{OptionalExtension, params};
use serde_json::Value;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// The GKS 2.0 FDM fdmd signs with.
pub struct Backend {
    client: Client,
    section: Gks2SignerSection,
    vat_no: String,
    language: Language,
    keys: Arc<Mutex<rusqlite::Connection>>,
    health: Mutex<Health>,
}

/// What the last exchange with the FDM showed, for the status problems (`docs/status.md`).
#[derive(Debug, Default)]
struct Health {
    /// Why the last request got no signature, when the cause is the FDM's or the link's (not
    /// the event's); cleared when the FDM signs again.
    failure: Option<Problem>,
    /// The last signed event's warnings: buffer nearly full, clock difference.
    warnings: Vec<Problem>,
}

/// Why an event got no FDM signature: the code of the error receipt and its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// FDM result code of the error receipt.
    pub code: FdmCode,
    /// What the restaurant is told.
    pub message: String,
}

impl Backend {
    /// Opens the key reservations (`gks2-keys.sqlite` in `data_dir`) and reads the secret;
    /// `language` is the tickets' (`[restaurant] language`: fr, nl, de, en).
    pub fn open(
        section: &Gks2SignerSection,
        vat_no: &str,
        language: &str,
        data_dir: &Path,
    ) -> anyhow::Result<Self> {
        let secret = super::emulator::read_secret(&section.secret_file)?;
        let conn = rusqlite::Connection::open(data_dir.join("gks2-keys.sqlite"))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS reservations (
                register TEXT NOT NULL,
                request_id TEXT NOT NULL,
                terminal_id TEXT NOT NULL,
                ticket_no INTEGER NOT NULL,
                pos_date_time TEXT NOT NULL,
                PRIMARY KEY (register, request_id),
                UNIQUE (terminal_id, ticket_no)
            );",
        )?;
        tracing::info!(
            "signing fiscal events with the GKS 2.0 FDM {} at {} over {} (and journal records with fdmd's own key)",
            section.device_id,
            section.address,
            match (&section.ca_file, &section.client_cert_file) {
                (None, _) => "plain HTTP",
                (Some(_), None) => "HTTPS",
                (Some(_), Some(_)) => "HTTPS with a client certificate",
            }
        );
        let tls = match &section.ca_file {
            None => None,
            Some(ca) => Some(
                Tls::new(
                    ca,
                    section
                        .client_cert_file
                        .as_deref()
                        .zip(section.client_key_file.as_deref()),
                    section.server_name.as_deref(),
                    section.address,
                )
                .map_err(|e| anyhow::anyhow!("signer.gks2: {e}"))?,
            ),
        };
        Ok(Backend {
            client: Client::new(ClientConfig {
                addr: section.address,
                device_id: section.device_id.clone(),
                secret,
                timeout: Duration::from_millis(section.timeout_ms),
                tls,
            }),
            section: section.clone(),
            vat_no: vat_no.to_owned(),
            language: match language {
                "nl" => Language::NL,
                "de" => Language::DE,
                "en" => Language::EN,
                _ => Language::FR,
            },
            keys: Arc::new(Mutex::new(conn)),
            health: Mutex::new(Health::default()),
        })
    }

    fn terminal(&self, register: &str) -> String {
        self.section
            .terminal_ids
            .get(register)
            .cloned()
            .unwrap_or_else(|| register.to_owned())
    }

    /// The ticket number and POS time of a request: the ones reserved at its first attempt, or
    /// new ones (the terminal's next number, now), committed before the FDM is asked.
    async fn reserve(&self, order: &Order) -> Result<(u64, String), Refusal> {
        self.reserve_keys(
            &order.register,
            &order.request_id,
            self.terminal(&order.register),
        )
        .await
    }

    /// The ticket number and POS time reserved for `(register, request_id)` on `terminal`.
    async fn reserve_keys(
        &self,
        register: &str,
        request_id: &str,
        terminal: String,
    ) -> Result<(u64, String), Refusal> {
        let keys = self.keys.clone();
        let (register, request_id) = (register.to_owned(), request_id.to_owned());
        let now = chrono::Local::now()
            .format("%Y-%m-%dT%H:%M:%S%:z")
            .to_string();
        let work = tokio::task::spawn_blocking(
            move || -> Result<(u64, String), rusqlite::Error> {
                let mut conn = keys.lock().unwrap_or_else(PoisonError::into_inner);
                let tx = conn.transaction()?;
                let found: Option<(i64, String)> = tx
                .query_row(
                    "SELECT ticket_no, pos_date_time FROM reservations WHERE register = ?1 AND request_id = ?2",
                    params![register, request_id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
                let (n, time) = match found {
                    Some(f) => f,
                    None => {
                        let next: i64 = tx.query_row(
                        "SELECT COALESCE(MAX(ticket_no), 0) + 1 FROM reservations WHERE terminal_id = ?1",
                        params![terminal],
                        |r| r.get(0),
                    )?;
                        tx.execute(
                        "INSERT INTO reservations (register, request_id, terminal_id, ticket_no, pos_date_time) VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![register, request_id, terminal, next, now],
                    )?;
                        (next, now)
                    }
                };
                tx.commit()?;
                Ok((u64::try_from(n).unwrap_or(0), time))
            },
        );
        match work.await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(Refusal {
                code: FdmCode::NotOperational,
                message: format!("GKS 2.0: reserving the ticket number failed: {e}"),
            }),
            Err(e) => Err(Refusal {
                code: FdmCode::NotOperational,
                message: format!("GKS 2.0: {e}"),
            }),
        }
    }

    /// The POS side of one request: its reserved keys (ticket number, POS time) and fdmd's
    /// settings.
    fn context(&self, order: &Order, ticket: u64, time: String) -> PosContext {
        PosContext {
            pos_id: self.section.pos_id.clone(),
            pos_sw_version: concat!("fdmd-", env!("CARGO_PKG_VERSION")).into(),
            vat_no: self.vat_no.clone(),
            est_no: self.section.est_no.clone(),
            terminal_id: self.terminal(&order.register),
            device_id: order.register.clone(),
            booking_period_id: self.section.booking_period_id.clone(),
            booking_date: time.get(..10).unwrap_or_default().to_owned(),
            language: self.language,
            pos_fiscal_ticket_no: ticket,
            pos_date_time: time,
        }
    }

    /// Maps `order` with its reserved keys: the keys are reserved (and committed) before the
    /// mapping, so a retry of the same request sends the same five keys.
    async fn mapped(
        &self,
        order: &Order,
        map: impl FnOnce(&PosContext) -> Result<Mapped, super::map::MapError>,
    ) -> Result<Mapped, Refusal> {
        let (ticket, time) = self.reserve(order).await?;
        let ctx = self.context(order, ticket, time);
        map(&ctx).map_err(|e| Refusal {
            code: FdmCode::InvalidData,
            message: e.to_string(),
        })
    }

    /// Sends a mapped event, once more with the very same body after a timeout (the GKS 2.0
    /// resend rule), and keeps what the answer says of the FDM's health.
    async fn exchange(&self, mapped: &Mapped) -> Result<SignResult, Refusal> {
        let body = Client::request_body(mapped.mutation, &mapped.data, mapped.training)
            .map_err(|e| refusal(&e))?;
        let sent = match self.client.send(mapped.mutation, &body).await {
            Err(Gks2Error::Timeout { .. }) => self.client.send(mapped.mutation, &body).await,
            other => other,
        };
        self.note(&sent);
        sent.map_err(|e| refusal(&e))
    }

    /// Has the FDM sign `order` (checked and completed) and answers the body member to journal.
    /// `refunded` is the FDM reference of the sale a full refund gives back (docs/gks2.md §6.4).
    pub async fn sign(
        &self,
        order: &Order,
        sale: &Sale,
        refunded: Option<&FdmRef>,
    ) -> Result<Value, Refusal> {
        let mapped = self
            .mapped(order, |ctx| match refunded {
                Some(original) => map_refund(order, sale, original, ctx),
                None => map_order(order, sale, ctx),
            })
            .await?;
        let result = self.exchange(&mapped).await?;
        if let Some(vat) = &result.vat_calc {
            check_vat(sale, vat).map_err(|e| Refusal {
                code: FdmCode::InvalidData,
                message: format!("the GKS 2.0 FDM's VAT differs from fdmd's, no ticket: {e}"),
            })?;
        }
        Ok(journal_member(&result))
    }

    /// Has the FDM sign a copy (`signCopy`) of the ticket whose FDM reference is `original`
    /// and answers the body member to journal (docs/gks2.md §6.2).
    pub async fn sign_copy(&self, order: &Order, original: &FdmRef) -> Result<Value, Refusal> {
        let mapped = self
            .mapped(order, |ctx| map_copy(order, original, ctx))
            .await?;
        Ok(journal_member(&self.exchange(&mapped).await?))
    }

    /// Has the FDM sign a voucher sale (`signMoneyInOut`, one line per payment received) and
    /// answers the body member to journal (docs/gks2.md §6.5).
    pub async fn sign_money_in_out(&self, order: &Order) -> Result<Value, Refusal> {
        // Refused before a POS ticket number is reserved for it.
        super::map::voucher_reference(order).map_err(|e| Refusal {
            code: FdmCode::InvalidData,
            message: e.to_string(),
        })?;
        let mapped = self
            .mapped(order, |ctx| map_money_in_out(order, ctx))
            .await?;
        Ok(journal_member(&self.exchange(&mapped).await?))
    }

    /// Has the FDM sign a table move or merge (`signCostCenterChange`) of the lines `moved`
    /// (those registered on `order.table`) and answers the body member to journal
    /// (docs/gks2.md §6.3).
    pub async fn sign_table_change(
        &self,
        order: &Order,
        moved: &[OrderLine],
    ) -> Result<Value, Refusal> {
        let mapped = self
            .mapped(order, |ctx| map_table_change(order, moved, ctx))
            .await?;
        Ok(journal_member(&self.exchange(&mapped).await?))
    }
}

/// An X or Z report to have signed (docs/gks2.md §6): its keys and its input's own fields.
#[derive(Debug, Clone)]
pub struct ReportToSign {
    /// Z (closes the period) or X.
    pub z: bool,
    /// The register whose series the report closes; `None` for the establishment's.
    pub register: Option<String>,
    /// What identifies the report's content: its series, number and the last journal record of
    /// its period. A retry of the same report reuses the keys reserved for it (the FDM answers
    /// its first event); a report over other records gets new ones.
    pub identity: String,
    /// The report's number in its series (`reportNo` of a Z report).
    pub report_no: u64,
    /// The terminals covered.
    pub pos_devices: Vec<PosDeviceInput>,
    /// The FDM events covered.
    pub fdm_devices: Vec<FdmDeviceInput>,
    /// The figures.
    pub turnover: TurnoverInput,
}

/// The terminal of an establishment-wide report (no register): `[signer.gks2] terminal_ids`
/// may map it like a register.
pub const REPORT_TERMINAL: &str = "fdmd";

impl Backend {
    /// Has the FDM sign an X or Z report (`signReportTurnoverX` / `Z`) and answers the body
    /// member to journal. The keys are reserved in `gks2-keys.sqlite` as an order's are, under
    /// the register (empty for the establishment) and `report/` + the report's identity (a
    /// request id of an order cannot contain `/`).
    pub async fn sign_report(&self, report: ReportToSign) -> Result<Value, Refusal> {
        let register = report.register.as_deref().unwrap_or("");
        let terminal = self.terminal(report.register.as_deref().unwrap_or(REPORT_TERMINAL));
        let (ticket, time) = self
            .reserve_keys(
                register,
                &format!("report/{}", report.identity),
                terminal.clone(),
            )
            .await?;
        let booking_date = time.get(..10).unwrap_or_default().to_owned();
        let input = ReportTurnoverInput {
            base: BaseInput {
                language: self.language,
                vat_no: self.vat_no.clone(),
                est_no: self.section.est_no.clone(),
                pos_id: self.section.pos_id.clone(),
                pos_fiscal_ticket_no: ticket,
                pos_date_time: time,
                pos_sw_version: concat!("fdmd-", env!("CARGO_PKG_VERSION")).into(),
                terminal_id: terminal,
                device_id: report
                    .register
                    .clone()
                    .unwrap_or_else(|| REPORT_TERMINAL.to_owned()),
                booking_period_id: self.section.booking_period_id.clone(),
                booking_date: booking_date.clone(),
                ticket_medium: "PAPER".into(),
                // A report is asked for by the admin or a register, not by an operator.
                employee_id: String::new(),
            },
            report_no: report.z.then_some(report.report_no),
            report_booking_date: report.z.then_some(booking_date),
            pos_devices: report.pos_devices,
            fdm_devices: report.fdm_devices,
            turnover: report.turnover,
        };
        let mutation = if report.z {
            Mutation::ReportTurnoverZ
        } else {
            Mutation::ReportTurnoverX
        };
        let data = serde_json::to_value(&input).map_err(|e| Refusal {
            code: FdmCode::InvalidData,
            message: format!("GKS 2.0 input: {e}"),
        })?;
        let result = self
            .exchange(&Mapped {
                mutation,
                training: false,
                data,
            })
            .await?;
        Ok(journal_member(&result))
    }
}

impl Backend {
    /// Keeps what this exchange says of the FDM's health.
    fn note(&self, sent: &Result<SignResult, Gks2Error>) {
        let mut health = self.health.lock().unwrap_or_else(PoisonError::into_inner);
        match sent {
            Ok(result) => {
                health.failure = None;
                health.warnings.clear();
                if result.buffer_nearly_full() {
                    health.warnings.push(Problem::new(
                        ProblemCode::Gks2BufferNearlyFull,
                        Some(format!(
                            "{} % of the FDM's buffer in use (the FDM must send its events)",
                            result.buffer_capacity_used
                        )),
                    ));
                }
                if result.clock_difference() {
                    health.warnings.push(Problem::new(
                        ProblemCode::Gks2ClockDifference,
                        Some("the FDM warns that this box's time differs from its own".into()),
                    ));
                }
            }
            Err(e) => {
                if let Some(code) = problem_code(e) {
                    health.failure = Some(Problem::new(code, Some(e.to_string())));
                }
            }
        }
    }

    /// The status problems the FDM's last answers show (none while it signs without warnings).
    pub fn problems(&self) -> Vec<Problem> {
        let health = self.health.lock().unwrap_or_else(PoisonError::into_inner);
        health
            .failure
            .iter()
            .chain(&health.warnings)
            .cloned()
            .collect()
    }
}

/// The status problem of a failure that is the FDM's or the link's, not the event's.
fn problem_code(e: &Gks2Error) -> Option<ProblemCode> {
    match e {
        Gks2Error::FdmDown { .. } | Gks2Error::Timeout { .. } | Gks2Error::Malformed(_) => {
            Some(ProblemCode::Gks2FdmDown)
        }
        Gks2Error::AuthenticationRefused(_) | Gks2Error::Tls(_) => {
            Some(ProblemCode::Gks2AuthRefused)
        }
        Gks2Error::Http { status, .. } if matches!(status.as_u16(), 401 | 403 | 404) => {
            // 404: no device with this id at that address.
            Some(ProblemCode::Gks2AuthRefused)
        }
        Gks2Error::ClockDifference(_) => Some(ProblemCode::Gks2ClockDifference),
        Gks2Error::BufferFull => Some(ProblemCode::Gks2BufferFull),
        Gks2Error::Http { .. } => Some(ProblemCode::Gks2FdmDown),
        Gks2Error::TooLarge | Gks2Error::GraphQl(_) => None,
    }
}

/// The error receipt of a failure: 207 for the event's own faults, 208 for the FDM's or the
/// link's, whose message ends with the status problem's code, e.g. `(gks2_fdm_down)`.
fn refusal(e: &Gks2Error) -> Refusal {
    match problem_code(e) {
        Some(problem) => Refusal {
            code: FdmCode::NotOperational,
            message: format!("GKS 2.0 FDM: {e} ({problem})"),
        },
        None => Refusal {
            code: FdmCode::InvalidData,
            message: format!("GKS 2.0 FDM: {e}"),
        },
    }
}

/// The `SignResult` as the journal stores it: fractional numbers (amounts) as decimal strings,
/// since canonical journal JSON has integers only.
pub fn journal_member(r: &SignResult) -> Value {
    fn strings(v: Value) -> Value {
        match v {
            Value::Number(n) if !(n.is_i64() || n.is_u64()) => Value::String(n.to_string()),
            Value::Array(a) => Value::Array(a.into_iter().map(strings).collect()),
            Value::Object(m) => {
                Value::Object(m.into_iter().map(|(k, v)| (k, strings(v))).collect())
            }
            other => other,
        }
    }
    strings(serde_json::to_value(r).unwrap_or(Value::Null))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_request_keeps_its_reserved_keys_across_attempts_and_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "s").unwrap();
        let section = Gks2SignerSection {
            device_id: "d".into(),
            secret_file: secret,
            pos_id: "P".into(),
            ..Gks2SignerSection::default()
        };
        let order = |id: &str| {
            let json = format!(
                r#"{{"request_id": "{id}", "operator": "85073003328", "event_type": "normal",
                    "lines": [{{"description": "Cola", "quantity": 1, "unit_price": "2.20", "vat": "A"}}]}}"#
            );
            Order::from_json("till-1", json.as_bytes()).unwrap()
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let first = {
            let b = Backend::open(&section, "BE0123456749", "nl", dir.path()).unwrap();
            let first = rt.block_on(b.reserve(&order("a"))).unwrap();
            assert_eq!(first.0, 1);
            assert_eq!(rt.block_on(b.reserve(&order("a"))).unwrap(), first);
            assert_eq!(rt.block_on(b.reserve(&order("b"))).unwrap().0, 2);
            first
        };
        let b = Backend::open(&section, "BE0123456749", "nl", dir.path()).unwrap();
        assert_eq!(rt.block_on(b.reserve(&order("a"))).unwrap(), first);
        assert_eq!(rt.block_on(b.reserve(&order("c"))).unwrap().0, 3);
    }
}
