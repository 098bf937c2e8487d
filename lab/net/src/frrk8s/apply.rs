//! Applying rendered configuration to a node's running daemons over the vty socket, diff-based like
//! frr-k8s's reloader (`frr-reload.py`): the old and new texts are parsed into contexts
//! (`router bgp 64513` › `address-family ipv4 unicast`, `route-map X permit 3`, top-level lines), lines
//! that disappeared are removed with `no <line>` (in reverse order, so `address-family` lines go before
//! the neighbour they name), then lines that appeared are added in the new text's order, top-level lines
//! (prefix-lists) first so a new `network` line is filtered by the new prefix-list at once. A full reload
//! (`no router bgp` + re-add) would reset every session on each change, which frr-k8s never does.
//!
//! The new text is also written to the daemon's config file, so a restarted bgpd comes back with it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::frr::{Daemon, Supervisor};
use crate::names::Router;

/// A parsed configuration: contexts in first-appearance order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigTree {
    /// (context path, lines); the empty path holds top-level single lines.
    contexts: Vec<(Vec<String>, Vec<String>)>,
    index: BTreeMap<Vec<String>, usize>,
}

impl ConfigTree {
    /// Parses FRR configuration text by indentation. `exit*`, `end` and `!` comment lines are skipped.
    pub fn parse(text: &str) -> ConfigTree {
        let mut tree = ConfigTree::default();
        tree.context(&[]);
        let lines: Vec<(usize, &str)> = text
            .lines()
            .map(|l| (l.len() - l.trim_start().len(), l.trim()))
            .filter(|(_, l)| {
                !l.is_empty()
                    && !l.starts_with('!')
                    && !matches!(*l, "exit" | "exit-address-family" | "exit-vrf" | "end")
            })
            .collect();
        let mut stack: Vec<(usize, String)> = Vec::new();
        for (i, (indent, line)) in lines.iter().enumerate() {
            while stack.last().is_some_and(|(d, _)| *d >= *indent) {
                stack.pop();
            }
            let path: Vec<String> = stack.iter().map(|(_, h)| h.clone()).collect();
            let is_header = lines.get(i + 1).is_some_and(|(next, _)| next > indent);
            if is_header {
                let mut child = path.clone();
                child.push(line.to_string());
                tree.context(&child);
                stack.push((*indent, line.to_string()));
            } else {
                let idx = tree.context(&path);
                let ctx = &mut tree.contexts[idx].1;
                if !ctx.iter().any(|l| l == line) {
                    ctx.push(line.to_string());
                }
            }
        }
        tree
    }

    fn context(&mut self, path: &[String]) -> usize {
        if let Some(i) = self.index.get(path) {
            return *i;
        }
        self.contexts.push((path.to_vec(), Vec::new()));
        let i = self.contexts.len() - 1;
        self.index.insert(path.to_vec(), i);
        i
    }

    fn lines(&self, path: &[String]) -> Option<&Vec<String>> {
        self.index.get(path).map(|i| &self.contexts[*i].1)
    }

    /// Prefixes of every `network <prefix>` line.
    pub fn networks(&self) -> BTreeSet<String> {
        self.contexts
            .iter()
            .flat_map(|(_, lines)| lines.iter())
            .filter_map(|l| l.strip_prefix("network "))
            .map(|p| p.split_whitespace().next().unwrap_or(p).to_string())
            .collect()
    }
}

fn enter(commands: &mut Vec<String>, path: &[String]) {
    commands.extend(path.iter().cloned());
}

fn leave(commands: &mut Vec<String>, path: &[String]) {
    for h in path.iter().rev() {
        commands.push(if h.starts_with("address-family") {
            "exit-address-family".to_string()
        } else {
            "exit".to_string()
        });
    }
}

/// The configuration-mode commands that turn `old` into `new`.
pub fn diff_commands(old: &ConfigTree, new: &ConfigTree) -> Vec<String> {
    let mut commands = Vec::new();
    // Deletions, reverse order.
    for (path, lines) in old.contexts.iter().rev() {
        match new.lines(path) {
            Some(new_lines) => {
                let removed: Vec<&String> = lines
                    .iter()
                    .rev()
                    .filter(|l| !new_lines.contains(l))
                    .collect();
                if removed.is_empty() {
                    continue;
                }
                enter(&mut commands, path);
                commands.extend(removed.into_iter().map(|l| format!("no {l}")));
                leave(&mut commands, path);
            }
            None if path.len() == 1 => commands.push(format!("no {}", path[0])),
            None => {
                // A nested context (address-family) vanished while its top-level parent stays:
                // remove its lines one by one. If the parent is gone too, `no <parent>` covers it.
                if new.lines(&path[..1]).is_none() || lines.is_empty() {
                    continue;
                }
                enter(&mut commands, path);
                commands.extend(lines.iter().rev().map(|l| format!("no {l}")));
                leave(&mut commands, path);
            }
        }
    }
    // Additions: top-level lines first, then contexts in the new text's order.
    if let Some(global) = new.lines(&[]) {
        let old_global = old.lines(&[]);
        for l in global {
            if !old_global.is_some_and(|o| o.contains(l)) {
                commands.push(l.clone());
            }
        }
    }
    for (path, lines) in &new.contexts {
        if path.is_empty() {
            continue;
        }
        let old_lines = old.lines(path);
        let added: Vec<&String> = lines
            .iter()
            .filter(|l| !old_lines.is_some_and(|o| o.contains(l)))
            .collect();
        if old_lines.is_some() && added.is_empty() {
            continue;
        }
        enter(&mut commands, path);
        commands.extend(added.into_iter().cloned());
        leave(&mut commands, path);
    }
    commands
}

/// Which daemon a top-level line belongs to: `ip/ipv6 nht` → zebra; `hostname`, `log` → both; the rest
/// (prefix-lists, route-maps, `router bgp`) → bgpd.
pub fn split_daemons(text: &str) -> (String, String) {
    let mut zebra = String::new();
    let mut bgpd = String::new();
    let mut in_block = false;
    for line in text.lines() {
        let top = !line.starts_with(' ') && !line.trim().is_empty();
        if top {
            in_block = false;
        }
        let t = line.trim();
        let (to_zebra, to_bgpd) = if !top || in_block {
            (false, true)
        } else if t.starts_with("ip nht") || t.starts_with("ipv6 nht") {
            (true, false)
        } else if t.starts_with("hostname") || t.starts_with("log ") {
            (true, true)
        } else {
            in_block = true;
            (false, true)
        };
        if to_zebra {
            zebra.push_str(line);
            zebra.push('\n');
        }
        if to_bgpd {
            bgpd.push_str(line);
            bgpd.push('\n');
        }
    }
    (zebra, bgpd)
}

/// The outcome of one apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyOutcome {
    /// Commands sent (both daemons).
    pub commands: usize,
    /// Lines that failed, with the daemon's reply (empty on success).
    pub failures: Vec<String>,
    /// `network` prefixes that appeared / disappeared.
    pub prefixes_added: Vec<String>,
    pub prefixes_removed: Vec<String>,
    /// Wall time of the vty exchange.
    pub took: Duration,
}

impl ApplyOutcome {
    /// `"success"` or the failures, as frr-k8s reports `lastReloadResult`.
    pub fn result_text(&self) -> String {
        if self.failures.is_empty() {
            "success".to_string()
        } else {
            format!("error: {}", self.failures.join("; "))
        }
    }
}

/// Applies rendered configs to one node, remembering what its daemons run.
#[derive(Debug)]
pub struct NodeApplier {
    router: Router,
    supervisor: Supervisor,
    zebra: ConfigTree,
    bgpd: ConfigTree,
}

impl NodeApplier {
    /// An applier for a node whose daemons were started with the given config texts.
    pub fn new(
        router: Router,
        supervisor: Supervisor,
        zebra_startup: &str,
        bgpd_startup: &str,
    ) -> Self {
        NodeApplier {
            router,
            supervisor,
            zebra: ConfigTree::parse(zebra_startup),
            bgpd: ConfigTree::parse(bgpd_startup),
        }
    }

    /// An applier for a node started by the lab (startup configs: hostname only).
    pub fn for_lab_node(router: Router, supervisor: Supervisor) -> Self {
        let zebra = format!("hostname {router}\n");
        let bgpd = std::fs::read_to_string(
            supervisor
                .router_dir(router)
                .map(|d| d.config(Daemon::Bgpd))
                .unwrap_or_default(),
        )
        .unwrap_or_default();
        NodeApplier::new(router, supervisor, &zebra, &bgpd)
    }

    /// Applies a full rendered config (zebra and bgpd lines mixed, as [`super::render::render`] makes).
    pub async fn apply(&mut self, rendered: &str) -> Result<ApplyOutcome> {
        let (zebra_text, bgpd_text) = split_daemons(rendered);
        let new_zebra = ConfigTree::parse(&zebra_text);
        let new_bgpd = ConfigTree::parse(&bgpd_text);
        let zebra_cmds = diff_commands(&self.zebra, &new_zebra);
        let bgpd_cmds = diff_commands(&self.bgpd, &new_bgpd);
        let old_nets = self.bgpd.networks();
        let new_nets = new_bgpd.networks();
        // Written first: a bgpd restarted during or after this apply comes back with the new config.
        self.supervisor.write_bgpd_config(self.router, &bgpd_text)?;
        let started = Instant::now();
        let mut failures = Vec::new();
        for (daemon, cmds) in [(Daemon::Zebra, &zebra_cmds), (Daemon::Bgpd, &bgpd_cmds)] {
            if cmds.is_empty() {
                continue;
            }
            let failed = self.supervisor.configure(self.router, daemon, cmds).await?;
            failures.extend(failed.into_iter().map(|(line, reply)| {
                format!(
                    "{}: `{line}`: {} {}",
                    daemon.name(),
                    reply.status,
                    reply.output.trim()
                )
            }));
        }
        let took = started.elapsed();
        self.zebra = new_zebra;
        self.bgpd = new_bgpd;
        Ok(ApplyOutcome {
            commands: zebra_cmds.len() + bgpd_cmds.len(),
            failures,
            prefixes_added: new_nets.difference(&old_nets).cloned().collect(),
            prefixes_removed: old_nets.difference(&new_nets).cloned().collect(),
            took,
        })
    }

    /// Forgets what the daemons run after a bgpd restart: bgpd reread its file, which holds the last
    /// applied text, so nothing changes; kept explicit for restarts with an external config change.
    pub fn reset_bgpd(&mut self, running: &str) {
        self.bgpd = ConfigTree::parse(running);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = "hostname node-1
ip prefix-list A-allowed-ipv4 seq 1 permit 198.19.1.0/24
route-map A-out permit 1
  match ip address prefix-list A-allowed-ipv4

router bgp 64513
  no bgp default ipv4-unicast
  neighbor 198.18.0.155 remote-as 64512
  neighbor 198.18.0.155 timers 3 9
  address-family ipv4 unicast
    neighbor 198.18.0.155 activate
  exit-address-family
  address-family ipv4 unicast
    network 198.19.1.0/24
  exit-address-family
";

    #[test]
    fn parses_contexts_by_indentation() {
        let t = ConfigTree::parse(OLD);
        let paths: Vec<&Vec<String>> = t.contexts.iter().map(|(p, _)| p).collect();
        assert_eq!(paths.len(), 4);
        assert_eq!(
            t.lines(&[
                "router bgp 64513".into(),
                "address-family ipv4 unicast".into()
            ]),
            Some(&vec![
                "neighbor 198.18.0.155 activate".to_string(),
                "network 198.19.1.0/24".to_string()
            ])
        );
        assert_eq!(t.networks(), BTreeSet::from(["198.19.1.0/24".to_string()]));
    }

    #[test]
    fn identical_configs_need_no_commands() {
        let t = ConfigTree::parse(OLD);
        assert!(diff_commands(&t, &t).is_empty());
    }

    #[test]
    fn adding_a_prefix_adds_the_prefix_list_entry_before_the_network() {
        let new = OLD.replace(
            "ip prefix-list A-allowed-ipv4 seq 1 permit 198.19.1.0/24\n",
            "ip prefix-list A-allowed-ipv4 seq 1 permit 198.19.1.0/24\nip prefix-list A-allowed-ipv4 seq 2 permit 198.19.2.0/24\n",
        )
        .replace(
            "    network 198.19.1.0/24\n",
            "    network 198.19.1.0/24\n    network 198.19.2.0/24\n",
        );
        let cmds = diff_commands(&ConfigTree::parse(OLD), &ConfigTree::parse(&new));
        assert_eq!(
            cmds,
            vec![
                "ip prefix-list A-allowed-ipv4 seq 2 permit 198.19.2.0/24",
                "router bgp 64513",
                "address-family ipv4 unicast",
                "network 198.19.2.0/24",
                "exit-address-family",
                "exit",
            ]
        );
    }

    #[test]
    fn removing_a_neighbor_and_route_map_deletes_in_reverse_order() {
        let new = "hostname node-1
router bgp 64513
  no bgp default ipv4-unicast
";
        let cmds = diff_commands(&ConfigTree::parse(OLD), &ConfigTree::parse(new));
        assert_eq!(
            cmds,
            vec![
                "router bgp 64513",
                "address-family ipv4 unicast",
                "no network 198.19.1.0/24",
                "no neighbor 198.18.0.155 activate",
                "exit-address-family",
                "exit",
                "router bgp 64513",
                "no neighbor 198.18.0.155 timers 3 9",
                "no neighbor 198.18.0.155 remote-as 64512",
                "exit",
                "no route-map A-out permit 1",
                "no ip prefix-list A-allowed-ipv4 seq 1 permit 198.19.1.0/24",
            ]
        );
    }

    #[test]
    fn removing_the_router_is_one_command() {
        let cmds = diff_commands(
            &ConfigTree::parse(OLD),
            &ConfigTree::parse("hostname node-1\n"),
        );
        assert!(cmds.contains(&"no router bgp 64513".to_string()));
        assert!(!cmds.iter().any(|c| c.contains("activate")), "{cmds:?}");
    }

    #[test]
    fn splits_lines_between_daemons() {
        let (z, b) = split_daemons(
            "log timestamp precision 3\nhostname n\nip nht resolve-via-default\nroute-map X permit 1\n  match ip address prefix-list P\nrouter bgp 1\n  neighbor a remote-as 2\n",
        );
        assert_eq!(
            z,
            "log timestamp precision 3\nhostname n\nip nht resolve-via-default\n"
        );
        assert_eq!(
            b,
            "log timestamp precision 3\nhostname n\nroute-map X permit 1\n  match ip address prefix-list P\nrouter bgp 1\n  neighbor a remote-as 2\n"
        );
    }
}
