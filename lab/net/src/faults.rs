//! Network fault injection on a schedule: restart a router's bgpd, take a router's uplink down and up,
//! drop ext's BMP session (FRR reconnects by itself). Times are relative to a start instant the caller
//! chooses (e.g. the run's start), so a plan in the lab config replays identically; each fault is also
//! recorded as ground truth.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::task::{JoinHandle, JoinSet};

use crate::error::{Error, Result};

/// Path of `ss` (iproute2).
pub const SS: &str = "ss";
use crate::frr::Supervisor;
use crate::names::{LabNames, Router};
use crate::net_ground_truth::{GroundTruthSink, NetEvent, record_now};
use crate::topology::set_uplink;

/// A schedule of network faults (the lab config's `faults.network`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultPlan {
    /// bgpd restarts: `{router: "node-2", afterMs: 5000}`.
    #[serde(default)]
    pub bgpd_restarts: Vec<BgpdRestart>,
    /// Uplink outages: `{router: "node-1", afterMs: 8000, downMs: 2000}`.
    #[serde(default)]
    pub link_flaps: Vec<LinkFlap>,
    /// ext's BMP sessions dropped: `{afterMs: 5000}`.
    #[serde(default)]
    pub bmp_drops: Vec<BmpDrop>,
}

impl FaultPlan {
    /// Whether the plan holds no fault.
    pub fn is_empty(&self) -> bool {
        self.bgpd_restarts.is_empty() && self.link_flaps.is_empty() && self.bmp_drops.is_empty()
    }
}

/// Restart one router's bgpd.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BgpdRestart {
    pub router: String,
    pub after_ms: u64,
}

/// Take one router's uplink down for a while.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LinkFlap {
    pub router: String,
    pub after_ms: u64,
    pub down_ms: u64,
}

/// Drop ext's BMP session(s): abort bgpd's established TCP connection to each BMP target (as a
/// middlebox reset would); bgpd notices the error and reconnects after its `min-retry`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BmpDrop {
    pub after_ms: u64,
}

/// How long a dropped BMP session may take to be re-established before the fault reports it.
pub const BMP_REESTABLISH_TIMEOUT: Duration = Duration::from_secs(10);

/// The BMP targets (`bmp connect ADDR port PORT`) in a bgpd configuration, in order.
pub fn bmp_targets(bgpd_config: &str) -> Vec<(IpAddr, u16)> {
    bgpd_config
        .lines()
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["bmp", "connect", addr, "port", port, ..] => {
                    Some((addr.parse().ok()?, port.parse().ok()?))
                }
                _ => None,
            }
        })
        .collect()
}

/// What happened to one scheduled fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FaultResult {
    pub fault: String,
    /// Milliseconds after the start instant at which it was carried out.
    pub at_ms: u64,
    /// `ok` or the error.
    pub outcome: String,
}

/// Carries out faults on one lab.
#[derive(Debug, Clone)]
pub struct FaultInjector {
    pub(crate) names: LabNames,
    pub(crate) nodes: u16,
    pub(crate) supervisor: Supervisor,
    pub(crate) truth: std::sync::Arc<dyn GroundTruthSink>,
    /// ext's BMP targets, from its startup configuration.
    pub(crate) bmp_targets: Vec<(IpAddr, u16)>,
}

/// A router of a lab with `nodes` nodes, by name (`ext`, `node-<n>`).
fn router_of(name: &str, nodes: u16) -> Result<Router> {
    match Router::parse(name) {
        Some(Router::Node(n)) if n > nodes => None,
        other => other,
    }
    .ok_or_else(|| Error::Unknown {
        what: "router",
        name: name.to_string(),
    })
}

/// Checks a plan against a lab's shape before anything is brought up: every router named exists
/// among `nodes` nodes (or is `ext`), and BMP drops have a target (`bmp_targets`, from ext's
/// configuration; see [`bmp_targets`]).
pub fn check_plan(plan: &FaultPlan, nodes: u16, bmp_targets: &[(IpAddr, u16)]) -> Result<()> {
    for r in &plan.bgpd_restarts {
        router_of(&r.router, nodes)?;
    }
    for f in &plan.link_flaps {
        router_of(&f.router, nodes)?;
    }
    if !plan.bmp_drops.is_empty() && bmp_targets.is_empty() {
        return Err(Error::Unknown {
            what: "BMP target (ext's configuration has no `bmp connect` line) for a BMP drop",
            name: "ext".into(),
        });
    }
    Ok(())
}

impl FaultInjector {
    fn router(&self, name: &str) -> Result<Router> {
        router_of(name, self.nodes)
    }

    /// Checks that every router named in the plan exists, and that a BMP drop has a target.
    pub fn validate(&self, plan: &FaultPlan) -> Result<()> {
        check_plan(plan, self.nodes, &self.bmp_targets)
    }

    /// ext's established BMP connections (bgpd's side: destination a BMP target), by `ss` in ext's netns.
    async fn bmp_connections(&self, kill: bool) -> Result<usize> {
        let netns = self.names.router_netns(Router::Ext);
        let mut found = 0;
        for (addr, port) in &self.bmp_targets {
            let mut args = vec!["-N".to_string(), netns.clone()];
            if kill {
                args.push("-K".into());
            }
            args.extend(
                ["-t", "-n", "-H", "state", "established", "dst"]
                    .map(String::from)
                    .into_iter()
                    .chain([
                        addr.to_string(),
                        "dport".into(),
                        "=".into(),
                        format!(":{port}"),
                    ]),
            );
            let out = crate::cmd::output(SS, &args).await?;
            found += out.lines().filter(|l| !l.trim().is_empty()).count();
        }
        Ok(found)
    }

    /// Drops ext's BMP session now: aborts bgpd's established connections to its BMP targets (`ss -K`
    /// in ext's netns: bgpd sees ECONNABORTED, the station a reset), then waits until bgpd has
    /// connected again. Records both as ground truth; fails when there was no session to drop or it
    /// was not re-established within [`BMP_REESTABLISH_TIMEOUT`].
    pub async fn drop_bmp(&self) -> Result<()> {
        if self.bmp_targets.is_empty() {
            return Err(Error::Unknown {
                what: "BMP target (ext's configuration has no `bmp connect` line)",
                name: "ext".into(),
            });
        }
        let dropped = self.bmp_connections(true).await?;
        let targets: Vec<String> = self
            .bmp_targets
            .iter()
            .map(|(a, p)| format!("{a}:{p}"))
            .collect();
        record_now(
            self.truth.as_ref(),
            NetEvent::BmpSessionDropped {
                router: Router::Ext.name(),
                targets: targets.clone(),
                connections: dropped,
            },
        );
        if dropped == 0 {
            return Err(Error::Command {
                command: format!("ss -K (ext's BMP connections to {})", targets.join(", ")),
                detail: "no established BMP connection to drop".into(),
            });
        }
        let dropped_at = Instant::now();
        loop {
            // Only connections made after the drop are left: the aborted ones are gone at once.
            if self.bmp_connections(false).await? > 0 {
                record_now(
                    self.truth.as_ref(),
                    NetEvent::BmpSessionReestablished {
                        router: Router::Ext.name(),
                        after_ms: elapsed_ms(dropped_at),
                    },
                );
                return Ok(());
            }
            if dropped_at.elapsed() >= BMP_REESTABLISH_TIMEOUT {
                return Err(Error::Timeout {
                    what: "ext's BMP session to be re-established".into(),
                    after_ms: dropped_at.elapsed().as_millis(),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Restarts a router's bgpd now.
    pub async fn restart_bgpd(&self, router: Router) -> Result<()> {
        self.supervisor.restart_bgpd(router).await?;
        record_now(
            self.truth.as_ref(),
            NetEvent::RouterRestarted {
                router: router.name(),
                daemon: "bgpd".into(),
            },
        );
        Ok(())
    }

    /// Sets a router's uplink down or up now.
    pub async fn set_link(&self, router: Router, up: bool) -> Result<()> {
        set_uplink(&self.names, router, up).await?;
        record_now(
            self.truth.as_ref(),
            NetEvent::LinkChanged {
                router: router.name(),
                up,
            },
        );
        Ok(())
    }

    /// Runs the plan relative to `start` in the background; the task returns every fault's outcome.
    pub fn schedule(
        &self,
        plan: FaultPlan,
        start: Instant,
    ) -> Result<JoinHandle<Vec<FaultResult>>> {
        self.validate(&plan)?;
        // Owned by the returned task: aborting it aborts every fault not yet carried out.
        let mut tasks: JoinSet<Vec<FaultResult>> = JoinSet::new();
        for r in plan.bgpd_restarts {
            let me = self.clone();
            tasks.spawn(async move {
                sleep_until(start, r.after_ms).await;
                let at_ms = elapsed_ms(start);
                let outcome = match me.router(&r.router) {
                    Ok(router) => me.restart_bgpd(router).await,
                    Err(e) => Err(e),
                };
                vec![result(format!("restart bgpd {}", r.router), at_ms, outcome)]
            });
        }
        for f in plan.link_flaps {
            let me = self.clone();
            tasks.spawn(async move {
                let mut out = Vec::new();
                let Ok(router) = me.router(&f.router) else {
                    return out;
                };
                sleep_until(start, f.after_ms).await;
                let at_ms = elapsed_ms(start);
                out.push(result(
                    format!("link {} down", f.router),
                    at_ms,
                    me.set_link(router, false).await,
                ));
                sleep_until(start, f.after_ms + f.down_ms).await;
                let at_ms = elapsed_ms(start);
                out.push(result(
                    format!("link {} up", f.router),
                    at_ms,
                    me.set_link(router, true).await,
                ));
                out
            });
        }
        for d in plan.bmp_drops {
            let me = self.clone();
            tasks.spawn(async move {
                sleep_until(start, d.after_ms).await;
                let at_ms = elapsed_ms(start);
                vec![result(
                    "drop ext's BMP session".to_string(),
                    at_ms,
                    me.drop_bmp().await,
                )]
            });
        }
        Ok(tokio::spawn(async move {
            let mut all = Vec::new();
            while let Some(done) = tasks.join_next().await {
                if let Ok(r) = done {
                    all.extend(r);
                }
            }
            all.sort_by_key(|r| r.at_ms);
            all
        }))
    }
}

pub(crate) async fn sleep_until(start: Instant, after_ms: u64) {
    let at = start + Duration::from_millis(after_ms);
    tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
}

pub(crate) fn elapsed_ms(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The outcome of one fault, also logged (a lab's user sees what was done to it, and when).
pub(crate) fn result(fault: String, at_ms: u64, outcome: Result<()>) -> FaultResult {
    let outcome = match outcome {
        Ok(()) => {
            tracing::info!("lab fault at {at_ms} ms: {fault}: done");
            "ok".to_string()
        }
        Err(e) => {
            tracing::warn!("lab fault at {at_ms} ms: {fault}: failed: {e}");
            e.to_string()
        }
    };
    FaultResult {
        fault,
        at_ms,
        outcome,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_parses_from_config_json() {
        let plan: FaultPlan = serde_json::from_value(serde_json::json!({
            "bgpdRestarts": [{"router": "node-2", "afterMs": 5000}],
            "linkFlaps": [{"router": "node-1", "afterMs": 8000, "downMs": 2000}]
        }))
        .expect("plan");
        assert_eq!(plan.bgpd_restarts[0].router, "node-2");
        assert_eq!(plan.link_flaps[0].down_ms, 2000);
        assert!(serde_json::from_value::<FaultPlan>(serde_json::json!({"bogus": 1})).is_err());
        let drops: FaultPlan =
            serde_json::from_value(serde_json::json!({"bmpDrops": [{"afterMs": 700}]}))
                .expect("plan");
        assert_eq!(drops.bmp_drops, vec![BmpDrop { after_ms: 700 }]);
        assert!(!drops.is_empty() && FaultPlan::default().is_empty());
    }

    #[test]
    fn bmp_targets_come_from_bmp_connect_lines() {
        let config = "router bgp 64512\n bmp targets h\n  bmp connect 127.0.0.1 port 5000 min-retry 100 max-retry 1000\n  bmp connect ::1 port 5001\n  bmp monitor ipv4 unicast pre-policy\n";
        assert_eq!(
            bmp_targets(config),
            vec![
                ("127.0.0.1".parse().expect("ip"), 5000),
                ("::1".parse().expect("ip"), 5001)
            ]
        );
        assert!(bmp_targets("bmp connect nowhere port x\n").is_empty());
    }
}
