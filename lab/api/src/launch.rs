//! The `Lab` object: starts the API server and the simulated controllers in-process, seeds nodes and
//! namespaces, writes a kubeconfig, exposes ground truth and fault knobs, and stops everything cleanly.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api_ground_truth::{GroundTruth, GroundTruthKind, ObjectRef};
use crate::auth::BearerToken;
use crate::boot::BootDelay;
use crate::dataplane::{Dataplane, NoDataplane};
use crate::error::LabError;
use crate::faults::{FaultConfig, Faults};
use crate::registry::{KindId, Registry};
use crate::server::{ServerState, router};
use crate::store::{Store, Validator, WriteOptions};
use crate::tls::{LabTls, TlsListener};

/// Everything that shapes a lab. `Default` gives 3 nodes, a 50 ms boot, no faults, port 0, immediate claim
/// release.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct LabConfig {
    /// Number of nodes, named `node-1..N`.
    pub nodes: usize,
    /// Seed for every random choice (boot delays, generated names, fault draws); recorded in ground truth.
    pub seed: u64,
    pub boot_delay: BootDelay,
    /// Time between the VMI phases Pending → Scheduling → Scheduled.
    pub phase_step_ms: u64,
    /// Time a live migration spends before its switch-over.
    pub migration_ms: u64,
    pub faults: FaultConfig,
    /// JSON-lines ground-truth file (in memory only when `None`).
    pub ground_truth_path: Option<PathBuf>,
    /// Listen address; must be loopback. Port 0 picks a free port.
    pub bind: SocketAddr,
    /// Namespace frr-k8s runs in (created at start): `frr-k8s-system` upstream, `openshift-frr-k8s` on OpenShift.
    pub frr_namespace: String,
    /// Namespace OVN-K runs in (created at start).
    pub ovn_namespace: String,
    /// How often a watch asking for bookmarks gets one.
    pub bookmark_interval_ms: u64,
    /// Events kept per kind for watch resumption; older resourceVersions get 410 Gone. A real API server's
    /// watch cache keeps 100 per resource by default; 1000 leaves room for bursts.
    pub watch_history: usize,
    /// How far a watcher may fall behind before its stream is closed.
    pub watch_channel: usize,
    /// Run the simulated controllers (off: a bare API server).
    pub controllers: bool,
    /// Address pool for VMs whose namespace has no primary UDN (the cluster default network).
    pub default_pod_network: String,
    /// How long after a VM and its VMI are gone kubevirt-ipam-controller removes its finalizer from the VM's
    /// IPAMClaims (the real controller releases them on a later reconcile). Until then the claim, and its
    /// addresses, stay taken: a VM asking for the same static IP meanwhile gets `IPAddressConflict`.
    pub claim_release_delay_ms: u64,
}

impl Default for LabConfig {
    fn default() -> Self {
        LabConfig {
            nodes: 3,
            seed: 1,
            boot_delay: BootDelay::default(),
            phase_step_ms: 5,
            migration_ms: 100,
            faults: FaultConfig::default(),
            ground_truth_path: None,
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            frr_namespace: "frr-k8s-system".to_string(),
            ovn_namespace: "ovn-kubernetes".to_string(),
            bookmark_interval_ms: 5000,
            watch_history: 1000,
            watch_channel: 4096,
            controllers: true,
            default_pod_network: "198.18.128.0/20".to_string(),
            claim_release_delay_ms: 0,
        }
    }
}

/// A running lab. Dropping it cancels its tasks; call [`Lab::stop`] to wait for them.
#[derive(Debug)]
pub struct Lab {
    addr: SocketAddr,
    url: String,
    store: Arc<Store>,
    faults: Arc<Faults>,
    ground_truth: Arc<GroundTruth>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    server: Option<JoinHandle<std::io::Result<()>>>,
    config: LabConfig,
    token: BearerToken,
    ca_pem: String,
}

impl Lab {
    /// Starts a lab with the no-op dataplane.
    pub async fn start(config: LabConfig) -> Result<Lab, LabError> {
        Lab::start_with(config, Arc::new(NoDataplane), None).await
    }

    /// Starts a lab with a dataplane and an optional schema validator.
    pub async fn start_with(
        config: LabConfig,
        dataplane: Arc<dyn Dataplane>,
        validator: Option<Arc<dyn Validator>>,
    ) -> Result<Lab, LabError> {
        if !config.bind.ip().is_loopback() {
            return Err(LabError::Config(format!(
                "the lab listens on loopback only, not {}",
                config.bind
            )));
        }
        let ground_truth = Arc::new(GroundTruth::new(config.ground_truth_path.as_deref())?);
        let (registry, validator) = match validator {
            Some(v) => (default_registry()?, Some(v)),
            None => crate::validation::schema_registry_and_validator()?,
        };
        let store = Arc::new(Store::new(
            Arc::new(registry),
            validator,
            config.watch_history,
            config.watch_channel,
            config.seed,
        ));
        let faults = Arc::new(Faults::new(config.faults.clone(), config.seed));
        let token = BearerToken::generate()?;
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();

        seed_cluster(&store, &config)?;

        let listener = tokio::net::TcpListener::bind(config.bind)
            .await
            .map_err(|source| LabError::Bind {
                addr: config.bind.to_string(),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| LabError::Bind {
            addr: config.bind.to_string(),
            source,
        })?;
        let tls = LabTls::generate(addr.ip())?;
        let listener = TlsListener::new(listener, tls.server_config.clone(), shutdown.clone())
            .map_err(|source| LabError::Bind {
                addr: config.bind.to_string(),
                source,
            })?;
        let state = Arc::new(ServerState {
            store: store.clone(),
            faults: faults.clone(),
            shutdown: shutdown.clone(),
            bookmark_interval: Duration::from_millis(config.bookmark_interval_ms.max(10)),
            openapi: std::sync::OnceLock::new(),
            printers: std::sync::OnceLock::new(),
            token: token.clone(),
        });
        let app = router(state);
        let stop = shutdown.clone();
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await
        });
        ground_truth.record(
            GroundTruthKind::LabStarted,
            ObjectRef::new("Lab", "", "lab"),
            json!({"url": format!("https://{addr}"), "nodes": config.nodes, "seed": config.seed, "boot_delay": config.boot_delay, "faults": config.faults}),
        );
        if config.controllers {
            crate::controllers::spawn_all(
                crate::controllers::Ctx::new(
                    store.clone(),
                    ground_truth.clone(),
                    dataplane,
                    Arc::new(config.clone()),
                    shutdown.clone(),
                )?,
                &tasks,
            );
        }
        Ok(Lab {
            addr,
            url: format!("https://{addr}"),
            store,
            faults,
            ground_truth,
            shutdown,
            tasks,
            server: Some(server),
            config,
            token,
            ca_pem: tls.ca_pem,
        })
    }

    /// `https://127.0.0.1:<port>`; the server's certificate is signed by [`Lab::ca_pem`].
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn config(&self) -> &LabConfig {
        &self.config
    }

    /// Node names, `node-1..N`.
    pub fn node_names(&self) -> Vec<String> {
        (1..=self.config.nodes)
            .map(crate::nodes::node_name)
            .collect()
    }

    /// The bearer token every request but the public health and version paths needs (it is in the kubeconfig).
    pub fn token(&self) -> &str {
        self.token.as_str()
    }

    /// The lab's CA certificate (PEM), made at start: clients trust it to reach [`Lab::url`].
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A kubeconfig (YAML) pointing at the lab with its CA and token; context and cluster `vmbgp-lab`, namespace
    /// `default`.
    pub fn kubeconfig_yaml(&self) -> String {
        use base64::Engine;
        let ca = base64::engine::general_purpose::STANDARD.encode(&self.ca_pem);
        let cfg = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "vmbgp-lab", "cluster": {"server": self.url, "certificate-authority-data": ca}}],
            "contexts": [{"name": "vmbgp-lab", "context": {"cluster": "vmbgp-lab", "user": "vmbgp-lab", "namespace": "default"}}],
            "current-context": "vmbgp-lab",
            "users": [{"name": "vmbgp-lab", "user": {"token": self.token.as_str()}}],
            "preferences": {},
        });
        serde_saphyr::to_string(&cfg).unwrap_or_default()
    }

    /// Writes [`Lab::kubeconfig_yaml`] to `path`, readable by its owner only (it holds the token): written to a
    /// new file created with mode 0600 next to `path`, then renamed over it, so no other mode is ever seen.
    pub fn write_kubeconfig(&self, path: &Path) -> Result<(), LabError> {
        write_private(path, self.kubeconfig_yaml().as_bytes()).map_err(|source| {
            LabError::WriteKubeconfig {
                path: path.to_path_buf(),
                source,
            }
        })
    }

    /// The in-process store (same semantics as the HTTP API).
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn ground_truth(&self) -> &Arc<GroundTruth> {
        &self.ground_truth
    }

    /// The current fault knobs.
    pub fn faults(&self) -> FaultConfig {
        self.faults.config()
    }

    /// Changes the fault knobs at runtime.
    pub fn set_faults(&self, config: FaultConfig) {
        self.ground_truth.record(
            GroundTruthKind::FaultsChanged,
            ObjectRef::new("Lab", "", "lab"),
            json!(config),
        );
        self.faults.set(config);
    }

    /// Ends every open watch stream now (a "cut"); clients resume from their last resourceVersion.
    pub fn cut_watches(&self) {
        self.faults.cut_watches();
    }

    /// Forces `410 Gone`: compacts the watch history and cuts every stream, so every client must re-list.
    pub fn expire_watches(&self) {
        self.store.expire_history();
        self.ground_truth.record(
            GroundTruthKind::WatchesExpired,
            ObjectRef::new("Lab", "", "lab"),
            json!({"resourceVersion": self.store.resource_version()}),
        );
        self.faults.cut_watches();
    }

    /// Resolves a kind id (`apiVersion`, `kind`).
    pub fn kind(&self, api_version: &str, kind: &str) -> Option<KindId> {
        self.store.kind_id(api_version, kind)
    }

    /// Waits until the object exists and satisfies `pred` (event-driven; no polling).
    pub async fn wait_for(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Result<Arc<Value>, LabError> {
        let what = format!(
            "{kind} {}{name}",
            namespace.map(|n| format!("{n}/")).unwrap_or_default()
        );
        let kind_id = self
            .kind(api_version, kind)
            .ok_or_else(|| LabError::Config(format!("unknown kind {api_version} {kind}")))?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let mut rx = self.store.subscribe(kind_id);
            if let Some(o) = self.store.get_opt(kind_id, namespace, name)
                && pred(&o)
            {
                return Ok(o);
            }
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => return Err(LabError::WaitTimeout { what, waited: timeout }),
                    _ = self.shutdown.cancelled() => return Err(LabError::Stopped { what }),
                    r = rx.recv() => match r {
                        Ok(ev) => {
                            if ev.meta.name == name
                                && namespace.is_none_or(|ns| ev.meta.namespace == ns)
                                && ev.event_type != crate::store::EventType::Deleted
                            {
                                let object = ev.object();
                                if pred(&object) {
                                    return Ok(Arc::new(object));
                                }
                            }
                        }
                        Err(_) => break,
                    }
                }
            }
        }
    }

    /// Stops controllers and the server, waiting for them to finish.
    pub async fn stop(mut self) -> Result<(), LabError> {
        self.ground_truth.record(
            GroundTruthKind::LabStopped,
            ObjectRef::new("Lab", "", "lab"),
            Value::Null,
        );
        self.shutdown.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        if let Some(server) = self.server.take() {
            match server.await {
                Ok(Ok(())) | Err(_) => {}
                Ok(Err(e)) => return Err(LabError::Serve(e)),
            }
        }
        Ok(())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Writes `contents` to a fresh 0600 file beside `path` and renames it over `path`. Creating it exclusively with the
/// mode (rather than chmod after writing) leaves no moment at which another user could open it; renaming replaces
/// an older file whatever its mode.
fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the path has no file name",
        )
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(
        ".{}.{}.tmp",
        std::process::id(),
        rand::random::<u32>()
    ));
    let tmp = path.with_file_name(tmp_name);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(contents).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// The registry used when the caller brings its own validator: every kind the embedded CRDs serve.
pub fn default_registry() -> Result<Registry, LabError> {
    Registry::embedded().map_err(|e| LabError::Schema(Box::new(e)))
}

fn seed_cluster(store: &Store, config: &LabConfig) -> Result<(), LabError> {
    let seed_err = |what: String| {
        move |source| LabError::Seed {
            what,
            source: Box::new(source),
        }
    };
    let ns_kind = store
        .kind_id("v1", "Namespace")
        .ok_or_else(|| LabError::Config("no Namespace kind".to_string()))?;
    let node_kind = store
        .kind_id("v1", "Node")
        .ok_or_else(|| LabError::Config("no Node kind".to_string()))?;
    let opts = WriteOptions::default();
    // A kubeadm cluster's namespaces, plus the operators' ones.
    let mut namespaces = vec![
        "default".to_string(),
        "kube-node-lease".to_string(),
        "kube-public".to_string(),
        "kube-system".to_string(),
        config.frr_namespace.clone(),
        config.ovn_namespace.clone(),
    ];
    let mut seen = std::collections::BTreeSet::new();
    namespaces.retain(|n| seen.insert(n.clone()));
    for ns in namespaces {
        store
            .create(
                ns_kind,
                None,
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
                &opts,
            )
            .map_err(seed_err(format!("namespace {ns}")))?;
    }
    let host = crate::nodes::HostFacts::read();
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    for i in 1..=config.nodes {
        let name = crate::nodes::node_name(i);
        store
            .create(node_kind, None, crate::nodes::node_object(i, &host), &opts)
            .map_err(seed_err(format!("node {name}")))?;
        // The store drops a created object's status (status subresource): write it as a status update.
        let status = crate::nodes::node_status(i, config.seed, &host, &now);
        store
            .modify(node_kind, None, &name, true, |n| n["status"] = status)
            .map_err(seed_err(format!("node {name} status")))?;
    }
    Ok(())
}
