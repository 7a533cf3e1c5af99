//! Unauthenticated connections never take capacity from authenticated ones (issue 15, point 1):
//! with 200 idle MQTT sockets and 300 stalled, half-sent HTTP requests held open against the
//! real `fdmd`, and an attacker opening new idle sockets all along, a register logs in over MQTT
//! and gets its receipt, and posts an order over HTTP and gets its receipt, each within 3 s.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

#[path = "support/gks2.rs"]
mod gks2_support;
mod support;
#[path = "support/test_ca.rs"]
mod test_ca;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::Value;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};
use support::{Daemon, order};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

/// The target of issue 15: login and receipt within this, whatever the flood.
const WITHIN: Duration = Duration::from_secs(3);

/// A connection to `to` from the loopback address 127.0.0.`from` (Linux routes all of 127/8
/// to loopback, so a test can play many sources).
async fn connect_from(from: u8, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, from)),
            0,
        ))
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), socket.connect(to))
        .await
        .expect("connect timed out: fdmd no longer accepts connections")
        .unwrap()
}

/// `count` connections to `to`, spread over the sources `from`, each sent `first_bytes`.
async fn hold(count: usize, from: &[u8], to: SocketAddr, first_bytes: &[u8]) -> Vec<TcpStream> {
    let mut held = Vec::with_capacity(count);
    for i in 0..count {
        let mut s = connect_from(from[i % from.len()], to).await;
        if !first_bytes.is_empty() {
            s.write_all(first_bytes).await.unwrap();
        }
        held.push(s);
    }
    held
}

/// Logs in as the development register over MQTT, subscribes to its receipts and publishes one
/// order; returns the receipt and how long it all took.
async fn mqtt_order(addr: SocketAddr, creds: &Value, request_id: &str) -> (Value, Duration) {
    let started = Instant::now();
    let id = creds["id"].as_str().unwrap();
    let mut options = MqttOptions::new(format!("flood-{id}"), addr.ip().to_string(), addr.port());
    options.set_credentials(
        creds["mqtt_username"].as_str().unwrap(),
        creds["mqtt_password"].as_str().unwrap(),
    );
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut events) = AsyncClient::new(options, 16);
    let receipts = format!("fdm/v1/registers/{id}/receipts");
    client.subscribe(&receipts, QoS::AtLeastOnce).await.unwrap();
    let deadline = started + Duration::from_secs(15);
    loop {
        let event = tokio::time::timeout_at(deadline.into(), events.poll())
            .await
            .expect("no receipt within 15 s");
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                assert_eq!(ack.code, rumqttc::ConnectReturnCode::Success, "{ack:?}");
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                client
                    .publish(
                        format!("fdm/v1/registers/{id}/orders"),
                        QoS::AtLeastOnce,
                        false,
                        order(request_id, &[("Cola", 1, "2.20", "A")]),
                    )
                    .await
                    .unwrap();
            }
            Ok(Event::Incoming(Packet::Publish(p))) if p.topic == receipts => {
                let receipt: Value = serde_json::from_slice(&p.payload).unwrap();
                let took = started.elapsed();
                let _ = client.disconnect().await;
                return (receipt, took);
            }
            Ok(_) => {}
            Err(e) => panic!("MQTT login under flood failed: {e}"),
        }
    }
}

/// Posts one order over HTTP as the development register; returns the HTTP status, the receipt
/// and how long it took.
async fn http_order(addr: SocketAddr, token: &str, request_id: &str) -> (u16, Value, Duration) {
    let started = Instant::now();
    let (status, body) = fdmd::client::request(
        addr,
        hyper::Method::POST,
        "/v1/registers/dev-register/orders",
        Some(token),
        Some(order(request_id, &[("Water", 1, "2.00", "A")])),
        Duration::from_secs(15),
    )
    .await
    .unwrap();
    (
        status.as_u16(),
        serde_json::from_slice(&body).unwrap_or(Value::Null),
        started.elapsed(),
    )
}

#[test]
fn a_register_is_served_within_3_s_while_idle_and_stalled_connections_flood_fdmd() {
    let d = Daemon::start_dev();
    let creds: Value =
        serde_json::from_slice(&std::fs::read(d.data_dir().join("dev-credentials.json")).unwrap())
            .unwrap();
    let token = creds["http_token"].as_str().unwrap().to_owned();
    let (mqtt, http) = (d.mqtt, d.http);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        // 200 sockets that never send CONNECT: half from the register's own address, half
        // spread over ten others.
        let mut idle = hold(100, &[1], mqtt, b"").await;
        idle.extend(hold(100, &[2, 3, 4, 5, 6, 7, 8, 9, 10, 11], mqtt, b"").await);
        // 300 requests stalled in their headers, from ten addresses.
        let half_sent =
            b"POST /v1/registers/dev-register/orders HTTP/1.1\r\nHost: fdmd\r\nContent-Len";
        let stalled = hold(
            300,
            &[20, 21, 22, 23, 24, 25, 26, 27, 28, 29],
            http,
            half_sent,
        )
        .await;
        // And an attacker that goes on opening idle sockets to both listeners.
        let attacker = tokio::spawn(async move {
            let mut recent = std::collections::VecDeque::new();
            for i in 0..400u32 {
                let to = if i % 2 == 0 { mqtt } else { http };
                recent.push_back(connect_from(50, to).await);
                if recent.len() > 64 {
                    recent.pop_front();
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;

        let (receipt, took) = mqtt_order(mqtt, &creds, "flood-mqtt-1").await;
        assert_eq!(receipt["status"], "signed", "{receipt}");
        assert!(took <= WITHIN, "MQTT login and receipt took {took:?}");

        let (status, receipt, took) = http_order(http, &token, "flood-http-1").await;
        assert_eq!(status, 201, "{receipt}");
        assert!(took <= WITHIN, "HTTP order took {took:?}");

        attacker.abort();
        drop((idle, stalled));
    });
}

/// One HTTP/1.1 exchange from 127.0.0.`from` (the connection closes after it): the status and
/// the response head, within 15 s.
async fn exchange(from: u8, to: SocketAddr, request: String) -> (u16, String) {
    use tokio::io::AsyncReadExt;
    let mut s = connect_from(from, to).await;
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut out))
        .await
        .expect("no answer in 15 s")
        .unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let head = text.split("\r\n\r\n").next().unwrap_or("").to_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head)
}

/// `POST /ui/api/login` with `secret` from 127.0.0.`from`.
async fn sign_in(from: u8, to: SocketAddr, secret: &str) -> (u16, String) {
    let body = serde_json::json!({ "secret": secret }).to_string();
    exchange(
        from,
        to,
        format!(
            "POST /ui/api/login HTTP/1.1\r\nHost: {to}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
    .await
}

/// The web page's sign-in route under a flood (issue 20): wrong sign-ins from twenty loopback
/// addresses, as fast as fdmd answers them, and 200 idle connections that never send a byte,
/// do not stop a session signed in before, nor a register's order over HTTP. The flood is
/// bounded (600 attempts or 10 s); the bound on sign-ins turns the attempts away with 429.
#[test]
fn wrong_sign_ins_and_idle_connections_do_not_stop_a_session_or_an_order() {
    let d = Daemon::start_dev();
    let creds: Value =
        serde_json::from_slice(&std::fs::read(d.data_dir().join("dev-credentials.json")).unwrap())
            .unwrap();
    let token = creds["http_token"].as_str().unwrap().to_owned();
    let admin = d.admin_token();
    let http = d.http;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        // A session signed in before the flood.
        let (status, head) = sign_in(1, http, &admin).await;
        assert_eq!(status, 200, "{head}");
        let cookie = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .starts_with("set-cookie:")
                    .then(|| l["set-cookie:".len()..].trim().to_owned())
            })
            .and_then(|c| c.split(';').next().map(str::to_owned))
            .expect("no session cookie");
        let with_session = |from: u8| {
            let cookie = cookie.clone();
            async move {
                let started = Instant::now();
                let (status, head) = exchange(
                    from,
                    http,
                    format!(
                        "GET /v1/admin/registers HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\nCookie: {cookie}\r\n\r\n"
                    ),
                )
                .await;
                (status, head, started.elapsed())
            }
        };

        // 200 idle connections to the HTTP listener, from ten addresses.
        let idle = hold(200, &[60, 61, 62, 63, 64, 65, 66, 67, 68, 69], http, b"").await;
        // Wrong sign-ins from twenty addresses, one after the other as fast as answered.
        let attacker = tokio::spawn(async move {
            let started = Instant::now();
            let (mut refused, mut limited, mut other) = (0u32, 0u32, Vec::new());
            for i in 0..600u32 {
                if started.elapsed() > Duration::from_secs(10) {
                    break;
                }
                let from = 80 + u8::try_from(i % 20).unwrap();
                match sign_in(from, http, &format!("wrong-{i}")).await {
                    (401, _) => refused += 1,
                    (429, _) => limited += 1,
                    (_, head) => other.push(head),
                }
            }
            (refused, limited, other)
        });
        tokio::time::sleep(Duration::from_millis(300)).await;

        // During the flood: the session is served, and so is a register's order.
        let (status, head, took) = with_session(1).await;
        assert_eq!(status, 200, "the session was refused during the flood: {head}");
        assert!(took <= WITHIN, "the session's request took {took:?}");
        let (status, receipt, took) = http_order(http, &token, "signin-flood-1").await;
        assert_eq!(status, 201, "{receipt}");
        assert!(took <= WITHIN, "HTTP order took {took:?}");

        let (refused, limited, other) = attacker.await.unwrap();
        assert!(other.is_empty(), "a wrong sign-in got another answer: {other:?}");
        assert!(refused >= 5, "{refused} refused");
        assert!(limited > 0, "the bound on sign-ins never applied ({refused} refused)");
        // After it, the session still works: failed sign-ins end no session.
        let (status, head, _) = with_session(2).await;
        assert_eq!(status, 200, "{head}");
        drop(idle);
    });
}

/// The GKS 2.0 emulator's HTTPS listener (`[gks2_fdm]` with client certificates) under a flood:
/// 150 connections that never send a byte and 150 that stall inside the TLS handshake (half a
/// ClientHello), a third of each from the POS's own address, and an attacker opening new sockets
/// all along. A POS (fdmd with `backend = "gks2"` and its client certificate) still gets an
/// order signed by the FDM within 3 s: handshakes run under the pre-authentication admission,
/// so they take no connection slot of the POS systems.
#[test]
fn a_pos_is_signed_for_within_3_s_while_stalled_tls_handshakes_flood_the_gks2_emulator() {
    let dir = tempfile::tempdir().unwrap();
    let ca = test_ca::make(dir.path());
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, "flood-test-secret").unwrap();
    let (_fdm, fdm_addr) = gks2_support::emulator_with(
        "FDMEMU00031",
        &secret_file,
        &gks2_support::https_with_client_certificates(&ca),
    );
    let pos = gks2_support::pos_of(fdm_addr, &secret_file, &gks2_support::mtls(&ca, &ca));
    let (pos_http, token) = (pos.http, pos.dev_register_token());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        // Signed before the flood: the FDM and the POS work.
        let (status, receipt, _) = http_order(pos_http, &token, "tls-flood-0").await;
        assert_eq!(status, 201, "{receipt}");
        assert_eq!(
            receipt["gks2"]["fdmRef"]["fdmId"], "FDMEMU00031",
            "{receipt}"
        );

        let mut held = hold(50, &[1], fdm_addr, b"").await;
        held.extend(hold(100, &[2, 3, 4, 5, 6, 7, 8, 9, 10, 11], fdm_addr, b"").await);
        // A TLS record header announcing a 512-byte ClientHello, then its first bytes only.
        let half_hello: &[u8] = &[
            0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
        ];
        held.extend(hold(50, &[1], fdm_addr, half_hello).await);
        held.extend(
            hold(
                100,
                &[20, 21, 22, 23, 24, 25, 26, 27, 28, 29],
                fdm_addr,
                half_hello,
            )
            .await,
        );
        let attacker = tokio::spawn(async move {
            let mut recent = std::collections::VecDeque::new();
            for _ in 0..300u32 {
                recent.push_back(connect_from(50, fdm_addr).await);
                if recent.len() > 64 {
                    recent.pop_front();
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;

        for i in 1..=3 {
            let (status, receipt, took) =
                http_order(pos_http, &token, &format!("tls-flood-{i}")).await;
            assert_eq!(status, 201, "{receipt}");
            assert_eq!(
                receipt["gks2"]["fdmRef"]["fdmId"], "FDMEMU00031",
                "{receipt}"
            );
            assert!(took <= WITHIN, "order {i} signed by the FDM took {took:?}");
        }
        attacker.abort();
        drop(held);
    });
}
