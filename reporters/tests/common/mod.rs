//! Shared test fixtures: a deterministic two-iteration run with every measurement kind (including
//! missing and not-applicable values) and an Elasticsearch-compatible test server.
#![allow(dead_code)]
// Test-support code: a failed setup step should abort the test loudly.
#![allow(clippy::unwrap_used)]

pub mod es_server;
pub mod profiles;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use vmbgp_reporters::measured::{Measured, Timing};
use vmbgp_reporters::quantiles::new_nanos_histogram;
use vmbgp_reporters::recorder::{RunEnd, RunRecorder, RunResults};
use vmbgp_reporters::redact::Redactor;
use vmbgp_reporters::samples::*;
use vmbgp_reporters::thresholds::default_thresholds;

pub const UUID: &str = "5a0c3b9e-2f8e-4d1a-9e57-0f3c2a7d9b11";
pub const CANARY: &str = "CANARY-pw-7d1f";

pub fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 8, 20, 10, 2, 11).unwrap() + chrono::Duration::microseconds(482_913)
}

pub fn run_description(uuid: &str, es_server: &str) -> RunDescription {
    let mut flags = BTreeMap::new();
    flags.insert("iterations".to_owned(), "2".to_owned());
    flags.insert("vm-count".to_owned(), "2".to_owned());
    flags.insert("es-server".to_owned(), es_server.to_owned());
    RunDescription {
        uuid: uuid.to_owned(),
        job_name: "vm-bgp".to_owned(),
        job_iterations: 2,
        job_config: serde_json::json!({
            "name": "vm-bgp", "jobType": "create", "qps": 20, "burst": 20,
            "maxWaitTimeout": 14_400_000_000_000u64, "network": "per-iteration",
            "esServer": es_server
        }),
        start: start(),
        version: "0.1.0@d21840e".to_owned(),
        workload_flags: flags,
        cluster: ClusterMetadata {
            k8s_version: "v1.33.5".to_owned(),
            kubevirt_version: Measured::Observed("v1.6.0".to_owned()),
            total_nodes: 3,
            frr_version: Measured::missing("no BMP Initiation message received"),
            mode: AdvertisementMode::Subnet,
        },
        measurements: MeasurementKind::ALL.to_vec(),
    }
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn t(millis: u64, micros: u64) -> Measured<Timing> {
    Measured::Observed(Timing::new(
        Duration::from_micros(millis * 1000 + micros),
        Duration::from_micros(1),
    ))
}

fn vm(iteration: u64, replica: u64) -> VmIdentity {
    VmIdentity {
        namespace: format!("vm-bgp-{iteration}"),
        vm_name: format!("vm-{iteration}-{replica}"),
        job_iteration: iteration,
        replica,
    }
}

/// Samples of one iteration; deterministic in `iteration`.
pub fn iteration_samples(iteration: u64) -> Samples {
    let base = 1_000 + iteration * 20_000;
    let t0 = |offset: u64| StartInstant {
        offset: ms(base + offset),
        uncertainty: Duration::from_micros(850),
    };
    let mut samples = Samples::default();
    for replica in 1..=2u64 {
        let k = iteration * 2 + replica;
        let mut harness = BTreeMap::new();
        harness.insert(VmPhase::VmiCreated, t(40 + k, 120));
        harness.insert(VmPhase::VmiPending, t(60 + k, 5));
        harness.insert(VmPhase::VmiScheduling, t(300 + 10 * k, 0));
        harness.insert(VmPhase::VmiScheduled, t(900 + 30 * k, 321));
        harness.insert(VmPhase::VmiRunning, t(2_000 + 100 * k, 77));
        harness.insert(
            VmPhase::VmReady,
            if iteration == 1 && replica == 2 {
                Measured::missing("VM Ready condition not seen within 600 s")
            } else {
                t(2_400 + 120 * k, 901)
            },
        );
        for phase in [
            VmPhase::PodCreated,
            VmPhase::PodScheduled,
            VmPhase::PodInitialized,
            VmPhase::PodContainersReady,
            VmPhase::PodReady,
            VmPhase::PodReadyToStartContainers,
        ] {
            harness.insert(
                phase,
                Measured::not_applicable("the lab runs no virt-launcher pods"),
            );
        }
        harness.insert(VmPhase::IpamClaimIpsAllocated, t(20 + k, 444));
        harness.insert(VmPhase::IpVisible, t(2_600 + 90 * k, 10));
        let mut server = BTreeMap::new();
        server.insert(
            VmPhase::VmiRunning,
            Measured::Observed(Timing::from_signed_nanos(
                (2 + (k % 2) as i64) * 1_000_000_000,
                Duration::from_secs(1),
            )),
        );
        samples.vm_latency.push(VmLatencySample {
            vm: vm(iteration, replica),
            vmi_name: Some(format!("vm-{iteration}-{replica}")),
            pod_name: None,
            node_name: Some(format!("node-{}", 1 + k % 3)),
            t0: t0(replica * 5),
            harness,
            server,
            claim_release: Measured::not_applicable(
                "VMs are deleted only at cleanup, after measuring (only churn runs delete VMs while measuring)",
            ),
        });
        let mut rtt = new_nanos_histogram();
        for i in 0..200u64 {
            rtt.record(150_000 + (i * 7_919 + k * 1_000) % 400_000)
                .unwrap();
        }
        let unreachable = iteration == 1 && replica == 2;
        samples.reachability.push(ReachabilitySample {
            vm: vm(iteration, replica),
            address: format!("198.19.{iteration}.{}", 10 + replica),
            t0: t0(replica * 5),
            first_reply: if unreachable {
                Measured::missing("no echo reply within 600 s")
            } else {
                t(2_700 + 95 * k, 250)
            },
            sustained_reachability: if unreachable {
                Measured::missing("never reachable")
            } else {
                t(2_900 + 95 * k, 0)
            },
            loss_derived_convergence: if unreachable {
                Measured::missing("never reachable")
            } else {
                Measured::Observed(Timing::new(ms(30 + 10 * k), ms(10)))
            },
            rtt_nanos: if unreachable {
                Measured::missing("no echo reply")
            } else {
                Measured::Observed(rtt)
            },
            probes_sent: 3_000,
            probes_received: if unreachable { 0 } else { 2_997 - k },
            probe_interval: ms(10),
        });
        samples.egress.push(EgressSample {
            vm: vm(iteration, replica),
            t0: t0(replica * 5 + 4_000),
            vm_address: format!("198.19.{iteration}.{}", 10 + replica),
            source_address_seen: if unreachable {
                Measured::missing("no connection reached the echo endpoint")
            } else {
                Measured::Observed(format!("198.19.{iteration}.{}", 10 + replica))
            },
        });
    }
    samples.route_convergence.push(RouteConvergenceSample {
        network: format!("vmbgp-{iteration}"),
        prefix: format!("198.19.{iteration}.0/24"),
        scope: RouteScope::Network,
        job_iteration: iteration,
        t0: t0(0),
        advertise_adj_rib_in: t(180 + 40 * iteration, 321),
        advertise_fib: t(230 + 40 * iteration, 12),
        advertise_all_next_hops: t(410 + 60 * iteration, 999),
        expected_next_hops: 3,
        observed_next_hops: Measured::Observed(3),
        withdraw_adj_rib_in: Measured::not_applicable(
            "networks are kept until cleanup in the vm-bgp profile",
        ),
        withdraw_fib: Measured::not_applicable(
            "networks are kept until cleanup in the vm-bgp profile",
        ),
        stale_route_window: Measured::not_applicable(
            "networks are kept until cleanup in the vm-bgp profile",
        ),
        communities: Measured::not_applicable(
            "the policy check (community, local-pref) covers the per-VM /32 host routes",
        ),
        local_pref: Measured::not_applicable(
            "the policy check (community, local-pref) covers the per-VM /32 host routes",
        ),
    });
    samples.throughput.push(ThroughputSample {
        vm: vm(iteration, 1),
        t0: t0(6_000),
        goodput_bits_per_second: Measured::Observed(9.41e9 - iteration as f64 * 1.3e8),
        retransmits: Measured::Observed(12 + iteration),
        duration: Measured::Observed(Timing::new(ms(10_000), Duration::from_micros(1))),
    });
    samples.migrations.push(MigrationSample {
        vm: vm(iteration, 1),
        migration_index: 0,
        source_node: Some("node-1".to_owned()),
        target_node: Some("node-2".to_owned()),
        t0: t0(8_000),
        loss_period: Measured::Observed(Timing::new(ms(14 + iteration), ms(1))),
        longest_gap: Measured::Observed(Timing::new(ms(9 + iteration), ms(1))),
        reachable_after_switchover: t(21 + iteration, 500),
        next_hop_follow: Measured::not_applicable(
            "the subnet route does not follow VMs (subnet mode)",
        ),
        tcp_survived: Measured::Observed(true),
        tcp_longest_stall: Measured::Observed(Timing::new(ms(190 + iteration), ms(10))),
    });
    samples
}

/// The BGP session samples, handed over at the end of the run.
pub fn session_samples() -> Samples {
    let mut samples = Samples::default();
    for node in 1..=3u64 {
        let mut changes = Vec::new();
        let mut uptime = 100.0;
        if node == 2 {
            changes.push(SessionStateChange {
                offset: ms(12_000),
                from: "Established".to_owned(),
                to: "Idle".to_owned(),
            });
            changes.push(SessionStateChange {
                offset: ms(12_900),
                from: "Idle".to_owned(),
                to: "Established".to_owned(),
            });
            uptime = 97.885;
        }
        samples.bgp_sessions.push(BgpSessionSample {
            peer_address: format!("198.18.0.{node}"),
            peer_as: Some(64513),
            initial_state: "Established".to_owned(),
            state_changes: changes,
            observed_from: ms(0),
            observed_until: ms(42_600),
            uptime_percent: Measured::Observed(uptime),
            prefixes_received: Measured::Observed(2),
        });
    }
    samples
}

pub fn run_end() -> RunEnd {
    RunEnd {
        end: start() + chrono::Duration::milliseconds(42_600),
        elapsed: ms(42_600),
        execution_errors: Vec::new(),
        cut_short: None,
    }
}

/// The whole fixture run written into `root/<uuid>/` with the default thresholds.
pub fn write_fixture_run(
    root: &Path,
    uuid: &str,
    es_server: &str,
    redactor: Redactor,
) -> RunResults {
    let mut recorder =
        RunRecorder::start(root, run_description(uuid, es_server), redactor).unwrap();
    recorder.record(&iteration_samples(0)).unwrap();
    recorder.record(&iteration_samples(1)).unwrap();
    recorder.record(&session_samples()).unwrap();
    recorder.finish(&run_end(), &default_thresholds()).unwrap()
}
