//! BGP session stability at the external router, from BMP Peer Up / Peer Down (stamped on
//! arrival): per peer, its state changes, flaps and the share of the observation window it was
//! Established, plus the prefixes it had announced when the window closed. The window opens when
//! the run has seen every expected session up and closes when cleanup starts — cleanup removes the
//! peering on purpose, which is not instability.
//!
//! With `--session-source poll` the same figures come from polling `show bgp summary json` on the
//! external router instead (routers without BMP): state changes are stamped when the poll that
//! shows them answered (so their resolution is the poll interval), a reset between two polls counts
//! as a flap, and prefixes received are bgpd's `pfxRcd`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use vmbgp_bgp::bmp::{BmpEvent, BmpEventKind, BmpMessage, ChangeCause};
use vmbgp_bgp::session::{SessionChangeKind, SessionEvent};
use vmbgp_reporters::measured::Measured;
use vmbgp_reporters::samples::{BgpSessionSample, MeasurementKind, Samples, SessionStateChange};

use super::{Batch, Measurement, Observation};
use crate::clock::MonoStamp;

const ESTABLISHED: &str = "Established";
/// BMP reports only up and down; a peer that is not up is reported as Idle.
const DOWN: &str = "Idle";

#[derive(Debug, Default)]
struct Peer {
    asn: Option<u32>,
    up: bool,
    /// State at the window's opening (or when first seen inside it).
    initial_up: Option<bool>,
    /// Changes inside the window: (instant, now up?).
    changes: Vec<(MonoStamp, bool)>,
    /// Prefixes currently announced (pre-policy Adj-RIB-In).
    prefixes: BTreeSet<IpNet>,
    /// Prefixes accepted (`pfxRcd`) in the latest poll.
    polled_prefixes: Option<u64>,
    /// When the window closed: prefixes then.
    prefixes_at_close: Option<u64>,
    /// Sessions replaced inside the window without a reported end (BMP Peer Up while up): each
    /// is a flap whose outage was not observed, so the uptime is unknown.
    unreported_ends: Vec<MonoStamp>,
}

/// Where session states come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SessionSource {
    /// BMP Peer Up / Peer Down, stamped on arrival.
    #[default]
    Bmp,
    /// Periodic `show bgp summary json`.
    Poll,
}

#[derive(Debug, Default)]
pub struct BgpSessions {
    peers: BTreeMap<IpAddr, Peer>,
    opened: Option<MonoStamp>,
    closed: Option<MonoStamp>,
    /// Why sessions are not observed, if they are not.
    off: Option<String>,
    source: SessionSource,
    /// BMP session state per router and authoritative connection.
    book: vmbgp_bgp::bmp::PeerBook,
}

impl BgpSessions {
    /// `off`: why the source is not observed in this run (then no samples are produced).
    pub fn new(source: SessionSource, off: Option<String>) -> Self {
        BgpSessions {
            off,
            source,
            ..Default::default()
        }
    }

    /// Where session states come from.
    pub fn source(&self) -> SessionSource {
        self.source
    }

    /// Whether sessions are observed at all.
    pub fn observed(&self) -> bool {
        self.off.is_none()
    }

    /// Peers currently Established.
    pub fn established(&self) -> usize {
        self.peers.values().filter(|p| p.up).count()
    }

    /// Opens the observation window (every expected session is up).
    pub fn open(&mut self, at: MonoStamp) {
        self.opened.get_or_insert(at);
        for peer in self.peers.values_mut() {
            peer.initial_up.get_or_insert(peer.up);
        }
    }

    /// Closes the window (cleanup is about to remove the peering).
    pub fn close(&mut self, at: MonoStamp) {
        if self.opened.is_some() && self.closed.is_none() {
            self.closed = Some(at);
            for peer in self.peers.values_mut() {
                peer.prefixes_at_close = match self.source {
                    SessionSource::Bmp => Some(peer.prefixes.len() as u64),
                    SessionSource::Poll => peer.polled_prefixes,
                };
            }
        }
    }

    fn in_window(&self) -> bool {
        self.opened.is_some() && self.closed.is_none()
    }

    fn set_state(&mut self, address: IpAddr, asn: Option<u32>, up: bool, at: MonoStamp) {
        let in_window = self.in_window();
        let peer = self.peers.entry(address).or_default();
        if asn.is_some() {
            peer.asn = asn;
        }
        if in_window {
            // A peer first seen inside the window starts from "not up".
            let before = *peer.initial_up.get_or_insert(peer.up);
            let last = peer.changes.last().map_or(before, |(_, state)| *state);
            if last != up {
                peer.changes.push((at, up));
            }
        }
        peer.up = up;
        if !up {
            peer.prefixes.clear();
        }
    }

    fn observe_bmp(&mut self, event: &BmpEvent) {
        // Session changes as the router's authoritative connection reports them; a stray or second
        // connection, or one closing, changes nothing.
        for change in self.book.on_event(event) {
            if change.cause == ChangeCause::Reestablished && !change.up && self.in_window() {
                let peer = self.peers.entry(change.peer.address).or_default();
                peer.unreported_ends.push(change.at);
            }
            self.set_state(change.peer.address, Some(change.asn), change.up, change.at);
        }
        match &event.kind {
            BmpEventKind::Message(BmpMessage::RouteMonitoring(rm))
                if rm.peer.policy == vmbgp_bgp::bmp::Policy::PrePolicy
                    && self.book.is_authoritative(event.connection) =>
            {
                let peer = self.peers.entry(rm.peer.address).or_default();
                for route in &rm.announced {
                    peer.prefixes.insert(route.prefix);
                }
                for prefix in &rm.withdrawn {
                    peer.prefixes.remove(prefix);
                }
            }
            _ => {}
        }
    }

    fn observe_poll(&mut self, event: &SessionEvent) {
        match event {
            SessionEvent::Sample(sample) => {
                for (name, polled) in &sample.peers {
                    let Ok(address) = name.parse::<IpAddr>() else {
                        continue; // an unnumbered (interface) peer: not one of the nodes
                    };
                    if !self.peers.contains_key(&address) {
                        // First seen: its state now (changes are taken from the poller's diff).
                        self.set_state(
                            address,
                            polled.remote_as,
                            polled.is_established(),
                            sample.answered_at,
                        );
                    }
                    if let Some(peer) = self.peers.get_mut(&address) {
                        peer.polled_prefixes = polled.prefixes_received;
                    }
                }
            }
            SessionEvent::Change(change) => {
                let Ok(address) = change.peer.parse::<IpAddr>() else {
                    return;
                };
                if !self.peers.contains_key(&address) {
                    return; // its first sample sets the state
                }
                match &change.kind {
                    SessionChangeKind::StateChanged { to, .. } => {
                        self.set_state(address, None, to == ESTABLISHED, change.seen_at);
                    }
                    SessionChangeKind::Reset { .. } => {
                        // Re-established between two polls: down and up again, both seen now.
                        self.set_state(address, None, false, change.seen_at);
                        self.set_state(address, None, true, change.seen_at);
                    }
                    SessionChangeKind::Appeared { state } => {
                        self.set_state(address, None, state == ESTABLISHED, change.seen_at);
                    }
                    SessionChangeKind::Disappeared { .. } => {
                        self.set_state(address, None, false, change.seen_at);
                    }
                }
            }
            SessionEvent::PollFailed { .. } => {}
        }
    }

    fn sample(
        &self,
        address: &IpAddr,
        peer: &Peer,
        opened: MonoStamp,
        closed: MonoStamp,
    ) -> BgpSessionSample {
        let state = |up: bool| if up { ESTABLISHED } else { DOWN }.to_string();
        let initial = peer.initial_up.unwrap_or(false);
        let mut established = Duration::ZERO;
        let mut since = opened;
        let mut up = initial;
        let mut changes = Vec::new();
        for (at, now_up) in &peer.changes {
            if up {
                established += at.since(since).unwrap_or_default();
            }
            changes.push(SessionStateChange {
                offset: at.since_anchor(),
                from: state(up),
                to: state(*now_up),
            });
            up = *now_up;
            since = *at;
        }
        if up {
            established += closed.since(since).unwrap_or_default();
        }
        let window = closed.since(opened).unwrap_or_default();
        BgpSessionSample {
            peer_address: address.to_string(),
            peer_as: peer.asn,
            initial_state: state(initial),
            state_changes: changes,
            observed_from: opened.since_anchor(),
            observed_until: closed.since_anchor(),
            uptime_percent: if window.is_zero() {
                Measured::missing("the observation window was empty")
            } else if let Some(first) = peer.unreported_ends.first() {
                Measured::missing(format!(
                    "the session was replaced by a new one at +{:.3} s without a Peer Down (FRR \
                     sends none for `bgp listen range` peers): how long it was down is unknown",
                    first.since_anchor().as_secs_f64()
                ))
            } else {
                // Integer nanoseconds, so a session up for the whole window is exactly 100 %.
                let percent =
                    (established.as_nanos().min(window.as_nanos()) * 100_000) / window.as_nanos();
                Measured::Observed(percent as f64 / 1000.0)
            },
            prefixes_received: match peer.prefixes_at_close {
                Some(count) => Measured::Observed(count),
                None => Measured::missing("the observation window never closed"),
            },
        }
    }
}

impl Measurement for BgpSessions {
    fn kind(&self) -> MeasurementKind {
        MeasurementKind::BgpSession
    }

    fn observe(&mut self, observation: Observation<'_>) {
        match (self.source, observation) {
            (SessionSource::Bmp, Observation::Bmp(event)) => self.observe_bmp(event),
            (SessionSource::Poll, Observation::Session(event)) => self.observe_poll(event),
            _ => {}
        }
    }

    fn collect(&mut self, batch: Batch, out: &mut Samples) {
        // One sample per peer for the whole run, at the end.
        if batch != Batch::All || self.off.is_some() {
            return;
        }
        let (Some(opened), Some(closed)) = (self.opened, self.closed) else {
            return;
        };
        for (address, peer) in &self.peers {
            out.bgp_sessions
                .push(self.sample(address, peer, opened, closed));
        }
        self.peers.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use vmbgp_bgp::bmp::{PeerDown, PeerDownCause, PeerInfo, PeerType, PeerUp, Policy};

    fn ms(n: u64) -> MonoStamp {
        MonoStamp::from_offset(Duration::from_millis(n))
    }

    fn info(n: u8) -> PeerInfo {
        PeerInfo {
            address: IpAddr::V4(Ipv4Addr::new(198, 18, 0, n)),
            asn: 64513,
            bgp_id: Ipv4Addr::new(198, 18, 0, n),
            peer_type: PeerType::Global,
            distinguisher: 0,
            adj_rib_out: false,
            policy: Policy::PrePolicy,
            router_stamp: None,
        }
    }

    fn up(at: u64, n: u8) -> BmpEvent {
        BmpEvent {
            router: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            at: ms(at),
            connection: 1,
            kind: BmpEventKind::Message(BmpMessage::PeerUp(PeerUp {
                peer: info(n),
                local_address: None,
                local_port: None,
                remote_port: None,
                sent_open: None,
                received_open: None,
                warnings: Vec::new(),
            })),
        }
    }

    fn down(at: u64, n: u8) -> BmpEvent {
        BmpEvent {
            router: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            at: ms(at),
            connection: 1,
            kind: BmpEventKind::Message(BmpMessage::PeerDown(PeerDown {
                peer: info(n),
                cause: PeerDownCause {
                    code: 3,
                    name: None,
                    data: None,
                },
                without_peer_up: false,
                warnings: Vec::new(),
            })),
        }
    }

    #[test]
    fn uptime_and_flaps_count_only_inside_the_window() {
        let mut m = BgpSessions::new(SessionSource::Bmp, None);
        m.observe(Observation::Bmp(&up(10, 1)));
        m.observe(Observation::Bmp(&up(20, 2)));
        m.open(ms(1000));
        // Peer 2 is down for 100 ms of a 2,000 ms window.
        m.observe(Observation::Bmp(&down(1500, 2)));
        m.observe(Observation::Bmp(&up(1600, 2)));
        m.close(ms(3000));
        // Cleanup tearing sessions down after the window is not a flap.
        m.observe(Observation::Bmp(&down(3100, 1)));
        let mut out = Samples::default();
        m.collect(Batch::All, &mut out);
        let by_peer = |n: u8| {
            out.bgp_sessions
                .iter()
                .find(|s| s.peer_address == format!("198.18.0.{n}"))
                .expect("peer sample")
        };
        assert_eq!(by_peer(1).uptime_percent, Measured::Observed(100.0));
        assert_eq!(by_peer(1).flaps(), 0);
        assert_eq!(by_peer(2).uptime_percent, Measured::Observed(95.0));
        assert_eq!(by_peer(2).flaps(), 1);
        assert_eq!(by_peer(2).initial_state, "Established");
    }

    #[test]
    fn a_session_replaced_without_a_peer_down_is_a_flap_of_unknown_length() {
        let mut m = BgpSessions::new(SessionSource::Bmp, None);
        m.observe(Observation::Bmp(&up(10, 1)));
        m.observe(Observation::Bmp(&up(20, 2)));
        m.open(ms(1000));
        // Peer 1's bgpd restarted: FRR (listen range) sends its new session's Peer Up only.
        m.observe(Observation::Bmp(&up(1500, 1)));
        m.close(ms(3000));
        let mut out = Samples::default();
        m.collect(Batch::All, &mut out);
        let replaced = out
            .bgp_sessions
            .iter()
            .find(|s| s.peer_address == "198.18.0.1")
            .expect("peer sample");
        assert_eq!(replaced.flaps(), 1);
        match &replaced.uptime_percent {
            Measured::Missing { reason } => {
                assert!(reason.contains("without a Peer Down"), "{reason}");
            }
            other => panic!("uptime must be missing, not {other:?}"),
        }
        let other = out
            .bgp_sessions
            .iter()
            .find(|s| s.peer_address == "198.18.0.2")
            .expect("peer sample");
        assert_eq!(other.uptime_percent, Measured::Observed(100.0));
    }

    #[test]
    fn without_a_window_there_is_no_sample() {
        let mut m = BgpSessions::new(SessionSource::Bmp, None);
        m.observe(Observation::Bmp(&up(10, 1)));
        let mut out = Samples::default();
        m.collect(Batch::All, &mut out);
        assert!(out.bgp_sessions.is_empty());
    }

    fn polled(at: u64, peers: serde_json::Value) -> SessionEvent {
        SessionEvent::Sample(vmbgp_bgp::session::SessionSample {
            requested_at: ms(at - 1),
            answered_at: ms(at),
            peers: vmbgp_bgp::session::parse_summary(
                &serde_json::json!({"ipv4Unicast": {"peers": peers}}),
            ),
        })
    }

    fn change(at: u64, n: u8, kind: SessionChangeKind) -> SessionEvent {
        SessionEvent::Change(vmbgp_bgp::session::SessionChange {
            peer: format!("198.18.0.{n}"),
            not_before: ms(at - 1000),
            seen_at: ms(at),
            kind,
        })
    }

    #[test]
    fn polled_summaries_give_uptime_flaps_and_accepted_prefixes() {
        let mut m = BgpSessions::new(SessionSource::Poll, None);
        // BMP is ignored when sessions come from polls.
        m.observe(Observation::Bmp(&down(5, 1)));
        let both_up = serde_json::json!({
            "198.18.0.1": {"remoteAs": 64513, "state": "Established", "pfxRcd": 2},
            "198.18.0.2": {"remoteAs": 64513, "state": "Established", "pfxRcd": 2},
            "eth9": {"state": "Established"}
        });
        m.observe(Observation::Session(&polled(10, both_up)));
        assert_eq!(m.established(), 2);
        m.open(ms(1000));
        m.observe(Observation::Session(&change(
            1500,
            2,
            SessionChangeKind::StateChanged {
                from: "Established".into(),
                to: "Active".into(),
            },
        )));
        m.observe(Observation::Session(&change(
            1700,
            2,
            SessionChangeKind::StateChanged {
                from: "Active".into(),
                to: "Established".into(),
            },
        )));
        // A reset between two polls: a flap of unknown (sub-interval) length.
        m.observe(Observation::Session(&change(
            2000,
            1,
            SessionChangeKind::Reset {
                from_uptime: Some(Duration::from_secs(9)),
                to_uptime: Some(Duration::from_millis(300)),
            },
        )));
        m.observe(Observation::Session(&polled(
            2500,
            serde_json::json!({
                "198.18.0.1": {"state": "Established", "pfxRcd": 3},
                "198.18.0.2": {"state": "Established", "pfxRcd": 3}
            }),
        )));
        m.close(ms(3000));
        let mut out = Samples::default();
        m.collect(Batch::All, &mut out);
        assert_eq!(
            out.bgp_sessions.len(),
            2,
            "the unnumbered peer is not a node"
        );
        let p1 = &out.bgp_sessions[0];
        let p2 = &out.bgp_sessions[1];
        assert_eq!(p1.flaps(), 1);
        assert_eq!(p1.uptime_percent, Measured::Observed(100.0));
        assert_eq!(p1.prefixes_received, Measured::Observed(3));
        assert_eq!(p1.peer_as, Some(64513));
        assert_eq!(p2.flaps(), 1);
        assert_eq!(p2.uptime_percent, Measured::Observed(90.0));
    }
}
