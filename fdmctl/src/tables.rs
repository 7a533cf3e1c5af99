//! `fdmctl tables`: the open tables and checks.

use crate::cli::*;
use crate::daemon_api::{call, expect_ok, target};
use crate::status::restaurant_offline;
use hyper::Method;
use serde_json::Value;
use std::process::ExitCode;

pub fn tables(args: &DaemonArgs, json: bool) -> anyhow::Result<ExitCode> {
    let t = target(args)?;
    let tables = match call(&t, Method::GET, "/v1/tables", None) {
        Ok(Ok(answer)) => expect_ok(Ok(answer))?,
        _ => {
            eprintln!("fdmd is not answering: tables as the journal records them");
            restaurant_offline(&t)?.open_tables().to_json()
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&tables)?);
        return Ok(ExitCode::SUCCESS);
    }
    let list = tables.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        println!("no open table or check");
    }
    for table in list {
        let f = |k: &str| match table.get(k) {
            Some(Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
            None => String::new(),
        };
        let (what, name) = match table.get("check").and_then(Value::as_str) {
            Some(c) => ("check", c.to_owned()),
            None => ("table", f("table")),
        };
        println!(
            "{what} {:<8} total {:>9}  lines {:>3}  pro formas {:>2}  since {}  operator {}",
            name,
            f("total"),
            f("lines"),
            table
                .get("pro_formas")
                .and_then(Value::as_array)
                .map_or(0, Vec::len),
            f("opened_at"),
            f("operator")
        );
    }
    Ok(ExitCode::SUCCESS)
}
