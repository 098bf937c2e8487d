//! Hands the run's samples to the reporters: describes the run (`jobSummary`) and writes each
//! batch to `results/<uuid>/` as soon as it is final. The plan's thresholds go to the reporters as
//! they are (one shared `Threshold` type).

use std::collections::BTreeMap;

use vmbgp_reporters::measured::Measured;
use vmbgp_reporters::recorder::RunRecorder;
use vmbgp_reporters::samples::{
    AdvertisementMode, ClusterMetadata, MeasurementKind, RunDescription, Samples,
};

use crate::clock::RunClock;
use crate::config::{Plan, Shape};
use crate::run::{Observers, Sink};

/// `<version>@<commit>`, as kube-burner writes it.
pub fn version() -> String {
    format!("{}@{}", env!("CARGO_PKG_VERSION"), env!("VMBGP_GIT_COMMIT"))
}

/// The measurements a run takes: VM lifecycle always, route convergence when it observes BGP at
/// the external router, reachability (and throughput on sampled VMs, migration loss in a migration
/// run) when it probes the VMs, egress when it runs the echo endpoint. Thresholds on other kinds
/// are reported as skipped, not passed.
pub fn enabled_measurements(plan: &Plan, observers: &Observers) -> Vec<MeasurementKind> {
    let mut kinds = vec![MeasurementKind::VmLatency];
    if observers.bmp_listen.is_some() || observers.fib {
        kinds.push(MeasurementKind::RouteConvergence);
        kinds.push(MeasurementKind::BgpSession);
    }
    if observers.probe_vms {
        kinds.push(MeasurementKind::VmReachability);
        if plan.probes.throughput_vms > 0 && !plan.probes.throughput_iterations.is_empty() {
            kinds.push(MeasurementKind::VmThroughput);
        }
        if plan.shape == Shape::Migration {
            kinds.push(MeasurementKind::VmMigration);
        }
    }
    if observers.egress.is_some() {
        kinds.push(MeasurementKind::VmEgress);
    }
    kinds
}

/// Describes the run for `jobSummary`.
pub fn describe_run(
    plan: &Plan,
    clock: &RunClock,
    k8s_version: &str,
    kubevirt_version: Measured<String>,
    total_nodes: u64,
    workload_flags: BTreeMap<String, String>,
    measurements: Vec<MeasurementKind>,
) -> RunDescription {
    RunDescription {
        uuid: plan.uuid.clone(),
        job_name: plan.job_name.clone(),
        job_iterations: u64::from(plan.iterations),
        job_config: serde_json::to_value(plan).unwrap_or_default(),
        start: clock.started_at().0,
        version: version(),
        workload_flags,
        cluster: ClusterMetadata {
            k8s_version: k8s_version.to_string(),
            kubevirt_version,
            total_nodes,
            frr_version: Measured::missing(
                "read from the BMP Initiation message, which this version does not collect yet",
            ),
            mode: AdvertisementMode::Subnet,
        },
        measurements,
    }
}

/// Writes each batch to disk as it arrives and reports progress on stderr: a bar on a terminal,
/// otherwise a line each time another 10 % of the VMs is ready.
#[derive(Debug)]
pub struct RecorderSink {
    pub recorder: RunRecorder,
    /// Errors writing results; the run goes on (the samples stay in memory) and reports them.
    pub write_errors: Vec<String>,
    bar: Option<indicatif::ProgressBar>,
    /// The last tenth (0–10) reported as a line.
    reported_tenth: Option<u64>,
}

impl RecorderSink {
    /// `terminal`: draw a progress bar (stderr is a terminal) instead of 10 % lines.
    pub fn new(recorder: RunRecorder, terminal: bool) -> Self {
        let bar = terminal.then(|| {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:30}] {pos}/{len} VMs ready {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        });
        RecorderSink {
            recorder,
            write_errors: Vec::new(),
            bar,
            reported_tenth: None,
        }
    }

    /// Clears the progress bar before the summary is printed.
    pub fn finish_progress(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// The progress line for non-terminals.
pub fn progress_line(p: &crate::run::Progress) -> String {
    format!(
        "progress: {}/{} VMs ready ({} created, {} running, {} failed)",
        p.ready, p.total, p.created, p.running, p.failed
    )
}

impl Sink for RecorderSink {
    fn batch(&mut self, samples: &Samples) {
        if let Err(e) = self.recorder.record(samples) {
            let message = crate::error_chain(&e);
            tracing::error!("cannot write results: {message}");
            self.write_errors.push(message);
        }
    }

    fn progress(&mut self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => tracing::info!("{line}"),
        }
    }

    fn counts(&mut self, p: &crate::run::Progress) {
        match &self.bar {
            Some(bar) => {
                bar.set_length(p.total);
                bar.set_position(p.ready);
                bar.set_message(format!(
                    "({} created, {} running, {} failed)",
                    p.created, p.running, p.failed
                ));
            }
            None => {
                let tenth = (p.ready * 10).checked_div(p.total).unwrap_or(10);
                if self.reported_tenth != Some(tenth) {
                    self.reported_tenth = Some(tenth);
                    tracing::info!("{}", progress_line(p));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::PlanArgs;
    use crate::config::{load_profile, plan};

    #[test]
    fn profile_thresholds_reach_the_reporters_as_millisecond_and_percent_bounds() {
        use vmbgp_reporters::thresholds::{Side, Statistic};
        let plan = plan(
            &load_profile("vm-bgp").expect("profile"),
            &PlanArgs::default(),
        )
        .expect("plan");
        let t = &plan.thresholds;
        assert_eq!(t[0].metric_name(), "routeConvergenceQuantilesMeasurement");
        assert_eq!(
            (t[0].bound.side(), t[0].bound.limit()),
            (Side::AtMost, 5000.0)
        );
        assert_eq!(
            (t[1].bound.side(), t[1].bound.limit()),
            (Side::AtLeast, 99.0)
        );
        assert_eq!(t[2].stat, Statistic::MissingCount);
        assert_eq!((t[2].bound.side(), t[2].bound.limit()), (Side::AtMost, 0.0));
    }

    #[test]
    fn progress_line_has_every_count() {
        let line = progress_line(&crate::run::Progress {
            total: 720,
            created: 100,
            running: 90,
            ready: 72,
            failed: 1,
        });
        assert_eq!(
            line,
            "progress: 72/720 VMs ready (100 created, 90 running, 1 failed)"
        );
    }

    #[test]
    fn version_names_the_commit() {
        let v = version();
        assert!(
            v.starts_with(env!("CARGO_PKG_VERSION")) && v.contains('@'),
            "{v}"
        );
    }
}
