//! Shared helpers for the lab-net integration tests: prerequisites, unique names, ext's config.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use vmbgp_lab_net::{LabNet, LabNetConfig, TeardownGuard};

pub const BMP_PORT: u16 = 11019;

/// Fails the test with a clear message when root or FRR is missing (never passes silently).
pub fn require_prerequisites() {
    if let Err(e) =
        vmbgp_lab_net::network::check_prerequisites(std::path::Path::new("/usr/lib/frr"))
    {
        panic!(
            "lab-net integration tests need root, iproute2 and FRR (apt-get install -y frr iproute2 iputils-ping): {e}"
        );
    }
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A lab id and state dir unique to this test process and call.
pub fn unique(tag: &str) -> (String, PathBuf) {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let id = format!("t{}-{tag}-{n}", std::process::id());
    let dir = std::env::temp_dir().join(format!("vmbgp-labnet-{id}"));
    (id, dir)
}

/// ext's bgpd config from the fixture, for `nodes` nodes.
pub fn ext_config(nodes: u16, bmp_port: u16) -> String {
    let neighbors: String = (1..=nodes)
        .map(|n| format!(" neighbor 198.18.0.{n} peer-group CLUSTER\n"))
        .collect();
    include_str!("../fixtures/ext-bgpd.conf")
        .replace("{{NODE_NEIGHBORS}}\n", &neighbors)
        .replace("{{BMP_PORT}}", &bmp_port.to_string())
}

/// Brings up a lab with a teardown guard (declared first so it drops last).
pub async fn up(tag: &str, nodes: u16) -> (TeardownGuard, LabNet) {
    up_with(tag, nodes, |_| {}, None).await
}

/// Like [`up`], with a config tweak and a ground-truth sink.
pub async fn up_with(
    tag: &str,
    nodes: u16,
    tweak: impl FnOnce(&mut LabNetConfig),
    truth: Option<std::sync::Arc<dyn vmbgp_lab_net::net_ground_truth::GroundTruthSink>>,
) -> (TeardownGuard, LabNet) {
    require_prerequisites();
    let (id, dir) = unique(tag);
    let guard = TeardownGuard::new(&dir);
    let mut config = LabNetConfig::new(&id, &dir, nodes, ext_config(nodes, BMP_PORT));
    tweak(&mut config);
    let lab = LabNet::up(config, truth).await.expect("lab up");
    (guard, lab)
}

/// Every netns, FRR process and path of a lab id is gone.
pub fn assert_nothing_left(lab_id: &str, state_dir: &std::path::Path) {
    let netns: Vec<String> = vmbgp_lab_net::state::existing_netns()
        .into_iter()
        .filter(|n| n.contains(&format!("-{lab_id}-")))
        .collect();
    assert!(netns.is_empty(), "netns left behind: {netns:?}");
    let marker = state_dir.display().to_string();
    let mut procs = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == std::process::id() as i32 {
            continue;
        }
        if let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(&marker) {
                procs.push(format!("{pid}: {cmd}"));
            }
        }
    }
    assert!(procs.is_empty(), "processes left behind: {procs:?}");
    assert!(
        !state_dir.exists(),
        "state dir left behind: {}",
        state_dir.display()
    );
}
