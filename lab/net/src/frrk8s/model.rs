//! The FRRConfiguration spec (`frrk8s.metallb.io/v1beta1`, JSON field names) and frr-k8s's merge of all
//! configurations selecting a node into one per-node config (README "How multiple configurations are
//! merged together": routers, prefixes and neighbours are unioned, the more permissive filter wins,
//! conflicts are errors and the node keeps its last valid config).

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;
use serde::Deserialize;

/// A Kubernetes label selector.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// One `matchExpressions` entry.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct LabelSelectorRequirement {
    pub key: String,
    pub operator: String,
    #[serde(default)]
    pub values: Vec<String>,
}

impl LabelSelector {
    /// Whether the labels match (an empty selector matches everything; unknown operators match nothing).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|e| {
                let value = labels.get(&e.key);
                match e.operator.as_str() {
                    "In" => value.is_some_and(|v| e.values.contains(v)),
                    "NotIn" => value.is_none_or(|v| !e.values.contains(v)),
                    "Exists" => value.is_some(),
                    "DoesNotExist" => value.is_none(),
                    _ => false,
                }
            })
    }
}

/// `FRRConfiguration.spec`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FrrConfigurationSpec {
    #[serde(default)]
    pub node_selector: LabelSelector,
    #[serde(default)]
    pub bgp: BgpConfig,
    #[serde(default)]
    pub raw: Option<RawConfig>,
}

/// `spec.raw` (appended verbatim after the rendered config, ordered by priority).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RawConfig {
    #[serde(default)]
    pub priority: i64,
    #[serde(default)]
    pub raw_config: String,
}

/// `spec.bgp`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BgpConfig {
    #[serde(default)]
    pub routers: Vec<RouterSpec>,
    #[serde(default)]
    pub bfd_profiles: Vec<serde_json::Value>,
}

/// `spec.bgp.routers[]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RouterSpec {
    pub asn: u32,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub vrf: Option<String>,
    #[serde(default)]
    pub prefixes: Vec<String>,
    #[serde(default)]
    pub neighbors: Vec<NeighborSpec>,
    #[serde(default)]
    pub imports: Vec<ImportSpec>,
}

/// `imports[]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct ImportSpec {
    #[serde(default)]
    pub vrf: String,
}

/// `neighbors[]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NeighborSpec {
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub interface: Option<String>,
    #[serde(default)]
    pub asn: Option<u32>,
    #[serde(default, rename = "dynamicASN")]
    pub dynamic_asn: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub hold_time: Option<String>,
    #[serde(default)]
    pub keepalive_time: Option<String>,
    #[serde(default)]
    pub connect_time: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default, rename = "sourceaddress")]
    pub source_address: Option<String>,
    #[serde(default)]
    pub ebgp_multi_hop: Option<bool>,
    #[serde(default)]
    pub bfd_profile: Option<String>,
    #[serde(default)]
    pub enable_graceful_restart: Option<bool>,
    #[serde(default)]
    pub to_advertise: ToAdvertise,
    #[serde(default)]
    pub to_receive: ToReceive,
}

/// `toAdvertise`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ToAdvertise {
    #[serde(default)]
    pub allowed: AllowedOut,
    #[serde(default)]
    pub with_local_pref: Vec<LocalPrefPrefixes>,
    #[serde(default)]
    pub with_community: Vec<CommunityPrefixes>,
}

/// `toAdvertise.allowed`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct AllowedOut {
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default)]
    pub prefixes: Vec<String>,
}

/// `withLocalPref[]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LocalPrefPrefixes {
    #[serde(default)]
    pub prefixes: Vec<String>,
    pub local_pref: u32,
}

/// `withCommunity[]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct CommunityPrefixes {
    #[serde(default)]
    pub prefixes: Vec<String>,
    pub community: String,
}

/// `toReceive`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct ToReceive {
    #[serde(default)]
    pub allowed: AllowedIn,
}

/// `toReceive.allowed`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct AllowedIn {
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default)]
    pub prefixes: Vec<PrefixSelector>,
}

/// `toReceive.allowed.prefixes[]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct PrefixSelector {
    pub prefix: String,
    #[serde(default)]
    pub le: Option<u8>,
    #[serde(default)]
    pub ge: Option<u8>,
}

/// A named FRRConfiguration (`namespace/name`) with its spec.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedConfig {
    pub name: String,
    pub spec: FrrConfigurationSpec,
}

/// The merged config of one node: what gets rendered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeConfig {
    pub hostname: String,
    /// Routers by VRF name ("" = default VRF).
    pub routers: BTreeMap<String, MergedRouter>,
    /// Raw config snippets in (priority, source name) order.
    pub raw: Vec<(i64, String, String)>,
}

/// A merged router.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MergedRouter {
    pub asn: u32,
    pub id: Option<String>,
    pub vrf: String,
    pub prefixes: BTreeSet<IpNet>,
    pub imports: BTreeSet<String>,
    pub neighbors: BTreeMap<String, MergedNeighbor>,
}

/// A merged neighbour.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MergedNeighbor {
    pub address: String,
    /// A number, `internal` or `external`.
    pub asn: String,
    pub port: Option<u16>,
    pub hold_time: Option<u64>,
    pub keepalive_time: Option<u64>,
    pub connect_time: Option<u64>,
    pub password: Option<String>,
    pub source_address: Option<String>,
    pub ebgp_multi_hop: bool,
    pub graceful_restart: bool,
    pub bfd_profile: Option<String>,
    pub advertise_all: bool,
    pub advertise: BTreeSet<IpNet>,
    pub communities: BTreeMap<String, BTreeSet<IpNet>>,
    pub local_prefs: BTreeMap<u32, BTreeSet<IpNet>>,
    pub receive_all: bool,
    pub receive: BTreeSet<(IpNet, Option<u8>, Option<u8>)>,
}

/// Why a node's configurations could not be converted (reported as `lastConversionResult`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{config}: {reason}")]
pub struct ConversionError {
    pub config: String,
    pub reason: String,
}

fn conv(config: &str, reason: impl Into<String>) -> ConversionError {
    ConversionError {
        config: config.to_string(),
        reason: reason.into(),
    }
}

/// Parses a Kubernetes duration (`9s`, `1m30s`, `500ms`) into whole seconds, as frr-k8s renders timers.
pub fn duration_seconds(text: &str) -> Option<u64> {
    let mut total_ms: u64 = 0;
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            _ => return None,
        };
        total_ms = total_ms.checked_add(n.checked_mul(factor)?)?;
        rest = &rest[unit_len..];
    }
    Some(total_ms / 1000)
}

fn parse_net(config: &str, text: &str) -> Result<IpNet, ConversionError> {
    text.parse::<IpNet>()
        .map(|n| n.trunc())
        .map_err(|_| conv(config, format!("invalid prefix {text:?}")))
}

fn merge_option<T: PartialEq + Clone + std::fmt::Debug>(
    config: &str,
    what: &str,
    into: &mut Option<T>,
    value: Option<T>,
) -> Result<(), ConversionError> {
    match (into.as_ref(), value) {
        (_, None) => Ok(()),
        (None, Some(v)) => {
            *into = Some(v);
            Ok(())
        }
        (Some(a), Some(b)) if *a == b => Ok(()),
        (Some(a), Some(b)) => Err(conv(config, format!("conflicting {what}: {a:?} vs {b:?}"))),
    }
}

/// The configurations whose `nodeSelector` matches the node's labels, sorted by name.
pub fn select_for_node<'a>(
    configs: &'a [NamedConfig],
    node_labels: &BTreeMap<String, String>,
) -> Vec<&'a NamedConfig> {
    let mut v: Vec<&NamedConfig> = configs
        .iter()
        .filter(|c| c.spec.node_selector.matches(node_labels))
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// Merges the configurations selecting one node.
pub fn merge(hostname: &str, selected: &[&NamedConfig]) -> Result<NodeConfig, ConversionError> {
    let mut out = NodeConfig {
        hostname: hostname.to_string(),
        ..NodeConfig::default()
    };
    for cfg in selected {
        let name = cfg.name.as_str();
        if !cfg.spec.bgp.bfd_profiles.is_empty() {
            return Err(conv(
                name,
                "BFD profiles are not supported by the lab (no bfdd)",
            ));
        }
        if let Some(raw) = &cfg.spec.raw
            && !raw.raw_config.trim().is_empty()
        {
            out.raw
                .push((raw.priority, name.to_string(), raw.raw_config.clone()));
        }
        for r in &cfg.spec.bgp.routers {
            let vrf = r.vrf.clone().unwrap_or_default();
            let router = out
                .routers
                .entry(vrf.clone())
                .or_insert_with(|| MergedRouter {
                    asn: r.asn,
                    vrf: vrf.clone(),
                    ..MergedRouter::default()
                });
            if router.asn != r.asn {
                return Err(conv(
                    name,
                    format!(
                        "router for VRF {vrf:?} has ASN {} here but {} in another configuration",
                        r.asn, router.asn
                    ),
                ));
            }
            merge_option(name, "router id", &mut router.id, r.id.clone())?;
            let router_prefixes: BTreeSet<IpNet> = r
                .prefixes
                .iter()
                .map(|p| parse_net(name, p))
                .collect::<Result<_, _>>()?;
            router.prefixes.extend(router_prefixes.iter().copied());
            // A neighbour may also advertise what the VRFs this router imports originate, when the
            // same configuration declares them (frr-k8s `api_to_config.go` `importedPrefixes`).
            let mut own_prefixes = router_prefixes;
            for import in &r.imports {
                for other in cfg.spec.bgp.routers.iter().filter(|o| {
                    o.vrf.as_deref().unwrap_or_default() == import.vrf && !import.vrf.is_empty()
                }) {
                    for p in &other.prefixes {
                        own_prefixes.insert(parse_net(name, p)?);
                    }
                }
            }
            router.imports.extend(
                r.imports
                    .iter()
                    .map(|i| i.vrf.clone())
                    .filter(|v| !v.is_empty()),
            );
            for n in &r.neighbors {
                merge_neighbor(name, router, n, &own_prefixes)?;
            }
        }
    }
    out.raw.sort();
    Ok(out)
}

fn merge_neighbor(
    config: &str,
    router: &mut MergedRouter,
    n: &NeighborSpec,
    own_prefixes: &BTreeSet<IpNet>,
) -> Result<(), ConversionError> {
    let Some(address) = n.address.clone() else {
        return Err(conv(
            config,
            "neighbors without an address (unnumbered `interface`) are not supported by the lab",
        ));
    };
    address
        .parse::<std::net::IpAddr>()
        .map_err(|_| conv(config, format!("invalid neighbor address {address:?}")))?;
    let asn = match (n.asn, n.dynamic_asn.as_deref()) {
        (Some(a), None) => a.to_string(),
        (None, Some(d @ ("internal" | "external"))) => d.to_string(),
        _ => {
            return Err(conv(
                config,
                format!("neighbor {address} needs exactly one of asn or dynamicASN"),
            ));
        }
    };
    let hold = match &n.hold_time {
        Some(t) => Some(
            duration_seconds(t).ok_or_else(|| conv(config, format!("invalid holdTime {t:?}")))?,
        ),
        None => None,
    };
    let keepalive = match &n.keepalive_time {
        Some(t) => Some(
            duration_seconds(t)
                .ok_or_else(|| conv(config, format!("invalid keepaliveTime {t:?}")))?,
        ),
        None => None,
    };
    let connect = match &n.connect_time {
        Some(t) => Some(
            duration_seconds(t)
                .ok_or_else(|| conv(config, format!("invalid connectTime {t:?}")))?,
        ),
        None => None,
    };
    let entry = router
        .neighbors
        .entry(address.clone())
        .or_insert_with(|| MergedNeighbor {
            address: address.clone(),
            asn: asn.clone(),
            ..MergedNeighbor::default()
        });
    if entry.asn != asn {
        return Err(conv(
            config,
            format!(
                "neighbor {address} has ASN {asn} here but {} elsewhere",
                entry.asn
            ),
        ));
    }
    merge_option(config, "port", &mut entry.port, n.port)?;
    merge_option(config, "holdTime", &mut entry.hold_time, hold)?;
    merge_option(
        config,
        "keepaliveTime",
        &mut entry.keepalive_time,
        keepalive,
    )?;
    merge_option(config, "connectTime", &mut entry.connect_time, connect)?;
    merge_option(config, "password", &mut entry.password, n.password.clone())?;
    merge_option(
        config,
        "sourceaddress",
        &mut entry.source_address,
        n.source_address.clone(),
    )?;
    merge_option(
        config,
        "bfdProfile",
        &mut entry.bfd_profile,
        n.bfd_profile.clone(),
    )?;
    entry.ebgp_multi_hop |= n.ebgp_multi_hop.unwrap_or(false);
    entry.graceful_restart |= n.enable_graceful_restart.unwrap_or(false);

    // Outgoing: "all" means every prefix of this configuration's router in the neighbour's own
    // family (frr-k8s `api_to_config.go`); "filtered" lists them and each must be one of the
    // router's prefixes in the same configuration (self-contained rule).
    let in_own = |p: &IpNet| -> Result<(), ConversionError> {
        if own_prefixes.contains(p) {
            Ok(())
        } else {
            Err(conv(
                config,
                format!("neighbor {address}: prefix {p} is not in the router's prefixes"),
            ))
        }
    };
    match n.to_advertise.allowed.mode.as_deref() {
        Some("all") => {
            entry.advertise_all = true;
            let v6_neighbor = address.contains(':');
            entry.advertise.extend(
                own_prefixes
                    .iter()
                    .filter(|p| matches!(p, IpNet::V6(_)) == v6_neighbor)
                    .copied(),
            );
        }
        None | Some("filtered") => {
            for p in &n.to_advertise.allowed.prefixes {
                let p = parse_net(config, p)?;
                in_own(&p)?;
                entry.advertise.insert(p);
            }
        }
        Some(other) => return Err(conv(config, format!("invalid toAdvertise mode {other:?}"))),
    }
    for c in &n.to_advertise.with_community {
        for p in &c.prefixes {
            let p = parse_net(config, p)?;
            in_own(&p)?;
            entry
                .communities
                .entry(c.community.clone())
                .or_default()
                .insert(p);
        }
    }
    for l in &n.to_advertise.with_local_pref {
        for p in &l.prefixes {
            let p = parse_net(config, p)?;
            in_own(&p)?;
            entry.local_prefs.entry(l.local_pref).or_default().insert(p);
        }
    }
    match n.to_receive.allowed.mode.as_deref() {
        Some("all") => entry.receive_all = true,
        None | Some("filtered") => {
            for s in &n.to_receive.allowed.prefixes {
                entry
                    .receive
                    .insert((parse_net(config, &s.prefix)?, s.le, s.ge));
            }
        }
        Some(other) => return Err(conv(config, format!("invalid toReceive mode {other:?}"))),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn selectors_match_like_kubernetes() {
        let node = labels(&[("kubernetes.io/hostname", "node-1"), ("zone", "a")]);
        let sel: LabelSelector = serde_json::from_value(serde_json::json!({
            "matchLabels": {"kubernetes.io/hostname": "node-1"},
            "matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]},
                                 {"key": "gone", "operator": "DoesNotExist"}]
        }))
        .expect("selector");
        assert!(sel.matches(&node));
        assert!(LabelSelector::default().matches(&node));
        let other: LabelSelector = serde_json::from_value(
            serde_json::json!({"matchLabels": {"kubernetes.io/hostname": "node-2"}}),
        )
        .expect("selector");
        assert!(!other.matches(&node));
        let bad_op: LabelSelector = serde_json::from_value(
            serde_json::json!({"matchExpressions": [{"key": "zone", "operator": "Bogus"}]}),
        )
        .expect("selector");
        assert!(!bad_op.matches(&node));
    }

    #[test]
    fn durations() {
        assert_eq!(duration_seconds("9s"), Some(9));
        assert_eq!(duration_seconds("1m30s"), Some(90));
        assert_eq!(duration_seconds("1500ms"), Some(1));
        assert_eq!(duration_seconds("9"), None);
        assert_eq!(duration_seconds("x"), None);
    }

    fn cfg(name: &str, spec: serde_json::Value) -> NamedConfig {
        NamedConfig {
            name: name.to_string(),
            spec: serde_json::from_value(spec).expect("spec"),
        }
    }

    #[test]
    fn merge_unions_and_detects_conflicts() {
        let a = cfg(
            "a",
            serde_json::json!({"bgp": {"routers": [{"asn": 64513, "neighbors": [{"address": "198.18.0.155", "asn": 64512, "holdTime": "9s", "keepaliveTime": "3s"}]}]}}),
        );
        let b = cfg(
            "b",
            serde_json::json!({"bgp": {"routers": [{"asn": 64513, "prefixes": ["198.19.1.0/24"], "neighbors": [{"address": "198.18.0.155", "asn": 64512, "toAdvertise": {"allowed": {"prefixes": ["198.19.1.0/24"]}, "withCommunity": [{"prefixes": ["198.19.1.0/24"], "community": "64512:100"}]}}]}]}}),
        );
        let merged = merge("node-1", &[&a, &b]).expect("merge");
        let r = &merged.routers[""];
        assert_eq!(r.prefixes.len(), 1);
        let n = &r.neighbors["198.18.0.155"];
        assert_eq!((n.keepalive_time, n.hold_time), (Some(3), Some(9)));
        assert_eq!(n.advertise.len(), 1);
        assert_eq!(n.communities["64512:100"].len(), 1);

        let conflict = cfg(
            "c",
            serde_json::json!({"bgp": {"routers": [{"asn": 65000}]}}),
        );
        assert!(merge("node-1", &[&a, &conflict]).is_err());
        let foreign = cfg(
            "d",
            serde_json::json!({"bgp": {"routers": [{"asn": 64513, "neighbors": [{"address": "198.18.0.155", "asn": 64512, "toAdvertise": {"allowed": {"prefixes": ["198.19.9.0/24"]}}}]}]}}),
        );
        let err = merge("node-1", &[&b, &foreign]).expect_err("not self-contained");
        assert!(err.reason.contains("not in the router's prefixes"), "{err}");
    }
}
