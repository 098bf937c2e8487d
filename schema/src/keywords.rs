//! Kubernetes schema extensions as custom `jsonschema` keywords: `x-kubernetes-validations`
//! (CEL rules, see `cel`) and `x-kubernetes-list-type` (`set` / `map` uniqueness).
//!
//! A custom keyword can only return a message string, so findings travel as a small encoded
//! payload (see [`Payload`]) that `convert::map_error` decodes back into a `Violation`.

use std::collections::HashSet;

use jsonschema::{Keyword, ValidationError, paths::Location};
use serde_json::{Map, Value};

use crate::cel::{PreparedRule, prepare_rules};
use crate::violation::{render_value, type_name};

/// Starts every encoded payload, so a foreign custom message is never misread.
const MARKER: char = '\u{1e}';
const SEPARATOR: char = '\u{1f}';

/// A finding of a custom keyword, relative to the instance the keyword ran on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Payload {
    /// Kubernetes cause type (`FieldValueInvalid`, `FieldValueDuplicate`, ...).
    pub(crate) reason: String,
    /// Suffix appended to the instance's field path (`.reservedSubnets`, `[2]`, or empty).
    pub(crate) suffix: String,
    /// The error body (`Invalid value: "object": ...`).
    pub(crate) body: String,
}

impl Payload {
    fn encode(&self) -> String {
        format!(
            "{MARKER}{}{SEPARATOR}{}{SEPARATOR}{}",
            self.reason, self.suffix, self.body
        )
    }

    pub(crate) fn decode(message: &str) -> Option<Payload> {
        let rest = message.strip_prefix(MARKER)?;
        let mut parts = rest.splitn(3, SEPARATOR);
        Some(Payload {
            reason: parts.next()?.to_string(),
            suffix: parts.next()?.to_string(),
            body: parts.next()?.to_string(),
        })
    }
}

/// Evaluates the enforced CEL rules of one schema node.
struct CelKeyword {
    rules: Vec<PreparedRule>,
}

impl CelKeyword {
    fn failures(&self, instance: &Value) -> Vec<Payload> {
        self.rules
            .iter()
            .filter(|rule| (rule.check)(instance) == Some(false))
            .map(|rule| {
                let reason = rule
                    .reason
                    .clone()
                    .unwrap_or_else(|| "FieldValueInvalid".to_string());
                let body = match reason.as_str() {
                    "FieldValueForbidden" => format!("Forbidden: {}", rule.message),
                    "FieldValueRequired" => format!("Required value: {}", rule.message),
                    "FieldValueDuplicate" => format!("Duplicate value: {}", rule.message),
                    _ => format!(
                        "Invalid value: \"{}\": {}",
                        type_name(instance),
                        rule.message
                    ),
                };
                Payload {
                    reason,
                    suffix: rule.field_path.clone(),
                    body,
                }
            })
            .collect()
    }
}

impl<'i> Keyword<'i> for CelKeyword {
    fn validate(&self, instance: &'i Value) -> Result<(), ValidationError<'i>> {
        match self.failures(instance).into_iter().next() {
            Some(payload) => Err(ValidationError::custom(payload.encode())),
            None => Ok(()),
        }
    }

    fn is_valid(&self, instance: &'i Value) -> bool {
        self.rules
            .iter()
            .all(|rule| (rule.check)(instance) != Some(false))
    }

    fn iter_errors(
        &self,
        instance: &'i Value,
    ) -> Box<dyn Iterator<Item = ValidationError<'i>> + 'i> {
        let errors: Vec<ValidationError<'i>> = self
            .failures(instance)
            .into_iter()
            .map(|p| ValidationError::custom(p.encode()))
            .collect();
        Box::new(errors.into_iter())
    }
}

pub(crate) fn cel_keyword_factory<'a>(
    _parent: &'a Map<String, Value>,
    value: &'a Value,
    _path: Location,
) -> Result<Box<dyn for<'i> Keyword<'i>>, ValidationError<'a>> {
    Ok(Box::new(CelKeyword {
        rules: prepare_rules(value),
    }))
}

/// `x-kubernetes-list-type: set` (whole items unique) or `map` (items unique by their keys).
struct ListTypeKeyword {
    /// `None` for `set`; the key names for `map`.
    map_keys: Option<Vec<String>>,
}

impl ListTypeKeyword {
    fn identity<'v>(&self, item: &'v Value) -> Vec<Option<&'v Value>> {
        match &self.map_keys {
            None => vec![Some(item)],
            Some(keys) => keys.iter().map(|key| item.get(key)).collect(),
        }
    }

    fn duplicates(&self, instance: &Value) -> Vec<Payload> {
        let Some(items) = instance.as_array() else {
            return Vec::new();
        };
        let mut found = Vec::new();
        // Serialised identities in a set keep this linear for long lists.
        let mut seen = HashSet::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            let identity = serde_json::to_string(&self.identity(item)).unwrap_or_default();
            if !seen.insert(identity) {
                found.push(Payload {
                    reason: "FieldValueDuplicate".to_string(),
                    suffix: format!("[{index}]"),
                    body: format!("Duplicate value: {}", self.render_identity(item)),
                });
            }
        }
        found
    }

    /// Kubernetes prints map-list keys as a Go map literal.
    fn render_identity(&self, item: &Value) -> String {
        match &self.map_keys {
            None => render_value(item),
            Some(keys) => {
                let fields: Vec<String> = keys
                    .iter()
                    .map(|key| {
                        let value = item
                            .get(key)
                            .map_or_else(|| "null".to_string(), ToString::to_string);
                        format!("\"{key}\":{value}")
                    })
                    .collect();
                format!("map[string]interface {{}}{{{}}}", fields.join(", "))
            }
        }
    }
}

impl<'i> Keyword<'i> for ListTypeKeyword {
    fn validate(&self, instance: &'i Value) -> Result<(), ValidationError<'i>> {
        match self.duplicates(instance).into_iter().next() {
            Some(payload) => Err(ValidationError::custom(payload.encode())),
            None => Ok(()),
        }
    }

    fn is_valid(&self, instance: &'i Value) -> bool {
        self.duplicates(instance).is_empty()
    }

    fn iter_errors(
        &self,
        instance: &'i Value,
    ) -> Box<dyn Iterator<Item = ValidationError<'i>> + 'i> {
        let errors: Vec<ValidationError<'i>> = self
            .duplicates(instance)
            .into_iter()
            .map(|p| ValidationError::custom(p.encode()))
            .collect();
        Box::new(errors.into_iter())
    }
}

/// `atomic` (or anything unknown) needs no check: an always-valid keyword is returned.
struct NoCheck;

impl<'i> Keyword<'i> for NoCheck {
    fn validate(&self, _instance: &'i Value) -> Result<(), ValidationError<'i>> {
        Ok(())
    }

    fn is_valid(&self, _instance: &'i Value) -> bool {
        true
    }
}

pub(crate) fn list_type_keyword_factory<'a>(
    parent: &'a Map<String, Value>,
    value: &'a Value,
    _path: Location,
) -> Result<Box<dyn for<'i> Keyword<'i>>, ValidationError<'a>> {
    match value.as_str() {
        Some("set") => Ok(Box::new(ListTypeKeyword { map_keys: None })),
        Some("map") => {
            let keys: Vec<String> = parent
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|keys| {
                    keys.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            if keys.is_empty() {
                Ok(Box::new(NoCheck))
            } else {
                Ok(Box::new(ListTypeKeyword {
                    map_keys: Some(keys),
                }))
            }
        }
        _ => Ok(Box::new(NoCheck)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trips() {
        let payload = Payload {
            reason: "FieldValueInvalid".into(),
            suffix: ".reservedSubnets".into(),
            body: "Invalid value: \"object\": x".into(),
        };
        assert_eq!(Payload::decode(&payload.encode()), Some(payload));
        assert_eq!(Payload::decode("plain message"), None);
    }
}
