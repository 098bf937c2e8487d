//! Validation of the reference examples (ovnk-bgp-apis.md §7) and of the seed's wrong shapes.

use std::sync::OnceLock;

use serde_json::{Value, json};
use vmbgp_schema::{SchemaSet, Strictness, ViolationReason, Violations};

fn schemas() -> &'static SchemaSet {
    static SET: OnceLock<SchemaSet> = OnceLock::new();
    SET.get_or_init(|| SchemaSet::embedded().expect("embedded schemas compile"))
}

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("fixture readable");
    serde_saphyr::from_str(&text).expect("fixture is YAML")
}

fn strict(obj: &Value) -> Result<(), Violations> {
    schemas().validate(obj, Strictness::Strict)
}

/// Asserts a violation with this field and reason, and returns its message.
fn expect_violation(obj: &Value, field: &str, reason: ViolationReason) -> String {
    let violations = strict(obj).expect_err("object must be rejected");
    match violations
        .0
        .iter()
        .find(|v| v.field == field && v.reason == reason)
    {
        Some(found) => found.message.clone(),
        None => panic!("expected {field} {reason}, got: {violations}"),
    }
}

/// Sets `value` at a JSON pointer, creating objects on the way.
fn set(obj: &mut Value, pointer: &str, value: Value) {
    let mut node = obj;
    let parts: Vec<&str> = pointer.trim_start_matches('/').split('/').collect();
    for part in &parts[..parts.len() - 1] {
        node = match node {
            Value::Array(items) => &mut items[part.parse::<usize>().expect("index")],
            other => other
                .as_object_mut()
                .expect("object")
                .entry(part.to_string())
                .or_insert_with(|| json!({})),
        };
    }
    let last = parts[parts.len() - 1];
    node.as_object_mut()
        .expect("object")
        .insert(last.to_string(), value);
}

fn remove(obj: &mut Value, pointer: &str) {
    let (parent, key) = pointer.rsplit_once('/').expect("pointer");
    obj.pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .expect("parent")
        .remove(key);
}

// ---------- the reference examples validate ----------

#[test]
fn reference_examples_validate_strictly() {
    for name in [
        "namespace.yaml",
        "cudn.yaml",
        "cudn-reserved.yaml",
        "frrconfiguration.yaml",
        "routeadvertisements.yaml",
        "virtualmachine.yaml",
        "vmim.yaml",
        "ipamclaim.yaml",
    ] {
        let obj = fixture(name);
        if let Err(violations) = strict(&obj) {
            panic!("{name} must validate, got: {violations}");
        }
    }
}

// ---------- the seed's wrong shapes ----------

#[test]
fn frr_prefixes_with_community_is_an_unknown_field() {
    let mut frr = fixture("frrconfiguration.yaml");
    set(
        &mut frr,
        "/spec/bgp/routers/0/neighbors/0/toAdvertise",
        json!({
            "allowed": {"mode": "filtered", "prefixes": ["10.200.0.0/16"]},
            "prefixesWithCommunity": [{"prefixes": ["10.200.0.0/16"], "community": "64512:100"}]
        }),
    );
    let field = "spec.bgp.routers[0].neighbors[0].toAdvertise.prefixesWithCommunity";
    let message = expect_violation(&frr, field, ViolationReason::UnknownField);
    assert_eq!(message, format!("unknown field \"{field}\""));
}

#[test]
fn frr_with_community_is_accepted() {
    let mut frr = fixture("frrconfiguration.yaml");
    set(
        &mut frr,
        "/spec/bgp/routers/0/neighbors/0/toAdvertise",
        json!({
            "allowed": {"mode": "filtered", "prefixes": ["10.200.0.0/16"]},
            "withCommunity": [{"prefixes": ["10.200.0.0/16"], "community": "64512:100"}],
            "withLocalPref": [{"prefixes": ["10.200.0.0/16"], "localPref": 200}]
        }),
    );
    strict(&frr).expect("JSON names withCommunity/withLocalPref are valid");
}

#[test]
fn ra_with_node_selector_and_pod_network_is_rejected() {
    let mut ra = fixture("routeadvertisements.yaml");
    set(
        &mut ra,
        "/spec/nodeSelector",
        json!({"matchLabels": {"kubernetes.io/hostname": "node-1"}}),
    );
    let message = expect_violation(&ra, "spec", ViolationReason::FieldValueInvalid);
    assert_eq!(
        message,
        "Invalid value: \"object\": If 'PodNetwork' is selected for advertisement, a 'nodeSelector' can't be specified as it needs to be advertised on all nodes"
    );
}

#[test]
fn ra_selecting_primary_user_defined_networks_is_rejected() {
    let mut ra = fixture("routeadvertisements.yaml");
    set(
        &mut ra,
        "/spec/networkSelectors",
        json!([{
            "networkSelectionType": "PrimaryUserDefinedNetworks",
            "primaryUserDefinedNetworkSelector": {"namespaceSelector": {"matchLabels": {"a": "b"}}}
        }]),
    );
    let message = expect_violation(&ra, "spec", ViolationReason::FieldValueInvalid);
    assert!(
        message.ends_with("Only DefaultNetwork or ClusterUserDefinedNetworks can be selected"),
        "{message}"
    );
}

#[test]
fn ra_cudn_type_without_its_selector_is_rejected() {
    let mut ra = fixture("routeadvertisements.yaml");
    remove(
        &mut ra,
        "/spec/networkSelectors/0/clusterUserDefinedNetworkSelector",
    );
    let message = expect_violation(
        &ra,
        "spec.networkSelectors[0]",
        ViolationReason::FieldValueInvalid,
    );
    assert!(message.contains(
        "both networkSelectionType ClusterUserDefinedNetworks and clusterUserDefinedNetworkSelector"
    ));
}

#[test]
fn ra_duplicate_selection_type_is_a_duplicate() {
    let mut ra = fixture("routeadvertisements.yaml");
    let selector = ra
        .pointer("/spec/networkSelectors/0")
        .cloned()
        .expect("selector");
    set(
        &mut ra,
        "/spec/networkSelectors",
        json!([selector.clone(), selector]),
    );
    let message = expect_violation(
        &ra,
        "spec.networkSelectors[1]",
        ViolationReason::FieldValueDuplicate,
    );
    assert!(
        message.contains("\"networkSelectionType\":\"ClusterUserDefinedNetworks\""),
        "{message}"
    );
}

#[test]
fn cudn_old_ipam_lifecycle_field_is_unknown() {
    let mut cudn = fixture("cudn.yaml");
    remove(&mut cudn, "/spec/network/layer2/ipam");
    set(
        &mut cudn,
        "/spec/network/layer2/ipamLifecycle",
        json!("Persistent"),
    );
    expect_violation(
        &cudn,
        "spec.network.layer2.ipamLifecycle",
        ViolationReason::UnknownField,
    );
    schemas()
        .validate(&cudn, Strictness::Prune)
        .expect("Prune mode ignores the unknown field");
}

#[test]
fn cudn_layer2_without_subnets_is_rejected() {
    let mut cudn = fixture("cudn.yaml");
    remove(&mut cudn, "/spec/network/layer2/subnets");
    let message = expect_violation(
        &cudn,
        "spec.network.layer2",
        ViolationReason::FieldValueInvalid,
    );
    assert_eq!(
        message,
        "Invalid value: \"object\": Subnets is required with ipam.mode is Enabled or unset"
    );
}

#[test]
fn cudn_layer2_topology_with_layer3_block_is_rejected() {
    let mut cudn = fixture("cudn.yaml");
    set(
        &mut cudn,
        "/spec/network/layer3",
        json!({"role": "Primary", "subnets": [{"cidr": "10.201.0.0/16"}]}),
    );
    let message = expect_violation(&cudn, "spec.network", ViolationReason::FieldValueInvalid);
    assert!(
        message
            .ends_with("spec.layer3 is required when topology is Layer3 and forbidden otherwise"),
        "{message}"
    );
}

#[test]
fn cudn_unsupported_role_message_lists_values() {
    let mut cudn = fixture("cudn.yaml");
    set(&mut cudn, "/spec/network/layer2/role", json!("Foo"));
    let violations = strict(&cudn).expect_err("rejected");
    let line = violations
        .0
        .iter()
        .find(|v| v.field == "spec.network.layer2.role")
        .map(ToString::to_string)
        .expect("role violation");
    assert_eq!(
        line,
        "spec.network.layer2.role: Unsupported value: \"Foo\": supported values: \"Primary\", \"Secondary\""
    );
}

#[test]
fn cudn_reserved_subnets_outside_subnets_use_the_rule_field_path() {
    let mut cudn = fixture("cudn-reserved.yaml");
    set(
        &mut cudn,
        "/spec/network/layer2/reservedSubnets",
        json!(["10.99.0.0/24"]),
    );
    let message = expect_violation(
        &cudn,
        "spec.network.layer2.reservedSubnets",
        ViolationReason::FieldValueInvalid,
    );
    assert!(message.ends_with(
        "reservedSubnets must be subnetworks of the networks specified in the subnets field"
    ));
}

#[test]
fn cudn_persistent_lifecycle_with_ipam_disabled_is_rejected() {
    let mut cudn = fixture("cudn.yaml");
    set(
        &mut cudn,
        "/spec/network/layer2/ipam/mode",
        json!("Disabled"),
    );
    let message = expect_violation(
        &cudn,
        "spec.network.layer2.ipam",
        ViolationReason::FieldValueInvalid,
    );
    assert!(message.ends_with("lifecycle Persistent is only supported when ipam.mode is Enabled"));
}

#[test]
fn cudn_secondary_with_reserved_subnets_is_rejected() {
    let mut cudn = fixture("cudn-reserved.yaml");
    set(&mut cudn, "/spec/network/layer2/role", json!("Secondary"));
    let violations = strict(&cudn).expect_err("rejected");
    for message in [
        "reservedSubnets is only supported for Primary network",
        "infrastructureSubnets is only supported for Primary network",
        "defaultGatewayIPs is only supported for Primary network",
    ] {
        assert!(
            violations
                .0
                .iter()
                .any(|v| v.field == "spec.network.layer2" && v.message.ends_with(message)),
            "missing {message}: {violations}"
        );
    }
}

#[test]
fn cudn_bad_subnet_cidr_is_invalid() {
    let mut cudn = fixture("cudn.yaml");
    set(
        &mut cudn,
        "/spec/network/layer2/subnets",
        json!(["10.200.0.0/40"]),
    );
    let message = expect_violation(
        &cudn,
        "spec.network.layer2.subnets[0]",
        ViolationReason::FieldValueInvalid,
    );
    assert!(message.ends_with("CIDR is invalid"), "{message}");
}

#[test]
fn vm_interface_with_ipam_claim_ref_is_an_unknown_field() {
    let mut vm = fixture("virtualmachine.yaml");
    set(
        &mut vm,
        "/spec/template/spec/domain/devices/interfaces/0/ipamClaimRef",
        json!({"name": "vm-0001.default"}),
    );
    expect_violation(
        &vm,
        "spec.template.spec.domain.devices.interfaces[0].ipamClaimRef",
        ViolationReason::UnknownField,
    );
}

#[test]
fn vm_spec_running_is_still_in_the_schema() {
    let mut vm = fixture("virtualmachine.yaml");
    remove(&mut vm, "/spec/runStrategy");
    set(&mut vm, "/spec/running", json!(true));
    strict(&vm).expect("spec.running is deprecated but still declared by KubeVirt's schema");
}

#[test]
fn vm_wrong_type_is_type_invalid() {
    let mut vm = fixture("virtualmachine.yaml");
    set(
        &mut vm,
        "/spec/template/spec/terminationGracePeriodSeconds",
        json!("zero"),
    );
    let field = "spec.template.spec.terminationGracePeriodSeconds";
    let message = expect_violation(&vm, field, ViolationReason::FieldValueTypeInvalid);
    assert_eq!(
        message,
        format!("Invalid value: \"string\": {field} in body must be of type integer: \"string\"")
    );
}

#[test]
fn vm_memory_quantity_accepts_integers_and_rejects_garbage() {
    let mut vm = fixture("virtualmachine.yaml");
    set(
        &mut vm,
        "/spec/template/spec/domain/resources/requests/memory",
        json!(1_073_741_824),
    );
    strict(&vm).expect("an integer quantity is valid");
    set(
        &mut vm,
        "/spec/template/spec/domain/resources/requests/memory",
        json!("lots"),
    );
    expect_violation(
        &vm,
        "spec.template.spec.domain.resources.requests.memory",
        ViolationReason::FieldValueInvalid,
    );
}

#[test]
fn vm_template_creation_timestamp_null_is_accepted() {
    let mut vm = fixture("virtualmachine.yaml");
    set(
        &mut vm,
        "/spec/template/metadata/creationTimestamp",
        Value::Null,
    );
    set(&mut vm, "/metadata/creationTimestamp", Value::Null);
    strict(&vm).expect("null members are pruned like the API server does");
}

#[test]
fn bad_label_value_is_rejected() {
    let mut ns = fixture("namespace.yaml");
    let labels = ns
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
        .expect("labels");
    labels.insert("vmbgp.io/run".into(), json!("<uuid>"));
    let message = expect_violation(&ns, "metadata.labels", ViolationReason::FieldValueInvalid);
    assert!(
        message.starts_with("Invalid value: \"<uuid>\": a valid label must be an empty string"),
        "{message}"
    );
}

#[test]
fn namespace_name_with_uppercase_is_rejected() {
    let mut ns = fixture("namespace.yaml");
    set(&mut ns, "/metadata/name", json!("VMBGP-0"));
    let message = expect_violation(&ns, "metadata.name", ViolationReason::FieldValueInvalid);
    assert!(
        message.contains("a lowercase RFC 1123 label must consist of"),
        "{message}"
    );
}

#[test]
fn namespace_name_with_dot_is_rejected_but_cudn_name_with_dot_is_not() {
    let mut ns = fixture("namespace.yaml");
    set(&mut ns, "/metadata/name", json!("vmbgp.0"));
    expect_violation(&ns, "metadata.name", ViolationReason::FieldValueInvalid);
    let mut cudn = fixture("cudn.yaml");
    set(&mut cudn, "/metadata/name", json!("vmbgp.0"));
    strict(&cudn).expect("CRD names are RFC 1123 subdomains");
}

#[test]
fn unknown_kind_is_reported() {
    let claim = json!({
        "apiVersion": "ipam.cluster.x-k8s.io/v1alpha1",
        "kind": "IPAMClaim",
        "metadata": {"name": "vm-0001", "namespace": "vmbgp-0"},
        "spec": {"staticIP": "10.200.0.10"}
    });
    let violations = strict(&claim).expect_err("unknown group");
    assert_eq!(violations.0.len(), 1);
    assert_eq!(violations.0[0].field, "kind");
    assert_eq!(violations.0[0].reason, ViolationReason::UnknownKind);
    assert_eq!(
        violations.0[0].message,
        "no matches for kind \"IPAMClaim\" in version \"ipam.cluster.x-k8s.io/v1alpha1\""
    );
    assert!(
        schemas()
            .lookup("ipam.cluster.x-k8s.io/v1alpha1", "IPAMClaim")
            .is_none()
    );
    assert!(
        schemas()
            .served_kind("ipam.cluster.x-k8s.io/v1alpha1", "IPAMClaim")
            .is_err()
    );
}

#[test]
fn prune_mode_accepts_unknown_fields_but_still_checks_types() {
    let mut vm = fixture("virtualmachine.yaml");
    set(
        &mut vm,
        "/spec/template/spec/domain/devices/interfaces/0/ipamClaimRef",
        json!({"name": "x"}),
    );
    set(&mut vm, "/spec/surprise", json!(1));
    schemas()
        .validate(&vm, Strictness::Prune)
        .expect("Prune ignores unknown fields");
    set(&mut vm, "/spec/runStrategy", json!(7));
    let violations = schemas()
        .validate(&vm, Strictness::Prune)
        .expect_err("type still checked");
    assert!(violations.contains("spec.runStrategy", ViolationReason::FieldValueTypeInvalid));
}

#[test]
fn has_field_follows_the_current_crd() {
    let s = schemas();
    assert!(s.has_field(
        "k8s.ovn.org/v1",
        "ClusterUserDefinedNetwork",
        "spec.network.layer2.ipam.lifecycle"
    ));
    assert!(!s.has_field(
        "k8s.ovn.org/v1",
        "ClusterUserDefinedNetwork",
        "spec.network.layer2.ipamLifecycle"
    ));
    assert!(s.has_field(
        "k8s.ovn.org/v1",
        "ClusterUserDefinedNetwork",
        "spec.network.layer2.reservedSubnets"
    ));
    assert!(s.has_field(
        "kubevirt.io/v1",
        "VirtualMachine",
        "spec.template.spec.domain.devices.interfaces.binding.name"
    ));
    assert!(s.has_field(
        "kubevirt.io/v1",
        "VirtualMachine",
        "spec.template.spec.networks[0].pod"
    ));
    assert!(!s.has_field(
        "kubevirt.io/v1",
        "VirtualMachine",
        "spec.template.spec.domain.devices.interfaces.ipamClaimRef"
    ));
    assert!(s.has_field(
        "frrk8s.metallb.io/v1beta1",
        "FRRConfiguration",
        "spec.bgp.routers.neighbors.toAdvertise.withCommunity"
    ));
    assert!(s.has_field("v1", "Namespace", "metadata.labels"));
    assert!(!s.has_field("nope/v1", "Thing", "spec"));
}

#[test]
fn kinds_are_sorted_and_complete() {
    let kinds = schemas().kinds();
    assert_eq!(
        vmbgp_schema::embedded_kinds().expect("kind facts load"),
        kinds,
        "the validator-free kind facts are the schema set's"
    );
    let mut sorted = kinds.clone();
    sorted.sort();
    assert_eq!(kinds, sorted);
    let names: Vec<(String, String)> = kinds
        .iter()
        .map(|k| (k.api_version(), k.kind.clone()))
        .collect();
    for (api_version, kind) in [
        ("v1", "Namespace"),
        ("v1", "Node"),
        ("k8s.cni.cncf.io/v1", "NetworkAttachmentDefinition"),
        ("k8s.cni.cncf.io/v1alpha1", "IPAMClaim"),
        ("k8s.ovn.org/v1", "ClusterUserDefinedNetwork"),
        ("k8s.ovn.org/v1", "UserDefinedNetwork"),
        ("k8s.ovn.org/v1", "RouteAdvertisements"),
        ("frrk8s.metallb.io/v1beta1", "FRRConfiguration"),
        ("frrk8s.metallb.io/v1beta1", "FRRNodeState"),
        ("frrk8s.metallb.io/v1beta1", "BGPSessionState"),
        ("kubevirt.io/v1", "VirtualMachine"),
        ("kubevirt.io/v1", "VirtualMachineInstance"),
        ("kubevirt.io/v1", "VirtualMachineInstanceMigration"),
        ("coordination.k8s.io/v1", "Lease"),
        ("events.k8s.io/v1", "Event"),
    ] {
        assert!(
            names.contains(&(api_version.to_string(), kind.to_string())),
            "missing {api_version} {kind}"
        );
    }
    assert_eq!(kinds.len(), 15);
    let ra = schemas()
        .lookup("k8s.ovn.org/v1", "RouteAdvertisements")
        .expect("RA");
    assert_eq!(ra.plural, "routeadvertisements");
    assert!(!ra.namespaced);
    assert!(ra.has_status_subresource);
    let vmi = schemas()
        .lookup("kubevirt.io/v1", "VirtualMachineInstance")
        .expect("VMI");
    assert!(vmi.namespaced && !vmi.has_status_subresource);
    let nad = schemas()
        .lookup("k8s.cni.cncf.io/v1", "NetworkAttachmentDefinition")
        .expect("NAD");
    assert_eq!(nad.plural, "network-attachment-definitions");
    let cudn = schemas()
        .lookup("k8s.ovn.org/v1", "ClusterUserDefinedNetwork")
        .expect("CUDN");
    assert_eq!(
        (cudn.singular.as_str(), cudn.short_names.clone()),
        ("clusteruserdefinednetwork", vec!["cudn".to_string()])
    );
    let vm = schemas()
        .lookup("kubevirt.io/v1", "VirtualMachine")
        .expect("VM");
    assert_eq!(vm.short_names, vec!["vm".to_string(), "vms".to_string()]);
    assert_eq!(
        schemas().lookup("v1", "Namespace").expect("ns").short_names,
        vec!["ns".to_string()]
    );
}

#[test]
fn frr_connect_time_must_be_whole_seconds() {
    let mut frr = fixture("frrconfiguration.yaml");
    set(
        &mut frr,
        "/spec/bgp/routers/0/neighbors/0/connectTime",
        json!("1500ms"),
    );
    let message = expect_violation(
        &frr,
        "spec.bgp.routers[0].neighbors[0].connectTime",
        ViolationReason::FieldValueInvalid,
    );
    assert_eq!(
        message,
        "Invalid value: \"string\": connect time should contain a whole number of seconds"
    );
}

#[test]
fn missing_required_field_is_required() {
    let mut vmim = fixture("vmim.yaml");
    remove(&mut vmim, "/spec");
    expect_violation(&vmim, "spec", ViolationReason::FieldValueRequired);
    let mut claim = fixture("ipamclaim.yaml");
    remove(&mut claim, "/spec/network");
    expect_violation(&claim, "spec.network", ViolationReason::FieldValueRequired);
}

#[test]
fn nad_config_must_be_a_string() {
    let nad = json!({
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": "vmbgp-l2-0", "namespace": "vmbgp-0"},
        "spec": {"config": {"cniVersion": "1.0.0"}}
    });
    expect_violation(&nad, "spec.config", ViolationReason::FieldValueTypeInvalid);
}

#[test]
fn invalid_status_message_reads_like_the_api_server() {
    let mut ns = fixture("namespace.yaml");
    set(&mut ns, "/metadata/name", json!("Bad"));
    let violations = strict(&ns).expect_err("rejected");
    let message = violations.invalid_status_message("Namespace", "", "Bad");
    assert!(
        message.starts_with("Namespace \"Bad\" is invalid: metadata.name: Invalid value: \"Bad\""),
        "{message}"
    );
}

#[test]
fn prune_removes_exactly_the_undeclared_fields() {
    let mut vm = fixture("virtualmachine.yaml");
    let pristine = vm.clone();
    set(
        &mut vm,
        "/spec/template/spec/domain/devices/interfaces/0/ipamClaimRef",
        json!({"name": "x"}),
    );
    // Inserted first, so a swap-remove would reorder the fields after it.
    let spec = vm
        .pointer_mut("/spec")
        .and_then(Value::as_object_mut)
        .expect("spec");
    spec.shift_insert(0, "surprise".into(), json!(1));
    set(&mut vm, "/metadata/bogus", json!("x"));
    let removed = schemas().prune(&mut vm).expect("known kind");
    assert_eq!(
        removed,
        vec![
            "metadata.bogus".to_string(),
            "spec.surprise".to_string(),
            "spec.template.spec.domain.devices.interfaces[0].ipamClaimRef".to_string(),
        ]
    );
    // Maps (labels, resource requests) and preserved template metadata are untouched, and the
    // kept fields stay in their order (compare the serialisations, not just the maps).
    assert_eq!(
        serde_json::to_string(&vm).expect("json"),
        serde_json::to_string(&pristine).expect("json")
    );
    strict(&vm).expect("the pruned object validates strictly");
}

#[test]
fn prune_keeps_selector_maps_and_drops_go_field_names() {
    let mut frr = fixture("frrconfiguration.yaml");
    set(
        &mut frr,
        "/spec/bgp/routers/0/neighbors/0/toAdvertise",
        json!({
            "prefixesWithCommunity": [{"prefixes": ["10.200.0.0/16"], "community": "64512:100"}]
        }),
    );
    set(
        &mut frr,
        "/spec/nodeSelector/matchLabels",
        json!({"spec": "x"}),
    );
    let removed = schemas().prune(&mut frr).expect("known kind");
    assert_eq!(
        removed,
        vec!["spec.bgp.routers[0].neighbors[0].toAdvertise.prefixesWithCommunity".to_string()]
    );
    assert_eq!(
        frr.pointer("/spec/nodeSelector/matchLabels/spec"),
        Some(&json!("x"))
    );
    assert_eq!(
        vmbgp_schema::unknown_field_warning(&removed[0]),
        "unknown field \"spec.bgp.routers[0].neighbors[0].toAdvertise.prefixesWithCommunity\""
    );
    let mut unknown = json!({"apiVersion": "ipam.cluster.x-k8s.io/v1alpha1", "kind": "IPAMClaim"});
    assert!(schemas().prune(&mut unknown).is_err());
}

#[test]
fn strict_mode_reports_unknown_metadata_fields_and_http_status() {
    let mut ns = fixture("namespace.yaml");
    set(&mut ns, "/metadata/labelz", json!({"a": "b"}));
    let violations = strict(&ns).expect_err("rejected");
    assert!(violations.contains("metadata.labelz", ViolationReason::UnknownField));
    assert_eq!(violations.http_status(), 400);
    let mut cudn = fixture("cudn.yaml");
    remove(&mut cudn, "/spec/network/layer2/subnets");
    assert_eq!(strict(&cudn).expect_err("rejected").http_status(), 422);
}

#[test]
fn ra_node_selector_with_empty_match_labels_is_still_a_selector() {
    // CEL `has()` tests presence: `matchLabels: {}` counts as set, as on a real server.
    let mut ra = fixture("routeadvertisements.yaml");
    set(&mut ra, "/spec/nodeSelector", json!({"matchLabels": {}}));
    expect_violation(&ra, "spec", ViolationReason::FieldValueInvalid);
}

#[test]
fn udn_rules_apply_at_spec_level() {
    let udn = json!({
        "apiVersion": "k8s.ovn.org/v1",
        "kind": "UserDefinedNetwork",
        "metadata": {"name": "net1", "namespace": "vmbgp-0"},
        "spec": {"topology": "Layer2", "layer2": {"role": "Primary", "subnets": ["198.19.0.0/24", "fd00:10::/64"], "mtu": 1400}}
    });
    strict(&udn).expect("dual-stack Layer2 UDN with MTU >= 1280 is valid");
    let mut small_mtu = udn.clone();
    set(&mut small_mtu, "/spec/layer2/mtu", json!(1000));
    let message = expect_violation(
        &small_mtu,
        "spec.layer2",
        ViolationReason::FieldValueInvalid,
    );
    assert!(
        message.ends_with("MTU should be greater than or equal to 1280 when IPv6 subnet is used"),
        "{message}"
    );
    let mut same_family = udn.clone();
    set(
        &mut same_family,
        "/spec/layer2/subnets",
        json!(["198.19.0.0/24", "198.20.0.0/24"]),
    );
    let message = expect_violation(
        &same_family,
        "spec.layer2.subnets",
        ViolationReason::FieldValueInvalid,
    );
    assert!(
        message.ends_with("When 2 CIDRs are set, they must be from different IP families"),
        "{message}"
    );
}

#[test]
fn cudn_layer3_host_subnet_must_be_longer_than_the_cidr() {
    let mut cudn = fixture("cudn.yaml");
    remove(&mut cudn, "/spec/network/layer2");
    set(&mut cudn, "/spec/network/topology", json!("Layer3"));
    set(
        &mut cudn,
        "/spec/network/layer3",
        json!({"role": "Primary", "subnets": [{"cidr": "10.128.0.0/16", "hostSubnet": 24}]}),
    );
    strict(&cudn).expect("a valid Layer3 CUDN");
    set(
        &mut cudn,
        "/spec/network/layer3/subnets/0/hostSubnet",
        json!(8),
    );
    let message = expect_violation(
        &cudn,
        "spec.network.layer3.subnets[0]",
        ViolationReason::FieldValueInvalid,
    );
    assert!(
        message.ends_with("HostSubnet must be smaller than CIDR subnet"),
        "{message}"
    );
}

#[test]
fn whole_number_floats_are_integers_but_fractions_are_not() {
    let mut cudn = fixture("cudn.yaml");
    set(&mut cudn, "/spec/network/layer2/mtu", json!(1400.0));
    strict(&cudn).expect("1400.0 is an integer value");
    set(&mut cudn, "/spec/network/layer2/mtu", json!(1400.5));
    let message = expect_violation(
        &cudn,
        "spec.network.layer2.mtu",
        ViolationReason::FieldValueTypeInvalid,
    );
    assert!(message.contains("must be of type integer"), "{message}");
    set(&mut cudn, "/spec/network/layer2/mtu", json!(100));
    let message = expect_violation(
        &cudn,
        "spec.network.layer2.mtu",
        ViolationReason::FieldValueInvalid,
    );
    assert!(
        message.ends_with("spec.network.layer2.mtu in body should be greater than or equal to 576"),
        "{message}"
    );
}

#[test]
fn cel_rules_read_whole_number_floats_as_integers() {
    let udn = json!({
        "apiVersion": "k8s.ovn.org/v1",
        "kind": "UserDefinedNetwork",
        "metadata": {"name": "net1", "namespace": "vmbgp-0"},
        "spec": {"topology": "Layer2", "layer2": {"role": "Primary", "subnets": ["198.19.0.0/24", "fd00:10::/64"], "mtu": 1000.0}}
    });
    let message = expect_violation(&udn, "spec.layer2", ViolationReason::FieldValueInvalid);
    assert!(
        message.ends_with("MTU should be greater than or equal to 1280 when IPv6 subnet is used"),
        "{message}"
    );
}

#[test]
fn prune_mode_validates_what_remains_after_pruning() {
    // `ipam` has minProperties 1: an object holding only an unknown field is pruned to `{}`,
    // which a real server then rejects.
    let mut cudn = fixture("cudn.yaml");
    set(
        &mut cudn,
        "/spec/network/layer2/ipam",
        json!({"lifecycleMode": "Persistent"}),
    );
    let violations = schemas()
        .validate(&cudn, Strictness::Prune)
        .expect_err("pruned ipam is empty");
    assert!(
        violations.contains(
            "spec.network.layer2.ipam",
            ViolationReason::FieldValueInvalid
        ),
        "{violations}"
    );
    assert!(
        !violations
            .0
            .iter()
            .any(|v| v.reason == ViolationReason::UnknownField)
    );
}

#[test]
fn an_unknown_field_set_to_null_is_still_unknown() {
    let mut vm = fixture("virtualmachine.yaml");
    set(
        &mut vm,
        "/spec/template/spec/domain/devices/interfaces/0/ipamClaimRef",
        Value::Null,
    );
    expect_violation(
        &vm,
        "spec.template.spec.domain.devices.interfaces[0].ipamClaimRef",
        ViolationReason::UnknownField,
    );
    schemas()
        .validate(&vm, Strictness::Prune)
        .expect("pruned in Prune mode");
}

#[test]
fn frr_defaults_are_applied_like_the_server() {
    let mut frr = fixture("frrconfiguration.yaml");
    let defaulted = schemas().apply_defaults(&mut frr).expect("known kind");
    assert_eq!(
        defaulted,
        vec![
            "spec.bgp.routers[0].neighbors[0].addressFamilies".to_string(),
            "spec.bgp.routers[0].neighbors[0].dualStackAddressFamily".to_string(),
        ],
        "disableMP is set by the fixture; toAdvertise is absent, so its mode is not defaulted"
    );
    assert_eq!(
        frr.pointer("/spec/bgp/routers/0/neighbors/0/dualStackAddressFamily"),
        Some(&json!(false))
    );
    strict(&frr).expect("defaulted object validates");
    let mut vm = fixture("virtualmachine.yaml");
    let before = vm.clone();
    assert!(
        schemas()
            .apply_defaults(&mut vm)
            .expect("known kind")
            .is_empty()
    );
    assert_eq!(
        vm, before,
        "swagger `default: {{}}` hints are not server defaults"
    );
}

#[test]
fn leases_and_events_validate_as_kube_apiserver_decodes_and_validates_them() {
    let lease = fixture("lease.yaml");
    strict(&lease).expect("a client-go Lease");
    let event = fixture("event.yaml");
    strict(&event).expect("a kube-runtime Event");
    let events = schemas()
        .lookup("events.k8s.io/v1", "Event")
        .expect("Event");
    assert_eq!(
        (
            events.plural.as_str(),
            events.short_names.clone(),
            events.namespaced
        ),
        ("events", vec!["ev".to_string()], true)
    );
    assert!(!events.has_status_subresource);
    let leases = schemas()
        .lookup("coordination.k8s.io/v1", "Lease")
        .expect("Lease");
    assert!(leases.short_names.is_empty() && !leases.has_status_subresource);

    // A MicroTime Go cannot parse fails decoding: that error alone, HTTP 400.
    let mut coarse = lease.clone();
    set(
        &mut coarse,
        "/spec/renewTime",
        json!("2026-12-03T18:30:02Z"),
    );
    set(&mut coarse, "/spec/leaseDurationSeconds", json!(0));
    let violations = strict(&coarse).expect_err("coarse renewTime");
    assert_eq!(violations.0.len(), 1, "{violations}");
    assert_eq!(violations.0[0].reason, ViolationReason::Undecodable);
    assert_eq!(violations.http_status(), 400);
    // Schema types and the server's own rules, 422.
    let mut typed = lease.clone();
    set(&mut typed, "/spec/leaseTransitions", json!("two"));
    expect_violation(
        &typed,
        "spec.leaseTransitions",
        ViolationReason::FieldValueTypeInvalid,
    );
    let mut unknown = event.clone();
    set(&mut unknown, "/message", json!("core v1's name for note"));
    expect_violation(&unknown, "message", ViolationReason::UnknownField);
    let mut no_time = event.clone();
    if let Some(o) = no_time.as_object_mut() {
        o.remove("eventTime");
    }
    let message = expect_violation(&no_time, "eventTime", ViolationReason::FieldValueRequired);
    assert_eq!(message, "Required value");
    let mut bad_type = event;
    set(&mut bad_type, "/type", json!("Normal "));
    let violations = strict(&bad_type).expect_err("type");
    assert_eq!(violations.http_status(), 422);
    assert_eq!(
        violations.0[0].to_string(),
        "type: Invalid value: \"\": has invalid value: Normal "
    );
}
