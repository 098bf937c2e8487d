//! The manifests in `deploy/`: each is a valid object of its built-in kind (typed with
//! k8s-openapi, and nothing lost in the round trip, so a misspelt field fails), the RBAC grants
//! what the controller uses, and the Deployment's arguments parse with the real CLI.

use std::path::Path;

use clap::Parser;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use vmbgp_controller::cli::{Cli, Command};
use vmbgp_controller::controller::{
    claim_resource, cudn_resource, frr_resource, namespace_resource, ra_resource, vmi_resource,
};

fn load(file: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(file);
    let text = std::fs::read_to_string(&path).expect("manifest");
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// Deserialises as the typed kind and checks nothing was dropped or changed.
fn typed<T: DeserializeOwned + Serialize>(file: &str) -> T {
    let raw = load(file);
    let object: T = serde_json::from_value(raw.clone()).unwrap_or_else(|e| panic!("{file}: {e}"));
    let back = serde_json::to_value(&object).expect("serialise");
    assert_eq!(
        back, raw,
        "{file}: a field is unknown to its kind or has the wrong shape"
    );
    object
}

fn grants(rules: &[PolicyRule], group: &str, resource: &str, verb: &str) -> bool {
    rules.iter().any(|r| {
        r.api_groups
            .as_ref()
            .is_some_and(|g| g.iter().any(|g| g == group))
            && r.resources
                .as_ref()
                .is_some_and(|x| x.iter().any(|x| x == resource))
            && r.verbs.iter().any(|v| v == verb)
    })
}

#[test]
fn every_manifest_is_a_valid_object_of_its_kind() {
    let ns: Namespace = typed("namespace.yaml");
    let sa: ServiceAccount = typed("serviceaccount.yaml");
    let _: ClusterRoleBinding = typed("clusterrolebinding.yaml");
    let _: RoleBinding = typed("rolebinding-frr.yaml");
    let _: RoleBinding = typed("rolebinding-lease.yaml");
    let _: Service = typed("service.yaml");
    let deployment: Deployment = typed("deployment.yaml");
    assert_eq!(sa.metadata.namespace, ns.metadata.name);
    assert_eq!(deployment.metadata.namespace, ns.metadata.name);
    let files: Vec<String> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy"))
            .expect("deploy dir")
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().to_string()))
            .collect();
    assert_eq!(
        files.len(),
        10,
        "a new manifest needs a check here: {files:?}"
    );
}

#[test]
fn rbac_grants_what_the_controller_uses_and_no_more() {
    let cluster: ClusterRole = typed("clusterrole.yaml");
    let frr: Role = typed("role-frr.yaml");
    let lease: Role = typed("role-lease.yaml");
    let cluster_rules = cluster.rules.unwrap_or_default();
    for resource in [
        vmi_resource(),
        claim_resource(),
        cudn_resource(),
        ra_resource(),
        namespace_resource(),
    ] {
        for verb in ["list", "watch"] {
            assert!(
                grants(&cluster_rules, &resource.group, &resource.plural, verb),
                "{verb} {}",
                resource.plural
            );
        }
    }
    // Read-only cluster-wide: no write verb except Events.
    for rule in &cluster_rules {
        let events = rule
            .resources
            .as_ref()
            .is_some_and(|r| r == &["events".to_string()]);
        for verb in &rule.verbs {
            assert!(
                events || verb == "get" || verb == "list" || verb == "watch",
                "{rule:?}"
            );
        }
    }
    let frr_rules = frr.rules.unwrap_or_default();
    let frr_kind = frr_resource();
    for verb in ["list", "watch", "patch", "delete"] {
        assert!(
            grants(&frr_rules, &frr_kind.group, &frr_kind.plural, verb),
            "{verb}"
        );
    }
    let lease_rules = lease.rules.unwrap_or_default();
    for verb in ["get", "create", "update"] {
        assert!(
            grants(&lease_rules, "coordination.k8s.io", "leases", verb),
            "{verb}"
        );
    }
    // The frr role lives where the Deployment tells the controller to write.
    let deployment: Deployment = typed("deployment.yaml");
    let args = deployment_args(&deployment);
    let cli = Cli::try_parse_from(std::iter::once("vmbgp-controller".to_string()).chain(args))
        .expect("the Deployment's arguments parse");
    let Command::Run(run) = cli.command else {
        panic!("the Deployment runs `run`");
    };
    assert_eq!(
        frr.metadata.namespace.as_deref(),
        Some(run.frr_namespace.as_str())
    );
    assert_eq!(run.owner_cluster_role, cluster.metadata.name);
    assert!(!run.no_leader_election, "two replicas need leader election");
    assert!(
        lease_rules.iter().any(|r| r
            .resource_names
            .as_ref()
            .is_some_and(|n| n.contains(&run.lease_name))),
        "the Lease role names the Lease the controller uses"
    );
}

fn deployment_args(deployment: &Deployment) -> Vec<String> {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers.first())
        .and_then(|c| c.args.clone())
        .unwrap_or_default()
}

#[test]
fn probes_and_service_point_at_the_metrics_server() {
    let deployment: Deployment = typed("deployment.yaml");
    let container = deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers.first())
        .cloned()
        .expect("container");
    let path = |probe: &Option<k8s_openapi::api::core::v1::Probe>| {
        probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .and_then(|h| h.path.clone())
    };
    assert_eq!(path(&container.liveness_probe).as_deref(), Some("/healthz"));
    assert_eq!(path(&container.readiness_probe).as_deref(), Some("/readyz"));
    assert!(
        container
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .is_some()
    );
    let cli = Cli::try_parse_from(
        std::iter::once("vmbgp-controller".to_string()).chain(deployment_args(&deployment)),
    )
    .expect("args");
    let Command::Run(run) = cli.command else {
        panic!("run");
    };
    let port = container
        .ports
        .as_ref()
        .and_then(|p| p.first())
        .map(|p| p.container_port);
    assert_eq!(port, Some(i32::from(run.metrics_addr.port())));
    let service: Service = typed("service.yaml");
    let selector = service
        .spec
        .as_ref()
        .and_then(|s| s.selector.clone())
        .expect("selector");
    let labels = deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .expect("pod labels");
    assert!(selector.iter().all(|(k, v)| labels.get(k) == Some(v)));
}
