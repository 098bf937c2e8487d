//! Preflight: checks that a cluster has what a run needs (API reachable, the CRDs and the fields the
//! rendered manifests use, the frr-k8s namespace, no leftover objects in the way, optionally the BGP
//! peer's TCP port) and reports every finding, not just the first.

use std::fmt;
use std::time::Duration;

use kube::api::{Api, DynamicObject, ListParams};
use serde_json::Value;

use super::{
    BGP_SESSION_STATE, CRD, CUDN, Cluster, FRR_CONFIGURATION, FRR_NODE_STATE, IPAM_CLAIM,
    NAMESPACE, ROUTE_ADVERTISEMENTS, Resource, VIRTUAL_MACHINE, VMI, VMIM,
};
use crate::config::Plan;
use crate::workload::labels;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Ok,
    Warn,
    /// Blocks a run.
    Fail,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        })
    }
}

/// One preflight finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub check: String,
    pub status: Status,
    pub detail: String,
}

impl Finding {
    fn new(check: impl Into<String>, status: Status, detail: impl Into<String>) -> Self {
        Finding {
            check: check.into(),
            status,
            detail: detail.into(),
        }
    }
}

/// All findings of a preflight, in check order.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub findings: Vec<Finding>,
    /// The API server's version (`gitVersion`), when reachable.
    pub server_version: Option<String>,
}

impl Report {
    pub fn blocking(&self) -> bool {
        self.findings.iter().any(|f| f.status == Status::Fail)
    }

    /// Whether the API server answered at all.
    pub fn reachable(&self) -> bool {
        self.server_version.is_some()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self
            .findings
            .iter()
            .map(|x| x.check.len())
            .max()
            .unwrap_or(0);
        for finding in &self.findings {
            writeln!(
                f,
                "{:<4}  {:<width$}  {}",
                finding.status, finding.check, finding.detail
            )?;
        }
        Ok(())
    }
}

/// Resources a run needs, and whether their absence blocks it.
const REQUIRED: &[(Resource, bool)] = &[
    (VIRTUAL_MACHINE, true),
    (VMI, true),
    (VMIM, true),
    (CUDN, true),
    (ROUTE_ADVERTISEMENTS, true),
    (FRR_CONFIGURATION, true),
    (IPAM_CLAIM, true),
    (FRR_NODE_STATE, false),
    (BGP_SESSION_STATE, false),
];

/// Runs every preflight check against the cluster.
pub async fn preflight(cluster: &Cluster, plan: &Plan, probe_peer: Option<Duration>) -> Report {
    let mut report = Report::default();
    match cluster.client.apiserver_version().await {
        Ok(info) => {
            report.findings.push(Finding::new(
                "api",
                Status::Ok,
                format!("{} answers, Kubernetes {}", cluster.url, info.git_version),
            ));
            report.server_version = Some(info.git_version);
        }
        Err(e) => {
            report.findings.push(Finding::new(
                "api",
                Status::Fail,
                format!("{} is unreachable: {e}", cluster.url),
            ));
            return report;
        }
    }
    for (resource, required) in REQUIRED {
        report
            .findings
            .push(check_served(cluster, resource, *required).await);
    }
    report
        .findings
        .extend(check_cudn_fields(cluster, plan).await);
    report
        .findings
        .push(check_namespace(cluster, &plan.bgp.frr_namespace).await);
    report.findings.push(check_leftovers(cluster, plan).await);
    if let Some(timeout) = probe_peer {
        report.findings.push(check_peer(plan, timeout).await);
    }
    report
}

async fn check_served(cluster: &Cluster, resource: &Resource, required: bool) -> Finding {
    let name = format!(
        "crd {}",
        resource
            .crd_name()
            .unwrap_or_else(|| resource.plural.to_string())
    );
    let missing = if required { Status::Fail } else { Status::Warn };
    match cluster
        .client
        .list_api_group_resources(&resource.api_version())
        .await
    {
        Ok(list) if list.resources.iter().any(|r| r.name == resource.plural) => Finding::new(
            name,
            Status::Ok,
            format!("{} {} served", resource.api_version(), resource.kind),
        ),
        Ok(_) => Finding::new(
            name,
            missing,
            format!(
                "{} is served but has no {}",
                resource.api_version(),
                resource.plural
            ),
        ),
        Err(e) => Finding::new(
            name,
            missing,
            format!(
                "{} {} is not served: {}",
                resource.api_version(),
                resource.kind,
                short_error(&e)
            ),
        ),
    }
}

/// Probes the installed CUDN schema for the fields the rendered manifests use.
async fn check_cudn_fields(cluster: &Cluster, plan: &Plan) -> Vec<Finding> {
    let crds: Api<DynamicObject> = Api::all_with(cluster.client.clone(), &CRD.api_resource());
    let Some(crd_name) = CUDN.crd_name() else {
        return Vec::new();
    };
    let crd = match crds.get_opt(&crd_name).await {
        Ok(Some(crd)) => crd,
        Ok(None) => {
            return vec![Finding::new(
                "cudn schema",
                Status::Warn,
                format!("the CRD object {crd_name} is not readable; its fields were not probed"),
            )];
        }
        Err(e) => {
            return vec![Finding::new(
                "cudn schema",
                Status::Warn,
                format!(
                    "cannot read the CRD to probe its fields ({}); assuming a current OVN-K",
                    short_error(&e)
                ),
            )];
        }
    };
    let Some(layer2) = served_schema(&crd.data, CUDN.version).and_then(|s| {
        s.pointer("/properties/spec/properties/network/properties/layer2/properties")
            .cloned()
    }) else {
        return vec![Finding::new(
            "cudn schema",
            Status::Warn,
            "the CRD has no layer2 schema to probe",
        )];
    };
    let mut out = Vec::new();
    if layer2.pointer("/ipam/properties/lifecycle").is_some() {
        out.push(Finding::new(
            "cudn layer2.ipam.lifecycle",
            Status::Ok,
            "persistent IPAM field present",
        ));
    } else if layer2.get("ipamLifecycle").is_some() {
        out.push(Finding::new(
            "cudn layer2.ipam.lifecycle",
            Status::Fail,
            "this OVN-K predates layer2.ipam.lifecycle (Jan 2025) and only knows layer2.ipamLifecycle; \
             upgrade OVN-Kubernetes or render with --workload-dir and an adapted cudn.yaml.j2",
        ));
    } else {
        out.push(Finding::new(
            "cudn layer2.ipam.lifecycle",
            Status::Fail,
            "the CUDN schema has no persistent-IPAM field",
        ));
    }
    let uses_reserved = plan.networks.iter().any(|n| !n.reserved_subnets.is_empty());
    match (layer2.get("reservedSubnets").is_some(), uses_reserved) {
        (true, _) => out.push(Finding::new("cudn layer2.reservedSubnets", Status::Ok, "field present")),
        (false, true) => out.push(Finding::new(
            "cudn layer2.reservedSubnets",
            Status::Fail,
            "the plan uses static Day-0 IPs and renders reservedSubnets, which this OVN-K (before Aug 2025) lacks",
        )),
        (false, false) => out.push(Finding::new(
            "cudn layer2.reservedSubnets",
            Status::Warn,
            "field absent (not needed by this plan)",
        )),
    }
    out
}

/// The openAPIV3Schema of a CRD's version.
fn served_schema<'a>(crd: &'a Value, version: &str) -> Option<&'a Value> {
    crd.pointer("/spec/versions")?
        .as_array()?
        .iter()
        .find(|v| v["name"] == version)
        .and_then(|v| v.pointer("/schema/openAPIV3Schema"))
}

async fn check_namespace(cluster: &Cluster, name: &str) -> Finding {
    let namespaces: Api<DynamicObject> =
        Api::all_with(cluster.client.clone(), &NAMESPACE.api_resource());
    match namespaces.get_opt(name).await {
        Ok(Some(_)) => Finding::new("frr-k8s namespace", Status::Ok, format!("{name} exists")),
        Ok(None) => Finding::new(
            "frr-k8s namespace",
            Status::Fail,
            format!(
                "namespace {name} does not exist; is frr-k8s installed? (upstream uses frr-k8s-system: --frr-namespace)"
            ),
        ),
        Err(e) => Finding::new(
            "frr-k8s namespace",
            Status::Fail,
            format!("cannot read namespace {name}: {}", short_error(&e)),
        ),
    }
}

/// Objects with the names this run would create (namespaces, networks, RouteAdvertisements, the
/// peering template), left by an earlier run: creating over them would fail with 409 or, worse,
/// measure the other run's objects. Names the other runs' uuids and the command that removes them.
async fn check_leftovers(cluster: &Cluster, plan: &Plan) -> Finding {
    let template = crate::workload::frr_template_name(plan);
    let wanted: Vec<(Resource, Option<&str>, Vec<&str>)> = vec![
        (
            NAMESPACE,
            None,
            plan.networks.iter().map(|n| n.namespace.as_str()).collect(),
        ),
        (
            CUDN,
            None,
            plan.networks.iter().map(|n| n.name.as_str()).collect(),
        ),
        (
            ROUTE_ADVERTISEMENTS,
            None,
            plan.networks.iter().map(|n| n.name.as_str()).collect(),
        ),
        (
            FRR_CONFIGURATION,
            Some(plan.bgp.frr_namespace.as_str()),
            vec![template.as_str()],
        ),
    ];
    let mut clashes = Vec::new();
    let mut owners = std::collections::BTreeSet::new();
    for (resource, namespace, names) in wanted {
        let api: Api<DynamicObject> = match namespace {
            Some(ns) => Api::namespaced_with(cluster.client.clone(), ns, &resource.api_resource()),
            None => Api::all_with(cluster.client.clone(), &resource.api_resource()),
        };
        let list = match api.list(&ListParams::default()).await {
            Ok(list) => list,
            // A missing CRD is reported by its own check.
            Err(kube::Error::Api(status)) if status.code == 404 => continue,
            Err(e) => {
                return Finding::new(
                    "leftovers",
                    Status::Warn,
                    format!("cannot list {}: {}", resource.plural, short_error(&e)),
                );
            }
        };
        for object in &list.items {
            let name = object.metadata.name.as_deref().unwrap_or_default();
            if !names.contains(&name) {
                continue;
            }
            clashes.push(format!("{} {name}", resource.kind));
            match object
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(labels::UUID))
            {
                Some(uuid) => owners.insert(format!("vmbgp-bench destroy --uuid {uuid}")),
                None => owners.insert(format!(
                    "(not made by vmbgp-bench: delete {} {name} yourself)",
                    resource.kind
                )),
            };
        }
    }
    if clashes.is_empty() {
        return Finding::new(
            "leftovers",
            Status::Ok,
            "no object with a name of this plan exists yet",
        );
    }
    let shown: Vec<String> = clashes.iter().take(6).cloned().collect();
    let more = clashes.len().saturating_sub(shown.len());
    Finding::new(
        "leftovers",
        Status::Fail,
        format!(
            "{}{} already exist (left by an earlier run); remove them with: {} — or choose another --name-prefix",
            shown.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            },
            owners.into_iter().collect::<Vec<_>>().join("; ")
        ),
    )
}

/// Opens (and closes) a TCP connection to the BGP peer's port 179. Only on request: a real router.
async fn check_peer(plan: &Plan, timeout: Duration) -> Finding {
    let addr = std::net::SocketAddr::from((plan.bgp.peer_ip, 179));
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Finding::new(
            "bgp peer",
            Status::Ok,
            format!("{addr} accepts TCP connections"),
        ),
        Ok(Err(e)) => Finding::new("bgp peer", Status::Fail, format!("{addr}: {e}")),
        Err(_) => Finding::new(
            "bgp peer",
            Status::Fail,
            format!("{addr}: no answer within {timeout:?}"),
        ),
    }
}

fn short_error(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) => format!("{} {}", status.code, status.message),
        other => other.to_string(),
    }
}
