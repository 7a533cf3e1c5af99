//! From orders to receipts. Orders arrive from the bus, or straight from the gate (clean-session
//! clients in embedded mode, already acknowledged by the gate; and size notices for payloads the
//! gate would not forward); each is answered with exactly one receipt on
//! `PREFIX/registers/{register}/receipts` (through [`Publisher`]), then, when it came from the
//! bus, acknowledged to the broker.
//!
//! Orders are spread over a fixed pool of workers by register: one register's orders are
//! answered one after the other, in arrival order, while different registers are served
//! concurrently (the journal commits concurrent appends together, which is where throughput comes
//! from). Queues are bounded; with orders acknowledged by hand, the broker's in-flight window is
//! what bounds them in practice. Acknowledgements go out in arrival order ([`AckBook`]).

use super::bus::{BusHandle, Incoming};
use super::direct::{DirectAck, Publisher};
use super::topics::Topics;
use crate::app::{App, unix_ms};
use crate::fiscal::FdmCode;
use crate::service::{Receipt, sniff_request_id};
use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use tokio::sync::{Mutex, mpsc};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

/// Workers; a register always goes to the same one.
const WORKERS: usize = 64;
/// Orders queued per worker.
const WORKER_QUEUE: usize = 128;

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
    let mut workers = JoinSet::new();
    let queues: Vec<mpsc::Sender<IncomingOrder>> = (0..WORKERS)
        .map(|_| {
            let (tx, rx) = mpsc::channel(WORKER_QUEUE);
            workers.spawn(work(desk.clone(), rx));
            tx
        })
        .collect();
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
            hand_over(&queues, order).await;
        }
    }
    // Stop taking orders; what already reached fdmd is still answered.
    inbound.close();
    from_gate.close();
    while let Ok(m) = inbound.try_recv() {
        if let Some(order) = desk.order_from(m, &mut seq).await {
            hand_over(&queues, order).await;
        }
    }
    while let Ok(order) = from_gate.try_recv() {
        hand_over(&queues, order).await;
    }
    drop(queues);
    while workers.join_next().await.is_some() {}
}

async fn hand_over(queues: &[mpsc::Sender<IncomingOrder>], order: IncomingOrder) {
    let mut h = DefaultHasher::new();
    order.register.hash(&mut h);
    let i = (h.finish() % queues.len() as u64) as usize;
    if let Some(q) = queues.get(i)
        && q.send(order).await.is_err()
    {
        tracing::error!("an order worker has stopped; order left unanswered");
    }
}

async fn work(desk: Arc<OrderDesk>, mut rx: mpsc::Receiver<IncomingOrder>) {
    while let Some(order) = rx.recv().await {
        desk.answer(order).await;
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
        let register = order.register.as_str();
        let payload = match order.payload {
            Payload::ReportRequest { incoming, seq } => {
                let sent = self
                    .answer_report(register, &incoming.publish.payload)
                    .await;
                self.acks.done(seq, sent.then_some(incoming)).await;
                return;
            }
            Payload::DirectReportRequest(payload, ack) => {
                if self.answer_report(register, &payload).await
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
            // The signed receipt is serialised as it is, without a copy.
            Receipt::Signed(v) => serde_json::to_vec(v),
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
    async fn answer_report(&self, register: &str, payload: &[u8]) -> bool {
        let answer = if !self.app.config.daemon.dev && !self.app.access.active_register(register) {
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
