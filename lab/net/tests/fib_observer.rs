//! The FIB observer on its own, in a netns this test creates: BGP routes are recorded (others are
//! not), a receive-buffer overrun is recorded as an event, and stopping is prompt.

mod common;

use std::net::Ipv4Addr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use vmbgp_lab_net::fib_observer::FibObserver;
use vmbgp_lab_net::net_ground_truth::{GroundTruthSink, NetEvent};

/// A sink whose `record` blocks (bounded) while its gate is closed: holds the observer's reader so
/// the kernel's queue overflows.
#[derive(Debug, Default)]
struct GatedSink {
    events: Mutex<Vec<NetEvent>>,
    open: Mutex<bool>,
    opened: Condvar,
}

impl GatedSink {
    fn open(&self) {
        *self.open.lock().expect("lock") = true;
        self.opened.notify_all();
    }

    fn events(&self) -> Vec<NetEvent> {
        self.events.lock().expect("lock").clone()
    }
}

impl GroundTruthSink for GatedSink {
    fn record(&self, _: Instant, _: DateTime<Utc>, event: NetEvent) {
        self.events.lock().expect("lock").push(event);
        let open = self.open.lock().expect("lock");
        let _ = self
            .opened
            .wait_timeout_while(open, Duration::from_secs(10), |open| !*open);
    }
}

/// A netns of this test, deleted on drop (also when an assertion fails).
struct TestNetns(String);

impl TestNetns {
    fn create(tag: &str) -> Self {
        let (id, _) = common::unique(tag);
        let name = format!("vmbgp-{id}-x");
        run("ip", &["netns", "add", &name], "");
        TestNetns(name)
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .status();
    }
}

fn run(program: &str, args: &[&str], stdin: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin.as_bytes()).expect("stdin");
    }
    let status = child.wait().expect("wait");
    assert!(status.success(), "{program} {args:?} failed");
}

#[test]
#[ignore = "needs root, FRR and iproute2; ci/test.sh runs it (cargo test -- --include-ignored)"]
fn records_bgp_routes_and_overruns_and_stops_promptly() {
    common::require_prerequisites();
    let netns = TestNetns::create("fibobs");
    let sink = Arc::new(GatedSink::default());
    let observer = FibObserver::start_with_buffer(&netns.0, sink.clone(), 4096).expect("start");

    // A static route is noise; the first BGP route is recorded, and its record call holds the reader.
    run(
        "ip",
        &[
            "-n",
            &netns.0,
            "route",
            "add",
            "blackhole",
            "198.18.202.1/32",
        ],
        "",
    );
    run(
        "ip",
        &[
            "-n",
            &netns.0,
            "route",
            "add",
            "blackhole",
            "198.18.200.1/32",
            "proto",
            "bgp",
        ],
        "",
    );
    // While the reader is held, 500 more changes overflow the tiny receive buffer.
    let batch: String = (0..500)
        .map(|i| {
            format!(
                "route add blackhole 198.18.{}.{}/32 proto bgp\n",
                210 + i / 250,
                i % 250
            )
        })
        .collect();
    run("ip", &["-n", &netns.0, "-batch", "-"], &batch);
    sink.open();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !sink.events().contains(&NetEvent::FibObserverOverrun) {
        assert!(
            Instant::now() < deadline,
            "no overrun recorded: {:?}",
            sink.events().len()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let events = sink.events();
    assert_eq!(
        events.first(),
        Some(&NetEvent::FibRouteAdded {
            prefix: "198.18.200.1/32".into(),
            next_hops: Vec::<Ipv4Addr>::new(),
            protocol: "bgp".into(),
        })
    );
    assert!(
        events.iter().all(
            |e| !matches!(e, NetEvent::FibRouteAdded { prefix, .. } if prefix == "198.18.202.1/32")
        ),
        "a static route was recorded"
    );
    let routes = events
        .iter()
        .filter(|e| matches!(e, NetEvent::FibRouteAdded { .. }))
        .count();
    assert!(
        routes < 501,
        "{routes} routes recorded: the overrun lost some, as the kernel reported"
    );

    let stopping = Instant::now();
    observer.stop();
    assert!(
        stopping.elapsed() < Duration::from_secs(1),
        "stop took {:?}",
        stopping.elapsed()
    );
    // Stopped: later changes are not recorded.
    let before = sink.events().len();
    run(
        "ip",
        &[
            "-n",
            &netns.0,
            "route",
            "add",
            "blackhole",
            "198.18.203.1/32",
            "proto",
            "bgp",
        ],
        "",
    );
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(sink.events().len(), before);
}
