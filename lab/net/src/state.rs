//! The lab's state file: every netns, process and path is recorded *before* it is created, so
//! [`teardown`] removes everything, also after a crashed or failed `up`.
//!
//! Layout of a lab state directory (owned by the lab; other lab parts may add their own files):
//! ```text
//! <state_dir>/net-state.json        this file (JSON, rewritten atomically on every change)
//! <state_dir>/frr/<router>/         one per router: zebra.conf bgpd.conf, *.vty, zserv.api, *.pid, *.log
//! ```

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::process::{self, ProcessIdentity};

/// File name of the state file inside the state directory.
pub const STATE_FILE: &str = "net-state.json";
const STATE_VERSION: u32 = 1;

/// A daemon the lab starts: recorded with its pid file before the start, with its identity after.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProcessRecord {
    /// Router name (`ext`, `node-1`, ...).
    pub router: String,
    /// Daemon name (`zebra`, `bgpd`).
    pub daemon: String,
    /// The pid file the daemon writes (read at teardown when the identity was never recorded).
    pub pidfile: PathBuf,
    /// A path that appears in the daemon's command line; used to confirm a pid still is our daemon.
    pub cmdline_marker: String,
    /// Identity once the daemon was seen running.
    pub identity: Option<ProcessIdentity>,
}

/// Everything one lab created.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct LabState {
    pub version: u32,
    pub lab_id: String,
    /// Netns names, in creation order.
    pub netns: Vec<String>,
    /// Daemons, in start order (stopped in reverse).
    pub processes: Vec<ProcessRecord>,
    /// Files and directories, in creation order (removed in reverse; directories recursively).
    pub paths: Vec<PathBuf>,
    /// Whether the lab created the state directory itself (then teardown removes it when empty).
    pub created_state_dir: bool,
}

/// The state file of one lab, kept in memory and on disk in lockstep.
#[derive(Debug)]
pub struct StateStore {
    path: PathBuf,
    state: Mutex<LabState>,
}

impl StateStore {
    /// Creates a new state file; refuses when one already records resources.
    pub fn create(state_dir: &Path, lab_id: &str, created_state_dir: bool) -> Result<Self> {
        let path = state_dir.join(STATE_FILE);
        if path.exists() {
            let existing = read_state(&path)?;
            if !existing.netns.is_empty()
                || !existing.processes.is_empty()
                || !existing.paths.is_empty()
            {
                return Err(Error::AlreadyUp { state_file: path });
            }
        }
        let store = StateStore {
            path,
            state: Mutex::new(LabState {
                version: STATE_VERSION,
                lab_id: lab_id.to_string(),
                created_state_dir,
                ..LabState::default()
            }),
        };
        store.update(|_| ())?;
        Ok(store)
    }

    /// Path of the state file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A copy of the current state.
    pub fn snapshot(&self) -> LabState {
        self.lock().clone()
    }

    /// Records netns names that are about to be created.
    pub fn record_netns(&self, names: &[String]) -> Result<()> {
        self.update(|s| {
            for n in names {
                if !s.netns.contains(n) {
                    s.netns.push(n.clone());
                }
            }
        })
    }

    /// Records a path that is about to be created.
    pub fn record_path(&self, path: &Path) -> Result<()> {
        self.update(|s| {
            if !s.paths.iter().any(|p| p == path) {
                s.paths.push(path.to_path_buf());
            }
        })
    }

    /// Records a daemon that is about to be started (replacing an earlier record for the same daemon).
    pub fn record_process(&self, record: ProcessRecord) -> Result<()> {
        self.update(|s| {
            s.processes
                .retain(|p| !(p.router == record.router && p.daemon == record.daemon));
            s.processes.push(record);
        })
    }

    /// Records the identity of a started daemon.
    pub fn record_identity(
        &self,
        router: &str,
        daemon: &str,
        identity: Option<ProcessIdentity>,
    ) -> Result<()> {
        self.update(|s| {
            if let Some(p) = s
                .processes
                .iter_mut()
                .find(|p| p.router == router && p.daemon == daemon)
            {
                p.identity = identity;
            }
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LabState> {
        // A poisoned lock only means another thread panicked while holding it; the state is still
        // the last fully written one, so keep using it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update(&self, change: impl FnOnce(&mut LabState)) -> Result<()> {
        let mut state = self.lock();
        change(&mut state);
        write_state(&self.path, &state)
    }
}

fn write_state(path: &Path, state: &LabState) -> Result<()> {
    let text = serde_json::to_vec_pretty(state).map_err(|source| Error::StateFormat {
        path: path.to_path_buf(),
        source,
    })?;
    let tmp = path.with_extension("json.tmp");
    fs::write(&tmp, text).map_err(|e| Error::io("writing", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| Error::io("renaming into place", path, e))
}

/// Reads a state file.
pub fn read_state(path: &Path) -> Result<LabState> {
    let text = fs::read(path).map_err(|e| Error::io("reading", path, e))?;
    serde_json::from_slice(&text).map_err(|source| Error::StateFormat {
        path: path.to_path_buf(),
        source,
    })
}

/// What [`teardown`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct TeardownReport {
    /// Daemons stopped, as `router/daemon pid`.
    pub stopped: Vec<String>,
    /// Netns deleted.
    pub netns_deleted: Vec<String>,
    /// Paths removed.
    pub paths_removed: Vec<PathBuf>,
    /// Things that could not be removed, with the reason (teardown carries on past them).
    pub problems: Vec<String>,
}

/// How long a daemon gets to exit after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(3);
/// How often teardown looks again for a daemon that was starting (each fork shows a new pid).
const STARTING_ROUNDS: usize = 5;

/// Removes everything recorded in `<state_dir>/net-state.json`: stops recorded daemons (by pid, after
/// checking start time and command line, so a reused pid is never killed), deletes the netns, removes
/// recorded paths and finally the state file. Works after a crashed or half-finished `up`. Synchronous,
/// so it can run from `Drop` and from a CLI without a runtime. A missing state file means nothing to do.
pub fn teardown(state_dir: &Path) -> Result<TeardownReport> {
    let path = state_dir.join(STATE_FILE);
    let mut report = TeardownReport::default();
    if !path.exists() {
        return Ok(report);
    }
    let state = read_state(&path)?;

    for record in state.processes.iter().rev() {
        let mut stop = |identity: &ProcessIdentity| match process::terminate(identity, STOP_GRACE) {
            Ok(()) => report.stopped.push(format!(
                "{}/{} {}",
                record.router, record.daemon, identity.pid
            )),
            Err(e) => report.problems.push(format!(
                "stopping {}/{} pid {}: {e}",
                record.router, record.daemon, identity.pid
            )),
        };
        if let Some(identity) = process::resolve(record) {
            stop(&identity);
        }
        // A daemon caught while starting (its pid file not written yet, or forking as we look):
        // found by the marker only this lab's daemons carry, until none is left.
        for _ in 0..STARTING_ROUNDS {
            let starting = process::starting(record);
            if starting.is_empty() {
                break;
            }
            starting.iter().for_each(&mut stop);
        }
    }

    let existing = existing_netns();
    let to_delete: Vec<&String> = state
        .netns
        .iter()
        .rev()
        .filter(|n| existing.contains(*n))
        .collect();
    if !to_delete.is_empty() {
        let batch: String = to_delete
            .iter()
            .map(|n| format!("netns del {n}\n"))
            .collect();
        match crate::cmd::run_ip_batch_sync(None, &batch) {
            Ok(()) => {}
            Err(e) => report.problems.push(format!("deleting netns: {e}")),
        }
        let after = existing_netns();
        for n in to_delete {
            if after.contains(n) {
                report.problems.push(format!("netns {n} still exists"));
            } else {
                report.netns_deleted.push(n.clone());
            }
        }
    }

    for p in state.paths.iter().rev() {
        let result = match fs::symlink_metadata(p) {
            Err(_) => continue,
            Ok(m) if m.is_dir() => fs::remove_dir_all(p),
            Ok(_) => fs::remove_file(p),
        };
        match result {
            Ok(()) => report.paths_removed.push(p.clone()),
            Err(e) => report
                .problems
                .push(format!("removing {}: {e}", p.display())),
        }
    }

    if report.problems.is_empty() {
        fs::remove_file(&path).map_err(|e| Error::io("removing", &path, e))?;
        report.paths_removed.push(path);
        if state.created_state_dir && fs::remove_dir(state_dir).is_ok() {
            report.paths_removed.push(state_dir.to_path_buf());
        }
    }
    Ok(report)
}

/// The netns names present under `/run/netns`.
pub fn existing_netns() -> Vec<String> {
    let Ok(entries) = fs::read_dir("/run/netns") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect()
}

/// Waits until `check` holds or `timeout` passes (a bounded poll for teardown and tests).
pub(crate) fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("vmbgp-labnet-state-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create temp dir");
        dir
    }

    #[test]
    fn records_before_creation_and_tears_down_files() {
        let dir = temp_dir("files");
        let store = StateStore::create(&dir, "t", true).expect("create store");
        let sub = dir.join("frr");
        store.record_path(&sub).expect("record");
        fs::create_dir_all(sub.join("ext")).expect("mkdir");
        fs::write(sub.join("ext/bgpd.conf"), "x").expect("write");
        // A second lab in the same directory is refused while the first is recorded.
        assert!(matches!(
            StateStore::create(&dir, "t", true),
            Err(Error::AlreadyUp { .. })
        ));
        let on_disk = read_state(store.path()).expect("read");
        assert_eq!(on_disk.paths, vec![sub.clone()]);
        let report = teardown(&dir).expect("teardown");
        assert!(report.problems.is_empty(), "{report:?}");
        assert!(!dir.exists(), "state dir created by the lab is removed");
    }

    #[test]
    fn teardown_without_state_file_is_a_no_op() {
        let dir = temp_dir("empty");
        let report = teardown(&dir).expect("teardown");
        assert_eq!(report, TeardownReport::default());
        fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn a_recorded_process_that_never_started_is_skipped() {
        let dir = temp_dir("proc");
        let store = StateStore::create(&dir, "t", true).expect("create store");
        store
            .record_process(ProcessRecord {
                router: "ext".into(),
                daemon: "bgpd".into(),
                pidfile: dir.join("missing.pid"),
                cmdline_marker: dir.display().to_string(),
                identity: None,
            })
            .expect("record");
        let report = teardown(&dir).expect("teardown");
        assert!(report.stopped.is_empty());
        assert!(report.problems.is_empty(), "{report:?}");
    }
}
