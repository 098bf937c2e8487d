//! The migration rounds: each round raises its VMs' probe streams to the migration rate, creates
//! the round's VirtualMachineInstanceMigrations, waits until they complete, then closes each
//! migration's loss window once its VM answers again.

use super::world::migration_done;
use super::{
    Halt, MIGRATION_HOLD, MIGRATION_RECOVERY_TIMEOUT, MIGRATION_TIMEOUT, Runner, Waited, of_kind,
};
use crate::clock::MonoStamp;
use crate::kube::VMIM;
use crate::measure::{Batch, ObjectKey};
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
        self.create_all(&migrations).await?;
        let keys: Vec<ObjectKey> = moving.iter().map(|(k, _)| k.clone()).collect();
        let what = format!("{} migrations of round {round} completed", keys.len());
        self.wait_for(&what, MIGRATION_TIMEOUT, |w, m| {
            keys.iter()
                .all(|k| migration_done(w, &k.0, &k.1) || m.migrations.finished(k))
        })
        .await?;
        self.close_loss_windows(window_start, &windows).await?;
        self.collect(Batch::MigrationRound(round));
        self.progress(format!(
            "migration round {}/{}: {} migrations done",
            round + 1,
            self.plan.iterations,
            keys.len()
        ));
        Ok(())
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
