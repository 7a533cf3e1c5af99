//! Canonical JSON: the exact bytes that are hashed and signed.
//!
//! The encoding is RFC 8785 (JCS) restricted to what fdmd writes: objects, arrays, strings,
//! integers, booleans and null — never a fractional number (money is a decimal string). Object
//! members are sorted by their keys' UTF-16 code units, no white space is written, strings escape
//! only `"`, `\` and control characters (`\b \f \n \r \t`, others as `\u00xx`), everything else is
//! raw UTF-8. `docs/journal-format.md` states the same rules for independent verifiers.

use serde_json::Value;

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
    write_value(&mut out, value)?;
    Ok(out)
}

fn write_value(out: &mut Vec<u8>, value: &Value) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            let text = if let Some(u) = n.as_u64().filter(|u| *u <= MAX_SAFE_INTEGER) {
                u.to_string()
            } else if let Some(i) = n.as_i64().filter(|i| i.unsigned_abs() <= MAX_SAFE_INTEGER) {
                i.to_string()
            } else {
                return Err(CanonicalError::Number(n.to_string()));
            };
            out.extend_from_slice(text.as_bytes());
        }
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(out, key);
                out.push(b':');
                write_value(out, item)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn write_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\u{08}' => out.extend_from_slice(b"\\b"),
            '\u{0c}' => out.extend_from_slice(b"\\f"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes());
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
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

    proptest! {
        #[test]
        fn canonical_bytes_parse_back_to_the_same_value_and_are_stable(v in arb_json()) {
            let bytes = to_canonical(&v).unwrap();
            let back: Value = serde_json::from_slice(&bytes).unwrap();
            prop_assert_eq!(&back, &v);
            prop_assert_eq!(to_canonical(&back).unwrap(), bytes);
        }
    }
}
