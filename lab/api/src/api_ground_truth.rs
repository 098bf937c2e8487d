//! The ground-truth log: when the lab really did each thing, stamped on one monotonic clock, kept in memory and
//! appended to a JSON-lines file.
//!
//! In memory each record is compact (instant, interned kind and namespace, boxed name, serialized detail; a 10,000
//! VM run keeps 80,000 of them): the wall time and the detail `Value` are rebuilt when a record is read.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use serde_json::Value;

use crate::error::LabError;

/// What happened. Serialized as snake_case in the `event` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GroundTruthKind {
    LabStarted,
    LabStopped,
    VmiCreated,
    VmiPhase,
    VmiRunning,
    VmiDeleted,
    IpAllocated,
    IpAllocationFailed,
    IpReleased,
    MigrationStarted,
    MigrationSwitchover,
    MigrationCompleted,
    NetworkCreated,
    NadCreated,
    RouteAdvertisementsAccepted,
    RouteAdvertisementsRejected,
    FrrConfigurationGenerated,
    FrrConfigurationUpdated,
    FrrConfigurationDeleted,
    DataplaneUp,
    DataplaneMoved,
    DataplaneDown,
    DataplaneFailed,
    FaultsChanged,
    WatchesExpired,
}

/// The object an event is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectRef {
    pub kind: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    pub name: String,
}

impl ObjectRef {
    pub fn new(kind: &str, namespace: &str, name: &str) -> Self {
        ObjectRef {
            kind: kind.to_string(),
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

/// One ground-truth record.
#[derive(Debug, Clone, Serialize)]
pub struct GroundTruthEvent {
    /// The instant itself, for in-process comparison with the harness's own `Instant`s.
    #[serde(skip)]
    pub at: Instant,
    /// Nanoseconds since the lab started (monotonic).
    pub mono_ns: u64,
    /// Wall time derived from the lab's start wall time plus `mono_ns` (RFC 3339, UTC, ns).
    pub wall: String,
    pub event: GroundTruthKind,
    pub object: ObjectRef,
    /// Event-specific facts (phase, node, IPs, ...).
    #[serde(skip_serializing_if = "Value::is_null")]
    pub detail: Value,
}

/// One record as kept in memory.
#[derive(Debug)]
struct Record {
    at: Instant,
    event: GroundTruthKind,
    /// Index into [`Log::strings`].
    kind: u32,
    /// Index into [`Log::strings`].
    namespace: u32,
    name: Box<str>,
    /// The detail as JSON; `None` for `Null`.
    detail: Option<Box<str>>,
}

/// The in-memory log: records plus the few distinct object kinds and namespaces they name.
#[derive(Debug, Default)]
struct Log {
    records: Vec<Record>,
    strings: Vec<Box<str>>,
    string_ids: HashMap<Box<str>, u32>,
}

impl Log {
    fn intern(&mut self, s: String) -> u32 {
        if let Some(id) = self.string_ids.get(s.as_str()) {
            return *id;
        }
        let id = u32::try_from(self.strings.len()).unwrap_or(u32::MAX);
        let s: Box<str> = s.into_boxed_str();
        self.strings.push(s.clone());
        self.string_ids.insert(s, id);
        id
    }

    fn string(&self, id: u32) -> &str {
        self.strings.get(id as usize).map_or("", |s| s)
    }
}

/// The log. Shared by every controller; cheap to append to.
#[derive(Debug)]
pub struct GroundTruth {
    start: Instant,
    start_wall: SystemTime,
    events: Mutex<Log>,
    file: Mutex<Option<std::io::BufWriter<std::fs::File>>>,
}

impl GroundTruth {
    /// A log whose clock starts now; `path` (if any) is truncated and receives one JSON line per event.
    pub fn new(path: Option<&Path>) -> Result<Self, LabError> {
        let file = match path {
            Some(p) => Some(std::io::BufWriter::new(std::fs::File::create(p).map_err(
                |source| LabError::OpenGroundTruth {
                    path: p.to_path_buf(),
                    source,
                },
            )?)),
            None => None,
        };
        Ok(GroundTruth {
            start: Instant::now(),
            start_wall: SystemTime::now(),
            events: Mutex::new(Log::default()),
            file: Mutex::new(file),
        })
    }

    /// The lab's clock origin.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// The full event for `at`, as recorded.
    fn event(
        &self,
        at: Instant,
        event: GroundTruthKind,
        object: ObjectRef,
        detail: Value,
    ) -> GroundTruthEvent {
        let mono = at.saturating_duration_since(self.start);
        let wall_time = self.start_wall + mono;
        let wall = chrono::DateTime::<chrono::Utc>::from(wall_time)
            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        GroundTruthEvent {
            at,
            mono_ns: u64::try_from(mono.as_nanos()).unwrap_or(u64::MAX),
            wall,
            event,
            object,
            detail,
        }
    }

    fn expand(&self, log: &Log, r: &Record) -> GroundTruthEvent {
        let object = ObjectRef {
            kind: log.string(r.kind).to_string(),
            namespace: log.string(r.namespace).to_string(),
            name: r.name.to_string(),
        };
        let detail = r
            .detail
            .as_deref()
            .and_then(|d| serde_json::from_str(d).ok())
            .unwrap_or(Value::Null);
        self.event(r.at, r.event, object, detail)
    }

    /// Records an event that happened at `at` (callers stamp at the moment the thing happened).
    pub fn record_at(&self, at: Instant, event: GroundTruthKind, object: ObjectRef, detail: Value) {
        if let Ok(mut file) = self.file.lock()
            && let Some(w) = file.as_mut()
            && let Ok(line) =
                serde_json::to_string(&self.event(at, event, object.clone(), detail.clone()))
        {
            // A failing log file must not stop the lab; the in-memory log stays complete.
            let _ = writeln!(w, "{line}");
            let _ = w.flush();
        }
        let detail = (!detail.is_null())
            .then(|| serde_json::to_string(&detail).ok())
            .flatten()
            .map(String::into_boxed_str);
        if let Ok(mut log) = self.events.lock() {
            let kind = log.intern(object.kind);
            let namespace = log.intern(object.namespace);
            log.records.push(Record {
                at,
                event,
                kind,
                namespace,
                name: object.name.into_boxed_str(),
                detail,
            });
        }
    }

    /// Records an event happening now.
    pub fn record(&self, event: GroundTruthKind, object: ObjectRef, detail: Value) {
        self.record_at(Instant::now(), event, object, detail);
    }

    /// A copy of every event so far, in record order.
    pub fn events(&self) -> Vec<GroundTruthEvent> {
        self.events
            .lock()
            .map(|log| log.records.iter().map(|r| self.expand(&log, r)).collect())
            .unwrap_or_default()
    }

    /// Number of events so far.
    pub fn len(&self) -> usize {
        self.events.lock().map(|log| log.records.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of events of one kind so far.
    pub fn count(&self, event: GroundTruthKind) -> usize {
        self.events
            .lock()
            .map(|log| log.records.iter().filter(|r| r.event == event).count())
            .unwrap_or(0)
    }

    /// Events of one kind about one object name (any namespace when `namespace` is `None`).
    pub fn find(
        &self,
        event: GroundTruthKind,
        namespace: Option<&str>,
        name: &str,
    ) -> Vec<GroundTruthEvent> {
        self.events
            .lock()
            .map(|log| {
                log.records
                    .iter()
                    .filter(|r| {
                        r.event == event
                            && &*r.name == name
                            && namespace.is_none_or(|ns| log.string(r.namespace) == ns)
                    })
                    .map(|r| self.expand(&log, r))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Waits until an event matching `pred` exists, polling the in-memory log (`pred` sees each event once).
    pub async fn wait_for(
        &self,
        timeout: Duration,
        pred: impl Fn(&GroundTruthEvent) -> bool,
    ) -> Option<GroundTruthEvent> {
        let deadline = Instant::now() + timeout;
        // The log only grows: records that failed `pred` once are not looked at again.
        let mut checked = 0;
        loop {
            if let Ok(log) = self.events.lock() {
                for r in &log.records[checked.min(log.records.len())..] {
                    let e = self.expand(&log, r);
                    if pred(&e) {
                        return Some(e);
                    }
                }
                checked = log.records.len();
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn writes_json_lines_with_monotonic_and_wall_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gt.jsonl");
        let gt = GroundTruth::new(Some(&path)).unwrap();
        gt.record(
            GroundTruthKind::VmiRunning,
            ObjectRef::new("VirtualMachineInstance", "ns", "vm-1"),
            json!({"node": "node-1"}),
        );
        gt.record(
            GroundTruthKind::IpAllocated,
            ObjectRef::new("IPAMClaim", "ns", "vm-1.default"),
            Value::Null,
        );
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["event"], "vmi_running");
        assert_eq!(lines[0]["object"]["name"], "vm-1");
        assert_eq!(lines[0]["detail"]["node"], "node-1");
        assert!(lines[1].get("detail").is_none());
        assert!(lines[0]["mono_ns"].as_u64().unwrap() <= lines[1]["mono_ns"].as_u64().unwrap());
        assert!(chrono::DateTime::parse_from_rfc3339(lines[0]["wall"].as_str().unwrap()).is_ok());
        assert_eq!(
            gt.find(GroundTruthKind::VmiRunning, Some("ns"), "vm-1")
                .len(),
            1
        );
        assert!(
            gt.find(GroundTruthKind::VmiRunning, Some("other"), "vm-1")
                .is_empty()
        );
        // The in-memory form gives back exactly what the file got.
        let events = gt.events();
        assert_eq!(gt.len(), 2);
        for (e, line) in events.iter().zip(&lines) {
            assert_eq!(&serde_json::to_value(e).unwrap(), line);
        }
    }
}
