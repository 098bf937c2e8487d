//! The migration rounds: each round raises its VMs' probe streams to the migration rate, creates
//! the round's VirtualMachineInstanceMigrations, waits until they complete, then closes each
//! migration's loss window once its VM answers again.

use super::world::migration_done;
use super::{
    Halt, MIGRATION_HOLD, MIGRATION_RECOVERY_TIMEOUT, MIGRATION_TIMEOUT, NEXT_HOP_FOLLOW_TIMEOUT,
    Runner, Waited, of_kind,
};
use crate::clock::MonoStamp;
use crate::kube::VMIM;
use crate::measure::migration::TcpWindow;
use crate::measure::throughput::{MIGRATION_STREAM_SAMPLE_EVERY, MigrationStream};
use crate::measure::{Batch, ObjectKey};

/// How long a migration's TCP streams may take to connect before the migrations are created
/// anyway (an unconnected stream is reported as not run).
const TCP_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
use crate::workload::Manifest;

impl Runner<'_> {
    /// Every round of a migration run (one per iteration).
    pub(super) async fn run_migrations(&mut self, manifests: &[Manifest]) -> Result<(), Halt> {
        for round in 0..self.plan.iterations {
            self.check_stop()?;
            self.migration_round(manifests, round).await?;
        }
        Ok(())
    }

    /// One round: migrate its VMs, wait until the migrations are done, read their loss windows.
    pub(super) async fn migration_round(
        &mut self,
        manifests: &[Manifest],
        round: u32,
    ) -> Result<(), Halt> {
        let migrations = of_kind(manifests, VMIM.kind, round);
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
        let streams = self.start_tcp_streams(&moving).await?;
        self.create_all(&migrations).await?;
        let keys: Vec<ObjectKey> = moving.iter().map(|(k, _)| k.clone()).collect();
        let what = format!("{} migrations of round {round} completed", keys.len());
        self.wait_for(&what, MIGRATION_TIMEOUT, |w, m| {
            keys.iter()
                .all(|k| migration_done(w, &k.0, &k.1) || m.migrations.finished(k))
        })
        .await?;
        self.close_loss_windows(window_start, &windows).await?;
        // Host-route mode: the /32s may follow after the VMs answer again (through the old node);
        // an unfollowed /32 is a measured outcome (reported missing), not a harness failure.
        if let Waited::Stopped(stop) = self
            .wait_until(NEXT_HOP_FOLLOW_TIMEOUT, |_, m| {
                keys.iter().all(|k| m.migrations.followed(k))
            })
            .await
        {
            return Err(stop.into());
        }
        self.finish_tcp_streams(streams).await;
        self.collect(Batch::MigrationRound(round));
        self.progress(format!(
            "migration round {}/{}: {} migrations done",
            round + 1,
            self.plan.iterations,
            keys.len()
        ));
        Ok(())
    }

    /// One paced TCP stream per moving VM, each connected before its migration is created (bounded:
    /// a stream that does not connect in time is reported, not waited for).
    async fn start_tcp_streams(
        &mut self,
        moving: &[(ObjectKey, ObjectKey)],
    ) -> Result<Vec<(ObjectKey, MigrationStream)>, Halt> {
        let mut streams = Vec::new();
        for (vmim, vm) in moving {
            let started = match self.measurements.reach.address(vm) {
                None => Err("the VM's address is not known".to_string()),
                Some(address) => self
                    .measurements
                    .throughput
                    .migration_stream(address, MIGRATION_TIMEOUT + MIGRATION_RECOVERY_TIMEOUT),
            };
            match started {
                Ok(stream) => streams.push((vmim.clone(), stream)),
                Err(why) => self.measurements.migrations.record_tcp(vmim, Err(why)),
            }
        }
        // A halt drops the streams, which stops them.
        let all_connected = |_: &_, _: &_| streams.iter().all(|(_, s)| s.connected());
        if let Waited::Stopped(stop) = self.wait_until(TCP_CONNECT_TIMEOUT, all_connected).await {
            return Err(stop.into());
        }
        Ok(streams)
    }

    /// Stops the round's streams and hands each migration what its stream saw.
    async fn finish_tcp_streams(&mut self, streams: Vec<(ObjectKey, MigrationStream)>) {
        for (_, stream) in &streams {
            stream.stop();
        }
        for (vmim, stream) in streams {
            let window = match stream.finish().await {
                Ok(report) if report.connected.is_observed() => Ok(TcpWindow::from_report(
                    &report,
                    MIGRATION_STREAM_SAMPLE_EVERY,
                )),
                Ok(report) => Err(report
                    .error
                    .unwrap_or_else(|| "the stream did not connect".to_string())),
                Err(e) => Err(e),
            };
            self.measurements.migrations.record_tcp(&vmim, window);
        }
    }

    /// After a round's migrations: waits until every moved VM answers again (loss is known only
    /// a reply timeout after the probe), then hands each migration its stream's loss window and
    /// returns the streams to the steady rate.
    pub(super) async fn close_loss_windows(
        &mut self,
        since: MonoStamp,
        windows: &[(ObjectKey, ObjectKey)],
    ) -> Result<(), Halt> {
        let hold = self.measurements.reach.reply_timeout() + MIGRATION_HOLD;
        if let Waited::Stopped(stop) = self.wait_until(hold, |_, _| false).await {
            return Err(stop.into());
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
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::testkit::{Bench, Recorder, cooperative, signal_after, silent};
    use super::super::{Halt, Stop};
    use crate::kube::VMIM;

    fn migrations_of_round(bench: &Bench, round: u32) -> usize {
        bench
            .manifests
            .iter()
            .filter(|m| m.kind() == VMIM.kind && m.iteration == round)
            .count()
    }

    #[tokio::test(start_paused = true)]
    async fn a_round_migrates_its_vms_and_hands_over_their_samples() {
        let bench = Bench::new("vm-bgp-migration", cooperative(2));
        let mut sink = Recorder::default();
        let mut runner = bench.runner(&mut sink);
        runner
            .run_iteration(&bench.manifests, 0, 1)
            .await
            .expect("VMs");
        let created = bench.calls().len();
        runner
            .migration_round(&bench.manifests, 0)
            .await
            .expect("no halt");
        assert!(
            runner.outcome.execution_errors.is_empty(),
            "{:?}",
            runner.outcome.execution_errors
        );
        drop(runner);
        let moving = migrations_of_round(&bench, 0);
        assert!(moving > 0);
        let calls = bench.calls();
        assert!(
            calls[created..]
                .iter()
                .all(|c| c.starts_with("POST virtualmachineinstancemigrations ")),
            "{calls:?}"
        );
        assert_eq!(calls.len() - created, moving);
        let log = sink.log();
        assert_eq!(
            log.progress.last().map(String::as_str),
            Some(format!("migration round 1/3: {moving} migrations done").as_str())
        );
        let round = log.batches.last().expect("the round's batch");
        assert_eq!(round.migrations.len(), moving);
        assert!(round.vm_latency.is_empty(), "only the round's samples");
    }

    #[tokio::test(start_paused = true)]
    async fn migrations_that_never_complete_expire_their_wait() {
        let bench = Bench::new("vm-bgp-migration", silent());
        let mut sink = Recorder::default();
        let mut runner = bench.runner(&mut sink);
        runner
            .migration_round(&bench.manifests, 1)
            .await
            .expect("an expired wait is no halt");
        assert!(runner.outcome.wait_expired);
        assert_eq!(
            runner.outcome.execution_errors,
            [format!(
                "timed out after 20m: {} migrations of round 1 completed",
                migrations_of_round(&bench, 1)
            )]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_signal_during_a_round_halts_interrupted_without_its_samples() {
        let bench = Bench::new("vm-bgp-migration", silent());
        let mut sink = Recorder::default();
        let mut runner = bench.runner(&mut sink);
        signal_after(&bench.cancel, Duration::from_secs(90));
        let halt = runner.run_migrations(&bench.manifests).await;
        assert!(
            matches!(halt, Err(Halt::Stopped(Stop::Interrupted))),
            "{halt:?}"
        );
        assert!(runner.outcome.execution_errors.is_empty());
        drop(runner);
        assert_eq!(bench.calls().len(), migrations_of_round(&bench, 0));
        assert!(sink.log().batches.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_passed_deadline_halts_timed_out_before_the_first_round() {
        let bench = Bench::new("vm-bgp-migration", cooperative(2));
        let mut sink = Recorder::default();
        let mut runner = bench.runner(&mut sink);
        runner.deadline = tokio::time::Instant::now();
        let halt = runner.run_migrations(&bench.manifests).await;
        assert!(
            matches!(halt, Err(Halt::Stopped(Stop::TimedOut))),
            "{halt:?}"
        );
        drop(runner);
        assert!(bench.calls().is_empty());
    }
}
