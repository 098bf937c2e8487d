//! The seam between the simulated KubeVirt controller and a VM dataplane (part 2, `vmbgp-lab-net`): the
//! controller calls it when a VM address must appear on a node, move at migration switch-over, or disappear.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

/// A VM address on a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmAddress {
    pub namespace: String,
    /// VM (and VMI) name.
    pub vm: String,
    /// The node that hosts the address.
    pub node: String,
    /// The VM's addresses (bare IPs, one per family).
    pub ips: Vec<IpAddr>,
    /// OVN network name (`cluster_udn_<cudn>`), `None` on the default pod network.
    pub network: Option<String>,
}

/// A dataplane failure; the controller logs it to ground truth and carries on (the VM stays Running, as a real
/// VM does when its network is broken).
#[derive(Debug, thiserror::Error)]
#[error("dataplane {operation} for {namespace}/{vm} failed: {message}")]
pub struct DataplaneError {
    pub operation: &'static str,
    pub namespace: String,
    pub vm: String,
    pub message: String,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

/// Boxed future returned by [`Dataplane`] methods.
pub type DataplaneFuture<'a> =
    Pin<Box<dyn Future<Output = Result<(), DataplaneError>> + Send + 'a>>;

/// What the KubeVirt controller needs from a dataplane. Each call returns once the change is in effect; the
/// instant it returns is logged to ground truth (`dataplane_up`, `dataplane_moved`, `dataplane_down`).
pub trait Dataplane: Send + Sync + std::fmt::Debug + 'static {
    /// The VMI became Running on `vm.node`: make its addresses reachable there.
    fn vm_up(&self, vm: VmAddress) -> DataplaneFuture<'_>;
    /// Migration switch-over: the addresses move from `from_node` to `vm.node`.
    fn vm_moved(&self, vm: VmAddress, from_node: String) -> DataplaneFuture<'_>;
    /// The VMI is going away: remove its addresses from `vm.node`.
    fn vm_down(&self, vm: VmAddress) -> DataplaneFuture<'_>;
}

/// The default dataplane: does nothing (ground truth still records each call).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoDataplane;

impl Dataplane for NoDataplane {
    fn vm_up(&self, _vm: VmAddress) -> DataplaneFuture<'_> {
        Box::pin(async { Ok(()) })
    }
    fn vm_moved(&self, _vm: VmAddress, _from_node: String) -> DataplaneFuture<'_> {
        Box::pin(async { Ok(()) })
    }
    fn vm_down(&self, _vm: VmAddress) -> DataplaneFuture<'_> {
        Box::pin(async { Ok(()) })
    }
}
