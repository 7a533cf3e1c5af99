//! Bearer credentials: random, shown once, stored as SHA-256, compared in constant time.

use crate::Error;
use sha2::{Digest, Sha256};

/// A new credential: 32 random bytes as 64 hex characters.
pub fn generate() -> Result<String, Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| Error::Random(e.to_string()))?;
    Ok(hex::encode(bytes))
}

/// SHA-256 of a credential, as stored.
pub fn hash(credential: &str) -> [u8; 32] {
    Sha256::digest(credential.as_bytes()).into()
}

/// Whether `credential` hashes to `stored`, without an early exit on the first differing byte.
pub fn matches(credential: &str, stored: &[u8]) -> bool {
    let given = hash(credential);
    if stored.len() != given.len() {
        return false;
    }
    given
        .iter()
        .zip(stored)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

/// The token of an `Authorization: Bearer TOKEN` header value.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let value = header?.trim();
    let (scheme, token) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty()).then(|| token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credential_matches_its_hash_only() {
        let c = generate().unwrap_or_default();
        assert_eq!(c.len(), 64);
        assert!(matches(&c, &hash(&c)));
        assert!(!matches("other", &hash(&c)));
        assert!(!matches(&c, &hash(&c)[..31]));
    }

    #[test]
    fn bearer_header() {
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(Some("Bearer ")), None);
        assert_eq!(bearer(None), None);
    }
}
