//! The end of a churn iteration: its VMs are deleted, and the run waits until they, their VMIs
//! and their IPAMClaims are gone before the iteration's samples are final.

use super::world::vm_gone;
use super::{DELETE_TIMEOUT, Halt, Runner};
use crate::kube::VIRTUAL_MACHINE;
use crate::measure::{Batch, ObjectKey};

impl Runner<'_> {
    /// Deletes the iteration's VMs (not counted as creations) and waits until they are gone,
    /// then hands over the iteration's samples (claim release is part of them).
    pub(super) async fn churn(&mut self, iteration: u32, keys: &[ObjectKey]) -> Result<(), Halt> {
        self.deleting = true;
        for (ns, name) in keys {
            let request = self.applier.delete(&VIRTUAL_MACHINE, Some(ns), name).await;
            self.record_request(&request);
        }
        self.deleting = false;
        // OVN-K holds a VM's address until its IPAMClaim is gone: the next iteration's VM
        // with the same static IP could otherwise meet IPAddressConflict.
        let what = format!("VMs of iteration {iteration} and their IPAMClaims deleted");
        self.wait_for(&what, DELETE_TIMEOUT, |w, _| {
            keys.iter().all(|(ns, n)| vm_gone(w, ns, n))
        })
        .await?;
        self.collect(Batch::Iteration(iteration));
        Ok(())
    }
}
