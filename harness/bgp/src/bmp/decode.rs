//! Turns one whole BMP message (as [`super::framer::Framer`] yields it) into a typed
//! [`BmpMessage`], using bgpkit-parser for every byte of BMP and BGP, and never panicking.
//! Because bgpkit is lenient, every message first passes the structural checks of
//! `bmp::check` (per-peer header zero-fill, a Peer Up's exact layout with both OPENs
//! consistent with its per-peer header, a Peer Down's reason and data): corrupt bytes must not
//! pass as a session change. A message failing them or bgpkit becomes [`BmpMessage::Malformed`]
//! with its raw bytes, except the quirks that still carry what the harness needs, reported with a
//! warning: a well-formed Peer Up whose OPENs are FRR 8.4's 19-byte dummies (frr-lab.md §4.4), a
//! Peer Down with an unassigned reason code.

use std::net::{IpAddr, Ipv4Addr};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use bgpkit_parser::Elementor;
use bgpkit_parser::models::{BgpMessage, BgpOpenMessage, ElemType};
use bgpkit_parser::parser::bmp::error::ParserBmpError;
use bgpkit_parser::parser::bmp::messages::{
    BmpMessageBody, BmpMsgType, BmpPeerType, BmpPerPeerHeader, InitiationTlvType, PeerDownReason,
    PerPeerFlags, StatsData, TerminationTlvValue, parse_bmp_common_header, parse_per_peer_header,
};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use ipnet::IpNet;
use vmbgp_host::clock::{ExternalSource, ExternalStamp};

use super::check::{self, Checked, Open, PeerUpLayout};
use super::framer::COMMON_HEADER_LEN;

/// The kind of peer a per-peer header describes (RFC 7854 §4.2, RFC 9069).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerType {
    Global,
    RouteDistinguisher,
    Local,
    LocalRib,
}

/// Which Adj-RIB-In view a Route Monitoring message reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Policy {
    /// Before inbound policy (RFC 7854 L flag clear).
    PrePolicy,
    /// After inbound policy (L flag set). FRR 8.4 encodes even these as if re-advertised: local AS
    /// prepended, no LOCAL_PREF (frr-lab.md §4.4) — read local-pref through the vty instead.
    PostPolicy,
    /// Loc-RIB (RFC 9069 peer type 3).
    LocRib,
}

/// The per-peer header: who a message is about.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerInfo {
    pub address: IpAddr,
    pub asn: u32,
    pub bgp_id: Ipv4Addr,
    pub peer_type: PeerType,
    pub distinguisher: u64,
    /// RFC 8671 O flag (Adj-RIB-Out); FRR 8.4 monitors Adj-RIB-In only.
    pub adj_rib_out: bool,
    pub policy: Policy,
    /// The router's own timestamp for the message. FRR's has 1 s resolution and can be up to 1 s
    /// before the event (frr-lab.md §4.3): kept for cross-checking only, never for durations.
    /// `None` when the router sent zero (no timestamp).
    pub router_stamp: Option<ExternalStamp>,
}

/// One announced prefix with the attributes the harness reads.
#[derive(Debug, Clone, PartialEq)]
pub struct AnnouncedRoute {
    pub prefix: IpNet,
    pub next_hop: Option<IpAddr>,
    /// AS path as bgpkit renders it (`64512 64513`; sets in braces).
    pub as_path: Option<String>,
    /// Communities as `ASN:value` (and bgpkit's rendering of extended / large ones).
    pub communities: Vec<String>,
    pub local_pref: Option<u32>,
    pub med: Option<u32>,
    pub origin: Option<String>,
}

/// BMP Initiation: who is sending.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Initiation {
    /// sysDescr, e.g. `FRRouting 8.4.4`.
    pub sys_descr: Option<String>,
    /// sysName, e.g. `ext`.
    pub sys_name: Option<String>,
    /// The FRR version when sysDescr is `FRRouting <version>`.
    pub frr_version: Option<String>,
    /// Free-form string TLVs.
    pub strings: Vec<String>,
}

/// The fields of an OPEN message the harness reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenSummary {
    pub asn: u32,
    pub bgp_id: Ipv4Addr,
    pub hold_time: u16,
}

/// BMP Peer Up.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerUp {
    pub peer: PeerInfo,
    /// Local end of the BGP session; `None` when the body could not be decoded (see `warnings`).
    pub local_address: Option<IpAddr>,
    pub local_port: Option<u16>,
    pub remote_port: Option<u16>,
    pub sent_open: Option<OpenSummary>,
    pub received_open: Option<OpenSummary>,
    /// Why fields are missing, e.g. FRR's 19-byte dummy OPENs.
    pub warnings: Vec<String>,
}

/// BMP Peer Down reason (RFC 7854 §4.9, RFC 9069 reason 6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerDownCause {
    /// The reason code as sent.
    pub code: u8,
    /// bgpkit's name for it; `None` when unknown.
    pub name: Option<String>,
    /// The data after the reason (NOTIFICATION PDU, FSM event code, TLVs), if any.
    pub data: Option<Vec<u8>>,
}

/// BMP Peer Down.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerDown {
    pub peer: PeerInfo,
    pub cause: PeerDownCause,
    /// Set by the station: no Peer Up was seen for this peer on this BMP connection. FRR sends
    /// such Peer Downs at connect for peers not yet established (frr-lab.md §4.1): they are not
    /// session flaps.
    pub without_peer_up: bool,
    pub warnings: Vec<String>,
}

/// BMP Route Monitoring: one BGP UPDATE as the router received it from `peer`.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteMonitoring {
    pub peer: PeerInfo,
    pub announced: Vec<AnnouncedRoute>,
    pub withdrawn: Vec<IpNet>,
    /// An empty UPDATE: the peer's initial table has been sent (per policy view).
    pub end_of_rib: bool,
}

/// The value of one statistics counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatValue {
    Counter(u32),
    Gauge(u64),
    AfiSafiGauge { afi: u16, safi: u8, value: u64 },
    Unknown(Vec<u8>),
}

/// One statistics counter (RFC 7854 §4.8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatCounter {
    pub stat_type: u16,
    pub name: String,
    pub value: StatValue,
}

/// BMP Statistics Report.
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    pub peer: PeerInfo,
    pub counters: Vec<StatCounter>,
}

/// BMP Termination.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Termination {
    pub reason: Option<String>,
    pub strings: Vec<String>,
}

/// A message that could not be decoded. The stream's framing is intact; the station goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    /// The BMP message type byte, when the message was long enough to have one.
    pub msg_type: Option<u8>,
    pub error: String,
    /// The whole message as received.
    pub raw: Bytes,
}

/// One decoded BMP message.
#[derive(Debug, Clone, PartialEq)]
pub enum BmpMessage {
    Initiation(Initiation),
    PeerUp(PeerUp),
    PeerDown(PeerDown),
    RouteMonitoring(RouteMonitoring),
    Stats(Stats),
    Termination(Termination),
    /// Route Mirroring (FRR 8.4 sends none); reported, not decoded further.
    RouteMirroring {
        peer: PeerInfo,
    },
    Malformed(Malformed),
}

/// Decodes one whole BMP message (common header included). Never panics: bgpkit is additionally
/// fenced with `catch_unwind`, so even a bug in it becomes [`BmpMessage::Malformed`].
pub fn decode(message: Bytes) -> BmpMessage {
    let raw = message.clone();
    match catch_unwind(AssertUnwindSafe(|| decode_inner(message))) {
        Ok(decoded) => decoded,
        Err(_) => BmpMessage::Malformed(Malformed {
            msg_type: raw.get(5).copied(),
            error: "the BMP decoder panicked on this message".to_string(),
            raw,
        }),
    }
}

fn malformed(raw: Bytes, error: String) -> BmpMessage {
    BmpMessage::Malformed(Malformed {
        msg_type: raw.get(5).copied(),
        error,
        raw,
    })
}

fn decode_inner(message: Bytes) -> BmpMessage {
    let raw = message.clone();
    let checked = match check::check(&raw) {
        Ok(checked) => checked,
        Err(error) => return malformed(raw, error),
    };
    let mut cursor = message.clone();
    let parsed = bgpkit_parser::parse_bmp_msg(&mut cursor);
    let msg = match parsed {
        Ok(m) => m,
        Err(e) => return fallback(raw, e, checked),
    };
    let peer = msg.per_peer_header.as_ref().map(peer_info);
    match (msg.message_body, peer) {
        (BmpMessageBody::InitiationMessage(init), _) => {
            let mut out = Initiation::default();
            for tlv in init.tlvs {
                match tlv.info_type {
                    InitiationTlvType::SysDescr => out.sys_descr = Some(tlv.info),
                    InitiationTlvType::SysName => out.sys_name = Some(tlv.info),
                    _ => out.strings.push(tlv.info),
                }
            }
            out.frr_version = out
                .sys_descr
                .as_deref()
                .and_then(|d| d.strip_prefix("FRRouting "))
                .map(|v| v.trim().to_string());
            BmpMessage::Initiation(out)
        }
        (BmpMessageBody::TerminationMessage(term), _) => {
            let mut out = Termination::default();
            for tlv in term.tlvs {
                match tlv.info_value {
                    TerminationTlvValue::String(s) => out.strings.push(s),
                    TerminationTlvValue::Reason(r) => out.reason = Some(format!("{r:?}")),
                }
            }
            BmpMessage::Termination(out)
        }
        (BmpMessageBody::PeerUpNotification(up), Some(peer)) => {
            let layout = checked.peer_up.as_ref();
            BmpMessage::PeerUp(PeerUp {
                peer,
                local_address: Some(up.local_addr),
                local_port: Some(up.local_port),
                remote_port: Some(up.remote_port),
                // The checks read four-octet AS capabilities, which bgpkit's OPEN leaves out.
                sent_open: layout
                    .and_then(|l| summary(l.sent))
                    .or_else(|| open_summary(&up.sent_open)),
                received_open: layout
                    .and_then(|l| summary(l.received))
                    .or_else(|| open_summary(&up.received_open)),
                warnings: checked.warnings,
            })
        }
        (BmpMessageBody::PeerDownNotification(down), Some(peer)) => {
            BmpMessage::PeerDown(PeerDown {
                peer,
                cause: PeerDownCause {
                    code: down.reason.into(),
                    name: Some(format!("{:?}", down.reason)),
                    data: down.data,
                },
                without_peer_up: false,
                warnings: checked.warnings,
            })
        }
        (BmpMessageBody::RouteMonitoring(rm), Some(peer)) => {
            let end_of_rib = rm.is_end_of_rib();
            let mut announced = Vec::new();
            let mut withdrawn = Vec::new();
            if let BgpMessage::Update(update) = rm.bgp_message {
                // Read from the attributes themselves: bgpkit's elements report an absent
                // LOCAL_PREF or MED as 0, and FRR 8.4's BMP never carries LOCAL_PREF.
                let local_pref = update.attributes.local_preference();
                let med = update.attributes.multi_exit_discriminator();
                let (ip, asn) = msg
                    .per_peer_header
                    .as_ref()
                    .map(|h| (h.peer_ip, h.peer_asn))
                    .unwrap_or((peer.address, peer.asn.into()));
                for elem in Elementor::bgp_update_to_elems(update, 0.0, &ip, &asn) {
                    match elem.elem_type {
                        ElemType::WITHDRAW => withdrawn.push(elem.prefix.prefix),
                        ElemType::ANNOUNCE => announced.push(AnnouncedRoute {
                            prefix: elem.prefix.prefix,
                            next_hop: elem.next_hop,
                            as_path: elem.as_path.as_ref().map(ToString::to_string),
                            communities: elem
                                .communities
                                .unwrap_or_default()
                                .iter()
                                .map(ToString::to_string)
                                .collect(),
                            local_pref,
                            med,
                            origin: elem.origin.map(|o| o.to_string()),
                        }),
                    }
                }
            }
            BmpMessage::RouteMonitoring(RouteMonitoring {
                peer,
                announced,
                withdrawn,
                end_of_rib,
            })
        }
        (BmpMessageBody::StatsReport(stats), Some(peer)) => BmpMessage::Stats(Stats {
            peer,
            counters: stats
                .counters
                .into_iter()
                .map(|c| StatCounter {
                    stat_type: c.stat_type.into(),
                    name: format!("{:?}", c.stat_type),
                    value: match c.stat_data {
                        StatsData::Counter(v) => StatValue::Counter(v),
                        StatsData::Gauge(v) => StatValue::Gauge(v),
                        StatsData::AfiSafiGauge(afi, safi, value) => {
                            StatValue::AfiSafiGauge { afi, safi, value }
                        }
                        StatsData::Unknown(bytes) => StatValue::Unknown(bytes),
                    },
                })
                .collect(),
        }),
        (BmpMessageBody::RouteMirroring(_), Some(peer)) => BmpMessage::RouteMirroring { peer },
        (_, None) => malformed(raw, "a per-peer message without a per-peer header".into()),
    }
}

/// bgpkit could not decode a message that passed the structural checks. A Peer Up (FRR's dummy
/// OPENs) or Peer Down (an unassigned reason code) still says which session changed state, so it
/// is reported with a warning; everything else is malformed.
fn fallback(raw: Bytes, error: ParserBmpError, checked: Checked) -> BmpMessage {
    let error_text = error.to_string();
    let mut cursor = raw.clone();
    let Ok(header) = parse_bmp_common_header(&mut cursor) else {
        return malformed(raw, error_text);
    };
    let is_peer_up = matches!(header.msg_type, BmpMsgType::PeerUpNotification);
    if !(is_peer_up || matches!(header.msg_type, BmpMsgType::PeerDownNotification))
        || raw.len() < header.msg_len as usize
    {
        return malformed(raw, error_text);
    }
    let mut content = raw.slice(COMMON_HEADER_LEN..header.msg_len as usize);
    let Ok(pph) = parse_per_peer_header(&mut content) else {
        return malformed(raw, error_text);
    };
    let peer = peer_info(&pph);
    if is_peer_up {
        let Some(layout) = checked.peer_up else {
            return malformed(raw, error_text);
        };
        return BmpMessage::PeerUp(peer_up_from_layout(peer, layout, &error_text));
    }
    let code = content.first().copied();
    let name = code
        .and_then(|c| PeerDownReason::try_from(c).ok())
        .map(|r| format!("{r:?}"));
    let mut warnings = checked.warnings;
    warnings.push(format!("Peer Down body not decodable: {error_text}"));
    BmpMessage::PeerDown(PeerDown {
        peer,
        cause: PeerDownCause {
            code: code.unwrap_or(0),
            name,
            data: (content.len() > 1).then(|| content[1..].to_vec()),
        },
        without_peer_up: false,
        warnings,
    })
}

/// A well-formed Peer Up bgpkit refused: what the checks read, and why OPENs are missing.
fn peer_up_from_layout(peer: PeerInfo, layout: PeerUpLayout, error: &str) -> PeerUp {
    let dummy = layout.sent == Open::Dummy || layout.received == Open::Dummy;
    let warning = if dummy {
        format!(
            "Peer Up with 19-byte dummy OPENs ({error}); FRR 8.4 sends these when BMP was \
             configured after the session came up (frr-lab.md §4.4): the OPENs are unknown"
        )
    } else {
        format!("Peer Up body not decodable by bgpkit ({error}); reported from its layout")
    };
    PeerUp {
        peer,
        local_address: Some(layout.local_address),
        local_port: Some(layout.local_port),
        remote_port: Some(layout.remote_port),
        sent_open: summary(layout.sent),
        received_open: summary(layout.received),
        warnings: vec![warning],
    }
}

fn summary(open: Open) -> Option<OpenSummary> {
    match open {
        Open::Dummy => None,
        Open::Full {
            asn,
            bgp_id,
            hold_time,
            ..
        } => Some(OpenSummary {
            asn,
            bgp_id,
            hold_time,
        }),
    }
}

fn peer_info(h: &BmpPerPeerHeader) -> PeerInfo {
    let (post_policy, adj_rib_out) = match h.peer_flags {
        PerPeerFlags::PeerFlags(f) => (f.is_post_policy(), f.is_adj_rib_out()),
        PerPeerFlags::LocalRibPeerFlags(_) => (false, false),
    };
    let peer_type = match h.peer_type {
        BmpPeerType::Global => PeerType::Global,
        BmpPeerType::RD => PeerType::RouteDistinguisher,
        BmpPeerType::Local => PeerType::Local,
        BmpPeerType::LocalRib => PeerType::LocalRib,
    };
    let policy = if peer_type == PeerType::LocalRib {
        Policy::LocRib
    } else if post_policy {
        Policy::PostPolicy
    } else {
        Policy::PrePolicy
    };
    PeerInfo {
        address: h.peer_ip,
        asn: h.peer_asn.into(),
        bgp_id: h.peer_bgp_id,
        peer_type,
        distinguisher: h.peer_distinguisher,
        adj_rib_out,
        policy,
        router_stamp: router_stamp(h.timestamp),
    }
}

/// The per-peer header's timestamp as a labelled external stamp (1 s resolution for FRR).
fn router_stamp(seconds: f64) -> Option<ExternalStamp> {
    if !(seconds.is_finite() && seconds > 0.0) {
        return None;
    }
    let micros = (seconds * 1e6).round();
    if micros > i64::MAX as f64 {
        return None;
    }
    let at: DateTime<Utc> = DateTime::from_timestamp_micros(micros as i64)?;
    Some(ExternalStamp {
        source: ExternalSource::Router("BMP per-peer header".to_string()),
        at,
        resolution: Duration::from_secs(1),
    })
}

fn open_summary(message: &BgpMessage) -> Option<OpenSummary> {
    match message {
        BgpMessage::Open(BgpOpenMessage {
            asn,
            hold_time,
            bgp_identifier,
            ..
        }) => Some(OpenSummary {
            asn: (*asn).into(),
            bgp_id: *bgp_identifier,
            hold_time: *hold_time,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STARTUP: &[u8] = include_bytes!(
        "../../tests/fixtures/frr-8.4.4-startup-advertise-ecmp-withdraw-restart.bmp"
    );
    const DUMMY_OPEN: &[u8] =
        include_bytes!("../../tests/fixtures/frr-8.4.4-runtime-target-dummy-open.bmp");
    /// Offsets in a per-peer message: flags, distinguisher, body.
    const FLAGS: usize = 7;
    const DISTINGUISHER: usize = 8;
    const BODY: usize = 48;

    /// The `nth` recorded message of `msg_type` in `stream`.
    fn recorded(stream: &[u8], msg_type: u8, nth: usize) -> Vec<u8> {
        let mut rest = stream;
        let mut found = Vec::new();
        while rest.len() >= 6 {
            let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
            if rest[5] == msg_type {
                found.push(rest[..len].to_vec());
            }
            rest = &rest[len..];
        }
        found.swap_remove(nth)
    }

    /// Sets the common header's length to the message's.
    fn fix_len(mut m: Vec<u8>) -> Vec<u8> {
        let len = (m.len() as u32).to_be_bytes();
        m[1..5].copy_from_slice(&len);
        m
    }

    fn malformed_because(m: Vec<u8>, why: &str) {
        match decode(Bytes::from(m.clone())) {
            BmpMessage::Malformed(bad) => {
                assert!(bad.error.contains(why), "{why:?} not in {:?}", bad.error);
                assert_eq!(bad.raw.as_ref(), &m[..]);
            }
            other => panic!("expected malformed ({why}), got {other:?}"),
        }
    }

    #[test]
    fn a_real_peer_up_decodes_and_its_corruptions_are_malformed() {
        let up = recorded(STARTUP, 3, 0);
        let BmpMessage::PeerUp(decoded) = decode(Bytes::from(up.clone())) else {
            panic!("the recorded Peer Up");
        };
        assert!(decoded.warnings.is_empty());
        assert_eq!(decoded.received_open.map(|o| o.asn), Some(64513));
        assert_eq!(decoded.sent_open.map(|o| o.asn), Some(64512));

        let mut v6 = up.clone();
        v6[FLAGS] |= 0x80;
        malformed_because(v6, "V flag set");
        let mut rd = up.clone();
        rd[DISTINGUISHER + 7] = 1;
        malformed_because(rd, "distinguisher");
        let mut zero_fill = up.clone();
        zero_fill[DISTINGUISHER + 8] = 1;
        malformed_because(zero_fill, "12 leading bytes");
        let mut port = up.clone();
        port[BODY + 16..BODY + 18].copy_from_slice(&[0, 0]);
        malformed_because(port, "port 0");
        // bgpkit only warns about a broken BGP marker.
        let mut marker = up.clone();
        marker[BODY + 20] = 0xfe;
        malformed_because(marker, "marker");
        // A KEEPALIVE where the sent OPEN belongs.
        let mut keepalive = up.clone();
        keepalive[BODY + 20 + 18] = 4;
        malformed_because(keepalive, "not OPEN");
        // The received OPEN (peer's AS and BGP identifier) must match the per-peer header.
        let received = BODY + 20 + 95;
        let mut id = up.clone();
        id[received + 27] ^= 0x40;
        malformed_because(id, "BGP identifier");
        let mut asn = up.clone();
        asn[34] = 0x7f;
        malformed_because(asn, "AS");
        // Trailing bytes too short for a TLV (bgpkit ignores them), a missing received OPEN.
        let mut trailing = up.clone();
        trailing.extend_from_slice(&[0, 0, 0]);
        malformed_because(fix_len(trailing), "TLV");
        malformed_because(fix_len(up[..received].to_vec()), "received OPEN");
        // A Route Monitoring (or Peer Down) whose type byte became Peer Up.
        let mut rm = recorded(STARTUP, 0, 0);
        rm[5] = 3;
        malformed_because(rm, "");
        let mut down = recorded(STARTUP, 2, 0);
        down[5] = 3;
        malformed_because(down, "");
    }

    #[test]
    fn dummy_open_peer_ups_pass_only_whole() {
        let up = recorded(DUMMY_OPEN, 3, 0);
        let BmpMessage::PeerUp(decoded) = decode(Bytes::from(up.clone())) else {
            panic!("the recorded dummy-OPEN Peer Up");
        };
        assert_eq!(
            decoded.local_address,
            Some(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 155)))
        );
        assert!(decoded.sent_open.is_none() && decoded.received_open.is_none());
        assert_eq!(decoded.warnings.len(), 1);
        // 19 < length < 29: neither a dummy nor an OPEN.
        let mut short = up.clone();
        short[BODY + 20 + 17] = 20;
        short.insert(BODY + 20 + 19, 4);
        malformed_because(fix_len(short), "shorter than an OPEN");
        malformed_because(fix_len(up[..up.len() - 1].to_vec()), "received OPEN");
    }

    #[test]
    fn peer_downs_need_a_known_reason_with_its_data() {
        let down = recorded(STARTUP, 2, 2); // reason 4, no data
        assert!(matches!(
            decode(Bytes::from(down.clone())),
            BmpMessage::PeerDown(d) if d.cause.code == 4 && d.warnings.is_empty()
        ));
        let with = |reason: u8, data: &[u8]| {
            let mut m = down[..BODY].to_vec();
            m.push(reason);
            m.extend_from_slice(data);
            fix_len(m)
        };
        malformed_because(with(0, &[]), "reserved");
        malformed_because(with(255, &[]), "reserved");
        malformed_because(with(2, &[0, 0, 0]), "FSM");
        malformed_because(with(4, &[1]), "has none");
        malformed_because(with(1, &[0xff; 21]), "NOTIFICATION");
        let mut notification = vec![0xff; 16];
        notification.extend_from_slice(&[0, 21, 3, 6, 2]);
        assert!(matches!(
            decode(Bytes::from(with(3, &notification))),
            BmpMessage::PeerDown(d) if d.cause.code == 3 && d.warnings.is_empty()
        ));
        // Tolerated: reason 1 without its PDU; an unassigned reason.
        for reason in [1, 9] {
            match decode(Bytes::from(with(reason, &[]))) {
                BmpMessage::PeerDown(d) => assert_eq!(d.warnings.len(), 1, "{d:?}"),
                other => panic!("{other:?}"),
            }
        }
        // A Statistics Report whose type byte became Peer Down (its count's high byte is 0).
        let mut stats = recorded(STARTUP, 1, 0);
        stats[5] = 2;
        malformed_because(stats, "reserved");
    }

    #[test]
    fn garbage_is_malformed_with_its_bytes() {
        for bytes in [
            &b""[..],
            &[3, 0, 0, 0, 6][..],
            &[3, 0, 0, 0, 6, 99][..],
            &[3, 0, 0, 0, 8, 0, 1, 2][..],
            &[3, 0, 0, 0, 7, 3, 0][..],
        ] {
            match decode(Bytes::copy_from_slice(bytes)) {
                BmpMessage::Malformed(m) => assert_eq!(m.raw.as_ref(), bytes),
                other => panic!("{bytes:?} decoded as {other:?}"),
            }
        }
    }

    #[test]
    fn router_stamps_are_labelled_and_zero_is_absent() {
        assert_eq!(router_stamp(0.0), None);
        assert_eq!(router_stamp(f64::NAN), None);
        let s = router_stamp(1_795_869_520.793_616).expect("stamp");
        assert_eq!(s.resolution, Duration::from_secs(1));
        assert_eq!(s.at.timestamp(), 1_795_869_520);
        assert!(matches!(s.source, ExternalSource::Router(_)));
    }
}
