//! `fdmctl plugin check FILE.so`: loads a plugin in isolation (its own helper process, so a
//! crash is a finding, not a crash of the checker) against simulated host services, and runs a
//! scripted conformance scenario: the table, health, connections opened and closed, empty and
//! garbage input in odd pieces, input on an unknown connection, an MQTT message, and optionally
//! the vendor's own input file. A plugin passes when no call panics, crashes or times out.

use super::Instance;
use super::checks::{self, CheckPolicy, Trust};
use super::isolate::Isolated;
use super::native::{CallError, InputMsg, Output, Services};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Host services that answer like a ready fdmd, without a journal.
pub struct SimulatedHost {
    submits: AtomicU64,
}

/// FDM id the simulated host answers with.
pub const CHECK_FDM_ID: &str = "CHECK000001";

impl Services for SimulatedHost {
    fn log(&self, level: u32, message: &str) {
        println!("    plugin log [{level}]: {message}");
    }

    fn submit(&self, request: &[u8]) -> Result<Vec<u8>, String> {
        let n = self.submits.fetch_add(1, Ordering::Relaxed) + 1;
        let request: Value =
            serde_json::from_slice(request).map_err(|e| format!("request is not JSON: {e}"))?;
        println!("    plugin request: {request}");
        if request["v"] != json!(1) {
            return Err("schema version must be 1".into());
        }
        let answer = match request["type"].as_str() {
            Some("status") => json!({
                "v": 1, "fdm_id": CHECK_FDM_ID, "vsc_id": "CHECK-00000001", "ready": true,
                "code": 0, "message": "", "software_version": env!("CARGO_PKG_VERSION"),
            }),
            Some("order") | Some("precomputed") => {
                let id = request["order"]["request_id"]
                    .as_str()
                    .or(request["event"]["request_id"].as_str())
                    .unwrap_or("");
                json!({
                    "request_id": id, "status": "signed", "code": 0, "ticket_number": format!("{n:06}"),
                    "label": "NS", "event_counter": n, "total_counter": n, "fdm_id": CHECK_FDM_ID,
                    "vsc_id": "CHECK-00000001", "fdm_time": "2026-01-01T12:00:00.000+01:00",
                    "signature": "00".repeat(64), "short_signature": "CHECKSIG",
                    "simulated": true,
                })
            }
            Some("pin") => json!({"v": 1, "code": 0}),
            other => json!({"v": 1, "status": "error", "code": 206,
                            "message": format!("unknown request type {other:?}")}),
        };
        serde_json::to_vec(&answer).map_err(|e| e.to_string())
    }

    fn publish(
        &self,
        topic: &str,
        payload: &[u8],
        qos: u8,
    ) -> Result<(), super::mqtt::PublishError> {
        println!(
            "    plugin publish [{qos}] {topic}: {}",
            String::from_utf8_lossy(payload)
        );
        Ok(())
    }
}

/// What to check.
pub struct CheckOptions<'a> {
    /// The plugin file.
    pub file: &'a Path,
    /// The plugin's configuration (JSON).
    pub config: Value,
    /// Trusted vendor keys (hex); when empty, the signature is reported but not required.
    pub trusted_keys: Vec<String>,
    /// Bytes to send on a connection of their own; the plugin's answers are printed.
    pub input: Option<Vec<u8>>,
    /// The executable that runs the helper (`fdmctl` itself).
    pub helper_exe: &'a Path,
    /// Call timeout.
    pub timeout: Duration,
    /// The owner a file must have (root).
    pub owner_uid: u32,
}

struct Report {
    failed: usize,
}

impl Report {
    fn step(&mut self, name: &str, result: Result<String, String>) -> bool {
        match result {
            Ok(detail) => {
                println!(
                    "PASS  {name}{}",
                    if detail.is_empty() {
                        String::new()
                    } else {
                        format!(": {detail}")
                    }
                );
                true
            }
            Err(why) => {
                println!("FAIL  {name}: {why}");
                self.failed += 1;
                false
            }
        }
    }
}

/// A call passes unless the plugin panicked, crashed, hung or was unavailable (an error it
/// returns on purpose is allowed).
fn tolerable(r: &Result<Vec<Output>, CallError>) -> Result<String, String> {
    match r {
        Ok(o) => Ok(format!("{} output(s)", o.len())),
        Err(CallError::Failed(m)) => Ok(format!("returned an error ({m})")),
        Err(e) => Err(e.to_string()),
    }
}

/// Printable form of bytes: ASCII as is, the rest as `<hex>`.
pub fn escape(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| match b {
            b'\n' => "\\n".to_owned(),
            0x20..=0x7e => (b as char).to_string(),
            _ => format!("<{b:02x}>"),
        })
        .collect()
}

/// Runs the check; returns true when every step passed.
pub fn run(o: &CheckOptions<'_>) -> bool {
    let mut report = Report { failed: 0 };
    println!("checking plugin {}", o.file.display());
    // One descriptor for every step: what is checked is what the helper loads.
    let opened = checks::open_plugin_file(o.file);
    let mode_ok = report.step(
        "file owned by root, not writable by group or others",
        opened
            .as_ref()
            .map_err(|e| e.to_string())
            .and_then(|file| {
                checks::check_opened_mode(file, o.file, o.owner_uid).map_err(|e| e.to_string())
            })
            .map(|()| String::new()),
    );
    if mode_ok {
        let policy = CheckPolicy {
            trusted_keys: checks::parse_keys(&o.trusted_keys).unwrap_or_default(),
            allow_unsigned: o.trusted_keys.is_empty(),
            owner_uid: o.owner_uid,
            allow_unsafe_dir: true,
        };
        let sig = checks::signature_path(o.file);
        let result = if o.trusted_keys.is_empty() {
            Ok(if sig.exists() {
                format!(
                    "{} present (not checked: no --trusted-key given)",
                    sig.display()
                )
            } else {
                "unsigned (fdmd refuses it outside --dev)".to_owned()
            })
        } else {
            opened
                .as_ref()
                .map_err(|e| e.to_string())
                .and_then(|file| {
                    checks::check_opened(file, o.file, &policy).map_err(|e| e.to_string())
                })
                .map(|t| match t {
                    Trust::Signed { key } => format!("signed by {key}"),
                    Trust::UnsignedAllowed => "unsigned".into(),
                })
        };
        report.step("signature", result);
    }
    let config = serde_json::to_vec(&o.config).unwrap_or_default();
    let host = Arc::new(SimulatedHost {
        submits: AtomicU64::new(0),
    });
    let started = opened.map_err(|e| e.to_string()).and_then(|file| {
        Isolated::start(o.helper_exe, file, &config, host.clone(), o.timeout)
            .map_err(|e| e.to_string())
    });
    let plugin = match started {
        Ok(p) => p,
        Err(e) => {
            report.step("load in a helper process, ABI version 1, init", Err(e));
            println!("RESULT: FAIL ({} step(s) failed)", report.failed);
            return false;
        }
    };
    let info = plugin.info();
    report.step(
        "load in a helper process, ABI version 1, init",
        Ok(format!(
            "{} {} (ABI {}.{}, built with {})",
            info.name, info.version, info.abi_major, info.abi_minor, info.built_with
        )),
    );
    report.step(
        "table names the plugin",
        if info.name.is_empty() || info.version.is_empty() {
            Err("name and version must not be empty".into())
        } else {
            Ok(String::new())
        },
    );
    report.step(
        "health",
        plugin
            .health()
            .map(|()| String::new())
            .map_err(|e| e.to_string()),
    );
    report.step(
        "open a connection",
        tolerable(&plugin.call(InputMsg::Open(1))),
    );
    report.step(
        "empty input",
        tolerable(&plugin.call(InputMsg::Data(1, Vec::new()))),
    );
    // Deterministic garbage (every byte value, control characters, long runs), in odd pieces.
    let mut garbage: Vec<u8> = (0..=255u8).collect();
    let mut x: u32 = 0x2545_f491;
    for _ in 0..4096 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        garbage.push((x & 0xff) as u8);
    }
    garbage.extend(std::iter::repeat_n(b'A', 70_000));
    garbage.push(b'\n');
    let mut worst = Ok("4.4 KiB and a 70 000-byte line in pieces of 1 to 997 bytes".to_owned());
    let mut at = 0;
    let mut piece = 1;
    while at < garbage.len() && worst.is_ok() {
        let end = (at + piece).min(garbage.len());
        let r = plugin.call(InputMsg::Data(1, garbage[at..end].to_vec()));
        if let Err(e) = tolerable(&r) {
            worst = Err(e);
        }
        at = end;
        piece = piece * 7 % 997 + 1;
    }
    report.step("garbage input", worst);
    report.step(
        "input on a connection never opened",
        tolerable(&plugin.call(InputMsg::Data(99, b"hello\n".to_vec()))),
    );
    report.step(
        "close the connection",
        tolerable(&plugin.call(InputMsg::Closed(1))),
    );
    report.step(
        "close a connection never opened",
        tolerable(&plugin.call(InputMsg::Closed(98))),
    );
    report.step(
        "MQTT message",
        tolerable(&plugin.call(InputMsg::Mqtt {
            topic: "fdm/v1/check".into(),
            payload: b"{}".to_vec(),
        })),
    );
    if let Some(input) = &o.input {
        let _ = plugin.call(InputMsg::Open(2));
        let r = plugin.call(InputMsg::Data(2, input.clone()));
        if let Ok(outputs) = &r {
            for output in outputs {
                match output {
                    Output::Write(_, bytes) => println!("    plugin wrote: {}", escape(bytes)),
                    Output::Close(_) => println!("    plugin closed the connection"),
                }
            }
        }
        report.step("your input", tolerable(&r));
        let _ = plugin.call(InputMsg::Closed(2));
    }
    report.step(
        "still healthy after the scenario",
        plugin
            .health()
            .map(|()| String::new())
            .map_err(|e| e.to_string()),
    );
    println!(
        "    {} request(s) to the simulated host, {} helper restart(s)",
        host.submits.load(Ordering::Relaxed),
        plugin.restarts()
    );
    if report.failed == 0 {
        println!("RESULT: PASS");
        true
    } else {
        println!("RESULT: FAIL ({} step(s) failed)", report.failed);
        false
    }
}
