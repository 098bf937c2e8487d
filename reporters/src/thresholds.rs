//! Pass/fail thresholds on quantile documents (profile: metric, quantile, statistic, bound) and
//! the run verdict they produce: `passed` and `executionErrors` of `jobSummary`.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::document::{self, QuantileDocument};

/// A statistic of a quantile document, named as its field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Statistic {
    P99,
    P95,
    P90,
    P50,
    #[serde(rename = "min")]
    Min,
    #[serde(rename = "max")]
    Max,
    #[serde(rename = "avg")]
    Avg,
    /// Observed samples.
    #[serde(rename = "count")]
    Count,
    /// Samples that could not be observed (e.g. VMs that never answered).
    #[serde(rename = "missingCount")]
    MissingCount,
}

impl Statistic {
    pub fn field_name(&self) -> &'static str {
        match self {
            Statistic::P99 => "P99",
            Statistic::P95 => "P95",
            Statistic::P90 => "P90",
            Statistic::P50 => "P50",
            Statistic::Min => "min",
            Statistic::Max => "max",
            Statistic::Avg => "avg",
            Statistic::Count => "count",
            Statistic::MissingCount => "missingCount",
        }
    }

    /// Counts are plain numbers whatever the quantile's unit.
    fn is_count(&self) -> bool {
        matches!(self, Statistic::Count | Statistic::MissingCount)
    }
}

impl fmt::Display for Statistic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.field_name())
    }
}

/// The allowed side of a threshold, in the quantile's unit (ms for latencies).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Bound {
    AtMost(f64),
    AtLeast(f64),
}

/// One threshold as results carry it (the harness converts the profile's), e.g.
/// `{metricName: routeConvergenceQuantilesMeasurement, quantileName: AdvertiseFib, statistic: P99, atMost: 5000}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Threshold {
    pub metric_name: String,
    pub quantile_name: String,
    pub statistic: Statistic,
    #[serde(flatten)]
    pub bound: Bound,
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (op, value) = match self.bound {
            Bound::AtMost(v) => ("<=", v),
            Bound::AtLeast(v) => (">=", v),
        };
        write!(
            f,
            "{}/{} {} {op} {value}",
            self.metric_name, self.quantile_name, self.statistic
        )
    }
}

/// The seed's defaults: route convergence P99 ≤ 5 s (network and, in host-routes mode, /32),
/// BGP session uptime ≥ 99 % on every peer, every VM reachable.
pub fn default_thresholds() -> Vec<Threshold> {
    let route = |quantile: &str| Threshold {
        metric_name: document::ROUTE_CONVERGENCE_QUANTILES.to_owned(),
        quantile_name: quantile.to_owned(),
        statistic: Statistic::P99,
        bound: Bound::AtMost(5000.0),
    };
    vec![
        route("AdvertiseFib"),
        route("HostRouteAdvertiseFib"),
        Threshold {
            metric_name: document::BGP_SESSION_QUANTILES.to_owned(),
            quantile_name: "UptimePercent".to_owned(),
            statistic: Statistic::Min,
            bound: Bound::AtLeast(99.0),
        },
        Threshold {
            metric_name: document::VM_REACHABILITY_QUANTILES.to_owned(),
            quantile_name: "FirstReply".to_owned(),
            statistic: Statistic::MissingCount,
            bound: Bound::AtMost(0.0),
        },
    ]
}

/// What one threshold found.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "verdict", rename_all = "camelCase")]
pub enum ThresholdVerdict {
    Passed {
        value: f64,
        unit: String,
    },
    Violated {
        value: f64,
        unit: String,
    },
    /// The statistic could not be computed (no observed sample): a violation.
    Unobserved {
        reason: String,
    },
    /// Every sample was not applicable in this run's setup (e.g. /32 routes in subnet mode).
    NotApplicable {
        reason: String,
    },
    /// The run has no documents of this metric at all: the measurement was not part of it.
    Skipped {
        reason: String,
    },
    /// The metric exists but this quantile does not: a profile mistake, reported as violation.
    UnknownQuantile,
}

impl ThresholdVerdict {
    pub fn fails_run(&self) -> bool {
        matches!(
            self,
            ThresholdVerdict::Violated { .. }
                | ThresholdVerdict::Unobserved { .. }
                | ThresholdVerdict::UnknownQuantile
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThresholdResult {
    pub threshold: Threshold,
    #[serde(flatten)]
    pub verdict: ThresholdVerdict,
}

impl ThresholdResult {
    /// The line written into `executionErrors` for a failing threshold.
    pub fn message(&self) -> String {
        let with_unit = |value: &f64, unit: &str| {
            if unit == "count" {
                format!("{value}")
            } else {
                format!("{value} {unit}")
            }
        };
        match &self.verdict {
            ThresholdVerdict::Passed { value, unit } => {
                format!("{} passed: {}", self.threshold, with_unit(value, unit))
            }
            ThresholdVerdict::Violated { value, unit } => format!(
                "threshold violated: {} but was {}",
                self.threshold,
                with_unit(value, unit)
            ),
            ThresholdVerdict::Unobserved { reason } => {
                format!(
                    "threshold violated: {} not observed: {reason}",
                    self.threshold
                )
            }
            ThresholdVerdict::NotApplicable { reason } => {
                format!("{} not applicable: {reason}", self.threshold)
            }
            ThresholdVerdict::Skipped { reason } => {
                format!("{} skipped: {reason}", self.threshold)
            }
            ThresholdVerdict::UnknownQuantile => format!(
                "threshold violated: {} names a quantile the run does not have",
                self.threshold
            ),
        }
    }
}

/// All thresholds of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThresholdReport {
    pub results: Vec<ThresholdResult>,
}

impl ThresholdReport {
    pub fn passed(&self) -> bool {
        !self.results.iter().any(|r| r.verdict.fails_run())
    }

    /// One message per failing threshold, for `jobSummary.executionErrors`.
    pub fn execution_errors(&self) -> Vec<String> {
        self.results
            .iter()
            .filter(|r| r.verdict.fails_run())
            .map(ThresholdResult::message)
            .collect()
    }
}

/// Every threshold skipped with one reason: a run cut short (signal, global timeout) has partial
/// quantiles, which neither pass nor fail a threshold.
pub fn skip_thresholds(thresholds: &[Threshold], why: &str) -> ThresholdReport {
    let results = thresholds
        .iter()
        .map(|threshold| ThresholdResult {
            threshold: threshold.clone(),
            verdict: ThresholdVerdict::Skipped {
                reason: format!("{why}: the run did not finish measuring"),
            },
        })
        .collect();
    ThresholdReport { results }
}

/// Checks every threshold against the run's quantile documents.
pub fn evaluate_thresholds(
    thresholds: &[Threshold],
    quantiles: &[QuantileDocument],
) -> ThresholdReport {
    let results = thresholds
        .iter()
        .map(|threshold| ThresholdResult {
            threshold: threshold.clone(),
            verdict: evaluate_one(threshold, quantiles),
        })
        .collect();
    ThresholdReport { results }
}

fn evaluate_one(threshold: &Threshold, quantiles: &[QuantileDocument]) -> ThresholdVerdict {
    let mut of_metric = quantiles
        .iter()
        .filter(|q| q.metric_name == threshold.metric_name)
        .peekable();
    if of_metric.peek().is_none() {
        return ThresholdVerdict::Skipped {
            reason: format!("the run has no {} documents", threshold.metric_name),
        };
    }
    let Some(doc) = of_metric.find(|q| q.quantile_name == threshold.quantile_name) else {
        return ThresholdVerdict::UnknownQuantile;
    };
    if doc.is_not_applicable() {
        return ThresholdVerdict::NotApplicable {
            reason: doc
                .not_applicable
                .values()
                .next()
                .cloned()
                .unwrap_or_default(),
        };
    }
    let Some(value) = doc.statistic(threshold.statistic) else {
        return ThresholdVerdict::Unobserved {
            reason: doc
                .missing
                .get(threshold.statistic.field_name())
                .cloned()
                .unwrap_or_else(|| "no observed sample".to_owned()),
        };
    };
    let ok = match threshold.bound {
        Bound::AtMost(limit) => value <= limit,
        Bound::AtLeast(limit) => value >= limit,
    };
    let unit = if threshold.statistic.is_count() {
        "count".to_owned()
    } else {
        doc.unit.clone()
    };
    if ok {
        ThresholdVerdict::Passed { value, unit }
    } else {
        ThresholdVerdict::Violated { value, unit }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn quantile(metric: &str, name: &str, p99: Option<f64>, missing: u64) -> QuantileDocument {
        QuantileDocument {
            quantile_name: name.to_owned(),
            uuid: "u".to_owned(),
            p99,
            p95: p99,
            p90: None,
            p50: p99,
            min: p99,
            max: p99,
            avg: p99,
            timestamp: "2026-01-01T00:00:00Z".to_owned(),
            metric_name: metric.to_owned(),
            job_name: "j".to_owned(),
            metadata: serde_json::Value::Null,
            count: u64::from(p99.is_some()),
            missing_count: missing,
            not_applicable_count: 0,
            unit: "ms".to_owned(),
            method: "kube-burner".to_owned(),
            resolution: None,
            missing_reasons: BTreeMap::new(),
            not_applicable_reasons: BTreeMap::new(),
            missing: BTreeMap::new(),
            not_applicable: BTreeMap::new(),
            histogram: Vec::new(),
        }
    }

    #[test]
    fn thresholds_are_written_in_their_document_shape_and_read_back() {
        // The reporters' shape (metricName/quantileName/statistic/atMost|atLeast), as results
        // carry it; profiles use another (metric/quantile/stat/max|min), converted and tested in
        // the harness (`results::tests::profile_thresholds_become_millisecond_and_percent_bounds`).
        let thresholds = default_thresholds();
        let json = serde_json::to_value(&thresholds).expect("serializes");
        let first = &json[0];
        assert_eq!(
            first["metricName"],
            document::ROUTE_CONVERGENCE_QUANTILES,
            "{json}"
        );
        assert_eq!(first["quantileName"], "AdvertiseFib");
        assert_eq!(first["statistic"], "P99");
        assert_eq!(first["atMost"], 5000.0);
        assert!(first.get("atLeast").is_none(), "{json}");
        let read: Vec<Threshold> = serde_json::from_value(json).expect("reads back");
        assert_eq!(read, thresholds);
    }

    #[test]
    fn default_thresholds_pass_fail_and_skip() {
        let route = document::ROUTE_CONVERGENCE_QUANTILES;
        let mut na = quantile(route, "HostRouteAdvertiseFib", None, 0);
        na.not_applicable
            .insert("P99".to_owned(), "subnet mode".to_owned());
        let docs = vec![
            quantile(route, "AdvertiseFib", Some(5200.0), 0),
            na,
            quantile(
                document::VM_REACHABILITY_QUANTILES,
                "FirstReply",
                Some(800.0),
                2,
            ),
        ];
        let report = evaluate_thresholds(&default_thresholds(), &docs);
        let verdicts: Vec<_> = report.results.iter().map(|r| r.verdict.clone()).collect();
        assert_eq!(
            verdicts[0],
            ThresholdVerdict::Violated {
                value: 5200.0,
                unit: "ms".to_owned()
            }
        );
        assert!(matches!(
            verdicts[1],
            ThresholdVerdict::NotApplicable { .. }
        ));
        assert!(matches!(verdicts[2], ThresholdVerdict::Skipped { .. }));
        assert_eq!(
            verdicts[3],
            ThresholdVerdict::Violated {
                value: 2.0,
                unit: "count".to_owned()
            }
        );
        assert!(!report.passed());
        assert_eq!(
            report.execution_errors(),
            vec![
                "threshold violated: routeConvergenceQuantilesMeasurement/AdvertiseFib P99 <= 5000 but was 5200 ms",
                "threshold violated: vmReachabilityQuantilesMeasurement/FirstReply missingCount <= 0 but was 2",
            ]
        );
    }

    #[test]
    fn unobserved_and_unknown_quantiles_fail() {
        let route = document::ROUTE_CONVERGENCE_QUANTILES;
        let mut empty = quantile(route, "AdvertiseFib", None, 3);
        empty
            .missing
            .insert("P99".to_owned(), "route never seen".to_owned());
        let report = evaluate_thresholds(
            &[
                default_thresholds()[0].clone(),
                Threshold {
                    metric_name: route.to_owned(),
                    quantile_name: "Typo".to_owned(),
                    statistic: Statistic::P50,
                    bound: Bound::AtMost(1.0),
                },
            ],
            &[empty],
        );
        assert_eq!(
            report.results[0].verdict,
            ThresholdVerdict::Unobserved {
                reason: "route never seen".to_owned()
            }
        );
        assert_eq!(report.results[1].verdict, ThresholdVerdict::UnknownQuantile);
        assert!(!report.passed());
        let ok = evaluate_thresholds(
            &default_thresholds()[..1],
            &[quantile(route, "AdvertiseFib", Some(10.0), 0)],
        );
        assert!(ok.passed());
        assert!(ok.execution_errors().is_empty());
    }
}
