//! Measures the reporters at nightly-run scale (72 iterations × 10 VMs, every measurement kind,
//! 6 000 RTT samples per VM): per-iteration local write, finish (quantiles, thresholds, summary,
//! HTML), bulk indexing into a local ES-compatible endpoint, quantile math, peak memory.
//!
//! `cargo run --release -p vmbgp-reporters --example bench_reporters` — figures go to
//! `docs/perf-reporters.md`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::routing::{get, head, post};
use chrono::Utc;
use serde_json::{Value, json};
use vmbgp_reporters::es::{EsClient, EsOptions, index_saved_results};
use vmbgp_reporters::measured::{Measured, Timing};
use vmbgp_reporters::quantiles::{kube_burner_summary_millis, new_nanos_histogram};
use vmbgp_reporters::recorder::{RunEnd, RunRecorder};
use vmbgp_reporters::redact::Redactor;
use vmbgp_reporters::samples::*;
use vmbgp_reporters::thresholds::default_thresholds;

const ITERATIONS: u64 = 72;
const VMS: u64 = 10;
const RTT_SAMPLES: u64 = 6_000;

fn timing(ms: u64, salt: u64) -> Measured<Timing> {
    Measured::Observed(Timing::new(
        Duration::from_micros(ms * 1000 + salt % 997),
        Duration::from_micros(1),
    ))
}

fn samples(iteration: u64) -> Samples {
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
            .map(|(i, p)| (*p, timing(100 * i as u64 + k % 50, k * 31 + i as u64)))
            .collect();
        s.vm_latency.push(VmLatencySample {
            vm: vm.clone(),
            vmi_name: Some(vm.vm_name.clone()),
            pod_name: Some(format!("virt-launcher-{}", vm.vm_name)),
            node_name: Some(format!("worker-{}", k % 24)),
            t0,
            harness,
            server: BTreeMap::new(),
            claim_release: Measured::Observed(Timing::new(
                Duration::from_millis(40),
                Duration::from_micros(500),
            )),
        });
        let mut rtt = new_nanos_histogram();
        for i in 0..RTT_SAMPLES {
            // Recording cannot fail: the histogram auto-resizes.
            let _ = rtt.record(120_000 + (i * 7_919 + k * 13) % 900_000);
        }
        s.reachability.push(ReachabilitySample {
            vm: vm.clone(),
            address: format!("198.19.{}.{}", iteration % 250, replica + 10),
            t0,
            first_reply: timing(2_500 + k % 400, k),
            sustained_reachability: timing(2_700 + k % 400, k),
            loss_derived_convergence: timing(40 + k % 30, k),
            rtt_nanos: Measured::Observed(rtt),
            probes_sent: RTT_SAMPLES,
            probes_received: RTT_SAMPLES - k % 3,
            probe_interval: Duration::from_millis(10),
        });
        s.egress.push(EgressSample {
            vm: vm.clone(),
            t0,
            vm_address: format!("198.19.{}.{}", iteration % 250, replica + 10),
            source_address_seen: Measured::Observed(format!(
                "198.19.{}.{}",
                iteration % 250,
                replica + 10
            )),
        });
        if replica == 0 {
            s.throughput.push(ThroughputSample {
                vm: vm.clone(),
                t0,
                goodput_bits_per_second: Measured::Observed(9.4e9 - k as f64),
                retransmits: Measured::Observed(k % 20),
                duration: timing(10_000, k),
            });
        }
    }
    s.route_convergence.push(RouteConvergenceSample {
        network: format!("vmbgp-{iteration}"),
        prefix: format!("198.19.{}.0/24", iteration % 250),
        scope: RouteScope::Network,
        job_iteration: iteration,
        t0,
        advertise_adj_rib_in: timing(150 + iteration, iteration),
        advertise_fib: timing(210 + iteration, iteration),
        advertise_all_next_hops: timing(400 + iteration, iteration),
        expected_next_hops: 24,
        observed_next_hops: Measured::Observed(24),
        withdraw_adj_rib_in: Measured::not_applicable("kept until cleanup"),
        withdraw_fib: Measured::not_applicable("kept until cleanup"),
        stale_route_window: Measured::not_applicable("kept until cleanup"),
    });
    s
}

fn peak_rss_kib() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l.trim_start_matches("VmHWM:").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = tempfile::tempdir()?;
    let run = RunDescription {
        uuid: "bench-run".to_owned(),
        job_name: "vm-bgp".to_owned(),
        job_iterations: ITERATIONS,
        job_config: json!({"name": "vm-bgp"}),
        start: Utc::now(),
        version: "bench@local".to_owned(),
        workload_flags: BTreeMap::new(),
        cluster: ClusterMetadata {
            k8s_version: "v1.33.5".to_owned(),
            kubevirt_version: Measured::Observed("v1.6.0".to_owned()),
            total_nodes: 27,
            frr_version: Measured::Observed("10.3".to_owned()),
            mode: AdvertisementMode::Subnet,
        },
        measurements: MeasurementKind::ALL.to_vec(),
    };
    let started = Instant::now();
    let mut recorder = RunRecorder::start(root.path(), run, Redactor::new())?;
    let mut record_times = Vec::new();
    for iteration in 0..ITERATIONS {
        // Generated per iteration (not timed), as the harness hands samples over.
        let batch = samples(iteration);
        let t = Instant::now();
        recorder.record(&batch)?;
        record_times.push(t.elapsed());
    }
    let t = Instant::now();
    let results = recorder.finish(
        &RunEnd {
            end: Utc::now(),
            elapsed: started.elapsed(),
            execution_errors: Vec::new(),
            cut_short: None,
        },
        &default_thresholds(),
    )?;
    let finish = t.elapsed();
    let bytes: u64 = std::fs::read_dir(&results.dir)?
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    let report_bytes = std::fs::metadata(&results.report_path)?.len();
    let record_total: Duration = record_times.iter().sum();
    let record_max = record_times.iter().max().copied().unwrap_or_default();
    println!("documents: {}", results.documents);
    println!("results dir bytes: {bytes} (report.html {report_bytes})");
    println!(
        "record per iteration: mean {:?}, max {:?} (last {:?})",
        record_total / ITERATIONS as u32,
        record_max,
        record_times.last().copied().unwrap_or_default()
    );
    println!("finish (quantiles, thresholds, summary, HTML): {finish:?}");

    // Bulk indexing into a minimal local ES-compatible endpoint that accepts everything.
    let app = Router::new()
        .route("/_cluster/health", get(|| async { "{}" }))
        .route("/{index}", head(|| async { "" }))
        .route(
            "/_bulk",
            post(|body: Bytes| async move {
                let items: Vec<Value> = body
                    .split(|b| *b == b'\n')
                    .filter(|l| !l.is_empty())
                    .step_by(2)
                    .map(|_| json!({"index": {"status": 201}}))
                    .collect();
                axum::Json(json!({"errors": false, "items": items}))
            }),
        )
        .layer(axum::extract::DefaultBodyLimit::max(100 * 1024 * 1024));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://127.0.0.1:{}", listener.local_addr()?.port());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = EsClient::connect(EsOptions::new(url, "bench")).await?;
    let t = Instant::now();
    let outcome = index_saved_results(&results.dir, &client).await?;
    let index_time = t.elapsed();
    if let Some(failure) = outcome.failures.first() {
        println!(
            "indexing failed: {} failures, first: {failure:?}",
            outcome.failures.len()
        );
    }
    println!(
        "index_saved_results: {} documents in {index_time:?} ({} bulk requests, {:.0} docs/s)",
        outcome.indexed,
        outcome.requests,
        outcome.indexed as f64 / index_time.as_secs_f64()
    );
    let t = Instant::now();
    let again = index_saved_results(&results.dir, &client).await?;
    println!(
        "second index (every document sent again; the server decides what it had): {:?}, {} requests",
        t.elapsed(),
        again.requests
    );

    let values: Vec<i64> = (0..1_000_000i64)
        .map(|i| (i * 7_919) % 5_000_000_000)
        .collect();
    let t = Instant::now();
    let summary = kube_burner_summary_millis(&values);
    println!(
        "kube-burner quantiles of 1e6 samples: {:?} (P99 {:?} ms)",
        t.elapsed(),
        summary.map(|s| s.p99)
    );
    println!("peak RSS: {}", peak_rss_kib());
    Ok(())
}
