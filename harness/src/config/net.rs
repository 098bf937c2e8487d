//! IPv4 address ranges and CIDR arithmetic used to plan networks and static VM addresses.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use ipnet::Ipv4Net;

/// An inclusive IPv4 range `START-END`, as given by `--vm-ip-range`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    pub start: Ipv4Addr,
    pub end: Ipv4Addr,
}

impl IpRange {
    /// Number of addresses in the range (start ≤ end is guaranteed by parsing).
    pub fn len(&self) -> u64 {
        u64::from(u32::from(self.end)) - u64::from(u32::from(self.start)) + 1
    }

    /// Always false: a parsed range holds at least one address.
    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        self.start <= ip && ip <= self.end
    }

    /// The `index`-th address of the range, if it exists.
    pub fn nth(&self, index: u64) -> Option<Ipv4Addr> {
        let value = u64::from(u32::from(self.start)) + index;
        (value <= u64::from(u32::from(self.end))).then(|| Ipv4Addr::from(value as u32))
    }
}

impl FromStr for IpRange {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (start, end) = text
            .split_once('-')
            .ok_or_else(|| "expected START-END, e.g. 198.19.0.10-198.19.0.100".to_string())?;
        let start: Ipv4Addr = start
            .trim()
            .parse()
            .map_err(|_| format!("range start {:?} is not an IPv4 address", start.trim()))?;
        let end: Ipv4Addr = end
            .trim()
            .parse()
            .map_err(|_| format!("range end {:?} is not an IPv4 address", end.trim()))?;
        if start > end {
            return Err(format!("range start {start} is after range end {end}"));
        }
        Ok(IpRange { start, end })
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

/// The smallest list of CIDR blocks that covers exactly `range` (used for `reservedSubnets`).
pub fn cidr_cover(range: IpRange) -> Vec<Ipv4Net> {
    let mut blocks = Vec::new();
    let mut start = u64::from(u32::from(range.start));
    let end = u64::from(u32::from(range.end));
    while start <= end {
        // Largest aligned block starting at `start` that does not pass `end`.
        let mut size_bits = if start == 0 {
            32
        } else {
            start.trailing_zeros().min(32)
        };
        while size_bits > 0 && start + (1u64 << size_bits) - 1 > end {
            size_bits -= 1;
        }
        let prefix = 32 - size_bits as u8;
        // The prefix is ≤ 32 by construction, so the network is always valid.
        if let Ok(net) = Ipv4Net::new(Ipv4Addr::from(start as u32), prefix) {
            blocks.push(net);
        }
        start += 1u64 << size_bits;
    }
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_range_holds_91_addresses() {
        let range: IpRange = "192.168.100.10-192.168.100.100".parse().expect("valid");
        assert_eq!(range.len(), 91);
        assert_eq!(range.nth(90), Some("192.168.100.100".parse().expect("ip")));
        assert_eq!(range.nth(91), None);
    }

    #[test]
    fn reversed_range_is_refused_with_both_ends_named() {
        let err = "198.19.0.20-198.19.0.10"
            .parse::<IpRange>()
            .expect_err("reversed");
        assert!(
            err.contains("198.19.0.20") && err.contains("198.19.0.10"),
            "{err}"
        );
    }

    #[test]
    fn cidr_cover_is_exact_and_minimal() {
        let range: IpRange = "192.168.100.10-192.168.100.100".parse().expect("valid");
        let cover = cidr_cover(range);
        let text: Vec<String> = cover.iter().map(|n| n.to_string()).collect();
        assert_eq!(
            text,
            [
                "192.168.100.10/31",
                "192.168.100.12/30",
                "192.168.100.16/28",
                "192.168.100.32/27",
                "192.168.100.64/27",
                "192.168.100.96/30",
                "192.168.100.100/32"
            ]
        );
        let total: u64 = cover.iter().map(|n| 1u64 << (32 - n.prefix_len())).sum();
        assert_eq!(total, range.len());
    }

    #[test]
    fn cidr_cover_of_whole_space_is_one_block() {
        let range = IpRange {
            start: Ipv4Addr::new(0, 0, 0, 0),
            end: Ipv4Addr::new(255, 255, 255, 255),
        };
        assert_eq!(
            cidr_cover(range),
            vec!["0.0.0.0/0".parse::<Ipv4Net>().expect("net")]
        );
    }
}
