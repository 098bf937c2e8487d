//! TCP throughput against a sink in a netns this test creates (needs root).

mod common;

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use common::{FAR, NetnsPair};
use vmbgp_host::clock::RunClock;
use vmbgp_host::netns::in_netns;
use vmbgp_probe::tcp::{ThroughputRequest, tcp_throughput};

/// A sink in the far netns: accepts one connection and discards what it reads. The thread ends
/// when the sender closes (or after 30 s of silence).
fn start_sink(pair: &NetnsPair, addr: &str) -> (SocketAddr, std::thread::JoinHandle<u64>) {
    let bind: SocketAddr = format!("{addr}:0").parse().expect("addr");
    let listener = in_netns(Some(&pair.far), move || TcpListener::bind(bind))
        .expect("enter far netns")
        .expect("bind sink");
    let local = listener.local_addr().expect("local addr");
    let handle = std::thread::spawn(move || {
        let Ok((mut conn, _)) = listener.accept() else {
            return 0;
        };
        conn.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        while let Ok(n) = conn.read(&mut buf) {
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        total
    });
    (local, handle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root, FRR and iproute2; ci/test.sh runs it (cargo test -- --include-ignored)"]
async fn goodput_to_a_sink_is_positive_and_retransmits_are_read() {
    let pair = NetnsPair::new("tcp");
    let (sink, reader) = start_sink(&pair, FAR);
    let clock = RunClock::start();
    let mut req = ThroughputRequest::new(sink);
    req.netns = Some(pair.near.clone());
    req.duration = Duration::from_millis(700);
    let report = tcp_throughput(clock, req).await;
    assert!(report.survived, "{:?}", report.error);
    let acked = *report.bytes_acked.observed().expect("bytes acked");
    assert!(acked > 0 && acked <= report.bytes_written);
    let goodput = *report.goodput_bits_per_s.observed().expect("goodput");
    assert!(goodput > 1e6, "goodput {goodput} bit/s");
    assert!(
        report.retransmits.observed().is_some(),
        "retransmits readable"
    );
    assert!(report.smoothed_rtt_us.observed().is_some());
    assert!(
        report.samples.len() >= 5,
        "{} samples",
        report.samples.len()
    );
    assert!(report.longest_stall.is_observed());
    let received = tokio::task::spawn_blocking(move || reader.join().expect("sink"))
        .await
        .expect("join");
    assert!(
        received >= acked,
        "sink read {received}, sender saw {acked} acknowledged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root, FRR and iproute2; ci/test.sh runs it (cargo test -- --include-ignored)"]
async fn connection_survives_an_outage_and_reports_the_stall() {
    let pair = NetnsPair::new("tcpcut");
    let vm = "198.19.0.40";
    pair.add_far_address(vm);
    let (sink, reader) = start_sink(&pair, vm);
    let clock = RunClock::start();
    let mut req = ThroughputRequest::new(sink);
    req.netns = Some(pair.near.clone());
    req.duration = Duration::from_millis(1500);
    req.sample_every = Duration::from_millis(20);
    let sender = tokio::spawn(tcp_throughput(clock, req));
    tokio::time::sleep(Duration::from_millis(300)).await;
    pair.del_far_address(vm);
    tokio::time::sleep(Duration::from_millis(300)).await;
    pair.add_far_address(vm);
    let report = sender.await.expect("sender");
    assert!(report.survived, "{:?}", report.error);
    let stall = *report.longest_stall.observed().expect("stall");
    assert!(stall >= Duration::from_millis(250), "stall {stall:?}");
    assert!(*report.retransmits.observed().expect("retransmits") >= 1);
    let _ = tokio::task::spawn_blocking(move || reader.join()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root, FRR and iproute2; ci/test.sh runs it (cargo test -- --include-ignored)"]
async fn refused_connection_is_reported_not_zero() {
    let pair = NetnsPair::new("tcpref");
    let clock = RunClock::start();
    let mut req = ThroughputRequest::new(SocketAddr::new(FAR.parse().expect("ip"), 9));
    req.netns = Some(pair.near.clone());
    req.duration = Duration::from_millis(100);
    let report = tcp_throughput(clock, req).await;
    assert!(!report.survived);
    let why = report
        .goodput_bits_per_s
        .missing_reason()
        .expect("no goodput");
    assert!(why.contains("refused"), "{why}");
    assert!(!report.bytes_acked.is_observed());
}

/// A paced stream never runs ahead of its pace, and a set stop flag ends it before its duration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root, FRR and iproute2; ci/test.sh runs it (cargo test -- --include-ignored)"]
async fn a_paced_stream_keeps_its_pace_and_stops_when_told() {
    let pair = NetnsPair::new("tcppace");
    let (sink, reader) = start_sink(&pair, FAR);
    let clock = RunClock::start();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut req = ThroughputRequest::new(sink);
    req.netns = Some(pair.near.clone());
    req.duration = Duration::from_secs(60);
    req.sample_every = Duration::from_millis(10);
    req.pace_bytes_per_s = Some(200_000);
    req.stop = Some(stop.clone());
    let sender = tokio::spawn(tcp_throughput(clock, req));
    tokio::time::sleep(Duration::from_millis(600)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let report = tokio::time::timeout(Duration::from_secs(10), sender)
        .await
        .expect("the stop flag ends the stream long before its 60 s")
        .expect("sender task");
    assert!(report.survived, "{:?}", report.error);
    let connected = *report.connected.observed().expect("connected");
    let finished = *report.finished.observed().expect("finished");
    let allowed = (finished - connected) as f64 / 1e9 * 200_000.0;
    assert!(report.bytes_written > 0, "it sent something");
    assert!(
        report.bytes_written as f64 <= allowed + 1.0,
        "{} bytes written, the pace allows {allowed:.0}",
        report.bytes_written
    );
    let received = tokio::task::spawn_blocking(move || reader.join().expect("sink"))
        .await
        .expect("join");
    assert_eq!(received, report.bytes_written, "every byte written arrived");
}
