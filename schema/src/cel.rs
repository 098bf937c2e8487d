//! Hand-written Rust equivalents of the CRDs' CEL rules (`x-kubernetes-validations`), keyed by
//! the exact rule text, and the `x-kubernetes-validations` keyword that applies them.
//!
//! Matching by rule text (whitespace-normalised) keeps the link to the CRD explicit: a rule whose
//! text changes upstream is no longer matched, shows up in [`unenforced_rules`] and fails the
//! crate's coverage test instead of being silently mis-evaluated. Transition rules (those that
//! mention `oldSelf`) only run on update in Kubernetes; this crate validates single objects, so
//! they are never enforced here.
//!
//! Each check returns `Some(true)` (rule holds), `Some(false)` (rule fails, or would fail to
//! evaluate, which a real server also reports as invalid) or `None` when the value has a shape the
//! rule cannot apply to; the schema's type checks already report that case.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::OnceLock;

use ipnet::IpNet;
use serde_json::{Map, Value};

use crate::net::{
    cidr_contains_cidr, cidr_contains_ip, family, is_masked, parse_cidr, parse_go_duration,
    parse_ip,
};

/// A Rust check standing in for one CEL rule.
pub(crate) type RuleCheck = fn(&Value) -> Option<bool>;

/// Whitespace-normalised rule text (YAML folding splits long rules over lines).
pub(crate) fn normalize_rule(rule: &str) -> String {
    rule.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// True for transition rules, which Kubernetes evaluates only on update.
pub(crate) fn is_transition_rule(rule: &str) -> bool {
    rule.contains("oldSelf")
}

/// The rule table: normalised CEL text → Rust check.
pub(crate) fn rule_table() -> &'static HashMap<String, RuleCheck> {
    static TABLE: OnceLock<HashMap<String, RuleCheck>> = OnceLock::new();
    TABLE.get_or_init(|| {
        RULES
            .iter()
            .map(|(text, check)| (normalize_rule(text), *check))
            .collect()
    })
}

fn obj(value: &Value) -> Option<&Map<String, Value>> {
    value.as_object()
}

fn has(value: &Value, key: &str) -> bool {
    value
        .as_object()
        .is_some_and(|map| map.get(key).is_some_and(|v| !v.is_null()))
}

/// An integer value; whole-number floats (`1400.0`) count, as the schema's type check allows.
fn as_int(value: &Value) -> Option<i64> {
    value.as_i64().or_else(|| {
        let float = value.as_f64()?;
        // Truncation cannot lose anything: the value is whole and within i64's range.
        #[allow(clippy::cast_possible_truncation)]
        (float.fract() == 0.0 && float.abs() < 9.0e15).then_some(float as i64)
    })
}

fn str_field<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

fn eq_field(value: &Value, key: &str, expected: &str) -> bool {
    str_field(value, key) == Some(expected)
}

fn strings(value: Option<&Value>) -> Option<Vec<&str>> {
    value?.as_array()?.iter().map(Value::as_str).collect()
}

fn cidrs(value: Option<&Value>) -> Option<Vec<IpNet>> {
    strings(value)?.into_iter().map(parse_cidr).collect()
}

fn ips(value: Option<&Value>) -> Option<Vec<IpAddr>> {
    strings(value)?.into_iter().map(parse_ip).collect()
}

/// `topology == T && has(block) && block.role == 'Primary'`.
fn is_primary(network: &Value, topology: &str, block: &str) -> bool {
    eq_field(network, "topology", topology)
        && network
            .get(block)
            .is_some_and(|b| !b.is_null() && eq_field(b, "role", "Primary"))
}

/// `has(self.topology) && self.topology == T ? has(self.block) : !has(self.block)`.
fn topology_block(value: &Value, topology: &str, block: &str) -> Option<bool> {
    obj(value)?;
    let selected = eq_field(value, "topology", topology);
    Some(if selected {
        has(value, block)
    } else {
        !has(value, block)
    })
}

/// `size(self) != 2 || !isX(self[0]) || !isX(self[1]) || family(self[0]) != family(self[1])`.
fn two_of_different_families(value: &Value, parse: fn(&str) -> Option<IpAddr>) -> Option<bool> {
    let items = value.as_array()?;
    if items.len() != 2 {
        return Some(true);
    }
    let first = items[0].as_str().and_then(parse);
    let second = items[1].as_str().and_then(parse);
    Some(match (first, second) {
        (Some(a), Some(b)) => family(a) != family(b),
        _ => true,
    })
}

fn cidr_address(text: &str) -> Option<IpAddr> {
    parse_cidr(text).map(|net| net.addr())
}

/// `!has(self.<list>) || !has(self.mtu) || !self.<list>.exists_one(i, isCIDR(i') && family == 6) || self.mtu >= 1280`
/// where `cidr_of` extracts the CIDR text from an item (the item itself or its `.cidr`).
fn mtu_ipv6(value: &Value, cidr_of: fn(&Value) -> Option<&str>) -> Option<bool> {
    obj(value)?;
    if !has(value, "subnets") || !has(value, "mtu") {
        return Some(true);
    }
    let subnets = value.get("subnets")?.as_array()?;
    let ipv6_count = subnets
        .iter()
        .filter(|item| {
            cidr_of(item)
                .and_then(cidr_address)
                .is_some_and(|a| family(a) == 6)
        })
        .count();
    if ipv6_count != 1 {
        return Some(true);
    }
    Some(as_int(value.get("mtu")?)? >= 1280)
}

/// `!has(self.<field>) || has(self.role) && self.role == 'Primary'`.
fn primary_only(value: &Value, field: &str) -> Option<bool> {
    obj(value)?;
    Some(!has(value, field) || eq_field(value, "role", "Primary"))
}

/// `!has(self.<field>) || has(self.subnets)`.
fn needs_subnets(value: &Value, field: &str) -> Option<bool> {
    obj(value)?;
    Some(!has(value, field) || has(value, "subnets"))
}

/// `!has(self.<field>) || self.<field>.all(e, self.<within>.exists(s, cidr(s).containsCIDR(cidr(e))))`.
fn cidrs_within(value: &Value, field: &str, within: &str) -> Option<bool> {
    obj(value)?;
    if !has(value, field) {
        return Some(true);
    }
    let (Some(inner), Some(outer)) = (cidrs(value.get(field)), cidrs(value.get(within))) else {
        return Some(false);
    };
    Some(
        inner
            .iter()
            .all(|e| outer.iter().any(|s| cidr_contains_cidr(s, e))),
    )
}

/// `!has(self.defaultGatewayIPs) || self.defaultGatewayIPs.all(ip, self.<within>.exists(s, cidr(s).containsIP(ip)))`.
fn gateways_within(value: &Value, within: &str) -> Option<bool> {
    obj(value)?;
    if !has(value, "defaultGatewayIPs") {
        return Some(true);
    }
    let (Some(gateways), Some(nets)) = (
        ips(value.get("defaultGatewayIPs")),
        cidrs(value.get(within)),
    ) else {
        return Some(false);
    };
    Some(
        gateways
            .iter()
            .all(|ip| nets.iter().any(|net| cidr_contains_ip(net, ip))),
    )
}

/// `!has(self.<field>) || self.<field>.all(s, isCIDR(s) && cidr(s) == cidr(s).masked())`.
fn all_masked(value: &Value, field: &str) -> Option<bool> {
    obj(value)?;
    if !has(value, field) {
        return Some(true);
    }
    let items = strings(value.get(field))?;
    Some(
        items
            .iter()
            .all(|s| parse_cidr(s).is_some_and(|net| is_masked(&net))),
    )
}

/// `!has(self.networkSelectionType) ? true : has(self.<selector>) ? type == T : type != T`.
fn selector_consistent(value: &Value, selector: &str, selection_type: &str) -> Option<bool> {
    obj(value)?;
    if !has(value, "networkSelectionType") {
        return Some(true);
    }
    let is_type = eq_field(value, "networkSelectionType", selection_type);
    Some(if has(value, selector) {
        is_type
    } else {
        !is_type
    })
}

/// Route-target / route-distinguisher syntax, `ADMIN:NUMBER`.
mod route_target {
    /// CEL `s.matches(re)` is an unanchored search: `'[0-9]+'` holds if any digit occurs.
    pub(super) fn contains_digit(text: &str) -> bool {
        text.bytes().any(|b| b.is_ascii_digit())
    }

    /// Anchored `'^[0-9]+$'`.
    pub(super) fn all_digits(text: &str) -> bool {
        !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
    }

    /// CEL `uint(s)`: evaluation error (treated as a failed rule) when not a u64.
    pub(super) fn uint(text: &str) -> Option<u64> {
        text.parse().ok()
    }

    /// The two halves of `self.split(':')` when there are exactly two.
    pub(super) fn halves(text: &str) -> Option<(&str, &str)> {
        let mut parts = text.split(':');
        let first = parts.next()?;
        let second = parts.next()?;
        if parts.next().is_some() {
            None
        } else {
            Some((first, second))
        }
    }
}

/// `self.split(':').size() != 2 || <body(global, local)>`; a failed `uint()` fails the rule.
fn rt_rule(value: &Value, body: fn(&str, &str, &str) -> Option<bool>) -> Option<bool> {
    let text = value.as_str()?;
    match route_target::halves(text) {
        None => Some(true),
        Some((global, local)) => Some(body(text, global, local).unwrap_or(false)),
    }
}

fn duration_nanos(value: &Value) -> Option<Option<i128>> {
    Some(parse_go_duration(value.as_str()?))
}

/// The rules, by their text in the CRDs (see the crate docs for the table of what is covered).
static RULES: &[(&str, RuleCheck)] = &[
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
            rt_rule(v, |text, g, l| {
                if text.starts_with("*:")
                    || g.contains('.')
                    || !route_target::all_digits(g)
                    || !route_target::all_digits(l)
                {
                    return Some(true);
                }
                Some(route_target::uint(g)? <= 65_535 || route_target::uint(l)? <= 65_535)
            })
        },
    ),
    (
        "self.split(':').size() != 2 || self.startsWith('*:') || self.split(':')[0].contains('.') || !self.split(':')[0].matches('^[0-9]+$') || !self.split(':')[1].matches('^[0-9]+$') || uint(self.split(':')[0]) > 65535u || uint(self.split(':')[1]) <= 4294967295u",
        |v| {
            rt_rule(v, |text, g, l| {
                if text.starts_with("*:")
                    || g.contains('.')
                    || !route_target::all_digits(g)
                    || !route_target::all_digits(l)
                {
                    return Some(true);
                }
                Some(route_target::uint(g)? > 65_535 || route_target::uint(l)? <= 4_294_967_295)
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
            rt_rule(v, |_, g, l| {
                if g.contains('.')
                    || !route_target::contains_digit(g)
                    || !route_target::contains_digit(l)
                {
                    return Some(true);
                }
                Some(route_target::uint(g)? <= 65_535 || route_target::uint(l)? <= 65_535)
            })
        },
    ),
    (
        "self.split(':').size() != 2 || self.split(':')[0].contains('.') || !self.split(':')[0].matches('[0-9]+') || !self.split(':')[1].matches('[0-9]+') || uint(self.split(':')[0]) > 65535u || uint(self.split(':')[1]) <= 4294967295u",
        |v| {
            rt_rule(v, |_, g, l| {
                if g.contains('.')
                    || !route_target::contains_digit(g)
                    || !route_target::contains_digit(l)
                {
                    return Some(true);
                }
                Some(route_target::uint(g)? > 65_535 || route_target::uint(l)? <= 4_294_967_295)
            })
        },
    ),
    (
        "self.split(':').size() != 2 || self.startsWith('*:') || self.split(':')[0].contains('.') || !self.split(':')[0].matches('[0-9]+') || !self.split(':')[1].matches('[0-9]+') || uint(self.split(':')[0]) <= 65535u || uint(self.split(':')[1]) <= 65535u",
        |v| {
            rt_rule(v, |text, g, l| {
                if text.starts_with("*:")
                    || g.contains('.')
                    || !route_target::contains_digit(g)
                    || !route_target::contains_digit(l)
                {
                    return Some(true);
                }
                Some(route_target::uint(g)? <= 65_535 || route_target::uint(l)? <= 65_535)
            })
        },
    ),
    (
        "self.split(':').size() != 2 || self.startsWith('*:') || self.split(':')[0].contains('.') || !self.split(':')[0].matches('[0-9]+') || !self.split(':')[1].matches('[0-9]+') || uint(self.split(':')[0]) > 65535u || uint(self.split(':')[1]) <= 4294967295u",
        |v| {
            rt_rule(v, |text, g, l| {
                if text.starts_with("*:")
                    || g.contains('.')
                    || !route_target::contains_digit(g)
                    || !route_target::contains_digit(l)
                {
                    return Some(true);
                }
                Some(route_target::uint(g)? > 65_535 || route_target::uint(l)? <= 4_294_967_295)
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

/// One `x-kubernetes-validations` entry prepared for evaluation.
#[derive(Debug, Clone)]
pub(crate) struct PreparedRule {
    pub(crate) check: RuleCheck,
    pub(crate) message: String,
    pub(crate) field_path: String,
    pub(crate) reason: Option<String>,
}

/// Prepares the enforced rules of one `x-kubernetes-validations` list; transition rules and
/// rules without a Rust equivalent are left out (see [`unenforced_rules`]).
pub(crate) fn prepare_rules(list: &Value) -> Vec<PreparedRule> {
    let Some(items) = list.as_array() else {
        return Vec::new();
    };
    let table = rule_table();
    items
        .iter()
        .filter_map(|item| {
            let rule = item.get("rule")?.as_str()?;
            if is_transition_rule(rule) {
                return None;
            }
            let normalized = normalize_rule(rule);
            let check = *table.get(&normalized)?;
            let message = match item.get("message").and_then(Value::as_str) {
                Some(message) => message.to_string(),
                None => format!("failed rule: {normalized}"),
            };
            Some(PreparedRule {
                check,
                message,
                field_path: item
                    .get("fieldPath")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                reason: item
                    .get("reason")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            })
        })
        .collect()
}

/// Every rule text in a schema document, in document order.
#[cfg(test)]
pub(crate) fn all_rules(schema: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut pending = vec![schema];
    while let Some(node) = pending.pop() {
        match node {
            Value::Object(map) => {
                if let Some(Value::Array(items)) = map.get("x-kubernetes-validations") {
                    out.extend(
                        items
                            .iter()
                            .filter_map(|i| i.get("rule").and_then(Value::as_str))
                            .map(normalize_rule),
                    );
                }
                pending.extend(map.values());
            }
            Value::Array(items) => pending.extend(items),
            _ => {}
        }
    }
    out
}

/// Non-transition rules in a schema document that have no Rust equivalent (expected: none).
#[cfg(test)]
pub(crate) fn unenforced_rules(schema: &Value, out: &mut Vec<String>) {
    match schema {
        Value::Object(map) => {
            if let Some(Value::Array(items)) = map.get("x-kubernetes-validations") {
                for item in items {
                    if let Some(rule) = item.get("rule").and_then(Value::as_str)
                        && !is_transition_rule(rule)
                        && !rule_table().contains_key(&normalize_rule(rule))
                    {
                        out.push(normalize_rule(rule));
                    }
                }
            }
            for value in map.values() {
                unenforced_rules(value, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| unenforced_rules(item, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(rule: &str, value: Value) -> Option<bool> {
        let table = rule_table();
        let check = table
            .get(&normalize_rule(rule))
            .expect("rule is in the table");
        check(&value)
    }

    #[test]
    fn every_table_entry_is_unique_after_normalisation() {
        assert_eq!(rule_table().len(), RULES.len());
    }

    #[test]
    fn layer2_subnets_required_unless_ipam_disabled() {
        let rule = "has(self.ipam) && has(self.ipam.mode) && self.ipam.mode != 'Enabled' || has(self.subnets)";
        assert_eq!(check(rule, json!({"role": "Primary"})), Some(false));
        assert_eq!(
            check(rule, json!({"role": "Primary", "subnets": ["10.0.0.0/16"]})),
            Some(true)
        );
        assert_eq!(
            check(
                rule,
                json!({"role": "Secondary", "ipam": {"mode": "Disabled"}})
            ),
            Some(true)
        );
    }

    #[test]
    fn reserved_subnets_must_sit_inside_subnets() {
        let rule = "!has(self.reservedSubnets) || self.reservedSubnets.all(e, self.subnets.exists(s, cidr(s).containsCIDR(cidr(e))))";
        let inside = json!({"subnets": ["10.200.0.0/16"], "reservedSubnets": ["10.200.255.0/24"]});
        let outside = json!({"subnets": ["10.200.0.0/16"], "reservedSubnets": ["10.201.0.0/24"]});
        assert_eq!(check(rule, inside), Some(true));
        assert_eq!(check(rule, outside), Some(false));
    }

    #[test]
    fn route_target_rules() {
        let colon = "self.split(':').size() == 2";
        assert_eq!(check(colon, json!("65000:100")), Some(true));
        assert_eq!(check(colon, json!("65000")), Some(false));
        let four_byte = "self.split(':').size() != 2 || self.startsWith('*:') || self.split(':')[0].contains('.') || !self.split(':')[0].matches('^[0-9]+$') || !self.split(':')[1].matches('^[0-9]+$') || uint(self.split(':')[0]) <= 65535u || uint(self.split(':')[1]) <= 65535u";
        assert_eq!(check(four_byte, json!("4200000000:100")), Some(true));
        assert_eq!(check(four_byte, json!("4200000000:70000")), Some(false));
    }

    #[test]
    fn connect_time_rules() {
        let range = "duration(self).getSeconds() >= 1 && duration(self).getSeconds() <= 65535";
        let whole = "duration(self).getMilliseconds() % 1000 == 0";
        assert_eq!(check(range, json!("5s")), Some(true));
        assert_eq!(check(range, json!("500ms")), Some(false));
        assert_eq!(check(whole, json!("1500ms")), Some(false));
        assert_eq!(check(whole, json!("2s")), Some(true));
    }
}
