//! The embedded broker: rumqttd 0.20, its router on its own thread and its MQTT 3.1.1 listener as
//! a task on our runtime, bound to 127.0.0.1 on an internal port. It accepts only two logins: the
//! gate's (on behalf of clients the gate has authenticated) and fdmd's own bus client, each with a
//! per-process random secret, so connecting to the internal port directly gets a client nowhere.
//!
//! rumqttd cannot report the port it bound, so a free port is found by binding port 0 and
//! releasing it; if somebody takes it first the listener fails, and another port is tried. The
//! listener counts as started once fdmd's bus credentials get a CONNACK from it. rumqttd has no
//! shutdown: [`InternalBroker::stop`] ends the listener, the router thread stays parked.

use super::packet::{self, Connect};
use super::secret::{RandomError, Secret};
use rumqttd::protocol::v4::V4;
use rumqttd::{ConnectionSettings, LinkType, Router, RouterConfig, Server, ServerSettings};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// The user name of fdmd's own bus client on the internal broker.
pub const BUS_USER: &str = "fdmd-bus";

/// Ports tried before giving up.
const ATTEMPTS: usize = 5;
/// How long one attempt waits for the listener.
const READY_WITHIN: Duration = Duration::from_secs(3);
/// Segment size of rumqttd's in-memory logs (one log per topic filter).
const SEGMENT_BYTES: usize = 256 * 1024;
/// Segments kept per log: about 1 MiB per filter in use.
const SEGMENTS: usize = 4;

/// What the internal broker is sized for.
#[derive(Debug, Clone, Copy)]
pub struct BrokerSettings {
    /// Client connections (the gate's limit); the bus and a probe come on top.
    pub max_connections: usize,
    /// Largest packet the broker accepts.
    pub max_packet_bytes: usize,
}

/// Why the internal broker did not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// No randomness for the secrets.
    #[error(transparent)]
    Random(#[from] RandomError),
    /// No loopback port could be found.
    #[error("no free loopback port for the internal broker: {0}")]
    Port(std::io::Error),
    /// The listener never accepted fdmd's login.
    #[error("the internal broker did not start after {attempts} attempts: {last}")]
    NotStarted {
        /// Ports tried.
        attempts: usize,
        /// The last failure.
        last: String,
    },
}

/// The running internal broker.
#[derive(Debug)]
pub struct InternalBroker {
    addr: SocketAddr,
    server: JoinHandle<Result<(), String>>,
    gate_secret: Secret,
    bus_secret: Secret,
}

impl InternalBroker {
    /// Starts the router and the listener; returns once fdmd's bus credentials are accepted.
    pub async fn start(settings: BrokerSettings) -> Result<InternalBroker, BrokerError> {
        let gate_secret = Secret::random()?;
        let bus_secret = Secret::random()?;
        let router_tx = Router::new(0, router_config(settings)).spawn();
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            let addr = SocketAddr::from(([127, 0, 0, 1], free_port().map_err(BrokerError::Port)?));
            let config = server_settings(addr, settings, &gate_secret, &bus_secret);
            let mut server = Server::new(config, router_tx.clone(), V4);
            let mut task = tokio::spawn(async move {
                server
                    .start(LinkType::Remote)
                    .await
                    .map_err(|e| e.to_string())
            });
            match wait_ready(addr, &mut task, &bus_secret).await {
                Ok(()) => {
                    let sockets = set_nodelay_on_broker_sockets(addr);
                    tracing::debug!(%addr, sockets, "internal MQTT broker listening (TCP_NODELAY set)");
                    return Ok(InternalBroker {
                        addr,
                        server: task,
                        gate_secret,
                        bus_secret,
                    });
                }
                Err(e) => {
                    task.abort();
                    tracing::debug!(%addr, attempt, error = %e, "internal MQTT broker did not start");
                    last = e;
                }
            }
        }
        Err(BrokerError::NotStarted {
            attempts: ATTEMPTS,
            last,
        })
    }

    /// Where the broker listens (loopback only).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The password the gate presents for authenticated clients.
    pub fn gate_secret(&self) -> &Secret {
        &self.gate_secret
    }

    /// The password of fdmd's bus client (user [`BUS_USER`]).
    pub fn bus_secret(&self) -> &Secret {
        &self.bus_secret
    }

    /// Stops the listener. Connections still open are closed by their peers (the gate).
    pub fn stop(self) {
        self.server.abort();
    }
}

fn router_config(s: BrokerSettings) -> RouterConfig {
    RouterConfig {
        max_connections: s.max_connections + 8,
        max_outgoing_packet_count: 200,
        max_segment_size: SEGMENT_BYTES,
        max_segment_count: SEGMENTS,
        custom_segment: None,
        initialized_filters: None,
        shared_subscriptions_strategy: Default::default(),
    }
}

fn server_settings(
    addr: SocketAddr,
    s: BrokerSettings,
    gate: &Secret,
    bus: &Secret,
) -> ServerSettings {
    let mut connections = ConnectionSettings {
        connection_timeout_ms: 10_000,
        max_payload_size: s.max_packet_bytes,
        max_inflight_count: 100,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let (gate, bus) = (gate.clone(), bus.clone());
    connections.set_auth_handler(move |_client_id: String, user: String, pass: String| {
        let ok = if user == BUS_USER {
            bus.matches(&pass)
        } else {
            gate.matches(&pass)
        };
        async move { ok }
    });
    ServerSettings {
        name: "fdmd-internal".into(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 0,
        connections,
    }
}

/// rumqttd 0.20 never sets `TCP_NODELAY` on the connections it accepts, so its small writes
/// (receipts, PUBACKs) wait for delayed ACKs, about 40 ms each on loopback. Linux copies
/// `TCP_NODELAY` from a listening socket to the sockets it accepts: find rumqttd's listener (and
/// any connection it accepted already) among this process's descriptors by local address and set
/// the option there. Returns how many sockets were changed.
fn set_nodelay_on_broker_sockets(addr: SocketAddr) -> usize {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return 0;
    };
    let mut changed = 0;
    for entry in entries.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<std::os::fd::RawFd>().ok())
        else {
            continue;
        };
        let is_socket = std::fs::read_link(entry.path())
            .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"));
        if !is_socket {
            continue;
        }
        // SAFETY: `fd` was open in this process when listed and is only borrowed for the two
        // calls below, which neither close nor take ownership of it. Should it have been closed
        // and reused meanwhile, the address check below keeps the option to sockets bound to the
        // broker's own address.
        let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let sock = socket2::SockRef::from(&borrowed);
        if sock.local_addr().ok().and_then(|a| a.as_socket()) == Some(addr)
            && sock.set_tcp_nodelay(true).is_ok()
        {
            changed += 1;
        }
    }
    changed
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn wait_ready(
    addr: SocketAddr,
    task: &mut JoinHandle<Result<(), String>>,
    bus_secret: &Secret,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + READY_WITHIN;
    loop {
        if task.is_finished() {
            return Err(match task.await {
                Ok(Err(e)) => e,
                Ok(Ok(())) => "the listener stopped".to_owned(),
                Err(e) => e.to_string(),
            });
        }
        match probe(addr, bus_secret).await {
            Ok(()) => return Ok(()),
            Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// Logs in with the bus credentials and leaves: proves the listener is ours and accepts us.
async fn probe(addr: SocketAddr, bus_secret: &Secret) -> Result<(), String> {
    let attempt = async {
        let mut stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let connect = packet::encode_connect(&Connect {
            keep_alive: 5,
            clean_session: true,
            client_id: "fdmd-probe".into(),
            will: None,
            username: Some(BUS_USER.into()),
            password: Some(bus_secret.expose().as_bytes().to_vec()),
        })
        .map_err(|e| e.to_string())?;
        stream
            .write_all(&connect)
            .await
            .map_err(|e| e.to_string())?;
        let mut ack = [0u8; 4];
        stream
            .read_exact(&mut ack)
            .await
            .map_err(|e| e.to_string())?;
        if ack[..2] != [0x20, 0x02] {
            return Err(format!("unexpected answer {ack:02x?}"));
        }
        if ack[3] != packet::connack::ACCEPTED {
            return Err(format!("login refused with code {}", ack[3]));
        }
        // Leave by closing the connection, not with DISCONNECT: rumqttd 0.20 logs a clean
        // DISCONNECT as an error ("router-drop"), and a close right after one can make it report
        // the disconnection twice (see gate.rs). A plain close is reported once, at info level.
        drop(stream);
        Ok(())
    };
    tokio::time::timeout(Duration::from_secs(1), attempt)
        .await
        .unwrap_or_else(|_| Err("no CONNACK within 1 s".to_owned()))
}

/// Guards of the two rumqttd 0.20 details the gate relies on (docs/adr/0004-rumqttd-coupling.md):
/// a new rumqttd that changes either fails here, not in the field.
#[cfg(test)]
mod rumqttd_coupling_tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    use std::time::Instant;

    fn settings() -> BrokerSettings {
        BrokerSettings {
            max_connections: 8,
            max_packet_bytes: 64 * 1024,
        }
    }

    fn bus_client(broker: &InternalBroker, id: &str) -> (AsyncClient, rumqttc::EventLoop) {
        let addr = broker.addr();
        let mut options = MqttOptions::new(id, addr.ip().to_string(), addr.port());
        options.set_credentials(BUS_USER, broker.bus_secret().expose());
        options.set_keep_alive(Duration::from_secs(30));
        AsyncClient::new(options, 512)
    }

    /// The gate numbers its own deliveries above [`crate::mqtt::gate::BROKER_MAX_PACKET_ID`]; that
    /// is only safe while rumqttd's deliveries never use a higher packet id, and it is only
    /// efficient while rumqttd cycles through that whole range. 250 acknowledged QoS 1
    /// deliveries must use ids 1..=100 and reach 100.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rumqttd_delivers_with_packet_ids_up_to_the_gates_boundary() {
        const MESSAGES: usize = 250;
        let broker = InternalBroker::start(settings()).await.unwrap();
        let (sub, mut sub_loop) = bus_client(&broker, "guard-sub");
        sub.subscribe("guard/#", QoS::AtLeastOnce).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        // Wait for the SUBACK before publishing.
        loop {
            assert!(Instant::now() < deadline, "no SUBACK");
            if let Ok(Event::Incoming(Packet::SubAck(_))) = sub_loop.poll().await {
                break;
            }
        }
        let (publisher, mut pub_loop) = bus_client(&broker, "guard-pub");
        let publishing = tokio::spawn(async move {
            for n in 0..MESSAGES {
                publisher
                    .publish("guard/x", QoS::AtLeastOnce, false, n.to_string())
                    .await
                    .unwrap();
            }
            // Drive the publisher until every PUBACK is in.
            let mut acked = 0;
            while acked < MESSAGES {
                if let Ok(Event::Incoming(Packet::PubAck(_))) = pub_loop.poll().await {
                    acked += 1;
                }
            }
        });
        let mut ids = Vec::new();
        while ids.len() < MESSAGES {
            assert!(
                Instant::now() < deadline,
                "only {} deliveries in time",
                ids.len()
            );
            if let Ok(Ok(Event::Incoming(Packet::Publish(p)))) =
                tokio::time::timeout(Duration::from_secs(5), sub_loop.poll()).await
            {
                ids.push(p.pkid);
            }
        }
        publishing.await.unwrap();
        let max = ids.iter().copied().max().unwrap();
        let min = ids.iter().copied().min().unwrap();
        assert!(min >= 1, "packet id 0 at QoS 1: {ids:?}");
        assert_eq!(
            max,
            crate::mqtt::gate::BROKER_MAX_PACKET_ID,
            "rumqttd's delivery packet ids no longer end at the gate's boundary"
        );
        broker.stop();
    }

    /// The listener rumqttd binds is a socket of this process, found by its local address, and
    /// the connections it accepts inherit `TCP_NODELAY` from it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rumqttds_listener_is_found_and_its_connections_get_nodelay() {
        let broker = InternalBroker::start(settings()).await.unwrap();
        assert!(
            set_nodelay_on_broker_sockets(broker.addr()) >= 1,
            "rumqttd's listening socket was not found among this process's descriptors"
        );
        let client = std::net::TcpStream::connect(broker.addr()).unwrap();
        let me = client.local_addr().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let accepted_nodelay = loop {
            assert!(
                Instant::now() < deadline,
                "the accepted socket was not found"
            );
            if let Some(nodelay) = accepted_socket_nodelay(broker.addr(), me) {
                break nodelay;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(
            accepted_nodelay,
            "an accepted connection has no TCP_NODELAY"
        );
        broker.stop();
    }

    /// TCP_NODELAY of the socket of this process bound to `local` and connected to `peer`.
    fn accepted_socket_nodelay(local: SocketAddr, peer: SocketAddr) -> Option<bool> {
        for entry in std::fs::read_dir("/proc/self/fd").ok()?.flatten() {
            let Some(fd) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<std::os::fd::RawFd>().ok())
            else {
                continue;
            };
            if !std::fs::read_link(entry.path())
                .is_ok_and(|t| t.to_string_lossy().starts_with("socket:"))
            {
                continue;
            }
            // SAFETY: borrowed for three calls that neither close nor keep the descriptor; the
            // address checks keep the answer to the socket looked for.
            let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
            let sock = socket2::SockRef::from(&borrowed);
            if sock.local_addr().ok().and_then(|a| a.as_socket()) == Some(local)
                && sock.peer_addr().ok().and_then(|a| a.as_socket()) == Some(peer)
            {
                return sock.tcp_nodelay().ok();
            }
        }
        None
    }
}
