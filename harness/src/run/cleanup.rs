//! The run's end: measuring stops, then everything the run created is deleted by its label, in
//! dependency order, waiting for withdrawals and for the objects to be gone.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::world::run_objects_gone;
use super::{
    CLEANUP_RECHECK, DELETE_TIMEOUT, Runner, SETTLE_QUIET, SETTLE_REPORT_EVERY, Stop,
    WITHDRAW_TIMEOUT, Waited,
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

    /// Deletes everything the run created, selected by its run label, and waits until it is gone.
    /// Two phases: VMs and RouteAdvertisements first, then — once their withdrawals were seen or
    /// WITHDRAW_TIMEOUT passed — networks, namespaces and the peering template. Deleting the
    /// template earlier would tear the BGP sessions down and hide the withdrawal being measured.
    /// Ends measuring: the session window closes and every probe stream is finished, whether or
    /// not cleanup follows (`--gc false` changes only what is deleted, never what is measured).
    pub(super) async fn finish_measuring(&mut self) {
        if let Some(stop) = self.outcome.stopped {
            self.measurements.reach.stopped(stop.describe());
        }
        let now = self.clock.now();
        self.measurements.sessions.close(now);
        self.measurements.reach.finish_all().await;
    }

    pub(super) async fn cleanup(&mut self) {
        self.deleting = true;
        let mut deleted = 0;
        for resource in [VMIM, VIRTUAL_MACHINE, ROUTE_ADVERTISEMENTS] {
            deleted += self.delete_kind(resource).await;
        }
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
