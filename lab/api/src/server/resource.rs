//! Answering the Kubernetes REST verbs on a resource path: get, list (as JSON or a Table), create, update, patch, delete.

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::request::{
    Query, ReadAt, Target, content_type, decode_object, list_options, parse_json, table_options,
    write_options,
};
use super::watch::watch_response;
use super::{ServerState, json_response, raw_json_response};
use crate::error::ApiError;
use crate::registry::ResourceKind;
use crate::store::{DeleteOptions, Patch, Propagation};
use crate::table::TableOptions;

pub(super) fn handle_resource(
    st: &Arc<ServerState>,
    method: &Method,
    t: &Target,
    q: &Query,
    headers: &HeaderMap,
    body: &Bytes,
    read: ReadAt,
) -> Result<Response, ApiError> {
    let store = &st.store;
    let kind = store
        .registry()
        .get(t.kind)
        .ok_or(ApiError::UnknownResource)?
        .clone();
    let ns = t.namespace.as_deref();
    let status_only = t.subresource.is_some();
    match (method.clone(), &t.name) {
        (Method::GET, None) => {
            let table = table_options(headers, q)?;
            if q.flag("watch") {
                return watch_response(st, &kind, t, q, table, read);
            }
            let mut opts = list_options(q)?;
            if let ReadAt::Exact(rv) = read {
                opts.exact_rv = Some(rv);
            }
            let page = store.list_stored(t.kind, ns, &opts)?;
            if let Some(opts) = table {
                let items: Vec<Value> = page
                    .items
                    .iter()
                    .map(|s| serde_json::from_slice(&s.json).unwrap_or(Value::Null))
                    .collect();
                let meta = list_metadata(
                    page.resource_version,
                    page.continue_token.as_deref(),
                    page.remaining,
                );
                let body = st.printers().list(t.kind, &items, meta, opts);
                return Ok(table_response(opts, &body));
            }
            Ok(list_response(
                &kind,
                page.resource_version,
                page.continue_token.as_deref(),
                page.remaining,
                page.items.iter().map(|s| s.json.clone()),
            ))
        }
        (Method::GET, Some(name)) => {
            let stored = store.get_stored(t.kind, ns, name)?;
            match table_options(headers, q)? {
                Some(opts) => {
                    let object: Value = serde_json::from_slice(&stored.json).unwrap_or(Value::Null);
                    let body = st.printers().object(t.kind, &object, opts, true);
                    Ok(table_response(opts, &body))
                }
                None => Ok(raw_json_response(StatusCode::OK, stored.json)),
            }
        }
        (Method::POST, None) => {
            let obj = decode_object(&kind, headers, body)?;
            let w = store.create(t.kind, ns, obj, &write_options(q)?)?;
            Ok(raw_json_response(StatusCode::CREATED, w.json))
        }
        (Method::PUT, Some(name)) => {
            let obj = decode_object(&kind, headers, body)?;
            let w = store.update(t.kind, ns, name, obj, status_only, &write_options(q)?)?;
            Ok(raw_json_response(StatusCode::OK, w.json))
        }
        (Method::PATCH, Some(name)) => {
            let ct = content_type(headers);
            let opts = write_options(q)?;
            let patch = match ct.as_str() {
                "application/merge-patch+json" => Patch::Merge(parse_json(body)?),
                "application/strategic-merge-patch+json" => {
                    Patch::StrategicMerge(parse_json(body)?)
                }
                "application/json-patch+json" => Patch::Json(
                    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest {
                        message: format!("invalid JSON patch: {e}"),
                    })?,
                ),
                "application/apply-patch+yaml" | "application/apply-patch+json" => {
                    if opts.field_manager.as_deref().is_none_or(str::is_empty) {
                        return Err(ApiError::BadRequest {
                            message: "PATCH apply: fieldManager is required for apply requests"
                                .to_string(),
                        });
                    }
                    let text = std::str::from_utf8(body).map_err(|e| ApiError::BadRequest {
                        message: format!("body is not UTF-8: {e}"),
                    })?;
                    let body = serde_saphyr::from_str::<Value>(text).map_err(|e| {
                        ApiError::BadRequest {
                            message: format!("invalid apply body: {e}"),
                        }
                    })?;
                    Patch::Apply {
                        body,
                        force: q.flag("force"),
                    }
                }
                _ => {
                    return Err(ApiError::UnsupportedMediaType {
                        accepted: "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml".to_string(),
                    });
                }
            };
            let existed = store.meta(t.kind, ns, name).is_some();
            let w = store.patch(t.kind, ns, name, patch, status_only, &opts)?;
            Ok(raw_json_response(
                if existed {
                    StatusCode::OK
                } else {
                    StatusCode::CREATED
                },
                w.json,
            ))
        }
        (Method::DELETE, name) => {
            let mut opts = DeleteOptions {
                dry_run: q.get("dryRun") == Some("All"),
                ..Default::default()
            };
            let mut policy = q.get("propagationPolicy").map(str::to_string);
            if !body.is_empty()
                && let Ok(b) = serde_json::from_slice::<Value>(body)
            {
                if let Some(p) = b.get("propagationPolicy").and_then(Value::as_str) {
                    policy = Some(p.to_string());
                }
                if b.get("orphanDependents").and_then(Value::as_bool) == Some(true) {
                    policy = Some("Orphan".to_string());
                }
                opts.precondition_uid = b
                    .pointer("/preconditions/uid")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                opts.precondition_rv = b
                    .pointer("/preconditions/resourceVersion")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                if b.get("dryRun")
                    .and_then(Value::as_array)
                    .is_some_and(|a| a.iter().any(|v| v == "All"))
                {
                    opts.dry_run = true;
                }
            }
            opts.propagation = match policy.as_deref() {
                None | Some("Background") => Propagation::Background,
                Some("Foreground") => Propagation::Foreground,
                Some("Orphan") => Propagation::Orphan,
                Some(other) => {
                    return Err(ApiError::BadRequest {
                        message: format!("invalid propagationPolicy {other:?}"),
                    });
                }
            };
            match name {
                Some(name) => {
                    let d = store.delete(t.kind, ns, name, &opts)?;
                    Ok(json_response(
                        if d.removed {
                            StatusCode::OK
                        } else {
                            StatusCode::ACCEPTED
                        },
                        &d.object,
                    ))
                }
                None => {
                    let items = store.delete_collection(t.kind, ns, &list_options(q)?, &opts)?;
                    Ok(list_response(
                        &kind,
                        store.resource_version(),
                        None,
                        None,
                        items.iter().map(|o| {
                            Bytes::from(serde_json::to_vec(o.as_ref()).unwrap_or_default())
                        }),
                    ))
                }
            }
        }
        _ => Err(ApiError::MethodNotAllowed),
    }
}

fn table_response(opts: TableOptions, body: &Value) -> Response {
    let mut resp = json_response(StatusCode::OK, body);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(opts.version.content_type()),
    );
    resp
}

/// A list's `metadata`.
fn list_metadata(
    resource_version: u64,
    continue_token: Option<&str>,
    remaining: Option<usize>,
) -> Value {
    let mut meta = json!({"resourceVersion": resource_version.to_string()});
    if let Some(c) = continue_token {
        meta["continue"] = json!(c);
    }
    if let Some(r) = remaining {
        meta["remainingItemCount"] = json!(r);
    }
    meta
}

/// A `<Kind>List` around already serialized items.
fn list_response(
    kind: &ResourceKind,
    resource_version: u64,
    continue_token: Option<&str>,
    remaining: Option<usize>,
    items: impl ExactSizeIterator<Item = Bytes>,
) -> Response {
    let meta = list_metadata(resource_version, continue_token, remaining);
    let mut buf = Vec::with_capacity(256 + items.len() * 1024);
    buf.extend_from_slice(b"{\"kind\":");
    let _ = serde_json::to_writer(&mut buf, &format!("{}List", kind.kind));
    buf.extend_from_slice(b",\"apiVersion\":");
    let _ = serde_json::to_writer(&mut buf, &kind.api_version());
    buf.extend_from_slice(b",\"metadata\":");
    let _ = serde_json::to_writer(&mut buf, &meta);
    buf.extend_from_slice(b",\"items\":[");
    for (i, item) in items.enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        buf.extend_from_slice(&item);
    }
    buf.extend_from_slice(b"]}");
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        buf,
    )
        .into_response()
}
