//! BGP: the external router's session settings (peer, ASNs, neighbours, timers, BMP target) and
//! their checks against the planned VM networks.

use std::net::Ipv4Addr;

use super::checker::{Checker, check_dns_label, flag, key, pick};
use super::defaults;
use super::networks::parse_net;
use super::types::{BgpPlan, BmpTarget, Neighbors, NetworkSpec};
use crate::cli::PlanArgs;
use crate::config::profile::Profile;

pub(super) fn plan_bgp(c: &mut Checker<'_>, profile: &Profile, cli: &PlanArgs) -> Option<BgpPlan> {
    let p = &profile.bgp;
    let peer_src = pick!(
        c,
        cli.bgp_peer_ip,
        profile.bgp.peer_ip,
        defaults::PEER_IP.to_string()
    );
    let peer_ip = c.parse::<Ipv4Addr>(&peer_src, "IPv4 address");
    let peer_asn = pick!(c, cli.peer_asn, profile.bgp.peer_asn, defaults::PEER_ASN);
    let peer_asn = c.asn(&peer_asn);
    let cluster_asn = pick!(
        c,
        cli.cluster_asn,
        profile.bgp.cluster_asn,
        defaults::CLUSTER_ASN
    );
    let cluster_asn = c.asn(&cluster_asn);
    let ns_src = pick!(
        c,
        cli.frr_namespace,
        profile.bgp.frr_namespace,
        defaults::FRR_NAMESPACE.to_string()
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
                flag!(node_ips)
            } else {
                c.profile_field(&key!(bgp.node_ips))
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
            let src = pick!(
                c,
                cli.node_cidr,
                profile.bgp.node_cidr,
                defaults::NODE_CIDR.to_string()
            );
            parse_net(c, &src).map(Neighbors::ListenRange)
        }
    };
    let keepalive_src = pick!(c, profile.bgp.keepalive, defaults::KEEPALIVE.into());
    let hold_src = pick!(c, profile.bgp.hold_time, defaults::HOLD.into());
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
    let bmp_src = pick!(
        c,
        cli.bmp_target,
        profile.bgp.bmp_target,
        defaults::BMP_TARGET.to_string()
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
        host_routes: p.host_routes.unwrap_or(false),
    })
}

pub(super) fn check_bgp_against_networks(
    c: &mut Checker<'_>,
    bgp: &BgpPlan,
    networks: &[NetworkSpec],
    cli: &PlanArgs,
) {
    let peer_field = if cli.bgp_peer_ip.is_some() {
        flag!(bgp_peer_ip)
    } else {
        c.profile_field(&key!(bgp.peer_ip))
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
            &flag!(node_cidr),
            range,
            format!(
                "the node range overlaps the VM network {} ({})",
                net.subnet, net.name
            ),
        );
    }
}
