//! The one value type every measurement uses: observed, missing with a reason, or not applicable,
//! plus `Timing`, a harness-clock duration that carries its resolution, and the millisecond
//! rounding every document uses.
//!
//! A value that was not observed is never written as 0, -1 or NaN (DESIGN §4.4): documents omit
//! the number and record the reason instead (the reporters' `MeasuredFields`), probe reports write
//! `{"status": "missing", "reason": ..}`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A measured value, or why there is none.
///
/// `Missing` means the harness tried to observe the value and could not (timeout, watch lost,
/// probe never answered). `NotApplicable` means the value does not exist in this run's setup
/// (e.g. a per-VM /32 route in `subnet` mode); the two are reported differently because a missing
/// value can fail a threshold while a not-applicable one cannot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", content = "value", rename_all = "camelCase")]
pub enum Measured<T> {
    Observed(T),
    Missing { reason: String },
    NotApplicable { reason: String },
}

impl<T> Measured<T> {
    pub fn missing(reason: impl Into<String>) -> Self {
        Measured::Missing {
            reason: reason.into(),
        }
    }

    pub fn not_applicable(reason: impl Into<String>) -> Self {
        Measured::NotApplicable {
            reason: reason.into(),
        }
    }

    pub fn observed(&self) -> Option<&T> {
        match self {
            Measured::Observed(value) => Some(value),
            _ => None,
        }
    }

    pub fn is_observed(&self) -> bool {
        matches!(self, Measured::Observed(_))
    }

    /// The reason, when the value is missing (not when it is not applicable).
    pub fn missing_reason(&self) -> Option<&str> {
        match self {
            Measured::Missing { reason } => Some(reason),
            _ => None,
        }
    }

    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Measured<U> {
        match self {
            Measured::Observed(value) => Measured::Observed(f(value)),
            Measured::Missing { reason } => Measured::Missing { reason },
            Measured::NotApplicable { reason } => Measured::NotApplicable { reason },
        }
    }

    pub fn as_ref(&self) -> Measured<&T> {
        match self {
            Measured::Observed(value) => Measured::Observed(value),
            Measured::Missing { reason } => Measured::Missing {
                reason: reason.clone(),
            },
            Measured::NotApplicable { reason } => Measured::NotApplicable {
                reason: reason.clone(),
            },
        }
    }
}

/// A duration measured on the harness's monotonic clock (or, for the separately labelled
/// server-timestamp fields, a difference of two API-server timestamps), with the resolution of
/// the method that produced it. Signed because server-timestamp differences can be negative
/// (1 s truncation on both ends); harness-clock durations never are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timing {
    nanos: i64,
    resolution_nanos: u64,
}

impl Timing {
    /// A harness-clock duration (a difference of two `Instant`s) and the resolution of the
    /// event source that ended it (e.g. 1 µs for a BMP arrival stamp, the poll interval for a
    /// polled value). Durations beyond i64 nanoseconds (292 years) saturate.
    pub fn new(duration: Duration, resolution: Duration) -> Self {
        Timing {
            nanos: i64::try_from(duration.as_nanos()).unwrap_or(i64::MAX),
            resolution_nanos: u64::try_from(resolution.as_nanos()).unwrap_or(u64::MAX),
        }
    }

    /// A signed difference in nanoseconds, e.g. of two server timestamps with 1 s resolution.
    pub fn from_signed_nanos(nanos: i64, resolution: Duration) -> Self {
        Timing {
            nanos,
            resolution_nanos: u64::try_from(resolution.as_nanos()).unwrap_or(u64::MAX),
        }
    }

    pub fn nanos(&self) -> i64 {
        self.nanos
    }

    pub fn resolution(&self) -> Duration {
        Duration::from_nanos(self.resolution_nanos)
    }

    /// Milliseconds with microsecond precision, the unit of every document.
    pub fn millis(&self) -> f64 {
        nanos_to_millis(self.nanos as f64)
    }

    pub fn resolution_millis(&self) -> f64 {
        nanos_to_millis(self.resolution_nanos as f64)
    }
}

/// Nanoseconds → milliseconds rounded to 3 decimals (microsecond precision).
pub fn nanos_to_millis(nanos: f64) -> f64 {
    round3((nanos / 1000.0).round() / 1000.0)
}

/// Duration → milliseconds with microsecond precision.
pub fn duration_millis(duration: Duration) -> f64 {
    nanos_to_millis(duration.as_nanos() as f64)
}

/// Rounds to 3 decimals; also removes the binary noise of a prior division so that documents
/// show `9.5`, not `9.500000000000002`.
pub fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timing_is_written_in_millis_with_microsecond_precision() {
        let timing = Timing::new(
            Duration::from_nanos(16_412_345_678),
            Duration::from_micros(1),
        );
        assert_eq!(timing.millis(), 16_412.346);
        assert_eq!(timing.resolution_millis(), 0.001);
        let negative = Timing::from_signed_nanos(-1_000_000_000, Duration::from_secs(1));
        assert_eq!(negative.millis(), -1000.0);
        assert_eq!(negative.resolution_millis(), 1000.0);
    }

    #[test]
    fn measured_map_keeps_reasons() {
        let missing: Measured<u32> = Measured::missing("watch lost");
        assert_eq!(missing.map(|v| v + 1), Measured::missing("watch lost"));
        let na: Measured<u32> = Measured::not_applicable("subnet mode");
        assert!(!na.is_observed());
        assert_eq!(Measured::Observed(2).map(|v| v * 2).observed(), Some(&4));
    }

    #[test]
    fn only_a_missing_value_has_a_missing_reason() {
        assert_eq!(
            Measured::<u8>::missing("never replied").missing_reason(),
            Some("never replied")
        );
        assert_eq!(
            Measured::<u8>::not_applicable("subnet").missing_reason(),
            None
        );
        assert_eq!(Measured::Observed(1u8).missing_reason(), None);
    }

    #[test]
    fn measured_serializes_with_state_and_value() {
        assert_eq!(
            serde_json::to_value(Measured::Observed(3u8)).expect("json"),
            serde_json::json!({"state": "observed", "value": 3})
        );
        assert_eq!(
            serde_json::to_value(Measured::<u8>::not_applicable("subnet")).expect("json"),
            serde_json::json!({"state": "notApplicable", "value": {"reason": "subnet"}})
        );
    }
}
