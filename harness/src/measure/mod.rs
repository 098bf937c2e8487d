//! Measurements: each kind consumes stamped observations on the hot path (requests the harness
//! sent, watch events it received) and only records; it turns what it recorded into the reporters'
//! samples afterwards, when the run asks for a batch. Measurements never write files or talk to
//! Elasticsearch — the reporters do.

pub mod bgp_sessions;
pub mod egress;
pub mod host_routes;
pub mod migration;
pub mod reachability;
pub mod route_convergence;
pub mod throughput;
pub mod vm_latency;

use std::net::Ipv4Addr;

use vmbgp_reporters::samples::{MeasurementKind, Samples};

use crate::kube::apply::Request;
use crate::kube::watch::WatchMessage;

/// An object's (namespace, name).
pub type ObjectKey = (String, String);

/// Something the harness observed, already stamped with the run clock.
#[derive(Debug, Clone, Copy)]
pub enum Observation<'a> {
    /// A create/delete request the harness sent, with its t0 and response instant.
    Request(&'a Request),
    /// A watch event.
    Watch(&'a WatchMessage),
    /// A BMP message (or session event) from the external router.
    Bmp(&'a vmbgp_bgp::bmp::BmpEvent),
    /// A change in the external router's kernel FIB.
    Fib(&'a vmbgp_bgp::fib::FibEvent),
    /// A poll of the external router's BGP summary (`--session-source poll`).
    Session(&'a vmbgp_bgp::session::SessionEvent),
}

/// Which samples a batch should contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batch {
    /// Everything about objects of this iteration is final.
    Iteration(u32),
    /// This migration round is over (profile `vm-bgp-migration`).
    MigrationRound(u32),
    /// The run is over: everything still pending is final.
    All,
}

/// One kind of measurement.
pub trait Measurement: Send {
    fn kind(&self) -> MeasurementKind;
    /// Records an observation (hot path: no I/O, no heavy computation).
    fn observe(&mut self, observation: Observation<'_>);
    /// Moves the samples that `batch` makes final into `out`; values never observed become
    /// `Missing` with the reason.
    fn collect(&mut self, batch: Batch, out: &mut Samples);
    /// What it still expects for actions already taken (e.g. "198.19.2.0/24 (vmbgp-2): FIB removal"
    /// after a delete), so the run may wait a bounded time before collecting and say what it waits for.
    fn outstanding(&self) -> Vec<String> {
        Vec::new()
    }
}

/// The first IPv4 address a VMI reports (`interfaces[].ipAddress` or `.ipAddresses`).
pub(crate) fn vmi_ipv4(object: &kube::api::DynamicObject) -> Option<Ipv4Addr> {
    let interfaces = object.data["status"]["interfaces"].as_array()?;
    interfaces.iter().find_map(|iface| {
        let single = iface["ipAddress"].as_str().into_iter();
        let many = iface["ipAddresses"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str());
        single
            .chain(many)
            .find_map(|ip| ip.split('/').next()?.parse::<Ipv4Addr>().ok())
    })
}

/// A VMI created or changed, with its (namespace, name), when the observation is one.
pub(crate) fn applied_vmi<'a>(
    observation: &Observation<'a>,
) -> Option<(ObjectKey, &'a kube::api::DynamicObject)> {
    let Observation::Watch(crate::kube::watch::WatchMessage::Object {
        resource,
        change: crate::kube::watch::Change::Applied,
        object,
        ..
    }) = observation
    else {
        return None;
    };
    (*resource == crate::kube::VMI).then(|| {
        let key = (
            object.metadata.namespace.clone().unwrap_or_default(),
            object.metadata.name.clone().unwrap_or_default(),
        );
        (key, object.as_ref())
    })
}
