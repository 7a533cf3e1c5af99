//! X and Z reports over MQTT: a register asks on `…/report-requests` and gets the signed report
//! (or the refusal listing the open tables) on `…/reports`, in order with its own orders.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod mqtt_common;

use fdmd::access::ClientKind;
use fdmd::signer::verify_ed25519;
use mqtt_common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_register_asks_for_x_and_z_reports_over_mqtt() {
    let mut f = Fdmd::start(|_| {}).await;
    let c = f.enrol(ClientKind::Register, "till-1");
    let mut till = TestClient::connect(
        f.addr(),
        "pos-till-1",
        Some((&c.mqtt_username, &c.mqtt_password)),
    )
    .await;
    till.subscribe(&format!("{P}/registers/till-1/receipts"))
        .await;
    till.subscribe(&format!("{P}/registers/till-1/reports"))
        .await;
    let orders = format!("{P}/registers/till-1/orders");
    let requests = format!("{P}/registers/till-1/report-requests");
    let ps = json!({"request_id": "p-1", "operator": "85073003328", "event_type": "pro_forma", "table": "5",
                    "lines": [{"description": "Soep", "quantity": 2, "unit_price": "6.50", "vat": "B"}]});
    till.publish(&orders, serde_json::to_vec(&ps).unwrap())
        .await;
    // Sent right after the order: answered after it (same register, same worker).
    till.publish(&requests, br#"{"kind":"z","request_id":"z-1"}"#.to_vec())
        .await;
    let mut got = Vec::new();
    for _ in 0..2 {
        got.push(till.next_message().await);
    }
    assert_eq!(got[0].topic, format!("{P}/registers/till-1/receipts"));
    let refused = got[1].json();
    assert_eq!(got[1].topic, format!("{P}/registers/till-1/reports"));
    assert_eq!(refused["code"], 207, "{refused}");
    assert_eq!(refused["request_id"], "z-1");
    assert_eq!(refused["open_tables"][0]["table"], "5");
    let ns = json!({"request_id": "n-1", "operator": "85073003328", "event_type": "normal", "table": "5",
                    "lines": [], "payments": [{"method": "cash", "amount": "13.00"}]});
    till.publish(&orders, serde_json::to_vec(&ns).unwrap())
        .await;
    till.publish(&requests, br#"{"kind":"x","request_id":"x-1"}"#.to_vec())
        .await;
    till.publish(&requests, br#"{"kind":"z","request_id":"z-2"}"#.to_vec())
        .await;
    let _receipt = till.next_message().await;
    let x = till.next_message().await.json();
    let z = till.next_message().await.json();
    assert_eq!(
        (x["report"].as_str(), x["totals"]["net"].as_str()),
        (Some("X"), Some("13.00"))
    );
    assert_eq!(z["report"], "Z");
    assert_eq!(z["report_number"], "000001");
    assert_eq!(z["request_id"], "z-2");
    assert_eq!(z["totals"]["labels"]["PS"]["count"], 1);
    let digest = hex::decode(z["signed_digest"].as_str().unwrap()).unwrap();
    let sig = hex::decode(z["signature"].as_str().unwrap()).unwrap();
    assert!(verify_ed25519(&f.public_key(), &digest, &sig));
    // Garbage gets a 207 with the field, still on the reports topic.
    till.publish(&requests, br#"{"kind":"q"}"#.to_vec()).await;
    let bad = till.next_message().await.json();
    assert_eq!(
        (bad["code"].as_u64(), bad["field"].as_str()),
        (Some(207), Some("kind"))
    );
    f.stop().await;
}
