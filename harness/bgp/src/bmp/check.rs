//! Structural checks of one whole BMP message, made before bgpkit-parser decodes it. bgpkit is
//! lenient by design (it reads MRT archives: it ignores BGP markers, trailing bytes and the BGP
//! message type inside a Peer Up), so on its own a corrupt or crafted message can pass as a
//! session change. These checks hold a message that changes session state to its exact layout:
//! the per-peer header's zero-fill and distinguisher rules (RFC 7854 §4.2), a Peer Up's sent and
//! received OPEN messages and TLVs, consistent with its per-peer header (§4.10), and a Peer
//! Down's reason code with the data that code promises (§4.9). Pure byte arithmetic; never panics.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Common header (6) + per-peer header (42).
const PER_PEER_BODY_AT: usize = 6 + 42;
const BGP_HEADER_LEN: usize = 19;
/// BGP header + version, my AS, hold time, BGP identifier, optional parameters length.
const BGP_OPEN_MIN_LEN: usize = 29;
const BGP_MAX_OPEN_LEN: usize = 4096;
const BGP_OPEN: u8 = 1;
const BGP_NOTIFICATION: u8 = 3;
/// RFC 6793 four-octet AS number capability.
const CAPABILITY_AS4: u8 = 65;

/// One OPEN message of a Peer Up as the checks read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Open {
    /// A 19-byte header-only OPEN: FRR 8.4 sends these when BMP was configured after the session
    /// came up (frr-lab.md §4.4).
    Dummy,
    Full {
        /// The four-octet AS capability when present, else My Autonomous System.
        asn: u32,
        /// My Autonomous System as sent (AS_TRANS for four-octet ASes).
        my_as: u16,
        bgp_id: Ipv4Addr,
        hold_time: u16,
    },
}

/// A Peer Up body that passed the checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PeerUpLayout {
    pub local_address: IpAddr,
    pub local_port: u16,
    pub remote_port: u16,
    pub sent: Open,
    pub received: Open,
}

/// What the checks learnt about a message that passed them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Checked {
    pub peer_up: Option<PeerUpLayout>,
    /// Tolerated deviations, reported with the decoded message.
    pub warnings: Vec<String>,
}

/// Checks one whole BMP message (common header included). `Err` says why it cannot be trusted.
/// Message types without a per-peer header, and unknown ones, are left to bgpkit.
pub(crate) fn check(message: &[u8]) -> Result<Checked, String> {
    let Some(header) = message.get(..6) else {
        return Ok(Checked::default()); // bgpkit reports the truncation
    };
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    if len != message.len() {
        return Err(format!(
            "the common header says {len} bytes but the message has {}",
            message.len()
        ));
    }
    let msg_type = header[5];
    if !matches!(msg_type, 0 | 1 | 2 | 3 | 6) {
        return Ok(Checked::default());
    }
    let pph = message
        .get(6..PER_PEER_BODY_AT)
        .ok_or_else(|| format!("{} bytes cannot hold a per-peer header", message.len()))?;
    let peer_type = pph[0];
    let v6 = pph[1] & 0x80 != 0;
    let peer_asn = u32::from_be_bytes([pph[26], pph[27], pph[28], pph[29]]);
    let peer_bgp_id = Ipv4Addr::new(pph[30], pph[31], pph[32], pph[33]);
    // Peer types 0-2 are BGP sessions; 3 (Loc-RIB, RFC 9069) has its own zero-filled fields.
    let session = peer_type <= 2;
    if session {
        if peer_type == 0 && pph[2..10] != [0; 8] {
            return Err("a Global Instance Peer with a non-zero peer distinguisher".into());
        }
        address(&pph[10..26], v6, "peer address")?;
    }
    let mut body = Reader(&message[PER_PEER_BODY_AT..]);
    let mut checked = Checked::default();
    match msg_type {
        3 => {
            let layout = peer_up(&mut body, session, v6)?;
            if session
                && let Open::Full {
                    asn, my_as, bgp_id, ..
                } = layout.received
            {
                // The per-peer header names the peer whose OPEN was received (RFC 7854 §4.2).
                if bgp_id != peer_bgp_id {
                    return Err(format!(
                        "the received OPEN's BGP identifier {bgp_id} is not the per-peer \
                         header's {peer_bgp_id}"
                    ));
                }
                if peer_asn != asn && peer_asn != u32::from(my_as) {
                    return Err(format!(
                        "the received OPEN's AS {asn} is not the per-peer header's {peer_asn}"
                    ));
                }
            }
            checked.peer_up = Some(layout);
        }
        2 => peer_down(&mut body, &mut checked.warnings)?,
        _ => {}
    }
    Ok(checked)
}

/// A 16-byte address field: IPv4 is zero-filled in front (RFC 7854 §4.2, §4.10).
fn address(field: &[u8], v6: bool, what: &str) -> Result<IpAddr, String> {
    let bytes: [u8; 16] = field
        .try_into()
        .map_err(|_| format!("{what}: not 16 bytes"))?;
    let leading_zero = bytes[..12] == [0; 12];
    if v6 {
        // An IPv4 address under a set V flag: a flipped flag, not an IPv6 peer.
        if leading_zero {
            return Err(format!(
                "{what} is IPv6 (V flag set) but holds 12 leading zero bytes"
            ));
        }
        Ok(IpAddr::V6(Ipv6Addr::from(bytes)))
    } else {
        if !leading_zero {
            return Err(format!(
                "{what} is IPv4 (V flag clear) but its 12 leading bytes are not zero"
            ));
        }
        let v4 = Ipv4Addr::new(bytes[12], bytes[13], bytes[14], bytes[15]);
        if v4.is_unspecified() {
            return Err(format!("{what} is 0.0.0.0"));
        }
        Ok(IpAddr::V4(v4))
    }
}

fn peer_up(body: &mut Reader<'_>, session: bool, v6: bool) -> Result<PeerUpLayout, String> {
    let local = body.take(16, "local address")?;
    let local_port = body.u16("local port")?;
    let remote_port = body.u16("remote port")?;
    let local_address = if session {
        if local_port == 0 || remote_port == 0 {
            return Err(format!(
                "a BGP session on TCP port 0 (local {local_port}, remote {remote_port})"
            ));
        }
        address(local, v6, "local address")?
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED) // Loc-RIB: zero-filled (RFC 9069 §5.3)
    };
    let sent = open(body, "sent OPEN")?;
    let received = open(body, "received OPEN")?;
    tlvs(body, "Peer Up information TLV")?;
    Ok(PeerUpLayout {
        local_address,
        local_port,
        remote_port,
        sent,
        received,
    })
}

/// One BGP OPEN message (RFC 4271 §4.2, RFC 9072 extended optional parameters).
fn open(body: &mut Reader<'_>, what: &str) -> Result<Open, String> {
    let head = body.peek(BGP_HEADER_LEN, what)?;
    if head[..16] != [0xff; 16] {
        return Err(format!("{what}: the BGP marker is not all ones"));
    }
    let len = usize::from(u16::from_be_bytes([head[16], head[17]]));
    if head[18] != BGP_OPEN {
        return Err(format!("{what} is BGP message type {}, not OPEN", head[18]));
    }
    if !(BGP_HEADER_LEN..=BGP_MAX_OPEN_LEN).contains(&len) {
        return Err(format!("{what}: BGP length {len} out of 19..=4096"));
    }
    let m = body.take(len, what)?;
    if len == BGP_HEADER_LEN {
        return Ok(Open::Dummy);
    }
    if len < BGP_OPEN_MIN_LEN {
        return Err(format!("{what}: {len} bytes, shorter than an OPEN (29)"));
    }
    if m[19] != 4 {
        return Err(format!("{what}: BGP version {}", m[19]));
    }
    let my_as = u16::from_be_bytes([m[20], m[21]]);
    let hold_time = u16::from_be_bytes([m[22], m[23]]);
    if hold_time == 1 || hold_time == 2 {
        return Err(format!(
            "{what}: hold time {hold_time} s (must be 0 or ≥ 3)"
        ));
    }
    let bgp_id = Ipv4Addr::new(m[24], m[25], m[26], m[27]);
    if bgp_id.is_unspecified() {
        return Err(format!("{what}: BGP identifier 0.0.0.0"));
    }
    let opt_len = usize::from(m[28]);
    let extended = opt_len != 0 && m.get(29) == Some(&255);
    let params = if extended {
        let ext = m
            .get(30..32)
            .ok_or_else(|| format!("{what}: extended parameters length missing"))?;
        let ext_len = usize::from(u16::from_be_bytes([ext[0], ext[1]]));
        if 32 + ext_len != len {
            return Err(format!(
                "{what}: extended parameters length {ext_len} does not fill the message"
            ));
        }
        &m[32..]
    } else {
        if BGP_OPEN_MIN_LEN + opt_len != len {
            return Err(format!(
                "{what}: optional parameters length {opt_len} does not fill the message"
            ));
        }
        &m[BGP_OPEN_MIN_LEN..]
    };
    let mut as4 = None;
    let mut params = Reader(params);
    while !params.is_empty() {
        let ty = params.u8(what)?;
        let plen = if extended {
            usize::from(params.u16(what)?)
        } else {
            usize::from(params.u8(what)?)
        };
        let value = params.take(plen, what)?;
        if ty == 2 {
            let mut caps = Reader(value);
            while !caps.is_empty() {
                let code = caps.u8(what)?;
                let clen = usize::from(caps.u8(what)?);
                let cvalue = caps.take(clen, what)?;
                if code == CAPABILITY_AS4 {
                    let v: [u8; 4] = cvalue
                        .try_into()
                        .map_err(|_| format!("{what}: four-octet AS capability of {clen} bytes"))?;
                    as4 = Some(u32::from_be_bytes(v));
                }
            }
        }
    }
    Ok(Open::Full {
        asn: as4.unwrap_or(u32::from(my_as)),
        my_as,
        bgp_id,
        hold_time,
    })
}

/// Reason codes and their data (RFC 7854 §4.9, RFC 9069 §5.4).
fn peer_down(body: &mut Reader<'_>, warnings: &mut Vec<String>) -> Result<(), String> {
    let reason = body.u8("Peer Down reason")?;
    let data = body.0;
    match reason {
        0 | 255 => return Err(format!("Peer Down reason {reason} is reserved")),
        1 | 3 if data.is_empty() => warnings.push(format!(
            "Peer Down reason {reason} without the NOTIFICATION PDU it announces (older FRR \
             sent this on next-hop tracking failures)"
        )),
        1 | 3 => {
            let head = data
                .get(..BGP_HEADER_LEN)
                .ok_or("Peer Down NOTIFICATION PDU shorter than a BGP header")?;
            let len = usize::from(u16::from_be_bytes([head[16], head[17]]));
            if head[..16] != [0xff; 16] || head[18] != BGP_NOTIFICATION || len != data.len() {
                return Err(format!(
                    "Peer Down reason {reason}: the data is not one NOTIFICATION PDU"
                ));
            }
            if len < BGP_HEADER_LEN + 2 {
                return Err("Peer Down NOTIFICATION PDU without error code".into());
            }
        }
        2 if data.len() != 2 => {
            return Err(format!(
                "Peer Down reason 2 carries {} bytes, not a 2-byte FSM event code",
                data.len()
            ));
        }
        4 | 5 if !data.is_empty() => {
            return Err(format!(
                "Peer Down reason {reason} carries {} bytes of data; it has none",
                data.len()
            ));
        }
        6 => tlvs(body, "Peer Down TLV")?,
        // 2, 4, 5 well-formed; unassigned codes are reported with a warning by the decoder.
        _ => {}
    }
    Ok(())
}

/// Information TLVs (type, length, value) filling the rest exactly.
fn tlvs(body: &mut Reader<'_>, what: &str) -> Result<(), String> {
    while !body.is_empty() {
        body.take(2, what)?;
        let len = usize::from(body.u16(what)?);
        body.take(len, what)?;
    }
    Ok(())
}

/// A bounds-checked cursor.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn peek(&self, n: usize, what: &str) -> Result<&'a [u8], String> {
        self.0
            .get(..n)
            .ok_or_else(|| format!("{what}: {n} bytes needed, {} left", self.0.len()))
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        let head = self.peek(n, what)?;
        self.0 = &self.0[n..];
        Ok(head)
    }

    fn u8(&mut self, what: &str) -> Result<u8, String> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &str) -> Result<u16, String> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
}
