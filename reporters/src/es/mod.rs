//! Elasticsearch / OpenSearch client: health check, index creation (no strict mapping), optional
//! index template, `_bulk` NDJSON indexing with deterministic ids, retries with backoff and jitter,
//! per-item retry, and a typed outcome listing what could not be indexed.
//!
//! Every operation (an upload with its index check, a health check, the searches of a `compare`)
//! runs under ONE deadline (`--es-timeout`, [`EsOptions::deadline`]): connection errors,
//! timeouts, 429 and 5xx are retried with backoff until it passes, each request's timeout is what
//! remains of it (at most [`EsOptions::request_timeout`]), and each failed attempt is logged. A
//! dead, refusing or hung server therefore costs at most the deadline, never minutes per request.
//!
//! Whether a document was "already present" is decided by the server, never by local records:
//! every document is sent as an `index` action with its deterministic id, and the item result
//! says `created` (new) or `updated` (the server had it). A saved run is a few MB at most (2 345
//! documents of a 72 × 10 run are one 2.7 MB `_bulk` request), so re-sending costs well under a
//! second, while trusting a local record told a fresh server at the same URL it already had
//! documents it had never seen.
//!
//! Why plain `reqwest` and hand-built `_bulk` NDJSON instead of a client crate
//! (`shared/reference/rust-deps.md` §4): the official `elasticsearch` crate has been an
//! "alpha, work in progress" since 2020 (every release `-alpha.1`), promises no compatibility
//! across major versions, never mentions OpenSearch, and sends `_bulk` as `application/json`;
//! the `opensearch` crate serves OpenSearch only and its `rustls-tls` feature brings a second
//! rustls crypto provider (aws-lc-rs) next to kube's ring. OpenShift perf CI indexes into
//! OpenSearch through the same `--es-server` flag as Elasticsearch users, and the `_bulk` NDJSON
//! format, `_cluster/health`, index creation and `_search` are the same on Elasticsearch 7/8/9 and
//! OpenSearch 1/2/3. reqwest 0.12 with `rustls-tls` (ring + webpki roots) keeps one TLS stack and
//! works without a system CA bundle.
//!
//! Credentials come from the URL (`https://user:pass@host:9200`, kube-burner's convention) or the
//! environment (`VMBGP_ES_USERNAME`/`VMBGP_ES_PASSWORD`, `VMBGP_ES_API_KEY`). They are taken out of
//! the URL at once, sent only as an `Authorization` header, and registered with the client's
//! `Redactor`, so no log line, error, file or document shows them.

mod budget;
mod bulk;
mod client;
mod error;
mod options;
mod results_dir;
mod search;

pub use budget::{Budget, GaveUp};
pub use bulk::{IndexFailure, IndexOutcome, parse_bulk_items};
pub use client::EsClient;
pub use error::{EsError, IndexError};
pub use options::{
    Credentials, DEFAULT_DEADLINE, DEFAULT_REQUEST_TIMEOUT, ENV_API_KEY, ENV_PASSWORD,
    ENV_USERNAME, EsOptions, RetryPolicy, TEMPLATE_NAME,
};
pub use results_dir::{index_saved_results, load_results_dir};
