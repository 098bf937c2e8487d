//! Signals against `run --lab` (root, FRR): a SIGINT at any moment of the lab's bring-up ends the run
//! with 130 and leaves no namespace, daemon or state directory; a second signal quits at once and
//! prints the exact command that removes what is left, and that command does.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

mod common;
use common::{netns_of, processes_naming, require_lab_prerequisites};

/// Held by every test that starts `run --lab`. Each run first reclaims the labs of dead runs,
/// whoever's they are, so a run of one test could take down the lab another test killed on
/// purpose (before that test's own next run could show it reclaims it): they run one at a time.
static LAB_RUNS: Mutex<()> = Mutex::new(());

fn one_lab_run_at_a_time() -> MutexGuard<'static, ()> {
    LAB_RUNS.lock().unwrap_or_else(PoisonError::into_inner)
}

fn spawn_run(lab_id: &str, results: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_vmbgp-bench"))
        .args([
            "run",
            "--lab",
            "--lab-id",
            lab_id,
            "--iterations",
            "2",
            "--vm-count",
            "2",
            "--results-dir",
        ])
        .arg(results)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn vmbgp-bench")
}

fn interrupt(child: &Child) {
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "the run ended before the signal");
}

/// Waits (bounded) for the run to end.
fn finish(mut child: Child) -> Output {
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the run did not end within 120 s of the signal");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

fn assert_nothing_left(lab_id: &str, state_dir: &std::path::Path) {
    assert!(
        netns_of(lab_id).is_empty(),
        "netns left: {:?}",
        netns_of(lab_id)
    );
    assert!(!state_dir.exists(), "{} left", state_dir.display());
    let marker = state_dir.display().to_string();
    assert!(
        processes_naming(&marker).is_empty(),
        "processes left: {:?}",
        processes_naming(&marker)
    );
}

#[test]
#[ignore = "needs root, FRR and iproute2; ci/test.sh runs it (cargo test -- --include-ignored)"]
fn a_signal_during_lab_bring_up_leaks_nothing() {
    require_lab_prerequisites();
    let _serial = one_lab_run_at_a_time();
    // Early in bring-up (namespaces being made) and later (daemons starting, API coming up).
    for (n, delay_ms) in [300u64, 900, 1600].into_iter().enumerate() {
        let lab_id = format!("sigup{n}-{}", std::process::id());
        let results = tempfile::tempdir().expect("tempdir");
        let child = spawn_run(&lab_id, results.path());
        let state_dir = PathBuf::from(format!("/run/vmbgp-bench-run-{}", child.id()));
        std::thread::sleep(Duration::from_millis(delay_ms));
        interrupt(&child);
        let output = finish(child);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(130),
            "after {delay_ms} ms: {stderr}"
        );
        assert_nothing_left(&lab_id, &state_dir);
    }
}

#[test]
#[ignore = "needs root, FRR and iproute2; ci/test.sh runs it (cargo test -- --include-ignored)"]
fn a_second_signal_quits_at_once_and_names_the_command_that_cleans_up() {
    require_lab_prerequisites();
    let _serial = one_lab_run_at_a_time();
    let lab_id = format!("sig2-{}", std::process::id());
    let results = tempfile::tempdir().expect("tempdir");
    let child = spawn_run(&lab_id, results.path());
    let state_dir = PathBuf::from(format!("/run/vmbgp-bench-run-{}", child.id()));
    // Once the lab's namespaces exist there is something to leave behind.
    let deadline = Instant::now() + Duration::from_secs(30);
    while netns_of(&lab_id).is_empty() {
        assert!(Instant::now() < deadline, "the lab never came up");
        std::thread::sleep(Duration::from_millis(20));
    }
    interrupt(&child);
    std::thread::sleep(Duration::from_millis(30));
    interrupt(&child);
    let output = finish(child);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    let command = format!("vmbgp-bench lab down --state-dir {}", state_dir.display());
    assert!(stderr.contains(&command), "no cleanup command in: {stderr}");

    let down = Command::new(env!("CARGO_BIN_EXE_vmbgp-bench"))
        .args(["lab", "down", "--state-dir"])
        .arg(&state_dir)
        .output()
        .expect("lab down");
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    assert_nothing_left(&lab_id, &state_dir);
}

/// A `run --lab` killed outright (SIGKILL) leaves its lab; the next `run --lab` takes that lab down
/// itself, once it has checked that the process is gone, says so, and runs.
#[test]
#[ignore = "needs root, FRR and iproute2; ci/test.sh runs it (cargo test -- --include-ignored)"]
fn the_next_run_reclaims_the_lab_of_a_killed_run() {
    require_lab_prerequisites();
    let _serial = one_lab_run_at_a_time();
    let lab_id = format!("sigkill-{}", std::process::id());
    let results = tempfile::tempdir().expect("tempdir");
    let mut child = spawn_run(&lab_id, results.path());
    let state_dir = PathBuf::from(format!("/run/vmbgp-bench-run-{}", child.id()));
    let deadline = Instant::now() + Duration::from_secs(30);
    while netns_of(&lab_id).is_empty() || !state_dir.join("net-state.json").exists() {
        assert!(Instant::now() < deadline, "the lab never came up");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    assert!(
        !netns_of(&lab_id).is_empty(),
        "a killed run cannot clean up"
    );

    // Same lab id: without reclaiming, its namespaces would collide.
    let next = spawn_run(&lab_id, results.path());
    let output = finish(next);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("reclaimed the lab of run")
            && stderr.contains(&state_dir.display().to_string()),
        "{stderr}"
    );
    assert_nothing_left(&lab_id, &state_dir);
}

/// `lab down` where there is no lab says so, and succeeds (nothing to remove is not an error).
#[test]
#[ignore = "needs root, FRR and iproute2; ci/test.sh runs it (cargo test -- --include-ignored)"]
fn lab_down_without_a_lab_says_there_was_none() {
    require_lab_prerequisites();
    let dir = PathBuf::from(format!("/run/vmbgp-bench-no-lab-{}", std::process::id()));
    let output = Command::new(env!("CARGO_BIN_EXE_vmbgp-bench"))
        .args(["lab", "down", "--state-dir"])
        .arg(&dir)
        .output()
        .expect("lab down");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("no lab in") && !stdout.contains("removed"),
        "{stdout}"
    );
    assert!(!dir.exists());
}
