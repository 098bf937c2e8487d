//! The lab's network as one object: `LabNet::up` builds the namespaces, starts FRR and the vmhost
//! services; `status` and `teardown` work from the state directory alone, so `lab status` / `lab down`
//! can run in a different process than `lab up`.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::task::JoinHandle;

use crate::dataplane::{Dataplane, EgressConfig};
use crate::error::{Error, Result};
use crate::faults::FaultInjector;
use crate::fib_observer::FibObserver;
use crate::frr::{DEFAULT_FRR_BIN_DIR, Daemon, RouterHealth, Supervisor, neighbor_states};
use crate::names::{LabNames, Router, node_name};
use crate::net_ground_truth::{GroundTruthSink, JsonlGroundTruth, NoGroundTruth};
use crate::process;
use crate::state::{self, StateStore, TeardownReport};
use crate::topology;
use crate::vmhost::{VmPorts, start_services};
use crate::vty::Vty;

/// What `up` needs.
#[derive(Debug, Clone)]
pub struct LabNetConfig {
    /// Unique per lab (`[a-z0-9-]{1,32}`); every netns name carries it.
    pub lab_id: String,
    /// The lab's state directory (created if missing, mode 0755 so the `frr` user can reach its dirs).
    pub state_dir: PathBuf,
    /// Number of cluster nodes (1..=150).
    pub nodes: u16,
    /// ext's bgpd configuration, as `vmbgp-bench frr-config` renders it (router bgp 64512, the nodes as
    /// neighbours, the community → local-pref policy, maximum-paths, BMP targets). Written verbatim to
    /// ext's `bgpd.conf`; bgpd runs with `-M bmp`, so BMP targets belong in this startup config.
    pub ext_bgpd_config: String,
    /// Where the FRR daemons are (`/usr/lib/frr`).
    pub frr_bin_dir: PathBuf,
    /// Ports served for every VM address.
    pub vm_ports: VmPorts,
    /// Where a VM's guest sends its egress GET when it first appears (host must be reachable from the
    /// vmhosts, e.g. `http://198.18.0.155:PORT/egress` with the harness listening inside ext).
    pub egress_url: Option<String>,
    /// When no ground-truth sink is passed to `up`, write network ground truth to this JSON-lines file
    /// (recorded in the state file, so teardown removes it).
    pub ground_truth_file: Option<PathBuf>,
    /// Fault: VMs whose addresses the dataplane withholds (by `name` or `namespace/name`): node routes
    /// as usual, a blackhole instead of the address on the vmhost, no egress call, ground truth
    /// `AddressWithheld` (see [`crate::dataplane`]). Empty by default.
    pub silent_vms: Vec<String>,
    /// Guest mode: each VM is its own netns, moved with its link on migration, so TCP sockets
    /// survive a migration (see [`crate::guest`]). Off by default: a netns per VM costs more than an
    /// address on `lo`, and only migration runs need it.
    pub guest_vms: bool,
}

impl LabNetConfig {
    /// A config with the defaults (`/usr/lib/frr`, ports 8080/5201, no egress call, no silent VMs).
    pub fn new(
        lab_id: &str,
        state_dir: impl Into<PathBuf>,
        nodes: u16,
        ext_bgpd_config: String,
    ) -> Self {
        LabNetConfig {
            lab_id: lab_id.to_string(),
            state_dir: state_dir.into(),
            nodes,
            ext_bgpd_config,
            frr_bin_dir: PathBuf::from(DEFAULT_FRR_BIN_DIR),
            vm_ports: VmPorts::default(),
            egress_url: None,
            ground_truth_file: None,
            silent_vms: Vec::new(),
            guest_vms: false,
        }
    }
}

/// What `lab up` prints: where everything is.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LabNetInfo {
    pub lab_id: String,
    pub state_dir: PathBuf,
    pub state_file: PathBuf,
    /// The external router's netns (run probes, the BMP listener and netlink watchers here).
    pub ext_netns: String,
    pub ext_address: Ipv4Addr,
    /// ext's bgpd vty socket.
    pub ext_bgpd_vty: PathBuf,
    /// Nodes by name: netns, address, bgpd vty socket, vmhost netns.
    pub nodes: BTreeMap<String, NodeInfo>,
    pub vm_ports: VmPorts,
}

/// One node's places.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NodeInfo {
    pub netns: String,
    pub address: Ipv4Addr,
    pub bgpd_vty: PathBuf,
    pub vmhost_netns: String,
}

/// A running lab network.
#[derive(Debug)]
pub struct LabNet {
    names: LabNames,
    config: LabNetConfig,
    store: Arc<StateStore>,
    supervisor: Supervisor,
    dataplane: Dataplane,
    truth: Arc<dyn GroundTruthSink>,
    tasks: Vec<JoinHandle<()>>,
    /// ext's independent FIB observer (ground truth); `None` once stopped by `down`.
    fib_observer: Option<FibObserver>,
}

/// Checks root, `ip`, the FRR daemons and the `frr` user.
pub fn check_prerequisites(frr_bin_dir: &Path) -> Result<()> {
    let euid = nix::unistd::geteuid().as_raw();
    if euid != 0 {
        return Err(Error::NotRoot { euid });
    }
    for daemon in ["zebra", "bgpd"] {
        if !frr_bin_dir.join(daemon).exists() {
            return Err(Error::PrerequisiteMissing {
                what: format!("FRR daemon {}", frr_bin_dir.join(daemon).display()),
                install_hint: "apt-get install -y frr",
            });
        }
    }
    // ext needs the BMP module (Debian ships it as /usr/lib/<triplet>/frr/modules/bgpd_bmp.so).
    let bmp_found = std::fs::read_dir("/usr/lib")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .any(|e| e.path().join("frr/modules/bgpd_bmp.so").exists())
        })
        .unwrap_or(false);
    if !bmp_found {
        return Err(Error::PrerequisiteMissing {
            what: "FRR BMP module bgpd_bmp.so".into(),
            install_hint: "apt-get install -y frr",
        });
    }
    let ip_ok = std::process::Command::new(crate::cmd::IP)
        .arg("-V")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ip_ok {
        return Err(Error::PrerequisiteMissing {
            what: "`ip` (iproute2)".into(),
            install_hint: "apt-get install -y iproute2",
        });
    }
    crate::frr::frr_user().map(|_| ())
}

/// The startup config of a node's bgpd before frr-k8s emulation applies anything.
fn node_startup_bgpd(n: u16) -> String {
    format!("hostname {}\nlog timestamp precision 3\n", node_name(n))
}

impl LabNet {
    /// Brings the lab's network up. On failure everything created so far is torn down and the
    /// original error is returned. A process killed during `up` leaves its state file behind; run
    /// [`teardown`] on the state directory.
    pub async fn up(
        config: LabNetConfig,
        truth: Option<Arc<dyn GroundTruthSink>>,
    ) -> Result<LabNet> {
        check_prerequisites(&config.frr_bin_dir)?;
        let names = LabNames::new(&config.lab_id)?;
        topology::validate_nodes(config.nodes)?;
        let created_state_dir = !config.state_dir.exists();
        std::fs::create_dir_all(&config.state_dir)
            .map_err(|e| Error::io("creating", &config.state_dir, e))?;
        std::fs::set_permissions(&config.state_dir, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| Error::io("chmod 0755", &config.state_dir, e))?;
        let store = Arc::new(StateStore::create(
            &config.state_dir,
            &config.lab_id,
            created_state_dir,
        )?);
        let truth: Arc<dyn GroundTruthSink> = match (truth, &config.ground_truth_file) {
            (Some(t), _) => t,
            (None, Some(path)) => {
                let created = store.record_path(path).and_then(|()| {
                    JsonlGroundTruth::create(path).map_err(|e| Error::io("creating", path, e))
                });
                match created {
                    Ok(t) => Arc::new(t),
                    Err(e) => {
                        let dir = config.state_dir.clone();
                        let _ = tokio::task::spawn_blocking(move || state::teardown(&dir)).await;
                        return Err(e);
                    }
                }
            }
            (None, None) => Arc::new(NoGroundTruth),
        };
        match Self::build(config.clone(), names, store, truth).await {
            Ok(lab) => Ok(lab),
            Err(e) => {
                let dir = config.state_dir.clone();
                let cleanup = tokio::task::spawn_blocking(move || state::teardown(&dir)).await;
                if let Ok(Ok(report)) = &cleanup
                    && !report.problems.is_empty()
                {
                    tracing::warn!(problems = ?report.problems, "cleanup after a failed lab up");
                }
                Err(e)
            }
        }
    }

    async fn build(
        config: LabNetConfig,
        names: LabNames,
        store: Arc<StateStore>,
        truth: Arc<dyn GroundTruthSink>,
    ) -> Result<LabNet> {
        topology::create(&names, config.nodes, &store).await?;
        if config.guest_vms {
            // The vmhosts forward between their uplink and the guests' links.
            for n in 1..=config.nodes {
                crate::netns::write_sysctls(
                    &names.vmhost_netns(n),
                    &[("net.ipv4.ip_forward", "1")],
                )
                .await?;
            }
        }
        // Before any bgpd runs, so the first route ext installs is observed.
        let ext_netns = names.router_netns(Router::Ext);
        let observer_truth = truth.clone();
        let fib_observer =
            tokio::task::spawn_blocking(move || FibObserver::start(&ext_netns, observer_truth))
                .await
                .map_err(|e| Error::Command {
                    command: "starting the FIB observer".into(),
                    detail: e.to_string(),
                })??;

        let frr_root = config.state_dir.join("frr");
        store.record_path(&frr_root)?;
        std::fs::create_dir_all(&frr_root).map_err(|e| Error::io("creating", &frr_root, e))?;
        std::fs::set_permissions(&frr_root, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| Error::io("chmod", &frr_root, e))?;
        let mut supervisor = Supervisor::new(store.clone(), config.frr_bin_dir.clone());
        supervisor.add_router(
            Router::Ext,
            names.router_netns(Router::Ext),
            frr_root.join("ext"),
            "hostname ext\n",
            &config.ext_bgpd_config,
            vec!["bmp".to_string()],
        )?;
        for n in 1..=config.nodes {
            let r = Router::Node(n);
            supervisor.add_router(
                r,
                names.router_netns(r),
                frr_root.join(r.name()),
                &format!("hostname {}\n", r.name()),
                &node_startup_bgpd(n),
                Vec::new(),
            )?;
        }
        let routers = supervisor.routers();
        for daemon in [Daemon::Zebra, Daemon::Bgpd] {
            let starts = routers.iter().map(|r| supervisor.start(*r, daemon));
            for r in futures::future::join_all(starts).await {
                r?;
            }
        }

        let mut tasks = Vec::new();
        for n in 1..=config.nodes {
            tasks.extend(
                start_services(&names.vmhost_netns(n), &node_name(n), config.vm_ports).await?,
            );
        }
        let dataplane = Dataplane::start(
            names.clone(),
            config.nodes,
            truth.clone(),
            config.egress_url.clone().map(|url| EgressConfig {
                url,
                retry_for: Duration::from_secs(10),
            }),
            config.guest_vms.then(|| crate::dataplane::GuestMode {
                store: store.clone(),
                ports: config.vm_ports,
            }),
        );
        dataplane.set_silent_vms(config.silent_vms.clone());
        Ok(LabNet {
            names,
            config,
            store,
            supervisor,
            dataplane,
            truth,
            tasks,
            fib_observer: Some(fib_observer),
        })
    }

    /// Where everything is.
    pub fn info(&self) -> LabNetInfo {
        let mut nodes = BTreeMap::new();
        for n in 1..=self.config.nodes {
            let r = Router::Node(n);
            nodes.insert(
                r.name(),
                NodeInfo {
                    netns: self.names.router_netns(r),
                    address: r.address(),
                    bgpd_vty: self
                        .supervisor
                        .router_dir(r)
                        .map(|d| d.vty_socket(Daemon::Bgpd))
                        .unwrap_or_default(),
                    vmhost_netns: self.names.vmhost_netns(n),
                },
            );
        }
        LabNetInfo {
            lab_id: self.config.lab_id.clone(),
            state_dir: self.config.state_dir.clone(),
            state_file: self.store.path().to_path_buf(),
            ext_netns: self.names.router_netns(Router::Ext),
            ext_address: Router::Ext.address(),
            ext_bgpd_vty: self
                .supervisor
                .router_dir(Router::Ext)
                .map(|d| d.vty_socket(Daemon::Bgpd))
                .unwrap_or_default(),
            nodes,
            vm_ports: self.config.vm_ports,
        }
    }

    /// Netns names.
    pub fn names(&self) -> &LabNames {
        &self.names
    }

    /// Number of nodes.
    pub fn nodes(&self) -> u16 {
        self.config.nodes
    }

    /// The FRR supervisor (vty sessions, health, restarts).
    pub fn supervisor(&self) -> &Supervisor {
        &self.supervisor
    }

    /// The VM dataplane (the seam the simulated KubeVirt controller drives).
    pub fn dataplane(&self) -> &Dataplane {
        &self.dataplane
    }

    /// The ground-truth sink this lab records into.
    pub fn ground_truth(&self) -> Arc<dyn GroundTruthSink> {
        self.truth.clone()
    }

    /// Waits until ext has every node as an Established neighbour (and each node has ext).
    pub async fn wait_sessions(&self, timeout: Duration) -> Result<()> {
        let mut sessions = Vec::new();
        for n in 1..=self.config.nodes {
            sessions.push((Router::Ext, Router::Node(n).address()));
            sessions.push((Router::Node(n), Router::Ext.address()));
        }
        self.supervisor.wait_established(&sessions, timeout).await
    }

    /// Fault injection on this lab (restart bgpd, link down/up, a scheduled [`crate::faults::FaultPlan`]).
    pub fn faults(&self) -> FaultInjector {
        FaultInjector {
            names: self.names.clone(),
            nodes: self.config.nodes,
            supervisor: self.supervisor.clone(),
            truth: self.truth.clone(),
            bmp_targets: crate::faults::bmp_targets(&self.config.ext_bgpd_config),
        }
    }

    /// Fault: restarts a router's bgpd now (it rereads its config file); records ground truth.
    pub async fn restart_bgpd(&self, router: Router) -> Result<()> {
        self.faults().restart_bgpd(router).await
    }

    /// Fault: drops ext's BMP session now and waits until bgpd has reconnected; records ground truth.
    pub async fn drop_bmp(&self) -> Result<()> {
        self.faults().drop_bmp().await
    }

    /// Fault: takes a router's uplink down or up; records ground truth.
    pub async fn set_link(&self, router: Router, up: bool) -> Result<()> {
        self.faults().set_link(router, up).await
    }

    /// Health of every router.
    pub async fn health(&self) -> Result<Vec<RouterHealth>> {
        let mut out = Vec::new();
        for r in self.supervisor.routers() {
            out.push(self.supervisor.health(r).await?);
        }
        Ok(out)
    }

    /// Stops the in-process services and removes everything the lab created.
    pub async fn down(mut self) -> Result<TeardownReport> {
        // Stop recording first (teardown's own route removals are not part of the run); join the
        // observer after teardown, so its read timeout overlaps teardown instead of adding to it.
        let observer = self.fib_observer.take();
        if let Some(o) = &observer {
            o.request_stop();
        }
        for t in &self.tasks {
            t.abort();
        }
        let dir = self.config.state_dir.clone();
        tokio::task::spawn_blocking(move || {
            let report = state::teardown(&dir);
            drop(observer); // joins the thread
            report
        })
        .await
        .map_err(|e| Error::Command {
            command: "teardown".into(),
            detail: e.to_string(),
        })?
    }

    /// Records a file or directory the caller is about to create for this lab, so teardown removes it.
    pub fn record_path(&self, path: &Path) -> Result<()> {
        self.store.record_path(path)
    }

    /// The lab's state directory.
    pub fn state_dir(&self) -> &Path {
        &self.config.state_dir
    }
}

impl Drop for LabNet {
    fn drop(&mut self) {
        // The in-process services die with the lab object; the namespaces and daemons stay until
        // `down`/`teardown` (so `lab up` can hand them to later commands). The FIB observer's thread
        // ends by itself within one read timeout; not joined here, so a drop never blocks a runtime.
        for t in &self.tasks {
            t.abort();
        }
        if let Some(observer) = self.fib_observer.take() {
            observer.detach();
        }
    }
}

/// `lab status` from the state directory alone.
#[derive(Debug, Clone, Serialize)]
pub struct LabNetStatus {
    pub lab_id: String,
    pub state_file: PathBuf,
    /// Recorded netns and whether each exists.
    pub netns: BTreeMap<String, bool>,
    /// `router/daemon` → alive.
    pub daemons: BTreeMap<String, bool>,
    /// Router → neighbour → BGP state (from bgpd's vty); routers whose vty did not answer are absent.
    pub sessions: BTreeMap<String, BTreeMap<Ipv4Addr, String>>,
}

/// Reads the state file and probes what it records.
pub async fn status(state_dir: &Path) -> Result<LabNetStatus> {
    let state_file = state_dir.join(state::STATE_FILE);
    let st = state::read_state(&state_file)?;
    let existing = state::existing_netns();
    let netns = st
        .netns
        .iter()
        .map(|n| (n.clone(), existing.contains(n)))
        .collect();
    let mut daemons = BTreeMap::new();
    let mut sessions = BTreeMap::new();
    for p in &st.processes {
        let alive = p
            .identity
            .as_ref()
            .is_some_and(|id| process::is_alive(id, &p.cmdline_marker));
        daemons.insert(format!("{}/{}", p.router, p.daemon), alive);
        if p.daemon == "bgpd" && alive {
            let socket = PathBuf::from(&p.cmdline_marker).join("bgpd.vty");
            if let (Ok(mut vty), Some(router)) = (
                Vty::connect(&socket, Duration::from_secs(2)).await,
                Router::parse(&p.router),
            ) && let Ok(n) = neighbor_states(&mut vty, router).await
            {
                sessions.insert(
                    p.router.clone(),
                    n.into_iter().map(|(a, s)| (a, s.state)).collect(),
                );
            }
        }
    }
    Ok(LabNetStatus {
        lab_id: st.lab_id,
        state_file,
        netns,
        daemons,
        sessions,
    })
}

/// `lab down`: removes everything recorded in the state directory (see [`state::teardown`]).
pub fn teardown(state_dir: &Path) -> Result<TeardownReport> {
    state::teardown(state_dir)
}

/// Removes the lab when dropped (tests: cleanup even when an assertion fails).
#[derive(Debug)]
pub struct TeardownGuard {
    state_dir: PathBuf,
}

impl TeardownGuard {
    /// Guards the lab recorded in `state_dir`.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        TeardownGuard {
            state_dir: state_dir.into(),
        }
    }
}

impl Drop for TeardownGuard {
    fn drop(&mut self) {
        match state::teardown(&self.state_dir) {
            Ok(r) if !r.problems.is_empty() => {
                eprintln!(
                    "lab teardown problems in {}: {:?}",
                    self.state_dir.display(),
                    r.problems
                )
            }
            Err(e) => eprintln!("lab teardown of {} failed: {e}", self.state_dir.display()),
            Ok(_) => {}
        }
    }
}
