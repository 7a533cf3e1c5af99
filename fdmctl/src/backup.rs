//! `fdmctl backup FILE`: a safe copy of a live journal.
//!
//! Copying `journal.sqlite` with `cp` while fdmd runs can give a torn file, and leaves out what
//! is still in `journal.sqlite-wal`. This uses SQLite's online backup API instead: one read
//! transaction on the journal (the daemon keeps writing meanwhile; the copy is the journal as of
//! one committed record), then the copy is turned into a self-contained single file (rollback
//! journal mode, no `-wal`), synced, checked (`PRAGMA integrity_check`, then every hash, link and
//! signature, as `fdmctl verify`), and only then renamed to `FILE`. An existing `FILE` is never
//! overwritten.

use anyhow::{Context, bail};
use fdmd::journal::export::verify_database;
use fdmd::journal::query;
use fdmd::paths;
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Copies the journal of `data_dir` to `file`, verified; exit 0 when the copy verifies.
pub fn run(data_dir: &Path, file: &Path, keys: Vec<String>) -> anyhow::Result<ExitCode> {
    let keys = keys
        .iter()
        .map(|k| crate::verify::parse_key(k))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if file.exists() {
        bail!(
            "{} exists; a backup never overwrites a file",
            file.display()
        );
    }
    let partial = partial_path(file)?;
    let _ = std::fs::remove_file(&partial);
    let result = copy_and_verify(data_dir, &partial, keys);
    let summary = match result {
        Ok(summary) => summary,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    std::fs::rename(&partial, file)
        .with_context(|| format!("renaming {} to {}", partial.display(), file.display()))?;
    sync_parent(file)?;
    println!(
        "OK: {} copied to {} and verified",
        paths::journal_file(data_dir).display(),
        file.display()
    );
    match (summary.first_seq, summary.last_seq) {
        (Some(first), Some(last)) => println!(
            "  {} records ({first} to {last}), last hash {}",
            summary.records,
            summary.last_hash.as_deref().unwrap_or("-")
        ),
        _ => println!("  the journal is empty"),
    }
    if !summary.keys_trusted && summary.records > 0 {
        println!("  note: keys were taken from the journal itself; pass --key to check them");
    }
    Ok(ExitCode::SUCCESS)
}

/// `FILE.partial` beside `FILE` (same file system, so the final rename is atomic).
fn partial_path(file: &Path) -> anyhow::Result<PathBuf> {
    let name = file
        .file_name()
        .with_context(|| format!("{} is not a file name", file.display()))?;
    let mut partial = name.to_os_string();
    partial.push(".partial");
    Ok(file.with_file_name(partial))
}

fn copy_and_verify(
    data_dir: &Path,
    partial: &Path,
    keys: Vec<Vec<u8>>,
) -> anyhow::Result<fdmd::journal::verify::VerifySummary> {
    let source = crate::open_journal(data_dir)?;
    {
        let mut copy =
            Connection::open(partial).with_context(|| format!("creating {}", partial.display()))?;
        let backup = rusqlite::backup::Backup::new(&source, &mut copy)
            .context("starting the online backup")?;
        // All pages in one step: one read transaction, so one consistent state of the journal
        // even while the daemon writes (smaller steps restart whenever it commits).
        copy_all_pages(&backup)?;
        drop(backup);
        // A single self-contained file: no -wal beside it.
        let mode: String = copy
            .query_row("PRAGMA journal_mode=DELETE", [], |r| r.get(0))
            .context("switching the copy to rollback-journal mode")?;
        if !mode.eq_ignore_ascii_case("delete") {
            bail!("the copy stayed in journal mode {mode}");
        }
    }
    drop(source);
    std::fs::File::open(partial)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("syncing {}", partial.display()))?;
    let copy = query::open_read_only(partial)
        .with_context(|| format!("opening the copy {}", partial.display()))?;
    let integrity: String = copy
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .context("integrity check of the copy")?;
    if integrity != "ok" {
        bail!("the copy fails SQLite's integrity check: {integrity}");
    }
    verify_database(&copy, keys).map_err(|e| anyhow::anyhow!("the copy does not verify: {e}"))
}

/// One `sqlite3_backup_step(-1)`, retried (bounded) while the journal is locked.
fn copy_all_pages(backup: &rusqlite::backup::Backup<'_, '_>) -> anyhow::Result<()> {
    use rusqlite::backup::StepResult;
    for _ in 0..100 {
        match backup.step(-1).context("copying the journal")? {
            StepResult::Done => return Ok(()),
            StepResult::More | StepResult::Busy | StepResult::Locked => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            _ => bail!("the online backup stopped for an unknown reason"),
        }
    }
    bail!("the journal stayed locked for 5 s; try again")
}

fn sync_parent(file: &Path) -> anyhow::Result<()> {
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))
}
