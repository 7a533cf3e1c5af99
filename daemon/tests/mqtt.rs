//! MQTT in embedded mode, through the public listener (the gate) with real rumqttc clients:
//! orders and receipts, errors, authentication, topic authorisation, station tickets, status.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod mqtt_common;

use fdmd::access::ClientKind;
use fdmd::signer::verify_ed25519;
use mqtt_common::*;
use rumqttc::ConnectReturnCode;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A register client, connected and subscribed to its receipts.
async fn register(f: &Fdmd, id: &str) -> TestClient {
    let c = f.enrol(ClientKind::Register, id);
    let mut client = TestClient::connect(
        f.addr(),
        &format!("pos-{id}"),
        Some((&c.mqtt_username, &c.mqtt_password)),
    )
    .await;
    client.subscribe(&receipts(id)).await;
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_gets_exactly_one_signed_receipt() {
    let mut f = Fdmd::start(|_| {}).await;
    let mut till = register(&f, "till-1").await;
    till.publish(&orders("till-1"), order("r-1", &[("Cola", None)]))
        .await;
    let m = till.next_message().await;
    assert_eq!(m.topic, receipts("till-1"));
    let r = m.json();
    assert_eq!(r["request_id"], "r-1");
    assert_eq!(r["status"], "signed");
    assert_eq!(r["code"], 0);
    assert_eq!(r["register"], "till-1");
    assert_eq!(r["ticket_number"], "000001");
    let digest = hex::decode(r["signed_digest"].as_str().unwrap()).unwrap();
    let sig = hex::decode(r["signature"].as_str().unwrap()).unwrap();
    assert!(verify_ed25519(&f.public_key(), &digest, &sig));
    assert!(
        till.message_within(QUIET).await.is_none(),
        "a second receipt"
    );
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_orders_get_a_207_receipt_with_the_field() {
    let mut f = Fdmd::start(|_| {}).await;
    let mut till = register(&f, "till-1").await;
    let before = f.last_seq();

    till.publish(&orders("till-1"), b"{not json".to_vec()).await;
    let r = till.next_message().await.json();
    assert_eq!(r["status"], "error");
    assert_eq!(r["code"], 207);
    assert_eq!(r["request_id"], Value::Null);

    let mut bad: Value = serde_json::from_slice(&order("r-2", &[("Cola", None)])).unwrap();
    bad["lines"][0]["vat"] = "Z".into();
    till.publish(&orders("till-1"), serde_json::to_vec(&bad).unwrap())
        .await;
    let r = till.next_message().await.json();
    assert_eq!(r["code"], 207);
    assert_eq!(r["request_id"], "r-2");
    assert!(r["field"].as_str().unwrap().contains("vat"), "{r}");
    assert_eq!(f.last_seq(), before, "nothing journaled");
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_payloads_get_207_and_the_connection_stays() {
    let mut f = Fdmd::start(|c| c.mqtt.max_payload_bytes = 4096).await;
    let mut till = register(&f, "till-1").await;
    for size in [4097usize, 300_000] {
        till.publish(&orders("till-1"), vec![b'x'; size]).await;
        let r = till.next_message().await.json();
        assert_eq!(r["code"], 207, "{r}");
        assert!(
            r["message"].as_str().unwrap().contains(&size.to_string()),
            "{r}"
        );
        assert!(r["message"].as_str().unwrap().contains("4096"), "{r}");
    }
    till.publish(&orders("till-1"), order("r-1", &[("Cola", None)]))
        .await;
    assert_eq!(till.next_message().await.json()["code"], 0);
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_refused() {
    let mut f = Fdmd::start(|_| {}).await;
    let c = f.enrol(ClientKind::Register, "till-1");
    let mut wrong = TestClient::start(options(f.addr(), "x", Some((&c.mqtt_username, "wrong"))));
    assert_eq!(
        wrong.next_event().await,
        Happened::Refused(ConnectReturnCode::BadUserNamePassword)
    );
    let mut unknown = TestClient::start(options(
        f.addr(),
        "y",
        Some(("register:nobody", &c.mqtt_password)),
    ));
    assert_eq!(
        unknown.next_event().await,
        Happened::Refused(ConnectReturnCode::BadUserNamePassword)
    );
    // The bare id works too (the user name that also suits Mosquitto's ACL).
    let mut bare = TestClient::connect(f.addr(), "z", Some(("till-1", &c.mqtt_password))).await;
    bare.subscribe(&receipts("till-1")).await;
    // Revoked credentials stop working at once.
    f.app
        .access
        .revoke(ClientKind::Register, "till-1", "now")
        .unwrap();
    let mut revoked = TestClient::start(options(
        f.addr(),
        "w",
        Some((&c.mqtt_username, &c.mqtt_password)),
    ));
    assert_eq!(
        revoked.next_event().await,
        Happened::Refused(ConnectReturnCode::BadUserNamePassword)
    );
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_clients_are_refused_in_dev_mode_too() {
    // Development mode differs from production only in the signer, the defaults and the
    // printed credentials: an anonymous client on the Wi-Fi signs nothing in either.
    for dev in [false, true] {
        let mut f = Fdmd::start(|c| c.daemon.dev = dev).await;
        let mut anon = TestClient::start(options(f.addr(), "anon", None));
        assert_eq!(
            anon.next_event().await,
            Happened::Refused(ConnectReturnCode::NotAuthorized),
            "dev = {dev}"
        );
        // An enrolled register with its credentials is served, and only for itself.
        let mut till = register(&f, "dev-till").await;
        let before = f.last_seq();
        till.publish(&orders("dev-till"), order("r-1", &[("Cola", None)]))
            .await;
        assert_eq!(till.next_message().await.json()["code"], 0, "dev = {dev}");
        assert!(f.last_seq() > before, "the order is journaled");
        // Even in development mode nobody but fdmd speaks on fdmd's topics.
        till.publish(&receipts("dev-till"), b"{}".to_vec()).await;
        till.closed().await;
        f.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_register_publishing_for_another_is_disconnected_and_nothing_is_journaled() {
    let mut f = Fdmd::start(|_| {}).await;
    let mut a = register(&f, "till-a").await;
    let mut b = register(&f, "till-b").await;
    let before = f.last_seq();
    a.publish(&orders("till-b"), order("r-1", &[("Cola", None)]))
        .await;
    a.closed().await;
    assert!(
        b.message_within(QUIET).await.is_none(),
        "B got a receipt for A's forged order"
    );
    assert_eq!(f.last_seq(), before, "nothing journaled");
    // B is unaffected.
    b.publish(&orders("till-b"), order("r-1", &[("Cola", None)]))
        .await;
    assert_eq!(b.next_message().await.json()["code"], 0);
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_register_subscribing_to_another_registers_receipts_is_disconnected() {
    let mut f = Fdmd::start(|_| {}).await;
    let c = f.enrol(ClientKind::Register, "till-a");
    for filter in [
        receipts("till-b"),
        format!("{P}/registers/+/receipts"),
        format!("{P}/registers/till-a/#"),
        format!("{P}/#"),
        "#".to_owned(),
        format!("{P}/stations/kitchen/tickets"),
    ] {
        let mut a = TestClient::connect(
            f.addr(),
            "pos-a",
            Some((&c.mqtt_username, &c.mqtt_password)),
        )
        .await;
        a.client
            .subscribe(&filter, rumqttc::QoS::AtLeastOnce)
            .await
            .unwrap();
        a.closed().await;
    }
    // Its own receipts and the status are fine.
    let mut a = TestClient::connect(
        f.addr(),
        "pos-a",
        Some((&c.mqtt_username, &c.mqtt_password)),
    )
    .await;
    a.subscribe(&receipts("till-a")).await;
    a.subscribe(&format!("{P}/status")).await;
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stations_get_only_their_lines_once_the_order_is_signed() {
    let mut f = Fdmd::start(|_| {}).await;
    let k = f.enrol(ClientKind::Station, "kitchen");
    let b = f.enrol(ClientKind::Station, "bar");
    let mut kitchen =
        TestClient::connect(f.addr(), "kds", Some((&k.mqtt_username, &k.mqtt_password))).await;
    kitchen
        .subscribe(&format!("{P}/stations/kitchen/tickets"))
        .await;
    let mut bar = TestClient::connect(
        f.addr(),
        "bar-printer",
        Some((&b.mqtt_username, &b.mqtt_password)),
    )
    .await;
    bar.subscribe(&format!("{P}/stations/bar/tickets")).await;
    let mut till = register(&f, "till-1").await;

    let lines = [
        ("Soep", Some("kitchen")),
        ("Cola", Some("bar")),
        ("Stoofvlees", Some("kitchen")),
        ("Bon", None),
    ];
    till.publish(&orders("till-1"), order("r-1", &lines)).await;
    let receipt = till.next_message().await.json();
    assert_eq!(receipt["code"], 0);

    let t = kitchen.next_message().await;
    assert_eq!(t.topic, format!("{P}/stations/kitchen/tickets"));
    let t = t.json();
    let names: Vec<&str> = t["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["description"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Soep", "Stoofvlees"]);
    assert_eq!(t["request_id"], "r-1");
    assert_eq!(t["ticket_number"], receipt["ticket_number"]);
    let t = bar.next_message().await.json();
    let names: Vec<&str> = t["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["description"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Cola"]);
    assert!(kitchen.message_within(QUIET).await.is_none());
    assert!(
        bar.message_within(Duration::from_millis(50))
            .await
            .is_none()
    );

    // A refused order sends nothing to the stations.
    till.publish(&orders("till-1"), b"{}".to_vec()).await;
    assert_eq!(till.next_message().await.json()["code"], 207);
    assert!(kitchen.message_within(QUIET).await.is_none());

    // Stations only read, and only their own tickets.
    bar.publish(&orders("bar"), order("r-9", &[("Cola", Some("bar"))]))
        .await;
    bar.closed().await;
    let mut nosy =
        TestClient::connect(f.addr(), "kds2", Some((&k.mqtt_username, &k.mqtt_password))).await;
    nosy.client
        .subscribe(
            format!("{P}/stations/bar/tickets"),
            rumqttc::QoS::AtLeastOnce,
        )
        .await
        .unwrap();
    nosy.closed().await;
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_is_retained_for_new_subscribers() {
    let mut f = Fdmd::start(|_| {}).await;
    let s = f.enrol(ClientKind::Station, "kitchen");
    let creds = Some((s.mqtt_username.as_str(), s.mqtt_password.as_str()));
    // The first status is queued before clients are let in; once anybody has seen it, it is
    // retained for whoever subscribes later.
    let mut first = TestClient::connect(f.addr(), "first", creds).await;
    first.subscribe(&format!("{P}/status")).await;
    first.next_message().await;
    let mut late = TestClient::connect(f.addr(), "late", creds).await;
    late.subscribe(&format!("{P}/status")).await;
    let m = late.next_message().await;
    assert!(m.retain, "a new subscriber gets the retained status");
    let doc = m.json();
    assert!(doc["version"].is_string(), "{doc}");
    assert!(doc["journal"]["last_seq"].is_u64(), "{doc}");
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_and_garbage_are_refused_cleanly() {
    let mut f = Fdmd::start(|_| {}).await;
    // An MQTT 5 CONNECT: name "MQTT", level 5, clean start, keep-alive 60, no properties, id "v5".
    let v5 = [
        0x10, 15, 0, 4, b'M', b'Q', b'T', b'T', 5, 0x02, 0, 60, 0, 0, 2, b'v', b'5',
    ];
    let mut s = tokio::net::TcpStream::connect(f.addr()).await.unwrap();
    s.write_all(&v5).await.unwrap();
    let mut ack = [0u8; 4];
    tokio::time::timeout(SOON, s.read_exact(&mut ack))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        ack,
        [0x20, 2, 0, 1],
        "CONNACK: unacceptable protocol version"
    );
    assert_eq!(
        tokio::time::timeout(SOON, s.read(&mut ack))
            .await
            .unwrap()
            .unwrap(),
        0,
        "then closed"
    );

    // Not a CONNECT at all, and an absurd length: closed without reading further.
    for junk in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        &[0x10, 0xff, 0xff, 0xff, 0x7f][..],
    ] {
        let mut s = tokio::net::TcpStream::connect(f.addr()).await.unwrap();
        s.write_all(junk).await.unwrap();
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(SOON, s.read(&mut buf))
            .await
            .unwrap()
            .unwrap_or(0);
        assert_eq!(n, 0);
    }
    // A client that asks for no keep-alive (rumqttd alone would drop it without a word).
    let c = f.enrol(ClientKind::Register, "till-0");
    let mut o = options(
        f.addr(),
        "no-keep-alive",
        Some((&c.mqtt_username, &c.mqtt_password)),
    );
    o.set_keep_alive(Duration::ZERO);
    let mut lazy = TestClient::start(o);
    assert_eq!(lazy.next_event().await, Happened::Connected);

    // Orders still flow.
    let mut till = register(&f, "till-1").await;
    till.publish(&orders("till-1"), order("r-1", &[("Cola", None)]))
        .await;
    assert_eq!(till.next_message().await.json()["code"], 0);
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cannot_take_over_fdmds_session() {
    let mut f = Fdmd::start(|_| {}).await;
    let c = f.enrol(ClientKind::Register, "till-1");
    // Client ids are prefixed with the principal inside the broker, so "fdmd" is not fdmd's.
    let mut evil =
        TestClient::connect(f.addr(), "fdmd", Some((&c.mqtt_username, &c.mqtt_password))).await;
    evil.subscribe(&receipts("till-1")).await;
    evil.publish(&orders("till-1"), order("r-1", &[("Cola", None)]))
        .await;
    assert_eq!(
        evil.next_message().await.json()["code"],
        0,
        "fdmd's own client is still there"
    );
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_registers_at_once_each_order_one_receipt_numbers_uninterrupted() {
    const REGISTERS: usize = 8;
    const ORDERS: usize = 25;
    let mut f = Fdmd::start(|_| {}).await;
    let mut tills = Vec::new();
    for i in 0..REGISTERS {
        tills.push(register(&f, &format!("till-{i}")).await);
    }
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for (i, mut till) in tills.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let id = format!("till-{i}");
            // Pipelined: all orders out, then the receipts.
            for n in 0..ORDERS {
                till.publish(&orders(&id), order(&format!("r-{n}"), &[("Cola", None)]))
                    .await;
            }
            let mut got = Vec::new();
            for _ in 0..ORDERS {
                got.push(till.next_message().await.json());
            }
            assert!(
                till.message_within(QUIET).await.is_none(),
                "{id}: more receipts than orders"
            );
            (id, till, got)
        }));
    }
    let mut first_signature = BTreeMap::new();
    let mut seqs = BTreeSet::new();
    let mut resend_from = None;
    for t in tasks {
        let (id, till, got) = t.await.unwrap();
        let ids: Vec<&str> = got
            .iter()
            .map(|r| r["request_id"].as_str().unwrap())
            .collect();
        let expected: Vec<String> = (0..ORDERS).map(|n| format!("r-{n}")).collect();
        assert_eq!(ids, expected, "{id}: each order answered once, in order");
        let numbers: Vec<&str> = got
            .iter()
            .map(|r| r["ticket_number"].as_str().unwrap())
            .collect();
        let expected: Vec<String> = (1..=ORDERS).map(|n| format!("{n:06}")).collect();
        assert_eq!(numbers, expected, "{id}: ticket numbers uninterrupted");
        for r in &got {
            assert_eq!(r["code"], 0);
            assert!(seqs.insert(r["journal_seq"].as_u64().unwrap()));
        }
        first_signature.insert(id.clone(), got[3]["signature"].clone());
        if resend_from.is_none() {
            resend_from = Some((id, till));
        }
    }
    let stats = f.app.registrar.journal().stats();
    let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::SeqCst);
    eprintln!(
        "{} orders from {REGISTERS} registers answered in {:?}; journal: {} records in {} commits",
        REGISTERS * ORDERS,
        started.elapsed(),
        load(&stats.records),
        load(&stats.commits),
    );
    // A resend of an order already registered gets 102 and the first signature.
    let (id, mut till) = resend_from.unwrap();
    till.publish(&orders(&id), order("r-3", &[("Cola", None)]))
        .await;
    let r = till.next_message().await.json();
    assert_eq!(r["code"], 102, "{r}");
    assert_eq!(r["signature"], first_signature[&id]);
    assert_eq!(r["ticket_number"], "000004");
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listen_address_is_reported_and_a_busy_one_is_an_error() {
    let mut f = Fdmd::start(|_| {}).await;
    let addr = f.addr();
    assert_ne!(addr.port(), 0);
    let (_dir, app, _) = Fdmd::app(|c| c.mqtt.listen = addr);
    let e = fdmd::mqtt::MqttService::start(app).await.err().unwrap();
    assert!(e.to_string().contains(&addr.to_string()), "{e}");
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_gate_and_fdmd_get_into_the_internal_broker_and_the_will_reaches_clients() {
    use fdmd::mqtt::broker::{BUS_USER, BrokerSettings, InternalBroker};
    use fdmd::mqtt::bus::{Bus, BusOptions};
    use fdmd::mqtt::gate::{Gate, GateSettings};
    use fdmd::mqtt::topics::Topics;

    let (_dir, app, _) = Fdmd::app(|_| {});
    let broker = InternalBroker::start(BrokerSettings {
        max_connections: 8,
        max_packet_bytes: 1 << 20,
    })
    .await
    .unwrap();
    // A client's own credentials, none, or a guess do not open the internal port.
    let c = app
        .access
        .enrol(ClientKind::Register, "till-1", "now")
        .unwrap();
    for creds in [
        Some((c.mqtt_username.as_str(), c.mqtt_password.as_str())),
        None,
        Some((BUS_USER, "guess")),
    ] {
        let mut direct = TestClient::start(options(broker.addr(), "direct", creds));
        let got = direct.next_event().await;
        assert_ne!(
            got,
            Happened::Connected,
            "{creds:?} got into the internal broker"
        );
    }

    let topics = Topics::new(P);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (orders_tx, _orders_rx) = tokio::sync::mpsc::channel(8);
    let settings = GateSettings {
        topics: topics.clone(),
        upstream: broker.addr(),
        secret: broker.gate_secret().clone(),
        max_payload: 4096,
        max_downstream: 1 << 20,
        max_connections: 8,
        connect_timeout: SOON,
        dev: false,
    };
    let local_addr = listener.local_addr().unwrap();
    let gate = Gate::start(
        listener,
        local_addr,
        settings,
        app.access.clone(),
        orders_tx,
        std::sync::Arc::new(fdmd::mqtt::direct::Routes::new()),
    );
    let k = app
        .access
        .enrol(ClientKind::Station, "kitchen", "now")
        .unwrap();
    let mut kitchen = TestClient::connect(
        gate.local_addr(),
        "kds",
        Some((&k.mqtt_username, &k.mqtt_password)),
    )
    .await;
    kitchen.subscribe(&topics.status()).await;

    let (tx, _rx) = tokio::sync::mpsc::channel(8);
    let bus = Bus::start(
        BusOptions {
            host: "127.0.0.1".into(),
            port: broker.addr().port(),
            client_id: "fdmd".into(),
            credentials: Some((BUS_USER.into(), broker.bus_secret().expose().into())),
            max_packet_bytes: 1 << 20,
            persistent_session: false,
            keep_alive: Duration::from_secs(5),
            will: Some((topics.status(), fdmd::mqtt::status_topic::will_payload())),
            subscriptions: vec![],
            tls: None,
        },
        tx,
        None,
    )
    .unwrap();
    assert!(bus.wait_subscribed(SOON).await);
    bus.handle()
        .publish(topics.status(), br#"{"status":"ready"}"#.to_vec(), true)
        .await
        .unwrap();
    assert_eq!(kitchen.next_message().await.json()["status"], "ready");
    // fdmd's client vanishes without a DISCONNECT: the broker publishes its will.
    bus.abort().await;
    assert_eq!(
        kitchen.next_message().await.json(),
        serde_json::json!({"status": "offline"})
    );
    gate.close(SOON).await;
    kitchen.closed().await;
    broker.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_bounded_and_stops_taking_connections() {
    let mut f = Fdmd::start(|c| c.daemon.shutdown_grace_ms = 1_000).await;
    let addr = f.addr();
    let mut till = register(&f, "till-1").await;
    for n in 0..20 {
        till.publish(
            &orders("till-1"),
            order(&format!("r-{n}"), &[("Cola", None)]),
        )
        .await;
    }
    assert_eq!(till.next_message().await.json()["code"], 0);
    let t = std::time::Instant::now();
    f.stop().await;
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        t.elapsed()
    );
    assert!(
        f.app
            .status
            .problems()
            .iter()
            .any(|p| p.code == fdmd::status::ProblemCode::MqttNotServing),
        "MQTT is reported down"
    );
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still accepting"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_register_closes_its_open_connection_and_spares_the_others() {
    let mut f = Fdmd::start(|_| {}).await;
    let mut a = register(&f, "till-a").await;
    let mut b = register(&f, "till-b").await;
    a.publish(&orders("till-a"), order("r-1", &[("Cola", None)]))
        .await;
    assert_eq!(a.next_message().await.json()["code"], 0);
    f.app.revoke(ClientKind::Register, "till-a").await.unwrap();
    // The gate closes the revoked register's connection at once (not at its next reconnect)…
    let why = tokio::time::timeout(Duration::from_secs(10), a.closed())
        .await
        .expect("the revoked register's connection stayed open");
    assert!(!why.is_empty());
    // …and the other register goes on.
    b.publish(&orders("till-b"), order("r-1", &[("Cola", None)]))
        .await;
    assert_eq!(b.next_message().await.json()["code"], 0);
    f.stop().await;
}
