//! The quantile table: every `…QuantilesMeasurement` metric, the quantile names its documents
//! carry, their unit and when they exist. The reporters name their quantile documents from it and
//! profile thresholds are checked against it, so the two cannot drift apart.

pub const VMI_LATENCY_QUANTILES: &str = "vmiLatencyQuantilesMeasurement";
pub const ROUTE_CONVERGENCE_QUANTILES: &str = "routeConvergenceQuantilesMeasurement";
pub const VM_REACHABILITY_QUANTILES: &str = "vmReachabilityQuantilesMeasurement";
pub const VM_THROUGHPUT_QUANTILES: &str = "vmThroughputQuantilesMeasurement";
pub const BGP_SESSION_QUANTILES: &str = "bgpSessionQuantilesMeasurement";
pub const VM_MIGRATION_QUANTILES: &str = "vmMigrationQuantilesMeasurement";

/// The suffix that turns a measurement name (`routeConvergence`) into its quantile metric.
pub const QUANTILES_SUFFIX: &str = "QuantilesMeasurement";

/// The unit of a quantile's statistics (counts are always plain numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Millis,
    Percent,
    BitsPerSecond,
    Count,
}

impl Unit {
    /// As documents write it in `unit`.
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Millis => "ms",
            Unit::Percent => "percent",
            Unit::BitsPerSecond => "bps",
            Unit::Count => "count",
        }
    }
}

/// When a quantile document exists in a run that enables its measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// Always written; without samples it reports why (missing).
    Always,
    /// Always written; a run in `subnet` mode reports it not applicable (per-VM /32 routes exist
    /// only in host-routes mode).
    HostRoutes,
    /// Written only when samples arrive: API-server-timestamp latencies (1 s resolution), kept for
    /// cross-checking the harness clock. No threshold may name one.
    CrossCheck,
}

/// One quantile of a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantile {
    /// The documents' `quantileName`.
    pub name: &'static str,
    pub unit: Unit,
    pub presence: Presence,
}

/// One quantile metric and its quantiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuantileMetric {
    /// The measurement name profiles use, e.g. `routeConvergence`.
    pub measurement: &'static str,
    /// The documents' `metricName`, `<measurement>QuantilesMeasurement`.
    pub metric_name: &'static str,
    pub quantiles: &'static [Quantile],
}

impl QuantileMetric {
    pub fn quantile(&self, name: &str) -> Option<&'static Quantile> {
        self.quantiles.iter().find(|q| q.name == name)
    }

    /// The quantiles a threshold may name: every one a run with this measurement writes.
    pub fn threshold_quantiles(&self) -> impl Iterator<Item = &'static str> + use<> {
        self.quantiles
            .iter()
            .filter(|q| q.presence != Presence::CrossCheck)
            .map(|q| q.name)
    }
}

const fn q(name: &'static str, unit: Unit) -> Quantile {
    Quantile {
        name,
        unit,
        presence: Presence::Always,
    }
}

const fn host_route(name: &'static str) -> Quantile {
    Quantile {
        name,
        unit: Unit::Millis,
        presence: Presence::HostRoutes,
    }
}

const fn cross_check(name: &'static str) -> Quantile {
    Quantile {
        name,
        unit: Unit::Millis,
        presence: Presence::CrossCheck,
    }
}

use Unit::{BitsPerSecond, Count, Millis, Percent};

/// Every quantile metric, in the order messages list them.
pub const QUANTILE_METRICS: &[QuantileMetric] = &[
    QuantileMetric {
        measurement: "vmiLatency",
        metric_name: VMI_LATENCY_QUANTILES,
        // kube-burner's names for the VM phases (including its `PodPod…` doubling), then ours.
        quantiles: &[
            q("VMICreated", Millis),
            q("VMIPending", Millis),
            q("VMIScheduling", Millis),
            q("VMIScheduled", Millis),
            q("VMIRunning", Millis),
            q("VMReady", Millis),
            q("PodCreated", Millis),
            q("PodPodScheduled", Millis),
            q("PodInitialized", Millis),
            q("PodContainersReady", Millis),
            q("PodReady", Millis),
            q("PodPodReadyToStartContainers", Millis),
            q("IPAMClaimIPsAllocated", Millis),
            q("IPVisible", Millis),
            q("IPAMClaimReleased", Millis),
            cross_check("ServerVMICreated"),
            cross_check("ServerVMIPending"),
            cross_check("ServerVMIScheduling"),
            cross_check("ServerVMIScheduled"),
            cross_check("ServerVMIRunning"),
            cross_check("ServerVMReady"),
            cross_check("ServerPodCreated"),
            cross_check("ServerPodPodScheduled"),
            cross_check("ServerPodInitialized"),
            cross_check("ServerPodContainersReady"),
            cross_check("ServerPodReady"),
            cross_check("ServerPodPodReadyToStartContainers"),
            cross_check("ServerIPAMClaimIPsAllocated"),
            cross_check("ServerIPVisible"),
        ],
    },
    QuantileMetric {
        measurement: "routeConvergence",
        metric_name: ROUTE_CONVERGENCE_QUANTILES,
        // The whole subnet's route, then one VM's /32 (`HostRoute` + the same name).
        quantiles: &[
            q("AdvertiseAdjRibIn", Millis),
            q("AdvertiseFib", Millis),
            q("AdvertiseAllNextHops", Millis),
            q("WithdrawAdjRibIn", Millis),
            q("WithdrawFib", Millis),
            q("StaleRouteWindow", Millis),
            host_route("HostRouteAdvertiseAdjRibIn"),
            host_route("HostRouteAdvertiseFib"),
            host_route("HostRouteAdvertiseAllNextHops"),
            host_route("HostRouteWithdrawAdjRibIn"),
            host_route("HostRouteWithdrawFib"),
            host_route("HostRouteStaleRouteWindow"),
        ],
    },
    QuantileMetric {
        measurement: "vmReachability",
        metric_name: VM_REACHABILITY_QUANTILES,
        quantiles: &[
            q("FirstReply", Millis),
            q("SustainedReachability", Millis),
            q("LossDerivedConvergence", Millis),
            q("RTT", Millis),
            q("LossPercent", Percent),
        ],
    },
    QuantileMetric {
        measurement: "vmThroughput",
        metric_name: VM_THROUGHPUT_QUANTILES,
        quantiles: &[q("Goodput", BitsPerSecond), q("Retransmits", Count)],
    },
    QuantileMetric {
        measurement: "bgpSession",
        metric_name: BGP_SESSION_QUANTILES,
        quantiles: &[
            q("UptimePercent", Percent),
            q("Flaps", Count),
            q("PrefixesReceived", Count),
        ],
    },
    QuantileMetric {
        measurement: "vmMigration",
        metric_name: VM_MIGRATION_QUANTILES,
        quantiles: &[
            q("LossPeriod", Millis),
            q("LongestGap", Millis),
            q("ReachableAfterSwitchover", Millis),
            q("NextHopFollow", Millis),
            q("TcpLongestStall", Millis),
        ],
    },
];

/// The metric a profile names by its measurement (`routeConvergence`).
pub fn by_measurement(measurement: &str) -> Option<&'static QuantileMetric> {
    QUANTILE_METRICS
        .iter()
        .find(|m| m.measurement == measurement)
}

/// The metric documents name by `metricName` (`routeConvergenceQuantilesMeasurement`).
pub fn by_metric_name(metric_name: &str) -> Option<&'static QuantileMetric> {
    QUANTILE_METRICS
        .iter()
        .find(|m| m.metric_name == metric_name)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn metric_names_are_measurement_names_with_the_suffix() {
        for metric in QUANTILE_METRICS {
            assert_eq!(
                metric.metric_name,
                format!("{}{QUANTILES_SUFFIX}", metric.measurement)
            );
            assert_eq!(by_measurement(metric.measurement), Some(metric));
            assert_eq!(by_metric_name(metric.metric_name), Some(metric));
        }
        assert_eq!(by_measurement("vmEgress"), None);
        assert_eq!(by_metric_name("routeConvergence"), None);
    }

    #[test]
    fn quantile_names_are_unique_within_a_metric() {
        for metric in QUANTILE_METRICS {
            let names: BTreeSet<&str> = metric.quantiles.iter().map(|q| q.name).collect();
            assert_eq!(
                names.len(),
                metric.quantiles.len(),
                "{}",
                metric.measurement
            );
        }
    }

    #[test]
    fn host_route_and_server_quantiles_mirror_their_base_quantile() {
        for metric in QUANTILE_METRICS {
            for quantile in metric.quantiles {
                let base = match quantile.presence {
                    Presence::Always => continue,
                    Presence::HostRoutes => quantile.name.strip_prefix("HostRoute"),
                    Presence::CrossCheck => quantile.name.strip_prefix("Server"),
                };
                let base = base.and_then(|b| metric.quantile(b));
                assert!(
                    base.is_some_and(|b| b.presence == Presence::Always && b.unit == quantile.unit),
                    "{} has no base quantile of the same unit",
                    quantile.name
                );
            }
        }
    }

    #[test]
    fn thresholds_may_name_every_quantile_but_the_cross_checks() {
        let vmi = by_measurement("vmiLatency").expect("vmiLatency");
        let allowed: Vec<&str> = vmi.threshold_quantiles().collect();
        assert!(allowed.contains(&"VMReady") && allowed.contains(&"IPAMClaimReleased"));
        assert!(!allowed.iter().any(|q| q.starts_with("Server")));
        let route = by_measurement("routeConvergence").expect("routeConvergence");
        assert_eq!(route.threshold_quantiles().count(), 12);
        assert_eq!(
            route.quantile("HostRouteAdvertiseFib").map(|q| q.presence),
            Some(Presence::HostRoutes)
        );
    }

    #[test]
    fn units_are_written_as_documents_spell_them() {
        let units: Vec<&str> = [Millis, Percent, BitsPerSecond, Count]
            .into_iter()
            .map(Unit::as_str)
            .collect();
        assert_eq!(units, ["ms", "percent", "bps", "count"]);
    }
}
