//! The running controller: watch caches (kube-runtime reflectors) for VMIs, IPAMClaims, CUDNs,
//! Namespaces, RouteAdvertisements and FRRConfigurations; on any change, while leading, one
//! reconcile computes the whole desired state and writes it make-before-break with server-side
//! apply, deletes stale configurations, updates metrics, and records Events on VMs whose route
//! could not be advertised.
//!
//! The desired state is global (a node's configuration depends on every VM on it), so instead of
//! kube-runtime's per-object `Controller`, changes only wake one reconcile loop; a burst of events
//! coalesces into one reconcile.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams};
use kube::discovery::ApiResource;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde_json::Value;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::desired::{
    Desired, NODE_ANNOTATION, NodeAdvertisement, STATUS_ANNOTATION, Settings, VmRef, config_name,
    desired_state, render_object,
};
use crate::http::Health;
use crate::inputs::{Inputs, RA_GENERATED_LABEL, RawObjects};
use crate::metrics::{Metrics, NodeLabel};
use crate::plan::{Write, plan};

/// Field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "vmbgp-controller";

/// An API resource by group, version, kind and plural (`apiVersion` derived).
pub fn api_resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: group.to_string(),
        version: version.to_string(),
        api_version: if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        },
        kind: kind.to_string(),
        plural: plural.to_string(),
    }
}

pub fn vmi_resource() -> ApiResource {
    api_resource(
        "kubevirt.io",
        "v1",
        "VirtualMachineInstance",
        "virtualmachineinstances",
    )
}
pub fn claim_resource() -> ApiResource {
    api_resource("k8s.cni.cncf.io", "v1alpha1", "IPAMClaim", "ipamclaims")
}
pub fn cudn_resource() -> ApiResource {
    api_resource(
        "k8s.ovn.org",
        "v1",
        "ClusterUserDefinedNetwork",
        "clusteruserdefinednetworks",
    )
}
pub fn ra_resource() -> ApiResource {
    api_resource(
        "k8s.ovn.org",
        "v1",
        "RouteAdvertisements",
        "routeadvertisements",
    )
}
pub fn frr_resource() -> ApiResource {
    api_resource(
        "frrk8s.metallb.io",
        "v1beta1",
        "FRRConfiguration",
        "frrconfigurations",
    )
}
pub fn namespace_resource() -> ApiResource {
    api_resource("", "v1", "Namespace", "namespaces")
}

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("writing FRRConfiguration {name}: {source}")]
    Write { name: String, source: kube::Error },
    #[error("deleting FRRConfiguration {name}: {source}")]
    Delete { name: String, source: kube::Error },
    #[error("a watch cache stopped before its first list")]
    CacheNeverReady,
}

/// The watch caches.
#[derive(Debug, Clone)]
struct Caches {
    vmis: Store<DynamicObject>,
    claims: Store<DynamicObject>,
    networks: Store<DynamicObject>,
    namespaces: Store<DynamicObject>,
    advertisements: Store<DynamicObject>,
    generated: Store<DynamicObject>,
    ours: Store<DynamicObject>,
}

fn json_of(object: &DynamicObject) -> Value {
    serde_json::to_value(object).unwrap_or(Value::Null)
}

impl Caches {
    fn inputs(&self) -> (Inputs, Vec<String>) {
        let values = |store: &Store<DynamicObject>| -> Vec<Value> {
            store.state().iter().map(|o| json_of(o)).collect()
        };
        Inputs::from_objects(&RawObjects {
            vmis: values(&self.vmis),
            claims: values(&self.claims),
            networks: values(&self.networks),
            namespaces: values(&self.namespaces),
            advertisements: values(&self.advertisements),
            generated: values(&self.generated),
        })
    }

    /// Our configurations in the cluster: (node → advertisement) and names to delete because
    /// they carry no node or a name that is not the node's.
    fn written(&self) -> (BTreeMap<String, NodeAdvertisement>, Vec<String>) {
        let mut by_node = BTreeMap::new();
        let mut strays = Vec::new();
        for object in self.ours.state() {
            let name = object.metadata.name.clone().unwrap_or_default();
            let node = object
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(NODE_ANNOTATION).cloned());
            match node {
                Some(node) if config_name(&node) == name => {
                    let spec = object.data.get("spec").cloned().unwrap_or(Value::Null);
                    by_node.insert(node, NodeAdvertisement::parse_spec(&spec));
                }
                _ => strays.push(name),
            }
        }
        (by_node, strays)
    }

    fn status_annotation(&self, node: &str) -> Option<String> {
        self.ours
            .state()
            .iter()
            .find(|o| o.metadata.name.as_deref() == Some(config_name(node).as_str()))
            .and_then(|o| o.metadata.annotations.as_ref())
            .and_then(|a| a.get(STATUS_ANNOTATION).cloned())
    }
}

/// What a cache keeps of every object: no managed fields (the server's bookkeeping, often the
/// largest part), and for VMIs only what the inputs read.
fn keep(object: &mut DynamicObject, kind: &str) {
    object.metadata.managed_fields = None;
    if kind == "VirtualMachineInstance" {
        crate::inputs::keep_what_vmis_need(&mut object.data);
    }
}

/// Starts a reflector for `api` that wakes `wake` on every event.
fn spawn_cache(
    api: Api<DynamicObject>,
    resource: &ApiResource,
    config: watcher::Config,
    wake: Arc<Notify>,
    stop: &CancellationToken,
) -> Store<DynamicObject> {
    let writer = reflector::store::Writer::new(resource.clone());
    let reader = writer.as_reader();
    let kind = resource.kind.clone();
    let kept = kind.clone();
    let trimmed = watcher(api, config).modify(move |object| keep(object, &kept));
    let stream = reflector::reflector(writer, trimmed).default_backoff();
    let stop = stop.clone();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                event = stream.next() => match event {
                    Some(Ok(_)) => wake.notify_one(),
                    Some(Err(error)) => tracing::warn!(%kind, %error, "watch failed; retrying"),
                    None => break,
                },
            }
        }
    });
    reader
}

/// Everything the reconcile loop keeps between runs.
pub struct Controller {
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    recorder: Recorder,
    /// What this leader last wrote, by node; `None` until read from the cache (on every
    /// leadership gain and after a failed write), because the cache may lag our own writes.
    written: Option<BTreeMap<String, NodeAdvertisement>>,
    /// Migration uids already counted.
    followed: BTreeSet<String>,
    /// The reason last reported per VM, so an Event is recorded once per change.
    reported: HashMap<VmRef, String>,
    warned: BTreeSet<String>,
    /// Receives a copy of every Event recorded (see [`Controller::tap_events`]).
    event_tap: Option<tokio::sync::mpsc::UnboundedSender<RecordedEvent>>,
}

/// An Event the controller recorded on a VMI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    pub vm: VmRef,
    pub reason: String,
    pub note: String,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("settings", &self.settings)
            .field("written_nodes", &self.written.as_ref().map(BTreeMap::len))
            .finish_non_exhaustive()
    }
}

impl Controller {
    pub fn new(client: Client, settings: Settings, metrics: Arc<Metrics>) -> Controller {
        let reporter = Reporter {
            controller: FIELD_MANAGER.to_string(),
            instance: Some(settings.instance.clone()),
        };
        Controller {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            settings,
            metrics,
            written: None,
            followed: BTreeSet::new(),
            reported: HashMap::new(),
            warned: BTreeSet::new(),
            event_tap: None,
        }
    }

    /// A copy of every Event from now on, as recorded (also when the API refuses Events).
    pub fn tap_events(&mut self) -> tokio::sync::mpsc::UnboundedReceiver<RecordedEvent> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        self.event_tap = Some(tx);
        rx
    }

    /// Watches and reconciles until `stop`; writes only while `leading` is true.
    pub async fn run(
        mut self,
        health: Arc<Health>,
        mut leading: watch::Receiver<bool>,
        resync: Duration,
        stop: CancellationToken,
    ) -> Result<(), ControllerError> {
        let wake = Arc::new(Notify::new());
        let c = &self.client;
        let frr_ns = self.settings.frr_namespace.clone();
        let all = watcher::Config::default();
        let caches = Caches {
            vmis: spawn_cache(
                Api::all_with(c.clone(), &vmi_resource()),
                &vmi_resource(),
                all.clone(),
                wake.clone(),
                &stop,
            ),
            claims: spawn_cache(
                Api::all_with(c.clone(), &claim_resource()),
                &claim_resource(),
                all.clone(),
                wake.clone(),
                &stop,
            ),
            networks: spawn_cache(
                Api::all_with(c.clone(), &cudn_resource()),
                &cudn_resource(),
                all.clone(),
                wake.clone(),
                &stop,
            ),
            namespaces: spawn_cache(
                Api::all_with(c.clone(), &namespace_resource()),
                &namespace_resource(),
                all.clone(),
                wake.clone(),
                &stop,
            ),
            advertisements: spawn_cache(
                Api::all_with(c.clone(), &ra_resource()),
                &ra_resource(),
                all.clone(),
                wake.clone(),
                &stop,
            ),
            generated: spawn_cache(
                Api::namespaced_with(c.clone(), &frr_ns, &frr_resource()),
                &frr_resource(),
                watcher::Config::default().labels(RA_GENERATED_LABEL),
                wake.clone(),
                &stop,
            ),
            ours: spawn_cache(
                Api::namespaced_with(c.clone(), &frr_ns, &frr_resource()),
                &frr_resource(),
                watcher::Config::default().labels(&self.settings.owned_selector()),
                wake.clone(),
                &stop,
            ),
        };
        let synced = async {
            for store in [
                &caches.vmis,
                &caches.claims,
                &caches.networks,
                &caches.namespaces,
                &caches.advertisements,
                &caches.generated,
                &caches.ours,
            ] {
                store
                    .wait_until_ready()
                    .await
                    .map_err(|_| ControllerError::CacheNeverReady)?;
            }
            Ok::<(), ControllerError>(())
        };
        tokio::select! {
            r = synced => r?,
            _ = stop.cancelled() => return Ok(()),
        }
        health.ready.store(true, Ordering::Relaxed);
        let mut retry_at: Option<Instant> = None;
        loop {
            let retry = async {
                match retry_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = wake.notified() => {}
                _ = retry => {}
                _ = tokio::time::sleep(resync) => {}
                changed = leading.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    // A new term: what we wrote before may have been changed by another leader.
                    self.written = None;
                }
            }
            let is_leader = *leading.borrow();
            self.metrics.leader.set(i64::from(is_leader));
            if !is_leader {
                continue;
            }
            let started = Instant::now();
            let result = self.reconcile(&caches).await;
            self.metrics
                .reconcile_duration
                .observe(started.elapsed().as_secs_f64());
            retry_at = match result {
                Ok(()) => None,
                Err(error) => {
                    self.metrics.reconcile_errors.inc();
                    self.written = None;
                    tracing::warn!(%error, "reconcile failed; retrying in 1 s");
                    Some(Instant::now() + Duration::from_secs(1))
                }
            };
        }
    }

    async fn apply(
        &self,
        node: &str,
        advertisement: &NodeAdvertisement,
    ) -> Result<(), ControllerError> {
        let object = render_object(&self.settings, node, advertisement);
        let name = config_name(node);
        let api: Api<DynamicObject> = Api::namespaced_with(
            self.client.clone(),
            &self.settings.frr_namespace,
            &frr_resource(),
        );
        api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&object),
        )
        .await
        .map(|_| ())
        .map_err(|source| ControllerError::Write { name, source })
    }

    async fn delete(&self, node: &str) -> Result<(), ControllerError> {
        self.delete_named(&config_name(node)).await
    }

    async fn delete_named(&self, name: &str) -> Result<(), ControllerError> {
        let api: Api<DynamicObject> = Api::namespaced_with(
            self.client.clone(),
            &self.settings.frr_namespace,
            &frr_resource(),
        );
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(source) => Err(ControllerError::Delete {
                name: name.to_string(),
                source,
            }),
        }
    }

    async fn execute(&mut self, write: &Write) -> Result<(), ControllerError> {
        let result = match write {
            Write::Apply {
                node,
                advertisement,
            } => self.apply(node, advertisement).await,
            Write::Delete { node } => self.delete(node).await,
        };
        if let (Ok(()), Some(written)) = (&result, self.written.as_mut()) {
            match write {
                Write::Apply {
                    node,
                    advertisement,
                } => {
                    written.insert(node.clone(), advertisement.clone());
                }
                Write::Delete { node } => {
                    written.remove(node);
                }
            }
        }
        result
    }

    /// One pass: desired state, make, break, status, metrics, events.
    async fn reconcile(&mut self, caches: &Caches) -> Result<(), ControllerError> {
        let (inputs, problems) = caches.inputs();
        let desired = desired_state(&self.settings, &inputs);
        for text in problems.iter().chain(&desired.warnings) {
            if self.warned.insert(text.clone()) {
                tracing::warn!("{text}");
            }
        }
        let (cached, strays) = caches.written();
        let written = self.written.get_or_insert(cached).clone();
        let steps = plan(&written, &desired.nodes);
        // Additions are independent of each other: one node's refused write (e.g. frr-k8s's
        // admission webhook rejecting that node's merged configuration) must not hold back the
        // others. Withdrawals wait until every addition succeeded.
        let mut first_error = None;
        for write in &steps.make {
            if let Err(error) = self.execute(write).await {
                tracing::warn!(%error, "addition failed; withdrawals wait for the retry");
                first_error.get_or_insert(error);
            }
        }
        if let Some(error) = first_error {
            return Err(error);
        }
        // Every target now advertises its migrated VMs (written just now or before).
        self.count_followed_migrations(&desired);
        if steps.overlap() {
            self.metrics.make_before_break_overlaps.inc();
            tracing::debug!(
                adds = steps.make.len(),
                withdrawals = steps.brk.len(),
                "make-before-break: new routes written before old ones are withdrawn"
            );
        }
        for write in &steps.brk {
            self.execute(write).await?;
        }
        for stray in strays {
            self.delete_named(&stray).await?;
        }
        // Status-only changes (VM count, cap figures) that moved no route.
        let touched: BTreeSet<&str> = steps
            .make
            .iter()
            .chain(&steps.brk)
            .filter_map(|w| match w {
                Write::Apply { node, .. } => Some(node.as_str()),
                Write::Delete { .. } => None,
            })
            .collect();
        for (node, advertisement) in &desired.nodes {
            if touched.contains(node.as_str()) {
                continue;
            }
            let want = render_object(&self.settings, node, advertisement);
            let want_status = want
                .pointer(&format!(
                    "/metadata/annotations/{}",
                    STATUS_ANNOTATION.replace('/', "~1")
                ))
                .and_then(Value::as_str)
                .map(str::to_string);
            if caches.status_annotation(node) != want_status {
                self.apply(node, advertisement).await?;
            }
        }
        self.update_metrics(&desired, &written);
        self.record_events(&desired).await;
        Ok(())
    }

    fn count_followed_migrations(&mut self, desired: &Desired) {
        let current: BTreeSet<String> = desired
            .migrations
            .iter()
            .map(|m| m.migration.uid.clone())
            .collect();
        for followed in &desired.migrations {
            if !self.followed.insert(followed.migration.uid.clone()) {
                continue;
            }
            self.metrics.migrations_followed.inc();
            let ended = followed
                .migration
                .end_timestamp
                .as_deref()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
            if let Some(ended) = ended {
                let seconds = (chrono::Utc::now() - ended.to_utc())
                    .num_microseconds()
                    .map_or(0.0, |us| us.max(0) as f64 / 1e6);
                self.metrics.migration_follow_seconds.observe(seconds);
            }
            tracing::info!(vm = %followed.vm, from = %followed.migration.source_node,
                to = %followed.migration.target_node, "host route followed the migration");
        }
        // Forget migrations no VMI reports any more (bounded memory).
        self.followed.retain(|uid| current.contains(uid));
    }

    fn update_metrics(&self, desired: &Desired, previously: &BTreeMap<String, NodeAdvertisement>) {
        for node in previously
            .keys()
            .filter(|n| !desired.nodes.contains_key(*n))
        {
            let label = NodeLabel { node: node.clone() };
            self.metrics.routes_advertised.remove(&label);
            self.metrics.node_capped.remove(&label);
        }
        for (node, advertisement) in &desired.nodes {
            let label = NodeLabel { node: node.clone() };
            self.metrics
                .routes_advertised
                .get_or_create(&label)
                .set(i64::try_from(advertisement.host_route_count()).unwrap_or(i64::MAX));
            self.metrics
                .node_capped
                .get_or_create(&label)
                .set(i64::from(advertisement.capped.is_some()));
        }
        self.metrics
            .not_advertised_vms
            .set(i64::try_from(desired.not_advertised.len()).unwrap_or(i64::MAX));
    }

    async fn record_events(&mut self, desired: &Desired) {
        self.reported
            .retain(|vm, _| desired.not_advertised.contains_key(vm));
        for (vm, reason) in &desired.not_advertised {
            let text = reason.to_string();
            if self.reported.get(vm) == Some(&text) {
                continue;
            }
            self.reported.insert(vm.clone(), text.clone());
            let reference = ObjectReference {
                api_version: Some("kubevirt.io/v1".into()),
                kind: Some("VirtualMachineInstance".into()),
                namespace: Some(vm.namespace.clone()),
                name: Some(vm.name.clone()),
                ..ObjectReference::default()
            };
            let event = Event {
                type_: EventType::Warning,
                reason: reason.event_reason().to_string(),
                note: Some(text),
                action: "AdvertiseHostRoute".into(),
                secondary: None,
            };
            if let Some(tap) = &self.event_tap {
                let _ = tap.send(RecordedEvent {
                    vm: vm.clone(),
                    reason: event.reason.clone(),
                    note: event.note.clone().unwrap_or_default(),
                });
            }
            // A refused Event (RBAC, an API without events.k8s.io) must not stop routing; the
            // metric still counts.
            if let Err(error) = self.recorder.publish(&event, &reference).await {
                tracing::debug!(%vm, %error, "could not record the Event");
            }
        }
    }
}
