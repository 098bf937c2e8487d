//! Human output of a run: the summary table printed at the end (comfy-table) and the
//! self-contained HTML report with inline SVG plots (plotters), both rendered from the run's
//! documents so they can be regenerated from `results/<uuid>/` alone.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use comfy_table::{ContentArrangement, Table, presets};
use minijinja::{Environment, context};
use serde::Serialize;
use serde_json::Value;

use crate::document::{self, Document, QuantileDocument};
use crate::plots;
use crate::thresholds::{ThresholdReport, ThresholdVerdict};

/// The documents of one run, grouped for rendering.
#[derive(Debug)]
pub struct RunView<'a> {
    pub job_summary: Option<&'a Document>,
    pub quantiles: Vec<QuantileDocument>,
    pub by_metric: BTreeMap<&'a str, Vec<&'a Document>>,
}

impl<'a> RunView<'a> {
    pub fn new(documents: &'a [Document]) -> Self {
        let mut by_metric: BTreeMap<&str, Vec<&Document>> = BTreeMap::new();
        for document in documents {
            by_metric
                .entry(document.metric_name())
                .or_default()
                .push(document);
        }
        let quantiles = documents
            .iter()
            .filter_map(QuantileDocument::from_document)
            .collect();
        RunView {
            job_summary: by_metric
                .get(document::JOB_SUMMARY)
                .and_then(|d| d.first().copied()),
            quantiles,
            by_metric,
        }
    }

    pub fn documents(&self, metric: &str) -> &[&'a Document] {
        self.by_metric.get(metric).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The run's start (jobSummary `timestamp`), the origin of every timeline.
    pub fn start(&self) -> Option<DateTime<Utc>> {
        self.job_summary
            .and_then(|d| d.text("timestamp"))
            .and_then(parse_time)
    }

    fn summary_text(&self, field: &str) -> String {
        match self.job_summary.and_then(|d| d.body().get(field)) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => "-".to_owned(),
            Some(other) => other.to_string(),
        }
    }

    fn passed(&self) -> bool {
        self.job_summary
            .and_then(|d| d.body().get("passed"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }
}

pub(crate) fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// A statistic for a table cell: the number, or `-` where there is none (never 0).
fn cell(value: Option<f64>) -> String {
    match value {
        Some(v) => format_number(v),
        None => "-".to_owned(),
    }
}

pub(crate) fn format_number(value: f64) -> String {
    let text = format!("{value:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".to_owned()
    } else {
        text.to_owned()
    }
}

fn quantile_note(q: &QuantileDocument) -> String {
    if q.is_not_applicable() {
        format!(
            "not applicable: {}",
            q.not_applicable
                .values()
                .next()
                .cloned()
                .unwrap_or_default()
        )
    } else if q.count == 0 {
        format!(
            "missing: {}",
            q.missing.values().next().cloned().unwrap_or_default()
        )
    } else if q.missing_count > 0 {
        let reasons: Vec<String> = q
            .missing_reasons
            .iter()
            .map(|(r, n)| format!("{r} ({n})"))
            .collect();
        format!("{} missing: {}", q.missing_count, reasons.join("; "))
    } else {
        String::new()
    }
}

fn short_metric(metric: &str) -> &str {
    metric
        .strip_suffix("QuantilesMeasurement")
        .unwrap_or(metric)
}

fn verdict_words(verdict: &ThresholdVerdict) -> (&'static str, &'static str) {
    match verdict {
        ThresholdVerdict::Passed { .. } => ("passed", "pass"),
        ThresholdVerdict::Violated { .. } => ("VIOLATED", "fail"),
        ThresholdVerdict::Unobserved { .. } => ("VIOLATED (unobserved)", "fail"),
        ThresholdVerdict::UnknownQuantile => ("VIOLATED (unknown quantile)", "fail"),
        ThresholdVerdict::NotApplicable { .. } => ("not applicable", "na"),
        ThresholdVerdict::Skipped { .. } => ("skipped", "na"),
    }
}

fn verdict_detail(verdict: &ThresholdVerdict) -> String {
    match verdict {
        ThresholdVerdict::Passed { value, unit } | ThresholdVerdict::Violated { value, unit } => {
            format!("{} {unit}", format_number(*value))
        }
        ThresholdVerdict::Unobserved { reason }
        | ThresholdVerdict::NotApplicable { reason }
        | ThresholdVerdict::Skipped { reason } => reason.clone(),
        ThresholdVerdict::UnknownQuantile => "no such quantile in this run".to_owned(),
    }
}

/// The end-of-run summary: run header, one row per quantile document, thresholds, egress.
pub fn render_summary(view: &RunView<'_>, thresholds: &ThresholdReport) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "run {} job {}: {}\n",
        view.summary_text("uuid"),
        view.summary_text("jobName"),
        if view.passed() { "PASSED" } else { "FAILED" }
    ));
    let mut table = Table::new();
    table
        .load_style(presets::ASCII_MARKDOWN)
        .force_no_tty()
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(vec![
            "metric",
            "quantile",
            "count",
            "missing",
            "P50",
            "P95",
            "P99",
            "max",
            "unit",
            "resolution",
            "note",
        ]);
    for q in &view.quantiles {
        table.add_row(vec![
            short_metric(&q.metric_name).to_owned(),
            q.quantile_name.clone(),
            q.count.to_string(),
            q.missing_count.to_string(),
            cell(q.p50),
            cell(q.p95),
            cell(q.p99),
            cell(q.max),
            q.unit.clone(),
            cell(q.resolution),
            quantile_note(q),
        ]);
    }
    out.push_str(&table.to_string());
    out.push('\n');
    if !thresholds.results.is_empty() {
        let mut table = Table::new();
        table
            .load_style(presets::ASCII_MARKDOWN)
            .force_no_tty()
            .set_content_arrangement(ContentArrangement::Disabled)
            .set_header(vec!["threshold", "verdict", "detail"]);
        for result in &thresholds.results {
            table.add_row(vec![
                result.threshold.to_string(),
                verdict_words(&result.verdict).0.to_owned(),
                verdict_detail(&result.verdict),
            ]);
        }
        out.push_str(&table.to_string());
        out.push('\n');
    }
    let egress = view.documents(document::VM_EGRESS);
    if !egress.is_empty() {
        let un_nated = egress
            .iter()
            .filter(|d| d.body().get("unNATed") == Some(&Value::Bool(true)))
            .count();
        let nated = egress
            .iter()
            .filter(|d| d.body().get("unNATed") == Some(&Value::Bool(false)))
            .count();
        out.push_str(&format!(
            "egress: {un_nated} of {} VMs seen unNATed, {nated} NATed, {} not observed\n",
            egress.len(),
            egress.len() - un_nated - nated
        ));
    }
    if let Some(errors) = view.job_summary.and_then(|d| d.text("executionErrors")) {
        out.push_str(&format!("execution errors: {errors}\n"));
    }
    out
}

#[derive(Serialize)]
struct QuantileRow {
    metric: String,
    quantile: String,
    count: u64,
    missing: u64,
    p50: String,
    p95: String,
    p99: String,
    max: String,
    unit: String,
    resolution: String,
    note: String,
}

#[derive(Serialize)]
struct ThresholdRow {
    name: String,
    verdict: &'static str,
    class: &'static str,
    detail: String,
}

#[derive(Serialize)]
struct UnobservedRow {
    document: String,
    field: String,
    state: &'static str,
    reason: String,
}

/// Rows of the "unobserved values" table beyond this are counted, not listed.
const UNOBSERVED_ROWS: usize = 500;

fn document_label(document: &Document) -> String {
    let body = document.body();
    let part = |k: &str| {
        body.get(k).map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    };
    let identity: Vec<String> = [
        "namespace",
        "vmName",
        "prefix",
        "peerAddress",
        "quantileName",
        "jobIteration",
    ]
    .iter()
    .filter_map(|k| part(k).map(|v| format!("{k}={v}")))
    .collect();
    format!("{} {}", document.metric_name(), identity.join(" "))
}

/// The self-contained HTML report: no scripts, no external stylesheets, fonts or images.
pub fn render_html(view: &RunView<'_>, thresholds: &ThresholdReport) -> String {
    let quantiles: Vec<QuantileRow> = view
        .quantiles
        .iter()
        .map(|q| QuantileRow {
            metric: short_metric(&q.metric_name).to_owned(),
            quantile: q.quantile_name.clone(),
            count: q.count,
            missing: q.missing_count,
            p50: cell(q.p50),
            p95: cell(q.p95),
            p99: cell(q.p99),
            max: cell(q.max),
            unit: q.unit.clone(),
            resolution: cell(q.resolution),
            note: quantile_note(q),
        })
        .collect();
    let threshold_rows: Vec<ThresholdRow> = thresholds
        .results
        .iter()
        .map(|r| {
            let (verdict, class) = verdict_words(&r.verdict);
            ThresholdRow {
                name: r.threshold.to_string(),
                verdict,
                class,
                detail: verdict_detail(&r.verdict),
            }
        })
        .collect();
    let mut unobserved = Vec::new();
    let mut total_unobserved = 0usize;
    for documents in view.by_metric.values() {
        for document in documents {
            if document::is_quantile_metric(document.metric_name()) {
                continue;
            }
            for (key, state) in [("missing", "missing"), ("notApplicable", "not applicable")] {
                if let Some(Value::Object(map)) = document.body().get(key) {
                    for (field, reason) in map {
                        total_unobserved += 1;
                        if unobserved.len() < UNOBSERVED_ROWS {
                            unobserved.push(UnobservedRow {
                                document: document_label(document),
                                field: field.clone(),
                                state,
                                reason: reason.as_str().unwrap_or_default().to_owned(),
                            });
                        }
                    }
                }
            }
        }
    }
    let errors: Vec<String> = view
        .job_summary
        .and_then(|d| d.text("executionErrors"))
        .map(|e| e.split("; ").map(str::to_owned).collect())
        .unwrap_or_default();
    let cluster = format!(
        "Kubernetes {}, KubeVirt {}, {} nodes, FRR {}, mode {}",
        view.summary_text("k8sVersion"),
        view.summary_text("kubevirtVersion"),
        view.summary_text("totalNodes"),
        view.summary_text("frrVersion"),
        view.summary_text("advertisementMode"),
    );
    let iterations = view
        .job_summary
        .and_then(|d| d.body().pointer("/jobConfig/jobIterations"))
        .map(Value::to_string)
        .unwrap_or_else(|| "-".to_owned());
    let elapsed = view
        .job_summary
        .and_then(|d| d.number("elapsedTime"))
        .map(|s| format!("{} s", format_number(s)))
        .unwrap_or_else(|| "-".to_owned());
    let plots = plots::all_plots(view);
    let mut env = Environment::new();
    let rendered = env
        .add_template("report.html", include_str!("../templates/report.html.j2"))
        .and_then(|()| env.get_template("report.html"))
        .and_then(|template| {
            template.render(context! {
                run => context! {
                    uuid => view.summary_text("uuid"),
                    jobName => view.summary_text("jobName"),
                    passed => view.passed(),
                    start => view.summary_text("timestamp"),
                    end => view.summary_text("endTimestamp"),
                    elapsed => elapsed,
                    version => view.summary_text("version"),
                    iterations => iterations,
                    cluster => cluster,
                    errors => errors,
                },
                thresholds => minijinja::value::Serde(&threshold_rows),
                quantiles => minijinja::value::Serde(&quantiles),
                plots => minijinja::value::Serde(&plots),
                unobserved => minijinja::value::Serde(&unobserved),
                unobserved_truncated => total_unobserved.saturating_sub(UNOBSERVED_ROWS),
            })
        });
    match rendered {
        Ok(html) => html,
        // The template is compiled into the crate and covered by tests; should rendering still
        // fail, the report says so instead of leaving no file.
        Err(error) => format!(
            "<!DOCTYPE html><html><body><p>report rendering failed: {}</p></body></html>",
            minijinja::HtmlEscape(&error.to_string())
        ),
    }
}
