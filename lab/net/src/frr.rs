//! FRR supervisor: `zebra` + `bgpd` per router, each router with its own directory for config, vty
//! sockets, zserv socket, pid files and logs, run as user `frr` inside the router's netns
//! (frr-lab.md §2.1). Daemons are started with `-d` (they outlive the process that started them, so
//! `lab up` can return) and stopped by their recorded pid after checking its identity.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cmd;
use crate::error::{Error, Result};
use crate::names::Router;
use crate::process::{self, ProcessIdentity};
use crate::state::{ProcessRecord, StateStore};
use crate::vty::{FrrCli, Vty, VtyCli, cli_daemon};

/// Where the Debian package installs the daemons.
pub const DEFAULT_FRR_BIN_DIR: &str = "/usr/lib/frr";
/// How long a daemon gets to create its pid file and vty socket.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Timeout of one vty exchange used by the supervisor.
pub const VTY_TIMEOUT: Duration = Duration::from_secs(5);

/// The two daemons per router.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Daemon {
    Zebra,
    Bgpd,
}

impl Daemon {
    /// The binary and socket name.
    pub fn name(self) -> &'static str {
        match self {
            Daemon::Zebra => "zebra",
            Daemon::Bgpd => "bgpd",
        }
    }
}

/// Paths of one router's FRR instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterDir {
    pub dir: PathBuf,
}

impl RouterDir {
    /// The vty socket of a daemon.
    pub fn vty_socket(&self, daemon: Daemon) -> PathBuf {
        self.dir.join(format!("{}.vty", daemon.name()))
    }
    /// The config file a daemon reads at start.
    pub fn config(&self, daemon: Daemon) -> PathBuf {
        self.dir.join(format!("{}.conf", daemon.name()))
    }
    /// The pid file.
    pub fn pidfile(&self, daemon: Daemon) -> PathBuf {
        self.dir.join(format!("{}.pid", daemon.name()))
    }
    /// The log file.
    pub fn log(&self, daemon: Daemon) -> PathBuf {
        self.dir.join(format!("{}.log", daemon.name()))
    }
    /// zebra's API socket (bgpd connects to it).
    pub fn zserv(&self) -> PathBuf {
        self.dir.join("zserv.api")
    }
}

/// One router's FRR instance as the supervisor knows it.
#[derive(Debug, Clone)]
struct Instance {
    netns: String,
    dir: RouterDir,
    bgpd_modules: Vec<String>,
    /// The lab's own vty client for this router (kept sessions that reconnect; shared by clones).
    cli: Arc<VtyCli>,
}

/// BGP state of one neighbour as bgpd reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NeighborState {
    /// `Idle|Connect|Active|OpenSent|OpenConfirm|Established`.
    pub state: String,
    /// Remote AS.
    pub remote_as: Option<u32>,
    /// Prefixes received (accepted) from the neighbour when established.
    pub prefixes_received: Option<u64>,
    /// How long the session has been established, in ms.
    pub established_ms: Option<u64>,
}

/// Health of one router.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouterHealth {
    pub router: String,
    /// Whether each daemon's recorded process is alive.
    pub zebra_alive: bool,
    pub bgpd_alive: bool,
    /// Whether bgpd's vty answered.
    pub bgpd_vty: bool,
    /// Neighbours by address (empty when bgpd has no `router bgp` yet).
    pub neighbors: BTreeMap<Ipv4Addr, NeighborState>,
}

/// Starts, checks, restarts and stops the FRR daemons of a lab.
#[derive(Debug, Clone)]
pub struct Supervisor {
    store: Arc<StateStore>,
    bin_dir: PathBuf,
    instances: BTreeMap<Router, Instance>,
}

impl Supervisor {
    /// A supervisor for routers whose directories live under `frr_root` (`<state_dir>/frr`).
    pub fn new(store: Arc<StateStore>, bin_dir: PathBuf) -> Self {
        Supervisor {
            store,
            bin_dir,
            instances: BTreeMap::new(),
        }
    }

    /// Registers a router: creates its directory (owned by `frr`) and writes its startup configs.
    pub fn add_router(
        &mut self,
        router: Router,
        netns: String,
        dir: PathBuf,
        zebra_conf: &str,
        bgpd_conf: &str,
        bgpd_modules: Vec<String>,
    ) -> Result<()> {
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("creating", &dir, e))?;
        let frr = frr_user()?;
        nix::unistd::chown(&dir, Some(frr.uid), Some(frr.gid))
            .map_err(|e| Error::io("chown frr:frr", &dir, e.into()))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| Error::io("chmod", &dir, e))?;
        let cli = Arc::new(VtyCli::new(&dir, VTY_TIMEOUT));
        let router_dir = RouterDir { dir };
        write_config(&router_dir.config(Daemon::Zebra), zebra_conf)?;
        write_config(&router_dir.config(Daemon::Bgpd), bgpd_conf)?;
        self.instances.insert(
            router,
            Instance {
                netns,
                dir: router_dir,
                bgpd_modules,
                cli,
            },
        );
        Ok(())
    }

    /// The routers registered.
    pub fn routers(&self) -> Vec<Router> {
        self.instances.keys().copied().collect()
    }

    /// A router's directory.
    pub fn router_dir(&self, router: Router) -> Result<&RouterDir> {
        self.instance(router).map(|i| &i.dir)
    }

    fn instance(&self, router: Router) -> Result<&Instance> {
        self.instances.get(&router).ok_or_else(|| Error::Unknown {
            what: "router",
            name: router.name(),
        })
    }

    /// Overwrites the config file bgpd reads when it (re)starts.
    pub fn write_bgpd_config(&self, router: Router, text: &str) -> Result<()> {
        write_config(&self.instance(router)?.dir.config(Daemon::Bgpd), text)
    }

    /// Starts one daemon and waits until its vty socket exists. Records the pid file before the start
    /// and the identity after it.
    pub async fn start(&self, router: Router, daemon: Daemon) -> Result<ProcessIdentity> {
        let inst = self.instance(router)?;
        let d = &inst.dir;
        for stale in [d.vty_socket(daemon), d.pidfile(daemon)] {
            let _ = std::fs::remove_file(stale); // FRR leaves sockets and pid files behind on SIGTERM
        }
        if daemon == Daemon::Zebra {
            let _ = std::fs::remove_file(d.zserv());
        }
        let marker = d.dir.display().to_string();
        self.store.record_process(ProcessRecord {
            router: router.name(),
            daemon: daemon.name().to_string(),
            pidfile: d.pidfile(daemon),
            cmdline_marker: marker.clone(),
            identity: None,
        })?;
        let binary = self.bin_dir.join(daemon.name());
        let mut args: Vec<String> = vec![
            "netns".into(),
            "exec".into(),
            inst.netns.clone(),
            binary.display().to_string(),
            "-d".into(),
        ];
        if daemon == Daemon::Bgpd {
            for m in &inst.bgpd_modules {
                args.push("-M".into());
                args.push(m.clone());
            }
        }
        args.extend([
            "--vty_socket".into(),
            marker.clone(),
            "-z".into(),
            d.zserv().display().to_string(),
            "-i".into(),
            d.pidfile(daemon).display().to_string(),
            "-f".into(),
            d.config(daemon).display().to_string(),
            "-P".into(),
            "0".into(),
            "--log".into(),
            format!("file:{}", d.log(daemon).display()),
        ]);
        cmd::run(cmd::IP, &args).await?;

        let deadline = Instant::now() + START_TIMEOUT;
        let identity = loop {
            if let Some(pid) = process::read_pidfile(&d.pidfile(daemon))
                && let Some(id) = process::identify(pid, &marker)
                && d.vty_socket(daemon).exists()
            {
                break id;
            }
            if Instant::now() >= deadline {
                return Err(Error::DaemonStart {
                    router: router.name(),
                    daemon: daemon.name(),
                    detail: format!(
                        "no pid file and vty socket after {START_TIMEOUT:?}; see {}",
                        d.log(daemon).display()
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        self.store
            .record_identity(&router.name(), daemon.name(), Some(identity.clone()))?;
        Ok(identity)
    }

    /// Stops one daemon by its recorded identity (SIGTERM, then SIGKILL after 3 s).
    pub async fn stop(&self, router: Router, daemon: Daemon) -> Result<()> {
        let record = self
            .store
            .snapshot()
            .processes
            .into_iter()
            .find(|p| p.router == router.name() && p.daemon == daemon.name());
        let Some(record) = record else {
            return Ok(());
        };
        let name = router.name();
        tokio::task::spawn_blocking(move || {
            if let Some(id) = process::resolve(&record) {
                process::terminate(&id, Duration::from_secs(3)).map_err(|e| Error::Command {
                    command: format!("kill {} ({}/{})", id.pid, record.router, record.daemon),
                    detail: e.to_string(),
                })?;
            }
            Ok::<_, Error>(())
        })
        .await
        .map_err(|e| Error::Command {
            command: format!("stopping {name}"),
            detail: e.to_string(),
        })??;
        self.store
            .record_identity(&router.name(), daemon.name(), None)
    }

    /// Restarts a router's bgpd (fault injection): it comes back with the config file last written.
    pub async fn restart_bgpd(&self, router: Router) -> Result<ProcessIdentity> {
        self.stop(router, Daemon::Bgpd).await?;
        self.start(router, Daemon::Bgpd).await
    }

    /// Whether a daemon's recorded process is alive.
    pub fn is_alive(&self, router: Router, daemon: Daemon) -> bool {
        self.store
            .snapshot()
            .processes
            .iter()
            .find(|p| p.router == router.name() && p.daemon == daemon.name())
            .and_then(|p| {
                p.identity
                    .as_ref()
                    .map(|id| (id.clone(), p.cmdline_marker.clone()))
            })
            .is_some_and(|(id, marker)| process::is_alive(&id, &marker))
    }

    /// The router's vty client: what the lab's own operations use (a session that failed is dropped
    /// and the next command reconnects; see [`crate::vty`]).
    pub fn cli(&self, router: Router) -> Result<Arc<VtyCli>> {
        self.instance(router).map(|i| i.cli.clone())
    }

    /// Runs `configure terminal`, the lines, `end` on a daemon through the router's client; returns
    /// the lines that did not succeed with their replies.
    pub async fn configure(
        &self,
        router: Router,
        daemon: Daemon,
        lines: &[String],
    ) -> Result<Vec<(String, crate::vty::VtyReply)>> {
        self.cli(router)?
            .configure(cli_daemon(daemon), lines)
            .await
            .map_err(|source| Error::Vty {
                router: router.name(),
                daemon: daemon.name(),
                source,
            })
    }

    /// bgpd's neighbours through the router's client.
    pub async fn neighbors(&self, router: Router) -> Result<BTreeMap<Ipv4Addr, NeighborState>> {
        let json = self
            .cli(router)?
            .json(cli_daemon(Daemon::Bgpd), NEIGHBORS_COMMAND)
            .await
            .map_err(|source| Error::Vty {
                router: router.name(),
                daemon: "bgpd",
                source,
            })?;
        Ok(parse_neighbors(&json))
    }

    /// Opens a bare vty session to a daemon (it does not reconnect; the lab itself uses [`Self::cli`]).
    pub async fn vty(&self, router: Router, daemon: Daemon) -> Result<Vty> {
        let path = self.instance(router)?.dir.vty_socket(daemon);
        Vty::connect(&path, VTY_TIMEOUT)
            .await
            .map_err(|source| Error::Vty {
                router: router.name(),
                daemon: daemon.name(),
                source,
            })
    }

    /// Health of a router: processes alive, bgpd's vty answering, and its neighbours' states.
    pub async fn health(&self, router: Router) -> Result<RouterHealth> {
        let zebra_alive = self.is_alive(router, Daemon::Zebra);
        let bgpd_alive = self.is_alive(router, Daemon::Bgpd);
        let mut health = RouterHealth {
            router: router.name(),
            zebra_alive,
            bgpd_alive,
            bgpd_vty: false,
            neighbors: BTreeMap::new(),
        };
        if !bgpd_alive {
            return Ok(health);
        }
        // Any failure (not listening yet, timed out, garbled) means bgpd's vty did not answer.
        if let Ok(neighbors) = self.neighbors(router).await {
            health.bgpd_vty = true;
            health.neighbors = neighbors;
        }
        Ok(health)
    }

    /// Waits until every given router has each given peer Established, or fails after `timeout`.
    pub async fn wait_established(
        &self,
        sessions: &[(Router, Ipv4Addr)],
        timeout: Duration,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut missing = Vec::new();
            for (router, peer) in sessions {
                let established = self
                    .neighbors(*router)
                    .await
                    .ok()
                    .and_then(|m| m.get(peer).map(|n| n.state == "Established"))
                    .unwrap_or(false);
                if !established {
                    missing.push(format!("{router}→{peer}"));
                }
            }
            if missing.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: format!("BGP sessions Established: {}", missing.join(", ")),
                    after_ms: timeout.as_millis(),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// bgpd's neighbours with their states, every VRF (the default VRF's are used).
const NEIGHBORS_COMMAND: &str = "show bgp vrf all neighbors json";

/// Reads `show bgp vrf all neighbors json` on a bare session and returns the default VRF's neighbours.
pub async fn neighbor_states(
    vty: &mut Vty,
    router: Router,
) -> Result<BTreeMap<Ipv4Addr, NeighborState>> {
    let json = vty
        .json(NEIGHBORS_COMMAND)
        .await
        .map_err(|source| Error::Vty {
            router: router.name(),
            daemon: "bgpd",
            source,
        })?;
    Ok(parse_neighbors(&json))
}

/// Parses bgpd's neighbour JSON (`{"default": {"<addr>": {...}, "vrfId": 0, ...}}`); keys that are not
/// addresses are metadata.
pub fn parse_neighbors(json: &serde_json::Value) -> BTreeMap<Ipv4Addr, NeighborState> {
    let mut out = BTreeMap::new();
    let Some(vrf) = json.get("default").and_then(|v| v.as_object()) else {
        return out;
    };
    for (key, value) in vrf {
        let Ok(addr) = key.parse::<Ipv4Addr>() else {
            continue;
        };
        let state = value
            .get("bgpState")
            .and_then(|s| s.as_str())
            .unwrap_or("Unknown")
            .to_string();
        let prefixes_received = value
            .get("addressFamilyInfo")
            .and_then(|a| a.get("ipv4Unicast"))
            .and_then(|a| a.get("acceptedPrefixCounter"))
            .and_then(|c| c.as_u64());
        out.insert(
            addr,
            NeighborState {
                established_ms: (state == "Established")
                    .then(|| value.get("bgpTimerUpMsec").and_then(|v| v.as_u64()))
                    .flatten(),
                state,
                remote_as: value
                    .get("remoteAs")
                    .and_then(|v| v.as_u64())
                    .and_then(|v| u32::try_from(v).ok()),
                prefixes_received,
            },
        );
    }
    out
}

fn write_config(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| Error::io("writing", path, e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
        .map_err(|e| Error::io("chmod", path, e))
}

/// The `frr` user the Debian package creates.
pub fn frr_user() -> Result<nix::unistd::User> {
    match nix::unistd::User::from_name("frr") {
        Ok(Some(u)) => Ok(u),
        _ => Err(Error::PrerequisiteMissing {
            what: "user `frr`".into(),
            install_hint: "apt-get install -y frr",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_neighbor_json() {
        let json = serde_json::json!({
            "default": {
                "vrfId": 0,
                "vrfName": "default",
                "198.18.0.155": {
                    "remoteAs": 64512,
                    "bgpState": "Established",
                    "bgpTimerUpMsec": 1234,
                    "addressFamilyInfo": {"ipv4Unicast": {"acceptedPrefixCounter": 0}}
                },
                "198.18.0.2": {"remoteAs": 64513, "bgpState": "Active"}
            }
        });
        let n = parse_neighbors(&json);
        assert_eq!(n.len(), 2);
        let ext = &n[&Ipv4Addr::new(198, 18, 0, 155)];
        assert_eq!(ext.state, "Established");
        assert_eq!(ext.remote_as, Some(64512));
        assert_eq!(ext.established_ms, Some(1234));
        assert_eq!(ext.prefixes_received, Some(0));
        assert_eq!(n[&Ipv4Addr::new(198, 18, 0, 2)].established_ms, None);
    }
}
