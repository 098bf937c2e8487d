//! Data-plane probes from the external router's vantage point: ICMP streams, TCP throughput, the egress echo endpoint.
//!
//! Every instant this crate records comes from the harness's one clock
//! ([`vmbgp_host::clock::RunClock::now`]); sockets are opened inside the chosen network namespace
//! with [`vmbgp_host::netns::in_netns`] and keep it. A value that was not observed is
//! [`Measured::Missing`] with a reason, never 0 (written `{"status": "missing", "reason": ..}`).
//!
//! # ICMP streams ([`icmp`])
//!
//! ```no_run
//! # async fn demo(clock: vmbgp_host::clock::RunClock) -> Result<(), vmbgp_probe::ProbeError> {
//! use vmbgp_probe::icmp::{IcmpProber, ProbeRate, ProberConfig, TargetSpec};
//! let prober = IcmpProber::start(clock, ProberConfig {
//!     netns: Some("ext".into()),
//!     ..ProberConfig::default() // timeout 1 s, sustain_count 100, ≤ 4096 targets, ≤ 4 h
//! })?;
//! // Per VM, when it is created (t0): 100/s until 100 consecutive replies, then 10/s.
//! let vm = "198.19.0.10".parse().expect("ip");
//! prober.add_target(TargetSpec::new(vm, "ns/vm-1"))?;
//! // Around a live migration: 1000/s, then the window's loss from the report.
//! let migration_started = clock.now();
//! prober.set_rate(vm, ProbeRate::MIGRATION)?;
//! // ... migration completes ...
//! let window = prober.target_report(vm)?.loss_since(migration_started);
//! prober.set_rate(vm, ProbeRate::STEADY)?;
//! let counts = prober.progress(); // targets / answered / sustained, for a progress bar
//! let one = prober.target_report(vm)?; // one target's report now
//! let now = prober.snapshot(); // reports at this instant; probes within the timeout are pending
//! let report = prober.remove_target(vm).await?; // the VM is deleted: its final report
//! let all = prober.finish().await; // every remaining target's final report + prober stats
//! # Ok(()) }
//! ```
//!
//! [`icmp::TargetReport`] holds per target: counts (sent, replied, lost, pending, late,
//! duplicate, ICMP errors), `first_reply`, `last_reply`, `sustained` (first probe of the first
//! run of `sustain_count` consecutive replies), `loss_derived_convergence` (RFC 7747: Σ send
//! intervals of probes lost before `sustained`), `loss_periods` (runs of consecutive lost probes
//! with start/end instants and loss-derived length), `loss_of_connectivity` (the longest),
//! `longest_reply_gap`, the RTT summary and its HDR histogram (µs, merge for an overall view),
//! send lag and skipped slots (coordinated omission made visible), `last_error`;
//! `loss_since(t)` summarises a window (migration loss, longest gap, recovery instant).
//!
//! **Socket type.** One `SOCK_RAW` ICMP socket when the process has CAP_NET_RAW (root: the
//! harness's case; required in a fresh netns such as the lab's `ext`, whose
//! `net.ipv4.ping_group_range` is `1 0` even for root), otherwise an unprivileged `SOCK_DGRAM`
//! ping socket ([`icmp::SocketChoice::Auto`]). Probes carry a 16-byte payload (nonce, target id,
//! 64-bit probe number) that matches replies independent of the socket type and never wraps.
//! IPv4 only for now.
//!
//! **Open loop.** One thread keeps a per-target schedule and sends when a probe is due, whether
//! earlier ones were answered or not, stamping the actual send instant next to the scheduled
//! one; when it falls more than `max_send_lag` behind it skips slots and counts them. The same
//! thread reads the socket after every send and whenever `ppoll` reports data, stamping each
//! message right after `recvmsg` returns, and reads the kernel's drop counter (`socket_drops`:
//! when non-zero some loss is the harness's own). The prober needs a tokio runtime with the time
//! driver only for `remove_target`/`finish` (they wait for probes in flight).
//!
//! # TCP throughput ([`tcp`])
//!
//! [`tcp::tcp_throughput`]`(clock, `[`tcp::ThroughputRequest`]`) -> `[`tcp::ThroughputReport`]:
//! goodput from `TCP_INFO` bytes acknowledged, retransmits, smoothed RTT, longest stall, survival.
//!
//! # Egress ([`egress`]) and HTTP check ([`http_check`])
//!
//! [`egress::EgressEndpoint::start`] serves `GET /egress?uuid=..&vm=ns/name` in the netns and
//! records the TCP peer address; [`egress::EgressEndpoint::verdict`] says unNATed / NATed / not
//! seen per VM. [`http_check::http_get`] fetches a VM's responder port from the netns.

pub mod egress;
pub mod error;
pub mod http_check;
pub mod icmp;
mod ser;
pub mod tcp;

pub use error::ProbeError;
pub use vmbgp_model::Measured;
