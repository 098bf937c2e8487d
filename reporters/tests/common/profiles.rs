//! The documents of one run of every profile shape (`profiles/*.yaml`: vm-bgp scale, vm-bgp-churn,
//! vm-bgp-migration; the lab's lifecycle-only fixture; a host-routes run; a run interrupted before
//! any sample), built with the crate's builders from realistic samples: observed, missing and
//! not-applicable values of every measurement kind, every quantile document, the provisional and
//! the final `jobSummary`. `jobConfig` has the shape of the harness's serialized plan.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Value, json};
use vmbgp_reporters::document::Document;
use vmbgp_reporters::document_builder::{DocumentBuilder, JobStatus, job_summary};
use vmbgp_reporters::measured::{Measured, Timing};
use vmbgp_reporters::quantiles::new_nanos_histogram;
use vmbgp_reporters::samples::*;

/// A reason as the harness writes it from a client error: dots, a URL, a final period.
pub const DOTTED_REASON: &str = "the VM create request failed: error sending request for url (https://198.18.0.1:6443/apis/kubevirt.io/v1/namespaces/vmbgp-1/virtualmachines): connection refused.";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Scale,
    Churn,
    Migration,
    LifecycleOnly,
    /// Scale in host-routes mode: per-VM /32 convergence, next hops that follow migrations.
    HostRoutes,
    /// Killed after the provisional summary: every quantile group without a sample.
    Interrupted,
}

impl Shape {
    pub const ALL: [Shape; 6] = [
        Shape::Scale,
        Shape::Churn,
        Shape::Migration,
        Shape::LifecycleOnly,
        Shape::HostRoutes,
        Shape::Interrupted,
    ];

    fn profile(self) -> &'static str {
        match self {
            Shape::Scale | Shape::HostRoutes | Shape::Interrupted => "vm-bgp",
            Shape::Churn => "vm-bgp-churn",
            Shape::Migration => "vm-bgp-migration",
            Shape::LifecycleOnly => "lifecycle-only",
        }
    }
}

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 9, 1, 8, 0, 0).unwrap() + chrono::Duration::microseconds(120_007)
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn t(micros: u64) -> Measured<Timing> {
    Measured::Observed(Timing::new(
        Duration::from_micros(micros),
        Duration::from_micros(1),
    ))
}

fn coarse(millis: u64, resolution_ms: u64) -> Measured<Timing> {
    Measured::Observed(Timing::new(ms(millis), ms(resolution_ms)))
}

/// The harness's plan, serialized as `serde_json::to_value(plan)` writes it (snake_case keys).
fn plan(shape: Shape, uuid: &str, iterations: u64, vm_count: u64) -> Value {
    let shared = matches!(shape, Shape::Churn | Shape::Migration);
    let networks: Vec<Value> = if shared {
        vec![
            json!({"name": "vmbgp", "namespace": "vmbgp", "iteration": 0,
            "subnet": "198.19.100.0/24", "gateway": "198.19.100.1",
            "reserved_subnets": ["198.19.100.10/31", "198.19.100.12/30"]}),
        ]
    } else {
        (1..=iterations)
            .map(|i| {
                json!({"name": format!("vmbgp-{i}"), "namespace": format!("vmbgp-{i}"),
                "iteration": i, "subnet": format!("198.19.{i}.0/24"),
                "gateway": format!("198.19.{i}.1"), "reserved_subnets": []})
            })
            .collect()
    };
    let vms: Vec<Value> = (1..=iterations)
        .flat_map(|i| (1..=vm_count).map(move |r| (i, r)))
        .map(|(i, r)| {
            json!({"name": format!("vmbgp-{i}-{r}"), "namespace": if shared { "vmbgp".to_owned() } else { format!("vmbgp-{i}") },
                "network": if shared { "vmbgp".to_owned() } else { format!("vmbgp-{i}") },
                "iteration": i, "replica": r,
                "static_ip": if r == 1 { Value::Null } else { json!(format!("198.19.{i}.{}", 9 + r)) }})
        })
        .collect();
    let neighbors = if shared {
        json!({"kind": "listen_range", "value": "198.18.0.0/24"})
    } else {
        json!({"kind": "explicit", "value": ["198.18.0.1", "198.18.0.2", "198.18.0.3"]})
    };
    json!({
        "profile": shape.profile(),
        "description": "Scale run; one advertised Layer2 CUDN and vmCount VMs per iteration, accumulating.",
        "job_name": shape.profile(),
        "uuid": uuid,
        "shape": match shape { Shape::Churn => "churn", Shape::Migration => "migration", _ => "scale" },
        "iterations": iterations,
        "vm_count": vm_count,
        "qps": 20,
        "burst": 20,
        "timeout": "4h",
        "gc": true,
        "indexing": {
            "es": if shape == Shape::LifecycleOnly { Value::Null } else {
                json!({"server": "https://elastic:REDACTED@es.example:9200/", "index": "ripsaw-kube-burner-vm-bgp"})
            },
            "local_indexing": true,
            "results_dir": "results"
        },
        "kubeconfig": if shape == Shape::LifecycleOnly { json!("/tmp/lab/kubeconfig") } else { Value::Null },
        "context": Value::Null,
        "layout": if shared { "shared" } else { "per-iteration" },
        "networks": networks,
        "vms": vms,
        "vm_template": {"image": "quay.io/containerdisks/fedora:41", "memory": "1Gi", "cores": 1,
            "http_port": 8080, "sink_port": 5201},
        "bgp": {"peer_ip": "198.18.0.155", "peer_asn": 64512, "cluster_asn": 64513,
            "frr_namespace": "openshift-frr-k8s", "neighbors": neighbors, "keepalive_secs": 3,
            "hold_secs": 9, "bmp": {"address": "127.0.0.1", "port": 5000},
            "host_routes": shape == Shape::HostRoutes},
        "probes": {"converging_rate": 100, "steady_rate": 10, "migration_rate": 1000,
            "throughput_vms": if shape == Shape::Migration { 0 } else { 1 },
            "throughput_iterations": if shape == Shape::Migration { json!([]) } else { json!([0, 1, 2]) },
            "throughput_duration": "5s", "egress_endpoint": "198.18.0.155:8090"},
        "thresholds": [
            {"metric": "routeConvergence", "quantile": "AdvertiseFib", "stat": "P99", "bound": {"max_duration": "5s"}},
            {"metric": "bgpSession", "quantile": "UptimePercent", "stat": "min", "bound": {"min_percent": 99.0}},
            {"metric": "vmReachability", "quantile": "FirstReply", "stat": "missingCount", "bound": {"max_number": 0.0}}
        ],
        "peak_live_vms": iterations * vm_count
    })
}

/// The flags given on the command line, as the harness records them (camelCase, strings).
fn workload_flags(shape: Shape, iterations: u64, vm_count: u64) -> BTreeMap<String, String> {
    let mut flags = BTreeMap::new();
    flags.insert("profile".to_owned(), shape.profile().to_owned());
    flags.insert("iterations".to_owned(), iterations.to_string());
    flags.insert("vmCount".to_owned(), vm_count.to_string());
    flags.insert("gc".to_owned(), "true".to_owned());
    if shape != Shape::LifecycleOnly {
        flags.insert("esIndex".to_owned(), "ripsaw-kube-burner-vm-bgp".to_owned());
        flags.insert("peerAsn".to_owned(), "64512".to_owned());
    }
    flags
}

fn measurements(shape: Shape) -> Vec<MeasurementKind> {
    use MeasurementKind as K;
    match shape {
        Shape::LifecycleOnly => vec![K::VmLatency],
        Shape::Migration => vec![
            K::VmLatency,
            K::RouteConvergence,
            K::BgpSession,
            K::VmReachability,
            K::VmMigration,
            K::VmEgress,
        ],
        Shape::HostRoutes => MeasurementKind::ALL.to_vec(),
        Shape::Scale | Shape::Churn | Shape::Interrupted => vec![
            K::VmLatency,
            K::RouteConvergence,
            K::BgpSession,
            K::VmReachability,
            K::VmThroughput,
            K::VmEgress,
        ],
    }
}

pub fn run_description(shape: Shape, uuid: &str) -> RunDescription {
    let (iterations, vm_count) = match shape {
        Shape::Migration => (3, 4),
        Shape::LifecycleOnly => (1, 2),
        _ => (3, 3),
    };
    RunDescription {
        uuid: uuid.to_owned(),
        job_name: shape.profile().to_owned(),
        job_iterations: iterations,
        job_config: plan(shape, uuid, iterations, vm_count),
        start: start(),
        version: "0.1.0@eec96d7".to_owned(),
        workload_flags: workload_flags(shape, iterations, vm_count),
        cluster: ClusterMetadata {
            k8s_version: "v1.33.5".to_owned(),
            kubevirt_version: if shape == Shape::LifecycleOnly {
                Measured::missing("no KubeVirt custom resource reports observedKubeVirtVersion")
            } else {
                Measured::Observed("v1.6.0".to_owned())
            },
            total_nodes: 3,
            frr_version: if shape == Shape::HostRoutes {
                Measured::Observed("FRRouting 10.3.1".to_owned())
            } else {
                Measured::missing(
                    "read from the BMP Initiation message, which this version does not collect yet",
                )
            },
            mode: if shape == Shape::HostRoutes {
                AdvertisementMode::HostRoutes
            } else {
                AdvertisementMode::Subnet
            },
        },
        measurements: measurements(shape),
    }
}

fn vm(shape: Shape, iteration: u64, replica: u64) -> VmIdentity {
    let shared = matches!(shape, Shape::Churn | Shape::Migration);
    VmIdentity {
        namespace: if shared {
            "vmbgp".to_owned()
        } else {
            format!("vmbgp-{iteration}")
        },
        vm_name: format!("vmbgp-{iteration}-{replica}"),
        job_iteration: iteration,
        replica,
    }
}

fn rtt(seed: u64) -> hdrhistogram::Histogram<u64> {
    let mut histogram = new_nanos_histogram();
    for i in 0..300u64 {
        histogram
            .record(120_000 + (i * 7_919 + seed * 1_000) % 900_000)
            .unwrap();
    }
    histogram
}

/// One iteration's samples. Replica 3 of iteration 1 never came up (every value missing, with a
/// dotted reason); the lab has no virt-launcher pods.
fn iteration(shape: Shape, iteration: u64, vms: u64) -> Samples {
    let base = 2_000 + iteration * 30_000;
    let t0 = |offset: u64| StartInstant {
        offset: ms(base + offset),
        uncertainty: Duration::from_micros(640 + offset % 7),
    };
    let host_routes = shape == Shape::HostRoutes;
    let mut samples = Samples::default();
    // A migration run creates its VMs once; later iterations only migrate them.
    let creates = if shape == Shape::Migration && iteration > 0 {
        0
    } else {
        vms
    };
    for replica in 1..=creates {
        let k = iteration * 10 + replica;
        let failed = iteration == 1 && replica == 3;
        let mut harness = BTreeMap::new();
        for (n, phase) in VmPhase::ALL.iter().enumerate() {
            let value = if failed {
                Measured::missing(DOTTED_REASON)
            } else if shape == Shape::LifecycleOnly && phase.field_name().starts_with("pod") {
                Measured::not_applicable("the lab runs no virt-launcher pods")
            } else if host_routes && *phase == VmPhase::PodReadyToStartContainers {
                Measured::missing("the pod never reported PodReadyToStartContainers")
            } else {
                t(40_000 + 150_000 * n as u64 + 1_013 * k)
            };
            harness.insert(*phase, value);
        }
        let mut server = BTreeMap::new();
        server.insert(
            VmPhase::VmiRunning,
            Measured::Observed(Timing::from_signed_nanos(
                (k as i64 % 3 - 1) * 1_000_000_000,
                Duration::from_secs(1),
            )),
        );
        server.insert(
            VmPhase::PodScheduled,
            if failed {
                Measured::missing("the API server reported no timestamp for this phase")
            } else {
                Measured::Observed(Timing::from_signed_nanos(
                    2_000_000_000,
                    Duration::from_secs(1),
                ))
            },
        );
        let vm_id = vm(shape, iteration, replica);
        samples.vm_latency.push(VmLatencySample {
            vm: vm_id.clone(),
            vmi_name: Some(vm_id.vm_name.clone()),
            pod_name: (!failed).then(|| format!("virt-launcher-{}-x7k2p", vm_id.vm_name)),
            node_name: (!failed).then(|| format!("worker-{}", k % 3)),
            t0: t0(replica * 50),
            harness,
            server,
            claim_release: match shape {
                Shape::Churn if failed => Measured::missing("no IPAMClaim of this VM was observed"),
                Shape::Churn => Measured::Observed(Timing::new(
                    Duration::from_micros(35_000 + 1_000 * k),
                    Duration::from_micros(900),
                )),
                _ => Measured::not_applicable(
                    "VMs are deleted only at cleanup, after measuring (only churn runs delete VMs while measuring)",
                ),
            },
        });
        if shape == Shape::LifecycleOnly {
            continue;
        }
        let address = format!("198.19.{iteration}.{}", 9 + replica);
        samples.reachability.push(ReachabilitySample {
            vm: vm_id.clone(),
            address: address.clone(),
            t0: t0(replica * 50),
            first_reply: if failed {
                Measured::missing(DOTTED_REASON)
            } else {
                coarse(2_900 + 40 * k, 10)
            },
            sustained_reachability: if failed {
                Measured::missing("never reachable")
            } else {
                coarse(3_100 + 40 * k, 10)
            },
            loss_derived_convergence: if failed {
                Measured::missing("never reachable")
            } else if replica == 2 {
                Measured::not_applicable("no loss window: the VM answered from its first probe")
            } else {
                coarse(20 * replica, 10)
            },
            rtt_nanos: if failed {
                Measured::missing("no echo reply")
            } else if replica == 2 && iteration == 0 {
                // Observed but empty: reported as missing, not as 0.
                Measured::Observed(new_nanos_histogram())
            } else {
                Measured::Observed(rtt(k))
            },
            probes_sent: if failed { 0 } else { 6_000 },
            probes_received: if failed { 0 } else { 5_990 - k },
            probe_interval: ms(10),
        });
        samples.egress.push(EgressSample {
            vm: vm_id.clone(),
            t0: t0(replica * 50 + 9_000),
            vm_address: address.clone(),
            source_address_seen: if failed {
                Measured::missing("the VM's address was never seen, so there is nothing to compare")
            } else if replica == 2 {
                // Masqueraded: the node's address arrives instead.
                Measured::Observed("198.18.0.2".to_owned())
            } else {
                Measured::Observed(address.clone())
            },
        });
        if shape != Shape::Migration && replica == 1 {
            samples.throughput.push(ThroughputSample {
                vm: vm_id.clone(),
                t0: t0(12_000),
                goodput_bits_per_second: if iteration == 2 {
                    Measured::missing("the TCP stream could not connect: connection timed out")
                } else {
                    Measured::Observed(9.41e9 - iteration as f64 * 1.3e8)
                },
                retransmits: if iteration == 2 {
                    Measured::missing("the TCP stream could not connect: connection timed out")
                } else {
                    Measured::Observed(iteration * 7)
                },
                duration: if iteration == 2 {
                    Measured::missing("the TCP stream could not connect: connection timed out")
                } else {
                    Measured::Observed(Timing::new(ms(5_000), ms(100)))
                },
            });
        }
        if host_routes {
            samples.route_convergence.push(RouteConvergenceSample {
                network: format!("vmbgp-{iteration}"),
                prefix: format!("{address}/32"),
                scope: RouteScope::HostRoute {
                    vm_name: vm_id.vm_name.clone(),
                },
                job_iteration: iteration,
                t0: t0(replica * 50),
                advertise_adj_rib_in: if failed {
                    Measured::missing(DOTTED_REASON)
                } else {
                    t(2_500_000 + 1_000 * k)
                },
                advertise_fib: if failed {
                    Measured::missing("the route never reached the FIB")
                } else {
                    t(2_530_000 + 1_000 * k)
                },
                advertise_all_next_hops: if failed {
                    Measured::missing("the route never reached the FIB")
                } else {
                    t(2_530_000 + 1_000 * k)
                },
                expected_next_hops: 1,
                observed_next_hops: if failed {
                    Measured::missing("the route never reached the FIB")
                } else {
                    Measured::Observed(1)
                },
                withdraw_adj_rib_in: Measured::not_applicable(
                    "VMs are kept until cleanup in the vm-bgp profile",
                ),
                withdraw_fib: Measured::not_applicable(
                    "VMs are kept until cleanup in the vm-bgp profile",
                ),
                stale_route_window: Measured::not_applicable(
                    "VMs are kept until cleanup in the vm-bgp profile",
                ),
                communities: if failed {
                    Measured::missing("the /32 was never announced")
                } else {
                    Measured::Observed("64512:200".to_owned())
                },
                local_pref: if failed {
                    Measured::missing(
                        "the /32 was not in the external router's BGP table when it was read",
                    )
                } else {
                    Measured::Observed(250)
                },
            });
        }
    }
    if shape == Shape::LifecycleOnly {
        return samples;
    }
    let churn = shape == Shape::Churn;
    // The shared network of churn and migration runs is advertised once, in iteration 0.
    if !matches!(shape, Shape::Churn | Shape::Migration) || iteration == 0 {
        let kept = "networks are kept until cleanup in the vm-bgp profile";
        let shared = matches!(shape, Shape::Churn | Shape::Migration);
        samples.route_convergence.push(RouteConvergenceSample {
            network: if shared {
                "vmbgp".to_owned()
            } else {
                format!("vmbgp-{iteration}")
            },
            prefix: if shared {
                "198.19.100.0/24".to_owned()
            } else {
                format!("198.19.{iteration}.0/24")
            },
            scope: RouteScope::Network,
            job_iteration: iteration,
            t0: t0(0),
            advertise_adj_rib_in: t(180_321 + 40_000 * iteration),
            advertise_fib: t(230_012 + 40_000 * iteration),
            advertise_all_next_hops: if iteration == 2 {
                Measured::missing("2 of 3 next hops seen when the run's wait ended")
            } else {
                t(410_999 + 60_000 * iteration)
            },
            expected_next_hops: 3,
            observed_next_hops: Measured::Observed(if iteration == 2 { 2 } else { 3 }),
            withdraw_adj_rib_in: if churn {
                t(1_200_000)
            } else {
                Measured::not_applicable(kept)
            },
            withdraw_fib: if churn {
                t(1_250_000)
            } else {
                Measured::not_applicable(kept)
            },
            stale_route_window: if churn {
                coarse(40, 10)
            } else {
                Measured::not_applicable(kept)
            },
            communities: Measured::not_applicable(
                "the policy check (community, local-pref) covers the per-VM /32 host routes",
            ),
            local_pref: Measured::not_applicable(
                "the policy check (community, local-pref) covers the per-VM /32 host routes",
            ),
        });
    }
    if shape == Shape::Migration || host_routes {
        for replica in 1..=vms.min(4) {
            let failed = iteration == 1 && replica == 3;
            samples.migrations.push(MigrationSample {
                vm: vm(shape, 0, replica),
                migration_index: iteration,
                source_node: Some(format!("worker-{}", (replica + iteration) % 3)),
                target_node: (!failed).then(|| format!("worker-{}", (replica + iteration + 1) % 3)),
                t0: t0(15_000 + replica * 100),
                loss_period: if failed {
                    Measured::missing(DOTTED_REASON)
                } else {
                    coarse(12 + replica, 1)
                },
                longest_gap: if failed {
                    Measured::missing("no reply arrived after the switch-over")
                } else {
                    coarse(8 + replica, 1)
                },
                reachable_after_switchover: if failed {
                    Measured::missing("no reply arrived after the switch-over")
                } else {
                    t(21_500 + replica)
                },
                next_hop_follow: if host_routes {
                    t(480_000 + replica * 1_000)
                } else {
                    Measured::not_applicable("the subnet route does not follow VMs (subnet mode)")
                },
                tcp_survived: if host_routes {
                    Measured::Observed(replica != 2)
                } else {
                    Measured::missing("no TCP stream runs across migrations in this run")
                },
                tcp_longest_stall: if host_routes {
                    coarse(180 + replica, 10)
                } else {
                    Measured::missing("no TCP stream runs across migrations in this run")
                },
            });
        }
    }
    samples
}

fn sessions() -> Samples {
    let mut samples = Samples::default();
    for node in 1..=3u64 {
        let flapped = node == 2;
        samples.bgp_sessions.push(BgpSessionSample {
            peer_address: format!("198.18.0.{node}"),
            peer_as: (node != 3).then_some(64513),
            initial_state: if node == 3 { "Active" } else { "Established" }.to_owned(),
            state_changes: if flapped {
                vec![
                    SessionStateChange {
                        offset: ms(31_000),
                        from: "Established".to_owned(),
                        to: "Idle".to_owned(),
                    },
                    SessionStateChange {
                        offset: ms(33_500),
                        from: "Idle".to_owned(),
                        to: "Established".to_owned(),
                    },
                ]
            } else {
                Vec::new()
            },
            observed_from: ms(0),
            observed_until: ms(95_000),
            uptime_percent: match node {
                3 => Measured::missing("the session was never seen by the BMP station"),
                2 => Measured::Observed(97.368),
                _ => Measured::Observed(100.0),
            },
            prefixes_received: if node == 3 {
                Measured::missing("the session was never seen by the BMP station")
            } else {
                Measured::Observed(4)
            },
        });
    }
    samples
}

/// Host-route mode's end-of-measuring figures: three nodes (one capped, one whose controller count
/// could not be scraped) and the controller.
fn host_route_controller() -> Samples {
    let at = ms(90_000);
    let mut samples = Samples::default();
    for node in 1..=3u64 {
        samples.host_route_nodes.push(HostRouteNodeSample {
            at,
            node: format!("worker-{node}"),
            node_address: Some(format!("198.18.0.{node}")),
            vms: if node == 3 { 0 } else { 4 },
            prefixes_at_ext: Measured::Observed(if node == 3 { 0 } else { 1 + node }),
            addresses_covered: Measured::Observed(if node == 3 { 0 } else { 4 }),
            routes_advertised: if node == 2 {
                Measured::missing("the controller reported no routes_advertised for the node")
            } else {
                Measured::Observed(if node == 3 { 0 } else { 2 })
            },
            capped: Measured::Observed(node == 3),
        });
    }
    samples.host_route_controller = Some(HostRouteControllerSample {
        at,
        reconcile_p99: Measured::Observed(Timing::new(ms(7), ms(4))),
        reconciles: Measured::Observed(57),
        reconcile_errors: Measured::Observed(0),
        migrations_followed: Measured::Observed(12),
        routes_advertised: Measured::Observed(4),
        not_advertised_vms: Measured::Observed(0),
    });
    samples
}

/// Every document one run of `shape` writes, in the order it writes them (the provisional
/// summary first, the final one last).
pub fn run_documents(shape: Shape, uuid: &str) -> Vec<Document> {
    let run = run_description(shape, uuid);
    let mut documents = vec![job_summary(&run, &JobStatus::in_progress()).unwrap()];
    let mut builder = DocumentBuilder::new(&run);
    let iterations = run.job_iterations;
    let vms = match shape {
        Shape::Migration => 4,
        Shape::LifecycleOnly => 2,
        _ => 3,
    };
    if shape == Shape::Interrupted {
        documents.extend(builder.quantile_documents(start()).unwrap());
        return documents;
    }
    for i in 0..iterations {
        documents.extend(builder.add(&iteration(shape, i, vms)).unwrap());
    }
    if shape != Shape::LifecycleOnly {
        documents.extend(builder.add(&sessions()).unwrap());
    }
    if shape == Shape::HostRoutes {
        documents.extend(builder.add(&host_route_controller()).unwrap());
    }
    let end = start() + chrono::Duration::milliseconds(95_000);
    documents.extend(builder.quantile_documents(end).unwrap());
    let status = JobStatus {
        end: Some(end),
        elapsed: Some(ms(95_000)),
        passed: shape != Shape::Scale,
        execution_errors: if shape == Shape::Scale {
            vec!["threshold violated: vmReachabilityQuantilesMeasurement/FirstReply missingCount <= 0 but was 1".to_owned()]
        } else {
            Vec::new()
        },
    };
    documents.push(job_summary(&run, &status).unwrap());
    documents
}

/// The documents of one run of every shape, each run with its own uuid.
pub fn every_profile_run() -> Vec<Document> {
    Shape::ALL
        .iter()
        .enumerate()
        .flat_map(|(n, shape)| {
            run_documents(*shape, &format!("6b1d2c4e-0000-4000-8000-00000000000{n}"))
        })
        .collect()
}
