//! Kubernetes label selectors, as `k8s.io/apimachinery/pkg/labels` parses and matches them: the
//! string form (`labelSelector` query parameters, command-line flags) and the
//! `metav1.LabelSelector` object form (CUDN `namespaceSelector`, RA `networkSelector`), matched
//! against an object's labels. Parsing never panics; malformed input is an error that names it.

use std::collections::BTreeMap;

use serde_json::Value;

/// Labels of one object.
pub type Labels = BTreeMap<String, String>;

/// One requirement of a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

impl Requirement {
    fn matches<'a>(&self, get: &impl Fn(&str) -> Option<&'a str>) -> bool {
        match self {
            Requirement::Equals(k, v) => get(k) == Some(v.as_str()),
            // Kubernetes: `!=` and `notin` also match objects without the key.
            Requirement::NotEquals(k, v) => get(k) != Some(v.as_str()),
            Requirement::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Requirement::NotIn(k, vs) => get(k).is_none_or(|x| !vs.iter().any(|v| v == x)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::DoesNotExist(k) => get(k).is_none(),
        }
    }
}

/// A conjunction of requirements; empty matches everything unless `matches_nothing`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
    /// A `null` selector object selects nothing (OVN-K's rule for network selectors).
    matches_nothing: bool,
}

/// Why a selector could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid label selector {input:?}: {reason}")]
pub struct SelectorError {
    pub input: String,
    pub reason: String,
}

impl LabelSelector {
    /// A selector that matches every object.
    pub fn everything() -> Self {
        LabelSelector::default()
    }

    /// Parses `a=b,c!=d,e in (x,y),f notin (z),g,!h`.
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let error = |reason: &str| SelectorError {
            input: text.to_string(),
            reason: reason.to_string(),
        };
        let mut requirements = Vec::new();
        for term in split_outside_parentheses(text).map_err(|r| error(&r))? {
            let term = term.trim();
            if term.is_empty() {
                return Err(error("empty requirement"));
            }
            requirements.push(parse_term(term).map_err(|r| error(&r))?);
        }
        Ok(LabelSelector {
            requirements,
            matches_nothing: false,
        })
    }

    /// Converts a `metav1.LabelSelector` object; `None`/`null` selects nothing.
    pub fn from_object(selector: Option<&Value>) -> Result<Self, SelectorError> {
        let error = |reason: String| SelectorError {
            input: selector.map(Value::to_string).unwrap_or_default(),
            reason,
        };
        let Some(Value::Object(object)) = selector else {
            return Ok(LabelSelector {
                requirements: Vec::new(),
                matches_nothing: true,
            });
        };
        let mut requirements = Vec::new();
        if let Some(match_labels) = object.get("matchLabels") {
            let Value::Object(pairs) = match_labels else {
                return Err(error("matchLabels is not an object".into()));
            };
            for (key, value) in pairs {
                let value = value
                    .as_str()
                    .ok_or_else(|| error(format!("matchLabels.{key} is not a string")))?;
                requirements.push(Requirement::Equals(key.clone(), value.to_string()));
            }
        }
        if let Some(expressions) = object.get("matchExpressions") {
            let Value::Array(expressions) = expressions else {
                return Err(error("matchExpressions is not a list".into()));
            };
            for expression in expressions {
                requirements.push(parse_expression(expression).map_err(error)?);
            }
        }
        Ok(LabelSelector {
            requirements,
            matches_nothing: false,
        })
    }

    /// Whether a label map satisfies every requirement.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.matches_with(|k| labels.get(k).map(String::as_str))
    }

    /// Whether an object's `metadata.labels` satisfy every requirement.
    pub fn matches_object(&self, object: &Value) -> bool {
        let labels = object
            .pointer("/metadata/labels")
            .and_then(Value::as_object);
        self.matches_with(|k| labels.and_then(|l| l.get(k)).and_then(Value::as_str))
    }

    /// Whether the labels `get` looks up satisfy every requirement.
    pub fn matches_with<'a>(&self, get: impl Fn(&str) -> Option<&'a str>) -> bool {
        !self.matches_nothing && self.requirements.iter().all(|r| r.matches(&get))
    }

    /// Whether it matches every object (no requirement, not the `null` selector).
    pub fn is_everything(&self) -> bool {
        !self.matches_nothing && self.requirements.is_empty()
    }

    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }
}

fn parse_expression(expression: &Value) -> Result<Requirement, String> {
    let key = expression
        .get("key")
        .and_then(Value::as_str)
        .ok_or("matchExpressions item without key")?
        .to_string();
    let values: Vec<String> = match expression.get("values") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(values)) => values
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<_>>()
            .ok_or("matchExpressions values must be strings")?,
        Some(_) => return Err("matchExpressions values is not a list".into()),
    };
    match expression.get("operator").and_then(Value::as_str) {
        Some("In") if !values.is_empty() => Ok(Requirement::In(key, values)),
        Some("NotIn") if !values.is_empty() => Ok(Requirement::NotIn(key, values)),
        Some("Exists") if values.is_empty() => Ok(Requirement::Exists(key)),
        Some("DoesNotExist") if values.is_empty() => Ok(Requirement::DoesNotExist(key)),
        Some(op @ ("In" | "NotIn" | "Exists" | "DoesNotExist")) => {
            Err(format!("operator {op} with the wrong number of values"))
        }
        other => Err(format!("unknown operator {other:?}")),
    }
}

fn split_outside_parentheses(text: &str) -> Result<Vec<&str>, String> {
    let mut terms = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.checked_sub(1).ok_or("unbalanced ')'")?,
            ',' if depth == 0 => {
                terms.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err("unbalanced '('".into());
    }
    if !text.trim().is_empty() {
        terms.push(&text[start..]);
    }
    Ok(terms)
}

fn parse_term(term: &str) -> Result<Requirement, String> {
    if let Some(key) = term.strip_prefix('!') {
        return Ok(Requirement::DoesNotExist(checked_key(key)?));
    }
    if let Some((key, value)) = term.split_once("!=") {
        return Ok(Requirement::NotEquals(
            checked_key(key)?,
            checked_value(value)?,
        ));
    }
    if let Some((key, value)) = term.split_once("==").or_else(|| term.split_once('=')) {
        return Ok(Requirement::Equals(
            checked_key(key)?,
            checked_value(value)?,
        ));
    }
    for (keyword, set_based) in [(" notin ", false), (" in ", true)] {
        if let Some((key, set)) = term.split_once(keyword) {
            let set = set.trim();
            let inner = set
                .strip_prefix('(')
                .and_then(|s| s.strip_suffix(')'))
                .ok_or("a set must be written (a,b)")?;
            let values = inner
                .split(',')
                .map(checked_value)
                .collect::<Result<Vec<_>, _>>()?;
            let key = checked_key(key)?;
            return Ok(if set_based {
                Requirement::In(key, values)
            } else {
                Requirement::NotIn(key, values)
            });
        }
    }
    Ok(Requirement::Exists(checked_key(term)?))
}

fn checked_key(key: &str) -> Result<String, String> {
    let key = key.trim();
    let valid = !key.is_empty()
        && key.len() <= 317
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if valid {
        Ok(key.to_string())
    } else {
        Err(format!("invalid label key {key:?}"))
    }
}

fn checked_value(value: &str) -> Result<String, String> {
    let value = value.trim();
    let valid = value.len() <= 63
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(value.to_string())
    } else {
        Err(format!("invalid label value {value:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn string_form_matches_like_kubernetes() {
        let s =
            LabelSelector::parse("tier=bgp,env!=test,zone in (a,b),!legacy,owner").expect("parses");
        assert!(s.matches(&labels(&[("tier", "bgp"), ("zone", "a"), ("owner", "x")])));
        assert!(!s.matches(&labels(&[("tier", "bgp"), ("zone", "c"), ("owner", "x")])));
        assert!(!s.matches(&labels(&[
            ("tier", "bgp"),
            ("zone", "a"),
            ("owner", "x"),
            ("legacy", "")
        ])));
        assert!(!s.matches(&labels(&[("tier", "bgp"), ("zone", "a")])));
        let notin = LabelSelector::parse("zone notin (a)").expect("parses");
        assert!(notin.matches(&labels(&[])));
        assert!(!notin.matches(&labels(&[("zone", "a")])));
    }

    #[test]
    fn malformed_strings_are_errors() {
        for bad in ["a=b,", "zone in (a", "zone in a", "=x", "a=b c", ",", "a)"] {
            assert!(
                LabelSelector::parse(bad).is_err(),
                "{bad:?} should be refused"
            );
        }
        assert_eq!(
            LabelSelector::parse("").expect("empty"),
            LabelSelector::everything()
        );
    }

    #[test]
    fn object_form_and_null() {
        let s = LabelSelector::from_object(Some(&json!({
            "matchLabels": {"vmbgp.io/advertise": "true"},
            "matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["b"]}]
        })))
        .expect("parses");
        assert!(s.matches(&labels(&[("vmbgp.io/advertise", "true")])));
        assert!(!s.matches(&labels(&[("vmbgp.io/advertise", "true"), ("zone", "b")])));
        let all = LabelSelector::from_object(Some(&json!({}))).expect("parses");
        assert!(all.matches(&labels(&[])));
        let none = LabelSelector::from_object(None).expect("null parses");
        assert!(!none.matches(&labels(&[])));
        let bad = json!({"matchExpressions": [{"key": "a", "operator": "In"}]});
        assert!(LabelSelector::from_object(Some(&bad)).is_err());
    }

    fn object(labels: serde_json::Value) -> serde_json::Value {
        json!({"metadata": {"name": "a", "namespace": "ns", "labels": labels}})
    }

    #[test]
    fn an_objects_metadata_labels_are_matched() {
        let s = LabelSelector::parse("a=1,b!=2,c in (x, y),d notin (z),e,!f").expect("parses");
        assert_eq!(s.requirements().len(), 6);
        assert!(s.matches_object(&object(
            json!({"a": "1", "b": "3", "c": "y", "d": "w", "e": ""})
        )));
        assert!(!s.matches_object(&object(
            json!({"a": "1", "b": "3", "c": "y", "d": "z", "e": ""})
        )));
        assert!(!s.matches_object(&object(
            json!({"a": "1", "b": "3", "c": "y", "e": "", "f": "x"})
        )));
        assert!(!s.matches_object(&object(json!({"a": "1", "b": "2", "c": "y", "e": ""}))));
        assert!(!s.matches_object(&json!({"metadata": {"name": "no-labels"}})));
        assert!(LabelSelector::everything().matches_object(&json!({"metadata": {}})));
        assert!(LabelSelector::everything().is_everything());
        assert!(
            !LabelSelector::from_object(None)
                .expect("null")
                .is_everything()
        );
    }
}
