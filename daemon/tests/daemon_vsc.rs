//! The real `fdmd` binary signing with a virtual VAT Signing Card through a real pcscd: PIN
//! needed, wrong PIN, blocked card, card pulled mid-load and put back, reader gone, slow card.
//! Orders and receipts go over MQTT; every scenario checks the receipts, the retained status
//! topic, and that the journal verifies with the card's public key. See `vsc_common` for the lab
//! (pcscd in a private mount namespace, vpcd, `tests/vsc/vsc_card.py`).
#![allow(clippy::unwrap_used)]

mod support;
mod vsc_common;

use fdmd::signer::verify_ed25519;
use hyper::{Method, StatusCode};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use support::{Daemon, fdmctl, fdmctl_bin, order};
use tokio::sync::mpsc;
use vsc_common::{CARD_ID, Lab, PIN};

const SOON: Duration = Duration::from_secs(20);
const STATUS: &str = "fdm/v1/status";

/// One register's MQTT session, with the status topic.
struct Till {
    id: String,
    client: AsyncClient,
    rx: mpsc::UnboundedReceiver<(String, Value)>,
    task: tokio::task::JoinHandle<()>,
    sent: usize,
}

impl Till {
    async fn connect(d: &Daemon, creds: &Value) -> Till {
        let id = creds["id"].as_str().unwrap().to_owned();
        let mut options =
            MqttOptions::new(format!("vsc-{id}"), d.mqtt.ip().to_string(), d.mqtt.port());
        options.set_credentials(
            creds["mqtt_username"].as_str().unwrap(),
            creds["mqtt_password"].as_str().unwrap(),
        );
        options.set_keep_alive(Duration::from_secs(30));
        let (client, mut eventloop) = AsyncClient::new(options, 256);
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let v = serde_json::from_slice(&p.payload).unwrap_or(Value::Null);
                        let _ = tx.send((p.topic.clone(), v));
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = tx.send(("suback".into(), Value::Null));
                    }
                    Ok(_) => {}
                    Err(e) => panic!("MQTT connection failed: {e}"),
                }
            }
        });
        let mut till = Till {
            id: id.clone(),
            client,
            rx,
            task,
            sent: 0,
        };
        for topic in [format!("fdm/v1/registers/{id}/receipts"), STATUS.into()] {
            till.client
                .subscribe(topic, QoS::AtLeastOnce)
                .await
                .unwrap();
            till.next("suback").await;
        }
        till
    }

    /// The next message on `topic` (others are skipped), within [`SOON`].
    async fn next(&mut self, topic: &str) -> Value {
        let deadline = tokio::time::Instant::now() + SOON;
        loop {
            let (t, v) = tokio::time::timeout_at(deadline, self.rx.recv())
                .await
                .unwrap_or_else(|_| panic!("nothing on {topic} within {SOON:?}"))
                .unwrap();
            if t == topic {
                return v;
            }
        }
    }

    /// Waits (within [`SOON`]) until the status topic shows the signer in `state`.
    async fn status_until(&mut self, state: &str) -> Value {
        let deadline = tokio::time::Instant::now() + SOON;
        let mut last = Value::Null;
        loop {
            let got = tokio::time::timeout_at(deadline, self.next(STATUS)).await;
            let Ok(doc) = got else {
                panic!("the status topic did not show {state} within {SOON:?}; last: {last}");
            };
            if doc["signer"]["state"]["state"] == state {
                return doc;
            }
            last = doc;
        }
    }

    async fn send(&mut self) -> String {
        self.sent += 1;
        let request_id = format!("{}-{}", self.id, self.sent);
        self.client
            .publish(
                format!("fdm/v1/registers/{}/orders", self.id),
                QoS::AtLeastOnce,
                false,
                order(&request_id, &[("Soep", 1, "6.50", "B")]),
            )
            .await
            .unwrap();
        request_id
    }

    async fn receipt(&mut self) -> Value {
        let topic = format!("fdm/v1/registers/{}/receipts", self.id);
        self.next(&topic).await
    }

    async fn order(&mut self) -> Value {
        let request_id = self.send().await;
        let r = self.receipt().await;
        assert_eq!(r["request_id"], request_id.as_str(), "{r}");
        r
    }
}

impl Drop for Till {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn enrol(d: &Daemon, id: &str) -> Value {
    let cfg = d.config_file.clone().unwrap();
    let (code, out) = fdmctl(&[
        "register",
        "add",
        id,
        "--json",
        "--config",
        cfg.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}");
    serde_json::from_str(&out[..out.rfind('}').unwrap() + 1]).unwrap()
}

/// `fdmctl vsc pin` with the PIN on standard input; returns (exit code, output).
fn fdmctl_pin(d: &Daemon, pin: &str) -> (i32, String) {
    let cfg = d.config_file.clone().unwrap();
    let mut child = Command::new(fdmctl_bin())
        .args(["vsc", "pin", "--config", cfg.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{pin}").unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// `POST /v1/admin/signer/pin`, on a thread of its own (callable from async code).
fn admin_pin(d: &Daemon, pin: &str) -> (StatusCode, Value) {
    let token = d.admin_token();
    std::thread::scope(|s| {
        s.spawn(|| {
            d.request(
                Method::POST,
                "/v1/admin/signer/pin",
                Some(&token),
                Some(serde_json::to_vec(&json!({ "pin": pin })).unwrap()),
            )
        })
        .join()
        .unwrap()
    })
}

/// Polls `GET /v1/status` (bounded) until the signer is in `state`.
fn http_state_until(d: &Daemon, state: &str) -> Value {
    let deadline = std::time::Instant::now() + SOON;
    loop {
        let (_, doc) = d.request(Method::GET, "/v1/status", Some(&d.admin_token()), None);
        if doc["signer"]["state"]["state"] == state {
            return doc;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "signer not {state}: {doc}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits for the card, gives it its PIN and enrols a register (enrolment is journaled, so it
/// needs a signer that signs).
fn unlock_and_enrol(d: &Daemon, ids: &[&str]) -> Vec<Value> {
    http_state_until(d, "pin_required");
    let (status, body) = admin_pin(d, PIN);
    assert_eq!(status, StatusCode::OK, "{body}");
    ids.iter().map(|id| enrol(d, id)).collect()
}

fn vsc_status(d: &Daemon) -> (i32, String) {
    let cfg = d.config_file.clone().unwrap();
    fdmctl(&["vsc", "status", "--config", cfg.to_str().unwrap()])
}

/// A signed receipt whose signature verifies with the card's key and names the card.
fn assert_signed_by_card(r: &Value, key: &[u8]) -> u64 {
    assert_eq!(r["status"], "signed", "{r}");
    assert_eq!(r["vsc_id"], CARD_ID, "{r}");
    let digest = hex::decode(r["signed_digest"].as_str().unwrap()).unwrap();
    let sig = hex::decode(r["signature"].as_str().unwrap()).unwrap();
    assert!(verify_ed25519(key, &digest, &sig), "{r}");
    r["total_counter"].as_u64().unwrap()
}

fn assert_journal_verifies(d: &mut Daemon, key: &[u8]) {
    assert!(d.stop().success());
    let (code, out) = fdmctl(&[
        "verify",
        "--data-dir",
        d.data_dir().to_str().unwrap(),
        "--key",
        &hex::encode(key),
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(CARD_ID), "{out}");
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn pin_then_signing_then_card_pulled_mid_load_and_put_back() {
    // 30 ms per signature, so that the load is still running when the card is pulled.
    let Some(mut lab) = Lab::start(30) else {
        return;
    };
    let key = lab.public_key();
    let mut d = Daemon::start_with_config(&lab.config(), &lab.env());
    let doc = http_state_until(&d, "pin_required");
    assert_eq!(doc["signer"]["state"]["tries_left"], 3, "{doc}");
    assert_eq!(doc["signer"]["card_id"], CARD_ID, "{doc}");
    assert_eq!(doc["status"], "degraded");
    let (code, out) = vsc_status(&d);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("pin_required") && out.contains("fdmctl vsc pin"),
        "{out}"
    );
    // Enrolment is journaled: it waits for a signer that signs.
    let cfg = d.config_file.clone().unwrap();
    let (code, out) = fdmctl(&[
        "register",
        "add",
        "till-1",
        "--config",
        cfg.to_str().unwrap(),
    ]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("PIN"), "{out}");
    // A wrong PIN: 204 with the tries left; then the right one.
    let (code, out) = fdmctl_pin(&d, "11111");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("204") && out.contains("2 tries left"), "{out}");
    assert_eq!(
        http_state_until(&d, "pin_required")["signer"]["state"]["tries_left"],
        2
    );
    let (code, out) = fdmctl_pin(&d, PIN);
    assert_eq!(code, 0, "{out}");
    let creds = enrol(&d, "till-1");
    let rt = runtime();
    rt.block_on(async {
        let mut till = Till::connect(&d, &creds).await;
        let doc = till.status_until("ready").await;
        assert_eq!(doc["signer"]["vsc_id"], CARD_ID, "{doc}");
        assert_eq!(doc["status"], "ready", "{doc}");
        let (code, out) = vsc_status(&d);
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("ready") && out.contains(CARD_ID), "{out}");

        let mut last = 0;
        for _ in 0..3 {
            let total = assert_signed_by_card(&till.order().await, &key);
            assert_eq!(total, last + 1);
            last = total;
        }

        // Mid-load: 40 orders in flight, the card pulled after the 5th receipt.
        let mut ids = Vec::new();
        for _ in 0..40 {
            ids.push(till.send().await);
        }
        let mut outcome = BTreeMap::new();
        for i in 0..40 {
            if i == 5 {
                lab.pull_card();
            }
            let r = till.receipt().await;
            let id = r["request_id"].as_str().unwrap().to_owned();
            match r["status"].as_str() {
                Some("signed") => {
                    let total = assert_signed_by_card(&r, &key);
                    assert_eq!(total, last + 1, "no gap in the total counter: {r}");
                    last = total;
                    outcome.insert(id, "signed");
                }
                _ => {
                    assert_eq!(r["code"], 201, "{r}");
                    assert!(
                        r.get("signature").is_none(),
                        "an error carries no signature: {r}"
                    );
                    outcome.insert(id, "201");
                }
            }
        }
        assert_eq!(outcome.len(), 40, "one receipt per order");
        assert!(outcome.values().any(|o| *o == "201"), "the pull was seen");
        assert!(outcome.values().filter(|o| **o == "signed").count() >= 5);
        till.status_until("absent").await;
        let (code, out) = vsc_status(&d);
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("absent"), "{out}");
        let r = till.order().await;
        assert_eq!(r["code"], 201, "{r}");

        // Put back: the PIN is needed again (202), given through the admin route this time.
        // vpcd (the virtual reader) sometimes never accepts a card again after one was pulled in
        // the middle of an exchange (pcscd then sees no insertion at all), so the reader is
        // restarted with the card, as `reader_gone_and_back_without_a_restart` does: fdmd itself
        // is not restarted either way.
        lab.stop_pcscd();
        lab.start_pcscd();
        lab.insert_card(0);
        till.status_until("pin_required").await;
        let r = till.order().await;
        assert_eq!(
            (r["status"].as_str(), r["code"].as_u64()),
            (Some("error"), Some(202)),
            "{r}"
        );
        let (status, body) = admin_pin(&d, PIN);
        assert_eq!(status, StatusCode::OK, "{body}");
        till.status_until("ready").await;
        let total = assert_signed_by_card(&till.order().await, &key);
        assert_eq!(total, last + 1, "the counters continue where they stopped");
    });
    assert_journal_verifies(&mut d, &key);
}

#[test]
fn three_wrong_pins_block_the_card() {
    let Some(mut lab) = Lab::start(0) else {
        return;
    };
    let key = lab.public_key();
    let mut d = Daemon::start_with_config(&lab.config(), &lab.env());
    let creds = unlock_and_enrol(&d, &["till-1"]).remove(0);
    let rt = runtime();
    rt.block_on(async {
        let mut till = Till::connect(&d, &creds).await;
        till.status_until("ready").await;
        assert_eq!(assert_signed_by_card(&till.order().await, &key), 1);
        // The card is pulled and put back: it needs its PIN, and gets three wrong ones.
        lab.pull_card();
        till.status_until("absent").await;
        lab.insert_card(0);
        till.status_until("pin_required").await;
        let (status, body) = admin_pin(&d, "12");
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let (status, body) = admin_pin(&d, "99999");
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(
            (body["code"].as_u64(), body["tries_left"].as_u64()),
            (Some(204), Some(2)),
            "{body}"
        );
        let (code, out) = fdmctl_pin(&d, "99999");
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("1 tries left"), "{out}");
        let (status, body) = admin_pin(&d, "99999");
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(
            body["code"], 203,
            "the third wrong PIN blocks the card: {body}"
        );
        let doc = till.status_until("blocked").await;
        assert!(
            doc["problems"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["code"] == "signing_card_blocked"
                    && p["message"].as_str().unwrap().contains("203")),
            "{doc}"
        );
        // Blocked stays blocked, even for the right PIN.
        let (status, body) = admin_pin(&d, PIN);
        assert_eq!(
            (status, body["code"].as_u64()),
            (StatusCode::FORBIDDEN, Some(203)),
            "{body}"
        );
        let r = till.order().await;
        assert_eq!(
            (r["status"].as_str(), r["code"].as_u64()),
            (Some("error"), Some(203)),
            "{r}"
        );
        let (code, out) = vsc_status(&d);
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("blocked"), "{out}");
    });
    assert_journal_verifies(&mut d, &key);
}

#[test]
fn reader_gone_and_back_without_a_restart() {
    let Some(mut lab) = Lab::start(0) else {
        return;
    };
    let key = lab.public_key();
    let mut d = Daemon::start_with_config(&lab.config(), &lab.env());
    let creds = unlock_and_enrol(&d, &["till-1"]).remove(0);
    let rt = runtime();
    rt.block_on(async {
        let mut till = Till::connect(&d, &creds).await;
        till.status_until("ready").await;
        assert_eq!(assert_signed_by_card(&till.order().await, &key), 1);

        // pcscd goes away, and the reader with it.
        lab.stop_pcscd();
        let doc = till.status_until("absent").await;
        assert!(
            doc["problems"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["code"] == "no_signing_card"
                    && p["message"].as_str().unwrap().contains("201")),
            "{doc}"
        );
        let r = till.order().await;
        assert_eq!(
            (r["status"].as_str(), r["code"].as_u64()),
            (Some("error"), Some(201)),
            "{r}"
        );
        let (code, out) = vsc_status(&d);
        assert_eq!(code, 1, "{out}");

        // Back: reader and card; the PIN; signing resumes, counters continue.
        lab.start_pcscd();
        lab.insert_card(0);
        till.status_until("pin_required").await;
        let (code, out) = fdmctl_pin(&d, PIN);
        assert_eq!(code, 0, "{out}");
        till.status_until("ready").await;
        assert_eq!(assert_signed_by_card(&till.order().await, &key), 2);
    });
    assert_journal_verifies(&mut d, &key);
}

#[test]
fn a_slow_card_serves_registers_fairly_and_status_keeps_answering() {
    // 150 ms per signature, like a real card.
    let Some(lab) = Lab::start(150) else {
        return;
    };
    let key = lab.public_key();
    let mut d = Daemon::start_with_config(&lab.config(), &lab.env());
    let tills = unlock_and_enrol(&d, &["till-1", "till-2", "till-3"]);
    let rt = runtime();
    const EACH: usize = 4;
    rt.block_on(async {
        let mut sessions = Vec::new();
        for c in &tills {
            sessions.push(Till::connect(&d, c).await);
        }
        sessions[0].status_until("ready").await;
        let (tx, mut done) = mpsc::unbounded_channel::<String>();
        let answered = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for mut till in sessions {
            let (tx, key, answered) = (tx.clone(), key.clone(), answered.clone());
            tasks.push(tokio::spawn(async move {
                let mut totals = Vec::new();
                for _ in 0..EACH {
                    let r = till.order().await;
                    totals.push(assert_signed_by_card(&r, &key));
                    answered.fetch_add(1, Ordering::SeqCst);
                    let _ = tx.send(till.id.clone());
                }
                totals
            }));
        }
        drop(tx);
        let mut finished: BTreeMap<String, usize> = BTreeMap::new();
        let mut order_of_receipts = Vec::new();
        let mut status_checked = false;
        while let Some(id) = done.recv().await {
            *finished.entry(id.clone()).or_default() += 1;
            order_of_receipts.push(id);
            // Fairness: no register gets more than two receipts ahead of another.
            let counts: Vec<usize> = (1..=3)
                .map(|i| finished.get(&format!("till-{i}")).copied().unwrap_or(0))
                .collect();
            let (lo, hi) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
            assert!(hi - lo <= 2, "unfair: {order_of_receipts:?}");
            if !status_checked {
                // The card has at least ten more signatures (1.5 s) to make: status and HTTP
                // answer meanwhile, without waiting for it.
                status_checked = true;
                let http = d.http;
                let admin = d.admin_token();
                let (code, doc) = tokio::task::spawn_blocking(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    rt.block_on(fdmd::client::request(
                        http,
                        Method::GET,
                        "/v1/status",
                        Some(&admin),
                        None,
                        SOON,
                    ))
                })
                .await
                .unwrap()
                .unwrap();
                assert_eq!(code, StatusCode::OK);
                assert!(
                    answered.load(Ordering::SeqCst) < 3 * EACH,
                    "the status request was answered while orders still waited for the card"
                );
                let doc: Value = serde_json::from_slice(&doc).unwrap();
                assert_eq!(doc["signer"]["state"]["state"], "ready", "{doc}");
            }
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all.sort_unstable();
        assert_eq!(all, (1..=(3 * EACH) as u64).collect::<Vec<_>>());
    });
    assert_journal_verifies(&mut d, &key);
}
