//! Renders a merged node config to FRR configuration text the way frr-k8s's templates do
//! (`internal/frr/templates/frr.tmpl`, `neighborsession.tmpl`, `prefixlists.tmpl`,
//! `neighboripfamily.tmpl`): per-neighbour prefix-lists and `<id>-in`/`<id>-out` route-maps with one
//! counter per neighbour, `router bgp` with the fixed frr-k8s preamble, one `network` line per prefix.
//! Differences, because the lab runs daemons with their own log files and without bfdd: no
//! `log stdout` line, no `bfd` block. Pure function; golden-tested, and compared with frr-k8s's own
//! renders (`lab/net/tests/fixtures/frr-k8s/`, test `frr_k8s_renders`).

use std::collections::BTreeMap;
use std::fmt::Write;

use ipnet::IpNet;

use super::model::{MergedNeighbor, MergedRouter, NodeConfig};

struct Counters(BTreeMap<String, u32>);

impl Counters {
    fn next(&mut self, name: &str) -> u32 {
        let c = self.0.entry(name.to_string()).or_insert(0);
        *c += 1;
        *c
    }
}

fn family(p: &IpNet) -> &'static str {
    match p {
        IpNet::V4(_) => "ip",
        IpNet::V6(_) => "ipv6",
    }
}

fn is_v6_address(addr: &str) -> bool {
    addr.contains(':')
}

/// Renders the full config text (zebra and bgpd lines together, as frr-k8s writes `frr.conf`).
pub fn render(config: &NodeConfig) -> String {
    let mut out = String::new();
    let mut counters = Counters(BTreeMap::new());
    out.push_str("log timestamp precision 3\n");
    let _ = writeln!(out, "hostname {}", config.hostname);
    out.push_str("ip nht resolve-via-default\nipv6 nht resolve-via-default\n");
    for router in config.routers.values() {
        for n in router.neighbors.values() {
            neighbor_filters(&mut out, &mut counters, n);
        }
    }
    for router in config.routers.values() {
        router_block(&mut out, router);
    }
    for (_, _, raw) in &config.raw {
        out.push_str(raw.trim_end());
        out.push('\n');
    }
    out
}

fn neighbor_filters(out: &mut String, counters: &mut Counters, n: &MergedNeighbor) {
    let id = &n.address;
    let fam = if is_v6_address(id) { "ipv6" } else { "ipv4" };
    out.push('\n');
    // Property prefix lists (communities, local preferences), sorted by name like SortedPrefixLists.
    let mut property: BTreeMap<String, (Vec<IpNet>, String)> = BTreeMap::new();
    for (community, prefixes) in &n.communities {
        for (ipfam, set) in split_families(prefixes) {
            let name = format!("{id}-{community}-{ipfam}-community-prefixes");
            let statement = if community.matches(':').count() == 2 {
                format!("set large-community {community} additive")
            } else {
                format!("set community {community} additive")
            };
            property.insert(name, (set, statement));
        }
    }
    for (lp, prefixes) in &n.local_prefs {
        for (ipfam, set) in split_families(prefixes) {
            let name = format!("{id}-{lp}-{ipfam}-localpref-prefixes");
            property.insert(name, (set, format!("set local-preference {lp}")));
        }
    }
    for (name, (prefixes, statement)) in &property {
        let plfam = prefixes.first().map(family).unwrap_or("ip");
        for p in prefixes {
            let seq = counters.next(name);
            let _ = writeln!(out, "{plfam} prefix-list {name} seq {seq} permit {p}");
        }
        let seq = counters.next(id);
        let _ = writeln!(
            out,
            "route-map {id}-out permit {seq}\n  match {plfam} address prefix-list {name}\n  {statement}\n  on-match next"
        );
    }
    let v4: Vec<&IpNet> = n
        .advertise
        .iter()
        .filter(|p| matches!(p, IpNet::V4(_)))
        .collect();
    let v6: Vec<&IpNet> = n
        .advertise
        .iter()
        .filter(|p| matches!(p, IpNet::V6(_)))
        .collect();
    let pl4 = format!("{id}-allowed-ipv4");
    let pl6 = format!("{id}-allowed-ipv6");
    if v4.is_empty() {
        let seq = counters.next(&pl4);
        let _ = writeln!(out, "ip prefix-list {pl4} seq {seq} deny any");
    }
    for p in v4 {
        let seq = counters.next(&pl4);
        let _ = writeln!(out, "ip prefix-list {pl4} seq {seq} permit {p}");
    }
    if v6.is_empty() {
        let seq = counters.next(&pl6);
        let _ = writeln!(out, "ipv6 prefix-list {pl6} seq {seq} deny any");
    }
    for p in v6 {
        let seq = counters.next(&pl6);
        let _ = writeln!(out, "ipv6 prefix-list {pl6} seq {seq} permit {p}");
    }
    let seq = counters.next(id);
    let _ = writeln!(
        out,
        "route-map {id}-out permit {seq}\n  match ip address prefix-list {pl4}"
    );
    let seq = counters.next(id);
    let _ = writeln!(
        out,
        "route-map {id}-out permit {seq}\n  match ipv6 address prefix-list {pl6}"
    );

    // One inbound list per neighbour, named by the neighbour's family, holding both families' lines
    // with one counter (frr-k8s `prefixlists.tmpl`: `<id>-inpl-<neighbour family>`).
    let inbound = format!("{id}-inpl-{fam}");
    let (in4, in6) = (&inbound, &inbound);
    for (p, le, ge) in &n.receive {
        let name = &inbound;
        let seq = counters.next(name);
        let mut matcher = String::new();
        if let Some(le) = le {
            let _ = write!(matcher, " le {le}");
        }
        if let Some(ge) = ge {
            let _ = write!(matcher, " ge {ge}");
        }
        let _ = writeln!(
            out,
            "{} prefix-list {name} seq {seq} permit {p}{matcher}",
            family(p)
        );
    }
    if n.receive_all {
        let seq = counters.next(in4);
        let _ = writeln!(out, "ip prefix-list {in4} seq {seq} permit any");
        let seq = counters.next(in6);
        let _ = writeln!(out, "ipv6 prefix-list {in6} seq {seq} permit any");
    } else {
        if !n.receive.iter().any(|(p, _, _)| matches!(p, IpNet::V4(_))) {
            let seq = counters.next(in4);
            let _ = writeln!(out, "ip prefix-list {in4} seq {seq} deny any");
        }
        if !n.receive.iter().any(|(p, _, _)| matches!(p, IpNet::V6(_))) {
            let seq = counters.next(in6);
            let _ = writeln!(out, "ipv6 prefix-list {in6} seq {seq} deny any");
        }
    }
    let seq = counters.next(id);
    let _ = writeln!(
        out,
        "route-map {id}-in permit {seq}\n  match ip address prefix-list {in4}"
    );
    let seq = counters.next(id);
    let _ = writeln!(
        out,
        "route-map {id}-in permit {seq}\n  match ipv6 address prefix-list {in6}"
    );
}

fn split_families(prefixes: &std::collections::BTreeSet<IpNet>) -> Vec<(&'static str, Vec<IpNet>)> {
    let v4: Vec<IpNet> = prefixes
        .iter()
        .filter(|p| matches!(p, IpNet::V4(_)))
        .copied()
        .collect();
    let v6: Vec<IpNet> = prefixes
        .iter()
        .filter(|p| matches!(p, IpNet::V6(_)))
        .copied()
        .collect();
    // frr-k8s names property lists by the prefix-list keyword of their family: `ip` / `ipv6`.
    let mut out = Vec::new();
    if !v4.is_empty() {
        out.push(("ip", v4));
    }
    if !v6.is_empty() {
        out.push(("ipv6", v6));
    }
    out
}

fn router_block(out: &mut String, r: &MergedRouter) {
    out.push('\n');
    let vrf = if r.vrf.is_empty() {
        String::new()
    } else {
        format!(" vrf {}", r.vrf)
    };
    let _ = writeln!(out, "router bgp {}{vrf}", r.asn);
    out.push_str("  no bgp ebgp-requires-policy\n  no bgp network import-check\n  no bgp default ipv4-unicast\n  bgp graceful-restart preserve-fw-state\n");
    if let Some(id) = &r.id {
        let _ = writeln!(out, "  bgp router-id {id}");
    }
    if !r.imports.is_empty() {
        for af in ["ipv4", "ipv6"] {
            let _ = writeln!(out, "  address-family {af} unicast");
            for v in &r.imports {
                let _ = writeln!(out, "    import vrf {v}");
            }
            out.push_str("  exit-address-family\n");
        }
    }
    for n in r.neighbors.values() {
        let a = &n.address;
        let _ = writeln!(out, "  neighbor {a} remote-as {}", n.asn);
        if n.ebgp_multi_hop {
            let _ = writeln!(out, "  neighbor {a} ebgp-multihop");
        }
        if let Some(port) = n.port {
            let _ = writeln!(out, "  neighbor {a} port {port}");
        }
        if let (Some(k), Some(h)) = (n.keepalive_time, n.hold_time) {
            let _ = writeln!(out, "  neighbor {a} timers {k} {h}");
        }
        if let Some(c) = n.connect_time {
            let _ = writeln!(out, "  neighbor {a} timers connect {c}");
        }
        if let Some(p) = &n.password {
            let _ = writeln!(out, "  neighbor {a} password {p}");
        }
        if let Some(s) = &n.source_address {
            let _ = writeln!(out, "  neighbor {a} update-source {s}");
        }
        if n.graceful_restart {
            let _ = writeln!(out, "  neighbor {a} graceful-restart");
        }
        if let Some(b) = &n.bfd_profile {
            let _ = writeln!(out, "  neighbor {a} bfd\n  neighbor {a} bfd profile {b}");
        }
    }
    for n in r.neighbors.values() {
        let a = &n.address;
        let af = if is_v6_address(a) { "ipv6" } else { "ipv4" };
        let _ = writeln!(
            out,
            "  address-family {af} unicast\n    neighbor {a} activate\n    neighbor {a} route-map {a}-in in\n    neighbor {a} route-map {a}-out out\n  exit-address-family"
        );
    }
    for (af, fam_is_v4) in [("ipv4", true), ("ipv6", false)] {
        let prefixes: Vec<&IpNet> = r
            .prefixes
            .iter()
            .filter(|p| matches!(p, IpNet::V4(_)) == fam_is_v4)
            .collect();
        if prefixes.is_empty() {
            continue;
        }
        let _ = writeln!(out, "  address-family {af} unicast");
        for p in prefixes {
            let _ = writeln!(out, "    network {p}");
        }
        out.push_str("  exit-address-family\n");
    }
}

#[cfg(test)]
mod tests {
    use super::super::model::{NamedConfig, merge};
    use super::*;

    fn golden(name: &str, actual: &str) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden")
            .join(name);
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(&path, actual).expect("write golden");
        }
        let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "golden {} missing ({e}); run with UPDATE_GOLDEN=1",
                path.display()
            )
        });
        pretty_assertions::assert_eq!(expected, actual);
    }

    fn fixture(name: &str) -> NamedConfig {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name);
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture")).expect("json");
        NamedConfig {
            name: format!(
                "{}/{}",
                v["metadata"]["namespace"].as_str().unwrap_or(""),
                v["metadata"]["name"].as_str().unwrap_or("")
            ),
            spec: serde_json::from_value(v["spec"].clone()).expect("spec"),
        }
    }

    #[test]
    fn renders_template_plus_generated_like_frr_k8s() {
        let template = fixture("frrconfiguration-template.json");
        let generated = fixture("frrconfiguration-generated-node-1.json");
        let merged = merge("node-1", &[&template, &generated]).expect("merge");
        golden("node-1-template-plus-generated.frr.conf", &render(&merged));
    }

    #[test]
    fn renders_host_routes_with_communities_and_local_pref() {
        let template = fixture("frrconfiguration-template.json");
        let hosts = fixture("frrconfiguration-hostroutes-node-1.json");
        let merged = merge("node-1", &[&template, &hosts]).expect("merge");
        golden("node-1-host-routes.frr.conf", &render(&merged));
    }

    #[test]
    fn renders_template_only() {
        let template = fixture("frrconfiguration-template.json");
        let merged = merge("node-2", &[&template]).expect("merge");
        golden("node-2-template-only.frr.conf", &render(&merged));
    }

    /// frr-k8s's own render of one case (`tests/fixtures/frr-k8s/`, see its README for where each
    /// comes from), without what the lab deliberately leaves out: blank lines (frr-k8s's templates
    /// leave many), its `log stdout` line and `debug` lines (the lab's daemons log to files).
    fn frr_k8s_case(case: &str) -> (NodeConfig, String) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/frr-k8s");
        let input: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join(format!("{case}.input.json"))).expect("input"),
        )
        .expect("json");
        let configs: Vec<NamedConfig> = input["configs"]
            .as_array()
            .expect("configs")
            .iter()
            .map(|v| NamedConfig {
                name: format!(
                    "{}/{}",
                    v["metadata"]["namespace"].as_str().unwrap_or(""),
                    v["metadata"]["name"].as_str().unwrap_or("")
                ),
                spec: serde_json::from_value(v["spec"].clone()).expect("spec"),
            })
            .collect();
        let labels: BTreeMap<String, String> =
            serde_json::from_value(input["nodeLabels"].clone()).expect("labels");
        let selected = super::super::model::select_for_node(&configs, &labels);
        let node = input["node"].as_str().expect("node");
        let merged = merge(node, &selected).expect("merge");
        let expected = std::fs::read_to_string(dir.join(format!("{case}.expected.frr.conf")))
            .expect("expected")
            .lines()
            .filter(|l| !l.trim().is_empty())
            .filter(|l| !l.starts_with("log stdout") && !l.starts_with("debug "))
            .map(|l| format!("{l}\n"))
            .collect();
        (merged, expected)
    }

    #[test]
    fn frr_k8s_renders() {
        for case in [
            "v4-v6-neighbors-allowed",
            "two-sessions-receive-all",
            "merge-advertise-and-receive",
            "import-vrf-advertise-imported",
            "node-selector",
        ] {
            let (merged, expected) = frr_k8s_case(case);
            let actual: String = render(&merged)
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| format!("{l}\n"))
                .collect();
            pretty_assertions::assert_eq!(expected, actual, "case {case}");
        }
    }
}
