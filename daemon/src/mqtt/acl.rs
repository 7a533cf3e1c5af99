//! Who may publish and subscribe to what. The embedded broker's gate applies these rules to every
//! CONNECT (will), PUBLISH and SUBSCRIBE; `packaging/mosquitto/fdmd.acl` expresses the same rules
//! for an external Mosquitto.
//!
//! | principal          | may publish                  | may subscribe to (exact filters)           |
//! |--------------------|------------------------------|--------------------------------------------|
//! | register `R`       | `PREFIX/registers/R/orders`, `PREFIX/registers/R/report-requests`, `PREFIX/registers/R/plugins/I/in[/…]` | `PREFIX/registers/R/receipts`, `PREFIX/registers/R/reports`, `PREFIX/registers/R/plugins/I/out[/…]`, `PREFIX/status` |
//! | station `S`        | nothing                      | `PREFIX/stations/S/tickets`, `PREFIX/status`   |
//! | admin              | nothing                      | `PREFIX/status`                            |
//!
//! There are no anonymous clients, not even in development mode: `--dev` differs from
//! production only in the signer, the defaults and the credentials it prints.
//!
//! Subscriptions must name the topic exactly: a wildcard filter is refused even when every topic
//! it matches would be allowed, which keeps the check a string comparison.
//!
//! Plugin topics (`docs/plugins.md`): a register reaches the instances bound to it, and only
//! those, because its own id is in the topic; fdmd subscribes only to the `…/in` of instances
//! whose configured register is that id, so a message for another register's instance is never
//! handed to a plugin. `…/out` is fdmd's alone to publish.

use super::topics::Topics;
use crate::access::Principal;

/// Whether `who` may publish on `topic` (also used for the will topic of a CONNECT).
pub fn may_publish(who: &Principal, topics: &Topics, topic: &str) -> bool {
    match who {
        Principal::Register(id) => {
            topic == topics.orders(id)
                || topic == topics.report_requests(id)
                || plugin_input_of(topics, topic) == Some(id.as_str())
        }
        Principal::Station(_) | Principal::Admin => false,
    }
}

/// Whether `who` may subscribe to `filter`.
pub fn may_subscribe(who: &Principal, topics: &Topics, filter: &str) -> bool {
    if filter == topics.status() {
        return true;
    }
    match who {
        Principal::Register(id) => {
            filter == topics.receipts(id)
                || filter == topics.reports(id)
                || topics
                    .plugin_topic(filter)
                    .is_some_and(|p| p.output && p.register == id)
        }
        Principal::Station(id) => filter == topics.tickets(id),
        Principal::Admin => false,
    }
}

/// The register of a plugin input topic (`…/plugins/I/in[/…]`).
fn plugin_input_of<'t>(topics: &Topics, topic: &'t str) -> Option<&'t str> {
    topics
        .plugin_topic(topic)
        .filter(|p| !p.output)
        .map(|p| p.register)
}

/// How a principal is named in logs and in the broker (`register:till-1`).
pub fn name(who: &Principal) -> String {
    match who {
        Principal::Register(id) => format!("register:{id}"),
        Principal::Station(id) => format!("station:{id}"),
        Principal::Admin => "admin".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_reach_only_their_own_topics() {
        let t = Topics::new("fdm/v1");
        let a = Principal::Register("a".into());
        assert!(may_publish(&a, &t, "fdm/v1/registers/a/orders"));
        assert!(!may_publish(&a, &t, "fdm/v1/registers/b/orders"));
        assert!(may_publish(&a, &t, "fdm/v1/registers/a/report-requests"));
        assert!(!may_publish(&a, &t, "fdm/v1/registers/b/report-requests"));
        assert!(!may_publish(&a, &t, "fdm/v1/registers/a/reports"));
        assert!(may_subscribe(&a, &t, "fdm/v1/registers/a/reports"));
        assert!(!may_subscribe(&a, &t, "fdm/v1/registers/b/reports"));
        assert!(!may_subscribe(&a, &t, "fdm/v1/registers/a/report-requests"));
        assert!(!may_publish(&a, &t, "fdm/v1/registers/a/receipts"));
        assert!(!may_publish(&a, &t, "fdm/v1/status"));
        assert!(!may_publish(&a, &t, "fdm/v1/stations/a/tickets"));
        assert!(may_subscribe(&a, &t, "fdm/v1/registers/a/receipts"));
        assert!(may_subscribe(&a, &t, "fdm/v1/status"));
        for f in [
            "fdm/v1/registers/b/receipts",
            "fdm/v1/registers/+/receipts",
            "fdm/v1/registers/a/#",
            "fdm/v1/#",
            "#",
            "fdm/v1/registers/a/orders",
            "$share/g/fdm/v1/registers/a/receipts",
        ] {
            assert!(!may_subscribe(&a, &t, f), "{f}");
        }
    }

    #[test]
    fn registers_reach_only_their_own_plugin_instances() {
        let t = Topics::new("fdm/v1");
        let a = Principal::Register("a".into());
        let base = "fdm/v1/registers/a/plugins/acme";
        for ok in [format!("{base}/in"), format!("{base}/in/orders/new")] {
            assert!(may_publish(&a, &t, &ok), "{ok}");
        }
        for no in [
            format!("{base}/out"),
            format!("{base}/out/x"),
            "fdm/v1/registers/b/plugins/acme/in".to_owned(),
            format!("{base}/in/$x"),
            format!("{base}/sideways"),
        ] {
            assert!(!may_publish(&a, &t, &no), "{no}");
        }
        assert!(may_subscribe(&a, &t, &format!("{base}/out")));
        assert!(may_subscribe(&a, &t, &format!("{base}/out/display/1")));
        for no in [
            format!("{base}/out/#"),
            format!("{base}/out/+"),
            format!("{base}/in"),
            "fdm/v1/registers/a/plugins/+/out".to_owned(),
            "fdm/v1/registers/b/plugins/acme/out".to_owned(),
        ] {
            assert!(!may_subscribe(&a, &t, &no), "{no}");
        }
        let k = Principal::Station("a".into());
        assert!(!may_publish(&k, &t, &format!("{base}/in")));
        assert!(!may_subscribe(&k, &t, &format!("{base}/out")));
    }

    #[test]
    fn stations_only_read() {
        let t = Topics::new("fdm/v1");
        let k = Principal::Station("kitchen".into());
        assert!(may_subscribe(&k, &t, "fdm/v1/stations/kitchen/tickets"));
        assert!(!may_subscribe(&k, &t, "fdm/v1/stations/bar/tickets"));
        assert!(!may_subscribe(&k, &t, "fdm/v1/stations/+/tickets"));
        assert!(!may_publish(&k, &t, "fdm/v1/registers/kitchen/orders"));
        assert!(!may_publish(&k, &t, "fdm/v1/stations/kitchen/tickets"));
    }
}
