//! A snapshot of what is open, so that start-up folds only the records since it.
//!
//! The snapshot does not copy the state: it names the journal record it was taken at (sequence
//! number and hash) and the records that make up what was open then (the pro formas, moves and
//! merges of open tables and checks, the WORK IN of operators clocked in, open deposits, the
//! tickets of unsettled catering events). At start-up those records are read back from the
//! journal and folded again in order, then every record after the snapshot's. It is used only
//! when the journal's record at its sequence number has the hash it names and its checksum
//! holds; otherwise (stale, from another journal, edited, torn) the state is folded from the
//! first record and a new snapshot written. It is stored beside the index
//! ([`super::history::History::meta`]).

use sha2::{Digest, Sha256};

/// The key of the snapshot in the index's `meta` table.
pub const KEY: &str = "snapshot";

/// Where the state stood, and what was open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Sequence number of the last journal record folded into it.
    pub seq: u64,
    /// That record's hash.
    pub hash: Vec<u8>,
    /// The records that make up what was open, ascending, each once.
    pub records: Vec<u64>,
}

fn checksum(seq: u64, hash: &[u8], records: &[u64]) -> String {
    let mut h = Sha256::new();
    h.update(b"fdmd restaurant snapshot v1\0");
    h.update(seq.to_be_bytes());
    h.update(hash);
    for r in records {
        h.update(r.to_be_bytes());
    }
    hex::encode(h.finalize())
}

impl Snapshot {
    /// A snapshot at `seq` (whose record has `hash`) of `records` (any order, repeats allowed).
    pub fn new(seq: u64, hash: Vec<u8>, records: impl IntoIterator<Item = u64>) -> Snapshot {
        let mut records: Vec<u64> = records.into_iter().filter(|r| *r <= seq).collect();
        records.sort_unstable();
        records.dedup();
        Snapshot { seq, hash, records }
    }

    /// As stored: JSON with a checksum over its content.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::json!({
            "v": 1,
            "seq": self.seq,
            "hash": hex::encode(&self.hash),
            "records": self.records,
            "checksum": checksum(self.seq, &self.hash, &self.records),
        })
        .to_string()
        .into_bytes()
    }

    /// Reads a stored snapshot; None when it is not one or its checksum does not hold.
    pub fn decode(bytes: &[u8]) -> Option<Snapshot> {
        let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
        if v["v"].as_u64() != Some(1) {
            return None;
        }
        let seq = v["seq"].as_u64()?;
        let hash = hex::decode(v["hash"].as_str()?).ok()?;
        let records: Vec<u64> = v["records"]
            .as_array()?
            .iter()
            .map(serde_json::Value::as_u64)
            .collect::<Option<_>>()?;
        let ascending = records.windows(2).all(|w| w[0] < w[1]);
        let within = records.last().is_none_or(|r| *r <= seq);
        (ascending && within && v["checksum"].as_str()? == checksum(seq, &hash, &records))
            .then_some(Snapshot { seq, hash, records })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_an_edited_snapshot() {
        let s = Snapshot::new(40, vec![7; 32], [12, 3, 12, 39]);
        assert_eq!(s.records, [3, 12, 39]);
        let bytes = s.encode();
        assert_eq!(Snapshot::decode(&bytes), Some(s));
        let edited = String::from_utf8(bytes)
            .unwrap()
            .replace("[3,12,39]", "[3,39]");
        assert_eq!(Snapshot::decode(edited.as_bytes()), None);
        assert_eq!(Snapshot::decode(b"{}"), None);
        assert_eq!(Snapshot::decode(b"not json"), None);
    }
}
