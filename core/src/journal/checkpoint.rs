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
//! synced before the WAL may be reused), only on another connection.
//!
//! The thread is asked once per WAL generation: under a load without pauses a PASSIVE
//! checkpoint rarely reaches the WAL's end (the writer commits meanwhile, so the WAL cannot
//! restart), and asking again after every commit would copy the same hot pages (the indexes'
//! leaves) over and over. (Asking again every further 1,000 pages moved more of the copying off
//! the writer, but copied more in all; on two cores that did not pay, see docs/benchmarks.md.)
//! If the WAL then reaches [`CheckpointLimits::inline_pages`], the writer checkpoints inline,
//! as SQLite would have done: that checkpoint completes, the WAL restarts, and it stays bounded.

use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;

/// When the WAL is checkpointed, in pages (SQLite's default page is 4 KiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointLimits {
    /// From this many pages in the WAL, the checkpoint thread is asked to run (once per WAL
    /// generation).
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
        let mut policy = Policy::new(limits);
        let hooked = writer.wal_hook(Some(move |wal: &mut rusqlite::hooks::Wal, pages| {
            match policy.after_commit(u32::try_from(pages).unwrap_or(u32::MAX)) {
                // The commit has happened whatever this returns; a failed checkpoint must not
                // make it look failed, so its error is dropped (as SQLite's own auto-checkpoint
                // does).
                Action::Inline => drop(wal.checkpoint()),
                Action::AskThread => hook_signal.update(|w| w.checkpoint = true),
                Action::Nothing => {}
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

/// What the writer does about checkpoints after a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Nothing,
    AskThread,
    Inline,
}

/// When to ask the thread and when to checkpoint inline (see the module's documentation).
struct Policy {
    limits: CheckpointLimits,
    /// Whether the thread was asked in this WAL generation.
    asked: bool,
}

impl Policy {
    fn new(limits: CheckpointLimits) -> Self {
        Policy {
            limits,
            asked: false,
        }
    }

    /// The action after a commit that left `pages` pages in the WAL.
    fn after_commit(&mut self, pages: u32) -> Action {
        if pages >= self.limits.inline_pages {
            Action::Inline
        } else if pages < self.limits.background_pages {
            // The WAL restarted: a new generation.
            self.asked = false;
            Action::Nothing
        } else if std::mem::replace(&mut self.asked, true) {
            Action::Nothing
        } else {
            Action::AskThread
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_thread_is_asked_once_per_wal_generation_then_the_writer_checkpoints_inline() {
        let mut policy = Policy::new(CheckpointLimits::default());
        let actions: Vec<(u32, Action)> = [10, 999, 1000, 1100, 2050, 3999, 4000]
            .into_iter()
            .map(|pages| (pages, policy.after_commit(pages)))
            .collect();
        assert_eq!(
            actions,
            [
                (10, Action::Nothing),
                (999, Action::Nothing),
                (1000, Action::AskThread),
                (1100, Action::Nothing),
                (2050, Action::Nothing),
                (3999, Action::Nothing),
                (4000, Action::Inline),
            ]
        );
    }

    #[test]
    fn a_restarted_wal_starts_a_new_generation() {
        let mut policy = Policy::new(CheckpointLimits::default());
        assert_eq!(policy.after_commit(1500), Action::AskThread);
        assert_eq!(policy.after_commit(1600), Action::Nothing);
        // The WAL restarted (a checkpoint reached its end): a new generation asks again.
        assert_eq!(policy.after_commit(40), Action::Nothing);
        assert_eq!(policy.after_commit(1000), Action::AskThread);
    }

    #[test]
    fn past_the_inline_limit_the_writer_checkpoints_after_every_commit() {
        let mut policy = Policy::new(CheckpointLimits {
            background_pages: 100,
            inline_pages: 300,
        });
        assert_eq!(policy.after_commit(150), Action::AskThread);
        assert_eq!(policy.after_commit(300), Action::Inline);
        assert_eq!(policy.after_commit(320), Action::Inline);
    }
}
