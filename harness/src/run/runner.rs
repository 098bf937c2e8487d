//! The run loop's state and its primitives: feeding events into the world and the measurements,
//! bounded waits on readiness predicates, rate-limited creates, and handing samples to the sink.
//! The phases (sessions, iterations, churn, migration, throughput, cleanup) are built from these.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use vmbgp_reporters::samples::Samples;

use super::world::{World, vm_ready};
use super::{Outcome, PROGRESS_INTERVAL, Progress, RunError, RunEvent, Sink, Stop, WAIT_RECHECK};
use crate::clock::RunClock;
use crate::config::Plan;
use crate::kube::apply::{Applier, Request};
use crate::kube::watch::{Change, WatchMessage};
use crate::kube::{VIRTUAL_MACHINE, VMI};
use crate::measure::bgp_sessions::{BgpSessions, SessionSource};
use crate::measure::egress::Egress;
use crate::measure::host_routes::HostRoutes;
use crate::measure::migration::Migrations;
use crate::measure::reachability::Reachability;
use crate::measure::route_convergence::RouteConvergence;
use crate::measure::throughput::Throughput;
use crate::measure::vm_latency::VmLatency;
use crate::measure::{Batch, Measurement, Observation};
use crate::workload::Manifest;

/// The run's measurements; the waits also ask them what has been observed.
pub(super) struct Measurements {
    pub(super) vm_latency: VmLatency,
    pub(super) routes: RouteConvergence,
    pub(super) reach: Reachability,
    pub(super) sessions: BgpSessions,
    pub(super) egress: Egress,
    pub(super) throughput: Throughput,
    pub(super) migrations: Migrations,
    pub(super) host_routes: HostRoutes,
}

impl Measurements {
    pub(super) fn all(&mut self) -> [&mut dyn Measurement; 8] {
        [
            &mut self.vm_latency,
            &mut self.routes,
            &mut self.reach,
            &mut self.sessions,
            &mut self.egress,
            &mut self.throughput,
            &mut self.migrations,
            &mut self.host_routes,
        ]
    }

    pub(super) fn observe(&mut self, observation: Observation<'_>) {
        for m in self.all() {
            m.observe(observation);
        }
    }

    /// What every measurement still expects, in one list.
    pub(super) fn outstanding(&mut self) -> Vec<String> {
        self.all().iter().flat_map(|m| m.outstanding()).collect()
    }

    /// Whether the external router's sessions are visible (BMP Peer Up or polls).
    pub(super) fn sees_sessions(&self) -> bool {
        match self.sessions.source() {
            SessionSource::Bmp => self.routes.observes_bmp(),
            SessionSource::Poll => self.sessions.observed(),
        }
    }

    /// The external router's sessions that are up, as the session source shows them.
    pub(super) fn peers_up(&self) -> usize {
        match self.sessions.source() {
            SessionSource::Bmp => self.routes.peers_up(),
            SessionSource::Poll => self.sessions.established(),
        }
    }
}

/// The run loop's state: the clock, the applier, the event stream and what it fed.
pub(super) struct Runner<'a> {
    pub(super) plan: &'a Plan,
    pub(super) clock: RunClock,
    pub(super) applier: Applier,
    pub(super) events: UnboundedReceiver<RunEvent>,
    pub(super) world: World,
    pub(super) measurements: Measurements,
    pub(super) cancel: CancellationToken,
    pub(super) deadline: Instant,
    pub(super) outcome: Outcome,
    pub(super) sink: &'a mut dyn Sink,
    pub(super) progress: Progress,
    pub(super) last_progress: Option<Instant>,
    /// True while sending deletes, so they are not counted as creations.
    pub(super) deleting: bool,
    /// BGP peers the external router should have (one per node).
    pub(super) expected_peers: usize,
    /// The external router's CLI, when the harness reaches it.
    pub(super) router_cli: Option<std::sync::Arc<dyn vmbgp_bgp::vty::FrrCli>>,
    /// The host-route controller's `/metrics` URL, when known.
    pub(super) controller_metrics: Option<String>,
    /// VMs already counted as running / ready (a churned VM stays counted).
    pub(super) running: BTreeSet<(String, String)>,
    pub(super) ready: BTreeSet<(String, String)>,
}

/// Why a wait ended.
pub(super) enum Waited {
    Done,
    Expired,
    Stopped(Stop),
}

impl Runner<'_> {
    /// Says what the BMP station refused or doubts: the first few of each kind, then at powers of
    /// two, so a storm of strangers cannot flood the log.
    pub(super) fn report_bmp_finding(&mut self, bmp: &vmbgp_bgp::bmp::BmpEvent) {
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

    pub(super) fn feed(&mut self, event: &RunEvent) {
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
    pub(super) fn report_counts(&mut self, force: bool) {
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

    pub(super) fn record_request(&mut self, request: &Request) {
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

    pub(super) fn stop_reason(&self) -> Option<Stop> {
        if self.cancel.is_cancelled() {
            Some(Stop::Interrupted)
        } else if Instant::now() >= self.deadline {
            Some(Stop::TimedOut)
        } else {
            None
        }
    }

    /// The stop, as an error for `?`, once a signal came or the global deadline passed.
    pub(super) fn check_stop(&self) -> Result<(), Stop> {
        self.stop_reason().map_or(Ok(()), Err)
    }

    /// Processes events until `done` holds, `limit` passes, or the run must stop.
    pub(super) async fn wait_until(
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
    pub(super) async fn wait_for(
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

    pub(super) async fn create_all(&mut self, manifests: &[&Manifest]) -> Result<(), RunError> {
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

    pub(super) fn collect(&mut self, batch: Batch) {
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
    pub(super) fn collect_all_where(
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

    pub(super) fn progress(&mut self, line: String) {
        self.sink.progress(&line);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::mpsc::unbounded_channel;

    use super::super::testkit::{Bench, Recorder, applied, cooperative, signal_after};
    use super::*;
    use crate::kube::NAMESPACE;

    #[tokio::test(start_paused = true)]
    async fn a_wait_ends_on_its_predicate_its_limit_a_signal_or_the_deadline() {
        let bench = Bench::new("vm-bgp", cooperative(2));
        let mut sink = Recorder::default();
        let mut runner = bench.runner(&mut sink);
        let limit = Duration::from_secs(60);
        // An event that arrives while waiting is fed before the predicate is asked again.
        let events = bench.events.clone();
        let at = runner.clock.now();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let object = serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
                                            "metadata": {"name": "seen"}});
            let _ = events.send(applied(NAMESPACE, object, at));
        });
        let started = Instant::now();
        let seen = |w: &World, _: &Measurements| w.get(&NAMESPACE, None, "seen").is_some();
        assert!(matches!(runner.wait_until(limit, seen).await, Waited::Done));
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        let never = |_: &World, _: &Measurements| false;
        assert!(matches!(
            runner.wait_until(limit, never).await,
            Waited::Expired
        ));
        runner.deadline = Instant::now() + Duration::from_secs(10);
        assert!(matches!(
            runner.wait_until(limit, never).await,
            Waited::Stopped(Stop::TimedOut)
        ));
        runner.deadline = Instant::now() + Duration::from_secs(3600);
        signal_after(&bench.cancel, Duration::from_secs(1));
        assert!(matches!(
            runner.wait_until(limit, never).await,
            Waited::Stopped(Stop::Interrupted)
        ));
    }

    /// Every watch ended: nothing more will arrive, so the wait expires at once.
    #[tokio::test(start_paused = true)]
    async fn a_wait_expires_at_once_when_every_source_closed() {
        let bench = Bench::new("vm-bgp", cooperative(2));
        let mut sink = Recorder::default();
        let mut runner = bench.runner(&mut sink);
        let (closed_tx, closed) = unbounded_channel();
        drop(closed_tx);
        runner.events = closed;
        let started = Instant::now();
        let waited = runner
            .wait_for("nothing", Duration::from_secs(600), |_, _| false)
            .await;
        assert!(waited.is_ok());
        assert!(
            started.elapsed() < WAIT_RECHECK * 2,
            "{:?}",
            started.elapsed()
        );
        assert!(runner.outcome.wait_expired);
        assert_eq!(
            runner.outcome.execution_errors,
            ["timed out after 10m: nothing"]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_create_is_an_execution_error_and_stops_creating_as_another_runs_object() {
        let bench = Bench::with_taken("vm-bgp", cooperative(2), &["vmbgp-0"]);
        let mut sink = Recorder::default();
        let mut runner = bench.runner(&mut sink);
        let first_iteration: Vec<&Manifest> = bench
            .manifests
            .iter()
            .filter(|m| m.iteration == 0 && m.kind() != "FRRConfiguration")
            .collect();
        let failed = runner.create_all(&first_iteration).await;
        assert!(
            matches!(failed, Err(RunError::AlreadyExists { .. })),
            "{failed:?}"
        );
        assert_eq!(
            runner.outcome.execution_errors,
            ["Namespace vmbgp-0: 409 AlreadyExists: vmbgp-0 already exists"]
        );
        drop(runner);
        assert_eq!(bench.calls().len(), 2, "the create and the owner's lookup");
    }
}
