//! Thresholds: the metrics and quantiles a threshold may name, and turning the profile's
//! thresholds into checked bounds.

use super::checker::Checker;
use super::types::{Stat, Threshold, ThresholdBound};
use crate::config::profile::{Profile, ThresholdProfile};

/// Measurement names and the quantile names their quantile documents carry (the reporters'
/// `<metric>QuantilesMeasurement` documents); thresholds must name one of these.
pub fn known_metrics() -> &'static [(&'static str, &'static [&'static str])] {
    &[
        (
            "vmiLatency",
            &[
                "VMICreated",
                "VMIPending",
                "VMIScheduling",
                "VMIScheduled",
                "VMIRunning",
                "VMReady",
                "IPAMClaimIPsAllocated",
                "IPVisible",
                "IPAMClaimReleased",
            ],
        ),
        (
            "routeConvergence",
            &[
                "AdvertiseAdjRibIn",
                "AdvertiseFib",
                "AdvertiseAllNextHops",
                "WithdrawAdjRibIn",
                "WithdrawFib",
                "StaleRouteWindow",
                "HostRouteAdvertiseAdjRibIn",
                "HostRouteAdvertiseFib",
                "HostRouteAdvertiseAllNextHops",
                "HostRouteWithdrawAdjRibIn",
                "HostRouteWithdrawFib",
                "HostRouteStaleRouteWindow",
            ],
        ),
        (
            "vmReachability",
            &[
                "FirstReply",
                "SustainedReachability",
                "LossDerivedConvergence",
                "RTT",
                "LossPercent",
            ],
        ),
        ("vmThroughput", &["Goodput", "Retransmits"]),
        (
            "bgpSession",
            &["UptimePercent", "Flaps", "PrefixesReceived"],
        ),
        (
            "vmMigration",
            &[
                "LossPeriod",
                "LongestGap",
                "ReachableAfterSwitchover",
                "NextHopFollow",
            ],
        ),
    ]
}

pub(super) fn plan_thresholds(c: &mut Checker<'_>, profile: &Profile) -> Vec<Threshold> {
    let mut out = Vec::new();
    for (i, t) in profile.thresholds.iter().flatten().enumerate() {
        let field = |key: &str| format!("profile {}: thresholds[{i}].{key}", profile.name);
        if let Some(threshold) = plan_threshold(c, t, &field) {
            out.push(threshold);
        }
    }
    out
}

fn plan_threshold(
    c: &mut Checker<'_>,
    t: &ThresholdProfile,
    field: &dyn Fn(&str) -> String,
) -> Option<Threshold> {
    let Some((_, quantiles)) = known_metrics().iter().find(|(m, _)| *m == t.metric) else {
        let names: Vec<&str> = known_metrics().iter().map(|(m, _)| *m).collect();
        c.problem(
            &field("metric"),
            &t.metric,
            format!("unknown metric; use one of {}", names.join(", ")),
        );
        return None;
    };
    if !quantiles.contains(&t.quantile.as_str()) {
        c.problem(
            &field("quantile"),
            &t.quantile,
            format!(
                "unknown quantile for {}; use one of {}",
                t.metric,
                quantiles.join(", ")
            ),
        );
        return None;
    }
    let stat = match t.stat.as_deref().unwrap_or("P99") {
        "P99" => Stat::P99,
        "P95" => Stat::P95,
        "P90" => Stat::P90,
        "P50" => Stat::P50,
        "min" => Stat::Min,
        "max" => Stat::Max,
        "avg" => Stat::Avg,
        "count" => Stat::Count,
        "missingCount" => Stat::MissingCount,
        other => {
            c.problem(
                &field("stat"),
                other,
                "use P99, P95, P90, P50, min, max, avg, count or missingCount",
            );
            return None;
        }
    };
    let (text, is_max, key) = match (&t.max, &t.min) {
        (Some(max), None) => (max, true, "max"),
        (None, Some(min)) => (min, false, "min"),
        _ => {
            c.problem(&field("max"), "", "give exactly one of max or min");
            return None;
        }
    };
    let text = text.trim();
    let bound = if let Some(percent) = text.strip_suffix('%') {
        match percent.trim().parse::<f64>() {
            Ok(p) if (0.0..=100.0).contains(&p) => {
                if is_max {
                    ThresholdBound::MaxPercent(p)
                } else {
                    ThresholdBound::MinPercent(p)
                }
            }
            _ => {
                c.problem(&field(key), text, "not a percentage between 0% and 100%");
                return None;
            }
        }
    } else if let Ok(number) = text.parse::<f64>() {
        if !number.is_finite() {
            c.problem(&field(key), text, "must be a finite number");
            return None;
        }
        if is_max {
            ThresholdBound::MaxNumber(number)
        } else {
            ThresholdBound::MinNumber(number)
        }
    } else {
        match humantime::parse_duration(text) {
            Ok(d) if is_max => ThresholdBound::MaxDuration(d),
            Ok(d) => ThresholdBound::MinDuration(d),
            Err(_) => {
                c.problem(
                    &field(key),
                    text,
                    "not a bound: use a duration (5s, 250ms), a percentage (99%) or a number",
                );
                return None;
            }
        }
    };
    Some(Threshold {
        metric: t.metric.clone(),
        quantile: t.quantile.clone(),
        stat,
        bound,
    })
}
