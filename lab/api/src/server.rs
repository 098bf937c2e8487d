//! The HTTP face of the store: authentication, Kubernetes REST paths, discovery, `/version`, `/healthz`, watch
//! streams with bookmarks and in-stream 410s, and the fault-injection layer in front of every resource request.

use std::convert::Infallible;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio_util::sync::CancellationToken;

use crate::auth::{Authn, BearerToken, PUBLIC_PATHS};
use crate::error::{ApiError, Cause, TOO_LARGE_RV_WAIT};
use crate::faults::{Faults, InjectedError};
use crate::object_version::line_around;
use crate::openapi::OpenApi;
use crate::registry::{KindId, ResourceKind};
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{
    DeleteOptions, FieldValidation, ListOptions, Patch, Propagation, Store, WatchEvent,
    WriteOptions, event_line,
};
use crate::table::{IncludeObject, Printers, TableOptions};

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

/// Parsed query string (kube sends `?&a=b`: empty pairs are ignored).
#[derive(Debug, Default)]
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(q: Option<&str>) -> Self {
        Query(
            url::form_urlencoded::parse(q.unwrap_or_default().as_bytes())
                .filter(|(k, _)| !k.is_empty())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Go's `strconv.ParseBool` rules (the Python client sends `True`).
    fn flag(&self, key: &str) -> bool {
        matches!(
            self.get(key).map(str::to_ascii_lowercase).as_deref(),
            Some("1" | "t" | "true")
        )
    }
}

/// Which object(s) a resource path addresses.
#[derive(Debug)]
struct Target {
    kind: KindId,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
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

/// Which state a read sees, from its `resourceVersion` and `resourceVersionMatch`
/// (<https://kubernetes.io/docs/reference/using-api/api-concepts/#semantics-for-get-and-list>).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadAt {
    /// No resourceVersion: the most recent state (also a continued list: its token decides).
    Latest,
    /// `0`: any state; the lab's is always the newest.
    Any,
    /// At least this fresh.
    NotOlderThan(u64),
    /// Exactly the state at this resourceVersion.
    Exact(u64),
}

/// `ListOptions.meta.k8s.io "" is invalid` (kube-apiserver's `ValidateListOptions`, 422).
fn invalid_list_options(causes: Vec<Cause>) -> ApiError {
    ApiError::Invalid {
        group: "meta.k8s.io".to_string(),
        kind: "ListOptions".to_string(),
        name: String::new(),
        causes,
    }
}

fn forbidden(field: &str, detail: &str) -> Cause {
    Cause {
        field: field.to_string(),
        reason: "FieldValueForbidden".to_string(),
        message: format!("Forbidden: {detail}"),
    }
}

fn not_supported(field: &str, value: &str, supported: &[&str]) -> Cause {
    let supported: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
    Cause {
        field: field.to_string(),
        reason: "FieldValueNotSupported".to_string(),
        message: format!(
            "Unsupported value: {value:?}: supported values: {}",
            supported.join(", ")
        ),
    }
}

/// Parses a resourceVersion parameter: `None` when unset or empty.
fn parse_rv(rv: &str) -> Result<Option<u64>, ApiError> {
    if rv.is_empty() {
        return Ok(None);
    }
    rv.parse::<u64>().map(Some).map_err(|_| ApiError::BadRequest {
        message: format!(
            "invalid resource version: resourceVersion: Invalid value: {rv:?}: strconv.ParseUint: parsing {rv:?}: invalid syntax"
        ),
    })
}

/// Validates a GET's read parameters as kube-apiserver does (`ValidateListOptions` with the WatchList feature on,
/// then the storage layer's checks) and says which state it reads.
fn read_at(q: &Query, target: &Target) -> Result<ReadAt, ApiError> {
    let rv = q.get("resourceVersion").unwrap_or_default();
    let matching = q.get("resourceVersionMatch").unwrap_or_default();
    let continue_token = q.get("continue").unwrap_or_default();
    let send_initial = q.get("sendInitialEvents").is_some();
    const MATCH: &str = "resourceVersionMatch";
    if target.name.is_some() {
        // GetOptions has no resourceVersionMatch: a set resourceVersion means "not older than".
        return Ok(match parse_rv(rv)? {
            None => ReadAt::Latest,
            Some(0) => ReadAt::Any,
            Some(n) => ReadAt::NotOlderThan(n),
        });
    }
    let mut causes = Vec::new();
    if q.flag("watch") {
        if send_initial && matching != "NotOlderThan" {
            causes.push(forbidden(
                MATCH,
                "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
            ));
        }
        if !matching.is_empty() {
            if !send_initial {
                causes.push(forbidden(
                    MATCH,
                    "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
                ));
            }
            if matching != "NotOlderThan" {
                causes.push(not_supported(MATCH, matching, &["NotOlderThan"]));
            }
            if !continue_token.is_empty() {
                causes.push(forbidden(
                    MATCH,
                    "resourceVersionMatch is forbidden when continue is provided",
                ));
            }
        }
    } else {
        if !matching.is_empty() {
            if rv.is_empty() {
                causes.push(forbidden(
                    MATCH,
                    "resourceVersionMatch is forbidden unless resourceVersion is provided",
                ));
            }
            if !continue_token.is_empty() {
                causes.push(forbidden(
                    MATCH,
                    "resourceVersionMatch is forbidden when continue is provided",
                ));
            }
            if matching != "Exact" && matching != "NotOlderThan" {
                causes.push(not_supported(
                    MATCH,
                    matching,
                    &["Exact", "NotOlderThan", ""],
                ));
            }
            if matching == "Exact" && rv == "0" {
                causes.push(forbidden(
                    MATCH,
                    "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
                ));
            }
        }
        if send_initial {
            causes.push(forbidden(
                "sendInitialEvents",
                "sendInitialEvents is forbidden for list",
            ));
        }
    }
    if !causes.is_empty() {
        return Err(invalid_list_options(causes));
    }
    if !continue_token.is_empty() {
        // The continue token carries the list's resourceVersion (etcd3 store's check).
        if !rv.is_empty() && rv != "0" {
            return Err(ApiError::BadRequest {
                message: "specifying resource version is not allowed when using continue"
                    .to_string(),
            });
        }
        return Ok(ReadAt::Latest);
    }
    let limited = q
        .get("limit")
        .and_then(|l| l.parse::<u64>().ok())
        .is_some_and(|l| l > 0);
    Ok(match (parse_rv(rv)?, matching) {
        (None, _) => ReadAt::Latest,
        (Some(0), _) => ReadAt::Any,
        (Some(n), "Exact") => ReadAt::Exact(n),
        // The legacy form of a paginated list at a resourceVersion reads exactly that state.
        (Some(n), "") if limited && !q.flag("watch") => ReadAt::Exact(n),
        (Some(n), _) => ReadAt::NotOlderThan(n),
    })
}

fn resolve(store: &Store, segments: &[&str]) -> Option<Target> {
    let (group, version, rest) = match segments {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return None,
    };
    let reg = store.registry();
    let namespaced_form = rest.len() >= 3
        && rest[0] == "namespaces"
        && reg.by_path(group, version, rest[2]).is_some();
    let (namespace, rest) = if namespaced_form {
        (Some(rest[1].to_string()), &rest[2..])
    } else {
        (None, rest)
    };
    let (plural, name, sub) = match rest {
        [p] => (*p, None, None),
        [p, n] => (*p, Some(n.to_string()), None),
        [p, n, s] => (*p, Some(n.to_string()), Some(s.to_string())),
        _ => return None,
    };
    let kind = reg.by_path(group, version, plural)?;
    let k = reg.get(kind)?;
    if namespace.is_some() && !k.namespaced {
        return None;
    }
    if k.namespaced && namespace.is_none() && name.is_some() {
        return None;
    }
    if let Some(s) = &sub
        && !(s == "status" && k.has_status_subresource)
    {
        return None;
    }
    Some(Target {
        kind,
        namespace,
        name,
        subresource: sub,
    })
}

fn write_options(q: &Query) -> Result<WriteOptions, ApiError> {
    let field_validation = match q.get("fieldValidation") {
        None | Some("" | "Warn" | "Ignore") => FieldValidation::Prune,
        Some("Strict") => FieldValidation::Strict,
        Some(other) => {
            return Err(ApiError::BadRequest {
                message: format!(
                    "fieldValidation must be one of \"Ignore\", \"Warn\", or \"Strict\", got {other:?}"
                ),
            });
        }
    };
    Ok(WriteOptions {
        dry_run: q.get("dryRun") == Some("All"),
        field_validation,
        field_manager: q.get("fieldManager").map(str::to_string),
    })
}

const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";

/// Decodes a create or update body by its `Content-Type`, as `NegotiateInputSerializer` and the decoder do: JSON
/// (also when unset) and YAML are read. A media type the kind's serializer does not list is 415. Custom resources
/// list protobuf (kube-apiserver encodes their Tables and metadata in it) but cannot be decoded from it: 400, as
/// `transformDecodeError` words it. The lab speaks no protobuf, so for built-in kinds it is 415.
fn decode_object(
    kind: &ResourceKind,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Value, ApiError> {
    let custom = !kind.group.is_empty();
    match content_type(headers).as_str() {
        "" | "application/json" => parse_json(body),
        "application/yaml" => {
            let text = std::str::from_utf8(body).map_err(|e| ApiError::BadRequest {
                message: format!("body is not UTF-8: {e}"),
            })?;
            serde_saphyr::from_str::<Value>(text).map_err(|e| ApiError::BadRequest {
                message: format!("invalid YAML body: {e}"),
            })
        }
        PROTOBUF if custom => Err(protobuf_custom_resource(kind, body)),
        _ => Err(ApiError::UnsupportedMediaType {
            accepted: if custom {
                format!("application/json, application/yaml, {PROTOBUF}")
            } else {
                "application/json, application/yaml".to_string()
            },
        }),
    }
}

/// The 400 a custom resource's protobuf body gets: without the `k8s\0` envelope the serializer says it is no
/// protobuf; with it, that unstructured objects cannot be decoded from protobuf.
fn protobuf_custom_resource(kind: &ResourceKind, body: &Bytes) -> ApiError {
    const PREFIX: &[u8] = b"k8s\0";
    let message = if body.starts_with(PREFIX) && body.len() > PREFIX.len() {
        format!(
            "{k} in version {v:?} cannot be handled as a {k}: object *unstructured.Unstructured does not implement the protobuf marshalling interface and cannot be encoded to a protobuf message",
            k = kind.kind,
            v = kind.version
        )
    } else {
        format!(
            "the object provided is unrecognized (must be of type {}): provided data does not appear to be a protobuf message, expected prefix [107 56 115 0] ({})",
            kind.kind,
            summarize(body)
        )
    };
    ApiError::BadRequest { message }
}

/// `summarizeData(body, 30)`: JSON-looking bodies as text, others in hex, cut at 30 bytes.
fn summarize(body: &[u8]) -> String {
    const MAX: usize = 30;
    let cut = &body[..body.len().min(MAX)];
    let more = if body.len() > MAX { " ..." } else { "" };
    match body.first() {
        None => "<empty>".to_string(),
        Some(b'{') => format!("{}{more}", String::from_utf8_lossy(cut)),
        Some(_) => format!(
            "{}{more}",
            cut.iter().map(|b| format!("{b:02x}")).collect::<String>()
        ),
    }
}

fn parse_json(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest {
        message: format!("invalid JSON body: {e}"),
    })
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|s| {
            s.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

fn list_options(q: &Query) -> Result<ListOptions, ApiError> {
    let label_selector =
        LabelSelector::parse(q.get("labelSelector").unwrap_or_default()).map_err(|m| {
            ApiError::BadRequest {
                message: format!("unable to parse requirement: {m}"),
            }
        })?;
    let field_selector = FieldSelector::parse(q.get("fieldSelector").unwrap_or_default())
        .map_err(|m| ApiError::BadRequest { message: m })?;
    let limit = match q.get("limit") {
        Some(l) if !l.is_empty() => Some(l.parse::<usize>().map_err(|_| ApiError::BadRequest {
            message: format!("invalid limit {l:?}"),
        })?),
        _ => None,
    };
    Ok(ListOptions {
        label_selector,
        field_selector,
        limit,
        continue_token: q
            .get("continue")
            .filter(|c| !c.is_empty())
            .map(str::to_string),
        exact_rv: None,
    })
}

fn handle_resource(
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

/// The Table a GET asks for with its `Accept` header (kubectl's server-side printing), if any.
fn table_options(headers: &HeaderMap, q: &Query) -> Result<Option<TableOptions>, ApiError> {
    let Some(version) = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::table::negotiate)
    else {
        return Ok(None);
    };
    let include = IncludeObject::parse(q.get("includeObject"))
        .map_err(|message| ApiError::BadRequest { message })?;
    Ok(Some(TableOptions { version, include }))
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

fn bookmark(kind: &ResourceKind, rv: u64, initial_end: bool) -> Bytes {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    event_line(
        "BOOKMARK",
        &json!({"kind": kind.kind, "apiVersion": kind.api_version(), "metadata": meta}),
    )
}

fn gone_line(message: &str) -> Bytes {
    event_line(
        "ERROR",
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": "Expired", "code": 410}),
    )
}

/// The event type a watcher with selectors sees for `ev`, if it sees it: MODIFIED becomes ADDED/DELETED when the
/// object enters or leaves the selection, as on a real server.
fn visible_type(
    ev: &WatchEvent,
    ns: Option<&str>,
    labels: &LabelSelector,
    fields: &FieldSelector,
) -> Option<&'static str> {
    if let Some(ns) = ns
        && ev.meta.namespace != ns
    {
        return None;
    }
    let own = ev.event_type.as_str();
    if labels.is_everything() && fields.terms.is_empty() {
        return Some(own);
    }
    let now = labels.matches_meta(&ev.meta) && fields.matches_meta(&ev.meta);
    match ev.event_type {
        crate::store::EventType::Modified => {
            let before = ev
                .previous
                .as_ref()
                .is_some_and(|m| labels.matches_meta(m) && fields.matches_meta(&ev.meta));
            match (before, now) {
                (true, true) => Some(own),
                (false, true) => Some("ADDED"),
                (true, false) => Some("DELETED"),
                (false, false) => None,
            }
        }
        _ => now.then_some(own),
    }
}

/// How one watch stream encodes its events.
struct Encoder<'a> {
    ns: Option<&'a str>,
    labels: &'a LabelSelector,
    fields: &'a FieldSelector,
    /// A Table watch (kubectl get -w): each object becomes a one-row Table, with column definitions only in the
    /// first event, as kube-apiserver sends them.
    table: Option<(TableOptions, &'a Printers)>,
    headers_sent: bool,
}

impl Encoder<'_> {
    fn render(&mut self, ev: &WatchEvent) -> Option<Bytes> {
        let event_type = visible_type(ev, self.ns, self.labels, self.fields)?;
        if let Some((opts, printers)) = self.table {
            let table = printers.object(ev.kind, &ev.object(), opts, !self.headers_sent);
            self.headers_sent = true;
            return Some(event_line(event_type, &table));
        }
        if event_type == ev.event_type.as_str() {
            Some(ev.line())
        } else {
            Some(line_around(event_type, &ev.json))
        }
    }
}

fn watch_response(
    st: &Arc<ServerState>,
    kind: &ResourceKind,
    t: &Target,
    q: &Query,
    table: Option<TableOptions>,
    read: ReadAt,
) -> Result<Response, ApiError> {
    let opts = list_options(q)?;
    let send_initial = q.flag("sendInitialEvents");
    let (from_rv, initial_at) = match read {
        ReadAt::NotOlderThan(rv) | ReadAt::Exact(rv) if send_initial => (None, Some(rv)),
        ReadAt::NotOlderThan(rv) | ReadAt::Exact(rv) => (Some(rv), None),
        ReadAt::Latest | ReadAt::Any => (None, None),
    };
    // A watch-list's initial state must be at least `initial_at`: if the lab is not there yet the subscription is
    // taken in the stream after the watch cache's wait.
    let wait_for = initial_at.filter(|rv| *rv > st.store.resource_version());
    let bookmarks = q.flag("allowWatchBookmarks");
    let faults = st.faults.config();
    let mut timeout = match q.get("timeoutSeconds").and_then(|s| s.parse::<u64>().ok()) {
        Some(s) => Duration::from_secs(s),
        None => Duration::from_secs(1800),
    };
    if let Some(cut) = faults.watch_cut_every {
        timeout = timeout.min(cut);
    }
    let sub = if faults.gone_on_resume && from_rv.is_some() {
        Some(Err(ApiError::Gone {
            message: "too old resource version (injected fault)".to_string(),
        }))
    } else if wait_for.is_some() {
        None
    } else {
        Some(st.store.watch(t.kind, t.namespace.as_deref(), from_rv))
    };
    let kind = kind.clone();
    let ns = t.namespace.clone();
    let store = st.store.clone();
    let shutdown = st.shutdown.clone();
    let mut cut = st.faults.cut_signal();
    let bookmark_every = st.bookmark_interval;
    let kind_id = t.kind;
    let state = st.clone();
    let stream = async_stream::stream! {
        let mut encoder = Encoder {
            ns: ns.as_deref(),
            labels: &opts.label_selector,
            fields: &opts.field_selector,
            table: table.map(|o| (o, state.printers())),
            headers_sent: false,
        };
        let sub = match (sub, wait_for) {
            (Some(sub), _) => sub,
            (None, Some(rv)) => {
                if !store.wait_for_rv(rv, TOO_LARGE_RV_WAIT).await {
                    // Past the watch cache's wait the watch-list ends with an in-stream 504.
                    let err = ApiError::TooLargeResourceVersion { requested: rv, current: store.resource_version() };
                    yield Ok::<Bytes, Infallible>(event_line("ERROR", &err.to_status()));
                    return;
                }
                store.watch(kind_id, ns.as_deref(), None)
            }
            (None, None) => store.watch(kind_id, ns.as_deref(), None),
        };
        let mut sub = match sub {
            Ok(s) => s,
            Err(e) => {
                yield Ok::<Bytes, Infallible>(gone_line(&e.to_string()));
                return;
            }
        };
        let mut last_rv = from_rv.unwrap_or(0);
        for ev in std::mem::take(&mut sub.initial) {
            last_rv = last_rv.max(ev.rv);
            if let Some(line) = encoder.render(&ev) {
                yield Ok(line);
            }
        }
        last_rv = last_rv.max(sub.start_rv);
        if send_initial && bookmarks {
            yield Ok(bookmark(&kind, sub.start_rv, true));
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + bookmark_every, bookmark_every);
        loop {
            tokio::select! {
                _ = &mut deadline => break,
                _ = shutdown.cancelled() => break,
                _ = cut.changed() => break,
                _ = ticker.tick(), if bookmarks => {
                    // Every event with rv <= `progress` is already in our receiver: drain it, then promise `progress`.
                    let progress = store.resource_version();
                    let mut lagged = false;
                    loop {
                        match sub.receiver.try_recv() {
                            Ok(ev) => {
                                if ev.rv > last_rv {
                                    last_rv = ev.rv;
                                    if let Some(line) = encoder.render(&ev) {
                                        yield Ok(line);
                                    }
                                }
                            }
                            Err(TryRecvError::Empty) => break,
                            Err(_) => { lagged = true; break; }
                        }
                    }
                    if lagged { break; }
                    last_rv = last_rv.max(progress);
                    yield Ok(bookmark(&kind, last_rv, false));
                }
                r = sub.receiver.recv() => match r {
                    Ok(ev) => {
                        if ev.kind == kind_id && ev.rv > last_rv {
                            last_rv = ev.rv;
                            if let Some(line) = encoder.render(&ev) {
                                yield Ok(line);
                            }
                        }
                    }
                    // A watcher that fell behind is closed, like a real server does; it resumes from its last rv.
                    Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => break,
                }
            }
        }
    };
    let content_type = table.map_or("application/json", |o| o.version.content_type());
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        Body::from_stream(stream),
    )
        .into_response())
}

fn version_info() -> Value {
    json!({
        "major": "1", "minor": "33", "gitVersion": crate::nodes::KUBE_VERSION, "gitCommit": "vmbgp-lab",
        "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "n/a (vmbgp lab)",
        "compiler": "rustc", "platform": format!("linux/{}", crate::nodes::go_arch(std::env::consts::ARCH))
    })
}

fn group_object(store: &Store, group: &str) -> Option<Value> {
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

fn group_list(store: &Store) -> Value {
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
fn aggregated_discovery(headers: &HeaderMap) -> Option<&'static str> {
    let accept = headers.get(header::ACCEPT)?.to_str().ok()?;
    let mut ranges: Vec<(f32, Option<&'static str>)> = Vec::new();
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default().to_ascii_lowercase();
        if !matches!(media.as_str(), "application/json" | "application/*" | "*/*") {
            continue;
        }
        let (mut q, mut g, mut v, mut as_) = (1.0f32, None, None, None);
        for p in parts {
            match p.split_once('=') {
                Some(("q", x)) => q = x.parse().unwrap_or(0.0),
                Some(("g", x)) => g = Some(x),
                Some(("v", x)) => v = Some(x),
                Some(("as", x)) => as_ = Some(x),
                _ => {}
            }
        }
        let wanted = match (g, as_) {
            (None, None) => None,
            (Some("apidiscovery.k8s.io"), Some("APIGroupDiscoveryList")) => {
                match AGGREGATED_DISCOVERY.iter().find(|a| Some(**a) == v) {
                    Some(a) => Some(*a),
                    None => continue,
                }
            }
            _ => continue,
        };
        if q > 0.0 {
            ranges.push((q, wanted));
        }
    }
    // A stable sort keeps the client's order among equal q.
    ranges.sort_by(|a, b| b.0.total_cmp(&a.0));
    ranges.first().and_then(|(_, wanted)| *wanted)
}

/// `/api` (`core`) or `/apis` as an `APIGroupDiscoveryList`: every group, its versions (preferred first) and
/// their resources with scope, verbs, short names and subresources, in one document.
fn discovery_v2(store: &Store, core: bool, version: &str) -> Response {
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
                                "singularResource": k.singular(),
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

fn resource_list_response(store: &Store, group: &str, version: &str) -> Response {
    let kinds = store.registry().in_group_version(group, version);
    if kinds.is_empty() {
        return error_response(&ApiError::UnknownResource);
    }
    let mut resources = Vec::new();
    for k in kinds {
        resources.push(json!({
            "name": k.plural, "singularName": k.singular(), "namespaced": k.namespaced, "kind": k.kind,
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
