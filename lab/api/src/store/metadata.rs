//! Metadata validation: the name and label rules every object obeys, `apiVersion`/`kind` checks, and the
//! schema [`Validator`] hook a write passes through before it is committed.

use std::fmt;

use serde_json::Value;

use super::Store;
use crate::error::{ApiError, Cause};
use crate::registry::ResourceKind;

/// How unknown or invalid fields are handled (`fieldValidation` query parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldValidation {
    /// Unknown fields are an error (kubectl's default).
    Strict,
    /// Unknown fields are dropped (the server default).
    #[default]
    Prune,
}

/// Schema validation hook; the lab plugs the `vmbgp-schema` set in here.
pub trait Validator: Send + Sync + fmt::Debug {
    /// Validates (and in `Prune` mode may drop unknown fields from) an object of `kind`.
    fn validate(
        &self,
        kind: &ResourceKind,
        object: &mut Value,
        mode: FieldValidation,
    ) -> Result<(), Vec<Cause>>;
}

pub(super) fn meta_str<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    object
        .get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
}

impl Store {
    pub(super) fn validate(
        &self,
        kind: &ResourceKind,
        object: &mut Value,
        mode: FieldValidation,
        name: &str,
    ) -> Result<(), ApiError> {
        let mut causes = validate_metadata(kind, object);
        if causes.is_empty()
            && let Some(v) = &self.validator
            && let Err(c) = v.validate(kind, object, mode)
        {
            causes = c;
        }
        if causes.is_empty() {
            Ok(())
        } else if let Some(cause) = causes.iter().find(|c| crate::validation::is_undecodable(c)) {
            // kube-apiserver's decoder fails before validation: `runtime.NewStrictDecodingError`
            // aside, a body it cannot decode is `<Kind> in version "<v>" cannot be handled as a <Kind>`.
            Err(ApiError::BadRequest {
                message: format!(
                    "{kind_name} in version {version:?} cannot be handled as a {kind_name}: {message}",
                    kind_name = kind.kind,
                    version = kind.version,
                    message = cause.message
                ),
            })
        } else if causes.iter().any(crate::validation::is_unknown_field) {
            // A real server reports strict unknown-field errors as 400 BadRequest.
            Err(ApiError::BadRequest {
                message: format!(
                    "strict decoding error: {}",
                    causes
                        .iter()
                        .filter(|c| crate::validation::is_unknown_field(c))
                        .map(|c| c.message.clone())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })
        } else {
            Err(ApiError::Invalid {
                group: kind.group.clone(),
                kind: kind.kind.clone(),
                name: name.to_string(),
                causes,
            })
        }
    }
}

/// Checks (and fills in when missing) `apiVersion`/`kind`.
pub(super) fn check_type_meta(kind: &ResourceKind, object: &mut Value) -> Result<(), ApiError> {
    let want_av = kind.api_version();
    let Some(o) = object.as_object_mut() else {
        return Err(ApiError::BadRequest {
            message: "the object must be a JSON object".to_string(),
        });
    };
    match o.get("apiVersion").and_then(Value::as_str) {
        Some(av) if av != want_av => {
            return Err(ApiError::BadRequest {
                message: format!(
                    "the API version in the data ({av}) does not match the expected API version ({want_av})"
                ),
            });
        }
        Some(_) => {}
        None => {
            o.insert("apiVersion".to_string(), Value::String(want_av));
        }
    }
    match o.get("kind").and_then(Value::as_str) {
        Some(k) if k != kind.kind => {
            return Err(ApiError::BadRequest {
                message: format!(
                    "the kind in the data ({k}) does not match the expected kind ({})",
                    kind.kind
                ),
            });
        }
        Some(_) => {}
        None => {
            o.insert("kind".to_string(), Value::String(kind.kind.clone()));
        }
    }
    Ok(())
}

/// Name rules every object obeys (DNS-1123 subdomain; DNS-1123 label for namespaces), label value length.
fn validate_metadata(kind: &ResourceKind, object: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let name = meta_str(object, "name").unwrap_or_default();
    let (max, allow_dot) = if kind.kind == "Namespace" {
        (63, false)
    } else {
        (253, true)
    };
    let valid = !name.is_empty()
        && name.len() <= max
        && name.chars().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || (allow_dot && c == '.')
        })
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !valid {
        causes.push(Cause {
            field: "metadata.name".to_string(),
            reason: "FieldValueInvalid".to_string(),
            message: format!(
                "Invalid value: {name:?}: a lowercase RFC 1123 {} must consist of lower case alphanumeric characters{}, and must start and end with an alphanumeric character",
                if allow_dot { "subdomain" } else { "label" },
                if allow_dot { ", '-' or '.'" } else { " or '-'" }
            ),
        });
    }
    if let Some(labels) = object.pointer("/metadata/labels") {
        match labels.as_object() {
            Some(l) => {
                for (k, v) in l {
                    match v.as_str() {
                        Some(s) if s.len() <= 63 => {}
                        _ => causes.push(Cause {
                            field: format!("metadata.labels.{k}"),
                            reason: "FieldValueInvalid".to_string(),
                            message: "Invalid value: a label value must be a string of at most 63 characters".to_string(),
                        }),
                    }
                }
            }
            None => causes.push(Cause {
                field: "metadata.labels".to_string(),
                reason: "FieldValueInvalid".to_string(),
                message: "Invalid value: labels must be a map of strings".to_string(),
            }),
        }
    }
    causes
}
