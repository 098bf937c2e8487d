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
use crate::thresholds::{Side, Threshold, ThresholdReport, ThresholdResult, ThresholdVerdict};
use crate::units::{self, Shown};

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
        .strip_suffix(vmbgp_model::quantiles::QUANTILES_SUFFIX)
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
    p50: Shown,
    p95: Shown,
    p99: Shown,
    max: Shown,
    resolution: Shown,
    note: String,
}

/// Not-applicable quantile documents of one reason, folded into one line of the report.
#[derive(Debug, PartialEq, Serialize)]
pub(crate) struct FoldedQuantiles {
    pub reason: String,
    pub count: usize,
    /// The quantile names by metric: `routeConvergence: WithdrawFib, …; vmiLatency: PodReady`.
    pub quantiles: String,
}

/// Splits the quantile documents into those the table lists and the not-applicable ones,
/// folded into one line per reason (reasons in order, names in document order).
pub(crate) fn fold_not_applicable(
    quantiles: &[QuantileDocument],
) -> (Vec<&QuantileDocument>, Vec<FoldedQuantiles>) {
    let mut listed = Vec::new();
    let mut folded: BTreeMap<String, Vec<(String, Vec<String>)>> = BTreeMap::new();
    for q in quantiles {
        if !q.is_not_applicable() {
            listed.push(q);
            continue;
        }
        let reason = q
            .not_applicable
            .values()
            .next()
            .cloned()
            .unwrap_or_default();
        let metrics = folded.entry(reason).or_default();
        let metric = short_metric(&q.metric_name).to_owned();
        match metrics.iter_mut().find(|(m, _)| *m == metric) {
            Some((_, names)) => names.push(q.quantile_name.clone()),
            None => metrics.push((metric, vec![q.quantile_name.clone()])),
        }
    }
    let folded = folded
        .into_iter()
        .map(|(reason, metrics)| FoldedQuantiles {
            reason,
            count: metrics.iter().map(|(_, names)| names.len()).sum(),
            quantiles: metrics
                .iter()
                .map(|(metric, names)| format!("{metric}: {}", names.join(", ")))
                .collect::<Vec<_>>()
                .join("; "),
        })
        .collect();
    (listed, folded)
}

#[derive(Serialize)]
struct ThresholdRow {
    name: String,
    full: String,
    verdict: &'static str,
    class: &'static str,
    value: Shown,
    detail: String,
}

/// The verdict banner at the top of the report.
#[derive(Serialize)]
struct Banner {
    passed: bool,
    headline: String,
    failed: Vec<FailedThreshold>,
    errors: Vec<String>,
}

#[derive(Serialize)]
struct FailedThreshold {
    name: String,
    full: String,
    detail: String,
}

/// The unobserved values of one measurement, field, state and reason: how many objects, and
/// which (at most [`OBJECTS_PER_GROUP`] named).
#[derive(Debug, PartialEq, Serialize)]
pub(crate) struct UnobservedGroup {
    pub measurement: String,
    pub field: String,
    /// `missing` or `not applicable`.
    pub state: &'static str,
    pub reason: String,
    pub count: usize,
    /// Documents of this measurement in the run.
    pub of: usize,
    pub objects: Vec<String>,
    /// Objects beyond [`OBJECTS_PER_GROUP`], counted only.
    pub more: usize,
}

/// Objects named per unobserved group; the rest are counted (the JSON files have them all).
const OBJECTS_PER_GROUP: usize = 1000;

/// A short name for the object a document measured: `namespace/vmName`, the prefix, the peer.
fn object_label(document: &Document) -> String {
    let text = |k: &str| {
        document.body().get(k).map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    };
    if document.metric_name() == document::JOB_SUMMARY {
        return "run".to_owned();
    }
    if let (Some(namespace), Some(vm)) = (text("namespace"), text("vmName")) {
        return match text("migrationIndex") {
            Some(index) => format!("{namespace}/{vm} migration {index}"),
            None => format!("{namespace}/{vm}"),
        };
    }
    if let Some(prefix) = text("prefix") {
        return prefix;
    }
    if let Some(peer) = text("peerAddress") {
        return peer;
    }
    document.identity()
}

/// Every unobserved value of the per-object documents (quantile documents have their own
/// table), grouped by measurement, field, state and reason: missing groups first.
pub(crate) fn group_unobserved<'a>(
    documents: impl IntoIterator<Item = &'a Document>,
) -> Vec<UnobservedGroup> {
    type Key = (u8, String, String, String);
    let mut per_metric: BTreeMap<String, usize> = BTreeMap::new();
    let mut groups: BTreeMap<Key, (usize, Vec<String>)> = BTreeMap::new();
    for document in documents {
        if document::is_quantile_metric(document.metric_name()) {
            continue;
        }
        *per_metric
            .entry(document.metric_name().to_owned())
            .or_default() += 1;
        for (order, key) in [(0u8, "missing"), (1, "notApplicable")] {
            let Some(Value::Object(map)) = document.body().get(key) else {
                continue;
            };
            for (field, reason) in map {
                let reason = match reason {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let (count, objects) = groups
                    .entry((
                        order,
                        document.metric_name().to_owned(),
                        field.clone(),
                        reason,
                    ))
                    .or_default();
                *count += 1;
                if objects.len() < OBJECTS_PER_GROUP {
                    objects.push(object_label(document));
                }
            }
        }
    }
    groups
        .into_iter()
        .map(
            |((order, measurement, field, reason), (count, objects))| UnobservedGroup {
                of: per_metric.get(&measurement).copied().unwrap_or(count),
                measurement,
                field,
                state: if order == 0 {
                    "missing"
                } else {
                    "not applicable"
                },
                reason,
                more: count - objects.len(),
                count,
                objects,
            },
        )
        .collect()
}

/// The unit a threshold's bound is in: counts for count statistics, else its quantile's unit.
fn threshold_unit(result: &ThresholdResult, quantiles: &[QuantileDocument]) -> String {
    if result.threshold.stat.is_count() {
        return "count".to_owned();
    }
    if let ThresholdVerdict::Passed { unit, .. } | ThresholdVerdict::Violated { unit, .. } =
        &result.verdict
    {
        return unit.clone();
    }
    quantiles
        .iter()
        .find(|q| {
            q.metric_name == result.threshold.metric_name()
                && q.quantile_name == result.threshold.quantile
        })
        .map(|q| q.unit.clone())
        .unwrap_or_default()
}

/// `routeConvergence/AdvertiseFib P99 ≤ 5 s`: the threshold with its bound in a human unit.
fn threshold_label(threshold: &Threshold, unit: &str) -> String {
    let op = match threshold.bound.side() {
        Side::AtMost => "≤",
        Side::AtLeast => "≥",
    };
    format!(
        "{}/{} {} {op} {}",
        threshold.metric,
        threshold.quantile,
        threshold.stat,
        units::human(threshold.bound.limit(), unit)
    )
}

fn banner(view: &RunView<'_>, thresholds: &ThresholdReport, rows: &[ThresholdRow]) -> Banner {
    let failed: Vec<FailedThreshold> = thresholds
        .results
        .iter()
        .zip(rows)
        .filter(|(r, _)| r.verdict.fails_run())
        .map(|(r, row)| FailedThreshold {
            name: row.name.clone(),
            full: row.full.clone(),
            detail: match &r.verdict {
                ThresholdVerdict::Violated { .. } => format!("was {}", row.value.text),
                ThresholdVerdict::Unobserved { reason } => format!("not observed: {reason}"),
                _ => row.detail.clone(),
            },
        })
        .collect();
    // Execution errors that are not threshold messages (those are listed above, in units).
    let messages: Vec<String> = thresholds.results.iter().map(|r| r.message()).collect();
    let errors: Vec<String> = view
        .job_summary
        .and_then(|d| d.text("executionErrors"))
        .map(|e| {
            e.split("; ")
                .filter(|e| !messages.iter().any(|m| m == e))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let count = |f: fn(&ThresholdVerdict) -> bool| {
        thresholds.results.iter().filter(|r| f(&r.verdict)).count()
    };
    let headline = if thresholds.results.is_empty() {
        "no thresholds configured".to_owned()
    } else {
        let mut parts = vec![format!(
            "{} of {} thresholds failed",
            failed.len(),
            thresholds.results.len()
        )];
        for (n, word) in [
            (
                count(|v| matches!(v, ThresholdVerdict::Passed { .. })),
                "passed",
            ),
            (
                count(|v| matches!(v, ThresholdVerdict::NotApplicable { .. })),
                "not applicable",
            ),
            (
                count(|v| matches!(v, ThresholdVerdict::Skipped { .. })),
                "skipped",
            ),
        ] {
            if n > 0 {
                parts.push(format!("{n} {word}"));
            }
        }
        parts.join(", ")
    };
    Banner {
        passed: view.passed() && thresholds.passed(),
        headline,
        failed,
        errors,
    }
}

/// The self-contained HTML report: no external scripts, stylesheets, fonts or images. One small
/// inline script adds "expand all" to the unobserved groups; the report reads the same without.
pub fn render_html(view: &RunView<'_>, thresholds: &ThresholdReport) -> String {
    let (listed, folded) = fold_not_applicable(&view.quantiles);
    let quantiles: Vec<QuantileRow> = listed
        .into_iter()
        .map(|q| QuantileRow {
            metric: short_metric(&q.metric_name).to_owned(),
            quantile: q.quantile_name.clone(),
            count: q.count,
            missing: q.missing_count,
            p50: units::shown(q.p50, &q.unit),
            p95: units::shown(q.p95, &q.unit),
            p99: units::shown(q.p99, &q.unit),
            max: units::shown(q.max, &q.unit),
            resolution: units::shown(q.resolution, "ms"),
            note: quantile_note(q),
        })
        .collect();
    let threshold_rows: Vec<ThresholdRow> = thresholds
        .results
        .iter()
        .map(|r| {
            let (verdict, class) = verdict_words(&r.verdict);
            let unit = threshold_unit(r, &view.quantiles);
            let (value, detail) = match &r.verdict {
                ThresholdVerdict::Passed { value, unit }
                | ThresholdVerdict::Violated { value, unit } => {
                    (units::shown(Some(*value), unit), String::new())
                }
                other => (Shown::none(), verdict_detail(other)),
            };
            ThresholdRow {
                name: threshold_label(&r.threshold, &unit),
                full: r.threshold.to_string(),
                verdict,
                class,
                value,
                detail,
            }
        })
        .collect();
    let banner = banner(view, thresholds, &threshold_rows);
    let unobserved = group_unobserved(view.by_metric.values().flatten().copied());
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
    let elapsed = units::shown(
        view.job_summary
            .and_then(|d| d.number("elapsedTime"))
            .map(|s| s * 1000.0),
        "ms",
    );
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
                    start => view.summary_text("timestamp"),
                    end => view.summary_text("endTimestamp"),
                    elapsed => minijinja::value::Serde(&elapsed),
                    version => view.summary_text("version"),
                    iterations => iterations,
                    cluster => cluster,
                },
                banner => minijinja::value::Serde(&banner),
                thresholds => minijinja::value::Serde(&threshold_rows),
                quantiles => minijinja::value::Serde(&quantiles),
                folded => minijinja::value::Serde(&folded),
                plots => minijinja::value::Serde(&plots),
                unobserved => minijinja::value::Serde(&unobserved),
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn quantile(metric: &str, name: &str, not_applicable: Option<&str>) -> QuantileDocument {
        let mut body = json!({
            "quantileName": name, "uuid": "u", "timestamp": "2026-01-01T00:00:00Z",
            "metricName": metric, "jobName": "j", "metadata": {}, "count": 0,
            "missingCount": 0, "notApplicableCount": 0, "unit": "ms", "method": "kube-burner"
        });
        match not_applicable {
            Some(reason) => {
                body["notApplicable"] = json!({"P99": reason, "P50": reason});
                body["notApplicableCount"] = json!(4);
            }
            None => {
                body["count"] = json!(4);
                body["P99"] = json!(12.5);
            }
        }
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn not_applicable_quantiles_fold_into_one_line_per_reason() {
        let route = document::ROUTE_CONVERGENCE_QUANTILES;
        let vmi = document::VMI_LATENCY_QUANTILES;
        let quantiles = vec![
            quantile(route, "AdvertiseFib", None),
            quantile(route, "HostRouteAdvertiseFib", Some("subnet mode")),
            quantile(route, "WithdrawFib", Some("kept until cleanup")),
            quantile(route, "HostRouteWithdrawFib", Some("subnet mode")),
            quantile(vmi, "PodReady", Some("no pods")),
            quantile(vmi, "PodCreated", Some("no pods")),
            quantile(vmi, "VMReady", None),
            quantile(vmi, "IPAMClaimReleased", Some("kept until cleanup")),
        ];
        let (listed, folded) = fold_not_applicable(&quantiles);
        let names: Vec<&str> = listed.iter().map(|q| q.quantile_name.as_str()).collect();
        assert_eq!(names, vec!["AdvertiseFib", "VMReady"]);
        assert_eq!(
            folded,
            vec![
                FoldedQuantiles {
                    reason: "kept until cleanup".to_owned(),
                    count: 2,
                    quantiles: "routeConvergence: WithdrawFib; vmiLatency: IPAMClaimReleased"
                        .to_owned(),
                },
                FoldedQuantiles {
                    reason: "no pods".to_owned(),
                    count: 2,
                    quantiles: "vmiLatency: PodReady, PodCreated".to_owned(),
                },
                FoldedQuantiles {
                    reason: "subnet mode".to_owned(),
                    count: 2,
                    quantiles: "routeConvergence: HostRouteAdvertiseFib, HostRouteWithdrawFib"
                        .to_owned(),
                },
            ]
        );
        // Nothing not applicable: nothing folded.
        let (listed, folded) = fold_not_applicable(&quantiles[..1]);
        assert_eq!(listed.len(), 1);
        assert!(folded.is_empty());
    }

    fn vm_document(iteration: u64, replica: u64, missing: &[(&str, &str)]) -> Document {
        let mut body = json!({
            "uuid": "u", "metricName": document::VMI_LATENCY, "jobName": "j",
            "namespace": format!("ns-{iteration}"), "vmName": format!("vm-{iteration}-{replica}"),
            "jobIteration": iteration,
            "notApplicable": {"podReadyLatency": "no pods", "podCreatedLatency": "no pods"}
        });
        if !missing.is_empty() {
            body["missing"] = missing
                .iter()
                .map(|(f, r)| ((*f).to_owned(), json!(r)))
                .collect::<serde_json::Map<_, _>>()
                .into();
        }
        Document::from_value(body).unwrap()
    }

    #[test]
    fn unobserved_values_group_by_measurement_field_and_reason() {
        let mut documents = Vec::new();
        for iteration in 0..72 {
            for replica in 0..10 {
                let missing: &[(&str, &str)] = if replica == 3 && iteration % 10 == 0 {
                    &[("vmReadyLatency", "not Ready within 600 s")]
                } else if replica == 4 && iteration == 5 {
                    &[("vmReadyLatency", "VM deleted")]
                } else {
                    &[]
                };
                documents.push(vm_document(iteration, replica, missing));
            }
        }
        let peer = Document::from_value(json!({
            "uuid": "u", "metricName": document::BGP_SESSION, "jobName": "j",
            "peerAddress": "198.18.0.2", "missing": {"uptimePercent": "no BMP"}
        }))
        .unwrap();
        documents.push(peer);
        let groups = group_unobserved(&documents);
        let summary: Vec<(&str, &str, &str, &str, usize, usize)> = groups
            .iter()
            .map(|g| {
                (
                    g.measurement.as_str(),
                    g.field.as_str(),
                    g.state,
                    g.reason.as_str(),
                    g.count,
                    g.of,
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (
                    document::BGP_SESSION,
                    "uptimePercent",
                    "missing",
                    "no BMP",
                    1,
                    1
                ),
                (
                    document::VMI_LATENCY,
                    "vmReadyLatency",
                    "missing",
                    "VM deleted",
                    1,
                    720
                ),
                (
                    document::VMI_LATENCY,
                    "vmReadyLatency",
                    "missing",
                    "not Ready within 600 s",
                    8,
                    720
                ),
                (
                    document::VMI_LATENCY,
                    "podCreatedLatency",
                    "not applicable",
                    "no pods",
                    720,
                    720
                ),
                (
                    document::VMI_LATENCY,
                    "podReadyLatency",
                    "not applicable",
                    "no pods",
                    720,
                    720
                ),
            ]
        );
        assert_eq!(groups[0].objects, vec!["198.18.0.2"]);
        assert_eq!(groups[1].objects, vec!["ns-5/vm-5-4"]);
        assert_eq!(groups[2].objects[..2], ["ns-0/vm-0-3", "ns-10/vm-10-3"]);
        assert_eq!((groups[3].objects.len(), groups[3].more), (720, 0));
        // Quantile documents are not per-object values: not grouped here.
        assert!(group_unobserved(&[]).is_empty());
    }

    #[test]
    fn a_group_names_at_most_its_share_of_objects() {
        let documents: Vec<Document> = (0..(OBJECTS_PER_GROUP as u64 + 5))
            .map(|i| vm_document(i, 0, &[]))
            .collect();
        let groups = group_unobserved(&documents);
        assert_eq!(groups[0].count, OBJECTS_PER_GROUP + 5);
        assert_eq!(groups[0].objects.len(), OBJECTS_PER_GROUP);
        assert_eq!(groups[0].more, 5);
    }

    #[test]
    fn threshold_labels_use_human_units() {
        let thresholds = crate::thresholds::default_thresholds();
        assert_eq!(
            threshold_label(&thresholds[0], "ms"),
            "routeConvergence/AdvertiseFib P99 ≤ 5 s"
        );
        assert_eq!(
            threshold_label(&thresholds[2], "percent"),
            "bgpSession/UptimePercent min ≥ 99 %"
        );
        assert_eq!(
            threshold_label(&thresholds[3], "count"),
            "vmReachability/FirstReply missingCount ≤ 0"
        );
    }
}
