//! The lab's namespaces and links, built with a handful of `ip -batch` runs:
//!
//! ```text
//!                 netns <sw>: br0 (L2 switch, 198.18.0.0/24)
//!      p-ext /          | p-n1                 \ p-nN
//!   netns <ext>        netns <node-1>  ...      netns <node-N>
//!   eth0 198.18.0.155  eth0 198.18.0.1          eth0 198.18.0.N
//!                      vh0 198.18.4.1/30 ── eth0 198.18.4.2/30  netns <vmhost-1> (VM /32s on lo)
//! ```
//! Interfaces are created directly inside the lab's namespaces, so their short names never collide
//! with other labs or the host; only the netns names carry the lab id.

use crate::cmd::run_ip_batch;
use crate::error::{Error, Result};
use crate::names::{
    LabNames, MAX_NODES, ROUTER_PREFIX_LEN, Router, switch_port, vmhost_link_addresses,
};
use crate::netns::write_sysctls;
use crate::state::StateStore;

/// The interface of a router or vmhost on its uplink.
pub const UPLINK: &str = "eth0";
/// The node's interface towards its vmhost.
pub const VMHOST_LINK: &str = "vh0";
/// The bridge in the switch netns.
pub const BRIDGE: &str = "br0";

/// Every netns of a lab with `nodes` nodes, in creation order.
pub fn all_netns(names: &LabNames, nodes: u16) -> Vec<String> {
    let mut v = vec![names.switch_netns(), names.router_netns(Router::Ext)];
    for n in 1..=nodes {
        v.push(names.router_netns(Router::Node(n)));
        v.push(names.vmhost_netns(n));
    }
    v
}

/// Checks the node count against the address plan.
pub fn validate_nodes(nodes: u16) -> Result<()> {
    if nodes == 0 || nodes > MAX_NODES {
        return Err(Error::InvalidTopology {
            reason: format!("node count {nodes} is outside 1..={MAX_NODES}"),
        });
    }
    Ok(())
}

/// Creates the namespaces, links, addresses and per-netns sysctls. Every netns is recorded in the
/// state file before the batch that creates it runs.
pub async fn create(names: &LabNames, nodes: u16, store: &StateStore) -> Result<()> {
    validate_nodes(nodes)?;
    let all = all_netns(names, nodes);
    // Refuse before recording anything: a netns with one of our names belongs to someone else
    // (another lab with the same id), and teardown must never delete it.
    let existing = crate::state::existing_netns();
    if let Some(taken) = all.iter().find(|n| existing.contains(n)) {
        return Err(Error::InvalidLabId {
            lab_id: names.lab_id().to_string(),
            reason: format!("netns {taken} already exists (another lab with this id?)"),
        });
    }
    store.record_netns(&all)?;

    let sw = names.switch_netns();
    let ext = names.router_netns(Router::Ext);
    let mut root = String::new();
    for n in &all {
        root.push_str(&format!("netns add {n}\n"));
    }
    root.push_str(&format!("link add {BRIDGE} netns {sw} type bridge\n"));
    let routers: Vec<Router> = std::iter::once(Router::Ext)
        .chain((1..=nodes).map(Router::Node))
        .collect();
    for r in &routers {
        root.push_str(&format!(
            "link add {UPLINK} netns {} type veth peer name {} netns {sw}\n",
            names.router_netns(*r),
            switch_port(*r)
        ));
    }
    for n in 1..=nodes {
        root.push_str(&format!(
            "link add {VMHOST_LINK} netns {} type veth peer name {UPLINK} netns {}\n",
            names.router_netns(Router::Node(n)),
            names.vmhost_netns(n)
        ));
    }
    // Not forced: a failure here (e.g. a name collision) must stop the bring-up.
    tokio::task::spawn_blocking(move || run_ip_batch_sync_strict(&root))
        .await
        .map_err(|e| Error::Command {
            command: "ip -batch -".into(),
            detail: e.to_string(),
        })??;

    let mut batches: Vec<(String, String)> = Vec::new();
    let mut sw_batch = format!("link set lo up\nlink set {BRIDGE} up\n");
    for r in &routers {
        sw_batch.push_str(&format!(
            "link set {} master {BRIDGE} up\n",
            switch_port(*r)
        ));
    }
    batches.push((sw.clone(), sw_batch));
    for r in &routers {
        let mut b = format!(
            "link set lo up\naddr add {}/{ROUTER_PREFIX_LEN} dev {UPLINK}\nlink set {UPLINK} up\n",
            r.address()
        );
        if let Router::Node(n) = r {
            let (node_side, _) = vmhost_link_addresses(*n);
            b.push_str(&format!(
                "addr add {node_side}/30 dev {VMHOST_LINK}\nlink set {VMHOST_LINK} up\n"
            ));
        }
        batches.push((names.router_netns(*r), b));
    }
    for n in 1..=nodes {
        let (node_side, vmhost_side) = vmhost_link_addresses(n);
        batches.push((
            names.vmhost_netns(n),
            format!(
                "link set lo up\naddr add {vmhost_side}/30 dev {UPLINK}\nlink set {UPLINK} up\nroute add default via {node_side} dev {UPLINK}\n"
            ),
        ));
    }
    let runs = batches
        .iter()
        .map(|(ns, b)| async move { run_ip_batch(Some(ns), b, false).await.map(|_| ()) });
    for r in futures::future::join_all(runs).await {
        r?;
    }

    // Sysctls are per netns (the host's stay untouched). Routers forward; nodes do not send ICMP
    // redirects when they hand traffic for a VM on another node back onto the shared segment; ext and
    // the vmhosts allow unprivileged ICMP echo sockets (frr-lab.md §5.2).
    let mut sysctls = Vec::new();
    sysctls.push((
        ext.clone(),
        vec![
            ("net.ipv4.ip_forward", "1"),
            ("net.ipv4.ping_group_range", "0 2147483647"),
        ],
    ));
    for n in 1..=nodes {
        sysctls.push((
            names.router_netns(Router::Node(n)),
            vec![
                ("net.ipv4.ip_forward", "1"),
                ("net.ipv4.conf.all.send_redirects", "0"),
                ("net.ipv4.conf.default.send_redirects", "0"),
                ("net.ipv4.conf.eth0.send_redirects", "0"),
            ],
        ));
        sysctls.push((
            names.vmhost_netns(n),
            vec![("net.ipv4.ping_group_range", "0 2147483647")],
        ));
    }
    let runs = sysctls.iter().map(|(ns, values)| write_sysctls(ns, values));
    for r in futures::future::join_all(runs).await {
        r?;
    }
    Ok(())
}

fn run_ip_batch_sync_strict(batch: &str) -> Result<()> {
    // `run_ip_batch_sync` uses -force (teardown must go on past errors); creation must not.
    let mut child = std::process::Command::new(crate::cmd::IP)
        .args(["-batch", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| Error::Command {
            command: "ip -batch -".into(),
            detail: e.to_string(),
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        stdin
            .write_all(batch.as_bytes())
            .map_err(|e| Error::Command {
                command: "ip -batch -".into(),
                detail: e.to_string(),
            })?;
    }
    let out = child.wait_with_output().map_err(|e| Error::Command {
        command: "ip -batch -".into(),
        detail: e.to_string(),
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Command {
            command: "ip -batch - (creating namespaces and links)".into(),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Sets a router's uplink down or up (fault injection: a link failure is seen by BGP only at hold-timer
/// expiry, 9 s with timers 3/9).
pub async fn set_uplink(names: &LabNames, router: Router, up: bool) -> Result<()> {
    let state = if up { "up" } else { "down" };
    run_ip_batch(
        Some(&names.router_netns(router)),
        &format!("link set {UPLINK} {state}\n"),
        false,
    )
    .await
    .map(|_| ())
}
