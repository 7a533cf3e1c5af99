//! The topic layout under the configured prefix (default `fdm/v1`):
//!
//! | topic                                 | from → to            |
//! |---------------------------------------|----------------------|
//! | `PREFIX/registers/{register}/orders`   | register → fdmd      |
//! | `PREFIX/registers/{register}/receipts` | fdmd → register      |
//! | `PREFIX/registers/{register}/report-requests` | register → fdmd |
//! | `PREFIX/registers/{register}/reports`  | fdmd → register      |
//! | `PREFIX/stations/{station}/tickets`    | fdmd → station       |
//! | `PREFIX/status`                        | fdmd → everybody     |

use crate::fiscal::order::is_valid_id;

/// Longest register or station id that can appear in a topic.
pub const MAX_ID_LEN: usize = 32;

/// Builds and parses fdmd's topics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    prefix: String,
}

impl Topics {
    /// Topics under `prefix` (validated by the configuration: no wildcards, no leading or
    /// trailing `/`).
    pub fn new(prefix: &str) -> Self {
        Topics {
            prefix: prefix.to_owned(),
        }
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Where `register` publishes its orders.
    pub fn orders(&self, register: &str) -> String {
        format!("{}/registers/{register}/orders", self.prefix)
    }

    /// Where fdmd answers `register`.
    pub fn receipts(&self, register: &str) -> String {
        format!("{}/registers/{register}/receipts", self.prefix)
    }

    /// Where `register` asks for X and Z reports.
    pub fn report_requests(&self, register: &str) -> String {
        format!("{}/registers/{register}/report-requests", self.prefix)
    }

    /// Where fdmd answers `register`'s report requests.
    pub fn reports(&self, register: &str) -> String {
        format!("{}/registers/{register}/reports", self.prefix)
    }

    /// The filter fdmd subscribes to for every register's report requests.
    pub fn report_requests_filter(&self) -> String {
        format!("{}/registers/+/report-requests", self.prefix)
    }

    /// The register a report-requests topic belongs to, when `topic` is one and the id is valid.
    pub fn register_of_report_requests<'t>(&self, topic: &'t str) -> Option<&'t str> {
        self.id_between(topic, "/registers/", "/report-requests")
    }

    /// Where fdmd sends `station`'s tickets.
    pub fn tickets(&self, station: &str) -> String {
        format!("{}/stations/{station}/tickets", self.prefix)
    }

    /// The retained status topic.
    pub fn status(&self) -> String {
        format!("{}/status", self.prefix)
    }

    /// The filter fdmd subscribes to for orders of every register.
    pub fn orders_filter(&self) -> String {
        format!("{}/registers/+/orders", self.prefix)
    }

    /// The register an orders topic belongs to, when `topic` is one and the id is valid.
    pub fn register_of_orders<'t>(&self, topic: &'t str) -> Option<&'t str> {
        self.id_between(topic, "/registers/", "/orders")
    }

    /// The station a tickets topic belongs to, when `topic` is one and the id is valid.
    pub fn station_of_tickets<'t>(&self, topic: &'t str) -> Option<&'t str> {
        self.id_between(topic, "/stations/", "/tickets")
    }

    /// Whether `topic` or filter lies under the prefix.
    pub fn is_under_prefix(&self, topic: &str) -> bool {
        topic
            .strip_prefix(self.prefix.as_str())
            .is_some_and(|rest| rest.starts_with('/'))
    }

    fn id_between<'t>(&self, topic: &'t str, before: &str, after: &str) -> Option<&'t str> {
        let id = topic
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix(before)?
            .strip_suffix(after)?;
        is_topic_id(id).then_some(id)
    }
}

/// Whether `id` can stand as one topic level for a register or station: the ids fdmd enrols
/// (1–32 of `A-Z a-z 0-9 . _ : -`), so never `/`, `+`, `#` or empty.
pub fn is_topic_id(id: &str) -> bool {
    is_valid_id(id, MAX_ID_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_and_parses() {
        let t = Topics::new("fdm/v1");
        assert_eq!(t.orders("till-1"), "fdm/v1/registers/till-1/orders");
        assert_eq!(t.receipts("till-1"), "fdm/v1/registers/till-1/receipts");
        assert_eq!(t.tickets("bar"), "fdm/v1/stations/bar/tickets");
        assert_eq!(t.status(), "fdm/v1/status");
        assert_eq!(t.orders_filter(), "fdm/v1/registers/+/orders");
        assert_eq!(
            t.register_of_orders("fdm/v1/registers/till-1/orders"),
            Some("till-1")
        );
        assert_eq!(
            t.station_of_tickets("fdm/v1/stations/bar/tickets"),
            Some("bar")
        );
        for bad in [
            "fdm/v1/registers//orders",
            "fdm/v1/registers/a/b/orders",
            "fdm/v1/registers/+/orders",
            "fdm/v1/registers/#/orders",
            "fdm/v1/registers/till-1/receipts",
            "fdm/v2/registers/till-1/orders",
            "fdm/v1x/registers/till-1/orders",
            "other/fdm/v1/registers/till-1/orders",
        ] {
            assert_eq!(t.register_of_orders(bad), None, "{bad}");
        }
        assert_eq!(
            t.register_of_report_requests("fdm/v1/registers/till-1/report-requests"),
            Some("till-1")
        );
        assert_eq!(
            t.register_of_report_requests("fdm/v1/registers/till-1/orders"),
            None
        );
        assert_eq!(t.reports("till-1"), "fdm/v1/registers/till-1/reports");
        assert_eq!(
            t.report_requests_filter(),
            "fdm/v1/registers/+/report-requests"
        );
        assert!(t.is_under_prefix("fdm/v1/status"));
        assert!(t.is_under_prefix("fdm/v1/#"));
        assert!(!t.is_under_prefix("fdm/v1"));
        assert!(!t.is_under_prefix("fdm/v10/status"));
    }
}
