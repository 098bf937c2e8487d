//! Phase orchestration of a run: watches → peering template → per iteration its networks (wait
//! until created and accepted) and its VMs at `--qps` (wait until ready; churn: delete and wait) →
//! migrations → cleanup by run label (`--gc`) → results. Every wait is bounded, by its own limit
//! and by the global `--timeout`; SIGINT/SIGTERM stop creating, keep what was measured, clean up.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use kube::api::DynamicObject;
use serde_json::Value;
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use vmbgp_reporters::input::Samples;

use crate::clock::{MonoStamp, RunClock};
use crate::config::{Plan, Shape, VmSpec};
use crate::kube::apply::{Applier, ApplyError, Request, resource_for};
use crate::kube::watch::{Change, WatchMessage, WatchSpec, spawn_watches};
use crate::kube::{
    CUDN, Cluster, FRR_CONFIGURATION, IPAM_CLAIM, NAMESPACE, ROUTE_ADVERTISEMENTS, Resource,
    VIRTUAL_MACHINE, VMI, VMIM,
};
use crate::measure::bgp_sessions::{BgpSessions, SessionSource};
use crate::measure::egress::Egress;
use crate::measure::migration::Migrations;
use crate::measure::reachability::Reachability;
use crate::measure::route_convergence::{RouteConvergence, Sources};
use crate::measure::throughput::{Candidate, Throughput};
use crate::measure::vm_latency::VmLatency;
use crate::measure::{Batch, Measurement, ObjectKey, Observation};
use crate::workload::{Manifest, labels};
use vmbgp_bgp::bmp::{BmpStation, BmpStationConfig};
use vmbgp_bgp::fib::{FibWatcher, FibWatcherConfig};

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

/// What the waits and the cleanup read of an object: a few fields, not the object (a run watches
/// thousands of objects; keeping them whole was most of the harness's memory).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct ObjectState {
    /// Labelled with this run's uuid.
    in_run: bool,
    /// `metadata.deletionTimestamp` is set.
    deleting: bool,
    /// `status.phase`.
    phase: Option<Box<str>>,
    /// The `Ready` condition is True, or `status.ready` (VirtualMachine).
    ready: bool,
    /// `status.status` is Accepted, or the `Accepted` condition is True (RouteAdvertisements).
    accepted: bool,
    /// The `NetworkCreated` condition is True (ClusterUserDefinedNetwork).
    network_created: bool,
}

impl ObjectState {
    fn of(object: &DynamicObject, uuid: &str) -> Self {
        let status = &object.data["status"];
        ObjectState {
            in_run: object
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(labels::UUID))
                .is_some_and(|v| v == uuid),
            deleting: object.metadata.deletion_timestamp.is_some(),
            phase: status["phase"].as_str().map(Into::into),
            ready: condition_true(object, "Ready") || status["ready"] == Value::Bool(true),
            accepted: status["status"] == "Accepted" || condition_true(object, "Accepted"),
            network_created: condition_true(object, "NetworkCreated"),
        }
    }

    fn phase_is(&self, phase: &str) -> bool {
        self.phase.as_deref() == Some(phase)
    }
}

/// The last state of every object the watches reported, for the waits.
#[derive(Debug, Default)]
struct World {
    /// The run's uuid (its objects' label value).
    uuid: String,
    /// (namespace, name) of the run's VMs: claims carry no run label, only their VM's name.
    run_vms: HashSet<(String, String)>,
    objects: HashMap<(&'static str, String, String), ObjectState>,
    synced: BTreeSet<&'static str>,
    /// Kinds being (re-)listed, with the objects the list delivered so far: at `Synced`, objects of
    /// the kind it did not deliver were deleted while the watch was down (410 Gone) and are dropped.
    relisting: HashMap<&'static str, HashSet<(String, String)>>,
}

impl World {
    fn new(uuid: &str, vms: &[VmSpec]) -> Self {
        World {
            uuid: uuid.to_string(),
            run_vms: vms
                .iter()
                .map(|vm| (vm.namespace.clone(), vm.name.clone()))
                .collect(),
            ..World::default()
        }
    }

    /// Whether an object the watches delivered is this run's business. Kinds the harness creates are
    /// watched by run label; IPAMClaims, made by kubevirt-ipam-controller, are watched by
    /// `kubevirt.io/vm` across the cluster, so only those of this run's VMs count.
    fn concerns_run(&self, resource: &Resource, object: &DynamicObject) -> bool {
        if resource.plural != IPAM_CLAIM.plural {
            return true;
        }
        let namespace = object.metadata.namespace.clone().unwrap_or_default();
        let vm = object
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(CLAIM_VM_LABEL))
            .cloned()
            .unwrap_or_default();
        self.run_vms.contains(&(namespace, vm))
    }

    fn key(
        resource: &Resource,
        namespace: Option<&str>,
        name: &str,
    ) -> (&'static str, String, String) {
        (
            resource.plural,
            namespace.unwrap_or_default().to_string(),
            name.to_string(),
        )
    }

    fn apply(&mut self, message: &WatchMessage) {
        match message {
            WatchMessage::Object {
                resource,
                change,
                object,
                ..
            } => {
                if !self.concerns_run(resource, object) {
                    return;
                }
                let name = object.metadata.name.as_deref().unwrap_or_default();
                let key = Self::key(resource, object.metadata.namespace.as_deref(), name);
                if let Some(listed) = self.relisting.get_mut(resource.plural) {
                    listed.insert((key.1.clone(), key.2.clone()));
                }
                match change {
                    Change::Applied => {
                        self.objects
                            .insert(key, ObjectState::of(object, &self.uuid));
                    }
                    Change::Deleted => {
                        self.objects.remove(&key);
                    }
                }
            }
            WatchMessage::Relisting { resource, .. } => {
                self.relisting.insert(resource.plural, HashSet::new());
            }
            WatchMessage::Synced { resource, .. } => {
                if let Some(listed) = self.relisting.remove(resource.plural) {
                    self.objects.retain(|(plural, ns, name), _| {
                        *plural != resource.plural || listed.contains(&(ns.clone(), name.clone()))
                    });
                }
                self.synced.insert(resource.plural);
            }
            WatchMessage::Error { .. } => {}
        }
    }

    fn get(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<&ObjectState> {
        self.objects.get(&Self::key(resource, namespace, name))
    }

    /// Whether any IPAMClaim of VM `vm` in `namespace` is still there. kubevirt-ipam-controller names
    /// a VM's claims `<vm>.<network>`, one per network.
    fn has_claims_of(&self, namespace: &str, vm: &str) -> bool {
        let prefix = format!("{vm}.");
        self.objects.keys().any(|(plural, ns, name)| {
            *plural == IPAM_CLAIM.plural && ns == namespace && name.starts_with(&prefix)
        })
    }
}

fn condition_true(object: &DynamicObject, kind: &str) -> bool {
    object.data["status"]["conditions"]
        .as_array()
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c["type"] == kind && c["status"] == "True")
        })
}

/// A VM counts as ready when its VM reports Ready and its VMI runs.
fn vm_ready(world: &World, namespace: &str, name: &str) -> bool {
    world
        .get(&VIRTUAL_MACHINE, Some(namespace), name)
        .is_some_and(|vm| vm.ready)
        && world
            .get(&VMI, Some(namespace), name)
            .is_some_and(|vmi| vmi.phase_is("Running"))
}

fn network_ready(world: &World, name: &str) -> bool {
    world
        .get(&CUDN, None, name)
        .is_some_and(|o| o.network_created)
        && world
            .get(&ROUTE_ADVERTISEMENTS, None, name)
            .is_some_and(|o| o.accepted)
}

fn migration_done(world: &World, namespace: &str, name: &str) -> bool {
    world
        .get(&VMIM, Some(namespace), name)
        .is_some_and(|m| m.phase_is("Succeeded") || m.phase_is("Failed"))
}

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
        pick: impl Fn(vmbgp_reporters::input::MeasurementKind) -> bool,
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

    /// The end of a scale run's creations: every VM's stream reaches sustained reachability (or
    /// the bound passes; such VMs are reported with the reason).
    async fn await_steady_streams(&mut self) -> Result<(), Stop> {
        let keys: Vec<ObjectKey> = self
            .plan
            .vms
            .iter()
            .map(|vm| (vm.namespace.clone(), vm.name.clone()))
            .collect();
        match self
            .wait_until(REACHABILITY_TIMEOUT, |_, m| m.reach.sustained(&keys))
            .await
        {
            Waited::Done => Ok(()),
            Waited::Expired => {
                self.progress(format!(
                    "VMs not answering probes steadily after {}; reported as such",
                    humantime::format_duration(REACHABILITY_TIMEOUT)
                ));
                Ok(())
            }
            Waited::Stopped(stop) => Err(stop),
        }
    }

    /// After a round's migrations: waits until every moved VM answers again (loss is known only
    /// a reply timeout after the probe), then hands each migration its stream's loss window and
    /// returns the streams to the steady rate.
    async fn close_loss_windows(
        &mut self,
        since: MonoStamp,
        windows: &[(ObjectKey, ObjectKey)],
    ) -> Result<(), Stop> {
        let hold = self.measurements.reach.reply_timeout() + MIGRATION_HOLD;
        if let Waited::Stopped(stop) = self.wait_until(hold, |_, _| false).await {
            return Err(stop);
        }
        let after = self.clock.now();
        let what = format!("{} migrated VMs answering probes again", windows.len());
        self.wait_for(&what, MIGRATION_RECOVERY_TIMEOUT, |_, m| {
            windows
                .iter()
                .all(|(_, vm)| m.reach.answering_after(vm, after))
        })
        .await?;
        for (vmim, vm) in windows {
            let window = self.measurements.reach.loss_since(vm, since);
            self.measurements.migrations.record_window(vmim, window);
            if let Err(why) = self.measurements.reach.migration_rate(vm, false) {
                self.outcome
                    .execution_errors
                    .push(format!("{}/{}: {why}", vm.0, vm.1));
            }
        }
        Ok(())
    }

    /// TCP throughput to the iteration's first reachable VMs, one at a time, while nothing else
    /// is created (a saturating stream would distort the other measurements).
    async fn measure_throughput(&mut self, iteration: u32) -> Result<(), Stop> {
        let candidates: Vec<Candidate> = self
            .plan
            .vms
            .iter()
            .filter(|vm| vm.iteration == iteration)
            .map(|vm| {
                let key = (vm.namespace.clone(), vm.name.clone());
                Candidate {
                    vm: vm.clone(),
                    address: self.measurements.reach.address(&key),
                    unusable: self.measurements.reach.reachable(&key).err(),
                }
            })
            .collect();
        // Reachable VMs first; unreachable ones are tested (reported missing) only if too few answer.
        let (mut picked, rest): (Vec<_>, Vec<_>) =
            candidates.into_iter().partition(|c| c.unusable.is_none());
        picked.extend(rest);
        self.progress(format!(
            "iteration {}: TCP throughput to {} VM(s), {} each",
            iteration + 1,
            self.plan.probes.throughput_vms,
            humantime::format_duration(self.plan.probes.throughput_duration)
        ));
        let cancel = self.cancel.clone();
        let until = (Instant::now() + self.measurements.throughput.budget()).min(self.deadline);
        let result = tokio::select! {
            () = self.measurements.throughput.test(iteration, picked.clone()) => Ok(()),
            () = cancel.cancelled() => Err(Stop::Interrupted),
            () = tokio::time::sleep_until(until) => match self.stop_reason() {
                Some(stop) => Err(stop),
                None => {
                    self.outcome.execution_errors.push(format!(
                        "throughput tests of iteration {iteration} did not end within their budget"
                    ));
                    self.measurements.throughput.cut_short(
                        iteration,
                        &picked,
                        "the iteration's throughput budget ran out",
                    );
                    Ok(())
                }
            },
        };
        if let Err(stop) = result {
            self.measurements
                .throughput
                .cut_short(iteration, &picked, stop.describe());
        }
        result
    }

    /// Deletes the run's objects of one kind that are not being deleted yet; returns how many.
    /// Cleanup's first pass and its re-checks both use it, so an object of the run that appears
    /// late (a create still queued when the run stopped) is deleted too.
    async fn delete_kind(&mut self, resource: Resource) -> usize {
        let mut targets: Vec<(Option<String>, String)> = self
            .world
            .objects
            .iter()
            .filter(|((plural, _, _), object)| {
                *plural == resource.plural && object.in_run && !object.deleting
            })
            .map(|((_, ns, name), _)| ((!ns.is_empty()).then(|| ns.clone()), name.clone()))
            .collect();
        targets.sort();
        for (ns, name) in &targets {
            let request = self.applier.delete(&resource, ns.as_deref(), name).await;
            self.record_request(&request);
        }
        targets.len()
    }

    /// Feeds events until no measurement expects more, or `limit` passes. Past
    /// [`SETTLE_QUIET`], and then every [`SETTLE_REPORT_EVERY`], a progress line names what is
    /// still awaited, so a slow withdrawal is never a silent wait.
    async fn settle(&mut self, limit: Duration) {
        let started = Instant::now();
        let until = started + limit;
        let mut next_report = started + SETTLE_QUIET;
        loop {
            while let Ok(event) = self.events.try_recv() {
                self.feed(&event);
            }
            let outstanding = self.measurements.outstanding();
            if outstanding.is_empty() || Instant::now() >= until {
                if !outstanding.is_empty() {
                    self.progress(format!(
                        "cleanup: gave up after {} waiting for {}",
                        humantime::format_duration(limit),
                        outstanding.join("; ")
                    ));
                }
                return;
            }
            if Instant::now() >= next_report {
                self.progress(format!(
                    "cleanup: {}s after the deletes, still waiting for {}",
                    started.elapsed().as_secs(),
                    outstanding.join("; ")
                ));
                next_report += SETTLE_REPORT_EVERY;
            }
            match tokio::time::timeout_at(until.min(next_report), self.events.recv()).await {
                Ok(Some(event)) => self.feed(&event),
                Ok(None) => return,
                Err(_) => {}
            }
        }
    }

    /// Deletes everything the run created, selected by its run label, and waits until it is gone.
    /// Two phases: VMs and RouteAdvertisements first, then — once their withdrawals were seen or
    /// WITHDRAW_TIMEOUT passed — networks, namespaces and the peering template. Deleting the
    /// template earlier would tear the BGP sessions down and hide the withdrawal being measured.
    /// Ends measuring: the session window closes and every probe stream is finished, whether or
    /// not cleanup follows (`--gc false` changes only what is deleted, never what is measured).
    async fn finish_measuring(&mut self) {
        if let Some(stop) = self.outcome.stopped {
            self.measurements.reach.stopped(stop.describe());
        }
        let now = self.clock.now();
        self.measurements.sessions.close(now);
        self.measurements.reach.finish_all().await;
    }

    async fn cleanup(&mut self) {
        self.deleting = true;
        let mut deleted = 0;
        for resource in [VMIM, VIRTUAL_MACHINE, ROUTE_ADVERTISEMENTS] {
            deleted += self.delete_kind(resource).await;
        }
        self.settle(WITHDRAW_TIMEOUT).await;
        for resource in [NAMESPACE, CUDN, FRR_CONFIGURATION] {
            deleted += self.delete_kind(resource).await;
        }
        let gone = |w: &World, _: &Measurements| {
            !w.objects.values().any(|o| o.in_run && !o.deleting)
                && !w
                    .objects
                    .keys()
                    .any(|(plural, _, _)| *plural == VMI.plural || *plural == IPAM_CLAIM.plural)
        };
        // Cleanup runs after an interrupt or timeout too: give it its own bound.
        self.deadline = Instant::now() + DELETE_TIMEOUT;
        let until = self.deadline;
        let cancel = std::mem::replace(&mut self.cancel, CancellationToken::new());
        // A create still queued in the rate limiter when the run stopped reaches the cluster after
        // the deletes above listed the run's objects: delete whatever of the run shows up late,
        // again and again until everything is gone or the bound passes.
        let waited = loop {
            let step = CLEANUP_RECHECK.min(until.saturating_duration_since(Instant::now()));
            match self.wait_until(step, gone).await {
                Waited::Done => break Waited::Done,
                _ if Instant::now() >= until => break Waited::Expired,
                _ => {
                    for resource in [
                        VMIM,
                        VIRTUAL_MACHINE,
                        ROUTE_ADVERTISEMENTS,
                        NAMESPACE,
                        CUDN,
                        FRR_CONFIGURATION,
                    ] {
                        deleted += self.delete_kind(resource).await;
                    }
                }
            }
        };
        match waited {
            Waited::Done => {}
            // Its own deadline is the wait's bound, so either way the bounded wait expired.
            Waited::Expired | Waited::Stopped(_) => {
                self.outcome.wait_expired = true;
                self.outcome.execution_errors.push(format!(
                    "cleanup: objects labelled {}={} were still present after {}",
                    labels::UUID,
                    self.plan.uuid,
                    humantime::format_duration(DELETE_TIMEOUT)
                ));
            }
        }
        self.cancel = cancel;
        // A signal during cleanup does not stop it (nothing may be left behind), but the run was
        // still interrupted: its exit code and results say so.
        if self.cancel.is_cancelled() && self.outcome.stopped.is_none() {
            self.outcome.stopped = Some(Stop::Interrupted);
            self.outcome
                .execution_errors
                .push("interrupted by a signal during cleanup, which finished".to_string());
        }
        self.progress(format!("cleanup: {deleted} objects deleted"));
    }
}

/// Forwards one source's events into the run loop's channel until cancelled or either side closes.
fn forward<T: Send + 'static>(
    mut rx: UnboundedReceiver<T>,
    tx: tokio::sync::mpsc::UnboundedSender<RunEvent>,
    wrap: fn(T) -> RunEvent,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let item = tokio::select! {
                _ = cancel.cancelled() => return,
                item = rx.recv() => item,
            };
            let Some(item) = item else { return };
            if tx.send(wrap(item)).is_err() {
                return;
            }
        }
    })
}

/// The kinds the run watches, all selected by label.
fn watch_specs(plan: &Plan) -> Vec<WatchSpec> {
    let by_run = format!("{}={}", labels::UUID, plan.uuid);
    let mut specs: Vec<WatchSpec> = [
        NAMESPACE,
        CUDN,
        ROUTE_ADVERTISEMENTS,
        FRR_CONFIGURATION,
        VIRTUAL_MACHINE,
        VMI,
        VMIM,
    ]
    .into_iter()
    .map(|resource| WatchSpec {
        resource,
        selector: by_run.clone(),
    })
    .collect();
    // kubevirt-ipam-controller labels claims with their VM, not with the run's labels; the world
    // keeps only the claims of this run's VMs.
    specs.push(WatchSpec {
        resource: IPAM_CLAIM,
        selector: CLAIM_VM_LABEL.to_string(),
    });
    specs
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
    let routes = |kind| kind == vmbgp_reporters::input::MeasurementKind::RouteConvergence;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::watch::Change;

    fn vm(namespace: &str, name: &str) -> VmSpec {
        VmSpec {
            name: name.into(),
            namespace: namespace.into(),
            network: namespace.into(),
            iteration: 0,
            replica: 1,
            static_ip: None,
        }
    }

    fn claim(namespace: &str, vm: &str, change: Change) -> WatchMessage {
        let object: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "k8s.cni.cncf.io/v1alpha1", "kind": "IPAMClaim",
            "metadata": {"name": format!("{vm}.default"), "namespace": namespace, "labels": {CLAIM_VM_LABEL: vm}},
        }))
        .expect("claim");
        WatchMessage::Object {
            at: MonoStamp::from_offset(Duration::ZERO),
            resource: IPAM_CLAIM,
            change,
            object: Arc::new(object),
        }
    }

    #[test]
    fn claims_of_other_vms_are_not_the_runs_business() {
        let mut world = World::new("u", &[vm("vmbgp-0", "vm-1")]);
        // Another VM in another namespace, and a same-named VM in a namespace the run does not own.
        world.apply(&claim("other", "db-1", Change::Applied));
        world.apply(&claim("other", "vm-1", Change::Applied));
        assert!(world.objects.is_empty(), "{:?}", world.objects);
        assert!(!world.has_claims_of("vmbgp-0", "vm-1"));
        world.apply(&claim("vmbgp-0", "vm-1", Change::Applied));
        assert!(world.has_claims_of("vmbgp-0", "vm-1"));
        assert!(
            !world.has_claims_of("vmbgp-0", "vm-10"),
            "vm-10 is not vm-1"
        );
        world.apply(&claim("vmbgp-0", "vm-1", Change::Deleted));
        assert!(!world.has_claims_of("vmbgp-0", "vm-1"));
    }

    /// After 410 Gone the watcher re-lists: an object deleted while the watch was down never gets
    /// a Deleted event, so the re-list is the only news of it (else cleanup waited 5 min for it).
    #[test]
    fn a_relist_drops_objects_deleted_while_the_watch_was_down() {
        let mut world = World::new("u", &[vm("vmbgp-0", "vm-1"), vm("vmbgp-0", "vm-2")]);
        world.apply(&claim("vmbgp-0", "vm-1", Change::Applied));
        world.apply(&claim("vmbgp-0", "vm-2", Change::Applied));
        let at = MonoStamp::from_offset(Duration::ZERO);
        world.apply(&WatchMessage::Relisting {
            at,
            resource: IPAM_CLAIM,
        });
        world.apply(&claim("vmbgp-0", "vm-2", Change::Applied));
        assert!(
            world.has_claims_of("vmbgp-0", "vm-1"),
            "not before the list is complete"
        );
        world.apply(&WatchMessage::Synced {
            at,
            resource: IPAM_CLAIM,
        });
        assert!(!world.has_claims_of("vmbgp-0", "vm-1"), "deleted unseen");
        assert!(world.has_claims_of("vmbgp-0", "vm-2"));
        assert!(world.synced.contains(IPAM_CLAIM.plural));
    }
}
