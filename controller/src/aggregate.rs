//! Turns one node's VM addresses into the prefixes it advertises: a host route (/32, /128) per
//! address, or, with aggregation, the fewest prefixes whose union is exactly those addresses.
//!
//! Exactness matters more than brevity: a prefix covering an address that lives on another node
//! (or on no node) would attract that address's traffic to the wrong node. So aggregation only
//! merges aligned sibling blocks that are both fully present (four consecutive, aligned VMs on
//! one node → one /30), which is the unique minimal exact decomposition of the set.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;

/// The host route of one address.
pub fn host_prefix(address: IpAddr) -> IpNet {
    IpNet::from(address)
}

/// Host routes for every address, sorted.
pub fn host_prefixes(addresses: &BTreeSet<IpAddr>) -> Vec<IpNet> {
    addresses.iter().copied().map(host_prefix).collect()
}

/// The minimal set of prefixes whose union is exactly `addresses`, sorted (IPv4 before IPv6).
pub fn aggregated_prefixes(addresses: &BTreeSet<IpAddr>) -> Vec<IpNet> {
    let hosts = host_prefixes(addresses);
    // ipnet merges adjacent aligned siblings and drops contained networks; on host routes that
    // is exactly the canonical exact decomposition (checked by the properties below).
    let mut merged = IpNet::aggregate(&hosts);
    merged.sort();
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    fn v4(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(198, 19, 0, last))
    }

    fn net(s: &str) -> IpNet {
        s.parse().expect("test prefix")
    }

    #[test]
    fn four_aligned_consecutive_addresses_become_one_slash_30() {
        let set: BTreeSet<IpAddr> = [4, 5, 6, 7].into_iter().map(v4).collect();
        assert_eq!(aggregated_prefixes(&set), vec![net("198.19.0.4/30")]);
    }

    #[test]
    fn unaligned_run_is_split_into_aligned_blocks() {
        let set: BTreeSet<IpAddr> = [3, 4, 5, 6, 7, 8].into_iter().map(v4).collect();
        assert_eq!(
            aggregated_prefixes(&set),
            vec![
                net("198.19.0.3/32"),
                net("198.19.0.4/30"),
                net("198.19.0.8/32")
            ]
        );
    }

    #[test]
    fn families_stay_apart_and_ipv6_gets_slash_128() {
        let set: BTreeSet<IpAddr> = [
            v4(1),
            "2001:db8::1".parse().expect("v6"),
            "2001:db8::3".parse().expect("v6"),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            aggregated_prefixes(&set),
            vec![
                net("198.19.0.1/32"),
                net("2001:db8::1/128"),
                net("2001:db8::3/128")
            ]
        );
    }

    fn covers(prefixes: &[IpNet], address: IpAddr) -> bool {
        prefixes.iter().any(|p| p.contains(&address))
    }

    /// Every address a prefix covers (the strategy keeps prefixes small enough to enumerate).
    fn members(prefix: &IpNet) -> Vec<IpAddr> {
        prefix.hosts_inclusive()
    }

    trait Inclusive {
        fn hosts_inclusive(&self) -> Vec<IpAddr>;
    }
    impl Inclusive for IpNet {
        fn hosts_inclusive(&self) -> Vec<IpAddr> {
            match self {
                IpNet::V4(n) => {
                    let start = u32::from(n.network());
                    let end = u32::from(n.broadcast());
                    (start..=end)
                        .map(|a| IpAddr::V4(Ipv4Addr::from(a)))
                        .collect()
                }
                IpNet::V6(n) => {
                    let start = u128::from(n.network());
                    let end = u128::from(n.broadcast());
                    (start..=end)
                        .map(|a| IpAddr::V6(std::net::Ipv6Addr::from(a)))
                        .collect()
                }
            }
        }
    }

    /// Addresses in 198.19.0.0/24 and 2001:db8::/120, each assigned to one of three nodes.
    fn placement() -> impl Strategy<Value = Vec<(IpAddr, u8)>> {
        let v4 = (0u8..=255).prop_map(|b| IpAddr::V4(Ipv4Addr::new(198, 19, 0, b)));
        let v6 = (0u8..=255).prop_map(|b| {
            IpAddr::V6(std::net::Ipv6Addr::new(
                0x2001,
                0xdb8,
                0,
                0,
                0,
                0,
                0,
                u16::from(b),
            ))
        });
        prop::collection::vec((prop_oneof![3 => v4, 1 => v6], 0u8..3), 0..200)
    }

    proptest! {
        #[test]
        fn aggregation_is_exact_disjoint_and_minimal(raw in placement()) {
            // The first node named for an address owns it (a VM lives on one node).
            let mut owner = std::collections::BTreeMap::new();
            for (address, node) in raw {
                owner.entry(address).or_insert(node);
            }
            for node in 0u8..3 {
                let mine: BTreeSet<IpAddr> =
                    owner.iter().filter(|(_, n)| **n == node).map(|(a, _)| *a).collect();
                let prefixes = aggregated_prefixes(&mine);
                // Union is exactly this node's addresses.
                for p in &prefixes {
                    for a in members(p) {
                        prop_assert!(mine.contains(&a), "{p} covers {a}, not on node {node}");
                    }
                }
                for a in &mine {
                    prop_assert!(covers(&prefixes, *a), "{a} not advertised");
                }
                // No prefix covers another node's VM (implied above; stated for the reader).
                for (a, n) in &owner {
                    if *n != node {
                        prop_assert!(!covers(&prefixes, *a));
                    }
                }
                // Disjoint, and minimal: no prefix's parent block lies wholly inside the set, so
                // no two prefixes could be merged; that is the unique minimal decomposition.
                for (i, p) in prefixes.iter().enumerate() {
                    for q in &prefixes[i + 1..] {
                        prop_assert!(!p.contains(q) && !q.contains(p), "{p} overlaps {q}");
                    }
                    if let Some(parent) = p.supernet() {
                        prop_assert!(
                            members(&parent).iter().any(|a| !mine.contains(a)),
                            "{p} could have been merged into {parent}"
                        );
                    }
                }
                // Without aggregation: one host route per address.
                prop_assert_eq!(host_prefixes(&mine).len(), mine.len());
            }
        }
    }
}
