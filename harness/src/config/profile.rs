//! The raw run profile: what a YAML file in `profiles/` says, before validation. Unknown keys are
//! refused (`deny_unknown_fields`); typed values (CIDRs, durations, addresses) stay strings here so
//! that planning can name the exact field and value when one is malformed.

use serde::Deserialize;

use super::ConfigError;

/// The profiles shipped in `profiles/`, embedded so a fresh machine needs no files beside the binary.
pub const BUILTIN_PROFILES: &[(&str, &str)] = &[
    ("vm-bgp", include_str!("../../../profiles/vm-bgp.yaml")),
    (
        "vm-bgp-churn",
        include_str!("../../../profiles/vm-bgp-churn.yaml"),
    ),
    (
        "vm-bgp-migration",
        include_str!("../../../profiles/vm-bgp-migration.yaml"),
    ),
    (
        "vm-bgp-host-routes",
        include_str!("../../../profiles/vm-bgp-host-routes.yaml"),
    ),
];

/// A run profile as written in YAML (camelCase keys, like kube-burner's job configuration).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Profile {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// The kube-burner `jobName`; defaults to the profile name.
    #[serde(default)]
    pub job_name: Option<String>,
    /// `scale` (objects accumulate), `churn` (create, measure, delete each iteration) or `migration`.
    pub shape: String,
    #[serde(default)]
    pub iterations: Option<u32>,
    #[serde(default)]
    pub vm_count: Option<u32>,
    #[serde(default)]
    pub qps: Option<u32>,
    #[serde(default)]
    pub burst: Option<u32>,
    #[serde(default)]
    pub timeout: Option<String>,
    #[serde(default)]
    pub network: NetworkProfile,
    #[serde(default)]
    pub vm: VmProfile,
    #[serde(default)]
    pub bgp: BgpProfile,
    #[serde(default)]
    pub probes: ProbeProfile,
    #[serde(default)]
    pub thresholds: Option<Vec<ThresholdProfile>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NetworkProfile {
    /// `per-iteration` or `shared`.
    #[serde(default)]
    pub layout: Option<String>,
    /// Per-iteration layout: the block each iteration's subnet is carved from.
    #[serde(default)]
    pub supernet: Option<String>,
    /// Per-iteration layout: the prefix length of each iteration's subnet.
    #[serde(default)]
    pub subnet_prefix_length: Option<u8>,
    /// Shared layout: the one CUDN subnet.
    #[serde(default)]
    pub subnet: Option<String>,
    /// Shared layout: Day-0 static addresses `START-END`.
    #[serde(default)]
    pub vm_ip_range: Option<String>,
    /// Per-iteration layout: host offset of the first VM's static address in its subnet.
    #[serde(default)]
    pub first_vm_offset: Option<u32>,
    /// Prefix of namespace and CUDN names (`<prefix>-<iteration>` or `<prefix>-shared`).
    #[serde(default)]
    pub name_prefix: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VmProfile {
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub memory: Option<String>,
    #[serde(default)]
    pub cores: Option<u32>,
    #[serde(default)]
    pub http_port: Option<u16>,
    #[serde(default)]
    pub sink_port: Option<u16>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BgpProfile {
    #[serde(default)]
    pub peer_ip: Option<String>,
    #[serde(default)]
    pub peer_asn: Option<u64>,
    #[serde(default)]
    pub cluster_asn: Option<u64>,
    #[serde(default)]
    pub frr_namespace: Option<String>,
    /// Cluster nodes' addresses for explicit neighbours; when empty, `nodeCidr` is a listen range.
    #[serde(default)]
    pub node_ips: Option<Vec<String>>,
    #[serde(default)]
    pub node_cidr: Option<String>,
    #[serde(default)]
    pub keepalive: Option<String>,
    #[serde(default)]
    pub hold_time: Option<String>,
    /// Where the external router sends BMP (`HOST:PORT`, as seen from the router).
    #[serde(default)]
    pub bmp_target: Option<String>,
    /// Host-route mode: the host-route controller advertises each VM's /32 from its node
    /// (`run --lab` runs it against the lab).
    #[serde(default)]
    pub host_routes: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProbeProfile {
    /// ICMP probes per second per VM while routes converge.
    #[serde(default)]
    pub converging_rate: Option<u32>,
    /// ICMP probes per second per VM once reachable.
    #[serde(default)]
    pub steady_rate: Option<u32>,
    /// ICMP probes per second per migrating VM.
    #[serde(default)]
    pub migration_rate: Option<u32>,
    /// How many VMs of a tested iteration get a TCP throughput test (one after another).
    #[serde(default)]
    pub throughput_vms: Option<u32>,
    /// How many iterations run throughput tests, spread evenly from the first to the last.
    #[serde(default)]
    pub throughput_iterations: Option<u32>,
    #[serde(default)]
    pub throughput_duration: Option<String>,
    /// The harness's egress echo endpoint as the VMs call it (`HOST:PORT`).
    #[serde(default)]
    pub egress_endpoint: Option<String>,
}

/// A threshold as written: `{metric, quantile, stat, max | min}`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ThresholdProfile {
    pub metric: String,
    pub quantile: String,
    #[serde(default)]
    pub stat: Option<String>,
    #[serde(default)]
    pub max: Option<String>,
    #[serde(default)]
    pub min: Option<String>,
}

/// Finds a profile by built-in name or as a path to a YAML file, and parses it.
pub fn load_profile(name_or_path: &str) -> Result<Profile, ConfigError> {
    if let Some((_, text)) = BUILTIN_PROFILES
        .iter()
        .find(|(name, _)| *name == name_or_path)
    {
        return parse_profile(text, &format!("built-in {name_or_path}"));
    }
    let looks_like_path = name_or_path.contains('/')
        || name_or_path.ends_with(".yaml")
        || name_or_path.ends_with(".yml");
    if !looks_like_path {
        return Err(ConfigError::UnknownProfile {
            name: name_or_path.to_string(),
            available: BUILTIN_PROFILES
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let text =
        std::fs::read_to_string(name_or_path).map_err(|source| ConfigError::ReadProfile {
            path: name_or_path.to_string(),
            source,
        })?;
    parse_profile(&text, name_or_path)
}

/// Parses profile YAML; errors name the origin and (from the YAML parser) the offending key and line.
pub fn parse_profile(text: &str, origin: &str) -> Result<Profile, ConfigError> {
    serde_saphyr::from_str(text).map_err(|e| ConfigError::ParseProfile {
        origin: origin.to_string(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_profile_parses_and_is_named_after_its_file() {
        for (name, text) in BUILTIN_PROFILES {
            let profile = parse_profile(text, name).expect("built-in profile parses");
            assert_eq!(&profile.name, name);
        }
    }

    #[test]
    fn unknown_key_is_refused_with_its_name() {
        let err =
            parse_profile("name: x\nshape: scale\nvmCnt: 3\n", "test").expect_err("unknown key");
        let text = err.to_string();
        assert!(text.contains("vmCnt"), "{text}");
    }

    #[test]
    fn unknown_builtin_name_lists_the_available_ones() {
        let err = load_profile("vm-bgp-nope").expect_err("unknown");
        let text = err.to_string();
        assert!(
            text.contains("vm-bgp-nope") && text.contains("vm-bgp-churn"),
            "{text}"
        );
    }
}
