//! Turns the harness's measurement samples into kube-burner-compatible documents, writes them to
//! `results/<uuid>/` as the run goes, indexes them into Elasticsearch/OpenSearch, evaluates
//! thresholds, compares runs and renders the summary table and the HTML report.

pub mod builder;
pub mod compare;
pub mod document;
pub mod es;
pub mod input;
pub mod local;
pub mod measured;
mod plots;
pub mod quantiles;
pub mod redact;
pub mod report;
pub mod run;
pub mod thresholds;

pub use hdrhistogram;
