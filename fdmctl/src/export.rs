//! `fdmctl export`: records as JSON lines (docs/journal-format.md), by sequence or by FDM date.

use crate::open_journal;
use anyhow::{Context, bail};
use fdmd::journal::export::write_export;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

/// What to export and where.
pub struct ExportRequest {
    /// Data directory holding journal.sqlite.
    pub data_dir: PathBuf,
    /// First record.
    pub from_seq: u64,
    /// Last record (default: the last one).
    pub to_seq: Option<u64>,
    /// First FDM date (with `to_date`), instead of sequence numbers.
    pub from_date: Option<String>,
    /// Last FDM date.
    pub to_date: Option<String>,
    /// Output file (default: standard output).
    pub output: Option<PathBuf>,
}

/// Writes the export and says which records it holds (on standard error).
pub fn run(request: ExportRequest) -> anyhow::Result<ExitCode> {
    let ExportRequest {
        data_dir,
        mut from_seq,
        mut to_seq,
        from_date,
        to_date,
        output,
    } = request;
    let conn = open_journal(&data_dir)?;
    if let (Some(from), Some(to)) = (&from_date, &to_date) {
        match fdmd::reports::period::seq_range_of_dates(&conn, from, to)? {
            Some((a, b)) => {
                from_seq = a;
                to_seq = Some(b);
            }
            None => bail!("the journal has no records dated {from} to {to}"),
        }
    }
    let now = fdmd::journal::format_time(chrono::Local::now().fixed_offset());
    let header = match &output {
        Some(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("creating {}", path.display()))?;
            let mut out = BufWriter::new(file);
            let header = write_export(&conn, from_seq, to_seq.unwrap_or(u64::MAX), &now, &mut out)?;
            out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            header
        }
        None => {
            let stdout = std::io::stdout();
            let mut out = BufWriter::new(stdout.lock());
            let header = write_export(&conn, from_seq, to_seq.unwrap_or(u64::MAX), &now, &mut out)?;
            out.flush()?;
            header
        }
    };
    eprintln!(
        "exported records {} to {}",
        header.first_seq, header.last_seq
    );
    Ok(ExitCode::SUCCESS)
}
