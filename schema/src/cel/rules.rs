//! The rule table: each CRD rule's exact text next to the Rust check standing in for it.

use serde_json::Value;

use super::RuleCheck;
use super::predicates::{
    all_masked, as_int, cel_or, cidr_address, cidrs, cidrs_within, duration_nanos, eq_field,
    gateways_within, has, is_primary, mtu_ipv6, needs_subnets, obj, primary_only, route_target,
    rt_rule, selector_consistent, str_field, topology_block, two_number_rt,
    two_of_different_families,
};
use crate::net::{cidr_contains_cidr, family, parse_cidr, parse_ip};

/// The rules, by their text in the CRDs (see the crate docs for the table of what is covered).
pub(super) static RULES: &[(&str, RuleCheck)] = &[
    // ---- ClusterUserDefinedNetwork spec ----
    (
        "!has(self.uplinks) || ((self.network.topology == 'Layer2' && has(self.network.layer2) && self.network.layer2.role == 'Primary') || (self.network.topology == 'Layer3' && has(self.network.layer3) && self.network.layer3.role == 'Primary'))",
        |v| {
            obj(v)?;
            if !has(v, "uplinks") {
                return Some(true);
            }
            let network = v.get("network")?;
            Some(is_primary(network, "Layer2", "layer2") || is_primary(network, "Layer3", "layer3"))
        },
    ),
    (
        "!has(self.uplinks) || !has(self.network.transport) || self.network.transport != 'EVPN'",
        |v| {
            obj(v)?;
            if !has(v, "uplinks") {
                return Some(true);
            }
            Some(
                !v.get("network")
                    .is_some_and(|n| eq_field(n, "transport", "EVPN")),
            )
        },
    ),
    // ---- network (CUDN spec.network, UDN spec) topology / transport ----
    (
        "has(self.topology) && self.topology == 'Layer3' ? has(self.layer3): !has(self.layer3)",
        |v| topology_block(v, "Layer3", "layer3"),
    ),
    (
        "has(self.topology) && self.topology == 'Layer2' ? has(self.layer2): !has(self.layer2)",
        |v| topology_block(v, "Layer2", "layer2"),
    ),
    (
        "has(self.topology) && self.topology == 'Localnet' ? has(self.localnet): !has(self.localnet)",
        |v| topology_block(v, "Localnet", "localnet"),
    ),
    (
        "!has(self.transport) || self.transport != 'NoOverlay' || (self.topology == 'Layer3' && has(self.layer3) && self.layer3.role == 'Primary')",
        |v| {
            obj(v)?;
            Some(!eq_field(v, "transport", "NoOverlay") || is_primary(v, "Layer3", "layer3"))
        },
    ),
    (
        "!has(self.transport) || self.transport != 'NoOverlay' || has(self.noOverlay)",
        |v| {
            obj(v)?;
            Some(!eq_field(v, "transport", "NoOverlay") || has(v, "noOverlay"))
        },
    ),
    (
        "(has(self.transport) && self.transport == 'NoOverlay') || !has(self.noOverlay)",
        |v| {
            obj(v)?;
            Some(eq_field(v, "transport", "NoOverlay") || !has(v, "noOverlay"))
        },
    ),
    (
        "!has(self.transport) || self.transport != 'EVPN' || ((self.topology == 'Layer2' && has(self.layer2) && self.layer2.role == 'Primary') || (self.topology == 'Layer3' && has(self.layer3) && self.layer3.role == 'Primary'))",
        |v| {
            obj(v)?;
            Some(
                !eq_field(v, "transport", "EVPN")
                    || is_primary(v, "Layer2", "layer2")
                    || is_primary(v, "Layer3", "layer3"),
            )
        },
    ),
    (
        "!has(self.transport) || self.transport != 'EVPN' || has(self.evpn)",
        |v| {
            obj(v)?;
            Some(!eq_field(v, "transport", "EVPN") || has(v, "evpn"))
        },
    ),
    (
        "(has(self.transport) && self.transport == 'EVPN') || !has(self.evpn)",
        |v| {
            obj(v)?;
            Some(eq_field(v, "transport", "EVPN") || !has(v, "evpn"))
        },
    ),
    (
        "!has(self.transport) || self.transport != 'EVPN' || self.topology != 'Layer2' || (has(self.evpn) && has(self.evpn.macVRF))",
        |v| {
            obj(v)?;
            Some(
                !eq_field(v, "transport", "EVPN")
                    || !eq_field(v, "topology", "Layer2")
                    || v.get("evpn").is_some_and(|e| has(e, "macVRF")),
            )
        },
    ),
    (
        "!has(self.transport) || self.transport != 'EVPN' || self.topology != 'Layer3' || (has(self.evpn) && has(self.evpn.ipVRF))",
        |v| {
            obj(v)?;
            Some(
                !eq_field(v, "transport", "EVPN")
                    || !eq_field(v, "topology", "Layer3")
                    || v.get("evpn").is_some_and(|e| has(e, "ipVRF")),
            )
        },
    ),
    (
        "!has(self.transport) || self.transport != 'EVPN' || self.topology != 'Layer3' || !has(self.evpn) || !has(self.evpn.macVRF)",
        |v| {
            obj(v)?;
            Some(
                !eq_field(v, "transport", "EVPN")
                    || !eq_field(v, "topology", "Layer3")
                    || !v.get("evpn").is_some_and(|e| has(e, "macVRF")),
            )
        },
    ),
    ("has(self.macVRF) || has(self.ipVRF)", |v| {
        obj(v)?;
        Some(has(v, "macVRF") || has(v, "ipVRF"))
    }),
    (
        "!has(self.macVRF) || !has(self.ipVRF) || self.macVRF.vni != self.ipVRF.vni",
        |v| {
            obj(v)?;
            if !has(v, "macVRF") || !has(v, "ipVRF") {
                return Some(true);
            }
            Some(v.get("macVRF")?.get("vni") != v.get("ipVRF")?.get("vni"))
        },
    ),
    // ---- Layer2 ----
    (
        "has(self.ipam) && has(self.ipam.mode) && self.ipam.mode != 'Enabled' || has(self.subnets)",
        |v| {
            obj(v)?;
            let mode_not_enabled = v
                .get("ipam")
                .is_some_and(|ipam| has(ipam, "mode") && !eq_field(ipam, "mode", "Enabled"));
            Some(mode_not_enabled || has(v, "subnets"))
        },
    ),
    (
        "!has(self.ipam) || !has(self.ipam.mode) || self.ipam.mode != 'Disabled' || !has(self.subnets)",
        |v| {
            obj(v)?;
            let disabled = v
                .get("ipam")
                .is_some_and(|ipam| eq_field(ipam, "mode", "Disabled"));
            Some(!disabled || !has(v, "subnets"))
        },
    ),
    (
        "!has(self.ipam) || !has(self.ipam.mode) || self.ipam.mode != 'Disabled' || self.role == 'Secondary'",
        |v| {
            obj(v)?;
            let disabled = v
                .get("ipam")
                .is_some_and(|ipam| eq_field(ipam, "mode", "Disabled"));
            Some(!disabled || eq_field(v, "role", "Secondary"))
        },
    ),
    (
        "!has(self.joinSubnets) || has(self.role) && self.role == 'Primary'",
        |v| primary_only(v, "joinSubnets"),
    ),
    (
        "!has(self.subnets) || !has(self.mtu) || !self.subnets.exists_one(i, isCIDR(i) && cidr(i).ip().family() == 6) || self.mtu >= 1280",
        |v| mtu_ipv6(v, Value::as_str),
    ),
    (
        "!has(self.defaultGatewayIPs) || has(self.role) && self.role == 'Primary'",
        |v| primary_only(v, "defaultGatewayIPs"),
    ),
    (
        "!has(self.defaultGatewayIPs) || self.defaultGatewayIPs.all(ip, self.subnets.exists(subnet, cidr(subnet).containsIP(ip)))",
        |v| gateways_within(v, "subnets"),
    ),
    (
        "!has(self.defaultGatewayIPs) || size(self.defaultGatewayIPs) == size(self.subnets)",
        |v| {
            obj(v)?;
            if !has(v, "defaultGatewayIPs") {
                return Some(true);
            }
            let gateways = v.get("defaultGatewayIPs")?.as_array()?.len();
            Some(
                v.get("subnets")
                    .and_then(Value::as_array)
                    .is_some_and(|s| s.len() == gateways),
            )
        },
    ),
    ("!has(self.reservedSubnets) || has(self.subnets)", |v| {
        needs_subnets(v, "reservedSubnets")
    }),
    (
        "!has(self.reservedSubnets) || has(self.role) && self.role == 'Primary'",
        |v| primary_only(v, "reservedSubnets"),
    ),
    (
        "!has(self.infrastructureSubnets) || has(self.subnets)",
        |v| needs_subnets(v, "infrastructureSubnets"),
    ),
    (
        "!has(self.infrastructureSubnets) || has(self.role) && self.role == 'Primary'",
        |v| primary_only(v, "infrastructureSubnets"),
    ),
    (
        "!has(self.infrastructureSubnets) || !has(self.defaultGatewayIPs) || self.defaultGatewayIPs.all(ip, self.infrastructureSubnets.exists(subnet, cidr(subnet).containsIP(ip)))",
        |v| {
            obj(v)?;
            if !has(v, "infrastructureSubnets") {
                return Some(true);
            }
            gateways_within(v, "infrastructureSubnets")
        },
    ),
    (
        "!has(self.reservedSubnets) || self.reservedSubnets.all(e, self.subnets.exists(s, cidr(s).containsCIDR(cidr(e))))",
        |v| cidrs_within(v, "reservedSubnets", "subnets"),
    ),
    (
        "!has(self.infrastructureSubnets) || self.infrastructureSubnets.all(e, self.subnets.exists(s, cidr(s).containsCIDR(cidr(e))))",
        |v| cidrs_within(v, "infrastructureSubnets", "subnets"),
    ),
    (
        "!has(self.infrastructureSubnets) || !has(self.reservedSubnets) || self.infrastructureSubnets.all(infra, !self.reservedSubnets.exists(reserved, cidr(infra).containsCIDR(reserved) || cidr(reserved).containsCIDR(infra)))",
        |v| {
            obj(v)?;
            if !has(v, "infrastructureSubnets") || !has(v, "reservedSubnets") {
                return Some(true);
            }
            let (Some(infra), Some(reserved)) = (
                cidrs(v.get("infrastructureSubnets")),
                cidrs(v.get("reservedSubnets")),
            ) else {
                return Some(false);
            };
            Some(infra.iter().all(|i| {
                !reserved
                    .iter()
                    .any(|r| cidr_contains_cidr(i, r) || cidr_contains_cidr(r, i))
            }))
        },
    ),
    (
        "!has(self.infrastructureSubnets) || self.infrastructureSubnets.all(s, isCIDR(s) && cidr(s) == cidr(s).masked())",
        |v| all_masked(v, "infrastructureSubnets"),
    ),
    (
        "!has(self.reservedSubnets) || self.reservedSubnets.all(s, isCIDR(s) && cidr(s) == cidr(s).masked())",
        |v| all_masked(v, "reservedSubnets"),
    ),
    (
        "size(self) != 2 || !isIP(self[0]) || !isIP(self[1]) || ip(self[0]).family() != ip(self[1]).family()",
        |v| two_of_different_families(v, parse_ip),
    ),
    ("isIP(self)", |v| Some(parse_ip(v.as_str()?).is_some())),
    ("isCIDR(self)", |v| Some(parse_cidr(v.as_str()?).is_some())),
    (
        "!has(self.lifecycle) || self.lifecycle != 'Persistent' || !has(self.mode) || self.mode == 'Enabled'",
        |v| {
            obj(v)?;
            Some(
                !eq_field(v, "lifecycle", "Persistent")
                    || !has(v, "mode")
                    || eq_field(v, "mode", "Enabled"),
            )
        },
    ),
    (
        "size(self) != 2 || !isCIDR(self[0]) || !isCIDR(self[1]) || cidr(self[0]).ip().family() != cidr(self[1]).ip().family()",
        |v| two_of_different_families(v, cidr_address),
    ),
    // ---- Layer3 ----
    (
        "self.role != 'Secondary' || !has(self.subnets) || self.subnets.size() <= 2",
        |v| {
            obj(v)?;
            if !eq_field(v, "role", "Secondary") || !has(v, "subnets") {
                return Some(true);
            }
            Some(v.get("subnets")?.as_array()?.len() <= 2)
        },
    ),
    (
        "self.role != 'Secondary' || size(self.subnets) != 2 || !isCIDR(self.subnets[0].cidr) || !isCIDR(self.subnets[1].cidr) || cidr(self.subnets[0].cidr).ip().family() != cidr(self.subnets[1].cidr).ip().family()",
        |v| {
            obj(v)?;
            if !eq_field(v, "role", "Secondary") {
                return Some(true);
            }
            let subnets = v.get("subnets").and_then(Value::as_array);
            let Some(subnets) = subnets else {
                return Some(false);
            };
            if subnets.len() != 2 {
                return Some(true);
            }
            let first = str_field(&subnets[0], "cidr").and_then(cidr_address);
            let second = str_field(&subnets[1], "cidr").and_then(cidr_address);
            Some(match (first, second) {
                (Some(a), Some(b)) => family(a) != family(b),
                _ => true,
            })
        },
    ),
    (
        "!has(self.subnets) || !has(self.mtu) || !self.subnets.exists_one(i, isCIDR(i.cidr) && cidr(i.cidr).ip().family() == 6) || self.mtu >= 1280",
        |v| mtu_ipv6(v, |item| str_field(item, "cidr")),
    ),
    (
        "!has(self.subnets) || self.subnets.size() == 1 || !self.subnets.exists(i, self.subnets.exists(j, i != j && cidr(i.cidr).containsCIDR(j.cidr)))",
        |v| {
            obj(v)?;
            let Some(subnets) = v.get("subnets").and_then(Value::as_array) else {
                return Some(true);
            };
            if subnets.len() == 1 {
                return Some(true);
            }
            for i in subnets {
                for j in subnets {
                    if i == j {
                        continue;
                    }
                    let outer = str_field(i, "cidr").and_then(parse_cidr);
                    let inner = str_field(j, "cidr").and_then(parse_cidr);
                    match (outer, inner) {
                        (Some(o), Some(n)) if cidr_contains_cidr(&o, &n) => return Some(false),
                        (Some(_), Some(_)) => {}
                        _ => return Some(false),
                    }
                }
            }
            Some(true)
        },
    ),
    (
        "!has(self.subnets) || self.subnets.size() == 1 || !self.subnets.exists(i, self.subnets.filter(j, j.cidr == i.cidr).size() > 1)",
        |v| {
            obj(v)?;
            let Some(subnets) = v.get("subnets").and_then(Value::as_array) else {
                return Some(true);
            };
            let cidr_texts: Vec<Option<&Value>> = subnets.iter().map(|s| s.get("cidr")).collect();
            Some(
                cidr_texts
                    .iter()
                    .all(|c| cidr_texts.iter().filter(|d| *d == c).count() <= 1),
            )
        },
    ),
    (
        "!has(self.subnets) || self.subnets.size() == 1 || self.subnets.all(i, self.subnets.all(j, cidr(i.cidr).ip().family() != cidr(j.cidr).ip().family() || (has(i.hostSubnet) == has(j.hostSubnet) && (!has(i.hostSubnet) || i.hostSubnet == j.hostSubnet))))",
        |v| {
            obj(v)?;
            let Some(subnets) = v.get("subnets").and_then(Value::as_array) else {
                return Some(true);
            };
            if subnets.len() == 1 {
                return Some(true);
            }
            for i in subnets {
                for j in subnets {
                    let (Some(a), Some(b)) = (
                        str_field(i, "cidr").and_then(cidr_address),
                        str_field(j, "cidr").and_then(cidr_address),
                    ) else {
                        return Some(false);
                    };
                    if family(a) == family(b) && i.get("hostSubnet") != j.get("hostSubnet") {
                        return Some(false);
                    }
                }
            }
            Some(true)
        },
    ),
    (
        "!has(self.hostSubnet) || !isCIDR(self.cidr) || self.hostSubnet > cidr(self.cidr).prefixLength()",
        |v| {
            obj(v)?;
            if !has(v, "hostSubnet") {
                return Some(true);
            }
            let Some(net) = str_field(v, "cidr").and_then(parse_cidr) else {
                return Some(true);
            };
            Some(as_int(v.get("hostSubnet")?)? > i64::from(net.prefix_len()))
        },
    ),
    (
        "!has(self.hostSubnet) || !isCIDR(self.cidr) || (cidr(self.cidr).ip().family() != 4 || self.hostSubnet < 32)",
        |v| {
            obj(v)?;
            if !has(v, "hostSubnet") {
                return Some(true);
            }
            let Some(address) = str_field(v, "cidr").and_then(cidr_address) else {
                return Some(true);
            };
            Some(family(address) != 4 || as_int(v.get("hostSubnet")?)? < 32)
        },
    ),
    // ---- Localnet ----
    (
        "!has(self.ipam) || !has(self.ipam.mode) || self.ipam.mode == 'Enabled' ? has(self.subnets) : !has(self.subnets)",
        |v| {
            obj(v)?;
            // CEL precedence: (a || b || c) ? x : y
            let enabled_or_unset = v
                .get("ipam")
                .is_none_or(|ipam| !has(ipam, "mode") || eq_field(ipam, "mode", "Enabled"));
            Some(if enabled_or_unset {
                has(v, "subnets")
            } else {
                !has(v, "subnets")
            })
        },
    ),
    ("!has(self.excludeSubnets) || has(self.subnets)", |v| {
        needs_subnets(v, "excludeSubnets")
    }),
    ("self.matches('^[^,:]+$')", |v| {
        let text = v.as_str()?;
        Some(!text.is_empty() && !text.contains([',', ':']))
    }),
    (
        "has(self.mode) && self.mode == 'Access' ? has(self.access): !has(self.access)",
        |v| {
            obj(v)?;
            Some(if eq_field(v, "mode", "Access") {
                has(v, "access")
            } else {
                !has(v, "access")
            })
        },
    ),
    // ---- route targets / distinguishers (CUDN EVPN, FRRConfiguration EVPN) ----
    ("self.split(':').size() == 2", |v| {
        Some(route_target::halves(v.as_str()?).is_some())
    }),
    (
        "self.split(':').size() != 2 || (self.startsWith('*:') || isIP(self.split(':')[0]) || self.split(':')[0].matches('^[0-9]+$'))",
        |v| {
            rt_rule(v, |text, g, _| {
                Some(text.starts_with("*:") || parse_ip(g).is_some() || route_target::all_digits(g))
            })
        },
    ),
    (
        "self.split(':').size() != 2 || self.split(':')[1].matches('^[0-9]+$')",
        |v| rt_rule(v, |_, _, l| Some(route_target::all_digits(l))),
    ),
    (
        "self.split(':').size() != 2 || !self.startsWith('*:') || (self.split(':')[1].matches('^[0-9]+$') && uint(self.split(':')[1]) <= 4294967295u)",
        |v| {
            rt_rule(v, |text, _, l| {
                if !text.starts_with("*:") {
                    return Some(true);
                }
                Some(route_target::all_digits(l) && route_target::uint(l)? <= 4_294_967_295)
            })
        },
    ),
    (
        "self.split(':').size() != 2 || !self.split(':')[0].contains('.') || (self.split(':')[1].matches('^[0-9]+$') && uint(self.split(':')[1]) <= 65535u)",
        |v| {
            rt_rule(v, |_, g, l| {
                if !g.contains('.') {
                    return Some(true);
                }
                Some(route_target::all_digits(l) && route_target::uint(l)? <= 65_535)
            })
        },
    ),
    (
        "self.split(':').size() != 2 || self.startsWith('*:') || self.split(':')[0].contains('.') || !self.split(':')[0].matches('^[0-9]+$') || !self.split(':')[1].matches('^[0-9]+$') || uint(self.split(':')[0]) <= 65535u || uint(self.split(':')[1]) <= 65535u",
        |v| {
            two_number_rt(v, true, route_target::all_digits, |g, l| {
                cel_or(g.map(|g| g <= 65_535), l.map(|l| l <= 65_535))
            })
        },
    ),
    (
        "self.split(':').size() != 2 || self.startsWith('*:') || self.split(':')[0].contains('.') || !self.split(':')[0].matches('^[0-9]+$') || !self.split(':')[1].matches('^[0-9]+$') || uint(self.split(':')[0]) > 65535u || uint(self.split(':')[1]) <= 4294967295u",
        |v| {
            two_number_rt(v, true, route_target::all_digits, |g, l| {
                cel_or(g.map(|g| g > 65_535), l.map(|l| l <= 4_294_967_295))
            })
        },
    ),
    // frr-k8s spells the same checks with unanchored patterns ('[0-9]+' = "contains a digit").
    (
        "self.split(':').size() != 2 || (isIP(self.split(':')[0]) || self.split(':')[0].matches('[0-9]+'))",
        |v| {
            rt_rule(v, |_, g, _| {
                Some(parse_ip(g).is_some() || route_target::contains_digit(g))
            })
        },
    ),
    (
        "self.split(':').size() != 2 || (self.startsWith('*:') || isIP(self.split(':')[0]) || self.split(':')[0].matches('[0-9]+'))",
        |v| {
            rt_rule(v, |text, g, _| {
                Some(
                    text.starts_with("*:")
                        || parse_ip(g).is_some()
                        || route_target::contains_digit(g),
                )
            })
        },
    ),
    (
        "self.split(':').size() != 2 || self.split(':')[1].matches('[0-9]+')",
        |v| rt_rule(v, |_, _, l| Some(route_target::contains_digit(l))),
    ),
    (
        "self.split(':').size() != 2 || !self.split(':')[0].contains('.') || (self.split(':')[1].matches('[0-9]+') && uint(self.split(':')[1]) <= 65535u)",
        |v| {
            rt_rule(v, |_, g, l| {
                if !g.contains('.') {
                    return Some(true);
                }
                Some(route_target::contains_digit(l) && route_target::uint(l)? <= 65_535)
            })
        },
    ),
    (
        "self.split(':').size() != 2 || !self.startsWith('*:') || (self.split(':')[1].matches('[0-9]+') && uint(self.split(':')[1]) <= 4294967295u)",
        |v| {
            rt_rule(v, |text, _, l| {
                if !text.starts_with("*:") {
                    return Some(true);
                }
                Some(route_target::contains_digit(l) && route_target::uint(l)? <= 4_294_967_295)
            })
        },
    ),
    (
        "self.split(':').size() != 2 || self.split(':')[0].contains('.') || !self.split(':')[0].matches('[0-9]+') || !self.split(':')[1].matches('[0-9]+') || uint(self.split(':')[0]) <= 65535u || uint(self.split(':')[1]) <= 65535u",
        |v| {
            two_number_rt(v, false, route_target::contains_digit, |g, l| {
                cel_or(g.map(|g| g <= 65_535), l.map(|l| l <= 65_535))
            })
        },
    ),
    (
        "self.split(':').size() != 2 || self.split(':')[0].contains('.') || !self.split(':')[0].matches('[0-9]+') || !self.split(':')[1].matches('[0-9]+') || uint(self.split(':')[0]) > 65535u || uint(self.split(':')[1]) <= 4294967295u",
        |v| {
            two_number_rt(v, false, route_target::contains_digit, |g, l| {
                cel_or(g.map(|g| g > 65_535), l.map(|l| l <= 4_294_967_295))
            })
        },
    ),
    (
        "self.split(':').size() != 2 || self.startsWith('*:') || self.split(':')[0].contains('.') || !self.split(':')[0].matches('[0-9]+') || !self.split(':')[1].matches('[0-9]+') || uint(self.split(':')[0]) <= 65535u || uint(self.split(':')[1]) <= 65535u",
        |v| {
            two_number_rt(v, true, route_target::contains_digit, |g, l| {
                cel_or(g.map(|g| g <= 65_535), l.map(|l| l <= 65_535))
            })
        },
    ),
    (
        "self.split(':').size() != 2 || self.startsWith('*:') || self.split(':')[0].contains('.') || !self.split(':')[0].matches('[0-9]+') || !self.split(':')[1].matches('[0-9]+') || uint(self.split(':')[0]) > 65535u || uint(self.split(':')[1]) <= 4294967295u",
        |v| {
            two_number_rt(v, true, route_target::contains_digit, |g, l| {
                cel_or(g.map(|g| g > 65_535), l.map(|l| l <= 4_294_967_295))
            })
        },
    ),
    // ---- FRRConfiguration neighbor connectTime ----
    (
        "duration(self).getSeconds() >= 1 && duration(self).getSeconds() <= 65535",
        |v| {
            let nanos = duration_nanos(v)?;
            Some(nanos.is_some_and(|n| (1..=65_535).contains(&(n / 1_000_000_000))))
        },
    ),
    ("duration(self).getMilliseconds() % 1000 == 0", |v| {
        let nanos = duration_nanos(v)?;
        Some(nanos.is_some_and(|n| (n / 1_000_000) % 1000 == 0))
    }),
    // ---- RouteAdvertisements ----
    (
        "(!has(self.nodeSelector.matchLabels) && !has(self.nodeSelector.matchExpressions)) || !('PodNetwork' in self.advertisements)",
        |v| {
            obj(v)?;
            let selector = v.get("nodeSelector");
            let empty_selector =
                selector.is_none_or(|s| !has(s, "matchLabels") && !has(s, "matchExpressions"));
            let advertises_pod_network = v
                .get("advertisements")
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|x| x.as_str() == Some("PodNetwork")));
            Some(empty_selector || !advertises_pod_network)
        },
    ),
    (
        "!self.networkSelectors.exists(i, i.networkSelectionType != 'DefaultNetwork' && i.networkSelectionType != 'ClusterUserDefinedNetworks')",
        |v| {
            obj(v)?;
            let Some(selectors) = v.get("networkSelectors").and_then(Value::as_array) else {
                return Some(true);
            };
            Some(selectors.iter().all(|s| {
                eq_field(s, "networkSelectionType", "DefaultNetwork")
                    || eq_field(s, "networkSelectionType", "ClusterUserDefinedNetworks")
            }))
        },
    ),
    ("self.all(x, self.exists_one(y, x == y))", |v| {
        let items = v.as_array()?;
        Some(
            items
                .iter()
                .all(|x| items.iter().filter(|y| *y == x).count() == 1),
        )
    }),
    (
        "!has(self.networkSelectionType) ? true : has(self.clusterUserDefinedNetworkSelector) ? self.networkSelectionType == 'ClusterUserDefinedNetworks' : self.networkSelectionType != 'ClusterUserDefinedNetworks'",
        |v| {
            selector_consistent(
                v,
                "clusterUserDefinedNetworkSelector",
                "ClusterUserDefinedNetworks",
            )
        },
    ),
    (
        "!has(self.networkSelectionType) ? true : has(self.primaryUserDefinedNetworkSelector) ? self.networkSelectionType == 'PrimaryUserDefinedNetworks' : self.networkSelectionType != 'PrimaryUserDefinedNetworks'",
        |v| {
            selector_consistent(
                v,
                "primaryUserDefinedNetworkSelector",
                "PrimaryUserDefinedNetworks",
            )
        },
    ),
    (
        "!has(self.networkSelectionType) ? true : has(self.secondaryUserDefinedNetworkSelector) ? self.networkSelectionType == 'SecondaryUserDefinedNetworks' : self.networkSelectionType != 'SecondaryUserDefinedNetworks'",
        |v| {
            selector_consistent(
                v,
                "secondaryUserDefinedNetworkSelector",
                "SecondaryUserDefinedNetworks",
            )
        },
    ),
    (
        "!has(self.networkSelectionType) ? true : has(self.networkAttachmentDefinitionSelector) ? self.networkSelectionType == 'NetworkAttachmentDefinitions' : self.networkSelectionType != 'NetworkAttachmentDefinitions'",
        |v| {
            selector_consistent(
                v,
                "networkAttachmentDefinitionSelector",
                "NetworkAttachmentDefinitions",
            )
        },
    ),
];
