//! The owner's credentials for the web page, kept in the data directory: the Argon2id hash of the
//! password the owner set (`web-owner.json`), or, until one is set, the SHA-256 of a one-time
//! set-up code (`web-setup-code.sha256`) generated at start and printed in the log. Neither the
//! password nor the code is ever stored in clear.

use crate::access::write_private_atomically;
use argon2::Argon2;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

/// Shortest password the owner may set.
pub const MIN_PASSWORD_LEN: usize = 10;
/// Longest password accepted (bounds the hashing work of one attempt).
pub const MAX_PASSWORD_LEN: usize = 256;

/// What can go wrong with the owner's credentials.
#[derive(Debug, thiserror::Error)]
pub enum OwnerError {
    /// Reading or writing a file of the data directory failed.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// What failed.
        message: String,
    },
    /// The system's random source failed.
    #[error("no randomness: {0}")]
    Random(String),
    /// The password is too short or too long.
    #[error("the password must have {MIN_PASSWORD_LEN} to {MAX_PASSWORD_LEN} characters")]
    BadPassword,
    /// Argon2 refused its input.
    #[error("password hashing failed: {0}")]
    Hash(String),
}

#[derive(Serialize, Deserialize)]
struct PasswordFile {
    algorithm: String,
    salt: String,
    hash: String,
}

/// The owner's credentials.
pub struct Owner {
    password_path: PathBuf,
    setup_path: PathBuf,
    password: Mutex<Option<PasswordFile>>,
    setup_sha256: Mutex<Option<String>>,
}

fn io_error(path: &Path, e: impl std::fmt::Display) -> OwnerError {
    OwnerError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// `n` random bytes from the system.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], OwnerError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| OwnerError::Random(e.to_string()))?;
    Ok(bytes)
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// Equality that does not stop at the first difference.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn argon2_hash(password: &str, salt: &[u8]) -> Result<[u8; 32], OwnerError> {
    let mut out = [0u8; 32];
    Argon2::default()
        .hash_password_into(password.as_bytes(), salt, &mut out)
        .map_err(|e| OwnerError::Hash(e.to_string()))?;
    Ok(out)
}

/// Letters and digits a person reads off a log without confusing them (no 0/O, 1/I/L).
const CODE_ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";

impl Owner {
    /// Loads the owner's credentials from `data_dir`. When no password is set, a new one-time
    /// set-up code replaces any earlier one and is returned, to be printed in the log.
    pub fn open(data_dir: &Path) -> Result<(Owner, Option<String>), OwnerError> {
        let password_path = data_dir.join("web-owner.json");
        let setup_path = data_dir.join("web-setup-code.sha256");
        let password = match std::fs::read(&password_path) {
            Ok(bytes) => Some(
                serde_json::from_slice::<PasswordFile>(&bytes)
                    .map_err(|e| io_error(&password_path, e))?,
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_error(&password_path, e)),
        };
        let mut code = None;
        let mut setup_sha256 = None;
        if password.is_none() {
            let bytes = random_bytes::<12>()?;
            let chars: String = bytes
                .iter()
                .map(|b| char::from(CODE_ALPHABET[usize::from(*b) % CODE_ALPHABET.len()]))
                .collect();
            let shown = format!("{}-{}-{}", &chars[0..4], &chars[4..8], &chars[8..12]);
            let hash = sha256_hex(&shown);
            write_private_atomically(&setup_path, hash.as_bytes())
                .map_err(|e| io_error(&setup_path, e))?;
            setup_sha256 = Some(hash);
            code = Some(shown);
        } else if setup_path.exists() {
            std::fs::remove_file(&setup_path).map_err(|e| io_error(&setup_path, e))?;
        }
        Ok((
            Owner {
                password_path,
                setup_path,
                password: Mutex::new(password),
                setup_sha256: Mutex::new(setup_sha256),
            },
            code,
        ))
    }

    /// Whether the owner has set a password.
    pub fn has_password(&self) -> bool {
        self.password
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// Checks the password.
    pub fn check_password(&self, password: &str) -> bool {
        if password.is_empty() || password.len() > MAX_PASSWORD_LEN {
            return false;
        }
        let guard = self.password.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(file) = guard.as_ref() else {
            return false;
        };
        let (Ok(salt), Ok(expected)) = (hex::decode(&file.salt), hex::decode(&file.hash)) else {
            return false;
        };
        argon2_hash(password, &salt).is_ok_and(|h| same(&h, &expected))
    }

    /// Checks the one-time set-up code and, if it is right, uses it up (the file is removed).
    pub fn take_setup_code(&self, code: &str) -> bool {
        let mut guard = self
            .setup_sha256
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(expected) = guard.as_ref() else {
            return false;
        };
        let given = sha256_hex(code.trim().to_ascii_uppercase().as_str());
        if !same(given.as_bytes(), expected.as_bytes()) {
            return false;
        }
        *guard = None;
        if let Err(e) = std::fs::remove_file(&self.setup_path) {
            tracing::warn!("web: cannot remove {}: {e}", self.setup_path.display());
        }
        true
    }

    /// Sets (or replaces) the owner's password.
    pub fn set_password(&self, password: &str) -> Result<(), OwnerError> {
        let chars = password.chars().count();
        if !(MIN_PASSWORD_LEN..=MAX_PASSWORD_LEN).contains(&chars) {
            return Err(OwnerError::BadPassword);
        }
        let salt = random_bytes::<16>()?;
        let hash = argon2_hash(password, &salt)?;
        let file = PasswordFile {
            algorithm: "argon2id-v19-m19456-t2-p1".into(),
            salt: hex::encode(salt),
            hash: hex::encode(hash),
        };
        let bytes =
            serde_json::to_vec_pretty(&file).map_err(|e| io_error(&self.password_path, e))?;
        write_private_atomically(&self.password_path, &bytes)
            .map_err(|e| io_error(&self.password_path, e))?;
        *self.password.lock().unwrap_or_else(PoisonError::into_inner) = Some(file);
        *self
            .setup_sha256
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
        let _ = std::fs::remove_file(&self.setup_path);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_code_once_then_password() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (owner, code) = Owner::open(dir.path()).expect("open");
        let code = code.expect("a code at first start");
        assert!(!owner.has_password());
        assert!(!owner.take_setup_code("AAAA-BBBB-CCCC"));
        assert!(owner.take_setup_code(&code.to_lowercase()));
        assert!(!owner.take_setup_code(&code), "the code is used once");
        assert!(owner.set_password("short").is_err());
        owner.set_password("correct horse battery").expect("set");
        assert!(owner.check_password("correct horse battery"));
        assert!(!owner.check_password("correct horse batterx"));
        let (again, code) = Owner::open(dir.path()).expect("reopen");
        assert!(code.is_none(), "no set-up code once a password is set");
        assert!(again.check_password("correct horse battery"));
    }
}
