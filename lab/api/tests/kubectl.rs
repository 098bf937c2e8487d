//! Conformance with `kubectl` (when installed): get, explain, apply (client-side, strict field validation),
//! server-side apply of YAML, label selectors and delete against a lab.

mod common;

use std::process::Command;

use vmbgp_lab_api::LabConfig;

fn kubectl(
    kubeconfig: &std::path::Path,
    args: &[&str],
    stdin: Option<&str>,
) -> (bool, String, String) {
    use std::io::Write;
    let mut cmd = Command::new("kubectl");
    cmd.arg("--kubeconfig").arg(kubeconfig).args(args);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("kubectl spawns");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("kubectl finishes");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const VM: &str = r#"
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata:
  name: kc-vm
  namespace: default
  labels:
    tool: kubectl
spec:
  runStrategy: Halted
  template:
    spec:
      domain:
        devices: {}
"#;

#[tokio::test]
async fn kubectl_get_apply_and_delete() {
    if Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_err()
    {
        panic!("prerequisite missing: kubectl");
    }
    let t = common::start(LabConfig {
        controllers: false,
        ..Default::default()
    })
    .await;
    let kc = t.kubeconfig.clone();
    let run = move |args: Vec<&'static str>, stdin: Option<&'static str>| {
        let kc = kc.clone();
        tokio::task::spawn_blocking(move || kubectl(&kc, &args, stdin))
    };
    let (ok, out, err) = run(vec!["get", "nodes", "-o", "name"], None)
        .await
        .expect("join");
    assert!(ok, "get nodes: {err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["node/node-1", "node/node-2", "node/node-3"]
    );
    let (ok, out, err) = run(vec!["apply", "-f", "-"], Some(VM)).await.expect("join");
    assert!(ok, "apply: {err}");
    assert!(out.contains("kc-vm"), "{out}");
    let (ok, _, err) = run(
        vec![
            "apply",
            "--server-side",
            "--field-manager",
            "vmbgp-test",
            "-f",
            "-",
        ],
        Some(VM),
    )
    .await
    .expect("join");
    assert!(ok, "server-side apply: {err}");
    let (ok, out, err) = run(
        vec![
            "get",
            "vm",
            "-l",
            "tool=kubectl",
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ],
        None,
    )
    .await
    .expect("join");
    assert!(ok, "get vm: {err}");
    assert_eq!(out.trim(), "kc-vm");
    let bad = VM.replace(
        "runStrategy: Halted",
        "runStrategy: Halted\n  bogusField: 1",
    );
    let bad: &'static str = Box::leak(bad.into_boxed_str());
    let (ok, _, err) = run(vec!["apply", "-f", "-"], Some(bad))
        .await
        .expect("join");
    assert!(!ok, "strict field validation rejects unknown fields");
    assert!(err.contains("bogusField"), "{err}");
    // explain reads the published OpenAPI v3 schemas (CRD and KubeVirt swagger).
    let (ok, out, err) = run(vec!["explain", "ipamclaims.spec.network"], None)
        .await
        .expect("join");
    assert!(ok, "explain ipamclaims: {err}");
    assert!(out.contains("FIELD: network <string>"), "{out}");
    let (ok, out, err) = run(vec!["explain", "vm.spec.runStrategy"], None)
        .await
        .expect("join");
    assert!(ok, "explain vm: {err}");
    assert!(out.contains("FIELD: runStrategy <string>"), "{out}");
    let (ok, out, err) = run(vec!["explain", "vm.metadata.labels"], None)
        .await
        .expect("join");
    assert!(ok, "explain vm.metadata: {err}");
    assert!(out.contains("labels <map[string]string>"), "{out}");
    let (ok, _, err) = run(vec!["delete", "vm", "kc-vm"], None)
        .await
        .expect("join");
    assert!(ok, "delete: {err}");
    let (ok, _, _) = run(vec!["get", "vm", "kc-vm"], None).await.expect("join");
    assert!(!ok, "deleted VM is gone");
    t.lab.stop().await.expect("stop");
}
