//! `fdmctl vsc`: the VAT Signing Card's state, and its PIN given to the daemon.

use crate::cli::*;
use crate::daemon_api::{call, target};
use anyhow::bail;
use hyper::Method;
use serde_json::Value;
use std::process::ExitCode;

/// Reads the PIN without echo on a terminal, or a line from standard input.
pub(crate) fn read_pin() -> anyhow::Result<String> {
    use std::io::{BufRead, IsTerminal, Read};
    let stdin = std::io::stdin();
    let mut line = String::new();
    if stdin.is_terminal() {
        eprint!("PIN of the VAT Signing Card: ");
        let stty = |arg: &str| {
            std::process::Command::new("stty")
                .arg(arg)
                .stdin(std::process::Stdio::inherit())
                .status()
        };
        let hidden = stty("-echo").is_ok_and(|s| s.success());
        if !hidden {
            bail!(
                "cannot switch off the terminal's echo (stty); pipe the PIN on standard input instead"
            );
        }
        let read = stdin.lock().read_line(&mut line);
        let _ = stty("echo");
        eprintln!();
        read?;
    } else {
        stdin.lock().take(64).read_line(&mut line)?;
    }
    Ok(line)
}

pub fn vsc_pin(args: &DaemonArgs) -> anyhow::Result<ExitCode> {
    let t = target(args)?;
    let pin = read_pin()?;
    let answer = call(
        &t,
        Method::POST,
        "/v1/admin/signer/pin",
        Some(serde_json::json!({"pin": pin.trim()})),
    )?;
    drop(pin);
    let (status, body) = answer?;
    let code = body.get("code").and_then(Value::as_u64).unwrap_or(0);
    let message = body.get("message").and_then(Value::as_str).unwrap_or("");
    if status.is_success() {
        println!("PIN accepted: the card signs");
        return Ok(ExitCode::SUCCESS);
    }
    println!("refused ({code}): {message}");
    Ok(ExitCode::from(1))
}

pub fn vsc_status(args: &DaemonArgs) -> anyhow::Result<ExitCode> {
    let t = target(args)?;
    let (_, body) = call(&t, Method::GET, "/v1/status", None)?
        .map_err(|e| anyhow::anyhow!("fdmd is not answering ({e})"))?;
    let s = &body["signer"];
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    };
    let state = text(&s["state"]["state"]);
    println!("state:      {state}");
    if let Some(n) = s["state"].get("tries_left").filter(|v| !v.is_null()) {
        println!("PIN tries:  {n} left");
    }
    for (label, key) in [
        ("backend:", "backend"),
        ("reader:", "reader"),
        ("VSC id:", "card_id"),
        ("profile:", "profile"),
        ("detail:", "detail"),
        ("signatures:", "signatures"),
        ("sign ms:", "sign_ms_avg"),
    ] {
        if let Some(v) = s.get(key) {
            println!("{label:<11} {}", text(v));
        }
    }
    if let Some(code) = s.get("code") {
        println!("code:       {} {}", text(code), text(&s["error"]));
    }
    let hint = match state.as_str() {
        "ready" => "",
        "pin_required" => "give the PIN: fdmctl vsc pin",
        "absent" => "insert the card, check the reader's cable and that pcscd runs",
        "blocked" => "the card is blocked: it must be unblocked by its issuer",
        _ => "this card cannot be used with the configured APDU profile",
    };
    if !hint.is_empty() {
        println!("next:       {hint}");
    }
    Ok(if state == "ready" {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
