//! The set of resource kinds the lab serves: names, scope and subresources, looked up by path or by kind.

use std::collections::BTreeMap;

/// One served resource kind (a group/version/plural triple).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceKind {
    /// API group; `""` for the core group.
    pub group: String,
    pub version: String,
    pub kind: String,
    /// Lower-case plural used in URLs, e.g. `virtualmachines`.
    pub plural: String,
    pub namespaced: bool,
    pub has_status_subresource: bool,
    pub short_names: Vec<String>,
}

impl ResourceKind {
    /// `group/version`, or just `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The singular name discovery reports (lower-case kind).
    pub fn singular(&self) -> String {
        self.kind.to_lowercase()
    }

    /// `<plural>` or `<plural>.<group>`, as error messages name the resource.
    pub fn qualified_plural(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    fn new(
        group: &str,
        version: &str,
        kind: &str,
        plural: &str,
        namespaced: bool,
        status: bool,
        short: &[&str],
    ) -> Self {
        ResourceKind {
            group: group.to_string(),
            version: version.to_string(),
            kind: kind.to_string(),
            plural: plural.to_string(),
            namespaced,
            has_status_subresource: status,
            short_names: short.iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// Index of served kinds. Ids are positions in [`Registry::kinds`], stable for the lab's life.
#[derive(Debug, Clone)]
pub struct Registry {
    kinds: Vec<ResourceKind>,
    by_path: BTreeMap<(String, String, String), usize>,
    by_kind: BTreeMap<(String, String), usize>,
}

/// Identifier of a kind inside one [`Registry`].
pub type KindId = usize;

impl Registry {
    /// Builds the index; later duplicates of the same group/version/plural are ignored.
    pub fn new(kinds: Vec<ResourceKind>) -> Self {
        let mut reg = Registry {
            kinds: Vec::new(),
            by_path: BTreeMap::new(),
            by_kind: BTreeMap::new(),
        };
        for k in kinds {
            let key = (k.group.clone(), k.version.clone(), k.plural.clone());
            if reg.by_path.contains_key(&key) {
                continue;
            }
            let id = reg.kinds.len();
            reg.by_path.insert(key, id);
            reg.by_kind.insert((k.api_version(), k.kind.clone()), id);
            reg.kinds.push(k);
        }
        reg
    }

    /// The kinds a real cluster of this project's shape serves and the lab does not get from a CRD
    /// schema: core `v1` namespaces and nodes, and Multus' NetworkAttachmentDefinition.
    pub fn builtin_kinds() -> Vec<ResourceKind> {
        vec![
            ResourceKind::new("", "v1", "Namespace", "namespaces", false, true, &["ns"]),
            ResourceKind::new("", "v1", "Node", "nodes", false, true, &["no"]),
            ResourceKind::new(
                "k8s.cni.cncf.io",
                "v1",
                "NetworkAttachmentDefinition",
                "network-attachment-definitions",
                true,
                false,
                &["net-attach-def"],
            ),
        ]
    }

    /// The custom kinds of DESIGN §2, used when no schema set drives the registry.
    pub fn design_kinds() -> Vec<ResourceKind> {
        vec![
            ResourceKind::new(
                "kubevirt.io",
                "v1",
                "VirtualMachine",
                "virtualmachines",
                true,
                true,
                &["vm", "vms"],
            ),
            ResourceKind::new(
                "kubevirt.io",
                "v1",
                "VirtualMachineInstance",
                "virtualmachineinstances",
                true,
                true,
                &["vmi", "vmis"],
            ),
            ResourceKind::new(
                "kubevirt.io",
                "v1",
                "VirtualMachineInstanceMigration",
                "virtualmachineinstancemigrations",
                true,
                true,
                &["vmim", "vmims"],
            ),
            ResourceKind::new(
                "k8s.cni.cncf.io",
                "v1alpha1",
                "IPAMClaim",
                "ipamclaims",
                true,
                true,
                &[],
            ),
            ResourceKind::new(
                "k8s.ovn.org",
                "v1",
                "ClusterUserDefinedNetwork",
                "clusteruserdefinednetworks",
                false,
                true,
                &["cudn"],
            ),
            ResourceKind::new(
                "k8s.ovn.org",
                "v1",
                "UserDefinedNetwork",
                "userdefinednetworks",
                true,
                true,
                &["udn"],
            ),
            ResourceKind::new(
                "k8s.ovn.org",
                "v1",
                "RouteAdvertisements",
                "routeadvertisements",
                false,
                true,
                &["ra"],
            ),
            ResourceKind::new(
                "frrk8s.metallb.io",
                "v1beta1",
                "FRRConfiguration",
                "frrconfigurations",
                true,
                true,
                &[],
            ),
            ResourceKind::new(
                "frrk8s.metallb.io",
                "v1beta1",
                "FRRNodeState",
                "frrnodestates",
                false,
                true,
                &[],
            ),
            ResourceKind::new(
                "frrk8s.metallb.io",
                "v1beta1",
                "BGPSessionState",
                "bgpsessionstates",
                true,
                true,
                &[],
            ),
        ]
    }

    pub fn kinds(&self) -> &[ResourceKind] {
        &self.kinds
    }

    pub fn get(&self, id: KindId) -> Option<&ResourceKind> {
        self.kinds.get(id)
    }

    /// Looks a kind up by its URL pieces.
    pub fn by_path(&self, group: &str, version: &str, plural: &str) -> Option<KindId> {
        self.by_path
            .get(&(group.to_string(), version.to_string(), plural.to_string()))
            .copied()
    }

    /// Looks a kind up by `apiVersion` and `kind`.
    pub fn by_kind(&self, api_version: &str, kind: &str) -> Option<KindId> {
        self.by_kind
            .get(&(api_version.to_string(), kind.to_string()))
            .copied()
    }

    /// Groups in first-seen order with their versions.
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for k in &self.kinds {
            match out.iter_mut().find(|(g, _)| *g == k.group) {
                Some((_, versions)) => {
                    if !versions.contains(&k.version) {
                        versions.push(k.version.clone());
                    }
                }
                None => out.push((k.group.clone(), vec![k.version.clone()])),
            }
        }
        out
    }

    /// Kinds of one group/version.
    pub fn in_group_version(&self, group: &str, version: &str) -> Vec<&ResourceKind> {
        self.kinds
            .iter()
            .filter(|k| k.group == group && k.version == version)
            .collect()
    }
}
