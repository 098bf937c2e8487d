//! Elasticsearch / OpenSearch client: health check, index creation (no strict mapping), optional
//! index template, `_bulk` NDJSON indexing with deterministic ids, retries with backoff and jitter,
//! per-item retry, and a typed outcome listing what could not be indexed.
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
use crate::local::{INDEX_STATE_FILE, LocalError, load_documents, write_atomically};
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

/// Retries of one bulk request (and of the items it could not index).
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Total attempts including the first.
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
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
    pub request_timeout: Duration,
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
            request_timeout: Duration::from_secs(60),
            retry: RetryPolicy::default(),
            max_bulk_bytes: 5_000_000,
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

/// Why `index_saved_results` could not even try.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("reading saved results")]
    Local(#[from] LocalError),
    #[error("results directory {path} holds no documents")]
    Empty { path: PathBuf },
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

/// What an upload achieved. The harness exits 6 unless `is_complete()`; the documents stay in
/// `results/<uuid>/` either way.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IndexOutcome {
    /// Redacted server URL and index.
    pub target: String,
    pub submitted: usize,
    pub indexed: usize,
    /// Skipped by `index_saved_results` because this target already has them unchanged.
    pub already_indexed: usize,
    /// Bulk HTTP requests sent, retries included.
    pub requests: usize,
    pub failures: Vec<IndexFailure>,
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
        let mut builder = reqwest::Client::builder()
            .timeout(options.request_timeout)
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
            max_bulk_bytes: options.max_bulk_bytes.max(1),
            index_template: options.index_template,
        })
    }

    /// `new` + health check + index (and template) creation.
    pub async fn connect(options: EsOptions) -> Result<Self, EsError> {
        let client = EsClient::new(options)?;
        client.check_health().await?;
        client.ensure_index().await?;
        Ok(client)
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

    /// `GET _cluster/health` must answer 200 (kube-burner's check), retried like bulk requests.
    pub async fn check_health(&self) -> Result<(), EsError> {
        let mut problem = String::new();
        for attempt in 1..=self.retry.max_attempts.max(1) {
            match self
                .request(reqwest::Method::GET, "_cluster/health")
                .send()
                .await
            {
                Ok(response) if response.status().is_success() => {
                    debug!(url = %self.display_url(), "Elasticsearch is healthy");
                    return Ok(());
                }
                Ok(response) => {
                    let retryable = is_retryable(response.status());
                    problem = self.response_problem(response).await;
                    if !retryable {
                        break;
                    }
                }
                Err(error) => problem = self.describe(&error),
            }
            if attempt < self.retry.max_attempts {
                warn!(url = %self.display_url(), attempt, %problem, "Elasticsearch health check failed; retrying");
                tokio::time::sleep(self.retry.backoff(attempt, None)).await;
            }
        }
        Err(EsError::Health {
            url: self.display_url(),
            problem,
        })
    }

    /// Creates the index if missing, without a mapping (dashboards rely on the dynamic
    /// `.keyword` sub-fields), after installing the index template if one is configured.
    pub async fn ensure_index(&self) -> Result<(), EsError> {
        if let Some(path) = &self.index_template {
            self.install_template(path).await?;
        }
        let create_err = |problem: String| EsError::CreateIndex {
            url: self.display_url(),
            index: self.index.clone(),
            problem,
        };
        let exists = self
            .request(reqwest::Method::HEAD, &self.index)
            .send()
            .await
            .map_err(|e| create_err(self.describe(&e)))?;
        if exists.status().is_success() {
            return Ok(());
        }
        if exists.status() != StatusCode::NOT_FOUND {
            return Err(create_err(self.response_problem(exists).await));
        }
        let created = self
            .request(reqwest::Method::PUT, &self.index)
            .send()
            .await
            .map_err(|e| create_err(self.describe(&e)))?;
        if created.status().is_success() {
            info!(index = %self.index, url = %self.display_url(), "created index");
            return Ok(());
        }
        let problem = self.response_problem(created).await;
        // Another writer created it between our HEAD and PUT.
        if problem.contains("resource_already_exists_exception") {
            return Ok(());
        }
        Err(create_err(problem))
    }

    async fn install_template(&self, path: &Path) -> Result<(), EsError> {
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
            .request(
                reqwest::Method::PUT,
                &format!("_index_template/{TEMPLATE_NAME}"),
            )
            .json(&template)
            .send()
            .await
            .map_err(|e| EsError::InstallTemplate {
                url: self.display_url(),
                problem: self.describe(&e),
            })?;
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

    /// Indexes documents with `_bulk`, retrying whole requests on 429/5xx/timeouts and single
    /// items on 429/5xx item statuses; what still fails is listed in the outcome.
    pub async fn index_documents(&self, documents: &[Document]) -> IndexOutcome {
        let mut outcome = IndexOutcome {
            target: self.target(),
            submitted: documents.len(),
            indexed: 0,
            already_indexed: 0,
            requests: 0,
            failures: Vec::new(),
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
            if let Some(too_large) = self.send_chunk(documents, chunk, &mut outcome).await {
                // 413: the server's request size limit is below ours; halve and try again.
                let mut first = too_large;
                let second = first.split_off(first.len() / 2);
                chunks.push_front(second);
                chunks.push_front(first);
            }
        }
        if outcome.is_complete() {
            info!(target = %outcome.target, indexed = outcome.indexed, requests = outcome.requests, "indexed documents");
        } else {
            warn!(target = %outcome.target, indexed = outcome.indexed, failed = outcome.failures.len(), "some documents could not be indexed; they remain in the results directory");
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
    ) -> Option<Vec<(usize, String)>> {
        // Last problem per pending document position, for the residual failure report.
        let mut last: BTreeMap<usize, (Option<u16>, String)> = BTreeMap::new();
        let max_attempts = self.retry.max_attempts.max(1);
        for attempt in 1..=max_attempts {
            let body: String = pending.iter().map(|(_, line)| line.as_str()).collect();
            outcome.requests += 1;
            let sent = self
                // wait_for: documents are searchable when the request returns, so a `compare`
                // right after a run finds them (kube-burner sleeps for this instead).
                .request(reqwest::Method::POST, "_bulk?refresh=wait_for")
                .header("Content-Type", "application/x-ndjson")
                .body(body)
                .send()
                .await;
            let mut retry_after = None;
            let mut retry: Vec<(usize, String)> = Vec::new();
            match sent {
                Err(error) => {
                    let problem = self.describe(&error);
                    for (i, _) in &pending {
                        last.insert(*i, (None, problem.clone()));
                    }
                    retry = pending;
                }
                Ok(response) if response.status().is_success() => {
                    let text = response.text().await.unwrap_or_default();
                    match parse_bulk_items(&text, pending.len()) {
                        Some(items) => {
                            for ((i, line), (status, reason)) in pending.into_iter().zip(items) {
                                if (200..300).contains(&status) {
                                    outcome.indexed += 1;
                                    last.remove(&i);
                                } else if is_retryable_code(status) {
                                    last.insert(i, (Some(status), reason));
                                    retry.push((i, line));
                                } else {
                                    outcome.failures.push(failure(
                                        documents,
                                        i,
                                        Some(status),
                                        reason,
                                    ));
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
                            retry = pending;
                        }
                    }
                }
                Ok(response)
                    if response.status() == StatusCode::PAYLOAD_TOO_LARGE && pending.len() > 1 =>
                {
                    warn!(target = %self.target(), documents = pending.len(), "bulk request too large for the server; splitting it");
                    return Some(pending);
                }
                Ok(response) => {
                    let status = response.status();
                    retry_after = response
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    let problem = self.response_problem(response).await;
                    if is_retryable(status) {
                        for (i, _) in &pending {
                            last.insert(*i, (Some(status.as_u16()), problem.clone()));
                        }
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
                }
            }
            if retry.is_empty() {
                return None;
            }
            pending = retry;
            if attempt < max_attempts {
                let delay = self.retry.backoff(attempt, retry_after);
                warn!(target = %self.target(), attempt, retrying = pending.len(), delay_ms = delay.as_millis() as u64, "bulk indexing incomplete; retrying");
                tokio::time::sleep(delay).await;
            }
        }
        for (i, _) in pending {
            let (status, reason) = last.remove(&i).unwrap_or((None, "unknown".to_owned()));
            outcome.failures.push(failure(
                documents,
                i,
                status,
                format!("gave up after {max_attempts} attempts: {reason}"),
            ));
        }
        None
    }

    /// Quantile documents and the `jobSummary` of one run, for `compare` against ES uuids.
    pub async fn fetch_run_summaries(&self, uuid: &str) -> Result<Vec<Document>, EsError> {
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
            .request(reqwest::Method::POST, &format!("{}/_search", self.index))
            .json(&query)
            .send()
            .await
            .map_err(|e| search_err(self.describe(&e)))?;
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
fn parse_bulk_items(text: &str, expected: usize) -> Option<Vec<(u16, String)>> {
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

/// Per-target record of what was indexed: target → document id → sha256 of the body sent.
type IndexState = BTreeMap<String, BTreeMap<String, String>>;

fn body_digest(document: &Document) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(document.body().to_string().as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Uploads a results directory (`vmbgp-bench index results/<uuid>`, and the end of a run).
/// Documents already indexed unchanged into the same server and index (recorded in
/// `index-state.json`) are skipped, so running it twice uploads each document once; ids are
/// deterministic, so even a forced re-upload overwrites instead of duplicating.
pub async fn index_saved_results(
    dir: &Path,
    client: &EsClient,
) -> Result<IndexOutcome, IndexError> {
    let documents = load_documents(dir)?;
    if documents.is_empty() {
        return Err(IndexError::Empty {
            path: dir.to_owned(),
        });
    }
    let state_path = dir.join(INDEX_STATE_FILE);
    let mut state: IndexState = match std::fs::read_to_string(&state_path) {
        // A damaged state file only costs a re-upload (ids are idempotent), so it is ignored.
        Ok(text) => serde_json::from_str(&text).unwrap_or_default(),
        Err(_) => IndexState::new(),
    };
    let target = client.target();
    let done = state.entry(target.clone()).or_default();
    let (skip, todo): (Vec<&Document>, Vec<&Document>) = documents
        .iter()
        .partition(|d| done.get(d.id()) == Some(&body_digest(d)));
    let todo: Vec<Document> = todo.into_iter().cloned().collect();
    let mut outcome = if todo.is_empty() {
        IndexOutcome {
            target: target.clone(),
            submitted: 0,
            indexed: 0,
            already_indexed: 0,
            requests: 0,
            failures: Vec::new(),
        }
    } else {
        client.index_documents(&todo).await
    };
    outcome.already_indexed = skip.len();
    let failed: std::collections::BTreeSet<&str> =
        outcome.failures.iter().map(|f| f.id.as_str()).collect();
    for document in &todo {
        if !failed.contains(document.id()) {
            done.insert(document.id().to_owned(), body_digest(document));
        }
    }
    let text = serde_json::to_string_pretty(&state).map_err(|source| LocalError::Serialize {
        file: INDEX_STATE_FILE.to_owned(),
        source,
    })?;
    write_atomically(&state_path, text.as_bytes())?;
    Ok(outcome)
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
