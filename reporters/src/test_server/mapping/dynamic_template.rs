//! One entry of `dynamic_templates`: which new fields it matches and the type it gives them.

use serde_json::{Map, Value};

use super::{Detected, FieldType};

/// One entry of `dynamic_templates`.
#[derive(Debug, Clone, PartialEq)]
pub struct DynamicTemplate {
    pub name: String,
    match_mapping_type: Option<String>,
    match_name: Option<String>,
    unmatch: Option<String>,
    path_match: Option<String>,
    path_unmatch: Option<String>,
    mapping: Map<String, Value>,
}

impl DynamicTemplate {
    pub(super) fn parse(entry: &Value) -> Option<DynamicTemplate> {
        let (name, body) = entry.as_object()?.iter().next()?;
        let body = body.as_object()?;
        let text = |key: &str| body.get(key).and_then(Value::as_str).map(str::to_owned);
        Some(DynamicTemplate {
            name: name.clone(),
            match_mapping_type: text("match_mapping_type"),
            match_name: text("match"),
            unmatch: text("unmatch"),
            path_match: text("path_match"),
            path_unmatch: text("path_unmatch"),
            mapping: body.get("mapping")?.as_object()?.clone(),
        })
    }

    /// Whether this template names the path itself (`match` / `path_match`), not just a JSON
    /// type: such a template maps a field as deliberately as an explicit property does.
    pub fn names_fields(&self) -> bool {
        self.match_name.is_some() || self.path_match.is_some()
    }

    pub(super) fn matches(&self, path: &str, name: &str, detected: Detected) -> bool {
        let type_ok = self
            .match_mapping_type
            .as_deref()
            .is_none_or(|t| t == "*" || t == detected.name());
        type_ok
            && self.match_name.as_deref().is_none_or(|p| glob(p, name))
            && self.unmatch.as_deref().is_none_or(|p| !glob(p, name))
            && self.path_match.as_deref().is_none_or(|p| glob(p, path))
            && self.path_unmatch.as_deref().is_none_or(|p| !glob(p, path))
    }

    pub(super) fn field_type(&self, detected: Detected) -> FieldType {
        let mut mapping = self.mapping.clone();
        if let Some(Value::String(t)) = mapping.get_mut("type")
            && (t == "{dynamic_type}" || t == "{dynamicType}")
        {
            *t = match detected {
                Detected::String => "text".to_owned(),
                Detected::Double => "float".to_owned(),
                other => other.name().to_owned(),
            };
        }
        FieldType::from_definition(&mapping)
    }
}

/// Elasticsearch's `Regex.simpleMatch` (index patterns, `match`, `path_match`): `*` matches any
/// run of characters.
pub fn glob(pattern: &str, text: &str) -> bool {
    let Some((first, rest)) = pattern.split_once('*') else {
        return pattern == text;
    };
    let Some(mut remaining) = text.strip_prefix(first) else {
        return false;
    };
    let mut parts: Vec<&str> = rest.split('*').collect();
    let last = parts.pop().unwrap_or("");
    for part in parts {
        match remaining.find(part) {
            Some(at) => remaining = &remaining[at + part.len()..],
            None => return false,
        }
    }
    remaining.len() >= last.len() && remaining.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_like_simple_match() {
        assert!(glob("missing.*", "missing.P99"));
        assert!(glob("*", ""));
        assert!(glob("server*Latency", "serverVmiRunningLatency"));
        assert!(!glob("server*Latency", "serverVmiRunning"));
        assert!(glob("a*b*c", "aXbYc"));
        assert!(!glob("a*b*c", "aXc"));
        assert!(!glob("ab*ba", "aba"));
    }
}
