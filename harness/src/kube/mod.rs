//! Kubernetes access: building the clients from a kubeconfig (bounded connect/read timeouts;
//! transient failures retried and counted, see [`retry`]) and the API resources the harness speaks.

pub mod apply;
pub mod check;
pub mod destroy;
pub mod retry;
pub mod watch;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::{ApiResource, GroupVersionKind};

/// Why the cluster could not be reached or spoken to.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KubeError {
    #[error("cannot read kubeconfig {path}")]
    ReadKubeconfig {
        path: String,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("no usable kubeconfig (set --kubeconfig or $KUBECONFIG, or create ~/.kube/config)")]
    NoKubeconfig(#[source] kube::config::KubeconfigError),
    #[error("cannot build a Kubernetes client")]
    Client(#[source] kube::Error),
    #[error("the Kubernetes API at {url} is unreachable")]
    Unreachable {
        url: String,
        #[source]
        source: kube::Error,
    },
}

/// The clients of one cluster and where they point.
#[derive(Clone)]
pub struct Cluster {
    /// For every request but the measured ones: transient failures (429, 5xx) are retried.
    pub client: kube::Client,
    /// For creates and deletes whose send instant is a measurement's t0: sent exactly once per
    /// call, so the caller retries and stamps each attempt itself.
    pub exact: kube::Client,
    pub url: String,
    /// Every retry of both clients' requests, by cause.
    pub retries: Arc<retry::RetryCounts>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("url", &self.url).finish()
    }
}

/// Builds a client from `kubeconfig` (or the default locations) and `context`.
pub async fn connect(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
    timeout: Duration,
) -> Result<Cluster, KubeError> {
    let options = KubeConfigOptions {
        context: context.map(str::to_string),
        ..Default::default()
    };
    let mut config = match kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path).map_err(|source| KubeError::ReadKubeconfig {
                path: path.display().to_string(),
                source,
            })?;
            kube::Config::from_custom_kubeconfig(file, &options)
                .await
                .map_err(|source| KubeError::ReadKubeconfig {
                    path: path.display().to_string(),
                    source,
                })?
        }
        None => kube::Config::from_kubeconfig(&options)
            .await
            .map_err(KubeError::NoKubeconfig)?,
    };
    // kube's own retry (429/503/504, uncounted) is replaced by ours, which also retries 500 and
    // counts every retry so throttling is reported, not hidden.
    config.default_retry = false;
    config.connect_timeout = Some(timeout);
    config.read_timeout = Some(timeout);
    let url = config.cluster_url.to_string();
    let retries = Arc::new(retry::RetryCounts::default());
    let exact = kube::Client::try_from(config.clone()).map_err(KubeError::Client)?;
    // The retry layer needs a cloneable service; the buffer makes kube's boxed stack one.
    let client = kube::client::ClientBuilder::try_from(config)
        .map_err(KubeError::Client)?
        .with_layer(&tower::buffer::BufferLayer::new(1024))
        .with_layer(&tower::retry::RetryLayer::new(retry::TransientRetry::new(
            retries.clone(),
        )))
        .build();
    Ok(Cluster {
        client,
        exact,
        url,
        retries,
    })
}

/// A resource the harness creates, watches or reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resource {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub namespaced: bool,
}

impl Resource {
    pub fn api_resource(&self) -> ApiResource {
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(self.group, self.version, self.kind),
            self.plural,
        )
    }

    /// `group/version`, or `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The CRD object name (`plural.group`); None for built-in kinds.
    pub fn crd_name(&self) -> Option<String> {
        (!self.group.is_empty()).then(|| format!("{}.{}", self.plural, self.group))
    }
}

macro_rules! resource {
    ($name:ident, $group:literal, $version:literal, $kind:literal, $plural:literal, $namespaced:literal) => {
        pub const $name: Resource = Resource {
            group: $group,
            version: $version,
            kind: $kind,
            plural: $plural,
            namespaced: $namespaced,
        };
    };
}

resource!(NAMESPACE, "", "v1", "Namespace", "namespaces", false);
resource!(KUBEVIRT, "kubevirt.io", "v1", "KubeVirt", "kubevirts", true);
resource!(
    VIRTUAL_MACHINE,
    "kubevirt.io",
    "v1",
    "VirtualMachine",
    "virtualmachines",
    true
);
resource!(
    VMI,
    "kubevirt.io",
    "v1",
    "VirtualMachineInstance",
    "virtualmachineinstances",
    true
);
resource!(
    VMIM,
    "kubevirt.io",
    "v1",
    "VirtualMachineInstanceMigration",
    "virtualmachineinstancemigrations",
    true
);
resource!(
    CUDN,
    "k8s.ovn.org",
    "v1",
    "ClusterUserDefinedNetwork",
    "clusteruserdefinednetworks",
    false
);
resource!(
    ROUTE_ADVERTISEMENTS,
    "k8s.ovn.org",
    "v1",
    "RouteAdvertisements",
    "routeadvertisements",
    false
);
resource!(
    FRR_CONFIGURATION,
    "frrk8s.metallb.io",
    "v1beta1",
    "FRRConfiguration",
    "frrconfigurations",
    true
);
resource!(
    FRR_NODE_STATE,
    "frrk8s.metallb.io",
    "v1beta1",
    "FRRNodeState",
    "frrnodestates",
    false
);
resource!(
    BGP_SESSION_STATE,
    "frrk8s.metallb.io",
    "v1beta1",
    "BGPSessionState",
    "bgpsessionstates",
    true
);
resource!(
    IPAM_CLAIM,
    "k8s.cni.cncf.io",
    "v1alpha1",
    "IPAMClaim",
    "ipamclaims",
    true
);
resource!(
    CRD,
    "apiextensions.k8s.io",
    "v1",
    "CustomResourceDefinition",
    "customresourcedefinitions",
    false
);
