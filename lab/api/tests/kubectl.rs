//! Conformance with `kubectl` (/usr/bin/kubectl, part of the machine image; the tests fail naming it when it is
//! missing): get, explain, apply (client-side, strict field validation), server-side apply of YAML, label
//! selectors and delete, and `kubectl get -o wide` of every served kind through server-side printing (Tables).

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

fn require_kubectl() {
    match Command::new("kubectl")
        .args(["version", "--client"])
        .output()
    {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "prerequisite missing: a working kubectl: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!("prerequisite missing: kubectl ({e})"),
    }
}

#[tokio::test]
async fn kubectl_get_apply_and_delete() {
    require_kubectl();
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

/// The columns `kubectl get -o wide` must print per kind (kube-apiserver's built-in printers for Node and
/// Namespace, the CRDs' additionalPrinterColumns: KubeVirt's crds.go, frr-k8s' and OVN-K's CRD files), and cells
/// of the sample object. A served kind not listed here is expected to print as a CRD without printer columns.
fn expected_columns(
    kind: &str,
) -> (
    &'static [&'static str],
    &'static [(&'static str, &'static str)],
) {
    match kind {
        "Namespace" => (&["NAME", "STATUS", "AGE"], &[("STATUS", "Active")]),
        "Node" => (
            &[
                "NAME",
                "STATUS",
                "ROLES",
                "AGE",
                "VERSION",
                "INTERNAL-IP",
                "EXTERNAL-IP",
                "OS-IMAGE",
                "KERNEL-VERSION",
                "CONTAINER-RUNTIME",
            ],
            &[
                ("STATUS", "Ready"),
                ("ROLES", "worker"),
                ("VERSION", vmbgp_lab_api::nodes::KUBE_VERSION),
                ("INTERNAL-IP", "198.18.0.1"),
                ("EXTERNAL-IP", "<none>"),
                ("CONTAINER-RUNTIME", "containerd://2.0.5"),
            ],
        ),
        "VirtualMachine" => (
            &["NAME", "AGE", "STATUS", "READY"],
            &[("STATUS", "Running"), ("READY", "True")],
        ),
        "VirtualMachineInstance" => (
            &[
                "NAME",
                "AGE",
                "PHASE",
                "IP",
                "NODENAME",
                "READY",
                "LIVE-MIGRATABLE",
                "PAUSED",
            ],
            &[
                ("PHASE", "Running"),
                ("IP", "198.19.7.10"),
                ("READY", "True"),
                ("LIVE-MIGRATABLE", "True"),
                // A missing value is a null cell, which kubectl leaves blank.
                ("PAUSED", ""),
            ],
        ),
        "VirtualMachineInstanceMigration" => (
            &["NAME", "PHASE", "VMI"],
            &[("PHASE", "Succeeded"), ("VMI", "sample-vm")],
        ),
        "RouteAdvertisements" => (&["NAME", "STATUS"], &[("STATUS", "Accepted")]),
        "BGPSessionState" => (
            &["NAME", "NODE", "PEER", "VRF", "BGP", "BFD"],
            &[
                ("NODE", "node-1"),
                ("PEER", "198.18.0.155"),
                ("VRF", ""),
                ("BGP", "Established"),
                ("BFD", "N/A"),
            ],
        ),
        _ => (&["NAME", "AGE"], &[]),
    }
}

/// Splits kubectl's aligned output into (header, cells) rows by the headers' start columns, so empty cells
/// and cells with spaces stay in place.
fn parse_table(out: &str) -> Vec<Vec<(String, String)>> {
    let mut lines = out.lines().filter(|l| !l.trim().is_empty());
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let header: Vec<char> = header.chars().collect();
    let mut starts = Vec::new();
    for (i, c) in header.iter().enumerate() {
        if !c.is_whitespace() && (i == 0 || header[i - 1].is_whitespace()) {
            starts.push(i);
        }
    }
    let names: Vec<String> = starts
        .iter()
        .enumerate()
        .map(|(n, &s)| {
            let end = starts.get(n + 1).copied().unwrap_or(header.len());
            header[s..end].iter().collect::<String>().trim().to_string()
        })
        .collect();
    lines
        .map(|line| {
            let chars: Vec<char> = line.chars().collect();
            starts
                .iter()
                .enumerate()
                .map(|(n, &s)| {
                    let end = starts
                        .get(n + 1)
                        .copied()
                        .unwrap_or(chars.len())
                        .min(chars.len());
                    let cell: String = chars
                        .get(s.min(end)..end)
                        .unwrap_or_default()
                        .iter()
                        .collect();
                    (names[n].clone(), cell.trim().to_string())
                })
                .collect()
        })
        .collect()
}

/// `kubectl get <kind> -o wide` of every kind the lab serves (its registry), against objects written by the
/// controllers and the harness's manifests: each must succeed, print the kind's printer columns (the priority-1
/// ones only with `-o wide`) and render the sample's cells.
#[tokio::test]
async fn kubectl_get_wide_prints_the_columns_of_every_served_kind() {
    require_kubectl();
    let t = common::start(LabConfig::default()).await;
    let samples = common::populate_every_kind(&t).await;
    let mut failures = Vec::new();
    for sample in &samples {
        let k = &sample.kind;
        let resource = k.qualified_plural();
        let (columns, cells) = expected_columns(&k.kind);
        for wide in [true, false] {
            let mut args = vec!["get".to_string(), resource.clone()];
            if wide {
                args.extend(["-o".to_string(), "wide".to_string()]);
            }
            if k.namespaced {
                args.push("--all-namespaces".to_string());
            }
            let kc = t.kubeconfig.clone();
            let (ok, out, err) = tokio::task::spawn_blocking(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                kubectl(&kc, &args, None)
            })
            .await
            .expect("join");
            let what = format!(
                "kubectl get {resource}{}",
                if wide { " -o wide" } else { "" }
            );
            if !ok {
                failures.push(format!("{what}: failed: {err}"));
                continue;
            }
            let mut want: Vec<&str> = columns.to_vec();
            if !wide {
                // The priority-1 columns (Node's and VMI's) only show with -o wide.
                let narrow: &[&str] = match k.kind.as_str() {
                    "Node" => &["NAME", "STATUS", "ROLES", "AGE", "VERSION"],
                    "VirtualMachineInstance" => {
                        &["NAME", "AGE", "PHASE", "IP", "NODENAME", "READY"]
                    }
                    _ => columns,
                };
                want = narrow.to_vec();
            }
            if k.namespaced {
                want.insert(0, "NAMESPACE");
            }
            let rows = parse_table(&out);
            let headers: Vec<&str> = rows
                .first()
                .map(|r| r.iter().map(|(h, _)| h.as_str()).collect())
                .unwrap_or_default();
            if headers != want {
                failures.push(format!(
                    "{what}: columns {headers:?}, want {want:?}:\n{out}"
                ));
                continue;
            }
            let Some(row) = rows.iter().find(|r| {
                r.iter().any(|(h, v)| h == "NAME" && *v == sample.name)
                    && sample
                        .namespace
                        .as_ref()
                        .is_none_or(|ns| r.iter().any(|(h, v)| h == "NAMESPACE" && v == ns))
            }) else {
                failures.push(format!("{what}: no row for {}:\n{out}", sample.name));
                continue;
            };
            for (column, value) in cells.iter().filter(|(c, _)| want.contains(c)) {
                let got = row
                    .iter()
                    .find(|(h, _)| h == column)
                    .map(|(_, v)| v.as_str());
                if got != Some(*value) {
                    failures.push(format!(
                        "{what}: {} column {column} is {got:?}, want {value:?}:\n{out}",
                        sample.name
                    ));
                }
            }
            for (h, v) in row {
                let must_render = h == "AGE"
                    || (k.kind == "Node" && matches!(h.as_str(), "OS-IMAGE" | "KERNEL-VERSION"))
                    || (k.kind == "VirtualMachineInstance" && h == "NODENAME");
                if must_render && (v.is_empty() || v.starts_with('<')) {
                    failures.push(format!(
                        "{what}: {} column {h} is {v:?}:\n{out}",
                        sample.name
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "kubectl ({}) cannot print the lab's objects:\n{}",
        kubectl_version(),
        failures.join("\n")
    );
    t.lab.stop().await.expect("stop");
}

fn kubectl_version() -> String {
    Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .unwrap_or_default()
}
