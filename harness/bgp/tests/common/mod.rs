//! A small FRR fixture for this crate's tests (frr-lab.md §2.1): three network namespaces —
//! `ext` (AS 64512, 198.18.0.155, bridge `br0`) and two nodes (AS 64513, 198.18.0.1/.2) on veths
//! into ext's bridge — each running zebra + bgpd as user `frr` with its own state directory.
//! Names are unique per process and call; everything is removed on drop (daemons by their
//! recorded pid, netns by name, the directory), even when the test fails.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

pub const FRR_BIN: &str = "/usr/lib/frr";
pub const EXT_ADDR: &str = "198.18.0.155";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Fails with a clear message when root, iproute2 or FRR is missing (never passes silently).
pub fn require_prerequisites() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "these tests need root (network namespaces, FRR daemons); ci/test.sh runs them as root"
    );
    for bin in ["zebra", "bgpd"] {
        assert!(
            Path::new(FRR_BIN).join(bin).exists(),
            "FRR is missing ({FRR_BIN}/{bin}): apt-get install -y frr"
        );
    }
    assert!(
        Command::new("ip").arg("-V").output().is_ok(),
        "iproute2 is missing: apt-get install -y iproute2"
    );
    assert!(
        nix::unistd::User::from_name("frr").ok().flatten().is_some(),
        "user frr is missing: apt-get install -y frr"
    );
}

fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One router of the fixture.
#[derive(Debug, Clone)]
pub struct Router {
    pub name: &'static str,
    pub netns: String,
    pub dir: PathBuf,
    pub address: &'static str,
}

impl Router {
    pub fn vty_dir(&self) -> &Path {
        &self.dir
    }
    fn pidfile(&self, daemon: &str) -> PathBuf {
        self.dir.join(format!("{daemon}.pid"))
    }
}

/// The fixture. Drop tears it down.
#[derive(Debug)]
pub struct FrrLab {
    pub root: PathBuf,
    pub ext: Router,
    pub nodes: Vec<Router>,
    /// Pids of every daemon ever started, for teardown.
    pids: Vec<i32>,
    netns: Vec<String>,
}

/// What ext's bgpd config should contain for BMP.
#[derive(Debug, Clone, Copy)]
pub enum ExtBmp {
    /// No BMP target (bgpd still loads the module): targets are added at runtime.
    None,
    /// One target to 127.0.0.1:port in ext's netns, in the startup config.
    Startup(u16),
}

impl FrrLab {
    /// Creates the namespaces and links only; FRR is started with [`FrrLab::start_frr`], so a test
    /// can open its listeners inside ext first.
    pub fn create(tag: &str) -> FrrLab {
        require_prerequisites();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let id = format!("{}-{n}", std::process::id());
        let root = std::env::temp_dir().join(format!("vmbgp-bgp-{tag}-{id}"));
        let router = |name: &'static str, address: &'static str| Router {
            name,
            netns: format!("vbgp-{id}-{name}"),
            dir: root.join(name),
            address,
        };
        let mut lab = FrrLab {
            ext: router("ext", EXT_ADDR),
            nodes: vec![router("n1", "198.18.0.1"), router("n2", "198.18.0.2")],
            root,
            pids: Vec::new(),
            netns: Vec::new(),
        };
        let ext = lab.ext.netns.clone();
        for r in std::iter::once(lab.ext.clone()).chain(lab.nodes.clone()) {
            run(&["ip", "netns", "add", &r.netns]);
            lab.netns.push(r.netns.clone());
            run(&["ip", "-n", &r.netns, "link", "set", "lo", "up"]);
            std::fs::create_dir_all(&r.dir).expect("state dir");
            run(&["chown", "frr:frr", r.dir.to_str().expect("utf8 path")]);
        }
        run(&["ip", "-n", &ext, "link", "add", "br0", "type", "bridge"]);
        run(&[
            "ip",
            "-n",
            &ext,
            "addr",
            "add",
            &format!("{EXT_ADDR}/24"),
            "dev",
            "br0",
        ]);
        run(&["ip", "-n", &ext, "link", "set", "br0", "up"]);
        for (i, node) in lab.nodes.clone().iter().enumerate() {
            let port = format!("p{}", i + 1);
            run(&[
                "ip",
                "-n",
                &node.netns,
                "link",
                "add",
                "eth0",
                "type",
                "veth",
                "peer",
                "name",
                &port,
                "netns",
                &ext,
            ]);
            run(&[
                "ip", "-n", &ext, "link", "set", &port, "master", "br0", "up",
            ]);
            run(&[
                "ip",
                "-n",
                &node.netns,
                "addr",
                "add",
                &format!("{}/24", node.address),
                "dev",
                "eth0",
            ]);
            run(&["ip", "-n", &node.netns, "link", "set", "eth0", "up"]);
        }
        lab
    }

    fn ext_bgpd_conf(bmp: ExtBmp) -> String {
        let bmp = match bmp {
            ExtBmp::None => String::new(),
            ExtBmp::Startup(port) => format!(
                " bmp targets harness\n  bmp connect 127.0.0.1 port {port} min-retry 100 max-retry 1000\n  \
                 bmp monitor ipv4 unicast pre-policy\n  bmp monitor ipv4 unicast post-policy\n  \
                 bmp stats interval 1000\n exit\n"
            ),
        };
        format!(
            "hostname ext\n!\nbgp community-list standard CL-VM100 seq 5 permit 64512:100\n\
             route-map VM-IN permit 10\n match community CL-VM100\n set local-preference 200\nexit\n\
             route-map VM-IN permit 100\nexit\n!\nrouter bgp 64512\n bgp router-id {EXT_ADDR}\n no bgp ebgp-requires-policy\n \
             no bgp default ipv4-unicast\n neighbor NODES peer-group\n neighbor NODES remote-as 64513\n \
             neighbor NODES timers 3 9\n neighbor NODES timers connect 1\n \
             neighbor NODES advertisement-interval 0\n neighbor 198.18.0.1 peer-group NODES\n \
             neighbor 198.18.0.2 peer-group NODES\n !\n address-family ipv4 unicast\n  maximum-paths 64\n  \
             neighbor NODES activate\n  neighbor NODES soft-reconfiguration inbound\n  neighbor NODES route-map VM-IN in\n exit-address-family\n \
             !\n{bmp}exit\n!\n"
        )
    }

    fn node_bgpd_conf(node: &Router) -> String {
        format!(
            "hostname {}\n!\nroute-map VM100 permit 10\n set community 64512:100\nexit\n!\n\
             router bgp 64513\n bgp router-id {}\n no bgp ebgp-requires-policy\n no bgp network import-check\n \
             no bgp default ipv4-unicast\n neighbor {EXT_ADDR} remote-as 64512\n neighbor {EXT_ADDR} timers 3 9\n \
             neighbor {EXT_ADDR} timers connect 1\n neighbor {EXT_ADDR} advertisement-interval 0\n !\n \
             address-family ipv4 unicast\n  neighbor {EXT_ADDR} activate\n  neighbor {EXT_ADDR} send-community\n \
             exit-address-family\nexit\n!\n",
            node.name, node.address
        )
    }

    /// Writes the configs and starts zebra + bgpd on every router.
    pub fn start_frr(&mut self, bmp: ExtBmp) {
        let ext = self.ext.clone();
        std::fs::write(ext.dir.join("bgpd.conf"), Self::ext_bgpd_conf(bmp)).expect("write");
        for node in self.nodes.clone() {
            std::fs::write(node.dir.join("bgpd.conf"), Self::node_bgpd_conf(&node)).expect("write");
        }
        for r in std::iter::once(ext).chain(self.nodes.clone()) {
            std::fs::write(r.dir.join("zebra.conf"), format!("hostname {}\n", r.name))
                .expect("write");
            self.start_daemon(&r, "zebra");
            self.start_daemon(&r, "bgpd");
        }
    }

    /// Starts one daemon and waits for its vty socket; records its pid.
    pub fn start_daemon(&mut self, r: &Router, daemon: &str) {
        let d = r.dir.to_str().expect("utf8 path").to_string();
        for stale in [format!("{daemon}.vty"), format!("{daemon}.pid")] {
            let _ = std::fs::remove_file(r.dir.join(stale)); // FRR leaves them behind on SIGTERM
        }
        if daemon == "zebra" {
            let _ = std::fs::remove_file(r.dir.join("zserv.api"));
        }
        let mut args: Vec<String> = vec![
            "netns".into(),
            "exec".into(),
            r.netns.clone(),
            format!("{FRR_BIN}/{daemon}"),
            "-d".into(),
        ];
        if daemon == "bgpd" && r.name == "ext" {
            args.extend(["-M".into(), "bmp".into()]);
        }
        args.extend([
            "--vty_socket".into(),
            d.clone(),
            "-z".into(),
            format!("{d}/zserv.api"),
            "-i".into(),
            format!("{d}/{daemon}.pid"),
            "-f".into(),
            format!("{d}/{daemon}.conf"),
            "-P".into(),
            "0".into(),
            "--log".into(),
            format!("file:{d}/{daemon}.log"),
        ]);
        let status = Command::new("ip").args(&args).status().expect("start FRR");
        assert!(status.success(), "starting {daemon} in {} failed", r.netns);
        let socket = if daemon == "zebra" {
            r.dir.join("zserv.api")
        } else {
            r.dir.join("bgpd.vty")
        };
        let start = Instant::now();
        loop {
            let pid = std::fs::read_to_string(r.pidfile(daemon))
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok());
            if let (Some(pid), true) = (pid, socket.exists()) {
                self.pids.push(pid);
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "{daemon} in {} did not come up; see {}/{daemon}.log",
                r.netns,
                d
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops one daemon by its recorded pid (SIGTERM, then SIGKILL after 3 s) and waits for it.
    pub fn stop_daemon(&mut self, r: &Router, daemon: &str) {
        let Some(pid) = std::fs::read_to_string(r.pidfile(daemon))
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
        else {
            return;
        };
        if self.pids.contains(&pid) {
            stop_pid(pid);
            self.pids.retain(|p| *p != pid);
        }
    }

    /// Restarts a router's bgpd (same config).
    pub fn restart_bgpd(&mut self, r: &Router) {
        self.stop_daemon(r, "bgpd");
        self.start_daemon(r, "bgpd");
    }
}

fn stop_pid(pid: i32) {
    stop_pids(&[pid]);
}

/// SIGTERM to all at once (FRR daemons take ~2 s each to exit), then wait; SIGKILL after 4 s.
fn stop_pids(pids: &[i32]) {
    let start = Instant::now();
    let mut alive: Vec<Pid> = pids
        .iter()
        .map(|p| Pid::from_raw(*p))
        .filter(|p| kill(*p, Signal::SIGTERM).is_ok())
        .collect();
    while !alive.is_empty() && start.elapsed() < Duration::from_secs(6) {
        if start.elapsed() > Duration::from_secs(4) {
            for p in &alive {
                let _ = kill(*p, Signal::SIGKILL);
            }
        }
        std::thread::sleep(Duration::from_millis(10));
        alive.retain(|p| kill(*p, None).is_ok());
    }
}

impl Drop for FrrLab {
    fn drop(&mut self) {
        stop_pids(&std::mem::take(&mut self.pids));
        for ns in self.netns.drain(..) {
            let _ = Command::new("ip").args(["netns", "del", &ns]).status();
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// `since` value for [`wait_for`]: only items not received yet.
pub const NEW: usize = usize::MAX;

/// The index of the first item from `seen[since..]` on that matches `pred`, receiving more from
/// `rx` (and appending them to `seen`) as needed; fails after `timeout` with what was seen.
pub async fn wait_for<T: std::fmt::Debug>(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<T>,
    seen: &mut Vec<T>,
    since: usize,
    timeout: Duration,
    what: &str,
    pred: impl Fn(&T) -> bool,
) -> usize {
    let since = since.min(seen.len());
    if let Some(i) = seen.iter().skip(since).position(&pred) {
        return since + i;
    }
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(item)) => {
                let hit = pred(&item);
                seen.push(item);
                if hit {
                    if std::env::var_os("VMBGP_TEST_TRACE").is_some() {
                        eprintln!("{:?} {what}", std::time::SystemTime::now());
                    }
                    return seen.len() - 1;
                }
            }
            Ok(None) => panic!("channel closed while waiting for {what}; seen: {seen:#?}"),
            Err(_) => panic!("timed out waiting for {what}; seen: {seen:#?}"),
        }
    }
}
