//! `fdmctl verify`: offline verification of a journal or an export.
//!
//! Trust: signer keys come from the chain's own journal_open / signer_change records, or from
//! `--key`. A slice's header keys (the header is not signed) are accepted only when `--key` gives
//! them or an `--anchor` at or after the last record they signed covers those records; otherwise
//! the verification fails and names them. Anchors (`SEQ:HASH`, a receipt's `journal_seq` and
//! `signed_digest`) must match the record at SEQ, which must be among the records checked.

use anyhow::{Context, bail};
use fdmd::journal::export::{ExportError, verify_database_anchored, verify_export_anchored};
use fdmd::journal::verify::{Anchor, VerifySummary};
use fdmd::paths;
use serde_json::json;
use std::io::BufReader;
use std::path::Path;
use std::path::PathBuf;
use std::process::ExitCode;

/// A `fdmctl verify` command line.
pub struct VerifyRequest {
    /// The data directory whose journal is verified when no export file is given.
    pub data_dir: PathBuf,
    /// `--key`: trusted public keys, hex.
    pub keys: Vec<String>,
    /// `--anchor`: `SEQ:HASH`.
    pub anchors: Vec<String>,
    /// Print JSON.
    pub json: bool,
    /// The export file to verify.
    pub export_file: Option<PathBuf>,
}

/// Verifies the export file, or the journal of the data directory when none is given, and prints
/// the verdict: exit 0 when everything verifies, 1 with the first bad record, the first failing
/// anchor or the keys nothing anchors otherwise.
pub fn run(request: VerifyRequest) -> anyhow::Result<ExitCode> {
    let VerifyRequest {
        data_dir,
        keys,
        anchors,
        json,
        export_file,
    } = request;
    let keys = keys
        .iter()
        .map(|k| parse_key(k))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let anchors = anchors
        .iter()
        .map(|a| a.parse::<Anchor>())
        .collect::<Result<Vec<_>, _>>()?;
    let result = match &export_file {
        Some(file) => {
            let f =
                std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
            verify_export_anchored(BufReader::new(f), keys, anchors).map(|(_, s)| s)
        }
        None => {
            let conn = crate::open_journal(&data_dir)?;
            verify_database_anchored(&conn, keys, anchors)
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
        Ok(s) if !s.unanchored_keys.is_empty() => {
            let problem = "keys declared only by the export header (which is not signed) are not anchored: give them with --key, or anchor the records they signed with --anchor";
            if json {
                let mut v = serde_json::to_value(&s)?;
                v["ok"] = json!(false);
                v["problem"] = json!(problem);
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("FAILED: {}: its keys are not anchored", source.display());
                for u in &s.unanchored_keys {
                    println!(
                        "  unanchored key: signer {} ({}) key {} signed records {} to {}, and only the export header, which is not signed, declares it",
                        u.signer.id,
                        u.signer.algorithm,
                        u.signer.public_key,
                        u.first_seq,
                        u.last_seq
                    );
                }
                let last = s
                    .unanchored_keys
                    .iter()
                    .map(|u| u.last_seq)
                    .max()
                    .unwrap_or(0);
                println!(
                    "  give the key with --key HEX (compare it with the card, GET /v1/signer), or anchor record {last} or a later one with --anchor SEQ:HASH (a receipt's journal_seq and signed_digest)"
                );
            }
            Ok(ExitCode::from(1))
        }
        Ok(s) => {
            if json {
                let mut v = serde_json::to_value(&s)?;
                v["ok"] = json!(true);
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("OK: {} verifies", source.display());
                match (s.first_seq, s.last_seq) {
                    (Some(first), Some(last)) => println!(
                        "  {} records ({first} to {last}), {} fiscal events, last hash {}",
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
                for anchor in &s.anchors {
                    println!(
                        "  anchor {} matches: record {} has hash {}",
                        anchor.seq, anchor.seq, anchor.hash
                    );
                }
                if let (Some(first), Some(to)) =
                    (s.first_seq, s.anchors.iter().map(|a| a.seq).max())
                {
                    println!(
                        "  records {first} to {to} are fixed by anchor {to} (each record's hash covers the one before), whoever signed them"
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
                    json!({"ok": false, "first_bad_record": e.seq, "problem": e.problem})
                );
            } else {
                println!("FAILED: {} does not verify", source.display());
                println!("  first bad record: {e}");
            }
            Ok(ExitCode::from(1))
        }
        Err(ExportError::Anchor(e)) => {
            if json {
                println!(
                    "{}",
                    json!({"ok": false, "anchor": e.seq, "problem": e.problem})
                );
            } else {
                println!(
                    "FAILED: {} does not match its anchor: {e}",
                    source.display()
                );
            }
            Ok(ExitCode::from(1))
        }
        Err(ExportError::Unprotected(problem)) => {
            if json {
                println!("{}", json!({"ok": false, "problem": problem}));
            } else {
                println!("FAILED: {}: {problem}", source.display());
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
