//! Describing the API: `/version`, API groups, aggregated discovery and per-group-version resource lists.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};

use super::{error_response, json_response};
use crate::error::ApiError;
use crate::registry::ResourceKind;
use crate::store::Store;

pub(super) fn version_info() -> Value {
    json!({
        "major": "1", "minor": "33", "gitVersion": crate::nodes::KUBE_VERSION, "gitCommit": "vmbgp-lab",
        "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "n/a (vmbgp lab)",
        "compiler": "rustc", "platform": format!("linux/{}", crate::nodes::go_arch(std::env::consts::ARCH))
    })
}

pub(super) fn group_object(store: &Store, group: &str) -> Option<Value> {
    let (_, versions) = store
        .registry()
        .groups()
        .into_iter()
        .find(|(g, _)| g == group && !g.is_empty())?;
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    let preferred = vs.first().cloned().unwrap_or(Value::Null);
    Some(
        json!({"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": vs, "preferredVersion": preferred}),
    )
}

pub(super) fn group_list(store: &Store) -> Value {
    let groups: Vec<Value> = store
        .registry()
        .groups()
        .into_iter()
        .filter(|(g, _)| !g.is_empty())
        .filter_map(|(g, _)| group_object(store, &g))
        .map(|mut g| {
            if let Some(o) = g.as_object_mut() {
                o.remove("kind");
                o.remove("apiVersion");
            }
            g
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// The aggregated discovery versions served (`apidiscovery.k8s.io/<v>`); their documents are identical.
const AGGREGATED_DISCOVERY: [&str; 2] = ["v2", "v2beta1"];

/// The aggregated discovery version the `Accept` header prefers, if it prefers one over plain JSON (media ranges
/// by descending `q`, then in the order given; ranges the server cannot produce, e.g. protobuf, are skipped).
pub(super) fn aggregated_discovery(headers: &HeaderMap) -> Option<&'static str> {
    let accept = headers.get(header::ACCEPT)?.to_str().ok()?;
    crate::accept::preferred_variant(accept, |g, v, as_| match (g, as_) {
        (None, None) => Some(None),
        (Some("apidiscovery.k8s.io"), Some("APIGroupDiscoveryList")) => AGGREGATED_DISCOVERY
            .iter()
            .find(|a| Some(**a) == v)
            .map(|a| Some(*a)),
        _ => None,
    })
}

/// The singular name discovery reports: the lower-case kind, as the lab has always served it (the
/// CRDs' own `singular` differs only for NetworkAttachmentDefinition's hyphenated name).
fn singular(kind: &ResourceKind) -> String {
    kind.kind.to_lowercase()
}

/// `/api` (`core`) or `/apis` as an `APIGroupDiscoveryList`: every group, its versions (preferred first) and
/// their resources with scope, verbs, short names and subresources, in one document.
pub(super) fn discovery_v2(store: &Store, core: bool, version: &str) -> Response {
    let gvk = |k: &ResourceKind| json!({"group": k.group, "version": k.version, "kind": k.kind});
    let items: Vec<Value> = store
        .registry()
        .groups()
        .into_iter()
        .filter(|(g, _)| g.is_empty() == core)
        .map(|(group, versions)| {
            let versions: Vec<Value> = versions
                .iter()
                .map(|v| {
                    let resources: Vec<Value> = store
                        .registry()
                        .in_group_version(&group, v)
                        .into_iter()
                        .map(|k| {
                            let mut r = json!({
                                "resource": k.plural,
                                "responseKind": gvk(k),
                                "scope": if k.namespaced { "Namespaced" } else { "Cluster" },
                                "singularResource": singular(k),
                                "verbs": RESOURCE_VERBS,
                            });
                            if !k.short_names.is_empty() {
                                r["shortNames"] = json!(k.short_names);
                            }
                            if k.has_status_subresource {
                                r["subresources"] = json!([{
                                    "subresource": "status",
                                    "responseKind": gvk(k),
                                    "verbs": STATUS_VERBS,
                                }]);
                            }
                            r
                        })
                        .collect();
                    json!({"version": v, "resources": resources, "freshness": "Current"})
                })
                .collect();
            let mut metadata = json!({"creationTimestamp": null});
            if !group.is_empty() {
                metadata["name"] = json!(group);
            }
            json!({"metadata": metadata, "versions": versions})
        })
        .collect();
    let body = json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{version}"),
        "metadata": {},
        "items": items,
    });
    let content_type =
        format!("application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList");
    let mut resp = json_response(StatusCode::OK, &body);
    if let Ok(v) = HeaderValue::from_str(&content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp.headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Accept"));
    resp
}

const RESOURCE_VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
const STATUS_VERBS: [&str; 3] = ["get", "patch", "update"];

pub(super) fn resource_list_response(store: &Store, group: &str, version: &str) -> Response {
    let kinds = store.registry().in_group_version(group, version);
    if kinds.is_empty() {
        return error_response(&ApiError::UnknownResource);
    }
    let mut resources = Vec::new();
    for k in kinds {
        resources.push(json!({
            "name": k.plural, "singularName": singular(k), "namespaced": k.namespaced, "kind": k.kind,
            "verbs": RESOURCE_VERBS,
            "shortNames": k.short_names,
        }));
        if k.has_status_subresource {
            resources.push(json!({
                "name": format!("{}/status", k.plural), "singularName": "", "namespaced": k.namespaced, "kind": k.kind,
                "verbs": STATUS_VERBS,
            }));
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    json_response(
        StatusCode::OK,
        &json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> Option<&'static str> {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_str(value).unwrap());
        aggregated_discovery(&h)
    }

    #[test]
    fn accept_header_picks_aggregated_discovery_by_preference() {
        let kubectl = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json;q=0.9";
        assert_eq!(accept(kubectl), Some("v2"));
        assert_eq!(
            accept(
                "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
            ),
            Some("v2beta1")
        );
        assert_eq!(
            accept(
                "application/vnd.kubernetes.protobuf;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
            ),
            None
        );
        assert_eq!(
            accept(
                "application/json;q=1,application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList;q=0.5"
            ),
            None
        );
        assert_eq!(
            accept(
                "application/json;g=apidiscovery.k8s.io;v=v3;as=APIGroupDiscoveryList,application/json"
            ),
            None
        );
        assert_eq!(accept("application/json"), None);
        assert_eq!(accept(""), None);
    }
}
