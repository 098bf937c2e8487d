//! Recovering from runs that could not clean up, on the in-process lab API: after a SIGKILL the next
//! run is refused with the `destroy` command that removes the leftovers, `destroy --uuid` removes
//! every object of that run (and only of that run) and is idempotent, and a run that meets one of its
//! own names already taken (409) stops at once naming the owner instead of measuring on.

use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::runtime::watcher;
use vmbgp_lab_api::{Lab, LabConfig};

mod common;

const PROFILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/lifecycle-only.yaml"
);

use common::{KINDS, api};

async fn start_lab() -> (Lab, tempfile::TempDir, kube::Client) {
    start_lab_with(LabConfig::default()).await
}

async fn start_lab_with(config: LabConfig) -> (Lab, tempfile::TempDir, kube::Client) {
    let dir = tempfile::tempdir().expect("tempdir");
    let lab = Lab::start(LabConfig {
        frr_namespace: "openshift-frr-k8s".into(),
        ..config
    })
    .await
    .expect("lab starts");
    let kubeconfig = dir.path().join("kubeconfig");
    lab.write_kubeconfig(&kubeconfig).expect("kubeconfig");
    let client = common::client_for(&kubeconfig).await;
    (lab, dir, client)
}

fn run_args<'a>(dir: &'a Path, uuid: &'a str, extra: &[&'a str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "run",
        "--profile",
        PROFILE,
        "--uuid",
        uuid,
        "--observe-bgp",
        "false",
        "--probe-vms",
        "false",
    ]
    .map(String::from)
    .to_vec();
    args.extend(extra.iter().map(|s| s.to_string()));
    args.extend([
        "--kubeconfig".into(),
        dir.join("kubeconfig").display().to_string(),
        "--results-dir".into(),
        dir.join("results").display().to_string(),
    ]);
    args
}

/// Names of every object of `uuid`'s run that exists: labelled ones, and claims/VMIs in the run
/// namespaces (`vmbgp-*`; each test's lab holds one run's namespaces at a time).
async fn objects_of_run(client: &kube::Client, uuid: &str) -> Vec<String> {
    let mut found = labelled(client, uuid).await;
    for kind in KINDS
        .iter()
        .filter(|k| k.2 == "VirtualMachineInstance" || k.2 == "IPAMClaim")
    {
        for o in api(client, kind)
            .list(&ListParams::default().labels("kubevirt.io/vm"))
            .await
            .expect("list")
            .items
        {
            let ns = o.metadata.namespace.clone().unwrap_or_default();
            if ns.starts_with("vmbgp-") {
                found.push(format!(
                    "{} {ns}/{}",
                    kind.2,
                    o.metadata.name.unwrap_or_default()
                ));
            }
        }
    }
    found
}

/// Objects carrying `uuid`'s run label.
async fn labelled(client: &kube::Client, uuid: &str) -> Vec<String> {
    common::labelled(client, uuid).await.expect("list")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_killed_run_the_next_is_refused_and_destroy_removes_exactly_its_objects() {
    let (_lab, dir, client) = start_lab().await;
    // A foreign persistent-IP VM's claim, elsewhere in the cluster, must survive destroy.
    api(&client, &KINDS[0])
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other-team"}}))
                .expect("ns"),
        )
        .await
        .expect("foreign namespace");
    let foreign_claim: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "k8s.cni.cncf.io/v1alpha1", "kind": "IPAMClaim",
        "metadata": {"name": "db-1.default", "namespace": "other-team", "labels": {"kubevirt.io/vm": "db-1"}},
        "spec": {"network": "default", "interface": "pod16367aacb67"},
    }))
    .expect("claim");
    Api::<DynamicObject>::namespaced_with(
        client.clone(),
        "other-team",
        &kube::discovery::ApiResource {
            group: "k8s.cni.cncf.io".into(),
            version: "v1alpha1".into(),
            api_version: "k8s.cni.cncf.io/v1alpha1".into(),
            kind: "IPAMClaim".into(),
            plural: "ipamclaims".into(),
        },
    )
    .create(&PostParams::default(), &foreign_claim)
    .await
    .expect("foreign claim");

    // Slow creates, then SIGKILL once VMs exist: the run cannot clean up.
    let killed = "killed-run-1";
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_vmbgp-bench"))
        .args(run_args(
            dir.path(),
            killed,
            &[
                "--iterations",
                "2",
                "--vm-count",
                "3",
                "--qps",
                "4",
                "--burst",
                "4",
            ],
        ))
        .kill_on_drop(true)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("killed.log")).expect("log"))
        .spawn()
        .expect("spawn");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !objects_of_run(&client, killed)
        .await
        .iter()
        .any(|o| o.starts_with("IPAMClaim"))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the run never made a VM: {}",
            std::fs::read_to_string(dir.path().join("killed.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().await.expect("SIGKILL");
    assert!(!objects_of_run(&client, killed).await.is_empty());

    // The next run is refused before creating anything, naming the command that cleans up.
    let (code, _, stderr) = common::bench(&run_args(dir.path(), "next-run-1", &[])).await;
    assert_eq!(code, Some(4), "{stderr}");
    assert!(
        stderr.contains(&format!("vmbgp-bench destroy --uuid {killed}")),
        "{stderr}"
    );
    assert!(labelled(&client, "next-run-1").await.is_empty());

    let kubeconfig = dir.path().join("kubeconfig").display().to_string();
    let destroy = ["destroy", "--uuid", killed, "--kubeconfig", &kubeconfig];
    let (code, stdout, stderr) = common::bench(&destroy).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("deleted") && stdout.contains("VirtualMachine"),
        "{stdout}"
    );
    assert_eq!(objects_of_run(&client, killed).await, Vec::<String>::new());
    let foreign = api(&client, &KINDS[6])
        .list(&ListParams::default())
        .await
        .expect("claims");
    assert_eq!(foreign.items.len(), 1, "the foreign claim is kept");

    // Idempotent: nothing left to do is success, and says so.
    let (code, stdout, stderr) = common::bench(&destroy).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("nothing labelled vmbgp.io/uuid=killed-run-1"),
        "{stdout}"
    );

    // Now the next run goes ahead.
    let (code, _, stderr) = common::bench(&run_args(
        dir.path(),
        "next-run-2",
        &["--iterations", "1", "--vm-count", "1"],
    ))
    .await;
    assert_eq!(code, Some(0), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_409_on_the_runs_own_object_stops_the_run_and_names_the_owner() {
    let (_lab, dir, client) = start_lab().await;
    // As soon as the run's namespace appears, another run takes the name of its first VM.
    let namespaces = api(&client, &KINDS[0]);
    let racer = {
        let client = client.clone();
        tokio::spawn(async move {
            let mut events = std::pin::pin!(watcher::watcher(
                namespaces,
                watcher::Config::default().fields("metadata.name=vmbgp-0")
            ));
            while let Some(event) = events.next().await {
                if let Ok(watcher::Event::Apply(_) | watcher::Event::InitApply(_)) = event {
                    break;
                }
            }
            let vm: DynamicObject = serde_json::from_value(serde_json::json!({
                "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
                "metadata": {"name": "vm-0-1", "namespace": "vmbgp-0", "labels": {"vmbgp.io/uuid": "other-run-9"}},
                "spec": {"runStrategy": "Halted", "template": {"spec": {"domain": {"devices": {}}}}},
            }))
            .expect("vm");
            Api::<DynamicObject>::namespaced_with(
                client,
                "vmbgp-0",
                &kube::discovery::ApiResource {
                    group: "kubevirt.io".into(),
                    version: "v1".into(),
                    api_version: "kubevirt.io/v1".into(),
                    kind: "VirtualMachine".into(),
                    plural: "virtualmachines".into(),
                },
            )
            .create(&PostParams::default(), &vm)
            .await
            .expect("the other run's VM");
        })
    };
    // One create per second: the VM comes seconds after its namespace.
    let (code, stdout, stderr) = common::bench(&run_args(
        dir.path(),
        "racing-run-1",
        &[
            "--iterations",
            "1",
            "--vm-count",
            "2",
            "--qps",
            "1",
            "--burst",
            "1",
        ],
    ))
    .await;
    racer.await.expect("racer");
    assert_eq!(code, Some(4), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let all = format!("{stdout}{stderr}");
    assert!(
        all.contains("VirtualMachine vmbgp-0/vm-0-1 already exists")
            && all.contains("vmbgp-bench destroy --uuid other-run-9"),
        "{all}"
    );
    // Stopped at once: the refused VM is a sample with the API's reason, its second VM was never
    // created (no sample), and the run cleaned up what it had made.
    let results = dir.path().join("results").join("racing-run-1");
    let vms = common::documents(&results, "vmiLatencyMeasurement-");
    assert_eq!(vms.len(), 1, "{vms:?}");
    assert_eq!(vms[0]["vmName"], "vm-0-1");
    assert!(objects_of_run(&client, "racing-run-1").await.is_empty());
}

/// `--local-indexing` writes kube-burner's local-indexing layout in the working directory: the
/// run's document arrays, the same as in its results directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_indexing_writes_collected_metrics_in_the_working_directory() {
    let (_lab, dir, _client) = start_lab().await;
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_vmbgp-bench"))
        .args(run_args(
            dir.path(),
            "local-idx-1",
            &["--iterations", "1", "--vm-count", "2", "--local-indexing"],
        ))
        .current_dir(dir.path())
        .output()
        .await
        .expect("run");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let collected = dir.path().join("collected-metrics-local-idx-1");
    assert!(
        stdout.contains("local indexing: collected-metrics-local-idx-1"),
        "{stdout}"
    );
    let results = dir.path().join("results").join("local-idx-1");
    let names = |d: &Path| -> Vec<String> {
        let mut n: Vec<String> = std::fs::read_dir(d)
            .expect("dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| {
                n.ends_with(".json") && (n == "jobSummary.json" || n.contains("Measurement-"))
            })
            .collect();
        n.sort();
        n
    };
    assert!(names(&collected).contains(&"jobSummary.json".to_string()));
    assert!(
        names(&collected).contains(&"vmiLatencyMeasurement-lifecycle-only.json".to_string()),
        "{:?}",
        names(&collected)
    );
    assert_eq!(names(&collected), names(&results));
    for name in names(&results) {
        assert_eq!(
            std::fs::read(collected.join(&name)).expect("collected"),
            std::fs::read(results.join(&name)).expect("result"),
            "{name}"
        );
    }
}

/// Objects of every kind that belong to someone else — another namespace's VM and its claim, a
/// CUDN, RouteAdvertisements and FRRConfiguration of another run — are present during a run: the
/// run's waits and cleanup ignore them (it ends promptly, exit 0) and leaves them untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_objects_of_every_kind_neither_block_nor_get_touched() {
    let (_lab, dir, client) = start_lab().await;
    let all = |kind: &(&str, &str, &str, &str)| api(&client, kind);
    common::create_foreign_objects(&client, "openshift-frr-k8s").await;
    let before = labelled(&client, "someone-else").await;

    let started = std::time::Instant::now();
    let (code, stdout, stderr) = common::bench(&run_args(
        dir.path(),
        "with-neighbours-1",
        &["--iterations", "2", "--vm-count", "2"],
    ))
    .await;
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    // The run's own cleanup wait does not wait for anyone else's objects (it was 5 min).
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}: {stderr}",
        started.elapsed()
    );
    assert!(
        objects_of_run(&client, "with-neighbours-1")
            .await
            .is_empty()
    );
    assert_eq!(labelled(&client, "someone-else").await, before);
    let claims = all(&KINDS[6])
        .list(&ListParams::default())
        .await
        .expect("claims");
    assert_eq!(claims.items.len(), 1, "only the foreign claim is left");
}

/// The exit-code table's 5: a run whose time runs out exits 5, keeps what it measured and says
/// why in its jobSummary, and still cleans up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_out_of_time_exits_5_and_keeps_its_results() {
    let (_lab, dir, client) = start_lab().await;
    // One create per second against a 3 s budget: the run cannot create its 6 VMs in time.
    let (code, stdout, stderr) = common::bench(&run_args(
        dir.path(),
        "out-of-time-1",
        &[
            "--iterations",
            "2",
            "--vm-count",
            "3",
            "--qps",
            "1",
            "--burst",
            "1",
            "--timeout",
            "3s",
        ],
    ))
    .await;
    assert_eq!(code, Some(5), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let results = dir.path().join("results").join("out-of-time-1");
    let summary = common::documents(&results, "jobSummary");
    assert_eq!(summary[0]["passed"], false);
    let errors = summary[0]["executionErrors"].to_string();
    assert!(errors.contains("--timeout"), "{errors}");
    assert!(objects_of_run(&client, "out-of-time-1").await.is_empty());
}

/// Churn reuses static addresses only once the old VMs' IPAMClaims are gone: with a controller that
/// releases claims a second after their VM (as kubevirt-ipam-controller does with some latency),
/// the next iteration's VMs would meet IPAddressConflict if the run moved on when VM and VMI were
/// gone. It waits, and reports the time from delete request to claim gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_waits_for_claims_before_reusing_addresses() {
    let (_lab, dir, _client) = start_lab_with(LabConfig {
        claim_release_delay_ms: 1000,
        ..LabConfig::default()
    })
    .await;
    let mut args = run_args(
        dir.path(),
        "churn-claims-1",
        &["--iterations", "2", "--vm-count", "2"],
    );
    // The churn shape with its own static range, instead of the lifecycle fixture.
    let profile = args.iter().position(|a| a == "--profile").expect("profile") + 1;
    args[profile] = "vm-bgp-churn".into();
    let (code, stdout, stderr) = common::bench(&args).await;
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let results = dir.path().join("results").join("churn-claims-1");
    let vms = common::documents(&results, "vmiLatencyMeasurement-");
    assert_eq!(vms.len(), 4, "{vms:?}");
    for vm in &vms {
        let released = vm["ipamClaimReleasedLatency"].as_f64();
        assert!(released.is_some_and(|ms| ms >= 1000.0), "{vm}");
        // Created only after the old claim was gone, the second iteration's VMs get their address at
        // once; created earlier, they would wait out the conflict and their latency would include it.
        let ready = vm["vmReadyLatency"].as_f64().expect("ready");
        assert!(ready < 800.0, "VMReady took {ready} ms: {vm}");
        assert!(vm["missing"].get("ipVisibleLatency").is_none(), "{vm}");
    }
}
