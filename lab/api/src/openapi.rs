//! The OpenAPI v3 documents the server publishes: `/openapi/v3` (one entry per group/version, with a content
//! hash clients cache by) and, per group/version, the resource paths and verbs, the query parameters the server
//! honours (kubectl probes `fieldValidation`) and the kinds' schemas, taken from the same embedded sources the
//! validator uses: the CRDs' `openAPIV3Schema` and the KubeVirt swagger definitions (with every definition they
//! reference). The kinds vmbgp-schema defines itself (Namespace, Node, NetworkAttachmentDefinition, Lease, Event)
//! are published without schemas.

use std::collections::{BTreeMap, BTreeSet};

use axum::body::Bytes;
use serde_json::{Map, Value, json};

use crate::registry::{Registry, ResourceKind};

const KUBEVIRT_SWAGGER: &str = "kubevirt-swagger.json";
/// The schema every CRD's `metadata` refers to (named as in the KubeVirt swagger, which defines it).
const OBJECT_META: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta";

/// Every group/version document, serialized once.
#[derive(Debug)]
pub struct OpenApi {
    /// `api/v1` or `apis/<group>/<version>` → (content hash, document).
    documents: BTreeMap<String, (String, Bytes)>,
}

impl OpenApi {
    /// Builds the documents of every group/version `registry` serves.
    pub fn build(registry: &Registry) -> OpenApi {
        let sources = Sources::load();
        let mut documents = BTreeMap::new();
        for (group, versions) in registry.groups() {
            for version in versions {
                let kinds = registry.in_group_version(&group, &version);
                let doc = group_version_document(&sources, &group, &version, &kinds);
                let json = serde_json::to_vec(&doc).unwrap_or_default();
                let key = if group.is_empty() {
                    format!("api/{version}")
                } else {
                    format!("apis/{group}/{version}")
                };
                documents.insert(key, (fnv_hex(&json), Bytes::from(json)));
            }
        }
        OpenApi { documents }
    }

    /// The `/openapi/v3` index.
    pub fn index(&self) -> Value {
        let paths: Map<String, Value> = self
            .documents
            .iter()
            .map(|(key, (hash, _))| {
                (
                    key.clone(),
                    json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash={hash}")}),
                )
            })
            .collect();
        json!({ "paths": paths })
    }

    /// The document of `api/v1` or `apis/<group>/<version>`.
    pub fn document(&self, key: &str) -> Option<Bytes> {
        self.documents.get(key).map(|(_, d)| d.clone())
    }
}

/// Schemas by (group, version, kind), plus the definitions they reference.
#[derive(Debug, Default)]
struct Sources {
    /// (group, version, kind) → (schema name, schema).
    kinds: BTreeMap<(String, String, String), (String, Value)>,
    /// KubeVirt swagger definitions, refs rewritten to `#/components/schemas/`.
    definitions: Map<String, Value>,
}

impl Sources {
    fn load() -> Sources {
        let mut sources = Sources::default();
        for (file, content) in vmbgp_schema::EMBEDDED_FILES {
            if *file == KUBEVIRT_SWAGGER {
                sources.load_swagger(content);
            } else {
                sources.load_crd(content);
            }
        }
        sources
    }

    fn load_crd(&mut self, content: &str) {
        let Ok(crd) = serde_saphyr::from_str::<Value>(content) else {
            return;
        };
        let (Some(group), Some(kind)) = (
            crd.pointer("/spec/group").and_then(Value::as_str),
            crd.pointer("/spec/names/kind").and_then(Value::as_str),
        ) else {
            return;
        };
        let reversed: Vec<&str> = group.rsplit('.').collect();
        for v in crd
            .pointer("/spec/versions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let (Some(version), Some(schema)) = (
                v.get("name").and_then(Value::as_str),
                v.pointer("/schema/openAPIV3Schema"),
            ) else {
                continue;
            };
            let mut schema = schema.clone();
            // As a real server publishes CRDs: metadata is ObjectMeta.
            if let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) {
                props.insert(
                    "metadata".to_string(),
                    json!({"allOf": [{"$ref": format!("#/components/schemas/{OBJECT_META}")}],
                        "description": "Standard object's metadata."}),
                );
            }
            schema["x-kubernetes-group-version-kind"] =
                json!([{"group": group, "version": version, "kind": kind}]);
            let name = format!("{}.{version}.{kind}", reversed.join("."));
            self.kinds.insert(
                (group.to_string(), version.to_string(), kind.to_string()),
                (name, schema),
            );
        }
    }

    fn load_swagger(&mut self, content: &str) {
        let Ok(swagger) = serde_json::from_str::<Value>(content) else {
            return;
        };
        let Some(defs) = swagger.get("definitions").and_then(Value::as_object) else {
            return;
        };
        self.definitions = defs
            .iter()
            .map(|(name, schema)| (name.clone(), to_openapi3(schema)))
            .collect();
    }

    /// The schema name of a KubeVirt kind (`v1.VirtualMachine`), tagged with its group/version/kind.
    fn swagger_kind(&self, k: &ResourceKind) -> Option<(String, Value)> {
        let name = format!("{}.{}", k.version, k.kind);
        let mut schema = self.definitions.get(&name)?.clone();
        schema["x-kubernetes-group-version-kind"] =
            json!([{"group": k.group, "version": k.version, "kind": k.kind}]);
        Some((name, schema))
    }

    /// Adds `name` and every definition it references (transitively) to `out`.
    fn add_with_refs(&self, name: &str, schema: Value, out: &mut Map<String, Value>) {
        let mut pending = Vec::new();
        collect_refs(&schema, &mut pending);
        out.insert(name.to_string(), schema);
        let mut seen: BTreeSet<String> = out.keys().cloned().collect();
        while let Some(r) = pending.pop() {
            if !seen.insert(r.clone()) {
                continue;
            }
            if let Some(def) = self.definitions.get(&r) {
                collect_refs(def, &mut pending);
                out.insert(r, def.clone());
            }
        }
    }
}

/// Swagger 2 schema → OpenAPI 3: refs point into `components/schemas`, and a `$ref` with sibling keys becomes
/// `allOf: [$ref]` (OpenAPI 3.0 ignores a `$ref`'s siblings), as Kubernetes publishes it.
fn to_openapi3(schema: &Value) -> Value {
    match schema {
        Value::Object(map) => {
            let mut out: Map<String, Value> = map
                .iter()
                .filter(|(k, _)| *k != "$ref")
                .map(|(k, v)| (k.clone(), to_openapi3(v)))
                .collect();
            if let Some(r) = map.get("$ref").and_then(Value::as_str) {
                let r = json!({"$ref": r.replace("#/definitions/", "#/components/schemas/")});
                if out.is_empty() {
                    return r;
                }
                out.insert("allOf".to_string(), json!([r]));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(to_openapi3).collect()),
        other => other.clone(),
    }
}

fn collect_refs(schema: &Value, out: &mut Vec<String>) {
    match schema {
        Value::Object(map) => {
            if let Some(name) = map
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix("#/components/schemas/"))
            {
                out.push(name.to_string());
            }
            map.values().for_each(|v| collect_refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// One group/version: the resource paths with their verbs and the write query parameters, tagged with
/// `x-kubernetes-group-version-kind`, and the kinds' schemas.
fn group_version_document(
    sources: &Sources,
    group: &str,
    version: &str,
    kinds: &[&ResourceKind],
) -> Value {
    let param = |name: &str| json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}});
    let write_params = json!([
        param("dryRun"),
        param("fieldManager"),
        param("fieldValidation"),
        param("force")
    ]);
    let mut paths = Map::new();
    let mut schemas = Map::new();
    for k in kinds {
        let schema = sources
            .kinds
            .get(&(k.group.clone(), k.version.clone(), k.kind.clone()))
            .cloned()
            .or_else(|| sources.swagger_kind(k));
        let response = match &schema {
            Some((name, _)) => {
                json!({"200": {"description": "OK", "content": {"application/json": {
                "schema": {"$ref": format!("#/components/schemas/{name}")}}}}})
            }
            None => json!({"200": {"description": "OK"}}),
        };
        if let Some((name, schema)) = schema {
            sources.add_with_refs(&name, schema, &mut schemas);
        }
        let gvk = json!({"group": k.group, "version": k.version, "kind": k.kind});
        let prefix = if group.is_empty() {
            format!("/api/{version}")
        } else {
            format!("/apis/{group}/{version}")
        };
        let collection = if k.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}", k.plural)
        } else {
            format!("{prefix}/{}", k.plural)
        };
        let op = |action: &str| json!({"x-kubernetes-action": action, "x-kubernetes-group-version-kind": gvk, "parameters": write_params, "responses": response});
        paths.insert(
            collection.clone(),
            json!({"get": op("list"), "post": op("post"), "delete": op("deletecollection")}),
        );
        paths.insert(
            format!("{collection}/{{name}}"),
            json!({"get": op("get"), "put": op("put"), "patch": op("patch"), "delete": op("delete")}),
        );
        if k.has_status_subresource {
            paths.insert(
                format!("{collection}/{{name}}/status"),
                json!({"get": op("get"), "put": op("put"), "patch": op("patch")}),
            );
        }
    }
    json!({"openapi": "3.0.0", "info": {"title": "vmbgp lab", "version": "v1.33.0"}, "paths": paths,
        "components": {"schemas": schemas}})
}

/// FNV-1a, 64 bits, as hex: the document hash in the index (clients cache documents by it).
fn fnv_hex(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016X}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swagger_refs_become_component_refs_and_ref_siblings_allof() {
        let s = json!({"properties": {"a": {"$ref": "#/definitions/x.Y"}, "b": {"$ref": "#/definitions/x.Z", "default": {}}}});
        assert_eq!(
            to_openapi3(&s),
            json!({"properties": {"a": {"$ref": "#/components/schemas/x.Y"},
                "b": {"default": {}, "allOf": [{"$ref": "#/components/schemas/x.Z"}]}}})
        );
    }

    #[test]
    fn every_kind_from_a_crd_or_the_swagger_has_a_schema_whose_refs_resolve() {
        let (registry, _) = crate::validation::schema_registry_and_validator().unwrap();
        let api = OpenApi::build(&registry);
        let index = api.index();
        let mut without = Vec::new();
        for (group, versions) in registry.groups() {
            for version in versions {
                let key = if group.is_empty() {
                    format!("api/{version}")
                } else {
                    format!("apis/{group}/{version}")
                };
                assert!(index["paths"][&key]["serverRelativeURL"].is_string());
                let doc: Value = serde_json::from_slice(&api.document(&key).unwrap()).unwrap();
                let schemas = doc["components"]["schemas"].as_object().unwrap();
                let mut refs = Vec::new();
                collect_refs(&doc, &mut refs);
                for r in refs {
                    assert!(schemas.contains_key(&r), "{key}: dangling $ref {r}");
                }
                for k in registry.in_group_version(&group, &version) {
                    let tagged = schemas.values().any(|s| {
                        s["x-kubernetes-group-version-kind"][0]
                            == json!({"group": k.group, "version": k.version, "kind": k.kind})
                    });
                    if !tagged {
                        without.push(k.kind.clone());
                    }
                }
            }
        }
        without.sort();
        assert_eq!(
            without,
            [
                "Event",
                "Lease",
                "Namespace",
                "NetworkAttachmentDefinition",
                "Node"
            ]
        );
    }
}
