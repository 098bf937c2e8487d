//! What the harness hands to the reporters: the run description and the typed per-measurement
//! samples. Durations are harness-monotonic-clock `Timing`s; instants are offsets from the run's
//! start on that clock, converted to wall-clock time once, here, from the run's start time.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use vmbgp_model::{Measured, Timing};

/// How VM addresses reach the external router.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum AdvertisementMode {
    /// OVN-K advertises each Layer2 CUDN as its whole subnet from every node (ECMP).
    #[serde(rename = "subnet")]
    Subnet,
    /// The host-route controller advertises one /32 per VM from the node that runs it.
    #[serde(rename = "host-routes")]
    HostRoutes,
}

impl AdvertisementMode {
    pub fn as_str(&self) -> &'static str {
        match self {
            AdvertisementMode::Subnet => "subnet",
            AdvertisementMode::HostRoutes => "host-routes",
        }
    }
}

impl fmt::Display for AdvertisementMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Cluster facts written flat into `jobSummary` and nested as `metadata` in every other document.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterMetadata {
    pub k8s_version: String,
    /// Read from the KubeVirt CR where the harness may read it.
    pub kubevirt_version: Measured<String>,
    pub total_nodes: u64,
    /// From the BMP Initiation message's sysDescr of the external router.
    pub frr_version: Measured<String>,
    pub mode: AdvertisementMode,
}

/// The measurement kinds a run can enable. Quantile documents (and thresholds) exist only for
/// enabled kinds; an enabled kind without samples is reported as missing, never silently dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum MeasurementKind {
    VmLatency,
    RouteConvergence,
    VmReachability,
    VmThroughput,
    VmEgress,
    BgpSession,
    VmMigration,
}

impl MeasurementKind {
    pub const ALL: [MeasurementKind; 7] = [
        MeasurementKind::VmLatency,
        MeasurementKind::RouteConvergence,
        MeasurementKind::VmReachability,
        MeasurementKind::VmThroughput,
        MeasurementKind::VmEgress,
        MeasurementKind::BgpSession,
        MeasurementKind::VmMigration,
    ];
}

/// One run: everything `jobSummary` says about it.
#[derive(Debug, Clone)]
pub struct RunDescription {
    pub uuid: String,
    pub job_name: String,
    pub job_iterations: u64,
    /// The full job configuration; `jobIterations` is set from `job_iterations` when written.
    /// URL credentials inside it are redacted before anything is written.
    pub job_config: serde_json::Value,
    /// Wall-clock time of the harness's monotonic-clock origin (read once per run).
    pub start: DateTime<Utc>,
    /// `<version>@<commit>`.
    pub version: String,
    pub workload_flags: BTreeMap<String, String>,
    pub cluster: ClusterMetadata,
    pub measurements: Vec<MeasurementKind>,
}

impl RunDescription {
    /// Wall-clock time of an instant given as an offset from the run's start.
    pub fn wall_clock(&self, offset: Duration) -> DateTime<Utc> {
        chrono::Duration::from_std(offset)
            .ok()
            .and_then(|d| self.start.checked_add_signed(d))
            .unwrap_or(self.start)
    }
}

/// Where a sample's object sits in the run (kube-burner's `jobIteration`, `replica`).
#[derive(Debug, Clone, PartialEq)]
pub struct VmIdentity {
    pub namespace: String,
    pub vm_name: String,
    pub job_iteration: u64,
    pub replica: u64,
}

/// When the measured action started: the instant the create (or delete, migrate) request was
/// sent, and the gap until its response arrived, which is t0's uncertainty.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StartInstant {
    pub offset: Duration,
    pub uncertainty: Duration,
}

/// VM lifecycle phases, with kube-burner's field and quantile names where kube-burner has them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum VmPhase {
    VmiCreated,
    VmiPending,
    VmiScheduling,
    VmiScheduled,
    VmiRunning,
    VmReady,
    PodCreated,
    PodScheduled,
    PodInitialized,
    PodContainersReady,
    PodReady,
    PodReadyToStartContainers,
    IpamClaimIpsAllocated,
    IpVisible,
}

impl VmPhase {
    pub const ALL: [VmPhase; 14] = [
        VmPhase::VmiCreated,
        VmPhase::VmiPending,
        VmPhase::VmiScheduling,
        VmPhase::VmiScheduled,
        VmPhase::VmiRunning,
        VmPhase::VmReady,
        VmPhase::PodCreated,
        VmPhase::PodScheduled,
        VmPhase::PodInitialized,
        VmPhase::PodContainersReady,
        VmPhase::PodReady,
        VmPhase::PodReadyToStartContainers,
        VmPhase::IpamClaimIpsAllocated,
        VmPhase::IpVisible,
    ];

    /// Timeseries field name (kube-burner `vmiLatencyMeasurement`).
    pub fn field_name(&self) -> &'static str {
        match self {
            VmPhase::VmiCreated => "vmiCreatedLatency",
            VmPhase::VmiPending => "vmiPendingLatency",
            VmPhase::VmiScheduling => "vmiSchedulingLatency",
            VmPhase::VmiScheduled => "vmiScheduledLatency",
            VmPhase::VmiRunning => "vmiRunningLatency",
            VmPhase::VmReady => "vmReadyLatency",
            VmPhase::PodCreated => "podCreatedLatency",
            VmPhase::PodScheduled => "podScheduledLatency",
            VmPhase::PodInitialized => "podInitializedLatency",
            VmPhase::PodContainersReady => "podContainersReadyLatency",
            VmPhase::PodReady => "podReadyLatency",
            VmPhase::PodReadyToStartContainers => "podReadyToStartContainersLatency",
            VmPhase::IpamClaimIpsAllocated => "ipamClaimIPsAllocatedLatency",
            VmPhase::IpVisible => "ipVisibleLatency",
        }
    }

    /// Server-timestamp field name: the same phase from API-server timestamps (1 s resolution),
    /// kept apart from the harness-clock field for cross-checking.
    pub fn server_field_name(&self) -> String {
        let field = self.field_name();
        let mut chars = field.chars();
        match chars.next() {
            Some(first) => format!("server{}{}", first.to_ascii_uppercase(), chars.as_str()),
            None => String::new(),
        }
    }

    /// Quantile name (kube-burner `getLatency`, including its `PodPod…` doubling).
    pub fn quantile_name(&self) -> &'static str {
        match self {
            VmPhase::VmiCreated => "VMICreated",
            VmPhase::VmiPending => "VMIPending",
            VmPhase::VmiScheduling => "VMIScheduling",
            VmPhase::VmiScheduled => "VMIScheduled",
            VmPhase::VmiRunning => "VMIRunning",
            VmPhase::VmReady => "VMReady",
            VmPhase::PodCreated => "PodCreated",
            VmPhase::PodScheduled => "PodPodScheduled",
            VmPhase::PodInitialized => "PodInitialized",
            VmPhase::PodContainersReady => "PodContainersReady",
            VmPhase::PodReady => "PodReady",
            VmPhase::PodReadyToStartContainers => "PodPodReadyToStartContainers",
            VmPhase::IpamClaimIpsAllocated => "IPAMClaimIPsAllocated",
            VmPhase::IpVisible => "IPVisible",
        }
    }
}

/// VM lifecycle latencies of one VM, from its create request (t0).
#[derive(Debug, Clone)]
pub struct VmLatencySample {
    pub vm: VmIdentity,
    pub vmi_name: Option<String>,
    pub pod_name: Option<String>,
    pub node_name: Option<String>,
    pub t0: StartInstant,
    /// Harness-clock latencies (watch event arrival − t0). A phase absent from the map is
    /// reported missing ("not recorded by the harness").
    pub harness: BTreeMap<VmPhase, Measured<Timing>>,
    /// API-server-timestamp latencies (1 s resolution), for cross-checking only.
    pub server: BTreeMap<VmPhase, Measured<Timing>>,
    /// From the VM's delete request (not t0) to its IPAMClaim gone, when the run deletes VMs while
    /// measuring (churn): OVN-K frees the address only then, so this bounds address reuse.
    pub claim_release: Measured<Timing>,
}

/// The field and quantile of [`VmLatencySample::claim_release`].
pub const CLAIM_RELEASED_FIELD: &str = "ipamClaimReleasedLatency";
pub const CLAIM_RELEASED_QUANTILE: &str = "IPAMClaimReleased";

/// Which route a convergence sample is about.
#[derive(Debug, Clone, PartialEq)]
pub enum RouteScope {
    /// The whole Layer2 subnet advertised by OVN-K from every node.
    Network,
    /// One VM's /32 advertised by the host-route controller.
    HostRoute { vm_name: String },
}

/// Advertise and withdraw timing of one prefix, seen from the external router.
#[derive(Debug, Clone)]
pub struct RouteConvergenceSample {
    pub network: String,
    pub prefix: String,
    pub scope: RouteScope,
    pub job_iteration: u64,
    /// The advertise trigger (RouteAdvertisements / VM create request).
    pub t0: StartInstant,
    /// t0 → prefix in the external router's Adj-RIB-In (BMP, stamped on arrival).
    pub advertise_adj_rib_in: Measured<Timing>,
    /// t0 → route in the external router's kernel FIB (netlink).
    pub advertise_fib: Measured<Timing>,
    /// t0 → route with every expected next hop in the FIB.
    pub advertise_all_next_hops: Measured<Timing>,
    pub expected_next_hops: u64,
    pub observed_next_hops: Measured<u64>,
    /// Withdraw trigger → prefix gone from Adj-RIB-In / FIB.
    pub withdraw_adj_rib_in: Measured<Timing>,
    pub withdraw_fib: Measured<Timing>,
    /// How long the route stayed in the FIB after its destination stopped answering.
    pub stale_route_window: Measured<Timing>,
    /// Host routes: the communities of the route's first announcement (BMP), space-separated as
    /// FRR prints them. Not written for subnet routes.
    pub communities: Measured<String>,
    /// Host routes: the local-pref the external router's inbound policy gave the route's best path
    /// (its BGP table: BMP does not carry LOCAL_PREF for routes from external peers). Not written
    /// for subnet routes.
    pub local_pref: Measured<u64>,
}

/// ICMP reachability of one VM from the external router's side.
#[derive(Debug, Clone)]
pub struct ReachabilitySample {
    pub vm: VmIdentity,
    pub address: String,
    /// VM create request (t0 of the first-reply latency).
    pub t0: StartInstant,
    pub first_reply: Measured<Timing>,
    /// t0 → start of the first run of consecutive replies the harness counts as sustained.
    pub sustained_reachability: Measured<Timing>,
    /// Lost probes × probe interval during the convergence window (RFC 6413 loss-derived).
    pub loss_derived_convergence: Measured<Timing>,
    /// RTTs in nanoseconds, recorded on the hot path (see `quantiles::new_nanos_histogram`).
    pub rtt_nanos: Measured<Histogram<u64>>,
    pub probes_sent: u64,
    pub probes_received: u64,
    pub probe_interval: Duration,
}

/// TCP goodput of one sampled VM.
#[derive(Debug, Clone)]
pub struct ThroughputSample {
    pub vm: VmIdentity,
    pub t0: StartInstant,
    pub goodput_bits_per_second: Measured<f64>,
    pub retransmits: Measured<u64>,
    pub duration: Measured<Timing>,
}

/// The source address the harness's echo endpoint saw for one VM's outbound connection.
#[derive(Debug, Clone)]
pub struct EgressSample {
    pub vm: VmIdentity,
    pub t0: StartInstant,
    pub vm_address: String,
    pub source_address_seen: Measured<String>,
}

/// A BGP session state change seen by the external router.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionStateChange {
    pub offset: Duration,
    pub from: String,
    pub to: String,
}

/// One BGP peer of the external router over the run.
#[derive(Debug, Clone)]
pub struct BgpSessionSample {
    pub peer_address: String,
    pub peer_as: Option<u32>,
    /// State when observation began.
    pub initial_state: String,
    pub state_changes: Vec<SessionStateChange>,
    pub observed_from: Duration,
    pub observed_until: Duration,
    /// Share of the observed time the session was Established, 0–100.
    pub uptime_percent: Measured<f64>,
    pub prefixes_received: Measured<u64>,
}

impl BgpSessionSample {
    /// Flaps: transitions out of Established.
    pub fn flaps(&self) -> u64 {
        self.state_changes
            .iter()
            .filter(|c| c.from == "Established" && c.to != "Established")
            .count() as u64
    }
}

/// One live migration of one VM under high-rate probing.
#[derive(Debug, Clone)]
pub struct MigrationSample {
    pub vm: VmIdentity,
    pub migration_index: u64,
    pub source_node: Option<String>,
    pub target_node: Option<String>,
    /// The VirtualMachineInstanceMigration create request.
    pub t0: StartInstant,
    pub loss_period: Measured<Timing>,
    pub longest_gap: Measured<Timing>,
    pub reachable_after_switchover: Measured<Timing>,
    /// Host-route mode: switch-over → the /32's next hop is the target node.
    pub next_hop_follow: Measured<Timing>,
    pub tcp_survived: Measured<bool>,
    /// The migration's paced TCP stream: the longest time without acknowledged progress (zero
    /// goodput), at its `TCP_INFO` sampling resolution.
    pub tcp_longest_stall: Measured<Timing>,
}

/// Host-route mode, once per run before cleanup: one node's host routes as the external router's
/// BGP table had them, next to the controller's count for that node. With aggregation on, a node
/// advertises fewer prefixes than it hosts VMs; `addresses_covered` must still equal `vms`.
#[derive(Debug, Clone)]
pub struct HostRouteNodeSample {
    /// When the table was read, from the run's start.
    pub at: Duration,
    pub node: String,
    /// Its InternalIP, the next hop ext routes its /32s to.
    pub node_address: Option<String>,
    /// The run's VMs whose VMI ran on the node when the table was read (0 when it was not read).
    pub vms: u64,
    /// Host-route prefixes (longer than their network's subnet) whose best path is via the node.
    pub prefixes_at_ext: Measured<u64>,
    /// Addresses those prefixes cover.
    pub addresses_covered: Measured<u64>,
    /// The controller's `routes_advertised` for the node.
    pub routes_advertised: Measured<u64>,
    /// The controller's `node_capped`: past its per-node cap, advertising no host routes.
    pub capped: Measured<bool>,
}

/// The host-route controller's own figures, scraped from its `/metrics` once before cleanup.
#[derive(Debug, Clone)]
pub struct HostRouteControllerSample {
    /// When the metrics were scraped, from the run's start.
    pub at: Duration,
    /// p99 of `reconcile_duration_seconds`, interpolated in its histogram bucket (the resolution
    /// is that bucket's width).
    pub reconcile_p99: Measured<Timing>,
    pub reconciles: Measured<u64>,
    pub reconcile_errors: Measured<u64>,
    pub migrations_followed: Measured<u64>,
    /// `routes_advertised`, summed over the nodes.
    pub routes_advertised: Measured<u64>,
    pub not_advertised_vms: Measured<u64>,
}

/// A batch of samples the harness hands over as the run goes (e.g. after each iteration).
#[derive(Debug, Clone, Default)]
pub struct Samples {
    pub vm_latency: Vec<VmLatencySample>,
    pub route_convergence: Vec<RouteConvergenceSample>,
    pub reachability: Vec<ReachabilitySample>,
    pub throughput: Vec<ThroughputSample>,
    pub egress: Vec<EgressSample>,
    pub bgp_sessions: Vec<BgpSessionSample>,
    pub migrations: Vec<MigrationSample>,
    pub host_route_nodes: Vec<HostRouteNodeSample>,
    pub host_route_controller: Option<HostRouteControllerSample>,
}

impl Samples {
    pub fn is_empty(&self) -> bool {
        self.vm_latency.is_empty()
            && self.route_convergence.is_empty()
            && self.reachability.is_empty()
            && self.throughput.is_empty()
            && self.egress.is_empty()
            && self.bgp_sessions.is_empty()
            && self.migrations.is_empty()
            && self.host_route_nodes.is_empty()
            && self.host_route_controller.is_none()
    }
}
