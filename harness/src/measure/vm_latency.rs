//! VM lifecycle latency (kube-burner's `vmiLatencyMeasurement`, plus IPAMClaim IPsAllocated and IP
//! visible): from the VM's create request (t0, harness clock) to the arrival of the watch event that
//! first showed each phase. API-server timestamps (1 s resolution) are kept in separate fields,
//! relative to the VM's creationTimestamp, for cross-checking only.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::api::DynamicObject;
use serde_json::Value;
use vmbgp_reporters::measured::{Measured, Timing};
use vmbgp_reporters::samples::{
    MeasurementKind, Samples, StartInstant, VmIdentity, VmLatencySample, VmPhase,
};

use super::{Batch, Measurement, Observation};
use crate::clock::MonoStamp;
use crate::config::VmSpec;
use crate::kube::apply::Verb;
use crate::kube::watch::{Change, WatchMessage};
use crate::kube::{IPAM_CLAIM, VIRTUAL_MACHINE, VMI};

/// API-server timestamps have whole-second resolution.
const SERVER_RESOLUTION: Duration = Duration::from_secs(1);

/// Phases this measurement records, in lifecycle order.
pub const PHASES: [VmPhase; 8] = [
    VmPhase::VmiCreated,
    VmPhase::VmiPending,
    VmPhase::VmiScheduling,
    VmPhase::VmiScheduled,
    VmPhase::VmiRunning,
    VmPhase::VmReady,
    VmPhase::IpamClaimIpsAllocated,
    VmPhase::IpVisible,
];

#[derive(Debug)]
struct VmTrack {
    identity: VmIdentity,
    iteration: u32,
    sent: Option<MonoStamp>,
    uncertainty: Duration,
    create_error: Option<String>,
    seen: BTreeMap<VmPhase, MonoStamp>,
    server: BTreeMap<VmPhase, DateTime<Utc>>,
    vm_created_server: Option<DateTime<Utc>>,
    vmi_name: Option<String>,
    node_name: Option<String>,
    /// The VM's delete request (churn), its uncertainty, and when its IPAMClaims were seen.
    deleted: Option<(MonoStamp, Duration)>,
    claims_seen: bool,
    claims_gone: Option<MonoStamp>,
}

/// Tracks every VM of the plan by namespace and name.
#[derive(Debug, Default)]
pub struct VmLatency {
    vms: BTreeMap<(String, String), VmTrack>,
    /// Whether VMs are deleted while measuring (churn), so claim release is measured.
    deletes_vms: bool,
}

impl VmLatency {
    /// `deletes_vms`: the run deletes VMs while measuring (churn), so the time from a VM's delete
    /// request to its IPAMClaim gone is measured; elsewhere it is not applicable.
    pub fn new(vms: &[VmSpec], deletes_vms: bool) -> Self {
        let vms = vms
            .iter()
            .map(|vm| {
                let track = VmTrack {
                    identity: VmIdentity {
                        namespace: vm.namespace.clone(),
                        vm_name: vm.name.clone(),
                        job_iteration: u64::from(vm.iteration),
                        replica: u64::from(vm.replica),
                    },
                    iteration: vm.iteration,
                    sent: None,
                    uncertainty: Duration::ZERO,
                    create_error: None,
                    seen: BTreeMap::new(),
                    server: BTreeMap::new(),
                    vm_created_server: None,
                    vmi_name: None,
                    node_name: None,
                    deleted: None,
                    claims_seen: false,
                    claims_gone: None,
                };
                ((vm.namespace.clone(), vm.name.clone()), track)
            })
            .collect();
        VmLatency { vms, deletes_vms }
    }

    /// Whether every phase of the VM has been seen (used by waits and tests).
    pub fn complete(&self, namespace: &str, name: &str) -> bool {
        self.vms
            .get(&(namespace.to_string(), name.to_string()))
            .is_some_and(|t| PHASES.iter().all(|p| t.seen.contains_key(p)))
    }

    fn track(&mut self, object: &DynamicObject, name: &str) -> Option<&mut VmTrack> {
        let namespace = object.metadata.namespace.clone()?;
        self.vms.get_mut(&(namespace, name.to_string()))
    }

    fn observe_vmi(&mut self, at: MonoStamp, object: &DynamicObject) {
        let Some(name) = object.metadata.name.clone() else {
            return;
        };
        let Some(track) = self.track(object, &name) else {
            return;
        };
        track.vmi_name = Some(name);
        mark(track, VmPhase::VmiCreated, at);
        if let Some(created) = object.metadata.creation_timestamp.as_ref() {
            track
                .server
                .entry(VmPhase::VmiCreated)
                .or_insert_with(|| to_chrono(created));
        }
        let status = &object.data["status"];
        if let Some(phase) = status["phase"].as_str().and_then(phase_of) {
            mark(track, phase, at);
        }
        for entry in status["phaseTransitionTimestamps"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if let (Some(phase), Some(ts)) = (
                entry["phase"].as_str().and_then(phase_of),
                entry["phaseTransitionTimestamp"]
                    .as_str()
                    .and_then(parse_time),
            ) {
                track.server.entry(phase).or_insert(ts);
            }
        }
        if let Some(node) = status["nodeName"].as_str() {
            track.node_name = Some(node.to_string());
        }
        let has_ip = status["interfaces"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|iface| {
                iface["ipAddress"].as_str().is_some_and(|ip| !ip.is_empty())
                    || iface["ipAddresses"]
                        .as_array()
                        .is_some_and(|ips| !ips.is_empty())
            });
        if has_ip {
            mark(track, VmPhase::IpVisible, at);
        }
    }

    fn observe_vm(&mut self, at: MonoStamp, object: &DynamicObject) {
        let Some(name) = object.metadata.name.clone() else {
            return;
        };
        let Some(track) = self.track(object, &name) else {
            return;
        };
        if let Some(created) = object.metadata.creation_timestamp.as_ref() {
            track
                .vm_created_server
                .get_or_insert_with(|| to_chrono(created));
        }
        let status = &object.data["status"];
        if let Some(ready) = condition(status, "Ready").filter(|c| c["status"] == "True") {
            mark(track, VmPhase::VmReady, at);
            if let Some(ts) = ready["lastTransitionTime"].as_str().and_then(parse_time) {
                track.server.entry(VmPhase::VmReady).or_insert(ts);
            }
        } else if status["ready"] == Value::Bool(true) {
            mark(track, VmPhase::VmReady, at);
        }
    }

    /// The VM a claim belongs to: kubevirt-ipam-controller names claims `<vm>.<network>`.
    fn claim_track(&mut self, object: &DynamicObject) -> Option<&mut VmTrack> {
        let claim = object.metadata.name.as_deref()?;
        let (vm, _network) = claim.split_once('.')?;
        let vm = vm.to_string();
        self.track(object, &vm)
    }

    fn observe_claim_deleted(&mut self, at: MonoStamp, object: &DynamicObject) {
        // One claim per network; the harness attaches each VM to one network.
        if let Some(track) = self.claim_track(object)
            && track.deleted.is_some()
        {
            track.claims_gone.get_or_insert(at);
        }
    }

    fn observe_claim(&mut self, at: MonoStamp, object: &DynamicObject) {
        let Some(track) = self.claim_track(object) else {
            return;
        };
        track.claims_seen = true;
        if let Some(allocated) =
            condition(&object.data["status"], "IPsAllocated").filter(|c| c["status"] == "True")
        {
            mark(track, VmPhase::IpamClaimIpsAllocated, at);
            if let Some(ts) = allocated["lastTransitionTime"]
                .as_str()
                .and_then(parse_time)
            {
                track
                    .server
                    .entry(VmPhase::IpamClaimIpsAllocated)
                    .or_insert(ts);
            }
        }
    }

    fn sample(&self, track: &VmTrack) -> VmLatencySample {
        let t0 = StartInstant {
            offset: track.sent.map(MonoStamp::since_anchor).unwrap_or_default(),
            uncertainty: track.uncertainty,
        };
        let resolution = track.uncertainty.max(Duration::from_micros(1));
        let harness = PHASES
            .iter()
            .map(|phase| {
                let value = match (track.sent, &track.create_error, track.seen.get(phase)) {
                    (_, Some(error), _) => {
                        Measured::missing(format!("the VM create request failed: {error}"))
                    }
                    (None, None, _) => {
                        Measured::missing("the VM was never created (the run ended first)")
                    }
                    (Some(sent), None, Some(seen)) => match seen.since(sent) {
                        Some(latency) => Measured::Observed(Timing::new(latency, resolution)),
                        None => Measured::missing("observed before the create request was sent"),
                    },
                    (Some(_), None, None) => Measured::missing(missing_reason(*phase, track)),
                };
                (*phase, value)
            })
            .collect();
        let server = PHASES
            .iter()
            .map(|phase| {
                let value = match (track.vm_created_server, track.server.get(phase)) {
                    (Some(created), Some(at)) => Measured::Observed(Timing::from_signed_nanos(
                        (*at - created).num_nanoseconds().unwrap_or(i64::MAX),
                        SERVER_RESOLUTION,
                    )),
                    (None, _) => Measured::missing("the VM's creationTimestamp was not observed"),
                    (Some(_), None) => {
                        Measured::missing("the API server reported no timestamp for this phase")
                    }
                };
                (*phase, value)
            })
            .collect();
        VmLatencySample {
            vm: track.identity.clone(),
            vmi_name: track.vmi_name.clone(),
            pod_name: None,
            node_name: track.node_name.clone(),
            t0,
            harness,
            server,
            claim_release: self.claim_release(track),
        }
    }

    /// VM delete request → its IPAMClaim gone (OVN-K frees the address only then).
    fn claim_release(&self, track: &VmTrack) -> Measured<Timing> {
        if !self.deletes_vms {
            return Measured::not_applicable(
                "VMs are deleted only at cleanup, after measuring (only churn runs delete VMs while measuring)",
            );
        }
        match (track.deleted, track.claims_gone) {
            (None, _) => Measured::missing("the VM was not deleted (the run ended first)"),
            (Some(_), None) if !track.claims_seen => {
                Measured::missing("no IPAMClaim of this VM was observed")
            }
            (Some(_), None) => {
                Measured::missing("its IPAMClaim was still present when the wait ended")
            }
            (Some((sent, uncertainty)), Some(gone)) => match gone.since(sent) {
                Some(latency) => Measured::Observed(Timing::new(
                    latency,
                    uncertainty.max(Duration::from_micros(1)),
                )),
                None => Measured::missing("observed before the delete request was sent"),
            },
        }
    }
}

fn missing_reason(phase: VmPhase, track: &VmTrack) -> String {
    let later_seen = PHASES.iter().skip_while(|p| **p != phase).skip(1).any(|p| {
        track.seen.contains_key(p)
            && !matches!(p, VmPhase::IpamClaimIpsAllocated | VmPhase::IpVisible)
    });
    match phase {
        _ if later_seen => format!(
            "phase {} was never observed: the VMI moved past it between two events",
            phase.quantile_name()
        ),
        VmPhase::VmiCreated => "no VirtualMachineInstance appeared before the wait ended".into(),
        VmPhase::IpamClaimIpsAllocated => {
            "the IPAMClaim never reported IPsAllocated=True before the wait ended".into()
        }
        VmPhase::IpVisible => {
            "the VMI status never showed an IP address before the wait ended".into()
        }
        other => format!(
            "{} was not reached before the wait ended",
            other.quantile_name()
        ),
    }
}

fn mark(track: &mut VmTrack, phase: VmPhase, at: MonoStamp) {
    track.seen.entry(phase).or_insert(at);
}

fn phase_of(phase: &str) -> Option<VmPhase> {
    match phase {
        "Pending" => Some(VmPhase::VmiPending),
        "Scheduling" => Some(VmPhase::VmiScheduling),
        "Scheduled" => Some(VmPhase::VmiScheduled),
        "Running" => Some(VmPhase::VmiRunning),
        _ => None,
    }
}

fn condition<'a>(status: &'a Value, kind: &str) -> Option<&'a Value> {
    status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn to_chrono(time: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> DateTime<Utc> {
    DateTime::from_timestamp(time.0.as_second(), time.0.subsec_nanosecond().max(0) as u32)
        .unwrap_or_default()
}

impl Measurement for VmLatency {
    fn kind(&self) -> MeasurementKind {
        MeasurementKind::VmLatency
    }

    fn observe(&mut self, observation: Observation<'_>) {
        match observation {
            Observation::Request(request) if request.resource == VIRTUAL_MACHINE => {
                let key = (
                    request.namespace.clone().unwrap_or_default(),
                    request.name.clone(),
                );
                let Some(track) = self.vms.get_mut(&key) else {
                    return;
                };
                match request.verb {
                    Verb::Create if track.sent.is_none() => {
                        track.sent = Some(request.sent);
                        track.uncertainty = request.uncertainty();
                        track.create_error = request.error.clone();
                    }
                    Verb::Delete if track.deleted.is_none() && request.error.is_none() => {
                        track.deleted = Some((request.sent, request.uncertainty()));
                    }
                    Verb::Create | Verb::Delete => {}
                }
            }
            Observation::Request(_) => {}
            Observation::Watch(WatchMessage::Object {
                at,
                resource,
                change: Change::Applied,
                object,
            }) => {
                if *resource == VMI {
                    self.observe_vmi(*at, object);
                } else if *resource == VIRTUAL_MACHINE {
                    self.observe_vm(*at, object);
                } else if *resource == IPAM_CLAIM {
                    self.observe_claim(*at, object);
                }
            }
            Observation::Watch(WatchMessage::Object {
                at,
                resource,
                change: Change::Deleted,
                object,
            }) if *resource == IPAM_CLAIM => self.observe_claim_deleted(*at, object),
            Observation::Watch(_)
            | Observation::Bmp(_)
            | Observation::Fib(_)
            | Observation::Session(_) => {}
        }
    }

    fn collect(&mut self, batch: Batch, out: &mut Samples) {
        let done: Vec<(String, String)> = self
            .vms
            .iter()
            .filter(|(_, t)| match batch {
                Batch::Iteration(i) => t.iteration == i,
                Batch::MigrationRound(_) => false,
                Batch::All => true,
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in done {
            if let Some(track) = self.vms.remove(&key) {
                // VMs the run never got to create are not samples of this run.
                if track.sent.is_some() || track.create_error.is_some() {
                    out.vm_latency.push(self.sample(&track));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::apply::Request;
    use std::sync::Arc;

    fn vm_spec() -> VmSpec {
        VmSpec {
            name: "vm-0-1".into(),
            namespace: "vmbgp-0".into(),
            network: "vmbgp-0".into(),
            iteration: 0,
            replica: 1,
            static_ip: None,
        }
    }

    fn ms(n: u64) -> MonoStamp {
        MonoStamp::from_offset(Duration::from_millis(n))
    }

    fn event(at: u64, resource: crate::kube::Resource, object: Value) -> WatchMessage {
        WatchMessage::Object {
            at: ms(at),
            resource,
            change: Change::Applied,
            object: Arc::new(serde_json::from_value(object).expect("object")),
        }
    }

    fn created(sent: u64, answered: u64) -> Request {
        Request {
            verb: Verb::Create,
            resource: VIRTUAL_MACHINE,
            namespace: Some("vmbgp-0".into()),
            name: "vm-0-1".into(),
            sent: ms(sent),
            answered: ms(answered),
            error: None,
            error_code: None,
            retries: 0,
        }
    }

    fn claim(at: u64, change: Change) -> WatchMessage {
        WatchMessage::Object {
            at: ms(at),
            resource: IPAM_CLAIM,
            change,
            object: Arc::new(
                serde_json::from_value(serde_json::json!({
                    "apiVersion": "k8s.cni.cncf.io/v1alpha1", "kind": "IPAMClaim",
                    "metadata": {"name": "vm-0-1.default", "namespace": "vmbgp-0"},
                }))
                .expect("claim"),
            ),
        }
    }

    #[test]
    fn churn_measures_delete_request_to_claim_gone() {
        let mut m = VmLatency::new(&[vm_spec()], true);
        m.observe(Observation::Request(&created(100, 103)));
        m.observe(Observation::Watch(&claim(150, Change::Applied)));
        // A claim deleted before the VM's delete request (not this run's doing) is not a release.
        let mut delete = created(1_000, 1_004);
        delete.verb = Verb::Delete;
        m.observe(Observation::Request(&delete));
        m.observe(Observation::Watch(&claim(1_045, Change::Deleted)));
        let mut out = Samples::default();
        m.collect(Batch::Iteration(0), &mut out);
        let released = out.vm_latency[0]
            .claim_release
            .observed()
            .expect("observed");
        assert_eq!(released.millis(), 45.0);
        assert_eq!(released.resolution(), Duration::from_millis(4));
    }

    #[test]
    fn claim_release_is_missing_or_not_applicable_with_the_reason() {
        let reason = |deletes: bool, steps: &dyn Fn(&mut VmLatency)| {
            let mut m = VmLatency::new(&[vm_spec()], deletes);
            m.observe(Observation::Request(&created(100, 103)));
            steps(&mut m);
            let mut out = Samples::default();
            m.collect(Batch::All, &mut out);
            match &out.vm_latency[0].claim_release {
                Measured::Missing { reason } | Measured::NotApplicable { reason } => reason.clone(),
                other => panic!("{other:?}"),
            }
        };
        assert!(reason(false, &|_| {}).contains("only churn runs"));
        assert!(reason(true, &|_| {}).contains("not deleted"));
        let delete = |m: &mut VmLatency| {
            let mut request = created(1_000, 1_001);
            request.verb = Verb::Delete;
            m.observe(Observation::Request(&request));
        };
        assert!(reason(true, &delete).contains("no IPAMClaim"));
        assert!(
            reason(true, &|m| {
                m.observe(Observation::Watch(&claim(150, Change::Applied)));
                delete(m);
            })
            .contains("still present")
        );
    }

    fn vmi(phase: &str, ip: Option<&str>) -> Value {
        serde_json::json!({
            "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
            "metadata": {"name": "vm-0-1", "namespace": "vmbgp-0", "creationTimestamp": "2026-11-28T10:00:01Z"},
            "status": {"phase": phase, "nodeName": "node-1",
                       "phaseTransitionTimestamps": [{"phase": phase, "phaseTransitionTimestamp": "2026-11-28T10:00:03Z"}],
                       "interfaces": ip.map(|ip| vec![serde_json::json!({"name": "default", "ipAddress": ip})]).unwrap_or_default()}
        })
    }

    #[test]
    fn latencies_run_from_the_create_request_to_each_event_arrival() {
        let mut m = VmLatency::new(&[vm_spec()], false);
        m.observe(Observation::Request(&created(100, 103)));
        m.observe(Observation::Watch(&event(
            101,
            VIRTUAL_MACHINE,
            serde_json::json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
                "metadata": {"name": "vm-0-1", "namespace": "vmbgp-0", "creationTimestamp": "2026-11-28T10:00:00Z"}}),
        )));
        m.observe(Observation::Watch(&event(150, VMI, vmi("Pending", None))));
        m.observe(Observation::Watch(&event(
            400,
            VMI,
            vmi("Running", Some("198.19.0.10")),
        )));
        let mut out = Samples::default();
        m.collect(Batch::Iteration(0), &mut out);
        let sample = &out.vm_latency[0];
        let millis = |p: VmPhase| sample.harness[&p].observed().map(|t| t.millis());
        assert_eq!(millis(VmPhase::VmiCreated), Some(50.0));
        assert_eq!(millis(VmPhase::VmiPending), Some(50.0));
        assert_eq!(millis(VmPhase::VmiRunning), Some(300.0));
        assert_eq!(millis(VmPhase::IpVisible), Some(300.0));
        assert_eq!(sample.t0.uncertainty, Duration::from_millis(3));
        // Skipped phases and never-seen ones are missing with a reason, never 0.
        match &sample.harness[&VmPhase::VmiScheduled] {
            Measured::Missing { reason } => assert!(reason.contains("moved past"), "{reason}"),
            other => panic!("expected missing, got {other:?}"),
        }
        match &sample.harness[&VmPhase::VmReady] {
            Measured::Missing { reason } => assert!(reason.contains("not reached"), "{reason}"),
            other => panic!("expected missing, got {other:?}"),
        }
        // Server timestamps are separate, relative to the VM's creationTimestamp, 1 s resolution.
        let server = sample.server[&VmPhase::VmiRunning]
            .observed()
            .expect("server running");
        assert_eq!(server.millis(), 3000.0);
        assert_eq!(server.resolution(), Duration::from_secs(1));
    }

    #[test]
    fn a_failed_create_reports_every_phase_missing_with_the_api_error() {
        let mut m = VmLatency::new(&[vm_spec()], false);
        let mut request = created(10, 12);
        request.error = Some("409 AlreadyExists: exists".into());
        m.observe(Observation::Request(&request));
        let mut out = Samples::default();
        m.collect(Batch::All, &mut out);
        for phase in PHASES {
            match &out.vm_latency[0].harness[&phase] {
                Measured::Missing { reason } => assert!(reason.contains("409"), "{reason}"),
                other => panic!("{phase:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn vms_never_created_are_not_samples() {
        let mut m = VmLatency::new(&[vm_spec()], false);
        let mut out = Samples::default();
        m.collect(Batch::All, &mut out);
        assert!(out.vm_latency.is_empty());
    }
}
