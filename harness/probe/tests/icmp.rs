//! ICMP prober against real packets in network namespaces this test creates (needs root).

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::{FAR, NetnsPair};
use vmbgp_host::clock::{MonoStamp, RunClock};
use vmbgp_probe::icmp::{IcmpProber, ProbeRate, ProberConfig, SocketKind, StopReason, TargetSpec};

fn addr(s: &str) -> IpAddr {
    s.parse().expect("address")
}

fn rate(n: u32) -> ProbeRate {
    ProbeRate::per_second(n).expect("rate")
}

fn spec(a: &str, per_second: u32) -> TargetSpec {
    let mut spec = TargetSpec::new(addr(a), format!("test/{a}"));
    spec.rate = rate(per_second);
    spec.rate_after_sustained = None;
    spec
}

fn config(pair: &NetnsPair, timeout_ms: u64, sustain_count: u32) -> ProberConfig {
    ProberConfig {
        netns: Some(pair.near.clone()),
        timeout: Duration::from_millis(timeout_ms),
        sustain_count,
        ..ProberConfig::default()
    }
}

fn plus(at: MonoStamp, ms: u64) -> MonoStamp {
    MonoStamp::from_offset(at.since_anchor() + Duration::from_millis(ms))
}

fn minus(at: MonoStamp, ms: u64) -> MonoStamp {
    MonoStamp::from_offset(at.since_anchor().saturating_sub(Duration::from_millis(ms)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root, FRR and iproute2; ci/test.sh runs it (cargo test -- --include-ignored)"]
async fn live_address_answers_with_sane_rtts() {
    let pair = NetnsPair::new("live");
    let clock = RunClock::start();
    let prober = IcmpProber::start(clock, config(&pair, 500, 20)).expect("start prober");
    // Root in a fresh netns (ping_group_range "1 0"): RAW is the only choice.
    assert_eq!(prober.socket_kind(), SocketKind::Raw);
    prober.add_target(spec(FAR, 200)).expect("add");
    tokio::time::sleep(Duration::from_millis(600)).await;

    // Remove returns the final report and frees the address for a new stream.
    let removed = prober.remove_target(addr(FAR)).await.expect("remove");
    assert_eq!(removed.stopped, Some(StopReason::StoppedByCaller));
    assert!(removed.sent >= 50, "sent {}", removed.sent);
    assert_eq!(removed.replied, removed.sent, "{removed:?}");
    assert_eq!(removed.pending, 0);
    prober
        .add_target(spec(FAR, 200))
        .expect("re-add after remove");
    tokio::time::sleep(Duration::from_millis(300)).await;

    let snapshot = prober.finish().await;
    assert_eq!(snapshot.stats.socket_drops, 0);
    let r = &snapshot.targets[&addr(FAR)];
    assert_eq!(r.stopped, Some(StopReason::ProberFinished));
    assert!(r.sent >= 20 && r.sent <= 200, "sent {}", r.sent);
    assert_eq!((r.lost, r.pending), (0, 0), "{r:?}");
    assert_eq!(r.replied, r.sent);
    assert_eq!(r.loss_ratio.observed(), Some(&0.0));
    let rtt = r.rtt.observed().expect("rtt observed");
    assert!(rtt.p50_us >= 1 && rtt.p50_us < 10_000, "{rtt:?}");
    assert!(rtt.max_us < 500_000, "{rtt:?}");
    let first = r.first_reply.observed().expect("first reply");
    assert_eq!(first.probe_no, 0);
    assert!(first.scheduled <= first.sent && first.sent < first.received);
    assert_eq!(r.sustained.observed().map(|e| e.probe_no), Some(0));
    assert_eq!(r.loss_derived_convergence.observed(), Some(&Duration::ZERO));
    assert!(r.loss_periods.is_empty());
    assert!(snapshot.never_reachable().is_empty());
    let json = serde_json::to_value(&snapshot).expect("snapshot serializes");
    assert_eq!(json["targets"][FAR]["replied"], r.replied);
    assert_eq!(snapshot.merged_rtt().map(|h| h.len()), Some(r.replied));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root, FRR and iproute2; ci/test.sh runs it (cargo test -- --include-ignored)"]
async fn address_that_appears_goes_away_and_returns() {
    let pair = NetnsPair::new("flap");
    let vm = "198.19.0.10";
    let clock = RunClock::start();
    let prober = IcmpProber::start(clock, config(&pair, 200, 25)).expect("start prober");
    prober.add_target(spec(vm, 500)).expect("add"); // one probe every 2 ms
    tokio::time::sleep(Duration::from_millis(200)).await;

    let add1 = (clock.now(), {
        pair.add_far_address(vm);
        clock.now()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let del = (clock.now(), {
        pair.del_far_address(vm);
        clock.now()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let add2 = (clock.now(), {
        pair.add_far_address(vm);
        clock.now()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let snapshot = prober.finish().await;
    let r = &snapshot.targets[&addr(vm)];
    assert_eq!(snapshot.stats.socket_drops, 0);

    // First reply: a probe sent after the address appeared (bounds are generous for a busy machine).
    let first = r.first_reply.observed().expect("first reply");
    assert!(first.sent >= minus(add1.0, 1), "{first:?} vs {add1:?}");
    assert!(first.sent <= plus(add1.1, 100), "{first:?} vs {add1:?}");
    // Nothing was lost between the first reply and the deletion, so that probe starts the
    // sustained run.
    assert_eq!(
        r.sustained.observed().map(|e| e.probe_no),
        Some(first.probe_no)
    );

    assert_eq!(r.loss_periods.len(), 2, "{:#?}", r.loss_periods);
    assert_eq!(r.loss_periods_since(del.0).count(), 1);
    let window = r.loss_since(minus(del.0, 3));
    assert_eq!((window.periods, window.still_losing), (1, false));
    assert_eq!(window.lost, r.loss_periods[1].lost);
    assert_eq!(window.recovered_at, r.loss_periods[1].first_reply_after);
    assert!(window.longest_reply_gap.expect("gap") >= window.loss_derived);
    let (initial, outage) = (r.loss_periods[0], r.loss_periods[1]);
    assert!(initial.before_first_reply && initial.first_lost_probe == 0);
    assert_eq!(
        r.loss_derived_convergence.observed(),
        Some(&initial.loss_derived)
    );
    assert!(!outage.before_first_reply);
    assert!(outage.start >= minus(del.0, 3), "{outage:?} vs {del:?}");
    assert!(outage.start <= plus(del.1, 100), "{outage:?} vs {del:?}");
    let end = outage.end.expect("outage ended");
    assert!(end >= minus(add2.0, 3), "{outage:?} vs {add2:?}");
    assert!(end <= plus(add2.1, 100), "{outage:?} vs {add2:?}");
    // Loss-derived length ≈ the span of the period (2 ms per lost probe), unless slots were skipped.
    let span = end.since(outage.start).expect("ordered");
    let derived = outage.loss_derived;
    assert_eq!(
        derived,
        Duration::from_millis(2) * u32::try_from(outage.lost).expect("small")
    );
    if r.schedule_skipped == 0 {
        assert!(
            span.abs_diff(derived) <= Duration::from_millis(4),
            "span {span:?} derived {derived:?}"
        );
    }
    // Roughly the 300 ms the address was away.
    assert!(
        derived >= Duration::from_millis(200) && derived <= Duration::from_millis(500),
        "{derived:?}"
    );
    assert_eq!(
        r.loss_of_connectivity.observed(),
        Some(&initial.loss_derived.max(derived))
    );
    let gap = r.longest_reply_gap.observed().expect("gap");
    assert!(gap.gap >= derived, "{gap:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root, FRR and iproute2; ci/test.sh runs it (cargo test -- --include-ignored)"]
async fn unreachable_targets_report_never_reachable_with_a_reason() {
    let pair = NetnsPair::new("unreach");
    let silent = "198.19.0.99"; // routed to the far side, which has no such address: dropped
    let no_route = "198.18.201.1"; // no route in the near namespace: ENETUNREACH on send
    let clock = RunClock::start();
    let prober = IcmpProber::start(clock, config(&pair, 100, 10)).expect("start prober");
    prober.add_target(spec(silent, 100)).expect("add");
    prober.add_target(spec(no_route, 100)).expect("add");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let snapshot = prober.finish().await;

    let never = snapshot.never_reachable();
    assert_eq!(never.len(), 2, "{never:?}");
    assert!(snapshot.merged_rtt().is_none());
    let r = &snapshot.targets[&addr(silent)];
    assert!(r.sent > 10);
    assert_eq!((r.replied, r.lost), (0, r.sent));
    let reason = r.first_reply.missing_reason().expect("never reachable");
    assert!(reason.contains("no echo reply"), "{reason}");
    assert!(!r.sustained.is_observed() && !r.rtt.is_observed());
    assert!(!r.loss_derived_convergence.is_observed());
    assert_eq!(r.loss_ratio.observed(), Some(&1.0));

    let r = &snapshot.targets[&addr(no_route)];
    assert_eq!((r.replied, r.lost), (0, r.sent));
    let reason = r.first_reply.missing_reason().expect("never reachable");
    assert!(reason.contains("unreachable"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root, FRR and iproute2; ci/test.sh runs it (cargo test -- --include-ignored)"]
async fn rate_changes_take_effect_while_running() {
    let pair = NetnsPair::new("rate");
    let slowing = "198.19.0.20";
    pair.add_far_address(slowing);
    let clock = RunClock::start();
    let prober = IcmpProber::start(clock, config(&pair, 200, 20)).expect("start prober");
    prober.add_target(spec(FAR, 20)).expect("add");
    let mut auto = spec(slowing, 500);
    auto.rate_after_sustained = Some(rate(5));
    prober.add_target(auto).expect("add");
    tokio::time::sleep(Duration::from_millis(500)).await;

    let before = prober.snapshot();
    let sent_before = before.targets[&addr(FAR)].sent;
    assert!(sent_before <= 30, "20/s for 0.5 s sent {sent_before}");
    prober.set_rate(addr(FAR), rate(500)).expect("set rate");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = prober.finish().await;
    let r = &after.targets[&addr(FAR)];
    assert_eq!(r.rate_per_s, 500);
    let delta = r.sent - sent_before;
    // 500/s for 0.5 s is 250; the old rate would have sent about 10.
    assert!(delta >= 100, "sent {delta} after the change");

    let r = &after.targets[&addr(slowing)];
    assert_eq!(r.rate_per_s, 5, "slowed down after sustained reachability");
    assert!(r.sustained.is_observed());
    // At 500/s for the whole second it would have sent ~500.
    assert!(r.sent < 100, "sent {}", r.sent);
    assert!(r.sent >= 20);
    assert!(matches!(
        prober_errors(),
        Some(vmbgp_probe::ProbeError::InvalidRate { per_second: 0 })
    ));
}

fn prober_errors() -> Option<vmbgp_probe::ProbeError> {
    ProbeRate::per_second(0).err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root, FRR and iproute2; ci/test.sh runs it (cargo test -- --include-ignored)"]
async fn icmp_errors_from_a_router_are_the_reason() {
    let pair = NetnsPair::new("icmperr");
    // The far side forwards but has no route to 198.19.0.0/16 except its own addresses: it
    // answers probes to an unknown VM address with ICMP "network unreachable".
    pair.sysctl(&pair.far, "net.ipv4.ip_forward=1");
    let unknown = "198.19.7.7";
    let clock = RunClock::start();
    let prober = IcmpProber::start(clock, config(&pair, 100, 10)).expect("start prober");
    prober.add_target(spec(unknown, 100)).expect("add");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let snapshot = prober.finish().await;
    let r = &snapshot.targets[&addr(unknown)];
    assert_eq!(r.replied, 0);
    assert!(r.icmp_errors >= 1, "{r:?}");
    let reason = r.first_reply.missing_reason().expect("never reachable");
    assert!(
        reason.contains("ICMP network unreachable from 198.18.200.2"),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root, FRR and iproute2; ci/test.sh runs it (cargo test -- --include-ignored)"]
async fn unprivileged_dgram_socket_works_where_ping_group_range_allows_it() {
    let pair = NetnsPair::new("dgram");
    // A fresh netns disables ping sockets even for root; this namespace is the test's own.
    pair.sysctl(&pair.near, "net.ipv4.ping_group_range=0 2147483647");
    let clock = RunClock::start();
    let mut cfg = config(&pair, 200, 5);
    cfg.socket = vmbgp_probe::icmp::SocketChoice::Dgram;
    let prober = IcmpProber::start(clock, cfg).expect("start prober");
    assert_eq!(prober.socket_kind(), SocketKind::Dgram);
    prober.add_target(spec(FAR, 200)).expect("add");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let snapshot = prober.finish().await;
    let r = &snapshot.targets[&addr(FAR)];
    assert!(r.sent >= 20, "sent {}", r.sent);
    assert_eq!((r.replied, r.lost), (r.sent, 0), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root, FRR and iproute2; ci/test.sh runs it (cargo test -- --include-ignored)"]
async fn dgram_is_refused_in_a_fresh_namespace_with_a_clear_error() {
    let pair = NetnsPair::new("dgramno");
    let mut cfg = config(&pair, 200, 5);
    cfg.socket = vmbgp_probe::icmp::SocketChoice::Dgram;
    let err = IcmpProber::start(RunClock::start(), cfg).expect_err("ping sockets are disabled");
    let text = err.to_string();
    assert!(text.contains("ping_group_range"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root, FRR and iproute2; ci/test.sh runs it (cargo test -- --include-ignored)"]
async fn many_targets_share_one_socket_without_mixing_replies() {
    let pair = NetnsPair::new("many");
    let count = 200u32;
    let addrs: Vec<String> = (0..count)
        .map(|i| format!("198.19.{}.{}", 2 + i / 250, 1 + i % 250))
        .collect();
    for a in &addrs {
        pair.add_far_address(a);
    }
    let clock = RunClock::start();
    let prober = IcmpProber::start(clock, config(&pair, 500, 5)).expect("start prober");
    for a in &addrs {
        prober.add_target(spec(a, 50)).expect("add");
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    let progress = prober.progress();
    assert_eq!(progress.targets, addrs.len());
    assert_eq!(progress.answered, addrs.len(), "{progress:?}");
    let one = prober.target_report(addr(&addrs[0])).expect("one report");
    assert!(one.replied > 0);
    let snapshot = prober.finish().await;
    assert_eq!(snapshot.targets.len(), addrs.len());
    assert_eq!(snapshot.stats.mismatched_replies, 0);
    for (target, r) in &snapshot.targets {
        assert!(r.sent >= 5, "{target}: sent {}", r.sent);
        assert_eq!(r.replied + r.lost, r.sent, "{target}: {r:?}");
        assert!(r.first_reply.is_observed(), "{target}: {r:?}");
    }
    let total: u64 = snapshot.targets.values().map(|r| r.replied).sum();
    assert_eq!(snapshot.merged_rtt().map(|h| h.len()), Some(total));
}

#[test]
fn the_prober_can_be_shared_between_tasks() {
    fn shareable<T: Send + Sync>() {}
    shareable::<IcmpProber>();
    shareable::<vmbgp_probe::egress::EgressEndpoint>();
}
