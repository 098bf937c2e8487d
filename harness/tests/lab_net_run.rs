//! End to end on the full lab (root, FRR): `run --lab` for every profile measures VM lifecycle and
//! real route convergence and leaves no namespace behind; `lab up` / `status` / `down` work, also
//! when the lab's process was killed. The scale, churn and migration runs all index into one index
//! of one Elasticsearch-compatible server that enforces dynamic mapping, so a field whose type
//! differs between profiles fails whichever run comes second, as a real cluster would.

use std::path::Path;
use std::sync::OnceLock;

mod common;
use std::process::Command;

use serde_json::Value;
use vmbgp_reporters::test_server::EsTestServer;
use vmbgp_reporters::test_server::mapping::{Mappings, TemplateCoverage};

use common::bench_blocking as bench;
use common::{documents, netns_of, require_lab_prerequisites};

/// The index every profile's run writes to, as CI's nightly runs do.
const ES_INDEX: &str = "ripsaw-kube-burner-vm-bgp";

/// One enforcing ES server for the whole test binary, on a runtime of its own (the tests are sync).
fn shared_es() -> &'static (tokio::runtime::Runtime, EsTestServer) {
    static ES: OnceLock<(tokio::runtime::Runtime, EsTestServer)> = OnceLock::new();
    ES.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let server = runtime.block_on(EsTestServer::start()).expect("es server");
        (runtime, server)
    })
}

/// `run` flags that index into the shared server.
fn es_flags() -> Vec<String> {
    vec![
        "--es-server".into(),
        format!("http://127.0.0.1:{}", shared_es().1.port),
        "--es-index".into(),
        ES_INDEX.into(),
    ]
}

/// Every document the run saved went into the shared index (none refused), and every field of them
/// is mapped, with the type it carries, by CI's index template.
fn assert_indexed_and_mapped(results: &Path, uuid: &str) {
    let saved: Vec<Value> = vmbgp_reporters::local::load_documents(results)
        .expect("saved documents")
        .iter()
        .map(|d| d.body().clone())
        .collect();
    let indexed = {
        let state = shared_es().1.state.lock().expect("state");
        state
            .documents
            .iter()
            .filter(|((index, _), body)| index == ES_INDEX && body["uuid"] == uuid)
            .count()
    };
    assert_eq!(
        indexed,
        saved.len(),
        "{uuid}: every saved document is indexed"
    );
    let template: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../ci/elasticsearch/index-template.json"
        ))
        .expect("template"),
    )
    .expect("template json");
    let coverage = TemplateCoverage::of(
        &Mappings::from_json(&template["template"]["mappings"]),
        &saved,
    );
    assert!(
        coverage.problems.is_empty(),
        "{uuid}: fields the CI template does not map as written: {:?}",
        coverage.problems
    );
}

/// A lab id unique to this test process and test.
fn lab_id(test: &str) -> String {
    format!("{test}-{}", std::process::id())
}

fn run_lab(profile: &str, iterations: &str, vms: &str, test: &str) -> (tempfile::TempDir, String) {
    run_lab_with(profile, iterations, vms, test, &[], 0)
}

fn run_lab_with(
    profile: &str,
    iterations: &str,
    vms: &str,
    test: &str,
    extra: &[&str],
    expected_exit: i32,
) -> (tempfile::TempDir, String) {
    require_lab_prerequisites();
    let dir = tempfile::tempdir().expect("tempdir");
    let id = lab_id(test);
    let uuid = format!("lab-{id}");
    let mut args = vec![
        "run",
        "--lab",
        "--lab-id",
        &id,
        "--profile",
        profile,
        "--iterations",
        iterations,
        "--vm-count",
        vms,
        "--uuid",
        &uuid,
        "--results-dir",
        dir.path().to_str().expect("utf8"),
    ];
    args.extend_from_slice(extra);
    let (code, stdout, stderr) = bench(&args);
    assert_eq!(
        code,
        Some(expected_exit),
        "{profile}: stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        netns_of(&id).is_empty(),
        "{profile}: namespaces left: {:?}",
        netns_of(&id)
    );
    (dir, uuid)
}

/// Every advertise and withdraw value of every network was observed (not reported as 0 or missing).
fn assert_routes_observed(results: &Path, networks: usize) {
    let routes = documents(results, "routeConvergenceMeasurement-");
    assert_eq!(routes.len(), networks, "{routes:?}");
    for doc in &routes {
        for field in [
            "advertiseAdjRibInLatency",
            "advertiseFibLatency",
            "advertiseAllNextHopsLatency",
            "withdrawAdjRibInLatency",
            "withdrawFibLatency",
        ] {
            let value = doc[field]
                .as_f64()
                .unwrap_or_else(|| panic!("{field} not observed: {doc}"));
            assert!(value > 0.0, "{field} = {value}: {doc}");
        }
    }
}

#[test]
#[ignore = "needs root, FRR and iproute2; ci/test.sh runs it (cargo test -- --include-ignored)"]
fn scale_run_on_the_lab_measures_lifecycle_and_route_convergence() {
    let es = es_flags();
    let es: Vec<&str> = es.iter().map(String::as_str).collect();
    let (dir, uuid) = run_lab_with("vm-bgp", "3", "5", "scale", &es, 0);
    let results = dir.path().join(&uuid);
    assert_indexed_and_mapped(&results, &uuid);
    assert_eq!(documents(&results, "vmiLatencyMeasurement-").len(), 15);
    assert_routes_observed(&results, 3);
    // Every VM answered: first reply observed, from its create request.
    let reach = documents(&results, "vmReachabilityMeasurement-");
    assert_eq!(reach.len(), 15);
    for doc in &reach {
        let first = doc["firstReplyLatency"]
            .as_f64()
            .unwrap_or_else(|| panic!("no first reply: {doc}"));
        assert!(first > 0.0, "{doc}");
    }
    // Every VM's egress call reached the harness from the VM's own address.
    let egress = documents(&results, "vmEgressMeasurement-");
    assert_eq!(egress.len(), 15);
    for doc in &egress {
        assert_eq!(doc["unNATed"], Value::Bool(true), "{doc}");
        assert_eq!(doc["sourceAddressSeen"], doc["vmAddress"], "{doc}");
    }
    // Throughput on the first VM of each of the 3 tested iterations (default: first, middle, last).
    let throughput = documents(&results, "vmThroughputMeasurement-");
    assert_eq!(throughput.len(), 3, "{throughput:?}");
    for doc in &throughput {
        let goodput = doc["goodputBitsPerSecond"]
            .as_f64()
            .unwrap_or_else(|| panic!("goodput not observed: {doc}"));
        assert!(goodput > 1e6, "{doc}");
        assert!(doc["retransmits"].as_u64().is_some(), "{doc}");
        assert_eq!(doc["replica"].as_u64(), Some(1), "{doc}");
    }
    // One session sample per node, up for the whole window, no flaps.
    let sessions = documents(&results, "bgpSessionMeasurement-");
    assert_eq!(sessions.len(), 3, "{sessions:?}");
    for doc in &sessions {
        assert_eq!(doc["uptimePercent"].as_f64(), Some(100.0), "{doc}");
    }
    // The external router's FRR version, from BMP Initiation, is in jobSummary.
    let summary = documents(&results, "jobSummary");
    let version = summary[0]["frrVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        version.starts_with('8') || version.contains("FRRouting"),
        "frrVersion {version:?}"
    );
}

#[test]
#[ignore = "needs root, FRR and iproute2; ci/test.sh runs it (cargo test -- --include-ignored)"]
fn a_vm_that_never_answers_fails_the_threshold_not_the_harness() {
    let (dir, uuid) = run_lab_with(
        "vm-bgp",
        "1",
        "2",
        "silent",
        &["--lab-silent-vm", "vm-0-2"],
        3,
    );
    let results = dir.path().join(&uuid);
    let reach = documents(&results, "vmReachabilityMeasurement-");
    let of = |vm: &str| {
        reach
            .iter()
            .find(|d| d["vmName"] == vm)
            .unwrap_or_else(|| panic!("no reachability document for {vm}: {reach:?}"))
    };
    assert!(of("vm-0-1")["firstReplyLatency"].as_f64().is_some());
    let silent = of("vm-0-2");
    assert!(silent["firstReplyLatency"].is_null(), "{silent}");
    let reason = silent["missing"]["firstReplyLatency"]
        .as_str()
        .unwrap_or_else(|| panic!("no reason: {silent}"));
    assert!(reason.contains("no echo reply"), "{reason}");
    // The harness itself did its job: no execution errors, the threshold is what failed.
    let summary = &documents(&results, "jobSummary")[0];
    assert_eq!(summary["passed"], Value::Bool(false), "{summary}");
    let errors = summary["executionErrors"].as_str().unwrap_or_default();
    assert!(
        errors
            .split("; ")
            .all(|e| e.is_empty() || e.starts_with("threshold violated")),
        "{summary}"
    );
    let text = std::fs::read_to_string(results.join("summary.txt")).expect("summary.txt");
    assert!(
        text.contains("FirstReply missingCount <= 0") && text.contains("VIOLATED"),
        "{text}"
    );
    // Throughput went to the VM that answers, not to the silent one.
    let throughput = documents(&results, "vmThroughputMeasurement-");
    assert_eq!(throughput.len(), 1, "{throughput:?}");
    assert_eq!(throughput[0]["vmName"], "vm-0-1");
    // The lab's ground truth, saved with the results, shows why.
    let truth = std::fs::read_to_string(results.join("lab/net-ground-truth.jsonl"))
        .expect("net ground truth saved with the results");
    assert!(
        truth
            .lines()
            .any(|l| l.contains("addressWithheld") && l.contains("vm-0-2")),
        "{truth}"
    );
}

#[test]
#[ignore = "needs root, FRR and iproute2; ci/test.sh runs it (cargo test -- --include-ignored)"]
fn vms_with_dynamic_addresses_are_probed_from_their_vmi_address() {
    let profile =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dynamic-addresses.yaml");
    let (dir, uuid) = run_lab(profile.to_str().expect("utf8"), "1", "3", "dyn");
    let results = dir.path().join(&uuid);
    let reach = documents(&results, "vmReachabilityMeasurement-");
    assert_eq!(reach.len(), 3, "{reach:?}");
    for doc in &reach {
        let address = doc["address"].as_str().unwrap_or_default();
        assert!(address.starts_with("198.19.100."), "{doc}");
        assert!(doc["firstReplyLatency"].as_f64().is_some(), "{doc}");
    }
    let egress = documents(&results, "vmEgressMeasurement-");
    for doc in &egress {
        assert_eq!(doc["unNATed"], Value::Bool(true), "{doc}");
    }
}

#[test]
#[ignore = "needs root, FRR and iproute2; ci/test.sh runs it (cargo test -- --include-ignored)"]
fn churn_run_on_the_lab_reuses_addresses_and_measures_withdrawal() {
    // Sessions from polling the lab router's vty instead of BMP (routers without BMP).
    let mut flags = es_flags();
    flags.extend(
        [
            "--session-source",
            "poll",
            "--session-poll-interval",
            "200ms",
        ]
        .map(String::from),
    );
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let (dir, uuid) = run_lab_with("vm-bgp-churn", "2", "3", "churn", &flags, 0);
    let results = dir.path().join(&uuid);
    assert_indexed_and_mapped(&results, &uuid);
    let vms = documents(&results, "vmiLatencyMeasurement-");
    assert_eq!(vms.len(), 6);
    // Each iteration waits for its VMs' claims to go before reusing their addresses, and says how
    // long that took.
    for vm in &vms {
        let released = vm["ipamClaimReleasedLatency"].as_f64();
        assert!(released.is_some_and(|ms| ms > 0.0), "{vm}");
    }
    assert_routes_observed(&results, 1);
    let sessions = documents(&results, "bgpSessionMeasurement-");
    assert_eq!(sessions.len(), 3, "{sessions:?}");
    for doc in &sessions {
        assert_eq!(doc["uptimePercent"].as_f64(), Some(100.0), "{doc}");
        assert_eq!(doc["flaps"].as_u64(), Some(0), "{doc}");
        // bgpd's pfxRcd: the shared network, from each node.
        assert_eq!(doc["prefixesReceived"].as_u64(), Some(1), "{doc}");
    }
}

#[test]
#[ignore = "needs root, FRR and iproute2; ci/test.sh runs it (cargo test -- --include-ignored)"]
fn migration_run_on_the_lab_completes_every_migration() {
    let es = es_flags();
    let es: Vec<&str> = es.iter().map(String::as_str).collect();
    let (dir, uuid) = run_lab_with("vm-bgp-migration", "2", "2", "migr", &es, 0);
    let results = dir.path().join(&uuid);
    assert_indexed_and_mapped(&results, &uuid);
    assert_eq!(documents(&results, "vmiLatencyMeasurement-").len(), 2);
    // 2 VMs × 2 rounds, each measured under 1000/s probing: the lab's switch-over moves the
    // address in one dataplane round, so any loss is short but it is a measured value.
    let migrations = documents(&results, "vmMigrationMeasurement-");
    assert_eq!(migrations.len(), 4, "{migrations:?}");
    for doc in &migrations {
        for field in [
            "lossPeriod",
            "longestGap",
            "reachableAfterSwitchoverLatency",
        ] {
            let value = doc[field]
                .as_f64()
                .unwrap_or_else(|| panic!("{field} not observed: {doc}"));
            assert!((0.0..2000.0).contains(&value), "{field} = {value}: {doc}");
        }
        assert_ne!(doc["sourceNode"], doc["targetNode"], "{doc}");
        assert!(
            doc["notApplicable"]["nextHopFollowLatency"].is_string(),
            "{doc}"
        );
    }
}

#[test]
#[ignore = "needs root, FRR and iproute2; ci/test.sh runs it (cargo test -- --include-ignored)"]
fn lab_up_status_down_and_down_after_a_killed_lab() {
    require_lab_prerequisites();
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("lab");
    let state_arg = state.to_str().expect("utf8");
    let id = lab_id("updown");
    let (code, stdout, stderr) = bench(&[
        "lab",
        "up",
        "--state-dir",
        state_arg,
        "--lab-id",
        &id,
        "--nodes",
        "2",
    ]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("kubeconfig") && stdout.contains("bgpdVty") && stdout.contains("bmpTarget"),
        "{stdout}"
    );
    let (code, stdout, stderr) = bench(&["lab", "status", "--state-dir", state_arg]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let status: Value = serde_json::from_str(&stdout).expect("status json");
    assert_eq!(status["healthy"], Value::Bool(true), "{status}");
    // A second up on the same state directory is refused.
    let (code, _, stderr) = bench(&["lab", "up", "--state-dir", state_arg, "--lab-id", &id]);
    assert_eq!(code, Some(4), "{stderr}");
    assert!(stderr.contains("already up"), "{stderr}");
    let (code, stdout, stderr) = bench(&["lab", "down", "--state-dir", state_arg]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(netns_of(&id).is_empty(), "left: {:?}", netns_of(&id));
    assert!(!state.exists(), "state directory left behind");

    // A lab whose process was killed (as a crashed up would be) is still removed by down.
    let (code, stdout, stderr) = bench(&[
        "lab",
        "up",
        "--state-dir",
        state_arg,
        "--lab-id",
        &id,
        "--nodes",
        "1",
    ]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let pid_line = std::fs::read_to_string(state.join("serve.pid")).expect("pid file");
    let pid = pid_line.split_whitespace().next().expect("pid").to_string();
    assert!(
        Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .expect("kill")
            .success()
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        !netns_of(&id).is_empty(),
        "the killed lab's namespaces outlive it"
    );
    let (code, stdout, stderr) = bench(&["lab", "down", "--state-dir", state_arg]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        netns_of(&id).is_empty(),
        "left after down: {:?}",
        netns_of(&id)
    );
}

/// `--gc false` changes only the cleanup: the VM is probed, the sessions measured, thresholds pass.
#[test]
#[ignore = "needs root, FRR and iproute2; ci/test.sh runs it (cargo test -- --include-ignored)"]
fn keeping_the_objects_measures_everything_a_cleaned_run_does() {
    let (dir, uuid) = run_lab_with("vm-bgp", "1", "1", "gcfalse", &["--gc", "false"], 0);
    let results = dir.path().join(&uuid);
    let reach = documents(&results, "vmReachabilityMeasurement-");
    assert_eq!(reach.len(), 1);
    assert!(
        reach[0]["firstReplyLatency"].as_f64().is_some(),
        "{}",
        reach[0]
    );
    let sessions = documents(&results, "bgpSessionMeasurement-");
    assert_eq!(sessions.len(), 3, "{sessions:?}");
    for doc in &sessions {
        assert_eq!(doc["uptimePercent"].as_f64(), Some(100.0), "{doc}");
    }
    // Withdrawal is not measured when nothing is deleted, and says so.
    let routes = documents(&results, "routeConvergenceMeasurement-");
    assert!(
        routes[0]["notApplicable"]["withdrawFibLatency"].is_string(),
        "{}",
        routes[0]
    );
}
