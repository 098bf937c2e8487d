//! Delete, finalizers and garbage collection: deletion with preconditions and propagation (background,
//! foreground, orphan), finalizer-held objects, ownerReference garbage collection and the namespace cascade.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use serde_json::{Value, json};

use super::metadata::meta_str;
use super::state::Inner;
use super::{EventType, ListOptions, ObjKey, Store, Stored, conflict, now_rfc3339};
use crate::error::ApiError;
use crate::registry::KindId;

/// Finalizer the API server's foreground deletion uses.
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";

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

impl Store {
    /// The garbage collector's rule for a dependent written after its owners were deleted: when every
    /// ownerReference names an absent uid, the object is deleted in the background (the write itself
    /// succeeds, as on a real API server; the GC removes it right after).
    pub(super) fn collect_if_dangling(
        &self,
        inner: &mut Inner,
        kind_id: KindId,
        key: ObjKey,
        at: Instant,
    ) {
        let Some(object) = inner.tables[kind_id].objects.get(&key) else {
            return;
        };
        let owners = &object.meta.owners;
        if owners.is_empty() || owners.iter().any(|o| inner.uids.contains_key(&**o)) {
            return;
        }
        self.delete_locked(inner, kind_id, key, Propagation::Background, at);
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
    pub(super) fn remove_locked(
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

pub(super) fn finalizers(object: &Value) -> BTreeSet<String> {
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
