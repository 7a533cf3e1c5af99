//! `[backoffice]`: where fdmd copies its journal (`docs/backoffice.md`). Off by default.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Largest segment the back office takes (`fdmd-backoffice`: at most 100,000 records).
pub const MAX_SEGMENT_RECORDS: u64 = 100_000;

/// Name of the systemd credential read when `credential_file` is not set
/// (`LoadCredential=fdmd-backoffice:…` puts it in `$CREDENTIALS_DIRECTORY`).
pub const SYSTEMD_CREDENTIAL: &str = "fdmd-backoffice";

/// `[backoffice]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackofficeSection {
    /// Push the journal to the back office.
    pub enabled: bool,
    /// The back office's base URL: `https://office.example` (plain `http://` only to a
    /// loopback address).
    pub url: String,
    /// This establishment's id in the back office (given at enrolment).
    pub establishment: String,
    /// File holding the establishment's credential (one line). Unset: the systemd credential
    /// `fdmd-backoffice` (`$CREDENTIALS_DIRECTORY/fdmd-backoffice`).
    pub credential_file: Option<PathBuf>,
    /// PEM file of the CA(s) that signed the back office's certificate. Unset: the system's
    /// roots (`/etc/ssl/certs`, Debian's `ca-certificates`).
    pub ca_file: Option<PathBuf>,
    /// Records per segment (1 to 100,000).
    pub segment_records: u64,
    /// How often the journal is looked at when the copy is up to date, in milliseconds.
    pub poll_ms: u64,
    /// First wait after a failure, in milliseconds (doubled at each failure, with jitter).
    pub retry_min_ms: u64,
    /// Longest wait between attempts, in milliseconds.
    pub retry_max_ms: u64,
    /// Longest a segment's request may take, in milliseconds.
    pub timeout_ms: u64,
}

impl Default for BackofficeSection {
    fn default() -> Self {
        BackofficeSection {
            enabled: false,
            url: String::new(),
            establishment: String::new(),
            credential_file: None,
            ca_file: None,
            segment_records: 5_000,
            poll_ms: 5_000,
            retry_min_ms: 1_000,
            retry_max_ms: 300_000,
            timeout_ms: 60_000,
        }
    }
}

/// Problems with the section, as `(key, message)`.
pub fn problems(s: &BackofficeSection) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut bad = |key: &str, message: String| out.push((format!("backoffice.{key}"), message));
    if !s.enabled {
        return out;
    }
    match super::client::Target::parse(&s.url, &s.establishment) {
        Ok(_) => {}
        Err(e) => bad("url", e.to_string()),
    }
    if s.establishment.is_empty()
        || s.establishment.len() > 64
        || !s
            .establishment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        bad(
            "establishment",
            format!(
                "{:?} must be 1 to 64 letters, digits, '-', '_' or '.'",
                s.establishment
            ),
        );
    }
    if !(1..=MAX_SEGMENT_RECORDS).contains(&s.segment_records) {
        bad(
            "segment_records",
            format!("{} must be 1 to {MAX_SEGMENT_RECORDS}", s.segment_records),
        );
    }
    if s.poll_ms < 10 {
        bad("poll_ms", format!("{} must be at least 10", s.poll_ms));
    }
    if s.retry_min_ms == 0 || s.retry_min_ms > s.retry_max_ms {
        bad(
            "retry_min_ms",
            format!(
                "{} must be at least 1 and at most retry_max_ms ({})",
                s.retry_min_ms, s.retry_max_ms
            ),
        );
    }
    if s.timeout_ms < 100 {
        bad(
            "timeout_ms",
            format!("{} must be at least 100", s.timeout_ms),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_by_default_and_checked_when_on() {
        assert!(problems(&BackofficeSection::default()).is_empty());
        let on = BackofficeSection {
            enabled: true,
            url: "http://office.example".into(),
            establishment: "Bxl 01".into(),
            segment_records: 0,
            ..Default::default()
        };
        let keys: Vec<String> = problems(&on).into_iter().map(|p| p.0).collect();
        assert_eq!(
            keys,
            [
                "backoffice.url",
                "backoffice.establishment",
                "backoffice.segment_records"
            ]
        );
        let good = BackofficeSection {
            enabled: true,
            url: "https://office.example".into(),
            establishment: "bxl-01".into(),
            ..Default::default()
        };
        assert!(problems(&good).is_empty(), "{:?}", problems(&good));
    }

    #[test]
    fn the_daemon_configuration_reports_them_with_their_keys() {
        let mut c = crate::config::Config::default();
        c.backoffice.enabled = true;
        c.backoffice.url = "ftp://x".into();
        c.backoffice.establishment = "bxl-01".into();
        let e = crate::config::validate(&c).unwrap_err();
        assert!(e.to_string().contains("backoffice.url"), "{e}");
    }
}
