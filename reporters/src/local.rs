//! Local results: `results/<uuid>/` in kube-burner's local-indexer layout (`jobSummary.json`,
//! `<metricName>-<jobName>.json`, each a JSON array), written as the run goes. Every write goes to
//! a temporary file that is synced and then renamed over the old one, so a run killed at any
//! moment leaves complete files holding everything written before.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::document::{Document, DocumentError};
use crate::redact::Redactor;

/// Files in a results directory that are not document arrays.
pub const REPORT_FILE: &str = "report.html";
pub const SUMMARY_FILE: &str = "summary.txt";
/// Written by earlier versions to skip re-uploads; no longer written or read (the server decides
/// what it already has), and ignored when loading documents.
pub const INDEX_STATE_FILE: &str = "index-state.json";

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error(
        "run uuid `{uuid}` cannot name a results directory (use letters, digits, '-', '_', '.')"
    )]
    InvalidUuid { uuid: String },
    #[error("creating results directory {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a JSON array of documents")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("document in {path} cannot be identified")]
    Document {
        path: PathBuf,
        #[source]
        source: DocumentError,
    },
    #[error("serializing {file}")]
    Serialize {
        file: String,
        #[source]
        source: serde_json::Error,
    },
}

/// The results directory of one run, kept in memory per file so each append rewrites only the
/// files it touched.
#[derive(Debug)]
pub struct LocalResults {
    dir: PathBuf,
    redactor: Redactor,
    /// file name → documents in write order; a document with an id already present replaces it.
    files: BTreeMap<String, Vec<Document>>,
}

impl LocalResults {
    /// Opens (creating if needed) `<results_root>/<uuid>/`. Documents already there are kept, so
    /// a run resumed with the same uuid appends instead of losing them.
    pub fn open(results_root: &Path, uuid: &str, redactor: Redactor) -> Result<Self, LocalError> {
        let valid = !uuid.is_empty()
            && uuid != "."
            && uuid != ".."
            && uuid
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid {
            return Err(LocalError::InvalidUuid {
                uuid: uuid.to_owned(),
            });
        }
        let dir = results_root.join(uuid);
        fs::create_dir_all(&dir).map_err(|source| LocalError::CreateDir {
            path: dir.clone(),
            source,
        })?;
        let mut files: BTreeMap<String, Vec<Document>> = BTreeMap::new();
        for document in load_documents(&dir)? {
            files
                .entry(document.file_name())
                .or_default()
                .push(document);
        }
        Ok(LocalResults {
            dir,
            redactor,
            files,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Redacts and writes documents, replacing earlier versions with the same id.
    pub fn write(&mut self, documents: Vec<Document>) -> Result<(), LocalError> {
        let mut touched = Vec::new();
        for document in documents {
            let mut body = document.body().clone();
            self.redactor.redact_value(&mut body);
            let file = document.file_name();
            let document = Document::from_value(body).map_err(|source| LocalError::Document {
                path: self.dir.join(&file),
                source,
            })?;
            let list = self.files.entry(file.clone()).or_default();
            match list.iter_mut().find(|d| d.id() == document.id()) {
                Some(existing) => *existing = document,
                None => list.push(document),
            }
            if !touched.contains(&file) {
                touched.push(file);
            }
        }
        for file in touched {
            let bodies: Vec<&Value> = self.files[&file].iter().map(Document::body).collect();
            let mut text =
                serde_json::to_string_pretty(&bodies).map_err(|source| LocalError::Serialize {
                    file: file.clone(),
                    source,
                })?;
            text.push('\n');
            write_atomically(&self.dir.join(&file), text.as_bytes())?;
        }
        Ok(())
    }

    /// Writes a non-document file (summary, report), redacted, atomically.
    pub fn write_text(&self, file: &str, text: &str) -> Result<PathBuf, LocalError> {
        let path = self.dir.join(file);
        write_atomically(&path, self.redactor.redact(text).as_bytes())?;
        Ok(path)
    }

    /// Every document written so far, in file-name order then write order.
    pub fn documents(&self) -> Vec<Document> {
        self.files.values().flatten().cloned().collect()
    }
}

/// Writes `bytes` to a temporary file next to `path`, syncs it and renames it over `path`.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), LocalError> {
    let err = |source| LocalError::Write {
        path: path.to_owned(),
        source,
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.tmp-{}", std::process::id()));
    let written = fs::File::create(&tmp).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)
    });
    if let Err(source) = written {
        // A full or failing disk leaves no half-written temporary file behind.
        let _ = fs::remove_file(&tmp);
        return Err(err(source));
    }
    // Make the rename itself durable; not every filesystem supports syncing a directory, and
    // the data is already safe in the renamed file, so a failure here is not an error.
    if let Some(parent) = path.parent()
        && let Ok(dir) = fs::File::open(parent)
    {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// The directory kube-burner's `--local-indexing` writes: `collected-metrics-<uuid>`.
pub fn local_indexing_dir(uuid: &str) -> String {
    format!("collected-metrics-{uuid}")
}

/// kube-burner's local indexer layout: the document arrays of a results directory
/// (`jobSummary.json`, `<metricName>-<jobName>.json`) written again into `target`, which tools that
/// read kube-burner's local indexing (or its tarball import) expect. Returns the files written.
pub fn write_local_index(results: &Path, target: &Path) -> Result<Vec<PathBuf>, LocalError> {
    fs::create_dir_all(target).map_err(|source| LocalError::CreateDir {
        path: target.to_owned(),
        source,
    })?;
    let mut names: Vec<String> = fs::read_dir(results)
        .map_err(|source| LocalError::Read {
            path: results.to_owned(),
            source,
        })?
        .filter_map(|entry| entry.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| crate::document::is_document_file(n))
        .collect();
    names.sort();
    let mut written = Vec::new();
    for name in names {
        let from = results.join(&name);
        let to = target.join(&name);
        fs::copy(&from, &to).map_err(|source| LocalError::Write {
            path: to.clone(),
            source,
        })?;
        written.push(to);
    }
    Ok(written)
}

/// Reads every document array of a results directory (`jobSummary.json` and
/// `<metricName>-<jobName>.json`; other files are left alone), in file-name order.
pub fn load_documents(dir: &Path) -> Result<Vec<Document>, LocalError> {
    let read_err = |source| LocalError::Read {
        path: dir.to_owned(),
        source,
    };
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(read_err)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .is_some_and(|n| crate::document::is_document_file(&n))
        })
        .collect();
    paths.sort();
    let mut documents = Vec::new();
    for path in paths {
        let text = fs::read_to_string(&path).map_err(|source| LocalError::Read {
            path: path.clone(),
            source,
        })?;
        let bodies: Vec<Value> =
            serde_json::from_str(&text).map_err(|source| LocalError::Parse {
                path: path.clone(),
                source,
            })?;
        for body in bodies {
            documents.push(
                Document::from_value(body).map_err(|source| LocalError::Document {
                    path: path.clone(),
                    source,
                })?,
            );
        }
    }
    Ok(documents)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A write that fails (here the rename: a directory holds the name) leaves no temporary file.
    #[test]
    fn a_failed_write_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("summary.txt");
        fs::create_dir(&target).expect("dir");
        fs::write(target.join("keep"), "x").expect("file");
        assert!(write_atomically(&target, b"text").is_err());
        let names: Vec<String> = fs::read_dir(dir.path())
            .expect("dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["summary.txt".to_string()]);
    }

    #[test]
    fn local_indexing_copies_exactly_the_document_arrays() {
        let results = tempfile::tempdir().expect("tempdir");
        for (name, text) in [
            ("jobSummary.json", "[{}]"),
            ("vmiLatencyMeasurement-vm-bgp.json", "[]"),
            ("summary.txt", "table"),
            ("report.html", "<html>"),
        ] {
            fs::write(results.path().join(name), text).expect("write");
        }
        let target = results.path().join(local_indexing_dir("u-1"));
        let written = write_local_index(results.path(), &target).expect("local index");
        let names: Vec<String> = written
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        assert_eq!(
            names,
            ["jobSummary.json", "vmiLatencyMeasurement-vm-bgp.json"]
        );
        assert_eq!(
            fs::read_to_string(target.join("jobSummary.json")).expect("read"),
            "[{}]"
        );
        assert!(target.ends_with("collected-metrics-u-1"));
    }
    use crate::redact::Secret;
    use serde_json::json;

    fn doc(vm: &str, latency: f64) -> Document {
        Document::from_value(
            json!({"uuid":"run-1","metricName":"vmiLatencyMeasurement","jobName":"job",
            "namespace":"ns","vmName":vm,"jobIteration":0,"vmReadyLatency":latency,
            "note":"https://user:canary-pw@es.example:9200"}),
        )
        .unwrap()
    }

    #[test]
    fn appends_replace_by_id_and_survive_reopen() {
        let root = tempfile::tempdir().unwrap();
        let redactor = Redactor::new().with_secret(&Secret::new("canary-pw"));
        let mut results = LocalResults::open(root.path(), "run-1", redactor.clone()).unwrap();
        results
            .write(vec![doc("vm-1", 1.0), doc("vm-2", 2.0)])
            .unwrap();
        results.write(vec![doc("vm-1", 3.0)]).unwrap();
        let path = root.path().join("run-1/vmiLatencyMeasurement-job.json");
        let text = fs::read_to_string(&path).unwrap();
        assert!(!text.contains("canary-pw"), "{text}");
        let written: Vec<Value> = serde_json::from_str(&text).unwrap();
        assert_eq!(written.len(), 2);
        assert_eq!(written[0]["vmReadyLatency"], json!(3.0));
        assert_eq!(written[0]["note"], json!("https://***@es.example:9200"));
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(root.path().join("run-1"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec!["vmiLatencyMeasurement-job.json"]);
        let reopened = LocalResults::open(root.path(), "run-1", redactor).unwrap();
        assert_eq!(reopened.documents().len(), 2);
    }

    #[test]
    fn uuid_cannot_escape_the_results_root() {
        let root = tempfile::tempdir().unwrap();
        for bad in ["../x", "a/b", "", ".."] {
            assert!(matches!(
                LocalResults::open(root.path(), bad, Redactor::new()),
                Err(LocalError::InvalidUuid { .. })
            ));
        }
    }

    #[test]
    fn only_document_files_are_loaded() {
        let root = tempfile::tempdir().unwrap();
        let mut results = LocalResults::open(root.path(), "r", Redactor::new()).unwrap();
        results.write(vec![doc("vm-1", 1.0)]).unwrap();
        let dir = root.path().join("r");
        fs::write(dir.join("compare.json"), "{\"not\": \"documents\"}").unwrap();
        fs::write(dir.join(INDEX_STATE_FILE), "{}").unwrap();
        fs::write(dir.join(".vmiLatencyMeasurement-job.json.tmp-1"), "[").unwrap();
        assert_eq!(load_documents(&dir).unwrap().len(), 1);
    }

    #[test]
    fn a_corrupt_file_is_reported_not_ignored() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("r")).unwrap();
        fs::write(root.path().join("r/jobSummary.json"), "[{").unwrap();
        assert!(matches!(
            load_documents(&root.path().join("r")),
            Err(LocalError::Parse { .. })
        ));
    }
}
