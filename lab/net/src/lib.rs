//! The lab's network half: real FRR routers in network namespaces, frr-k8s emulation and the VM dataplane.
//!
//! # Using it (what `vmbgp-bench lab up/status/down` and `--lab` call)
//! - [`LabNet::up`]`(`[`LabNetConfig`]`, ground_truth)` builds everything and returns a [`LabNet`];
//!   [`LabNet::info`] says where things are (ext netns, vty sockets, vmhost netns, ports).
//!   `up` needs root and FRR ([`Error::is_environment`] → exit code 4). On failure it removes what it
//!   created; a process killed during `up` leaves its state file, which [`teardown`] consumes.
//! - [`status`]`(state_dir)` and [`teardown`]`(state_dir)` work from the state directory alone, in
//!   any process; [`LabNet::down`] is teardown for the process that holds the lab.
//!   [`TeardownGuard`] runs teardown on drop (tests).
//! - [`LabNet::dataplane`] is the VM address seam (place / move / remove a VM's /32);
//!   [`LabNetConfig::silent_vms`] (fault) makes it withhold chosen VMs' addresses.
//! - `up` starts a [`fib_observer::FibObserver`] on ext before any bgpd runs: every BGP route entering
//!   or leaving ext's kernel FIB is recorded as ground truth, independently of the harness's watcher,
//!   so tests can measure the harness's FIB timing error; `down` stops it.
//!   [`LabNet::faults`] restarts bgpd / flaps links / drops ext's BMP session (`ss -K` on bgpd's
//!   connection; bgpd reconnects) now or from a [`faults::FaultPlan`]; the integrated lab runs a
//!   plan (and API watch expiries) from the moment it is up;
//!   [`frrk8s::controller::FrrK8sEmulator`] is the frr-k8s emulation task (kube-rs client of the lab API).
//!
//! # State directory (owned by the lab, mode 0755 so the `frr` user can reach its subdirectories)
//! ```text
//! <state_dir>/net-state.json     every netns, daemon (pid file, then pid + start time + exe) and path,
//!                                written before each is created; teardown's only input
//! <state_dir>/frr/<router>/      zebra.conf bgpd.conf zebra.vty bgpd.vty zserv.api *.pid *.log
//! ```
//!
//! # Topology (all addresses in 198.18.0.0/15)
//! netns `vmbgp-<id>-sw` holds bridge `br0`; `vmbgp-<id>-ext` (198.18.0.155, AS 64512) and
//! `vmbgp-<id>-node-<n>` (198.18.0.n, AS 64513) hang off it; each node routes to its
//! `vmbgp-<id>-vmhost-<n>` over a /30 in 198.18.4.0/22. Interface names live inside the lab's own
//! namespaces, so only netns names carry the lab id (≤ 32 chars, `[a-z0-9-]`).
//!
//! # BMP: where ext's stream goes (decision)
//! ext's bgpd runs with `-M bmp` and the caller's startup config names the target; the lab's choice is
//! **`127.0.0.1:<port>` inside ext's netns**, with the harness's listener created in that netns by
//! [`netns::tokio_listener_in`] (a thread `setns`es, binds, and hands the socket back; sockets keep
//! their namespace). No veth into the host netns is needed, so the host's routing stays untouched and
//! every lab is isolated; the harness's probes and netlink watchers run in ext's netns the same way
//! (`--netns <ext netns>`). FRR retries the connection every 100 ms–1 s until the listener exists, and
//! the target in the startup config makes Peer Up messages carry the real OPENs (frr-lab.md §4.4).
//!
//! # Dataplane (OVN-K's overlay, emulated)
//! A VM address is a /32 on `lo` of its node's vmhost; its node routes it to the vmhost, every other node
//! routes it to that node over the shared segment, so traffic ext sends to any node (ECMP) arrives.
//! Each vmhost serves HTTP (8080) and a TCP sink (5201) on 0.0.0.0 for all its addresses; the egress
//! call is an HTTP GET from the VM's address made inside the vmhost ([`vmhost::egress_call`]).
//!
//! # Applying frr-k8s configuration
//! Diff-based over the vty socket ([`frrk8s::apply`]), like frr-k8s's `frr-reload.py`: a full reload
//! would reset sessions on every change. FRR 8.4 commits each prefix-list/route-map line through its
//! northbound layer at a cost that grows with the list (≈15 ms per line at 600 entries), which real
//! frr-k8s pays too; see docs/perf-lab-net.md.

#[cfg(feature = "api")]
pub mod api_dataplane;
pub mod cmd;
pub mod dataplane;
pub mod error;
pub mod faults;
pub mod fib_observer;
pub mod frr;
pub mod guest;
pub mod names;
pub mod net_ground_truth;
pub mod netns;
pub mod network;
pub mod process;
pub mod state;
pub mod topology;
pub mod vmhost;
pub mod vty;
#[cfg(feature = "api")]
pub mod whole_lab;

pub use error::{Error, Result};
pub use names::{EXT_ADDR, EXT_ASN, LabNames, NODE_ASN, Router};
pub use network::{
    LabNet, LabNetConfig, LabNetInfo, LabNetStatus, NodeInfo, TeardownGuard, status, teardown,
};
pub mod frrk8s;
