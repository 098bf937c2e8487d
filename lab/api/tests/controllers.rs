//! Behaviour of the simulated controllers, driven through the HTTP API with kube-rs as the harness would:
//! VMs reach Running with their claim's IP, static IPs, conflicts, RouteAdvertisements acceptance and
//! generated FRRConfigurations, claim release on VM deletion, migration, and the seed's wrong YAML.

mod common;

use std::time::Duration;

use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use serde_json::{Value, json};
use vmbgp_lab_api::{BootDelay, GroundTruthKind, LabConfig};

const WAIT: Duration = Duration::from_secs(10);

fn obj(v: Value) -> DynamicObject {
    serde_json::from_value(v).expect("object")
}

fn api(
    client: &kube::Client,
    ns: Option<&str>,
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
) -> Api<DynamicObject> {
    let ar = common::api_resource(group, version, kind, plural);
    match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    }
}

fn condition<'a>(o: &'a Value, t: &str) -> Option<&'a Value> {
    o.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == t)
}

fn config() -> LabConfig {
    LabConfig {
        nodes: 3,
        boot_delay: BootDelay::Fixed { ms: 20 },
        phase_step_ms: 2,
        migration_ms: 50,
        ..Default::default()
    }
}

/// Namespace (primary-UDN label at creation) + Layer2 primary persistent CUDN selecting it; waits for the NAD.
async fn network(
    t: &common::TestLab,
    client: &kube::Client,
    ns: &str,
    cudn: &str,
    subnet: &str,
    extra: Value,
) {
    let namespaces = api(client, None, "", "v1", "Namespace", "namespaces");
    namespaces
        .create(
            &PostParams::default(),
            &obj(
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {
            "k8s.ovn.org/primary-user-defined-network": "", "vmbgp.io/cudn": cudn}}}),
            ),
        )
        .await
        .expect("namespace");
    let mut layer2 =
        json!({"role": "Primary", "subnets": [subnet], "ipam": {"lifecycle": "Persistent"}});
    if let (Some(l), Some(e)) = (layer2.as_object_mut(), extra.as_object()) {
        l.extend(e.clone());
    }
    let cudns = api(
        client,
        None,
        "k8s.ovn.org",
        "v1",
        "ClusterUserDefinedNetwork",
        "clusteruserdefinednetworks",
    );
    cudns
        .create(&PostParams::default(), &obj(json!({
            "apiVersion": "k8s.ovn.org/v1", "kind": "ClusterUserDefinedNetwork",
            "metadata": {"name": cudn, "labels": {"vmbgp.io/advertise": "true"}},
            "spec": {"namespaceSelector": {"matchLabels": {"vmbgp.io/cudn": cudn}}, "network": {"topology": "Layer2", "layer2": layer2}},
        })))
        .await
        .expect("cudn");
    t.lab
        .wait_for(
            "k8s.ovn.org/v1",
            "ClusterUserDefinedNetwork",
            None,
            cudn,
            WAIT,
            |o| condition(o, "NetworkCreated").is_some_and(|c| c["status"] == "True"),
        )
        .await
        .expect("NetworkCreated");
    let nad = t
        .lab
        .wait_for(
            "k8s.cni.cncf.io/v1",
            "NetworkAttachmentDefinition",
            Some(ns),
            cudn,
            WAIT,
            |_| true,
        )
        .await
        .expect("NAD");
    let cfg: Value =
        serde_json::from_str(nad["spec"]["config"].as_str().expect("config")).expect("config json");
    assert_eq!(cfg["name"], format!("cluster_udn_{cudn}"));
    assert_eq!(cfg["allowPersistentIPs"], true);
}

fn vm(name: &str, static_ip: Option<&str>) -> DynamicObject {
    let mut template_meta = json!({"labels": {"vmbgp.io/run": "t"}});
    if let Some(ip) = static_ip {
        template_meta["annotations"] =
            json!({"network.kubevirt.io/addresses": format!("{{\"default\": [\"{ip}\"]}}")});
    }
    obj(json!({
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
        "metadata": {"name": name, "labels": {"vmbgp.io/run": "t"}},
        "spec": {"runStrategy": "Always", "template": {"metadata": template_meta, "spec": {
            "domain": {"devices": {"interfaces": [{"name": "default", "binding": {"name": "l2bridge"}}]}, "resources": {"requests": {"memory": "1Gi"}}},
            "networks": [{"name": "default", "pod": {}}],
        }}},
    }))
}

async fn running_ip(t: &common::TestLab, ns: &str, name: &str) -> String {
    let vmi = t
        .lab
        .wait_for(
            "kubevirt.io/v1",
            "VirtualMachineInstance",
            Some(ns),
            name,
            WAIT,
            |o| o["status"]["phase"] == "Running",
        )
        .await
        .expect("VMI Running");
    assert!(
        vmi["status"]["nodeName"]
            .as_str()
            .is_some_and(|n| n.starts_with("node-"))
    );
    let phases: Vec<&str> = vmi["status"]["phaseTransitionTimestamps"]
        .as_array()
        .expect("timestamps")
        .iter()
        .filter_map(|p| p["phase"].as_str())
        .collect();
    assert_eq!(phases, ["Pending", "Scheduling", "Scheduled", "Running"]);
    assert_eq!(
        condition(&vmi, "Ready").map(|c| c["status"].clone()),
        Some(json!("True"))
    );
    vmi["status"]["interfaces"][0]["ipAddress"]
        .as_str()
        .expect("ip")
        .to_string()
}

#[tokio::test]
async fn vm_runs_with_the_ip_of_its_claim_and_a_static_ip_is_honoured() {
    let t = common::start(config()).await;
    let client = common::client(&t).await;
    network(
        &t,
        &client,
        "vmbgp-0",
        "l2-a",
        "198.19.1.0/24",
        json!({"reservedSubnets": ["198.19.1.0/28"]}),
    )
    .await;
    let vms = api(
        &client,
        Some("vmbgp-0"),
        "kubevirt.io",
        "v1",
        "VirtualMachine",
        "virtualmachines",
    );
    vms.create(&PostParams::default(), &vm("vm-1", None))
        .await
        .expect("vm-1");
    vms.create(&PostParams::default(), &vm("vm-2", Some("198.19.1.5")))
        .await
        .expect("vm-2");
    let ip1 = running_ip(&t, "vmbgp-0", "vm-1").await;
    let claims = api(
        &client,
        Some("vmbgp-0"),
        "k8s.cni.cncf.io",
        "v1alpha1",
        "IPAMClaim",
        "ipamclaims",
    );
    let claim = claims.get("vm-1.default").await.expect("claim exists");
    let c = serde_json::to_value(&claim).expect("claim json");
    assert_eq!(c["spec"]["network"], "cluster_udn_l2-a");
    assert_eq!(
        c["metadata"]["finalizers"],
        json!(["kubevirt.io/persistent-ipam"])
    );
    assert_eq!(
        c["metadata"]["ownerReferences"][0]["kind"],
        "VirtualMachine"
    );
    assert_eq!(c["metadata"]["ownerReferences"][0]["controller"], true);
    assert_eq!(c["metadata"]["labels"]["kubevirt.io/vm"], "vm-1");
    assert_eq!(
        condition(&c, "IPsAllocated").map(|x| x["reason"].clone()),
        Some(json!("SuccessfulAllocation"))
    );
    assert_eq!(c["status"]["ips"], json!([format!("{ip1}/24")]));
    assert!(
        c["status"]["ownerPod"]["name"]
            .as_str()
            .is_some_and(|p| p.starts_with("virt-launcher-vm-1-"))
    );
    // Dynamic allocation avoids the gateway (.1) and reservedSubnets (.0-.15).
    assert_eq!(ip1, "198.19.1.16");
    assert_eq!(
        running_ip(&t, "vmbgp-0", "vm-2").await,
        "198.19.1.5",
        "static IP from reservedSubnets honoured"
    );
    let vm1 = t
        .lab
        .wait_for(
            "kubevirt.io/v1",
            "VirtualMachine",
            Some("vmbgp-0"),
            "vm-1",
            WAIT,
            |o| o["status"]["ready"] == true,
        )
        .await
        .expect("VM ready");
    assert_eq!(vm1["status"]["printableStatus"], "Running");

    let gt = t.lab.ground_truth();
    let running = gt.find(GroundTruthKind::VmiRunning, Some("vmbgp-0"), "vm-1");
    assert_eq!(running.len(), 1);
    assert_eq!(running[0].detail["ips"], json!([ip1]));
    assert_eq!(
        gt.find(
            GroundTruthKind::IpAllocated,
            Some("vmbgp-0"),
            "vm-1.default"
        )
        .len(),
        1
    );
    let up = gt
        .wait_for(WAIT, |e| {
            e.event == GroundTruthKind::DataplaneUp && e.object.name == "vm-1"
        })
        .await
        .expect("dataplane up");
    assert!(up.at >= running[0].at);

    // The claim's IP survives a VM restart (VMI deleted and recreated).
    let vmis = api(
        &client,
        Some("vmbgp-0"),
        "kubevirt.io",
        "v1",
        "VirtualMachineInstance",
        "virtualmachineinstances",
    );
    let old_uid = vmis.get("vm-1").await.expect("vmi").metadata.uid;
    vmis.delete("vm-1", &DeleteParams::default())
        .await
        .expect("delete vmi");
    let again = t
        .lab
        .wait_for(
            "kubevirt.io/v1",
            "VirtualMachineInstance",
            Some("vmbgp-0"),
            "vm-1",
            WAIT,
            |o| {
                o["status"]["phase"] == "Running"
                    && o["metadata"]["uid"].as_str() != old_uid.as_deref()
            },
        )
        .await
        .expect("restarted");
    assert_eq!(again["status"]["interfaces"][0]["ipAddress"], json!(ip1));
    t.lab.stop().await.expect("stop");
}

#[tokio::test]
async fn duplicate_static_ip_gives_ip_address_conflict_and_deleting_the_vm_releases_its_claim() {
    let t = common::start(config()).await;
    let client = common::client(&t).await;
    network(&t, &client, "vmbgp-1", "l2-b", "198.19.2.0/24", json!({})).await;
    let vms = api(
        &client,
        Some("vmbgp-1"),
        "kubevirt.io",
        "v1",
        "VirtualMachine",
        "virtualmachines",
    );
    vms.create(&PostParams::default(), &vm("first", Some("198.19.2.50")))
        .await
        .expect("first");
    assert_eq!(running_ip(&t, "vmbgp-1", "first").await, "198.19.2.50");
    vms.create(&PostParams::default(), &vm("second", Some("198.19.2.50")))
        .await
        .expect("second");
    let claim = t
        .lab
        .wait_for(
            "k8s.cni.cncf.io/v1alpha1",
            "IPAMClaim",
            Some("vmbgp-1"),
            "second.default",
            WAIT,
            |o| condition(o, "IPsAllocated").is_some(),
        )
        .await
        .expect("second claim judged");
    let cond = condition(&claim, "IPsAllocated").expect("condition");
    assert_eq!(cond["status"], "False");
    assert_eq!(cond["reason"], "IPAddressConflict");
    let vmi = t
        .lab
        .store()
        .get(
            t.lab
                .kind("kubevirt.io/v1", "VirtualMachineInstance")
                .expect("kind"),
            Some("vmbgp-1"),
            "second",
        )
        .expect("vmi");
    assert_ne!(
        vmi["status"]["phase"], "Running",
        "a VM without an address does not run"
    );

    // Deleting the first VM releases its claim (finalizer removed once VM and VMI are gone) and its IP.
    vms.delete("first", &DeleteParams::default())
        .await
        .expect("delete first");
    let gt = t.lab.ground_truth();
    gt.wait_for(WAIT, |e| {
        e.event == GroundTruthKind::IpReleased && e.object.name == "first.default"
    })
    .await
    .expect("released");
    let claims = api(
        &client,
        Some("vmbgp-1"),
        "k8s.cni.cncf.io",
        "v1alpha1",
        "IPAMClaim",
        "ipamclaims",
    );
    assert!(
        claims
            .get_opt("first.default")
            .await
            .expect("get")
            .is_none()
    );
    let vmis = api(
        &client,
        Some("vmbgp-1"),
        "kubevirt.io",
        "v1",
        "VirtualMachineInstance",
        "virtualmachineinstances",
    );
    assert!(vmis.get_opt("first").await.expect("get").is_none());
    assert!(
        gt.find(GroundTruthKind::DataplaneDown, Some("vmbgp-1"), "first")
            .len()
            == 1
    );
    // The address is free again: the conflicting VM's allocation is retried and succeeds.
    assert_eq!(running_ip(&t, "vmbgp-1", "second").await, "198.19.2.50");
    let second = t
        .lab
        .store()
        .get(
            t.lab
                .kind("k8s.cni.cncf.io/v1alpha1", "IPAMClaim")
                .expect("kind"),
            Some("vmbgp-1"),
            "second.default",
        )
        .expect("claim");
    assert_eq!(
        condition(&second, "IPsAllocated").map(|c| c["reason"].clone()),
        Some(json!("SuccessfulAllocation"))
    );
    t.lab.stop().await.expect("stop");
}

#[tokio::test]
async fn a_claim_outlives_its_vm_by_the_release_delay_and_keeps_its_static_ip_until_then() {
    const DELAY: Duration = Duration::from_millis(1000);
    let t = common::start(LabConfig {
        claim_release_delay_ms: DELAY.as_millis() as u64,
        ..config()
    })
    .await;
    let client = common::client(&t).await;
    network(&t, &client, "vmbgp-4", "l2-e", "198.19.5.0/24", json!({})).await;
    let vms = api(
        &client,
        Some("vmbgp-4"),
        "kubevirt.io",
        "v1",
        "VirtualMachine",
        "virtualmachines",
    );
    vms.create(&PostParams::default(), &vm("old", Some("198.19.5.20")))
        .await
        .expect("old");
    assert_eq!(running_ip(&t, "vmbgp-4", "old").await, "198.19.5.20");
    vms.delete("old", &DeleteParams::default())
        .await
        .expect("delete old");
    let gt = t.lab.ground_truth();
    let down = gt
        .wait_for(WAIT, |e| {
            e.event == GroundTruthKind::DataplaneDown && e.object.name == "old"
        })
        .await
        .expect("old VM down");
    let (vm_kind, vmi_kind, claim_kind) = (
        t.lab
            .kind("kubevirt.io/v1", "VirtualMachine")
            .expect("kind"),
        t.lab
            .kind("kubevirt.io/v1", "VirtualMachineInstance")
            .expect("kind"),
        t.lab
            .kind("k8s.cni.cncf.io/v1alpha1", "IPAMClaim")
            .expect("kind"),
    );
    let store = t.lab.store();
    let gone_by = tokio::time::Instant::now() + WAIT;
    while store.get_opt(vm_kind, Some("vmbgp-4"), "old").is_some()
        || store.get_opt(vmi_kind, Some("vmbgp-4"), "old").is_some()
    {
        assert!(
            tokio::time::Instant::now() < gone_by,
            "old VM and VMI never went"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // VM and VMI are gone; the claim is being deleted but keeps the controller's finalizer, and its address.
    let claim = store
        .get_opt(claim_kind, Some("vmbgp-4"), "old.default")
        .expect("old claim lingers");
    assert!(claim["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(
        claim["metadata"]["finalizers"],
        json!(["kubevirt.io/persistent-ipam"])
    );

    // A VM asking for that address meanwhile conflicts, as with any taken address.
    vms.create(&PostParams::default(), &vm("new", Some("198.19.5.20")))
        .await
        .expect("new");
    let judged = t
        .lab
        .wait_for(
            "k8s.cni.cncf.io/v1alpha1",
            "IPAMClaim",
            Some("vmbgp-4"),
            "new.default",
            WAIT,
            |o| condition(o, "IPsAllocated").is_some(),
        )
        .await
        .expect("new claim judged");
    let cond = condition(&judged, "IPsAllocated").expect("condition");
    assert_eq!(
        (cond["status"].as_str(), cond["reason"].as_str()),
        (Some("False"), Some("IPAddressConflict"))
    );
    let conflict = gt.find(
        GroundTruthKind::IpAllocationFailed,
        Some("vmbgp-4"),
        "new.default",
    );

    // The old claim goes about the delay after its VM, and the waiting VM gets the address.
    let released = gt
        .wait_for(WAIT, |e| {
            e.event == GroundTruthKind::IpReleased && e.object.name == "old.default"
        })
        .await
        .expect("old claim released");
    let held = released.at.duration_since(down.at);
    assert!(held >= DELAY, "released {held:?} after the VM went down");
    assert!(
        held < DELAY + Duration::from_secs(2),
        "released only {held:?} after"
    );
    assert!(
        conflict.first().is_some_and(|c| c.at < released.at),
        "the conflict was judged while the old claim held the address"
    );
    assert!(
        store
            .get_opt(claim_kind, Some("vmbgp-4"), "old.default")
            .is_none()
    );
    assert_eq!(running_ip(&t, "vmbgp-4", "new").await, "198.19.5.20");
    let claim = store
        .get(claim_kind, Some("vmbgp-4"), "new.default")
        .expect("claim");
    assert_eq!(
        condition(&claim, "IPsAllocated").map(|c| c["reason"].clone()),
        Some(json!("SuccessfulAllocation"))
    );
    t.lab.stop().await.expect("stop");
}

fn frr_template(name: &str) -> DynamicObject {
    obj(json!({
        "apiVersion": "frrk8s.metallb.io/v1beta1", "kind": "FRRConfiguration",
        "metadata": {"name": name, "namespace": "frr-k8s-system", "labels": {"vmbgp.io/frr-template": "true"}},
        "spec": {"nodeSelector": {}, "bgp": {"routers": [{"asn": 64513, "neighbors": [{
            "address": "198.18.0.155", "asn": 64512, "toReceive": {"allowed": {"mode": "all"}}}]}]}},
    }))
}

fn route_advertisements(name: &str, node_selector: Value, advertisements: Value) -> DynamicObject {
    obj(json!({
        "apiVersion": "k8s.ovn.org/v1", "kind": "RouteAdvertisements", "metadata": {"name": name},
        "spec": {"advertisements": advertisements, "nodeSelector": node_selector,
            "frrConfigurationSelector": {"matchLabels": {"vmbgp.io/frr-template": "true"}},
            "networkSelectors": [{"networkSelectionType": "ClusterUserDefinedNetworks",
                "clusterUserDefinedNetworkSelector": {"networkSelector": {"matchLabels": {"vmbgp.io/advertise": "true"}}}}]},
    }))
}

#[tokio::test]
async fn route_advertisements_yield_one_frr_configuration_per_node_and_bad_ones_are_rejected() {
    let t = common::start(config()).await;
    let client = common::client(&t).await;
    network(&t, &client, "vmbgp-2", "l2-c", "198.19.3.0/24", json!({})).await;
    let frr = api(
        &client,
        Some("frr-k8s-system"),
        "frrk8s.metallb.io",
        "v1beta1",
        "FRRConfiguration",
        "frrconfigurations",
    );
    frr.create(&PostParams::default(), &frr_template("vmbgp-peer"))
        .await
        .expect("template");
    let ras = api(
        &client,
        None,
        "k8s.ovn.org",
        "v1",
        "RouteAdvertisements",
        "routeadvertisements",
    );

    // CEL: PodNetwork needs nodeSelector {} — refused at admission like a real cluster.
    let err = ras
        .create(
            &PostParams::default(),
            &route_advertisements(
                "bad",
                json!({"matchLabels": {"kubernetes.io/hostname": "node-1"}}),
                json!(["PodNetwork"]),
            ),
        )
        .await
        .expect_err("nodeSelector with PodNetwork is refused");
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 422);
            assert_eq!(s.reason, "Invalid");
        }
        other => panic!("expected 422, got {other:?}"),
    }
    // EgressIP on a Layer2 network passes admission but the controller does not accept it.
    ras.create(
        &PostParams::default(),
        &route_advertisements("egress", json!({}), json!(["EgressIP"])),
    )
    .await
    .expect("egress RA");
    let egress = t
        .lab
        .wait_for(
            "k8s.ovn.org/v1",
            "RouteAdvertisements",
            None,
            "egress",
            WAIT,
            |o| o["status"]["status"].is_string(),
        )
        .await
        .expect("judged");
    assert!(
        egress["status"]["status"]
            .as_str()
            .is_some_and(|s| s.starts_with("Not Accepted:")),
        "{}",
        egress["status"]
    );
    ras.delete("egress", &DeleteParams::default())
        .await
        .expect("delete egress");

    ras.create(
        &PostParams::default(),
        &route_advertisements("ra-c", json!({}), json!(["PodNetwork"])),
    )
    .await
    .expect("RA");
    let ra = t
        .lab
        .wait_for(
            "k8s.ovn.org/v1",
            "RouteAdvertisements",
            None,
            "ra-c",
            WAIT,
            |o| o["status"]["status"] == "Accepted",
        )
        .await
        .expect("Accepted");
    assert_eq!(
        condition(&ra, "Accepted").map(|c| c["status"].clone()),
        Some(json!("True"))
    );
    let generated = frr
        .list(&ListParams::default().labels("k8s.ovn.org/route-advertisements=ra-c"))
        .await
        .expect("list")
        .items;
    assert_eq!(generated.len(), 3, "one per node");
    let mut nodes = Vec::new();
    for g in &generated {
        let v = serde_json::to_value(g).expect("json");
        assert!(
            v["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("ovnk-generated-"))
        );
        let node = v["spec"]["nodeSelector"]["matchLabels"]["kubernetes.io/hostname"]
            .as_str()
            .expect("node")
            .to_string();
        assert_eq!(
            v["metadata"]["annotations"]["k8s.ovn.org/route-advertisements"],
            format!("ra-c/vmbgp-peer/{node}")
        );
        let router = &v["spec"]["bgp"]["routers"][0];
        assert_eq!(router["asn"], 64513);
        assert_eq!(router["prefixes"], json!(["198.19.3.0/24"]));
        assert_eq!(
            router["neighbors"][0]["toAdvertise"]["allowed"],
            json!({"mode": "filtered", "prefixes": ["198.19.3.0/24"]})
        );
        assert!(router["neighbors"][0].get("toReceive").is_none());
        nodes.push(node);
    }
    nodes.sort();
    assert_eq!(nodes, ["node-1", "node-2", "node-3"]);
    assert_eq!(
        t.lab
            .ground_truth()
            .events()
            .iter()
            .filter(|e| e.event == GroundTruthKind::FrrConfigurationGenerated)
            .count(),
        3
    );

    // Deleting the RA garbage-collects its generated configurations.
    ras.delete("ra-c", &DeleteParams::default())
        .await
        .expect("delete RA");
    assert!(
        frr.list(&ListParams::default().labels("k8s.ovn.org/route-advertisements=ra-c"))
            .await
            .expect("list")
            .items
            .is_empty()
    );
    t.lab.stop().await.expect("stop");
}

#[tokio::test]
async fn the_seeds_wrong_yaml_is_refused_or_ignored() {
    let t = common::start(config()).await;
    let client = common::client(&t).await;
    // Cluster API's IPAMClaim group does not exist on the cluster.
    let capi = api(
        &client,
        Some("default"),
        "ipam.cluster.x-k8s.io",
        "v1alpha1",
        "IPAMClaim",
        "ipamclaims",
    );
    let err = capi
        .create(&PostParams::default(), &obj(json!({"apiVersion": "ipam.cluster.x-k8s.io/v1alpha1", "kind": "IPAMClaim", "metadata": {"name": "x"}, "spec": {"staticIP": "198.19.9.9"}})))
        .await
        .expect_err("unknown group");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 404),
        "{err:?}"
    );
    let bgp_adv = api(
        &client,
        Some("default"),
        "frr.metallb.io",
        "v1beta1",
        "BGPAdvertisement",
        "bgpadvertisements",
    );
    assert!(
        matches!(bgp_adv.list(&ListParams::default()).await, Err(kube::Error::Api(ref s)) if s.code == 404)
    );

    // `ovn.org/bgp-advertise` annotations are just annotations: nothing gets advertised.
    let frr = api(
        &client,
        Some("frr-k8s-system"),
        "frrk8s.metallb.io",
        "v1beta1",
        "FRRConfiguration",
        "frrconfigurations",
    );
    frr.create(&PostParams::default(), &frr_template("vmbgp-peer"))
        .await
        .expect("template");
    network(
        &t,
        &client,
        "seed-ns",
        "l2-seed",
        "198.19.4.0/24",
        json!({}),
    )
    .await;
    let cudns = api(
        &client,
        None,
        "k8s.ovn.org",
        "v1",
        "ClusterUserDefinedNetwork",
        "clusteruserdefinednetworks",
    );
    let mut annotated =
        serde_json::to_value(cudns.get("l2-seed").await.expect("cudn")).expect("json");
    annotated["metadata"]["annotations"] =
        json!({"ovn.org/bgp-advertise": "true", "ovn.org/bgp-advertise-subnets": "198.19.4.0/24"});
    cudns
        .replace("l2-seed", &PostParams::default(), &obj(annotated))
        .await
        .expect("annotate");
    // Give the controllers time to (wrongly) react, then check that nothing was generated.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        frr.list(&ListParams::default())
            .await
            .expect("list")
            .items
            .len(),
        1,
        "only the template exists"
    );
    assert!(
        !t.lab
            .ground_truth()
            .events()
            .iter()
            .any(|e| e.event == GroundTruthKind::FrrConfigurationGenerated)
    );

    // A namespace selected by a primary CUDN without the label at creation gets no NAD.
    let namespaces = api(&client, None, "", "v1", "Namespace", "namespaces");
    namespaces
        .create(&PostParams::default(), &obj(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "late", "labels": {"vmbgp.io/cudn": "l2-seed"}}})))
        .await
        .expect("namespace");
    let cudn = t
        .lab
        .wait_for(
            "k8s.ovn.org/v1",
            "ClusterUserDefinedNetwork",
            None,
            "l2-seed",
            WAIT,
            |o| condition(o, "NetworkCreated").is_some_and(|c| c["status"] == "False"),
        )
        .await
        .expect("NetworkCreated False");
    assert!(
        condition(&cudn, "NetworkCreated")
            .and_then(|c| c["message"].as_str())
            .is_some_and(|m| m.contains("late"))
    );
    let nads = api(
        &client,
        Some("late"),
        "k8s.cni.cncf.io",
        "v1",
        "NetworkAttachmentDefinition",
        "network-attachment-definitions",
    );
    assert!(
        nads.list(&ListParams::default())
            .await
            .expect("list")
            .items
            .is_empty()
    );
    // ...and the label cannot be added afterwards.
    let mut late = serde_json::to_value(namespaces.get("late").await.expect("ns")).expect("json");
    late["metadata"]["labels"]["k8s.ovn.org/primary-user-defined-network"] = json!("");
    assert!(
        matches!(namespaces.replace("late", &PostParams::default(), &obj(late)).await, Err(kube::Error::Api(ref s)) if s.code == 422)
    );
    t.lab.stop().await.expect("stop");
}

#[tokio::test]
async fn live_migration_moves_the_vm_and_keeps_its_ip() {
    let t = common::start(config()).await;
    let client = common::client(&t).await;
    network(&t, &client, "vmbgp-3", "l2-d", "198.19.5.0/24", json!({})).await;
    let vms = api(
        &client,
        Some("vmbgp-3"),
        "kubevirt.io",
        "v1",
        "VirtualMachine",
        "virtualmachines",
    );
    vms.create(&PostParams::default(), &vm("mig", None))
        .await
        .expect("vm");
    let ip = running_ip(&t, "vmbgp-3", "mig").await;
    let before = t
        .lab
        .store()
        .get(
            t.lab
                .kind("kubevirt.io/v1", "VirtualMachineInstance")
                .expect("kind"),
            Some("vmbgp-3"),
            "mig",
        )
        .expect("vmi");
    let source = before["status"]["nodeName"]
        .as_str()
        .expect("node")
        .to_string();
    let vmims = api(
        &client,
        Some("vmbgp-3"),
        "kubevirt.io",
        "v1",
        "VirtualMachineInstanceMigration",
        "virtualmachineinstancemigrations",
    );
    let created = vmims
        .create(
            &PostParams::default(),
            &obj(
                json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstanceMigration",
            "metadata": {"generateName": "mig-"}, "spec": {"vmiName": "mig"}}),
            ),
        )
        .await
        .expect("vmim");
    let vmim_name = created.metadata.name.expect("generated name");
    t.lab
        .wait_for(
            "kubevirt.io/v1",
            "VirtualMachineInstanceMigration",
            Some("vmbgp-3"),
            &vmim_name,
            WAIT,
            |o| o["status"]["phase"] == "Succeeded",
        )
        .await
        .expect("migration succeeded");
    let after = t
        .lab
        .store()
        .get(
            t.lab
                .kind("kubevirt.io/v1", "VirtualMachineInstance")
                .expect("kind"),
            Some("vmbgp-3"),
            "mig",
        )
        .expect("vmi");
    let ms = &after["status"]["migrationState"];
    assert_eq!(ms["completed"], true);
    assert_eq!(ms["sourceNode"], json!(source));
    assert_ne!(after["status"]["nodeName"], json!(source));
    assert_eq!(after["status"]["nodeName"], ms["targetNode"]);
    assert_eq!(after["status"]["interfaces"][0]["ipAddress"], json!(ip));
    let gt = t.lab.ground_truth();
    let switch = gt.find(GroundTruthKind::MigrationSwitchover, Some("vmbgp-3"), "mig");
    assert_eq!(switch.len(), 1);
    let moved = gt
        .wait_for(WAIT, |e| e.event == GroundTruthKind::DataplaneMoved)
        .await
        .expect("moved");
    assert!(moved.at >= switch[0].at);
    assert_eq!(moved.detail["from_node"], json!(source));
    t.lab.stop().await.expect("stop");
}

#[tokio::test]
async fn an_exhausted_subnet_gives_subnet_exhausted() {
    let t = common::start(config()).await;
    let client = common::client(&t).await;
    // A /30 has two hosts; the first is the gateway, so one VM fits.
    network(&t, &client, "tiny", "l2-tiny", "198.19.6.0/30", json!({})).await;
    let vms = api(
        &client,
        Some("tiny"),
        "kubevirt.io",
        "v1",
        "VirtualMachine",
        "virtualmachines",
    );
    vms.create(&PostParams::default(), &vm("fits", None))
        .await
        .expect("fits");
    assert_eq!(running_ip(&t, "tiny", "fits").await, "198.19.6.2");
    vms.create(&PostParams::default(), &vm("overflow", None))
        .await
        .expect("overflow");
    let claim = t
        .lab
        .wait_for(
            "k8s.cni.cncf.io/v1alpha1",
            "IPAMClaim",
            Some("tiny"),
            "overflow.default",
            WAIT,
            |o| condition(o, "IPsAllocated").is_some(),
        )
        .await
        .expect("judged");
    let cond = condition(&claim, "IPsAllocated").expect("condition");
    assert_eq!(
        (cond["status"].as_str(), cond["reason"].as_str()),
        (Some("False"), Some("SubnetExhausted"))
    );
    t.lab.stop().await.expect("stop");
}

/// A dataplane that records what the KubeVirt controller asks of it.
#[derive(Debug, Default)]
struct RecordingDataplane {
    calls: std::sync::Mutex<Vec<(String, vmbgp_lab_api::VmAddress, Option<String>)>>,
}

impl vmbgp_lab_api::Dataplane for RecordingDataplane {
    fn vm_up(&self, vm: vmbgp_lab_api::VmAddress) -> vmbgp_lab_api::DataplaneFuture<'_> {
        self.calls
            .lock()
            .expect("lock")
            .push(("up".into(), vm, None));
        Box::pin(async { Ok(()) })
    }
    fn vm_moved(
        &self,
        vm: vmbgp_lab_api::VmAddress,
        from_node: String,
    ) -> vmbgp_lab_api::DataplaneFuture<'_> {
        self.calls
            .lock()
            .expect("lock")
            .push(("moved".into(), vm, Some(from_node)));
        Box::pin(async { Ok(()) })
    }
    fn vm_down(&self, vm: vmbgp_lab_api::VmAddress) -> vmbgp_lab_api::DataplaneFuture<'_> {
        self.calls
            .lock()
            .expect("lock")
            .push(("down".into(), vm, None));
        Box::pin(async { Ok(()) })
    }
}

#[tokio::test]
async fn the_dataplane_seam_sees_up_move_and_down_with_node_and_ip() {
    let dataplane = std::sync::Arc::new(RecordingDataplane::default());
    let lab = vmbgp_lab_api::Lab::start_with(config(), dataplane.clone(), None)
        .await
        .expect("lab");
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    lab.write_kubeconfig(&kubeconfig).expect("kubeconfig");
    let t = common::TestLab::from_parts(lab, kubeconfig, dir);
    let client = common::client(&t).await;
    network(&t, &client, "dp", "l2-dp", "198.19.7.0/24", json!({})).await;
    let vms = api(
        &client,
        Some("dp"),
        "kubevirt.io",
        "v1",
        "VirtualMachine",
        "virtualmachines",
    );
    vms.create(&PostParams::default(), &vm("dp-vm", Some("198.19.7.7")))
        .await
        .expect("vm");
    running_ip(&t, "dp", "dp-vm").await;
    let vmims = api(
        &client,
        Some("dp"),
        "kubevirt.io",
        "v1",
        "VirtualMachineInstanceMigration",
        "virtualmachineinstancemigrations",
    );
    vmims
        .create(&PostParams::default(), &obj(json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstanceMigration", "metadata": {"name": "m1"}, "spec": {"vmiName": "dp-vm"}})))
        .await
        .expect("vmim");
    t.lab
        .wait_for(
            "kubevirt.io/v1",
            "VirtualMachineInstanceMigration",
            Some("dp"),
            "m1",
            WAIT,
            |o| o["status"]["phase"] == "Succeeded",
        )
        .await
        .expect("migrated");
    vms.delete("dp-vm", &DeleteParams::default())
        .await
        .expect("delete");
    t.lab
        .ground_truth()
        .wait_for(WAIT, |e| e.event == GroundTruthKind::DataplaneDown)
        .await
        .expect("down");
    let calls = dataplane.calls.lock().expect("lock").clone();
    let kinds: Vec<&str> = calls.iter().map(|(k, _, _)| k.as_str()).collect();
    assert_eq!(kinds, ["up", "moved", "down"]);
    let (_, up, _) = &calls[0];
    assert_eq!((up.namespace.as_str(), up.vm.as_str()), ("dp", "dp-vm"));
    assert_eq!(
        up.ips,
        vec!["198.19.7.7".parse::<std::net::IpAddr>().expect("ip")]
    );
    assert_eq!(up.network.as_deref(), Some("cluster_udn_l2-dp"));
    let (_, moved, from) = &calls[1];
    assert_eq!(from.as_deref(), Some(up.node.as_str()));
    assert_ne!(moved.node, up.node);
    assert_eq!(
        calls[2].1.node, moved.node,
        "removed from the node it migrated to"
    );
    t.lab.stop().await.expect("stop");
}
