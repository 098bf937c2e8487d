//! The observers against real FRR 8.4 in network namespaces: the BMP station, the FIB watcher,
//! both vty backends and the session poller, on one scenario (advertise from one node, then
//! ECMP from both, withdraw, restart a node's bgpd), plus FRR's dummy-OPEN quirk.
//! Needs root and FRR (`apt-get install -y frr iproute2`). Set `VMBGP_RECORD_FIXTURES=1` to
//! re-record the BMP captures under `tests/fixtures/`.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use common::{ExtBmp, FrrLab, wait_for};
use ipnet::{IpNet, Ipv4Net};
use vmbgp_bgp::bmp::{
    BmpEvent, BmpEventKind, BmpMessage, BmpStation, BmpStationConfig, DisconnectReason,
};
use vmbgp_bgp::fib::{FibEvent, FibWatcher, FibWatcherConfig, RouteChangeKind};
use vmbgp_bgp::session::{SessionChangeKind, SessionEvent, SessionPoller, SessionPollerConfig};
use vmbgp_bgp::vty::{Daemon, ExecCli, FrrCli, VtyCli};
use vmbgp_host::clock::RunClock;

const N1: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const N2: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const WAIT: Duration = Duration::from_secs(15);

fn recording() -> bool {
    std::env::var("VMBGP_RECORD_FIXTURES").is_ok_and(|v| v == "1")
}

fn save_fixture(lab: &FrrLab, name: &str) {
    if !recording() {
        return;
    }
    let from = lab.root.join("capture").join("bmp-connection-1.bin");
    let to = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::copy(&from, &to).unwrap_or_else(|e| panic!("copy {} → {to}: {e}", from.display()));
}

fn station_config(lab: &FrrLab, port: u16) -> BmpStationConfig {
    // FRR's `bmp connect 127.0.0.1` inside ext comes from 127.0.0.1.
    let loopback = std::net::IpAddr::from([127, 0, 0, 1]);
    let config = BmpStationConfig::new(SocketAddr::from((loopback, port)), [loopback])
        .in_netns(lab.ext.netns.clone());
    if recording() {
        let dir = lab.root.join("capture");
        std::fs::create_dir_all(&dir).expect("capture dir");
        config.capture_to(dir)
    } else {
        config
    }
}

fn is_rm(e: &BmpEvent, peer: Ipv4Addr, prefix: IpNet, announce: bool) -> bool {
    matches!(&e.kind, BmpEventKind::Message(BmpMessage::RouteMonitoring(rm))
    if rm.peer.address == IpAddr::V4(peer)
        && if announce {
            rm.announced.iter().any(|r| r.prefix == prefix)
        } else {
            rm.withdrawn.contains(&prefix)
        })
}

fn network_lines(prefix: &str, add: bool) -> Vec<String> {
    vec![
        "router bgp 64513".into(),
        "address-family ipv4 unicast".into(),
        format!(
            "{}network {prefix} route-map VM100",
            if add { "" } else { "no " }
        ),
    ]
}

fn assert_in_order<T>(items: &[T], at: impl Fn(&T) -> vmbgp_host::clock::MonoStamp, what: &str) {
    for pair in items.windows(2) {
        assert!(at(&pair[0]) <= at(&pair[1]), "{what} stamps go backwards");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root, FRR and iproute2; ci/test.sh runs it (cargo test -- --include-ignored)"]
async fn observers_see_advertise_ecmp_withdraw_and_restart_on_real_frr() {
    let mut lab = FrrLab::create("main");
    let clock = RunClock::start();
    let (station, mut bmp) = BmpStation::start(station_config(&lab, 5000), clock)
        .await
        .expect("station in ext");
    let (fib, mut fib_rx) = FibWatcher::start(
        FibWatcherConfig::new().in_netns(lab.ext.netns.clone()),
        clock,
    )
    .await
    .expect("FIB watcher in ext");
    let mut routes = Vec::new();
    wait_for(
        &mut fib_rx,
        &mut routes,
        common::NEW,
        WAIT,
        "initial dump",
        |e| matches!(e, FibEvent::DumpComplete { .. }),
    )
    .await;
    let connected: Ipv4Net = "198.18.0.0/24".parse().expect("net");
    assert!(
        routes.iter().any(|e| matches!(e, FibEvent::Route(r)
            if r.prefix == connected && r.kind == RouteChangeKind::Present)),
        "ext's connected route is in the initial dump: {routes:#?}"
    );

    lab.start_frr(ExtBmp::Startup(5000));
    let ext_cli: Arc<dyn FrrCli> = Arc::new(VtyCli::new(lab.ext.vty_dir(), Duration::from_secs(2)));
    let n1_cli = VtyCli::new(lab.nodes[0].vty_dir(), Duration::from_secs(2));
    let n2_cli = VtyCli::new(lab.nodes[1].vty_dir(), Duration::from_secs(2));
    let (poller, mut sessions) = SessionPoller::spawn(
        ext_cli.clone(),
        clock,
        SessionPollerConfig::new(Duration::from_millis(50)),
    );

    // The BMP session: Initiation names FRR's version, then both peers come up.
    let mut events = Vec::new();
    let init = wait_for(
        &mut bmp,
        &mut events,
        common::NEW,
        WAIT,
        "Initiation",
        |e| matches!(e.kind, BmpEventKind::Message(BmpMessage::Initiation(_))),
    )
    .await;
    match &events[init].kind {
        BmpEventKind::Message(BmpMessage::Initiation(i)) => {
            assert_eq!(i.frr_version.as_deref(), Some("8.4.4"), "{i:?}");
            assert_eq!(i.sys_name.as_deref(), Some("ext"));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(events[0].kind, BmpEventKind::Connected { .. }));
    let mark = events.len();
    for peer in [N1, N2] {
        let i = wait_for(&mut bmp, &mut events, mark, WAIT, "Peer Up", |e| {
            matches!(&e.kind, BmpEventKind::Message(BmpMessage::PeerUp(u))
                if u.peer.address == IpAddr::V4(peer))
        })
        .await;
        let BmpEventKind::Message(BmpMessage::PeerUp(up)) = &events[i].kind else {
            unreachable!()
        };
        assert_eq!(up.peer.asn, 64513);
        assert_eq!(up.peer.bgp_id, peer);
        assert!(up.warnings.is_empty(), "{:?}", up.warnings);
        assert_eq!(up.received_open.as_ref().map(|o| o.asn), Some(64513));
        assert_eq!(
            up.local_address,
            Some(IpAddr::V4(common::EXT_ADDR.parse().expect("ip")))
        );
    }
    // FRR's Peer Downs at connect, for peers not yet up, are marked as such (not flaps).
    for e in &events {
        if let BmpEventKind::Message(BmpMessage::PeerDown(d)) = &e.kind {
            assert!(d.without_peer_up, "Peer Down before any Peer Up: {d:?}");
        }
    }

    // Advertise from node 1: Adj-RIB-In via BMP, then ext's FIB.
    let prefix_v4: Ipv4Net = "198.19.7.0/24".parse().expect("net");
    let prefix = IpNet::V4(prefix_v4);
    let t0 = clock.now();
    let failures = n1_cli
        .configure(Daemon::Bgpd, &network_lines("198.19.7.0/24", true))
        .await
        .expect("advertise on n1");
    assert!(failures.is_empty(), "{failures:?}");
    let rm = wait_for(
        &mut bmp,
        &mut events,
        common::NEW,
        WAIT,
        "RM announce from n1",
        |e| is_rm(e, N1, prefix, true),
    )
    .await;
    let rm_at = events[rm].at;
    let BmpEventKind::Message(BmpMessage::RouteMonitoring(m)) = &events[rm].kind else {
        unreachable!()
    };
    let first_policy = m.peer.policy;
    let route = &m.announced[0];
    assert_eq!(route.next_hop, Some(IpAddr::V4(N1)));
    assert!(
        route.communities.iter().any(|c| c == "64512:100"),
        "{route:?}"
    );
    assert!(
        route
            .as_path
            .as_deref()
            .is_some_and(|p| p.contains("64513"))
    );
    let added = wait_for(
        &mut fib_rx,
        &mut routes,
        common::NEW,
        WAIT,
        "FIB add",
        |e| matches!(e, FibEvent::Route(r) if r.prefix == prefix_v4 && r.next_hops == [N1]),
    )
    .await;
    let FibEvent::Route(added) = &routes[added] else {
        unreachable!()
    };
    assert_eq!(added.protocol, "bgp");
    assert!(
        t0 < rm_at && rm_at < added.at,
        "trigger < BMP arrival < FIB (bgpd holds 50 ms)"
    );
    // Both policy views are reported.
    wait_for(
        &mut bmp,
        &mut events,
        rm + 1,
        WAIT,
        "the other policy view",
        |e| {
            matches!(&e.kind, BmpEventKind::Message(BmpMessage::RouteMonitoring(r))
            if r.announced.iter().any(|a| a.prefix == prefix) && r.peer.address == IpAddr::V4(N1)
            && r.peer.policy != first_policy)
        },
    )
    .await;

    // ECMP: node 2 advertises too; the FIB route gets both next hops.
    n2_cli
        .configure(Daemon::Bgpd, &network_lines("198.19.7.0/24", true))
        .await
        .expect("advertise on n2");
    wait_for(
        &mut bmp,
        &mut events,
        common::NEW,
        WAIT,
        "RM announce from n2",
        |e| is_rm(e, N2, prefix, true),
    )
    .await;
    wait_for(
        &mut fib_rx,
        &mut routes,
        common::NEW,
        WAIT,
        "FIB ECMP",
        |e| {
            matches!(e, FibEvent::Route(r) if r.prefix == prefix_v4 && r.next_hops == [N1, N2]
            && r.kind != RouteChangeKind::Removed)
        },
    )
    .await;

    // The vty client reads JSON from ext; the vtysh backend reads the same state.
    let detail = ext_cli
        .json(Daemon::Bgpd, "show bgp ipv4 unicast 198.19.7.0/24 json")
        .await
        .expect("prefix json");
    assert_eq!(
        detail["paths"].as_array().map(Vec::len),
        Some(2),
        "{detail}"
    );
    let bmp_state = ext_cli
        .run_ok(Daemon::Bgpd, "show bmp")
        .await
        .expect("show bmp");
    assert!(bmp_state.contains("harness"), "{bmp_state}");
    let exec = ExecCli::new(
        vec![
            "ip".into(),
            "netns".into(),
            "exec".into(),
            lab.ext.netns.clone(),
        ],
        vec![
            "--vty_socket".into(),
            lab.ext.vty_dir().display().to_string(),
        ],
        Duration::from_secs(10),
    );
    let summary = exec
        .json(Daemon::Bgpd, "show bgp summary json")
        .await
        .expect("vtysh summary");
    let peers = vmbgp_bgp::session::parse_summary(&summary);
    assert_eq!(peers.len(), 2, "{summary}");
    let bogus = exec
        .run(Daemon::Bgpd, "show no-such-thing")
        .await
        .expect("vtysh runs");
    assert!(!bogus.ok(), "an unknown command is not success: {bogus:?}");
    assert!(
        peers
            .values()
            .all(|p| p.is_established() && p.prefixes_received == Some(1))
    );

    // Withdraw from both: BMP withdrawals, then the FIB route goes.
    for cli in [&n1_cli, &n2_cli] {
        cli.configure(Daemon::Bgpd, &network_lines("198.19.7.0/24", false))
            .await
            .expect("withdraw");
    }
    let mark = events.len();
    for peer in [N1, N2] {
        wait_for(&mut bmp, &mut events, mark, WAIT, "RM withdraw", |e| {
            is_rm(e, peer, prefix, false)
        })
        .await;
    }
    wait_for(&mut fib_rx, &mut routes, common::NEW, WAIT, "FIB remove", |e| {
        matches!(e, FibEvent::Route(r) if r.prefix == prefix_v4 && r.kind == RouteChangeKind::Removed)
    })
    .await;

    // Statistics reports (`bmp stats interval 1000`) decode with per-peer counters.
    let stats = wait_for(&mut bmp, &mut events, common::NEW, WAIT, "Stats", |e| {
        matches!(&e.kind, BmpEventKind::Message(BmpMessage::Stats(s)) if !s.counters.is_empty())
    })
    .await;
    let BmpEventKind::Message(BmpMessage::Stats(stats)) = &events[stats].kind else {
        unreachable!()
    };
    assert!(matches!(stats.peer.address, a if a == IpAddr::V4(N1) || a == IpAddr::V4(N2)));

    // A restart of node 1's bgpd: BMP Peer Down (a real one) and Peer Up again; the poller sees it.
    lab.restart_bgpd(&lab.nodes[0].clone());
    let down = wait_for(
        &mut bmp,
        &mut events,
        common::NEW,
        WAIT,
        "Peer Down n1",
        |e| {
            matches!(&e.kind, BmpEventKind::Message(BmpMessage::PeerDown(d))
            if d.peer.address == IpAddr::V4(N1))
        },
    )
    .await;
    let BmpEventKind::Message(BmpMessage::PeerDown(d)) = &events[down].kind else {
        unreachable!()
    };
    assert!(!d.without_peer_up, "a real session loss: {d:?}");
    wait_for(
        &mut bmp,
        &mut events,
        down + 1,
        WAIT,
        "Peer Up n1 again",
        |e| {
            matches!(&e.kind, BmpEventKind::Message(BmpMessage::PeerUp(u))
            if u.peer.address == IpAddr::V4(N1))
        },
    )
    .await;
    let mut polled = Vec::new();
    wait_for(&mut sessions, &mut polled, common::NEW, WAIT, "poller sees n1 restart", |e| {
        matches!(e, SessionEvent::Change(c) if c.peer == N1.to_string()
            && matches!(&c.kind, SessionChangeKind::StateChanged { from, .. } if from == "Established"))
            || matches!(e, SessionEvent::Change(c) if c.peer == N1.to_string()
            && matches!(c.kind, SessionChangeKind::Reset { .. }))
    })
    .await;
    assert!(
        polled.iter().any(|e| matches!(e, SessionEvent::Sample(s)
            if s.peers.get(&N2.to_string()).is_some_and(|p| p.is_established()))),
        "node 2 stays Established in the samples"
    );
    poller.stop().await;

    // Arrival stamps never go backwards in either stream; the station reports its own stop.
    assert_in_order(&events, |e| e.at, "BMP");
    let route_stamps: Vec<_> = routes
        .iter()
        .filter_map(|e| match e {
            FibEvent::Route(r) => Some(r.at),
            _ => None,
        })
        .collect();
    assert_in_order(&route_stamps, |s| *s, "FIB");
    assert!(
        !events
            .iter()
            .any(|e| matches!(e.kind, BmpEventKind::Message(BmpMessage::Malformed(_)))),
        "FRR's stream decodes cleanly"
    );
    station.stop().await;
    let mut tail = Vec::new();
    wait_for(
        &mut bmp,
        &mut tail,
        common::NEW,
        WAIT,
        "station stopped",
        |e| {
            matches!(
                e.kind,
                BmpEventKind::Disconnected(DisconnectReason::StationStopped)
            )
        },
    )
    .await;
    fib.stop().await;
    save_fixture(
        &lab,
        "frr-8.4.4-startup-advertise-ecmp-withdraw-restart.bmp",
    );
}

/// FRR 8.4 quirk (frr-lab.md §4.4): a BMP target configured after the sessions came up gets
/// Peer Ups with 19-byte dummy OPENs. The station still reports the Peer Up, with a warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root, FRR and iproute2; ci/test.sh runs it (cargo test -- --include-ignored)"]
async fn runtime_bmp_target_gets_dummy_opens_and_still_reports_peer_up() {
    let mut lab = FrrLab::create("dummy");
    let clock = RunClock::start();
    lab.start_frr(ExtBmp::None);
    let ext_cli = VtyCli::new(lab.ext.vty_dir(), Duration::from_secs(2));
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let summary = ext_cli
            .json(Daemon::Bgpd, "show bgp summary json")
            .await
            .expect("summary");
        let peers = vmbgp_bgp::session::parse_summary(&summary);
        if peers.len() == 2 && peers.values().all(|p| p.is_established()) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "sessions not up: {summary}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (station, mut bmp) = BmpStation::start(station_config(&lab, 5001), clock)
        .await
        .expect("station");
    let failures = ext_cli
        .configure(
            Daemon::Bgpd,
            &[
                "router bgp 64512".into(),
                "bmp targets late".into(),
                "bmp connect 127.0.0.1 port 5001 min-retry 100 max-retry 1000".into(),
                "bmp monitor ipv4 unicast pre-policy".into(),
                "bmp monitor ipv4 unicast post-policy".into(),
            ],
        )
        .await
        .expect("configure BMP at runtime");
    assert!(failures.is_empty(), "{failures:?}");
    let mut events = Vec::new();
    let mark = events.len();
    for peer in [N1, N2] {
        let i = wait_for(&mut bmp, &mut events, mark, WAIT, "Peer Up", |e| {
            matches!(&e.kind, BmpEventKind::Message(BmpMessage::PeerUp(u))
                if u.peer.address == IpAddr::V4(peer))
        })
        .await;
        let BmpEventKind::Message(BmpMessage::PeerUp(up)) = &events[i].kind else {
            unreachable!()
        };
        assert_eq!(up.peer.asn, 64513);
        assert!(
            !up.warnings.is_empty() && up.received_open.is_none(),
            "FRR 8.4 sends dummy OPENs to a late target: {up:?}"
        );
    }
    // Peers already up when BMP connects: their (empty) tables end with End-of-RIB.
    wait_for(&mut bmp, &mut events, 0, WAIT, "End-of-RIB", |e| {
        matches!(&e.kind, BmpEventKind::Message(BmpMessage::RouteMonitoring(rm)) if rm.end_of_rib)
    })
    .await;
    // Route Monitoring still works on such a session.
    let n1 = VtyCli::new(lab.nodes[0].vty_dir(), Duration::from_secs(2));
    n1.configure(Daemon::Bgpd, &network_lines("198.19.8.0/24", true))
        .await
        .expect("advertise");
    let prefix: IpNet = "198.19.8.0/24".parse().expect("net");
    wait_for(&mut bmp, &mut events, common::NEW, WAIT, "RM", |e| {
        is_rm(e, N1, prefix, true)
    })
    .await;
    // Removing the target ends the BMP session from FRR's side: FRR 8.4 just closes it, without a
    // Termination message.
    ext_cli
        .configure(
            Daemon::Bgpd,
            &["router bgp 64512".into(), "no bmp targets late".into()],
        )
        .await
        .expect("remove the BMP target");
    let end = wait_for(
        &mut bmp,
        &mut events,
        common::NEW,
        WAIT,
        "session end",
        |e| matches!(e.kind, BmpEventKind::Disconnected(_)),
    )
    .await;
    assert!(
        matches!(
            events[end].kind,
            BmpEventKind::Disconnected(DisconnectReason::Closed { trailing_bytes: 0 })
        ),
        "{:?}",
        events[end]
    );
    station.stop().await;
    save_fixture(&lab, "frr-8.4.4-runtime-target-dummy-open.bmp");
}

/// The FIB watcher's own floor: a netlink add/delete of a blackhole /32 in an unused table, in a
/// scratch namespace, to the watcher's stamp.
#[tokio::test]
#[ignore = "needs root, FRR and iproute2; ci/test.sh runs it (cargo test -- --include-ignored)"]
async fn fib_calibration_measures_the_netlink_event_floor() {
    common::require_prerequisites();
    let netns = format!("vbgp-{}-calib", std::process::id());
    let ok = std::process::Command::new("ip")
        .args(["netns", "add", &netns])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "ip netns add");
    struct Del(String);
    impl Drop for Del {
        fn drop(&mut self) {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", &self.0])
                .status();
        }
    }
    let _del = Del(netns.clone());
    let mut config = vmbgp_bgp::fib::calibrate::CalibrationConfig::new().in_netns(netns.clone());
    config.samples = 10;
    let report = vmbgp_bgp::fib::calibrate::calibrate_event_latency(config, RunClock::start())
        .await
        .expect("calibration");
    assert_eq!(report.add.len(), 10);
    assert_eq!(report.remove.len(), 10);
    // Nothing is left in the calibration table.
    let out = std::process::Command::new("ip")
        .args(["-n", &netns, "route", "show", "table", "25464"])
        .output()
        .expect("ip route");
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
