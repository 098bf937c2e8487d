//! The frr-k8s emulation task: watches FRRConfigurations (in the frr-k8s namespace) and Nodes through
//! the lab's Kubernetes API like the real frr-k8s, merges and renders each node's config, applies it to
//! the node's FRR over the vty socket, and publishes `FRRNodeState` (cluster-scoped, named after the
//! node: `runningConfig`, `lastConversionResult`, `lastReloadResult`) and `BGPSessionState` (namespaced,
//! `generateName: <node>-`, labels `frrk8s.metallb.io/{node,peer,vrf}`, `status.bgpStatus` from bgpd's
//! real neighbour state, `bfdStatus: N/A`) — the shapes of frr-k8s's own controllers.
//!
//! Debounce (off by default): when set, the first change of a burst arms a timer of that length and
//! later changes do not re-arm it, like frr-k8s's reload debouncer (`internal/frr/config.go`
//! `debouncer`: `if !timerSet { timeOut = time.After(reloadInterval) }`, 3 s by default): everything
//! that arrived by then is applied at once, and continuous churn cannot postpone a reload. Session states are polled from bgpd every
//! `session_poll` (frr-k8s resyncs periodically too) and written only when they change.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio::task::JoinHandle;

use super::apply::NodeApplier;
use super::model::{NamedConfig, merge, select_for_node};
use super::render::render;
use crate::frr::Supervisor;
use crate::names::{Router, node_name};
use crate::net_ground_truth::{GroundTruthSink, NetEvent, record_now};

/// Label keys frr-k8s puts on BGPSessionState objects.
pub const NODE_LABEL: &str = "frrk8s.metallb.io/node";
pub const PEER_LABEL: &str = "frrk8s.metallb.io/peer";
pub const VRF_LABEL: &str = "frrk8s.metallb.io/vrf";

/// Settings of the emulation.
#[derive(Debug, Clone)]
pub struct FrrK8sSettings {
    /// The namespace frr-k8s runs in (`frr-k8s-system` upstream, `openshift-frr-k8s` on OpenShift).
    pub namespace: String,
    /// Apply this long after the first change of a burst (None = apply at once, the default).
    pub debounce: Option<Duration>,
    /// How often bgpd's neighbour states are read for BGPSessionState.
    pub session_poll: Duration,
}

impl Default for FrrK8sSettings {
    fn default() -> Self {
        FrrK8sSettings {
            namespace: "frr-k8s-system".to_string(),
            debounce: None,
            session_poll: Duration::from_millis(500),
        }
    }
}

fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("frrk8s.metallb.io", "v1beta1", kind),
        plural,
    )
}

/// The running emulation; dropping it stops the task.
#[derive(Debug)]
pub struct FrrK8sEmulator {
    task: JoinHandle<()>,
}

impl FrrK8sEmulator {
    /// Starts the emulation for nodes `node-1..=nodes` of a lab. `client` talks to the lab's API.
    pub fn start(
        client: kube::Client,
        supervisor: Supervisor,
        nodes: u16,
        truth: Arc<dyn GroundTruthSink>,
        settings: FrrK8sSettings,
    ) -> Self {
        let task = tokio::spawn(run(client, supervisor, nodes, truth, settings));
        FrrK8sEmulator { task }
    }

    /// Stops the task.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for FrrK8sEmulator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

enum Change {
    Config(Box<Event<DynamicObject>>),
    Node(Box<Event<Node>>),
}

/// Per-node state of the emulation.
struct NodeState {
    name: String,
    applier: NodeApplier,
    last_rendered: Option<String>,
    conversion: String,
    reload: String,
    node_state_published: Option<(String, String, String)>,
    sessions_published: Option<BTreeMap<String, String>>,
}

async fn run(
    client: kube::Client,
    supervisor: Supervisor,
    nodes: u16,
    truth: Arc<dyn GroundTruthSink>,
    settings: FrrK8sSettings,
) {
    let config_ar = resource("FRRConfiguration", "frrconfigurations");
    let configs_api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &settings.namespace, &config_ar);
    let nodes_api: Api<Node> = Api::all(client.clone());
    let config_events = watcher::watcher(configs_api, watcher::Config::default())
        .default_backoff()
        .filter_map(|r| async move { r.ok().map(|e| Change::Config(Box::new(e))) });
    let node_events = watcher::watcher(nodes_api, watcher::Config::default())
        .default_backoff()
        .filter_map(|r| async move { r.ok().map(|e| Change::Node(Box::new(e))) });
    let mut events = std::pin::pin!(futures::stream::select(config_events, node_events));

    let mut states: Vec<NodeState> = (1..=nodes)
        .map(|n| NodeState {
            name: node_name(n),
            applier: NodeApplier::for_lab_node(Router::Node(n), supervisor.clone()),
            last_rendered: None,
            conversion: String::new(),
            reload: String::new(),
            node_state_published: None,
            sessions_published: None,
        })
        .collect();
    let mut configs: BTreeMap<String, NamedConfig> = BTreeMap::new();
    let mut staged_configs: Option<BTreeMap<String, NamedConfig>> = None;
    let mut labels: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut staged_labels: Option<BTreeMap<String, BTreeMap<String, String>>> = None;
    let mut dirty = false;
    let mut ready = (false, false);
    let mut poll = tokio::time::interval(settings.session_poll);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let debounce = settings.debounce.unwrap_or(Duration::ZERO);
    let far = Duration::from_secs(3600 * 24);
    let reconcile_at = tokio::time::sleep(far);
    tokio::pin!(reconcile_at);

    loop {
        tokio::select! {
            change = events.next() => {
                let Some(change) = change else { return };
                let changed = match change {
                    Change::Config(ev) => {
                        let ev = *ev;
                        let done = matches!(ev, Event::InitDone);
                        let c = apply_event(ev, &mut configs, &mut staged_configs, named_config);
                        if done { ready.0 = true; }
                        c
                    }
                    Change::Node(ev) => {
                        let ev = *ev;
                        let done = matches!(ev, Event::InitDone);
                        let c = apply_event(ev, &mut labels, &mut staged_labels, node_labels);
                        if done { ready.1 = true; }
                        c
                    }
                };
                if changed && ready.0 && ready.1 {
                    // Armed by the first change only: later ones ride along, as in frr-k8s.
                    if !dirty {
                        reconcile_at.as_mut().reset(tokio::time::Instant::now() + debounce);
                    }
                    dirty = true;
                }
            }
            () = &mut reconcile_at, if dirty => {
                dirty = false;
                reconcile_at.as_mut().reset(tokio::time::Instant::now() + far);
                let all: Vec<NamedConfig> = configs.values().cloned().collect();
                // Nodes are independent FRR instances: apply to all of them concurrently, as each
                // node's own frr-k8s pod would.
                let (all, labels, truth, client) = (&all, &labels, truth.as_ref(), &client);
                futures::future::join_all(states.iter_mut().map(|st| async move {
                    reconcile_node(st, all, labels, truth).await;
                    publish_node_state(client, st).await;
                }))
                .await;
            }
            _ = poll.tick() => {
                let all: Vec<NamedConfig> = configs.values().cloned().collect();
                for (i, st) in states.iter_mut().enumerate() {
                    // Retry an apply that failed (FRR was unreachable, e.g. restarting).
                    if ready.0 && ready.1 && st.last_rendered.is_none() && st.reload.starts_with("error") {
                        reconcile_node(st, &all, &labels, truth.as_ref()).await;
                    }
                    // Retry a status write that failed earlier.
                    publish_node_state(&client, st).await;
                    let router = Router::Node(i as u16 + 1);
                    publish_sessions(&client, &supervisor, router, &settings.namespace, st).await;
                }
            }
        }
    }
}

/// Applies a watcher event to a keyed map (with init staging); returns whether the map changed.
fn apply_event<K, V: PartialEq>(
    ev: Event<K>,
    map: &mut BTreeMap<String, V>,
    staged: &mut Option<BTreeMap<String, V>>,
    convert: fn(&K) -> Option<(String, V)>,
) -> bool {
    match ev {
        Event::Init => {
            *staged = Some(BTreeMap::new());
            false
        }
        Event::InitApply(obj) => {
            if let (Some(s), Some((k, v))) = (staged.as_mut(), convert(&obj)) {
                s.insert(k, v);
            }
            false
        }
        Event::InitDone => {
            let new = staged.take().unwrap_or_default();
            let changed = *map != new;
            *map = new;
            changed || map.is_empty()
        }
        // An unchanged object still counts: an unchanged render is not re-applied anyway.
        Event::Apply(obj) => convert(&obj).is_some_and(|(k, v)| {
            map.insert(k, v);
            true
        }),
        Event::Delete(obj) => convert(&obj).is_some_and(|(k, _)| map.remove(&k).is_some()),
    }
}

fn named_config(obj: &DynamicObject) -> Option<(String, NamedConfig)> {
    let name = obj.metadata.name.clone()?;
    let key = format!(
        "{}/{name}",
        obj.metadata.namespace.clone().unwrap_or_default()
    );
    // A spec that does not parse is kept as a conversion error for every node (as frr-k8s reports it).
    let spec = obj
        .data
        .get("spec")
        .cloned()
        .unwrap_or(serde_json::Value::Null);
    let spec = match serde_json::from_value(spec) {
        Ok(spec) => spec,
        Err(e) => {
            tracing::warn!(config = %key, error = %e, "FRRConfiguration spec does not parse");
            super::model::FrrConfigurationSpec {
                raw: Some(super::model::RawConfig {
                    priority: i64::MIN,
                    raw_config: format!("! invalid spec: {e}"),
                }),
                ..Default::default()
            }
        }
    };
    Some((key.clone(), NamedConfig { name: key, spec }))
}

fn node_labels(node: &Node) -> Option<(String, BTreeMap<String, String>)> {
    Some((
        node.metadata.name.clone()?,
        node.metadata.labels.clone().unwrap_or_default(),
    ))
}

async fn reconcile_node(
    st: &mut NodeState,
    configs: &[NamedConfig],
    labels: &BTreeMap<String, BTreeMap<String, String>>,
    truth: &dyn GroundTruthSink,
) {
    // A node without a Node object is matched by its hostname label only.
    let node_labels = labels.get(&st.name).cloned().unwrap_or_else(|| {
        BTreeMap::from([("kubernetes.io/hostname".to_string(), st.name.clone())])
    });
    let selected = select_for_node(configs, &node_labels);
    let merged = match merge(&st.name, &selected) {
        Ok(m) => m,
        Err(e) => {
            // Keep the last valid config running; report the error.
            st.conversion = e.to_string();
            return;
        }
    };
    st.conversion = "success".to_string();
    let text = render(&merged);
    if st.last_rendered.as_deref() == Some(text.as_str()) {
        return;
    }
    match st.applier.apply(&text).await {
        Ok(outcome) => {
            st.reload = outcome.result_text();
            record_now(
                truth,
                NetEvent::FrrConfigApplied {
                    node: st.name.clone(),
                    prefixes_added: outcome.prefixes_added.clone(),
                    prefixes_removed: outcome.prefixes_removed.clone(),
                    commands: outcome.commands,
                    result: st.reload.clone(),
                },
            );
            st.last_rendered = Some(text);
        }
        Err(e) => {
            // FRR unreachable (e.g. bgpd restarting): retried at the next change or poll.
            st.reload = format!("error: {e}");
            st.last_rendered = None;
        }
    }
}

async fn publish_node_state(client: &kube::Client, st: &mut NodeState) {
    let running = st.last_rendered.clone().unwrap_or_default();
    let desired = (running, st.conversion.clone(), st.reload.clone());
    if st.conversion.is_empty() || st.node_state_published.as_ref() == Some(&desired) {
        return;
    }
    let api: Api<DynamicObject> =
        Api::all_with(client.clone(), &resource("FRRNodeState", "frrnodestates"));
    if api.get_opt(&st.name).await.ok().flatten().is_none() {
        let obj: DynamicObject = match serde_json::from_value(serde_json::json!({
            "apiVersion": "frrk8s.metallb.io/v1beta1",
            "kind": "FRRNodeState",
            "metadata": {"name": st.name},
            "spec": {}
        })) {
            Ok(o) => o,
            Err(_) => return,
        };
        if let Err(e) = api.create(&PostParams::default(), &obj).await {
            tracing::debug!(node = %st.name, error = %e, "creating FRRNodeState");
        }
    }
    let patch = serde_json::json!({"status": {
        "runningConfig": desired.0,
        "lastConversionResult": desired.1,
        "lastReloadResult": desired.2,
    }});
    match api
        .patch_status(&st.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => st.node_state_published = Some(desired),
        Err(e) => tracing::debug!(node = %st.name, error = %e, "patching FRRNodeState status"),
    }
}

async fn publish_sessions(
    client: &kube::Client,
    supervisor: &Supervisor,
    router: Router,
    namespace: &str,
    st: &mut NodeState,
) {
    let Ok(neighbors) = supervisor.neighbors(router).await else {
        return; // bgpd not answering (restarting): keep the published states
    };
    let desired: BTreeMap<String, String> = neighbors
        .into_iter()
        .map(|(addr, n)| (addr.to_string(), n.state))
        .collect();
    if st.sessions_published.as_ref() == Some(&desired) {
        return;
    }
    let api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        namespace,
        &resource("BGPSessionState", "bgpsessionstates"),
    );
    let Ok(existing) = api
        .list(&ListParams::default().labels(&format!("{NODE_LABEL}={}", st.name)))
        .await
    else {
        return;
    };
    let mut ok = true;
    let mut by_peer: BTreeMap<String, DynamicObject> = BTreeMap::new();
    for obj in existing.items {
        let peer = obj
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(PEER_LABEL).cloned())
            .unwrap_or_default();
        if desired.contains_key(&peer) && !by_peer.contains_key(&peer) {
            by_peer.insert(peer, obj);
        } else if let Some(name) = obj.metadata.name.as_deref() {
            // A neighbour that no longer exists (or a duplicate): delete it, like frr-k8s.
            ok &= api.delete(name, &DeleteParams::default()).await.is_ok();
        }
    }
    for (peer, state) in &desired {
        let status = serde_json::json!({"status": {
            "node": st.name, "peer": peer, "vrf": "", "bgpStatus": state, "bfdStatus": "N/A"
        }});
        let name = match by_peer.get(peer) {
            Some(obj) => {
                let current = obj.data.get("status").and_then(|s| s.get("bgpStatus"));
                if current.and_then(|c| c.as_str()) == Some(state.as_str()) {
                    continue;
                }
                obj.metadata.name.clone()
            }
            None => {
                let obj: Result<DynamicObject, _> = serde_json::from_value(serde_json::json!({
                    "apiVersion": "frrk8s.metallb.io/v1beta1",
                    "kind": "BGPSessionState",
                    "metadata": {
                        "generateName": format!("{}-", st.name),
                        "namespace": namespace,
                        "labels": {NODE_LABEL: st.name, PEER_LABEL: peer, VRF_LABEL: ""}
                    },
                    "spec": {}
                }));
                match obj {
                    Ok(obj) => match api.create(&PostParams::default(), &obj).await {
                        Ok(created) => created.metadata.name,
                        Err(e) => {
                            tracing::debug!(node = %st.name, error = %e, "creating BGPSessionState");
                            None
                        }
                    },
                    Err(_) => None,
                }
            }
        };
        let Some(name) = name else {
            ok = false;
            continue;
        };
        ok &= api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .is_ok();
    }
    if ok {
        st.sessions_published = Some(desired);
    }
}
