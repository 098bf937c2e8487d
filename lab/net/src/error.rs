//! The crate's error type: one variant per failed operation, carrying what was being done to what.

use std::path::PathBuf;

use crate::vty::VtyError;

/// Everything the lab's network half can fail at.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The lab needs root (CAP_NET_ADMIN + CAP_SYS_ADMIN) to create network namespaces.
    #[error("the lab's network needs root (effective uid is {euid}); run as root")]
    NotRoot { euid: u32 },
    /// A required program is missing (FRR daemons, `ip` from iproute2, the `frr` user).
    #[error("prerequisite missing: {what} (install it with: {install_hint})")]
    PrerequisiteMissing {
        what: String,
        install_hint: &'static str,
    },
    /// The lab id would produce invalid or colliding names.
    #[error("invalid lab id {lab_id:?}: {reason}")]
    InvalidLabId { lab_id: String, reason: String },
    /// The requested topology is outside what the address plan holds.
    #[error("invalid topology: {reason}")]
    InvalidTopology { reason: String },
    /// A lab is already recorded in this state directory.
    #[error("a lab is already recorded in {state_file}; run teardown first")]
    AlreadyUp { state_file: PathBuf },
    /// Reading or writing a file or directory failed.
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The state file could not be parsed or serialised.
    #[error("state file {path} is not valid lab state")]
    StateFormat {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A command (iproute2, an FRR daemon start) could not be run or failed.
    #[error("command `{command}` failed: {detail}")]
    Command { command: String, detail: String },
    /// Entering a network namespace failed.
    #[error("entering network namespace {netns}")]
    Netns {
        netns: String,
        #[source]
        source: std::io::Error,
    },
    /// An FRR daemon did not become ready in time.
    #[error("FRR {daemon} in {router} did not become ready: {detail}")]
    DaemonStart {
        router: String,
        daemon: &'static str,
        detail: String,
    },
    /// Talking to a daemon's vty socket failed.
    #[error("vty of {daemon} in {router}")]
    Vty {
        router: String,
        daemon: &'static str,
        #[source]
        source: VtyError,
    },
    /// A daemon answered with output that is not the JSON expected.
    #[error("unexpected `{command}` output from {router}: {detail}")]
    UnexpectedOutput {
        router: String,
        command: String,
        detail: String,
    },
    /// The named router, node or VM address is not part of this lab.
    #[error("unknown {what}: {name}")]
    Unknown { what: &'static str, name: String },
    /// A dataplane change (VM address placement, route) failed.
    #[error("dataplane {op} for {address}: {detail}")]
    Dataplane {
        op: &'static str,
        address: String,
        detail: String,
    },
    /// Waiting for a condition timed out.
    #[error("timed out after {after_ms} ms waiting for {what}")]
    Timeout { what: String, after_ms: u128 },
    /// The lab API server (part 1) failed.
    #[cfg(feature = "api")]
    #[error("lab API: {op}")]
    LabApi {
        op: &'static str,
        #[source]
        source: vmbgp_lab_api::LabError,
    },
    /// Talking to the lab API through kube-rs failed.
    #[cfg(feature = "api")]
    #[error("kube client: {op}")]
    Kube {
        op: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The lab's background worker has stopped (the lab was shut down).
    #[error("the lab's {worker} worker has stopped")]
    WorkerGone { worker: &'static str },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whether this error means the environment cannot run the lab (exit code 4 in the harness's table).
    pub fn is_environment(&self) -> bool {
        matches!(
            self,
            Error::NotRoot { .. } | Error::PrerequisiteMissing { .. }
        )
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
