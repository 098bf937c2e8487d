//! The throughput phase: TCP throughput tests of an iteration's VMs, raced against the run's
//! stop and bounded by their budget.

use tokio::time::Instant;

use super::{Halt, Runner, Stop};
use crate::measure::throughput::Candidate;

impl Runner<'_> {
    /// TCP throughput to the iteration's first reachable VMs, one at a time, while nothing else
    /// is created (a saturating stream would distort the other measurements).
    pub(super) async fn measure_throughput(&mut self, iteration: u32) -> Result<(), Halt> {
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
        result.map_err(Halt::from)
    }
}
