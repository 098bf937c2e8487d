//! Phase orchestration of a run: watches → peering template → per iteration its networks (wait
//! until created and accepted) and its VMs at `--qps` (wait until ready; churn: delete and wait) →
//! migrations → cleanup by run label (`--gc`) → results. Every wait is bounded, by its own limit
//! and by the global `--timeout`; SIGINT/SIGTERM stop creating, keep what was measured, clean up.
//!
//! Here: the run loop, its waits and the create phases. `world` holds the cluster view and the
//! readiness predicates, `watches` the event sources, `throughput` the data-plane phases and
//! `cleanup` the run's end.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use vmbgp_reporters::samples::Samples;

use crate::clock::{MonoStamp, RunClock};
use crate::config::{Plan, Shape};
use crate::kube::apply::{Applier, ApplyError, Request, resource_for};
use crate::kube::watch::{Change, WatchMessage, spawn_watches};
use crate::kube::{
    CUDN, Cluster, FRR_CONFIGURATION, NAMESPACE, ROUTE_ADVERTISEMENTS, VIRTUAL_MACHINE, VMI, VMIM,
};
use crate::measure::bgp_sessions::{BgpSessions, SessionSource};
use crate::measure::egress::Egress;
use crate::measure::migration::Migrations;
use crate::measure::reachability::Reachability;
use crate::measure::route_convergence::{RouteConvergence, Sources};
use crate::measure::throughput::Throughput;
use crate::measure::vm_latency::VmLatency;
use crate::measure::{Batch, Measurement, Observation};
use crate::workload::Manifest;
use vmbgp_bgp::bmp::{BmpStation, BmpStationConfig};
use vmbgp_bgp::fib::{FibWatcher, FibWatcherConfig};

mod cleanup;
mod throughput;
mod watches;
mod world;

use watches::{forward, watch_specs};

use world::{World, migration_done, network_ready, vm_ready};

/// How long the watches may take to list what exists before the run starts.
pub const WATCH_SYNC_TIMEOUT: Duration = Duration::from_secs(60);
/// The external router's BGP sessions come up after the peering template is applied.
pub const SESSIONS_TIMEOUT: Duration = Duration::from_secs(120);
/// CUDN NetworkCreated, RouteAdvertisements Accepted, and the network's route observed at the
/// external router (OVN-K's e2e allows 5 s, 30 s and 30 s).
pub const NETWORK_READY_TIMEOUT: Duration = Duration::from_secs(120);
/// Every VM of an iteration ready (OVN-K's e2e allows 5 min per VMI).
pub const VM_READY_TIMEOUT: Duration = Duration::from_secs(600);
/// A migration completes (OVN-K's e2e allows 20 min).
pub const MIGRATION_TIMEOUT: Duration = Duration::from_secs(1200);
/// After a migration completes, how long its VM keeps the migration probe rate beyond the reply
/// timeout, so that loss right after the switch-over is inside the window.
pub const MIGRATION_HOLD: Duration = Duration::from_millis(500);
/// How long a migrated VM may take to answer probes again before its window is read anyway.
pub const MIGRATION_RECOVERY_TIMEOUT: Duration = Duration::from_secs(30);
/// Deleted objects are gone (churn deletes and the final cleanup).
pub const DELETE_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error("the watches did not list the cluster's objects within {0:?}")]
    WatchSync(Duration),
    /// One of the run's own objects already exists: another run holds the name, and measuring on
    /// would time someone else's object.
    #[error("{object} already exists{}; nothing more is created", match .owner {
        Some(uuid) => format!(" (left by run {uuid}: remove it with `vmbgp-bench destroy --uuid {uuid}`)"),
        None => " (not made by vmbgp-bench: delete it, or choose another --name-prefix)".to_string(),
    })]
    AlreadyExists {
        object: String,
        owner: Option<String>,
    },
}

/// Everything the run loop consumes, each already stamped where it was observed.
#[derive(Debug, Clone)]
pub enum RunEvent {
    Watch(WatchMessage),
    Bmp(vmbgp_bgp::bmp::BmpEvent),
    Fib(vmbgp_bgp::fib::FibEvent),
    Session(vmbgp_bgp::session::SessionEvent),
}

/// Polling the external router's BGP summary (`--session-source poll`).
#[derive(Clone)]
pub struct SessionPoll {
    pub cli: Arc<dyn vmbgp_bgp::vty::FrrCli>,
    pub interval: Duration,
}

impl std::fmt::Debug for SessionPoll {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionPoll")
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

/// Where the harness observes the external router (it runs on the router's host).
#[derive(Debug, Clone, Default)]
pub struct Observers {
    /// Network namespace of the BMP listener and the FIB watcher (`--netns`); `None`: this host's.
    pub netns: Option<String>,
    /// BMP listen address; `None`: BMP is not observed.
    pub bmp_listen: Option<std::net::SocketAddr>,
    /// The router addresses BMP is accepted from (`--bmp-allow`); any other connection is refused.
    pub bmp_allow: Vec<std::net::IpAddr>,
    /// Watch the kernel FIB.
    pub fib: bool,
    /// Next hops the external router should get for an advertised network (the node count).
    pub expected_next_hops: u64,
    /// Probe every VM with ICMP from `netns` (only where VM addresses are routed: the router's host).
    pub probe_vms: bool,
    /// Where the egress echo endpoint listens (in `netns`); `None`: egress is not measured.
    pub egress: Option<std::net::SocketAddr>,
    /// BGP sessions from polls instead of BMP (`None`: from BMP).
    pub session_poll: Option<SessionPoll>,
}

/// How long the run waits for an iteration's VMs to answer probes steadily.
pub const REACHABILITY_TIMEOUT: Duration = Duration::from_secs(60);
/// Waits re-check their condition at least this often (some sources, like probes, send no events).
const WAIT_RECHECK: Duration = Duration::from_millis(50);

/// The label kubevirt-ipam-controller puts on a claim: its VM's name.
const CLAIM_VM_LABEL: &str = "kubevirt.io/vm";

/// How long, after cleanup, the run waits for withdrawals still expected.
pub const WITHDRAW_TIMEOUT: Duration = Duration::from_secs(30);
/// How often cleanup looks for objects of the run that appeared after its deletes.
const CLEANUP_RECHECK: Duration = Duration::from_secs(2);
/// How long a settle waits before saying what it is still waiting for.
const SETTLE_QUIET: Duration = Duration::from_secs(3);
/// How often, after that, it says so again.
const SETTLE_REPORT_EVERY: Duration = Duration::from_secs(5);

/// Why the run stopped early, if it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Interrupted,
    TimedOut,
}

impl Stop {
    /// What cut the measurements short, as their reasons say it.
    pub fn describe(self) -> &'static str {
        match self {
            Stop::Interrupted => "the run was interrupted by a signal",
            Stop::TimedOut => "the run's global --timeout expired",
        }
    }
}

/// What the run did, for the caller to report and map to an exit code.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Harness-side failures: objects refused, waits that expired, cleanup left-overs.
    pub execution_errors: Vec<String>,
    /// A bounded wait expired (the exit-code table's 5, like the global timeout).
    pub wait_expired: bool,
    pub stopped: Option<Stop>,
    /// When the run loop ended.
    pub ended: Option<MonoStamp>,
    /// The external router's FRR version, from BMP.
    pub frr_version: Option<String>,
}

/// VM counts for progress reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// VMs the plan creates in all.
    pub total: u64,
    /// Create requests sent.
    pub created: u64,
    /// VMIs observed Running.
    pub running: u64,
    /// VMs observed ready.
    pub ready: u64,
    /// Create requests refused.
    pub failed: u64,
}

/// Receives each batch of samples as soon as it is final (the caller writes it to disk at once).
pub trait Sink: Send {
    fn batch(&mut self, samples: &Samples);
    /// A one-line note about a phase (iteration done, cleanup).
    fn progress(&mut self, line: &str);
    /// VM counts, at most every [`PROGRESS_INTERVAL`] and at phase ends.
    fn counts(&mut self, progress: &Progress);
}

/// How often VM counts are reported while the run waits or creates.
pub const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);

/// The run's measurements; the waits also ask them what has been observed.
struct Measurements {
    vm_latency: VmLatency,
    routes: RouteConvergence,
    reach: Reachability,
    sessions: BgpSessions,
    egress: Egress,
    throughput: Throughput,
    migrations: Migrations,
}

impl Measurements {
    fn all(&mut self) -> [&mut dyn Measurement; 7] {
        [
            &mut self.vm_latency,
            &mut self.routes,
            &mut self.reach,
            &mut self.sessions,
            &mut self.egress,
            &mut self.throughput,
            &mut self.migrations,
        ]
    }

    fn observe(&mut self, observation: Observation<'_>) {
        for m in self.all() {
            m.observe(observation);
        }
    }

    /// What every measurement still expects, in one list.
    fn outstanding(&mut self) -> Vec<String> {
        self.all().iter().flat_map(|m| m.outstanding()).collect()
    }

    /// Whether the external router's sessions are visible (BMP Peer Up or polls).
    fn sees_sessions(&self) -> bool {
        match self.sessions.source() {
            SessionSource::Bmp => self.routes.observes_bmp(),
            SessionSource::Poll => self.sessions.observed(),
        }
    }

    /// The external router's sessions that are up, as the session source shows them.
    fn peers_up(&self) -> usize {
        match self.sessions.source() {
            SessionSource::Bmp => self.routes.peers_up(),
            SessionSource::Poll => self.sessions.established(),
        }
    }
}

/// The run loop's state: the clock, the applier, the event stream and what it fed.
struct Runner<'a> {
    plan: &'a Plan,
    clock: RunClock,
    applier: Applier,
    events: UnboundedReceiver<RunEvent>,
    world: World,
    measurements: Measurements,
    cancel: CancellationToken,
    deadline: Instant,
    outcome: Outcome,
    sink: &'a mut dyn Sink,
    progress: Progress,
    last_progress: Option<Instant>,
    /// True while sending deletes, so they are not counted as creations.
    deleting: bool,
    /// BGP peers the external router should have (one per node).
    expected_peers: usize,
    /// VMs already counted as running / ready (a churned VM stays counted).
    running: BTreeSet<(String, String)>,
    ready: BTreeSet<(String, String)>,
}

/// Why a wait ended.
enum Waited {
    Done,
    Expired,
    Stopped(Stop),
}

impl Runner<'_> {
    /// Says what the BMP station refused or doubts: the first few of each kind, then at powers of
    /// two, so a storm of strangers cannot flood the log.
    fn report_bmp_finding(&mut self, bmp: &vmbgp_bgp::bmp::BmpEvent) {
        use vmbgp_bgp::bmp::{BmpEventKind, BmpMessage};
        let worth = |nth: u64| nth <= 3 || nth.is_power_of_two();
        match &bmp.kind {
            BmpEventKind::Refused { remote, nth, .. } if worth(*nth) => self.progress(format!(
                "BMP: refused a connection from {remote}, not in --bmp-allow ({nth} so far)"
            )),
            BmpEventKind::DuplicateRouter {
                remote,
                existing_connection,
                nth,
            } if worth(*nth) => self.progress(format!(
                "BMP: connection {} from {remote} claims a router already on connection \
                 {existing_connection}; the first stays authoritative ({nth} so far)",
                bmp.connection
            )),
            BmpEventKind::WarningsSuppressed { suppressed, .. } => tracing::warn!(
                "BMP connection {}: {suppressed} more decoder warnings",
                bmp.connection
            ),
            BmpEventKind::Message(BmpMessage::Malformed(m)) => tracing::warn!(
                connection = bmp.connection,
                error = %m.error,
                "BMP: malformed message"
            ),
            _ => {}
        }
    }

    fn feed(&mut self, event: &RunEvent) {
        let message = match event {
            RunEvent::Watch(message) => message,
            RunEvent::Bmp(bmp) => {
                self.report_bmp_finding(bmp);
                self.measurements.observe(Observation::Bmp(bmp));
                return;
            }
            RunEvent::Fib(vmbgp_bgp::fib::FibEvent::NormalPriority { why }) => {
                self.progress(format!("FIB watcher: {why}"));
                return;
            }
            RunEvent::Fib(fib) => {
                self.measurements.observe(Observation::Fib(fib));
                return;
            }
            RunEvent::Session(session) => {
                self.measurements.observe(Observation::Session(session));
                return;
            }
        };
        self.world.apply(message);
        self.measurements.observe(Observation::Watch(message));
        if let WatchMessage::Object {
            resource,
            object,
            change: Change::Applied,
            ..
        } = message
            && (*resource == VMI || *resource == VIRTUAL_MACHINE)
        {
            let key = (
                object.metadata.namespace.clone().unwrap_or_default(),
                object.metadata.name.clone().unwrap_or_default(),
            );
            if *resource == VMI && object.data["status"]["phase"] == "Running" {
                self.running.insert(key.clone());
            }
            if vm_ready(&self.world, &key.0, &key.1) {
                self.ready.insert(key);
            }
            self.report_counts(false);
        }
    }

    /// Reports VM counts, at most every PROGRESS_INTERVAL unless `force`.
    fn report_counts(&mut self, force: bool) {
        let now = Instant::now();
        if !force
            && self
                .last_progress
                .is_some_and(|t| now.duration_since(t) < PROGRESS_INTERVAL)
        {
            return;
        }
        self.last_progress = Some(now);
        self.progress.running = self.running.len() as u64;
        self.progress.ready = self.ready.len() as u64;
        self.sink.counts(&self.progress);
    }

    fn record_request(&mut self, request: &Request) {
        self.measurements.observe(Observation::Request(request));
        if request.resource == VIRTUAL_MACHINE
            && self
                .plan
                .vms
                .iter()
                .any(|v| v.name == request.name && Some(&v.namespace) == request.namespace.as_ref())
        {
            // Deletes of VMs (churn, cleanup) are not creations.
            if !self.deleting {
                self.progress.created += 1;
                if request.error.is_some() {
                    self.progress.failed += 1;
                }
                self.report_counts(false);
            }
        }
        if let Some(error) = &request.error {
            self.outcome.execution_errors.push(format!(
                "{} {}{}: {error}",
                request.resource.kind,
                request
                    .namespace
                    .as_deref()
                    .map(|ns| format!("{ns}/"))
                    .unwrap_or_default(),
                request.name
            ));
        }
    }

    fn stop_reason(&self) -> Option<Stop> {
        if self.cancel.is_cancelled() {
            Some(Stop::Interrupted)
        } else if Instant::now() >= self.deadline {
            Some(Stop::TimedOut)
        } else {
            None
        }
    }

    /// Processes events until `done` holds, `limit` passes, or the run must stop.
    async fn wait_until(
        &mut self,
        limit: Duration,
        done: impl Fn(&World, &Measurements) -> bool,
    ) -> Waited {
        let until = (Instant::now() + limit).min(self.deadline);
        loop {
            // Apply everything already queued before judging.
            while let Ok(message) = self.events.try_recv() {
                self.feed(&message);
            }
            if done(&self.world, &self.measurements) {
                return Waited::Done;
            }
            if self.cancel.is_cancelled() {
                return Waited::Stopped(Stop::Interrupted);
            }
            let received = tokio::select! {
                _ = self.cancel.cancelled() => return Waited::Stopped(Stop::Interrupted),
                _ = tokio::time::sleep_until(until) => None,
                _ = tokio::time::sleep(WAIT_RECHECK) => continue,
                message = self.events.recv() => message,
            };
            match received {
                Some(message) => self.feed(&message),
                None if Instant::now() >= self.deadline => return Waited::Stopped(Stop::TimedOut),
                None if Instant::now() >= until => return Waited::Expired,
                // The channel closed: every watch ended, nothing more will arrive.
                None => return Waited::Expired,
            }
        }
    }

    /// Waits, turning an expiry into an execution error naming what did not happen.
    async fn wait_for(
        &mut self,
        what: &str,
        limit: Duration,
        done: impl Fn(&World, &Measurements) -> bool,
    ) -> Result<(), Stop> {
        match self.wait_until(limit, done).await {
            Waited::Done => Ok(()),
            Waited::Expired => {
                self.outcome.wait_expired = true;
                self.outcome.execution_errors.push(format!(
                    "timed out after {}: {what}",
                    humantime::format_duration(limit)
                ));
                Ok(())
            }
            Waited::Stopped(stop) => Err(stop),
        }
    }

    async fn create_all(&mut self, manifests: &[&Manifest]) -> Result<(), RunError> {
        for manifest in manifests {
            if self.stop_reason().is_some() {
                return Ok(());
            }
            let request = self.applier.create(&manifest.object).await?;
            self.record_request(&request);
            if request.error_code == Some(409) {
                let owner = self
                    .applier
                    .owner_uuid(
                        &request.resource,
                        request.namespace.as_deref(),
                        &request.name,
                    )
                    .await;
                return Err(RunError::AlreadyExists {
                    object: format!(
                        "{} {}{}",
                        request.resource.kind,
                        request
                            .namespace
                            .as_deref()
                            .map(|ns| format!("{ns}/"))
                            .unwrap_or_default(),
                        request.name
                    ),
                    owner,
                });
            }
            // Keep the world current while creating, so waits start from fresh state.
            while let Ok(message) = self.events.try_recv() {
                self.feed(&message);
            }
        }
        Ok(())
    }

    fn collect(&mut self, batch: Batch) {
        let mut samples = Samples::default();
        for m in self.measurements.all() {
            m.collect(batch, &mut samples);
        }
        if !samples.is_empty() {
            // Handed over, not kept: the sink writes them and the run needs them no more.
            self.sink.batch(&samples);
        }
    }

    /// [`Batch::All`] of the measurements whose kind `pick` selects (see the end of [`run`]).
    fn collect_all_where(
        &mut self,
        pick: impl Fn(vmbgp_reporters::samples::MeasurementKind) -> bool,
    ) {
        let mut samples = Samples::default();
        for m in self.measurements.all() {
            if pick(m.kind()) {
                m.collect(Batch::All, &mut samples);
            }
        }
        if !samples.is_empty() {
            self.sink.batch(&samples);
        }
    }

    fn progress(&mut self, line: String) {
        self.sink.progress(&line);
    }

    async fn run(&mut self, manifests: &[Manifest]) -> Result<(), RunError> {
        let plan = self.plan;
        let of_kind = |kind: &str, iteration: u32| -> Vec<&Manifest> {
            manifests
                .iter()
                .filter(|m| m.kind() == kind && m.iteration == iteration)
                .collect()
        };
        if let Some(why) = self.measurements.reach.normal_priority() {
            self.progress(format!("ICMP prober: {why}"));
        }
        // Run-wide: the peering template, then the sessions it brings up (so no network's
        // convergence includes session establishment).
        self.create_all(&of_kind(FRR_CONFIGURATION.kind, 0)).await?;
        if self.measurements.sees_sessions() && self.expected_peers > 0 {
            let peers = self.expected_peers;
            let what = match self.measurements.sessions.source() {
                SessionSource::Bmp => format!(
                    "the external router's BGP sessions with {peers} nodes established (BMP Peer Up)"
                ),
                SessionSource::Poll => format!(
                    "the external router's BGP sessions with {peers} nodes established (polled)"
                ),
            };
            if let Err(stop) = self
                .wait_for(&what, SESSIONS_TIMEOUT, |_, m| m.peers_up() >= peers)
                .await
            {
                self.outcome.stopped = Some(stop);
                return Ok(());
            }
            let up = self.measurements.peers_up();
            self.progress(format!("BGP sessions up: {up} of {peers}"));
            // Session stability is observed from here until cleanup removes the peering.
            let now = self.clock.now();
            self.measurements.sessions.open(now);
        }
        let vm_iterations = match plan.shape {
            Shape::Migration => 1,
            Shape::Scale | Shape::Churn => plan.iterations,
        };
        for iteration in 0..vm_iterations {
            if let Some(stop) = self.stop_reason() {
                self.outcome.stopped = Some(stop);
                return Ok(());
            }
            let networks: Vec<&Manifest> = manifests
                .iter()
                .filter(|m| {
                    m.iteration == iteration
                        && [NAMESPACE.kind, CUDN.kind, ROUTE_ADVERTISEMENTS.kind]
                            .contains(&m.kind())
                })
                .collect();
            self.create_all(&networks).await?;
            let names: Vec<String> = plan
                .networks
                .iter()
                .filter(|n| n.iteration == iteration)
                .map(|n| n.name.clone())
                .collect();
            if !names.is_empty() {
                let what = format!("networks {} created and advertised", names.join(", "));
                if let Err(stop) = self
                    .wait_for(&what, NETWORK_READY_TIMEOUT, |w, m| {
                        names
                            .iter()
                            .all(|n| network_ready(w, n) && m.routes.advertised(n))
                    })
                    .await
                {
                    self.outcome.stopped = Some(stop);
                    return Ok(());
                }
            }
            let vms = of_kind(VIRTUAL_MACHINE.kind, iteration);
            self.create_all(&vms).await?;
            let keys: Vec<(String, String)> = vms
                .iter()
                .map(|m| {
                    (
                        m.namespace().unwrap_or_default().to_string(),
                        m.name().to_string(),
                    )
                })
                .collect();
            let what = format!("{} VMs of iteration {iteration} ready", keys.len());
            let waited = self
                .wait_for(&what, VM_READY_TIMEOUT, |w, _| {
                    keys.iter().all(|(ns, n)| vm_ready(w, ns, n))
                })
                .await;
            let ready = keys
                .iter()
                .filter(|(ns, n)| vm_ready(&self.world, ns, n))
                .count();
            if waited.is_ok() && self.measurements.reach.active() {
                // A VM that never answers is a finding of the run (its first reply is reported
                // missing and fails the reachability threshold), not a harness failure. A scale
                // run goes on once every VM answered (their streams reach "sustained" meanwhile,
                // awaited once at the end); churn deletes the VMs next, throughput needs steady
                // VMs, and migrations start from steady streams, so those wait for "sustained".
                let steady = plan.shape != Shape::Scale
                    || self.measurements.throughput.tests_iteration(iteration);
                match self
                    .wait_until(REACHABILITY_TIMEOUT, |_, m| {
                        if steady {
                            m.reach.sustained(&keys)
                        } else {
                            m.reach.answered(&keys)
                        }
                    })
                    .await
                {
                    Waited::Done => {}
                    Waited::Expired => {
                        let silent = keys
                            .iter()
                            .filter(|k| self.measurements.reach.reachable(k).is_err())
                            .count();
                        self.progress(format!(
                            "iteration {}: {silent} VM(s) not answering probes steadily after {}; \
                             reported as such",
                            iteration + 1,
                            humantime::format_duration(REACHABILITY_TIMEOUT)
                        ));
                    }
                    Waited::Stopped(stop) => {
                        self.outcome.stopped = Some(stop);
                        return Ok(());
                    }
                }
            }
            if self.measurements.throughput.tests_iteration(iteration)
                && let Err(stop) = self.measure_throughput(iteration).await
            {
                self.outcome.stopped = Some(stop);
                return Ok(());
            }
            if plan.shape == Shape::Churn {
                // Their streams end before the VMs are deleted: deletion is not loss.
                self.measurements.reach.finish_vms(&keys).await;
            }
            // Churn collects once its VMs and claims are gone: claim release is part of the sample.
            if plan.shape == Shape::Scale {
                self.collect(Batch::Iteration(iteration));
            }
            self.progress(format!(
                "iteration {}/{}: {} VMs created, {ready} ready",
                iteration + 1,
                vm_iterations,
                keys.len()
            ));
            if let Err(stop) = waited {
                self.outcome.stopped = Some(stop);
                return Ok(());
            }
            self.report_counts(true);
            if plan.shape == Shape::Churn {
                self.deleting = true;
                for (ns, name) in &keys {
                    let request = self.applier.delete(&VIRTUAL_MACHINE, Some(ns), name).await;
                    self.record_request(&request);
                }
                self.deleting = false;
                // OVN-K holds a VM's address until its IPAMClaim is gone: the next iteration's VM
                // with the same static IP could otherwise meet IPAddressConflict.
                let what = format!("VMs of iteration {iteration} and their IPAMClaims deleted");
                if let Err(stop) = self
                    .wait_for(&what, DELETE_TIMEOUT, |w, _| {
                        keys.iter().all(|(ns, n)| {
                            w.get(&VMI, Some(ns), n).is_none()
                                && w.get(&VIRTUAL_MACHINE, Some(ns), n).is_none()
                                && !w.has_claims_of(ns, n)
                        })
                    })
                    .await
                {
                    self.outcome.stopped = Some(stop);
                    return Ok(());
                }
                self.collect(Batch::Iteration(iteration));
            }
        }
        if plan.shape == Shape::Scale
            && self.measurements.reach.active()
            && let Err(stop) = self.await_steady_streams().await
        {
            self.outcome.stopped = Some(stop);
            return Ok(());
        }
        if plan.shape == Shape::Migration {
            for round in 0..plan.iterations {
                if let Some(stop) = self.stop_reason() {
                    self.outcome.stopped = Some(stop);
                    return Ok(());
                }
                let migrations = of_kind(VMIM.kind, round);
                let moving = self.measurements.migrations.of_round(round);
                // The stream runs at the migration rate from before t0 until the VM answers again.
                let window_start = self.clock.now();
                let mut windows = Vec::new();
                for (vmim, vm) in &moving {
                    match self.measurements.reach.migration_rate(vm, true) {
                        Ok(()) => windows.push((vmim.clone(), vm.clone())),
                        Err(why) => self.measurements.migrations.record_window(vmim, Err(why)),
                    }
                }
                self.create_all(&migrations).await?;
                let keys: Vec<(String, String)> = moving.iter().map(|(k, _)| k.clone()).collect();
                let what = format!("{} migrations of round {round} completed", keys.len());
                if let Err(stop) = self
                    .wait_for(&what, MIGRATION_TIMEOUT, |w, m| {
                        keys.iter()
                            .all(|k| migration_done(w, &k.0, &k.1) || m.migrations.finished(k))
                    })
                    .await
                {
                    self.outcome.stopped = Some(stop);
                    return Ok(());
                }
                if let Err(stop) = self.close_loss_windows(window_start, &windows).await {
                    self.outcome.stopped = Some(stop);
                    return Ok(());
                }
                self.collect(Batch::MigrationRound(round));
                self.progress(format!(
                    "migration round {}/{}: {} migrations done",
                    round + 1,
                    plan.iterations,
                    keys.len()
                ));
            }
        }
        Ok(())
    }
}

/// Runs the plan against a cluster. `manifests` are the rendered objects in apply order.
pub async fn run(
    plan: &Plan,
    cluster: &Cluster,
    clock: RunClock,
    manifests: &[Manifest],
    observers: &Observers,
    cancel: CancellationToken,
    sink: &mut dyn Sink,
) -> Result<Outcome, RunError> {
    for manifest in manifests {
        if resource_for(manifest.api_version(), manifest.kind()).is_none() {
            return Err(RunError::Apply(ApplyError::UnknownKind {
                api_version: manifest.api_version().to_string(),
                kind: manifest.kind().to_string(),
                name: manifest.name().to_string(),
            }));
        }
    }
    let (tx, rx) = unbounded_channel::<RunEvent>();
    let watch_cancel = CancellationToken::new();
    let mut tasks = Vec::new();
    let mut sources = Sources {
        bmp_off: Some("BMP is not observed in this run (no BMP listen address)".into()),
        fib_off: Some("the external router's FIB is not observed in this run".into()),
        withdraw_measured: plan.gc,
    };
    let mut station = None;
    if let Some(listen) = observers.bmp_listen {
        let mut config = BmpStationConfig::new(listen, observers.bmp_allow.iter().copied());
        if let Some(netns) = &observers.netns {
            config = config.in_netns(netns.clone());
        }
        match BmpStation::start(config, clock).await {
            Ok((started, bmp_rx)) => {
                sink.progress(&format!(
                    "BMP station listening on {}",
                    started.local_addr()
                ));
                tasks.push(forward(
                    bmp_rx,
                    tx.clone(),
                    RunEvent::Bmp,
                    watch_cancel.clone(),
                ));
                station = Some(started);
                sources.bmp_off = None;
            }
            Err(e) => {
                let reason = format!("the BMP station could not listen on {listen}: {e}");
                sink.progress(&reason);
                sources.bmp_off = Some(reason);
            }
        }
    }
    let mut fib_watcher = None;
    if observers.fib {
        let mut config = FibWatcherConfig::new();
        if let Some(netns) = &observers.netns {
            config = config.in_netns(netns.clone());
        }
        match FibWatcher::start(config, clock).await {
            Ok((started, fib_rx)) => {
                tasks.push(forward(
                    fib_rx,
                    tx.clone(),
                    RunEvent::Fib,
                    watch_cancel.clone(),
                ));
                fib_watcher = Some(started);
                sources.fib_off = None;
            }
            Err(e) => {
                let reason = format!("the FIB watcher could not start: {e}");
                sink.progress(&reason);
                sources.fib_off = Some(reason);
            }
        }
    }
    let sources_bmp_off = sources.bmp_off.clone();
    let poller = observers.session_poll.as_ref().map(|poll| {
        let config = vmbgp_bgp::session::SessionPollerConfig::new(poll.interval);
        let (poller, poll_rx) =
            vmbgp_bgp::session::SessionPoller::spawn(Arc::clone(&poll.cli), clock, config);
        tasks.push(forward(
            poll_rx,
            tx.clone(),
            RunEvent::Session,
            watch_cancel.clone(),
        ));
        poller
    });
    let reach = if observers.probe_vms {
        Reachability::start(clock, observers.netns.clone(), &plan.probes, &plan.vms)
    } else {
        Reachability::disabled(&plan.probes, &plan.vms)
    };
    if let Err(reason) = reach.status() {
        sink.progress(reason);
    }
    let egress = match observers.egress {
        Some(listen) => Egress::start(clock, observers.netns.clone(), listen, &plan.vms).await,
        None => Egress::disabled("the egress endpoint is not run in this run", &plan.vms),
    };
    if let Err(reason) = egress.status() {
        sink.progress(reason);
    }
    let (watch_tx, watch_rx) = unbounded_channel::<WatchMessage>();
    tasks.extend(spawn_watches(
        &cluster.client,
        clock,
        watch_specs(plan),
        watch_tx,
        watch_cancel.clone(),
    ));
    tasks.push(forward(watch_rx, tx, RunEvent::Watch, watch_cancel.clone()));
    let mut runner = Runner {
        plan,
        clock,
        applier: Applier::new(
            cluster.exact.clone(),
            clock,
            plan.qps,
            plan.burst,
            cluster.retries.clone(),
        ),
        events: rx,
        world: World::new(&plan.uuid, &plan.vms),
        measurements: Measurements {
            vm_latency: VmLatency::new(&plan.vms, plan.shape == Shape::Churn),
            routes: RouteConvergence::new(&plan.networks, observers.expected_next_hops, sources),
            reach,
            sessions: match &observers.session_poll {
                Some(_) => BgpSessions::new(SessionSource::Poll, None),
                None => BgpSessions::new(SessionSource::Bmp, sources_bmp_off),
            },
            egress,
            migrations: Migrations::new(manifests, &plan.vms, plan.probes.migration_rate),
            throughput: Throughput::new(
                clock,
                observers.netns.clone(),
                &plan.probes,
                plan.vm_template.sink_port,
                (!observers.probe_vms)
                    .then(|| "VMs were not probed in this run (--probe-vms false)".to_string()),
            ),
        },
        expected_peers: observers.expected_next_hops as usize,
        cancel,
        deadline: Instant::now() + plan.timeout,
        outcome: Outcome::default(),
        sink,
        progress: Progress {
            total: plan.vms.len() as u64,
            ..Progress::default()
        },
        last_progress: None,
        deleting: false,
        running: BTreeSet::new(),
        ready: BTreeSet::new(),
    };
    let kinds = watch_specs(plan).len();
    let synced = runner
        .wait_until(WATCH_SYNC_TIMEOUT, |w, _| w.synced.len() >= kinds)
        .await;
    let result = match synced {
        Waited::Done => runner.run(manifests).await,
        Waited::Expired => Err(RunError::WatchSync(WATCH_SYNC_TIMEOUT)),
        Waited::Stopped(stop) => {
            runner.outcome.stopped = Some(stop);
            Ok(())
        }
    };
    match runner.outcome.stopped {
        Some(Stop::Interrupted) => runner
            .outcome
            .execution_errors
            .push("interrupted by a signal".to_string()),
        Some(Stop::TimedOut) => runner.outcome.execution_errors.push(format!(
            "the global --timeout of {} expired",
            humantime::format_duration(plan.timeout)
        )),
        None => {}
    }
    runner.finish_measuring().await;
    // Whatever happened, what was measured is kept: everything is final now but route convergence,
    // whose withdrawals cleanup measures, and is written before cleanup, so a run killed during
    // cleanup keeps it; route convergence follows after cleanup.
    let routes = |kind| kind == vmbgp_reporters::samples::MeasurementKind::RouteConvergence;
    runner.collect_all_where(|kind| !routes(kind));
    if plan.gc {
        runner.cleanup().await;
    }
    runner.collect_all_where(routes);
    runner.measurements.egress.shutdown().await;
    runner.outcome.ended = Some(runner.clock.now());
    runner.outcome.frr_version = runner.measurements.routes.frr_version().map(str::to_string);
    watch_cancel.cancel();
    for task in tasks {
        let _ = task.await;
    }
    if let Some(station) = station {
        station.stop().await;
    }
    if let Some(watcher) = fib_watcher {
        watcher.stop().await;
    }
    if let Some(poller) = poller {
        poller.stop().await;
    }
    result.map(|()| runner.outcome)
}
