//! The run's end: measuring stops, then everything the run created is deleted by its label, in
//! dependency order, waiting for withdrawals and for the objects to be gone.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::world::run_objects_gone;
use super::{
    CLEANUP_RECHECK, DELETE_TIMEOUT, HOST_ROUTES_SETTLE_TIMEOUT, Runner, SETTLE_QUIET,
    SETTLE_REPORT_EVERY, Stop, WITHDRAW_TIMEOUT, Waited,
};
use crate::kube::{
    CUDN, FRR_CONFIGURATION, NAMESPACE, ROUTE_ADVERTISEMENTS, Resource, VIRTUAL_MACHINE, VMIM,
};
use crate::workload::labels;

impl Runner<'_> {
    /// Deletes the run's objects of one kind that are not being deleted yet; returns how many.
    /// Cleanup's first pass and its re-checks both use it, so an object of the run that appears
    /// late (a create still queued when the run stopped) is deleted too.
    pub(super) async fn delete_kind(&mut self, resource: Resource) -> usize {
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
    pub(super) async fn settle(&mut self, limit: Duration) {
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

    /// Ends measuring: the session window closes and every probe stream is finished, whether or
    /// not cleanup follows (`--gc false` changes only what is deleted, never what is measured).
    pub(super) async fn finish_measuring(&mut self) {
        if let Some(stop) = self.outcome.stopped {
            self.measurements.reach.stopped(stop.describe());
        }
        let now = self.clock.now();
        self.measurements.sessions.close(now);
        self.measurements.reach.finish_all().await;
        if self.measurements.host_routes.enabled() {
            // The table read is the policy and aggregation check: give the last VMs' /32s their
            // time to arrive first (bounded; an unarrived one is reported by its own sample).
            if self.outcome.stopped.is_none() {
                let settled = self
                    .wait_until(HOST_ROUTES_SETTLE_TIMEOUT, |_, m| {
                        m.host_routes.awaiting_advertisement() == 0
                    })
                    .await;
                let awaiting = self.measurements.host_routes.awaiting_advertisement();
                if matches!(settled, Waited::Expired) && awaiting > 0 {
                    self.progress(format!(
                        "host routes: {awaiting} running VMs' /32s not routed to their nodes after {}; \
                         reading ext's table anyway",
                        humantime::format_duration(HOST_ROUTES_SETTLE_TIMEOUT)
                    ));
                }
            }
            let table = self.read_bgp_table().await;
            if let Err(why) = &table {
                self.progress(format!("host routes: ext's BGP table not read: {why}"));
            }
            self.measurements
                .host_routes
                .record_table(self.clock.now(), table);
            let figures = match &self.controller_metrics {
                Some(url) => crate::controller_metrics::scrape(url).await,
                None => Err(
                    "the host-route controller's /metrics address is not known (give \
                             --controller-metrics URL)"
                        .to_string(),
                ),
            };
            if let Err(why) = &figures {
                self.progress(format!("host routes: controller metrics not read: {why}"));
            }
            self.measurements
                .host_routes
                .record_controller(self.clock.now(), figures);
        }
    }

    /// The external router's BGP table, read through its CLI while every VM still exists.
    async fn read_bgp_table(&self) -> Result<vmbgp_bgp::table::BgpTable, String> {
        let cli = self.router_cli.as_ref().ok_or_else(|| {
            "the external router's CLI is not reachable from the harness (give --frr-vty-dir or \
             --frr-exec)"
                .to_string()
        })?;
        let reply = cli
            .json(vmbgp_bgp::vty::Daemon::Bgpd, vmbgp_bgp::table::SHOW_TABLE)
            .await
            .map_err(|e| format!("reading the external router's BGP table: {e}"))?;
        vmbgp_bgp::table::BgpTable::from_json(&reply).map_err(|e| e.to_string())
    }

    /// Deletes everything the run created, selected by its run label, and waits until it is gone.
    /// Three phases, each waiting until the withdrawals it causes were seen or WITHDRAW_TIMEOUT
    /// passed: VMs (their /32 host routes go), then RouteAdvertisements (the subnet routes go),
    /// then networks, namespaces and the peering template. Deleting the advertisements with the VMs
    /// would withdraw the /32s for another reason than the VM's delete being measured; deleting the
    /// template earlier would tear the BGP sessions down and hide every withdrawal.
    pub(super) async fn cleanup(&mut self) {
        self.deleting = true;
        let mut deleted = 0;
        for resource in [VMIM, VIRTUAL_MACHINE] {
            deleted += self.delete_kind(resource).await;
        }
        self.settle(WITHDRAW_TIMEOUT).await;
        deleted += self.delete_kind(ROUTE_ADVERTISEMENTS).await;
        self.settle(WITHDRAW_TIMEOUT).await;
        for resource in [NAMESPACE, CUDN, FRR_CONFIGURATION] {
            deleted += self.delete_kind(resource).await;
        }
        // Cleanup runs after an interrupt or timeout too: give it its own bound.
        self.deadline = Instant::now() + DELETE_TIMEOUT;
        let until = self.deadline;
        let cancel = std::mem::replace(&mut self.cancel, CancellationToken::new());
        // A create still queued in the rate limiter when the run stopped reaches the cluster after
        // the deletes above listed the run's objects: delete whatever of the run shows up late,
        // again and again until everything is gone or the bound passes.
        let waited = loop {
            let step = CLEANUP_RECHECK.min(until.saturating_duration_since(Instant::now()));
            match self.wait_until(step, |w, _| run_objects_gone(w)).await {
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::super::testkit::{Bench, Recorder, applied, cooperative, silent};
    use super::super::{Outcome, Runner, Stop};
    use crate::kube::{Resource, VIRTUAL_MACHINE, VMI};
    use crate::measure::Batch;
    use crate::workload::labels;

    /// The peering template and one iteration's objects, as a run leaves them.
    async fn populate(runner: &mut Runner<'_>, bench: &Bench) -> usize {
        runner
            .establish_sessions(&bench.manifests)
            .await
            .expect("sessions");
        runner
            .run_iteration(&bench.manifests, 0, 3)
            .await
            .expect("iteration");
        bench.calls().len()
    }

    /// The kinds of the DELETE requests after the first `skip` requests, in order, deduplicated.
    fn deleted_kinds(bench: &Bench, skip: usize) -> Vec<String> {
        let mut kinds: Vec<String> = Vec::new();
        for call in bench.calls().into_iter().skip(skip) {
            let mut words = call.split(' ');
            assert_eq!(words.next(), Some("DELETE"), "{call}");
            let kind = words.next().unwrap_or_default().to_string();
            if kinds.last() != Some(&kind) {
                kinds.push(kind);
            }
        }
        kinds
    }

    #[tokio::test(start_paused = true)]
    async fn cleanup_deletes_vms_and_advertisements_before_networks_and_peering() {
        let bench = Bench::new("vm-bgp", cooperative(2));
        let mut sink = Recorder::default();
        let mut runner = bench.runner(&mut sink);
        let created = populate(&mut runner, &bench).await;
        runner.cleanup().await;
        let Outcome {
            execution_errors,
            wait_expired,
            stopped,
            ..
        } = std::mem::take(&mut runner.outcome);
        assert!(execution_errors.is_empty(), "{execution_errors:?}");
        assert!(!wait_expired);
        assert_eq!(stopped, None);
        drop(runner);
        assert_eq!(
            deleted_kinds(&bench, created),
            [
                "virtualmachines",
                "routeadvertisements",
                "namespaces",
                "clusteruserdefinednetworks",
                "frrconfigurations",
            ]
        );
        assert_eq!(
            sink.log().progress.last().map(String::as_str),
            Some("cleanup: 9 objects deleted")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn objects_that_stay_expire_cleanups_own_bound() {
        let bench = Bench::new("vm-bgp", silent());
        let mut sink = Recorder::default();
        let mut runner = bench.runner(&mut sink);
        populate(&mut runner, &bench).await;
        // Cleanup has its own bound, whatever the run's deadline was.
        runner.deadline = tokio::time::Instant::now();
        let errors_before = runner.outcome.execution_errors.len();
        let started = tokio::time::Instant::now();
        runner.cleanup().await;
        assert!(started.elapsed() >= super::DELETE_TIMEOUT);
        assert!(runner.outcome.wait_expired);
        assert_eq!(
            runner.outcome.execution_errors[errors_before..],
            [format!(
                "cleanup: objects labelled {}={} were still present after 5m",
                labels::UUID,
                bench.plan.uuid
            )]
        );
        assert_eq!(runner.outcome.stopped, None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_signal_does_not_stop_cleanup_but_the_run_counts_as_interrupted() {
        let bench = Bench::new("vm-bgp", cooperative(2));
        let mut sink = Recorder::default();
        let mut runner = bench.runner(&mut sink);
        let created = populate(&mut runner, &bench).await;
        bench.cancel.cancel();
        runner.cleanup().await;
        assert!(!runner.outcome.wait_expired);
        assert_eq!(runner.outcome.stopped, Some(Stop::Interrupted));
        assert_eq!(
            runner.outcome.execution_errors,
            ["interrupted by a signal during cleanup, which finished"]
        );
        assert!(runner.cancel.is_cancelled(), "the run's token is restored");
        drop(runner);
        assert_eq!(
            deleted_kinds(&bench, created).len(),
            5,
            "everything deleted"
        );
    }

    /// A create still queued when the run stopped reaches the cluster after the deletes: the
    /// re-checks delete it too.
    #[tokio::test(start_paused = true)]
    async fn an_object_of_the_run_that_appears_late_is_deleted_too() {
        let bench = Bench::new("vm-bgp", cooperative(2));
        let mut sink = Recorder::default();
        let mut runner = bench.runner(&mut sink);
        populate(&mut runner, &bench).await;
        let late = bench
            .plan
            .vms
            .iter()
            .find(|vm| vm.iteration == 1)
            .expect("a VM of the next iteration")
            .clone();
        let object = |resource: Resource| {
            json!({
                "apiVersion": resource.api_version(), "kind": resource.kind,
                "metadata": {"name": late.name, "namespace": late.namespace,
                             "labels": {labels::UUID: bench.plan.uuid}},
            })
        };
        // Its VMI is there already (cleanup is not done while it is), the VM comes 10 s late.
        bench.inject(|at| applied(VMI, object(VMI), at));
        let (events, vm) = (bench.events.clone(), object(VIRTUAL_MACHINE));
        let at = runner.clock.now();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(10)).await;
            let _ = events.send(applied(VIRTUAL_MACHINE, vm, at));
        });
        runner.cleanup().await;
        assert!(
            runner.outcome.execution_errors.is_empty(),
            "{:?}",
            runner.outcome.execution_errors
        );
        drop(runner);
        let wanted = format!("DELETE virtualmachines {}/{}", late.namespace, late.name);
        assert!(bench.calls().contains(&wanted), "{:?}", bench.calls());
        assert_eq!(
            sink.log().progress.last().map(String::as_str),
            Some("cleanup: 10 objects deleted")
        );
    }

    /// Measuring ends whether or not cleanup follows: the session window closes, so the sessions'
    /// samples are final.
    #[tokio::test(start_paused = true)]
    async fn finishing_measuring_closes_the_session_window() {
        let bench = Bench::new("vm-bgp", cooperative(2));
        let mut sink = Recorder::default();
        let mut runner = bench.runner(&mut sink);
        runner
            .establish_sessions(&bench.manifests)
            .await
            .expect("sessions");
        runner.collect(Batch::All);
        runner.finish_measuring().await;
        runner.collect(Batch::All);
        drop(runner);
        let log = sink.log();
        let sessions: Vec<usize> = log.batches.iter().map(|b| b.bgp_sessions.len()).collect();
        assert_eq!(
            sessions,
            [2],
            "nothing before the window closed, then one per peer"
        );
    }
}
