//! Simulated KubeVirt: VirtualMachine → VirtualMachineInstance (phases Pending → Scheduling → Scheduled →
//! Running with `phaseTransitionTimestamps`, node placement, boot delay, interface addresses, `Ready`), VM
//! `printableStatus`/`ready`, deletion through the VMI finalizer, and VirtualMachineInstanceMigration with a
//! switch-over. Calls the [`Dataplane`](crate::dataplane::Dataplane) seam and stamps ground truth.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio_util::task::TaskTracker;

use super::ipam::{VM_LABEL, cudn_for_network, primary_nad};
use super::views::{ClaimView, VmView, VmiView};
use super::{
    Ctx, WorkQueue, bare_ip, is_deleting, meta_key, now_rfc3339, ns_name, owner_ref, set_condition,
    str_at, watch_kind,
};
use crate::api_ground_truth::{GroundTruthKind, ObjectRef};
use crate::boot::BootDelaySampler;
use crate::dataplane::VmAddress;
use crate::store::{DeleteOptions, WriteOptions};

/// When a VMI phase may advance. Phase timers read tokio's clock (which tests pause, and which is the
/// monotonic clock otherwise); ground truth keeps the store's instants.
type Due = tokio::time::Instant;

/// Finalizer KubeVirt puts on every VMI.
pub const VMI_FINALIZER: &str = "kubevirt.io/foregroundDeleteVirtualMachine";

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Vm(String, String),
    Vmi(String, String),
    Vmim(String, String),
}

#[derive(Debug)]
struct State {
    boot: BootDelaySampler,
    /// When the current phase may advance.
    due: HashMap<(String, String), Due>,
    /// VMIs whose addresses the dataplane holds.
    up: HashMap<(String, String), VmAddress>,
    finalizing: HashSet<(String, String)>,
    migrating: HashSet<(String, String)>,
    /// VMIs per node (placement).
    load: BTreeMap<String, usize>,
    placed: HashMap<(String, String), String>,
}

#[derive(Debug, Clone)]
struct Kv {
    ctx: Ctx,
    state: Arc<Mutex<State>>,
    queue: Arc<WorkQueue<Key>>,
    tasks: TaskTracker,
}

pub fn spawn(ctx: Ctx, tasks: &TaskTracker) {
    let queue: Arc<WorkQueue<Key>> = WorkQueue::new();
    let state = Arc::new(Mutex::new(State {
        boot: BootDelaySampler::new(ctx.config.boot_delay.clone(), ctx.config.seed),
        due: HashMap::new(),
        up: HashMap::new(),
        finalizing: HashSet::new(),
        migrating: HashSet::new(),
        load: BTreeMap::new(),
        placed: HashMap::new(),
    }));
    watch_kind(&ctx, tasks, ctx.k.vm, queue.clone(), |m, _| {
        let (ns, n) = meta_key(m);
        vec![Key::Vm(ns, n)]
    });
    watch_kind(&ctx, tasks, ctx.k.vmi, queue.clone(), |m, _| {
        let (ns, n) = meta_key(m);
        vec![Key::Vmi(ns.clone(), n.clone()), Key::Vm(ns, n)]
    });
    watch_kind(&ctx, tasks, ctx.k.vmim, queue.clone(), |m, _| {
        let (ns, n) = meta_key(m);
        vec![Key::Vmim(ns, n)]
    });
    watch_kind(&ctx, tasks, ctx.k.claim, queue.clone(), |m, _| {
        let vm = m
            .labels
            .get(VM_LABEL)
            .unwrap_or_else(|| m.name.split('.').next().unwrap_or_default());
        vec![Key::Vmi(m.namespace.clone(), vm.to_string())]
    });
    let kv = Kv {
        ctx: ctx.clone(),
        state,
        queue: queue.clone(),
        tasks: tasks.clone(),
    };
    let stop = ctx.shutdown.clone();
    tasks.spawn(async move {
        while let Some(batch) = queue.take(&stop).await {
            for key in batch {
                match key {
                    Key::Vm(ns, n) => kv.reconcile_vm(&ns, &n),
                    Key::Vmi(ns, n) => kv.reconcile_vmi(&ns, &n),
                    Key::Vmim(ns, n) => kv.reconcile_vmim(&ns, &n),
                }
            }
        }
    });
}

fn push_phase(status: &mut Value, phase: &str) {
    status["phase"] = json!(phase);
    if !status
        .get("phaseTransitionTimestamps")
        .is_some_and(Value::is_array)
    {
        status["phaseTransitionTimestamps"] = json!([]);
    }
    if let Some(a) = status
        .get_mut("phaseTransitionTimestamps")
        .and_then(Value::as_array_mut)
    {
        a.push(json!({"phase": phase, "phaseTransitionTimestamp": now_rfc3339()}));
    }
}

fn mac_for(ip: &IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("02:00:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
        }
        IpAddr::V6(v6) => {
            let o = v6.octets();
            format!(
                "02:00:{:02x}:{:02x}:{:02x}:{:02x}",
                o[12], o[13], o[14], o[15]
            )
        }
    }
}

impl Kv {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn step(&self) -> Duration {
        Duration::from_millis(self.ctx.config.phase_step_ms)
    }

    fn reconcile_vm(&self, ns: &str, name: &str) {
        let ctx = &self.ctx;
        let Some((vm_meta, vm)) = ctx.store.view::<VmView>(ctx.k.vm, Some(ns), name) else {
            return;
        };
        let vmi = ctx.store.meta(ctx.k.vmi, Some(ns), name);
        let strategy = vm.run_strategy.as_str();
        let want_running = matches!(strategy, "Always" | "RerunOnFailure" | "Once");
        if !vm_meta.deleting {
            match (&vmi, want_running) {
                (None, true) => {
                    if let Some(full) = ctx.store.get_opt(ctx.k.vm, Some(ns), name) {
                        self.create_vmi(&full);
                    }
                }
                (Some(v), false) if !v.deleting && strategy != "Manual" => {
                    let _ = ctx
                        .store
                        .delete(ctx.k.vmi, Some(ns), name, &DeleteOptions::default());
                }
                _ => {}
            }
        }
        let vmi = ctx.store.view::<VmiView>(ctx.k.vmi, Some(ns), name);
        let ready = vmi.as_ref().is_some_and(|(_, v)| v.ready);
        let printable = if vm_meta.deleting {
            "Terminating"
        } else {
            match &vmi {
                None => "Stopped",
                Some((m, _)) if m.deleting => "Stopping",
                Some((_, v)) if v.migrating => "Migrating",
                Some((_, v)) if v.phase == "Running" => "Running",
                Some(_) => "Starting",
            }
        };
        let generation = &vm.generation;
        let _ = ctx.store.modify_status(ctx.k.vm, Some(ns), name, |status| {
            status["printableStatus"] = json!(printable);
            status["created"] = json!(vmi.is_some());
            status["ready"] = json!(ready);
            status["runStrategy"] = json!(strategy);
            status["desiredGeneration"] = generation.clone();
            status["observedGeneration"] = generation.clone();
            let (st, reason) = if ready {
                ("True", "")
            } else {
                (
                    "False",
                    if vmi.is_some() {
                        "GuestNotRunning"
                    } else {
                        "VMINotExists"
                    },
                )
            };
            set_condition(status, "Ready", st, reason, "");
        });
    }

    fn create_vmi(&self, vm: &Value) {
        let ctx = &self.ctx;
        let (ns, name) = ns_name(vm);
        let template = vm
            .pointer("/spec/template")
            .cloned()
            .unwrap_or_else(|| json!({}));
        let mut labels = template
            .pointer("/metadata/labels")
            .cloned()
            .unwrap_or_else(|| json!({}));
        labels["vm.kubevirt.io/name"] = json!(name);
        let mut meta = json!({
            "name": name,
            "namespace": ns,
            "labels": labels,
            "ownerReferences": [owner_ref(vm)],
            "finalizers": [VMI_FINALIZER],
        });
        if let Some(a) = template.pointer("/metadata/annotations") {
            meta["annotations"] = a.clone();
        }
        let vmi = json!({
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachineInstance",
            "metadata": meta,
            "spec": template.get("spec").cloned().unwrap_or_else(|| json!({})),
        });
        match ctx
            .store
            .create(ctx.k.vmi, Some(&ns), vmi, &WriteOptions::default())
        {
            Ok(w) => ctx.gt.record_at(
                w.at,
                GroundTruthKind::VmiCreated,
                ObjectRef::new("VirtualMachineInstance", &ns, &name),
                Value::Null,
            ),
            Err(e) => tracing::warn!(namespace = ns, vm = name, error = %e, "creating VMI failed"),
        }
    }

    fn set_phase(
        &self,
        ns: &str,
        name: &str,
        phase: &str,
        extra: impl FnOnce(&mut Value),
    ) -> Option<Instant> {
        let ctx = &self.ctx;
        let w = ctx
            .store
            .modify_status(ctx.k.vmi, Some(ns), name, |status| {
                push_phase(status, phase);
                extra(status);
            })
            .map_err(|e| tracing::warn!(namespace = ns, vmi = name, phase, error = %e, "VMI phase write failed"))
            .ok()?;
        ctx.gt.record_at(
            w.at,
            GroundTruthKind::VmiPhase,
            ObjectRef::new("VirtualMachineInstance", ns, name),
            json!({"phase": phase, "node": str_at(&w.status, "/nodeName")}),
        );
        Some(w.at)
    }

    fn wait_until(&self, key: (String, String), due: Due, k: Key) -> bool {
        let now = Due::now();
        if now >= due {
            return true;
        }
        self.lock().due.insert(key, due);
        self.queue.push_after(k, due - now, &self.ctx.shutdown);
        false
    }

    fn pick_node(&self, exclude: Option<&str>) -> Option<String> {
        let ctx = &self.ctx;
        let nodes: Vec<String> = ctx
            .store
            .metas(ctx.k.node, None)
            .iter()
            .map(|n| n.name.clone())
            .filter(|n| Some(n.as_str()) != exclude)
            .collect();
        let st = self.lock();
        nodes
            .into_iter()
            .min_by_key(|n| (st.load.get(n).copied().unwrap_or(0), n.clone()))
    }

    fn reconcile_vmi(&self, ns: &str, name: &str) {
        let ctx = &self.ctx;
        let key = (ns.to_string(), name.to_string());
        let Some((meta, vmi)) = ctx.store.view::<VmiView>(ctx.k.vmi, Some(ns), name) else {
            self.forget(&key);
            return;
        };
        if meta.deleting {
            if self.lock().finalizing.insert(key.clone()) {
                let kv = self.clone();
                self.tasks.spawn(async move { kv.finalize(key).await });
            }
            return;
        }
        let phase = vmi.phase.clone();
        let due = self.lock().due.get(&key).copied();
        let k = Key::Vmi(ns.to_string(), name.to_string());
        match phase.as_str() {
            "" => {
                let pending = self.set_phase(ns, name, "Pending", |s| {
                    s["guestOSInfo"] = json!({});
                    s["qosClass"] = json!("Burstable");
                });
                if pending.is_some() {
                    self.wait_until(key, Due::now() + self.step(), k);
                }
            }
            "Pending" => {
                let ready = self.wait_until(key.clone(), due.unwrap_or_else(Due::now), k.clone());
                let advanced = ready && self.set_phase(ns, name, "Scheduling", |_| {}).is_some();
                if advanced {
                    self.wait_until(key, Due::now() + self.step(), k);
                }
            }
            "Scheduling" => {
                if !self.wait_until(key.clone(), due.unwrap_or_else(Due::now), k.clone()) {
                    return;
                }
                let Some(node) = self.pick_node(None) else {
                    return;
                };
                if self
                    .set_phase(ns, name, "Scheduled", |s| s["nodeName"] = json!(node))
                    .is_some()
                {
                    let boot = {
                        let mut st = self.lock();
                        *st.load.entry(node.clone()).or_default() += 1;
                        st.placed.insert(key.clone(), node);
                        st.boot.sample()
                    };
                    self.wait_until(key, Due::now() + boot, k);
                }
            }
            "Scheduled" => {
                if !self.wait_until(key.clone(), due.unwrap_or_else(Due::now), k) {
                    return;
                }
                let Some((net_name, ips, network)) = self.addresses(ns, name, &vmi) else {
                    return;
                };
                let node = vmi.node.clone().unwrap_or_default();
                let udn = network.is_some();
                let Some(w) = ctx
                    .store
                    .modify_status(ctx.k.vmi, Some(ns), name, |status| {
                        push_phase(status, "Running");
                        let ip_strings: Vec<String> = ips.iter().map(ToString::to_string).collect();
                        status["interfaces"] = json!([{
                            "name": net_name,
                            "interfaceName": "eth0",
                            "ipAddress": ip_strings.first(),
                            "ipAddresses": ip_strings,
                            "mac": ips.first().map(mac_for),
                            "infoSource": "domain, guest-agent",
                            "podInterfaceName": if udn { "ovn-udn1" } else { "eth0" },
                            "queueCount": 1,
                        }]);
                        set_condition(status, "Ready", "True", "", "");
                        set_condition(status, "LiveMigratable", "True", "", "");
                        set_condition(status, "AgentConnected", "True", "", "");
                    })
                    .ok()
                else {
                    return;
                };
                let obj = ObjectRef::new("VirtualMachineInstance", ns, name);
                ctx.gt.record_at(
                    w.at,
                    GroundTruthKind::VmiPhase,
                    obj.clone(),
                    json!({"phase": "Running", "node": node}),
                );
                ctx.gt.record_at(w.at, GroundTruthKind::VmiRunning, obj, json!({"node": node, "ips": ips.iter().map(ToString::to_string).collect::<Vec<_>>()}));
                let addr = VmAddress {
                    namespace: ns.to_string(),
                    vm: name.to_string(),
                    node,
                    ips,
                    network,
                };
                self.lock().up.insert(key, addr.clone());
                let kv = self.clone();
                self.tasks.spawn(async move {
                    let r = kv.ctx.dataplane.vm_up(addr.clone()).await;
                    kv.record_dataplane(GroundTruthKind::DataplaneUp, &addr, None, r);
                });
            }
            _ => {}
        }
    }

    /// The VM's pod-network name, addresses and OVN network (None = default network), once known.
    fn addresses(
        &self,
        ns: &str,
        name: &str,
        vmi: &VmiView,
    ) -> Option<(String, Vec<IpAddr>, Option<String>)> {
        let ctx = &self.ctx;
        let net_name = vmi
            .pod_networks
            .first()
            .cloned()
            .unwrap_or_else(|| "default".to_string());
        let owner = format!("pod:{ns}/{name}");
        match primary_nad(ctx, ns) {
            Some((network, true)) => {
                let (_, claim) = ctx.store.view::<ClaimView>(
                    ctx.k.claim,
                    Some(ns),
                    &format!("{name}.{net_name}").to_lowercase(),
                )?;
                if claim.ips_allocated.as_deref() != Some("True") {
                    return None;
                }
                let ips: Vec<IpAddr> = claim
                    .ips
                    .as_ref()?
                    .iter()
                    .filter_map(|v| bare_ip(v))
                    .collect();
                Some((net_name, ips, Some(network)))
            }
            Some((network, false)) => {
                let params = cudn_for_network(ctx, &network)?;
                let mut a = ctx.ipam.lock().ok()?;
                let mut ips = Vec::new();
                for s in &params.subnets {
                    ips.push(a.allocate(
                        &network,
                        *s,
                        &params.excluded,
                        &params.gateways,
                        &owner,
                    )?);
                }
                Some((net_name, ips, Some(network)))
            }
            None => {
                let pool: ipnet::IpNet = ctx.config.default_pod_network.parse().ok()?;
                let gw = vec![bare_ip(&pool.network().to_string())?];
                let ip = ctx
                    .ipam
                    .lock()
                    .ok()?
                    .allocate("default", pool, &[], &gw, &owner)?;
                Some((net_name, vec![ip], None))
            }
        }
    }

    fn record_dataplane(
        &self,
        kind: GroundTruthKind,
        addr: &VmAddress,
        from: Option<&str>,
        result: Result<(), crate::dataplane::DataplaneError>,
    ) {
        let at = Instant::now();
        let obj = ObjectRef::new("VirtualMachineInstance", &addr.namespace, &addr.vm);
        let detail = json!({"node": addr.node, "from_node": from, "ips": addr.ips.iter().map(ToString::to_string).collect::<Vec<_>>()});
        match result {
            Ok(()) => self.ctx.gt.record_at(at, kind, obj, detail),
            Err(e) => self.ctx.gt.record_at(at, GroundTruthKind::DataplaneFailed, obj, json!({"operation": format!("{kind:?}"), "error": e.to_string(), "node": addr.node})),
        }
    }

    fn forget(&self, key: &(String, String)) {
        let (addr, node) = {
            let mut st = self.lock();
            st.due.remove(key);
            st.finalizing.remove(key);
            let node = st.placed.remove(key);
            if let Some(n) = &node
                && let Some(c) = st.load.get_mut(n)
            {
                *c = c.saturating_sub(1);
            }
            (st.up.remove(key), node)
        };
        let _ = node;
        if let Ok(mut a) = self.ctx.ipam.lock() {
            a.release(&format!("pod:{}/{}", key.0, key.1));
        }
        if let Some(addr) = addr {
            let kv = self.clone();
            self.tasks.spawn(async move {
                let r = kv.ctx.dataplane.vm_down(addr.clone()).await;
                kv.record_dataplane(GroundTruthKind::DataplaneDown, &addr, None, r);
            });
        }
    }

    async fn finalize(&self, key: (String, String)) {
        let addr = self.lock().up.remove(&key);
        if let Some(addr) = addr {
            let r = self.ctx.dataplane.vm_down(addr.clone()).await;
            self.record_dataplane(GroundTruthKind::DataplaneDown, &addr, None, r);
        }
        let ctx = &self.ctx;
        if let Ok(w) = ctx
            .store
            .modify(ctx.k.vmi, Some(&key.0), &key.1, false, |o| {
                if let Some(f) = o
                    .pointer_mut("/metadata/finalizers")
                    .and_then(Value::as_array_mut)
                {
                    f.retain(|x| x != VMI_FINALIZER);
                }
            })
        {
            ctx.gt.record_at(
                w.at,
                GroundTruthKind::VmiDeleted,
                ObjectRef::new("VirtualMachineInstance", &key.0, &key.1),
                Value::Null,
            );
        }
        self.forget(&key);
    }

    fn set_vmim_phase(&self, ns: &str, name: &str, phase: &str) -> bool {
        let ctx = &self.ctx;
        ctx.store
            .modify(ctx.k.vmim, Some(ns), name, true, |o| {
                let mut status = o.get("status").cloned().unwrap_or_else(|| json!({}));
                push_phase(&mut status, phase);
                o["status"] = status;
            })
            .is_ok()
    }

    fn reconcile_vmim(&self, ns: &str, name: &str) {
        let ctx = &self.ctx;
        let Some(vmim) = ctx.store.get_opt(ctx.k.vmim, Some(ns), name) else {
            return;
        };
        let phase = str_at(&vmim, "/status/phase").unwrap_or_default();
        let key = (ns.to_string(), name.to_string());
        if !phase.is_empty() || is_deleting(&vmim) || self.lock().migrating.contains(&key) {
            return;
        }
        self.set_vmim_phase(ns, name, "Pending");
        self.lock().migrating.insert(key.clone());
        let kv = self.clone();
        self.tasks.spawn(async move {
            if let Err(reason) = kv.migrate(&key, &vmim).await {
                tracing::warn!(
                    namespace = key.0,
                    migration = key.1,
                    reason,
                    "migration failed"
                );
                kv.set_vmim_phase(&key.0, &key.1, "Failed");
            }
            kv.lock().migrating.remove(&key);
        });
    }

    async fn migrate(&self, key: &(String, String), vmim: &Value) -> Result<(), String> {
        let ctx = &self.ctx;
        let (ns, name) = (key.0.as_str(), key.1.as_str());
        let vmi_name = str_at(vmim, "/spec/vmiName")
            .ok_or("spec.vmiName missing")?
            .to_string();
        let vmi = ctx
            .store
            .get_opt(ctx.k.vmi, Some(ns), &vmi_name)
            .ok_or("VMI does not exist")?;
        if str_at(&vmi, "/status/phase") != Some("Running") || is_deleting(&vmi) {
            return Err("VMI is not running".to_string());
        }
        let source = str_at(&vmi, "/status/nodeName")
            .unwrap_or_default()
            .to_string();
        let target = self
            .pick_node(Some(&source))
            .ok_or("no node available for migration")?;
        let step = self.step();
        for phase in ["Scheduling", "Scheduled", "PreparingTarget", "TargetReady"] {
            tokio::time::sleep(step).await;
            self.set_vmim_phase(ns, name, phase);
        }
        let uid = str_at(vmim, "/metadata/uid")
            .unwrap_or_default()
            .to_string();
        let target_pod = format!(
            "virt-launcher-{vmi_name}-{}",
            &uid.chars()
                .filter(char::is_ascii_alphanumeric)
                .take(5)
                .collect::<String>()
        );
        let started = now_rfc3339();
        let w = ctx
            .store
            .modify(ctx.k.vmi, Some(ns), &vmi_name, true, |o| {
                o["status"]["migrationState"] = json!({
                    "migrationUid": uid, "sourceNode": source, "targetNode": target, "targetPod": target_pod,
                    "startTimestamp": started, "mode": "PreCopy", "completed": false, "failed": false,
                });
            })
            .map_err(|e| e.to_string())?;
        self.set_vmim_phase(ns, name, "Running");
        let obj = ObjectRef::new("VirtualMachineInstance", ns, &vmi_name);
        ctx.gt.record_at(
            w.at,
            GroundTruthKind::MigrationStarted,
            obj.clone(),
            json!({"from_node": source, "to_node": target, "migration": name}),
        );
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(ctx.config.migration_ms)) => {}
            _ = ctx.shutdown.cancelled() => return Err("lab stopped".to_string()),
        }
        let switch_at = Instant::now();
        ctx.gt.record_at(
            switch_at,
            GroundTruthKind::MigrationSwitchover,
            obj.clone(),
            json!({"from_node": source, "to_node": target, "migration": name}),
        );
        let moved = {
            let mut st = self.lock();
            let moved = st.up.get_mut(&(ns.to_string(), vmi_name.clone())).map(|a| {
                a.node = target.clone();
                a.clone()
            });
            if let Some(c) = st.load.get_mut(&source) {
                *c = c.saturating_sub(1);
            }
            *st.load.entry(target.clone()).or_default() += 1;
            st.placed
                .insert((ns.to_string(), vmi_name.clone()), target.clone());
            moved
        };
        if let Some(addr) = moved {
            let r = ctx.dataplane.vm_moved(addr.clone(), source.clone()).await;
            self.record_dataplane(GroundTruthKind::DataplaneMoved, &addr, Some(&source), r);
        }
        let ended = now_rfc3339();
        let w = ctx
            .store
            .modify(ctx.k.vmi, Some(ns), &vmi_name, true, |o| {
                o["status"]["nodeName"] = json!(target);
                o["status"]["migrationState"]["completed"] = json!(true);
                o["status"]["migrationState"]["endTimestamp"] = json!(ended);
                o["status"]["migrationState"]["targetNodeDomainReadyTimestamp"] = json!(ended);
            })
            .map_err(|e| e.to_string())?;
        self.set_vmim_phase(ns, name, "Succeeded");
        ctx.gt.record_at(
            w.at,
            GroundTruthKind::MigrationCompleted,
            obj,
            json!({"from_node": source, "to_node": target, "migration": name}),
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! The KubeVirt controller alone on the in-process store, in paused time: phase steps and boot
    //! delays pass in virtual time, so the tests can assert how long each took.

    use super::*;
    use crate::LabConfig;
    use crate::boot::BootDelay;
    use crate::controllers::bench::{self, Bench};
    use crate::controllers::{condition_status, owned_by};

    const STEP: Duration = Duration::from_secs(1);
    const BOOT: Duration = Duration::from_secs(5);
    const MIGRATION: Duration = Duration::from_secs(3);
    const NS: &str = "default";

    async fn kubevirt() -> Bench {
        let b = bench::start(LabConfig {
            phase_step_ms: STEP.as_millis() as u64,
            boot_delay: BootDelay::Fixed {
                ms: BOOT.as_millis() as u64,
            },
            migration_ms: MIGRATION.as_millis() as u64,
            ..LabConfig::default()
        })
        .await;
        spawn(b.ctx.clone(), &b.tasks);
        b
    }

    fn vm(name: &str, run_strategy: &str) -> Value {
        json!({
            "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
            "metadata": {"name": name, "namespace": NS, "labels": {"vmbgp.io/run": "t"}},
            "spec": {"runStrategy": run_strategy, "template": {
                "metadata": {"labels": {"vmbgp.io/run": "t"}},
                "spec": {
                    "domain": {"devices": {"interfaces": [{"name": "default", "binding": {"name": "l2bridge"}}]},
                        "resources": {"requests": {"memory": "1Gi"}}},
                    "networks": [{"name": "default", "pod": {}}],
                }}},
        })
    }

    async fn running_vmi(b: &Bench, name: &str) -> Arc<Value> {
        b.until(
            "kubevirt.io/v1",
            "VirtualMachineInstance",
            Some(NS),
            name,
            |o| o["status"]["phase"] == "Running",
        )
        .await
    }

    fn phases(o: &Value) -> Vec<String> {
        o["status"]["phaseTransitionTimestamps"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| p["phase"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn recorded(b: &Bench, kind: GroundTruthKind) -> usize {
        b.lab
            .ground_truth()
            .events()
            .iter()
            .filter(|e| e.event == kind)
            .count()
    }

    #[tokio::test(start_paused = true)]
    async fn a_running_vm_gets_a_vmi_that_goes_through_its_phases() {
        let b = kubevirt().await;
        let start = Due::now();
        b.create(b.ctx.k.vm, Some(NS), vm("vm-1", "Always"));
        let vmi = running_vmi(&b, "vm-1").await;
        assert_eq!(
            start.elapsed(),
            2 * STEP + BOOT,
            "Pending and Scheduling take a step each, then the boot"
        );
        assert_eq!(
            phases(&vmi),
            ["Pending", "Scheduling", "Scheduled", "Running"]
        );
        let owner = b.get(b.ctx.k.vm, Some(NS), "vm-1").expect("vm");
        assert!(owned_by(
            &vmi,
            str_at(&owner, "/metadata/uid").expect("uid")
        ));
        assert_eq!(vmi["metadata"]["finalizers"], json!([VMI_FINALIZER]));
        assert_eq!(vmi["metadata"]["labels"]["vm.kubevirt.io/name"], "vm-1");
        assert_eq!(
            vmi["metadata"]["labels"]["vmbgp.io/run"], "t",
            "from the template"
        );
        assert!(
            str_at(&vmi, "/status/nodeName").is_some_and(|n| n.starts_with("node-")),
            "{}",
            vmi["status"]
        );
        let ip: IpAddr = str_at(&vmi, "/status/interfaces/0/ipAddress")
            .and_then(|ip| ip.parse().ok())
            .expect("an interface address");
        let pool: ipnet::IpNet = b.ctx.config.default_pod_network.parse().expect("pool");
        assert!(pool.contains(&ip), "{ip} from the default pod network");
        assert_eq!(
            vmi["status"]["interfaces"][0]["mac"],
            mac_for(&ip),
            "the MAC follows the address"
        );
        assert_eq!(condition_status(&vmi, "Ready"), Some("True"));

        let vm = b
            .until("kubevirt.io/v1", "VirtualMachine", Some(NS), "vm-1", |o| {
                o["status"]["printableStatus"] == "Running"
            })
            .await;
        assert_eq!(vm["status"]["ready"], true);
        assert_eq!(condition_status(&vm, "Ready"), Some("True"));
        assert_eq!(recorded(&b, GroundTruthKind::VmiCreated), 1);
        assert_eq!(recorded(&b, GroundTruthKind::VmiRunning), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn vmis_are_spread_over_the_nodes() {
        let b = kubevirt().await;
        for i in 1..=3 {
            b.create(b.ctx.k.vm, Some(NS), vm(&format!("vm-{i}"), "Always"));
        }
        let mut nodes = Vec::new();
        for i in 1..=3 {
            let vmi = running_vmi(&b, &format!("vm-{i}")).await;
            nodes.push(str_at(&vmi, "/status/nodeName").expect("node").to_string());
        }
        nodes.sort();
        assert_eq!(nodes, ["node-1", "node-2", "node-3"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_halted_vm_is_stopped_and_halting_a_running_one_removes_its_vmi() {
        let b = kubevirt().await;
        b.create(b.ctx.k.vm, Some(NS), vm("idle", "Halted"));
        let idle = b
            .until("kubevirt.io/v1", "VirtualMachine", Some(NS), "idle", |o| {
                o["status"]["printableStatus"] == "Stopped"
            })
            .await;
        assert_eq!(idle["status"]["created"], false);
        assert_eq!(idle["status"]["ready"], false);
        assert!(b.get(b.ctx.k.vmi, Some(NS), "idle").is_none());

        b.create(b.ctx.k.vm, Some(NS), vm("busy", "Always"));
        running_vmi(&b, "busy").await;
        b.ctx
            .store
            .modify(b.ctx.k.vm, Some(NS), "busy", false, |o| {
                o["spec"]["runStrategy"] = json!("Halted");
            })
            .expect("halted");
        b.until_gone(b.ctx.k.vmi, Some(NS), "busy").await;
        b.until("kubevirt.io/v1", "VirtualMachine", Some(NS), "busy", |o| {
            o["status"]["printableStatus"] == "Stopped"
        })
        .await;
        assert_eq!(recorded(&b, GroundTruthKind::VmiDeleted), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_deleted_vmi_is_finalized_and_its_vm_starts_a_new_one() {
        let b = kubevirt().await;
        b.create(b.ctx.k.vm, Some(NS), vm("vm-1", "Always"));
        let first = running_vmi(&b, "vm-1").await;
        let first_uid = str_at(&first, "/metadata/uid").expect("uid").to_string();
        b.delete(b.ctx.k.vmi, Some(NS), "vm-1");
        let second = b
            .until(
                "kubevirt.io/v1",
                "VirtualMachineInstance",
                Some(NS),
                "vm-1",
                |o| o["metadata"]["uid"] != first_uid.as_str() && o["status"]["phase"] == "Running",
            )
            .await;
        assert_eq!(
            phases(&second),
            ["Pending", "Scheduling", "Scheduled", "Running"],
            "a new VMI starts from the beginning"
        );
        assert_eq!(recorded(&b, GroundTruthKind::VmiDeleted), 1);
        assert_eq!(recorded(&b, GroundTruthKind::VmiCreated), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_migration_moves_the_vmi_to_another_node() {
        let b = kubevirt().await;
        b.create(b.ctx.k.vm, Some(NS), vm("vm-1", "Always"));
        let before = running_vmi(&b, "vm-1").await;
        let source = str_at(&before, "/status/nodeName")
            .expect("node")
            .to_string();
        let ip = before["status"]["interfaces"][0]["ipAddress"].clone();
        let start = Due::now();
        b.create(
            b.ctx.k.vmim,
            Some(NS),
            json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstanceMigration",
                "metadata": {"name": "mig-1", "namespace": NS}, "spec": {"vmiName": "vm-1"}}),
        );
        let vmim = b
            .until(
                "kubevirt.io/v1",
                "VirtualMachineInstanceMigration",
                Some(NS),
                "mig-1",
                |o| o["status"]["phase"] == "Succeeded",
            )
            .await;
        assert_eq!(
            start.elapsed(),
            4 * STEP + MIGRATION,
            "four steps to TargetReady, then the migration itself"
        );
        assert_eq!(
            phases(&vmim),
            [
                "Pending",
                "Scheduling",
                "Scheduled",
                "PreparingTarget",
                "TargetReady",
                "Running",
                "Succeeded"
            ]
        );
        let after = b.get(b.ctx.k.vmi, Some(NS), "vm-1").expect("vmi");
        let target = str_at(&after, "/status/nodeName").expect("node");
        assert_ne!(target, source);
        assert_eq!(
            after["status"]["migrationState"]["sourceNode"],
            source.as_str()
        );
        assert_eq!(after["status"]["migrationState"]["targetNode"], target);
        assert_eq!(after["status"]["migrationState"]["completed"], true);
        assert_eq!(
            after["status"]["interfaces"][0]["ipAddress"], ip,
            "the VM keeps its address"
        );
        assert_eq!(recorded(&b, GroundTruthKind::MigrationSwitchover), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_migration_of_a_vmi_that_is_not_running_fails() {
        let b = kubevirt().await;
        b.create(
            b.ctx.k.vmim,
            Some(NS),
            json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstanceMigration",
                "metadata": {"name": "mig-1", "namespace": NS}, "spec": {"vmiName": "nothing"}}),
        );
        let vmim = b
            .until(
                "kubevirt.io/v1",
                "VirtualMachineInstanceMigration",
                Some(NS),
                "mig-1",
                |o| o["status"]["phase"] == "Failed",
            )
            .await;
        assert_eq!(phases(&vmim), ["Pending", "Failed"]);
    }
}
