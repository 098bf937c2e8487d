//! Test fixture: two network namespaces this test creates ("near" runs the probes, "far" holds
//! the targets), joined by a veth pair, addresses from 198.18.0.0/15 only. Dropping the fixture
//! deletes both namespaces (and with them the veth pair and every address).
#![allow(dead_code)]

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The near side's address on the veth.
pub const NEAR: &str = "198.18.200.1";
/// The far side's address on the veth.
pub const FAR: &str = "198.18.200.2";

#[derive(Debug)]
pub struct NetnsPair {
    pub near: String,
    pub far: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip` (iproute2 is required): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl NetnsPair {
    /// Creates the pair; panics with the missing prerequisite (root, iproute2) when it cannot.
    pub fn new(tag: &str) -> NetnsPair {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test creates network namespaces and needs root"
        );
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let base = format!("vmbgp-probe-{}-{n}-{tag}", std::process::id());
        let pair = NetnsPair {
            near: format!("{base}-n"),
            far: format!("{base}-f"),
        };
        ip(&["netns", "add", &pair.near]).expect("ip netns add (needs root and iproute2)");
        ip(&["netns", "add", &pair.far]).expect("ip netns add");
        let steps: Vec<Vec<&str>> = vec![
            vec![
                "-n", &pair.near, "link", "add", "p0", "type", "veth", "peer", "name", "p1",
                "netns", &pair.far,
            ],
            vec!["-n", &pair.near, "link", "set", "lo", "up"],
            vec!["-n", &pair.far, "link", "set", "lo", "up"],
            vec!["-n", &pair.near, "link", "set", "p0", "up"],
            vec!["-n", &pair.far, "link", "set", "p1", "up"],
            vec![
                "-n",
                &pair.near,
                "addr",
                "add",
                "198.18.200.1/30",
                "dev",
                "p0",
            ],
            vec![
                "-n",
                &pair.far,
                "addr",
                "add",
                "198.18.200.2/30",
                "dev",
                "p1",
            ],
            // VM-like addresses live on the far side's lo, routed from the near side.
            vec![
                "-n",
                &pair.near,
                "route",
                "add",
                "198.19.0.0/16",
                "via",
                FAR,
            ],
        ];
        for step in steps {
            ip(&step).expect("fixture setup");
        }
        pair
    }

    /// Adds a /32 on the far side's lo.
    pub fn add_far_address(&self, addr: &str) {
        ip(&[
            "-n",
            &self.far,
            "addr",
            "add",
            &format!("{addr}/32"),
            "dev",
            "lo",
        ])
        .expect("addr add");
    }

    /// Sets a sysctl inside one of the pair's namespaces (e.g. `net.ipv4.ip_forward=1`).
    pub fn sysctl(&self, netns: &str, setting: &str) {
        let status = Command::new("ip")
            .args(["netns", "exec", netns, "sysctl", "-q", "-w", setting])
            .status()
            .expect("ip netns exec sysctl");
        assert!(status.success(), "sysctl {setting} in {netns} failed");
    }

    /// Removes a /32 from the far side's lo.
    pub fn del_far_address(&self, addr: &str) {
        ip(&[
            "-n",
            &self.far,
            "addr",
            "del",
            &format!("{addr}/32"),
            "dev",
            "lo",
        ])
        .expect("addr del");
    }
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.near]);
        let _ = ip(&["netns", "del", &self.far]);
    }
}
