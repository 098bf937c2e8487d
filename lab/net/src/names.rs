//! Names and addresses of everything the lab creates, derived from one lab id so concurrent labs never collide.
//!
//! Network namespaces are files under `/run/netns`, so their names only need to be unique and at most
//! 255 bytes; interface names (at most 15 bytes) live inside the lab's own namespaces and need no prefix.

use std::net::Ipv4Addr;

use crate::error::{Error, Result};

/// Longest lab id accepted; keeps every netns name short and readable in `ip netns list`.
pub const MAX_LAB_ID_LEN: usize = 32;
/// Most nodes the address plan holds: node addresses 198.18.0.1..=150 stay below ext's 198.18.0.155.
pub const MAX_NODES: u16 = 150;
/// ASN of the external router (DESIGN §5).
pub const EXT_ASN: u32 = 64512;
/// ASN of the cluster nodes (DESIGN §5).
pub const NODE_ASN: u32 = 64513;
/// Address of the external router on the shared segment (the seed's address).
pub const EXT_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 155);
/// Prefix length of the shared router segment 198.18.0.0/24.
pub const ROUTER_PREFIX_LEN: u8 = 24;

/// One router of the lab.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Router {
    /// The external router, AS 64512.
    Ext,
    /// Cluster node `node-<n>` (1-based), AS 64513.
    Node(u16),
}

impl Router {
    /// The router's name inside the lab: `ext` or `node-<n>` (also the Kubernetes Node name).
    pub fn name(&self) -> String {
        match self {
            Router::Ext => "ext".to_string(),
            Router::Node(n) => node_name(*n),
        }
    }

    /// The router's address on the shared segment.
    pub fn address(&self) -> Ipv4Addr {
        match self {
            Router::Ext => EXT_ADDR,
            Router::Node(n) => node_address(*n),
        }
    }

    /// Parses `ext` or `node-<n>`.
    pub fn parse(name: &str) -> Option<Router> {
        if name == "ext" {
            return Some(Router::Ext);
        }
        let n: u16 = name.strip_prefix("node-")?.parse().ok()?;
        (1..=MAX_NODES).contains(&n).then_some(Router::Node(n))
    }
}

impl std::fmt::Display for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

/// The Kubernetes Node name of node `n`.
pub fn node_name(n: u16) -> String {
    format!("node-{n}")
}

/// Node `n`'s address on the shared segment: 198.18.0.n.
pub fn node_address(n: u16) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, n as u8)
}

/// Guest mode: the gateway every guest routes through, held by each vmhost on each guest link
/// (outside the vmhost links' 198.18.4.0/22).
pub const GUEST_GATEWAY: Ipv4Addr = Ipv4Addr::new(198, 18, 8, 1);

/// The /30 linking node `n` to its vmhost namespace, inside 198.18.4.0/22: (node side, vmhost side).
pub fn vmhost_link_addresses(n: u16) -> (Ipv4Addr, Ipv4Addr) {
    let base = u32::from(Ipv4Addr::new(198, 18, 4, 0)) + 4 * u32::from(n.saturating_sub(1));
    (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2))
}

/// Netns names of one lab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabNames {
    lab_id: String,
}

impl LabNames {
    /// Validates the lab id: 1..=32 characters from `[a-z0-9-]`, not starting or ending with `-`.
    pub fn new(lab_id: &str) -> Result<Self> {
        let invalid = |reason: &str| Error::InvalidLabId {
            lab_id: lab_id.to_string(),
            reason: reason.to_string(),
        };
        if lab_id.is_empty() || lab_id.len() > MAX_LAB_ID_LEN {
            return Err(invalid("must be 1 to 32 characters long"));
        }
        if !lab_id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(invalid("only a-z, 0-9 and - are allowed"));
        }
        if lab_id.starts_with('-') || lab_id.ends_with('-') {
            return Err(invalid("must not start or end with -"));
        }
        Ok(LabNames {
            lab_id: lab_id.to_string(),
        })
    }

    /// The lab id these names derive from.
    pub fn lab_id(&self) -> &str {
        &self.lab_id
    }

    /// The bridge ("switch") netns.
    pub fn switch_netns(&self) -> String {
        format!("vmbgp-{}-sw", self.lab_id)
    }

    /// A router's netns.
    pub fn router_netns(&self, router: Router) -> String {
        format!("vmbgp-{}-{}", self.lab_id, router.name())
    }

    /// The netns holding the VM addresses of node `n`.
    pub fn vmhost_netns(&self, n: u16) -> String {
        format!("vmbgp-{}-vmhost-{n}", self.lab_id)
    }
}

/// The bridge port in the switch netns for a router (at most 15 bytes: `p-ext`, `p-n150`).
pub(crate) fn switch_port(router: Router) -> String {
    match router {
        Router::Ext => "p-ext".to_string(),
        Router::Node(n) => format!("p-n{n}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_id_is_validated() {
        assert!(LabNames::new("t-123").is_ok());
        assert!(LabNames::new("").is_err());
        assert!(LabNames::new("Upper").is_err());
        assert!(LabNames::new("-x").is_err());
        assert!(LabNames::new("a/b").is_err());
        assert!(LabNames::new(&"a".repeat(33)).is_err());
    }

    #[test]
    fn names_and_addresses_follow_the_plan() {
        let names = LabNames::new("lab").expect("valid id");
        assert_eq!(names.router_netns(Router::Ext), "vmbgp-lab-ext");
        assert_eq!(names.router_netns(Router::Node(2)), "vmbgp-lab-node-2");
        assert_eq!(names.vmhost_netns(2), "vmbgp-lab-vmhost-2");
        assert_eq!(Router::Node(3).address(), Ipv4Addr::new(198, 18, 0, 3));
        assert_eq!(
            vmhost_link_addresses(1),
            (Ipv4Addr::new(198, 18, 4, 1), Ipv4Addr::new(198, 18, 4, 2))
        );
        assert_eq!(
            vmhost_link_addresses(150),
            (Ipv4Addr::new(198, 18, 6, 85), Ipv4Addr::new(198, 18, 6, 86))
        );
        assert_eq!(Router::parse("node-7"), Some(Router::Node(7)));
        assert_eq!(Router::parse("ext"), Some(Router::Ext));
        assert_eq!(Router::parse("node-0"), None);
        assert!(switch_port(Router::Node(MAX_NODES)).len() <= 15);
    }
}
