//! The running daemon's shared context: configuration, registrar, access store, signer, status,
//! and the fan-out of station tickets. Transports (MQTT, HTTP, plugins) hold an `Arc<App>`.

use crate::access::{AccessError, AccessStore, ClientKind, Credentials};
use crate::config::Config;
use crate::fiscal::{FdmCode, MenuPartNames, Order};
use crate::journal::record::RecordKind;
use crate::journal::{AppendError, Appended, Entry, format_time};
use crate::reports::closing::DailyClose;
use crate::restaurant::Restaurant;
use crate::restaurant::printer::Printers;
use crate::restaurant::render::{TicketContext, customer_ticket, station_ticket};
use crate::service::{Receipt, Registrar};
use crate::signer::Signer;
use crate::status::{Problem, ProblemCode, Status};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// Lines for one station, published after the order is durable.
#[derive(Debug, Clone, PartialEq)]
pub struct StationTicket {
    /// Station id (kitchen, bar…).
    pub station: String,
    /// The ticket JSON.
    pub payload: Value,
}

/// Why an enrolment or revocation did not happen. Nothing changed when it fails.
#[derive(Debug, thiserror::Error)]
pub enum EnrolError {
    /// The access store refused (bad id, already enrolled, not enrolled, file error).
    #[error(transparent)]
    Access(#[from] AccessError),
    /// The change could not be journaled, so it was not made.
    #[error("not journaled, so not changed: {0}")]
    Journal(#[from] AppendError),
}

fn kind_name(kind: ClientKind) -> &'static str {
    match kind {
        ClientKind::Register => "register",
        ClientKind::Station => "station",
    }
}

/// Shared state of the running daemon.
pub struct App {
    /// Configuration in force.
    pub config: Arc<Config>,
    /// Registers orders.
    pub registrar: Registrar,
    /// Enrolled clients.
    pub access: Arc<AccessStore>,
    /// The signer.
    pub signer: Arc<dyn Signer>,
    /// Live status.
    pub status: Arc<Status>,
    /// Cancelled when the daemon stops accepting work.
    pub shutdown: CancellationToken,
    /// Tables, staff presence, deposits… folded from the journal (`restaurant/`).
    pub restaurant: Arc<Restaurant>,
    /// Network ESC/POS printers.
    pub printers: Printers,
    /// Business and layout of printed tickets.
    pub tickets: TicketContext,
    /// X and Z reports (one at a time).
    pub reports: crate::reports::Reports,
    station_tx: broadcast::Sender<StationTicket>,
    station_readers: std::sync::RwLock<Option<StationReaders>>,
}

/// Tells whether a transport can deliver a station's tickets to anybody now.
pub type StationReaders = Arc<dyn Fn(&str) -> bool + Send + Sync>;

impl App {
    /// Assembles the context.
    pub fn new(
        config: Arc<Config>,
        registrar: Registrar,
        access: Arc<AccessStore>,
        signer: Arc<dyn Signer>,
        status: Arc<Status>,
        restaurant_wait: Duration,
    ) -> Arc<App> {
        let (station_tx, _) = broadcast::channel(1024);
        let require = config.restaurant.require_work_in;
        let restaurant = Arc::new(Restaurant::pending(require));
        let closing = Arc::new(DailyClose::new(
            registrar.numbering().clone(),
            registrar.journal().clock(),
        ));
        let registers: Vec<String> = access
            .list()
            .into_iter()
            .filter(|e| e.kind == ClientKind::Register)
            .map(|e| e.id)
            .collect();
        {
            let restaurant = restaurant.clone();
            status.add_problem_source(move || {
                if restaurant.is_ready() {
                    Vec::new()
                } else {
                    vec![Problem::new(
                        ProblemCode::RestaurantStateLoading,
                        Some(STATE_LOADING.to_owned()),
                    )]
                }
            });
            let closing = closing.clone();
            status.add_problem_source(move || closing.problems());
        }
        load_restaurant(
            restaurant.clone(),
            registrar.journal().path().to_path_buf(),
            require,
            restaurant_wait,
            (closing.clone(), registers),
        );
        let reports = crate::reports::Reports::new(
            registrar.clone(),
            crate::reports::Establishment {
                name: config.establishment.name.clone(),
                address: config.establishment.address.clone(),
                vat_number: config.establishment.vat_number.clone(),
            },
        )
        .with_restaurant(restaurant.clone())
        .with_closing(closing.clone());
        Arc::new(App {
            restaurant,
            printers: Printers::start(&config.restaurant),
            tickets: TicketContext::new(
                &config.establishment,
                &config.restaurant,
                config.numbering.digits,
            ),
            config,
            registrar,
            access,
            signer,
            status,
            shutdown: CancellationToken::new(),
            reports,
            station_tx,
            station_readers: std::sync::RwLock::new(None),
        })
    }

    /// Receives station tickets (for the MQTT bus and printers).
    pub fn subscribe_stations(&self) -> broadcast::Receiver<StationTicket> {
        self.station_tx.subscribe()
    }

    /// Who reads station tickets, when the transport knows (MQTT in embedded mode: whether
    /// anybody is subscribed to the station's topic). Tickets for a station nobody reads and no
    /// printer prints are then neither built nor sent; without it every station's are.
    pub fn set_station_readers(&self, readers: Option<StationReaders>) {
        if let Ok(mut r) = self.station_readers.write() {
            *r = readers;
        }
    }

    /// Registers an order from `register`, whatever the transport: checks the register is
    /// enrolled, journals and signs, then routes the lines to their stations.
    pub async fn handle_order(&self, register: &str, payload: &[u8]) -> Receipt {
        self.status.saw_register(register, unix_ms());
        let (receipt, order) = if !self.config.daemon.dev && !self.access.active_register(register)
        {
            let refused = Receipt::Error {
                request_id: crate::service::sniff_request_id(payload),
                code: crate::fiscal::FdmCode::InvalidData,
                message: format!("register {register} is not enrolled or was revoked"),
                field: Some("register".into()),
                problems: Vec::new(),
            };
            (refused, None)
        } else {
            let menu_parts = MenuPartNames::for_language(&self.config.restaurant.language);
            match Order::from_json_localised(register, payload, menu_parts) {
                Err(e) => (
                    Receipt::invalid(crate::service::sniff_request_id(payload), &e),
                    None,
                ),
                Ok(order) => (self.register_checked(&order).await, Some(order)),
            }
        };
        let ok = matches!(receipt, Receipt::Signed(_));
        self.status.count_order(ok);
        if let (Receipt::Signed(r), Some(order)) = (&receipt, &order)
            && r.get("code").and_then(Value::as_u64) == Some(0)
        {
            self.route_to_stations(r, order);
        }
        receipt
    }

    /// Checks an order against the restaurant state, completes it, journals it and advances the
    /// state, holding the locks of what it checked all along. The ticket is rendered from the
    /// durable record after the commit, the same way for a new answer and for a stored one
    /// (102), whichever way the resend was recognised.
    async fn register_checked(&self, order: &Order) -> Receipt {
        if !self.restaurant.wait_ready(ORDER_WAITS_FOR_STATE).await {
            // A resend needs no state: its stored answer is in the journal.
            if let Some(stored) = self
                .registrar
                .stored(&order.register, &order.request_id)
                .await
            {
                return self.with_ticket_text(self.registrar.resend_answer(order, &stored));
            }
            return Receipt::Error {
                request_id: Some(order.request_id.clone()),
                code: FdmCode::NotOperational,
                message: STATE_LOADING.to_owned(),
                field: None,
                problems: Vec::new(),
            };
        }
        let _guards = self.restaurant.lock_for(order).await;
        let original = match &order.original {
            Some(r) => self.registrar.stored(&r.register, &r.request_id).await,
            None => None,
        };
        let receipt = match self.restaurant.prepare(order, original.as_ref()) {
            // A resend of a request journaled before gets its stored answer, whatever the
            // state says now (the table it closed is closed, the operator clocked out…).
            Err(refusal) => match self
                .registrar
                .stored(&order.register, &order.request_id)
                .await
            {
                Some(stored) => self.registrar.resend_answer(order, &stored),
                None => Receipt::refused(
                    Some(order.request_id.clone()),
                    &refusal.field,
                    &refusal.message,
                ),
            },
            Ok(prepared) => {
                // The state advances from the durable record, whose body then moves into the
                // receipt.
                let (receipt, duplicate) = self
                    .registrar
                    .register_prepared_with(order, prepared, |a| {
                        self.restaurant.apply(a);
                        self.reports.saw(a);
                    })
                    .await;
                if let (Receipt::Signed(r), Some(false)) = (&receipt, duplicate)
                    && prints_on_receipt_printer(r)
                    && self.printers.has("receipts")
                {
                    self.printers
                        .print("receipts", &customer_ticket(r, &self.tickets).escpos());
                }
                receipt
            }
        };
        self.with_ticket_text(receipt)
    }

    /// A signed receipt with its printed ticket (`text`), rendered from the receipt alone.
    fn with_ticket_text(&self, receipt: Receipt) -> Receipt {
        match receipt {
            Receipt::Signed(mut r) => {
                let text = customer_ticket(&r, &self.tickets).text();
                r["text"] = json!(text);
                Receipt::Signed(r)
            }
            other => other,
        }
    }

    /// Registers a pre-computed event (FDM v1 `H`, from a plugin) for its register, with the
    /// same enrolment check as orders.
    pub async fn handle_precomputed(&self, event: &crate::fiscal::PrecomputedEvent) -> Receipt {
        self.status.saw_register(&event.register, unix_ms());
        let receipt = if !self.config.daemon.dev && !self.access.active_register(&event.register) {
            Receipt::Error {
                request_id: Some(event.request_id.clone()),
                code: crate::fiscal::FdmCode::InvalidData,
                message: format!("register {} is not enrolled or was revoked", event.register),
                field: Some("register".into()),
                problems: Vec::new(),
            }
        } else {
            self.register_precomputed_checked(event).await
        };
        self.status
            .count_order(matches!(receipt, Receipt::Signed(_)));
        receipt
    }

    /// A pre-computed event checked against the restaurant rules that can apply to it
    /// (`Restaurant::check_precomputed`), journaled, and folded into the state.
    async fn register_precomputed_checked(
        &self,
        event: &crate::fiscal::PrecomputedEvent,
    ) -> Receipt {
        if event.validate().is_err() {
            return self.registrar.register_precomputed(event).await;
        }
        let _guards = self.restaurant.lock_for_precomputed(event).await;
        if let Err(refusal) = self.restaurant.check_precomputed(event) {
            // A resend of an event journaled before gets its stored answer (102).
            if self
                .registrar
                .stored(&event.register, &event.request_id)
                .await
                .is_none()
            {
                return Receipt::refused(
                    Some(event.request_id.clone()),
                    &refusal.field,
                    &refusal.message,
                );
            }
        }
        let (receipt, appended) = self.registrar.register_precomputed_appended(event).await;
        if let Some(a) = &appended {
            self.restaurant.apply(a);
            self.reports.saw(a);
        }
        receipt
    }

    /// The printed text of a signed receipt (for stored receipts read back).
    pub fn ticket_text(&self, receipt: &Value) -> String {
        customer_ticket(receipt, &self.tickets).text()
    }

    fn route_to_stations(&self, receipt: &Value, order: &Order) {
        let listening = self.station_tx.receiver_count() > 0;
        let readers = self.station_readers.read().ok().and_then(|r| r.clone());
        let wanted = |station: &str| {
            self.printers.has(station)
                || (listening && readers.as_ref().is_none_or(|read| read(station)))
        };
        if !order
            .lines
            .iter()
            .filter_map(|l| l.station.as_deref())
            .any(wanted)
        {
            return;
        }
        let mut by_station: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
        for line in &order.lines {
            if let Some(station) = line.station.as_deref() {
                by_station.entry(station).or_default().push(json!({
                    "description": line.description,
                    "quantity": quantity_as_sent(line.quantity),
                }));
            }
        }
        for (station, lines) in by_station {
            if !wanted(station) {
                continue;
            }
            let mut payload = json!({
                "station": station,
                "register": order.register,
                "table": order.table,
                "operator": order.operator,
                "request_id": receipt.get("request_id"),
                "ticket_number": receipt.get("ticket_number"),
                "label": receipt.get("label"),
                "fdm_time": receipt.get("fdm_time"),
                "journal_seq": receipt.get("journal_seq"),
                "lines": lines,
            });
            let doc = station_ticket(&payload, &self.tickets);
            if self.printers.has(station) {
                self.printers.print(station, &doc.escpos());
            }
            payload["text"] = json!(doc.text());
            let _ = self.station_tx.send(StationTicket {
                station: station.to_owned(),
                payload,
            });
        }
    }

    /// Journals a non-fiscal record (daemon start/stop, device and configuration changes).
    pub async fn journal_event(
        &self,
        kind: RecordKind,
        body: Value,
    ) -> Result<Appended, AppendError> {
        let body = match body {
            Value::Object(map) => map,
            other => Map::from_iter([("value".to_owned(), other)]),
        };
        self.registrar
            .journal()
            .append(Entry::new(kind, body))
            .await
    }

    /// Enrols a register or station: the change is journaled (`device_change`) before the
    /// credentials are issued, so every enrolment in force has its record.
    pub async fn enrol(&self, kind: ClientKind, id: &str) -> Result<Credentials, EnrolError> {
        crate::access::check_new_id(&self.access, kind, id)?;
        self.journal_event(
            RecordKind::DeviceChange,
            json!({"action": "enrol", "device": kind_name(kind), "id": id}),
        )
        .await?;
        Ok(self.access.enrol(kind, id, &self.now())?)
    }

    /// Revokes a register or station: journaled first, then its credentials stop working.
    pub async fn revoke(&self, kind: ClientKind, id: &str) -> Result<(), EnrolError> {
        if !self
            .access
            .list()
            .iter()
            .any(|e| e.kind == kind && e.id == id && e.active)
        {
            return Err(AccessError::Unknown(id.to_owned()).into());
        }
        self.journal_event(
            RecordKind::DeviceChange,
            json!({"action": "revoke", "device": kind_name(kind), "id": id}),
        )
        .await?;
        Ok(self.access.revoke(kind, id, &self.now())?)
    }

    /// The status document (`GET /v1/status`, the retained status topic) with the open tables
    /// and the operators clocked in.
    pub fn status_document(&self) -> Value {
        let mut doc = self.status.snapshot();
        if let Value::Object(map) = &mut doc {
            map.insert(
                "restaurant_state_ready".into(),
                json!(self.restaurant.is_ready()),
            );
            map.insert(
                "open_tables".into(),
                self.restaurant.open_tables().to_json(),
            );
            map.insert(
                "clocked_in".into(),
                json!(
                    self.restaurant
                        .presence()
                        .clocked_in()
                        .iter()
                        .map(|d| json!({"operator": d.operator, "since": d.since, "register": d.register}))
                        .collect::<Vec<_>>()
                ),
            );
            map.insert("catering_due".into(), json!(self.restaurant.catering_due()));
            map.insert("printers".into(), self.printers.to_json());
        }
        doc
    }

    /// The status document as the admin token sees it: [`App::status_document`] and the
    /// admin-only members (the back office copy, `replication/`).
    pub fn admin_status_document(&self) -> Value {
        let mut doc = self.status_document();
        if let Value::Object(map) = &mut doc {
            for (name, value) in self.status.admin_sections() {
                map.insert(name.into(), value);
            }
        }
        doc
    }

    /// Now, as FDM time.
    pub fn now(&self) -> String {
        format_time(chrono::Local::now().fixed_offset())
    }
}

/// Which signed records print on the `receipts` printer: VAT tickets, copies, training tickets,
/// bills before payment and voucher sales; not kitchen rounds, clockings or table changes.
fn prints_on_receipt_printer(receipt: &Value) -> bool {
    let label = receipt.get("label").and_then(Value::as_str).unwrap_or("");
    let purpose = receipt.get("purpose").and_then(Value::as_str);
    let kind = receipt.get("record_kind").and_then(Value::as_str);
    match label.chars().next() {
        Some('N') => !matches!(purpose, Some("work_in" | "work_out")),
        Some('C' | 'T') => true,
        Some('P') => receipt.get("table_role").and_then(Value::as_str) == Some("bill"),
        _ => kind == Some("money_movement"),
    }
}

/// A quantity as registers send it: whole numbers as JSON numbers, fractions as decimal strings.
fn quantity_as_sent(quantity: rust_decimal::Decimal) -> Value {
    let q = quantity.normalize();
    match i64::try_from(q) {
        Ok(whole) if q.scale() == 0 => json!(whole),
        _ => json!(q.to_string()),
    }
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// How long an order waits for the restaurant state while it is read from the journal (the
/// first start after an upgrade folds the whole journal) before it is answered 208.
const ORDER_WAITS_FOR_STATE: Duration = Duration::from_secs(20);

/// Why an order is answered 208 while the state is read from the journal.
pub const STATE_LOADING: &str = "the restaurant state is still being read from the journal (first start after an upgrade): retry in a moment";

/// Reads the restaurant state from the journal at `journal` on a thread of its own and hands it
/// to `pending`; waits at most `wait` for it, so a start with a snapshot is ready before the
/// listeners open and only a long fold (a first start after an upgrade, a lost index) goes on
/// while the daemon serves.
fn load_restaurant(
    pending: Arc<Restaurant>,
    journal: PathBuf,
    require: bool,
    wait: Duration,
    (closing, registers): (Arc<DailyClose>, Vec<String>),
) {
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name("fdmd-restaurant-load".into())
        .spawn(move || {
            // Before the state is ready: no order or report is journaled meanwhile.
            if let Err(e) = closing.load(&journal, &registers) {
                tracing::error!(error = %e, "days without a Z report could not be read from the journal");
            }
            pending.adopt(crate::restaurant::load(&journal, require));
            let _ = done_tx.send(());
        });
    match spawned {
        Ok(_) => {
            if done_rx.recv_timeout(wait).is_err() {
                tracing::info!(
                    "restaurant state still being read from the journal: serving meanwhile (orders wait)"
                );
            }
        }
        Err(e) => tracing::error!(error = %e, "could not start reading the restaurant state"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn station_quantities_keep_the_form_registers_send() {
        assert_eq!(quantity_as_sent("2".parse().unwrap()), json!(2));
        assert_eq!(quantity_as_sent("-1.000".parse().unwrap()), json!(-1));
        assert_eq!(quantity_as_sent("0.350".parse().unwrap()), json!("0.35"));
    }
}
