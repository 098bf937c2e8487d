//! The in-memory object store: Kubernetes write semantics (resourceVersion, generation, status subresource,
//! finalizers, ownerReference garbage collection, namespace cascade) and the per-kind event history watches
//! resume from.
//!
//! One global resourceVersion counter orders every write. Each object version is kept serialized
//! ([`Stored`]: one buffer holding its watch line, shared by the table, the event ring and history, every HTTP
//! watcher and GET/LIST responses) with a parsed metadata index for selectors and garbage collection. Readers
//! that want a `Value` get one parsed on demand; in-process controllers read small per-kind views instead
//! ([`Store::set_view`]).

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use axum::body::Bytes;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use crate::error::{ApiError, Cause};
use crate::registry::{KindId, Registry, ResourceKind};
use crate::selector::{FieldSelector, LabelSelector};
pub use crate::stored::{Labels, ObjMeta, Stored, View, ViewFn};

/// The namespace label OVN-K requires at namespace creation and forbids changing later.
pub const PRIMARY_UDN_LABEL: &str = "k8s.ovn.org/primary-user-defined-network";
/// Finalizer the API server's foreground deletion uses.
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";

/// `(namespace, name)`; namespace is `""` for cluster-scoped kinds.
pub type ObjKey = (String, String);

/// How unknown or invalid fields are handled (`fieldValidation` query parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldValidation {
    /// Unknown fields are an error (kubectl's default).
    Strict,
    /// Unknown fields are dropped (the server default).
    #[default]
    Prune,
}

/// Schema validation hook; the lab plugs the `vmbgp-schema` set in here.
pub trait Validator: Send + Sync + fmt::Debug {
    /// Validates (and in `Prune` mode may drop unknown fields from) an object of `kind`.
    fn validate(
        &self,
        kind: &ResourceKind,
        object: &mut Value,
        mode: FieldValidation,
    ) -> Result<(), Vec<Cause>>;
}

/// Options shared by every write.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    pub dry_run: bool,
    pub field_validation: FieldValidation,
    pub field_manager: Option<String>,
}

/// A committed (or dry-run) write: the object as stored and the instant it became visible.
#[derive(Debug, Clone)]
pub struct Written {
    pub object: Arc<Value>,
    /// The object's JSON as stored (what a GET returns).
    pub json: Bytes,
    pub at: Instant,
}

/// The result of [`Store::modify_status`].
#[derive(Debug, Clone)]
pub struct StatusWritten {
    /// The status as stored now.
    pub status: Value,
    /// Whether anything was written (false: the status was already so).
    pub changed: bool,
    /// When the write became visible (when it was judged, if nothing changed).
    pub at: Instant,
}

/// Watch event types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change of one object, shared by the history and all watchers. It holds the object serialized (the same
/// buffer the store keeps) and its metadata index; [`WatchEvent::object`] parses it for readers that need more.
#[derive(Debug)]
pub struct WatchEvent {
    pub kind: KindId,
    pub event_type: EventType,
    pub rv: u64,
    /// The object's metadata at this version.
    pub meta: Arc<ObjMeta>,
    /// The metadata before this change (MODIFIED only); selectors use its labels to turn MODIFIED into
    /// ADDED/DELETED. Name and namespace (the field selectors) cannot change.
    pub previous: Option<Arc<ObjMeta>>,
    /// Commit instant.
    pub at: Instant,
    /// The object's JSON.
    pub json: Bytes,
    /// The version this change replaced (MODIFIED and DELETED): what exact-resourceVersion lists undo to.
    pub prior: Option<Stored>,
    /// The whole watch line (`json` is a slice of it); empty for synthetic events, built when asked.
    line: Bytes,
}

impl WatchEvent {
    /// A synthetic ADDED event for an existing object (initial state of a watch).
    pub fn synthetic_added(kind: KindId, stored: &Stored) -> Self {
        WatchEvent {
            kind,
            event_type: EventType::Added,
            rv: stored.meta.rv,
            meta: stored.meta.clone(),
            previous: None,
            at: Instant::now(),
            json: stored.json.clone(),
            prior: None,
            line: Bytes::new(),
        }
    }

    /// The `{"type":...,"object":...}\n` line (shared, not copied, for committed events).
    pub fn line(&self) -> Bytes {
        if self.line.is_empty() {
            crate::stored::line_around(self.event_type.as_str(), &self.json)
        } else {
            self.line.clone()
        }
    }

    /// The object parsed (`Null` only if its JSON were corrupt, which the store never writes).
    pub fn object(&self) -> Value {
        serde_json::from_slice(&self.json).unwrap_or(Value::Null)
    }
}

/// Serializes one watch line.
pub fn event_line(event_type: &str, object: &Value) -> Bytes {
    let mut buf = Vec::with_capacity(512);
    buf.extend_from_slice(b"{\"type\":\"");
    buf.extend_from_slice(event_type.as_bytes());
    buf.extend_from_slice(b"\",\"object\":");
    // Serializing a Value into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut buf, object);
    buf.extend_from_slice(b"}\n");
    Bytes::from(buf)
}

/// The `metadata.resourceVersion` of a stored object as a number (0 if absent).
pub fn object_rv(object: &Value) -> u64 {
    object
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn meta_str<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    object
        .get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
}

/// List parameters.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    pub label_selector: LabelSelector,
    pub field_selector: FieldSelector,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
    /// List the state at exactly this resourceVersion (`resourceVersionMatch=Exact`), rebuilt from the kind's
    /// event history; older than that history is 410 Gone, as after etcd compaction.
    pub exact_rv: Option<u64>,
}

/// A page of a list.
#[derive(Debug, Clone)]
pub struct ListResult {
    pub items: Vec<Arc<Value>>,
    pub resource_version: u64,
    pub continue_token: Option<String>,
    pub remaining: Option<usize>,
}

/// A page of a list, as stored (no parsing).
#[derive(Debug, Clone)]
pub struct StoredList {
    pub items: Vec<Stored>,
    pub resource_version: u64,
    pub continue_token: Option<String>,
    pub remaining: Option<usize>,
}

/// Deletion propagation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Propagation {
    #[default]
    Background,
    Foreground,
    Orphan,
}

/// `DeleteOptions` the store honours.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub propagation: Propagation,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    pub dry_run: bool,
}

/// The result of a delete: the object as last seen, and whether it is gone (false: finalizers pending).
#[derive(Debug, Clone)]
pub struct Deleted {
    pub object: Arc<Value>,
    pub removed: bool,
    pub at: Instant,
}

/// A patch body.
#[derive(Debug, Clone)]
pub enum Patch {
    /// RFC 7386 JSON merge patch.
    Merge(Value),
    /// RFC 6902 JSON patch.
    Json(json_patch::Patch),
    /// Server-side apply (approximated: maps merge recursively, lists and scalars are replaced).
    Apply { body: Value, force: bool },
    /// Strategic merge (core kinds only; approximated as a merge patch).
    StrategicMerge(Value),
}

/// A started watch: the events to replay first, then the live receiver.
#[derive(Debug)]
pub struct Subscription {
    pub initial: Vec<Arc<WatchEvent>>,
    pub receiver: broadcast::Receiver<Arc<WatchEvent>>,
    /// The resourceVersion the watch is at once `initial` is delivered.
    pub start_rv: u64,
}

#[derive(Debug)]
struct Table {
    objects: BTreeMap<ObjKey, Stored>,
    history: VecDeque<Arc<WatchEvent>>,
    /// A watch may resume from resourceVersion R only if R >= this.
    oldest_resumable: u64,
    sender: broadcast::Sender<Arc<WatchEvent>>,
}

#[derive(Debug, Default)]
struct Inner {
    rv: u64,
    tables: Vec<Table>,
    uids: HashMap<String, (KindId, ObjKey)>,
    /// owner uid → dependents.
    dependents: HashMap<String, BTreeSet<(KindId, ObjKey)>>,
    /// namespace → number of namespaced objects in it.
    ns_counts: HashMap<String, usize>,
}

/// The store. Share it through `Arc`.
#[derive(Debug)]
pub struct Store {
    registry: Arc<Registry>,
    validator: Option<Arc<dyn Validator>>,
    inner: Mutex<Inner>,
    /// Per kind: rv of the newest event already handed to the broadcast channel.
    last_sent: Vec<AtomicU64>,
    history_limit: usize,
    namespace_kind: Option<KindId>,
    name_rng: Mutex<rand::rngs::StdRng>,
    /// Per kind: the registered view function.
    views: Vec<OnceLock<ViewFn>>,
    /// The resourceVersion, for readers waiting to see one (only sent while someone waits).
    rv_tx: tokio::sync::watch::Sender<u64>,
}

const NAME_CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn corrupt(e: &serde_json::Error) -> ApiError {
    ApiError::Internal {
        message: format!("stored object does not parse: {e}"),
    }
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

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data (every mutation is completed before
        // unlocking or not started), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn kind(&self, id: KindId) -> Result<&ResourceKind, ApiError> {
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

    fn not_found(kind: &ResourceKind, name: &str) -> ApiError {
        ApiError::NotFound {
            group: kind.group.clone(),
            kind: kind.plural.clone(),
            name: name.to_string(),
        }
    }

    fn key(kind: &ResourceKind, namespace: Option<&str>, name: &str) -> ObjKey {
        let ns = if kind.namespaced {
            namespace.unwrap_or_default()
        } else {
            ""
        };
        (ns.to_string(), name.to_string())
    }

    /// Parses a stored object version. (A cache of parsed objects was tried: keeping and evicting its entries
    /// cost more than the parses it saved.)
    fn parse(stored: &Stored) -> Result<Arc<Value>, ApiError> {
        serde_json::from_slice::<Value>(&stored.json)
            .map(Arc::new)
            .map_err(|e| corrupt(&e))
    }

    fn parse_all(items: &[Stored]) -> Vec<Arc<Value>> {
        items.iter().filter_map(|s| Self::parse(s).ok()).collect()
    }

    /// Registers how to compute `kind_id`'s [`View`] (the first registration wins). Versions committed from
    /// now on carry it; older ones compute it when asked.
    pub fn set_view(&self, kind_id: KindId, f: ViewFn) {
        if let Some(slot) = self.views.get(kind_id) {
            let _ = slot.set(f);
        }
    }

    fn view_of<V: Any + Send + Sync>(
        &self,
        kind_id: KindId,
        stored: &Stored,
    ) -> Option<(Arc<ObjMeta>, Arc<V>)> {
        let view = match &stored.view {
            Some(v) => v.clone(),
            None => (self.views.get(kind_id)?.get()?)(&stored.parse()),
        };
        view.downcast::<V>().ok().map(|v| (stored.meta.clone(), v))
    }

    // ---------------------------------------------------------------- reads

    /// One object's metadata and view (see [`Store::set_view`]); `None` if absent or if `V` is not the kind's
    /// view type.
    pub fn view<V: Any + Send + Sync>(
        &self,
        kind_id: KindId,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<(Arc<ObjMeta>, Arc<V>)> {
        let stored = self.get_stored(kind_id, namespace, name).ok()?;
        self.view_of(kind_id, &stored)
    }

    /// Metadata and views of the objects in `namespace` whose name starts with `prefix`, in key order.
    pub fn views_name_prefix<V: Any + Send + Sync>(
        &self,
        kind_id: KindId,
        namespace: Option<&str>,
        prefix: &str,
    ) -> Vec<(Arc<ObjMeta>, Arc<V>)> {
        self.stored_name_prefix(kind_id, namespace, prefix)
            .iter()
            .filter_map(|s| self.view_of(kind_id, s))
            .collect()
    }

    /// Metadata and views of every object of a kind in `namespace` (all namespaces when `None`).
    pub fn views<V: Any + Send + Sync>(
        &self,
        kind_id: KindId,
        namespace: Option<&str>,
    ) -> Vec<(Arc<ObjMeta>, Arc<V>)> {
        self.stored_in(kind_id, namespace)
            .iter()
            .filter_map(|s| self.view_of(kind_id, s))
            .collect()
    }

    /// Every object of a kind in `namespace` (all namespaces when `None`) as stored, in key order.
    fn stored_in(&self, kind_id: KindId, namespace: Option<&str>) -> Vec<Stored> {
        let inner = self.lock();
        let Some(t) = inner.tables.get(kind_id) else {
            return Vec::new();
        };
        match namespace {
            Some(ns) => t
                .objects
                .range::<ObjKey, _>((ns.to_string(), String::new())..)
                .take_while(|(k, _)| k.0 == ns)
                .map(|(_, o)| o.clone())
                .collect(),
            None => t.objects.values().cloned().collect(),
        }
    }

    /// Gets one object as stored (no parsing).
    pub fn get_stored(
        &self,
        kind_id: KindId,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Stored, ApiError> {
        let kind = self.kind(kind_id)?;
        let inner = self.lock();
        inner.tables[kind_id]
            .objects
            .get(&Self::key(kind, namespace, name))
            .cloned()
            .ok_or_else(|| Self::not_found(kind, name))
    }

    /// Gets one object.
    pub fn get(
        &self,
        kind_id: KindId,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Arc<Value>, ApiError> {
        let stored = self.get_stored(kind_id, namespace, name)?;
        Self::parse(&stored)
    }

    /// Gets one object, `None` if absent.
    pub fn get_opt(
        &self,
        kind_id: KindId,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Arc<Value>> {
        self.get(kind_id, namespace, name).ok()
    }

    /// The metadata of one object, `None` if absent.
    pub fn meta(
        &self,
        kind_id: KindId,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Arc<ObjMeta>> {
        self.get_stored(kind_id, namespace, name)
            .ok()
            .map(|s| s.meta)
    }

    /// Lists objects of a kind, optionally in one namespace, filtered and paginated.
    pub fn list(
        &self,
        kind_id: KindId,
        namespace: Option<&str>,
        opts: &ListOptions,
    ) -> Result<ListResult, ApiError> {
        let page = self.list_stored(kind_id, namespace, opts)?;
        Ok(ListResult {
            items: Self::parse_all(&page.items),
            resource_version: page.resource_version,
            continue_token: page.continue_token,
            remaining: page.remaining,
        })
    }

    /// [`Store::list`] without parsing: the stored forms.
    pub fn list_stored(
        &self,
        kind_id: KindId,
        namespace: Option<&str>,
        opts: &ListOptions,
    ) -> Result<StoredList, ApiError> {
        let kind = self.kind(kind_id)?;
        let inner = self.lock();
        let table = &inner.tables[kind_id];
        let ns_filter = namespace.filter(|_| kind.namespaced);
        let (mut list_rv, start_after) = match (&opts.continue_token, opts.exact_rv) {
            (Some(token), _) => {
                let (rv, key) = decode_continue(token).ok_or_else(|| ApiError::BadRequest {
                    message: "invalid continue token".to_string(),
                })?;
                (rv, Some(key))
            }
            (None, Some(rv)) if rv > inner.rv => {
                return Err(ApiError::TooLargeResourceVersion {
                    requested: rv,
                    current: inner.rv,
                });
            }
            (None, Some(rv)) => (rv, None),
            (None, None) => (inner.rv, None),
        };
        if list_rv == 0 {
            list_rv = inner.rv;
        }
        let past = match state_at(table, list_rv, ns_filter) {
            StateAt::Current => None,
            StateAt::Past(objects) => Some(objects),
            StateAt::Forgotten if opts.exact_rv.is_some() && start_after.is_none() => {
                return Err(ApiError::Gone {
                    message: "The resourceVersion for the provided list is too old.".to_string(),
                });
            }
            // A continued list whose snapshot left the history goes on with the current state.
            StateAt::Forgotten => None,
        };
        let objects = past.as_ref().unwrap_or(&table.objects);
        let iter: Box<dyn Iterator<Item = (&ObjKey, &Stored)>> = match (&start_after, ns_filter) {
            (Some(after), _) => Box::new(objects.range::<ObjKey, _>((
                std::ops::Bound::Excluded(after.clone()),
                std::ops::Bound::Unbounded,
            ))),
            (None, Some(ns)) => {
                Box::new(objects.range::<ObjKey, _>((ns.to_string(), String::new())..))
            }
            (None, None) => Box::new(objects.iter()),
        };
        let limit = opts.limit.filter(|l| *l > 0);
        let mut items = Vec::new();
        let mut continue_token = None;
        let mut last_key: Option<&ObjKey> = None;
        let mut remaining = 0usize;
        for (key, obj) in iter {
            if let Some(ns) = ns_filter
                && key.0 != ns
            {
                break;
            }
            if !opts.label_selector.matches_meta(&obj.meta)
                || !opts.field_selector.matches_meta(&obj.meta)
            {
                continue;
            }
            if let Some(l) = limit
                && items.len() == l
            {
                remaining += 1;
                continue;
            }
            items.push(obj.clone());
            last_key = Some(key);
        }
        if remaining > 0
            && let Some(k) = last_key
        {
            continue_token = Some(encode_continue(list_rv, k));
        }
        Ok(StoredList {
            items,
            resource_version: list_rv,
            continue_token,
            remaining: (remaining > 0).then_some(remaining),
        })
    }

    /// Objects of a kind in `namespace` whose name starts with `prefix` (a key-range scan).
    pub fn list_name_prefix(
        &self,
        kind_id: KindId,
        namespace: Option<&str>,
        prefix: &str,
    ) -> Vec<Arc<Value>> {
        let items = self.stored_name_prefix(kind_id, namespace, prefix);
        Self::parse_all(&items)
    }

    fn stored_name_prefix(
        &self,
        kind_id: KindId,
        namespace: Option<&str>,
        prefix: &str,
    ) -> Vec<Stored> {
        let Ok(kind) = self.kind(kind_id) else {
            return Vec::new();
        };
        let ns = if kind.namespaced {
            namespace.unwrap_or_default().to_string()
        } else {
            String::new()
        };
        let inner = self.lock();
        inner.tables[kind_id]
            .objects
            .range::<ObjKey, _>((ns.clone(), prefix.to_string())..)
            .take_while(|(k, _)| k.0 == ns && k.1.starts_with(prefix))
            .map(|(_, o)| o.clone())
            .collect()
    }

    /// Every object of a kind (all namespaces), parsed, in key order.
    pub fn all(&self, kind_id: KindId) -> Vec<Arc<Value>> {
        let items = self.all_stored(kind_id);
        Self::parse_all(&items)
    }

    /// Every object of a kind (all namespaces) as stored, in key order.
    pub fn all_stored(&self, kind_id: KindId) -> Vec<Stored> {
        self.stored_in(kind_id, None)
    }

    /// The metadata of every object of a kind in `namespace` (all namespaces when `None`), in key order.
    pub fn metas(&self, kind_id: KindId, namespace: Option<&str>) -> Vec<Arc<ObjMeta>> {
        self.stored_in(kind_id, namespace)
            .into_iter()
            .map(|s| s.meta)
            .collect()
    }

    /// Number of objects of a kind.
    pub fn count(&self, kind_id: KindId) -> usize {
        self.lock()
            .tables
            .get(kind_id)
            .map(|t| t.objects.len())
            .unwrap_or(0)
    }

    // ---------------------------------------------------------------- watches

    /// Starts a watch. `from_rv`: `None` = current state as ADDED events then live; `Some(rv)` = replay of
    /// history after `rv` then live, or `Gone` when `rv` is older than the retained history.
    pub fn watch(
        &self,
        kind_id: KindId,
        namespace: Option<&str>,
        from_rv: Option<u64>,
    ) -> Result<Subscription, ApiError> {
        let kind = self.kind(kind_id)?;
        let inner = self.lock();
        let table = &inner.tables[kind_id];
        let ns_filter = namespace.filter(|_| kind.namespaced);
        let initial: Vec<Arc<WatchEvent>> = match from_rv {
            None => table
                .objects
                .iter()
                .filter(|(k, _)| ns_filter.is_none_or(|ns| k.0 == ns))
                .map(|(_, o)| Arc::new(WatchEvent::synthetic_added(kind_id, o)))
                .collect(),
            Some(rv) => {
                if rv < table.oldest_resumable {
                    return Err(ApiError::Gone {
                        message: format!(
                            "too old resource version: {rv} ({})",
                            table.oldest_resumable
                        ),
                    });
                }
                table
                    .history
                    .iter()
                    .filter(|e| e.rv > rv)
                    .cloned()
                    .collect()
            }
        };
        Ok(Subscription {
            initial,
            receiver: table.sender.subscribe(),
            start_rv: inner.rv,
        })
    }

    /// The rv of the newest event already handed to `kind_id`'s watchers (used for bookmarks).
    pub fn last_sent_rv(&self, kind_id: KindId) -> u64 {
        self.last_sent
            .get(kind_id)
            .map(|a| a.load(Ordering::Acquire))
            .unwrap_or(0)
    }

    /// Lists every object of a kind (parsed) and subscribes in one atomic step.
    pub fn list_and_subscribe(
        &self,
        kind_id: KindId,
    ) -> (Vec<Arc<Value>>, broadcast::Receiver<Arc<WatchEvent>>) {
        let (metas, rx) = {
            let inner = self.lock();
            match inner.tables.get(kind_id) {
                Some(t) => (
                    t.objects.values().cloned().collect::<Vec<_>>(),
                    t.sender.subscribe(),
                ),
                None => (Vec::new(), broadcast::channel(1).1),
            }
        };
        (Self::parse_all(&metas), rx)
    }

    /// The metadata of every object of a kind and a subscription, in one atomic step (for in-process
    /// controllers: re-listing after a lag parses nothing).
    pub fn metas_and_subscribe(
        &self,
        kind_id: KindId,
    ) -> (Vec<Arc<ObjMeta>>, broadcast::Receiver<Arc<WatchEvent>>) {
        let inner = self.lock();
        match inner.tables.get(kind_id) {
            Some(t) => (
                t.objects.values().map(|o| o.meta.clone()).collect(),
                t.sender.subscribe(),
            ),
            None => (Vec::new(), broadcast::channel(1).1),
        }
    }

    /// Subscribes to a kind's events from now on.
    pub fn subscribe(&self, kind_id: KindId) -> broadcast::Receiver<Arc<WatchEvent>> {
        let inner = self.lock();
        match inner.tables.get(kind_id) {
            Some(t) => t.sender.subscribe(),
            None => broadcast::channel(1).1,
        }
    }

    /// Simulates etcd compaction: every watch resuming from a resourceVersion older than now gets 410 Gone.
    pub fn expire_history(&self) {
        let mut inner = self.lock();
        inner.rv += 1;
        let rv = inner.rv;
        for t in inner.tables.iter_mut() {
            t.history.clear();
            t.oldest_resumable = rv;
        }
        self.announce_rv(rv);
    }

    /// Tells [`Store::wait_for_rv`] waiters the store reached `rv` (a no-op when nobody waits).
    fn announce_rv(&self, rv: u64) {
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
    fn commit(
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
        let (line, json) = crate::stored::seal(event_type, &object, hint);
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

    // ---------------------------------------------------------------- writes

    fn generate_suffix(&self) -> String {
        let mut rng = self.name_rng.lock().unwrap_or_else(|p| p.into_inner());
        (0..5)
            .map(|_| NAME_CHARS[rng.random_range(0..NAME_CHARS.len())] as char)
            .collect()
    }

    fn validate(
        &self,
        kind: &ResourceKind,
        object: &mut Value,
        mode: FieldValidation,
        name: &str,
    ) -> Result<(), ApiError> {
        let mut causes = validate_metadata(kind, object);
        if causes.is_empty()
            && let Some(v) = &self.validator
            && let Err(c) = v.validate(kind, object, mode)
        {
            causes = c;
        }
        if causes.is_empty() {
            Ok(())
        } else if causes.iter().any(crate::validation::is_unknown_field) {
            // A real server reports strict unknown-field errors as 400 BadRequest.
            Err(ApiError::BadRequest {
                message: format!(
                    "strict decoding error: {}",
                    causes
                        .iter()
                        .filter(|c| crate::validation::is_unknown_field(c))
                        .map(|c| c.message.clone())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })
        } else {
            Err(ApiError::Invalid {
                group: kind.group.clone(),
                kind: kind.kind.clone(),
                name: name.to_string(),
                causes,
            })
        }
    }

    /// A dry-run result: the object as it would be stored, serialized but not committed.
    fn dry_run(object: Value, at: Instant) -> Written {
        let json = Bytes::from(serde_json::to_vec(&object).unwrap_or_default());
        Written {
            object: Arc::new(object),
            json,
            at,
        }
    }

    /// Creates an object. `namespace` is the request's namespace (ignored for cluster-scoped kinds).
    pub fn create(
        &self,
        kind_id: KindId,
        namespace: Option<&str>,
        mut object: Value,
        opts: &WriteOptions,
    ) -> Result<Written, ApiError> {
        let kind = self.kind(kind_id)?.clone();
        if !object.is_object() {
            return Err(ApiError::BadRequest {
                message: "the object must be a JSON object".to_string(),
            });
        }
        check_type_meta(&kind, &mut object)?;
        let ns = if kind.namespaced {
            let body_ns = meta_str(&object, "namespace")
                .unwrap_or_default()
                .to_string();
            match namespace {
                Some(n) if !body_ns.is_empty() && body_ns != n => {
                    return Err(ApiError::BadRequest {
                        message: "the namespace of the provided object does not match the namespace sent on the request".to_string(),
                    });
                }
                Some(n) => n.to_string(),
                None if !body_ns.is_empty() => body_ns,
                None => "default".to_string(),
            }
        } else {
            String::new()
        };
        let meta = object.as_object_mut().and_then(|o| {
            o.entry("metadata").or_insert_with(|| json!({}));
            o.get_mut("metadata").and_then(Value::as_object_mut)
        });
        let Some(meta) = meta else {
            return Err(ApiError::BadRequest {
                message: "metadata must be an object".to_string(),
            });
        };
        let mut name = meta
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if name.is_empty() {
            match meta.get("generateName").and_then(Value::as_str) {
                Some(prefix) if !prefix.is_empty() => {
                    name = format!("{prefix}{}", self.generate_suffix())
                }
                _ => {
                    return Err(ApiError::Invalid {
                        group: kind.group.clone(),
                        kind: kind.kind.clone(),
                        name: String::new(),
                        causes: vec![Cause {
                            field: "metadata.name".to_string(),
                            reason: "FieldValueRequired".to_string(),
                            message: "Required value: name or generateName is required".to_string(),
                        }],
                    });
                }
            }
        }
        meta.insert("name".to_string(), Value::String(name.clone()));
        if kind.namespaced {
            meta.insert("namespace".to_string(), Value::String(ns.clone()));
        } else {
            meta.remove("namespace");
        }
        for f in [
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "managedFields",
            "selfLink",
        ] {
            meta.remove(f);
        }
        meta.insert(
            "uid".to_string(),
            Value::String(uuid::Uuid::new_v4().to_string()),
        );
        meta.insert(
            "creationTimestamp".to_string(),
            Value::String(now_rfc3339()),
        );
        meta.insert("generation".to_string(), json!(1));
        let is_namespace = Some(kind_id) == self.namespace_kind;
        if is_namespace {
            let labels = meta.entry("labels").or_insert_with(|| json!({}));
            if let Some(l) = labels.as_object_mut() {
                l.insert(
                    "kubernetes.io/metadata.name".to_string(),
                    Value::String(name.clone()),
                );
            }
        }
        if let Some(o) = object.as_object_mut() {
            if kind.has_status_subresource {
                o.remove("status");
            }
            if is_namespace {
                o.insert("spec".to_string(), json!({"finalizers": ["kubernetes"]}));
                o.insert("status".to_string(), json!({"phase": "Active"}));
            }
        }
        self.validate(&kind, &mut object, opts.field_validation, &name)?;

        let mut inner = self.lock();
        if kind.namespaced {
            self.check_namespace_open(&inner, &ns, &kind, &name)?;
        }
        let key = (ns, name.clone());
        if inner.tables[kind_id].objects.contains_key(&key) {
            return Err(ApiError::AlreadyExists {
                group: kind.group.clone(),
                kind: kind.plural.clone(),
                name,
            });
        }
        let at = Instant::now();
        if opts.dry_run {
            drop(inner);
            return Ok(Self::dry_run(object, at));
        }
        let (object, stored) = self.commit(
            &mut inner,
            kind_id,
            &key,
            EventType::Added,
            object,
            None,
            at,
        );
        self.collect_if_dangling(&mut inner, kind_id, key, at);
        Ok(Written {
            object,
            json: stored.json,
            at,
        })
    }

    /// The garbage collector's rule for a dependent written after its owners were deleted: when every
    /// ownerReference names an absent uid, the object is deleted in the background (the write itself
    /// succeeds, as on a real API server; the GC removes it right after).
    fn collect_if_dangling(&self, inner: &mut Inner, kind_id: KindId, key: ObjKey, at: Instant) {
        let Some(object) = inner.tables[kind_id].objects.get(&key) else {
            return;
        };
        let owners = &object.meta.owners;
        if owners.is_empty() || owners.iter().any(|o| inner.uids.contains_key(&**o)) {
            return;
        }
        self.delete_locked(inner, kind_id, key, Propagation::Background, at);
    }

    fn check_namespace_open(
        &self,
        inner: &Inner,
        ns: &str,
        kind: &ResourceKind,
        name: &str,
    ) -> Result<(), ApiError> {
        let Some(ns_kind) = self.namespace_kind else {
            return Ok(());
        };
        match inner.tables[ns_kind]
            .objects
            .get(&(String::new(), ns.to_string()))
        {
            None => Err(ApiError::NotFound {
                group: String::new(),
                kind: "namespaces".to_string(),
                name: ns.to_string(),
            }),
            Some(n) if n.meta.deleting => Err(ApiError::Forbidden {
                group: kind.group.clone(),
                kind: kind.plural.clone(),
                name: name.to_string(),
                message: format!(
                    "{} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                    kind.qualified_plural()
                ),
            }),
            Some(_) => Ok(()),
        }
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

    /// The current stored and parsed versions of `key`, under the lock.
    fn current(
        &self,
        inner: &Inner,
        kind_id: KindId,
        kind: &ResourceKind,
        key: &ObjKey,
    ) -> Result<(Stored, Arc<Value>), ApiError> {
        let stored = inner.tables[kind_id]
            .objects
            .get(key)
            .cloned()
            .ok_or_else(|| Self::not_found(kind, &key.1))?;
        let parsed = Self::parse(&stored)?;
        Ok((stored, parsed))
    }

    /// Replaces an object (PUT). `status_only` writes through the status subresource.
    pub fn update(
        &self,
        kind_id: KindId,
        namespace: Option<&str>,
        name: &str,
        object: Value,
        status_only: bool,
        opts: &WriteOptions,
    ) -> Result<Written, ApiError> {
        let kind = self.kind(kind_id)?.clone();
        let mut object = object;
        if !object.is_object() {
            return Err(ApiError::BadRequest {
                message: "the object must be a JSON object".to_string(),
            });
        }
        check_type_meta(&kind, &mut object)?;
        if let Some(body_name) = meta_str(&object, "name")
            && body_name != name
        {
            return Err(ApiError::BadRequest {
                message: "the name of the object does not match the name on the URL".to_string(),
            });
        }
        let mut inner = self.lock();
        let key = Self::key(&kind, namespace, name);
        let (stored, old) = self.current(&inner, kind_id, &kind, &key)?;
        if let Some(rv) = meta_str(&object, "resourceVersion")
            && !rv.is_empty()
            && rv != meta_str(&old, "resourceVersion").unwrap_or_default()
        {
            return Err(conflict(&kind, name));
        }
        self.commit_update(
            &mut inner,
            kind_id,
            &kind,
            key,
            (stored, old),
            object,
            status_only,
            opts,
        )
    }

    /// Read-modify-write under the store lock (for in-process controllers): `f` edits a copy of the current
    /// object; nothing is written when it leaves the object unchanged.
    pub fn modify(
        &self,
        kind_id: KindId,
        namespace: Option<&str>,
        name: &str,
        status_only: bool,
        f: impl FnOnce(&mut Value),
    ) -> Result<Written, ApiError> {
        let kind = self.kind(kind_id)?.clone();
        let mut inner = self.lock();
        let key = Self::key(&kind, namespace, name);
        let (stored, old) = self.current(&inner, kind_id, &kind, &key)?;
        let mut new = (*old).clone();
        f(&mut new);
        self.commit_update(
            &mut inner,
            kind_id,
            &kind,
            key,
            (stored, old),
            new,
            status_only,
            &WriteOptions::default(),
        )
    }

    /// Writes through the status subresource (for in-process controllers): `f` edits the current status (`{}`
    /// when there is none), which then replaces it, under the store lock. It is what `modify(.., true, ..)`
    /// setting `status` does, except that a write changing nothing is recognised from the status alone,
    /// without parsing the whole object (most controller reconciles change nothing).
    pub fn modify_status(
        &self,
        kind_id: KindId,
        namespace: Option<&str>,
        name: &str,
        f: impl FnOnce(&mut Value),
    ) -> Result<StatusWritten, ApiError> {
        #[derive(serde::Deserialize)]
        struct StatusOnly {
            #[serde(default)]
            status: Option<Value>,
        }
        let kind = self.kind(kind_id)?.clone();
        let mut inner = self.lock();
        let key = Self::key(&kind, namespace, name);
        let stored = inner.tables[kind_id]
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| Self::not_found(&kind, name))?;
        let before = serde_json::from_slice::<StatusOnly>(&stored.json)
            .map_err(|e| corrupt(&e))?
            .status;
        let mut status = before.clone().unwrap_or_else(|| json!({}));
        f(&mut status);
        if before.as_ref() == Some(&status) {
            return Ok(StatusWritten {
                status,
                changed: false,
                at: Instant::now(),
            });
        }
        let old = Self::parse(&stored)?;
        // A status write only reads `status` of the new object.
        let w = self.commit_update(
            &mut inner,
            kind_id,
            &kind,
            key,
            (stored, old.clone()),
            json!({ "status": status }),
            true,
            &WriteOptions::default(),
        )?;
        Ok(StatusWritten {
            status: w.object.get("status").cloned().unwrap_or(Value::Null),
            // Pruning may still have made it the stored object.
            changed: !Arc::ptr_eq(&w.object, &old),
            at: w.at,
        })
    }

    /// Applies a patch.
    pub fn patch(
        &self,
        kind_id: KindId,
        namespace: Option<&str>,
        name: &str,
        patch: Patch,
        status_only: bool,
        opts: &WriteOptions,
    ) -> Result<Written, ApiError> {
        let kind = self.kind(kind_id)?.clone();
        if let Patch::StrategicMerge(_) = patch
            && !kind.group.is_empty()
        {
            return Err(ApiError::UnsupportedMediaType {
                accepted: "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml".to_string(),
            });
        }
        let key = Self::key(&kind, namespace, name);
        let exists = self.lock().tables[kind_id].objects.contains_key(&key);
        if !exists {
            // Server-side apply creates missing objects; other patches 404.
            if let Patch::Apply { mut body, .. } = patch {
                if status_only {
                    return Err(Self::not_found(&kind, name));
                }
                if let Some(m) = body.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.insert("name".to_string(), Value::String(name.to_string()));
                }
                return self.create(kind_id, namespace, body, opts);
            }
            return Err(Self::not_found(&kind, name));
        }
        let mut inner = self.lock();
        let (stored, old) = self.current(&inner, kind_id, &kind, &key)?;
        let mut new = (*old).clone();
        let precondition_rv = match &patch {
            Patch::Merge(p) | Patch::StrategicMerge(p) | Patch::Apply { body: p, .. } => p
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .map(str::to_string),
            Patch::Json(_) => None,
        };
        match patch {
            Patch::Merge(p) | Patch::StrategicMerge(p) => json_patch::merge(&mut new, &p),
            // `new` is a copy thrown away on error, so no undo is needed; json-patch's undo panics
            // when a later op fails after an earlier one moved things (found by fuzzing).
            Patch::Json(p) => {
                json_patch::patch_unsafe(&mut new, &p).map_err(|e| ApiError::Invalid {
                    group: kind.group.clone(),
                    kind: kind.kind.clone(),
                    name: name.to_string(),
                    causes: vec![Cause {
                        field: String::new(),
                        reason: "FieldValueInvalid".to_string(),
                        message: e.to_string(),
                    }],
                })?
            }
            Patch::Apply { body, .. } => {
                if let Some(n) = meta_str(&body, "name")
                    && n != name
                {
                    return Err(ApiError::BadRequest {
                        message: "the name of the object does not match the name on the URL"
                            .to_string(),
                    });
                }
                apply_merge(&mut new, &body);
            }
        }
        if let Some(rv) = precondition_rv
            && !rv.is_empty()
            && rv != meta_str(&old, "resourceVersion").unwrap_or_default()
        {
            return Err(conflict(&kind, name));
        }
        // A patch cannot change the object's identity.
        check_type_meta(&kind, &mut new)?;
        self.commit_update(
            &mut inner,
            kind_id,
            &kind,
            key,
            (stored, old),
            new,
            status_only,
            opts,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn commit_update(
        &self,
        inner: &mut Inner,
        kind_id: KindId,
        kind: &ResourceKind,
        key: ObjKey,
        (stored, old): (Stored, Arc<Value>),
        new: Value,
        status_only: bool,
        opts: &WriteOptions,
    ) -> Result<Written, ApiError> {
        let mut result = if status_only {
            let mut r = (*old).clone();
            match new.get("status") {
                Some(s) => r["status"] = s.clone(),
                None => {
                    if let Some(o) = r.as_object_mut() {
                        o.remove("status");
                    }
                }
            }
            r
        } else {
            let mut r = new;
            let keeps_status = kind.has_status_subresource || Some(kind_id) == self.namespace_kind;
            if keeps_status && let Some(o) = r.as_object_mut() {
                {
                    match old.get("status") {
                        Some(s) => {
                            o.insert("status".to_string(), s.clone());
                        }
                        None => {
                            o.remove("status");
                        }
                    }
                }
            }
            if Some(kind_id) == self.namespace_kind
                && let Some(spec) = old.get("spec")
            {
                r["spec"] = spec.clone();
            }
            r
        };
        // Identity and server-owned metadata come from the stored object.
        {
            let empty = Map::new();
            let old_meta = old
                .get("metadata")
                .and_then(Value::as_object)
                .unwrap_or(&empty);
            let Some(meta) = result
                .as_object_mut()
                .map(|o| o.entry("metadata").or_insert_with(|| json!({})))
                .and_then(Value::as_object_mut)
            else {
                return Err(ApiError::BadRequest {
                    message: "metadata must be an object".to_string(),
                });
            };
            for f in [
                "name",
                "namespace",
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "resourceVersion",
            ] {
                match old_meta.get(f) {
                    Some(v) => {
                        meta.insert(f.to_string(), v.clone());
                    }
                    None => {
                        meta.remove(f);
                    }
                }
            }
            if status_only {
                // The status subresource ignores metadata changes.
                *meta = old_meta.clone();
            }
            if stored.meta.deleting {
                let new_f: BTreeSet<&str> = meta
                    .get("finalizers")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                if !new_f.iter().all(|f| stored.meta.has_finalizer(f)) {
                    return Err(ApiError::Forbidden {
                        group: kind.group.clone(),
                        kind: kind.plural.clone(),
                        name: key.1.clone(),
                        message: "no new finalizers can be added if the object is being deleted"
                            .to_string(),
                    });
                }
            }
        }
        if Some(kind_id) == self.namespace_kind {
            let before = old
                .pointer("/metadata/labels")
                .and_then(|l| l.get(PRIMARY_UDN_LABEL));
            let after = result
                .pointer("/metadata/labels")
                .and_then(|l| l.get(PRIMARY_UDN_LABEL));
            if before != after {
                return Err(ApiError::Invalid {
                    group: String::new(),
                    kind: "Namespace".to_string(),
                    name: key.1.clone(),
                    causes: vec![Cause {
                        field: "metadata.labels".to_string(),
                        reason: "FieldValueForbidden".to_string(),
                        message: format!(
                            "The '{PRIMARY_UDN_LABEL}' label cannot be added/removed after the namespace was created"
                        ),
                    }],
                });
            }
        }
        self.validate(kind, &mut result, opts.field_validation, &key.1)?;
        if result == *old {
            return Ok(Written {
                object: old,
                json: stored.json,
                at: Instant::now(),
            });
        }
        if !status_only && spec_changed(&old, &result) {
            let generation = old
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(0)
                + 1;
            result["metadata"]["generation"] = json!(generation);
        }
        let at = Instant::now();
        if opts.dry_run {
            return Ok(Self::dry_run(result, at));
        }
        let being_deleted = result.pointer("/metadata/deletionTimestamp").is_some();
        if being_deleted && finalizers(&result).is_empty() {
            let (object, json) = self.remove_locked(inner, kind_id, &key, Some(result), at);
            return Ok(Written { object, json, at });
        }
        let (object, stored) = self.commit(
            inner,
            kind_id,
            &key,
            EventType::Modified,
            result,
            Some(&stored),
            at,
        );
        self.collect_if_dangling(inner, kind_id, key, at);
        Ok(Written {
            object,
            json: stored.json,
            at,
        })
    }

    /// Deletes an object, honouring finalizers and propagation.
    pub fn delete(
        &self,
        kind_id: KindId,
        namespace: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Deleted, ApiError> {
        let kind = self.kind(kind_id)?.clone();
        let mut inner = self.lock();
        let key = Self::key(&kind, namespace, name);
        let (stored, old) = self.current(&inner, kind_id, &kind, &key)?;
        if let Some(uid) = &opts.precondition_uid
            && *uid != stored.meta.uid
        {
            return Err(ApiError::Conflict {
                group: kind.group.clone(),
                kind: kind.plural.clone(),
                name: name.to_string(),
                message: format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    stored.meta.uid
                ),
            });
        }
        if let Some(rv) = &opts.precondition_rv
            && Some(rv.as_str()) != meta_str(&old, "resourceVersion")
        {
            return Err(conflict(&kind, name));
        }
        let at = Instant::now();
        if opts.dry_run {
            let removed = stored.meta.finalizers.is_empty();
            return Ok(Deleted {
                object: old,
                removed,
                at,
            });
        }
        let (object, removed) = self.delete_locked(&mut inner, kind_id, key, opts.propagation, at);
        Ok(Deleted {
            object,
            removed,
            at,
        })
    }

    /// Deletes every object of a kind matching the selectors (deletecollection).
    pub fn delete_collection(
        &self,
        kind_id: KindId,
        namespace: Option<&str>,
        list: &ListOptions,
        opts: &DeleteOptions,
    ) -> Result<Vec<Arc<Value>>, ApiError> {
        let kind = self.kind(kind_id)?.clone();
        let items = self
            .list_stored(
                kind_id,
                namespace,
                &ListOptions {
                    limit: None,
                    continue_token: None,
                    ..list.clone()
                },
            )?
            .items;
        let mut out = Vec::new();
        let mut inner = self.lock();
        for item in items {
            let key = Self::key(&kind, Some(&item.meta.namespace), &item.meta.name);
            if !inner.tables[kind_id].objects.contains_key(&key) || opts.dry_run {
                continue;
            }
            let (o, _) =
                self.delete_locked(&mut inner, kind_id, key, opts.propagation, Instant::now());
            out.push(o);
        }
        Ok(out)
    }

    fn delete_locked(
        &self,
        inner: &mut Inner,
        kind_id: KindId,
        key: ObjKey,
        propagation: Propagation,
        at: Instant,
    ) -> (Arc<Value>, bool) {
        let Some(old) = inner.tables[kind_id].objects.get(&key).cloned() else {
            return (Arc::new(Value::Null), true);
        };
        let is_namespace = Some(kind_id) == self.namespace_kind;
        let uid = old.meta.uid.clone();
        if propagation == Propagation::Orphan {
            let deps: Vec<(KindId, ObjKey)> = inner
                .dependents
                .get(&uid)
                .map(|s| s.iter().cloned().collect())
                .unwrap_or_default();
            for (dk, dkey) in deps {
                if let Some(dep) = inner.tables[dk].objects.get(&dkey).cloned() {
                    let mut new = dep.parse();
                    if let Some(refs) = new
                        .pointer_mut("/metadata/ownerReferences")
                        .and_then(Value::as_array_mut)
                    {
                        refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(uid.as_str()));
                    }
                    self.write_internal(inner, dk, dkey, &dep, new, at);
                }
            }
        }
        let needs_foreground = propagation == Propagation::Foreground
            && inner.dependents.get(&uid).is_some_and(|d| !d.is_empty());
        if is_namespace || !old.meta.finalizers.is_empty() || needs_foreground {
            // Mark for deletion; the object stays until its finalizers are gone.
            let mut new = old.parse();
            if new.pointer("/metadata/deletionTimestamp").is_none() {
                new["metadata"]["deletionTimestamp"] = Value::String(now_rfc3339());
                new["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            }
            if needs_foreground {
                let mut fins = finalizers(&new);
                fins.insert(FOREGROUND_FINALIZER.to_string());
                new["metadata"]["finalizers"] =
                    Value::Array(fins.into_iter().map(Value::String).collect());
            }
            if is_namespace {
                new["status"]["phase"] = json!("Terminating");
            }
            let current = self.write_internal(inner, kind_id, key.clone(), &old, new, at);
            if needs_foreground {
                let deps: Vec<(KindId, ObjKey)> = inner
                    .dependents
                    .get(&uid)
                    .map(|s| s.iter().cloned().collect())
                    .unwrap_or_default();
                for (dk, dkey) in deps {
                    self.delete_locked(inner, dk, dkey, Propagation::Background, at);
                }
                self.finish_foreground(inner, &uid, at);
            }
            if is_namespace {
                self.empty_namespace(inner, &key.1, at);
            }
            let still = inner.tables[kind_id].objects.get(&key).cloned();
            return match still {
                Some(o) => (Self::parse(&o).unwrap_or(current), false),
                None => (current, true),
            };
        }
        let (gone, _) = self.remove_locked(inner, kind_id, &key, None, at);
        (gone, true)
    }

    /// Writes a server-side change (metadata bookkeeping) without validation.
    fn write_internal(
        &self,
        inner: &mut Inner,
        kind_id: KindId,
        key: ObjKey,
        old: &Stored,
        new: Value,
        at: Instant,
    ) -> Arc<Value> {
        if let Ok(current) = Self::parse(old)
            && new == *current
        {
            return current;
        }
        self.commit(
            inner,
            kind_id,
            &key,
            EventType::Modified,
            new,
            Some(old),
            at,
        )
        .0
    }

    fn empty_namespace(&self, inner: &mut Inner, ns: &str, at: Instant) {
        let mut keys = Vec::new();
        for (kind_id, t) in inner.tables.iter().enumerate() {
            for (k, _) in t
                .objects
                .range::<ObjKey, _>((ns.to_string(), String::new())..)
            {
                if k.0 != ns {
                    break;
                }
                keys.push((kind_id, k.clone()));
            }
        }
        for (kind_id, key) in keys {
            self.delete_locked(inner, kind_id, key, Propagation::Background, at);
        }
        self.finish_namespace(inner, ns, at);
    }

    fn finish_namespace(&self, inner: &mut Inner, ns: &str, at: Instant) {
        let Some(ns_kind) = self.namespace_kind else {
            return;
        };
        if inner.ns_counts.get(ns).copied().unwrap_or(0) > 0 {
            return;
        }
        let key = (String::new(), ns.to_string());
        let Some(obj) = inner.tables[ns_kind].objects.get(&key) else {
            return;
        };
        if !obj.meta.deleting || !obj.meta.finalizers.is_empty() {
            return;
        }
        inner.ns_counts.remove(ns);
        self.remove_locked(inner, ns_kind, &key, None, at);
    }

    /// Removes an object for good (its DELETED event carries `latest`, or the stored version, at a new
    /// resourceVersion), then garbage-collects its dependents.
    fn remove_locked(
        &self,
        inner: &mut Inner,
        kind_id: KindId,
        key: &ObjKey,
        latest: Option<Value>,
        at: Instant,
    ) -> (Arc<Value>, Bytes) {
        let Some(old) = inner.tables[kind_id].objects.get(key).cloned() else {
            let last = latest.unwrap_or(Value::Null);
            let json = Bytes::from(serde_json::to_vec(&last).unwrap_or_default());
            return (Arc::new(last), json);
        };
        let last = latest.unwrap_or_else(|| old.parse());
        let (last, stored) = self.commit(
            inner,
            kind_id,
            key,
            EventType::Deleted,
            last,
            Some(&old),
            at,
        );
        let uid = &old.meta.uid;
        // Garbage collection: dependents whose owners are all gone are deleted in the background.
        let deps: Vec<(KindId, ObjKey)> = inner
            .dependents
            .remove(uid)
            .map(|s| s.into_iter().collect())
            .unwrap_or_default();
        for (dk, dkey) in deps {
            let Some(dep) = inner.tables[dk].objects.get(&dkey) else {
                continue;
            };
            let any_owner_left = dep
                .meta
                .owners
                .iter()
                .any(|o| inner.uids.contains_key(&**o));
            if !any_owner_left {
                self.delete_locked(inner, dk, dkey, Propagation::Background, at);
            }
        }
        // Owners waiting in foreground deletion may now be complete.
        for owner in old.meta.owners.iter() {
            self.finish_foreground(inner, owner, at);
        }
        if !key.0.is_empty() {
            let terminating = self
                .namespace_kind
                .and_then(|nk| {
                    inner.tables[nk]
                        .objects
                        .get(&(String::new(), key.0.clone()))
                })
                .is_some_and(|n| n.meta.deleting);
            if terminating {
                self.finish_namespace(inner, &key.0.clone(), at);
            }
        }
        (last, stored.json)
    }

    fn finish_foreground(&self, inner: &mut Inner, owner_uid: &str, at: Instant) {
        let Some((kind_id, key)) = inner.uids.get(owner_uid).cloned() else {
            return;
        };
        let Some(owner) = inner.tables[kind_id].objects.get(&key).cloned() else {
            return;
        };
        if !owner.meta.has_finalizer(FOREGROUND_FINALIZER) {
            return;
        }
        if inner
            .dependents
            .get(owner_uid)
            .is_some_and(|d| !d.is_empty())
        {
            return;
        }
        let mut new = owner.parse();
        if let Some(f) = new
            .pointer_mut("/metadata/finalizers")
            .and_then(Value::as_array_mut)
        {
            f.retain(|v| v.as_str() != Some(FOREGROUND_FINALIZER));
        }
        if finalizers(&new).is_empty() {
            self.remove_locked(inner, kind_id, &key, Some(new), at);
        } else {
            self.write_internal(inner, kind_id, key, &owner, new, at);
        }
    }
}

fn set_rv(object: &mut Value, rv: u64) {
    object["metadata"]["resourceVersion"] = Value::String(rv.to_string());
}

fn conflict(kind: &ResourceKind, name: &str) -> ApiError {
    ApiError::Conflict {
        group: kind.group.clone(),
        kind: kind.qualified_plural(),
        name: name.to_string(),
        message: "the object has been modified; please apply your changes to the latest version and try again".to_string(),
    }
}

fn finalizers(object: &Value) -> BTreeSet<String> {
    object
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn spec_changed(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| -> Map<String, Value> {
        let mut m = v.as_object().cloned().unwrap_or_default();
        m.remove("metadata");
        m.remove("status");
        m
    };
    strip(old) != strip(new)
}

/// Checks (and fills in when missing) `apiVersion`/`kind`.
fn check_type_meta(kind: &ResourceKind, object: &mut Value) -> Result<(), ApiError> {
    let want_av = kind.api_version();
    let Some(o) = object.as_object_mut() else {
        return Err(ApiError::BadRequest {
            message: "the object must be a JSON object".to_string(),
        });
    };
    match o.get("apiVersion").and_then(Value::as_str) {
        Some(av) if av != want_av => {
            return Err(ApiError::BadRequest {
                message: format!(
                    "the API version in the data ({av}) does not match the expected API version ({want_av})"
                ),
            });
        }
        Some(_) => {}
        None => {
            o.insert("apiVersion".to_string(), Value::String(want_av));
        }
    }
    match o.get("kind").and_then(Value::as_str) {
        Some(k) if k != kind.kind => {
            return Err(ApiError::BadRequest {
                message: format!(
                    "the kind in the data ({k}) does not match the expected kind ({})",
                    kind.kind
                ),
            });
        }
        Some(_) => {}
        None => {
            o.insert("kind".to_string(), Value::String(kind.kind.clone()));
        }
    }
    Ok(())
}

/// Name rules every object obeys (DNS-1123 subdomain; DNS-1123 label for namespaces), label value length.
fn validate_metadata(kind: &ResourceKind, object: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let name = meta_str(object, "name").unwrap_or_default();
    let (max, allow_dot) = if kind.kind == "Namespace" {
        (63, false)
    } else {
        (253, true)
    };
    let valid = !name.is_empty()
        && name.len() <= max
        && name.chars().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || (allow_dot && c == '.')
        })
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !valid {
        causes.push(Cause {
            field: "metadata.name".to_string(),
            reason: "FieldValueInvalid".to_string(),
            message: format!(
                "Invalid value: {name:?}: a lowercase RFC 1123 {} must consist of lower case alphanumeric characters{}, and must start and end with an alphanumeric character",
                if allow_dot { "subdomain" } else { "label" },
                if allow_dot { ", '-' or '.'" } else { " or '-'" }
            ),
        });
    }
    if let Some(labels) = object.pointer("/metadata/labels") {
        match labels.as_object() {
            Some(l) => {
                for (k, v) in l {
                    match v.as_str() {
                        Some(s) if s.len() <= 63 => {}
                        _ => causes.push(Cause {
                            field: format!("metadata.labels.{k}"),
                            reason: "FieldValueInvalid".to_string(),
                            message: "Invalid value: a label value must be a string of at most 63 characters".to_string(),
                        }),
                    }
                }
            }
            None => causes.push(Cause {
                field: "metadata.labels".to_string(),
                reason: "FieldValueInvalid".to_string(),
                message: "Invalid value: labels must be a map of strings".to_string(),
            }),
        }
    }
    causes
}

/// Server-side-apply merge approximation: objects merge key by key; `null` removes; anything else replaces.
fn apply_merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else if let Some(existing) = t.get_mut(k) {
                    apply_merge(existing, v);
                } else {
                    t.insert(k.clone(), v.clone());
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

/// A kind's objects as they were at a resourceVersion.
enum StateAt {
    /// Nothing of the kind changed since: the current objects.
    Current,
    /// Rebuilt from the history (only `namespace`'s objects when one is given).
    Past(BTreeMap<ObjKey, Stored>),
    /// Older than the history: unknown.
    Forgotten,
}

/// The objects of `table` at `rv`: the current ones with every later change undone, newest first. Possible while
/// the history holds every event after `rv`, i.e. `rv >= oldest_resumable`.
fn state_at(table: &Table, rv: u64, namespace: Option<&str>) -> StateAt {
    if rv < table.oldest_resumable {
        return StateAt::Forgotten;
    }
    if table.history.back().is_none_or(|e| e.rv <= rv) {
        return StateAt::Current;
    }
    let mut objects: BTreeMap<ObjKey, Stored> = match namespace {
        Some(ns) => table
            .objects
            .range::<ObjKey, _>((ns.to_string(), String::new())..)
            .take_while(|(k, _)| k.0 == ns)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        None => table.objects.clone(),
    };
    for event in table.history.iter().rev().take_while(|e| e.rv > rv) {
        if namespace.is_some_and(|ns| event.meta.namespace != ns) {
            continue;
        }
        let key = (event.meta.namespace.clone(), event.meta.name.clone());
        match (&event.event_type, &event.prior) {
            (EventType::Modified | EventType::Deleted, Some(prior)) => {
                objects.insert(key, prior.clone());
            }
            _ => {
                objects.remove(&key);
            }
        }
    }
    StateAt::Past(objects)
}

fn encode_continue(rv: u64, key: &ObjKey) -> String {
    let raw = format!("{rv}\u{0}{}\u{0}{}", key.0, key.1);
    raw.bytes().map(|b| format!("{b:02x}")).collect()
}

fn decode_continue(token: &str) -> Option<(u64, ObjKey)> {
    if !token.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(token.get(i..i + 2)?, 16).ok())
        .collect();
    let text = String::from_utf8(bytes?).ok()?;
    let mut parts = text.split('\u{0}');
    let rv = parts.next()?.parse().ok()?;
    let ns = parts.next()?.to_string();
    let name = parts.next()?.to_string();
    Some((rv, (ns, name)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (Store, KindId, KindId, KindId) {
        let mut kinds = Registry::builtin_kinds();
        kinds.extend(Registry::design_kinds());
        let reg = Arc::new(Registry::new(kinds));
        let ns = reg.by_path("", "v1", "namespaces").unwrap();
        let vm = reg.by_path("kubevirt.io", "v1", "virtualmachines").unwrap();
        let claim = reg
            .by_path("k8s.cni.cncf.io", "v1alpha1", "ipamclaims")
            .unwrap();
        let s = Store::new(reg, None, 8, 64, 1);
        s.create(
            ns,
            None,
            json!({"metadata": {"name": "a"}}),
            &WriteOptions::default(),
        )
        .unwrap();
        (s, ns, vm, claim)
    }

    fn vm(name: &str) -> Value {
        json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "metadata": {"name": name}, "spec": {"runStrategy": "Always"}, "status": {"x": 1}})
    }

    #[test]
    fn create_sets_metadata_and_drops_status() {
        let (s, _, vmk, _) = store();
        let w = s
            .create(vmk, Some("a"), vm("v1"), &WriteOptions::default())
            .unwrap();
        assert_eq!(w.object["metadata"]["namespace"], "a");
        assert_eq!(w.object["metadata"]["generation"], 1);
        assert!(w.object.get("status").is_none());
        assert!(object_rv(&w.object) > 0);
        let err = s
            .create(vmk, Some("a"), vm("v1"), &WriteOptions::default())
            .unwrap_err();
        assert_eq!(err.code(), 409);
        let err = s
            .create(vmk, Some("missing"), vm("v2"), &WriteOptions::default())
            .unwrap_err();
        assert_eq!(err.code(), 404);
        let gen_name = json!({"metadata": {"generateName": "vm-"}, "spec": {}});
        let w = s
            .create(vmk, Some("a"), gen_name, &WriteOptions::default())
            .unwrap();
        assert!(
            w.object["metadata"]["name"]
                .as_str()
                .unwrap()
                .starts_with("vm-")
        );
    }

    #[test]
    fn update_conflicts_on_stale_rv_and_bumps_generation_on_spec_change() {
        let (s, _, vmk, _) = store();
        let w = s
            .create(vmk, Some("a"), vm("v1"), &WriteOptions::default())
            .unwrap();
        let mut changed = (*w.object).clone();
        changed["spec"]["runStrategy"] = json!("Halted");
        let w2 = s
            .update(
                vmk,
                Some("a"),
                "v1",
                changed.clone(),
                false,
                &WriteOptions::default(),
            )
            .unwrap();
        assert_eq!(w2.object["metadata"]["generation"], 2);
        let err = s
            .update(
                vmk,
                Some("a"),
                "v1",
                changed,
                false,
                &WriteOptions::default(),
            )
            .unwrap_err();
        assert_eq!(err.code(), 409);
        let st = s
            .modify(vmk, Some("a"), "v1", true, |o| {
                o["status"] = json!({"ready": true})
            })
            .unwrap();
        assert_eq!(st.object["status"]["ready"], true);
        assert_eq!(st.object["metadata"]["generation"], 2);
        // A main-resource write cannot change status.
        let mut main = (*st.object).clone();
        main["status"] = json!({"ready": false});
        let w3 = s
            .update(vmk, Some("a"), "v1", main, false, &WriteOptions::default())
            .unwrap();
        assert_eq!(w3.object["status"]["ready"], true);
    }

    #[test]
    fn finalizers_delay_deletion_and_gc_follows_owner() {
        let (s, _, vmk, claimk) = store();
        let owner = s
            .create(vmk, Some("a"), vm("v1"), &WriteOptions::default())
            .unwrap();
        let uid = owner.object["metadata"]["uid"]
            .as_str()
            .unwrap()
            .to_string();
        let claim = json!({"metadata": {"name": "v1.default", "finalizers": ["kubevirt.io/persistent-ipam"],
            "ownerReferences": [{"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "name": "v1", "uid": uid, "controller": true}]},
            "spec": {"network": "n"}});
        s.create(claimk, Some("a"), claim, &WriteOptions::default())
            .unwrap();
        let d = s
            .delete(vmk, Some("a"), "v1", &DeleteOptions::default())
            .unwrap();
        assert!(d.removed);
        let c = s.get(claimk, Some("a"), "v1.default").unwrap();
        assert!(c.pointer("/metadata/deletionTimestamp").is_some());
        let err = s
            .modify(claimk, Some("a"), "v1.default", false, |o| {
                o["metadata"]["finalizers"] = json!(["x", "kubevirt.io/persistent-ipam"])
            })
            .unwrap_err();
        assert_eq!(err.code(), 403);
        s.modify(claimk, Some("a"), "v1.default", false, |o| {
            o["metadata"]["finalizers"] = json!([])
        })
        .unwrap();
        assert!(s.get_opt(claimk, Some("a"), "v1.default").is_none());
    }

    /// A dependent written after its owner was deleted (a controller racing the delete) is collected,
    /// as the real garbage collector does with an absent owner; one with a live owner stays.
    #[test]
    fn a_dependent_whose_owners_are_all_gone_is_collected() {
        let (s, _, vmk, claimk) = store();
        let owner = s
            .create(vmk, Some("a"), vm("v1"), &WriteOptions::default())
            .unwrap();
        let live_uid = owner.object["metadata"]["uid"]
            .as_str()
            .unwrap()
            .to_string();
        let claim = |name: &str, uid: &str| {
            json!({"metadata": {"name": name,
                "ownerReferences": [{"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "name": "v1", "uid": uid}]},
                "spec": {"network": "n"}})
        };
        let gone = s
            .create(
                claimk,
                Some("a"),
                claim("late.default", "no-such-uid"),
                &WriteOptions::default(),
            )
            .expect("the write succeeds; the GC removes it afterwards");
        assert_eq!(gone.object["metadata"]["name"], "late.default");
        assert!(s.get_opt(claimk, Some("a"), "late.default").is_none());
        s.create(
            claimk,
            Some("a"),
            claim("kept.default", &live_uid),
            &WriteOptions::default(),
        )
        .unwrap();
        assert!(s.get_opt(claimk, Some("a"), "kept.default").is_some());
        // An update that leaves only absent owners is collected too.
        s.modify(claimk, Some("a"), "kept.default", false, |o| {
            o["metadata"]["ownerReferences"][0]["uid"] = json!("no-such-uid")
        })
        .unwrap();
        assert!(s.get_opt(claimk, Some("a"), "kept.default").is_none());
    }

    #[test]
    fn foreground_waits_for_dependents_and_orphan_keeps_them() {
        let (s, _, vmk, claimk) = store();
        for (name, prop) in [("f", Propagation::Foreground), ("o", Propagation::Orphan)] {
            let owner = s
                .create(vmk, Some("a"), vm(name), &WriteOptions::default())
                .unwrap();
            let uid = owner.object["metadata"]["uid"]
                .as_str()
                .unwrap()
                .to_string();
            let claim = json!({"metadata": {"name": format!("{name}.default"), "finalizers": ["hold"],
                "ownerReferences": [{"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "name": name, "uid": uid, "blockOwnerDeletion": true}]},
                "spec": {"network": "n"}});
            s.create(claimk, Some("a"), claim, &WriteOptions::default())
                .unwrap();
            let d = s
                .delete(
                    vmk,
                    Some("a"),
                    name,
                    &DeleteOptions {
                        propagation: prop,
                        ..Default::default()
                    },
                )
                .unwrap();
            match prop {
                Propagation::Foreground => {
                    assert!(!d.removed);
                    assert!(s.get_opt(vmk, Some("a"), name).is_some());
                    s.modify(claimk, Some("a"), "f.default", false, |o| {
                        o["metadata"]["finalizers"] = json!([])
                    })
                    .unwrap();
                    assert!(s.get_opt(vmk, Some("a"), name).is_none());
                }
                _ => {
                    assert!(d.removed);
                    let c = s.get(claimk, Some("a"), "o.default").unwrap();
                    assert!(c.pointer("/metadata/deletionTimestamp").is_none());
                    assert_eq!(c["metadata"]["ownerReferences"], json!([]));
                }
            }
        }
    }

    #[test]
    fn namespace_deletion_cascades_and_blocks_new_content() {
        let (s, nsk, vmk, claimk) = store();
        s.create(vmk, Some("a"), vm("v1"), &WriteOptions::default())
            .unwrap();
        s.create(
            claimk,
            Some("a"),
            json!({"metadata": {"name": "c", "finalizers": ["hold"]}, "spec": {"network": "n"}}),
            &WriteOptions::default(),
        )
        .unwrap();
        let d = s.delete(nsk, None, "a", &DeleteOptions::default()).unwrap();
        assert!(!d.removed);
        assert_eq!(
            s.get(nsk, None, "a").unwrap()["status"]["phase"],
            "Terminating"
        );
        assert!(s.get_opt(vmk, Some("a"), "v1").is_none());
        assert_eq!(
            s.create(vmk, Some("a"), vm("v2"), &WriteOptions::default())
                .unwrap_err()
                .code(),
            403
        );
        s.modify(claimk, Some("a"), "c", false, |o| {
            o["metadata"]["finalizers"] = json!([])
        })
        .unwrap();
        assert!(s.get_opt(nsk, None, "a").is_none());
    }

    #[test]
    fn modify_status_skips_no_op_writes_and_matches_modify() {
        let (s, _, vmk, _) = store();
        s.set_view(vmk, |o| {
            Arc::new(o.pointer("/status/ready").and_then(Value::as_bool))
        });
        s.create(vmk, Some("a"), vm("v1"), &WriteOptions::default())
            .unwrap();
        s.create(vmk, Some("a"), vm("v2"), &WriteOptions::default())
            .unwrap();
        let set_ready = |st: &mut Value| st["ready"] = json!(true);
        let w = s.modify_status(vmk, Some("a"), "v1", set_ready).unwrap();
        assert!(w.changed);
        let m = s.modify(vmk, Some("a"), "v2", true, |o| {
            let mut st = o.get("status").cloned().unwrap_or_else(|| json!({}));
            set_ready(&mut st);
            o["status"] = st;
        });
        let (v1, v2) = (s.get(vmk, Some("a"), "v1").unwrap(), m.unwrap().object);
        assert_eq!(v1["status"], v2["status"]);
        assert_eq!(v1["metadata"]["generation"], v2["metadata"]["generation"]);
        let (_, view) = s.view::<Option<bool>>(vmk, Some("a"), "v1").unwrap();
        assert_eq!(*view, Some(true));
        let rv = s.resource_version();
        let mut rx = s.subscribe(vmk);
        let again = s.modify_status(vmk, Some("a"), "v1", set_ready).unwrap();
        assert!(!again.changed);
        assert_eq!(again.status["ready"], true);
        assert_eq!(s.resource_version(), rv);
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn primary_udn_label_is_immutable() {
        let (s, nsk, _, _) = store();
        let err = s
            .modify(nsk, None, "a", false, |o| {
                o["metadata"]["labels"][PRIMARY_UDN_LABEL] = json!("")
            })
            .unwrap_err();
        assert_eq!(err.code(), 422);
    }

    #[test]
    fn list_paginates_and_watch_expires() {
        let (s, _, vmk, _) = store();
        for i in 0..10 {
            s.create(
                vmk,
                Some("a"),
                vm(&format!("v{i}")),
                &WriteOptions::default(),
            )
            .unwrap();
        }
        let mut opts = ListOptions {
            limit: Some(3),
            ..Default::default()
        };
        let mut seen = Vec::new();
        loop {
            let page = s.list(vmk, Some("a"), &opts).unwrap();
            seen.extend(
                page.items
                    .iter()
                    .map(|o| o["metadata"]["name"].as_str().unwrap().to_string()),
            );
            match page.continue_token {
                Some(t) => opts.continue_token = Some(t),
                None => break,
            }
        }
        assert_eq!(seen.len(), 10);
        // History limit 8: the first creates are compacted away.
        assert_eq!(s.watch(vmk, None, Some(1)).unwrap_err().code(), 410);
        let rv = s.resource_version();
        assert!(s.watch(vmk, None, Some(rv)).is_ok());
        s.expire_history();
        assert_eq!(s.watch(vmk, None, Some(rv)).unwrap_err().code(), 410);
    }

    #[test]
    fn patches_merge_json_and_apply() {
        let (s, _, vmk, _) = store();
        s.create(vmk, Some("a"), vm("v1"), &WriteOptions::default())
            .unwrap();
        let w = s
            .patch(
                vmk,
                Some("a"),
                "v1",
                Patch::Merge(json!({"metadata": {"labels": {"x": "1"}}})),
                false,
                &WriteOptions::default(),
            )
            .unwrap();
        assert_eq!(w.object["metadata"]["labels"]["x"], "1");
        let jp: json_patch::Patch = serde_json::from_value(
            json!([{"op": "replace", "path": "/spec/runStrategy", "value": "Halted"}]),
        )
        .unwrap();
        let w = s
            .patch(
                vmk,
                Some("a"),
                "v1",
                Patch::Json(jp),
                false,
                &WriteOptions::default(),
            )
            .unwrap();
        assert_eq!(w.object["spec"]["runStrategy"], "Halted");
        // A JSON patch whose later op fails is refused, not a panic (fuzz artifact
        // crash-json-patch-move-undo-minimal), and changes nothing.
        let failing: json_patch::Patch = serde_json::from_value(json!([
            {"op": "add", "path": "/metadata/labels/x", "value": "y"},
            {"op": "move", "from": "/metadata/labels/x", "path": "/nope/z"}
        ]))
        .unwrap();
        let err = s
            .patch(
                vmk,
                Some("a"),
                "v1",
                Patch::Json(failing),
                false,
                &WriteOptions::default(),
            )
            .unwrap_err();
        assert_eq!(err.code(), 422);
        assert_eq!(
            s.get(vmk, Some("a"), "v1").unwrap()["metadata"]["labels"]["x"],
            "1"
        );
        let w = s
            .patch(
                vmk,
                Some("a"),
                "v2",
                Patch::Apply {
                    body: vm("v2"),
                    force: true,
                },
                false,
                &WriteOptions::default(),
            )
            .unwrap();
        assert_eq!(w.object["metadata"]["name"], "v2");
        let err = s
            .patch(
                vmk,
                Some("a"),
                "v1",
                Patch::StrategicMerge(json!({})),
                false,
                &WriteOptions::default(),
            )
            .unwrap_err();
        assert_eq!(err.code(), 415);
    }
}
