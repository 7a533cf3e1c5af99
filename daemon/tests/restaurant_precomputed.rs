//! Pre-computed events (FDM v1 `H`: no lines, no table) and the restaurant rules, through the
//! daemon's own entry point (`App::handle_precomputed`, what the fdm-v1 plugin calls): the
//! operator must have clocked in (a clocking sent as an H event counts), a catering event waiting
//! for its settlement holds H events off, table rules do not apply, and the state is folded from
//! the journal again.
#![allow(clippy::unwrap_used)]

use fdmd::app::App;
use fdmd::assembly::AppBuilder;
use fdmd::config::Config;
use fdmd::fiscal::{Label, PrecomputedEvent};
use fdmd::restaurant::Restaurant;
use fdmd::service::Receipt;
use fdmd::signer::SoftwareSigner;
use serde_json::{Value, json};
use sha1::{Digest, Sha1};
use std::sync::Arc;
use std::time::Duration;

const ANNA: &str = "85073003328";

fn app(dir: &std::path::Path) -> Arc<App> {
    let mut config = Config::default();
    config.fdm.data_dir = dir.to_path_buf();
    config.daemon.dev = true;
    config.restaurant.require_work_in = true;
    AppBuilder::new(config)
        .signer(Arc::new(SoftwareSigner::from_seed([5; 32])))
        .build()
        .unwrap()
}

/// The PLU hash a FDM v1 POS sends for a ticket of one line (reference §3), computed here by
/// hand: quantity 0001, the description as 20 characters, 0 cents, VAT D.
fn plu_of_one_line(description: &str) -> String {
    let record = format!("0001{description:<20}00000000D");
    hex::encode(Sha1::digest(record.as_bytes()))
}

fn h(id: &str, label: &str, total: &str, plu: &str) -> PrecomputedEvent {
    PrecomputedEvent {
        request_id: id.into(),
        register: "ecr-1".into(),
        pos_date: "20261122".into(),
        pos_time: "201500".into(),
        operator: ANNA.into(),
        ecr_id: "BODO0010000001".into(),
        ticket_number: "  17".into(),
        label: Label::parse(label).unwrap(),
        total: total.parse().unwrap(),
        rate_amounts: vec![],
        plu_hash: plu.into(),
    }
}

fn signed(r: Receipt) -> Value {
    match r {
        Receipt::Signed(v) => v,
        other => panic!("refused: {}", other.to_json()),
    }
}

fn refused(r: Receipt, field: &str) -> String {
    let v = r.to_json();
    assert_eq!(
        (v["code"].as_u64(), v["field"].as_str()),
        (Some(207), Some(field)),
        "{v}"
    );
    v["message"].as_str().unwrap().to_owned()
}

#[test]
fn h_events_follow_the_clock_in_and_catering_rules() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let sale_plu = "0123456789abcdef0123456789abcdef01234567";
    let work_in = plu_of_one_line("WORKIN");
    let work_out = plu_of_one_line("WORKOUT");
    rt.block_on(async {
        let app = app(dir.path());
        // A sale before the operator clocked in is refused; training is not a sale.
        let m = refused(
            app.handle_precomputed(&h("h-1", "NS", "14.10", sale_plu)).await,
            "operator",
        );
        assert!(m.contains("has not clocked in"), "{m}");
        signed(app.handle_precomputed(&h("h-2", "TS", "14.10", sale_plu)).await);
        // The POS clocks in with an H event: a 0.00 NS hashing the single line WORK IN (Odoo 19
        // sends only the last 8 characters of the PLU hash).
        let w = signed(
            app.handle_precomputed(&h("h-3", "NS", "0.00", &work_in[32..]))
                .await,
        );
        assert_eq!(w["label"], "NS");
        assert_eq!(app.status_document()["clocked_in"][0]["operator"], ANNA);
        refused(
            app.handle_precomputed(&h("h-4", "NS", "0.00", &work_in)).await,
            "operator",
        );
        let s = signed(app.handle_precomputed(&h("h-5", "NS", "14.10", sale_plu)).await);
        assert_eq!(s["code"], 0);
        // A pro forma with a table is fine: table rules need lines and do not apply.
        signed(app.handle_precomputed(&h("h-6", "PS", "9.00", sale_plu)).await);
        assert!(app.restaurant.open_tables().is_empty());
        // A resend of the clocking after the state moved on gets its stored receipt.
        let again = signed(
            app.handle_precomputed(&h("h-3", "NS", "0.00", &work_in[32..]))
                .await,
        );
        assert_eq!(again["code"], 102);
        // A catering event registered from an fdmd register ends: H events wait for it.
        let end = (chrono::Local::now() + chrono::Duration::seconds(4))
            .fixed_offset()
            .to_rfc3339();
        let est = json!({"request_id": "est", "operator": ANNA, "event_type": "normal",
            "catering_event": "bbq-1", "catering_end": end,
            "lines": [{"description": "BBQ 30 p.", "quantity": 1, "unit_price": "900.00", "vat": "B"}]});
        signed(app.handle_order("till-1", est.to_string().as_bytes()).await);
        let end = chrono::DateTime::parse_from_rfc3339(&end).unwrap();
        for _ in 0..200 {
            if chrono::Local::now().fixed_offset() > end + chrono::Duration::milliseconds(100) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let m = refused(
            app.handle_precomputed(&h("h-7", "NS", "14.10", sale_plu)).await,
            "catering_event",
        );
        assert!(m.contains("bbq-1"), "{m}");
        // Clocking out is not a sale: it goes through.
        signed(app.handle_precomputed(&h("h-8", "NS", "0.00", &work_out)).await);
        let close = json!({"request_id": "bbq-ok", "operator": ANNA, "event_type": "normal",
            "purpose": "catering_close", "catering_event": "bbq-1"});
        // The settlement needs its operator clocked in, like any normal sale.
        let r = app.handle_order("till-1", close.to_string().as_bytes()).await;
        refused(r, "operator");
        signed(app.handle_precomputed(&h("h-9", "NS", "0.00", &work_in)).await);
        let c = signed(app.handle_order("till-1", close.to_string().as_bytes()).await);
        assert_eq!(c["catering_role"], "no_correction");
        signed(app.handle_precomputed(&h("h-7", "NS", "14.10", sale_plu)).await);
    });
    // The journal tells the same story: Anna is clocked in (by an H event).
    let r = Restaurant::rebuild(&dir.path().join("journal.sqlite"), true).unwrap();
    let on: Vec<String> = r
        .presence()
        .clocked_in()
        .into_iter()
        .map(|d| d.operator)
        .collect();
    assert_eq!(on, [ANNA]);
    let shifts = r
        .shifts_on(&chrono::Local::now().format("%Y-%m-%d").to_string())
        .unwrap();
    assert_eq!(shifts.len(), 2, "{shifts:?}");
}
