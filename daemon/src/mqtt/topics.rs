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
//! | `PREFIX/registers/{register}/plugins/{instance}/in[/…]`  | register → a plugin instance |
//! | `PREFIX/registers/{register}/plugins/{instance}/out[/…]` | a plugin instance → register |

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

    /// The namespace of plugin instance `instance` bound to `register`; its inputs are under
    /// `…/in`, its outputs under `…/out`.
    pub fn plugin_base(&self, register: &str, instance: &str) -> String {
        format!("{}/registers/{register}/plugins/{instance}", self.prefix)
    }

    /// What a plugin topic (`PREFIX/registers/R/plugins/I/{in|out}[/levels…]`) is about, when
    /// `topic` is one with valid ids and no wildcard, `$` or empty level after the direction.
    pub fn plugin_topic<'t>(&self, topic: &'t str) -> Option<PluginTopic<'t>> {
        let rest = topic
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix("/registers/")?;
        let (register, rest) = rest.split_once('/')?;
        let rest = rest.strip_prefix("plugins/")?;
        let (instance, rest) = rest.split_once('/')?;
        let (direction, sub) = match rest.split_once('/') {
            Some((d, sub)) => (d, sub),
            None => (rest, ""),
        };
        let output = match direction {
            "in" => false,
            "out" => true,
            _ => return None,
        };
        if !is_topic_id(register) || !is_topic_id(instance) {
            return None;
        }
        if rest.len() > direction.len() && !is_plain_subtopic(sub) {
            return None;
        }
        Some(PluginTopic {
            register,
            instance,
            output,
            sub,
        })
    }

    fn id_between<'t>(&self, topic: &'t str, before: &str, after: &str) -> Option<&'t str> {
        let id = topic
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix(before)?
            .strip_suffix(after)?;
        is_topic_id(id).then_some(id)
    }
}

/// A topic of a plugin instance's namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PluginTopic<'t> {
    /// The register the instance is bound to.
    pub register: &'t str,
    /// The instance's name.
    pub instance: &'t str,
    /// `…/out` (fdmd → devices) rather than `…/in`.
    pub output: bool,
    /// The levels after `in` or `out` (empty for the bare `…/in` or `…/out`).
    pub sub: &'t str,
}

/// Longest sub-topic under a plugin's `in` or `out`.
pub const MAX_SUBTOPIC_LEN: usize = 128;

/// Whether `sub` is a usable topic tail: 1–128 bytes, levels non-empty, no wildcard, no `$` at
/// the start of a level, no control character.
pub fn is_plain_subtopic(sub: &str) -> bool {
    !sub.is_empty()
        && sub.len() <= MAX_SUBTOPIC_LEN
        && sub.split('/').all(|level| {
            !level.is_empty()
                && !level.starts_with('$')
                && !level.contains(['+', '#'])
                && !level.chars().any(char::is_control)
        })
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

    #[test]
    fn plugin_topics() {
        let t = Topics::new("fdm/v1");
        assert_eq!(
            t.plugin_base("till-1", "acme"),
            "fdm/v1/registers/till-1/plugins/acme"
        );
        let p = t
            .plugin_topic("fdm/v1/registers/till-1/plugins/acme/in/orders/new")
            .unwrap();
        assert_eq!(
            (p.register, p.instance, p.output, p.sub),
            ("till-1", "acme", false, "orders/new")
        );
        let p = t
            .plugin_topic("fdm/v1/registers/till-1/plugins/acme/out")
            .unwrap();
        assert_eq!((p.output, p.sub), (true, ""));
        for bad in [
            "fdm/v1/registers/till-1/plugins/acme",
            "fdm/v1/registers/till-1/plugins/acme/",
            "fdm/v1/registers/till-1/plugins/acme/in/",
            "fdm/v1/registers/till-1/plugins/acme/in//x",
            "fdm/v1/registers/till-1/plugins/acme/in/#",
            "fdm/v1/registers/till-1/plugins/acme/in/+/x",
            "fdm/v1/registers/till-1/plugins/acme/in/$x",
            "fdm/v1/registers/till-1/plugins/acme/sideways",
            "fdm/v1/registers/+/plugins/acme/in",
            "fdm/v1/registers/till-1/plugins/+/in",
            "fdm/v1/registers//plugins/acme/in",
            "fdm/v1/registers/till-1/orders",
            "fdm/v2/registers/till-1/plugins/acme/in",
        ] {
            assert_eq!(t.plugin_topic(bad), None, "{bad}");
        }
        assert!(is_plain_subtopic("a/b-c/d"));
        assert!(!is_plain_subtopic(&"x".repeat(MAX_SUBTOPIC_LEN + 1)));
    }
}
