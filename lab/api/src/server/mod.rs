//! The HTTP face of the store: authentication, Kubernetes REST paths, discovery, `/version`, `/healthz`, watch
//! streams with bookmarks and in-stream 410s, and the fault-injection layer in front of every resource request.
//!
//! One file per job: `request` reads a request's query and body, `resource` answers the Kubernetes REST verbs,
//! `watch` streams watches and `discovery` describes the API; this module routes, authorizes and holds the
//! response helpers they share.

mod discovery;
mod request;
mod resource;
mod watch;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::auth::{Authn, BearerToken, PUBLIC_PATHS};
use crate::error::{ApiError, TOO_LARGE_RV_WAIT};
use crate::faults::{Faults, InjectedError};
use crate::openapi::OpenApi;
use crate::store::Store;
use crate::table::Printers;
use discovery::{
    aggregated_discovery, discovery_v2, group_list, group_object, resource_list_response,
    version_info,
};
use request::{Query, ReadAt, read_at, resolve};
use resource::handle_resource;

/// Everything a request handler needs.
#[derive(Debug)]
pub struct ServerState {
    pub store: Arc<Store>,
    pub faults: Arc<Faults>,
    /// Cancelled when the lab stops; ends every watch stream so the server can shut down.
    pub shutdown: CancellationToken,
    /// How often a watch that asked for bookmarks gets one.
    pub bookmark_interval: Duration,
    /// The OpenAPI documents, built on first request.
    pub openapi: OnceLock<OpenApi>,
    /// The Table printers (`kubectl get`), built on first request.
    pub printers: OnceLock<Printers>,
    /// The bearer token requests must present ([`crate::auth`]).
    pub token: BearerToken,
}

impl ServerState {
    fn openapi(&self) -> &OpenApi {
        self.openapi
            .get_or_init(|| OpenApi::build(self.store.registry()))
    }

    fn printers(&self) -> &Printers {
        self.printers
            .get_or_init(|| Printers::build(self.store.registry()))
    }
}

/// The router serving every path through one dispatcher (Kubernetes paths are not a fixed route table).
pub fn router(state: Arc<ServerState>) -> Router {
    Router::new().fallback(dispatch).with_state(state)
}

fn json_response(code: StatusCode, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    (
        code,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        bytes,
    )
        .into_response()
}

fn error_response(err: &ApiError) -> Response {
    let mut resp = json_response(
        StatusCode::from_u16(err.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &err.to_status(),
    );
    // responsewriters.ErrorNegotiated copies details.retryAfterSeconds into the header.
    if let Some(seconds) = err.retry_after_seconds()
        && let Ok(v) = HeaderValue::from_str(&seconds.to_string())
    {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

/// The request path percent-decoded, as Go's net/http decodes `URL.Path` before kube-apiserver splits it into
/// segments (so an encoded `/` separates segments like a plain one). `None` for a malformed escape.
fn decode_path(raw: &str) -> Option<String> {
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hi = bytes.next().and_then(|h| (h as char).to_digit(16))?;
            let lo = bytes.next().and_then(|l| (l as char).to_digit(16))?;
            out.push((hi * 16 + lo) as u8);
        } else {
            out.push(b);
        }
    }
    // Bytes that are not UTF-8 cannot name anything the lab stores; replacing them keeps the 404 the same.
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// What net/http answers, before any handler runs, for a request line whose URL does not parse.
fn malformed_request() -> Response {
    (
        StatusCode::BAD_REQUEST,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            ),
            (header::CONNECTION, HeaderValue::from_static("close")),
        ],
        "400 Bad Request",
    )
        .into_response()
}

/// Authentication and the RBAC decision for anonymous requests; `Err` says why the request is refused.
fn authorize(
    token: &BearerToken,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    match token.authenticate(authorization) {
        Authn::Authenticated => Ok(()),
        Authn::Rejected => Err(ApiError::Unauthorized),
        // Anonymous authentication only applies to the public paths; elsewhere the request is unauthenticated.
        Authn::Anonymous if !PUBLIC_PATHS.contains(&path) => Err(ApiError::Unauthorized),
        // system:public-info-viewer grants `get` only; a non-resource verb is the lower-cased method.
        Authn::Anonymous if method != Method::GET => Err(ApiError::ForbiddenPath {
            verb: method.as_str().to_ascii_lowercase(),
            path: path.to_string(),
        }),
        Authn::Anonymous => Ok(()),
    }
}

async fn dispatch(
    State(st): State<Arc<ServerState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(path) = decode_path(uri.path()) else {
        return malformed_request();
    };
    if let Err(refused) = authorize(&st.token, &method, &path, &headers) {
        return error_response(&refused);
    }
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let query = Query::parse(uri.query());
    match segments.as_slice() {
        ["healthz"] | ["readyz"] | ["livez"] => return (StatusCode::OK, "ok").into_response(),
        ["version"] => return json_response(StatusCode::OK, &version_info()),
        ["api"] | ["apis"] => {
            let core = segments == ["api"];
            return match aggregated_discovery(&headers) {
                Some(version) => discovery_v2(&st.store, core, version),
                None if core => json_response(
                    StatusCode::OK,
                    &json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}),
                ),
                None => json_response(StatusCode::OK, &group_list(&st.store)),
            };
        }
        ["api", "v1"] => return resource_list_response(&st.store, "", "v1"),
        ["apis", group] => {
            return match group_object(&st.store, group) {
                Some(g) => json_response(StatusCode::OK, &g),
                None => error_response(&ApiError::UnknownResource),
            };
        }
        ["apis", group, version] => return resource_list_response(&st.store, group, version),
        ["openapi", "v3"] => return json_response(StatusCode::OK, &st.openapi().index()),
        ["openapi", "v3", rest @ ..] => {
            return match st.openapi().document(&rest.join("/")) {
                Some(doc) => raw_json_response(StatusCode::OK, doc),
                None => error_response(&ApiError::UnknownResource),
            };
        }
        _ => {}
    }
    let target = match resolve(&st.store, &segments) {
        Some(t) => t,
        None => return error_response(&ApiError::UnknownResource),
    };
    let (latency, injected) = st.faults.draw();
    if let Some(l) = latency {
        tokio::time::sleep(l).await;
    }
    match injected {
        Some(InjectedError::Internal) => {
            return error_response(&ApiError::Internal {
                message: "injected fault: internal error".to_string(),
            });
        }
        Some(InjectedError::TooManyRequests {
            retry_after_seconds,
        }) => {
            return error_response(&ApiError::TooManyRequests {
                retry_after_seconds,
            });
        }
        None => {}
    }
    let read = if method == Method::GET {
        match read_at(&query, &target) {
            Ok(r) => r,
            Err(e) => return error_response(&e),
        }
    } else {
        ReadAt::Latest
    };
    // A list or get for a resourceVersion the lab has not reached waits as the watch cache does, then times out.
    if !query.flag("watch")
        && let ReadAt::NotOlderThan(rv) | ReadAt::Exact(rv) = read
        && !st.store.wait_for_rv(rv, TOO_LARGE_RV_WAIT).await
    {
        return error_response(&ApiError::TooLargeResourceVersion {
            requested: rv,
            current: st.store.resource_version(),
        });
    }
    match handle_resource(&st, &method, &target, &query, &headers, &body, read) {
        Ok(resp) => resp,
        Err(e) => error_response(&e),
    }
}

/// A response whose body is already serialized JSON (a stored object: no copy).
fn raw_json_response(code: StatusCode, json: Bytes) -> Response {
    (
        code,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        json,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn decoding_any_path_never_panics(raw in ".*") {
            let _ = decode_path(&raw);
        }

        #[test]
        fn every_byte_percent_encoded_decodes_back(path in "[^%]*") {
            let encoded: String = path.bytes().map(|b| format!("%{b:02X}")).collect();
            prop_assert_eq!(decode_path(&encoded), Some(path.clone()));
            prop_assert_eq!(decode_path(&path), Some(path));
        }
    }

    #[test]
    fn malformed_escapes_are_refused() {
        for raw in ["%", "%2", "%zz", "/a%2", "/a%g0"] {
            assert_eq!(decode_path(raw), None, "{raw}");
        }
        assert_eq!(decode_path("/a%2Fb%3a").as_deref(), Some("/a/b:"));
    }
}
