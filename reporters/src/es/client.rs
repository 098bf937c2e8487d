//! The connected client: URL and credential handling, TLS, the retrying request loop under the
//! operation's deadline, the health check and index (and template) creation.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use tracing::{debug, info, warn};
use url::Url;

use super::{Budget, Credentials, EsError, EsOptions, RetryPolicy, TEMPLATE_NAME};
use crate::redact::{Redactor, Secret};

/// A connected client.
#[derive(Debug, Clone)]
pub struct EsClient {
    http: reqwest::Client,
    /// Without userinfo.
    base: Url,
    pub(super) index: String,
    credentials: Option<Credentials>,
    pub(super) redactor: Redactor,
    pub(super) retry: RetryPolicy,
    pub(super) request_timeout: Duration,
    deadline: Duration,
    pub(super) max_bulk_bytes: usize,
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

    pub(super) fn target(&self) -> String {
        format!("{}/{}", self.display_url(), self.index)
    }

    pub(super) fn url(&self, path: &str) -> Url {
        // `base` ends with '/', and our paths are relative and well formed.
        self.base.join(path).unwrap_or_else(|_| self.base.clone())
    }

    pub(super) fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
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
    pub(super) fn describe(&self, error: &reqwest::Error) -> String {
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

    pub(super) async fn response_problem(&self, response: reqwest::Response) -> String {
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
    pub(super) async fn send_retrying(
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

    pub(super) async fn ensure_index_within(&self, budget: &mut Budget) -> Result<(), EsError> {
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
}

/// `Retry-After` in seconds, as Elasticsearch sends it with 429.
pub(super) fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

pub(super) fn is_retryable(status: StatusCode) -> bool {
    is_retryable_code(status.as_u16())
}

pub(super) fn is_retryable_code(status: u16) -> bool {
    status == 429 || status >= 500
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
}
