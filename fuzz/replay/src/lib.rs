//! The bodies of the fuzz targets in `fuzz/fuzz_targets/` (DESIGN §7: parsers never panic and are
//! fuzzed). Each takes arbitrary bytes, hands them to one of the project's real parsers the way
//! its caller does, and asserts invariants of the result: a panic here is a finding, whether it
//! comes from the parser or from a violated invariant. The cargo-fuzz targets (nightly, libFuzzer)
//! and the stable replay test (`tests/replay.rs`, over `fuzz/corpus/` and `fuzz/artifacts/`) call
//! exactly these functions. Nothing here does I/O or touches the network.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde_json::{Value, json};
use vmbgp_bench::cli::PlanArgs;
use vmbgp_bench::config::{ConfigError, Profile};
use vmbgp_bgp::bmp::framer::{BMP_VERSION, COMMON_HEADER_LEN, Framer};
use vmbgp_bgp::bmp::{
    BmpEvent, BmpEventKind, BmpMessage, DEFAULT_MAX_MESSAGE_LEN, DisconnectReason, PeerBook,
    PeerKey, PeerType, StreamDecoder,
};
use vmbgp_bgp::fib::{FibEvent, parse_datagram};
use vmbgp_host::clock::MonoStamp;
use vmbgp_lab_api::registry::{KindId, Registry};
use vmbgp_lab_api::store::{FieldValidation, Patch, Store, Validator, WriteOptions};
use vmbgp_lab_api::validation::schema_registry_and_validator;
use vmbgp_lab_api::{ApiError, store::Written};
use vmbgp_schema::{SchemaSet, Strictness};

/// One fuzz target: its name (the file `fuzz/fuzz_targets/<name>.rs` and the directories
/// `fuzz/corpus/<name>/` and `fuzz/artifacts/<name>/`) and its body.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
}

/// Every fuzz target, by its name in fuzz/fuzz_targets/.
pub const TARGETS: &[Target] = &[
    Target {
        name: "bmp_stream",
        run: bmp_stream,
    },
    Target {
        name: "netlink_route",
        run: netlink_route,
    },
    Target {
        name: "profile",
        run: profile,
    },
    Target {
        name: "es_bulk_response",
        run: es_bulk_response,
    },
    Target {
        name: "lab_api_body",
        run: lab_api_body,
    },
];

/// The target called `name`, if it is compiled in.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().copied().find(|t| t.name == name)
}

/// A read size derived from the input, so every input is also read in pieces that split its
/// messages at varying places (1..=97 bytes).
fn chunk_size(data: &[u8]) -> usize {
    let h = data
        .iter()
        .fold(17u32, |h, &b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    1 + (h % 97) as usize
}

// ---------------------------------------------------------------------------------------------
// bmp_stream
// ---------------------------------------------------------------------------------------------

/// Longest message the framer keeps for its error report ([`vmbgp_bgp::bmp::framer`]).
const RAW_KEPT_ON_ERROR: usize = 4096;

/// What the BMP station does with a connection's bytes: framing ([`Framer`]), decoding
/// ([`StreamDecoder`], as replays do) and the peer states ([`PeerBook`]).
///
/// Invariants: every framed message is whole, version 3, and exactly as long as its header says;
/// the messages are the stream's bytes in order, without gaps; after a framing error nothing more
/// comes out, ever; a malformed message keeps its bytes; reading the stream in pieces gives the
/// same messages as reading it at once; a decoder panic fenced by `catch_unwind` is a finding
/// too; the peer book reports only real state changes.
pub fn bmp_stream(data: &[u8]) {
    for max in [DEFAULT_MAX_MESSAGE_LEN, 512] {
        check_framer(data, max, chunk_size(data));
    }
    let whole = decode_stream(data, data.len().max(1));
    let pieces = decode_stream(data, chunk_size(data));
    assert_eq!(
        whole, pieces,
        "reading in pieces changed the decoded stream"
    );
    let mut framer = Framer::new(DEFAULT_MAX_MESSAGE_LEN);
    framer.push(data);
    let mut framed = Vec::new();
    while let Some(Ok(m)) = framer.next_message() {
        framed.push(m);
    }
    let decoded: Vec<&BmpMessage> = whole.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(decoded.len(), framed.len(), "one decoded message per frame");
    for (message, raw) in decoded.iter().zip(&framed) {
        if let BmpMessage::Malformed(m) = message {
            assert_eq!(&m.raw, raw, "a malformed message keeps its bytes");
            assert_eq!(m.msg_type, raw.get(5).copied());
            assert!(
                !m.error.contains("decoder panicked"),
                "the BMP decoder panicked (fenced by catch_unwind): {}",
                m.error
            );
        }
    }
    check_peer_book(&decoded);
}

/// Frames `data` read in `chunk`-byte pieces and checks every message and error.
fn check_framer(data: &[u8], max: usize, chunk: usize) {
    let max = max.max(COMMON_HEADER_LEN);
    let mut framer = Framer::new(max);
    let mut pushed = 0usize;
    let mut consumed = 0usize;
    let mut failed = false;
    for piece in data.chunks(chunk) {
        framer.push(piece);
        pushed += piece.len();
        while let Some(next) = framer.next_message() {
            assert!(
                !failed,
                "the framer yielded something after a framing error"
            );
            match next {
                Ok(m) => {
                    assert!(
                        m.len() >= COMMON_HEADER_LEN && m.len() <= max,
                        "{}",
                        m.len()
                    );
                    assert_eq!(m[0], BMP_VERSION);
                    let len = u32::from_be_bytes([m[1], m[2], m[3], m[4]]) as usize;
                    assert_eq!(len, m.len(), "message length differs from its header");
                    assert_eq!(
                        &data[consumed..consumed + len],
                        &m[..],
                        "not the stream's bytes"
                    );
                    consumed += len;
                }
                Err(e) => {
                    failed = true;
                    let raw = e.raw();
                    assert!(raw.len() <= RAW_KEPT_ON_ERROR);
                    assert!(raw.len() >= COMMON_HEADER_LEN);
                    assert!(
                        data[consumed..pushed].starts_with(raw),
                        "the error's bytes are not where framing was lost"
                    );
                    assert!(!e.to_string().is_empty());
                }
            }
        }
        if failed {
            assert_eq!(framer.pending(), 0, "a failed framer keeps nothing");
        } else {
            assert_eq!(
                framer.pending(),
                pushed - consumed,
                "bytes lost or invented"
            );
        }
    }
    if !failed && framer.pending() >= COMMON_HEADER_LEN {
        let rest = &data[consumed..];
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        assert!(len > rest.len(), "a whole message was left in the buffer");
    }
    // A failed framer stays failed, whatever comes next.
    if failed {
        framer.push(&[BMP_VERSION, 0, 0, 0, 6, 4]);
        assert!(framer.next_message().is_none());
        assert_eq!(framer.pending(), 0);
    }
}

/// The decoder's output for `data` read in `chunk`-byte pieces; framing errors by their text (the
/// bytes they keep depend on how much had been read).
fn decode_stream(data: &[u8], chunk: usize) -> Vec<Result<BmpMessage, String>> {
    let mut decoder = StreamDecoder::new(DEFAULT_MAX_MESSAGE_LEN);
    let mut out = Vec::new();
    let mut failed = false;
    for piece in data.chunks(chunk) {
        decoder.push(piece);
        while let Some(next) = decoder.next_message() {
            assert!(
                !failed,
                "the decoder yielded something after a framing error"
            );
            failed |= next.is_err();
            out.push(next.map_err(|e| e.to_string()));
        }
    }
    out
}

/// Feeds the messages to a [`PeerBook`] as one connection's events, then the disconnect: every
/// reported change is a change, and the book agrees with the last one.
fn check_peer_book(messages: &[&BmpMessage]) {
    let router = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let event = |i: usize, kind: BmpEventKind| BmpEvent {
        at: MonoStamp::from_offset(Duration::from_millis(i as u64)),
        connection: 1,
        router: Some(router),
        kind,
    };
    let mut book = PeerBook::new();
    let mut up: BTreeSet<PeerKey> = BTreeSet::new();
    for (i, message) in messages.iter().enumerate() {
        let changes = book.on_event(&event(i, BmpEventKind::Message((*message).clone())));
        let reporting_peer = match message {
            BmpMessage::PeerUp(u) => Some((&u.peer, true)),
            BmpMessage::PeerDown(d) => Some((&d.peer, false)),
            _ => None,
        };
        assert!(changes.len() <= 1, "one message, one peer: {changes:?}");
        for change in &changes {
            let (peer, is_up) = reporting_peer.expect("only Peer Up/Down change peers");
            assert_ne!(peer.peer_type, PeerType::LocalRib, "Loc-RIB is no session");
            assert_eq!(change.up, is_up);
            assert_eq!(
                (change.peer.address, change.peer.distinguisher),
                (peer.address, peer.distinguisher)
            );
            assert_eq!(change.peer.router, router);
            assert_eq!(change.connection, 1);
            let was_up = if change.up {
                !up.insert(change.peer)
            } else {
                up.remove(&change.peer)
            };
            assert_ne!(
                was_up, change.up,
                "a change that changes nothing: {change:?}"
            );
        }
        assert_eq!(book.peers_up(), up, "the book disagrees with its changes");
        assert!(book.is_authoritative(1));
    }
    let closing = book.on_event(&event(
        messages.len(),
        BmpEventKind::Disconnected(DisconnectReason::StationStopped),
    ));
    assert!(closing.is_empty(), "no other connection to fail over to");
    assert!(!book.observing(router));
    assert_eq!(
        book.peers_up(),
        up,
        "peers keep their last state unobserved"
    );
}

// ---------------------------------------------------------------------------------------------
// netlink_route
// ---------------------------------------------------------------------------------------------

/// The main routing table (`RT_TABLE_MAIN`).
const MAIN_TABLE: u32 = 254;

/// The FIB watcher's datagram parser ([`parse_datagram`]), with and without its table filter; our
/// netlink port is the first message's (so the fuzzer can reach the dump-reply paths).
///
/// Invariants: at most one event per 16-byte netlink header; every route carries the read's stamp,
/// a valid IPv4 prefix, sorted and deduplicated next hops and interfaces; filtering by table keeps
/// exactly the unfiltered routes of that table and every other event.
pub fn netlink_route(data: &[u8]) {
    let at = MonoStamp::from_offset(Duration::from_micros(1234));
    let own_port = data
        .get(12..16)
        .map_or(0, |p| u32::from_ne_bytes([p[0], p[1], p[2], p[3]]));
    let all = parse_datagram(data, at, own_port, None);
    assert!(
        all.len() <= data.len() / 16 + 1,
        "{} events from {} bytes",
        all.len(),
        data.len()
    );
    for event in &all {
        match event {
            FibEvent::Route(r) => {
                assert_eq!(r.at, at);
                assert!(r.prefix.prefix_len() <= 32);
                assert!(r.next_hops.windows(2).all(|w| w[0] < w[1]), "{r:?}");
                assert!(r.interfaces.windows(2).all(|w| w[0] < w[1]), "{r:?}");
                assert!(!r.protocol.is_empty() && !r.route_type.is_empty());
            }
            FibEvent::DumpComplete { at: a } | FibEvent::Overrun { at: a } => assert_eq!(*a, at),
            FibEvent::Undecodable { at: a, error } => {
                assert_eq!(*a, at);
                assert!(!error.is_empty());
            }
            other => panic!("the parser made a watcher-only event: {other:?}"),
        }
    }
    let main = parse_datagram(data, at, own_port, Some(MAIN_TABLE));
    let expected: Vec<&FibEvent> = all
        .iter()
        .filter(|e| !matches!(e, FibEvent::Route(r) if r.table != MAIN_TABLE))
        .collect();
    assert_eq!(
        main.iter().collect::<Vec<_>>(),
        expected,
        "the table filter must drop exactly the other tables' routes"
    );
}

// ---------------------------------------------------------------------------------------------
// profile
// ---------------------------------------------------------------------------------------------

/// Profile YAML as `load_profile` parses it (`serde_saphyr` into [`Profile`], what the private
/// `config::profile::parse_profile` does), then planning with no overrides ([`vmbgp_bench::config::plan`]).
///
/// Invariants: non-UTF-8 is refused before parsing (as `read_to_string` does); every planning
/// problem names a field and says why; a plan that validates is consistent (counts, unique
/// names, every VM in a planned network and its static address inside that network's subnet).
pub fn profile(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let profile: Profile = match serde_saphyr::from_str(text) {
        Ok(p) => p,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    match vmbgp_bench::config::plan(&profile, &PlanArgs::default()) {
        Err(ConfigError::Invalid(problems)) => {
            assert!(!problems.is_empty(), "Invalid without a problem");
            for p in &problems {
                assert!(
                    !p.field.trim().is_empty(),
                    "a problem names no field: {p:?}"
                );
                assert!(
                    !p.message.trim().is_empty(),
                    "a problem says nothing: {p:?}"
                );
            }
        }
        Err(other) => panic!("planning a parsed profile failed without naming a field: {other}"),
        Ok(plan) => {
            assert!(plan.iterations >= 1 && plan.vm_count >= 1, "{plan:?}");
            assert!(plan.qps >= 1 && plan.burst >= plan.qps, "{plan:?}");
            assert!(!plan.networks.is_empty());
            let subnets: BTreeMap<&str, _> = plan
                .networks
                .iter()
                .map(|n| (n.name.as_str(), n.subnet))
                .collect();
            assert_eq!(
                subnets.len(),
                plan.networks.len(),
                "duplicate network names"
            );
            let mut names = BTreeSet::new();
            for vm in &plan.vms {
                assert!(
                    names.insert((vm.namespace.as_str(), vm.name.as_str())),
                    "duplicate VM {}",
                    vm.name
                );
                let subnet = subnets
                    .get(vm.network.as_str())
                    .unwrap_or_else(|| panic!("VM {} in an unplanned network", vm.name));
                if let Some(ip) = vm.static_ip {
                    assert!(subnet.contains(&ip), "{} not in {subnet}", vm.name);
                }
            }
            assert!(plan.peak_live_vms <= plan.vms.len() as u64);
            let dumped = serde_json::to_string(&plan).expect("a plan serializes");
            assert!(!dumped.is_empty());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// es_bulk_response
// ---------------------------------------------------------------------------------------------

/// An Elasticsearch `_bulk` response body as the reporter reads it: `reqwest`'s `text()` (lossy
/// UTF-8), then `vmbgp_reporters::es::parse_bulk_items` for the number of documents sent.
///
/// Invariants: a result is given only for the number of documents the body lists, one
/// `(status, reason)` per item in order, the status the item's own, a reason exactly when the item
/// has an error.
pub fn es_bulk_response(data: &[u8]) {
    use vmbgp_reporters::es::parse_bulk_items;

    let text = String::from_utf8_lossy(data);
    let body: Option<Value> = serde_json::from_str(&text).ok();
    let items = body
        .as_ref()
        .and_then(|b| b.get("items"))
        .and_then(Value::as_array);
    let listed = items.map(Vec::len);
    let mut tries = vec![0, 1, 2];
    tries.extend(listed);
    tries.extend(listed.map(|n| n + 1));
    for expected in tries {
        let Some(parsed) = parse_bulk_items(&text, expected) else {
            continue;
        };
        assert_eq!(
            listed,
            Some(expected),
            "a result for a count the body does not list"
        );
        assert_eq!(parsed.len(), expected);
        for (item, (status, reason)) in items.into_iter().flatten().zip(&parsed) {
            let result = item
                .as_object()
                .and_then(|o| o.values().next())
                .expect("a parsed item is an object with a result");
            assert_eq!(
                result.get("status").and_then(Value::as_u64),
                Some(u64::from(*status))
            );
            assert_eq!(
                result.get("error").is_some(),
                !reason.is_empty(),
                "{reason:?}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// lab_api_body
// ---------------------------------------------------------------------------------------------

/// The lab API's schema, registry and validator, built once (it is the same for every input).
struct Lab {
    set: Arc<SchemaSet>,
    registry: Arc<Registry>,
    validator: Option<Arc<dyn Validator>>,
}

fn lab() -> &'static Lab {
    static LAB: OnceLock<Lab> = OnceLock::new();
    LAB.get_or_init(|| {
        let (registry, validator) =
            schema_registry_and_validator().expect("the embedded schema set loads");
        Lab {
            set: Arc::new(SchemaSet::embedded().expect("the embedded schema set loads")),
            registry: Arc::new(registry),
            validator,
        }
    })
}

/// The namespace every namespaced write goes to.
const NAMESPACE: &str = "fuzz";

/// The objects patches are applied to: a custom kind (KubeVirt VM) and a core kind (a Namespace),
/// both as a client creates them.
fn patch_bases() -> [Value; 2] {
    [
        json!({
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachine",
            "metadata": {"name": "vm-0-1", "namespace": NAMESPACE, "labels": {"vmbgp.io/job": "fuzz"}},
            "spec": {
                "runStrategy": "Always",
                "template": {
                    "metadata": {"labels": {"app": "fuzz"}},
                    "spec": {
                        "domain": {
                            "devices": {"interfaces": [{"name": "net", "bridge": {}}]},
                            "resources": {"requests": {"memory": "256Mi"}}
                        },
                        "networks": [{"name": "net", "pod": {}}]
                    }
                }
            }
        }),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "patched"}}),
    ]
}

/// What the lab API server does with a request body after reading it: the first byte picks the
/// request (create with a JSON or YAML body, a merge, JSON or apply patch, an update, or the schema
/// validation alone), the rest is the body, decoded as the server decodes that content type and
/// handed to the real [`Store`] (with the real schema validator) on a fresh store.
///
/// Invariants: a refused request is a 4xx/5xx [`ApiError`] whose `Status` carries its code; an
/// accepted write returns the stored JSON of the object it returns, with a name and a
/// resourceVersion, readable back from the store, and valid against the schema it passed.
pub fn lab_api_body(data: &[u8]) {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let lab = lab();
    match selector % 8 {
        // POST, Content-Type application/json (or none).
        0 => {
            if let Ok(object) = serde_json::from_slice::<Value>(body) {
                create(lab, selector, object);
            }
        }
        // POST, Content-Type application/yaml.
        1 => {
            if let Some(object) = yaml(body) {
                create(lab, selector, object);
            }
        }
        // PATCH application/merge-patch+json.
        2 => {
            if let Ok(patch) = serde_json::from_slice::<Value>(body) {
                patch_base(lab, selector, Patch::Merge(patch));
            }
        }
        // PATCH application/json-patch+json.
        3 => {
            if let Ok(patch) = serde_json::from_slice::<json_patch::Patch>(body) {
                patch_base(lab, selector, Patch::Json(patch));
            }
        }
        // PATCH application/apply-patch+yaml.
        4 => {
            if let Some(body) = yaml(body) {
                let force = selector & 0x40 != 0;
                patch_base(lab, selector, Patch::Apply { body, force });
            }
        }
        // PATCH application/strategic-merge-patch+json (refused for custom kinds).
        5 => {
            if let Ok(patch) = serde_json::from_slice::<Value>(body) {
                patch_base(lab, selector, Patch::StrategicMerge(patch));
            }
        }
        // PUT application/json over the base object.
        6 => {
            if let Ok(object) = serde_json::from_slice::<Value>(body) {
                update_base(lab, selector, object);
            }
        }
        // The schema set alone, both modes, then pruning and defaulting.
        _ => {
            if let Ok(mut object) = serde_json::from_slice::<Value>(body) {
                for mode in [Strictness::Strict, Strictness::Prune] {
                    if let Err(violations) = lab.set.validate(&object, mode) {
                        assert!(!violations.to_string().is_empty());
                    }
                }
                let _ = lab.set.prune(&mut object);
                let _ = lab.set.apply_defaults(&mut object);
            }
        }
    }
}

/// A YAML body as the server reads it: UTF-8, then `serde_saphyr` into JSON values.
fn yaml(body: &[u8]) -> Option<Value> {
    let text = std::str::from_utf8(body).ok()?;
    serde_saphyr::from_str::<Value>(text).ok()
}

/// A fresh store holding the namespace writes go to.
fn fresh_store(lab: &Lab) -> Store {
    let store = Store::new(lab.registry.clone(), lab.validator.clone(), 64, 16, 7);
    let ns = kind_id(&store, "v1", "Namespace");
    store
        .create(
            ns,
            None,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}),
            &WriteOptions::default(),
        )
        .expect("the namespace is created");
    store
}

fn kind_id(store: &Store, api_version: &str, kind: &str) -> KindId {
    store
        .kind_id(api_version, kind)
        .unwrap_or_else(|| panic!("the lab serves {api_version} {kind}"))
}

/// Request options from the selector's high bits.
fn write_options(selector: u8) -> WriteOptions {
    WriteOptions {
        dry_run: selector & 0x80 != 0,
        field_validation: if selector & 0x20 != 0 {
            FieldValidation::Strict
        } else {
            FieldValidation::Prune
        },
        field_manager: Some("fuzz".to_string()),
    }
}

/// POST to the collection of the body's kind (or, when it names none the lab serves, of a kind
/// picked by the selector: the server takes the kind from the URL).
fn create(lab: &Lab, selector: u8, object: Value) {
    let store = fresh_store(lab);
    let kinds = store.registry().kinds().len();
    let kind = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .zip(object.get("kind").and_then(Value::as_str))
        .and_then(|(v, k)| store.kind_id(v, k))
        .unwrap_or(usize::from(selector >> 3) % kinds);
    let opts = write_options(selector);
    let result = store.create(kind, Some(NAMESPACE), object, &opts);
    check_write(lab, &store, kind, &opts, result);
}

/// Creates the base object picked by the selector, then patches it.
fn patch_base(lab: &Lab, selector: u8, patch: Patch) {
    let store = fresh_store(lab);
    let (kind, name, namespace) = create_base(&store, selector);
    let status_only = selector & 0x10 != 0;
    let opts = write_options(selector);
    let result = store.patch(kind, namespace, &name, patch, status_only, &opts);
    check_write(lab, &store, kind, &opts, result);
}

/// Creates the base object picked by the selector, then replaces it with `object`.
fn update_base(lab: &Lab, selector: u8, object: Value) {
    let store = fresh_store(lab);
    let (kind, name, namespace) = create_base(&store, selector);
    let status_only = selector & 0x10 != 0;
    let opts = write_options(selector);
    let result = store.update(kind, namespace, &name, object, status_only, &opts);
    check_write(lab, &store, kind, &opts, result);
}

fn create_base(store: &Store, selector: u8) -> (KindId, String, Option<&'static str>) {
    let [vm, ns] = patch_bases();
    let (base, namespace) = if selector & 0x08 == 0 {
        (vm, Some(NAMESPACE))
    } else {
        (ns, None)
    };
    let api_version = base["apiVersion"].as_str().unwrap_or_default().to_string();
    let kind = kind_id(
        store,
        &api_version,
        base["kind"].as_str().unwrap_or_default(),
    );
    let name = base["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    store
        .create(kind, namespace, base, &WriteOptions::default())
        .unwrap_or_else(|e| panic!("the base object {name} is created: {e}"));
    (kind, name, namespace)
}

/// Checks a write's result (see [`lab_api_body`]).
fn check_write(
    lab: &Lab,
    store: &Store,
    kind: KindId,
    opts: &WriteOptions,
    result: Result<Written, ApiError>,
) {
    let written = match result {
        Err(e) => {
            let code = e.code();
            assert!((400..600).contains(&code), "{code}: {e}");
            let status = e.to_status();
            assert_eq!(status["code"], json!(code));
            assert!(status["message"].as_str().is_some_and(|m| !m.is_empty()));
            return;
        }
        Ok(w) => w,
    };
    let object: &Value = &written.object;
    let json: Value = serde_json::from_slice(&written.json).expect("the stored JSON parses");
    assert_eq!(
        &json, object,
        "the JSON returned is not the object returned"
    );
    let resource = store.registry().get(kind).expect("a served kind");
    assert_eq!(object["apiVersion"], json!(resource.api_version()));
    assert_eq!(object["kind"], json!(resource.kind));
    let name = object["metadata"]["name"]
        .as_str()
        .expect("a stored object has a name");
    assert!(!name.is_empty());
    assert!(
        object["metadata"]["resourceVersion"]
            .as_str()
            .is_some_and(|rv| rv.parse::<u64>().is_ok()),
        "{object}"
    );
    if !opts.dry_run {
        let namespace = object["metadata"]["namespace"].as_str();
        let stored = store
            .get(kind, namespace, name)
            .expect("a written object can be read back");
        assert_eq!(&*stored, object, "the store holds another object");
    }
    if let Err(violations) = lab.set.validate(object, Strictness::Prune) {
        panic!("the store accepted an object its schema refuses: {violations}\n{object}");
    }
}
