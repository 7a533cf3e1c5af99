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

/// The daemon's restaurant state, or (when it is not answering) the state folded from its
/// journal read-only.
pub(crate) fn restaurant_offline(t: &Target) -> anyhow::Result<fdmd::restaurant::Restaurant> {
    let file = fdmd::paths::journal_file(&t.data_dir);
    fdmd::restaurant::Restaurant::rebuild(&file, false)
        .with_context(|| format!("reading {}", file.display()))
}
