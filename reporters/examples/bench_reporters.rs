//! Measures the reporters at nightly-run scale (72 iterations × 10 VMs, every measurement kind,
//! 6 000 RTT samples per VM; the run `tests/common/nightly_run.rs` generates, whose report
//! `tests/report_browser.rs` checks): per-iteration local write, finish (quantiles, thresholds,
//! summary, HTML), bulk indexing into a local ES-compatible endpoint, quantile math, peak memory.
//!
//! `cargo run --release -p vmbgp-reporters --example bench_reporters` — figures go to
//! `docs/perf-reporters.md`.

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::routing::{get, head, post};
use chrono::Utc;
use serde_json::{Value, json};
use vmbgp_reporters::es::{EsClient, EsOptions, index_saved_results};
use vmbgp_reporters::quantiles::kube_burner_summary_millis;
use vmbgp_reporters::recorder::{RunEnd, RunRecorder};
use vmbgp_reporters::redact::Redactor;
use vmbgp_reporters::thresholds::default_thresholds;

#[path = "../tests/common/nightly_run.rs"]
mod nightly_run;

use nightly_run::{ITERATIONS, Probes, iteration_samples, run_description};

/// 100 probes/s for 60 s per VM, every RTT recorded.
const PROBES: Probes = Probes {
    sent: 6_000,
    rtts_recorded: 6_000,
};

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
    let started = Instant::now();
    let mut recorder =
        RunRecorder::start(root.path(), run_description(Utc::now()), Redactor::new())?;
    let mut record_times = Vec::new();
    for iteration in 0..ITERATIONS {
        // Generated per iteration (not timed), as the harness hands samples over.
        let batch = iteration_samples(iteration, PROBES);
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
