//! FDM v1 messages (reference §1.3–§1.6): the 4-character header, the S, I, P and H requests,
//! and the fixed-width responses. Pure functions; the plugin glue in `lib.rs` talks to the host.

/// Result codes this module answers with (the three digits of reference §1.6).
pub mod code {
    /// No error.
    pub const OK: u16 = 0;
    /// Unknown request identifier.
    pub const UNKNOWN_IDENTIFIER: u16 = 206;
    /// Invalid data in the message.
    pub const INVALID_DATA: u16 = 207;
    /// The module is not operational.
    pub const NOT_OPERATIONAL: u16 = 208;
}

pub use fdm_v1_wire::H_LENGTH;
pub use fdm_v1_wire::response::{
    Identification, Signed, bare, common, h_response, i_response, p_response,
};

/// The request header: identifier letter, sequence `00`–`99`, retry counter `0`–`9`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The 4 header bytes as sent (echoed in the response).
    pub raw: [u8; 4],
    /// Identifier letter.
    pub id: u8,
    /// Sequence number.
    pub seq: u8,
    /// Retry counter.
    pub retry: u8,
}

/// A decoded `H` request (hash and sign): a pre-computed ticket with no lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashAndSign {
    /// `YYYYMMDD` (POS clock).
    pub date: String,
    /// `HHMMSS`.
    pub time: String,
    /// Operator INSZ/BIS (11 digits).
    pub operator: String,
    /// Register production number (14 characters).
    pub ecr_id: String,
    /// The POS's ticket number, digits.
    pub ticket_number: String,
    /// Event label (`NS`, `NR`, `PS` …).
    pub label: String,
    /// Total in euros, decimal string (`14.10`).
    pub total: String,
    /// (percent, amount) per rate, decimal strings, as sent.
    pub rates: Vec<(String, String)>,
    /// PLU hash field (40 characters as sent, leading spaces removed).
    pub plu_hash: String,
}

/// A decoded request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `S`: status.
    Status,
    /// `I`: identification.
    Identification,
    /// `P`: the 5-digit PIN.
    Pin(String),
    /// `H`: hash and sign.
    HashAndSign(HashAndSign),
}

/// Why a message was refused (answered with this code and blank fields).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Header to echo.
    pub header: [u8; 4],
    /// Identifier letter (decides the response width).
    pub id: u8,
    /// 206 or 207.
    pub code: u16,
    /// What was wrong (for the log).
    pub reason: String,
}

/// The header to echo for a message, even a malformed one.
fn echo_header(msg: &[u8]) -> [u8; 4] {
    let mut h = *b"?000";
    for (i, b) in msg.iter().take(4).enumerate() {
        if b.is_ascii_graphic() {
            h[i] = *b;
        }
    }
    h
}

fn digits(field: &[u8]) -> Option<&str> {
    let s = std::str::from_utf8(field).ok()?;
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then_some(s)
}

/// Decodes a message (the bytes between STX and ETX).
pub fn parse(msg: &[u8]) -> Result<(Header, Request), Refusal> {
    let header = echo_header(msg);
    let refuse = |code: u16, reason: &str| Refusal {
        header,
        id: header[0],
        code,
        reason: reason.to_owned(),
    };
    if msg.len() < 4 || !msg.is_ascii() {
        return Err(refuse(
            code::INVALID_DATA,
            "message shorter than its header or not ASCII",
        ));
    }
    let (Some(seq), Some(retry)) = (digits(&msg[1..3]), digits(&msg[3..4])) else {
        return Err(refuse(
            code::INVALID_DATA,
            "sequence and retry counter must be digits",
        ));
    };
    let h = Header {
        raw: header,
        id: msg[0],
        seq: seq.parse().unwrap_or(0),
        retry: retry.parse().unwrap_or(0),
    };
    let body = &msg[4..];
    let request = match h.id {
        b'S' | b'I' if !body.is_empty() => {
            return Err(refuse(code::INVALID_DATA, "S and I carry no data"));
        }
        b'S' => Request::Status,
        b'I' => Request::Identification,
        b'P' => match digits(body) {
            Some(pin) if pin.len() == 5 => Request::Pin(pin.to_owned()),
            _ => return Err(refuse(code::INVALID_DATA, "the PIN must be 5 digits")),
        },
        b'H' => Request::HashAndSign(
            parse_h(msg).map_err(|reason| refuse(code::INVALID_DATA, &reason))?,
        ),
        _ => return Err(refuse(code::UNKNOWN_IDENTIFIER, "unknown identifier")),
    };
    Ok((h, request))
}

/// Cents as sent (right-aligned, space-padded digits) → a decimal string in euros.
fn amount(field: &[u8], name: &str) -> Result<String, String> {
    let text = std::str::from_utf8(field).map_err(|_| format!("{name}: not ASCII"))?;
    let cents: u64 = digits(text.trim_start().as_bytes())
        .and_then(|d| d.parse().ok())
        .ok_or_else(|| format!("{name}: {text:?} is not an amount in cents"))?;
    Ok(format!("{}.{:02}", cents / 100, cents % 100))
}

fn parse_h(msg: &[u8]) -> Result<HashAndSign, String> {
    if msg.len() != H_LENGTH {
        return Err(format!(
            "an H request is {H_LENGTH} characters, not {}",
            msg.len()
        ));
    }
    let mut at = 4;
    let mut take = |n: usize| {
        let f = &msg[at..at + n];
        at += n;
        f
    };
    let text = |f: &[u8]| String::from_utf8_lossy(f).into_owned();
    let date = digits(take(8))
        .ok_or("ticket date: not 8 digits")?
        .to_owned();
    let time = digits(take(6))
        .ok_or("ticket time: not 6 digits")?
        .to_owned();
    let operator = digits(take(11))
        .ok_or("operator: not 11 digits")?
        .to_owned();
    let ecr_id = text(take(14));
    let ticket_field = take(6);
    let ticket_number = digits(text(ticket_field).trim_start().as_bytes())
        .ok_or("ticket number: not digits")?
        .to_owned();
    let label = text(take(2));
    let total = amount(take(11), "total")?;
    let mut rates = Vec::with_capacity(4);
    for i in 1..=4 {
        let rate_field = text(take(4));
        let basis_points: u32 = digits(rate_field.trim_start().as_bytes())
            .and_then(|d| d.parse().ok())
            .ok_or_else(|| format!("rate {i}: {rate_field:?} is not a rate"))?;
        let percent = format!("{}.{:02}", basis_points / 100, basis_points % 100);
        rates.push((percent, amount(take(11), &format!("rate {i} amount"))?));
    }
    let plu_hash = text(take(40)).trim_start().to_owned();
    Ok(HashAndSign {
        date,
        time,
        operator,
        ecr_id,
        ticket_number,
        label,
        total,
        rates,
        plu_hash,
    })
}

/// A refusal as a response: the common prefix, then spaces to the identifier's width.
pub fn refusal_response(r: &Refusal, fdm_id: &str) -> String {
    bare(&r.header, r.code, fdm_id)
}

/// FDM date and time (`YYYYMMDD`, `HHMMSS`) from fdmd's RFC 3339 `fdm_time`.
pub fn fdm_date_time(fdm_time: &str) -> Option<(String, String)> {
    let b = fdm_time.as_bytes();
    if b.len() < 19 {
        return None;
    }
    let pick = |ranges: &[(usize, usize)]| -> Option<String> {
        let s: String = ranges.iter().map(|(a, z)| &fdm_time[*a..*z]).collect();
        s.bytes().all(|c| c.is_ascii_digit()).then_some(s)
    };
    Some((
        pick(&[(0, 4), (5, 7), (8, 10)])?,
        pick(&[(11, 13), (14, 16), (17, 19)])?,
    ))
}

/// The 40-character signature field: the first 20 bytes of fdmd's signature as upper-case hex
/// (the real algorithm is not public; see docs/plugins.md).
pub fn signature_field(signature_hex: &str) -> String {
    signature_hex
        .chars()
        .take(40)
        .collect::<String>()
        .to_ascii_uppercase()
}

/// A stable fingerprint of the request's data after the header (FNV-1a, 64 bits), so that a
/// sequence number reused after it wrapped round (00–99) is a new request, while a
/// retransmission (same sequence, same data, any retry counter) is the same one.
pub fn fingerprint(data: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An H request built field by field, as a register would.
    pub fn h_message(seq: u8, retry: u8, ticket: &str, total_cents: u64) -> Vec<u8> {
        let mut m = format!("H{seq:02}{retry}");
        m += "20261122";
        m += "201500";
        m += "85073003328";
        m += "BODO0010000001";
        m += &format!("{ticket:>6}");
        m += "NS";
        m += &format!("{:>11}", format!("{total_cents:03}"));
        for (rate, cents) in [("2100", 220u64), ("1200", 1190), (" 600", 0), (" 000", 0)] {
            m += rate;
            m += &format!("{:>11}", format!("{cents:03}"));
        }
        m += &format!("{:>40}", "797bc46f");
        m.into_bytes()
    }

    #[test]
    fn h_requests_parse_field_by_field() {
        let msg = h_message(7, 0, "123", 1410);
        assert_eq!(msg.len(), H_LENGTH);
        let (h, r) = parse(&msg).unwrap();
        assert_eq!((h.id, h.seq, h.retry), (b'H', 7, 0));
        let Request::HashAndSign(h) = r else { panic!() };
        assert_eq!(h.ticket_number, "123");
        assert_eq!(h.total, "14.10");
        assert_eq!(h.rates[0], ("21.00".to_owned(), "2.20".to_owned()));
        assert_eq!(h.rates[2], ("6.00".to_owned(), "0.00".to_owned()));
        assert_eq!(h.plu_hash, "797bc46f");
    }

    #[test]
    fn garbage_is_207_and_unknown_letters_206() {
        let mut msg = h_message(7, 0, "123", 1410);
        msg[20] = b'X'; // inside the operator (positions 18..29)
        assert_eq!(parse(&msg).unwrap_err().code, 207);
        assert_eq!(parse(b"S0x0").unwrap_err().code, 207);
        assert_eq!(parse(b"P0101234").unwrap_err().code, 207);
        assert_eq!(parse(b"Z010").unwrap_err().code, 206);
        assert_eq!(parse(b"H010").unwrap_err().code, 207);
        assert!(matches!(parse(b"P01012345"), Ok((_, Request::Pin(p))) if p == "12345"));
    }

    #[test]
    fn responses_have_the_reference_widths() {
        let c = common(b"S010", 0, "DEVFDMD0001");
        assert_eq!(c, "S010000000DEVFDMD0001");
        let signed = Signed {
            vsc_id: "DEVSW-dbc29825".into(),
            date: "20261122".into(),
            time: "201501".into(),
            label: "NS".into(),
            event_counter: 12,
            total_counter: 40,
            signature: "AB".repeat(20),
        };
        assert_eq!(h_response(b"H070", 102, "DEVFDMD0001", &signed).len(), 109);
        let r = parse(b"Q000").unwrap_err();
        assert_eq!(refusal_response(&r, "DEVFDMD0001"), "Q000206000DEVFDMD0001");
        let r = parse(b"I01x").unwrap_err();
        assert_eq!(refusal_response(&r, "DEVFDMD0001").len(), 59);
        assert_eq!(
            fdm_date_time("2026-11-22T20:15:01.123+01:00"),
            Some(("20261122".into(), "201501".into()))
        );
    }
}
