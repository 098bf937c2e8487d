//! The whole lab in one object: the network half ([`LabNet`]), the lab API server with its simulated
//! controllers (`vmbgp_lab_api::Lab`, whose KubeVirt controller drives this crate's dataplane through
//! the seam), and the frr-k8s emulation task watching that API. This is what `vmbgp-bench lab up` and
//! `--lab` start.
//!
//! Files added to the state directory: `kubeconfig` (for clients of the lab API) and
//! `net-ground-truth.jsonl` (network ground truth); the API's own ground truth goes where its config says.
//!
//! Faults: the API's knobs (`api.faults`: latency, 500s, 429s, watch cuts, 410 on resume) hold from
//! the start; the scheduled ones ([`IntegratedConfig::faults`]: bgpd restarts, link flaps, BMP
//! drops, and [`IntegratedConfig::watch_expiries`]) are timed from the moment the lab is up, and
//! stop with it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::{JoinHandle, JoinSet};

use crate::api_dataplane::NetDataplane;
use crate::error::{Error, Result};
use crate::faults::{FaultPlan, FaultResult};
use crate::frrk8s::controller::{FrrK8sEmulator, FrrK8sSettings};
use crate::network::{LabNet, LabNetConfig};
use crate::state::TeardownReport;

/// File names inside the state directory.
pub const KUBECONFIG_FILE: &str = "kubeconfig";
pub const NET_GROUND_TRUTH_FILE: &str = "net-ground-truth.jsonl";

/// What the integrated lab needs.
#[derive(Debug, Clone)]
pub struct IntegratedConfig {
    /// The network half (`nodes` here is the node count of both halves).
    pub net: LabNetConfig,
    /// The API half; `nodes` and `frr_namespace` are overwritten from `net` and `frrk8s`.
    pub api: vmbgp_lab_api::LabConfig,
    /// The frr-k8s emulation.
    pub frrk8s: FrrK8sSettings,
    /// Network faults carried out on a schedule, timed from the moment the lab is up.
    pub faults: FaultPlan,
    /// When (after the lab is up) the API forgets its watch history and cuts every watch, so every
    /// client resuming from its resourceVersion gets `410 Gone` mid-watch and must re-list.
    pub watch_expiries: Vec<Duration>,
}

impl IntegratedConfig {
    /// Defaults for both halves around a network config.
    pub fn new(net: LabNetConfig) -> Self {
        IntegratedConfig {
            net,
            api: vmbgp_lab_api::LabConfig::default(),
            frrk8s: FrrK8sSettings::default(),
            faults: FaultPlan::default(),
            watch_expiries: Vec::new(),
        }
    }
}

/// A running lab: network, API and frr-k8s emulation.
pub struct IntegratedLab {
    pub net: LabNet,
    /// Shared with the scheduled API faults; only the lab holds it once they are stopped.
    pub api: Arc<vmbgp_lab_api::Lab>,
    frrk8s: FrrK8sEmulator,
    kubeconfig: PathBuf,
    client: kube::Client,
    faults: FaultSchedule,
}

/// The scheduled faults' task; aborted (with every fault not yet carried out) when dropped.
#[derive(Debug, Default)]
struct FaultSchedule(Option<JoinHandle<Vec<FaultResult>>>);

impl FaultSchedule {
    /// Stops the faults not yet carried out, waits until none runs, and returns what was done.
    async fn stop(&mut self) -> Vec<FaultResult> {
        let Some(task) = self.0.take() else {
            return Vec::new();
        };
        if task.is_finished() {
            return task.await.unwrap_or_default();
        }
        task.abort();
        let _ = task.await;
        Vec::new()
    }
}

impl Drop for FaultSchedule {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

impl std::fmt::Debug for IntegratedLab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntegratedLab")
            .field("net", &self.net)
            .field("api", &self.api)
            .field("frrk8s", &self.frrk8s)
            .field("kubeconfig", &self.kubeconfig)
            .finish_non_exhaustive()
    }
}

/// A kube client for a kubeconfig, with kube's own retries off (throttling and faults stay visible).
pub async fn client_from_kubeconfig(path: &Path) -> Result<kube::Client> {
    let kubeconfig = kube::config::Kubeconfig::read_from(path).map_err(|e| Error::Kube {
        op: "reading the kubeconfig",
        source: Box::new(e),
    })?;
    let mut config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .map_err(|e| Error::Kube {
        op: "loading the kubeconfig",
        source: Box::new(e),
    })?;
    config.default_retry = false;
    kube::Client::try_from(config).map_err(|e| Error::Kube {
        op: "building the client",
        source: Box::new(e),
    })
}

impl IntegratedLab {
    /// Brings up the network, then the API (with the network dataplane behind its seam), writes the
    /// kubeconfig, and starts the frr-k8s emulation. On failure, everything started is removed.
    pub async fn up(mut config: IntegratedConfig) -> Result<IntegratedLab> {
        // A plan naming a router the lab does not have is refused before anything is created.
        crate::faults::check_plan(
            &config.faults,
            config.net.nodes,
            &crate::faults::bmp_targets(&config.net.ext_bgpd_config),
        )?;
        if config.net.ground_truth_file.is_none() {
            config.net.ground_truth_file = Some(config.net.state_dir.join(NET_GROUND_TRUTH_FILE));
        }
        let net = LabNet::up(config.net.clone(), None).await?;
        let plan = config.faults.clone();
        let expiries = config.watch_expiries.clone();
        let mut lab = match Self::start_api(net, config).await {
            Ok(lab) => lab,
            Err((net, e)) => {
                let _ = net.down().await;
                return Err(e);
            }
        };
        if !plan.is_empty() || !expiries.is_empty() {
            match lab.schedule_faults(plan, &expiries) {
                Ok(task) => lab.faults = FaultSchedule(Some(task)),
                Err(e) => {
                    let _ = lab.down().await;
                    return Err(e);
                }
            }
        }
        Ok(lab)
    }

    /// Starts the scheduled faults, timed from now: the network plan and the watch expiries.
    fn schedule_faults(
        &self,
        plan: FaultPlan,
        expiries: &[Duration],
    ) -> Result<JoinHandle<Vec<FaultResult>>> {
        let start = Instant::now();
        let network = self.net.faults().schedule(plan, start)?;
        let mut tasks: JoinSet<Vec<FaultResult>> = JoinSet::new();
        for after in expiries {
            let api = self.api.clone();
            let after_ms = u64::try_from(after.as_millis()).unwrap_or(u64::MAX);
            tasks.spawn(async move {
                crate::faults::sleep_until(start, after_ms).await;
                let at_ms = crate::faults::elapsed_ms(start);
                api.expire_watches();
                vec![crate::faults::result(
                    "expire the API's watch history and cut every watch (410 Gone on resume)"
                        .to_string(),
                    at_ms,
                    Ok(()),
                )]
            });
        }
        Ok(tokio::spawn(async move {
            // Aborting this task drops both: the network plan's task is aborted with it.
            struct AbortOnDrop(JoinHandle<Vec<FaultResult>>);
            impl Drop for AbortOnDrop {
                fn drop(&mut self) {
                    self.0.abort();
                }
            }
            let mut network = AbortOnDrop(network);
            let mut all = (&mut network.0).await.unwrap_or_default();
            while let Some(done) = tasks.join_next().await {
                all.extend(done.unwrap_or_default());
            }
            all.sort_by_key(|r| r.at_ms);
            all
        }))
    }

    async fn start_api(
        net: LabNet,
        mut config: IntegratedConfig,
    ) -> std::result::Result<IntegratedLab, (LabNet, Error)> {
        config.api.nodes = usize::from(net.nodes());
        config.api.frr_namespace = config.frrk8s.namespace.clone();
        let seam = Arc::new(NetDataplane::new(net.dataplane().clone()));
        let api = match vmbgp_lab_api::Lab::start_with(config.api, seam, None).await {
            Ok(api) => api,
            Err(source) => {
                return Err((
                    net,
                    Error::LabApi {
                        op: "starting the API server",
                        source,
                    },
                ));
            }
        };
        let kubeconfig = net.state_dir().join(KUBECONFIG_FILE);
        let written = net.record_path(&kubeconfig).and_then(|()| {
            api.write_kubeconfig(&kubeconfig)
                .map_err(|source| Error::LabApi {
                    op: "writing the kubeconfig",
                    source,
                })
        });
        let client = match written {
            Ok(()) => client_from_kubeconfig(&kubeconfig).await,
            Err(e) => Err(e),
        };
        let client = match client {
            Ok(c) => c,
            Err(e) => {
                let _ = api.stop().await;
                return Err((net, e));
            }
        };
        let frrk8s = FrrK8sEmulator::start(
            client.clone(),
            net.supervisor().clone(),
            net.nodes(),
            net.ground_truth(),
            config.frrk8s,
        );
        Ok(IntegratedLab {
            net,
            api: Arc::new(api),
            frrk8s,
            kubeconfig,
            client,
            faults: FaultSchedule::default(),
        })
    }

    /// The kubeconfig for clients of the lab API.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// A kube client (retries off) for the lab API.
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// Stops the emulation and the API, then removes everything the network half created.
    pub async fn down(mut self) -> Result<TeardownReport> {
        // First the faults: none may act on the lab while it is taken down.
        let done = self.faults.stop().await;
        if !done.is_empty() {
            tracing::debug!(?done, "scheduled lab faults");
        }
        self.frrk8s.stop();
        let api_result = match Arc::try_unwrap(self.api) {
            Ok(api) => api.stop().await,
            // Unreachable once the faults are stopped; dropping the last handle cancels its tasks.
            Err(_) => Ok(()),
        };
        let report = self.net.down().await?;
        api_result.map_err(|source| Error::LabApi {
            op: "stopping the API server",
            source,
        })?;
        Ok(report)
    }
}
