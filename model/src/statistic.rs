//! The statistics of a quantile document: one name each, as the document field, the profile's
//! `stat` key and every serialized form spell it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

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
    /// Every statistic, in the order documents and messages list them.
    pub const ALL: [Statistic; 9] = [
        Statistic::P99,
        Statistic::P95,
        Statistic::P90,
        Statistic::P50,
        Statistic::Min,
        Statistic::Max,
        Statistic::Avg,
        Statistic::Count,
        Statistic::MissingCount,
    ];

    /// The quantile document's field (and the profile's spelling).
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
    pub fn is_count(&self) -> bool {
        matches!(self, Statistic::Count | Statistic::MissingCount)
    }

    /// "P99, P95, …, count or missingCount": what a profile may write.
    pub fn choices() -> String {
        let names: Vec<&str> = Statistic::ALL.iter().map(Statistic::field_name).collect();
        match names.split_last() {
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
            None => String::new(),
        }
    }
}

impl fmt::Display for Statistic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.field_name())
    }
}

/// A text that names no statistic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown statistic `{value}`: use {}", Statistic::choices())]
pub struct UnknownStatistic {
    pub value: String,
}

impl FromStr for Statistic {
    type Err = UnknownStatistic;

    /// Exactly the field names, case-sensitive, as documents and profiles spell them.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Statistic::ALL
            .into_iter()
            .find(|s| s.field_name() == text)
            .ok_or_else(|| UnknownStatistic {
                value: text.to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_back_to_its_statistic_and_serializes_as_itself() {
        for statistic in Statistic::ALL {
            let name = statistic.field_name();
            assert_eq!(name.parse::<Statistic>(), Ok(statistic));
            assert_eq!(statistic.to_string(), name);
            assert_eq!(
                serde_json::to_value(statistic).expect("json"),
                serde_json::Value::from(name)
            );
            assert_eq!(
                serde_json::from_value::<Statistic>(name.into()).expect("reads back"),
                statistic
            );
        }
    }

    #[test]
    fn a_bad_name_is_refused_with_the_value_and_the_choices() {
        for bad in ["p99", "Min", "", "P99 ", "median"] {
            let err = bad.parse::<Statistic>().expect_err(bad);
            assert_eq!(err.value, bad);
            assert_eq!(
                err.to_string(),
                format!(
                    "unknown statistic `{bad}`: use P99, P95, P90, P50, min, max, avg, count or missingCount"
                )
            );
        }
    }

    #[test]
    fn only_the_counts_are_counts() {
        let counts: Vec<Statistic> = Statistic::ALL
            .into_iter()
            .filter(Statistic::is_count)
            .collect();
        assert_eq!(counts, [Statistic::Count, Statistic::MissingCount]);
    }
}
