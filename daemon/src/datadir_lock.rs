//! One fdmd per data directory: an exclusive `flock` on `fdmd.lock` inside it, taken before
//! anything is written there and held for the life of the process.
//!
//! A second fdmd started on the same directory (by hand beside the service, or by a second
//! unit) would otherwise open the same journal, write its `daemon_start` record after the
//! first daemon's last one and leave that daemon's heads behind: every later order of the
//! first daemon would be refused. With the lock the second one stops before writing anything
//! and names the process that holds the directory. The lock is advisory: `fdmctl`'s read-only
//! commands (verify, export, status) do not take it and keep working beside the daemon.
//!
//! The kernel drops the lock when the process ends, however it ends; a stale lock file left
//! behind is harmless (only the lock on it counts, not its existence).

use rustix::fs::{FlockOperation, flock};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Name of the lock file inside the data directory.
pub const LOCK_FILE: &str = "fdmd.lock";

/// Exit status of `fdmd run` when another process holds the data directory (`EX_TEMPFAIL`:
/// it may work once the other process has stopped).
pub const EXIT_LOCKED: u8 = 75;

/// The held lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
    path: PathBuf,
}

impl DataDirLock {
    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Why the data directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds the lock.
    #[error(
        "data directory {dir} is in use by another fdmd ({holder}); stop it first — two daemons on one journal would break each other's chain"
    )]
    Held {
        /// The data directory.
        dir: PathBuf,
        /// Who holds it, as the holder wrote it into the lock file.
        holder: String,
    },
    /// The lock file could not be opened, locked or written.
    #[error("lock file {path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

/// Takes the exclusive lock of `dir` without waiting, and writes this process's id into the
/// lock file (for the error the next one would print).
pub fn lock(dir: &Path) -> Result<DataDirLock, LockError> {
    let path = dir.join(LOCK_FILE);
    let io = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(&path)
        .map_err(io)?;
    match flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(rustix::io::Errno::WOULDBLOCK) => {
            let mut text = String::new();
            let _ = file.take(256).read_to_string(&mut text);
            let holder = match text.trim().parse::<u32>() {
                Ok(pid) => format!("process {pid}"),
                Err(_) => "a process that has not written its id yet".to_owned(),
            };
            return Err(LockError::Held {
                dir: dir.to_owned(),
                holder,
            });
        }
        Err(e) => return Err(io(e.into())),
    }
    file.set_len(0).map_err(io)?;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    writeln!(file, "{}", std::process::id()).map_err(io)?;
    Ok(DataDirLock { _file: file, path })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_and_names_the_holder_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock(dir.path()).unwrap();
        // flock locks belong to the open file description: a second open in this process
        // conflicts just as another process's would.
        let second = lock(dir.path()).unwrap_err();
        let message = second.to_string();
        assert!(
            message.contains(&format!("process {}", std::process::id())),
            "{message}"
        );
        drop(first);
        assert!(lock(dir.path()).is_ok());
    }
}
