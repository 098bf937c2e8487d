//! Carries out each command and decides its exit code. `main.rs` only parses, sets up logging and
//! calls [`execute`]; everything here is testable in-process.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::api::{Api, DynamicObject, ListParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use vmbgp_reporters::compare::{RunSource, Tolerance, compare_runs, default_tolerances};
use vmbgp_reporters::es::{
    Credentials, EsClient, EsOptions, IndexError, index_saved_results, load_results_dir,
};
use vmbgp_reporters::measured::Measured;
use vmbgp_reporters::recorder::{RunEnd, RunRecorder};
use vmbgp_reporters::redact::Redactor;

use crate::cli::{
    CheckArgs, Cli, Command, CompareArgs, DestroyArgs, EsTlsArgs, IndexArgs, LabCommand, LabUpArgs,
    PlanArgs, RenderArgs, RunArgs, SessionSourceArg,
};
use crate::clock::RunClock;
use crate::config::{ConfigError, Plan, load_profile, plan};
use crate::error_chain;
use crate::exit::ExitCode;
use crate::kube::check::{Report, preflight};
use crate::kube::{Cluster, KubeError, connect};
use crate::results::{RecorderSink, describe_run, enabled_measurements};
use crate::run::{Observers, Outcome, SessionPoll, Stop};
use crate::workload::{
    RenderError, Templates, render_external_frr, render_plan, to_multidoc_yaml, validate_manifests,
};

/// Why a command failed, with the exit code each cause maps to.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error(transparent)]
    Kube(#[from] KubeError),
    #[error("preflight found blocking problems:\n{0}")]
    Preflight(Report),
    #[error("the Kubernetes API is unreachable:\n{0}")]
    Unreachable(Report),
    #[error("cannot write results")]
    Results(#[source] vmbgp_reporters::recorder::RecordError),
    /// Documents the run could not write as it went (each named), after the rest was written.
    #[error("some results could not be written: {0}")]
    ResultsIncomplete(String),
    #[error("cannot write the local-indexing copy")]
    LocalIndexing(#[source] vmbgp_reporters::local::LocalError),
    /// The run's own results directory could not be read back for upload.
    #[error("cannot read the results to upload")]
    Upload(#[source] IndexError),
    #[error("Elasticsearch/OpenSearch settings")]
    EsConfig(#[source] vmbgp_reporters::es::EsError),
    #[error("--es-server and --es-index must be given together")]
    EsFlagsApart,
    /// `compare` failed; an unreachable Elasticsearch/OpenSearch is the environment's fault,
    /// anything else (runs that cannot be compared, unreadable runs) the input's.
    #[error("compare")]
    Compare(#[source] vmbgp_reporters::compare::CompareError),
    /// `index DIR` with a DIR that is not a readable results directory; nothing was contacted.
    #[error("not a results directory")]
    ResultsDir(#[source] IndexError),
    #[error("cannot read tolerances {path}: {message}")]
    Tolerances { path: String, message: String },
    #[error(transparent)]
    Lab(#[from] crate::lab_commands::LabError),
    #[error("destroy: {0}")]
    Destroy(#[source] crate::kube::destroy::DestroyError),
    #[error("cannot write output")]
    Output(#[source] std::io::Error),
}

impl AppError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            AppError::Config(_)
            | AppError::Render(_)
            | AppError::EsConfig(_)
            | AppError::EsFlagsApart
            | AppError::Tolerances { .. } => ExitCode::InvalidInput,
            AppError::Compare(e) if e.is_unavailable() => ExitCode::EnvironmentUnavailable,
            AppError::Compare(_) | AppError::ResultsDir(_) => ExitCode::InvalidInput,
            AppError::Lab(
                crate::lab_commands::LabError::Render(_)
                | crate::lab_commands::LabError::Invalid(_),
            ) => ExitCode::InvalidInput,
            AppError::Lab(_) => ExitCode::EnvironmentUnavailable,
            AppError::Kube(_) | AppError::Preflight(_) | AppError::Unreachable(_) => {
                ExitCode::EnvironmentUnavailable
            }
            AppError::Results(_)
            | AppError::ResultsIncomplete(_)
            | AppError::LocalIndexing(_)
            | AppError::Upload(_)
            | AppError::Output(_) => ExitCode::Internal,
            AppError::Destroy(crate::kube::destroy::DestroyError::StillPresent { .. }) => {
                ExitCode::Timeout
            }
            AppError::Destroy(_) => ExitCode::EnvironmentUnavailable,
        }
    }
}

/// Validates the plan arguments: profile + overrides → plan. Contacts nothing.
pub fn plan_from_args(args: &PlanArgs) -> Result<Plan, AppError> {
    let profile = load_profile(&args.profile)?;
    Ok(plan(&profile, args)?)
}

/// Runs the command the CLI selected, writing normal output to `out`.
pub async fn execute(cli: Cli, out: &mut (dyn Write + Send)) -> Result<ExitCode, AppError> {
    match cli.command {
        None => run(cli.run, out).await,
        Some(Command::Run(args)) => run(args, out).await,
        Some(Command::Render(args)) => render(&args, out),
        Some(Command::FrrConfig(args)) => frr_config(&args, out),
        Some(Command::Check(args)) => check(&args, out).await,
        Some(Command::Index(args)) => index(&args, out).await,
        Some(Command::Compare(args)) => compare(&args, out).await,
        Some(Command::Destroy(args)) => destroy(&args, out).await,
        Some(Command::Lab(command)) => lab(command, out).await,
    }
}

fn render(args: &RenderArgs, out: &mut (dyn Write + Send)) -> Result<ExitCode, AppError> {
    let plan = plan_from_args(&args.plan)?;
    let templates = match &args.workload_dir {
        Some(dir) => Templates::from_dir(dir)?,
        None => Templates::builtin()?,
    };
    let manifests = render_plan(&plan, &templates)?;
    validate_manifests(&manifests)?;
    out.write_all(to_multidoc_yaml(&plan, &manifests).as_bytes())
        .map_err(AppError::Output)?;
    Ok(ExitCode::Ok)
}

fn frr_config(args: &PlanArgs, out: &mut (dyn Write + Send)) -> Result<ExitCode, AppError> {
    let plan = plan_from_args(args)?;
    let text = render_external_frr(&plan, &Templates::builtin()?)?;
    out.write_all(text.as_bytes()).map_err(AppError::Output)?;
    Ok(ExitCode::Ok)
}

async fn check(args: &CheckArgs, out: &mut (dyn Write + Send)) -> Result<ExitCode, AppError> {
    let plan = plan_from_args(&args.plan)?;
    validate_manifests(&render_plan(&plan, &Templates::builtin()?)?)?;
    let timeout = Duration::from_secs(args.connect_timeout.max(1));
    let report = preflight_plan(&plan, timeout, args.probe_peer.then_some(timeout)).await?;
    write!(out, "{report}").map_err(AppError::Output)?;
    Ok(ExitCode::Ok)
}

/// Connects and runs the preflight; unreachable API and blocking findings are errors.
async fn preflight_plan(
    plan: &Plan,
    timeout: Duration,
    probe_peer: Option<Duration>,
) -> Result<Report, AppError> {
    let cluster = connect(plan.kubeconfig.as_deref(), plan.context.as_deref(), timeout).await?;
    let report = preflight(&cluster, plan, probe_peer).await;
    if !report.reachable() {
        return Err(AppError::Unreachable(report));
    }
    if report.blocking() {
        return Err(AppError::Preflight(report));
    }
    Ok(report)
}

/// The flags the user gave, kube-burner style (`workloadFlags`: camelCase keys, string values).
fn workload_flags(args: &PlanArgs) -> BTreeMap<String, String> {
    let value = serde_json::json!({
        "profile": args.profile,
        "iterations": args.iterations,
        "vmCount": args.vm_count,
        "qps": args.qps,
        "burst": args.burst,
        "timeout": args.timeout,
        "gc": args.gc,
        "network": args.network,
        "supernet": args.supernet,
        "subnet": args.subnet,
        "vmIpRange": args.vm_ip_range,
        "namePrefix": args.name_prefix,
        "bgpPeerIp": args.bgp_peer_ip,
        "peerAsn": args.peer_asn,
        "clusterAsn": args.cluster_asn,
        "frrNamespace": args.frr_namespace,
        "esIndex": args.es_index,
    });
    let mut flags = BTreeMap::new();
    if let Some(map) = value.as_object() {
        for (key, value) in map {
            match value {
                Value::Null => {}
                Value::String(text) => {
                    flags.insert(key.clone(), text.clone());
                }
                other => {
                    flags.insert(key.clone(), other.to_string());
                }
            }
        }
    }
    flags
}

/// Cancels `cancel` on the first SIGINT or SIGTERM, so the run stops creating, keeps its results and
/// cleans up. A second signal quits at once, printing `leftovers`: what may remain and the command
/// that removes it. Installed before anything is created, so no signal can leak a lab or objects.
fn cancel_on_signals(cancel: CancellationToken, leftovers: Arc<Mutex<String>>) {
    // Registered here, synchronously: a signal arriving before the task first runs is not lost.
    let terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    let interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt());
    let (Ok(mut terminate), Ok(mut interrupt)) = (terminate, interrupt) else {
        tracing::warn!(
            "cannot install the SIGINT/SIGTERM handlers: a signal will end the run at once"
        );
        return;
    };
    tokio::spawn(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        tracing::warn!(
            "signal received: stopping creation, keeping results, cleaning up (a second signal quits at once)"
        );
        cancel.cancel();
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        let leftovers = leftovers.lock().map(|l| l.clone()).unwrap_or_default();
        eprintln!("second signal: quitting without cleanup. {leftovers}");
        std::process::exit(i32::from(ExitCode::Interrupted.code()));
    });
}

/// `destroy --uuid`: everything labelled with the run's uuid, in dependency order, until gone.
async fn destroy(args: &DestroyArgs, out: &mut (dyn Write + Send)) -> Result<ExitCode, AppError> {
    if let Err(why) = crate::config::check_label_value(&args.uuid) {
        return Err(AppError::Config(ConfigError::Invalid(vec![
            crate::config::Problem {
                field: "--uuid".to_string(),
                value: args.uuid.clone(),
                message: format!("must be a valid Kubernetes label value ({why})"),
            },
        ])));
    }
    let cluster = connect(
        args.kubeconfig.as_deref(),
        args.context.as_deref(),
        Duration::from_secs(10),
    )
    .await?;
    let destroyed =
        crate::kube::destroy::destroy(&cluster.client, &args.uuid, args.timeout, &mut |line| {
            tracing::info!("{line}")
        })
        .await
        .map_err(AppError::Destroy)?;
    let label = format!("{}={}", crate::workload::labels::UUID, args.uuid);
    let line = if destroyed.total() == 0 {
        format!("destroy: nothing labelled {label} exists")
    } else {
        let kinds: Vec<String> = destroyed
            .deleted
            .iter()
            .map(|(kind, n)| format!("{n} {kind}"))
            .collect();
        format!("destroy: deleted {} ({label}); all gone", kinds.join(", "))
    };
    writeln!(out, "{line}").map_err(AppError::Output)?;
    Ok(ExitCode::Ok)
}

/// What an abandoned run may leave behind, and the command that removes it.
fn leftovers(plan: &Plan, lab_state_dir: Option<&std::path::Path>) -> String {
    let objects = format!(
        "Objects labelled {}={} may remain",
        crate::workload::labels::UUID,
        plan.uuid
    );
    match lab_state_dir {
        Some(dir) => format!(
            "{objects} in a lab that is still up (namespaces, FRR daemons, {dir}); remove it with: vmbgp-bench lab down --state-dir {dir}",
            dir = dir.display()
        ),
        None => {
            let mut command = format!("vmbgp-bench destroy --uuid {}", plan.uuid);
            if let Some(kubeconfig) = &plan.kubeconfig {
                command.push_str(&format!(" --kubeconfig {}", kubeconfig.display()));
            }
            if let Some(context) = &plan.context {
                command.push_str(&format!(" --context {context}"));
            }
            format!("{objects}; remove them with: {command}")
        }
    }
}

async fn run(args: RunArgs, out: &mut (dyn Write + Send)) -> Result<ExitCode, AppError> {
    // First of all, so that no signal, however early, ends the run without cleanup.
    let cancel = CancellationToken::new();
    let left = Arc::new(Mutex::new("Nothing was created yet.".to_string()));
    cancel_on_signals(cancel.clone(), left.clone());
    let plan = plan_from_args(&args.plan)?;
    check_session_source(&args)?;
    crate::lab_commands::check_run_lab_args(args.lab, &args.lab_shape)?;
    let manifests = render_plan(&plan, &Templates::builtin()?)?;
    validate_manifests(&manifests)?;
    // Built (not contacted) before anything is created, so a bad CA file is an input error.
    let es = match &plan.indexing.es {
        Some(target) => Some(es_client(
            target.server.as_str(),
            &target.index,
            &args.plan.es_tls,
        )?),
        None => None,
    };
    if cancel.is_cancelled() {
        tracing::warn!("interrupted before anything was created");
        return Ok(ExitCode::Interrupted);
    }
    if args.lab {
        let state_dir = crate::lab_commands::run_state_dir();
        set_leftovers(&left, leftovers(&plan, Some(&state_dir)));
        return run_on_lab(&args, plan, &manifests, es, &state_dir, cancel, out).await;
    }
    set_leftovers(&left, leftovers(&plan, None));
    run_connected(&args, &plan, &manifests, es, None, cancel, out).await
}

fn set_leftovers(slot: &Mutex<String>, text: String) {
    if let Ok(mut slot) = slot.lock() {
        *slot = text;
    }
}

/// Bounds of `--session-poll-interval`.
const SESSION_POLL_INTERVALS: std::ops::RangeInclusive<Duration> =
    Duration::from_millis(100)..=Duration::from_secs(60);

/// `--session-source poll` needs a way to reach the router's vty; checked before anything is contacted.
fn check_session_source(args: &RunArgs) -> Result<(), ConfigError> {
    let problem = |field: &str, value: String, message: &str| {
        ConfigError::Invalid(vec![crate::config::Problem {
            field: field.to_string(),
            value,
            message: message.to_string(),
        }])
    };
    if args.session_source == SessionSourceArg::Poll
        && args.frr_vty_dir.is_none()
        && args.frr_exec.is_none()
        && !args.lab
    {
        return Err(problem(
            "--session-source",
            "poll".into(),
            "polling needs the router's vty: give --frr-vty-dir DIR or --frr-exec CMD",
        ));
    }
    if !SESSION_POLL_INTERVALS.contains(&args.session_poll_interval) {
        return Err(problem(
            "--session-poll-interval",
            humantime::format_duration(args.session_poll_interval).to_string(),
            "must be 100ms to 1m",
        ));
    }
    if let Some(prefix) = &args.frr_exec
        && let Err(e) = vmbgp_bgp::vty::ExecCli::from_prefix_str(prefix, Duration::from_secs(5))
    {
        return Err(problem("--frr-exec", prefix.clone(), &e.to_string()));
    }
    if args
        .frr_exec
        .as_deref()
        .is_some_and(|p| p.trim().is_empty())
    {
        return Err(problem(
            "--frr-exec",
            String::new(),
            "an empty prefix; give the command that reaches vtysh, e.g. \"podman exec frr\"",
        ));
    }
    Ok(())
}

/// How long one vty command may take before the poll counts as failed.
const VTY_TIMEOUT: Duration = Duration::from_secs(5);

/// The external router's CLI the arguments name (`lab_vty_dir`: the lab's external router, with
/// --lab), if any.
fn router_cli(
    args: &RunArgs,
    lab_vty_dir: Option<&std::path::Path>,
) -> Option<std::sync::Arc<dyn vmbgp_bgp::vty::FrrCli>> {
    Some(match (&args.frr_exec, &args.frr_vty_dir) {
        (Some(prefix), _) => {
            std::sync::Arc::new(vmbgp_bgp::vty::ExecCli::from_prefix_str(prefix, VTY_TIMEOUT).ok()?)
        }
        (None, Some(dir)) => std::sync::Arc::new(vmbgp_bgp::vty::VtyCli::new(dir, VTY_TIMEOUT)),
        (None, None) => std::sync::Arc::new(vmbgp_bgp::vty::VtyCli::new(lab_vty_dir?, VTY_TIMEOUT)),
    })
}

/// The session poller the arguments ask for, over the router's CLI.
fn session_poll(
    args: &RunArgs,
    cli: Option<&std::sync::Arc<dyn vmbgp_bgp::vty::FrrCli>>,
) -> Option<SessionPoll> {
    if args.session_source != SessionSourceArg::Poll {
        return None;
    }
    Some(SessionPoll {
        cli: std::sync::Arc::clone(cli?),
        interval: args.session_poll_interval,
    })
}

/// What `run --lab` tells the run about its lab.
#[derive(Debug, Clone)]
struct LabView {
    ext_netns: String,
    ext_vty_dir: Option<std::path::PathBuf>,
    /// The host-route controller the lab runs, when it runs one.
    controller_metrics: Option<String>,
}

/// `run --lab`: up, run, down — the lab comes down whatever the run did.
async fn run_on_lab(
    args: &RunArgs,
    mut plan: Plan,
    manifests: &[crate::workload::Manifest],
    es: Option<EsClient>,
    state_dir: &std::path::Path,
    cancel: CancellationToken,
    out: &mut (dyn Write + Send),
) -> Result<ExitCode, AppError> {
    let state_dir = state_dir.to_path_buf();
    crate::lab_commands::require_root()?;
    for line in crate::lab_commands::reclaim_dead_run_labs() {
        tracing::warn!("{line}");
    }
    let mut config = crate::lab_commands::lab_config(&plan, &args.lab_shape, &state_dir)?;
    // Host-route mode needs the controller: found before any lab exists, so a missing binary
    // creates nothing.
    let controller_bin = plan
        .bgp
        .host_routes
        .then(|| crate::lab_controller::locate(args.controller_bin.as_deref()))
        .transpose()?;
    let api_truth = state_dir.join(crate::lab_commands::API_GROUND_TRUTH_FILE);
    config.api.ground_truth_path = Some(api_truth.clone());
    tracing::info!(
        "bringing up the lab ({} nodes) in {}",
        args.lab_shape.nodes,
        state_dir.display()
    );
    let lab = crate::lab_commands::up_in_process(config).await?;
    let controller = match &controller_bin {
        None => None,
        Some(binary) => {
            match crate::lab_commands::start_controller(&lab, binary, &plan.bgp.frr_namespace).await
            {
                Ok(process) => {
                    tracing::info!("host-route controller running: {}", process.info());
                    Some(process)
                }
                Err(e) => {
                    let _ = crate::lab_commands::down_in_process(lab).await;
                    let _ = std::fs::remove_file(&api_truth);
                    let _ = std::fs::remove_file(
                        state_dir.join(crate::lab_controller::CONTROLLER_LOG_FILE),
                    );
                    crate::lab_commands::remove_empty_state_dir(&state_dir);
                    return Err(e.into());
                }
            }
        }
    };
    plan.kubeconfig = Some(lab.kubeconfig().to_path_buf());
    plan.context = None;
    let info = lab.net.info();
    let view = LabView {
        ext_netns: info.ext_netns,
        ext_vty_dir: info.ext_bgpd_vty.parent().map(std::path::Path::to_path_buf),
        controller_metrics: controller.as_ref().map(|c| c.metrics_url()),
    };
    // A signal during bring-up: the lab is up now, so take it down again and create nothing.
    let result = if cancel.is_cancelled() {
        tracing::warn!("interrupted during lab bring-up: nothing was created");
        Ok(ExitCode::Interrupted)
    } else {
        run_connected(args, &plan, manifests, es, Some(&view), cancel, out).await
    };
    // Stopped before the lab, so it never sees its API vanish.
    let stopped = match controller {
        Some(process) => process.stop().await,
        None => Ok(()),
    };
    // The lab's record of what it did, next to what the run measured (once the run has a results directory).
    let results = plan.indexing.results_dir.join(&plan.uuid);
    if results.is_dir() {
        let dest = results.join(crate::lab_commands::RESULTS_GROUND_TRUTH_DIR);
        match crate::lab_commands::save_ground_truth(&state_dir, &dest) {
            Ok(_) => tracing::info!("lab ground truth in {}", dest.display()),
            Err(e) => tracing::warn!("the lab's ground truth was not saved: {}", error_chain(&e)),
        }
    }
    let down = crate::lab_commands::down_in_process(lab).await;
    let _ = std::fs::remove_file(&api_truth);
    let _ = std::fs::remove_file(state_dir.join(crate::lab_controller::CONTROLLER_LOG_FILE));
    crate::lab_commands::remove_empty_state_dir(&state_dir);
    let down = stopped.and(down);
    match (result, down) {
        (Ok(code), Ok(())) => Ok(code),
        (Err(e), _) => Err(e),
        (Ok(_), Err(e)) => Err(e.into()),
    }
}

async fn run_connected(
    args: &RunArgs,
    plan: &Plan,
    manifests: &[crate::workload::Manifest],
    es: Option<EsClient>,
    lab: Option<&LabView>,
    cancel: CancellationToken,
    out: &mut (dyn Write + Send),
) -> Result<ExitCode, AppError> {
    let timeout = Duration::from_secs(10);
    let cluster = connect(plan.kubeconfig.as_deref(), plan.context.as_deref(), timeout).await?;
    let report = preflight(&cluster, plan, None).await;
    if !report.reachable() {
        return Err(AppError::Unreachable(report));
    }
    if report.blocking() {
        return Err(AppError::Preflight(report));
    }
    let node_addresses = list_nodes(&cluster).await;
    let nodes = node_addresses.len() as u64;
    let cli = router_cli(args, lab.and_then(|l| l.ext_vty_dir.as_deref()));
    let redactor = es.as_ref().map(|c| c.redactor().clone());
    let flags = workload_flags(&args.plan);
    let observers = Observers {
        netns: lab
            .map(|l| l.ext_netns.clone())
            .or_else(|| args.netns.clone()),
        bmp_listen: args.observe_bgp.then(|| {
            args.bmp_listen.unwrap_or_else(|| {
                std::net::SocketAddr::from((plan.bgp.bmp.address, plan.bgp.bmp.port))
            })
        }),
        bmp_allow: args.bmp_allow.clone().unwrap_or_else(|| {
            let target = std::net::IpAddr::V4(plan.bgp.bmp.address);
            vec![if target.is_loopback() {
                target
            } else {
                std::net::IpAddr::V4(plan.bgp.peer_ip)
            }]
        }),
        fib: args.observe_bgp,
        expected_next_hops: nodes,
        probe_vms: args.probe_vms,
        // The endpoint stands where the VMs call it: the router's side, like the probes.
        egress: args.probe_vms.then_some(plan.probes.egress_endpoint),
        session_poll: session_poll(args, cli.as_ref()),
        router_cli: cli.clone(),
        controller_metrics: lab
            .and_then(|l| l.controller_metrics.clone())
            .or_else(|| args.controller_metrics.as_ref().map(ToString::to_string)),
        node_addresses: node_addresses
            .into_iter()
            .filter_map(|(name, address)| Some((name, address?)))
            .collect(),
    };
    let (code, dir) = run_plan(
        plan, &cluster, &report, nodes, manifests, flags, redactor, &observers, cancel, out,
    )
    .await?;
    if let Some(retried) = cluster.retries.summary() {
        let _ = writeln!(out, "{retried}");
    }
    match es {
        // Indexing problems never hide a worse outcome (threshold, timeout, interrupt).
        Some(client) => {
            let indexed = upload(&dir, &client, out).await?;
            Ok(if code == ExitCode::Ok { indexed } else { code })
        }
        None => Ok(code),
    }
}

/// KubeVirt's version from its custom resource (`status.observedKubeVirtVersion`), where readable.
async fn kubevirt_version(cluster: &Cluster) -> Measured<String> {
    let kubevirts: Api<DynamicObject> = Api::all_with(
        cluster.client.clone(),
        &crate::kube::KUBEVIRT.api_resource(),
    );
    match kubevirts.list(&ListParams::default()).await {
        Ok(list) => list
            .items
            .iter()
            .find_map(|kv| kv.data["status"]["observedKubeVirtVersion"].as_str())
            .map(|v| Measured::Observed(v.to_string()))
            .unwrap_or_else(|| {
                Measured::missing("no KubeVirt custom resource reports observedKubeVirtVersion")
            }),
        Err(e) => Measured::missing(format!(
            "the KubeVirt custom resource is not readable: {}",
            crate::kube::apply::describe(&e)
        )),
    }
}

/// The cluster's nodes, each with its InternalIP (the address the external router peers with and
/// routes host routes to), when its status gives one.
async fn list_nodes(cluster: &Cluster) -> BTreeMap<String, Option<std::net::Ipv4Addr>> {
    let nodes: Api<DynamicObject> = Api::all_with(
        cluster.client.clone(),
        &ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("", "v1", "Node"), "nodes"),
    );
    match nodes.list(&ListParams::default()).await {
        Ok(list) => list
            .items
            .iter()
            .map(|node| {
                let name = node.metadata.name.clone().unwrap_or_default();
                (name, internal_ipv4(node))
            })
            .collect(),
        Err(e) => {
            tracing::warn!("cannot list nodes: {e}");
            BTreeMap::new()
        }
    }
}

/// A node's first IPv4 InternalIP (`status.addresses`).
fn internal_ipv4(node: &DynamicObject) -> Option<std::net::Ipv4Addr> {
    node.data["status"]["addresses"]
        .as_array()?
        .iter()
        .filter(|a| a["type"] == "InternalIP")
        .find_map(|a| a["address"].as_str()?.parse().ok())
}

/// Runs a validated plan against a connected cluster and writes its results.
#[allow(clippy::too_many_arguments)]
pub async fn run_plan(
    plan: &Plan,
    cluster: &Cluster,
    report: &Report,
    nodes: u64,
    manifests: &[crate::workload::Manifest],
    flags: BTreeMap<String, String>,
    redactor: Option<Redactor>,
    observers: &Observers,
    cancel: CancellationToken,
    out: &mut (dyn Write + Send),
) -> Result<(ExitCode, std::path::PathBuf), AppError> {
    let kubevirt = kubevirt_version(cluster).await;
    let clock = RunClock::start();
    let description = describe_run(
        plan,
        &clock,
        report.server_version.as_deref().unwrap_or_default(),
        kubevirt,
        nodes,
        flags,
        enabled_measurements(plan, observers),
    );
    let recorder = RunRecorder::start(
        &plan.indexing.results_dir,
        description,
        redactor.unwrap_or_default(),
    )
    .map_err(AppError::Results)?;
    tracing::info!("run {}: results in {}", plan.uuid, recorder.dir().display());
    let mut sink = RecorderSink::new(
        recorder,
        std::io::IsTerminal::is_terminal(&std::io::stderr()),
    );
    let outcome = crate::run::run(
        plan, cluster, clock, manifests, observers, cancel, &mut sink,
    )
    .await;
    let (mut outcome, run_error) = match outcome {
        Ok(outcome) => (outcome, None),
        Err(e) => (Outcome::default(), Some(e)),
    };
    if let Some(e) = &run_error {
        outcome
            .execution_errors
            .push(format!("the run failed: {e}"));
    }
    let elapsed = outcome.ended.unwrap_or_else(|| clock.now()).since_anchor();
    let end = RunEnd {
        end: clock.wall(clock.now()).0,
        elapsed,
        execution_errors: outcome.execution_errors.clone(),
        cut_short: outcome.stopped.map(|stop| stop.describe().to_string()),
    };
    sink.finish_progress();
    if let Some(version) = outcome.frr_version.clone() {
        sink.recorder.cluster_mut().frr_version =
            vmbgp_reporters::measured::Measured::Observed(version);
    }
    let write_errors = sink.write_errors.clone();
    let results = sink
        .recorder
        .finish(&end, &plan.thresholds)
        .map_err(AppError::Results)?;
    writeln!(out, "{}", results.summary).map_err(AppError::Output)?;
    writeln!(
        out,
        "results: {}\nreport:  {}",
        results.dir.display(),
        results.report_path.display()
    )
    .map_err(AppError::Output)?;
    if !write_errors.is_empty() {
        return Err(AppError::ResultsIncomplete(write_errors.join("; ")));
    }
    if plan.indexing.local_indexing {
        // kube-burner writes it in the working directory; so do we, for tools that expect it there.
        let target =
            std::path::PathBuf::from(vmbgp_reporters::local::local_indexing_dir(&plan.uuid));
        let written = vmbgp_reporters::local::write_local_index(&results.dir, &target)
            .map_err(AppError::LocalIndexing)?;
        writeln!(
            out,
            "local indexing: {} ({} files)",
            target.display(),
            written.len()
        )
        .map_err(AppError::Output)?;
    }
    let code = match &run_error {
        // The cluster holds another run's objects: an environment problem, like the preflight's.
        Some(crate::run::RunError::AlreadyExists { .. }) if outcome.stopped.is_none() => {
            ExitCode::EnvironmentUnavailable
        }
        _ => run_exit_code(&outcome, run_error.is_some(), results.passed),
    };
    Ok((code, results.dir))
}

/// How a finished run maps onto the exit-code table: a signal, then a timeout (global or a bounded
/// wait), then a harness failure, then the thresholds.
fn run_exit_code(outcome: &Outcome, run_failed: bool, passed: bool) -> ExitCode {
    match (outcome.stopped, run_failed) {
        (Some(Stop::Interrupted), _) => ExitCode::Interrupted,
        (Some(Stop::TimedOut), _) => ExitCode::Timeout,
        (None, true) => ExitCode::Internal,
        (None, false) if outcome.wait_expired => ExitCode::Timeout,
        (None, false) if !passed => ExitCode::ThresholdsViolated,
        (None, false) => ExitCode::Ok,
    }
}

/// Builds the Elasticsearch/OpenSearch client (no network traffic yet).
fn es_client(server: &str, index: &str, tls: &EsTlsArgs) -> Result<EsClient, AppError> {
    let mut options = EsOptions::new(server, index);
    options.credentials = Credentials::from_env();
    options.insecure_skip_verify = tls.es_insecure_skip_verify;
    options.ca_file = tls.es_ca_file.clone();
    options.index_template = tls.es_index_template.clone();
    options.deadline = tls.es_timeout;
    EsClient::new(options).map_err(AppError::EsConfig)
}

/// Failed items `upload` lists one by one; the rest are counted.
const LISTED_FAILURES: usize = 10;

/// Uploads a results directory under one `--es-timeout` deadline (index check and `_bulk`);
/// exit 6 unless every document is in the index. The documents stay on disk either way.
async fn upload(
    dir: &std::path::Path,
    client: &EsClient,
    out: &mut (dyn Write + Send),
) -> Result<ExitCode, AppError> {
    let stay = |out: &mut (dyn Write + Send)| {
        writeln!(
            out,
            "indexing: the documents stay in {}; upload them later with `vmbgp-bench index`",
            dir.display()
        )
        .map_err(AppError::Output)
    };
    let outcome = match index_saved_results(dir, client).await {
        Ok(outcome) => outcome,
        Err(IndexError::Es(e)) => {
            writeln!(out, "indexing: {}", error_chain(&e)).map_err(AppError::Output)?;
            stay(out)?;
            return Ok(ExitCode::NotIndexed);
        }
        // The run just wrote this directory: a problem with it is the harness's.
        Err(e) => return Err(AppError::Upload(e)),
    };
    writeln!(
        out,
        "indexing: {} documents indexed, {} already present, {} failed ({} requests) into {}",
        outcome.indexed,
        outcome.already_indexed,
        outcome.failures.len(),
        outcome.requests,
        outcome.target
    )
    .map_err(AppError::Output)?;
    if let Some(gave_up) = &outcome.gave_up {
        writeln!(out, "indexing: {gave_up}").map_err(AppError::Output)?;
    }
    for failure in outcome.failures.iter().take(LISTED_FAILURES) {
        writeln!(
            out,
            "  not indexed: {} ({}): {}",
            failure.id, failure.metric_name, failure.reason
        )
        .map_err(AppError::Output)?;
    }
    let more = outcome.failures.len().saturating_sub(LISTED_FAILURES);
    if more > 0 {
        writeln!(out, "  ... and {more} more not indexed").map_err(AppError::Output)?;
    }
    if outcome.is_complete() {
        Ok(ExitCode::Ok)
    } else {
        stay(out)?;
        Ok(ExitCode::NotIndexed)
    }
}

/// `index DIR`: DIR is checked before anything is contacted (exit 2 when it is not a readable
/// results directory), then uploaded.
async fn index(args: &IndexArgs, out: &mut (dyn Write + Send)) -> Result<ExitCode, AppError> {
    load_results_dir(&args.dir).map_err(AppError::ResultsDir)?;
    let client = es_client(&args.es_server, &args.es_index, &args.tls)?;
    upload(&args.dir, &client, out).await
}

async fn compare(args: &CompareArgs, out: &mut (dyn Write + Send)) -> Result<ExitCode, AppError> {
    let tolerances = match &args.tolerances {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| AppError::Tolerances {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
            serde_saphyr::from_str::<Vec<Tolerance>>(&text).map_err(|e| AppError::Tolerances {
                path: path.display().to_string(),
                message: e.to_string(),
            })?
        }
        None => default_tolerances(),
    };
    let es = match (&args.es_server, &args.es_index) {
        (Some(server), Some(index)) => Some(es_client(server, index, &args.tls)?),
        (None, None) => None,
        _ => {
            return Err(AppError::EsFlagsApart);
        }
    };
    let baseline = RunSource::from_arg(&args.baseline);
    let current = RunSource::from_arg(&args.current);
    let comparison = compare_runs(&baseline, &current, &tolerances, es.as_ref(), args.force)
        .await
        .map_err(AppError::Compare)?;
    let text = if args.json {
        comparison.to_json()
    } else {
        comparison.to_table()
    };
    writeln!(out, "{text}").map_err(AppError::Output)?;
    Ok(if comparison.has_regression() {
        ExitCode::Regression
    } else {
        ExitCode::Ok
    })
}

async fn lab(command: LabCommand, out: &mut (dyn Write + Send)) -> Result<ExitCode, AppError> {
    match command {
        LabCommand::Up(args) => {
            let plan = plan_from_args(&args.plan)?;
            // Validate the lab's shape here, before a process is started.
            crate::lab_commands::lab_config(&plan, &args.lab, &args.dir.state_dir)?;
            // Resolved here, so a missing binary fails before any lab exists.
            let controller = args
                .host_routes
                .then(|| crate::lab_controller::locate(args.controller_bin.as_deref()))
                .transpose()?;
            let serve_args = serve_args(&args, controller.as_deref());
            crate::lab_commands::up_detached(&args.dir.state_dir, &serve_args, out).await?;
            Ok(ExitCode::Ok)
        }
        LabCommand::Serve(args) => {
            let plan = plan_from_args(&args.plan)?;
            let config = crate::lab_commands::lab_config(&plan, &args.lab, &args.dir.state_dir)?;
            let controller = args
                .host_routes
                .then(|| crate::lab_controller::locate(args.controller_bin.as_deref()))
                .transpose()?;
            crate::lab_commands::serve(config, &plan, controller.as_deref()).await?;
            Ok(ExitCode::Ok)
        }
        LabCommand::Status(args) => Ok(
            if crate::lab_commands::status(&args.dir.state_dir, out).await? {
                ExitCode::Ok
            } else {
                ExitCode::EnvironmentUnavailable
            },
        ),
        LabCommand::Down(args) => {
            crate::lab_commands::down(&args.dir.state_dir, out).await?;
            Ok(ExitCode::Ok)
        }
    }
}

/// The command line of the `lab serve` process `lab up` starts: the same lab and plan, and the
/// controller binary `lab up` found.
fn serve_args(args: &LabUpArgs, controller: Option<&std::path::Path>) -> Vec<String> {
    let mut out = vec![
        "lab".to_string(),
        "serve".to_string(),
        "--state-dir".to_string(),
        args.dir.state_dir.display().to_string(),
        "--profile".to_string(),
        args.plan.profile.clone(),
    ];
    out.extend(crate::lab_commands::lab_args_to_cli(&args.lab));
    if let Some(binary) = controller {
        out.push("--host-routes".to_string());
        out.push("--controller-bin".to_string());
        out.push(binary.display().to_string());
    }
    let plan = &args.plan;
    let pairs: [(&str, Option<String>); 8] = [
        ("--bgp-peer-ip", plan.bgp_peer_ip.clone()),
        ("--peer-asn", plan.peer_asn.map(|v| v.to_string())),
        ("--cluster-asn", plan.cluster_asn.map(|v| v.to_string())),
        ("--frr-namespace", plan.frr_namespace.clone()),
        ("--node-cidr", plan.node_cidr.clone()),
        ("--bmp-target", plan.bmp_target.clone()),
        (
            "--node-ips",
            plan.node_ips.as_ref().map(|ips| ips.join(",")),
        ),
        ("--uuid", plan.uuid.clone()),
    ];
    for (flag, value) in pairs {
        if let Some(value) = value {
            out.push(flag.to_string());
            out.push(value);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expired_bounded_wait_exits_5_even_when_thresholds_pass() {
        let expired = Outcome {
            wait_expired: true,
            ..Outcome::default()
        };
        assert_eq!(run_exit_code(&expired, false, true), ExitCode::Timeout);
        assert_eq!(run_exit_code(&expired, false, false), ExitCode::Timeout);
        let interrupted = Outcome {
            stopped: Some(Stop::Interrupted),
            wait_expired: true,
            ..Outcome::default()
        };
        assert_eq!(
            run_exit_code(&interrupted, false, false),
            ExitCode::Interrupted
        );
        assert_eq!(
            run_exit_code(&Outcome::default(), true, true),
            ExitCode::Internal
        );
        assert_eq!(
            run_exit_code(&Outcome::default(), false, false),
            ExitCode::ThresholdsViolated
        );
        assert_eq!(
            run_exit_code(&Outcome::default(), false, true),
            ExitCode::Ok
        );
    }
}
