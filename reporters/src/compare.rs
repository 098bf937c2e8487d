//! `compare BASELINE CURRENT`: quantile statistics of two runs side by side, with per-metric
//! tolerance and direction, and a regression verdict (the harness exits 7 on a regression).
//! Runs come from result directories or, by uuid, from Elasticsearch through `EsClient`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use comfy_table::{ContentArrangement, Table, presets};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::document::{self, Document, QuantileDocument};
use crate::es::{EsClient, EsError};
use crate::local::{LocalError, load_documents};
use crate::report::format_number;
use crate::thresholds::Statistic;

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

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Comparison {
    pub baseline_uuid: Option<String>,
    pub current_uuid: Option<String>,
    /// Facts that make the runs less comparable (different jobIterations, mode, ...).
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
        for note in &self.notes {
            out.push_str(&format!("note: {note}\n"));
        }
        out.push_str(&table.to_string());
        out.push('\n');
        out
    }
}

fn job_summary_field<'a>(documents: &'a [Document], pointer: &str) -> Option<&'a Value> {
    documents
        .iter()
        .find(|d| d.metric_name() == document::JOB_SUMMARY)
        .and_then(|d| d.body().pointer(pointer))
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
    for (pointer, what) in [
        ("/jobConfig/jobIterations", "jobIterations"),
        ("/advertisementMode", "advertisementMode"),
        ("/totalNodes", "totalNodes"),
    ] {
        let (b, c) = (
            job_summary_field(baseline, pointer),
            job_summary_field(current, pointer),
        );
        if b != c {
            let show =
                |v: Option<&Value>| v.map(Value::to_string).unwrap_or_else(|| "-".to_owned());
            notes.push(format!(
                "{what} differs: baseline {} vs current {}",
                show(b),
                show(c)
            ));
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
}

/// Loads a run's documents for `compare`.
pub async fn load_run(
    source: &RunSource,
    es: Option<&EsClient>,
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
            let client = es.ok_or_else(|| CompareError::NoElasticsearch { uuid: uuid.clone() })?;
            (
                client
                    .fetch_run_summaries(uuid)
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

/// `compare` from two sources.
pub async fn compare_runs(
    baseline: &RunSource,
    current: &RunSource,
    tolerances: &[Tolerance],
    es: Option<&EsClient>,
) -> Result<Comparison, CompareError> {
    let baseline = load_run(baseline, es).await?;
    let current = load_run(current, es).await?;
    Ok(compare(&baseline, &current, tolerances))
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
