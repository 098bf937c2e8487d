//! Read, list and pagination: gets, views, filtered and paginated lists (continue tokens), and lists at an
//! exact past resourceVersion rebuilt from the kind's event history.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use super::state::Table;
use super::{EventType, ObjKey, ObjMeta, Store, Stored};
use crate::error::ApiError;
use crate::registry::KindId;
use crate::selector::{FieldSelector, LabelSelector};

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

impl Store {
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
            if !opts.label_selector.matches_with(|k| obj.meta.labels.get(k))
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
