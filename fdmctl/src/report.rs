//! `fdmctl report x|z|threshold`.

use crate::cli::*;
use crate::daemon_api::{call, target};
use crate::open_journal;
use hyper::Method;
use serde_json::Value;
use std::process::ExitCode;

pub fn report(
    kind: &str,
    opts: &ReportOpts,
    override_reason: Option<String>,
) -> anyhow::Result<ExitCode> {
    let t = target(&opts.daemon)?;
    let body = serde_json::json!({
        "kind": kind,
        "register": opts.register,
        "override_reason": override_reason,
    });
    let (status, answer) = call(&t, Method::POST, "/v1/admin/reports", Some(body))??;
    if !status.is_success() {
        println!(
            "report refused ({status}): {}",
            answer.get("message").and_then(Value::as_str).unwrap_or("")
        );
        return Ok(ExitCode::from(1));
    }
    if opts.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        print!("{}", fdmd::reports::text::render(&answer));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run(cmd: ReportCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ReportCommand::X { opts } => crate::report::report("x", &opts, None),
        ReportCommand::Z {
            opts,
            override_reason,
        } => crate::report::report("z", &opts, override_reason),
        ReportCommand::Threshold {
            year,
            data_dir,
            json,
        } => {
            let conn = open_journal(&data_dir)?;
            let report = fdmd::reports::threshold::year_sums(&conn, year)?.report(year);
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_threshold(&report);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub(crate) fn print_threshold(r: &serde_json::Value) {
    let s = |k: &str| {
        r.get(k)
            .map(|v| v.to_string().trim_matches('"').to_owned())
            .unwrap_or_default()
    };
    println!(
        "Threshold report {} ({} NS/NR tickets), amounts excluding VAT",
        s("year"),
        s("tickets")
    );
    if let Some(c) = r.get("excluding_vat").and_then(|v| v.as_object()) {
        for (k, v) in c {
            println!("  {k:<16} {:>14}", v.as_str().unwrap_or(""));
        }
    }
    println!("  meals on site            {:>14}", s("meals_on_site"));
    println!(
        "  total horeca turnover    {:>14}",
        s("total_horeca_turnover")
    );
    println!(
        "  meal share               {:>13}%",
        s("meal_share_percent")
    );
    println!("  10 % rule met:           {}", s("ten_percent_rule_met"));
    println!(
        "  meals >= 25,000 EUR:     {}",
        s("meal_turnover_at_least_25000")
    );
    println!("  cash system required:    {}", s("cash_system_required"));
    if s("without_lines_vat_included") != "0.00" {
        println!(
            "  events without lines (VAT incl., not classified): {}",
            s("without_lines_vat_included")
        );
    }
    println!("  note: {}", s("note"));
}
