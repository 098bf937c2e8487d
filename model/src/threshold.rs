//! A checked threshold: one statistic of one quantile document, bounded above or below. The plan
//! holds it (and writes it into `jobSummary.jobConfig`), the reporters evaluate it.

use std::fmt;
use std::time::Duration;

use serde::{Serialize, Serializer};

use crate::quantiles::QUANTILES_SUFFIX;
use crate::statistic::Statistic;

/// One threshold, e.g. `routeConvergence/AdvertiseFib P99 ≤ 5s`. Serialized as plans write it:
/// `{"metric", "quantile", "stat", "bound": {"max_duration": "5s"}}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Threshold {
    /// Measurement name without the `Measurement` suffix, e.g. `routeConvergence`.
    pub metric: String,
    /// The `quantileName` of the quantile document, e.g. `AdvertiseFib`.
    pub quantile: String,
    pub stat: Statistic,
    pub bound: Bound,
}

impl Threshold {
    /// The `metricName` of the quantile documents it bounds.
    pub fn metric_name(&self) -> String {
        format!("{}{QUANTILES_SUFFIX}", self.metric)
    }
}

impl fmt::Display for Threshold {
    /// `routeConvergenceQuantilesMeasurement/AdvertiseFib P99 <= 5000`: the limit in the
    /// document's unit, as `executionErrors` has always written it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.bound.side() {
            Side::AtMost => "<=",
            Side::AtLeast => ">=",
        };
        write!(
            f,
            "{}/{} {} {op} {}",
            self.metric_name(),
            self.quantile,
            self.stat,
            self.bound.limit()
        )
    }
}

/// Which side of the limit passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    AtMost,
    AtLeast,
}

/// The bound of a threshold, with the unit the profile wrote it in.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Bound {
    MaxDuration(#[serde(serialize_with = "humantime_text")] Duration),
    MinDuration(#[serde(serialize_with = "humantime_text")] Duration),
    MaxPercent(f64),
    MinPercent(f64),
    MaxNumber(f64),
    MinNumber(f64),
}

impl Bound {
    pub fn side(&self) -> Side {
        match self {
            Bound::MaxDuration(_) | Bound::MaxPercent(_) | Bound::MaxNumber(_) => Side::AtMost,
            Bound::MinDuration(_) | Bound::MinPercent(_) | Bound::MinNumber(_) => Side::AtLeast,
        }
    }

    /// The limit in the quantile document's unit: milliseconds for durations, percent and plain
    /// numbers as written.
    pub fn limit(&self) -> f64 {
        match *self {
            Bound::MaxDuration(d) | Bound::MinDuration(d) => d.as_secs_f64() * 1000.0,
            Bound::MaxPercent(v)
            | Bound::MinPercent(v)
            | Bound::MaxNumber(v)
            | Bound::MinNumber(v) => v,
        }
    }

    /// Whether a statistic's value (in the document's unit) passes.
    pub fn allows(&self, value: f64) -> bool {
        match self.side() {
            Side::AtMost => value <= self.limit(),
            Side::AtLeast => value >= self.limit(),
        }
    }
}

/// Durations as humantime text (`5s`, `250ms`), as plan dumps write every duration.
fn humantime_text<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn threshold(stat: Statistic, bound: Bound) -> Threshold {
        Threshold {
            metric: "routeConvergence".to_owned(),
            quantile: "AdvertiseFib".to_owned(),
            stat,
            bound,
        }
    }

    #[test]
    fn thresholds_serialize_in_the_plan_shape() {
        let json = serde_json::to_value(vec![
            threshold(Statistic::P99, Bound::MaxDuration(Duration::from_secs(5))),
            threshold(Statistic::Min, Bound::MinPercent(99.0)),
            threshold(Statistic::MissingCount, Bound::MaxNumber(0.0)),
        ])
        .expect("json");
        assert_eq!(
            json,
            serde_json::json!([
                {"metric": "routeConvergence", "quantile": "AdvertiseFib", "stat": "P99", "bound": {"max_duration": "5s"}},
                {"metric": "routeConvergence", "quantile": "AdvertiseFib", "stat": "min", "bound": {"min_percent": 99.0}},
                {"metric": "routeConvergence", "quantile": "AdvertiseFib", "stat": "missingCount", "bound": {"max_number": 0.0}}
            ])
        );
    }

    #[test]
    fn limits_are_in_the_document_unit_and_displayed_as_execution_errors_name_them() {
        let t = threshold(
            Statistic::P99,
            Bound::MaxDuration(Duration::from_millis(250)),
        );
        assert_eq!(t.bound.limit(), 250.0);
        assert_eq!(
            t.to_string(),
            "routeConvergenceQuantilesMeasurement/AdvertiseFib P99 <= 250"
        );
        let t = threshold(Statistic::Min, Bound::MinPercent(99.5));
        assert_eq!(
            t.to_string(),
            "routeConvergenceQuantilesMeasurement/AdvertiseFib min >= 99.5"
        );
        assert_eq!(t.metric_name(), "routeConvergenceQuantilesMeasurement");
    }

    #[test]
    fn bounds_allow_their_side_including_the_limit() {
        let at_most = Bound::MaxNumber(2.0);
        assert!(at_most.allows(2.0) && at_most.allows(-1.0) && !at_most.allows(2.1));
        let at_least = Bound::MinDuration(Duration::from_secs(1));
        assert!(at_least.allows(1000.0) && !at_least.allows(999.9));
        assert_eq!(at_least.side(), Side::AtLeast);
    }
}
