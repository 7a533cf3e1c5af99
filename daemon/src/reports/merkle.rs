//! The Merkle root a Z report carries over the hashes of every record of its period.
//!
//! The tree is the one of RFC 6962 (Certificate Transparency), over the records' 32-byte hashes
//! in sequence order: a leaf is `SHA-256(0x00 || record_hash)`, a node is
//! `SHA-256(0x01 || left || right)`, and a list of `n > 1` leaves splits at the largest power of
//! two smaller than `n`. One leaf is its own root. No records, no root.

use sha2::{Digest, Sha256};

fn leaf(hash: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(hash);
    h.finalize().into()
}

fn node(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root over `hashes` (record hashes in sequence order), or `None` when there are none.
pub fn merkle_root(hashes: &[[u8; 32]]) -> Option<[u8; 32]> {
    match hashes.len() {
        0 => None,
        1 => Some(leaf(&hashes[0])),
        n => {
            let mut split = 1;
            while split * 2 < n {
                split *= 2;
            }
            let left = merkle_root(&hashes[..split])?;
            let right = merkle_root(&hashes[split..])?;
            Some(node(&left, &right))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_rfc6962_shape() {
        let h = |b: u8| [b; 32];
        assert_eq!(merkle_root(&[]), None);
        assert_eq!(merkle_root(&[h(1)]), Some(leaf(&h(1))));
        let three = merkle_root(&[h(1), h(2), h(3)]).unwrap();
        let expected = node(&node(&leaf(&h(1)), &leaf(&h(2))), &leaf(&h(3)));
        assert_eq!(three, expected);
        let five = merkle_root(&[h(1), h(2), h(3), h(4), h(5)]).unwrap();
        let four = node(
            &node(&leaf(&h(1)), &leaf(&h(2))),
            &node(&leaf(&h(3)), &leaf(&h(4))),
        );
        assert_eq!(five, node(&four, &leaf(&h(5))));
        // Any change of a hash or of the order changes the root.
        assert_ne!(merkle_root(&[h(2), h(1), h(3)]).unwrap(), three);
    }
}
