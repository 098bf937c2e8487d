//! Ground truth of the network half: when the lab really added, moved, removed or withheld a VM address,
//! applied FRR configuration to a node, restarted a router or changed a link, and when a BGP route
//! entered or left ext's kernel FIB (observed independently of the harness). Stamped with `Instant` (the
//! harness's clock, CLOCK_MONOTONIC) and wall time at the moment the change completed, so tests can
//! measure the harness's measurement error.

use std::fmt::Debug;
use std::net::Ipv4Addr;
use std::sync::Mutex;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;

/// One thing the lab's network did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "camelCase")]
pub enum NetEvent {
    /// A VM address now answers on `node` (its /32 is on the vmhost's `lo` and routed by every node).
    /// Recorded when the dataplane round that added it ended; the round took `applying_ns`, so the
    /// address began answering somewhere in that window before this instant.
    #[serde(rename_all = "camelCase")]
    AddressAdded {
        address: Ipv4Addr,
        node: String,
        vm: Option<String>,
        applying_ns: u64,
    },
    /// A VM address moved (migration switch-over) from one node to another: it answers on `to`
    /// from somewhere in the `applying_ns` before this instant (the source copy goes afterwards).
    #[serde(rename_all = "camelCase")]
    AddressMoved {
        address: Ipv4Addr,
        from: String,
        to: String,
        vm: Option<String>,
        applying_ns: u64,
    },
    /// A VM address is gone.
    #[serde(rename_all = "camelCase")]
    AddressRemoved {
        address: Ipv4Addr,
        node: String,
        vm: Option<String>,
    },
    /// FRR configuration was applied to a node's bgpd; prefixes whose `network` line appeared/vanished.
    #[serde(rename_all = "camelCase")]
    FrrConfigApplied {
        node: String,
        prefixes_added: Vec<String>,
        prefixes_removed: Vec<String>,
        commands: usize,
        result: String,
    },
    /// A router daemon was restarted (fault injection).
    #[serde(rename_all = "camelCase")]
    RouterRestarted { router: String, daemon: String },
    /// A router's uplink went down or up (fault injection).
    #[serde(rename_all = "camelCase")]
    LinkChanged { router: String, up: bool },
    /// A router's BMP session(s) to `targets` were aborted (fault injection); `connections` is how
    /// many established connections there were to abort.
    #[serde(rename_all = "camelCase")]
    BmpSessionDropped {
        router: String,
        targets: Vec<String>,
        connections: usize,
    },
    /// The router's bgpd had a BMP connection established again, `after_ms` after the drop.
    #[serde(rename_all = "camelCase")]
    BmpSessionReestablished { router: String, after_ms: u64 },
    /// A VM address is withheld (the silent-VM fault): its node routes are installed but the vmhost
    /// holds a blackhole /32 instead of the address, so probes are dropped and no egress call is made.
    #[serde(rename_all = "camelCase")]
    AddressWithheld {
        address: Ipv4Addr,
        node: String,
        vm: Option<String>,
    },
    /// A BGP route (protocol 186) entered ext's main-table kernel FIB or changed there (a new
    /// `RTM_NEWROUTE`, e.g. next hops added); `next_hops` sorted, one per ECMP path. Only routes FRR
    /// installs are recorded (see [`crate::fib_observer`]); `prefix` is `a.b.c.d/len`.
    #[serde(rename_all = "camelCase")]
    FibRouteAdded {
        prefix: String,
        next_hops: Vec<Ipv4Addr>,
        protocol: String,
    },
    /// A BGP route left ext's main-table kernel FIB (`RTM_DELROUTE`).
    #[serde(rename_all = "camelCase")]
    FibRouteRemoved { prefix: String, protocol: String },
    /// ext's FIB observer lost notifications (the kernel reported `ENOBUFS`): route events around
    /// this instant may be missing from the ground truth.
    FibObserverOverrun,
    /// ext's FIB observer could not get real-time priority: its stamps may include scheduling delay.
    #[serde(rename_all = "camelCase")]
    FibObserverNormalPriority { why: String },
    /// ext's FIB observer's socket failed; no FIB ground truth is recorded after this.
    #[serde(rename_all = "camelCase")]
    FibObserverFailed { error: String },
    /// A VM made its egress call; `status` is the HTTP status or the error.
    #[serde(rename_all = "camelCase")]
    EgressCall {
        address: Ipv4Addr,
        url: String,
        status: String,
    },
}

/// Receives ground-truth events. `at` is when the change completed.
pub trait GroundTruthSink: Send + Sync + Debug {
    fn record(&self, at: Instant, wall: DateTime<Utc>, event: NetEvent);
}

/// A sink that drops everything (when nobody needs ground truth).
#[derive(Debug, Default)]
pub struct NoGroundTruth;

impl GroundTruthSink for NoGroundTruth {
    fn record(&self, _: Instant, _: DateTime<Utc>, _: NetEvent) {}
}

/// A sink that keeps events in memory (tests, benchmarks).
#[derive(Debug, Default)]
pub struct MemoryGroundTruth {
    events: Mutex<Vec<(Instant, DateTime<Utc>, NetEvent)>>,
}

impl MemoryGroundTruth {
    /// All events so far.
    pub fn events(&self) -> Vec<(Instant, DateTime<Utc>, NetEvent)> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }
}

impl GroundTruthSink for MemoryGroundTruth {
    fn record(&self, at: Instant, wall: DateTime<Utc>, event: NetEvent) {
        if let Ok(mut e) = self.events.lock() {
            e.push((at, wall, event));
        }
    }
}

/// A sink appending one JSON line per event (`monoNs` since the sink's start, `wall` RFC 3339 ns, the
/// event's fields), flushed per line; also kept in memory. The lab API's log has no kinds for these
/// events, so the network half writes `<state_dir>/net-ground-truth.jsonl` next to it; `wall` makes
/// the two files mergeable.
#[derive(Debug)]
pub struct JsonlGroundTruth {
    start: Instant,
    file: Mutex<std::io::BufWriter<std::fs::File>>,
    memory: MemoryGroundTruth,
}

impl JsonlGroundTruth {
    /// Creates (truncates) the file.
    pub fn create(path: &std::path::Path) -> std::io::Result<Self> {
        Ok(JsonlGroundTruth {
            start: Instant::now(),
            file: Mutex::new(std::io::BufWriter::new(std::fs::File::create(path)?)),
            memory: MemoryGroundTruth::default(),
        })
    }

    /// All events so far.
    pub fn events(&self) -> Vec<(Instant, DateTime<Utc>, NetEvent)> {
        self.memory.events()
    }
}

impl GroundTruthSink for JsonlGroundTruth {
    fn record(&self, at: Instant, wall: DateTime<Utc>, event: NetEvent) {
        use std::io::Write;
        let mono = at.saturating_duration_since(self.start);
        let mut line = serde_json::to_value(&event).unwrap_or_default();
        if let Some(o) = line.as_object_mut() {
            o.insert(
                "monoNs".into(),
                serde_json::json!(u64::try_from(mono.as_nanos()).unwrap_or(u64::MAX)),
            );
            o.insert(
                "wall".into(),
                serde_json::json!(wall.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)),
            );
        }
        if let Ok(mut f) = self.file.lock() {
            let _ = writeln!(f, "{line}");
            let _ = f.flush();
        }
        self.memory.record(at, wall, event);
    }
}

/// Records an event stamped now.
pub(crate) fn record_now(sink: &dyn GroundTruthSink, event: NetEvent) {
    sink.record(Instant::now(), Utc::now(), event);
}

/// Records an event that happened at `at` (earlier): its wall time is now's minus the time since.
pub(crate) fn record_at(sink: &dyn GroundTruthSink, at: Instant, event: NetEvent) {
    let (now, wall) = (Instant::now(), Utc::now());
    let since = chrono::Duration::from_std(now.saturating_duration_since(at)).unwrap_or_default();
    sink.record(at, wall - since, event);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialise_with_a_tag() {
        let e = NetEvent::AddressMoved {
            address: Ipv4Addr::new(198, 19, 1, 10),
            from: "node-1".into(),
            to: "node-2".into(),
            vm: Some("ns/vm-1".into()),
            applying_ns: 1500,
        };
        assert_eq!(
            serde_json::to_value(&e).expect("serialise"),
            serde_json::json!({"event": "addressMoved", "address": "198.19.1.10", "from": "node-1", "to": "node-2", "vm": "ns/vm-1", "applyingNs": 1500})
        );
        let sink = MemoryGroundTruth::default();
        record_now(&sink, e.clone());
        assert_eq!(sink.events()[0].2, e);
        // An earlier instant keeps its distance to now on the wall clock too.
        let earlier = Instant::now() - std::time::Duration::from_millis(50);
        record_at(&sink, earlier, e.clone());
        let (at, wall, _) = sink.events()[1].clone();
        assert_eq!(at, earlier);
        let behind = Utc::now() - wall;
        assert!(behind >= chrono::Duration::milliseconds(50), "{behind:?}");
    }
}
