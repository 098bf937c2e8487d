//! BGP: the external router's session settings (peer, ASNs, neighbours, timers, BMP target) and
//! their checks against the planned VM networks.

use std::net::Ipv4Addr;

use super::checker::{Checker, check_dns_label};
use super::defaults;
use super::networks::parse_net;
use super::types::{BgpPlan, BmpTarget, Neighbors, NetworkSpec, Overrides};
use crate::config::profile::Profile;

pub(super) fn plan_bgp(c: &mut Checker<'_>, profile: &Profile, cli: &Overrides) -> Option<BgpPlan> {
    let p = &profile.bgp;
    let peer_src = c.pick(
        cli.bgp_peer_ip.clone(),
        "--bgp-peer-ip",
        p.peer_ip.clone(),
        "bgp.peerIp",
        defaults::PEER_IP.to_string(),
    );
    let peer_ip = c.parse::<Ipv4Addr>(&peer_src, "IPv4 address");
    let peer_asn = c.pick(
        cli.peer_asn,
        "--peer-asn",
        p.peer_asn,
        "bgp.peerAsn",
        defaults::PEER_ASN,
    );
    let peer_asn = c.asn(&peer_asn);
    let cluster_asn = c.pick(
        cli.cluster_asn,
        "--cluster-asn",
        p.cluster_asn,
        "bgp.clusterAsn",
        defaults::CLUSTER_ASN,
    );
    let cluster_asn = c.asn(&cluster_asn);
    let ns_src = c.pick(
        cli.frr_namespace.clone(),
        "--frr-namespace",
        p.frr_namespace.clone(),
        "bgp.frrNamespace",
        defaults::FRR_NAMESPACE.to_string(),
    );
    if let Err(why) = check_dns_label(&ns_src.value) {
        c.problem(
            &ns_src.field,
            &ns_src.value,
            format!("not a valid namespace name: {why}"),
        );
    }
    let neighbors = match cli.node_ips.clone().or_else(|| p.node_ips.clone()) {
        Some(ips) if !ips.is_empty() => {
            let field = if cli.node_ips.is_some() {
                "--node-ips".to_string()
            } else {
                format!("profile {}: bgp.nodeIps", profile.name)
            };
            let mut parsed = Vec::new();
            for ip in &ips {
                match ip.trim().parse::<Ipv4Addr>() {
                    Ok(ip) => parsed.push(ip),
                    Err(_) => c.problem(&field, ip, "not a valid IPv4 address"),
                }
            }
            Some(Neighbors::Explicit(parsed))
        }
        _ => {
            let src = c.pick(
                cli.node_cidr.clone(),
                "--node-cidr",
                p.node_cidr.clone(),
                "bgp.nodeCidr",
                defaults::NODE_CIDR.to_string(),
            );
            parse_net(c, &src).map(Neighbors::ListenRange)
        }
    };
    let keepalive_src = c.pick(
        None,
        "bgp.keepalive",
        p.keepalive.clone(),
        "bgp.keepalive",
        defaults::KEEPALIVE.into(),
    );
    let hold_src = c.pick(
        None,
        "bgp.holdTime",
        p.hold_time.clone(),
        "bgp.holdTime",
        defaults::HOLD.into(),
    );
    let keepalive = c.duration(&keepalive_src);
    let hold = c.duration(&hold_src);
    if let (Some(k), Some(h)) = (keepalive, hold)
        && (h.as_secs() < 3 || k >= h)
    {
        c.problem(
            &hold_src.field,
            &hold_src.value,
            format!(
                "hold time must be at least 3s and greater than keepalive ({})",
                keepalive_src.value
            ),
        );
    }
    let bmp_src = c.pick(
        cli.bmp_target.clone(),
        "--bmp-target",
        p.bmp_target.clone(),
        "bgp.bmpTarget",
        defaults::BMP_TARGET.to_string(),
    );
    let bmp = match bmp_src.value.parse::<std::net::SocketAddrV4>() {
        Ok(addr) if addr.port() != 0 => Some(BmpTarget {
            address: *addr.ip(),
            port: addr.port(),
        }),
        _ => {
            c.problem(
                &bmp_src.field,
                &bmp_src.value,
                "not a valid IPv4 HOST:PORT with a non-zero port",
            );
            None
        }
    };
    Some(BgpPlan {
        peer_ip: peer_ip?,
        peer_asn: peer_asn?,
        cluster_asn: cluster_asn?,
        frr_namespace: ns_src.value,
        neighbors: neighbors?,
        keepalive_secs: keepalive?.as_secs(),
        hold_secs: hold?.as_secs(),
        bmp: bmp?,
    })
}

pub(super) fn check_bgp_against_networks(
    c: &mut Checker<'_>,
    bgp: &BgpPlan,
    networks: &[NetworkSpec],
    cli: &Overrides,
    profile: &Profile,
) {
    let peer_field = if cli.bgp_peer_ip.is_some() {
        "--bgp-peer-ip".to_string()
    } else {
        format!("profile {}: bgp.peerIp", profile.name)
    };
    if let Some(net) = networks.iter().find(|n| n.subnet.contains(&bgp.peer_ip)) {
        c.problem(
            &peer_field,
            bgp.peer_ip,
            format!(
                "the external BGP peer is inside the VM network {} ({}); it must be outside every VM subnet",
                net.subnet, net.name
            ),
        );
    }
    if let Neighbors::ListenRange(range) = &bgp.neighbors
        && let Some(net) = networks
            .iter()
            .find(|n| range.contains(&n.subnet.network()) || n.subnet.contains(&range.network()))
    {
        c.problem(
            "--node-cidr",
            range,
            format!(
                "the node range overlaps the VM network {} ({})",
                net.subnet, net.name
            ),
        );
    }
}
