//! Builds ICMPv4 echo requests and parses what comes back (echo replies and the ICMP errors that
//! quote one of our requests). Pure functions over byte slices; no I/O.
//!
//! Every request carries a 16-byte payload: the prober's nonce (u32), the target id (u32) and the
//! full 64-bit probe number. Matching uses the payload, never the ICMP identifier, because on
//! `SOCK_DGRAM` ping sockets the kernel replaces the identifier with the socket's port; the 16-bit
//! sequence field carries the low bits of the probe number only for readability in captures.

/// ICMP header length (type, code, checksum, identifier, sequence).
const ICMP_HEADER_LEN: usize = 8;
/// Our payload: nonce, target id, probe number.
pub(crate) const PAYLOAD_LEN: usize = 16;
/// A whole echo request as we send it.
pub(crate) const REQUEST_LEN: usize = ICMP_HEADER_LEN + PAYLOAD_LEN;

const TYPE_ECHO_REPLY: u8 = 0;
const TYPE_DEST_UNREACHABLE: u8 = 3;
const TYPE_ECHO_REQUEST: u8 = 8;
const TYPE_TIME_EXCEEDED: u8 = 11;

/// What identifies one probe inside the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProbeTag {
    pub nonce: u32,
    pub target_id: u32,
    pub probe_no: u64,
}

/// An ICMP error that quotes one of our echo requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QuotedError {
    pub icmp_type: u8,
    pub code: u8,
    /// The destination of the quoted request (the probed target).
    pub original_destination: [u8; 4],
    pub tag: ProbeTag,
}

/// A received ICMP message, as far as the prober cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Received {
    EchoReply(ProbeTag),
    Error(QuotedError),
    /// Anything else: other pingers' traffic, echo requests to us, truncated data.
    Other,
}

/// Writes an echo request into `buf`.
pub(crate) fn build_echo_request(
    identifier: u16,
    tag: ProbeTag,
    buf: &mut [u8; REQUEST_LEN],
) -> &[u8] {
    buf[0] = TYPE_ECHO_REQUEST;
    buf[1] = 0;
    buf[2..4].copy_from_slice(&[0, 0]);
    buf[4..6].copy_from_slice(&identifier.to_be_bytes());
    // The sequence field carries the low 16 bits; the payload carries the whole number.
    buf[6..8].copy_from_slice(&((tag.probe_no & 0xffff) as u16).to_be_bytes());
    buf[8..12].copy_from_slice(&tag.nonce.to_be_bytes());
    buf[12..16].copy_from_slice(&tag.target_id.to_be_bytes());
    buf[16..24].copy_from_slice(&tag.probe_no.to_be_bytes());
    let sum = internet_checksum(&buf[..]);
    buf[2..4].copy_from_slice(&sum.to_be_bytes());
    &buf[..]
}

/// RFC 1071 one's-complement checksum.
pub(crate) fn internet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut chunks = data.chunks_exact(2);
    for pair in &mut chunks {
        sum += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Skips an IPv4 header (RAW sockets deliver it; DGRAM ping sockets do not).
pub(crate) fn strip_ipv4_header(packet: &[u8]) -> Option<&[u8]> {
    let first = *packet.first()?;
    if first >> 4 != 4 {
        return None;
    }
    let header_len = usize::from(first & 0x0f) * 4;
    if header_len < 20 {
        return None;
    }
    packet.get(header_len..)
}

fn read_tag(payload: &[u8]) -> Option<ProbeTag> {
    let nonce = u32::from_be_bytes(payload.get(0..4)?.try_into().ok()?);
    let target_id = u32::from_be_bytes(payload.get(4..8)?.try_into().ok()?);
    let probe_no = u64::from_be_bytes(payload.get(8..16)?.try_into().ok()?);
    Some(ProbeTag {
        nonce,
        target_id,
        probe_no,
    })
}

/// Parses an ICMP message (starting at the ICMP header).
pub(crate) fn parse_icmp(message: &[u8]) -> Received {
    parse_inner(message).unwrap_or(Received::Other)
}

fn parse_inner(message: &[u8]) -> Option<Received> {
    let icmp_type = *message.first()?;
    let code = *message.get(1)?;
    match icmp_type {
        TYPE_ECHO_REPLY => {
            let tag = read_tag(message.get(ICMP_HEADER_LEN..)?)?;
            Some(Received::EchoReply(tag))
        }
        TYPE_DEST_UNREACHABLE | TYPE_TIME_EXCEEDED => {
            let quoted_ip = message.get(ICMP_HEADER_LEN..)?;
            let original_destination: [u8; 4] = quoted_ip.get(16..20)?.try_into().ok()?;
            let quoted_icmp = strip_ipv4_header(quoted_ip)?;
            if *quoted_icmp.first()? != TYPE_ECHO_REQUEST {
                return None;
            }
            let tag = read_tag(quoted_icmp.get(ICMP_HEADER_LEN..)?)?;
            Some(Received::Error(QuotedError {
                icmp_type,
                code,
                original_destination,
                tag,
            }))
        }
        _ => None,
    }
}

/// A readable name for an ICMP error, for the "why unreachable" reason.
pub(crate) fn describe_error(icmp_type: u8, code: u8) -> String {
    match (icmp_type, code) {
        (TYPE_DEST_UNREACHABLE, 0) => "ICMP network unreachable".to_string(),
        (TYPE_DEST_UNREACHABLE, 1) => "ICMP host unreachable".to_string(),
        (TYPE_DEST_UNREACHABLE, 3) => "ICMP port unreachable".to_string(),
        (TYPE_DEST_UNREACHABLE, 9 | 10 | 13) => {
            format!("ICMP destination unreachable (administratively prohibited, code {code})")
        }
        (TYPE_DEST_UNREACHABLE, _) => format!("ICMP destination unreachable (code {code})"),
        (TYPE_TIME_EXCEEDED, _) => format!("ICMP time exceeded (code {code})"),
        _ => format!("ICMP type {icmp_type} code {code}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TAG: ProbeTag = ProbeTag {
        nonce: 0xdead_beef,
        target_id: 7,
        probe_no: 0x1_0000_0005,
    };

    #[test]
    fn request_has_a_valid_checksum_and_the_low_sequence_bits() {
        let mut buf = [0u8; REQUEST_LEN];
        let packet = build_echo_request(0x1234, TAG, &mut buf);
        assert_eq!(packet.len(), 24);
        assert_eq!(packet[0], 8);
        // A correct checksum sums to zero over the whole message.
        assert_eq!(internet_checksum(packet), 0);
        assert_eq!(u16::from_be_bytes([packet[6], packet[7]]), 5);
        assert_eq!(u16::from_be_bytes([packet[4], packet[5]]), 0x1234);
    }

    #[test]
    fn checksum_matches_rfc1071_example() {
        // RFC 1071 §3 example bytes: 00 01 f2 03 f4 f5 f6 f7 -> sum ddf2, checksum 220d.
        assert_eq!(
            internet_checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0x220d
        );
        // Odd length pads with a zero byte.
        assert_eq!(internet_checksum(&[0xff]), !0xff00);
    }

    #[test]
    fn echo_reply_round_trips_the_tag() {
        let mut buf = [0u8; REQUEST_LEN];
        let mut reply = build_echo_request(1, TAG, &mut buf).to_vec();
        reply[0] = 0;
        assert_eq!(parse_icmp(&reply), Received::EchoReply(TAG));
    }

    #[test]
    fn ip_header_is_stripped_by_its_length_field() {
        let mut packet = vec![0x46u8; 24]; // IHL 6 = 24 bytes
        packet.extend_from_slice(&[0, 0, 1, 2]);
        assert_eq!(strip_ipv4_header(&packet), Some(&[0u8, 0, 1, 2][..]));
        assert_eq!(strip_ipv4_header(&[0x60, 0, 0]), None, "IPv6 is not ours");
        assert_eq!(strip_ipv4_header(&[0x45, 0, 0]), None, "truncated");
        assert_eq!(strip_ipv4_header(&[]), None);
    }

    #[test]
    fn unreachable_quoting_our_request_names_the_probe() {
        let mut buf = [0u8; REQUEST_LEN];
        let request = build_echo_request(1, TAG, &mut buf).to_vec();
        let mut quoted_ip = vec![0x45, 0, 0, 44, 0, 0, 0, 0, 64, 1, 0, 0];
        quoted_ip.extend_from_slice(&[198, 18, 0, 1]); // source
        quoted_ip.extend_from_slice(&[198, 19, 0, 9]); // destination
        let mut message = vec![3, 1, 0, 0, 0, 0, 0, 0];
        message.extend_from_slice(&quoted_ip);
        message.extend_from_slice(&request);
        assert_eq!(
            parse_icmp(&message),
            Received::Error(QuotedError {
                icmp_type: 3,
                code: 1,
                original_destination: [198, 19, 0, 9],
                tag: TAG,
            })
        );
        // An error quoting only the 8-byte header (old routers) cannot be attributed.
        let short = &message[..message.len() - PAYLOAD_LEN];
        assert_eq!(parse_icmp(short), Received::Other);
    }

    #[test]
    fn garbage_and_foreign_messages_are_other() {
        assert_eq!(parse_icmp(&[]), Received::Other);
        assert_eq!(parse_icmp(&[0]), Received::Other);
        assert_eq!(parse_icmp(&[0, 0, 0, 0, 0, 0, 0, 0, 1]), Received::Other);
        assert_eq!(parse_icmp(&[8, 0, 0, 0, 0, 0, 0, 0]), Received::Other);
        assert_eq!(parse_icmp(&[5, 0, 0, 0]), Received::Other);
        assert_eq!(describe_error(3, 1), "ICMP host unreachable");
    }
}
