//! Table service over MQTT against the real binary, with fake network ESC/POS printers (TCP
//! listeners in the test): the kitchen round reaches the station topic and the kitchen printer
//! after the pro forma is durable, the final ticket reaches the receipts printer, the receipt
//! carries the rendered text, an unreachable printer is reported and never blocks registration.
#![allow(clippy::unwrap_used)]

mod support;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use std::io::Read;
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;
use support::{Daemon, fdmctl};

const ANNA: &str = "85073003328";

/// A fake ESC/POS printer: every connection's bytes, until the peer closes, is one job.
fn fake_printer() -> (std::net::SocketAddr, mpsc::Receiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(20) {
            let Ok(mut s) = stream else { return };
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut job = Vec::new();
            let _ = s.read_to_end(&mut job);
            if tx.send(job).is_err() {
                return;
            }
        }
    });
    (addr, rx)
}

fn enrol(cfg: &str, what: &str, id: &str) -> Value {
    let (code, out) = fdmctl(&[what, "add", id, "--json", "--config", cfg]);
    assert_eq!(code, 0, "{out}");
    serde_json::from_str(&out[..out.rfind('}').unwrap() + 1]).unwrap()
}

struct Session {
    client: AsyncClient,
    rx: tokio::sync::mpsc::Receiver<Value>,
}

async fn connect(addr: std::net::SocketAddr, creds: &Value, topic: String) -> Session {
    let id = creds["id"].as_str().unwrap();
    let mut options = MqttOptions::new(format!("test-{id}"), addr.ip().to_string(), addr.port());
    options.set_credentials(
        creds["mqtt_username"].as_str().unwrap(),
        creds["mqtt_password"].as_str().unwrap(),
    );
    let (client, mut eventloop) = AsyncClient::new(options, 64);
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let (sub_tx, mut sub_rx) = tokio::sync::mpsc::channel::<()>(1);
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = tx.send(serde_json::from_slice(&p.payload).unwrap()).await;
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    let _ = sub_tx.try_send(());
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    client.subscribe(topic, QoS::AtLeastOnce).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), sub_rx.recv())
        .await
        .unwrap();
    Session { client, rx }
}

impl Session {
    async fn order(&mut self, order: Value) -> Value {
        self.client
            .publish(
                "fdm/v1/registers/till-1/orders",
                QoS::AtLeastOnce,
                false,
                serde_json::to_vec(&order).unwrap(),
            )
            .await
            .unwrap();
        self.next().await
    }

    async fn next(&mut self) -> Value {
        tokio::time::timeout(Duration::from_secs(20), self.rx.recv())
            .await
            .expect("an answer within 20 s")
            .unwrap()
    }
}

fn job(rx: &mpsc::Receiver<Vec<u8>>) -> Vec<u8> {
    rx.recv_timeout(Duration::from_secs(20))
        .expect("a print job within 20 s")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn table_service_over_mqtt_prints_on_network_printers() {
    let (kitchen, kitchen_jobs) = fake_printer();
    let (receipts, receipt_jobs) = fake_printer();
    // Nothing listens on the bar's address: its jobs fail and are reported.
    let dead = support::free_port();
    let extra = format!(
        "[establishment]\nname = \"Chez Nous\"\naddress = \"Rue Haute 1, 1000 Bruxelles\"\nvat_number = \"BE0123456749\"\n\
         [restaurant]\nrequire_work_in = true\nlanguage = \"fr\"\nprint_attempts = 2\nprint_timeout_ms = 500\n\
         [restaurant.operator_names]\n\"{ANNA}\" = \"Anna\"\n\
         [[restaurant.printers]]\nstation = \"kitchen\"\naddress = \"{kitchen}\"\n\
         [[restaurant.printers]]\nstation = \"receipts\"\naddress = \"{receipts}\"\n\
         [[restaurant.printers]]\nstation = \"bar\"\naddress = \"127.0.0.1:{dead}\"\n"
    );
    let d = Daemon::start_with_config(&extra, &[]);
    let cfg = d.config_file.clone().unwrap();
    let cfg = cfg.to_str().unwrap();
    let till = enrol(cfg, "register", "till-1");
    let station = enrol(cfg, "station", "kitchen");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mqtt = d.mqtt;
    rt.block_on(async {
        let mut reg = connect(mqtt, &till, "fdm/v1/registers/till-1/receipts".into()).await;
        let mut kit = connect(mqtt, &station, "fdm/v1/stations/kitchen/tickets".into()).await;
        let w = reg
            .order(json!({"request_id": "in", "operator": ANNA, "event_type": "normal", "purpose": "work_in"}))
            .await;
        assert_eq!(w["label"], "NS", "{w}");
        // The round: PS first, then the kitchen gets its lines (topic and printer).
        let ps = reg
            .order(json!({"request_id": "r1", "operator": ANNA, "event_type": "pro_forma", "table": "4",
                "lines": [{"description": "Steak frites", "quantity": 2, "unit_price": "24.00", "vat": "B", "station": "kitchen", "category": "meal"},
                          {"description": "Cola", "quantity": 2, "unit_price": "2.80", "vat": "A", "station": "bar", "category": "drink"}]}))
            .await;
        assert_eq!((ps["label"].as_str(), ps["code"].as_u64()), (Some("PS"), Some(0)), "{ps}");
        assert!(ps["text"].as_str().unwrap().contains("CECI N'EST PAS UN TICKET DE CAISSE TVA"));
        let st = kit.next().await;
        assert_eq!(st["label"], "PS");
        assert_eq!(st["table"], "4");
        assert_eq!(st["lines"], json!([{"description": "Steak frites", "quantity": 2}]));
        assert!(st["text"].as_str().unwrap().contains("2 x Steak frites"), "{st}");
        let printed = job(&kitchen_jobs);
        assert_eq!(&printed[..2], &[0x1b, b'@']);
        assert!(contains(&printed, b"2 x Steak frites"));
        assert!(contains(&printed, b"BON DE COMMANDE"));
        assert!(!contains(&printed, b"Cola"), "bar lines go to the bar");
        // A correction round: one steak less.
        let pr = reg
            .order(json!({"request_id": "r2", "operator": ANNA, "event_type": "pro_forma", "table": "4",
                "lines": [{"description": "Steak frites", "quantity": -1, "unit_price": "24.00", "vat": "B", "station": "kitchen", "category": "meal"}]}))
            .await;
        assert_eq!(pr["label"], "PR");
        assert!(contains(&job(&kitchen_jobs), b"-1 x Steak frites"));
        // The bar printer is down: registration goes on; the failure is reported.
        let fin = reg
            .order(json!({"request_id": "pay", "operator": ANNA, "event_type": "normal", "table": "4",
                "payments": [{"method": "cash", "amount": "29.60"}]}))
            .await;
        assert_eq!((fin["label"].as_str(), fin["total"].as_str()), (Some("NS"), Some("29.60")), "{fin}");
        let text = fin["text"].as_str().unwrap();
        for needle in ["TICKET DE CAISSE TVA", "Chez Nous", "TVA BE0123456749", "Anna", "-1 x Steak frites (correction)", "<- PS 000001", "<- PR 000002", "NS 000002", "NS 2/4"] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
        let paper = job(&receipt_jobs);
        assert!(contains(&paper, b"TICKET DE CAISSE TVA"));
        assert!(contains(&paper, fin["short_signature"].as_str().unwrap().as_bytes()));
    });
    // The failed bar jobs show in the status document; the journal verifies.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, status) = d.request(
            hyper::Method::GET,
            "/v1/status",
            Some(&d.admin_token()),
            None,
        );
        let bar = status["printers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["station"] == "bar")
            .cloned()
            .unwrap();
        if bar["failed"].as_u64() == Some(1) {
            assert!(
                bar["last_error"]
                    .as_str()
                    .unwrap()
                    .contains("attempt 2 of 2"),
                "{bar}"
            );
            let kitchen = status["printers"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["station"] == "kitchen")
                .unwrap();
            assert_eq!(kitchen["printed"], 2);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "bar failure not reported: {bar}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, out) = fdmctl(&["verify", "--data-dir", d.data_dir().to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
}

/// An RFC 3339 time `s` seconds from now.
fn in_seconds(s: i64) -> String {
    (chrono::Local::now() + chrono::Duration::seconds(s))
        .fixed_offset()
        .to_rfc3339()
}

#[test]
fn catering_correction_over_mqtt_is_the_first_operation_after_the_event() {
    // Source 003, drink tickets: an estimate of 5000 tickets at 2.00; after the event only 4500
    // were used, so the correction gives back 500 of the estimate's line.
    let d = Daemon::start_with_config(
        "[restaurant]\nrequire_work_in = true\nlanguage = \"nl\"\n",
        &[],
    );
    let cfg = d.config_file.clone().unwrap();
    let till = enrol(cfg.to_str().unwrap(), "register", "till-1");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let end = in_seconds(6);
    rt.block_on(async {
        let mut reg = connect(d.mqtt, &till, "fdm/v1/registers/till-1/receipts".into()).await;
        let w = reg
            .order(json!({"request_id": "in", "operator": ANNA, "event_type": "normal", "purpose": "work_in"}))
            .await;
        assert_eq!(w["label"], "NS", "{w}");
        let est = reg
            .order(json!({"request_id": "fest-est", "operator": ANNA, "event_type": "normal",
                "catering_event": "fest-1", "catering_end": end,
                "lines": [{"description": "Drankbonnen", "quantity": 5000, "unit_price": "2.00", "vat": "A"}],
                "payments": [{"method": "transfer", "amount": "10000.00"}]}))
            .await;
        assert_eq!(
            (est["label"].as_str(), est["total"].as_str(), est["catering_role"].as_str()),
            (Some("NS"), Some("10000.00"), Some("estimate")),
            "{est}"
        );
        let end_at = chrono::DateTime::parse_from_rfc3339(&end).unwrap();
        for _ in 0..200 {
            if chrono::Local::now().fixed_offset() > end_at + chrono::Duration::milliseconds(100) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let cola = json!({"request_id": "s-1", "operator": ANNA, "event_type": "normal",
            "lines": [{"description": "Cola", "quantity": 1, "unit_price": "2.50", "vat": "A"}],
            "payments": [{"method": "card", "amount": "2.50"}]});
        let refused = reg.order(cola.clone()).await;
        assert_eq!(
            (refused["code"].as_u64(), refused["field"].as_str()),
            (Some(207), Some("catering_event")),
            "{refused}"
        );
        assert!(refused["message"].as_str().unwrap().contains("fest-1"), "{refused}");
        let corr = reg
            .order(json!({"request_id": "fest-corr", "operator": ANNA, "event_type": "normal",
                "catering_event": "fest-1", "original": {"request_id": "fest-est"},
                "lines": [{"description": "Drankbonnen", "quantity": -500, "unit_price": "2.00", "vat": "A", "original_line": 0}],
                "payments": [{"method": "transfer", "amount": "-1000.00"}]}))
            .await;
        assert_eq!(
            (corr["label"].as_str(), corr["total"].as_str(), corr["catering_role"].as_str()),
            (Some("NR"), Some("-1000.00"), Some("correction")),
            "{corr}"
        );
        assert_eq!(corr["refund_of"]["request_id"], "fest-est");
        assert_eq!((corr["ticket_number"].as_str(), corr["event_counter"].as_u64()), (Some("000003"), Some(1)));
        let text = corr["text"].as_str().unwrap();
        for needle in ["BTW-KASTICKET", "TERUGBETALING", "fest-1 (correctie)"] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
        // Settled: the restaurant goes on.
        let ok = reg.order(cola).await;
        assert_eq!((ok["label"].as_str(), ok["code"].as_u64()), (Some("NS"), Some(0)), "{ok}");
    });
    // Both tickets, reprinted for the client.
    let token = d.admin_token();
    let (status, ev) = d.request(
        hyper::Method::GET,
        "/v1/catering/fest-1",
        Some(&token),
        None,
    );
    assert_eq!(status, hyper::StatusCode::OK, "{ev}");
    assert_eq!(ev["status"], "settled");
    let tickets = ev["tickets"].as_array().unwrap();
    let totals: Vec<&str> = tickets
        .iter()
        .map(|t| t["total"].as_str().unwrap())
        .collect();
    assert_eq!(totals, ["10000.00", "-1000.00"]);
    assert!(
        tickets[1]["text"]
            .as_str()
            .unwrap()
            .contains("TERUGBETALING")
    );
    let (code, out) = fdmctl(&["verify", "--data-dir", d.data_dir().to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
}
