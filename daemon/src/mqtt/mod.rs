//! MQTT: how registers, stations and fdmd talk (topics and payloads in `docs/mqtt.md`).
//!
//! * **Embedded mode** (default): fdmd runs its own broker. Clients connect to the [`gate`], which
//!   authenticates them against the access store and checks every publish and subscribe against
//!   [`acl`]; it forwards what is allowed to rumqttd ([`broker`]), bound to loopback and accepting
//!   only the gate's and fdmd's own per-process secrets.
//! * **External mode**: fdmd connects to the establishment's broker (Mosquitto), which enforces
//!   access with its own password file and ACL (`packaging/mosquitto/`).
//!
//! In both modes fdmd's own client ([`bus`]) takes orders, answers them with receipts
//! ([`orders`]), forwards station tickets ([`tickets`]) and keeps the retained status topic
//! ([`status_topic`]) up to date, with a last will for when fdmd vanishes.

pub mod acl;
pub mod broker;
pub mod bus;
pub mod direct;
pub mod gate;
pub mod orders;
pub mod packet;
pub mod secret;
pub mod status_topic;
pub mod tickets;
pub mod topics;

use crate::app::App;
use crate::config::MqttMode;
use broker::{BUS_USER, BrokerSettings, InternalBroker};
use bus::{Bus, BusHealth, BusOptions};
use direct::{Publisher, Routes};
use gate::{Gate, GateSettings};
use orders::OrderDesk;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use topics::Topics;

/// How long start() waits for fdmd's client to be subscribed.
const SUBSCRIBE_WITHIN: Duration = Duration::from_secs(10);
/// Orders received from the broker and not yet handed to a worker.
const INBOUND_QUEUE: usize = 256;
/// Most client connections the embedded broker takes (rumqttd sizes tables by it).
const MAX_CONNECTIONS: usize = 10_000;
/// Time a client has to send its CONNECT (it is unauthenticated until then: see
/// [`crate::admission`]).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time given to the final status, the DISCONNECT and closing client connections.
const STOP_STEP: Duration = Duration::from_secs(1);

/// Why MQTT could not start.
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    /// The public listener could not be bound.
    #[error("cannot listen for MQTT on {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// The embedded broker did not start.
    #[error("embedded MQTT broker: {0}")]
    Broker(#[from] broker::BrokerError),
    /// The password file of the external broker could not be read.
    #[error("MQTT password file {path}: {message}")]
    PasswordFile {
        /// File.
        path: PathBuf,
        /// Cause.
        message: String,
    },
    /// fdmd's client could not be set up.
    #[error("MQTT client: {0}")]
    Bus(#[from] bus::BusError),
    /// The TLS settings for the external broker cannot be used.
    #[error("MQTT TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    /// fdmd's client was not subscribed in time.
    #[error("fdmd's MQTT client was not subscribed to the embedded broker within {0:?}")]
    NotSubscribed(Duration),
}

/// Largest packet between fdmd's own pieces and the broker: an order at the limit, or a status
/// document, with room for the topic.
pub fn internal_packet_limit(max_payload_bytes: usize) -> usize {
    max_payload_bytes.max(1024 * 1024) + 4096
}

/// The MQTT side of the daemon.
pub struct MqttService {
    app: Arc<App>,
    topics: Topics,
    gate: Option<Gate>,
    broker: Option<InternalBroker>,
    bus: Bus,
    orders: JoinHandle<()>,
    stop_orders: CancellationToken,
    tickets: JoinHandle<()>,
    status: JoinHandle<()>,
    stop_outbound: CancellationToken,
    /// How fdmd's client reached the broker (for another client of fdmd's: plugins).
    client_options: BusOptions,
}

impl MqttService {
    /// Starts MQTT per `app.config.mqtt`: in `embedded` mode the broker behind the gate listening
    /// on `config.mqtt.listen` (port 0 allowed: see [`MqttService::local_addr`]), then fdmd's own
    /// client. Returns once clients can connect and fdmd is subscribed. In `external` mode a
    /// broker that cannot be reached within 10 s is retried in the background (status shows
    /// "MQTT not serving") rather than failing the daemon.
    pub async fn start(app: Arc<App>) -> anyhow::Result<MqttService> {
        Ok(Self::start_inner(app).await?)
    }

    async fn start_inner(app: Arc<App>) -> Result<MqttService, MqttError> {
        let cfg = &app.config.mqtt;
        let topics = Topics::new(&cfg.prefix);
        let max_connections = cfg.max_connections.clamp(1, MAX_CONNECTIONS);
        if max_connections != cfg.max_connections {
            tracing::warn!(
                configured = cfg.max_connections,
                used = max_connections,
                "mqtt.max_connections is above what the embedded broker is built for"
            );
        }
        let limit = internal_packet_limit(cfg.max_payload_bytes);
        let will = Some((topics.status(), status_topic::will_payload()));
        let subscriptions = vec![topics.orders_filter(), topics.report_requests_filter()];

        let (listener, broker, options) = match cfg.mode {
            MqttMode::Embedded => {
                let bind_error = |source| MqttError::Bind {
                    addr: cfg.listen,
                    source,
                };
                let listener = TcpListener::bind(cfg.listen).await.map_err(bind_error)?;
                let local_addr = listener.local_addr().map_err(bind_error)?;
                let broker = InternalBroker::start(BrokerSettings {
                    max_connections,
                    max_packet_bytes: limit,
                })
                .await?;
                let options = BusOptions {
                    host: broker.addr().ip().to_string(),
                    port: broker.addr().port(),
                    client_id: "fdmd".into(),
                    credentials: Some((BUS_USER.into(), broker.bus_secret().expose().into())),
                    max_packet_bytes: limit,
                    persistent_session: false,
                    keep_alive: Duration::from_secs(5),
                    will,
                    subscriptions,
                    tls: None,
                };
                (Some((listener, local_addr)), Some(broker), options)
            }
            MqttMode::External => {
                let ext = &cfg.external;
                let password = match &ext.password_file {
                    Some(path) => read_password(path)?,
                    None => String::new(),
                };
                let options = BusOptions {
                    host: ext.host.clone(),
                    port: ext.port,
                    client_id: ext.client_id.clone(),
                    credentials: (!ext.username.is_empty())
                        .then(|| (ext.username.clone(), password)),
                    max_packet_bytes: limit,
                    persistent_session: true,
                    keep_alive: Duration::from_secs(10),
                    will,
                    subscriptions,
                    tls: match (ext.tls, &ext.ca_file) {
                        (true, Some(ca)) => Some(crate::tls::client_config(
                            crate::tls::Roots::File(ca),
                            ext.cert_file.as_deref().zip(ext.key_file.as_deref()),
                        )?),
                        _ => None,
                    },
                };
                (None, None, options)
            }
        };

        let (inbound_tx, inbound_rx) = mpsc::channel(INBOUND_QUEUE);
        let (gate_tx, gate_rx) = mpsc::channel(INBOUND_QUEUE);
        let stations = app.subscribe_stations();
        let health = BusHealth {
            status: app.status.clone(),
            heartbeat: app.status.heartbeat("mqtt"),
            beat_only_when_connected: cfg.mode == MqttMode::Embedded,
        };
        let client_options = options.clone();
        let bus = match Bus::start(options, inbound_tx, Some(health)) {
            Ok(bus) => bus,
            Err(e) => {
                if let Some(b) = broker {
                    b.stop();
                }
                return Err(e.into());
            }
        };
        let stop_orders = CancellationToken::new();
        let routes = broker.as_ref().map(|_| Arc::new(Routes::new()));
        let publisher = Publisher {
            bus: bus.handle(),
            routes: routes.clone(),
        };
        let desk = Arc::new(OrderDesk {
            app: app.clone(),
            topics: topics.clone(),
            out: publisher.clone(),
            max_payload: cfg.max_payload_bytes,
            acks: orders::AckBook::new(bus.handle()),
        });
        let orders = orders::spawn(desk, inbound_rx, gate_rx, stop_orders.clone());
        let stop_outbound = CancellationToken::new();
        let tickets = tickets::spawn(stations, topics.clone(), publisher, stop_outbound.clone());
        app.set_station_readers(routes.clone().map(|routes| {
            let topics = topics.clone();
            let readers: crate::app::StationReaders =
                Arc::new(move |station: &str| routes.has_subscribers(&topics.tickets(station)));
            readers
        }));

        if !bus.wait_subscribed(SUBSCRIBE_WITHIN).await {
            if let Some(b) = broker {
                stop_orders.cancel();
                stop_outbound.cancel();
                bus.abort().await;
                b.stop();
                return Err(MqttError::NotSubscribed(SUBSCRIBE_WITHIN));
            }
            tracing::warn!(
                host = %cfg.external.host,
                port = cfg.external.port,
                "MQTT broker not reachable or fdmd not subscribed yet; retrying in the background"
            );
        }
        let status = status_topic::spawn(
            app.clone(),
            topics.status(),
            bus.handle(),
            status_topic::INTERVAL,
            stop_outbound.clone(),
        )
        .await;

        let gate = match (listener, &broker, routes) {
            (Some((listener, local_addr)), Some(b), Some(routes)) => {
                let settings = GateSettings {
                    topics: topics.clone(),
                    upstream: b.addr(),
                    secret: b.gate_secret().clone(),
                    max_payload: cfg.max_payload_bytes,
                    max_downstream: limit,
                    max_connections,
                    connect_timeout: CONNECT_TIMEOUT,
                    dev: app.config.daemon.dev,
                };
                let gate = Gate::start(
                    listener,
                    local_addr,
                    settings,
                    app.access.clone(),
                    gate_tx,
                    routes,
                );
                tracing::info!(addr = %gate.local_addr(), prefix = %topics.prefix(), "MQTT broker listening");
                Some(gate)
            }
            _ => {
                tracing::info!(host = %cfg.external.host, port = cfg.external.port, prefix = %topics.prefix(), "MQTT via the external broker");
                None
            }
        };

        Ok(MqttService {
            app,
            topics,
            gate,
            broker,
            bus,
            orders,
            stop_orders,
            tickets,
            status,
            stop_outbound,
            client_options,
        })
    }

    /// Options for a second client of fdmd's on the same broker, with the same credentials and
    /// TLS: client id `CLIENT_ID-SUFFIX`, no will, subscribed to `subscriptions`. The plugins'
    /// MQTT transport uses one, so that a slow plugin never holds up orders.
    pub fn extra_client_options(&self, suffix: &str, subscriptions: Vec<String>) -> BusOptions {
        BusOptions {
            client_id: format!("{}-{suffix}", self.client_options.client_id),
            will: None,
            subscriptions,
            ..self.client_options.clone()
        }
    }

    /// The address clients connect to (embedded mode).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.gate.as_ref().map(Gate::local_addr)
    }

    /// Publishes the final status, stops taking orders, lets in-flight ones finish (bounded by
    /// `daemon.shutdown_grace_ms`) and stops.
    pub async fn shutdown(self) {
        let grace = Duration::from_millis(self.app.config.daemon.shutdown_grace_ms);
        if let Some(gate) = &self.gate {
            gate.stop_accepting();
        }
        self.stop_orders.cancel();
        let mut orders = self.orders;
        if tokio::time::timeout(grace, &mut orders).await.is_err() {
            tracing::warn!(
                "orders still in flight after {grace:?} are abandoned; registers resend them"
            );
            orders.abort();
        }
        self.stop_outbound.cancel();
        for task in [self.tickets, self.status] {
            let abort = task.abort_handle();
            if tokio::time::timeout(STOP_STEP, task).await.is_err() {
                abort.abort();
            }
        }
        let last = status_topic::final_payload(&self.app);
        let handle = self.bus.handle();
        let _ =
            tokio::time::timeout(STOP_STEP, handle.publish(self.topics.status(), last, true)).await;
        self.bus.disconnect(STOP_STEP).await;
        self.app.status.set_mqtt_up(false);
        if let Some(gate) = self.gate {
            gate.close(STOP_STEP).await;
        }
        if let Some(broker) = self.broker {
            broker.stop();
        }
        tracing::info!("MQTT stopped");
    }
}

fn read_password(path: &Path) -> Result<String, MqttError> {
    let err = |message: String| MqttError::PasswordFile {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let password = text.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        return Err(err("is empty".into()));
    }
    Ok(password.to_owned())
}
