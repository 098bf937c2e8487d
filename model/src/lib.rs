//! The words every vmbgp crate shares, spelled once: a measured value ([`Measured`], with
//! [`Timing`]), the statistics and thresholds of quantile documents ([`Statistic`],
//! [`Threshold`]), and the quantile table ([`quantiles`]) the reporters name their documents from
//! and profiles are checked against, the facts of a Kubernetes kind ([`KindInfo`]), and label selectors ([`LabelSelector`]).

pub mod kinds;
pub mod measured;
pub mod quantiles;
pub mod selector;
pub mod statistic;
pub mod threshold;

pub use kinds::KindInfo;
pub use measured::{Measured, Timing, duration_millis, nanos_to_millis, round3};
pub use quantiles::{Presence, Quantile, QuantileMetric, Unit};
pub use selector::{LabelSelector, Labels, Requirement, SelectorError};
pub use statistic::{Statistic, UnknownStatistic};
pub use threshold::{Bound, Side, Threshold};
