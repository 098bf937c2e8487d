//! How probe reports are written: instants as nanoseconds since the run anchor, durations as
//! nanoseconds, and measured values in the probe reports' own status form.
//!
//! Probe reports have written a [`Measured`] value as `{"status": "value", "value": ..}` or
//! `{"status": "missing", "reason": ..}` since before the shared type existed; the adapter here
//! keeps that form (the golden `tests/golden/target_report.json` pins it) while the reporters'
//! documents write measured values their own way.

use std::time::Duration;

use serde::{Serialize, Serializer};
use vmbgp_host::clock::MonoStamp;
use vmbgp_model::Measured;

/// A measured value in the probe reports' form.
#[derive(Serialize)]
#[serde(rename_all = "camelCase", tag = "status")]
enum StatusForm<'a, T> {
    Value { value: &'a T },
    Missing { reason: &'a str },
    NotApplicable { reason: &'a str },
}

impl<'a, T> From<&'a Measured<T>> for StatusForm<'a, T> {
    fn from(measured: &'a Measured<T>) -> Self {
        match measured {
            Measured::Observed(value) => StatusForm::Value { value },
            Measured::Missing { reason } => StatusForm::Missing { reason },
            Measured::NotApplicable { reason } => StatusForm::NotApplicable { reason },
        }
    }
}

/// `#[serde(serialize_with)]` for a [`Measured`] field of a probe report.
pub(crate) fn status_form<T: Serialize, S: Serializer>(
    measured: &Measured<T>,
    s: S,
) -> Result<S::Ok, S::Error> {
    StatusForm::from(measured).serialize(s)
}

/// A measured duration in the status form, as nanoseconds (`{"status": "value", "value": <ns>}`).
pub(crate) fn observed_duration<S: Serializer>(
    d: &Measured<Duration>,
    s: S,
) -> Result<S::Ok, S::Error> {
    status_form(&d.clone().map(nanos), s)
}

pub(crate) fn stamp<S: Serializer>(at: &MonoStamp, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(nanos(at.since_anchor()))
}

pub(crate) fn opt_stamp<S: Serializer>(at: &Option<MonoStamp>, s: S) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => s.serialize_some(&nanos(at.since_anchor())),
        None => s.serialize_none(),
    }
}

pub(crate) fn duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(nanos(*d))
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Report {
        #[serde(serialize_with = "status_form")]
        count: Measured<u64>,
        #[serde(serialize_with = "observed_duration")]
        gap: Measured<Duration>,
    }

    #[test]
    fn measured_values_are_written_in_the_status_form() {
        let observed = Report {
            count: Measured::Observed(3),
            gap: Measured::Observed(Duration::from_millis(2)),
        };
        assert_eq!(
            serde_json::to_value(&observed).expect("json"),
            serde_json::json!({
                "count": {"status": "value", "value": 3},
                "gap": {"status": "value", "value": 2_000_000}
            })
        );
        let unobserved = Report {
            count: Measured::missing("never replied"),
            gap: Measured::not_applicable("one reply only"),
        };
        assert_eq!(
            serde_json::to_value(&unobserved).expect("json"),
            serde_json::json!({
                "count": {"status": "missing", "reason": "never replied"},
                "gap": {"status": "notApplicable", "reason": "one reply only"}
            })
        );
    }
}
