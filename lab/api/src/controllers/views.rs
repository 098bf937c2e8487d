//! The controllers' typed views of VirtualMachines, VirtualMachineInstances, IPAMClaims,
//! NetworkAttachmentDefinitions and ClusterUserDefinedNetworks: only the fields their reconciles read, computed by
//! the store once per committed version (see [`Store::set_view`](crate::store::Store::set_view)), so reconciling
//! 10,000 VMs reads small structs instead of parsing stored JSON.

use std::sync::Arc;

use serde_json::Value;

use super::ipam::{ADDRESSES_ANNOTATION, NetworkParams, network_params};
use super::{Kinds, condition_status, str_at};
use crate::store::{Store, View};

/// What the controllers read of a VirtualMachine (metadata comes from the store's index).
#[derive(Debug, Clone, PartialEq)]
pub struct VmView {
    /// `spec.runStrategy`, or `Always`/`Halted` from the deprecated `spec.running`.
    pub run_strategy: String,
    /// `metadata.generation` (1 when absent).
    pub generation: Value,
}

/// What the controllers read of a VirtualMachineInstance.
#[derive(Debug, Clone, PartialEq)]
pub struct VmiView {
    /// `status.phase` (`""` when unset).
    pub phase: String,
    pub node: Option<String>,
    /// Condition `Ready` is `True`.
    pub ready: bool,
    /// A live migration has started and not completed.
    pub migrating: bool,
    /// Names of the pod networks in `spec.networks` (`default` when unnamed), in order.
    pub pod_networks: Vec<String>,
    /// The `network.kubevirt.io/addresses` annotation (Day-0 static IPs).
    pub addresses_annotation: Option<String>,
}

/// What the controllers read of an IPAMClaim.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimView {
    /// `spec.network`.
    pub network: String,
    /// `status.ips` when it is a list (its strings).
    pub ips: Option<Vec<String>>,
    /// `status.ips` is set (to anything).
    pub ips_present: bool,
    /// The status of condition `IPsAllocated`.
    pub ips_allocated: Option<String>,
    /// The reasons of every condition.
    pub condition_reasons: Vec<String>,
}

/// What the controllers read of a NetworkAttachmentDefinition: its OVN-K network, when it is a primary one.
#[derive(Debug, Clone, PartialEq)]
pub struct NadView {
    /// `(OVN network name, allowPersistentIPs)` of a primary-role NAD.
    pub primary: Option<(String, bool)>,
}

/// What the controllers read of a ClusterUserDefinedNetwork: its address parameters.
#[derive(Debug, Clone)]
pub struct CudnView {
    pub params: NetworkParams,
}

/// Registers every view with the store.
pub fn register(store: &Store, k: &Kinds) {
    store.set_view(k.vm, vm_view);
    store.set_view(k.vmi, vmi_view);
    store.set_view(k.claim, claim_view);
    store.set_view(k.nad, nad_view);
    store.set_view(k.cudn, cudn_view);
}

fn vm_view(vm: &Value) -> View {
    let run_strategy = match str_at(vm, "/spec/runStrategy") {
        Some(s) => s.to_string(),
        None => match vm.pointer("/spec/running").and_then(Value::as_bool) {
            Some(true) => "Always".to_string(),
            _ => "Halted".to_string(),
        },
    };
    Arc::new(VmView {
        run_strategy,
        generation: vm
            .pointer("/metadata/generation")
            .cloned()
            .unwrap_or(Value::from(1)),
    })
}

fn vmi_view(vmi: &Value) -> View {
    let migrating = vmi.pointer("/status/migrationState").is_some_and(|m| {
        m.get("completed") != Some(&Value::Bool(true)) && m.get("startTimestamp").is_some()
    });
    let pod_networks = vmi
        .pointer("/spec/networks")
        .and_then(Value::as_array)
        .map(|nets| {
            nets.iter()
                .filter(|n| n.get("pod").is_some())
                .map(|n| {
                    n.get("name")
                        .and_then(Value::as_str)
                        .unwrap_or("default")
                        .to_string()
                })
                .collect()
        })
        .unwrap_or_default();
    Arc::new(VmiView {
        phase: str_at(vmi, "/status/phase").unwrap_or_default().to_string(),
        node: str_at(vmi, "/status/nodeName").map(str::to_string),
        ready: condition_status(vmi, "Ready") == Some("True"),
        migrating,
        pod_networks,
        addresses_annotation: vmi
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(ADDRESSES_ANNOTATION))
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

fn claim_view(claim: &Value) -> View {
    let ips = claim
        .pointer("/status/ips")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        });
    let condition_reasons = claim
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .map(|c| {
            c.iter()
                .filter_map(|c| c.get("reason").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    Arc::new(ClaimView {
        network: str_at(claim, "/spec/network")
            .unwrap_or_default()
            .to_string(),
        ips,
        ips_present: claim.pointer("/status/ips").is_some(),
        ips_allocated: condition_status(claim, "IPsAllocated").map(str::to_string),
        condition_reasons,
    })
}

fn nad_view(nad: &Value) -> View {
    let primary = str_at(nad, "/spec/config")
        .and_then(|c| serde_json::from_str::<Value>(c).ok())
        .and_then(|cfg| {
            if cfg.get("role").and_then(Value::as_str) != Some("primary") {
                return None;
            }
            let name = cfg.get("name").and_then(Value::as_str)?.to_string();
            let persistent = cfg
                .get("allowPersistentIPs")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            Some((name, persistent))
        });
    Arc::new(NadView { primary })
}

fn cudn_view(cudn: &Value) -> View {
    Arc::new(CudnView {
        params: network_params(cudn),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn views_read_what_the_reconciles_need() {
        let vmi = json!({"metadata": {"annotations": {ADDRESSES_ANNOTATION: "{\"default\":[\"198.19.0.9\"]}"}},
            "spec": {"networks": [{"name": "a", "multus": {}}, {"pod": {}}]},
            "status": {"phase": "Running", "nodeName": "node-1", "conditions": [{"type": "Ready", "status": "True"}],
                "migrationState": {"startTimestamp": "t", "completed": false}}});
        let v = vmi_view(&vmi).downcast::<VmiView>().unwrap();
        assert_eq!(v.phase, "Running");
        assert_eq!(v.node.as_deref(), Some("node-1"));
        assert!(v.ready && v.migrating);
        assert_eq!(v.pod_networks, vec!["default".to_string()]);
        assert!(v.addresses_annotation.is_some());
        let vm = vm_view(&json!({"spec": {"running": true}}))
            .downcast::<VmView>()
            .unwrap();
        assert_eq!(
            (vm.run_strategy.as_str(), &vm.generation),
            ("Always", &json!(1))
        );
        let claim = claim_view(&json!({"spec": {"network": "n"}, "status": {"ips": ["198.19.0.2/16"],
            "conditions": [{"type": "IPsAllocated", "status": "False", "reason": "IPAddressConflict"}]}}))
        .downcast::<ClaimView>()
        .unwrap();
        assert_eq!(claim.ips, Some(vec!["198.19.0.2/16".to_string()]));
        assert_eq!(claim.ips_allocated.as_deref(), Some("False"));
        assert_eq!(
            claim.condition_reasons,
            vec!["IPAddressConflict".to_string()]
        );
        let nad = nad_view(&json!({"spec": {"config": "{\"role\":\"primary\",\"name\":\"cluster_udn_x\",\"allowPersistentIPs\":true}"}}))
            .downcast::<NadView>()
            .unwrap();
        assert_eq!(nad.primary, Some(("cluster_udn_x".to_string(), true)));
    }

    #[test]
    fn views_fall_back_where_fields_are_absent() {
        let vm = vm_view(&json!({"metadata": {"generation": 4},
            "spec": {"runStrategy": "Manual", "running": true}}))
        .downcast::<VmView>()
        .unwrap();
        assert_eq!(vm.run_strategy, "Manual", "runStrategy wins over running");
        assert_eq!(vm.generation, json!(4));
        let stopped = vm_view(&json!({"spec": {}})).downcast::<VmView>().unwrap();
        assert_eq!(stopped.run_strategy, "Halted");

        let vmi = vmi_view(&json!({"spec": {"networks": [{"pod": {}}]}}))
            .downcast::<VmiView>()
            .unwrap();
        assert_eq!(vmi.phase, "");
        assert_eq!(vmi.pod_networks, vec!["default".to_string()]);
        assert!(!vmi.ready && !vmi.migrating);
        let migrated = vmi_view(&json!({"status": {"migrationState": {
            "startTimestamp": "t", "completed": true}}}))
        .downcast::<VmiView>()
        .unwrap();
        assert!(!migrated.migrating, "a completed migration is over");

        let claim = claim_view(&json!({"spec": {"network": "n"}}))
            .downcast::<ClaimView>()
            .unwrap();
        assert_eq!((&claim.ips, claim.ips_present), (&None, false));

        for config in [
            "{\"role\":\"secondary\",\"name\":\"cluster_udn_x\"}",
            "not json",
        ] {
            let nad = nad_view(&json!({"spec": {"config": config}}))
                .downcast::<NadView>()
                .unwrap();
            assert_eq!(nad.primary, None, "{config}");
        }
        let nad = nad_view(
            &json!({"spec": {"config": "{\"role\":\"primary\",\"name\":\"cluster_udn_y\"}"}}),
        )
        .downcast::<NadView>()
        .unwrap();
        assert_eq!(nad.primary, Some(("cluster_udn_y".to_string(), false)));
    }
}
