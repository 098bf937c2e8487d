//! The kernel FIB route watcher: a netlink socket opened inside the external router's network
//! namespace, subscribed to IPv4 route changes (`RTNLGRP_IPV4_ROUTE`), first dumping the routes
//! already there. Each change is stamped with the run's monotonic clock right after the `recv`
//! that returned it, before parsing — "route usable at the external router" (DESIGN §4.3). The
//! socket is read by a dedicated thread blocked in `recv`, not by an async task: a busy runtime
//! would otherwise delay the stamp by however long its workers are occupied (measured: up to
//! 13 ms in a lab run, against the lab's own observer).
//!
//! Next hops come from `RTA_GATEWAY` / `RTA_MULTIPATH`. Zebra installs routes with nexthop
//! objects (`nhid`); the kernel still reports their gateways in route messages while
//! `net.ipv4.nexthop_compat_mode` is 1 (the default). When it is 0, `next_hops` is empty and
//! `nexthop_id` is set: the next hops were not observed, they are not "none".

pub mod calibrate;

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkBuffer, NetlinkHeader, NetlinkMessage,
    NetlinkPayload,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use vmbgp_host::clock::{MonoStamp, RunClock};
use vmbgp_host::netns::{NetnsError, in_netns};

/// `RTNLGRP_IPV4_ROUTE` from `linux/rtnetlink.h`: the multicast group of IPv4 route changes.
const RTNLGRP_IPV4_ROUTE: u32 = 7;

/// The sysctl that decides whether routes using nexthop objects carry their gateways.
const NEXTHOP_COMPAT_MODE: &str = "/proc/sys/net/ipv4/nexthop_compat_mode";

/// Sequence number of our dump request, to tell its replies from notifications.
const DUMP_SEQUENCE: u32 = 0x766d_6267; // "vmbg"

/// One `recv` reads at most this much (netlink datagrams of a dump are ≤ 32 KiB).
const RECV_BUFFER: usize = 256 * 1024;

/// The reading thread wakes at least this often to see whether it should stop.
const STOP_CHECK: Duration = Duration::from_millis(100);

/// Which routes to watch and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FibWatcherConfig {
    /// Network namespace whose FIB to watch (`--netns`); `None` = the host's.
    pub netns: Option<String>,
    /// Routing table to report (254 = main, where zebra installs BGP routes); `None` = all tables
    /// (including `local`, which holds one route per local address).
    pub table: Option<u32>,
    /// Dump the routes already present first (reported as [`RouteChangeKind::Present`]).
    pub initial_dump: bool,
    /// Requested socket receive buffer; the kernel caps it at `net.core.rmem_max`. A burst larger
    /// than the buffer is reported as [`FibEvent::Overrun`].
    pub receive_buffer: usize,
}

impl FibWatcherConfig {
    /// The main table of the host's namespace, with an initial dump.
    pub fn new() -> Self {
        FibWatcherConfig {
            netns: None,
            table: Some(u32::from(RouteHeader::RT_TABLE_MAIN)),
            initial_dump: true,
            receive_buffer: 8 << 20,
        }
    }

    /// Watch inside the named network namespace instead.
    pub fn in_netns(mut self, netns: impl Into<String>) -> Self {
        self.netns = Some(netns.into());
        self
    }
}

impl Default for FibWatcherConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// What can go wrong starting the watcher.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FibError {
    #[error("entering the network namespace for the netlink route socket")]
    Netns(#[from] NetnsError),
    #[error("{operation} on the netlink route socket (netns {netns:?})")]
    Socket {
        operation: &'static str,
        netns: Option<String>,
        #[source]
        source: std::io::Error,
    },
}

/// How a route changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RouteChangeKind {
    /// Already present when the watcher started (initial dump).
    Present,
    /// `RTM_NEWROUTE` for a new route.
    Added,
    /// `RTM_NEWROUTE` with `NLM_F_REPLACE`: the route existed and changed (e.g. its next hops).
    Replaced,
    /// `RTM_DELROUTE`.
    Removed,
}

/// One route as the kernel reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteChange {
    /// When the `recv` that returned this message returned.
    pub at: MonoStamp,
    pub prefix: Ipv4Net,
    pub kind: RouteChangeKind,
    /// Gateways, sorted; several for an ECMP route. Empty for a directly connected route, or when
    /// only a nexthop object id was reported (see the module doc).
    pub next_hops: Vec<Ipv4Addr>,
    /// Output interfaces (ifindex), sorted, one per next hop when reported.
    pub interfaces: Vec<u32>,
    /// The nexthop object (`nhid`) the route uses, if any.
    pub nexthop_id: Option<u32>,
    /// Who installed it: `bgp` (zebra's `proto bgp` = 186), `kernel`, `static`, ... as named by
    /// netlink-packet-route; unknown numbers as `other(N)`.
    pub protocol: String,
    pub table: u32,
    pub metric: Option<u32>,
    /// `unicast`, `blackhole`, `local`, ...
    pub route_type: String,
}

/// What the watcher emits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FibEvent {
    Route(RouteChange),
    /// The initial dump is complete: every route present at start has been reported.
    DumpComplete {
        at: MonoStamp,
    },
    /// The reading thread could not get real-time priority: its stamps may include scheduling
    /// delay on a busy machine.
    NormalPriority {
        why: String,
    },
    /// The kernel dropped notifications (`ENOBUFS`): some changes were not observed.
    Overrun {
        at: MonoStamp,
    },
    /// A netlink message could not be decoded; the watcher went on.
    Undecodable {
        at: MonoStamp,
        error: String,
    },
    /// The socket failed; the watcher stopped.
    Failed {
        at: MonoStamp,
        error: String,
    },
}

/// A running FIB watcher. Dropping it stops it.
#[derive(Debug)]
pub struct FibWatcher {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    nexthop_compat_mode: Option<bool>,
}

impl FibWatcher {
    /// Opens the netlink socket (inside `config.netns` when set), subscribes, sends the dump
    /// request, and starts reading. Subscribing happens before the dump, so no change between the
    /// two is missed. Must be called within a tokio runtime.
    pub async fn start(
        config: FibWatcherConfig,
        clock: RunClock,
    ) -> Result<(FibWatcher, mpsc::UnboundedReceiver<FibEvent>), FibError> {
        let netns = config.netns.clone();
        let wrap = move |operation: &'static str| {
            let netns = netns.clone();
            move |source| FibError::Socket {
                operation,
                netns,
                source,
            }
        };
        let receive_buffer = config.receive_buffer;
        let socket = in_netns(config.netns.as_deref(), move || {
            let mut socket = Socket::new(NETLINK_ROUTE).map_err(|e| ("open", e))?;
            // Best effort: the kernel caps it at rmem_max; overruns are reported when they happen.
            let _ = socket.set_rx_buf_sz(receive_buffer);
            socket.bind_auto().map_err(|e| ("bind", e))?;
            socket
                .add_membership(RTNLGRP_IPV4_ROUTE)
                .map_err(|e| ("join RTNLGRP_IPV4_ROUTE", e))?;
            // /proc/sys/net shows the namespace of the thread that opens it: this one.
            let compat = std::fs::read_to_string(NEXTHOP_COMPAT_MODE)
                .ok()
                .and_then(|v| v.trim().parse::<u8>().ok())
                .map(|v| v != 0);
            Ok::<_, (&'static str, std::io::Error)>((socket, compat))
        })?
        .map_err(|(op, e)| wrap(op)(e))?;
        let (socket, nexthop_compat_mode) = socket;
        socket2::SockRef::from(&socket)
            .set_read_timeout(Some(STOP_CHECK))
            .map_err(wrap("set the receive timeout"))?;
        let mut address = SocketAddr::new(0, 0);
        socket
            .get_address(&mut address)
            .map_err(wrap("read the socket address"))?;
        if config.initial_dump {
            send_dump_request(&socket).map_err(wrap("send the route dump request"))?;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let stop = Arc::new(AtomicBool::new(false));
        let reader = Reader {
            socket,
            own_port: address.port_number(),
            table: config.table,
            clock,
            tx,
            stop: Arc::clone(&stop),
        };
        let thread = std::thread::Builder::new()
            .name("vmbgp-fib".into())
            .spawn(move || reader.run())
            .map_err(wrap("start the reading thread"))?;
        Ok((
            FibWatcher {
                stop,
                thread: Some(thread),
                nexthop_compat_mode,
            },
            rx,
        ))
    }

    /// `net.ipv4.nexthop_compat_mode` of the watched namespace, read at start: `Some(true)` means
    /// routes using nexthop objects still report their gateways (so `next_hops` is complete);
    /// `Some(false)` means such routes arrive with only `nexthop_id` and their next hops are not
    /// observed; `None` when the kernel has no such setting (no nexthop objects) or it was unreadable.
    pub fn nexthop_compat_mode(&self) -> Option<bool> {
        self.nexthop_compat_mode
    }

    /// Stops reading and waits for the thread (at most about 100 ms); the event channel closes
    /// afterwards.
    pub async fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

impl Drop for FibWatcher {
    fn drop(&mut self) {
        // The thread sees the flag within STOP_CHECK and ends on its own.
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn send_dump_request(socket: &Socket) -> std::io::Result<()> {
    let mut route = RouteMessage::default();
    route.header.address_family = AddressFamily::Inet;
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    header.sequence_number = DUMP_SEQUENCE;
    let mut request = NetlinkMessage::new(
        header,
        NetlinkPayload::from(RouteNetlinkMessage::GetRoute(route)),
    );
    request.finalize();
    // `serialize` needs exactly `buffer_len()` bytes, which is what is allocated.
    let mut buffer = vec![0u8; request.buffer_len()];
    request.serialize(&mut buffer);
    let kernel = SocketAddr::new(0, 0);
    socket.send_to(&buffer, &kernel, 0).map(|_| ())
}

/// The reading thread's state.
struct Reader {
    socket: Socket,
    own_port: u32,
    table: Option<u32>,
    clock: RunClock,
    tx: mpsc::UnboundedSender<FibEvent>,
    stop: Arc<AtomicBool>,
}

impl Reader {
    fn run(self) {
        if let Err(why) = vmbgp_host::priority::raise_current_thread(
            vmbgp_host::priority::StampingThread::RouteObserver,
        ) {
            let _ = self.tx.send(FibEvent::NormalPriority { why });
        }
        let mut buffer: Vec<u8> = Vec::with_capacity(RECV_BUFFER);
        while !self.stop.load(Ordering::Relaxed) {
            buffer.clear();
            let received = self.socket.recv(&mut buffer, 0);
            // The arrival instant of everything in this datagram.
            let at = self.clock.now();
            match received {
                Ok(_) => {
                    for event in parse_datagram(&buffer, at, self.own_port, self.table) {
                        if self.tx.send(event).is_err() {
                            return; // nobody listens any more
                        }
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::Interrupted
                    ) => {}
                Err(e) if e.raw_os_error() == Some(ENOBUFS) => {
                    let _ = self.tx.send(FibEvent::Overrun { at });
                }
                Err(e) => {
                    let _ = self.tx.send(FibEvent::Failed {
                        at,
                        error: format!("recv: {e}"),
                    });
                    return;
                }
            }
        }
    }
}

/// `ENOBUFS` (105 on every Linux architecture): the kernel dropped notifications.
const ENOBUFS: i32 = 105;

/// Decodes one netlink datagram (possibly several messages) into events. Never panics.
pub fn parse_datagram(
    datagram: &[u8],
    at: MonoStamp,
    own_port: u32,
    table: Option<u32>,
) -> Vec<FibEvent> {
    let mut events = Vec::new();
    let mut offset = 0;
    while offset < datagram.len() {
        let rest = &datagram[offset..];
        let length = match NetlinkBuffer::new_checked(rest) {
            Ok(b) => b.length() as usize,
            Err(e) => {
                events.push(FibEvent::Undecodable {
                    at,
                    error: format!("netlink header: {e}"),
                });
                break;
            }
        };
        // Messages are 4-byte aligned within a datagram.
        let advance = length.div_ceil(4) * 4;
        let message = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rest[..length]);
        offset += advance.max(1);
        let message = match message {
            Ok(m) => m,
            Err(e) => {
                events.push(FibEvent::Undecodable {
                    at,
                    error: e.to_string(),
                });
                continue;
            }
        };
        let from_our_dump = message.header.sequence_number == DUMP_SEQUENCE
            && message.header.port_number == own_port;
        match message.payload {
            NetlinkPayload::Done(_) if from_our_dump => events.push(FibEvent::DumpComplete { at }),
            NetlinkPayload::Overrun(_) => events.push(FibEvent::Overrun { at }),
            NetlinkPayload::Error(e) => events.push(FibEvent::Undecodable {
                at,
                error: format!("netlink error message: {e:?}"),
            }),
            NetlinkPayload::InnerMessage(inner) => {
                let (kind, route) = match inner {
                    RouteNetlinkMessage::NewRoute(r) if from_our_dump => {
                        (RouteChangeKind::Present, r)
                    }
                    RouteNetlinkMessage::NewRoute(r)
                        if message.header.flags & NLM_F_REPLACE != 0 =>
                    {
                        (RouteChangeKind::Replaced, r)
                    }
                    RouteNetlinkMessage::NewRoute(r) => (RouteChangeKind::Added, r),
                    RouteNetlinkMessage::DelRoute(r) => (RouteChangeKind::Removed, r),
                    _ => continue,
                };
                if let Some(change) = route_change(at, kind, &route, table) {
                    events.push(FibEvent::Route(change));
                }
            }
            _ => {}
        }
    }
    events
}

fn route_change(
    at: MonoStamp,
    kind: RouteChangeKind,
    route: &RouteMessage,
    table_filter: Option<u32>,
) -> Option<RouteChange> {
    if route.header.address_family != AddressFamily::Inet {
        return None;
    }
    let mut table = u32::from(route.header.table);
    let mut destination = Ipv4Addr::UNSPECIFIED;
    let mut next_hops = Vec::new();
    let mut interfaces = Vec::new();
    let mut nexthop_id = None;
    let mut metric = None;
    for attribute in &route.attributes {
        match attribute {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(RouteAddress::Inet(a)) => destination = *a,
            RouteAttribute::Gateway(RouteAddress::Inet(g)) => next_hops.push(*g),
            RouteAttribute::Oif(i) => interfaces.push(*i),
            RouteAttribute::NhId(id) => nexthop_id = Some(*id),
            RouteAttribute::Priority(p) => metric = Some(*p),
            RouteAttribute::MultiPath(hops) => {
                for hop in hops {
                    if hop.interface_index != 0 {
                        interfaces.push(hop.interface_index);
                    }
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
    if table_filter.is_some_and(|t| t != table) {
        return None;
    }
    let prefix = Ipv4Net::new(destination, route.header.destination_prefix_length).ok()?;
    next_hops.sort();
    next_hops.dedup();
    interfaces.sort();
    interfaces.dedup();
    Some(RouteChange {
        at,
        prefix,
        kind,
        next_hops,
        interfaces,
        nexthop_id,
        protocol: protocol_name(route.header.protocol),
        table,
        metric,
        route_type: route_type_name(route.header.kind),
    })
}

fn protocol_name(protocol: RouteProtocol) -> String {
    match protocol {
        RouteProtocol::Other(n) => format!("other({n})"),
        p => format!("{p:?}").to_lowercase(),
    }
}

fn route_type_name(kind: RouteType) -> String {
    format!("{kind:?}").to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_route::route::RouteNextHop;

    fn encode(flags: u16, seq: u32, port: u32, inner: RouteNetlinkMessage) -> Vec<u8> {
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = seq;
        header.port_number = port;
        let mut m = NetlinkMessage::new(header, NetlinkPayload::from(inner));
        m.finalize();
        let mut b = vec![0u8; m.buffer_len()];
        m.serialize(&mut b);
        b
    }

    fn ecmp_route() -> RouteMessage {
        let mut r = RouteMessage::default();
        r.header.address_family = AddressFamily::Inet;
        r.header.destination_prefix_length = 24;
        r.header.table = RouteHeader::RT_TABLE_MAIN;
        r.header.protocol = RouteProtocol::Bgp;
        r.header.kind = RouteType::Unicast;
        r.attributes
            .push(RouteAttribute::Destination(RouteAddress::Inet(
                Ipv4Addr::new(198, 19, 1, 0),
            )));
        r.attributes.push(RouteAttribute::NhId(12));
        let hop = |last: u8, oif: u32| {
            let mut h = RouteNextHop::default();
            h.interface_index = oif;
            h.attributes
                .push(RouteAttribute::Gateway(RouteAddress::Inet(Ipv4Addr::new(
                    198, 18, 0, last,
                ))));
            h
        };
        r.attributes
            .push(RouteAttribute::MultiPath(vec![hop(2, 3), hop(1, 3)]));
        r
    }

    #[test]
    fn decodes_ecmp_changes_dump_replies_and_garbage() {
        let at = MonoStamp::from_offset(std::time::Duration::from_millis(5));
        let mut datagram = encode(
            NLM_F_REPLACE,
            1,
            99,
            RouteNetlinkMessage::NewRoute(ecmp_route()),
        );
        datagram.extend(encode(
            0,
            DUMP_SEQUENCE,
            42,
            RouteNetlinkMessage::NewRoute(ecmp_route()),
        ));
        datagram.extend(encode(0, 0, 0, RouteNetlinkMessage::DelRoute(ecmp_route())));
        let events = parse_datagram(&datagram, at, 42, Some(254));
        let kinds: Vec<RouteChangeKind> = events
            .iter()
            .map(|e| match e {
                FibEvent::Route(r) => {
                    assert_eq!(r.prefix, "198.19.1.0/24".parse::<Ipv4Net>().expect("net"));
                    assert_eq!(
                        r.next_hops,
                        [Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 18, 0, 2)]
                    );
                    assert_eq!(r.nexthop_id, Some(12));
                    assert_eq!(r.protocol, "bgp");
                    assert_eq!(r.at, at);
                    r.kind
                }
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                RouteChangeKind::Replaced,
                RouteChangeKind::Present,
                RouteChangeKind::Removed
            ]
        );
        // Another table is filtered out; garbage is reported, not a panic.
        assert!(parse_datagram(&datagram, at, 42, Some(100)).is_empty());
        assert!(matches!(
            parse_datagram(&[1, 2, 3], at, 42, None)[..],
            [FibEvent::Undecodable { .. }]
        ));
    }

    #[test]
    fn datagram_parser_never_panics_on_mutations() {
        let base = encode(0, 0, 0, RouteNetlinkMessage::NewRoute(ecmp_route()));
        let at = MonoStamp::from_offset(std::time::Duration::ZERO);
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
            let _ = parse_datagram(&d[..cut], at, 0, None);
        }
    }
}
