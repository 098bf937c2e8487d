//! The document model: kube-burner-compatible JSON documents, their metric names, their
//! deterministic ids, and the one way an unobserved value is written (`MeasuredFields`).

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use vmbgp_model::{Measured, Statistic, Timing};

use crate::samples::{AdvertisementMode, ClusterMetadata};
// The quantile metrics' names come from the shared quantile table.
pub use vmbgp_model::quantiles::{
    BGP_SESSION_QUANTILES, ROUTE_CONVERGENCE_QUANTILES, VM_MIGRATION_QUANTILES,
    VM_REACHABILITY_QUANTILES, VM_THROUGHPUT_QUANTILES, VMI_LATENCY_QUANTILES,
};

pub const JOB_SUMMARY: &str = "jobSummary";
/// The file a run's `jobSummary` document lives in.
pub const JOB_SUMMARY_FILE: &str = "jobSummary.json";
pub const VMI_LATENCY: &str = "vmiLatencyMeasurement";
pub const ROUTE_CONVERGENCE: &str = "routeConvergenceMeasurement";
pub const VM_REACHABILITY: &str = "vmReachabilityMeasurement";
pub const VM_THROUGHPUT: &str = "vmThroughputMeasurement";
pub const VM_EGRESS: &str = "vmEgressMeasurement";
pub const BGP_SESSION: &str = "bgpSessionMeasurement";
pub const VM_MIGRATION: &str = "vmMigrationMeasurement";
/// Host-route mode: one document per node (`scope: node`) and one for the controller
/// (`scope: controller`).
pub const HOST_ROUTE_CONTROLLER: &str = "hostRouteControllerMeasurement";

/// The fields that, with `uuid`, `metricName` and `jobName`, identify a document. They make the
/// document id: re-indexing a run overwrites instead of duplicating, and a document rewritten
/// later in the run (e.g. `jobSummary` at the end) replaces its earlier version.
fn identity_fields(metric_name: &str) -> Option<&'static [&'static str]> {
    Some(match metric_name {
        JOB_SUMMARY => &[],
        VMI_LATENCY | VM_REACHABILITY | VM_THROUGHPUT | VM_EGRESS => {
            &["namespace", "vmName", "jobIteration"]
        }
        ROUTE_CONVERGENCE => &["scope", "network", "prefix", "jobIteration"],
        BGP_SESSION => &["peerAddress"],
        VM_MIGRATION => &["namespace", "vmName", "migrationIndex"],
        HOST_ROUTE_CONTROLLER => &["scope", "name"],
        VMI_LATENCY_QUANTILES
        | ROUTE_CONVERGENCE_QUANTILES
        | VM_REACHABILITY_QUANTILES
        | VM_THROUGHPUT_QUANTILES
        | BGP_SESSION_QUANTILES
        | VM_MIGRATION_QUANTILES => &["quantileName"],
        _ => return None,
    })
}

/// Whether a file in a results directory holds documents: `jobSummary.json` or
/// `<known metricName>-<jobName>.json`. Other JSON files (e.g. a saved `compare` output) are not
/// ours to index.
pub fn is_document_file(file_name: &str) -> bool {
    if file_name == JOB_SUMMARY_FILE {
        return true;
    }
    file_name.ends_with(".json")
        && file_name
            .split_once('-')
            .is_some_and(|(metric, _)| metric != JOB_SUMMARY && identity_fields(metric).is_some())
}

/// Whether documents of this metric name are quantile summaries.
pub fn is_quantile_metric(metric_name: &str) -> bool {
    metric_name.ends_with(vmbgp_model::quantiles::QUANTILES_SUFFIX)
}

#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    #[error("document has no string field `{field}`")]
    MissingField { field: &'static str },
    #[error("unknown metricName `{metric_name}`: this version cannot identify it")]
    UnknownMetric { metric_name: String },
    #[error("document `{metric_name}` lacks identity field `{field}`")]
    MissingIdentity {
        metric_name: String,
        field: &'static str,
    },
    #[error("a document must be a JSON object")]
    NotAnObject,
    #[error("{metric_name} sample {identity} was already recorded in this run")]
    DuplicateSample {
        metric_name: String,
        identity: String,
    },
    #[error("serializing a document")]
    Serialize(#[source] serde_json::Error),
}

/// One document, ready to write locally and to index.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    id: String,
    metric_name: String,
    job_name: String,
    body: Value,
}

impl Document {
    /// Wraps a document body (from the builders or read back from `results/`), computing its id.
    pub fn from_value(body: Value) -> Result<Self, DocumentError> {
        let object = body.as_object().ok_or(DocumentError::NotAnObject)?;
        let text = |field: &'static str| {
            object
                .get(field)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or(DocumentError::MissingField { field })
        };
        let uuid = text("uuid")?;
        let metric_name = text("metricName")?;
        let job_name = text("jobName")?;
        let fields = identity_fields(&metric_name).ok_or_else(|| DocumentError::UnknownMetric {
            metric_name: metric_name.clone(),
        })?;
        let mut hasher = Sha256::new();
        for part in [&uuid, &metric_name, &job_name] {
            hasher.update(part.as_bytes());
            hasher.update([0u8]);
        }
        for &field in fields {
            let value = object
                .get(field)
                .ok_or_else(|| DocumentError::MissingIdentity {
                    metric_name: metric_name.clone(),
                    field,
                })?;
            hasher.update(field.as_bytes());
            hasher.update([b'=']);
            hasher.update(value.to_string().as_bytes());
            hasher.update([0u8]);
        }
        let id = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(Document {
            id,
            metric_name,
            job_name,
            body,
        })
    }

    pub(crate) fn from_serializable(doc: &impl Serialize) -> Result<Self, DocumentError> {
        let value = serde_json::to_value(doc).map_err(DocumentError::Serialize)?;
        Document::from_value(value)
    }

    /// The identity fields as `field=value` pairs, for messages.
    pub fn identity(&self) -> String {
        identity_fields(&self.metric_name)
            .unwrap_or(&[])
            .iter()
            .map(|f| {
                let value = match self.body.get(*f) {
                    Some(Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                    None => String::new(),
                };
                format!("{f}={value}")
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Deterministic document id (hex sha256 of uuid, metricName, jobName and identity fields).
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn metric_name(&self) -> &str {
        &self.metric_name
    }

    pub fn job_name(&self) -> &str {
        &self.job_name
    }

    pub fn body(&self) -> &Value {
        &self.body
    }

    /// `<metricName>-<jobName>.json` (kube-burner's local indexer layout) or `jobSummary.json`.
    pub fn file_name(&self) -> String {
        if self.metric_name == JOB_SUMMARY {
            format!("{JOB_SUMMARY}.json")
        } else {
            format!("{}-{}.json", self.metric_name, self.job_name)
        }
    }

    /// A numeric field, if present.
    pub fn number(&self, field: &str) -> Option<f64> {
        self.body.get(field).and_then(Value::as_f64)
    }

    /// A string field, if present.
    pub fn text(&self, field: &str) -> Option<&str> {
        self.body.get(field).and_then(Value::as_str)
    }
}

/// RFC 3339 UTC with microseconds, as kube-burner writes timestamps.
pub fn format_timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Cluster metadata nested as `metadata` in every measurement document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    pub k8s_version: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub kubevirt_version: Option<String>,
    pub total_nodes: u64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub frr_version: Option<String>,
    pub advertisement_mode: AdvertisementMode,
}

impl From<&ClusterMetadata> for Metadata {
    fn from(cluster: &ClusterMetadata) -> Self {
        Metadata {
            k8s_version: cluster.k8s_version.clone(),
            kubevirt_version: cluster.kubevirt_version.observed().cloned(),
            total_nodes: cluster.total_nodes,
            frr_version: cluster.frr_version.observed().cloned(),
            advertisement_mode: cluster.mode,
        }
    }
}

/// Measured values of one document, flattened into it: observed values as plain fields (ms for
/// durations), each one's resolution under `resolutions` (field → ms), and each unobserved value
/// as a reason in `missing` or `notApplicable` with no number at all.
///
/// `resolutions`, not `resolution`: quantile documents in the same index carry `resolution` as
/// a number, and Elasticsearch maps a field path once, so an object there would be refused.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeasuredFields {
    #[serde(flatten)]
    pub values: BTreeMap<String, Value>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub resolutions: BTreeMap<String, f64>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub missing: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub not_applicable: BTreeMap<String, String>,
}

impl MeasuredFields {
    /// Records an unobserved value's reason; returns whether the value was observed.
    fn reason<T>(&mut self, field: &str, measured: &Measured<T>) -> bool {
        match measured {
            Measured::Observed(_) => true,
            Measured::Missing { reason } => {
                self.missing.insert(field.to_owned(), reason.clone());
                false
            }
            Measured::NotApplicable { reason } => {
                self.not_applicable.insert(field.to_owned(), reason.clone());
                false
            }
        }
    }

    /// A duration field in ms, with its resolution.
    pub fn timing(&mut self, field: &str, measured: &Measured<Timing>) {
        if let (true, Some(timing)) = (self.reason(field, measured), measured.observed()) {
            self.values
                .insert(field.to_owned(), Value::from(timing.millis()));
            self.resolutions
                .insert(field.to_owned(), timing.resolution_millis());
        }
    }

    /// A plain numeric field; a non-finite number is reported missing, never written.
    pub fn number(&mut self, field: &str, measured: &Measured<f64>) {
        if let (true, Some(&value)) = (self.reason(field, measured), measured.observed()) {
            if value.is_finite() {
                self.values.insert(field.to_owned(), Value::from(value));
            } else {
                self.missing
                    .insert(field.to_owned(), format!("non-finite value {value}"));
            }
        }
    }

    pub fn count(&mut self, field: &str, measured: &Measured<u64>) {
        if let (true, Some(&value)) = (self.reason(field, measured), measured.observed()) {
            self.values.insert(field.to_owned(), Value::from(value));
        }
    }

    pub fn flag(&mut self, field: &str, measured: &Measured<bool>) {
        if let (true, Some(&value)) = (self.reason(field, measured), measured.observed()) {
            self.values.insert(field.to_owned(), Value::from(value));
        }
    }

    pub fn text(&mut self, field: &str, measured: &Measured<String>) {
        if let (true, Some(value)) = (self.reason(field, measured), measured.observed()) {
            self.values
                .insert(field.to_owned(), Value::from(value.clone()));
        }
    }
}

/// One histogram bucket of a quantile document (HDR, log-spaced): values ≤ `le` ms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistogramBucket {
    pub le: f64,
    pub count: u64,
}

/// `...QuantilesMeasurement`: one quantile group. Statistics are absent (with the reason in
/// `missing` / `notApplicable`) when no sample was observed; `count` is then 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QuantileDocument {
    pub quantile_name: String,
    pub uuid: String,
    #[serde(rename = "P99", skip_serializing_if = "Option::is_none", default)]
    pub p99: Option<f64>,
    #[serde(rename = "P95", skip_serializing_if = "Option::is_none", default)]
    pub p95: Option<f64>,
    #[serde(rename = "P90", skip_serializing_if = "Option::is_none", default)]
    pub p90: Option<f64>,
    #[serde(rename = "P50", skip_serializing_if = "Option::is_none", default)]
    pub p50: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub min: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub max: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub avg: Option<f64>,
    pub timestamp: String,
    pub metric_name: String,
    pub job_name: String,
    pub metadata: Value,
    /// Observed samples (for `RTT`: RTT probes; `missingCount` then counts VMs without any).
    pub count: u64,
    pub missing_count: u64,
    pub not_applicable_count: u64,
    /// `ms`, `percent`, `bps` or `count`.
    pub unit: String,
    /// `kube-burner` (montanaflynn percentile over every sample) or `hdr` (HDR histogram,
    /// 3 significant figures).
    pub method: String,
    /// Coarsest resolution among the observed samples (ms), for duration quantiles.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub resolution: Option<f64>,
    /// Reason → samples, written as `[{"reason", "count"}]` (see [`reason_counts`]).
    #[serde(
        with = "reason_counts",
        skip_serializing_if = "BTreeMap::is_empty",
        default
    )]
    pub missing_reasons: BTreeMap<String, u64>,
    #[serde(
        with = "reason_counts",
        skip_serializing_if = "BTreeMap::is_empty",
        default
    )]
    pub not_applicable_reasons: BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub missing: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub not_applicable: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub histogram: Vec<HistogramBucket>,
}

/// `missingReasons` / `notApplicableReasons` as a list of `{"reason", "count"}`, not an object
/// keyed by reason: Elasticsearch would map every reason text as a field path, splitting it at
/// each dot (`…https://198.18.0.1` and `…https://198` then conflict, a reason ending in `.` is
/// refused) and growing the mapping with every new reason. Reading also takes the old keyed
/// form, so earlier results and indexes still compare.
pub mod reason_counts {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct ReasonCount {
        reason: String,
        count: u64,
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        List(Vec<ReasonCount>),
        Keyed(BTreeMap<String, u64>),
    }

    pub fn serialize<S: Serializer>(
        reasons: &BTreeMap<String, u64>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(reasons.iter().map(|(reason, &count)| ReasonCount {
            reason: reason.clone(),
            count,
        }))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<BTreeMap<String, u64>, D::Error> {
        Ok(match Written::deserialize(deserializer)? {
            Written::Keyed(map) => map,
            Written::List(list) => {
                let mut map = BTreeMap::new();
                for item in list {
                    let count: &mut u64 = map.entry(item.reason).or_default();
                    *count = count.saturating_add(item.count);
                }
                map
            }
        })
    }
}

impl QuantileDocument {
    /// Reads a quantile document back from its JSON body.
    pub fn from_document(document: &Document) -> Option<QuantileDocument> {
        if !is_quantile_metric(document.metric_name()) {
            return None;
        }
        serde_json::from_value(document.body().clone()).ok()
    }

    /// The value of a statistic, by its document field name.
    pub fn statistic(&self, statistic: Statistic) -> Option<f64> {
        match statistic {
            Statistic::P99 => self.p99,
            Statistic::P95 => self.p95,
            Statistic::P90 => self.p90,
            Statistic::P50 => self.p50,
            Statistic::Min => self.min,
            Statistic::Max => self.max,
            Statistic::Avg => self.avg,
            Statistic::Count => Some(self.count as f64),
            Statistic::MissingCount => Some(self.missing_count as f64),
        }
    }

    /// Every sample of the group was not applicable (and none observed or missing).
    pub fn is_not_applicable(&self) -> bool {
        self.count == 0 && self.missing_count == 0 && !self.not_applicable.is_empty()
    }
}

/// Builds a JSON object from ordered pairs (used where a document mixes fixed and flattened
/// fields and the field order should stay readable).
pub(crate) fn object(pairs: Vec<(&str, Value)>) -> Value {
    let mut map = Map::new();
    for (key, value) in pairs {
        map.insert(key.to_owned(), value);
    }
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_depend_on_identity_not_on_values() {
        let a = json!({"uuid":"u","metricName":VMI_LATENCY,"jobName":"j","namespace":"ns","vmName":"vm-1","jobIteration":1,"vmReadyLatency":1.0});
        let b = json!({"uuid":"u","metricName":VMI_LATENCY,"jobName":"j","namespace":"ns","vmName":"vm-1","jobIteration":1,"vmReadyLatency":2.0});
        let c = json!({"uuid":"u","metricName":VMI_LATENCY,"jobName":"j","namespace":"ns","vmName":"vm-2","jobIteration":1});
        let (a, b, c) = (
            Document::from_value(a).unwrap(),
            Document::from_value(b).unwrap(),
            Document::from_value(c).unwrap(),
        );
        assert_eq!(a.id(), b.id());
        assert_ne!(a.id(), c.id());
        assert_eq!(a.id().len(), 64);
        assert_eq!(a.file_name(), "vmiLatencyMeasurement-j.json");
    }

    #[test]
    fn unknown_or_incomplete_documents_are_rejected() {
        let unknown = json!({"uuid":"u","metricName":"other","jobName":"j"});
        assert!(matches!(
            Document::from_value(unknown),
            Err(DocumentError::UnknownMetric { .. })
        ));
        let incomplete =
            json!({"uuid":"u","metricName":VMI_LATENCY,"jobName":"j","namespace":"ns"});
        assert!(matches!(
            Document::from_value(incomplete),
            Err(DocumentError::MissingIdentity {
                field: "vmName",
                ..
            })
        ));
        assert!(matches!(
            Document::from_value(json!([1])),
            Err(DocumentError::NotAnObject)
        ));
    }

    #[test]
    fn unobserved_values_carry_a_reason_and_no_number() {
        let mut fields = MeasuredFields::default();
        fields.timing("a", &Measured::missing("timed out after 600 s"));
        fields.timing("b", &Measured::not_applicable("subnet mode"));
        fields.number("c", &Measured::Observed(f64::NAN));
        fields.timing(
            "d",
            &Measured::Observed(Timing::new(
                std::time::Duration::from_micros(1500),
                std::time::Duration::from_micros(1),
            )),
        );
        let value = serde_json::to_value(&fields).unwrap();
        assert_eq!(
            value,
            json!({"d":1.5,"resolutions":{"d":0.001},"missing":{"a":"timed out after 600 s","c":"non-finite value NaN"},"notApplicable":{"b":"subnet mode"}})
        );
    }

    #[test]
    fn reason_counts_are_written_as_a_list_and_read_in_either_form() {
        let mut reasons = BTreeMap::new();
        reasons.insert("request failed: https://198.18.0.1:6443.".to_owned(), 2u64);
        reasons.insert("never reachable".to_owned(), 1);
        let document = QuantileDocument {
            quantile_name: "FirstReply".to_owned(),
            uuid: "u".to_owned(),
            p99: None,
            p95: None,
            p90: None,
            p50: None,
            min: None,
            max: None,
            avg: None,
            timestamp: "2026-08-20T10:02:11Z".to_owned(),
            metric_name: VM_REACHABILITY_QUANTILES.to_owned(),
            job_name: "j".to_owned(),
            metadata: Value::Null,
            count: 0,
            missing_count: 3,
            not_applicable_count: 0,
            unit: "ms".to_owned(),
            method: "kube-burner".to_owned(),
            resolution: Some(0.001),
            missing_reasons: reasons.clone(),
            not_applicable_reasons: BTreeMap::new(),
            missing: BTreeMap::new(),
            not_applicable: BTreeMap::new(),
            histogram: Vec::new(),
        };
        let value = serde_json::to_value(&document).unwrap();
        assert_eq!(
            value["missingReasons"],
            json!([{"reason": "never reachable", "count": 1},
                   {"reason": "request failed: https://198.18.0.1:6443.", "count": 2}])
        );
        assert!(value.get("notApplicableReasons").is_none());
        let read: QuantileDocument = serde_json::from_value(value.clone()).unwrap();
        assert_eq!(read, document);
        let mut keyed = value;
        keyed["missingReasons"] =
            json!({"never reachable": 1, "request failed: https://198.18.0.1:6443.": 2});
        let read: QuantileDocument = serde_json::from_value(keyed).unwrap();
        assert_eq!(read.missing_reasons, reasons);
        // A reason listed twice adds up, without overflowing.
        let mut twice = serde_json::to_value(&document).unwrap();
        twice["missingReasons"] =
            json!([{"reason": "r", "count": u64::MAX}, {"reason": "r", "count": 5}]);
        let read: QuantileDocument = serde_json::from_value(twice).unwrap();
        assert_eq!(read.missing_reasons.get("r"), Some(&u64::MAX));
    }

    fn arbitrary_json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            "[a-zA-Z]{0,12}".prop_map(Value::from),
            prop_oneof![
                Just(VMI_LATENCY),
                Just(JOB_SUMMARY),
                Just(ROUTE_CONVERGENCE_QUANTILES)
            ]
            .prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map(
                    prop_oneof![
                        Just("uuid".to_owned()),
                        Just("metricName".to_owned()),
                        Just("jobName".to_owned()),
                        Just("quantileName".to_owned()),
                        "[a-z]{1,8}"
                    ],
                    inner,
                    0..6
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn reading_any_json_never_panics(value in arbitrary_json()) {
            if let Ok(document) = Document::from_value(value) {
                proptest::prop_assert_eq!(document.id().len(), 64);
                let _ = QuantileDocument::from_document(&document);
                let _ = document.identity();
            }
        }
    }
}
