//! The run's event sources: which kinds are watched (all by label), and how each source's events
//! reach the run loop's one channel.

use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;

use super::{CLAIM_VM_LABEL, RunEvent};
use crate::config::Plan;
use crate::kube::watch::WatchSpec;
use crate::kube::{
    CUDN, FRR_CONFIGURATION, IPAM_CLAIM, NAMESPACE, ROUTE_ADVERTISEMENTS, VIRTUAL_MACHINE, VMI,
    VMIM,
};
use crate::workload::labels;

/// Forwards one source's events into the run loop's channel until cancelled or either side closes.
pub(super) fn forward<T: Send + 'static>(
    mut rx: UnboundedReceiver<T>,
    tx: tokio::sync::mpsc::UnboundedSender<RunEvent>,
    wrap: fn(T) -> RunEvent,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let item = tokio::select! {
                _ = cancel.cancelled() => return,
                item = rx.recv() => item,
            };
            let Some(item) = item else { return };
            if tx.send(wrap(item)).is_err() {
                return;
            }
        }
    })
}

/// The kinds the run watches, all selected by label.
pub(super) fn watch_specs(plan: &Plan) -> Vec<WatchSpec> {
    let by_run = format!("{}={}", labels::UUID, plan.uuid);
    let mut specs: Vec<WatchSpec> = [
        NAMESPACE,
        CUDN,
        ROUTE_ADVERTISEMENTS,
        FRR_CONFIGURATION,
        VIRTUAL_MACHINE,
        VMI,
        VMIM,
    ]
    .into_iter()
    .map(|resource| WatchSpec {
        resource,
        selector: by_run.clone(),
    })
    .collect();
    // kubevirt-ipam-controller labels claims with their VM, not with the run's labels; the world
    // keeps only the claims of this run's VMs.
    specs.push(WatchSpec {
        resource: IPAM_CLAIM,
        selector: CLAIM_VM_LABEL.to_string(),
    });
    specs
}
