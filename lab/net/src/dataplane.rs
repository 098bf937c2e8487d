//! The VM dataplane: a VM address is a /32 on `lo` of the vmhost netns of the node where its VMI runs.
//!
//! Like OVN-K's Geneve overlay, traffic for a VM that reaches *any* node (ECMP from ext) is delivered
//! wherever the VM runs: the VM's node routes the /32 to its vmhost (`via 198.18.4.x dev vh0`), every
//! other node routes it to the VM's node over the shared segment (`via 198.18.0.<n> dev eth0`). A move
//! (migration switch-over) first installs the address and routes at the target, then removes the
//! address from the source, so the switch-over costs one batch round (a few ms).
//!
//! The silent-VM fault ([`Dataplane::set_silent_vms`]) withholds a VM's address: the node routes are
//! installed as usual, but the vmhost gets `blackhole <addr>/32` instead of the address on `lo`, so
//! probes are dropped there (rather than looping back through the vmhost's default route) and the
//! guest makes no egress call. It tests that a VM that never becomes reachable fails the run's
//! threshold, not the harness.
//!
//! Guest mode ([`GuestMode`], migration runs): a VM is its own netns linked to its node's vmhost,
//! and a move carries the link to the target vmhost instead of the address (see [`crate::guest`]);
//! a guest's services and egress call run in the guest.
//!
//! Changes are queued to one worker that drains everything pending and applies it as one `ip -batch`
//! per namespace (all namespaces in parallel), so one VM costs one round and 1,000 VMs cost about the
//! same. Each caller gets its own result.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::cmd::run_ip_batch;
use crate::error::{Error, Result};
use crate::guest;
use crate::names::{LabNames, node_address, node_name, vmhost_link_addresses};
use crate::net_ground_truth::{GroundTruthSink, NetEvent, record_at, record_now};
use crate::state::StateStore;
use crate::topology::{UPLINK, VMHOST_LINK};
use crate::vmhost::{VmPorts, egress_call, start_services};

/// Most changes applied in one round.
const MAX_BATCH: usize = 8192;

/// Where a VM address is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Placement {
    /// Node index (1-based).
    pub node: u16,
    /// `namespace/name` of the VM, when known.
    pub vm: Option<String>,
    /// The address is withheld (silent VM): a blackhole on the vmhost instead of the address.
    pub withheld: bool,
    /// Guest mode: the VM is its own netns (named by [`crate::guest::guest_netns`]).
    pub guest: bool,
}

/// What a change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Change {
    Added,
    Moved { from: u16 },
    Removed { from: u16 },
    Unchanged,
}

#[derive(Debug)]
enum OpKind {
    Place { node: u16 },
    Remove,
}

#[derive(Debug)]
struct Op {
    address: Ipv4Addr,
    vm: Option<String>,
    kind: OpKind,
    done: oneshot::Sender<Result<Change>>,
}

/// Egress settings: where a VM's guest sends its egress GET when it first appears.
#[derive(Debug, Clone)]
pub struct EgressConfig {
    pub url: String,
    /// How long the guest keeps retrying (the return route needs BGP to converge first).
    pub retry_for: Duration,
}

/// Guest mode's needs: the state file (a guest netns is recorded before it exists, so teardown
/// finds it whatever happens) and the ports the guest's services listen on.
#[derive(Debug, Clone)]
pub struct GuestMode {
    pub store: Arc<StateStore>,
    pub ports: VmPorts,
}

/// The dataplane of one lab.
#[derive(Debug, Clone)]
pub struct Dataplane {
    tx: mpsc::UnboundedSender<Op>,
    placements: Arc<Mutex<BTreeMap<Ipv4Addr, Placement>>>,
    silent: Arc<Mutex<Vec<String>>>,
    nodes: u16,
}

impl Dataplane {
    /// Starts the worker. Must be called within a tokio runtime.
    pub fn start(
        names: LabNames,
        nodes: u16,
        truth: Arc<dyn GroundTruthSink>,
        egress: Option<EgressConfig>,
        guests: Option<GuestMode>,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let placements = Arc::new(Mutex::new(BTreeMap::new()));
        let silent = Arc::new(Mutex::new(Vec::new()));
        let worker = Worker {
            names,
            nodes,
            truth,
            egress,
            guests,
            guest_services: BTreeMap::new(),
            placements: placements.clone(),
            silent: silent.clone(),
        };
        tokio::spawn(worker.run(rx));
        Dataplane {
            tx,
            placements,
            silent,
            nodes,
        }
    }

    /// The silent-VM fault: VMs whose addresses are withheld from now on, by `name` or
    /// `namespace/name`. Applies to later placements (an address already placed keeps its state).
    pub fn set_silent_vms(&self, vms: Vec<String>) {
        if let Ok(mut s) = self.silent.lock() {
            *s = vms;
        }
    }

    /// Places (or moves) a VM address onto node `node` (1-based). Completes when the address answers there.
    pub async fn place(&self, address: Ipv4Addr, node: u16, vm: Option<String>) -> Result<Change> {
        if node == 0 || node > self.nodes {
            return Err(Error::Unknown {
                what: "node",
                name: node_name(node),
            });
        }
        self.submit(address, vm, OpKind::Place { node }).await
    }

    /// Removes a VM address (a no-op when it is not placed).
    pub async fn remove(&self, address: Ipv4Addr) -> Result<Change> {
        self.submit(address, None, OpKind::Remove).await
    }

    /// Places many addresses at once (each `(address, node)`); all complete in the same rounds.
    pub async fn place_many(&self, items: &[(Ipv4Addr, u16)]) -> Result<Vec<Change>> {
        let futures = items.iter().map(|(a, n)| self.place(*a, *n, None));
        futures::future::join_all(futures)
            .await
            .into_iter()
            .collect()
    }

    /// Removes many addresses at once.
    pub async fn remove_many(&self, addresses: &[Ipv4Addr]) -> Result<Vec<Change>> {
        let futures = addresses.iter().map(|a| self.remove(*a));
        futures::future::join_all(futures)
            .await
            .into_iter()
            .collect()
    }

    /// Where every VM address currently is.
    pub fn placements(&self) -> BTreeMap<Ipv4Addr, Placement> {
        self.placements
            .lock()
            .map(|p| p.clone())
            .unwrap_or_default()
    }

    async fn submit(&self, address: Ipv4Addr, vm: Option<String>, kind: OpKind) -> Result<Change> {
        let (done, rx) = oneshot::channel();
        self.tx
            .send(Op {
                address,
                vm,
                kind,
                done,
            })
            .map_err(|_| Error::WorkerGone {
                worker: "dataplane",
            })?;
        rx.await.map_err(|_| Error::WorkerGone {
            worker: "dataplane",
        })?
    }
}

/// When a dataplane round's add phase started and ended.
#[derive(Debug, Clone, Copy)]
struct Round {
    started: Instant,
    at: Instant,
}

struct Worker {
    names: LabNames,
    nodes: u16,
    truth: Arc<dyn GroundTruthSink>,
    egress: Option<EgressConfig>,
    guests: Option<GuestMode>,
    /// Each guest's HTTP responder and sink, stopped when the guest goes.
    guest_services: BTreeMap<Ipv4Addr, Vec<tokio::task::JoinHandle<()>>>,
    placements: Arc<Mutex<BTreeMap<Ipv4Addr, Placement>>>,
    silent: Arc<Mutex<Vec<String>>>,
}

/// Whether `vm` (`namespace/name`) is named in `silent`, as `namespace/name` or as `name`.
fn is_silent(silent: &[String], vm: Option<&str>) -> bool {
    let Some(vm) = vm else {
        return false;
    };
    let name = vm.rsplit_once('/').map_or(vm, |(_, n)| n);
    silent.iter().any(|s| s == vm || s == name)
}

/// The vmhost line that puts an address in place: on `lo`, or a blackhole when withheld.
fn vmhost_add_line(a: Ipv4Addr, withheld: bool) -> String {
    if withheld {
        format!("route replace blackhole {a}/32")
    } else {
        format!("addr replace {a}/32 dev lo")
    }
}

/// The vmhost line that undoes [`vmhost_add_line`].
fn vmhost_del_line(a: Ipv4Addr, withheld: bool) -> String {
    if withheld {
        format!("route del blackhole {a}/32")
    } else {
        format!("addr del {a}/32 dev lo")
    }
}

/// Lines per netns in one phase, each tagged with the op it belongs to.
#[derive(Default)]
struct Phase {
    batches: BTreeMap<String, Vec<(usize, String)>>,
}

impl Phase {
    fn push(&mut self, netns: String, op: usize, line: String) {
        self.batches.entry(netns).or_default().push((op, line));
    }
}

impl Worker {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Op>) {
        while let Some(first) = rx.recv().await {
            let mut ops = vec![first];
            while ops.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(op) => ops.push(op),
                    Err(_) => break,
                }
            }
            self.apply(ops).await;
        }
    }

    async fn apply(&mut self, ops: Vec<Op>) {
        let mut current = self
            .placements
            .lock()
            .map(|p| p.clone())
            .unwrap_or_default();
        let silent = self.silent.lock().map(|s| s.clone()).unwrap_or_default();
        // Guest mode needs two rounds before the usual ones: guest netns created (root netns),
        // then links created or moved (vmhosts).
        let mut create = Phase::default();
        let mut link = Phase::default();
        let mut add = Phase::default();
        let mut del = Phase::default();
        let mut changes = Vec::with_capacity(ops.len());
        for (i, op) in ops.iter().enumerate() {
            let a = op.address;
            let before = current.get(&a).cloned();
            let (change, withheld) = match (&op.kind, &before) {
                (OpKind::Place { node }, Some(p)) if p.node == *node => {
                    (Change::Unchanged, p.withheld)
                }
                (OpKind::Place { node }, prev) => {
                    let k = *node;
                    let vm = op
                        .vm
                        .clone()
                        .or_else(|| prev.as_ref().and_then(|p| p.vm.clone()));
                    let withheld = is_silent(&silent, vm.as_deref());
                    // A guest is created once and then only moved; a withheld VM gets none.
                    let guest = match prev {
                        Some(p) => p.guest,
                        None => self.guests.is_some() && !withheld,
                    };
                    if guest {
                        let netns = guest::guest_netns(&self.names, a);
                        match prev {
                            None => {
                                if let Some(mode) = &self.guests
                                    && let Err(e) =
                                        mode.store.record_netns(std::slice::from_ref(&netns))
                                {
                                    tracing::warn!(%a, error = %e, "recording the guest netns");
                                }
                                create.push(String::new(), i, guest::create_line(&netns));
                                link.push(
                                    self.names.vmhost_netns(k),
                                    i,
                                    guest::link_line(a, &netns),
                                );
                                for line in guest::guest_lines(a) {
                                    add.push(netns.clone(), i, line);
                                }
                            }
                            Some(p) => link.push(
                                self.names.vmhost_netns(p.node),
                                i,
                                guest::move_line(a, &self.names.vmhost_netns(k)),
                            ),
                        }
                        for line in guest::attach_lines(a) {
                            add.push(self.names.vmhost_netns(k), i, line);
                        }
                    } else {
                        add.push(self.names.vmhost_netns(k), i, vmhost_add_line(a, withheld));
                    }
                    for j in 1..=self.nodes {
                        let line = if j == k {
                            let (_, vmhost_side) = vmhost_link_addresses(k);
                            format!("route replace {a}/32 via {vmhost_side} dev {VMHOST_LINK}")
                        } else {
                            format!("route replace {a}/32 via {} dev {UPLINK}", node_address(k))
                        };
                        add.push(self.names.router_netns(crate::Router::Node(j)), i, line);
                    }
                    current.insert(
                        a,
                        Placement {
                            node: k,
                            vm,
                            withheld,
                            guest,
                        },
                    );
                    match prev {
                        Some(p) => {
                            // A guest's link left the source with its route; a lo address stays.
                            if !p.guest {
                                del.push(
                                    self.names.vmhost_netns(p.node),
                                    i,
                                    vmhost_del_line(a, p.withheld),
                                );
                            }
                            (Change::Moved { from: p.node }, withheld)
                        }
                        None => (Change::Added, withheld),
                    }
                }
                (OpKind::Remove, None) => (Change::Unchanged, false),
                (OpKind::Remove, Some(p)) => {
                    if p.guest {
                        del.push(
                            String::new(),
                            i,
                            guest::delete_line(&guest::guest_netns(&self.names, a)),
                        );
                    } else {
                        del.push(
                            self.names.vmhost_netns(p.node),
                            i,
                            vmhost_del_line(a, p.withheld),
                        );
                    }
                    for j in 1..=self.nodes {
                        del.push(
                            self.names.router_netns(crate::Router::Node(j)),
                            i,
                            format!("route del {a}/32"),
                        );
                    }
                    current.remove(&a);
                    (Change::Removed { from: p.node }, p.withheld)
                }
            };
            changes.push((change, before, withheld));
        }

        let mut errors: BTreeMap<usize, String> = BTreeMap::new();
        // Additions answer once the add phase is done (the del phase only removes old copies).
        let started = Instant::now();
        run_phase(create, &mut errors).await;
        run_phase(link, &mut errors).await;
        run_phase(add, &mut errors).await;
        let added = Round {
            at: Instant::now(),
            started,
        };
        run_phase(del, &mut errors).await;
        if let Ok(mut p) = self.placements.lock() {
            *p = current;
        }

        for (i, (op, (change, before, withheld))) in ops.into_iter().zip(changes).enumerate() {
            let placed_guest = self.guests.is_some()
                && self
                    .placements
                    .lock()
                    .map(|p| p.get(&op.address).is_some_and(|p| p.guest))
                    .unwrap_or(false);
            match change {
                Change::Added if placed_guest && !errors.contains_key(&i) => {
                    self.start_guest_services(op.address).await;
                }
                Change::Removed { .. } => {
                    for task in self.guest_services.remove(&op.address).unwrap_or_default() {
                        task.abort();
                    }
                }
                _ => {}
            }
            let result = match errors.remove(&i) {
                Some(detail) => Err(Error::Dataplane {
                    op: "placing",
                    address: op.address.to_string(),
                    detail,
                }),
                None => Ok(change),
            };
            if result.is_ok() {
                self.record(&op, change, before.as_ref(), withheld, added);
            }
            let _ = op.done.send(result);
        }
    }

    /// `withheld`: the address is (now) withheld, so an addition is recorded as withheld and the
    /// guest makes no egress call. A move keeps `AddressMoved` (the placement moved either way).
    fn record(
        &self,
        op: &Op,
        change: Change,
        before: Option<&Placement>,
        withheld: bool,
        added: Round,
    ) {
        let applying_ns =
            u64::try_from(added.at.saturating_duration_since(added.started).as_nanos())
                .unwrap_or(u64::MAX);
        let vm = op.vm.clone().or_else(|| before.and_then(|p| p.vm.clone()));
        let event = match (change, &op.kind) {
            (Change::Added, OpKind::Place { node }) if withheld => NetEvent::AddressWithheld {
                address: op.address,
                node: node_name(*node),
                vm,
            },
            (Change::Added, OpKind::Place { node }) => {
                self.spawn_egress(op.address, *node);
                NetEvent::AddressAdded {
                    address: op.address,
                    node: node_name(*node),
                    vm,
                    applying_ns,
                }
            }
            (Change::Moved { from }, OpKind::Place { node }) => NetEvent::AddressMoved {
                address: op.address,
                from: node_name(from),
                to: node_name(*node),
                vm,
                applying_ns,
            },
            (Change::Removed { from }, _) => NetEvent::AddressRemoved {
                address: op.address,
                node: node_name(from),
                vm,
            },
            _ => return,
        };
        match event {
            NetEvent::AddressAdded { .. } | NetEvent::AddressMoved { .. } => {
                record_at(self.truth.as_ref(), added.at, event);
            }
            _ => record_now(self.truth.as_ref(), event),
        }
    }

    /// A guest's HTTP responder and TCP sink, in its own netns.
    async fn start_guest_services(&mut self, address: Ipv4Addr) {
        let Some(mode) = &self.guests else { return };
        let netns = guest::guest_netns(&self.names, address);
        match start_services(&netns, &format!("guest {address}"), mode.ports).await {
            Ok(tasks) => {
                self.guest_services.insert(address, tasks);
            }
            Err(e) => tracing::warn!(%address, error = %e, "starting the guest's services"),
        }
    }

    /// The guest's egress call after boot: bounded retries until the return route exists.
    fn spawn_egress(&self, address: Ipv4Addr, node: u16) {
        let Some(egress) = self.egress.clone() else {
            return;
        };
        let netns = if self.guests.is_some() {
            guest::guest_netns(&self.names, address)
        } else {
            self.names.vmhost_netns(node)
        };
        let truth = self.truth.clone();
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + egress.retry_for;
            let status = loop {
                match egress_call(&netns, address, &egress.url, Duration::from_secs(2)).await {
                    Ok(code) => break code.to_string(),
                    Err(e) if tokio::time::Instant::now() >= deadline => break e.to_string(),
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            };
            record_now(
                truth.as_ref(),
                NetEvent::EgressCall {
                    address,
                    url: egress.url,
                    status,
                },
            );
        });
    }
}

async fn run_phase(phase: Phase, errors: &mut BTreeMap<usize, String>) {
    // The empty name is the root netns (guest netns creation and deletion).
    let runs = phase.batches.into_iter().map(|(netns, lines)| async move {
        let text: String = lines.iter().map(|(_, l)| format!("{l}\n")).collect();
        let target = (!netns.is_empty()).then_some(netns.as_str());
        let outcome = run_ip_batch(target, &text, true).await;
        (netns, lines, outcome)
    });
    for (netns, lines, outcome) in futures::future::join_all(runs).await {
        match outcome {
            Ok(o) => {
                for (line_no, message) in o.failed_lines {
                    if let Some((op, line)) = lines.get(line_no.saturating_sub(1)) {
                        errors
                            .entry(*op)
                            .or_insert_with(|| format!("{netns}: `{line}`: {message}"));
                    }
                }
            }
            Err(e) => {
                for (op, _) in &lines {
                    errors.entry(*op).or_insert_with(|| e.to_string());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silent_vms_match_by_name_or_namespace_and_name() {
        let silent = vec!["vm-a".to_string(), "ns2/vm-b".to_string()];
        assert!(is_silent(&silent, Some("ns1/vm-a")));
        assert!(is_silent(&silent, Some("vm-a")));
        assert!(is_silent(&silent, Some("ns2/vm-b")));
        assert!(!is_silent(&silent, Some("ns1/vm-b")));
        assert!(!is_silent(&silent, Some("ns1/vm-ab")));
        assert!(!is_silent(&silent, None));
        assert!(!is_silent(&[], Some("ns1/vm-a")));
    }

    #[test]
    fn withheld_addresses_are_blackholes_on_the_vmhost() {
        let a = Ipv4Addr::new(198, 19, 1, 10);
        assert_eq!(
            vmhost_add_line(a, false),
            "addr replace 198.19.1.10/32 dev lo"
        );
        assert_eq!(vmhost_del_line(a, false), "addr del 198.19.1.10/32 dev lo");
        assert_eq!(
            vmhost_add_line(a, true),
            "route replace blackhole 198.19.1.10/32"
        );
        assert_eq!(
            vmhost_del_line(a, true),
            "route del blackhole 198.19.1.10/32"
        );
    }
}
