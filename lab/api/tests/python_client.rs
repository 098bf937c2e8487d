//! Conformance with the official Python client (PyPI `kubernetes`, whatever version is installed: CI upgrades it
//! to the newest): `tests/python/dynamic_client.py` (DynamicClient: discovery, create/get/list/watch/delete,
//! 404/422) and `tests/python/every_kind.py` (every served kind listed, read and watched through the typed models
//! or CustomObjectsApi and DynamicClient). Needs `python3` with `kubernetes`; fails with that message when either
//! is missing.

mod common;

use std::process::Command;

use serde_json::json;
use vmbgp_lab_api::LabConfig;

/// The installed client's version, or a panic naming the missing prerequisite.
fn python_client_version() -> String {
    match Command::new("python3")
        .args(["-c", "import kubernetes; print(kubernetes.__version__)"])
        .output()
    {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_string(),
        Ok(out) => panic!(
            "prerequisite missing: the Python package `kubernetes` (pip install kubernetes): {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!("prerequisite missing: python3 ({e})"),
    }
}

async fn run_script(name: &str, args: Vec<std::path::PathBuf>) -> std::process::Output {
    let script = format!("{}/tests/python/{name}", env!("CARGO_MANIFEST_DIR"));
    tokio::task::spawn_blocking(move || Command::new("python3").arg(script).args(args).output())
        .await
        .expect("join")
        .expect("python3 runs")
}

#[tokio::test]
async fn python_dynamic_client_create_list_watch_delete() {
    let version = python_client_version();
    let t = common::start(LabConfig {
        controllers: false,
        ..Default::default()
    })
    .await;
    let out = run_script("dynamic_client.py", vec![t.kubeconfig.clone()]).await;
    assert!(
        out.status.success(),
        "python client kubernetes=={version} failed:\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("python dynamic client: ok"));
    t.lab.stop().await.expect("stop");
}

/// Every kind of the lab's registry (so a newly served kind is covered without editing this test), with one
/// object of it, through the client's typed models where it has them; a field the client's models reject fails
/// the test with the client version, the kind, the call and the field path.
#[tokio::test]
async fn python_typed_client_lists_gets_and_watches_every_kind() {
    let version = python_client_version();
    let t = common::start(LabConfig::default()).await;
    let samples = common::populate_every_kind(&t).await;
    let kinds: Vec<_> = samples
        .iter()
        .map(|s| {
            json!({"group": s.kind.group, "version": s.kind.version, "kind": s.kind.kind,
                "plural": s.kind.plural, "namespaced": s.kind.namespaced,
                "status": s.kind.has_status_subresource, "namespace": s.namespace, "name": s.name})
        })
        .collect();
    let kinds_file = t.kubeconfig.with_file_name("kinds.json");
    std::fs::write(&kinds_file, serde_json::to_vec(&kinds).expect("json")).expect("kinds.json");
    let out = run_script("every_kind.py", vec![t.kubeconfig.clone(), kinds_file]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the lab's objects do not satisfy the Python client kubernetes=={version}:\n{}\nstderr:\n{}",
        stdout
            .lines()
            .filter(|l| l.starts_with("FAIL ") || l.starts_with("python client"))
            .collect::<Vec<_>>()
            .join("\n"),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{stdout}");
    // Nodes and Namespaces went through the typed models, not only dicts.
    for kind in ["Node", "Namespace"] {
        assert!(
            stdout.contains(&format!("{kind}: typed (CoreV1Api)")),
            "{kind} not checked with CoreV1Api:\n{stdout}"
        );
    }
    assert!(stdout.contains("every kind ok"), "{stdout}");
    t.lab.stop().await.expect("stop");
}
