//! Renders the manifests a run applies, and the external router's FRR configuration, from the
//! templates in `workloads/` (embedded, or a directory given with `--workload-dir`). Rendering is
//! pure: the same plan always gives the same text, in apply order.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use minijinja::value::Serde;
use minijinja::{AutoEscape, Environment, UndefinedBehavior, context};
use serde::Serialize;
use serde_json::Value;
use vmbgp_schema::{SchemaSet, Strictness};

use crate::config::{Neighbors, Plan, Shape, VmSpec};

/// Label keys every created object carries; cleanup and watches select by them.
pub mod labels {
    pub const UUID: &str = "vmbgp.io/uuid";
    pub const JOB: &str = "vmbgp.io/job";
    pub const ITERATION: &str = "vmbgp.io/iteration";
    pub const REPLICA: &str = "vmbgp.io/replica";
    /// Marks the peering FRRConfiguration the RouteAdvertisements select as template.
    pub const ROLE: &str = "vmbgp.io/role";
    /// Ties a namespace and its CUDN together (the CUDN's namespaceSelector, the RA's networkSelector).
    pub const NETWORK: &str = "vmbgp.io/network";
}

/// The template files, by the name templates import them with.
pub const TEMPLATE_FILES: &[(&str, &str)] = &[
    ("_labels.j2", include_str!("../../workloads/_labels.j2")),
    (
        "frr-configuration.yaml.j2",
        include_str!("../../workloads/frr-configuration.yaml.j2"),
    ),
    (
        "namespace.yaml.j2",
        include_str!("../../workloads/namespace.yaml.j2"),
    ),
    ("cudn.yaml.j2", include_str!("../../workloads/cudn.yaml.j2")),
    (
        "route-advertisements.yaml.j2",
        include_str!("../../workloads/route-advertisements.yaml.j2"),
    ),
    ("vm.yaml.j2", include_str!("../../workloads/vm.yaml.j2")),
    ("vmim.yaml.j2", include_str!("../../workloads/vmim.yaml.j2")),
    (
        "external-frr.conf.j2",
        include_str!("../../workloads/external-frr.conf.j2"),
    ),
];

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RenderError {
    #[error("cannot read template {path}")]
    ReadTemplate {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("template {name} is invalid")]
    Template {
        name: String,
        #[source]
        source: minijinja::Error,
    },
    #[error("template {name} rendered text that is not valid YAML: {message}")]
    NotYaml { name: String, message: String },
    #[error("template {name} rendered a document without {field}")]
    MissingField { name: String, field: &'static str },
    #[error(
        "{kind} {name} (iteration {iteration}) would be refused by the API server: {violations}{more}"
    )]
    Invalid {
        kind: String,
        name: String,
        iteration: u32,
        /// Every field and rule the object breaks, as the API server words them.
        violations: String,
        /// ", and N more objects" when others are refused too.
        more: String,
    },
    #[error("the embedded schemas do not compile")]
    Schemas(#[source] vmbgp_schema::SchemaError),
}

/// Checks every manifest against the real schemas and CEL rules as an API server would on create
/// (strict field validation, kubectl's default), so a plan never sends an object a cluster refuses.
pub fn validate_manifests(manifests: &[Manifest]) -> Result<(), RenderError> {
    let schemas = SchemaSet::embedded().map_err(RenderError::Schemas)?;
    let mut refused = manifests.iter().filter_map(|m| {
        schemas
            .validate(&m.object, Strictness::Strict)
            .err()
            .map(|violations| (m, violations))
    });
    let Some((first, violations)) = refused.next() else {
        return Ok(());
    };
    let others = refused.count();
    let name = match first.namespace() {
        Some(ns) => format!("{ns}/{}", first.name()),
        None => first.name().to_string(),
    };
    Err(RenderError::Invalid {
        kind: first.kind().to_string(),
        name,
        iteration: first.iteration,
        violations: violations.to_string(),
        more: match others {
            0 => String::new(),
            1 => ", and 1 more object".to_string(),
            n => format!(", and {n} more objects"),
        },
    })
}

/// A loaded template set.
#[derive(Debug)]
pub struct Templates {
    env: Environment<'static>,
}

impl Templates {
    /// The templates compiled into the binary.
    pub fn builtin() -> Result<Self, RenderError> {
        Self::from_sources(
            TEMPLATE_FILES
                .iter()
                .map(|(n, t)| (n.to_string(), t.to_string())),
        )
    }

    /// Templates from a directory with the same file names as `workloads/`.
    pub fn from_dir(dir: &Path) -> Result<Self, RenderError> {
        let mut sources = Vec::new();
        for (name, _) in TEMPLATE_FILES {
            let path = dir.join(name);
            let text = std::fs::read_to_string(&path)
                .map_err(|source| RenderError::ReadTemplate { path, source })?;
            sources.push((name.to_string(), text));
        }
        Self::from_sources(sources.into_iter())
    }

    fn from_sources(sources: impl Iterator<Item = (String, String)>) -> Result<Self, RenderError> {
        let mut env = Environment::new();
        // A misspelt variable must fail loudly rather than render an empty field.
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // YAML and FRR text are not HTML: values are quoted explicitly with `tojson` where needed.
        env.set_auto_escape_callback(|_| AutoEscape::None);
        for (name, text) in sources {
            env.add_template_owned(name.clone(), text)
                .map_err(|source| RenderError::Template { name, source })?;
        }
        Ok(Templates { env })
    }

    fn render(&self, name: &str, ctx: minijinja::Value) -> Result<String, RenderError> {
        let template = self
            .env
            .get_template(name)
            .map_err(|source| RenderError::Template {
                name: name.to_string(),
                source,
            })?;
        template
            .render(ctx)
            .map_err(|source| RenderError::Template {
                name: name.to_string(),
                source,
            })
    }
}

/// One rendered object.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The iteration that applies it (0 for run-wide objects).
    pub iteration: u32,
    /// The rendered YAML text, as the template produced it.
    pub text: String,
    /// The same object, parsed.
    pub object: Value,
}

impl Manifest {
    pub fn api_version(&self) -> &str {
        self.object["apiVersion"].as_str().unwrap_or_default()
    }
    pub fn kind(&self) -> &str {
        self.object["kind"].as_str().unwrap_or_default()
    }
    pub fn name(&self) -> &str {
        self.object["metadata"]["name"].as_str().unwrap_or_default()
    }
    pub fn namespace(&self) -> Option<&str> {
        self.object["metadata"]["namespace"].as_str()
    }
}

/// The run labels of an object created in `iteration` as `replica`.
pub fn run_labels(plan: &Plan, iteration: u32, replica: u32) -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::UUID.to_string(), plan.uuid.clone()),
        (labels::JOB.to_string(), plan.job_name.clone()),
        (labels::ITERATION.to_string(), iteration.to_string()),
        (labels::REPLICA.to_string(), replica.to_string()),
    ])
}

/// The name of the peering template FRRConfiguration.
pub fn frr_template_name(plan: &Plan) -> String {
    format!("{}-peering", plan.job_name)
}

/// Renders every object a run applies, in apply order: the peering template, then per iteration
/// its network (namespace, CUDN, RouteAdvertisements) and its VMs, then (migration) the migrations.
pub fn render_plan(plan: &Plan, templates: &Templates) -> Result<Vec<Manifest>, RenderError> {
    let mut out = Vec::new();
    let mut peering_labels = run_labels(plan, 0, 1);
    peering_labels.insert(labels::ROLE.to_string(), "frr-template".to_string());
    out.push(render_one(
        templates,
        "frr-configuration.yaml.j2",
        0,
        context! { name => frr_template_name(plan), bgp => Serde(&plan.bgp), labels => Serde(peering_labels),
                   uuid => &plan.uuid, job_name => &plan.job_name, profile => &plan.profile },
    )?);
    let vm_iterations = plan
        .vms
        .iter()
        .map(|v| v.iteration)
        .max()
        .map_or(0, |m| m + 1);
    for iteration in 0..vm_iterations.max(1) {
        for network in plan.networks.iter().filter(|n| n.iteration == iteration) {
            let labels = run_labels(plan, network.iteration, 1);
            for name in [
                "namespace.yaml.j2",
                "cudn.yaml.j2",
                "route-advertisements.yaml.j2",
            ] {
                out.push(render_one(
                    templates,
                    name,
                    iteration,
                    context! { network => Serde(network), labels => Serde(&labels), uuid => &plan.uuid,
                               job_name => &plan.job_name, profile => &plan.profile,
                               host_routes => plan.bgp.host_routes },
                )?);
            }
        }
        for vm in plan.vms.iter().filter(|v| v.iteration == iteration) {
            out.push(render_vm(plan, templates, vm)?);
        }
    }
    if plan.shape == Shape::Migration {
        for round in 0..plan.iterations {
            for vm in &plan.vms {
                out.push(render_one(
                    templates,
                    "vmim.yaml.j2",
                    round,
                    context! { vm => Serde(vm), round => round, labels => Serde(run_labels(plan, round, vm.replica)),
                               uuid => &plan.uuid, job_name => &plan.job_name, profile => &plan.profile },
                )?);
            }
        }
    }
    Ok(out)
}

/// Renders one VM.
pub fn render_vm(plan: &Plan, templates: &Templates, vm: &VmSpec) -> Result<Manifest, RenderError> {
    render_one(
        templates,
        "vm.yaml.j2",
        vm.iteration,
        context! { vm => Serde(vm), template => Serde(&plan.vm_template), egress_endpoint => plan.probes.egress_endpoint.to_string(),
        labels => Serde(run_labels(plan, vm.iteration, vm.replica)), uuid => &plan.uuid,
        job_name => &plan.job_name, profile => &plan.profile },
    )
}

fn render_one(
    templates: &Templates,
    name: &str,
    iteration: u32,
    ctx: minijinja::Value,
) -> Result<Manifest, RenderError> {
    let text = templates.render(name, ctx)?;
    let object: Value = serde_saphyr::from_str(&text).map_err(|e| RenderError::NotYaml {
        name: name.to_string(),
        message: e.to_string(),
    })?;
    for (field, value) in [
        ("apiVersion", &object["apiVersion"]),
        ("kind", &object["kind"]),
    ] {
        if !value.is_string() {
            return Err(RenderError::MissingField {
                name: name.to_string(),
                field,
            });
        }
    }
    if !object["metadata"]["name"].is_string() {
        return Err(RenderError::MissingField {
            name: name.to_string(),
            field: "metadata.name",
        });
    }
    Ok(Manifest {
        iteration,
        text,
        object,
    })
}

/// The multi-document YAML `vmbgp-bench render` prints.
pub fn to_multidoc_yaml(plan: &Plan, manifests: &[Manifest]) -> String {
    #[derive(Serialize)]
    struct Header<'a> {
        profile: &'a str,
        uuid: &'a str,
        objects: usize,
    }
    let header = Header {
        profile: &plan.profile,
        uuid: &plan.uuid,
        objects: manifests.len(),
    };
    let mut out = format!(
        "# vmbgp-bench render: profile {}, uuid {}, {} objects in apply order.\n",
        header.profile, header.uuid, header.objects
    );
    if plan.shape == Shape::Churn {
        out.push_str("# churn: each iteration's VMs are deleted (and withdrawal measured) before the next iteration.\n");
    }
    for manifest in manifests {
        out.push_str("---\n");
        out.push_str(manifest.text.trim_end());
        out.push('\n');
    }
    out
}

/// The external router's FRR configuration for the plan.
pub fn render_external_frr(plan: &Plan, templates: &Templates) -> Result<String, RenderError> {
    let (node_ips, listen_range) = match &plan.bgp.neighbors {
        Neighbors::Explicit(ips) => (
            ips.iter().map(|ip| ip.to_string()).collect::<Vec<_>>(),
            String::new(),
        ),
        Neighbors::ListenRange(range) => (Vec::new(), range.to_string()),
    };
    let mut text = templates.render(
        "external-frr.conf.j2",
        context! { bgp => Serde(&plan.bgp), node_ips => node_ips, listen_range => listen_range,
        uuid => &plan.uuid, profile => &plan.profile },
    )?;
    // Templates drop the final newline; configuration files end with one.
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::PlanArgs;
    use crate::config::{load_profile, plan};

    fn test_plan(profile: &str) -> Plan {
        plan(
            &load_profile(profile).expect("profile"),
            &PlanArgs {
                uuid: Some("00000000-0000-4000-8000-000000000000".into()),
                ..Default::default()
            },
        )
        .expect("plan")
    }

    #[test]
    fn every_object_carries_the_run_labels() {
        for (name, _) in crate::config::BUILTIN_PROFILES {
            let plan = test_plan(name);
            let manifests =
                render_plan(&plan, &Templates::builtin().expect("templates")).expect("render");
            for m in &manifests {
                let labels = &m.object["metadata"]["labels"];
                for key in [
                    labels::UUID,
                    labels::JOB,
                    labels::ITERATION,
                    labels::REPLICA,
                ] {
                    assert!(
                        labels[key].is_string(),
                        "{} {} lacks {key}",
                        m.kind(),
                        m.name()
                    );
                }
                if m.kind() == "VirtualMachine" {
                    let template_labels = &m.object["spec"]["template"]["metadata"]["labels"];
                    assert_eq!(template_labels[labels::UUID], labels[labels::UUID]);
                }
            }
        }
    }

    #[test]
    fn apply_order_puts_namespace_and_network_before_their_vms() {
        let plan = test_plan("vm-bgp");
        let manifests =
            render_plan(&plan, &Templates::builtin().expect("templates")).expect("render");
        let kinds: Vec<&str> = manifests.iter().take(5).map(|m| m.kind()).collect();
        assert_eq!(
            kinds,
            [
                "FRRConfiguration",
                "Namespace",
                "ClusterUserDefinedNetwork",
                "RouteAdvertisements",
                "VirtualMachine"
            ]
        );
        assert!(
            manifests.iter().all(|m| m.kind() != "IPAMClaim"),
            "the harness never creates IPAMClaims"
        );
    }

    #[test]
    fn static_ip_is_requested_through_the_template_annotation() {
        let plan = test_plan("vm-bgp-churn");
        let vm = render_vm(
            &plan,
            &Templates::builtin().expect("templates"),
            &plan.vms[0],
        )
        .expect("render");
        let annotation = vm.object["spec"]["template"]["metadata"]["annotations"]["network.kubevirt.io/addresses"]
            .as_str()
            .expect("annotation");
        let parsed: Value = serde_json::from_str(annotation).expect("json");
        assert_eq!(parsed, serde_json::json!({"default": ["198.19.100.10"]}));
    }

    #[test]
    fn misspelt_variable_fails_instead_of_rendering_empty() {
        let mut files: Vec<(String, String)> = TEMPLATE_FILES
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect();
        for (name, text) in &mut files {
            if name == "vmim.yaml.j2" {
                *text = text.replace("vm.name }}-mig", "vm.nmae }}-mig");
            }
        }
        let templates = Templates::from_sources(files.into_iter()).expect("compiles");
        let plan = test_plan("vm-bgp-migration");
        let err = render_plan(&plan, &templates).expect_err("undefined variable");
        assert!(err.to_string().contains("vmim.yaml.j2"), "{err}");
    }
}
