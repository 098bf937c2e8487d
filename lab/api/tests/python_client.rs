//! Conformance with the official Python client: runs `tests/python/dynamic_client.py` (kubernetes
//! DynamicClient: discovery, create/get/list/watch/delete, 404/422) against a lab. Needs `python3` with the
//! PyPI package `kubernetes` (`pip install kubernetes`); fails with that message when it is missing.

mod common;

use std::process::Command;

use vmbgp_lab_api::LabConfig;

#[tokio::test]
async fn python_dynamic_client_create_list_watch_delete() {
    let probe = Command::new("python3")
        .args(["-c", "import kubernetes"])
        .output();
    match probe {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "prerequisite missing: the Python package `kubernetes` (pip install kubernetes): {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!("prerequisite missing: python3 ({e})"),
    }
    let t = common::start(LabConfig {
        controllers: false,
        ..Default::default()
    })
    .await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/dynamic_client.py"
    );
    let kubeconfig = t.kubeconfig.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(script)
            .arg(&kubeconfig)
            .output()
    })
    .await
    .expect("join")
    .expect("python3 runs");
    assert!(
        out.status.success(),
        "python client failed:\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("python dynamic client: ok"));
    t.lab.stop().await.expect("stop");
}
