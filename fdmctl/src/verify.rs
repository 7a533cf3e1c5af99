//! `fdmctl verify`: offline verification of a journal or an export.

use anyhow::{Context, bail};
use fdmd::journal::export::{ExportError, verify_database, verify_export};
use fdmd::journal::verify::VerifySummary;
use fdmd::paths;
use std::io::BufReader;
use std::path::Path;
use std::path::PathBuf;
use std::process::ExitCode;

/// Verifies `export_file`, or the journal of `data_dir` when none is given, and prints the
/// verdict: exit 0 when everything verifies, 1 with the first bad record otherwise.
pub fn run(
    data_dir: PathBuf,
    keys: Vec<String>,
    json: bool,
    export_file: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let keys = keys
        .iter()
        .map(|k| parse_key(k))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let result = match &export_file {
        Some(file) => {
            let f =
                std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
            verify_export(BufReader::new(f), keys).map(|(_, s)| s)
        }
        None => {
            let conn = crate::open_journal(&data_dir)?;
            verify_database(&conn, keys)
        }
    };
    let source = export_file
        .as_ref()
        .map_or_else(|| paths::journal_file(&data_dir), Clone::clone);
    report_verification(&source, result, json)
}

pub(crate) fn parse_key(text: &str) -> anyhow::Result<Vec<u8>> {
    let bytes = hex::decode(text.trim()).with_context(|| format!("key {text:?} is not hex"))?;
    if bytes.len() != 32 {
        bail!(
            "key {text:?} is {} bytes; an Ed25519 public key is 32",
            bytes.len()
        );
    }
    Ok(bytes)
}

pub(crate) fn report_verification(
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
