//! Responses (§1.5): a common 21-character prefix (the header echoed, the error field, the FDM
//! production number), then fields of fixed width per identifier. Written by the box's side,
//! read by the register's side; every width is checked when read.

use crate::fields::{error_field, left, right};
use thiserror::Error;

/// Response widths per identifier: S 21, P 35, I 59, H 109 (anything else: the common prefix).
pub fn response_length(id: u8) -> usize {
    match id {
        b'P' => 35,
        b'I' => 59,
        b'H' => 109,
        _ => COMMON_LENGTH,
    }
}

/// Width of the common prefix.
pub const COMMON_LENGTH: usize = 21;

/// The common prefix of every response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Common {
    /// The header echoed.
    pub header: String,
    /// The result code: class digit × 100 + code (`000`, `102`, `202` …).
    pub code: u16,
    /// FDM production number (11).
    pub fdm_id: String,
}

/// What a signed `H` response carries after the common prefix.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Signed {
    /// VSC id (14).
    pub vsc_id: String,
    /// FDM date `YYYYMMDD`.
    pub date: String,
    /// FDM time `HHMMSS`.
    pub time: String,
    /// Event label (2).
    pub label: String,
    /// Counter of the event's own type.
    pub event_counter: u64,
    /// Counter over all types.
    pub total_counter: u64,
    /// Signature, 40 characters (blank when the FDM did not sign).
    pub signature: String,
}

/// What an `I` response carries after the common prefix.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Identification {
    /// FDM firmware version (20).
    pub firmware: String,
    /// Protocol version (1).
    pub protocol: String,
    /// VSC id (14).
    pub vsc_id: String,
    /// VSC version (3).
    pub vsc_version: String,
}

/// A response that does not have the reference's form.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ResponseError {
    /// Wrong length for its identifier.
    #[error("FDM v1 response {id} is {got} characters, not {want}")]
    Length {
        /// Identifier.
        id: char,
        /// Length read.
        got: usize,
        /// Length expected.
        want: usize,
    },
    /// Not ASCII, or a field that is not what it should be.
    #[error("FDM v1 response: {0}")]
    Field(String),
}

/// The common prefix of a response to `header` (the request's 4 header bytes).
pub fn common(header: &[u8; 4], code: u16, fdm_id: &str) -> String {
    format!(
        "{}{}{}",
        String::from_utf8_lossy(header),
        error_field(code),
        left(fdm_id, 11)
    )
}

/// A response with the common prefix only, space-padded to the identifier's width (a refusal,
/// or an `S` answer).
pub fn bare(header: &[u8; 4], code: u16, fdm_id: &str) -> String {
    left(&common(header, code, fdm_id), response_length(header[0]))
}

/// The 35-character `P` response.
pub fn p_response(header: &[u8; 4], code: u16, fdm_id: &str, vsc_id: &str) -> String {
    format!("{}{}", common(header, code, fdm_id), left(vsc_id, 14))
}

/// The 59-character `I` response.
pub fn i_response(header: &[u8; 4], code: u16, fdm_id: &str, id: &Identification) -> String {
    format!(
        "{}{}{}{}{}",
        common(header, code, fdm_id),
        left(&id.firmware, 20),
        left(&id.protocol, 1),
        left(&id.vsc_id, 14),
        left(&id.vsc_version, 3)
    )
}

/// The 109-character `H` response.
pub fn h_response(header: &[u8; 4], code: u16, fdm_id: &str, s: &Signed) -> String {
    format!(
        "{}{}{}{}{}{}{}{}",
        common(header, code, fdm_id),
        left(&s.vsc_id, 14),
        left(&s.date, 8),
        left(&s.time, 6),
        left(&s.label, 2),
        right(&s.event_counter.to_string(), 9),
        right(&s.total_counter.to_string(), 9),
        left(&s.signature, 40)
    )
}

/// Reads the common prefix; the response must be ASCII and have its identifier's width.
pub fn parse_common(msg: &[u8]) -> Result<Common, ResponseError> {
    let text = ascii(msg)?;
    let id = msg.first().copied().unwrap_or(b'?');
    let want = response_length(id);
    if text.len() != want {
        return Err(ResponseError::Length {
            id: char::from(id),
            got: text.len(),
            want,
        });
    }
    let num = |s: &str| -> Result<u16, ResponseError> {
        s.parse()
            .map_err(|_| ResponseError::Field(format!("error code {s:?}")))
    };
    let code = num(&text[4..5])? * 100 + num(&text[5..7])?;
    Ok(Common {
        header: text[..4].to_owned(),
        code,
        fdm_id: text[10..21].trim().to_owned(),
    })
}

/// Reads the fields of an `H` response after the common prefix (109 characters).
pub fn parse_signed(msg: &[u8]) -> Result<Signed, ResponseError> {
    let text = checked(msg, b'H')?;
    let counter = |s: &str| -> Result<u64, ResponseError> {
        s.trim()
            .parse()
            .map_err(|_| ResponseError::Field(format!("counter {s:?}")))
    };
    Ok(Signed {
        vsc_id: text[21..35].trim().to_owned(),
        date: text[35..43].to_owned(),
        time: text[43..49].to_owned(),
        label: text[49..51].to_owned(),
        event_counter: counter(&text[51..60])?,
        total_counter: counter(&text[60..69])?,
        signature: text[69..109].trim().to_owned(),
    })
}

/// Reads the fields of an `I` response after the common prefix (59 characters).
pub fn parse_identification(msg: &[u8]) -> Result<Identification, ResponseError> {
    let text = checked(msg, b'I')?;
    Ok(Identification {
        firmware: text[21..41].trim().to_owned(),
        protocol: text[41..42].to_owned(),
        vsc_id: text[42..56].trim().to_owned(),
        vsc_version: text[56..59].trim().to_owned(),
    })
}

/// The VSC id of a `P` response (35 characters).
pub fn parse_pin(msg: &[u8]) -> Result<String, ResponseError> {
    let text = checked(msg, b'P')?;
    Ok(text[21..35].trim().to_owned())
}

fn ascii(msg: &[u8]) -> Result<&str, ResponseError> {
    std::str::from_utf8(msg)
        .ok()
        .filter(|t| t.is_ascii())
        .ok_or_else(|| ResponseError::Field("not ASCII".into()))
}

/// The response as text, once its prefix, width and identifier are checked.
fn checked(msg: &[u8], id: u8) -> Result<&str, ResponseError> {
    parse_common(msg)?;
    if msg.first() != Some(&id) {
        return Err(ResponseError::Field(format!(
            "a response to {} where {} was expected",
            char::from(msg[0]),
            char::from(id)
        )));
    }
    ascii(msg)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_response_is_read_back_as_written() {
        let signed = Signed {
            vsc_id: "BE000000000042".into(),
            date: "20261207".into(),
            time: "120000".into(),
            label: "NS".into(),
            event_counter: 15,
            total_counter: 59,
            signature: "1CD58A73".repeat(5),
        };
        let h = h_response(b"H120", 101, "EMUFDM00001", &signed);
        assert_eq!(h.len(), 109);
        assert_eq!(parse_signed(h.as_bytes()).unwrap(), signed);
        let common = parse_common(h.as_bytes()).unwrap();
        assert_eq!((common.code, common.fdm_id.as_str()), (101, "EMUFDM00001"));

        let id = Identification {
            firmware: "FW 2.1".into(),
            protocol: "1".into(),
            vsc_id: "BE000000000042".into(),
            vsc_version: "002".into(),
        };
        let i = i_response(b"I030", 0, "EMUFDM00001", &id);
        assert_eq!(i.len(), 59);
        assert_eq!(parse_identification(i.as_bytes()).unwrap(), id);

        let p = p_response(b"P040", 1, "EMUFDM00001", "BE000000000042");
        assert_eq!(p.len(), 35);
        assert_eq!(parse_pin(p.as_bytes()).unwrap(), "BE000000000042");

        let refusal = bare(b"H050", 207, "EMUFDM00001");
        assert_eq!(refusal.len(), 109);
        assert_eq!(parse_common(refusal.as_bytes()).unwrap().code, 207);
        assert_eq!(bare(b"S000", 0, "EMUFDM00001").len(), 21);
    }

    #[test]
    fn malformed_responses_are_named() {
        let h = h_response(b"H120", 0, "EMUFDM00001", &Signed::default());
        assert!(matches!(
            parse_signed(&h.as_bytes()[..108]),
            Err(ResponseError::Length {
                id: 'H',
                got: 108,
                want: 109
            })
        ));
        let mut not_ascii = h.clone().into_bytes();
        not_ascii[30] = 0xC3;
        assert!(matches!(
            parse_signed(&not_ascii),
            Err(ResponseError::Field(_))
        ));
        let bad_counter = h.replacen("        0", "       x0", 1);
        assert!(matches!(
            parse_signed(bad_counter.as_bytes()),
            Err(ResponseError::Field(_))
        ));
        // An I response where an H was expected has the I width: refused as the wrong kind.
        let i = i_response(b"I120", 0, "EMUFDM00001", &Identification::default());
        assert!(parse_signed(i.as_bytes()).is_err());
    }
}
