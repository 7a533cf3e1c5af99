//! A body's canonical bytes, encoded on the caller's thread before the entry reaches the writer.
//!
//! Most of a record's canonical bytes are its body, and the body does not depend on where the
//! record lands in the journal, except for the members the writer adds (the request key, the
//! counters, the ticket number). So the caller encodes every other member once, in canonical
//! order, and the writer only merges its own few members in and copies bytes: the encoding
//! leaves the writer's critical path and runs on as many threads as there are callers. The
//! bytes are the same as the canonical encoding of the finished body (checked in debug builds
//! for every record, and by the property test below).

use super::Entry;
use super::canonical::{
    CanonicalError, in_canonical_order, write_canonical, write_canonical_str, write_canonical_u64,
};
use super::store::IndexColumns;
use serde_json::{Map, Value};
use std::cmp::Ordering;

/// The members of an entry's body that the writer does not set, each as `"key":value` in
/// canonical encoding, in canonical order. Two allocations only: the entry is freed on the
/// writer's thread, and every block freed there that a caller allocated costs both sides.
#[derive(Debug, Default)]
pub(super) struct EncodedBody {
    bytes: Vec<u8>,
    /// Where each member's `"key":value` ends in `bytes` (it starts where the previous one
    /// ends). The keys are the body's own, in its iteration order.
    ends: Vec<usize>,
}

/// A member the writer sets, with its value.
enum WriterValue<'a> {
    Text(&'a str),
    Number(u64),
}

impl EncodedBody {
    /// Encodes the members of `entry.body` that the writer will not set (see
    /// [`writer_keys`]); those it sets it always overwrites. `None` when the body's keys do not
    /// iterate in canonical order (a key outside the Basic Multilingual Plane; the writer then
    /// encodes the whole body itself), or a value has no canonical form.
    pub(super) fn of(entry: &Entry) -> Option<EncodedBody> {
        if !in_canonical_order(&entry.body) {
            return None;
        }
        let skip = writer_keys(entry);
        let mut encoded = EncodedBody {
            bytes: Vec::with_capacity(1024),
            ends: Vec::with_capacity(entry.body.len()),
        };
        for (key, value) in others(&entry.body, &skip) {
            write_canonical_str(&mut encoded.bytes, key);
            encoded.bytes.push(b':');
            write_canonical(&mut encoded.bytes, value).ok()?;
            encoded.ends.push(encoded.bytes.len());
        }
        Some(encoded)
    }

    /// Appends the whole body as a canonical object: these members merged with the writer's
    /// own, taken from the record's index columns. `body` is the entry's body as numbered by
    /// the writer: the members encoded here, plus the writer's.
    pub(super) fn write_with(
        &self,
        out: &mut Vec<u8>,
        body: &Map<String, Value>,
        index: &IndexColumns,
    ) -> Result<(), CanonicalError> {
        let added = writer_members(index);
        let skip: Vec<&str> = added.iter().map(|(key, _)| *key).collect();
        out.push(b'{');
        let mut first = true;
        let mut start = 0;
        let mut added = added.iter().peekable();
        let mut keys = others(body, &skip).map(|(key, _)| key);
        for end in &self.ends {
            let Some(key) = keys.next() else {
                return Err(CanonicalError::Mismatch);
            };
            while let Some((added_key, value)) =
                added.next_if(|(k, _)| utf16_order(k, key) == Ordering::Less)
            {
                write_member(out, &mut first, added_key, value)?;
            }
            if !std::mem::take(&mut first) {
                out.push(b',');
            }
            out.extend_from_slice(&self.bytes[start..*end]);
            start = *end;
        }
        if keys.next().is_some() {
            return Err(CanonicalError::Mismatch);
        }
        for (added_key, value) in added {
            write_member(out, &mut first, added_key, value)?;
        }
        out.push(b'}');
        Ok(())
    }
}

/// The body's members other than `skip`, in the body's order.
fn others<'a>(
    body: &'a Map<String, Value>,
    skip: &'a [&'a str],
) -> impl Iterator<Item = (&'a String, &'a Value)> + 'a {
    body.iter().filter(|(key, _)| !skip.contains(&key.as_str()))
}

/// The body members the writer sets for this entry (`number_entry` in the writer): present
/// exactly when the entry has a request key, counters or a series.
fn writer_keys(entry: &Entry) -> Vec<&'static str> {
    let mut keys = Vec::with_capacity(7);
    if entry.key.is_some() {
        keys.extend(["register", "request_id", "request_digest"]);
    }
    if entry.counters.is_some() {
        keys.extend(["event_counter", "total_counter"]);
    }
    if entry.series.is_some() {
        keys.extend(["ticket_series", "ticket_number"]);
    }
    keys
}

/// The writer's members from the index columns it filled, in canonical order.
fn writer_members(index: &IndexColumns) -> Vec<(&'static str, WriterValue<'_>)> {
    fn text<'a>(
        key: &'static str,
        value: &'a Option<String>,
    ) -> Option<(&'static str, WriterValue<'a>)> {
        value.as_deref().map(|v| (key, WriterValue::Text(v)))
    }
    fn number(
        key: &'static str,
        value: Option<u64>,
    ) -> Option<(&'static str, WriterValue<'static>)> {
        value.map(|v| (key, WriterValue::Number(v)))
    }
    let mut members = Vec::with_capacity(7);
    members.extend(number("event_counter", index.event_counter));
    members.extend(text("register", &index.register_id));
    members.extend(text("request_digest", &index.request_digest));
    members.extend(text("request_id", &index.request_id));
    members.extend(number("ticket_number", index.series_number));
    members.extend(text("ticket_series", &index.series));
    members.extend(number("total_counter", index.total_counter));
    members
}

fn write_member(
    out: &mut Vec<u8>,
    first: &mut bool,
    key: &str,
    value: &WriterValue<'_>,
) -> Result<(), CanonicalError> {
    if !std::mem::take(first) {
        out.push(b',');
    }
    write_canonical_str(out, key);
    out.push(b':');
    match value {
        WriterValue::Text(text) => write_canonical_str(out, text),
        WriterValue::Number(n) => write_canonical_u64(out, *n)?,
    }
    Ok(())
}

/// Canonical key order: by UTF-16 code units.
fn utf16_order(a: &str, b: &str) -> Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fiscal::Label;
    use crate::journal::RequestKey;
    use crate::journal::canonical::to_canonical;
    use crate::journal::record::RecordKind;
    use proptest::prelude::*;
    use serde_json::json;

    /// What the writer's `number_entry` does to the body, written out again on its own.
    fn numbered(entry: &Entry, index: &IndexColumns) -> Map<String, Value> {
        let mut body = entry.body.clone();
        let mut set = |k: &str, v: Value| {
            body.insert(k.to_owned(), v);
        };
        if let Some(key) = &entry.key {
            set("register", json!(key.register));
            set("request_id", json!(key.request_id));
            set("request_digest", json!(key.digest));
        }
        if entry.counters.is_some() {
            set("event_counter", json!(index.event_counter));
            set("total_counter", json!(index.total_counter));
        }
        if let Some(series) = &entry.series {
            set("ticket_series", json!(series));
            set("ticket_number", json!(index.series_number));
        }
        body
    }

    fn arb_key() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("register".to_owned()),
            Just("request_id".to_owned()),
            Just("total_counter".to_owned()),
            Just("ticket_number".to_owned()),
            Just("lines".to_owned()),
            Just("".to_owned()),
            "[a-z_]{0,14}",
            ".{0,6}",
        ]
    }

    proptest! {
        #[test]
        fn merged_bytes_equal_the_canonical_numbered_body(
            body in prop::collection::btree_map(arb_key(), prop_oneof![
                ".{0,10}".prop_map(Value::String),
                (-1_000_000i64..1_000_000).prop_map(|i| json!(i)),
                prop::collection::vec(".{0,4}", 0..3).prop_map(|v| json!(v)),
                Just(json!({"b": 1, "a": [true, null]})),
            ], 0..10),
            with_key in any::<bool>(),
            with_counters in any::<bool>(),
            with_series in any::<bool>(),
            counter in 1u64..1_000_000,
            number in 1u64..100_000_000,
            texts in prop::collection::vec(".{0,12}", 4),
        ) {
            let mut entry = Entry::new(RecordKind::FiscalEvent, body.into_iter().collect());
            let mut index = IndexColumns::default();
            if with_key {
                entry.key = Some(RequestKey {
                    register: texts[0].clone(),
                    request_id: texts[1].clone(),
                    digest: texts[2].clone(),
                });
                index.register_id = Some(texts[0].clone());
                index.request_id = Some(texts[1].clone());
                index.request_digest = Some(texts[2].clone());
            }
            if with_counters {
                entry.counters = Label::all().next();
                index.event_counter = Some(counter);
                index.total_counter = Some(counter + 7);
            }
            if with_series {
                entry.series = Some(texts[3].clone());
                index.series = Some(texts[3].clone());
                index.series_number = Some(number);
            }
            let Some(encoded) = EncodedBody::of(&entry) else {
                // Only bodies the writer must encode itself.
                prop_assert!(!entry.body.keys().all(|k| k.chars().all(|c| (c as u32) < 0x10000)));
                return Ok(());
            };
            let body = numbered(&entry, &index);
            let mut merged = Vec::new();
            encoded.write_with(&mut merged, &body, &index).unwrap();
            let expected = to_canonical(&Value::Object(body)).unwrap();
            prop_assert_eq!(String::from_utf8_lossy(&merged), String::from_utf8_lossy(&expected));
        }
    }

    #[test]
    fn a_fractional_number_has_no_encoding() {
        let mut body = Map::new();
        body.insert("x".into(), json!(1.5));
        let entry = Entry::new(RecordKind::FiscalEvent, body);
        assert!(EncodedBody::of(&entry).is_none());
    }
}
