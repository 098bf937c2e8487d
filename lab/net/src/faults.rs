//! Network fault injection on a schedule: restart a router's bgpd, take a router's uplink down and up.
//! Times are relative to a start instant the caller chooses (e.g. the run's start), so a plan in the lab
//! config replays identically; each fault is also recorded as ground truth.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::frr::Supervisor;
use crate::names::{LabNames, Router};
use crate::topology::set_uplink;
use crate::truth::{GroundTruthSink, NetEvent, record_now};

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
}

impl FaultInjector {
    fn router(&self, name: &str) -> Result<Router> {
        match Router::parse(name) {
            Some(Router::Node(n)) if n > self.nodes => None,
            other => other,
        }
        .ok_or_else(|| Error::Unknown {
            what: "router",
            name: name.to_string(),
        })
    }

    /// Checks that every router named in the plan exists.
    pub fn validate(&self, plan: &FaultPlan) -> Result<()> {
        for r in &plan.bgpd_restarts {
            self.router(&r.router)?;
        }
        for f in &plan.link_flaps {
            self.router(&f.router)?;
        }
        Ok(())
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
        let mut tasks: Vec<JoinHandle<Vec<FaultResult>>> = Vec::new();
        for r in plan.bgpd_restarts {
            let me = self.clone();
            tasks.push(tokio::spawn(async move {
                sleep_until(start, r.after_ms).await;
                let at_ms = elapsed_ms(start);
                let outcome = match me.router(&r.router) {
                    Ok(router) => me.restart_bgpd(router).await,
                    Err(e) => Err(e),
                };
                vec![result(format!("restart bgpd {}", r.router), at_ms, outcome)]
            }));
        }
        for f in plan.link_flaps {
            let me = self.clone();
            tasks.push(tokio::spawn(async move {
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
            }));
        }
        Ok(tokio::spawn(async move {
            let mut all = Vec::new();
            for t in tasks {
                if let Ok(r) = t.await {
                    all.extend(r);
                }
            }
            all.sort_by_key(|r| r.at_ms);
            all
        }))
    }
}

async fn sleep_until(start: Instant, after_ms: u64) {
    let at = start + Duration::from_millis(after_ms);
    tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
}

fn elapsed_ms(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

fn result(fault: String, at_ms: u64, outcome: Result<()>) -> FaultResult {
    FaultResult {
        fault,
        at_ms,
        outcome: match outcome {
            Ok(()) => "ok".to_string(),
            Err(e) => e.to_string(),
        },
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
    }
}
