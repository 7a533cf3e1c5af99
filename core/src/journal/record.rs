//! Journal records: kinds, the signed envelope, and how hashes are computed.
//!
//! A record's canonical bytes are the canonical JSON ([`super::canonical`]) of its envelope:
//! `{"body":…,"fdm_id":…,"kind":…,"prev_hash":…,"seq":…,"signer_id":…,"time":…,"v":1}`.
//! Its hash is SHA-256 of those bytes; its signature is the signer's signature over the 32
//! hash bytes. The first record's `prev_hash` is 64 zeros.

use super::canonical::{
    CanonicalError, write_canonical_object, write_canonical_str, write_canonical_u64,
};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::fmt;

/// Version of the envelope format.
pub const FORMAT_VERSION: u64 = 1;

/// The `prev_hash` of the first record.
pub const GENESIS_PREV_HASH: [u8; 32] = [0; 32];

/// What a record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// The first record: anchors the chain, names the FDM and the first signer.
    JournalOpen,
    /// An order or pre-computed event, signed (NS, PS, …).
    FiscalEvent,
    /// An X or Z report.
    Report,
    /// A device enrolled, linked, deactivated or replaced.
    DeviceChange,
    /// A change of the daemon's configuration.
    ConfigChange,
    /// A new signer (card) came into use; declares its public key.
    SignerChange,
    /// The daemon started.
    DaemonStart,
    /// The daemon stopped.
    DaemonStop,
    /// An open table moved to a free table or merged into another (restaurant).
    TableChange,
    /// Money in or out that is not a sale: multi-purpose vouchers sold (restaurant).
    MoneyMovement,
}

impl RecordKind {
    /// Every kind.
    pub const ALL: [RecordKind; 10] = [
        RecordKind::JournalOpen,
        RecordKind::FiscalEvent,
        RecordKind::Report,
        RecordKind::DeviceChange,
        RecordKind::ConfigChange,
        RecordKind::SignerChange,
        RecordKind::DaemonStart,
        RecordKind::DaemonStop,
        RecordKind::TableChange,
        RecordKind::MoneyMovement,
    ];

    /// The name stored in records.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::JournalOpen => "journal_open",
            RecordKind::FiscalEvent => "fiscal_event",
            RecordKind::Report => "report",
            RecordKind::DeviceChange => "device_change",
            RecordKind::ConfigChange => "config_change",
            RecordKind::SignerChange => "signer_change",
            RecordKind::DaemonStart => "daemon_start",
            RecordKind::DaemonStop => "daemon_stop",
            RecordKind::TableChange => "table_change",
            RecordKind::MoneyMovement => "money_movement",
        }
    }

    /// Parses a stored name.
    pub fn parse(text: &str) -> Option<RecordKind> {
        RecordKind::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

impl fmt::Display for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The signed part of a record, before encoding.
#[derive(Debug, Clone)]
pub struct Envelope<'a> {
    /// Position in the journal, from 1, without gaps.
    pub seq: u64,
    /// Kind.
    pub kind: RecordKind,
    /// FDM time, RFC 3339 with offset and milliseconds.
    pub time: &'a str,
    /// The FDM production number of this fdmd.
    pub fdm_id: &'a str,
    /// The signer that signs this record.
    pub signer_id: &'a str,
    /// Hash of the previous record.
    pub prev_hash: &'a [u8; 32],
    /// Kind-specific content.
    pub body: &'a Map<String, Value>,
}

impl Envelope<'_> {
    /// The canonical bytes of the envelope.
    pub fn canonical_bytes(&self) -> Result<Vec<u8>, CanonicalError> {
        let mut out = Vec::with_capacity(4096);
        self.write_canonical(&mut out)?;
        Ok(out)
    }

    /// Appends the canonical bytes of the envelope to `out` (the writer reuses one buffer).
    ///
    /// Written member by member in canonical (sorted) key order, the body encoded in place:
    /// the same bytes as [`super::canonical::to_canonical`] of the envelope as a JSON object,
    /// without building or cloning that object. On error `out` holds a partial encoding.
    pub fn write_canonical(&self, out: &mut Vec<u8>) -> Result<(), CanonicalError> {
        self.write_canonical_with_body(out, |out| write_canonical_object(out, self.body))
    }

    /// Like [`Envelope::write_canonical`], with the body's canonical bytes written by
    /// `write_body`, which must write exactly the canonical encoding of `self.body` (the
    /// journal writer merges members its callers encoded beforehand).
    pub(crate) fn write_canonical_with_body(
        &self,
        out: &mut Vec<u8>,
        write_body: impl FnOnce(&mut Vec<u8>) -> Result<(), CanonicalError>,
    ) -> Result<(), CanonicalError> {
        out.extend_from_slice(b"{\"body\":");
        write_body(out)?;
        out.extend_from_slice(b",\"fdm_id\":");
        write_canonical_str(out, self.fdm_id);
        out.extend_from_slice(b",\"kind\":");
        write_canonical_str(out, self.kind.as_str());
        out.extend_from_slice(b",\"prev_hash\":\"");
        let mut hex = [0u8; 64];
        // Cannot fail: the buffer is exactly twice the hash length.
        if hex::encode_to_slice(self.prev_hash, &mut hex).is_ok() {
            out.extend_from_slice(&hex);
        }
        out.extend_from_slice(b"\",\"seq\":");
        write_canonical_u64(out, self.seq)?;
        out.extend_from_slice(b",\"signer_id\":");
        write_canonical_str(out, self.signer_id);
        out.extend_from_slice(b",\"time\":");
        write_canonical_str(out, self.time);
        out.extend_from_slice(b",\"v\":");
        write_canonical_u64(out, FORMAT_VERSION)?;
        out.push(b'}');
        Ok(())
    }
}

/// SHA-256 of a record's canonical bytes.
pub fn record_hash(canonical: &[u8]) -> [u8; 32] {
    Sha256::digest(canonical).into()
}

/// SHA-256 as lower-case hex, for digests stored in bodies.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The 8 characters printed on tickets and reports: the last 8 of the signature in upper-case hex.
pub fn short_signature(signature: &[u8]) -> String {
    let hex = hex::encode_upper(signature);
    hex[hex.len().saturating_sub(8)..].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::canonical::to_canonical;
    use proptest::prelude::*;
    use serde_json::json;

    /// The envelope encoded the general way: as a JSON object through [`to_canonical`].
    fn as_json_object(env: &Envelope<'_>) -> Vec<u8> {
        to_canonical(&json!({
            "v": FORMAT_VERSION,
            "seq": env.seq,
            "kind": env.kind.as_str(),
            "time": env.time,
            "fdm_id": env.fdm_id,
            "signer_id": env.signer_id,
            "prev_hash": hex::encode(env.prev_hash),
            "body": Value::Object(env.body.clone()),
        }))
        .unwrap()
    }

    proptest! {
        #[test]
        fn envelope_bytes_equal_the_canonical_json_object(
            seq in 1u64..(1 << 53),
            kind in 0usize..RecordKind::ALL.len(),
            texts in prop::collection::vec(".{0,16}", 3),
            body in prop::collection::btree_map(".{0,8}", prop_oneof![
                ".{0,12}".prop_map(Value::String),
                (-1_000_000i64..1_000_000).prop_map(|i| json!(i)),
                prop::collection::vec(".{0,4}", 0..3).prop_map(|v| json!(v)),
            ], 0..8),
            prev_hash in any::<[u8; 32]>(),
        ) {
            let body: Map<String, Value> = body.into_iter().collect();
            let env = Envelope {
                seq,
                kind: RecordKind::ALL[kind],
                time: &texts[0],
                fdm_id: &texts[1],
                signer_id: &texts[2],
                prev_hash: &prev_hash,
                body: &body,
            };
            prop_assert_eq!(env.canonical_bytes().unwrap(), as_json_object(&env));
        }
    }

    #[test]
    fn envelope_refuses_a_seq_beyond_2_pow_53() {
        let body = Map::new();
        let env = Envelope {
            seq: 1 << 53,
            kind: RecordKind::Report,
            time: "t",
            fdm_id: "f",
            signer_id: "s",
            prev_hash: &GENESIS_PREV_HASH,
            body: &body,
        };
        assert_eq!(
            env.canonical_bytes().unwrap_err(),
            CanonicalError::Number("9007199254740992".into())
        );
    }

    #[test]
    fn envelope_bytes_are_canonical_and_hash_is_sha256() {
        let mut body = Map::new();
        body.insert("x".into(), json!("é"));
        let env = Envelope {
            seq: 3,
            kind: RecordKind::FiscalEvent,
            time: "2026-11-22T20:00:00.000+01:00",
            fdm_id: "DEVFDMD0001",
            signer_id: "DEVSW-00000000",
            prev_hash: &[0xab; 32],
            body: &body,
        };
        let bytes = env.canonical_bytes().unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert_eq!(
            text,
            format!(
                "{{\"body\":{{\"x\":\"é\"}},\"fdm_id\":\"DEVFDMD0001\",\"kind\":\"fiscal_event\",\"prev_hash\":\"{}\",\"seq\":3,\"signer_id\":\"DEVSW-00000000\",\"time\":\"2026-11-22T20:00:00.000+01:00\",\"v\":1}}",
                "ab".repeat(32)
            )
        );
        assert_eq!(hex::encode(record_hash(&bytes)), sha256_hex(&bytes));
        assert_eq!(bytes, as_json_object(&env));
        assert_eq!(short_signature(&[0x12, 0xab, 0xcd, 0xef, 0x01]), "ABCDEF01");
    }
}
