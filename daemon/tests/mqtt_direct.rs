//! The gate's direct path in embedded mode (`daemon/src/mqtt/direct.rs`), through the public
//! listener with real rumqttc clients: clean-session clients' orders go straight to fdmd and their
//! receipts straight back, while subscribers through the broker (persistent sessions, wildcards in
//! development mode) still get every message once.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod mqtt_common;

use fdmd::access::ClientKind;
use mqtt_common::*;
use rumqttc::QoS;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Messages on `topic` that arrive within `quiet` of each other.
async fn drain(c: &mut TestClient, topic: &str, quiet: Duration) -> Vec<serde_json::Value> {
    let mut got = Vec::new();
    while let Some(m) = c.message_within(quiet).await {
        if m.topic == topic {
            got.push(m.json());
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_register_in_dev_mode_gets_every_receipt_once_and_in_order() {
    let mut f = Fdmd::start(|c| c.daemon.dev = true).await;
    // Development mode signs for enrolled registers with their credentials only (no anonymous
    // clients: a wildcard watcher under the prefix is no longer possible in any mode).
    let c = f.enrol(ClientKind::Register, "dev-till");
    let mut till =
        TestClient::connect(f.addr(), "till", Some((&c.mqtt_username, &c.mqtt_password))).await;
    till.subscribe(&receipts("dev-till")).await;
    for n in 0..5 {
        till.publish(
            &orders("dev-till"),
            order(&format!("r-{n}"), &[("Soep", Some("kitchen"))]),
        )
        .await;
    }
    let mut ids = Vec::new();
    for _ in 0..5 {
        let r = till.next_message().await;
        assert_eq!(r.topic, receipts("dev-till"));
        ids.push(r.json()["request_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        ids,
        ["r-0", "r-1", "r-2", "r-3", "r-4"],
        "in order, once each"
    );
    assert!(till.message_within(QUIET).await.is_none(), "a second copy");
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_session_gets_the_receipts_sent_while_it_was_away() {
    let mut f = Fdmd::start(|_| {}).await;
    let c = f.enrol(ClientKind::Register, "till-1");
    let creds = Some((c.mqtt_username.as_str(), c.mqtt_password.as_str()));
    let mut o = options(f.addr(), "kept", creds);
    o.set_clean_session(false);
    let mut kept = TestClient::start(o.clone());
    assert_eq!(kept.next_event().await, Happened::Connected);
    kept.subscribe(&receipts("till-1")).await;
    // Its own orders go through the broker and are answered as before.
    kept.publish(&orders("till-1"), order("r-1", &[("Cola", None)]))
        .await;
    assert_eq!(kept.next_message().await.json()["request_id"], "r-1");
    kept.client.disconnect().await.unwrap();
    kept.closed().await;

    // While it is away, another connection of the register (clean session, direct path)
    // orders: the kept session gets the receipt when it is back, the direct one at once.
    let mut handheld = TestClient::connect(f.addr(), "handheld", creds).await;
    handheld.subscribe(&receipts("till-1")).await;
    handheld
        .publish(&orders("till-1"), order("r-2", &[("Cola", None)]))
        .await;
    assert_eq!(handheld.next_message().await.json()["request_id"], "r-2");
    let mut back = TestClient::start(o);
    assert_eq!(back.next_event().await, Happened::Connected);
    let m = back.next_message().await;
    assert_eq!(m.topic, receipts("till-1"));
    assert_eq!(m.json()["request_id"], "r-2");
    assert!(back.message_within(QUIET).await.is_none());
    assert!(handheld.message_within(QUIET).await.is_none());
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_and_broker_deliveries_share_a_connection() {
    const ORDERS: usize = 150;
    let mut f = Fdmd::start(|c| c.daemon.dev = true).await;
    let creds = f.enrol(ClientKind::Register, "dev-till");
    let mut c = TestClient::connect(
        f.addr(),
        "both",
        Some((&creds.mqtt_username, &creds.mqtt_password)),
    )
    .await;
    // Receipts directly; the status topic through the broker (whose packet ids wrap at 100;
    // that the gate's ids stay above them is checked by the raw-client test below).
    c.subscribe(&receipts("dev-till")).await;
    c.subscribe(&format!("{P}/status")).await;
    for n in 0..ORDERS {
        c.publish(
            &orders("dev-till"),
            order(&format!("r-{n}"), &[("Soep", Some("kitchen"))]),
        )
        .await;
    }
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let status = format!("{P}/status");
    while counts.len() < ORDERS {
        let m = c.next_message().await;
        if m.topic == status {
            continue;
        }
        assert_eq!(m.topic, receipts("dev-till"));
        let id = m.json()["request_id"].as_str().unwrap().to_owned();
        *counts.entry(id).or_default() += 1;
    }
    assert!(counts.values().all(|n| *n == 1), "each receipt once");
    let extra = drain(&mut c, &receipts("dev-till"), QUIET).await;
    assert!(extra.is_empty(), "a second copy: {extra:?}");
    // Still connected: acknowledgements went to the right side.
    c.publish(&orders("dev-till"), order("last", &[("Cola", None)]))
        .await;
    assert_eq!(c.next_message().await.json()["request_id"], "last");
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribing_again_after_a_mixed_subscribe_still_gives_one_receipt() {
    let mut f = Fdmd::start(|_| {}).await;
    let c = f.enrol(ClientKind::Register, "till-1");
    let mut till =
        TestClient::connect(f.addr(), "pos", Some((&c.mqtt_username, &c.mqtt_password))).await;
    // Receipts and the status in one SUBSCRIBE: through the broker.
    till.client
        .subscribe_many([
            rumqttc::SubscribeFilter::new(receipts("till-1"), QoS::AtLeastOnce),
            rumqttc::SubscribeFilter::new(format!("{P}/status"), QoS::AtLeastOnce),
        ])
        .await
        .unwrap();
    assert!(matches!(till.next_event().await, Happened::SubAck(_)));
    // The receipts again on their own: the broker subscription stays the only one.
    till.subscribe(&receipts("till-1")).await;
    till.publish(&orders("till-1"), order("r-1", &[("Cola", None)]))
        .await;
    let got = drain(&mut till, &receipts("till-1"), QUIET).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["request_id"], "r-1");

    // The other way round: direct first, then in a mixed SUBSCRIBE (it moves to the broker).
    let mut other = TestClient::connect(
        f.addr(),
        "pos-2",
        Some((&c.mqtt_username, &c.mqtt_password)),
    )
    .await;
    other.subscribe(&receipts("till-1")).await;
    other
        .client
        .subscribe_many([
            rumqttc::SubscribeFilter::new(receipts("till-1"), QoS::AtLeastOnce),
            rumqttc::SubscribeFilter::new(format!("{P}/status"), QoS::AtLeastOnce),
        ])
        .await
        .unwrap();
    assert!(matches!(other.next_event().await, Happened::SubAck(_)));
    other
        .publish(&orders("till-1"), order("r-2", &[("Cola", None)]))
        .await;
    let got = drain(&mut other, &receipts("till-1"), QUIET).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["request_id"], "r-2");
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribed_receipts_stop_and_the_connection_stays() {
    let mut f = Fdmd::start(|_| {}).await;
    let c = f.enrol(ClientKind::Register, "till-1");
    let mut till =
        TestClient::connect(f.addr(), "pos", Some((&c.mqtt_username, &c.mqtt_password))).await;
    till.subscribe(&receipts("till-1")).await;
    till.client.unsubscribe(receipts("till-1")).await.unwrap();
    assert_eq!(till.next_event().await, Happened::UnsubAck);
    till.publish(&orders("till-1"), order("r-1", &[("Cola", None)]))
        .await;
    assert!(till.message_within(QUIET).await.is_none());
    till.subscribe(&receipts("till-1")).await;
    till.publish(&orders("till-1"), order("r-2", &[("Cola", None)]))
        .await;
    assert_eq!(till.next_message().await.json()["request_id"], "r-2");
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gate_keeps_the_keep_alive_of_direct_clients() {
    let mut f = Fdmd::start(|_| {}).await;
    let c = f.enrol(ClientKind::Register, "till-1");
    // Busy for longer than 1.5 times its keep-alive, without a PINGREQ: stays connected.
    let mut o = options(f.addr(), "busy", Some((&c.mqtt_username, &c.mqtt_password)));
    o.set_keep_alive(Duration::from_secs(1));
    let mut busy = TestClient::start(o);
    assert_eq!(busy.next_event().await, Happened::Connected);
    busy.subscribe(&receipts("till-1")).await;
    for n in 0..12 {
        busy.client
            .publish(
                orders("till-1"),
                QoS::AtLeastOnce,
                false,
                order(&format!("r-{n}"), &[("Cola", None)]),
            )
            .await
            .unwrap();
        assert_eq!(
            busy.next_message().await.json()["request_id"],
            format!("r-{n}")
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Silent for 1.5 times its keep-alive (1 s): closed by the gate.
    let mut s = tokio::net::TcpStream::connect(f.addr()).await.unwrap();
    let user = c.mqtt_username.as_bytes();
    let pass = c.mqtt_password.as_bytes();
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0xc2, 0, 1, 0, 1, b's'];
    body.extend_from_slice(&(user.len() as u16).to_be_bytes());
    body.extend_from_slice(user);
    body.extend_from_slice(&(pass.len() as u16).to_be_bytes());
    body.extend_from_slice(pass);
    let mut connect = vec![0x10, body.len() as u8];
    connect.extend_from_slice(&body);
    s.write_all(&connect).await.unwrap();
    let mut ack = [0u8; 4];
    tokio::time::timeout(SOON, s.read_exact(&mut ack))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ack, [0x20, 2, 0, 0]);
    let t = std::time::Instant::now();
    let n = tokio::time::timeout(SOON, s.read(&mut ack))
        .await
        .expect("not closed")
        .unwrap_or(0);
    assert_eq!(n, 0, "closed");
    assert!(
        t.elapsed() >= Duration::from_millis(1_400),
        "{:?}",
        t.elapsed()
    );
    f.stop().await;
}

/// Reads one MQTT packet: (first byte, body).
async fn read_packet(s: &mut tokio::net::TcpStream) -> (u8, Vec<u8>) {
    let mut b1 = [0u8; 1];
    tokio::time::timeout(SOON, s.read_exact(&mut b1))
        .await
        .expect("nothing in time")
        .unwrap();
    let (mut len, mut shift) = (0usize, 0);
    loop {
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.unwrap();
        len |= usize::from(b[0] & 0x7f) << shift;
        shift += 7;
        if b[0] & 0x80 == 0 {
            break;
        }
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.unwrap();
    (b1[0], body)
}

fn frame(byte1: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![byte1];
    let mut n = body.len();
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

fn string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_orders_are_acknowledged_once_answered_and_in_order() {
    let mut f = Fdmd::start(|c| c.daemon.dev = true).await;
    let mut s = tokio::net::TcpStream::connect(f.addr()).await.unwrap();
    let creds = f.enrol(ClientKind::Register, "dev-a");
    // CONNECT: MQTT 3.1.1, clean session, user name and password, keep-alive 30, client id "raw".
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0xC2, 0, 30];
    string(&mut body, "raw");
    string(&mut body, &creds.mqtt_username);
    string(&mut body, &creds.mqtt_password);
    s.write_all(&frame(0x10, &body)).await.unwrap();
    assert_eq!(read_packet(&mut s).await, (0x20, vec![0, 0]));
    // SUBSCRIBE to the register's receipts (an exact topic: the direct path).
    let mut body = vec![0, 1];
    string(&mut body, &receipts("dev-a"));
    body.push(1);
    s.write_all(&frame(0x82, &body)).await.unwrap();
    assert_eq!(read_packet(&mut s).await, (0x90, vec![0, 1, 1]));
    // Orders, pipelined, packet ids 1..=20.
    for id in 1u16..=20 {
        let register = "dev-a";
        let mut body = Vec::new();
        string(&mut body, &orders(register));
        body.extend_from_slice(&id.to_be_bytes());
        body.extend_from_slice(&order(&format!("r-{id}"), &[("Cola", None)]));
        s.write_all(&frame(0x32, &body)).await.unwrap();
    }
    let mut answered = std::collections::BTreeSet::new();
    let mut acked = Vec::new();
    while acked.len() < 20 || answered.len() < 20 {
        let (b1, body) = read_packet(&mut s).await;
        match b1 >> 4 {
            3 => {
                assert_eq!(b1, 0x32, "QoS 1, not retained");
                let topic_len = usize::from(u16::from_be_bytes([body[0], body[1]]));
                let pkid = u16::from_be_bytes([body[2 + topic_len], body[3 + topic_len]]);
                assert!(pkid > 100, "the gate's ids are above rumqttd's: {pkid}");
                let r: serde_json::Value = serde_json::from_slice(&body[4 + topic_len..]).unwrap();
                let n: u16 = r["request_id"].as_str().unwrap()[2..].parse().unwrap();
                assert!(answered.insert(n), "receipt {n} twice");
                let mut ack = vec![0x40, 2];
                ack.extend_from_slice(&pkid.to_be_bytes());
                s.write_all(&ack).await.unwrap();
            }
            4 => {
                let id = u16::from_be_bytes([body[0], body[1]]);
                assert!(answered.contains(&id), "PUBACK {id} before its receipt");
                acked.push(id);
            }
            other => panic!("unexpected packet type {other}"),
        }
    }
    assert_eq!(acked, (1..=20).collect::<Vec<u16>>(), "in arrival order");
    f.stop().await;
}
