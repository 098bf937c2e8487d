//! `vmbgp-controller`: wires the command line to the controller, its HTTP endpoints and leader
//! election, and stops cleanly on SIGINT/SIGTERM.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use k8s_openapi::api::rbac::v1::ClusterRole;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use vmbgp_controller::cli::{Cli, Command, MappingsCommand, RunArgs};
use vmbgp_controller::controller::Controller;
use vmbgp_controller::desired::Owner;
use vmbgp_controller::http::{Health, serve};
use vmbgp_controller::leader::{Elector, KubeLeaseStore};
use vmbgp_controller::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
enum MainError {
    #[error(transparent)]
    LabelSelector(#[from] vmbgp_model::SelectorError),
    #[error("kubeconfig: {0}")]
    Kubeconfig(String),
    #[error("Kubernetes client: {0}")]
    Client(#[from] kube::Error),
    #[error("owner ClusterRole {0} has no uid")]
    OwnerWithoutUid(String),
    #[error("serving {addr}: {source}")]
    Serve {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Controller(#[from] vmbgp_controller::controller::ControllerError),
    #[error(transparent)]
    Mappings(#[from] vmbgp_controller::mappings::MappingError),
    #[error("{0} mapping(s) could not be restored")]
    Unrestored(usize),
}

async fn mappings(command: MappingsCommand) -> Result<(), MainError> {
    use vmbgp_controller::mappings::{Outcome, backup, read_file, restore, write_file};
    match command {
        MappingsCommand::Backup(args) => {
            let settings = args.settings()?;
            let client = client(args.kubeconfig.as_deref()).await?;
            let file = backup(&client, &settings).await?;
            write_file(&args.file, &file)?;
            println!(
                "{} mappings written to {}",
                file.mappings.len(),
                args.file.display()
            );
            Ok(())
        }
        MappingsCommand::Restore(args) => {
            let file = read_file(&args.file)?;
            let client = client(args.kubeconfig.as_deref()).await?;
            let outcomes = restore(&client, &file).await?;
            let mut unrestored = 0;
            for (m, outcome) in &outcomes {
                println!("{}/{} {:?}: {outcome}", m.namespace, m.name, m.ips);
                if !matches!(outcome, Outcome::Restored | Outcome::AlreadySet) {
                    unrestored += 1;
                }
            }
            if unrestored > 0 {
                return Err(MainError::Unrestored(unrestored));
            }
            Ok(())
        }
    }
}

async fn client(kubeconfig: Option<&std::path::Path>) -> Result<kube::Client, MainError> {
    let config = match kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| MainError::Kubeconfig(format!("{}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                .await
                .map_err(|e| MainError::Kubeconfig(e.to_string()))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| MainError::Kubeconfig(e.to_string()))?,
    };
    Ok(kube::Client::try_from(config)?)
}

async fn run(args: RunArgs) -> Result<(), MainError> {
    let mut settings = args.settings()?;
    let client = client(args.kubeconfig.as_deref()).await?;
    if let Some(name) = &args.owner_cluster_role {
        let role = kube::Api::<ClusterRole>::all(client.clone())
            .get(name)
            .await?;
        settings.owner = Some(Owner {
            api_version: "rbac.authorization.k8s.io/v1".into(),
            kind: "ClusterRole".into(),
            name: name.clone(),
            uid: role
                .metadata
                .uid
                .ok_or_else(|| MainError::OwnerWithoutUid(name.clone()))?,
        });
    }
    let stop = CancellationToken::new();
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());
    let (addr, server) = serve(
        args.metrics_addr,
        metrics.clone(),
        health.clone(),
        stop.clone(),
    )
    .await
    .map_err(|source| MainError::Serve {
        addr: args.metrics_addr,
        source,
    })?;
    tracing::info!(%addr, "serving /metrics, /healthz, /readyz");
    let (leading_tx, leading_rx) = watch::channel(args.no_leader_election);
    let elector = if args.no_leader_election {
        None
    } else {
        let identity = args.identity.clone().unwrap_or_else(|| {
            std::env::var("HOSTNAME")
                .unwrap_or_else(|_| format!("vmbgp-controller-{}", std::process::id()))
        });
        let store = KubeLeaseStore::new(client.clone(), &args.lease_namespace, &args.lease_name);
        Some(tokio::spawn(
            Elector::new(store, &identity, args.timing()).run(leading_tx, stop.clone()),
        ))
    };
    let signals = stop.clone();
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
        signals.cancel();
    });
    let controller = Controller::new(client, settings, metrics);
    let result = controller
        .run(
            health,
            leading_rx,
            Duration::from_secs(args.resync_seconds.max(1)),
            stop.clone(),
        )
        .await;
    stop.cancel();
    if let Some(elector) = elector {
        let _ = elector.await;
    }
    let _ = server.await;
    Ok(result?)
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run(args).await,
        Command::Mappings(command) => mappings(command).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("vmbgp-controller: {error}");
            ExitCode::FAILURE
        }
    }
}
