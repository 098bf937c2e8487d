//! Lab-net benchmark (figures go to docs/perf-lab-net.md). Needs root and FRR. Run:
//! `CARGO_TARGET_DIR=... cargo bench -p vmbgp-lab-net --bench lab_net`
//!
//! 1. `LabNet::up` with 3 nodes (target ≤ 2 s), and until all sessions are Established;
//! 2. 1,000 VM addresses placed by the dataplane (target ≤ 1 s), then reachable from ext;
//!    and 1,000 per-VM /32s rendered + applied (host-route mode) until all are in ext's FIB;
//! 3. a new VM's /32 from FRRConfiguration change to ext's kernel FIB (netlink event via
//!    `ip monitor route`) vs FRR's floor (a raw `network` command on the node's vty), 20 samples each;
//! 4. the lab's FIB observer (ground truth) against `ip monitor route`: its stamp of the same route
//!    events, and whether it kept every one of the 1,000-route burst of 2c.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;
use vmbgp_lab_net::frr::Daemon;
use vmbgp_lab_net::frrk8s::apply::NodeApplier;
use vmbgp_lab_net::frrk8s::model::{NamedConfig, merge};
use vmbgp_lab_net::frrk8s::render::render;
use vmbgp_lab_net::net_ground_truth::{MemoryGroundTruth, NetEvent};
use vmbgp_lab_net::{LabNet, LabNetConfig, Router, TeardownGuard};

const NODES: u16 = 3;

fn ext_config(nodes: u16) -> String {
    let neighbors: String = (1..=nodes)
        .map(|n| format!(" neighbor 198.18.0.{n} peer-group CLUSTER\n"))
        .collect();
    include_str!("../tests/fixtures/ext-bgpd.conf")
        .replace("{{NODE_NEIGHBORS}}\n", &neighbors)
        .replace("{{BMP_PORT}}", "11019")
}

fn template() -> NamedConfig {
    let v: serde_json::Value = serde_json::from_str(include_str!(
        "../tests/fixtures/frrconfiguration-template.json"
    ))
    .expect("fixture");
    NamedConfig {
        name: "template".into(),
        spec: serde_json::from_value(v["spec"].clone()).expect("spec"),
    }
}

/// A per-node host-route FRRConfiguration advertising the given /32s.
fn host_routes(node: u16, prefixes: &[String]) -> NamedConfig {
    let spec = serde_json::json!({
        "nodeSelector": {"matchLabels": {"kubernetes.io/hostname": format!("node-{node}")}},
        "bgp": {"routers": [{"asn": 64513, "prefixes": prefixes, "neighbors": [
            {"address": "198.18.0.155", "asn": 64512,
             "toAdvertise": {"allowed": {"prefixes": prefixes},
                             "withCommunity": [{"prefixes": prefixes, "community": "64512:100"}]}}]}]}
    });
    NamedConfig {
        name: format!("hostroutes-node-{node}"),
        spec: serde_json::from_value(spec).expect("spec"),
    }
}

fn stats(samples: &mut [f64]) -> String {
    samples.sort_by(|a, b| a.total_cmp(b));
    let n = samples.len();
    if n == 0 {
        return "no samples".into();
    }
    let median = samples[n / 2];
    format!(
        "min {:.1} / median {:.1} / p90 {:.1} / max {:.1} ms (n={n})",
        samples[0],
        median,
        samples[(n * 9 / 10).min(n - 1)],
        samples[n - 1]
    )
}

fn median(samples: &[f64]) -> f64 {
    let mut s = samples.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    s.get(s.len() / 2).copied().unwrap_or(f64::NAN)
}

/// `ip -n <ext> monitor route`: every added (or deleted) route line with its arrival instant.
fn monitor_routes(
    netns: &str,
) -> (
    tokio::process::Child,
    mpsc::UnboundedReceiver<(Instant, String)>,
) {
    let mut child = tokio::process::Command::new("ip")
        .args(["-n", netns, "monitor", "route"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("ip monitor");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if tx.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

async fn wait_route(
    rx: &mut mpsc::UnboundedReceiver<(Instant, String)>,
    prefix: &str,
    deleted: bool,
) -> Instant {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (at, line) = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("route event in time")
            .expect("monitor running");
        if line.starts_with(&format!("{prefix} ")) && !deleted
            || line.starts_with(&format!("Deleted {prefix} ")) && deleted
        {
            return at;
        }
    }
}

async fn ext_bgp_route_count(lab: &LabNet) -> usize {
    let out = tokio::process::Command::new("ip")
        .args(["-n", &lab.info().ext_netns, "route", "show", "proto", "bgp"])
        .output()
        .await
        .expect("ip route");
    String::from_utf8_lossy(&out.stdout).lines().count()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if let Err(e) =
        vmbgp_lab_net::network::check_prerequisites(std::path::Path::new("/usr/lib/frr"))
    {
        eprintln!("lab-net benchmark needs root and FRR: {e}");
        std::process::exit(4);
    }
    let mut results: BTreeMap<&str, String> = BTreeMap::new();

    // 1. lab up, 3 runs.
    let mut up_ms = Vec::new();
    let mut sessions_ms = Vec::new();
    let mut down_ms = Vec::new();
    for run in 0..3 {
        let id = format!("bench{}-up{run}", std::process::id());
        let dir = std::env::temp_dir().join(format!("vmbgp-labnet-{id}"));
        let _guard = TeardownGuard::new(&dir);
        let t0 = Instant::now();
        let lab = LabNet::up(LabNetConfig::new(&id, &dir, NODES, ext_config(NODES)), None)
            .await
            .expect("up");
        up_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        // Sessions need the nodes' config (what frr-k8s applies): template only.
        let merged_text =
            |n: u16| render(&merge(&format!("node-{n}"), &[&template()]).expect("merge"));
        for n in 1..=NODES {
            let mut a = NodeApplier::for_lab_node(Router::Node(n), lab.supervisor().clone());
            a.apply(&merged_text(n)).await.expect("apply");
        }
        lab.wait_sessions(Duration::from_secs(30))
            .await
            .expect("sessions");
        sessions_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        let t1 = Instant::now();
        lab.down().await.expect("down");
        down_ms.push(t1.elapsed().as_secs_f64() * 1e3);
    }
    results.insert(
        "1a. lab up, 3 nodes (netns + 8 FRR daemons + vmhost services)",
        stats(&mut up_ms),
    );
    results.insert(
        "1b. lab up → all 6 sessions Established (incl. applying node configs)",
        stats(&mut sessions_ms),
    );
    results.insert("1c. lab down, 3 nodes", stats(&mut down_ms));

    // One lab for the rest.
    let id = format!("bench{}-main", std::process::id());
    let dir = std::env::temp_dir().join(format!("vmbgp-labnet-{id}"));
    let _guard = TeardownGuard::new(&dir);
    let truth = std::sync::Arc::new(MemoryGroundTruth::default());
    let lab = LabNet::up(
        LabNetConfig::new(&id, &dir, NODES, ext_config(NODES)),
        Some(truth.clone()),
    )
    .await
    .expect("up");
    let mut appliers: Vec<NodeApplier> = (1..=NODES)
        .map(|n| NodeApplier::for_lab_node(Router::Node(n), lab.supervisor().clone()))
        .collect();
    // OVN-K mode: the VM subnet 198.19.16.0/22 advertised from every node (generated configs).
    let subnet_cfg = |n: u16| {
        let spec = serde_json::json!({
            "nodeSelector": {"matchLabels": {"kubernetes.io/hostname": format!("node-{n}")}},
            "bgp": {"routers": [{"asn": 64513, "prefixes": ["198.19.16.0/22"], "neighbors": [
                {"address": "198.18.0.155", "asn": 64512, "toAdvertise": {"allowed": {"prefixes": ["198.19.16.0/22"]}}}]}]}
        });
        NamedConfig {
            name: format!("ovnk-generated-{n}"),
            spec: serde_json::from_value(spec).expect("spec"),
        }
    };
    for (i, a) in appliers.iter_mut().enumerate() {
        let n = i as u16 + 1;
        let t = template();
        let g = subnet_cfg(n);
        a.apply(&render(
            &merge(&format!("node-{n}"), &[&t, &g]).expect("merge"),
        ))
        .await
        .expect("apply");
    }
    lab.wait_sessions(Duration::from_secs(30))
        .await
        .expect("sessions");
    // A new session's first UPDATE waits for bgpd's subgroup coalesce timer (~1 s), so wait for the
    // subnet at ext before probing.
    let t0 = Instant::now();
    while ext_bgp_route_count(&lab).await == 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "subnet route at ext"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    results.insert(
        "1d. sessions Established → first route in ext's FIB (bgpd subgroup coalesce)",
        format!("{:.1} ms", t0.elapsed().as_secs_f64() * 1e3),
    );
    let (_monitor, mut routes) = monitor_routes(&lab.info().ext_netns);

    // 2a. 1,000 VM addresses placed (spread over the nodes), then all reachable from ext.
    let addrs: Vec<(Ipv4Addr, u16)> = (0..1000u32)
        .map(|i| {
            (
                Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 19, 16, 10)) + i),
                (i % u32::from(NODES)) as u16 + 1,
            )
        })
        .collect();
    let t0 = Instant::now();
    lab.dataplane()
        .place_many(&addrs)
        .await
        .expect("place 1000");
    let place_ms = t0.elapsed().as_secs_f64() * 1e3;
    // Reachability of all 1,000 from ext: one fping-like sweep with the system ping per address
    // would take seconds of process start-up, so sample 30 addresses evenly.
    let mut reachable = 0;
    for (a, _) in addrs.iter().step_by(34) {
        let ok = tokio::process::Command::new("ip")
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
                &a.to_string(),
            ])
            .output()
            .await
            .map(|o| o.status.success())
            .unwrap_or(false);
        reachable += usize::from(ok);
    }
    let sampled = addrs.iter().step_by(34).count();
    results.insert(
        "2a. 1,000 VM addresses placed and routed by the dataplane (one round)",
        format!("{place_ms:.1} ms; sampled reachability from ext {reachable}/{sampled}"),
    );
    let t0 = Instant::now();
    let moved: Vec<(Ipv4Addr, u16)> = addrs.iter().map(|(a, n)| (*a, n % NODES + 1)).collect();
    lab.dataplane().place_many(&moved).await.expect("move 1000");
    let move_ms = t0.elapsed().as_secs_f64() * 1e3;
    let t0 = Instant::now();
    let only: Vec<Ipv4Addr> = addrs.iter().map(|(a, _)| *a).collect();
    lab.dataplane()
        .remove_many(&only)
        .await
        .expect("remove 1000");
    let remove_ms = t0.elapsed().as_secs_f64() * 1e3;
    results.insert(
        "2b. 1,000 VM addresses moved / removed",
        format!("{move_ms:.1} ms / {remove_ms:.1} ms"),
    );

    // 2c. host-route mode: 1,000 /32s (333-334 per node) rendered + applied → all in ext's FIB.
    let before = ext_bgp_route_count(&lab).await;
    let per_node: Vec<Vec<String>> = (1..=NODES)
        .map(|n| {
            addrs
                .iter()
                .filter(|(_, m)| *m == n)
                .map(|(a, _)| format!("{a}/32"))
                .collect()
        })
        .collect();
    let t0 = Instant::now();
    let mut apply_ms = 0.0;
    for (i, a) in appliers.iter_mut().enumerate() {
        let n = i as u16 + 1;
        let (t, g, h) = (template(), subnet_cfg(n), host_routes(n, &per_node[i]));
        let ta = Instant::now();
        let out = a
            .apply(&render(
                &merge(&format!("node-{n}"), &[&t, &g, &h]).expect("merge"),
            ))
            .await
            .expect("apply");
        apply_ms += ta.elapsed().as_secs_f64() * 1e3;
        assert!(out.failures.is_empty(), "{:?}", out.failures);
    }
    loop {
        if ext_bgp_route_count(&lab).await >= before + 1000 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "1000 host routes at ext"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let all_ms = t0.elapsed().as_secs_f64() * 1e3;
    results.insert(
        "2c. 1,000 per-VM /32s: render+diff+vty apply on 3 nodes / all in ext's FIB",
        format!("{apply_ms:.1} ms / {all_ms:.1} ms (FIB polled every 5 ms)"),
    );
    // The observer saw every one of them (polling stopped once all were in the FIB; give the
    // observer's thread a moment for the last datagram).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let wanted: std::collections::BTreeSet<String> = per_node.iter().flatten().cloned().collect();
    let events = truth.events();
    let observed = events
        .iter()
        .filter_map(|(_, _, e)| match e {
            NetEvent::FibRouteAdded { prefix, .. } if wanted.contains(prefix) => Some(prefix),
            _ => None,
        })
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let overruns = events
        .iter()
        .filter(|(_, _, e)| matches!(e, NetEvent::FibObserverOverrun))
        .count();
    results.insert(
        "4b. FIB observer during 2c's 1,000-route burst",
        format!("{observed}/1000 routes recorded, {overruns} overruns"),
    );
    // Back to subnet only.
    for (i, a) in appliers.iter_mut().enumerate() {
        let n = i as u16 + 1;
        let (t, g) = (template(), subnet_cfg(n));
        a.apply(&render(
            &merge(&format!("node-{n}"), &[&t, &g]).expect("merge"),
        ))
        .await
        .expect("apply");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    while routes.try_recv().is_ok() {}

    // 3. New VM /32 to ext's FIB: lab path (FRRConfiguration → render → diff → vty) vs FRR floor.
    let mut lab_ms = Vec::new();
    let mut lab_overhead_ms = Vec::new();
    let mut floor_ms = Vec::new();
    let mut observer_floor_ms = Vec::new();
    let mut monitor_lag_us = Vec::new();
    let mut observer_missed = 0;
    let node1 = &mut appliers[0];
    for i in 0..20u8 {
        let prefix = format!("198.19.20.{}/32", 10 + i);
        let (t, g, h) = (
            template(),
            subnet_cfg(1),
            host_routes(1, std::slice::from_ref(&prefix)),
        );
        let t0 = Instant::now();
        node1
            .apply(&render(&merge("node-1", &[&t, &g, &h]).expect("merge")))
            .await
            .expect("apply");
        lab_overhead_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        let at = wait_route(&mut routes, prefix.trim_end_matches("/32"), false).await;
        lab_ms.push(at.duration_since(t0).as_secs_f64() * 1e3);
        node1
            .apply(&render(&merge("node-1", &[&t, &g]).expect("merge")))
            .await
            .expect("withdraw");
        wait_route(&mut routes, prefix.trim_end_matches("/32"), true).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Steady state: 50 VMs of node-1 already advertised with the community; add/remove a 51st.
    let base: Vec<String> = (0..50u8)
        .map(|i| format!("198.19.22.{}/32", 10 + i))
        .collect();
    {
        let (t, g, h) = (template(), subnet_cfg(1), host_routes(1, &base));
        node1
            .apply(&render(&merge("node-1", &[&t, &g, &h]).expect("merge")))
            .await
            .expect("apply");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        while routes.try_recv().is_ok() {}
    }
    let mut steady_ms = Vec::new();
    let mut steady_processing_ms = Vec::new();
    for i in 0..20u8 {
        let prefix = format!("198.19.23.{}/32", 10 + i);
        let mut with = base.clone();
        with.push(prefix.clone());
        let (t, g, h, h0) = (
            template(),
            subnet_cfg(1),
            host_routes(1, &with),
            host_routes(1, &base),
        );
        let t0 = Instant::now();
        node1
            .apply(&render(&merge("node-1", &[&t, &g, &h]).expect("merge")))
            .await
            .expect("apply");
        steady_processing_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        let at = wait_route(&mut routes, prefix.trim_end_matches("/32"), false).await;
        steady_ms.push(at.duration_since(t0).as_secs_f64() * 1e3);
        node1
            .apply(&render(&merge("node-1", &[&t, &g, &h0]).expect("merge")))
            .await
            .expect("withdraw");
        wait_route(&mut routes, prefix.trim_end_matches("/32"), true).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    {
        let (t, g) = (template(), subnet_cfg(1));
        node1
            .apply(&render(&merge("node-1", &[&t, &g]).expect("merge")))
            .await
            .expect("apply");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        while routes.try_recv().is_ok() {}
    }
    // Floor: the same announcement as one raw `network` command (prefix-list entry added beforehand).
    let mut vty = lab
        .supervisor()
        .vty(Router::Node(1), Daemon::Bgpd)
        .await
        .expect("vty");
    for i in 0..20u8 {
        let addr = format!("198.19.21.{}", 10 + i);
        vty.configure(&[format!(
            "ip prefix-list 198.18.0.155-allowed-ipv4 seq {} permit {addr}/32",
            500 + u32::from(i)
        )])
        .await
        .expect("prefix-list");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let t0 = Instant::now();
        vty.configure(&[
            "router bgp 64513".into(),
            "address-family ipv4 unicast".into(),
            format!("network {addr}/32"),
        ])
        .await
        .expect("network");
        let at = wait_route(&mut routes, &addr, false).await;
        floor_ms.push(at.duration_since(t0).as_secs_f64() * 1e3);
        let prefix = format!("{addr}/32");
        let observed = truth.events().into_iter().find_map(|(when, _, e)| match e {
            NetEvent::FibRouteAdded { prefix: p, .. } if p == prefix && when > t0 => Some(when),
            _ => None,
        });
        match observed {
            Some(when) => {
                observer_floor_ms.push(when.duration_since(t0).as_secs_f64() * 1e3);
                // Positive: `ip monitor`'s line arrived after the observer's recv.
                monitor_lag_us.push(
                    (at.saturating_duration_since(when).as_secs_f64()
                        - when.saturating_duration_since(at).as_secs_f64())
                        * 1e6,
                );
            }
            None => observer_missed += 1,
        }
        vty.configure(&[
            "router bgp 64513".into(),
            "address-family ipv4 unicast".into(),
            format!("no network {addr}/32"),
        ])
        .await
        .expect("no network");
        wait_route(&mut routes, &addr, true).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let overhead = median(&lab_ms) - median(&floor_ms);
    let steady_overhead = median(&steady_ms) - median(&floor_ms);
    results.insert(
        "3a. first VM /32 of a node → ext FIB, lab path (community route-map clause created)",
        stats(&mut lab_ms),
    );
    results.insert(
        "3b. new VM /32 → ext FIB, FRR floor (raw vty `network`)",
        stats(&mut floor_ms),
    );
    results.insert(
        "3c. lab processing for 3a (merge+render+diff+vty apply, measured directly)",
        stats(&mut lab_overhead_ms),
    );
    results.insert(
        "3d. lab overhead for 3a = median(3a) − median(3b)",
        format!("{overhead:.1} ms"),
    );
    results.insert(
        "3e. 51st VM /32 of a node (steady state) → ext FIB, lab path",
        stats(&mut steady_ms),
    );
    results.insert(
        "3f. lab processing for 3e (measured directly)",
        stats(&mut steady_processing_ms),
    );
    results.insert(
        "3g. lab overhead for 3e = median(3e) − median(3b)",
        format!("{steady_overhead:.1} ms"),
    );
    results.insert(
        "4a. 3b as stamped by the FIB observer (request → observer's recv)",
        format!(
            "{}; missed {observer_missed}",
            stats(&mut observer_floor_ms)
        ),
    );
    results.insert(
        "4c. `ip monitor route` line read − FIB observer stamp, same events as 3b",
        stats(&mut monitor_lag_us).replace(" ms", " µs"),
    );

    lab.down().await.expect("down");
    println!("| measurement | result |\n|---|---|");
    for (k, v) in results {
        println!("| {k} | {v} |");
    }
}
