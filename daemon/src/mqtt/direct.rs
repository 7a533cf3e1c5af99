//! The direct path of embedded mode: what fdmd publishes for clients connected to the gate
//! (receipts, reports, station tickets) goes straight to their gate connections, without a
//! round trip through the internal broker, whenever that reaches every subscriber.
//!
//! A gate connection with a clean session subscribes *directly* when a SUBSCRIBE names only
//! topics of [`Topics::is_direct`] exactly (its own receipts, reports or tickets): the gate
//! registers it here and answers the SUBACK itself; rumqttd never hears of it. Every other
//! subscription (persistent sessions, wildcards in development mode, the status topic, a SUBSCRIBE
//! mixing both kinds) goes to rumqttd as before, and is counted here as *broker interest* in its
//! filter. [`Routes::publish`] delivers a message to the direct subscribers of its topic and says
//! whether fdmd must also publish it to the broker: only when some broker subscription could match
//! it. So every subscriber gets one copy either way, and a message nobody subscribed to is not sent
//! at all (rumqttd would have dropped it too).
//!
//! Broker interest is released when a clean-session connection ends (its subscriptions end with
//! it); a persistent session's interest is kept until fdmd stops, since rumqttd keeps its
//! subscriptions while the client is away. Counting too much only costs a needless publish.

use super::bus::{BusError, BusHandle};
use super::topics::Topics;
use bytes::Bytes;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// What a gate connection is asked to send to its client.
#[derive(Debug)]
pub enum Out {
    /// A frame from the internal broker, forwarded as it is.
    Frame(Vec<u8>),
    /// A message delivered directly, at the QoS (0 or 1) of the subscription.
    Publish {
        /// Topic.
        topic: String,
        /// Payload.
        payload: Bytes,
        /// 0 or 1.
        qos: u8,
    },
    /// A frame the gate makes itself (PUBACK, SUBACK, UNSUBACK).
    Own(Vec<u8>),
    /// The broker closed the connection: write what came before, then close.
    End,
    /// A direct order with this packet id arrived (QoS 1): its PUBACK waits for its answer, and
    /// PUBACKs go out in the order the orders came (MQTT 3.1.1 §4.6).
    Expect(u16),
    /// The order with this packet id is answered (`puback`) or will not be (fdmd stops).
    Settled {
        /// Packet id.
        id: u16,
        /// Whether to acknowledge it.
        puback: bool,
    },
}

/// The acknowledgement a direct QoS 1 order is owed, sent once its receipt is queued: in the
/// same write as the receipt, most of the time. Dropped unanswered, the order is not
/// acknowledged (later ones still are).
#[derive(Debug)]
pub struct DirectAck {
    out: mpsc::Sender<Out>,
    id: u16,
    close: CancellationToken,
    answered: bool,
}

impl DirectAck {
    /// The acknowledgement of packet `id`, for the connection behind `out`.
    pub fn new(out: mpsc::Sender<Out>, id: u16, close: CancellationToken) -> Self {
        DirectAck {
            out,
            id,
            close,
            answered: false,
        }
    }

    /// The order is answered: acknowledge it.
    pub fn answered(mut self) {
        self.answered = true;
    }
}

impl Drop for DirectAck {
    fn drop(&mut self) {
        let settled = Out::Settled {
            id: self.id,
            puback: self.answered,
        };
        if let Err(mpsc::error::TrySendError::Full(_)) = self.out.try_send(settled) {
            tracing::warn!("MQTT client does not read its messages; connection closed");
            self.close.cancel();
        }
    }
}

/// One gate connection's direct subscription.
#[derive(Debug, Clone)]
struct Subscriber {
    connection: u64,
    qos: u8,
    tx: mpsc::Sender<Out>,
    /// Cancelled to close the connection when its client does not keep up.
    close: CancellationToken,
}

#[derive(Default)]
struct Inner {
    direct: HashMap<String, Vec<Subscriber>>,
    /// Broker subscriptions per exact filter.
    interest: HashMap<String, usize>,
    /// Broker subscriptions with a wildcard (development mode only).
    wildcards: usize,
}

/// Direct subscriptions and broker interest, shared by the gate and fdmd's publishers.
#[derive(Default)]
pub struct Routes {
    inner: Mutex<Inner>,
}

/// What [`Routes::publish`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// Connections the message was queued for directly.
    pub direct: usize,
    /// Whether it must also be published to the broker.
    pub broker: bool,
}

impl Routes {
    /// No subscriptions.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent maps (every change is one call).
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `payload` for every direct subscriber of `topic`. A connection whose queue is full
    /// is closed (its client does not read; it reconnects and resends). `broker` in the answer
    /// says whether a broker subscription could also match `topic`.
    pub fn publish(&self, topic: &str, payload: &Bytes) -> Delivery {
        let inner = self.lock();
        let broker = inner.wildcards > 0 || inner.interest.get(topic).is_some_and(|n| *n > 0);
        let mut direct = 0;
        if let Some(subs) = inner.direct.get(topic) {
            for s in subs {
                let out = Out::Publish {
                    topic: topic.to_owned(),
                    payload: payload.clone(),
                    qos: s.qos,
                };
                match s.tx.try_send(out) {
                    Ok(()) => direct += 1,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        tracing::warn!(
                            topic,
                            "MQTT client does not read its messages; connection closed"
                        );
                        s.close.cancel();
                    }
                    // The connection is ending; its subscriptions go with it.
                    Err(mpsc::error::TrySendError::Closed(_)) => {}
                }
            }
        }
        Delivery { direct, broker }
    }

    /// Whether anybody, directly or through the broker, is subscribed to `topic`.
    pub fn has_subscribers(&self, topic: &str) -> bool {
        let inner = self.lock();
        inner.wildcards > 0
            || inner.interest.get(topic).is_some_and(|n| *n > 0)
            || inner.direct.contains_key(topic)
    }

    /// Whether a broker subscription could match `topic`.
    pub fn broker_interest(&self, topic: &str) -> bool {
        let inner = self.lock();
        inner.wildcards > 0 || inner.interest.get(topic).is_some_and(|n| *n > 0)
    }

    fn add_interest(&self, filter: &str) {
        let mut inner = self.lock();
        if is_wildcard(filter) {
            inner.wildcards += 1;
        } else {
            *inner.interest.entry(filter.to_owned()).or_default() += 1;
        }
    }

    fn remove_interest(&self, filter: &str) {
        let mut inner = self.lock();
        if is_wildcard(filter) {
            inner.wildcards = inner.wildcards.saturating_sub(1);
        } else if let Some(n) = inner.interest.get_mut(filter) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                inner.interest.remove(filter);
            }
        }
    }
}

/// Publishes what fdmd sends to clients: through [`Routes`] in embedded mode (direct
/// subscribers first, the broker only when a broker subscription could match), through the bus
/// alone with an external broker.
#[derive(Clone)]
pub struct Publisher {
    /// fdmd's client.
    pub bus: BusHandle,
    /// Direct subscriptions (embedded mode).
    pub routes: Option<Arc<Routes>>,
}

impl Publisher {
    /// Publishes `payload` on `topic` at QoS 1, not retained. An error means the bus has stopped
    /// and the message went to no broker subscriber (direct subscribers may have it).
    pub async fn publish(&self, topic: String, payload: Vec<u8>) -> Result<(), BusError> {
        let Some(routes) = &self.routes else {
            return self.bus.publish(topic, payload, false).await;
        };
        let payload = Bytes::from(payload);
        if routes.publish(&topic, &payload).broker {
            self.bus.publish(topic, Vec::from(payload), false).await?;
        }
        Ok(())
    }

    /// Whether anybody could receive a message on `topic` (always, with an external broker).
    pub fn wanted(&self, topic: &str) -> bool {
        self.routes
            .as_ref()
            .is_none_or(|r| r.has_subscribers(topic))
    }
}

fn is_wildcard(filter: &str) -> bool {
    filter.contains(['+', '#']) || filter.starts_with('$')
}

impl Topics {
    /// Whether `filter` is a topic fdmd publishes per client and may deliver directly:
    /// `PREFIX/registers/R/receipts`, `…/reports` or `PREFIX/stations/S/tickets`, exactly.
    pub fn is_direct(&self, filter: &str) -> bool {
        let Some(rest) = filter
            .strip_prefix(self.prefix())
            .and_then(|r| r.strip_prefix('/'))
        else {
            return false;
        };
        let mut levels = rest.split('/');
        let (Some(kind), Some(id), Some(what), None) =
            (levels.next(), levels.next(), levels.next(), levels.next())
        else {
            return false;
        };
        super::topics::is_topic_id(id)
            && matches!(
                (kind, what),
                ("registers", "receipts" | "reports") | ("stations", "tickets")
            )
    }
}

/// One gate connection's entries in [`Routes`]; they are removed when it is dropped.
pub struct Registration<'a> {
    routes: &'a Routes,
    connection: u64,
    /// Whether the session ends with the connection (clean session).
    clean: bool,
    tx: mpsc::Sender<Out>,
    close: CancellationToken,
    direct: HashSet<String>,
    interest: Vec<String>,
}

impl<'a> Registration<'a> {
    /// Entries for connection number `connection`, whose client gets messages through `tx`.
    pub fn new(
        routes: &'a Routes,
        connection: u64,
        clean: bool,
        tx: mpsc::Sender<Out>,
        close: CancellationToken,
    ) -> Self {
        Registration {
            routes,
            connection,
            clean,
            tx,
            close,
            direct: HashSet::new(),
            interest: Vec::new(),
        }
    }

    /// Subscribes directly to `topic` at `qos` (at most 1 is used: fdmd publishes at QoS 1).
    pub fn subscribe_direct(&mut self, topic: &str, qos: u8) {
        let qos = qos.min(1);
        let mut inner = self.routes.lock();
        let subs = inner.direct.entry(topic.to_owned()).or_default();
        if let Some(s) = subs.iter_mut().find(|s| s.connection == self.connection) {
            s.qos = qos;
        } else {
            subs.push(Subscriber {
                connection: self.connection,
                qos,
                tx: self.tx.clone(),
                close: self.close.clone(),
            });
        }
        self.direct.insert(topic.to_owned());
    }

    /// Whether this connection is subscribed directly to `topic`.
    pub fn is_direct(&self, topic: &str) -> bool {
        self.direct.contains(topic)
    }

    /// Ends the direct subscription to `topic`; false if there was none.
    pub fn unsubscribe_direct(&mut self, topic: &str) -> bool {
        if !self.direct.remove(topic) {
            return false;
        }
        remove_direct(self.routes, topic, self.connection);
        true
    }

    /// Whether this connection has subscribed to `filter` through the broker.
    pub fn at_broker(&self, filter: &str) -> bool {
        self.interest.iter().any(|f| f == filter)
    }

    /// A subscription to `filter` goes to the broker: count it.
    pub fn broker_subscription(&mut self, filter: &str) {
        self.routes.add_interest(filter);
        self.interest.push(filter.to_owned());
    }
}

fn remove_direct(routes: &Routes, topic: &str, connection: u64) {
    let mut inner = routes.lock();
    if let Some(subs) = inner.direct.get_mut(topic) {
        subs.retain(|s| s.connection != connection);
        if subs.is_empty() {
            inner.direct.remove(topic);
        }
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        for topic in std::mem::take(&mut self.direct) {
            remove_direct(self.routes, &topic, self.connection);
        }
        if self.clean {
            for filter in std::mem::take(&mut self.interest) {
                self.routes.remove_interest(&filter);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn direct_topics_are_exact_per_client_topics() {
        let t = Topics::new("fdm/v1");
        assert!(t.is_direct("fdm/v1/registers/till-1/receipts"));
        assert!(t.is_direct("fdm/v1/registers/till-1/reports"));
        assert!(t.is_direct("fdm/v1/stations/kitchen/tickets"));
        for f in [
            "fdm/v1/status",
            "fdm/v1/registers/+/receipts",
            "fdm/v1/registers/till-1/#",
            "fdm/v1/registers/till-1/orders",
            "fdm/v1/registers/till-1/receipts/x",
            "fdm/v1/stations/kitchen/receipts",
            "fdm/v2/registers/till-1/receipts",
            "fdm/v1x/registers/till-1/receipts",
            "fdm/v1/registers//receipts",
        ] {
            assert!(!t.is_direct(f), "{f}");
        }
    }

    #[tokio::test]
    async fn messages_reach_direct_subscribers_and_say_when_the_broker_needs_a_copy() {
        let routes = Routes::new();
        let topic = "fdm/v1/registers/a/receipts";
        let payload = Bytes::from_static(b"{}");
        assert_eq!(
            routes.publish(topic, &payload),
            Delivery {
                direct: 0,
                broker: false
            },
            "nobody subscribed: nothing to send"
        );
        let (tx, mut rx) = mpsc::channel(1);
        let close = CancellationToken::new();
        {
            let mut reg = Registration::new(&routes, 1, true, tx, close.clone());
            reg.subscribe_direct(topic, 1);
            reg.subscribe_direct(topic, 2);
            assert_eq!(routes.publish(topic, &payload).direct, 1, "one copy");
            assert!(matches!(rx.try_recv(), Ok(Out::Publish { qos: 1, .. })));
            // A persistent subscriber elsewhere, through the broker.
            reg.broker_subscription(topic);
            assert!(routes.publish(topic, &payload).broker);
            // Full queue: the connection is closed rather than the publisher blocked.
            assert!(!close.is_cancelled());
            routes.publish(topic, &payload);
            assert!(close.is_cancelled());
        }
        // Dropped with a clean session: nothing left.
        assert_eq!(
            routes.publish(topic, &payload),
            Delivery {
                direct: 0,
                broker: false
            }
        );
        let (tx, _rx) = mpsc::channel(1);
        {
            let mut kept = Registration::new(&routes, 2, false, tx, CancellationToken::new());
            kept.broker_subscription("fdm/v1/#");
        }
        assert!(
            routes.broker_interest("fdm/v1/stations/x/tickets"),
            "a persistent session's wildcard stays"
        );
    }
}
