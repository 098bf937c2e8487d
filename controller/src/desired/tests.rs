//! Desired-state tests on a small hand-built cluster: placement, selection, migration, aggregation,
//! the cap, the subnet community, and validity against the real FRRConfiguration CRD.

use super::*;
use crate::inputs::{Advertisement, Claim, GeneratedConfig, Namespace, Network};
use crate::plan::{Write, plan};
use pretty_assertions::assert_eq;
use serde_json::json;

const NODES: [&str; 3] = ["node-1", "node-2", "node-3"];

fn cluster() -> Inputs {
    let mut inputs = Inputs::default();
    for (name, cudn) in [("ns1", "net1"), ("ns2", "net2")] {
        inputs.namespaces.insert(
            name.to_string(),
            Namespace::from_json(
                &json!({"metadata": {"name": name, "labels": {"vmbgp.io/cudn": cudn}}}),
            )
            .expect("namespace"),
        );
    }
    inputs.networks = vec![
        network("net1", "198.19.0.0/24", true),
        network("net2", "198.19.1.0/24", false),
    ];
    inputs.advertisements = vec![
        Advertisement::from_json(&json!({
            "metadata": {"name": "ra1"},
            "spec": {"advertisements": ["PodNetwork"], "nodeSelector": {},
                "frrConfigurationSelector": {"matchLabels": {"vmbgp.io/frr-template": "true"}},
                "networkSelectors": [{"networkSelectionType": "ClusterUserDefinedNetworks",
                    "clusterUserDefinedNetworkSelector": {"networkSelector": {"matchLabels": {"vmbgp.io/advertise": "true"}}}}]}
        }))
        .expect("ra"),
    ];
    inputs.generated = NODES
        .iter()
        .map(|node| generated("ra1", node, json!([])))
        .collect();
    inputs
}

fn network(name: &str, subnet: &str, opted_in: bool) -> Network {
    let mut labels = json!({"vmbgp.io/advertise": "true"});
    if opted_in {
        labels["vmbgp.io/host-routes"] = json!("true");
    }
    Network::from_json(&json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {"namespaceSelector": {"matchLabels": {"vmbgp.io/cudn": name}},
            "network": {"topology": "Layer2", "layer2": {"role": "Primary", "subnets": [subnet]}}}
    }))
    .expect("network")
}

/// OVN-K's generated configuration: default-VRF router 64513 peering with the external router.
fn generated(ra: &str, node: &str, extra_routers: Value) -> GeneratedConfig {
    let mut routers = vec![json!({
        "asn": 64513, "prefixes": ["198.19.0.0/24"],
        "neighbors": [{"address": "198.18.0.155", "asn": 64512, "holdTime": "9s", "keepaliveTime": "3s",
            "bfdProfile": "fast", "toReceive": {"allowed": {"mode": "all"}},
            "toAdvertise": {"allowed": {"mode": "filtered", "prefixes": ["198.19.0.0/24"]}}}]
    })];
    routers.extend(extra_routers.as_array().cloned().unwrap_or_default());
    GeneratedConfig::from_json(&json!({
        "metadata": {"name": format!("ovnk-generated-{node}"), "namespace": "frr-k8s-system",
            "labels": {"k8s.ovn.org/route-advertisements": ra}},
        "spec": {"nodeSelector": {"matchLabels": {"kubernetes.io/hostname": node}},
            "bgp": {"routers": routers}}
    }))
    .expect("generated")
}

fn vmi(ns: &str, name: &str, node: &str, ip: &str) -> Vmi {
    Vmi::from_json(&json!({
        "metadata": {"namespace": ns, "name": name},
        "spec": {"networks": [{"name": "default", "pod": {}}]},
        "status": {"phase": "Running", "nodeName": node,
            "interfaces": [{"name": "default", "ipAddresses": [ip]}]}
    }))
    .expect("vmi")
}

fn vm(ns: &str, name: &str) -> VmRef {
    VmRef {
        namespace: ns.into(),
        name: name.into(),
    }
}

fn settings() -> Settings {
    Settings::new("frr-k8s-system")
}

fn default_router() -> RouterKey {
    RouterKey {
        asn: 64513,
        vrf: String::new(),
    }
}

fn prefixes(list: &[&str]) -> BTreeSet<IpNet> {
    list.iter().map(|p| p.parse().expect("prefix")).collect()
}

fn host_prefixes_on(desired: &Desired, node: &str) -> BTreeSet<IpNet> {
    desired
        .nodes
        .get(node)
        .map(NodeAdvertisement::host_prefixes)
        .unwrap_or_default()
}

#[test]
fn each_vm_is_advertised_from_its_node_only() {
    let mut inputs = cluster();
    inputs.vmis = vec![
        vmi("ns1", "a", "node-1", "198.19.0.10"),
        vmi("ns1", "b", "node-1", "198.19.0.11"),
        vmi("ns1", "c", "node-2", "198.19.0.12"),
        // Not Running yet: nothing.
        Vmi {
            phase: Some("Scheduled".into()),
            ..vmi("ns1", "d", "node-3", "198.19.0.13")
        },
        // net2 is not opted in.
        vmi("ns2", "e", "node-3", "198.19.1.10"),
    ];
    let desired = desired_state(&settings(), &inputs);
    assert_eq!(
        host_prefixes_on(&desired, "node-1"),
        prefixes(&["198.19.0.10/32", "198.19.0.11/32"])
    );
    assert_eq!(
        host_prefixes_on(&desired, "node-2"),
        prefixes(&["198.19.0.12/32"])
    );
    assert!(!desired.nodes.contains_key("node-3"));
    assert!(desired.not_advertised.is_empty());

    let object = render_object(&settings(), "node-1", &desired.nodes["node-1"]);
    assert_eq!(
        object["spec"],
        json!({
            "nodeSelector": {"matchLabels": {"kubernetes.io/hostname": "node-1"}},
            "bgp": {"routers": [{
                "asn": 64513,
                "prefixes": ["198.19.0.10/32", "198.19.0.11/32"],
                "neighbors": [{"address": "198.18.0.155", "asn": 64512, "holdTime": "9s", "keepaliveTime": "3s",
                    "toAdvertise": {
                        "allowed": {"mode": "filtered", "prefixes": ["198.19.0.10/32", "198.19.0.11/32"]},
                        "withCommunity": [{"community": "64512:200", "prefixes": ["198.19.0.10/32", "198.19.0.11/32"]}]
                    }}]
            }]}
        })
    );
    assert_eq!(object["metadata"]["name"], "vmbgp-host-routes-node-1");
    assert_eq!(object["metadata"]["namespace"], "frr-k8s-system");
    assert_eq!(
        object["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "vmbgp-controller"
    );
}

#[test]
fn rendered_objects_validate_against_the_frrconfiguration_crd() {
    let schemas = vmbgp_schema::SchemaSet::embedded().expect("schemas");
    let mut inputs = cluster();
    inputs.generated = vec![generated(
        "ra1",
        "node-1",
        json!([{"asn": 64513, "vrf": "net1", "neighbors": [{"interface": "eth1", "dynamicASN": "external"}]}]),
    )];
    inputs.vmis = vec![
        vmi("ns1", "a", "node-1", "198.19.0.4"),
        vmi("ns1", "b", "node-1", "198.19.0.5"),
    ];
    let mut s = settings();
    s.aggregate = true;
    s.subnet_community = true;
    s.owner = Some(Owner {
        api_version: "rbac.authorization.k8s.io/v1".into(),
        kind: "ClusterRole".into(),
        name: "vmbgp-controller".into(),
        uid: "8b4c1a52-6f7e-4a53-9d1c-1f0a7e2b3c4d".into(),
    });
    let desired = desired_state(&s, &inputs);
    let node = &desired.nodes["node-1"];
    assert_eq!(node.routers.len(), 2, "{node:?}");
    let object = render_object(&s, "node-1", node);
    schemas
        .validate(&object, vmbgp_schema::Strictness::Strict)
        .expect("valid FRRConfiguration");
    // A capped node's configuration (routers, no host prefixes) is valid too.
    s.max_routes_per_node = Some(0);
    let capped = desired_state(&s, &inputs);
    let object = render_object(&s, "node-1", &capped.nodes["node-1"]);
    schemas
        .validate(&object, vmbgp_schema::Strictness::Strict)
        .expect("valid capped FRRConfiguration");
    // A node name too long for the prefix still gives a valid, stable name.
    let long = "n".repeat(250);
    let name = config_name(&long);
    assert!(name.len() <= 253 && name == config_name(&long));
}

#[test]
fn vm_labels_opt_in_and_out() {
    let mut inputs = cluster();
    let mut out = vmi("ns1", "out", "node-1", "198.19.0.20");
    out.labels.insert(VM_LABEL.into(), "false".into());
    let mut opted = vmi("ns1", "in", "node-1", "198.19.0.21");
    opted.labels.insert(VM_LABEL.into(), "true".into());
    inputs.vmis = vec![out, opted, vmi("ns1", "plain", "node-1", "198.19.0.22")];
    let all = desired_state(&settings(), &inputs);
    assert_eq!(
        host_prefixes_on(&all, "node-1"),
        prefixes(&["198.19.0.21/32", "198.19.0.22/32"])
    );
    let mut only = settings();
    only.vm_selection = VmSelection::OnlyOptedIn;
    let only = desired_state(&only, &inputs);
    assert_eq!(
        host_prefixes_on(&only, "node-1"),
        prefixes(&["198.19.0.21/32"])
    );
}

#[test]
fn a_network_selector_flag_selects_networks_without_the_label() {
    let mut inputs = cluster();
    inputs.vmis = vec![vmi("ns2", "e", "node-3", "198.19.1.10")];
    assert!(desired_state(&settings(), &inputs).nodes.is_empty());
    let mut s = settings();
    s.network_selector = Some(LabelSelector::parse("vmbgp.io/advertise=true").expect("selector"));
    assert_eq!(
        host_prefixes_on(&desired_state(&s, &inputs), "node-3"),
        prefixes(&["198.19.1.10/32"])
    );
}

#[test]
fn claim_addresses_win_and_foreign_addresses_are_refused() {
    let mut inputs = cluster();
    inputs.claims.insert(
        ("ns1".into(), "a.default".into()),
        Claim::from_json(
            &json!({"metadata": {"namespace": "ns1", "name": "a.default"},
            "status": {"ips": ["198.19.0.30/24"]}}),
        )
        .expect("claim"),
    );
    inputs.vmis = vec![
        // The interface report lags behind the claim: the claim's address is advertised.
        vmi("ns1", "a", "node-1", "198.19.0.99"),
        vmi("ns1", "b", "node-1", "203.0.113.7"),
        Vmi {
            interface_addresses: vec![],
            ..vmi("ns1", "c", "node-1", "198.19.0.1")
        },
    ];
    let desired = desired_state(&settings(), &inputs);
    assert_eq!(
        host_prefixes_on(&desired, "node-1"),
        prefixes(&["198.19.0.30/32"])
    );
    assert!(matches!(
        desired.not_advertised[&vm("ns1", "b")],
        NotAdvertisedReason::AddressOutsideNetwork { .. }
    ));
    assert_eq!(
        desired.not_advertised[&vm("ns1", "c")],
        NotAdvertisedReason::NoAddress
    );
}

#[test]
fn missing_advertisement_or_router_is_reported_per_vm() {
    let mut inputs = cluster();
    inputs.generated.retain(|g| g.node != "node-2");
    inputs.vmis = vec![vmi("ns1", "c", "node-2", "198.19.0.12")];
    let desired = desired_state(&settings(), &inputs);
    assert_eq!(
        desired.not_advertised[&vm("ns1", "c")],
        NotAdvertisedReason::NoRouterOnNode {
            network: "net1".into(),
            node: "node-2".into()
        }
    );
    inputs.advertisements.clear();
    let desired = desired_state(&settings(), &inputs);
    assert_eq!(
        desired.not_advertised[&vm("ns1", "c")],
        NotAdvertisedReason::NetworkNotAdvertised {
            network: "net1".into()
        }
    );
}

#[test]
fn auto_target_vrf_uses_the_networks_own_vrf_router() {
    let mut inputs = cluster();
    inputs.advertisements[0].target_vrf = "auto".into();
    inputs.generated = vec![generated(
        "ra1",
        "node-1",
        json!([{"asn": 64513, "vrf": "net1", "neighbors": [{"address": "198.18.0.155", "asn": 64512}]},
               {"asn": 64513, "vrf": "net2", "neighbors": [{"address": "198.18.0.155", "asn": 64512}]}]),
    )];
    inputs.vmis = vec![vmi("ns1", "a", "node-1", "198.19.0.10")];
    let desired = desired_state(&settings(), &inputs);
    let keys: Vec<&RouterKey> = desired.nodes["node-1"].routers.keys().collect();
    assert_eq!(
        keys,
        vec![&RouterKey {
            asn: 64513,
            vrf: "net1".into()
        }]
    );
}

#[test]
fn completed_migration_moves_the_route_make_before_break() {
    let mut inputs = cluster();
    inputs.vmis = vec![vmi("ns1", "m", "node-1", "198.19.0.40")];
    let before = desired_state(&settings(), &inputs);
    // Migration running: still on the source.
    let migrating = Vmi::from_json(&json!({
        "metadata": {"namespace": "ns1", "name": "m"},
        "spec": {"networks": [{"name": "default", "pod": {}}]},
        "status": {"phase": "Running", "nodeName": "node-1",
            "interfaces": [{"name": "default", "ipAddresses": ["198.19.0.40"]}],
            "migrationState": {"migrationUid": "mig-1", "sourceNode": "node-1", "targetNode": "node-2",
                "completed": false}}
    }))
    .expect("vmi");
    inputs.vmis = vec![migrating.clone()];
    let during = desired_state(&settings(), &inputs);
    assert_eq!(during.nodes, before.nodes);
    assert!(during.migrations.is_empty());
    // Completed: the /32 belongs to node-2, in one computation.
    let mut done = migrating;
    if let Some(m) = done.migration.as_mut() {
        m.completed = true;
    }
    inputs.vmis = vec![done];
    let after = desired_state(&settings(), &inputs);
    assert_eq!(
        host_prefixes_on(&after, "node-2"),
        prefixes(&["198.19.0.40/32"])
    );
    assert!(!after.nodes.contains_key("node-1"));
    assert_eq!(after.migrations.len(), 1);
    assert_eq!(after.migrations[0].migration.uid, "mig-1");

    // The plan adds on node-2 first and deletes node-1's configuration only afterwards.
    let written: BTreeMap<String, NodeAdvertisement> = before
        .nodes
        .iter()
        .map(|(n, a)| {
            let spec = a.render_spec(n);
            (n.clone(), NodeAdvertisement::parse_spec(&spec))
        })
        .collect();
    let p = plan(&written, &after.nodes);
    assert!(p.overlap());
    assert!(matches!(&p.make[..], [Write::Apply { node, advertisement }]
        if node == "node-2" && advertisement.host_prefixes() == prefixes(&["198.19.0.40/32"])));
    assert_eq!(
        p.brk,
        vec![Write::Delete {
            node: "node-1".into()
        }]
    );
}

#[test]
fn plan_keeps_old_routes_until_the_break_step() {
    let a = |p: &[&str]| {
        let mut n = NodeAdvertisement::default();
        n.routers.insert(
            default_router(),
            RouterAdvertisement {
                neighbors: [(
                    "198.18.0.155".to_string(),
                    json!({"address": "198.18.0.155", "asn": 64512}),
                )]
                .into_iter()
                .collect(),
                host_prefixes: prefixes(p),
                ..RouterAdvertisement::default()
            },
        );
        n
    };
    let written: BTreeMap<String, NodeAdvertisement> =
        [("node-1".to_string(), a(&["198.19.0.1/32", "198.19.0.2/32"]))].into();
    // Swap .2 for .3 on one node: make = both old and new, break = only the new.
    let desired: BTreeMap<String, NodeAdvertisement> =
        [("node-1".to_string(), a(&["198.19.0.1/32", "198.19.0.3/32"]))].into();
    let p = plan(&written, &desired);
    match &p.make[..] {
        [Write::Apply { advertisement, .. }] => assert_eq!(
            advertisement.host_prefixes(),
            prefixes(&["198.19.0.1/32", "198.19.0.2/32", "198.19.0.3/32"])
        ),
        other => panic!("unexpected make step {other:?}"),
    }
    assert!(matches!(&p.brk[..], [Write::Apply { advertisement, .. }]
        if advertisement.host_prefixes() == prefixes(&["198.19.0.1/32", "198.19.0.3/32"])));
    // Pure withdrawal: nothing to make, one break.
    let shrink: BTreeMap<String, NodeAdvertisement> =
        [("node-1".to_string(), a(&["198.19.0.1/32"]))].into();
    let p = plan(&written, &shrink);
    assert!(p.make.is_empty() && p.brk.len() == 1 && !p.overlap());
    // Nothing changes: nothing to write.
    assert!(plan(&written, &written).is_empty());
}

#[test]
fn aggregation_merges_a_nodes_consecutive_vms() {
    let mut inputs = cluster();
    inputs.vmis = (4..8)
        .map(|i| vmi("ns1", &format!("v{i}"), "node-1", &format!("198.19.0.{i}")))
        .chain([vmi("ns1", "v8", "node-2", "198.19.0.8")])
        .collect();
    let mut s = settings();
    s.aggregate = true;
    let desired = desired_state(&s, &inputs);
    assert_eq!(
        host_prefixes_on(&desired, "node-1"),
        prefixes(&["198.19.0.4/30"])
    );
    assert_eq!(
        host_prefixes_on(&desired, "node-2"),
        prefixes(&["198.19.0.8/32"])
    );
}

#[test]
fn past_the_cap_a_node_advertises_no_host_routes_and_says_why() {
    let mut inputs = cluster();
    inputs.vmis = vec![
        vmi("ns1", "a", "node-1", "198.19.0.10"),
        vmi("ns1", "b", "node-1", "198.19.0.12"),
        vmi("ns1", "c", "node-1", "198.19.0.14"),
        vmi("ns1", "d", "node-2", "198.19.0.16"),
    ];
    let mut s = settings();
    s.max_routes_per_node = Some(2);
    let desired = desired_state(&s, &inputs);
    assert_eq!(
        desired.capped,
        vec![CappedNode {
            node: "node-1".into(),
            routes: 3,
            cap: 2
        }]
    );
    assert!(host_prefixes_on(&desired, "node-1").is_empty());
    assert_eq!(
        host_prefixes_on(&desired, "node-2"),
        prefixes(&["198.19.0.16/32"])
    );
    for name in ["a", "b", "c"] {
        assert!(matches!(
            desired.not_advertised[&vm("ns1", name)],
            NotAdvertisedReason::NodeCapped {
                routes: 3,
                cap: 2,
                ..
            }
        ));
    }
    let object = render_object(&s, "node-1", &desired.nodes["node-1"]);
    assert!(
        object["metadata"]["annotations"][STATUS_ANNOTATION]
            .as_str()
            .is_some_and(|t| t.starts_with("Capped"))
    );
    // Aggregation counts prefixes, not VMs: four aligned VMs are one route, under the cap.
    s.aggregate = true;
    inputs.vmis = (4..8)
        .map(|i| vmi("ns1", &format!("v{i}"), "node-1", &format!("198.19.0.{i}")))
        .collect();
    assert!(desired_state(&s, &inputs).capped.is_empty());
}

#[test]
fn subnet_community_is_added_on_every_node() {
    let mut inputs = cluster();
    let mut s = settings();
    s.subnet_community = true;
    let desired = desired_state(&s, &inputs);
    assert_eq!(desired.nodes.len(), 3);
    for node in NODES {
        let spec = desired.nodes[node].render_spec(node);
        assert_eq!(
            spec.pointer("/bgp/routers/0/neighbors/0/toAdvertise/withCommunity"),
            Some(&json!([{"community": "64512:100", "prefixes": ["198.19.0.0/24"]}]))
        );
    }
    inputs.vmis = vec![vmi("ns1", "a", "node-1", "198.19.0.10")];
    let desired = desired_state(&s, &inputs);
    let spec = desired.nodes["node-1"].render_spec("node-1");
    assert_eq!(
        spec.pointer("/bgp/routers/0/prefixes"),
        Some(&json!(["198.19.0.0/24", "198.19.0.10/32"]))
    );
}

#[test]
fn rendered_specs_read_back_to_the_same_routes() {
    let mut inputs = cluster();
    inputs.vmis = vec![
        vmi("ns1", "a", "node-1", "198.19.0.10"),
        vmi("ns1", "b", "node-1", "198.19.0.11"),
    ];
    let mut s = settings();
    s.subnet_community = true;
    let desired = desired_state(&s, &inputs);
    let node = &desired.nodes["node-1"];
    let back = NodeAdvertisement::parse_spec(&node.render_spec("node-1"));
    assert_eq!(back.routers, node.routers);
}

#[test]
fn an_ra_that_would_take_our_configs_as_templates_is_warned_about() {
    let mut inputs = cluster();
    inputs.advertisements[0].frr_configuration_selector = LabelSelector::everything();
    let desired = desired_state(&settings(), &inputs);
    assert_eq!(desired.warnings.len(), 1, "{:?}", desired.warnings);
}
