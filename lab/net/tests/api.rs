//! The whole lab through kube-rs: objects applied to the lab API make real routes. A CUDN advertised by
//! a RouteAdvertisements appears in ext's kernel FIB with every node as next hop (OVN-K generates the
//! FRRConfigurations, the frr-k8s emulation applies them); a VM's address answers pings through it;
//! FRRNodeState and BGPSessionState report the routers' real state, including a bgpd restart; deleting
//! the RouteAdvertisements withdraws the route, and so does deleting many at once in any order.

mod common;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};
use vmbgp_lab_net::frrk8s::controller::FrrK8sSettings;
use vmbgp_lab_net::whole_lab::{IntegratedConfig, IntegratedLab};
use vmbgp_lab_net::{LabNetConfig, Router, TeardownGuard};

const WAIT: Duration = Duration::from_secs(20);

fn obj(v: Value) -> DynamicObject {
    serde_json::from_value(v).expect("object")
}

fn api(
    client: &kube::Client,
    ns: Option<&str>,
    gv: (&str, &str),
    kind: &str,
    plural: &str,
) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(gv.0, gv.1, kind), plural);
    match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    }
}

async fn ext_nexthops(netns: &str, prefix: &str) -> Vec<Ipv4Addr> {
    let out = tokio::process::Command::new("ip")
        .args(["-n", netns, "-j", "route", "show", prefix])
        .output()
        .await
        .expect("ip route");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let mut hops: Vec<Ipv4Addr> = Vec::new();
    for r in v.as_array().cloned().unwrap_or_default() {
        if let Some(g) = r["gateway"].as_str() {
            hops.push(g.parse().expect("gateway"));
        }
        for h in r["nexthops"].as_array().cloned().unwrap_or_default() {
            if let Some(g) = h["gateway"].as_str() {
                hops.push(g.parse().expect("gateway"));
            }
        }
    }
    hops.sort();
    hops
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < WAIT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn ping(netns: &str, addr: &str) -> bool {
    tokio::process::Command::new("ip")
        .args([
            "netns", "exec", netns, "ping", "-n", "-q", "-c", "1", "-W", "1", addr,
        ])
        .output()
        .await
        .map(|o| o.status.success())
        .unwrap_or(false)
}

async fn session_states(client: &kube::Client, node: &str) -> Vec<(String, String)> {
    let list = api(
        client,
        Some("frr-k8s-system"),
        ("frrk8s.metallb.io", "v1beta1"),
        "BGPSessionState",
        "bgpsessionstates",
    )
    .list(&ListParams::default().labels(&format!("frrk8s.metallb.io/node={node}")))
    .await
    .expect("list BGPSessionState");
    list.items
        .iter()
        .map(|o| {
            (
                o.data["status"]["peer"].as_str().unwrap_or("").to_string(),
                o.data["status"]["bgpStatus"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root, FRR and iproute2; ci/test.sh runs it (cargo test -- --include-ignored)"]
async fn advertised_cudn_routes_vm_traffic_and_status_objects_follow_frr() {
    common::require_prerequisites();
    let (id, dir) = common::unique("api");
    let _guard = TeardownGuard::new(&dir);
    let mut config = IntegratedConfig::new(LabNetConfig::new(
        &id,
        &dir,
        2,
        common::ext_config(2, common::BMP_PORT),
    ));
    config.api.boot_delay = vmbgp_lab_api::BootDelay::Fixed { ms: 20 };
    config.frrk8s = FrrK8sSettings {
        session_poll: Duration::from_millis(100),
        ..FrrK8sSettings::default()
    };
    let lab = IntegratedLab::up(config).await.expect("integrated lab up");
    assert!(lab.kubeconfig().exists());
    let client = lab.client();
    let ext = lab.net.info().ext_netns;

    // What the harness renders: namespace + CUDN + FRR template + RouteAdvertisements.
    api(&client, None, ("", "v1"), "Namespace", "namespaces")
        .create(&PostParams::default(), &obj(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "vmbgp-1", "labels": {
            "k8s.ovn.org/primary-user-defined-network": "", "vmbgp.io/cudn": "l2-a"}}})))
        .await
        .expect("namespace");
    api(&client, None, ("k8s.ovn.org", "v1"), "ClusterUserDefinedNetwork", "clusteruserdefinednetworks")
        .create(&PostParams::default(), &obj(json!({
            "apiVersion": "k8s.ovn.org/v1", "kind": "ClusterUserDefinedNetwork",
            "metadata": {"name": "l2-a", "labels": {"vmbgp.io/advertise": "true"}},
            "spec": {"namespaceSelector": {"matchLabels": {"vmbgp.io/cudn": "l2-a"}}, "network": {"topology": "Layer2", "layer2": {
                "role": "Primary", "subnets": ["198.19.5.0/24"], "ipam": {"lifecycle": "Persistent"}}}},
        })))
        .await
        .expect("cudn");
    api(&client, Some("frr-k8s-system"), ("frrk8s.metallb.io", "v1beta1"), "FRRConfiguration", "frrconfigurations")
        .create(&PostParams::default(), &obj(json!({
            "apiVersion": "frrk8s.metallb.io/v1beta1", "kind": "FRRConfiguration",
            "metadata": {"name": "vmbgp-peer-external", "namespace": "frr-k8s-system", "labels": {"vmbgp.io/frr-template": "true"}},
            "spec": {"nodeSelector": {}, "bgp": {"routers": [{"asn": 64513, "neighbors": [{
                "address": "198.18.0.155", "asn": 64512, "holdTime": "9s", "keepaliveTime": "3s", "connectTime": "1s"}]}]}},
        })))
        .await
        .expect("frr template");
    let ras = api(
        &client,
        None,
        ("k8s.ovn.org", "v1"),
        "RouteAdvertisements",
        "routeadvertisements",
    );
    ras.create(&PostParams::default(), &obj(json!({
        "apiVersion": "k8s.ovn.org/v1", "kind": "RouteAdvertisements", "metadata": {"name": "vmbgp-l2-a"},
        "spec": {"advertisements": ["PodNetwork"], "nodeSelector": {},
            "frrConfigurationSelector": {"matchLabels": {"vmbgp.io/frr-template": "true"}},
            "networkSelectors": [{"networkSelectionType": "ClusterUserDefinedNetworks",
                "clusterUserDefinedNetworkSelector": {"networkSelector": {"matchLabels": {"vmbgp.io/advertise": "true"}}}}]},
    })))
    .await
    .expect("route advertisements");

    // The CUDN's /24 at ext with every node as next hop.
    let both = vec![Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 18, 0, 2)];
    eventually("198.19.5.0/24 with both nodes at ext", || {
        let ext = ext.clone();
        let both = both.clone();
        async move { ext_nexthops(&ext, "198.19.5.0/24").await == both }
    })
    .await;

    // FRRNodeState reports the running config and success; BGPSessionState says Established.
    let node_states = api(
        &client,
        None,
        ("frrk8s.metallb.io", "v1beta1"),
        "FRRNodeState",
        "frrnodestates",
    );
    eventually("FRRNodeState node-1 success", || {
        let node_states = node_states.clone();
        async move {
            node_states
                .get_opt("node-1")
                .await
                .ok()
                .flatten()
                .is_some_and(|s| {
                    s.data["status"]["lastReloadResult"] == "success"
                        && s.data["status"]["lastConversionResult"] == "success"
                        && s.data["status"]["runningConfig"]
                            .as_str()
                            .is_some_and(|c| c.contains("network 198.19.5.0/24"))
                })
        }
    })
    .await;
    eventually("BGPSessionState node-1 Established", || {
        let client = client.clone();
        async move {
            session_states(&client, "node-1").await
                == vec![("198.18.0.155".to_string(), "Established".to_string())]
        }
    })
    .await;

    // A VM with a static IP runs on some node; ext pings it through the ECMP route.
    api(&client, Some("vmbgp-1"), ("kubevirt.io", "v1"), "VirtualMachine", "virtualmachines")
        .create(&PostParams::default(), &obj(json!({
            "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
            "metadata": {"name": "vm-1"},
            "spec": {"runStrategy": "Always", "template": {
                "metadata": {"annotations": {"network.kubevirt.io/addresses": "{\"default\": [\"198.19.5.10\"]}"}},
                "spec": {
                    "domain": {"devices": {"interfaces": [{"name": "default", "binding": {"name": "l2bridge"}}]}, "resources": {"requests": {"memory": "1Gi"}}},
                    "networks": [{"name": "default", "pod": {}}]}}},
        })))
        .await
        .expect("vm");
    eventually("ext pings the VM", || {
        let ext = ext.clone();
        async move { ping(&ext, "198.19.5.10").await }
    })
    .await;

    // A node bgpd restart shows in BGPSessionState (not Established) and recovers. A restarted bgpd
    // can re-establish within ~100 ms, faster than any status poll, so the uplink is held down across
    // the restart to keep the new session from coming up until the down state was published.
    lab.net
        .set_link(Router::Node(1), false)
        .await
        .expect("link down");
    lab.net
        .restart_bgpd(Router::Node(1))
        .await
        .expect("restart");
    let established = vec![("198.18.0.155".to_string(), "Established".to_string())];
    eventually(
        "BGPSessionState node-1 not Established after the restart",
        || {
            let client = client.clone();
            let established = established.clone();
            async move {
                let states = session_states(&client, "node-1").await;
                states.len() == 1 && states != established
            }
        },
    )
    .await;
    lab.net
        .set_link(Router::Node(1), true)
        .await
        .expect("link up");
    eventually("BGPSessionState node-1 Established again", || {
        let client = client.clone();
        let established = established.clone();
        async move { session_states(&client, "node-1").await == established }
    })
    .await;

    // Deleting the RouteAdvertisements withdraws the route.
    ras.delete("vmbgp-l2-a", &DeleteParams::default())
        .await
        .expect("delete RA");
    eventually("198.19.5.0/24 gone from ext", || {
        let ext = ext.clone();
        async move { ext_nexthops(&ext, "198.19.5.0/24").await.is_empty() }
    })
    .await;
    assert!(!ping(&ext, "198.19.5.10").await, "no route, no reply");

    // Network ground truth: the config apply per node and prefix, the address, the restart.
    let truth = std::fs::read_to_string(dir.join(vmbgp_lab_net::whole_lab::NET_GROUND_TRUTH_FILE))
        .expect("ground truth file");
    let events: Vec<Value> = truth
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    for node in ["node-1", "node-2"] {
        assert!(
            events.iter().any(|e| e["event"] == "frrConfigApplied"
                && e["node"] == node
                && e["prefixesAdded"] == json!(["198.19.5.0/24"])
                && e["result"] == "success"),
            "{node}: {truth}"
        );
        assert!(
            events.iter().any(|e| e["event"] == "frrConfigApplied"
                && e["node"] == node
                && e["prefixesRemoved"] == json!(["198.19.5.0/24"])),
            "{node} withdrawal: {truth}"
        );
    }
    assert!(
        events.iter().any(|e| e["event"] == "addressAdded"
            && e["address"] == "198.19.5.10"
            && e["vm"] == "vmbgp-1/vm-1"),
        "{truth}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "routerRestarted" && e["router"] == "node-1"),
        "{truth}"
    );
    assert!(
        events
            .iter()
            .all(|e| e["monoNs"].is_u64() && e["wall"].is_string()),
        "{truth}"
    );

    let report = lab.down().await.expect("down");
    assert!(report.problems.is_empty(), "{report:?}");
    common::assert_nothing_left(&id, &dir);
}

/// With a debounce, changes arriving close together are applied to FRR once, like frr-k8s's reloader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root, FRR and iproute2; ci/test.sh runs it (cargo test -- --include-ignored)"]
async fn debounce_coalesces_close_changes_into_one_apply() {
    common::require_prerequisites();
    let (id, dir) = common::unique("debounce");
    let _guard = TeardownGuard::new(&dir);
    let mut config = IntegratedConfig::new(LabNetConfig::new(
        &id,
        &dir,
        1,
        common::ext_config(1, common::BMP_PORT),
    ));
    config.frrk8s = FrrK8sSettings {
        debounce: Some(Duration::from_millis(500)),
        ..FrrK8sSettings::default()
    };
    let lab = IntegratedLab::up(config).await.expect("integrated lab up");
    let client = lab.client();
    let configs = api(
        &client,
        Some("frr-k8s-system"),
        ("frrk8s.metallb.io", "v1beta1"),
        "FRRConfiguration",
        "frrconfigurations",
    );
    // Let the initial (empty) reconcile happen first.
    tokio::time::sleep(Duration::from_millis(800)).await;
    for i in 0..3 {
        let prefix = format!("198.19.7.{}/32", 10 + i);
        configs
            .create(
                &PostParams::default(),
                &obj(json!({
                    "apiVersion": "frrk8s.metallb.io/v1beta1", "kind": "FRRConfiguration",
                    "metadata": {"name": format!("hostroute-{i}"), "namespace": "frr-k8s-system"},
                    "spec": {"nodeSelector": {"matchLabels": {"kubernetes.io/hostname": "node-1"}},
                        "bgp": {"routers": [{"asn": 64513, "prefixes": [prefix], "neighbors": [{
                            "address": "198.18.0.155", "asn": 64512,
                            "toAdvertise": {"allowed": {"prefixes": [prefix]}}}]}]}},
                })),
            )
            .await
            .expect("create");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let path = dir.join(vmbgp_lab_net::whole_lab::NET_GROUND_TRUTH_FILE);
    let applies_with_prefixes = || -> Vec<Value> {
        std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|e| {
                e["event"] == "frrConfigApplied"
                    && e["prefixesAdded"].as_array().is_some_and(|a| !a.is_empty())
            })
            .collect()
    };
    eventually("the debounced apply", || {
        let n = applies_with_prefixes().len();
        async move { n > 0 }
    })
    .await;
    // Longer than the debounce: no further apply follows.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let applies = applies_with_prefixes();
    assert_eq!(
        applies.len(),
        1,
        "one apply for three close changes: {applies:?}"
    );
    assert_eq!(
        applies[0]["prefixesAdded"],
        json!(["198.19.7.10/32", "198.19.7.11/32", "198.19.7.12/32"])
    );
    let report = lab.down().await.expect("down");
    assert!(report.problems.is_empty(), "{report:?}");
    common::assert_nothing_left(&id, &dir);
}

/// frr-k8s's debounce window runs from the first change of a burst: changes that keep coming do not
/// postpone the reload (a trailing, re-armed debounce would apply nothing until they stop).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root, FRR and iproute2; ci/test.sh runs it (cargo test -- --include-ignored)"]
async fn debounce_window_runs_from_the_first_change_of_a_burst() {
    common::require_prerequisites();
    let (id, dir) = common::unique("debfirst");
    let _guard = TeardownGuard::new(&dir);
    let mut config = IntegratedConfig::new(LabNetConfig::new(
        &id,
        &dir,
        1,
        common::ext_config(1, common::BMP_PORT),
    ));
    config.frrk8s = FrrK8sSettings {
        debounce: Some(Duration::from_millis(500)),
        ..FrrK8sSettings::default()
    };
    let lab = IntegratedLab::up(config).await.expect("integrated lab up");
    let client = lab.client();
    let configs = api(
        &client,
        Some("frr-k8s-system"),
        ("frrk8s.metallb.io", "v1beta1"),
        "FRRConfiguration",
        "frrconfigurations",
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    // A change every 250 ms for 1.75 s: longer than the window, each gap shorter than it.
    let prefixes: Vec<String> = (0..8).map(|i| format!("198.19.8.{}/32", 10 + i)).collect();
    for (i, prefix) in prefixes.iter().enumerate() {
        configs
            .create(
                &PostParams::default(),
                &obj(json!({
                    "apiVersion": "frrk8s.metallb.io/v1beta1", "kind": "FRRConfiguration",
                    "metadata": {"name": format!("burst-{i}"), "namespace": "frr-k8s-system"},
                    "spec": {"nodeSelector": {"matchLabels": {"kubernetes.io/hostname": "node-1"}},
                        "bgp": {"routers": [{"asn": 64513, "prefixes": [prefix], "neighbors": [{
                            "address": "198.18.0.155", "asn": 64512,
                            "toAdvertise": {"allowed": {"prefixes": [prefix]}}}]}]}},
                })),
            )
            .await
            .expect("create");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let path = dir.join(vmbgp_lab_net::whole_lab::NET_GROUND_TRUTH_FILE);
    let first_apply = std::fs::read_to_string(&path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| {
            e["event"] == "frrConfigApplied"
                && e["prefixesAdded"].as_array().is_some_and(|a| !a.is_empty())
        })
        .expect("an apply while the changes kept coming");
    let added = first_apply["prefixesAdded"].as_array().expect("array");
    assert!(
        added.first() == Some(&json!(prefixes[0])) && !added.contains(&json!(prefixes[7])),
        "the first apply should hold the burst's first changes, not wait for its end: {added:?}"
    );
    let report = lab.down().await.expect("down");
    assert!(report.problems.is_empty(), "{report:?}");
    common::assert_nothing_left(&id, &dir);
}

/// Each prefix's last FIB event in ext's ground truth (the lab's own netlink observer): true when the
/// route is in the FIB. Fails when the observer lost notifications, since absence would prove nothing.
fn fib_state(dir: &std::path::Path) -> std::collections::BTreeMap<String, bool> {
    let truth = std::fs::read_to_string(dir.join(vmbgp_lab_net::whole_lab::NET_GROUND_TRUTH_FILE))
        .unwrap_or_default();
    let mut state = std::collections::BTreeMap::new();
    for line in truth.lines() {
        let event: Value = serde_json::from_str(line).expect("json line");
        assert_ne!(
            event["event"], "fibObserverOverrun",
            "the FIB observer lost events"
        );
        if let Some(prefix) = event["prefix"].as_str() {
            match event["event"].as_str() {
                Some("fibRouteAdded") => state.insert(prefix.to_string(), true),
                Some("fibRouteRemoved") => state.insert(prefix.to_string(), false),
                _ => None,
            };
        }
    }
    state
}

/// Many RouteAdvertisements deleted at once, in random order and interleaved with their CUDN and
/// namespace deletes, round after round: every prefix leaves ext's FIB, as the lab's own observer
/// sees it. (The lab's OVN-K once regenerated configurations for RAs deleted meanwhile.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root, FRR and iproute2; ci/test.sh runs it (cargo test -- --include-ignored)"]
async fn deleting_many_route_advertisements_in_any_order_withdraws_every_prefix() {
    use rand::seq::SliceRandom;
    const NETWORKS: usize = 12;
    const ROUNDS: usize = 3;
    common::require_prerequisites();
    let (id, dir) = common::unique("ra-stress");
    let _guard = TeardownGuard::new(&dir);
    let config = IntegratedConfig::new(LabNetConfig::new(
        &id,
        &dir,
        2,
        common::ext_config(2, common::BMP_PORT),
    ));
    let lab = IntegratedLab::up(config).await.expect("integrated lab up");
    let client = lab.client();
    let namespaces = api(&client, None, ("", "v1"), "Namespace", "namespaces");
    let cudns = api(
        &client,
        None,
        ("k8s.ovn.org", "v1"),
        "ClusterUserDefinedNetwork",
        "clusteruserdefinednetworks",
    );
    let ras = api(
        &client,
        None,
        ("k8s.ovn.org", "v1"),
        "RouteAdvertisements",
        "routeadvertisements",
    );
    api(&client, Some("frr-k8s-system"), ("frrk8s.metallb.io", "v1beta1"), "FRRConfiguration", "frrconfigurations")
        .create(&PostParams::default(), &obj(json!({
            "apiVersion": "frrk8s.metallb.io/v1beta1", "kind": "FRRConfiguration",
            "metadata": {"name": "stress-peer", "namespace": "frr-k8s-system", "labels": {"stress/template": "true"}},
            "spec": {"nodeSelector": {}, "bgp": {"routers": [{"asn": 64513, "neighbors": [{
                "address": "198.18.0.155", "asn": 64512, "holdTime": "9s", "keepaliveTime": "3s", "connectTime": "1s"}]}]}},
        })))
        .await
        .expect("frr template");

    let mut rng = rand::rng();
    for round in 0..ROUNDS {
        let names: Vec<String> = (0..NETWORKS).map(|i| format!("s{round}x{i}")).collect();
        let prefixes: Vec<String> = (0..NETWORKS)
            .map(|i| format!("198.19.{}.0/24", 100 + round * NETWORKS + i))
            .collect();
        for (name, prefix) in names.iter().zip(&prefixes) {
            namespaces
                .create(&PostParams::default(), &obj(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name,
                    "labels": {"k8s.ovn.org/primary-user-defined-network": "", "stress/net": name}}})))
                .await
                .expect("namespace");
            cudns
                .create(&PostParams::default(), &obj(json!({
                    "apiVersion": "k8s.ovn.org/v1", "kind": "ClusterUserDefinedNetwork",
                    "metadata": {"name": name, "labels": {"stress/net": name}},
                    "spec": {"namespaceSelector": {"matchLabels": {"stress/net": name}}, "network": {"topology": "Layer2", "layer2": {
                        "role": "Primary", "subnets": [prefix], "ipam": {"lifecycle": "Persistent"}}}},
                })))
                .await
                .expect("cudn");
            ras.create(&PostParams::default(), &obj(json!({
                "apiVersion": "k8s.ovn.org/v1", "kind": "RouteAdvertisements", "metadata": {"name": name},
                "spec": {"advertisements": ["PodNetwork"], "nodeSelector": {},
                    "frrConfigurationSelector": {"matchLabels": {"stress/template": "true"}},
                    "networkSelectors": [{"networkSelectionType": "ClusterUserDefinedNetworks",
                        "clusterUserDefinedNetworkSelector": {"networkSelector": {"matchLabels": {"stress/net": name}}}}]},
            })))
            .await
            .expect("route advertisements");
        }
        eventually(&format!("round {round}: every prefix in ext's FIB"), || {
            let dir = dir.clone();
            let prefixes = prefixes.clone();
            async move {
                let state = fib_state(&dir);
                prefixes.iter().all(|p| state.get(p) == Some(&true))
            }
        })
        .await;

        let mut deletes: Vec<(&Api<DynamicObject>, &String)> = names
            .iter()
            .flat_map(|name| [(&ras, name), (&cudns, name), (&namespaces, name)])
            .collect();
        deletes.shuffle(&mut rng);
        let results =
            futures::future::join_all(deletes.iter().map(|(api, name)| async move {
                api.delete(name, &DeleteParams::default()).await
            }))
            .await;
        for ((_, name), result) in deletes.iter().zip(results) {
            result.unwrap_or_else(|e| panic!("round {round}: delete {name}: {e}"));
        }
        let start = Instant::now();
        loop {
            let state = fib_state(&dir);
            let left: Vec<&String> = prefixes
                .iter()
                .filter(|p| state.get(*p) != Some(&false))
                .collect();
            if left.is_empty() {
                break;
            }
            assert!(
                start.elapsed() < WAIT,
                "round {round}: still in ext's FIB {WAIT:?} after the deletes: {left:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    let report = lab.down().await.expect("down");
    assert!(report.problems.is_empty(), "{report:?}");
    common::assert_nothing_left(&id, &dir);
}
