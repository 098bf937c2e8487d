//! The command line: `vmbgp-controller run ...` and its translation into [`Settings`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::desired::{Settings, VmSelection};
use crate::leader::Timing;
use vmbgp_model::selector::{LabelSelector, SelectorError};

#[derive(Debug, Parser)]
#[command(
    name = "vmbgp-controller",
    version,
    about = "Advertises each KubeVirt VM's host route from the node that hosts it, through frr-k8s"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the controller.
    Run(RunArgs),
    /// Back up or restore VM IP mappings.
    #[command(subcommand)]
    Mappings(MappingsCommand),
}

#[derive(Debug, Subcommand)]
pub enum MappingsCommand {
    /// Write every selected VM's namespace, name, network, IPs and node to a file.
    Backup(BackupArgs),
    /// Give VMs that lack it the `network.kubevirt.io/addresses` annotation from a backup;
    /// conflicts are reported, never overwritten (exit status 1 when there are any).
    Restore(RestoreArgs),
}

#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// As for `run`: networks served besides those labelled `vmbgp.io/host-routes=true`.
    #[arg(long)]
    pub network_selector: Option<String>,
    /// As for `run`: only VMs labelled `vmbgp.io/host-route=true`.
    #[arg(long)]
    pub vm_opt_in: bool,
    #[arg(long)]
    pub file: PathBuf,
}

impl BackupArgs {
    pub fn settings(&self) -> Result<Settings, SelectorError> {
        let mut settings = Settings::new("");
        settings.network_selector = self
            .network_selector
            .as_deref()
            .map(LabelSelector::parse)
            .transpose()?;
        if self.vm_opt_in {
            settings.vm_selection = VmSelection::OnlyOptedIn;
        }
        Ok(settings)
    }
}

#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    #[arg(long)]
    pub file: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Kubeconfig file; default: in-cluster configuration, then $KUBECONFIG / ~/.kube/config.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Namespace frr-k8s reads FRRConfigurations from (`frr-k8s-system` upstream).
    #[arg(long, default_value = "openshift-frr-k8s")]
    pub frr_namespace: String,
    /// Label selector for ClusterUserDefinedNetworks to serve besides those labelled
    /// `vmbgp.io/host-routes=true` (e.g. `vmbgp.io/advertise=true`).
    #[arg(long)]
    pub network_selector: Option<String>,
    /// Only VMs labelled `vmbgp.io/host-route=true` (default: all but those labelled `false`).
    #[arg(long)]
    pub vm_opt_in: bool,
    /// Merge a node's contiguous host routes into the fewest exact covering prefixes.
    #[arg(long)]
    pub aggregate: bool,
    /// Past this many host prefixes a node advertises none and relies on the subnet route.
    #[arg(long)]
    pub max_routes_per_node: Option<usize>,
    /// Also tag every served network's subnet route with community 64512:100 from every node.
    #[arg(long)]
    pub subnet_community: bool,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Names this installation in the labels of what it writes.
    #[arg(long, default_value = "default")]
    pub instance: String,
    /// Run without a Lease (one replica only; for APIs without coordination.k8s.io).
    #[arg(long)]
    pub no_leader_election: bool,
    /// Namespace of the leader-election Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "vmbgp-controller")]
    pub lease_namespace: String,
    #[arg(long, default_value = "vmbgp-controller")]
    pub lease_name: String,
    /// This replica's identity in the Lease (default: the host name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    #[arg(long, default_value_t = 15)]
    pub lease_duration_seconds: u64,
    #[arg(long, default_value_t = 2)]
    pub lease_retry_seconds: u64,
    /// Cluster-scoped ClusterRole every written FRRConfiguration is owned by, so deleting the
    /// controller's configuration garbage-collects them.
    #[arg(long)]
    pub owner_cluster_role: Option<String>,
    /// Full reconcile at least this often even without events.
    #[arg(long, default_value_t = 60)]
    pub resync_seconds: u64,
}

impl RunArgs {
    pub fn settings(&self) -> Result<Settings, SelectorError> {
        let mut settings = Settings::new(&self.frr_namespace);
        settings.instance.clone_from(&self.instance);
        settings.network_selector = self
            .network_selector
            .as_deref()
            .map(LabelSelector::parse)
            .transpose()?;
        settings.vm_selection = if self.vm_opt_in {
            VmSelection::OnlyOptedIn
        } else {
            VmSelection::AllButOptedOut
        };
        settings.aggregate = self.aggregate;
        settings.max_routes_per_node = self.max_routes_per_node;
        settings.subnet_community = self.subnet_community;
        Ok(settings)
    }

    pub fn timing(&self) -> Timing {
        Timing {
            lease_duration: Duration::from_secs(self.lease_duration_seconds.max(1)),
            retry_period: Duration::from_secs(self.lease_retry_seconds.max(1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_become_settings() {
        let cli = Cli::try_parse_from([
            "vmbgp-controller",
            "run",
            "--frr-namespace",
            "frr-k8s-system",
            "--network-selector",
            "vmbgp.io/advertise=true",
            "--aggregate",
            "--max-routes-per-node",
            "500",
            "--metrics-addr",
            "127.0.0.1:9400",
            "--no-leader-election",
        ])
        .expect("parses");
        let Command::Run(args) = cli.command else {
            panic!("run expected");
        };
        let s = args.settings().expect("settings");
        assert_eq!(s.frr_namespace, "frr-k8s-system");
        assert!(s.aggregate && s.network_selector.is_some());
        assert_eq!(s.max_routes_per_node, Some(500));
        assert!(args.no_leader_election);
        let bad = Cli::try_parse_from(["vmbgp-controller", "run", "--network-selector", "a in (b"])
            .expect("parses");
        let Command::Run(bad) = bad.command else {
            panic!("run expected");
        };
        assert!(bad.settings().is_err());
    }
}
