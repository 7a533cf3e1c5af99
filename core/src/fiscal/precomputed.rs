//! Pre-computed events: a POS that computes its own ticket (the FDM v1 `H` request) sends date,
//! time, operator, register production number, ticket number, label, total, amounts per VAT
//! rate and PLU hash, but no lines. fdmd journals them in the same journal, with the same
//! counters and signer, as orders.

use super::error::{Problems, ValidationError};
use super::insz::validate_operator_id;
use super::label::Label;
use super::money::format_amount;
use rust_decimal::Decimal;
use serde_json::{Map, Value, json};

/// One pre-computed event, already decoded from its transport.
#[derive(Debug, Clone, PartialEq)]
pub struct PrecomputedEvent {
    /// Idempotency key, unique per register (for FDM v1: derived from the request's sequence).
    pub request_id: String,
    /// The register (fdmd's register id) it came through.
    pub register: String,
    /// Ticket date `YYYYMMDD` and time `HHMMSS` from the POS.
    pub pos_date: String,
    /// Ticket time `HHMMSS`.
    pub pos_time: String,
    /// Operator INSZ/BIS.
    pub operator: String,
    /// The register's 14-character production number.
    pub ecr_id: String,
    /// The POS's own ticket number.
    pub ticket_number: String,
    /// The label.
    pub label: Label,
    /// Total (absolute value, as the protocol sends it).
    pub total: Decimal,
    /// Amounts per rate in percent (21, 12, 6, 0), as sent. Whether these are bases or VAT
    /// amounts is an open question of the FDM v1 protocol (reference §1.4); they are stored
    /// as received and never recomputed.
    pub rate_amounts: Vec<(Decimal, Decimal)>,
    /// PLU hash as sent (40 hex characters, or 8 right-aligned).
    pub plu_hash: String,
}

impl PrecomputedEvent {
    /// Checks the fields a transport could not check on its own.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let mut p = Problems::default();
        if let Err(e) = validate_operator_id(&self.operator) {
            p.push("operator", e.to_string());
        }
        if self.ecr_id.len() != 14 || !self.ecr_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            p.push(
                "ecr_id",
                "register production number must be 14 letters or digits",
            );
        }
        if chrono::NaiveDate::parse_from_str(&self.pos_date, "%Y%m%d").is_err() {
            p.push("pos_date", "must be a date YYYYMMDD");
        }
        if chrono::NaiveTime::parse_from_str(&self.pos_time, "%H%M%S").is_err() {
            p.push("pos_time", "must be a time HHMMSS");
        }
        let number = self.ticket_number.trim();
        if number.is_empty() || number.len() > 8 || !number.bytes().all(|b| b.is_ascii_digit()) {
            p.push("ticket_number", "must be 1-8 digits");
        }
        let hash = self.plu_hash.trim_start();
        if !(hash.len() == 40 || hash.len() == 8) || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            p.push(
                "plu_hash",
                "must be 40 hex characters (or the last 8, right-aligned)",
            );
        }
        p.finish()
    }

    /// The journal body (before counters).
    pub fn journal_body(&self) -> Map<String, Value> {
        let rates: Vec<Value> = self
            .rate_amounts
            .iter()
            .map(|(rate, amount)| json!({"percent": rate.normalize().to_string(), "amount": format_amount(*amount)}))
            .collect();
        let body = json!({
            "source": "precomputed",
            "operator": self.operator,
            "label": self.label.to_string(),
            "ecr_id": self.ecr_id,
            "pos_ticket_number": self.ticket_number.trim(),
            "pos_date": self.pos_date,
            "pos_time": self.pos_time,
            "total": format_amount(self.total),
            "rate_amounts": rates,
            "plu_hash": self.plu_hash.trim_start().to_ascii_lowercase(),
        });
        match body {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> PrecomputedEvent {
        PrecomputedEvent {
            request_id: "fdmv1-20261122-07".into(),
            register: "ecr-1".into(),
            pos_date: "20261122".into(),
            pos_time: "201500".into(),
            operator: "85073003328".into(),
            ecr_id: "BODO0010000001".into(),
            ticket_number: "   123".into(),
            label: Label::parse("NS").unwrap(),
            total: "14.10".parse().unwrap(),
            rate_amounts: vec![],
            plu_hash: "c2b9".to_string() + &"0".repeat(28) + "797bc46f",
        }
    }

    #[test]
    fn valid_event_passes_and_bad_fields_are_named() {
        assert!(event().validate().is_ok());
        let mut e = event();
        e.pos_date = "20261332".into();
        e.ticket_number = "12a".into();
        e.plu_hash = "zz".into();
        let err = e.validate().unwrap_err();
        let fields: Vec<_> = err.problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["pos_date", "ticket_number", "plu_hash"]);
    }
}
