//! Leader election over one `coordination.k8s.io/v1` Lease, so that of several replicas exactly
//! one writes FRRConfigurations. The rules are client-go's: the holder renews every
//! `retry_period`; another candidate takes over once it has seen the same record unchanged for
//! `lease_duration` (measured on its own monotonic clock, so clock skew between replicas does not
//! matter); every write is a compare-and-swap on `resourceVersion`, so two candidates cannot both
//! win; a holder that stops cleanly releases the Lease so a successor need not wait.
//!
//! Implemented here rather than with `kube-lease-manager` (which supports kube 5) so the same
//! logic runs against a [`LeaseStore`] that unit tests can back without an API server (paused
//! clocks); against a server, including the lab, it is [`KubeLeaseStore`].

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::PostParams;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The Lease record as candidates compare it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    /// Empty when released.
    pub holder: String,
    pub lease_duration_seconds: i32,
    pub transitions: i32,
    /// Opaque version for compare-and-swap.
    pub version: String,
    /// Changes on every renewal, so a follower can tell a live holder from a dead one.
    pub renew_marker: String,
    /// When the current holder acquired it (RFC 3339), kept across renewals; `None` for a new
    /// term, which the store stamps with the write time.
    pub acquired_at: Option<String>,
}

/// Why a Lease operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Someone else wrote first; re-read and retry.
    #[error("the Lease changed concurrently")]
    Conflict,
    #[error("Lease API: {0}")]
    Api(#[from] kube::Error),
}

/// Where the Lease lives.
pub trait LeaseStore: Send + Sync {
    fn get(&self) -> impl Future<Output = Result<Option<Record>, LeaseError>> + Send;
    /// Creates the Lease; `Conflict` when it exists.
    fn create(&self, record: &Record) -> impl Future<Output = Result<Record, LeaseError>> + Send;
    /// Replaces it if its version is still `record.version`; `Conflict` otherwise.
    fn replace(&self, record: &Record) -> impl Future<Output = Result<Record, LeaseError>> + Send;
}

/// Timing, as client-go's `LeaderElectionConfig`.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub lease_duration: Duration,
    pub retry_period: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            lease_duration: Duration::from_secs(15),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// One candidate.
#[derive(Debug)]
pub struct Elector<S> {
    store: S,
    identity: String,
    timing: Timing,
    /// The last record seen and when it was first seen (monotonic).
    observed: Option<(Record, Instant)>,
    renewals: u64,
}

impl<S: LeaseStore> Elector<S> {
    pub fn new(store: S, identity: &str, timing: Timing) -> Self {
        Elector {
            store,
            identity: identity.to_string(),
            timing,
            observed: None,
            renewals: 0,
        }
    }

    fn fresh(&mut self, transitions: i32) -> Record {
        self.renewals += 1;
        Record {
            holder: self.identity.clone(),
            lease_duration_seconds: i32::try_from(self.timing.lease_duration.as_secs())
                .unwrap_or(i32::MAX)
                .max(1),
            transitions,
            version: String::new(),
            renew_marker: format!("{}#{}", self.identity, self.renewals),
            acquired_at: None,
        }
    }

    /// One round: acquire, renew or observe. Returns whether this candidate leads now.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, LeaseError> {
        let now = Instant::now();
        let Some(current) = self.store.get().await? else {
            let record = self.fresh(0);
            return match self.store.create(&record).await {
                Ok(written) => {
                    self.observed = Some((written, now));
                    Ok(true)
                }
                Err(LeaseError::Conflict) => Ok(false),
                Err(e) => Err(e),
            };
        };
        let changed = self.observed.as_ref().is_none_or(|(seen, _)| {
            seen.holder != current.holder || seen.renew_marker != current.renew_marker
        });
        if changed {
            self.observed = Some((current.clone(), now));
        }
        let seen_at = self.observed.as_ref().map_or(now, |(_, at)| *at);
        let duration =
            Duration::from_secs(u64::try_from(current.lease_duration_seconds.max(1)).unwrap_or(1));
        let mine = current.holder == self.identity;
        let free = current.holder.is_empty() || now.duration_since(seen_at) >= duration;
        if !mine && !free {
            return Ok(false);
        }
        let transitions = if mine {
            current.transitions
        } else {
            current.transitions.saturating_add(1)
        };
        let mut record = self.fresh(transitions);
        record.version = current.version;
        if mine {
            record.acquired_at = current.acquired_at;
        }
        match self.store.replace(&record).await {
            Ok(written) => {
                self.observed = Some((written, now));
                Ok(true)
            }
            Err(LeaseError::Conflict) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the Lease up if this candidate holds it (a clean stop).
    pub async fn release(&mut self) -> Result<(), LeaseError> {
        let Some(current) = self.store.get().await? else {
            return Ok(());
        };
        if current.holder != self.identity {
            return Ok(());
        }
        let record = Record {
            holder: String::new(),
            renew_marker: String::new(),
            acquired_at: None,
            ..current
        };
        match self.store.replace(&record).await {
            Ok(_) | Err(LeaseError::Conflict) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Runs rounds every `retry_period` until `stop`, publishing leadership on `leading`. A holder
    /// that fails to renew within the lease duration steps down before anyone can take over.
    pub async fn run(mut self, leading: watch::Sender<bool>, stop: CancellationToken) {
        let mut last_renewed: Option<Instant> = None;
        loop {
            let is_leader = match self.try_acquire_or_renew().await {
                Ok(true) => {
                    last_renewed = Some(Instant::now());
                    true
                }
                Ok(false) => false,
                Err(error) => {
                    tracing::warn!(%error, "leader election round failed");
                    // Keep leading only while the last renewal is surely still valid for others.
                    last_renewed.is_some_and(|t| t.elapsed() < self.timing.lease_duration / 2)
                }
            };
            if !is_leader {
                last_renewed = None;
            }
            leading.send_if_modified(|l| std::mem::replace(l, is_leader) != is_leader);
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(self.timing.retry_period) => {}
            }
        }
        leading.send_if_modified(|l| std::mem::replace(l, false));
        if let Err(error) = self.release().await {
            tracing::warn!(%error, "could not release the Lease");
        }
    }
}

/// The Lease in a cluster.
#[derive(Debug, Clone)]
pub struct KubeLeaseStore {
    api: Api<Lease>,
    name: String,
}

impl KubeLeaseStore {
    pub fn new(client: kube::Client, namespace: &str, name: &str) -> Self {
        KubeLeaseStore {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
        }
    }

    fn to_lease(&self, record: &Record) -> Lease {
        // Kubernetes MicroTime; the renew time doubles as the renewal marker for readers like
        // kubectl, while candidates compare `renew_marker` below.
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                resource_version: (!record.version.is_empty()).then(|| record.version.clone()),
                annotations: Some(
                    [(RENEW_MARKER.to_string(), record.renew_marker.clone())]
                        .into_iter()
                        .collect(),
                ),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: (!record.holder.is_empty()).then(|| record.holder.clone()),
                lease_duration_seconds: Some(record.lease_duration_seconds),
                lease_transitions: Some(record.transitions),
                renew_time: (!record.holder.is_empty()).then(|| now.clone()),
                acquire_time: (!record.holder.is_empty()).then(|| {
                    record
                        .acquired_at
                        .as_deref()
                        .and_then(|t| t.parse().ok())
                        .map_or_else(|| now.clone(), MicroTime)
                }),
                ..LeaseSpec::default()
            }),
        }
    }
}

const RENEW_MARKER: &str = "vmbgp.io/renew-marker";

fn from_lease(lease: &Lease) -> Record {
    let spec = lease.spec.clone().unwrap_or_default();
    Record {
        holder: spec.holder_identity.unwrap_or_default(),
        lease_duration_seconds: spec.lease_duration_seconds.unwrap_or(15),
        transitions: spec.lease_transitions.unwrap_or(0),
        version: lease.metadata.resource_version.clone().unwrap_or_default(),
        renew_marker: lease
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(RENEW_MARKER).cloned())
            .or_else(|| spec.renew_time.map(|t| t.0.to_string()))
            .unwrap_or_default(),
        acquired_at: spec.acquire_time.map(|t| t.0.to_string()),
    }
}

fn conflict_or(error: kube::Error) -> LeaseError {
    match &error {
        kube::Error::Api(status) if status.code == 409 => LeaseError::Conflict,
        _ => LeaseError::Api(error),
    }
}

impl LeaseStore for KubeLeaseStore {
    async fn get(&self) -> Result<Option<Record>, LeaseError> {
        Ok(self.api.get_opt(&self.name).await?.as_ref().map(from_lease))
    }

    async fn create(&self, record: &Record) -> Result<Record, LeaseError> {
        let lease = self.to_lease(record);
        self.api
            .create(&PostParams::default(), &lease)
            .await
            .map(|l| from_lease(&l))
            .map_err(conflict_or)
    }

    async fn replace(&self, record: &Record) -> Result<Record, LeaseError> {
        let lease = self.to_lease(record);
        self.api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
            .map(|l| from_lease(&l))
            .map_err(conflict_or)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A Lease with the API server's compare-and-swap rule.
    #[derive(Debug, Clone, Default)]
    struct MemoryLease(Arc<Mutex<Option<Record>>>);

    impl MemoryLease {
        fn holder(&self) -> Option<String> {
            self.0
                .lock()
                .map(|l| l.as_ref().map(|r| r.holder.clone()))
                .unwrap_or_default()
        }
    }

    impl LeaseStore for MemoryLease {
        async fn get(&self) -> Result<Option<Record>, LeaseError> {
            Ok(self.0.lock().map_err(|_| LeaseError::Conflict)?.clone())
        }
        async fn create(&self, record: &Record) -> Result<Record, LeaseError> {
            let mut slot = self.0.lock().map_err(|_| LeaseError::Conflict)?;
            if slot.is_some() {
                return Err(LeaseError::Conflict);
            }
            let written = Record {
                version: "1".into(),
                ..record.clone()
            };
            *slot = Some(written.clone());
            Ok(written)
        }
        async fn replace(&self, record: &Record) -> Result<Record, LeaseError> {
            let mut slot = self.0.lock().map_err(|_| LeaseError::Conflict)?;
            let current = slot.as_ref().ok_or(LeaseError::Conflict)?;
            if current.version != record.version {
                return Err(LeaseError::Conflict);
            }
            let next: u64 = current.version.parse().unwrap_or(0) + 1;
            let written = Record {
                version: next.to_string(),
                ..record.clone()
            };
            *slot = Some(written.clone());
            Ok(written)
        }
    }

    fn timing() -> Timing {
        Timing {
            lease_duration: Duration::from_secs(15),
            retry_period: Duration::from_secs(2),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn one_leader_at_a_time_and_takeover_after_expiry() {
        let lease = MemoryLease::default();
        let mut a = Elector::new(lease.clone(), "a", timing());
        let mut b = Elector::new(lease.clone(), "b", timing());
        assert!(a.try_acquire_or_renew().await.expect("round"));
        assert!(!b.try_acquire_or_renew().await.expect("round"));
        // a keeps renewing: b never takes over, however long it watches.
        for _ in 0..20 {
            tokio::time::advance(Duration::from_secs(2)).await;
            assert!(a.try_acquire_or_renew().await.expect("round"));
            assert!(!b.try_acquire_or_renew().await.expect("round"));
        }
        // a dies without releasing: b waits out the lease duration from its own observation.
        tokio::time::advance(Duration::from_secs(14)).await;
        assert!(!b.try_acquire_or_renew().await.expect("round"));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(b.try_acquire_or_renew().await.expect("round"));
        assert_eq!(lease.holder().as_deref(), Some("b"));
        // a comes back: it sees b renewing and stays a follower.
        assert!(!a.try_acquire_or_renew().await.expect("round"));
        let transitions = lease
            .0
            .lock()
            .map(|l| l.as_ref().map(|r| r.transitions))
            .expect("lock");
        assert_eq!(transitions, Some(1));
    }

    #[tokio::test(start_paused = true)]
    async fn second_instance_takes_over_when_the_first_stops() {
        let lease = MemoryLease::default();
        let (a_tx, mut a_rx) = watch::channel(false);
        let (b_tx, mut b_rx) = watch::channel(false);
        let a_stop = CancellationToken::new();
        let b_stop = CancellationToken::new();
        let a = tokio::spawn(Elector::new(lease.clone(), "a", timing()).run(a_tx, a_stop.clone()));
        a_rx.wait_for(|l| *l).await.expect("a leads");
        let b = tokio::spawn(Elector::new(lease.clone(), "b", timing()).run(b_tx, b_stop.clone()));
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!*b_rx.borrow(), "b must not lead while a renews");
        assert_eq!(lease.holder().as_deref(), Some("a"));
        let stopped_at = Instant::now();
        a_stop.cancel();
        a.await.expect("a stops");
        assert!(!*a_rx.borrow());
        b_rx.wait_for(|l| *l).await.expect("b leads");
        // A clean stop releases the Lease: b takes over on its next round, not after expiry.
        assert!(stopped_at.elapsed() <= timing().retry_period);
        assert_eq!(lease.holder().as_deref(), Some("b"));
        b_stop.cancel();
        b.await.expect("b stops");
        assert_eq!(lease.holder().as_deref(), Some(""));
    }
}
