//! Real BGP in the lab: sessions, ECMP into ext's kernel FIB, pings through the learned route to VM
//! addresses wherever they run, withdrawal, bgpd restart, BMP to a listener inside ext's netns, the
//! lab's own FIB observer on ext, and the silent-VM fault.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use vmbgp_lab_net::frrk8s::apply::NodeApplier;
use vmbgp_lab_net::frrk8s::model::{NamedConfig, merge};
use vmbgp_lab_net::frrk8s::render::render;
use vmbgp_lab_net::net_ground_truth::NetEvent;
use vmbgp_lab_net::vmhost::VmHttpReply;
use vmbgp_lab_net::{LabNet, Router, netns};

fn fixture(name: &str) -> NamedConfig {
    let text = std::fs::read_to_string(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    NamedConfig {
        name: v["metadata"]["name"].as_str().expect("name").to_string(),
        spec: serde_json::from_value(v["spec"].clone()).expect("spec"),
    }
}

/// The OVN-K generated FRRConfiguration for `node` advertising `subnet`.
fn generated(node: u16, subnet: &str) -> NamedConfig {
    let mut c = fixture("frrconfiguration-generated-node-1.json");
    c.name = format!("ovnk-generated-node-{node}");
    c.spec
        .node_selector
        .match_labels
        .insert("kubernetes.io/hostname".into(), format!("node-{node}"));
    c.spec.bgp.routers[0].prefixes = vec![subnet.to_string()];
    c.spec.bgp.routers[0].neighbors[0]
        .to_advertise
        .allowed
        .prefixes = vec![subnet.to_string()];
    c
}

async fn apply(lab: &LabNet, appliers: &mut [NodeApplier], configs: &[Vec<NamedConfig>]) {
    for (i, a) in appliers.iter_mut().enumerate() {
        let node = (i + 1) as u16;
        let selected: Vec<&NamedConfig> = configs[i].iter().collect();
        let merged = merge(&Router::Node(node).name(), &selected).expect("merge");
        let outcome = a.apply(&render(&merged)).await.expect("apply");
        assert!(
            outcome.failures.is_empty(),
            "node-{node}: {:?}",
            outcome.failures
        );
    }
    let _ = lab;
}

/// ext's kernel route for a prefix: the set of next hops (empty when absent).
async fn ext_nexthops(lab: &LabNet, prefix: &str) -> Vec<Ipv4Addr> {
    let out = tokio::process::Command::new("ip")
        .args(["-n", &lab.info().ext_netns, "-j", "route", "show", prefix])
        .output()
        .await
        .expect("ip route");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let mut hops = Vec::new();
    for r in v.as_array().cloned().unwrap_or_default() {
        if let Some(g) = r.get("gateway").and_then(|g| g.as_str()) {
            hops.push(g.parse().expect("gateway"));
        }
        for h in r
            .get("nexthops")
            .and_then(|n| n.as_array())
            .cloned()
            .unwrap_or_default()
        {
            if let Some(g) = h.get("gateway").and_then(|g| g.as_str()) {
                hops.push(g.parse().expect("gateway"));
            }
        }
    }
    hops.sort();
    hops
}

/// Both nodes get the frr-k8s template plus a generated configuration advertising `subnet`; returns
/// once the sessions are up and ext has both next hops (the appliers and template, for later
/// changes, and the two next hops).
async fn advertise_from_both_nodes(
    lab: &LabNet,
    subnet: &str,
) -> (Vec<NodeApplier>, NamedConfig, Vec<Ipv4Addr>) {
    let sup = lab.supervisor().clone();
    let mut appliers: Vec<NodeApplier> = (1..=2)
        .map(|n| NodeApplier::for_lab_node(Router::Node(n), sup.clone()))
        .collect();
    let template = fixture("frrconfiguration-template.json");
    apply(
        lab,
        &mut appliers,
        &[
            vec![template.clone(), generated(1, subnet)],
            vec![template.clone(), generated(2, subnet)],
        ],
    )
    .await;
    lab.wait_sessions(Duration::from_secs(20))
        .await
        .expect("sessions Established");
    let both = vec![Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 18, 0, 2)];
    wait_nexthops(lab, subnet, &both, Duration::from_secs(10)).await;
    (appliers, template, both)
}

async fn wait_nexthops(
    lab: &LabNet,
    prefix: &str,
    want: &[Ipv4Addr],
    timeout: Duration,
) -> Duration {
    let start = Instant::now();
    loop {
        let got = ext_nexthops(lab, prefix).await;
        if got == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < timeout,
            "{prefix} next hops at ext: {got:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// How many times ext's session with node-1 reached Established.
async fn connections_established(lab: &LabNet) -> u64 {
    let mut ext = lab
        .supervisor()
        .vty(Router::Ext, vmbgp_lab_net::frr::Daemon::Bgpd)
        .await
        .expect("ext vty");
    let v = ext
        .json("show bgp neighbors 198.18.0.1 json")
        .await
        .expect("show bgp neighbors");
    v["198.18.0.1"]["connectionsEstablished"]
        .as_u64()
        .unwrap_or_else(|| panic!("connectionsEstablished in {v}"))
}

async fn ping_from_ext(lab: &LabNet, addr: Ipv4Addr) -> bool {
    tokio::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.info().ext_netns,
            "ping",
            "-n",
            "-q",
            "-c",
            "1",
            "-W",
            "1",
            &addr.to_string(),
        ])
        .output()
        .await
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// HTTP GET to a VM address from inside ext, returning the responder's JSON.
async fn http_from_ext(lab: &LabNet, addr: Ipv4Addr) -> VmHttpReply {
    use hyper_util::rt::TokioIo;
    let stream = netns::tcp_connect_in(
        &lab.info().ext_netns,
        None,
        SocketAddr::new(addr.into(), 8080),
        Duration::from_secs(2),
    )
    .await
    .expect("connect to the VM's HTTP port");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, axum::body::Body>(TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    let resp = sender
        .send_request(
            http::Request::get("/hello")
                .header("host", addr.to_string())
                .body(axum::body::Body::empty())
                .expect("request"),
        )
        .await
        .expect("response");
    let body = axum::body::to_bytes(axum::body::Body::new(resp.into_body()), 1 << 16)
        .await
        .expect("body");
    serde_json::from_slice(&body).expect("JSON reply")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root, FRR and iproute2; ci/test.sh runs it (cargo test -- --include-ignored)"]
async fn ecmp_route_ping_move_withdraw_and_bmp() {
    let truth = std::sync::Arc::new(vmbgp_lab_net::net_ground_truth::MemoryGroundTruth::default());
    let (_guard, lab) = common::up_with(
        "ecmp",
        2,
        |c| c.egress_url = Some("http://198.18.0.155:18080/egress".into()),
        Some(truth.clone()),
    )
    .await;
    let info = lab.info();
    // The harness's egress echo endpoint, inside ext: records the source address of each request.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let echo = netns::tokio_listener_in(
        &info.ext_netns,
        SocketAddr::from(([198, 18, 0, 155], 18080)),
    )
    .await
    .expect("egress endpoint in ext");
    {
        let seen = seen.clone();
        let app = axum::Router::new().fallback(
            move |axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<SocketAddr>| {
                let seen = seen.clone();
                async move {
                    seen.lock().expect("lock").push(peer.ip().to_string());
                    "ok"
                }
            },
        );
        tokio::spawn(async move {
            let _ = axum::serve(
                echo,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await;
        });
    }
    // The harness's BMP listener: inside ext's netns on 127.0.0.1 (ext's bgpd connects to it).
    let bmp = netns::tokio_listener_in(
        &info.ext_netns,
        SocketAddr::from(([127, 0, 0, 1], common::BMP_PORT)),
    )
    .await
    .expect("BMP listener in ext");

    let subnet = "198.19.1.0/24";
    let (mut appliers, template, _) = advertise_from_both_nodes(&lab, subnet).await;

    // A VM on node-2 answers ICMP and HTTP through the ECMP route, wherever ext's hash sends it.
    let vm = Ipv4Addr::new(198, 19, 1, 10);
    lab.dataplane()
        .place(vm, 2, Some("ns/vm-a".into()))
        .await
        .expect("place");
    assert!(
        ping_from_ext(&lab, vm).await,
        "ext pings the VM through the learned route"
    );
    let reply = http_from_ext(&lab, vm).await;
    // The TCP sink on the VM's throughput port takes a bounded 4 MiB stream.
    {
        use tokio::io::AsyncWriteExt;
        let mut sink = netns::tcp_connect_in(
            &info.ext_netns,
            None,
            SocketAddr::new(vm.into(), info.vm_ports.sink),
            Duration::from_secs(2),
        )
        .await
        .expect("connect to the VM's sink port");
        let chunk = vec![0u8; 64 * 1024];
        for _ in 0..64 {
            sink.write_all(&chunk).await.expect("sink accepts data");
        }
        sink.shutdown().await.expect("close");
    }
    assert_eq!(
        (
            reply.address.as_str(),
            reply.node.as_str(),
            reply.path.as_str()
        ),
        ("198.19.1.10", "node-2", "/hello")
    );
    assert_eq!(
        reply.client, "198.18.0.155",
        "unNATed: the VM sees ext's address"
    );

    // The guest's egress call reached the harness endpoint from the VM's own address.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen
        .lock()
        .expect("lock")
        .contains(&"198.19.1.10".to_string())
    {
        assert!(
            Instant::now() < deadline,
            "egress call seen: {:?}",
            seen.lock().expect("lock")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let events: Vec<vmbgp_lab_net::net_ground_truth::NetEvent> =
        truth.events().into_iter().map(|(_, _, e)| e).collect();
    assert!(
        events.iter().any(|e| matches!(
            e,
            vmbgp_lab_net::net_ground_truth::NetEvent::AddressAdded { address, node, vm: Some(name), .. }
                if *address == vm && node == "node-2" && name == "ns/vm-a"
        )),
        "{events:?}"
    );

    // Migration switch-over: the VM now answers from node-1.
    lab.dataplane().place(vm, 1, None).await.expect("move");
    assert!(truth.events().iter().any(|(_, _, e)| matches!(e,
        vmbgp_lab_net::net_ground_truth::NetEvent::AddressMoved { from, to, vm: Some(v), .. } if from == "node-2" && to == "node-1" && v == "ns/vm-a")));
    assert!(ping_from_ext(&lab, vm).await, "ping after the move");
    assert_eq!(http_from_ext(&lab, vm).await.node, "node-1");

    // BMP: Initiation first, then Route Monitoring for the prefix (framing only: version 3, type byte).
    let (mut stream, _) = tokio::time::timeout(Duration::from_secs(10), bmp.accept())
        .await
        .expect("BMP connect in time")
        .expect("accept");
    let mut types = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !types.contains(&0u8) && Instant::now() < deadline {
        let mut header = [0u8; 6];
        tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut header))
            .await
            .expect("BMP message in time")
            .expect("read");
        assert_eq!(header[0], 3, "BMP version 3");
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        let mut rest = vec![0u8; len.saturating_sub(6)];
        stream.read_exact(&mut rest).await.expect("read body");
        types.push(header[5]);
    }
    assert_eq!(
        types.first(),
        Some(&4),
        "first BMP message is Initiation: {types:?}"
    );
    assert!(types.contains(&3), "Peer Up seen: {types:?}");
    assert!(types.contains(&0), "Route Monitoring seen: {types:?}");

    // Withdraw: the generated configs go away → the route leaves ext's FIB and the ping fails.
    apply(
        &lab,
        &mut appliers,
        &[vec![template.clone()], vec![template.clone()]],
    )
    .await;
    wait_nexthops(&lab, subnet, &[], Duration::from_secs(10)).await;
    assert!(!ping_from_ext(&lab, vm).await, "no route, no reply");

    lab.dataplane().remove(vm).await.expect("remove");
    let report = lab.down().await.expect("down");
    assert!(report.problems.is_empty(), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root, FRR and iproute2; ci/test.sh runs it (cargo test -- --include-ignored)"]
async fn node_bgpd_restart_reestablishes_with_its_config() {
    let (_guard, lab) = common::up("restart", 1).await;
    let sup = lab.supervisor().clone();
    let mut applier = NodeApplier::for_lab_node(Router::Node(1), sup.clone());
    let template = fixture("frrconfiguration-template.json");
    let subnet = "198.19.3.0/24";
    apply(
        &lab,
        std::slice::from_mut(&mut applier),
        &[vec![
            template.clone(),
            generated(1, subnet),
            fixture("frrconfiguration-hostroutes-node-1.json"),
        ]],
    )
    .await;
    lab.wait_sessions(Duration::from_secs(20))
        .await
        .expect("sessions Established");
    let node1 = [Ipv4Addr::new(198, 18, 0, 1)];
    wait_nexthops(&lab, subnet, &node1, Duration::from_secs(10)).await;
    wait_nexthops(&lab, "198.19.2.12/32", &node1, Duration::from_secs(10)).await;

    // ext's community → local-preference policy, seen in `show bgp ... json` over the vty socket.
    let mut ext = lab
        .supervisor()
        .vty(Router::Ext, vmbgp_lab_net::frr::Daemon::Bgpd)
        .await
        .expect("ext vty");
    for (prefix, community, local_pref) in [
        ("198.19.2.10/32", "64512:100", 200),
        ("198.19.2.12/32", "64512:200", 250),
    ] {
        let v = ext
            .json(&format!("show bgp ipv4 unicast {prefix} json"))
            .await
            .expect("show bgp");
        let path = &v["paths"][0];
        assert_eq!(path["locPrf"], local_pref, "{prefix}: {v}");
        assert_eq!(path["community"]["string"], community, "{prefix}: {v}");
    }
    let old_pid_alive = lab
        .supervisor()
        .is_alive(Router::Node(1), vmbgp_lab_net::frr::Daemon::Bgpd);
    assert!(old_pid_alive);

    let established_before = connections_established(&lab).await;
    lab.restart_bgpd(Router::Node(1)).await.expect("restart");
    let after_restart = lab
        .supervisor()
        .health(Router::Node(1))
        .await
        .expect("health");
    assert!(after_restart.bgpd_alive && after_restart.bgpd_vty);
    lab.wait_sessions(Duration::from_secs(20))
        .await
        .expect("session re-established");
    // The restarted bgpd read the config file the applier wrote: the prefix is back at ext.
    wait_nexthops(
        &lab,
        subnet,
        &[Ipv4Addr::new(198, 18, 0, 1)],
        Duration::from_secs(10),
    )
    .await;
    let after = lab
        .supervisor()
        .health(Router::Node(1))
        .await
        .expect("health");
    let session = &after.neighbors[&vmbgp_lab_net::EXT_ADDR];
    assert_eq!(session.state, "Established");
    // ext counts the sessions it established with node-1: the restart made a new one. (bgpd's uptime
    // counters have 1 s resolution, too coarse to tell a fresh session from an old one here.)
    let established_after = connections_established(&lab).await;
    assert!(
        established_after > established_before,
        "ext established a new session with node-1 ({established_before} → {established_after})"
    );
    let report = lab.down().await.expect("down");
    assert!(report.problems.is_empty(), "{report:?}");
}

/// The harness's own rendering of ext's config (`vmbgp-bench frr-config`, golden file for 3 explicit
/// neighbours) runs in the real ext bgpd: sessions come up and the community → local-preference
/// policy shows in `show bgp ... json`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root, FRR and iproute2; ci/test.sh runs it (cargo test -- --include-ignored)"]
async fn harness_rendered_ext_config_runs_in_real_frr() {
    let golden = format!(
        "{}/../../workloads/golden/external-frr-explicit-neighbors.conf",
        env!("CARGO_MANIFEST_DIR")
    );
    let ext_config = std::fs::read_to_string(&golden)
        .unwrap_or_else(|e| panic!("the harness's rendered ext config {golden}: {e}"));
    let (_guard, lab) =
        common::up_with("golden", 3, |c| c.ext_bgpd_config = ext_config, None).await;
    let template = fixture("frrconfiguration-template.json");
    let sup = lab.supervisor().clone();
    let mut appliers: Vec<NodeApplier> = (1..=3)
        .map(|n| NodeApplier::for_lab_node(Router::Node(n), sup.clone()))
        .collect();
    apply(
        &lab,
        &mut appliers,
        &[
            vec![
                template.clone(),
                fixture("frrconfiguration-hostroutes-node-1.json"),
            ],
            vec![template.clone()],
            vec![template.clone()],
        ],
    )
    .await;
    lab.wait_sessions(Duration::from_secs(20))
        .await
        .expect("sessions Established with the harness's config");
    let node1 = [Ipv4Addr::new(198, 18, 0, 1)];
    wait_nexthops(&lab, "198.19.2.12/32", &node1, Duration::from_secs(10)).await;
    let mut ext = lab
        .supervisor()
        .vty(Router::Ext, vmbgp_lab_net::frr::Daemon::Bgpd)
        .await
        .expect("ext vty");
    for (prefix, local_pref) in [("198.19.2.10/32", 200), ("198.19.2.12/32", 250)] {
        let v = ext
            .json(&format!("show bgp ipv4 unicast {prefix} json"))
            .await
            .expect("show bgp");
        assert_eq!(v["paths"][0]["locPrf"], local_pref, "{prefix}: {v}");
    }
    let report = lab.down().await.expect("down");
    assert!(report.problems.is_empty(), "{report:?}");
}

/// ext's FIB events for `prefix` in the ground truth, in order.
fn fib_events(
    truth: &vmbgp_lab_net::net_ground_truth::MemoryGroundTruth,
    prefix: &str,
) -> Vec<(Instant, NetEvent)> {
    truth
        .events()
        .into_iter()
        .filter(|(_, _, e)| match e {
            NetEvent::FibRouteAdded { prefix: p, .. }
            | NetEvent::FibRouteRemoved { prefix: p, .. } => p == prefix,
            _ => false,
        })
        .map(|(at, _, e)| (at, e))
        .collect()
}

/// Waits (bounded) until the last FIB event recorded for `prefix` is `want`; returns its instant.
async fn wait_fib_event(
    truth: &vmbgp_lab_net::net_ground_truth::MemoryGroundTruth,
    prefix: &str,
    want: &NetEvent,
) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let events = fib_events(truth, prefix);
        if let Some((at, last)) = events.last()
            && last == want
        {
            return *at;
        }
        assert!(
            Instant::now() < deadline,
            "FIB ground truth for {prefix}: {events:?}, want last {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The lab's independent FIB observer records the ECMP route two nodes advertise (multipath next
/// hops), the route one node advertises (a single gateway), and their removal after withdrawal; it
/// records nothing but BGP routes, each stamped after the change was requested.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root, FRR and iproute2; ci/test.sh runs it (cargo test -- --include-ignored)"]
async fn fib_observer_records_bgp_routes_and_withdrawals() {
    let truth = std::sync::Arc::new(vmbgp_lab_net::net_ground_truth::MemoryGroundTruth::default());
    let (_guard, lab) = common::up_with("fibobs", 2, |_| {}, Some(truth.clone())).await;
    let sup = lab.supervisor().clone();
    let mut appliers: Vec<NodeApplier> = (1..=2)
        .map(|n| NodeApplier::for_lab_node(Router::Node(n), sup.clone()))
        .collect();
    let template = fixture("frrconfiguration-template.json");
    let (ecmp, single) = ("198.19.5.0/24", "198.19.6.0/24");
    let mut node1 = generated(1, ecmp);
    node1.spec.bgp.routers[0].prefixes.push(single.to_string());
    node1.spec.bgp.routers[0].neighbors[0]
        .to_advertise
        .allowed
        .prefixes
        .push(single.to_string());
    let requested = Instant::now();
    apply(
        &lab,
        &mut appliers,
        &[
            vec![template.clone(), node1],
            vec![template.clone(), generated(2, ecmp)],
        ],
    )
    .await;
    lab.wait_sessions(Duration::from_secs(20))
        .await
        .expect("sessions Established");
    let n1 = Ipv4Addr::new(198, 18, 0, 1);
    let both = vec![n1, Ipv4Addr::new(198, 18, 0, 2)];
    wait_nexthops(&lab, ecmp, &both, Duration::from_secs(10)).await;
    wait_nexthops(&lab, single, &[n1], Duration::from_secs(10)).await;
    for (prefix, hops) in [(ecmp, both.clone()), (single, vec![n1])] {
        let at = wait_fib_event(
            &truth,
            prefix,
            &NetEvent::FibRouteAdded {
                prefix: prefix.into(),
                next_hops: hops,
                protocol: "bgp".into(),
            },
        )
        .await;
        assert!(at > requested, "{prefix}: stamped before it was advertised");
    }

    // Withdrawal: both routes leave ext's FIB.
    let requested = Instant::now();
    apply(
        &lab,
        &mut appliers,
        &[vec![template.clone()], vec![template.clone()]],
    )
    .await;
    wait_nexthops(&lab, ecmp, &[], Duration::from_secs(10)).await;
    wait_nexthops(&lab, single, &[], Duration::from_secs(10)).await;
    for prefix in [ecmp, single] {
        let at = wait_fib_event(
            &truth,
            prefix,
            &NetEvent::FibRouteRemoved {
                prefix: prefix.into(),
                protocol: "bgp".into(),
            },
        )
        .await;
        assert!(
            at > requested,
            "{prefix}: removal stamped before the withdrawal"
        );
    }
    // Only the advertised BGP routes were recorded; nothing was lost.
    for (_, _, e) in truth.events() {
        match e {
            NetEvent::FibRouteAdded {
                prefix, protocol, ..
            }
            | NetEvent::FibRouteRemoved { prefix, protocol } => {
                assert!(prefix == ecmp || prefix == single, "{prefix}");
                assert_eq!(protocol, "bgp");
            }
            NetEvent::FibObserverOverrun | NetEvent::FibObserverFailed { .. } => {
                panic!("{e:?}")
            }
            _ => {}
        }
    }
    let report = lab.down().await.expect("down");
    assert!(report.problems.is_empty(), "{report:?}");
}

/// `ping -c 3 -W 1` from ext (bounded: about 3 s when nothing answers).
async fn ping3_from_ext(lab: &LabNet, addr: Ipv4Addr) -> bool {
    tokio::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.info().ext_netns,
            "ping",
            "-n",
            "-q",
            "-c",
            "3",
            "-W",
            "1",
            &addr.to_string(),
        ])
        .output()
        .await
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// `ip` output inside a netns.
async fn ip_in(netns: &str, args: &[&str]) -> String {
    let out = tokio::process::Command::new("ip")
        .args(["-n", netns])
        .args(args)
        .output()
        .await
        .expect("ip");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The silent-VM fault: the silent VM's address is routed but never answers (a blackhole on its
/// vmhost, also after a move), a normal VM beside it answers; ground truth says it was withheld.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root, FRR and iproute2; ci/test.sh runs it (cargo test -- --include-ignored)"]
async fn silent_vm_never_answers_while_a_normal_vm_does() {
    use vmbgp_lab_net::net_ground_truth::MemoryGroundTruth;
    let truth = std::sync::Arc::new(MemoryGroundTruth::default());
    let (_guard, lab) = common::up_with(
        "silent",
        2,
        |c| c.silent_vms = vec!["vm-silent".into()],
        Some(truth.clone()),
    )
    .await;
    let subnet = "198.19.7.0/24";
    let (_appliers, _template, _) = advertise_from_both_nodes(&lab, subnet).await;

    let normal = Ipv4Addr::new(198, 19, 7, 10);
    let silent = Ipv4Addr::new(198, 19, 7, 11);
    let dp = lab.dataplane();
    dp.place(normal, 1, Some("ns/vm-normal".into()))
        .await
        .expect("place the normal VM");
    dp.place(silent, 1, Some("ns/vm-silent".into()))
        .await
        .expect("place the silent VM");
    let (a, b) = tokio::join!(ping3_from_ext(&lab, normal), ping3_from_ext(&lab, silent));
    assert!(a, "the normal VM answers");
    assert!(!b, "the silent VM does not answer");
    assert!(dp.placements()[&silent].withheld);
    assert!(!dp.placements()[&normal].withheld);

    let vmhost1 = lab.names().vmhost_netns(1);
    let vmhost2 = lab.names().vmhost_netns(2);
    let silent_s = silent.to_string();
    assert!(
        !ip_in(&vmhost1, &["addr", "show", "dev", "lo"])
            .await
            .contains(&silent_s)
    );
    assert!(
        ip_in(&vmhost1, &["route", "show", &silent_s])
            .await
            .contains("blackhole")
    );
    let events: Vec<NetEvent> = truth.events().into_iter().map(|(_, _, e)| e).collect();
    assert!(events.contains(&NetEvent::AddressWithheld {
        address: silent,
        node: "node-1".into(),
        vm: Some("ns/vm-silent".into()),
    }));
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, NetEvent::AddressAdded { address, .. } if *address == silent))
    );

    // A move keeps it withheld: the blackhole follows the VM; removal clears it.
    dp.place(silent, 2, None).await.expect("move the silent VM");
    assert!(
        !ip_in(&vmhost1, &["route", "show", &silent_s])
            .await
            .contains("blackhole")
    );
    assert!(
        ip_in(&vmhost2, &["route", "show", &silent_s])
            .await
            .contains("blackhole")
    );
    assert!(
        !ping3_from_ext(&lab, silent).await,
        "still silent after the move"
    );
    dp.remove(silent).await.expect("remove the silent VM");
    assert!(
        ip_in(&vmhost2, &["route", "show", &silent_s])
            .await
            .is_empty()
    );
    assert!(truth.events().iter().any(|(_, _, e)| matches!(e,
        NetEvent::AddressRemoved { address, node, .. } if *address == silent && node == "node-2")));
    dp.remove(normal).await.expect("remove the normal VM");
    let report = lab.down().await.expect("down");
    assert!(report.problems.is_empty(), "{report:?}");
}
