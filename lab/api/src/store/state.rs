//! State and resourceVersion: the [`Store`] struct, its per-kind tables and indexes, the global resourceVersion
//! counter, and `Store::commit`, the one place a version is assigned and made visible.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use rand::SeedableRng;
use serde_json::Value;
use tokio::sync::broadcast;

use super::{EventType, ObjMeta, Stored, Validator, ViewFn, WatchEvent, corrupt};
use crate::error::ApiError;
use crate::registry::{KindId, Registry, ResourceKind};

/// `(namespace, name)`; namespace is `""` for cluster-scoped kinds.
pub type ObjKey = (String, String);

/// The `metadata.resourceVersion` of a stored object as a number (0 if absent).
pub fn object_rv(object: &Value) -> u64 {
    object
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[derive(Debug)]
pub(super) struct Table {
    pub(super) objects: BTreeMap<ObjKey, Stored>,
    pub(super) history: VecDeque<Arc<WatchEvent>>,
    /// A watch may resume from resourceVersion R only if R >= this.
    pub(super) oldest_resumable: u64,
    pub(super) sender: broadcast::Sender<Arc<WatchEvent>>,
}

#[derive(Debug, Default)]
pub(super) struct Inner {
    pub(super) rv: u64,
    pub(super) tables: Vec<Table>,
    pub(super) uids: HashMap<String, (KindId, ObjKey)>,
    /// owner uid → dependents.
    pub(super) dependents: HashMap<String, BTreeSet<(KindId, ObjKey)>>,
    /// namespace → number of namespaced objects in it.
    pub(super) ns_counts: HashMap<String, usize>,
}

/// The store. Share it through `Arc`.
#[derive(Debug)]
pub struct Store {
    pub(super) registry: Arc<Registry>,
    pub(super) validator: Option<Arc<dyn Validator>>,
    pub(super) inner: Mutex<Inner>,
    /// Per kind: rv of the newest event already handed to the broadcast channel.
    pub(super) last_sent: Vec<AtomicU64>,
    pub(super) history_limit: usize,
    pub(super) namespace_kind: Option<KindId>,
    pub(super) name_rng: Mutex<rand::rngs::StdRng>,
    /// Per kind: the registered view function.
    pub(super) views: Vec<OnceLock<ViewFn>>,
    /// The resourceVersion, for readers waiting to see one (only sent while someone waits).
    pub(super) rv_tx: tokio::sync::watch::Sender<u64>,
}

impl Store {
    /// An empty store serving `registry`'s kinds. `history_limit` bounds the per-kind event history
    /// (older resourceVersions answer 410 Gone); `channel_capacity` bounds how far a watcher may lag.
    pub fn new(
        registry: Arc<Registry>,
        validator: Option<Arc<dyn Validator>>,
        history_limit: usize,
        channel_capacity: usize,
        seed: u64,
    ) -> Self {
        let tables = registry
            .kinds()
            .iter()
            .map(|_| Table {
                objects: BTreeMap::new(),
                history: VecDeque::new(),
                oldest_resumable: 0,
                sender: broadcast::channel(channel_capacity.max(16)).0,
            })
            .collect();
        let last_sent = registry.kinds().iter().map(|_| AtomicU64::new(0)).collect();
        let namespace_kind = registry.by_path("", "v1", "namespaces");
        let registry_len = registry.kinds().len();
        Store {
            registry,
            validator,
            inner: Mutex::new(Inner {
                tables,
                ..Inner::default()
            }),
            last_sent,
            history_limit: history_limit.max(1),
            namespace_kind,
            name_rng: Mutex::new(rand::rngs::StdRng::seed_from_u64(seed)),
            views: (0..registry_len).map(|_| OnceLock::new()).collect(),
            rv_tx: tokio::sync::watch::Sender::new(0),
        }
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data (every mutation is completed before
        // unlocking or not started), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn kind(&self, id: KindId) -> Result<&ResourceKind, ApiError> {
        self.registry.get(id).ok_or(ApiError::UnknownResource)
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.lock().rv
    }

    /// Resolves a kind id from `apiVersion` and `kind`.
    pub fn kind_id(&self, api_version: &str, kind: &str) -> Option<KindId> {
        self.registry.by_kind(api_version, kind)
    }

    pub(super) fn not_found(kind: &ResourceKind, name: &str) -> ApiError {
        ApiError::NotFound {
            group: kind.group.clone(),
            kind: kind.plural.clone(),
            name: name.to_string(),
        }
    }

    pub(super) fn key(kind: &ResourceKind, namespace: Option<&str>, name: &str) -> ObjKey {
        let ns = if kind.namespaced {
            namespace.unwrap_or_default()
        } else {
            ""
        };
        (ns.to_string(), name.to_string())
    }

    /// Parses a stored object version. (A cache of parsed objects was tried: keeping and evicting its entries
    /// cost more than the parses it saved.)
    pub(super) fn parse(stored: &Stored) -> Result<Arc<Value>, ApiError> {
        serde_json::from_slice::<Value>(&stored.json)
            .map(Arc::new)
            .map_err(|e| corrupt(&e))
    }

    pub(super) fn parse_all(items: &[Stored]) -> Vec<Arc<Value>> {
        items.iter().filter_map(|s| Self::parse(s).ok()).collect()
    }

    /// Registers how to compute `kind_id`'s [`View`] (the first registration wins). Versions committed from
    /// now on carry it; older ones compute it when asked.
    pub fn set_view(&self, kind_id: KindId, f: ViewFn) {
        if let Some(slot) = self.views.get(kind_id) {
            let _ = slot.set(f);
        }
    }

    /// Tells [`Store::wait_for_rv`] waiters the store reached `rv` (a no-op when nobody waits).
    pub(super) fn announce_rv(&self, rv: u64) {
        if self.rv_tx.receiver_count() > 0 {
            self.rv_tx.send_replace(rv);
        }
    }

    /// Waits until the store's resourceVersion is at least `rv`; false if `timeout` passes first.
    pub async fn wait_for_rv(&self, rv: u64, timeout: std::time::Duration) -> bool {
        let mut rx = self.rv_tx.subscribe();
        // Subscribed first: a commit after this check is announced to `rx`.
        if self.resource_version() >= rv {
            return true;
        }
        matches!(
            tokio::time::timeout(timeout, rx.wait_for(|now| *now >= rv)).await,
            Ok(Ok(_))
        )
    }

    /// Commits a new version of `key`: assigns the next resourceVersion, serializes it once, updates the table
    /// and indexes (or removes the object for DELETED), and hands the event to the history and watchers.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn commit(
        &self,
        inner: &mut Inner,
        kind_id: KindId,
        key: &ObjKey,
        event_type: EventType,
        mut object: Value,
        old: Option<&Stored>,
        at: Instant,
    ) -> (Arc<Value>, Stored) {
        inner.rv += 1;
        let rv = inner.rv;
        set_rv(&mut object, rv);
        let hint = old.map_or(1024, |o| o.json.len() + 256);
        let (line, json) = crate::object_version::seal(event_type, &object, hint);
        let meta = Arc::new(ObjMeta::from_object(&object));
        let view = match event_type {
            EventType::Deleted => None,
            _ => self
                .views
                .get(kind_id)
                .and_then(OnceLock::get)
                .map(|f| f(&object)),
        };
        let stored = Stored {
            meta: meta.clone(),
            json: json.clone(),
            view,
        };
        match event_type {
            EventType::Deleted => {
                inner.tables[kind_id].objects.remove(key);
                if let Some(o) = old {
                    self.remove_indexes(inner, kind_id, key, &o.meta);
                }
            }
            EventType::Added | EventType::Modified => {
                self.insert_indexes(inner, kind_id, key, &meta, old.map(|o| &*o.meta));
                inner.tables[kind_id]
                    .objects
                    .insert(key.clone(), stored.clone());
            }
        }
        let object = Arc::new(object);
        let event = Arc::new(WatchEvent {
            kind: kind_id,
            event_type,
            rv,
            meta,
            previous: old
                .filter(|_| event_type == EventType::Modified)
                .map(|o| o.meta.clone()),
            at,
            json,
            prior: old.filter(|_| event_type != EventType::Added).cloned(),
            line,
        });
        let table = &mut inner.tables[kind_id];
        table.history.push_back(event.clone());
        while table.history.len() > self.history_limit {
            if let Some(old) = table.history.pop_front() {
                table.oldest_resumable = old.rv;
            }
        }
        // No receivers is fine.
        let _ = table.sender.send(event);
        self.last_sent[kind_id].store(rv, Ordering::Release);
        self.announce_rv(rv);
        (object, stored)
    }

    fn insert_indexes(
        &self,
        inner: &mut Inner,
        kind_id: KindId,
        key: &ObjKey,
        meta: &ObjMeta,
        old: Option<&ObjMeta>,
    ) {
        if old.is_none() {
            if !meta.uid.is_empty() {
                inner.uids.insert(meta.uid.clone(), (kind_id, key.clone()));
            }
            if !key.0.is_empty() {
                *inner.ns_counts.entry(key.0.clone()).or_default() += 1;
            }
        }
        let new_owners = &meta.owners;
        let old_owners: &[Box<str>] = old.map_or(&[], |o| &o.owners);
        for o in old_owners.iter().filter(|o| !new_owners.contains(o)) {
            if let Some(set) = inner.dependents.get_mut(&**o) {
                set.remove(&(kind_id, key.clone()));
                if set.is_empty() {
                    inner.dependents.remove(&**o);
                }
            }
        }
        for o in new_owners.iter().filter(|o| !old_owners.contains(o)) {
            inner
                .dependents
                .entry(o.to_string())
                .or_default()
                .insert((kind_id, key.clone()));
        }
    }

    fn remove_indexes(&self, inner: &mut Inner, kind_id: KindId, key: &ObjKey, meta: &ObjMeta) {
        inner.uids.remove(&meta.uid);
        if !key.0.is_empty()
            && let Some(c) = inner.ns_counts.get_mut(&key.0)
        {
            *c = c.saturating_sub(1);
        }
        for o in meta.owners.iter() {
            if let Some(set) = inner.dependents.get_mut(&**o) {
                set.remove(&(kind_id, key.clone()));
                if set.is_empty() {
                    inner.dependents.remove(&**o);
                }
            }
        }
    }
}

fn set_rv(object: &mut Value, rv: u64) {
    object["metadata"]["resourceVersion"] = Value::String(rv.to_string());
}
