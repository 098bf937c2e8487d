//! The embedded lab from the command line. `lab up` starts a detached `lab serve` process (it owns
//! the in-process API server, the frr-k8s emulation and the FRR routers, and with `--host-routes`
//! the host-route controller's process) and waits until it is ready; `lab status` reports it;
//! `lab down` stops that process by its recorded PID and then runs the state-file teardown, which
//! also removes what a crashed `up` left. `run --lab` brings a lab up in-process, runs the plan
//! against it and takes it down, whatever happened.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use vmbgp_lab_net::faults::{BgpdRestart, BmpDrop, FaultPlan, LinkFlap};
use vmbgp_lab_net::frrk8s::controller::FrrK8sSettings;
use vmbgp_lab_net::network::LabNetConfig;
use vmbgp_lab_net::vmhost::VmPorts;
use vmbgp_lab_net::whole_lab::{IntegratedConfig, IntegratedLab};

use crate::cli::LabArgs;
use crate::config::Plan;
use crate::error_chain;
use crate::lab_controller::{CONTROLLER_LOG_FILE, CONTROLLER_PID_FILE, ControllerProcess};
use crate::workload::{Templates, render_external_frr};

/// Where `lab up` keeps its state when `--state-dir` is not given.
pub const DEFAULT_STATE_DIR: &str = "/run/vmbgp-bench-lab";
/// Written by `lab serve` once the lab is up: what `lab up` prints and `lab status` reads.
pub const READY_FILE: &str = "lab.json";
/// The `lab serve` process's PID and its start time (to tell it from a reused PID).
pub const SERVE_PID_FILE: &str = "serve.pid";
/// `lab serve`'s log.
pub const SERVE_LOG_FILE: &str = "serve.log";
/// How long `lab up` waits for the lab to be ready.
pub const UP_TIMEOUT: Duration = Duration::from_secs(90);
/// How long `lab down` waits for `lab serve` to stop after SIGTERM.
pub const DOWN_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LabError {
    #[error("the lab needs root (network namespaces, FRR daemons); run it with sudo")]
    NotRoot,
    #[error("a lab is already up in {0}; run `vmbgp-bench lab down --state-dir {0}` first")]
    AlreadyUp(String),
    #[error("no lab is up in {0}")]
    NotUp(String),
    #[error("the lab failed to come up: {0}")]
    Up(String),
    #[error("the lab could not be taken down completely: {0}")]
    Down(String),
    /// `--host-routes` without a controller binary to run.
    #[error("the host-route controller is missing: {0}")]
    ControllerMissing(String),
    /// The host-route controller did not start, get ready or stop cleanly.
    #[error("the host-route controller: {0}")]
    Controller(String),
    #[error("cannot render the external router's configuration")]
    Render(#[from] crate::workload::RenderError),
    /// Lab flags that do not fit together (a fault naming a router the lab does not have, ...).
    #[error(transparent)]
    Invalid(#[from] crate::config::ConfigError),
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> LabError + 'a {
    move |source| LabError::Io {
        op,
        path: path.display().to_string(),
        source,
    }
}

/// Fails unless the process runs as root.
pub fn require_root() -> Result<(), LabError> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        Err(LabError::NotRoot)
    }
}

/// FRR's daemons run as user `frr`, which must be able to reach the state directory: every
/// existing ancestor must be searchable by others.
pub fn check_state_dir(state_dir: &Path) -> Result<(), LabError> {
    use std::os::unix::fs::PermissionsExt;
    let absolute = std::path::absolute(state_dir).map_err(io("resolving", state_dir))?;
    for dir in absolute.ancestors().skip(1) {
        if let Ok(meta) = std::fs::metadata(dir)
            && meta.permissions().mode() & 0o001 == 0
        {
            return Err(LabError::Up(format!(
                "{} is not searchable by other users (mode {:o}), so the frr user cannot reach the lab's \
                 state directory {}; use another --state-dir or chmod o+x {}",
                dir.display(),
                meta.permissions().mode() & 0o7777,
                state_dir.display(),
                dir.display()
            )));
        }
    }
    Ok(())
}

/// A router and when (after the lab is up) a fault hits it: `node-1@5s`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterAt {
    pub router: String,
    pub after: Duration,
}

/// A link flap: `node-2@8s+2s` (down 8 s after the lab is up, for 2 s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkFlapAt {
    pub router: String,
    pub after: Duration,
    pub down: Duration,
}

/// A humantime duration from `min` to `max`, for clap's `value_parser`s.
pub(crate) fn parse_bounded(text: &str, min: Duration, max: Duration) -> Result<Duration, String> {
    let value = humantime::parse_duration(text.trim())
        .map_err(|e| format!("{e}; expected a duration such as 500ms, 5s or 1m"))?;
    if value < min || value > max {
        return Err(format!(
            "must be from {} to {}",
            humantime::format_duration(min),
            humantime::format_duration(max)
        ));
    }
    Ok(value)
}

/// `--lab-fault-api-error-rate-*`: a fraction of requests, 0 to 1.
pub fn parse_rate(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(rate) if (0.0..=1.0).contains(&rate) => Ok(rate),
        _ => Err("must be a fraction of requests from 0 to 1, e.g. 0.1".to_string()),
    }
}

/// `--lab-fault-api-latency`: 0 to 10s.
pub fn parse_api_latency(text: &str) -> Result<Duration, String> {
    parse_bounded(text, Duration::ZERO, Duration::from_secs(10))
}

/// `--lab-fault-watch-cut-every`: 100ms to 1h.
pub fn parse_watch_cut(text: &str) -> Result<Duration, String> {
    parse_bounded(text, Duration::from_millis(100), Duration::from_secs(3600))
}

/// An offset after the lab is up: 0 to 24h.
pub fn parse_offset(text: &str) -> Result<Duration, String> {
    parse_bounded(text, Duration::ZERO, Duration::from_secs(24 * 3600))
}

fn parse_router(text: &str) -> Result<String, String> {
    vmbgp_lab_net::Router::parse(text)
        .map(|r| r.name())
        .ok_or_else(|| format!("unknown router {text:?}: expected ext or node-N (N from 1)"))
}

/// `--lab-fault-bgpd-restart ROUTER@OFFSET`.
pub fn parse_router_at(text: &str) -> Result<RouterAt, String> {
    let (router, after) = text
        .split_once('@')
        .ok_or_else(|| "expected ROUTER@OFFSET, e.g. node-1@5s".to_string())?;
    Ok(RouterAt {
        router: parse_router(router)?,
        after: parse_offset(after)?,
    })
}

/// `--lab-fault-link-flap ROUTER@OFFSET+DOWN`.
pub fn parse_link_flap(text: &str) -> Result<LinkFlapAt, String> {
    let shape = "expected ROUTER@OFFSET+DOWN, e.g. node-2@8s+2s";
    let (router, times) = text.split_once('@').ok_or_else(|| shape.to_string())?;
    let (after, down) = times.split_once('+').ok_or_else(|| shape.to_string())?;
    Ok(LinkFlapAt {
        router: parse_router(router)?,
        after: parse_offset(after)?,
        down: parse_bounded(down, Duration::from_millis(100), Duration::from_secs(3600))?,
    })
}

/// Whether any `--lab-fault-*` flag is given.
pub fn has_faults(args: &LabArgs) -> bool {
    args.lab_fault_api_latency.is_some()
        || args.lab_fault_api_error_rate_500.is_some()
        || args.lab_fault_api_error_rate_429.is_some()
        || args.lab_fault_watch_cut_every.is_some()
        || args.lab_fault_gone_on_resume
        || !args.lab_fault_watch_expire.is_empty()
        || !args.lab_fault_bgpd_restart.is_empty()
        || !args.lab_fault_link_flap.is_empty()
        || !args.lab_fault_bmp_drop.is_empty()
}

/// Checks the lab flags together (each was checked alone when parsed): the error rates add up to
/// at most 1 and every router a fault names is in the lab. Every problem is reported at once.
pub fn check_lab_args(args: &LabArgs) -> Result<(), crate::config::ConfigError> {
    use crate::config::Problem;
    let mut problems = Vec::new();
    let (r500, r429) = (
        args.lab_fault_api_error_rate_500.unwrap_or(0.0),
        args.lab_fault_api_error_rate_429.unwrap_or(0.0),
    );
    if r500 + r429 > 1.0 {
        problems.push(Problem {
            field: "--lab-fault-api-error-rate-429".into(),
            value: r429.to_string(),
            message: format!(
                "with --lab-fault-api-error-rate-500 {r500}, more than every request would fail; the two add up to at most 1"
            ),
        });
    }
    let known = |router: &str| match vmbgp_lab_net::Router::parse(router) {
        Some(vmbgp_lab_net::Router::Node(n)) => n <= args.nodes,
        Some(vmbgp_lab_net::Router::Ext) => true,
        None => false,
    };
    let unknown = |flag: &str, value: String| Problem {
        field: flag.into(),
        value,
        message: format!(
            "no such router in this lab: it has ext and node-1..node-{} (--nodes {})",
            args.nodes, args.nodes
        ),
    };
    for r in &args.lab_fault_bgpd_restart {
        if !known(&r.router) {
            problems.push(unknown("--lab-fault-bgpd-restart", router_at_arg(r)));
        }
    }
    for f in &args.lab_fault_link_flap {
        if !known(&f.router) {
            problems.push(unknown("--lab-fault-link-flap", link_flap_arg(f)));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(crate::config::ConfigError::Invalid(problems))
    }
}

/// `run`'s lab flags: checked together (see [`check_lab_args`]), and the fault flags only with
/// `--lab` (they would otherwise silently do nothing to a real cluster).
pub fn check_run_lab_args(lab: bool, args: &LabArgs) -> Result<(), crate::config::ConfigError> {
    if !lab && has_faults(args) {
        let flag = lab_args_to_cli(args)
            .into_iter()
            .find(|a| a.starts_with("--lab-fault-"))
            .unwrap_or_else(|| "--lab-fault-*".to_string());
        return Err(crate::config::ConfigError::Invalid(vec![
            crate::config::Problem {
                field: flag,
                value: String::new(),
                message: "lab faults need --lab (or `lab up`): a real cluster cannot be made to fail this way".into(),
            },
        ]));
    }
    check_lab_args(args)
}

fn router_at_arg(r: &RouterAt) -> String {
    format!("{}@{}", r.router, humantime::format_duration(r.after))
}

fn link_flap_arg(f: &LinkFlapAt) -> String {
    format!(
        "{}@{}+{}",
        f.router,
        humantime::format_duration(f.after),
        humantime::format_duration(f.down)
    )
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The lab flags as a command line (what `lab up` passes to the `lab serve` it starts).
pub fn lab_args_to_cli(args: &LabArgs) -> Vec<String> {
    let mut out = vec![
        "--nodes".to_string(),
        args.nodes.to_string(),
        "--lab-id".to_string(),
        args.lab_id.clone(),
    ];
    let mut push = |flag: &str, value: String| {
        out.push(flag.to_string());
        out.push(value);
    };
    for vm in &args.silent_vms {
        push("--lab-silent-vm", vm.clone());
    }
    if let Some(d) = args.lab_fault_api_latency {
        push(
            "--lab-fault-api-latency",
            humantime::format_duration(d).to_string(),
        );
    }
    if let Some(r) = args.lab_fault_api_error_rate_500 {
        push("--lab-fault-api-error-rate-500", r.to_string());
    }
    if let Some(r) = args.lab_fault_api_error_rate_429 {
        push("--lab-fault-api-error-rate-429", r.to_string());
    }
    if let Some(d) = args.lab_fault_watch_cut_every {
        push(
            "--lab-fault-watch-cut-every",
            humantime::format_duration(d).to_string(),
        );
    }
    for d in &args.lab_fault_watch_expire {
        push(
            "--lab-fault-watch-expire",
            humantime::format_duration(*d).to_string(),
        );
    }
    for r in &args.lab_fault_bgpd_restart {
        push("--lab-fault-bgpd-restart", router_at_arg(r));
    }
    for f in &args.lab_fault_link_flap {
        push("--lab-fault-link-flap", link_flap_arg(f));
    }
    for d in &args.lab_fault_bmp_drop {
        push(
            "--lab-fault-bmp-drop",
            humantime::format_duration(*d).to_string(),
        );
    }
    if args.lab_fault_gone_on_resume {
        out.push("--lab-fault-gone-on-resume".to_string());
    }
    out
}

/// The lab configuration for a plan: the external router runs exactly what `frr-config` prints;
/// the `--lab-fault-*` flags become the API's fault knobs and the scheduled faults.
pub fn lab_config(
    plan: &Plan,
    shape: &LabArgs,
    state_dir: &Path,
) -> Result<IntegratedConfig, LabError> {
    check_lab_args(shape)?;
    check_state_dir(state_dir)?;
    let ext_config = render_external_frr(plan, &Templates::builtin()?)?;
    let mut net = LabNetConfig::new(&shape.lab_id, state_dir, shape.nodes, ext_config);
    net.silent_vms.clone_from(&shape.silent_vms);
    // A VM whose sockets must survive a live migration needs its own netns (lab/net/src/guest.rs).
    net.guest_vms = shape.guest_vms || plan.shape == crate::config::Shape::Migration;
    // VMs call the harness's egress endpoint from their own addresses, as the template's cloud-init does.
    net.egress_url = Some(format!("http://{}/egress", plan.probes.egress_endpoint));
    net.vm_ports = VmPorts {
        http: plan.vm_template.http_port,
        sink: plan.vm_template.sink_port,
    };
    let mut config = IntegratedConfig::new(net);
    config.frrk8s = FrrK8sSettings {
        namespace: plan.bgp.frr_namespace.clone(),
        ..FrrK8sSettings::default()
    };
    let api_faults = &mut config.api.faults;
    api_faults.latency = shape.lab_fault_api_latency;
    api_faults.error_rate_500 = shape.lab_fault_api_error_rate_500.unwrap_or(0.0);
    api_faults.error_rate_429 = shape.lab_fault_api_error_rate_429.unwrap_or(0.0);
    api_faults.watch_cut_every = shape.lab_fault_watch_cut_every;
    api_faults.gone_on_resume = shape.lab_fault_gone_on_resume;
    config.faults = FaultPlan {
        bgpd_restarts: shape
            .lab_fault_bgpd_restart
            .iter()
            .map(|r| BgpdRestart {
                router: r.router.clone(),
                after_ms: millis(r.after),
            })
            .collect(),
        link_flaps: shape
            .lab_fault_link_flap
            .iter()
            .map(|f| LinkFlap {
                router: f.router.clone(),
                after_ms: millis(f.after),
                down_ms: millis(f.down),
            })
            .collect(),
        bmp_drops: shape
            .lab_fault_bmp_drop
            .iter()
            .map(|d| BmpDrop {
                after_ms: millis(*d),
            })
            .collect(),
    };
    config
        .watch_expiries
        .clone_from(&shape.lab_fault_watch_expire);
    Ok(config)
}

/// What a running lab offers its users.
pub fn lab_info(lab: &IntegratedLab, plan: &Plan) -> serde_json::Value {
    let info = lab.net.info();
    json!({
        "kubeconfig": lab.kubeconfig(),
        "apiServer": lab.api.url(),
        "frrNamespace": plan.bgp.frr_namespace,
        "externalRouter": {
            "netns": info.ext_netns,
            "address": info.ext_address,
            "bgpdVty": info.ext_bgpd_vty,
            "bmpTarget": format!("{}:{}", plan.bgp.bmp.address, plan.bgp.bmp.port),
        },
        "nodes": info.nodes,
        "stateDir": info.state_dir,
    })
}

/// Brings an integrated lab up (in this process).
pub async fn up_in_process(config: IntegratedConfig) -> Result<IntegratedLab, LabError> {
    require_root()?;
    IntegratedLab::up(config)
        .await
        .map_err(|e| LabError::Up(error_chain(&e)))
}

/// Takes an in-process lab down; problems are reported, not hidden.
pub async fn down_in_process(lab: IntegratedLab) -> Result<(), LabError> {
    let report = lab
        .down()
        .await
        .map_err(|e| LabError::Down(error_chain(&e)))?;
    if report.problems.is_empty() {
        Ok(())
    } else {
        Err(LabError::Down(report.problems.join("; ")))
    }
}

/// `lab serve`: brings the lab up, starts the host-route controller when `controller` names its
/// binary, writes the ready file, serves until SIGTERM/SIGINT, then stops the controller (before
/// the API it watches goes away) and takes the lab down.
pub async fn serve(
    config: IntegratedConfig,
    plan: &Plan,
    controller: Option<&Path>,
) -> Result<(), LabError> {
    let state_dir = config.net.state_dir.clone();
    let lab = up_in_process(config).await?;
    let controller = match controller {
        None => None,
        Some(binary) => match start_controller(&lab, binary, &plan.bgp.frr_namespace).await {
            Ok(process) => Some(process),
            Err(e) => {
                let _ = down_in_process(lab).await;
                return Err(e);
            }
        },
    };
    let ready = state_dir.join(READY_FILE);
    let mut info = lab_info(&lab, plan);
    if let Some(process) = &controller {
        info["hostRouteController"] = process.info();
    }
    let text = serde_json::to_string_pretty(&info).unwrap_or_default();
    let written = std::fs::write(&ready, text).map_err(io("writing", &ready));
    if written.is_ok() {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .map_err(io("installing a SIGTERM handler for", &state_dir))?;
        tokio::select! {
            _ = terminate.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    let _ = std::fs::remove_file(&ready);
    let stopped = match controller {
        Some(process) => process.stop().await,
        None => Ok(()),
    };
    let down = down_in_process(lab).await;
    written.and(stopped).and(down)
}

/// Starts the host-route controller against a running lab: its kubeconfig, and the frr-k8s
/// namespace the lab's emulation reads (the plan's, see [`lab_config`]).
pub async fn start_controller(
    lab: &IntegratedLab,
    binary: &Path,
    frr_namespace: &str,
) -> Result<ControllerProcess, LabError> {
    let state_dir = lab.net.info().state_dir;
    ControllerProcess::start(binary, lab.kubeconfig(), frr_namespace, &state_dir).await
}

/// A process's start time (field 22 of /proc/PID/stat), to tell it from a later process with the same PID.
pub(crate) fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; fields after it follow the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// The recorded `lab serve` process, if it still runs.
fn live_serve_pid(state_dir: &Path) -> Option<u32> {
    live_recorded_pid(&state_dir.join(SERVE_PID_FILE))
}

/// The process a `PID START` file records, if it still runs (a reused PID has another start time).
pub(crate) fn live_recorded_pid(pid_file: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(pid_file).ok()?;
    let (pid, start) = text.trim().split_once(' ')?;
    let pid: u32 = pid.parse().ok()?;
    let start: u64 = start.parse().ok()?;
    (process_start_time(pid) == Some(start) && !is_zombie(pid)).then_some(pid)
}

/// Whether `pid` has exited but is not reaped yet (state `Z`): an orphan killed while its new
/// parent does not reap stays so, and it is gone for every purpose here.
fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let rest = stat.rsplit_once(')')?.1.to_string();
            rest.split_whitespace().next().map(|state| state == "Z")
        })
        .unwrap_or(false)
}

/// `lab up`: starts `lab serve` detached with the same plan arguments and waits until it is ready.
pub async fn up_detached(
    state_dir: &Path,
    serve_args: &[String],
    out: &mut (dyn Write + Send),
) -> Result<(), LabError> {
    require_root()?;
    if live_serve_pid(state_dir).is_some() || state_dir.join(READY_FILE).exists() {
        return Err(LabError::AlreadyUp(state_dir.display().to_string()));
    }
    std::fs::create_dir_all(state_dir).map_err(io("creating", state_dir))?;
    let log_path = state_dir.join(SERVE_LOG_FILE);
    let log = std::fs::File::create(&log_path).map_err(io("creating", &log_path))?;
    let log_err = log.try_clone().map_err(io("opening", &log_path))?;
    let exe =
        std::env::current_exe().map_err(io("locating the vmbgp-bench binary for", state_dir))?;
    let mut command = std::process::Command::new(exe);
    command
        .args(serve_args)
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(log_err);
    // Its own process group: a Ctrl-C in the terminal that ran `lab up` does not reach it.
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command
        .spawn()
        .map_err(io("starting lab serve for", state_dir))?;
    let pid = child.id();
    let start = process_start_time(pid).unwrap_or_default();
    let pid_path = state_dir.join(SERVE_PID_FILE);
    std::fs::write(&pid_path, format!("{pid} {start}\n")).map_err(io("writing", &pid_path))?;
    let ready = state_dir.join(READY_FILE);
    let deadline = tokio::time::Instant::now() + UP_TIMEOUT;
    loop {
        if ready.exists() {
            let info = std::fs::read_to_string(&ready).map_err(io("reading", &ready))?;
            writeln!(out, "lab up:\n{info}").map_err(io("writing to", Path::new("stdout")))?;
            writeln!(
                out,
                "run against it:\n  vmbgp-bench --kubeconfig {} --netns <externalRouter.netns> --frr-namespace <frrNamespace>\n\
                 take it down:\n  vmbgp-bench lab down --state-dir {}",
                state_dir.join("kubeconfig").display(),
                state_dir.display()
            )
            .map_err(io("writing to", Path::new("stdout")))?;
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            // lab serve removed what it created; the log is in the error, so nothing stays behind.
            let _ = std::fs::remove_file(&pid_path);
            let _ = std::fs::remove_file(&log_path);
            // A controller that failed to start was stopped by lab serve; its log tail is in lab serve's.
            let _ = std::fs::remove_file(state_dir.join(CONTROLLER_LOG_FILE));
            let _ = std::fs::remove_dir(state_dir);
            return Err(LabError::Up(format!(
                "lab serve exited ({status}) before it was ready:\n{log}"
            )));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(LabError::Up(format!(
                "not ready after {UP_TIMEOUT:?}; see {} and run `vmbgp-bench lab down --state-dir {}`",
                log_path.display(),
                state_dir.display()
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `lab status`.
pub async fn status(state_dir: &Path, out: &mut (dyn Write + Send)) -> Result<bool, LabError> {
    let ready = state_dir.join(READY_FILE);
    let serve = live_serve_pid(state_dir);
    if serve.is_none() && !state_dir.join(vmbgp_lab_net::state::STATE_FILE).exists() {
        return Err(LabError::NotUp(state_dir.display().to_string()));
    }
    let info = std::fs::read_to_string(&ready).unwrap_or_else(|_| "{}".to_string());
    let net = vmbgp_lab_net::network::status(state_dir)
        .await
        .map_err(|e| LabError::Down(error_chain(&e)))?;
    // A lab started with --host-routes records its controller, which must run too.
    let controller = state_dir
        .join(CONTROLLER_PID_FILE)
        .exists()
        .then(|| crate::lab_controller::live_recorded_pid(state_dir));
    let healthy = serve.is_some()
        && net.netns.values().all(|up| *up)
        && net.daemons.values().all(|up| *up)
        && controller.is_none_or(|pid| pid.is_some());
    let mut report = json!({
        "healthy": healthy,
        "serve": serve.map_or_else(|| json!("not running"), |pid| json!({"pid": pid})),
        "lab": serde_json::from_str::<serde_json::Value>(&info).unwrap_or_default(),
        "network": net,
    });
    if let Some(pid) = controller {
        report["hostRouteController"] =
            pid.map_or_else(|| json!("not running"), |pid| json!({"pid": pid}));
    }
    writeln!(
        out,
        "{}",
        serde_json::to_string_pretty(&report).unwrap_or_default()
    )
    .map_err(io("writing to", Path::new("stdout")))?;
    Ok(healthy)
}

/// `lab down`: stops `lab serve` by its recorded PID, then removes whatever the state file records.
pub async fn down(state_dir: &Path, out: &mut (dyn Write + Send)) -> Result<(), LabError> {
    require_root()?;
    if !state_dir.exists() {
        writeln!(
            out,
            "lab down: no lab in {}; nothing to remove",
            state_dir.display()
        )
        .map_err(io("writing to", Path::new("stdout")))?;
        return Ok(());
    }
    if let Some(pid) = live_serve_pid(state_dir) {
        let pid = nix::unistd::Pid::from_raw(pid as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = tokio::time::Instant::now() + DOWN_TIMEOUT;
        while live_serve_pid(state_dir).is_some() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if live_serve_pid(state_dir).is_some() {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
    }
    let mut problems = Vec::new();
    // `lab serve` stops its controller; one that outlived a killed `lab serve` is stopped here.
    let dir = state_dir.to_path_buf();
    match tokio::task::spawn_blocking(move || crate::lab_controller::stop_recorded(&dir)).await {
        Ok(problem) => problems.extend(problem),
        Err(e) => problems.push(e.to_string()),
    }
    if state_dir.join(vmbgp_lab_net::state::STATE_FILE).exists() {
        let dir = state_dir.to_path_buf();
        match tokio::task::spawn_blocking(move || vmbgp_lab_net::teardown(&dir)).await {
            Ok(Ok(report)) => problems.extend(report.problems),
            Ok(Err(e)) => problems.push(error_chain(&e)),
            Err(e) => problems.push(e.to_string()),
        }
    }
    for file in LAB_FILES {
        let path = state_dir.join(file);
        if path.exists()
            && let Err(e) = std::fs::remove_file(&path)
        {
            problems.push(format!("{}: {e}", path.display()));
        }
    }
    // The state directory goes too; anything else in it is not the lab's, so it is said, not deleted.
    remove_empty_state_dir(state_dir);
    if problems.is_empty() && state_dir.exists() {
        problems.push(format!(
            "{} still holds files the lab did not make",
            state_dir.display()
        ));
    }
    if problems.is_empty() {
        writeln!(out, "lab down: {} removed", state_dir.display())
            .map_err(io("writing to", Path::new("stdout")))?;
        Ok(())
    } else {
        Err(LabError::Down(problems.join("; ")))
    }
}

/// The files a lab leaves in its state directory besides what its state file records.
const LAB_FILES: [&str; 7] = [
    READY_FILE,
    SERVE_PID_FILE,
    SERVE_LOG_FILE,
    CONTROLLER_PID_FILE,
    CONTROLLER_LOG_FILE,
    API_GROUND_TRUTH_FILE,
    vmbgp_lab_net::whole_lab::NET_GROUND_TRUTH_FILE,
];

/// Whether `pid` is a live vmbgp-bench process (a reused pid running something else is not).
fn is_live_harness(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|cmd| String::from_utf8_lossy(&cmd).contains("vmbgp-bench"))
        .unwrap_or(false)
}

/// Takes down the labs of `run --lab` processes that died without doing it (SIGKILL): every
/// `/run/vmbgp-bench-run-<pid>` whose pid is no longer a vmbgp-bench process. Returns one line per
/// lab reclaimed or that could not be.
pub fn reclaim_dead_run_labs() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/run") else {
        return Vec::new();
    };
    let mut lines = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("vmbgp-bench-run-")
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() || is_live_harness(pid) {
            continue;
        }
        let dir = entry.path();
        let mut problems = Vec::new();
        problems.extend(crate::lab_controller::stop_recorded(&dir));
        match vmbgp_lab_net::teardown(&dir) {
            Ok(report) => problems.extend(report.problems),
            Err(e) => problems.push(error_chain(&e)),
        }
        for file in LAB_FILES {
            let path = dir.join(file);
            if path.exists()
                && let Err(e) = std::fs::remove_file(&path)
            {
                problems.push(format!("{}: {e}", path.display()));
            }
        }
        remove_empty_state_dir(&dir);
        lines.push(if problems.is_empty() && !dir.exists() {
            format!("reclaimed the lab of run {pid}, which died without taking it down ({})", dir.display())
        } else {
            format!(
                "the lab of dead run {pid} could not be reclaimed completely ({}): {}; remove it with: vmbgp-bench lab down --state-dir {}",
                dir.display(),
                if problems.is_empty() { "files remain".to_string() } else { problems.join("; ") },
                dir.display()
            )
        });
    }
    lines
}

/// Removes a lab state directory when it is empty. State directories have no shared parent of
/// the harness's, so concurrent labs never race over one.
pub fn remove_empty_state_dir(state_dir: &Path) {
    let _ = std::fs::remove_dir(state_dir);
}

/// Where `run --lab` keeps the lab's ground truth, inside the run's results directory.
pub const RESULTS_GROUND_TRUTH_DIR: &str = "lab";
/// The lab API's ground-truth log (in the state directory while the lab runs).
pub const API_GROUND_TRUTH_FILE: &str = "api-ground-truth.jsonl";

/// Copies the lab's ground-truth logs (network and API), and the host-route controller's log when
/// it ran, into `dest`, for checking the run's figures against what the lab really did. Returns
/// the files written.
pub fn save_ground_truth(state_dir: &Path, dest: &Path) -> Result<Vec<PathBuf>, LabError> {
    std::fs::create_dir_all(dest).map_err(io("creating", dest))?;
    let mut saved = Vec::new();
    for name in [
        vmbgp_lab_net::whole_lab::NET_GROUND_TRUTH_FILE,
        API_GROUND_TRUTH_FILE,
        CONTROLLER_LOG_FILE,
    ] {
        let from = state_dir.join(name);
        if !from.exists() {
            continue;
        }
        let to = dest.join(name);
        std::fs::copy(&from, &to).map_err(io("copying", &from))?;
        saved.push(to);
    }
    Ok(saved)
}

/// A state directory for `run --lab`, unique to this process.
pub fn run_state_dir() -> PathBuf {
    PathBuf::from(format!("/run/vmbgp-bench-run-{}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command, LabCommand};

    fn lab_up(args: &[&str]) -> crate::cli::LabUpArgs {
        let mut all = vec!["vmbgp-bench", "lab", "up"];
        all.extend_from_slice(args);
        match Cli::try_parse_from(all).expect("parses").command {
            Some(Command::Lab(LabCommand::Up(up))) => up,
            other => panic!("lab up expected, got {other:?}"),
        }
    }

    const ALL_FAULTS: &[&str] = &[
        "--nodes",
        "2",
        "--lab-id",
        "x",
        "--lab-silent-vm",
        "vmbgp-0/vm-0-1",
        "--lab-fault-api-latency",
        "5ms",
        "--lab-fault-api-error-rate-500",
        "0.1",
        "--lab-fault-api-error-rate-429",
        "0.05",
        "--lab-fault-watch-cut-every",
        "1s 500ms",
        "--lab-fault-gone-on-resume",
        "--lab-fault-watch-expire",
        "3s",
        "--lab-fault-watch-expire",
        "7s",
        "--lab-fault-bgpd-restart",
        "node-2@5s",
        "--lab-fault-bgpd-restart",
        "ext@1m",
        "--lab-fault-link-flap",
        "node-1@8s+2s",
        "--lab-fault-bmp-drop",
        "4s",
    ];

    /// `lab up` hands its lab flags to the `lab serve` it starts: nothing may get lost on the way.
    #[test]
    fn lab_flags_survive_the_trip_to_lab_serve() {
        let up = lab_up(ALL_FAULTS);
        let again = lab_up(
            &lab_args_to_cli(&up.lab)
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        );
        assert_eq!(format!("{:?}", up.lab), format!("{:?}", again.lab));
        assert!(has_faults(&up.lab));
        assert!(!has_faults(&lab_up(&[]).lab));
    }

    #[test]
    fn lab_flags_become_the_labs_fault_configuration() {
        let up = lab_up(ALL_FAULTS);
        let plan = crate::commands::plan_from_args(&up.plan).expect("plan");
        let dir = tempfile::tempdir().expect("tempdir");
        let config = lab_config(&plan, &up.lab, dir.path()).expect("config");
        let api = &config.api.faults;
        assert_eq!(api.latency, Some(Duration::from_millis(5)));
        assert_eq!((api.error_rate_500, api.error_rate_429), (0.1, 0.05));
        assert_eq!(api.watch_cut_every, Some(Duration::from_millis(1500)));
        assert!(api.gone_on_resume);
        assert_eq!(
            config.watch_expiries,
            vec![Duration::from_secs(3), Duration::from_secs(7)]
        );
        assert_eq!(
            config.faults,
            FaultPlan {
                bgpd_restarts: vec![
                    BgpdRestart {
                        router: "node-2".into(),
                        after_ms: 5000
                    },
                    BgpdRestart {
                        router: "ext".into(),
                        after_ms: 60_000
                    }
                ],
                link_flaps: vec![LinkFlap {
                    router: "node-1".into(),
                    after_ms: 8000,
                    down_ms: 2000
                }],
                bmp_drops: vec![BmpDrop { after_ms: 4000 }],
            }
        );
        assert_eq!(config.net.silent_vms, vec!["vmbgp-0/vm-0-1".to_string()]);
    }

    #[test]
    fn fault_values_are_checked_alone_and_together() {
        assert_eq!(parse_rate("0.25"), Ok(0.25));
        for bad in ["-0.1", "1.01", "NaN", "ten"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
        assert!(parse_watch_cut("99ms").is_err() && parse_watch_cut("100ms").is_ok());
        assert!(parse_offset("0s").is_ok() && parse_offset("25h").is_err());
        assert!(parse_router_at("node-0@1s").is_err(), "nodes count from 1");
        assert!(parse_router_at("node-1@soon").is_err());
        assert_eq!(
            parse_link_flap("ext@1s+100ms"),
            Ok(LinkFlapAt {
                router: "ext".into(),
                after: Duration::from_secs(1),
                down: Duration::from_millis(100)
            })
        );
        let both = lab_up(&[
            "--nodes",
            "1",
            "--lab-fault-api-error-rate-500",
            "0.6",
            "--lab-fault-api-error-rate-429",
            "0.5",
            "--lab-fault-bgpd-restart",
            "node-2@1s",
        ]);
        let crate::config::ConfigError::Invalid(problems) =
            check_lab_args(&both.lab).expect_err("refused")
        else {
            panic!("invalid input expected")
        };
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            ["--lab-fault-api-error-rate-429", "--lab-fault-bgpd-restart"],
            "every problem at once"
        );
        assert!(check_run_lab_args(false, &lab_up(&["--lab-fault-bmp-drop", "1s"]).lab).is_err());
        assert!(check_run_lab_args(true, &lab_up(&["--lab-fault-bmp-drop", "1s"]).lab).is_ok());
    }
}
