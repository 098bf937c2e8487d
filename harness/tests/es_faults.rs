//! Elasticsearch faults through the real binary (`vmbgp-bench index`), against the in-repo
//! ES-compatible test server on 127.0.0.1: a server that comes up late, 503s on the index check,
//! a hung server and a hung `_bulk` (bounded by `--es-timeout`, exit 6), refused items listed
//! (the first 10 and "and M more"), "already present" as the server says it, and bad directories
//! refused with exit 2 before anything is contacted.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod common;

use common::bench;
use serde_json::{Value, json};
use vmbgp_reporters::test_server::{Behaviour, EsTestServer, HungServer};

const INDEX: &str = "ripsaw-kube-burner-vm-bgp";
const UUID: &str = "es-faults-run";

/// A results directory as a run writes it: `jobSummary.json`, `vms` VM latency documents and one
/// quantile document. Returns the directory and its document count.
fn results_dir(root: &Path, vms: usize) -> (PathBuf, usize) {
    let dir = root.join(UUID);
    std::fs::create_dir_all(&dir).expect("dir");
    let summary = json!([{
        "uuid": UUID, "metricName": "jobSummary", "jobName": "vm-bgp",
        "timestamp": "2026-11-28T00:00:00Z", "endTimestamp": "2026-11-28T00:10:00Z",
        "elapsedTime": 600.0, "passed": true, "version": "test",
        "jobConfig": {"profile": "vm-bgp", "shape": "scale", "layout": "per-iteration",
                      "jobIterations": 1, "vm_count": vms, "name": "vm-bgp"},
        "advertisementMode": "subnet", "totalNodes": 3, "metadata": {}
    }]);
    std::fs::write(dir.join("jobSummary.json"), summary.to_string()).expect("summary");
    let latencies: Vec<Value> = (0..vms)
        .map(|i| {
            json!({"uuid": UUID, "metricName": "vmiLatencyMeasurement", "jobName": "vm-bgp",
                "timestamp": "2026-11-28T00:01:00Z", "namespace": "vmbgp-1",
                "vmName": format!("vm-{i}"), "jobIteration": 1, "vmReadyLatency": 1000.5 + i as f64,
                "metadata": {}})
        })
        .collect();
    std::fs::write(
        dir.join("vmiLatencyMeasurement-vm-bgp.json"),
        Value::Array(latencies).to_string(),
    )
    .expect("latencies");
    let quantiles = json!([{
        "uuid": UUID, "metricName": "vmiLatencyQuantilesMeasurement", "jobName": "vm-bgp",
        "quantileName": "VMReady", "timestamp": "2026-11-28T00:10:00Z", "metadata": {},
        "P99": 1000.0, "P95": 1000.0, "P50": 1000.0, "min": 1000.0, "max": 1000.0, "avg": 1000.0,
        "count": vms, "missingCount": 0, "notApplicableCount": 0, "unit": "ms", "method": "kube-burner"
    }]);
    std::fs::write(
        dir.join("vmiLatencyQuantilesMeasurement-vm-bgp.json"),
        quantiles.to_string(),
    )
    .expect("quantiles");
    (dir, vms + 2)
}

async fn index(dir: &Path, url: &str, es_timeout: &str) -> (Option<i32>, String, String) {
    bench(&[
        "index",
        dir.to_str().expect("utf8"),
        "--es-server",
        url,
        "--es-index",
        INDEX,
        "--es-timeout",
        es_timeout,
    ])
    .await
}

/// A port nothing listens on now (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_retries_a_refused_connection_until_the_server_comes_up() {
    let root = tempfile::tempdir().expect("tempdir");
    let (dir, count) = results_dir(root.path(), 3);
    let port = free_port();
    let late = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        EsTestServer::start_on(port).await.expect("late server")
    });
    let started = Instant::now();
    let (code, stdout, stderr) = index(&dir, &format!("http://127.0.0.1:{port}"), "60s").await;
    let elapsed = started.elapsed();
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(elapsed >= Duration::from_millis(1500), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(30), "{elapsed:?}");
    // Each failed attempt is logged: its number, what failed and the next delay.
    assert!(
        stderr.contains("attempt=1")
            && stderr.contains("connection failed")
            && stderr.contains("next_delay_ms")
            && stderr.contains("checking index"),
        "{stderr}"
    );
    assert!(
        stdout.contains(&format!("{count} documents indexed, 0 already present")),
        "{stdout}"
    );
    let server = late.await.expect("server");
    assert_eq!(server.document_count(), count);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_rides_out_503s_on_the_index_check() {
    let root = tempfile::tempdir().expect("tempdir");
    let (dir, count) = results_dir(root.path(), 3);
    let server = EsTestServer::start().await.expect("server");
    server.script_any(vec![Behaviour::Status(503); 3]);
    let (code, stdout, stderr) = index(&dir, &server.url, "60s").await;
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert_eq!(server.document_count(), count);
    let heads = server
        .requests()
        .iter()
        .filter(|r| *r == &format!("HEAD /{INDEX}"))
        .count();
    assert_eq!(heads, 4, "{:?}", server.requests());
    assert!(
        stderr.contains("attempt=3") && stderr.contains("503"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_server_exits_6_at_es_timeout() {
    let root = tempfile::tempdir().expect("tempdir");
    let (dir, _) = results_dir(root.path(), 3);
    let hung = HungServer::start().await.expect("hung server");
    let started = Instant::now();
    let (code, stdout, stderr) = index(&dir, &hung.url, "2s").await;
    let elapsed = started.elapsed();
    assert_eq!(code, Some(6), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        elapsed >= Duration::from_secs(2) && elapsed < Duration::from_secs(15),
        "{elapsed:?}"
    );
    // How long and how many attempts; the documents stay.
    assert!(
        stdout.contains("gave up after")
            && stdout.contains("attempt")
            && stdout.contains("--es-timeout 2.0 s")
            && stdout.contains("timed out"),
        "{stdout}"
    );
    assert!(stdout.contains("the documents stay in"), "{stdout}");
    assert!(dir.join("jobSummary.json").is_file());
    assert!(hung.accepted() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_bulk_exits_6_at_es_timeout() {
    let root = tempfile::tempdir().expect("tempdir");
    let (dir, count) = results_dir(root.path(), 3);
    let server = EsTestServer::start().await.expect("server");
    server.script(vec![Behaviour::Delay(Duration::from_secs(60)); 3]);
    let started = Instant::now();
    let (code, stdout, stderr) = index(&dir, &server.url, "2s").await;
    let elapsed = started.elapsed();
    assert_eq!(code, Some(6), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(elapsed < Duration::from_secs(15), "{elapsed:?}");
    assert!(
        stdout.contains(&format!("{count} failed"))
            && stdout.contains("bulk indexing: gave up after")
            && stdout.contains("--es-timeout 2.0 s"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_items_are_listed_ten_and_counted_beyond() {
    let root = tempfile::tempdir().expect("tempdir");
    let (dir, count) = results_dir(root.path(), 13);
    let server = EsTestServer::start().await.expect("server");
    server.script([Behaviour::Items(vec![400; count])]);
    let (code, stdout, stderr) = index(&dir, &server.url, "30s").await;
    assert_eq!(code, Some(6), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let listed = stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("not indexed:"))
        .count();
    assert_eq!(listed, 10, "{stdout}");
    assert!(
        stdout.contains(&format!("and {} more not indexed", count - 10)),
        "{stdout}"
    );
    assert!(stdout.contains("mapper_parsing_exception"), "{stdout}");
    assert!(stdout.contains(&format!("{count} failed")), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_server_at_the_same_url_gets_every_document() {
    let root = tempfile::tempdir().expect("tempdir");
    let (dir, count) = results_dir(root.path(), 3);
    let server = EsTestServer::start().await.expect("server");
    let (code, stdout, stderr) = index(&dir, &server.url, "30s").await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let (code, stdout, stderr) = index(&dir, &server.url, "30s").await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("0 documents indexed, {count} already present")),
        "{stdout}"
    );
    {
        let mut state = server.state.lock().expect("state");
        state.documents.clear();
        state.indexes.clear();
        state.mappings.clear();
    }
    let (code, stdout, stderr) = index(&dir, &server.url, "30s").await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("{count} documents indexed, 0 already present")),
        "{stdout}"
    );
    assert_eq!(server.document_count(), count);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_directories_exit_2_before_anything_is_contacted() {
    let root = tempfile::tempdir().expect("tempdir");
    let (good, _) = results_dir(root.path(), 2);
    let server = EsTestServer::start().await.expect("server");
    let missing = root.path().join("absent");
    let file = root.path().join("plain-file");
    std::fs::write(&file, "not a directory").expect("file");
    let empty = root.path().join("empty");
    std::fs::create_dir(&empty).expect("empty");
    let broken = root.path().join("broken");
    std::fs::create_dir(&broken).expect("broken");
    std::fs::copy(good.join("jobSummary.json"), broken.join("jobSummary.json")).expect("copy");
    std::fs::write(
        broken.join("vmiLatencyMeasurement-vm-bgp.json"),
        "[{\"uuid\":",
    )
    .expect("bad");
    let bad_summary = root.path().join("bad-summary");
    std::fs::create_dir(&bad_summary).expect("bad summary");
    std::fs::write(bad_summary.join("jobSummary.json"), "{}").expect("summary");
    for (dir, expected) in [
        (&missing, "does not exist"),
        (&file, "is not a directory"),
        (&empty, "holds no jobSummary.json"),
        (
            &broken,
            "vmiLatencyMeasurement-vm-bgp.json is not a JSON array",
        ),
        (&bad_summary, "jobSummary.json is not a JSON array"),
    ] {
        let (code, stdout, stderr) = index(dir, &server.url, "30s").await;
        assert_eq!(code, Some(2), "{}: {stdout}{stderr}", dir.display());
        assert!(
            stderr.contains(&dir.display().to_string()) && stderr.contains(expected),
            "{stderr}"
        );
    }
    assert!(server.requests().is_empty(), "{:?}", server.requests());
}

#[tokio::test]
async fn es_timeout_must_be_a_duration_in_range() {
    let root = tempfile::tempdir().expect("tempdir");
    let (dir, _) = results_dir(root.path(), 1);
    let url = format!("http://127.0.0.1:{}", free_port());
    for (bad, why) in [
        ("0s", "must be from 100ms to 1day"),
        ("soon", "invalid value 'soon'"),
        ("2d", "must be from 100ms to 1day"),
    ] {
        let (code, stdout, stderr) = index(&dir, &url, bad).await;
        assert_eq!(code, Some(2), "{bad}: {stdout}{stderr}");
        assert!(
            stderr.contains("--es-timeout") && stderr.contains(why),
            "{stderr}"
        );
    }
    // A valid one is the deadline: nothing listens, so the upload gives up after it, exit 6.
    let started = Instant::now();
    let (code, stdout, stderr) = index(&dir, &url, "1s").await;
    assert_eq!(code, Some(6), "{stdout}{stderr}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        stdout.contains("--es-timeout 1.0 s") && stdout.contains("connection failed"),
        "{stdout}"
    );
}
