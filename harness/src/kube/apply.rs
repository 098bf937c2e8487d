//! Creates and deletes the run's objects: a client-side rate limiter (`--qps`/`--burst`) in front of
//! every create, and for each request the instant it was sent (t0) and the instant its response
//! arrived (their gap is t0's uncertainty). A transient failure (429, 5xx) is retried here, each
//! attempt rate-limited and stamped, so t0 is the attempt the API accepted.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, DeleteParams, DynamicObject, PostParams};
use tokio::time::Instant;

use super::retry::{MAX_RETRIES, RetryCounts, backoff, is_transient};
use super::{
    BGP_SESSION_STATE, CUDN, FRR_CONFIGURATION, FRR_NODE_STATE, IPAM_CLAIM, NAMESPACE,
    ROUTE_ADVERTISEMENTS, Resource, VIRTUAL_MACHINE, VMI, VMIM,
};
use crate::clock::{MonoStamp, RunClock};

/// Every resource the harness creates, watches or reads, for lookups by apiVersion and kind.
pub const KNOWN_RESOURCES: &[Resource] = &[
    NAMESPACE,
    VIRTUAL_MACHINE,
    VMI,
    VMIM,
    CUDN,
    ROUTE_ADVERTISEMENTS,
    FRR_CONFIGURATION,
    FRR_NODE_STATE,
    BGP_SESSION_STATE,
    IPAM_CLAIM,
];

/// The resource of an object's `apiVersion` and `kind`.
pub fn resource_for(api_version: &str, kind: &str) -> Option<Resource> {
    KNOWN_RESOURCES
        .iter()
        .find(|r| r.kind == kind && r.api_version() == api_version)
        .copied()
}

/// A token bucket: `qps` tokens per second, at most `burst` saved up. Paces requests; it measures
/// nothing, so it uses tokio's clock rather than the run clock.
#[derive(Debug)]
pub struct RateLimiter {
    interval: Duration,
    burst: u32,
    tokens: f64,
    refilled: Instant,
}

impl RateLimiter {
    pub fn new(qps: u32, burst: u32) -> Self {
        let qps = qps.max(1);
        RateLimiter {
            interval: Duration::from_secs_f64(1.0 / f64::from(qps)),
            burst: burst.max(1),
            tokens: f64::from(burst.max(1)),
            refilled: Instant::now(),
        }
    }

    /// Waits until a request may be sent.
    pub async fn acquire(&mut self) {
        loop {
            let now = Instant::now();
            let earned =
                now.duration_since(self.refilled).as_secs_f64() / self.interval.as_secs_f64();
            self.tokens = (self.tokens + earned).min(f64::from(self.burst));
            self.refilled = now;
            if self.tokens >= 1.0 {
                self.tokens -= 1.0;
                return;
            }
            let wait = self.interval.mul_f64(1.0 - self.tokens);
            tokio::time::sleep(wait).await;
        }
    }
}

/// What a request asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Create,
    Delete,
}

/// The outcome of one create or delete request.
#[derive(Debug, Clone)]
pub struct Request {
    pub verb: Verb,
    pub resource: Resource,
    pub namespace: Option<String>,
    pub name: String,
    /// Just before the request was sent: the action's t0.
    pub sent: MonoStamp,
    /// When the response arrived.
    pub answered: MonoStamp,
    /// The API's error, when the request failed.
    pub error: Option<String>,
    /// The API's HTTP status for a failed request (409 AlreadyExists, 403, ...), when it answered.
    pub error_code: Option<u16>,
    /// Attempts before this one that the API refused as transient (429, 5xx).
    pub retries: u32,
}

impl Request {
    /// t0's uncertainty: the request's round trip.
    pub fn uncertainty(&self) -> Duration {
        self.answered.since(self.sent).unwrap_or_default()
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    #[error("cannot apply {kind} {name}: unknown apiVersion {api_version}")]
    UnknownKind {
        api_version: String,
        kind: String,
        name: String,
    },
    #[error("rendered {kind} {name} is not a Kubernetes object")]
    NotAnObject {
        kind: String,
        name: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Sends creates and deletes, rate-limited, stamping each with the run clock.
pub struct Applier {
    /// A client that sends each request once (`Cluster::exact`): retries happen here.
    client: kube::Client,
    clock: RunClock,
    limiter: RateLimiter,
    retries: Arc<RetryCounts>,
}

/// The last attempt of one request.
struct Attempt<T> {
    sent: MonoStamp,
    answered: MonoStamp,
    result: Result<T, kube::Error>,
    retries: u32,
}

impl std::fmt::Debug for Applier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Applier")
            .field("limiter", &self.limiter)
            .finish_non_exhaustive()
    }
}

impl Applier {
    pub fn new(
        client: kube::Client,
        clock: RunClock,
        qps: u32,
        burst: u32,
        retries: Arc<RetryCounts>,
    ) -> Self {
        Applier {
            client,
            clock,
            limiter: RateLimiter::new(qps, burst),
            retries,
        }
    }

    /// Sends a request until the API answers something other than a transient failure (at most
    /// 1 + MAX_RETRIES times), each attempt rate-limited and stamped.
    async fn attempt<T, F, Fut>(&mut self, send: F) -> Attempt<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, kube::Error>>,
    {
        let mut retries = 0;
        loop {
            self.limiter.acquire().await;
            let sent = self.clock.now();
            let result = send().await;
            let answered = self.clock.now();
            match &result {
                Err(kube::Error::Api(status))
                    if is_transient(status.code) && retries < MAX_RETRIES =>
                {
                    self.retries.record(status.code);
                    let retry_after = status
                        .details
                        .as_ref()
                        .map(|d| u64::from(d.retry_after_seconds))
                        .filter(|s| *s > 0);
                    tracing::debug!(code = status.code, retries, "retrying a create or delete");
                    tokio::time::sleep(backoff(retries, retry_after)).await;
                    retries += 1;
                }
                _ => {
                    return Attempt {
                        sent,
                        answered,
                        result,
                        retries,
                    };
                }
            }
        }
    }

    fn api(&self, resource: &Resource, namespace: Option<&str>) -> Api<DynamicObject> {
        match (resource.namespaced, namespace) {
            (true, Some(ns)) => {
                Api::namespaced_with(self.client.clone(), ns, &resource.api_resource())
            }
            _ => Api::all_with(self.client.clone(), &resource.api_resource()),
        }
    }

    /// Creates one object (rate-limited). A refused create is returned as a `Request` with `error`.
    pub async fn create(&mut self, object: &serde_json::Value) -> Result<Request, ApplyError> {
        let api_version = object["apiVersion"].as_str().unwrap_or_default();
        let kind = object["kind"].as_str().unwrap_or_default();
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let resource = resource_for(api_version, kind).ok_or_else(|| ApplyError::UnknownKind {
            api_version: api_version.to_string(),
            kind: kind.to_string(),
            name: name.clone(),
        })?;
        let dynamic: DynamicObject =
            serde_json::from_value(object.clone()).map_err(|source| ApplyError::NotAnObject {
                kind: kind.to_string(),
                name: name.clone(),
                source,
            })?;
        let namespace = object["metadata"]["namespace"].as_str().map(str::to_string);
        let api = self.api(&resource, namespace.as_deref());
        let params = PostParams::default();
        let Attempt {
            sent,
            answered,
            mut result,
            retries,
        } = self.attempt(|| api.create(&params, &dynamic)).await;
        // A server can fail a create it has already stored (a 5xx after the write): the retry
        // then meets the object itself. It is this run's when it carries this object's run label.
        if retries > 0 && matches!(&result, Err(kube::Error::Api(status)) if status.code == 409) {
            let ours = object["metadata"]["labels"][crate::workload::labels::UUID].as_str();
            let found = self
                .owner_uuid(&resource, namespace.as_deref(), &name)
                .await;
            if ours.is_some() && found.as_deref() == ours {
                result = Ok(dynamic.clone());
            }
        }
        let error_code = match &result {
            Err(kube::Error::Api(status)) => Some(status.code),
            _ => None,
        };
        Ok(Request {
            verb: Verb::Create,
            resource,
            namespace,
            name,
            sent,
            answered,
            error: result.err().map(|e| describe(&e)),
            error_code,
            retries,
        })
    }

    /// Deletes one object (rate-limited, background propagation). A missing object is not an error.
    pub async fn delete(
        &mut self,
        resource: &Resource,
        namespace: Option<&str>,
        name: &str,
    ) -> Request {
        let api = self.api(resource, namespace);
        let params = DeleteParams::background();
        let Attempt {
            sent,
            answered,
            result,
            retries,
        } = self.attempt(|| api.delete(name, &params)).await;
        let (error, error_code) = match result {
            Ok(_) => (None, None),
            Err(kube::Error::Api(status)) if status.code == 404 => (None, None),
            Err(kube::Error::Api(status)) => {
                let code = status.code;
                (Some(describe(&kube::Error::Api(status))), Some(code))
            }
            Err(e) => (Some(describe(&e)), None),
        };
        Request {
            verb: Verb::Delete,
            resource: *resource,
            namespace: namespace.map(str::to_string),
            name: name.to_string(),
            sent,
            answered,
            error,
            error_code,
            retries,
        }
    }

    /// The run label (uuid) of an existing object, to name the run that owns it.
    pub async fn owner_uuid(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<String> {
        let object = self.api(resource, namespace).get(name).await.ok()?;
        object
            .metadata
            .labels?
            .get(crate::workload::labels::UUID)
            .cloned()
    }
}

/// A one-line description of a kube error, for results and logs.
pub fn describe(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) => {
            format!("{} {}: {}", status.code, status.reason, status.message)
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn limiter_allows_a_burst_then_paces_at_qps() {
        let mut limiter = RateLimiter::new(10, 5);
        let start = Instant::now();
        for _ in 0..5 {
            limiter.acquire().await;
        }
        assert!(
            start.elapsed() < Duration::from_millis(1),
            "the burst is immediate"
        );
        for _ in 0..10 {
            limiter.acquire().await;
        }
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_millis(990) && elapsed <= Duration::from_millis(1010),
            "10 more at 10 qps take ~1 s of virtual time, took {elapsed:?}"
        );
    }

    #[test]
    fn rendered_kinds_map_to_their_resources() {
        assert_eq!(
            resource_for("kubevirt.io/v1", "VirtualMachine"),
            Some(VIRTUAL_MACHINE)
        );
        assert_eq!(resource_for("v1", "Namespace"), Some(NAMESPACE));
        assert_eq!(
            resource_for("ipam.cluster.x-k8s.io/v1alpha1", "IPAMClaim"),
            None
        );
    }
}
