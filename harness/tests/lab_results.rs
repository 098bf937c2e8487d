//! Results leaving the harness: a lab run with `--es-server` indexes every document it wrote into
//! an Elasticsearch-compatible test server, without leaking the URL's password anywhere; `index`
//! re-uploads without duplicates; an unreachable server gives exit 6 with the documents kept;
//! `compare` judges two runs.

use std::path::Path;

mod common;

use serde_json::Value;
use vmbgp_lab_api::{Lab, LabConfig};
use vmbgp_reporters::test_server::EsTestServer;

const PROFILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/lifecycle-only.yaml"
);
const CANARY: &str = "canary-pw-7f3a";

use common::bench;

async fn lab_run(lab_dir: &Path, uuid: &str, extra: &[&str]) -> (Option<i32>, String, String) {
    let kubeconfig = lab_dir.join("kubeconfig");
    let results = lab_dir.join("results");
    let mut args = vec![
        "run",
        "--profile",
        PROFILE,
        "--uuid",
        uuid,
        "--iterations",
        "1",
        "--vm-count",
        "2",
        "--kubeconfig",
        kubeconfig.to_str().expect("utf8"),
        "--results-dir",
        results.to_str().expect("utf8"),
        "--observe-bgp",
        "false",
        "--probe-vms",
        "false",
    ];
    args.extend_from_slice(extra);
    bench(&args).await
}

/// Every file below `dir`, as text.
fn all_text(dir: &Path) -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(dir).expect("dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            text.push_str(&all_text(&path));
        } else if let Ok(content) = std::fs::read_to_string(&path) {
            text.push_str(&content);
        }
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_run_indexes_every_document_and_never_leaks_the_password() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lab = Lab::start(LabConfig {
        frr_namespace: "openshift-frr-k8s".into(),
        ..LabConfig::default()
    })
    .await
    .expect("lab");
    lab.write_kubeconfig(&dir.path().join("kubeconfig"))
        .expect("kubeconfig");
    let es = EsTestServer::start().await.expect("es");
    let url = format!("http://elastic:{CANARY}@127.0.0.1:{}", es.port);
    let uuid = "lab-es-1";
    let (code, stdout, stderr) = lab_run(
        dir.path(),
        uuid,
        &[
            "--es-server",
            &url,
            "--es-index",
            "ripsaw-kube-burner-vm-bgp",
        ],
    )
    .await;
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let results = dir.path().join("results").join(uuid);
    let saved: Vec<Value> = vmbgp_reporters::local::load_documents(&results)
        .expect("saved documents")
        .iter()
        .map(|d| d.body().clone())
        .collect();
    assert_eq!(
        es.document_count(),
        saved.len(),
        "every saved document is indexed once"
    );
    let metric_names: std::collections::BTreeSet<String> = {
        let state = es.state.lock().expect("state");
        state
            .documents
            .values()
            .filter_map(|d| d["metricName"].as_str().map(str::to_string))
            .collect()
    };
    for name in [
        "jobSummary",
        "vmiLatencyMeasurement",
        "vmiLatencyQuantilesMeasurement",
    ] {
        assert!(
            metric_names.contains(name),
            "{name} not indexed: {metric_names:?}"
        );
    }
    // The canary appears nowhere: not in output, result files or indexed bodies.
    assert!(
        !stdout.contains(CANARY) && !stderr.contains(CANARY),
        "leaked in output"
    );
    assert!(
        !all_text(&results).contains(CANARY),
        "leaked in result files"
    );
    assert!(
        es.bulk_bodies().iter().all(|b| !b.contains(CANARY)),
        "leaked in indexed documents"
    );

    // `index` again: nothing is duplicated.
    let before = es.document_count();
    let (code, stdout, stderr) = bench(&[
        "index",
        results.to_str().expect("utf8"),
        "--es-server",
        &url,
        "--es-index",
        "ripsaw-kube-burner-vm-bgp",
    ])
    .await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert_eq!(es.document_count(), before);
    assert!(
        stdout.contains("0 documents indexed")
            && stdout.contains(&format!("{before} already present")),
        "{stdout}"
    );

    // compare the run with itself: no regression.
    let (code, stdout, stderr) = bench(&[
        "compare",
        results.to_str().expect("utf8"),
        results.to_str().expect("utf8"),
    ])
    .await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("no regression") && stdout.contains("VMReady"),
        "{stdout}"
    );
    lab.stop().await.expect("lab stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_es_exits_6_and_keeps_the_documents() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lab = Lab::start(LabConfig {
        frr_namespace: "openshift-frr-k8s".into(),
        ..LabConfig::default()
    })
    .await
    .expect("lab");
    lab.write_kubeconfig(&dir.path().join("kubeconfig"))
        .expect("kubeconfig");
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let url = format!("http://127.0.0.1:{closed_port}");
    let uuid = "lab-es-down";
    let (code, stdout, stderr) = lab_run(
        dir.path(),
        uuid,
        &[
            "--es-server",
            &url,
            "--es-index",
            "ripsaw-kube-burner-vm-bgp",
            // Refused connections are retried until --es-timeout: keep the test short.
            "--es-timeout",
            "2s",
        ],
    )
    .await;
    assert_eq!(code, Some(6), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("vmbgp-bench index"), "{stdout}");
    let saved = vmbgp_reporters::local::load_documents(&dir.path().join("results").join(uuid))
        .expect("saved");
    assert!(
        saved
            .iter()
            .any(|d| d.metric_name() == "vmiLatencyMeasurement")
    );
    lab.stop().await.expect("lab stops");
}

#[tokio::test]
async fn compare_exits_7_on_a_regression() {
    let dir = tempfile::tempdir().expect("tempdir");
    let write_run = |name: &str, p99: f64| {
        let run = dir.path().join(name);
        std::fs::create_dir_all(&run).expect("dir");
        let doc = serde_json::json!([{
            "uuid": name, "metricName": "vmiLatencyQuantilesMeasurement", "jobName": "vm-bgp",
            "quantileName": "VMReady", "timestamp": "2026-11-28T00:00:00Z", "metadata": {},
            "P99": p99, "P95": p99, "P50": p99, "min": p99, "max": p99, "avg": p99,
            "count": 10, "missingCount": 0, "notApplicableCount": 0, "unit": "ms", "method": "kube-burner"
        }]);
        std::fs::write(
            run.join("vmiLatencyQuantilesMeasurement-vm-bgp.json"),
            doc.to_string(),
        )
        .expect("write");
        run
    };
    let base = write_run("base", 1000.0);
    let slow = write_run("slow", 2000.0);
    let (code, stdout, stderr) = bench(&[
        "compare",
        base.to_str().expect("utf8"),
        slow.to_str().expect("utf8"),
        "--json",
    ])
    .await;
    assert_eq!(code, Some(7), "{stdout}{stderr}");
    let json: Value = serde_json::from_str(&stdout).expect("json output");
    assert!(json.to_string().contains("egression"), "{json}");
}
