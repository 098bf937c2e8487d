//! The reporters' side of one run: `RunRecorder::start` writes a provisional `jobSummary`,
//! `record` turns each batch of samples into documents on disk at once, and `finish` adds the
//! quantile documents, evaluates thresholds, writes the final `jobSummary`, the summary table
//! and the HTML report.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::document::{Document, DocumentError, QuantileDocument};
use crate::document_builder::{DocumentBuilder, JobStatus, job_summary};
use crate::local::{LocalError, LocalResults, REPORT_FILE, SUMMARY_FILE, load_documents};
use crate::redact::Redactor;
use crate::report::{RunView, render_html, render_summary};
use crate::samples::{RunDescription, Samples};
use crate::thresholds::{Threshold, ThresholdReport, evaluate_thresholds, skip_thresholds};

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("writing local results")]
    Local(#[from] LocalError),
    #[error("building a document")]
    Document(#[from] DocumentError),
}

/// How the run ended, as the harness saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunEnd {
    pub end: DateTime<Utc>,
    pub elapsed: Duration,
    /// Harness-side failures (timeouts, interrupt, failed phases); each fails the run.
    pub execution_errors: Vec<String>,
    /// Why the run stopped before it finished measuring (a signal, the global timeout), if it did:
    /// its thresholds are then skipped with that reason, since partial data proves nothing.
    pub cut_short: Option<String>,
}

/// What `finish` produced.
#[derive(Debug, Clone)]
pub struct RunResults {
    pub dir: PathBuf,
    pub passed: bool,
    pub thresholds: ThresholdReport,
    /// The summary table printed at the end of the run (also in `summary.txt`).
    pub summary: String,
    pub report_path: PathBuf,
    pub documents: usize,
}

/// Writes one run's documents as the run goes.
#[derive(Debug)]
pub struct RunRecorder {
    run: RunDescription,
    builder: DocumentBuilder,
    results: LocalResults,
    redactor: Redactor,
}

impl RunRecorder {
    /// Creates `<results_root>/<uuid>/` and writes a provisional `jobSummary` (passed: false,
    /// "run did not finish"), so a killed run is recognisable. `redactor` should carry the ES
    /// client's secrets (`EsClient::redactor`) when indexing is configured.
    pub fn start(
        results_root: &Path,
        mut run: RunDescription,
        redactor: Redactor,
    ) -> Result<Self, RecordError> {
        redactor.redact_value(&mut run.job_config);
        for value in run.workload_flags.values_mut() {
            *value = redactor.redact(value).into_owned();
        }
        let mut results = LocalResults::open(results_root, &run.uuid, redactor.clone())?;
        results.write(vec![job_summary(&run, &JobStatus::in_progress())?])?;
        Ok(RunRecorder {
            builder: DocumentBuilder::new(&run),
            run,
            results,
            redactor,
        })
    }

    pub fn dir(&self) -> &Path {
        self.results.dir()
    }

    /// Cluster facts learned while the run went (e.g. the external router's FRR version from the
    /// BMP Initiation message); the final `jobSummary` carries them.
    pub fn cluster_mut(&mut self) -> &mut crate::samples::ClusterMetadata {
        &mut self.run.cluster
    }

    /// Writes the per-object documents of a batch of samples now (crash-safe).
    pub fn record(&mut self, samples: &Samples) -> Result<(), RecordError> {
        if samples.is_empty() {
            return Ok(());
        }
        let documents = self.builder.add(samples)?;
        self.results.write(documents)?;
        Ok(())
    }

    /// Quantile documents, thresholds, final `jobSummary` (passed = no execution error and no
    /// violated threshold), `summary.txt` and `report.html`.
    pub fn finish(
        mut self,
        end: &RunEnd,
        thresholds: &[Threshold],
    ) -> Result<RunResults, RecordError> {
        let quantile_documents = self.builder.quantile_documents(end.end)?;
        self.results.write(quantile_documents.clone())?;
        let quantiles: Vec<QuantileDocument> = quantile_documents
            .iter()
            .filter_map(QuantileDocument::from_document)
            .collect();
        let threshold_report = match &end.cut_short {
            Some(why) => skip_thresholds(thresholds, why),
            None => evaluate_thresholds(thresholds, &quantiles),
        };
        let mut execution_errors: Vec<String> = end
            .execution_errors
            .iter()
            .map(|e| self.redactor.redact(e).into_owned())
            .collect();
        execution_errors.extend(threshold_report.execution_errors());
        let passed = execution_errors.is_empty();
        let status = JobStatus {
            end: Some(end.end),
            elapsed: Some(end.elapsed),
            passed,
            execution_errors,
        };
        self.results.write(vec![job_summary(&self.run, &status)?])?;
        let documents: Vec<Document> = self.results.documents();
        let view = RunView::new(&documents);
        let summary = render_summary(&view, &threshold_report);
        self.results.write_text(SUMMARY_FILE, &summary)?;
        let html = render_html(&view, &threshold_report);
        let report_path = self.results.write_text(REPORT_FILE, &html)?;
        Ok(RunResults {
            dir: self.results.dir().to_owned(),
            passed,
            thresholds: threshold_report,
            summary,
            report_path,
            documents: documents.len(),
        })
    }
}

/// Re-renders `summary.txt` and `report.html` of a saved results directory (e.g. after
/// `index`, or with other thresholds) without touching its documents. `passed` is the saved
/// `jobSummary`'s verdict combined with `thresholds` evaluated on the saved quantiles.
pub fn render_saved_results(
    dir: &Path,
    thresholds: &[Threshold],
    redactor: &Redactor,
) -> Result<RunResults, RecordError> {
    let documents = load_documents(dir)?;
    let quantiles: Vec<QuantileDocument> = documents
        .iter()
        .filter_map(QuantileDocument::from_document)
        .collect();
    let threshold_report = evaluate_thresholds(thresholds, &quantiles);
    let view = RunView::new(&documents);
    let saved_passed = view
        .job_summary
        .and_then(|d| d.body().get("passed"))
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    let summary = render_summary(&view, &threshold_report);
    let html = render_html(&view, &threshold_report);
    let write = |file: &str, text: &str| -> Result<PathBuf, RecordError> {
        let path = dir.join(file);
        crate::local::write_atomically(&path, redactor.redact(text).as_bytes())?;
        Ok(path)
    };
    write(SUMMARY_FILE, &summary)?;
    let report_path = write(REPORT_FILE, &html)?;
    Ok(RunResults {
        dir: dir.to_owned(),
        passed: saved_passed && threshold_report.passed(),
        thresholds: threshold_report,
        summary,
        report_path,
        documents: documents.len(),
    })
}
