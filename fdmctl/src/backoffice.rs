//! `fdmctl backoffice status`: how far behind the back office's copy of the journal is
//! (the `backoffice` member of the admin status document; `docs/backoffice.md`).

use crate::cli::DaemonArgs;
use crate::daemon_api::{call, target};
use hyper::Method;
use serde_json::{Value, json};
use std::process::ExitCode;

pub fn status(args: &DaemonArgs, as_json: bool) -> anyhow::Result<ExitCode> {
    let t = target(args)?;
    match call(&t, Method::GET, "/v1/status", None)? {
        Ok((_, body)) => {
            let Some(copy) = body.get("backoffice").filter(|v| !v.is_null()) else {
                if as_json {
                    println!("{}", json!({"enabled": false}));
                } else {
                    println!("the back office copy is off ([backoffice] enabled = false)");
                }
                return Ok(ExitCode::from(2));
            };
            if as_json {
                println!("{}", serde_json::to_string_pretty(copy)?);
            } else {
                print!("{}", summary(copy));
            }
            let failing = copy.get("halted").and_then(Value::as_bool) == Some(true)
                || copy.get("last_error").is_some_and(|e| !e.is_null());
            Ok(ExitCode::from(if failing { 1 } else { 0 }))
        }
        Err(e) => {
            let cursor = fdmd::replication::offline_summary(&t.data_dir);
            let file = fdmd::paths::journal_file(&t.data_dir);
            let journal_last = fdmd::journal::query::open_read_only(&file)
                .ok()
                .and_then(|c| fdmd::journal::query::last_seq(&c).ok());
            let sent = cursor.pointer("/cursor/last_seq").and_then(Value::as_u64);
            if as_json {
                println!(
                    "{}",
                    json!({"daemon": "not answering", "cursor": cursor["cursor"], "journal_last_seq": journal_last})
                );
            } else {
                println!("fdmd is not answering ({e})");
                match (sent, journal_last) {
                    (Some(s), Some(j)) => println!(
                        "cursor file: the back office acknowledged records up to {s}; the journal ends at {j} ({} not copied)",
                        j.saturating_sub(s)
                    ),
                    (None, Some(j)) => {
                        println!(
                            "no cursor file: nothing acknowledged yet; the journal ends at {j}"
                        )
                    }
                    _ => println!("no journal in {}", t.data_dir.display()),
                }
            }
            Ok(ExitCode::from(3))
        }
    }
}

/// The copy's state in a few lines.
fn summary(copy: &Value) -> String {
    let n = |k: &str| copy.get(k).and_then(Value::as_u64).unwrap_or(0);
    let target = copy.get("target").and_then(Value::as_str).unwrap_or("?");
    let mut out = format!("back office: {target}\n");
    out.push_str(&format!(
        "  acknowledged up to record {} of {} ({} behind",
        n("last_sent_seq"),
        n("journal_last_seq"),
        n("behind_records")
    ));
    if n("behind_records") > 0 {
        out.push_str(&format!(", the oldest from {} s ago", n("behind_seconds")));
    }
    out.push_str(")\n");
    out.push_str(&format!(
        "  since start: {} segments accepted, {} records newly stored\n",
        n("segments_sent"),
        n("records_stored")
    ));
    if let Some(e) = copy.get("last_error").and_then(Value::as_str) {
        out.push_str(&format!("  last error ({} in a row): {e}\n", n("failures")));
    }
    if copy.get("halted").and_then(Value::as_bool) == Some(true) {
        out.push_str(
            "  STOPPED: the back office refused a segment as evidence; see it there, then restart fdmd\n",
        );
    }
    out
}
