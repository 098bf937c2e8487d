//! The plan types: the validated [`Plan`] and the parts it is made of, as a run, a render or a
//! preflight reads them, and as a plan dump serializes them.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use ipnet::Ipv4Net;
use serde::Serialize;
use url::Url;
use vmbgp_model::Threshold;

use super::indexing::serialize_redacted_url;

/// How iterations use networks and VMs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Shape {
    /// Objects accumulate: after iteration i, (i+1)·vm_count VMs are live.
    Scale,
    /// Each iteration creates vm_count VMs, measures and deletes them; IPs are reused.
    Churn,
    /// vm_count VMs are created once; each iteration live-migrates every VM.
    Migration,
}

/// Where VMs get their network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// One namespace + CUDN + RouteAdvertisements per iteration, a subnet carved from a supernet.
    PerIteration,
    /// One CUDN for the whole run.
    Shared,
}

/// A validated plan: everything a run, a render or a preflight needs, with defaults resolved.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub profile: String,
    pub description: String,
    pub job_name: String,
    pub uuid: String,
    pub shape: Shape,
    pub iterations: u32,
    pub vm_count: u32,
    pub qps: u32,
    pub burst: u32,
    #[serde(with = "humantime_serde_compat")]
    pub timeout: Duration,
    pub gc: bool,
    pub indexing: Indexing,
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    pub layout: Layout,
    /// Networks in creation order (one per iteration, or one shared).
    pub networks: Vec<NetworkSpec>,
    /// VMs in creation order.
    pub vms: Vec<VmSpec>,
    pub vm_template: VmTemplate,
    pub bgp: BgpPlan,
    pub probes: ProbePlan,
    pub thresholds: Vec<Threshold>,
    /// The most VMs alive at once.
    pub peak_live_vms: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Indexing {
    pub es: Option<EsTarget>,
    pub local_indexing: bool,
    pub results_dir: PathBuf,
}

/// An Elasticsearch/OpenSearch target. `server` may hold credentials: never print it, use [`EsTarget::redacted`].
#[derive(Debug, Clone, Serialize)]
pub struct EsTarget {
    #[serde(serialize_with = "serialize_redacted_url")]
    pub server: Url,
    pub index: String,
}

/// Serializes durations as humantime text (`4h`, `250ms`) in plan dumps.
mod humantime_serde_compat {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }
}

/// One advertised Layer2 primary network: its namespace, CUDN and RouteAdvertisements.
#[derive(Debug, Clone, Serialize)]
pub struct NetworkSpec {
    /// CUDN, RouteAdvertisements and namespace name.
    pub name: String,
    pub namespace: String,
    /// The iteration that creates it (0 for the shared network).
    pub iteration: u32,
    pub subnet: Ipv4Net,
    /// OVN-K's default gateway: the first host address of the subnet.
    pub gateway: Ipv4Addr,
    /// Static-only addresses (excluded from automatic allocation); empty when no static range is used.
    pub reserved_subnets: Vec<Ipv4Net>,
}

/// One VM in creation order.
#[derive(Debug, Clone, Serialize)]
pub struct VmSpec {
    pub name: String,
    pub namespace: String,
    /// The CUDN it attaches to (through its namespace's primary UDN).
    pub network: String,
    pub iteration: u32,
    /// 1-based, like kube-burner's `{{.Replica}}`.
    pub replica: u32,
    /// Day-0 address requested with `network.kubevirt.io/addresses`, when static.
    pub static_ip: Option<Ipv4Addr>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VmTemplate {
    pub image: String,
    pub memory: String,
    pub cores: u32,
    pub http_port: u16,
    pub sink_port: u16,
}

/// How the external router finds the cluster nodes.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum Neighbors {
    /// One neighbour per node address.
    Explicit(Vec<Ipv4Addr>),
    /// A peer-group accepting sessions from any address in the range (`bgp listen range`).
    ListenRange(Ipv4Net),
}

#[derive(Debug, Clone, Serialize)]
pub struct BmpTarget {
    pub address: Ipv4Addr,
    pub port: u16,
}

#[derive(Debug, Clone, Serialize)]
pub struct BgpPlan {
    pub peer_ip: Ipv4Addr,
    pub peer_asn: u32,
    pub cluster_asn: u32,
    pub frr_namespace: String,
    pub neighbors: Neighbors,
    pub keepalive_secs: u64,
    pub hold_secs: u64,
    pub bmp: BmpTarget,
    /// Host-route mode: each VM's /32 is advertised from its node by the host-route controller
    /// (`run --lab` starts it; on a cluster it is deployed from `controller/deploy/`).
    pub host_routes: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProbePlan {
    pub converging_rate: u32,
    pub steady_rate: u32,
    pub migration_rate: u32,
    /// VMs per tested iteration that get a TCP throughput test.
    pub throughput_vms: u32,
    /// Iterations that run throughput tests (0-based, spread evenly from the first to the last).
    pub throughput_iterations: Vec<u32>,
    #[serde(with = "humantime_serde_compat")]
    pub throughput_duration: Duration,
    pub egress_endpoint: SocketAddr,
}
