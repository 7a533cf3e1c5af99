//! WAL checkpoints on their own thread, so that the writer does not copy pages and wait for
//! the database file's `fsync` in the middle of a batch.
//!
//! SQLite's automatic checkpoint runs inside the COMMIT of whichever connection pushed the WAL
//! past its threshold: with one writer, always the writer. Measured under load it took about a
//! fifth of the writer thread's CPU, plus the time it waits for two `fsync`s. Here the writer's
//! WAL hook only signals a `journal-checkpoint` thread, which checkpoints on its own connection
//! in PASSIVE mode (it never blocks the writer, and the writer never waits for it).
//!
//! Durability is unchanged: the writer's COMMIT still syncs the WAL (`synchronous=FULL`), and a
//! checkpoint is SQLite's own (the WAL is synced before pages are copied, the database file is
//! synced before the WAL may be reused), only on another connection. The thread is asked once
//! per WAL generation: under a load without pauses a PASSIVE checkpoint may never reach the
//! WAL's end (the writer commits meanwhile, so the WAL cannot restart), and asking again after
//! every commit would copy the same hot pages over and over. If the WAL then reaches
//! [`CheckpointLimits::inline_pages`], the writer checkpoints inline, as SQLite would have done:
//! that checkpoint completes, the WAL restarts, and it stays bounded.

use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;

/// When the WAL is checkpointed, in pages (SQLite's default page is 4 KiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointLimits {
    /// From this many pages in the WAL, the checkpoint thread is asked to run.
    pub background_pages: u32,
    /// From this many, the writer checkpoints itself after its commit.
    pub inline_pages: u32,
}

impl Default for CheckpointLimits {
    /// 1,000 pages (SQLite's own automatic threshold) in the background; 4,000 (about 16 MB)
    /// inline.
    fn default() -> Self {
        CheckpointLimits {
            background_pages: 1000,
            inline_pages: 4000,
        }
    }
}

#[derive(Default)]
struct Wanted {
    checkpoint: bool,
    stop: bool,
}

/// What the writer and the checkpoint thread share.
#[derive(Default)]
struct Signal {
    wanted: Mutex<Wanted>,
    changed: Condvar,
}

impl Signal {
    fn update(&self, f: impl FnOnce(&mut Wanted)) {
        let mut wanted = self.wanted.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut wanted);
        self.changed.notify_one();
    }

    /// Waits until a checkpoint is wanted (true) or the thread must stop (false).
    fn wait(&self) -> bool {
        let mut wanted = self.wanted.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if wanted.stop {
                return false;
            }
            if std::mem::take(&mut wanted.checkpoint) {
                return true;
            }
            wanted = self
                .changed
                .wait(wanted)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// The checkpoint thread; [`Checkpointer::stop`] ends it.
pub(super) struct Checkpointer {
    signal: Arc<Signal>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Opens a second connection to the journal, starts the `journal-checkpoint` thread and
    /// installs the WAL hook on the writer's connection (which replaces SQLite's automatic
    /// checkpoint). On any failure the writer keeps SQLite's automatic checkpoint.
    pub(super) fn start(
        writer: &mut Connection,
        path: &Path,
        limits: CheckpointLimits,
    ) -> std::io::Result<Checkpointer> {
        let conn = open_for_checkpoints(path).map_err(std::io::Error::other)?;
        let signal = Arc::new(Signal::default());
        let thread_signal = signal.clone();
        let thread = std::thread::Builder::new()
            .name("journal-checkpoint".into())
            .spawn(move || {
                while thread_signal.wait() {
                    // A failure (busy, disk full) leaves the WAL as it is; the next signal, or
                    // the writer's inline checkpoint, tries again.
                    let _ = conn
                        .wal_checkpoint_v2(None::<&str>, rusqlite::wal::CheckpointMode::PASSIVE);
                }
            })?;
        let hook_signal = signal.clone();
        // Once per WAL generation: a checkpoint that cannot reach the WAL's end (the writer
        // commits meanwhile) would otherwise be asked for again after every commit, copying
        // the same hot pages over and over.
        let mut asked = false;
        let hooked = writer.wal_hook(Some(move |wal: &mut rusqlite::hooks::Wal, pages| {
            let pages = u32::try_from(pages).unwrap_or(0);
            if pages >= limits.inline_pages {
                // The commit has happened whatever this returns; a failed checkpoint must not
                // make it look failed, so its error is dropped (as SQLite's own auto-checkpoint
                // does).
                let _ = wal.checkpoint();
            } else if pages >= limits.background_pages {
                if !std::mem::replace(&mut asked, true) {
                    hook_signal.update(|w| w.checkpoint = true);
                }
            } else {
                // The WAL restarted: a new generation.
                asked = false;
            }
            Ok(())
        }));
        let mut checkpointer = Checkpointer {
            signal,
            thread: Some(thread),
        };
        if let Err(e) = hooked {
            checkpointer.stop();
            return Err(std::io::Error::other(e));
        }
        Ok(checkpointer)
    }

    /// Ends the thread and waits for it (its last checkpoint, if one is running, completes).
    pub(super) fn stop(&mut self) {
        self.signal.update(|w| w.stop = true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn open_for_checkpoints(path: &Path) -> rusqlite::Result<Connection> {
    // Read-write (a checkpoint writes the database file), never creating it.
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    // The checkpoint syncs the WAL and the database file as the connection's level says.
    conn.execute_batch("PRAGMA synchronous=FULL;")?;
    Ok(conn)
}
