//! Host-route convergence (`bgp.hostRoutes`, profile `vm-bgp-host-routes`): each VM's /32 as the
//! external router sees it, advertised by the host-route controller from the node hosting the VM.
//!
//! - Advertise, from t0 = the harness seeing the VMI Running with its address and node: to the /32's
//!   first announcement in ext's Adj-RIB-In (BMP) carrying the host-route community; to the /32 in
//!   ext's kernel FIB; to the FIB route with the hosting node as its only next hop.
//! - Withdraw, from the VM's delete request: to the /32 gone from the Adj-RIB-In (every peer, either
//!   view) and from the FIB.
//! - Stale-route window: how long the FIB still routed the /32 after the VMI was gone (the VM ran
//!   nowhere any more).
//! - Policy: the communities of the first announcement (BMP) and the local-pref ext's inbound
//!   policy gave the best path (its BGP table, read once before cleanup: BMP cannot carry it).
//! - Per node, from the same table read: the host-route prefixes via the node and the addresses they
//!   cover, next to the run's VMs on the node (aggregation: fewer prefixes, same addresses), and the
//!   controller's own figures from its `/metrics`, read at the same time.
//!
//! Every /32 change is recorded as it arrives, whether or not its VM's address is known yet (the
//! controller and the harness read the same VMI update; either may be first); values are computed
//! from those histories when the run collects.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net};
use vmbgp_bgp::bmp::{BmpEvent, BmpEventKind, BmpMessage, PeerBook, Policy};
use vmbgp_bgp::fib::{FibEvent, RouteChangeKind};
use vmbgp_bgp::table::BgpTable;
use vmbgp_reporters::measured::{Measured, Timing};
use vmbgp_reporters::samples::{
    HostRouteControllerSample, HostRouteNodeSample, MeasurementKind, RouteConvergenceSample,
    RouteScope, Samples, StartInstant,
};

use super::route_convergence::{STAMP_RESOLUTION, Sources};
use super::{Batch, Measurement, ObjectKey, Observation, vmi_ipv4};
use crate::clock::MonoStamp;
use crate::config::VmSpec;
use crate::controller_metrics::ControllerFigures;
use crate::kube::apply::Verb;
use crate::kube::watch::{Change, WatchMessage};
use crate::kube::{VIRTUAL_MACHINE, VMI};

/// The value part of the host-route community, `<peerAsn>:200`: what the controller tags /32s
/// with by default and what the external router's policy (`workloads/external-frr.conf.j2`, list
/// VMBGP-LP250) gives local-pref 250.
pub const HOST_ROUTE_COMMUNITY_VALUE: u32 = 200;

/// What the external router saw of one /32, in arrival order.
#[derive(Debug, Default)]
struct PrefixHistory {
    /// Announcements: when, and the communities they carried.
    announced: Vec<(MonoStamp, Vec<String>)>,
    /// Instants the last (peer, view) holding the /32 withdrew it.
    withdrawn: Vec<MonoStamp>,
    /// (peer, view) pairs holding it now.
    holding: BTreeSet<(IpAddr, Policy)>,
    /// FIB changes: when, and the next hops (empty: removed).
    fib: Vec<(MonoStamp, Option<Vec<Ipv4Addr>>)>,
}

impl PrefixHistory {
    fn in_fib(&self) -> bool {
        self.fib.last().is_some_and(|(_, hops)| hops.is_some())
    }
}

#[derive(Debug)]
struct VmRoute {
    spec: VmSpec,
    address: Option<Ipv4Addr>,
    node: Option<String>,
    /// The VMI first seen Running with its address and node: t0, and that node.
    running: Option<(MonoStamp, String)>,
    delete: Option<(MonoStamp, Duration, Option<String>)>,
    vmi_gone: Option<MonoStamp>,
}

/// The expected tagging, and where each node is reached.
#[derive(Debug, Clone)]
pub struct HostRouteExpectations {
    /// The community the controller puts on host routes (`<peerAsn>:200`).
    pub community: String,
    /// Node name → the address the external router routes to it (its InternalIP).
    pub node_addresses: BTreeMap<String, Ipv4Addr>,
    /// The run's network subnets: a longer prefix inside one is a host route (or an aggregate).
    pub subnets: Vec<Ipv4Net>,
}

#[derive(Debug)]
pub struct HostRoutes {
    /// False in subnet mode: nothing is recorded and no sample is made.
    enabled: bool,
    expect: HostRouteExpectations,
    sources: Sources,
    vms: BTreeMap<ObjectKey, VmRoute>,
    prefixes: BTreeMap<Ipv4Addr, PrefixHistory>,
    book: PeerBook,
    bmp_connected: bool,
    fib_overrun: bool,
    /// ext's BGP table, read once before cleanup (when), or why it was not.
    table: Option<(MonoStamp, Result<BgpTable, String>)>,
    /// The run's running VMs per node when the table was read (cleanup deletes them later).
    vms_at_read: BTreeMap<String, u64>,
    /// The controller's `/metrics`, scraped then too, or why not.
    controller: Option<(MonoStamp, Result<ControllerFigures, String>)>,
}

fn host_address(prefix: IpNet) -> Option<Ipv4Addr> {
    match prefix {
        IpNet::V4(net) if net.prefix_len() == 32 => Some(net.addr()),
        _ => None,
    }
}

impl HostRoutes {
    pub fn new(vms: &[VmSpec], expect: HostRouteExpectations, sources: Sources) -> Self {
        let vms = vms
            .iter()
            .map(|vm| {
                let route = VmRoute {
                    spec: vm.clone(),
                    address: None,
                    node: None,
                    running: None,
                    delete: None,
                    vmi_gone: None,
                };
                ((vm.namespace.clone(), vm.name.clone()), route)
            })
            .collect();
        HostRoutes {
            enabled: true,
            expect,
            sources,
            vms,
            prefixes: BTreeMap::new(),
            book: PeerBook::new(),
            bmp_connected: false,
            fib_overrun: false,
            table: None,
            vms_at_read: BTreeMap::new(),
            controller: None,
        }
    }

    /// Subnet mode: no host routes to measure.
    pub fn disabled() -> Self {
        let mut off = HostRoutes::new(
            &[],
            HostRouteExpectations {
                community: String::new(),
                node_addresses: BTreeMap::new(),
                subnets: Vec::new(),
            },
            Sources::default(),
        );
        off.enabled = false;
        off
    }

    /// Whether this run measures host routes.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Running VMs (address and node known, not deleted) whose /32 ext's FIB does not route to
    /// their node alone right now; 0 when the FIB is not observed.
    pub fn awaiting_advertisement(&self) -> usize {
        if !self.enabled || self.sources.fib_off.is_some() {
            return 0;
        }
        self.vms
            .values()
            .filter(|vm| vm.running.is_some() && vm.delete.is_none() && vm.vmi_gone.is_none())
            .filter(|vm| {
                let (Some(address), Some(node)) = (vm.address, &vm.node) else {
                    return false;
                };
                let Some(node_address) = self.expect.node_addresses.get(node) else {
                    return false;
                };
                let routed = self
                    .prefixes
                    .get(&address)
                    .and_then(|h| h.fib.last())
                    .and_then(|(_, hops)| hops.as_deref());
                routed != Some(&[*node_address][..])
            })
            .count()
    }

    /// Records ext's BGP table (or why it could not be read); the local-pref of each /32 comes
    /// from it.
    pub fn record_table(&mut self, at: MonoStamp, table: Result<BgpTable, String>) {
        self.table = Some((at, table));
        self.vms_at_read.clear();
        for vm in self.vms.values() {
            if let (Some(_), None, Some(node)) = (&vm.running, vm.vmi_gone, &vm.node) {
                *self.vms_at_read.entry(node.clone()).or_default() += 1;
            }
        }
    }

    /// Records the controller's figures (or why they could not be read).
    pub fn record_controller(&mut self, at: MonoStamp, figures: Result<ControllerFigures, String>) {
        self.controller = Some((at, figures));
    }

    /// Per node: the run's VMs on it against the host-route prefixes ext has via it, and the
    /// controller's count for it.
    fn node_samples(&self) -> Vec<HostRouteNodeSample> {
        let at = self
            .table
            .as_ref()
            .map(|(at, _)| at.since_anchor())
            .unwrap_or_default();
        let host_route = |prefix: &IpNet| match prefix {
            IpNet::V4(p) => self
                .expect
                .subnets
                .iter()
                .any(|s| s.contains(p) && p.prefix_len() > s.prefix_len()),
            IpNet::V6(_) => false,
        };
        self.expect
            .node_addresses
            .iter()
            .map(|(node, address)| {
                let vms = self.vms_at_read.get(node).copied().unwrap_or(0);
                let (prefixes, covered) = match &self.table {
                    None => {
                        let why = Measured::missing("the external router's BGP table was not read");
                        (why.clone(), why)
                    }
                    Some((_, Err(why))) => (
                        Measured::missing(why.clone()),
                        Measured::missing(why.clone()),
                    ),
                    Some((_, Ok(table))) => {
                        let via: Vec<&IpNet> = table
                            .best
                            .iter()
                            .filter(|(prefix, best)| {
                                host_route(prefix) && best.peer == Some(IpAddr::V4(*address))
                            })
                            .map(|(prefix, _)| prefix)
                            .collect();
                        let covered = via
                            .iter()
                            .map(|p| 1u64 << (32 - u32::from(p.prefix_len())))
                            .sum();
                        (
                            Measured::Observed(via.len() as u64),
                            Measured::Observed(covered),
                        )
                    }
                };
                let (advertised, capped) = match &self.controller {
                    None => {
                        let why = "the controller's metrics were not read";
                        (Measured::missing(why), Measured::missing(why))
                    }
                    Some((_, Err(why))) => (
                        Measured::missing(why.clone()),
                        Measured::missing(why.clone()),
                    ),
                    Some((_, Ok(figures))) => (
                        figures.routes_advertised.get(node).map_or_else(
                            || {
                                Measured::missing(format!(
                                    "the controller reported no routes_advertised for {node}"
                                ))
                            },
                            |n| Measured::Observed(*n),
                        ),
                        figures.capped.get(node).map_or_else(
                            || {
                                Measured::missing(format!(
                                    "the controller reported no node_capped for {node}"
                                ))
                            },
                            |c| Measured::Observed(*c),
                        ),
                    ),
                };
                HostRouteNodeSample {
                    at,
                    node: node.clone(),
                    node_address: Some(address.to_string()),
                    vms,
                    prefixes_at_ext: prefixes,
                    addresses_covered: covered,
                    routes_advertised: advertised,
                    capped,
                }
            })
            .collect()
    }

    /// The controller's own figures, when a scrape was attempted.
    fn controller_sample(&self) -> Option<HostRouteControllerSample> {
        let (at, figures) = self.controller.as_ref()?;
        let count = |value: Option<u64>, series: &str| {
            value.map_or_else(
                || Measured::missing(format!("the controller's /metrics has no {series}")),
                Measured::Observed,
            )
        };
        Some(match figures {
            Err(why) => {
                let why = Measured::missing(why.clone());
                HostRouteControllerSample {
                    at: at.since_anchor(),
                    reconcile_p99: Measured::missing(why.missing_reason().unwrap_or_default()),
                    reconciles: why.clone(),
                    reconcile_errors: why.clone(),
                    migrations_followed: why.clone(),
                    routes_advertised: why.clone(),
                    not_advertised_vms: why,
                }
            }
            Ok(figures) => HostRouteControllerSample {
                at: at.since_anchor(),
                reconcile_p99: match figures.reconcile_quantile(0.99) {
                    Some((p99, resolution)) => Measured::Observed(Timing::new(p99, resolution)),
                    None if figures.reconciles.unwrap_or(0) == 0 => {
                        Measured::missing("the controller recorded no reconcile")
                    }
                    None => Measured::missing(
                        "the p99 reconcile lies beyond the histogram's last finite bucket",
                    ),
                },
                reconciles: count(figures.reconciles, "reconcile_duration_seconds_count"),
                reconcile_errors: count(figures.reconcile_errors, "reconcile_errors"),
                migrations_followed: count(figures.migrations_followed, "migrations_followed"),
                routes_advertised: if figures.routes_advertised.is_empty() {
                    Measured::missing("the controller's /metrics has no routes_advertised")
                } else {
                    Measured::Observed(figures.routes_advertised.values().sum())
                },
                not_advertised_vms: count(figures.not_advertised_vms, "not_advertised_vms"),
            },
        })
    }

    fn observe_bmp(&mut self, event: &BmpEvent) {
        for change in self.book.on_event(event) {
            if change.up {
                continue;
            }
            // A peer going down takes its routes out of the Adj-RIB-In with it.
            let peer = change.peer.address;
            for history in self.prefixes.values_mut() {
                let held = !history.holding.is_empty();
                history.holding.retain(|(p, _)| *p != peer);
                if held && history.holding.is_empty() {
                    history.withdrawn.push(change.at);
                }
            }
        }
        let authoritative = self.book.is_authoritative(event.connection);
        match &event.kind {
            BmpEventKind::Connected { .. } => self.bmp_connected = true,
            BmpEventKind::Message(BmpMessage::RouteMonitoring(rm))
                if authoritative && rm.peer.policy != Policy::LocRib =>
            {
                let key = (rm.peer.address, rm.peer.policy);
                for route in &rm.announced {
                    if let Some(address) = host_address(route.prefix) {
                        let history = self.prefixes.entry(address).or_default();
                        history.holding.insert(key);
                        history
                            .announced
                            .push((event.at, route.communities.clone()));
                    }
                }
                for prefix in &rm.withdrawn {
                    if let Some(history) =
                        host_address(*prefix).and_then(|a| self.prefixes.get_mut(&a))
                        && history.holding.remove(&key)
                        && history.holding.is_empty()
                    {
                        history.withdrawn.push(event.at);
                    }
                }
            }
            _ => {}
        }
    }

    fn observe_fib(&mut self, event: &FibEvent) {
        match event {
            FibEvent::Route(change) if change.prefix.prefix_len() == 32 => {
                let hops = match change.kind {
                    // A route left from before the run is history, not a change of this run.
                    RouteChangeKind::Present => return,
                    RouteChangeKind::Added | RouteChangeKind::Replaced => {
                        Some(change.next_hops.clone())
                    }
                    RouteChangeKind::Removed => None,
                };
                self.prefixes
                    .entry(change.prefix.addr())
                    .or_default()
                    .fib
                    .push((change.at, hops));
            }
            FibEvent::Overrun { .. } => self.fib_overrun = true,
            _ => {}
        }
    }

    fn observe_vmi(&mut self, message: &WatchMessage) {
        let WatchMessage::Object {
            at,
            resource,
            change,
            object,
        } = message
        else {
            return;
        };
        if *resource != VMI {
            return;
        }
        let key = (
            object.metadata.namespace.clone().unwrap_or_default(),
            object.metadata.name.clone().unwrap_or_default(),
        );
        let Some(vm) = self.vms.get_mut(&key) else {
            return;
        };
        match change {
            Change::Deleted => {
                vm.vmi_gone.get_or_insert(*at);
            }
            Change::Applied => {
                let status = &object.data["status"];
                vm.address = vmi_ipv4(object).or(vm.address);
                if let Some(node) = status["nodeName"].as_str() {
                    vm.node = Some(node.to_string());
                }
                if vm.running.is_none()
                    && status["phase"] == "Running"
                    && let (Some(_), Some(node)) = (vm.address, &vm.node)
                {
                    vm.running = Some((*at, node.clone()));
                }
            }
        }
    }

    /// `at − t0`, or why there is none.
    fn since(
        &self,
        t0: MonoStamp,
        uncertainty: Duration,
        at: Option<MonoStamp>,
        source_off: &Option<String>,
        unobserved: impl FnOnce() -> String,
    ) -> Measured<Timing> {
        if let Some(reason) = source_off {
            return Measured::missing(reason.clone());
        }
        match at.and_then(|at| at.since(t0)) {
            Some(latency) => {
                Measured::Observed(Timing::new(latency, uncertainty.max(STAMP_RESOLUTION)))
            }
            None => Measured::missing(unobserved()),
        }
    }

    fn bmp_unobserved(&self, what: &str) -> String {
        if self.bmp_connected {
            format!("{what} not observed before the run's wait ended")
        } else {
            "the external router never opened a BMP session to the harness (check `bmp connect`)"
                .to_string()
        }
    }

    fn fib_unobserved(&self, what: &str) -> String {
        if self.fib_overrun {
            format!("{what} not observed; the kernel dropped route notifications (netlink overrun)")
        } else {
            format!("{what} not observed before the run's wait ended")
        }
    }

    fn sample(&self, vm: &VmRoute) -> RouteConvergenceSample {
        let empty = PrefixHistory::default();
        let history = vm
            .address
            .and_then(|a| self.prefixes.get(&a))
            .unwrap_or(&empty);
        let prefix = vm
            .address
            .map(|a| Ipv4Net::from(a).to_string())
            .unwrap_or_default();
        let never_running = match vm.address {
            None => "the VMI never reported an address",
            Some(_) => "the VMI was never seen Running on a node",
        };
        let (t0, advertise) = match &vm.running {
            None => (
                StartInstant {
                    offset: Duration::ZERO,
                    uncertainty: Duration::ZERO,
                },
                None,
            ),
            Some((t0, node)) => (
                StartInstant {
                    offset: t0.since_anchor(),
                    uncertainty: STAMP_RESOLUTION,
                },
                Some((*t0, node)),
            ),
        };
        let communities_wanted = &self.expect.community;
        let (adj_rib_in, fib, alone, hops, communities) = match advertise {
            None => (
                Measured::missing(never_running),
                Measured::missing(never_running),
                Measured::missing(never_running),
                Measured::missing(never_running),
                Measured::missing(never_running),
            ),
            Some((t0, node)) => {
                let announced: Vec<&(MonoStamp, Vec<String>)> = history
                    .announced
                    .iter()
                    .filter(|(at, _)| *at >= t0)
                    .collect();
                let tagged = announced
                    .iter()
                    .find(|(_, c)| c.contains(communities_wanted))
                    .map(|(at, _)| *at);
                let early = history.announced.iter().rev().find(|(at, _)| *at < t0);
                let adj_rib_in = match (tagged, announced.first()) {
                    (None, None) if self.sources.bmp_off.is_none() && early.is_some() => {
                        Measured::missing(
                            "the /32 was announced before the harness saw its VMI Running (the \
                             watch delivered the update late), so no honest latency is known",
                        )
                    }
                    (None, Some((_, seen))) if self.sources.bmp_off.is_none() => {
                        Measured::missing(format!(
                            "the /32 arrived without community {communities_wanted} (it carried: {})",
                            if seen.is_empty() {
                                "none".to_string()
                            } else {
                                seen.join(" ")
                            }
                        ))
                    }
                    _ => self.since(t0, Duration::ZERO, tagged, &self.sources.bmp_off, || {
                        self.bmp_unobserved("the /32's announcement was")
                    }),
                };
                let communities = match (&self.sources.bmp_off, announced.first()) {
                    (Some(reason), _) => Measured::missing(reason.clone()),
                    (None, Some((_, seen))) => Measured::Observed(seen.join(" ")),
                    (None, None) => Measured::missing("the /32 was never announced"),
                };
                let added: Vec<&(MonoStamp, Option<Vec<Ipv4Addr>>)> = history
                    .fib
                    .iter()
                    .filter(|(at, hops)| *at >= t0 && hops.is_some())
                    .collect();
                let fib = self.since(
                    t0,
                    Duration::ZERO,
                    added.first().map(|(at, _)| *at),
                    &self.sources.fib_off,
                    || self.fib_unobserved("the /32 in the FIB was"),
                );
                let alone = match self.expect.node_addresses.get(node) {
                    None => Measured::missing(format!(
                        "the address of node {node} is unknown (no InternalIP in its status)"
                    )),
                    Some(address) => {
                        let only = [*address];
                        let at = added
                            .iter()
                            .find(|(_, hops)| hops.as_deref() == Some(&only[..]))
                            .map(|(at, _)| *at);
                        self.since(t0, Duration::ZERO, at, &self.sources.fib_off, || {
                            format!(
                                "the FIB never routed the /32 to node {node} ({address}) alone \
                                 before the run's wait ended"
                            )
                        })
                    }
                };
                let hops = match (&self.sources.fib_off, added.first()) {
                    (Some(reason), _) => Measured::missing(reason.clone()),
                    (None, Some((_, Some(hops)))) => Measured::Observed(hops.len() as u64),
                    _ => Measured::missing("the /32 never reached the FIB"),
                };
                (adj_rib_in, fib, alone, hops, communities)
            }
        };
        let (withdraw_adj, withdraw_fib, stale) = self.withdrawal(vm, history);
        RouteConvergenceSample {
            network: vm.spec.network.clone(),
            prefix,
            scope: RouteScope::HostRoute {
                vm_name: vm.spec.name.clone(),
            },
            job_iteration: u64::from(vm.spec.iteration),
            t0,
            advertise_adj_rib_in: adj_rib_in,
            advertise_fib: fib,
            advertise_all_next_hops: alone,
            expected_next_hops: 1,
            observed_next_hops: hops,
            withdraw_adj_rib_in: withdraw_adj,
            withdraw_fib,
            stale_route_window: stale,
            communities,
            local_pref: self.local_pref(vm),
        }
    }

    /// Withdrawal from the Adj-RIB-In and the FIB, and the stale-route window.
    fn withdrawal(
        &self,
        vm: &VmRoute,
        history: &PrefixHistory,
    ) -> (Measured<Timing>, Measured<Timing>, Measured<Timing>) {
        let Some((sent, uncertainty, error)) = &vm.delete else {
            let reason = if self.sources.withdraw_measured {
                "the VM was never deleted (the run ended first)"
            } else {
                "the VM was not deleted by this run (--gc=false)"
            };
            let value = if self.sources.withdraw_measured {
                Measured::missing(reason)
            } else {
                Measured::not_applicable(reason)
            };
            return (value.clone(), value.clone(), value);
        };
        if let Some(error) = error {
            let value = Measured::missing(format!("the VM's delete request failed: {error}"));
            return (value.clone(), value.clone(), value);
        }
        let t0 = *sent;
        let was_announced = history.announced.iter().any(|(at, _)| *at < t0);
        let was_in_fib = history
            .fib
            .iter()
            .take_while(|(at, _)| *at < t0)
            .last()
            .is_some_and(|(_, hops)| hops.is_some());
        let adj = if was_announced || self.sources.bmp_off.is_some() {
            let at = history.withdrawn.iter().find(|at| **at >= t0).copied();
            self.since(t0, *uncertainty, at, &self.sources.bmp_off, || {
                self.bmp_unobserved("the /32's withdrawal was")
            })
        } else {
            Measured::missing("the /32 was never announced, so there was nothing to withdraw")
        };
        let removed = history
            .fib
            .iter()
            .find(|(at, hops)| *at >= t0 && hops.is_none())
            .map(|(at, _)| *at);
        let fib = if was_in_fib || self.sources.fib_off.is_some() {
            self.since(t0, *uncertainty, removed, &self.sources.fib_off, || {
                self.fib_unobserved("the /32's removal from the FIB was")
            })
        } else {
            Measured::missing("the /32 was not in the FIB when the VM was deleted")
        };
        let stale = match (&self.sources.fib_off, vm.vmi_gone, removed) {
            (Some(reason), _, _) => Measured::missing(reason.clone()),
            (None, None, _) => Measured::missing("the VMI's deletion was not seen"),
            _ if !was_in_fib => {
                Measured::missing("the /32 was not in the FIB when the VM was deleted")
            }
            (None, Some(_), None) => {
                Measured::missing(self.fib_unobserved("the /32's removal was"))
            }
            // Removed before the VMI was gone: the route never pointed at a VM that ran nowhere.
            (None, Some(gone), Some(removed)) => Measured::Observed(Timing::new(
                removed.since(gone).unwrap_or(Duration::ZERO),
                STAMP_RESOLUTION,
            )),
        };
        (adj, fib, stale)
    }

    fn local_pref(&self, vm: &VmRoute) -> Measured<u64> {
        let Some(address) = vm.address else {
            return Measured::missing("the VMI never reported an address");
        };
        match &self.table {
            None => Measured::missing("the external router's BGP table was not read in this run"),
            Some((_, Err(why))) => Measured::missing(why.clone()),
            Some((_, Ok(table))) => match table.best.get(&IpNet::V4(Ipv4Net::from(address))) {
                None => Measured::missing(
                    "the /32 was not in the external router's BGP table when it was read",
                ),
                Some(best) => match best.local_pref {
                    Some(lp) => Measured::Observed(u64::from(lp)),
                    None => Measured::missing(
                        "the best path carries no LOCAL_PREF: no inbound policy set one, so the \
                         router's default applies",
                    ),
                },
            },
        }
    }
}

impl Measurement for HostRoutes {
    fn kind(&self) -> MeasurementKind {
        MeasurementKind::RouteConvergence
    }

    fn observe(&mut self, observation: Observation<'_>) {
        if !self.enabled {
            return;
        }
        match observation {
            Observation::Request(request)
                if request.resource == VIRTUAL_MACHINE && request.verb == Verb::Delete =>
            {
                let key = (
                    request.namespace.clone().unwrap_or_default(),
                    request.name.clone(),
                );
                if let Some(vm) = self.vms.get_mut(&key) {
                    vm.delete.get_or_insert((
                        request.sent,
                        request.uncertainty(),
                        request.error.clone(),
                    ));
                }
            }
            Observation::Watch(message) => self.observe_vmi(message),
            Observation::Bmp(event) => self.observe_bmp(event),
            Observation::Fib(event) => self.observe_fib(event),
            _ => {}
        }
    }

    fn outstanding(&self) -> Vec<String> {
        self.vms
            .values()
            .filter(|vm| vm.delete.as_ref().is_some_and(|(_, _, e)| e.is_none()))
            .filter_map(|vm| {
                let address = vm.address?;
                let history = self.prefixes.get(&address)?;
                let awaited: Vec<&str> = [
                    (
                        self.sources.bmp_off.is_none() && !history.holding.is_empty(),
                        "Adj-RIB-In withdrawal",
                    ),
                    (
                        self.sources.fib_off.is_none() && history.in_fib(),
                        "FIB removal",
                    ),
                ]
                .into_iter()
                .filter_map(|(pending, what)| pending.then_some(what))
                .collect();
                (!awaited.is_empty())
                    .then(|| format!("{address}/32 ({}): {}", vm.spec.name, awaited.join(", ")))
            })
            .collect()
    }

    fn collect(&mut self, batch: Batch, out: &mut Samples) {
        // Withdrawal happens at cleanup, so a VM's sample is final only at the end.
        if batch != Batch::All {
            return;
        }
        if !self.enabled {
            return;
        }
        out.host_route_nodes.extend(self.node_samples());
        out.host_route_controller = self.controller_sample();
        let vms = std::mem::take(&mut self.vms);
        for vm in vms.values() {
            out.route_convergence.push(self.sample(vm));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;
    use vmbgp_bgp::bmp::{AnnouncedRoute, PeerInfo, PeerType, RouteMonitoring};
    use vmbgp_bgp::fib::RouteChange;
    use vmbgp_bgp::table::BestPath;

    use super::*;
    use crate::kube::apply::Request;

    const ADDRESS: Ipv4Addr = Ipv4Addr::new(198, 19, 201, 10);

    fn ms(n: u64) -> MonoStamp {
        MonoStamp::from_offset(Duration::from_millis(n))
    }

    fn node(n: u8) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, 0, n)
    }

    fn vm() -> VmSpec {
        VmSpec {
            name: "vm-0-1".into(),
            namespace: "vmbgp-shared".into(),
            network: "vmbgp-shared".into(),
            iteration: 0,
            replica: 1,
            static_ip: Some(ADDRESS),
        }
    }

    fn measurement(sources: Sources) -> HostRoutes {
        HostRoutes::new(
            &[vm()],
            HostRouteExpectations {
                community: "64512:200".into(),
                node_addresses: (1..=3).map(|n| (format!("node-{n}"), node(n))).collect(),
                subnets: vec!["198.19.201.0/24".parse().expect("subnet")],
            },
            sources,
        )
    }

    fn observed() -> Sources {
        Sources {
            bmp_off: None,
            fib_off: None,
            withdraw_measured: true,
        }
    }

    fn vmi(at: u64, phase: &str, node: &str, change: Change) -> WatchMessage {
        let object: kube::api::DynamicObject = serde_json::from_value(json!({
            "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
            "metadata": {"name": "vm-0-1", "namespace": "vmbgp-shared"},
            "status": {"phase": phase, "nodeName": node,
                       "interfaces": [{"ipAddress": ADDRESS.to_string()}]}
        }))
        .expect("vmi");
        WatchMessage::Object {
            at: ms(at),
            resource: VMI,
            change,
            object: Arc::new(object),
        }
    }

    fn bmp(at: u64, kind: BmpEventKind) -> BmpEvent {
        BmpEvent {
            router: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            at: ms(at),
            connection: 1,
            kind,
        }
    }

    fn connected() -> BmpEvent {
        bmp(
            1,
            BmpEventKind::Connected {
                remote: "127.0.0.1:1".parse().expect("addr"),
                local: "127.0.0.1:5000".parse().expect("addr"),
            },
        )
    }

    fn monitoring(at: u64, from: u8, announce: Option<&[&str]>) -> BmpEvent {
        let prefix = IpNet::V4(Ipv4Net::from(ADDRESS));
        let peer = PeerInfo {
            address: IpAddr::V4(node(from)),
            asn: 64513,
            bgp_id: node(from),
            peer_type: PeerType::Global,
            distinguisher: 0,
            adj_rib_out: false,
            policy: Policy::PostPolicy,
            router_stamp: None,
        };
        let announced = announce.map(|communities| AnnouncedRoute {
            prefix,
            next_hop: Some(IpAddr::V4(node(from))),
            as_path: Some("64513".into()),
            communities: communities.iter().map(|c| c.to_string()).collect(),
            local_pref: None,
            med: None,
            origin: None,
        });
        bmp(
            at,
            BmpEventKind::Message(BmpMessage::RouteMonitoring(RouteMonitoring {
                peer,
                withdrawn: if announced.is_none() {
                    vec![prefix]
                } else {
                    Vec::new()
                },
                announced: announced.into_iter().collect(),
                end_of_rib: false,
            })),
        )
    }

    fn fib(at: u64, hops: &[u8]) -> FibEvent {
        FibEvent::Route(RouteChange {
            at: ms(at),
            prefix: Ipv4Net::from(ADDRESS),
            kind: if hops.is_empty() {
                RouteChangeKind::Removed
            } else {
                RouteChangeKind::Added
            },
            next_hops: hops.iter().map(|n| node(*n)).collect(),
            interfaces: Vec::new(),
            nexthop_id: None,
            protocol: "bgp".into(),
            table: 254,
            metric: Some(20),
            route_type: "unicast".into(),
        })
    }

    fn delete(at: u64) -> Request {
        Request {
            verb: Verb::Delete,
            resource: VIRTUAL_MACHINE,
            namespace: Some("vmbgp-shared".into()),
            name: "vm-0-1".into(),
            sent: ms(at),
            answered: ms(at + 3),
            error: None,
            error_code: None,
            retries: 0,
        }
    }

    fn table(local_pref: Option<u32>) -> BgpTable {
        BgpTable {
            best: [(
                IpNet::V4(Ipv4Net::from(ADDRESS)),
                BestPath {
                    peer: Some(IpAddr::V4(node(1))),
                    local_pref,
                },
            )]
            .into(),
        }
    }

    fn collect(mut m: HostRoutes) -> RouteConvergenceSample {
        let mut out = Samples::default();
        m.collect(Batch::Iteration(0), &mut out);
        assert!(out.route_convergence.is_empty(), "final only at the end");
        m.collect(Batch::All, &mut out);
        assert_eq!(out.route_convergence.len(), 1);
        out.route_convergence.remove(0)
    }

    fn millis(m: &Measured<Timing>) -> Option<f64> {
        m.observed().map(|t| t.millis())
    }

    #[test]
    fn a_vms_route_is_timed_from_running_to_its_node_and_from_delete_to_gone() {
        let mut m = measurement(observed());
        m.observe(Observation::Bmp(&connected()));
        m.observe(Observation::Watch(&vmi(
            90,
            "Scheduled",
            "node-1",
            Change::Applied,
        )));
        m.observe(Observation::Watch(&vmi(
            100,
            "Running",
            "node-1",
            Change::Applied,
        )));
        m.observe(Observation::Bmp(&monitoring(150, 1, Some(&["64512:200"]))));
        assert_eq!(
            m.awaiting_advertisement(),
            1,
            "announced, not yet in the FIB"
        );
        m.observe(Observation::Fib(&fib(180, &[1])));
        assert_eq!(m.awaiting_advertisement(), 0);
        m.record_table(ms(500), Ok(table(Some(250))));
        m.observe(Observation::Request(&delete(1000)));
        assert_eq!(
            m.outstanding(),
            ["198.19.201.10/32 (vm-0-1): Adj-RIB-In withdrawal, FIB removal"]
        );
        m.observe(Observation::Bmp(&monitoring(1040, 1, None)));
        m.observe(Observation::Watch(&vmi(
            1050,
            "Running",
            "node-1",
            Change::Deleted,
        )));
        m.observe(Observation::Fib(&fib(1100, &[])));
        assert!(m.outstanding().is_empty());
        let s = collect(m);
        assert_eq!(s.prefix, "198.19.201.10/32");
        assert_eq!(
            s.scope,
            RouteScope::HostRoute {
                vm_name: "vm-0-1".into()
            }
        );
        assert_eq!(s.t0.offset, Duration::from_millis(100));
        assert_eq!(millis(&s.advertise_adj_rib_in), Some(50.0));
        assert_eq!(millis(&s.advertise_fib), Some(80.0));
        assert_eq!(millis(&s.advertise_all_next_hops), Some(80.0));
        assert_eq!(s.observed_next_hops, Measured::Observed(1));
        assert_eq!(millis(&s.withdraw_adj_rib_in), Some(40.0));
        assert_eq!(millis(&s.withdraw_fib), Some(100.0));
        assert_eq!(
            millis(&s.stale_route_window),
            Some(50.0),
            "VMI gone → FIB removal"
        );
        assert_eq!(s.communities, Measured::Observed("64512:200".into()));
        assert_eq!(s.local_pref, Measured::Observed(250));
    }

    #[test]
    fn a_route_through_another_node_or_without_the_community_is_not_the_advertisement() {
        let mut m = measurement(observed());
        m.observe(Observation::Bmp(&connected()));
        m.observe(Observation::Watch(&vmi(
            100,
            "Running",
            "node-1",
            Change::Applied,
        )));
        m.observe(Observation::Bmp(&monitoring(150, 2, Some(&["64512:100"]))));
        m.observe(Observation::Fib(&fib(180, &[2])));
        m.observe(Observation::Fib(&fib(400, &[1, 2])));
        m.record_table(ms(500), Ok(table(None)));
        let s = collect(m);
        let reason = s.advertise_adj_rib_in.missing_reason().expect("missing");
        assert!(
            reason.contains("without community 64512:200") && reason.contains("64512:100"),
            "{reason}"
        );
        assert_eq!(
            millis(&s.advertise_fib),
            Some(80.0),
            "in the FIB, via node-2"
        );
        let reason = s.advertise_all_next_hops.missing_reason().expect("missing");
        assert!(reason.contains("node-1 (198.18.0.1) alone"), "{reason}");
        assert_eq!(s.communities, Measured::Observed("64512:100".into()));
        let reason = s.local_pref.missing_reason().expect("missing");
        assert!(reason.contains("no LOCAL_PREF"), "{reason}");
        let reason = s.withdraw_fib.missing_reason().expect("missing");
        assert!(reason.contains("never deleted"), "{reason}");
    }

    #[test]
    fn an_announcement_before_the_harness_saw_running_gives_no_latency() {
        let mut m = measurement(observed());
        m.observe(Observation::Bmp(&connected()));
        // The /32 arrives while the harness knows no address for the VM yet.
        m.observe(Observation::Bmp(&monitoring(80, 1, Some(&["64512:200"]))));
        m.observe(Observation::Watch(&vmi(
            100,
            "Running",
            "node-1",
            Change::Applied,
        )));
        let s = collect(m);
        let reason = s.advertise_adj_rib_in.missing_reason().expect("missing");
        assert!(reason.contains("before the harness saw"), "{reason}");
    }

    #[test]
    fn without_gc_withdrawal_is_not_applicable_and_off_sources_say_why() {
        let mut m = measurement(Sources {
            bmp_off: Some("BMP is not observed in this run".into()),
            fib_off: None,
            withdraw_measured: false,
        });
        m.observe(Observation::Watch(&vmi(
            100,
            "Running",
            "node-9",
            Change::Applied,
        )));
        m.observe(Observation::Fib(&fib(180, &[1])));
        let s = collect(m);
        assert!(matches!(s.withdraw_fib, Measured::NotApplicable { .. }));
        assert!(matches!(
            s.stale_route_window,
            Measured::NotApplicable { .. }
        ));
        assert_eq!(
            s.advertise_adj_rib_in.missing_reason(),
            Some("BMP is not observed in this run")
        );
        let reason = s.advertise_all_next_hops.missing_reason().expect("missing");
        assert!(reason.contains("node node-9 is unknown"), "{reason}");
        let reason = s.local_pref.missing_reason().expect("missing");
        assert!(reason.contains("not read"), "{reason}");
    }

    #[test]
    fn per_node_prefixes_at_ext_are_set_against_the_vms_and_the_controllers_count() {
        let mut m = measurement(observed());
        m.observe(Observation::Watch(&vmi(
            100,
            "Running",
            "node-1",
            Change::Applied,
        )));
        let best = |peer: u8| BestPath {
            peer: Some(IpAddr::V4(node(peer))),
            local_pref: Some(250),
        };
        // An aggregate /30 and a /32 via node-1, a /32 via node-2, and the subnet itself (not a
        // host route) via node-3.
        let table = BgpTable {
            best: [
                ("198.19.201.8/30", best(1)),
                ("198.19.201.20/32", best(1)),
                ("198.19.201.30/32", best(2)),
                ("198.19.201.0/24", best(3)),
            ]
            .into_iter()
            .map(|(p, b)| (p.parse().expect("prefix"), b))
            .collect(),
        };
        m.record_table(ms(900), Ok(table));
        let figures = ControllerFigures {
            reconcile_buckets: vec![(0.001, 0), (0.002, 8), (0.004, 10), (f64::INFINITY, 10)],
            reconciles: Some(10),
            reconcile_errors: Some(0),
            migrations_followed: Some(1),
            not_advertised_vms: Some(0),
            routes_advertised: [("node-1".to_string(), 2), ("node-2".to_string(), 1)].into(),
            capped: [("node-1".to_string(), false)].into(),
        };
        m.record_controller(ms(905), Ok(figures));
        // Cleanup deletes the VM afterwards: the count is the one at the read.
        m.observe(Observation::Watch(&vmi(
            2000,
            "Running",
            "node-1",
            Change::Deleted,
        )));
        let mut out = Samples::default();
        m.collect(Batch::All, &mut out);
        let nodes: BTreeMap<&str, &HostRouteNodeSample> = out
            .host_route_nodes
            .iter()
            .map(|n| (n.node.as_str(), n))
            .collect();
        assert_eq!(nodes.len(), 3);
        let one = nodes["node-1"];
        assert_eq!((one.vms, one.at), (1, Duration::from_millis(900)));
        assert_eq!(one.prefixes_at_ext, Measured::Observed(2));
        assert_eq!(one.addresses_covered, Measured::Observed(5));
        assert_eq!(one.routes_advertised, Measured::Observed(2));
        assert_eq!(one.capped, Measured::Observed(false));
        assert_eq!(nodes["node-2"].vms, 0);
        assert_eq!(
            nodes["node-3"].prefixes_at_ext,
            Measured::Observed(0),
            "a subnet is no host route"
        );
        let reason = nodes["node-3"]
            .routes_advertised
            .missing_reason()
            .expect("missing");
        assert!(reason.contains("node-3"), "{reason}");
        let controller = out.host_route_controller.expect("controller sample");
        // Rank 9.9 of 10 in (2 ms, 4 ms], which holds ranks 9..10.
        let p99 = controller.reconcile_p99.observed().expect("p99");
        assert!((p99.millis() - 3.9).abs() < 1e-6, "{p99:?}");
        assert_eq!(controller.routes_advertised, Measured::Observed(3));
        assert_eq!(controller.at, Duration::from_millis(905));
    }

    #[test]
    fn an_unreadable_controller_is_missing_with_the_reason() {
        let mut m = measurement(observed());
        m.record_controller(
            ms(905),
            Err("GET http://127.0.0.1:1/metrics: refused".into()),
        );
        let mut out = Samples::default();
        m.collect(Batch::All, &mut out);
        let controller = out.host_route_controller.expect("controller sample");
        assert_eq!(
            controller.reconcile_p99.missing_reason(),
            Some("GET http://127.0.0.1:1/metrics: refused")
        );
        assert!(
            out.host_route_nodes
                .iter()
                .all(|n| n.prefixes_at_ext.missing_reason()
                    == Some("the external router's BGP table was not read"))
        );
    }

    #[test]
    fn subnet_mode_records_nothing_and_makes_no_sample() {
        let mut m = HostRoutes::disabled();
        m.observe(Observation::Fib(&fib(180, &[1])));
        assert!(m.prefixes.is_empty());
        let mut out = Samples::default();
        m.collect(Batch::All, &mut out);
        assert!(out.is_empty(), "{out:?}");
    }
}
