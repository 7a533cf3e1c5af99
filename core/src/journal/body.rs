//! A body's canonical bytes, encoded on the caller's thread before the entry reaches the writer.
//!
//! Most of a record's canonical bytes are its body, and the body does not depend on where the
//! record lands in the journal, except for the members the writer adds (the request key, the
//! counters, the ticket number). So the caller encodes every other member once, in canonical
//! order, and the writer only merges its own few members in and copies bytes: the encoding
//! leaves the writer's critical path and runs on as many threads as there are callers. The
//! bytes are the same as the canonical encoding of the finished body (checked in debug builds
//! for every record, and by the property test below).
//!
//! The body itself then stays with the caller: the writer needs only these bytes and where its
//! own members go among them. It answers with its own members alone, which the caller adds to
//! the body it kept (see `Journal::append`). So the body's many small allocations are made and
//! freed on the caller's thread; freeing them on another thread costs both sides.

use super::Entry;
use super::canonical::{
    CanonicalError, in_canonical_order, write_canonical, write_canonical_str, write_canonical_u64,
};
use super::store::IndexColumns;
use serde_json::{Map, Value};
use std::cmp::Ordering;

/// The members the writer may set (`number_entry` in the writer), in canonical order.
const WRITER_KEYS: [&str; 7] = [
    "event_counter",
    "register",
    "request_digest",
    "request_id",
    "ticket_number",
    "ticket_series",
    "total_counter",
];

/// The members of an entry's body that the writer does not set, each as `"key":value` in
/// canonical encoding, in canonical order. Two allocations only: the encoding is freed on the
/// writer's thread, and every block freed there that a caller allocated costs both sides.
#[derive(Debug, Default)]
pub(super) struct EncodedBody {
    bytes: Vec<u8>,
    /// Where each member's `"key":value` ends in `bytes` (it starts where the previous one
    /// ends).
    ends: Vec<usize>,
    /// For each of [`WRITER_KEYS`], how many of the encoded members sort before it: where the
    /// writer's member goes.
    before: [usize; WRITER_KEYS.len()],
    /// The body the bytes were encoded from, for the check in debug builds.
    #[cfg(debug_assertions)]
    body: Map<String, Value>,
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
            before: [0; WRITER_KEYS.len()],
            #[cfg(debug_assertions)]
            body: entry.body.clone(),
        };
        for (key, value) in others(&entry.body, &skip) {
            write_canonical_str(&mut encoded.bytes, key);
            encoded.bytes.push(b':');
            write_canonical(&mut encoded.bytes, value).ok()?;
            encoded.ends.push(encoded.bytes.len());
            for (before, writer_key) in encoded.before.iter_mut().zip(WRITER_KEYS) {
                if utf16_order(key, writer_key) == Ordering::Less {
                    *before += 1;
                }
            }
        }
        Some(encoded)
    }

    /// Appends the whole body as a canonical object: these members merged with the writer's
    /// own, taken from the record's index columns (which the writer fills exactly for the
    /// members [`writer_keys`] named).
    pub(super) fn write_with(
        &self,
        out: &mut Vec<u8>,
        index: &IndexColumns,
    ) -> Result<(), CanonicalError> {
        out.push(b'{');
        let mut first = true;
        let mut start = 0;
        let mut added = writer_members(index).into_iter().peekable();
        for (written, end) in self.ends.iter().enumerate() {
            while let Some((_, key, value)) =
                added.next_if(|(slot, _, _)| self.before[*slot] <= written)
            {
                write_member(out, &mut first, key, &value)?;
            }
            if !std::mem::take(&mut first) {
                out.push(b',');
            }
            out.extend_from_slice(&self.bytes[start..*end]);
            start = *end;
        }
        for (_, key, value) in added {
            write_member(out, &mut first, key, &value)?;
        }
        out.push(b'}');
        Ok(())
    }

    /// In debug builds (every test run): whether `canonical`, the record encoded with
    /// [`EncodedBody::write_with`], is exactly the canonical encoding of the record whose body
    /// is the caller's body with the writer's members (`writer_body`) added.
    #[cfg(debug_assertions)]
    pub(super) fn matches_canonical(
        &self,
        envelope: &super::record::Envelope<'_>,
        writer_body: &Map<String, Value>,
        canonical: &[u8],
    ) -> bool {
        let mut whole = self.body.clone();
        whole.extend(writer_body.clone());
        let envelope = super::record::Envelope {
            body: &whole,
            ..*envelope
        };
        envelope.canonical_bytes().ok().as_deref() == Some(canonical)
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

/// The writer's members from the index columns it filled, in canonical order, each with its
/// place in [`WRITER_KEYS`].
fn writer_members(index: &IndexColumns) -> Vec<(usize, &'static str, WriterValue<'_>)> {
    let values = [
        index.event_counter.map(WriterValue::Number),
        index.register_id.as_deref().map(WriterValue::Text),
        index.request_digest.as_deref().map(WriterValue::Text),
        index.request_id.as_deref().map(WriterValue::Text),
        index.series_number.map(WriterValue::Number),
        index.series.as_deref().map(WriterValue::Text),
        index.total_counter.map(WriterValue::Number),
    ];
    values
        .into_iter()
        .zip(WRITER_KEYS)
        .enumerate()
        .filter_map(|(slot, (value, key))| value.map(|value| (slot, key, value)))
        .collect()
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
            encoded.write_with(&mut merged, &index).unwrap();
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
