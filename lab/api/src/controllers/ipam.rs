//! Persistent IPs: the kubevirt-ipam-controller (creates `IPAMClaim <vm>.<network>` owned by the VM, with its
//! finalizer, and releases the finalizer once VM and VMI are gone, after `claim_release_delay_ms`) and OVN-K's allocator (fills `status.ips`,
//! `ownerPod` and condition `IPsAllocated` from the CUDN subnet, honouring static requests from
//! `network.kubevirt.io/addresses`, `reservedSubnets`, `infrastructureSubnets` and the gateway).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::views::{ClaimView, CudnView, NadView, VmView, VmiView};
use super::{Ctx, WorkQueue, bare_ip, meta_key, owner_ref_meta, set_condition, str_at, watch_kind};
use crate::api_ground_truth::{GroundTruthKind, ObjectRef};
use crate::store::{ObjMeta, WriteOptions};

/// The finalizer kubevirt-ipam-controller puts on claims.
pub const CLAIM_FINALIZER: &str = "kubevirt.io/persistent-ipam";
/// Label on claims naming their VM.
pub const VM_LABEL: &str = "kubevirt.io/vm";
/// The VM template annotation carrying Day-0 static IPs.
pub const ADDRESSES_ANNOTATION: &str = "network.kubevirt.io/addresses";

/// Which address belongs to whom, per OVN network.
#[derive(Debug, Default)]
pub struct Allocator {
    networks: HashMap<String, BTreeMap<IpAddr, String>>,
    hints: HashMap<(String, IpNet), u128>,
    /// `(namespace, vm)` whose claims failed allocation; retried when an address is freed (as the real
    /// launcher pod's sandbox creation is retried).
    pub waiting: std::collections::BTreeSet<(String, String)>,
}

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u32::from(v4) as u128,
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn from_u128(v4: bool, n: u128) -> IpAddr {
    if v4 {
        IpAddr::V4(std::net::Ipv4Addr::from(n as u32))
    } else {
        IpAddr::V6(std::net::Ipv6Addr::from(n))
    }
}

impl Allocator {
    pub fn owner_of(&self, network: &str, ip: IpAddr) -> Option<&str> {
        self.networks.get(network)?.get(&ip).map(String::as_str)
    }

    /// Marks `ip` as `owner`'s; `Err(other owner)` if someone else holds it.
    pub fn take(&mut self, network: &str, ip: IpAddr, owner: &str) -> Result<(), String> {
        let m = self.networks.entry(network.to_string()).or_default();
        match m.get(&ip) {
            Some(o) if o != owner => Err(o.clone()),
            _ => {
                m.insert(ip, owner.to_string());
                Ok(())
            }
        }
    }

    /// Frees every address of `owner`; returns them.
    pub fn release(&mut self, owner: &str) -> Vec<(String, IpAddr)> {
        let mut out = Vec::new();
        for (net, m) in self.networks.iter_mut() {
            m.retain(|ip, o| {
                if o == owner {
                    out.push((net.clone(), *ip));
                    false
                } else {
                    true
                }
            });
        }
        out
    }

    /// Picks the next free host of `subnet` not in `excluded` nets or `excluded_ips`.
    pub fn allocate(
        &mut self,
        network: &str,
        subnet: IpNet,
        excluded: &[IpNet],
        excluded_ips: &[IpAddr],
        owner: &str,
    ) -> Option<IpAddr> {
        let v4 = matches!(subnet, IpNet::V4(_));
        let first = to_u128(subnet.network()) + 1;
        let last = if v4 {
            to_u128(subnet.broadcast()).saturating_sub(1)
        } else {
            to_u128(subnet.broadcast())
        };
        if last < first {
            return None;
        }
        let span = last - first + 1;
        let hint_key = (network.to_string(), subnet);
        let start = self
            .hints
            .get(&hint_key)
            .copied()
            .filter(|h| *h >= first && *h <= last)
            .unwrap_or(first);
        let taken = self.networks.entry(network.to_string()).or_default();
        // Bounded scan: at most the whole subnet, capped so a huge IPv6 subnet cannot spin.
        let max_steps = span.min(1 << 20);
        for step in 0..max_steps {
            let n = first + (start - first + step) % span;
            let ip = from_u128(v4, n);
            if taken.contains_key(&ip)
                || excluded_ips.contains(&ip)
                || excluded.iter().any(|e| e.contains(&ip))
            {
                continue;
            }
            taken.insert(ip, owner.to_string());
            self.hints.insert(hint_key, n + 1);
            return Some(ip);
        }
        None
    }
}

/// The OVN-K network parameters a claim is allocated from.
#[derive(Debug, Clone)]
pub struct NetworkParams {
    pub subnets: Vec<IpNet>,
    pub excluded: Vec<IpNet>,
    pub gateways: Vec<IpAddr>,
}

/// Reads a CUDN's Layer2/Layer3 subnets, reserved/infrastructure subnets and gateways.
pub fn network_params(cudn: &Value) -> NetworkParams {
    let topo = str_at(cudn, "/spec/network/topology")
        .unwrap_or("Layer2")
        .to_ascii_lowercase();
    let cfg = cudn
        .pointer(&format!("/spec/network/{topo}"))
        .cloned()
        .unwrap_or(Value::Null);
    let cidrs = |key: &str| -> Vec<IpNet> {
        cfg.get(key)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().or_else(|| v.get("cidr").and_then(Value::as_str)))
                    .filter_map(|s| s.parse::<IpNet>().ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    let subnets = cidrs("subnets");
    let mut excluded = cidrs("reservedSubnets");
    excluded.extend(cidrs("infrastructureSubnets"));
    let explicit_gw: Vec<IpAddr> = cfg
        .get("defaultGatewayIPs")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().and_then(bare_ip))
                .collect()
        })
        .unwrap_or_default();
    // The gateway is the subnet's first host unless defaultGatewayIPs names it.
    let gateways = subnets
        .iter()
        .map(|s| {
            explicit_gw
                .iter()
                .copied()
                .find(|g| s.contains(g))
                .unwrap_or_else(|| from_u128(matches!(s, IpNet::V4(_)), to_u128(s.network()) + 1))
        })
        .collect();
    NetworkParams {
        subnets,
        excluded,
        gateways,
    }
}

/// The primary-UDN NAD of a namespace: `(OVN network name, allowPersistentIPs)`.
pub fn primary_nad(ctx: &Ctx, namespace: &str) -> Option<(String, bool)> {
    ctx.store
        .views::<NadView>(ctx.k.nad, Some(namespace))
        .into_iter()
        .find_map(|(_, nad)| nad.primary.clone())
}

/// The address parameters of the CUDN behind an OVN network name `cluster_udn_<name>`.
pub fn cudn_for_network(ctx: &Ctx, network: &str) -> Option<NetworkParams> {
    let name = network.strip_prefix("cluster_udn_")?;
    let (_, cudn) = ctx.store.view::<CudnView>(ctx.k.cudn, None, name)?;
    Some(cudn.params.clone())
}

fn launcher_pod_name(vm: &str, uid: &str) -> String {
    const CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut h: u64 = 1469598103934665603;
    for b in uid.bytes() {
        h = (h ^ b as u64).wrapping_mul(1099511628211);
    }
    let suffix: String = (0..5)
        .map(|i| CHARS[((h >> (i * 8)) % CHARS.len() as u64) as usize] as char)
        .collect();
    format!("virt-launcher-{vm}-{suffix}")
}

pub fn spawn(ctx: Ctx, tasks: &TaskTracker) {
    let queue: Arc<WorkQueue<(String, String)>> = WorkQueue::new();
    let vm_key = |m: &ObjMeta, _: Option<&crate::store::WatchEvent>| vec![meta_key(m)];
    watch_kind(&ctx, tasks, ctx.k.vmi, queue.clone(), vm_key);
    watch_kind(&ctx, tasks, ctx.k.vm, queue.clone(), vm_key);
    let c1 = ctx.clone();
    watch_kind(&ctx, tasks, ctx.k.claim, queue.clone(), move |m, ev| {
        let mut keys = Vec::new();
        if let Some(e) = ev.filter(|e| e.event_type == crate::store::EventType::Deleted) {
            release_claim(&c1, &m.namespace, &m.name, e.at);
            if let Ok(mut a) = c1.ipam.lock() {
                keys.extend(std::mem::take(&mut a.waiting));
            }
        }
        let vm = m
            .labels
            .get(VM_LABEL)
            .unwrap_or_else(|| m.name.split('.').next().unwrap_or_default());
        keys.push((m.namespace.clone(), vm.to_string()));
        keys
    });
    let c2 = ctx.clone();
    watch_kind(&ctx, tasks, ctx.k.nad, queue.clone(), move |m, _| {
        c2.store
            .metas(c2.k.vmi, Some(&m.namespace))
            .iter()
            .map(|v| meta_key(v))
            .collect()
    });
    let c3 = ctx.clone();
    watch_kind(&ctx, tasks, ctx.k.cudn, queue.clone(), move |_, _| {
        // A CUDN appearing can unblock claims waiting for their network.
        c3.store
            .views::<ClaimView>(c3.k.claim, None)
            .iter()
            .filter(|(_, c)| !c.ips_present)
            .map(|(m, _)| {
                let vm = m.name.split('.').next().unwrap_or_default();
                (m.namespace.clone(), vm.to_string())
            })
            .collect()
    });
    let stop = ctx.shutdown.clone();
    let mut release = Release {
        delay: Duration::from_millis(ctx.config.claim_release_delay_ms),
        due: HashMap::new(),
        queue: queue.clone(),
        tasks: tasks.clone(),
        stop: stop.clone(),
    };
    tasks.spawn(async move {
        while let Some(batch) = queue.take(&stop).await {
            for (ns, vm) in batch {
                reconcile(&ctx, &ns, &vm, &mut release);
            }
        }
    });
}

/// When claims whose VM and VMI are gone lose their finalizer ([`crate::LabConfig::claim_release_delay_ms`]).
struct Release {
    delay: Duration,
    /// Claim uid → when its finalizer goes (tokio's clock, which tests can pause).
    due: HashMap<String, tokio::time::Instant>,
    queue: Arc<WorkQueue<(String, String)>>,
    tasks: TaskTracker,
    stop: CancellationToken,
}

impl Release {
    /// Whether the claim's finalizer may go now; otherwise the VM is reconciled again when it may.
    fn ready(&mut self, claim_uid: &str, key: (String, String)) -> bool {
        if self.delay.is_zero() {
            return true;
        }
        let now = tokio::time::Instant::now();
        let due = *self.due.entry(claim_uid.to_string()).or_insert_with(|| {
            let (queue, stop, at) = (self.queue.clone(), self.stop.clone(), now + self.delay);
            self.tasks.spawn(async move {
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => queue.push(key),
                    _ = stop.cancelled() => {}
                }
            });
            at
        });
        let ready = now >= due;
        if ready {
            self.due.remove(claim_uid);
        }
        ready
    }

    /// The claim is not being released (its VM came back): forget any pending release.
    fn cancel(&mut self, claim_uid: &str) {
        self.due.remove(claim_uid);
    }
}

fn reconcile(ctx: &Ctx, ns: &str, vm_name: &str, release: &mut Release) {
    let vm = ctx.store.view::<VmView>(ctx.k.vm, Some(ns), vm_name);
    let vmi = ctx.store.view::<VmiView>(ctx.k.vmi, Some(ns), vm_name);
    let live_vmi = vmi.as_ref().filter(|(m, _)| !m.deleting);
    if let Some(vmi) = live_vmi {
        ensure_claims(ctx, ns, vm_name, vm.as_ref().map(|(m, _)| &**m), vmi);
    }
    // Claims are named `<vm>.<network>`: a key-range scan finds this VM's claims.
    let claims: Vec<_> = ctx
        .store
        .views_name_prefix::<ClaimView>(ctx.k.claim, Some(ns), &format!("{vm_name}."))
        .into_iter()
        .filter(|(m, _)| m.labels.get(VM_LABEL) == Some(vm_name))
        .collect();
    let vm_gone = vm.as_ref().is_none_or(|(m, _)| m.deleting);
    for claim in &claims {
        let cname = &claim.0.name;
        if vm_gone && vmi.is_none() {
            if claim.0.has_finalizer(CLAIM_FINALIZER)
                && release.ready(&claim.0.uid, (ns.to_string(), vm_name.to_string()))
            {
                let _ = ctx.store.modify(ctx.k.claim, Some(ns), cname, false, |c| {
                    if let Some(f) = c
                        .pointer_mut("/metadata/finalizers")
                        .and_then(Value::as_array_mut)
                    {
                        f.retain(|x| x != CLAIM_FINALIZER);
                    }
                });
            }
            continue;
        }
        release.cancel(&claim.0.uid);
        if let Some(vmi) = live_vmi
            && !claim.0.deleting
        {
            allocate(ctx, claim, vmi);
        }
    }
}

/// OVN-K frees a claim's addresses when the claim is deleted.
fn release_claim(ctx: &Ctx, ns: &str, cname: &str, at: std::time::Instant) {
    let freed = ctx
        .ipam
        .lock()
        .map(|mut a| a.release(&format!("claim:{ns}/{cname}")))
        .unwrap_or_default();
    if !freed.is_empty() {
        ctx.gt.record_at(
            at,
            GroundTruthKind::IpReleased,
            ObjectRef::new("IPAMClaim", ns, cname),
            json!({"ips": freed.iter().map(|(_, ip)| ip.to_string()).collect::<Vec<_>>()}),
        );
    }
}

/// kubevirt-ipam-controller: one claim per VMI pod network on a persistent-IP primary UDN.
fn ensure_claims(
    ctx: &Ctx,
    ns: &str,
    vm_name: &str,
    vm: Option<&ObjMeta>,
    (vmi_meta, vmi): &(Arc<ObjMeta>, Arc<VmiView>),
) {
    let Some((network, persistent)) = primary_nad(ctx, ns) else {
        return;
    };
    if !persistent {
        return;
    }
    let owner = match vm {
        Some(v) if !v.deleting => owner_ref_meta(ctx, ctx.k.vm, v),
        _ => owner_ref_meta(ctx, ctx.k.vmi, vmi_meta),
    };
    let owner_uid = owner.get("uid").and_then(Value::as_str).unwrap_or_default();
    for net_name in &vmi.pod_networks {
        let claim_name = format!("{vm_name}.{net_name}").to_lowercase();
        if let Some(existing) = ctx.store.meta(ctx.k.claim, Some(ns), &claim_name) {
            if !existing.owned_by(owner_uid) && !existing.owned_by(&vmi_meta.uid) {
                tracing::warn!(
                    namespace = ns,
                    claim = claim_name,
                    "leaked IPAMClaim owned by another object"
                );
            }
            continue;
        }
        let claim = json!({
            "apiVersion": "k8s.cni.cncf.io/v1alpha1",
            "kind": "IPAMClaim",
            "metadata": {
                "name": claim_name,
                "namespace": ns,
                "labels": {VM_LABEL: vm_name},
                "finalizers": [CLAIM_FINALIZER],
                "ownerReferences": [owner],
            },
            "spec": {"network": network, "interface": ""},
        });
        if let Err(e) = ctx
            .store
            .create(ctx.k.claim, Some(ns), claim, &WriteOptions::default())
        {
            tracing::warn!(namespace = ns, claim = claim_name, error = %e, "creating IPAMClaim failed");
        }
    }
}

/// OVN-K persistent IPs: allocate the claim's addresses once, then keep them.
fn allocate(
    ctx: &Ctx,
    (claim_meta, claim): &(Arc<ObjMeta>, Arc<ClaimView>),
    (vmi_meta, vmi): &(Arc<ObjMeta>, Arc<VmiView>),
) {
    let (ns, cname) = (claim_meta.namespace.clone(), claim_meta.name.clone());
    let owner = format!("claim:{ns}/{cname}");
    let network = claim.network.clone();
    let pod = launcher_pod_name(&vmi_meta.name, &vmi_meta.uid);
    let existing: &[String] = claim.ips.as_deref().unwrap_or_default();
    if !existing.is_empty() {
        // Survives VM restart and migration: the claim is the record; re-mark it (e.g. after a lab restart).
        if let Ok(mut a) = ctx.ipam.lock() {
            for ip in existing.iter().filter_map(|s| bare_ip(s)) {
                let _ = a.take(&network, ip, &owner);
            }
        }
        return;
    }
    let Some(params) = cudn_for_network(ctx, &network) else {
        return;
    };
    let net_name = cname.split_once('.').map(|(_, n)| n).unwrap_or("default");
    let requested: Vec<IpAddr> = vmi
        .addresses_annotation
        .as_deref()
        .and_then(|s| serde_json::from_str::<Value>(s).ok())
        .and_then(|m| m.get(net_name).cloned())
        .and_then(|v| v.as_array().cloned())
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().and_then(bare_ip))
                .collect()
        })
        .unwrap_or_default();
    let result: Result<Vec<String>, (&str, String)> = (|| {
        let mut alloc = ctx
            .ipam
            .lock()
            .map_err(|_| ("InternalError", "allocator unavailable".to_string()))?;
        let mut out = Vec::new();
        if !requested.is_empty() {
            for ip in &requested {
                let Some(subnet) = params.subnets.iter().find(|s| s.contains(ip)) else {
                    alloc.release(&owner);
                    return Err((
                        "InternalError",
                        format!(
                            "failed to allocate IP {ip}: provided IP is not part of the network subnets"
                        ),
                    ));
                };
                if let Err(other) = alloc.take(&network, *ip, &owner) {
                    alloc.release(&owner);
                    return Err((
                        "IPAddressConflict",
                        format!(
                            "failed to allocate IP {ip}: provided IP is already allocated (by {other})"
                        ),
                    ));
                }
                out.push(format!("{ip}/{}", subnet.prefix_len()));
            }
        } else {
            for subnet in &params.subnets {
                match alloc.allocate(
                    &network,
                    *subnet,
                    &params.excluded,
                    &params.gateways,
                    &owner,
                ) {
                    Some(ip) => out.push(format!("{ip}/{}", subnet.prefix_len())),
                    None => {
                        alloc.release(&owner);
                        return Err((
                            "SubnetExhausted",
                            format!(
                                "failed to allocate IPs: subnet {subnet} address pool exhausted"
                            ),
                        ));
                    }
                }
            }
        }
        Ok(out)
    })();
    match result {
        Ok(ips) => {
            let write = ctx
                .store
                .modify_status(ctx.k.claim, Some(&ns), &cname, |status| {
                    status["ips"] = json!(ips);
                    status["ownerPod"] = json!({"name": pod});
                    set_condition(
                        status,
                        "IPsAllocated",
                        "True",
                        "SuccessfulAllocation",
                        "IP addresses successfully allocated",
                    );
                });
            match write {
                Ok(w) => ctx.gt.record_at(
                    w.at,
                    GroundTruthKind::IpAllocated,
                    ObjectRef::new("IPAMClaim", &ns, &cname),
                    json!({"ips": ips, "network": network, "static": !requested.is_empty()}),
                ),
                Err(_) => {
                    if let Ok(mut a) = ctx.ipam.lock() {
                        a.release(&owner);
                    }
                }
            }
        }
        Err((reason, message)) => {
            if let Ok(mut a) = ctx.ipam.lock() {
                let vm = claim_meta.labels.get(VM_LABEL).unwrap_or_default();
                a.waiting.insert((ns.clone(), vm.to_string()));
            }
            let already = claim.condition_reasons.iter().any(|r| r == reason);
            if already {
                return;
            }
            if let Ok(w) = ctx.store.modify(ctx.k.claim, Some(&ns), &cname, true, |c| {
                let mut status = c.get("status").cloned().unwrap_or_else(|| json!({}));
                status["ips"] = json!([]);
                set_condition(&mut status, "IPsAllocated", "False", reason, &message);
                c["status"] = status;
            }) {
                ctx.gt.record_at(
                    w.at,
                    GroundTruthKind::IpAllocationFailed,
                    ObjectRef::new("IPAMClaim", &ns, &cname),
                    json!({"reason": reason, "message": message}),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The IPAM controllers alone on the in-process store, in paused time. The tests write what the
    //! other controllers would (the NAD OVN-K derives from a CUDN, the VMIs KubeVirt creates).

    use super::*;
    use crate::LabConfig;
    use crate::controllers::bench::{self, Bench};
    use crate::controllers::condition_status;

    const NS: &str = "vms";
    const SUBNET: &str = "198.19.5.0/24";

    /// The IPAM controllers, and a primary Layer2 network on `SUBNET` for namespace `NS` whose NAD
    /// allows persistent IPs when `persistent`.
    async fn ipam(config: LabConfig, persistent: bool) -> Bench {
        let b = bench::start(config).await;
        spawn(b.ctx.clone(), &b.tasks);
        b.namespace(NS, json!({}), true);
        b.create(
            b.ctx.k.cudn,
            None,
            json!({"apiVersion": "k8s.ovn.org/v1", "kind": "ClusterUserDefinedNetwork",
                "metadata": {"name": "l2"},
                "spec": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": NS}},
                    "network": {"topology": "Layer2", "layer2": {"role": "Primary", "subnets": [SUBNET],
                        "ipam": {"lifecycle": "Persistent"}}}}}),
        );
        let mut config = json!({"cniVersion": "1.0.0", "type": "ovn-k8s-cni-overlay",
            "name": "cluster_udn_l2", "netAttachDefName": format!("{NS}/l2"), "topology": "layer2",
            "role": "primary", "subnets": SUBNET});
        if persistent {
            config["allowPersistentIPs"] = json!(true);
        }
        b.create(
            b.ctx.k.nad,
            Some(NS),
            json!({"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
                "metadata": {"name": "l2", "namespace": NS}, "spec": {"config": config.to_string()}}),
        );
        b
    }

    fn vmi(name: &str, static_ip: Option<&str>) -> Value {
        let mut meta = json!({"name": name, "namespace": NS});
        if let Some(ip) = static_ip {
            meta["annotations"] =
                json!({ADDRESSES_ANNOTATION: format!("{{\"default\": [\"{ip}\"]}}")});
        }
        json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance", "metadata": meta,
            "spec": {"domain": {"devices": {"interfaces": [{"name": "default", "binding": {"name": "l2bridge"}}]},
                "resources": {"requests": {"memory": "1Gi"}}},
                "networks": [{"name": "default", "pod": {}}]}})
    }

    /// Waits for the claim of VMI `vm` to be judged (`IPsAllocated` set to `status`).
    async fn claim(b: &Bench, vm: &str, status: &str) -> Arc<Value> {
        b.until(
            "k8s.cni.cncf.io/v1alpha1",
            "IPAMClaim",
            Some(NS),
            &format!("{vm}.default"),
            |o| condition_status(o, "IPsAllocated") == Some(status),
        )
        .await
    }

    fn ips(claim: &Value) -> Vec<String> {
        claim["status"]["ips"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|ip| ip.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn released(b: &Bench, claim: &str) -> Vec<Value> {
        b.lab
            .ground_truth()
            .events()
            .into_iter()
            .filter(|e| e.event == GroundTruthKind::IpReleased && e.object.name == claim)
            .map(|e| e.detail)
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_vmi_gets_a_claim_with_an_address_from_the_network_subnet() {
        let b = ipam(LabConfig::default(), true).await;
        b.create(b.ctx.k.vmi, Some(NS), vmi("vm-1", None));
        b.create(b.ctx.k.vmi, Some(NS), vmi("vm-2", None));
        let first = claim(&b, "vm-1", "True").await;
        let second = claim(&b, "vm-2", "True").await;

        assert_eq!(first["metadata"]["labels"][VM_LABEL], "vm-1");
        assert_eq!(first["metadata"]["finalizers"], json!([CLAIM_FINALIZER]));
        assert_eq!(first["spec"]["network"], "cluster_udn_l2");
        let vmi = b.get(b.ctx.k.vmi, Some(NS), "vm-1").expect("vmi");
        let vmi_uid = str_at(&vmi, "/metadata/uid").expect("uid");
        assert!(
            super::super::owned_by(&first, vmi_uid),
            "without a VM, the VMI owns the claim"
        );
        assert!(
            str_at(&first, "/status/ownerPod/name")
                .is_some_and(|p| p.starts_with("virt-launcher-vm-1-")),
            "{}",
            first["status"]
        );
        let subnet: IpNet = SUBNET.parse().expect("subnet");
        let mut addresses = Vec::new();
        for c in [&first, &second] {
            let [ip] = &ips(c)[..] else {
                panic!("one address: {}", c["status"])
            };
            assert!(ip.ends_with("/24"), "{ip} carries the subnet's length");
            let ip = bare_ip(ip).expect("address");
            assert!(subnet.contains(&ip), "{ip} in {subnet}");
            assert_ne!(
                ip,
                "198.19.5.1".parse::<IpAddr>().expect("ip"),
                "not the gateway"
            );
            addresses.push(ip);
        }
        assert_ne!(addresses[0], addresses[1], "two VMIs, two addresses");
    }

    #[tokio::test(start_paused = true)]
    async fn a_static_address_is_honoured_and_a_taken_one_waits_for_its_release() {
        let b = ipam(LabConfig::default(), true).await;
        b.create(b.ctx.k.vmi, Some(NS), vmi("vm-1", Some("198.19.5.50")));
        assert_eq!(ips(&*claim(&b, "vm-1", "True").await), ["198.19.5.50/24"]);

        b.create(b.ctx.k.vmi, Some(NS), vmi("vm-2", Some("198.19.5.50")));
        let conflict = claim(&b, "vm-2", "False").await;
        assert!(
            conflict["status"]["conditions"][0]["reason"] == "IPAddressConflict",
            "{}",
            conflict["status"]
        );
        assert!(ips(&conflict).is_empty());

        // vm-1 goes: its claim is collected with it, loses its finalizer, and frees the address.
        b.delete(b.ctx.k.vmi, Some(NS), "vm-1");
        b.until_gone(b.ctx.k.claim, Some(NS), "vm-1.default").await;
        assert_eq!(ips(&*claim(&b, "vm-2", "True").await), ["198.19.5.50/24"]);
        assert_eq!(
            released(&b, "vm-1.default"),
            [json!({"ips": ["198.19.5.50"]})]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_address_outside_the_subnet_is_refused() {
        let b = ipam(LabConfig::default(), true).await;
        b.create(b.ctx.k.vmi, Some(NS), vmi("vm-1", Some("10.0.0.5")));
        let refused = claim(&b, "vm-1", "False").await;
        let message = str_at(&refused, "/status/conditions/0/message").unwrap_or_default();
        assert!(
            message.contains("not part of the network subnets"),
            "{message}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_claim_keeps_its_finalizer_for_the_release_delay() {
        const DELAY: Duration = Duration::from_secs(30);
        let b = ipam(
            LabConfig {
                claim_release_delay_ms: DELAY.as_millis() as u64,
                ..LabConfig::default()
            },
            true,
        )
        .await;
        b.create(b.ctx.k.vmi, Some(NS), vmi("vm-1", None));
        claim(&b, "vm-1", "True").await;
        let gone_at = tokio::time::Instant::now();
        b.delete(b.ctx.k.vmi, Some(NS), "vm-1");

        tokio::time::sleep(DELAY - Duration::from_secs(1)).await;
        let held = b
            .get(b.ctx.k.claim, Some(NS), "vm-1.default")
            .expect("the claim outlives its VMI by the delay");
        assert!(held["metadata"]["deletionTimestamp"].is_string());
        assert_eq!(held["metadata"]["finalizers"], json!([CLAIM_FINALIZER]));
        assert!(released(&b, "vm-1.default").is_empty());

        b.until_gone(b.ctx.k.claim, Some(NS), "vm-1.default").await;
        assert_eq!(gone_at.elapsed(), DELAY);
        assert_eq!(released(&b, "vm-1.default").len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn without_persistent_ips_no_claim_is_made() {
        let b = ipam(LabConfig::default(), false).await;
        b.create(b.ctx.k.vmi, Some(NS), vmi("vm-1", None));
        tokio::time::sleep(bench::PATIENCE).await;
        assert!(b.get(b.ctx.k.claim, Some(NS), "vm-1.default").is_none());
    }

    #[test]
    fn allocator_skips_gateway_reserved_and_taken_then_exhausts() {
        let mut a = Allocator::default();
        let subnet: IpNet = "198.19.0.0/29".parse().unwrap();
        let reserved: Vec<IpNet> = vec!["198.19.0.4/31".parse().unwrap()];
        let gw: Vec<IpAddr> = vec!["198.19.0.1".parse().unwrap()];
        a.take("n", "198.19.0.2".parse().unwrap(), "static")
            .unwrap();
        let got: Vec<IpAddr> = (0..3)
            .filter_map(|i| a.allocate("n", subnet, &reserved, &gw, &format!("o{i}")))
            .collect();
        assert_eq!(
            got,
            vec![
                "198.19.0.3".parse::<IpAddr>().unwrap(),
                "198.19.0.6".parse().unwrap()
            ]
        );
        assert!(a.take("n", "198.19.0.3".parse().unwrap(), "other").is_err());
        assert_eq!(a.release("o0").len(), 1);
        assert_eq!(
            a.allocate("n", subnet, &reserved, &gw, "o9"),
            Some("198.19.0.3".parse().unwrap())
        );
    }

    #[test]
    fn network_params_read_layer2_fields() {
        let cudn = json!({"spec": {"network": {"topology": "Layer2", "layer2": {
            "subnets": ["198.19.1.0/24"], "reservedSubnets": ["198.19.1.200/29"], "defaultGatewayIPs": ["198.19.1.254"]}}}});
        let p = network_params(&cudn);
        assert_eq!(p.subnets.len(), 1);
        assert_eq!(p.excluded.len(), 1);
        assert_eq!(p.gateways, vec!["198.19.1.254".parse::<IpAddr>().unwrap()]);
        let p = network_params(
            &json!({"spec": {"network": {"topology": "Layer2", "layer2": {"subnets": ["198.19.2.0/24"]}}}}),
        );
        assert_eq!(p.gateways, vec!["198.19.2.1".parse::<IpAddr>().unwrap()]);
    }
}
