//! Checks OVN-Kubernetes' RouteAdvertisements controller applies after admission (it marks the
//! RA `Not Accepted` rather than refusing the write), mirrored from
//! `clustermanager/routeadvertisements/controller.go`.

use serde_json::Value;

use crate::violation::{Violation, ViolationReason};

/// Why the RA controller would refuse `ra` given the ClusterUserDefinedNetworks its
/// `networkSelectors` select. Each finding carries the controller's wording (reason
/// `FieldValueForbidden`, field `spec.advertisements` or `spec.networkSelectors`); the lab puts
/// `Not Accepted: <message>` into the RA status.
///
/// Rules: a selected network must be primary; its topology must be Layer3 or Layer2;
/// `EgressIP` advertisement is not supported for Layer2 networks.
pub fn ra_controller_check(ra: &Value, selected_cudns: &[Value]) -> Vec<Violation> {
    let advertises_egress_ip = ra
        .pointer("/spec/advertisements")
        .and_then(Value::as_array)
        .is_some_and(|items| items.iter().any(|item| item.as_str() == Some("EgressIP")));
    let mut out = Vec::new();
    for cudn in selected_cudns {
        let name = cudn
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let network_name = format!("cluster_udn_{name}");
        let topology = cudn
            .pointer("/spec/network/topology")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let role = match topology {
            "Layer2" => cudn.pointer("/spec/network/layer2/role"),
            "Layer3" => cudn.pointer("/spec/network/layer3/role"),
            "Localnet" => cudn.pointer("/spec/network/localnet/role"),
            _ => None,
        }
        .and_then(Value::as_str)
        .unwrap_or_default();
        if role != "Primary" {
            out.push(Violation::new(
                "spec.networkSelectors",
                ViolationReason::FieldValueForbidden,
                format!("Forbidden: configuration error: selected network \"{network_name}\" is not the default nor a primary network"),
            ));
            continue;
        }
        if topology != "Layer3" && topology != "Layer2" {
            out.push(Violation::new(
                "spec.networkSelectors",
                ViolationReason::FieldValueForbidden,
                format!("Forbidden: configuration error: selected network \"{network_name}\" has unsupported topology \"{topology}\""),
            ));
            continue;
        }
        if advertises_egress_ip && topology == "Layer2" {
            out.push(Violation::new(
                "spec.advertisements",
                ViolationReason::FieldValueForbidden,
                format!(
                    "Forbidden: configuration error: EgressIP advertisement is currently not supported for Layer2 networks, network: {network_name}"
                ),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cudn(name: &str, topology: &str, role: &str) -> Value {
        let block = topology.to_lowercase();
        json!({"metadata": {"name": name}, "spec": {"network": {"topology": topology, block: {"role": role}}}})
    }

    #[test]
    fn egress_ip_with_layer2_is_rejected() {
        let ra = json!({"spec": {"advertisements": ["PodNetwork", "EgressIP"]}});
        let found = ra_controller_check(&ra, &[cudn("net1", "Layer2", "Primary")]);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].field, "spec.advertisements");
        assert_eq!(found[0].reason, ViolationReason::FieldValueForbidden);
        assert!(found[0].message.contains("network: cluster_udn_net1"));
    }

    #[test]
    fn pod_network_on_layer2_primary_and_egress_ip_on_layer3_are_accepted() {
        let pod = json!({"spec": {"advertisements": ["PodNetwork"]}});
        assert!(ra_controller_check(&pod, &[cudn("net1", "Layer2", "Primary")]).is_empty());
        let egress = json!({"spec": {"advertisements": ["EgressIP"]}});
        assert!(ra_controller_check(&egress, &[cudn("net3", "Layer3", "Primary")]).is_empty());
    }

    #[test]
    fn secondary_networks_are_rejected() {
        let ra = json!({"spec": {"advertisements": ["PodNetwork"]}});
        let found = ra_controller_check(&ra, &[cudn("sec", "Layer2", "Secondary")]);
        assert_eq!(found[0].field, "spec.networkSelectors");
    }
}
