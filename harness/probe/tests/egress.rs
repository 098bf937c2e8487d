//! Egress endpoint and HTTP check against clients in another netns this test creates (needs root).

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::{FAR, NEAR, NetnsPair};
use vmbgp_host::clock::RunClock;
use vmbgp_probe::egress::{EgressConfig, EgressEndpoint, EgressVerdict};
use vmbgp_probe::http_check::{HttpGet, http_get};

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root, FRR and iproute2; ci/test.sh runs it (cargo test -- --include-ignored)"]
async fn egress_endpoint_records_the_true_source_of_each_vm() {
    let pair = NetnsPair::new("egress");
    let vm_a = "198.19.0.30";
    pair.add_far_address(vm_a);
    let clock = RunClock::start();
    let mut config = EgressConfig::new(SocketAddr::new(ip(NEAR), 0));
    config.netns = Some(pair.near.clone());
    config.run_uuid = Some("run-1".into());
    let endpoint = EgressEndpoint::start(clock, config)
        .await
        .expect("start endpoint");
    let listen = endpoint.local_addr();
    assert_eq!(listen.ip(), ip(NEAR));

    // "VM a" calls from its own address; "VM b" claims 198.19.0.31 but leaves from the far
    // side's veth address, as a SNATed VM would.
    let call = |source: &str, vm: &str| {
        let url = endpoint.url_for("run-1", vm);
        let path = url
            .split_once(&listen.to_string())
            .map(|(_, p)| p.to_string())
            .expect("path");
        let mut get = HttpGet::new(listen, path);
        get.netns = Some(pair.far.clone());
        get.source = Some(ip(source));
        get
    };
    let a = http_get(&clock, &call(vm_a, "ns/vm-a")).await;
    assert!(a.ok(), "{a:?}");
    assert_eq!(a.body.observed().map(String::as_str), Some("198.19.0.30\n"));
    let b = http_get(&clock, &call(FAR, "ns/vm-b")).await;
    assert!(b.ok(), "{b:?}");

    // The lab's simulated guests name only their address, in a header.
    let vm_c = "198.19.0.32";
    pair.add_far_address(vm_c);
    let mut by_header = HttpGet::new(listen, "/egress?uuid=run-1");
    by_header.netns = Some(pair.far.clone());
    by_header.source = Some(ip(vm_c));
    by_header.headers = vec![("x-vmbgp-vm-address".into(), vm_c.into())];
    assert!(http_get(&clock, &by_header).await.ok());
    assert!(matches!(
        endpoint.verdict("ns/vm-c", ip(vm_c)),
        EgressVerdict::Unnated { calls: 1, .. }
    ));
    // No identification at all: 400, recorded, counted for nobody.
    let mut anonymous = HttpGet::new(listen, "/egress");
    anonymous.netns = Some(pair.far.clone());
    assert_eq!(
        http_get(&clock, &anonymous).await.status.observed(),
        Some(&400)
    );

    let (records, not_kept) = endpoint.records();
    assert_eq!((records.len(), not_kept), (4, 0));
    assert_eq!(records[0].source.ip(), ip(vm_a));
    assert_eq!(records[0].claimed_vm.as_deref(), Some("ns/vm-a"));
    assert_eq!(records[0].uuid.as_deref(), Some("run-1"));
    assert!(records[0].at >= a.started);

    assert!(matches!(
        endpoint.verdict("ns/vm-a", ip(vm_a)),
        EgressVerdict::Unnated { calls: 1, .. }
    ));
    match endpoint.verdict("ns/vm-b", ip("198.19.0.31")) {
        EgressVerdict::Natted { sources, .. } => assert_eq!(sources, vec![ip(FAR)]),
        other => panic!("expected NATed, got {other:?}"),
    }
    assert!(matches!(
        endpoint.verdict("ns/vm-d", ip("198.19.0.33")),
        EgressVerdict::NotSeen { .. }
    ));
    let (records, _) = endpoint.shutdown().await;
    assert_eq!(records.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root, FRR and iproute2; ci/test.sh runs it (cargo test -- --include-ignored)"]
async fn http_check_reports_a_refused_port_as_missing_with_the_error() {
    let pair = NetnsPair::new("http");
    let clock = RunClock::start();
    let mut get = HttpGet::new(SocketAddr::new(ip(FAR), 9), "/");
    get.netns = Some(pair.near.clone());
    get.timeout = Duration::from_secs(2);
    let check = http_get(&clock, &get).await;
    assert!(!check.ok());
    let why = check.connected.missing_reason().expect("not connected");
    assert!(why.contains("refused"), "{why}");
    assert!(check.status.missing_reason().is_some());
}
