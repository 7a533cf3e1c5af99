//! # example-vendor: the template for a vendor's fdmd plugin
//!
//! A small line-based protocol over any byte transport the host gives (TCP, serial, MQTT). Every
//! request is one line ending in `\n` (at most [`MAX_LINE`] bytes); every answer is one line.
//! Over MQTT a message holds one or more lines (the last `\n` may be left out) and the answers
//! go back together as one message, which the host publishes on the plugin's `…/out` topic.
//!
//! | request | answer |
//! |---|---|
//! | `PING` | `PONG` |
//! | `STATUS` | `STATUS ready FDM_ID VSC_ID` or `STATUS degraded CODE MESSAGE` |
//! | `ORDER {json}` | `OK TICKET LABEL SHORT_SIGNATURE CODE` or `ERR CODE MESSAGE` |
//! | `NOTIFY QOS TOPIC TEXT` | `NOTIFIED`, or `ERR 299 …` when the host refuses ([`Host::publish`]: `TOPIC` relative to the plugin's `…/out`, QoS 0 or 1) |
//! | anything else | `ERR 206 unknown command` |
//!
//! The order JSON is fdmd's own order format (`docs/mqtt.md`); the plugin only forwards it with
//! [`Host::submit`] and formats the receipt. Copy this crate, rename it, and replace the parsing
//! and formatting with your protocol's.
//!
//! With `{"test_faults": true}` in its configuration the plugin also understands `PANIC`,
//! `ABORT` and `SLEEP MS`, which the host's tests and `fdmctl plugin check` use to show that a
//! failing plugin never takes the daemon down. Leave it off in production.

use fdmd_plugin_api::{Host, Input, Output, Plugin, export_plugin};
use serde_json::{Value, json};
use std::collections::HashMap;

/// Longest accepted line; a longer one is answered with `ERR 207` and dropped.
pub const MAX_LINE: usize = 64 * 1024;

/// The plugin: per-connection line buffers.
pub struct ExampleVendor {
    host: Host,
    buffers: HashMap<u64, Vec<u8>>,
    test_faults: bool,
}

impl ExampleVendor {
    fn answer(&mut self, line: &str) -> String {
        let (command, rest) = line.split_once(' ').unwrap_or((line, ""));
        match command {
            "PING" => "PONG".to_owned(),
            "STATUS" => self.status(),
            "ORDER" => self.order(rest),
            "NOTIFY" => self.notify(rest),
            "PANIC" if self.test_faults => panic!("PANIC requested by the client"),
            "ABORT" if self.test_faults => std::process::abort(),
            "SLEEP" if self.test_faults => {
                let ms = rest.trim().parse::<u64>().unwrap_or(0).min(60_000);
                std::thread::sleep(std::time::Duration::from_millis(ms));
                "SLEPT".to_owned()
            }
            _ => "ERR 206 unknown command".to_owned(),
        }
    }

    fn notify(&self, args: &str) -> String {
        let mut parts = args.splitn(3, ' ');
        let (Some(qos), Some(topic), text) = (
            parts.next().and_then(|q| q.parse::<u8>().ok()),
            parts.next(),
            parts.next().unwrap_or(""),
        ) else {
            return "ERR 207 NOTIFY QOS TOPIC TEXT".to_owned();
        };
        match self.host.publish(topic, text.as_bytes(), qos) {
            Ok(()) => "NOTIFIED".to_owned(),
            Err(e) => format!("ERR 299 {}", one_line(&e.to_string())),
        }
    }

    fn submit(&self, request: Value) -> Result<Value, String> {
        let reply = self
            .host
            .submit(request.to_string().as_bytes())
            .map_err(|e| e.to_string())?;
        serde_json::from_slice(&reply).map_err(|e| format!("host answered bad JSON: {e}"))
    }

    fn status(&self) -> String {
        match self.submit(json!({"v": 1, "type": "status"})) {
            Ok(s) if s["ready"] == json!(true) => format!(
                "STATUS ready {} {}",
                s["fdm_id"].as_str().unwrap_or("-"),
                s["vsc_id"].as_str().unwrap_or("-")
            ),
            Ok(s) => format!(
                "STATUS degraded {:03} {}",
                s["code"].as_u64().unwrap_or(299),
                one_line(s["message"].as_str().unwrap_or(""))
            ),
            Err(e) => format!("ERR 299 {}", one_line(&e)),
        }
    }

    fn order(&self, json_text: &str) -> String {
        let order: Value = match serde_json::from_str(json_text) {
            Ok(v) => v,
            Err(e) => return format!("ERR 207 order is not JSON: {}", one_line(&e.to_string())),
        };
        match self.submit(json!({"v": 1, "type": "order", "order": order})) {
            Ok(r) if r["status"] == json!("signed") => format!(
                "OK {} {} {} {:03}",
                r["ticket_number"].as_str().unwrap_or("-"),
                r["label"].as_str().unwrap_or("-"),
                r["short_signature"].as_str().unwrap_or("-"),
                r["code"].as_u64().unwrap_or(0)
            ),
            Ok(r) => format!(
                "ERR {:03} {}",
                r["code"].as_u64().unwrap_or(299),
                one_line(r["message"].as_str().unwrap_or("error"))
            ),
            Err(e) => format!("ERR 299 {}", one_line(&e)),
        }
    }
}

/// Keeps an answer on one line.
fn one_line(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}

impl Plugin for ExampleVendor {
    fn init(host: Host, config: &[u8]) -> Result<Self, String> {
        let config: Value = if config.is_empty() {
            json!({})
        } else {
            serde_json::from_slice(config).map_err(|e| format!("configuration: {e}"))?
        };
        let test_faults = config["test_faults"].as_bool().unwrap_or(false);
        if test_faults {
            host.log_warn("test faults are enabled (PANIC, ABORT, SLEEP): never in production");
        }
        Ok(ExampleVendor {
            host,
            buffers: HashMap::new(),
            test_faults,
        })
    }

    fn handle(&mut self, input: Input<'_>, out: &mut Output<'_>) -> Result<(), String> {
        match input {
            Input::Open { conn } => {
                self.buffers.insert(conn, Vec::new());
            }
            Input::Closed { conn } => {
                self.buffers.remove(&conn);
            }
            Input::Mqtt { payload, .. } => {
                if payload.len() > MAX_LINE {
                    out.write(0, b"ERR 207 line too long\n");
                    return Ok(());
                }
                let text = String::from_utf8_lossy(payload);
                let mut answers = String::new();
                for line in text.lines().filter(|l| !l.trim().is_empty()) {
                    answers += &self.answer(line.trim_end_matches('\r'));
                    answers.push('\n');
                }
                out.write(0, answers.as_bytes());
            }
            Input::Data { conn, bytes } => {
                let mut buffer = self.buffers.remove(&conn).unwrap_or_default();
                buffer.extend_from_slice(bytes);
                while let Some(end) = buffer.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = buffer.drain(..=end).collect();
                    let text = String::from_utf8_lossy(&line);
                    let answer = self.answer(text.trim_end_matches(['\n', '\r']));
                    out.write(conn, format!("{answer}\n").as_bytes());
                }
                if buffer.len() > MAX_LINE {
                    buffer.clear();
                    out.write(conn, b"ERR 207 line too long\n");
                }
                self.buffers.insert(conn, buffer);
            }
        }
        Ok(())
    }
}

export_plugin!(
    ExampleVendor,
    name = "example-vendor",
    version = env!("CARGO_PKG_VERSION")
);
