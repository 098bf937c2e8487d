//! Status objects as the simulated controllers write them validate against the real schemas, and
//! malformed conditions are caught (the lab's status writes go through the same validation).

use std::sync::OnceLock;

use serde_json::{Value, json};
use vmbgp_schema::{SchemaSet, Strictness, ViolationReason};

fn schemas() -> &'static SchemaSet {
    static SET: OnceLock<SchemaSet> = OnceLock::new();
    SET.get_or_init(|| SchemaSet::embedded().expect("embedded schemas compile"))
}

fn accepted(obj: &Value) {
    if let Err(violations) = schemas().validate(obj, Strictness::Strict) {
        panic!("{} must validate: {violations}", obj["kind"]);
    }
}

fn condition(kind: &str, status: &str, reason: &str) -> Value {
    json!({
        "type": kind,
        "status": status,
        "reason": reason,
        "message": "",
        "lastTransitionTime": "2026-11-28T13:00:00Z"
    })
}

#[test]
fn vmi_status_as_the_kubevirt_controller_writes_it() {
    accepted(&json!({
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": "vm-0001", "namespace": "vmbgp-0", "labels": {"kubevirt.io/vm": "vm-0001"}},
        "spec": {"domain": {"devices": {"interfaces": [{"name": "default", "binding": {"name": "l2bridge"}}]}},
                 "networks": [{"name": "default", "pod": {}}]},
        "status": {
            "phase": "Running",
            "nodeName": "node-1",
            "phaseTransitionTimestamps": [
                {"phase": "Pending", "phaseTransitionTimestamp": "2026-11-28T13:00:00Z"},
                {"phase": "Running", "phaseTransitionTimestamp": "2026-11-28T13:00:05Z"}
            ],
            "interfaces": [{"name": "default", "ipAddress": "198.19.0.10", "ipAddresses": ["198.19.0.10"],
                            "mac": "02:00:c6:13:00:0a", "interfaceName": "eth0", "infoSource": "domain"}],
            "conditions": [{"type": "Ready", "status": "True", "lastProbeTime": null,
                            "lastTransitionTime": "2026-11-28T13:00:05Z"}],
            "migrationState": {"sourceNode": "node-1", "targetNode": "node-2", "completed": true,
                               "startTimestamp": "2026-11-28T13:01:00Z", "endTimestamp": "2026-11-28T13:01:03Z",
                               "mode": "PreCopy", "migrationUid": "1b8e3c1e-0000-0000-0000-000000000001"}
        }
    }));
}

#[test]
fn vm_and_vmim_status() {
    accepted(&json!({
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": "vm-0001", "namespace": "vmbgp-0"},
        "spec": {"runStrategy": "Always", "template": {"spec": {"domain": {"devices": {}}}}},
        "status": {"printableStatus": "Running", "ready": true, "created": true,
                   "conditions": [{"type": "Ready", "status": "True"}]}
    }));
    accepted(&json!({
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstanceMigration",
        "metadata": {"name": "vm-0001-mig-abcde", "namespace": "vmbgp-0"},
        "spec": {"vmiName": "vm-0001"},
        "status": {"phase": "Succeeded",
                   "phaseTransitionTimestamps": [{"phase": "Succeeded", "phaseTransitionTimestamp": "2026-11-28T13:01:03Z"}],
                   "migrationState": {"completed": true, "targetNode": "node-2"}}
    }));
}

#[test]
fn ovn_and_frr_status() {
    let mut cudn: Value = json!({
        "apiVersion": "k8s.ovn.org/v1",
        "kind": "ClusterUserDefinedNetwork",
        "metadata": {"name": "vmbgp-l2-0"},
        "spec": {"namespaceSelector": {"matchLabels": {"vmbgp.io/cudn": "vmbgp-l2-0"}},
                 "network": {"topology": "Layer2", "layer2": {"role": "Primary", "subnets": ["198.19.0.0/24"]}}},
        "status": {"conditions": [condition("NetworkCreated", "True", "NetworkAttachmentDefinitionCreated")]}
    });
    accepted(&cudn);
    accepted(&json!({
        "apiVersion": "k8s.ovn.org/v1",
        "kind": "RouteAdvertisements",
        "metadata": {"name": "vmbgp-l2-0"},
        "spec": {"advertisements": ["PodNetwork"], "nodeSelector": {}, "frrConfigurationSelector": {},
                 "networkSelectors": [{"networkSelectionType": "ClusterUserDefinedNetworks",
                                       "clusterUserDefinedNetworkSelector": {"networkSelector": {}}}]},
        "status": {"status": "Accepted", "conditions": [condition("Accepted", "True", "Accepted")]}
    }));
    accepted(&json!({
        "apiVersion": "frrk8s.metallb.io/v1beta1",
        "kind": "FRRNodeState",
        "metadata": {"name": "node-1"},
        "status": {"runningConfig": "router bgp 64513\n", "lastConversionResult": "success", "lastReloadResult": "success"}
    }));
    accepted(&json!({
        "apiVersion": "frrk8s.metallb.io/v1beta1",
        "kind": "BGPSessionState",
        "metadata": {"name": "node-1-abcde", "namespace": "frr-k8s-system",
                     "labels": {"frrk8s.metallb.io/node": "node-1", "frrk8s.metallb.io/peer": "198.18.0.155"}},
        "status": {"node": "node-1", "peer": "198.18.0.155", "vrf": "", "bgpStatus": "Established", "bfdStatus": "N/A"}
    }));

    // A condition status outside True/False/Unknown, an empty reason, a duplicate condition type.
    cudn["status"]["conditions"] = json!([
        condition("NetworkCreated", "Yes", "Created"),
        condition("NetworkCreated", "True", "")
    ]);
    let violations = schemas()
        .validate(&cudn, Strictness::Strict)
        .expect_err("bad conditions");
    assert!(
        violations.contains(
            "status.conditions[0].status",
            ViolationReason::FieldValueNotSupported
        ),
        "{violations}"
    );
    assert!(
        violations.contains(
            "status.conditions[1].reason",
            ViolationReason::FieldValueInvalid
        ),
        "{violations}"
    );
    assert!(
        violations.contains("status.conditions[1]", ViolationReason::FieldValueDuplicate),
        "{violations}"
    );
}

#[test]
fn bgp_session_state_has_no_spec_fields() {
    let session = json!({
        "apiVersion": "frrk8s.metallb.io/v1beta1",
        "kind": "BGPSessionState",
        "metadata": {"name": "s", "namespace": "frr-k8s-system"},
        "spec": {"peer": "198.18.0.155"}
    });
    let violations = schemas()
        .validate(&session, Strictness::Strict)
        .expect_err("spec declares no fields");
    assert!(
        violations.contains("spec.peer", ViolationReason::UnknownField),
        "{violations}"
    );
}
