//! Label and field selectors: parsing the query-string forms and `metav1.LabelSelector` objects, and matching objects.

use serde_json::{Map, Value};

use crate::object_version::ObjMeta;

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

/// A conjunction of requirements. The empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    pub requirements: Vec<Requirement>,
    /// A `LabelSelector` object that is `null` matches nothing (OVN-K's "null selects none" rule).
    pub matches_nothing: bool,
}

impl LabelSelector {
    /// Parses the `labelSelector` query form (`a=b,c!=d,e in (x,y),f notin (z),g,!h`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut requirements = Vec::new();
        for term in split_top_level(text) {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            requirements.push(parse_term(term)?);
        }
        Ok(LabelSelector {
            requirements,
            matches_nothing: false,
        })
    }

    /// Converts a `metav1.LabelSelector` object. `None`/`null` gives a selector that matches nothing.
    pub fn from_object(selector: Option<&Value>) -> Result<Self, String> {
        let Some(Value::Object(obj)) = selector else {
            return Ok(LabelSelector {
                requirements: Vec::new(),
                matches_nothing: true,
            });
        };
        let mut requirements = Vec::new();
        if let Some(Value::Object(ml)) = obj.get("matchLabels") {
            for (k, v) in ml {
                requirements.push(Requirement::Equals(
                    k.clone(),
                    v.as_str().unwrap_or_default().to_string(),
                ));
            }
        }
        if let Some(Value::Array(exprs)) = obj.get("matchExpressions") {
            for e in exprs {
                let key = e
                    .get("key")
                    .and_then(Value::as_str)
                    .ok_or("matchExpressions entry without key")?
                    .to_string();
                let values: Vec<String> = e
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                let op = e
                    .get("operator")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                requirements.push(match op {
                    "In" => Requirement::In(key, values),
                    "NotIn" => Requirement::NotIn(key, values),
                    "Exists" => Requirement::Exists(key),
                    "DoesNotExist" => Requirement::DoesNotExist(key),
                    other => return Err(format!("unknown label selector operator {other:?}")),
                });
            }
        }
        Ok(LabelSelector {
            requirements,
            matches_nothing: false,
        })
    }

    /// Whether a label map satisfies every requirement.
    pub fn matches_labels(&self, labels: Option<&Map<String, Value>>) -> bool {
        self.matches_with(|k| labels.and_then(|l| l.get(k)).and_then(Value::as_str))
    }

    /// Whether a stored object's labels satisfy the selector.
    pub fn matches_meta(&self, meta: &ObjMeta) -> bool {
        self.matches_with(|k| meta.labels.get(k))
    }

    /// Whether the labels `get` looks up satisfy every requirement.
    pub fn matches_with<'a>(&self, get: impl Fn(&str) -> Option<&'a str>) -> bool {
        if self.matches_nothing {
            return false;
        }
        self.requirements.iter().all(|r| match r {
            Requirement::Equals(k, v) => get(k) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => get(k) != Some(v.as_str()),
            Requirement::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Requirement::NotIn(k, vs) => get(k).is_none_or(|x| !vs.iter().any(|v| v == x)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::DoesNotExist(k) => get(k).is_none(),
        })
    }

    /// Whether an object's `metadata.labels` satisfy the selector.
    pub fn matches(&self, object: &Value) -> bool {
        self.matches_labels(
            object
                .pointer("/metadata/labels")
                .and_then(Value::as_object),
        )
    }

    pub fn is_everything(&self) -> bool {
        !self.matches_nothing && self.requirements.is_empty()
    }
}

fn split_top_level(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut start = 0usize;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                out.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&text[start..]);
    out
}

fn parse_set(rest: &str) -> Result<Vec<String>, String> {
    let rest = rest.trim();
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| format!("expected a parenthesised value set, got {rest:?}"))?;
    Ok(inner
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect())
}

fn parse_term(term: &str) -> Result<Requirement, String> {
    if let Some(key) = term.strip_prefix('!') {
        return Ok(Requirement::DoesNotExist(valid_key(key.trim())?));
    }
    if let Some((k, v)) = term.split_once("!=") {
        return Ok(Requirement::NotEquals(
            valid_key(k.trim())?,
            v.trim().to_string(),
        ));
    }
    if let Some((k, v)) = term.split_once("==") {
        return Ok(Requirement::Equals(
            valid_key(k.trim())?,
            v.trim().to_string(),
        ));
    }
    if let Some((k, v)) = term.split_once('=') {
        return Ok(Requirement::Equals(
            valid_key(k.trim())?,
            v.trim().to_string(),
        ));
    }
    if let Some((k, rest)) = term.split_once(" notin ") {
        return Ok(Requirement::NotIn(valid_key(k.trim())?, parse_set(rest)?));
    }
    if let Some((k, rest)) = term.split_once(" in ") {
        return Ok(Requirement::In(valid_key(k.trim())?, parse_set(rest)?));
    }
    Ok(Requirement::Exists(valid_key(term)?))
}

fn valid_key(key: &str) -> Result<String, String> {
    if key.is_empty() || key.contains(char::is_whitespace) || key.contains(['(', ')', '!', '=']) {
        return Err(format!("invalid label key {key:?}"));
    }
    Ok(key.to_string())
}

/// A field selector restricted to what every real resource supports: `metadata.name` and `metadata.namespace`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    /// (field, value, equal?)
    pub terms: Vec<(String, String, bool)>,
}

impl FieldSelector {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut terms = Vec::new();
        for term in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (field, value, eq) = if let Some((f, v)) = term.split_once("!=") {
                (f, v, false)
            } else if let Some((f, v)) = term.split_once("==") {
                (f, v, true)
            } else if let Some((f, v)) = term.split_once('=') {
                (f, v, true)
            } else {
                return Err(format!("invalid field selector term {term:?}"));
            };
            let field = field.trim();
            if field != "metadata.name" && field != "metadata.namespace" {
                return Err(format!("field label not supported: {field}"));
            }
            terms.push((field.to_string(), value.trim().to_string(), eq));
        }
        Ok(FieldSelector { terms })
    }

    /// Whether a stored object's name and namespace satisfy the selector.
    pub fn matches_meta(&self, meta: &ObjMeta) -> bool {
        self.terms.iter().all(|(field, value, eq)| {
            let actual = match field.as_str() {
                "metadata.name" => &meta.name,
                _ => &meta.namespace,
            };
            (actual == value) == *eq
        })
    }

    pub fn matches(&self, object: &Value) -> bool {
        self.terms.iter().all(|(field, value, eq)| {
            let actual = match field.as_str() {
                "metadata.name" => object.pointer("/metadata/name"),
                _ => object.pointer("/metadata/namespace"),
            }
            .and_then(Value::as_str)
            .unwrap_or_default();
            (actual == value) == *eq
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(labels: Value) -> Value {
        json!({"metadata": {"name": "a", "namespace": "ns", "labels": labels}})
    }

    #[test]
    fn parses_every_operator() {
        let s = LabelSelector::parse("a=1,b!=2,c in (x, y),d notin (z),e,!f").unwrap();
        assert_eq!(s.requirements.len(), 6);
        assert!(s.matches(&obj(
            json!({"a": "1", "b": "3", "c": "y", "d": "w", "e": ""})
        )));
        assert!(!s.matches(&obj(
            json!({"a": "1", "b": "3", "c": "y", "d": "z", "e": ""})
        )));
        assert!(!s.matches(&obj(
            json!({"a": "1", "b": "3", "c": "y", "e": "", "f": "x"})
        )));
        assert!(!s.matches(&obj(json!({"a": "1", "b": "2", "c": "y", "e": ""}))));
    }

    #[test]
    fn notin_matches_missing_label_and_in_does_not() {
        let notin = LabelSelector::parse("d notin (z)").unwrap();
        assert!(notin.matches(&obj(json!({}))));
        let is_in = LabelSelector::parse("d in (z)").unwrap();
        assert!(!is_in.matches(&obj(json!({}))));
    }

    #[test]
    fn rejects_garbage() {
        assert!(LabelSelector::parse("a in x").is_err());
        assert!(FieldSelector::parse("spec.foo=1").is_err());
    }

    #[test]
    fn object_selector_null_matches_nothing_and_empty_everything() {
        assert!(
            !LabelSelector::from_object(None)
                .unwrap()
                .matches(&obj(json!({})))
        );
        assert!(
            LabelSelector::from_object(Some(&json!({})))
                .unwrap()
                .matches(&obj(json!({})))
        );
        let s = LabelSelector::from_object(Some(&json!({
            "matchLabels": {"a": "1"},
            "matchExpressions": [{"key": "b", "operator": "In", "values": ["2"]}]
        })))
        .unwrap();
        assert!(s.matches(&obj(json!({"a": "1", "b": "2"}))));
        assert!(!s.matches(&obj(json!({"a": "1"}))));
    }

    #[test]
    fn field_selector_name_and_namespace() {
        let f = FieldSelector::parse("metadata.name=a,metadata.namespace!=other").unwrap();
        assert!(f.matches(&obj(json!({}))));
        let f = FieldSelector::parse("metadata.name==b").unwrap();
        assert!(!f.matches(&obj(json!({}))));
    }
}
