//! Data-plane probes from the external router's vantage point: ICMP streams, TCP throughput, the egress echo endpoint.
//!
//! Every instant this crate records comes from the harness's one clock
//! ([`vmbgp_host::clock::RunClock::now`]); sockets are opened inside the chosen network namespace
//! with [`vmbgp_host::netns::in_netns`] and keep it.
//!
//! * [`icmp`] — [`icmp::IcmpProber`]: open-loop per-target ICMP echo streams over one socket.
//! * [`egress`] — [`egress::EgressEndpoint`]: the HTTP endpoint VMs call; records true sources.
//! * [`http_check`] — [`http_check::http_get`]: a small GET of a VM's responder port.
//! * [`tcp`] — [`tcp::tcp_throughput`]: goodput, retransmits and stalls to a VM's sink port.
//!
//! A value that was not observed is [`Observed::Missing`] with a reason, never 0.

pub mod error;
pub mod icmp;
pub mod observed;

pub use error::ProbeError;
pub use observed::Observed;
pub mod egress;
pub mod http_check;
pub mod tcp;
