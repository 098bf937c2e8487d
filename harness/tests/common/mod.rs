//! Helpers the harness's integration tests share: running the real binary, and a kubeconfig for a
//! local API address.
#![allow(dead_code)] // each test crate uses a different subset

use std::io::Write;
use std::process::Output;

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
