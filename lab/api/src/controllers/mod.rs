//! The simulated cluster controllers and what they share: a context, a de-duplicating work queue and a
//! list-then-watch loop over the in-process store (the same event stream HTTP watchers see).

pub mod ipam;
pub mod kubevirt;
pub mod ovnk;
pub mod views;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api_ground_truth::GroundTruth;
use crate::dataplane::Dataplane;
use crate::error::LabError;
use crate::launch::LabConfig;
use crate::registry::KindId;
use crate::store::{ObjMeta, Store, WatchEvent};

/// Kind ids the controllers use.
#[derive(Debug, Clone, Copy)]
pub struct Kinds {
    pub namespace: KindId,
    pub node: KindId,
    pub vm: KindId,
    pub vmi: KindId,
    pub vmim: KindId,
    pub claim: KindId,
    pub nad: KindId,
    pub cudn: KindId,
    pub ra: KindId,
    pub frr: KindId,
}

/// Shared controller context.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub store: Arc<Store>,
    pub gt: Arc<GroundTruth>,
    pub dataplane: Arc<dyn Dataplane>,
    pub config: Arc<LabConfig>,
    pub shutdown: CancellationToken,
    pub k: Kinds,
    pub ipam: Arc<Mutex<ipam::Allocator>>,
}

impl Ctx {
    pub fn new(
        store: Arc<Store>,
        gt: Arc<GroundTruth>,
        dataplane: Arc<dyn Dataplane>,
        config: Arc<LabConfig>,
        shutdown: CancellationToken,
    ) -> Result<Ctx, LabError> {
        let id = |av: &str, kind: &str| {
            store
                .kind_id(av, kind)
                .ok_or_else(|| LabError::Config(format!("the lab does not serve {av} {kind}")))
        };
        let k = Kinds {
            namespace: id("v1", "Namespace")?,
            node: id("v1", "Node")?,
            vm: id("kubevirt.io/v1", "VirtualMachine")?,
            vmi: id("kubevirt.io/v1", "VirtualMachineInstance")?,
            vmim: id("kubevirt.io/v1", "VirtualMachineInstanceMigration")?,
            claim: id("k8s.cni.cncf.io/v1alpha1", "IPAMClaim")?,
            nad: id("k8s.cni.cncf.io/v1", "NetworkAttachmentDefinition")?,
            cudn: id("k8s.ovn.org/v1", "ClusterUserDefinedNetwork")?,
            ra: id("k8s.ovn.org/v1", "RouteAdvertisements")?,
            frr: id("frrk8s.metallb.io/v1beta1", "FRRConfiguration")?,
        };
        Ok(Ctx {
            store,
            gt,
            dataplane,
            config,
            shutdown,
            k,
            ipam: Arc::new(Mutex::new(ipam::Allocator::default())),
        })
    }
}

/// Starts every controller on `tasks`.
pub fn spawn_all(ctx: Ctx, tasks: &TaskTracker) {
    views::register(&ctx.store, &ctx.k);
    kubevirt::spawn(ctx.clone(), tasks);
    ipam::spawn(ctx.clone(), tasks);
    ovnk::spawn(ctx, tasks);
}

/// A de-duplicating work queue: pushing a key already pending is a no-op.
#[derive(Debug)]
pub struct WorkQueue<K: Ord> {
    pending: Mutex<BTreeSet<K>>,
    notify: Notify,
}

impl<K: Ord + Clone> WorkQueue<K> {
    pub fn new() -> Arc<Self> {
        Arc::new(WorkQueue {
            pending: Mutex::new(BTreeSet::new()),
            notify: Notify::new(),
        })
    }

    pub fn push(&self, key: K) {
        if let Ok(mut p) = self.pending.lock() {
            p.insert(key);
        }
        self.notify.notify_one();
    }

    /// Pushes `key` after `delay` (a timer task that ends on shutdown).
    pub fn push_after(self: &Arc<Self>, key: K, delay: Duration, shutdown: &CancellationToken)
    where
        K: Send + 'static,
    {
        let q = self.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(delay) => q.push(key),
                _ = stop.cancelled() => {}
            }
        });
    }

    /// Waits for work, then takes every pending key. `None` on shutdown.
    pub async fn take(&self, shutdown: &CancellationToken) -> Option<Vec<K>> {
        loop {
            let batch: Vec<K> = match self.pending.lock() {
                Ok(mut p) => std::mem::take(&mut *p).into_iter().collect(),
                Err(_) => Vec::new(),
            };
            if !batch.is_empty() {
                return Some(batch);
            }
            tokio::select! {
                _ = self.notify.notified() => {}
                _ = shutdown.cancelled() => return None,
            }
        }
    }
}

/// Lists `kind` and follows its events, mapping each object's metadata (and the event) to queue keys; re-lists
/// after lag. Only metadata is mapped, so neither events nor a re-list of 10,000 objects parse any JSON.
pub fn watch_kind<K, F>(
    ctx: &Ctx,
    tasks: &TaskTracker,
    kind: KindId,
    queue: Arc<WorkQueue<K>>,
    map: F,
) where
    K: Ord + Clone + Send + 'static,
    F: Fn(&ObjMeta, Option<&WatchEvent>) -> Vec<K> + Send + Sync + 'static,
{
    let store = ctx.store.clone();
    let stop = ctx.shutdown.clone();
    tasks.spawn(async move {
        loop {
            let (metas, mut rx) = store.metas_and_subscribe(kind);
            for m in &metas {
                for k in map(m, None) {
                    queue.push(k);
                }
            }
            drop(metas);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    r = rx.recv() => match r {
                        Ok(ev) => for k in map(&ev.meta, Some(&ev)) { queue.push(k) },
                        Err(RecvError::Lagged(_)) => break,
                        Err(RecvError::Closed) => return,
                    }
                }
            }
        }
    });
}

/// `(namespace, name)` of an object's metadata.
pub fn meta_key(m: &ObjMeta) -> (String, String) {
    (m.namespace.clone(), m.name.clone())
}

/// `(namespace, name)` of an object.
pub fn ns_name(o: &Value) -> (String, String) {
    (
        o.pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        o.pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
    )
}

pub fn str_at<'a>(o: &'a Value, pointer: &str) -> Option<&'a str> {
    o.pointer(pointer).and_then(Value::as_str)
}

pub fn is_deleting(o: &Value) -> bool {
    o.pointer("/metadata/deletionTimestamp").is_some()
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A controller ownerReference to `owner`.
pub fn owner_ref(owner: &Value) -> Value {
    json!({
        "apiVersion": owner.get("apiVersion").cloned().unwrap_or(Value::Null),
        "kind": owner.get("kind").cloned().unwrap_or(Value::Null),
        "name": owner.pointer("/metadata/name").cloned().unwrap_or(Value::Null),
        "uid": owner.pointer("/metadata/uid").cloned().unwrap_or(Value::Null),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// A controller ownerReference to the `kind` object with metadata `owner` (what [`owner_ref`] builds from the
/// whole object: the store holds every object at its kind's apiVersion).
pub fn owner_ref_meta(ctx: &Ctx, kind: KindId, owner: &ObjMeta) -> Value {
    let (api_version, kind) = ctx
        .store
        .registry()
        .get(kind)
        .map(|k| {
            (
                Value::String(k.api_version()),
                Value::String(k.kind.clone()),
            )
        })
        .unwrap_or((Value::Null, Value::Null));
    json!({
        "apiVersion": api_version,
        "kind": kind,
        "name": owner.name,
        "uid": owner.uid,
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// Whether `o` has a controller ownerReference with `uid`.
pub fn owned_by(o: &Value, uid: &str) -> bool {
    o.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|refs| {
            refs.iter()
                .any(|r| r.get("uid").and_then(Value::as_str) == Some(uid))
        })
}

/// Sets (or replaces) condition `type` in `conditions`, keeping `lastTransitionTime` when the status is unchanged.
/// Returns whether the status changed.
pub fn set_condition(
    status: &mut Value,
    ctype: &str,
    cstatus: &str,
    reason: &str,
    message: &str,
) -> bool {
    if !status.is_object() {
        *status = json!({});
    }
    if !status.get("conditions").is_some_and(Value::is_array) {
        status["conditions"] = json!([]);
    }
    let Some(conds) = status.get_mut("conditions").and_then(Value::as_array_mut) else {
        return false;
    };
    let existing = conds
        .iter_mut()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(ctype));
    match existing {
        Some(c) => {
            let changed = c.get("status").and_then(Value::as_str) != Some(cstatus);
            let ltt = if changed {
                Value::String(now_rfc3339())
            } else {
                c.get("lastTransitionTime")
                    .cloned()
                    .unwrap_or_else(|| Value::String(now_rfc3339()))
            };
            *c = json!({"type": ctype, "status": cstatus, "reason": reason, "message": message, "lastTransitionTime": ltt});
            changed
        }
        None => {
            conds.push(json!({"type": ctype, "status": cstatus, "reason": reason, "message": message, "lastTransitionTime": now_rfc3339()}));
            true
        }
    }
}

/// The status of condition `type`, if present.
pub fn condition_status<'a>(o: &'a Value, ctype: &str) -> Option<&'a str> {
    o.pointer("/status/conditions")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(ctype))?
        .get("status")
        .and_then(Value::as_str)
}

/// Parses `a.b.c.d` or `a.b.c.d/len` into the bare address.
pub fn bare_ip(text: &str) -> Option<IpAddr> {
    text.split('/').next()?.parse().ok()
}
