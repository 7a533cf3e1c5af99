//! Prometheus metrics (text format 0.0.4): counters kept by the server, and gauges read from
//! the database when scraped.

use crate::chain::RefusalCode;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

const REFUSAL_CODES: [RefusalCode; 6] = RefusalCode::ALL;

/// Counters of the running server.
#[derive(Debug, Default)]
pub struct Metrics {
    segments_accepted: AtomicU64,
    records_stored: AtomicU64,
    refused: [AtomicU64; 6],
    unauthorized: AtomicU64,
    http_requests: AtomicU64,
}

/// Gauges read from the database at scrape time.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges {
    /// Establishments enrolled.
    pub establishments: i64,
    /// Of which flagged.
    pub flagged: i64,
    /// Of which silent.
    pub silent: i64,
    /// Records stored.
    pub records: i64,
}

impl Metrics {
    /// A segment was accepted, `records` of it stored now.
    pub fn accepted(&self, records: u64) {
        self.segments_accepted.fetch_add(1, Ordering::Relaxed);
        self.records_stored.fetch_add(records, Ordering::Relaxed);
    }

    /// A segment was refused.
    pub fn refused(&self, code: RefusalCode) {
        if let Some(i) = REFUSAL_CODES.iter().position(|c| *c == code) {
            self.refused[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A request without a valid credential.
    pub fn unauthorized(&self) {
        self.unauthorized.fetch_add(1, Ordering::Relaxed);
    }

    /// Any request.
    pub fn request(&self) {
        self.http_requests.fetch_add(1, Ordering::Relaxed);
    }

    /// The text exposition.
    pub fn render(&self, g: Gauges) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, lines: &[(String, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in lines {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        metric(
            "fdmd_backoffice_segments_accepted_total",
            "counter",
            "Segments accepted (stored, or stored already).",
            &[(String::new(), get(&self.segments_accepted))],
        );
        metric(
            "fdmd_backoffice_records_stored_total",
            "counter",
            "Records stored by this process.",
            &[(String::new(), get(&self.records_stored))],
        );
        let refused: Vec<(String, u64)> = REFUSAL_CODES
            .iter()
            .zip(&self.refused)
            .map(|(c, n)| (format!("{{code=\"{}\"}}", c.as_str()), get(n)))
            .collect();
        metric(
            "fdmd_backoffice_segments_refused_total",
            "counter",
            "Segments refused, by code.",
            &refused,
        );
        metric(
            "fdmd_backoffice_unauthorized_total",
            "counter",
            "Requests refused for a missing or wrong credential.",
            &[(String::new(), get(&self.unauthorized))],
        );
        metric(
            "fdmd_backoffice_http_requests_total",
            "counter",
            "HTTP requests.",
            &[(String::new(), get(&self.http_requests))],
        );
        let gauge = |v: i64| v.max(0) as u64;
        metric(
            "fdmd_backoffice_establishments",
            "gauge",
            "Establishments enrolled, flagged (a segment was refused) and silent.",
            &[
                ("{state=\"enrolled\"}".into(), gauge(g.establishments)),
                ("{state=\"flagged\"}".into(), gauge(g.flagged)),
                ("{state=\"silent\"}".into(), gauge(g.silent)),
            ],
        );
        metric(
            "fdmd_backoffice_records",
            "gauge",
            "Records stored in the database.",
            &[(String::new(), gauge(g.records))],
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_every_family() {
        let m = Metrics::default();
        m.accepted(3);
        m.refused(RefusalCode::Fork);
        let text = m.render(Gauges::default());
        assert!(text.contains("fdmd_backoffice_records_stored_total 3"));
        assert!(text.contains("fdmd_backoffice_segments_refused_total{code=\"fork\"} 1"));
        assert!(text.contains("# TYPE fdmd_backoffice_establishments gauge"));
    }
}
