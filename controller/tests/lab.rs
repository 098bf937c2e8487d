//! The controller against the lab's API server (in-process, no root): its simulated KubeVirt,
//! IPAM and OVN-K controllers produce VMIs, IPAMClaims and OVN-K's generated FRRConfigurations;
//! the controller must follow create, migration and delete, aggregate, and cap; two replicas
//! elect a leader on the lab's Lease, and capped VMs' Warning Events land in its Events API.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use ipnet::IpNet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use kube::api::{DynamicObject, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use vmbgp_controller::controller::{Controller, RecordedEvent, frr_resource};
use vmbgp_controller::desired::{NodeAdvertisement, STATUS_ANNOTATION, Settings, config_name};
use vmbgp_controller::http::Health;
use vmbgp_controller::leader::{Elector, KubeLeaseStore, Timing};
use vmbgp_controller::metrics::Metrics;
use vmbgp_lab_api::launch::{Lab, LabConfig};

mod common;
use common::{LabClient, WAIT, ar, create, lab_client, running_vmi};

const FRR_NS: &str = "frr-k8s-system";
const VM_NS: &str = "vms";

struct Setup {
    lab: Lab,
    client: Client,
    _dir: tempfile::TempDir,
    metrics: Arc<Metrics>,
    events: tokio::sync::mpsc::UnboundedReceiver<RecordedEvent>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn object(value: Value) -> DynamicObject {
    serde_json::from_value(value).expect("object")
}

/// A lab with one advertised host-route network and its RouteAdvertisements, and a client of it.
async fn lab_with_network(nodes: usize) -> (Lab, Client, tempfile::TempDir) {
    let LabClient {
        lab, client, dir, ..
    } = lab_client(LabConfig {
        nodes,
        frr_namespace: FRR_NS.into(),
        ..LabConfig::default()
    })
    .await;

    create(&client, None, ar("", "v1", "Namespace", "namespaces"), json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": VM_NS, "labels": {"k8s.ovn.org/primary-user-defined-network": "", "vmbgp.io/cudn": "net1"}}
    })).await;
    create(&client, None, ar("k8s.ovn.org", "v1", "ClusterUserDefinedNetwork", "clusteruserdefinednetworks"), json!({
        "apiVersion": "k8s.ovn.org/v1", "kind": "ClusterUserDefinedNetwork",
        "metadata": {"name": "net1", "labels": {"vmbgp.io/advertise": "true", "vmbgp.io/host-routes": "true"}},
        "spec": {"namespaceSelector": {"matchLabels": {"vmbgp.io/cudn": "net1"}},
            "network": {"topology": "Layer2", "layer2": {"role": "Primary", "subnets": ["198.19.0.0/24"],
                "ipam": {"lifecycle": "Persistent"}}}}
    })).await;
    create(&client, Some(FRR_NS), frr_resource(), json!({
        "apiVersion": "frrk8s.metallb.io/v1beta1", "kind": "FRRConfiguration",
        "metadata": {"name": "peer-ext", "namespace": FRR_NS, "labels": {"vmbgp.io/frr-template": "true"}},
        "spec": {"nodeSelector": {}, "bgp": {"routers": [{"asn": 64513, "neighbors": [
            {"address": "198.18.0.155", "asn": 64512, "holdTime": "9s", "keepaliveTime": "3s"}]}]}}
    })).await;
    create(&client, None, ar("k8s.ovn.org", "v1", "RouteAdvertisements", "routeadvertisements"), json!({
        "apiVersion": "k8s.ovn.org/v1", "kind": "RouteAdvertisements",
        "metadata": {"name": "ra1"},
        "spec": {"advertisements": ["PodNetwork"], "nodeSelector": {},
            "frrConfigurationSelector": {"matchLabels": {"vmbgp.io/frr-template": "true"}},
            "networkSelectors": [{"networkSelectionType": "ClusterUserDefinedNetworks",
                "clusterUserDefinedNetworkSelector": {"networkSelector": {"matchLabels": {"vmbgp.io/advertise": "true"}}}}]}
    })).await;
    (lab, client, dir)
}

async fn start(nodes: usize, settings: Settings) -> Setup {
    let (lab, client, dir) = lab_with_network(nodes).await;
    let metrics = Arc::new(Metrics::new());
    let stop = CancellationToken::new();
    let (_leading_tx, leading) = watch::channel(true);
    let mut controller = Controller::new(client.clone(), settings, metrics.clone());
    let events = controller.tap_events();
    let health = Arc::new(Health::default());
    let run_stop = stop.clone();
    let task = tokio::spawn(async move {
        // Keep the sender alive for the controller's life: a closed channel ends the loop.
        let _leading_tx = _leading_tx;
        controller
            .run(health, leading, Duration::from_secs(60), run_stop)
            .await
            .expect("controller runs");
    });
    Setup {
        lab,
        client,
        _dir: dir,
        metrics,
        events,
        stop,
        task,
    }
}

impl Setup {
    async fn stop(self) {
        self.stop.cancel();
        self.task.await.expect("controller stops");
        self.lab.stop().await.expect("lab stops");
    }

    async fn vm(&self, name: &str, ip: &str) {
        vm(&self.client, name, ip).await;
    }

    async fn running_node(&self, name: &str) -> String {
        running_node(&self.lab, name).await
    }

    async fn config_where(&self, node: &str, pred: impl Fn(&Value) -> bool) -> Arc<Value> {
        config_where(&self.lab, node, pred).await
    }

    async fn config_gone(&self, node: &str) {
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), FRR_NS, &frr_resource());
        let name = config_name(node);
        tokio::time::timeout(WAIT, async {
            while api.get_opt(&name).await.expect("get").is_some() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("configuration of {node} still exists"));
    }
}

async fn vm(client: &Client, name: &str, ip: &str) {
    create(client, Some(VM_NS), ar("kubevirt.io", "v1", "VirtualMachine", "virtualmachines"), json!({
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
        "metadata": {"name": name, "namespace": VM_NS},
        "spec": {"runStrategy": "Always", "template": {
            "metadata": {"annotations": {"network.kubevirt.io/addresses": format!("{{\"default\": [\"{ip}\"]}}")}},
            "spec": {
                "domain": {"devices": {"interfaces": [{"name": "default", "binding": {"name": "l2bridge"}}]},
                    "resources": {"requests": {"memory": "1Gi"}}},
                "networks": [{"name": "default", "pod": {}}]}}}
    })).await;
}

/// The node the VMI runs on once Running.
async fn running_node(lab: &Lab, name: &str) -> String {
    running_vmi(lab, VM_NS, name).await["status"]["nodeName"]
        .as_str()
        .expect("node")
        .to_string()
}

/// Waits until the node's configuration exists and satisfies `pred`; returns it.
async fn config_where(lab: &Lab, node: &str, pred: impl Fn(&Value) -> bool) -> Arc<Value> {
    lab.wait_for(
        "frrk8s.metallb.io/v1beta1",
        "FRRConfiguration",
        Some(FRR_NS),
        &config_name(node),
        WAIT,
        pred,
    )
    .await
    .unwrap_or_else(|e| panic!("configuration of {node}: {e}"))
}

/// Metrics are updated at the end of the reconcile that wrote the configuration a test saw.
async fn metrics_show(metrics: &Metrics, lines: &[&str]) {
    let found = tokio::time::timeout(WAIT, async {
        loop {
            let text = metrics.encode();
            if lines.iter().all(|l| text.contains(l)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(found.is_ok(), "{lines:?} not in\n{}", metrics.encode());
}

fn host_prefixes(config: &Value) -> BTreeSet<IpNet> {
    NodeAdvertisement::parse_spec(&config["spec"]).host_prefixes()
}

fn prefixes(list: &[&str]) -> BTreeSet<IpNet> {
    list.iter().map(|p| p.parse().expect("prefix")).collect()
}

fn settings() -> Settings {
    Settings::new(FRR_NS)
}

#[tokio::test]
async fn follows_create_migration_and_delete_make_before_break() {
    let s = start(2, settings()).await;
    // Everything the lab's frr-k8s would read, in order, from before the first VM.
    let api: Api<DynamicObject> = Api::namespaced_with(s.client.clone(), FRR_NS, &frr_resource());
    let (events_tx, mut events_rx) = tokio::sync::mpsc::unbounded_channel();
    let recorder = tokio::spawn(async move {
        let mut stream = std::pin::pin!(watcher(api, watcher::Config::default()));
        while let Some(Ok(event)) = stream.next().await {
            let _ = events_tx.send(event);
        }
    });

    s.vm("vm-1", "198.19.0.10").await;
    let source = s.running_node("vm-1").await;
    let config = s
        .config_where(&source, |c| {
            host_prefixes(c) == prefixes(&["198.19.0.10/32"])
        })
        .await;
    let neighbor = &config["spec"]["bgp"]["routers"][0]["neighbors"][0];
    assert_eq!(neighbor["address"], "198.18.0.155");
    assert_eq!(
        neighbor["holdTime"], "9s",
        "session settings copied from OVN-K's router"
    );
    assert_eq!(
        neighbor["toAdvertise"]["withCommunity"],
        json!([{"community": "64512:200", "prefixes": ["198.19.0.10/32"]}])
    );
    assert_eq!(
        config["spec"]["nodeSelector"]["matchLabels"]["kubernetes.io/hostname"],
        json!(source)
    );

    create(
        &s.client,
        Some(VM_NS),
        ar(
            "kubevirt.io",
            "v1",
            "VirtualMachineInstanceMigration",
            "virtualmachineinstancemigrations",
        ),
        json!({
            "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstanceMigration",
            "metadata": {"name": "mig-1", "namespace": VM_NS}, "spec": {"vmiName": "vm-1"}
        }),
    )
    .await;
    let vmi = s
        .lab
        .wait_for(
            "kubevirt.io/v1",
            "VirtualMachineInstance",
            Some(VM_NS),
            "vm-1",
            WAIT,
            |o| o["status"]["migrationState"]["completed"] == true,
        )
        .await
        .expect("migration completes");
    let target = vmi["status"]["nodeName"]
        .as_str()
        .expect("target")
        .to_string();
    assert_ne!(target, source);
    s.config_where(&target, |c| {
        host_prefixes(c) == prefixes(&["198.19.0.10/32"])
    })
    .await;
    s.config_gone(&source).await;

    // Make before break: the target advertised the /32 before the source stopped.
    let mut target_has_it = None;
    let mut source_lost_it = None;
    let mut seen = 0;
    while target_has_it.is_none() || source_lost_it.is_none() {
        let event = tokio::time::timeout(WAIT, events_rx.recv())
            .await
            .expect("event")
            .expect("watch open");
        seen += 1;
        let (object, deleted) = match event {
            watcher::Event::Apply(o) | watcher::Event::InitApply(o) => (o, false),
            watcher::Event::Delete(o) => (o, true),
            watcher::Event::Init | watcher::Event::InitDone => continue,
        };
        let value = serde_json::to_value(&object).expect("json");
        let name = object.metadata.name.clone().unwrap_or_default();
        let has = !deleted && host_prefixes(&value).contains(&"198.19.0.10/32".parse().expect("p"));
        if name == config_name(&target) && has && target_has_it.is_none() {
            target_has_it = Some(seen);
        }
        if name == config_name(&source) && !has && target_has_it.is_some()
            || name == config_name(&source) && deleted
        {
            source_lost_it.get_or_insert(seen);
        }
    }
    assert!(
        target_has_it < source_lost_it,
        "target {target_has_it:?} source {source_lost_it:?}"
    );
    metrics_show(
        &s.metrics,
        &[
            "vmbgp_controller_migrations_followed_total 1",
            "vmbgp_controller_migration_follow_seconds_count 1",
            "vmbgp_controller_make_before_break_overlaps_total 1",
        ],
    )
    .await;

    // Deleting the VM withdraws the route: no configuration is left.
    let vms: Api<DynamicObject> = Api::namespaced_with(
        s.client.clone(),
        VM_NS,
        &ar("kubevirt.io", "v1", "VirtualMachine", "virtualmachines"),
    );
    vms.delete("vm-1", &Default::default())
        .await
        .expect("delete VM");
    s.config_gone(&target).await;
    recorder.abort();
    s.stop().await;
}

#[tokio::test]
async fn aggregates_a_nodes_consecutive_vms_and_caps_a_full_node() {
    let mut settings = settings();
    settings.aggregate = true;
    // Any subset of four aligned addresses is at most two prefixes, so the ramp-up never caps.
    settings.max_routes_per_node = Some(2);
    let s = start(1, settings).await;
    for i in 4..8 {
        s.vm(&format!("vm-{i}"), &format!("198.19.0.{i}")).await;
    }
    let node = s.running_node("vm-4").await;
    let config = s
        .config_where(&node, |c| host_prefixes(c) == prefixes(&["198.19.0.4/30"]))
        .await;
    assert_eq!(
        config["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "vmbgp-controller"
    );
    s.vm("vm-9", "198.19.0.9").await;
    s.config_where(&node, |c| {
        host_prefixes(c) == prefixes(&["198.19.0.4/30", "198.19.0.9/32"])
    })
    .await;
    // Another non-adjacent VM makes three prefixes: past the cap of two, the node advertises none.
    s.vm("vm-11", "198.19.0.11").await;
    let capped = s
        .config_where(&node, |c| {
            c["metadata"]["annotations"][STATUS_ANNOTATION]
                .as_str()
                .is_some_and(|t| t.starts_with("Capped"))
        })
        .await;
    assert!(host_prefixes(&capped).is_empty(), "{capped}");
    metrics_show(
        &s.metrics,
        &[
            &format!("vmbgp_controller_node_capped{{node=\"{node}\"}} 1"),
            &format!("vmbgp_controller_routes_advertised{{node=\"{node}\"}} 0"),
            "vmbgp_controller_not_advertised_vms 6",
        ],
    )
    .await;
    // One Warning Event per capped VM, recorded once however many reconciles follow.
    let mut s = s;
    let mut capped_events = BTreeSet::new();
    while capped_events.len() < 6 {
        let event = tokio::time::timeout(WAIT, s.events.recv())
            .await
            .expect("event in time")
            .expect("tap open");
        assert_eq!(event.reason, "HostRouteNodeCapped", "{event:?}");
        assert!(
            event.note.contains("3 host routes, over the cap of 2"),
            "{event:?}"
        );
        assert!(
            capped_events.insert(event.vm.name.clone()),
            "duplicate {event:?}"
        );
    }
    assert_eq!(
        capped_events,
        ["vm-4", "vm-5", "vm-6", "vm-7", "vm-9", "vm-11"]
            .map(String::from)
            .into()
    );
    s.vm("vm-20", "198.19.0.20").await;
    s.config_where(&node, |c| {
        c["metadata"]["annotations"][STATUS_ANNOTATION]
            .as_str()
            .is_some_and(|t| t.contains("Capped: 4 host routes"))
    })
    .await;
    // The reason changed (4 routes now): every VM is told once more, and nothing was repeated
    // in between by the reconciles our own writes triggered.
    let mut again = BTreeSet::new();
    while again.len() < 7 {
        let event = tokio::time::timeout(WAIT, s.events.recv())
            .await
            .expect("event in time")
            .expect("tap open");
        assert!(
            event.note.contains("4 host routes, over the cap of 2"),
            "{event:?}"
        );
        assert!(again.insert(event.vm.name.clone()), "duplicate {event:?}");
    }
    assert!(again.contains("vm-20"));
    s.stop().await;
}

#[tokio::test]
async fn converges_through_api_errors_watch_cuts_and_expired_resource_versions() {
    let s = start(2, settings()).await;
    s.lab.set_faults(vmbgp_lab_api::faults::FaultConfig {
        error_rate_500: 0.2,
        watch_cut_every: Some(Duration::from_millis(300)),
        gone_on_resume: true,
        ..Default::default()
    });
    // The test's own requests retry through the same faults.
    let vms: Api<DynamicObject> = Api::namespaced_with(
        s.client.clone(),
        VM_NS,
        &ar("kubevirt.io", "v1", "VirtualMachine", "virtualmachines"),
    );
    for (name, ip) in [
        ("vm-a", "198.19.0.30"),
        ("vm-b", "198.19.0.31"),
        ("vm-c", "198.19.0.32"),
    ] {
        let vm = object(json!({
            "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
            "metadata": {"name": name, "namespace": VM_NS},
            "spec": {"runStrategy": "Always", "template": {
                "metadata": {"annotations": {"network.kubevirt.io/addresses": format!("{{\"default\": [\"{ip}\"]}}")}},
                "spec": {"domain": {"devices": {"interfaces": [{"name": "default", "binding": {"name": "l2bridge"}}]},
                    "resources": {"requests": {"memory": "1Gi"}}}, "networks": [{"name": "default", "pod": {}}]}}}
        }));
        tokio::time::timeout(WAIT, async {
            loop {
                match vms.create(&PostParams::default(), &vm).await {
                    Ok(_) => return,
                    Err(kube::Error::Api(e)) if e.code == 409 => return,
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        })
        .await
        .expect("VM created through the faults");
    }
    let mut expected: std::collections::BTreeMap<String, BTreeSet<IpNet>> = Default::default();
    for (name, ip) in [
        ("vm-a", "198.19.0.30"),
        ("vm-b", "198.19.0.31"),
        ("vm-c", "198.19.0.32"),
    ] {
        let node = s.running_node(name).await;
        expected
            .entry(node)
            .or_default()
            .insert(format!("{ip}/32").parse().expect("prefix"));
    }
    for (node, want) in &expected {
        s.config_where(node, |c| &host_prefixes(c) == want).await;
    }
    s.lab.set_faults(Default::default());
    s.stop().await;
}

/// One replica as `vmbgp-controller run` wires it: an elector on the lab's Lease publishing
/// leadership to a controller that writes only while it leads.
struct Replica {
    leading: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    elector: tokio::task::JoinHandle<()>,
    controller: tokio::task::JoinHandle<()>,
}

const LEASE_NS: &str = "vmbgp-system";
const LEASE_NAME: &str = "vmbgp-controller";

fn replica(client: &Client, identity: &str) -> Replica {
    let (leading_tx, leading) = watch::channel(false);
    let stop = CancellationToken::new();
    let store = KubeLeaseStore::new(client.clone(), LEASE_NS, LEASE_NAME);
    let timing = Timing {
        lease_duration: Duration::from_secs(3),
        retry_period: Duration::from_millis(200),
    };
    let elector = tokio::spawn(Elector::new(store, identity, timing).run(leading_tx, stop.clone()));
    let metrics = Arc::new(Metrics::new());
    let controller = Controller::new(client.clone(), settings(), metrics.clone());
    let run_stop = stop.clone();
    let rx = leading.clone();
    let controller = tokio::spawn(async move {
        controller
            .run(
                Arc::new(Health::default()),
                rx,
                Duration::from_secs(60),
                run_stop,
            )
            .await
            .expect("controller runs");
    });
    Replica {
        leading,
        metrics,
        stop,
        elector,
        controller,
    }
}

impl Replica {
    async fn leads(&mut self) {
        tokio::time::timeout(WAIT, self.leading.wait_for(|l| *l))
            .await
            .expect("leads in time")
            .expect("elector running");
    }

    /// A clean stop: the elector releases the Lease and the controller ends with it.
    async fn stop(self) {
        self.stop.cancel();
        self.elector.await.expect("elector stops");
        self.controller.await.expect("controller stops");
    }
}

async fn lab_lease(client: &Client) -> Lease {
    Api::<Lease>::namespaced(client.clone(), LEASE_NS)
        .get(LEASE_NAME)
        .await
        .expect("the Lease in the lab")
}

fn holder(lease: &Lease) -> Option<String> {
    lease.spec.as_ref().and_then(|s| s.holder_identity.clone())
}

#[tokio::test]
async fn two_replicas_elect_one_leader_on_the_labs_lease_and_the_other_takes_over() {
    let (lab, client, _dir) = lab_with_network(1).await;
    create(
        &client,
        None,
        ar("", "v1", "Namespace", "namespaces"),
        json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": LEASE_NS}}),
    )
    .await;
    let mut a = replica(&client, "replica-a");
    a.leads().await;
    let mut b = replica(&client, "replica-b");
    assert_eq!(
        holder(&lab_lease(&client).await).as_deref(),
        Some("replica-a")
    );

    // Only the leader reconciles and writes.
    vm(&client, "vm-1", "198.19.0.41").await;
    let node = running_node(&lab, "vm-1").await;
    config_where(&lab, &node, |c| {
        host_prefixes(c) == prefixes(&["198.19.0.41/32"])
    })
    .await;
    // b has watched a renew for more than a lease duration and still follows.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(!*b.leading.borrow(), "b leads while a renews");
    let lease = lab_lease(&client).await;
    assert_eq!(holder(&lease).as_deref(), Some("replica-a"));
    let b_metrics = b.metrics.encode();
    assert!(
        b_metrics.contains("vmbgp_controller_reconcile_duration_seconds_count 0"),
        "a follower reconciled:\n{b_metrics}"
    );
    metrics_show(&a.metrics, &["vmbgp_controller_leader 1"]).await;

    // a stops cleanly: it releases the Lease, b takes over without waiting out the duration.
    a.stop().await;
    b.leads().await;
    let lease = lab_lease(&client).await;
    assert_eq!(holder(&lease).as_deref(), Some("replica-b"));
    assert_eq!(
        lease.spec.as_ref().and_then(|s| s.lease_transitions),
        Some(1)
    );
    // The new leader owns the configuration: a new VM's route is written by b alone.
    vm(&client, "vm-2", "198.19.0.43").await;
    config_where(&lab, &node, |c| {
        host_prefixes(c) == prefixes(&["198.19.0.41/32", "198.19.0.43/32"])
    })
    .await;
    metrics_show(&b.metrics, &["vmbgp_controller_leader 1"]).await;
    b.stop().await;
    assert_eq!(holder(&lab_lease(&client).await), None, "released on stop");
    lab.stop().await.expect("lab stops");
}

#[tokio::test]
async fn a_capped_nodes_warning_events_arrive_through_the_labs_events_api() {
    let mut settings = settings();
    settings.max_routes_per_node = Some(1);
    let s = start(1, settings).await;
    s.vm("vm-a", "198.19.0.51").await;
    s.vm("vm-b", "198.19.0.53").await;
    let events: Api<K8sEvent> = Api::namespaced(s.client.clone(), VM_NS);
    // The Warning Events kube-runtime's Recorder created, as `kubectl events` would list them.
    let capped = |list: &[K8sEvent], count: i32| -> BTreeSet<String> {
        list.iter()
            .filter(|e| {
                e.type_.as_deref() == Some("Warning")
                    && e.reason.as_deref() == Some("HostRouteNodeCapped")
                    && e.reporting_controller.as_deref() == Some("vmbgp-controller")
                    && e.reporting_instance.as_deref() == Some("default")
                    && e.series.as_ref().map_or(1, |s| s.count) >= count
            })
            .filter_map(|e| e.regarding.as_ref())
            .filter(|r| r.kind.as_deref() == Some("VirtualMachineInstance"))
            .filter_map(|r| r.name.clone())
            .collect()
    };
    let wait_for_events = |count: i32| {
        let events = events.clone();
        async move {
            tokio::time::timeout(WAIT, async {
                loop {
                    let list = events.list(&Default::default()).await.expect("list Events");
                    let found = capped(&list.items, count);
                    if found.len() == 2 {
                        return list.items;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
            .await
            .unwrap_or_else(|_| panic!("no capped Events (count {count}) for both VMs"))
        }
    };
    let first = wait_for_events(1).await;
    let note = first
        .iter()
        .find_map(|e| e.note.clone())
        .unwrap_or_default();
    assert!(note.contains("2 host routes, over the cap of 1"), "{note}");
    // A third VM changes the reason's text: the Recorder repeats the same Event as a series,
    // merge-patched through the lab (the same two Event objects, count 2).
    s.vm("vm-c", "198.19.0.55").await;
    let again = wait_for_events(2).await;
    let names: BTreeSet<Option<String>> = first.iter().map(|e| e.metadata.name.clone()).collect();
    assert!(
        again
            .iter()
            .filter(|e| e.series.is_some())
            .all(|e| names.contains(&e.metadata.name)),
        "a series is kept on the first Event"
    );
    s.stop().await;
}
