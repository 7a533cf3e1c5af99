//! The development signer: an Ed25519 key in a file. Never a legal VAT Signing Card; its id
//! starts with `DEVSW-` so every ticket and record shows it.

use super::{Signer, SignerError, SignerIdentity, SignerState};
use ed25519_dalek::{Signer as _, SigningKey};
use sha2::{Digest, Sha256};
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Why the software signer's key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// Reading, creating or writing the file failed.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The file does not hold a 64-character hex seed.
    #[error("key file {path} does not hold a 64-character hex Ed25519 seed")]
    Malformed {
        /// The file.
        path: String,
    },
    /// Others can read the file.
    #[error("key file {path} is readable by group or others (mode {mode:o}); it must be 0600")]
    TooOpen {
        /// The file.
        path: String,
        /// Its mode.
        mode: u32,
    },
    /// No randomness for a new key.
    #[error("no randomness for a new key: {0}")]
    Random(String),
}

/// An Ed25519 signer with its key in memory.
pub struct SoftwareSigner {
    key: SigningKey,
    identity: SignerIdentity,
}

impl SoftwareSigner {
    /// A signer from a 32-byte seed (tests and benchmarks).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let key = SigningKey::from_bytes(&seed);
        let public_key = key.verifying_key().to_bytes().to_vec();
        let fingerprint = hex::encode(Sha256::digest(&public_key));
        let identity = SignerIdentity {
            // 14 characters like a real VSC id (`0000000196-860`), but never mistakable for one.
            id: format!("DEVSW-{}", &fingerprint[..8]),
            algorithm: "ed25519".into(),
            public_key,
            certified: false,
        };
        SoftwareSigner { key, identity }
    }

    /// Opens the key file, creating it with mode 0600 and a fresh random key the first time.
    pub fn open_or_create(path: &Path) -> Result<Self, KeyFileError> {
        let shown = path.display().to_string();
        let io = |source| KeyFileError::Io {
            path: shown.clone(),
            source,
        };
        match OpenOptions::new().read(true).open(path) {
            Ok(mut file) => {
                let mode = file.metadata().map_err(io)?.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    return Err(KeyFileError::TooOpen { path: shown, mode });
                }
                let mut text = String::new();
                Read::by_ref(&mut file)
                    .take(256)
                    .read_to_string(&mut text)
                    .map_err(io)?;
                let seed = hex::decode(text.trim())
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .ok_or(KeyFileError::Malformed { path: shown })?;
                Ok(Self::from_seed(seed))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut seed = [0u8; 32];
                getrandom::fill(&mut seed).map_err(|e| KeyFileError::Random(e.to_string()))?;
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(io)?;
                file.write_all(format!("{}\n", hex::encode(seed)).as_bytes())
                    .map_err(io)?;
                file.sync_all().map_err(io)?;
                Ok(Self::from_seed(seed))
            }
            Err(e) => Err(io(e)),
        }
    }
}

impl Signer for SoftwareSigner {
    fn identity(&self) -> Result<SignerIdentity, SignerError> {
        Ok(self.identity.clone())
    }

    fn state(&self) -> SignerState {
        SignerState::Ready
    }

    fn sign(&self, expected_id: &str, digest: &[u8; 32]) -> Result<Vec<u8>, SignerError> {
        if expected_id != self.identity.id {
            return Err(SignerError::IdentityChanged {
                expected: expected_id.to_owned(),
                found: self.identity.id.clone(),
            });
        }
        Ok(self.key.sign(digest).to_bytes().to_vec())
    }

    fn allows_speculative_signing(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signer::verify_ed25519;

    #[test]
    fn key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dev-signer.key");
        let a = SoftwareSigner::open_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let b = SoftwareSigner::open_or_create(&path).unwrap();
        assert_eq!(a.identity, b.identity);
        assert_eq!(a.identity.id.len(), 14);
        assert!(a.identity.id.starts_with("DEVSW-"));
        assert!(!a.identity.certified);
        let digest = [7u8; 32];
        let sig = b.sign(&a.identity.id, &digest).unwrap();
        assert!(verify_ed25519(&a.identity.public_key, &digest, &sig));
        assert!(!verify_ed25519(&a.identity.public_key, &[8u8; 32], &sig));
    }

    #[test]
    fn refuses_an_open_or_malformed_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        std::fs::write(&path, "zz").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            SoftwareSigner::open_or_create(&path),
            Err(KeyFileError::Malformed { .. })
        ));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            SoftwareSigner::open_or_create(&path),
            Err(KeyFileError::TooOpen { .. })
        ));
    }

    #[test]
    fn refuses_to_sign_for_another_identity() {
        let s = SoftwareSigner::from_seed([1; 32]);
        assert!(matches!(
            s.sign("0000000196-860", &[0; 32]),
            Err(SignerError::IdentityChanged { .. })
        ));
    }
}
