//! The lab's network half: real FRR routers in network namespaces, frr-k8s emulation and the VM dataplane.
//!
//! Entry points:
//! - [`LabNet::up`] / [`LabNet::down`], [`status`] and [`teardown`] (state-directory based, so they
//!   work across processes and after a crashed `up`);
//! - [`vty::Vty`], an async client for FRR's vty socket (self-contained);
//! - [`netns`], helpers to open listeners and connections inside a lab netns (BMP, probes);
//! - [`dataplane::Dataplane`], the VM address seam (place, move, remove).

pub mod cmd;
pub mod dataplane;
pub mod error;
pub mod faults;
pub mod frr;
pub mod lab;
pub mod names;
pub mod netns;
pub mod process;
pub mod state;
pub mod topology;
pub mod truth;
pub mod vmhost;
pub mod vty;

pub use error::{Error, Result};
pub use lab::{
    LabNet, LabNetConfig, LabNetInfo, LabNetStatus, NodeInfo, TeardownGuard, status, teardown,
};
pub use names::{EXT_ADDR, EXT_ASN, LabNames, NODE_ASN, Router};
pub mod frrk8s;
