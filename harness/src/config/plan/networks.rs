//! Networks: the per-iteration and shared layouts, turning the network settings into subnets,
//! static VM address ranges and the VMs placed on them.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::checker::{Checker, Sourced, check_dns_label, flag, key, pick};
use super::defaults;
use super::types::{NetworkSpec, Shape, VmSpec};
use crate::cli::PlanArgs;
use crate::config::net::{IpRange, cidr_cover};
use crate::config::profile::Profile;

/// OVN-K names the network's VRF after the CUDN only when the name has at most this many characters.
pub const MAX_CUDN_NAME_LEN: usize = 15;

/// How many VMs the run creates and keeps live, for laying them out on networks.
pub(super) struct Counts {
    pub(super) shape: Shape,
    pub(super) iterations: u32,
    pub(super) vm_count: u32,
    pub(super) live: u64,
}

/// Checks a CUDN/namespace name: a DNS label of at most 15 characters (the VRF name limit).
pub(super) fn check_network_name(c: &mut Checker<'_>, field: &str, name: &str) -> bool {
    if let Err(why) = check_dns_label(name) {
        c.problem(
            field,
            name,
            format!("network name {name:?} is not a valid DNS label: {why}"),
        );
        return false;
    }
    if name.len() > MAX_CUDN_NAME_LEN {
        c.problem(
            field,
            name,
            format!(
                "CUDN name {name:?} is {} characters; OVN-Kubernetes names the VRF after the CUDN only up to \
                 {MAX_CUDN_NAME_LEN} characters: use a shorter --name-prefix",
                name.len()
            ),
        );
        return false;
    }
    true
}

/// The address OVN-K reserves for its own use at the start of a Layer2 primary subnet:
/// the default gateway (first host) and the management port (second host).
pub(super) fn infrastructure_addresses(subnet: Ipv4Net) -> [Ipv4Addr; 2] {
    let base = u32::from(subnet.network());
    [
        Ipv4Addr::from(base.wrapping_add(1)),
        Ipv4Addr::from(base.wrapping_add(2)),
    ]
}

/// Checks that a static range fits a subnet and avoids the network, broadcast, gateway and
/// management-port addresses. Returns false when it does not.
pub(super) fn check_range_in_subnet(
    c: &mut Checker<'_>,
    field: &str,
    range: IpRange,
    subnet: Ipv4Net,
) -> bool {
    let mut ok = true;
    if !subnet.contains(&range.start) || !subnet.contains(&range.end) {
        c.problem(
            field,
            range,
            format!("range is not inside the network's subnet {subnet}"),
        );
        return false;
    }
    if range.contains(subnet.network()) {
        c.problem(
            field,
            range,
            format!("range contains the network address {}", subnet.network()),
        );
        ok = false;
    }
    if range.contains(subnet.broadcast()) {
        c.problem(
            field,
            range,
            format!(
                "range contains the broadcast address {}",
                subnet.broadcast()
            ),
        );
        ok = false;
    }
    let [gateway, management] = infrastructure_addresses(subnet);
    if range.contains(gateway) {
        c.problem(
            field,
            range,
            format!("range contains the gateway address {gateway} (OVN-K's default gateway for {subnet})"),
        );
        ok = false;
    }
    if range.contains(management) {
        c.problem(
            field,
            range,
            format!(
                "range contains {management}, which OVN-K uses for the management port of {subnet}"
            ),
        );
        ok = false;
    }
    ok
}

pub(super) fn parse_net(c: &mut Checker<'_>, source: &Sourced<String>) -> Option<Ipv4Net> {
    match source.value.trim().parse::<Ipv4Net>() {
        Ok(net) if net.network() == net.addr() => Some(net),
        Ok(net) => {
            c.problem(
                &source.field,
                &source.value,
                format!("host bits are set; did you mean {}?", net.trunc()),
            );
            None
        }
        Err(_) => {
            c.problem(
                &source.field,
                &source.value,
                "not a valid IPv4 CIDR (e.g. 198.19.0.0/16)",
            );
            None
        }
    }
}

pub(super) fn plan_per_iteration(
    c: &mut Checker<'_>,
    profile: &Profile,
    cli: &PlanArgs,
    counts: &Counts,
    name_prefix: &Sourced<String>,
    networks: &mut Vec<NetworkSpec>,
    vms: &mut Vec<VmSpec>,
) {
    if let Some(range) = &cli.vm_ip_range {
        c.problem(
            &flag!(vm_ip_range),
            range,
            "applies to --network shared; the per-iteration layout assigns static IPs by host offset",
        );
    }
    if let Some(subnet) = &cli.subnet {
        c.problem(
            &flag!(subnet),
            subnet,
            "applies to --network shared; use --supernet for per-iteration",
        );
    }
    let supernet_src = pick!(
        c,
        cli.supernet,
        profile.network.supernet,
        defaults::SUPERNET.to_string()
    );
    let Some(supernet) = parse_net(c, &supernet_src) else {
        return;
    };
    let prefix_field = c.profile_field(&key!(network.subnet_prefix_length));
    let prefix = profile
        .network
        .subnet_prefix_length
        .unwrap_or(defaults::SUBNET_PREFIX);
    if prefix < supernet.prefix_len() || prefix > 29 {
        c.problem(
            &prefix_field,
            prefix,
            format!(
                "must be between the supernet's /{} and /29",
                supernet.prefix_len()
            ),
        );
        return;
    }
    let available = 1u64 << (prefix - supernet.prefix_len());
    if u64::from(counts.iterations) > available {
        c.problem(
            &supernet_src.field,
            &supernet_src.value,
            format!(
                "holds {available} /{prefix} subnets but {} iterations each need one",
                counts.iterations
            ),
        );
        return;
    }
    let offset = profile
        .network
        .first_vm_offset
        .unwrap_or(defaults::FIRST_VM_OFFSET);
    let subnet_size = 1u64 << (32 - prefix);
    let last_offset = u64::from(offset) + u64::from(counts.vm_count) - 1;
    // Usable for VMs: after the network, gateway and management addresses, before broadcast.
    if offset < 3 || last_offset > subnet_size - 2 {
        c.problem(
            &flag!(vm_count),
            counts.vm_count,
            format!(
                "{} VMs starting at host offset {offset} do not fit a /{prefix} ({} usable addresses \
                 from offset 3 to {}): lower --vm-count or use a larger subnet",
                counts.vm_count,
                subnet_size.saturating_sub(4),
                subnet_size - 2
            ),
        );
        return;
    }
    let last_name = format!("{}-{}", name_prefix.value, counts.iterations - 1);
    if !check_network_name(c, &name_prefix.field, &last_name) {
        return;
    }
    for (iteration, subnet) in supernet
        .subnets(prefix)
        .into_iter()
        .flatten()
        .take(counts.iterations as usize)
        .enumerate()
    {
        let iteration = iteration as u32;
        let name = format!("{}-{iteration}", name_prefix.value);
        let base = u32::from(subnet.network());
        let range = IpRange {
            start: Ipv4Addr::from(base + offset),
            end: Ipv4Addr::from(base + last_offset as u32),
        };
        networks.push(NetworkSpec {
            name: name.clone(),
            namespace: name.clone(),
            iteration,
            subnet,
            gateway: infrastructure_addresses(subnet)[0],
            reserved_subnets: cidr_cover(range),
        });
        for replica in 1..=counts.vm_count {
            vms.push(VmSpec {
                name: format!("vm-{iteration}-{replica}"),
                namespace: name.clone(),
                network: name.clone(),
                iteration,
                replica,
                static_ip: range.nth(u64::from(replica - 1)),
            });
        }
    }
}

pub(super) fn plan_shared(
    c: &mut Checker<'_>,
    profile: &Profile,
    cli: &PlanArgs,
    counts: &Counts,
    name_prefix: &Sourced<String>,
    networks: &mut Vec<NetworkSpec>,
    vms: &mut Vec<VmSpec>,
) {
    if let Some(supernet) = &cli.supernet {
        c.problem(
            &flag!(supernet),
            supernet,
            "applies to --network per-iteration; use --subnet for shared",
        );
    }
    let range_src = match (&cli.vm_ip_range, &profile.network.vm_ip_range) {
        (Some(v), _) => Some(Sourced {
            value: v.clone(),
            field: flag!(vm_ip_range),
        }),
        // A profile's range belongs to the profile's subnet: an explicit --subnet replaces both.
        (None, Some(v)) if cli.subnet.is_none() => Some(Sourced {
            value: v.clone(),
            field: c.profile_field(&key!(network.vm_ip_range)),
        }),
        _ => None,
    };
    let range = match &range_src {
        Some(src) => match src.value.parse::<IpRange>() {
            Ok(range) => Some(range),
            Err(why) => {
                c.problem(&src.field, &src.value, why);
                return;
            }
        },
        None => None,
    };
    // The subnet: --subnet, else the profile's when the range came from the profile, else the /24
    // holding an explicitly given range (documented in --help).
    let subnet_src = match (
        &cli.subnet,
        &profile.network.subnet,
        range,
        cli.vm_ip_range.is_some(),
    ) {
        (Some(s), _, _, _) => Sourced {
            value: s.clone(),
            field: flag!(subnet),
        },
        (None, _, Some(range), true) => Sourced {
            value: Ipv4Net::new(range.start, 24)
                .map(|n| n.trunc().to_string())
                .unwrap_or_default(),
            field: format!(
                "{} (default: the /24 holding {})",
                flag!(subnet),
                flag!(vm_ip_range)
            ),
        },
        (None, Some(s), _, _) => Sourced {
            value: s.clone(),
            field: c.profile_field(&key!(network.subnet)),
        },
        (None, None, _, _) => {
            c.problem(
                &c.profile_field(&key!(network.subnet)),
                "",
                "the shared layout needs a subnet: set network.subnet or --subnet",
            );
            return;
        }
    };
    let Some(subnet) = parse_net(c, &subnet_src) else {
        return;
    };
    if subnet.prefix_len() > 29 {
        c.problem(
            &subnet_src.field,
            &subnet_src.value,
            "must be /29 or larger to hold VMs",
        );
        return;
    }
    let name = format!("{}-shared", name_prefix.value);
    let name_ok = check_network_name(c, &name_prefix.field, &name);

    // Capacity first, so its message leads; the range checks below still run and report too.
    let (capacity, capacity_text) = match (range, &range_src) {
        (Some(range), Some(src)) => (
            range.len(),
            format!("{} {} holds {} addresses", src.field, range, range.len()),
        ),
        _ => {
            let usable = (1u64 << (32 - subnet.prefix_len())).saturating_sub(4);
            (
                usable,
                format!("subnet {subnet} has {usable} usable addresses"),
            )
        }
    };
    let fits = counts.live <= capacity;
    if !fits {
        let shape_text = match counts.shape {
            Shape::Scale => format!(
                "the {} profile keeps {} VMs live ({} iterations × {} VMs, accumulating)",
                profile.name, counts.live, counts.iterations, counts.vm_count
            ),
            Shape::Churn | Shape::Migration => {
                format!(
                    "the {} profile keeps {} VMs live",
                    profile.name, counts.live
                )
            }
        };
        c.problem(
            range_src.as_ref().map(|s| s.field.as_str()).unwrap_or(&subnet_src.field),
            range_src.as_ref().map(|s| s.value.clone()).unwrap_or_else(|| subnet_src.value.clone()),
            format!(
                "capacity: {shape_text} but {capacity_text}; use --network per-iteration, a larger range, \
                 fewer --iterations/--vm-count, or the vm-bgp-churn profile ({} live at a time)",
                counts.vm_count
            ),
        );
    }
    let range_ok = match (range, &range_src) {
        (Some(range), Some(src)) => check_range_in_subnet(c, &src.field, range, subnet),
        _ => true,
    };
    if !(fits && name_ok && range_ok) {
        return;
    }
    networks.push(NetworkSpec {
        name: name.clone(),
        namespace: name.clone(),
        iteration: 0,
        subnet,
        gateway: infrastructure_addresses(subnet)[0],
        reserved_subnets: range.map(cidr_cover).unwrap_or_default(),
    });
    let vm_iterations = match counts.shape {
        Shape::Migration => 1,
        Shape::Scale | Shape::Churn => counts.iterations,
    };
    for iteration in 0..vm_iterations {
        for replica in 1..=counts.vm_count {
            let index = match counts.shape {
                Shape::Scale => {
                    u64::from(iteration) * u64::from(counts.vm_count) + u64::from(replica - 1)
                }
                Shape::Churn | Shape::Migration => u64::from(replica - 1),
            };
            vms.push(VmSpec {
                name: format!("vm-{iteration}-{replica}"),
                namespace: name.clone(),
                network: name.clone(),
                iteration,
                replica,
                static_ip: range.and_then(|r| r.nth(index)),
            });
        }
    }
}
