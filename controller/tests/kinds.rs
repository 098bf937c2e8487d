//! The controller names its API kinds by hand (no schema loading in the deployed binary); this
//! test holds those names to the CRDs the project validates against, so they cannot drift.

use kube::core::ApiResource;
use vmbgp_controller::controller::{
    claim_resource, cudn_resource, frr_resource, namespace_resource, ra_resource, vmi_resource,
};

#[test]
fn every_kind_the_controller_uses_matches_the_crds() {
    let kinds = vmbgp_schema::embedded_kinds().expect("the embedded CRDs load");
    let resources: [ApiResource; 6] = [
        vmi_resource(),
        claim_resource(),
        cudn_resource(),
        ra_resource(),
        frr_resource(),
        namespace_resource(),
    ];
    for resource in resources {
        let info = kinds
            .iter()
            .find(|k| k.kind == resource.kind && k.group == resource.group)
            .unwrap_or_else(|| {
                panic!("{} ({}) is not a known kind", resource.kind, resource.group)
            });
        assert_eq!(
            (resource.version.as_str(), resource.plural.as_str()),
            (info.version.as_str(), info.plural.as_str()),
            "{}: version and plural as the CRD serves them",
            resource.kind
        );
        assert!(
            info.served,
            "{} {} is not served",
            resource.kind, info.version
        );
        let api_version = if info.group.is_empty() {
            info.version.clone()
        } else {
            format!("{}/{}", info.group, info.version)
        };
        assert_eq!(resource.api_version, api_version, "{}", resource.kind);
    }
}
