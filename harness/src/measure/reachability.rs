//! VM reachability from the external router: one open-loop ICMP stream per VM, started the moment
//! its create request is sent (static Day-0 addresses are known then) or, for a VM whose address
//! the IPAM controller picks, the moment the harness first sees it in the VMI's status; at the
//! profile's converging rate and slower once sustained. The first reply is measured from the create
//! request either way (for a dynamic address it includes the time until the address was visible). Per VM: create request → first reply, → start of sustained
//! reachability, loss-derived convergence (RFC 7747), RTT histogram, probes sent and answered.
//! A VM's stream is finished just before the VM is deleted, so its deletion is not counted as loss.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use vmbgp_probe::icmp::{IcmpProber, ProbeRate, ProberConfig, TargetReport, TargetSpec};
use vmbgp_reporters::hdrhistogram::Histogram;
use vmbgp_reporters::measured::{Measured, Timing};
use vmbgp_reporters::quantiles::new_nanos_histogram;
use vmbgp_reporters::samples::{
    MeasurementKind, ReachabilitySample, Samples, StartInstant, VmIdentity,
};

/// Significant digits of the probe streams' RTT histograms (and of their nanosecond copies).
const RTT_SIGNIFICANT_FIGURES: u8 = 2;

use super::{Batch, Measurement, Observation};
use crate::clock::{MonoStamp, RunClock};
use crate::config::{ProbePlan, VmSpec};
use crate::kube::VIRTUAL_MACHINE;

#[derive(Debug)]
struct VmProbe {
    identity: VmIdentity,
    iteration: u32,
    address: Option<Ipv4Addr>,
    /// The address is the VMI's (learnt from its status), not a Day-0 static one.
    dynamic: bool,
    sent: Option<MonoStamp>,
    uncertainty: Duration,
    create_error: Option<String>,
    report: Option<TargetReport>,
    /// Why the stream could not be started or read.
    problem: Option<String>,
}

/// Probes every VM with a static address; the prober runs in the external router's namespace.
pub struct Reachability {
    prober: Result<IcmpProber, String>,
    vms: BTreeMap<(String, String), VmProbe>,
    interval: Duration,
    rate: ProbeRate,
    rate_after: ProbeRate,
    migration_rate: ProbeRate,
    /// Why the run stopped early, if it did: a VM that had not answered by then was cut short,
    /// not found unreachable.
    stopped: Option<String>,
}

impl std::fmt::Debug for Reachability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reachability")
            .field("vms", &self.vms.len())
            .finish_non_exhaustive()
    }
}

impl Reachability {
    /// Starts the prober in `netns`; when it cannot start, every VM's values are missing with the reason.
    pub fn start(
        clock: RunClock,
        netns: Option<String>,
        probes: &ProbePlan,
        vms: &[VmSpec],
    ) -> Self {
        let prober = IcmpProber::start(
            clock,
            ProberConfig {
                netns,
                ..ProberConfig::default()
            },
        )
        .map_err(|e| {
            format!(
                "the ICMP prober could not start: {}",
                crate::error_chain(&e)
            )
        });
        Self::with_prober(prober, probes, vms)
    }

    /// No probing in this run (`--probe-vms false`): every value is missing with that reason.
    pub fn disabled(probes: &ProbePlan, vms: &[VmSpec]) -> Self {
        Self::with_prober(
            Err("VMs were not probed in this run (--probe-vms false)".into()),
            probes,
            vms,
        )
    }

    /// Whether probing works, or why not.
    pub fn status(&self) -> Result<(), &str> {
        self.prober.as_ref().map(|_| ()).map_err(String::as_str)
    }

    fn with_prober(prober: Result<IcmpProber, String>, probes: &ProbePlan, vms: &[VmSpec]) -> Self {
        let rate = ProbeRate::per_second(probes.converging_rate).unwrap_or(ProbeRate::CONVERGING);
        let rate_after = ProbeRate::per_second(probes.steady_rate).unwrap_or(ProbeRate::STEADY);
        let migration_rate =
            ProbeRate::per_second(probes.migration_rate).unwrap_or(ProbeRate::MIGRATION);
        let vms = vms
            .iter()
            .map(|vm| {
                let probe = VmProbe {
                    identity: VmIdentity {
                        namespace: vm.namespace.clone(),
                        vm_name: vm.name.clone(),
                        job_iteration: u64::from(vm.iteration),
                        replica: u64::from(vm.replica),
                    },
                    iteration: vm.iteration,
                    address: vm.static_ip,
                    dynamic: vm.static_ip.is_none(),
                    sent: None,
                    uncertainty: Duration::ZERO,
                    create_error: None,
                    report: None,
                    problem: None,
                };
                ((vm.namespace.clone(), vm.name.clone()), probe)
            })
            .collect();
        Reachability {
            prober,
            vms,
            interval: Duration::from_secs_f64(1.0 / f64::from(probes.converging_rate.max(1))),
            rate,
            rate_after,
            migration_rate,
            stopped: None,
        }
    }

    /// Why the prober's thread stamps at normal priority, if it does.
    pub fn normal_priority(&self) -> Option<String> {
        self.prober
            .as_ref()
            .ok()
            .and_then(IcmpProber::normal_priority)
    }

    /// Whether probing works in this run.
    pub fn active(&self) -> bool {
        self.prober.is_ok()
    }

    /// Whether every one of these VMs (with a running stream) has reached sustained reachability.
    pub fn sustained(&self, keys: &[(String, String)]) -> bool {
        self.every_stream(keys, |report| report.sustained.is_observed())
    }

    /// Whether every one of these VMs (with a running stream) has answered at least once.
    pub fn answered(&self, keys: &[(String, String)]) -> bool {
        self.every_stream(keys, |report| report.first_reply.is_observed())
    }

    fn every_stream(
        &self,
        keys: &[(String, String)],
        test: impl Fn(&TargetReport) -> bool,
    ) -> bool {
        let Ok(prober) = &self.prober else {
            return true;
        };
        keys.iter().all(|key| match self.vms.get(key) {
            Some(VmProbe {
                address: Some(address),
                sent: Some(_),
                create_error: None,
                problem: None,
                report: None,
                ..
            }) => prober
                .target_report(IpAddr::V4(*address))
                .is_ok_and(|report| test(&report)),
            _ => true,
        })
    }

    /// Whether a VM answers probes steadily now, or why not (for tests that need a reachable VM).
    pub fn reachable(&self, key: &(String, String)) -> Result<(), String> {
        let (prober, address) = self.stream(key)?;
        let report = prober
            .target_report(address)
            .map_err(|e| format!("its probe stream cannot be read: {e}"))?;
        if report.sustained.is_observed() {
            Ok(())
        } else {
            Err("the VM never answered probes steadily".to_string())
        }
    }

    /// A VM's address: its Day-0 one, or the one its VMI reported.
    pub fn address(&self, key: &(String, String)) -> Option<Ipv4Addr> {
        self.vms.get(key).and_then(|vm| vm.address)
    }

    /// The running stream of a VM, or why it has none.
    fn stream(&self, key: &(String, String)) -> Result<(&IcmpProber, IpAddr), String> {
        let prober = self.prober.as_ref().map_err(Clone::clone)?;
        let vm = self
            .vms
            .get(key)
            .ok_or_else(|| format!("{}/{} is not a VM of this run", key.0, key.1))?;
        match (
            vm.address,
            vm.sent,
            &vm.create_error,
            &vm.problem,
            &vm.report,
        ) {
            (_, _, Some(error), _, _) => Err(format!("the VM create request failed: {error}")),
            (_, _, _, Some(problem), _) => Err(problem.clone()),
            (None, _, _, _, _) => Err("the VM's address was never seen in its VMI status".into()),
            (_, None, _, _, _) | (_, _, _, _, Some(_)) => {
                Err("the VM's probe stream is not running".into())
            }
            (Some(address), Some(_), None, None, None) => Ok((prober, IpAddr::V4(address))),
        }
    }

    /// Probes a VM at the migration rate (`true`) or back at the steady rate.
    pub fn migration_rate(&self, key: &(String, String), migrating: bool) -> Result<(), String> {
        let (prober, address) = self.stream(key)?;
        let rate = if migrating {
            self.migration_rate
        } else {
            self.rate_after
        };
        prober
            .set_rate(address, rate)
            .map_err(|e| format!("the probe rate could not be changed: {e}"))
    }

    /// What a VM's stream saw since `since`: loss periods and the latest reply.
    pub fn loss_since(
        &self,
        key: &(String, String),
        since: MonoStamp,
    ) -> Result<crate::measure::migration::LossWindow, String> {
        let (prober, address) = self.stream(key)?;
        let report = prober
            .target_report(address)
            .map_err(|e| format!("its probe stream cannot be read: {e}"))?;
        Ok(crate::measure::migration::LossWindow {
            loss: report.loss_since(since),
            last_reply: report.last_reply.observed().map(|r| r.received),
        })
    }

    /// Whether a VM has answered after `at` with no loss period open (probes still within the
    /// prober's timeout are not judged yet).
    pub fn answering_after(&self, key: &(String, String), at: MonoStamp) -> bool {
        self.loss_since(key, at).map_or(true, |w| {
            !w.loss.still_losing && w.last_reply.is_some_and(|r| r > at)
        })
    }

    /// The prober's reply timeout: a probe's loss is known only this long after it was sent.
    pub fn reply_timeout(&self) -> Duration {
        self.prober
            .as_ref()
            .map_or(Duration::ZERO, IcmpProber::timeout)
    }

    /// Stops the streams of these VMs and keeps their reports (before the VMs are deleted).
    pub async fn finish_vms(&mut self, keys: &[(String, String)]) {
        let Ok(prober) = &self.prober else { return };
        for key in keys {
            let Some(vm) = self.vms.get_mut(key) else {
                continue;
            };
            let (Some(address), None, Some(_)) = (vm.address, &vm.report, vm.sent) else {
                continue;
            };
            match prober.remove_target(IpAddr::V4(address)).await {
                Ok(report) => vm.report = Some(report),
                Err(e) => vm.problem = Some(format!("reading the probe stream failed: {e}")),
            }
        }
    }

    /// Stops every stream still running.
    /// The run stopped early (`why`: "interrupted by a signal", "stopped by the global --timeout"):
    /// VMs that had not answered yet are reported as cut short by it.
    pub fn stopped(&mut self, why: &str) {
        self.stopped.get_or_insert_with(|| why.to_string());
    }

    pub async fn finish_all(&mut self) {
        let keys: Vec<(String, String)> = self.vms.keys().cloned().collect();
        self.finish_vms(&keys).await;
    }

    fn sample(&self, vm: &VmProbe) -> ReachabilitySample {
        let t0 = StartInstant {
            offset: vm.sent.map(MonoStamp::since_anchor).unwrap_or_default(),
            uncertainty: vm.uncertainty,
        };
        // A first reply is known to within one probe interval, plus t0's own uncertainty.
        let resolution = self.interval + vm.uncertainty;
        let why_missing = match (
            &self.prober,
            &vm.create_error,
            vm.address,
            &vm.problem,
            &vm.report,
        ) {
            (Err(reason), _, _, _, _) => Some(reason.clone()),
            (_, Some(error), _, _, _) => Some(format!("the VM create request failed: {error}")),
            (_, _, None, _, _) => Some("the VM's address was never seen in its VMI status".into()),
            (_, _, _, Some(problem), _) => Some(problem.clone()),
            (_, _, _, _, None) => Some(match &self.stopped {
                Some(why) => format!("{why} before the VM was probed"),
                None => "the VM was never probed (the run ended first)".into(),
            }),
            _ => None,
        };
        let since_t0 = |at: MonoStamp| vm.sent.and_then(|t0| at.since(t0));
        let (first_reply, sustained, loss_derived, rtt, sent, received) =
            match (&why_missing, &vm.report) {
                (None, Some(report)) => {
                    let first = match report.first_reply.observed() {
                        Some(event) => since_t0(event.received)
                            .map(|d| Measured::Observed(Timing::new(d, resolution)))
                            .unwrap_or_else(|| Measured::missing("first reply before t0")),
                        None => Measured::missing(match &self.stopped {
                            Some(why) => format!("{why} before the VM answered"),
                            None => report
                                .first_reply
                                .missing_reason()
                                .unwrap_or("no reply")
                                .to_string(),
                        }),
                    };
                    let sustained = match report.sustained.observed() {
                        Some(event) => since_t0(event.sent)
                            .map(|d| Measured::Observed(Timing::new(d, resolution)))
                            .unwrap_or_else(|| Measured::missing("sustained before t0")),
                        None => Measured::missing(match &self.stopped {
                            Some(why) => format!("{why} before the VM answered steadily"),
                            None => report
                                .sustained
                                .missing_reason()
                                .unwrap_or("never sustained")
                                .to_string(),
                        }),
                    };
                    let loss_derived = match report.loss_derived_convergence.observed() {
                        Some(d) => Measured::Observed(Timing::new(*d, self.interval)),
                        None => Measured::missing(
                            report
                                .loss_derived_convergence
                                .missing_reason()
                                .unwrap_or("not observed")
                                .to_string(),
                        ),
                    };
                    let rtt = if report.rtt_histogram.is_empty() {
                        Measured::missing("no probe was answered")
                    } else {
                        // The prober keeps 2 significant digits; a 3-digit copy would only be
                        // larger (about 100 KB per VM, all held at once when the run ends).
                        let mut nanos = Histogram::<u64>::new(RTT_SIGNIFICANT_FIGURES)
                            .unwrap_or_else(|_| new_nanos_histogram());
                        for value in report.rtt_histogram.iter_recorded() {
                            let _ = nanos.record_n(
                                value.value_iterated_to().saturating_mul(1000),
                                u64::from(value.count_at_value()),
                            );
                        }
                        Measured::Observed(nanos)
                    };
                    (
                        first,
                        sustained,
                        loss_derived,
                        rtt,
                        report.sent,
                        report.replied,
                    )
                }
                (reason, _) => {
                    let reason = reason.clone().unwrap_or_default();
                    (
                        Measured::missing(reason.clone()),
                        Measured::missing(reason.clone()),
                        Measured::missing(reason.clone()),
                        Measured::missing(reason),
                        0,
                        0,
                    )
                }
            };
        ReachabilitySample {
            vm: vm.identity.clone(),
            address: vm.address.map(|a| a.to_string()).unwrap_or_default(),
            t0,
            first_reply,
            sustained_reachability: sustained,
            loss_derived_convergence: loss_derived,
            rtt_nanos: rtt,
            probes_sent: sent,
            probes_received: received,
            probe_interval: self.interval,
        }
    }
}

/// Starts a VM's probe stream; a refusal becomes the VM's problem.
fn start_stream(
    prober: &IcmpProber,
    vm: &mut VmProbe,
    address: Ipv4Addr,
    key: &(String, String),
    rate: ProbeRate,
    rate_after: ProbeRate,
) {
    let mut spec = TargetSpec::new(IpAddr::V4(address), format!("{}/{}", key.0, key.1));
    spec.rate = rate;
    spec.rate_after_sustained = Some(rate_after);
    if let Err(e) = prober.add_target(spec) {
        vm.problem = Some(format!("the probe stream could not start: {e}"));
    }
}

impl Reachability {
    /// A VM without a Day-0 address: its stream starts when its VMI first shows an address.
    fn observe_vmi(&mut self, key: (String, String), object: &kube::api::DynamicObject) {
        let (rate, rate_after) = (self.rate, self.rate_after);
        let Some(vm) = self.vms.get_mut(&key) else {
            return;
        };
        if !vm.dynamic || vm.address.is_some() || vm.sent.is_none() || vm.create_error.is_some() {
            return;
        }
        let Some(address) = super::vmi_ipv4(object) else {
            return;
        };
        vm.address = Some(address);
        if let Ok(prober) = &self.prober {
            start_stream(prober, vm, address, &key, rate, rate_after);
        }
    }
}

impl Measurement for Reachability {
    fn kind(&self) -> MeasurementKind {
        MeasurementKind::VmReachability
    }

    fn observe(&mut self, observation: Observation<'_>) {
        if let Some((key, vmi)) = super::applied_vmi(&observation) {
            self.observe_vmi(key, vmi);
            return;
        }
        let Observation::Request(request) = observation else {
            return;
        };
        if request.resource != VIRTUAL_MACHINE {
            return;
        }
        let key = (
            request.namespace.clone().unwrap_or_default(),
            request.name.clone(),
        );
        let Some(vm) = self.vms.get_mut(&key) else {
            return;
        };
        if vm.sent.is_some() {
            return; // a delete
        }
        vm.sent = Some(request.sent);
        vm.uncertainty = request.uncertainty();
        vm.create_error = request.error.clone();
        if let (Some(address), None) = (vm.address, &request.error) {
            let (rate, rate_after) = (self.rate, self.rate_after);
            if let (Ok(prober), Some(vm)) = (&self.prober, self.vms.get_mut(&key)) {
                start_stream(prober, vm, address, &key, rate, rate_after);
            }
        }
    }

    fn collect(&mut self, batch: Batch, out: &mut Samples) {
        let done: Vec<(String, String)> = self
            .vms
            .iter()
            .filter(|(_, vm)| match batch {
                // Only VMs whose stream is finished (churn deletes) are final before the end.
                Batch::Iteration(i) => {
                    vm.iteration == i && (vm.report.is_some() || vm.problem.is_some())
                }
                Batch::MigrationRound(_) => false,
                Batch::All => true,
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in done {
            if let Some(vm) = self.vms.remove(&key)
                && (vm.sent.is_some() || vm.create_error.is_some())
            {
                out.reachability.push(self.sample(&vm));
            }
        }
    }
}
