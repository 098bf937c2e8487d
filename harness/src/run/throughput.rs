//! Data-plane phases: waiting for steady probe streams, closing migration loss windows, and the
//! TCP throughput tests of an iteration.

use tokio::time::Instant;

use super::{
    MIGRATION_HOLD, MIGRATION_RECOVERY_TIMEOUT, REACHABILITY_TIMEOUT, Runner, Stop, Waited,
};
use crate::clock::MonoStamp;
use crate::measure::ObjectKey;
use crate::measure::throughput::Candidate;

impl Runner<'_> {
    /// The end of a scale run's creations: every VM's stream reaches sustained reachability (or
    /// the bound passes; such VMs are reported with the reason).
    pub(super) async fn await_steady_streams(&mut self) -> Result<(), Stop> {
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
    pub(super) async fn close_loss_windows(
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
    pub(super) async fn measure_throughput(&mut self, iteration: u32) -> Result<(), Stop> {
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
}
