//! Self-calibration of the FIB watcher (convergence-anchors.md B.4, "netlink event latency"):
//! installs and removes a blackhole /32 in a routing table no rule points to — so forwarding is
//! untouched — through a netlink socket in the same namespace, and measures how long after the
//! request was sent the [`FibWatcher`] stamps the resulting event. That is the floor under every
//! "route in FIB" instant the harness reports.

use std::net::Ipv4Addr;
use std::time::Duration;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage,
    NetlinkPayload,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use tokio::sync::mpsc;
use vmbgp_host::clock::{MonoStamp, RunClock};
use vmbgp_host::netns::in_netns;

use super::{FibError, FibEvent, FibWatcher, FibWatcherConfig, RouteChangeKind};

/// How to calibrate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalibrationConfig {
    /// Namespace of the router's FIB (`--netns`); `None` = the host's.
    pub netns: Option<String>,
    /// The /32 to install, as a blackhole. Default 198.18.255.254 (benchmarking range).
    pub address: Ipv4Addr,
    /// A routing table no `ip rule` selects, so the route never forwards anything.
    pub table: u32,
    /// Add/remove cycles.
    pub samples: usize,
    /// Bound on each wait for an event.
    pub timeout: Duration,
}

impl CalibrationConfig {
    /// 20 cycles of 198.18.255.254/32 in table 25_464, in the host's namespace.
    pub fn new() -> Self {
        CalibrationConfig {
            netns: None,
            address: Ipv4Addr::new(198, 18, 255, 254),
            table: 25_464,
            samples: 20,
            timeout: Duration::from_secs(2),
        }
    }

    /// Calibrate inside the named namespace.
    pub fn in_netns(mut self, netns: impl Into<String>) -> Self {
        self.netns = Some(netns.into());
        self
    }
}

impl Default for CalibrationConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// Request sent → watcher stamped the event, per cycle.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CalibrationReport {
    pub add: Vec<Duration>,
    pub remove: Vec<Duration>,
}

/// What can go wrong calibrating.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CalibrationError {
    #[error("starting the FIB watcher for calibration")]
    Watcher(#[from] FibError),
    #[error("entering the network namespace for the calibration socket")]
    Netns(#[from] vmbgp_host::netns::NetnsError),
    #[error("{operation} on the calibration netlink socket")]
    Socket {
        operation: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the kernel refused to {operation} the calibration route {address}/32 in table {table}: errno {errno}"
    )]
    Refused {
        operation: &'static str,
        address: Ipv4Addr,
        table: u32,
        errno: i32,
    },
    #[error("no netlink event for the calibration route within {timeout:?} ({operation})")]
    NoEvent {
        operation: &'static str,
        timeout: Duration,
    },
    #[error("the calibration task failed: {0}")]
    Task(String),
}

/// Runs the calibration; the route is removed again even when a wait fails.
pub async fn calibrate_event_latency(
    config: CalibrationConfig,
    clock: RunClock,
) -> Result<CalibrationReport, CalibrationError> {
    let mut watcher_config = FibWatcherConfig::new();
    watcher_config.netns = config.netns.clone();
    watcher_config.table = Some(config.table);
    watcher_config.initial_dump = false;
    let (watcher, mut events) = FibWatcher::start(watcher_config, clock).await?;
    let socket = in_netns(config.netns.as_deref(), || {
        let mut s = Socket::new(NETLINK_ROUTE)?;
        s.bind_auto()?;
        Ok::<_, std::io::Error>(s)
    })?
    .map_err(|source| CalibrationError::Socket {
        operation: "open",
        source,
    })?;
    let socket = std::sync::Arc::new(socket);
    let mut report = CalibrationReport::default();
    let mut outcome = Ok(());
    for _ in 0..config.samples {
        let cycle = async {
            let sent = request(&socket, &config, clock, true).await?;
            let at = wait_for(&mut events, &config, RouteChangeKind::Added, "add").await?;
            report.add.push(at.since(sent).unwrap_or_default());
            let sent = request(&socket, &config, clock, false).await?;
            let at = wait_for(&mut events, &config, RouteChangeKind::Removed, "remove").await?;
            report.remove.push(at.since(sent).unwrap_or_default());
            Ok::<_, CalibrationError>(())
        };
        if let Err(e) = cycle.await {
            outcome = Err(e);
            break;
        }
    }
    if outcome.is_err() {
        // Best effort: leave no calibration route behind.
        let _ = request(&socket, &config, clock, false).await;
    }
    watcher.stop().await;
    outcome.map(|()| report)
}

async fn wait_for(
    events: &mut mpsc::UnboundedReceiver<FibEvent>,
    config: &CalibrationConfig,
    kind: RouteChangeKind,
    operation: &'static str,
) -> Result<MonoStamp, CalibrationError> {
    let deadline = tokio::time::Instant::now() + config.timeout;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(FibEvent::Route(r)))
                if r.kind == kind
                    && r.prefix.addr() == config.address
                    && r.prefix.prefix_len() == 32 =>
            {
                return Ok(r.at);
            }
            Ok(Some(_)) => continue,
            Ok(None) | Err(_) => {
                return Err(CalibrationError::NoEvent {
                    operation,
                    timeout: config.timeout,
                });
            }
        }
    }
}

/// Sends an add or delete and reads the kernel's acknowledgement (on a blocking thread); returns
/// the instant just before the send.
async fn request(
    socket: &std::sync::Arc<Socket>,
    config: &CalibrationConfig,
    clock: RunClock,
    add: bool,
) -> Result<MonoStamp, CalibrationError> {
    let mut route = RouteMessage::default();
    route.header.address_family = AddressFamily::Inet;
    route.header.destination_prefix_length = 32;
    route.header.table = RouteHeader::RT_TABLE_UNSPEC; // the real id is the Table attribute
    route.header.protocol = RouteProtocol::Static;
    route.header.scope = RouteScope::Universe;
    route.header.kind = RouteType::BlackHole;
    route
        .attributes
        .push(RouteAttribute::Destination(RouteAddress::Inet(
            config.address,
        )));
    route.attributes.push(RouteAttribute::Table(config.table));
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_ACK | if add { NLM_F_CREATE | NLM_F_EXCL } else { 0 };
    let inner = if add {
        RouteNetlinkMessage::NewRoute(route)
    } else {
        RouteNetlinkMessage::DelRoute(route)
    };
    let mut message = NetlinkMessage::new(header, NetlinkPayload::from(inner));
    message.finalize();
    // `serialize` needs exactly `buffer_len()` bytes, which is what is allocated.
    let mut bytes = vec![0u8; message.buffer_len()];
    message.serialize(&mut bytes);
    let socket = socket.clone();
    let (address, table) = (config.address, config.table);
    let operation = if add { "add" } else { "delete" };
    tokio::task::spawn_blocking(move || {
        let sent = clock.now();
        socket
            .send_to(&bytes, &SocketAddr::new(0, 0), 0)
            .map_err(|source| CalibrationError::Socket {
                operation: "send",
                source,
            })?;
        let mut reply = Vec::with_capacity(8192);
        socket
            .recv(&mut reply, 0)
            .map_err(|source| CalibrationError::Socket {
                operation: "receive the acknowledgement",
                source,
            })?;
        match NetlinkMessage::<RouteNetlinkMessage>::deserialize(&reply).map(|m| m.payload) {
            Ok(NetlinkPayload::Error(e)) => match e.code {
                None => Ok(sent),
                Some(code) => Err(CalibrationError::Refused {
                    operation,
                    address,
                    table,
                    errno: -code.get(),
                }),
            },
            _ => Ok(sent),
        }
    })
    .await
    .map_err(|e| CalibrationError::Task(e.to_string()))?
}
