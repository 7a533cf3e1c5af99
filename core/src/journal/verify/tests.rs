//! The chunked, parallel verifier against the one-by-one verifier it replaced ([`reference`]):
//! same first bad record, same problem, for the database and for exports. In unit tests a chunk
//! holds 256 records, so these journals span several chunks.

#![allow(clippy::unwrap_used)]

use super::parallel::CHUNK_RECORDS;
use super::{Anchor, RecordParts, Verifier, VerifyError, VerifySummary, reference, verify_records};
use crate::journal::export::{
    EXPORT_FORMAT, EXPORT_VERSION, ExportError, ExportHeader, verify_export,
};
use crate::journal::record::{Envelope, GENESIS_PREV_HASH, RecordKind, record_hash};
use crate::journal::store::{IndexColumns, StoredRecord};
use ed25519_dalek::{Signer as _, SigningKey};
use serde_json::{Map, Value, json};

const TIME: &str = "2026-12-06T06:00:00.000+01:00";

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn signer_id(seed: u8) -> String {
    format!("DEVSW-{seed:08}")
}

/// A record signed by `seed`'s key, with the index columns the writer would store.
fn record(
    seq: u64,
    kind: RecordKind,
    prev: &[u8; 32],
    body: Map<String, Value>,
    seed: u8,
) -> StoredRecord {
    let id = signer_id(seed);
    let canonical = Envelope {
        seq,
        kind,
        time: TIME,
        fdm_id: "DEVFDMD0001",
        signer_id: &id,
        prev_hash: prev,
        body: &body,
    }
    .canonical_bytes()
    .unwrap();
    let hash = record_hash(&canonical);
    let text = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_owned);
    let num = |k: &str| body.get(k).and_then(Value::as_u64);
    StoredRecord {
        seq,
        kind: kind.as_str().into(),
        canonical,
        prev_hash: prev.to_vec(),
        hash: hash.to_vec(),
        signature: key(seed).sign(&hash).to_bytes().to_vec(),
        signer_id: id,
        time: TIME.into(),
        index: IndexColumns {
            register_id: text("register"),
            request_id: text("request_id"),
            request_digest: text("request_digest"),
            label: text("label"),
            event_counter: num("event_counter"),
            total_counter: num("total_counter"),
            series: text("ticket_series"),
            series_number: num("ticket_number"),
        },
    }
}

fn declaration(seed: u8) -> Map<String, Value> {
    let public = hex::encode(key(seed).verifying_key().to_bytes());
    let mut body = Map::new();
    body.insert(
        "signer".into(),
        json!({"algorithm": "ed25519", "certified": false, "id": signer_id(seed), "public_key": public}),
    );
    body
}

fn sale(n: u64) -> Map<String, Value> {
    let v = json!({
        "source": "precomputed", "label": "NS", "event_counter": n, "total_counter": n,
        "ticket_series": "N", "ticket_number": n,
        "register": "till-1", "request_id": format!("r-{n}"), "request_digest": format!("d-{n}"),
    });
    v.as_object().cloned().unwrap()
}

/// `n` records: `journal_open`, then fiscal events; a `signer_change` to key 9 at `change_at`.
fn journal(n: u64, change_at: Option<u64>) -> Vec<StoredRecord> {
    let mut rows = vec![record(
        1,
        RecordKind::JournalOpen,
        &GENESIS_PREV_HASH,
        declaration(7),
        7,
    )];
    let mut seed = 7;
    let mut sales = 0;
    for seq in 2..=n {
        let prev: [u8; 32] = rows[rows.len() - 1].hash.clone().try_into().unwrap();
        if change_at == Some(seq) {
            seed = 9;
            rows.push(record(
                seq,
                RecordKind::SignerChange,
                &prev,
                declaration(9),
                9,
            ));
            continue;
        }
        sales += 1;
        rows.push(record(
            seq,
            RecordKind::FiscalEvent,
            &prev,
            sale(sales),
            seed,
        ));
    }
    rows
}

fn check_rows(rows: &[StoredRecord], keys: Vec<Vec<u8>>) -> Result<VerifySummary, VerifyError> {
    let mut verifier = Verifier::new(true, keys, Vec::new());
    verify_records::<VerifyError>(&mut verifier, |f| {
        for r in rows {
            f(r.clone())?;
        }
        Ok(())
    })?;
    Ok(verifier.finish())
}

fn reference_rows(rows: &[StoredRecord], keys: Vec<Vec<u8>>) -> Result<VerifySummary, VerifyError> {
    let mut verifier = reference::Verifier::new(true, keys, Vec::new());
    for r in rows {
        verifier.check_stored(r)?;
    }
    Ok(verifier.finish())
}

fn export_lines(rows: &[StoredRecord], from: usize) -> Vec<String> {
    let slice = &rows[from..];
    let header = ExportHeader {
        line_type: "header".into(),
        format: EXPORT_FORMAT.into(),
        version: EXPORT_VERSION,
        fdm_id: "DEVFDMD0001".into(),
        first_seq: slice.first().map_or(1, |r| r.seq),
        last_seq: slice.last().map_or(0, |r| r.seq),
        exported_at: TIME.into(),
        signers: vec![super::DeclaredSigner {
            id: signer_id(7),
            algorithm: "ed25519".into(),
            public_key: hex::encode(key(7).verifying_key().to_bytes()),
        }],
    };
    let mut lines = vec![serde_json::to_string(&header).unwrap()];
    for r in slice {
        lines.push(
            json!({"type": "record", "seq": r.seq, "hash": hex::encode(&r.hash),
                "signature": hex::encode(&r.signature),
                "record": String::from_utf8(r.canonical.clone()).unwrap()})
            .to_string(),
        );
    }
    lines.push(
        json!({"type": "end", "records": slice.len(),
            "last_hash": slice.last().map(|r| hex::encode(&r.hash))})
        .to_string(),
    );
    lines
}

/// Both verifiers' verdicts on an export, as text (`ExportError` is not comparable).
fn both_on_export(text: &str) -> (String, String) {
    both_on_export_with(text, vec![], vec![])
}

/// Both verifiers' verdicts on an export checked with keys and anchors; asserts they agree.
fn both_on_export_with(text: &str, keys: Vec<Vec<u8>>, anchors: Vec<Anchor>) -> (String, String) {
    let show = |r: Result<(ExportHeader, VerifySummary), ExportError>| match r {
        Ok((_, s)) => format!("ok {s:?}"),
        Err(e) => format!("error {e:?}"),
    };
    (
        show(crate::journal::export::verify_export_anchored(
            text.as_bytes(),
            keys.clone(),
            anchors.clone(),
        )),
        show(reference::verify_export(text.as_bytes(), keys, anchors)),
    )
}

fn bad_signature(rows: &mut [StoredRecord], seq: u64) {
    rows[seq as usize - 1].signature[10] ^= 1;
}

fn first_bad(rows: &[StoredRecord]) -> (u64, String) {
    let e = check_rows(rows, vec![]).unwrap_err();
    assert_eq!(
        Err(e.clone()),
        reference_rows(rows, vec![]),
        "as the one-by-one verifier"
    );
    (e.seq, e.problem)
}

#[test]
fn an_untouched_journal_verifies_like_before() {
    let rows = journal(3 * CHUNK_RECORDS as u64 + 17, Some(400));
    let summary = check_rows(&rows, vec![]).unwrap();
    assert_eq!(summary.records, rows.len() as u64);
    assert_eq!(summary.signers.len(), 2);
    assert_eq!(Ok(summary), reference_rows(&rows, vec![]));
    let (new, old) = both_on_export(&export_lines(&rows, 0).join("\n"));
    assert!(new.starts_with("ok"), "{new}");
    assert_eq!(new, old);
}

#[test]
fn a_bad_signature_in_the_middle_of_a_chunk_is_named_before_later_problems() {
    let mut rows = journal(2 * CHUNK_RECORDS as u64 + 40, None);
    // In the second chunk: a bad signature in its middle, another one after it, then a record
    // whose contents were changed (found by the in-order pass, after both signatures).
    let middle = CHUNK_RECORDS as u64 + CHUNK_RECORDS as u64 / 2 + 3;
    bad_signature(&mut rows, middle);
    bad_signature(&mut rows, middle + 5);
    rows[middle as usize + 20].canonical[30] ^= 1;
    assert_eq!(
        first_bad(&rows),
        (middle, format!("bad signature (signer {})", signer_id(7)))
    );
    let (new, old) = both_on_export(&export_lines(&rows, 0).join("\n"));
    assert!(new.contains(&format!("seq: {middle}")), "{new}");
    assert_eq!(new, old);
}

#[test]
fn a_problem_before_a_bad_signature_in_the_same_chunk_wins() {
    let mut rows = journal(CHUNK_RECORDS as u64 + 40, None);
    rows[99].canonical[30] ^= 1; // record 100: contents changed
    bad_signature(&mut rows, 150);
    assert_eq!(first_bad(&rows).0, 100);
    // A problem after the signature in the same record (a counter gap, properly signed) loses
    // to a bad signature of that record: the signature is checked first.
    let mut rows = journal(CHUNK_RECORDS as u64 + 40, None);
    let prev: [u8; 32] = rows[118].hash.clone().try_into().unwrap();
    rows[119] = record(120, RecordKind::FiscalEvent, &prev, sale(500), 7);
    let gap = first_bad(&rows);
    assert_eq!(gap.0, 120);
    assert!(gap.1.contains("follows"), "{gap:?}");
    bad_signature(&mut rows, 120);
    assert_eq!(
        first_bad(&rows),
        (120, format!("bad signature (signer {})", signer_id(7)))
    );
}

#[test]
fn of_two_chunks_with_problems_the_earlier_one_wins() {
    let mut rows = journal(3 * CHUNK_RECORDS as u64, None);
    let second = CHUNK_RECORDS as u64 + 77;
    let third = 2 * CHUNK_RECORDS as u64 + 5;
    rows[third as usize - 1].canonical[40] ^= 1;
    bad_signature(&mut rows, third + 1);
    bad_signature(&mut rows, second);
    assert_eq!(first_bad(&rows).0, second);
    let (new, old) = both_on_export(&export_lines(&rows, 0).join("\n"));
    assert!(new.contains(&format!("seq: {second}")), "{new}");
    assert_eq!(new, old);
    // And the bad signature of the earlier chunk at its very end.
    let mut rows = journal(3 * CHUNK_RECORDS as u64, None);
    bad_signature(&mut rows, third);
    bad_signature(&mut rows, CHUNK_RECORDS as u64);
    assert_eq!(first_bad(&rows).0, CHUNK_RECORDS as u64);
}

/// A small deterministic generator for the tampering below.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n.max(1)
    }
}

/// One random change of the kinds an attacker or a broken disk makes.
fn tamper(rows: &mut Vec<StoredRecord>, rng: &mut Lcg) {
    let i = rng.below(rows.len() as u64) as usize;
    match rng.below(9) {
        0 => rows[i].signature[rng.below(64) as usize] ^= 1 << rng.below(8),
        1 => {
            let at = rng.below(rows[i].canonical.len() as u64) as usize;
            rows[i].canonical[at] ^= 1 << rng.below(7);
        }
        2 => {
            rows.remove(i);
        }
        3 => {
            let j = rng.below(rows.len() as u64) as usize;
            rows.swap(i, j);
        }
        4 => rows[i].index.label = Some("PS".into()),
        5 => rows[i].signature.truncate(63),
        6 => {
            // Re-signed with an undeclared key.
            let hash = rows[i].hash.clone();
            rows[i].signature = key(3).sign(&hash).to_bytes().to_vec();
        }
        7 => {
            // Contents changed, hash recomputed, signature kept.
            let at = rows[i].canonical.len() / 3;
            rows[i].canonical[at] ^= 1;
            rows[i].hash = record_hash(&rows[i].canonical).to_vec();
        }
        _ => {
            // A properly signed record with a counter or chain problem.
            let seq = rows[i].seq;
            let prev: [u8; 32] = rows[i].prev_hash.clone().try_into().unwrap_or([1; 32]);
            rows[i] = record(seq, RecordKind::FiscalEvent, &prev, sale(seq + 3), 7);
        }
    }
}

#[test]
fn random_tampering_gets_the_same_verdict_as_the_one_by_one_verifier() {
    let clean = journal(2 * CHUNK_RECORDS as u64 + 60, Some(300));
    let mut rng = Lcg(20261206);
    for round in 0..60 {
        let mut rows = clean.clone();
        for _ in 0..=rng.below(4) {
            tamper(&mut rows, &mut rng);
        }
        let new = check_rows(&rows, vec![]);
        assert_eq!(new, reference_rows(&rows, vec![]), "round {round}");
        let trusted = vec![key(7).verifying_key().to_bytes().to_vec()];
        assert_eq!(
            check_rows(&rows, trusted.clone()),
            reference_rows(&rows, trusted),
            "round {round}, trusted key"
        );
        // The same records as an export, whole or from its 100th record, sometimes with a line
        // removed or damaged.
        let mut lines = export_lines(&rows, if round % 2 == 0 { 0 } else { 99 });
        match rng.below(4) {
            0 => {
                let at = 1 + rng.below(lines.len() as u64 - 1) as usize;
                let place = rng.below(lines[at].len() as u64) as usize;
                lines[at].insert(place, '#');
            }
            1 => {
                lines.pop();
            }
            _ => {}
        }
        let (new, old) = both_on_export(&lines.join("\n"));
        assert_eq!(new, old, "round {round}, export");
    }
}

#[test]
fn rows_read_before_the_source_fails_are_checked_before_its_error_is_reported() {
    let read_error = VerifyError {
        seq: 0,
        problem: "the source failed".into(),
    };
    let run = |rows: &[StoredRecord]| {
        let mut verifier = Verifier::new(true, vec![], Vec::new());
        verify_records::<VerifyError>(&mut verifier, |f| {
            for r in rows {
                f(r.clone())?;
            }
            Err(read_error.clone())
        })
    };
    let mut rows = journal(CHUNK_RECORDS as u64 + 40, None);
    assert_eq!(run(&rows), Err(read_error.clone()));
    bad_signature(&mut rows, CHUNK_RECORDS as u64 + 30);
    assert_eq!(run(&rows).unwrap_err().seq, CHUNK_RECORDS as u64 + 30);
}

/// Records `from..` of `rows` re-signed from record `from` on with key `seed` under its own id,
/// declared nowhere in the chain: a forger's tail, chained properly.
fn resign_tail(rows: &mut [StoredRecord], from: u64, seed: u8) {
    let mut prev: [u8; 32] = rows[from as usize - 2].hash.clone().try_into().unwrap();
    for row in rows.iter_mut().skip(from as usize - 1) {
        let envelope: Value = serde_json::from_slice(&row.canonical).unwrap();
        let body = envelope["body"].as_object().cloned().unwrap();
        let kind = RecordKind::parse(envelope["kind"].as_str().unwrap()).unwrap();
        *row = record(row.seq, kind, &prev, body, seed);
        prev = row.hash.clone().try_into().unwrap();
    }
}

/// An export whose header also lists `extra`'s signer (the header is not signed).
fn export_with_header_signer(rows: &[StoredRecord], from: usize, extra: u8) -> Vec<String> {
    let mut lines = export_lines(rows, from);
    let mut header: Value = serde_json::from_str(&lines[0]).unwrap();
    header["signers"].as_array_mut().unwrap().push(json!({
        "id": signer_id(extra), "algorithm": "ed25519",
        "public_key": hex::encode(key(extra).verifying_key().to_bytes()),
    }));
    lines[0] = header.to_string();
    lines
}

fn anchor(rows: &[StoredRecord], seq: u64) -> Anchor {
    Anchor {
        seq,
        hash: hex::encode(&rows[seq as usize - 1].hash),
    }
}

#[test]
fn a_whole_export_does_not_take_keys_from_its_header() {
    let mut rows = journal(CHUNK_RECORDS as u64 + 30, None);
    resign_tail(&mut rows, CHUNK_RECORDS as u64 + 20, 3);
    let lines = export_with_header_signer(&rows, 0, 3);
    let (new, old) = both_on_export(&lines.join("\n"));
    assert_eq!(new, old);
    let at = CHUNK_RECORDS as u64 + 20;
    assert!(new.contains(&format!("seq: {at}")), "{new}");
    assert!(
        new.contains(&format!(
            "signer {} is not declared in the chain",
            signer_id(3)
        )),
        "{new}"
    );
    // Even with the forger's key given (and the real one): a whole journal declares its own
    // signers.
    let (new, old) = both_on_export_with(
        &lines.join("\n"),
        vec![
            key(7).verifying_key().to_bytes().to_vec(),
            key(3).verifying_key().to_bytes().to_vec(),
        ],
        vec![],
    );
    assert_eq!(new, old);
    assert!(new.contains("is not declared in the chain"), "{new}");
}

#[test]
fn a_slice_lists_the_header_keys_no_key_or_anchor_covers() {
    let rows = journal(CHUNK_RECORDS as u64 + 100, Some(300));
    let text = export_lines(&rows, 99).join("\n");
    // Records 100..=299 are signed with key 7, which only the header declares; from 300 on key 9,
    // declared by the slice's own signer_change.
    let (new, old) = both_on_export(&text);
    assert_eq!(new, old);
    let (_, summary) = verify_export(text.as_bytes(), vec![]).unwrap();
    assert_eq!(summary.unanchored_keys.len(), 1, "{summary:?}");
    let unanchored = &summary.unanchored_keys[0];
    assert_eq!(
        (
            unanchored.signer.id.as_str(),
            unanchored.first_seq,
            unanchored.last_seq
        ),
        (signer_id(7).as_str(), 100, 299)
    );
    let check = |keys: Vec<Vec<u8>>, anchors: Vec<Anchor>| {
        let (new, old) = both_on_export_with(&text, keys.clone(), anchors.clone());
        assert_eq!(new, old);
        crate::journal::export::verify_export_anchored(text.as_bytes(), keys, anchors)
            .map(|(_, s)| s)
    };
    // The keys given: nothing unanchored.
    let both = vec![
        key(7).verifying_key().to_bytes().to_vec(),
        key(9).verifying_key().to_bytes().to_vec(),
    ];
    assert!(check(both, vec![]).unwrap().unanchored_keys.is_empty());
    // An anchor at the last record signed with the header's key, or later, covers it.
    for seq in [299, 300, rows.len() as u64] {
        let s = check(vec![], vec![anchor(&rows, seq)]).unwrap();
        assert!(s.unanchored_keys.is_empty(), "anchor {seq}: {s:?}");
        assert_eq!(s.anchors, vec![anchor(&rows, seq)]);
    }
    // An earlier one does not.
    let s = check(vec![], vec![anchor(&rows, 298)]).unwrap();
    assert_eq!(s.unanchored_keys.len(), 1, "{s:?}");
}

#[test]
fn anchors_must_match_and_lie_within_the_records() {
    let rows = journal(CHUNK_RECORDS as u64 + 100, None);
    let text = export_lines(&rows, 99).join("\n");
    let last = rows.len() as u64;
    let run = |anchors: Vec<Anchor>| {
        let (new, old) = both_on_export_with(&text, vec![], anchors);
        assert_eq!(new, old);
        new
    };
    assert!(run(vec![anchor(&rows, 150), anchor(&rows, last)]).starts_with("ok"));
    let mut wrong = anchor(&rows, 150);
    wrong.hash = hex::encode(&rows[10].hash);
    let verdict = run(vec![anchor(&rows, last), wrong]);
    assert!(
        verdict.contains("Anchor(AnchorError { seq: 150"),
        "{verdict}"
    );
    assert!(verdict.contains("the anchor says"), "{verdict}");
    let beyond = Anchor {
        seq: last + 1,
        hash: hex::encode([7u8; 32]),
    };
    let verdict = run(vec![beyond]);
    assert!(verdict.contains(&format!("seq: {}", last + 1)), "{verdict}");
    assert!(verdict.contains("is not there"), "{verdict}");
    let verdict = run(vec![anchor(&rows, 99)]);
    assert!(verdict.contains("seq: 99"), "{verdict}");
    assert!(verdict.contains("before the first record"), "{verdict}");
    // The same for a database, whole.
    let check = |anchors: Vec<Anchor>| {
        let mut verifier = Verifier::new(true, vec![], Vec::new()).with_anchors(anchors);
        verify_records::<VerifyError>(&mut verifier, |f| {
            for r in &rows {
                f(r.clone())?;
            }
            Ok(())
        })
        .unwrap();
        verifier.anchor_problem()
    };
    assert_eq!(check(vec![anchor(&rows, 1), anchor(&rows, last)]), None);
    assert_eq!(
        check(vec![Anchor {
            seq: last + 5,
            hash: hex::encode([1u8; 32])
        }])
        .map(|e| e.seq),
        Some(last + 5)
    );
}

#[test]
fn anchors_are_read_as_seq_colon_hash() {
    let hash = "AB".repeat(32);
    let a: Anchor = format!("12:{hash}").parse().unwrap();
    assert_eq!((a.seq, a.hash), (12, "ab".repeat(32)));
    // As a ticket prints it: in groups of eight.
    let grouped = "abababab ".repeat(8);
    let a: Anchor = format!("12:{grouped}").parse().unwrap();
    assert_eq!(a.hash, "ab".repeat(32));
    for bad in [
        "12",
        "0:00",
        &format!("x:{hash}"),
        &format!("0:{hash}"),
        "3:abc",
        &format!("3:{}", "g".repeat(64)),
    ] {
        assert!(bad.parse::<Anchor>().is_err(), "{bad}");
    }
}

fn check_many_rows(
    rows: &[StoredRecord],
    keys: Vec<Vec<u8>>,
) -> Result<VerifySummary, VerifyError> {
    let mut verifier = Verifier::new(true, keys, Vec::new());
    verifier.check_many(rows, |r| RecordParts {
        seq: r.seq,
        canonical: &r.canonical,
        hash: &r.hash,
        signature: &r.signature,
    })?;
    Ok(verifier.finish())
}

fn reference_records(
    rows: &[StoredRecord],
    keys: Vec<Vec<u8>>,
) -> Result<VerifySummary, VerifyError> {
    let mut verifier = reference::Verifier::new(true, keys, Vec::new());
    for r in rows {
        verifier.check(r.seq, &r.canonical, &r.hash, &r.signature)?;
    }
    Ok(verifier.finish())
}

/// `check_many` (the back office's segments) names the one-by-one verifier's first bad record:
/// a bad signature alone in the middle of a chunk, before and after other problems, and random
/// tampering over several chunks.
#[test]
fn check_many_gets_the_one_by_one_verdict() {
    let clean = journal(2 * CHUNK_RECORDS as u64 + 60, Some(300));
    assert!(check_many_rows(&clean, vec![]).is_ok());
    let mut rows = clean.clone();
    bad_signature(&mut rows, 200);
    let e = check_many_rows(&rows, vec![]).unwrap_err();
    assert_eq!((e.seq, e.problem.starts_with("bad signature")), (200, true));
    assert_eq!(Err(e), reference_records(&rows, vec![]));
    let mut rng = Lcg(20261207);
    for round in 0..40 {
        let mut rows = clean.clone();
        for _ in 0..=rng.below(4) {
            tamper(&mut rows, &mut rng);
        }
        assert_eq!(
            check_many_rows(&rows, vec![]),
            reference_records(&rows, vec![]),
            "round {round}"
        );
    }
}

/// A signature of `hash` by `seed`'s key whose `R` carries a point of order 8. It satisfies the
/// cofactored equation `8[s]B = 8R + 8[k]A` (so a batch whose coefficient for it is a multiple
/// of 8 passes it, and a random coefficient is one with probability 1/8), not the strict one.
fn torsion_signature(seed: u8, hash: &[u8; 32]) -> Vec<u8> {
    use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
    use curve25519_dalek::scalar::{Scalar, clamp_integer};
    use sha2::{Digest, Sha512};
    let wide = |bytes: &[u8]| -> [u8; 64] {
        let mut out = [0u8; 64];
        out.copy_from_slice(bytes);
        out
    };
    let expanded = wide(&Sha512::digest([seed; 32]));
    let mut lower = [0u8; 32];
    lower.copy_from_slice(&expanded[..32]);
    let a = Scalar::from_bytes_mod_order(clamp_integer(lower));
    let public = ED25519_BASEPOINT_POINT * a;
    assert_eq!(
        public.compress().to_bytes(),
        key(seed).verifying_key().to_bytes()
    );
    let r = Scalar::from_bytes_mod_order_wide(&wide(&Sha512::digest(b"a nonce")));
    let big_r = ED25519_BASEPOINT_POINT * r + EIGHT_TORSION[1];
    let mut challenge = Sha512::new();
    challenge.update(big_r.compress().as_bytes());
    challenge.update(public.compress().as_bytes());
    challenge.update(hash);
    let k = Scalar::from_bytes_mod_order_wide(&wide(&challenge.finalize()));
    let s = r + k * a;
    assert_eq!(
        (ED25519_BASEPOINT_POINT * s).mul_by_cofactor(),
        (big_r + public * k).mul_by_cofactor(),
        "the cofactored equation holds"
    );
    assert_ne!(ED25519_BASEPOINT_POINT * s, big_r + public * k);
    [big_r.compress().to_bytes(), s.to_bytes()].concat()
}

/// What a batch equation may let through, strict verification refuses, on every path: a record
/// signed with a torsion component in `R` is named as the first bad record.
#[test]
fn a_signature_with_a_torsion_component_in_r_is_refused() {
    let mut rows = journal(2 * CHUNK_RECORDS as u64, None);
    let at = 300u64;
    let hash: [u8; 32] = rows[at as usize - 1].hash.clone().try_into().unwrap();
    let signature = torsion_signature(7, &hash);
    let strict = key(7).verifying_key().verify_strict(
        &hash,
        &ed25519_dalek::Signature::from_bytes(&signature.clone().try_into().unwrap()),
    );
    assert!(strict.is_err());
    rows[at as usize - 1].signature = signature;
    let problem = format!("bad signature (signer {})", signer_id(7));
    assert_eq!(first_bad(&rows), (at, problem.clone()));
    let e = check_many_rows(&rows, vec![]).unwrap_err();
    assert_eq!((e.seq, e.problem), (at, problem));
    let (new, old) = both_on_export(&export_lines(&rows, 0).join("\n"));
    assert_eq!(new, old);
    assert!(
        new.contains("300") && new.contains("bad signature"),
        "{new}"
    );
}

/// A signature answer computed ahead of the chain with a key other than the one in effect
/// ([`super::speculate`]) is never used: the signature is checked again with the right key, both
/// ways (a good signature "refused" by the wrong key, a bad one "accepted" by it).
#[test]
fn a_signature_answered_with_another_key_is_checked_again() {
    use super::content::prepare_stored;
    use super::speculate::Checked;
    use super::{DeclaredSigner, KnownSigner};
    use std::sync::Arc;
    let wrong = Arc::new(KnownSigner::new(
        DeclaredSigner {
            id: signer_id(7),
            algorithm: "ed25519".into(),
            public_key: hex::encode(key(9).verifying_key().to_bytes()),
        },
        false,
    ));
    let guessed = |rows: &[StoredRecord], seq: u64, good: bool| {
        let mut prepared: Vec<_> = rows.iter().map(prepare_stored).collect();
        prepared[seq as usize - 1].checked = Some(Checked {
            signer: wrong.clone(),
            good,
        });
        Verifier::new(true, vec![], vec![]).check_chunk(&prepared)
    };
    let mut rows = journal(60, None);
    assert_eq!(guessed(&rows, 10, false), Ok(()));
    bad_signature(&mut rows, 20);
    let e = guessed(&rows, 20, true).unwrap_err();
    assert_eq!((e.seq, e.problem), first_bad(&rows));
    assert_eq!(e.seq, 20);
}
