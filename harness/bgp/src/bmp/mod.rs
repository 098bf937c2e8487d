//! The BMP station: listens (in the external router's netns or the host's), accepts the router's
//! BMP sessions, and emits every message as a typed [`BmpEvent`] stamped with the run's monotonic
//! clock right after the socket read that completed it returned — before any parsing (DESIGN §4.3;
//! the router's own 1 s timestamps are kept only as labelled [`decode::PeerInfo::router_stamp`]s).
//!
//! Framing is in [`framer`], decoding (bgpkit-parser, quirk-tolerant, panic-free) in [`decode`].
//! Events go to an unbounded channel so a slow consumer never delays the socket reads, which
//! would delay the stamps.

pub mod decode;
pub mod framer;

use std::collections::BTreeSet;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

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

/// Size of one socket read.
const READ_CHUNK: usize = 64 * 1024;

/// Where and how the station listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BmpStationConfig {
    /// Network namespace to listen in (`--netns`, e.g. the lab's `ext`); `None` = the host's.
    pub netns: Option<String>,
    /// Address to listen on; port 0 picks a free port (see [`BmpStation::local_addr`]).
    pub listen: SocketAddr,
    /// Longest message accepted before the connection is treated as unframeable.
    pub max_message_len: usize,
    /// When set, every connection's raw byte stream is also written to
    /// `<dir>/bmp-connection-<N>.bin` (a run artefact for diagnosing a router's BMP, and how the
    /// test fixtures were recorded). Written after the stamp, so it never delays it.
    pub capture_dir: Option<PathBuf>,
}

impl BmpStationConfig {
    /// Listen on `listen` in the host's namespace.
    pub fn new(listen: SocketAddr) -> Self {
        BmpStationConfig {
            netns: None,
            listen,
            max_message_len: DEFAULT_MAX_MESSAGE_LEN,
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
}

/// What can go wrong starting the station.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BmpError {
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
    /// A read failed.
    ReadError(String),
    /// The stream lost its framing; the station closed the connection (the router reconnects).
    FramingLost(FramingError),
    /// [`BmpStation::stop`] was called or the station was dropped.
    StationStopped,
}

/// What happened on the station.
#[derive(Debug, Clone, PartialEq)]
pub enum BmpEventKind {
    /// A router connected.
    Connected {
        remote: SocketAddr,
        local: SocketAddr,
    },
    /// A router's connection ended.
    Disconnected(DisconnectReason),
    /// A decoded BMP message (or a [`BmpMessage::Malformed`] one; the stream went on).
    Message(BmpMessage),
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
    /// Numbers the BMP connections of this station (from 1), so events of a reconnect are told
    /// apart; 0 for listener-level events.
    pub connection: u64,
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

impl BmpStation {
    /// Binds the listener (inside `config.netns` when set) and starts accepting. Returns the
    /// station and the receiving end of its event channel. Must be called within a tokio runtime.
    pub async fn start(
        config: BmpStationConfig,
        clock: RunClock,
    ) -> Result<(BmpStation, mpsc::UnboundedReceiver<BmpEvent>), BmpError> {
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
        let task = tokio::spawn(accept_loop(
            listener,
            clock,
            tx,
            stop_rx,
            config.max_message_len,
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

async fn accept_loop(
    listener: TcpListener,
    clock: RunClock,
    tx: mpsc::UnboundedSender<BmpEvent>,
    mut stop: watch::Receiver<bool>,
    max_message_len: usize,
    capture_dir: Option<PathBuf>,
) {
    let mut connections = tokio::task::JoinSet::new();
    let mut next_id: u64 = 1;
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => {
                let at = clock.now();
                match accepted {
                    Ok((stream, remote)) => {
                        let id = next_id;
                        next_id += 1;
                        let local = stream.local_addr().unwrap_or(remote);
                        let _ = tx.send(BmpEvent {
                            at,
                            connection: id,
                            kind: BmpEventKind::Connected { remote, local },
                        });
                        let capture = capture_dir
                            .as_ref()
                            .map(|d| d.join(format!("bmp-connection-{id}.bin")));
                        connections.spawn(read_connection(
                            stream,
                            id,
                            clock,
                            tx.clone(),
                            stop.clone(),
                            max_message_len,
                            capture,
                        ));
                    }
                    Err(e) => {
                        let _ = tx.send(BmpEvent {
                            at,
                            connection: 0,
                            kind: BmpEventKind::AcceptError(e.to_string()),
                        });
                        // Errors such as EMFILE repeat immediately; do not spin.
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                }
            }
            // Reap finished connection tasks so the set does not grow over reconnects.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// Framing + decoding + the per-connection state a single message does not carry (which peers
/// are up, to mark FRR's Peer Downs at connect). The station runs one per connection; it also
/// replays a recorded stream (a capture file) exactly as the station would have decoded it.
#[derive(Debug)]
pub struct StreamDecoder {
    framer: framer::Framer,
    peers: PeerTracker,
}

/// Peers with a Peer Up on one connection: (address, distinguisher).
#[derive(Debug, Default)]
struct PeerTracker {
    peers_up: BTreeSet<(IpAddr, u64)>,
}

impl PeerTracker {
    fn annotate(&mut self, message: &mut BmpMessage) {
        match message {
            BmpMessage::PeerUp(up) => {
                self.peers_up
                    .insert((up.peer.address, up.peer.distinguisher));
            }
            BmpMessage::PeerDown(down) => {
                let key = (down.peer.address, down.peer.distinguisher);
                down.without_peer_up = !self.peers_up.remove(&key);
            }
            _ => {}
        }
    }
}

impl StreamDecoder {
    /// A decoder refusing messages longer than `max_message_len`.
    pub fn new(max_message_len: usize) -> Self {
        StreamDecoder {
            framer: framer::Framer::new(max_message_len),
            peers: PeerTracker::default(),
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
        Some(next.map(|raw| {
            let mut message = decode::decode(raw);
            self.peers.annotate(&mut message);
            message
        }))
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
    clock: RunClock,
    tx: mpsc::UnboundedSender<BmpEvent>,
    mut stop: watch::Receiver<bool>,
    max_message_len: usize,
    capture: Option<PathBuf>,
) {
    let (raw_tx, raw_rx) = mpsc::unbounded_channel();
    let decoding = tokio::spawn(decode_connection(raw_rx, id, tx));
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
        let mut lost = false;
        while let Some(next) = framer.next_message() {
            match next {
                Ok(message) => send(at, Raw::Message(message)),
                Err(error) => {
                    let reason = DisconnectReason::FramingLost(error);
                    send(at, Raw::Event(BmpEventKind::Disconnected(reason)));
                    lost = true;
                }
            }
        }
        if let Some(file) = capture_file.as_mut()
            && let Err(e) = file.write_all(&chunk[..n])
        {
            send(at, Raw::Event(BmpEventKind::CaptureError(e.to_string())));
            capture_file = None;
        }
        if lost {
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
    tx: mpsc::UnboundedSender<BmpEvent>,
) {
    let mut peers = PeerTracker::default();
    while let Some((at, item)) = raw.recv().await {
        let kind = match item {
            Raw::Message(bytes) => {
                let mut message = decode::decode(bytes);
                peers.annotate(&mut message);
                BmpEventKind::Message(message)
            }
            Raw::Event(kind) => kind,
        };
        let _ = tx.send(BmpEvent {
            at,
            connection: id,
            kind,
        });
    }
}
