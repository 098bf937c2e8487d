//! UnNATed egress: the harness runs an HTTP echo endpoint on the external router's side; each VM's
//! guest calls it once from its own address (the VM template's cloud-init; the lab's dataplane does
//! the same). Per VM, the source address the endpoint saw is compared with the VM's address.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use vmbgp_probe::egress::{EgressConfig, EgressEndpoint, EgressVerdict};
use vmbgp_reporters::measured::Measured;
use vmbgp_reporters::samples::{EgressSample, MeasurementKind, Samples, StartInstant, VmIdentity};

use super::{Batch, Measurement, Observation};
use crate::clock::{MonoStamp, RunClock};
use crate::config::VmSpec;
use crate::kube::VIRTUAL_MACHINE;

/// Calls kept at most (one or a few per VM).
const MAX_RECORDS: usize = 100_000;

#[derive(Debug)]
struct VmEgress {
    identity: VmIdentity,
    address: Option<Ipv4Addr>,
    sent: Option<MonoStamp>,
    uncertainty: Duration,
}

pub struct Egress {
    endpoint: Result<EgressEndpoint, String>,
    vms: BTreeMap<(String, String), VmEgress>,
}

impl std::fmt::Debug for Egress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Egress")
            .field("vms", &self.vms.len())
            .finish_non_exhaustive()
    }
}

impl Egress {
    /// Starts the endpoint on `listen` inside `netns`; when it cannot start, values are missing.
    pub async fn start(
        clock: RunClock,
        netns: Option<String>,
        listen: SocketAddr,
        vms: &[VmSpec],
    ) -> Self {
        let endpoint = EgressEndpoint::start(
            clock,
            EgressConfig {
                netns,
                listen,
                // The endpoint lives for this run only; calls are matched by VM name or address.
                run_uuid: None,
                max_records: MAX_RECORDS,
            },
        )
        .await
        .map_err(|e| {
            format!(
                "the egress endpoint could not listen on {listen}: {}",
                crate::error_chain(&e)
            )
        });
        Self::with_endpoint(endpoint, vms)
    }

    /// No endpoint in this run.
    pub fn disabled(reason: &str, vms: &[VmSpec]) -> Self {
        Self::with_endpoint(Err(reason.to_string()), vms)
    }

    fn with_endpoint(endpoint: Result<EgressEndpoint, String>, vms: &[VmSpec]) -> Self {
        let vms = vms
            .iter()
            .map(|vm| {
                let egress = VmEgress {
                    identity: VmIdentity {
                        namespace: vm.namespace.clone(),
                        vm_name: vm.name.clone(),
                        job_iteration: u64::from(vm.iteration),
                        replica: u64::from(vm.replica),
                    },
                    address: vm.static_ip,
                    sent: None,
                    uncertainty: Duration::ZERO,
                };
                ((vm.namespace.clone(), vm.name.clone()), egress)
            })
            .collect();
        Egress { endpoint, vms }
    }

    /// Whether the endpoint runs, or why not.
    pub fn status(&self) -> Result<(), &str> {
        self.endpoint.as_ref().map(|_| ()).map_err(String::as_str)
    }

    /// Stops the endpoint (after the samples were collected).
    pub async fn shutdown(&mut self) {
        if let Ok(endpoint) = std::mem::replace(&mut self.endpoint, Err("stopped".into())) {
            endpoint.shutdown().await;
        }
    }

    fn sample(&self, key: &(String, String), vm: &VmEgress) -> EgressSample {
        let seen = match (&self.endpoint, vm.address) {
            (Err(reason), _) => Measured::missing(reason.clone()),
            (Ok(_), None) => {
                Measured::missing("the VM's address was never seen, so there is nothing to compare")
            }
            (Ok(endpoint), Some(address)) => {
                match endpoint.verdict(&format!("{}/{}", key.0, key.1), IpAddr::V4(address)) {
                    EgressVerdict::Unnated { .. } => Measured::Observed(address.to_string()),
                    EgressVerdict::Natted { sources, .. } => {
                        match sources.iter().find(|s| **s != IpAddr::V4(address)) {
                            Some(source) => Measured::Observed(source.to_string()),
                            None => Measured::missing(
                                "NATed verdict without a source other than the VM's",
                            ),
                        }
                    }
                    EgressVerdict::NotSeen { reason } => Measured::missing(reason),
                }
            }
        };
        EgressSample {
            vm: vm.identity.clone(),
            t0: StartInstant {
                offset: vm.sent.map(MonoStamp::since_anchor).unwrap_or_default(),
                uncertainty: vm.uncertainty,
            },
            vm_address: vm.address.map(|a| a.to_string()).unwrap_or_default(),
            source_address_seen: seen,
        }
    }
}

impl Measurement for Egress {
    fn kind(&self) -> MeasurementKind {
        MeasurementKind::VmEgress
    }

    fn observe(&mut self, observation: Observation<'_>) {
        if let Some((key, vmi)) = super::applied_vmi(&observation) {
            // A VM without a Day-0 address is compared with the address its VMI reports.
            if let Some(vm) = self.vms.get_mut(&key)
                && vm.address.is_none()
            {
                vm.address = super::vmi_ipv4(vmi);
            }
            return;
        }
        let Observation::Request(request) = observation else {
            return;
        };
        if request.resource != VIRTUAL_MACHINE || request.error.is_some() {
            return;
        }
        let key = (
            request.namespace.clone().unwrap_or_default(),
            request.name.clone(),
        );
        if let Some(vm) = self.vms.get_mut(&key)
            && vm.sent.is_none()
        {
            vm.sent = Some(request.sent);
            vm.uncertainty = request.uncertainty();
        }
    }

    fn collect(&mut self, batch: Batch, out: &mut Samples) {
        // Calls may arrive until the VM is gone: verdicts are final at the end of the run.
        if batch != Batch::All {
            return;
        }
        for (key, vm) in &self.vms {
            if vm.sent.is_some() {
                out.egress.push(self.sample(key, vm));
            }
        }
        self.vms.clear();
    }
}
