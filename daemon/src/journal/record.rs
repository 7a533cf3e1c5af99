//! Journal records: kinds, the signed envelope, and how hashes are computed.
//!
//! A record's canonical bytes are the canonical JSON ([`super::canonical`]) of its envelope:
//! `{"body":…,"fdm_id":…,"kind":…,"prev_hash":…,"seq":…,"signer_id":…,"time":…,"v":1}`.
//! Its hash is SHA-256 of those bytes; its signature is the signer's signature over the 32
//! hash bytes. The first record's `prev_hash` is 64 zeros.

use super::canonical::{CanonicalError, to_canonical};
use serde_json::{Map, Value, json};
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
}

impl RecordKind {
    /// Every kind.
    pub const ALL: [RecordKind; 8] = [
        RecordKind::JournalOpen,
        RecordKind::FiscalEvent,
        RecordKind::Report,
        RecordKind::DeviceChange,
        RecordKind::ConfigChange,
        RecordKind::SignerChange,
        RecordKind::DaemonStart,
        RecordKind::DaemonStop,
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
        to_canonical(&json!({
            "v": FORMAT_VERSION,
            "seq": self.seq,
            "kind": self.kind.as_str(),
            "time": self.time,
            "fdm_id": self.fdm_id,
            "signer_id": self.signer_id,
            "prev_hash": hex::encode(self.prev_hash),
            "body": Value::Object(self.body.clone()),
        }))
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
        assert_eq!(short_signature(&[0x12, 0xab, 0xcd, 0xef, 0x01]), "ABCDEF01");
    }
}
