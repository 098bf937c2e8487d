//! The controller against the lab's API server (in-process, no root): its simulated KubeVirt,
//! IPAM and OVN-K controllers produce VMIs, IPAMClaims and OVN-K's generated FRRConfigurations;
//! the controller must follow create, migration and delete, aggregate, and cap.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use ipnet::IpNet;
use kube::api::{DynamicObject, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use vmbgp_controller::controller::{Controller, RecordedEvent, frr_resource};
use vmbgp_controller::desired::{NodeAdvertisement, STATUS_ANNOTATION, Settings, config_name};
use vmbgp_controller::http::Health;
use vmbgp_controller::metrics::Metrics;
use vmbgp_lab_api::launch::{Lab, LabConfig};

const FRR_NS: &str = "frr-k8s-system";
const VM_NS: &str = "vms";
/// Generous: a wait that fails is a bug, and its length is never asserted.
const WAIT: Duration = Duration::from_secs(60);

struct Setup {
    lab: Lab,
    client: Client,
    _dir: tempfile::TempDir,
    metrics: Arc<Metrics>,
    events: tokio::sync::mpsc::UnboundedReceiver<RecordedEvent>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn ar(group: &str, version: &str, kind: &str, plural: &str) -> kube::discovery::ApiResource {
    kube::discovery::ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: if group.is_empty() {
            version.into()
        } else {
            format!("{group}/{version}")
        },
        kind: kind.into(),
        plural: plural.into(),
    }
}

fn object(value: Value) -> DynamicObject {
    serde_json::from_value(value).expect("object")
}

async fn create(
    client: &Client,
    ns: Option<&str>,
    resource: kube::discovery::ApiResource,
    value: Value,
) {
    let api: Api<DynamicObject> = match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    api.create(&PostParams::default(), &object(value))
        .await
        .expect("create");
}

async fn start(nodes: usize, settings: Settings) -> Setup {
    let lab = Lab::start(LabConfig {
        nodes,
        frr_namespace: FRR_NS.into(),
        ..LabConfig::default()
    })
    .await
    .expect("lab starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("kubeconfig");
    lab.write_kubeconfig(&path).expect("kubeconfig");
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).expect("read kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("config");
    let client = Client::try_from(config).expect("client");

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
        create(&self.client, Some(VM_NS), ar("kubevirt.io", "v1", "VirtualMachine", "virtualmachines"), json!({
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
    async fn running_node(&self, name: &str) -> String {
        let vmi = self
            .lab
            .wait_for(
                "kubevirt.io/v1",
                "VirtualMachineInstance",
                Some(VM_NS),
                name,
                WAIT,
                |o| o["status"]["phase"] == "Running",
            )
            .await
            .expect("VMI Running");
        vmi["status"]["nodeName"]
            .as_str()
            .expect("node")
            .to_string()
    }

    /// Waits until the node's configuration exists and satisfies `pred`; returns it.
    async fn config_where(&self, node: &str, pred: impl Fn(&Value) -> bool) -> Arc<Value> {
        self.lab
            .wait_for(
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
