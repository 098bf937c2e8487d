//! Turns the harness's typed samples into documents: one per-object document per sample, and,
//! at the end, one quantile document per quantile group of every enabled measurement.
//!
//! Samples are folded into quantile groups as they arrive (raw values for kube-burner's exact
//! method, merged HDR histograms for RTT), so the builder never keeps the samples themselves.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use hdrhistogram::Histogram;
use serde_json::{Value, json};

use vmbgp_model::quantiles::{self, Presence, QuantileMetric, Unit};
use vmbgp_model::{Measured, Timing, duration_millis, nanos_to_millis, round3};

use crate::document::{self, Document, DocumentError, HistogramBucket, MeasuredFields, Metadata};
use crate::quantiles::{
    Summary, hdr_buckets_millis, hdr_summary_millis, kube_burner_summary,
    kube_burner_summary_millis, new_nanos_histogram,
};
use crate::samples::*;

const NOT_RECORDED: &str = "not recorded by the harness";
const HOST_ROUTES_ONLY: &str = "per-VM /32 routes are advertised only in host-routes mode";

/// Samples of one quantile group.
#[derive(Debug, Clone)]
struct QuantileGroup {
    unit: Unit,
    /// Nanoseconds for `Unit::Millis`, plain values otherwise.
    values: Vec<f64>,
    /// Replaces `values` for high-rate samples (RTT): nanoseconds.
    histogram: Option<Histogram<u64>>,
    coarsest_resolution_ms: Option<f64>,
    missing: BTreeMap<String, u64>,
    not_applicable: BTreeMap<String, u64>,
    /// Why the whole group does not apply to this run's setup (no sample needed to know it).
    setup_not_applicable: Option<String>,
}

impl QuantileGroup {
    fn new(unit: Unit) -> Self {
        QuantileGroup {
            unit,
            values: Vec::new(),
            histogram: None,
            coarsest_resolution_ms: None,
            missing: BTreeMap::new(),
            not_applicable: BTreeMap::new(),
            setup_not_applicable: None,
        }
    }

    fn unobserved<T>(&mut self, measured: &Measured<T>) -> bool {
        match measured {
            Measured::Observed(_) => false,
            Measured::Missing { reason } => {
                *self.missing.entry(reason.clone()).or_default() += 1;
                true
            }
            Measured::NotApplicable { reason } => {
                *self.not_applicable.entry(reason.clone()).or_default() += 1;
                true
            }
        }
    }

    fn timing(&mut self, measured: &Measured<Timing>) {
        if let Measured::Observed(timing) = measured {
            self.values.push(timing.nanos() as f64);
            let resolution = timing.resolution_millis();
            self.coarsest_resolution_ms = Some(
                self.coarsest_resolution_ms
                    .map_or(resolution, |r| r.max(resolution)),
            );
        } else {
            self.unobserved(measured);
        }
    }

    fn value(&mut self, measured: &Measured<f64>) {
        match measured {
            Measured::Observed(v) if v.is_finite() => self.values.push(*v),
            Measured::Observed(v) => {
                *self
                    .missing
                    .entry(format!("non-finite value {v}"))
                    .or_default() += 1
            }
            _ => {
                self.unobserved(measured);
            }
        }
    }

    fn histogram(&mut self, measured: &Measured<Histogram<u64>>) {
        match measured {
            Measured::Observed(histogram) if histogram.is_empty() => {
                *self.missing.entry("no RTT sample".to_owned()).or_default() += 1
            }
            Measured::Observed(histogram) => {
                let merged = self.histogram.get_or_insert_with(new_nanos_histogram);
                // Both histograms auto-resize, so `add` cannot fail on range; if it ever did,
                // the group reports it instead of silently dropping the samples.
                if merged.add(histogram).is_err() {
                    *self
                        .missing
                        .entry("RTT histogram could not be merged".to_owned())
                        .or_default() += histogram.len();
                }
            }
            _ => {
                self.unobserved(measured);
            }
        }
    }

    fn summary(&self) -> Option<Summary> {
        if let Some(histogram) = &self.histogram {
            return hdr_summary_millis(histogram);
        }
        match self.unit {
            Unit::Millis => {
                let nanos: Vec<i64> = self.values.iter().map(|&v| v as i64).collect();
                kube_burner_summary_millis(&nanos)
            }
            _ => kube_burner_summary(&self.values),
        }
    }
}

/// Final state of a run, written into `jobSummary`.
#[derive(Debug, Clone, PartialEq)]
pub struct JobStatus {
    /// `None` while the run is in progress (the summary written at start).
    pub end: Option<DateTime<Utc>>,
    pub elapsed: Option<Duration>,
    pub passed: bool,
    pub execution_errors: Vec<String>,
}

impl JobStatus {
    /// The summary written when a run starts, so a run killed before its end still leaves a
    /// `jobSummary` that says it did not finish.
    pub fn in_progress() -> Self {
        JobStatus {
            end: None,
            elapsed: None,
            passed: false,
            execution_errors: vec![
                "run did not finish: no final summary was written (interrupted or crashed)"
                    .to_owned(),
            ],
        }
    }
}

/// Builds every document of one run.
#[derive(Debug)]
pub struct DocumentBuilder {
    uuid: String,
    job_name: String,
    start: DateTime<Utc>,
    metadata: Value,
    enabled: BTreeSet<MeasurementKind>,
    groups: BTreeMap<(&'static str, String), QuantileGroup>,
    /// Ids of the per-object documents built so far: a sample given twice would count twice in
    /// the quantiles, so it is refused.
    seen: BTreeSet<String>,
}

impl DocumentBuilder {
    pub fn new(run: &RunDescription) -> Self {
        let metadata = serde_json::to_value(Metadata::from(&run.cluster)).unwrap_or(Value::Null);
        let mut builder = DocumentBuilder {
            uuid: run.uuid.clone(),
            job_name: run.job_name.clone(),
            start: run.start,
            metadata,
            enabled: run.measurements.iter().copied().collect(),
            groups: BTreeMap::new(),
            seen: BTreeSet::new(),
        };
        builder.register_groups(run.cluster.mode);
        builder
    }

    /// Every quantile group of an enabled measurement exists from the start, so one that never
    /// gets a sample is reported (missing, count 0) instead of vanishing. Names and units come
    /// from the shared quantile table; cross-check quantiles appear only with their samples.
    fn register_groups(&mut self, mode: AdvertisementMode) {
        let enabled = self.enabled.clone();
        for metric in enabled.into_iter().filter_map(quantile_metric) {
            for quantile in metric.quantiles {
                let setup_not_applicable = match quantile.presence {
                    Presence::Always => None,
                    Presence::HostRoutes => {
                        (mode == AdvertisementMode::Subnet).then(|| HOST_ROUTES_ONLY.to_owned())
                    }
                    Presence::CrossCheck => continue,
                };
                self.group(metric.metric_name, quantile.name, quantile.unit)
                    .setup_not_applicable = setup_not_applicable;
            }
        }
    }

    fn group(&mut self, metric: &'static str, quantile: &str, unit: Unit) -> &mut QuantileGroup {
        self.groups
            .entry((metric, quantile.to_owned()))
            .or_insert_with(|| QuantileGroup::new(unit))
    }

    fn base(&self, metric: &str, t0: &StartInstant) -> Vec<(&'static str, Value)> {
        vec![
            (
                "timestamp",
                Value::from(document::format_timestamp(self.wall_clock(t0.offset))),
            ),
            ("metricName", Value::from(metric)),
            ("uuid", Value::from(self.uuid.clone())),
            ("jobName", Value::from(self.job_name.clone())),
        ]
    }

    fn wall_clock(&self, offset: Duration) -> DateTime<Utc> {
        chrono::Duration::from_std(offset)
            .ok()
            .and_then(|d| self.start.checked_add_signed(d))
            .unwrap_or(self.start)
    }

    fn finish(
        &self,
        mut pairs: Vec<(&'static str, Value)>,
        t0: Option<&StartInstant>,
        fields: MeasuredFields,
    ) -> Result<Document, DocumentError> {
        if let Some(t0) = t0 {
            pairs.push((
                "t0Uncertainty",
                Value::from(duration_millis(t0.uncertainty)),
            ));
        }
        let mut body = document::object(pairs);
        if let (Value::Object(map), Ok(Value::Object(measured))) =
            (&mut body, serde_json::to_value(&fields))
        {
            for (key, value) in measured {
                map.insert(key, value);
            }
            map.insert("metadata".to_owned(), self.metadata.clone());
        }
        Document::from_value(body)
    }

    fn vm_pairs(
        &self,
        metric: &str,
        vm: &VmIdentity,
        t0: &StartInstant,
    ) -> Vec<(&'static str, Value)> {
        let mut pairs = self.base(metric, t0);
        pairs.push(("namespace", Value::from(vm.namespace.clone())));
        pairs.push(("vmName", Value::from(vm.vm_name.clone())));
        pairs.push(("jobIteration", Value::from(vm.job_iteration)));
        pairs.push(("replica", Value::from(vm.replica)));
        pairs
    }

    /// Per-object documents for a batch of samples; their values also go into the quantile
    /// groups. Kinds that are not enabled still get per-object documents (the harness sent
    /// them), but no quantile documents. Each sample must be given once per run (e.g. BGP
    /// sessions at the end): a repeated identity is refused and the batch leaves no trace.
    pub fn add(&mut self, samples: &Samples) -> Result<Vec<Document>, DocumentError> {
        let snapshot = self.groups.clone();
        let documents = match self.add_unchecked(samples) {
            Ok(documents) => documents,
            Err(error) => {
                self.groups = snapshot;
                return Err(error);
            }
        };
        let mut batch = BTreeSet::new();
        for document in &documents {
            if self.seen.contains(document.id()) || !batch.insert(document.id().to_owned()) {
                self.groups = snapshot;
                return Err(DocumentError::DuplicateSample {
                    metric_name: document.metric_name().to_owned(),
                    identity: document.identity(),
                });
            }
        }
        self.seen.extend(batch);
        Ok(documents)
    }

    fn add_unchecked(&mut self, samples: &Samples) -> Result<Vec<Document>, DocumentError> {
        let mut documents = Vec::new();
        for sample in &samples.vm_latency {
            documents.push(self.vm_latency(sample)?);
        }
        for sample in &samples.route_convergence {
            documents.push(self.route_convergence(sample)?);
        }
        for sample in &samples.reachability {
            documents.push(self.reachability(sample)?);
        }
        for sample in &samples.throughput {
            documents.push(self.throughput(sample)?);
        }
        for sample in &samples.egress {
            documents.push(self.egress(sample)?);
        }
        for sample in &samples.bgp_sessions {
            documents.push(self.bgp_session(sample)?);
        }
        for sample in &samples.migrations {
            documents.push(self.migration(sample)?);
        }
        Ok(documents)
    }

    fn record_timing(&mut self, metric: &'static str, quantile: &str, measured: &Measured<Timing>) {
        if let Some(group) = self.groups.get_mut(&(metric, quantile.to_owned())) {
            group.timing(measured);
        }
    }

    fn record_value(&mut self, metric: &'static str, quantile: &str, measured: &Measured<f64>) {
        if let Some(group) = self.groups.get_mut(&(metric, quantile.to_owned())) {
            group.value(measured);
        }
    }

    fn vm_latency(&mut self, sample: &VmLatencySample) -> Result<Document, DocumentError> {
        let mut pairs = self.vm_pairs(document::VMI_LATENCY, &sample.vm, &sample.t0);
        for (key, value) in [
            ("vmiName", &sample.vmi_name),
            ("podName", &sample.pod_name),
            ("nodeName", &sample.node_name),
        ] {
            if let Some(value) = value {
                pairs.push((key, Value::from(value.clone())));
            }
        }
        let mut fields = MeasuredFields::default();
        let not_recorded = Measured::missing(NOT_RECORDED);
        for phase in VmPhase::ALL {
            let measured = sample.harness.get(&phase).unwrap_or(&not_recorded);
            fields.timing(phase.field_name(), measured);
            self.record_timing(
                document::VMI_LATENCY_QUANTILES,
                phase.quantile_name(),
                measured,
            );
        }
        fields.timing(CLAIM_RELEASED_FIELD, &sample.claim_release);
        self.record_timing(
            document::VMI_LATENCY_QUANTILES,
            CLAIM_RELEASED_QUANTILE,
            &sample.claim_release,
        );
        for (phase, measured) in &sample.server {
            fields.timing(&phase.server_field_name(), measured);
            let quantile = format!("Server{}", phase.quantile_name());
            if self.enabled.contains(&MeasurementKind::VmLatency) {
                self.group(document::VMI_LATENCY_QUANTILES, &quantile, Unit::Millis)
                    .timing(measured);
            }
        }
        self.finish(pairs, Some(&sample.t0), fields)
    }

    fn route_convergence(
        &mut self,
        sample: &RouteConvergenceSample,
    ) -> Result<Document, DocumentError> {
        let mut pairs = self.base(document::ROUTE_CONVERGENCE, &sample.t0);
        let (scope, prefix) = match &sample.scope {
            RouteScope::Network => ("network", ""),
            RouteScope::HostRoute { vm_name } => {
                pairs.push(("vmName", Value::from(vm_name.clone())));
                ("hostRoute", "HostRoute")
            }
        };
        pairs.push(("scope", Value::from(scope)));
        pairs.push(("network", Value::from(sample.network.clone())));
        pairs.push(("prefix", Value::from(sample.prefix.clone())));
        pairs.push(("jobIteration", Value::from(sample.job_iteration)));
        pairs.push(("expectedNextHops", Value::from(sample.expected_next_hops)));
        let mut fields = MeasuredFields::default();
        fields.count("observedNextHops", &sample.observed_next_hops);
        let timings = [
            (
                "advertiseAdjRibInLatency",
                "AdvertiseAdjRibIn",
                &sample.advertise_adj_rib_in,
            ),
            ("advertiseFibLatency", "AdvertiseFib", &sample.advertise_fib),
            (
                "advertiseAllNextHopsLatency",
                "AdvertiseAllNextHops",
                &sample.advertise_all_next_hops,
            ),
            (
                "withdrawAdjRibInLatency",
                "WithdrawAdjRibIn",
                &sample.withdraw_adj_rib_in,
            ),
            ("withdrawFibLatency", "WithdrawFib", &sample.withdraw_fib),
            (
                "staleRouteWindow",
                "StaleRouteWindow",
                &sample.stale_route_window,
            ),
        ];
        if scope == "hostRoute" {
            self.clear_host_route_not_applicable();
        }
        for (field, quantile, measured) in timings {
            fields.timing(field, measured);
            self.record_timing(
                document::ROUTE_CONVERGENCE_QUANTILES,
                &format!("{prefix}{quantile}"),
                measured,
            );
        }
        self.finish(pairs, Some(&sample.t0), fields)
    }

    /// A host-route sample in a run registered as `subnet` mode means the harness measured
    /// /32s after all; the registration-time "not applicable" marker then no longer holds.
    fn clear_host_route_not_applicable(&mut self) {
        for ((metric, _), group) in &mut self.groups {
            if *metric == document::ROUTE_CONVERGENCE_QUANTILES {
                group.setup_not_applicable = None;
            }
        }
    }

    fn reachability(&mut self, sample: &ReachabilitySample) -> Result<Document, DocumentError> {
        let mut pairs = self.vm_pairs(document::VM_REACHABILITY, &sample.vm, &sample.t0);
        pairs.push(("address", Value::from(sample.address.clone())));
        pairs.push(("probesSent", Value::from(sample.probes_sent)));
        pairs.push(("probesReceived", Value::from(sample.probes_received)));
        pairs.push((
            "probeInterval",
            Value::from(duration_millis(sample.probe_interval)),
        ));
        let mut fields = MeasuredFields::default();
        let reachable = match &sample.first_reply {
            Measured::Observed(_) => Measured::Observed(true),
            Measured::Missing { .. } => Measured::Observed(false),
            Measured::NotApplicable { reason } => Measured::not_applicable(reason.clone()),
        };
        fields.flag("reachable", &reachable);
        let metric = document::VM_REACHABILITY_QUANTILES;
        for (field, quantile, measured) in [
            ("firstReplyLatency", "FirstReply", &sample.first_reply),
            (
                "sustainedReachabilityLatency",
                "SustainedReachability",
                &sample.sustained_reachability,
            ),
            (
                "lossDerivedConvergence",
                "LossDerivedConvergence",
                &sample.loss_derived_convergence,
            ),
        ] {
            fields.timing(field, measured);
            self.record_timing(metric, quantile, measured);
        }
        let rtt_summary = match &sample.rtt_nanos {
            Measured::Observed(h) => match hdr_summary_millis(h) {
                Some(summary) => Measured::Observed(summary),
                None => Measured::missing("no RTT sample"),
            },
            Measured::Missing { reason } => Measured::missing(reason.clone()),
            Measured::NotApplicable { reason } => Measured::not_applicable(reason.clone()),
        };
        for (field, pick) in [
            ("rttP50", (|s: &Summary| s.p50) as fn(&Summary) -> f64),
            ("rttP90", |s| s.p90.unwrap_or(s.p95)),
            ("rttP99", |s| s.p99),
            ("rttMax", |s| s.max),
        ] {
            fields.number(field, &rtt_summary.as_ref().map(pick));
            if let Measured::Observed(h) = &sample.rtt_nanos
                && rtt_summary.is_observed()
            {
                fields
                    .resolutions
                    .insert(field.to_owned(), hdr_resolution_millis(h));
            }
        }
        if let Some(group) = self.groups.get_mut(&(metric, "RTT".to_owned())) {
            group.histogram(&sample.rtt_nanos);
        }
        let loss = if sample.probes_sent == 0 {
            Measured::missing("no probe was sent")
        } else {
            let lost = sample.probes_sent.saturating_sub(sample.probes_received);
            Measured::Observed(round3(lost as f64 * 100.0 / sample.probes_sent as f64))
        };
        fields.number("lossPercent", &loss);
        self.record_value(metric, "LossPercent", &loss);
        self.finish(pairs, Some(&sample.t0), fields)
    }

    fn throughput(&mut self, sample: &ThroughputSample) -> Result<Document, DocumentError> {
        let pairs = self.vm_pairs(document::VM_THROUGHPUT, &sample.vm, &sample.t0);
        let mut fields = MeasuredFields::default();
        fields.number("goodputBitsPerSecond", &sample.goodput_bits_per_second);
        fields.count("retransmits", &sample.retransmits);
        fields.timing("duration", &sample.duration);
        let metric = document::VM_THROUGHPUT_QUANTILES;
        self.record_value(metric, "Goodput", &sample.goodput_bits_per_second);
        let retransmits = sample.retransmits.as_ref().map(|&r| r as f64);
        self.record_value(metric, "Retransmits", &retransmits);
        self.finish(pairs, Some(&sample.t0), fields)
    }

    fn egress(&mut self, sample: &EgressSample) -> Result<Document, DocumentError> {
        let mut pairs = self.vm_pairs(document::VM_EGRESS, &sample.vm, &sample.t0);
        pairs.push(("vmAddress", Value::from(sample.vm_address.clone())));
        let mut fields = MeasuredFields::default();
        fields.text("sourceAddressSeen", &sample.source_address_seen);
        let un_nated = sample
            .source_address_seen
            .as_ref()
            .map(|seen| *seen == sample.vm_address);
        fields.flag("unNATed", &un_nated);
        self.finish(pairs, Some(&sample.t0), fields)
    }

    fn bgp_session(&mut self, sample: &BgpSessionSample) -> Result<Document, DocumentError> {
        let from = StartInstant {
            offset: sample.observed_from,
            uncertainty: Duration::ZERO,
        };
        let mut pairs = self.base(document::BGP_SESSION, &from);
        pairs.push(("peerAddress", Value::from(sample.peer_address.clone())));
        if let Some(asn) = sample.peer_as {
            pairs.push(("peerAs", Value::from(asn)));
        }
        pairs.push(("initialState", Value::from(sample.initial_state.clone())));
        pairs.push((
            "observedUntil",
            Value::from(document::format_timestamp(
                self.wall_clock(sample.observed_until),
            )),
        ));
        let changes: Vec<Value> = sample
            .state_changes
            .iter()
            .map(|c| {
                json!({
                    "timestamp": document::format_timestamp(self.wall_clock(c.offset)),
                    "offset": duration_millis(c.offset),
                    "from": c.from,
                    "to": c.to,
                })
            })
            .collect();
        pairs.push(("stateChanges", Value::Array(changes)));
        let flaps = sample.flaps();
        pairs.push(("flaps", Value::from(flaps)));
        let mut fields = MeasuredFields::default();
        fields.number("uptimePercent", &sample.uptime_percent);
        fields.count("prefixesReceived", &sample.prefixes_received);
        let metric = document::BGP_SESSION_QUANTILES;
        self.record_value(metric, "UptimePercent", &sample.uptime_percent);
        self.record_value(metric, "Flaps", &Measured::Observed(flaps as f64));
        let prefixes = sample.prefixes_received.as_ref().map(|&p| p as f64);
        self.record_value(metric, "PrefixesReceived", &prefixes);
        self.finish(pairs, None, fields)
    }

    fn migration(&mut self, sample: &MigrationSample) -> Result<Document, DocumentError> {
        let mut pairs = self.vm_pairs(document::VM_MIGRATION, &sample.vm, &sample.t0);
        pairs.push(("migrationIndex", Value::from(sample.migration_index)));
        for (key, value) in [
            ("sourceNode", &sample.source_node),
            ("targetNode", &sample.target_node),
        ] {
            if let Some(value) = value {
                pairs.push((key, Value::from(value.clone())));
            }
        }
        let mut fields = MeasuredFields::default();
        let metric = document::VM_MIGRATION_QUANTILES;
        for (field, quantile, measured) in [
            ("lossPeriod", "LossPeriod", &sample.loss_period),
            ("longestGap", "LongestGap", &sample.longest_gap),
            (
                "reachableAfterSwitchoverLatency",
                "ReachableAfterSwitchover",
                &sample.reachable_after_switchover,
            ),
            (
                "nextHopFollowLatency",
                "NextHopFollow",
                &sample.next_hop_follow,
            ),
        ] {
            fields.timing(field, measured);
            self.record_timing(metric, quantile, measured);
        }
        fields.flag("tcpSurvived", &sample.tcp_survived);
        self.finish(pairs, Some(&sample.t0), fields)
    }

    /// One quantile document per group, stamped `at` (the run's end).
    pub fn quantile_documents(&self, at: DateTime<Utc>) -> Result<Vec<Document>, DocumentError> {
        let timestamp = document::format_timestamp(at);
        let mut documents = Vec::new();
        for ((metric, quantile), group) in &self.groups {
            let summary = group.summary();
            let missing_count: u64 = group.missing.values().sum();
            let not_applicable_count: u64 = group.not_applicable.values().sum();
            let mut missing = BTreeMap::new();
            let mut not_applicable = BTreeMap::new();
            if summary.is_none() {
                let (target, reason) = if missing_count > 0 {
                    (&mut missing, describe_missing(&group.missing))
                } else if let Some(reason) = &group.setup_not_applicable {
                    (&mut not_applicable, reason.clone())
                } else if not_applicable_count > 0 {
                    (
                        &mut not_applicable,
                        describe_not_applicable(&group.not_applicable),
                    )
                } else {
                    (&mut missing, "no samples recorded".to_owned())
                };
                let stats: &[&str] = if group.histogram.is_some() || quantile == "RTT" {
                    &["P99", "P95", "P90", "P50", "min", "max", "avg"]
                } else {
                    &["P99", "P95", "P50", "min", "max", "avg"]
                };
                for stat in stats {
                    target.insert((*stat).to_owned(), reason.clone());
                }
            }
            let quantile_document = document::QuantileDocument {
                quantile_name: quantile.clone(),
                uuid: self.uuid.clone(),
                p99: summary.map(|s| s.p99),
                p95: summary.map(|s| s.p95),
                p90: summary.and_then(|s| s.p90),
                p50: summary.map(|s| s.p50),
                min: summary.map(|s| s.min),
                max: summary.map(|s| s.max),
                avg: summary.map(|s| s.avg),
                timestamp: timestamp.clone(),
                metric_name: (*metric).to_owned(),
                job_name: self.job_name.clone(),
                metadata: self.metadata.clone(),
                count: summary.map_or(0, |s| s.count),
                missing_count,
                not_applicable_count,
                unit: group.unit.as_str().to_owned(),
                method: if group.histogram.is_some() || quantile == "RTT" {
                    "hdr".to_owned()
                } else {
                    "kube-burner".to_owned()
                },
                resolution: match &group.histogram {
                    Some(h) => Some(hdr_resolution_millis(h)),
                    None => group.coarsest_resolution_ms,
                },
                missing_reasons: group.missing.clone(),
                not_applicable_reasons: group.not_applicable.clone(),
                missing,
                not_applicable,
                histogram: group
                    .histogram
                    .as_ref()
                    .map(|h| {
                        hdr_buckets_millis(h)
                            .into_iter()
                            .map(|(le, count)| HistogramBucket { le, count })
                            .collect()
                    })
                    .unwrap_or_default(),
            };
            documents.push(Document::from_serializable(&quantile_document)?);
        }
        Ok(documents)
    }
}

/// The quantile table's entry for a measurement kind; egress has no quantiles.
fn quantile_metric(kind: MeasurementKind) -> Option<&'static QuantileMetric> {
    let metric_name = match kind {
        MeasurementKind::VmLatency => quantiles::VMI_LATENCY_QUANTILES,
        MeasurementKind::RouteConvergence => quantiles::ROUTE_CONVERGENCE_QUANTILES,
        MeasurementKind::VmReachability => quantiles::VM_REACHABILITY_QUANTILES,
        MeasurementKind::VmThroughput => quantiles::VM_THROUGHPUT_QUANTILES,
        MeasurementKind::VmEgress => return None,
        MeasurementKind::BgpSession => quantiles::BGP_SESSION_QUANTILES,
        MeasurementKind::VmMigration => quantiles::VM_MIGRATION_QUANTILES,
    };
    quantiles::by_metric_name(metric_name)
}

/// Width of the HDR bucket holding the P99 value (3 significant figures: ≤ 0.1 % of it), in ms,
/// never below the 1 µs the documents can show.
fn hdr_resolution_millis(histogram: &Histogram<u64>) -> f64 {
    let p99 = histogram.value_at_quantile(0.99);
    nanos_to_millis(histogram.equivalent_range(p99) as f64).max(0.001)
}

/// "no observed sample; 3 missing: <reason> (2); <reason> (1)".
fn describe_missing(reasons: &BTreeMap<String, u64>) -> String {
    let total: u64 = reasons.values().sum();
    format!(
        "no observed sample; {total} missing: {}",
        join_reasons(reasons)
    )
}

/// The reason, or "<reason> (2); <reason> (1)" when samples gave different ones.
fn describe_not_applicable(reasons: &BTreeMap<String, u64>) -> String {
    if reasons.len() == 1 {
        reasons.keys().next().cloned().unwrap_or_default()
    } else {
        join_reasons(reasons)
    }
}

fn join_reasons(reasons: &BTreeMap<String, u64>) -> String {
    reasons
        .iter()
        .map(|(reason, count)| format!("{reason} ({count})"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The `jobSummary` document: kube-burner fields plus cluster metadata flattened at the top.
pub fn job_summary(run: &RunDescription, status: &JobStatus) -> Result<Document, DocumentError> {
    let mut job_config = match &run.job_config {
        Value::Object(map) => Value::Object(map.clone()),
        Value::Null => json!({}),
        other => json!({ "config": other.clone() }),
    };
    if let Value::Object(map) = &mut job_config {
        map.insert("jobIterations".to_owned(), Value::from(run.job_iterations));
        map.entry("name".to_owned())
            .or_insert_with(|| Value::from(run.job_name.clone()));
    }
    let mut pairs = vec![(
        "timestamp",
        Value::from(document::format_timestamp(run.start)),
    )];
    let mut fields = MeasuredFields::default();
    match status.end {
        Some(end) => pairs.push(("endTimestamp", Value::from(document::format_timestamp(end)))),
        None => {
            fields
                .missing
                .insert("endTimestamp".to_owned(), "run in progress".to_owned());
        }
    }
    match status.elapsed {
        // kube-burner writes seconds; we keep millisecond precision.
        Some(elapsed) => pairs.push(("elapsedTime", Value::from(round3(elapsed.as_secs_f64())))),
        None => {
            fields
                .missing
                .insert("elapsedTime".to_owned(), "run in progress".to_owned());
        }
    }
    pairs.extend([
        ("uuid", Value::from(run.uuid.clone())),
        ("metricName", Value::from(document::JOB_SUMMARY)),
        ("jobName", Value::from(run.job_name.clone())),
        ("jobConfig", job_config),
        ("version", Value::from(run.version.clone())),
        ("passed", Value::from(status.passed)),
    ]);
    if !status.execution_errors.is_empty() {
        pairs.push((
            "executionErrors",
            Value::from(status.execution_errors.join("; ")),
        ));
    }
    pairs.push((
        "workloadFlags",
        serde_json::to_value(&run.workload_flags).unwrap_or(Value::Null),
    ));
    pairs.push(("k8sVersion", Value::from(run.cluster.k8s_version.clone())));
    fields.text("kubevirtVersion", &run.cluster.kubevirt_version);
    pairs.push(("totalNodes", Value::from(run.cluster.total_nodes)));
    fields.text("frrVersion", &run.cluster.frr_version);
    pairs.push(("advertisementMode", Value::from(run.cluster.mode.as_str())));
    let measurements: Vec<Value> = run
        .measurements
        .iter()
        .filter_map(|m| serde_json::to_value(m).ok())
        .collect();
    pairs.push(("measurements", Value::Array(measurements)));
    let mut body = document::object(pairs);
    if let (Value::Object(map), Ok(Value::Object(measured))) =
        (&mut body, serde_json::to_value(&fields))
    {
        for (key, value) in measured {
            map.insert(key, value);
        }
    }
    Document::from_value(body)
}
