//! The ground-truth log: when the lab really did each thing, stamped on one monotonic clock, kept in memory and
//! appended to a JSON-lines file.

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

/// The log. Shared by every controller; cheap to append to.
#[derive(Debug)]
pub struct GroundTruth {
    start: Instant,
    start_wall: SystemTime,
    events: Mutex<Vec<GroundTruthEvent>>,
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
            events: Mutex::new(Vec::new()),
            file: Mutex::new(file),
        })
    }

    /// The lab's clock origin.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// Records an event that happened at `at` (callers stamp at the moment the thing happened).
    pub fn record_at(&self, at: Instant, event: GroundTruthKind, object: ObjectRef, detail: Value) {
        let mono = at.saturating_duration_since(self.start);
        let wall_time = self.start_wall + mono;
        let wall = chrono::DateTime::<chrono::Utc>::from(wall_time)
            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let record = GroundTruthEvent {
            at,
            mono_ns: u64::try_from(mono.as_nanos()).unwrap_or(u64::MAX),
            wall,
            event,
            object,
            detail,
        };
        if let Ok(mut file) = self.file.lock()
            && let Some(w) = file.as_mut()
            && let Ok(line) = serde_json::to_string(&record)
        {
            // A failing log file must not stop the lab; the in-memory log stays complete.
            let _ = writeln!(w, "{line}");
            let _ = w.flush();
        }
        if let Ok(mut events) = self.events.lock() {
            events.push(record);
        }
    }

    /// Records an event happening now.
    pub fn record(&self, event: GroundTruthKind, object: ObjectRef, detail: Value) {
        self.record_at(Instant::now(), event, object, detail);
    }

    /// A copy of every event so far, in record order.
    pub fn events(&self) -> Vec<GroundTruthEvent> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// Number of events of one kind so far.
    pub fn count(&self, event: GroundTruthKind) -> usize {
        self.events
            .lock()
            .map(|e| e.iter().filter(|r| r.event == event).count())
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
            .map(|e| {
                e.iter()
                    .filter(|r| {
                        r.event == event
                            && r.object.name == name
                            && namespace.is_none_or(|ns| r.object.namespace == ns)
                    })
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Waits until an event matching `pred` exists, polling the in-memory log.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        pred: impl Fn(&GroundTruthEvent) -> bool,
    ) -> Option<GroundTruthEvent> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(events) = self.events.lock()
                && let Some(e) = events.iter().find(|e| pred(e))
            {
                return Some(e.clone());
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
    }
}
