//! Turns the harness's measurement samples into kube-burner-compatible documents, writes them to
//! `results/<uuid>/` as the run goes, indexes them into Elasticsearch/OpenSearch, evaluates
//! thresholds, compares runs and renders the summary table and the HTML report.
//!
//! # How the harness uses it
//!
//! The harness maps these outcomes to its exit codes; this crate knows none of them.
//!
//! ```text
//! // --es-server given: connect first, so its credentials are redacted from the run's files.
//! let es = EsClient::new(EsOptions { credentials: Credentials::from_env(), deadline: es_timeout, ..EsOptions::new(url, index) })?; // Err: bad ES settings
//! let mut recorder = RunRecorder::start(results_root, run_description, es.redactor().clone())?;
//! recorder.record(&samples)?;                        // after each iteration: documents on disk now
//! let results = recorder.finish(&RunEnd { end, elapsed, execution_errors, cut_short }, &thresholds)?;
//! println!("{}", results.summary);                  // results.passed == false: a threshold failed
//! let outcome = index_saved_results(&results.dir, &es).await?;   // Err(Es) or !outcome.is_complete(): not all indexed
//!
//! // vmbgp-bench index results/<uuid>: the directory is checked before anything is contacted
//! let documents = load_results_dir(dir)?;                          // Err: not a results directory
//! let outcome = es.upload(&documents).await?;                      // one --es-timeout deadline
//! // vmbgp-bench compare A B [--json] [--force]
//! let c = compare_runs(&RunSource::from_arg(a), &RunSource::from_arg(b), &default_tolerances(), es.as_ref(), force).await?;
//! // Err(Incomparable): different configurations; e.is_unavailable(): ES unreachable
//! print!("{}", c.to_table()); // or c.to_json(); c.has_regression(): a regression
//! ```
//!
//! Every value is a [`measured::Measured`]: observed, missing with a reason, or not applicable
//! with a reason. Documents never hold 0, -1 or NaN for an unobserved value: the number is
//! omitted and the reason is written under `missing` / `notApplicable`.
//!
//! Elasticsearch and OpenSearch are spoken to with plain `reqwest` and hand-built `_bulk`
//! NDJSON; [`es`] says why (the `elasticsearch` crate is a perpetual alpha with no OpenSearch
//! promise, the `opensearch` crate brings a second TLS provider, and `_bulk` is identical on both).

pub mod compare;
pub mod document;
pub mod document_builder;
pub mod es;
pub mod local;
mod plots;
pub mod quantiles;
pub mod recorder;
pub mod redact;
pub mod report;
pub mod samples;
#[cfg(feature = "test-server")]
pub mod test_server;
pub mod thresholds;
pub mod units;

pub use hdrhistogram;
/// The shared measured-value vocabulary, at the path the reporters have always offered it.
pub use vmbgp_model::measured;
