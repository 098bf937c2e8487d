//! The lab API's dataplane seam (`vmbgp_lab_api::Dataplane`, called by the simulated KubeVirt
//! controller) implemented by the network dataplane: a VMI Running on `node-<n>` places its addresses
//! there, a migration switch-over moves them, deletion removes them.

use std::net::{IpAddr, Ipv4Addr};

use vmbgp_lab_api::{Dataplane as ApiDataplane, DataplaneError, DataplaneFuture, VmAddress};

use crate::dataplane::Dataplane;
use crate::names::Router;

/// Adapter from the lab API's seam to [`Dataplane`].
#[derive(Debug, Clone)]
pub struct NetDataplane {
    inner: Dataplane,
}

impl NetDataplane {
    pub fn new(inner: Dataplane) -> Self {
        NetDataplane { inner }
    }
}

fn failure(operation: &'static str, vm: &VmAddress, message: String) -> DataplaneError {
    DataplaneError {
        operation,
        namespace: vm.namespace.clone(),
        vm: vm.vm.clone(),
        message,
        source: None,
    }
}

fn node_index(operation: &'static str, vm: &VmAddress) -> Result<u16, DataplaneError> {
    match Router::parse(&vm.node) {
        Some(Router::Node(n)) => Ok(n),
        _ => Err(failure(
            operation,
            vm,
            format!("node {:?} is not a lab node (node-<n>)", vm.node),
        )),
    }
}

/// The lab's dataplane is IPv4 (VM subnets in 198.19.0.0/16): an IPv6 address is refused, not ignored.
fn ipv4s(operation: &'static str, vm: &VmAddress) -> Result<Vec<Ipv4Addr>, DataplaneError> {
    vm.ips
        .iter()
        .map(|ip| match ip {
            IpAddr::V4(a) => Ok(*a),
            IpAddr::V6(a) => Err(failure(
                operation,
                vm,
                format!("IPv6 address {a} is not supported by the lab dataplane"),
            )),
        })
        .collect()
}

impl NetDataplane {
    async fn place(&self, operation: &'static str, vm: VmAddress) -> Result<(), DataplaneError> {
        let node = node_index(operation, &vm)?;
        let ips = ipv4s(operation, &vm)?;
        let name = format!("{}/{}", vm.namespace, vm.vm);
        let results = futures::future::join_all(
            ips.iter()
                .map(|ip| self.inner.place(*ip, node, Some(name.clone()))),
        )
        .await;
        for r in results {
            r.map_err(|e| failure(operation, &vm, e.to_string()))?;
        }
        Ok(())
    }
}

impl ApiDataplane for NetDataplane {
    fn vm_up(&self, vm: VmAddress) -> DataplaneFuture<'_> {
        Box::pin(self.place("vm_up", vm))
    }

    fn vm_moved(&self, vm: VmAddress, _from_node: String) -> DataplaneFuture<'_> {
        // The dataplane knows where the address is; placing it on the new node is the move.
        Box::pin(self.place("vm_moved", vm))
    }

    fn vm_down(&self, vm: VmAddress) -> DataplaneFuture<'_> {
        Box::pin(async move {
            let ips = ipv4s("vm_down", &vm)?;
            let results =
                futures::future::join_all(ips.iter().map(|ip| self.inner.remove(*ip))).await;
            for r in results {
                r.map_err(|e| failure("vm_down", &vm, e.to_string()))?;
            }
            Ok(())
        })
    }
}
