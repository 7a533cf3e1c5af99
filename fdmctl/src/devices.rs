//! `fdmctl devices`: the device registry (registers, FDM, card) and its changes.

use crate::cli::*;
use crate::daemon_api::{call, expect_ok, target};
use hyper::Method;
use serde_json::Value;
use std::process::ExitCode;

pub fn devices(args: &DaemonArgs, action: DevicesCommand) -> anyhow::Result<ExitCode> {
    use DevicesCommand as D;
    let t = target(args)?;
    match action {
        D::List => {
            let r = expect_ok(call(&t, Method::GET, "/v1/admin/devices", None)?)?;
            let s = |p: &str| {
                r.pointer(p)
                    .and_then(Value::as_str)
                    .unwrap_or("-")
                    .to_owned()
            };
            println!("For the registration application (FPS Finance):");
            println!(
                "  FDM production number: {}{}",
                s("/fdm/production_number"),
                if r.pointer("/fdm/production_number_valid")
                    .and_then(Value::as_bool)
                    == Some(true)
                {
                    ""
                } else {
                    "  (not a production number: AAA+BB+NNNNNN; fdmd is not certified)"
                }
            );
            println!("  VSC id of the card:    {}", s("/card/vsc_id"));
            println!(
                "  {:<10} {:<20} {:<12} {:<16} linked FDM / reason",
                "kind", "id", "status", "production no."
            );
            for d in r
                .get("devices")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let f = |k: &str| d.get(k).and_then(Value::as_str).unwrap_or("-").to_owned();
                let extra = match d.pointer("/deactivation/reason").and_then(Value::as_str) {
                    Some(reason) => format!("deactivated: {reason}"),
                    None => f("linked_fdm"),
                };
                println!(
                    "  {:<10} {:<20} {:<12} {:<16} {extra}",
                    f("kind"),
                    f("id"),
                    f("status"),
                    f("production_number")
                );
            }
        }
        D::History { kind, id } => {
            let h = expect_ok(call(
                &t,
                Method::GET,
                &format!("/v1/admin/devices/{kind}/{id}/history"),
                None,
            )?)?;
            for e in h.as_array().into_iter().flatten() {
                println!(
                    "#{:<8} {} {:<16} {}",
                    e.get("seq").and_then(Value::as_u64).unwrap_or(0),
                    e.get("time").and_then(Value::as_str).unwrap_or(""),
                    e.get("action").and_then(Value::as_str).unwrap_or(""),
                    e.get("details").map(Value::to_string).unwrap_or_default()
                );
            }
        }
        D::Link {
            id,
            production_number,
        } => {
            let r = expect_ok(call(
                &t,
                Method::POST,
                &format!("/v1/admin/devices/registers/{id}/link"),
                Some(serde_json::json!({"production_number": production_number})),
            )?)?;
            println!(
                "linked register {id} ({production_number}) to FDM {} (journal record {})",
                r.get("fdm_id").and_then(Value::as_str).unwrap_or(""),
                r.get("journal_seq").and_then(Value::as_u64).unwrap_or(0)
            );
        }
        D::Deactivate { id, reason, note } => {
            let r = expect_ok(call(
                &t,
                Method::POST,
                &format!("/v1/admin/devices/registers/{id}/deactivate"),
                Some(serde_json::json!({"reason": reason, "note": note})),
            )?)?;
            println!(
                "deactivated register {id} ({reason}); journal record {}",
                r.get("journal_seq").and_then(Value::as_u64).unwrap_or(0)
            );
        }
        D::ReplaceCard { new_vsc_id, reason } => {
            let r = expect_ok(call(
                &t,
                Method::POST,
                "/v1/admin/devices/card/replace",
                Some(serde_json::json!({"new_vsc_id": new_vsc_id, "reason": reason})),
            )?)?;
            println!(
                "card {} replaced by {new_vsc_id} ({reason}); journal record {}",
                r.get("old_vsc_id").and_then(Value::as_str).unwrap_or(""),
                r.get("journal_seq").and_then(Value::as_u64).unwrap_or(0)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
