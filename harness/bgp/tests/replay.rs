//! Replays BMP streams recorded from FRR 8.4.4 (`tests/fixtures/`, see its README) through the
//! station's decoder, and fuzzes the framer/decoder with mutations of them: it must never panic,
//! and whatever it cannot decode is reported with its bytes.

use std::net::{IpAddr, Ipv4Addr};

use bytes::Bytes;
use ipnet::IpNet;
use proptest::prelude::*;
use vmbgp_bgp::bmp::decode::decode;
use vmbgp_bgp::bmp::framer::Framer;
use vmbgp_bgp::bmp::{
    BmpEvent, BmpEventKind, BmpMessage, DEFAULT_MAX_MESSAGE_LEN, FramingError, PeerBook, Policy,
    StreamDecoder,
};
use vmbgp_host::clock::MonoStamp;

const STARTUP: &[u8] =
    include_bytes!("fixtures/frr-8.4.4-startup-advertise-ecmp-withdraw-restart.bmp");
const DUMMY_OPEN: &[u8] = include_bytes!("fixtures/frr-8.4.4-runtime-target-dummy-open.bmp");
const N1: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1));
const N2: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2));
const EXT: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 155));

/// Everything the decoder yields for `stream` read in `chunk`-byte pieces, in order.
fn replay_all(stream: &[u8], chunk: usize) -> Vec<Result<BmpMessage, FramingError>> {
    let mut decoder = StreamDecoder::new(DEFAULT_MAX_MESSAGE_LEN);
    let mut out = Vec::new();
    for piece in stream.chunks(chunk.max(1)) {
        decoder.push(piece);
        out.extend(std::iter::from_fn(|| decoder.next_message()));
    }
    out
}

fn replay(stream: &[u8], chunk: usize) -> (Vec<BmpMessage>, bool) {
    let mut out = Vec::new();
    let mut framing_lost = false;
    for next in replay_all(stream, chunk) {
        match next {
            Ok(m) => out.push(m),
            Err(_) => framing_lost = true,
        }
    }
    (out, framing_lost)
}

#[test]
fn startup_capture_decodes_to_the_scenario() {
    let (messages, lost) = replay(STARTUP, 4096);
    assert!(!lost);
    assert!(
        !messages
            .iter()
            .any(|m| matches!(m, BmpMessage::Malformed(_))),
        "{messages:#?}"
    );
    let BmpMessage::Initiation(init) = &messages[0] else {
        panic!("first message: {:?}", messages[0]);
    };
    assert_eq!(init.frr_version.as_deref(), Some("8.4.4"));
    assert_eq!(init.sys_name.as_deref(), Some("ext"));
    let prefix: IpNet = "198.19.7.0/24".parse().expect("net");
    let mut downs = Vec::new();
    let mut ups = Vec::new();
    let mut announced = Vec::new();
    let mut withdrawn = Vec::new();
    let mut stats = 0;
    for m in &messages {
        match m {
            BmpMessage::PeerUp(u) => {
                assert!(u.warnings.is_empty(), "{u:?}");
                assert_eq!(u.received_open.as_ref().map(|o| o.asn), Some(64513));
                assert_eq!(u.sent_open.as_ref().map(|o| o.asn), Some(64512));
                ups.push(u.peer.address);
            }
            BmpMessage::PeerDown(d) => downs.push((d.peer.address, d.without_peer_up)),
            BmpMessage::Stats(s) => {
                assert!(!s.counters.is_empty(), "{s:?}");
                stats += 1;
            }
            BmpMessage::RouteMonitoring(rm) => {
                // FRR 8.4 sends End-of-RIB only for peers already up when BMP connects; here
                // they came up afterwards, so every Route Monitoring carries a prefix.
                assert!(!rm.end_of_rib);
                for r in &rm.announced {
                    assert_eq!(r.prefix, prefix);
                    assert_eq!(r.next_hop, Some(rm.peer.address));
                    assert_eq!(r.communities, ["64512:100"]);
                    // FRR 8.4 encodes the path as re-advertised: local AS first (frr-lab.md §4.4).
                    assert_eq!(r.as_path.as_deref(), Some("64512 64513"));
                    assert!(r.local_pref.is_none());
                    assert!(rm.peer.router_stamp.is_some());
                    announced.push((rm.peer.address, rm.peer.policy));
                }
                for w in &rm.withdrawn {
                    assert_eq!(*w, prefix);
                    withdrawn.push((rm.peer.address, rm.peer.policy));
                }
            }
            _ => {}
        }
    }
    assert!(stats >= 2, "statistics reports (bmp stats interval 1000)");
    // Both nodes announce and withdraw, in both policy views.
    for peer in [N1, N2] {
        for policy in [Policy::PrePolicy, Policy::PostPolicy] {
            assert!(announced.contains(&(peer, policy)), "{announced:?}");
            assert!(withdrawn.contains(&(peer, policy)), "{withdrawn:?}");
        }
    }
    // Peer Downs at connect are marked; n1's restart is a real Peer Down followed by a Peer Up.
    assert!(
        downs.iter().any(|(p, without)| *p == N1 && !without),
        "{downs:?}"
    );
    assert!(
        downs.iter().filter(|(_, without)| *without).count() >= 1,
        "{downs:?}"
    );
    assert_eq!(ups.iter().filter(|p| **p == N1).count(), 2, "{ups:?}");
    // Any split of the stream gives the same messages.
    for chunk in [1, 7, 100] {
        assert_eq!(replay(STARTUP, chunk).0, messages, "chunk {chunk}");
    }
}

#[test]
fn dummy_open_capture_still_yields_peer_ups_with_warnings() {
    let (messages, lost) = replay(DUMMY_OPEN, 4096);
    assert!(!lost);
    let ups: Vec<_> = messages
        .iter()
        .filter_map(|m| match m {
            BmpMessage::PeerUp(u) => Some(u),
            _ => None,
        })
        .collect();
    assert_eq!(ups.len(), 2, "{messages:#?}");
    for u in ups {
        assert_eq!(u.peer.asn, 64513);
        assert!(u.received_open.is_none() && u.sent_open.is_none());
        // The rest of the body passed the structural checks, so it is known.
        assert_eq!(u.local_address, Some(EXT));
        assert_eq!(u.local_port, Some(179));
        assert!(u.remote_port.is_some_and(|p| p != 0));
        assert!(u.warnings[0].contains("dummy OPEN"), "{:?}", u.warnings);
    }
    let prefix: IpNet = "198.19.8.0/24".parse().expect("net");
    assert!(
        messages
            .iter()
            .any(|m| matches!(m, BmpMessage::RouteMonitoring(rm)
        if rm.announced.iter().any(|r| r.prefix == prefix)))
    );
}

/// Every message of both captures, split out.
fn messages_of(stream: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = stream;
    while rest.len() >= 6 {
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        out.push(rest[..len].to_vec());
        rest = &rest[len..];
    }
    out
}

#[test]
fn every_single_byte_mutation_of_every_real_message_decodes_without_panicking() {
    let mut total = 0usize;
    let mut malformed = 0usize;
    for stream in [STARTUP, DUMMY_OPEN] {
        for message in messages_of(stream) {
            for i in 0..message.len() {
                for value in [0x00, 0x01, 0x7f, 0x80, 0xff, message[i].wrapping_add(1)] {
                    let mut m = message.clone();
                    m[i] = value;
                    total += 1;
                    if let BmpMessage::Malformed(bad) = decode(Bytes::from(m.clone())) {
                        assert_eq!(bad.raw.as_ref(), &m[..], "raw bytes are kept");
                        malformed += 1;
                    }
                }
                // Truncated at every length.
                let _ = decode(Bytes::copy_from_slice(&message[..i]));
            }
        }
    }
    assert!(
        total > 10_000 && malformed > 0,
        "{total} mutations, {malformed} malformed"
    );
}

/// (peer, up) of every peer state change a station connection carrying `stream` would make.
fn peer_changes(stream: &[u8]) -> Vec<(IpAddr, u64, bool)> {
    let mut book = PeerBook::new();
    let router = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
    replay(stream, 4096)
        .0
        .into_iter()
        .flat_map(|message| {
            book.on_event(&BmpEvent {
                at: MonoStamp::from_offset(std::time::Duration::ZERO),
                connection: 1,
                router,
                kind: BmpEventKind::Message(message),
            })
        })
        .map(|c| (c.peer.address, c.peer.distinguisher, c.up))
        .collect()
}

/// The second observation: mutated messages invented about 80 peers. No single-byte
/// change of any recorded message may make a peer state change the real stream does not make
/// (the changes must be a subsequence of the real ones: losing one to a rejected message is
/// fine, inventing one is not). Excluded: the four bytes of the per-peer header's IPv4 peer
/// address itself — a different address there is a well-formed message about another peer,
/// which no field of the message contradicts; that is what the station's allow-list and
/// PeerBook's one authoritative connection per router are for.
#[test]
fn single_byte_mutations_never_make_a_peer_change_the_stream_does_not() {
    for stream in [STARTUP, DUMMY_OPEN] {
        let real = peer_changes(stream);
        assert!(real.len() >= 2, "{real:?}");
        let mut offset = 0;
        let mut tried = 0;
        for message in messages_of(stream) {
            let per_peer = matches!(message[5], 0 | 1 | 2 | 3 | 6);
            for i in 0..message.len() {
                if per_peer && (28..32).contains(&i) {
                    continue;
                }
                for value in [0x00, 0x01, 0x7f, 0x80, 0xff, message[i].wrapping_add(1)] {
                    if value == message[i] {
                        continue;
                    }
                    let mut mutated = stream.to_vec();
                    mutated[offset + i] = value;
                    let changes = peer_changes(&mutated);
                    let mut rest = real.iter();
                    assert!(
                        changes.iter().all(|c| rest.any(|r| r == c)),
                        "byte {i} of the message at {offset} set to {value:#04x}: {changes:?}, \
                         real {real:?}"
                    );
                    tried += 1;
                }
            }
            offset += message.len();
        }
        assert!(tried > 3000, "{tried}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Random edits anywhere in a real stream, read in random chunks: no panic; after a framing
    /// error nothing more comes out; every message that does come out is complete.
    #[test]
    fn mutated_streams_never_panic(
        which in 0usize..2,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        insert in proptest::collection::vec(any::<u8>(), 0..16),
        chunk in 1usize..512,
    ) {
        let mut stream = [STARTUP, DUMMY_OPEN][which].to_vec();
        for (at, value) in edits {
            let i = at.index(stream.len());
            stream[i] = value;
        }
        let at = cut.index(stream.len());
        stream.splice(at..at, insert);
        let items = replay_all(&stream, chunk);
        // After a framing error nothing more comes out.
        if let Some(lost) = items.iter().position(Result::is_err) {
            prop_assert_eq!(lost, items.len() - 1, "items after the framing error");
        }
        // Every message is complete: the framer's pieces are whole messages (their length field
        // says so) that tile the start of the stream, one per decoded message, and a malformed
        // one keeps exactly its piece.
        let mut framer = Framer::new(DEFAULT_MAX_MESSAGE_LEN);
        let mut pieces = Vec::new();
        for piece in stream.chunks(chunk) {
            framer.push(piece);
            pieces.extend(std::iter::from_fn(|| framer.next_message()).filter_map(Result::ok));
        }
        let mut offset = 0;
        for piece in &pieces {
            let len = u32::from_be_bytes([piece[1], piece[2], piece[3], piece[4]]) as usize;
            prop_assert_eq!(piece.len(), len);
            prop_assert_eq!(&piece[..], &stream[offset..offset + len]);
            offset += len;
        }
        let messages: Vec<&BmpMessage> = items.iter().filter_map(|i| i.as_ref().ok()).collect();
        prop_assert_eq!(messages.len(), pieces.len());
        for (message, piece) in messages.iter().zip(&pieces) {
            if let BmpMessage::Malformed(m) = message {
                prop_assert_eq!(&m.raw, piece);
            }
        }
    }

    /// Arbitrary bytes, as a stream and as single messages.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = replay(&bytes, 64);
        let _ = decode(Bytes::from(bytes));
    }
}

/// The fixtures README's size and sha256 columns describe the files that are there.
#[test]
fn fixture_readme_rows_match_the_files() {
    use sha2::{Digest, Sha256};
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let readme = std::fs::read_to_string(format!("{dir}/README.md")).expect("README");
    let mut checked = 0;
    for line in readme.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let name = cells[1].trim_matches('`');
        let size: usize = cells[4].parse().expect("size column");
        let sha = cells[5].trim_matches('`');
        let bytes = std::fs::read(format!("{dir}/{name}")).expect("fixture file");
        assert_eq!(bytes.len(), size, "{name}");
        let digest: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(digest, sha, "{name}");
        checked += 1;
    }
    assert_eq!(checked, 2);
}
