//! A nightly-scale run (72 iterations × 10 VMs, subnet mode) generated deterministically: the one
//! sample generator the HTML report's browser test (`tests/report_browser.rs`) and the reporters'
//! benchmark (`examples/bench_reporters.rs`) both use, so the report is checked at the scale it is
//! measured at. Both include this file by path (`#[path]`): generated test data stays out of the
//! library and of every build of the harness.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use vmbgp_reporters::measured::{Measured, Timing};
use vmbgp_reporters::quantiles::new_nanos_histogram;
use vmbgp_reporters::samples::*;

pub const ITERATIONS: u64 = 72;
pub const VMS: u64 = 10;

/// Each VM's ICMP probing: how many probes its reachability sample reports, and how many RTTs
/// go into its histogram (a debug-build test records few, the benchmark as many as were sent).
#[derive(Debug, Clone, Copy)]
pub struct Probes {
    pub sent: u64,
    pub rtts_recorded: u64,
}

/// The run as the harness would describe it, every measurement kind enabled.
pub fn run_description(start: DateTime<Utc>) -> RunDescription {
    RunDescription {
        uuid: "nightly-72x10".to_owned(),
        job_name: "vm-bgp".to_owned(),
        job_iterations: ITERATIONS,
        job_config: serde_json::json!({"name": "vm-bgp", "jobIterations": ITERATIONS}),
        start,
        version: "0.1.0@test".to_owned(),
        workload_flags: BTreeMap::new(),
        cluster: ClusterMetadata {
            k8s_version: "v1.33.5".to_owned(),
            kubevirt_version: Measured::Observed("v1.6.0".to_owned()),
            total_nodes: 27,
            frr_version: Measured::Observed("10.3".to_owned()),
            mode: AdvertisementMode::Subnet,
        },
        measurements: MeasurementKind::ALL.to_vec(),
    }
}

fn timing(millis: u64, salt: u64) -> Measured<Timing> {
    Measured::Observed(Timing::new(
        Duration::from_micros(millis * 1000 + salt % 997),
        Duration::from_micros(1),
    ))
}

/// One iteration of a subnet-mode run: no virt-launcher pods (pod phases not applicable), a VM
/// not Ready every 9th iteration, one unreachable VM every 12th, goodput in the 18 Gbit/s range.
pub fn iteration_samples(iteration: u64, probes: Probes) -> Samples {
    let mut s = Samples::default();
    let t0 = StartInstant {
        offset: Duration::from_secs(iteration * 30),
        uncertainty: Duration::from_micros(800),
    };
    for replica in 0..VMS {
        let k = iteration * VMS + replica;
        let vm = VmIdentity {
            namespace: format!("vm-bgp-{iteration}"),
            vm_name: format!("vm-{iteration}-{replica}"),
            job_iteration: iteration,
            replica,
        };
        let harness: BTreeMap<_, _> = VmPhase::ALL
            .iter()
            .enumerate()
            .map(|(i, phase)| {
                let pod = matches!(
                    phase,
                    VmPhase::PodCreated
                        | VmPhase::PodScheduled
                        | VmPhase::PodInitialized
                        | VmPhase::PodContainersReady
                        | VmPhase::PodReady
                        | VmPhase::PodReadyToStartContainers
                );
                let value = if pod {
                    Measured::not_applicable("the lab runs no virt-launcher pods")
                } else if *phase == VmPhase::VmReady && replica == 7 && iteration.is_multiple_of(9)
                {
                    Measured::missing("VM Ready condition not seen within 600 s")
                } else {
                    // Readiness drifts up over the run, with a spread inside each iteration.
                    timing(
                        100 * i as u64 + iteration * 10 + (k * 37) % 400,
                        k + i as u64,
                    )
                };
                (*phase, value)
            })
            .collect();
        s.vm_latency.push(VmLatencySample {
            vm: vm.clone(),
            vmi_name: Some(vm.vm_name.clone()),
            pod_name: None,
            node_name: Some(format!("worker-{}", k % 24)),
            t0,
            harness,
            server: BTreeMap::new(),
            claim_release: Measured::not_applicable(
                "VMs are deleted only at cleanup, after measuring",
            ),
        });
        let unreachable = replica == 3 && iteration.is_multiple_of(12);
        let mut rtt = new_nanos_histogram();
        for i in 0..probes.rtts_recorded {
            // Cannot fail: the histogram auto-resizes.
            let _ = rtt.record(120_000 + (i * 7_919 + k * 13) % 900_000);
        }
        s.reachability.push(ReachabilitySample {
            vm: vm.clone(),
            address: format!("198.19.{iteration}.{}", replica + 10),
            t0,
            first_reply: if unreachable {
                Measured::missing("no echo reply within 600 s")
            } else {
                timing(2_500 + iteration * 8 + (k * 53) % 700, k)
            },
            sustained_reachability: if unreachable {
                Measured::missing("never reachable")
            } else {
                timing(2_800 + iteration * 8 + (k * 53) % 700, k)
            },
            loss_derived_convergence: timing(40 + k % 30, k),
            rtt_nanos: if unreachable {
                Measured::missing("no echo reply")
            } else {
                Measured::Observed(rtt)
            },
            probes_sent: probes.sent,
            probes_received: if unreachable { 0 } else { probes.sent - k % 3 },
            probe_interval: Duration::from_millis(10),
        });
        s.egress.push(EgressSample {
            vm: vm.clone(),
            t0,
            vm_address: format!("198.19.{iteration}.{}", replica + 10),
            source_address_seen: if unreachable {
                Measured::missing("no connection reached the echo endpoint")
            } else {
                Measured::Observed(format!("198.19.{iteration}.{}", replica + 10))
            },
        });
        if replica == 0 {
            s.throughput.push(ThroughputSample {
                vm: vm.clone(),
                t0,
                goodput_bits_per_second: Measured::Observed(18_596_235_637.057 - k as f64),
                retransmits: Measured::Observed(k % 20),
                duration: timing(10_000, k),
            });
        }
    }
    s.route_convergence.push(RouteConvergenceSample {
        network: format!("vmbgp-{iteration}"),
        prefix: format!("198.19.{iteration}.0/24"),
        scope: RouteScope::Network,
        job_iteration: iteration,
        t0,
        advertise_adj_rib_in: timing(150 + iteration, iteration),
        advertise_fib: timing(210 + iteration * 3, iteration),
        advertise_all_next_hops: timing(400 + iteration * 4, iteration),
        expected_next_hops: 24,
        observed_next_hops: Measured::Observed(24),
        withdraw_adj_rib_in: Measured::not_applicable("networks are kept until cleanup"),
        withdraw_fib: Measured::not_applicable("networks are kept until cleanup"),
        stale_route_window: Measured::not_applicable("networks are kept until cleanup"),
        communities: Measured::not_applicable(
            "the policy check (community, local-pref) covers the per-VM /32 host routes",
        ),
        local_pref: Measured::not_applicable(
            "the policy check (community, local-pref) covers the per-VM /32 host routes",
        ),
    });
    s
}
