//! Simulated OVN-Kubernetes cluster manager: ClusterUserDefinedNetwork → one NAD per selected namespace
//! (only namespaces created with the primary-UDN label) and `NetworkCreated`; RouteAdvertisements →
//! `Accepted` status and one `ovnk-generated-*` FRRConfiguration per (template, node) advertising the
//! networks' subnets.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::{Value, json};
use tokio_util::task::TaskTracker;

use super::{
    Ctx, WorkQueue, condition_status, is_deleting, ns_name, owned_by, owner_ref, set_condition,
    str_at, watch_kind,
};
use crate::api_ground_truth::{GroundTruthKind, ObjectRef};
use crate::selector::LabelSelector;
use crate::store::{DeleteOptions, ListOptions, ObjMeta, PRIMARY_UDN_LABEL, WriteOptions};

/// Finalizer OVN-K puts on CUDNs.
pub const CUDN_FINALIZER: &str = "k8s.ovn.org/user-defined-network-protection";
/// Label (and annotation) OVN-K puts on generated FRRConfigurations.
pub const RA_LABEL: &str = "k8s.ovn.org/route-advertisements";

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Cudn(String),
    AllCudns,
    /// One RouteAdvertisements by name, existing or not: a deleted one is reconciled to "nothing".
    Ra(String),
    AllRas,
}

pub fn spawn(ctx: Ctx, tasks: &TaskTracker) {
    let queue: Arc<WorkQueue<Key>> = WorkQueue::new();
    watch_kind(&ctx, tasks, ctx.k.cudn, queue.clone(), |m, _| {
        vec![Key::Cudn(m.name.clone()), Key::AllRas]
    });
    watch_kind(&ctx, tasks, ctx.k.namespace, queue.clone(), |_, _| {
        vec![Key::AllCudns]
    });
    watch_kind(&ctx, tasks, ctx.k.nad, queue.clone(), |_, _| {
        vec![Key::AllCudns]
    });
    // Like OVN-K's workqueue: the RA's own key, on every event including its deletion.
    watch_kind(&ctx, tasks, ctx.k.ra, queue.clone(), |m, _| {
        vec![Key::Ra(m.name.clone())]
    });
    watch_kind(&ctx, tasks, ctx.k.node, queue.clone(), |_, _| {
        vec![Key::AllRas]
    });
    watch_kind(&ctx, tasks, ctx.k.frr, queue.clone(), |m, _| {
        // A generated configuration reconciles the RA it names (OVN-K's FRRConfiguration controller
        // does the same): one written for an RA deleted meanwhile is then removed. A template
        // change may concern every RA.
        match m.labels.get(RA_LABEL) {
            Some(ra) => vec![Key::Ra(ra.to_string())],
            None => vec![Key::AllRas],
        }
    });
    let stop = ctx.shutdown.clone();
    tasks.spawn(async move {
        while let Some(batch) = queue.take(&stop).await {
            let mut ras = BTreeSet::new();
            let mut all_ras = false;
            for key in batch {
                match key {
                    Key::Cudn(n) => reconcile_cudn(&ctx, &n),
                    Key::AllCudns => {
                        for c in ctx.store.metas(ctx.k.cudn, None) {
                            reconcile_cudn(&ctx, &c.name);
                        }
                    }
                    Key::Ra(name) => {
                        ras.insert(name);
                    }
                    Key::AllRas => all_ras = true,
                }
            }
            if all_ras {
                ras.extend(known_ras(&ctx));
            }
            for ra in &ras {
                reconcile_ra(&ctx, ra);
            }
        }
    });
}

fn cudn_topology(cudn: &Value) -> String {
    str_at(cudn, "/spec/network/topology")
        .unwrap_or("Layer2")
        .to_string()
}

fn cudn_subnets(cudn: &Value) -> Vec<String> {
    let topo = cudn_topology(cudn).to_ascii_lowercase();
    cudn.pointer(&format!("/spec/network/{topo}/subnets"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| {
                    v.as_str()
                        .or_else(|| v.get("cidr").and_then(Value::as_str))
                        .map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn nad_config(cudn: &Value, namespace: &str) -> String {
    let name = ns_name(cudn).1;
    let topo = cudn_topology(cudn).to_ascii_lowercase();
    let cfg = cudn
        .pointer(&format!("/spec/network/{topo}"))
        .cloned()
        .unwrap_or(Value::Null);
    let role = cfg
        .get("role")
        .and_then(Value::as_str)
        .unwrap_or("Primary")
        .to_ascii_lowercase();
    let persistent = cfg.pointer("/ipam/lifecycle").and_then(Value::as_str) == Some("Persistent")
        || cfg.get("ipamLifecycle").and_then(Value::as_str) == Some("Persistent");
    let mut c = json!({
        "cniVersion": "1.0.0",
        "type": "ovn-k8s-cni-overlay",
        "name": format!("cluster_udn_{name}"),
        "netAttachDefName": format!("{namespace}/{name}"),
        "topology": topo,
        "role": role,
        "subnets": cudn_subnets(cudn).join(","),
        "mtu": cfg.get("mtu").cloned().unwrap_or(json!(1400)),
        "joinSubnet": "100.65.0.0/16,fd99::/64",
    });
    if persistent {
        c["allowPersistentIPs"] = json!(true);
    }
    c.to_string()
}

fn reconcile_cudn(ctx: &Ctx, name: &str) {
    let Some(cudn) = ctx.store.get_opt(ctx.k.cudn, None, name) else {
        return;
    };
    let uid = str_at(&cudn, "/metadata/uid")
        .unwrap_or_default()
        .to_string();
    let owned_nads: Vec<Arc<ObjMeta>> = ctx
        .store
        .metas(ctx.k.nad, None)
        .into_iter()
        .filter(|n| n.owned_by(&uid))
        .collect();
    if is_deleting(&cudn) {
        for nad in &owned_nads {
            let _ = ctx.store.delete(
                ctx.k.nad,
                Some(&nad.namespace),
                &nad.name,
                &DeleteOptions::default(),
            );
        }
        let _ = ctx.store.modify(ctx.k.cudn, None, name, false, |o| {
            if let Some(f) = o
                .pointer_mut("/metadata/finalizers")
                .and_then(Value::as_array_mut)
            {
                f.retain(|x| x != CUDN_FINALIZER);
            }
        });
        return;
    }
    let has_finalizer = cudn
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| f.iter().any(|x| x == CUDN_FINALIZER));
    if !has_finalizer {
        let _ = ctx.store.modify(ctx.k.cudn, None, name, false, |o| {
            if !o["metadata"]["finalizers"].is_array() {
                o["metadata"]["finalizers"] = json!([]);
            }
            if let Some(f) = o["metadata"]["finalizers"].as_array_mut() {
                f.push(json!(CUDN_FINALIZER));
            }
        });
    }
    let selector = match LabelSelector::from_object(cudn.pointer("/spec/namespaceSelector")) {
        Ok(s) => s,
        Err(e) => {
            write_cudn_status(
                ctx,
                name,
                false,
                &format!("invalid namespaceSelector: {e}"),
                &[],
            );
            return;
        }
    };
    let primary = cudn
        .pointer(&format!(
            "/spec/network/{}/role",
            cudn_topology(&cudn).to_ascii_lowercase()
        ))
        .and_then(Value::as_str)
        == Some("Primary");
    let mut good = BTreeSet::new();
    let mut errors = Vec::new();
    for ns in ctx.store.metas(ctx.k.namespace, None) {
        let ns_label = ns.labels.get(PRIMARY_UDN_LABEL).is_some();
        if ns.deleting || !selector.matches_with(|k| ns.labels.get(k)) {
            continue;
        }
        let ns_name = ns.name.clone();
        if primary && !ns_label {
            errors.push(format!(
                "invalid primary network state for namespace {ns_name:?}: a valid primary user defined network or network attachment definition custom resource, and required namespace label {PRIMARY_UDN_LABEL:?} must both be present"
            ));
            continue;
        }
        good.insert(ns_name);
    }
    for ns in &good {
        let config = nad_config(&cudn, ns);
        match ctx.store.get_opt(ctx.k.nad, Some(ns), name) {
            Some(existing) if !owned_by(&existing, &uid) => {
                errors.push(format!("foreign NetworkAttachmentDefinition with the desired name {ns}/{name} already exists"));
            }
            Some(existing) => {
                if str_at(&existing, "/spec/config") != Some(config.as_str()) {
                    let _ = ctx.store.modify(ctx.k.nad, Some(ns), name, false, |o| {
                        o["spec"]["config"] = json!(config)
                    });
                }
            }
            None => {
                let nad = json!({
                    "apiVersion": "k8s.cni.cncf.io/v1",
                    "kind": "NetworkAttachmentDefinition",
                    "metadata": {"name": name, "namespace": ns, "labels": {"k8s.ovn.org/user-defined-network": ""}, "ownerReferences": [owner_ref(&cudn)]},
                    "spec": {"config": config},
                });
                match ctx
                    .store
                    .create(ctx.k.nad, Some(ns), nad, &WriteOptions::default())
                {
                    Ok(w) => ctx.gt.record_at(
                        w.at,
                        GroundTruthKind::NadCreated,
                        ObjectRef::new("NetworkAttachmentDefinition", ns, name),
                        Value::Null,
                    ),
                    Err(e) => errors.push(format!(
                        "failed to create NetworkAttachmentDefinition {ns}/{name}: {e}"
                    )),
                }
            }
        }
    }
    for nad in &owned_nads {
        if !good.contains(&nad.namespace) {
            let _ = ctx.store.delete(
                ctx.k.nad,
                Some(&nad.namespace),
                &nad.name,
                &DeleteOptions::default(),
            );
        }
    }
    let nss: Vec<String> = good.into_iter().collect();
    if errors.is_empty() {
        write_cudn_status(
            ctx,
            name,
            true,
            &format!(
                "NetworkAttachmentDefinition has been created in following namespaces: [{}]",
                nss.join(" ")
            ),
            &nss,
        );
    } else {
        write_cudn_status(ctx, name, false, &errors.join("; "), &nss);
    }
}

fn write_cudn_status(ctx: &Ctx, name: &str, ok: bool, message: &str, _namespaces: &[String]) {
    let mut became_true = false;
    let w = ctx.store.modify(ctx.k.cudn, None, name, true, |o| {
        let mut status = o.get("status").cloned().unwrap_or_else(|| json!({}));
        let reason = if ok {
            "NetworkAttachmentDefinitionCreated"
        } else {
            "NetworkAttachmentDefinitionSyncError"
        };
        let changed = set_condition(
            &mut status,
            "NetworkCreated",
            if ok { "True" } else { "False" },
            reason,
            message,
        );
        became_true = ok && changed;
        o["status"] = status;
    });
    if let Ok(w) = w
        && became_true
    {
        ctx.gt.record_at(
            w.at,
            GroundTruthKind::NetworkCreated,
            ObjectRef::new("ClusterUserDefinedNetwork", "", name),
            json!({"message": message}),
        );
    }
}

/// The name prefix of the FRRConfigurations OVN-K generates (never used as templates).
const GENERATED_PREFIX: &str = "ovnk-generated-";

/// Deterministic `ovnk-generated-xxxxx` name for (RA, template, node).
fn generated_name(ra: &str, template: &str, node: &str) -> String {
    const CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut h: u64 = 1469598103934665603;
    for b in format!("{ra}/{template}/{node}").bytes() {
        h = (h ^ b as u64).wrapping_mul(1099511628211);
    }
    let suffix: String = (0..5)
        .map(|i| CHARS[((h >> (i * 8)) % CHARS.len() as u64) as usize] as char)
        .collect();
    format!("ovnk-generated-{suffix}")
}

/// Every RA name the controller is responsible for: the existing RAs and the ones still named by a
/// generated configuration (whose RA may be gone), so a resync also clears what a lost delete left.
fn known_ras(ctx: &Ctx) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = ctx
        .store
        .metas(ctx.k.ra, None)
        .into_iter()
        .map(|m| m.name.clone())
        .collect();
    for config in ctx.store.metas(ctx.k.frr, None) {
        if let Some(ra) = config.labels.get(RA_LABEL) {
            names.insert(ra.to_string());
        }
    }
    names
}

/// Regenerates one RA's configurations from the current state, as OVN-K's `reconcile(name)` does: an
/// RA that is gone or being deleted wants none, so every configuration labelled with it is deleted.
fn reconcile_ra(ctx: &Ctx, name: &str) {
    let ra = ctx
        .store
        .get_opt(ctx.k.ra, None, name)
        .filter(|ra| !is_deleting(ra));
    let Some(ra) = ra else {
        sync_generated(ctx, name, None, BTreeMap::new());
        return;
    };
    match desired_configs(ctx, &ra) {
        Ok(desired) => {
            sync_generated(ctx, name, Some(&ra), desired);
            write_ra_status(ctx, name, None);
        }
        Err(msg) => {
            sync_generated(ctx, name, Some(&ra), BTreeMap::new());
            write_ra_status(ctx, name, Some(msg));
        }
    }
}

/// The FRRConfigurations an RA should produce: (namespace, name) → (template name, node, spec).
type Desired = BTreeMap<(String, String), (String, String, Value)>;

fn desired_configs(ctx: &Ctx, ra: &Value) -> Result<Desired, String> {
    let ra_name = ns_name(ra).1;
    let advertisements: Vec<String> = ra
        .pointer("/spec/advertisements")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let pod_network = advertisements.iter().any(|a| a == "PodNetwork");
    let node_selector_value = ra
        .pointer("/spec/nodeSelector")
        .cloned()
        .unwrap_or(json!({}));
    let node_selector = LabelSelector::from_object(Some(&node_selector_value))
        .map_err(|e| format!("invalid nodeSelector: {e}"))?;
    if pod_network && !node_selector.is_everything() {
        return Err("If 'PodNetwork' is selected for advertisement, a 'nodeSelector' can't be specified as it needs to be advertised on all nodes".to_string());
    }
    let target_vrf = str_at(ra, "/spec/targetVRF")
        .unwrap_or("default")
        .to_string();
    let mut networks: Vec<Arc<Value>> = Vec::new();
    for sel in ra
        .pointer("/spec/networkSelectors")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
    {
        match sel.get("networkSelectionType").and_then(Value::as_str) {
            Some("ClusterUserDefinedNetworks") => {
                let s = LabelSelector::from_object(
                    sel.pointer("/clusterUserDefinedNetworkSelector/networkSelector"),
                )
                .map_err(|e| format!("invalid networkSelector: {e}"))?;
                for cudn in ctx.store.all(ctx.k.cudn) {
                    if s.matches_object(&cudn) && !is_deleting(&cudn) {
                        networks.push(cudn);
                    }
                }
            }
            Some("DefaultNetwork") => {
                return Err("the lab does not simulate DefaultNetwork advertisement".to_string());
            }
            Some(other) => return Err(format!("unsupported network selection type {other:?}")),
            None => return Err("networkSelectionType missing".to_string()),
        }
    }
    // What the RA controller (not admission) refuses: EgressIP on Layer2, non-primary networks.
    let selected: Vec<Value> = networks.iter().map(|n| (**n).clone()).collect();
    let refused = vmbgp_schema::ra_controller_check(ra, &selected);
    if !refused.is_empty() {
        return Err(refused
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; "));
    }
    for n in &networks {
        let cname = ns_name(n).1;
        if condition_status(n, "NetworkCreated") != Some("True") {
            return Err(format!(
                "configuration pending: network {cname} is not created yet"
            ));
        }
    }
    let mut prefixes: Vec<String> = networks.iter().flat_map(|n| cudn_subnets(n)).collect();
    prefixes.sort();
    prefixes.dedup();
    let tmpl_selector = LabelSelector::from_object(Some(
        &ra.pointer("/spec/frrConfigurationSelector")
            .cloned()
            .unwrap_or(json!({})),
    ))
    .map_err(|e| format!("invalid frrConfigurationSelector: {e}"))?;
    // OVN-K's rule (`generateFRRConfigurations`): every FRRConfiguration the selector matches, in
    // all namespaces, is a template, except those whose name says OVN-K generated them. So an RA
    // selecting `{}` templates other controllers' configurations too (the host-route controller's).
    let templates: Vec<Arc<Value>> = ctx
        .store
        .list(ctx.k.frr, None, &ListOptions::default())
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|t| !ns_name(t).1.starts_with(GENERATED_PREFIX))
        .filter(|t| !is_deleting(t) && tmpl_selector.matches_object(t))
        .collect();
    if templates.is_empty() {
        return Err("no FRRConfigurations selected".to_string());
    }
    let nodes: Vec<Arc<Value>> = ctx
        .store
        .all(ctx.k.node)
        .into_iter()
        .filter(|n| node_selector.matches_object(n))
        .collect();
    let mut desired = Desired::new();
    for t in &templates {
        let (tns, tname) = ns_name(t);
        let t_nodes = LabelSelector::from_object(Some(
            &t.pointer("/spec/nodeSelector")
                .cloned()
                .unwrap_or(json!({})),
        ))
        .unwrap_or_default();
        for node in nodes.iter().filter(|n| t_nodes.matches_object(n)) {
            let node_name = ns_name(node).1;
            let mut routers = Vec::new();
            for r in t
                .pointer("/spec/bgp/routers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
            {
                let vrf = r.get("vrf").and_then(Value::as_str).unwrap_or("");
                let matches_vrf = match target_vrf.as_str() {
                    "" | "default" => vrf.is_empty() || vrf == "default",
                    "auto" => true,
                    other => vrf == other,
                };
                if !matches_vrf {
                    continue;
                }
                let mut router = json!({"asn": r.get("asn").cloned().unwrap_or(Value::Null), "prefixes": prefixes});
                if let Some(id) = r.get("id") {
                    router["id"] = id.clone();
                }
                if !vrf.is_empty() {
                    router["vrf"] = json!(vrf);
                }
                let neighbors: Vec<Value> = r
                    .get("neighbors")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|mut n| {
                        let v6 = n
                            .get("address")
                            .and_then(Value::as_str)
                            .is_some_and(|a| a.contains(':'));
                        let fam: Vec<&String> =
                            prefixes.iter().filter(|p| p.contains(':') == v6).collect();
                        if let Some(o) = n.as_object_mut() {
                            o.remove("toReceive");
                            o.insert(
                                "toAdvertise".to_string(),
                                json!({"allowed": {"mode": "filtered", "prefixes": fam}}),
                            );
                        }
                        n
                    })
                    .collect();
                router["neighbors"] = json!(neighbors);
                routers.push(router);
            }
            if routers.is_empty() {
                continue;
            }
            let spec = json!({
                "nodeSelector": {"matchLabels": {"kubernetes.io/hostname": node_name}},
                "bgp": {"routers": routers},
            });
            desired.insert(
                (tns.clone(), generated_name(&ra_name, &tname, &node_name)),
                (tname.clone(), node_name, spec),
            );
        }
    }
    Ok(desired)
}

/// Makes the configurations labelled with RA `ra_name` exactly `desired`. `ra` is the live RA (the
/// owner of created configurations); `desired` must be empty when it is `None`.
fn sync_generated(ctx: &Ctx, ra_name: &str, ra: Option<&Value>, desired: Desired) {
    // RA names are DNS names, so this parses; never fall back to a select-everything selector.
    let Ok(sel) = LabelSelector::parse(&format!("{RA_LABEL}={ra_name}")) else {
        return;
    };
    let existing = ctx
        .store
        .list(
            ctx.k.frr,
            None,
            &ListOptions {
                label_selector: sel,
                ..Default::default()
            },
        )
        .map(|l| l.items)
        .unwrap_or_default();
    for e in &existing {
        let key = ns_name(e);
        if desired.contains_key(&key) {
            continue;
        }
        {
            if let Ok(d) =
                ctx.store
                    .delete(ctx.k.frr, Some(&key.0), &key.1, &DeleteOptions::default())
            {
                ctx.gt.record_at(
                    d.at,
                    GroundTruthKind::FrrConfigurationDeleted,
                    ObjectRef::new("FRRConfiguration", &key.0, &key.1),
                    json!({"routeAdvertisements": ra_name}),
                );
            }
        }
    }
    let Some(ra) = ra else {
        return;
    };
    for ((ns, name), (template, node, spec)) in desired {
        let annotation = format!("{ra_name}/{template}/{node}");
        let detail = json!({"routeAdvertisements": ra_name, "template": template, "node": node, "prefixes": spec.pointer("/bgp/routers/0/prefixes")});
        match ctx.store.get_opt(ctx.k.frr, Some(&ns), &name) {
            Some(cur) if cur.get("spec") == Some(&spec) => {}
            Some(_) => {
                if let Ok(w) = ctx.store.modify(ctx.k.frr, Some(&ns), &name, false, |o| {
                    o["spec"] = spec.clone()
                }) {
                    ctx.gt.record_at(
                        w.at,
                        GroundTruthKind::FrrConfigurationUpdated,
                        ObjectRef::new("FRRConfiguration", &ns, &name),
                        detail,
                    );
                }
            }
            None => {
                let obj = json!({
                    "apiVersion": "frrk8s.metallb.io/v1beta1",
                    "kind": "FRRConfiguration",
                    "metadata": {
                        "name": name, "namespace": ns,
                        "labels": {RA_LABEL: ra_name},
                        "annotations": {RA_LABEL: annotation},
                        "ownerReferences": [owner_ref(ra)],
                    },
                    "spec": spec,
                });
                match ctx
                    .store
                    .create(ctx.k.frr, Some(&ns), obj, &WriteOptions::default())
                {
                    Ok(w) => ctx.gt.record_at(
                        w.at,
                        GroundTruthKind::FrrConfigurationGenerated,
                        ObjectRef::new("FRRConfiguration", &ns, &name),
                        detail,
                    ),
                    Err(e) => {
                        tracing::warn!(namespace = ns, name, error = %e, "creating generated FRRConfiguration failed")
                    }
                }
            }
        }
    }
}

fn write_ra_status(ctx: &Ctx, name: &str, error: Option<String>) {
    let mut changed = false;
    let w = ctx.store.modify(ctx.k.ra, None, name, true, |o| {
        let mut status = o.get("status").cloned().unwrap_or_else(|| json!({}));
        match &error {
            None => {
                status["status"] = json!("Accepted");
                changed = set_condition(&mut status, "Accepted", "True", "Accepted", "ovn-kubernetes cluster-manager validated the resource and requested the necessary configuration changes");
            }
            Some(msg) => {
                status["status"] = json!(format!("Not Accepted: {msg}"));
                changed = set_condition(&mut status, "Accepted", "False", "NotAccepted", msg);
            }
        }
        o["status"] = status;
    });
    if let Ok(w) = w
        && changed
    {
        let kind = if error.is_none() {
            GroundTruthKind::RouteAdvertisementsAccepted
        } else {
            GroundTruthKind::RouteAdvertisementsRejected
        };
        ctx.gt.record_at(
            w.at,
            kind,
            ObjectRef::new("RouteAdvertisements", "", name),
            json!({"message": error}),
        );
    }
}

#[cfg(test)]
mod tests {
    //! The OVN-K controller alone on the in-process store, in paused time.

    use super::*;
    use crate::LabConfig;
    use crate::controllers::bench::{self, Bench};

    const SUBNET: &str = "198.19.3.0/24";
    const TEMPLATE_LABEL: &str = "vmbgp.io/frr-template";

    async fn ovnk() -> Bench {
        let b = bench::start(LabConfig::default()).await;
        spawn(b.ctx.clone(), &b.tasks);
        b
    }

    fn cudn(name: &str) -> Value {
        json!({"apiVersion": "k8s.ovn.org/v1", "kind": "ClusterUserDefinedNetwork",
            "metadata": {"name": name, "labels": {"vmbgp.io/advertise": "true"}},
            "spec": {"namespaceSelector": {"matchLabels": {"vmbgp.io/cudn": name}},
                "network": {"topology": "Layer2", "layer2": {"role": "Primary", "subnets": [SUBNET],
                    "ipam": {"lifecycle": "Persistent"}}}}})
    }

    async fn network_created(b: &Bench, name: &str, status: &str) -> Arc<Value> {
        b.until(
            "k8s.ovn.org/v1",
            "ClusterUserDefinedNetwork",
            None,
            name,
            |o| condition_status(o, "NetworkCreated") == Some(status),
        )
        .await
    }

    fn template(b: &Bench, name: &str) {
        let ns = b.ctx.config.frr_namespace.clone();
        b.create(
            b.ctx.k.frr,
            Some(&ns),
            json!({"apiVersion": "frrk8s.metallb.io/v1beta1", "kind": "FRRConfiguration",
                "metadata": {"name": name, "namespace": ns, "labels": {TEMPLATE_LABEL: "true"}},
                "spec": {"nodeSelector": {}, "bgp": {"routers": [{"asn": 64513, "neighbors": [{
                    "address": "198.18.0.155", "asn": 64512, "toReceive": {"allowed": {"mode": "all"}}}]}]}}}),
        );
    }

    fn route_advertisements(b: &Bench, name: &str) {
        b.create(
            b.ctx.k.ra,
            None,
            json!({"apiVersion": "k8s.ovn.org/v1", "kind": "RouteAdvertisements", "metadata": {"name": name},
                "spec": {"advertisements": ["PodNetwork"], "nodeSelector": {},
                    "frrConfigurationSelector": {"matchLabels": {TEMPLATE_LABEL: "true"}},
                    "networkSelectors": [{"networkSelectionType": "ClusterUserDefinedNetworks",
                        "clusterUserDefinedNetworkSelector": {"networkSelector": {
                            "matchLabels": {"vmbgp.io/advertise": "true"}}}}]}}),
        );
    }

    async fn judged(b: &Bench, name: &str) -> Arc<Value> {
        b.until("k8s.ovn.org/v1", "RouteAdvertisements", None, name, |o| {
            o["status"]["status"].is_string()
        })
        .await
    }

    fn generated(b: &Bench, ra: &str) -> Vec<Arc<Value>> {
        let selector = LabelSelector::parse(&format!("{RA_LABEL}={ra}")).expect("selector");
        b.ctx
            .store
            .list(
                b.ctx.k.frr,
                None,
                &ListOptions {
                    label_selector: selector,
                    ..Default::default()
                },
            )
            .expect("list")
            .items
    }

    #[tokio::test(start_paused = true)]
    async fn a_cudn_gets_a_nad_in_each_selected_primary_namespace() {
        let b = ovnk().await;
        b.namespace("ns-1", json!({"vmbgp.io/cudn": "l2"}), true);
        b.namespace("ns-2", json!({"vmbgp.io/cudn": "l2"}), true);
        b.namespace("ns-3", json!({"vmbgp.io/cudn": "other"}), true);
        b.create(b.ctx.k.cudn, None, cudn("l2"));
        let created = network_created(&b, "l2", "True").await;
        assert_eq!(created["metadata"]["finalizers"], json!([CUDN_FINALIZER]));
        let message = str_at(&created, "/status/conditions/0/message").unwrap_or_default();
        assert!(message.ends_with("[ns-1 ns-2]"), "{message}");

        let uid = str_at(&created, "/metadata/uid").expect("uid");
        for ns in ["ns-1", "ns-2"] {
            let nad = b.get(b.ctx.k.nad, Some(ns), "l2").expect("a NAD");
            assert!(owned_by(&nad, uid));
            let config: Value =
                serde_json::from_str(str_at(&nad, "/spec/config").expect("config")).expect("json");
            assert_eq!(config["name"], "cluster_udn_l2");
            assert_eq!(config["netAttachDefName"], format!("{ns}/l2"));
            assert_eq!(config["role"], "primary");
            assert_eq!(config["topology"], "layer2");
            assert_eq!(config["subnets"], SUBNET);
            assert_eq!(config["allowPersistentIPs"], true);
        }
        assert!(
            b.get(b.ctx.k.nad, Some("ns-3"), "l2").is_none(),
            "not selected"
        );

        // A namespace selected later gets its NAD too.
        b.namespace("ns-4", json!({"vmbgp.io/cudn": "l2"}), true);
        b.until(
            "k8s.cni.cncf.io/v1",
            "NetworkAttachmentDefinition",
            Some("ns-4"),
            "l2",
            |_| true,
        )
        .await;

        // Deleting the CUDN deletes its NADs, then releases its finalizer.
        b.delete(b.ctx.k.cudn, None, "l2");
        b.until_gone(b.ctx.k.cudn, None, "l2").await;
        for ns in ["ns-1", "ns-2", "ns-4"] {
            assert!(b.get(b.ctx.k.nad, Some(ns), "l2").is_none(), "{ns}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_selected_namespace_without_the_primary_label_fails_the_network() {
        let b = ovnk().await;
        b.namespace("plain", json!({"vmbgp.io/cudn": "l2"}), false);
        b.create(b.ctx.k.cudn, None, cudn("l2"));
        let failed = network_created(&b, "l2", "False").await;
        let message = str_at(&failed, "/status/conditions/0/message").unwrap_or_default();
        assert!(
            message.contains("invalid primary network state for namespace \"plain\""),
            "{message}"
        );
        assert!(b.get(b.ctx.k.nad, Some("plain"), "l2").is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn route_advertisements_generate_one_frr_configuration_per_node() {
        let b = ovnk().await;
        b.namespace("ns-1", json!({"vmbgp.io/cudn": "l2"}), true);
        b.create(b.ctx.k.cudn, None, cudn("l2"));
        network_created(&b, "l2", "True").await;
        template(&b, "peer");
        route_advertisements(&b, "ra-1");
        let ra = judged(&b, "ra-1").await;
        assert_eq!(ra["status"]["status"], "Accepted", "{}", ra["status"]);
        assert_eq!(condition_status(&ra, "Accepted"), Some("True"));

        let configs = generated(&b, "ra-1");
        let mut nodes = Vec::new();
        for config in &configs {
            let (ns, name) = ns_name(config);
            assert_eq!(ns, b.ctx.config.frr_namespace);
            assert!(name.starts_with("ovnk-generated-"), "{name}");
            assert!(owned_by(config, str_at(&ra, "/metadata/uid").expect("uid")));
            let node = str_at(
                config,
                "/spec/nodeSelector/matchLabels/kubernetes.io~1hostname",
            )
            .expect("one node")
            .to_string();
            assert_eq!(
                config["metadata"]["annotations"][RA_LABEL],
                format!("ra-1/peer/{node}")
            );
            let router = &config["spec"]["bgp"]["routers"][0];
            assert_eq!(router["asn"], 64513);
            assert_eq!(router["prefixes"], json!([SUBNET]));
            let neighbor = &router["neighbors"][0];
            assert_eq!(
                neighbor["toAdvertise"]["allowed"],
                json!({"mode": "filtered", "prefixes": [SUBNET]})
            );
            assert!(neighbor.get("toReceive").is_none(), "{neighbor}");
            nodes.push(node);
        }
        nodes.sort();
        assert_eq!(nodes, ["node-1", "node-2", "node-3"]);

        // Deleting the RA removes what it generated.
        b.delete(b.ctx.k.ra, None, "ra-1");
        for config in &configs {
            let (ns, name) = ns_name(config);
            b.until_gone(b.ctx.k.frr, Some(&ns), &name).await;
        }
        assert!(generated(&b, "ra-1").is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn route_advertisements_without_a_template_are_not_accepted() {
        let b = ovnk().await;
        b.namespace("ns-1", json!({"vmbgp.io/cudn": "l2"}), true);
        b.create(b.ctx.k.cudn, None, cudn("l2"));
        network_created(&b, "l2", "True").await;
        route_advertisements(&b, "ra-1");
        let ra = judged(&b, "ra-1").await;
        assert_eq!(
            ra["status"]["status"],
            "Not Accepted: no FRRConfigurations selected"
        );
        assert_eq!(condition_status(&ra, "Accepted"), Some("False"));
        assert!(generated(&b, "ra-1").is_empty());

        // A template appearing later is picked up.
        template(&b, "peer");
        b.until("k8s.ovn.org/v1", "RouteAdvertisements", None, "ra-1", |o| {
            o["status"]["status"] == "Accepted"
        })
        .await;
        assert_eq!(generated(&b, "ra-1").len(), 3);
    }

    /// OVN-K's template rule: whatever the RA's selector matches, in any namespace, except names
    /// starting `ovnk-generated-` — labels do not protect a configuration, names do.
    #[tokio::test(start_paused = true)]
    async fn a_select_everything_ra_templates_foreign_configurations_but_never_generated_ones() {
        let b = ovnk().await;
        b.namespace("ns-1", json!({"vmbgp.io/cudn": "l2"}), true);
        b.create(b.ctx.k.cudn, None, cudn("l2"));
        network_created(&b, "l2", "True").await;
        template(&b, "peer");
        let ns = b.ctx.config.frr_namespace.clone();
        let foreign = |name: &str, labels: Value| {
            json!({"apiVersion": "frrk8s.metallb.io/v1beta1", "kind": "FRRConfiguration",
                "metadata": {"name": name, "namespace": ns, "labels": labels},
                "spec": {"nodeSelector": {"matchLabels": {"kubernetes.io/hostname": "node-1"}},
                    "bgp": {"routers": [{"asn": 64513, "prefixes": ["198.19.3.7/32"],
                        "neighbors": [{"address": "198.18.0.155", "asn": 64512}]}]}}})
        };
        // The host-route controller's object, and one named like OVN-K's but labelled like ours.
        b.create(
            b.ctx.k.frr,
            Some(&ns),
            foreign(
                "vmbgp-host-routes-node-1",
                json!({"app.kubernetes.io/managed-by": "vmbgp-controller"}),
            ),
        );
        b.create(
            b.ctx.k.frr,
            Some(&ns),
            foreign(
                "ovnk-generated-zzzzz",
                json!({"app.kubernetes.io/managed-by": "vmbgp-controller"}),
            ),
        );
        b.create(
            b.ctx.k.ra,
            None,
            json!({"apiVersion": "k8s.ovn.org/v1", "kind": "RouteAdvertisements", "metadata": {"name": "ra-all"},
                "spec": {"advertisements": ["PodNetwork"], "nodeSelector": {}, "frrConfigurationSelector": {},
                    "networkSelectors": [{"networkSelectionType": "ClusterUserDefinedNetworks",
                        "clusterUserDefinedNetworkSelector": {"networkSelector": {
                            "matchLabels": {"vmbgp.io/advertise": "true"}}}}]}}),
        );
        let ra = judged(&b, "ra-all").await;
        assert_eq!(ra["status"]["status"], "Accepted", "{}", ra["status"]);
        let mut templates: Vec<String> = generated(&b, "ra-all")
            .iter()
            .map(|c| {
                let annotation = c["metadata"]["annotations"][RA_LABEL]
                    .as_str()
                    .unwrap_or_default();
                annotation.split('/').nth(1).unwrap_or_default().to_string()
            })
            .collect();
        templates.sort();
        templates.dedup();
        assert_eq!(templates, ["peer", "vmbgp-host-routes-node-1"]);
        // A label selector (what the harness's RAs use) leaves the controller's object alone.
        route_advertisements(&b, "ra-1");
        assert_eq!(judged(&b, "ra-1").await["status"]["status"], "Accepted");
        for c in generated(&b, "ra-1") {
            assert_eq!(
                c["metadata"]["annotations"][RA_LABEL]
                    .as_str()
                    .map(|a| a.split('/').nth(1)),
                Some(Some("peer")),
                "{c}"
            );
        }
    }

    #[test]
    fn generated_names_are_stable_and_distinct_per_node() {
        let a = generated_name("ra", "peer", "node-1");
        assert_eq!(a, generated_name("ra", "peer", "node-1"));
        assert_ne!(a, generated_name("ra", "peer", "node-2"));
        assert!(a.starts_with("ovnk-generated-") && a.len() == "ovnk-generated-".len() + 5);
    }
}
