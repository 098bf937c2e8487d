//! Create, update and patch: the write paths (PUT, merge/JSON/apply patches, the status subresource,
//! in-process read-modify-write) and the server-owned metadata, status and generation rules they share.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use rand::Rng;
use serde_json::{Map, Value, json};

use super::delete::finalizers;
use super::metadata::{check_type_meta, meta_str};
use super::state::Inner;
use super::{EventType, FieldValidation, ObjKey, Store, Stored, conflict, corrupt, now_rfc3339};
use crate::error::{ApiError, Cause};
use crate::registry::{KindId, ResourceKind};

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

/// A patch body.
#[derive(Debug, Clone)]
pub enum Patch {
    /// RFC 7386 JSON merge patch.
    Merge(Value),
    /// RFC 6902 JSON patch.
    Json(json_patch::Patch),
    /// Server-side apply (approximated: maps merge recursively, lists and scalars are replaced).
    Apply { body: Value, force: bool },
    /// Strategic merge (built-in kinds only; approximated as a merge patch).
    StrategicMerge(Value),
}

const NAME_CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

impl Store {
    fn generate_suffix(&self) -> String {
        let mut rng = self.name_rng.lock().unwrap_or_else(|p| p.into_inner());
        (0..5)
            .map(|_| NAME_CHARS[rng.random_range(0..NAME_CHARS.len())] as char)
            .collect()
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

    /// The current stored and parsed versions of `key`, under the lock.
    pub(super) fn current(
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
            && !kind.is_built_in()
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
            crate::validation::check_primary_udn_label(&old, &result, &key.1)?;
        }
        crate::validation::check_transition(kind, &old, &result, &key.1)?;
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
