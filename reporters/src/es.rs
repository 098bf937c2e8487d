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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rand::Rng;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tracing::{debug, info, warn};
use url::Url;

use crate::document::{self, Document};
use crate::local::{LocalError, load_documents};
use crate::redact::{Redactor, Secret};

pub const ENV_USERNAME: &str = "VMBGP_ES_USERNAME";
pub const ENV_PASSWORD: &str = "VMBGP_ES_PASSWORD";
pub const ENV_API_KEY: &str = "VMBGP_ES_API_KEY";

/// Name of the composable index template installed from `ci/elasticsearch/`.
pub const TEMPLATE_NAME: &str = "vmbgp-bench";

/// How the client authenticates.
#[derive(Debug, Clone, PartialEq)]
pub enum Credentials {
    Basic {
        username: String,
        password: Secret,
    },
    /// Elasticsearch API key (the base64 `id:key` form), sent as `Authorization: ApiKey …`.
    ApiKey(Secret),
}

impl Credentials {
    /// Credentials from `VMBGP_ES_API_KEY`, or `VMBGP_ES_USERNAME` + `VMBGP_ES_PASSWORD`.
    pub fn from_env() -> Option<Credentials> {
        let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
        if let Some(key) = var(ENV_API_KEY) {
            return Some(Credentials::ApiKey(Secret::new(key)));
        }
        Some(Credentials::Basic {
            username: var(ENV_USERNAME)?,
            password: Secret::new(var(ENV_PASSWORD).unwrap_or_default()),
        })
    }
}

/// Default of the overall deadline (`--es-timeout`): long enough to ride out an Elasticsearch
/// restart or a short network outage, short enough that CI learns of a dead server in minutes.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(180);

/// Default cap on one request's timeout; each request gets what remains of the deadline, at most
/// this, so a hung server costs one cap per attempt and never more than the deadline in all.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// How requests are retried: connection errors, timeouts, 429 and 5xx answers (and 429/5xx bulk
/// items) are tried again with growing, jittered delays until the operation's deadline
/// ([`EsOptions::deadline`]) passes, or `max_attempts` tries of one request were made.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts of one request including the first; the deadline usually ends retrying first.
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: u32::MAX,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// "Equal jitter": half the exponential delay plus a random part of the other half, so
    /// concurrent writers spread out while every retry still waits at least half the delay.
    fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exponential = self
            .initial_backoff
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
            .min(self.max_backoff);
        let half = exponential / 2;
        let jitter = rand::rng().random_range(0..=half.as_nanos().min(u64::MAX as u128) as u64);
        let delay = half + Duration::from_nanos(jitter);
        match retry_after {
            Some(asked) => delay.max(asked.min(self.max_backoff)),
            None => delay,
        }
    }
}

/// Everything needed to talk to one Elasticsearch/OpenSearch endpoint.
#[derive(Debug, Clone)]
pub struct EsOptions {
    /// `--es-server`; may carry `user:password@`.
    pub server: String,
    /// `--es-index`, e.g. `ripsaw-kube-burner-vm-bgp` (lowercased, as kube-burner does).
    pub index: String,
    /// Overrides credentials in the URL (e.g. from `Credentials::from_env()`).
    pub credentials: Option<Credentials>,
    /// `--es-insecure-skip-verify`.
    pub insecure_skip_verify: bool,
    /// `--es-ca-file`: PEM bundle trusted in addition to the built-in roots.
    pub ca_file: Option<PathBuf>,
    /// Composable index template to install (`ci/elasticsearch/index-template.json`).
    pub index_template: Option<PathBuf>,
    /// Cap on one request's timeout (connect, send, answer and body); each request gets what
    /// remains of `deadline`, at most this.
    pub request_timeout: Duration,
    /// `--es-timeout`: one deadline for a whole operation (an upload with its index check, a
    /// health check, the searches of a `compare`), every request and retry included.
    pub deadline: Duration,
    pub retry: RetryPolicy,
    /// Bulk requests are split so each body stays below this size (kube-burner: 5 MB).
    pub max_bulk_bytes: usize,
}

impl EsOptions {
    pub fn new(server: impl Into<String>, index: impl Into<String>) -> Self {
        EsOptions {
            server: server.into(),
            index: index.into(),
            credentials: None,
            insecure_skip_verify: false,
            ca_file: None,
            index_template: None,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            deadline: DEFAULT_DEADLINE,
            retry: RetryPolicy::default(),
            max_bulk_bytes: 5_000_000,
        }
    }
}

/// Seconds as people read them: `0.8 s`, `2.0 s`, `180 s`.
fn seconds(value: f64) -> String {
    if value < 10.0 {
        format!("{value:.1} s")
    } else {
        format!("{value:.0} s")
    }
}

/// Why an operation stopped retrying: its deadline passed (or would have before the next
/// attempt), or one request used up its attempts.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GaveUp {
    /// What was being attempted, e.g. "checking index `ripsaw-kube-burner-vm-bgp`".
    pub what: String,
    /// Requests sent by the whole operation, retries included.
    pub attempts: u32,
    pub elapsed_seconds: f64,
    /// The operation's deadline (`--es-timeout`).
    pub deadline_seconds: f64,
    /// `true` when the deadline ended the retries, `false` when the attempt limit did.
    pub deadline_passed: bool,
    pub last_problem: String,
}

impl std::fmt::Display for GaveUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plural = if self.attempts == 1 { "" } else { "s" };
        if self.deadline_passed {
            // Retrying stops early when the next backoff would end past the deadline.
            let early = if self.elapsed_seconds + 0.05 < self.deadline_seconds {
                ", no time left for another attempt"
            } else {
                ""
            };
            write!(
                f,
                "{}: gave up after {} and {} attempt{plural} (--es-timeout {}{early}); last problem: {}",
                self.what,
                seconds(self.elapsed_seconds),
                self.attempts,
                seconds(self.deadline_seconds),
                self.last_problem
            )
        } else {
            write!(
                f,
                "{}: gave up after {} attempt{plural} in {}; last problem: {}",
                self.what,
                self.attempts,
                seconds(self.elapsed_seconds),
                self.last_problem
            )
        }
    }
}

/// The time and attempts one operation may still spend: created when it starts (an upload, a
/// health check, a `compare`'s searches) and shared by every request and retry in it.
#[derive(Debug, Clone)]
pub struct Budget {
    started: tokio::time::Instant,
    limit: Duration,
    attempts: u32,
    last_problem: Option<String>,
}

impl Budget {
    pub fn new(limit: Duration) -> Self {
        Budget {
            started: tokio::time::Instant::now(),
            limit,
            attempts: 0,
            last_problem: None,
        }
    }

    /// Requests sent so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn remaining(&self) -> Duration {
        self.limit.saturating_sub(self.elapsed())
    }

    /// The timeout of the next request, or `None` when the deadline has passed.
    fn request_timeout(&self, cap: Duration) -> Option<Duration> {
        let remaining = self.remaining();
        (!remaining.is_zero()).then(|| remaining.min(cap))
    }

    fn gave_up(&self, what: &str, deadline_passed: bool) -> GaveUp {
        GaveUp {
            what: what.to_owned(),
            attempts: self.attempts,
            elapsed_seconds: crate::measured::round3(self.elapsed().as_secs_f64()),
            deadline_seconds: crate::measured::round3(self.limit.as_secs_f64()),
            deadline_passed,
            last_problem: self
                .last_problem
                .clone()
                .unwrap_or_else(|| "no request could be sent in time".to_owned()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EsError {
    #[error("invalid Elasticsearch URL `{url}`: {problem}")]
    InvalidUrl { url: String, problem: String },
    #[error("invalid index name `{index}`: {problem}")]
    InvalidIndex { index: String, problem: String },
    #[error("reading CA file {path}")]
    ReadCaFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("CA file {path} holds no usable PEM certificate: {problem}")]
    InvalidCaFile { path: PathBuf, problem: String },
    #[error("building the HTTP client")]
    BuildClient(#[source] reqwest::Error),
    /// Connection errors, timeouts, 429 or 5xx until the deadline passed (or the attempts ran
    /// out): the server is down or unreachable, not refusing.
    #[error("{url} did not answer successfully: {gave_up}")]
    Unavailable { url: String, gave_up: GaveUp },
    #[error("health check of {url} failed: {problem}")]
    Health { url: String, problem: String },
    #[error("creating index `{index}` on {url} failed: {problem}")]
    CreateIndex {
        url: String,
        index: String,
        problem: String,
    },
    #[error("reading index template {path}")]
    ReadTemplate {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("index template {path} is not JSON")]
    ParseTemplate {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("installing index template on {url} failed: {problem}")]
    InstallTemplate { url: String, problem: String },
    #[error("searching run {uuid} on {url} failed: {problem}")]
    Search {
        url: String,
        uuid: String,
        problem: String,
    },
}

impl EsError {
    /// The server could not be reached or kept failing (connection errors, timeouts, 429, 5xx)
    /// until the deadline: an unavailable environment, not a refusal or bad input.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, EsError::Unavailable { .. })
    }
}

/// Why `index_saved_results` could not index a results directory.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// Not a results directory (missing, not a directory, no `jobSummary.json`): refused before
    /// anything is contacted.
    #[error("results directory {path} {problem}")]
    InvalidDir { path: PathBuf, problem: String },
    /// A document file that cannot be read or parsed; nothing is uploaded.
    #[error("{path} is not a usable results directory")]
    Local {
        path: PathBuf,
        #[source]
        source: LocalError,
    },
    /// The server was unavailable or refused the index; the documents stay on disk.
    #[error(transparent)]
    Es(#[from] EsError),
}

impl IndexError {
    /// A problem of the directory given (bad input), not of the server.
    pub fn is_invalid_dir(&self) -> bool {
        !matches!(self, IndexError::Es(_))
    }
}

/// A document that could not be indexed.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IndexFailure {
    pub id: String,
    pub metric_name: String,
    /// HTTP or item status of the last attempt; `None` for transport errors (timeouts, refused).
    pub status: Option<u16>,
    pub reason: String,
}

/// What an upload achieved, as the server reported it item by item. The harness exits 6 unless
/// `is_complete()`; the documents stay in `results/<uuid>/` either way.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IndexOutcome {
    /// Redacted server URL and index.
    pub target: String,
    pub submitted: usize,
    /// Documents the server did not have (item result `created`).
    pub indexed: usize,
    /// Documents the server already had under the same deterministic id (item result `updated`
    /// or `noop`): overwritten in place, never duplicated.
    pub already_indexed: usize,
    /// Bulk HTTP requests sent, retries included.
    pub requests: usize,
    pub failures: Vec<IndexFailure>,
    /// Set when the deadline ended the upload with documents still unindexed.
    pub gave_up: Option<GaveUp>,
}

impl IndexOutcome {
    pub fn is_complete(&self) -> bool {
        self.failures.is_empty()
    }
}

/// A connected client.
#[derive(Debug, Clone)]
pub struct EsClient {
    http: reqwest::Client,
    /// Without userinfo.
    base: Url,
    index: String,
    credentials: Option<Credentials>,
    redactor: Redactor,
    retry: RetryPolicy,
    request_timeout: Duration,
    deadline: Duration,
    max_bulk_bytes: usize,
    index_template: Option<PathBuf>,
}

impl EsClient {
    /// Builds the client (no network traffic yet): takes credentials out of the URL and sets
    /// up TLS. Errors never contain the credentials.
    pub fn new(options: EsOptions) -> Result<Self, EsError> {
        let mut redactor = Redactor::new();
        let shown = crate::redact::redact_url_userinfo(&options.server).into_owned();
        let mut base = Url::parse(&options.server).map_err(|e| EsError::InvalidUrl {
            url: shown.clone(),
            problem: e.to_string(),
        })?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(EsError::InvalidUrl {
                url: shown,
                problem: "the scheme must be http or https".to_owned(),
            });
        }
        let decode = |text: &str| {
            percent_encoding::percent_decode_str(text)
                .decode_utf8_lossy()
                .into_owned()
        };
        let url_credentials = if base.username().is_empty() && base.password().is_none() {
            None
        } else {
            let password = decode(base.password().unwrap_or_default());
            redactor.add_secret(base.password().unwrap_or_default());
            Some(Credentials::Basic {
                username: decode(base.username()),
                password: Secret::new(password),
            })
        };
        // Neither call can fail on an http(s) URL, which has a host.
        let _ = base.set_username("");
        let _ = base.set_password(None);
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let credentials = options.credentials.or(url_credentials);
        match &credentials {
            Some(Credentials::Basic { password, .. }) => redactor.add_secret(password.expose()),
            Some(Credentials::ApiKey(key)) => redactor.add_secret(key.expose()),
            None => {}
        }
        let index = options.index.to_lowercase();
        if index.is_empty()
            || index.starts_with(['-', '_', '+'])
            || index.chars().any(|c| {
                matches!(
                    c,
                    '\\' | '/' | '*' | '?' | '"' | '<' | '>' | '|' | ' ' | ',' | '#' | ':'
                )
            })
        {
            return Err(EsError::InvalidIndex {
                index: options.index,
                problem: "Elasticsearch index names cannot be empty, start with -, _ or +, or contain \\ / * ? \" < > | space , # :".to_owned(),
            });
        }
        // No client-wide timeout: every request carries its own, from what remains of the
        // operation's deadline.
        let mut builder = reqwest::Client::builder()
            .connect_timeout(options.request_timeout)
            .user_agent(concat!("vmbgp-bench/", env!("CARGO_PKG_VERSION")));
        if options.insecure_skip_verify {
            builder = builder.danger_accept_invalid_certs(true);
        }
        if let Some(path) = &options.ca_file {
            let pem = std::fs::read(path).map_err(|source| EsError::ReadCaFile {
                path: path.clone(),
                source,
            })?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                EsError::InvalidCaFile {
                    path: path.clone(),
                    problem: e.to_string(),
                }
            })?;
            if certificates.is_empty() {
                return Err(EsError::InvalidCaFile {
                    path: path.clone(),
                    problem: "no CERTIFICATE block found".to_owned(),
                });
            }
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let http = builder.build().map_err(EsError::BuildClient)?;
        Ok(EsClient {
            http,
            base,
            index,
            credentials,
            redactor,
            retry: options.retry,
            request_timeout: options.request_timeout.max(Duration::from_millis(1)),
            deadline: options.deadline,
            max_bulk_bytes: options.max_bulk_bytes.max(1),
            index_template: options.index_template,
        })
    }

    /// `new` + health check + index (and template) creation, under one deadline.
    pub async fn connect(options: EsOptions) -> Result<Self, EsError> {
        let client = EsClient::new(options)?;
        let mut budget = client.budget();
        client.check_health_within(&mut budget).await?;
        client.ensure_index_within(&mut budget).await?;
        Ok(client)
    }

    /// A fresh budget of this client's deadline (`--es-timeout`), for one operation.
    pub fn budget(&self) -> Budget {
        Budget::new(self.deadline)
    }

    /// Removes this client's credentials from text; use it on anything the harness logs.
    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// The server URL without credentials.
    pub fn display_url(&self) -> String {
        self.base.as_str().trim_end_matches('/').to_owned()
    }

    pub fn index(&self) -> &str {
        &self.index
    }

    fn target(&self) -> String {
        format!("{}/{}", self.display_url(), self.index)
    }

    fn url(&self, path: &str) -> Url {
        // `base` ends with '/', and our paths are relative and well formed.
        self.base.join(path).unwrap_or_else(|_| self.base.clone())
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, self.url(path));
        match &self.credentials {
            Some(Credentials::Basic { username, password }) => {
                request.basic_auth(username, Some(password.expose()))
            }
            Some(Credentials::ApiKey(key)) => {
                request.header("Authorization", format!("ApiKey {}", key.expose()))
            }
            None => request,
        }
    }

    /// Describes a transport error without its URL (ours carries no credentials, but the
    /// redactor is applied anyway to be sure) and with its cause chain.
    fn describe(&self, error: &reqwest::Error) -> String {
        let kind = if error.is_timeout() {
            "timed out"
        } else if error.is_connect() {
            "connection failed"
        } else {
            "request failed"
        };
        let mut text = kind.to_owned();
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        self.redactor.redact(&text).into_owned()
    }

    async fn response_problem(&self, response: reqwest::Response) -> String {
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        let snippet: String = body.chars().take(300).collect();
        self.redactor
            .redact(&format!("HTTP {status}: {snippet}"))
            .into_owned()
    }

    /// Sends the request `build` makes until it gets an answer that is not worth retrying (a
    /// success, or a 4xx other than 429), which it returns. Connection errors, timeouts, 429 and
    /// 5xx are retried with backoff; each attempt's timeout is what remains of `budget`, at most
    /// the per-request cap. Each failed attempt is logged with its number, what failed and the
    /// next delay. When the deadline passes (or would before the next attempt) or the attempts
    /// run out: `EsError::Unavailable`, saying how long and how many attempts.
    async fn send_retrying(
        &self,
        budget: &mut Budget,
        what: &str,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, EsError> {
        let max_attempts = self.retry.max_attempts.max(1);
        let unavailable = |budget: &Budget, deadline_passed: bool| EsError::Unavailable {
            url: self.display_url(),
            gave_up: budget.gave_up(what, deadline_passed),
        };
        for attempt in 1..=max_attempts {
            let Some(timeout) = budget.request_timeout(self.request_timeout) else {
                return Err(unavailable(budget, true));
            };
            budget.attempts += 1;
            let (problem, retry_after) = match build().timeout(timeout).send().await {
                Ok(response) if !is_retryable(response.status()) => return Ok(response),
                Ok(response) => {
                    let retry_after = retry_after(&response);
                    (self.response_problem(response).await, retry_after)
                }
                Err(error) => (self.describe(&error), None),
            };
            budget.last_problem = Some(problem.clone());
            if attempt == max_attempts {
                break;
            }
            let delay = self.retry.backoff(attempt, retry_after);
            if delay >= budget.remaining() {
                warn!(url = %self.display_url(), what, attempt, %problem, "Elasticsearch request failed; the deadline passes before another attempt");
                return Err(unavailable(budget, true));
            }
            warn!(url = %self.display_url(), what, attempt, %problem, next_delay_ms = delay.as_millis() as u64, remaining_ms = budget.remaining().as_millis() as u64, "Elasticsearch request failed; retrying");
            tokio::time::sleep(delay).await;
        }
        Err(unavailable(budget, false))
    }

    /// `GET _cluster/health` must answer 200 (kube-burner's check), retried under the deadline.
    pub async fn check_health(&self) -> Result<(), EsError> {
        self.check_health_within(&mut self.budget()).await
    }

    async fn check_health_within(&self, budget: &mut Budget) -> Result<(), EsError> {
        let response = self
            .send_retrying(budget, "health check", || {
                self.request(reqwest::Method::GET, "_cluster/health")
            })
            .await?;
        if response.status().is_success() {
            debug!(url = %self.display_url(), "Elasticsearch is healthy");
            return Ok(());
        }
        Err(EsError::Health {
            url: self.display_url(),
            problem: self.response_problem(response).await,
        })
    }

    /// Creates the index if missing, without a mapping (dashboards rely on the dynamic
    /// `.keyword` sub-fields), after installing the index template if one is configured.
    pub async fn ensure_index(&self) -> Result<(), EsError> {
        self.ensure_index_within(&mut self.budget()).await
    }

    async fn ensure_index_within(&self, budget: &mut Budget) -> Result<(), EsError> {
        if let Some(path) = &self.index_template {
            self.install_template(path, budget).await?;
        }
        let create_err = |problem: String| EsError::CreateIndex {
            url: self.display_url(),
            index: self.index.clone(),
            problem,
        };
        let exists = self
            .send_retrying(budget, &format!("checking index `{}`", self.index), || {
                self.request(reqwest::Method::HEAD, &self.index)
            })
            .await?;
        if exists.status().is_success() {
            return Ok(());
        }
        if exists.status() != StatusCode::NOT_FOUND {
            return Err(create_err(self.response_problem(exists).await));
        }
        let created = self
            .send_retrying(budget, &format!("creating index `{}`", self.index), || {
                self.request(reqwest::Method::PUT, &self.index)
            })
            .await?;
        if created.status().is_success() {
            info!(index = %self.index, url = %self.display_url(), "created index");
            return Ok(());
        }
        let problem = self.response_problem(created).await;
        // Another writer created it between our HEAD and PUT (or a retried PUT did).
        if problem.contains("resource_already_exists_exception") {
            return Ok(());
        }
        Err(create_err(problem))
    }

    async fn install_template(&self, path: &Path, budget: &mut Budget) -> Result<(), EsError> {
        let text = std::fs::read_to_string(path).map_err(|source| EsError::ReadTemplate {
            path: path.to_owned(),
            source,
        })?;
        let template: Value =
            serde_json::from_str(&text).map_err(|source| EsError::ParseTemplate {
                path: path.to_owned(),
                source,
            })?;
        let response = self
            .send_retrying(budget, "installing the index template", || {
                self.request(
                    reqwest::Method::PUT,
                    &format!("_index_template/{TEMPLATE_NAME}"),
                )
                .json(&template)
            })
            .await?;
        if response.status().is_success() {
            info!(template = TEMPLATE_NAME, "installed index template");
            Ok(())
        } else {
            Err(EsError::InstallTemplate {
                url: self.display_url(),
                problem: self.response_problem(response).await,
            })
        }
    }

    /// Indexes documents with `_bulk` under a fresh deadline; see [`EsClient::upload`].
    pub async fn index_documents(&self, documents: &[Document]) -> IndexOutcome {
        self.index_documents_within(documents, &mut self.budget())
            .await
    }

    /// Makes sure the index exists, then indexes `documents`, all under one deadline
    /// (`--es-timeout`). Every document is sent with its deterministic id as an `index` action,
    /// so the server's answer per item says whether it already had it (`updated`) or not
    /// (`created`); nothing is skipped on the strength of local records, and nothing is ever
    /// duplicated. `Err` when the index could not be checked or created (nothing was sent).
    pub async fn upload(&self, documents: &[Document]) -> Result<IndexOutcome, EsError> {
        let mut budget = self.budget();
        self.ensure_index_within(&mut budget).await?;
        Ok(self.index_documents_within(documents, &mut budget).await)
    }

    /// Indexes documents with `_bulk`, retrying whole requests on connection errors, timeouts,
    /// 429 and 5xx and single items on 429/5xx item statuses, until `budget` runs out; what
    /// still fails is listed in the outcome.
    async fn index_documents_within(
        &self,
        documents: &[Document],
        budget: &mut Budget,
    ) -> IndexOutcome {
        let mut outcome = IndexOutcome {
            target: self.target(),
            submitted: documents.len(),
            indexed: 0,
            already_indexed: 0,
            requests: 0,
            failures: Vec::new(),
            gave_up: None,
        };
        // Redact again: documents read from disk may predate this client's credentials.
        let lines: Vec<(usize, String)> = documents
            .iter()
            .enumerate()
            .map(|(i, document)| {
                let mut body = document.body().clone();
                self.redactor.redact_value(&mut body);
                let action = json!({"index": {"_index": self.index, "_id": document.id()}});
                (i, format!("{action}\n{body}\n"))
            })
            .collect();
        let mut chunks: std::collections::VecDeque<Vec<(usize, String)>> = Default::default();
        let mut chunk: Vec<(usize, String)> = Vec::new();
        let mut chunk_bytes = 0;
        for line in lines {
            if !chunk.is_empty() && chunk_bytes + line.1.len() > self.max_bulk_bytes {
                chunks.push_back(std::mem::take(&mut chunk));
                chunk_bytes = 0;
            }
            chunk_bytes += line.1.len();
            chunk.push(line);
        }
        if !chunk.is_empty() {
            chunks.push_back(chunk);
        }
        while let Some(chunk) = chunks.pop_front() {
            if let Some(too_large) = self
                .send_chunk(documents, chunk, &mut outcome, budget)
                .await
            {
                // 413: the server's request size limit is below ours; halve and try again.
                let mut first = too_large;
                let second = first.split_off(first.len() / 2);
                chunks.push_front(second);
                chunks.push_front(first);
            }
        }
        if outcome.is_complete() {
            info!(target = %outcome.target, created = outcome.indexed, already_present = outcome.already_indexed, requests = outcome.requests, "indexed documents");
        } else {
            warn!(target = %outcome.target, created = outcome.indexed, already_present = outcome.already_indexed, failed = outcome.failures.len(), "some documents could not be indexed; they remain in the results directory");
        }
        outcome
    }

    /// Sends one bulk request with retries. Returns the chunk back, unsent, when the server
    /// answered 413 and the chunk can still be split.
    async fn send_chunk(
        &self,
        documents: &[Document],
        mut pending: Vec<(usize, String)>,
        outcome: &mut IndexOutcome,
        budget: &mut Budget,
    ) -> Option<Vec<(usize, String)>> {
        // Last problem per pending document position, for the residual failure report.
        let mut last: BTreeMap<usize, (Option<u16>, String)> = BTreeMap::new();
        let max_attempts = self.retry.max_attempts.max(1);
        let mut deadline_passed = false;
        for attempt in 1..=max_attempts {
            let Some(timeout) = budget.request_timeout(self.request_timeout) else {
                deadline_passed = true;
                break;
            };
            let body: String = pending.iter().map(|(_, line)| line.as_str()).collect();
            outcome.requests += 1;
            budget.attempts += 1;
            let sent = self
                // wait_for: documents are searchable when the request returns, so a `compare`
                // right after a run finds them (kube-burner sleeps for this instead).
                .request(reqwest::Method::POST, "_bulk?refresh=wait_for")
                .header("Content-Type", "application/x-ndjson")
                .body(body)
                .timeout(timeout)
                .send()
                .await;
            let mut retry_after = None;
            let mut retry: Vec<(usize, String)> = Vec::new();
            // The response body is read under the same timeout as the request.
            let answered = match sent {
                Err(error) => Err(self.describe(&error)),
                Ok(response) if response.status().is_success() => match response.text().await {
                    Ok(text) => Ok(text),
                    Err(error) => Err(self.describe(&error)),
                },
                Ok(response)
                    if response.status() == StatusCode::PAYLOAD_TOO_LARGE && pending.len() > 1 =>
                {
                    warn!(target = %self.target(), documents = pending.len(), "bulk request too large for the server; splitting it");
                    return Some(pending);
                }
                Ok(response) => {
                    let status = response.status();
                    retry_after = self::retry_after(&response);
                    let problem = self.response_problem(response).await;
                    if is_retryable(status) {
                        for (i, _) in &pending {
                            last.insert(*i, (Some(status.as_u16()), problem.clone()));
                        }
                        budget.last_problem = Some(problem);
                        retry = pending;
                    } else {
                        for (i, _) in pending {
                            outcome.failures.push(failure(
                                documents,
                                i,
                                Some(status.as_u16()),
                                problem.clone(),
                            ));
                            last.remove(&i);
                        }
                    }
                    pending = Vec::new();
                    Ok(String::new())
                }
            };
            match answered {
                Err(problem) => {
                    for (i, _) in &pending {
                        last.insert(*i, (None, problem.clone()));
                    }
                    budget.last_problem = Some(problem);
                    retry = std::mem::take(&mut pending);
                }
                Ok(_) if pending.is_empty() => {}
                Ok(text) => match parse_bulk_items(&text, pending.len()) {
                    Some(items) => {
                        for ((i, line), (status, reason)) in
                            std::mem::take(&mut pending).into_iter().zip(items)
                        {
                            if status == 201 {
                                outcome.indexed += 1;
                                last.remove(&i);
                            } else if (200..300).contains(&status) {
                                // `updated` / `noop`: the server had it under this id.
                                outcome.already_indexed += 1;
                                last.remove(&i);
                            } else if is_retryable_code(status) {
                                budget.last_problem =
                                    Some(format!("item status {status}: {reason}"));
                                last.insert(i, (Some(status), reason));
                                retry.push((i, line));
                            } else {
                                outcome
                                    .failures
                                    .push(failure(documents, i, Some(status), reason));
                                last.remove(&i);
                            }
                        }
                    }
                    None => {
                        let problem =
                            "bulk response did not list one result per document".to_owned();
                        for (i, _) in &pending {
                            last.insert(*i, (None, problem.clone()));
                        }
                        budget.last_problem = Some(problem);
                        retry = std::mem::take(&mut pending);
                    }
                },
            }
            if retry.is_empty() {
                return None;
            }
            pending = retry;
            if attempt == max_attempts {
                break;
            }
            let delay = self.retry.backoff(attempt, retry_after);
            if delay >= budget.remaining() {
                warn!(target = %self.target(), attempt, retrying = pending.len(), "bulk indexing incomplete; the deadline passes before another attempt");
                deadline_passed = true;
                break;
            }
            warn!(target = %self.target(), attempt, retrying = pending.len(), problem = budget.last_problem.as_deref().unwrap_or_default(), next_delay_ms = delay.as_millis() as u64, remaining_ms = budget.remaining().as_millis() as u64, "bulk indexing incomplete; retrying");
            tokio::time::sleep(delay).await;
        }
        if deadline_passed {
            outcome.gave_up = Some(budget.gave_up("bulk indexing", true));
        }
        for (i, _) in pending {
            let (status, reason) = last
                .remove(&i)
                .unwrap_or((None, "not sent before the deadline".to_owned()));
            let reason = if deadline_passed {
                format!(
                    "deadline (--es-timeout {}) passed: {reason}",
                    seconds(budget.limit.as_secs_f64())
                )
            } else {
                format!("gave up after {max_attempts} attempts: {reason}")
            };
            outcome.failures.push(failure(documents, i, status, reason));
        }
        None
    }

    /// Quantile documents and the `jobSummary` of one run, for `compare` against ES uuids,
    /// under a fresh deadline.
    pub async fn fetch_run_summaries(&self, uuid: &str) -> Result<Vec<Document>, EsError> {
        self.fetch_run_summaries_within(uuid, &mut self.budget())
            .await
    }

    /// [`EsClient::fetch_run_summaries`] within an operation's budget (a `compare` fetching two
    /// runs spends one deadline).
    pub async fn fetch_run_summaries_within(
        &self,
        uuid: &str,
        budget: &mut Budget,
    ) -> Result<Vec<Document>, EsError> {
        let search_err = |problem: String| EsError::Search {
            url: self.display_url(),
            uuid: uuid.to_owned(),
            problem,
        };
        let metrics: Vec<&str> = [
            document::JOB_SUMMARY,
            document::VMI_LATENCY_QUANTILES,
            document::ROUTE_CONVERGENCE_QUANTILES,
            document::VM_REACHABILITY_QUANTILES,
            document::VM_THROUGHPUT_QUANTILES,
            document::BGP_SESSION_QUANTILES,
            document::VM_MIGRATION_QUANTILES,
        ]
        .to_vec();
        let query = json!({
            "size": 10000,
            "query": {"bool": {"filter": [
                {"term": {"uuid.keyword": uuid}},
                {"terms": {"metricName.keyword": metrics}}
            ]}}
        });
        let response = self
            .send_retrying(budget, &format!("searching run {uuid}"), || {
                self.request(reqwest::Method::POST, &format!("{}/_search", self.index))
                    .json(&query)
            })
            .await?;
        if !response.status().is_success() {
            return Err(search_err(self.response_problem(response).await));
        }
        let body: Value = response
            .json()
            .await
            .map_err(|e| search_err(self.describe(&e)))?;
        let hits = body
            .pointer("/hits/hits")
            .and_then(Value::as_array)
            .ok_or_else(|| search_err("response has no hits.hits".to_owned()))?;
        let mut documents = Vec::new();
        for hit in hits {
            if let Some(source) = hit.get("_source") {
                let document = Document::from_value(source.clone())
                    .map_err(|e| search_err(format!("unusable document: {e}")))?;
                documents.push(document);
            }
        }
        Ok(documents)
    }
}

/// `Retry-After` in seconds, as Elasticsearch sends it with 429.
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

fn failure(documents: &[Document], i: usize, status: Option<u16>, reason: String) -> IndexFailure {
    // `i` always indexes `documents` (positions come from enumerating it).
    let (id, metric_name) = documents
        .get(i)
        .map(|d| (d.id().to_owned(), d.metric_name().to_owned()))
        .unwrap_or_default();
    IndexFailure {
        id,
        metric_name,
        status,
        reason,
    }
}

fn is_retryable(status: StatusCode) -> bool {
    is_retryable_code(status.as_u16())
}

fn is_retryable_code(status: u16) -> bool {
    status == 429 || status >= 500
}

/// `(status, reason)` per item of a `_bulk` response, in request order.
pub fn parse_bulk_items(text: &str, expected: usize) -> Option<Vec<(u16, String)>> {
    let body: Value = serde_json::from_str(text).ok()?;
    let items = body.get("items")?.as_array()?;
    if items.len() != expected {
        return None;
    }
    items
        .iter()
        .map(|item| {
            let result = item.as_object()?.values().next()?;
            let status = u16::try_from(result.get("status")?.as_u64()?).ok()?;
            let reason = match result.get("error") {
                Some(error) => format!(
                    "{}: {}",
                    error.get("type").and_then(Value::as_str).unwrap_or("error"),
                    error.get("reason").and_then(Value::as_str).unwrap_or("")
                ),
                None => String::new(),
            };
            Some((status, reason))
        })
        .collect()
}

/// Reads a results directory for `index`, refusing anything that is not one before any server is
/// contacted: the path must exist and be a directory holding `jobSummary.json` with the run's
/// `jobSummary` document, and every document file must parse.
pub fn load_results_dir(dir: &Path) -> Result<Vec<Document>, IndexError> {
    let invalid = |problem: String| IndexError::InvalidDir {
        path: dir.to_owned(),
        problem,
    };
    let metadata = std::fs::metadata(dir).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => invalid("does not exist".to_owned()),
        _ => invalid(format!("cannot be read: {e}")),
    })?;
    if !metadata.is_dir() {
        return Err(invalid(
            "is not a directory (expected results/<uuid>/ as a run writes it)".to_owned(),
        ));
    }
    let summary = dir.join(document::JOB_SUMMARY_FILE);
    if !summary.is_file() {
        return Err(invalid(format!(
            "holds no {}: not a results directory written by a run",
            document::JOB_SUMMARY_FILE
        )));
    }
    let documents = load_documents(dir).map_err(|source| IndexError::Local {
        path: dir.to_owned(),
        source,
    })?;
    if !documents
        .iter()
        .any(|d| d.metric_name() == document::JOB_SUMMARY)
    {
        return Err(invalid(format!(
            "has a {} without a jobSummary document",
            document::JOB_SUMMARY_FILE
        )));
    }
    Ok(documents)
}

/// Uploads a results directory (`vmbgp-bench index results/<uuid>`, and the end of a run): the
/// directory is checked first ([`load_results_dir`]), then [`EsClient::upload`] sends every
/// document under one deadline. What is "already present" is what the server says it already
/// had (item result `updated`), never a local record: a fresh server at the same URL gets every
/// document. Ids are deterministic, so uploading twice overwrites instead of duplicating.
pub async fn index_saved_results(
    dir: &Path,
    client: &EsClient,
) -> Result<IndexOutcome, IndexError> {
    let documents = load_results_dir(dir)?;
    Ok(client.upload(&documents).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_leave_the_url() {
        let client = EsClient::new(EsOptions::new(
            "https://elastic:p%40ss@es.example:9200/prefix",
            "Ripsaw-Kube-Burner-VM-BGP",
        ))
        .unwrap();
        assert_eq!(client.display_url(), "https://es.example:9200/prefix");
        assert_eq!(client.index(), "ripsaw-kube-burner-vm-bgp");
        assert_eq!(
            client.credentials,
            Some(Credentials::Basic {
                username: "elastic".to_owned(),
                password: Secret::new("p@ss"),
            })
        );
        assert_eq!(client.redactor().redact("p@ss and p%40ss"), "*** and ***");
        assert_eq!(
            client.url("_bulk").as_str(),
            "https://es.example:9200/prefix/_bulk"
        );
    }

    #[test]
    fn bad_urls_are_rejected_without_echoing_credentials() {
        let error = EsClient::new(EsOptions::new("ftp://u:canary@h", "i")).unwrap_err();
        assert!(!error.to_string().contains("canary"), "{error}");
        let error = EsClient::new(EsOptions::new("http://h:9200", "a/b")).unwrap_err();
        assert!(matches!(error, EsError::InvalidIndex { .. }));
    }

    #[test]
    fn tls_options_fail_clearly_on_a_bad_ca_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut options = EsOptions::new("https://es.example:9200", "i");
        options.ca_file = Some(dir.path().join("absent.pem"));
        assert!(matches!(
            EsClient::new(options.clone()),
            Err(EsError::ReadCaFile { .. })
        ));
        let bad = dir.path().join("bad.pem");
        std::fs::write(
            &bad,
            "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        options.ca_file = Some(bad);
        let result = EsClient::new(options.clone());
        assert!(
            matches!(
                result,
                Err(EsError::InvalidCaFile { .. }) | Err(EsError::BuildClient(_))
            ),
            "{result:?}"
        );
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no pem here\n").unwrap();
        options.ca_file = Some(empty);
        assert!(matches!(
            EsClient::new(options.clone()),
            Err(EsError::InvalidCaFile { .. })
        ));
        options.ca_file = None;
        options.insecure_skip_verify = true;
        assert!(EsClient::new(options).is_ok());
    }

    #[test]
    fn backoff_grows_with_jitter_and_honours_retry_after() {
        let policy = RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(350),
        };
        for _ in 0..50 {
            let first = policy.backoff(1, None);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let third = policy.backoff(3, None);
            assert!(third >= Duration::from_millis(175) && third <= Duration::from_millis(350));
        }
        assert_eq!(
            policy.backoff(1, Some(Duration::from_secs(10))),
            Duration::from_millis(350)
        );
    }

    #[test]
    fn bulk_items_are_parsed_in_order() {
        let text = r#"{"errors":true,"items":[{"index":{"status":201}},{"index":{"status":429,"error":{"type":"es_rejected_execution_exception","reason":"queue full"}}}]}"#;
        assert_eq!(
            parse_bulk_items(text, 2),
            Some(vec![
                (201, String::new()),
                (
                    429,
                    "es_rejected_execution_exception: queue full".to_owned()
                )
            ])
        );
        assert_eq!(parse_bulk_items(text, 3), None);
        assert_eq!(parse_bulk_items("not json", 1), None);
    }
}
