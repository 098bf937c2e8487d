//! Throughput and overhead of the observers, written to `docs/perf-bgp.md` by hand:
//! `CARGO_TARGET_DIR=... cargo bench -p vmbgp-bgp --bench observers` (needs root for the FIB part).
//!
//! 1. the cost of one arrival stamp (`RunClock::now`);
//! 2. BMP decoding: FRR's recorded stream and a Route-Monitoring-only stream through
//!    `StreamDecoder` (framing + bgpkit decoding), messages/s;
//! 3. the station end to end over loopback TCP: a client writes 100,000 Route Monitoring
//!    messages as fast as it can; events/s and the gap between the last write and the last event;
//! 4. the FIB watcher in a scratch netns: route add → netlink event latency (the floor under
//!    "route in FIB", convergence-anchors.md B.4) and events/s for a batch of 2,000 routes.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use vmbgp_bgp::bmp::{
    BmpEventKind, BmpStation, BmpStationConfig, DEFAULT_MAX_MESSAGE_LEN, StreamDecoder,
};
use vmbgp_bgp::fib::{FibEvent, FibWatcher, FibWatcherConfig, RouteChangeKind};
use vmbgp_host::clock::RunClock;

const STARTUP: &[u8] =
    include_bytes!("../tests/fixtures/frr-8.4.4-startup-advertise-ecmp-withdraw-restart.bmp");

/// The capture's messages: (type, bytes).
fn messages() -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut rest = STARTUP;
    while rest.len() >= 6 {
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        out.push((rest[5], rest[..len].to_vec()));
        rest = &rest[len..];
    }
    out
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let clock = RunClock::start();

    // 1. Stamp cost.
    let n = 2_000_000;
    let start = Instant::now();
    let mut last = clock.now();
    for _ in 0..n {
        last = std::hint::black_box(clock.now());
    }
    let per_stamp = start.elapsed() / n;
    println!("stamp: {per_stamp:?} per RunClock::now() ({n} calls, last {last:?})");

    // 2. Decoding.
    let msgs = messages();
    let route_monitoring: Vec<u8> = msgs
        .iter()
        .filter(|(t, m)| *t == 0 && m.len() > 100)
        .flat_map(|(_, m)| m.clone())
        .collect();
    for (name, unit, repeat) in [
        ("FRR capture (all types)", STARTUP, 20_000usize),
        (
            "Route Monitoring (1 prefix each)",
            &route_monitoring[..],
            25_000,
        ),
    ] {
        let stream: Vec<u8> = unit.repeat(repeat);
        let mut decoder = StreamDecoder::new(DEFAULT_MAX_MESSAGE_LEN);
        let start = Instant::now();
        let mut count = 0usize;
        for chunk in stream.chunks(64 * 1024) {
            decoder.push(chunk);
            while let Some(m) = decoder.next_message() {
                std::hint::black_box(m.ok());
                count += 1;
            }
        }
        let took = start.elapsed();
        println!(
            "decode {name}: {count} messages, {:.1} MB in {took:?} = {:.0} messages/s ({:.2} µs each)",
            stream.len() as f64 / 1e6,
            count as f64 / took.as_secs_f64(),
            took.as_secs_f64() * 1e6 / count as f64
        );
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        // 3. Station end to end.
        let (station, mut rx) = BmpStation::start(
            BmpStationConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)), [[127, 0, 0, 1].into()]),
            clock,
        )
        .await
        .expect("station");
        let one_rm = msgs.iter().find(|(t, m)| *t == 0 && m.len() > 100).expect("an RM").1.clone();
        let total = 100_000usize;
        let payload: Vec<u8> = msgs[0].1.iter().copied().chain(one_rm.repeat(total)).collect();
        let mut client = tokio::net::TcpStream::connect(station.local_addr()).await.expect("connect");
        let start = clock.now();
        let writer = tokio::spawn(async move {
            client.write_all(&payload).await.expect("write");
            let done = clock.now();
            (client, done)
        });
        let mut received = 0usize;
        let mut last_at = start;
        let mut delivered = start;
        while received < total {
            match rx.recv().await {
                Some(e) => {
                    if let BmpEventKind::Message(vmbgp_bgp::bmp::BmpMessage::RouteMonitoring(_)) = e.kind {
                        received += 1;
                        last_at = e.at;
                        delivered = clock.now();
                    }
                }
                None => break,
            }
        }
        let (client, written) = writer.await.expect("writer");
        drop(client);
        let stamped = last_at.since(start).unwrap_or_default();
        let decoded = delivered.since(start).unwrap_or_default();
        println!(
            "station over loopback: {received} Route Monitoring messages read+stamped in {stamped:?} \
             ({:.0}/s; last stamp {:?} after the last write returned), decoded+delivered in \
             {decoded:?} ({:.0} events/s)",
            received as f64 / stamped.as_secs_f64(),
            last_at.since(written),
            received as f64 / decoded.as_secs_f64(),
        );
        station.stop().await;

        // 4. FIB watcher in a scratch netns.
        if !nix_root() {
            println!("fib: skipped (needs root)");
            return;
        }
        let netns = format!("vbgp-bench-{}", std::process::id());
        let _guard = NetnsGuard::create(&netns);
        ip(&["-n", &netns, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &netns, "addr", "add", "198.18.0.155/24", "dev", "br0"]);
        ip(&["-n", &netns, "link", "set", "br0", "up"]);
        let (watcher, mut fib) = FibWatcher::start(FibWatcherConfig::new().in_netns(netns.clone()), clock)
            .await
            .expect("watcher");
        loop {
            if let Some(FibEvent::DumpComplete { .. }) = fib.recv().await {
                break;
            }
        }
        // Latency: one route at a time via `ip route add` — the stamp is taken when the `ip`
        // process has returned, so this is an upper bound on (kernel → event stamped) minus
        // nothing: event.at − t_after_command is ≤ 0 when the event was stamped before `ip` exited.
        let mut before = Vec::new();
        let mut after = Vec::new();
        for i in 0..100u32 {
            let prefix = format!("198.19.{}.{}/32", 200 + i / 250, i % 250 + 1);
            let t_req = clock.now();
            ip(&["-n", &netns, "route", "add", &prefix, "via", "198.18.0.1"]);
            let t_done = clock.now();
            loop {
                match fib.recv().await {
                    Some(FibEvent::Route(r)) if r.kind == RouteChangeKind::Added && r.prefix.to_string() == prefix => {
                        before.push(r.at.since(t_req).unwrap_or_default());
                        after.push(t_done.since(r.at).unwrap_or_default());
                        break;
                    }
                    Some(_) => continue,
                    None => panic!("watcher stopped"),
                }
            }
        }
        before.sort();
        after.sort();
        println!(
            "fib: `ip route add` start → event stamped: p50 {:?} p99 {:?} max {:?} (includes the ip process); \
             event stamped before `ip` exited by p50 {:?}",
            percentile(&before, 0.5),
            percentile(&before, 0.99),
            before[before.len() - 1],
            percentile(&after, 0.5)
        );
        // The floor itself: netlink-native add/delete of a blackhole /32 in an unused table.
        let mut config = vmbgp_bgp::fib::calibrate::CalibrationConfig::new().in_netns(netns.clone());
        config.samples = 200;
        let mut report = vmbgp_bgp::fib::calibrate::calibrate_event_latency(config, clock)
            .await
            .expect("calibration");
        report.add.sort();
        report.remove.sort();
        for (name, v) in [("add", &report.add), ("delete", &report.remove)] {
            println!(
                "fib calibration ({name}, netlink request sent → event stamped, n={}): min {:?} p50 {:?} p99 {:?} max {:?}",
                v.len(),
                v[0],
                percentile(v, 0.5),
                percentile(v, 0.99),
                v[v.len() - 1]
            );
        }
        // Batch: 2,000 routes in one `ip -batch`.
        let batch: String = (0..2000u32)
            .map(|i| format!("route add 198.19.{}.{}/32 via 198.18.0.2\n", 100 + i / 250, i % 250 + 1))
            .collect();
        let start = clock.now();
        let mut child = Command::new("ip")
            .args(["-n", &netns, "-batch", "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("ip -batch");
        {
            use std::io::Write;
            child.stdin.take().expect("stdin").write_all(batch.as_bytes()).expect("write batch");
        }
        let mut seen = 0;
        let mut last = start;
        let mut overruns = 0;
        while seen < 2000 {
            match tokio::time::timeout(Duration::from_secs(10), fib.recv()).await {
                Ok(Some(FibEvent::Route(r))) if r.kind == RouteChangeKind::Added => {
                    seen += 1;
                    last = r.at;
                }
                Ok(Some(FibEvent::Overrun { .. })) => overruns += 1,
                Ok(Some(_)) => {}
                _ => break,
            }
        }
        let _ = child.wait();
        let took = last.since(start).unwrap_or_default();
        println!(
            "fib batch: {seen}/2000 added events in {took:?} = {:.0} events/s, overruns {overruns}",
            seen as f64 / took.as_secs_f64()
        );
        watcher.stop().await;
        let _ = Ipv4Addr::UNSPECIFIED;
    });
}

fn nix_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

fn ip(args: &[&str]) {
    let ok = Command::new("ip")
        .args(args)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "ip {args:?} failed");
}

struct NetnsGuard(String);
impl NetnsGuard {
    fn create(name: &str) -> Self {
        ip(&["netns", "add", name]);
        NetnsGuard(name.to_string())
    }
}
impl Drop for NetnsGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}
