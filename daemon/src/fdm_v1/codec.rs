//! The register's side of the FDM v1 wire format (reference gks-fdm.md §1.2–§1.6): frames
//! (`STX message ETX LRC`), the 4-character header, the S, I, P and H requests fdmd sends and
//! the fixed-width responses it reads. Pure functions, no I/O; the frame, the fields and the
//! responses are those of the shared `fdm-v1-wire` crate (the box's side, the `fdm-v1` plugin,
//! uses the same).

use thiserror::Error;

pub use fdm_v1_wire::H_LENGTH;
pub use fdm_v1_wire::fields::{amount_field, header, left, right};
pub use fdm_v1_wire::frame::{ACK, ETX, NAK, STX, encode as frame, lrc};
pub use fdm_v1_wire::response::{
    Common, Identification, ResponseError, Signed, parse_common, parse_identification, parse_pin,
    parse_signed, response_length,
};

/// Longest response fdmd accepts between STX and ETX (the longest known is 109).
pub const MAX_RESPONSE: usize = 256;

/// The data of an `H` request after its header (§1.4), before formatting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashAndSign {
    /// `YYYYMMDD`, the register's local date.
    pub date: String,
    /// `HHMMSS`.
    pub time: String,
    /// Operator INSZ/BIS, 11 digits.
    pub operator: String,
    /// ECR production number, 14 characters.
    pub ecr_id: String,
    /// The register's ticket number (the last 6 digits are sent).
    pub ticket: u64,
    /// Event label (`NS`, `PR` …).
    pub label: String,
    /// Total in cents, no sign.
    pub total_cents: u64,
    /// Amount in cents per rate 21 %, 12 %, 6 %, 0 %.
    pub rate_cents: [u64; 4],
    /// PLU hash, 40 hex characters (right-aligned in its 40-character field when shorter).
    pub plu: String,
}

/// The four rates of the H request in their order, as sent.
pub const RATES: [&str; 4] = ["2100", "1200", " 600", " 000"];

/// Why a request could not be built.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum BuildError {
    /// A field does not have its form.
    #[error("FDM v1 H request: {0}")]
    Field(String),
}

impl HashAndSign {
    /// The 158 characters after the header.
    pub fn data(&self) -> Result<String, BuildError> {
        let digits = |s: &str, n: usize, name: &str| {
            if s.len() == n && s.bytes().all(|b| b.is_ascii_digit()) {
                Ok(())
            } else {
                Err(BuildError::Field(format!(
                    "{name} must be {n} digits, not {s:?}"
                )))
            }
        };
        digits(&self.date, 8, "the date")?;
        digits(&self.time, 6, "the time")?;
        digits(&self.operator, 11, "the operator's INSZ/BIS")?;
        if self.label.len() != 2 || !self.label.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(BuildError::Field(format!("label {:?}", self.label)));
        }
        if self.plu.len() > 40 || !self.plu.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(BuildError::Field(
                "the PLU hash must be hex, at most 40".into(),
            ));
        }
        let mut m = String::with_capacity(H_LENGTH);
        m += &self.date;
        m += &self.time;
        m += &self.operator;
        m += &left(&self.ecr_id, 14);
        m += &right(&self.ticket.to_string(), 6);
        m += &self.label;
        m += &amount_field(self.total_cents);
        for (rate, cents) in RATES.iter().zip(self.rate_cents) {
            m += rate;
            m += &amount_field(cents);
        }
        m += &right(&self.plu, 40);
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn an_i_response_field_by_field() {
        let answer = format!(
            "I120000000EMUFDM00001{:<20}1{}002",
            "FW 2.1", "BE000000000042"
        );
        let id = parse_identification(answer.as_bytes()).unwrap();
        assert_eq!(
            (id.firmware.as_str(), id.protocol.as_str()),
            ("FW 2.1", "1")
        );
        assert_eq!(
            (id.vsc_id.as_str(), id.vsc_version.as_str()),
            ("BE000000000042", "002")
        );
        assert!(parse_identification(&answer.as_bytes()[..58]).is_err());
    }

    fn efsta() -> HashAndSign {
        HashAndSign {
            date: "20261122".into(),
            time: "201500".into(),
            operator: "85073003328".into(),
            ecr_id: "BODO0010000001".into(),
            ticket: 123,
            label: "NS".into(),
            total_cents: 1410,
            rate_cents: [38, 128, 0, 0],
            plu: "c2b9ff797bc46f".into(),
        }
    }

    #[test]
    fn frames_carry_the_reference_lrc() {
        assert_eq!(lrc(b"S000"), 0x1D);
        assert_eq!(frame(b"S000"), [STX, b'S', b'0', b'0', b'0', ETX, 0x1D]);
        assert_eq!(header(b'S', 0, 0), "S000");
        assert_eq!(header(b'H', 107, 12), "H079");
    }

    #[test]
    fn an_h_request_has_the_reference_widths() {
        let m = header(b'H', 7, 1) + &efsta().data().unwrap();
        assert_eq!(m.len(), H_LENGTH);
        assert_eq!(&m[..4], "H071");
        assert_eq!(&m[4..12], "20261122");
        assert_eq!(&m[12..18], "201500");
        assert_eq!(&m[18..29], "85073003328");
        assert_eq!(&m[29..43], "BODO0010000001");
        assert_eq!(&m[43..49], "   123");
        assert_eq!(&m[49..51], "NS");
        assert_eq!(&m[51..62], "       1410");
        assert_eq!(&m[62..66], "2100");
        assert_eq!(&m[66..77], "        038");
        assert_eq!(&m[77..81], "1200");
        assert_eq!(&m[81..92], "        128");
        assert_eq!(&m[92..96], " 600");
        assert_eq!(&m[96..107], "        000");
        assert_eq!(&m[107..111], " 000");
        assert_eq!(&m[122..162], format!("{:>40}", "c2b9ff797bc46f"));
        // Short fields are padded; the ticket keeps its last 6 digits.
        let mut h = efsta();
        h.ecr_id = "ECR1".into();
        h.ticket = 12_345_678;
        let m = h.data().unwrap();
        assert_eq!(&m[25..39], "ECR1          ");
        assert_eq!(&m[39..45], "345678");
        h.operator = "8507300332".into();
        assert!(h.data().is_err(), "10-digit INSZ refused");
    }

    #[test]
    fn responses_are_read_field_by_field() {
        let ok = format!(
            "H070000000BMC01000001{:<14}20261122201501NS{:>9}{:>9}{}",
            "0000000196-860",
            141,
            154,
            "1CD58A73".repeat(5)
        );
        assert_eq!(ok.len(), 109);
        let c = parse_common(ok.as_bytes()).unwrap();
        assert_eq!(
            (c.header.as_str(), c.code, c.fdm_id.as_str()),
            ("H070", 0, "BMC01000001")
        );
        let s = parse_signed(ok.as_bytes()).unwrap();
        assert_eq!(s.vsc_id, "0000000196-860");
        assert_eq!((s.event_counter, s.total_counter), (141, 154));
        assert_eq!(s.signature.len(), 40);
        assert_eq!(
            parse_common(b"S010202000BMC01000001").unwrap().code,
            202,
            "error class 2, code 02"
        );
        assert_eq!(
            parse_common(b"S01010100").unwrap_err().to_string(),
            "FDM v1 response S is 9 characters, not 21"
        );
    }
}
