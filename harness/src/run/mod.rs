//! Phase orchestration of a run: watches → peering template → per iteration its networks (wait
//! until created and accepted) and its VMs at `--qps` (wait until ready; churn: delete and wait) →
//! migrations → cleanup by run label (`--gc`) → results. Every wait is bounded, by its own limit
//! and by the global `--timeout`; SIGINT/SIGTERM stop creating, keep what was measured, clean up.
//!
//! Here: the run's setup and teardown and the order of its phases. `world` holds the cluster view
//! and the readiness predicates, `watches` the event sources, `runner` the run loop's state and its
//! waits; one file per phase: `sessions`, `iterations`, `churn`, `throughput`, `migration`,
//! `cleanup`. A phase returns `Result<_, Halt>`, so a stop or a failure is passed on with `?`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::unbounded_channel;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use vmbgp_reporters::samples::Samples;

use crate::clock::{MonoStamp, RunClock};
use crate::config::{Plan, Shape};
use crate::kube::Cluster;
use crate::kube::apply::{Applier, ApplyError, resource_for};
use crate::kube::watch::{WatchMessage, spawn_watches};
use crate::measure::bgp_sessions::{BgpSessions, SessionSource};
use crate::measure::egress::Egress;
use crate::measure::host_routes::{HOST_ROUTE_COMMUNITY_VALUE, HostRouteExpectations, HostRoutes};
use crate::measure::migration::Migrations;
use crate::measure::reachability::Reachability;
use crate::measure::route_convergence::{RouteConvergence, Sources};
use crate::measure::throughput::Throughput;
use crate::measure::vm_latency::VmLatency;
use crate::workload::Manifest;
use vmbgp_bgp::bmp::{BmpStation, BmpStationConfig};
use vmbgp_bgp::fib::{FibWatcher, FibWatcherConfig};

mod churn;
mod cleanup;
mod iterations;
mod migration;
mod runner;
mod sessions;
mod throughput;
mod watches;
mod world;

#[cfg(test)]
mod testkit;

use runner::{Measurements, Runner, Waited};
use watches::{forward, watch_specs};
use world::World;

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
/// Host-route mode: how long after a round's VMs answer again their /32s may take to be routed to
/// the target nodes before the round's samples are taken (frr-k8s alone debounces 3 s).
pub const NEXT_HOP_FOLLOW_TIMEOUT: Duration = Duration::from_secs(30);
/// Host-route mode, when measuring ends: how long the last VMs' /32s may take to be routed to their
/// nodes before ext's BGP table is read.
pub const HOST_ROUTES_SETTLE_TIMEOUT: Duration = Duration::from_secs(60);
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
    /// The external router's CLI, when the harness reaches it (the lab's vty, `--frr-vty-dir`,
    /// `--frr-exec`): host-route mode reads the local-pref its policy gave each /32 there.
    pub router_cli: Option<Arc<dyn vmbgp_bgp::vty::FrrCli>>,
    /// Node name → the address the external router routes to it (the node's InternalIP).
    pub node_addresses: std::collections::BTreeMap<String, std::net::Ipv4Addr>,
    /// The host-route controller's `/metrics` URL, when known.
    pub controller_metrics: Option<String>,
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

/// Why a phase ended before its work was done. A `Stop` (signal, global `--timeout`) keeps what
/// was measured and goes on to cleanup: the caller records it once in [`Outcome::stopped`]. A
/// `Failed` run (an object refused as already existing, the watches never synced) ends with its
/// error after the same cleanup. One type for both lets a phase pass either on with `?`.
#[derive(Debug)]
enum Halt {
    Stopped(Stop),
    Failed(RunError),
}

impl From<Stop> for Halt {
    fn from(stop: Stop) -> Self {
        Halt::Stopped(stop)
    }
}

impl From<RunError> for Halt {
    fn from(error: RunError) -> Self {
        Halt::Failed(error)
    }
}

/// Where the phases' halt is recorded, once: a stop in the outcome (the run then goes on to
/// finish measuring and clean up), a failure as the run's error.
fn record_halt(outcome: &mut Outcome, halted: Result<(), Halt>) -> Result<(), RunError> {
    match halted {
        Ok(()) => Ok(()),
        Err(Halt::Stopped(stop)) => {
            outcome.stopped = Some(stop);
            Ok(())
        }
        Err(Halt::Failed(error)) => Err(error),
    }
}

/// The manifests of one kind for one iteration, in apply order.
fn of_kind<'m>(manifests: &'m [Manifest], kind: &str, iteration: u32) -> Vec<&'m Manifest> {
    manifests
        .iter()
        .filter(|m| m.kind() == kind && m.iteration == iteration)
        .collect()
}

impl Runner<'_> {
    /// The phases in order: sessions, iterations (with churn and throughput), migrations.
    async fn run(&mut self, manifests: &[Manifest]) -> Result<(), Halt> {
        if let Some(why) = self.measurements.reach.normal_priority() {
            self.progress(format!("ICMP prober: {why}"));
        }
        self.establish_sessions(manifests).await?;
        self.run_iterations(manifests).await?;
        if self.plan.shape == Shape::Migration {
            self.run_migrations(manifests).await?;
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
    let fib_off = sources.fib_off.clone();
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
            host_routes: if plan.bgp.host_routes {
                HostRoutes::new(
                    &plan.vms,
                    HostRouteExpectations {
                        community: format!("{}:{HOST_ROUTE_COMMUNITY_VALUE}", plan.bgp.peer_asn),
                        node_addresses: observers.node_addresses.clone(),
                        subnets: plan.networks.iter().map(|n| n.subnet).collect(),
                    },
                    sources.clone(),
                )
            } else {
                HostRoutes::disabled()
            },
            routes: RouteConvergence::new(&plan.networks, observers.expected_next_hops, sources),
            reach,
            sessions: match &observers.session_poll {
                Some(_) => BgpSessions::new(SessionSource::Poll, None),
                None => BgpSessions::new(SessionSource::Bmp, sources_bmp_off),
            },
            egress,
            migrations: {
                let migrations = Migrations::new(manifests, &plan.vms, plan.probes.migration_rate);
                if plan.bgp.host_routes {
                    migrations
                        .following_host_routes(observers.node_addresses.clone(), fib_off.clone())
                } else {
                    migrations
                }
            },
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
        router_cli: observers.router_cli.clone(),
        controller_metrics: observers.controller_metrics.clone(),
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
    let halted = match synced {
        Waited::Done => runner.run(manifests).await,
        Waited::Expired => Err(Halt::Failed(RunError::WatchSync(WATCH_SYNC_TIMEOUT))),
        Waited::Stopped(stop) => Err(Halt::Stopped(stop)),
    };
    let result = record_halt(&mut runner.outcome, halted);
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
    if runner.measurements.routes.observes_bmp() {
        let (total, peak) = runner.measurements.routes.bmp_messages();
        runner.progress(format!(
            "BMP: {total} messages decoded, at most {peak} in one second"
        ));
    }
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
    use super::testkit::{Bench, Recorder, cooperative};
    use super::*;

    #[test]
    fn a_stop_is_recorded_once_and_a_failure_is_the_runs_error() {
        let mut outcome = Outcome::default();
        assert!(record_halt(&mut outcome, Ok(())).is_ok());
        assert_eq!(outcome.stopped, None);
        assert!(record_halt(&mut outcome, Err(Stop::TimedOut.into())).is_ok());
        assert_eq!(outcome.stopped, Some(Stop::TimedOut));
        let mut outcome = Outcome::default();
        let failed = record_halt(
            &mut outcome,
            Err(RunError::WatchSync(WATCH_SYNC_TIMEOUT).into()),
        );
        assert!(matches!(failed, Err(RunError::WatchSync(_))), "{failed:?}");
        assert_eq!(outcome.stopped, None, "a failure is not a stop");
    }

    /// The phases in order on a cooperative cluster: sessions, the one VM iteration of a
    /// migration run, then every round.
    #[tokio::test(start_paused = true)]
    async fn a_migration_run_goes_through_every_phase() {
        let bench = Bench::new("vm-bgp-migration", cooperative(2));
        let mut sink = Recorder::default();
        let mut runner = bench.runner(&mut sink);
        runner.run(&bench.manifests).await.expect("no halt");
        assert!(
            runner.outcome.execution_errors.is_empty(),
            "{:?}",
            runner.outcome.execution_errors
        );
        drop(runner);
        let vms = bench.plan.vms.len();
        let log = sink.log();
        let expected: Vec<String> = ["BGP sessions up: 2 of 2".to_string()]
            .into_iter()
            .chain([format!("iteration 1/1: {vms} VMs created, {vms} ready")])
            .chain((1..=3).map(|round| format!("migration round {round}/3: {vms} migrations done")))
            .collect();
        assert_eq!(log.progress, expected);
        assert_eq!(log.batches.len(), 3, "one batch per round");
    }
}
