//! Probes: the reachability probe rates, the throughput tests and which iterations run them.

use std::net::SocketAddr;
use std::time::Duration;

use super::checker::{Checker, key, pick};
use super::defaults;
use super::types::ProbePlan;
use crate::cli::PlanArgs;
use crate::config::profile::Profile;

pub(super) fn plan_probes(
    c: &mut Checker<'_>,
    profile: &Profile,
    cli: &PlanArgs,
    vm_iterations: Option<u32>,
    vm_count: Option<u32>,
) -> Option<ProbePlan> {
    let p = &profile.probes;
    let rate = |c: &mut Checker<'_>, value: Option<u32>, key: String, default: u32| {
        let v = value.unwrap_or(default);
        if v == 0 || v > 10_000 {
            c.problem(
                &c.profile_field(&key),
                v,
                "probe rate must be 1-10000 per second per VM",
            );
        }
        v
    };
    let converging_rate = rate(
        c,
        p.converging_rate,
        key!(probes.converging_rate),
        defaults::CONVERGING_RATE,
    );
    let steady_rate = rate(
        c,
        p.steady_rate,
        key!(probes.steady_rate),
        defaults::STEADY_RATE,
    );
    let migration_rate = rate(
        c,
        p.migration_rate,
        key!(probes.migration_rate),
        defaults::MIGRATION_RATE,
    );
    let duration_src = pick!(
        c,
        profile.probes.throughput_duration,
        defaults::THROUGHPUT_DURATION.to_string()
    );
    let throughput_duration = c.duration(&duration_src);
    let egress_src = pick!(
        c,
        cli.egress_endpoint,
        profile.probes.egress_endpoint,
        format!("{}:{}", defaults::PEER_IP, defaults::EGRESS_PORT)
    );
    let egress_endpoint = c.parse::<SocketAddr>(&egress_src, "HOST:PORT socket address");
    let throughput_vms = p.throughput_vms.unwrap_or(defaults::THROUGHPUT_VMS);
    if let Some(vm_count) = vm_count
        && throughput_vms > vm_count
    {
        c.problem(
            &c.profile_field(&key!(probes.throughput_vms)),
            throughput_vms,
            format!("cannot test more VMs per iteration than vmCount ({vm_count})"),
        );
    }
    let throughput_iterations = p
        .throughput_iterations
        .unwrap_or(defaults::THROUGHPUT_ITERATIONS);
    if let Some(d) = throughput_duration
        && !(MIN_THROUGHPUT_DURATION..=MAX_THROUGHPUT_DURATION).contains(&d)
    {
        c.problem(
            &c.profile_field(&key!(probes.throughput_duration)),
            humantime::format_duration(d),
            "a throughput test lasts 100ms to 10m",
        );
    }
    Some(ProbePlan {
        converging_rate,
        steady_rate,
        migration_rate,
        throughput_vms,
        throughput_iterations: if throughput_vms == 0 {
            Vec::new()
        } else {
            spread_iterations(throughput_iterations, vm_iterations.unwrap_or(0))
        },
        throughput_duration: throughput_duration?,
        egress_endpoint: egress_endpoint?,
    })
}

/// Bounds of `probes.throughputDuration`.
const MIN_THROUGHPUT_DURATION: Duration = Duration::from_millis(100);
const MAX_THROUGHPUT_DURATION: Duration = Duration::from_secs(600);

/// `count` iterations out of `iterations`, spread evenly and always ending with the last (the
/// largest scale); all of them when `count >= iterations`.
pub fn spread_iterations(count: u32, iterations: u32) -> Vec<u32> {
    if count == 0 || iterations == 0 {
        return Vec::new();
    }
    if count >= iterations {
        return (0..iterations).collect();
    }
    if count == 1 {
        return vec![iterations - 1];
    }
    let last = u64::from(iterations - 1);
    let steps = u64::from(count - 1);
    let mut picked: Vec<u32> = (0..u64::from(count))
        .map(|j| u32::try_from((j * last + steps / 2) / steps).unwrap_or(iterations - 1))
        .collect();
    picked.dedup();
    picked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throughput_iterations_spread_from_first_to_last() {
        assert_eq!(spread_iterations(3, 72), vec![0, 36, 71]);
        assert_eq!(spread_iterations(2, 72), vec![0, 71]);
        assert_eq!(spread_iterations(1, 72), vec![71]);
        assert_eq!(spread_iterations(5, 3), vec![0, 1, 2]);
        assert_eq!(spread_iterations(0, 3), Vec::<u32>::new());
        assert_eq!(spread_iterations(4, 5), vec![0, 1, 3, 4]);
    }
}
