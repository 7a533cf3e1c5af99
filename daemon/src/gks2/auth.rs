//! The GKS 2.0 request digest (docs/gks2.md §1.1):
//! `Authorization: FDM base64(SHA-1("POST" + Date + secret + body))`, `Date` in RFC 1123 (GMT).
//! Also a small standard base64 (with padding), used for the digest and the signatures.

use chrono::{DateTime, NaiveDateTime, Utc};
use sha1::{Digest, Sha1};

/// The scheme word of the `Authorization` header.
pub const SCHEME: &str = "FDM";

/// The `Date` header value for `now`: `Sun, 06 Dec 2026 21:20:00 GMT`.
pub fn http_date(now: DateTime<Utc>) -> String {
    now.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// Reads a `Date` header value written as [`http_date`] writes it.
pub fn parse_http_date(text: &str) -> Option<DateTime<Utc>> {
    if text.len() > 40 {
        return None;
    }
    NaiveDateTime::parse_from_str(text, "%a, %d %b %Y %H:%M:%S GMT")
        .ok()
        .map(|n| n.and_utc())
}

/// The digest of one request, base64.
pub fn digest(method: &str, date: &str, secret: &str, body: &[u8]) -> String {
    let mut h = Sha1::new();
    h.update(method.as_bytes());
    h.update(date.as_bytes());
    h.update(secret.as_bytes());
    h.update(body);
    base64_encode(&h.finalize())
}

/// The `Authorization` header value.
pub fn authorization(method: &str, date: &str, secret: &str, body: &[u8]) -> String {
    format!("{SCHEME} {}", digest(method, date, secret, body))
}

/// Why a request's authentication was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No or unreadable `Date` header.
    #[error("the Date header is missing or not an RFC 1123 date")]
    BadDate,
    /// `Date` too far from the FDM's clock.
    #[error("the Date header is {0} s away from the FDM's clock")]
    Stale(i64),
    /// No `Authorization: FDM …` header.
    #[error("the Authorization header is missing or not of the FDM scheme")]
    Missing,
    /// The digest does not match.
    #[error("the request digest does not match")]
    Mismatch,
}

/// Checks a request: the date within `max_skew_s` of `now`, the digest over method, date, secret
/// and body. The comparison takes the same time whatever the digest.
pub fn check(
    method: &str,
    date: Option<&str>,
    authorization: Option<&str>,
    secret: &str,
    body: &[u8],
    now: DateTime<Utc>,
    max_skew_s: i64,
) -> Result<(), AuthError> {
    let date = date.ok_or(AuthError::BadDate)?;
    let when = parse_http_date(date).ok_or(AuthError::BadDate)?;
    let skew = (now - when).num_seconds();
    if skew.abs() > max_skew_s {
        return Err(AuthError::Stale(skew));
    }
    let given = authorization
        .and_then(|a| a.strip_prefix(SCHEME))
        .and_then(|a| a.strip_prefix(' '))
        .ok_or(AuthError::Missing)?;
    let expected = digest(method, date, secret, body);
    if constant_time_eq(given.trim().as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(AuthError::Mismatch)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64 with padding; `None` for anything else.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    if bytes.len() % 4 != 0 {
        return None;
    }
    let value = |c: u8| ALPHABET.iter().position(|&a| a == c).map(|p| p as u32);
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for (index, quad) in bytes.chunks(4).enumerate() {
        let last = index == bytes.len() / 4 - 1;
        let pad = quad.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut n = 0u32;
        for &c in &quad[..4 - pad] {
            n = (n << 6) | value(c)?;
        }
        n <<= 6 * pad as u32;
        let decoded = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&decoded[..3 - pad]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn base64_round_trips_and_matches_the_standard() {
        assert_eq!(base64_encode(b""), "");
        assert_eq!(base64_encode(b"f"), "Zg==");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_encode(b"foo"), "Zm9v");
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        for n in 0..70u8 {
            let bytes: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37)).collect();
            assert_eq!(base64_decode(&base64_encode(&bytes)).unwrap(), bytes);
        }
        assert!(base64_decode("Zg=").is_none());
        assert!(base64_decode("Z===").is_none());
        assert!(base64_decode("Zg==Zg==").is_none());
    }

    #[test]
    fn the_digest_is_sha1_over_the_plain_concatenation() {
        // SHA-1("POST" "Sun, 06 Dec 2026 21:20:00 GMT" "secret" "{}") computed independently
        // with `printf %s ... | sha1sum | xxd -r -p | base64`.
        let date = "Sun, 06 Dec 2026 21:20:00 GMT";
        assert_eq!(
            digest("POST", date, "secret", b"{}"),
            "9RXEctTvoGmPRpdIxt3rE5b7euI="
        );
        let now = parse_http_date(date).unwrap();
        assert_eq!(http_date(now), date);
        let auth = authorization("POST", date, "secret", b"{}");
        assert!(check("POST", Some(date), Some(&auth), "secret", b"{}", now, 300).is_ok());
        assert_eq!(
            check("POST", Some(date), Some(&auth), "other", b"{}", now, 300),
            Err(AuthError::Mismatch)
        );
        assert_eq!(
            check("POST", Some(date), Some(&auth), "secret", b"{} ", now, 300),
            Err(AuthError::Mismatch)
        );
        let later = now + chrono::Duration::seconds(301);
        assert_eq!(
            check("POST", Some(date), Some(&auth), "secret", b"{}", later, 300),
            Err(AuthError::Stale(301))
        );
        assert_eq!(
            check("POST", None, Some(&auth), "secret", b"{}", now, 300),
            Err(AuthError::BadDate)
        );
    }
}
