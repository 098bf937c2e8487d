//! The host-route controller next to a lab, as its own process: the same `vmbgp-controller`
//! binary a cluster runs, found beside `vmbgp-bench` (or given by `--controller-bin`), started
//! against the lab's API with the lab's kubeconfig, waited for until its watch caches are listed
//! (`/readyz`), and stopped by its recorded PID.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::lab_commands::LabError;

/// The controller's binary name (cargo puts it next to `vmbgp-bench` in target/<profile>/).
pub const CONTROLLER_BIN: &str = "vmbgp-controller";
/// Its PID and start time, in the lab's state directory (as `serve.pid`).
pub const CONTROLLER_PID_FILE: &str = "controller.pid";
/// Its stdout and stderr, in the lab's state directory.
pub const CONTROLLER_LOG_FILE: &str = "controller.log";
/// The networks it serves besides those labelled `vmbgp.io/host-routes: "true"`: every CUDN a
/// run creates carries this label (`workloads/cudn.yaml.j2`).
pub const NETWORK_SELECTOR: &str = "vmbgp.io/network";
/// How long the controller gets to list every watch cache.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long it gets to exit after SIGTERM before it is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);

fn missing(message: String) -> LabError {
    LabError::ControllerMissing(message)
}

/// Whether `path` is a file someone may execute.
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The controller binary: `explicit` (`--controller-bin`) or `vmbgp-controller` in the directory of
/// the running executable (or its parent, for test executables in target/<profile>/deps/).
pub fn locate(explicit: Option<&Path>) -> Result<PathBuf, LabError> {
    if let Some(path) = explicit {
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        return if is_executable(&absolute) {
            Ok(absolute)
        } else {
            Err(missing(format!(
                "--controller-bin {}: no executable file there",
                path.display()
            )))
        };
    }
    let exe = std::env::current_exe()
        .map_err(|e| missing(format!("cannot locate the running executable: {e}")))?;
    let dir = exe.parent().unwrap_or(Path::new("/"));
    let mut candidates = vec![dir.join(CONTROLLER_BIN)];
    if dir.file_name().is_some_and(|n| n == "deps")
        && let Some(parent) = dir.parent()
    {
        candidates.push(parent.join(CONTROLLER_BIN));
    }
    candidates
        .iter()
        .find(|c| is_executable(c))
        .cloned()
        .ok_or_else(|| {
            missing(format!(
                "{CONTROLLER_BIN} is not next to {} (looked for {}); build it with \
                 `cargo build -p vmbgp-controller` or pass --controller-bin PATH",
                exe.display(),
                candidates
                    .iter()
                    .map(|c| c.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
}

/// A running controller process, started by [`ControllerProcess::start`].
#[derive(Debug)]
pub struct ControllerProcess {
    child: tokio::process::Child,
    pid: u32,
    binary: PathBuf,
    log: PathBuf,
    pid_file: PathBuf,
    metrics: String,
}

/// The last lines of a log, for error messages.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// The address the controller logged it serves /metrics on (it binds port 0).
fn logged_address(log: &str) -> Option<String> {
    log.lines()
        .filter(|l| l.contains("serving /metrics"))
        .find_map(|l| l.split("addr=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .map(str::to_string)
}

/// The status code of `GET path` on a loopback address, or `None` when there is no HTTP answer.
async fn http_status(addr: &str, path: &str) -> Option<u16> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut head = vec![0u8; 64];
        let n = stream.read(&mut head).await.ok()?;
        let head = String::from_utf8_lossy(&head[..n]).into_owned();
        head.split_whitespace().nth(1)?.parse().ok()
    };
    tokio::time::timeout(Duration::from_secs(2), exchange)
        .await
        .ok()
        .flatten()
}

impl ControllerProcess {
    /// Starts `binary run` against the lab whose kubeconfig is `kubeconfig`, writing FRRConfigurations
    /// to `frr_namespace`, with its PID and log in `state_dir`; returns once it is ready. It elects
    /// itself leader through a Lease in `frr_namespace`, as each replica on a cluster does.
    pub async fn start(
        binary: &Path,
        kubeconfig: &Path,
        frr_namespace: &str,
        state_dir: &Path,
    ) -> Result<Self, LabError> {
        let failed = |what: String| LabError::Controller(what);
        let log = state_dir.join(CONTROLLER_LOG_FILE);
        let out = std::fs::File::create(&log)
            .map_err(|e| failed(format!("creating {}: {e}", log.display())))?;
        let err = out
            .try_clone()
            .map_err(|e| failed(format!("opening {}: {e}", log.display())))?;
        let mut command = tokio::process::Command::new(binary);
        command
            .arg("run")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["--frr-namespace", frr_namespace])
            .args(["--network-selector", NETWORK_SELECTOR])
            // Leader election as on a cluster: the lab serves coordination.k8s.io Leases; the
            // Lease lives in the frr-k8s namespace, which the lab always has.
            .args(["--lease-namespace", frr_namespace])
            // Loopback only, on a free port: it logs the address, and several labs may run at once.
            .args(["--metrics-addr", "127.0.0.1:0"])
            // The address line is logged at info; a user's RUST_LOG must not hide it.
            .env("RUST_LOG", "info")
            .stdin(std::process::Stdio::null())
            .stdout(out)
            .stderr(err)
            // A backstop only (a panic between start and stop): stop() ends it with SIGTERM.
            .kill_on_drop(true);
        // Its own process group: a Ctrl-C meant for the harness does not reach it; the harness
        // stops it in order, before the lab's API goes away.
        command.process_group(0);
        let child = command
            .spawn()
            .map_err(|e| failed(format!("starting {}: {e}", binary.display())))?;
        let pid = child.id().unwrap_or_default();
        let pid_file = state_dir.join(CONTROLLER_PID_FILE);
        let start = crate::lab_commands::process_start_time(pid).unwrap_or_default();
        let mut process = ControllerProcess {
            child,
            pid,
            binary: binary.to_path_buf(),
            log,
            pid_file,
            metrics: String::new(),
        };
        if let Err(e) = std::fs::write(&process.pid_file, format!("{pid} {start}\n")) {
            let why = format!("writing {}: {e}", process.pid_file.display());
            let _ = process.stop().await;
            return Err(failed(why));
        }
        match process.wait_ready().await {
            Ok(addr) => {
                process.metrics = addr;
                Ok(process)
            }
            Err(why) => {
                let log = process.log.clone();
                let _ = process.stop().await;
                Err(failed(format!(
                    "{why}; its log ({}):\n{}",
                    log.display(),
                    log_tail(&log)
                )))
            }
        }
    }

    /// Waits until the controller serves `/readyz` with 200; returns its metrics address.
    async fn wait_ready(&mut self) -> Result<String, String> {
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "{CONTROLLER_BIN} exited ({status}) before it was ready"
                ));
            }
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            if let Some(addr) = logged_address(&text)
                && http_status(&addr, "/readyz").await == Some(200)
            {
                return Ok(addr);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "{CONTROLLER_BIN} was not ready (/readyz) after {READY_TIMEOUT:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// What `lab up` prints and `lab.json` holds about it.
    pub fn info(&self) -> serde_json::Value {
        json!({
            "pid": self.pid,
            "binary": self.binary,
            "log": self.log,
            "metrics": self.metrics_url(),
        })
    }

    /// Where it serves `/metrics` (a loopback address it chose).
    pub fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.metrics)
    }

    /// SIGTERM by its PID, then waits; killed when it has not exited after [`STOP_TIMEOUT`].
    /// An exit other than a clean one is an error (it exits 0 on SIGTERM).
    pub async fn stop(mut self) -> Result<(), LabError> {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.pid).unwrap_or(0));
        if pid.as_raw() > 0 {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        }
        let status = match tokio::time::timeout(STOP_TIMEOUT, self.child.wait()).await {
            Ok(status) => status.ok(),
            Err(_) => {
                let _ = self.child.kill().await;
                None
            }
        };
        let _ = std::fs::remove_file(&self.pid_file);
        match status {
            Some(s) if s.success() => Ok(()),
            Some(s) => Err(LabError::Controller(format!(
                "{CONTROLLER_BIN} (pid {}) exited with {s} on SIGTERM; see {}",
                self.pid,
                self.log.display()
            ))),
            None => Err(LabError::Controller(format!(
                "{CONTROLLER_BIN} (pid {}) did not exit within {STOP_TIMEOUT:?} of SIGTERM and was killed; see {}",
                self.pid,
                self.log.display()
            ))),
        }
    }
}

/// The recorded controller of the lab in `state_dir`, if it still runs (a reused PID is not it).
pub fn live_recorded_pid(state_dir: &Path) -> Option<u32> {
    crate::lab_commands::live_recorded_pid(&state_dir.join(CONTROLLER_PID_FILE))
}

/// Stops the recorded controller of a lab whose `lab serve` (or `run --lab`) died without doing it:
/// SIGTERM by its PID, then SIGKILL. Returns a problem when it still runs. Blocks (up to
/// [`STOP_TIMEOUT`]); teardown paths call it where blocking is fine.
pub fn stop_recorded(state_dir: &Path) -> Option<String> {
    let pid = live_recorded_pid(state_dir)?;
    let target = nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap_or(0));
    let _ = nix::sys::signal::kill(target, nix::sys::signal::Signal::SIGTERM);
    // Polls counted rather than a clock read: the harness reads time only through its clock module.
    let poll = Duration::from_millis(100);
    for _ in 0..STOP_TIMEOUT.as_millis() / poll.as_millis() {
        if live_recorded_pid(state_dir).is_none() {
            break;
        }
        std::thread::sleep(poll);
    }
    if live_recorded_pid(state_dir).is_some() {
        let _ = nix::sys::signal::kill(target, nix::sys::signal::Signal::SIGKILL);
        std::thread::sleep(Duration::from_millis(200));
    }
    match live_recorded_pid(state_dir) {
        Some(pid) => Some(format!(
            "{CONTROLLER_BIN} (pid {pid}) still runs after SIGKILL"
        )),
        None => {
            let _ = std::fs::remove_file(state_dir.join(CONTROLLER_PID_FILE));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metrics_address_is_read_from_the_log() {
        let log = "2026-12-03T18:00:00Z  INFO vmbgp_controller: serving /metrics, /healthz, /readyz addr=127.0.0.1:40123\n";
        assert_eq!(logged_address(log).as_deref(), Some("127.0.0.1:40123"));
        assert_eq!(logged_address("INFO other addr=1.2.3.4:5\n"), None);
        assert_eq!(logged_address("serving /metrics addr="), None);
        assert_eq!(logged_address(""), None);
    }

    #[test]
    fn a_missing_controller_binary_is_named_with_the_way_to_get_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let absent = dir.path().join("vmbgp-controller");
        let Err(LabError::ControllerMissing(message)) = locate(Some(&absent)) else {
            panic!("missing binary accepted");
        };
        assert!(
            message.contains("--controller-bin") && message.contains(&absent.display().to_string()),
            "{message}"
        );
        // A file that is not executable is not a binary either.
        std::fs::write(&absent, "#!/bin/sh\n").expect("write");
        assert!(locate(Some(&absent)).is_err());
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&absent, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        assert_eq!(locate(Some(&absent)).expect("found"), absent);
    }
}
