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
        for sample in &samples.host_route_nodes {
            documents.push(self.host_route_node(sample)?);
        }
        if let Some(sample) = &samples.host_route_controller {
            documents.push(self.host_route_controller(sample)?);
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
        // The policy check is a host-route figure: subnet documents stay as they were.
        if scope == "hostRoute" {
            fields.text("communities", &sample.communities);
            fields.count("localPref", &sample.local_pref);
        }
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

    /// Stamped when the table was read or the metrics scraped (`at`, from the run's start).
    fn host_route_pairs(
        &self,
        at: Duration,
        scope: &str,
        name: &str,
    ) -> Vec<(&'static str, Value)> {
        let mut pairs = self.base(
            document::HOST_ROUTE_CONTROLLER,
            &StartInstant {
                offset: at,
                uncertainty: Duration::ZERO,
            },
        );
        pairs.push(("scope", Value::from(scope)));
        pairs.push(("name", Value::from(name)));
        pairs
    }

    fn host_route_node(&mut self, sample: &HostRouteNodeSample) -> Result<Document, DocumentError> {
        let mut pairs = self.host_route_pairs(sample.at, "node", &sample.node);
        pairs.push(("node", Value::from(sample.node.clone())));
        if let Some(address) = &sample.node_address {
            pairs.push(("nodeAddress", Value::from(address.clone())));
        }
        pairs.push(("vms", Value::from(sample.vms)));
        let mut fields = MeasuredFields::default();
        fields.count("prefixesAtExt", &sample.prefixes_at_ext);
        fields.count("addressesCovered", &sample.addresses_covered);
        fields.count("routesAdvertised", &sample.routes_advertised);
        fields.flag("capped", &sample.capped);
        self.finish(pairs, None, fields)
    }

    fn host_route_controller(
        &mut self,
        sample: &HostRouteControllerSample,
    ) -> Result<Document, DocumentError> {
        let pairs = self.host_route_pairs(sample.at, "controller", "vmbgp-controller");
        let mut fields = MeasuredFields::default();
        fields.timing("reconcileP99", &sample.reconcile_p99);
        fields.count("reconciles", &sample.reconciles);
        fields.count("reconcileErrors", &sample.reconcile_errors);
        fields.count("migrationsFollowed", &sample.migrations_followed);
        fields.count("routesAdvertised", &sample.routes_advertised);
        fields.count("notAdvertisedVms", &sample.not_advertised_vms);
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
            (
                "tcpLongestStall",
                "TcpLongestStall",
                &sample.tcp_longest_stall,
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use chrono::TimeZone;
    use serde_json::{Value, json};
    use vmbgp_model::quantiles::QUANTILE_METRICS;

    use super::*;
    use crate::quantiles::new_nanos_histogram;

    const MICRO: Duration = Duration::from_micros(1);

    fn run(mode: AdvertisementMode, measurements: &[MeasurementKind]) -> RunDescription {
        RunDescription {
            uuid: "u-1".to_owned(),
            job_name: "vm-bgp".to_owned(),
            job_iterations: 1,
            job_config: Value::Null,
            start: Utc
                .with_ymd_and_hms(2026, 8, 20, 10, 0, 0)
                .single()
                .expect("a valid start"),
            version: "0.1.0@abc".to_owned(),
            workload_flags: BTreeMap::new(),
            cluster: ClusterMetadata {
                k8s_version: "v1.33.1".to_owned(),
                kubevirt_version: Measured::Observed("v1.5.0".to_owned()),
                total_nodes: 3,
                frr_version: Measured::missing("no BMP Initiation"),
                mode,
            },
            measurements: measurements.to_vec(),
        }
    }

    fn new_builder(mode: AdvertisementMode, measurements: &[MeasurementKind]) -> DocumentBuilder {
        DocumentBuilder::new(&run(mode, measurements))
    }

    fn vm(replica: u64) -> VmIdentity {
        VmIdentity {
            namespace: "vmbgp-0".to_owned(),
            vm_name: format!("vm-{replica}"),
            job_iteration: 0,
            replica,
        }
    }

    fn t0(offset_ms: u64) -> StartInstant {
        StartInstant {
            offset: Duration::from_millis(offset_ms),
            uncertainty: Duration::from_micros(1500),
        }
    }

    fn ms(millis: u64) -> Measured<Timing> {
        Measured::Observed(Timing::new(Duration::from_millis(millis), MICRO))
    }

    fn latency(replica: u64, vm_ready: Measured<Timing>) -> VmLatencySample {
        VmLatencySample {
            vm: vm(replica),
            vmi_name: None,
            pod_name: None,
            node_name: Some("node-1".to_owned()),
            t0: t0(0),
            harness: BTreeMap::from([(VmPhase::VmReady, vm_ready)]),
            server: BTreeMap::new(),
            claim_release: Measured::not_applicable("the run deletes no VM"),
        }
    }

    fn route(scope: RouteScope, fib: Measured<Timing>) -> RouteConvergenceSample {
        RouteConvergenceSample {
            network: "vmbgp-0".to_owned(),
            prefix: match &scope {
                RouteScope::Network => "198.19.0.0/24".to_owned(),
                RouteScope::HostRoute { vm_name } => format!("198.19.0.{}/32", vm_name.len()),
            },
            scope,
            job_iteration: 0,
            t0: t0(0),
            advertise_adj_rib_in: ms(10),
            advertise_fib: fib,
            advertise_all_next_hops: ms(30),
            expected_next_hops: 3,
            observed_next_hops: Measured::Observed(3),
            withdraw_adj_rib_in: ms(40),
            withdraw_fib: ms(50),
            stale_route_window: ms(60),
            communities: Measured::Observed("64512:200".to_owned()),
            local_pref: Measured::Observed(250),
        }
    }

    fn reachability(replica: u64) -> ReachabilitySample {
        let mut rtt = new_nanos_histogram();
        for micros in [200, 300, 400] {
            rtt.record(micros * 1000).expect("in range");
        }
        ReachabilitySample {
            vm: vm(replica),
            address: format!("198.19.0.{}", 10 + replica),
            t0: t0(0),
            first_reply: ms(800),
            sustained_reachability: ms(900),
            loss_derived_convergence: ms(700),
            rtt_nanos: Measured::Observed(rtt),
            probes_sent: 8,
            probes_received: 6,
            probe_interval: Duration::from_millis(100),
        }
    }

    fn one_of_each() -> Samples {
        let mut with_server = latency(1, ms(5));
        with_server.harness = VmPhase::ALL.iter().map(|p| (*p, ms(5))).collect();
        with_server.server = VmPhase::ALL
            .iter()
            .map(|p| {
                let server = Timing::from_signed_nanos(1_000_000_000, Duration::from_secs(1));
                (*p, Measured::Observed(server))
            })
            .collect();
        with_server.claim_release = ms(7);
        Samples {
            vm_latency: vec![with_server],
            route_convergence: vec![
                route(RouteScope::Network, ms(20)),
                route(
                    RouteScope::HostRoute {
                        vm_name: "vm-1".to_owned(),
                    },
                    ms(25),
                ),
            ],
            reachability: vec![reachability(1)],
            throughput: vec![ThroughputSample {
                vm: vm(1),
                t0: t0(0),
                goodput_bits_per_second: Measured::Observed(9.5e9),
                retransmits: Measured::Observed(4),
                duration: ms(5000),
            }],
            egress: vec![EgressSample {
                vm: vm(1),
                t0: t0(0),
                vm_address: "198.19.0.11".to_owned(),
                source_address_seen: Measured::Observed("198.19.0.11".to_owned()),
            }],
            bgp_sessions: vec![BgpSessionSample {
                peer_address: "198.18.0.1".to_owned(),
                peer_as: Some(64513),
                initial_state: "Established".to_owned(),
                state_changes: vec![SessionStateChange {
                    offset: Duration::from_secs(3),
                    from: "Established".to_owned(),
                    to: "Idle".to_owned(),
                }],
                observed_from: Duration::ZERO,
                observed_until: Duration::from_secs(60),
                uptime_percent: Measured::Observed(95.0),
                prefixes_received: Measured::Observed(2),
            }],
            migrations: vec![MigrationSample {
                vm: vm(1),
                migration_index: 0,
                source_node: Some("node-1".to_owned()),
                target_node: None,
                t0: t0(0),
                loss_period: ms(120),
                longest_gap: ms(90),
                reachable_after_switchover: ms(30),
                next_hop_follow: ms(400),
                tcp_survived: Measured::Observed(true),
                tcp_longest_stall: ms(210),
            }],
            host_route_nodes: vec![HostRouteNodeSample {
                at: Duration::from_secs(50),
                node: "node-1".to_owned(),
                node_address: Some("198.18.0.1".to_owned()),
                vms: 4,
                prefixes_at_ext: Measured::Observed(1),
                addresses_covered: Measured::Observed(4),
                routes_advertised: Measured::Observed(1),
                capped: Measured::Observed(false),
            }],
            host_route_controller: Some(HostRouteControllerSample {
                at: Duration::from_secs(50),
                reconcile_p99: ms(6),
                reconciles: Measured::Observed(9),
                reconcile_errors: Measured::Observed(0),
                migrations_followed: Measured::Observed(1),
                routes_advertised: Measured::Observed(1),
                not_advertised_vms: Measured::missing("not scraped"),
            }),
        }
    }

    fn quantile_docs(builder: &DocumentBuilder) -> Vec<Value> {
        let at = Utc
            .with_ymd_and_hms(2026, 8, 20, 10, 5, 0)
            .single()
            .expect("a valid end");
        builder
            .quantile_documents(at)
            .expect("quantile documents")
            .iter()
            .map(|d| d.body().clone())
            .collect()
    }

    fn quantile<'a>(docs: &'a [Value], metric: &str, name: &str) -> &'a Value {
        docs.iter()
            .find(|d| d["metricName"] == metric && d["quantileName"] == name)
            .unwrap_or_else(|| panic!("no {metric}/{name} document"))
    }

    #[test]
    fn quantiles_summarise_observed_samples_in_milliseconds() {
        let mut builder = new_builder(AdvertisementMode::Subnet, &[MeasurementKind::VmLatency]);
        let samples = Samples {
            vm_latency: (1..=10).map(|i| latency(i, ms(i))).collect(),
            ..Samples::default()
        };
        assert_eq!(builder.add(&samples).expect("added").len(), 10);
        let docs = quantile_docs(&builder);
        let ready = quantile(&docs, document::VMI_LATENCY_QUANTILES, "VMReady");
        assert_eq!(
            (&ready["P99"], &ready["P95"], &ready["P50"]),
            (&json!(9.5), &json!(9.5), &json!(5.0))
        );
        assert_eq!(
            (&ready["min"], &ready["max"], &ready["avg"]),
            (&json!(1.0), &json!(10.0), &json!(5.5))
        );
        assert_eq!(
            (&ready["count"], &ready["missingCount"]),
            (&json!(10), &json!(0))
        );
        assert_eq!(ready["unit"], "ms");
        assert_eq!(ready["method"], "kube-burner");
        assert_eq!(ready["resolution"], 0.001);
        assert_eq!(ready["timestamp"], "2026-08-20T10:05:00.000000Z");
        assert!(ready.get("P90").is_none(), "only HDR quantiles carry P90");
        assert!(ready.get("missing").is_none() && ready.get("notApplicable").is_none());
    }

    #[test]
    fn unobserved_samples_are_counted_by_reason_and_never_become_numbers() {
        let mut builder = new_builder(AdvertisementMode::HostRoutes, &[MeasurementKind::VmLatency]);
        let samples = Samples {
            vm_latency: vec![
                latency(1, ms(4)),
                latency(2, Measured::missing("watch lost")),
                latency(3, Measured::missing("watch lost")),
                latency(4, Measured::missing("VM deleted")),
            ],
            ..Samples::default()
        };
        let objects = builder.add(&samples).expect("added");
        // Per object: the reason in `missing`, no number under the field.
        let second = objects[1].body();
        assert!(second.get("vmReadyLatency").is_none());
        assert_eq!(second["missing"]["vmReadyLatency"], "watch lost");
        assert_eq!(
            second["notApplicable"]["ipamClaimReleasedLatency"],
            "the run deletes no VM"
        );
        // A phase the harness never recorded is missing with that reason, not dropped.
        assert_eq!(
            second["missing"]["vmiRunningLatency"],
            "not recorded by the harness"
        );
        let docs = quantile_docs(&builder);
        let ready = quantile(&docs, document::VMI_LATENCY_QUANTILES, "VMReady");
        assert_eq!(
            (&ready["count"], &ready["missingCount"]),
            (&json!(1), &json!(3))
        );
        assert_eq!(ready["P99"], 4.0, "statistics use the observed sample only");
        assert_eq!(
            ready["missingReasons"],
            json!([{"reason": "VM deleted", "count": 1}, {"reason": "watch lost", "count": 2}])
        );
        assert!(ready.get("missing").is_none(), "statistics exist");
        // Nothing observed: statistics absent, each with the summed reason.
        let running = quantile(&docs, document::VMI_LATENCY_QUANTILES, "VMIRunning");
        assert_eq!(
            (&running["count"], &running["missingCount"]),
            (&json!(0), &json!(4))
        );
        assert!(running.get("P99").is_none() && running.get("avg").is_none());
        assert_eq!(
            running["missing"]["P99"],
            "no observed sample; 4 missing: not recorded by the harness (4)"
        );
        // Only not-applicable samples: the group is not applicable, not missing.
        let released = quantile(&docs, document::VMI_LATENCY_QUANTILES, "IPAMClaimReleased");
        assert_eq!(
            (&released["notApplicableCount"], &released["missingCount"]),
            (&json!(4), &json!(0))
        );
        assert_eq!(released["notApplicable"]["P50"], "the run deletes no VM");
        assert!(released.get("missing").is_none());
    }

    #[test]
    fn a_non_finite_value_is_missing_everywhere() {
        let mut builder = new_builder(AdvertisementMode::Subnet, &[MeasurementKind::VmThroughput]);
        let sample = ThroughputSample {
            vm: vm(1),
            t0: t0(0),
            goodput_bits_per_second: Measured::Observed(f64::INFINITY),
            retransmits: Measured::Observed(0),
            duration: ms(5000),
        };
        let objects = builder
            .add(&Samples {
                throughput: vec![sample],
                ..Samples::default()
            })
            .expect("added");
        assert_eq!(
            objects[0].body()["missing"]["goodputBitsPerSecond"],
            "non-finite value inf"
        );
        let docs = quantile_docs(&builder);
        let goodput = quantile(&docs, document::VM_THROUGHPUT_QUANTILES, "Goodput");
        assert_eq!(
            (&goodput["count"], &goodput["missingCount"]),
            (&json!(0), &json!(1))
        );
        assert_eq!(goodput["unit"], "bps");
        let retransmits = quantile(&docs, document::VM_THROUGHPUT_QUANTILES, "Retransmits");
        assert_eq!(
            (&retransmits["count"], &retransmits["unit"]),
            (&json!(1), &json!("count"))
        );
    }

    #[test]
    fn subnet_mode_reports_host_routes_not_applicable_until_one_is_measured() {
        let network_only = Samples {
            route_convergence: vec![route(RouteScope::Network, ms(20))],
            ..Samples::default()
        };
        let mut builder = new_builder(
            AdvertisementMode::Subnet,
            &[MeasurementKind::RouteConvergence],
        );
        builder.add(&network_only).expect("added");
        let docs = quantile_docs(&builder);
        let host = quantile(
            &docs,
            document::ROUTE_CONVERGENCE_QUANTILES,
            "HostRouteAdvertiseFib",
        );
        assert_eq!(host["notApplicable"]["P99"], HOST_ROUTES_ONLY);
        assert_eq!(
            (&host["count"], &host["missingCount"]),
            (&json!(0), &json!(0))
        );
        let fib = quantile(&docs, document::ROUTE_CONVERGENCE_QUANTILES, "AdvertiseFib");
        assert_eq!(fib["P99"], 20.0);
        // A /32 measured after all: the marker goes, the sample counts.
        builder
            .add(&Samples {
                route_convergence: vec![route(
                    RouteScope::HostRoute {
                        vm_name: "vm-1".to_owned(),
                    },
                    ms(25),
                )],
                ..Samples::default()
            })
            .expect("added");
        let docs = quantile_docs(&builder);
        let host = quantile(
            &docs,
            document::ROUTE_CONVERGENCE_QUANTILES,
            "HostRouteAdvertiseFib",
        );
        assert_eq!((&host["P99"], &host["count"]), (&json!(25.0), &json!(1)));
        assert!(host.get("notApplicable").is_none());
        // In host-routes mode the same group without samples is missing, not "not applicable".
        let builder = new_builder(
            AdvertisementMode::HostRoutes,
            &[MeasurementKind::RouteConvergence],
        );
        let docs = quantile_docs(&builder);
        let host = quantile(
            &docs,
            document::ROUTE_CONVERGENCE_QUANTILES,
            "HostRouteAdvertiseFib",
        );
        assert_eq!(host["missing"]["P99"], "no samples recorded");
    }

    #[test]
    fn rtt_is_merged_in_an_hdr_histogram_and_loss_is_a_percentage() {
        let mut builder = new_builder(
            AdvertisementMode::Subnet,
            &[MeasurementKind::VmReachability],
        );
        let objects = builder
            .add(&Samples {
                reachability: vec![reachability(1), reachability(2)],
                ..Samples::default()
            })
            .expect("added");
        let object = objects[0].body();
        assert_eq!(object["reachable"], true);
        assert_eq!(object["lossPercent"], 25.0);
        assert_eq!(object["firstReplyLatency"], 800.0);
        assert_eq!(object["resolutions"]["firstReplyLatency"], 0.001);
        let docs = quantile_docs(&builder);
        let rtt = quantile(&docs, document::VM_REACHABILITY_QUANTILES, "RTT");
        assert_eq!(rtt["method"], "hdr");
        assert_eq!(rtt["count"], 6, "RTT counts probes, not VMs");
        assert!(rtt["P90"].is_number());
        let buckets = rtt["histogram"].as_array().expect("buckets");
        let counted: u64 = buckets.iter().filter_map(|b| b["count"].as_u64()).sum();
        assert_eq!(counted, 6);
        let loss = quantile(&docs, document::VM_REACHABILITY_QUANTILES, "LossPercent");
        assert_eq!(
            (&loss["unit"], &loss["P50"]),
            (&json!("percent"), &json!(25.0))
        );
    }

    #[test]
    fn per_object_documents_carry_identity_timing_and_cluster_metadata() {
        let mut builder = new_builder(AdvertisementMode::Subnet, &[MeasurementKind::VmLatency]);
        let mut sample = latency(3, ms(1500));
        sample.t0 = t0(2500);
        let objects = builder
            .add(&Samples {
                vm_latency: vec![sample],
                ..Samples::default()
            })
            .expect("added");
        let body = objects[0].body();
        assert_eq!(body["metricName"], document::VMI_LATENCY);
        assert_eq!(
            (&body["uuid"], &body["jobName"]),
            (&json!("u-1"), &json!("vm-bgp"))
        );
        assert_eq!(
            (&body["namespace"], &body["vmName"], &body["replica"]),
            (&json!("vmbgp-0"), &json!("vm-3"), &json!(3))
        );
        assert_eq!(
            body["timestamp"], "2026-08-20T10:00:02.500000Z",
            "start + t0"
        );
        assert_eq!(body["t0Uncertainty"], 1.5);
        assert_eq!(body["nodeName"], "node-1");
        assert!(body.get("podName").is_none());
        assert_eq!(body["vmReadyLatency"], 1500.0);
        assert_eq!(
            body["metadata"],
            json!({"k8sVersion": "v1.33.1", "kubevirtVersion": "v1.5.0", "totalNodes": 3,
                   "advertisementMode": "subnet"})
        );
    }

    #[test]
    fn a_sample_given_twice_is_refused_and_leaves_no_trace() {
        let mut builder = new_builder(AdvertisementMode::Subnet, &[MeasurementKind::VmLatency]);
        let once = Samples {
            vm_latency: vec![latency(1, ms(1))],
            ..Samples::default()
        };
        builder.add(&once).expect("first time");
        let again = Samples {
            vm_latency: vec![latency(2, ms(2)), latency(1, ms(1))],
            ..Samples::default()
        };
        assert!(matches!(
            builder.add(&again),
            Err(DocumentError::DuplicateSample { .. })
        ));
        let docs = quantile_docs(&builder);
        let ready = quantile(&docs, document::VMI_LATENCY_QUANTILES, "VMReady");
        assert_eq!(ready["count"], 1, "the refused batch added nothing");
    }

    /// The builder and the shared quantile table name the same quantiles with the same units: a
    /// quantile added to one and not the other, or a recording call with a misspelt name (its
    /// group would stay empty), fails here.
    #[test]
    fn the_builder_writes_exactly_the_quantiles_of_the_table() {
        let mut builder = new_builder(AdvertisementMode::HostRoutes, &MeasurementKind::ALL);
        builder.add(&one_of_each()).expect("added");
        let docs = quantile_docs(&builder);
        let written: BTreeSet<(String, String, String)> = docs
            .iter()
            .map(|d| {
                assert!(
                    d["count"].as_u64() > Some(0),
                    "{}/{} got no sample",
                    d["metricName"],
                    d["quantileName"]
                );
                (
                    d["metricName"].as_str().unwrap_or_default().to_owned(),
                    d["quantileName"].as_str().unwrap_or_default().to_owned(),
                    d["unit"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        let table: BTreeSet<(String, String, String)> = QUANTILE_METRICS
            .iter()
            .flat_map(|m| {
                m.quantiles.iter().map(|q| {
                    (
                        m.metric_name.to_owned(),
                        q.name.to_owned(),
                        q.unit.as_str().to_owned(),
                    )
                })
            })
            .collect();
        assert_eq!(written, table);
        // Without samples, every quantile but the cross-checks is still written.
        let empty = new_builder(AdvertisementMode::HostRoutes, &MeasurementKind::ALL);
        let registered: BTreeSet<(String, String)> = quantile_docs(&empty)
            .iter()
            .map(|d| {
                (
                    d["metricName"].as_str().unwrap_or_default().to_owned(),
                    d["quantileName"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        let always: BTreeSet<(String, String)> = QUANTILE_METRICS
            .iter()
            .flat_map(|m| {
                m.threshold_quantiles()
                    .map(|q| (m.metric_name.to_owned(), q.to_owned()))
            })
            .collect();
        assert_eq!(registered, always);
    }
}
