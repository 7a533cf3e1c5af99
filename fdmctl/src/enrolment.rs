//! `fdmctl register|station add|list|revoke`: enrolment of registers and stations.

use crate::cli::*;
use crate::daemon_api::{call, expect_ok, target};
use hyper::Method;
use serde_json::Value;
use std::process::ExitCode;

pub fn enrolment(args: &DaemonArgs, what: &str, action: Enrolment) -> anyhow::Result<ExitCode> {
    let t = target(args)?;
    match action {
        Enrolment::Add { id, json } => {
            let creds = expect_ok(call(
                &t,
                Method::POST,
                &format!("/v1/admin/{what}"),
                Some(serde_json::json!({"id": id})),
            )?)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&creds)?);
            } else {
                let f = |k: &str| {
                    creds
                        .get(k)
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned()
                };
                println!(
                    "enrolled {} (shown once; store them in the device now)",
                    f("id")
                );
                println!("  MQTT username: {}", f("mqtt_username"));
                println!("  MQTT password: {}", f("mqtt_password"));
                println!("  HTTP token:    {}", f("http_token"));
            }
        }
        Enrolment::List => {
            let list = expect_ok(call(&t, Method::GET, &format!("/v1/admin/{what}"), None)?)?;
            for e in list.as_array().into_iter().flatten() {
                let active = e.get("active").and_then(Value::as_bool).unwrap_or(false);
                println!(
                    "{:<32} {:<8} enrolled {}{}",
                    e.get("id").and_then(Value::as_str).unwrap_or(""),
                    if active { "active" } else { "revoked" },
                    e.get("enrolled_at").and_then(Value::as_str).unwrap_or(""),
                    e.get("revoked_at")
                        .and_then(Value::as_str)
                        .map(|r| format!(", revoked {r}"))
                        .unwrap_or_default()
                );
            }
        }
        Enrolment::Revoke { id } => {
            expect_ok(call(
                &t,
                Method::DELETE,
                &format!("/v1/admin/{what}/{id}"),
                None,
            )?)?;
            println!("revoked {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
