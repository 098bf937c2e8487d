//! Golden tests: every document file, the summary table and the HTML report's structure of a
//! deterministic fixture run; the committed JSON Schema accepts every document and rejects
//! sentinel values; a killed run leaves what it measured. Update with `UPDATE_GOLDEN=1`.
// Test helpers outside #[test] functions unwrap too: a failed setup step aborts the test.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use pretty_assertions::assert_eq;
use serde_json::Value;
use vmbgp_reporters::local::load_documents;
use vmbgp_reporters::recorder::RunRecorder;
use vmbgp_reporters::redact::Redactor;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn check_golden(name: &str, actual: &str) {
    let path = golden_dir().join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, actual).unwrap();
        return;
    }
    let expected = fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "golden {} unreadable ({e}); run with UPDATE_GOLDEN=1",
            path.display()
        )
    });
    assert_eq!(
        expected, actual,
        "golden {name} differs; run with UPDATE_GOLDEN=1 if intended"
    );
}

fn fixture_dir() -> (tempfile::TempDir, PathBuf) {
    let root = tempfile::tempdir().unwrap();
    // No secret registered: the generic URL-userinfo scrub must still remove the canary.
    let es = format!("https://elastic:{}@es.example:9200", common::CANARY);
    let results = common::write_fixture_run(root.path(), common::UUID, &es, Redactor::new());
    let dir = results.dir.clone();
    (root, dir)
}

fn files(dir: &Path) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

#[test]
fn documents_and_summary_match_goldens() {
    let (_root, dir) = fixture_dir();
    let names: Vec<String> = files(&dir).into_iter().map(|f| f.0).collect();
    assert_eq!(
        names,
        vec![
            "bgpSessionMeasurement-vm-bgp.json",
            "bgpSessionQuantilesMeasurement-vm-bgp.json",
            "jobSummary.json",
            "report.html",
            "routeConvergenceMeasurement-vm-bgp.json",
            "routeConvergenceQuantilesMeasurement-vm-bgp.json",
            "summary.txt",
            "vmEgressMeasurement-vm-bgp.json",
            "vmMigrationMeasurement-vm-bgp.json",
            "vmMigrationQuantilesMeasurement-vm-bgp.json",
            "vmReachabilityMeasurement-vm-bgp.json",
            "vmReachabilityQuantilesMeasurement-vm-bgp.json",
            "vmThroughputMeasurement-vm-bgp.json",
            "vmThroughputQuantilesMeasurement-vm-bgp.json",
            "vmiLatencyMeasurement-vm-bgp.json",
            "vmiLatencyQuantilesMeasurement-vm-bgp.json",
        ]
    );
    for (name, text) in files(&dir) {
        if name.ends_with(".json") {
            check_golden(&format!("documents/{name}"), &text);
        } else if name == "summary.txt" {
            check_golden("summary.txt", &text);
        }
    }
}

#[test]
fn kube_burner_fields_and_semantics() {
    let (_root, dir) = fixture_dir();
    let docs = load_documents(&dir).unwrap();
    let summary = docs
        .iter()
        .find(|d| d.metric_name() == "jobSummary")
        .unwrap()
        .body();
    assert_eq!(summary["jobConfig"]["jobIterations"], 2);
    assert_eq!(summary["version"], "0.1.0@d21840e");
    assert_eq!(summary["k8sVersion"], "v1.33.5");
    assert_eq!(summary["kubevirtVersion"], "v1.6.0");
    assert!(summary.get("frrVersion").is_none());
    assert_eq!(
        summary["missing"]["frrVersion"],
        "no BMP Initiation message received"
    );
    // Default thresholds: one VM unreachable and a session below 99 % uptime fail the run.
    assert_eq!(summary["passed"], false);
    let errors = summary["executionErrors"].as_str().unwrap();
    assert!(
        errors.contains("FirstReply missingCount <= 0 but was 1"),
        "{errors}"
    );
    assert!(
        errors.contains("UptimePercent min >= 99 but was 97.885"),
        "{errors}"
    );
    let vmi_ready = docs
        .iter()
        .find(|d| {
            d.metric_name() == "vmiLatencyQuantilesMeasurement"
                && d.text("quantileName") == Some("VMReady")
        })
        .unwrap();
    // 3 observed VMReady values: P99 = mean of the two largest (index 2.97).
    assert_eq!(vmi_ready.number("count"), Some(3.0));
    assert_eq!(vmi_ready.number("missingCount"), Some(1.0));
    let pods = docs
        .iter()
        .find(|d| d.text("quantileName") == Some("PodCreated"))
        .unwrap();
    assert!(pods.body().get("P99").is_none());
    assert_eq!(pods.number("count"), Some(0.0));
    assert_eq!(
        pods.body()["notApplicable"]["P99"]
            .as_str()
            .map(|s| s.contains("virt-launcher")),
        Some(true)
    );
    // No document anywhere holds a sentinel for a missing value.
    for doc in &docs {
        for (key, value) in doc.body().as_object().unwrap() {
            if let Some(n) = value.as_f64() {
                assert!(
                    n.is_finite() && n != -1.0,
                    "{key}={n} in {}",
                    doc.metric_name()
                );
            }
        }
    }
}

/// Outline of the report: section ids, headings, number of SVG plots and table rows.
fn html_outline(html: &str) -> String {
    let mut outline = String::new();
    for section in html.split("<section id=\"").skip(1) {
        let id = &section[..section.find('"').unwrap()];
        let body = &section[..section.find("</section>").unwrap()];
        let heading = body
            .split("<h")
            .nth(1)
            .and_then(|h| h.split('>').nth(1))
            .and_then(|h| h.split('<').next())
            .unwrap_or("");
        outline.push_str(&format!(
            "{id}: \"{heading}\" svg={} rows={} nodata={}\n",
            body.matches("<svg").count(),
            body.matches("<tr>").count(),
            body.matches("class=\"nodata\"").count(),
        ));
    }
    outline
}

#[test]
fn html_report_structure_and_self_containment() {
    let (_root, dir) = fixture_dir();
    let html = fs::read_to_string(dir.join("report.html")).unwrap();
    // To look at the fixture report: REPORTERS_KEEP_REPORT=/tmp/report.html cargo test ...
    if let Some(keep) = std::env::var_os("REPORTERS_KEEP_REPORT") {
        fs::write(keep, &html).unwrap();
    }
    check_golden("report-outline.txt", &html_outline(&html));
    for forbidden in [
        "<link", "<img", "<iframe", "src=", "href=", "@import", "url(",
    ] {
        assert!(!html.contains(forbidden), "report contains {forbidden}");
    }
    // One inline script (expand/collapse of the unobserved groups), nothing loaded.
    assert_eq!(html.matches("<script").count(), 1);
    assert_eq!(html.matches("<script>").count(), 1);
    let without_namespaces = html
        .replace("xmlns=\"http://www.w3.org/2000/svg\"", "")
        .replace("xmlns:xlink=\"http://www.w3.org/1999/xlink\"", "");
    assert!(!without_namespaces.contains("http://") && !without_namespaces.contains("https://"));
    // Every plot has data in the fixture.
    assert_eq!(html.matches("<svg").count(), 6);
    // The verdict comes first.
    assert!(html.find("<section id=\"verdict\"") < html.find("<section id=\"run\""));
}

#[test]
fn schema_accepts_every_document_and_rejects_sentinels() {
    let schema_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/documents.schema.json");
    let schema: Value = serde_json::from_str(&fs::read_to_string(schema_path).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let (_root, dir) = fixture_dir();
    let docs = load_documents(&dir).unwrap();
    assert!(docs.len() > 40);
    // The fixture run, and one run of every profile (host-route fields included).
    let every_profile = common::profiles::every_profile_run();
    assert!(
        every_profile
            .iter()
            .any(|d| d.body().get("localPref").is_some()),
        "no host-route document among the profiles' runs"
    );
    for doc in docs.iter().chain(&every_profile) {
        let errors: Vec<String> = validator
            .iter_errors(doc.body())
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", doc.metric_name());
    }
    let quantile = docs
        .iter()
        .find(|d| d.text("quantileName") == Some("VMReady"))
        .unwrap()
        .body()
        .clone();
    let mut sentinel = quantile.clone();
    sentinel["P99"] = serde_json::json!(-9223372036854i64);
    assert!(
        !validator.is_valid(&sentinel),
        "negative latency sentinel accepted"
    );
    let mut no_uuid = quantile.clone();
    no_uuid.as_object_mut().unwrap().remove("uuid");
    assert!(!validator.is_valid(&no_uuid));
    let mut unknown = quantile;
    unknown["metricName"] = serde_json::json!("somethingElse");
    assert!(!validator.is_valid(&unknown));
    let vmi = docs
        .iter()
        .find(|d| d.metric_name() == "vmiLatencyMeasurement")
        .unwrap()
        .body()
        .clone();
    let mut bad = vmi.clone();
    bad["vmReadyLatency"] = serde_json::json!(-1);
    assert!(!validator.is_valid(&bad), "-1 latency accepted");
    let mut bad_missing = vmi;
    bad_missing["missing"] = serde_json::json!({"vmReadyLatency": 0});
    assert!(
        !validator.is_valid(&bad_missing),
        "a missing value must be a reason string"
    );
}

#[test]
fn a_killed_run_leaves_what_it_measured() {
    let root = tempfile::tempdir().unwrap();
    let mut recorder = RunRecorder::start(
        root.path(),
        common::run_description(common::UUID, "http://127.0.0.1:9200"),
        Redactor::new(),
    )
    .unwrap();
    recorder.record(&common::iteration_samples(0)).unwrap();
    // Simulate a kill: the recorder is dropped without `finish`.
    drop(recorder);
    let docs = load_documents(&root.path().join(common::UUID)).unwrap();
    let summary = docs
        .iter()
        .find(|d| d.metric_name() == "jobSummary")
        .unwrap();
    assert_eq!(summary.body()["passed"], false);
    assert!(
        summary
            .text("executionErrors")
            .unwrap()
            .contains("run did not finish")
    );
    assert_eq!(
        docs.iter()
            .filter(|d| d.metric_name() == "vmiLatencyMeasurement")
            .count(),
        2
    );
    assert!(
        !docs
            .iter()
            .any(|d| d.metric_name().ends_with("QuantilesMeasurement"))
    );
}

#[test]
fn no_credential_reaches_any_file() {
    let (_root, dir) = fixture_dir();
    for (name, text) in files(&dir) {
        assert!(!text.contains(common::CANARY), "{name} leaks the canary");
    }
    let summary = fs::read_to_string(dir.join("jobSummary.json")).unwrap();
    assert!(summary.contains("https://***@es.example:9200"));
}

#[test]
fn compare_table_and_json_match_goldens() {
    use vmbgp_reporters::compare::{compare, default_tolerances};
    use vmbgp_reporters::document::Document;
    let root = tempfile::tempdir().unwrap();
    let baseline =
        common::write_fixture_run(root.path(), "baseline-run", "http://h", Redactor::new());
    let current =
        common::write_fixture_run(root.path(), "current-run", "http://h", Redactor::new());
    let baseline = load_documents(&baseline.dir).unwrap();
    // The current run: route convergence 50 % slower, one more VM never Ready.
    let current: Vec<Document> = load_documents(&current.dir)
        .unwrap()
        .into_iter()
        .map(|d| {
            let mut body = d.body().clone();
            match d.text("quantileName") {
                Some("AdvertiseFib") => {
                    for stat in ["P99", "P95", "P50", "max"] {
                        body[stat] = serde_json::json!(body[stat].as_f64().unwrap() * 1.5);
                    }
                }
                Some("VMReady") => body["missingCount"] = serde_json::json!(2),
                _ => {}
            }
            Document::from_value(body).unwrap()
        })
        .collect();
    let comparison = compare(&baseline, &current, &default_tolerances());
    assert!(comparison.has_regression());
    check_golden("compare.txt", &comparison.to_table());
    let json: Value = serde_json::from_str(&comparison.to_json()).unwrap();
    assert_eq!(json["regression"], true);
    let regressions: Vec<String> = json["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["verdict"] == "regression")
        .map(|r| {
            format!(
                "{}/{} {}",
                r["metricName"].as_str().unwrap(),
                r["quantileName"].as_str().unwrap(),
                r["statistic"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        regressions,
        vec![
            "routeConvergenceQuantilesMeasurement/AdvertiseFib P99",
            "routeConvergenceQuantilesMeasurement/AdvertiseFib P50",
            "vmiLatencyQuantilesMeasurement/VMReady missingCount",
        ]
    );
}

#[test]
fn a_sample_given_twice_is_refused_and_leaves_no_trace() {
    let root = tempfile::tempdir().unwrap();
    let mut recorder = RunRecorder::start(
        root.path(),
        common::run_description(common::UUID, "http://127.0.0.1:9200"),
        Redactor::new(),
    )
    .unwrap();
    recorder.record(&common::iteration_samples(0)).unwrap();
    let error = recorder.record(&common::iteration_samples(0)).unwrap_err();
    let message = format!("{error}: {}", std::error::Error::source(&error).unwrap());
    assert!(message.contains("already recorded"), "{message}");
    recorder.record(&common::iteration_samples(1)).unwrap();
    let results = recorder.finish(&common::run_end(), &[]).unwrap();
    let docs = load_documents(&results.dir).unwrap();
    let vm_ready = docs
        .iter()
        .find(|d| d.text("quantileName") == Some("VMReady"))
        .unwrap();
    // 2 VMs per iteration, 2 iterations, one VMReady missing: the refused batch did not count.
    assert_eq!(vm_ready.number("count"), Some(3.0));
    assert_eq!(vm_ready.number("missingCount"), Some(1.0));
}

#[test]
fn saved_results_render_the_same_report() {
    let (_root, dir) = fixture_dir();
    let summary = fs::read_to_string(dir.join("summary.txt")).unwrap();
    let html = fs::read_to_string(dir.join("report.html")).unwrap();
    fs::remove_file(dir.join("report.html")).unwrap();
    let rendered = vmbgp_reporters::recorder::render_saved_results(
        &dir,
        &vmbgp_reporters::thresholds::default_thresholds(),
        &Redactor::new(),
    )
    .unwrap();
    assert!(!rendered.passed);
    assert_eq!(rendered.summary, summary);
    assert_eq!(fs::read_to_string(dir.join("report.html")).unwrap(), html);
}

/// A run cut short by a signal: its thresholds are skipped with that reason instead of judged on
/// partial data (the fixture run fails two thresholds when judged), and it does not pass.
#[test]
fn a_run_cut_short_skips_its_thresholds_with_the_reason() {
    let root = tempfile::tempdir().unwrap();
    let mut recorder = vmbgp_reporters::recorder::RunRecorder::start(
        root.path(),
        common::run_description(common::UUID, "http://127.0.0.1:9"),
        Redactor::new(),
    )
    .unwrap();
    recorder.record(&common::iteration_samples(0)).unwrap();
    let mut end = common::run_end();
    end.cut_short = Some("the run was interrupted by a signal".into());
    end.execution_errors = vec!["interrupted by a signal".into()];
    let results = recorder
        .finish(&end, &vmbgp_reporters::thresholds::default_thresholds())
        .unwrap();
    assert!(!results.passed);
    assert!(!results.thresholds.results.is_empty());
    for result in &results.thresholds.results {
        assert!(
            matches!(
                &result.verdict,
                vmbgp_reporters::thresholds::ThresholdVerdict::Skipped { reason }
                    if reason.contains("interrupted by a signal")
            ),
            "{result:?}"
        );
    }
    assert!(results.summary.contains("skipped"), "{}", results.summary);
    assert!(!results.summary.contains("violated"), "{}", results.summary);
}
