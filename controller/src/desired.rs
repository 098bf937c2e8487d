//! The desired state, as a pure function of the watched objects: one FRRConfiguration per node
//! advertising the host route of every selected VM running there (community 64512:200), through
//! the router and VRF that OVN-K uses to advertise the VM's network on that node, plus the
//! optional 64512:100 tag on each network's subnet route; and what could not be advertised, why.
//!
//! Where the router comes from: OVN-K turns a RouteAdvertisements into one `ovnk-generated-*`
//! FRRConfiguration per (template, node), labelled `k8s.ovn.org/route-advertisements: <ra>` and
//! pinned with `kubernetes.io/hostname`. Its routers already went through OVN-K's own choices
//! (template selection, node selection, `targetVRF`), so copying their ASN, VRF and neighbour
//! session settings makes our configuration merge with them in frr-k8s without conflicts (frr-k8s
//! refuses a node's merged configuration when the same router or neighbour gets different ASNs).
//!
//! Make-before-break across migrations is not decided here but in [`crate::plan`]: this module
//! only says where each VM is now.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::{Map, Value, json};

use crate::aggregate::{aggregated_prefixes, host_prefixes};
use crate::inputs::{HOSTNAME_LABEL, Inputs, Migration, Network, Vmi};
use vmbgp_model::selector::{LabelSelector, Labels};

/// Label on every object this controller writes.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "vmbgp-controller";
/// Which controller installation wrote the object (several may share a cluster).
pub const INSTANCE_LABEL: &str = "vmbgp.io/controller-instance";
/// The node a configuration is for (annotation: node names may exceed label-value limits).
pub const NODE_ANNOTATION: &str = "vmbgp.io/node";
/// Human-readable outcome for the node: advertised, or capped and why.
pub const STATUS_ANNOTATION: &str = "vmbgp.io/host-routes";
/// Per-network opt-in label on a ClusterUserDefinedNetwork.
pub const NETWORK_OPT_IN_LABEL: &str = "vmbgp.io/host-routes";
/// Per-VM opt-in/opt-out label (on the VM template, hence on the VMI): `"true"` / `"false"`.
pub const VM_LABEL: &str = "vmbgp.io/host-route";
/// Community on VM host routes (external router policy: local-pref 250).
pub const HOST_ROUTE_COMMUNITY: &str = "64512:200";
/// Community on VM subnet routes (external router policy: local-pref 200).
pub const SUBNET_COMMUNITY: &str = "64512:100";
/// OVN-K's network name prefix for CUDNs (the IPAMClaim's `spec.network`).
pub const CUDN_NETWORK_PREFIX: &str = "cluster_udn_";

/// Which VMs of an opted-in network get host routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VmSelection {
    /// Every VM except those labelled `vmbgp.io/host-route: "false"`.
    #[default]
    AllButOptedOut,
    /// Only VMs labelled `vmbgp.io/host-route: "true"`.
    OnlyOptedIn,
}

/// An owner every written object references, so deleting it garbage-collects them. Must be
/// cluster-scoped or live in the frr-k8s namespace (Kubernetes forbids cross-namespace owners).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub uid: String,
}

/// How the controller is configured (flags).
#[derive(Debug, Clone)]
pub struct Settings {
    pub frr_namespace: String,
    pub instance: String,
    /// Networks selected besides those labelled `vmbgp.io/host-routes: "true"`.
    pub network_selector: Option<LabelSelector>,
    pub vm_selection: VmSelection,
    pub aggregate: bool,
    /// Past this many host prefixes a node advertises none (the subnet route still carries it).
    pub max_routes_per_node: Option<usize>,
    /// Also tag each selected network's subnet route with 64512:100 from every node.
    pub subnet_community: bool,
    pub owner: Option<Owner>,
}

impl Settings {
    pub fn new(frr_namespace: &str) -> Settings {
        Settings {
            frr_namespace: frr_namespace.to_string(),
            instance: "default".to_string(),
            network_selector: None,
            vm_selection: VmSelection::default(),
            aggregate: false,
            max_routes_per_node: None,
            subnet_community: false,
            owner: None,
        }
    }

    /// Labels selecting exactly this installation's objects.
    pub fn owned_labels(&self) -> Labels {
        [
            (MANAGED_BY_LABEL.to_string(), MANAGED_BY_VALUE.to_string()),
            (INSTANCE_LABEL.to_string(), self.instance.clone()),
        ]
        .into_iter()
        .collect()
    }

    /// The same as a label-selector string.
    pub fn owned_selector(&self) -> String {
        format!(
            "{MANAGED_BY_LABEL}={MANAGED_BY_VALUE},{INSTANCE_LABEL}={}",
            self.instance
        )
    }
}

/// A VM by namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VmRef {
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for VmRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Why a selected VM's host route is not advertised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotAdvertisedReason {
    NoAddress,
    AddressOutsideNetwork {
        addresses: Vec<IpAddr>,
    },
    NetworkNotAdvertised {
        network: String,
    },
    NoRouterOnNode {
        network: String,
        node: String,
    },
    NodeCapped {
        node: String,
        routes: usize,
        cap: usize,
    },
}

impl std::fmt::Display for NotAdvertisedReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoAddress => write!(f, "the VM has no address yet"),
            Self::AddressOutsideNetwork { addresses } => {
                write!(
                    f,
                    "addresses {addresses:?} are outside the network's subnets"
                )
            }
            Self::NetworkNotAdvertised { network } => {
                write!(f, "no RouteAdvertisements advertises network {network}")
            }
            Self::NoRouterOnNode { network, node } => write!(
                f,
                "OVN-K generated no FRRConfiguration for network {network} on node {node}"
            ),
            Self::NodeCapped { node, routes, cap } => write!(
                f,
                "node {node} would carry {routes} host routes, over the cap of {cap}; the subnet route carries its traffic"
            ),
        }
    }
}

impl NotAdvertisedReason {
    /// CamelCase reason for Kubernetes Events.
    pub fn event_reason(&self) -> &'static str {
        match self {
            Self::NoAddress => "HostRouteNoAddress",
            Self::AddressOutsideNetwork { .. } => "HostRouteAddressOutsideNetwork",
            Self::NetworkNotAdvertised { .. } => "HostRouteNetworkNotAdvertised",
            Self::NoRouterOnNode { .. } => "HostRouteNoRouter",
            Self::NodeCapped { .. } => "HostRouteNodeCapped",
        }
    }
}

/// A node past the cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CappedNode {
    pub node: String,
    pub routes: usize,
    pub cap: usize,
}

/// A router as frr-k8s identifies it in a node's merged configuration.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RouterKey {
    pub asn: u64,
    /// Empty for the default VRF.
    pub vrf: String,
}

/// What one router of one node advertises for us.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RouterAdvertisement {
    /// `id` copied from OVN-K's router, if set.
    pub id: Option<String>,
    /// Neighbour session settings copied from OVN-K's router (no `toAdvertise`/`toReceive`),
    /// keyed by address or interface.
    pub neighbors: BTreeMap<String, Value>,
    pub host_prefixes: BTreeSet<IpNet>,
    pub subnet_prefixes: BTreeSet<IpNet>,
}

/// Everything one node's FRRConfiguration advertises.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NodeAdvertisement {
    pub routers: BTreeMap<RouterKey, RouterAdvertisement>,
    /// Which VMs' addresses this node advertises (for reporting; not rendered).
    pub vms: BTreeSet<VmRef>,
    pub capped: Option<CappedNode>,
}

impl NodeAdvertisement {
    pub fn host_route_count(&self) -> usize {
        self.routers.values().map(|r| r.host_prefixes.len()).sum()
    }

    pub fn host_prefixes(&self) -> BTreeSet<IpNet> {
        self.routers
            .values()
            .flat_map(|r| r.host_prefixes.iter().copied())
            .collect()
    }

    /// Everything in `self` and in `other` (the make-before-break intermediate state).
    pub fn union(&self, other: &NodeAdvertisement) -> NodeAdvertisement {
        let mut merged = self.clone();
        for (key, router) in &other.routers {
            let into = merged.routers.entry(key.clone()).or_default();
            if into.id.is_none() {
                into.id.clone_from(&router.id);
            }
            for (k, v) in &router.neighbors {
                into.neighbors.entry(k.clone()).or_insert_with(|| v.clone());
            }
            into.host_prefixes
                .extend(router.host_prefixes.iter().copied());
            into.subnet_prefixes
                .extend(router.subnet_prefixes.iter().copied());
        }
        merged.vms.extend(other.vms.iter().cloned());
        merged.capped = other.capped.clone().or(merged.capped);
        merged
    }

    /// True when `self` advertises everything `other` does (same routers and neighbours too).
    pub fn covers(&self, other: &NodeAdvertisement) -> bool {
        other.routers.iter().all(|(key, theirs)| {
            self.routers.get(key).is_some_and(|mine| {
                theirs
                    .neighbors
                    .keys()
                    .all(|n| mine.neighbors.contains_key(n))
                    && theirs.host_prefixes.is_subset(&mine.host_prefixes)
                    && theirs.subnet_prefixes.is_subset(&mine.subnet_prefixes)
            })
        })
    }

    /// `spec` of the FRRConfiguration.
    pub fn render_spec(&self, node: &str) -> Value {
        let routers: Vec<Value> = self
            .routers
            .iter()
            .map(|(key, router)| render_router(key, router))
            .collect();
        json!({
            "nodeSelector": {"matchLabels": {HOSTNAME_LABEL: node}},
            "bgp": {"routers": routers},
        })
    }

    /// Reads back a spec this controller rendered (the state a previous run left behind).
    pub fn parse_spec(spec: &Value) -> NodeAdvertisement {
        let mut node = NodeAdvertisement::default();
        for router in spec
            .pointer("/bgp/routers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(asn) = router.get("asn").and_then(Value::as_u64) else {
                continue;
            };
            let key = RouterKey {
                asn,
                vrf: router
                    .get("vrf")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            };
            let entry = node.routers.entry(key).or_default();
            entry.id = router.get("id").and_then(Value::as_str).map(str::to_string);
            for neighbor in router
                .get("neighbors")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let Some(id) = neighbor_id(neighbor) else {
                    continue;
                };
                for tagged in neighbor
                    .pointer("/toAdvertise/withCommunity")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let into = match tagged.get("community").and_then(Value::as_str) {
                        Some(HOST_ROUTE_COMMUNITY) => &mut entry.host_prefixes,
                        Some(SUBNET_COMMUNITY) => &mut entry.subnet_prefixes,
                        _ => continue,
                    };
                    into.extend(
                        tagged
                            .get("prefixes")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                            .filter_map(|p| p.as_str().and_then(|p| p.parse::<IpNet>().ok())),
                    );
                }
                entry.neighbors.insert(id, session_settings(neighbor));
            }
        }
        node
    }
}

fn neighbor_id(neighbor: &Value) -> Option<String> {
    neighbor
        .get("address")
        .or_else(|| neighbor.get("interface"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// A neighbour's session settings: everything but what it advertises and receives, and its
/// `bfdProfile`. frr-k8s refuses a merged node configuration whose neighbour settings differ
/// (ASN, port, timers, password, source address, multihop; unset counts as the default), so
/// they are copied verbatim; but a `bfdProfile` must be defined in the same FRRConfiguration
/// that references it, while an empty one is compatible with any (frr-k8s `merge.go`).
fn session_settings(neighbor: &Value) -> Value {
    let mut settings = neighbor.as_object().cloned().unwrap_or_default();
    settings.remove("toAdvertise");
    settings.remove("toReceive");
    settings.remove("bfdProfile");
    Value::Object(settings)
}

fn render_router(key: &RouterKey, router: &RouterAdvertisement) -> Value {
    let all: BTreeSet<IpNet> = router
        .host_prefixes
        .union(&router.subnet_prefixes)
        .copied()
        .collect();
    let strings = |set: &BTreeSet<IpNet>, v6: Option<bool>| -> Vec<String> {
        set.iter()
            .filter(|p| v6.is_none_or(|v6| matches!(p, IpNet::V6(_)) == v6))
            .map(ToString::to_string)
            .collect()
    };
    let neighbors: Vec<Value> = router
        .neighbors
        .values()
        .map(|session| {
            let mut neighbor = session.as_object().cloned().unwrap_or_default();
            // Like OVN-K: filter per address family, except unnumbered (interface) neighbours.
            let family = neighbor
                .get("address")
                .and_then(Value::as_str)
                .and_then(|a| a.parse::<IpAddr>().ok())
                .map(|a| a.is_ipv6());
            let mut to_advertise = Map::new();
            to_advertise.insert(
                "allowed".into(),
                json!({"mode": "filtered", "prefixes": strings(&all, family)}),
            );
            let mut tagged = Vec::new();
            for (community, set) in [
                (HOST_ROUTE_COMMUNITY, &router.host_prefixes),
                (SUBNET_COMMUNITY, &router.subnet_prefixes),
            ] {
                let prefixes = strings(set, family);
                if !prefixes.is_empty() {
                    tagged.push(json!({"community": community, "prefixes": prefixes}));
                }
            }
            if !tagged.is_empty() {
                to_advertise.insert("withCommunity".into(), Value::Array(tagged));
            }
            neighbor.insert("toAdvertise".into(), Value::Object(to_advertise));
            Value::Object(neighbor)
        })
        .collect();
    let mut out = Map::new();
    out.insert("asn".into(), json!(key.asn));
    if let Some(id) = &router.id {
        out.insert("id".into(), json!(id));
    }
    if !key.vrf.is_empty() {
        out.insert("vrf".into(), json!(key.vrf));
    }
    out.insert("prefixes".into(), json!(strings(&all, None)));
    out.insert("neighbors".into(), Value::Array(neighbors));
    Value::Object(out)
}

/// A migration whose target now advertises the VM (counted once per migration uid).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowedMigration {
    pub vm: VmRef,
    pub migration: Migration,
}

/// The computed desired state.
#[derive(Debug, Clone, Default)]
pub struct Desired {
    /// By node name. A node appears when it has something to advertise or is capped.
    pub nodes: BTreeMap<String, NodeAdvertisement>,
    pub not_advertised: BTreeMap<VmRef, NotAdvertisedReason>,
    pub capped: Vec<CappedNode>,
    pub migrations: Vec<FollowedMigration>,
    /// Configuration problems worth a log line (e.g. an RA that would use our objects as templates).
    pub warnings: Vec<String>,
}

/// Name of the FRRConfiguration for `node`: `vmbgp-host-routes-<node>`, shortened with a hash
/// when that would exceed the 253-character object-name limit.
pub fn config_name(node: &str) -> String {
    const PREFIX: &str = "vmbgp-host-routes-";
    let name = format!("{PREFIX}{node}");
    if name.len() <= 253 {
        return name;
    }
    // FNV-1a: stable across runs and releases, unlike std's hasher.
    let hash = node.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let keep: String = node.chars().take(253 - PREFIX.len() - 17).collect();
    format!("{PREFIX}{}-{hash:016x}", keep.trim_end_matches(['.', '-']))
}

/// The whole FRRConfiguration object for a node, ready for server-side apply.
pub fn render_object(settings: &Settings, node: &str, advertisement: &NodeAdvertisement) -> Value {
    let mut labels: Map<String, Value> = settings
        .owned_labels()
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    if node.len() <= 63 {
        labels.insert(NODE_ANNOTATION.into(), json!(node));
    }
    let status = match &advertisement.capped {
        Some(c) => format!(
            "Capped: {} host routes over the cap of {}; relying on the subnet route",
            c.routes, c.cap
        ),
        None => format!(
            "Advertised: {} host prefixes for {} VMs",
            advertisement.host_route_count(),
            advertisement.vms.len()
        ),
    };
    let mut metadata = json!({
        "name": config_name(node),
        "namespace": settings.frr_namespace,
        "labels": labels,
        "annotations": {NODE_ANNOTATION: node, STATUS_ANNOTATION: status},
    });
    if let Some(owner) = &settings.owner {
        metadata["ownerReferences"] = json!([{
            "apiVersion": owner.api_version, "kind": owner.kind,
            "name": owner.name, "uid": owner.uid,
        }]);
    }
    json!({
        "apiVersion": "frrk8s.metallb.io/v1beta1",
        "kind": "FRRConfiguration",
        "metadata": metadata,
        "spec": advertisement.render_spec(node),
    })
}

pub(crate) fn vm_selected(settings: &Settings, vmi: &Vmi) -> bool {
    match (
        settings.vm_selection,
        vmi.labels.get(VM_LABEL).map(String::as_str),
    ) {
        (_, Some("false")) => false,
        (VmSelection::AllButOptedOut, _) => true,
        (VmSelection::OnlyOptedIn, label) => label == Some("true"),
    }
}

pub(crate) fn network_selected(settings: &Settings, network: &Network) -> bool {
    network.layer2_primary
        && (network.labels.get(NETWORK_OPT_IN_LABEL).map(String::as_str) == Some("true")
            || settings
                .network_selector
                .as_ref()
                .is_some_and(|s| s.matches(&network.labels)))
}

/// OVN-K's routers for `network` on `node`, keyed by router.
fn routers_for(
    inputs: &Inputs,
    network: &Network,
    node: &str,
) -> BTreeMap<RouterKey, RouterAdvertisement> {
    let mut routers: BTreeMap<RouterKey, RouterAdvertisement> = BTreeMap::new();
    for ra in inputs
        .advertisements
        .iter()
        .filter(|a| a.advertises(network))
    {
        for generated in inputs
            .generated
            .iter()
            .filter(|g| g.advertisement == ra.name && g.node == node)
        {
            for router in &generated.routers {
                let Some(asn) = router.get("asn").and_then(Value::as_u64) else {
                    continue;
                };
                let vrf = router
                    .get("vrf")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                // With targetVRF auto each network goes out through its own VRF's router.
                if ra.target_vrf == "auto" && Some(vrf.as_str()) != network.vrf() {
                    continue;
                }
                let entry = routers.entry(RouterKey { asn, vrf }).or_default();
                if entry.id.is_none() {
                    entry.id = router.get("id").and_then(Value::as_str).map(str::to_string);
                }
                for neighbor in router
                    .get("neighbors")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(id) = neighbor_id(neighbor) {
                        entry
                            .neighbors
                            .entry(id)
                            .or_insert_with(|| session_settings(neighbor));
                    }
                }
            }
        }
    }
    routers.retain(|_, r| !r.neighbors.is_empty());
    routers
}

/// A VM's addresses: its IPAMClaim's (`<vm>.<network>`), else those its interface reports.
/// The claim is the allocation; the interface report may lag (or be briefly empty) around a
/// migration's switch-over.
pub(crate) fn addresses_of(inputs: &Inputs, vmi: &Vmi) -> Vec<IpAddr> {
    let claim_name = format!("{}.{}", vmi.name, vmi.pod_network);
    inputs
        .claims
        .get(&(vmi.namespace.clone(), claim_name))
        .map(|c| c.addresses.clone())
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| vmi.interface_addresses.clone())
}

/// Computes the desired state.
pub fn desired_state(settings: &Settings, inputs: &Inputs) -> Desired {
    let mut desired = Desired::default();
    let networks: Vec<&Network> = inputs
        .networks
        .iter()
        .filter(|n| network_selected(settings, n))
        .collect();
    let ours = settings.owned_labels();
    for ra in &inputs.advertisements {
        if ra.frr_configuration_selector.matches(&ours) {
            desired.warnings.push(format!(
                "RouteAdvertisements {} selects this controller's FRRConfigurations as templates; narrow its frrConfigurationSelector",
                ra.name
            ));
        }
    }
    // Addresses per (node, router); VMs per node.
    let mut addresses: BTreeMap<(String, RouterKey), BTreeSet<IpAddr>> = BTreeMap::new();
    let mut vms_on: BTreeMap<String, BTreeSet<VmRef>> = BTreeMap::new();
    let mut routers_on: BTreeMap<String, BTreeMap<RouterKey, RouterAdvertisement>> =
        BTreeMap::new();
    for vmi in &inputs.vmis {
        if vmi.deleting || vmi.phase.as_deref() != Some("Running") || !vm_selected(settings, vmi) {
            continue;
        }
        let Some(node) = vmi.hosting_node() else {
            continue;
        };
        let Some(labels) = inputs.namespaces.get(&vmi.namespace).map(|n| &n.labels) else {
            continue;
        };
        // A namespace has one primary network; a VM outside every selected network is not ours.
        let Some(network) = networks
            .iter()
            .find(|n| n.namespace_selector.matches(labels))
        else {
            continue;
        };
        let vm = VmRef {
            namespace: vmi.namespace.clone(),
            name: vmi.name.clone(),
        };
        let candidates = addresses_of(inputs, vmi);
        if candidates.is_empty() {
            desired
                .not_advertised
                .insert(vm, NotAdvertisedReason::NoAddress);
            continue;
        }
        // Never advertise an address outside the network: that would hijack someone's traffic.
        let inside: Vec<IpAddr> = candidates
            .iter()
            .copied()
            .filter(|a| network.subnets.iter().any(|s| s.contains(a)))
            .collect();
        if inside.is_empty() {
            desired.not_advertised.insert(
                vm,
                NotAdvertisedReason::AddressOutsideNetwork {
                    addresses: candidates,
                },
            );
            continue;
        }
        if !inputs.advertisements.iter().any(|a| a.advertises(network)) {
            desired.not_advertised.insert(
                vm,
                NotAdvertisedReason::NetworkNotAdvertised {
                    network: network.name.clone(),
                },
            );
            continue;
        }
        let routers = routers_for(inputs, network, node);
        if routers.is_empty() {
            desired.not_advertised.insert(
                vm,
                NotAdvertisedReason::NoRouterOnNode {
                    network: network.name.clone(),
                    node: node.to_string(),
                },
            );
            continue;
        }
        let node_routers = routers_on.entry(node.to_string()).or_default();
        for (key, router) in routers {
            addresses
                .entry((node.to_string(), key.clone()))
                .or_default()
                .extend(inside.iter().copied());
            node_routers.entry(key).or_insert(router);
        }
        vms_on
            .entry(node.to_string())
            .or_default()
            .insert(vm.clone());
        if let Some(m) = &vmi.migration
            && m.completed
            && !m.failed
            && m.target_node == node
        {
            desired.migrations.push(FollowedMigration {
                vm,
                migration: m.clone(),
            });
        }
    }
    for (node, routers) in routers_on {
        let mut advertisement = NodeAdvertisement {
            vms: vms_on.remove(&node).unwrap_or_default(),
            ..NodeAdvertisement::default()
        };
        for (key, mut router) in routers {
            let set = addresses
                .remove(&(node.clone(), key.clone()))
                .unwrap_or_default();
            let prefixes = if settings.aggregate {
                aggregated_prefixes(&set)
            } else {
                host_prefixes(&set)
            };
            router.host_prefixes = prefixes.into_iter().collect();
            advertisement.routers.insert(key, router);
        }
        let routes = advertisement.host_route_count();
        if let Some(cap) = settings.max_routes_per_node
            && routes > cap
        {
            let capped = CappedNode {
                node: node.clone(),
                routes,
                cap,
            };
            for vm in &advertisement.vms {
                desired.not_advertised.insert(
                    vm.clone(),
                    NotAdvertisedReason::NodeCapped {
                        node: node.clone(),
                        routes,
                        cap,
                    },
                );
            }
            desired
                .migrations
                .retain(|m| m.migration.target_node != node);
            for router in advertisement.routers.values_mut() {
                router.host_prefixes.clear();
            }
            advertisement.vms.clear();
            advertisement.capped = Some(capped.clone());
            desired.capped.push(capped);
        }
        desired.nodes.insert(node, advertisement);
    }
    if settings.subnet_community {
        add_subnet_routes(inputs, &networks, &mut desired);
    }
    desired
}

/// 64512:100 on every selected, advertised network's subnets, from every node OVN-K advertises it.
fn add_subnet_routes(inputs: &Inputs, networks: &[&Network], desired: &mut Desired) {
    let nodes: BTreeSet<&str> = inputs.generated.iter().map(|g| g.node.as_str()).collect();
    for network in networks {
        for node in &nodes {
            for (key, router) in routers_for(inputs, network, node) {
                let entry = desired
                    .nodes
                    .entry(node.to_string())
                    .or_default()
                    .routers
                    .entry(key)
                    .or_insert(router);
                entry
                    .subnet_prefixes
                    .extend(network.subnets.iter().copied());
            }
        }
    }
}

#[cfg(test)]
mod tests;
