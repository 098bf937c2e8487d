//! One index holds every run: the documents of a run of every profile shape (and the golden
//! run's) go into one index of the mapping-enforcing test server, in both orders, with and
//! without the CI index template, and no item may be refused. The documents in their old shapes
//! (`resolution` as an object, reasons as keys) are refused there, as Elasticsearch refuses them.
// Test helpers outside #[test] functions unwrap too: a failed setup step aborts the test.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::es_server::EsTestServer;
use common::profiles::{DOTTED_REASON, every_profile_run};
use serde_json::{Map, Value};
use vmbgp_reporters::document::{Document, is_quantile_metric};
use vmbgp_reporters::es::{EsClient, EsOptions, IndexOutcome, RetryPolicy};
use vmbgp_reporters::local::load_documents;
use vmbgp_reporters::test_server::mapping::FieldType;

const INDEX: &str = "ripsaw-kube-burner-vm-bgp";

fn template_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../ci/elasticsearch/index-template.json")
}

/// Every profile shape's run and the golden run.
fn all_documents() -> Vec<Document> {
    let mut documents = every_profile_run();
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/documents");
    documents.extend(load_documents(&golden).unwrap());
    documents
}

async fn index_all(documents: &[Document], template: bool) -> (EsTestServer, IndexOutcome) {
    let server = EsTestServer::start().await.unwrap();
    let mut options = EsOptions::new(&server.url, INDEX);
    options.retry = RetryPolicy {
        max_attempts: 1,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(1),
    };
    if template {
        options.index_template = Some(template_path());
    }
    let client = EsClient::connect(options).await.unwrap();
    let outcome = client.index_documents(documents).await;
    (server, outcome)
}

fn assert_all_indexed(server: &EsTestServer, outcome: &IndexOutcome, documents: &[Document]) {
    let refused: Vec<String> = outcome
        .failures
        .iter()
        .map(|f| format!("{} {}: {}", f.metric_name, f.id, f.reason))
        .collect();
    assert!(refused.is_empty(), "refused items:\n{}", refused.join("\n"));
    let ids: BTreeSet<&str> = documents.iter().map(Document::id).collect();
    assert_eq!(server.document_count(), ids.len());
}

#[tokio::test]
async fn every_profile_run_goes_into_one_index_in_either_order() {
    let documents = all_documents();
    let metrics: BTreeSet<&str> = documents.iter().map(Document::metric_name).collect();
    assert_eq!(metrics.len(), 15, "every metric name: {metrics:?}");
    let (server, outcome) = index_all(&documents, false).await;
    assert_all_indexed(&server, &outcome, &documents);
    // The first sight fixed these; the other group was checked against them.
    assert_eq!(
        server
            .field_type(INDEX, "resolution")
            .map(|t| t.name().to_owned()),
        Some("float".to_owned())
    );
    assert!(
        server
            .field_type(INDEX, "resolutions")
            .is_some_and(|t| t.is_object())
    );
    assert_eq!(
        server
            .field_type(INDEX, "missingReasons.count")
            .map(|t| t.name().to_owned()),
        Some("long".to_owned())
    );

    let mut reversed = documents.clone();
    reversed.reverse();
    let (server, outcome) = index_all(&reversed, false).await;
    assert_all_indexed(&server, &outcome, &reversed);
}

#[tokio::test]
async fn every_profile_run_goes_into_an_index_made_by_the_ci_template() {
    let documents = all_documents();
    let (server, outcome) = index_all(&documents, true).await;
    assert_all_indexed(&server, &outcome, &documents);
    let name = |path: &str| server.field_type(INDEX, path).map(|t| t.name().to_owned());
    assert_eq!(name("timestamp").as_deref(), Some("date"));
    assert_eq!(name("resolution").as_deref(), Some("double"));
    assert_eq!(
        name("resolutions.vmReadyLatency").as_deref(),
        Some("double")
    );
    assert_eq!(name("missing.vmReadyLatency").as_deref(), Some("text"));
    assert_eq!(name("goodputBitsPerSecond").as_deref(), Some("double"));
    assert_eq!(name("jobConfig.jobIterations").as_deref(), Some("long"));
    // The plan dump is kept in _source but not mapped, so no profile can conflict inside it.
    assert_eq!(name("jobConfig.bgp"), None);
    assert_eq!(
        server.field_type(INDEX, "histogram"),
        Some(FieldType::Object {
            enabled: false,
            dynamic: None
        })
    );
}

/// Every JSON type each field path carries (arrays are their elements; null is no type).
fn json_types(path: &str, value: &Value, out: &mut BTreeMap<String, BTreeSet<&'static str>>) {
    let kind = match value {
        Value::Null => return,
        Value::Array(items) => {
            items.iter().for_each(|item| json_types(path, item, out));
            return;
        }
        Value::Object(map) => {
            for (key, inner) in map {
                let inner_path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                json_types(&inner_path, inner, out);
            }
            "object"
        }
        Value::Bool(_) => "boolean",
        // Elasticsearch maps a first integer as long and truncates later fractions into it.
        Value::Number(n) if n.is_f64() => "floating-point number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
    };
    if !path.is_empty() {
        out.entry(path.to_owned()).or_default().insert(kind);
    }
}

#[test]
fn every_field_path_has_one_json_type_across_every_profile_run() {
    let mut types = BTreeMap::new();
    for document in all_documents() {
        json_types("", document.body(), &mut types);
    }
    let mixed: Vec<String> = types
        .iter()
        .filter(|(_, kinds)| kinds.len() > 1)
        .map(|(path, kinds)| format!("{path}: {kinds:?}"))
        .collect();
    assert!(
        mixed.is_empty(),
        "field paths with more than one type:\n{}",
        mixed.join("\n")
    );
    assert!(types.len() > 150, "{}", types.len());
}

/// The shapes before issue #10: per-sample `resolution` objects and reason-keyed counts.
fn old_shape(document: &Document) -> Value {
    let mut body = document.body().clone();
    let Some(map) = body.as_object_mut() else {
        return body;
    };
    if let Some(resolutions) = map.remove("resolutions") {
        map.insert("resolution".to_owned(), resolutions);
    }
    for key in ["missingReasons", "notApplicableReasons"] {
        if let Some(Value::Array(list)) = map.get(key) {
            let keyed: Map<String, Value> = list
                .iter()
                .filter_map(|item| {
                    Some((item["reason"].as_str()?.to_owned(), item["count"].clone()))
                })
                .collect();
            map.insert(key.to_owned(), Value::Object(keyed));
        }
    }
    body
}

#[tokio::test]
async fn the_old_document_shapes_are_refused_by_the_same_test() {
    let documents: Vec<Document> = all_documents()
        .iter()
        .map(|d| Document::from_value(old_shape(d)).unwrap())
        .collect();
    let (_server, outcome) = index_all(&documents, false).await;
    let refused: BTreeSet<(String, String)> = outcome
        .failures
        .iter()
        .map(|f| (f.metric_name.clone(), f.reason.clone()))
        .collect();
    assert!(
        outcome
            .failures
            .iter()
            .all(|f| f.status == Some(400) && f.reason.starts_with("mapper_parsing_exception: ")),
        "{refused:?}"
    );
    // The first documents are per-sample ones: `resolution` became an object, so every quantile
    // document with a numeric resolution is refused.
    assert!(
        refused
            .iter()
            .any(|(metric, reason)| is_quantile_metric(metric)
                && reason.contains(
                    "tried to parse field [resolution] as object, but found a concrete value"
                )),
        "{refused:?}"
    );
    // A reason ending in a period cannot be a field name.
    assert!(DOTTED_REASON.ends_with('.'));
    assert!(
        refused
            .iter()
            .any(|(_, reason)| reason.contains("makes object resolution ambiguous")),
        "{refused:?}"
    );
}
