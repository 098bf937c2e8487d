//! Every object `render` produces, for every profile and layout, validates against the real CRD
//! schemas in shared/crds (embedded by vmbgp-schema) and the KubeVirt OpenAPI definitions, with
//! unknown fields refused (kubectl's strict field validation) and the CEL rules applied.

use vmbgp_bench::cli::PlanArgs;
use vmbgp_bench::config::BUILTIN_PROFILES;
use vmbgp_bench::workload::{Manifest, Templates, render_plan};
use vmbgp_schema::{SchemaSet, Strictness};

fn render(args: PlanArgs) -> Vec<Manifest> {
    let plan = vmbgp_bench::commands::plan_from_args(&args).expect("plan");
    render_plan(&plan, &Templates::builtin().expect("templates")).expect("render")
}

fn invalid(schemas: &SchemaSet, manifests: &[Manifest]) -> Vec<String> {
    manifests
        .iter()
        .filter_map(|m| {
            schemas
                .validate(&m.object, Strictness::Strict)
                .err()
                .map(|e| format!("{} {}: {e}", m.kind(), m.name()))
        })
        .collect()
}

#[test]
fn every_rendered_object_validates_against_the_real_schemas() {
    let schemas = SchemaSet::embedded().expect("schemas");
    let mut variants: Vec<PlanArgs> = BUILTIN_PROFILES
        .iter()
        .map(|(name, _)| PlanArgs {
            profile: name.to_string(),
            ..PlanArgs::default()
        })
        .collect();
    // The shared layout without static IPs (dynamic allocation, no reservedSubnets).
    variants.push(PlanArgs {
        network: Some("shared".into()),
        subnet: Some("198.19.50.0/24".into()),
        ..PlanArgs::default()
    });
    // The seed's shape on a real cluster: 192.168.100.0/24 with a static range, churn.
    variants.push(PlanArgs {
        profile: "vm-bgp-churn".into(),
        vm_ip_range: Some("192.168.100.10-192.168.100.100".into()),
        ..PlanArgs::default()
    });
    let mut kinds = std::collections::BTreeSet::new();
    for args in variants {
        let manifests = render(args.clone());
        kinds.extend(manifests.iter().map(|m| m.kind().to_string()));
        let problems = invalid(&schemas, &manifests);
        assert!(
            problems.is_empty(),
            "profile {}: {}",
            args.profile,
            problems.join("\n")
        );
    }
    let expected = [
        "ClusterUserDefinedNetwork",
        "FRRConfiguration",
        "Namespace",
        "RouteAdvertisements",
        "VirtualMachine",
        "VirtualMachineInstanceMigration",
    ];
    assert_eq!(
        kinds.iter().map(String::as_str).collect::<Vec<_>>(),
        expected
    );
}

#[test]
fn a_template_with_the_seeds_wrong_field_fails_validation() {
    // Proves the test above can fail: prefixesWithCommunity is a Go field name, not the JSON one.
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, text) in vmbgp_bench::workload::TEMPLATE_FILES {
        let text = if *name == "frr-configuration.yaml.j2" {
            text.replace(
                "            connectTime: 5s",
                "            connectTime: 5s\n            prefixesWithCommunity: []",
            )
        } else {
            text.to_string()
        };
        std::fs::write(dir.path().join(name), text).expect("write template");
    }
    let plan = vmbgp_bench::commands::plan_from_args(&PlanArgs::default()).expect("plan");
    let manifests =
        render_plan(&plan, &Templates::from_dir(dir.path()).expect("templates")).expect("render");
    let problems = invalid(&SchemaSet::embedded().expect("schemas"), &manifests);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("prefixesWithCommunity"),
        "{}",
        problems[0]
    );
}
