//! The station over loopback in the host's namespace (no root needed): a fake router replays
//! FRR's recorded stream in small writes, then a second one sends a corrupt header; connections
//! from addresses not allowed are refused, a second connection claiming a connected router
//! changes none of its peers, and one connection's warnings are bounded. Linux routes all of
//! 127/8 to lo, so 127.0.0.2 is a second source address.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc::UnboundedReceiver;
use vmbgp_bgp::bmp::{
    BmpEvent, BmpEventKind, BmpMessage, BmpStation, BmpStationConfig, DisconnectReason,
    FramingError, PeerBook, PeerKey,
};
use vmbgp_host::clock::RunClock;

const STARTUP: &[u8] =
    include_bytes!("fixtures/frr-8.4.4-startup-advertise-ecmp-withdraw-restart.bmp");
const DUMMY_OPEN: &[u8] = include_bytes!("fixtures/frr-8.4.4-runtime-target-dummy-open.bmp");
const ROUTER: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const STRANGER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const N1: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1));
const N2: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2));

async fn next(rx: &mut UnboundedReceiver<BmpEvent>) -> BmpEvent {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("an event within 5 s")
        .expect("channel open")
}

#[tokio::test]
async fn station_stamps_decodes_and_closes_on_lost_framing() {
    let clock = RunClock::start();
    let (station, mut rx) = start(BmpStationConfig::new(
        SocketAddr::from((ROUTER, 0)),
        [ROUTER],
    ))
    .await;
    let before = clock.now();
    let mut router = tokio::net::TcpStream::connect(station.local_addr())
        .await
        .expect("connect");
    for piece in STARTUP.chunks(97) {
        router.write_all(piece).await.expect("write");
        tokio::task::yield_now().await;
    }
    let first = next(&mut rx).await;
    assert!(
        matches!(first.kind, BmpEventKind::Connected { .. }),
        "{first:?}"
    );
    assert!(first.at >= before);
    assert_eq!(first.router, Some(ROUTER));
    let mut messages = Vec::new();
    let mut last_at = first.at;
    let expected = {
        let mut d = vmbgp_bgp::bmp::StreamDecoder::new(vmbgp_bgp::bmp::DEFAULT_MAX_MESSAGE_LEN);
        d.push(STARTUP);
        std::iter::from_fn(|| d.next_message()).count()
    };
    while messages.len() < expected {
        let e = next(&mut rx).await;
        assert_eq!(e.connection, first.connection);
        assert_eq!(e.router, Some(ROUTER));
        assert!(e.at >= last_at, "stamps in order");
        last_at = e.at;
        match e.kind {
            BmpEventKind::Message(m) => messages.push(m),
            other => panic!("{other:?}"),
        }
    }
    assert!(
        matches!(&messages[0], BmpMessage::Initiation(i) if i.frr_version.as_deref() == Some("8.4.4"))
    );
    assert!(
        !messages
            .iter()
            .any(|m| matches!(m, BmpMessage::Malformed(_)))
    );
    drop(router);
    assert!(matches!(
        next(&mut rx).await.kind,
        BmpEventKind::Disconnected(DisconnectReason::Closed { trailing_bytes: 0 })
    ));

    // A second router whose stream loses its framing: reported with the bytes, then closed.
    let mut bad = tokio::net::TcpStream::connect(station.local_addr())
        .await
        .expect("connect");
    bad.write_all(&STARTUP[..32]).await.expect("write");
    bad.write_all(&[9, 0, 0, 0, 6, 4]).await.expect("write");
    let connected = next(&mut rx).await;
    assert!(matches!(connected.kind, BmpEventKind::Connected { .. }));
    assert_ne!(connected.connection, first.connection);
    assert!(matches!(
        next(&mut rx).await.kind,
        BmpEventKind::Message(BmpMessage::Initiation(_))
    ));
    match next(&mut rx).await.kind {
        BmpEventKind::Disconnected(DisconnectReason::FramingLost(FramingError::BadVersion {
            version: 9,
            raw,
        })) => assert_eq!(raw.as_ref(), &[9, 0, 0, 0, 6, 4]),
        other => panic!("{other:?}"),
    }
    let mut buf = [0u8; 1];
    let closed = tokio::time::timeout(Duration::from_secs(5), async { bad.read(&mut buf).await })
        .await
        .expect("the station closes the connection");
    assert!(matches!(closed, Ok(0) | Err(_)));
    station.stop().await;
    assert!(rx.recv().await.is_none(), "channel closes after stop");
}

async fn start(config: BmpStationConfig) -> (BmpStation, UnboundedReceiver<BmpEvent>) {
    BmpStation::start(config, RunClock::start())
        .await
        .expect("station")
}

/// A TCP connection to the station from `source`.
async fn connect_from(source: IpAddr, station: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::new(source, 0)).expect("bind");
    socket.connect(station).await.expect("connect")
}

/// Events until (and including) the first that `last` accepts.
async fn until(
    rx: &mut UnboundedReceiver<BmpEvent>,
    mut last: impl FnMut(&BmpEvent) -> bool,
) -> Vec<BmpEvent> {
    let mut events = Vec::new();
    loop {
        let e = next(rx).await;
        let done = last(&e);
        events.push(e);
        if done {
            return events;
        }
    }
}

/// The whole messages of a recorded stream.
fn messages_of(stream: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = stream;
    while rest.len() >= 6 {
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        out.push(&rest[..len]);
        rest = &rest[len..];
    }
    out
}

/// The recorded message of `msg_type` about peer `.n`, the `nth` (from 0) of its kind.
fn recorded(stream: &[u8], msg_type: u8, n: u8, nth: usize) -> Vec<u8> {
    messages_of(stream)
        .into_iter()
        .filter(|m| m[5] == msg_type && m.len() > 32 && m[31] == n)
        .nth(nth)
        .expect("a recorded message")
        .to_vec()
}

fn key(address: IpAddr) -> PeerKey {
    PeerKey {
        router: ROUTER,
        address,
        distinguisher: 0,
    }
}

/// Connects the real router and sends FRR's recorded start-up: n1 and n2 end up up.
async fn real_router(
    station: &BmpStation,
    rx: &mut UnboundedReceiver<BmpEvent>,
    book: &mut PeerBook,
) -> (TcpStream, u64) {
    let mut router = connect_from(ROUTER, station.local_addr()).await;
    router.write_all(STARTUP).await.expect("write");
    let expected = messages_of(STARTUP).len();
    let mut seen = 0;
    let events = until(rx, |e| {
        seen += usize::from(matches!(e.kind, BmpEventKind::Message(_)));
        seen == expected
    })
    .await;
    for e in &events {
        book.on_event(e);
    }
    assert!(matches!(events[0].kind, BmpEventKind::Connected { .. }));
    assert_eq!(book.peers_up(), BTreeSet::from([key(N1), key(N2)]));
    (router, events[0].connection)
}

#[tokio::test]
async fn connections_from_addresses_not_allowed_are_refused_unread() {
    let (station, mut rx) = start(BmpStationConfig::new(
        SocketAddr::from((ROUTER, 0)),
        [ROUTER],
    ))
    .await;
    for nth in 1..=20u64 {
        let mut stranger = connect_from(STRANGER, station.local_addr()).await;
        // Whatever it sends is never looked at.
        let _ = stranger.write_all(STARTUP).await;
        let e = next(&mut rx).await;
        assert_eq!((e.connection, e.router), (0, None), "{e:?}");
        match e.kind {
            BmpEventKind::Refused {
                remote,
                local,
                nth: n,
            } => {
                assert_eq!(remote.ip(), STRANGER);
                assert_eq!(local, station.local_addr());
                assert_eq!(n, nth);
            }
            other => panic!("{other:?}"),
        }
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(5), stranger.read(&mut buf))
            .await
            .expect("the station closes a refused connection");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
    // The allowed router is accepted; nothing of the strangers' came in between.
    let _router = connect_from(ROUTER, station.local_addr()).await;
    let e = next(&mut rx).await;
    assert!(matches!(e.kind, BmpEventKind::Connected { .. }), "{e:?}");
    assert_eq!((e.connection, e.router), (1, Some(ROUTER)));
    station.stop().await;
}

#[tokio::test]
async fn an_empty_allow_list_is_refused_at_start() {
    let config = BmpStationConfig::new(SocketAddr::from((ROUTER, 0)), []);
    let err = BmpStation::start(config, RunClock::start())
        .await
        .expect_err("no router allowed");
    assert!(matches!(err, vmbgp_bgp::bmp::BmpError::NoRouterAllowed));
}

/// The first observation: a second connection sending Peer Up / Peer Down / Peer Up for a
/// real node recorded a flap.
#[tokio::test]
async fn a_second_connection_claiming_the_router_is_reported_and_flaps_nothing() {
    let (station, mut rx) = start(BmpStationConfig::new(
        SocketAddr::from((ROUTER, 0)),
        [ROUTER],
    ))
    .await;
    let mut book = PeerBook::new();
    let (_router, real) = real_router(&station, &mut rx, &mut book).await;

    let mut impostor = connect_from(ROUTER, station.local_addr()).await;
    let initiation = messages_of(STARTUP)[0].to_vec();
    let up = recorded(STARTUP, 3, 1, 0);
    let down = recorded(STARTUP, 2, 1, 1); // n1's real Peer Down (reason 4)
    for m in [&initiation, &up, &down, &up] {
        impostor.write_all(m).await.expect("write");
    }
    let mut delivered = 0;
    let events = until(&mut rx, |e| {
        delivered += usize::from(matches!(e.kind, BmpEventKind::Message(_)));
        delivered == 4
    })
    .await;
    let ours = events[0].connection;
    assert_ne!(ours, real);
    assert!(matches!(events[0].kind, BmpEventKind::Connected { .. }));
    match &events[1].kind {
        BmpEventKind::DuplicateRouter {
            remote,
            existing_connection,
            nth,
        } => {
            assert_eq!(remote.ip(), ROUTER);
            assert_eq!((*existing_connection, *nth), (real, 1));
        }
        other => panic!("{other:?}"),
    }
    // Its messages are well-formed and reported as its own …
    let kinds: Vec<&str> = events
        .iter()
        .filter_map(|e| match &e.kind {
            BmpEventKind::Message(BmpMessage::PeerUp(_)) => Some("up"),
            BmpEventKind::Message(BmpMessage::PeerDown(_)) => Some("down"),
            BmpEventKind::Message(_) => Some("other"),
            _ => None,
        })
        .collect();
    assert_eq!(kinds, ["other", "up", "down", "up"]);
    assert!(events.iter().all(|e| e.connection == ours));
    // … and change nothing, nor does its end.
    drop(impostor);
    let mut changes: Vec<_> = events.iter().flat_map(|e| book.on_event(e)).collect();
    let end = until(&mut rx, |e| matches!(e.kind, BmpEventKind::Disconnected(_))).await;
    changes.extend(end.iter().flat_map(|e| book.on_event(e)));
    assert!(changes.is_empty(), "{changes:?}");
    assert_eq!(book.peers_up(), BTreeSet::from([key(N1), key(N2)]));
    assert_eq!(book.authoritative(ROUTER), Some(real));
    station.stop().await;
}

/// The third observation: a connect/close storm during start-up left "0 of 3" sessions up.
#[tokio::test]
async fn a_connect_close_storm_does_not_clear_the_real_connections_peers() {
    let (station, mut rx) = start(BmpStationConfig::new(
        SocketAddr::from((ROUTER, 0)),
        [ROUTER, STRANGER],
    ))
    .await;
    let mut book = PeerBook::new();
    let (_router, real) = real_router(&station, &mut rx, &mut book).await;
    let initiation = messages_of(STARTUP)[0].to_vec();
    const STORM: usize = 200;
    for i in 0..STORM {
        // Both allowed sources; every other one sends an Initiation, every third garbage.
        let source = if i % 2 == 0 { ROUTER } else { STRANGER };
        let mut c = connect_from(source, station.local_addr()).await;
        if i % 2 == 0 {
            let _ = c.write_all(&initiation).await;
        }
        if i % 3 == 0 {
            let _ = c.write_all(&[9, 9, 9, 9, 9, 9]).await;
        }
        drop(c);
    }
    let mut ended = 0;
    let events = until(&mut rx, |e| {
        ended += usize::from(matches!(e.kind, BmpEventKind::Disconnected(_)));
        ended == STORM
    })
    .await;
    let changes: Vec<_> = events.iter().flat_map(|e| book.on_event(e)).collect();
    assert!(changes.is_empty(), "{changes:?}");
    assert!(
        events.iter().all(|e| e.connection != real),
        "the real one stays"
    );
    // Every storm connection from the router's address overlaps the real one; the other
    // source's may overlap their predecessors. `nth` numbers all duplicates.
    let duplicates: Vec<(u64, u64)> = events
        .iter()
        .filter_map(|e| match e.kind {
            BmpEventKind::DuplicateRouter {
                existing_connection,
                nth,
                ..
            } => Some((existing_connection, nth)),
            _ => None,
        })
        .collect();
    let of_real = duplicates.iter().filter(|(e, _)| *e == real).count();
    assert_eq!(
        of_real,
        STORM / 2,
        "the storm's connections from the router's address"
    );
    let nths: Vec<u64> = duplicates.iter().map(|(_, n)| *n).collect();
    assert_eq!(nths, (1..=nths.len() as u64).collect::<Vec<_>>());
    assert_eq!(book.peers_up(), BTreeSet::from([key(N1), key(N2)]));
    assert_eq!(book.authoritative(ROUTER), Some(real));
    station.stop().await;
}

#[tokio::test]
async fn decoder_warnings_are_bounded_per_connection() {
    let (station, mut rx) = start(
        BmpStationConfig::new(SocketAddr::from((ROUTER, 0)), [ROUTER]).max_reported_warnings(3),
    )
    .await;
    let mut c = connect_from(ROUTER, station.local_addr()).await;
    // 50 framed messages whose bodies are garbage, then FRR's two dummy-OPEN Peer Ups (each
    // with a warning), then a well-formed Initiation.
    let garbage: Vec<u8> = (0..50u8)
        .flat_map(|i| [3, 0, 0, 0, 10, 3, i, i, i, i])
        .collect();
    let dummy_ups: Vec<u8> = messages_of(DUMMY_OPEN)
        .into_iter()
        .filter(|m| m[5] == 3)
        .flatten()
        .copied()
        .collect();
    let initiation = messages_of(STARTUP)[0];
    for part in [&garbage[..], &dummy_ups, initiation] {
        c.write_all(part).await.expect("write");
    }
    drop(c);
    let events = until(&mut rx, |e| matches!(e.kind, BmpEventKind::Disconnected(_))).await;
    let malformed = events
        .iter()
        .filter(|e| matches!(e.kind, BmpEventKind::Message(BmpMessage::Malformed(_))))
        .count();
    assert_eq!(malformed, 3);
    // Peer Ups still count, without their (suppressed) warnings.
    let ups: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.kind {
            BmpEventKind::Message(BmpMessage::PeerUp(u)) => Some(u),
            _ => None,
        })
        .collect();
    assert_eq!(ups.len(), 2);
    assert!(ups.iter().all(|u| u.warnings.is_empty()), "{ups:?}");
    assert!(
        events
            .iter()
            .any(|e| matches!(e.kind, BmpEventKind::Message(BmpMessage::Initiation(_))))
    );
    let n = events.len();
    assert_eq!(
        events[n - 2].kind,
        BmpEventKind::WarningsSuppressed {
            reported: 3,
            suppressed: 47 + 2
        }
    );
    assert!(matches!(
        events[n - 1].kind,
        BmpEventKind::Disconnected(DisconnectReason::Closed { trailing_bytes: 0 })
    ));
    station.stop().await;
}
