//! Golden files: the rendering of every built-in profile and the external router's FRR
//! configuration, with a fixed uuid. A changed rendering fails until the golden is regenerated
//! with `UPDATE_GOLDEN=1 cargo test -p vmbgp-bench --test golden` and the diff is reviewed.

use std::path::PathBuf;

use vmbgp_bench::cli::PlanArgs;
use vmbgp_bench::config::BUILTIN_PROFILES;
use vmbgp_bench::workload::{Templates, render_external_frr, render_plan, to_multidoc_yaml};

const GOLDEN_UUID: &str = "00000000-0000-4000-8000-000000000000";

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../workloads/golden")
}

fn plan_args(profile: &str) -> PlanArgs {
    PlanArgs {
        profile: profile.to_string(),
        uuid: Some(GOLDEN_UUID.to_string()),
        ..PlanArgs::default()
    }
}

fn check_golden(file: &str, actual: &str) {
    let path = golden_dir().join(file);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).expect("write golden");
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{} missing ({e}); run with UPDATE_GOLDEN=1", path.display()));
    if expected != actual {
        let line = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .map_or_else(|| "length".to_string(), |n| format!("line {}", n + 1));
        panic!(
            "{} differs from the rendering (first difference at {line}); review and regenerate with UPDATE_GOLDEN=1",
            path.display()
        );
    }
}

#[test]
fn every_profile_renders_as_its_golden_file() {
    let templates = Templates::builtin().expect("templates");
    for (name, _) in BUILTIN_PROFILES {
        let plan = vmbgp_bench::commands::plan_from_args(&plan_args(name)).expect("plan");
        let manifests = render_plan(&plan, &templates).expect("render");
        check_golden(
            &format!("{name}.yaml"),
            &to_multidoc_yaml(&plan, &manifests),
        );
    }
}

#[test]
fn external_router_config_matches_its_golden_files() {
    let templates = Templates::builtin().expect("templates");
    let plan = vmbgp_bench::commands::plan_from_args(&plan_args("vm-bgp")).expect("plan");
    check_golden(
        "external-frr.conf",
        &render_external_frr(&plan, &templates).expect("render"),
    );
    let explicit = PlanArgs {
        node_ips: Some(vec![
            "198.18.0.1".into(),
            "198.18.0.2".into(),
            "198.18.0.3".into(),
        ]),
        ..plan_args("vm-bgp")
    };
    let plan = vmbgp_bench::commands::plan_from_args(&explicit).expect("plan");
    check_golden(
        "external-frr-explicit-neighbors.conf",
        &render_external_frr(&plan, &templates).expect("render"),
    );
}

/// FRR's own parser (`vtysh --dryrun`) accepts the rendered external-router configuration.
/// Needs the Debian `frr` package (ci/test.sh installs it).
#[test]
fn external_router_config_is_valid_frr_syntax() {
    let vtysh = std::path::Path::new("/usr/bin/vtysh");
    assert!(
        vtysh.exists(),
        "/usr/bin/vtysh is missing: install FRR (apt-get install frr), as ci/test.sh does"
    );
    for file in ["external-frr.conf", "external-frr-explicit-neighbors.conf"] {
        let path = golden_dir().join(file);
        let output = std::process::Command::new(vtysh)
            .arg("--dryrun")
            .arg("-f")
            .arg(&path)
            .output()
            .expect("run vtysh");
        assert!(
            output.status.success(),
            "vtysh rejected {}: {}{}",
            path.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
