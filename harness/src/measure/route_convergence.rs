//! Route convergence seen from the external router (RFC 4098 terms): per advertised network, from
//! the RouteAdvertisements create request (t0) to the prefix's first BMP Route Monitoring message
//! (Adj-RIB-In, stamped on arrival), to the route in the router's kernel FIB (netlink, route
//! usable), to the FIB route carrying every expected next hop (one per node: OVN-K advertises a
//! Layer2 subnet from every node); and from the RouteAdvertisements delete request to the last
//! peer's BMP withdrawal and to the FIB route's removal.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net};
use vmbgp_bgp::bmp::{BmpEvent, BmpEventKind, BmpMessage, PeerBook, Policy};
use vmbgp_bgp::fib::{FibEvent, RouteChangeKind};
use vmbgp_reporters::measured::{Measured, Timing};
use vmbgp_reporters::samples::{
    MeasurementKind, RouteConvergenceSample, RouteScope, Samples, StartInstant,
};

use super::{Batch, Measurement, Observation};
use crate::clock::MonoStamp;
use crate::config::NetworkSpec;
use crate::kube::ROUTE_ADVERTISEMENTS;
use crate::kube::apply::Verb;

/// Arrival stamps are read right after the socket read; the clock resolves nanoseconds, and a
/// microsecond is an honest bound for the stamp itself.
pub(super) const STAMP_RESOLUTION: Duration = Duration::from_micros(1);

/// Why a subnet route's communities and local-pref are not reported.
const SUBNET_POLICY_NOT_CHECKED: &str =
    "the policy check (community, local-pref) covers the per-VM /32 host routes";

#[derive(Debug, Default)]
struct Trigger {
    sent: Option<MonoStamp>,
    uncertainty: Duration,
    error: Option<String>,
}

#[derive(Debug)]
struct NetworkTrack {
    name: String,
    prefix: Ipv4Net,
    iteration: u32,
    advertise: Trigger,
    withdraw: Trigger,
    /// First announcement after t0, in either Adj-RIB-In view.
    adj_rib_in: Option<MonoStamp>,
    /// (peer, view) pairs currently holding the prefix; withdrawn when none is left.
    announcing: BTreeSet<(IpAddr, Policy)>,
    withdrawn_adj_rib_in: Option<MonoStamp>,
    fib: Option<MonoStamp>,
    all_next_hops: Option<MonoStamp>,
    most_next_hops: u64,
    fib_removed: Option<MonoStamp>,
    /// The prefix was already in the FIB when observation began (a left-over of another run).
    present_at_start: bool,
}

/// Which sources this run observes; a source that is off makes its values missing with a reason.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// Why BMP is not observed, if it is not.
    pub bmp_off: Option<String>,
    /// Why the FIB is not observed, if it is not.
    pub fib_off: Option<String>,
    /// Whether deleting the networks is part of the run (`--gc`); withdrawal is measured then.
    pub withdraw_measured: bool,
}

#[derive(Debug)]
pub struct RouteConvergence {
    networks: BTreeMap<String, NetworkTrack>,
    expected_next_hops: u64,
    sources: Sources,
    /// The BMP session from the external router was seen.
    bmp_connected: bool,
    fib_overrun: bool,
    /// Peers the external router reports up (BMP Peer Up without a later Peer Down).
    /// Which BGP sessions the external router reports up, per router and authoritative connection:
    /// a stray or second connection, or one closing, changes only what it reported.
    book: PeerBook,
    /// The external router's FRR version, from the BMP Initiation message.
    frr_version: Option<String>,
    /// BMP messages decoded, per second of the run (arrival), for the run's load report.
    bmp_messages_per_second: BTreeMap<u64, u64>,
}

impl RouteConvergence {
    pub fn new(networks: &[NetworkSpec], expected_next_hops: u64, sources: Sources) -> Self {
        let networks = networks
            .iter()
            .map(|n| {
                let track = NetworkTrack {
                    name: n.name.clone(),
                    prefix: n.subnet,
                    iteration: n.iteration,
                    advertise: Trigger::default(),
                    withdraw: Trigger::default(),
                    adj_rib_in: None,
                    announcing: BTreeSet::new(),
                    withdrawn_adj_rib_in: None,
                    fib: None,
                    all_next_hops: None,
                    most_next_hops: 0,
                    fib_removed: None,
                    present_at_start: false,
                };
                (n.name.clone(), track)
            })
            .collect();
        RouteConvergence {
            networks,
            expected_next_hops,
            sources,
            bmp_connected: false,
            fib_overrun: false,
            book: PeerBook::new(),
            frr_version: None,
            bmp_messages_per_second: BTreeMap::new(),
        }
    }

    /// BMP messages decoded in the run, and the most in any one second of it.
    pub fn bmp_messages(&self) -> (u64, u64) {
        let total = self.bmp_messages_per_second.values().sum();
        let peak = self
            .bmp_messages_per_second
            .values()
            .copied()
            .max()
            .unwrap_or(0);
        (total, peak)
    }

    /// The external router's FRR version, when its BMP Initiation message said.
    pub fn frr_version(&self) -> Option<&str> {
        self.frr_version.as_deref()
    }

    /// How many BGP peers the external router reports up, through BMP.
    pub fn peers_up(&self) -> usize {
        self.book
            .peers_up()
            .iter()
            .map(|p| p.address)
            .collect::<BTreeSet<_>>()
            .len()
    }

    /// Whether BMP is observed at all in this run.
    pub fn observes_bmp(&self) -> bool {
        self.sources.bmp_off.is_none()
    }

    /// Whether the network's advertisement has been observed as far as this run can observe it:
    /// every expected next hop in the FIB (or, without a FIB watcher, in BMP).
    pub fn advertised(&self, network: &str) -> bool {
        let Some(track) = self.networks.get(network) else {
            return true;
        };
        match (&self.sources.fib_off, &self.sources.bmp_off) {
            (None, _) => track.all_next_hops.is_some(),
            (Some(_), None) => {
                let peers: BTreeSet<IpAddr> = track.announcing.iter().map(|(p, _)| *p).collect();
                peers.len() as u64 >= self.expected_next_hops
            }
            (Some(_), Some(_)) => true,
        }
    }

    fn track_for(&mut self, prefix: IpNet) -> Option<&mut NetworkTrack> {
        let IpNet::V4(prefix) = prefix else {
            return None;
        };
        self.networks.values_mut().find(|t| t.prefix == prefix)
    }

    fn observe_bmp(&mut self, event: &BmpEvent) {
        if let BmpEventKind::Message(_) = event.kind {
            *self
                .bmp_messages_per_second
                .entry(event.at.since_anchor().as_secs())
                .or_default() += 1;
        }
        for change in self.book.on_event(event) {
            if change.up {
                continue;
            }
            // A peer going down takes its routes out of the Adj-RIB-In with it.
            let peer = change.peer.address;
            tracing::debug!(at = ?change.at, %peer, cause = ?change.cause, "BMP peer down");
            for track in self.networks.values_mut() {
                track.announcing.retain(|(p, _)| *p != peer);
                if track.announcing.is_empty()
                    && track.withdraw.sent.is_some_and(|t0| change.at >= t0)
                {
                    track.withdrawn_adj_rib_in.get_or_insert(change.at);
                }
            }
        }
        // Only the router's authoritative connection speaks for its Adj-RIB-In.
        let authoritative = self.book.is_authoritative(event.connection);
        match &event.kind {
            BmpEventKind::Connected { .. } => self.bmp_connected = true,
            BmpEventKind::Message(BmpMessage::Initiation(init)) if authoritative => {
                if let Some(version) = init.frr_version.clone().or_else(|| init.sys_descr.clone()) {
                    self.frr_version = Some(version);
                }
            }
            BmpEventKind::Disconnected(reason) => {
                tracing::debug!(connection = event.connection, ?reason, "BMP session closed");
            }
            // Pre-policy is the Adj-RIB-In as received; post-policy follows it. Either view counts,
            // so a router that monitors only one of them is measured too.
            BmpEventKind::Message(BmpMessage::RouteMonitoring(rm))
                if authoritative && rm.peer.policy != Policy::LocRib =>
            {
                let key = (rm.peer.address, rm.peer.policy);
                for route in &rm.announced {
                    if let Some(track) = self.track_for(route.prefix) {
                        tracing::debug!(at = ?event.at, peer = %key.0, policy = ?key.1, prefix = %route.prefix, "BMP announce");
                        track.announcing.insert(key);
                        if track.advertise.sent.is_some_and(|t0| event.at >= t0) {
                            track.adj_rib_in.get_or_insert(event.at);
                        }
                    }
                }
                for prefix in &rm.withdrawn {
                    if let Some(track) = self.track_for(*prefix) {
                        tracing::debug!(at = ?event.at, peer = %key.0, policy = ?key.1, prefix = %prefix, left = track.announcing.len(), "BMP withdraw");
                        track.announcing.remove(&key);
                        if track.announcing.is_empty()
                            && track.withdraw.sent.is_some_and(|t0| event.at >= t0)
                        {
                            track.withdrawn_adj_rib_in.get_or_insert(event.at);
                        }
                    }
                }
            }
            _ => {}
        }
    }

    fn observe_fib(&mut self, event: &FibEvent) {
        let expected = self.expected_next_hops;
        match event {
            FibEvent::Route(change) => {
                let Some(track) = self.track_for(IpNet::V4(change.prefix)) else {
                    return;
                };
                match change.kind {
                    RouteChangeKind::Present => track.present_at_start = true,
                    RouteChangeKind::Added | RouteChangeKind::Replaced => {
                        if track.advertise.sent.is_some_and(|t0| change.at >= t0)
                            && track.withdraw.sent.is_none()
                        {
                            track.fib.get_or_insert(change.at);
                            let hops = change.next_hops.len() as u64;
                            track.most_next_hops = track.most_next_hops.max(hops);
                            if hops >= expected {
                                track.all_next_hops.get_or_insert(change.at);
                            }
                        }
                    }
                    RouteChangeKind::Removed => {
                        if track.withdraw.sent.is_some_and(|t0| change.at >= t0) {
                            track.fib_removed.get_or_insert(change.at);
                        }
                    }
                }
            }
            FibEvent::Overrun { .. } => self.fib_overrun = true,
            _ => {}
        }
    }

    fn latency(
        &self,
        trigger: &Trigger,
        at: Option<MonoStamp>,
        source_off: &Option<String>,
        what: &str,
    ) -> Measured<Timing> {
        if let Some(error) = &trigger.error {
            return Measured::missing(format!("the request that triggers it failed: {error}"));
        }
        let Some(t0) = trigger.sent else {
            return Measured::missing(
                "the triggering request was never sent (the run ended first)",
            );
        };
        if let Some(reason) = source_off {
            return Measured::missing(reason.clone());
        }
        match at.and_then(|at| at.since(t0)) {
            Some(latency) => Measured::Observed(Timing::new(
                latency,
                trigger.uncertainty.max(STAMP_RESOLUTION),
            )),
            None if what == "bmp" && !self.bmp_connected => Measured::missing(
                "the external router never opened a BMP session to the harness (check `bmp connect`)",
            ),
            None if self.fib_overrun && what == "fib" => Measured::missing(
                "not observed; the kernel dropped route notifications (netlink overrun)",
            ),
            None => Measured::missing("not observed before the run's wait ended"),
        }
    }

    fn sample(&self, track: &NetworkTrack) -> RouteConvergenceSample {
        let withdraw_off = (!self.sources.withdraw_measured)
            .then(|| "the network was not deleted by this run (--gc=false)".to_string());
        let not_deleted = |m: Measured<Timing>| match (&withdraw_off, track.withdraw.sent) {
            (Some(reason), None) => Measured::not_applicable(reason.clone()),
            _ => m,
        };
        let mut all_next_hops = self.latency(
            &track.advertise,
            track.all_next_hops,
            &self.sources.fib_off,
            "fib",
        );
        if track.all_next_hops.is_none() && track.fib.is_some() {
            all_next_hops = Measured::missing(format!(
                "the FIB route never carried all {} expected next hops (at most {})",
                self.expected_next_hops, track.most_next_hops
            ));
        }
        RouteConvergenceSample {
            network: track.name.clone(),
            prefix: track.prefix.to_string(),
            scope: RouteScope::Network,
            job_iteration: u64::from(track.iteration),
            t0: StartInstant {
                offset: track
                    .advertise
                    .sent
                    .map(MonoStamp::since_anchor)
                    .unwrap_or_default(),
                uncertainty: track.advertise.uncertainty,
            },
            advertise_adj_rib_in: self.latency(
                &track.advertise,
                track.adj_rib_in,
                &self.sources.bmp_off,
                "bmp",
            ),
            advertise_fib: self.latency(&track.advertise, track.fib, &self.sources.fib_off, "fib"),
            advertise_all_next_hops: all_next_hops,
            expected_next_hops: self.expected_next_hops,
            observed_next_hops: match (&self.sources.fib_off, track.fib) {
                (Some(reason), _) => Measured::missing(reason.clone()),
                (None, Some(_)) => Measured::Observed(track.most_next_hops),
                (None, None) => Measured::missing("the route never reached the FIB"),
            },
            withdraw_adj_rib_in: not_deleted(self.latency(
                &track.withdraw,
                track.withdrawn_adj_rib_in,
                &self.sources.bmp_off,
                "bmp",
            )),
            withdraw_fib: not_deleted(self.latency(
                &track.withdraw,
                track.fib_removed,
                &self.sources.fib_off,
                "fib",
            )),
            // A Layer2 subnet route is meant to outlive its VMs (it is withdrawn with its
            // RouteAdvertisements, not when a VM goes): "stale" applies to per-VM /32 routes.
            stale_route_window: Measured::not_applicable(
                "the subnet route stays advertised while VMs come and go by design; the stale-route \
                 window applies to per-VM /32 host routes",
            ),
            communities: Measured::not_applicable(SUBNET_POLICY_NOT_CHECKED),
            local_pref: Measured::not_applicable(SUBNET_POLICY_NOT_CHECKED),
        }
    }
}

impl Measurement for RouteConvergence {
    fn kind(&self) -> MeasurementKind {
        MeasurementKind::RouteConvergence
    }

    fn observe(&mut self, observation: Observation<'_>) {
        match observation {
            Observation::Request(request) if request.resource == ROUTE_ADVERTISEMENTS => {
                if let Some(track) = self.networks.get_mut(&request.name) {
                    let trigger = match request.verb {
                        Verb::Create => &mut track.advertise,
                        Verb::Delete => &mut track.withdraw,
                    };
                    if trigger.sent.is_none() {
                        trigger.sent = Some(request.sent);
                        trigger.uncertainty = request.uncertainty();
                        trigger.error = request.error.clone();
                    }
                }
            }
            Observation::Bmp(event) => self.observe_bmp(event),
            Observation::Fib(event) => self.observe_fib(event),
            _ => {}
        }
    }

    fn outstanding(&self) -> Vec<String> {
        self.networks
            .values()
            .filter(|t| t.withdraw.sent.is_some() && t.withdraw.error.is_none())
            .filter_map(|t| {
                let bmp_pending = self.sources.bmp_off.is_none()
                    && !t.announcing.is_empty()
                    && t.withdrawn_adj_rib_in.is_none();
                let fib_pending =
                    self.sources.fib_off.is_none() && t.fib.is_some() && t.fib_removed.is_none();
                let awaited: Vec<&str> = [
                    (bmp_pending, "Adj-RIB-In withdrawal"),
                    (fib_pending, "FIB removal"),
                ]
                .into_iter()
                .filter_map(|(pending, what)| pending.then_some(what))
                .collect();
                (!awaited.is_empty())
                    .then(|| format!("{} ({}): {}", t.prefix, t.name, awaited.join(", ")))
            })
            .collect()
    }

    fn collect(&mut self, batch: Batch, out: &mut Samples) {
        // Withdrawal happens at cleanup, so a network's sample is final only at the end.
        if batch != Batch::All {
            return;
        }
        let tracks = std::mem::take(&mut self.networks);
        for track in tracks.values() {
            if track.advertise.sent.is_some() || track.advertise.error.is_some() {
                out.route_convergence.push(self.sample(track));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::apply::Request;
    use std::net::Ipv4Addr;
    use vmbgp_bgp::bmp::{AnnouncedRoute, PeerInfo, RouteMonitoring};
    use vmbgp_bgp::fib::RouteChange;

    fn ms(n: u64) -> MonoStamp {
        MonoStamp::from_offset(Duration::from_millis(n))
    }

    fn network() -> NetworkSpec {
        NetworkSpec {
            name: "vmbgp-0".into(),
            namespace: "vmbgp-0".into(),
            iteration: 0,
            subnet: "198.19.0.0/24".parse().expect("net"),
            gateway: Ipv4Addr::new(198, 19, 0, 1),
            reserved_subnets: Vec::new(),
        }
    }

    fn ra_request(sent: u64) -> Request {
        Request {
            // The tests create at t < 1000 ms and delete from 1000 ms on.
            verb: if sent < 1000 {
                Verb::Create
            } else {
                Verb::Delete
            },
            resource: ROUTE_ADVERTISEMENTS,
            namespace: None,
            name: "vmbgp-0".into(),
            sent: ms(sent),
            answered: ms(sent + 2),
            error: None,
            error_code: None,
            retries: 0,
        }
    }

    fn peer(n: u8) -> PeerInfo {
        PeerInfo {
            address: IpAddr::V4(Ipv4Addr::new(198, 18, 0, n)),
            asn: 64513,
            bgp_id: Ipv4Addr::new(198, 18, 0, n),
            peer_type: vmbgp_bgp::bmp::PeerType::Global,
            distinguisher: 0,
            adj_rib_out: false,
            policy: Policy::PostPolicy,
            router_stamp: None,
        }
    }

    fn rm(at: u64, n: u8, announce: bool) -> BmpEvent {
        let prefix: IpNet = "198.19.0.0/24".parse().expect("net");
        BmpEvent {
            router: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            at: ms(at),
            connection: 1,
            kind: BmpEventKind::Message(BmpMessage::RouteMonitoring(RouteMonitoring {
                peer: peer(n),
                announced: if announce {
                    vec![AnnouncedRoute {
                        prefix,
                        next_hop: Some(IpAddr::V4(Ipv4Addr::new(198, 18, 0, n))),
                        as_path: Some("64513".into()),
                        communities: Vec::new(),
                        local_pref: None,
                        med: None,
                        origin: None,
                    }]
                } else {
                    Vec::new()
                },
                withdrawn: if announce { Vec::new() } else { vec![prefix] },
                end_of_rib: false,
            })),
        }
    }

    fn fib(at: u64, kind: RouteChangeKind, hops: u8) -> FibEvent {
        FibEvent::Route(RouteChange {
            at: ms(at),
            prefix: "198.19.0.0/24".parse().expect("net"),
            kind,
            next_hops: (1..=hops).map(|n| Ipv4Addr::new(198, 18, 0, n)).collect(),
            interfaces: Vec::new(),
            nexthop_id: None,
            protocol: "bgp".into(),
            table: 254,
            metric: Some(20),
            route_type: "unicast".into(),
        })
    }

    fn sources() -> Sources {
        Sources {
            bmp_off: None,
            fib_off: None,
            withdraw_measured: true,
        }
    }

    #[test]
    fn advertise_and_withdraw_latencies_run_from_the_ra_requests() {
        let mut m = RouteConvergence::new(&[network()], 3, sources());
        m.observe(Observation::Bmp(&BmpEvent {
            router: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            at: ms(1),
            connection: 1,
            kind: BmpEventKind::Connected {
                remote: "127.0.0.1:1".parse().expect("addr"),
                local: "127.0.0.1:5000".parse().expect("addr"),
            },
        }));
        m.observe(Observation::Request(&ra_request(100)));
        m.observe(Observation::Bmp(&rm(160, 1, true)));
        m.observe(Observation::Bmp(&rm(161, 2, true)));
        m.observe(Observation::Fib(&fib(215, RouteChangeKind::Added, 1)));
        m.observe(Observation::Fib(&fib(230, RouteChangeKind::Replaced, 3)));
        m.observe(Observation::Request(&ra_request(1000)));
        m.observe(Observation::Bmp(&rm(1050, 1, false)));
        m.observe(Observation::Bmp(&rm(1052, 2, false)));
        m.observe(Observation::Fib(&fib(1110, RouteChangeKind::Removed, 0)));
        // Four Route Monitoring messages, two in each second (the session event is no message).
        assert_eq!(m.bmp_messages(), (4, 2));
        let mut out = Samples::default();
        m.collect(Batch::Iteration(0), &mut out);
        assert!(out.route_convergence.is_empty(), "final only at the end");
        m.collect(Batch::All, &mut out);
        let s = &out.route_convergence[0];
        let ms_of = |m: &Measured<Timing>| m.observed().map(|t| t.millis());
        assert_eq!(ms_of(&s.advertise_adj_rib_in), Some(60.0));
        assert_eq!(ms_of(&s.advertise_fib), Some(115.0));
        assert_eq!(ms_of(&s.advertise_all_next_hops), Some(130.0));
        assert_eq!(s.observed_next_hops, Measured::Observed(3));
        // Withdrawn from Adj-RIB-In when the last peer withdrew.
        assert_eq!(ms_of(&s.withdraw_adj_rib_in), Some(52.0));
        assert_eq!(ms_of(&s.withdraw_fib), Some(110.0));
        assert_eq!(s.t0.uncertainty, Duration::from_millis(2));
        assert!(matches!(
            s.stale_route_window,
            Measured::NotApplicable { .. }
        ));
    }

    #[test]
    fn outstanding_withdrawals_name_the_prefix_and_what_is_awaited() {
        let mut m = RouteConvergence::new(&[network()], 2, sources());
        m.observe(Observation::Bmp(&BmpEvent {
            router: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            at: ms(1),
            connection: 1,
            kind: BmpEventKind::Connected {
                remote: "127.0.0.1:1".parse().expect("addr"),
                local: "127.0.0.1:5000".parse().expect("addr"),
            },
        }));
        m.observe(Observation::Request(&ra_request(100)));
        m.observe(Observation::Bmp(&rm(160, 1, true)));
        m.observe(Observation::Fib(&fib(215, RouteChangeKind::Added, 1)));
        assert!(m.outstanding().is_empty(), "nothing deleted yet");
        m.observe(Observation::Request(&ra_request(1000)));
        assert_eq!(
            m.outstanding(),
            ["198.19.0.0/24 (vmbgp-0): Adj-RIB-In withdrawal, FIB removal"]
        );
        m.observe(Observation::Bmp(&rm(1050, 1, false)));
        assert_eq!(m.outstanding(), ["198.19.0.0/24 (vmbgp-0): FIB removal"]);
        m.observe(Observation::Fib(&fib(1110, RouteChangeKind::Removed, 0)));
        assert!(m.outstanding().is_empty());
    }

    #[test]
    fn missing_next_hops_and_missing_bmp_are_reported_with_reasons() {
        let mut m = RouteConvergence::new(&[network()], 3, sources());
        m.observe(Observation::Request(&ra_request(100)));
        m.observe(Observation::Fib(&fib(215, RouteChangeKind::Added, 2)));
        let mut out = Samples::default();
        m.collect(Batch::All, &mut out);
        let s = &out.route_convergence[0];
        match &s.advertise_all_next_hops {
            Measured::Missing { reason } => assert!(
                reason.contains("all 3") && reason.contains("at most 2"),
                "{reason}"
            ),
            other => panic!("{other:?}"),
        }
        match &s.advertise_adj_rib_in {
            Measured::Missing { reason } => assert!(reason.contains("BMP session"), "{reason}"),
            other => panic!("{other:?}"),
        }
        match &s.withdraw_fib {
            Measured::Missing { reason } => assert!(reason.contains("never sent"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn without_gc_withdrawal_is_not_applicable() {
        let mut m = RouteConvergence::new(
            &[network()],
            3,
            Sources {
                withdraw_measured: false,
                ..sources()
            },
        );
        m.observe(Observation::Request(&ra_request(100)));
        let mut out = Samples::default();
        m.collect(Batch::All, &mut out);
        assert!(matches!(
            out.route_convergence[0].withdraw_fib,
            Measured::NotApplicable { .. }
        ));
    }

    #[test]
    fn a_route_left_from_before_t0_is_not_taken_as_convergence() {
        let mut m = RouteConvergence::new(&[network()], 1, sources());
        m.observe(Observation::Fib(&fib(5, RouteChangeKind::Present, 1)));
        m.observe(Observation::Fib(&fib(50, RouteChangeKind::Replaced, 1)));
        m.observe(Observation::Request(&ra_request(100)));
        let mut out = Samples::default();
        m.collect(Batch::All, &mut out);
        assert!(!out.route_convergence[0].advertise_fib.is_observed());
    }
}
