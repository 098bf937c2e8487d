//! The in-memory object store: Kubernetes write semantics (resourceVersion, generation, status subresource,
//! finalizers, ownerReference garbage collection, namespace cascade) and the per-kind event history watches
//! resume from.
//!
//! One global resourceVersion counter orders every write. Each object version is kept serialized
//! ([`Stored`]: one buffer holding its watch line, shared by the table, the event ring and history, every HTTP
//! watcher and GET/LIST responses) with a parsed metadata index for selectors and garbage collection. Readers
//! that want a `Value` get one parsed on demand; in-process controllers read small per-kind views instead
//! ([`Store::set_view`]).
//!
//! The store is split by job, each file one `impl Store` block with the items it needs:
//!
//! * `state`: the [`Store`] struct, its tables and indexes, the resourceVersion counter and the commit;
//! * `read`: gets, views, lists and pagination;
//! * `watch`: watch events, subscriptions and the per-kind history;
//! * `write`: create, update and patch;
//! * `delete`: deletion, finalizers and garbage collection;
//! * `metadata`: metadata validation and the schema [`Validator`] hook.
//!
//! Kind-specific admission rules (OVN-K's primary-UDN namespace label) live in [`crate::validation`].

mod delete;
mod metadata;
mod read;
mod state;
mod watch;
mod write;

pub use delete::{DeleteOptions, Deleted, FOREGROUND_FINALIZER, Propagation};
pub use metadata::{FieldValidation, Validator};
pub use read::{ListOptions, ListResult, StoredList};
pub use state::{ObjKey, Store, object_rv};
pub use watch::{EventType, Subscription, WatchEvent, event_line};
pub use write::{Patch, StatusWritten, WriteOptions, Written};

pub use crate::object_version::{Labels, ObjMeta, Stored, View, ViewFn};
pub use crate::validation::PRIMARY_UDN_LABEL;

use crate::error::ApiError;
use crate::registry::ResourceKind;

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn corrupt(e: &serde_json::Error) -> ApiError {
    ApiError::Internal {
        message: format!("stored object does not parse: {e}"),
    }
}

fn conflict(kind: &ResourceKind, name: &str) -> ApiError {
    ApiError::Conflict {
        group: kind.group.clone(),
        kind: kind.qualified_plural(),
        name: name.to_string(),
        message: "the object has been modified; please apply your changes to the latest version and try again".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use serde_json::{Value, json};

    use crate::registry::{KindId, Registry};

    fn store() -> (Store, KindId, KindId, KindId) {
        let reg = Arc::new(Registry::embedded().unwrap());
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
