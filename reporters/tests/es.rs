//! Elasticsearch/OpenSearch indexing against the ES-compatible test server: retries with
//! backoff on 429/500/timeouts, per-item retry, residual failures reported while documents
//! stay on disk, `index` uploading exactly once, idempotent ids, and credential redaction
//! in logs, files, reports, documents and errors.
// Test helpers outside #[test] functions unwrap too: a failed setup step aborts the test.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::es_server::{Behaviour, EsTestServer};
use vmbgp_reporters::compare::{RunSource, compare_runs, default_tolerances};
use vmbgp_reporters::es::{EsClient, EsOptions, RetryPolicy, index_saved_results};
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
    let second = index_saved_results(&dir, &client).await.unwrap();
    assert!(second.is_complete());
    assert_eq!(
        (second.indexed, second.already_indexed, second.requests),
        (0, documents.len(), 0)
    );
    assert_eq!(server.bulk_bodies().len(), 1);
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
