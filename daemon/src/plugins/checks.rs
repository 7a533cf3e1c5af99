//! What a plugin file must pass before it is loaded (loading runs its code): in a plugin
//! directory owned by root and not writable by group or others, itself owned by root and not
//! writable by group or others, and a detached Ed25519 signature (`NAME.so.sig`, 128 hex
//! characters over the file's bytes) that verifies with a trusted vendor key.
//!
//! [`open_checked`] opens the file once (`O_NOFOLLOW`, relative to the opened directory), checks
//! owner and mode with `fstat` on that descriptor and the signature over the bytes read from it;
//! the library is then loaded through `/proc/self/fd/N` ([`CheckedFile::proc_path`]), so what is
//! loaded is what was checked, even if the file is replaced in between.

use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier, VerifyingKey};
use std::fs::File;
use std::os::fd::AsRawFd;
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
    /// A symbolic link (the file itself must be checked and loaded).
    #[error("{0} is a symbolic link; install the plugin file itself")]
    Symlink(PathBuf),
    /// The plugin directory could be changed by someone else than root.
    #[error("plugin directory {dir} {reason}")]
    UnsafeDirectory {
        /// Directory.
        dir: PathBuf,
        /// What is wrong.
        reason: String,
    },
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
    /// Accept a plugin directory not owned by the owner or writable by group or others, with a
    /// warning (development only).
    pub allow_unsafe_dir: bool,
}

impl CheckPolicy {
    /// The policy the daemon loads plugins with, and `fdmd check-config` checks them with:
    /// root-owned files, signed by a trusted key; unsigned files and an unsafe directory only
    /// with `--dev` (`allow_unsigned` outside it is a configuration error, see `config.rs`).
    pub fn for_config(plugins: &crate::config::PluginsSection, dev: bool) -> Result<Self, String> {
        Ok(CheckPolicy {
            trusted_keys: parse_keys(&plugins.trusted_keys)?,
            allow_unsigned: plugins.allow_unsigned && dev,
            owner_uid: 0,
            allow_unsafe_dir: dev,
        })
    }
}

/// Every configured instance checked exactly as the daemon checks it before loading
/// ([`open_checked`] with [`CheckPolicy::for_config`]): the key at fault and why, for each one
/// the daemon would refuse. Used by `fdmd check-config`.
pub fn refusals(plugins: &crate::config::PluginsSection, dev: bool) -> Vec<(String, String)> {
    let policy = match CheckPolicy::for_config(plugins, dev) {
        Ok(policy) => policy,
        Err(e) => return vec![("plugins.trusted_keys".into(), e)],
    };
    plugins
        .instance
        .iter()
        .enumerate()
        .filter_map(|(i, inst)| {
            let e = open_checked(&plugins.dir, &inst.file, &policy).err()?;
            let key = match e {
                CheckError::UnsafeDirectory { .. } => "plugins.dir".to_owned(),
                _ => format!("plugins.instance[{i}].file"),
            };
            Some((key, format!("plugin {} would be refused: {e}", inst.name)))
        })
        .collect()
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
    check_meta(&meta, path, owner_uid)
}

fn check_meta(meta: &std::fs::Metadata, path: &Path, owner_uid: u32) -> Result<(), CheckError> {
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

/// A plugin file opened once and checked through that descriptor.
#[derive(Debug)]
pub struct CheckedFile {
    file: File,
    /// How it passed.
    pub trust: Trust,
    /// What is wrong with the plugin directory, when the policy let it pass (`--dev`).
    pub dir_warning: Option<String>,
}

impl CheckedFile {
    /// `/proc/self/fd/N`: the checked file for `dlopen` in this process (or in a child that
    /// inherited the descriptor under the same number).
    pub fn proc_path(&self) -> PathBuf {
        proc_fd_path(self.file.as_raw_fd())
    }

    /// The open file.
    pub fn into_file(self) -> File {
        self.file
    }
}

/// `/proc/self/fd/N`.
pub fn proc_fd_path(fd: std::os::fd::RawFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{fd}"))
}

fn io_error(path: &Path, e: impl Into<std::io::Error>) -> CheckError {
    let e: std::io::Error = e.into();
    if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
        return CheckError::Symlink(path.into());
    }
    CheckError::Unreadable {
        path: path.into(),
        reason: e.to_string(),
    }
}

/// Opens `name` in `dir` for checking: never through a symbolic link, close-on-exec, and
/// without blocking on a FIFO.
fn open_at(dir: &File, dir_path: &Path, name: &str) -> Result<File, CheckError> {
    use rustix::fs::{Mode, OFlags};
    let path = dir_path.join(name);
    rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
        Mode::empty(),
    )
    .map(File::from)
    .map_err(|e| io_error(&path, e))
}

/// Opens a plugin file by path for loading (`O_NOFOLLOW`, close-on-exec), without the checks
/// (`fdmctl plugin check` reports those as steps of its own).
pub fn open_plugin_file(path: &Path) -> Result<File, CheckError> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32)
        .open(path)
        .map_err(|e| io_error(path, e))
}

/// Every check on `dir`/`name`, through one descriptor of the directory and one of the file:
/// the directory (owner, not group/other-writable; a warning instead with
/// `policy.allow_unsafe_dir`), the file (regular, owner, mode), then the signature over the
/// bytes read from the same descriptor that is loaded ([`CheckedFile::proc_path`]).
pub fn open_checked(
    dir: &Path,
    name: &str,
    policy: &CheckPolicy,
) -> Result<CheckedFile, CheckError> {
    use rustix::fs::{Mode, OFlags};
    if name.is_empty() || name.contains('/') {
        return Err(CheckError::NotAFile(dir.join(name)));
    }
    let dir_file = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map(File::from)
    .map_err(|e| io_error(dir, e))?;
    let dir_meta = dir_file.metadata().map_err(|e| io_error(dir, e))?;
    let problem = if dir_meta.uid() != policy.owner_uid {
        Some(format!("is owned by uid {}, not root", dir_meta.uid()))
    } else if dir_meta.mode() & 0o022 != 0 {
        Some(format!(
            "is writable by group or others (mode {:o})",
            dir_meta.mode() & 0o7777
        ))
    } else {
        None
    };
    let dir_warning = match problem {
        Some(reason) if policy.allow_unsafe_dir => {
            Some(format!("plugin directory {} {reason}", dir.display()))
        }
        Some(reason) => {
            return Err(CheckError::UnsafeDirectory {
                dir: dir.into(),
                reason,
            });
        }
        None => None,
    };
    let path = dir.join(name);
    let file = open_at(&dir_file, dir, name)?;
    let meta = file.metadata().map_err(|e| io_error(&path, e))?;
    check_meta(&meta, &path, policy.owner_uid)?;
    let sig_name = format!("{name}.sig");
    let sig_path = dir.join(&sig_name);
    let sig_text = match rustix::fs::openat(
        &dir_file,
        sig_name.as_str(),
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
        Mode::empty(),
    ) {
        Ok(fd) => Some(read_text(File::from(fd), &sig_path)?),
        Err(rustix::io::Errno::NOENT) => None,
        Err(e) => return Err(io_error(&sig_path, e)),
    };
    let trust = verify(&path, sig_text, || read_all(&file, &path), policy)?;
    Ok(CheckedFile {
        file,
        trust,
        dir_warning,
    })
}

fn read_text(file: File, path: &Path) -> Result<String, CheckError> {
    use std::io::Read;
    let mut text = String::new();
    file.take(4096)
        .read_to_string(&mut text)
        .map_err(|e| io_error(path, e))?;
    Ok(text)
}

/// Every check by path, in order: owner and mode, then the signature (for `fdmctl plugin
/// check`; the daemon uses [`open_checked`]).
pub fn check(path: &Path, policy: &CheckPolicy) -> Result<Trust, CheckError> {
    check_opened(&open_plugin_file(path)?, path, policy)
}

/// Owner and mode of an opened plugin file (`fstat`).
pub fn check_opened_mode(file: &File, path: &Path, owner_uid: u32) -> Result<(), CheckError> {
    let meta = file.metadata().map_err(|e| io_error(path, e))?;
    check_meta(&meta, path, owner_uid)
}

/// Every check on an opened plugin file (opened at `path`): owner and mode with `fstat`, then
/// the signature `path.sig` over the bytes read from `file`.
pub fn check_opened(file: &File, path: &Path, policy: &CheckPolicy) -> Result<Trust, CheckError> {
    check_opened_mode(file, path, policy.owner_uid)?;
    let sig_path = signature_path(path);
    let sig_text = match std::fs::read_to_string(&sig_path) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(CheckError::Unreadable {
                path: sig_path,
                reason: e.to_string(),
            });
        }
    };
    verify(path, sig_text, || read_all(file, path), policy)
}

fn verify(
    path: &Path,
    sig_text: Option<String>,
    bytes: impl FnOnce() -> Result<Vec<u8>, CheckError>,
    policy: &CheckPolicy,
) -> Result<Trust, CheckError> {
    let Some(sig_text) = sig_text else {
        return if policy.allow_unsigned {
            Ok(Trust::UnsignedAllowed)
        } else {
            Err(CheckError::Unsigned(path.into()))
        };
    };
    let signature = hex::decode(sig_text.trim())
        .ok()
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
        .map(|b| Signature::from_bytes(&b))
        .ok_or_else(|| CheckError::MalformedSignature { path: path.into() })?;
    let bytes = bytes()?;
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
    let file = std::fs::File::open(path).map_err(|e| io_error(path, e))?;
    read_all(&file, path)
}

/// Reads the whole file from its start through `file` (bounded).
fn read_all(file: &File, path: &Path) -> Result<Vec<u8>, CheckError> {
    use std::io::{Read, Seek};
    let unreadable = |e: std::io::Error| io_error(path, e);
    let mut file = file;
    file.seek(std::io::SeekFrom::Start(0)).map_err(unreadable)?;
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
            allow_unsafe_dir: false,
        }
    }

    #[test]
    fn open_checked_checks_the_directory_and_what_it_opened() {
        let dir = tempfile::tempdir().unwrap();
        let plugins = dir.path().join("plugins");
        std::fs::create_dir(&plugins).unwrap();
        std::fs::set_permissions(&plugins, std::fs::Permissions::from_mode(0o755)).unwrap();
        let file = plugins.join("p.so");
        std::fs::write(&file, b"library bytes").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(signature_path(&file), sign_file(&file, &[7; 32]).unwrap()).unwrap();
        let p = policy([7; 32]);
        let checked = open_checked(&plugins, "p.so", &p).unwrap();
        assert!(matches!(checked.trust, Trust::Signed { .. }));
        assert_eq!(checked.dir_warning, None);
        // The descriptor is the checked file even after the path is replaced.
        let proc_path = checked.proc_path();
        std::fs::rename(&file, plugins.join("old.so")).unwrap();
        std::fs::rename(signature_path(&file), plugins.join("old.so.sig")).unwrap();
        std::fs::write(&file, b"other bytes").unwrap();
        assert_eq!(std::fs::read(&proc_path).unwrap(), b"library bytes");
        drop(checked);
        // A symbolic link is refused.
        std::os::unix::fs::symlink("old.so", plugins.join("link.so")).unwrap();
        assert!(matches!(
            open_checked(&plugins, "link.so", &p),
            Err(CheckError::Symlink(_))
        ));
        // A group-writable directory is refused, or a warning with allow_unsafe_dir.
        std::fs::set_permissions(&plugins, std::fs::Permissions::from_mode(0o775)).unwrap();
        let e = open_checked(&plugins, "old.so", &p).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("is writable by group or others (mode 775)"),
            "{e}"
        );
        let mut dev = p.clone();
        dev.allow_unsafe_dir = true;
        let checked = open_checked(&plugins, "old.so", &dev).unwrap();
        assert!(checked.dir_warning.unwrap().contains("mode 775"));
        let mut other = p.clone();
        other.owner_uid += 1;
        std::fs::set_permissions(&plugins, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(matches!(
            open_checked(&plugins, "old.so", &other),
            Err(CheckError::UnsafeDirectory { .. })
        ));
        assert!(matches!(
            open_checked(&plugins, "missing.so", &p),
            Err(CheckError::Unreadable { .. })
        ));
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
