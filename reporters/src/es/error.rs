//! Why talking to Elasticsearch, or indexing a results directory into it, failed.

use std::path::PathBuf;

use super::GaveUp;
use crate::local::LocalError;

#[derive(Debug, thiserror::Error)]
pub enum EsError {
    #[error("invalid Elasticsearch URL `{url}`: {problem}")]
    InvalidUrl { url: String, problem: String },
    #[error("invalid index name `{index}`: {problem}")]
    InvalidIndex { index: String, problem: String },
    #[error("reading CA file {path}")]
    ReadCaFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("CA file {path} holds no usable PEM certificate: {problem}")]
    InvalidCaFile { path: PathBuf, problem: String },
    #[error("building the HTTP client")]
    BuildClient(#[source] reqwest::Error),
    /// Connection errors, timeouts, 429 or 5xx until the deadline passed (or the attempts ran
    /// out): the server is down or unreachable, not refusing.
    #[error("{url} did not answer successfully: {gave_up}")]
    Unavailable { url: String, gave_up: GaveUp },
    #[error("health check of {url} failed: {problem}")]
    Health { url: String, problem: String },
    #[error("creating index `{index}` on {url} failed: {problem}")]
    CreateIndex {
        url: String,
        index: String,
        problem: String,
    },
    #[error("reading index template {path}")]
    ReadTemplate {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("index template {path} is not JSON")]
    ParseTemplate {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("installing index template on {url} failed: {problem}")]
    InstallTemplate { url: String, problem: String },
    #[error("searching run {uuid} on {url} failed: {problem}")]
    Search {
        url: String,
        uuid: String,
        problem: String,
    },
}

impl EsError {
    /// The server could not be reached or kept failing (connection errors, timeouts, 429, 5xx)
    /// until the deadline: an unavailable environment, not a refusal or bad input.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, EsError::Unavailable { .. })
    }
}

/// Why `index_saved_results` could not index a results directory.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// Not a results directory (missing, not a directory, no `jobSummary.json`): refused before
    /// anything is contacted.
    #[error("results directory {path} {problem}")]
    InvalidDir { path: PathBuf, problem: String },
    /// A document file that cannot be read or parsed; nothing is uploaded.
    #[error("{path} is not a usable results directory")]
    Local {
        path: PathBuf,
        #[source]
        source: LocalError,
    },
    /// The server was unavailable or refused the index; the documents stay on disk.
    #[error(transparent)]
    Es(#[from] EsError),
}

impl IndexError {
    /// A problem of the directory given (bad input), not of the server.
    pub fn is_invalid_dir(&self) -> bool {
        !matches!(self, IndexError::Es(_))
    }
}
