//! Test support for the phases: a fake Kubernetes API behind `kube::Client::new` (a
//! `tower::service_fn`, no sockets, so `tokio::time::pause` holds) that records each request and
//! answers with the watch events a cluster would send, a sink that records what the run hands
//! over, and a runner over a built-in profile's plan.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http::{Method, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use vmbgp_reporters::samples::Samples;

use super::runner::{Measurements, Runner};
use super::world::World;
use super::{Progress, RunEvent, Sink};
use crate::clock::{MonoStamp, RunClock};
use crate::config::{Plan, Shape, load_profile, plan};
use crate::kube::apply::{Applier, KNOWN_RESOURCES};
use crate::kube::retry::RetryCounts;
use crate::kube::watch::{Change, WatchMessage};
use crate::kube::{IPAM_CLAIM, Resource, VIRTUAL_MACHINE, VMI};
use crate::measure::bgp_sessions::{BgpSessions, SessionSource};
use crate::measure::egress::Egress;
use crate::measure::host_routes::HostRoutes;
use crate::measure::migration::Migrations;
use crate::measure::reachability::Reachability;
use crate::measure::route_convergence::{RouteConvergence, Sources};
use crate::measure::throughput::Throughput;
use crate::measure::vm_latency::VmLatency;
use crate::workload::{Manifest, Templates, labels, render_plan};

/// One request the fake API received.
#[derive(Debug, Clone)]
pub(super) struct Call {
    pub(super) method: Method,
    pub(super) plural: String,
    pub(super) namespace: Option<String>,
    pub(super) name: String,
    /// The object sent (creates); `Null` otherwise.
    pub(super) body: Value,
}

impl Call {
    /// `VERB plural namespace/name`, for asserting on the order of requests.
    pub(super) fn describe(&self) -> String {
        let ns = self
            .namespace
            .as_deref()
            .map(|ns| format!("{ns}/"))
            .unwrap_or_default();
        format!("{} {} {ns}{}", self.method, self.plural, self.name)
    }
}

/// How the fake cluster answers a request: the watch events (and session polls) it causes.
pub(super) type React = Arc<dyn Fn(&Call, MonoStamp) -> Vec<RunEvent> + Send + Sync>;

/// The resource of a plural the harness uses.
pub(super) fn resource_of(plural: &str) -> Resource {
    *KNOWN_RESOURCES
        .iter()
        .find(|r| r.plural == plural)
        .unwrap_or_else(|| panic!("no resource {plural}"))
}

/// A watch event: `object` applied.
pub(super) fn applied(resource: Resource, object: Value, at: MonoStamp) -> RunEvent {
    RunEvent::Watch(WatchMessage::Object {
        at,
        resource,
        change: Change::Applied,
        object: Arc::new(serde_json::from_value(object).expect("a Kubernetes object")),
    })
}

/// A watch event: the object deleted.
pub(super) fn deleted(
    resource: Resource,
    namespace: Option<&str>,
    name: &str,
    at: MonoStamp,
) -> RunEvent {
    let object = json!({
        "apiVersion": resource.api_version(), "kind": resource.kind,
        "metadata": {"name": name, "namespace": namespace},
    });
    removed(resource, object, at)
}

/// A watch event: `object` deleted (a watch delivers its last state, labels included).
pub(super) fn removed(resource: Resource, object: Value, at: MonoStamp) -> RunEvent {
    RunEvent::Watch(WatchMessage::Object {
        at,
        resource,
        change: Change::Deleted,
        object: Arc::new(serde_json::from_value(object).expect("a Kubernetes object")),
    })
}

/// The IPAMClaim kubevirt-ipam-controller makes for a VM on its network.
pub(super) fn claim(namespace: &str, vm: &str) -> Value {
    json!({
        "apiVersion": IPAM_CLAIM.api_version(), "kind": IPAM_CLAIM.kind,
        "metadata": {"name": format!("{vm}.net"), "namespace": namespace,
                     "labels": {super::CLAIM_VM_LABEL: vm}},
    })
}

/// The external router's poll showing `n` established sessions.
pub(super) fn sessions_up(n: u8, at: MonoStamp) -> RunEvent {
    let peers: serde_json::Map<String, Value> = (1..=n)
        .map(|i| {
            (
                format!("198.18.0.{i}"),
                json!({"remoteAs": 64513, "state": "Established", "pfxRcd": 1}),
            )
        })
        .collect();
    RunEvent::Session(vmbgp_bgp::session::SessionEvent::Sample(
        vmbgp_bgp::session::SessionSample {
            requested_at: at,
            answered_at: at,
            peers: vmbgp_bgp::session::parse_summary(&json!({"ipv4Unicast": {"peers": peers}})),
        },
    ))
}

/// A cluster that does what it is asked at once: networks are created and accepted, VMs become
/// ready with a running VMI, migrations succeed, deletes remove the object (a VM's VMI too), and
/// the peering template brings up `sessions` BGP sessions.
pub(super) fn cooperative(sessions: u8) -> React {
    Arc::new(move |call, at| {
        let resource = resource_of(&call.plural);
        if call.method == Method::DELETE {
            let mut events = vec![deleted(resource, call.namespace.as_deref(), &call.name, at)];
            if resource == VIRTUAL_MACHINE {
                events.push(deleted(VMI, call.namespace.as_deref(), &call.name, at));
            }
            return events;
        }
        if call.method != Method::POST {
            return Vec::new();
        }
        let mut object = call.body.clone();
        let mut events = Vec::new();
        match call.plural.as_str() {
            "clusteruserdefinednetworks" => {
                object["status"] =
                    json!({"conditions": [{"type": "NetworkCreated", "status": "True"}]});
            }
            "routeadvertisements" => object["status"] = json!({"status": "Accepted"}),
            "virtualmachines" => {
                object["status"] = json!({"ready": true});
                let vmi = json!({
                    "apiVersion": VMI.api_version(), "kind": VMI.kind,
                    "metadata": {"name": call.name, "namespace": call.namespace,
                                 "labels": call.body["metadata"]["labels"]},
                    "status": {"phase": "Running"},
                });
                events.push(applied(VMI, vmi, at));
            }
            "virtualmachineinstancemigrations" => {
                object["status"] = json!({"phase": "Succeeded"});
            }
            "frrconfigurations" => events.push(sessions_up(sessions, at)),
            _ => {}
        }
        events.insert(0, applied(resource, object, at));
        events
    })
}

/// A cluster that stores what it is sent but never reports any status.
pub(super) fn silent() -> React {
    Arc::new(|call, at| match call.method {
        Method::POST => vec![applied(resource_of(&call.plural), call.body.clone(), at)],
        _ => Vec::new(),
    })
}

/// What the run handed to its sink.
#[derive(Debug, Default)]
pub(super) struct Log {
    pub(super) batches: Vec<Samples>,
    pub(super) progress: Vec<String>,
    pub(super) counts: Vec<Progress>,
}

/// A sink that keeps everything, readable after the runner is gone.
#[derive(Debug, Clone, Default)]
pub(super) struct Recorder(Arc<Mutex<Log>>);

impl Recorder {
    pub(super) fn log(&self) -> std::sync::MutexGuard<'_, Log> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Sink for Recorder {
    fn batch(&mut self, samples: &Samples) {
        self.log().batches.push(samples.clone());
    }
    fn progress(&mut self, line: &str) {
        self.log().progress.push(line.to_string());
    }
    fn counts(&mut self, progress: &Progress) {
        self.log().counts.push(*progress);
    }
}

/// The fake API's state: what it was asked, which names it refuses as existing, how it reacts.
struct FakeApi {
    calls: Mutex<Vec<Call>>,
    /// Names whose create meets 409 AlreadyExists (owned by run `another-run`).
    taken: BTreeSet<String>,
    react: React,
    events: UnboundedSender<RunEvent>,
    clock: RunClock,
}

impl FakeApi {
    /// `/api/v1/...` or `/apis/group/version/...`, then `namespaces/ns/plural[/name]` or
    /// `plural[/name]`.
    fn route(path: &str) -> (String, Option<String>, Option<String>) {
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let rest = if segments.first() == Some(&"api") {
            &segments[2..]
        } else {
            &segments[3..]
        };
        match rest {
            ["namespaces", ns, plural, tail @ ..] => (
                plural.to_string(),
                Some(ns.to_string()),
                tail.first().map(|s| s.to_string()),
            ),
            [plural, tail @ ..] => (
                plural.to_string(),
                None,
                tail.first().map(|s| s.to_string()),
            ),
            [] => panic!("no resource in {path}"),
        }
    }

    async fn answer(
        &self,
        request: http::Request<kube::client::Body>,
    ) -> http::Response<kube::client::Body> {
        let method = request.method().clone();
        let (plural, namespace, name) = Self::route(request.uri().path());
        let bytes = request
            .into_body()
            .collect()
            .await
            .expect("the request body")
            .to_bytes();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let name = name.unwrap_or_else(|| {
            body["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        });
        let call = Call {
            method: method.clone(),
            plural,
            namespace,
            name,
            body,
        };
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(call.clone());
        let taken = self.taken.contains(&call.name);
        let (status, answer) = match method {
            Method::POST if taken => (
                StatusCode::CONFLICT,
                json!({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
                       "reason": "AlreadyExists", "code": 409,
                       "message": format!("{} already exists", call.name)}),
            ),
            Method::GET if taken => {
                let mut object = json!({"apiVersion": "v1", "kind": "Unknown",
                    "metadata": {"name": call.name, "labels": {labels::UUID: "another-run"}}});
                object["metadata"]["namespace"] = json!(call.namespace);
                (StatusCode::OK, object)
            }
            Method::POST => (StatusCode::CREATED, call.body.clone()),
            Method::DELETE => (
                StatusCode::OK,
                json!({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Success"}),
            ),
            _ => (
                StatusCode::NOT_FOUND,
                json!({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
                       "reason": "NotFound", "code": 404, "message": "not found"}),
            ),
        };
        if !taken {
            for event in (self.react)(&call, self.clock.now()) {
                let _ = self.events.send(event);
            }
        }
        http::Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(kube::client::Body::from(answer.to_string().into_bytes()))
            .expect("a response")
    }
}

/// A plan, its manifests and a fake cluster, from which tests build runners.
pub(super) struct Bench {
    pub(super) plan: Plan,
    pub(super) manifests: Vec<Manifest>,
    pub(super) cancel: CancellationToken,
    /// Events the test injects, as if a watch or the session poller had sent them.
    pub(super) events: UnboundedSender<RunEvent>,
    /// Where the sessions come from (polls unless a test says otherwise).
    pub(super) session_source: SessionSource,
    /// BGP peers the external router should have.
    pub(super) expected_peers: usize,
    /// Whether the plan's throughput tests run (their candidates are unreachable, so none sends).
    pub(super) throughput: bool,
    clock: RunClock,
    api: Arc<FakeApi>,
    client: kube::Client,
    received: Mutex<Option<UnboundedReceiver<RunEvent>>>,
}

impl Bench {
    /// A built-in profile's plan against a fake cluster that reacts with `react`. Call it inside
    /// the (paused) test runtime: the client spawns its buffer task there.
    pub(super) fn new(profile: &str, react: React) -> Self {
        Self::with_taken(profile, react, &[])
    }

    /// As [`Bench::new`], with objects named `taken` already existing (another run's).
    pub(super) fn with_taken(profile: &str, react: React, taken: &[&str]) -> Self {
        let plan = plan(
            &load_profile(profile).expect("a built-in profile"),
            &Default::default(),
        )
        .expect("a valid plan");
        let manifests =
            render_plan(&plan, &Templates::builtin().expect("templates")).expect("manifests");
        let clock = RunClock::start();
        let (events, received) = unbounded_channel();
        let api = Arc::new(FakeApi {
            calls: Mutex::new(Vec::new()),
            taken: taken.iter().map(|s| s.to_string()).collect(),
            react,
            events: events.clone(),
            clock,
        });
        let served = Arc::clone(&api);
        let service = tower::service_fn(move |request| {
            let api = Arc::clone(&served);
            async move { Ok::<_, Infallible>(api.answer(request).await) }
        });
        Bench {
            plan,
            manifests,
            cancel: CancellationToken::new(),
            events,
            session_source: SessionSource::Poll,
            expected_peers: 2,
            throughput: true,
            clock,
            api,
            client: kube::Client::new(service, "default"),
            received: Mutex::new(Some(received)),
        }
    }

    /// Every request the fake API received so far, described.
    pub(super) fn calls(&self) -> Vec<String> {
        self.api
            .calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(Call::describe)
            .collect()
    }

    /// Sends an event as if a watch had delivered it now.
    pub(super) fn inject(&self, event: impl FnOnce(MonoStamp) -> RunEvent) {
        self.events
            .send(event(self.clock.now()))
            .expect("the runner receives");
    }

    /// A runner as `run` builds it, but with the prober, egress, BMP and FIB off (no sockets),
    /// reporting to `sink`.
    /// One runner per bench: it takes the event stream.
    pub(super) fn runner<'a>(&'a self, sink: &'a mut Recorder) -> Runner<'a> {
        let plan = &self.plan;
        let events = self
            .received
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .expect("one runner per bench");
        let sources = Sources {
            bmp_off: Some("BMP is not observed in this test".into()),
            fib_off: Some("the FIB is not observed in this test".into()),
            withdraw_measured: plan.gc,
        };
        Runner {
            plan,
            clock: self.clock,
            applier: Applier::new(
                self.client.clone(),
                self.clock,
                plan.qps,
                plan.burst,
                Arc::new(RetryCounts::default()),
            ),
            events,
            world: World::new(&plan.uuid, &plan.vms),
            measurements: Measurements {
                vm_latency: VmLatency::new(&plan.vms, plan.shape == Shape::Churn),
                routes: RouteConvergence::new(&plan.networks, self.expected_peers as u64, sources),
                reach: Reachability::disabled(&plan.probes, &plan.vms),
                sessions: BgpSessions::new(self.session_source, None),
                egress: Egress::disabled("egress is not measured in this test", &plan.vms),
                migrations: Migrations::new(&self.manifests, &plan.vms, plan.probes.migration_rate),
                host_routes: HostRoutes::disabled(),
                throughput: Throughput::new(
                    self.clock,
                    None,
                    &plan.probes,
                    plan.vm_template.sink_port,
                    (!self.throughput).then(|| "throughput is not measured in this test".into()),
                ),
            },
            expected_peers: self.expected_peers,
            router_cli: None,
            controller_metrics: None,
            cancel: self.cancel.clone(),
            deadline: Instant::now() + plan.timeout,
            outcome: Default::default(),
            sink,
            progress: Progress {
                total: plan.vms.len() as u64,
                ..Progress::default()
            },
            last_progress: None,
            deleting: false,
            running: BTreeSet::new(),
            ready: BTreeSet::new(),
        }
    }
}

/// Cancels `token` after `after` of (paused) time, as a signal would.
pub(super) fn signal_after(token: &CancellationToken, after: Duration) {
    let token = token.clone();
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        token.cancel();
    });
}
