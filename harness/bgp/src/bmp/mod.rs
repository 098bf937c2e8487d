//! The BMP station: listens (in the external router's netns or the host's), accepts BMP sessions
//! from the configured router addresses only, and emits every message as a typed [`BmpEvent`]
//! stamped with the run's monotonic clock right after the socket read that completed it returned —
//! before any parsing (DESIGN §4.3; the router's own 1 s timestamps are kept only as labelled
//! [`decode::PeerInfo::router_stamp`]s).
//!
//! Trust: BMP has no authentication, so the station refuses connections from addresses not in
//! [`BmpStationConfig::allow`] without reading them ([`BmpEventKind::Refused`]), attributes every
//! event to its connection and router ([`BmpEvent::router`]), reports a second connection from a
//! router that is already connected ([`BmpEventKind::DuplicateRouter`]), and bounds what one
//! connection can make it report ([`BmpEventKind::WarningsSuppressed`]). Which connection's word
//! counts is decided by [`PeerBook`]: the first connection of a router, until it closes.
//!
//! Framing is in [`framer`], decoding (bgpkit-parser behind structural checks, panic-free) in
//! [`decode`]. Events go to an unbounded channel so a slow consumer never delays the socket reads,
//! which would delay the stamps.

mod check;
pub mod decode;
pub mod framer;
mod peers;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use vmbgp_host::clock::{MonoStamp, RunClock};
use vmbgp_host::netns::{NetnsError, in_netns};

pub use decode::{
    AnnouncedRoute, BmpMessage, Initiation, Malformed, OpenSummary, PeerDown, PeerDownCause,
    PeerInfo, PeerType, PeerUp, Policy, RouteMonitoring, StatCounter, StatValue, Stats,
    Termination,
};
pub use framer::{DEFAULT_MAX_MESSAGE_LEN, FramingError};
pub use peers::{ChangeCause, PeerBook, PeerChange, PeerKey};

/// Size of one socket read.
const READ_CHUNK: usize = 64 * 1024;

/// Default for [`BmpStationConfig::max_reported_warnings`].
pub const DEFAULT_MAX_REPORTED_WARNINGS: usize = 10;

/// TCP keepalive on router connections: FRR's BMP is silent while nothing changes, so without it
/// a router that vanished (reboot, cable) would keep its connection — and its authority in
/// [`PeerBook`] over a reconnect — forever. Dead after 10 s + the kernel's probe count (Linux
/// default 9) × 5 s.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(10);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);

/// Where and how the station listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BmpStationConfig {
    /// Network namespace to listen in (`--netns`, e.g. the lab's `ext`); `None` = the host's.
    pub netns: Option<String>,
    /// Address to listen on; port 0 picks a free port (see [`BmpStation::local_addr`]).
    pub listen: SocketAddr,
    /// Source addresses of the routers allowed to send BMP (as the listener sees them: a router
    /// connecting to a local address of its own host, e.g. FRR's `bmp connect 127.0.0.1` in the
    /// lab's `ext`, comes from that address). Any other connection is closed unread and reported
    /// as [`BmpEventKind::Refused`]. Must not be empty ([`BmpError::NoRouterAllowed`]).
    pub allow: Vec<IpAddr>,
    /// Longest message accepted before the connection is treated as unframeable.
    pub max_message_len: usize,
    /// Decoder warnings (malformed messages, Peer Ups/Downs with warnings) reported per
    /// connection; later ones are counted and summarised in one
    /// [`BmpEventKind::WarningsSuppressed`] when the connection ends, so garbage on the port cannot
    /// flood a log.
    pub max_reported_warnings: usize,
    /// When set, every connection's raw byte stream is also written to
    /// `<dir>/bmp-connection-<N>.bin` (a run artefact for diagnosing a router's BMP, and how the
    /// test fixtures were recorded). Written after the stamp, so it never delays it.
    pub capture_dir: Option<PathBuf>,
}

impl BmpStationConfig {
    /// Listen on `listen` in the host's namespace, accepting BMP from the `allow`ed router
    /// addresses only.
    pub fn new(listen: SocketAddr, allow: impl IntoIterator<Item = IpAddr>) -> Self {
        BmpStationConfig {
            netns: None,
            listen,
            allow: allow.into_iter().collect(),
            max_message_len: DEFAULT_MAX_MESSAGE_LEN,
            max_reported_warnings: DEFAULT_MAX_REPORTED_WARNINGS,
            capture_dir: None,
        }
    }

    /// Listen inside the named network namespace instead.
    pub fn in_netns(mut self, netns: impl Into<String>) -> Self {
        self.netns = Some(netns.into());
        self
    }

    /// Also write each connection's raw bytes under `dir` (see [`Self::capture_dir`]).
    pub fn capture_to(mut self, dir: impl Into<PathBuf>) -> Self {
        self.capture_dir = Some(dir.into());
        self
    }

    /// Report at most `n` decoder warnings per connection (see [`Self::max_reported_warnings`]).
    pub fn max_reported_warnings(mut self, n: usize) -> Self {
        self.max_reported_warnings = n;
        self
    }
}

/// What can go wrong starting the station.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BmpError {
    #[error("no router address is allowed to send BMP (the allow-list is empty)")]
    NoRouterAllowed,
    #[error("entering the network namespace for the BMP listener")]
    Netns(#[from] NetnsError),
    #[error("binding the BMP listener to {addr} (netns {netns:?})")]
    Bind {
        addr: SocketAddr,
        netns: Option<String>,
        #[source]
        source: std::io::Error,
    },
    #[error("handing the BMP listener on {addr} to the async runtime")]
    Register {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Why a BMP connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The router closed the connection; `trailing_bytes` were left that formed no whole message.
    Closed { trailing_bytes: usize },
    /// A read failed (including a TCP keepalive timeout: the router is gone).
    ReadError(String),
    /// The stream lost its framing; the station closed the connection (the router reconnects).
    FramingLost(FramingError),
    /// [`BmpStation::stop`] was called or the station was dropped.
    StationStopped,
}

/// What happened on the station.
#[derive(Debug, Clone, PartialEq)]
pub enum BmpEventKind {
    /// An allowed router connected.
    Connected {
        remote: SocketAddr,
        local: SocketAddr,
    },
    /// A router's connection ended. Always the connection's last event.
    Disconnected(DisconnectReason),
    /// A decoded BMP message (or a [`BmpMessage::Malformed`] one; the stream went on).
    Message(BmpMessage),
    /// A finding: a connection from an address not in [`BmpStationConfig::allow`] was closed
    /// without reading it. Listener-level (connection 0, no router). `nth` counts this station's
    /// refusals (from 1), so a consumer can log a few and count the rest.
    Refused {
        remote: SocketAddr,
        local: SocketAddr,
        nth: u64,
    },
    /// A finding: this connection (just [`Connected`](Self::Connected)) comes from a router that
    /// already has `existing_connection` open — a second BMP target, a reconnect racing the old
    /// connection's end, or another process using the router's address. The station reads it
    /// like any connection; [`PeerBook`] keeps the first connection authoritative until it closes.
    /// `nth` counts this station's duplicates (from 1), like [`Refused`](Self::Refused)'s.
    DuplicateRouter {
        remote: SocketAddr,
        existing_connection: u64,
        nth: u64,
    },
    /// Sent right before [`Disconnected`](Self::Disconnected) when this connection had more
    /// decoder warnings than [`BmpStationConfig::max_reported_warnings`]: `suppressed` more were
    /// not reported (malformed messages dropped; Peer Ups/Downs delivered without warnings).
    WarningsSuppressed { reported: u64, suppressed: u64 },
    /// The listener failed to accept (e.g. out of file descriptors); it keeps trying.
    AcceptError(String),
    /// The raw capture of a connection could not be written; the capture stops, the station goes on.
    CaptureError(String),
}

/// One event with the instant the harness observed it.
#[derive(Debug, Clone, PartialEq)]
pub struct BmpEvent {
    /// For messages: when the socket read that completed the message returned. For connection
    /// events: when accept/EOF/error was observed.
    pub at: MonoStamp,
    /// Numbers the accepted BMP connections of this station (from 1), so events of a reconnect or
    /// of a second connection are told apart; 0 for listener-level events.
    pub connection: u64,
    /// The router the connection comes from (its source address, IPv4-mapped IPv6 folded to
    /// IPv4); `None` exactly for listener-level events.
    pub router: Option<IpAddr>,
    pub kind: BmpEventKind,
}

/// A running BMP station. Dropping it stops it (without the `StationStopped` events; call
/// [`BmpStation::stop`] for those).
#[derive(Debug)]
pub struct BmpStation {
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

/// What every connection task needs.
#[derive(Debug, Clone)]
struct Shared {
    clock: RunClock,
    tx: mpsc::UnboundedSender<BmpEvent>,
    stop: watch::Receiver<bool>,
    max_message_len: usize,
    max_reported_warnings: usize,
}

impl BmpStation {
    /// Binds the listener (inside `config.netns` when set) and starts accepting. Returns the
    /// station and the receiving end of its event channel. Must be called within a tokio runtime.
    pub async fn start(
        config: BmpStationConfig,
        clock: RunClock,
    ) -> Result<(BmpStation, mpsc::UnboundedReceiver<BmpEvent>), BmpError> {
        if config.allow.is_empty() {
            return Err(BmpError::NoRouterAllowed);
        }
        let allow: BTreeSet<IpAddr> = config.allow.iter().map(|a| a.to_canonical()).collect();
        let addr = config.listen;
        let bound = in_netns(config.netns.as_deref(), move || {
            let l = std::net::TcpListener::bind(addr)?;
            l.set_nonblocking(true)?;
            Ok::<_, std::io::Error>(l)
        })?
        .map_err(|source| BmpError::Bind {
            addr,
            netns: config.netns.clone(),
            source,
        })?;
        let local_addr = bound
            .local_addr()
            .map_err(|source| BmpError::Register { addr, source })?;
        let listener =
            TcpListener::from_std(bound).map_err(|source| BmpError::Register { addr, source })?;
        let (tx, rx) = mpsc::unbounded_channel();
        let (stop, stop_rx) = watch::channel(false);
        let shared = Shared {
            clock,
            tx,
            stop: stop_rx,
            max_message_len: config.max_message_len,
            max_reported_warnings: config.max_reported_warnings,
        };
        let task = tokio::spawn(accept_loop(
            listener,
            allow,
            shared,
            config.capture_dir.clone(),
        ));
        Ok((
            BmpStation {
                local_addr,
                stop,
                task: Some(task),
            },
            rx,
        ))
    }

    /// The address the listener is bound to (inside its namespace).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, closes every connection (each emits `Disconnected(StationStopped)`) and
    /// waits until all of it is done. The event channel closes afterwards.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for BmpStation {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Open connections per router, to report duplicates.
#[derive(Debug, Default)]
struct OpenConnections {
    by_router: BTreeMap<IpAddr, BTreeSet<u64>>,
    by_task: HashMap<tokio::task::Id, (IpAddr, u64)>,
}

impl OpenConnections {
    fn ended(&mut self, task: tokio::task::Id) {
        if let Some((router, id)) = self.by_task.remove(&task)
            && let Some(ids) = self.by_router.get_mut(&router)
        {
            ids.remove(&id);
            if ids.is_empty() {
                self.by_router.remove(&router);
            }
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    allow: BTreeSet<IpAddr>,
    shared: Shared,
    capture_dir: Option<PathBuf>,
) {
    let mut stop = shared.stop.clone();
    let tx = shared.tx.clone();
    let clock = shared.clock;
    let mut connections = tokio::task::JoinSet::new();
    let mut open = OpenConnections::default();
    let mut next_id: u64 = 1;
    let mut refused: u64 = 0;
    let mut duplicates: u64 = 0;
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => {
                let at = clock.now();
                match accepted {
                    Ok((stream, remote)) => {
                        let local = stream.local_addr().unwrap_or(remote);
                        let router = remote.ip().to_canonical();
                        if !allow.contains(&router) {
                            // Closed before any read: nothing it sent is looked at.
                            drop(stream);
                            refused += 1;
                            let _ = tx.send(BmpEvent {
                                at,
                                connection: 0,
                                router: None,
                                kind: BmpEventKind::Refused { remote, local, nth: refused },
                            });
                            continue;
                        }
                        // Connections that ended meanwhile no longer count as open.
                        while let Some(done) = connections.try_join_next_with_id() {
                            open.ended(done.map_or_else(|e| e.id(), |(id, ())| id));
                        }
                        let id = next_id;
                        next_id += 1;
                        let send = |kind| {
                            let _ = tx.send(BmpEvent { at, connection: id, router: Some(router), kind });
                        };
                        send(BmpEventKind::Connected { remote, local });
                        if let Some(&existing) =
                            open.by_router.get(&router).and_then(|ids| ids.first())
                        {
                            duplicates += 1;
                            send(BmpEventKind::DuplicateRouter {
                                remote,
                                existing_connection: existing,
                                nth: duplicates,
                            });
                        }
                        // Best effort: without keepalive only a vanished router stays connected.
                        let keepalive = socket2::TcpKeepalive::new()
                            .with_time(KEEPALIVE_IDLE)
                            .with_interval(KEEPALIVE_INTERVAL);
                        let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
                        let capture = capture_dir
                            .as_ref()
                            .map(|d| d.join(format!("bmp-connection-{id}.bin")));
                        let handle = connections.spawn(read_connection(
                            stream,
                            id,
                            router,
                            shared.clone(),
                            capture,
                        ));
                        open.by_router.entry(router).or_default().insert(id);
                        open.by_task.insert(handle.id(), (router, id));
                    }
                    Err(e) => {
                        let _ = tx.send(BmpEvent {
                            at,
                            connection: 0,
                            router: None,
                            kind: BmpEventKind::AcceptError(e.to_string()),
                        });
                        // Errors such as EMFILE repeat immediately; do not spin.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            // Reap finished connection tasks so the set does not grow over reconnects.
            Some(done) = connections.join_next_with_id(), if !connections.is_empty() => {
                open.ended(done.map_or_else(|e| e.id(), |(id, ())| id));
            }
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// Decoding with the state of one connection that a single message does not carry: which peers
/// it reported up (to mark FRR's Peer Downs at connect, and to refuse a Peer Up/Down that
/// contradicts the session it reported up). The station runs one per connection.
#[derive(Debug, Default)]
struct ConnectionDecoder {
    /// (address, distinguisher) → the BGP identifier its Peer Up carried.
    peers_up: BTreeMap<(IpAddr, u64), Ipv4Addr>,
}

impl ConnectionDecoder {
    fn decode(&mut self, raw: bytes::Bytes) -> BmpMessage {
        let message = decode::decode(raw.clone());
        let contradiction = |what: &str, peer: &PeerInfo, up_id: Ipv4Addr| {
            BmpMessage::Malformed(Malformed {
                msg_type: raw.get(5).copied(),
                error: format!(
                    "{what} for {} carries BGP identifier {}, but this connection reported the \
                     peer up with {up_id}: it cannot be about that session",
                    peer.address, peer.bgp_id
                ),
                raw: raw.clone(),
            })
        };
        match message {
            BmpMessage::PeerUp(up) => {
                let key = (up.peer.address, up.peer.distinguisher);
                match self.peers_up.get(&key) {
                    // A router re-announcing the same session is harmless; another session for
                    // a peer still up is impossible without a Peer Down in between.
                    Some(&id) if id != up.peer.bgp_id => contradiction("a Peer Up", &up.peer, id),
                    _ => {
                        self.peers_up.insert(key, up.peer.bgp_id);
                        BmpMessage::PeerUp(up)
                    }
                }
            }
            BmpMessage::PeerDown(mut down) => {
                let key = (down.peer.address, down.peer.distinguisher);
                match self.peers_up.get(&key) {
                    // FRR keeps the identifier in a real Peer Down; zero says nothing.
                    Some(&id) if !down.peer.bgp_id.is_unspecified() && id != down.peer.bgp_id => {
                        contradiction("a Peer Down", &down.peer, id)
                    }
                    up => {
                        down.without_peer_up = up.is_none();
                        self.peers_up.remove(&key);
                        BmpMessage::PeerDown(down)
                    }
                }
            }
            other => other,
        }
    }
}

/// Framing + decoding of one connection's byte stream exactly as the station does it, including
/// the per-connection checks (Peer Downs without a Peer Up are marked; a Peer Up/Down whose BGP
/// identifier contradicts the session this stream reported up is malformed), but without the
/// warning budget: replays of a recorded stream (a capture file), tests and fuzzing.
#[derive(Debug)]
pub struct StreamDecoder {
    framer: framer::Framer,
    decoder: ConnectionDecoder,
}

impl StreamDecoder {
    /// A decoder refusing messages longer than `max_message_len`.
    pub fn new(max_message_len: usize) -> Self {
        StreamDecoder {
            framer: framer::Framer::new(max_message_len),
            decoder: ConnectionDecoder::default(),
        }
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, data: &[u8]) {
        self.framer.push(data);
    }

    /// Bytes buffered that do not form a whole message yet.
    pub fn pending(&self) -> usize {
        self.framer.pending()
    }

    /// The next decoded message, `None` when more bytes are needed, or why framing was lost
    /// (after which the decoder yields nothing more).
    pub fn next_message(&mut self) -> Option<Result<BmpMessage, FramingError>> {
        let next = self.framer.next_message()?;
        Some(next.map(|raw| self.decoder.decode(raw)))
    }
}

/// Per-connection limit on reported decoder warnings.
#[derive(Debug)]
struct WarningBudget {
    max: u64,
    reported: u64,
    suppressed: u64,
}

impl WarningBudget {
    fn new(max: usize) -> Self {
        WarningBudget {
            max: max as u64,
            reported: 0,
            suppressed: 0,
        }
    }

    /// Whether to deliver `message`; over budget, malformed messages are dropped and the
    /// warnings of Peer Ups/Downs cleared (their state change still counts).
    fn admit(&mut self, message: &mut BmpMessage) -> bool {
        let warns = match message {
            BmpMessage::Malformed(_) => true,
            BmpMessage::PeerUp(u) => !u.warnings.is_empty(),
            BmpMessage::PeerDown(d) => !d.warnings.is_empty(),
            _ => false,
        };
        if !warns {
            return true;
        }
        if self.reported < self.max {
            self.reported += 1;
            return true;
        }
        self.suppressed += 1;
        match message {
            BmpMessage::PeerUp(u) => u.warnings.clear(),
            BmpMessage::PeerDown(d) => d.warnings.clear(),
            _ => return false,
        }
        true
    }
}

/// What the reader hands the decoding task, in stream order.
#[derive(Debug)]
enum Raw {
    Message(bytes::Bytes),
    Event(BmpEventKind),
}

/// Reads one connection: stamps each read, splits it into messages and hands them on. Decoding
/// runs in a separate task ([`decode_connection`]), so a burst larger than the decoder's rate
/// (~5 µs per message) queues already-stamped messages instead of delaying the reads.
async fn read_connection(
    mut stream: TcpStream,
    id: u64,
    router: IpAddr,
    shared: Shared,
    capture: Option<PathBuf>,
) {
    let Shared {
        clock,
        tx,
        mut stop,
        max_message_len,
        max_reported_warnings,
    } = shared;
    let (raw_tx, raw_rx) = mpsc::unbounded_channel();
    let decoding = tokio::spawn(decode_connection(
        raw_rx,
        id,
        router,
        tx,
        max_reported_warnings,
    ));
    let mut framer = framer::Framer::new(max_message_len);
    let mut chunk = vec![0u8; READ_CHUNK];
    let send = |at: MonoStamp, raw: Raw| {
        let _ = raw_tx.send((at, raw));
    };
    let mut capture_file = match capture.map(|path| (std::fs::File::create(&path), path)) {
        None => None,
        Some((Ok(file), _)) => Some(file),
        Some((Err(e), path)) => {
            send(
                clock.now(),
                Raw::Event(BmpEventKind::CaptureError(format!(
                    "creating {}: {e}",
                    path.display()
                ))),
            );
            None
        }
    };
    loop {
        let read = tokio::select! {
            biased;
            r = stream.read(&mut chunk) => r,
            _ = stop.changed() => {
                send(
                    clock.now(),
                    Raw::Event(BmpEventKind::Disconnected(DisconnectReason::StationStopped)),
                );
                break;
            }
        };
        // The arrival instant of everything this read completed.
        let at = clock.now();
        let n = match read {
            Ok(0) => {
                let reason = DisconnectReason::Closed {
                    trailing_bytes: framer.pending(),
                };
                send(at, Raw::Event(BmpEventKind::Disconnected(reason)));
                break;
            }
            Ok(n) => n,
            Err(e) => {
                let reason = DisconnectReason::ReadError(e.to_string());
                send(at, Raw::Event(BmpEventKind::Disconnected(reason)));
                break;
            }
        };
        framer.push(&chunk[..n]);
        let mut lost = None;
        while let Some(next) = framer.next_message() {
            match next {
                Ok(message) => send(at, Raw::Message(message)),
                Err(error) => lost = Some(error),
            }
        }
        if let Some(file) = capture_file.as_mut()
            && let Err(e) = file.write_all(&chunk[..n])
        {
            send(at, Raw::Event(BmpEventKind::CaptureError(e.to_string())));
            capture_file = None;
        }
        if let Some(error) = lost {
            // Last, so Disconnected stays the connection's last event.
            let reason = DisconnectReason::FramingLost(error);
            send(at, Raw::Event(BmpEventKind::Disconnected(reason)));
            break; // dropping the stream closes it
        }
    }
    drop(raw_tx);
    let _ = decoding.await;
}

/// Decodes a connection's messages in order and emits them with their arrival stamps.
async fn decode_connection(
    mut raw: mpsc::UnboundedReceiver<(MonoStamp, Raw)>,
    id: u64,
    router: IpAddr,
    tx: mpsc::UnboundedSender<BmpEvent>,
    max_reported_warnings: usize,
) {
    let mut decoder = ConnectionDecoder::default();
    let mut budget = WarningBudget::new(max_reported_warnings);
    let send = |at: MonoStamp, kind: BmpEventKind| {
        let _ = tx.send(BmpEvent {
            at,
            connection: id,
            router: Some(router),
            kind,
        });
    };
    while let Some((at, item)) = raw.recv().await {
        match item {
            Raw::Message(bytes) => {
                let mut message = decoder.decode(bytes);
                if budget.admit(&mut message) {
                    send(at, BmpEventKind::Message(message));
                }
            }
            Raw::Event(kind @ BmpEventKind::Disconnected(_)) => {
                if budget.suppressed > 0 {
                    send(
                        at,
                        BmpEventKind::WarningsSuppressed {
                            reported: budget.reported,
                            suppressed: budget.suppressed,
                        },
                    );
                }
                send(at, kind);
            }
            Raw::Event(kind) => send(at, kind),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STARTUP: &[u8] = include_bytes!(
        "../../tests/fixtures/frr-8.4.4-startup-advertise-ecmp-withdraw-restart.bmp"
    );

    /// Messages of `msg_type` about peer `.n`, in stream order.
    fn recorded(msg_type: u8, n: u8) -> Vec<Vec<u8>> {
        let mut rest = STARTUP;
        let mut found = Vec::new();
        while rest.len() >= 6 {
            let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
            if rest[5] == msg_type && rest[31] == n {
                found.push(rest[..len].to_vec());
            }
            rest = &rest[len..];
        }
        found
    }

    #[test]
    fn a_connection_cannot_contradict_the_session_it_reported_up() {
        let up = recorded(3, 1).swap_remove(0);
        let down = recorded(2, 1).swap_remove(1); // reason 4, BGP identifier 198.18.0.1
        assert_eq!(down[36..40], [198, 18, 0, 1]);
        let mut decoder = ConnectionDecoder::default();
        assert!(matches!(
            decoder.decode(up.clone().into()),
            BmpMessage::PeerUp(_)
        ));
        // The same session again is harmless.
        assert!(matches!(
            decoder.decode(up.clone().into()),
            BmpMessage::PeerUp(_)
        ));
        // Another identifier (e.g. n2's Peer Down with its address turned into n1's) is not it.
        let mut other = down.clone();
        other[39] = 2;
        match decoder.decode(other.into()) {
            BmpMessage::Malformed(m) => assert!(m.error.contains("cannot be about"), "{m:?}"),
            m => panic!("{m:?}"),
        }
        // FRR's own Peer Down is, and the next Peer Down is one without a Peer Up.
        assert!(matches!(
            decoder.decode(down.clone().into()),
            BmpMessage::PeerDown(d) if !d.without_peer_up
        ));
        assert!(matches!(
            decoder.decode(down.into()),
            BmpMessage::PeerDown(d) if d.without_peer_up
        ));
        // A Peer Up with another identifier for a peer still up is not a real session either.
        let mut decoder = ConnectionDecoder::default();
        decoder.decode(up.clone().into());
        let mut n2_as_n1 = recorded(3, 2).swap_remove(0);
        n2_as_n1[31] = 1;
        assert!(matches!(
            decoder.decode(n2_as_n1.into()),
            BmpMessage::Malformed(_)
        ));
    }

    #[test]
    fn the_warning_budget_drops_malformed_and_strips_warnings_past_the_limit() {
        let mut budget = WarningBudget::new(1);
        let malformed = || {
            BmpMessage::Malformed(Malformed {
                msg_type: Some(3),
                error: "x".into(),
                raw: bytes::Bytes::new(),
            })
        };
        let mut first = malformed();
        assert!(budget.admit(&mut first));
        let mut init = BmpMessage::Initiation(Initiation::default());
        assert!(
            budget.admit(&mut init),
            "messages without warnings always pass"
        );
        assert!(!budget.admit(&mut malformed()));
        let up = recorded(3, 1).swap_remove(0);
        let BmpMessage::PeerUp(mut with_warning) = decode::decode(up.into()) else {
            panic!("Peer Up");
        };
        with_warning.warnings.push("w".into());
        let mut message = BmpMessage::PeerUp(with_warning);
        assert!(budget.admit(&mut message));
        assert!(matches!(message, BmpMessage::PeerUp(u) if u.warnings.is_empty()));
        assert_eq!((budget.reported, budget.suppressed), (1, 2));
    }
}
