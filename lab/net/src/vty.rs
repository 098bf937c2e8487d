//! FRR's vty unix-socket protocol (command + NUL; the reply ends `00 00 00 <status>`), as the lab
//! uses it to apply configuration and read state: the harness's client from `vmbgp_bgp::vty`
//! (no lab dependency of its own), under the names the lab's modules use.

pub use vmbgp_bgp::vty::{
    CliError as VtyError, CliReply as VtyReply, VtySession as Vty, status_name,
};
