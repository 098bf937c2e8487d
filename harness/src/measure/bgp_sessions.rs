//! BGP session stability at the external router, from BMP Peer Up / Peer Down (stamped on
//! arrival): per peer, its state changes, flaps and the share of the observation window it was
//! Established, plus the prefixes it had announced when the window closed. The window opens when
//! the run has seen every expected session up and closes when cleanup starts — cleanup removes the
//! peering on purpose, which is not instability.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use vmbgp_bgp::bmp::{BmpEvent, BmpEventKind, BmpMessage};
use vmbgp_reporters::input::{BgpSessionSample, MeasurementKind, Samples, SessionStateChange};
use vmbgp_reporters::measured::Measured;

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
    /// When the window closed: prefixes then.
    prefixes_at_close: Option<u64>,
}

#[derive(Debug, Default)]
pub struct BgpSessions {
    peers: BTreeMap<IpAddr, Peer>,
    opened: Option<MonoStamp>,
    closed: Option<MonoStamp>,
    /// Why sessions are not observed, if they are not.
    off: Option<String>,
}

impl BgpSessions {
    /// `off`: why BMP is not observed in this run (then no samples are produced).
    pub fn new(off: Option<String>) -> Self {
        BgpSessions {
            off,
            ..Default::default()
        }
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
                peer.prefixes_at_close = Some(peer.prefixes.len() as u64);
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
        match &event.kind {
            BmpEventKind::Message(BmpMessage::PeerUp(up)) => {
                self.set_state(up.peer.address, Some(up.peer.asn), true, event.at);
            }
            BmpEventKind::Message(BmpMessage::PeerDown(down)) if !down.without_peer_up => {
                self.set_state(down.peer.address, Some(down.peer.asn), false, event.at);
            }
            BmpEventKind::Message(BmpMessage::RouteMonitoring(rm))
                if rm.peer.policy == vmbgp_bgp::bmp::Policy::PrePolicy =>
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
        if let Observation::Bmp(event) = observation {
            self.observe_bmp(event);
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
        let mut m = BgpSessions::new(None);
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
    fn without_a_window_there_is_no_sample() {
        let mut m = BgpSessions::new(None);
        m.observe(Observation::Bmp(&up(10, 1)));
        let mut out = Samples::default();
        m.collect(Batch::All, &mut out);
        assert!(out.bgp_sessions.is_empty());
    }
}
