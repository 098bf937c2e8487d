//! Live-migration loss (profile `vm-bgp-migration`): per VirtualMachineInstanceMigration, the run
//! raises the VM's probe stream to `migrationRate` before the create request (t0) and hands this
//! module the stream's loss window once the migration is done and the VM answers again. From the
//! watches it takes the VMIM's uid and phase and the instant the VMI reports that migration
//! completed (the switch-over the harness sees). Per migration: loss period (loss-derived, RFC
//! 7747), longest reply-to-reply gap, and switch-over → reachable again. In host-route mode, also
//! switch-over → the VM's /32 routed by ext's FIB to the target node alone (next-hop follow).
//! TCP survival: a paced stream to the VM's sink runs from before t0 until the window closes; it
//! survived when it never failed and its bytes were still acknowledged after the switch-over, and
//! its longest stall is the longest time without acknowledged progress.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use vmbgp_bgp::fib::{FibEvent, RouteChangeKind};

use vmbgp_probe::icmp::LossSince;
use vmbgp_reporters::measured::{Measured, Timing};
use vmbgp_reporters::samples::{
    MeasurementKind, MigrationSample, Samples, StartInstant, VmIdentity,
};

use super::route_convergence::STAMP_RESOLUTION;
use super::{Batch, Measurement, ObjectKey, Observation};
use crate::clock::MonoStamp;
use crate::config::VmSpec;
use crate::kube::watch::{Change, WatchMessage};
use crate::kube::{VMI, VMIM};
use crate::workload::Manifest;

/// What the probe stream saw in one migration's window.
#[derive(Debug, Clone, Copy)]
pub struct LossWindow {
    pub loss: LossSince,
    /// Arrival of the latest reply when the window was read.
    pub last_reply: Option<MonoStamp>,
}

#[derive(Debug)]
struct Migration {
    vm: VmIdentity,
    vmi: String,
    round: u32,
    t0: Option<StartInstant>,
    create_error: Option<String>,
    uid: Option<String>,
    phase: Option<String>,
    source_node: Option<String>,
    target_node: Option<String>,
    switchover: Option<MonoStamp>,
    window: Option<Result<LossWindow, String>>,
    tcp: Option<Result<TcpWindow, String>>,
}

/// What the migration's TCP stream saw.
#[derive(Debug, Clone)]
pub struct TcpWindow {
    /// The error that ended it, if one did.
    pub error: Option<String>,
    /// The last `TCP_INFO` sample that showed newly acknowledged bytes.
    pub last_progress: Option<MonoStamp>,
    pub longest_stall: Measured<Duration>,
    /// Its sampling interval (the stall's resolution).
    pub sample_every: Duration,
}

impl TcpWindow {
    /// From the sender's report.
    pub fn from_report(
        report: &vmbgp_probe::tcp::ThroughputReport,
        sample_every: Duration,
    ) -> Self {
        let last_progress = report
            .samples
            .windows(2)
            .rev()
            .find(|pair| pair[1].bytes_acked > pair[0].bytes_acked)
            .map(|pair| pair[1].at);
        TcpWindow {
            error: report.error.clone(),
            last_progress,
            longest_stall: report.longest_stall.clone(),
            sample_every,
        }
    }
}

/// Host-route mode: where each node is routed, and the /32 FIB changes seen so far.
#[derive(Debug)]
struct Follow {
    node_addresses: BTreeMap<String, Ipv4Addr>,
    /// Why the FIB is not observed, if it is not.
    fib_off: Option<String>,
    /// VMI (namespace, name) → its address.
    addresses: BTreeMap<ObjectKey, Ipv4Addr>,
    /// /32 → (when, next hops; empty when removed), in arrival order.
    fib: BTreeMap<Ipv4Addr, Vec<(MonoStamp, Vec<Ipv4Addr>)>>,
}

impl Follow {
    /// Switch-over → the /32 routed to the target node alone.
    fn next_hop_follow(&self, m: &Migration) -> Measured<Timing> {
        if let Some(reason) = &self.fib_off {
            return Measured::missing(reason.clone());
        }
        let (Some(switchover), Some(target)) = (m.switchover, &m.target_node) else {
            return Measured::missing(
                "the switch-over was not seen (VMI migrationState never completed)",
            );
        };
        let Some(target_address) = self.node_addresses.get(target) else {
            return Measured::missing(format!(
                "the address of node {target} is unknown (no InternalIP in its status)"
            ));
        };
        let Some(address) = self.addresses.get(&(m.vm.namespace.clone(), m.vmi.clone())) else {
            return Measured::missing("the VMI never reported an address");
        };
        let alone = [*target_address];
        let changes = self.fib.get(address).map(Vec::as_slice).unwrap_or_default();
        let before = changes
            .iter()
            .take_while(|(at, _)| *at <= switchover)
            .last();
        // Already there when the harness saw the switch-over (the controller read the same update).
        if before.is_some_and(|(_, hops)| hops[..] == alone) {
            return Measured::Observed(Timing::new(Duration::ZERO, STAMP_RESOLUTION));
        }
        match changes
            .iter()
            .find(|(at, hops)| *at > switchover && hops[..] == alone)
            .and_then(|(at, _)| at.since(switchover))
        {
            Some(after) => Measured::Observed(Timing::new(after, STAMP_RESOLUTION)),
            None => Measured::missing(format!(
                "ext's FIB never routed {address}/32 to the target node {target} ({target_address}) \
                 alone before the migration's window closed"
            )),
        }
    }
}

/// Every migration of the run, keyed by the VMIM's (namespace, name).
#[derive(Debug)]
pub struct Migrations {
    interval: Duration,
    migrations: BTreeMap<ObjectKey, Migration>,
    /// Host-route mode only.
    follow: Option<Follow>,
}

impl Migrations {
    /// The migrations among the rendered manifests (VMIMs name their VM in `spec.vmiName`).
    pub fn new(manifests: &[Manifest], vms: &[VmSpec], migration_rate: u32) -> Self {
        let migrations = manifests
            .iter()
            .filter(|m| m.kind() == VMIM.kind)
            .filter_map(|m| {
                let namespace = m.namespace().unwrap_or_default().to_string();
                let vmi = m.object["spec"]["vmiName"].as_str()?.to_string();
                let vm = vms
                    .iter()
                    .find(|v| v.namespace == namespace && v.name == vmi)?;
                let migration = Migration {
                    vm: VmIdentity {
                        namespace: namespace.clone(),
                        vm_name: vm.name.clone(),
                        job_iteration: u64::from(m.iteration),
                        replica: u64::from(vm.replica),
                    },
                    vmi,
                    round: m.iteration,
                    t0: None,
                    create_error: None,
                    uid: None,
                    phase: None,
                    source_node: None,
                    target_node: None,
                    switchover: None,
                    window: None,
                    tcp: None,
                };
                Some(((namespace, m.name().to_string()), migration))
            })
            .collect();
        Migrations {
            interval: Duration::from_secs_f64(1.0 / f64::from(migration_rate.max(1))),
            migrations,
            follow: None,
        }
    }

    /// Host-route mode: also measure next-hop follow, from the FIB (`fib_off`: why it is not
    /// observed), knowing each node's address.
    pub fn following_host_routes(
        mut self,
        node_addresses: BTreeMap<String, Ipv4Addr>,
        fib_off: Option<String>,
    ) -> Self {
        self.follow = Some(Follow {
            node_addresses,
            fib_off,
            addresses: BTreeMap::new(),
            fib: BTreeMap::new(),
        });
        self
    }

    /// The VM (namespace, name) each migration of a round moves, keyed by the VMIM.
    pub fn of_round(&self, round: u32) -> Vec<(ObjectKey, ObjectKey)> {
        self.migrations
            .iter()
            .filter(|(_, m)| m.round == round)
            .map(|(key, m)| (key.clone(), (m.vm.namespace.clone(), m.vmi.clone())))
            .collect()
    }

    /// Whether the migration ended (Succeeded or Failed) as far as the watches saw.
    pub fn finished(&self, key: &ObjectKey) -> bool {
        self.migrations
            .get(key)
            .is_some_and(|m| m.create_error.is_some() || is_final(m.phase.as_deref()))
    }

    /// Whether nothing more is expected of the migration's /32: host-route mode is off, the
    /// migration never switched over, or ext's FIB already routes the /32 to the target alone.
    pub fn followed(&self, key: &ObjectKey) -> bool {
        match (&self.follow, self.migrations.get(key)) {
            (Some(follow), Some(m)) if m.switchover.is_some() && follow.fib_off.is_none() => {
                follow.next_hop_follow(m).is_observed()
            }
            _ => true,
        }
    }

    /// The TCP stream's view of the migration's window, or why none ran.
    pub fn record_tcp(&mut self, key: &ObjectKey, tcp: Result<TcpWindow, String>) {
        if let Some(m) = self.migrations.get_mut(key) {
            m.tcp = Some(tcp);
        }
    }

    /// TCP survival and the longest stall, or why they are not known.
    fn tcp_values(
        m: &Migration,
        why_missing: &Option<String>,
    ) -> (Measured<bool>, Measured<Timing>) {
        let missing = |why: String| (Measured::missing(why.clone()), Measured::missing(why));
        match (&m.tcp, why_missing) {
            (None, _) => missing("no TCP stream runs across migrations in this run".to_string()),
            (Some(Err(why)), _) => missing(format!("the TCP stream did not run: {why}")),
            (Some(Ok(_)), Some(why)) => missing(why.clone()),
            (Some(Ok(tcp)), None) => {
                let Some(switchover) = m.switchover else {
                    return missing(
                        "the switch-over was not seen (VMI migrationState never completed)".into(),
                    );
                };
                let survived =
                    tcp.error.is_none() && tcp.last_progress.is_some_and(|at| at > switchover);
                let stall = match tcp.longest_stall.observed() {
                    Some(stall) => Measured::Observed(Timing::new(*stall, tcp.sample_every)),
                    None => Measured::missing(
                        tcp.longest_stall
                            .missing_reason()
                            .unwrap_or("the stream's stall is unknown")
                            .to_string(),
                    ),
                };
                (Measured::Observed(survived), stall)
            }
        }
    }

    /// The probe stream's view of the migration's window, or why there is none.
    pub fn record_window(&mut self, key: &ObjectKey, window: Result<LossWindow, String>) {
        if let Some(m) = self.migrations.get_mut(key) {
            m.window = Some(window);
        }
    }

    fn sample(&self, m: &Migration) -> MigrationSample {
        let migration_failed = if let Some(error) = &m.create_error {
            Some(format!("the migration create request failed: {error}"))
        } else if m.t0.is_none() {
            Some("the migration was never started (the run ended first)".to_string())
        } else if m.phase.as_deref() == Some("Failed") {
            Some("the migration failed".to_string())
        } else if !is_final(m.phase.as_deref()) {
            Some("the migration did not complete".to_string())
        } else {
            None
        };
        let why_missing = migration_failed.clone().or_else(|| match &m.window {
            Some(Ok(_)) => None,
            Some(Err(why)) => Some(why.clone()),
            None => Some("its probe stream was not read (the run ended first)".to_string()),
        });
        let (loss_period, longest_gap, reachable) = match (&why_missing, &m.window) {
            (None, Some(Ok(window))) => self.loss_values(m, window),
            (reason, _) => {
                let reason = reason.clone().unwrap_or_default();
                (
                    Measured::missing(reason.clone()),
                    Measured::missing(reason.clone()),
                    Measured::missing(reason),
                )
            }
        };
        let (tcp_survived, tcp_longest_stall) = Self::tcp_values(m, &migration_failed);
        MigrationSample {
            vm: m.vm.clone(),
            migration_index: u64::from(m.round),
            source_node: m.source_node.clone(),
            target_node: m.target_node.clone(),
            t0: m.t0.unwrap_or(StartInstant {
                offset: Duration::ZERO,
                uncertainty: Duration::ZERO,
            }),
            loss_period,
            longest_gap,
            reachable_after_switchover: reachable,
            next_hop_follow: match (&self.follow, &why_missing) {
                (None, _) => Measured::not_applicable(
                    "the network is advertised as a subnet; no per-VM /32 next hop to follow",
                ),
                (Some(_), Some(reason)) if m.switchover.is_none() => {
                    Measured::missing(reason.clone())
                }
                (Some(follow), _) => follow.next_hop_follow(m),
            },
            tcp_survived,
            tcp_longest_stall,
        }
    }

    fn loss_values(
        &self,
        m: &Migration,
        window: &LossWindow,
    ) -> (Measured<Timing>, Measured<Timing>, Measured<Timing>) {
        let resolution = self.interval;
        let loss = &window.loss;
        let loss_period = Measured::Observed(Timing::new(loss.loss_derived, resolution));
        // Without a loss period, consecutive replies were at most one probe interval apart.
        let longest_gap = Measured::Observed(Timing::new(
            loss.longest_reply_gap.unwrap_or(self.interval),
            resolution,
        ));
        let reachable = match m.switchover {
            None => Measured::missing(
                "the switch-over was not seen (VMI migrationState never completed)",
            ),
            Some(switchover) => match loss.recovered_at.and_then(|r| r.since(switchover)) {
                _ if loss.still_losing => {
                    Measured::missing("the VM was not answering again when the window closed")
                }
                Some(after) => Measured::Observed(Timing::new(after, resolution)),
                // The last outage ended before the switch-over was seen (or there was none):
                // replies after the switch-over show the VM reachable at that instant.
                None if window.last_reply.is_some_and(|r| r > switchover) => {
                    Measured::Observed(Timing::new(Duration::ZERO, resolution))
                }
                None => Measured::missing("no reply arrived after the switch-over"),
            },
        };
        (loss_period, longest_gap, reachable)
    }

    fn on_watch(&mut self, message: &WatchMessage) {
        let WatchMessage::Object {
            at,
            resource,
            change: Change::Applied,
            object,
        } = message
        else {
            return;
        };
        let namespace = object.metadata.namespace.clone().unwrap_or_default();
        if *resource == VMIM {
            let key = (namespace, object.metadata.name.clone().unwrap_or_default());
            if let Some(m) = self.migrations.get_mut(&key) {
                m.uid.clone_from(&object.metadata.uid);
                m.phase = object.data["status"]["phase"].as_str().map(str::to_string);
            }
        } else if *resource == VMI {
            if let (Some(follow), Some(address)) = (&mut self.follow, super::vmi_ipv4(object)) {
                let name = object.metadata.name.clone().unwrap_or_default();
                follow.addresses.insert((namespace.clone(), name), address);
            }
            let state = &object.data["status"]["migrationState"];
            let (Some(uid), true) = (state["migrationUid"].as_str(), state["completed"] == true)
            else {
                return;
            };
            let name = object.metadata.name.as_deref().unwrap_or_default();
            if let Some(m) = self.migrations.values_mut().find(|m| {
                m.vm.namespace == namespace && m.vmi == name && m.uid.as_deref() == Some(uid)
            }) && m.switchover.is_none()
            {
                m.switchover = Some(*at);
                m.source_node = state["sourceNode"].as_str().map(str::to_string);
                m.target_node = state["targetNode"].as_str().map(str::to_string);
            }
        }
    }
}

fn is_final(phase: Option<&str>) -> bool {
    matches!(phase, Some("Succeeded" | "Failed"))
}

impl Measurement for Migrations {
    fn kind(&self) -> MeasurementKind {
        MeasurementKind::VmMigration
    }

    fn observe(&mut self, observation: Observation<'_>) {
        match observation {
            Observation::Request(request) if request.resource == VMIM => {
                let key = (
                    request.namespace.clone().unwrap_or_default(),
                    request.name.clone(),
                );
                if let Some(m) = self.migrations.get_mut(&key)
                    && m.t0.is_none()
                {
                    m.t0 = Some(StartInstant {
                        offset: request.sent.since_anchor(),
                        uncertainty: request.uncertainty(),
                    });
                    m.create_error.clone_from(&request.error);
                }
            }
            Observation::Watch(message) => self.on_watch(message),
            Observation::Fib(FibEvent::Route(change)) if change.prefix.prefix_len() == 32 => {
                if let Some(follow) = &mut self.follow {
                    let hops = match change.kind {
                        RouteChangeKind::Removed => Vec::new(),
                        _ => change.next_hops.clone(),
                    };
                    follow
                        .fib
                        .entry(change.prefix.addr())
                        .or_default()
                        .push((change.at, hops));
                }
            }
            _ => {}
        }
    }

    fn collect(&mut self, batch: Batch, out: &mut Samples) {
        let keys: Vec<ObjectKey> = self
            .migrations
            .iter()
            .filter(|(_, m)| match batch {
                Batch::MigrationRound(round) => m.round == round && m.window.is_some(),
                Batch::Iteration(_) => false,
                Batch::All => true,
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            if let Some(m) = self.migrations.remove(&key) {
                out.migrations.push(self.sample(&m));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::{Value, json};
    use vmbgp_probe::icmp::LossPeriod;

    use super::*;
    use crate::kube::apply::Request;

    fn ms(n: u64) -> MonoStamp {
        MonoStamp::from_offset(Duration::from_millis(n))
    }

    fn vm() -> VmSpec {
        VmSpec {
            name: "vm-0-1".into(),
            namespace: "vmbgp-shared".into(),
            network: "vmbgp-shared".into(),
            iteration: 0,
            replica: 1,
            static_ip: Some([198, 19, 200, 10].into()),
        }
    }

    fn vmim(round: u32) -> Manifest {
        let object = json!({
            "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstanceMigration",
            "metadata": {"name": format!("vm-0-1-mig-{round}"), "namespace": "vmbgp-shared"},
            "spec": {"vmiName": "vm-0-1"}
        });
        Manifest {
            iteration: round,
            text: String::new(),
            object,
        }
    }

    fn event(at: u64, resource: crate::kube::Resource, object: Value) -> WatchMessage {
        WatchMessage::Object {
            at: ms(at),
            resource,
            change: Change::Applied,
            object: Arc::new(serde_json::from_value(object).expect("object")),
        }
    }

    fn vmim_status(round: u32, uid: &str, phase: &str) -> Value {
        json!({
            "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstanceMigration",
            "metadata": {"name": format!("vm-0-1-mig-{round}"), "namespace": "vmbgp-shared", "uid": uid},
            "status": {"phase": phase}
        })
    }

    fn vmi_migrated(uid: &str, completed: bool) -> Value {
        json!({
            "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
            "metadata": {"name": "vm-0-1", "namespace": "vmbgp-shared"},
            "status": {"migrationState": {"migrationUid": uid, "completed": completed,
                       "sourceNode": "node-1", "targetNode": "node-2"}}
        })
    }

    fn started(m: &mut Migrations, round: u32, sent: u64) {
        let request = Request {
            verb: crate::kube::apply::Verb::Create,
            resource: VMIM,
            namespace: Some("vmbgp-shared".into()),
            name: format!("vm-0-1-mig-{round}"),
            sent: ms(sent),
            answered: ms(sent + 2),
            error: None,
            error_code: None,
            retries: 0,
        };
        m.observe(Observation::Request(&request));
    }

    /// VMIM Running 5 ms after `start`, the VMI's completed migrationState at `switchover`, the
    /// VMIM Succeeded at `done`.
    fn lifecycle(m: &mut Migrations, uid: &str, start: u64, switchover: u64, done: u64) {
        m.observe(Observation::Watch(&event(
            start + 5,
            VMIM,
            vmim_status(0, uid, "Running"),
        )));
        m.observe(Observation::Watch(&event(
            switchover,
            VMI,
            vmi_migrated(uid, true),
        )));
        m.observe(Observation::Watch(&event(
            done,
            VMIM,
            vmim_status(0, uid, "Succeeded"),
        )));
    }

    fn window(loss_ms: u64, recovered: Option<u64>, last_reply: u64) -> LossWindow {
        let period = LossPeriod {
            first_lost_probe: 10,
            lost: loss_ms,
            start: ms(1000),
            end: recovered.map(ms),
            loss_derived: Duration::from_millis(loss_ms),
            last_reply_before: Some(ms(999)),
            first_reply_after: recovered.map(ms),
            before_first_reply: false,
        };
        LossWindow {
            loss: LossSince {
                periods: 1,
                lost: loss_ms,
                loss_derived: Duration::from_millis(loss_ms),
                longest: Some(period),
                longest_reply_gap: recovered.map(|r| Duration::from_millis(r - 999)),
                recovered_at: recovered.map(ms),
                still_losing: recovered.is_none(),
            },
            last_reply: Some(ms(last_reply)),
        }
    }

    #[test]
    fn switch_over_is_the_completion_of_this_round_not_the_previous_one() {
        let mut m = Migrations::new(&[vmim(0), vmim(1)], &[vm()], 1000);
        let round0 = ("vmbgp-shared".to_string(), "vm-0-1-mig-0".to_string());
        let round1 = ("vmbgp-shared".to_string(), "vm-0-1-mig-1".to_string());
        assert_eq!(m.of_round(1)[0].1, ("vmbgp-shared".into(), "vm-0-1".into()));
        started(&mut m, 0, 500);
        lifecycle(&mut m, "u0", 500, 1010, 1020);
        assert!(m.finished(&round0) && !m.finished(&round1));
        m.record_window(&round0, Ok(window(8, Some(1008), 2500)));
        // Round 1 starts while the VMI still shows round 0's completed state: no switch-over yet.
        started(&mut m, 1, 3000);
        m.observe(Observation::Watch(&event(
            3001,
            VMI,
            vmi_migrated("u0", true),
        )));
        m.observe(Observation::Watch(&event(
            3005,
            VMIM,
            vmim_status(1, "u1", "Running"),
        )));
        m.observe(Observation::Watch(&event(
            3006,
            VMI,
            vmi_migrated("u1", false),
        )));

        let mut out = Samples::default();
        m.collect(Batch::MigrationRound(0), &mut out);
        assert_eq!(out.migrations.len(), 1);
        let s = &out.migrations[0];
        assert_eq!(s.target_node.as_deref(), Some("node-2"));
        assert_eq!(s.loss_period.observed().map(Timing::nanos), Some(8_000_000));
        assert_eq!(s.longest_gap.observed().map(Timing::nanos), Some(9_000_000));
        // The outage ended (1008) before the harness saw the switch-over (1010): reachable at once.
        assert_eq!(
            s.reachable_after_switchover.observed().map(Timing::nanos),
            Some(0)
        );
        assert!(matches!(s.next_hop_follow, Measured::NotApplicable { .. }));

        // Round 1 never completed: every value is missing with the reason, none is 0.
        m.collect(Batch::All, &mut out);
        let s = &out.migrations[1];
        assert!(matches!(
            &s.loss_period,
            Measured::Missing { reason } if reason.contains("did not complete")
        ));
    }

    #[test]
    fn an_outage_after_the_switch_over_is_the_time_to_reachability() {
        let mut m = Migrations::new(&[vmim(0)], &[vm()], 1000);
        let key = ("vmbgp-shared".to_string(), "vm-0-1-mig-0".to_string());
        started(&mut m, 0, 500);
        lifecycle(&mut m, "u0", 500, 990, 995);
        m.record_window(&key, Ok(window(40, Some(1040), 2500)));
        let mut out = Samples::default();
        m.collect(Batch::All, &mut out);
        assert_eq!(
            out.migrations[0]
                .reachable_after_switchover
                .observed()
                .map(Timing::nanos),
            Some(50_000_000)
        );
        // Still losing when the window closed: missing, not a number.
        let mut m = Migrations::new(&[vmim(0)], &[vm()], 1000);
        started(&mut m, 0, 500);
        lifecycle(&mut m, "u0", 500, 990, 995);
        m.record_window(&key, Ok(window(40, None, 999)));
        let mut out = Samples::default();
        m.collect(Batch::All, &mut out);
        assert!(matches!(
            out.migrations[0].reachable_after_switchover,
            Measured::Missing { .. }
        ));
    }

    fn route(at: u64, hops: &[u8]) -> FibEvent {
        let change = vmbgp_bgp::fib::RouteChange {
            at: ms(at),
            prefix: "198.19.200.10/32".parse().expect("prefix"),
            kind: if hops.is_empty() {
                RouteChangeKind::Removed
            } else {
                RouteChangeKind::Replaced
            },
            next_hops: hops.iter().map(|n| Ipv4Addr::new(198, 18, 0, *n)).collect(),
            interfaces: Vec::new(),
            nexthop_id: None,
            protocol: "bgp".into(),
            table: 254,
            metric: Some(20),
            route_type: "unicast".into(),
        };
        FibEvent::Route(change)
    }

    /// A host-route migration from node-1 to node-2 switched over at 1010, with the /32's FIB
    /// changes given; its next-hop follow.
    fn follow_with(fib: &[(u64, &[u8])]) -> Measured<Timing> {
        let nodes = (1..=2)
            .map(|n| (format!("node-{n}"), Ipv4Addr::new(198, 18, 0, n)))
            .collect();
        let mut m = Migrations::new(&[vmim(0)], &[vm()], 1000).following_host_routes(nodes, None);
        let key = ("vmbgp-shared".to_string(), "vm-0-1-mig-0".to_string());
        let mut running = vmi_migrated("u0", false);
        running["status"]["interfaces"] = json!([{"ipAddress": "198.19.200.10"}]);
        m.observe(Observation::Watch(&event(100, VMI, running)));
        m.observe(Observation::Fib(&route(200, &[1])));
        started(&mut m, 0, 500);
        lifecycle(&mut m, "u0", 500, 1010, 1020);
        for (at, hops) in fib {
            m.observe(Observation::Fib(&route(*at, hops)));
        }
        let followed = m.followed(&key);
        m.record_window(&key, Ok(window(8, Some(1008), 2500)));
        let mut out = Samples::default();
        m.collect(Batch::MigrationRound(0), &mut out);
        let follow = out.migrations.remove(0).next_hop_follow;
        assert_eq!(followed, follow.is_observed(), "{follow:?}");
        follow
    }

    #[test]
    fn next_hop_follow_runs_from_the_switch_over_to_the_target_node_alone() {
        // Make-before-break: both nodes, then the target alone.
        let follow = follow_with(&[(1100, &[1, 2]), (1150, &[2])]);
        assert_eq!(follow.observed().map(Timing::nanos), Some(140_000_000));
        // Already moved when the harness saw the switch-over.
        let follow = follow_with(&[(1005, &[2])]);
        assert_eq!(follow.observed().map(Timing::nanos), Some(0));
        // Withdrawn from the old node but never routed to the new one.
        let follow = follow_with(&[(1100, &[1, 2]), (1150, &[])]);
        let reason = follow.missing_reason().expect("missing");
        assert!(
            reason.contains("never routed 198.19.200.10/32 to the target node node-2"),
            "{reason}"
        );
    }

    /// A migration switched over at 1010 with the TCP stream's view `tcp`; its TCP values.
    fn tcp_with(tcp: Result<TcpWindow, String>) -> (Measured<bool>, Measured<Timing>) {
        let mut m = Migrations::new(&[vmim(0)], &[vm()], 1000);
        let key = ("vmbgp-shared".to_string(), "vm-0-1-mig-0".to_string());
        started(&mut m, 0, 500);
        lifecycle(&mut m, "u0", 500, 1010, 1020);
        m.record_tcp(&key, tcp);
        m.record_window(&key, Ok(window(8, Some(1008), 2500)));
        let mut out = Samples::default();
        m.collect(Batch::MigrationRound(0), &mut out);
        let s = out.migrations.remove(0);
        (s.tcp_survived, s.tcp_longest_stall)
    }

    fn stream(error: Option<&str>, last_progress: Option<u64>) -> Result<TcpWindow, String> {
        Ok(TcpWindow {
            error: error.map(str::to_string),
            last_progress: last_progress.map(ms),
            longest_stall: Measured::Observed(Duration::from_millis(30)),
            sample_every: Duration::from_millis(10),
        })
    }

    #[test]
    fn a_stream_survives_when_it_never_failed_and_progressed_after_the_switch_over() {
        let (survived, stall) = tcp_with(stream(None, Some(1500)));
        assert_eq!(survived, Measured::Observed(true));
        let stall = stall.observed().expect("stall");
        assert_eq!(
            (stall.nanos(), stall.resolution_millis()),
            (30_000_000, 10.0)
        );
        // Reset by the peer: observed as not survived, not as missing.
        let (survived, _) = tcp_with(stream(Some("send failed: reset"), Some(1500)));
        assert_eq!(survived, Measured::Observed(false));
        // Silent since before the switch-over.
        let (survived, _) = tcp_with(stream(None, Some(900)));
        assert_eq!(survived, Measured::Observed(false));
        let (survived, stall) = tcp_with(Err("the VM's address is not known".into()));
        let reason = survived.missing_reason().expect("missing");
        assert!(reason.contains("did not run: the VM's address"), "{reason}");
        assert!(stall.missing_reason().is_some());
    }
}
