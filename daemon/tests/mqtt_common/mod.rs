//! Shared by the MQTT tests: an in-process fdmd (App + MqttService) on loopback with a free port,
//! and a rumqttc test client that reports what happens to it instead of reconnecting.
#![allow(clippy::unwrap_used, dead_code)] // test helpers: a failed unwrap is a failed test

use fdmd::access::{ClientKind, Credentials};
use fdmd::app::App;
use fdmd::assembly::AppBuilder;
use fdmd::config::Config;
use fdmd::mqtt::MqttService;
use fdmd::signer::{Signer, SoftwareSigner};
use rumqttc::{
    AsyncClient, ConnectReturnCode, Event, MqttOptions, Packet, QoS, SubscribeReasonCode,
};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// The default topic prefix.
pub const P: &str = "fdm/v1";

/// A register's orders topic.
pub fn orders(register: &str) -> String {
    format!("{P}/registers/{register}/orders")
}

/// A register's receipts topic.
pub fn receipts(register: &str) -> String {
    format!("{P}/registers/{register}/receipts")
}

pub const OP: &str = "85073003328";
/// Upper bound for anything that should happen "now".
pub const SOON: Duration = Duration::from_secs(10);
/// How long to watch for something that must not happen.
pub const QUIET: Duration = Duration::from_millis(500);

/// Logs to the test output; RUST_LOG=fdmd=debug shows the gate's decisions.
pub fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("fdmd=info,rumqttd=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// An order with one line per (description, station).
pub fn order(request_id: &str, lines: &[(&str, Option<&str>)]) -> Vec<u8> {
    let lines: Vec<Value> = lines
        .iter()
        .map(|(d, station)| {
            let mut l = json!({"description": d, "quantity": 1, "unit_price": "2.50", "vat": "A"});
            if let Some(s) = station {
                l["station"] = json!(s);
            }
            l
        })
        .collect();
    serde_json::to_vec(
        &json!({"request_id": request_id, "operator": OP, "event_type": "normal", "lines": lines}),
    )
    .unwrap()
}

pub struct Fdmd {
    pub dir: tempfile::TempDir,
    pub app: Arc<App>,
    pub signer: Arc<SoftwareSigner>,
    pub service: Option<MqttService>,
}

impl Fdmd {
    /// An App on a temporary data directory, MQTT not started yet.
    pub fn app(
        tweak: impl FnOnce(&mut Config),
    ) -> (tempfile::TempDir, Arc<App>, Arc<SoftwareSigner>) {
        init_logs();
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.fdm.data_dir = dir.path().to_path_buf();
        config.mqtt.listen = "127.0.0.1:0".parse().unwrap();
        config.daemon.shutdown_grace_ms = 3_000;
        tweak(&mut config);
        let signer = Arc::new(SoftwareSigner::from_seed([9; 32]));
        let app = AppBuilder::new(config)
            .signer(signer.clone())
            .build()
            .unwrap();
        (dir, app, signer)
    }

    pub async fn start(tweak: impl FnOnce(&mut Config)) -> Fdmd {
        let (dir, app, signer) = Fdmd::app(tweak);
        let service = MqttService::start(app.clone()).await.unwrap();
        Fdmd {
            dir,
            app,
            signer,
            service: Some(service),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.service.as_ref().unwrap().local_addr().unwrap()
    }

    pub fn enrol(&self, kind: ClientKind, id: &str) -> Credentials {
        self.app.access.enrol(kind, id, &self.app.now()).unwrap()
    }

    /// Records in the journal so far.
    pub fn last_seq(&self) -> u64 {
        self.app
            .registrar
            .journal()
            .stats()
            .last_seq
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn public_key(&self) -> Vec<u8> {
        self.signer.identity().unwrap().public_key
    }

    pub async fn stop(&mut self) {
        if let Some(s) = self.service.take() {
            s.shutdown().await;
        }
    }
}

/// What happened to a test client.
#[derive(Debug, Clone, PartialEq)]
pub enum Happened {
    Connected,
    Refused(ConnectReturnCode),
    SubAck(Vec<SubscribeReasonCode>),
    UnsubAck,
    Closed(String),
}

#[derive(Debug, Clone)]
pub struct Message {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
}

impl Message {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.payload).unwrap()
    }
}

/// A client that does not reconnect: its first connection error ends it.
pub struct TestClient {
    pub client: AsyncClient,
    pub messages: mpsc::UnboundedReceiver<Message>,
    pub events: mpsc::UnboundedReceiver<Happened>,
}

pub fn options(addr: SocketAddr, id: &str, creds: Option<(&str, &str)>) -> MqttOptions {
    let mut o = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(5))
        .set_max_packet_size(1 << 20, 1 << 20);
    if let Some((u, p)) = creds {
        o.set_credentials(u, p);
    }
    o
}

impl TestClient {
    pub fn start(o: MqttOptions) -> TestClient {
        let (client, mut eventloop) = AsyncClient::new(o, 256);
        let (mtx, messages) = mpsc::unbounded_channel();
        let (etx, events) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = etx.send(Happened::Connected);
                    }
                    Ok(Event::Incoming(Packet::SubAck(a))) => {
                        let _ = etx.send(Happened::SubAck(a.return_codes));
                    }
                    Ok(Event::Incoming(Packet::UnsubAck(_))) => {
                        let _ = etx.send(Happened::UnsubAck);
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let _ = mtx.send(Message {
                            topic: p.topic.clone(),
                            payload: p.payload.to_vec(),
                            retain: p.retain,
                        });
                    }
                    Ok(_) => {}
                    Err(rumqttc::ConnectionError::ConnectionRefused(code)) => {
                        let _ = etx.send(Happened::Refused(code));
                        return;
                    }
                    Err(e) => {
                        let _ = etx.send(Happened::Closed(e.to_string()));
                        return;
                    }
                }
            }
        });
        TestClient {
            client,
            messages,
            events,
        }
    }

    /// Connects and waits for the CONNACK; panics if refused.
    pub async fn connect(addr: SocketAddr, id: &str, creds: Option<(&str, &str)>) -> TestClient {
        let mut c = TestClient::start(options(addr, id, creds));
        assert_eq!(
            c.next_event().await,
            Happened::Connected,
            "{id} could not connect"
        );
        c
    }

    pub async fn next_event(&mut self) -> Happened {
        tokio::time::timeout(SOON, self.events.recv())
            .await
            .expect("no connection event in time")
            .expect("client task ended")
    }

    /// Subscribes at QoS 1 and waits for the SUBACK.
    pub async fn subscribe(&mut self, filter: &str) {
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .unwrap();
        match self.next_event().await {
            Happened::SubAck(codes) => assert!(
                codes
                    .iter()
                    .all(|c| matches!(c, SubscribeReasonCode::Success(_))),
                "subscription to {filter} refused: {codes:?}"
            ),
            other => panic!("subscription to {filter}: {other:?}"),
        }
    }

    pub async fn publish(&self, topic: &str, payload: Vec<u8>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .unwrap();
    }

    pub async fn next_message(&mut self) -> Message {
        tokio::time::timeout(SOON, self.messages.recv())
            .await
            .expect("no message in time")
            .expect("client task ended")
    }

    /// The next message, if one comes within `d`.
    pub async fn message_within(&mut self, d: Duration) -> Option<Message> {
        tokio::time::timeout(d, self.messages.recv())
            .await
            .ok()
            .flatten()
    }

    /// Waits for the connection to be closed by the other side.
    pub async fn closed(&mut self) -> String {
        loop {
            match self.next_event().await {
                Happened::Closed(why) => return why,
                Happened::SubAck(codes) => {
                    // Some brokers answer a refused subscription before closing; keep waiting.
                    let _ = codes;
                }
                other => panic!("expected the connection to close, got {other:?}"),
            }
        }
    }
}
