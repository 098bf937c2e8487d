//! Reading a request: its query string and read/write/list/table options, the path it targets, and its body.

use axum::body::Bytes;
use axum::http::{HeaderMap, header};
use serde_json::Value;

use crate::error::{ApiError, Cause};
use crate::registry::{KindId, ResourceKind};
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{FieldValidation, ListOptions, Store, WriteOptions};
use crate::table::{IncludeObject, TableOptions};

/// Parsed query string (kube sends `?&a=b`: empty pairs are ignored).
#[derive(Debug, Default)]
pub(super) struct Query(Vec<(String, String)>);

impl Query {
    pub(super) fn parse(q: Option<&str>) -> Self {
        Query(
            url::form_urlencoded::parse(q.unwrap_or_default().as_bytes())
                .filter(|(k, _)| !k.is_empty())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    pub(super) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Go's `strconv.ParseBool` rules (the Python client sends `True`).
    pub(super) fn flag(&self, key: &str) -> bool {
        matches!(
            self.get(key).map(str::to_ascii_lowercase).as_deref(),
            Some("1" | "t" | "true")
        )
    }
}

/// Which object(s) a resource path addresses.
#[derive(Debug)]
pub(super) struct Target {
    pub(super) kind: KindId,
    pub(super) namespace: Option<String>,
    pub(super) name: Option<String>,
    pub(super) subresource: Option<String>,
}

/// Which state a read sees, from its `resourceVersion` and `resourceVersionMatch`
/// (<https://kubernetes.io/docs/reference/using-api/api-concepts/#semantics-for-get-and-list>).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ReadAt {
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
pub(super) fn read_at(q: &Query, target: &Target) -> Result<ReadAt, ApiError> {
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

pub(super) fn resolve(store: &Store, segments: &[&str]) -> Option<Target> {
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

pub(super) fn write_options(q: &Query) -> Result<WriteOptions, ApiError> {
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
pub(super) fn decode_object(
    kind: &ResourceKind,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Value, ApiError> {
    let custom = !kind.is_built_in();
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

pub(super) fn parse_json(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest {
        message: format!("invalid JSON body: {e}"),
    })
}

pub(super) fn content_type(headers: &HeaderMap) -> String {
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

pub(super) fn list_options(q: &Query) -> Result<ListOptions, ApiError> {
    let label_selector =
        LabelSelector::parse(q.get("labelSelector").unwrap_or_default()).map_err(|e| {
            ApiError::BadRequest {
                message: format!("unable to parse requirement: {}", e.reason),
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

/// The Table a GET asks for with its `Accept` header (kubectl's server-side printing), if any.
pub(super) fn table_options(
    headers: &HeaderMap,
    q: &Query,
) -> Result<Option<TableOptions>, ApiError> {
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
