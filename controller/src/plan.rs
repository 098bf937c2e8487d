//! Orders the writes that take the cluster from what is written to what is desired, make before
//! break: first every node that gains a route gets `written ∪ desired` (nothing is withdrawn
//! yet), and only when all of those writes succeeded does any node get exactly `desired`
//! (withdrawals) or lose its configuration.
//!
//! Why make-before-break for a live migration: at switch-over the guest runs on the target node
//! and the source no longer has it, so after that instant a /32 at the source is stale. But
//! withdrawing first would leave the external router with no /32 at all until the target's route
//! arrives, and it would fall back to the subnet route, spread over every node (ECMP), taking an
//! east-west detour through the overlay at best. With both /32s briefly present the external
//! router keeps a specific route the whole time (iBGP ECMP between the two, or best path), and
//! the source node still forwards to the VM over the overlay, so traffic is never dropped for
//! want of a route. The overlap lasts one write; `Plan::overlap` says whether there is one.

use std::collections::BTreeMap;

use crate::desired::NodeAdvertisement;

/// One write.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    Apply {
        node: String,
        advertisement: NodeAdvertisement,
    },
    Delete {
        node: String,
    },
}

/// Writes in two steps; step two runs only after step one fully succeeded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// Additions: `written ∪ desired` for every node that gains something.
    pub make: Vec<Write>,
    /// Withdrawals: exact desired state (or deletion) for every node that still differs.
    pub brk: Vec<Write>,
}

impl Plan {
    /// True when some route is advertised from an old node and a new one at once between the
    /// steps (e.g. a migrated VM's /32).
    pub fn overlap(&self) -> bool {
        !self.make.is_empty() && !self.brk.is_empty()
    }

    pub fn is_empty(&self) -> bool {
        self.make.is_empty() && self.brk.is_empty()
    }
}

/// Plans the writes from `written` (what the cluster holds, by node) to `desired`.
pub fn plan(
    written: &BTreeMap<String, NodeAdvertisement>,
    desired: &BTreeMap<String, NodeAdvertisement>,
) -> Plan {
    let mut plan = Plan::default();
    for (node, want) in desired {
        let have = written.get(node);
        let gains = have.is_none_or(|have| !have.covers(want));
        let intermediate = match have {
            Some(have) if gains => {
                let union = have.union(want);
                plan.make.push(Write::Apply {
                    node: node.clone(),
                    advertisement: union.clone(),
                });
                union
            }
            Some(have) => have.clone(),
            None => {
                plan.make.push(Write::Apply {
                    node: node.clone(),
                    advertisement: want.clone(),
                });
                want.clone()
            }
        };
        // Only routes are compared: `written` is read back from the cluster, which does not
        // record the VM list; the reconciler refreshes status-only changes separately.
        if intermediate.routers != want.routers {
            plan.brk.push(Write::Apply {
                node: node.clone(),
                advertisement: want.clone(),
            });
        }
    }
    for node in written.keys().filter(|n| !desired.contains_key(*n)) {
        plan.brk.push(Write::Delete { node: node.clone() });
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::{RouterAdvertisement, RouterKey};
    use ipnet::IpNet;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn state() -> impl Strategy<Value = BTreeMap<String, NodeAdvertisement>> {
        // Up to 3 nodes, each with a subset of 8 host routes on one router.
        prop::collection::btree_map(
            (1u8..=3).prop_map(|n| format!("node-{n}")),
            prop::collection::btree_set(0u8..8, 0..8),
            0..=3,
        )
        .prop_map(|nodes| {
            nodes
                .into_iter()
                .map(|(node, hosts)| {
                    let mut advertisement = NodeAdvertisement::default();
                    advertisement.routers.insert(
                        RouterKey {
                            asn: 64513,
                            vrf: String::new(),
                        },
                        RouterAdvertisement {
                            neighbors: [(
                                "198.18.0.155".to_string(),
                                serde_json::json!({"address": "198.18.0.155", "asn": 64512}),
                            )]
                            .into_iter()
                            .collect(),
                            host_prefixes: hosts
                                .into_iter()
                                .map(|h| IpNet::from(std::net::IpAddr::from([198, 19, 0, h])))
                                .collect(),
                            ..RouterAdvertisement::default()
                        },
                    );
                    (node, advertisement)
                })
                .collect()
        })
    }

    fn routes(state: &BTreeMap<String, NodeAdvertisement>) -> BTreeSet<(String, IpNet)> {
        state
            .iter()
            .flat_map(|(n, a)| a.host_prefixes().into_iter().map(move |p| (n.clone(), p)))
            .collect()
    }

    fn run(state: &mut BTreeMap<String, NodeAdvertisement>, writes: &[Write]) {
        for write in writes {
            match write {
                Write::Apply {
                    node,
                    advertisement,
                } => {
                    state.insert(node.clone(), advertisement.clone());
                }
                Write::Delete { node } => {
                    state.remove(node);
                }
            }
        }
    }

    proptest! {
        #[test]
        fn make_adds_only_and_break_reaches_the_desired_state(
            written in state(), desired in state()
        ) {
            let p = plan(&written, &desired);
            let mut cluster = written.clone();
            run(&mut cluster, &p.make);
            // After the make step nothing written before is withdrawn, and every desired route
            // is already advertised.
            let after_make = routes(&cluster);
            prop_assert!(routes(&written).is_subset(&after_make));
            prop_assert!(routes(&desired).is_subset(&after_make));
            run(&mut cluster, &p.brk);
            prop_assert_eq!(routes(&cluster), routes(&desired));
            prop_assert_eq!(cluster.keys().collect::<Vec<_>>(), desired.keys().collect::<Vec<_>>());
            // Planning from the result again writes nothing.
            prop_assert!(plan(&cluster, &desired).is_empty());
        }
    }
}
