//! The whole lab in one object: the network half ([`LabNet`]), the lab API server with its simulated
//! controllers (`vmbgp_lab_api::Lab`, whose KubeVirt controller drives this crate's dataplane through
//! the seam), and the frr-k8s emulation task watching that API. This is what `vmbgp-bench lab up` and
//! `--lab` start.
//!
//! Files added to the state directory: `kubeconfig` (for clients of the lab API) and
//! `net-ground-truth.jsonl` (network ground truth); the API's own ground truth goes where its config says.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::frrk8s::controller::{FrrK8sEmulator, FrrK8sSettings};
use crate::lab::{LabNet, LabNetConfig};
use crate::seam::NetDataplane;
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
}

impl IntegratedConfig {
    /// Defaults for both halves around a network config.
    pub fn new(net: LabNetConfig) -> Self {
        IntegratedConfig {
            net,
            api: vmbgp_lab_api::LabConfig::default(),
            frrk8s: FrrK8sSettings::default(),
        }
    }
}

/// A running lab: network, API and frr-k8s emulation.
pub struct IntegratedLab {
    pub net: LabNet,
    pub api: vmbgp_lab_api::Lab,
    frrk8s: FrrK8sEmulator,
    kubeconfig: PathBuf,
    client: kube::Client,
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
        if config.net.ground_truth_file.is_none() {
            config.net.ground_truth_file = Some(config.net.state_dir.join(NET_GROUND_TRUTH_FILE));
        }
        let net = LabNet::up(config.net.clone(), None).await?;
        match Self::start_api(net, config).await {
            Ok(lab) => Ok(lab),
            Err((net, e)) => {
                let _ = net.down().await;
                Err(e)
            }
        }
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
            api,
            frrk8s,
            kubeconfig,
            client,
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
    pub async fn down(self) -> Result<TeardownReport> {
        self.frrk8s.stop();
        let api_result = self.api.stop().await;
        let report = self.net.down().await?;
        api_result.map_err(|source| Error::LabApi {
            op: "stopping the API server",
            source,
        })?;
        Ok(report)
    }
}
