//! The device registry: what the installer enters in the tax administration's registration
//! application (sources 000 and 002), kept as journal records.
//!
//! - Registers have a 14-character production number (`CXXX` maker + `NNN` model + a 7-character
//!   unique part, reference §1.8) and are *linked* to this FDM, whose production number has 11
//!   characters (`AAA` maker + `BB` model + `NNNNNN` serial). The card is named by its VSC id.
//! - Every change is a `device_change` record, journaled before it takes effect: `enrol`,
//!   `revoke` (written by [`crate::app::App::enrol`] / `revoke`), `link`, `deactivate` (with a
//!   reason, as the application asks for one) and `replace_card`. A deactivated register's
//!   credentials stop working, so its orders are refused.
//! - The registry is rebuilt from those records ([`Registry::load`]); the history of each device
//!   is the list of its records.
//!
//! The registration application's own list of deactivation reasons is not in the reference
//! (source 000 only says "fill in the reasons"); [`DeactivationReason`] is fdmd's list, with
//! `other` plus a note for anything else.

pub mod actions;

use crate::journal::query;
use crate::journal::record::RecordKind;
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// Checks a register (ECR) production number: 14 characters, `CXXX` + `NNN` + 7 letters or
/// digits (upper case).
pub fn check_register_production_number(text: &str) -> Result<(), String> {
    let b = text.as_bytes();
    let alnum = |c: &u8| c.is_ascii_uppercase() || c.is_ascii_digit();
    if b.len() == 14
        && b[..4].iter().all(alnum)
        && b[4..7].iter().all(u8::is_ascii_digit)
        && b[7..].iter().all(alnum)
    {
        Ok(())
    } else {
        Err(format!(
            "{text:?} is not a register production number: 14 characters, maker id (4 letters or digits), model number (3 digits), then 7 letters or digits, upper case (e.g. BODO0010000001)"
        ))
    }
}

/// Checks an FDM production number: 11 characters, `AAA` maker + `BB` model + `NNNNNN` serial.
pub fn check_fdm_production_number(text: &str) -> Result<(), String> {
    let b = text.as_bytes();
    if b.len() == 11
        && b[..3].iter().all(u8::is_ascii_uppercase)
        && b[3..5]
            .iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        && b[5..].iter().all(u8::is_ascii_digit)
    {
        Ok(())
    } else {
        Err(format!(
            "{text:?} is not an FDM production number: 11 characters, maker (3 letters), model (2), serial (6 digits), e.g. BMC01000001"
        ))
    }
}

/// Why a device is taken out of service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeactivationReason {
    /// Broken beyond repair.
    Defect,
    /// Stolen or lost.
    Stolen,
    /// Sold or given away.
    Sold,
    /// The business stopped (or this establishment closed).
    Stopped,
    /// Replaced by another device.
    Replaced,
    /// Anything else: a note is required.
    Other,
}

impl DeactivationReason {
    /// Every reason, as stored.
    pub const ALL: [&'static str; 6] = ["defect", "stolen", "sold", "stopped", "replaced", "other"];

    /// Parses a stored name.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "defect" => Self::Defect,
            "stolen" => Self::Stolen,
            "sold" => Self::Sold,
            "stopped" => Self::Stopped,
            "replaced" => Self::Replaced,
            "other" => Self::Other,
            _ => return None,
        })
    }

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Defect => "defect",
            Self::Stolen => "stolen",
            Self::Sold => "sold",
            Self::Stopped => "stopped",
            Self::Replaced => "replaced",
            Self::Other => "other",
        }
    }
}

/// One journaled change of a device.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryEntry {
    /// Journal sequence number.
    pub seq: u64,
    /// FDM time.
    pub time: String,
    /// `enrol`, `link`, `deactivate`, `revoke`, `replace_card`, `signer_declared`.
    pub action: String,
    /// The record body.
    pub details: Value,
}

/// A device as its records leave it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Device {
    /// `register`, `station`, `card` or `fdm`.
    pub kind: String,
    /// Id (register id, station id, VSC id, FDM production number).
    pub id: String,
    /// `enrolled`, `linked`, `deactivated`, `revoked`, `in_use`, `replaced`.
    pub status: String,
    /// Production number (registers).
    pub production_number: Option<String>,
    /// The FDM it is linked to (registers).
    pub linked_fdm: Option<String>,
    /// Deactivation reason and note.
    pub deactivation: Option<Value>,
    /// Every record about it, in order.
    pub history: Vec<HistoryEntry>,
}

/// Every device, rebuilt from the journal.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Registry {
    /// This FDM's production number (from the records).
    pub fdm_id: String,
    /// The VSC id of the card in use (the last declared signer).
    pub card: Option<String>,
    /// Devices by `kind:id`.
    pub devices: BTreeMap<String, Device>,
}

fn device<'a>(devices: &'a mut BTreeMap<String, Device>, kind: &str, id: &str) -> &'a mut Device {
    devices
        .entry(format!("{kind}:{id}"))
        .or_insert_with(|| Device {
            kind: kind.to_owned(),
            id: id.to_owned(),
            status: "enrolled".into(),
            production_number: None,
            linked_fdm: None,
            deactivation: None,
            history: Vec::new(),
        })
}

impl Registry {
    /// Reads every device and signer record of a journal.
    pub fn load(conn: &rusqlite::Connection) -> rusqlite::Result<Registry> {
        let mut reg = Registry::default();
        for r in query::records_of_kind(
            conn,
            &[
                RecordKind::JournalOpen,
                RecordKind::SignerChange,
                RecordKind::DeviceChange,
            ],
        )? {
            let envelope: Value = serde_json::from_slice(&r.canonical).unwrap_or(Value::Null);
            if reg.fdm_id.is_empty() {
                reg.fdm_id = envelope
                    .get("fdm_id")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned();
            }
            let body = envelope.get("body").cloned().unwrap_or(Value::Null);
            reg.apply(r.seq, &r.time, &r.kind, &body);
        }
        Ok(reg)
    }

    fn apply(&mut self, seq: u64, time: &str, kind: &str, body: &Value) {
        let text = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        let entry = |action: &str| HistoryEntry {
            seq,
            time: time.to_owned(),
            action: action.to_owned(),
            details: body.clone(),
        };
        if kind != RecordKind::DeviceChange.as_str() {
            let id = body
                .pointer("/signer/id")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            if let Some(old) = self.card.replace(id.clone())
                && old != id
                && let Some(d) = self.devices.get_mut(&format!("card:{old}"))
            {
                d.status = "replaced".into();
            }
            let d = device(&mut self.devices, "card", &id);
            d.status = "in_use".into();
            d.history.push(entry("signer_declared"));
            return;
        }
        let action = text("action");
        match action.as_str() {
            "replace_card" => {
                let old = text("old_vsc_id");
                let new = text("new_vsc_id");
                device(&mut self.devices, "card", &old)
                    .history
                    .push(entry(&action));
                let d = device(&mut self.devices, "card", &new);
                if d.history.is_empty() {
                    d.status = "announced".into();
                }
                d.history.push(entry(&action));
            }
            _ => {
                let d = device(&mut self.devices, &text("device"), &text("id"));
                match action.as_str() {
                    "enrol" => {
                        d.status = "enrolled".into();
                        d.deactivation = None;
                        d.production_number = None;
                        d.linked_fdm = None;
                    }
                    "link" => {
                        d.status = "linked".into();
                        d.production_number = Some(text("production_number"));
                        d.linked_fdm = Some(text("fdm_id"));
                    }
                    "deactivate" => {
                        d.status = "deactivated".into();
                        d.deactivation =
                            Some(json!({"reason": text("reason"), "note": body.get("note")}));
                    }
                    "revoke" => d.status = "revoked".into(),
                    _ => {}
                }
                d.history.push(entry(&action));
            }
        }
    }

    /// The active register linked under `production_number`, if any.
    pub fn linked_register(&self, production_number: &str) -> Option<&Device> {
        self.devices.values().find(|d| {
            d.kind == "register"
                && d.status == "linked"
                && d.production_number.as_deref() == Some(production_number)
        })
    }

    /// What the installer enters in the registration application, as JSON (no histories).
    pub fn summary(&self) -> Value {
        let devices: Vec<Value> = self
            .devices
            .values()
            .map(|d| {
                json!({
                    "kind": d.kind,
                    "id": d.id,
                    "status": d.status,
                    "production_number": d.production_number,
                    "linked_fdm": d.linked_fdm,
                    "deactivation": d.deactivation,
                    "changes": d.history.len(),
                })
            })
            .collect();
        json!({
            "fdm": {
                "production_number": self.fdm_id,
                "production_number_valid": check_fdm_production_number(&self.fdm_id).is_ok(),
            },
            "card": {"vsc_id": self.card},
            "devices": devices,
        })
    }

    /// The history of one device (`kind` register, station, card).
    pub fn history(&self, kind: &str, id: &str) -> Option<&[HistoryEntry]> {
        self.devices
            .get(&format!("{kind}:{id}"))
            .map(|d| d.history.as_slice())
    }
}

/// Builds a `device_change` body.
pub fn change_body(fields: Value) -> Map<String, Value> {
    match fields {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn production_numbers() {
        assert!(check_register_production_number("BODO0010000001").is_ok());
        assert!(check_register_production_number("BEFR010015SN00").is_ok());
        for bad in [
            "BODO001000001",
            "BODO00100000012",
            "BODOX010000001",
            "bodo0010000001",
        ] {
            assert!(check_register_production_number(bad).is_err(), "{bad}");
        }
        assert!(check_fdm_production_number("BMC01000001").is_ok());
        for bad in ["DEVFDMD0001", "BMC0100000", "bmc01000001", "BMC01A00001"] {
            assert!(check_fdm_production_number(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn registry_follows_the_records() {
        let mut r = Registry::default();
        let open = json!({"signer": {"id": "VSC-1"}});
        r.apply(1, "t1", "journal_open", &open);
        r.apply(
            2,
            "t2",
            "device_change",
            &json!({"action":"enrol","device":"register","id":"till-1"}),
        );
        r.apply(3, "t3", "device_change", &json!({"action":"link","device":"register","id":"till-1","production_number":"BODO0010000001","fdm_id":"BMC01000001"}));
        assert_eq!(
            r.linked_register("BODO0010000001").map(|d| d.id.as_str()),
            Some("till-1")
        );
        r.apply(4, "t4", "device_change", &json!({"action":"deactivate","device":"register","id":"till-1","reason":"defect","note":null}));
        r.apply(5, "t5", "device_change", &json!({"action":"replace_card","device":"card","old_vsc_id":"VSC-1","new_vsc_id":"VSC-2","reason":"defect"}));
        r.apply(
            6,
            "t6",
            "signer_change",
            &json!({"signer": {"id": "VSC-2"}}),
        );
        let till = &r.devices["register:till-1"];
        assert_eq!(till.status, "deactivated");
        assert_eq!(till.history.len(), 3);
        assert!(r.linked_register("BODO0010000001").is_none());
        assert_eq!(r.devices["card:VSC-1"].status, "replaced");
        assert_eq!(r.devices["card:VSC-2"].status, "in_use");
        assert_eq!(r.card.as_deref(), Some("VSC-2"));
        assert_eq!(r.history("card", "VSC-2").unwrap().len(), 2);
    }
}
