//! fdmd's own MQTT client: one rumqttc connection whose event loop runs in its own task. Other
//! tasks talk to it only through channels: [`BusHandle`] queues publishes and acknowledgements on
//! rumqttc's request channel, and incoming messages arrive on an mpsc channel. Nothing ever
//! awaits a rumqttc request from the task that polls the event loop (rumqtt#263, #910).
//!
//! Orders are acknowledged by hand ([`BusHandle::ack`]) once their receipt is queued, so the
//! broker's in-flight window bounds how many orders fdmd holds unanswered, and a broker that keeps
//! sessions (Mosquitto) redelivers what fdmd had not answered when it stopped. Acknowledgements
//! must go out in delivery order (rumqttd drops a connection on an out-of-order PUBACK) and never
//! on a later connection than the message came on; [`Incoming`] carries the connection it came
//! on so [`BusHandle::ack`] can tell.

use crate::status::{Heartbeat, Status};
use rumqttc::{
    AsyncClient, Event, EventLoop, LastWill, MqttOptions, Outgoing, Packet, QoS,
    SubscribeReasonCode,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use rumqttc::Publish;

/// Requests rumqttc may hold queued: generous, so publishers rarely wait.
const REQUEST_CHANNEL: usize = 1024;
/// Longest pause between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Where and how the bus connects.
#[derive(Clone)]
pub struct BusOptions {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// Client id (must not be empty).
    pub client_id: String,
    /// User name and password.
    pub credentials: Option<(String, String)>,
    /// Largest packet in either direction.
    pub max_packet_bytes: usize,
    /// Keep the session (subscriptions and unacknowledged orders) across reconnections.
    pub persistent_session: bool,
    /// Keep-alive.
    pub keep_alive: Duration,
    /// Retained QoS 1 message the broker publishes if fdmd vanishes: (topic, payload).
    pub will: Option<(String, Vec<u8>)>,
    /// Filters subscribed at QoS 1 on every connection.
    pub subscriptions: Vec<String>,
    /// TLS client configuration, when the broker is reached over TLS.
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for BusOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BusOptions")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("client_id", &self.client_id)
            .field("user", &self.credentials.as_ref().map(|c| &c.0))
            .field("subscriptions", &self.subscriptions)
            .finish_non_exhaustive()
    }
}

/// Why the bus failed.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The options cannot be used.
    #[error("bad MQTT client options: {0}")]
    Options(String),
    /// The event loop has stopped.
    #[error("the MQTT client has stopped")]
    Stopped,
}

/// Where the bus reports its health.
#[derive(Clone)]
pub struct BusHealth {
    /// Told whether MQTT is up.
    pub status: Arc<Status>,
    /// Beaten on every turn of the event loop.
    pub heartbeat: Arc<Heartbeat>,
    /// Beat only while connected, so that a broker that cannot be reached for long shows as a
    /// stalled loop (and the watchdog restarts fdmd): right for the embedded broker, which is
    /// part of fdmd, wrong for an external one.
    pub beat_only_when_connected: bool,
}

/// A message from the broker, and the connection it came on.
#[derive(Debug)]
pub struct Incoming {
    /// The message.
    pub publish: Publish,
    connection: u64,
}

/// Queues requests for the event loop.
#[derive(Clone)]
pub struct BusHandle {
    client: AsyncClient,
    connection: Arc<AtomicU64>,
}

impl BusHandle {
    /// Publishes at QoS 1. Returns once rumqttc has queued it; rumqttc retransmits until the
    /// broker acknowledges it, also across reconnections.
    pub async fn publish(
        &self,
        topic: String,
        payload: Vec<u8>,
        retain: bool,
    ) -> Result<(), BusError> {
        self.client
            .publish(topic, QoS::AtLeastOnce, retain, payload)
            .await
            .map_err(|_| BusError::Stopped)
    }

    /// Publishes a message that is not retained at QoS 0 (`qos == 0`) or 1 (otherwise). Returns
    /// once rumqttc has queued it.
    pub async fn publish_qos(
        &self,
        topic: String,
        payload: Vec<u8>,
        qos: u8,
    ) -> Result<(), BusError> {
        let qos = if qos == 0 {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        };
        self.client
            .publish(topic, qos, false, payload)
            .await
            .map_err(|_| BusError::Stopped)
    }

    /// Acknowledges an incoming QoS 1 or 2 message, unless the connection it came on has gone
    /// (the broker then has forgotten it, or will deliver it again). Callers acknowledge in the
    /// order messages arrived.
    pub async fn ack(&self, incoming: &Incoming) -> Result<(), BusError> {
        if incoming.publish.qos == QoS::AtMostOnce
            || incoming.connection != self.connection.load(Ordering::SeqCst)
        {
            return Ok(());
        }
        self.client
            .ack(&incoming.publish)
            .await
            .map_err(|_| BusError::Stopped)
    }
}

/// The running client.
pub struct Bus {
    handle: BusHandle,
    task: JoinHandle<()>,
    stop: CancellationToken,
    subscribed: watch::Receiver<bool>,
}

impl Bus {
    /// Starts the event loop; incoming messages go to `inbound`. It connects, subscribes, and
    /// reconnects with back-off until stopped.
    pub fn start(
        options: BusOptions,
        inbound: mpsc::Sender<Incoming>,
        health: Option<BusHealth>,
    ) -> Result<Bus, BusError> {
        if options.client_id.is_empty() || options.client_id.starts_with(' ') {
            return Err(BusError::Options(format!(
                "client id {:?} is not usable",
                options.client_id
            )));
        }
        if options.keep_alive < Duration::from_secs(1) {
            return Err(BusError::Options("keep-alive must be at least 1 s".into()));
        }
        let mut mqtt = MqttOptions::new(
            options.client_id.clone(),
            options.host.clone(),
            options.port,
        );
        mqtt.set_keep_alive(options.keep_alive)
            .set_clean_session(!options.persistent_session)
            .set_max_packet_size(options.max_packet_bytes, options.max_packet_bytes)
            .set_manual_acks(true)
            .set_inflight(100)
            .set_request_channel_capacity(REQUEST_CHANNEL);
        if let Some(tls) = &options.tls {
            mqtt.set_transport(rumqttc::Transport::tls_with_config(
                rumqttc::TlsConfiguration::Rustls(tls.clone()),
            ));
        }
        if let Some((user, pass)) = &options.credentials {
            mqtt.set_credentials(user.clone(), pass.clone());
        }
        if let Some((topic, payload)) = &options.will {
            mqtt.set_last_will(LastWill::new(
                topic.clone(),
                payload.clone(),
                QoS::AtLeastOnce,
                true,
            ));
        }
        let (client, mut eventloop) = AsyncClient::new(mqtt, REQUEST_CHANNEL);
        // Receipts are small writes answered by small writes: no Nagle delay.
        eventloop.network_options.set_tcp_nodelay(true);
        let (subscribed_tx, subscribed) = watch::channel(false);
        let stop = CancellationToken::new();
        let connection = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(
            EventLoopTask {
                eventloop,
                client: client.clone(),
                connection: connection.clone(),
                filters: options.subscriptions,
                inbound,
                health,
                subscribed: subscribed_tx,
                stop: stop.clone(),
                broker: format!("{}:{}", options.host, options.port),
                must_subscribe: false,
            }
            .run(),
        );
        Ok(Bus {
            handle: BusHandle { client, connection },
            task,
            stop,
            subscribed,
        })
    }

    /// A handle for publishing.
    pub fn handle(&self) -> BusHandle {
        self.handle.clone()
    }

    /// Waits until the broker has granted every subscription; false on timeout.
    pub async fn wait_subscribed(&self, timeout: Duration) -> bool {
        let mut rx = self.subscribed.clone();
        matches!(
            tokio::time::timeout(timeout, rx.wait_for(|s| *s)).await,
            Ok(Ok(_))
        )
    }

    /// Whether the bus is connected and subscribed now.
    pub fn is_subscribed(&self) -> bool {
        *self.subscribed.borrow()
    }

    /// Disconnects cleanly (no will): what was queued before is sent first. Gives up after
    /// `timeout` and drops the connection.
    pub async fn disconnect(mut self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.handle.client.disconnect()).await;
        if tokio::time::timeout(timeout, &mut self.task).await.is_err() {
            tracing::warn!(
                "MQTT client did not disconnect within {timeout:?}; dropping the connection"
            );
            self.stop.cancel();
            let _ = self.task.await;
        }
    }

    /// Drops the connection without DISCONNECT, as a crash would: the broker publishes the will.
    pub async fn abort(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

struct EventLoopTask {
    eventloop: EventLoop,
    client: AsyncClient,
    /// Counts connections: bumped when one fails.
    connection: Arc<AtomicU64>,
    filters: Vec<String>,
    inbound: mpsc::Sender<Incoming>,
    health: Option<BusHealth>,
    subscribed: watch::Sender<bool>,
    stop: CancellationToken,
    broker: String,
    must_subscribe: bool,
}

impl EventLoopTask {
    async fn run(mut self) {
        let mut backoff = Duration::from_millis(50);
        let mut failures = 0u32;
        let mut disconnecting = false;
        let mut connected = false;
        loop {
            if self.must_subscribe {
                self.subscribe();
            }
            let event = tokio::select! {
                biased;
                _ = self.stop.cancelled() => break,
                event = self.eventloop.poll() => event,
            };
            if let Some(h) = &self.health
                && (connected || !h.beat_only_when_connected)
            {
                h.status.beat(&h.heartbeat);
            }
            connected = match &event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => true,
                Err(_) => false,
                Ok(_) => connected,
            };
            match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    if failures > 0 {
                        tracing::info!(broker = %self.broker, "MQTT connection re-established");
                    }
                    failures = 0;
                    backoff = Duration::from_millis(50);
                    self.set_up(true);
                    self.must_subscribe = true;
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    if ack
                        .return_codes
                        .iter()
                        .all(|c| matches!(c, SubscribeReasonCode::Success(_)))
                    {
                        self.subscribed.send_replace(true);
                    } else {
                        tracing::error!(broker = %self.broker, filters = ?self.filters, "the broker refused fdmd's subscription; check its ACL");
                    }
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    let incoming = Incoming {
                        publish,
                        connection: self.connection.load(Ordering::SeqCst),
                    };
                    // Bounded by the broker's in-flight window, since orders are acked by hand.
                    if self.inbound.send(incoming).await.is_err() {
                        tracing::debug!(
                            "message arrived while fdmd stops taking orders; left unacknowledged"
                        );
                    }
                }
                // Wait for the broker to close the connection (see gate.rs, DISCONNECT).
                Ok(Event::Outgoing(Outgoing::Disconnect)) => disconnecting = true,
                Ok(_) => {}
                Err(_) if disconnecting => break,
                Err(e) => {
                    // rumqttc has dropped the acknowledgements still queued (EventLoop::clean);
                    // none queued from now on may reach the next connection.
                    self.connection.fetch_add(1, Ordering::SeqCst);
                    self.set_up(false);
                    failures += 1;
                    if failures == 1 || failures.is_power_of_two() {
                        tracing::warn!(broker = %self.broker, error = %e, failures, "MQTT connection failed; retrying");
                    }
                    tokio::select! {
                        _ = self.stop.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        self.set_up(false);
    }

    fn set_up(&self, up: bool) {
        if !up {
            self.subscribed.send_replace(false);
        }
        if let Some(h) = &self.health {
            h.status.set_mqtt_up(up);
        }
    }

    fn subscribe(&mut self) {
        self.must_subscribe = false;
        if self.filters.is_empty() {
            self.subscribed.send_replace(true);
            return;
        }
        let filters = self
            .filters
            .iter()
            .map(|f| rumqttc::SubscribeFilter::new(f.clone(), QoS::AtLeastOnce));
        // Never await a request from the task that polls: try_ cannot block. The channel is
        // drained by this very loop, so it is only full with REQUEST_CHANNEL requests queued;
        // then try again on the next turn.
        if let Err(e) = self.client.try_subscribe_many(filters) {
            tracing::debug!(error = %e, "could not queue fdmd's subscription yet");
            self.must_subscribe = true;
        }
    }
}
