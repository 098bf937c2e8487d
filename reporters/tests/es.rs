//! Elasticsearch/OpenSearch indexing against the ES-compatible test server: retries with
//! backoff on 429/500/timeouts, per-item retry, residual failures reported while documents
//! stay on disk, `index` uploading exactly once, idempotent ids, and credential redaction
//! in logs, files, reports, documents and errors. Faults under one deadline: a server that
//! comes up late, 503s on the index check, a hung server and a hung `_bulk`; "already present"
//! as the server says it; bad directories refused before anything is sent.
// Test helpers outside #[test] functions unwrap too: a failed setup step aborts the test.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::es_server::{Behaviour, EsTestServer, HungServer};
use vmbgp_reporters::compare::{CompareError, RunSource, compare_runs, default_tolerances};
use vmbgp_reporters::es::{
    EsClient, EsError, EsOptions, IndexError, RetryPolicy, index_saved_results, load_results_dir,
};
use vmbgp_reporters::local::load_documents;
use vmbgp_reporters::redact::Redactor;

const INDEX: &str = "ripsaw-kube-burner-vm-bgp";

fn options(url: &str) -> EsOptions {
    let mut options = EsOptions::new(url, INDEX);
    options.request_timeout = Duration::from_millis(300);
    options.retry = RetryPolicy {
        max_attempts: 4,
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(80),
    };
    options
}

fn fixture(root: &Path, uuid: &str, redactor: Redactor) -> std::path::PathBuf {
    common::write_fixture_run(root, uuid, "http://127.0.0.1:9200", redactor).dir
}

#[tokio::test]
async fn connect_creates_index_without_mapping_and_installs_template() {
    let server = EsTestServer::start().await.unwrap();
    server.state.lock().unwrap().health_failures = 1;
    let template =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../ci/elasticsearch/index-template.json");
    let mut options = options(&server.url);
    options.index_template = Some(template.clone());
    let client = EsClient::connect(options.clone()).await.unwrap();
    {
        let state = server.state.lock().unwrap();
        assert!(state.indexes.contains(INDEX));
        assert_eq!(state.index_creations, 1);
        let expected: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&template).unwrap()).unwrap();
        assert_eq!(state.templates.get("vmbgp-bench"), Some(&expected));
    }
    // Connecting again finds the index and does not create it twice.
    EsClient::connect(options).await.unwrap();
    assert_eq!(server.state.lock().unwrap().index_creations, 1);
    assert_eq!(client.index(), INDEX);
}

#[tokio::test]
async fn retries_429_500_and_timeouts_with_backoff_then_indexes_once() {
    let root = tempfile::tempdir().unwrap();
    let dir = fixture(root.path(), common::UUID, Redactor::new());
    let documents = load_documents(&dir).unwrap();
    let server = EsTestServer::start().await.unwrap();
    server.script([
        Behaviour::Status(429),
        Behaviour::Status(500),
        Behaviour::Delay(Duration::from_millis(600)),
    ]);
    let client = EsClient::connect(options(&server.url)).await.unwrap();
    let outcome = client.index_documents(&documents).await;
    assert!(outcome.is_complete(), "{:?}", outcome.failures);
    assert_eq!(outcome.indexed, documents.len());
    assert_eq!(outcome.requests, 4);
    assert_eq!(server.bulk_sizes(), vec![documents.len(); 4]);
    // Backoff: every retry waited at least half the exponential delay (20, 40 ms → ≥10, ≥20).
    let times = server.state.lock().unwrap().bulk_times.clone();
    assert!(times[1] - times[0] >= Duration::from_millis(10));
    assert!(times[2] - times[1] >= Duration::from_millis(20));
    // The timed-out request is also applied by the server later; ids make that harmless.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(server.document_count(), documents.len());
    // Every bulk line pair carries the deterministic id of its document.
    let body = &server.bulk_bodies()[3];
    for (line, document) in body.lines().step_by(2).zip(&documents) {
        let action: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(action["index"]["_id"], document.id());
        assert_eq!(action["index"]["_index"], INDEX);
    }
}

#[tokio::test]
async fn item_failures_are_retried_per_item_and_permanent_ones_reported() {
    let root = tempfile::tempdir().unwrap();
    let dir = fixture(root.path(), common::UUID, Redactor::new());
    let documents = load_documents(&dir).unwrap();
    let server = EsTestServer::start().await.unwrap();
    server.script([Behaviour::Items(vec![201, 429, 400, 503])]);
    let client = EsClient::connect(options(&server.url)).await.unwrap();
    let outcome = client.index_documents(&documents).await;
    // Only the two retryable items were sent again.
    assert_eq!(server.bulk_sizes(), vec![documents.len(), 2]);
    let retried = &server.bulk_bodies()[1];
    assert!(retried.contains(documents[1].id()) && retried.contains(documents[3].id()));
    assert_eq!(outcome.failures.len(), 1);
    let failure = &outcome.failures[0];
    assert_eq!(failure.id, documents[2].id());
    assert_eq!(failure.status, Some(400));
    assert!(failure.reason.contains("mapper_parsing_exception"));
    assert_eq!(outcome.indexed, documents.len() - 1);
    assert!(!outcome.is_complete());
}

#[tokio::test]
async fn a_too_large_request_is_split() {
    let root = tempfile::tempdir().unwrap();
    let dir = fixture(root.path(), common::UUID, Redactor::new());
    let documents = load_documents(&dir).unwrap();
    let server = EsTestServer::start().await.unwrap();
    server.script([Behaviour::TooLarge, Behaviour::TooLarge]);
    let client = EsClient::connect(options(&server.url)).await.unwrap();
    let outcome = client.index_documents(&documents).await;
    assert!(outcome.is_complete(), "{:?}", outcome.failures);
    let n = documents.len();
    let (half, rest) = (n / 2, n - n / 2);
    let quarter = half / 2;
    assert_eq!(
        server.bulk_sizes(),
        vec![n, half, quarter, half - quarter, rest]
    );
    assert_eq!(server.document_count(), n);
}

#[tokio::test]
async fn residual_failures_keep_documents_local_and_a_later_index_completes() {
    let root = tempfile::tempdir().unwrap();
    let dir = fixture(root.path(), common::UUID, Redactor::new());
    let count = load_documents(&dir).unwrap().len();
    let server = EsTestServer::start().await.unwrap();
    server.script(vec![Behaviour::Status(500); 4]);
    let client = EsClient::connect(options(&server.url)).await.unwrap();
    let outcome = index_saved_results(&dir, &client).await.unwrap();
    assert!(!outcome.is_complete());
    assert_eq!(outcome.failures.len(), count);
    assert!(
        outcome
            .failures
            .iter()
            .all(|f| f.status == Some(500) && f.reason.starts_with("gave up after 4 attempts"))
    );
    assert_eq!(server.document_count(), 0);
    // The documents are still on disk, and nothing is recorded as indexed.
    assert_eq!(load_documents(&dir).unwrap().len(), count);
    // `vmbgp-bench index results/<uuid>` later uploads all of them.
    let outcome = index_saved_results(&dir, &client).await.unwrap();
    assert!(outcome.is_complete());
    assert_eq!((outcome.indexed, outcome.already_indexed), (count, 0));
    assert_eq!(server.document_count(), count);
}

#[tokio::test]
async fn index_uploads_each_document_exactly_once() {
    let root = tempfile::tempdir().unwrap();
    let dir = fixture(root.path(), common::UUID, Redactor::new());
    let documents = load_documents(&dir).unwrap();
    let server = EsTestServer::start().await.unwrap();
    let client = EsClient::connect(options(&server.url)).await.unwrap();
    let first = index_saved_results(&dir, &client).await.unwrap();
    assert_eq!(
        (first.indexed, first.already_indexed, first.requests),
        (documents.len(), 0, 1)
    );
    // The second upload sends every document again; the server says it had them all.
    let second = index_saved_results(&dir, &client).await.unwrap();
    assert!(second.is_complete());
    assert_eq!(
        (second.indexed, second.already_indexed, second.requests),
        (0, documents.len(), 1)
    );
    assert_eq!(server.document_count(), documents.len());
    // Even a forced re-upload cannot duplicate: ids are deterministic.
    let forced = client.index_documents(&documents).await;
    assert!(forced.is_complete());
    assert_eq!(server.document_count(), documents.len());
    // A different index on the same server is a different target and gets its own upload.
    let mut other = options(&server.url);
    other.index = "ripsaw-kube-burner-other".to_owned();
    let other = EsClient::connect(other).await.unwrap();
    let third = index_saved_results(&dir, &other).await.unwrap();
    assert_eq!(third.indexed, documents.len());
}

#[tokio::test]
async fn compare_reads_runs_from_elasticsearch_by_uuid() {
    let root = tempfile::tempdir().unwrap();
    let baseline = fixture(root.path(), "baseline-run", Redactor::new());
    let current = fixture(root.path(), "current-run", Redactor::new());
    let server = EsTestServer::start().await.unwrap();
    let client = EsClient::connect(options(&server.url)).await.unwrap();
    index_saved_results(&baseline, &client).await.unwrap();
    let comparison = compare_runs(
        &RunSource::Elasticsearch {
            uuid: "baseline-run".to_owned(),
        },
        &RunSource::Directory(current),
        &default_tolerances(),
        Some(&client),
        false,
    )
    .await
    .unwrap();
    assert_eq!(comparison.baseline_uuid.as_deref(), Some("baseline-run"));
    assert!(!comparison.has_regression(), "{}", comparison.to_table());
    assert!(comparison.rows.len() > 20);
}

/// A `tracing` writer that keeps everything in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_canary_password_never_leaks() {
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(logs.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = EsTestServer::start().await.unwrap();
    let url_with_canary = format!(
        "http://elastic:{}@127.0.0.1:{}",
        common::CANARY,
        server.port
    );
    server.state.lock().unwrap().health_failures = 1;
    server.script([Behaviour::Status(429), Behaviour::Items(vec![500, 400])]);
    let client = EsClient::connect(options(&url_with_canary)).await.unwrap();
    assert_eq!(
        client.display_url(),
        format!("http://127.0.0.1:{}", server.port)
    );

    // The run records the ES URL (with the canary) in its job config and flags.
    let root = tempfile::tempdir().unwrap();
    let results = common::write_fixture_run(
        root.path(),
        common::UUID,
        &url_with_canary,
        client.redactor().clone(),
    );
    let outcome = index_saved_results(&results.dir, &client).await.unwrap();
    assert!(!outcome.is_complete());
    let outcome_json = serde_json::to_string(&outcome).unwrap();

    // An unreachable server with the canary in its URL: the error chain is clean too.
    let dead = format!("http://elastic:{}@127.0.0.1:{}", common::CANARY, {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    });
    let mut dead_options = options(&dead);
    dead_options.retry.max_attempts = 1;
    let error = EsClient::connect(dead_options).await.unwrap_err();
    let mut error_chain = format!("{error} {error:?}");
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        error_chain.push_str(&format!(" {cause}"));
        source = cause.source();
    }

    // The credentials were used: as a header.
    let auth = server.state.lock().unwrap().authorization.clone();
    assert!(
        auth.iter()
            .all(|a| a.as_deref() == Some("Basic ZWxhc3RpYzpDQU5BUlktcHctN2QxZg=="))
    );

    let log_text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        log_text.contains("retrying"),
        "logs should show the retries: {log_text}"
    );
    assert!(log_text.contains(&format!("127.0.0.1:{}", server.port)));
    let mut haystacks = vec![
        ("log", log_text),
        ("outcome", outcome_json),
        ("error", error_chain),
        ("client debug", format!("{client:?}")),
    ];
    for body in server.bulk_bodies() {
        haystacks.push(("bulk body", body));
    }
    for entry in std::fs::read_dir(&results.dir).unwrap() {
        let path = entry.unwrap().path();
        haystacks.push(("result file", std::fs::read_to_string(&path).unwrap()));
    }
    for (what, text) in haystacks {
        assert!(
            !text.contains(common::CANARY),
            "{what} leaks the canary:\n{text}"
        );
    }
}

fn fault_options(url: &str, deadline: Duration) -> EsOptions {
    let mut options = EsOptions::new(url, INDEX);
    options.deadline = deadline;
    options.retry = RetryPolicy {
        max_attempts: u32::MAX,
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(400),
    };
    options
}

/// A port nothing listens on now (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_comes_up_late_is_retried_until_it_answers() {
    let root = tempfile::tempdir().unwrap();
    let dir = fixture(root.path(), common::UUID, Redactor::new());
    let count = load_documents(&dir).unwrap().len();
    let port = free_port();
    let late = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        EsTestServer::start_on(port).await.unwrap()
    });
    let client = EsClient::new(fault_options(
        &format!("http://127.0.0.1:{port}"),
        Duration::from_secs(20),
    ))
    .unwrap();
    let started = std::time::Instant::now();
    let outcome = index_saved_results(&dir, &client).await.unwrap();
    assert!(outcome.is_complete(), "{:?}", outcome.failures);
    assert_eq!(outcome.indexed, count);
    assert!(started.elapsed() >= Duration::from_millis(1200));
    assert!(started.elapsed() < Duration::from_secs(10));
    let server = late.await.unwrap();
    assert_eq!(server.document_count(), count);
    assert_eq!(server.requests()[0], format!("HEAD /{INDEX}"));
}

#[tokio::test]
async fn the_index_check_rides_out_503s() {
    let root = tempfile::tempdir().unwrap();
    let dir = fixture(root.path(), common::UUID, Redactor::new());
    let server = EsTestServer::start().await.unwrap();
    server.script_any(vec![Behaviour::Status(503); 3]);
    let client = EsClient::new(fault_options(&server.url, Duration::from_secs(20))).unwrap();
    let outcome = index_saved_results(&dir, &client).await.unwrap();
    assert!(outcome.is_complete(), "{:?}", outcome.failures);
    let requests = server.requests();
    assert_eq!(
        requests[..5],
        [
            format!("HEAD /{INDEX}"),
            format!("HEAD /{INDEX}"),
            format!("HEAD /{INDEX}"),
            format!("HEAD /{INDEX}"),
            format!("PUT /{INDEX}"),
        ]
    );
    assert_eq!(server.state.lock().unwrap().index_creations, 1);
}

#[tokio::test]
async fn a_hung_server_costs_the_deadline_not_a_minute_per_request() {
    let root = tempfile::tempdir().unwrap();
    let dir = fixture(root.path(), common::UUID, Redactor::new());
    let hung = HungServer::start().await.unwrap();
    let client = EsClient::new(fault_options(&hung.url, Duration::from_millis(1500))).unwrap();
    let started = std::time::Instant::now();
    let error = index_saved_results(&dir, &client).await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1400) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
    let IndexError::Es(EsError::Unavailable { gave_up, .. }) = &error else {
        panic!("expected Unavailable, got {error:?}");
    };
    assert!(gave_up.deadline_passed);
    assert!(gave_up.attempts >= 1);
    let text = error.to_string();
    assert!(
        text.contains("checking index")
            && text.contains("gave up after")
            && text.contains("--es-timeout 1.5 s")
            && text.contains("timed out"),
        "{text}"
    );
    assert!(hung.accepted() >= 1);
}

#[tokio::test]
async fn a_hung_bulk_gives_up_at_the_deadline_with_every_document_listed() {
    let root = tempfile::tempdir().unwrap();
    let dir = fixture(root.path(), common::UUID, Redactor::new());
    let count = load_documents(&dir).unwrap().len();
    let server = EsTestServer::start().await.unwrap();
    server.script([Behaviour::Delay(Duration::from_secs(30))]);
    let client = EsClient::new(fault_options(&server.url, Duration::from_millis(1500))).unwrap();
    let started = std::time::Instant::now();
    let outcome = index_saved_results(&dir, &client).await.unwrap();
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    assert_eq!(outcome.failures.len(), count);
    assert!(
        outcome
            .failures
            .iter()
            .all(|f| f.reason.contains("deadline (--es-timeout 1.5 s) passed")),
        "{:?}",
        outcome.failures[0]
    );
    let gave_up = outcome.gave_up.expect("gave_up");
    assert!(gave_up.deadline_passed && gave_up.what == "bulk indexing");
    assert!(gave_up.to_string().contains("attempt"), "{gave_up}");
}

#[tokio::test]
async fn already_present_is_what_the_server_says_not_a_local_record() {
    let root = tempfile::tempdir().unwrap();
    let dir = fixture(root.path(), common::UUID, Redactor::new());
    let count = load_documents(&dir).unwrap().len();
    let server = EsTestServer::start().await.unwrap();
    let client = EsClient::new(options(&server.url)).unwrap();
    let first = index_saved_results(&dir, &client).await.unwrap();
    assert_eq!((first.indexed, first.already_indexed), (count, 0));
    // A fresh server at the same URL: nothing of the run is there any more.
    {
        let mut state = server.state.lock().unwrap();
        state.documents.clear();
        state.indexes.clear();
        state.mappings.clear();
    }
    let again = index_saved_results(&dir, &client).await.unwrap();
    assert!(again.is_complete(), "{:?}", again.failures);
    assert_eq!((again.indexed, again.already_indexed), (count, 0));
    assert_eq!(server.document_count(), count);
    // Half the documents gone: the server's answer tells which were still there.
    {
        let mut state = server.state.lock().unwrap();
        let keys: Vec<_> = state.documents.keys().step_by(2).cloned().collect();
        for key in &keys {
            state.documents.remove(key);
        }
    }
    let third = index_saved_results(&dir, &client).await.unwrap();
    assert_eq!(third.indexed + third.already_indexed, count);
    assert_eq!(third.indexed, count.div_ceil(2));
}

#[tokio::test]
async fn a_bad_directory_is_refused_before_anything_is_sent() {
    let root = tempfile::tempdir().unwrap();
    let good = fixture(root.path(), common::UUID, Redactor::new());
    let server = EsTestServer::start().await.unwrap();
    let client = EsClient::new(options(&server.url)).unwrap();
    let missing = root.path().join("absent");
    let file = root.path().join("a-file.json");
    std::fs::write(&file, "[]").unwrap();
    let no_summary = root.path().join("no-summary");
    std::fs::create_dir(&no_summary).unwrap();
    std::fs::copy(
        good.join("vmiLatencyMeasurement-vm-bgp.json"),
        no_summary.join("vmiLatencyMeasurement-vm-bgp.json"),
    )
    .unwrap();
    let broken = root.path().join("broken");
    std::fs::create_dir(&broken).unwrap();
    std::fs::copy(good.join("jobSummary.json"), broken.join("jobSummary.json")).unwrap();
    std::fs::write(
        broken.join("vmiLatencyMeasurement-vm-bgp.json"),
        "[{\"uuid\":",
    )
    .unwrap();
    for (dir, expected) in [
        (&missing, "does not exist"),
        (&file, "is not a directory"),
        (&no_summary, "holds no jobSummary.json"),
        (
            &broken,
            "vmiLatencyMeasurement-vm-bgp.json is not a JSON array",
        ),
    ] {
        let error = index_saved_results(dir, &client).await.unwrap_err();
        assert!(error.is_invalid_dir(), "{error:?}");
        let mut text = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            text.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        assert!(
            text.contains(&dir.display().to_string()) && text.contains(expected),
            "{text}"
        );
        assert!(load_results_dir(dir).is_err());
    }
    assert!(server.requests().is_empty(), "{:?}", server.requests());
    assert!(load_results_dir(&good).is_ok());
}

#[tokio::test]
async fn compare_against_an_unreachable_server_is_unavailable() {
    let client = EsClient::new(fault_options(
        &format!("http://127.0.0.1:{}", free_port()),
        Duration::from_millis(600),
    ))
    .unwrap();
    let started = std::time::Instant::now();
    let error = compare_runs(
        &RunSource::Elasticsearch {
            uuid: "baseline-run".to_owned(),
        },
        &RunSource::Elasticsearch {
            uuid: "current-run".to_owned(),
        },
        &default_tolerances(),
        Some(&client),
        false,
    )
    .await
    .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(error.is_unavailable(), "{error:?}");
    assert!(matches!(error, CompareError::Es { .. }));
    // A server that answers but lacks the run is not "unavailable".
    let server = EsTestServer::start().await.unwrap();
    let client = EsClient::new(options(&server.url)).unwrap();
    let error = compare_runs(
        &RunSource::Elasticsearch {
            uuid: "nowhere".to_owned(),
        },
        &RunSource::Elasticsearch {
            uuid: "nowhere".to_owned(),
        },
        &default_tolerances(),
        Some(&client),
        false,
    )
    .await
    .unwrap_err();
    assert!(!error.is_unavailable(), "{error:?}");
}
