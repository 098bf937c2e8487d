//! Errors: the typed failures of the lab's store, server and lifecycle, and their Kubernetes `Status` form.

use serde_json::{Value, json};

/// Why a store operation was refused. Each variant maps to the HTTP status and `Status.reason`
/// a real API server returns for the same situation.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum ApiError {
    #[error("{kind} \"{name}\" not found")]
    NotFound {
        group: String,
        kind: String,
        name: String,
    },
    #[error("{kind} \"{name}\" already exists")]
    AlreadyExists {
        group: String,
        kind: String,
        name: String,
    },
    #[error("Operation cannot be fulfilled on {kind} \"{name}\": {message}")]
    Conflict {
        group: String,
        kind: String,
        name: String,
        message: String,
    },
    #[error(
        "{} \"{name}\" is invalid: {}",
        qualified(kind, group),
        aggregate(causes)
    )]
    Invalid {
        group: String,
        kind: String,
        name: String,
        causes: Vec<Cause>,
    },
    #[error("{message}")]
    BadRequest { message: String },
    #[error("{message}")]
    Forbidden {
        group: String,
        kind: String,
        name: String,
        message: String,
    },
    #[error("the server could not find the requested resource")]
    UnknownResource,
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed,
    #[error(
        "the body of the request was in an unknown format - accepted media types include: {accepted}"
    )]
    UnsupportedMediaType { accepted: String },
    #[error("{message}")]
    Gone { message: String },
    #[error("{message}")]
    Internal { message: String },
    #[error("Too many requests, please try again later.")]
    TooManyRequests { retry_after_seconds: u64 },
    /// No or a wrong bearer token (`apierrors.NewUnauthorized("Unauthorized")`).
    #[error("Unauthorized")]
    Unauthorized,
    /// RBAC refused an anonymous request for a non-resource path (`responsewriters.Forbidden`).
    #[error("forbidden: User \"system:anonymous\" cannot {verb} path \"{path}\"")]
    ForbiddenPath { verb: String, path: String },
    /// A read asked for a resourceVersion the server has not reached within the watch cache's wait
    /// (`storage.NewTooLargeResourceVersionError`).
    #[error("Timeout: Too large resource version: {requested}, current: {current}")]
    TooLargeResourceVersion { requested: u64, current: u64 },
}

/// How long the watch cache waits for a resourceVersion it has not reached (`blockTimeout`).
pub const TOO_LARGE_RV_WAIT: std::time::Duration = std::time::Duration::from_secs(3);
/// The retry hint of a too-large-resourceVersion answer (`resourceVersionTooHighRetrySeconds`).
pub const TOO_LARGE_RV_RETRY_SECONDS: u64 = 1;

/// `Kind.group` (`qualifiedKind.String()`); just the kind for the core group.
fn qualified(kind: &str, group: &str) -> String {
    if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    }
}

/// `field.ErrorList.ToAggregate()`: one error as is, several in brackets.
fn aggregate(causes: &[Cause]) -> String {
    let errs: Vec<String> = causes
        .iter()
        .map(|c| format!("{}: {}", c.field, c.message))
        .collect();
    match errs.as_slice() {
        [one] => one.clone(),
        _ => format!("[{}]", errs.join(", ")),
    }
}

/// One entry of `Status.details.causes[]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    pub field: String,
    pub reason: String,
    pub message: String,
}

impl ApiError {
    /// The HTTP status code a real API server uses for this failure.
    pub fn code(&self) -> u16 {
        match self {
            ApiError::NotFound { .. } | ApiError::UnknownResource => 404,
            ApiError::AlreadyExists { .. } | ApiError::Conflict { .. } => 409,
            ApiError::Invalid { .. } => 422,
            ApiError::BadRequest { .. } => 400,
            ApiError::Forbidden { .. } => 403,
            ApiError::MethodNotAllowed => 405,
            ApiError::UnsupportedMediaType { .. } => 415,
            ApiError::Gone { .. } => 410,
            ApiError::Internal { .. } => 500,
            ApiError::TooManyRequests { .. } => 429,
            ApiError::Unauthorized => 401,
            ApiError::ForbiddenPath { .. } => 403,
            ApiError::TooLargeResourceVersion { .. } => 504,
        }
    }

    /// The `Retry-After` a real server sends with this failure (it copies `details.retryAfterSeconds`).
    pub fn retry_after_seconds(&self) -> Option<u64> {
        match self {
            ApiError::TooManyRequests {
                retry_after_seconds,
            } => Some(*retry_after_seconds),
            ApiError::TooLargeResourceVersion { .. } => Some(TOO_LARGE_RV_RETRY_SECONDS),
            _ => None,
        }
        .filter(|s| *s > 0)
    }

    /// The `Status.reason` string.
    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::NotFound { .. } | ApiError::UnknownResource => "NotFound",
            ApiError::AlreadyExists { .. } => "AlreadyExists",
            ApiError::Conflict { .. } => "Conflict",
            ApiError::Invalid { .. } => "Invalid",
            ApiError::BadRequest { .. } => "BadRequest",
            ApiError::Forbidden { .. } => "Forbidden",
            ApiError::MethodNotAllowed => "MethodNotAllowed",
            ApiError::UnsupportedMediaType { .. } => "UnsupportedMediaType",
            ApiError::Gone { .. } => "Expired",
            ApiError::Internal { .. } => "InternalError",
            ApiError::TooManyRequests { .. } => "TooManyRequests",
            ApiError::Unauthorized => "Unauthorized",
            ApiError::ForbiddenPath { .. } => "Forbidden",
            ApiError::TooLargeResourceVersion { .. } => "Timeout",
        }
    }

    /// The `Status` object (apiVersion v1, kind Status) a real server sends for this failure.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
            "code": self.code(),
        });
        let details = match self {
            ApiError::NotFound { group, kind, name }
            | ApiError::AlreadyExists { group, kind, name }
            | ApiError::Conflict {
                group, kind, name, ..
            }
            | ApiError::Forbidden {
                group, kind, name, ..
            } => Some(json!({"name": name, "group": group, "kind": kind})),
            ApiError::Invalid {
                group,
                kind,
                name,
                causes,
            } => Some(json!({
                "name": name, "group": group, "kind": kind,
                "causes": causes.iter().map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field})).collect::<Vec<_>>(),
            })),
            ApiError::TooManyRequests {
                retry_after_seconds,
            } => Some(json!({"retryAfterSeconds": retry_after_seconds})),
            // StatusDetails with every field empty: serialized as `{}`.
            ApiError::ForbiddenPath { .. } => Some(json!({})),
            ApiError::TooLargeResourceVersion { .. } => Some(json!({
                "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
                "retryAfterSeconds": TOO_LARGE_RV_RETRY_SECONDS,
            })),
            _ => None,
        };
        if let Some(mut d) = details {
            omit_empty(&mut d);
            status["details"] = d;
        }
        status
    }
}

/// Drops empty strings from `details` and its causes, as Go's `omitempty` does (a core-group NotFound has no
/// `group`, a ListOptions error no `name`, a cause without a field no `field`).
fn omit_empty(details: &mut Value) {
    let Some(map) = details.as_object_mut() else {
        return;
    };
    map.retain(|_, v| v.as_str() != Some(""));
    if let Some(causes) = map.get_mut("causes").and_then(Value::as_array_mut) {
        for cause in causes.iter_mut().filter_map(Value::as_object_mut) {
            cause.retain(|_, v| v.as_str() != Some(""));
        }
    }
}

/// Failures of starting, running or stopping the lab itself.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("binding the lab API server to {addr}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("writing the kubeconfig to {path}")]
    WriteKubeconfig {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("opening the ground-truth log {path}")]
    OpenGroundTruth {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("loading the embedded API schemas")]
    Schema(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("seeding the lab with {what}")]
    Seed {
        what: String,
        #[source]
        source: Box<ApiError>,
    },
    #[error("timed out after {waited:?} waiting for {what}")]
    WaitTimeout {
        what: String,
        waited: std::time::Duration,
    },
    #[error("the lab stopped while waiting for {what}")]
    Stopped { what: String },
    #[error("the API server task failed")]
    Serve(#[source] std::io::Error),
    #[error("invalid lab configuration: {0}")]
    Config(String),
    #[error("drawing the API bearer token from the OS random number generator: {0}")]
    Token(String),
    #[error("setting up TLS for the API server: {0}")]
    Tls(String),
}
