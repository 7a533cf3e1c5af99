//! Per-process random secrets: the password the gate presents to the internal broker on behalf of
//! clients it has authenticated, and fdmd's own bus password. Never written anywhere.

/// A random secret, compared in constant time, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

/// No randomness was available.
#[derive(Debug, thiserror::Error)]
#[error("no randomness for an internal MQTT secret: {0}")]
pub struct RandomError(String);

impl Secret {
    /// 192 random bits, hex-encoded.
    pub fn random() -> Result<Secret, RandomError> {
        let mut bytes = [0u8; 24];
        getrandom::fill(&mut bytes).map_err(|e| RandomError(e.to_string()))?;
        Ok(Secret(hex::encode(bytes)))
    }

    /// The secret, to put in a CONNECT.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `candidate` is this secret, without an early exit.
    pub fn matches(&self, candidate: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), candidate.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_distinct_and_redacted() {
        let a = Secret::random().unwrap();
        let b = Secret::random().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), 48);
        assert!(a.matches(a.expose()));
        assert!(!a.matches(b.expose()));
        assert!(!a.matches(""));
        assert!(!format!("{a:?}").contains(a.expose()));
    }
}
