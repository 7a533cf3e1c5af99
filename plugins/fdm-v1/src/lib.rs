//! # fdm-v1: the Belgian FDM v1 protocol as an fdmd plugin
//!
//! A certified cash register (ECR) that talks to a black box over RS-232 can use fdmd instead,
//! through a serial port or a TCP socket (ser2net, virtual COM port) owned by the host. This
//! plugin decodes the frames ([`frame`]: STX, ETX, LRC, ACK/NAK), the header and the S, I, P and
//! H requests ([`message`]), asks the host for status, PIN checks and signatures, and answers
//! with the fixed-width responses. `H` requests become pre-computed events in fdmd's journal,
//! in the same numbering as every other order.
//!
//! A retransmission (same identifier, sequence number and data; any retry counter) carries the
//! same request key, so the journal answers it with the stored record: code 102 and the same
//! signature, never a second signature. So does a resend that drew the next sequence number
//! (Odoo 19's driver after 1.4 s without an answer): an `H` with its retry counter set and the
//! same data as the previous `H` of the instance's register reuses that request's key. The layout follows the reference notes, which were
//! reconstructed from public drivers; what they leave uncertain is listed in `docs/plugins.md`.
//!
//! Configuration (JSON, all optional): `{"firmware": "fdmd fdm-v1"}` — the 20-character
//! firmware field of the `I` response.

pub mod frame;
pub mod message;

use fdmd_plugin_api::{Host, Input, Output, Plugin, export_plugin};
use message::{Request, Signed, code};
use serde_json::{Value, json};
use std::collections::HashMap;

/// Protocol version answered in the `I` response (reference: 1 character, value not documented).
pub const PROTOCOL_VERSION: &str = "1";
/// VSC version answered in the `I` response (3 characters, value not documented).
pub const VSC_VERSION: &str = "001";

struct Conn {
    decoder: frame::Decoder,
    /// The last response frame, sent again when the register answers NAK.
    last_response: Option<Vec<u8>>,
}

impl Default for Conn {
    fn default() -> Self {
        Conn {
            decoder: frame::decoder(),
            last_response: None,
        }
    }
}

/// The plugin: one decoder per connection.
pub struct FdmV1 {
    host: Host,
    firmware: String,
    conns: HashMap<u64, Conn>,
    /// The last `H` request of the instance's register (any connection: a register that
    /// reconnects before it resends is the same register).
    last_hash: Option<LastHash>,
}

/// What identifies the last `H` request, to recognise its resend under a new sequence number.
struct LastHash {
    /// Fingerprint of the data after the header.
    fingerprint: String,
    /// The request key it was registered under.
    request_id: String,
}

/// What the host says about the module.
struct ModuleStatus {
    code: u16,
    fdm_id: String,
    vsc_id: String,
}

impl FdmV1 {
    fn submit(&self, request: Value) -> Result<Value, String> {
        let reply = self
            .host
            .submit(request.to_string().as_bytes())
            .map_err(|e| e.to_string())?;
        serde_json::from_slice(&reply).map_err(|e| format!("host answered bad JSON: {e}"))
    }

    fn status(&self) -> ModuleStatus {
        match self.submit(json!({"v": 1, "type": "status"})) {
            Ok(s) => ModuleStatus {
                code: s["code"]
                    .as_u64()
                    .unwrap_or(u64::from(code::NOT_OPERATIONAL)) as u16,
                fdm_id: s["fdm_id"].as_str().unwrap_or("").to_owned(),
                vsc_id: s["vsc_id"].as_str().unwrap_or("").to_owned(),
            },
            Err(e) => {
                self.host
                    .log_warn(&format!("status from the host failed: {e}"));
                ModuleStatus {
                    code: code::NOT_OPERATIONAL,
                    fdm_id: String::new(),
                    vsc_id: String::new(),
                }
            }
        }
    }

    /// The response message to one request message.
    fn respond(&mut self, msg: &[u8]) -> String {
        let status = self.status();
        let (header, request) = match message::parse(msg) {
            Ok(ok) => ok,
            Err(refusal) => {
                self.host.log_warn(&format!(
                    "FDM v1 request {} refused with {:03}: {}",
                    String::from_utf8_lossy(&refusal.header),
                    refusal.code,
                    refusal.reason
                ));
                return message::refusal_response(&refusal, &status.fdm_id);
            }
        };
        let h = &header.raw;
        match request {
            Request::Status => message::common(h, status.code, &status.fdm_id),
            Request::Identification => message::i_response(
                h,
                status.code,
                &status.fdm_id,
                &message::Identification {
                    firmware: self.firmware.clone(),
                    protocol: PROTOCOL_VERSION.into(),
                    vsc_id: status.vsc_id.clone(),
                    vsc_version: VSC_VERSION.into(),
                },
            ),
            Request::Pin(pin) => {
                let answer = self.submit(json!({"v": 1, "type": "pin", "pin": pin}));
                let code = match answer {
                    Ok(a) => a["code"].as_u64().unwrap_or(299) as u16,
                    Err(_) => code::NOT_OPERATIONAL,
                };
                message::p_response(h, code, &status.fdm_id, &status.vsc_id)
            }
            Request::HashAndSign(hs) => {
                let fingerprint = message::fingerprint(&msg[4..]);
                let request_id = match &self.last_hash {
                    // A resend with the next sequence number: the retry counter says it is a
                    // resend, the data that it is the same event. Answered with the stored
                    // record (102), never signed twice.
                    Some(last) if header.retry > 0 && last.fingerprint == fingerprint => {
                        last.request_id.clone()
                    }
                    _ => format!("fdmv1-H{:02}-{fingerprint}", header.seq),
                };
                self.last_hash = Some(LastHash {
                    fingerprint,
                    request_id: request_id.clone(),
                });
                let rates: Vec<Value> = hs.rates.iter().map(|(p, a)| json!([p, a])).collect();
                let event = json!({
                    "request_id": request_id,
                    "pos_date": hs.date,
                    "pos_time": hs.time,
                    "operator": hs.operator,
                    "ecr_id": hs.ecr_id,
                    "ticket_number": hs.ticket_number,
                    "label": hs.label,
                    "total": hs.total,
                    "rate_amounts": rates,
                    "plu_hash": hs.plu_hash,
                });
                let receipt = self
                    .submit(json!({"v": 1, "type": "precomputed", "event": event}))
                    .unwrap_or_else(|e| json!({"status": "error", "code": 208, "message": e}));
                let code = receipt["code"].as_u64().unwrap_or(299) as u16;
                if receipt["status"] != json!("signed") {
                    self.host.log_warn(&format!(
                        "FDM v1 H{:02} not signed ({code:03}): {}",
                        header.seq,
                        receipt["message"].as_str().unwrap_or("")
                    ));
                    return message::h_response(h, code, &status.fdm_id, &Signed::default());
                }
                let (date, time) =
                    message::fdm_date_time(receipt["fdm_time"].as_str().unwrap_or(""))
                        .unwrap_or_default();
                let signed = Signed {
                    vsc_id: receipt["vsc_id"].as_str().unwrap_or("").to_owned(),
                    date,
                    time,
                    label: receipt["label"].as_str().unwrap_or("").to_owned(),
                    event_counter: receipt["event_counter"].as_u64().unwrap_or(0),
                    total_counter: receipt["total_counter"].as_u64().unwrap_or(0),
                    signature: message::signature_field(
                        receipt["signature"].as_str().unwrap_or(""),
                    ),
                };
                let fdm_id = receipt["fdm_id"].as_str().unwrap_or(&status.fdm_id);
                message::h_response(h, code, fdm_id, &signed)
            }
        }
    }
}

impl Plugin for FdmV1 {
    fn init(host: Host, config: &[u8]) -> Result<Self, String> {
        let config: Value = if config.is_empty() {
            json!({})
        } else {
            serde_json::from_slice(config).map_err(|e| format!("configuration: {e}"))?
        };
        let firmware = config["firmware"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("fdmd fdm-v1 {}", env!("CARGO_PKG_VERSION")));
        Ok(FdmV1 {
            host,
            firmware,
            conns: HashMap::new(),
            last_hash: None,
        })
    }

    fn handle(&mut self, input: Input<'_>, out: &mut Output<'_>) -> Result<(), String> {
        match input {
            Input::Open { conn } => {
                self.conns.insert(conn, Conn::default());
            }
            Input::Closed { conn } => {
                self.conns.remove(&conn);
            }
            Input::Mqtt { .. } => {}
            Input::Data { conn, bytes } => {
                let mut state = self.conns.remove(&conn).unwrap_or_default();
                for event in state.decoder.feed(bytes) {
                    match event {
                        frame::Event::Frame(msg) => {
                            out.write(conn, &[frame::ACK]);
                            let response = frame::encode(self.respond(&msg).as_bytes());
                            out.write(conn, &response);
                            state.last_response = Some(response);
                        }
                        frame::Event::Bad => out.write(conn, &[frame::NAK]),
                        frame::Event::Nak => {
                            if let Some(r) = &state.last_response {
                                out.write(conn, r);
                            }
                        }
                        frame::Event::Ack => state.last_response = None,
                    }
                }
                self.conns.insert(conn, state);
            }
        }
        Ok(())
    }
}

export_plugin!(FdmV1, name = "fdm-v1", version = env!("CARGO_PKG_VERSION"));
