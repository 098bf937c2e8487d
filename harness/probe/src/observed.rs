//! A measured value or the reason it could not be measured. Reports never use 0, -1 or another
//! sentinel for "not observed" (DESIGN §4.4); they use [`Observed::Missing`] with a reason.

use serde::Serialize;

/// A value that was observed, or why it was not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "status")]
pub enum Observed<T> {
    /// The value was observed.
    Value { value: T },
    /// The value was not observed; `reason` says why (e.g. "no echo reply to 500 probes").
    Missing { reason: String },
}

impl<T> Observed<T> {
    pub fn value(v: T) -> Self {
        Observed::Value { value: v }
    }

    pub fn missing(reason: impl Into<String>) -> Self {
        Observed::Missing {
            reason: reason.into(),
        }
    }

    /// The value, when observed.
    pub fn get(&self) -> Option<&T> {
        match self {
            Observed::Value { value } => Some(value),
            Observed::Missing { .. } => None,
        }
    }

    /// The reason, when missing.
    pub fn missing_reason(&self) -> Option<&str> {
        match self {
            Observed::Value { .. } => None,
            Observed::Missing { reason } => Some(reason),
        }
    }

    pub fn is_observed(&self) -> bool {
        matches!(self, Observed::Value { .. })
    }
}

/// Serde helpers: instants as nanoseconds since the run anchor, durations as nanoseconds.
pub(crate) mod ser {
    use std::time::Duration;

    use serde::Serializer;
    use vmbgp_host::clock::MonoStamp;

    pub(crate) fn stamp<S: Serializer>(at: &MonoStamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(nanos(at.since_anchor()))
    }

    pub(crate) fn opt_stamp<S: Serializer>(
        at: &Option<MonoStamp>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match at {
            Some(at) => s.serialize_some(&nanos(at.since_anchor())),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(nanos(*d))
    }

    /// An observed duration as nanoseconds (`{"status": "value", "value": <ns>}`).
    pub(crate) fn observed_duration<S: Serializer>(
        d: &super::Observed<Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        use serde::Serialize;
        match d {
            super::Observed::Value { value } => super::Observed::value(nanos(*value)).serialize(s),
            super::Observed::Missing { reason } => {
                super::Observed::<u64>::missing(reason.clone()).serialize(s)
            }
        }
    }

    fn nanos(d: Duration) -> u64 {
        u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_serializes_with_its_reason_and_no_value() {
        let m: Observed<u64> = Observed::missing("never replied");
        assert_eq!(
            serde_json::to_value(&m).expect("json"),
            serde_json::json!({"status": "missing", "reason": "never replied"})
        );
        assert_eq!(m.get(), None);
        assert_eq!(m.missing_reason(), Some("never replied"));
        let v = Observed::value(3u64);
        assert_eq!(
            serde_json::to_value(&v).expect("json"),
            serde_json::json!({"status": "value", "value": 3})
        );
        assert!(v.is_observed());
    }
}
