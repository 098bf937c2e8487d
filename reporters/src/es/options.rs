//! What the client is told before it connects: the endpoint, credentials, TLS trust, the
//! operation deadline and the retry policy.

use std::path::PathBuf;
use std::time::Duration;

use rand::Rng;

use crate::redact::Secret;

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
    pub(super) fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
