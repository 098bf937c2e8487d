//! The lab's Kubernetes-API-compatible server and the simulated KubeVirt, IPAM and OVN-Kubernetes controllers.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod boot;
pub mod controllers;
pub mod dataplane;
pub mod error;
pub mod faults;
pub mod ground_truth;
pub mod lab;
pub mod registry;
pub mod selector;
pub mod server;
pub mod store;
pub mod validation;

pub use boot::BootDelay;
pub use dataplane::{Dataplane, DataplaneError, DataplaneFuture, NoDataplane, VmAddress};
pub use error::{ApiError, LabError};
pub use faults::FaultConfig;
pub use ground_truth::{GroundTruth, GroundTruthEvent, GroundTruthKind, ObjectRef};
pub use lab::{Lab, LabConfig};
