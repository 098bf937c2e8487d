//! The station over loopback in the host's namespace (no root needed): a fake router replays
//! FRR's recorded stream in small writes, then a second one sends a corrupt header.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use vmbgp_bgp::bmp::{
    BmpEvent, BmpEventKind, BmpMessage, BmpStation, BmpStationConfig, DisconnectReason,
    FramingError,
};
use vmbgp_host::clock::RunClock;

const STARTUP: &[u8] =
    include_bytes!("fixtures/frr-8.4.4-startup-advertise-ecmp-withdraw-restart.bmp");

async fn next(rx: &mut tokio::sync::mpsc::UnboundedReceiver<BmpEvent>) -> BmpEvent {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("an event within 5 s")
        .expect("channel open")
}

#[tokio::test]
async fn station_stamps_decodes_and_closes_on_lost_framing() {
    let clock = RunClock::start();
    let (station, mut rx) = BmpStation::start(
        BmpStationConfig::new(SocketAddr::from(([127, 0, 0, 1], 0))),
        clock,
    )
    .await
    .expect("station");
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
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        use tokio::io::AsyncReadExt;
        bad.read(&mut buf).await
    })
    .await
    .expect("the station closes the connection");
    assert!(matches!(closed, Ok(0) | Err(_)));
    station.stop().await;
    assert!(rx.recv().await.is_none(), "channel closes after stop");
}
