//! End-to-end tests of the back office on a real PostgreSQL (a throwaway cluster per test) with
//! journals written by the real daemon code.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::fdmbox::FdmBox;
use common::{Office, segments};
use ed25519_dalek::{Signer as _, SigningKey};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SEED_A: [u8; 32] = [7; 32];
const SEED_B: [u8; 32] = [8; 32];
const ALL_TIME: &str = "from=2000-01-01&to=2100-12-31";

/// What stays the same when a segment is refused: records, head, turnover, counters, signers.
async fn stored_state(office: &Office, id: &str) -> Value {
    let client = office.pool.get().await.unwrap();
    let head = client
        .query_one(
            "SELECT last_seq, encode(last_hash, 'hex') FROM establishments WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    let digest: Option<String> = client
        .query_one(
            "SELECT encode(sha256(string_agg(canonical || hash || signature, ''::bytea ORDER BY seq)), 'hex')
               FROM records WHERE establishment_id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    let turnover: Option<String> = client
        .query_one(
            "SELECT string_agg(fdm_date || rate || tickets || ':' || total_cents || ':' || vat_cents, ',' ORDER BY fdm_date, rate)
               FROM turnover_daily WHERE establishment_id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    let counters: Option<String> = client
        .query_one(
            "SELECT string_agg(counter || '=' || value, ',' ORDER BY counter)
               FROM chain_counters WHERE establishment_id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    json!({
        "last_seq": head.get::<_, i64>(0),
        "last_hash": head.get::<_, Option<String>>(1),
        "records": digest,
        "turnover": turnover,
        "counters": counters,
    })
}

async fn flag(office: &Office, id: &str) -> (bool, Option<String>, i64) {
    let client = office.pool.get().await.unwrap();
    let row = client
        .query_one(
            "SELECT flagged, flag_code,
                    (SELECT count(*) FROM refused_segments WHERE establishment_id = $1)
               FROM establishments WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

/// Pushes every segment; each must be accepted.
async fn push_all(office: &Office, id: &str, credential: &str, segs: &[Vec<u8>]) {
    for (i, s) in segs.iter().enumerate() {
        let (status, answer) = office.push(id, credential, s).await;
        assert_eq!(status, 200, "segment {i}: {answer}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_journal_arrives_in_segments_and_resending_is_idempotent() {
    let office = Office::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut b = FdmBox::new(&dir.path().join("a"), SEED_A);
    b.orders(30);
    b.z_report();
    b.orders(10);
    let credential = office.enrol("bxl-01", vec![b.public_key()]).await;
    let last = b.last_seq();
    let segs = segments(&b, 1, last, 12);
    assert!(segs.len() >= 3);
    push_all(&office, "bxl-01", &credential, &segs).await;
    assert_eq!(
        office
            .count("SELECT count(*) FROM records WHERE establishment_id = 'bxl-01'")
            .await,
        last as i64
    );
    let before = stored_state(&office, "bxl-01").await;
    // The same segment again: accepted, nothing new.
    let (status, answer) = office.push("bxl-01", &credential, &segs[1]).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["stored"], 0);
    assert_eq!(answer["already_stored"], 12);
    assert_eq!(stored_state(&office, "bxl-01").await, before);
    // A segment overlapping the stored end: only its new part is stored.
    b.orders(5);
    let new_last = b.last_seq();
    let (status, answer) = office
        .push("bxl-01", &credential, &b.export(last - 3, new_last))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["already_stored"], 4);
    assert_eq!(answer["stored"], new_last - last);
    assert_eq!(answer["last_seq"], new_last);
    // The copy holds exactly the box's records.
    let client = office.pool.get().await.unwrap();
    let stored: Vec<(i64, Vec<u8>)> = client
        .query(
            "SELECT seq, canonical FROM records WHERE establishment_id = 'bxl-01' ORDER BY seq",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let from_box: Vec<(i64, Vec<u8>)> = String::from_utf8(b.export(1, new_last))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["type"] == "record")
        .map(|v| {
            (
                v["seq"].as_i64().unwrap(),
                v["record"].as_str().unwrap().as_bytes().to_vec(),
            )
        })
        .collect();
    assert_eq!(stored, from_box);
    let list = office.get_json("/v1/establishments").await;
    let e = &list["establishments"][0];
    assert_eq!(e["last_seq"], new_last);
    assert_eq!(e["flagged"], false);
    assert_eq!(e["silent"], false);
    assert_eq!(flag(&office, "bxl-01").await, (false, None, 0));
    // Nothing may change a stored record, not even by hand.
    let client = office.pool.get().await.unwrap();
    assert!(
        client
            .execute("UPDATE records SET label = 'NS' WHERE seq = 1", &[])
            .await
            .is_err()
    );
    // Metrics.
    let (status, text) = common::request(office.addr, "GET", "/metrics", None, b"").await;
    assert_eq!(status, 200);
    let text = String::from_utf8(text).unwrap();
    assert!(
        text.contains(&format!("fdmd_backoffice_records {new_last}")),
        "{text}"
    );
    assert!(text.contains("fdmd_backoffice_segments_accepted_total"));
    office.stop().await;
}

/// Changes the first `2.20` of record `seq` in a segment to `3.20`, re-hashes the record and
/// re-signs it with a foreign key (the record keeps naming the box's signer).
fn forge(segment: &[u8], seq: u64) -> Vec<u8> {
    let foreign = SigningKey::from_bytes(&[99; 32]);
    let mut out = String::new();
    for line in String::from_utf8(segment.to_vec()).unwrap().lines() {
        let mut v: Value = serde_json::from_str(line).unwrap();
        if v["type"] == "record" && v["seq"] == seq {
            let record = v["record"].as_str().unwrap();
            assert!(record.contains("\"2.20\""), "record {seq} has a 2.20");
            let changed = record.replacen("\"2.20\"", "\"3.20\"", 1);
            let hash: [u8; 32] = Sha256::digest(changed.as_bytes()).into();
            v["record"] = json!(changed);
            v["hash"] = json!(hex::encode(hash));
            v["signature"] = json!(hex::encode(foreign.sign(&hash).to_bytes()));
        }
        out.push_str(&serde_json::to_string(&v).unwrap());
        out.push('\n');
    }
    out.into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_segment_is_refused_kept_aside_and_flagged() {
    let office = Office::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut b = FdmBox::new(&dir.path().join("a"), SEED_A);
    b.orders(10);
    let credential = office.enrol("gent-02", vec![b.public_key()]).await;
    let first = b.last_seq();
    push_all(&office, "gent-02", &credential, &[b.export(1, first)]).await;
    let before = stored_state(&office, "gent-02").await;
    b.orders(10);
    let last = b.last_seq();
    // A sale of the new part with a Cola line (2.20), not the last record.
    let target = b
        .receipts
        .iter()
        .filter(|r| r["label"] == "NS")
        .map(|r| r["journal_seq"].as_u64().unwrap())
        .find(|s| *s > first + 1 && *s < last)
        .unwrap();
    let forged = forge(&b.export(first + 1, last), target);
    let (status, answer) = office.push("gent-02", &credential, &forged).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["error"], "verification_failed", "{answer}");
    assert_eq!(answer["seq"], target, "{answer}");
    assert_eq!(answer["flagged"], true);
    assert_eq!(stored_state(&office, "gent-02").await, before);
    let (flagged, code, refused) = flag(&office, "gent-02").await;
    assert_eq!(
        (flagged, code.as_deref(), refused),
        (true, Some("verification_failed"), 1)
    );
    // The evidence is the segment exactly as received.
    let client = office.pool.get().await.unwrap();
    let kept: Vec<u8> = client
        .query_one(
            "SELECT body FROM refused_segments WHERE establishment_id = 'gent-02'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(kept, forged);
    let list = office.get_json("/v1/establishments").await;
    assert_eq!(list["establishments"][0]["flagged"], true);
    assert_eq!(list["establishments"][0]["refused_segments"], 1);
    // The records as the box signed them are still accepted afterwards.
    push_all(
        &office,
        "gent-02",
        &credential,
        &[b.export(first + 1, last)],
    )
    .await;
    assert_eq!(stored_state(&office, "gent-02").await["last_seq"], last);
    office.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_box_restored_from_an_older_image_forks_and_is_refused() {
    let office = Office::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut a = FdmBox::new(&dir.path().join("a"), SEED_A);
    a.orders(8);
    a.close();
    // The older SD-card image: a copy of the journal as it was then.
    std::fs::create_dir_all(dir.path().join("image")).unwrap();
    std::fs::copy(
        dir.path().join("a/journal.sqlite"),
        dir.path().join("image/journal.sqlite"),
    )
    .unwrap();
    let at_image = a.last_seq();
    a.reopen();
    a.orders(8);
    let credential = office.enrol("lgg-03", vec![a.public_key()]).await;
    let last = a.last_seq();
    push_all(&office, "lgg-03", &credential, &segments(&a, 1, last, 7)).await;
    let before = stored_state(&office, "lgg-03").await;
    // The restored box goes on from the image: its records after it differ from the copy's.
    a.close();
    let mut restored = FdmBox::new(&dir.path().join("image"), SEED_A);
    // Its clock goes on from where the box's clock was.
    restored.clock.advance(chrono::Duration::hours(1));
    restored.orders(20);
    let restored_last = restored.last_seq();
    assert!(restored_last > last);
    // Its whole journal: overlaps the copy and differs after the image.
    let (status, answer) = office
        .push("lgg-03", &credential, &restored.export(1, restored_last))
        .await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["error"], "fork", "{answer}");
    assert_eq!(answer["seq"], at_image + 1, "{answer}");
    // Only what follows the copy's head: does not chain onto the stored head.
    let (status, answer) = office
        .push(
            "lgg-03",
            &credential,
            &restored.export(last + 1, restored_last),
        )
        .await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["error"], "fork", "{answer}");
    assert_eq!(answer["seq"], last + 1, "{answer}");
    assert_eq!(stored_state(&office, "lgg-03").await, before);
    let (flagged, code, refused) = flag(&office, "lgg-03").await;
    assert_eq!((flagged, code.as_deref(), refused), (true, Some("fork"), 2));
    office.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_gaps_and_keys_are_checked() {
    let office = Office::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut a = FdmBox::new(&dir.path().join("a"), SEED_A);
    a.orders(6);
    let mut b = FdmBox::new(&dir.path().join("b"), SEED_B);
    b.orders(2);
    let cred_a = office.enrol("a", vec![a.public_key()]).await;
    // Establishment b is enrolled with a's key: b's own journal is signed with another.
    let cred_b = office.enrol("b", vec![a.public_key()]).await;
    let whole = a.export(1, a.last_seq());
    for (id, token) in [
        ("a", Some("wrong")),
        ("a", None),
        ("a", Some(cred_b.as_str())),
        ("nobody", Some(cred_a.as_str())),
    ] {
        let (status, body) = common::request(
            office.addr,
            "POST",
            &format!("/v1/establishments/{id}/segments"),
            token,
            &whole,
        )
        .await;
        assert_eq!(
            status,
            401,
            "{id} {token:?}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let (status, _) =
        common::request(office.addr, "GET", "/v1/establishments", Some(&cred_a), b"").await;
    assert_eq!(
        status, 401,
        "an establishment's credential is not the admin's"
    );
    assert_eq!(office.count("SELECT count(*) FROM records").await, 0);
    // A segment that starts after the next record expected: a gap, not evidence.
    let (status, answer) = office.push("a", &cred_a, &a.export(3, 5)).await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["error"], "gap");
    assert_eq!(answer["next_seq"], 1);
    assert_eq!(flag(&office, "a").await, (false, None, 0));
    // A journal signed with a key that was not enrolled.
    let (status, answer) = office.push("b", &cred_b, &b.export(1, b.last_seq())).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["error"], "verification_failed");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("not among the trusted keys"),
        "{answer}"
    );
    // Not an export at all.
    let (status, answer) = office.push("a", &cred_a, b"hello").await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["error"], "malformed_segment");
    // Too large.
    let big = vec![b'x'; 9 * 1024 * 1024];
    let (status, _) = office.push("a", &cred_a, &big).await;
    assert_eq!(status, 413);
    // A declared length over the limit is refused at once, before the body is sent.
    let mut stream = tokio::net::TcpStream::connect(office.addr).await.unwrap();
    let head = format!(
        "POST /v1/establishments/a/segments HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {cred_a}\r\nContent-Length: {}\r\n\r\n",
        big.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut answer))
        .await
        .expect("413 without waiting for the body")
        .unwrap();
    assert!(
        answer[..read].starts_with(b"HTTP/1.1 413"),
        "{}",
        String::from_utf8_lossy(&answer[..read])
    );
    // The right credential.
    let (status, answer) = office.push("a", &cred_a, &whole).await;
    assert_eq!(status, 200, "{answer}");
    office.stop().await;
}

/// Turnover per (date, rate) from the receipts the box gave (NS and NR only), in cents.
fn receipts_turnover(receipts: &[Value], into: &mut BTreeMap<(String, String), (i64, i64)>) {
    let cents = |v: &Value| -> i64 {
        let s = v.as_str().unwrap();
        let negative = s.starts_with('-');
        let (units, frac) = s.trim_start_matches('-').split_once('.').unwrap();
        let c = units.parse::<i64>().unwrap() * 100 + frac.parse::<i64>().unwrap();
        if negative { -c } else { c }
    };
    for r in receipts {
        let label = r["label"].as_str().unwrap();
        if label != "NS" && label != "NR" {
            continue;
        }
        let date = r["fdm_time"].as_str().unwrap()[..10].to_owned();
        for v in r["vat"].as_array().unwrap() {
            let e = into
                .entry((date.clone(), v["rate"].as_str().unwrap().to_owned()))
                .or_default();
            e.0 += cents(&v["total"]);
            e.1 += cents(&v["vat"]);
        }
    }
}

fn api_turnover(answer: &Value) -> BTreeMap<(String, String), (i64, i64)> {
    let cents = |v: &Value| -> i64 {
        let s = v.as_str().unwrap();
        (s.parse::<f64>().unwrap() * 100.0).round() as i64
    };
    answer["turnover"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                (
                    l["date"].as_str().unwrap().to_owned(),
                    l["rate"].as_str().unwrap().to_owned(),
                ),
                (cents(&l["total"]), cents(&l["vat"])),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turnover_and_z_reports_match_the_journal() {
    let office = Office::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut a = FdmBox::new(&dir.path().join("a"), SEED_A);
    let mut b = FdmBox::new(&dir.path().join("b"), SEED_B);
    a.orders(21);
    let z = a.z_report();
    a.orders(9);
    b.orders(14);
    let cred_a = office.enrol("a", vec![a.public_key()]).await;
    let cred_b = office.enrol("b", vec![b.public_key()]).await;
    push_all(&office, "a", &cred_a, &segments(&a, 1, a.last_seq(), 10)).await;
    push_all(&office, "b", &cred_b, &segments(&b, 1, b.last_seq(), 50)).await;
    let mut expect_a = BTreeMap::new();
    receipts_turnover(&a.receipts, &mut expect_a);
    assert!(expect_a.len() >= 3, "sales at several rates: {expect_a:?}");
    assert!(
        a.receipts.iter().any(|r| r["label"] == "NR"),
        "the journal has refunds"
    );
    let got_a = api_turnover(
        &office
            .get_json(&format!("/v1/establishments/a/turnover?{ALL_TIME}"))
            .await,
    );
    assert_eq!(got_a, expect_a);
    let mut expect_all = expect_a.clone();
    receipts_turnover(&b.receipts, &mut expect_all);
    let got_all = api_turnover(&office.get_json(&format!("/v1/turnover?{ALL_TIME}")).await);
    assert_eq!(got_all, expect_all);
    // Z reports as issued.
    let zs = office
        .get_json(&format!("/v1/establishments/a/z-reports?{ALL_TIME}"))
        .await;
    let zs = zs["z_reports"].as_array().unwrap();
    assert_eq!(zs.len(), 1, "{zs:?}");
    assert_eq!(zs[0]["body"]["report"], "Z");
    assert_eq!(
        zs[0]["body"]["totals"], z["totals"],
        "the figures the box printed"
    );
    // A period without records.
    let none = office
        .get_json("/v1/establishments/a/turnover?from=2001-01-01&to=2001-12-31")
        .await;
    assert_eq!(none["turnover"], json!([]));
    let (status, _) = office
        .get("/v1/turnover?from=2001-13-01&to=2001-12-31")
        .await;
    assert_eq!(status, 400);
    office.stop().await;
}

/// The fdmctl binary of this target directory (`cargo build -p fdmctl`).
fn fdmctl() -> std::path::PathBuf {
    if let Ok(p) = std::env::var("FDMCTL") {
        return p.into();
    }
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().unwrap().parent().unwrap().join("fdmctl");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build -p fdmctl` first (same target directory)",
        path.display()
    );
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_from_the_back_office_verifies_with_fdmctl() {
    let office = Office::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut a = FdmBox::new(&dir.path().join("a"), SEED_A);
    a.orders(12);
    a.z_report();
    a.orders(5);
    let cred = office.enrol("a", vec![a.public_key()]).await;
    push_all(&office, "a", &cred, &segments(&a, 1, a.last_seq(), 9)).await;
    let date = a.receipts[0]["fdm_time"].as_str().unwrap()[..10].to_owned();
    let (status, export) = office
        .get(&format!(
            "/v1/establishments/a/export?from={date}&to={date}"
        ))
        .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&export));
    let file = dir.path().join("export.jsonl");
    std::fs::write(&file, &export).unwrap();
    let key = hex::encode(a.public_key());
    let run = |path: &std::path::Path, extra: &[&str]| {
        let out = std::process::Command::new(fdmctl())
            .arg("verify")
            .arg(path)
            .args(extra)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (code, text) = run(&file, &["--key", &key]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains(&format!("{} records", a.last_seq())),
        "{text}"
    );
    // The same records the box would export.
    let records = |bytes: &[u8]| -> Vec<String> {
        String::from_utf8_lossy(bytes)
            .lines()
            .filter(|l| l.contains("\"type\":\"record\""))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(records(&export), records(&a.export(1, a.last_seq())));
    // And fdmctl is no rubber stamp: a changed amount fails.
    let text = String::from_utf8(export).unwrap();
    let forged = dir.path().join("forged.jsonl");
    std::fs::write(&forged, text.replacen(r#"\"2.20\""#, r#"\"2.30\""#, 1)).unwrap();
    let (code, out) = run(&forged, &["--key", &key]);
    assert_eq!(code, Some(1), "{out}");
    // The next day alone: a slice of the journal, checked with the establishment's key.
    let day_one_last = a.last_seq();
    a.clock.advance(chrono::Duration::days(1));
    a.orders(6);
    push_all(
        &office,
        "a",
        &cred,
        &[a.export(day_one_last + 1, a.last_seq())],
    )
    .await;
    let next = a.receipts.last().unwrap()["fdm_time"].as_str().unwrap()[..10].to_owned();
    assert_ne!(next, date);
    let (status, slice) = office
        .get(&format!(
            "/v1/establishments/a/export?from={next}&to={next}"
        ))
        .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&slice));
    let header: Value =
        serde_json::from_str(String::from_utf8_lossy(&slice).lines().next().unwrap()).unwrap();
    assert_eq!(header["first_seq"], day_one_last + 1, "{header}");
    assert_eq!(header["last_seq"], a.last_seq(), "{header}");
    let file = dir.path().join("slice.jsonl");
    std::fs::write(&file, &slice).unwrap();
    let (code, text) = run(&file, &["--key", &key]);
    assert_eq!(code, Some(0), "{text}");
    // Without the key, fdmctl says the header's keys are not anchored.
    let (code, text) = run(&file, &[]);
    assert_eq!(code, Some(1), "{text}");
    office.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_must_continue_the_stored_chain() {
    let office = Office::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut a = FdmBox::new(&dir.path().join("a"), SEED_A);
    a.orders(5);
    let cred = office.enrol("a", vec![a.public_key()]).await;
    let first = a.last_seq();
    push_all(&office, "a", &cred, &[a.export(1, first)]).await;
    a.orders(5);
    let last = a.last_seq();
    // The stored chain says one more fiscal event was registered than the box's next one
    // follows: the segment chains by hash but its counters do not continue.
    let client = office.pool.get().await.unwrap();
    client
        .execute(
            "UPDATE chain_counters SET value = value + 1 WHERE establishment_id = 'a' AND counter = 'total'",
            &[],
        )
        .await
        .unwrap();
    let before = stored_state(&office, "a").await;
    let (status, answer) = office.push("a", &cred, &a.export(first + 1, last)).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["error"], "counter_discontinuity", "{answer}");
    assert_eq!(stored_state(&office, "a").await, before);
    assert_eq!(
        flag(&office, "a").await,
        (true, Some("counter_discontinuity".into()), 1)
    );
    office.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn days_with_sales_no_z_report_covers_are_listed() {
    let office = Office::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut a = FdmBox::new(&dir.path().join("a"), SEED_A);
    let cred = office.enrol("a", vec![a.public_key()]).await;
    let day = chrono::Duration::days(1);
    // 2 November: sales, closed by a Z. 3 and 4 November: sales, no Z. 5 November: sales.
    a.orders(4);
    a.z_report();
    for _ in 0..3 {
        a.clock.advance(day);
        a.orders(3);
    }
    let mut sent = 0;
    let mut push_new = |a: &FdmBox| {
        let (from, to) = (sent + 1, a.last_seq());
        sent = to;
        a.export(from, to)
    };
    push_all(&office, "a", &cred, &[push_new(&a)]).await;
    let list = office.get_json("/v1/establishments").await;
    assert_eq!(
        list["establishments"][0]["days_without_z"],
        json!(["2026-11-03", "2026-11-04"]),
        "{list}"
    );
    // A Z on the 5th covers them; the next day is not over yet.
    a.z_report();
    a.clock.advance(day);
    a.orders(2);
    push_all(&office, "a", &cred, &[push_new(&a)]).await;
    let list = office.get_json("/v1/establishments").await;
    assert_eq!(
        list["establishments"][0]["days_without_z"],
        json!([]),
        "{list}"
    );
    office.stop().await;
}

/// Flips one bit of record `seq`'s signature in a segment (its bytes and hash stay right).
fn bad_signature(segment: &[u8], seq: u64) -> Vec<u8> {
    let mut out = String::new();
    for line in String::from_utf8(segment.to_vec()).unwrap().lines() {
        let mut v: Value = serde_json::from_str(line).unwrap();
        if v["type"] == "record" && v["seq"] == seq {
            let mut signature = hex::decode(v["signature"].as_str().unwrap()).unwrap();
            signature[20] ^= 1;
            v["signature"] = json!(hex::encode(signature));
        }
        out.push_str(&serde_json::to_string(&v).unwrap());
        out.push('\n');
    }
    out.into_bytes()
}

/// Signatures are checked on both cores, a segment's records many at a time: one bad signature
/// among hundreds of good records is still found, and named, whatever else is wrong later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_signature_in_a_large_segment_is_named() {
    let office = Office::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut b = FdmBox::new(&dir.path().join("a"), SEED_A);
    b.orders(400);
    let credential = office.enrol("gent-09", vec![b.public_key()]).await;
    let last = b.last_seq();
    assert!(last > 300, "{last} records");
    let segment = b.export(1, last);
    let before = stored_state(&office, "gent-09").await;
    for k in [2, 150, last] {
        let (status, answer) = office
            .push("gent-09", &credential, &bad_signature(&segment, k))
            .await;
        assert_eq!(status, 422, "{answer}");
        assert_eq!(answer["error"], "verification_failed", "{answer}");
        assert_eq!(answer["seq"], k, "{answer}");
        assert_eq!(stored_state(&office, "gent-09").await, before);
    }
    // A bad signature before a changed record: the signature is named; and the other way round.
    let cola: Vec<u64> = String::from_utf8(segment.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["type"] == "record" && v["record"].as_str().unwrap().contains("\"2.20\""))
        .map(|v| v["seq"].as_u64().unwrap())
        .collect();
    let (early, late) = (cola[cola.len() / 4], cola[3 * cola.len() / 4]);
    let both = forge(&bad_signature(&segment, early), late);
    let (_, answer) = office.push("gent-09", &credential, &both).await;
    assert_eq!(answer["seq"], early, "{answer}");
    let both = bad_signature(&forge(&segment, early), late);
    let (_, answer) = office.push("gent-09", &credential, &both).await;
    assert_eq!(answer["seq"], early, "{answer}");
    assert_eq!(stored_state(&office, "gent-09").await, before);
    // The segment as signed is stored whole.
    let (status, answer) = office.push("gent-09", &credential, &segment).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(stored_state(&office, "gent-09").await["last_seq"], last);
    office.stop().await;
}

/// A segment's lines are read on both cores, thousands at a time: a bad line in the middle of a
/// large segment is named by its line number, as when the lines were read one by one, the
/// segment is kept as evidence and nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_line_in_a_large_segment_is_named() {
    let office = Office::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut b = FdmBox::new(&dir.path().join("a"), SEED_A);
    b.orders(400);
    let credential = office.enrol("leuven-3", vec![b.public_key()]).await;
    let last = b.last_seq();
    let segment = String::from_utf8(b.export(1, last)).unwrap();
    let before = stored_state(&office, "leuven-3").await;
    let lines: Vec<&str> = segment.lines().collect();
    // Line k holds record k - 1 (line 1 is the header).
    for (k, replacement, problem) in [
        (
            last as usize / 2,
            "{}".to_owned(),
            "not a record or end line: missing field `type` at line 1 column 2".to_owned(),
        ),
        (
            last as usize / 2 + 1,
            lines[last as usize / 2 + 1].to_owned(),
            format!(
                "record {} where record {} was expected",
                last / 2 + 1,
                last / 2
            ),
        ),
    ] {
        let mut bad = lines.clone();
        bad[k - 1] = &replacement;
        let body: String = bad.iter().map(|l| format!("{l}\n")).collect();
        let (status, answer) = office.push("leuven-3", &credential, body.as_bytes()).await;
        assert_eq!(status, 422, "{answer}");
        assert_eq!(answer["error"], "malformed_segment", "{answer}");
        assert_eq!(
            answer["message"],
            format!("segment line {k}: {problem}"),
            "{answer}"
        );
        assert_eq!(stored_state(&office, "leuven-3").await, before);
    }
    assert_eq!(
        flag(&office, "leuven-3").await,
        (true, Some("malformed_segment".into()), 2)
    );
    office.stop().await;
}

/// Schema 2: `records` has no foreign key to `establishments` (the ingest locks the
/// establishment's row), but an establishment with stored records still cannot be deleted or
/// renamed; `canonical` is stored uncompressed; other updates of an establishment go through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_2_keeps_records_tied_to_their_establishment() {
    let office = Office::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut b = FdmBox::new(&dir.path().join("a"), SEED_A);
    b.orders(5);
    let credential = office.enrol("namur-1", vec![b.public_key()]).await;
    push_all(
        &office,
        "namur-1",
        &credential,
        &segments(&b, 1, b.last_seq(), 100),
    )
    .await;
    let client = office.pool.get().await.unwrap();
    let version: i32 = client
        .query_one("SELECT max(version) FROM schema_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(version, 2);
    let keys = office
        .count(
            "SELECT count(*) FROM pg_constraint
              WHERE conrelid = 'records'::regclass AND contype = 'f'",
        )
        .await;
    assert_eq!(keys, 0);
    let storage: i8 = client
        .query_one(
            "SELECT attstorage FROM pg_attribute
              WHERE attrelid = 'records'::regclass AND attname = 'canonical'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(storage as u8, b'e');
    for sql in [
        "DELETE FROM enrolled_keys WHERE establishment_id = 'namur-1';
         DELETE FROM chain_counters WHERE establishment_id = 'namur-1';
         DELETE FROM chain_signers WHERE establishment_id = 'namur-1';
         DELETE FROM turnover_daily WHERE establishment_id = 'namur-1';
         DELETE FROM establishments WHERE id = 'namur-1'",
        "UPDATE establishments SET id = 'namur-2' WHERE id = 'namur-1'",
        "TRUNCATE establishments CASCADE",
    ] {
        let e = client
            .batch_execute(&format!("BEGIN; {sql}; COMMIT"))
            .await
            .expect_err(sql);
        client.batch_execute("ROLLBACK").await.unwrap();
        assert!(format!("{e:?}").contains("establishment"), "{sql}: {e:?}");
    }
    client
        .batch_execute("UPDATE establishments SET name = 'Namur', id = id WHERE id = 'namur-1'")
        .await
        .unwrap();
    assert_eq!(
        office
            .count("SELECT count(*) FROM records WHERE establishment_id = 'namur-1'")
            .await,
        b.last_seq() as i64
    );
    office.stop().await;
}
