//! The real `fdmd` binary over MQTT: eight enrolled registers publish at once; each order gets
//! exactly one receipt, numbering stays uninterrupted, a resend gets the first receipt back, and
//! every signature verifies with the key from `/v1/signer`.
#![allow(clippy::unwrap_used)]

mod support;

use fdmd::signer::verify_ed25519;
use hyper::{Method, StatusCode};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Duration;
use support::{Daemon, fdmctl, order};

const REGISTERS: usize = 8;
const ORDERS: usize = 25;

async fn register_session(addr: std::net::SocketAddr, creds: Value, prefix: &str) -> Vec<Value> {
    let id = creds["id"].as_str().unwrap().to_owned();
    let mut options = MqttOptions::new(format!("test-{id}"), addr.ip().to_string(), addr.port());
    options.set_credentials(
        creds["mqtt_username"].as_str().unwrap(),
        creds["mqtt_password"].as_str().unwrap(),
    );
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(options, 256);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Value>(256);
    let (sub_tx, mut sub_rx) = tokio::sync::mpsc::channel::<()>(1);
    let events = tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = tx.send(serde_json::from_slice(&p.payload).unwrap()).await;
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    let _ = sub_tx.try_send(());
                }
                Ok(_) => {}
                Err(e) => panic!("MQTT connection of {id} failed: {e}"),
            }
        }
    });
    let id = creds["id"].as_str().unwrap();
    client
        .subscribe(
            format!("{prefix}/registers/{id}/receipts"),
            QoS::AtLeastOnce,
        )
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), sub_rx.recv())
        .await
        .unwrap();
    let topic = format!("{prefix}/registers/{id}/orders");
    for i in 0..ORDERS {
        client
            .publish(
                &topic,
                QoS::AtLeastOnce,
                false,
                order(&format!("{id}-{i}"), &[("Soep", 1, "6.50", "B")]),
            )
            .await
            .unwrap();
    }
    // A resend of the first order.
    client
        .publish(
            &topic,
            QoS::AtLeastOnce,
            false,
            order(&format!("{id}-0"), &[("Soep", 1, "6.50", "B")]),
        )
        .await
        .unwrap();
    let mut receipts = Vec::new();
    while receipts.len() < ORDERS + 1 {
        let r = tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .expect("a receipt within 20 s")
            .unwrap();
        receipts.push(r);
    }
    // Exactly one answer per order: nothing more arrives.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), rx.recv())
            .await
            .is_err(),
        "an extra receipt arrived"
    );
    events.abort();
    receipts
}

#[test]
fn eight_registers_over_mqtt_against_the_real_daemon() {
    let mut d = Daemon::start_with_config("", &[]);
    let cfg = d.config_file.clone().unwrap();
    let creds: Vec<Value> = (1..=REGISTERS)
        .map(|i| {
            let (code, out) = fdmctl(&[
                "register",
                "add",
                &format!("till-{i}"),
                "--json",
                "--config",
                cfg.to_str().unwrap(),
            ]);
            assert_eq!(code, 0, "{out}");
            serde_json::from_str(&out[..out.rfind('}').unwrap() + 1]).unwrap()
        })
        .collect();
    let (status, signer) = d.request(Method::GET, "/v1/signer", None, None);
    assert_eq!(status, StatusCode::OK);
    let key = hex::decode(signer["public_key"].as_str().unwrap()).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mqtt = d.mqtt;
    let all: Vec<Vec<Value>> = rt.block_on(async {
        let sessions: Vec<_> = creds
            .into_iter()
            .map(|c| tokio::spawn(register_session(mqtt, c, "fdm/v1")))
            .collect();
        let mut out = Vec::new();
        for s in sessions {
            out.push(s.await.unwrap());
        }
        out
    });
    let mut totals = BTreeSet::new();
    for receipts in &all {
        let mut by_id = std::collections::HashMap::new();
        let mut tickets = BTreeSet::new();
        for r in receipts {
            assert_eq!(r["status"], "signed", "{r}");
            let digest = hex::decode(r["signed_digest"].as_str().unwrap()).unwrap();
            let sig = hex::decode(r["signature"].as_str().unwrap()).unwrap();
            assert!(verify_ed25519(&key, &digest, &sig), "{r}");
            let id = r["request_id"].as_str().unwrap().to_owned();
            if r["code"] == 102 {
                let first: &Value = by_id
                    .get(&id)
                    .expect("the resend is answered after the original");
                assert_eq!(first["signature"], r["signature"]);
                continue;
            }
            assert_eq!(r["code"], 0, "{r}");
            assert!(tickets.insert(r["ticket_number"].as_str().unwrap().parse::<u64>().unwrap()));
            assert!(totals.insert(r["total_counter"].as_u64().unwrap()));
            by_id.insert(id, r.clone());
        }
        assert_eq!(
            tickets,
            (1..=ORDERS as u64).collect(),
            "per-register series uninterrupted"
        );
    }
    assert_eq!(
        totals,
        (1..=(REGISTERS * ORDERS) as u64).collect(),
        "total counter uninterrupted"
    );
    assert!(d.stop().success());
    let (code, out) = fdmctl(&[
        "verify",
        "--data-dir",
        d.data_dir().to_str().unwrap(),
        "--key",
        &hex::encode(&key),
    ]);
    assert_eq!(code, 0, "{out}");
}
