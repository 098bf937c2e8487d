//! FRR's vty unix-socket protocol (command + NUL; the reply ends `00 00 00 <status>`) as the lab
//! uses it, from the harness's client (`vmbgp_bgp::vty`) so the protocol lives in one place.
//!
//! The lab's own operations (applying configuration, health, session states) go through one
//! [`VtyCli`] per router, held by the supervisor: it keeps a session per daemon, drops one whose
//! exchange failed or timed out (a late reply must never be read as the next command's), and the
//! next command reconnects — so one slow reply under load costs that one operation, which the
//! frr-k8s emulation retries, never the lab's later ones. [`Vty`] is a bare session for callers that
//! want their own (tests, `lab status` from another process): it does not reconnect.

pub use vmbgp_bgp::vty::{
    CliError as VtyError, CliReply as VtyReply, FrrCli, STATUS_SUCCESS, VtyCli, VtySession as Vty,
    status_name,
};

use crate::frr::Daemon;

/// The harness client's name for a lab daemon.
pub(crate) fn cli_daemon(daemon: Daemon) -> vmbgp_bgp::vty::Daemon {
    match daemon {
        Daemon::Zebra => vmbgp_bgp::vty::Daemon::Zebra,
        Daemon::Bgpd => vmbgp_bgp::vty::Daemon::Bgpd,
    }
}
