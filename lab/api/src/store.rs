//! The in-memory object store: Kubernetes write semantics (resourceVersion, generation, status subresource,
//! finalizers, ownerReference garbage collection, namespace cascade) and the per-kind event history watches
//! resume from.
//!
//! One global resourceVersion counter orders every write. Objects are immutable `Arc<Value>`s shared by the
//! table, the event history and every watcher; each event is serialized at most once (lazily) for all HTTP
//! watchers that see it unchanged.

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

/// One change of one object, shared by the history and all watchers.
#[derive(Debug)]
pub struct WatchEvent {
    pub kind: KindId,
    pub event_type: EventType,
    pub rv: u64,
    pub object: Arc<Value>,
    /// The labels before this change (MODIFIED only); selectors use them to turn MODIFIED into
    /// ADDED/DELETED. Only labels are kept: name and namespace (the field selectors) cannot change, and
    /// holding the whole previous object would double the memory of the event history.
    pub previous_labels: Option<Map<String, Value>>,
    /// Commit instant.
    pub at: Instant,
    line: OnceLock<Bytes>,
}

impl WatchEvent {
    fn new(
        kind: KindId,
        event_type: EventType,
        rv: u64,
        object: Arc<Value>,
        previous: Option<Arc<Value>>,
        at: Instant,
    ) -> Self {
        WatchEvent {
            kind,
            event_type,
            rv,
            object,
            previous_labels: previous.map(|p| {
                p.pointer("/metadata/labels")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default()
            }),
            at,
            line: OnceLock::new(),
        }
    }

    /// A synthetic ADDED event for an existing object (initial state of a watch).
    pub fn synthetic_added(kind: KindId, object: Arc<Value>) -> Self {
        let rv = object_rv(&object);
        WatchEvent::new(kind, EventType::Added, rv, object, None, Instant::now())
    }

    /// The `{"type":...,"object":...}\n` line, serialized once.
    pub fn line(&self) -> Bytes {
        self.line
            .get_or_init(|| event_line(self.event_type.as_str(), &self.object))
            .clone()
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
}

/// A page of a list.
#[derive(Debug, Clone)]
pub struct ListResult {
    pub items: Vec<Arc<Value>>,
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
    objects: BTreeMap<ObjKey, Arc<Value>>,
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
}

const NAME_CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
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

    // ---------------------------------------------------------------- reads

    /// Gets one object.
    pub fn get(
        &self,
        kind_id: KindId,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Arc<Value>, ApiError> {
        let kind = self.kind(kind_id)?;
        let inner = self.lock();
        inner.tables[kind_id]
            .objects
            .get(&Self::key(kind, namespace, name))
            .cloned()
            .ok_or_else(|| Self::not_found(kind, name))
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

    /// Lists objects of a kind, optionally in one namespace, filtered and paginated.
    pub fn list(
        &self,
        kind_id: KindId,
        namespace: Option<&str>,
        opts: &ListOptions,
    ) -> Result<ListResult, ApiError> {
        let kind = self.kind(kind_id)?;
        let inner = self.lock();
        let table = &inner.tables[kind_id];
        let (mut list_rv, start_after) = match &opts.continue_token {
            Some(token) => {
                let (rv, key) = decode_continue(token).ok_or_else(|| ApiError::BadRequest {
                    message: "invalid continue token".to_string(),
                })?;
                (rv, Some(key))
            }
            None => (inner.rv, None),
        };
        if list_rv == 0 {
            list_rv = inner.rv;
        }
        let ns_filter = namespace.filter(|_| kind.namespaced);
        let iter: Box<dyn Iterator<Item = (&ObjKey, &Arc<Value>)>> = match (&start_after, ns_filter)
        {
            (Some(after), _) => Box::new(table.objects.range::<ObjKey, _>((
                std::ops::Bound::Excluded(after.clone()),
                std::ops::Bound::Unbounded,
            ))),
            (None, Some(ns)) => Box::new(
                table
                    .objects
                    .range::<ObjKey, _>((ns.to_string(), String::new())..),
            ),
            (None, None) => Box::new(table.objects.iter()),
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
            if !opts.label_selector.matches(obj) || !opts.field_selector.matches(obj) {
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
        Ok(ListResult {
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

    /// Every object of a kind (all namespaces), cloned Arcs in key order.
    pub fn all(&self, kind_id: KindId) -> Vec<Arc<Value>> {
        let inner = self.lock();
        inner
            .tables
            .get(kind_id)
            .map(|t| t.objects.values().cloned().collect())
            .unwrap_or_default()
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
                .map(|(_, o)| Arc::new(WatchEvent::synthetic_added(kind_id, o.clone())))
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

    /// Lists every object of a kind and subscribes in one atomic step (for in-process controllers).
    pub fn list_and_subscribe(
        &self,
        kind_id: KindId,
    ) -> (Vec<Arc<Value>>, broadcast::Receiver<Arc<WatchEvent>>) {
        let inner = self.lock();
        match inner.tables.get(kind_id) {
            Some(t) => (t.objects.values().cloned().collect(), t.sender.subscribe()),
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
    }

    fn emit(
        &self,
        inner: &mut Inner,
        kind_id: KindId,
        event_type: EventType,
        object: Arc<Value>,
        previous: Option<Arc<Value>>,
        at: Instant,
    ) {
        let rv = object_rv(&object);
        let event = Arc::new(WatchEvent::new(
            kind_id, event_type, rv, object, previous, at,
        ));
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
            return Ok(Written {
                object: Arc::new(object),
                at,
            });
        }
        inner.rv += 1;
        set_rv(&mut object, inner.rv);
        let object = Arc::new(object);
        self.insert_indexes(&mut inner, kind_id, &key, &object, None);
        inner.tables[kind_id].objects.insert(key, object.clone());
        self.emit(
            &mut inner,
            kind_id,
            EventType::Added,
            object.clone(),
            None,
            at,
        );
        Ok(Written { object, at })
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
            Some(n) if n.pointer("/metadata/deletionTimestamp").is_some() => {
                Err(ApiError::Forbidden {
                    group: kind.group.clone(),
                    kind: kind.plural.clone(),
                    name: name.to_string(),
                    message: format!(
                        "{} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                        kind.qualified_plural()
                    ),
                })
            }
            Some(_) => Ok(()),
        }
    }

    fn insert_indexes(
        &self,
        inner: &mut Inner,
        kind_id: KindId,
        key: &ObjKey,
        object: &Value,
        old: Option<&Value>,
    ) {
        if old.is_none() {
            if let Some(uid) = meta_str(object, "uid") {
                inner.uids.insert(uid.to_string(), (kind_id, key.clone()));
            }
            if !key.0.is_empty() {
                *inner.ns_counts.entry(key.0.clone()).or_default() += 1;
            }
        }
        let new_owners = owner_uids(object);
        let old_owners = old.map(owner_uids).unwrap_or_default();
        for o in old_owners.difference(&new_owners) {
            if let Some(set) = inner.dependents.get_mut(o) {
                set.remove(&(kind_id, key.clone()));
                if set.is_empty() {
                    inner.dependents.remove(o);
                }
            }
        }
        for o in new_owners.difference(&old_owners) {
            inner
                .dependents
                .entry(o.clone())
                .or_default()
                .insert((kind_id, key.clone()));
        }
    }

    fn remove_indexes(&self, inner: &mut Inner, kind_id: KindId, key: &ObjKey, object: &Value) {
        if let Some(uid) = meta_str(object, "uid") {
            inner.uids.remove(uid);
        }
        if !key.0.is_empty()
            && let Some(c) = inner.ns_counts.get_mut(&key.0)
        {
            *c = c.saturating_sub(1);
        }
        for o in owner_uids(object) {
            if let Some(set) = inner.dependents.get_mut(&o) {
                set.remove(&(kind_id, key.clone()));
                if set.is_empty() {
                    inner.dependents.remove(&o);
                }
            }
        }
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
        let old = inner.tables[kind_id]
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| Self::not_found(&kind, name))?;
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
            old,
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
        let old = inner.tables[kind_id]
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| Self::not_found(&kind, name))?;
        let mut new = (*old).clone();
        f(&mut new);
        self.commit_update(
            &mut inner,
            kind_id,
            &kind,
            key,
            old,
            new,
            status_only,
            &WriteOptions::default(),
        )
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
        let existing = self.lock().tables[kind_id].objects.get(&key).cloned();
        let Some(_) = existing else {
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
        };
        let mut inner = self.lock();
        let old = inner.tables[kind_id]
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| Self::not_found(&kind, name))?;
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
            Patch::Json(p) => json_patch::patch(&mut new, &p).map_err(|e| ApiError::Invalid {
                group: kind.group.clone(),
                kind: kind.kind.clone(),
                name: name.to_string(),
                causes: vec![Cause {
                    field: String::new(),
                    reason: "FieldValueInvalid".to_string(),
                    message: e.to_string(),
                }],
            })?,
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
        self.commit_update(&mut inner, kind_id, &kind, key, old, new, status_only, opts)
    }

    #[allow(clippy::too_many_arguments)]
    fn commit_update(
        &self,
        inner: &mut Inner,
        kind_id: KindId,
        kind: &ResourceKind,
        key: ObjKey,
        old: Arc<Value>,
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
            let old_meta = old
                .get("metadata")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
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
            if old_meta.contains_key("deletionTimestamp") {
                let old_f = finalizers(&old);
                let new_f: BTreeSet<String> = meta
                    .get("finalizers")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                if !new_f.is_subset(&old_f) {
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
            return Ok(Written {
                object: Arc::new(result),
                at,
            });
        }
        let being_deleted = result.pointer("/metadata/deletionTimestamp").is_some();
        if being_deleted && finalizers(&result).is_empty() {
            let deleted = self.remove_locked(inner, kind_id, &key, Some(result), at);
            return Ok(Written {
                object: deleted,
                at,
            });
        }
        inner.rv += 1;
        set_rv(&mut result, inner.rv);
        let result = Arc::new(result);
        self.insert_indexes(inner, kind_id, &key, &result, Some(&old));
        inner.tables[kind_id].objects.insert(key, result.clone());
        self.emit(
            inner,
            kind_id,
            EventType::Modified,
            result.clone(),
            Some(old),
            at,
        );
        Ok(Written { object: result, at })
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
        let old = inner.tables[kind_id]
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| Self::not_found(&kind, name))?;
        if let Some(uid) = &opts.precondition_uid
            && Some(uid.as_str()) != meta_str(&old, "uid")
        {
            return Err(ApiError::Conflict {
                group: kind.group.clone(),
                kind: kind.plural.clone(),
                name: name.to_string(),
                message: format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta_str(&old, "uid").unwrap_or_default()
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
            let removed = finalizers(&old).is_empty();
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
            .list(
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
            let key = Self::key(
                &kind,
                meta_str(&item, "namespace"),
                meta_str(&item, "name").unwrap_or_default(),
            );
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
        let uid = meta_str(&old, "uid").unwrap_or_default().to_string();
        if propagation == Propagation::Orphan {
            let deps: Vec<(KindId, ObjKey)> = inner
                .dependents
                .get(&uid)
                .map(|s| s.iter().cloned().collect())
                .unwrap_or_default();
            for (dk, dkey) in deps {
                if let Some(dep) = inner.tables[dk].objects.get(&dkey).cloned() {
                    let mut new = (*dep).clone();
                    if let Some(refs) = new
                        .pointer_mut("/metadata/ownerReferences")
                        .and_then(Value::as_array_mut)
                    {
                        refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(uid.as_str()));
                    }
                    self.write_internal(inner, dk, dkey, dep, new, at);
                }
            }
        }
        let mut fins = finalizers(&old);
        let needs_foreground = propagation == Propagation::Foreground
            && inner.dependents.get(&uid).is_some_and(|d| !d.is_empty());
        if needs_foreground {
            fins.insert(FOREGROUND_FINALIZER.to_string());
        }
        if is_namespace || !fins.is_empty() {
            // Mark for deletion; the object stays until its finalizers are gone.
            let mut new = (*old).clone();
            if new.pointer("/metadata/deletionTimestamp").is_none() {
                new["metadata"]["deletionTimestamp"] = Value::String(now_rfc3339());
                new["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            }
            if needs_foreground {
                new["metadata"]["finalizers"] =
                    Value::Array(fins.iter().cloned().map(Value::String).collect());
            }
            if is_namespace {
                new["status"]["phase"] = json!("Terminating");
            }
            let current = self.write_internal(inner, kind_id, key.clone(), old, new, at);
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
                return match inner.tables[kind_id].objects.get(&key).cloned() {
                    Some(o) => (o, false),
                    None => (current, true),
                };
            }
            let still = inner.tables[kind_id].objects.get(&key).cloned();
            return match still {
                Some(o) => (o, false),
                None => (current, true),
            };
        }
        let gone = self.remove_locked(inner, kind_id, &key, None, at);
        (gone, true)
    }

    /// Writes a server-side change (metadata bookkeeping) without validation.
    fn write_internal(
        &self,
        inner: &mut Inner,
        kind_id: KindId,
        key: ObjKey,
        old: Arc<Value>,
        mut new: Value,
        at: Instant,
    ) -> Arc<Value> {
        if new == *old {
            return old;
        }
        inner.rv += 1;
        set_rv(&mut new, inner.rv);
        let new = Arc::new(new);
        self.insert_indexes(inner, kind_id, &key, &new, Some(&old));
        inner.tables[kind_id].objects.insert(key, new.clone());
        self.emit(
            inner,
            kind_id,
            EventType::Modified,
            new.clone(),
            Some(old),
            at,
        );
        new
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
        let Some(obj) = inner.tables[ns_kind].objects.get(&key).cloned() else {
            return;
        };
        if obj.pointer("/metadata/deletionTimestamp").is_none() || !finalizers(&obj).is_empty() {
            return;
        }
        inner.ns_counts.remove(ns);
        self.remove_locked(inner, ns_kind, &key, None, at);
    }

    /// Removes an object for good, then garbage-collects its dependents.
    fn remove_locked(
        &self,
        inner: &mut Inner,
        kind_id: KindId,
        key: &ObjKey,
        latest: Option<Value>,
        at: Instant,
    ) -> Arc<Value> {
        let Some(old) = inner.tables[kind_id].objects.remove(key) else {
            return Arc::new(latest.unwrap_or(Value::Null));
        };
        let mut last = latest.unwrap_or_else(|| (*old).clone());
        inner.rv += 1;
        set_rv(&mut last, inner.rv);
        let last = Arc::new(last);
        self.remove_indexes(inner, kind_id, key, &old);
        self.emit(inner, kind_id, EventType::Deleted, last.clone(), None, at);
        let uid = meta_str(&old, "uid").unwrap_or_default().to_string();
        // Garbage collection: dependents whose owners are all gone are deleted in the background.
        let deps: Vec<(KindId, ObjKey)> = inner
            .dependents
            .remove(&uid)
            .map(|s| s.into_iter().collect())
            .unwrap_or_default();
        for (dk, dkey) in deps {
            let Some(dep) = inner.tables[dk].objects.get(&dkey).cloned() else {
                continue;
            };
            let any_owner_left = owner_uids(&dep).iter().any(|o| inner.uids.contains_key(o));
            if !any_owner_left {
                self.delete_locked(inner, dk, dkey, Propagation::Background, at);
            }
        }
        // Owners waiting in foreground deletion may now be complete.
        for owner in owner_uids(&old) {
            self.finish_foreground(inner, &owner, at);
        }
        if !key.0.is_empty() {
            let terminating = self
                .namespace_kind
                .and_then(|nk| {
                    inner.tables[nk]
                        .objects
                        .get(&(String::new(), key.0.clone()))
                })
                .is_some_and(|n| n.pointer("/metadata/deletionTimestamp").is_some());
            if terminating {
                self.finish_namespace(inner, &key.0.clone(), at);
            }
        }
        last
    }

    fn finish_foreground(&self, inner: &mut Inner, owner_uid: &str, at: Instant) {
        let Some((kind_id, key)) = inner.uids.get(owner_uid).cloned() else {
            return;
        };
        let Some(owner) = inner.tables[kind_id].objects.get(&key).cloned() else {
            return;
        };
        if !finalizers(&owner).contains(FOREGROUND_FINALIZER) {
            return;
        }
        if inner
            .dependents
            .get(owner_uid)
            .is_some_and(|d| !d.is_empty())
        {
            return;
        }
        let mut new = (*owner).clone();
        if let Some(f) = new
            .pointer_mut("/metadata/finalizers")
            .and_then(Value::as_array_mut)
        {
            f.retain(|v| v.as_str() != Some(FOREGROUND_FINALIZER));
        }
        if finalizers(&new).is_empty() {
            self.remove_locked(inner, kind_id, &key, Some(new), at);
        } else {
            self.write_internal(inner, kind_id, key, owner, new, at);
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

fn owner_uids(object: &Value) -> BTreeSet<String> {
    object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|r| r.get("uid").and_then(Value::as_str).map(str::to_string))
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
