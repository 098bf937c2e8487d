//! Evaluates thresholds on quantile documents and the run verdict they produce: `passed` and
//! `executionErrors` of `jobSummary`. The threshold itself is the shared [`Threshold`].

use std::time::Duration;

use serde::Serialize;

use crate::document::QuantileDocument;
pub use vmbgp_model::{Bound, Side, Statistic, Threshold};

/// The seed's defaults: route convergence P99 ≤ 5 s (network and, in host-routes mode, /32),
/// BGP session uptime ≥ 99 % on every peer, every VM reachable.
pub fn default_thresholds() -> Vec<Threshold> {
    let threshold = |metric: &str, quantile: &str, stat, bound| Threshold {
        metric: metric.to_owned(),
        quantile: quantile.to_owned(),
        stat,
        bound,
    };
    let five_seconds = Bound::MaxDuration(Duration::from_secs(5));
    vec![
        threshold(
            "routeConvergence",
            "AdvertiseFib",
            Statistic::P99,
            five_seconds,
        ),
        threshold(
            "routeConvergence",
            "HostRouteAdvertiseFib",
            Statistic::P99,
            five_seconds,
        ),
        threshold(
            "bgpSession",
            "UptimePercent",
            Statistic::Min,
            Bound::MinPercent(99.0),
        ),
        threshold(
            "vmReachability",
            "FirstReply",
            Statistic::MissingCount,
            Bound::MaxNumber(0.0),
        ),
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
    let metric_name = threshold.metric_name();
    let mut of_metric = quantiles
        .iter()
        .filter(|q| q.metric_name == metric_name)
        .peekable();
    if of_metric.peek().is_none() {
        return ThresholdVerdict::Skipped {
            reason: format!("the run has no {metric_name} documents"),
        };
    }
    let Some(doc) = of_metric.find(|q| q.quantile_name == threshold.quantile) else {
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
    let Some(value) = doc.statistic(threshold.stat) else {
        return ThresholdVerdict::Unobserved {
            reason: doc
                .missing
                .get(threshold.stat.field_name())
                .cloned()
                .unwrap_or_else(|| "no observed sample".to_owned()),
        };
    };
    let ok = threshold.bound.allows(value);
    let unit = if threshold.stat.is_count() {
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
    use crate::document;
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
                    metric: "routeConvergence".to_owned(),
                    quantile: "Typo".to_owned(),
                    stat: Statistic::P50,
                    bound: Bound::MaxNumber(1.0),
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
