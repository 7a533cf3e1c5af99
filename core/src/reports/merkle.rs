//! The Merkle root a Z report carries over the hashes of every record of its period.
//!
//! The tree is the one of RFC 6962 (Certificate Transparency), over the records' 32-byte hashes
//! in sequence order: a leaf is `SHA-256(0x00 || record_hash)`, a node is
//! `SHA-256(0x01 || left || right)`, and a list of `n > 1` leaves splits at the largest power of
//! two smaller than `n`. One leaf is its own root. No records, no root.

use sha2::{Digest, Sha256};

/// The leaf of a record hash: `SHA-256(0x00 || hash)`.
pub fn leaf(hash: &[u8; 32]) -> [u8; 32] {
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

/// The same root over leaves given one at a time ([`leaf`]), in O(log n) memory: the roots of the
/// perfect subtrees of the binary decomposition of n, largest first. The root folds them from the
/// right, which is RFC 6962's split at the largest power of two below n, repeated.
#[derive(Debug, Clone, Default)]
pub struct MerkleStream {
    /// (height, root) of each perfect subtree, heights strictly decreasing.
    peaks: Vec<(u32, [u8; 32])>,
}

impl MerkleStream {
    /// Adds the next leaf.
    pub fn push_leaf(&mut self, leaf: [u8; 32]) {
        let mut current = (0u32, leaf);
        while let Some(&(height, left)) = self.peaks.last() {
            if height != current.0 {
                break;
            }
            self.peaks.pop();
            current = (height + 1, node(&left, &current.1));
        }
        self.peaks.push(current);
    }

    /// The root over the leaves added so far, `None` before the first.
    pub fn root(&self) -> Option<[u8; 32]> {
        let mut peaks = self.peaks.iter().rev();
        let mut root = peaks.next()?.1;
        for (_, left) in peaks {
            root = node(left, &root);
        }
        Some(root)
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
        // The stream gives the same root for every length.
        let hashes: Vec<[u8; 32]> = (0..40u8).map(h).collect();
        let mut stream = MerkleStream::default();
        assert_eq!(stream.root(), None);
        for (n, hash) in hashes.iter().enumerate() {
            stream.push_leaf(leaf(hash));
            assert_eq!(
                stream.root(),
                merkle_root(&hashes[..=n]),
                "{} leaves",
                n + 1
            );
        }
        // Any change of a hash or of the order changes the root.
        assert_ne!(merkle_root(&[h(2), h(1), h(3)]).unwrap(), three);
    }
}
