//! Indexing a saved results directory: refuse what is not one before any server is contacted,
//! then upload every document.

use std::path::Path;

use super::{EsClient, IndexError, IndexOutcome};
use crate::document::{self, Document};
use crate::local::load_documents;

/// Reads a results directory for `index`, refusing anything that is not one before any server is
/// contacted: the path must exist and be a directory holding `jobSummary.json` with the run's
/// `jobSummary` document, and every document file must parse.
pub fn load_results_dir(dir: &Path) -> Result<Vec<Document>, IndexError> {
    let invalid = |problem: String| IndexError::InvalidDir {
        path: dir.to_owned(),
        problem,
    };
    let metadata = std::fs::metadata(dir).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => invalid("does not exist".to_owned()),
        _ => invalid(format!("cannot be read: {e}")),
    })?;
    if !metadata.is_dir() {
        return Err(invalid(
            "is not a directory (expected results/<uuid>/ as a run writes it)".to_owned(),
        ));
    }
    let summary = dir.join(document::JOB_SUMMARY_FILE);
    if !summary.is_file() {
        return Err(invalid(format!(
            "holds no {}: not a results directory written by a run",
            document::JOB_SUMMARY_FILE
        )));
    }
    let documents = load_documents(dir).map_err(|source| IndexError::Local {
        path: dir.to_owned(),
        source,
    })?;
    if !documents
        .iter()
        .any(|d| d.metric_name() == document::JOB_SUMMARY)
    {
        return Err(invalid(format!(
            "has a {} without a jobSummary document",
            document::JOB_SUMMARY_FILE
        )));
    }
    Ok(documents)
}

/// Uploads a results directory (`vmbgp-bench index results/<uuid>`, and the end of a run): the
/// directory is checked first ([`load_results_dir`]), then [`EsClient::upload`] sends every
/// document under one deadline. What is "already present" is what the server says it already
/// had (item result `updated`), never a local record: a fresh server at the same URL gets every
/// document. Ids are deterministic, so uploading twice overwrites instead of duplicating.
pub async fn index_saved_results(
    dir: &Path,
    client: &EsClient,
) -> Result<IndexOutcome, IndexError> {
    let documents = load_results_dir(dir)?;
    Ok(client.upload(&documents).await?)
}
