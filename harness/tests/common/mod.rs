//! Helpers the harness's integration tests share: running the real binary, and a kubeconfig for a
//! local API address.
#![allow(dead_code)] // each test crate uses a different subset

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

/// Exit code, stdout and stderr of one run of the binary.
pub type Outcome = (Option<i32>, String, String);

fn outcome(output: Output) -> Outcome {
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Runs `vmbgp-bench` with `args` without blocking the runtime (tests that serve the lab in-process).
pub async fn bench<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Outcome {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_vmbgp-bench"))
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .expect("run binary");
    outcome(output)
}

/// Runs `vmbgp-bench` with `args`, blocking.
pub fn bench_blocking<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Outcome {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_vmbgp-bench"))
        .args(args)
        .output()
        .expect("run binary");
    outcome(output)
}

/// A kubeconfig file whose only cluster is `http://127.0.0.1:PORT`.
pub fn kubeconfig_for(port: u16) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("tempfile");
    write!(
        file,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: local\n  cluster:\n    server: http://127.0.0.1:{port}\n\
         contexts:\n- name: local\n  context:\n    cluster: local\ncurrent-context: local\n"
    )
    .expect("write kubeconfig");
    file
}

/// The network namespaces of one lab.
pub fn netns_of(lab_id: &str) -> Vec<String> {
    let output = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.contains(&format!("-{lab_id}-")))
        .map(str::to_string)
        .collect()
}

/// The documents of one kind in a results directory (`prefix`: the file name's start).
pub fn documents(dir: &Path, prefix: &str) -> Vec<Value> {
    let file = std::fs::read_dir(dir)
        .expect("results")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix))
        })
        .unwrap_or_else(|| panic!("no {prefix} file in {}", dir.display()));
    let text = std::fs::read_to_string(file).expect("read");
    serde_json::from_str::<Value>(&text)
        .expect("json")
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Fails with what is missing unless the full lab can run here (root, FRR).
pub fn require_lab_prerequisites() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the lab tests need root (network namespaces, FRR); ci/test.sh runs as root"
    );
    assert!(
        Path::new("/usr/lib/frr/bgpd").exists(),
        "FRR is missing: apt-get install frr (ci/test.sh installs it)"
    );
}
