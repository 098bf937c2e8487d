//! Field selectors (parsing the query-string form and matching objects), and the label selectors of
//! the shared vocabulary crate, which parses and matches them as the API server does.

use serde_json::Value;

use crate::object_version::ObjMeta;

pub use vmbgp_model::selector::{LabelSelector, Requirement, SelectorError};

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
    fn rejects_garbage() {
        assert!(LabelSelector::parse("a in x").is_err());
        assert!(
            LabelSelector::parse("a=b,").is_err(),
            "a trailing comma, as labels.Parse"
        );
        assert!(FieldSelector::parse("spec.foo=1").is_err());
    }

    #[test]
    fn field_selector_name_and_namespace() {
        let f = FieldSelector::parse("metadata.name=a,metadata.namespace!=other").unwrap();
        assert!(f.matches(&obj(json!({}))));
        let f = FieldSelector::parse("metadata.name==b").unwrap();
        assert!(!f.matches(&obj(json!({}))));
    }
}
