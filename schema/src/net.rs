//! IP / CIDR / duration helpers with the semantics of the Kubernetes CEL libraries
//! (`isIP`, `isCIDR`, `cidr().containsIP()`, ...) and Go's `time.ParseDuration`.

use std::net::IpAddr;

use ipnet::IpNet;

/// `isIP(s)`: a bare IPv4 or IPv6 address (no zone, no prefix).
pub(crate) fn parse_ip(text: &str) -> Option<IpAddr> {
    if text.contains('%') {
        return None;
    }
    text.parse::<IpAddr>().ok()
}

/// `isCIDR(s)`: `address/prefix`, host bits allowed (Go `netip.ParsePrefix`).
pub(crate) fn parse_cidr(text: &str) -> Option<IpNet> {
    let (address, prefix) = text.split_once('/')?;
    // Go rejects a prefix length with a sign or leading zeros ("010").
    if prefix.is_empty()
        || !prefix.bytes().all(|b| b.is_ascii_digit())
        || (prefix.len() > 1 && prefix.starts_with('0'))
    {
        return None;
    }
    let address = parse_ip(address)?;
    let length: u8 = prefix.parse().ok()?;
    IpNet::new(address, length).ok()
}

/// CEL `ip(...).family()`: 4 or 6.
pub(crate) fn family(address: IpAddr) -> u8 {
    if address.is_ipv4() { 4 } else { 6 }
}

/// CEL `cidr(a).containsCIDR(b)`: same family, `b` no shorter than `a`, `b`'s address in `a`.
pub(crate) fn cidr_contains_cidr(outer: &IpNet, inner: &IpNet) -> bool {
    outer.contains(inner)
}

/// CEL `cidr(a).containsIP(ip)`.
pub(crate) fn cidr_contains_ip(outer: &IpNet, address: &IpAddr) -> bool {
    outer.contains(address)
}

/// CEL `cidr(s) == cidr(s).masked()`: no host bits set.
pub(crate) fn is_masked(net: &IpNet) -> bool {
    net.addr() == net.network()
}

/// Go `time.ParseDuration` (as CEL's `duration()` uses it), in nanoseconds.
/// Accepts e.g. `5s`, `1m30s`, `1.5h`, `-2ms`, `0`; units ns, us/µs, ms, s, m, h.
pub(crate) fn parse_go_duration(text: &str) -> Option<i128> {
    let (negative, mut rest) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let number_len = rest
            .bytes()
            .take_while(|b| b.is_ascii_digit() || *b == b'.')
            .count();
        if number_len == 0 {
            return None;
        }
        let number: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest
            .bytes()
            .take_while(|b| !(b.is_ascii_digit() || *b == b'.'))
            .count();
        let scale: f64 = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * scale;
    }
    if !total.is_finite() || total > 9.3e18 {
        return None;
    }
    // Truncation is intended: Go durations are whole nanoseconds.
    #[allow(clippy::cast_possible_truncation)]
    let nanos = total as i128;
    Some(if negative { -nanos } else { nanos })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parsing_follows_go_netip() {
        assert!(parse_cidr("10.200.0.0/16").is_some());
        assert!(parse_cidr("fd00::/64").is_some());
        assert!(
            parse_cidr("10.200.0.1/16").is_some(),
            "host bits are allowed by isCIDR"
        );
        assert!(parse_cidr("10.200.0.0").is_none());
        assert!(parse_cidr("10.200.0.0/33").is_none());
        assert!(parse_cidr("10.200.0.0/016").is_none());
        assert!(parse_cidr("10.200.0.0/").is_none());
        let net = parse_cidr("10.200.0.1/16").expect("valid");
        assert!(!is_masked(&net));
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("5s"), Some(5_000_000_000));
        assert_eq!(parse_go_duration("1m30s"), Some(90_000_000_000));
        assert_eq!(parse_go_duration("1500ms"), Some(1_500_000_000));
        assert_eq!(parse_go_duration("0"), Some(0));
        assert_eq!(parse_go_duration("5"), None);
        assert_eq!(parse_go_duration(""), None);
        assert_eq!(parse_go_duration("5x"), None);
    }
}
