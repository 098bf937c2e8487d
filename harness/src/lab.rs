//! The embedded lab from the command line. `lab up` starts a detached `lab serve` process (it owns
//! the in-process API server, the frr-k8s emulation and the FRR routers) and waits until it is
//! ready; `lab status` reports it; `lab down` stops that process by its recorded PID and then runs
//! the state-file teardown, which also removes what a crashed `up` left. `run --lab` brings a lab
//! up in-process, runs the plan against it and takes it down, whatever happened.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use vmbgp_lab_net::frrk8s::controller::FrrK8sSettings;
use vmbgp_lab_net::integrated::{IntegratedConfig, IntegratedLab};
use vmbgp_lab_net::lab::LabNetConfig;
use vmbgp_lab_net::vmhost::VmPorts;

use crate::cli::LabArgs;
use crate::config::Plan;
use crate::error_chain;
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
    #[error("cannot render the external router's configuration")]
    Render(#[from] crate::workload::RenderError),
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

/// The lab configuration for a plan: the external router runs exactly what `frr-config` prints.
pub fn lab_config(
    plan: &Plan,
    shape: &LabArgs,
    state_dir: &Path,
) -> Result<IntegratedConfig, LabError> {
    check_state_dir(state_dir)?;
    let ext_config = render_external_frr(plan, &Templates::builtin()?)?;
    let mut net = LabNetConfig::new(&shape.lab_id, state_dir, shape.nodes, ext_config);
    net.silent_vms.clone_from(&shape.silent_vms);
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

/// `lab serve`: brings the lab up, writes the ready file, serves until SIGTERM/SIGINT, takes it down.
pub async fn serve(config: IntegratedConfig, plan: &Plan) -> Result<(), LabError> {
    let state_dir = config.net.state_dir.clone();
    let lab = up_in_process(config).await?;
    let ready = state_dir.join(READY_FILE);
    let text = serde_json::to_string_pretty(&lab_info(&lab, plan)).unwrap_or_default();
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
    let down = down_in_process(lab).await;
    written.and(down)
}

/// A process's start time (field 22 of /proc/PID/stat), to tell it from a later process with the same PID.
fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; fields after it follow the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// The recorded `lab serve` process, if it still runs.
fn live_serve_pid(state_dir: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(state_dir.join(SERVE_PID_FILE)).ok()?;
    let (pid, start) = text.trim().split_once(' ')?;
    let pid: u32 = pid.parse().ok()?;
    let start: u64 = start.parse().ok()?;
    (process_start_time(pid) == Some(start)).then_some(pid)
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
    let net = vmbgp_lab_net::lab::status(state_dir)
        .await
        .map_err(|e| LabError::Down(error_chain(&e)))?;
    let healthy =
        serve.is_some() && net.netns.values().all(|up| *up) && net.daemons.values().all(|up| *up);
    let report = json!({
        "healthy": healthy,
        "serve": serve.map_or_else(|| json!("not running"), |pid| json!({"pid": pid})),
        "lab": serde_json::from_str::<serde_json::Value>(&info).unwrap_or_default(),
        "network": net,
    });
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
const LAB_FILES: [&str; 5] = [
    READY_FILE,
    SERVE_PID_FILE,
    SERVE_LOG_FILE,
    API_GROUND_TRUTH_FILE,
    vmbgp_lab_net::integrated::NET_GROUND_TRUTH_FILE,
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

/// Copies the lab's ground-truth logs (network and API) into `dest`, for checking the run's
/// figures against what the lab really did. Returns the files written.
pub fn save_ground_truth(state_dir: &Path, dest: &Path) -> Result<Vec<PathBuf>, LabError> {
    std::fs::create_dir_all(dest).map_err(io("creating", dest))?;
    let mut saved = Vec::new();
    for name in [
        vmbgp_lab_net::integrated::NET_GROUND_TRUTH_FILE,
        API_GROUND_TRUTH_FILE,
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
