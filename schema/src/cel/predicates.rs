//! The CEL idioms the rules share (`has()`, field equality, CIDR and IP lists, topology blocks,
//! route targets, durations), spelled once in Rust for the rule table to use.

use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::{Map, Value};

use crate::net::{
    cidr_contains_cidr, cidr_contains_ip, family, is_masked, parse_cidr, parse_go_duration,
    parse_ip,
};

pub(super) fn obj(value: &Value) -> Option<&Map<String, Value>> {
    value.as_object()
}

pub(super) fn has(value: &Value, key: &str) -> bool {
    value
        .as_object()
        .is_some_and(|map| map.get(key).is_some_and(|v| !v.is_null()))
}

/// An integer value; whole-number floats (`1400.0`) count, as the schema's type check allows.
pub(super) fn as_int(value: &Value) -> Option<i64> {
    value.as_i64().or_else(|| {
        let float = value.as_f64()?;
        // Truncation cannot lose anything: the value is whole and within i64's range.
        #[allow(clippy::cast_possible_truncation)]
        (float.fract() == 0.0 && float.abs() < 9.0e15).then_some(float as i64)
    })
}

pub(super) fn str_field<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

pub(super) fn eq_field(value: &Value, key: &str, expected: &str) -> bool {
    str_field(value, key) == Some(expected)
}

fn strings(value: Option<&Value>) -> Option<Vec<&str>> {
    value?.as_array()?.iter().map(Value::as_str).collect()
}

pub(super) fn cidrs(value: Option<&Value>) -> Option<Vec<IpNet>> {
    strings(value)?.into_iter().map(parse_cidr).collect()
}

fn ips(value: Option<&Value>) -> Option<Vec<IpAddr>> {
    strings(value)?.into_iter().map(parse_ip).collect()
}

/// `topology == T && has(block) && block.role == 'Primary'`.
pub(super) fn is_primary(network: &Value, topology: &str, block: &str) -> bool {
    eq_field(network, "topology", topology)
        && network
            .get(block)
            .is_some_and(|b| !b.is_null() && eq_field(b, "role", "Primary"))
}

/// `has(self.topology) && self.topology == T ? has(self.block) : !has(self.block)`.
pub(super) fn topology_block(value: &Value, topology: &str, block: &str) -> Option<bool> {
    obj(value)?;
    let selected = eq_field(value, "topology", topology);
    Some(if selected {
        has(value, block)
    } else {
        !has(value, block)
    })
}

/// `size(self) != 2 || !isX(self[0]) || !isX(self[1]) || family(self[0]) != family(self[1])`.
pub(super) fn two_of_different_families(
    value: &Value,
    parse: fn(&str) -> Option<IpAddr>,
) -> Option<bool> {
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

pub(super) fn cidr_address(text: &str) -> Option<IpAddr> {
    parse_cidr(text).map(|net| net.addr())
}

/// `!has(self.<list>) || !has(self.mtu) || !self.<list>.exists_one(i, isCIDR(i') && family == 6) || self.mtu >= 1280`
/// where `cidr_of` extracts the CIDR text from an item (the item itself or its `.cidr`).
pub(super) fn mtu_ipv6(value: &Value, cidr_of: fn(&Value) -> Option<&str>) -> Option<bool> {
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
pub(super) fn primary_only(value: &Value, field: &str) -> Option<bool> {
    obj(value)?;
    Some(!has(value, field) || eq_field(value, "role", "Primary"))
}

/// `!has(self.<field>) || has(self.subnets)`.
pub(super) fn needs_subnets(value: &Value, field: &str) -> Option<bool> {
    obj(value)?;
    Some(!has(value, field) || has(value, "subnets"))
}

/// `!has(self.<field>) || self.<field>.all(e, self.<within>.exists(s, cidr(s).containsCIDR(cidr(e))))`.
pub(super) fn cidrs_within(value: &Value, field: &str, within: &str) -> Option<bool> {
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
pub(super) fn gateways_within(value: &Value, within: &str) -> Option<bool> {
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
pub(super) fn all_masked(value: &Value, field: &str) -> Option<bool> {
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
pub(super) fn selector_consistent(
    value: &Value,
    selector: &str,
    selection_type: &str,
) -> Option<bool> {
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
pub(super) mod route_target {
    /// CEL `s.matches(re)` is an unanchored search: `'[0-9]+'` holds if any digit occurs.
    pub(in crate::cel) fn contains_digit(text: &str) -> bool {
        text.bytes().any(|b| b.is_ascii_digit())
    }

    /// Anchored `'^[0-9]+$'`.
    pub(in crate::cel) fn all_digits(text: &str) -> bool {
        !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
    }

    /// CEL `uint(s)`: evaluation error (treated as a failed rule) when not a u64.
    pub(in crate::cel) fn uint(text: &str) -> Option<u64> {
        text.parse().ok()
    }

    /// The two halves of `self.split(':')` when there are exactly two.
    pub(in crate::cel) fn halves(text: &str) -> Option<(&str, &str)> {
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
pub(super) fn rt_rule(value: &Value, body: fn(&str, &str, &str) -> Option<bool>) -> Option<bool> {
    let text = value.as_str()?;
    match route_target::halves(text) {
        None => Some(true),
        Some((global, local)) => Some(body(text, global, local).unwrap_or(false)),
    }
}

/// CEL's `a || b`: true when either side is true even if the other is an evaluation error
/// (`None`), as the CEL spec makes `||` commutative over errors; otherwise an error wins.
pub(super) fn cel_or(a: Option<bool>, b: Option<bool>) -> Option<bool> {
    match (a, b) {
        (Some(true), _) | (_, Some(true)) => Some(true),
        (Some(false), Some(false)) => Some(false),
        _ => None,
    }
}

/// The route-target rules on `GLOBAL:LOCAL` with two numbers: `self.split(':').size() != 2 ||
/// [self.startsWith('*:') ||] GLOBAL.contains('.') || !GLOBAL.matches(D) || !LOCAL.matches(D) ||
/// <bound(uint(GLOBAL), uint(LOCAL))>`, where `digits` is the pattern D as CEL evaluates it and
/// `bound` sees each `uint()` as `None` when it is an evaluation error. An error fails the rule.
pub(super) fn two_number_rt(
    value: &Value,
    skips_wildcard: bool,
    digits: fn(&str) -> bool,
    bound: fn(Option<u64>, Option<u64>) -> Option<bool>,
) -> Option<bool> {
    let text = value.as_str()?;
    let Some((global, local)) = route_target::halves(text) else {
        return Some(true);
    };
    if (skips_wildcard && text.starts_with("*:"))
        || global.contains('.')
        || !digits(global)
        || !digits(local)
    {
        return Some(true);
    }
    Some(bound(route_target::uint(global), route_target::uint(local)).unwrap_or(false))
}

pub(super) fn duration_nanos(value: &Value) -> Option<Option<i128>> {
    Some(parse_go_duration(value.as_str()?))
}
