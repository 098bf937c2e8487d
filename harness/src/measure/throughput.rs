//! TCP throughput to sampled VMs: on the iterations the plan picks, the run hands this module the
//! iteration's reachable VMs once they answer probes steadily; it sends to the first
//! `throughputVms` of them, one after another (so each VM's goodput is its own), from the external
//! router's side with the built-in sender, and keeps goodput, retransmits and how long it sent.
//! VMs that were picked but could not be tested get samples with the reason.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use vmbgp_probe::tcp::{CONNECT_TIMEOUT, ThroughputReport, ThroughputRequest, tcp_throughput};
use vmbgp_reporters::measured::{Measured, Timing};
use vmbgp_reporters::samples::{
    MeasurementKind, Samples, StartInstant, ThroughputSample, VmIdentity,
};

use super::{Batch, Measurement, Observation};
use crate::clock::{MonoStamp, RunClock};
use crate::config::{ProbePlan, VmSpec};

/// Resolution of the sender's own duration (it samples `TCP_INFO` this often).
const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// Time a sender may take after its duration (final `TCP_INFO`, close).
const FINISH_MARGIN: Duration = Duration::from_secs(1);

/// One VM the run asked to test.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub vm: VmSpec,
    /// Its address (Day-0, or learnt from the VMI).
    pub address: Option<std::net::Ipv4Addr>,
    /// Why it cannot be tested (not reachable, no address), if so.
    pub unusable: Option<String>,
}

/// The throughput tests of one run.
#[derive(Debug)]
pub struct Throughput {
    clock: RunClock,
    netns: Option<String>,
    sink_port: u16,
    duration: Duration,
    vms_per_iteration: usize,
    iterations: BTreeSet<u32>,
    /// Why no test runs in this run, if so.
    disabled: Option<String>,
    done: Vec<(u32, ThroughputSample)>,
}

impl Throughput {
    pub fn new(
        clock: RunClock,
        netns: Option<String>,
        probes: &ProbePlan,
        sink_port: u16,
        disabled: Option<String>,
    ) -> Self {
        Throughput {
            clock,
            netns,
            sink_port,
            duration: probes.throughput_duration,
            vms_per_iteration: probes.throughput_vms as usize,
            iterations: probes.throughput_iterations.iter().copied().collect(),
            disabled,
            done: Vec::new(),
        }
    }

    /// Whether this iteration's VMs are tested (false when the measurement is off).
    pub fn tests_iteration(&self, iteration: u32) -> bool {
        self.disabled.is_none() && self.iterations.contains(&iteration)
    }

    /// Whether any test runs in this run.
    pub fn enabled(&self) -> bool {
        self.disabled.is_none() && !self.iterations.is_empty() && self.vms_per_iteration > 0
    }

    /// How long one iteration's tests take at most (for the run's time budget and progress).
    pub fn budget(&self) -> Duration {
        let one = self.duration + CONNECT_TIMEOUT + FINISH_MARGIN;
        one * u32::try_from(self.vms_per_iteration).unwrap_or(u32::MAX)
    }

    /// The VMs of an iteration that [`test`](Self::test) has not finished when the run stopped
    /// (`why`): each gets a sample whose values are missing with that reason, not no sample at all.
    pub fn cut_short(&mut self, iteration: u32, candidates: &[Candidate], why: &str) {
        let started = self.clock.now();
        for candidate in candidates.iter().take(self.vms_per_iteration) {
            let done = self.done.iter().any(|(i, sample)| {
                *i == iteration
                    && sample.vm.namespace == candidate.vm.namespace
                    && sample.vm.vm_name == candidate.vm.name
            });
            if !done {
                let sample = unusable(
                    &candidate.vm,
                    started,
                    format!("{why} before this VM's throughput test ended"),
                );
                self.done.push((iteration, sample));
            }
        }
    }

    /// Tests the first `throughputVms` candidates of an iteration, one after another. The caller
    /// races this against cancellation; samples already taken are kept.
    pub async fn test(&mut self, iteration: u32, candidates: Vec<Candidate>) {
        for candidate in candidates.into_iter().take(self.vms_per_iteration) {
            let started = self.clock.now();
            let sample = match (&candidate.unusable, candidate.address) {
                (Some(why), _) => unusable(&candidate.vm, started, why.clone()),
                (None, None) => unusable(
                    &candidate.vm,
                    started,
                    "the VM's address is not known".into(),
                ),
                (None, Some(address)) => {
                    let mut request = ThroughputRequest::new(SocketAddr::new(
                        IpAddr::V4(address),
                        self.sink_port,
                    ));
                    request.netns = self.netns.clone();
                    request.duration = self.duration;
                    request.sample_every = SAMPLE_EVERY;
                    let report = tcp_throughput(self.clock, request).await;
                    sample_of(&candidate.vm, &report)
                }
            };
            self.done.push((iteration, sample));
        }
    }
}

/// A migration's paced TCP stream (1 MB/s): enough to show whether the connection lives through
/// the switch-over, too little to disturb the loss probes on the same path.
pub const MIGRATION_STREAM_PACE: u64 = 1_000_000;
/// Its `TCP_INFO` sampling: the resolution of its longest stall.
pub const MIGRATION_STREAM_SAMPLE_EVERY: Duration = Duration::from_millis(10);

/// A running migration stream: [`finish`](Self::finish) stops it and returns its report. Dropped
/// unfinished (a halted round), it is told to stop, so no sender outlives the round.
#[derive(Debug)]
pub struct MigrationStream {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    connected: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: Option<tokio::task::JoinHandle<ThroughputReport>>,
}

impl MigrationStream {
    /// Whether its connection is established.
    pub fn connected(&self) -> bool {
        self.connected.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Tells the sender to stop (it ends within a write timeout).
    pub fn stop(&self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Stops it and waits for its report.
    pub async fn finish(mut self) -> Result<ThroughputReport, String> {
        self.stop();
        match self.task.take() {
            Some(task) => task
                .await
                .map_err(|e| format!("the stream's task failed: {e}")),
            None => Err("the stream was already finished".to_string()),
        }
    }
}

impl Drop for MigrationStream {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Throughput {
    /// Starts a paced stream to a VM's sink that runs until stopped (at most `limit`), for TCP
    /// survival across its migration; or why it cannot run.
    pub fn migration_stream(
        &self,
        address: std::net::Ipv4Addr,
        limit: Duration,
    ) -> Result<MigrationStream, String> {
        if let Some(why) = &self.disabled {
            return Err(why.clone());
        }
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let connected = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut request =
            ThroughputRequest::new(SocketAddr::new(IpAddr::V4(address), self.sink_port));
        request.netns = self.netns.clone();
        request.duration = limit;
        request.sample_every = MIGRATION_STREAM_SAMPLE_EVERY;
        request.pace_bytes_per_s = Some(MIGRATION_STREAM_PACE);
        request.stop = Some(stop.clone());
        request.connected = Some(connected.clone());
        let task = tokio::spawn(tcp_throughput(self.clock, request));
        Ok(MigrationStream {
            stop,
            connected,
            task: Some(task),
        })
    }
}

fn identity(vm: &VmSpec) -> VmIdentity {
    VmIdentity {
        namespace: vm.namespace.clone(),
        vm_name: vm.name.clone(),
        job_iteration: u64::from(vm.iteration),
        replica: u64::from(vm.replica),
    }
}

fn unusable(vm: &VmSpec, started: MonoStamp, why: String) -> ThroughputSample {
    ThroughputSample {
        vm: identity(vm),
        t0: StartInstant {
            offset: started.since_anchor(),
            uncertainty: Duration::ZERO,
        },
        goodput_bits_per_second: Measured::missing(why.clone()),
        retransmits: Measured::missing(why.clone()),
        duration: Measured::missing(why),
    }
}

/// A sender report as a sample: t0 is when the sender started connecting.
fn sample_of(vm: &VmSpec, report: &ThroughputReport) -> ThroughputSample {
    let duration = match (report.connected.observed(), report.finished.observed()) {
        (Some(connected), Some(finished)) if finished >= connected => Measured::Observed(
            Timing::new(Duration::from_nanos(finished - connected), SAMPLE_EVERY),
        ),
        _ => Measured::missing(
            report
                .error
                .clone()
                .unwrap_or_else(|| "the sender did not connect and finish".into()),
        ),
    };
    ThroughputSample {
        vm: identity(vm),
        t0: StartInstant {
            offset: report.started.since_anchor(),
            uncertainty: Duration::ZERO,
        },
        goodput_bits_per_second: report.goodput_bits_per_s.clone(),
        retransmits: report.retransmits.clone().map(u64::from),
        duration,
    }
}

impl Measurement for Throughput {
    fn kind(&self) -> MeasurementKind {
        MeasurementKind::VmThroughput
    }

    fn observe(&mut self, _: Observation<'_>) {}

    fn collect(&mut self, batch: Batch, out: &mut Samples) {
        let (now, later): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.done)
                .into_iter()
                .partition(|(iteration, _)| match batch {
                    Batch::Iteration(i) => *iteration == i,
                    Batch::MigrationRound(_) => false,
                    Batch::All => true,
                });
        self.done = later;
        out.throughput.extend(now.into_iter().map(|(_, s)| s));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm(address: Option<[u8; 4]>) -> VmSpec {
        VmSpec {
            name: "vm-1".into(),
            namespace: "ns".into(),
            network: "net".into(),
            iteration: 0,
            replica: 1,
            static_ip: address.map(Into::into),
        }
    }

    fn probes(vms: u32) -> ProbePlan {
        ProbePlan {
            converging_rate: 100,
            steady_rate: 10,
            migration_rate: 1000,
            throughput_vms: vms,
            throughput_iterations: vec![0, 2],
            throughput_duration: Duration::from_millis(200),
            egress_endpoint: "127.0.0.1:1".parse().expect("addr"),
        }
    }

    /// A test cut short by a signal leaves samples for every VM it was to test, missing with why.
    #[tokio::test]
    async fn tests_cut_short_are_missing_with_the_reason_not_absent() {
        // A sink that accepts and reads forever: the test would run its full duration.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        std::thread::spawn(move || {
            if let Ok((mut stream, _)) = listener.accept() {
                let _ = std::io::copy(&mut stream, &mut std::io::sink());
            }
        });
        let mut plan = probes(2);
        plan.throughput_duration = Duration::from_secs(30);
        let mut t = Throughput::new(RunClock::start(), None, &plan, port, None);
        let candidates: Vec<Candidate> = ["vm-1", "vm-2"]
            .into_iter()
            .map(|name| Candidate {
                vm: VmSpec {
                    name: name.into(),
                    ..vm(Some([127, 0, 0, 1]))
                },
                address: Some([127, 0, 0, 1].into()),
                unusable: None,
            })
            .collect();
        tokio::select! {
            () = t.test(0, candidates.clone()) => panic!("a 30 s test ended early"),
            () = tokio::time::sleep(Duration::from_millis(300)) => {}
        }
        t.cut_short(0, &candidates, "the run was interrupted by a signal");
        let mut out = Samples::default();
        t.collect(Batch::Iteration(0), &mut out);
        assert_eq!(out.throughput.len(), 2, "{:?}", out.throughput);
        for sample in &out.throughput {
            let Measured::Missing { reason } = &sample.goodput_bits_per_second else {
                panic!("{sample:?}");
            };
            assert!(reason.contains("interrupted by a signal"), "{reason}");
        }
    }

    #[tokio::test]
    async fn a_refused_connection_is_missing_with_the_reason_not_zero() {
        // A port nothing listens on, on loopback: the connection is refused at once.
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("addr").port()
        };
        let mut t = Throughput::new(RunClock::start(), None, &probes(1), port, None);
        assert!(t.tests_iteration(2) && !t.tests_iteration(1));
        t.test(
            0,
            vec![Candidate {
                vm: vm(Some([127, 0, 0, 1])),
                address: Some([127, 0, 0, 1].into()),
                unusable: None,
            }],
        )
        .await;
        let mut out = Samples::default();
        t.collect(Batch::Iteration(0), &mut out);
        let sample = &out.throughput[0];
        let Measured::Missing { reason } = &sample.goodput_bits_per_second else {
            panic!(
                "goodput of a refused connection: {:?}",
                sample.goodput_bits_per_second
            );
        };
        assert!(reason.contains("refused"), "{reason}");
    }

    #[tokio::test]
    async fn goodput_is_measured_against_a_real_sink() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let sink = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().expect("accept");
            let _ = std::io::copy(&mut stream, &mut std::io::sink());
        });
        let mut t = Throughput::new(RunClock::start(), None, &probes(2), port, None);
        t.test(
            2,
            vec![
                Candidate {
                    vm: vm(Some([127, 0, 0, 1])),
                    address: Some([127, 0, 0, 1].into()),
                    unusable: None,
                },
                Candidate {
                    vm: vm(None),
                    address: None,
                    unusable: Some("never reachable".into()),
                },
                Candidate {
                    vm: vm(Some([127, 0, 0, 1])),
                    address: Some([127, 0, 0, 1].into()),
                    unusable: None,
                },
            ],
        )
        .await;
        sink.join().expect("sink");
        let mut out = Samples::default();
        t.collect(Batch::Iteration(0), &mut out);
        assert!(
            out.throughput.is_empty(),
            "iteration 2's samples came with iteration 0"
        );
        t.collect(Batch::All, &mut out);
        assert_eq!(
            out.throughput.len(),
            2,
            "only throughputVms candidates are tested"
        );
        let Measured::Observed(goodput) = out.throughput[0].goodput_bits_per_second else {
            panic!("{:?}", out.throughput[0].goodput_bits_per_second);
        };
        assert!(goodput > 1e6, "loopback goodput {goodput}");
        assert!(matches!(out.throughput[0].duration, Measured::Observed(_)));
        assert!(matches!(
            &out.throughput[1].goodput_bits_per_second,
            Measured::Missing { reason } if reason.contains("never reachable")
        ));
    }
}
