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
    #[error("{kind} \"{name}\" is invalid: {}", causes.iter().map(|c| format!("{}: {}", c.field, c.message)).collect::<Vec<_>>().join(", "))]
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
        }
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
            _ => None,
        };
        if let Some(d) = details {
            status["details"] = d;
        }
        status
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
}
