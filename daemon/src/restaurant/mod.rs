//! Restaurant workflows on top of the fiscal core: table service (pro forma rounds, bills, final
//! tickets, moves and merges), staff presence (WORK IN / WORK OUT), copies, refunds, deposits,
//! vouchers, all-in menus, discounts and catering events.
//!
//! The journal is the truth. Everything here is a cache folded from durable records
//! ([`Restaurant::apply`]), rebuilt from the journal at start-up ([`Restaurant::rebuild`]), so it
//! survives restarts. [`Restaurant::prepare`] checks an order against that state and completes it
//! (a final ticket gets the table's lines, a copy the original's, deposits and discounts their
//! lines) before the registrar journals it; the caller holds [`Restaurant::lock_for`] from the
//! check until the record is applied.
//!
//! For other modules (reports): [`Restaurant::open_tables`] ([`floor::OpenTables`]) and
//! [`Restaurant::presence`] ([`staff::Presence`]) give consistent snapshots;
//! [`Restaurant::exclusive`] holds every order off while a report checks them and is journaled.

pub mod catering;
pub mod escpos;
pub mod floor;
pub mod history;
pub mod locks;
pub mod printer;
pub mod render;
pub mod snapshot;
pub mod staff;

use crate::fiscal::EventType;
use crate::fiscal::PrecomputedEvent;
use crate::fiscal::money::{format_amount, round_cents};
use crate::fiscal::order::{
    LineRole, Order, OrderLine, Payment, PaymentMethod, Purpose, Reference, allocate,
    discounts_json, parse_serde,
};
use crate::fiscal::vat::VatLetter;
use crate::journal::read;
use crate::journal::record::RecordKind;
use crate::journal::{Appended, Clock, SystemClock};
use catering::{Catering, Event, Role};
use floor::OpenTables;
use history::History;
use rust_decimal::Decimal;
use serde_json::{Map, Value, json};
use staff::{Presence, Shift, Work, work_event};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

const FLOOR_KEY: &str = "floor";

/// The file beside the journal that holds the restaurant's index and snapshot (derived data,
/// rebuilt from the journal when missing or stale).
pub const INDEX_FILE: &str = "restaurant-state.sqlite";

/// An order refused by a restaurant rule; nothing was journaled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Refusal {
    /// The field at fault.
    pub field: String,
    /// Why.
    pub message: String,
}

fn refuse<T>(field: &str, message: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal {
        field: field.to_owned(),
        message: message.into(),
    })
}

/// An order checked and completed, ready for the registrar.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The record kind it becomes.
    pub kind: RecordKind,
    /// The order with every line the ticket lists (for a table move or merge: the lines it
    /// moves).
    pub order: Order,
    /// Members added to the journal body (`table_role`, `copy_of`, `refund_of`, …).
    pub extra: Map<String, Value>,
}

/// A deposit received and not yet deducted.
#[derive(Debug, Clone, PartialEq)]
struct DepositState {
    seq: u64,
    ticket_number: Option<u64>,
    lines: Vec<OrderLine>,
    total: Decimal,
}

/// What is open now (bounded by the tables, checks, operators, deposits and catering events
/// that are open, not by the journal), and the index for the rest ([`History`]).
struct State {
    floor: OpenTables,
    staff: Presence,
    /// Deposits not yet deducted (a deducted one is looked up in `history`).
    deposits: BTreeMap<Reference, DepositState>,
    /// Catering events not yet settled (a settled one is looked up in `history`).
    catering: Catering,
    history: History,
}

impl State {
    /// Every part of the state, borrowed at once, for folding records into it.
    fn parts(&mut self) -> Parts<'_> {
        Parts {
            floor: &mut self.floor,
            staff: &mut self.staff,
            deposits: &mut self.deposits,
            catering: &mut self.catering,
            history: &mut self.history,
        }
    }

    fn new(history: History) -> State {
        State {
            floor: OpenTables::default(),
            staff: Presence::default(),
            deposits: BTreeMap::new(),
            catering: Catering::default(),
            history,
        }
    }

    /// The catering event `id`: open ones from memory, settled ones from the journal.
    fn catering_event(&self, id: &str) -> Result<Option<Event>, Refusal> {
        match self.catering.get(id) {
            Some(e) => Ok(Some(e.clone())),
            None => self
                .history
                .catering_event(id)
                .or_else(|e| refuse("catering_event", history_unreadable(&e))),
        }
    }
}

fn history_unreadable(e: &str) -> String {
    format!("the restaurant history could not be read from the journal: {e}")
}

/// The daemon's state for the journal at `journal`, with its index file beside it: from the
/// snapshot when it matches, else folded from the whole journal. The index file is derived
/// data: when it cannot be written (a full disk), the state is folded with the index in memory,
/// so orders still get the journal's own answer (205) rather than a refusal of the restaurant
/// rules; when the journal cannot be read, every order is refused with the reason.
pub fn load(journal: &Path, require_work_in: bool) -> Restaurant {
    let index = journal.with_file_name(INDEX_FILE);
    match Restaurant::open(journal, &index, require_work_in) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, file = %index.display(), "restaurant index file unusable: folding the journal with the index in memory");
            match Restaurant::rebuild(journal, require_work_in) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "restaurant state could not be read from the journal");
                    Restaurant::unavailable(require_work_in, e.to_string())
                }
            }
        }
    }
}

/// The restaurant state of the running daemon.
pub struct Restaurant {
    state: Mutex<State>,
    locks: locks::KeyedLocks,
    require_work_in: bool,
    unavailable: OnceLock<String>,
    clock: Arc<dyn Clock>,
    /// Records applied since the last snapshot was written.
    unsaved: AtomicU64,
    /// The sequence number of the snapshot the state was restored from at start-up.
    restored_from: OnceLock<u64>,
    /// False while the state is still being read from the journal (see
    /// [`Restaurant::pending`]); orders and reports wait for it.
    ready: tokio::sync::watch::Sender<bool>,
}

fn body_text<'a>(body: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    body.get(key).and_then(Value::as_str)
}

fn reference_of(body: &Map<String, Value>) -> Option<Reference> {
    Some(Reference {
        register: body_text(body, "register")?.to_owned(),
        request_id: body_text(body, "request_id")?.to_owned(),
    })
}

fn reference_in(v: &Value) -> Option<Reference> {
    Some(Reference {
        register: v.get("register")?.as_str()?.to_owned(),
        request_id: v.get("request_id")?.as_str()?.to_owned(),
    })
}

fn amount(body: &Map<String, Value>, key: &str) -> Decimal {
    body_text(body, key)
        .and_then(|t| t.parse().ok())
        .unwrap_or_default()
}

fn lines_of(body: &Map<String, Value>) -> Vec<OrderLine> {
    match body.get("lines") {
        Some(Value::Array(lines)) => lines.iter().filter_map(OrderLine::from_journal).collect(),
        _ => Vec::new(),
    }
}

fn line_total(l: &OrderLine) -> Decimal {
    round_cents(l.quantity * l.unit_price)
}

impl Restaurant {
    /// An empty state (a new journal).
    pub fn new(require_work_in: bool) -> Self {
        Restaurant::with_history(require_work_in, History::in_memory())
    }

    fn with_history(require_work_in: bool, history: History) -> Self {
        Restaurant {
            state: Mutex::new(State::new(history)),
            locks: locks::KeyedLocks::default(),
            require_work_in,
            unavailable: OnceLock::new(),
            clock: Arc::new(SystemClock),
            unsaved: AtomicU64::new(0),
            restored_from: OnceLock::new(),
            ready: tokio::sync::watch::Sender::new(true),
        }
    }

    /// A state still to be read from the journal: it answers nothing until
    /// [`Restaurant::adopt`] hands it the state read elsewhere (on a thread of its own, so
    /// the daemon can serve while a long journal is folded). Orders wait in
    /// [`Restaurant::lock_for`], reports in [`Restaurant::exclusive`].
    pub fn pending(require_work_in: bool) -> Self {
        let r = Restaurant::new(require_work_in);
        r.ready.send_replace(false);
        r
    }

    /// Takes over the state `loaded` read from the journal and wakes whoever waits for it.
    pub fn adopt(&self, loaded: Restaurant) {
        let Restaurant {
            state,
            unavailable,
            unsaved,
            restored_from,
            ..
        } = loaded;
        *self.state() = state.into_inner().unwrap_or_else(|p| p.into_inner());
        if let Some(reason) = unavailable.into_inner() {
            let _ = self.unavailable.set(reason);
        }
        if let Some(at) = restored_from.into_inner() {
            let _ = self.restored_from.set(at);
        }
        self.unsaved.store(unsaved.into_inner(), Ordering::Relaxed);
        self.ready.send_replace(true);
    }

    /// Whether the state has been read from the journal.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Waits at most `limit` for the state to be read from the journal; tells whether it is.
    pub async fn wait_ready(&self, limit: Duration) -> bool {
        // Ready (every order after start-up): no timer, so this also works on a runtime built
        // without one (benchmarks, embedders).
        if self.is_ready() {
            return true;
        }
        let mut ready = self.ready.subscribe();
        matches!(
            tokio::time::timeout(limit, ready.wait_for(|r| *r)).await,
            Ok(Ok(_))
        )
    }

    /// Waits, without limit, for the state to be read from the journal.
    pub async fn ready(&self) {
        let mut ready = self.ready.subscribe();
        // The sender lives in `self`: the wait ends only when it says ready.
        let _ = ready.wait_for(|r| *r).await;
    }

    /// Uses `clock` (the journal's) to tell whether a catering event has ended.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// A state that could not be rebuilt: every order is refused (code 207) with `reason`
    /// rather than checked against a state that may be wrong.
    pub fn unavailable(require_work_in: bool, reason: String) -> Self {
        let r = Restaurant::new(require_work_in);
        let _ = r.unavailable.set(reason);
        r
    }

    /// The state folded from every record of the journal at `path` (read-only connection; the
    /// index of past refunds, deposits, catering events and shifts is kept in memory: for
    /// offline readers such as `fdmctl`).
    pub fn rebuild(path: &Path, require_work_in: bool) -> rusqlite::Result<Self> {
        if !path.exists() {
            return Ok(Restaurant::new(require_work_in));
        }
        let r = Restaurant::with_history(require_work_in, History::over_journal(path)?);
        r.fold_journal(0)?;
        Ok(r)
    }

    /// The daemon's state, with the index file `index` beside the journal at `journal`: from
    /// the snapshot stored there when it matches the journal (its records folded again, then
    /// every record after it), else folded from the first record (streamed, one at a time).
    /// A new snapshot is written either way.
    pub fn open(journal: &Path, index: &Path, require_work_in: bool) -> rusqlite::Result<Self> {
        let r = Restaurant::with_history(require_work_in, History::open(index, journal)?);
        let restored_from = r.restore_snapshot()?;
        if let Some(at) = restored_from {
            let _ = r.restored_from.set(at);
        }
        match restored_from {
            Some(at) => {
                tracing::info!(seq = at, "restaurant state restored from its snapshot");
                r.fold_journal(at)?;
            }
            None => {
                tracing::info!("restaurant state folded from the whole journal");
                r.state().history.clear()?;
                r.fold_journal(0)?;
            }
        }
        if let Err(e) = r.save_snapshot() {
            tracing::warn!(error = %e, "restaurant snapshot not written");
        }
        Ok(r)
    }

    /// Puts back the state of the stored snapshot, if there is one and it matches the journal
    /// (the record it names has the hash it names, every record it lists is there): gives its
    /// sequence number. Otherwise the state is left empty and None is given.
    fn restore_snapshot(&self) -> rusqlite::Result<Option<u64>> {
        let mut st = self.state();
        let Some(journal) = st.history.journal() else {
            return Ok(None);
        };
        let journal = store_reader(journal)?;
        let Some(snap) = st
            .history
            .meta(snapshot::KEY)?
            .and_then(|b| snapshot::Snapshot::decode(&b))
        else {
            return Ok(None);
        };
        if read::hash_at(&journal, snap.seq)?.as_deref() != Some(snap.hash.as_slice()) {
            tracing::warn!(
                seq = snap.seq,
                "restaurant snapshot does not match the journal: rebuilding"
            );
            return Ok(None);
        }
        st.history.forget_after(snap.seq)?;
        let (mut floor, mut staff, mut deposits, mut catering) = Default::default();
        let mut parts = Parts {
            floor: &mut floor,
            staff: &mut staff,
            deposits: &mut deposits,
            catering: &mut catering,
            history: &mut st.history,
        };
        for &seq in &snap.records {
            match read::body_at(&journal, seq)? {
                Some((kind @ (RecordKind::FiscalEvent | RecordKind::TableChange), time, body)) => {
                    parts.apply(seq, kind, &time, &body);
                }
                _ => {
                    tracing::warn!(seq, "restaurant snapshot names a record that is not there");
                    return Ok(None);
                }
            }
        }
        (st.floor, st.staff, st.deposits, st.catering) = (floor, staff, deposits, catering);
        Ok(Some(snap.seq))
    }

    /// Writes a snapshot at the journal's last record. Call it while no order is between its
    /// record and [`Restaurant::apply`] (holding [`Restaurant::exclusive`], or at start-up).
    pub fn save_snapshot(&self) -> Result<(), String> {
        let st = self.state();
        let Some(journal) = st.history.journal() else {
            return Ok(());
        };
        let err = |e: rusqlite::Error| e.to_string();
        if st.history.is_broken() {
            // The index missed a record: the next start must fold everything again.
            st.history.set_meta(snapshot::KEY, b"").map_err(err)?;
            return Err("the restaurant index is not up to date".into());
        }
        let seq = read::last_seq(journal).map_err(err)?;
        let Some(hash) = read::hash_at(journal, seq).map_err(err)? else {
            return Ok(());
        };
        let records = st
            .floor
            .records()
            .chain(st.staff.records())
            .chain(st.deposits.values().map(|d| d.seq))
            .chain(st.catering.records());
        let snap = snapshot::Snapshot::new(seq, hash, records);
        st.history
            .set_meta(snapshot::KEY, &snap.encode())
            .map_err(err)?;
        self.unsaved.store(0, Ordering::Relaxed);
        Ok(())
    }

    /// The sequence number of the snapshot the state was restored from at start-up (None: it
    /// was folded from the whole journal).
    pub fn restored_from(&self) -> Option<u64> {
        self.restored_from.get().copied()
    }

    /// Records applied since the last snapshot.
    pub fn unsaved(&self) -> u64 {
        self.unsaved.load(Ordering::Relaxed)
    }

    /// Waits until no order is in flight and writes a snapshot (periodically and at a clean
    /// stop). Errors are logged.
    pub async fn snapshot_now(&self) {
        let _all = self.exclusive().await;
        if let Err(e) = self.save_snapshot() {
            tracing::warn!(error = %e, "restaurant snapshot not written");
        }
    }

    /// The state folded from every record that `conn` sees (reports fold their own snapshot
    /// with it when no running state is attached; they read only the floor and presence).
    pub fn from_connection(
        conn: &rusqlite::Connection,
        require_work_in: bool,
    ) -> rusqlite::Result<Self> {
        let r = Restaurant::with_history(require_work_in, History::none());
        r.fold(conn, 0)?;
        Ok(r)
    }

    /// Folds the records after `after` from the history's own journal connection.
    fn fold_journal(&self, after: u64) -> rusqlite::Result<()> {
        let mut st = self.state();
        let Some(conn) = st.history.journal() else {
            return Ok(());
        };
        // A second connection: `history` indexes while `conn` streams.
        let conn = store_reader(conn)?;
        st.history.begin()?;
        let mut parts = st.parts();
        let result = fold_into(&conn, after, &mut parts);
        parts.history.commit()?;
        result
    }

    fn fold(&self, conn: &rusqlite::Connection, after: u64) -> rusqlite::Result<()> {
        let mut st = self.state();
        st.history.begin()?;
        let mut parts = st.parts();
        let result = fold_into(conn, after, &mut parts);
        parts.history.commit()?;
        result
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A snapshot of the open tables.
    pub fn open_tables(&self) -> OpenTables {
        self.state().floor.clone()
    }

    /// A snapshot of staff presence.
    pub fn presence(&self) -> Presence {
        self.state().staff.clone()
    }

    /// Whether sales need the operator clocked in (`restaurant.require_work_in`).
    pub fn require_work_in(&self) -> bool {
        self.require_work_in
    }

    /// A catering event: its end, status (`undated`, `open`, `due`, `settled`), the record that
    /// settled it and every ticket in order (for reprinting them all for the client). A settled
    /// event is read back from the journal (None also when that read fails: logged).
    pub fn catering_event(&self, event: &str) -> Option<Value> {
        let now = self.clock.now();
        match self.state().catering_event(event) {
            Ok(e) => e.map(|e| e.to_json(now)),
            Err(e) => {
                tracing::error!(event, error = %e.message, "catering event not read");
                None
            }
        }
    }

    /// The daily presence list: every shift that overlaps `date` (`YYYY-MM-DD`, the local date
    /// of FDM times), by start time, read from the journal through the index.
    pub fn shifts_on(&self, date: &str) -> Result<Vec<Shift>, String> {
        self.state().history.shifts_on(date)
    }

    /// Catering events that have ended and wait for their supplement, correction or
    /// `catering_close` (they hold every other operation off).
    pub fn catering_due(&self) -> Vec<Value> {
        let now = self.clock.now();
        self.state()
            .catering
            .due(now)
            .into_iter()
            .map(|e| json!({"event": e.event, "ends_at": e.ends_at.as_ref().map(|(t, _)| t)}))
            .collect()
    }

    /// Deposits received and not yet deducted on a final ticket.
    pub fn open_deposits(&self) -> Vec<Value> {
        self.state()
            .deposits
            .iter()
            .map(|(r, d)| {
                json!({"register": r.register, "request_id": r.request_id, "journal_seq": d.seq,
                    "ticket_number": d.ticket_number, "total": format_amount(d.total)})
            })
            .collect()
    }

    /// Locks what `order` checks, until the guards drop (after [`Restaurant::apply`]).
    pub async fn lock_for(&self, order: &Order) -> locks::Guards {
        self.ready().await;
        let staff_change = clocking_of(order).is_some();
        // Every order shares the "floor" key; `exclusive` takes it alone.
        let mut keys = vec![
            (FLOOR_KEY.to_owned(), false),
            (format!("op:{}", order.operator), staff_change),
        ];
        for t in order.table.iter().chain(order.to_table.iter()) {
            keys.push((format!("table:{t}"), true));
        }
        if let Some(c) = &order.check {
            keys.push((format!("check:{c}"), true));
        }
        if let Some(e) = &order.catering_event {
            keys.push((format!("catering:{e}"), true));
        }
        for d in &order.deposits {
            keys.push((format!("deposit:{}/{}", d.register, d.request_id), true));
        }
        if let Some(o) = &order.original {
            keys.push((format!("original:{}/{}", o.register, o.request_id), true));
        }
        self.locks.lock(keys).await
    }

    /// Locks what a pre-computed event checks (its operator), until the guards drop.
    pub async fn lock_for_precomputed(&self, event: &PrecomputedEvent) -> locks::Guards {
        self.ready().await;
        self.locks
            .lock([
                (FLOOR_KEY.to_owned(), false),
                (format!("op:{}", event.operator), true),
            ])
            .await
    }

    /// Waits until no order is between its check and its record, and keeps new ones out until
    /// the guards drop. For a Z report: check [`Restaurant::open_tables`] and
    /// [`Restaurant::presence`] and journal the report while holding it, so no table opens and
    /// nobody clocks in between the check and the report.
    pub async fn exclusive(&self) -> locks::Guards {
        self.ready().await;
        self.locks.lock([(FLOOR_KEY.to_owned(), true)]).await
    }

    /// Advances the state with a durable record (not with a resend's stored answer).
    pub fn apply(&self, a: &Appended) {
        if !a.duplicate {
            self.apply_body(a.seq, a.kind, &a.time, &a.body);
            self.unsaved.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn apply_body(&self, seq: u64, kind: RecordKind, time: &str, body: &Map<String, Value>) {
        self.state().parts().apply(seq, kind, time, body);
    }

    /// Refuses every check while the state could not be rebuilt from the journal.
    fn readable(&self) -> Result<(), Refusal> {
        match self.unavailable.get() {
            Some(reason) => refuse(
                "",
                format!("restaurant state could not be read from the journal: {reason}"),
            ),
            None => Ok(()),
        }
    }

    /// Checks `order` against the state and completes it. `original` is the journaled record
    /// `order.original` names, when it names one (looked up by the caller).
    pub fn prepare(&self, order: &Order, original: Option<&Appended>) -> Result<Prepared, Refusal> {
        self.readable()?;
        let now = self.clock.now();
        let st = self.state();
        let mut out = order.clone();
        let mut extra = Map::new();
        let op = &order.operator;
        let clocking = clocking_of(order);
        if clocking.is_none() {
            check_catering_due(&st, order, now)?;
        }
        match clocking {
            Some(work) => {
                let work_in = work == Work::In;
                let on = st.staff.is_clocked_in(op);
                if work_in && on {
                    return refuse("operator", format!("operator {op} is already clocked in"));
                }
                if !work_in && !on {
                    return refuse("operator", format!("operator {op} is not clocked in"));
                }
                if matches!(order.purpose, Purpose::WorkIn | Purpose::WorkOut) {
                    let text = if work_in { "WORK IN" } else { "WORK OUT" };
                    out.lines = vec![OrderLine::item(
                        text,
                        Decimal::ONE,
                        Decimal::ZERO,
                        VatLetter::D,
                    )];
                }
                return Ok(Prepared {
                    kind: RecordKind::FiscalEvent,
                    order: out,
                    extra,
                });
            }
            _ if self.require_work_in
                && matches!(order.event_type, EventType::Normal | EventType::ProForma)
                && !st.staff.is_clocked_in(op) =>
            {
                return refuse(
                    "operator",
                    format!(
                        "operator {op} has not clocked in: send an order with purpose work_in first"
                    ),
                );
            }
            _ => {}
        }
        match order.purpose {
            Purpose::TableMove | Purpose::TableMerge => {
                return self.table_change(&st, order);
            }
            Purpose::VoucherSale => {
                return Ok(Prepared {
                    kind: RecordKind::MoneyMovement,
                    order: out,
                    extra,
                });
            }
            Purpose::CateringClose => {
                out.lines = vec![OrderLine::item(
                    CATERING_CLOSE_LINE,
                    Decimal::ONE,
                    Decimal::ZERO,
                    VatLetter::D,
                )];
                catering_role(&st, order, &out.lines, now, &mut extra)?;
                return Ok(Prepared {
                    kind: RecordKind::FiscalEvent,
                    order: out,
                    extra,
                });
            }
            _ => {}
        }
        if order.event_type == EventType::Copy {
            copy_of(&mut out, &mut extra, order, original)?;
            return Ok(Prepared {
                kind: RecordKind::FiscalEvent,
                order: out,
                extra,
            });
        }
        if let Some(r) = &order.original {
            refund_of(&st, &mut extra, order, r, original)?;
        }
        let place = match (&order.table, &order.check) {
            (Some(t), _) => Some((t, false)),
            (None, Some(c)) => Some((c, true)),
            (None, None) => None,
        };
        if let Some((table, check)) = place
            && matches!(order.event_type, EventType::Normal | EventType::ProForma)
            && order.purpose == Purpose::Sale
            && order.original.is_none()
        {
            let what = if check { "check" } else { "table" };
            let open = st.floor.get_place(table, check);
            let table_lines: Vec<OrderLine> = open
                .map(|t| t.lines.iter().map(|l| l.line.clone()).collect())
                .unwrap_or_default();
            if check {
                extra.insert("check".into(), json!(table));
            }
            if order.bill {
                if open.is_none() {
                    return refuse(what, format!("{what} {table} is not open: nothing to bill"));
                }
                out.lines = table_lines;
                extra.insert("table_role".into(), json!("bill"));
            } else {
                check_corrections(what, table, &table_lines, &order.lines)?;
                if order.event_type == EventType::ProForma {
                    extra.insert("table_role".into(), json!("round"));
                } else if open.is_some() {
                    out.lines = table_lines;
                    out.lines.extend(order.lines.iter().cloned());
                    extra.insert("table_role".into(), json!("final"));
                }
            }
        }
        if !order.deposits.is_empty() {
            let mut applied = Vec::new();
            for r in &order.deposits {
                let Some(d) = st.deposits.get(r) else {
                    let used = st
                        .history
                        .deposit_used_by(r)
                        .or_else(|e| refuse("deposits", history_unreadable(&e)))?;
                    if let Some(by) = used {
                        return refuse(
                            "deposits",
                            format!(
                                "deposit {} was already deducted (journal record {by})",
                                r.request_id
                            ),
                        );
                    }
                    return refuse(
                        "deposits",
                        format!(
                            "no deposit {} from register {} (a deposit is an order with purpose deposit)",
                            r.request_id, r.register
                        ),
                    );
                };
                for l in &d.lines {
                    out.lines.push(OrderLine {
                        quantity: -Decimal::ONE,
                        unit_price: line_total(l),
                        unit: crate::fiscal::order::Unit::Piece,
                        role: LineRole::DepositApplied,
                        station: None,
                        menu: None,
                        origin: None,
                        original_line: None,
                        ..l.clone()
                    });
                }
                let mut v = r.to_json();
                v["journal_seq"] = json!(d.seq);
                v["ticket_number"] = json!(d.ticket_number);
                v["total"] = json!(format_amount(d.total));
                applied.push(v);
            }
            extra.insert("deposits_applied".into(), Value::Array(applied));
        }
        if !order.discounts.is_empty() {
            let lines = discount_lines(&out.lines, order)?;
            out.lines.extend(lines);
            extra.insert("discounts".into(), discounts_json(&order.discounts));
        }
        if order.catering_event.is_some() {
            catering_role(&st, order, &out.lines, now, &mut extra)?;
        }
        Ok(Prepared {
            kind: RecordKind::FiscalEvent,
            order: out,
            extra,
        })
    }

    /// Checks a pre-computed event (FDM v1 `H`: no lines, no table) against the rules that can
    /// apply to it: a catering event waiting for its settlement holds it off (it cannot be the
    /// settlement: it names no event), and with `require_work_in` the operator of an N or P
    /// event must be clocked in. A clocking sent as an H event (a 0.00 NS whose PLU hash is the
    /// one of the single line `WORK IN` / `WORK OUT`) is checked as a clocking. Table rules,
    /// deposits, refunds and copies need lines or references and do not apply.
    pub fn check_precomputed(&self, event: &PrecomputedEvent) -> Result<(), Refusal> {
        self.readable()?;
        let now = self.clock.now();
        let st = self.state();
        let op = &event.operator;
        let body = event.journal_body();
        let label = event.label.to_string();
        match work_event(&body) {
            Some(Work::In) if st.staff.is_clocked_in(op) => {
                refuse("operator", format!("operator {op} is already clocked in"))
            }
            Some(Work::Out) if !st.staff.is_clocked_in(op) => {
                refuse("operator", format!("operator {op} is not clocked in"))
            }
            Some(_) => Ok(()),
            None => {
                let due = st.catering.due(now);
                if !due.is_empty() {
                    return refuse("catering_event", catering::due_message(&due));
                }
                if self.require_work_in
                    && (label.starts_with('N') || label.starts_with('P'))
                    && !st.staff.is_clocked_in(op)
                {
                    return refuse(
                        "operator",
                        format!("operator {op} has not clocked in: send its WORK IN first"),
                    );
                }
                Ok(())
            }
        }
    }

    fn table_change(&self, st: &State, order: &Order) -> Result<Prepared, Refusal> {
        let (Some(from), Some(to)) = (&order.table, &order.to_table) else {
            return refuse("table", "name the table and to_table");
        };
        if from == to {
            return refuse("to_table", "is the same table");
        }
        let Some(open) = st.floor.get(from) else {
            return refuse("table", format!("table {from} is not open"));
        };
        let merge = order.purpose == Purpose::TableMerge;
        match (merge, st.floor.get(to).is_some()) {
            (false, true) => {
                return refuse(
                    "to_table",
                    format!("table {to} is open: merge into it with purpose table_merge"),
                );
            }
            (true, false) => {
                return refuse(
                    "to_table",
                    format!("table {to} is not open: move to it with purpose table_move"),
                );
            }
            _ => {}
        }
        let mut extra = Map::new();
        extra.insert("action".into(), json!(if merge { "merge" } else { "move" }));
        extra.insert("from".into(), json!(from));
        extra.insert("to".into(), json!(to));
        extra.insert("operator".into(), json!(order.operator));
        extra.insert("lines".into(), json!(open.lines.len()));
        extra.insert("total".into(), json!(format_amount(open.total())));
        extra.insert("pos_time".into(), json!(order.pos_time));
        // The lines it moves, for an FDM that signs the change (GKS 2.0 signCostCenterChange,
        // docs/gks2.md §6.3); the record itself keeps only their number and total.
        let mut moved = order.clone();
        moved.lines = open.lines.iter().map(|l| l.line.clone()).collect();
        Ok(Prepared {
            kind: RecordKind::TableChange,
            order: moved,
            extra,
        })
    }
}

/// The line of a `catering_close` ticket (a signed NS of 0.00 at VAT D, like a clocking).
pub const CATERING_CLOSE_LINE: &str = "NO CORRECTION";

/// Whether an order is a clocking: purpose `work_in` / `work_out`, or (the FDM v1 practice sent
/// as a plain order) a normal sale of 0.00 whose first line is `WORK IN` / `WORK OUT`.
fn clocking_of(order: &Order) -> Option<Work> {
    match order.purpose {
        Purpose::WorkIn => return Some(Work::In),
        Purpose::WorkOut => return Some(Work::Out),
        Purpose::Sale if order.event_type == EventType::Normal => {}
        _ => return None,
    }
    let total: Decimal = order.lines.iter().map(line_total).sum();
    if !total.is_zero() || order.table.is_some() || order.check.is_some() {
        return None;
    }
    let first = order.lines.first()?;
    let normalised: String = first
        .description
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_uppercase();
    match normalised.as_str() {
        "WORK IN" => Some(Work::In),
        "WORK OUT" => Some(Work::Out),
        _ => None,
    }
}

/// While catering events have ended without their settlement, only the settlement of one of
/// them (and clockings, checked before) is registered.
fn check_catering_due(
    st: &State,
    order: &Order,
    now: chrono::DateTime<chrono::FixedOffset>,
) -> Result<(), Refusal> {
    let due = st.catering.due(now);
    if due.is_empty() {
        return Ok(());
    }
    let settles_a_due_event = order.event_type == EventType::Normal
        && matches!(order.purpose, Purpose::Sale | Purpose::CateringClose)
        && order
            .catering_event
            .as_deref()
            .is_some_and(|e| due.iter().any(|d| d.event == e));
    if settles_a_due_event {
        return Ok(());
    }
    refuse("catering_event", catering::due_message(&due))
}

/// What a ticket naming `catering_event` is to its event (`catering_role`, and `catering_end`
/// when it names the end), or why it cannot be one.
fn catering_role(
    st: &State,
    order: &Order,
    lines: &[OrderLine],
    now: chrono::DateTime<chrono::FixedOffset>,
    extra: &mut Map<String, Value>,
) -> Result<(), Refusal> {
    let Some(id) = order.catering_event.as_deref() else {
        return Ok(());
    };
    let event = st.catering_event(id)?;
    let event = event.as_ref();
    if let Some(settled) = event.and_then(|e| e.settled.as_ref()) {
        return refuse(
            "catering_event",
            format!(
                "catering event {id} was settled by journal record {} ({} {}): its tickets are                  closed; a later change is an ordinary sale or refund",
                settled["journal_seq"],
                settled["label"].as_str().unwrap_or(""),
                settled["ticket_number"]
            ),
        );
    }
    let ended = event.is_some_and(|e| e.has_ended(now));
    let settles = ended || order.catering_settle || order.purpose == Purpose::CateringClose;
    let role = if order.purpose == Purpose::Deposit {
        if ended {
            return refuse(
                "purpose",
                format!("catering event {id} has ended: a deposit is received before the event"),
            );
        }
        Role::Deposit
    } else if settles {
        if event.is_none_or(|e| e.tickets.is_empty()) {
            return refuse(
                "catering_event",
                format!(
                    "no estimate was registered for catering event {id}: register the estimate                      in advance (with catering_end) before its supplement or correction"
                ),
            );
        }
        if order.catering_end.is_some() {
            return refuse(
                "catering_end",
                format!("catering event {id} has ended: its end can no longer be moved"),
            );
        }
        let total: Decimal = lines.iter().map(line_total).sum();
        match order.purpose {
            Purpose::CateringClose => Role::NoCorrection,
            _ if total.is_sign_negative() && !total.is_zero() => Role::Correction,
            _ => Role::Supplement,
        }
    } else {
        if order.catering_end.is_none() && event.is_none_or(|e| e.ends_at.is_none()) {
            return refuse(
                "catering_end",
                format!(
                    "the estimate of catering event {id} names when the event ends                      (catering_end, RFC 3339), so that its supplement or correction can be                      required as the first operation after it"
                ),
            );
        }
        Role::Estimate
    };
    if let Some(end) = &order.catering_end {
        match catering::parse_time(end) {
            Some(t) if t > now => {}
            _ => {
                return refuse(
                    "catering_end",
                    format!(
                        "{end} is not in the future: the estimate is registered before the                          event ends"
                    ),
                );
            }
        }
        extra.insert("catering_end".into(), json!(end));
    }
    extra.insert("catering_role".into(), json!(role.as_str()));
    Ok(())
}

/// A decrease on a table is a new negative line, and it cannot take away more of an article
/// than the table has (frozen lines are never edited).
fn check_corrections(
    what: &str,
    table: &str,
    table_lines: &[OrderLine],
    new: &[OrderLine],
) -> Result<(), Refusal> {
    for (i, l) in new.iter().enumerate() {
        if !l.quantity.is_sign_negative() || l.role != LineRole::Item {
            continue;
        }
        let net: Decimal = table_lines
            .iter()
            .chain(new[..i].iter())
            .filter(|t| t.same_article(l))
            .map(|t| t.quantity)
            .sum();
        if net + l.quantity < Decimal::ZERO {
            return refuse(
                &format!("lines[{i}].quantity"),
                format!(
                    "{what} {table} has {} of \"{}\" at {} ({}); a correction cannot take away {}",
                    net.normalize(),
                    l.description,
                    format_amount(l.unit_price),
                    l.vat,
                    (-l.quantity).normalize()
                ),
            );
        }
    }
    Ok(())
}

fn copy_of(
    out: &mut Order,
    extra: &mut Map<String, Value>,
    order: &Order,
    original: Option<&Appended>,
) -> Result<(), Refusal> {
    let Some(r) = &order.original else {
        return refuse("original", "a copy names the ticket it reprints");
    };
    if !order.lines.is_empty() || !order.payments.is_empty() {
        return refuse(
            "lines",
            "a copy takes its lines and payments from the original: send none",
        );
    }
    let Some(orig) = original.filter(|a| a.kind == RecordKind::FiscalEvent) else {
        return refuse(
            "original",
            format!("no ticket {} from register {}", r.request_id, r.register),
        );
    };
    let label = body_text(&orig.body, "label").unwrap_or_default();
    if !label.starts_with('N') || body_text(&orig.body, "source") != Some("order") {
        return refuse(
            "original",
            format!(
                "only a VAT ticket (NS/NR) registered from an order can be copied, not {label}"
            ),
        );
    }
    out.lines = lines_of(&orig.body);
    out.payments = match orig.body.get("payments") {
        Some(Value::Array(p)) => p
            .iter()
            .filter_map(|p| {
                Some(Payment {
                    method: parse_serde::<PaymentMethod>(p.get("method")?.as_str()?)?,
                    amount: p.get("amount")?.as_str()?.parse().ok()?,
                })
            })
            .collect(),
        _ => Vec::new(),
    };
    out.table = body_text(&orig.body, "table").map(str::to_owned);
    extra.insert("copy_of".into(), original_json(r, orig));
    Ok(())
}

fn original_json(r: &Reference, orig: &Appended) -> Value {
    let mut v = r.to_json();
    v["journal_seq"] = json!(orig.seq);
    v["label"] = orig.body.get("label").cloned().unwrap_or(Value::Null);
    v["ticket_number"] = orig
        .body
        .get("ticket_number")
        .cloned()
        .unwrap_or(Value::Null);
    v["fdm_time"] = json!(orig.time);
    v
}

fn refund_of(
    st: &State,
    extra: &mut Map<String, Value>,
    order: &Order,
    r: &Reference,
    original: Option<&Appended>,
) -> Result<(), Refusal> {
    let Some(orig) = original.filter(|a| a.kind == RecordKind::FiscalEvent) else {
        return refuse(
            "original",
            format!("no ticket {} from register {}", r.request_id, r.register),
        );
    };
    if body_text(&orig.body, "label") != Some("NS")
        || body_text(&orig.body, "source") != Some("order")
        || matches!(
            body_text(&orig.body, "purpose"),
            Some("work_in" | "work_out")
        )
    {
        return refuse(
            "original",
            "a refund gives back a sale (NS) registered from an order",
        );
    }
    let sold = lines_of(&orig.body);
    let done = st
        .history
        .refunded(r)
        .or_else(|e| refuse("original", history_unreadable(&e)))?;
    // Quantities given back in this refund so far, per original line and per article.
    let mut this_line: HashMap<usize, Decimal> = HashMap::new();
    let mut this_article: HashMap<(String, VatLetter), Decimal> = HashMap::new();
    for (i, l) in order.lines.iter().enumerate() {
        let article = (l.description.clone(), l.vat);
        let sold_of_article: Decimal = sold
            .iter()
            .filter(|s| s.description == l.description && s.vat == l.vat)
            .map(|s| s.quantity)
            .sum();
        if let Some(k) = l.original_line {
            let Some(s) = sold.get(k) else {
                return refuse(
                    &format!("lines[{i}].original_line"),
                    format!(
                        "ticket {} has {} line(s) (0 to {}): there is no line {k}",
                        r.request_id,
                        sold.len(),
                        sold.len().saturating_sub(1)
                    ),
                );
            };
            if !(s.description == l.description
                && s.vat == l.vat
                && s.unit == l.unit
                && s.unit_price == l.unit_price)
            {
                return refuse(
                    &format!("lines[{i}].original_line"),
                    format!(
                        "line {k} of ticket {} is \"{}\" at {} ({}), not \"{}\" at {} ({})",
                        r.request_id,
                        s.description,
                        format_amount(s.unit_price),
                        s.vat,
                        l.description,
                        format_amount(l.unit_price),
                        l.vat
                    ),
                );
            }
            if !s.quantity.is_sign_positive() || s.quantity.is_zero() {
                return refuse(
                    &format!("lines[{i}].original_line"),
                    format!(
                        "line {k} of ticket {} is a correction ({}): nothing to give back",
                        r.request_id,
                        s.quantity.normalize()
                    ),
                );
            }
        } else if !sold
            .iter()
            .any(|s| s.description == l.description && s.vat == l.vat)
        {
            return refuse(
                &format!("lines[{i}]"),
                format!(
                    "\"{}\" at VAT {} is not on the original ticket",
                    l.description, l.vat
                ),
            );
        }
        if !l.quantity.is_sign_negative() {
            continue;
        }
        let back = -l.quantity;
        if let Some(k) = l.original_line {
            let before = done.lines.get(&k).copied().unwrap_or_default()
                + this_line.get(&k).copied().unwrap_or_default();
            let on_line = sold[k].quantity;
            if before + back > on_line {
                return refuse(
                    &format!("lines[{i}].quantity"),
                    format!(
                        "giving back {} of \"{}\" is more than line {k} of ticket {} has left: \
                         {} sold, {} already given back",
                        back.normalize(),
                        l.description,
                        r.request_id,
                        on_line.normalize(),
                        before.normalize()
                    ),
                );
            }
            *this_line.entry(k).or_default() += back;
        }
        let before = done.articles.get(&article).copied().unwrap_or_default()
            + this_article.get(&article).copied().unwrap_or_default();
        if before + back > sold_of_article {
            return refuse(
                &format!("lines[{i}].quantity"),
                format!(
                    "giving back {} of \"{}\" ({}) is more than ticket {} has left: {} sold, {} \
                     already given back",
                    back.normalize(),
                    l.description,
                    l.vat,
                    r.request_id,
                    sold_of_article.normalize(),
                    before.normalize()
                ),
            );
        }
        *this_article.entry(article).or_default() += back;
    }
    let refund: Decimal = order.lines.iter().map(line_total).sum();
    if !refund.is_sign_negative() || refund.is_zero() {
        return refuse("lines", "a refund's lines add up to a negative total");
    }
    let before = done.total;
    let total = amount(&orig.body, "total");
    if before - refund > total {
        return refuse(
            "lines",
            format!(
                "refund of {} is more than what is left of ticket {} ({} of {} already refunded)",
                format_amount(-refund),
                r.request_id,
                format_amount(before),
                format_amount(total)
            ),
        );
    }
    extra.insert("refund_of".into(), original_json(r, orig));
    Ok(())
}

/// The parts of [`State`] a record advances, borrowed apart so a fold can stream from the
/// history's journal connection while it indexes.
struct Parts<'a> {
    floor: &'a mut OpenTables,
    staff: &'a mut Presence,
    deposits: &'a mut BTreeMap<Reference, DepositState>,
    catering: &'a mut Catering,
    history: &'a mut History,
}

impl Parts<'_> {
    fn apply(&mut self, seq: u64, kind: RecordKind, time: &str, body: &Map<String, Value>) {
        match kind {
            RecordKind::TableChange => self.floor.apply_table_change(seq, body),
            RecordKind::FiscalEvent => {
                let label = body_text(body, "label").unwrap_or_default();
                if !(label.starts_with('N') || label.starts_with('P')) {
                    return;
                }
                self.floor.apply_fiscal(seq, time, body);
                self.staff.apply_fiscal(seq, time, body);
                self.history.record(seq, time, body);
                let normal = label.starts_with('N');
                if normal
                    && body_text(body, "purpose") == Some("deposit")
                    && let Some(r) = reference_of(body)
                {
                    self.deposits.insert(
                        r,
                        DepositState {
                            seq,
                            ticket_number: body.get("ticket_number").and_then(Value::as_u64),
                            lines: lines_of(body),
                            total: amount(body, "total"),
                        },
                    );
                }
                if let Some(Value::Array(applied)) = body.get("deposits_applied") {
                    for d in applied.iter().filter_map(reference_in) {
                        self.deposits.remove(&d);
                    }
                }
                if normal && body.contains_key("catering_event") {
                    self.catering.apply_fiscal(seq, time, body);
                    self.catering.forget_settled();
                }
            }
            _ => {}
        }
    }
}

/// Whether a fiscal event's canonical bytes can matter to the state, without parsing them: an
/// N or P label and one of the members the fold reads (canonical JSON is compact, so `"key":"`
/// cannot occur inside a string, where quotes are escaped). A 0.00 total may be a clocking.
fn may_matter(canonical: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(canonical) else {
        return true;
    };
    if !(text.contains("\"label\":\"N") || text.contains("\"label\":\"P")) {
        return false;
    }
    [
        "\"table\":\"",
        "\"check\":\"",
        "\"purpose\":\"",
        "\"refund_of\":{",
        "\"deposits_applied\":[",
        "\"catering_event\":\"",
        "\"total\":\"0.00\"",
    ]
    .iter()
    .any(|k| text.contains(k))
}

/// Streams the records after `after` into `parts`, parsing only those that can matter.
fn fold_into(
    conn: &rusqlite::Connection,
    after: u64,
    parts: &mut Parts<'_>,
) -> rusqlite::Result<()> {
    read::for_each_raw::<rusqlite::Error>(
        conn,
        after,
        &[RecordKind::FiscalEvent, RecordKind::TableChange],
        |rec| {
            let Some(kind) = rec.kind() else {
                return Ok(());
            };
            if kind == RecordKind::FiscalEvent && !may_matter(rec.canonical) {
                return Ok(());
            }
            if let Some(body) = rec.body() {
                parts.apply(rec.seq, kind, rec.time, &body);
            }
            Ok(())
        },
    )
}

/// A second read-only connection to the database `conn` reads.
fn store_reader(conn: &rusqlite::Connection) -> rusqlite::Result<rusqlite::Connection> {
    let path = conn.path().unwrap_or_default().to_owned();
    crate::journal::query::open_read_only(Path::new(&path))
}

/// One negative line per VAT letter for each discount, in proportion to what the ticket's
/// lines come to per letter (deposits deducted and letter X left out).
fn discount_lines(lines: &[OrderLine], order: &Order) -> Result<Vec<OrderLine>, Refusal> {
    let mut per_letter: BTreeMap<VatLetter, Decimal> = BTreeMap::new();
    for l in lines
        .iter()
        .filter(|l| l.vat != VatLetter::X && l.role != LineRole::DepositApplied)
    {
        *per_letter.entry(l.vat).or_default() += line_total(l);
    }
    per_letter.retain(|_, v| *v > Decimal::ZERO);
    let base: Decimal = per_letter.values().copied().sum();
    let mut out = Vec::new();
    let mut given = Decimal::ZERO;
    for (i, d) in order.discounts.iter().enumerate() {
        let off = match (d.amount, d.percent) {
            (Some(a), _) => a,
            (None, Some(p)) => round_cents(base * p / Decimal::ONE_HUNDRED),
            (None, None) => Decimal::ZERO,
        };
        given += off;
        if base.is_zero() || given > base {
            return refuse(
                &format!("discounts[{i}]"),
                format!(
                    "discounts of {} are more than the ticket's {}",
                    format_amount(given),
                    format_amount(base)
                ),
            );
        }
        let letters: Vec<VatLetter> = per_letter.keys().copied().collect();
        let weights: Vec<Decimal> = per_letter.values().copied().collect();
        for (letter, share) in letters.into_iter().zip(allocate(off, &weights)) {
            if share.is_zero() {
                continue;
            }
            let mut line = OrderLine::item(&d.description, Decimal::ONE, -share, letter);
            line.role = LineRole::Discount;
            out.push(line);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fiscal::Sale;
    use chrono::{DateTime, FixedOffset};

    struct TestClock(Mutex<DateTime<FixedOffset>>);

    impl Clock for TestClock {
        fn now(&self) -> DateTime<FixedOffset> {
            *self.0.lock().unwrap_or_else(|p| p.into_inner())
        }
    }

    const OP: &str = "85073003328";

    struct Till {
        r: Restaurant,
        clock: Arc<TestClock>,
        seq: u64,
    }

    impl Till {
        fn new() -> Till {
            let start = DateTime::parse_from_rfc3339("2026-05-09T10:00:00+02:00").unwrap();
            let clock = Arc::new(TestClock(Mutex::new(start)));
            Till {
                r: Restaurant::new(false).with_clock(clock.clone()),
                clock,
                seq: 0,
            }
        }

        fn at(&self, t: &str) {
            *self.clock.0.lock().unwrap() = DateTime::parse_from_rfc3339(t).unwrap();
        }

        fn order(&self, v: Value) -> Order {
            Order::from_json("till-1", v.to_string().as_bytes()).unwrap()
        }

        /// Checks and, when accepted, journals (folds) the order as the registrar would.
        fn send(&mut self, v: Value) -> Result<Map<String, Value>, Refusal> {
            let order = self.order(v);
            let p = self.r.prepare(&order, None)?;
            let sale = Sale::compute(&p.order).unwrap();
            let mut body = sale.journal_body(&p.order);
            body.extend(p.extra);
            body.insert("register".into(), json!("till-1"));
            body.insert("request_id".into(), json!(order.request_id));
            self.seq += 1;
            let time = self.clock.now().to_rfc3339();
            self.r
                .apply_body(self.seq, RecordKind::FiscalEvent, &time, &body);
            Ok(body)
        }
    }

    fn ticket(id: &str, event: &str, extra: Value) -> Value {
        let mut v = json!({"request_id": id, "operator": OP, "event_type": "normal",
            "catering_event": event,
            "lines": [{"description": "Feest", "quantity": 1, "unit_price": "500.00", "vat": "B"}]});
        if let (Value::Object(m), Value::Object(e)) = (&mut v, extra) {
            m.extend(e);
        }
        v
    }

    #[test]
    fn catering_ends_moves_settles_early_and_closes() {
        let mut t = Till::new();
        let end = "2026-05-10T23:00:00+02:00";
        let est = t
            .send(ticket("e-1", "wed-1", json!({"catering_end": end})))
            .unwrap();
        assert_eq!(est["catering_role"], "estimate");
        // The end moves while it has not passed; a second estimate ticket needs no end.
        let later = "2026-05-11T02:00:00+02:00";
        t.send(ticket("e-2", "wed-1", json!({"catering_end": later})))
            .unwrap();
        t.send(ticket("e-3", "wed-1", json!({}))).unwrap();
        t.at("2026-05-10T23:30:00+02:00");
        assert!(t.r.catering_due().is_empty(), "the end was moved to 02:00");
        t.at("2026-05-11T02:00:00+02:00");
        assert_eq!(t.r.catering_due().len(), 1);
        // After the end: no deposit, no moving the end, nothing else.
        let e = t
            .send(json!({"request_id": "d", "operator": OP, "event_type": "normal", "purpose": "deposit",
                "catering_event": "wed-1", "lines": [{"description": "A", "quantity": 1, "unit_price": "1.00", "vat": "B"}]}))
            .unwrap_err();
        assert_eq!(e.field, "catering_event");
        let e = t
            .send(ticket(
                "e-4",
                "wed-1",
                json!({"catering_end": "2026-05-12T00:00:00+02:00"}),
            ))
            .unwrap_err();
        assert_eq!(e.field, "catering_end");
        // A refund of part of the estimate is its correction (NR).
        let corr = t
            .send(json!({"request_id": "c", "operator": OP, "event_type": "normal", "catering_event": "wed-1",
                "lines": [{"description": "Feest", "quantity": -1, "unit_price": "100.00", "vat": "B"}]}))
            .unwrap();
        assert_eq!(
            (corr["label"].as_str(), corr["catering_role"].as_str()),
            (Some("NR"), Some("correction"))
        );
        assert!(t.r.catering_due().is_empty());
        let ev = t.r.catering_event("wed-1").unwrap();
        assert_eq!(
            (ev["status"].as_str(), ev["ends_at"].as_str()),
            (Some("settled"), Some(later))
        );
        assert_eq!(ev["tickets"].as_array().unwrap().len(), 4);
    }

    #[test]
    fn catering_settles_before_its_end_and_several_events_wait_together() {
        let mut t = Till::new();
        let end = "2026-05-09T18:00:00+02:00";
        t.send(ticket("a-1", "a", json!({"catering_end": end})))
            .unwrap();
        t.send(ticket("b-1", "b", json!({"catering_end": end})))
            .unwrap();
        t.send(ticket("c-1", "c", json!({"catering_end": end})))
            .unwrap();
        // The event c ended early: its supplement settles it before 18:00.
        let s = t
            .send(ticket("c-2", "c", json!({"catering_settle": true})))
            .unwrap();
        assert_eq!(s["catering_role"], "supplement");
        // A settlement without an estimate is refused.
        let e = t
            .send(
                json!({"request_id": "x", "operator": OP, "event_type": "normal",
                "purpose": "catering_close", "catering_event": "nope"}),
            )
            .unwrap_err();
        assert!(e.message.contains("no estimate"), "{e}");
        t.at("2026-05-09T18:00:01+02:00");
        let sale = json!({"request_id": "s", "operator": OP, "event_type": "normal",
            "lines": [{"description": "Cola", "quantity": 1, "unit_price": "2.50", "vat": "A"}]});
        let e = t.send(sale.clone()).unwrap_err();
        assert!(
            e.message.contains("catering event a ended")
                && e.message.contains("catering event b ended"),
            "{e}"
        );
        // Clockings go through; either settlement is accepted first.
        t.send(json!({"request_id": "in", "operator": OP, "event_type": "normal", "purpose": "work_in"}))
            .unwrap();
        let close = |id: &str, ev: &str| json!({"request_id": id, "operator": OP, "event_type": "normal", "purpose": "catering_close", "catering_event": ev});
        let b = t.send(close("b-ok", "b")).unwrap();
        assert_eq!(
            (b["total"].as_str(), b["catering_role"].as_str()),
            (Some("0.00"), Some("no_correction"))
        );
        assert!(t.send(sale.clone()).is_err());
        t.send(close("a-ok", "a")).unwrap();
        t.send(sale).unwrap();
        // c was settled before its end: it is not due, and takes no more tickets.
        let e = t.send(close("c-ok", "c")).unwrap_err();
        assert!(e.message.contains("was settled"), "{e}");
    }
}
