//! Command-line interface (clap derive). `run` is the default: `vmbgp-bench --iterations 72
//! --vm-count 10` is a run. Flag names follow kube-burner-ocp where one exists.

use std::path::PathBuf;

use clap::{Args, FromArgMatches, Parser, Subcommand, ValueEnum};

use crate::exit::ExitCode;

fn after_help() -> String {
    format!(
        "{}\nProfiles: vm-bgp (default), vm-bgp-churn, vm-bgp-migration, vm-bgp-host-routes, or a path to a YAML file.\n\
         Run `vmbgp-bench render` to see exactly what a run would create.",
        ExitCode::table()
    )
}

/// Performance and scale harness for KubeVirt VMs on BGP-advertised OVN-Kubernetes Layer2 networks.
#[derive(Debug, Parser)]
#[command(
    name = "vmbgp-bench",
    version,
    args_conflicts_with_subcommands = true,
    after_help = after_help(),
)]
pub struct Cli {
    /// Log level, for every command.
    #[arg(long, value_enum, default_value = "info", global = true)]
    pub log_level: LogLevel,
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Flags of the default `run` command.
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the VMs and networks of a profile and measure them (the default command).
    Run(RunArgs),
    /// Print the multi-document YAML a run would apply, in apply order; contacts nothing.
    Render(RenderArgs),
    /// Print the external FRR router's configuration for the plan; contacts nothing.
    FrrConfig(PlanArgs),
    /// Preflight: check that the cluster has what a run needs, and report every finding.
    Check(CheckArgs),
    /// Upload a saved results directory to Elasticsearch/OpenSearch (idempotent: no duplicates).
    Index(IndexArgs),
    /// Compare two runs (result directories or uuids in Elasticsearch); exit 7 on a regression.
    Compare(CompareArgs),
    /// Delete everything a run created (selected by its uuid label), in dependency order, and wait
    /// until it is gone; for runs that could not clean up (killed). Idempotent.
    Destroy(DestroyArgs),
    /// The embedded lab: API server, simulated controllers, FRR routers in network namespaces (root).
    #[command(subcommand)]
    Lab(LabCommand),
}

#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Start a lab in the background and print its kubeconfig, external router netns, vty socket and BMP target.
    Up(LabUpArgs),
    /// Report whether the lab's process, namespaces, daemons and BGP sessions are up.
    Status(LabStateArgs),
    /// Stop the lab and remove every namespace, process and file it created (also after a failed up).
    Down(LabStateArgs),
    /// Run a lab in the foreground until SIGTERM (what `lab up` starts).
    #[command(hide = true)]
    Serve(LabUpArgs),
}

#[derive(Debug, Clone, Args)]
pub struct LabDirArgs {
    /// The lab's state directory.
    #[arg(long, value_name = "DIR", default_value = crate::lab_commands::DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct LabStateArgs {
    #[command(flatten)]
    pub dir: LabDirArgs,
}

#[derive(Debug, Clone, Args)]
pub struct DestroyArgs {
    /// The run's uuid (its objects' vmbgp.io/uuid label), as printed by the run and in jobSummary.
    #[arg(long)]
    pub uuid: String,
    /// kubeconfig file [default: $KUBECONFIG or ~/.kube/config].
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// kubeconfig context to use.
    #[arg(long)]
    pub context: Option<String>,
    /// How long to wait in all for everything to be gone.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = humantime::parse_duration)]
    pub timeout: std::time::Duration,
}

#[derive(Debug, Clone, Args)]
pub struct LabUpArgs {
    #[command(flatten)]
    pub dir: LabDirArgs,
    #[command(flatten)]
    pub lab: LabArgs,
    /// Also run the host-route controller against the lab, as its own process: the same
    /// `vmbgp-controller run` a cluster runs (no leader election). It advertises each VM's /32
    /// with community 64512:200 from the node hosting it, for every network a run creates
    /// (label `vmbgp.io/network`) and every CUDN labelled `vmbgp.io/host-routes: "true"`.
    #[arg(long)]
    pub host_routes: bool,
    /// The `vmbgp-controller` binary for --host-routes [default: next to vmbgp-bench].
    #[arg(long, value_name = "PATH", requires = "host_routes")]
    pub controller_bin: Option<PathBuf>,
    /// The plan whose external-router configuration and frr-k8s namespace the lab uses.
    #[command(flatten)]
    pub plan: PlanArgs,
}

/// Shape of the embedded lab.
#[derive(Debug, Clone, Args)]
pub struct LabArgs {
    /// Cluster nodes (each an FRR router and a VM host).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=150))]
    pub nodes: u16,
    /// Lab name; every network namespace it creates carries it (a-z, 0-9, -; at most 32).
    #[arg(long, default_value = "vmbgp")]
    pub lab_id: String,
    /// Fault: the lab withholds this VM's address (`name` or `namespace/name`), so it runs but never
    /// answers — to check that the run reports it and fails its threshold. Repeatable.
    #[arg(long = "lab-silent-vm", value_name = "VM")]
    pub silent_vms: Vec<String>,
    /// Give every VM its own network namespace (the guest), moved with its link on a live
    /// migration so TCP connections survive it, as in KubeVirt [default: on for migration runs].
    #[arg(long = "lab-guest-vms")]
    pub guest_vms: bool,
    /// Fault: the lab API delays every resource request by this much (0 to 10s).
    #[arg(long, value_name = "DURATION", value_parser = crate::lab_commands::parse_api_latency)]
    pub lab_fault_api_latency: Option<std::time::Duration>,
    /// Fault: the lab API answers this fraction (0 to 1) of resource requests with 500 InternalError.
    #[arg(long, value_name = "RATE", value_parser = crate::lab_commands::parse_rate)]
    pub lab_fault_api_error_rate_500: Option<f64>,
    /// Fault: the lab API answers this fraction (0 to 1) of resource requests with 429
    /// TooManyRequests (Retry-After: 1).
    #[arg(long, value_name = "RATE", value_parser = crate::lab_commands::parse_rate)]
    pub lab_fault_api_error_rate_429: Option<f64>,
    /// Fault: the lab API ends every watch stream this long after it started (100ms to 1h);
    /// clients resume from their last resourceVersion.
    #[arg(long, value_name = "DURATION", value_parser = crate::lab_commands::parse_watch_cut)]
    pub lab_fault_watch_cut_every: Option<std::time::Duration>,
    /// Fault: the lab API answers every watch that starts from a resourceVersion (a resume, and
    /// the watch a client starts after its list) with an in-stream 410 Gone: clients see the
    /// cluster only through re-lists.
    #[arg(long)]
    pub lab_fault_gone_on_resume: bool,
    /// Fault: this long after the lab is up, the lab API forgets its watch history and cuts every
    /// watch: each client resuming from its resourceVersion gets 410 Gone once. Repeatable.
    #[arg(long, value_name = "OFFSET", value_parser = crate::lab_commands::parse_offset)]
    pub lab_fault_watch_expire: Vec<std::time::Duration>,
    /// Fault: restart ROUTER's bgpd (`node-N` or `ext`) OFFSET after the lab is up, e.g.
    /// `node-1@5s`. Repeatable.
    #[arg(long, value_name = "ROUTER@OFFSET", value_parser = crate::lab_commands::parse_router_at)]
    pub lab_fault_bgpd_restart: Vec<crate::lab_commands::RouterAt>,
    /// Fault: take ROUTER's uplink down OFFSET after the lab is up and bring it back DOWN later,
    /// e.g. `node-2@8s+2s`. Repeatable.
    #[arg(long, value_name = "ROUTER@OFFSET+DOWN", value_parser = crate::lab_commands::parse_link_flap)]
    pub lab_fault_link_flap: Vec<crate::lab_commands::LinkFlapAt>,
    /// Fault: OFFSET after the lab is up, abort the external router's BMP TCP session (as a reset
    /// on the path would); its bgpd reconnects by itself. Repeatable.
    #[arg(long, value_name = "OFFSET", value_parser = crate::lab_commands::parse_offset)]
    pub lab_fault_bmp_drop: Vec<std::time::Duration>,
}

/// Connection options of Elasticsearch/OpenSearch: TLS, index template, and the deadline.
#[derive(Debug, Clone, Args)]
pub struct EsTlsArgs {
    /// Do not verify the server's TLS certificate (self-signed test clusters only).
    #[arg(long)]
    pub es_insecure_skip_verify: bool,
    /// PEM file with CA certificates to trust in addition to the built-in roots.
    #[arg(long, value_name = "PATH")]
    pub es_ca_file: Option<PathBuf>,
    /// Install this index template before indexing (e.g. ci/elasticsearch/index-template.json).
    #[arg(long, value_name = "PATH")]
    pub es_index_template: Option<PathBuf>,
    /// One deadline for everything sent to Elasticsearch/OpenSearch by this command (the index
    /// check and every `_bulk` of an upload, or a compare's searches), retries included, e.g. 30s,
    /// 3m. Connection errors, timeouts, 429 and 5xx are retried with backoff until it passes; each
    /// request's timeout is what remains (at most 60s). Then: exit 6 (`run`, `index`; documents
    /// stay on disk) or 4 (`compare`).
    #[arg(long, value_name = "DURATION", default_value = "3m", value_parser = parse_es_timeout)]
    pub es_timeout: std::time::Duration,
}

impl Default for EsTlsArgs {
    fn default() -> Self {
        EsTlsArgs {
            es_insecure_skip_verify: false,
            es_ca_file: None,
            es_index_template: None,
            es_timeout: vmbgp_reporters::es::DEFAULT_DEADLINE,
        }
    }
}

/// Bounds of `--es-timeout`.
const ES_TIMEOUT_RANGE: (std::time::Duration, std::time::Duration) = (
    std::time::Duration::from_millis(100),
    std::time::Duration::from_secs(24 * 3600),
);

/// `--es-timeout`: a humantime duration from 100ms to 24h.
fn parse_es_timeout(text: &str) -> Result<std::time::Duration, String> {
    let (min, max) = ES_TIMEOUT_RANGE;
    crate::lab_commands::parse_bounded(text, min, max)
}

#[derive(Debug, Clone, Args)]
pub struct IndexArgs {
    /// A results directory written by a run (results/<uuid>).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Elasticsearch/OpenSearch URL (credentials may be in the URL, or in VMBGP_ES_USERNAME/PASSWORD).
    #[arg(long, env = "ES_SERVER", value_name = "URL", hide_env_values = true)]
    pub es_server: String,
    /// Index to write to, e.g. ripsaw-kube-burner-vm-bgp.
    #[arg(long, value_name = "INDEX")]
    pub es_index: String,
    #[command(flatten)]
    pub tls: EsTlsArgs,
}

#[derive(Debug, Clone, Args)]
pub struct CompareArgs {
    /// The baseline run: a results directory, or a uuid looked up in --es-server.
    #[arg(value_name = "BASELINE")]
    pub baseline: String,
    /// The run to judge: a results directory, or a uuid looked up in --es-server.
    #[arg(value_name = "CURRENT")]
    pub current: String,
    /// Print the comparison as JSON (for CI) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// YAML or JSON list of tolerances replacing the defaults (metricName, quantileName, statistic,
    /// percent, minAbsolute, direction).
    #[arg(long, value_name = "PATH")]
    pub tolerances: Option<PathBuf>,
    /// Compare runs whose configuration differs (profile, shape, network layout, iterations, VMs
    /// per iteration, advertisement mode); without it such runs are refused with exit 2.
    #[arg(long)]
    pub force: bool,
    /// Elasticsearch/OpenSearch URL, when a run is given by uuid.
    #[arg(long, env = "ES_SERVER", value_name = "URL", hide_env_values = true)]
    pub es_server: Option<String>,
    /// Index holding the runs given by uuid.
    #[arg(long, value_name = "INDEX")]
    pub es_index: Option<String>,
    #[command(flatten)]
    pub tls: EsTlsArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    /// The tracing filter. Below debug, kube's HTTP trace layer is silenced: it logs every 5xx
    /// at ERROR, also the ones the retry layer then retries, while every request's final outcome
    /// reaches the harness as a result and is reported there.
    pub fn as_filter(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info,kube_client::client::builder=off",
            LogLevel::Warn => "warn,kube_client::client::builder=off",
            LogLevel::Error => "error,kube_client::client::builder=off",
        }
    }
}

/// Everything that shapes the plan; shared by every command. A value given here overrides the
/// profile's (`None`: not given); `config::plan` reads this struct directly, so a setting is a
/// field here (its flag) and a field of `config::Profile` (its key), nothing more.
#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    /// Run profile: a built-in name or a path to a YAML profile.
    #[arg(long, default_value = "vm-bgp", value_name = "NAME|PATH")]
    pub profile: String,
    /// Run identifier; labels every object (`vmbgp.io/uuid`) and document. Default: a random UUID.
    #[arg(long)]
    pub uuid: Option<String>,
    /// Number of iterations (networks per iteration in vm-bgp; rounds in churn and migration).
    #[arg(long)]
    pub iterations: Option<u32>,
    /// VMs created per iteration.
    #[arg(long)]
    pub vm_count: Option<u32>,
    /// Client-side create rate limit, requests per second [profile default: 20].
    #[arg(long)]
    pub qps: Option<u32>,
    /// Create rate limiter burst; must be ≥ qps [profile default: 20].
    #[arg(long)]
    pub burst: Option<u32>,
    /// Global run timeout, e.g. 30m, 4h [profile default: 4h].
    #[arg(long)]
    pub timeout: Option<String>,
    /// Delete everything the run created (selected by its uuid label) when it ends.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub gc: Option<bool>,
    /// Network layout: per-iteration (one CUDN per iteration) or shared (one CUDN for the run).
    #[arg(long, value_parser = ["per-iteration", "shared"])]
    pub network: Option<String>,
    /// Per-iteration layout: supernet the iterations' subnets are carved from [default: 198.19.0.0/16].
    #[arg(long, value_name = "CIDR")]
    pub supernet: Option<String>,
    /// Shared layout: the CUDN subnet [default: the profile's, or the /24 holding --vm-ip-range].
    #[arg(long, value_name = "CIDR")]
    pub subnet: Option<String>,
    /// Shared layout: Day-0 static VM addresses, START-END (inclusive).
    #[arg(long, value_name = "START-END")]
    pub vm_ip_range: Option<String>,
    /// Prefix of namespace and CUDN names; CUDN names must stay ≤ 15 characters [default: vmbgp].
    #[arg(long)]
    pub name_prefix: Option<String>,
    /// The external BGP router's address (the cluster nodes' peer) [default: 198.18.0.155].
    #[arg(long, value_name = "IP")]
    pub bgp_peer_ip: Option<String>,
    /// The external router's ASN [default: 64512].
    #[arg(long, value_name = "ASN")]
    pub peer_asn: Option<u64>,
    /// The cluster nodes' ASN [default: 64513].
    #[arg(long, value_name = "ASN")]
    pub cluster_asn: Option<u64>,
    /// Namespace frr-k8s runs in (`frr-k8s-system` upstream) [default: openshift-frr-k8s].
    #[arg(long)]
    pub frr_namespace: Option<String>,
    /// Cluster node addresses for explicit external-router neighbours (comma-separated).
    #[arg(long, value_name = "IP,IP,...", value_delimiter = ',')]
    pub node_ips: Option<Vec<String>>,
    /// Node address range the external router accepts sessions from (`bgp listen range`) [default: 198.18.0.0/24].
    #[arg(long, value_name = "CIDR")]
    pub node_cidr: Option<String>,
    /// Where the external router sends BMP, as seen from the router [default: 127.0.0.1:5000].
    #[arg(long, value_name = "IP:PORT")]
    pub bmp_target: Option<String>,
    /// The harness's egress echo endpoint as VMs call it [default: <bgp-peer-ip>:8090].
    #[arg(long, value_name = "HOST:PORT")]
    pub egress_endpoint: Option<String>,
    /// VM container disk image.
    #[arg(long)]
    pub vm_image: Option<String>,
    /// Elasticsearch/OpenSearch URL (credentials may be in the URL); requires --es-index.
    #[arg(long, env = "ES_SERVER", value_name = "URL", hide_env_values = true)]
    pub es_server: Option<String>,
    /// Elasticsearch/OpenSearch index, e.g. ripsaw-kube-burner-vm-bgp; requires --es-server.
    #[arg(long, value_name = "INDEX")]
    pub es_index: Option<String>,
    #[command(flatten)]
    pub es_tls: EsTlsArgs,
    /// Also write kube-burner's local-indexing layout (collected-metrics-<uuid>/).
    #[arg(long)]
    pub local_indexing: bool,
    /// Directory for results (results/<uuid>/ below it) [default: results].
    #[arg(long, value_name = "DIR")]
    pub results_dir: Option<PathBuf>,
    /// kubeconfig file [default: $KUBECONFIG or ~/.kube/config].
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// kubeconfig context to use.
    #[arg(long)]
    pub context: Option<String>,
}

impl Default for PlanArgs {
    /// clap's defaults for no arguments, as the command line has them, but without reading the
    /// environment (`ES_SERVER`): a default plan is the same on every machine.
    fn default() -> Self {
        let command = PlanArgs::augment_args(clap::Command::new("plan"))
            .mut_arg("es_server", |arg| arg.env(None::<&str>));
        // No arguments always parse; clap's own exit is what `Parser::parse_from` would do.
        command
            .try_get_matches_from(["plan"])
            .and_then(|matches| PlanArgs::from_arg_matches(&matches))
            .unwrap_or_else(|error| error.exit())
    }
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub plan: PlanArgs,
    /// Network namespace of the external router's view: the BMP listener and the FIB watcher
    /// open their sockets there (the lab's external router netns, or none on the router host).
    #[arg(long, value_name = "NAME")]
    pub netns: Option<String>,
    /// Where the BMP station listens [default: the --bmp-target address, as the router sees it].
    #[arg(long, value_name = "IP:PORT")]
    pub bmp_listen: Option<std::net::SocketAddr>,
    /// Router source addresses BMP is accepted from; any other connection is refused unread
    /// [default: the --bmp-target address when it is a loopback address (the router connects to
    /// itself, as in the lab), else --bgp-peer-ip].
    #[arg(long, value_name = "IP,IP,...", value_delimiter = ',')]
    pub bmp_allow: Option<Vec<std::net::IpAddr>>,
    /// Observe BGP at the external router (BMP station and kernel FIB watcher).
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    pub observe_bgp: bool,
    /// Probe every VM with ICMP from the external router's view (--netns); needs root. Only where
    /// the VM addresses are routed to this host: the traffic goes to the VMs' addresses.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    pub probe_vms: bool,
    /// Where BGP session stability comes from: BMP Peer Up/Down (stamped on arrival), or polling
    /// the external router's `show bgp summary json` (routers without BMP; needs --frr-vty-dir or
    /// --frr-exec, or --lab).
    #[arg(long, value_enum, default_value_t = SessionSourceArg::Bmp)]
    pub session_source: SessionSourceArg,
    /// The external router's FRR vty socket directory (holding bgpd.vty), read by the session poller
    /// and, in host-route mode, for the local-pref ext's policy gave each /32.
    #[arg(long, value_name = "DIR", conflicts_with = "frr_exec")]
    pub frr_vty_dir: Option<PathBuf>,
    /// Run `vtysh` through this command prefix instead, e.g. "podman exec frr" (a process per poll).
    #[arg(long, value_name = "CMD")]
    pub frr_exec: Option<String>,
    /// How often the session poller asks (100ms to 1m).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = humantime::parse_duration)]
    pub session_poll_interval: std::time::Duration,
    /// Bring up the embedded lab for this run and take it down afterwards (root; needs FRR). A
    /// host-route profile (`bgp.hostRoutes`) also runs the host-route controller against it.
    #[arg(long)]
    pub lab: bool,
    /// With --lab: the `vmbgp-controller` binary a host-route profile runs [default: next to
    /// vmbgp-bench].
    #[arg(long, value_name = "PATH", requires = "lab")]
    pub controller_bin: Option<PathBuf>,
    /// Host-route mode: the controller's Prometheus endpoint, read once when measuring ends
    /// (reconcile p99, routes advertised and capped per node) [default with --lab: the controller
    /// the lab runs].
    #[arg(long, value_name = "URL", value_parser = metrics_url, conflicts_with = "lab")]
    pub controller_metrics: Option<reqwest::Url>,
    #[command(flatten)]
    pub lab_shape: LabArgs,
}

/// `--controller-metrics`: an http(s) URL.
fn metrics_url(value: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(value).map_err(|e| format!("{value:?} is not a URL: {e}"))?;
    if matches!(url.scheme(), "http" | "https") && url.host().is_some() {
        Ok(url)
    } else {
        Err(format!(
            "{value:?}: give an http:// or https:// URL with a host, e.g. http://127.0.0.1:8080/metrics"
        ))
    }
}

/// `--session-source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SessionSourceArg {
    Bmp,
    Poll,
}

#[derive(Debug, Clone, Args)]
pub struct RenderArgs {
    #[command(flatten)]
    pub plan: PlanArgs,
    /// Render from templates in this directory instead of the built-in ones (same file names as workloads/).
    #[arg(long, value_name = "DIR")]
    pub workload_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub plan: PlanArgs,
    /// Also open a TCP connection to the BGP peer's port 179 (only against a real router you own).
    #[arg(long)]
    pub probe_peer: bool,
    /// Seconds to wait for the API server and the peer before calling them unreachable.
    #[arg(long, default_value_t = 10)]
    pub connect_timeout: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn bare_flags_are_a_run() {
        let cli = Cli::try_parse_from(["vmbgp-bench", "--iterations", "72", "--vm-count", "10"])
            .expect("parses");
        assert!(cli.command.is_none());
        assert_eq!(cli.run.plan.iterations, Some(72));
        assert_eq!(cli.run.plan.vm_count, Some(10));
        assert_eq!(cli.run.plan.profile, "vm-bgp");
    }

    #[test]
    fn log_level_is_one_argument_for_every_command() {
        let level = |args: &[&str]| Cli::try_parse_from(args).expect("parses").log_level;
        assert_eq!(level(&["vmbgp-bench", "--iterations", "3"]), LogLevel::Info);
        assert_eq!(
            level(&["vmbgp-bench", "--log-level", "debug"]),
            LogLevel::Debug
        );
        assert_eq!(
            level(&["vmbgp-bench", "compare", "a", "b", "--log-level", "warn"]),
            LogLevel::Warn
        );
        assert_eq!(
            level(&["vmbgp-bench", "lab", "down", "--log-level", "error"]),
            LogLevel::Error
        );
        assert_eq!(
            level(&["vmbgp-bench", "render", "--log-level", "debug"]),
            LogLevel::Debug
        );
    }

    #[test]
    fn gc_accepts_bare_and_explicit_values() {
        let cli = Cli::try_parse_from(["vmbgp-bench", "run", "--gc=false"]).expect("parses");
        let Some(Command::Run(run)) = cli.command else {
            panic!("run expected")
        };
        assert_eq!(run.plan.gc, Some(false));
        let cli = Cli::try_parse_from(["vmbgp-bench", "--gc"]).expect("parses");
        assert_eq!(cli.run.plan.gc, Some(true));
    }

    #[test]
    fn help_lists_exit_codes() {
        let help = Cli::command().render_long_help().to_string();
        assert!(
            help.contains("Exit codes:") && help.contains("130"),
            "{help}"
        );
    }
}
