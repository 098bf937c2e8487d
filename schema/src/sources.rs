//! The embedded schema documents and how each becomes a list of kinds with their raw schemas:
//! CRD files (every version), the KubeVirt swagger definitions, and the few built-in kinds.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use crate::SchemaError;
use crate::convert::{Strictness, convert_definition, convert_root};
use crate::meta::NameRule;

/// The embedded files, by their name in `/work/shared/crds/` (the origin; see `crds/README.md`).
pub const EMBEDDED_FILES: &[(&str, &str)] = &[
    (
        "frrk8s.metallb.io_bgpsessionstates.yaml",
        include_str!("../crds/frrk8s.metallb.io_bgpsessionstates.yaml"),
    ),
    (
        "frrk8s.metallb.io_frrconfigurations.yaml",
        include_str!("../crds/frrk8s.metallb.io_frrconfigurations.yaml"),
    ),
    (
        "frrk8s.metallb.io_frrnodestates.yaml",
        include_str!("../crds/frrk8s.metallb.io_frrnodestates.yaml"),
    ),
    (
        "k8s.cni.cncf.io_ipamclaims.yaml",
        include_str!("../crds/k8s.cni.cncf.io_ipamclaims.yaml"),
    ),
    (
        "k8s.ovn.org_clusteruserdefinednetworks.yaml",
        include_str!("../crds/k8s.ovn.org_clusteruserdefinednetworks.yaml"),
    ),
    (
        "k8s.ovn.org_routeadvertisements.yaml",
        include_str!("../crds/k8s.ovn.org_routeadvertisements.yaml"),
    ),
    (
        "k8s.ovn.org_userdefinednetworks.yaml",
        include_str!("../crds/k8s.ovn.org_userdefinednetworks.yaml"),
    ),
    (
        "kubevirt-swagger.json",
        include_str!("../crds/kubevirt-swagger.json"),
    ),
];

const KUBEVIRT_SWAGGER_FILE: &str = "kubevirt-swagger.json";

/// A KubeVirt kind taken from the swagger.
struct KubeVirtKind {
    kind: &'static str,
    definition: &'static str,
    plural: &'static str,
    status_subresource: bool,
    short_names: &'static [&'static str],
}

/// Names, scope and subresources are those of KubeVirt's generated CRDs (virt-operator
/// `crds.go`): VirtualMachineInstance has no status subresource.
const KUBEVIRT_KINDS: &[KubeVirtKind] = &[
    KubeVirtKind {
        kind: "VirtualMachine",
        definition: "v1.VirtualMachine",
        plural: "virtualmachines",
        status_subresource: true,
        short_names: &["vm", "vms"],
    },
    KubeVirtKind {
        kind: "VirtualMachineInstance",
        definition: "v1.VirtualMachineInstance",
        plural: "virtualmachineinstances",
        status_subresource: false,
        short_names: &["vmi", "vmis"],
    },
    KubeVirtKind {
        kind: "VirtualMachineInstanceMigration",
        definition: "v1.VirtualMachineInstanceMigration",
        plural: "virtualmachineinstancemigrations",
        status_subresource: true,
        short_names: &["vmim", "vmims"],
    },
];

/// One kind before compilation.
#[derive(Debug)]
pub(crate) struct RawKind {
    pub(crate) info: crate::KindInfo,
    pub(crate) name_rule: NameRule,
    /// Builds the converted JSON Schema for a mode (swagger kinds carry their definitions).
    pub(crate) source: RawSchema,
}

#[derive(Debug)]
pub(crate) enum RawSchema {
    /// A self-contained structural schema (CRD version or built-in).
    Structural(Value),
    /// A swagger definition with the definitions it references (transitively).
    Swagger {
        root: Value,
        definitions: Map<String, Value>,
    },
}

impl RawSchema {
    pub(crate) fn converted(&self, mode: Strictness) -> Value {
        match self {
            RawSchema::Structural(schema) => convert_root(schema, mode),
            RawSchema::Swagger { root, definitions } => {
                let mut converted = convert_root(root, mode);
                let defs: Map<String, Value> = definitions
                    .iter()
                    .map(|(name, def)| (name.clone(), convert_definition(def, mode)))
                    .collect();
                if let Value::Object(map) = &mut converted {
                    map.insert("definitions".into(), Value::Object(defs));
                }
                converted
            }
        }
    }

    /// Whether the schema's `default`s are the server's defaults. CRD schemas: yes. Swagger
    /// definitions carry Go zero-value hints (`default: {}`) that KubeVirt's CRDs do not apply.
    pub(crate) fn has_server_defaults(&self) -> bool {
        matches!(self, RawSchema::Structural(_))
    }

    /// The unconverted schema text a rule-coverage check walks.
    #[cfg(test)]
    pub(crate) fn documents(&self) -> Vec<&Value> {
        match self {
            RawSchema::Structural(schema) => vec![schema],
            RawSchema::Swagger { root, definitions } => {
                std::iter::once(root).chain(definitions.values()).collect()
            }
        }
    }
}

fn bad(file: &str, detail: impl Into<String>) -> SchemaError {
    SchemaError::BadSchemaDocument {
        file: file.to_string(),
        detail: detail.into(),
    }
}

fn text<'a>(value: &'a Value, pointer: &str, file: &str) -> Result<&'a str, SchemaError> {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .ok_or_else(|| bad(file, format!("missing {pointer}")))
}

/// Every kind of every embedded document, plus the built-in core kinds.
pub(crate) fn load_all() -> Result<Vec<RawKind>, SchemaError> {
    let mut kinds = Vec::new();
    for (file, content) in EMBEDDED_FILES {
        if *file == KUBEVIRT_SWAGGER_FILE {
            kinds.extend(load_swagger(file, content)?);
        } else {
            kinds.extend(load_crd(file, content)?);
        }
    }
    kinds.extend(builtin_kinds());
    Ok(kinds)
}

fn load_crd(file: &str, content: &str) -> Result<Vec<RawKind>, SchemaError> {
    let crd: Value = serde_saphyr::from_str(content).map_err(|source| SchemaError::ParseCrd {
        file: file.to_string(),
        source: Box::new(source),
    })?;
    let group = text(&crd, "/spec/group", file)?;
    let kind = text(&crd, "/spec/names/kind", file)?;
    let plural = text(&crd, "/spec/names/plural", file)?;
    let namespaced = text(&crd, "/spec/scope", file)? == "Namespaced";
    let singular = crd
        .pointer("/spec/names/singular")
        .and_then(Value::as_str)
        .map_or_else(|| kind.to_lowercase(), str::to_string);
    let short_names: Vec<String> = crd
        .pointer("/spec/names/shortNames")
        .and_then(Value::as_array)
        .map(|names| {
            names
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .ok_or_else(|| bad(file, "missing /spec/versions"))?;
    let mut kinds = Vec::new();
    for version in versions {
        let name = text(version, "/name", file)?;
        let schema = version
            .pointer("/schema/openAPIV3Schema")
            .ok_or_else(|| bad(file, format!("version {name} has no openAPIV3Schema")))?;
        kinds.push(RawKind {
            info: crate::KindInfo {
                group: group.to_string(),
                version: name.to_string(),
                kind: kind.to_string(),
                plural: plural.to_string(),
                namespaced,
                has_status_subresource: version.pointer("/subresources/status").is_some(),
                served: version
                    .get("served")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                singular: singular.clone(),
                short_names: short_names.clone(),
            },
            name_rule: NameRule::Subdomain,
            source: RawSchema::Structural(schema.clone()),
        });
    }
    Ok(kinds)
}

fn collect_refs(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                if key == "$ref" {
                    if let Some(name) = child
                        .as_str()
                        .and_then(|r| r.strip_prefix("#/definitions/"))
                    {
                        out.insert(name.to_string());
                    }
                } else {
                    collect_refs(child, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_refs(item, out)),
        _ => {}
    }
}

fn load_swagger(file: &str, content: &str) -> Result<Vec<RawKind>, SchemaError> {
    let swagger: Value =
        serde_json::from_str(content).map_err(|source| SchemaError::ParseSwagger {
            file: file.to_string(),
            source,
        })?;
    let all = swagger
        .get("definitions")
        .and_then(Value::as_object)
        .ok_or_else(|| bad(file, "missing definitions"))?;
    let mut kinds = Vec::new();
    for spec in KUBEVIRT_KINDS {
        let definition = spec.definition;
        let root = all
            .get(definition)
            .ok_or_else(|| bad(file, format!("missing definition {definition}")))?;
        // The definitions reachable from the kind, so each compiled validator stays small.
        let mut reachable = BTreeSet::new();
        let mut pending = BTreeSet::new();
        collect_refs(root, &mut pending);
        while let Some(name) = pending.pop_first() {
            if !reachable.insert(name.clone()) {
                continue;
            }
            let def = all
                .get(&name)
                .ok_or_else(|| bad(file, format!("dangling $ref to {name}")))?;
            let mut found = BTreeSet::new();
            collect_refs(def, &mut found);
            pending.extend(found.into_iter().filter(|n| !reachable.contains(n)));
        }
        let definitions: Map<String, Value> = reachable
            .iter()
            .filter_map(|name| all.get(name).map(|def| (name.clone(), def.clone())))
            .collect();
        kinds.push(RawKind {
            info: crate::KindInfo {
                group: "kubevirt.io".into(),
                version: "v1".into(),
                kind: spec.kind.to_string(),
                plural: spec.plural.to_string(),
                namespaced: true,
                has_status_subresource: spec.status_subresource,
                served: true,
                singular: spec.kind.to_lowercase(),
                short_names: spec.short_names.iter().map(|n| n.to_string()).collect(),
            },
            name_rule: NameRule::Subdomain,
            source: RawSchema::Swagger {
                root: root.clone(),
                definitions,
            },
        });
    }
    Ok(kinds)
}

/// Built-in kinds the lab serves: Namespace and Node with the spec fields this project uses
/// (`status` is preserved), NetworkAttachmentDefinition, and Lease and Event in full.
fn builtin_kinds() -> Vec<RawKind> {
    let type_meta = json!({"apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"}});
    let with = |extra: Value| -> Value {
        let mut properties = type_meta.clone();
        if let (Value::Object(base), Value::Object(extra)) = (&mut properties, extra) {
            base.extend(extra);
        }
        json!({"type": "object", "properties": properties})
    };
    let preserved = json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
    let namespace = with(json!({
        "spec": {"type": "object", "properties": {"finalizers": {"type": "array", "items": {"type": "string"}}}},
        "status": preserved,
    }));
    let node = with(json!({
        "spec": {"type": "object", "properties": {
            "podCIDR": {"type": "string"},
            "podCIDRs": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
            "providerID": {"type": "string"},
            "unschedulable": {"type": "boolean"},
            "externalID": {"type": "string"},
            "configSource": preserved,
            "taints": {"type": "array", "items": {"type": "object", "required": ["key", "effect"], "properties": {
                "key": {"type": "string"},
                "value": {"type": "string"},
                "effect": {"type": "string", "enum": ["NoSchedule", "PreferNoSchedule", "NoExecute"]},
                "timeAdded": {"type": "string", "format": "date-time", "nullable": true}
            }}}
        }},
        "status": preserved,
    }));
    // Kubernetes 1.33's OpenAPI (`api/openapi-spec/v3/apis__coordination.k8s.io__v1_openapi.json`,
    // `apis__events.k8s.io__v1_openapi.json`; the same in k8s-openapi's `v1_33`): a MicroTime is
    // `string`/`date-time` there; the six fractional digits Go insists on are `builtin_rules`'.
    let micro_time = json!({"type": "string", "format": "date-time"});
    let time = json!({"type": "string", "format": "date-time"});
    let int32 = json!({"type": "integer", "format": "int32"});
    let string = json!({"type": "string"});
    let lease = with(json!({"spec": {"type": "object", "properties": {
        "acquireTime": micro_time,
        "holderIdentity": string,
        "leaseDurationSeconds": int32,
        "leaseTransitions": int32,
        "preferredHolder": string,
        "renewTime": micro_time,
        "strategy": string,
    }}}));
    // `io.k8s.api.core.v1.ObjectReference` (`x-kubernetes-map-type: atomic`).
    let object_reference = json!({"type": "object", "properties": {
        "apiVersion": string, "fieldPath": string, "kind": string, "name": string,
        "namespace": string, "resourceVersion": string, "uid": string,
    }});
    let mut event = with(json!({
        "action": string,
        "deprecatedCount": int32,
        "deprecatedFirstTimestamp": time,
        "deprecatedLastTimestamp": time,
        "deprecatedSource": {"type": "object", "properties": {"component": string, "host": string}},
        "eventTime": micro_time,
        "note": string,
        "reason": string,
        "regarding": object_reference,
        "related": object_reference,
        "reportingController": string,
        "reportingInstance": string,
        "series": {"type": "object", "required": ["count", "lastObservedTime"], "properties": {
            "count": int32, "lastObservedTime": micro_time}},
        "type": string,
    }));
    event["required"] = json!(["eventTime"]);
    // The NetworkAttachmentDefinition CRD of k8snetworkplumbingwg (spec.config is the CNI JSON).
    let nad =
        with(json!({"spec": {"type": "object", "properties": {"config": {"type": "string"}}}}));
    let core = |kind: &str, plural: &str, short: &str, namespaced: bool| crate::KindInfo {
        group: String::new(),
        version: "v1".into(),
        kind: kind.into(),
        plural: plural.into(),
        namespaced,
        has_status_subresource: true,
        served: true,
        singular: kind.to_lowercase(),
        short_names: vec![short.to_string()],
    };
    vec![
        RawKind {
            info: core("Namespace", "namespaces", "ns", false),
            name_rule: NameRule::Label,
            source: RawSchema::Structural(namespace),
        },
        RawKind {
            info: core("Node", "nodes", "no", false),
            name_rule: NameRule::Subdomain,
            source: RawSchema::Structural(node),
        },
        RawKind {
            info: crate::KindInfo {
                group: "k8s.cni.cncf.io".into(),
                version: "v1".into(),
                kind: "NetworkAttachmentDefinition".into(),
                plural: "network-attachment-definitions".into(),
                namespaced: true,
                has_status_subresource: false,
                served: true,
                singular: "network-attachment-definition".into(),
                short_names: vec!["net-attach-def".into()],
            },
            name_rule: NameRule::Subdomain,
            source: RawSchema::Structural(nad),
        },
        // Neither has a status subresource; `ev` is kube-apiserver's short name for events in
        // both groups (`pkg/registry/core/event/storage`), Leases have none.
        RawKind {
            info: built_in("coordination.k8s.io", "Lease", "leases", &[]),
            name_rule: NameRule::Subdomain,
            source: RawSchema::Structural(lease),
        },
        RawKind {
            info: built_in("events.k8s.io", "Event", "events", &["ev"]),
            name_rule: NameRule::Subdomain,
            source: RawSchema::Structural(event),
        },
    ]
}

/// A namespaced built-in `v1` kind without status subresource.
fn built_in(group: &str, kind: &str, plural: &str, short_names: &[&str]) -> crate::KindInfo {
    crate::KindInfo {
        group: group.into(),
        version: "v1".into(),
        kind: kind.into(),
        plural: plural.into(),
        namespaced: true,
        has_status_subresource: false,
        served: true,
        singular: kind.to_lowercase(),
        short_names: short_names.iter().map(|n| n.to_string()).collect(),
    }
}
