//! How many bytes a journal takes on disk per record: fills a journal with `load_order`s and
//! measures the files, with a breakdown per table and index from SQLite's `dbstat` table. Used by
//! the `journal_storage` benchmark and the storage test.

use crate::{FDM_ID, LOAD_NUMBERING, LOAD_SEED, load_order};
use anyhow::{Context, bail};
use fdmd::assembly::AppBuilder;
use fdmd::journal::{Journal, JournalConfig};
use fdmd::service::Receipt;
use fdmd::signer::SoftwareSigner;
use fdmd_core::journal::store::{self, Layout};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Registers `orders` orders (`load_order`, spread over `threads` registers) in a new journal
/// at `path`, then closes it (the last close checkpoints the WAL and removes it). Returns the
/// time the orders took.
pub fn fill(path: &Path, orders: u64, threads: u64) -> anyhow::Result<Duration> {
    fill_as(path, orders, threads, Layout::V2)
}

/// Like [`fill`], the journal created in `layout`.
pub fn fill_as(path: &Path, orders: u64, threads: u64, layout: Layout) -> anyhow::Result<Duration> {
    drop(store::open_for_writing_as(path, None, layout)?);
    let journal = Journal::open(
        JournalConfig::new(path, FDM_ID),
        Arc::new(SoftwareSigner::from_seed(LOAD_SEED)),
    )?;
    let registrar = AppBuilder::for_journal(journal.clone(), LOAD_NUMBERING)?;
    let threads = threads.max(1);
    let start = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let registrar = registrar.clone();
            let count = orders / threads + u64::from(t < orders % threads);
            std::thread::spawn(move || -> anyhow::Result<()> {
                let register = format!("till-{t}");
                for i in 0..count {
                    let request_id = format!("size-{t}-{i}");
                    match registrar.handle_order_enrolling(&register, &load_order(&request_id)) {
                        Receipt::Signed(_) => {}
                        other => bail!("{request_id} was not signed: {}", other.to_json()),
                    }
                }
                Ok(())
            })
        })
        .collect();
    drop(registrar);
    for w in workers {
        w.join()
            .map_err(|_| anyhow::anyhow!("a worker panicked"))??;
    }
    let took = start.elapsed();
    journal.close();
    Ok(took)
}

/// One table or index of the file, from `dbstat`.
#[derive(Debug, Clone)]
pub struct Part {
    /// Table or index name.
    pub name: String,
    /// Pages it takes.
    pub pages: u64,
    /// Bytes of payload (cells' content) in them.
    pub payload: u64,
    /// Bytes unused in them.
    pub unused: u64,
}

/// What a journal takes on disk.
#[derive(Debug, Clone)]
pub struct Size {
    /// Records in the journal.
    pub records: u64,
    /// Bytes of the database file.
    pub file: u64,
    /// Bytes of the WAL (0 when there is none).
    pub wal: u64,
    /// Page size.
    pub page_size: u64,
    /// Schema version (`PRAGMA user_version`).
    pub schema: i64,
    /// Per table and index.
    pub parts: Vec<Part>,
}

impl Size {
    /// Bytes on disk (file plus WAL) per record.
    pub fn per_record(&self) -> f64 {
        (self.file + self.wal) as f64 / self.records.max(1) as f64
    }
}

fn wal_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push("-wal");
    PathBuf::from(p)
}

/// Measures the journal at `path` (read-only; the WAL is measured as it is).
pub fn measure(path: &Path) -> anyhow::Result<Size> {
    let file = std::fs::metadata(path)
        .with_context(|| format!("{}", path.display()))?
        .len();
    let wal = std::fs::metadata(wal_path(path)).map_or(0, |m| m.len());
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let records: i64 = conn.query_row("SELECT count(*) FROM records", [], |r| r.get(0))?;
    let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    let schema: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let mut stmt = conn.prepare(
        "SELECT name, count(*), sum(payload), sum(unused) FROM dbstat GROUP BY name ORDER BY 2 DESC",
    )?;
    let parts = stmt
        .query_map([], |r| {
            Ok(Part {
                name: r.get(0)?,
                pages: r.get::<_, i64>(1)? as u64,
                payload: r.get::<_, i64>(2)? as u64,
                unused: r.get::<_, i64>(3)? as u64,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Size {
        records: records as u64,
        file,
        wal,
        page_size: page_size as u64,
        schema,
        parts,
    })
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.records.max(1) as f64;
        writeln!(
            f,
            "schema {}: {} records, file {} B + WAL {} B = {:.0} B per record (page {} B)",
            self.schema,
            self.records,
            self.file,
            self.wal,
            self.per_record(),
            self.page_size
        )?;
        for p in &self.parts {
            let bytes = p.pages * self.page_size;
            writeln!(
                f,
                "  {:<20} {:>7} pages {:>7.1} B/record: payload {:>6.1}, unused {:>6.1}, other {:>5.1}",
                p.name,
                p.pages,
                bytes as f64 / n,
                p.payload as f64 / n,
                p.unused as f64 / n,
                (bytes.saturating_sub(p.payload + p.unused)) as f64 / n,
            )?;
        }
        Ok(())
    }
}
