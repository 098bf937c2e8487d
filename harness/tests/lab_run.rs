//! The real binary runs plans against the in-process lab API server (simulated controllers, no
//! FRR): every VM's lifecycle is measured, results are written, exit codes follow the table, and
//! the run leaves no object behind.

use std::path::Path;

mod common;
use std::time::Duration;

use kube::api::{Api, DynamicObject, ListParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::Value;
use vmbgp_lab_api::{Lab, LabConfig};

const PROFILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/lifecycle-only.yaml"
);

async fn start_lab() -> (Lab, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let lab = Lab::start(LabConfig {
        frr_namespace: "openshift-frr-k8s".into(),
        ..LabConfig::default()
    })
    .await
    .expect("lab starts");
    lab.write_kubeconfig(&dir.path().join("kubeconfig"))
        .expect("kubeconfig");
    (lab, dir)
}

async fn vmbgp_bench(dir: &Path, args: &[&str]) -> common::Outcome {
    let mut all: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
    all.extend(["--kubeconfig".into(), dir.join("kubeconfig").into()]);
    all.extend(["--results-dir".into(), dir.join("results").into()]);
    // The in-process lab has no routers: nothing to observe, and no route to probe VMs over.
    all.extend(["--observe-bgp", "false", "--probe-vms", "false"].map(Into::into));
    common::bench(&all).await
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("json")
}

/// Objects still carrying the run's label, over every kind the harness creates.
async fn leftovers(dir: &Path, uuid: &str) -> Vec<String> {
    // The kubeconfig the lab wrote carries its CA and bearer token.
    let kc = kube::config::Kubeconfig::read_from(dir.join("kubeconfig")).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("config");
    let client = kube::Client::try_from(config).expect("client");
    let kinds = [
        ("", "v1", "Namespace", "namespaces"),
        (
            "k8s.ovn.org",
            "v1",
            "ClusterUserDefinedNetwork",
            "clusteruserdefinednetworks",
        ),
        (
            "k8s.ovn.org",
            "v1",
            "RouteAdvertisements",
            "routeadvertisements",
        ),
        (
            "frrk8s.metallb.io",
            "v1beta1",
            "FRRConfiguration",
            "frrconfigurations",
        ),
        ("kubevirt.io", "v1", "VirtualMachine", "virtualmachines"),
        (
            "kubevirt.io",
            "v1",
            "VirtualMachineInstance",
            "virtualmachineinstances",
        ),
    ];
    let mut left = Vec::new();
    for (group, version, kind, plural) in kinds {
        let ar =
            ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
        let list = api
            .list(&ListParams::default().labels(&format!("vmbgp.io/uuid={uuid}")))
            .await
            .expect("list");
        left.extend(
            list.items
                .iter()
                .map(|o| format!("{kind} {}", o.metadata.name.clone().unwrap_or_default())),
        );
    }
    left
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_on_the_lab_measures_every_vm_lifecycle_and_cleans_up() {
    let (lab, dir) = start_lab().await;
    let uuid = "lab-e2e-scale";
    let (code, stdout, stderr) =
        vmbgp_bench(dir.path(), &["run", "--profile", PROFILE, "--uuid", uuid]).await;
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let results = dir.path().join("results").join(uuid);
    let summary = read_json(&results.join("jobSummary.json"));
    let summary = summary
        .as_array()
        .and_then(|a| a.first())
        .cloned()
        .unwrap_or(summary);
    assert_eq!(summary["passed"], Value::Bool(true), "{summary}");
    assert_eq!(summary["jobConfig"]["jobIterations"], 2);
    // The lab serves no KubeVirt CR: the version is missing with the reason, never made up.
    assert!(summary.get("kubevirtVersion").is_none(), "{summary}");
    let reason = summary["missing"]["kubevirtVersion"]
        .as_str()
        .unwrap_or_default();
    assert!(reason.contains("not readable"), "{summary}");
    let docs = common::documents(&results, "vmiLatencyMeasurement-");
    assert_eq!(docs.len(), 6, "2 iterations × 3 VMs");
    for doc in &docs {
        for field in [
            "vmiCreatedLatency",
            "vmiRunningLatency",
            "vmReadyLatency",
            "ipamClaimIPsAllocatedLatency",
            "ipVisibleLatency",
        ] {
            let value = doc[field]
                .as_f64()
                .unwrap_or_else(|| panic!("{field} missing in {doc}"));
            assert!(value > 0.0, "{field} = {value} in {doc}");
        }
        assert!(
            doc["vmReadyLatency"].as_f64() >= doc["vmiCreatedLatency"].as_f64(),
            "ready after created: {doc}"
        );
    }
    assert!(stdout.contains("results:"), "{stdout}");
    let left = leftovers(dir.path(), uuid).await;
    assert!(left.is_empty(), "left behind: {left:?}");
    lab.stop().await.expect("lab stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_violated_threshold_exits_3_and_keeps_the_results() {
    let (lab, dir) = start_lab().await;
    let profile = std::fs::read_to_string(PROFILE)
        .expect("profile")
        .replace("max: 60s", "max: 1us");
    let profile_path = dir.path().join("strict.yaml");
    std::fs::write(&profile_path, profile).expect("write profile");
    let uuid = "lab-e2e-threshold";
    let (code, stdout, stderr) = vmbgp_bench(
        dir.path(),
        &[
            "run",
            "--profile",
            profile_path.to_str().expect("utf8"),
            "--uuid",
            uuid,
            "--iterations",
            "1",
            "--vm-count",
            "2",
        ],
    )
    .await;
    assert_eq!(code, Some(3), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let summary = read_json(
        &dir.path()
            .join("results")
            .join(uuid)
            .join("jobSummary.json"),
    );
    let summary = summary
        .as_array()
        .and_then(|a| a.first())
        .cloned()
        .unwrap_or(summary);
    assert_eq!(summary["passed"], Value::Bool(false));
    assert!(
        summary["executionErrors"].to_string().contains("VMReady"),
        "{summary}"
    );
    assert!(leftovers(dir.path(), uuid).await.is_empty());
    lab.stop().await.expect("lab stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupt_keeps_partial_results_cleans_up_and_exits_130() {
    let (lab, dir) = start_lab().await;
    let uuid = "lab-e2e-interrupt";
    // Slow creates (1/s) so the signal lands mid-run.
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_vmbgp-bench"))
        .args([
            "run",
            "--profile",
            PROFILE,
            "--uuid",
            uuid,
            "--iterations",
            "3",
            "--vm-count",
            "5",
            "--qps",
            "1",
            "--burst",
            "1",
        ])
        .arg("--kubeconfig")
        .arg(dir.path().join("kubeconfig"))
        .arg("--results-dir")
        .arg(dir.path().join("results"))
        .args(["--observe-bgp", "false", "--probe-vms", "false"])
        .kill_on_drop(true)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id().expect("pid");
    // Wait until the run has created something, then interrupt it.
    let results = dir.path().join("results").join(uuid);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !results.join("jobSummary.json").exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the run never started"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let status = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let output = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("the run ends after the interrupt")
        .expect("output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    let summary = read_json(&results.join("jobSummary.json"));
    let summary = summary
        .as_array()
        .and_then(|a| a.first())
        .cloned()
        .unwrap_or(summary);
    assert_eq!(summary["passed"], Value::Bool(false));
    assert!(
        summary["executionErrors"]
            .to_string()
            .contains("interrupted"),
        "{summary}"
    );
    assert!(leftovers(dir.path(), uuid).await.is_empty());
    lab.stop().await.expect("lab stops");
}

/// Everything `render` produces, for every profile, applies cleanly and in order to the lab.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rendered_profile_applies_cleanly_to_the_lab() {
    use vmbgp_bench::cli::PlanArgs;
    use vmbgp_bench::config::BUILTIN_PROFILES;
    use vmbgp_bench::kube::apply::Applier;
    use vmbgp_bench::workload::{Templates, render_plan};
    for (profile, _) in BUILTIN_PROFILES {
        let (lab, dir) = start_lab().await;
        let plan = vmbgp_bench::commands::plan_from_args(&PlanArgs {
            profile: profile.to_string(),
            uuid: Some(format!("apply-{profile}")),
            ..PlanArgs::default()
        })
        .expect("plan");
        let manifests =
            render_plan(&plan, &Templates::builtin().expect("templates")).expect("render");
        let cluster = vmbgp_bench::kube::connect(
            Some(&dir.path().join("kubeconfig")),
            None,
            Duration::from_secs(5),
        )
        .await
        .expect("connect");
        let mut applier = Applier::new(
            cluster.exact.clone(),
            vmbgp_bench::clock::RunClock::start(),
            1000,
            1000,
            cluster.retries.clone(),
        );
        for manifest in &manifests {
            let request = applier.create(&manifest.object).await.expect("known kind");
            assert_eq!(
                request.error,
                None,
                "{profile}: {} {} was refused",
                manifest.kind(),
                manifest.name()
            );
        }
        lab.stop().await.expect("lab stops");
    }
}

/// `check` against the lab: every finding is reported and none blocks; a wrong frr-k8s namespace does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_every_finding_against_the_lab() {
    let (lab, dir) = start_lab().await;
    let kubeconfig = dir.path().join("kubeconfig");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_vmbgp-bench"))
        .args(["check", "--kubeconfig"])
        .arg(&kubeconfig)
        .output()
        .await
        .expect("run binary");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for check in [
        "api",
        "crd virtualmachines.kubevirt.io",
        "crd clusteruserdefinednetworks.k8s.ovn.org",
        "crd routeadvertisements.k8s.ovn.org",
        "crd ipamclaims.k8s.cni.cncf.io",
        "frr-k8s namespace",
        "leftovers",
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with("ok") && l.contains(check)),
            "{check} not ok:\n{stdout}"
        );
    }
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_vmbgp-bench"))
        .args([
            "check",
            "--frr-namespace",
            "frr-k8s-nowhere",
            "--kubeconfig",
        ])
        .arg(&kubeconfig)
        .output()
        .await
        .expect("run binary");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("FAIL") && stderr.contains("frr-k8s-nowhere"),
        "{stderr}"
    );
    lab.stop().await.expect("lab stops");
}
