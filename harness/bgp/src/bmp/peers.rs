//! [`PeerBook`]: which BGP peers the monitored routers report up, kept from the station's events
//! per connection and per router, so that no connection can change what another one reported.
//!
//! Rules (BMP has no authentication; the station only filters by source address):
//! - A router's **authoritative** connection is its first open one; only its Peer Ups and Peer
//!   Downs change the router's peers. Any other open connection from the same router (reported by
//!   the station as [`super::BmpEventKind::DuplicateRouter`]) is a standby: what it reports is
//!   recorded, but changes nothing.
//! - When a standby closes, nothing changes. When the authoritative connection closes, the next
//!   oldest open connection of the router (if any) becomes authoritative and its recorded reports
//!   replace the peers' states ([`ChangeCause::Failover`]). Without one, the router's peers keep
//!   their last reported state, unobserved ([`PeerBook::observing`] is false), until a new
//!   connection reports: BMP going away is not the sessions going away, and a reconnecting router
//!   re-announces every peer (Peer Up if established, Peer Down if not — the latter is then a real
//!   change, even though it is the first message about that peer on the new connection).
//! - Peers a new authoritative connection never mentions keep their last state.
//! - A second Peer Up for a peer that connection last reported up is a new session: the old one
//!   ended unreported (FRR deletes `bgp listen range` peers without a Peer Down), so it is a
//!   down and an up at once ([`ChangeCause::Reestablished`]); how long it was down is unknown.
//! - Loc-RIB "peers" (RFC 9069) are not BGP sessions and are ignored.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use vmbgp_host::clock::MonoStamp;

use super::{BmpEvent, BmpEventKind, BmpMessage, PeerInfo, PeerType};

/// One BGP session as seen through BMP: the router reporting it, and the peer's address and
/// distinguisher from the per-peer header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerKey {
    pub router: IpAddr,
    pub address: IpAddr,
    pub distinguisher: u64,
}

/// Why a peer's state changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeCause {
    /// A Peer Up or Peer Down on the router's authoritative connection.
    Message,
    /// The authoritative connection `from` closed; the router's next open connection took over
    /// and this is what it had reported.
    Failover { from: u64 },
    /// A Peer Up for a session already up: the old session ended without a Peer Down. Comes as a
    /// down and an up with the same stamp; the outage's length was not observed.
    Reestablished,
}

/// A peer that went up or down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerChange {
    /// The stamp of the event that made the change (for a failover: the old connection's end).
    pub at: MonoStamp,
    pub peer: PeerKey,
    /// The peer's AS from the per-peer header that reported the new state.
    pub asn: u32,
    pub up: bool,
    /// The connection whose report this is.
    pub connection: u64,
    pub cause: ChangeCause,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Report {
    up: bool,
    asn: u32,
}

#[derive(Debug)]
struct Connection {
    router: IpAddr,
    /// The last Peer Up/Down of each peer on this connection.
    reported: BTreeMap<(IpAddr, u64), Report>,
}

#[derive(Debug, Default)]
struct Router {
    authoritative: Option<u64>,
    /// Peers up (with their AS), as last reported by an authoritative connection.
    up: BTreeMap<(IpAddr, u64), u32>,
}

/// Peer states from BMP events, per connection and per router. Feed it every station event in
/// order ([`PeerBook::on_event`]); use its answers instead of the raw Peer Up/Down messages.
#[derive(Debug, Default)]
pub struct PeerBook {
    /// Open connections.
    connections: BTreeMap<u64, Connection>,
    routers: BTreeMap<IpAddr, Router>,
}

impl PeerBook {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes one station event; returns the peers whose state changed because of it, in order.
    /// Call it before [`Self::is_authoritative`] for the same event (a connection is known from
    /// its first event on).
    pub fn on_event(&mut self, event: &BmpEvent) -> Vec<PeerChange> {
        let Some(router) = event.router else {
            return Vec::new(); // listener-level
        };
        let id = event.connection;
        if let BmpEventKind::Disconnected(_) = event.kind {
            return self.close(id, event.at);
        }
        self.register(id, router);
        let (peer, up): (&PeerInfo, bool) = match &event.kind {
            BmpEventKind::Message(BmpMessage::PeerUp(u)) => (&u.peer, true),
            BmpEventKind::Message(BmpMessage::PeerDown(d)) => (&d.peer, false),
            _ => return Vec::new(),
        };
        if peer.peer_type == PeerType::LocalRib {
            return Vec::new();
        }
        let key = (peer.address, peer.distinguisher);
        let report = Report { up, asn: peer.asn };
        let previous = self
            .connections
            .get_mut(&id)
            .and_then(|connection| connection.reported.insert(key, report));
        if !self.is_authoritative(id) {
            return Vec::new();
        }
        if up && previous.is_some_and(|p| p.up) {
            let down = Report {
                up: false,
                ..report
            };
            return [down, report]
                .into_iter()
                .filter_map(|r| {
                    self.apply(router, key, r, event.at, id, ChangeCause::Reestablished)
                })
                .collect();
        }
        self.apply(router, key, report, event.at, id, ChangeCause::Message)
            .into_iter()
            .collect()
    }

    /// Peers up, over all routers, as last reported by each router's authoritative connection
    /// (also while the router has none: see [`Self::observing`]).
    pub fn peers_up(&self) -> BTreeSet<PeerKey> {
        self.routers
            .iter()
            .flat_map(|(router, r)| {
                r.up.keys().map(|&(address, distinguisher)| PeerKey {
                    router: *router,
                    address,
                    distinguisher,
                })
            })
            .collect()
    }

    /// Whether `peer` is up, as last reported.
    pub fn is_up(&self, peer: &PeerKey) -> bool {
        self.routers
            .get(&peer.router)
            .is_some_and(|r| r.up.contains_key(&(peer.address, peer.distinguisher)))
    }

    /// The connection whose word counts for `router`, while it has one open.
    pub fn authoritative(&self, router: IpAddr) -> Option<u64> {
        self.routers.get(&router).and_then(|r| r.authoritative)
    }

    /// Whether `connection` is its router's authoritative connection: only then do its Route
    /// Monitoring messages describe the router's Adj-RIB-In.
    pub fn is_authoritative(&self, connection: u64) -> bool {
        self.connections
            .get(&connection)
            .is_some_and(|c| self.authoritative(c.router) == Some(connection))
    }

    /// Whether `router` has a connection open, i.e. its peers' states are being observed.
    pub fn observing(&self, router: IpAddr) -> bool {
        self.authoritative(router).is_some()
    }

    /// What an open connection has reported: each peer it mentioned with its last state (up or
    /// not). Empty for unknown or closed connections.
    pub fn reported(&self, connection: u64) -> Vec<(PeerKey, bool)> {
        self.connections
            .get(&connection)
            .map(|c| {
                c.reported
                    .iter()
                    .map(|(&(address, distinguisher), r)| {
                        let key = PeerKey {
                            router: c.router,
                            address,
                            distinguisher,
                        };
                        (key, r.up)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn register(&mut self, id: u64, router: IpAddr) {
        if self.connections.contains_key(&id) {
            return;
        }
        self.connections.insert(
            id,
            Connection {
                router,
                reported: BTreeMap::new(),
            },
        );
        self.routers
            .entry(router)
            .or_default()
            .authoritative
            .get_or_insert(id);
    }

    fn close(&mut self, id: u64, at: MonoStamp) -> Vec<PeerChange> {
        let Some(closed) = self.connections.remove(&id) else {
            return Vec::new();
        };
        let router = closed.router;
        if self.authoritative(router) != Some(id) {
            return Vec::new(); // a standby: it never changed anything
        }
        // Ids grow with accept order: the smallest open one is the oldest.
        let next = self
            .connections
            .iter()
            .find(|(_, c)| c.router == router)
            .map(|(&next, c)| (next, c.reported.clone()));
        if let Some(r) = self.routers.get_mut(&router) {
            r.authoritative = next.as_ref().map(|(next, _)| *next);
        }
        let Some((next, reported)) = next else {
            return Vec::new(); // unobserved: the last reported states stand
        };
        reported
            .into_iter()
            .filter_map(|(key, report)| {
                self.apply(
                    router,
                    key,
                    report,
                    at,
                    next,
                    ChangeCause::Failover { from: id },
                )
            })
            .collect()
    }

    fn apply(
        &mut self,
        router: IpAddr,
        key: (IpAddr, u64),
        report: Report,
        at: MonoStamp,
        connection: u64,
        cause: ChangeCause,
    ) -> Option<PeerChange> {
        let r = self.routers.entry(router).or_default();
        let changed = if report.up {
            r.up.insert(key, report.asn).is_none()
        } else {
            r.up.remove(&key).is_some()
        };
        changed.then_some(PeerChange {
            at,
            peer: PeerKey {
                router,
                address: key.0,
                distinguisher: key.1,
            },
            asn: report.asn,
            up: report.up,
            connection,
            cause,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddr};
    use std::time::Duration;

    use super::*;
    use crate::bmp::{DisconnectReason, PeerDown, PeerDownCause, PeerUp, Policy};

    const R: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    const R2: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 155));

    fn at(ms: u64) -> MonoStamp {
        MonoStamp::from_offset(Duration::from_millis(ms))
    }

    fn peer(n: u8) -> PeerInfo {
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

    fn key(router: IpAddr, n: u8) -> PeerKey {
        PeerKey {
            router,
            address: IpAddr::V4(Ipv4Addr::new(198, 18, 0, n)),
            distinguisher: 0,
        }
    }

    fn event(ms: u64, connection: u64, router: IpAddr, kind: BmpEventKind) -> BmpEvent {
        BmpEvent {
            at: at(ms),
            connection,
            router: Some(router),
            kind,
        }
    }

    fn connected(ms: u64, connection: u64, router: IpAddr) -> BmpEvent {
        let remote = SocketAddr::new(router, 40000);
        let kind = BmpEventKind::Connected {
            remote,
            local: remote,
        };
        event(ms, connection, router, kind)
    }

    fn up(ms: u64, connection: u64, router: IpAddr, n: u8) -> BmpEvent {
        let kind = BmpEventKind::Message(BmpMessage::PeerUp(PeerUp {
            peer: peer(n),
            local_address: None,
            local_port: None,
            remote_port: None,
            sent_open: None,
            received_open: None,
            warnings: Vec::new(),
        }));
        event(ms, connection, router, kind)
    }

    fn down(ms: u64, connection: u64, router: IpAddr, n: u8) -> BmpEvent {
        let kind = BmpEventKind::Message(BmpMessage::PeerDown(PeerDown {
            peer: peer(n),
            cause: PeerDownCause {
                code: 4,
                name: None,
                data: None,
            },
            without_peer_up: false,
            warnings: Vec::new(),
        }));
        event(ms, connection, router, kind)
    }

    fn closed(ms: u64, connection: u64, router: IpAddr) -> BmpEvent {
        let kind = BmpEventKind::Disconnected(DisconnectReason::Closed { trailing_bytes: 0 });
        event(ms, connection, router, kind)
    }

    /// (peer number, up) of each change.
    fn feed(book: &mut PeerBook, events: &[BmpEvent]) -> Vec<(u8, bool)> {
        events
            .iter()
            .flat_map(|e| book.on_event(e))
            .map(|c| match c.peer.address {
                IpAddr::V4(a) => (a.octets()[3], c.up),
                IpAddr::V6(_) => unreachable!("test peers are IPv4"),
            })
            .collect()
    }

    #[test]
    fn a_second_connection_of_a_router_changes_nothing_while_the_first_is_open() {
        let mut book = PeerBook::new();
        let changes = feed(
            &mut book,
            &[connected(0, 1, R), up(1, 1, R, 1), up(2, 1, R, 2)],
        );
        assert_eq!(changes, [(1, true), (2, true)]);
        // The impostor's flap of peer 1, and its end, change nothing.
        let changes = feed(
            &mut book,
            &[
                connected(10, 2, R),
                down(11, 2, R, 1),
                up(12, 2, R, 3),
                closed(13, 2, R),
            ],
        );
        assert_eq!(changes, []);
        assert_eq!(book.peers_up(), BTreeSet::from([key(R, 1), key(R, 2)]));
        assert!(book.is_authoritative(1) && !book.is_authoritative(2));
        // The real connection still reports.
        assert_eq!(feed(&mut book, &[down(20, 1, R, 2)]), [(2, false)]);
    }

    #[test]
    fn closing_the_authoritative_connection_keeps_the_last_states_unobserved() {
        let mut book = PeerBook::new();
        feed(&mut book, &[connected(0, 1, R), up(1, 1, R, 1)]);
        assert!(book.observing(R));
        assert_eq!(feed(&mut book, &[closed(5, 1, R)]), []);
        assert!(!book.observing(R));
        assert!(book.is_up(&key(R, 1)));
        // The router reconnects: a Peer Down at connect is a real change now, a Peer Up of a
        // peer already up is not.
        let changes = feed(
            &mut book,
            &[
                connected(10, 3, R),
                down(11, 3, R, 2),
                up(12, 3, R, 1),
                down(13, 3, R, 1),
            ],
        );
        assert_eq!(changes, [(1, false)]);
        assert_eq!(book.authoritative(R), Some(3));
    }

    #[test]
    fn the_next_open_connection_takes_over_with_what_it_reported() {
        let mut book = PeerBook::new();
        feed(
            &mut book,
            &[connected(0, 1, R), up(1, 1, R, 1), up(2, 1, R, 2)],
        );
        feed(
            &mut book,
            &[
                connected(3, 2, R),
                up(4, 2, R, 1),
                down(5, 2, R, 2),
                up(6, 2, R, 3),
            ],
        );
        assert_eq!(
            book.reported(2),
            [(key(R, 1), true), (key(R, 2), false), (key(R, 3), true)]
        );
        let changes: Vec<PeerChange> = book.on_event(&closed(10, 1, R));
        let summary: Vec<(IpAddr, bool, ChangeCause, u64)> = changes
            .iter()
            .map(|c| (c.peer.address, c.up, c.cause, c.connection))
            .collect();
        let failover = ChangeCause::Failover { from: 1 };
        assert_eq!(
            summary,
            [
                (key(R, 2).address, false, failover, 2),
                (key(R, 3).address, true, failover, 2)
            ]
        );
        assert!(changes.iter().all(|c| c.at == at(10)));
        assert_eq!(book.authoritative(R), Some(2));
        assert!(book.reported(1).is_empty());
    }

    #[test]
    fn a_second_peer_up_on_one_connection_is_a_new_session_a_down_and_an_up() {
        // FRR with `bgp listen range` deletes the old session without a Peer Down.
        let mut book = PeerBook::new();
        feed(
            &mut book,
            &[connected(0, 1, R), up(1, 1, R, 1), up(2, 1, R, 2)],
        );
        let changes = book.on_event(&up(7, 1, R, 1));
        let summary: Vec<(bool, ChangeCause, MonoStamp)> =
            changes.iter().map(|c| (c.up, c.cause, c.at)).collect();
        let cause = ChangeCause::Reestablished;
        assert_eq!(summary, [(false, cause, at(7)), (true, cause, at(7))]);
        assert_eq!(book.peers_up(), BTreeSet::from([key(R, 1), key(R, 2)]));
        // After a Peer Down, the next Peer Up is an ordinary one; a standby's repeat is nothing.
        assert_eq!(
            feed(&mut book, &[down(8, 1, R, 2), up(9, 1, R, 2)]),
            [(2, false), (2, true)]
        );
        let standby = feed(
            &mut book,
            &[connected(10, 2, R), up(11, 2, R, 1), up(12, 2, R, 1)],
        );
        assert_eq!(standby, []);
    }

    #[test]
    fn routers_are_kept_apart() {
        let mut book = PeerBook::new();
        let changes = feed(
            &mut book,
            &[
                connected(0, 1, R),
                connected(0, 2, R2),
                up(1, 1, R, 1),
                up(2, 2, R2, 1),
                closed(3, 2, R2),
            ],
        );
        assert_eq!(changes, [(1, true), (1, true)]);
        assert!(book.is_authoritative(1));
        assert!(book.observing(R) && !book.observing(R2));
        assert_eq!(book.peers_up(), BTreeSet::from([key(R, 1), key(R2, 1)]));
        assert_eq!(feed(&mut book, &[down(4, 1, R, 1)]), [(1, false)]);
        assert!(book.is_up(&key(R2, 1)));
    }

    #[test]
    fn listener_events_and_loc_rib_peers_change_nothing() {
        let mut book = PeerBook::new();
        let refused = BmpEvent {
            at: at(0),
            connection: 0,
            router: None,
            kind: BmpEventKind::Refused {
                remote: SocketAddr::new(R2, 1),
                local: SocketAddr::new(R, 5000),
                nth: 1,
            },
        };
        let mut loc_rib = up(1, 1, R, 1);
        if let BmpEventKind::Message(BmpMessage::PeerUp(u)) = &mut loc_rib.kind {
            u.peer.peer_type = PeerType::LocalRib;
        }
        assert_eq!(feed(&mut book, &[refused, loc_rib]), []);
        assert!(book.peers_up().is_empty());
    }
}
