//! `fdmctl presence`: the daily presence list and who is clocked in.

use crate::cli::*;
use crate::daemon_api::{call, expect_ok, target};
use crate::status::restaurant_offline;
use hyper::Method;
use serde_json::Value;
use std::process::ExitCode;

pub fn presence(args: &DaemonArgs, date: Option<String>, json: bool) -> anyhow::Result<ExitCode> {
    let t = target(args)?;
    let date = date.unwrap_or_else(|| chrono::Local::now().format("%Y-%m-%d").to_string());
    let doc = match call(
        &t,
        Method::GET,
        &format!("/v1/staff/presence?date={date}"),
        None,
    ) {
        Ok(Ok(answer)) => expect_ok(Ok(answer))?,
        _ => {
            eprintln!("fdmd is not answering: presence as the journal records it");
            let shifts = restaurant_offline(&t)?
                .shifts_on(&date)
                .map_err(|e| anyhow::anyhow!(e))?;
            serde_json::json!({
                "date": date,
                "shifts": shifts.iter().map(|s| s.to_json()).collect::<Vec<_>>(),
            })
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("presence on {date}");
    for s in doc
        .get("shifts")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
    {
        let f = |k: &str| {
            s.get(k)
                .and_then(Value::as_str)
                .unwrap_or("(at work)")
                .to_owned()
        };
        println!("{}  in {}  out {}", f("operator"), f("start"), f("end"));
    }
    Ok(ExitCode::SUCCESS)
}
