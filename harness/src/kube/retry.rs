//! Transient API failures (429 and 500/502/503/504): which answers are retried, how long to wait
//! before the next attempt, and a count of every retry so throttling stays visible in the run's
//! output instead of being hidden. The client-wide tower layer retries every request except the
//! creates and deletes whose send instant is a measurement's t0: the applier retries those itself,
//! stamping each attempt.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::{Request, Response};
use kube::client::Body;
use tower::BoxError;
use tower::retry::Policy;

/// Attempts after the first. Lab faults fail 20 % of requests: ten retries in a row all failing
/// happens once in 5·10⁷ requests; a real server that keeps failing longer is down, not throttling.
pub const MAX_RETRIES: u32 = 10;
/// The first wait; each next one doubles, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// A server's `Retry-After` is honoured up to this (a longer one waits this long).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(10);

/// Whether an HTTP status means "try again": throttled (429) or a server-side failure that says
/// nothing about the request itself (500 InternalError, 502, 503, 504).
pub fn is_transient(status: u16) -> bool {
    matches!(status, 429 | 500 | 502 | 503 | 504)
}

/// How long to wait before retry number `retry` (0-based): the server's `Retry-After` when it sent
/// one (bounded), else exponential backoff.
pub fn backoff(retry: u32, retry_after_seconds: Option<u64>) -> Duration {
    match retry_after_seconds {
        Some(s) => Duration::from_secs(s).min(MAX_RETRY_AFTER),
        None => FIRST_BACKOFF
            .saturating_mul(1u32 << retry.min(16))
            .min(MAX_BACKOFF),
    }
}

/// Retries counted over a client's life, by the status that caused them.
#[derive(Debug, Default)]
pub struct RetryCounts {
    throttled: AtomicU64,
    server_errors: AtomicU64,
}

impl RetryCounts {
    pub fn record(&self, status: u16) {
        let counter = if status == 429 {
            &self.throttled
        } else {
            &self.server_errors
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// (429 retries, 5xx retries).
    pub fn totals(&self) -> (u64, u64) {
        (
            self.throttled.load(Ordering::Relaxed),
            self.server_errors.load(Ordering::Relaxed),
        )
    }

    /// One line for the run's output, or None when nothing was retried.
    pub fn summary(&self) -> Option<String> {
        match self.totals() {
            (0, 0) => None,
            (throttled, server_errors) => Some(format!(
                "the Kubernetes API answered {throttled} request(s) with 429 and \
                 {server_errors} with 5xx; each was retried"
            )),
        }
    }
}

/// The tower retry policy of the client-wide layer: one instance per request (cloned from the
/// layer's), counting its own attempts.
#[derive(Debug, Clone)]
pub struct TransientRetry {
    retries: u32,
    counts: Arc<RetryCounts>,
}

impl TransientRetry {
    pub fn new(counts: Arc<RetryCounts>) -> Self {
        TransientRetry { retries: 0, counts }
    }
}

impl<B> Policy<Request<Body>, Response<B>, BoxError> for TransientRetry {
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        _request: &mut Request<Body>,
        result: &mut Result<Response<B>, BoxError>,
    ) -> Option<Self::Future> {
        let response = result.as_ref().ok()?;
        let status = response.status().as_u16();
        if !is_transient(status) || self.retries >= MAX_RETRIES {
            return None;
        }
        let retry_after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let wait = backoff(self.retries, retry_after);
        self.retries += 1;
        self.counts.record(status);
        tracing::debug!(
            status,
            retry = self.retries,
            ?wait,
            "retrying an API request"
        );
        Some(tokio::time::sleep(wait))
    }

    fn clone_request(&mut self, request: &Request<Body>) -> Option<Request<Body>> {
        // A streamed body cannot be replayed; such a request is sent once.
        let body = request.body().try_clone()?;
        let mut copy = Request::builder()
            .method(request.method().clone())
            .uri(request.uri().clone())
            .version(request.version())
            .body(body)
            .ok()?;
        *copy.headers_mut() = request.headers().clone();
        *copy.extensions_mut() = request.extensions().clone();
        Some(copy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_and_server_failures_are_transient_and_request_errors_are_not() {
        for code in [429, 500, 502, 503, 504] {
            assert!(is_transient(code), "{code}");
        }
        for code in [200, 400, 401, 403, 404, 409, 410, 415, 422, 501] {
            assert!(!is_transient(code), "{code}");
        }
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_and_honours_a_bounded_retry_after() {
        assert_eq!(backoff(0, None), Duration::from_millis(100));
        assert_eq!(backoff(1, None), Duration::from_millis(200));
        assert_eq!(backoff(4, None), Duration::from_millis(1600));
        assert_eq!(backoff(5, None), Duration::from_secs(2));
        assert_eq!(backoff(40, None), Duration::from_secs(2));
        assert_eq!(backoff(0, Some(1)), Duration::from_secs(1));
        assert_eq!(backoff(0, Some(3600)), Duration::from_secs(10));
    }

    fn response(status: u16, retry_after: Option<&str>) -> Result<Response<()>, BoxError> {
        let mut builder = Response::builder().status(status);
        if let Some(v) = retry_after {
            builder = builder.header("Retry-After", v);
        }
        Ok(builder.body(()).expect("a valid response"))
    }

    #[tokio::test(start_paused = true)]
    async fn the_policy_retries_transient_answers_a_bounded_number_of_times_and_counts_them() {
        let counts = Arc::new(RetryCounts::default());
        let mut policy = TransientRetry::new(counts.clone());
        let mut request = Request::builder()
            .uri("https://127.0.0.1/api/v1/namespaces")
            .body(Body::empty())
            .expect("a valid request");
        assert!(
            policy
                .retry(&mut request, &mut response(404, None))
                .is_none()
        );
        let start = tokio::time::Instant::now();
        policy
            .retry(&mut request, &mut response(429, Some("1")))
            .expect("429 is retried")
            .await;
        assert_eq!(start.elapsed(), Duration::from_secs(1), "Retry-After");
        for _ in 1..MAX_RETRIES {
            assert!(
                policy
                    .retry(&mut request, &mut response(500, None))
                    .is_some()
            );
        }
        assert!(
            policy
                .retry(&mut request, &mut response(500, None))
                .is_none(),
            "gives up after MAX_RETRIES"
        );
        assert_eq!(counts.totals(), (1, u64::from(MAX_RETRIES) - 1));
        let summary = counts.summary().expect("retries were counted");
        assert!(summary.contains("1 request(s) with 429"), "{summary}");
        let copy =
            Policy::<Request<Body>, Response<()>, BoxError>::clone_request(&mut policy, &request)
                .expect("an empty body replays");
        assert_eq!(copy.uri(), request.uri());
    }
}
