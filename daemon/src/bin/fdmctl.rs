//! `fdmctl`: the installer's and inspector's command for fdmd.

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use fdmd::journal::export::{ExportError, verify_database, verify_export, write_export};
use fdmd::journal::store;
use fdmd::journal::verify::VerifySummary;
use fdmd::paths;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "fdmctl",
    version,
    about = "Control and verify an fdmd fiscal data module host"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Verify a journal (the data directory's, or an export file): every hash, link, signature
    /// and counter. Exits 1 and names the first bad record if anything is wrong.
    Verify {
        /// Data directory holding journal.sqlite.
        #[arg(long, default_value = paths::DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
        /// A trusted signer public key (64 hex characters); repeat for several. Without one, the
        /// keys the journal declares are used, and the report says so.
        #[arg(long = "key", value_name = "HEX")]
        keys: Vec<String>,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
        /// An export file to verify instead of the data directory's journal.
        export_file: Option<PathBuf>,
    },
    /// Export records as JSON lines (docs/journal-format.md), to a file or standard output.
    Export {
        /// Data directory holding journal.sqlite.
        #[arg(long, default_value = paths::DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
        /// First record to export.
        #[arg(long, default_value_t = 1)]
        from_seq: u64,
        /// Last record to export (default: the last one).
        #[arg(long)]
        to_seq: Option<u64>,
        /// Output file (default: standard output).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("fdmctl: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Verify {
            data_dir,
            keys,
            json,
            export_file,
        } => {
            let keys = keys
                .iter()
                .map(|k| parse_key(k))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let result = match &export_file {
                Some(file) => {
                    let f = std::fs::File::open(file)
                        .with_context(|| format!("opening {}", file.display()))?;
                    verify_export(BufReader::new(f), keys).map(|(_, s)| s)
                }
                None => {
                    let conn = open_journal(&data_dir)?;
                    verify_database(&conn, keys)
                }
            };
            let source = export_file
                .as_ref()
                .map_or_else(|| paths::journal_file(&data_dir), Clone::clone);
            report_verification(&source, result, json)
        }
        Command::Export {
            data_dir,
            from_seq,
            to_seq,
            output,
        } => {
            let conn = open_journal(&data_dir)?;
            let now = fdmd::journal::format_time(chrono::Local::now().fixed_offset());
            let header = match &output {
                Some(path) => {
                    let file = std::fs::File::create(path)
                        .with_context(|| format!("creating {}", path.display()))?;
                    let mut out = BufWriter::new(file);
                    let header =
                        write_export(&conn, from_seq, to_seq.unwrap_or(u64::MAX), &now, &mut out)?;
                    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
                    header
                }
                None => {
                    let stdout = std::io::stdout();
                    let mut out = BufWriter::new(stdout.lock());
                    let header =
                        write_export(&conn, from_seq, to_seq.unwrap_or(u64::MAX), &now, &mut out)?;
                    out.flush()?;
                    header
                }
            };
            eprintln!(
                "exported records {}..={}",
                header.first_seq, header.last_seq
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn open_journal(data_dir: &Path) -> anyhow::Result<rusqlite::Connection> {
    let file = paths::journal_file(data_dir);
    if !file.exists() {
        bail!("no journal at {} (use --data-dir)", file.display());
    }
    store::open_read_only(&file).with_context(|| format!("opening {}", file.display()))
}

fn parse_key(text: &str) -> anyhow::Result<Vec<u8>> {
    let bytes = hex::decode(text.trim()).with_context(|| format!("key {text:?} is not hex"))?;
    if bytes.len() != 32 {
        bail!(
            "key {text:?} is {} bytes; an Ed25519 public key is 32",
            bytes.len()
        );
    }
    Ok(bytes)
}

fn report_verification(
    source: &Path,
    result: Result<VerifySummary, ExportError>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    match result {
        Ok(s) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                println!("OK: {} verifies", source.display());
                match (s.first_seq, s.last_seq) {
                    (Some(first), Some(last)) => println!(
                        "  {} records ({first}..={last}), {} fiscal events, last hash {}",
                        s.records,
                        s.fiscal_events,
                        s.last_hash.as_deref().unwrap_or("-")
                    ),
                    _ => println!("  the journal is empty"),
                }
                for signer in &s.signers {
                    println!(
                        "  signer {} ({}) key {}",
                        signer.id, signer.algorithm, signer.public_key
                    );
                }
                if !s.keys_trusted && s.records > 0 {
                    println!(
                        "  note: keys were taken from the journal itself; compare them with the card (GET /v1/signer) or pass --key"
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(ExportError::Verify(e)) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"ok": false, "first_bad_record": e.seq, "problem": e.problem})
                );
            } else {
                println!("FAILED: {} does not verify", source.display());
                println!("  first bad record: {e}");
            }
            Ok(ExitCode::from(1))
        }
        Err(ExportError::Format { line, problem }) => {
            println!(
                "FAILED: {} is not a valid export: line {line}: {problem}",
                source.display()
            );
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(e.into()),
    }
}
