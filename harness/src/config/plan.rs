//! The validated run plan and the one pure function that builds it from a profile and overrides.
//! Every problem is collected (not just the first) and named by its source: the `--flag` when the
//! value came from the command line, `profile <name>: <key>` when it came from the profile.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use ipnet::Ipv4Net;
use serde::Serialize;
use url::Url;

use super::net::{IpRange, cidr_cover};
use super::profile::{Profile, ThresholdProfile};
use super::{ConfigError, Problem};

/// OVN-K names the network's VRF after the CUDN only when the name has at most this many characters.
pub const MAX_CUDN_NAME_LEN: usize = 15;

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

/// Command-line values that override the profile. `None` means "not given".
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub uuid: Option<String>,
    pub iterations: Option<u32>,
    pub vm_count: Option<u32>,
    pub qps: Option<u32>,
    pub burst: Option<u32>,
    pub timeout: Option<String>,
    pub gc: Option<bool>,
    pub es_server: Option<String>,
    pub es_index: Option<String>,
    pub local_indexing: Option<bool>,
    pub results_dir: Option<PathBuf>,
    pub network: Option<String>,
    pub supernet: Option<String>,
    pub subnet: Option<String>,
    pub vm_ip_range: Option<String>,
    pub name_prefix: Option<String>,
    pub bgp_peer_ip: Option<String>,
    pub peer_asn: Option<u64>,
    pub cluster_asn: Option<u64>,
    pub frr_namespace: Option<String>,
    pub node_ips: Option<Vec<String>>,
    pub node_cidr: Option<String>,
    pub bmp_target: Option<String>,
    pub egress_endpoint: Option<String>,
    pub vm_image: Option<String>,
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
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

impl EsTarget {
    /// The server URL with any password replaced, safe for logs and files.
    pub fn redacted(&self) -> String {
        redact_url(&self.server)
    }
}

fn redact_url(url: &Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        let _ = shown.set_password(Some("REDACTED"));
    }
    shown.to_string()
}

fn serialize_redacted_url<S: serde::Serializer>(url: &Url, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&redact_url(url))
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

/// Which statistic of a quantile document a threshold bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Stat {
    P99,
    P95,
    P90,
    P50,
    #[serde(rename = "min")]
    Min,
    #[serde(rename = "max")]
    Max,
    #[serde(rename = "avg")]
    Avg,
    /// How many samples were observed.
    #[serde(rename = "count")]
    Count,
    /// How many samples were missing (e.g. VMs that never answered).
    #[serde(rename = "missingCount")]
    MissingCount,
}

/// The bound of a threshold, with its unit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ThresholdBound {
    MaxDuration(#[serde(with = "humantime_serde_compat")] Duration),
    MinDuration(#[serde(with = "humantime_serde_compat")] Duration),
    MaxPercent(f64),
    MinPercent(f64),
    MaxNumber(f64),
    MinNumber(f64),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Threshold {
    /// Measurement name without the `Measurement` suffix, e.g. `routeConvergence`.
    pub metric: String,
    /// The `quantileName` of the quantile document, e.g. `AdvertiseFib`.
    pub quantile: String,
    pub stat: Stat,
    pub bound: ThresholdBound,
}

/// Measurement names and the quantile names their quantile documents carry (the reporters'
/// `<metric>QuantilesMeasurement` documents); thresholds must name one of these.
pub fn known_metrics() -> &'static [(&'static str, &'static [&'static str])] {
    &[
        (
            "vmiLatency",
            &[
                "VMICreated",
                "VMIPending",
                "VMIScheduling",
                "VMIScheduled",
                "VMIRunning",
                "VMReady",
                "IPAMClaimIPsAllocated",
                "IPVisible",
                "IPAMClaimReleased",
            ],
        ),
        (
            "routeConvergence",
            &[
                "AdvertiseAdjRibIn",
                "AdvertiseFib",
                "AdvertiseAllNextHops",
                "WithdrawAdjRibIn",
                "WithdrawFib",
                "StaleRouteWindow",
                "HostRouteAdvertiseAdjRibIn",
                "HostRouteAdvertiseFib",
                "HostRouteAdvertiseAllNextHops",
                "HostRouteWithdrawAdjRibIn",
                "HostRouteWithdrawFib",
                "HostRouteStaleRouteWindow",
            ],
        ),
        (
            "vmReachability",
            &[
                "FirstReply",
                "SustainedReachability",
                "LossDerivedConvergence",
                "RTT",
                "LossPercent",
            ],
        ),
        ("vmThroughput", &["Goodput", "Retransmits"]),
        (
            "bgpSession",
            &["UptimePercent", "Flaps", "PrefixesReceived"],
        ),
        (
            "vmMigration",
            &[
                "LossPeriod",
                "LongestGap",
                "ReachableAfterSwitchover",
                "NextHopFollow",
            ],
        ),
    ]
}

/// Built-in defaults for values neither the profile nor the command line sets.
mod defaults {
    pub const ITERATIONS: u32 = 1;
    pub const VM_COUNT: u32 = 1;
    pub const QPS: u32 = 20;
    pub const BURST: u32 = 20;
    pub const TIMEOUT: &str = "4h";
    pub const SUPERNET: &str = "198.19.0.0/16";
    pub const SUBNET_PREFIX: u8 = 24;
    pub const FIRST_VM_OFFSET: u32 = 10;
    pub const NAME_PREFIX: &str = "vmbgp";
    pub const PEER_IP: &str = "198.18.0.155";
    pub const PEER_ASN: u64 = 64512;
    pub const CLUSTER_ASN: u64 = 64513;
    pub const FRR_NAMESPACE: &str = "openshift-frr-k8s";
    pub const NODE_CIDR: &str = "198.18.0.0/24";
    pub const KEEPALIVE: &str = "3s";
    pub const HOLD: &str = "9s";
    pub const BMP_TARGET: &str = "127.0.0.1:5000";
    pub const IMAGE: &str = "quay.io/containerdisks/fedora:41";
    pub const MEMORY: &str = "1Gi";
    pub const HTTP_PORT: u16 = 8080;
    pub const SINK_PORT: u16 = 5201;
    pub const CONVERGING_RATE: u32 = 100;
    pub const STEADY_RATE: u32 = 10;
    pub const MIGRATION_RATE: u32 = 1000;
    pub const THROUGHPUT_DURATION: &str = "5s";
    pub const THROUGHPUT_VMS: u32 = 1;
    /// Three tested iterations (first, middle, last) keep a 72-iteration run within its time budget.
    pub const THROUGHPUT_ITERATIONS: u32 = 3;
    pub const EGRESS_PORT: u16 = 8090;
    pub const RESULTS_DIR: &str = "results";
}

/// The most VMs one run may create or migrate (iterations × vmCount). A run plans, measures and
/// reports every one of them in memory; 100,000 is far above any real scale test (the nightly job
/// is 720) and keeps the plan to tens of megabytes, so a typo such as `iterations: 400000000` is
/// refused naming the field instead of exhausting memory.
pub const MAX_PLANNED_VMS: u64 = 100_000;

/// A value with the name of the place it came from, for error messages.
struct Sourced<T> {
    value: T,
    field: String,
}

/// Collects problems while planning.
struct Checker<'a> {
    profile: &'a str,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    /// Picks the command-line value, else the profile value, else the default, remembering the source.
    fn pick<T>(
        &self,
        cli: Option<T>,
        flag: &str,
        profile: Option<T>,
        key: &str,
        default: T,
    ) -> Sourced<T> {
        match (cli, profile) {
            (Some(value), _) => Sourced {
                value,
                field: flag.to_string(),
            },
            (None, Some(value)) => Sourced {
                value,
                field: format!("profile {}: {key}", self.profile),
            },
            (None, None) => Sourced {
                value: default,
                field: format!("{flag} (default)"),
            },
        }
    }

    fn problem(&mut self, field: &str, value: impl ToString, message: impl Into<String>) {
        self.problems.push(Problem {
            field: field.to_string(),
            value: value.to_string(),
            message: message.into(),
        });
    }

    fn parse<T>(&mut self, source: &Sourced<String>, what: &str) -> Option<T>
    where
        T: std::str::FromStr,
    {
        match source.value.trim().parse::<T>() {
            Ok(v) => Some(v),
            Err(_) => {
                self.problem(&source.field, &source.value, format!("not a valid {what}"));
                None
            }
        }
    }

    fn duration(&mut self, source: &Sourced<String>) -> Option<Duration> {
        match humantime::parse_duration(source.value.trim()) {
            Ok(d) if d.is_zero() => {
                self.problem(&source.field, &source.value, "must be greater than zero");
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                self.problem(
                    &source.field,
                    &source.value,
                    format!("not a valid duration ({e}); use e.g. 30s, 5m, 4h, 1h30m"),
                );
                None
            }
        }
    }

    fn positive(&mut self, source: &Sourced<u32>) -> Option<u32> {
        if source.value == 0 {
            self.problem(&source.field, source.value, "must be at least 1");
            None
        } else {
            Some(source.value)
        }
    }

    fn asn(&mut self, source: &Sourced<u64>) -> Option<u32> {
        // 0 and 4294967295 are reserved (RFC 7607, RFC 7300); 23456 is AS_TRANS (RFC 6793).
        match u32::try_from(source.value) {
            Ok(asn) if asn != 0 && asn != u32::MAX && asn != 23456 => Some(asn),
            _ => {
                self.problem(
                    &source.field,
                    source.value,
                    "ASN out of range: use 1-4294967294 (0, 23456 and 4294967295 are reserved)",
                );
                None
            }
        }
    }
}

/// Builds a validated plan from a profile and command-line overrides. Pure: no I/O.
pub fn plan(profile: &Profile, cli: &Overrides) -> Result<Plan, ConfigError> {
    let mut c = Checker {
        profile: &profile.name,
        problems: Vec::new(),
    };

    let shape = match profile.shape.as_str() {
        "scale" => Some(Shape::Scale),
        "churn" => Some(Shape::Churn),
        "migration" => Some(Shape::Migration),
        other => {
            c.problem(
                &format!("profile {}: shape", profile.name),
                other,
                "unknown shape; use scale, churn or migration",
            );
            None
        }
    };

    let iterations = c.pick(
        cli.iterations,
        "--iterations",
        profile.iterations,
        "iterations",
        defaults::ITERATIONS,
    );
    let iterations_v = c.positive(&iterations);
    let vm_count = c.pick(
        cli.vm_count,
        "--vm-count",
        profile.vm_count,
        "vmCount",
        defaults::VM_COUNT,
    );
    let mut vm_count_v = c.positive(&vm_count);
    if let (Some(i), Some(v)) = (iterations_v, vm_count_v)
        && u64::from(i) * u64::from(v) > MAX_PLANNED_VMS
    {
        let planned = u64::from(i) * u64::from(v);
        let (field, value) = if i >= v {
            (&iterations.field, i)
        } else {
            (&vm_count.field, v)
        };
        c.problem(
            field,
            value,
            format!(
                "{i} iterations × {v} VMs = {planned} VMs, more than the {MAX_PLANNED_VMS} one run \
                 may create or migrate; lower --iterations or --vm-count"
            ),
        );
        vm_count_v = None;
    }
    let qps = c.pick(cli.qps, "--qps", profile.qps, "qps", defaults::QPS);
    let qps_v = c.positive(&qps);
    let burst = c.pick(
        cli.burst,
        "--burst",
        profile.burst,
        "burst",
        defaults::BURST,
    );
    let burst_v = c.positive(&burst);
    if let (Some(q), Some(b)) = (qps_v, burst_v)
        && b < q
    {
        c.problem(
            &burst.field,
            b,
            format!(
                "burst must be at least qps ({q} from {}), or the limiter can never reach qps",
                qps.field
            ),
        );
    }
    let timeout = c.pick(
        cli.timeout.clone(),
        "--timeout",
        profile.timeout.clone(),
        "timeout",
        defaults::TIMEOUT.to_string(),
    );
    let timeout_v = c.duration(&timeout);

    let uuid = cli
        .uuid
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    if let Err(why) = check_label_value(&uuid) {
        c.problem(
            "--uuid",
            &uuid,
            format!("must be a valid Kubernetes label value ({why})"),
        );
    }
    let job_name = profile
        .job_name
        .clone()
        .unwrap_or_else(|| profile.name.clone());
    if let Err(why) = check_label_value(&job_name) {
        c.problem(
            &format!("profile {}: jobName", profile.name),
            &job_name,
            format!("must be a valid Kubernetes label value ({why})"),
        );
    }

    let indexing = plan_indexing(&mut c, cli);

    // Network layout.
    let layout_src = c.pick(
        cli.network.clone(),
        "--network",
        profile.network.layout.clone(),
        "network.layout",
        "per-iteration".to_string(),
    );
    let layout = match layout_src.value.as_str() {
        "per-iteration" => Some(Layout::PerIteration),
        "shared" => Some(Layout::Shared),
        other => {
            c.problem(
                &layout_src.field,
                other,
                "unknown network layout; use per-iteration or shared",
            );
            None
        }
    };
    if let (Some(Layout::PerIteration), Some(shape @ (Shape::Churn | Shape::Migration))) =
        (layout, shape)
    {
        c.problem(
            &layout_src.field,
            &layout_src.value,
            format!(
                "the {} shape reuses one network across iterations; use --network shared",
                if shape == Shape::Churn {
                    "churn"
                } else {
                    "migration"
                }
            ),
        );
    }
    let name_prefix = c.pick(
        cli.name_prefix.clone(),
        "--name-prefix",
        profile.network.name_prefix.clone(),
        "network.namePrefix",
        defaults::NAME_PREFIX.to_string(),
    );

    let bgp = plan_bgp(&mut c, profile, cli);
    // Iterations that create VMs (a migration run creates them once and migrates them each round).
    let vm_iterations = iterations_v.map(|i| {
        if shape == Some(Shape::Migration) {
            1
        } else {
            i
        }
    });
    let probes = plan_probes(&mut c, profile, cli, vm_iterations, vm_count_v);
    let vm_template = plan_vm_template(&mut c, profile, cli);
    let thresholds = plan_thresholds(&mut c, profile);

    let mut networks = Vec::new();
    let mut vms = Vec::new();
    let mut peak_live_vms = 0;
    if let (Some(shape), Some(layout), Some(iterations), Some(vm_count)) =
        (shape, layout, iterations_v, vm_count_v)
    {
        let live = match shape {
            Shape::Scale => u64::from(iterations) * u64::from(vm_count),
            Shape::Churn | Shape::Migration => u64::from(vm_count),
        };
        peak_live_vms = live;
        let counts = Counts {
            shape,
            iterations,
            vm_count,
            live,
        };
        match layout {
            Layout::PerIteration => {
                plan_per_iteration(
                    &mut c,
                    profile,
                    cli,
                    &counts,
                    &name_prefix,
                    &mut networks,
                    &mut vms,
                );
            }
            Layout::Shared => plan_shared(
                &mut c,
                profile,
                cli,
                &counts,
                &name_prefix,
                &mut networks,
                &mut vms,
            ),
        }
        if let Some(bgp) = &bgp {
            check_bgp_against_networks(&mut c, bgp, &networks, cli, profile);
        }
    }

    if !c.problems.is_empty() {
        return Err(ConfigError::Invalid(c.problems));
    }
    // Every Option below is Some when no problem was recorded; the match keeps that explicit.
    match (
        shape,
        layout,
        iterations_v,
        vm_count_v,
        qps_v,
        burst_v,
        timeout_v,
        bgp,
        probes,
        vm_template,
    ) {
        (
            Some(shape),
            Some(layout),
            Some(iterations),
            Some(vm_count),
            Some(qps),
            Some(burst),
            Some(timeout),
            Some(bgp),
            Some(probes),
            Some(vm_template),
        ) => Ok(Plan {
            profile: profile.name.clone(),
            description: profile.description.clone().unwrap_or_default(),
            job_name,
            uuid,
            shape,
            iterations,
            vm_count,
            qps,
            burst,
            timeout,
            gc: cli.gc.unwrap_or(true),
            indexing,
            kubeconfig: cli.kubeconfig.clone(),
            context: cli.context.clone(),
            layout,
            networks,
            vms,
            vm_template,
            bgp,
            probes,
            thresholds,
            peak_live_vms,
        }),
        _ => Err(ConfigError::Invalid(vec![Problem {
            field: "plan".into(),
            value: String::new(),
            message: "internal: a value was missing without a recorded problem".into(),
        }])),
    }
}

struct Counts {
    shape: Shape,
    iterations: u32,
    vm_count: u32,
    live: u64,
}

fn plan_indexing(c: &mut Checker<'_>, cli: &Overrides) -> Indexing {
    let es = match (&cli.es_server, &cli.es_index) {
        (Some(server), Some(index)) => {
            let url = match Url::parse(server) {
                Ok(url)
                    if (url.scheme() == "http" || url.scheme() == "https")
                        && url.host().is_some() =>
                {
                    Some(url)
                }
                Ok(url) => {
                    c.problem(
                        "--es-server",
                        redact_url(&url),
                        "must be an http:// or https:// URL with a host",
                    );
                    None
                }
                Err(e) => {
                    c.problem(
                        "--es-server",
                        redact_text(server),
                        format!("not a valid URL ({e})"),
                    );
                    None
                }
            };
            if let Err(why) = check_es_index(index) {
                c.problem("--es-index", index, why);
            }
            url.map(|server| EsTarget {
                server,
                index: index.clone(),
            })
        }
        (Some(server), None) => {
            c.problem(
                "--es-server",
                redact_text(server),
                "--es-server and --es-index must be given together",
            );
            None
        }
        (None, Some(index)) => {
            c.problem(
                "--es-index",
                index,
                "--es-server and --es-index must be given together",
            );
            None
        }
        (None, None) => None,
    };
    Indexing {
        es,
        local_indexing: cli.local_indexing.unwrap_or(false),
        results_dir: cli
            .results_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(defaults::RESULTS_DIR)),
    }
}

/// Hides a password in text that did not parse as a URL (best effort: anything between `:` and `@`).
fn redact_text(text: &str) -> String {
    match (text.find("://"), text.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &text[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => {
                    format!("{}{user}:REDACTED{}", &text[..scheme_end + 3], &text[at..])
                }
                None => text.to_string(),
            }
        }
        _ => text.to_string(),
    }
}

/// Elasticsearch/OpenSearch index name rules.
fn check_es_index(index: &str) -> Result<(), String> {
    if index.is_empty() {
        return Err("must not be empty".into());
    }
    if index.len() > 255 {
        return Err(format!("is {} bytes; at most 255", index.len()));
    }
    if index != index.to_lowercase() {
        return Err("must be lowercase".into());
    }
    if index == "." || index == ".." {
        return Err("must not be . or ..".into());
    }
    if index.starts_with(['-', '_', '+']) {
        return Err("must not start with -, _ or +".into());
    }
    if let Some(bad) = index.chars().find(|ch| "\\/*?\"<>| ,#:".contains(*ch)) {
        return Err(format!("must not contain {bad:?}"));
    }
    Ok(())
}

/// Kubernetes label value syntax: ≤63 characters, alphanumeric at both ends, `-_.` inside.
pub fn check_label_value(value: &str) -> Result<(), String> {
    if value.len() > 63 {
        return Err(format!("{} characters; at most 63", value.len()));
    }
    if value.is_empty() {
        return Ok(());
    }
    let ok_inner = value
        .chars()
        .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch));
    let ends_ok = value.starts_with(|ch: char| ch.is_ascii_alphanumeric())
        && value.ends_with(|ch: char| ch.is_ascii_alphanumeric());
    if ok_inner && ends_ok {
        Ok(())
    } else {
        Err(
            "only letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
                .into(),
        )
    }
}

/// RFC 1123 DNS label: ≤63 lowercase alphanumerics and '-', alphanumeric at both ends.
fn check_dns_label(value: &str) -> Result<(), String> {
    if value.is_empty() || value.len() > 63 {
        return Err(format!("{} characters; must be 1-63", value.len()));
    }
    let ok = value
        .chars()
        .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-')
        && !value.starts_with('-')
        && !value.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(
            "must be lowercase letters, digits and '-', starting and ending with a letter or digit"
                .into(),
        )
    }
}

/// Checks a CUDN/namespace name: a DNS label of at most 15 characters (the VRF name limit).
fn check_network_name(c: &mut Checker<'_>, field: &str, name: &str) -> bool {
    if let Err(why) = check_dns_label(name) {
        c.problem(
            field,
            name,
            format!("network name {name:?} is not a valid DNS label: {why}"),
        );
        return false;
    }
    if name.len() > MAX_CUDN_NAME_LEN {
        c.problem(
            field,
            name,
            format!(
                "CUDN name {name:?} is {} characters; OVN-Kubernetes names the VRF after the CUDN only up to \
                 {MAX_CUDN_NAME_LEN} characters: use a shorter --name-prefix",
                name.len()
            ),
        );
        return false;
    }
    true
}

/// The address OVN-K reserves for its own use at the start of a Layer2 primary subnet:
/// the default gateway (first host) and the management port (second host).
fn infrastructure_addresses(subnet: Ipv4Net) -> [Ipv4Addr; 2] {
    let base = u32::from(subnet.network());
    [
        Ipv4Addr::from(base.wrapping_add(1)),
        Ipv4Addr::from(base.wrapping_add(2)),
    ]
}

/// Checks that a static range fits a subnet and avoids the network, broadcast, gateway and
/// management-port addresses. Returns false when it does not.
fn check_range_in_subnet(
    c: &mut Checker<'_>,
    field: &str,
    range: IpRange,
    subnet: Ipv4Net,
) -> bool {
    let mut ok = true;
    if !subnet.contains(&range.start) || !subnet.contains(&range.end) {
        c.problem(
            field,
            range,
            format!("range is not inside the network's subnet {subnet}"),
        );
        return false;
    }
    if range.contains(subnet.network()) {
        c.problem(
            field,
            range,
            format!("range contains the network address {}", subnet.network()),
        );
        ok = false;
    }
    if range.contains(subnet.broadcast()) {
        c.problem(
            field,
            range,
            format!(
                "range contains the broadcast address {}",
                subnet.broadcast()
            ),
        );
        ok = false;
    }
    let [gateway, management] = infrastructure_addresses(subnet);
    if range.contains(gateway) {
        c.problem(
            field,
            range,
            format!("range contains the gateway address {gateway} (OVN-K's default gateway for {subnet})"),
        );
        ok = false;
    }
    if range.contains(management) {
        c.problem(
            field,
            range,
            format!(
                "range contains {management}, which OVN-K uses for the management port of {subnet}"
            ),
        );
        ok = false;
    }
    ok
}

fn parse_net(c: &mut Checker<'_>, source: &Sourced<String>) -> Option<Ipv4Net> {
    match source.value.trim().parse::<Ipv4Net>() {
        Ok(net) if net.network() == net.addr() => Some(net),
        Ok(net) => {
            c.problem(
                &source.field,
                &source.value,
                format!("host bits are set; did you mean {}?", net.trunc()),
            );
            None
        }
        Err(_) => {
            c.problem(
                &source.field,
                &source.value,
                "not a valid IPv4 CIDR (e.g. 198.19.0.0/16)",
            );
            None
        }
    }
}

fn plan_per_iteration(
    c: &mut Checker<'_>,
    profile: &Profile,
    cli: &Overrides,
    counts: &Counts,
    name_prefix: &Sourced<String>,
    networks: &mut Vec<NetworkSpec>,
    vms: &mut Vec<VmSpec>,
) {
    if let Some(range) = &cli.vm_ip_range {
        c.problem(
            "--vm-ip-range",
            range,
            "applies to --network shared; the per-iteration layout assigns static IPs by host offset",
        );
    }
    if let Some(subnet) = &cli.subnet {
        c.problem(
            "--subnet",
            subnet,
            "applies to --network shared; use --supernet for per-iteration",
        );
    }
    let supernet_src = c.pick(
        cli.supernet.clone(),
        "--supernet",
        profile.network.supernet.clone(),
        "network.supernet",
        defaults::SUPERNET.to_string(),
    );
    let Some(supernet) = parse_net(c, &supernet_src) else {
        return;
    };
    let prefix_field = format!("profile {}: network.subnetPrefixLength", profile.name);
    let prefix = profile
        .network
        .subnet_prefix_length
        .unwrap_or(defaults::SUBNET_PREFIX);
    if prefix < supernet.prefix_len() || prefix > 29 {
        c.problem(
            &prefix_field,
            prefix,
            format!(
                "must be between the supernet's /{} and /29",
                supernet.prefix_len()
            ),
        );
        return;
    }
    let available = 1u64 << (prefix - supernet.prefix_len());
    if u64::from(counts.iterations) > available {
        c.problem(
            &supernet_src.field,
            &supernet_src.value,
            format!(
                "holds {available} /{prefix} subnets but {} iterations each need one",
                counts.iterations
            ),
        );
        return;
    }
    let offset = profile
        .network
        .first_vm_offset
        .unwrap_or(defaults::FIRST_VM_OFFSET);
    let subnet_size = 1u64 << (32 - prefix);
    let last_offset = u64::from(offset) + u64::from(counts.vm_count) - 1;
    // Usable for VMs: after the network, gateway and management addresses, before broadcast.
    if offset < 3 || last_offset > subnet_size - 2 {
        c.problem(
            "--vm-count",
            counts.vm_count,
            format!(
                "{} VMs starting at host offset {offset} do not fit a /{prefix} ({} usable addresses \
                 from offset 3 to {}): lower --vm-count or use a larger subnet",
                counts.vm_count,
                subnet_size.saturating_sub(4),
                subnet_size - 2
            ),
        );
        return;
    }
    let last_name = format!("{}-{}", name_prefix.value, counts.iterations - 1);
    if !check_network_name(c, &name_prefix.field, &last_name) {
        return;
    }
    for (iteration, subnet) in supernet
        .subnets(prefix)
        .into_iter()
        .flatten()
        .take(counts.iterations as usize)
        .enumerate()
    {
        let iteration = iteration as u32;
        let name = format!("{}-{iteration}", name_prefix.value);
        let base = u32::from(subnet.network());
        let range = IpRange {
            start: Ipv4Addr::from(base + offset),
            end: Ipv4Addr::from(base + last_offset as u32),
        };
        networks.push(NetworkSpec {
            name: name.clone(),
            namespace: name.clone(),
            iteration,
            subnet,
            gateway: infrastructure_addresses(subnet)[0],
            reserved_subnets: cidr_cover(range),
        });
        for replica in 1..=counts.vm_count {
            vms.push(VmSpec {
                name: format!("vm-{iteration}-{replica}"),
                namespace: name.clone(),
                network: name.clone(),
                iteration,
                replica,
                static_ip: range.nth(u64::from(replica - 1)),
            });
        }
    }
}

fn plan_shared(
    c: &mut Checker<'_>,
    profile: &Profile,
    cli: &Overrides,
    counts: &Counts,
    name_prefix: &Sourced<String>,
    networks: &mut Vec<NetworkSpec>,
    vms: &mut Vec<VmSpec>,
) {
    if let Some(supernet) = &cli.supernet {
        c.problem(
            "--supernet",
            supernet,
            "applies to --network per-iteration; use --subnet for shared",
        );
    }
    let range_src = match (&cli.vm_ip_range, &profile.network.vm_ip_range) {
        (Some(v), _) => Some(Sourced {
            value: v.clone(),
            field: "--vm-ip-range".to_string(),
        }),
        // A profile's range belongs to the profile's subnet: an explicit --subnet replaces both.
        (None, Some(v)) if cli.subnet.is_none() => Some(Sourced {
            value: v.clone(),
            field: format!("profile {}: network.vmIpRange", profile.name),
        }),
        _ => None,
    };
    let range = match &range_src {
        Some(src) => match src.value.parse::<IpRange>() {
            Ok(range) => Some(range),
            Err(why) => {
                c.problem(&src.field, &src.value, why);
                return;
            }
        },
        None => None,
    };
    // The subnet: --subnet, else the profile's when the range came from the profile, else the /24
    // holding an explicitly given range (documented in --help).
    let subnet_src = match (
        &cli.subnet,
        &profile.network.subnet,
        range,
        cli.vm_ip_range.is_some(),
    ) {
        (Some(s), _, _, _) => Sourced {
            value: s.clone(),
            field: "--subnet".into(),
        },
        (None, _, Some(range), true) => Sourced {
            value: Ipv4Net::new(range.start, 24)
                .map(|n| n.trunc().to_string())
                .unwrap_or_default(),
            field: "--subnet (default: the /24 holding --vm-ip-range)".into(),
        },
        (None, Some(s), _, _) => Sourced {
            value: s.clone(),
            field: format!("profile {}: network.subnet", profile.name),
        },
        (None, None, _, _) => {
            c.problem(
                &format!("profile {}: network.subnet", profile.name),
                "",
                "the shared layout needs a subnet: set network.subnet or --subnet",
            );
            return;
        }
    };
    let Some(subnet) = parse_net(c, &subnet_src) else {
        return;
    };
    if subnet.prefix_len() > 29 {
        c.problem(
            &subnet_src.field,
            &subnet_src.value,
            "must be /29 or larger to hold VMs",
        );
        return;
    }
    let name = format!("{}-shared", name_prefix.value);
    let name_ok = check_network_name(c, &name_prefix.field, &name);

    // Capacity first, so its message leads; the range checks below still run and report too.
    let (capacity, capacity_text) = match (range, &range_src) {
        (Some(range), Some(src)) => (
            range.len(),
            format!("{} {} holds {} addresses", src.field, range, range.len()),
        ),
        _ => {
            let usable = (1u64 << (32 - subnet.prefix_len())).saturating_sub(4);
            (
                usable,
                format!("subnet {subnet} has {usable} usable addresses"),
            )
        }
    };
    let fits = counts.live <= capacity;
    if !fits {
        let shape_text = match counts.shape {
            Shape::Scale => format!(
                "the {} profile keeps {} VMs live ({} iterations × {} VMs, accumulating)",
                profile.name, counts.live, counts.iterations, counts.vm_count
            ),
            Shape::Churn | Shape::Migration => {
                format!(
                    "the {} profile keeps {} VMs live",
                    profile.name, counts.live
                )
            }
        };
        c.problem(
            range_src.as_ref().map(|s| s.field.as_str()).unwrap_or(&subnet_src.field),
            range_src.as_ref().map(|s| s.value.clone()).unwrap_or_else(|| subnet_src.value.clone()),
            format!(
                "capacity: {shape_text} but {capacity_text}; use --network per-iteration, a larger range, \
                 fewer --iterations/--vm-count, or the vm-bgp-churn profile ({} live at a time)",
                counts.vm_count
            ),
        );
    }
    let range_ok = match (range, &range_src) {
        (Some(range), Some(src)) => check_range_in_subnet(c, &src.field, range, subnet),
        _ => true,
    };
    if !(fits && name_ok && range_ok) {
        return;
    }
    networks.push(NetworkSpec {
        name: name.clone(),
        namespace: name.clone(),
        iteration: 0,
        subnet,
        gateway: infrastructure_addresses(subnet)[0],
        reserved_subnets: range.map(cidr_cover).unwrap_or_default(),
    });
    let vm_iterations = match counts.shape {
        Shape::Migration => 1,
        Shape::Scale | Shape::Churn => counts.iterations,
    };
    for iteration in 0..vm_iterations {
        for replica in 1..=counts.vm_count {
            let index = match counts.shape {
                Shape::Scale => {
                    u64::from(iteration) * u64::from(counts.vm_count) + u64::from(replica - 1)
                }
                Shape::Churn | Shape::Migration => u64::from(replica - 1),
            };
            vms.push(VmSpec {
                name: format!("vm-{iteration}-{replica}"),
                namespace: name.clone(),
                network: name.clone(),
                iteration,
                replica,
                static_ip: range.and_then(|r| r.nth(index)),
            });
        }
    }
}

fn plan_bgp(c: &mut Checker<'_>, profile: &Profile, cli: &Overrides) -> Option<BgpPlan> {
    let p = &profile.bgp;
    let peer_src = c.pick(
        cli.bgp_peer_ip.clone(),
        "--bgp-peer-ip",
        p.peer_ip.clone(),
        "bgp.peerIp",
        defaults::PEER_IP.to_string(),
    );
    let peer_ip = c.parse::<Ipv4Addr>(&peer_src, "IPv4 address");
    let peer_asn = c.pick(
        cli.peer_asn,
        "--peer-asn",
        p.peer_asn,
        "bgp.peerAsn",
        defaults::PEER_ASN,
    );
    let peer_asn = c.asn(&peer_asn);
    let cluster_asn = c.pick(
        cli.cluster_asn,
        "--cluster-asn",
        p.cluster_asn,
        "bgp.clusterAsn",
        defaults::CLUSTER_ASN,
    );
    let cluster_asn = c.asn(&cluster_asn);
    let ns_src = c.pick(
        cli.frr_namespace.clone(),
        "--frr-namespace",
        p.frr_namespace.clone(),
        "bgp.frrNamespace",
        defaults::FRR_NAMESPACE.to_string(),
    );
    if let Err(why) = check_dns_label(&ns_src.value) {
        c.problem(
            &ns_src.field,
            &ns_src.value,
            format!("not a valid namespace name: {why}"),
        );
    }
    let neighbors = match cli.node_ips.clone().or_else(|| p.node_ips.clone()) {
        Some(ips) if !ips.is_empty() => {
            let field = if cli.node_ips.is_some() {
                "--node-ips".to_string()
            } else {
                format!("profile {}: bgp.nodeIps", profile.name)
            };
            let mut parsed = Vec::new();
            for ip in &ips {
                match ip.trim().parse::<Ipv4Addr>() {
                    Ok(ip) => parsed.push(ip),
                    Err(_) => c.problem(&field, ip, "not a valid IPv4 address"),
                }
            }
            Some(Neighbors::Explicit(parsed))
        }
        _ => {
            let src = c.pick(
                cli.node_cidr.clone(),
                "--node-cidr",
                p.node_cidr.clone(),
                "bgp.nodeCidr",
                defaults::NODE_CIDR.to_string(),
            );
            parse_net(c, &src).map(Neighbors::ListenRange)
        }
    };
    let keepalive_src = c.pick(
        None,
        "bgp.keepalive",
        p.keepalive.clone(),
        "bgp.keepalive",
        defaults::KEEPALIVE.into(),
    );
    let hold_src = c.pick(
        None,
        "bgp.holdTime",
        p.hold_time.clone(),
        "bgp.holdTime",
        defaults::HOLD.into(),
    );
    let keepalive = c.duration(&keepalive_src);
    let hold = c.duration(&hold_src);
    if let (Some(k), Some(h)) = (keepalive, hold)
        && (h.as_secs() < 3 || k >= h)
    {
        c.problem(
            &hold_src.field,
            &hold_src.value,
            format!(
                "hold time must be at least 3s and greater than keepalive ({})",
                keepalive_src.value
            ),
        );
    }
    let bmp_src = c.pick(
        cli.bmp_target.clone(),
        "--bmp-target",
        p.bmp_target.clone(),
        "bgp.bmpTarget",
        defaults::BMP_TARGET.to_string(),
    );
    let bmp = match bmp_src.value.parse::<std::net::SocketAddrV4>() {
        Ok(addr) if addr.port() != 0 => Some(BmpTarget {
            address: *addr.ip(),
            port: addr.port(),
        }),
        _ => {
            c.problem(
                &bmp_src.field,
                &bmp_src.value,
                "not a valid IPv4 HOST:PORT with a non-zero port",
            );
            None
        }
    };
    Some(BgpPlan {
        peer_ip: peer_ip?,
        peer_asn: peer_asn?,
        cluster_asn: cluster_asn?,
        frr_namespace: ns_src.value,
        neighbors: neighbors?,
        keepalive_secs: keepalive?.as_secs(),
        hold_secs: hold?.as_secs(),
        bmp: bmp?,
    })
}

fn check_bgp_against_networks(
    c: &mut Checker<'_>,
    bgp: &BgpPlan,
    networks: &[NetworkSpec],
    cli: &Overrides,
    profile: &Profile,
) {
    let peer_field = if cli.bgp_peer_ip.is_some() {
        "--bgp-peer-ip".to_string()
    } else {
        format!("profile {}: bgp.peerIp", profile.name)
    };
    if let Some(net) = networks.iter().find(|n| n.subnet.contains(&bgp.peer_ip)) {
        c.problem(
            &peer_field,
            bgp.peer_ip,
            format!(
                "the external BGP peer is inside the VM network {} ({}); it must be outside every VM subnet",
                net.subnet, net.name
            ),
        );
    }
    if let Neighbors::ListenRange(range) = &bgp.neighbors
        && let Some(net) = networks
            .iter()
            .find(|n| range.contains(&n.subnet.network()) || n.subnet.contains(&range.network()))
    {
        c.problem(
            "--node-cidr",
            range,
            format!(
                "the node range overlaps the VM network {} ({})",
                net.subnet, net.name
            ),
        );
    }
}

fn plan_probes(
    c: &mut Checker<'_>,
    profile: &Profile,
    cli: &Overrides,
    vm_iterations: Option<u32>,
    vm_count: Option<u32>,
) -> Option<ProbePlan> {
    let p = &profile.probes;
    let field = |key: &str| format!("profile {}: probes.{key}", profile.name);
    let rate = |c: &mut Checker<'_>, value: Option<u32>, key: &str, default: u32| {
        let v = value.unwrap_or(default);
        if v == 0 || v > 10_000 {
            c.problem(
                &field(key),
                v,
                "probe rate must be 1-10000 per second per VM",
            );
        }
        v
    };
    let converging_rate = rate(
        c,
        p.converging_rate,
        "convergingRate",
        defaults::CONVERGING_RATE,
    );
    let steady_rate = rate(c, p.steady_rate, "steadyRate", defaults::STEADY_RATE);
    let migration_rate = rate(
        c,
        p.migration_rate,
        "migrationRate",
        defaults::MIGRATION_RATE,
    );
    let duration_src = c.pick(
        None,
        "probes.throughputDuration",
        p.throughput_duration.clone(),
        "probes.throughputDuration",
        defaults::THROUGHPUT_DURATION.to_string(),
    );
    let throughput_duration = c.duration(&duration_src);
    let egress_src = c.pick(
        cli.egress_endpoint.clone(),
        "--egress-endpoint",
        p.egress_endpoint.clone(),
        "probes.egressEndpoint",
        format!("{}:{}", defaults::PEER_IP, defaults::EGRESS_PORT),
    );
    let egress_endpoint = c.parse::<SocketAddr>(&egress_src, "HOST:PORT socket address");
    let throughput_vms = p.throughput_vms.unwrap_or(defaults::THROUGHPUT_VMS);
    if let Some(vm_count) = vm_count
        && throughput_vms > vm_count
    {
        c.problem(
            &field("throughputVms"),
            throughput_vms,
            format!("cannot test more VMs per iteration than vmCount ({vm_count})"),
        );
    }
    let throughput_iterations = p
        .throughput_iterations
        .unwrap_or(defaults::THROUGHPUT_ITERATIONS);
    if let Some(d) = throughput_duration
        && !(MIN_THROUGHPUT_DURATION..=MAX_THROUGHPUT_DURATION).contains(&d)
    {
        c.problem(
            &field("throughputDuration"),
            humantime::format_duration(d),
            "a throughput test lasts 100ms to 10m",
        );
    }
    Some(ProbePlan {
        converging_rate,
        steady_rate,
        migration_rate,
        throughput_vms,
        throughput_iterations: if throughput_vms == 0 {
            Vec::new()
        } else {
            spread_iterations(throughput_iterations, vm_iterations.unwrap_or(0))
        },
        throughput_duration: throughput_duration?,
        egress_endpoint: egress_endpoint?,
    })
}

/// Bounds of `probes.throughputDuration`.
const MIN_THROUGHPUT_DURATION: Duration = Duration::from_millis(100);
const MAX_THROUGHPUT_DURATION: Duration = Duration::from_secs(600);

/// `count` iterations out of `iterations`, spread evenly and always ending with the last (the
/// largest scale); all of them when `count >= iterations`.
pub fn spread_iterations(count: u32, iterations: u32) -> Vec<u32> {
    if count == 0 || iterations == 0 {
        return Vec::new();
    }
    if count >= iterations {
        return (0..iterations).collect();
    }
    if count == 1 {
        return vec![iterations - 1];
    }
    let last = u64::from(iterations - 1);
    let steps = u64::from(count - 1);
    let mut picked: Vec<u32> = (0..u64::from(count))
        .map(|j| u32::try_from((j * last + steps / 2) / steps).unwrap_or(iterations - 1))
        .collect();
    picked.dedup();
    picked
}

fn plan_vm_template(c: &mut Checker<'_>, profile: &Profile, cli: &Overrides) -> Option<VmTemplate> {
    let v = &profile.vm;
    let image = cli
        .vm_image
        .clone()
        .or_else(|| v.image.clone())
        .unwrap_or_else(|| defaults::IMAGE.to_string());
    if image.trim().is_empty() || image.contains(char::is_whitespace) {
        c.problem(
            "--vm-image",
            &image,
            "not a valid container image reference",
        );
    }
    let memory = v
        .memory
        .clone()
        .unwrap_or_else(|| defaults::MEMORY.to_string());
    let memory_ok = {
        let digits = memory.trim_end_matches(|ch: char| ch.is_ascii_alphabetic());
        let suffix = &memory[digits.len()..];
        !digits.is_empty()
            && digits.chars().all(|ch| ch.is_ascii_digit())
            && ["", "Ki", "Mi", "Gi", "Ti", "K", "M", "G", "T"].contains(&suffix)
    };
    if !memory_ok {
        c.problem(
            &format!("profile {}: vm.memory", profile.name),
            &memory,
            "not a Kubernetes quantity (e.g. 1Gi, 512Mi)",
        );
    }
    let cores = v.cores.unwrap_or(1);
    if cores == 0 {
        c.problem(
            &format!("profile {}: vm.cores", profile.name),
            cores,
            "must be at least 1",
        );
    }
    let http_port = v.http_port.unwrap_or(defaults::HTTP_PORT);
    let sink_port = v.sink_port.unwrap_or(defaults::SINK_PORT);
    for (key, port) in [("vm.httpPort", http_port), ("vm.sinkPort", sink_port)] {
        if port == 0 {
            c.problem(
                &format!("profile {}: {key}", profile.name),
                port,
                "port must be 1-65535",
            );
        }
    }
    if http_port == sink_port {
        c.problem(
            &format!("profile {}: vm.sinkPort", profile.name),
            sink_port,
            "the TCP sink and the HTTP responder need different ports",
        );
    }
    Some(VmTemplate {
        image,
        memory,
        cores,
        http_port,
        sink_port,
    })
}

fn plan_thresholds(c: &mut Checker<'_>, profile: &Profile) -> Vec<Threshold> {
    let mut out = Vec::new();
    for (i, t) in profile.thresholds.iter().flatten().enumerate() {
        let field = |key: &str| format!("profile {}: thresholds[{i}].{key}", profile.name);
        if let Some(threshold) = plan_threshold(c, t, &field) {
            out.push(threshold);
        }
    }
    out
}

fn plan_threshold(
    c: &mut Checker<'_>,
    t: &ThresholdProfile,
    field: &dyn Fn(&str) -> String,
) -> Option<Threshold> {
    let Some((_, quantiles)) = known_metrics().iter().find(|(m, _)| *m == t.metric) else {
        let names: Vec<&str> = known_metrics().iter().map(|(m, _)| *m).collect();
        c.problem(
            &field("metric"),
            &t.metric,
            format!("unknown metric; use one of {}", names.join(", ")),
        );
        return None;
    };
    if !quantiles.contains(&t.quantile.as_str()) {
        c.problem(
            &field("quantile"),
            &t.quantile,
            format!(
                "unknown quantile for {}; use one of {}",
                t.metric,
                quantiles.join(", ")
            ),
        );
        return None;
    }
    let stat = match t.stat.as_deref().unwrap_or("P99") {
        "P99" => Stat::P99,
        "P95" => Stat::P95,
        "P90" => Stat::P90,
        "P50" => Stat::P50,
        "min" => Stat::Min,
        "max" => Stat::Max,
        "avg" => Stat::Avg,
        "count" => Stat::Count,
        "missingCount" => Stat::MissingCount,
        other => {
            c.problem(
                &field("stat"),
                other,
                "use P99, P95, P90, P50, min, max, avg, count or missingCount",
            );
            return None;
        }
    };
    let (text, is_max, key) = match (&t.max, &t.min) {
        (Some(max), None) => (max, true, "max"),
        (None, Some(min)) => (min, false, "min"),
        _ => {
            c.problem(&field("max"), "", "give exactly one of max or min");
            return None;
        }
    };
    let text = text.trim();
    let bound = if let Some(percent) = text.strip_suffix('%') {
        match percent.trim().parse::<f64>() {
            Ok(p) if (0.0..=100.0).contains(&p) => {
                if is_max {
                    ThresholdBound::MaxPercent(p)
                } else {
                    ThresholdBound::MinPercent(p)
                }
            }
            _ => {
                c.problem(&field(key), text, "not a percentage between 0% and 100%");
                return None;
            }
        }
    } else if let Ok(number) = text.parse::<f64>() {
        if !number.is_finite() {
            c.problem(&field(key), text, "must be a finite number");
            return None;
        }
        if is_max {
            ThresholdBound::MaxNumber(number)
        } else {
            ThresholdBound::MinNumber(number)
        }
    } else {
        match humantime::parse_duration(text) {
            Ok(d) if is_max => ThresholdBound::MaxDuration(d),
            Ok(d) => ThresholdBound::MinDuration(d),
            Err(_) => {
                c.problem(
                    &field(key),
                    text,
                    "not a bound: use a duration (5s, 250ms), a percentage (99%) or a number",
                );
                return None;
            }
        }
    };
    Some(Threshold {
        metric: t.metric.clone(),
        quantile: t.quantile.clone(),
        stat,
        bound,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_profile;

    fn plan_of(profile: &str, cli: Overrides) -> Result<Plan, ConfigError> {
        plan(&load_profile(profile).expect("profile"), &cli)
    }

    #[test]
    fn throughput_iterations_spread_from_first_to_last() {
        assert_eq!(spread_iterations(3, 72), vec![0, 36, 71]);
        assert_eq!(spread_iterations(2, 72), vec![0, 71]);
        assert_eq!(spread_iterations(1, 72), vec![71]);
        assert_eq!(spread_iterations(5, 3), vec![0, 1, 2]);
        assert_eq!(spread_iterations(0, 3), Vec::<u32>::new());
        assert_eq!(spread_iterations(4, 5), vec![0, 1, 3, 4]);
    }

    #[test]
    fn throughput_settings_are_checked_against_the_run() {
        let p = plan_of(
            "vm-bgp",
            Overrides {
                iterations: Some(72),
                ..Default::default()
            },
        )
        .expect("plan");
        assert_eq!(p.probes.throughput_iterations, vec![0, 36, 71]);
        let migration = plan_of("vm-bgp-migration", Overrides::default()).expect("plan");
        assert!(migration.probes.throughput_iterations.is_empty());

        let text = load_profile_text("vm-bgp")
            .replace("throughputVms: 1", "throughputVms: 6")
            .replace("throughputDuration: 5s", "throughputDuration: 20m");
        let profile = crate::config::profile::parse_profile(&text, "test").expect("parse");
        let Err(ConfigError::Invalid(problems)) = plan(&profile, &Overrides::default()) else {
            panic!("an invalid throughput setting was accepted");
        };
        let fields: Vec<(&str, &str)> = problems
            .iter()
            .map(|p| (p.field.as_str(), p.value.as_str()))
            .collect();
        assert!(
            fields.contains(&("profile vm-bgp: probes.throughputVms", "6")),
            "{fields:?}"
        );
        assert!(
            fields.contains(&("profile vm-bgp: probes.throughputDuration", "20m")),
            "{fields:?}"
        );
    }

    fn load_profile_text(name: &str) -> String {
        std::fs::read_to_string(format!(
            "{}/../profiles/{name}.yaml",
            env!("CARGO_MANIFEST_DIR")
        ))
        .expect("profile text")
    }

    #[test]
    fn default_profile_plans_one_network_per_iteration_with_static_ips() {
        let p = plan_of(
            "vm-bgp",
            Overrides {
                iterations: Some(72),
                vm_count: Some(10),
                uuid: Some("u1".into()),
                ..Default::default()
            },
        )
        .expect("plan");
        assert_eq!(p.networks.len(), 72);
        assert_eq!(p.vms.len(), 720);
        assert_eq!(p.peak_live_vms, 720);
        assert_eq!(p.networks[71].name, "vmbgp-71");
        assert_eq!(p.networks[71].subnet.to_string(), "198.19.71.0/24");
        assert_eq!(p.vms[0].static_ip, Some(Ipv4Addr::new(198, 19, 0, 10)));
        assert_eq!(p.vms[719].static_ip, Some(Ipv4Addr::new(198, 19, 71, 19)));
        assert_eq!(
            p.networks[0]
                .reserved_subnets
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>(),
            ["198.19.0.10/31", "198.19.0.12/30", "198.19.0.16/30"]
        );
    }

    #[test]
    fn churn_reuses_the_same_addresses_every_iteration() {
        let p = plan_of("vm-bgp-churn", Overrides::default()).expect("plan");
        let first: Vec<_> = p
            .vms
            .iter()
            .filter(|v| v.iteration == 0)
            .map(|v| v.static_ip)
            .collect();
        let last: Vec<_> = p
            .vms
            .iter()
            .filter(|v| v.iteration == p.iterations - 1)
            .map(|v| v.static_ip)
            .collect();
        assert_eq!(first, last);
        assert_eq!(p.peak_live_vms, u64::from(p.vm_count));
    }

    #[test]
    fn migration_creates_its_vms_once() {
        let p = plan_of("vm-bgp-migration", Overrides::default()).expect("plan");
        assert_eq!(p.vms.len() as u32, p.vm_count);
        assert_eq!(p.shape, Shape::Migration);
    }

    #[test]
    fn es_password_never_appears_in_the_plan_dump() {
        let p = plan_of(
            "vm-bgp",
            Overrides {
                es_server: Some("https://user:canary-secret@es.example:9200".into()),
                es_index: Some("ripsaw-kube-burner-vm-bgp".into()),
                ..Default::default()
            },
        )
        .expect("plan");
        let dump = serde_json::to_string(&p).expect("json");
        assert!(!dump.contains("canary-secret"), "{dump}");
        assert!(dump.contains("REDACTED"));
    }

    #[test]
    fn thresholds_use_the_documents_quantile_names_and_units() {
        let mut profile = load_profile("vm-bgp").expect("profile");
        let p = plan(&profile, &Overrides::default()).expect("plan");
        assert_eq!(p.thresholds[0].quantile, "AdvertiseFib");
        assert_eq!(
            p.thresholds[0].bound,
            ThresholdBound::MaxDuration(Duration::from_secs(5))
        );
        assert_eq!(p.thresholds[2].stat, Stat::MissingCount);
        profile.thresholds = Some(vec![ThresholdProfile {
            metric: "routeConvergence".into(),
            quantile: "Withdraw".into(),
            max: Some("5s".into()),
            ..Default::default()
        }]);
        let err = plan(&profile, &Overrides::default()).expect_err("unknown quantile");
        let text = err.to_string();
        assert!(
            text.contains("thresholds[0].quantile") && text.contains("WithdrawFib"),
            "{text}"
        );
    }

    #[test]
    fn redact_text_hides_passwords_in_unparsable_urls() {
        assert_eq!(
            redact_text("http://u:secret@[bad/"),
            "http://u:REDACTED@[bad/"
        );
    }
}
