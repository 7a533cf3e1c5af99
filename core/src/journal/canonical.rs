//! Canonical JSON: the exact bytes that are hashed and signed.
//!
//! The encoding is RFC 8785 (JCS) restricted to what fdmd writes: objects, arrays, strings,
//! integers, booleans and null — never a fractional number (money is a decimal string). Object
//! members are sorted by their keys' UTF-16 code units, no white space is written, strings escape
//! only `"`, `\` and control characters (`\b \f \n \r \t`, others as `\u00xx`), everything else is
//! raw UTF-8. `docs/journal-format.md` states the same rules for independent verifiers.

use serde_json::{Map, Value};

/// Why a value has no canonical form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalError {
    /// A number that is not an integer in ±(2^53 − 1).
    #[error("number {0} is not an integer within ±(2^53 - 1)")]
    Number(String),
}

const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Encodes `value` canonically.
pub fn to_canonical(value: &Value) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::with_capacity(512);
    write_canonical(&mut out, value)?;
    Ok(out)
}

/// Appends the canonical encoding of `value` to `out`. On error `out` holds a partial encoding.
pub fn write_canonical(out: &mut Vec<u8>, value: &Value) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            if let Some(u) = n.as_u64().filter(|u| *u <= MAX_SAFE_INTEGER) {
                write_digits(out, u);
            } else if let Some(i) = n.as_i64().filter(|i| i.unsigned_abs() <= MAX_SAFE_INTEGER) {
                if i < 0 {
                    out.push(b'-');
                }
                write_digits(out, i.unsigned_abs());
            } else {
                return Err(CanonicalError::Number(n.to_string()));
            }
        }
        Value::String(s) => write_canonical_str(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(out, item)?;
            }
            out.push(b']');
        }
        Value::Object(map) => write_canonical_object(out, map)?,
    }
    Ok(())
}

/// Appends the canonical encoding of an object to `out`.
pub fn write_canonical_object(
    out: &mut Vec<u8>,
    map: &Map<String, Value>,
) -> Result<(), CanonicalError> {
    out.push(b'{');
    if in_canonical_order(map) {
        for (i, (key, item)) in map.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_canonical_str(out, key);
            out.push(b':');
            write_canonical(out, item)?;
        }
    } else {
        let mut entries: Vec<(&String, &Value)> = map.iter().collect();
        entries.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
        for (i, (key, item)) in entries.into_iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_canonical_str(out, key);
            out.push(b':');
            write_canonical(out, item)?;
        }
    }
    out.push(b'}');
    Ok(())
}

/// True when the map already iterates in canonical (UTF-16 code unit) order, so no sort is
/// needed. serde_json's default map is sorted by UTF-8 bytes, which is code point order; for keys
/// without supplementary-plane characters (4-byte UTF-8, lead byte 0xF0 or above) code point
/// order and UTF-16 order are the same. Checked rather than assumed, because serde_json's
/// `preserve_order` feature keeps insertion order instead.
pub(crate) fn in_canonical_order(map: &Map<String, Value>) -> bool {
    let mut previous: Option<&[u8]> = None;
    for key in map.keys() {
        let key = key.as_bytes();
        if key.iter().any(|b| *b >= 0xF0) {
            return false;
        }
        if previous.is_some_and(|p| p >= key) {
            return false;
        }
        previous = Some(key);
    }
    true
}

/// Appends the canonical encoding of an integer; refuses what is outside ±(2^53 − 1).
pub fn write_canonical_u64(out: &mut Vec<u8>, n: u64) -> Result<(), CanonicalError> {
    if n > MAX_SAFE_INTEGER {
        return Err(CanonicalError::Number(n.to_string()));
    }
    write_digits(out, n);
    Ok(())
}

fn write_digits(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// Appends a canonical JSON string. Only `"`, `\` and control characters are escaped; they are
/// all ASCII, and ASCII bytes never occur inside a multi-byte UTF-8 sequence, so the text is
/// scanned byte by byte and copied in runs.
pub fn write_canonical_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x0c => b"\\f",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x00..=0x1f => &[],
            _ => continue,
        };
        out.extend_from_slice(&bytes[run..i]);
        if short.is_empty() {
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]);
        } else {
            out.extend_from_slice(short);
        }
        run = i + 1;
    }
    out.extend_from_slice(&bytes[run..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn sorts_keys_and_escapes() {
        let v = json!({"b": 1, "a": [true, null, "x\"\\\n\u{1}é€"], "A": {"z": -5, "y": ""}});
        let bytes = to_canonical(&v).unwrap();
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            "{\"A\":{\"y\":\"\",\"z\":-5},\"a\":[true,null,\"x\\\"\\\\\\n\\u0001é€\"],\"b\":1}"
        );
    }

    #[test]
    fn sorts_by_utf16_code_units() {
        // U+E000 sorts before U+1F600 in UTF-8 byte order too, but U+FFFF vs U+10000 differ:
        // in UTF-16 the surrogate pair (0xD800…) sorts before 0xFFFF.
        let v = json!({"\u{ffff}": 1, "\u{10000}": 2});
        let s = String::from_utf8(to_canonical(&v).unwrap()).unwrap();
        assert!(s.starts_with("{\"\u{10000}\""), "{s}");
    }

    #[test]
    fn refuses_fractional_numbers() {
        assert!(to_canonical(&json!({"a": 1.5})).is_err());
        assert!(to_canonical(&json!(9_007_199_254_740_992u64)).is_err());
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-1_000_000_000i64..1_000_000_000).prop_map(|i| json!(i)),
            ".{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(".{0,6}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// The first, straightforward encoder (sort every object by UTF-16 keys, escape char by
    /// char): the optimised one must give the same bytes.
    fn reference(value: &Value) -> Option<String> {
        Some(match value {
            Value::Null => "null".into(),
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => {
                if let Some(u) = n.as_u64().filter(|u| *u <= MAX_SAFE_INTEGER) {
                    u.to_string()
                } else {
                    n.as_i64()
                        .filter(|i| i.unsigned_abs() <= MAX_SAFE_INTEGER)?
                        .to_string()
                }
            }
            Value::String(s) => reference_string(s),
            Value::Array(items) => format!(
                "[{}]",
                items
                    .iter()
                    .map(reference)
                    .collect::<Option<Vec<_>>>()?
                    .join(",")
            ),
            Value::Object(map) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
                let members = entries
                    .into_iter()
                    .map(|(k, v)| Some(format!("{}:{}", reference_string(k), reference(v)?)))
                    .collect::<Option<Vec<_>>>()?;
                format!("{{{}}}", members.join(","))
            }
        })
    }

    fn reference_string(s: &str) -> String {
        let mut out = String::from('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\u{08}' => out.push_str("\\b"),
                '\u{0c}' => out.push_str("\\f"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }

    #[test]
    fn escapes_every_control_character_like_the_reference() {
        let all: String = (0u8..0x80)
            .map(char::from)
            .chain(['é', '\u{7f}', '\u{2028}', '😀'])
            .collect();
        let v = json!({ all.clone(): all });
        assert_eq!(
            String::from_utf8(to_canonical(&v).unwrap()).unwrap(),
            reference(&v).unwrap()
        );
        assert_eq!(
            to_canonical(&json!([0, i64::MIN + 1]))
                .unwrap_err()
                .to_string(),
            "number -9223372036854775807 is not an integer within ±(2^53 - 1)"
        );
        assert_eq!(
            to_canonical(&json!([-(1i64 << 53) + 1, 0, (1u64 << 53) - 1])).unwrap(),
            b"[-9007199254740991,0,9007199254740991]"
        );
    }

    proptest! {
        #[test]
        fn canonical_bytes_parse_back_to_the_same_value_and_are_stable(v in arb_json()) {
            let bytes = to_canonical(&v).unwrap();
            let back: Value = serde_json::from_slice(&bytes).unwrap();
            prop_assert_eq!(&back, &v);
            prop_assert_eq!(to_canonical(&back).unwrap(), bytes);
        }

        #[test]
        fn same_bytes_as_the_reference_encoder(v in arb_json()) {
            let bytes = to_canonical(&v).unwrap();
            prop_assert_eq!(String::from_utf8(bytes).unwrap(), reference(&v).unwrap());
        }
    }
}
