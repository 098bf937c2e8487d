//! The controller's Prometheus metrics (OpenMetrics text): routes advertised per node, reconcile
//! duration and errors, migrations followed and the time from switch-over to configuration
//! written, capped nodes and leadership.

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Label set of per-node series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct NodeLabel {
    pub node: String,
}

/// Every series, registered in one registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Mutex<Registry>,
    pub routes_advertised: Family<NodeLabel, Gauge>,
    pub node_capped: Family<NodeLabel, Gauge>,
    pub reconcile_duration: Histogram,
    pub reconcile_errors: Counter,
    pub migrations_followed: Counter,
    pub migration_follow_seconds: Histogram,
    pub make_before_break_overlaps: Counter,
    pub not_advertised_vms: Gauge,
    pub leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("vmbgp_controller");
        let routes_advertised = Family::<NodeLabel, Gauge>::default();
        registry.register(
            "routes_advertised",
            "Host-route prefixes in the node's FRRConfiguration as last written",
            routes_advertised.clone(),
        );
        let node_capped = Family::<NodeLabel, Gauge>::default();
        registry.register(
            "node_capped",
            "1 when the node is past --max-routes-per-node and advertises no host routes",
            node_capped.clone(),
        );
        // 1 ms .. ~33 s.
        let reconcile_duration = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "reconcile_duration_seconds",
            "Time to compute and write the desired state once",
            reconcile_duration.clone(),
        );
        let reconcile_errors = Counter::default();
        registry.register(
            "reconcile_errors",
            "Reconciles that failed to write",
            reconcile_errors.clone(),
        );
        let migrations_followed = Counter::default();
        registry.register(
            "migrations_followed",
            "Completed live migrations whose host route was written on the target node",
            migrations_followed.clone(),
        );
        // 10 ms .. ~160 s.
        let migration_follow_seconds = Histogram::new(exponential_buckets(0.01, 2.0, 15));
        registry.register(
            "migration_follow_seconds",
            "From the migration's endTimestamp (switch-over, wall clock of the API server's writer) to the target's configuration written",
            migration_follow_seconds.clone(),
        );
        let make_before_break_overlaps = Counter::default();
        registry.register(
            "make_before_break_overlaps",
            "Reconciles in which a route was advertised from its new node before being withdrawn from its old one",
            make_before_break_overlaps.clone(),
        );
        let not_advertised_vms = Gauge::default();
        registry.register(
            "not_advertised_vms",
            "Selected VMs whose host route is not advertised",
            not_advertised_vms.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the Lease",
            leader.clone(),
        );
        Metrics {
            registry: Mutex::new(registry),
            routes_advertised,
            node_capped,
            reconcile_duration,
            reconcile_errors,
            migrations_followed,
            migration_follow_seconds,
            make_before_break_overlaps,
            not_advertised_vms,
            leader,
        }
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if let Ok(registry) = self.registry.lock() {
            // Writing into a String cannot fail.
            let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_appear_in_the_exposition() {
        let m = Metrics::new();
        m.routes_advertised
            .get_or_create(&NodeLabel {
                node: "node-1".into(),
            })
            .set(3);
        m.reconcile_duration.observe(0.004);
        m.migrations_followed.inc();
        let text = m.encode();
        assert!(
            text.contains("vmbgp_controller_routes_advertised{node=\"node-1\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("vmbgp_controller_reconcile_duration_seconds_count 1"),
            "{text}"
        );
        assert!(
            text.contains("vmbgp_controller_migrations_followed_total 1"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }
}
