//! `lab up --host-routes` end to end (root, FRR): the lab runs the host-route controller as its own
//! process (the `vmbgp-controller` binary next to `vmbgp-bench`), and from the external router's
//! point of view — its kernel FIB and its BGP table — each VM of a network a run creates gets its
//! /32 from the node hosting it, with community 64512:200 and the local-pref 250 that ext's policy
//! gives it; the /32 follows a live migration to the new node and goes when the VM is deleted.
//! `lab down` stops the controller by its PID and leaves nothing behind.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod common;

use chrono::{DateTime, Utc};
use common::{KINDS, api_resource, bench, client_for, netns_of, require_lab_prerequisites};
use kube::api::{DeleteParams, DynamicObject, ListParams, PostParams};
use serde_json::{Value, json};
use vmbgp_bench::cli::PlanArgs;
use vmbgp_bench::workload::{Templates, render_plan};

/// Generous: a wait that fails is a bug; its length is never asserted.
const WAIT: Duration = Duration::from_secs(60);
const HOST_ROUTE_COMMUNITY: &str = "64512:200";
/// What ext's inbound policy (`workloads/external-frr.conf.j2`) gives routes with that community.
const HOST_ROUTE_LOCAL_PREF: u64 = 250;

/// Takes the lab down when the test ends, also when it fails midway, and only then removes the
/// temporary directory that holds its state.
struct LabDown {
    state: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for LabDown {
    fn drop(&mut self) {
        if self.state.exists() {
            let state = self.state.to_string_lossy().into_owned();
            let _ = common::bench_blocking(&["lab", "down", "--state-dir", &state]);
        }
    }
}

/// One VM of the run: where it lives and the address it was given.
#[derive(Debug, Clone)]
struct Vm {
    namespace: String,
    name: String,
    address: Ipv4Addr,
}

impl Vm {
    fn prefix(&self) -> String {
        format!("{}/32", self.address)
    }
}

/// Polls `probe` until it returns `Some`, at most [`WAIT`]; `what` names the wait in the failure.
async fn until<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let last = match probe().await {
            Ok(value) => return value,
            Err(last) => last,
        };
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {WAIT:?}; last seen: {last}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// ext's kernel route for `prefix`: its next hops (empty when there is none).
async fn fib_next_hops(ext_netns: &str, prefix: &str) -> BTreeSet<Ipv4Addr> {
    let out = tokio::process::Command::new("ip")
        .args(["-n", ext_netns, "-j", "route", "show", prefix])
        .output()
        .await
        .expect("ip route");
    assert!(out.status.success(), "ip route: {out:?}");
    let routes: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let mut hops = BTreeSet::new();
    for route in routes.as_array().cloned().unwrap_or_default() {
        let nested = route["nexthops"].as_array().cloned().unwrap_or_default();
        for hop in std::iter::once(&route).chain(nested.iter()) {
            if let Some(gateway) = hop["gateway"].as_str() {
                hops.insert(gateway.parse().expect("gateway address"));
            }
        }
    }
    hops
}

/// ext's BGP paths for `prefix` (`show bgp ipv4 unicast PREFIX json` over its bgpd vty socket).
/// A prefix not in the table is answered `{}` with a warning status, so the status is not checked.
async fn bgp_paths(vty: &Path, prefix: &str) -> Vec<Value> {
    let mut session = vmbgp_bgp::vty::VtySession::connect(vty, Duration::from_secs(5))
        .await
        .expect("ext's bgpd vty");
    let reply = session
        .command(&format!("show bgp ipv4 unicast {prefix} json"))
        .await
        .expect("show bgp");
    let table: Value = serde_json::from_str(&reply.output)
        .unwrap_or_else(|e| panic!("show bgp {prefix}: not JSON ({e}): {}", reply.output));
    table["paths"].as_array().cloned().unwrap_or_default()
}

/// The peer a BGP path came from.
fn path_peer(path: &Value) -> Option<Ipv4Addr> {
    path["peer"]["peerId"]
        .as_str()
        .or_else(|| path["nexthops"][0]["ip"].as_str())
        .and_then(|a| a.parse().ok())
}

/// Waits until ext routes `vm`'s /32 only to `node` — in its FIB and in its BGP table — then
/// checks the path carries the host-route community and got the policy's local-pref.
async fn wait_host_route(ext_netns: &str, vty: &Path, vm: &Vm, node: Ipv4Addr) {
    let prefix = vm.prefix();
    let want = BTreeSet::from([node]);
    let paths = until(&format!("{prefix} routed to {node} only"), || async {
        let fib = fib_next_hops(ext_netns, &prefix).await;
        let paths = bgp_paths(vty, &prefix).await;
        let peers: BTreeSet<Ipv4Addr> = paths.iter().filter_map(path_peer).collect();
        if fib == want && peers == want {
            Ok(paths)
        } else {
            Err(format!("FIB next hops {fib:?}, BGP peers {peers:?}"))
        }
    })
    .await;
    for path in &paths {
        let communities = path["community"]["string"].as_str().unwrap_or_default();
        assert!(
            communities.split(' ').any(|c| c == HOST_ROUTE_COMMUNITY),
            "{prefix}: community {HOST_ROUTE_COMMUNITY} missing: {path}"
        );
        assert_eq!(
            path["locPrf"].as_u64(),
            Some(HOST_ROUTE_LOCAL_PREF),
            "{prefix}: {path}"
        );
    }
}

/// Waits until `vm`'s VMI runs with its address known; returns its node.
async fn wait_running(client: &kube::Client, vm: &Vm) -> String {
    let vmis = kube::Api::<DynamicObject>::namespaced_with(
        client.clone(),
        &vm.namespace,
        &api_resource(&KINDS[5]),
    );
    until(&format!("{}/{} Running", vm.namespace, vm.name), || async {
        let vmi = vmis.get(&vm.name).await.map_err(|e| e.to_string())?;
        let status = &vmi.data["status"];
        let address = status["interfaces"][0]["ipAddress"].as_str();
        match (status["phase"].as_str(), status["nodeName"].as_str()) {
            (Some("Running"), Some(node)) if address == Some(&vm.address.to_string()) => {
                Ok(node.to_string())
            }
            _ => Err(status.to_string()),
        }
    })
    .await
}

/// Creates one rendered object as the harness's apply would.
async fn create(client: &kube::Client, object: &Value) {
    let kind = object["kind"].as_str().unwrap_or_default();
    let entry = KINDS
        .iter()
        .find(|k| k.2 == kind)
        .unwrap_or_else(|| panic!("a run creates no {kind}"));
    let resource = api_resource(entry);
    let api: kube::Api<DynamicObject> = match object["metadata"]["namespace"].as_str() {
        Some(ns) => kube::Api::namespaced_with(client.clone(), ns, &resource),
        None => kube::Api::all_with(client.clone(), &resource),
    };
    let object: DynamicObject = serde_json::from_value(object.clone()).expect("object");
    api.create(&PostParams::default(), &object)
        .await
        .unwrap_or_else(|e| panic!("creating {kind}: {e}"));
}

/// The recorded process is `vmbgp-controller` and still runs.
fn controller_runs(pid: u64) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|cmd| String::from_utf8_lossy(&cmd).contains("vmbgp-controller"))
}

/// A `lab up --host-routes` lab in a temporary state directory, taken down on drop, with its
/// `lab.json` and the controller's recorded PID.
struct HostRouteLab {
    state: PathBuf,
    state_arg: String,
    id: String,
    info: Value,
    controller_pid: u64,
    down: LabDown,
}

async fn host_route_lab(id_prefix: &str, nodes: u16) -> HostRouteLab {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("lab");
    let state_arg = state.to_str().expect("utf8").to_string();
    let id = format!("{id_prefix}-{}", std::process::id());
    let down = LabDown {
        state: state.clone(),
        _dir: dir,
    };
    let (code, stdout, stderr) = bench(&[
        "lab",
        "up",
        "--state-dir",
        &state_arg,
        "--lab-id",
        &id,
        "--nodes",
        &nodes.to_string(),
        "--host-routes",
    ])
    .await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let info: Value =
        serde_json::from_str(&std::fs::read_to_string(state.join("lab.json")).expect("lab.json"))
            .expect("lab.json is JSON");
    let controller_pid = info["hostRouteController"]["pid"]
        .as_u64()
        .unwrap_or_else(|| panic!("no controller in {info}"));
    HostRouteLab {
        state,
        state_arg,
        id,
        info,
        controller_pid,
        down,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root, FRR and iproute2; ci/test.sh runs it (cargo test -- --include-ignored)"]
async fn lab_up_host_routes_advertises_each_vm_from_its_node_and_follows_it() {
    require_lab_prerequisites();
    let controller_bin =
        Path::new(env!("CARGO_BIN_EXE_vmbgp-bench")).with_file_name("vmbgp-controller");
    assert!(
        controller_bin.exists(),
        "{} is missing: `cargo test --workspace` builds it; with -p vmbgp-bench run \
         `cargo build -p vmbgp-controller` first",
        controller_bin.display()
    );
    let HostRouteLab {
        state,
        state_arg,
        id,
        info,
        controller_pid,
        down: _down,
    } = host_route_lab("hr", 2).await;
    assert!(controller_runs(controller_pid), "{info}");
    assert!(state.join("controller.log").exists());
    let (code, stdout, stderr) = bench(&["lab", "status", "--state-dir", &state_arg]).await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let status: Value = serde_json::from_str(&stdout).expect("status json");
    assert_eq!(
        status["hostRouteController"]["pid"].as_u64(),
        Some(controller_pid),
        "{status}"
    );
    let ext_netns = info["externalRouter"]["netns"].as_str().expect("ext netns");
    let vty = PathBuf::from(info["externalRouter"]["bgpdVty"].as_str().expect("ext vty"));
    let nodes: BTreeMap<String, Ipv4Addr> = info["nodes"]
        .as_object()
        .expect("nodes")
        .iter()
        .map(|(name, n)| {
            let address = n["address"].as_str().expect("node address");
            (name.clone(), address.parse().expect("node address"))
        })
        .collect();
    let client = client_for(Path::new(info["kubeconfig"].as_str().expect("kubeconfig"))).await;

    // What a run of the default profile creates: peering template, namespace, CUDN (labelled
    // vmbgp.io/network, which the lab's controller selects), RouteAdvertisements and 3 VMs.
    let plan = vmbgp_bench::commands::plan_from_args(&PlanArgs {
        iterations: Some(1),
        vm_count: Some(3),
        uuid: Some(format!("hostroutes-{id}")),
        ..PlanArgs::default()
    })
    .expect("plan");
    let templates = Templates::builtin().expect("templates");
    for manifest in render_plan(&plan, &templates).expect("render") {
        create(&client, &manifest.object).await;
    }
    let vms: Vec<Vm> = plan
        .vms
        .iter()
        .map(|v| Vm {
            namespace: v.namespace.clone(),
            name: v.name.clone(),
            address: v
                .static_ip
                .expect("the default profile gives static addresses"),
        })
        .collect();
    assert_eq!(vms.len(), 3);
    let mut hosted = Vec::new();
    for vm in &vms {
        let node = wait_running(&client, vm).await;
        wait_host_route(ext_netns, &vty, vm, nodes[&node]).await;
        hosted.push(node);
    }
    // The subnet route is still advertised from every node: host routes add to it.
    let subnet = &plan.networks[0].subnet.to_string();
    let all_nodes: BTreeSet<Ipv4Addr> = nodes.values().copied().collect();
    until(&format!("{subnet} from every node"), || async {
        let hops = fib_next_hops(ext_netns, subnet).await;
        if hops == all_nodes {
            Ok(())
        } else {
            Err(format!("{hops:?}"))
        }
    })
    .await;
    // OVN-K's emulation took only the run's peering template as its template, never the
    // controller's configurations (the RA selects templates by the run's labels).
    let frr = kube::Api::<DynamicObject>::all_with(client.clone(), &api_resource(&KINDS[3]));
    let generated = frr
        .list(&ListParams::default().labels("k8s.ovn.org/route-advertisements"))
        .await
        .expect("generated configurations");
    assert!(!generated.items.is_empty());
    let template = vmbgp_bench::workload::frr_template_name(&plan);
    for config in &generated.items {
        let from = config
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("k8s.ovn.org/route-advertisements"))
            .and_then(|a| a.split('/').nth(1).map(str::to_string));
        assert_eq!(from.as_deref(), Some(template.as_str()), "{config:?}");
    }

    // A live migration: the /32 moves to the new node.
    let moving = &vms[0];
    let vmims = kube::Api::<DynamicObject>::namespaced_with(
        client.clone(),
        &moving.namespace,
        &api_resource(&KINDS[7]),
    );
    let vmim: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstanceMigration",
        "metadata": {"name": format!("{}-mig", moving.name), "namespace": moving.namespace},
        "spec": {"vmiName": moving.name}}))
    .expect("migration");
    vmims
        .create(&PostParams::default(), &vmim)
        .await
        .expect("create migration");
    let vmis = kube::Api::<DynamicObject>::namespaced_with(
        client.clone(),
        &moving.namespace,
        &api_resource(&KINDS[5]),
    );
    let target = until(&format!("{} migrated", moving.name), || async {
        let vmi = vmis.get(&moving.name).await.map_err(|e| e.to_string())?;
        let state = &vmi.data["status"]["migrationState"];
        let node = vmi.data["status"]["nodeName"].as_str().unwrap_or_default();
        if state["completed"] == true && state["failed"] != true && node != hosted[0] {
            Ok(node.to_string())
        } else {
            Err(vmi.data["status"].to_string())
        }
    })
    .await;
    wait_host_route(ext_netns, &vty, moving, nodes[&target]).await;

    // Deleting a VM withdraws its /32; the other VMs keep theirs.
    let gone = &vms[1];
    let vm_api = kube::Api::<DynamicObject>::namespaced_with(
        client.clone(),
        &gone.namespace,
        &api_resource(&KINDS[4]),
    );
    vm_api
        .delete(&gone.name, &DeleteParams::default())
        .await
        .expect("delete VM");
    until(&format!("{} withdrawn", gone.prefix()), || async {
        let fib = fib_next_hops(ext_netns, &gone.prefix()).await;
        let paths = bgp_paths(&vty, &gone.prefix()).await;
        if fib.is_empty() && paths.is_empty() {
            Ok(())
        } else {
            Err(format!("FIB {fib:?}, BGP {paths:?}"))
        }
    })
    .await;
    wait_host_route(ext_netns, &vty, &vms[2], nodes[&hosted[2]]).await;
    wait_host_route(ext_netns, &vty, moving, nodes[&target]).await;

    // lab down stops the controller by its PID and removes everything.
    let (code, stdout, stderr) = bench(&["lab", "down", "--state-dir", &state_arg]).await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        !controller_runs(controller_pid),
        "the controller outlived lab down"
    );
    assert!(netns_of(&id).is_empty(), "left: {:?}", netns_of(&id));
    assert!(!state.exists(), "state directory left behind");
}

/// A controller whose `lab serve` was killed (SIGKILL: no teardown) is stopped by `lab down`, by
/// the PID the lab recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root, FRR and iproute2; ci/test.sh runs it (cargo test -- --include-ignored)"]
async fn lab_down_stops_the_controller_of_a_killed_lab() {
    require_lab_prerequisites();
    let HostRouteLab {
        state,
        state_arg,
        id,
        info: _,
        controller_pid,
        down: _down,
    } = host_route_lab("hrk", 1).await;
    let serve = std::fs::read_to_string(state.join("serve.pid")).expect("serve.pid");
    let serve_pid = serve.split_whitespace().next().expect("pid").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &serve_pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    until("lab serve gone", || async {
        // A zombie's command line is empty: dead, whether or not it was reaped yet.
        let cmdline = std::fs::read(format!("/proc/{serve_pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains("vmbgp-bench") {
            Err("still running".to_string())
        } else {
            Ok(())
        }
    })
    .await;
    assert!(
        controller_runs(controller_pid),
        "the controller outlives its killed lab serve"
    );
    let (code, stdout, stderr) = bench(&["lab", "down", "--state-dir", &state_arg]).await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        !controller_runs(controller_pid),
        "lab down left the controller running"
    );
    assert!(netns_of(&id).is_empty(), "left: {:?}", netns_of(&id));
    assert!(!state.exists(), "state directory left behind");
}

/// `run --lab` with the host-route profile runs the controller for the run: every VM's /32 entered
/// ext's FIB from one node, each migrated VM's /32 was routed to its target node, and the run's
/// cleanup withdrew them all (the controller outlives the run's objects and goes before the lab).
#[test]
#[ignore = "needs root, FRR and iproute2; ci/test.sh runs it (cargo test -- --include-ignored)"]
fn run_lab_with_the_host_route_profile_runs_the_controller() {
    require_lab_prerequisites();
    let dir = tempfile::tempdir().expect("tempdir");
    let id = format!("hrrun-{}", std::process::id());
    let uuid = format!("lab-{id}");
    let (code, stdout, stderr) = common::bench_blocking(&[
        "run",
        "--lab",
        "--lab-id",
        &id,
        "--profile",
        "vm-bgp-host-routes",
        "--iterations",
        "1",
        "--vm-count",
        "2",
        "--uuid",
        &uuid,
        "--results-dir",
        dir.path().to_str().expect("utf8"),
    ]);
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(netns_of(&id).is_empty(), "left: {:?}", netns_of(&id));
    // Nothing still runs with the run's lab state directory on its command line (the controller's
    // --kubeconfig is in it).
    let state_dir = stderr
        .split_whitespace()
        .find(|w| w.starts_with("/run/vmbgp-bench-run-"))
        .unwrap_or_else(|| panic!("the run's lab state directory is not logged: {stderr}"));
    assert_eq!(
        common::processes_naming(state_dir),
        Vec::<String>::new(),
        "processes outlived the run"
    );
    let results = dir.path().join(&uuid);
    let lab = results.join("lab");
    let truth: Vec<Value> = std::fs::read_to_string(lab.join("net-ground-truth.jsonl"))
        .expect("net ground truth")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    let fib = |event: &str, prefix: &str| -> Vec<Value> {
        truth
            .iter()
            .filter(|e| e["event"] == event && e["prefix"] == prefix)
            .cloned()
            .collect()
    };
    let node_address = |node: &str| -> String {
        let n = node.strip_prefix("node-").expect("node name");
        format!("198.18.0.{n}")
    };
    let reach = common::documents(&results, "vmReachabilityMeasurement-");
    let migrations = common::documents(&results, "vmMigrationMeasurement-");
    assert_eq!(
        (reach.len(), migrations.len()),
        (2, 2),
        "{reach:?} {migrations:?}"
    );
    for doc in &reach {
        let vm = doc["vmName"].as_str().expect("vmName");
        let prefix = format!("{}/32", doc["address"].as_str().expect("address"));
        let added = fib("fibRouteAdded", &prefix);
        assert!(
            !added.is_empty()
                && added
                    .iter()
                    .all(|e| e["nextHops"].as_array().is_some_and(|h| !h.is_empty())),
            "{vm}: {prefix} never reached ext's FIB: {added:?}"
        );
        let migration = migrations
            .iter()
            .find(|m| m["vmName"] == vm)
            .unwrap_or_else(|| panic!("{vm} not migrated: {migrations:?}"));
        // Migration runs give each VM its own netns (the guest), so its paced TCP stream lives
        // through the switch-over, as in a KubeVirt live migration.
        assert_eq!(migration["tcpSurvived"], true, "{migration}");
        assert!(
            migration["tcpLongestStall"].as_f64().is_some(),
            "{migration}"
        );
        let target = node_address(migration["targetNode"].as_str().expect("targetNode"));
        assert!(
            added.iter().any(|e| e["nextHops"] == json!([target])),
            "{vm}: {prefix} never routed to its target {target} alone: {added:?}"
        );
        assert!(
            !fib("fibRouteRemoved", &prefix).is_empty(),
            "{vm}: {prefix} not withdrawn by the run's cleanup"
        );
    }
    assert!(
        lab.join("controller.log").exists(),
        "controller log kept with the results"
    );
    host_route_figures_match_the_ground_truth(&results, &truth);
}

/// The instant `doc` describes: its t0 (`timestamp`) plus one latency field.
fn instant(doc: &Value, latency_field: &str) -> DateTime<Utc> {
    let ms = doc[latency_field]
        .as_f64()
        .unwrap_or_else(|| panic!("{latency_field} not observed: {doc}"));
    wall(&doc["timestamp"]) + chrono::Duration::nanoseconds((ms * 1e6).round() as i64)
}

fn wall(value: &Value) -> DateTime<Utc> {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not a time: {value}"));
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .with_timezone(&Utc)
}

fn millis_between(a: DateTime<Utc>, b: DateTime<Utc>) -> f64 {
    (a - b)
        .num_nanoseconds()
        .map_or(f64::MAX, |n| n as f64 / 1e6)
}

/// The harness's host-route figures against the lab's ground truth: its own FIB observer (a
/// separate netlink socket) and its API server's record of each VMI running, migrating and going.
/// Every /32 field is observed, tagged 64512:200 with local-pref 250. The instant the /32 was
/// routed to its node agrees with the lab's record of that kernel event within 1 ms. The harness
/// starts each interval when its watch delivers the VMI change, after the lab made it, so each
/// harness figure is at most the lab's own figure (+1 ms for the stamps) and at least the lab's
/// figure less a watch delivery (bounded by [`WATCH_DELIVERY_MS`]): advertise (VMI running → /32
/// routed to its node), stale window (VMI deleted → /32 gone) and next-hop follow (switch-over →
/// /32 routed to the target alone).
fn host_route_figures_match_the_ground_truth(results: &Path, net_truth: &[Value]) {
    const BOUND_MS: f64 = 1.0;
    const WATCH_DELIVERY_MS: f64 = 250.0;
    let api_truth: Vec<Value> = std::fs::read_to_string(results.join("lab/api-ground-truth.jsonl"))
        .expect("api ground truth")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    let api_event = |event: &str, vm: &str| -> DateTime<Utc> {
        let found = api_truth
            .iter()
            .find(|e| e["event"] == event && e["object"]["name"] == vm)
            .unwrap_or_else(|| panic!("the lab recorded no {event} for {vm}"));
        wall(&found["wall"])
    };
    let fib_events = |event: &str, prefix: &str| -> Vec<(DateTime<Utc>, Value)> {
        net_truth
            .iter()
            .filter(|e| e["event"] == event && e["prefix"] == prefix)
            .map(|e| (wall(&e["wall"]), e["nextHops"].clone()))
            .collect()
    };
    let within = |what: &str, harness: f64, lab: f64| {
        eprintln!("{what}: harness {harness:.3} ms, lab {lab:.3} ms");
        assert!(
            harness <= lab + BOUND_MS && harness >= lab - WATCH_DELIVERY_MS,
            "{what}: the harness measured {harness:.3} ms, the lab's ground truth {lab:.3} ms"
        );
    };
    let routes: Vec<Value> = common::documents(results, "routeConvergenceMeasurement-")
        .into_iter()
        .filter(|d| d["scope"] == "hostRoute")
        .collect();
    let vms = common::documents(results, "vmReachabilityMeasurement-");
    assert_eq!(
        routes.len(),
        vms.len(),
        "one /32 document per VM: {routes:?}"
    );
    for doc in &routes {
        let prefix = doc["prefix"].as_str().expect("prefix");
        let vm = doc["vmName"].as_str().expect("vmName");
        assert_eq!(doc.get("missing"), None, "{prefix}: {doc}");
        assert_eq!(doc["communities"], HOST_ROUTE_COMMUNITY, "{doc}");
        assert_eq!(doc["localPref"], HOST_ROUTE_LOCAL_PREF, "{doc}");
        let (first_added, hops) = fib_events("fibRouteAdded", prefix)
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("the lab never saw {prefix} in ext's FIB"));
        assert_eq!(hops.as_array().map(Vec::len), Some(1), "{prefix}: {hops}");
        let d = millis_between(instant(doc, "advertiseAllNextHopsLatency"), first_added);
        assert!(
            d.abs() <= BOUND_MS,
            "{prefix}: routed {d:.3} ms from the lab's record"
        );
        within(
            &format!("{prefix} advertise"),
            doc["advertiseAllNextHopsLatency"]
                .as_f64()
                .expect("observed"),
            millis_between(first_added, api_event("vmi_running", vm)),
        );
        let (removed, _) = fib_events("fibRouteRemoved", prefix)
            .into_iter()
            .last()
            .unwrap_or_else(|| panic!("the lab never saw {prefix} leave ext's FIB"));
        within(
            &format!("{prefix} stale-route window"),
            doc["staleRouteWindow"].as_f64().expect("observed"),
            millis_between(removed, api_event("vmi_deleted", vm)),
        );
    }
    // Per node, at the end of measuring: ext's host-route prefixes via the node cover exactly its
    // VMs (no aggregation in this profile: one /32 each), as many as the controller says it wrote.
    let controller = common::documents(results, "hostRouteControllerMeasurement-");
    let nodes: Vec<&Value> = controller.iter().filter(|d| d["scope"] == "node").collect();
    let vm_total: u64 = nodes.iter().map(|n| n["vms"].as_u64().expect("vms")).sum();
    assert_eq!(vm_total as usize, vms.len(), "{nodes:?}");
    for node in nodes.iter().filter(|n| n["vms"].as_u64() > Some(0)) {
        assert_eq!(node["addressesCovered"], node["vms"], "{node}");
        assert_eq!(node["prefixesAtExt"], node["vms"], "{node}");
        assert_eq!(node["routesAdvertised"], node["vms"], "{node}");
        assert_eq!(node["capped"], false, "{node}");
    }
    let summary = controller
        .iter()
        .find(|d| d["scope"] == "controller")
        .expect("the controller's figures");
    assert_eq!(summary.get("missing"), None, "{summary}");
    assert_eq!(
        summary["routesAdvertised"].as_u64(),
        Some(vm_total),
        "{summary}"
    );
    assert!(
        summary["reconcileP99"].as_f64().is_some_and(|p| p > 0.0),
        "{summary}"
    );
    for migration in common::documents(results, "vmMigrationMeasurement-") {
        let vm = migration["vmName"].as_str().expect("vmName");
        let doc = routes
            .iter()
            .find(|r| r["vmName"] == vm)
            .unwrap_or_else(|| panic!("no /32 document for {vm}"));
        let prefix = doc["prefix"].as_str().expect("prefix");
        let target = migration["targetNode"].as_str().expect("targetNode");
        let target_address = format!("198.18.0.{}", target.trim_start_matches("node-"));
        let switchover = api_event("migration_switchover", vm);
        let (followed, _) = fib_events("fibRouteAdded", prefix)
            .into_iter()
            .find(|(at, hops)| *at > switchover && *hops == json!([target_address]))
            .unwrap_or_else(|| panic!("the lab never saw {prefix} routed to {target} alone"));
        within(
            &format!("{vm} next-hop follow"),
            migration["nextHopFollowLatency"]
                .as_f64()
                .unwrap_or_else(|| panic!("{vm}: next-hop follow not observed: {migration}")),
            millis_between(followed, switchover),
        );
    }
}
