//! `compare BASELINE CURRENT`: quantile statistics of two runs side by side, with per-metric
//! tolerance and direction, and a regression verdict (the harness exits 7 on a regression).
//! Runs come from result directories or, by uuid, from Elasticsearch through `EsClient`.
//!
//! Only runs of the same configuration are compared, as kube-burner's and Orion's comparisons
//! are (Orion selects the runs to compare by their job configuration): [`compare_runs`] refuses
//! runs whose profile, shape, network layout, iterations, VMs per iteration or advertisement mode
//! differ ([`comparability_differences`]) unless forced. Iterations and VM count are refused too,
//! not just noted: in the scale shape they are the load the latencies are measured under (720
//! accumulated VMs are not 100), and in every shape they set the sample count behind each
//! quantile, so a difference there is a different experiment, not a regression. Facts that
//! matter less (node count, the set of measurements) are noted. A partial run (`passed: false`
//! because it was interrupted, timed out, failed steps or never finished; a run that only failed
//! thresholds is complete) is marked in the table and the JSON.

use std::collections::BTreeMap;
use std::path::PathBuf;

use comfy_table::{ContentArrangement, Table, presets};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::document::{self, Document, QuantileDocument};
use crate::es::{Budget, EsClient, EsError};
use crate::local::{LocalError, load_documents};
use crate::report::format_number;
use vmbgp_model::Statistic;

/// Which change is bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Direction {
    /// Latencies, loss, missing counts.
    HigherIsWorse,
    /// Throughput, uptime.
    LowerIsWorse,
    /// Any change beyond the tolerance is a regression.
    Both,
}

/// How much a statistic may change. Filters left `None` match everything; when several
/// tolerances match the same statistic, the one with the most filters set wins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tolerance {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantile_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    pub statistic: Statistic,
    /// Allowed change relative to the baseline, in percent.
    pub percent: f64,
    /// Changes up to this absolute amount are never a regression (noise floor, in the unit).
    #[serde(default)]
    pub min_absolute: f64,
    pub direction: Direction,
}

impl Tolerance {
    fn matches(&self, q: &QuantileDocument) -> bool {
        self.metric_name
            .as_ref()
            .is_none_or(|m| *m == q.metric_name)
            && self
                .quantile_name
                .as_ref()
                .is_none_or(|n| *n == q.quantile_name)
            && self.unit.as_ref().is_none_or(|u| *u == q.unit)
    }

    fn specificity(&self) -> usize {
        [&self.metric_name, &self.quantile_name, &self.unit]
            .iter()
            .filter(|f| f.is_some())
            .count()
    }
}

/// Defaults: latency P50/P99 +10 % (noise floor 1 ms), goodput P50 −10 %, session uptime min
/// −1 point, loss P99 +1 point, and any new missing sample.
pub fn default_tolerances() -> Vec<Tolerance> {
    let t = |metric: Option<&str>,
             quantile: Option<&str>,
             unit: Option<&str>,
             statistic,
             percent,
             min_absolute,
             direction| Tolerance {
        metric_name: metric.map(str::to_owned),
        quantile_name: quantile.map(str::to_owned),
        unit: unit.map(str::to_owned),
        statistic,
        percent,
        min_absolute,
        direction,
    };
    use Direction::*;
    vec![
        t(
            None,
            None,
            Some("ms"),
            Statistic::P50,
            10.0,
            1.0,
            HigherIsWorse,
        ),
        t(
            None,
            None,
            Some("ms"),
            Statistic::P99,
            10.0,
            1.0,
            HigherIsWorse,
        ),
        t(
            Some(document::VM_THROUGHPUT_QUANTILES),
            Some("Goodput"),
            None,
            Statistic::P50,
            10.0,
            0.0,
            LowerIsWorse,
        ),
        t(
            Some(document::BGP_SESSION_QUANTILES),
            Some("UptimePercent"),
            None,
            Statistic::Min,
            0.0,
            1.0,
            LowerIsWorse,
        ),
        t(
            Some(document::VM_REACHABILITY_QUANTILES),
            Some("LossPercent"),
            None,
            Statistic::P99,
            0.0,
            1.0,
            HigherIsWorse,
        ),
        t(
            None,
            None,
            None,
            Statistic::MissingCount,
            0.0,
            0.0,
            HigherIsWorse,
        ),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Verdict {
    Ok,
    Regression,
    Improvement,
    /// The baseline has a value and the current run does not: counted as a regression,
    /// because a metric that stopped being observed can hide one.
    MissingInCurrent,
    /// New in the current run: nothing to compare with.
    MissingInBaseline,
    /// Neither run has a value (e.g. not applicable in both).
    Unavailable,
}

impl Verdict {
    pub fn is_regression(&self) -> bool {
        matches!(self, Verdict::Regression | Verdict::MissingInCurrent)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ComparisonRow {
    pub metric_name: String,
    pub quantile_name: String,
    pub statistic: Statistic,
    pub unit: String,
    pub baseline: Option<f64>,
    pub current: Option<f64>,
    pub delta: Option<f64>,
    pub delta_percent: Option<f64>,
    pub tolerance_percent: f64,
    pub min_absolute: f64,
    pub direction: Direction,
    pub verdict: Verdict,
}

/// Why a run's `passed` is false for reasons other than thresholds: it is partial, and its
/// quantiles describe only what it got to measure.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Partial {
    /// `interrupted`, `timed out`, `did not finish`, `execution errors` (one or more).
    pub reasons: Vec<String>,
    /// The run's own execution errors, threshold violations left out.
    pub errors: String,
}

impl std::fmt::Display for Partial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const MAX: usize = 300;
        let errors: String = self.errors.chars().take(MAX).collect();
        let more = if self.errors.chars().count() > MAX {
            "…"
        } else {
            ""
        };
        write!(f, "{} ({errors}{more})", self.reasons.join(", "))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Comparison {
    pub baseline_uuid: Option<String>,
    pub current_uuid: Option<String>,
    /// What makes the runs incomparable (profile, shape, layout, iterations, VMs per iteration,
    /// advertisement mode): `compare_runs` refuses these unless forced.
    pub differences: Vec<String>,
    /// The runs were compared despite `differences` (`--force`).
    pub forced: bool,
    /// `Some` when the baseline run is partial (interrupted, timed out, execution errors).
    pub baseline_partial: Option<Partial>,
    /// `Some` when the current run is partial (interrupted, timed out, execution errors).
    pub current_partial: Option<Partial>,
    /// Facts that make the runs less comparable (node count, measurements, what was not checked).
    pub notes: Vec<String>,
    pub rows: Vec<ComparisonRow>,
    pub regression: bool,
}

impl Comparison {
    pub fn has_regression(&self) -> bool {
        self.regression
    }

    /// JSON for CI (`compare --output json`).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    pub fn to_table(&self) -> String {
        let mut table = Table::new();
        table
            .load_style(presets::ASCII_MARKDOWN)
            .force_no_tty()
            .set_content_arrangement(ContentArrangement::Disabled)
            .set_header(vec![
                "metric",
                "quantile",
                "stat",
                "baseline",
                "current",
                "delta",
                "delta %",
                "tolerance",
                "verdict",
            ]);
        let num = |v: Option<f64>| v.map(format_number).unwrap_or_else(|| "-".to_owned());
        for row in &self.rows {
            let direction = match row.direction {
                Direction::HigherIsWorse => "+",
                Direction::LowerIsWorse => "-",
                Direction::Both => "±",
            };
            table.add_row(vec![
                row.metric_name
                    .strip_suffix("QuantilesMeasurement")
                    .unwrap_or(&row.metric_name)
                    .to_owned(),
                row.quantile_name.clone(),
                row.statistic.to_string(),
                num(row.baseline),
                num(row.current),
                num(row.delta),
                num(row.delta_percent),
                format!(
                    "{direction}{}% (>{} {})",
                    format_number(row.tolerance_percent),
                    format_number(row.min_absolute),
                    row.unit
                ),
                match row.verdict {
                    Verdict::Ok => "ok",
                    Verdict::Regression => "REGRESSION",
                    Verdict::Improvement => "improvement",
                    Verdict::MissingInCurrent => "REGRESSION (missing in current)",
                    Verdict::MissingInBaseline => "new",
                    Verdict::Unavailable => "n/a",
                }
                .to_owned(),
            ]);
        }
        let mut out = format!(
            "baseline {} vs current {}: {}\n",
            self.baseline_uuid.as_deref().unwrap_or("?"),
            self.current_uuid.as_deref().unwrap_or("?"),
            if self.regression {
                "REGRESSION"
            } else {
                "no regression"
            }
        );
        if !self.differences.is_empty() {
            out.push_str(&format!(
                "warning: the runs are not comparable: {}{}\n",
                self.differences.join("; "),
                if self.forced {
                    " (compared anyway: --force)"
                } else {
                    ""
                }
            ));
        }
        for (which, partial) in [
            ("baseline", &self.baseline_partial),
            ("current", &self.current_partial),
        ] {
            if let Some(partial) = partial {
                out.push_str(&format!("{which} run is partial: {partial}\n"));
            }
        }
        for note in &self.notes {
            out.push_str(&format!("note: {note}\n"));
        }
        out.push_str(&table.to_string());
        out.push('\n');
        out
    }
}

fn job_summary(documents: &[Document]) -> Option<&Document> {
    documents
        .iter()
        .find(|d| d.metric_name() == document::JOB_SUMMARY)
}

/// The first of `pointers` present in the run's `jobSummary`.
fn job_summary_field<'a>(documents: &'a [Document], pointers: &[&str]) -> Option<&'a Value> {
    let summary = job_summary(documents)?;
    pointers.iter().find_map(|p| summary.body().pointer(p))
}

fn show(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// `jobSummary` fields that make two runs incomparable when they differ: (what, where; the first
/// pointer present wins, later ones are older or kube-burner-style spellings).
const INCOMPARABLE_WHEN_DIFFERENT: &[(&str, &[&str])] = &[
    ("profile", &["/jobConfig/profile"]),
    ("shape", &["/jobConfig/shape"]),
    (
        "network layout",
        &["/jobConfig/layout", "/jobConfig/network"],
    ),
    ("iterations", &["/jobConfig/jobIterations"]),
    (
        "VMs per iteration",
        &["/jobConfig/vm_count", "/jobConfig/vmCount"],
    ),
    ("advertisement mode", &["/advertisementMode"]),
];

/// `jobSummary` fields whose difference is only noted.
const NOTED_WHEN_DIFFERENT: &[(&str, &[&str])] = &[
    ("node count", &["/totalNodes"]),
    ("measurements", &["/measurements"]),
];

/// What makes two runs incomparable, e.g. `baseline profile vm-bgp, current vm-bgp-churn`. A
/// field only one run records cannot be checked and is not a difference (see the notes of
/// [`compare`]); a run without a `jobSummary` cannot be checked at all.
pub fn comparability_differences(baseline: &[Document], current: &[Document]) -> Vec<String> {
    INCOMPARABLE_WHEN_DIFFERENT
        .iter()
        .filter_map(|(what, pointers)| {
            match (
                job_summary_field(baseline, pointers),
                job_summary_field(current, pointers),
            ) {
                (Some(b), Some(c)) if b != c => {
                    Some(format!("baseline {what} {}, current {}", show(b), show(c)))
                }
                _ => None,
            }
        })
        .collect()
}

/// Whether a run is partial, from its `jobSummary`: `passed: false` with execution errors of its
/// own (interrupted, timed out, failed steps), or no final summary at all. Threshold violations
/// alone leave a run complete. `None` also when the run has no `jobSummary` (see the notes).
pub fn partial_run(documents: &[Document]) -> Option<Partial> {
    let body = job_summary(documents)?.body();
    if body.get("passed").and_then(Value::as_bool) == Some(true) {
        return None;
    }
    let text = body
        .get("executionErrors")
        .and_then(Value::as_str)
        .unwrap_or_default();
    // The recorder writes the run's own errors first, then the threshold violations, joined
    // by "; "; every violation starts with this marker.
    const THRESHOLD: &str = "threshold violated:";
    let own_end = text
        .match_indices(THRESHOLD)
        .map(|(at, _)| at)
        .find(|&at| at == 0 || text[..at].ends_with("; "))
        .unwrap_or(text.len());
    let errors = text[..own_end].trim_end_matches("; ").trim().to_owned();
    let unfinished = body.get("endTimestamp").is_none() || errors.contains("run did not finish");
    if errors.is_empty() && !unfinished {
        return None;
    }
    let mut reasons = Vec::new();
    if unfinished {
        reasons.push("did not finish".to_owned());
    }
    // "interrupted by a signal"; the provisional summary's "(interrupted or crashed)" is not.
    if errors.contains("interrupted by") {
        reasons.push("interrupted".to_owned());
    }
    if errors.contains("timed out") || (errors.contains("--timeout") && errors.contains("expired"))
    {
        reasons.push("timed out".to_owned());
    }
    if reasons.is_empty() {
        reasons.push("execution errors".to_owned());
    }
    Some(Partial { reasons, errors })
}

/// Compares the quantile documents of two runs.
pub fn compare(
    baseline: &[Document],
    current: &[Document],
    tolerances: &[Tolerance],
) -> Comparison {
    let index = |documents: &[Document]| -> BTreeMap<(String, String), QuantileDocument> {
        documents
            .iter()
            .filter_map(QuantileDocument::from_document)
            .map(|q| ((q.metric_name.clone(), q.quantile_name.clone()), q))
            .collect()
    };
    let base = index(baseline);
    let cur = index(current);
    let mut notes = Vec::new();
    for (which, documents) in [("baseline", baseline), ("current", current)] {
        if job_summary(documents).is_none() {
            notes.push(format!(
                "the {which} run has no jobSummary: whether the runs are comparable \
                 (profile, layout, size) and complete was not checked"
            ));
        }
    }
    if job_summary(baseline).is_some() && job_summary(current).is_some() {
        for (what, pointers) in INCOMPARABLE_WHEN_DIFFERENT {
            match (
                job_summary_field(baseline, pointers),
                job_summary_field(current, pointers),
            ) {
                (Some(_), None) => notes.push(format!(
                    "{what} not checked: the current run does not record it"
                )),
                (None, Some(_)) => notes.push(format!(
                    "{what} not checked: the baseline run does not record it"
                )),
                _ => {}
            }
        }
        for (what, pointers) in NOTED_WHEN_DIFFERENT {
            let (b, c) = (
                job_summary_field(baseline, pointers),
                job_summary_field(current, pointers),
            );
            if b != c {
                let show = |v: Option<&Value>| v.map(show).unwrap_or_else(|| "-".to_owned());
                notes.push(format!(
                    "{what} differs: baseline {} vs current {}",
                    show(b),
                    show(c)
                ));
            }
        }
    }
    let mut keys: Vec<&(String, String)> = base.keys().chain(cur.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut rows = Vec::new();
    for key in keys {
        let (b, c) = (base.get(key), cur.get(key));
        let Some(reference) = b.or(c) else { continue };
        // Most specific matching tolerance per statistic.
        let mut chosen: BTreeMap<Statistic, &Tolerance> = BTreeMap::new();
        for tolerance in tolerances.iter().filter(|t| t.matches(reference)) {
            let slot = chosen.entry(tolerance.statistic).or_insert(tolerance);
            if tolerance.specificity() > slot.specificity() {
                *slot = tolerance;
            }
        }
        for (statistic, tolerance) in chosen {
            let bv = b.and_then(|q| q.statistic(statistic));
            let cv = c.and_then(|q| q.statistic(statistic));
            rows.push(compare_values(key, reference, statistic, tolerance, bv, cv));
        }
    }
    let regression = rows.iter().any(|r| r.verdict.is_regression());
    let uuid = |documents: &[Document]| {
        documents
            .first()
            .and_then(|d| d.text("uuid"))
            .map(str::to_owned)
    };
    Comparison {
        baseline_uuid: uuid(baseline),
        current_uuid: uuid(current),
        differences: comparability_differences(baseline, current),
        forced: false,
        baseline_partial: partial_run(baseline),
        current_partial: partial_run(current),
        notes,
        rows,
        regression,
    }
}

fn compare_values(
    key: &(String, String),
    reference: &QuantileDocument,
    statistic: Statistic,
    tolerance: &Tolerance,
    baseline: Option<f64>,
    current: Option<f64>,
) -> ComparisonRow {
    let (delta, delta_percent, verdict) = match (baseline, current) {
        (Some(b), Some(c)) => {
            let delta = c - b;
            let percent = (b != 0.0).then(|| crate::measured::round3(delta / b.abs() * 100.0));
            let allowed = (b.abs() * tolerance.percent / 100.0).max(tolerance.min_absolute);
            let beyond = delta.abs() > allowed;
            let worse = match tolerance.direction {
                Direction::HigherIsWorse => delta > 0.0,
                Direction::LowerIsWorse => delta < 0.0,
                Direction::Both => true,
            };
            let verdict = match (beyond, worse) {
                (false, _) => Verdict::Ok,
                (true, true) => Verdict::Regression,
                (true, false) => Verdict::Improvement,
            };
            (Some(crate::measured::round3(delta)), percent, verdict)
        }
        (Some(_), None) => (None, None, Verdict::MissingInCurrent),
        (None, Some(_)) => (None, None, Verdict::MissingInBaseline),
        (None, None) => (None, None, Verdict::Unavailable),
    };
    ComparisonRow {
        metric_name: key.0.clone(),
        quantile_name: key.1.clone(),
        statistic,
        unit: if matches!(statistic, Statistic::Count | Statistic::MissingCount) {
            "count".to_owned()
        } else {
            reference.unit.clone()
        },
        baseline,
        current,
        delta,
        delta_percent,
        tolerance_percent: tolerance.percent,
        min_absolute: tolerance.min_absolute,
        direction: tolerance.direction,
        verdict,
    }
}

/// Where a run's documents come from.
#[derive(Debug, Clone, PartialEq)]
pub enum RunSource {
    Directory(PathBuf),
    Elasticsearch { uuid: String },
}

impl RunSource {
    /// A path that exists is a results directory; anything else is taken as a uuid in ES.
    pub fn from_arg(arg: &str) -> RunSource {
        let path = PathBuf::from(arg);
        if path.is_dir() {
            RunSource::Directory(path)
        } else {
            RunSource::Elasticsearch {
                uuid: arg.to_owned(),
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error("loading run from {path}")]
    Local {
        path: PathBuf,
        #[source]
        source: LocalError,
    },
    #[error("run {uuid} is in Elasticsearch but no --es-server was given")]
    NoElasticsearch { uuid: String },
    #[error("loading run {uuid} from Elasticsearch")]
    Es {
        uuid: String,
        #[source]
        source: EsError,
    },
    #[error("run {source_name} has no quantile documents")]
    NoQuantiles { source_name: String },
    #[error(
        "the runs are not comparable: {}; pass --force to compare them anyway",
        differences.join("; ")
    )]
    Incomparable { differences: Vec<String> },
}

impl CompareError {
    /// Elasticsearch could not be reached (or kept failing) until the deadline: an unavailable
    /// environment, not bad input.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, CompareError::Es { source, .. } if source.is_unavailable())
    }
}

/// Loads a run's documents for `compare`, under a fresh Elasticsearch deadline.
pub async fn load_run(
    source: &RunSource,
    es: Option<&EsClient>,
) -> Result<Vec<Document>, CompareError> {
    let mut budget = es.map(EsClient::budget);
    load_run_within(source, es, budget.as_mut()).await
}

async fn load_run_within(
    source: &RunSource,
    es: Option<&EsClient>,
    budget: Option<&mut Budget>,
) -> Result<Vec<Document>, CompareError> {
    let (documents, name) = match source {
        RunSource::Directory(path) => (
            load_documents(path).map_err(|source| CompareError::Local {
                path: path.clone(),
                source,
            })?,
            path.display().to_string(),
        ),
        RunSource::Elasticsearch { uuid } => {
            let (Some(client), Some(budget)) = (es, budget) else {
                return Err(CompareError::NoElasticsearch { uuid: uuid.clone() });
            };
            (
                client
                    .fetch_run_summaries_within(uuid, budget)
                    .await
                    .map_err(|source| CompareError::Es {
                        uuid: uuid.clone(),
                        source,
                    })?,
                uuid.clone(),
            )
        }
    };
    if !documents
        .iter()
        .any(|d| document::is_quantile_metric(d.metric_name()))
    {
        return Err(CompareError::NoQuantiles { source_name: name });
    }
    Ok(documents)
}

/// `compare` from two sources: both runs are loaded (from Elasticsearch under one deadline),
/// then refused with [`CompareError::Incomparable`] when their configurations differ
/// ([`comparability_differences`]), unless `force`.
pub async fn compare_runs(
    baseline: &RunSource,
    current: &RunSource,
    tolerances: &[Tolerance],
    es: Option<&EsClient>,
    force: bool,
) -> Result<Comparison, CompareError> {
    let mut budget = es.map(EsClient::budget);
    let baseline = load_run_within(baseline, es, budget.as_mut()).await?;
    let current = load_run_within(current, es, budget.as_mut()).await?;
    let differences = comparability_differences(&baseline, &current);
    if !differences.is_empty() && !force {
        return Err(CompareError::Incomparable { differences });
    }
    let mut comparison = compare(&baseline, &current, tolerances);
    comparison.forced = !comparison.differences.is_empty();
    Ok(comparison)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn quantile(uuid: &str, name: &str, p99: Option<f64>, missing: u64) -> Document {
        let mut body = json!({"uuid": uuid, "metricName": document::ROUTE_CONVERGENCE_QUANTILES,
            "jobName": "j", "quantileName": name, "timestamp": "2026-01-01T00:00:00Z",
            "metadata": {}, "count": 10, "missingCount": missing, "notApplicableCount": 0,
            "unit": "ms", "method": "kube-burner"});
        if let Some(p) = p99 {
            for k in ["P99", "P95", "P50", "min", "max", "avg"] {
                body[k] = json!(p);
            }
        }
        Document::from_value(body).unwrap()
    }

    #[test]
    fn regressions_improvements_and_noise() {
        let base = vec![
            quantile("b", "AdvertiseFib", Some(1000.0), 0),
            quantile("b", "AdvertiseAdjRibIn", Some(100.0), 0),
            quantile("b", "WithdrawFib", Some(0.5), 0),
            quantile("b", "StaleRouteWindow", Some(50.0), 0),
        ];
        let cur = vec![
            quantile("c", "AdvertiseFib", Some(1200.0), 0),
            quantile("c", "AdvertiseAdjRibIn", Some(80.0), 1),
            quantile("c", "WithdrawFib", Some(1.4), 0),
            quantile("c", "StaleRouteWindow", None, 2),
        ];
        let comparison = compare(&base, &cur, &default_tolerances());
        let verdict = |q: &str, s: Statistic| {
            comparison
                .rows
                .iter()
                .find(|r| r.quantile_name == q && r.statistic == s)
                .map(|r| r.verdict)
                .unwrap()
        };
        assert_eq!(verdict("AdvertiseFib", Statistic::P99), Verdict::Regression);
        assert_eq!(
            verdict("AdvertiseAdjRibIn", Statistic::P99),
            Verdict::Improvement
        );
        assert_eq!(
            verdict("AdvertiseAdjRibIn", Statistic::MissingCount),
            Verdict::Regression
        );
        // +0.9 ms is +180 % but below the 1 ms noise floor.
        assert_eq!(verdict("WithdrawFib", Statistic::P99), Verdict::Ok);
        assert_eq!(
            verdict("StaleRouteWindow", Statistic::P99),
            Verdict::MissingInCurrent
        );
        assert!(comparison.has_regression());
        let row = comparison
            .rows
            .iter()
            .find(|r| r.quantile_name == "AdvertiseFib" && r.statistic == Statistic::P99)
            .unwrap();
        assert_eq!((row.delta, row.delta_percent), (Some(200.0), Some(20.0)));
        let same = compare(&base, &base, &default_tolerances());
        assert!(!same.has_regression());
        assert!(same.rows.iter().all(|r| r.verdict == Verdict::Ok));
    }

    fn summary(uuid: &str, config: Value, passed: bool, errors: Option<&str>) -> Document {
        let mut body = json!({"uuid": uuid, "metricName": document::JOB_SUMMARY, "jobName": "vm-bgp",
            "timestamp": "2026-01-01T00:00:00Z", "endTimestamp": "2026-01-01T00:10:00Z",
            "jobConfig": config, "passed": passed, "advertisementMode": "subnet",
            "totalNodes": 3});
        if let Some(errors) = errors {
            body["executionErrors"] = json!(errors);
        }
        Document::from_value(body).unwrap()
    }

    fn config(profile: &str, shape: &str, layout: &str, iterations: u64, vms: u64) -> Value {
        json!({"profile": profile, "shape": shape, "layout": layout,
            "jobIterations": iterations, "vm_count": vms})
    }

    #[test]
    fn other_configurations_are_differences_other_facts_are_notes() {
        let base = vec![
            summary(
                "b",
                config("vm-bgp", "scale", "per-iteration", 72, 10),
                true,
                None,
            ),
            quantile("b", "AdvertiseFib", Some(1000.0), 0),
        ];
        let churn = vec![
            summary(
                "c",
                config("vm-bgp-churn", "churn", "shared", 72, 10),
                true,
                None,
            ),
            quantile("c", "AdvertiseFib", Some(1000.0), 0),
        ];
        assert_eq!(
            comparability_differences(&base, &churn),
            vec![
                "baseline profile vm-bgp, current vm-bgp-churn",
                "baseline shape scale, current churn",
                "baseline network layout per-iteration, current shared",
            ]
        );
        let smaller = vec![
            summary(
                "c",
                config("vm-bgp", "scale", "per-iteration", 10, 5),
                true,
                None,
            ),
            quantile("c", "AdvertiseFib", Some(1000.0), 0),
        ];
        assert_eq!(
            comparability_differences(&base, &smaller),
            vec![
                "baseline iterations 72, current 10",
                "baseline VMs per iteration 10, current 5",
            ]
        );
        assert!(comparability_differences(&base, &base).is_empty());
        // A field only one run records is not checked, and says so; other facts are notes.
        let mut older = summary("c", json!({"jobIterations": 72}), true, None)
            .body()
            .clone();
        older["totalNodes"] = json!(5);
        let older = vec![
            Document::from_value(older).unwrap(),
            quantile("c", "AdvertiseFib", Some(1000.0), 0),
        ];
        assert!(comparability_differences(&base, &older).is_empty());
        let comparison = compare(&base, &older, &default_tolerances());
        assert!(
            comparison
                .notes
                .contains(&"profile not checked: the current run does not record it".to_owned()),
            "{:?}",
            comparison.notes
        );
        assert!(
            comparison
                .notes
                .contains(&"node count differs: baseline 3 vs current 5".to_owned()),
            "{:?}",
            comparison.notes
        );
        // No jobSummary at all: nothing can be checked, and the note says so.
        let bare = vec![quantile("c", "AdvertiseFib", Some(1000.0), 0)];
        let comparison = compare(&base, &bare, &default_tolerances());
        assert!(comparison.notes[0].contains("the current run has no jobSummary"));
    }

    #[test]
    fn partial_runs_are_marked_threshold_failures_are_not() {
        let cfg = || config("vm-bgp", "scale", "per-iteration", 2, 2);
        let complete = vec![
            summary(
                "b",
                cfg(),
                false,
                Some("threshold violated: x; y but was 3 ms; threshold violated: z"),
            ),
            quantile("b", "AdvertiseFib", Some(1000.0), 0),
        ];
        assert_eq!(partial_run(&complete), None);
        let interrupted = vec![
            summary(
                "c",
                cfg(),
                false,
                Some(
                    "interrupted by a signal; threshold violated: routeConvergence/AdvertiseFib P99 <= 5 s not observed: a; b",
                ),
            ),
            quantile("c", "AdvertiseFib", Some(1000.0), 0),
        ];
        let partial = partial_run(&interrupted).unwrap();
        assert_eq!(partial.reasons, vec!["interrupted"]);
        assert_eq!(partial.errors, "interrupted by a signal");
        let timed_out = vec![summary(
            "c",
            cfg(),
            false,
            Some(
                "the global --timeout of 30m expired; timed out after 10m: 20 VMs of iteration 3 ready",
            ),
        )];
        assert_eq!(partial_run(&timed_out).unwrap().reasons, vec!["timed out"]);
        let failed = vec![summary(
            "c",
            cfg(),
            false,
            Some("VirtualMachine ns/vm-1: 500"),
        )];
        assert_eq!(
            partial_run(&failed).unwrap().reasons,
            vec!["execution errors"]
        );
        let mut killed = summary(
            "c",
            cfg(),
            false,
            Some("run did not finish: no final summary was written (interrupted or crashed)"),
        )
        .body()
        .clone();
        killed.as_object_mut().unwrap().remove("endTimestamp");
        let killed = vec![Document::from_value(killed).unwrap()];
        assert_eq!(
            partial_run(&killed).unwrap().reasons,
            vec!["did not finish"]
        );

        let comparison = compare(&complete, &interrupted, &default_tolerances());
        assert_eq!(comparison.baseline_partial, None);
        let table = comparison.to_table();
        assert!(
            table.contains("current run is partial: interrupted (interrupted by a signal)\n"),
            "{table}"
        );
        assert!(!table.contains("baseline run is partial"), "{table}");
        let json: Value = serde_json::from_str(&comparison.to_json()).unwrap();
        assert_eq!(json["currentPartial"]["reasons"], json!(["interrupted"]));
        assert_eq!(json["baselinePartial"], Value::Null);
    }

    #[tokio::test]
    async fn compare_runs_refuses_other_configurations_unless_forced() {
        let root = tempfile::tempdir().unwrap();
        let write = |name: &str, documents: Vec<Document>| {
            let dir = root.path().join(name);
            let mut results =
                crate::local::LocalResults::open(root.path(), name, Default::default()).unwrap();
            results.write(documents).unwrap();
            RunSource::Directory(dir)
        };
        let base = write(
            "b",
            vec![
                summary(
                    "b",
                    config("vm-bgp", "scale", "per-iteration", 72, 10),
                    true,
                    None,
                ),
                quantile("b", "AdvertiseFib", Some(1000.0), 0),
            ],
        );
        let churn = write(
            "c",
            vec![
                summary(
                    "c",
                    config("vm-bgp-churn", "churn", "shared", 72, 10),
                    true,
                    None,
                ),
                quantile("c", "AdvertiseFib", Some(2000.0), 0),
            ],
        );
        let error = compare_runs(&base, &churn, &default_tolerances(), None, false)
            .await
            .unwrap_err();
        let text = error.to_string();
        assert!(
            matches!(error, CompareError::Incomparable { .. })
                && text.contains("baseline profile vm-bgp, current vm-bgp-churn")
                && text.contains("--force"),
            "{text}"
        );
        let forced = compare_runs(&base, &churn, &default_tolerances(), None, true)
            .await
            .unwrap();
        assert!(forced.forced && forced.has_regression());
        assert!(
            forced.to_table().contains("(compared anyway: --force)"),
            "{}",
            forced.to_table()
        );
        let same = compare_runs(&base, &base, &default_tolerances(), None, false)
            .await
            .unwrap();
        assert!(!same.forced && same.differences.is_empty());
    }

    #[test]
    fn most_specific_tolerance_wins() {
        let base = vec![quantile("b", "AdvertiseFib", Some(1000.0), 0)];
        let cur = vec![quantile("c", "AdvertiseFib", Some(1200.0), 0)];
        let mut tolerances = default_tolerances();
        tolerances.push(Tolerance {
            metric_name: Some(document::ROUTE_CONVERGENCE_QUANTILES.to_owned()),
            quantile_name: Some("AdvertiseFib".to_owned()),
            unit: None,
            statistic: Statistic::P99,
            percent: 25.0,
            min_absolute: 0.0,
            direction: Direction::HigherIsWorse,
        });
        let comparison = compare(&base, &cur, &tolerances);
        let p99 = comparison
            .rows
            .iter()
            .find(|r| r.statistic == Statistic::P99)
            .unwrap();
        assert_eq!(p99.verdict, Verdict::Ok);
        assert_eq!(p99.tolerance_percent, 25.0);
        // P50 still uses the generic 10 % rule.
        let p50 = comparison
            .rows
            .iter()
            .find(|r| r.statistic == Statistic::P50)
            .unwrap();
        assert_eq!(p50.verdict, Verdict::Regression);
    }
}
