//! Reads the cluster objects the controller watches (as JSON) into the few facts it needs. Every
//! reader is total: a missing or malformed field becomes `None`/empty, never a panic.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::Value;

use vmbgp_model::selector::{LabelSelector, Labels, SelectorError};

/// OVN-K's label on the FRRConfigurations it generates from a RouteAdvertisements.
pub const RA_GENERATED_LABEL: &str = "k8s.ovn.org/route-advertisements";
/// The label frr-k8s and OVN-K pin per-node FRRConfigurations with.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

fn text<'a>(object: &'a Value, pointer: &str) -> Option<&'a str> {
    object.pointer(pointer).and_then(Value::as_str)
}

fn labels_of(object: &Value) -> Labels {
    object
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// Parses `10.0.0.5` or `10.0.0.5/16` (IPAMClaim status uses the CIDR form) to the address.
pub fn parse_address(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    text.parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<IpNet>().ok().map(|n| n.addr()))
}

/// A live migration as the VMI's `status.migrationState` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    pub uid: String,
    pub source_node: String,
    pub target_node: String,
    pub completed: bool,
    pub failed: bool,
    /// RFC 3339; KubeVirt sets it when the migration ends.
    pub end_timestamp: Option<String>,
}

/// What the controller needs from a VirtualMachineInstance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vmi {
    pub namespace: String,
    pub name: String,
    pub labels: Labels,
    pub phase: Option<String>,
    pub node_name: Option<String>,
    pub deleting: bool,
    /// The name of the `pod: {}` network in `spec.networks` (the primary UDN attachment).
    pub pod_network: String,
    /// Addresses reported on the pod network's interface.
    pub interface_addresses: Vec<IpAddr>,
    pub migration: Option<Migration>,
}

impl Vmi {
    pub fn from_json(object: &Value) -> Option<Vmi> {
        let namespace = text(object, "/metadata/namespace")?.to_string();
        let name = text(object, "/metadata/name")?.to_string();
        let pod_network = object
            .pointer("/spec/networks")
            .and_then(Value::as_array)
            .and_then(|nets| nets.iter().find(|n| n.get("pod").is_some()))
            .and_then(|n| n.get("name").and_then(Value::as_str))
            .unwrap_or("default")
            .to_string();
        let interface_addresses = object
            .pointer("/status/interfaces")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|i| i.get("name").and_then(Value::as_str) == Some(pod_network.as_str()))
            .flat_map(|i| {
                let many = i.get("ipAddresses").and_then(Value::as_array).cloned();
                let one = i.get("ipAddress").cloned().map(|a| vec![a]);
                many.or(one).unwrap_or_default()
            })
            .filter_map(|a| a.as_str().and_then(parse_address))
            .filter(|a| !is_link_local(a))
            .collect();
        let migration = object.pointer("/status/migrationState").and_then(|m| {
            Some(Migration {
                uid: text(m, "/migrationUid").unwrap_or_default().to_string(),
                source_node: text(m, "/sourceNode").unwrap_or_default().to_string(),
                target_node: text(m, "/targetNode")?.to_string(),
                completed: m.get("completed").and_then(Value::as_bool) == Some(true),
                failed: m.get("failed").and_then(Value::as_bool) == Some(true),
                end_timestamp: text(m, "/endTimestamp").map(str::to_string),
            })
        });
        Some(Vmi {
            namespace,
            name,
            labels: labels_of(object),
            phase: text(object, "/status/phase").map(str::to_string),
            node_name: text(object, "/status/nodeName")
                .filter(|n| !n.is_empty())
                .map(str::to_string),
            deleting: object.pointer("/metadata/deletionTimestamp").is_some(),
            pod_network,
            interface_addresses,
            migration,
        })
    }

    /// The node that hosts the VM now: a completed, successful migration's target (KubeVirt may
    /// update `nodeName` a moment later), otherwise `status.nodeName`.
    pub fn hosting_node(&self) -> Option<&str> {
        match &self.migration {
            Some(m) if m.completed && !m.failed && !m.target_node.is_empty() => {
                Some(m.target_node.as_str())
            }
            _ => self.node_name.as_deref(),
        }
    }
}

/// Cuts a VMI's spec and status down to what [`Vmi::from_json`] reads (`spec.networks`;
/// `status.phase`, `nodeName`, `interfaces`, `migrationState`): the watch cache holds every VMI
/// of the cluster, and the domain spec, volumes and conditions are most of each object.
pub fn keep_what_vmis_need(data: &mut Value) {
    let pick = |from: Option<&Value>, keys: &[&str]| -> Value {
        let mut kept = serde_json::Map::new();
        if let Some(Value::Object(from)) = from {
            for key in keys {
                if let Some(v) = from.get(*key) {
                    kept.insert((*key).to_string(), v.clone());
                }
            }
        }
        Value::Object(kept)
    };
    let spec = pick(data.get("spec"), &["networks"]);
    let status = pick(
        data.get("status"),
        &["phase", "nodeName", "interfaces", "migrationState"],
    );
    if let Value::Object(map) = data {
        map.insert("spec".to_string(), spec);
        map.insert("status".to_string(), status);
    }
}

fn is_link_local(address: &IpAddr) -> bool {
    match address {
        IpAddr::V4(a) => a.is_link_local(),
        IpAddr::V6(a) => (a.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// An IPAMClaim (`k8s.cni.cncf.io/v1alpha1`): named `<vm>.<network>`, addresses in `status.ips`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub namespace: String,
    pub name: String,
    pub addresses: Vec<IpAddr>,
}

impl Claim {
    pub fn from_json(object: &Value) -> Option<Claim> {
        Some(Claim {
            namespace: text(object, "/metadata/namespace")?.to_string(),
            name: text(object, "/metadata/name")?.to_string(),
            addresses: object
                .pointer("/status/ips")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|a| a.as_str().and_then(parse_address))
                .collect(),
        })
    }
}

/// A ClusterUserDefinedNetwork, as far as host routes care.
#[derive(Debug, Clone)]
pub struct Network {
    pub name: String,
    pub labels: Labels,
    pub namespace_selector: LabelSelector,
    pub subnets: Vec<IpNet>,
    /// Only Layer2 primary networks carry VMs whose /32s this controller advertises.
    pub layer2_primary: bool,
}

impl Network {
    pub fn from_json(object: &Value) -> Result<Network, InputError> {
        let name = text(object, "/metadata/name")
            .ok_or(InputError::MissingName("ClusterUserDefinedNetwork"))?
            .to_string();
        let namespace_selector = LabelSelector::from_object(
            object.pointer("/spec/namespaceSelector"),
        )
        .map_err(|source| InputError::LabelSelector {
            object: format!("ClusterUserDefinedNetwork {name}"),
            source,
        })?;
        let layer2 = object.pointer("/spec/network/layer2");
        let layer2_primary = text(object, "/spec/network/topology") == Some("Layer2")
            && layer2.and_then(|l| l.get("role")).and_then(Value::as_str) == Some("Primary");
        let subnets = layer2
            .and_then(|l| l.get("subnets"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().and_then(|s| s.parse::<IpNet>().ok()))
            .map(|n| n.trunc())
            .collect();
        Ok(Network {
            labels: labels_of(object),
            name,
            namespace_selector,
            subnets,
            layer2_primary,
        })
    }

    /// The network's VRF name: the CUDN name when shorter than 16 characters (OVN-K docs, Known
    /// Limitations); longer names get a generated VRF this controller cannot predict.
    pub fn vrf(&self) -> Option<&str> {
        (self.name.len() < 16).then_some(self.name.as_str())
    }
}

/// A Namespace's labels (CUDNs select namespaces by label).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    pub name: String,
    pub labels: Labels,
}

impl Namespace {
    pub fn from_json(object: &Value) -> Option<Namespace> {
        Some(Namespace {
            name: text(object, "/metadata/name")?.to_string(),
            labels: labels_of(object),
        })
    }
}

/// A RouteAdvertisements (`k8s.ovn.org/v1`).
#[derive(Debug, Clone)]
pub struct Advertisement {
    pub name: String,
    /// One selector per `ClusterUserDefinedNetworks` network selection.
    pub network_selectors: Vec<LabelSelector>,
    pub pod_network: bool,
    /// `""`/`default`, `auto`, or a VRF name.
    pub target_vrf: String,
    pub frr_configuration_selector: LabelSelector,
}

impl Advertisement {
    pub fn from_json(object: &Value) -> Result<Advertisement, InputError> {
        let name = text(object, "/metadata/name")
            .ok_or(InputError::MissingName("RouteAdvertisements"))?
            .to_string();
        let selector_error = |source| InputError::LabelSelector {
            object: format!("RouteAdvertisements {name}"),
            source,
        };
        let mut network_selectors = Vec::new();
        for selection in object
            .pointer("/spec/networkSelectors")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if selection
                .get("networkSelectionType")
                .and_then(Value::as_str)
                == Some("ClusterUserDefinedNetworks")
            {
                network_selectors.push(
                    LabelSelector::from_object(
                        selection.pointer("/clusterUserDefinedNetworkSelector/networkSelector"),
                    )
                    .map_err(selector_error)?,
                );
            }
        }
        let pod_network = object
            .pointer("/spec/advertisements")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|v| v.as_str() == Some("PodNetwork")));
        let frr_configuration_selector =
            LabelSelector::from_object(object.pointer("/spec/frrConfigurationSelector"))
                .map_err(selector_error)?;
        Ok(Advertisement {
            target_vrf: text(object, "/spec/targetVRF")
                .unwrap_or_default()
                .to_string(),
            name,
            network_selectors,
            pod_network,
            frr_configuration_selector,
        })
    }

    pub fn advertises(&self, network: &Network) -> bool {
        self.pod_network
            && self
                .network_selectors
                .iter()
                .any(|s| s.matches(&network.labels))
    }
}

/// An FRRConfiguration OVN-K generated for one (RouteAdvertisements, template, node): it holds
/// the router (ASN, VRF) and neighbours that advertise the network on that node.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratedConfig {
    pub name: String,
    pub advertisement: String,
    pub node: String,
    /// `spec.bgp.routers`, as written.
    pub routers: Vec<Value>,
}

impl GeneratedConfig {
    /// `None` for FRRConfigurations OVN-K did not generate or that are not pinned to one node.
    pub fn from_json(object: &Value) -> Option<GeneratedConfig> {
        let labels = labels_of(object);
        let advertisement = labels.get(RA_GENERATED_LABEL)?.clone();
        let node = text(
            object,
            &format!(
                "/spec/nodeSelector/matchLabels/{}",
                HOSTNAME_LABEL.replace('~', "~0").replace('/', "~1")
            ),
        )?
        .to_string();
        Some(GeneratedConfig {
            name: text(object, "/metadata/name")?.to_string(),
            advertisement,
            node,
            routers: object
                .pointer("/spec/bgp/routers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
        })
    }
}

/// An object that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("{0} without metadata.name")]
    MissingName(&'static str),
    #[error("{object}: {source}")]
    LabelSelector {
        object: String,
        source: SelectorError,
    },
}

/// Everything the desired state is computed from, as read from the watch caches.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pub vmis: Vec<Vmi>,
    /// By (namespace, name).
    pub claims: BTreeMap<(String, String), Claim>,
    pub networks: Vec<Network>,
    pub namespaces: BTreeMap<String, Namespace>,
    pub advertisements: Vec<Advertisement>,
    pub generated: Vec<GeneratedConfig>,
}

/// Raw objects of each watched kind, as listed or cached.
#[derive(Debug, Clone, Default)]
pub struct RawObjects {
    pub vmis: Vec<Value>,
    pub claims: Vec<Value>,
    pub networks: Vec<Value>,
    pub namespaces: Vec<Value>,
    pub advertisements: Vec<Value>,
    pub generated: Vec<Value>,
}

impl Inputs {
    /// Reads every object; unreadable ones are skipped, and those worth telling about (a
    /// selector that does not parse) are returned as problems.
    pub fn from_objects(raw: &RawObjects) -> (Inputs, Vec<String>) {
        let mut problems = Vec::new();
        let mut inputs = Inputs {
            vmis: raw.vmis.iter().filter_map(Vmi::from_json).collect(),
            ..Inputs::default()
        };
        for c in raw.claims.iter().filter_map(Claim::from_json) {
            inputs
                .claims
                .insert((c.namespace.clone(), c.name.clone()), c);
        }
        for network in &raw.networks {
            match Network::from_json(network) {
                Ok(n) => inputs.networks.push(n),
                Err(e) => problems.push(e.to_string()),
            }
        }
        for n in raw.namespaces.iter().filter_map(Namespace::from_json) {
            inputs.namespaces.insert(n.name.clone(), n);
        }
        for ra in &raw.advertisements {
            match Advertisement::from_json(ra) {
                Ok(a) => inputs.advertisements.push(a),
                Err(e) => problems.push(e.to_string()),
            }
        }
        inputs.generated = raw
            .generated
            .iter()
            .filter_map(GeneratedConfig::from_json)
            .collect();
        // Deterministic order whatever the source's.
        inputs
            .vmis
            .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        inputs.networks.sort_by(|a, b| a.name.cmp(&b.name));
        inputs.advertisements.sort_by(|a, b| a.name.cmp(&b.name));
        inputs.generated.sort_by(|a, b| a.name.cmp(&b.name));
        (inputs, problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_trimmed_vmi_reads_as_the_whole_one() {
        let whole = json!({
            "metadata": {"namespace": "ns", "name": "vm", "labels": {"vmbgp.io/host-routes": "false"},
                "deletionTimestamp": "2026-12-03T10:00:00Z"},
            "spec": {"networks": [{"name": "net1", "pod": {}}],
                "domain": {"devices": {"disks": [{"name": "root"}]}, "memory": {"guest": "1Gi"}},
                "volumes": [{"name": "root", "containerDisk": {"image": "x"}}]},
            "status": {"phase": "Running", "nodeName": "node-1",
                "interfaces": [{"name": "net1", "ipAddress": "198.19.0.5"}],
                "migrationState": {"sourceNode": "node-1", "targetNode": "node-2", "completed": false},
                "conditions": [{"type": "Ready", "status": "True"}], "guestOSInfo": {"name": "Fedora"}}
        });
        let mut data = json!({"spec": whole["spec"], "status": whole["status"]});
        keep_what_vmis_need(&mut data);
        assert_eq!(
            data["spec"],
            json!({"networks": [{"name": "net1", "pod": {}}]})
        );
        assert!(data["status"].get("conditions").is_none());
        let mut trimmed = whole.clone();
        trimmed["spec"] = data["spec"].clone();
        trimmed["status"] = data["status"].clone();
        assert_eq!(Vmi::from_json(&trimmed), Vmi::from_json(&whole));
    }

    #[test]
    fn completed_migration_hosts_on_target_even_before_node_name_moves() {
        let vmi = Vmi::from_json(&json!({
            "metadata": {"namespace": "ns", "name": "vm"},
            "spec": {"networks": [{"name": "net1", "pod": {}}]},
            "status": {"phase": "Running", "nodeName": "node-1",
                "interfaces": [{"name": "net1", "ipAddresses": ["198.19.0.5", "fe80::1"]}],
                "migrationState": {"sourceNode": "node-1", "targetNode": "node-2", "completed": true, "migrationUid": "u"}}
        }))
        .expect("parses");
        assert_eq!(vmi.hosting_node(), Some("node-2"));
        assert_eq!(vmi.pod_network, "net1");
        assert_eq!(
            vmi.interface_addresses,
            vec![parse_address("198.19.0.5").expect("ip")]
        );
        let failed = Vmi {
            migration: vmi
                .migration
                .clone()
                .map(|m| Migration { failed: true, ..m }),
            ..vmi
        };
        assert_eq!(failed.hosting_node(), Some("node-1"));
    }

    #[test]
    fn readers_never_panic_on_wrong_shapes() {
        for junk in [
            json!(null),
            json!(1),
            json!({"metadata": 3}),
            json!({"metadata": {"name": 1}}),
            json!({"metadata": {"namespace": "a", "name": "b"}, "status": {"interfaces": "x", "migrationState": 1}}),
            json!({"metadata": {"name": "b", "labels": {"k8s.ovn.org/route-advertisements": "ra"}}, "spec": {"nodeSelector": []}}),
        ] {
            let _ = Vmi::from_json(&junk);
            let _ = Claim::from_json(&junk);
            let _ = Network::from_json(&junk);
            let _ = Advertisement::from_json(&junk);
            let _ = GeneratedConfig::from_json(&junk);
            let _ = Namespace::from_json(&junk);
        }
        assert_eq!(parse_address("10.200.0.15/16"), "10.200.0.15".parse().ok());
        assert_eq!(parse_address("nope"), None);
    }
}
