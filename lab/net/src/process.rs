//! Process identity from `/proc`: pid + start time + executable + a command-line marker, so a recorded
//! daemon is only ever signalled while it still is the process the lab started (never a reused pid).

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::state::{ProcessRecord, wait_until};

/// Who a running process is.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProcessIdentity {
    pub pid: i32,
    /// Field 22 of `/proc/<pid>/stat` (clock ticks since boot): differs for a reused pid.
    pub start_time: u64,
    /// Target of `/proc/<pid>/exe`.
    pub exe: PathBuf,
}

/// Reads the identity of `pid` if it exists, its command line contains `marker`, and it is not a zombie.
pub fn identify(pid: i32, marker: &str) -> Option<ProcessIdentity> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: parse after the last ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // after ')' field index 0 is field 3 (state); start time is field 22 → index 19.
    if fields.first() == Some(&"Z") {
        return None;
    }
    let start_time: u64 = fields.get(19)?.parse().ok()?;
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    if !cmdline.contains(marker) {
        return None;
    }
    let exe = fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    Some(ProcessIdentity {
        pid,
        start_time,
        exe,
    })
}

/// Whether the process described by `identity` is still running (same pid, start time and exe).
pub fn is_alive(identity: &ProcessIdentity, marker: &str) -> bool {
    identify(identity.pid, marker).is_some_and(|now| &now == identity)
}

/// Reads a pid file.
pub fn read_pidfile(path: &std::path::Path) -> Option<i32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The running process a record refers to: its recorded identity if still alive, else the pid file's
/// pid if that process carries the record's marker (daemon started but identity never recorded).
pub fn resolve(record: &ProcessRecord) -> Option<ProcessIdentity> {
    if let Some(identity) = &record.identity
        && is_alive(identity, &record.cmdline_marker)
    {
        return Some(identity.clone());
    }
    let pid = read_pidfile(&record.pidfile)?;
    // The marker (the router's own state directory) in the command line makes this our daemon.
    identify(pid, &record.cmdline_marker)
}

/// SIGTERM, wait up to `grace`, then SIGKILL; only while the identity still matches.
pub fn terminate(identity: &ProcessIdentity, grace: Duration) -> Result<(), nix::Error> {
    let pid = Pid::from_raw(identity.pid);
    let still_ours = || current_identity(identity.pid).is_some_and(|now| same(&now, identity));
    if !still_ours() {
        return Ok(());
    }
    kill(pid, Signal::SIGTERM)?;
    if wait_until(grace, || !still_ours()) {
        return Ok(());
    }
    if still_ours() {
        kill(pid, Signal::SIGKILL)?;
        wait_until(grace, || !still_ours());
    }
    Ok(())
}

/// Processes still starting as this record's daemon: every live process whose command line carries
/// `--vty_socket <marker>`, the router's own state directory, which only this lab's daemons (and the
/// `ip netns exec` about to become one) are given. A daemon started with `-d` writes its pid file only
/// after it forked, so a teardown in between finds no pid file; this finds it anyway. Selected by
/// that lab-unique marker, never by name.
pub fn starting(record: &ProcessRecord) -> Vec<ProcessIdentity> {
    let needle = format!("--vty_socket {} ", record.cmdline_marker);
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != std::process::id() as i32)
        .filter_map(|pid| identify(pid, &needle))
        .collect()
}

fn current_identity(pid: i32) -> Option<ProcessIdentity> {
    // The marker was already checked when the identity was taken; pid + start time + exe suffice.
    identify(pid, "")
}

fn same(a: &ProcessIdentity, b: &ProcessIdentity) -> bool {
    a.pid == b.pid && a.start_time == b.start_time && a.exe == b.exe
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifies_this_process_and_rejects_wrong_marker() {
        let me = std::process::id() as i32;
        let id = identify(me, "").expect("own process");
        assert_eq!(id.pid, me);
        assert!(id.start_time > 0);
        assert!(identify(me, "no-such-marker-in-cmdline-xyz").is_none());
        assert!(is_alive(&id, ""));
        let reused = ProcessIdentity {
            start_time: id.start_time + 1,
            ..id.clone()
        };
        assert!(!is_alive(&reused, ""));
    }

    #[test]
    fn a_daemon_without_pid_file_is_found_by_its_marker_alone() {
        let marker = format!("/tmp/vmbgp-process-test-{}", std::process::id());
        // Stands in for a daemon that forked but has not written its pid file: only its command
        // line names the router directory. It blocks in the shell's builtin `read` on a pipe
        // nobody writes: a `sleep` would be forked, and until it exec'd, that child too carried
        // the marker in its command line (a second match, seen once in CI).
        let mut child = std::process::Command::new("sh")
            .args(["-c", "read line", "--vty_socket", &marker, "x"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        let record = ProcessRecord {
            router: "node-1".into(),
            daemon: "zebra".into(),
            pidfile: PathBuf::from(format!("{marker}/zebra.pid")),
            cmdline_marker: marker.clone(),
            identity: None,
        };
        assert!(resolve(&record).is_none(), "no pid file, no identity");
        let mut found = Vec::new();
        wait_until(Duration::from_secs(2), || {
            found = starting(&record);
            !found.is_empty()
        });
        assert_eq!(
            found.iter().map(|i| i.pid).collect::<Vec<_>>(),
            [child.id() as i32]
        );
        // A shorter marker that the daemon's directory merely starts with (node-1 vs node-10) is
        // another router's.
        let other = ProcessRecord {
            cmdline_marker: marker[..marker.len() - 1].to_string(),
            ..record.clone()
        };
        assert!(starting(&other).is_empty());
        let waiter = std::thread::spawn(move || child.wait());
        terminate(&found[0], Duration::from_secs(2)).expect("terminate");
        assert!(!waiter.join().expect("join").expect("wait").success());
        assert!(starting(&record).is_empty());
    }

    #[test]
    fn terminates_a_child_by_identity() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        // Right after fork the child may not have exec'd `sleep` yet: wait for its command line.
        let mut id = None;
        wait_until(Duration::from_secs(2), || {
            id = identify(child.id() as i32, "sleep 30");
            id.is_some()
        });
        let id = id.expect("identify child");
        // Reap in the background so the child does not linger as a zombie.
        let waiter = std::thread::spawn(move || child.wait());
        terminate(&id, Duration::from_secs(2)).expect("terminate");
        let status = waiter.join().expect("join").expect("wait");
        assert!(!status.success());
    }
}
