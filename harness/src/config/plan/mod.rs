//! The validated run plan and the one pure function that builds it from a profile and the
//! command line's [`PlanArgs`] (the values given there override the profile's).
//! Every problem is collected (not just the first) and named by its source: the `--flag` when the
//! value came from the command line, `profile <name>: <key>` when it came from the profile.
//!
//! The work is split by job: `types` holds the plan types, `checker` the problem collector,
//! `networks` the network layouts, `bgp`, `probes`, `indexing` (with redaction) and `thresholds`
//! their parts of the plan. This file holds the entry function, the run-level settings and the
//! built-in defaults.

mod bgp;
mod checker;
mod indexing;
mod networks;
mod probes;
mod thresholds;
mod types;

pub use checker::check_label_value;
// Public at `config::plan::` before the split, though nothing outside this module uses them today.
#[allow(unused_imports)]
pub use networks::MAX_CUDN_NAME_LEN;
#[allow(unused_imports)]
pub use probes::spread_iterations;
pub use types::{
    BgpPlan, BmpTarget, EsTarget, Indexing, Layout, Neighbors, NetworkSpec, Plan, ProbePlan, Shape,
    VmSpec, VmTemplate,
};
pub use vmbgp_model::{Bound, Statistic, Threshold};

use bgp::{check_bgp_against_networks, plan_bgp};
use checker::{Checker, flag, key, pick};
use indexing::plan_indexing;
use networks::{Counts, plan_per_iteration, plan_shared};
use probes::plan_probes;
use thresholds::plan_thresholds;

use super::profile::Profile;
use super::{ConfigError, Problem};
use crate::cli::PlanArgs;

/// Built-in defaults for values neither the profile nor the command line sets.
mod defaults {
    pub const ITERATIONS: u32 = 1;
    pub const VM_COUNT: u32 = 1;
    pub const QPS: u32 = 20;
    pub const BURST: u32 = 20;
    pub const TIMEOUT: &str = "4h";
    pub const SUPERNET: &str = "198.19.0.0/16";
    pub const SUBNET_PREFIX: u8 = 24;
    pub const FIRST_VM_OFFSET: u32 = 10;
    pub const NAME_PREFIX: &str = "vmbgp";
    pub const PEER_IP: &str = "198.18.0.155";
    pub const PEER_ASN: u64 = 64512;
    pub const CLUSTER_ASN: u64 = 64513;
    pub const FRR_NAMESPACE: &str = "openshift-frr-k8s";
    pub const NODE_CIDR: &str = "198.18.0.0/24";
    pub const KEEPALIVE: &str = "3s";
    pub const HOLD: &str = "9s";
    pub const BMP_TARGET: &str = "127.0.0.1:5000";
    pub const IMAGE: &str = "quay.io/containerdisks/fedora:41";
    pub const MEMORY: &str = "1Gi";
    pub const HTTP_PORT: u16 = 8080;
    pub const SINK_PORT: u16 = 5201;
    pub const CONVERGING_RATE: u32 = 100;
    pub const STEADY_RATE: u32 = 10;
    pub const MIGRATION_RATE: u32 = 1000;
    pub const THROUGHPUT_DURATION: &str = "5s";
    pub const THROUGHPUT_VMS: u32 = 1;
    /// Three tested iterations (first, middle, last) keep a 72-iteration run within its time budget.
    pub const THROUGHPUT_ITERATIONS: u32 = 3;
    pub const EGRESS_PORT: u16 = 8090;
    pub const RESULTS_DIR: &str = "results";
}

/// The most VMs one run may create or migrate (iterations × vmCount). A run plans, measures and
/// reports every one of them in memory; 100,000 is far above any real scale test (the nightly job
/// is 720) and keeps the plan to tens of megabytes, so a typo such as `iterations: 400000000` is
/// refused naming the field instead of exhausting memory.
pub const MAX_PLANNED_VMS: u64 = 100_000;

/// Builds a validated plan from a profile and the command line, whose values override the
/// profile's. Pure: no I/O.
pub fn plan(profile: &Profile, cli: &PlanArgs) -> Result<Plan, ConfigError> {
    let mut c = Checker {
        profile: &profile.name,
        problems: Vec::new(),
    };

    let shape = match profile.shape.as_str() {
        "scale" => Some(Shape::Scale),
        "churn" => Some(Shape::Churn),
        "migration" => Some(Shape::Migration),
        other => {
            c.problem(
                &c.profile_field(&key!(shape)),
                other,
                "unknown shape; use scale, churn or migration",
            );
            None
        }
    };

    let iterations = pick!(c, cli.iterations, profile.iterations, defaults::ITERATIONS);
    let iterations_v = c.positive(&iterations);
    let vm_count = pick!(c, cli.vm_count, profile.vm_count, defaults::VM_COUNT);
    let mut vm_count_v = c.positive(&vm_count);
    if let (Some(i), Some(v)) = (iterations_v, vm_count_v)
        && u64::from(i) * u64::from(v) > MAX_PLANNED_VMS
    {
        let planned = u64::from(i) * u64::from(v);
        let (field, value) = if i >= v {
            (&iterations.field, i)
        } else {
            (&vm_count.field, v)
        };
        c.problem(
            field,
            value,
            format!(
                "{i} iterations × {v} VMs = {planned} VMs, more than the {MAX_PLANNED_VMS} one run \
                 may create or migrate; lower --iterations or --vm-count"
            ),
        );
        vm_count_v = None;
    }
    let qps = pick!(c, cli.qps, profile.qps, defaults::QPS);
    let qps_v = c.positive(&qps);
    let burst = pick!(c, cli.burst, profile.burst, defaults::BURST);
    let burst_v = c.positive(&burst);
    if let (Some(q), Some(b)) = (qps_v, burst_v)
        && b < q
    {
        c.problem(
            &burst.field,
            b,
            format!(
                "burst must be at least qps ({q} from {}), or the limiter can never reach qps",
                qps.field
            ),
        );
    }
    let timeout = pick!(
        c,
        cli.timeout,
        profile.timeout,
        defaults::TIMEOUT.to_string()
    );
    let timeout_v = c.duration(&timeout);

    let uuid = cli
        .uuid
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    if let Err(why) = check_label_value(&uuid) {
        c.problem(
            &flag!(uuid),
            &uuid,
            format!("must be a valid Kubernetes label value ({why})"),
        );
    }
    let job_name = profile
        .job_name
        .clone()
        .unwrap_or_else(|| profile.name.clone());
    if let Err(why) = check_label_value(&job_name) {
        c.problem(
            &c.profile_field(&key!(job_name)),
            &job_name,
            format!("must be a valid Kubernetes label value ({why})"),
        );
    }

    let indexing = plan_indexing(&mut c, cli);

    // Network layout.
    let layout_src = pick!(
        c,
        cli.network,
        profile.network.layout,
        "per-iteration".to_string()
    );
    let layout = match layout_src.value.as_str() {
        "per-iteration" => Some(Layout::PerIteration),
        "shared" => Some(Layout::Shared),
        other => {
            c.problem(
                &layout_src.field,
                other,
                "unknown network layout; use per-iteration or shared",
            );
            None
        }
    };
    if let (Some(Layout::PerIteration), Some(shape @ (Shape::Churn | Shape::Migration))) =
        (layout, shape)
    {
        c.problem(
            &layout_src.field,
            &layout_src.value,
            format!(
                "the {} shape reuses one network across iterations; use --network shared",
                if shape == Shape::Churn {
                    "churn"
                } else {
                    "migration"
                }
            ),
        );
    }
    let name_prefix = pick!(
        c,
        cli.name_prefix,
        profile.network.name_prefix,
        defaults::NAME_PREFIX.to_string()
    );

    let bgp = plan_bgp(&mut c, profile, cli);
    // Iterations that create VMs (a migration run creates them once and migrates them each round).
    let vm_iterations = iterations_v.map(|i| {
        if shape == Some(Shape::Migration) {
            1
        } else {
            i
        }
    });
    let probes = plan_probes(&mut c, profile, cli, vm_iterations, vm_count_v);
    let vm_template = plan_vm_template(&mut c, profile, cli);
    let thresholds = plan_thresholds(&mut c, profile);

    let mut networks = Vec::new();
    let mut vms = Vec::new();
    let mut peak_live_vms = 0;
    if let (Some(shape), Some(layout), Some(iterations), Some(vm_count)) =
        (shape, layout, iterations_v, vm_count_v)
    {
        let live = match shape {
            Shape::Scale => u64::from(iterations) * u64::from(vm_count),
            Shape::Churn | Shape::Migration => u64::from(vm_count),
        };
        peak_live_vms = live;
        let counts = Counts {
            shape,
            iterations,
            vm_count,
            live,
        };
        match layout {
            Layout::PerIteration => {
                plan_per_iteration(
                    &mut c,
                    profile,
                    cli,
                    &counts,
                    &name_prefix,
                    &mut networks,
                    &mut vms,
                );
            }
            Layout::Shared => plan_shared(
                &mut c,
                profile,
                cli,
                &counts,
                &name_prefix,
                &mut networks,
                &mut vms,
            ),
        }
        if let Some(bgp) = &bgp {
            check_bgp_against_networks(&mut c, bgp, &networks, cli);
        }
    }

    if !c.problems.is_empty() {
        return Err(ConfigError::Invalid(c.problems));
    }
    // Every Option below is Some when no problem was recorded; the match keeps that explicit.
    match (
        shape,
        layout,
        iterations_v,
        vm_count_v,
        qps_v,
        burst_v,
        timeout_v,
        bgp,
        probes,
        vm_template,
    ) {
        (
            Some(shape),
            Some(layout),
            Some(iterations),
            Some(vm_count),
            Some(qps),
            Some(burst),
            Some(timeout),
            Some(bgp),
            Some(probes),
            Some(vm_template),
        ) => Ok(Plan {
            profile: profile.name.clone(),
            description: profile.description.clone().unwrap_or_default(),
            job_name,
            uuid,
            shape,
            iterations,
            vm_count,
            qps,
            burst,
            timeout,
            gc: cli.gc.unwrap_or(true),
            indexing,
            kubeconfig: cli.kubeconfig.clone(),
            context: cli.context.clone(),
            layout,
            networks,
            vms,
            vm_template,
            bgp,
            probes,
            thresholds,
            peak_live_vms,
        }),
        _ => Err(ConfigError::Invalid(vec![Problem {
            field: "plan".into(),
            value: String::new(),
            message: "internal: a value was missing without a recorded problem".into(),
        }])),
    }
}

fn plan_vm_template(c: &mut Checker<'_>, profile: &Profile, cli: &PlanArgs) -> Option<VmTemplate> {
    let v = &profile.vm;
    let image = cli
        .vm_image
        .clone()
        .or_else(|| v.image.clone())
        .unwrap_or_else(|| defaults::IMAGE.to_string());
    if image.trim().is_empty() || image.contains(char::is_whitespace) {
        c.problem(
            &flag!(vm_image),
            &image,
            "not a valid container image reference",
        );
    }
    let memory = v
        .memory
        .clone()
        .unwrap_or_else(|| defaults::MEMORY.to_string());
    let memory_ok = {
        let digits = memory.trim_end_matches(|ch: char| ch.is_ascii_alphabetic());
        let suffix = &memory[digits.len()..];
        !digits.is_empty()
            && digits.chars().all(|ch| ch.is_ascii_digit())
            && ["", "Ki", "Mi", "Gi", "Ti", "K", "M", "G", "T"].contains(&suffix)
    };
    if !memory_ok {
        c.problem(
            &c.profile_field(&key!(vm.memory)),
            &memory,
            "not a Kubernetes quantity (e.g. 1Gi, 512Mi)",
        );
    }
    let cores = v.cores.unwrap_or(1);
    if cores == 0 {
        c.problem(
            &c.profile_field(&key!(vm.cores)),
            cores,
            "must be at least 1",
        );
    }
    let http_port = v.http_port.unwrap_or(defaults::HTTP_PORT);
    let sink_port = v.sink_port.unwrap_or(defaults::SINK_PORT);
    for (key, port) in [
        (key!(vm.http_port), http_port),
        (key!(vm.sink_port), sink_port),
    ] {
        if port == 0 {
            c.problem(&c.profile_field(&key), port, "port must be 1-65535");
        }
    }
    if http_port == sink_port {
        c.problem(
            &c.profile_field(&key!(vm.sink_port)),
            sink_port,
            "the TCP sink and the HTTP responder need different ports",
        );
    }
    Some(VmTemplate {
        image,
        memory,
        cores,
        http_port,
        sink_port,
    })
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::time::Duration;

    use super::*;
    use crate::config::load_profile;
    use crate::config::profile::ThresholdProfile;

    fn plan_of(profile: &str, cli: PlanArgs) -> Result<Plan, ConfigError> {
        plan(&load_profile(profile).expect("profile"), &cli)
    }

    #[test]
    fn throughput_settings_are_checked_against_the_run() {
        let p = plan_of(
            "vm-bgp",
            PlanArgs {
                iterations: Some(72),
                ..Default::default()
            },
        )
        .expect("plan");
        assert_eq!(p.probes.throughput_iterations, vec![0, 36, 71]);
        let migration = plan_of("vm-bgp-migration", PlanArgs::default()).expect("plan");
        assert!(migration.probes.throughput_iterations.is_empty());

        let text = load_profile_text("vm-bgp")
            .replace("throughputVms: 1", "throughputVms: 6")
            .replace("throughputDuration: 5s", "throughputDuration: 20m");
        let profile = crate::config::profile::parse_profile(&text, "test").expect("parse");
        let Err(ConfigError::Invalid(problems)) = plan(&profile, &PlanArgs::default()) else {
            panic!("an invalid throughput setting was accepted");
        };
        let fields: Vec<(&str, &str)> = problems
            .iter()
            .map(|p| (p.field.as_str(), p.value.as_str()))
            .collect();
        assert!(
            fields.contains(&("profile vm-bgp: probes.throughputVms", "6")),
            "{fields:?}"
        );
        assert!(
            fields.contains(&("profile vm-bgp: probes.throughputDuration", "20m")),
            "{fields:?}"
        );
    }

    fn load_profile_text(name: &str) -> String {
        std::fs::read_to_string(format!(
            "{}/../profiles/{name}.yaml",
            env!("CARGO_MANIFEST_DIR")
        ))
        .expect("profile text")
    }

    #[test]
    fn default_profile_plans_one_network_per_iteration_with_static_ips() {
        let p = plan_of(
            "vm-bgp",
            PlanArgs {
                iterations: Some(72),
                vm_count: Some(10),
                uuid: Some("u1".into()),
                ..Default::default()
            },
        )
        .expect("plan");
        assert_eq!(p.networks.len(), 72);
        assert_eq!(p.vms.len(), 720);
        assert_eq!(p.peak_live_vms, 720);
        assert_eq!(p.networks[71].name, "vmbgp-71");
        assert_eq!(p.networks[71].subnet.to_string(), "198.19.71.0/24");
        assert_eq!(p.vms[0].static_ip, Some(Ipv4Addr::new(198, 19, 0, 10)));
        assert_eq!(p.vms[719].static_ip, Some(Ipv4Addr::new(198, 19, 71, 19)));
        assert_eq!(
            p.networks[0]
                .reserved_subnets
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>(),
            ["198.19.0.10/31", "198.19.0.12/30", "198.19.0.16/30"]
        );
    }

    #[test]
    fn churn_reuses_the_same_addresses_every_iteration() {
        let p = plan_of("vm-bgp-churn", PlanArgs::default()).expect("plan");
        let first: Vec<_> = p
            .vms
            .iter()
            .filter(|v| v.iteration == 0)
            .map(|v| v.static_ip)
            .collect();
        let last: Vec<_> = p
            .vms
            .iter()
            .filter(|v| v.iteration == p.iterations - 1)
            .map(|v| v.static_ip)
            .collect();
        assert_eq!(first, last);
        assert_eq!(p.peak_live_vms, u64::from(p.vm_count));
    }

    #[test]
    fn migration_creates_its_vms_once() {
        let p = plan_of("vm-bgp-migration", PlanArgs::default()).expect("plan");
        assert_eq!(p.vms.len() as u32, p.vm_count);
        assert_eq!(p.shape, Shape::Migration);
    }

    #[test]
    fn es_password_never_appears_in_the_plan_dump() {
        let p = plan_of(
            "vm-bgp",
            PlanArgs {
                es_server: Some("https://user:canary-secret@es.example:9200".into()),
                es_index: Some("ripsaw-kube-burner-vm-bgp".into()),
                ..Default::default()
            },
        )
        .expect("plan");
        let dump = serde_json::to_string(&p).expect("json");
        assert!(!dump.contains("canary-secret"), "{dump}");
        assert!(dump.contains("REDACTED"));
    }

    #[test]
    fn thresholds_use_the_documents_quantile_names_and_units() {
        let mut profile = load_profile("vm-bgp").expect("profile");
        let p = plan(&profile, &PlanArgs::default()).expect("plan");
        assert_eq!(p.thresholds[0].quantile, "AdvertiseFib");
        assert_eq!(
            p.thresholds[0].bound,
            Bound::MaxDuration(Duration::from_secs(5))
        );
        assert_eq!(p.thresholds[2].stat, Statistic::MissingCount);
        profile.thresholds = Some(vec![ThresholdProfile {
            metric: "routeConvergence".into(),
            quantile: "Withdraw".into(),
            max: Some("5s".into()),
            ..Default::default()
        }]);
        let err = plan(&profile, &PlanArgs::default()).expect_err("unknown quantile");
        let text = err.to_string();
        assert!(
            text.contains("thresholds[0].quantile") && text.contains("WithdrawFib"),
            "{text}"
        );
    }
}
