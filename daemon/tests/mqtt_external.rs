//! MQTT in external mode against a real Mosquitto configured with the shipped
//! `packaging/mosquitto/fdmd.conf` and `fdmd.acl`. Each test starts its own mosquitto on a free
//! loopback port with a temporary copy of that configuration, and kills it at the end.
//!
//! Without mosquitto these tests are skipped with a message, unless FDMD_REQUIRE_MOSQUITTO is set
//! (tests/run installs `mosquitto mosquitto-clients` and sets it).
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

#[path = "support/mosquitto.rs"]
mod mosquitto;
mod mqtt_common;
#[path = "support/test_ca.rs"]
mod test_ca;

use fdmd::access::ClientKind;
use fdmd::config::MqttMode;
use fdmd::mqtt::MqttService;
use fdmd::mqtt::bus::{Bus, BusOptions};
use mosquitto::{Mosquitto, find as which};
use mqtt_common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// fdmd in external mode with enrolled registers and stations, mosquitto users for all of them
/// (named by bare id, with the passwords fdmd issued) and for fdmd itself.
struct Setup {
    f: Fdmd,
    mosquitto: Mosquitto,
    passwords: std::collections::BTreeMap<String, String>,
}

async fn setup(registers: &[&str], stations: &[&str]) -> Option<Setup> {
    setup_with(registers, stations, None).await
}

/// Certificates for a TLS listener on 127.0.0.1: (CA, server certificate, server key).
fn tls_material(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca = test_ca::make(dir);
    (ca.ca, ca.server_cert, ca.server_key)
}

/// `tls`: fdmd reaches mosquitto through a second, TLS listener on this port with these files.
async fn setup_with(
    registers: &[&str],
    stations: &[&str],
    tls: Option<(u16, &Path)>,
) -> Option<Setup> {
    let bins = Mosquitto::binaries()?;
    let (dir, app, signer) = Fdmd::app(|_| {});
    let mut passwords = std::collections::BTreeMap::new();
    for (kind, ids) in [
        (ClientKind::Register, registers),
        (ClientKind::Station, stations),
    ] {
        for id in ids.iter() {
            let c = app.access.enrol(kind, id, "now").unwrap();
            passwords.insert(id.to_string(), c.mqtt_password);
        }
    }
    let fdmd_password = "fdmd-test-password".to_owned();
    let mut users: Vec<(&str, &str)> = vec![("fdmd", &fdmd_password)];
    users.extend(passwords.iter().map(|(u, p)| (u.as_str(), p.as_str())));
    let tls_files = tls.map(|(port, dir)| (port, tls_material(dir)));
    let extra = match &tls_files {
        Some((port, (ca, cert, key))) => format!(
            "listener {port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n",
            ca.display(),
            cert.display(),
            key.display()
        ),
        None => String::new(),
    };
    let mosquitto = Mosquitto::start_with(&bins, &users, &extra);

    let password_file = dir.path().join("mqtt-password");
    std::fs::write(&password_file, format!("{fdmd_password}\n")).unwrap();
    let mut config = (*app.config).clone();
    config.mqtt.mode = MqttMode::External;
    config.mqtt.max_payload_bytes = 4096;
    config.mqtt.external.host = "127.0.0.1".into();
    config.mqtt.external.port = mosquitto.addr.port();
    config.mqtt.external.password_file = Some(password_file);
    if let Some((port, (ca, _, _))) = &tls_files {
        config.mqtt.external.port = *port;
        config.mqtt.external.tls = true;
        config.mqtt.external.ca_file = Some(ca.clone());
    }
    let app = fdmd::app::App::new(
        std::sync::Arc::new(config),
        app.registrar.clone(),
        app.access.clone(),
        app.signer.clone(),
        app.status.clone(),
        std::time::Duration::MAX,
    );
    let service = MqttService::start(app.clone()).await.unwrap();
    assert_eq!(service.local_addr(), None);
    Some(Setup {
        f: Fdmd {
            dir,
            app,
            signer,
            service: Some(service),
        },
        mosquitto,
        passwords,
    })
}

impl Setup {
    async fn client(&self, user: &str, id: &str) -> TestClient {
        TestClient::connect(self.mosquitto.addr, id, Some((user, &self.passwords[user]))).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_receipts_and_tickets_through_mosquitto_with_the_shipped_acl() {
    let Some(mut s) = setup(&["till-1", "till-2"], &["kitchen"]).await else {
        return;
    };
    let mut till1 = s.client("till-1", "pos-1").await;
    till1
        .subscribe(&format!("{P}/registers/till-1/receipts"))
        .await;
    let mut till2 = s.client("till-2", "pos-2").await;
    till2
        .subscribe(&format!("{P}/registers/till-2/receipts"))
        .await;
    let mut kitchen = s.client("kitchen", "kds").await;
    kitchen
        .subscribe(&format!("{P}/stations/kitchen/tickets"))
        .await;

    // An order: one signed receipt, and the kitchen's lines.
    till1
        .publish(
            &format!("{P}/registers/till-1/orders"),
            order("r-1", &[("Soep", Some("kitchen")), ("Cola", None)]),
        )
        .await;
    let r = till1.next_message().await.json();
    assert_eq!(
        (r["code"].as_u64(), r["request_id"].as_str()),
        (Some(0), Some("r-1")),
        "{r}"
    );
    let t = kitchen.next_message().await.json();
    assert_eq!(t["lines"].as_array().unwrap().len(), 1, "{t}");
    assert!(
        till1.message_within(QUIET).await.is_none(),
        "one receipt per order"
    );

    // Over the limit: 207 from fdmd's own check (Mosquitto forwards up to 1 MiB).
    till1
        .publish(&format!("{P}/registers/till-1/orders"), vec![b'x'; 5000])
        .await;
    let r = till1.next_message().await.json();
    assert_eq!(r["code"], 207);
    assert!(r["message"].as_str().unwrap().contains("5000"), "{r}");

    // The ACL: till-1 cannot order for till-2, nor read till-2's receipts.
    let before = s.f.last_seq();
    till1
        .publish(
            &format!("{P}/registers/till-2/orders"),
            order("r-9", &[("Cola", None)]),
        )
        .await;
    assert!(
        till2.message_within(QUIET).await.is_none(),
        "till-2 got a receipt for till-1's forged order"
    );
    assert_eq!(s.f.last_seq(), before, "nothing journaled");
    till1
        .client
        .subscribe(
            format!("{P}/registers/till-2/receipts"),
            rumqttc::QoS::AtLeastOnce,
        )
        .await
        .unwrap();
    // Mosquitto 2.0 grants the subscription and checks read access per message; later versions
    // may refuse it outright. Either way nothing of till-2's may arrive.
    match till1.next_event().await {
        Happened::SubAck(codes) => assert_eq!(codes.len(), 1, "{codes:?}"),
        other => panic!("{other:?}"),
    }
    till2
        .publish(
            &format!("{P}/registers/till-2/orders"),
            order("r-1", &[("Cola", None)]),
        )
        .await;
    assert_eq!(till2.next_message().await.json()["code"], 0);
    assert!(
        till1.message_within(QUIET).await.is_none(),
        "till-1 read till-2's receipt"
    );

    // A station may publish on registers/<its id>/orders (the patterns cannot tell kinds apart),
    // but fdmd only takes orders from enrolled registers.
    kitchen
        .publish(
            &format!("{P}/registers/kitchen/orders"),
            order("r-1", &[("Cola", None)]),
        )
        .await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(
        s.f.last_seq(),
        before + 1,
        "only till-2's order was journaled"
    );

    // The retained status, then the final one when fdmd stops.
    let mut late = s.client("kitchen", "screen").await;
    late.subscribe(&format!("{P}/status")).await;
    let m = late.next_message().await;
    assert!(m.retain);
    assert!(m.json()["version"].is_string());
    s.f.stop().await;
    let mut after = s.client("till-2", "after").await;
    after.subscribe(&format!("{P}/status")).await;
    let doc = after.next_message().await.json();
    assert_eq!(doc["status"], "offline", "{doc}");
    assert_eq!(doc["reason"], "fdmd stopped", "{doc}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_sent_while_fdmd_is_down_are_answered_when_it_is_back() {
    let Some(mut s) = setup(&["till-1"], &[]).await else {
        return;
    };
    let mut till = s.client("till-1", "pos-1").await;
    till.subscribe(&format!("{P}/registers/till-1/receipts"))
        .await;
    s.f.stop().await;
    till.publish(
        &format!("{P}/registers/till-1/orders"),
        order("r-1", &[("Cola", None)]),
    )
    .await;
    assert!(till.message_within(QUIET).await.is_none());
    // fdmd's session (client id "fdmd", clean session off) kept the order for it.
    s.f.service = Some(MqttService::start(s.f.app.clone()).await.unwrap());
    let r = till.next_message().await.json();
    assert_eq!(
        (r["code"].as_u64(), r["request_id"].as_str()),
        (Some(0), Some("r-1")),
        "{r}"
    );
    s.f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_will_marks_fdmd_offline_when_its_client_vanishes() {
    let Some(mut s) = setup(&["till-1"], &[]).await else {
        return;
    };
    s.f.stop().await;
    let status = format!("{P}/status");
    let (tx, _rx) = tokio::sync::mpsc::channel(8);
    let bus = Bus::start(
        BusOptions {
            host: "127.0.0.1".into(),
            port: s.mosquitto.addr.port(),
            client_id: "fdmd-will-test".into(),
            credentials: Some(("fdmd".into(), "fdmd-test-password".into())),
            max_packet_bytes: 1 << 20,
            persistent_session: false,
            keep_alive: Duration::from_secs(5),
            will: Some((status.clone(), fdmd::mqtt::status_topic::will_payload())),
            subscriptions: vec![],
            tls: None,
        },
        tx,
        None,
    )
    .unwrap();
    assert!(bus.wait_subscribed(SOON).await);
    bus.handle()
        .publish(status.clone(), br#"{"status":"ready"}"#.to_vec(), true)
        .await
        .unwrap();
    let mut till = s.client("till-1", "pos-1").await;
    till.subscribe(&status).await;
    // The bus's publish is queued, not acknowledged: on a busy machine the till can subscribe
    // before Mosquitto has it, and then gets the retained "offline" of fdmd's stop first.
    let mut first = till.next_message().await.json();
    if first["status"] == "offline" {
        first = till.next_message().await.json();
    }
    assert_eq!(first["status"], "ready", "{first}");
    bus.abort().await;
    let will = till.next_message().await;
    assert_eq!(will.json(), serde_json::json!({"status": "offline"}));
    let mut late = s.client("till-1", "late").await;
    late.subscribe(&status).await;
    let m = late.next_message().await;
    assert!(m.retain);
    assert_eq!(m.json()["status"], "offline");
}

/// The mosquitto_pub / mosquitto_sub examples of docs/mqtt.md, against the embedded broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_clients_work_with_the_embedded_broker() {
    let (Some(sub), Some(publ)) = (which("mosquitto_sub"), which("mosquitto_pub")) else {
        if std::env::var_os("FDMD_REQUIRE_MOSQUITTO").is_some() {
            panic!("FDMD_REQUIRE_MOSQUITTO is set but mosquitto-clients is not installed");
        }
        eprintln!("\n*** SKIPPED: mosquitto-clients is not installed. ***\n");
        return;
    };
    let mut f = Fdmd::start(|_| {}).await;
    let port = f.addr().port().to_string();
    let password = f.enrol(ClientKind::Register, "till-1").mqtt_password;
    let command = move |bin: &PathBuf, args: &[&str]| {
        let mut c = Command::new(bin);
        c.args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-u",
            "till-1",
            "-P",
            &password,
            "-q",
            "1",
        ]);
        c.args(args);
        c
    };
    let order = r#"{"request_id":"r-1","operator":"85073003328","event_type":"normal","lines":[{"description":"Soep","quantity":2,"unit_price":"6.50","vat":"B","station":"kitchen"}]}"#;
    let receipt = command(
        &sub,
        &[
            "-C",
            "1",
            "-W",
            "10",
            "-t",
            "fdm/v1/registers/till-1/receipts",
        ],
    )
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    let publish = command(
        &publ,
        &["-t", "fdm/v1/registers/till-1/orders", "-m", order],
    );
    let forged = command(&publ, &["-t", "fdm/v1/registers/till-2/orders", "-m", "{}"]);
    let v5 = command(
        &publ,
        &[
            "-V",
            "5",
            "-t",
            "fdm/v1/registers/till-1/orders",
            "-m",
            "{}",
        ],
    );
    let (r, forged, v5) = tokio::task::spawn_blocking(move || {
        let mut publish = publish;
        let mut forged = forged;
        let mut v5 = v5;
        let mut receipt = receipt;
        // Publish until the subscriber is in place and the receipt comes (resends are harmless).
        let deadline = Instant::now() + Duration::from_secs(10);
        while receipt.try_wait().unwrap().is_none() && Instant::now() < deadline {
            assert!(publish.status().unwrap().success());
            std::thread::sleep(Duration::from_millis(200));
        }
        let out = receipt.wait_with_output().unwrap();
        (out.stdout, forged.output().unwrap(), v5.output().unwrap())
    })
    .await
    .unwrap();
    let r: serde_json::Value = serde_json::from_slice(&r).unwrap();
    assert_eq!(r["request_id"], "r-1", "{r}");
    assert!(r["code"] == 0 || r["code"] == 102, "{r}");
    // Another register's topic: the connection is lost.
    let err = String::from_utf8_lossy(&forged.stderr);
    eprintln!("forbidden publish: {err}");
    assert!(err.contains("lost"), "{err}");
    // An MQTT 5 client is told its protocol version is not supported.
    let err = String::from_utf8_lossy(&v5.stderr);
    eprintln!("MQTT 5: {err}");
    assert!(!v5.status.success(), "{err}");
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fdmd_reaches_the_external_broker_over_tls() {
    let certs = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let Some(s) = setup_with(&["till-1"], &[], Some((port, certs.path()))).await else {
        return;
    };
    // Registers use the plain listener; fdmd itself is connected over TLS.
    let mut till = s.client("till-1", "till-1").await;
    till.subscribe("fdm/v1/registers/till-1/receipts").await;
    till.publish(
        "fdm/v1/registers/till-1/orders",
        order("tls-1", &[("Soep", None)]),
    )
    .await;
    let receipt = till
        .message_within(Duration::from_secs(15))
        .await
        .expect("a receipt through the TLS-connected fdmd")
        .json();
    assert_eq!(
        receipt["status"],
        "signed",
        "{receipt}\n{}",
        s.mosquitto.log()
    );
    assert_eq!(receipt["request_id"], "tls-1");
    assert!(
        s.mosquitto.log().contains(&format!("on port {port}")),
        "{}",
        s.mosquitto.log()
    );
}
