//! Who may talk to fdmd: enrolled registers and stations, their credentials, and the admin token.
//!
//! Secrets are random (192 bits), shown once when issued, and stored only as SHA-256 hashes in
//! `DATA_DIR/access.json` (mode 0600, written atomically). The admin token is kept in
//! `DATA_DIR/admin.token` (mode 0600) so that `fdmctl` on the box, run as root or the fdmd user,
//! can use the admin API.

use crate::fiscal::order::is_valid_id;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

/// Who a client is, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Principal {
    /// A register (POS, handheld): publishes its own orders, reads its own receipts.
    Register(String),
    /// A station printer or screen: reads its own station's tickets.
    Station(String),
    /// An administrator (fdmctl, installer).
    Admin,
}

/// What kind of client an enrolment is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientKind {
    /// A register.
    Register,
    /// A station.
    Station,
}

/// One enrolled client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrolment {
    /// Register or station id.
    pub id: String,
    /// Register or station.
    pub kind: ClientKind,
    /// MQTT user name (`register:ID` or `station:ID`).
    pub mqtt_username: String,
    /// SHA-256 hex of the MQTT password.
    pub mqtt_password_sha256: String,
    /// SHA-256 hex of the HTTP bearer token.
    pub http_token_sha256: String,
    /// False once revoked.
    pub active: bool,
    /// When enrolled (RFC 3339).
    pub enrolled_at: String,
    /// When revoked, if it was.
    pub revoked_at: Option<String>,
}

/// Credentials as issued: shown once, never stored in clear.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Credentials {
    /// Register or station id.
    pub id: String,
    /// Register or station.
    pub kind: ClientKind,
    /// MQTT user name.
    pub mqtt_username: String,
    /// MQTT password.
    pub mqtt_password: String,
    /// HTTP bearer token.
    pub http_token: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct AccessFile {
    version: u32,
    admin_token_sha256: String,
    clients: BTreeMap<String, Enrolment>,
}

/// Why an access change failed.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// The id is not a valid id.
    #[error("{0:?} is not a valid id: 1-32 characters of A-Z a-z 0-9 . _ - (and not \"fdmd\")")]
    BadId(String),
    /// Already enrolled and active.
    #[error("{kind:?} {id} is already enrolled; revoke it first to issue new credentials")]
    Exists {
        /// Kind.
        kind: ClientKind,
        /// Id.
        id: String,
    },
    /// Not enrolled.
    #[error("{0} is not enrolled")]
    Unknown(String),
    /// The file could not be read or written.
    #[error("{path}: {message}")]
    Io {
        /// File.
        path: String,
        /// Cause.
        message: String,
    },
    /// No randomness.
    #[error("no randomness for credentials: {0}")]
    Random(String),
}

/// The access file, in memory, written through on every change.
pub struct AccessStore {
    path: PathBuf,
    state: RwLock<AccessFile>,
    /// Held by each change (enrol, revoke) from its check to its save, so that concurrent changes
    /// neither both pass the check nor write the file over each other.
    changes: std::sync::Mutex<()>,
    /// Counts revocations, so that open connections can check whether theirs was one.
    revocations: tokio::sync::watch::Sender<u64>,
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn random_secret() -> Result<String, AccessError> {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).map_err(|e| AccessError::Random(e.to_string()))?;
    Ok(hex::encode(bytes))
}

/// Compares two hashes without an early exit.
fn same_hash(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn key(kind: ClientKind, id: &str) -> String {
    match kind {
        ClientKind::Register => format!("register:{id}"),
        ClientKind::Station => format!("station:{id}"),
    }
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> AccessError {
    AccessError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Writes a file atomically with mode 0600: temporary file, fsync, rename, fsync of the directory.
pub fn write_private_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

impl AccessStore {
    /// Opens `DATA_DIR/access.json`, creating it and `DATA_DIR/admin.token` the first time.
    pub fn open(data_dir: &Path) -> Result<AccessStore, AccessError> {
        let path = data_dir.join("access.json");
        let token_path = data_dir.join("admin.token");
        let state = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| io_err(&path, e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => AccessFile {
                version: 1,
                ..AccessFile::default()
            },
            Err(e) => return Err(io_err(&path, e)),
        };
        let store = AccessStore {
            path,
            state: RwLock::new(state),
            changes: std::sync::Mutex::new(()),
            revocations: tokio::sync::watch::Sender::new(0),
        };
        let token = std::fs::read_to_string(&token_path)
            .ok()
            .map(|t| t.trim().to_owned());
        let needs_token = match (&token, store.read().admin_token_sha256.as_str()) {
            (Some(t), stored) => !same_hash(&sha256_hex(t), stored),
            (None, _) => true,
        };
        if needs_token {
            let token = random_secret()?;
            write_private_atomically(&token_path, format!("{token}\n").as_bytes())
                .map_err(|e| io_err(&token_path, e))?;
            store.write().admin_token_sha256 = sha256_hex(&token);
            store.save()?;
        }
        Ok(store)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, AccessFile> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, AccessFile> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    fn save(&self) -> Result<(), AccessError> {
        let bytes = serde_json::to_vec_pretty(&*self.read()).map_err(|e| io_err(&self.path, e))?;
        write_private_atomically(&self.path, &bytes).map_err(|e| io_err(&self.path, e))
    }

    /// Enrols a register or station and issues its credentials.
    pub fn enrol(&self, kind: ClientKind, id: &str, now: &str) -> Result<Credentials, AccessError> {
        let _change = self.changes.lock().unwrap_or_else(|p| p.into_inner());
        check_new_id(self, kind, id)?;
        let k = key(kind, id);
        let creds = Credentials {
            id: id.to_owned(),
            kind,
            mqtt_username: k.clone(),
            mqtt_password: random_secret()?,
            http_token: random_secret()?,
        };
        self.write().clients.insert(
            k.clone(),
            Enrolment {
                id: id.to_owned(),
                kind,
                mqtt_username: k,
                mqtt_password_sha256: sha256_hex(&creds.mqtt_password),
                http_token_sha256: sha256_hex(&creds.http_token),
                active: true,
                enrolled_at: now.to_owned(),
                revoked_at: None,
            },
        );
        self.save()?;
        Ok(creds)
    }

    /// Revokes a client: its credentials stop working at once.
    pub fn revoke(&self, kind: ClientKind, id: &str, now: &str) -> Result<(), AccessError> {
        let _change = self.changes.lock().unwrap_or_else(|p| p.into_inner());
        {
            let mut state = self.write();
            let entry = state
                .clients
                .get_mut(&key(kind, id))
                .filter(|e| e.active)
                .ok_or_else(|| AccessError::Unknown(id.to_owned()))?;
            entry.active = false;
            entry.revoked_at = Some(now.to_owned());
        }
        let saved = self.save();
        self.revocations.send_modify(|n| *n += 1);
        saved
    }

    /// Changes after every revocation; a connection then checks [`AccessStore::is_active`].
    pub fn revocations(&self) -> tokio::sync::watch::Receiver<u64> {
        self.revocations.subscribe()
    }

    /// False once the register or station `who` is revoked (the administrator is never
    /// revoked).
    pub fn is_active(&self, who: &Principal) -> bool {
        let (kind, id) = match who {
            Principal::Register(id) => (ClientKind::Register, id),
            Principal::Station(id) => (ClientKind::Station, id),
            Principal::Admin => return true,
        };
        self.read()
            .clients
            .get(&key(kind, id))
            .is_some_and(|e| e.active)
    }

    /// Every enrolment, active or revoked.
    pub fn list(&self) -> Vec<Enrolment> {
        self.read().clients.values().cloned().collect()
    }

    /// The enrolment of a register, if active.
    pub fn active_register(&self, id: &str) -> bool {
        self.read()
            .clients
            .get(&key(ClientKind::Register, id))
            .is_some_and(|e| e.active)
    }

    /// Checks MQTT credentials.
    pub fn check_mqtt(&self, username: &str, password: &str) -> Option<Principal> {
        let state = self.read();
        let entry = state.clients.get(username).filter(|e| e.active)?;
        same_hash(&sha256_hex(password), &entry.mqtt_password_sha256).then(|| principal(entry))
    }

    /// Checks a register's HTTP bearer token.
    pub fn check_http(&self, kind: ClientKind, id: &str, token: &str) -> bool {
        self.read()
            .clients
            .get(&key(kind, id))
            .filter(|e| e.active)
            .is_some_and(|e| same_hash(&sha256_hex(token), &e.http_token_sha256))
    }

    /// Whether `token` is the HTTP token of any active client of this kind (for what every
    /// enrolled register may read, whoever it is).
    pub fn check_any_http(&self, kind: ClientKind, token: &str) -> bool {
        let hash = sha256_hex(token);
        self.read()
            .clients
            .values()
            .filter(|e| e.active && e.kind == kind)
            .any(|e| same_hash(&hash, &e.http_token_sha256))
    }

    /// Whether `token` is the admin token or the HTTP token of any active register or station:
    /// whether the request that bears it comes from someone enrolled (see
    /// [`crate::admission`]).
    pub fn check_any_token(&self, token: &str) -> bool {
        let hash = sha256_hex(token);
        let state = self.read();
        (!state.admin_token_sha256.is_empty() && same_hash(&hash, &state.admin_token_sha256))
            || state
                .clients
                .values()
                .any(|e| e.active && same_hash(&hash, &e.http_token_sha256))
    }

    /// Checks the admin token.
    pub fn check_admin(&self, token: &str) -> bool {
        let state = self.read();
        !state.admin_token_sha256.is_empty()
            && same_hash(&sha256_hex(token), &state.admin_token_sha256)
    }
}

/// Ids no register or station may take: fdmd's own MQTT client id.
pub const RESERVED_IDS: &[&str] = &["fdmd"];

/// Checks that `id` is valid and not enrolled already (active), before anything is journaled.
pub fn check_new_id(store: &AccessStore, kind: ClientKind, id: &str) -> Result<(), AccessError> {
    if !is_valid_id(id, 32) || id.contains(':') {
        return Err(AccessError::BadId(id.to_owned()));
    }
    if store
        .read()
        .clients
        .get(&key(kind, id))
        .is_some_and(|e| e.active)
    {
        return Err(AccessError::Exists {
            kind,
            id: id.to_owned(),
        });
    }
    Ok(())
}

fn principal(e: &Enrolment) -> Principal {
    match e.kind {
        ClientKind::Register => Principal::Register(e.id.clone()),
        ClientKind::Station => Principal::Station(e.id.clone()),
    }
}

/// Reads the admin token for fdmctl.
pub fn read_admin_token(data_dir: &Path) -> std::io::Result<String> {
    Ok(std::fs::read_to_string(data_dir.join("admin.token"))?
        .trim()
        .to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_enrolments_are_all_kept_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(AccessStore::open(dir.path()).unwrap());
        let threads: Vec<_> = (0..16)
            .map(|t| {
                let store = store.clone();
                std::thread::spawn(move || {
                    (0..4)
                        .map(|i| store.enrol(ClientKind::Register, &format!("till-{t}-{i}"), "t"))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for t in threads {
            for result in t.join().unwrap() {
                assert!(result.is_ok(), "{result:?}");
            }
        }
        let reopened = AccessStore::open(dir.path()).unwrap();
        for t in 0..16 {
            for i in 0..4 {
                assert!(reopened.active_register(&format!("till-{t}-{i}")));
            }
        }
    }

    #[test]
    fn enrol_check_revoke() {
        let dir = tempfile::tempdir().unwrap();
        let store = AccessStore::open(dir.path()).unwrap();
        let c = store.enrol(ClientKind::Register, "till-1", "t").unwrap();
        assert_eq!(c.mqtt_username, "register:till-1");
        assert_eq!(
            store.check_mqtt("register:till-1", &c.mqtt_password),
            Some(Principal::Register("till-1".into()))
        );
        assert_eq!(store.check_mqtt("register:till-1", "wrong"), None);
        assert!(store.check_http(ClientKind::Register, "till-1", &c.http_token));
        assert!(!store.check_http(ClientKind::Register, "till-1", &c.mqtt_password));
        assert!(matches!(
            store.enrol(ClientKind::Register, "till-1", "t"),
            Err(AccessError::Exists { .. })
        ));
        assert!(matches!(
            store.enrol(ClientKind::Register, "bad id", "t"),
            Err(AccessError::BadId(_))
        ));
        // Survives reopening; secrets are not stored in clear.
        let text = std::fs::read_to_string(dir.path().join("access.json")).unwrap();
        assert!(!text.contains(&c.mqtt_password) && !text.contains(&c.http_token));
        let again = AccessStore::open(dir.path()).unwrap();
        assert!(again.check_http(ClientKind::Register, "till-1", &c.http_token));
        again.revoke(ClientKind::Register, "till-1", "t2").unwrap();
        assert_eq!(again.check_mqtt("register:till-1", &c.mqtt_password), None);
        assert!(!again.active_register("till-1"));
        // Revoked ids can be enrolled again with new credentials.
        let c2 = again.enrol(ClientKind::Register, "till-1", "t3").unwrap();
        assert_ne!(c2.mqtt_password, c.mqtt_password);
    }

    #[test]
    fn admin_token_file_is_private_and_stable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let store = AccessStore::open(dir.path()).unwrap();
        let token = read_admin_token(dir.path()).unwrap();
        assert!(store.check_admin(&token));
        assert!(!store.check_admin("nope"));
        let mode = std::fs::metadata(dir.path().join("admin.token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = AccessStore::open(dir.path()).unwrap();
        assert!(again.check_admin(&token));
    }
}
