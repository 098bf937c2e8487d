//! frr-k8s emulation: merge the FRRConfigurations selecting a node, render FRR configuration like
//! frr-k8s, apply it to the node's daemons over their vty sockets, and report state.

pub mod apply;
#[cfg(feature = "api")]
pub mod controller;
pub mod model;
pub mod render;
