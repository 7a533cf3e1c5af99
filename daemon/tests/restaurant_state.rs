//! The restaurant state across restarts (issue 14): a start from the snapshot gives the state a
//! fold of the whole journal gives; a stale, edited or forged snapshot is not used; refunds of
//! old tickets are checked against the journal after a restart; the fixture journal written by
//! 15940aa still serves its open state.
#![allow(clippy::unwrap_used)]

use fdmd::fiscal::order::Order;
use fdmd::journal::{Journal, JournalConfig};
use fdmd::restaurant::snapshot::{KEY, Snapshot};
use fdmd::restaurant::{INDEX_FILE, Restaurant};
use fdmd::service::{Numbering, Receipt, Registrar, SeriesScope};
use fdmd::signer::SoftwareSigner;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const ANNA: &str = "85073003328";
const BERT: &str = "00000000097";

struct Shop {
    _dir: tempfile::TempDir,
    data: PathBuf,
    journal: Journal,
    registrar: Registrar,
    r: Restaurant,
}

fn journal_path(data: &Path) -> PathBuf {
    data.join("journal.sqlite")
}

fn open(data: &Path) -> Restaurant {
    Restaurant::open(&journal_path(data), &data.join(INDEX_FILE), false).unwrap()
}

impl Shop {
    fn new() -> Shop {
        let dir = tempfile::tempdir().unwrap();
        Shop::at(dir, Arc::new(SoftwareSigner::from_seed([7; 32])))
    }

    fn at(dir: tempfile::TempDir, signer: Arc<SoftwareSigner>) -> Shop {
        let data = dir.path().to_owned();
        let journal = Journal::open(
            JournalConfig::new(journal_path(&data), "DEVFDMD0001"),
            signer,
        )
        .unwrap();
        let registrar = Registrar::new(
            journal.clone(),
            Numbering {
                scope: SeriesScope::PerRegister,
                digits: 6,
                ..Default::default()
            },
        );
        let r = open(&data);
        Shop {
            _dir: dir,
            data,
            journal,
            registrar,
            r,
        }
    }

    /// Checks, journals and folds an order as `App` does; the refusal's message otherwise.
    async fn send(&self, v: Value) -> Result<Value, String> {
        let order = Order::from_json("till-1", v.to_string().as_bytes()).unwrap();
        let _guards = self.r.lock_for(&order).await;
        let original = match &order.original {
            Some(o) => self.registrar.stored(&o.register, &o.request_id).await,
            None => None,
        };
        let prepared = self
            .r
            .prepare(&order, original.as_ref())
            .map_err(|e| format!("{}: {}", e.field, e.message))?;
        let (receipt, appended) = self.registrar.register_prepared(&order, prepared).await;
        let Receipt::Signed(v) = receipt else {
            panic!("not signed: {}", receipt.to_json());
        };
        self.r.apply(appended.as_ref().unwrap());
        Ok(v)
    }

    async fn ok(&self, v: Value) -> Value {
        self.send(v).await.unwrap()
    }

    fn restart(&mut self) -> Option<u64> {
        self.r = open(&self.data);
        self.r.restored_from()
    }

    /// A fold of the whole journal, without the index file (as after an upgrade).
    fn full_fold(&self) -> Restaurant {
        let dir = tempfile::tempdir().unwrap();
        let r = Restaurant::open(
            &journal_path(&self.data),
            &dir.path().join(INDEX_FILE),
            false,
        )
        .unwrap();
        assert_eq!(r.restored_from(), None);
        r
    }
}

fn line(d: &str, q: i64, p: &str, v: &str) -> Value {
    json!({"description": d, "quantity": q, "unit_price": p, "vat": v})
}

fn today() -> String {
    chrono::Local::now().format("%Y-%m-%d").to_string()
}

/// Everything the daemon serves from the restaurant state.
fn served(r: &Restaurant) -> Value {
    json!({
        "tables": r.open_tables().to_json(),
        "clocked_in": r.presence().clocked_in().iter().map(|d| json!([d.operator, d.since, d.register])).collect::<Vec<_>>(),
        "shifts": r.shifts_on(&today()).unwrap().iter().map(|s| s.to_json()).collect::<Vec<_>>(),
        "deposits": r.open_deposits(),
        "wedding": r.catering_event("wedding"),
        "party": r.catering_event("party"),
        "due": r.catering_due(),
    })
}

async fn busy_day(s: &Shop, tag: &str) {
    let id = |x: &str| format!("{tag}-{x}");
    if !s.r.presence().is_clocked_in(ANNA) {
        s.ok(json!({"request_id": id("in-a"), "operator": ANNA, "event_type": "normal", "purpose": "work_in"})).await;
    }
    s.ok(json!({"request_id": id("in-b"), "operator": BERT, "event_type": "normal", "purpose": "work_in"})).await;
    for t in ["1", "2", "3"] {
        s.ok(
            json!({"request_id": id(&format!("r{t}")), "operator": ANNA, "event_type": "pro_forma",
            "table": format!("{tag}{t}"), "lines": [line("Cola", 2, "2.50", "A")]}),
        )
        .await;
    }
    s.ok(
        json!({"request_id": id("c1"), "operator": BERT, "event_type": "pro_forma",
        "check": format!("{tag}C"), "lines": [line("Frites", 1, "4.00", "B")]}),
    )
    .await;
    s.ok(json!({"request_id": id("mv"), "operator": ANNA, "event_type": "normal", "purpose": "table_move",
        "table": format!("{tag}1"), "to_table": format!("{tag}9")})).await;
    s.ok(json!({"request_id": id("mg"), "operator": ANNA, "event_type": "normal", "purpose": "table_merge",
        "table": format!("{tag}2"), "to_table": format!("{tag}9")})).await;
    s.ok(
        json!({"request_id": id("pay3"), "operator": ANNA, "event_type": "normal",
        "table": format!("{tag}3"), "lines": []}),
    )
    .await;
    s.ok(json!({"request_id": id("dep"), "operator": ANNA, "event_type": "normal", "purpose": "deposit",
        "lines": [line("Voorschot", 1, "50.00", "B")]})).await;
    s.ok(
        json!({"request_id": id("s"), "operator": ANNA, "event_type": "normal",
        "lines": [line("Cola", 2, "2.50", "A"), line("Wijn", 3, "6.50", "A")]}),
    )
    .await;
    s.ok(json!({"request_id": id("out-b"), "operator": BERT, "event_type": "normal", "purpose": "work_out"})).await;
}

#[tokio::test]
async fn a_restart_from_the_snapshot_gives_the_state_of_a_full_fold() {
    let mut s = Shop::new();
    busy_day(&s, "a").await;
    let end = (chrono::Local::now() + chrono::Duration::hours(5)).to_rfc3339();
    s.ok(json!({"request_id": "w-1", "operator": ANNA, "event_type": "normal", "catering_event": "wedding",
        "catering_end": end, "lines": [line("Feest", 1, "500.00", "B")]})).await;
    s.ok(json!({"request_id": "p-1", "operator": ANNA, "event_type": "normal", "catering_event": "party",
        "catering_end": end, "lines": [line("Feest", 1, "100.00", "B")]})).await;
    s.ok(json!({"request_id": "p-2", "operator": ANNA, "event_type": "normal", "catering_event": "party",
        "catering_settle": true, "lines": [line("Extra", 1, "10.00", "B")]})).await;
    s.r.snapshot_now().await;
    // After the snapshot: more of everything, including deducting the deposit it holds open
    // and closing the table it holds open.
    busy_day(&s, "b").await;
    s.ok(
        json!({"request_id": "use-dep", "operator": ANNA, "event_type": "normal",
        "lines": [line("Menu", 2, "45.00", "B")], "deposits": [{"request_id": "a-dep"}]}),
    )
    .await;
    s.ok(json!({"request_id": "pay9", "operator": ANNA, "event_type": "normal", "table": "a9", "lines": []})).await;
    let live = served(&s.r);
    // Anna clocked in before the snapshot and is still at work; Bert came and went after it.
    assert_eq!(live["clocked_in"].as_array().unwrap().len(), 1, "{live}");
    assert_eq!(live["shifts"].as_array().unwrap().len(), 3, "{live}");
    assert_eq!(live["tables"].as_array().unwrap().len(), 3, "{live}");
    assert_eq!(live["deposits"].as_array().unwrap().len(), 1, "{live}");
    assert_eq!(live["party"]["status"], "settled");
    assert_eq!(live["wedding"]["status"], "open");
    let at = s.restart().expect("the snapshot is used");
    assert!(at > 0);
    assert_eq!(served(&s.r), live);
    assert_eq!(served(&s.full_fold()), live);
    // A clean stop writes a snapshot at the last record: the next start folds nothing after it.
    s.r.snapshot_now().await;
    let last = fdmd::journal::read::last_seq(
        &fdmd::journal::query::open_read_only(&journal_path(&s.data)).unwrap(),
    )
    .unwrap();
    assert_eq!(s.restart(), Some(last));
    assert_eq!(served(&s.r), live);
    // And the deducted deposit is still known as deducted (from the journal).
    let m = s
        .send(
            json!({"request_id": "again", "operator": ANNA, "event_type": "normal",
            "lines": [line("Menu", 1, "45.00", "B")], "deposits": [{"request_id": "a-dep"}]}),
        )
        .await
        .unwrap_err();
    assert!(m.contains("already deducted (journal record"), "{m}");
    let m = s
        .send(json!({"request_id": "late", "operator": ANNA, "event_type": "normal", "catering_event": "party",
            "lines": [line("Extra", 1, "10.00", "B")]}))
        .await
        .unwrap_err();
    assert!(m.contains("was settled by journal record"), "{m}");
    s.journal.clone().close();
}

fn set_snapshot(data: &Path, bytes: &[u8]) {
    let c = rusqlite::Connection::open(data.join(INDEX_FILE)).unwrap();
    c.execute(
        "INSERT OR REPLACE INTO meta VALUES (?1, ?2)",
        rusqlite::params![KEY, bytes],
    )
    .unwrap();
}

fn get_snapshot(data: &Path) -> Snapshot {
    let c = rusqlite::Connection::open(data.join(INDEX_FILE)).unwrap();
    let b: Vec<u8> = c
        .query_row("SELECT value FROM meta WHERE key = ?1", [KEY], |r| r.get(0))
        .unwrap();
    Snapshot::decode(&b).unwrap()
}

#[tokio::test]
async fn a_stale_edited_or_forged_snapshot_is_not_used_and_the_state_is_rebuilt() {
    let mut s = Shop::new();
    busy_day(&s, "a").await;
    s.r.snapshot_now().await;
    let live = served(&s.r);
    let good = get_snapshot(&s.data);
    assert!(!good.records.is_empty());

    // Edited: a record dropped from the list (a table would vanish); the checksum fails.
    let edited = String::from_utf8(good.encode())
        .unwrap()
        .replace(&format!("[{},", good.records[0]), "[");
    set_snapshot(&s.data, edited.as_bytes());
    assert_eq!(s.restart(), None);
    assert_eq!(served(&s.r), live);

    // Forged: a consistent snapshot naming a hash that is not the chain's.
    let forged = Snapshot::new(good.seq, vec![0; 32], good.records[1..].to_vec());
    set_snapshot(&s.data, &forged.encode());
    assert_eq!(s.restart(), None);
    assert_eq!(served(&s.r), live);

    // Stale: a snapshot from another journal (same sequence numbers, other hashes).
    let other = Shop::new();
    busy_day(&other, "a").await;
    busy_day(&other, "x").await;
    other.r.snapshot_now().await;
    let foreign = get_snapshot(&other.data);
    set_snapshot(&s.data, &foreign.encode());
    assert_eq!(s.restart(), None);
    assert_eq!(served(&s.r), live);

    // A torn index file is replaced.
    std::fs::write(s.data.join(INDEX_FILE), b"not a database").unwrap();
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(s.data.join(format!("{INDEX_FILE}{suffix}")));
    }
    assert_eq!(s.restart(), None);
    assert_eq!(served(&s.r), live);
    // Each rebuild wrote a good snapshot again.
    assert_eq!(s.restart(), Some(good.seq));
    s.journal.clone().close();
    other.journal.clone().close();
}

#[tokio::test]
async fn a_refund_of_an_old_ticket_is_checked_against_the_journal_after_a_restart() {
    let mut s = Shop::new();
    s.ok(
        json!({"request_id": "old", "operator": ANNA, "event_type": "normal",
        "lines": [line("Cola", 2, "2.50", "A"), line("Wijn", 2, "6.50", "A")]}),
    )
    .await;
    let refund = |id: &str, q: i64| {
        json!({"request_id": id, "operator": ANNA, "event_type": "normal", "original": {"request_id": "old"},
            "lines": [{"description": "Wijn", "quantity": q, "unit_price": "6.50", "vat": "A", "original_line": 1}]})
    };
    s.ok(refund("r-1", -1)).await;
    for i in 0..50 {
        s.ok(
            json!({"request_id": format!("s-{i}"), "operator": ANNA, "event_type": "normal",
            "lines": [line("Koffie", 1, "3.00", "A")]}),
        )
        .await;
    }
    for from_snapshot in [true, false] {
        if from_snapshot {
            s.r.snapshot_now().await;
            assert!(s.restart().is_some());
        } else {
            std::fs::remove_file(s.data.join(INDEX_FILE)).unwrap();
            assert_eq!(s.restart(), None);
        }
        let m = s.send(refund("r-too-much", -2)).await.unwrap_err();
        assert!(
            m.contains("more than line 1 of ticket old has left: 2 sold, 1 already given back"),
            "{m}"
        );
    }
    s.ok(refund("r-2", -1)).await;
    s.restart();
    let m = s.send(refund("r-3", -1)).await.unwrap_err();
    assert!(m.contains("2 sold, 2 already given back"), "{m}");
    s.journal.clone().close();
}

#[tokio::test]
async fn the_fixture_journal_of_15940aa_still_serves_its_open_state() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/journal-15940aa");
    let dir = tempfile::tempdir().unwrap();
    for f in [
        "journal.sqlite",
        "journal.sqlite-wal",
        "journal.sqlite-shm",
        "dev-signer.key",
    ] {
        if fixture.join(f).exists() {
            std::fs::copy(fixture.join(f), dir.path().join(f)).unwrap();
        }
    }
    let key = dir.path().join("dev-signer.key");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let signer = SoftwareSigner::open_or_create(&key).unwrap();
    let mut s = Shop::at(dir, Arc::new(signer));
    for round in 0..2 {
        let r = &s.r;
        assert_eq!(r.restored_from().is_some(), round == 1);
        let tables = r.open_tables();
        assert!(tables.get("12").is_some(), "table 12 is open");
        assert!(tables.get_check("C-17").is_some(), "check C-17 is open");
        assert_eq!(tables.len(), 2);
        assert!(r.presence().is_clocked_in(ANNA));
        let deposits = r.open_deposits();
        assert_eq!(deposits.len(), 1);
        assert_eq!(deposits[0]["request_id"], "dep-1");
        s.restart();
    }
    // s-1 line 1 has one Wijn left to give back (the register of the fixture is dev-register).
    let refund = |id: &str, q: i64| {
        let v = json!({"request_id": id, "operator": ANNA, "event_type": "normal",
            "original": {"register": "dev-register", "request_id": "s-1"},
            "lines": [{"description": "Wijn", "quantity": q, "unit_price": "6.50", "vat": "A", "original_line": 1}]});
        Order::from_json("dev-register", v.to_string().as_bytes()).unwrap()
    };
    let original = s.journal.find_request("dev-register", "s-1").unwrap();
    let m =
        s.r.prepare(&refund("r-2", -2), original.as_ref())
            .unwrap_err();
    assert!(m.message.contains("2 sold, 1 already given back"), "{m}");
    assert!(s.r.prepare(&refund("r-2", -1), original.as_ref()).is_ok());
    s.journal.clone().close();
}

/// The first start after an upgrade (no index file beside the journal) reads the whole journal:
/// with `restaurant_wait` short, the App is built before the state is read and serves meanwhile;
/// an order waits for the state instead of being checked against an empty one, so the table
/// the journal left open is found and paid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_serves_while_its_state_is_read_and_orders_wait_for_it() {
    let s = Shop::new();
    busy_day(&s, "a").await;
    for i in 0..300 {
        s.ok(
            json!({"request_id": format!("pad-{i}"), "operator": ANNA, "event_type": "normal",
            "lines": [line("Cola", 1, "2.50", "A")]}),
        )
        .await;
    }
    let Shop {
        _dir: dir,
        data,
        journal,
        registrar,
        r,
    } = s;
    drop((registrar, r));
    journal.shutdown().unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(data.join(format!("{INDEX_FILE}{suffix}")));
    }
    let mut config = fdmd::config::Config::default();
    config.fdm.data_dir = data.clone();
    config.fdm.id = "DEVFDMD0001".into();
    let app = fdmd::assembly::AppBuilder::new(config)
        .signer(Arc::new(SoftwareSigner::from_seed([7; 32])))
        .restaurant_wait(std::time::Duration::ZERO)
        .build()
        .unwrap();
    // Reading ~330 records and indexing them takes far longer than returning from `build`.
    assert!(
        !app.restaurant.is_ready(),
        "build returned before the state was read"
    );
    let status = app.status_document();
    assert_eq!(status["restaurant_state_ready"], false, "{status}");
    assert!(
        status["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["code"] == "restaurant_state_loading"),
        "{status}"
    );
    assert_eq!(status["status"], "degraded", "{status}");
    app.access
        .enrol(
            fdmd::access::ClientKind::Register,
            "till-1",
            "2026-01-01T00:00:00",
        )
        .unwrap();
    let pay = json!({"request_id": "pay-9", "operator": ANNA, "event_type": "normal",
        "table": "a9", "lines": []});
    let receipt = app
        .handle_order("till-1", pay.to_string().as_bytes())
        .await
        .to_json();
    assert!(app.restaurant.is_ready());
    assert_eq!(receipt["status"], "signed", "{receipt}");
    assert!(
        !app.status_document()["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["code"] == "restaurant_state_loading")
    );
    // Table a9 held a1's and a2's rounds (2 Cola each): paying it closes it with 10.00.
    assert_eq!(receipt["total"], "10.00", "{receipt}");
    assert!(app.restaurant.open_tables().get("a9").is_none());
    assert!(
        app.restaurant.open_tables().get_check("aC").is_some(),
        "the check the journal left open is still open"
    );
    app.registrar.journal().clone().close();
    drop(dir);
}
