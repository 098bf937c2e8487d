//! The BGP session poller: reads `show bgp summary json` through an [`FrrCli`] at a fixed
//! interval and emits stamped per-peer samples, plus the changes between consecutive samples
//! (state changes, and resets a poll missed: uptime going backwards or the established-connection
//! count growing while the state looks unchanged). The harness combines these with BMP Peer
//! Up/Down into flaps and uptime %; polling is the fallback view, so every sample carries both the
//! request and the answer instant and the achieved interval is whatever their spacing shows.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use vmbgp_host::clock::{MonoStamp, RunClock};

use crate::vty::{Daemon, FrrCli};

/// The command read by default.
pub const SUMMARY_COMMAND: &str = "show bgp summary json";

/// One peer as one summary showed it. Fields FRR did not report are `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSample {
    /// `Established`, `Active`, `Connect`, `Idle`, `OpenSent`, `OpenConfirm`, possibly with FRR's
    /// suffixes such as `Idle (Admin)`.
    pub state: String,
    pub remote_as: Option<u32>,
    /// How long the session has been in its current state (`peerUptimeMsec`).
    pub uptime: Option<Duration>,
    /// Prefixes accepted from the peer (`pfxRcd`), present while Established.
    pub prefixes_received: Option<u64>,
    pub prefixes_sent: Option<u64>,
    pub connections_established: Option<u64>,
    pub connections_dropped: Option<u64>,
    /// The address families the peer appeared under (`ipv4Unicast`, ...).
    pub address_families: Vec<String>,
}

impl PeerSample {
    /// Whether the session is up.
    pub fn is_established(&self) -> bool {
        self.state == "Established"
    }
}

/// One poll's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSample {
    /// When the command was sent.
    pub requested_at: MonoStamp,
    /// When its answer was complete; the state it shows held somewhere in between.
    pub answered_at: MonoStamp,
    /// Peers by name (an address, or an interface for unnumbered peers).
    pub peers: BTreeMap<String, PeerSample>,
}

/// What changed for one peer between two consecutive samples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionChangeKind {
    /// The state differs.
    StateChanged { from: String, to: String },
    /// Same state in both samples, but the session was re-established in between (uptime went
    /// backwards or `connectionsEstablished` grew): a flap shorter than the poll interval.
    Reset {
        from_uptime: Option<Duration>,
        to_uptime: Option<Duration>,
    },
    /// The peer was not in the previous sample.
    Appeared { state: String },
    /// The peer is no longer in the summary (deconfigured).
    Disappeared { last_state: String },
}

/// A change, bracketed by the two samples that show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionChange {
    pub peer: String,
    /// The answer instant of the sample before the change.
    pub not_before: MonoStamp,
    /// The answer instant of the sample that shows the change.
    pub seen_at: MonoStamp,
    pub kind: SessionChangeKind,
}

/// What the poller emits, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    Sample(SessionSample),
    Change(SessionChange),
    /// A poll failed (daemon restarting, timeout, unparsable output); the next one is tried.
    PollFailed {
        requested_at: MonoStamp,
        failed_at: MonoStamp,
        error: String,
    },
}

/// How to poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionPollerConfig {
    /// Spacing of polls (a poll that overruns delays the next; none are bunched up).
    pub interval: Duration,
    /// The summary command (default [`SUMMARY_COMMAND`]).
    pub command: String,
}

impl SessionPollerConfig {
    /// Polls `show bgp summary json` every `interval`.
    pub fn new(interval: Duration) -> Self {
        SessionPollerConfig {
            interval,
            command: SUMMARY_COMMAND.to_string(),
        }
    }
}

/// Parses `show bgp summary json` (one object per address family, each with `peers`) into peers.
/// A peer under several families is merged (first family's counters win). Output without any
/// `peers` object yields no peers (bgpd with no `router bgp` answers `{}`).
pub fn parse_summary(json: &serde_json::Value) -> BTreeMap<String, PeerSample> {
    let mut peers: BTreeMap<String, PeerSample> = BTreeMap::new();
    let Some(families) = json.as_object() else {
        return peers;
    };
    for (family, body) in families {
        let Some(family_peers) = body.get("peers").and_then(|p| p.as_object()) else {
            continue;
        };
        for (name, p) in family_peers {
            let u64_field = |k: &str| p.get(k).and_then(serde_json::Value::as_u64);
            let entry = peers.entry(name.clone()).or_insert_with(|| PeerSample {
                state: p
                    .get("state")
                    .and_then(|s| s.as_str())
                    .unwrap_or("")
                    .to_string(),
                remote_as: u64_field("remoteAs").and_then(|a| u32::try_from(a).ok()),
                uptime: u64_field("peerUptimeMsec").map(Duration::from_millis),
                prefixes_received: u64_field("pfxRcd"),
                prefixes_sent: u64_field("pfxSnt"),
                connections_established: u64_field("connectionsEstablished"),
                connections_dropped: u64_field("connectionsDropped"),
                address_families: Vec::new(),
            });
            entry.address_families.push(family.clone());
        }
    }
    peers
}

/// The changes from `previous` to `next`, in peer order.
pub fn diff(previous: &SessionSample, next: &SessionSample) -> Vec<SessionChange> {
    let change = |peer: &str, kind| SessionChange {
        peer: peer.to_string(),
        not_before: previous.answered_at,
        seen_at: next.answered_at,
        kind,
    };
    let mut changes = Vec::new();
    for (name, now) in &next.peers {
        match previous.peers.get(name) {
            None => changes.push(change(
                name,
                SessionChangeKind::Appeared {
                    state: now.state.clone(),
                },
            )),
            Some(before) if before.state != now.state => changes.push(change(
                name,
                SessionChangeKind::StateChanged {
                    from: before.state.clone(),
                    to: now.state.clone(),
                },
            )),
            Some(before) => {
                let elapsed = next.answered_at.since(previous.answered_at);
                // Uptime may only grow by the time between the samples (plus FRR's ms rounding).
                let uptime_went_back = match (before.uptime, now.uptime, elapsed) {
                    (Some(b), Some(n), Some(_)) => n + Duration::from_millis(5) < b,
                    _ => false,
                };
                let reconnected = matches!(
                    (before.connections_established, now.connections_established),
                    (Some(b), Some(n)) if n > b
                );
                if uptime_went_back || reconnected {
                    changes.push(change(
                        name,
                        SessionChangeKind::Reset {
                            from_uptime: before.uptime,
                            to_uptime: now.uptime,
                        },
                    ));
                }
            }
        }
    }
    for (name, before) in &previous.peers {
        if !next.peers.contains_key(name) {
            changes.push(change(
                name,
                SessionChangeKind::Disappeared {
                    last_state: before.state.clone(),
                },
            ));
        }
    }
    changes
}

/// A running poller. Dropping it stops it.
#[derive(Debug)]
pub struct SessionPoller {
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl SessionPoller {
    /// Starts polling at once, then every `config.interval`. Must be called within a tokio runtime.
    pub fn spawn(
        cli: Arc<dyn FrrCli>,
        clock: RunClock,
        config: SessionPollerConfig,
    ) -> (SessionPoller, mpsc::UnboundedReceiver<SessionEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(poll_loop(cli, clock, config, tx, stop_rx));
        (
            SessionPoller {
                stop,
                task: Some(task),
            },
            rx,
        )
    }

    /// Stops after the poll in flight (if any) and waits; the event channel closes afterwards.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for SessionPoller {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn poll_loop(
    cli: Arc<dyn FrrCli>,
    clock: RunClock,
    config: SessionPollerConfig,
    tx: mpsc::UnboundedSender<SessionEvent>,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(config.interval.max(Duration::from_millis(1)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut previous: Option<SessionSample> = None;
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => return,
            _ = ticker.tick() => {}
        }
        let requested_at = clock.now();
        let result = cli.json(Daemon::Bgpd, &config.command).await;
        let answered_at = clock.now();
        let sample = match result {
            Ok(json) => SessionSample {
                requested_at,
                answered_at,
                peers: parse_summary(&json),
            },
            Err(e) => {
                let event = SessionEvent::PollFailed {
                    requested_at,
                    failed_at: answered_at,
                    error: e.to_string(),
                };
                if tx.send(event).is_err() {
                    return;
                }
                continue;
            }
        };
        let changes = previous
            .as_ref()
            .map(|p| diff(p, &sample))
            .unwrap_or_default();
        if tx.send(SessionEvent::Sample(sample.clone())).is_err() {
            return;
        }
        for c in changes {
            if tx.send(SessionEvent::Change(c)).is_err() {
                return;
            }
        }
        previous = Some(sample);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample(at_ms: u64, peers: serde_json::Value) -> SessionSample {
        SessionSample {
            requested_at: MonoStamp::from_offset(Duration::from_millis(at_ms)),
            answered_at: MonoStamp::from_offset(Duration::from_millis(at_ms + 1)),
            peers: parse_summary(&json!({"ipv4Unicast": {"as": 64512, "peers": peers}})),
        }
    }

    #[test]
    fn parses_frr_summary_and_merges_families() {
        let v = json!({
            "ipv4Unicast": {"routerId": "198.18.0.155", "as": 64512, "peers": {
                "198.18.0.1": {"remoteAs": 64513, "state": "Established", "peerUptimeMsec": 5000,
                               "pfxRcd": 3, "pfxSnt": 0, "connectionsEstablished": 1,
                               "connectionsDropped": 0},
                "198.18.0.2": {"remoteAs": 64513, "state": "Active", "peerUptimeMsec": 0}
            }},
            "ipv6Unicast": {"peers": {"198.18.0.1": {"state": "Established", "pfxRcd": 9}}}
        });
        let peers = parse_summary(&v);
        let one = &peers["198.18.0.1"];
        assert!(one.is_established());
        assert_eq!(one.prefixes_received, Some(3));
        assert_eq!(one.uptime, Some(Duration::from_secs(5)));
        assert_eq!(one.address_families, ["ipv4Unicast", "ipv6Unicast"]);
        assert_eq!(peers["198.18.0.2"].prefixes_received, None);
        assert!(parse_summary(&json!({})).is_empty());
    }

    #[test]
    fn diff_reports_state_changes_missed_resets_and_membership() {
        let up = |uptime: u64, conns: u64| json!({"state": "Established", "peerUptimeMsec": uptime, "connectionsEstablished": conns});
        let a = sample(
            0,
            json!({"p1": up(10_000, 1), "p2": up(10_000, 1), "gone": up(1, 1)}),
        );
        let b = sample(
            100,
            json!({"p1": {"state": "Active"}, "p2": up(50, 2), "new": up(1, 1)}),
        );
        let kinds: Vec<(String, SessionChangeKind)> =
            diff(&a, &b).into_iter().map(|c| (c.peer, c.kind)).collect();
        assert_eq!(
            kinds,
            [
                (
                    "new".into(),
                    SessionChangeKind::Appeared {
                        state: "Established".into()
                    }
                ),
                (
                    "p1".into(),
                    SessionChangeKind::StateChanged {
                        from: "Established".into(),
                        to: "Active".into()
                    }
                ),
                (
                    "p2".into(),
                    SessionChangeKind::Reset {
                        from_uptime: Some(Duration::from_secs(10)),
                        to_uptime: Some(Duration::from_millis(50))
                    }
                ),
                (
                    "gone".into(),
                    SessionChangeKind::Disappeared {
                        last_state: "Established".into()
                    }
                ),
            ]
        );
        // A steady session is no change.
        let c = sample(200, json!({"p": up(10_000, 1)}));
        let d = sample(300, json!({"p": up(10_100, 1)}));
        assert!(diff(&c, &d).is_empty());
    }
}
