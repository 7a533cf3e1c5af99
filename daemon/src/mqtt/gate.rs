//! The gate: fdmd's public MQTT listener in embedded mode, a small proxy in front of the internal
//! rumqttd (which has no topic ACL). For every client connection it
//!
//! 1. reads the CONNECT (within a timeout, bounded in size); MQTT 5 and 3.1 clients get a CONNACK
//!    "unacceptable protocol version";
//! 2. authenticates it against the access store (no anonymous clients, in any mode) and checks
//!    its will topic like a publish;
//! 3. rewrites it for the internal broker: user name = the principal, password = the gate's
//!    per-process secret, client id `PRINCIPAL|ID` (so no client can take over another's
//!    session, nor fdmd's own);
//! 4. then forwards packets both ways, reading each one whole with a size bound, and checking
//!    every PUBLISH topic and SUBSCRIBE filter against [`super::acl`]. A forbidden publish or
//!    subscribe closes the connection, and is logged. Orders are never retained (the retain bit
//!    is cleared); an order payload over the limit is not forwarded: the gate reads past it,
//!    acknowledges it, and fdmd answers it with a 207 receipt.
//! 5. for clean sessions, takes the direct path ([`super::direct`]): orders and report requests go
//!    straight to fdmd's order workers and are acknowledged by the gate; subscriptions to the
//!    client's own receipts, reports or tickets are kept by the gate, and fdmd's messages on them
//!    come straight to the connection, numbered above [`BROKER_MAX_PACKET_ID`]. The gate then
//!    also watches the client's keep-alive (rumqttd no longer sees all of its packets).

use super::acl;
use super::direct::{DirectAck, Out, Registration, Routes};
use super::orders::{IncomingOrder, Payload};
use super::packet::{self, Connect, FixedHeader, PacketError, PublishHead, connack};
use super::secret::Secret;
use super::topics::Topics;
use crate::access::{AccessStore, Principal};
use crate::admission::{PreAuth, PreAuthLimits, PreAuthPool};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Largest CONNECT (client id, will, credentials).
const MAX_CONNECT: usize = 16 * 1024;
/// Largest SUBSCRIBE, UNSUBSCRIBE or acknowledgement from a client.
const MAX_CONTROL: usize = 16 * 1024;
/// Longest topic in a PUBLISH; fdmd's topics are far shorter.
const MAX_TOPIC: usize = 1024;
/// Longest client id or user name accepted.
const MAX_NAME: usize = 128;
/// Time to reach the internal broker.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(5);
/// Keep-alive given to clients that ask for none, in seconds.
const IDLE_KEEP_ALIVE: u16 = 3600;
/// Time the broker gets to close a connection after the client's DISCONNECT.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// DISCONNECT packet type.
const DISCONNECT: u8 = 14;
/// PUBACK packet type.
const PUBACK: u8 = 4;
/// UNSUBSCRIBE packet type.
const UNSUBSCRIBE: u8 = 10;
/// Highest packet id rumqttd 0.20 gives its own deliveries (`router/iobufs.rs`: `MAX_PKID`, its
/// in-flight window of 100, used cyclically). The gate numbers its direct deliveries above it, so
/// a client's PUBACK tells by its id whether it is for the broker or for the gate.
pub const BROKER_MAX_PACKET_ID: u16 = 100;
/// Messages queued for one client connection; a client that lets more pile up is disconnected.
const OUT_QUEUE: usize = 1024;
/// Bytes written to a client in one go at most (several queued packets are coalesced).
const WRITE_BATCH: usize = 64 * 1024;

/// Client connections so far, to number sessions that are not kept.
static CONNECTIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How the client side of a connection ended.
enum Ending {
    /// The client closed the connection.
    Closed,
    /// The client said DISCONNECT.
    Disconnect,
}

/// How the gate behaves.
#[derive(Debug, Clone)]
pub struct GateSettings {
    /// Topic layout.
    pub topics: Topics,
    /// The internal broker.
    pub upstream: SocketAddr,
    /// The password the internal broker expects from the gate.
    pub secret: Secret,
    /// Largest order payload; larger ones are answered with 207 without being forwarded.
    pub max_payload: usize,
    /// Largest packet forwarded from the broker to a client.
    pub max_downstream: usize,
    /// Most client connections at once.
    pub max_connections: usize,
    /// Time a client has to send its CONNECT.
    pub connect_timeout: Duration,
    /// Development mode: anonymous clients allowed.
    pub dev: bool,
}

/// Why a client connection ended early.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// The connection failed or closed mid-packet.
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    /// The client broke the protocol.
    #[error("{0}")]
    Packet(#[from] PacketError),
    /// No CONNECT in time.
    #[error("no CONNECT within {0:?}")]
    ConnectTimeout(Duration),
    /// The first packet was something else.
    #[error("first packet is of type {0}, not CONNECT")]
    NotConnect(u8),
    /// A second CONNECT.
    #[error("second CONNECT on one connection")]
    SecondConnect,
    /// Wrong user name or password.
    #[error("bad user name or password for {0:?}")]
    BadCredentials(String),
    /// No credentials (refused in every mode, development mode included).
    #[error("anonymous clients are refused: log in with a register's or station's credentials")]
    AnonymousRefused,
    /// Client id refused.
    #[error("client id refused: {0}")]
    ClientId(&'static str),
    /// A forbidden publish, subscribe or will.
    #[error("{who} may not {action} {topic:?}")]
    Forbidden {
        /// The principal.
        who: String,
        /// publish to, subscribe to, set a will on.
        action: &'static str,
        /// The topic or filter.
        topic: String,
    },
    /// Closed before it authenticated, to make room for newer connections (see
    /// [`crate::admission`]).
    #[error("closed before authenticating, to make room for newer connections")]
    Evicted,
    /// Authenticated, but every slot for authenticated clients is taken.
    #[error("too many MQTT clients (mqtt.max_connections = {0}); client refused")]
    Full(usize),
    /// The internal broker cannot be reached.
    #[error("internal broker unreachable: {0}")]
    Upstream(std::io::Error),
    /// The client let its messages pile up unread.
    #[error("client does not read its messages")]
    SlowClient,
    /// The client's enrolment was revoked while it was connected.
    #[error("{0} was revoked")]
    Revoked(String),
    /// The client sent nothing for 1.5 times its keep-alive.
    #[error("nothing from the client within 1.5 times its keep-alive ({0:?})")]
    KeepAlive(Duration),
    /// The internal broker used a packet id the gate keeps for its own deliveries.
    #[error("internal broker delivered with packet id {0} (the gate's range starts at {first})", first = BROKER_MAX_PACKET_ID + 1)]
    BrokerPacketId(u16),
}

impl GateError {
    fn log(&self, peer: SocketAddr) {
        match self {
            GateError::Forbidden { .. }
            | GateError::BadCredentials(_)
            | GateError::AnonymousRefused
            | GateError::Packet(PacketError::TooLarge { .. }) => {
                tracing::warn!(%peer, "MQTT client refused: {self}");
            }
            GateError::Upstream(_) | GateError::BrokerPacketId(_) => {
                tracing::error!(%peer, "MQTT client dropped: {self}");
            }
            GateError::SlowClient | GateError::Revoked(_) | GateError::Full(_) => {
                tracing::warn!(%peer, "MQTT client dropped: {self}");
            }
            GateError::Io(_)
            | GateError::Packet(PacketError::Io(_))
            | GateError::Evicted
            | GateError::ConnectTimeout(_) => {
                tracing::debug!(%peer, "MQTT client gone: {self}");
            }
            _ => tracing::info!(%peer, "MQTT client dropped: {self}"),
        }
    }
}

/// Completes once `who` is revoked (checked after every revocation); never otherwise.
async fn revoked(
    mut revocations: tokio::sync::watch::Receiver<u64>,
    access: &AccessStore,
    who: &Principal,
) {
    while revocations.changed().await.is_ok() {
        if !access.is_active(who) {
            return;
        }
    }
    std::future::pending::<()>().await;
}

/// The running gate.
pub struct Gate {
    local_addr: SocketAddr,
    accept: JoinHandle<()>,
    stop_accepting: CancellationToken,
    close_all: CancellationToken,
    slots: Arc<Semaphore>,
    max_connections: usize,
}

struct Shared {
    settings: GateSettings,
    access: Arc<AccessStore>,
    orders: mpsc::Sender<IncomingOrder>,
    routes: Arc<Routes>,
}

impl Gate {
    /// Serves clients on `listener` (bound to `local_addr`). Orders and report requests of
    /// clean-session clients, and size notices for over-large orders, go to `orders`; direct
    /// subscriptions are kept in `routes` (see [`super::direct`]).
    pub fn start(
        listener: TcpListener,
        local_addr: SocketAddr,
        settings: GateSettings,
        access: Arc<AccessStore>,
        orders: mpsc::Sender<IncomingOrder>,
        routes: Arc<Routes>,
    ) -> Gate {
        let max_connections = settings.max_connections.max(1);
        let slots = Arc::new(Semaphore::new(max_connections));
        let stop_accepting = CancellationToken::new();
        let close_all = CancellationToken::new();
        let shared = Arc::new(Shared {
            settings,
            access,
            orders,
            routes,
        });
        let accept = tokio::spawn(accept_loop(
            listener,
            shared,
            slots.clone(),
            stop_accepting.clone(),
            close_all.clone(),
        ));
        Gate {
            local_addr,
            accept,
            stop_accepting,
            close_all,
            slots,
            max_connections,
        }
    }

    /// The public address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting connections; open ones carry on.
    pub fn stop_accepting(&self) {
        self.stop_accepting.cancel();
    }

    /// Closes every connection and waits (at most `timeout`) for them to end.
    pub async fn close(self, timeout: Duration) {
        self.stop_accepting.cancel();
        self.close_all.cancel();
        let _ = self.accept.await;
        let all = u32::try_from(self.max_connections).unwrap_or(u32::MAX);
        if tokio::time::timeout(timeout, self.slots.acquire_many(all))
            .await
            .is_err()
        {
            tracing::warn!("MQTT client connections still open after {timeout:?}");
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    slots: Arc<Semaphore>,
    stop: CancellationToken,
    close_all: CancellationToken,
) {
    let pre_auth_pool = PreAuthPool::new("mqtt", PreAuthLimits::DEFAULT);
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(error = %e, "MQTT accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let pre_auth = pre_auth_pool.admit(peer.ip());
        let shared = shared.clone();
        let close = close_all.clone();
        let slots = slots.clone();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let outcome = tokio::select! {
                r = shared.session(stream, pre_auth, slots) => r,
                _ = close.cancelled() => Ok(()),
            };
            match outcome {
                Ok(()) => tracing::debug!(%peer, "MQTT client left"),
                Err(e) => e.log(peer),
            }
        });
    }
}

impl Shared {
    /// Serves one client connection: it stays in the unauthenticated pool (and may be closed to
    /// make room) until its CONNECT authenticates, then takes one of the `slots`.
    async fn session(
        &self,
        stream: TcpStream,
        pre_auth: PreAuth,
        slots: Arc<Semaphore>,
    ) -> Result<(), GateError> {
        let s = &self.settings;
        let (client_rx, mut client_tx) = stream.into_split();
        let mut client_rx = BufReader::with_capacity(16 * 1024, client_rx);

        let body = tokio::select! {
            r = tokio::time::timeout(s.connect_timeout, read_connect(&mut client_rx)) => {
                r.map_err(|_| GateError::ConnectTimeout(s.connect_timeout))??
            }
            () = pre_auth.evicted() => return Err(GateError::Evicted),
        };
        let connect = match packet::parse_connect(&body) {
            Ok(c) => c,
            Err(e @ PacketError::Unsupported { .. }) => {
                refuse(&mut client_tx, connack::UNACCEPTABLE_PROTOCOL).await;
                return Err(e.into());
            }
            Err(e) => return Err(e.into()),
        };
        let who = match self.admit(&connect) {
            Ok(who) => who,
            Err((code, e)) => {
                refuse(&mut client_tx, code).await;
                return Err(e);
            }
        };
        let name = acl::name(&who);
        let Ok(_slot) = slots.try_acquire_owned() else {
            refuse(&mut client_tx, connack::SERVER_UNAVAILABLE).await;
            return Err(GateError::Full(s.max_connections));
        };
        pre_auth.authenticated();
        tracing::debug!(client = %name, client_id = %connect.client_id, "MQTT client authenticated");

        let upstream = tokio::time::timeout(UPSTREAM_TIMEOUT, TcpStream::connect(s.upstream))
            .await
            .map_err(|_| GateError::Upstream(std::io::ErrorKind::TimedOut.into()))?
            .map_err(GateError::Upstream)?;
        let _ = upstream.set_nodelay(true);
        let (broker_rx, mut broker_tx) = upstream.into_split();
        // Clean sessions take the direct path: their orders go straight to fdmd's workers and
        // their receipts come straight back (super::direct). A persistent session keeps
        // everything in rumqttd, which redelivers what its client had not acknowledged.
        let direct = connect.clean_session;
        let keep_alive = Duration::from_secs(u64::from(if connect.keep_alive == 0 {
            IDLE_KEEP_ALIVE
        } else {
            connect.keep_alive
        }));
        let rewritten = self.rewrite(connect, &name, direct)?;
        broker_tx
            .write_all(&rewritten)
            .await
            .map_err(GateError::Upstream)?;

        let number = CONNECTIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (out_tx, out_rx) = mpsc::channel(OUT_QUEUE);
        let slow = CancellationToken::new();
        let (connack_tx, connack_rx) = watch::channel(false);
        let registration =
            Registration::new(&self.routes, number, direct, out_tx.clone(), slow.clone());
        let writer = write_to_client(client_tx, out_rx, connack_tx);
        tokio::pin!(writer);
        let down = broker_to_client(
            BufReader::with_capacity(16 * 1024, broker_rx),
            out_tx.clone(),
            s.max_downstream,
            direct,
        );
        tokio::pin!(down);
        let conn = Conn {
            who: &who,
            name: &name,
            direct,
            keep_alive,
            out: out_tx,
            slow: slow.clone(),
            connack: connack_rx,
            registration,
        };
        let up = self.client_to_broker(conn, &mut client_rx, &mut broker_tx);
        tokio::pin!(up);
        let revoked = revoked(self.access.revocations(), &self.access, &who);
        tokio::pin!(revoked);
        let mut down_done = false;
        loop {
            tokio::select! {
                r = &mut up => return match r? {
                    Ending::Closed => Ok(()),
                    // Let the broker close first: if the connection closed right after a
                    // DISCONNECT, rumqttd 0.20 can report the disconnection twice, and the second
                    // report ends whichever client got the connection slot in between.
                    Ending::Disconnect => {
                        if !down_done {
                            let _ = tokio::time::timeout(DISCONNECT_TIMEOUT, &mut down).await;
                        }
                        Ok(())
                    }
                },
                // The broker closed (after the writer has passed on what it sent) or the client
                // cannot be written to.
                r = &mut writer => return r,
                r = &mut down, if !down_done => {
                    r?;
                    down_done = true;
                }
                _ = slow.cancelled() => return Err(GateError::SlowClient),
                _ = &mut revoked => return Err(GateError::Revoked(name.clone())),
            }
        }
    }

    /// Authenticates a CONNECT and checks its client id and will. Errors carry the CONNACK code.
    fn admit(&self, c: &Connect) -> Result<Principal, (u8, GateError)> {
        let who = match &c.username {
            None => return Err((connack::NOT_AUTHORIZED, GateError::AnonymousRefused)),
            Some(user) => self
                .authenticate(user, c.password.as_deref())
                .ok_or_else(|| {
                    let shown: String = user.chars().take(64).collect();
                    (connack::BAD_CREDENTIALS, GateError::BadCredentials(shown))
                })?,
        };
        if c.client_id.len() > MAX_NAME {
            return Err((
                connack::IDENTIFIER_REJECTED,
                GateError::ClientId("longer than 128 bytes"),
            ));
        }
        if c.client_id.is_empty() && !c.clean_session {
            return Err((
                connack::IDENTIFIER_REJECTED,
                GateError::ClientId("empty with a persistent session"),
            ));
        }
        if let Some(will) = &c.will
            && !acl::may_publish(&who, &self.settings.topics, &will.topic)
        {
            return Err((
                connack::NOT_AUTHORIZED,
                GateError::Forbidden {
                    who: acl::name(&who),
                    action: "set a will on",
                    topic: will.topic.clone(),
                },
            ));
        }
        Ok(who)
    }

    /// `register:ID` and `station:ID` as enrolled, or the bare `ID` (the form that also works
    /// with Mosquitto's pattern ACL): the password tells which enrolment it is.
    fn authenticate(&self, user: &str, password: Option<&[u8]>) -> Option<Principal> {
        if user.len() > MAX_NAME {
            return None;
        }
        let password = std::str::from_utf8(password?).ok()?;
        if user.contains(':') {
            return self.access.check_mqtt(user, password);
        }
        ["register", "station"]
            .iter()
            .find_map(|kind| self.access.check_mqtt(&format!("{kind}:{user}"), password))
    }

    /// The CONNECT the internal broker sees.
    fn rewrite(&self, mut c: Connect, name: &str, direct: bool) -> Result<Vec<u8>, GateError> {
        // An empty id comes with a clean session (admit() checks), so the number below makes it
        // unique.
        let id = std::mem::take(&mut c.client_id);
        // rumqttd refuses `+ $ # /` in client ids. The principal's name never contains `|`, so
        // the part before the first `|` says whose session it is.
        let id: String = id
            .chars()
            .map(|ch| {
                if matches!(ch, '+' | '$' | '#' | '/') {
                    '_'
                } else {
                    ch
                }
            })
            .collect();
        c.client_id = if c.clean_session {
            // A session that is not kept gets an id of its own: rumqttd 0.20 poisons a lock for
            // good (and refuses every later client) when an id comes back after a connection
            // that failed to register (server/broker.rs `sender.try_send(..).unwrap()`).
            let n = CONNECTIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            format!("{name}|{id}|{n}")
        } else {
            format!("{name}|{id}")
        };
        c.username = Some(name.to_owned());
        c.password = Some(self.settings.secret.expose().as_bytes().to_vec());
        if direct {
            // A direct client's publishes and acknowledgements stop at the gate, so rumqttd may
            // hear nothing from it for long: the gate watches the client's keep-alive itself.
            c.keep_alive = u16::MAX;
        } else if c.keep_alive == 0 {
            // rumqttd refuses "no keep-alive" without a CONNACK; an hour is close enough, and
            // an idle connection still ends eventually.
            c.keep_alive = IDLE_KEEP_ALIVE;
        }
        Ok(packet::encode_connect(&c)?)
    }

    async fn client_to_broker(
        &self,
        mut conn: Conn<'_>,
        rx: &mut BufReader<OwnedReadHalf>,
        broker: &mut OwnedWriteHalf,
    ) -> Result<Ending, GateError> {
        let s = &self.settings;
        // Nothing may reach the client before the broker's CONNACK: hold its packets until then.
        if conn.connack.wait_for(|seen| *seen).await.is_err() {
            return Ok(Ending::Closed);
        }
        // Up to 1.5 times the keep-alive between two packets (MQTT 3.1.1 §3.1.2.10); rumqttd
        // watches it for the other clients.
        let silence = conn.keep_alive + conn.keep_alive / 2;
        loop {
            let header = if conn.direct {
                tokio::time::timeout(silence, packet::read_header(rx))
                    .await
                    .map_err(|_| GateError::KeepAlive(conn.keep_alive))??
            } else {
                packet::read_header(rx).await?
            };
            let Some(header) = header else {
                return Ok(Ending::Closed);
            };
            match header.kind() {
                packet::PUBLISH => {
                    let head = packet::read_publish_head(rx, header, MAX_TOPIC).await?;
                    if !acl::may_publish(conn.who, &s.topics, &head.topic) {
                        return Err(forbidden(conn.name, "publish to", &head.topic));
                    }
                    if head.payload_len > s.max_payload {
                        self.too_large(&conn, head, rx).await?;
                        continue;
                    }
                    // Plugin inputs go through the broker to the plugins' client (plugins/mqtt.rs).
                    let for_plugin = s.topics.plugin_topic(&head.topic).is_some();
                    if conn.direct && head.qos < 2 && !for_plugin {
                        let mut payload = vec![0u8; head.payload_len];
                        rx.read_exact(&mut payload).await?;
                        // Acknowledged once answered, in arrival order (the writer keeps it).
                        let ack = match head.packet_id {
                            Some(id) => {
                                send(&conn.out, Out::Expect(id)).await?;
                                Some(DirectAck::new(conn.out.clone(), id, conn.slow.clone()))
                            }
                            None => None,
                        };
                        match self.direct_order(&head.topic, payload, ack) {
                            Ok(order) => {
                                if self.orders.send(order).await.is_err() {
                                    // fdmd stops taking orders: not acknowledged, resent later.
                                    tracing::debug!(client = %conn.name, "order while fdmd stops; not acknowledged");
                                }
                            }
                            // Not a topic fdmd takes (may_publish allows none): dropped, as
                            // rumqttd would with nobody subscribed.
                            Err(ack) => {
                                tracing::warn!(client = %conn.name, topic = %head.topic, "publish on a topic nobody reads; dropped");
                                if let Some(ack) = ack {
                                    ack.answered();
                                }
                            }
                        }
                        continue;
                    }
                    // Everything a client may publish is an order or a plugin input: never
                    // retained.
                    let mut out = packet::encode_publish_head(header.byte1 & !0x01, &head);
                    let start = out.len();
                    out.resize(start + head.payload_len, 0);
                    rx.read_exact(&mut out[start..]).await?;
                    broker.write_all(&out).await?;
                }
                packet::SUBSCRIBE => {
                    let frame = packet::read_frame(rx, header, MAX_CONTROL).await?;
                    let body = &frame[frame.len() - header.remaining..];
                    let filters = packet::parse_subscribe(header, body)?;
                    for (filter, _) in &filters {
                        if !acl::may_subscribe(conn.who, &s.topics, filter) {
                            return Err(forbidden(conn.name, "subscribe to", filter));
                        }
                    }
                    // A filter this connection already has at the broker stays there (a
                    // second, direct subscription would deliver everything twice).
                    if conn.direct
                        && filters
                            .iter()
                            .all(|(f, _)| s.topics.is_direct(f) && !conn.registration.at_broker(f))
                    {
                        for (filter, qos) in &filters {
                            conn.registration.subscribe_direct(filter, *qos);
                        }
                        let granted: Vec<u8> = filters.iter().map(|(_, q)| *q).collect();
                        send(
                            &conn.out,
                            Out::Own(packet::suback(packet::leading_packet_id(body)?, &granted)),
                        )
                        .await?;
                        continue;
                    }
                    for (filter, _) in &filters {
                        // Moves to the broker: a direct one as well would deliver twice.
                        conn.registration.unsubscribe_direct(filter);
                        conn.registration.broker_subscription(filter);
                    }
                    broker.write_all(&frame).await?;
                }
                UNSUBSCRIBE if conn.direct => {
                    let frame = packet::read_frame(rx, header, MAX_CONTROL).await?;
                    let body = &frame[frame.len() - header.remaining..];
                    let filters = packet::parse_unsubscribe(header, body)?;
                    if filters.iter().all(|f| conn.registration.is_direct(f)) {
                        for f in &filters {
                            conn.registration.unsubscribe_direct(f);
                        }
                        send(
                            &conn.out,
                            Out::Own(packet::unsuback(packet::leading_packet_id(body)?).to_vec()),
                        )
                        .await?;
                        continue;
                    }
                    for f in &filters {
                        conn.registration.unsubscribe_direct(f);
                    }
                    broker.write_all(&frame).await?;
                }
                PUBACK if conn.direct => {
                    let frame = packet::read_frame(rx, header, MAX_CONTROL).await?;
                    let id =
                        packet::ack_packet_id(header, &frame[frame.len() - header.remaining..])?;
                    // The gate's own deliveries need no more (a clean session keeps nothing).
                    if id > BROKER_MAX_PACKET_ID {
                        continue;
                    }
                    broker.write_all(&frame).await?;
                }
                packet::CONNECT => return Err(GateError::SecondConnect),
                DISCONNECT => {
                    let frame = packet::read_frame(rx, header, MAX_CONTROL).await?;
                    broker.write_all(&frame).await?;
                    return Ok(Ending::Disconnect);
                }
                _ => {
                    let frame = packet::read_frame(rx, header, MAX_CONTROL).await?;
                    broker.write_all(&frame).await?;
                }
            }
        }
    }

    /// An order or report request of a direct client, for fdmd's workers; the acknowledgement
    /// back when the topic is neither.
    fn direct_order(
        &self,
        topic: &str,
        payload: Vec<u8>,
        ack: Option<DirectAck>,
    ) -> Result<IncomingOrder, Option<DirectAck>> {
        let topics = &self.settings.topics;
        if let Some(register) = topics.register_of_orders(topic) {
            return Ok(IncomingOrder {
                register: register.to_owned(),
                payload: Payload::Direct(payload, ack),
            });
        }
        match topics.register_of_report_requests(topic) {
            Some(register) => Ok(IncomingOrder {
                register: register.to_owned(),
                payload: Payload::DirectReportRequest(payload, ack),
            }),
            None => Err(ack),
        }
    }

    /// An order payload over the limit: read past it without keeping it, acknowledge it (once
    /// answered, on the direct path), and let fdmd answer 207. QoS 2 is not handled here (the
    /// broker would see a PUBREL it never knew): such a client is disconnected.
    async fn too_large(
        &self,
        conn: &Conn<'_>,
        head: PublishHead,
        rx: &mut BufReader<OwnedReadHalf>,
    ) -> Result<(), GateError> {
        let too_large = PacketError::TooLarge {
            what: "order payload",
            size: head.payload_len,
            max: self.settings.max_payload,
        };
        let Some(register) = self.settings.topics.register_of_orders(&head.topic) else {
            return Err(too_large.into());
        };
        if head.qos == 2 {
            return Err(too_large.into());
        }
        skip(rx, head.payload_len).await?;
        let ack = match head.packet_id {
            Some(id) if conn.direct => {
                send(&conn.out, Out::Expect(id)).await?;
                Some(DirectAck::new(conn.out.clone(), id, conn.slow.clone()))
            }
            _ => None,
        };
        let notice = IncomingOrder {
            register: register.to_owned(),
            payload: Payload::TooLarge(head.payload_len, ack),
        };
        if self.orders.send(notice).await.is_err() {
            tracing::debug!(client = %conn.name, "over-large order while fdmd stops; not answered");
            return Ok(());
        }
        if let Some(id) = head.packet_id
            && !conn.direct
        {
            send(&conn.out, Out::Own(packet::puback(id).to_vec())).await?;
        }
        Ok(())
    }
}

/// One client connection, as the client-to-broker direction sees it.
struct Conn<'a> {
    who: &'a Principal,
    name: &'a str,
    /// Clean session: orders, receipts and per-client topics take the direct path.
    direct: bool,
    keep_alive: Duration,
    /// To the client (through [`write_to_client`]).
    out: mpsc::Sender<Out>,
    /// Cancelled to close the connection when the client does not read.
    slow: CancellationToken,
    /// True once the broker's CONNACK has been passed on.
    connack: watch::Receiver<bool>,
    registration: Registration<'a>,
}

async fn send(out: &mpsc::Sender<Out>, what: Out) -> Result<(), GateError> {
    out.send(what)
        .await
        .map_err(|_| GateError::Io(std::io::ErrorKind::BrokenPipe.into()))
}

async fn read_connect<R: AsyncRead + Unpin>(rx: &mut R) -> Result<Vec<u8>, GateError> {
    let header: FixedHeader = packet::read_header(rx)
        .await?
        .ok_or_else(|| GateError::Io(std::io::ErrorKind::UnexpectedEof.into()))?;
    if header.kind() != packet::CONNECT {
        return Err(GateError::NotConnect(header.kind()));
    }
    Ok(packet::read_body(rx, header, MAX_CONNECT).await?)
}

/// Reads the broker's packets for the client and queues them for [`write_to_client`]; at the end
/// of the broker's connection, queues [`Out::End`]. On a direct connection the broker's deliveries
/// must carry packet ids up to [`BROKER_MAX_PACKET_ID`].
async fn broker_to_client(
    mut rx: BufReader<OwnedReadHalf>,
    out: mpsc::Sender<Out>,
    max: usize,
    direct: bool,
) -> Result<(), GateError> {
    loop {
        let Some(header) = packet::read_header(&mut rx).await? else {
            let _ = out.send(Out::End).await;
            return Ok(());
        };
        let frame = packet::read_frame(&mut rx, header, max).await?;
        if direct
            && header.kind() == packet::PUBLISH
            && let Some(id) =
                packet::publish_packet_id(header, &frame[frame.len() - header.remaining..])
            && id > BROKER_MAX_PACKET_ID
        {
            return Err(GateError::BrokerPacketId(id));
        }
        send(&out, Out::Frame(frame)).await?;
    }
}

/// Writes what is queued for the client, several packets per write when more are waiting.
/// Direct deliveries at QoS 1 get packet ids above [`BROKER_MAX_PACKET_ID`]. Ends after
/// [`Out::End`], or when the client cannot be written to.
async fn write_to_client(
    mut tx: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Out>,
    connack: watch::Sender<bool>,
) -> Result<(), GateError> {
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut next_id = BROKER_MAX_PACKET_ID;
    // Direct orders not acknowledged yet, in arrival order: packet id, and once settled whether
    // to acknowledge it.
    let mut owed: VecDeque<(u16, Option<bool>)> = VecDeque::new();
    let mut end = false;
    while !end {
        let Some(first) = rx.recv().await else {
            return Ok(());
        };
        let mut item = Some(first);
        while let Some(o) = item.take() {
            match o {
                Out::Frame(f) => buf.extend_from_slice(&f),
                Out::Own(f) => buf.extend_from_slice(&f),
                Out::Publish {
                    topic,
                    payload,
                    qos,
                } => {
                    let id = (qos > 0).then(|| {
                        next_id = if next_id == u16::MAX {
                            BROKER_MAX_PACKET_ID + 1
                        } else {
                            next_id + 1
                        };
                        next_id
                    });
                    packet::encode_publish(&mut buf, &topic, id, &payload);
                }
                Out::Expect(id) => owed.push_back((id, None)),
                Out::Settled { id, puback } => {
                    if let Some(entry) = owed.iter_mut().find(|(i, s)| *i == id && s.is_none()) {
                        entry.1 = Some(puback);
                    }
                    while let Some((id, Some(puback))) = owed.front().copied() {
                        owed.pop_front();
                        if puback {
                            buf.extend_from_slice(&packet::puback(id));
                        }
                    }
                }
                Out::End => {
                    end = true;
                    break;
                }
            }
            if buf.len() < WRITE_BATCH {
                item = rx.try_recv().ok();
            }
        }
        tx.write_all(&buf).await?;
        buf.clear();
        if !*connack.borrow() {
            connack.send_replace(true);
        }
    }
    let _ = tx.shutdown().await;
    Ok(())
}

async fn skip<R: AsyncRead + Unpin>(rx: &mut R, n: usize) -> Result<(), GateError> {
    let copied = tokio::io::copy(&mut rx.take(n as u64), &mut tokio::io::sink()).await?;
    if copied < n as u64 {
        return Err(GateError::Io(std::io::ErrorKind::UnexpectedEof.into()));
    }
    Ok(())
}

async fn refuse(tx: &mut OwnedWriteHalf, code: u8) {
    let answer = async {
        tx.write_all(&packet::connack(code)).await?;
        tx.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), answer).await;
}

fn forbidden(who: &str, action: &'static str, topic: &str) -> GateError {
    GateError::Forbidden {
        who: who.to_owned(),
        action,
        topic: topic.chars().take(200).collect(),
    }
}
