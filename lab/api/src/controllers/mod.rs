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

/// A bench for one controller at a time: a lab without its controllers, whose store the test writes to
/// directly, plus the controller context a test spawns the controllers under test with.
#[cfg(test)]
pub(crate) mod bench {
    use std::sync::Arc;
    use std::time::Duration;

    use serde_json::Value;
    use tokio_util::sync::CancellationToken;
    use tokio_util::task::TaskTracker;

    use super::{Ctx, views};
    use crate::dataplane::NoDataplane;
    use crate::registry::KindId;
    use crate::store::{DeleteOptions, WriteOptions};
    use crate::{Lab, LabConfig};

    /// How long a test waits for a controller, in (paused) tokio time: far beyond any step it takes.
    pub const PATIENCE: Duration = Duration::from_secs(600);

    pub struct Bench {
        pub lab: Lab,
        pub ctx: Ctx,
        pub tasks: TaskTracker,
    }

    /// Starts the lab's API and store (seeded with its namespaces and nodes) without controllers.
    pub async fn start(config: LabConfig) -> Bench {
        let lab = Lab::start(LabConfig {
            controllers: false,
            ..config
        })
        .await
        .expect("the lab starts");
        let ctx = Ctx::new(
            lab.store().clone(),
            lab.ground_truth().clone(),
            Arc::new(NoDataplane),
            Arc::new(lab.config().clone()),
            CancellationToken::new(),
        )
        .expect("controller context");
        views::register(&ctx.store, &ctx.k);
        Bench {
            lab,
            ctx,
            tasks: TaskTracker::new(),
        }
    }

    impl Bench {
        pub fn create(&self, kind: KindId, namespace: Option<&str>, object: Value) {
            self.ctx
                .store
                .create(kind, namespace, object, &WriteOptions::default())
                .expect("created");
        }

        pub fn delete(&self, kind: KindId, namespace: Option<&str>, name: &str) {
            self.ctx
                .store
                .delete(kind, namespace, name, &DeleteOptions::default())
                .expect("deleted");
        }

        pub fn get(&self, kind: KindId, namespace: Option<&str>, name: &str) -> Option<Arc<Value>> {
            self.ctx.store.get_opt(kind, namespace, name)
        }

        /// Waits until the object exists and satisfies `pred`.
        pub async fn until(
            &self,
            api_version: &str,
            kind: &str,
            namespace: Option<&str>,
            name: &str,
            pred: impl Fn(&Value) -> bool,
        ) -> Arc<Value> {
            self.lab
                .wait_for(api_version, kind, namespace, name, PATIENCE, pred)
                .await
                .unwrap_or_else(|e| panic!("{kind} {name}: {e}"))
        }

        /// Waits until the object is gone.
        pub async fn until_gone(&self, kind: KindId, namespace: Option<&str>, name: &str) {
            let deadline = tokio::time::Instant::now() + PATIENCE;
            while self.get(kind, namespace, name).is_some() {
                let mut events = self.ctx.store.subscribe(kind);
                if self.get(kind, namespace, name).is_none() {
                    return;
                }
                tokio::select! {
                    _ = events.recv() => {}
                    _ = tokio::time::sleep_until(deadline) => panic!("{name} is still there"),
                }
            }
        }

        /// A namespace, created with OVN-K's primary-UDN label when `primary` (it cannot be added later).
        pub fn namespace(&self, name: &str, labels: Value, primary: bool) {
            let mut labels = labels;
            if primary {
                labels[crate::store::PRIMARY_UDN_LABEL] = Value::String(String::new());
            }
            self.create(
                self.ctx.k.namespace,
                None,
                serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": name, "labels": labels}}),
            );
        }
    }

    impl Drop for Bench {
        fn drop(&mut self) {
            self.ctx.shutdown.cancel();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_queue_hands_out_each_pending_key_once() {
        let queue: Arc<WorkQueue<&str>> = WorkQueue::new();
        let stop = CancellationToken::new();
        queue.push("a");
        queue.push("b");
        queue.push("a");
        assert_eq!(queue.take(&stop).await, Some(vec!["a", "b"]));
        queue.push("a");
        assert_eq!(queue.take(&stop).await, Some(vec!["a"]));
        stop.cancel();
        assert_eq!(
            queue.take(&stop).await,
            None,
            "nothing pending: shutdown ends the wait"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_delayed_push_arrives_after_its_delay() {
        let queue: Arc<WorkQueue<&str>> = WorkQueue::new();
        let stop = CancellationToken::new();
        let start = tokio::time::Instant::now();
        queue.push_after("later", Duration::from_secs(5), &stop);
        assert_eq!(queue.take(&stop).await, Some(vec!["later"]));
        assert_eq!(start.elapsed(), Duration::from_secs(5));

        queue.push_after("never", Duration::from_secs(5), &stop);
        stop.cancel();
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(
            queue.pending.lock().expect("pending").is_empty(),
            "a shutdown drops delayed pushes"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn watch_kind_maps_existing_objects_then_events() {
        let b = bench::start(LabConfig::default()).await;
        let queue: Arc<WorkQueue<(String, String)>> = WorkQueue::new();
        let events: Arc<Mutex<Vec<Option<crate::store::EventType>>>> = Arc::default();
        let seen = events.clone();
        b.namespace("before", json!({}), false);
        watch_kind(
            &b.ctx,
            &b.tasks,
            b.ctx.k.namespace,
            queue.clone(),
            move |m, ev| {
                if let Ok(mut s) = seen.lock() {
                    s.push(ev.map(|e| e.event_type));
                }
                (m.name.starts_with("before") || m.name.starts_with("after"))
                    .then(|| meta_key(m))
                    .into_iter()
                    .collect()
            },
        );
        let listed = b.ctx.shutdown.clone();
        assert_eq!(
            queue.take(&listed).await,
            Some(vec![(String::new(), "before".to_string())]),
            "the initial list"
        );
        b.namespace("after", json!({}), false);
        assert_eq!(
            queue.take(&listed).await,
            Some(vec![(String::new(), "after".to_string())]),
            "then the events"
        );
        let events = events.lock().expect("events").clone();
        assert!(
            events.iter().any(Option::is_none),
            "listed objects come without an event"
        );
        assert_eq!(events.last(), Some(&Some(crate::store::EventType::Added)));
    }

    #[test]
    fn set_condition_keeps_the_transition_time_while_the_status_holds() {
        let mut status = Value::Null;
        assert!(set_condition(&mut status, "Ready", "False", "Booting", ""));
        status["conditions"][0]["lastTransitionTime"] = json!("2020-01-01T00:00:00Z");
        assert!(!set_condition(
            &mut status,
            "Ready",
            "False",
            "StillBooting",
            "m"
        ));
        assert_eq!(
            status["conditions"][0]["lastTransitionTime"],
            "2020-01-01T00:00:00Z"
        );
        assert_eq!(status["conditions"][0]["reason"], "StillBooting");
        assert!(set_condition(&mut status, "Ready", "True", "", ""));
        assert_ne!(
            status["conditions"][0]["lastTransitionTime"],
            "2020-01-01T00:00:00Z"
        );
        assert_eq!(
            condition_status(&status_holder(status), "Ready"),
            Some("True")
        );
    }

    fn status_holder(status: Value) -> Value {
        json!({ "status": status })
    }

    #[test]
    fn helpers_read_addresses_and_owners() {
        assert_eq!(bare_ip("198.19.0.9/24"), "198.19.0.9".parse().ok());
        assert_eq!(bare_ip("fd00::1"), "fd00::1".parse().ok());
        assert_eq!(bare_ip("not-an-ip"), None);
        let owner = json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
            "metadata": {"name": "vm", "uid": "u-1"}});
        let dependent = json!({"metadata": {"ownerReferences": [owner_ref(&owner)]}});
        assert!(owned_by(&dependent, "u-1"));
        assert!(!owned_by(&dependent, "u-2"));
        assert_eq!(
            dependent["metadata"]["ownerReferences"][0]["controller"],
            true
        );
    }
}
