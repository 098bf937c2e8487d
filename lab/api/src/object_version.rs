//! The stored form of one object version: its serialized JSON (one allocation shared by the store's table,
//! the watch event ring and history, every HTTP watcher and GET/LIST responses) and the small parsed
//! metadata index the store needs for selectors, garbage collection and finalizers.
//!
//! Keeping parsed `serde_json::Value` trees (with `preserve_order`, every map is an `IndexMap`) costs about ten
//! times the JSON size; this form costs the JSON plus a few hundred bytes of metadata.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use axum::body::Bytes;
use serde_json::Value;

use crate::store::EventType;

/// An object's labels, sorted by key; two boxed strings per label.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Labels(Box<[(Box<str>, Box<str>)]>);

impl Labels {
    /// Reads `metadata.labels`; entries whose value is not a string are skipped (validation refuses them).
    pub fn from_value(labels: Option<&Value>) -> Labels {
        let Some(map) = labels.and_then(Value::as_object) else {
            return Labels::default();
        };
        let mut pairs: Vec<(Box<str>, Box<str>)> = map
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().into(), v.as_str()?.into())))
            .collect();
        pairs.sort();
        Labels(pairs.into_boxed_slice())
    }

    /// The value of label `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(k, _)| (**k).cmp(key))
            .ok()
            .map(|i| &*self.0[i].1)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (&**k, &**v))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The parsed metadata of one object version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjMeta {
    /// `""` for cluster-scoped kinds.
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub rv: u64,
    pub labels: Labels,
    /// `ownerReferences[].uid`.
    pub owners: Box<[Box<str>]>,
    pub finalizers: Box<[Box<str>]>,
    /// `metadata.deletionTimestamp` is set.
    pub deleting: bool,
}

impl ObjMeta {
    /// Extracts the index from a full object.
    pub fn from_object(object: &Value) -> ObjMeta {
        let meta = object.get("metadata");
        let field = |f: &str| meta.and_then(|m| m.get(f));
        let text = |f: &str| field(f).and_then(Value::as_str).unwrap_or_default();
        let strings =
            |v: Option<&Value>, item: &dyn Fn(&Value) -> Option<&str>| -> Box<[Box<str>]> {
                v.and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(item).map(Into::into).collect())
                    .unwrap_or_default()
            };
        ObjMeta {
            namespace: text("namespace").to_string(),
            name: text("name").to_string(),
            uid: text("uid").to_string(),
            rv: text("resourceVersion").parse().unwrap_or(0),
            labels: Labels::from_value(field("labels")),
            owners: strings(field("ownerReferences"), &|r| {
                r.get("uid").and_then(Value::as_str)
            }),
            finalizers: strings(field("finalizers"), &Value::as_str),
            deleting: field("deletionTimestamp").is_some(),
        }
    }

    pub fn has_finalizer(&self, finalizer: &str) -> bool {
        self.finalizers.iter().any(|f| &**f == finalizer)
    }

    pub fn owned_by(&self, uid: &str) -> bool {
        self.owners.iter().any(|o| &**o == uid)
    }
}

/// A kind-specific summary of an object version (what the in-process controllers read), computed once when
/// the version is committed, from the object the store already holds parsed.
pub type View = Arc<dyn Any + Send + Sync>;

/// Computes a kind's [`View`].
pub type ViewFn = fn(&Value) -> View;

/// One stored object version.
#[derive(Clone)]
pub struct Stored {
    pub meta: Arc<ObjMeta>,
    /// The object's JSON; a slice of the watch line it was committed with.
    pub json: Bytes,
    /// The kind's view, when one is registered.
    pub view: Option<View>,
}

impl fmt::Debug for Stored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stored")
            .field("meta", &self.meta)
            .field("json_len", &self.json.len())
            .field("view", &self.view.is_some())
            .finish()
    }
}

impl Stored {
    /// Parses the JSON (never fails for what the store wrote; `Null` if it somehow does).
    pub fn parse(&self) -> Value {
        serde_json::from_slice(&self.json).unwrap_or(Value::Null)
    }
}

const LINE_END: &[u8] = b"}\n";

fn line_prefix(event_type: &str) -> Vec<u8> {
    let mut buf = Vec::with_capacity(32);
    buf.extend_from_slice(b"{\"type\":\"");
    buf.extend_from_slice(event_type.as_bytes());
    buf.extend_from_slice(b"\",\"object\":");
    buf
}

/// Serializes `object` as a watch line `{"type":...,"object":...}\n` and returns the line together with the
/// object's JSON as a slice of it, so the store and the event share one allocation.
pub fn seal(event_type: EventType, object: &Value, size_hint: usize) -> (Bytes, Bytes) {
    let mut buf = line_prefix(event_type.as_str());
    let start = buf.len();
    buf.reserve(size_hint + LINE_END.len());
    // Serializing a Value into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut buf, object);
    let end = buf.len();
    buf.extend_from_slice(LINE_END);
    let line = Bytes::from(buf);
    let json = line.slice(start..end);
    (line, json)
}

/// A watch line around already serialized object JSON (a copy).
pub fn line_around(event_type: &str, json: &[u8]) -> Bytes {
    let mut buf = line_prefix(event_type);
    buf.reserve(json.len() + LINE_END.len());
    buf.extend_from_slice(json);
    buf.extend_from_slice(LINE_END);
    Bytes::from(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn meta_index_reads_the_fields_selectors_and_gc_use() {
        let o = json!({"metadata": {"name": "a", "namespace": "ns", "uid": "u1", "resourceVersion": "42",
            "labels": {"b": "2", "a": "1", "n": 3}, "finalizers": ["f"], "deletionTimestamp": "x",
            "ownerReferences": [{"uid": "o1"}, {"name": "no-uid"}]}});
        let m = ObjMeta::from_object(&o);
        assert_eq!(
            (m.namespace.as_str(), m.name.as_str(), m.uid.as_str(), m.rv),
            ("ns", "a", "u1", 42)
        );
        assert_eq!(
            m.labels.iter().collect::<Vec<_>>(),
            vec![("a", "1"), ("b", "2")]
        );
        assert_eq!(m.labels.get("b"), Some("2"));
        assert_eq!(m.labels.get("n"), None);
        assert!(m.owned_by("o1") && m.owners.len() == 1);
        assert!(m.has_finalizer("f") && m.deleting);
    }

    #[test]
    fn sealed_line_and_object_share_one_buffer() {
        let o = json!({"kind": "X", "metadata": {"name": "a"}});
        let (line, json) = seal(EventType::Modified, &o, 64);
        assert_eq!(
            std::str::from_utf8(&line).unwrap(),
            "{\"type\":\"MODIFIED\",\"object\":{\"kind\":\"X\",\"metadata\":{\"name\":\"a\"}}}\n"
        );
        let back: Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(back, o);
        assert_eq!(line_around("ADDED", &json), {
            let (l, _) = seal(EventType::Added, &o, 0);
            l
        });
    }
}
