//! The crate's error type: each variant names the operation that failed and keeps its source.

use std::net::IpAddr;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    #[error("probe rate {per_second}/s is outside 1..=10000")]
    InvalidRate { per_second: u32 },
    #[error("invalid probe configuration: {why}")]
    InvalidConfig { why: String },
    #[error("cannot open the ICMP socket in network namespace {netns} ({hint})")]
    OpenSocket {
        netns: String,
        hint: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Netns(#[from] vmbgp_host::netns::NetnsError),
    #[error("cannot start a probe thread")]
    Thread {
        #[source]
        source: std::io::Error,
    },
    #[error("target {addr} is IPv6; the ICMP prober handles IPv4 only")]
    Ipv6Unsupported { addr: IpAddr },
    #[error("target {addr} is already being probed")]
    DuplicateTarget { addr: IpAddr },
    #[error("target {addr} is not being probed")]
    UnknownTarget { addr: IpAddr },
    #[error("the prober already has its maximum of {max} targets")]
    TooManyTargets { max: usize },
    #[error("cannot listen on {listen} for the egress endpoint")]
    EgressBind {
        listen: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}
