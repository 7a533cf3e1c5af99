//! One register's backlog does not stall the others (issue 15, point 2): with a card that takes
//! 50 ms a signature, a register that pipelines 250 orders over MQTT does not delay another
//! register's single order by more than about one signature, and what its own queue cannot hold
//! is refused at once with 208 (nothing registered), not left waiting.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod mqtt_common;

use fdmd::access::ClientKind;
use fdmd::assembly::AppBuilder;
use fdmd::config::Config;
use fdmd::mqtt::MqttService;
use fdmd::signer::{Signer, SignerError, SignerIdentity, SignerState, SoftwareSigner};
use mqtt_common::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A card's pace.
const SIGNATURE: Duration = Duration::from_millis(50);
/// Orders the busy register pipelines.
const BACKLOG: usize = 250;

/// The software signer at a card's pace.
struct SlowSigner(SoftwareSigner);

impl Signer for SlowSigner {
    fn identity(&self) -> Result<SignerIdentity, SignerError> {
        self.0.identity()
    }
    fn state(&self) -> SignerState {
        self.0.state()
    }
    fn sign(&self, expected_id: &str, digest: &[u8; 32]) -> Result<Vec<u8>, SignerError> {
        std::thread::sleep(SIGNATURE);
        self.0.sign(expected_id, digest)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_register_waits_about_one_signature_behind_another_registers_backlog() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.fdm.data_dir = dir.path().to_path_buf();
    config.mqtt.listen = "127.0.0.1:0".parse().unwrap();
    config.daemon.shutdown_grace_ms = 30_000;
    let app = AppBuilder::new(config)
        .signer(Arc::new(SlowSigner(SoftwareSigner::from_seed([4; 32]))))
        .build()
        .unwrap();
    let service = MqttService::start(app.clone()).await.unwrap();
    let addr = service.local_addr().unwrap();
    let now = app.now();
    let busy = app
        .access
        .enrol(ClientKind::Register, "busy", &now)
        .unwrap();
    let quiet = app
        .access
        .enrol(ClientKind::Register, "quiet", &now)
        .unwrap();

    let mut o = options(
        addr,
        "busy-till",
        Some((&busy.mqtt_username, &busy.mqtt_password)),
    );
    o.set_inflight(u16::try_from(BACKLOG + 10).unwrap());
    let mut busy_client = TestClient::start(o);
    assert_eq!(busy_client.next_event().await, Happened::Connected);
    busy_client.subscribe(&receipts("busy")).await;
    let mut quiet_client = TestClient::connect(
        addr,
        "quiet-till",
        Some((&quiet.mqtt_username, &quiet.mqtt_password)),
    )
    .await;
    quiet_client.subscribe(&receipts("quiet")).await;

    for i in 0..BACKLOG {
        busy_client
            .publish(&orders("busy"), order(&format!("b-{i}"), &[("1", None)]))
            .await;
    }
    // Once the busy register's orders are in fdmd (its first receipts are back), the quiet one
    // sends its single order.
    let mut busy_receipts = Vec::new();
    while busy_receipts.len() < 3 {
        busy_receipts.push(busy_client.next_message().await.json());
    }
    let sent = Instant::now();
    quiet_client
        .publish(&orders("quiet"), order("q-1", &[("1", None)]))
        .await;
    let receipt = quiet_client.next_message().await.json();
    let waited = sent.elapsed();
    assert_eq!(receipt["status"], "signed", "{receipt}");
    assert!(
        waited < SIGNATURE * 10,
        "the quiet register waited {waited:?} behind the busy one's backlog (one signature is {SIGNATURE:?})"
    );

    // Every one of the busy register's orders is answered exactly once: signed, or refused at
    // once with 208 when its queue was full.
    let deadline = Instant::now() + SIGNATURE * u32::try_from(BACKLOG).unwrap() + SOON;
    while busy_receipts.len() < BACKLOG && Instant::now() < deadline {
        if let Some(m) = busy_client.message_within(SOON).await {
            busy_receipts.push(m.json());
        }
    }
    assert_eq!(busy_receipts.len(), BACKLOG);
    let refused = busy_receipts
        .iter()
        .filter(|r| r["code"] == 208)
        .inspect(|r| {
            let message = r["message"].as_str().unwrap_or_default();
            assert!(message.contains("register_queue_full"), "{r}");
        })
        .count();
    let signed = busy_receipts
        .iter()
        .filter(|r| r["status"] == "signed")
        .count();
    assert_eq!(signed + refused, BACKLOG, "{busy_receipts:?}");
    assert!(signed >= 128, "only {signed} signed");
    service.shutdown().await;
}
