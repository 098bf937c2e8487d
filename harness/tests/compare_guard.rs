//! `compare` through the real binary: runs of another profile, layout or size are refused with
//! exit 2 naming the difference unless `--force`; a partial run is marked in the table and the
//! JSON; an unreachable Elasticsearch exits 4 (environment unavailable), not 2.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod common;

use common::bench;
use serde_json::{Value, json};

struct Run<'a> {
    name: &'a str,
    profile: &'a str,
    shape: &'a str,
    layout: &'a str,
    iterations: u64,
    vm_count: u64,
    execution_errors: Option<&'a str>,
    vm_ready_p99: f64,
}

impl Default for Run<'_> {
    fn default() -> Self {
        Run {
            name: "run",
            profile: "vm-bgp",
            shape: "scale",
            layout: "per-iteration",
            iterations: 72,
            vm_count: 10,
            execution_errors: None,
            vm_ready_p99: 1000.0,
        }
    }
}

fn write_run(root: &Path, run: &Run) -> PathBuf {
    let dir = root.join(run.name);
    std::fs::create_dir_all(&dir).expect("dir");
    let mut summary = json!({
        "uuid": run.name, "metricName": "jobSummary", "jobName": run.profile,
        "timestamp": "2026-11-28T00:00:00Z", "endTimestamp": "2026-11-28T00:10:00Z",
        "elapsedTime": 600.0, "passed": run.execution_errors.is_none(), "version": "test",
        "jobConfig": {"profile": run.profile, "shape": run.shape, "layout": run.layout,
                      "jobIterations": run.iterations, "vm_count": run.vm_count,
                      "name": run.profile},
        "advertisementMode": "subnet", "totalNodes": 3
    });
    if let Some(errors) = run.execution_errors {
        summary["executionErrors"] = json!(errors);
    }
    std::fs::write(dir.join("jobSummary.json"), json!([summary]).to_string()).expect("summary");
    let p99 = run.vm_ready_p99;
    let quantile = json!([{
        "uuid": run.name, "metricName": "vmiLatencyQuantilesMeasurement", "jobName": run.profile,
        "quantileName": "VMReady", "timestamp": "2026-11-28T00:10:00Z", "metadata": {},
        "P99": p99, "P95": p99, "P50": p99, "min": p99, "max": p99, "avg": p99,
        "count": 10, "missingCount": 0, "notApplicableCount": 0, "unit": "ms", "method": "kube-burner"
    }]);
    std::fs::write(
        dir.join(format!(
            "vmiLatencyQuantilesMeasurement-{}.json",
            run.profile
        )),
        quantile.to_string(),
    )
    .expect("quantiles");
    dir
}

fn arg(path: &Path) -> &str {
    path.to_str().expect("utf8")
}

#[tokio::test]
async fn another_profile_is_refused_with_exit_2_unless_forced() {
    let root = tempfile::tempdir().expect("tempdir");
    let base = write_run(
        root.path(),
        &Run {
            name: "base",
            ..Run::default()
        },
    );
    let churn = write_run(
        root.path(),
        &Run {
            name: "churn",
            profile: "vm-bgp-churn",
            shape: "churn",
            layout: "shared",
            vm_ready_p99: 2000.0,
            ..Run::default()
        },
    );
    let (code, stdout, stderr) = bench(&["compare", arg(&base), arg(&churn)]).await;
    assert_eq!(code, Some(2), "{stdout}{stderr}");
    assert!(
        stderr.contains("baseline profile vm-bgp, current vm-bgp-churn")
            && stderr.contains("baseline network layout per-iteration, current shared")
            && stderr.contains("--force"),
        "{stderr}"
    );
    assert!(!stdout.contains("REGRESSION"), "{stdout}");
    // Forced: compared, the difference still shown, the verdict stands.
    let (code, stdout, stderr) = bench(&["compare", arg(&base), arg(&churn), "--force"]).await;
    assert_eq!(code, Some(7), "{stdout}{stderr}");
    assert!(
        stdout.contains("baseline profile vm-bgp, current vm-bgp-churn")
            && stdout.contains("compared anyway: --force"),
        "{stdout}"
    );
    let (code, stdout, stderr) =
        bench(&["compare", arg(&base), arg(&churn), "--force", "--json"]).await;
    assert_eq!(code, Some(7), "{stdout}{stderr}");
    let json: Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(json["forced"], true);
    assert!(
        json["differences"]
            .as_array()
            .is_some_and(|d| d.iter().any(|d| d == "baseline shape scale, current churn")),
        "{json}"
    );
}

#[tokio::test]
async fn another_size_is_refused_unless_forced() {
    let root = tempfile::tempdir().expect("tempdir");
    let base = write_run(
        root.path(),
        &Run {
            name: "base",
            ..Run::default()
        },
    );
    let small = write_run(
        root.path(),
        &Run {
            name: "small",
            iterations: 10,
            vm_count: 5,
            ..Run::default()
        },
    );
    let (code, stdout, stderr) = bench(&["compare", arg(&base), arg(&small)]).await;
    assert_eq!(code, Some(2), "{stdout}{stderr}");
    assert!(
        stderr.contains("baseline iterations 72, current 10")
            && stderr.contains("baseline VMs per iteration 10, current 5"),
        "{stderr}"
    );
    let (code, stdout, stderr) = bench(&["compare", arg(&base), arg(&small), "--force"]).await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
}

#[tokio::test]
async fn a_partial_run_is_marked_in_text_and_json() {
    let root = tempfile::tempdir().expect("tempdir");
    let base = write_run(
        root.path(),
        &Run {
            name: "base",
            ..Run::default()
        },
    );
    let interrupted = write_run(
        root.path(),
        &Run {
            name: "interrupted",
            execution_errors: Some(
                "interrupted by a signal; threshold violated: vmReachability/FirstReply missingCount <= 0 but was 3",
            ),
            ..Run::default()
        },
    );
    let (code, stdout, stderr) = bench(&["compare", arg(&base), arg(&interrupted)]).await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("current run is partial: interrupted (interrupted by a signal)"),
        "{stdout}"
    );
    assert!(!stdout.contains("baseline run is partial"), "{stdout}");
    let (code, stdout, stderr) = bench(&["compare", arg(&interrupted), arg(&base), "--json"]).await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let json: Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(json["baselinePartial"]["reasons"], json!(["interrupted"]));
    assert_eq!(json["currentPartial"], Value::Null);
    // A run that only failed thresholds is complete.
    let thresholds_only = write_run(
        root.path(),
        &Run {
            name: "thresholds-only",
            execution_errors: Some(
                "threshold violated: routeConvergence/AdvertiseFib P99 <= 5 s but was 6 s",
            ),
            ..Run::default()
        },
    );
    let (code, stdout, stderr) = bench(&["compare", arg(&base), arg(&thresholds_only)]).await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(!stdout.contains("partial"), "{stdout}");
}

#[tokio::test]
async fn an_unreachable_elasticsearch_exits_4() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    let (code, stdout, stderr) = bench(&[
        "compare",
        "baseline-uuid",
        "current-uuid",
        "--es-server",
        &url,
        "--es-index",
        "ripsaw-kube-burner-vm-bgp",
        "--es-timeout",
        "1s",
    ])
    .await;
    assert_eq!(code, Some(4), "{stdout}{stderr}");
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(
        stderr.contains("searching run baseline-uuid")
            && stderr.contains("gave up after")
            && stderr.contains("connection failed"),
        "{stderr}"
    );
}
