//! The `ci/` files name only metrics and quantiles this crate writes: the Grafana dashboard's
//! queries, the Orion configuration, and the index template's pattern (which must match the
//! project's default index and must not make the mapping strict). The index template maps every
//! field of every document a run of any profile writes, with the type the documents carry.
// Test helpers outside #[test] functions unwrap too: a failed setup step aborts the test.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;
use vmbgp_reporters::document::Document;
use vmbgp_reporters::local::load_documents;
use vmbgp_reporters::redact::Redactor;
use vmbgp_reporters::test_server::mapping::{Mappings, TemplateCoverage};

fn ci(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../ci")
        .join(path)
}

/// (metricName, quantileName) pairs and metric names of the fixture run.
fn written() -> (BTreeSet<String>, BTreeSet<(String, String)>) {
    let root = tempfile::tempdir().unwrap();
    let dir = common::write_fixture_run(
        root.path(),
        common::UUID,
        "http://127.0.0.1:9200",
        Redactor::new(),
    )
    .dir;
    let docs = load_documents(&dir).unwrap();
    let metrics = docs.iter().map(|d| d.metric_name().to_owned()).collect();
    let quantiles = docs
        .iter()
        .filter_map(|d| {
            Some((
                d.metric_name().to_owned(),
                d.text("quantileName")?.to_owned(),
            ))
        })
        .collect();
    (metrics, quantiles)
}

fn collect_queries(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(q)) = map.get("query") {
                out.push(q.clone());
            }
            map.values().for_each(|v| collect_queries(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_queries(v, out)),
        _ => {}
    }
}

#[test]
fn grafana_dashboard_queries_known_metrics_by_uuid() {
    // Metric names the fixture run or any profile's run writes.
    let (mut metrics, _) = written();
    metrics.extend(
        common::profiles::every_profile_run()
            .iter()
            .map(|d| d.metric_name().to_owned()),
    );
    let dashboard: Value =
        serde_json::from_str(&fs::read_to_string(ci("grafana/vmbgp-bench.json")).unwrap()).unwrap();
    let variables: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert!(variables.contains(&"uuid"));
    let mut queries = Vec::new();
    collect_queries(&dashboard["panels"], &mut queries);
    assert!(queries.len() >= 10);
    for query in queries {
        assert!(
            query.contains("uuid.keyword: \"$uuid\""),
            "panel query not templated by uuid: {query}"
        );
        let metric = query
            .split("metricName.keyword: \"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_else(|| panic!("query without metricName: {query}"));
        assert!(
            metrics.contains(metric),
            "dashboard queries unknown metric {metric}"
        );
    }
}

/// Every `field` a panel aggregates on (metrics and buckets), without its `.keyword` suffix.
fn collect_fields(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(field)) = map.get("field") {
                out.insert(field.trim_end_matches(".keyword").to_string());
            }
            map.values().for_each(|v| collect_fields(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_fields(v, out)),
        _ => {}
    }
}

#[test]
fn grafana_panels_aggregate_only_fields_the_index_template_maps() {
    let dashboard: Value =
        serde_json::from_str(&fs::read_to_string(ci("grafana/vmbgp-bench.json")).unwrap()).unwrap();
    let template: Value =
        serde_json::from_str(&fs::read_to_string(ci("elasticsearch/index-template.json")).unwrap())
            .unwrap();
    let mapped = &template["template"]["mappings"]["properties"];
    let mut fields = BTreeSet::new();
    collect_fields(&dashboard["panels"], &mut fields);
    assert!(fields.contains("nextHopFollowLatency"), "{fields:?}");
    let unmapped: Vec<&String> = fields
        .iter()
        .filter(|f| mapped.get(f.as_str()).is_none())
        .collect();
    assert!(
        unmapped.is_empty(),
        "panels aggregate on unmapped fields: {unmapped:?}"
    );
}

#[test]
fn orion_config_names_written_quantiles() {
    let (_, quantiles) = written();
    let text = fs::read_to_string(ci("orion/vmbgp-bench.yaml")).unwrap();
    let mut metric = None;
    let mut checked = 0;
    for line in text.lines().map(str::trim) {
        if let Some(m) = line.strip_prefix("metricName.keyword: ") {
            metric = Some(m.to_owned());
        }
        if let Some(q) = line.strip_prefix("quantileName: ") {
            let pair = (metric.clone().unwrap(), q.to_owned());
            assert!(
                quantiles.contains(&pair),
                "Orion config names unknown quantile {pair:?}"
            );
            checked += 1;
        }
        if let Some(field) = line.strip_prefix("metric_of_interest: ") {
            assert!(
                ["P99", "P95", "P50", "min", "max", "avg", "missingCount"].contains(&field),
                "{field}"
            );
        }
    }
    assert!(checked >= 8);
}

#[test]
fn index_template_matches_the_index_and_keeps_dynamic_keyword_fields() {
    let template: Value =
        serde_json::from_str(&fs::read_to_string(ci("elasticsearch/index-template.json")).unwrap())
            .unwrap();
    let patterns = template["index_patterns"].as_array().unwrap();
    assert!(patterns.iter().any(|p| {
        let p = p.as_str().unwrap();
        "ripsaw-kube-burner-vm-bgp".starts_with(p.trim_end_matches('*'))
    }));
    let mappings = &template["template"]["mappings"];
    assert_eq!(mappings["dynamic"], Value::Bool(true));
    let text = mappings["dynamic_templates"].to_string();
    assert!(
        text.contains("\"keyword\""),
        "strings must keep a .keyword sub-field"
    );
    assert_eq!(mappings["properties"]["timestamp"]["type"], "date");
}

fn template() -> Value {
    serde_json::from_str(&fs::read_to_string(ci("elasticsearch/index-template.json")).unwrap())
        .unwrap()
}

fn coverage(documents: &[Document]) -> TemplateCoverage {
    let mappings = Mappings::from_json(&template()["template"]["mappings"]);
    TemplateCoverage::of(&mappings, documents.iter().map(Document::body))
}

/// Every `text` mapping, explicit or from a dynamic template, and whether it has `.keyword`.
fn text_mappings(value: &Value, path: &str, out: &mut BTreeMap<String, bool>) {
    match value {
        Value::Object(map) => {
            if map.get("type").and_then(Value::as_str) == Some("text") {
                let keyword = map
                    .get("fields")
                    .and_then(|f| f.get("keyword"))
                    .and_then(|k| k.get("type"))
                    .and_then(Value::as_str)
                    == Some("keyword");
                out.insert(path.to_owned(), keyword);
            }
            for (key, inner) in map {
                text_mappings(inner, &format!("{path}/{key}"), out);
            }
        }
        Value::Array(items) => {
            for (n, inner) in items.iter().enumerate() {
                text_mappings(inner, &format!("{path}/{n}"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn index_template_maps_every_field_with_the_type_documents_carry() {
    let mut documents = common::profiles::every_profile_run();
    assert!(documents.len() > 200);
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/documents");
    documents.extend(load_documents(&golden).unwrap());
    let coverage = coverage(&documents);
    assert!(
        coverage.problems.is_empty(),
        "the index template does not map these fields as the documents carry them:\n{}",
        coverage
            .problems
            .iter()
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    // And it maps nothing no document writes (a renamed field leaves its old mapping behind).
    let mappings = Mappings::from_json(&template()["template"]["mappings"]);
    let stale = coverage.never_written(&mappings);
    assert!(stale.is_empty(), "mapped but never written: {stale:?}");
    // Dashboards and Orion query `<field>.keyword`: every text mapping keeps that sub-field.
    let mut texts = BTreeMap::new();
    text_mappings(&template()["template"]["mappings"], "", &mut texts);
    let without: Vec<&String> = texts.iter().filter(|(_, k)| !**k).map(|(p, _)| p).collect();
    assert!(
        texts.len() > 10 && without.is_empty(),
        "text without .keyword: {without:?}"
    );
}

#[test]
fn the_coverage_check_finds_unmapped_and_mistyped_fields() {
    let mut documents = common::profiles::run_documents(common::profiles::Shape::Scale, "u");
    let sample = documents
        .iter()
        .position(|d| d.metric_name() == "vmiLatencyMeasurement")
        .unwrap();
    let mut body = documents[sample].body().clone();
    body["brandNewField"] = Value::from(1);
    body["vmReadyLatency"] = Value::from("slow");
    body["jobIteration"] = Value::from(1.5);
    body["missing"]["a.b"] = Value::from("dotted");
    body["timestamp"] = Value::from("yesterday");
    documents[sample] = Document::from_value(body).unwrap();
    let problems = coverage(&documents).problems;
    for expected in [
        "timestamp: mapped as date, documents carry a string",
        "brandNewField: not mapped (integer)",
        "vmReadyLatency: mapped as double, documents carry a string",
        "jobIteration: mapped as long, documents carry a floating-point number",
        "missing: key \"a.b\" is not a plain field name",
    ] {
        assert!(
            problems.contains(expected),
            "{expected} not found in {problems:?}"
        );
    }
}
