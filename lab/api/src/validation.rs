//! Schema validation for the store: adapts the `vmbgp-schema` set (real CRDs, KubeVirt swagger, CEL rules)
//! to the store's [`Validator`] hook, prunes undeclared fields as a real server does, and derives the served
//! kinds from the set. Also the kind-specific update rules the lab emulates (OVN-K's primary-UDN namespace
//! label, [`check_primary_udn_label`]; an Event's immutable fields, [`check_transition`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use vmbgp_schema::{SchemaSet, Strictness, ViolationReason};

use crate::error::{ApiError, Cause, LabError};
use crate::registry::{Registry, ResourceKind};
use crate::store::{FieldValidation, Validator};

/// The namespace label OVN-K requires at namespace creation and forbids changing later.
pub const PRIMARY_UDN_LABEL: &str = "k8s.ovn.org/primary-user-defined-network";

/// OVN-K's admission rule for namespaces: the [`PRIMARY_UDN_LABEL`] label cannot be added, removed or changed
/// after the namespace was created. `old` and `new` are the namespace `name` before and after an update.
pub fn check_primary_udn_label(old: &Value, new: &Value, name: &str) -> Result<(), ApiError> {
    let before = old
        .pointer("/metadata/labels")
        .and_then(|l| l.get(PRIMARY_UDN_LABEL));
    let after = new
        .pointer("/metadata/labels")
        .and_then(|l| l.get(PRIMARY_UDN_LABEL));
    if before != after {
        return Err(ApiError::Invalid {
            group: String::new(),
            kind: "Namespace".to_string(),
            name: name.to_string(),
            causes: vec![Cause {
                field: "metadata.labels".to_string(),
                reason: "FieldValueForbidden".to_string(),
                message: format!(
                    "The '{PRIMARY_UDN_LABEL}' label cannot be added/removed after the namespace was created"
                ),
            }],
        });
    }
    Ok(())
}

/// Memoized `has_field` answers, as a trie of path segments (one per kind).
#[derive(Debug, Default)]
struct FieldTrie {
    declared: bool,
    children: HashMap<Box<str>, FieldTrie>,
}

/// Trie nodes kept at most (map keys under preserved fields could otherwise grow it without bound).
const FIELD_MEMO_LIMIT: usize = 100_000;

#[derive(Debug, Default)]
struct FieldMemo {
    kinds: HashMap<(String, String), FieldTrie>,
    nodes: usize,
}

/// Validates with the embedded schema set.
#[derive(Debug)]
pub struct SchemaValidator {
    set: Arc<SchemaSet>,
    /// Pruning asks whether each field of each written object is declared; walking the schema from its root
    /// for every key dominated the cost of a write.
    memo: Mutex<FieldMemo>,
}

impl Clone for SchemaValidator {
    fn clone(&self) -> Self {
        SchemaValidator::new(self.set.clone())
    }
}

fn child_path(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

impl SchemaValidator {
    pub fn new(set: Arc<SchemaSet>) -> Self {
        SchemaValidator {
            set,
            memo: Mutex::new(FieldMemo::default()),
        }
    }

    pub fn schema_set(&self) -> &Arc<SchemaSet> {
        &self.set
    }

    /// Removes fields the schema does not declare. An object whose keys are all undeclared is taken to be a
    /// map (labels, selectors' matchLabels, preserved-unknown fields) and kept whole.
    fn prune(&self, api_version: &str, kind: &str, value: &mut Value) {
        let mut memo = self.memo.lock().unwrap_or_else(|p| p.into_inner());
        let FieldMemo { kinds, nodes } = &mut *memo;
        let root = kinds
            .entry((api_version.to_string(), kind.to_string()))
            .or_default();
        self.prune_at(api_version, kind, value, "", Some(root), nodes);
    }

    /// Prunes `value` at `path`; `node` is the memo for `path` (`None` once the memo is full).
    fn prune_at(
        &self,
        api_version: &str,
        kind: &str,
        value: &mut Value,
        path: &str,
        mut node: Option<&mut FieldTrie>,
        nodes: &mut usize,
    ) {
        match value {
            Value::Object(map) => {
                let declared: Vec<(String, bool)> = map
                    .keys()
                    .map(|k| {
                        let is_declared = (path.is_empty()
                            && matches!(k.as_str(), "apiVersion" | "kind" | "metadata"))
                            || self.declared(
                                api_version,
                                kind,
                                path,
                                k,
                                node.as_deref_mut(),
                                nodes,
                            );
                        (k.clone(), is_declared)
                    })
                    .collect();
                if !declared.iter().any(|(_, d)| *d) {
                    return;
                }
                for (k, d) in declared {
                    if !d {
                        map.remove(&k);
                    } else if !(path.is_empty() && k == "metadata")
                        && let Some(v) = map.get_mut(&k)
                    {
                        let child = node
                            .as_deref_mut()
                            .and_then(|n| n.children.get_mut(k.as_str()));
                        self.prune_at(api_version, kind, v, &child_path(path, &k), child, nodes);
                    }
                }
            }
            Value::Array(items) => {
                for item in items {
                    self.prune_at(api_version, kind, item, path, node.as_deref_mut(), nodes);
                }
            }
            _ => {}
        }
    }

    /// Whether field `key` under `path` is declared, from the memo or the schema.
    fn declared(
        &self,
        api_version: &str,
        kind: &str,
        path: &str,
        key: &str,
        node: Option<&mut FieldTrie>,
        nodes: &mut usize,
    ) -> bool {
        if let Some(known) = node.as_ref().and_then(|n| n.children.get(key)) {
            return known.declared;
        }
        let declared = self
            .set
            .has_field(api_version, kind, &child_path(path, key));
        if let Some(n) = node
            && *nodes < FIELD_MEMO_LIMIT
        {
            *nodes += 1;
            n.children.insert(
                key.into(),
                FieldTrie {
                    declared,
                    children: HashMap::new(),
                },
            );
        }
        declared
    }
}

impl Validator for SchemaValidator {
    fn validate(
        &self,
        kind: &ResourceKind,
        object: &mut Value,
        mode: FieldValidation,
    ) -> Result<(), Vec<Cause>> {
        let api_version = kind.api_version();
        if self
            .set
            .lookup(&api_version, &kind.kind)
            .is_none_or(|k| !k.served)
        {
            return Ok(());
        }
        let strictness = match mode {
            FieldValidation::Strict => Strictness::Strict,
            FieldValidation::Prune => Strictness::Prune,
        };
        if mode == FieldValidation::Prune {
            self.prune(&api_version, &kind.kind, object);
        }
        self.set.validate(object, strictness).map_err(|v| {
            v.0.into_iter()
                .map(|v| Cause {
                    field: v.field,
                    reason: v.reason.as_str().to_string(),
                    message: v.message,
                })
                .collect()
        })
    }
}

/// Whether a cause list came from strict unknown-field detection (a real server answers 400 for that).
pub fn is_unknown_field(cause: &Cause) -> bool {
    cause.reason == ViolationReason::UnknownField.as_str()
}

/// Whether a cause is a body the server could not decode (a malformed `MicroTime`; 400 as well).
pub fn is_undecodable(cause: &Cause) -> bool {
    cause.reason == ViolationReason::Undecodable.as_str()
}

/// What a real server refuses in an update that needs the old object: an Event's immutable fields
/// (`vmbgp_schema::transition_violations`).
pub fn check_transition(
    kind: &ResourceKind,
    old: &Value,
    new: &Value,
    name: &str,
) -> Result<(), ApiError> {
    let found = vmbgp_schema::transition_violations(kind, old, new);
    if found.is_empty() {
        return Ok(());
    }
    Err(ApiError::Invalid {
        group: kind.group.clone(),
        kind: kind.kind.clone(),
        name: name.to_string(),
        causes: found
            .into_iter()
            .map(|v| Cause {
                field: v.field,
                reason: v.reason.as_str().to_string(),
                message: v.message,
            })
            .collect(),
    })
}

/// The registry built from the schema set's served kinds, and the matching validator.
pub fn schema_registry_and_validator() -> Result<(Registry, Option<Arc<dyn Validator>>), LabError> {
    let set = Arc::new(SchemaSet::embedded().map_err(|e| LabError::Schema(Box::new(e)))?);
    let registry = Registry::served(set.kinds());
    let validator: Arc<dyn Validator> = Arc::new(SchemaValidator::new(set));
    Ok((registry, Some(validator)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn registry_serves_the_crds_kinds_and_prune_drops_unknown_fields() {
        let (reg, validator) = schema_registry_and_validator().unwrap();
        // The kinds of DESIGN §2 and the built-in kinds the lab needs, with the short names kubectl uses.
        for (group, version, plural, short_names) in [
            ("", "v1", "namespaces", &["ns"][..]),
            ("", "v1", "nodes", &["no"]),
            (
                "k8s.cni.cncf.io",
                "v1",
                "network-attachment-definitions",
                &["net-attach-def"],
            ),
            ("kubevirt.io", "v1", "virtualmachines", &["vm", "vms"]),
            (
                "kubevirt.io",
                "v1",
                "virtualmachineinstances",
                &["vmi", "vmis"],
            ),
            (
                "kubevirt.io",
                "v1",
                "virtualmachineinstancemigrations",
                &["vmim", "vmims"],
            ),
            ("k8s.cni.cncf.io", "v1alpha1", "ipamclaims", &[]),
            ("k8s.ovn.org", "v1", "clusteruserdefinednetworks", &["cudn"]),
            ("k8s.ovn.org", "v1", "userdefinednetworks", &["udn"]),
            ("k8s.ovn.org", "v1", "routeadvertisements", &["ra"]),
            ("frrk8s.metallb.io", "v1beta1", "frrconfigurations", &[]),
            ("frrk8s.metallb.io", "v1beta1", "frrnodestates", &[]),
            ("frrk8s.metallb.io", "v1beta1", "bgpsessionstates", &[]),
            ("coordination.k8s.io", "v1", "leases", &[]),
            ("events.k8s.io", "v1", "events", &["ev"]),
        ] {
            let id = reg.by_path(group, version, plural);
            let kind = id.and_then(|id| reg.get(id));
            assert_eq!(
                kind.map(|k| k.short_names.clone()),
                Some(short_names.iter().map(|n| n.to_string()).collect()),
                "{plural} not served with its short names"
            );
        }
        assert_eq!(
            reg.by_path("", "v1", "namespaces"),
            Some(0),
            "core kinds first"
        );
        assert_eq!(
            Registry::embedded().unwrap().kinds(),
            reg.kinds(),
            "the validator-free registry serves the same kinds"
        );
        assert!(
            reg.by_path("ipam.cluster.x-k8s.io", "v1alpha1", "ipamclaims")
                .is_none()
        );
        let validator = validator.unwrap();
        let id = reg
            .by_kind("k8s.ovn.org/v1", "RouteAdvertisements")
            .unwrap();
        let kind = reg.get(id).unwrap().clone();
        let mut ra = json!({
            "apiVersion": "k8s.ovn.org/v1", "kind": "RouteAdvertisements", "metadata": {"name": "ra"},
            "spec": {"advertisements": ["PodNetwork"], "nodeSelector": {}, "frrConfigurationSelector": {"matchLabels": {"a": "b"}},
                "networkSelectors": [{"networkSelectionType": "ClusterUserDefinedNetworks", "clusterUserDefinedNetworkSelector": {"networkSelector": {}}}],
                "bogus": 1}
        });
        let strict = validator
            .validate(&kind, &mut ra.clone(), FieldValidation::Strict)
            .unwrap_err();
        assert!(strict.iter().any(is_unknown_field));
        validator
            .validate(&kind, &mut ra, FieldValidation::Prune)
            .unwrap();
        assert!(ra["spec"].get("bogus").is_none());
        assert_eq!(
            ra["spec"]["frrConfigurationSelector"]["matchLabels"]["a"],
            "b"
        );
        let mut bad = ra.clone();
        bad["spec"]["nodeSelector"] = json!({"matchLabels": {"x": "y"}});
        let causes = validator
            .validate(&kind, &mut bad, FieldValidation::Prune)
            .unwrap_err();
        assert!(!causes.is_empty());
    }
}
