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

#[cfg(test)]
mod tests {
    use super::super::testkit::{Bench, Recorder, cooperative};
    use crate::measure::Batch;

    /// The bench's VMs were never probed: the picked VM is tested no further and its sample says
    /// why, inside the budget, so nothing is cut short and no error is recorded.
    #[tokio::test(start_paused = true)]
    async fn unreachable_vms_get_samples_saying_why() {
        let bench = Bench::new("vm-bgp", cooperative(2));
        let mut sink = Recorder::default();
        let mut runner = bench.runner(&mut sink);
        runner.measure_throughput(2).await.expect("no halt");
        assert!(runner.outcome.execution_errors.is_empty());
        runner.collect(Batch::Iteration(2));
        drop(runner);
        let log = sink.log();
        assert_eq!(
            log.progress,
            ["iteration 3: TCP throughput to 1 VM(s), 5s each"]
        );
        let samples = &log.batches[0].throughput;
        assert_eq!(samples.len(), 1, "throughputVms: 1");
        let first_vm = bench
            .plan
            .vms
            .iter()
            .find(|vm| vm.iteration == 2)
            .expect("a VM");
        assert_eq!(samples[0].vm.vm_name, first_vm.name);
        let goodput = format!("{:?}", samples[0].goodput_bits_per_second);
        assert!(goodput.contains("not probed"), "{goodput}");
    }
}
