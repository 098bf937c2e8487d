//! Watch and history: watch events and their lines, subscriptions that replay the retained per-kind history
//! before going live, and history expiry (simulated etcd compaction).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::body::Bytes;
use serde_json::Value;
use tokio::sync::broadcast;

use super::{ObjMeta, Store, Stored};
use crate::error::ApiError;
use crate::registry::KindId;

/// Watch event types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change of one object, shared by the history and all watchers. It holds the object serialized (the same
/// buffer the store keeps) and its metadata index; [`WatchEvent::object`] parses it for readers that need more.
#[derive(Debug)]
pub struct WatchEvent {
    pub kind: KindId,
    pub event_type: EventType,
    pub rv: u64,
    /// The object's metadata at this version.
    pub meta: Arc<ObjMeta>,
    /// The metadata before this change (MODIFIED only); selectors use its labels to turn MODIFIED into
    /// ADDED/DELETED. Name and namespace (the field selectors) cannot change.
    pub previous: Option<Arc<ObjMeta>>,
    /// Commit instant.
    pub at: Instant,
    /// The object's JSON.
    pub json: Bytes,
    /// The version this change replaced (MODIFIED and DELETED): what exact-resourceVersion lists undo to.
    pub prior: Option<Stored>,
    /// The whole watch line (`json` is a slice of it); empty for synthetic events, built when asked.
    pub(super) line: Bytes,
}

impl WatchEvent {
    /// A synthetic ADDED event for an existing object (initial state of a watch).
    pub fn synthetic_added(kind: KindId, stored: &Stored) -> Self {
        WatchEvent {
            kind,
            event_type: EventType::Added,
            rv: stored.meta.rv,
            meta: stored.meta.clone(),
            previous: None,
            at: Instant::now(),
            json: stored.json.clone(),
            prior: None,
            line: Bytes::new(),
        }
    }

    /// The `{"type":...,"object":...}\n` line (shared, not copied, for committed events).
    pub fn line(&self) -> Bytes {
        if self.line.is_empty() {
            crate::object_version::line_around(self.event_type.as_str(), &self.json)
        } else {
            self.line.clone()
        }
    }

    /// The object parsed (`Null` only if its JSON were corrupt, which the store never writes).
    pub fn object(&self) -> Value {
        serde_json::from_slice(&self.json).unwrap_or(Value::Null)
    }
}

/// Serializes one watch line.
pub fn event_line(event_type: &str, object: &Value) -> Bytes {
    let mut buf = Vec::with_capacity(512);
    buf.extend_from_slice(b"{\"type\":\"");
    buf.extend_from_slice(event_type.as_bytes());
    buf.extend_from_slice(b"\",\"object\":");
    // Serializing a Value into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut buf, object);
    buf.extend_from_slice(b"}\n");
    Bytes::from(buf)
}

/// A started watch: the events to replay first, then the live receiver.
#[derive(Debug)]
pub struct Subscription {
    pub initial: Vec<Arc<WatchEvent>>,
    pub receiver: broadcast::Receiver<Arc<WatchEvent>>,
    /// The resourceVersion the watch is at once `initial` is delivered.
    pub start_rv: u64,
}

impl Store {
    /// Starts a watch. `from_rv`: `None` = current state as ADDED events then live; `Some(rv)` = replay of
    /// history after `rv` then live, or `Gone` when `rv` is older than the retained history.
    pub fn watch(
        &self,
        kind_id: KindId,
        namespace: Option<&str>,
        from_rv: Option<u64>,
    ) -> Result<Subscription, ApiError> {
        let kind = self.kind(kind_id)?;
        let inner = self.lock();
        let table = &inner.tables[kind_id];
        let ns_filter = namespace.filter(|_| kind.namespaced);
        let initial: Vec<Arc<WatchEvent>> = match from_rv {
            None => table
                .objects
                .iter()
                .filter(|(k, _)| ns_filter.is_none_or(|ns| k.0 == ns))
                .map(|(_, o)| Arc::new(WatchEvent::synthetic_added(kind_id, o)))
                .collect(),
            Some(rv) => {
                if rv < table.oldest_resumable {
                    return Err(ApiError::Gone {
                        message: format!(
                            "too old resource version: {rv} ({})",
                            table.oldest_resumable
                        ),
                    });
                }
                table
                    .history
                    .iter()
                    .filter(|e| e.rv > rv)
                    .cloned()
                    .collect()
            }
        };
        Ok(Subscription {
            initial,
            receiver: table.sender.subscribe(),
            start_rv: inner.rv,
        })
    }

    /// The rv of the newest event already handed to `kind_id`'s watchers (used for bookmarks).
    pub fn last_sent_rv(&self, kind_id: KindId) -> u64 {
        self.last_sent
            .get(kind_id)
            .map(|a| a.load(Ordering::Acquire))
            .unwrap_or(0)
    }

    /// Lists every object of a kind (parsed) and subscribes in one atomic step.
    pub fn list_and_subscribe(
        &self,
        kind_id: KindId,
    ) -> (Vec<Arc<Value>>, broadcast::Receiver<Arc<WatchEvent>>) {
        let (metas, rx) = {
            let inner = self.lock();
            match inner.tables.get(kind_id) {
                Some(t) => (
                    t.objects.values().cloned().collect::<Vec<_>>(),
                    t.sender.subscribe(),
                ),
                None => (Vec::new(), broadcast::channel(1).1),
            }
        };
        (Self::parse_all(&metas), rx)
    }

    /// The metadata of every object of a kind and a subscription, in one atomic step (for in-process
    /// controllers: re-listing after a lag parses nothing).
    pub fn metas_and_subscribe(
        &self,
        kind_id: KindId,
    ) -> (Vec<Arc<ObjMeta>>, broadcast::Receiver<Arc<WatchEvent>>) {
        let inner = self.lock();
        match inner.tables.get(kind_id) {
            Some(t) => (
                t.objects.values().map(|o| o.meta.clone()).collect(),
                t.sender.subscribe(),
            ),
            None => (Vec::new(), broadcast::channel(1).1),
        }
    }

    /// Subscribes to a kind's events from now on.
    pub fn subscribe(&self, kind_id: KindId) -> broadcast::Receiver<Arc<WatchEvent>> {
        let inner = self.lock();
        match inner.tables.get(kind_id) {
            Some(t) => t.sender.subscribe(),
            None => broadcast::channel(1).1,
        }
    }

    /// Simulates etcd compaction: every watch resuming from a resourceVersion older than now gets 410 Gone.
    pub fn expire_history(&self) {
        let mut inner = self.lock();
        inner.rv += 1;
        let rv = inner.rv;
        for t in inner.tables.iter_mut() {
            t.history.clear();
            t.oldest_resumable = rv;
        }
        self.announce_rv(rv);
    }
}
