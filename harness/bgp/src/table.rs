//! The external router's BGP table as FRR prints it (`show bgp ipv4 unicast json`): per prefix, the
//! best path's peer and local-pref — what the router's inbound policy made of each route. BMP cannot
//! show the local-pref of routes from external peers: FRR encodes a BMP Route Monitoring message's
//! attributes as it would send them to that peer, and LOCAL_PREF never goes to an eBGP peer
//! (`bgpd/bgp_attr.c` `bgp_packet_attribute`). FRR prints `locPrf` only when the path carries the
//! attribute, i.e. when a policy set it.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::Value;

/// The command whose JSON [`BgpTable::from_json`] reads.
pub const SHOW_TABLE: &str = "show bgp ipv4 unicast json";

/// The best path to one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BestPath {
    /// The peer it was learned from (`peerId`), when FRR names one.
    pub peer: Option<IpAddr>,
    /// `locPrf`: absent when no policy set LOCAL_PREF (the router's default then applies).
    pub local_pref: Option<u32>,
}

/// Best paths by prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BgpTable {
    pub best: BTreeMap<IpNet, BestPath>,
}

/// The table's JSON did not have the shape FRR prints.
#[derive(Debug, thiserror::Error)]
#[error("`{SHOW_TABLE}`: {0}")]
pub struct TableError(String);

impl BgpTable {
    /// Reads FRR's `{"routes": {"PREFIX": [path, ...]}}`; a prefix without a path marked
    /// `bestpath` is left out, and so is an entry whose key is not a prefix.
    pub fn from_json(table: &Value) -> Result<Self, TableError> {
        let routes = table
            .get("routes")
            .and_then(Value::as_object)
            .ok_or_else(|| TableError("no `routes` object in the reply".into()))?;
        let best = routes
            .iter()
            .filter_map(|(prefix, paths)| {
                let prefix: IpNet = prefix.parse().ok()?;
                let path = paths
                    .as_array()?
                    .iter()
                    .find(|p| p["bestpath"].as_bool() == Some(true))?;
                let best = BestPath {
                    peer: path["peerId"].as_str().and_then(|p| p.parse().ok()),
                    local_pref: path["locPrf"].as_u64().and_then(|l| u32::try_from(l).ok()),
                };
                Some((prefix, best))
            })
            .collect();
        Ok(BgpTable { best })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_best_path_gives_peer_and_local_pref() {
        // The shape of FRR 10's `show bgp ipv4 unicast json` (abridged).
        let reply = json!({
            "vrfId": 0, "vrfName": "default", "routerId": "198.18.0.155", "localAS": 64512,
            "routes": {
                "198.19.201.10/32": [
                    {"valid": true, "multipath": true, "pathFrom": "external", "prefix": "198.19.201.10",
                     "prefixLen": 32, "network": "198.19.201.10/32", "metric": 0, "locPrf": 250,
                     "weight": 0, "peerId": "198.18.0.2", "path": "64513", "origin": "IGP",
                     "nexthops": [{"ip": "198.18.0.2", "afi": "ipv4", "used": true}]},
                    {"valid": true, "bestpath": true, "selectionReason": "Older Path",
                     "pathFrom": "external", "prefix": "198.19.201.10", "prefixLen": 32,
                     "network": "198.19.201.10/32", "metric": 0, "locPrf": 250, "weight": 0,
                     "peerId": "198.18.0.1", "path": "64513", "origin": "IGP",
                     "nexthops": [{"ip": "198.18.0.1", "afi": "ipv4", "used": true}]}
                ],
                "198.19.201.0/24": [
                    {"valid": true, "bestpath": true, "peerId": "198.18.0.1", "path": "64513"}
                ],
                "198.19.9.0/24": [{"valid": true, "peerId": "198.18.0.3"}],
                "not-a-prefix": [{"bestpath": true}]
            }
        });
        let table = BgpTable::from_json(&reply).expect("table");
        let host: IpNet = "198.19.201.10/32".parse().expect("prefix");
        let subnet: IpNet = "198.19.201.0/24".parse().expect("prefix");
        assert_eq!(
            table.best.get(&host),
            Some(&BestPath {
                peer: Some("198.18.0.1".parse().expect("ip")),
                local_pref: Some(250)
            })
        );
        assert_eq!(table.best[&subnet].local_pref, None, "no policy set one");
        assert_eq!(table.best.len(), 2, "no best path, or no prefix: left out");
    }

    #[test]
    fn a_reply_without_routes_is_an_error_not_an_empty_table() {
        let error = BgpTable::from_json(&json!({"warning": "Default BGP instance not found"}))
            .expect_err("no routes");
        assert!(error.to_string().contains("no `routes`"), "{error}");
        assert!(BgpTable::from_json(&json!("text")).is_err());
    }
}
