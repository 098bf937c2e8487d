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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use http::Method;

    use super::super::testkit::{
        Bench, React, Recorder, applied, claim, cooperative, removed, signal_after,
    };
    use super::super::{Halt, Stop};
    use crate::kube::IPAM_CLAIM;
    use crate::measure::ObjectKey;

    /// The cooperative cluster, plus an IPAMClaim per VM that goes a while after its VM, when
    /// `claims_released`.
    fn with_claims(claims_released: bool) -> React {
        let base = cooperative(2);
        Arc::new(move |call, at| {
            let mut events = base(call, at);
            if call.plural == "virtualmachines" {
                let ns = call.namespace.as_deref().unwrap_or_default();
                match call.method {
                    Method::POST => events.push(applied(IPAM_CLAIM, claim(ns, &call.name), at)),
                    Method::DELETE if claims_released => {
                        events.push(removed(IPAM_CLAIM, claim(ns, &call.name), at));
                    }
                    _ => {}
                }
            }
            events
        })
    }

    fn first_iteration(bench: &Bench) -> Vec<ObjectKey> {
        bench
            .plan
            .vms
            .iter()
            .filter(|vm| vm.iteration == 0)
            .map(|vm| (vm.namespace.clone(), vm.name.clone()))
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn churn_deletes_the_vms_and_waits_for_their_claims() {
        let bench = Bench::new("vm-bgp-churn", with_claims(true));
        let mut sink = Recorder::default();
        let mut runner = bench.runner(&mut sink);
        runner
            .run_iteration(&bench.manifests, 0, 5)
            .await
            .expect("no halt");
        assert!(
            runner.outcome.execution_errors.is_empty(),
            "{:?}",
            runner.outcome.execution_errors
        );
        assert!(
            !runner
                .world
                .objects
                .keys()
                .any(|(plural, _, _)| *plural == IPAM_CLAIM.plural)
        );
        assert!(!runner.deleting);
        assert_eq!(runner.progress.created, 10, "deletes are not creations");
        drop(runner);
        let keys = first_iteration(&bench);
        let deletes: Vec<String> = bench
            .calls()
            .into_iter()
            .filter(|c| c.starts_with("DELETE "))
            .collect();
        let expected: Vec<String> = keys
            .iter()
            .map(|(ns, name)| format!("DELETE virtualmachines {ns}/{name}"))
            .collect();
        assert_eq!(deletes, expected);
        let log = sink.log();
        assert_eq!(log.batches.len(), 1, "collected once the VMs are gone");
        assert_eq!(log.batches[0].vm_latency.len(), keys.len());
    }

    #[tokio::test(start_paused = true)]
    async fn a_claim_that_stays_expires_the_wait_and_the_samples_follow() {
        let bench = Bench::new("vm-bgp-churn", with_claims(false));
        let mut sink = Recorder::default();
        let mut runner = bench.runner(&mut sink);
        runner
            .run_iteration(&bench.manifests, 0, 5)
            .await
            .expect("an expired wait is no halt");
        assert!(runner.outcome.wait_expired);
        assert_eq!(
            runner.outcome.execution_errors,
            ["timed out after 5m: VMs of iteration 0 and their IPAMClaims deleted"]
        );
        drop(runner);
        assert_eq!(sink.log().batches.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_signal_while_deleting_halts_interrupted_without_samples() {
        let bench = Bench::new("vm-bgp-churn", with_claims(false));
        let mut sink = Recorder::default();
        let mut runner = bench.runner(&mut sink);
        let keys = first_iteration(&bench);
        for (ns, name) in &keys {
            bench.inject(|at| applied(IPAM_CLAIM, claim(ns, name), at));
        }
        signal_after(&bench.cancel, Duration::from_secs(60));
        let halt = runner.churn(0, &keys).await;
        assert!(
            matches!(halt, Err(Halt::Stopped(Stop::Interrupted))),
            "{halt:?}"
        );
        assert_eq!(runner.outcome.execution_errors, Vec::<String>::new());
        drop(runner);
        assert_eq!(bench.calls().len(), keys.len(), "every VM was deleted");
        assert!(sink.log().batches.is_empty());
    }
}
