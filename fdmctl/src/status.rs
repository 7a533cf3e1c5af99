//! `fdmctl status`: the daemon's status, or what the journal file says when it is down.

use crate::cli::*;
use crate::daemon_api::{Target, call, target};
use anyhow::Context;
use hyper::Method;
use serde_json::Value;
use std::process::ExitCode;

pub fn status(args: &DaemonArgs) -> anyhow::Result<ExitCode> {
    let t = target(args)?;
    match call(&t, Method::GET, "/v1/status", None)? {
        Ok((_, body)) => {
            print!("{}", summary(&body));
            println!("{}", serde_json::to_string_pretty(&body)?);
            let ready = body.get("status").and_then(Value::as_str) == Some("ready");
            Ok(if ready {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Err(e) => {
            println!("fdmd is not answering ({e})");
            let file = fdmd::paths::journal_file(&t.data_dir);
            if let Ok(conn) = fdmd::journal::query::open_read_only(&file) {
                let heads = fdmd::journal::query::load_heads(&conn)?;
                println!(
                    "journal {}: {} records, {} fiscal events (read-only; run `fdmctl verify` to check it)",
                    file.display(),
                    heads.last_seq,
                    heads.total_counter
                );
            }
            Ok(ExitCode::from(3))
        }
    }
}

/// The status and each problem, one a line (`CODE: message`), before the whole document.
fn summary(body: &Value) -> String {
    let status = body
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    let mut out = format!("fdmd is {status}\n");
    let problems = body
        .get("problems")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if !problems.is_empty() {
        out.push_str("problems (docs/status.md):\n");
    }
    for p in problems {
        let code = p.get("code").and_then(Value::as_str).unwrap_or("unknown");
        let message = p.get("message").and_then(Value::as_str).unwrap_or("");
        out.push_str(&format!("  {code}: {message}\n"));
    }
    out
}

/// The daemon's restaurant state, or (when it is not answering) the state folded from its
/// journal read-only.
pub(crate) fn restaurant_offline(t: &Target) -> anyhow::Result<fdmd::restaurant::Restaurant> {
    let file = fdmd::paths::journal_file(&t.data_dir);
    fdmd::restaurant::Restaurant::rebuild(&file, false)
        .with_context(|| format!("reading {}", file.display()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_summary_lists_each_problem_by_code() {
        let body = serde_json::json!({"status": "degraded", "problems": [
            {"code": "storage_low", "message": "journal storage low (101): 12 MiB free"},
            {"code": "z_report_missing", "message": "Z report missing since 2026-12-04"}]});
        assert_eq!(
            super::summary(&body),
            "fdmd is degraded\nproblems (docs/status.md):\n  storage_low: journal storage low (101): 12 MiB free\n  z_report_missing: Z report missing since 2026-12-04\n"
        );
        assert_eq!(
            super::summary(&serde_json::json!({"status": "ready", "problems": []})),
            "fdmd is ready\n"
        );
    }
}
