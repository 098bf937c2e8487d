//! The lab's independent FIB observer on the external router: a dedicated std thread reading its own
//! blocking netlink socket opened inside ext's netns, subscribed to IPv4 route changes, recording every
//! route FRR installs in or removes from ext's main table as ground truth ([`NetEvent::FibRouteAdded`],
//! [`NetEvent::FibRouteRemoved`]). It shares no code, socket or thread with the harness's watcher
//! (`vmbgp_bgp::fib`), so comparing the two measures the harness's accuracy.
//!
//! The thread runs with real-time FIFO priority where permitted (else it records
//! [`NetEvent::FibObserverNormalPriority`]). Each event is stamped with `Instant::now()` read right
//! after `recv` returns, before parsing; every message of one datagram carries that instant. Only routes with protocol `bgp` (186, what
//! zebra installs for BGP) in the main table (254) are recorded: connected and kernel routes are
//! noise here. A kernel buffer overrun (`ENOBUFS`: notifications were dropped) is recorded as
//! [`NetEvent::FibObserverOverrun`], a socket failure as [`NetEvent::FibObserverFailed`] (the
//! observer then stops). Malformed messages are skipped.

use std::io;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::Utc;
use netlink_packet_core::{NetlinkBuffer, NetlinkMessage, NetlinkPayload};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, protocols::NETLINK_ROUTE};
use nix::sys::socket::{setsockopt, sockopt};
use nix::sys::time::TimeVal;

use crate::error::{Error, Result};
use crate::net_ground_truth::{GroundTruthSink, NetEvent};
use crate::netns::in_netns;

/// `RTNLGRP_IPV4_ROUTE` from `linux/rtnetlink.h`: the multicast group of IPv4 route changes.
const RTNLGRP_IPV4_ROUTE: u32 = 7;

/// Default kernel receive buffer: a 1,000-route burst is ~150 KiB of notifications, far below this.
/// Set with `SO_RCVBUFFORCE` (we are root), so `net.core.rmem_max` does not cap it.
const RECEIVE_BUFFER: usize = 4 << 20;

/// How long one `recv` blocks, so the thread sees the shutdown flag promptly.
const READ_TIMEOUT: Duration = Duration::from_millis(200);

/// One `recv` reads at most this much (route notifications are a few hundred bytes each).
const RECV_CHUNK: usize = 64 * 1024;

/// `ENOBUFS` (105 on every Linux architecture): the kernel dropped notifications.
const ENOBUFS: i32 = 105;

/// A running observer. Stops (and joins its thread) on [`FibObserver::stop`] or drop.
#[derive(Debug)]
pub struct FibObserver {
    netns: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FibObserver {
    /// Starts observing the named netns (ext's) with a 4 MiB receive buffer. Returns once the socket
    /// is subscribed, so every route change after this call is observed.
    pub fn start(netns: &str, truth: Arc<dyn GroundTruthSink>) -> Result<FibObserver> {
        Self::start_with_buffer(netns, truth, RECEIVE_BUFFER)
    }

    /// [`FibObserver::start`] with another receive buffer size in bytes (the kernel doubles it for
    /// bookkeeping); tests use a tiny one to provoke an overrun.
    pub fn start_with_buffer(
        netns: &str,
        truth: Arc<dyn GroundTruthSink>,
        receive_buffer: usize,
    ) -> Result<FibObserver> {
        // Subscribed before this returns; the socket stays in ext's netns wherever it is read.
        let socket = in_netns(netns, move || open_socket(receive_buffer))?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("fib-observer-{netns}"))
            .spawn(move || {
                // Like the harness's watcher: a real-time thread is stamped on wake-up, not
                // whenever a loaded machine gets to it.
                if let Err(why) = vmbgp_host::priority::raise_current_thread(
                    vmbgp_host::priority::StampingThread::RouteObserver,
                ) {
                    truth.record(
                        Instant::now(),
                        Utc::now(),
                        NetEvent::FibObserverNormalPriority { why },
                    );
                }
                read_loop(&socket, &flag, truth.as_ref());
            })
            .map_err(|source| Error::Netns {
                netns: netns.to_string(),
                source,
            })?;
        Ok(FibObserver {
            netns: netns.to_string(),
            stop,
            thread: Some(thread),
        })
    }

    /// The netns observed.
    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// Tells the thread to stop without waiting: nothing it receives from now on is recorded.
    /// [`FibObserver::stop`] (or drop) then joins it.
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Tells the thread to stop and lets it end by itself (within one read timeout) without waiting,
    /// for places that must not block (a drop inside async code).
    pub fn detach(mut self) {
        self.request_stop();
        self.thread.take();
    }

    /// Stops the thread and waits for it (at most about one read timeout, 200 ms).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.request_stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for FibObserver {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Opens the subscribed socket (called inside the observed netns).
fn open_socket(receive_buffer: usize) -> io::Result<Socket> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    // Root may exceed rmem_max; fall back to the capped size if forcing is refused.
    if setsockopt(&socket, sockopt::RcvBufForce, &receive_buffer).is_err() {
        socket.set_rx_buf_sz(receive_buffer)?;
    }
    let timeout = TimeVal::new(
        0,
        i64::try_from(READ_TIMEOUT.as_micros()).unwrap_or(200_000),
    );
    setsockopt(&socket, sockopt::ReceiveTimeout, &timeout).map_err(io::Error::from)?;
    socket.add_membership(RTNLGRP_IPV4_ROUTE)?;
    Ok(socket)
}

fn read_loop(socket: &Socket, stop: &AtomicBool, truth: &dyn GroundTruthSink) {
    let mut buffer: Vec<u8> = Vec::with_capacity(RECV_CHUNK);
    while !stop.load(Ordering::SeqCst) {
        buffer.clear();
        let received = socket.recv(&mut buffer, 0);
        // The arrival instant of everything in this datagram: read before any parsing.
        let at = Instant::now();
        let wall = Utc::now();
        if stop.load(Ordering::SeqCst) {
            return; // stopping: changes from here on (e.g. teardown's) are not the lab's run
        }
        match received {
            Ok(_) => {
                for event in datagram_events(&buffer) {
                    truth.record(at, wall, event);
                }
            }
            Err(e) if e.raw_os_error() == Some(ENOBUFS) => {
                truth.record(at, wall, NetEvent::FibObserverOverrun);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => {
                tracing::warn!(error = %e, "FIB observer socket failed; observer stopped");
                truth.record(
                    at,
                    wall,
                    NetEvent::FibObserverFailed {
                        error: format!("recv: {e}"),
                    },
                );
                return;
            }
        }
    }
}

/// Decodes one netlink datagram (possibly several messages) into ground-truth events: BGP routes
/// of the main table added/replaced or removed, and overrun markers. Malformed messages are
/// skipped; never panics.
pub fn datagram_events(datagram: &[u8]) -> Vec<NetEvent> {
    let mut events = Vec::new();
    let mut offset = 0;
    while offset < datagram.len() {
        let rest = &datagram[offset..];
        let Ok(header) = NetlinkBuffer::new_checked(rest) else {
            break; // the length field cannot be trusted: nothing after it can be framed
        };
        let length = header.length() as usize;
        // Messages are 4-byte aligned within a datagram.
        offset += length.div_ceil(4).max(1) * 4;
        let Ok(message) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rest[..length])
        else {
            continue;
        };
        match message.payload {
            NetlinkPayload::Overrun(_) => events.push(NetEvent::FibObserverOverrun),
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(route)) => {
                events.extend(route_event(&route, false));
            }
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelRoute(route)) => {
                events.extend(route_event(&route, true));
            }
            _ => {}
        }
    }
    events
}

/// The ground-truth event for one route message (`removed` for `RTM_DELROUTE`), or `None` when it
/// is not an IPv4 BGP route of the main table. An `RTM_NEWROUTE` replacing an existing route (e.g.
/// its next hops changed) is a [`NetEvent::FibRouteAdded`] with the new next hops.
pub fn route_event(route: &RouteMessage, removed: bool) -> Option<NetEvent> {
    if route.header.address_family != AddressFamily::Inet
        || route.header.protocol != RouteProtocol::Bgp
        || route.header.destination_prefix_length > 32
    {
        return None;
    }
    let mut table = u32::from(route.header.table);
    let mut destination = Ipv4Addr::UNSPECIFIED;
    let mut next_hops = Vec::new();
    for attribute in &route.attributes {
        match attribute {
            // The header holds only 8 bits; RTA_TABLE holds the real id.
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(RouteAddress::Inet(a)) => destination = *a,
            RouteAttribute::Gateway(RouteAddress::Inet(g)) => next_hops.push(*g),
            RouteAttribute::MultiPath(hops) => {
                for hop in hops {
                    for a in &hop.attributes {
                        if let RouteAttribute::Gateway(RouteAddress::Inet(g)) = a {
                            next_hops.push(*g);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    if table != u32::from(RouteHeader::RT_TABLE_MAIN) {
        return None;
    }
    let prefix = format!("{destination}/{}", route.header.destination_prefix_length);
    let protocol = "bgp".to_string();
    if removed {
        return Some(NetEvent::FibRouteRemoved { prefix, protocol });
    }
    next_hops.sort();
    next_hops.dedup();
    Some(NetEvent::FibRouteAdded {
        prefix,
        next_hops,
        protocol,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::{NLM_F_REPLACE, NetlinkHeader};
    use netlink_packet_route::route::{RouteNextHop, RouteType};

    fn bgp_route(prefix: [u8; 4], len: u8) -> RouteMessage {
        let mut r = RouteMessage::default();
        r.header.address_family = AddressFamily::Inet;
        r.header.destination_prefix_length = len;
        r.header.table = RouteHeader::RT_TABLE_MAIN;
        r.header.protocol = RouteProtocol::Bgp;
        r.header.kind = RouteType::Unicast;
        r.attributes
            .push(RouteAttribute::Destination(RouteAddress::Inet(
                Ipv4Addr::from(prefix),
            )));
        r.attributes
            .push(RouteAttribute::Table(u32::from(RouteHeader::RT_TABLE_MAIN)));
        r
    }

    fn ecmp_route() -> RouteMessage {
        let mut r = bgp_route([198, 19, 1, 0], 24);
        let hop = |last: u8| {
            let mut h = RouteNextHop::default();
            h.interface_index = 3;
            h.attributes
                .push(RouteAttribute::Gateway(RouteAddress::Inet(Ipv4Addr::new(
                    198, 18, 0, last,
                ))));
            h
        };
        r.attributes.push(RouteAttribute::NhId(12));
        r.attributes
            .push(RouteAttribute::MultiPath(vec![hop(2), hop(1), hop(2)]));
        r
    }

    fn encode(flags: u16, inner: RouteNetlinkMessage) -> Vec<u8> {
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        let mut m = NetlinkMessage::new(header, NetlinkPayload::from(inner));
        m.finalize();
        let mut b = vec![0u8; m.buffer_len()];
        m.serialize(&mut b);
        b
    }

    #[test]
    fn multipath_single_gateway_and_removal() {
        assert_eq!(
            route_event(&ecmp_route(), false),
            Some(NetEvent::FibRouteAdded {
                prefix: "198.19.1.0/24".into(),
                next_hops: vec![Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 18, 0, 2)],
                protocol: "bgp".into(),
            })
        );
        let mut single = bgp_route([198, 19, 2, 10], 32);
        single
            .attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(Ipv4Addr::new(
                198, 18, 0, 3,
            ))));
        assert_eq!(
            route_event(&single, false),
            Some(NetEvent::FibRouteAdded {
                prefix: "198.19.2.10/32".into(),
                next_hops: vec![Ipv4Addr::new(198, 18, 0, 3)],
                protocol: "bgp".into(),
            })
        );
        assert_eq!(
            route_event(&single, true),
            Some(NetEvent::FibRouteRemoved {
                prefix: "198.19.2.10/32".into(),
                protocol: "bgp".into(),
            })
        );
    }

    #[test]
    fn non_bgp_other_tables_and_ipv6_are_ignored() {
        let mut kernel = ecmp_route();
        kernel.header.protocol = RouteProtocol::Kernel;
        assert_eq!(route_event(&kernel, false), None);
        let mut other_table = ecmp_route();
        other_table.attributes.push(RouteAttribute::Table(100));
        assert_eq!(route_event(&other_table, false), None);
        let mut v6 = ecmp_route();
        v6.header.address_family = AddressFamily::Inet6;
        assert_eq!(route_event(&v6, true), None);
    }

    #[test]
    fn datagrams_with_several_messages_and_garbage() {
        let mut datagram = encode(NLM_F_REPLACE, RouteNetlinkMessage::NewRoute(ecmp_route()));
        let mut kernel = ecmp_route();
        kernel.header.protocol = RouteProtocol::Kernel;
        datagram.extend(encode(0, RouteNetlinkMessage::NewRoute(kernel)));
        datagram.extend(encode(0, RouteNetlinkMessage::DelRoute(ecmp_route())));
        let events = datagram_events(&datagram);
        assert_eq!(events.len(), 2, "{events:?}");
        assert!(matches!(events[0], NetEvent::FibRouteAdded { .. }));
        assert!(matches!(events[1], NetEvent::FibRouteRemoved { .. }));
        assert!(datagram_events(&[1, 2, 3]).is_empty());
        assert!(datagram_events(&[]).is_empty());
    }

    #[test]
    fn parser_never_panics_on_mutations() {
        let base = encode(0, RouteNetlinkMessage::NewRoute(ecmp_route()));
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            let mut d = base.clone();
            for _ in 0..3 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let i = (state as usize) % d.len();
                d[i] = (state >> 32) as u8;
            }
            let cut = (state as usize >> 8) % (d.len() + 1);
            let _ = datagram_events(&d[..cut]);
        }
    }

    #[test]
    fn events_serialise_camel_case() {
        let e = NetEvent::FibRouteAdded {
            prefix: "198.19.1.0/24".into(),
            next_hops: vec![Ipv4Addr::new(198, 18, 0, 1)],
            protocol: "bgp".into(),
        };
        assert_eq!(
            serde_json::to_value(&e).expect("serialise"),
            serde_json::json!({"event": "fibRouteAdded", "prefix": "198.19.1.0/24", "nextHops": ["198.18.0.1"], "protocol": "bgp"})
        );
        assert_eq!(
            serde_json::to_value(NetEvent::FibObserverOverrun).expect("serialise"),
            serde_json::json!({"event": "fibObserverOverrun"})
        );
    }
}
