//! The HTML report at nightly-run scale (72 iterations × 10 VMs, built with the crate's own
//! recorder from the samples `common/nightly_run.rs` generates): compact (unobserved values
//! grouped, not-applicable quantiles folded, one plot point per iteration), and rendered by
//! headless chromium without a script error, with every key section present. Needs `chromium` (`apt-get install chromium`;
//! ci/test.sh installs it).
// Test helpers outside #[test] functions unwrap too: a failed setup step aborts the test.
#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use vmbgp_reporters::measured::Measured;
use vmbgp_reporters::recorder::{RunEnd, RunRecorder, RunResults};
use vmbgp_reporters::redact::Redactor;
use vmbgp_reporters::samples::*;
use vmbgp_reporters::thresholds::default_thresholds;

#[path = "common/nightly_run.rs"]
mod nightly_run;

use nightly_run::{ITERATIONS, Probes, iteration_samples, run_description};

/// Upper bound on one chromium run; the test stays well under 30 s.
const CHROMIUM_DEADLINE: Duration = Duration::from_secs(20);

/// Few RTTs per VM keep the debug-build test fast; nothing the test checks depends on their number.
const PROBES: Probes = Probes {
    sent: 3_000,
    rtts_recorded: 50,
};

fn sessions() -> Samples {
    let mut s = Samples::default();
    for node in 1..=24u64 {
        s.bgp_sessions.push(BgpSessionSample {
            peer_address: format!("198.18.0.{node}"),
            peer_as: Some(64513),
            initial_state: "Established".to_owned(),
            state_changes: Vec::new(),
            observed_from: Duration::ZERO,
            observed_until: Duration::from_secs(ITERATIONS * 30 + 60),
            uptime_percent: Measured::Observed(100.0),
            prefixes_received: Measured::Observed(ITERATIONS),
        });
    }
    s
}

fn record_run(root: &Path) -> RunResults {
    let start = Utc.with_ymd_and_hms(2026, 12, 1, 2, 0, 0).unwrap();
    let mut recorder = RunRecorder::start(root, run_description(start), Redactor::new()).unwrap();
    // Four batches of 18 iterations: each batch rewrites the run's files, and a debug build
    // rewriting them 72 times would dominate the test's time.
    for batch in 0..4 {
        let mut all = Samples::default();
        for iteration in (batch * ITERATIONS / 4)..((batch + 1) * ITERATIONS / 4) {
            let s = iteration_samples(iteration, PROBES);
            all.vm_latency.extend(s.vm_latency);
            all.route_convergence.extend(s.route_convergence);
            all.reachability.extend(s.reachability);
            all.throughput.extend(s.throughput);
            all.egress.extend(s.egress);
        }
        recorder.record(&all).unwrap();
    }
    recorder.record(&sessions()).unwrap();
    let elapsed = Duration::from_secs(ITERATIONS * 30 + 60);
    recorder
        .finish(
            &RunEnd {
                end: start + chrono::Duration::from_std(elapsed).unwrap(),
                elapsed,
                execution_errors: Vec::new(),
                cut_short: None,
            },
            &default_thresholds(),
        )
        .unwrap()
}

/// The text of a report section, from its opening tag to its end.
fn section<'a>(html: &'a str, id: &str) -> &'a str {
    let open = format!("<section id=\"{id}\"");
    let start = html
        .find(&open)
        .unwrap_or_else(|| panic!("no section {id}"));
    let end = html[start..].find("</section>").unwrap() + start;
    &html[start..end]
}

/// Runs chromium with `args` (headless, no sandbox, a throwaway profile), killed at the
/// deadline; returns (stdout, stderr). Fails with the install command when chromium is missing.
fn chromium(profile: &Path, args: &[&str]) -> (String, String) {
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-dev-shm-usage",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `chromium` ({e}): the report's browser test needs it; install it with \
                 `apt-get install chromium` (ci/test.sh installs it)"
            )
        });
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > CHROMIUM_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within {CHROMIUM_DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    assert!(status.success(), "chromium failed: {status}\n{err}");
    (out, err)
}

#[test]
fn a_72_by_10_run_report_is_compact_and_renders_in_headless_chromium() {
    let started = Instant::now();
    let root = tempfile::tempdir().unwrap();
    let results = record_run(root.path());
    // minijinja escapes `/` in text; the checks below read it as the browser shows it.
    let html = std::fs::read_to_string(&results.report_path)
        .unwrap()
        .replace("&#x2f;", "/");
    let recorded = started.elapsed();
    if let Some(keep) = std::env::var_os("REPORTERS_KEEP_REPORT") {
        std::fs::write(keep, &html).unwrap();
    }

    // The verdict comes first and names the failed threshold in units.
    assert!(!results.passed);
    let verdict = section(&html, "verdict");
    assert!(html.find("<section").unwrap() == html.find("<section id=\"verdict\"").unwrap());
    assert!(verdict.contains("FAILED"), "{verdict}");
    assert!(
        verdict.contains("vmReachability/FirstReply missingCount ≤ 0</strong>: was 6"),
        "{verdict}"
    );
    // Human units, the raw value on hover.
    let quantiles = section(&html, "quantiles");
    assert!(
        quantiles.contains("title=\"18596235637.057 bps\">18.6 Gbit/s<"),
        "{quantiles}"
    );
    assert!(!quantiles.contains(">18596235637"));
    // Not-applicable quantiles: one line per reason, not one row per quantile.
    assert!(
        quantiles.contains("routeConvergence: StaleRouteWindow, WithdrawAdjRibIn, WithdrawFib"),
        "{quantiles}"
    );
    assert!(!quantiles.contains("<td class=\"text\">PodReady</td>"));
    // Unobserved values: a handful of groups for 720 VMs, every object named inside <details>.
    let unobserved = section(&html, "unobserved");
    let groups = unobserved.matches("<details>").count();
    assert!((5..=20).contains(&groups), "{groups} groups");
    assert!(
        unobserved.contains("<summary>720 of 720</summary>"),
        "{unobserved}"
    );
    assert!(
        unobserved.contains("<summary>8 of 720</summary>"),
        "{unobserved}"
    );
    assert!(unobserved.contains("vm-bgp-71/vm-71-9"));
    // Plots: one point per iteration, whatever the number of VMs.
    for id in [
        "route-convergence-cdf",
        "first-reachability-cdf",
        "readiness-per-iteration",
        "routes-per-iteration",
        "rtt-histogram",
        "bgp-session-timeline",
    ] {
        assert!(section(&html, id).contains("<svg"), "plot {id} missing");
    }
    let readiness = section(&html, "readiness-per-iteration");
    assert!(readiness.contains("iteration with missing values"));
    assert!(
        html.len() < 1_500_000,
        "report grew to {} bytes",
        html.len()
    );

    // Rendered by a browser: the inline script ran to its end (it marks the document) and
    // nothing was reported on the console.
    let profile = tempfile::tempdir().unwrap();
    let url = format!("file://{}", results.report_path.display());
    let (dom, log) = chromium(profile.path(), &["--dump-dom", &url]);
    eprintln!(
        "recorded and rendered in {recorded:?}, chromium done at {:?}",
        started.elapsed()
    );
    assert!(
        dom.contains("data-report-ready=\"yes\""),
        "the report's script did not finish:\n{log}"
    );
    for bad in ["Uncaught", "CONSOLE"] {
        assert!(
            !log.contains(bad),
            "chromium console reported {bad}:\n{log}"
        );
    }
    for id in [
        "verdict",
        "thresholds",
        "quantiles",
        "unobserved",
        "readiness-per-iteration",
        "routes-per-iteration",
    ] {
        assert!(
            dom.contains(&format!("<section id=\"{id}\"")),
            "rendered DOM lacks section {id}"
        );
    }
    // The script showed the expand/collapse button (hidden without scripts).
    assert!(
        dom.contains("<button type=\"button\" id=\"toggle-unobserved\">"),
        "expand button still hidden"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?} (recording and rendering {recorded:?})",
        started.elapsed()
    );
}
