//! What a plugin file must pass before it is loaded (loading runs its code): owned by root, not
//! writable by group or others, and a detached Ed25519 signature (`NAME.so.sig`, 128 hex
//! characters over the file's bytes) that verifies with a trusted vendor key.

use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier, VerifyingKey};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Largest plugin file read for signature checking.
pub const MAX_PLUGIN_BYTES: u64 = 256 * 1024 * 1024;

/// Why a plugin file was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CheckError {
    /// The file cannot be read.
    #[error("cannot read {path}: {reason}")]
    Unreadable {
        /// File.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Not a regular file.
    #[error("{0} is not a regular file")]
    NotAFile(PathBuf),
    /// Owned by someone else than root.
    #[error("{path} is owned by uid {uid}, not root")]
    NotRootOwned {
        /// File.
        path: PathBuf,
        /// Its owner.
        uid: u32,
    },
    /// Group or others may write it.
    #[error("{path} is writable by group or others (mode {mode:o})")]
    Writable {
        /// File.
        path: PathBuf,
        /// Its mode.
        mode: u32,
    },
    /// No `.sig` file and unsigned plugins are not allowed.
    #[error("{0} has no signature file {0}.sig")]
    Unsigned(PathBuf),
    /// The signature file is malformed.
    #[error("{path}.sig is not a 128-hex-character Ed25519 signature")]
    MalformedSignature {
        /// File.
        path: PathBuf,
    },
    /// No trusted key verifies the signature.
    #[error("the signature of {path} does not verify with any trusted vendor key ({keys} trusted)")]
    BadSignature {
        /// File.
        path: PathBuf,
        /// How many keys were tried.
        keys: usize,
    },
}

/// How a file is checked.
#[derive(Debug, Clone)]
pub struct CheckPolicy {
    /// Trusted vendor keys.
    pub trusted_keys: Vec<VerifyingKey>,
    /// Accept a file without a `.sig` (development only).
    pub allow_unsigned: bool,
    /// The owner required (root; tests run as root too).
    pub owner_uid: u32,
}

/// How the file passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// Signed by the trusted key with this index.
    Signed {
        /// Hex of the key that verified.
        key: String,
    },
    /// Unsigned, allowed by a development policy.
    UnsignedAllowed,
}

/// Parses trusted keys from their hex form.
pub fn parse_keys(hex_keys: &[String]) -> Result<Vec<VerifyingKey>, String> {
    hex_keys
        .iter()
        .map(|k| {
            let bytes: [u8; 32] = hex::decode(k)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| format!("{k:?} is not 64 hex characters"))?;
            VerifyingKey::from_bytes(&bytes).map_err(|e| format!("{k:?}: {e}"))
        })
        .collect()
}

/// The signature file of a plugin file.
pub fn signature_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".sig");
    PathBuf::from(s)
}

/// Checks owner and mode only.
pub fn check_file_mode(path: &Path, owner_uid: u32) -> Result<(), CheckError> {
    let meta = std::fs::metadata(path).map_err(|e| CheckError::Unreadable {
        path: path.into(),
        reason: e.to_string(),
    })?;
    if !meta.is_file() {
        return Err(CheckError::NotAFile(path.into()));
    }
    if meta.uid() != owner_uid {
        return Err(CheckError::NotRootOwned {
            path: path.into(),
            uid: meta.uid(),
        });
    }
    if meta.mode() & 0o022 != 0 {
        return Err(CheckError::Writable {
            path: path.into(),
            mode: meta.mode() & 0o7777,
        });
    }
    Ok(())
}

/// Every check, in order: owner and mode, then the signature.
pub fn check(path: &Path, policy: &CheckPolicy) -> Result<Trust, CheckError> {
    check_file_mode(path, policy.owner_uid)?;
    let sig_path = signature_path(path);
    let sig_text = match std::fs::read_to_string(&sig_path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return if policy.allow_unsigned {
                Ok(Trust::UnsignedAllowed)
            } else {
                Err(CheckError::Unsigned(path.into()))
            };
        }
        Err(e) => {
            return Err(CheckError::Unreadable {
                path: sig_path,
                reason: e.to_string(),
            });
        }
    };
    let signature = hex::decode(sig_text.trim())
        .ok()
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
        .map(|b| Signature::from_bytes(&b))
        .ok_or_else(|| CheckError::MalformedSignature { path: path.into() })?;
    let bytes = read_bounded(path)?;
    policy
        .trusted_keys
        .iter()
        .find(|k| k.verify(&bytes, &signature).is_ok())
        .map(|k| Trust::Signed {
            key: hex::encode(k.as_bytes()),
        })
        .ok_or(CheckError::BadSignature {
            path: path.into(),
            keys: policy.trusted_keys.len(),
        })
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, CheckError> {
    use std::io::Read;
    let unreadable = |e: std::io::Error| CheckError::Unreadable {
        path: path.into(),
        reason: e.to_string(),
    };
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let mut bytes = Vec::new();
    file.take(MAX_PLUGIN_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() as u64 > MAX_PLUGIN_BYTES {
        return Err(CheckError::Unreadable {
            path: path.into(),
            reason: format!("larger than {MAX_PLUGIN_BYTES} bytes"),
        });
    }
    Ok(bytes)
}

/// Signs a plugin file with a vendor's 32-byte seed; returns the `.sig` text (hex and newline).
pub fn sign_file(path: &Path, seed: &[u8; 32]) -> Result<String, CheckError> {
    let bytes = read_bounded(path)?;
    let key = SigningKey::from_bytes(seed);
    Ok(format!("{}\n", hex::encode(key.sign(&bytes).to_bytes())))
}

/// The public key (hex) of a vendor seed.
pub fn public_key_hex(seed: &[u8; 32]) -> String {
    hex::encode(SigningKey::from_bytes(seed).verifying_key().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn policy(seed: [u8; 32]) -> CheckPolicy {
        CheckPolicy {
            trusted_keys: parse_keys(&[public_key_hex(&seed)]).unwrap(),
            allow_unsigned: false,
            owner_uid: rustix::process::geteuid().as_raw(),
        }
    }

    #[test]
    fn signed_files_pass_and_every_fault_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.so");
        std::fs::write(&file, b"not really a library").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let p = policy([7; 32]);
        assert_eq!(check(&file, &p), Err(CheckError::Unsigned(file.clone())));
        let mut dev = p.clone();
        dev.allow_unsigned = true;
        assert_eq!(check(&file, &dev), Ok(Trust::UnsignedAllowed));
        std::fs::write(signature_path(&file), sign_file(&file, &[7; 32]).unwrap()).unwrap();
        assert!(matches!(check(&file, &p), Ok(Trust::Signed { .. })));
        // another vendor's key
        assert!(matches!(
            check(&file, &policy([8; 32])),
            Err(CheckError::BadSignature { .. })
        ));
        // the file changed after signing
        std::fs::write(&file, b"not really a library!").unwrap();
        assert!(matches!(
            check(&file, &p),
            Err(CheckError::BadSignature { .. })
        ));
        std::fs::write(signature_path(&file), "zz").unwrap();
        assert!(matches!(
            check(&file, &p),
            Err(CheckError::MalformedSignature { .. })
        ));
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(matches!(check(&file, &p), Err(CheckError::Writable { .. })));
        let mut other = p.clone();
        other.owner_uid += 1;
        assert!(matches!(
            check(&file, &other),
            Err(CheckError::NotRootOwned { .. })
        ));
    }
}
