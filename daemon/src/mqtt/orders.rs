//! From orders to receipts. Orders arrive from the bus, or straight from the gate (clean-session
//! clients in embedded mode, already acknowledged by the gate; and size notices for payloads the
//! gate would not forward); each is answered with exactly one receipt on
//! `PREFIX/registers/{register}/receipts` (through [`Publisher`]), then, when it came from the
//! bus, acknowledged to the broker.
//!
//! Each register has its own bounded queue and its own worker ([`Registers`]): one register's
//! orders are answered one after the other, in arrival order, while different registers are
//! served concurrently (the journal commits concurrent appends together, which is where
//! throughput comes from). A register thus never has more than one order waiting at the signer,
//! so the signer serves busy registers in turn: a register's wait never depends on another's
//! backlog beyond one signature per busy register. The dispatcher never waits for a register:
//! an order that finds its register's queue full is answered at once with 208 (nothing written).
//! Acknowledgements go out in arrival order ([`AckBook`]).

use super::bus::{BusHandle, Incoming};
use super::direct::{DirectAck, Publisher};
use super::topics::Topics;
use crate::app::{App, unix_ms};
use crate::fiscal::FdmCode;
use crate::service::{Receipt, sniff_request_id};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::error::TrySendError;

/// Bytes reserved for a signed receipt's JSON: a 3-line receipt with its ticket text is about
/// 2.5 kB.
const RECEIPT_CAPACITY: usize = 4096;
use tokio::sync::{Mutex, mpsc};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

/// Orders queued per register; while its queue is full, a register's further orders are
/// answered at once with 208 (nothing is written; the register resends them later).
const REGISTER_QUEUE: usize = 128;
/// A register's worker ends after this long without orders; its next order starts a new one.
const WORKER_IDLE: Duration = Duration::from_secs(60);
/// Registers remembered before those whose worker has ended are forgotten.
const REGISTERS_KEPT: usize = 1024;

/// What arrived for a register.
#[derive(Debug)]
pub enum Payload {
    /// A message from the broker, acknowledged once answered; `seq` is its place in arrival
    /// order.
    Message {
        /// The message.
        incoming: Incoming,
        /// Arrival order.
        seq: u64,
    },
    /// A payload of this many bytes, over the limit, that the gate discarded (and the
    /// acknowledgement the client is owed, on the direct path).
    TooLarge(usize, Option<DirectAck>),
    /// An order the gate took from a clean-session client, and its acknowledgement (QoS 1).
    Direct(Vec<u8>, Option<DirectAck>),
    /// A report request the gate took from a clean-session client, and its acknowledgement.
    DirectReportRequest(Vec<u8>, Option<DirectAck>),
    /// An X or Z report request (`…/report-requests`), answered on `…/reports` and then
    /// acknowledged. It goes to the register's worker, so it is answered after the orders the
    /// register sent before it.
    ReportRequest {
        /// The message.
        incoming: Incoming,
        /// Arrival order.
        seq: u64,
    },
}

/// An order to answer.
#[derive(Debug)]
pub struct IncomingOrder {
    /// The register, from the topic.
    pub register: String,
    /// What it sent.
    pub payload: Payload,
}

/// What answering needs.
pub struct OrderDesk {
    /// The daemon.
    pub app: Arc<App>,
    /// Topic layout.
    pub topics: Topics,
    /// Where receipts and reports go.
    pub out: Publisher,
    /// Largest order payload.
    pub max_payload: usize,
    /// Acknowledgements, in arrival order.
    pub acks: AckBook,
}

/// Sends acknowledgements in the order messages arrived, whatever order they are answered in.
pub struct AckBook {
    bus: BusHandle,
    state: Mutex<AckState>,
}

#[derive(Default)]
struct AckState {
    next: u64,
    done: BTreeMap<u64, Option<Incoming>>,
}

impl AckBook {
    /// An empty book; the first message is number 0.
    pub fn new(bus: BusHandle) -> Self {
        AckBook {
            bus,
            state: Mutex::new(AckState::default()),
        }
    }

    /// Message `seq` is answered; `incoming` is acknowledged once every earlier one is (`None`:
    /// nothing to acknowledge, but later ones need not wait for it).
    pub async fn done(&self, seq: u64, incoming: Option<Incoming>) {
        let mut state = self.state.lock().await;
        state.done.insert(seq, incoming);
        // Requests reach rumqttc's channel in order because the lock is held while queuing.
        loop {
            let next = state.next;
            let Some(entry) = state.done.remove(&next) else {
                break;
            };
            state.next += 1;
            if let Some(incoming) = entry {
                let _ = self.bus.ack(&incoming).await;
            }
        }
    }
}

/// Starts taking orders until `stop` (or the daemon's shutdown) is cancelled; the task then
/// answers what it already holds and ends.
pub fn spawn(
    desk: Arc<OrderDesk>,
    inbound: mpsc::Receiver<Incoming>,
    from_gate: mpsc::Receiver<IncomingOrder>,
    stop: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(run(desk, inbound, from_gate, stop))
}

async fn run(
    desk: Arc<OrderDesk>,
    mut inbound: mpsc::Receiver<Incoming>,
    mut from_gate: mpsc::Receiver<IncomingOrder>,
    stop: CancellationToken,
) {
    let mut seq = 0u64;
    let mut registers = Registers::new(desk.clone());
    loop {
        let order = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            _ = desk.app.shutdown.cancelled() => break,
            Some(m) = inbound.recv() => desk.order_from(m, &mut seq).await,
            Some(o) = from_gate.recv() => Some(o),
            else => break,
        };
        if let Some(order) = order {
            registers.hand_over(order);
        }
    }
    // Stop taking orders; what already reached fdmd is still answered.
    inbound.close();
    from_gate.close();
    while let Ok(m) = inbound.try_recv() {
        if let Some(order) = desk.order_from(m, &mut seq).await {
            registers.hand_over(order);
        }
    }
    while let Ok(order) = from_gate.try_recv() {
        registers.hand_over(order);
    }
    registers.finish().await;
}

/// One queue and one worker per register.
struct Registers {
    desk: Arc<OrderDesk>,
    queues: HashMap<String, mpsc::Sender<IncomingOrder>>,
    workers: JoinSet<()>,
}

impl Registers {
    fn new(desk: Arc<OrderDesk>) -> Self {
        Registers {
            desk,
            queues: HashMap::new(),
            workers: JoinSet::new(),
        }
    }

    /// Queues `order` for its register without waiting: starts the register's worker when it
    /// has none, and answers the order at once with 208 when the register's queue is full.
    fn hand_over(&mut self, order: IncomingOrder) {
        while self.workers.try_join_next().is_some() {}
        if self.queues.len() >= REGISTERS_KEPT {
            self.queues.retain(|_, q| !q.is_closed());
        }
        let mut order = order;
        for _ in 0..2 {
            let queue = match self.queues.get(&order.register) {
                Some(q) if !q.is_closed() => q,
                _ => {
                    let (tx, rx) = mpsc::channel(REGISTER_QUEUE);
                    self.workers.spawn(work(self.desk.clone(), rx));
                    self.queues
                        .entry(order.register.clone())
                        .insert_entry(tx)
                        .into_mut()
                }
            };
            match queue.try_send(order) {
                Ok(()) => return,
                Err(TrySendError::Full(refused)) => {
                    let desk = self.desk.clone();
                    self.workers
                        .spawn(async move { desk.refuse_busy(refused).await });
                    return;
                }
                // The worker ended (idle) just now: start another.
                Err(TrySendError::Closed(back)) => order = back,
            }
        }
        tracing::error!("a register's order worker could not be started; order left unanswered");
    }

    /// Lets every worker answer what it holds, and waits for them.
    async fn finish(mut self) {
        self.queues.clear();
        while self.workers.join_next().await.is_some() {}
    }
}

/// A register's worker: answers its orders one after the other; ends when its queue is closed
/// (shutdown), or after [`WORKER_IDLE`] without orders (answering what arrived meanwhile).
async fn work(desk: Arc<OrderDesk>, mut rx: mpsc::Receiver<IncomingOrder>) {
    loop {
        match tokio::time::timeout(WORKER_IDLE, rx.recv()).await {
            Ok(Some(order)) => desk.answer(order).await,
            Ok(None) => return,
            Err(_) => {
                rx.close();
                while let Some(order) = rx.recv().await {
                    desk.answer(order).await;
                }
                return;
            }
        }
    }
}

impl OrderDesk {
    async fn order_from(&self, incoming: Incoming, seq: &mut u64) -> Option<IncomingOrder> {
        let this = *seq;
        *seq += 1;
        if let Some(register) = self
            .topics
            .register_of_report_requests(&incoming.publish.topic)
        {
            return Some(IncomingOrder {
                register: register.to_owned(),
                payload: Payload::ReportRequest {
                    incoming,
                    seq: this,
                },
            });
        }
        match self.topics.register_of_orders(&incoming.publish.topic) {
            Some(register) => Some(IncomingOrder {
                register: register.to_owned(),
                payload: Payload::Message {
                    incoming,
                    seq: this,
                },
            }),
            None => {
                tracing::warn!(topic = %incoming.publish.topic, "message on a topic that is not an orders topic; ignored");
                self.acks.done(this, Some(incoming)).await;
                None
            }
        }
    }

    /// Answers one order: exactly one receipt, then the acknowledgement.
    pub async fn answer(&self, order: IncomingOrder) {
        self.respond(order, None).await;
    }

    /// Answers an order whose register's queue is full with 208, without registering it.
    async fn refuse_busy(&self, order: IncomingOrder) {
        tracing::warn!(register = %order.register, queued = REGISTER_QUEUE, "register's order queue is full; order refused");
        let message = format!(
            "register {} already has {REGISTER_QUEUE} orders waiting; nothing was registered: resend this order once earlier ones are answered (register_queue_full)",
            order.register
        );
        self.respond(order, Some(message)).await;
    }

    /// Answers `order`, or refuses it with 208 and `busy` as the message.
    async fn respond(&self, order: IncomingOrder, busy: Option<String>) {
        let register = order.register.as_str();
        let payload = match order.payload {
            Payload::ReportRequest { incoming, seq } => {
                let sent = self
                    .answer_report(register, &incoming.publish.payload, busy.as_deref())
                    .await;
                self.acks.done(seq, sent.then_some(incoming)).await;
                return;
            }
            Payload::DirectReportRequest(payload, ack) => {
                if self
                    .answer_report(register, &payload, busy.as_deref())
                    .await
                    && let Some(ack) = ack
                {
                    ack.answered();
                }
                return;
            }
            other => other,
        };
        let receipt = match &payload {
            // Taken out above.
            Payload::ReportRequest { .. } | Payload::DirectReportRequest(..) => return,
            Payload::Message { incoming, .. } if busy.is_some() => busy_receipt(
                sniff_request_id(&incoming.publish.payload),
                busy.unwrap_or_default(),
            ),
            Payload::Direct(payload, _) if busy.is_some() => {
                busy_receipt(sniff_request_id(payload), busy.unwrap_or_default())
            }
            Payload::Message { incoming, .. }
                if incoming.publish.payload.len() > self.max_payload =>
            {
                let payload = &incoming.publish.payload;
                self.too_large(register, payload.len(), sniff_request_id(payload))
            }
            Payload::TooLarge(size, _) => self.too_large(register, *size, None),
            Payload::Message { incoming, .. } => {
                self.app
                    .handle_order(register, &incoming.publish.payload)
                    .await
            }
            Payload::Direct(payload, _) => self.app.handle_order(register, payload).await,
        };
        let code = receipt.code().number();
        let body = match &receipt {
            // The signed receipt is serialised as it is, without a copy, into a buffer the
            // size of a receipt with its ticket text (`to_vec` starts at 128 bytes and grows
            // by copying).
            Receipt::Signed(v) => {
                let mut out = Vec::with_capacity(RECEIPT_CAPACITY);
                serde_json::to_writer(&mut out, v).map(|()| out)
            }
            Receipt::Error { .. } => serde_json::to_vec(&receipt.to_json()),
        };
        let sent = match body {
            Ok(body) => self
                .out
                .publish(self.topics.receipts(register), body)
                .await
                .is_ok(),
            Err(e) => {
                tracing::error!(register, error = %e, "receipt could not be encoded");
                false
            }
        };
        if !sent {
            tracing::warn!(
                register,
                code,
                "receipt not sent: the MQTT client has stopped"
            );
        }
        match payload {
            Payload::Message { incoming, seq } => {
                // Unanswered (client stopped): not acknowledged, so a keeping broker resends it.
                self.acks.done(seq, sent.then_some(incoming)).await;
            }
            Payload::Direct(_, Some(ack)) | Payload::TooLarge(_, Some(ack)) if sent => {
                ack.answered();
            }
            _ => {}
        }
        tracing::debug!(register, code, "order answered");
    }

    /// Answers one report request on `…/reports` (the report, or the error with its code); true
    /// once the answer is on its way.
    async fn answer_report(&self, register: &str, payload: &[u8], busy: Option<&str>) -> bool {
        let answer = if let Some(message) = busy {
            serde_json::json!({"status": "error", "code": FdmCode::NotOperational.number(),
                "message": message})
        } else if !self.app.config.daemon.dev && !self.app.access.active_register(register) {
            serde_json::json!({"status": "error", "code": FdmCode::InvalidData.number(),
                "message": format!("register {register} is not enrolled or was revoked")})
        } else {
            match crate::reports::ReportRequest::from_json(payload, Some(register)) {
                Ok(request) => match self.app.reports.make(&request).await {
                    Ok(report) => report,
                    Err(e) => e.to_json(),
                },
                Err(e) => e.to_json(),
            }
        };
        let mut answer = answer;
        answer["request_id"] =
            sniff_request_id(payload).map_or(serde_json::Value::Null, Into::into);
        let sent = match serde_json::to_vec(&answer) {
            Ok(body) => self
                .out
                .publish(self.topics.reports(register), body)
                .await
                .is_ok(),
            Err(_) => false,
        };
        if !sent {
            tracing::warn!(
                register,
                "report answer not sent: the MQTT client has stopped"
            );
        }
        sent
    }

    fn too_large(&self, register: &str, size: usize, request_id: Option<String>) -> Receipt {
        self.app.status.saw_register(register, unix_ms());
        self.app.status.count_order(false);
        tracing::info!(
            register,
            size,
            max = self.max_payload,
            "order payload over the limit"
        );
        Receipt::Error {
            request_id,
            code: FdmCode::InvalidData,
            message: format!(
                "payload is {size} bytes; at most {} bytes are accepted",
                self.max_payload
            ),
            field: None,
            problems: Vec::new(),
        }
    }
}

/// The 208 receipt of an order refused because its register's queue is full.
fn busy_receipt(request_id: Option<String>, message: String) -> Receipt {
    Receipt::Error {
        request_id,
        code: FdmCode::NotOperational,
        message,
        field: None,
        problems: Vec::new(),
    }
}
