//! Facts about a Kubernetes kind: where it is served (group, version, plural), its scope, its
//! subresources and names. The schema crate reads them from the embedded CRDs; the lab serves
//! exactly those kinds.

/// One kind at one version, as a CRD (or the core API) declares it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KindInfo {
    /// API group; empty for the core group (`v1`).
    pub group: String,
    pub version: String,
    pub kind: String,
    /// Resource name in URLs (`clusteruserdefinednetworks`).
    pub plural: String,
    pub namespaced: bool,
    pub has_status_subresource: bool,
    /// Whether this version is served (a CRD may list versions it no longer serves).
    pub served: bool,
    /// Lower-case singular resource name (`clusteruserdefinednetwork`), as the CRD declares it.
    pub singular: String,
    /// Short names kubectl accepts (`cudn`, `ra`, `vm`).
    pub short_names: Vec<String>,
}

impl KindInfo {
    /// `group/version`, or `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Whether kube-apiserver serves the kind itself rather than through a CRD (it then speaks
    /// protobuf and strategic merge patches for it). Of the kinds this project serves: the core
    /// group, `coordination.k8s.io` and `events.k8s.io`. A group name says nothing on its own:
    /// CRDs may live in approved `*.k8s.io` groups (`gateway.networking.k8s.io`).
    pub fn is_built_in(&self) -> bool {
        matches!(
            self.group.as_str(),
            "" | "coordination.k8s.io" | "events.k8s.io"
        )
    }

    /// `<plural>` or `<plural>.<group>`, as API error messages name the resource.
    pub fn qualified_plural(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(group: &str) -> KindInfo {
        KindInfo {
            group: group.to_owned(),
            version: "v1".to_owned(),
            kind: "RouteAdvertisements".to_owned(),
            plural: "routeadvertisements".to_owned(),
            namespaced: false,
            has_status_subresource: true,
            served: true,
            singular: "routeadvertisements".to_owned(),
            short_names: vec!["ra".to_owned()],
        }
    }

    #[test]
    fn the_core_group_is_named_by_version_alone() {
        let core = kind("");
        assert_eq!(core.api_version(), "v1");
        assert_eq!(core.qualified_plural(), "routeadvertisements");
        let ovn = kind("k8s.ovn.org");
        assert_eq!(ovn.api_version(), "k8s.ovn.org/v1");
        assert_eq!(ovn.qualified_plural(), "routeadvertisements.k8s.ovn.org");
        assert!(core.is_built_in() && kind("events.k8s.io").is_built_in());
        assert!(!ovn.is_built_in() && !kind("gateway.networking.k8s.io").is_built_in());
    }
}
