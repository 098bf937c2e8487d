//! `metadata` validation as the API server's `ValidateObjectMeta` does it: names, namespace,
//! label and annotation syntax and size, finalizers, owner references.

use serde_json::Value;

use crate::violation::{Violation, ViolationReason, quote, render_value};

/// Which name syntax a kind requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    /// RFC 1123 subdomain, at most 253 characters (most kinds, all CRDs, nodes).
    Subdomain,
    /// RFC 1123 label, at most 63 characters (namespaces).
    Label,
}

const DNS1123_LABEL_MAX: usize = 63;
const DNS1123_SUBDOMAIN_MAX: usize = 253;
const LABEL_VALUE_MAX: usize = 63;
const QUALIFIED_NAME_MAX: usize = 63;
/// `TotalAnnotationSizeLimitB` in apimachinery.
const ANNOTATIONS_MAX_BYTES: usize = 256 * 1024;

const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const QUALIFIED_NAME_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const QUALIFIED_NAME_SHAPE_MSG: &str = "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

/// Kubernetes' standard finalizers, allowed without a `/` prefix.
const STANDARD_FINALIZERS: &[&str] = &["kubernetes", "orphan", "foregroundDeletion"];

/// Validates an object's `metadata` with the default name rule (RFC 1123 subdomain).
/// Field paths start with `metadata.`. `namespaced` says whether `metadata.namespace` is checked
/// (a cluster-scoped object's namespace is ignored: the API server clears it).
pub fn validate_object_meta(meta: &Value, namespaced: bool) -> Vec<Violation> {
    validate_object_meta_with(meta, namespaced, NameRule::Subdomain)
}

/// Like [`validate_object_meta`] with an explicit name rule (`NameRule::Label` for namespaces).
pub fn validate_object_meta_with(
    meta: &Value,
    namespaced: bool,
    name_rule: NameRule,
) -> Vec<Violation> {
    let mut out = Vec::new();
    let Some(map) = meta.as_object() else {
        out.push(type_violation("metadata", meta, "object"));
        return out;
    };
    let name = string_field(map.get("name"), "metadata.name", &mut out);
    let generate_name = string_field(map.get("generateName"), "metadata.generateName", &mut out);
    match (
        name.filter(|n| !n.is_empty()),
        generate_name.filter(|g| !g.is_empty()),
    ) {
        (Some(name), _) => {
            for problem in name_problems(name, name_rule) {
                out.push(Violation::invalid(
                    "metadata.name",
                    &Value::String(name.to_string()),
                    &problem,
                ));
            }
        }
        (None, Some(prefix)) => {
            // The API server validates the prefix with trailing dashes masked.
            let masked = prefix.trim_end_matches('-');
            let candidate = if masked.len() < prefix.len() {
                format!("{masked}a")
            } else {
                masked.to_string()
            };
            for problem in name_problems(&candidate, name_rule) {
                out.push(Violation::invalid(
                    "metadata.generateName",
                    &Value::String(prefix.to_string()),
                    &problem,
                ));
            }
        }
        (None, None) => out.push(Violation::new(
            "metadata.name",
            ViolationReason::FieldValueRequired,
            "Required value: name or generateName is required",
        )),
    }
    if namespaced
        && let Some(namespace) = string_field(map.get("namespace"), "metadata.namespace", &mut out)
        && !namespace.is_empty()
    {
        for problem in name_problems(namespace, NameRule::Label) {
            out.push(Violation::invalid(
                "metadata.namespace",
                &Value::String(namespace.to_string()),
                &problem,
            ));
        }
    }
    if let Some(labels) = map.get("labels").filter(|v| !v.is_null()) {
        validate_labels(labels, "metadata.labels", &mut out);
    }
    if let Some(annotations) = map.get("annotations").filter(|v| !v.is_null()) {
        validate_annotations(annotations, "metadata.annotations", &mut out);
    }
    if let Some(finalizers) = map.get("finalizers").filter(|v| !v.is_null()) {
        validate_finalizers(finalizers, &mut out);
    }
    if let Some(owners) = map.get("ownerReferences").filter(|v| !v.is_null()) {
        validate_owner_references(owners, &mut out);
    }
    out
}

fn type_violation(field: &str, value: &Value, expected: &str) -> Violation {
    let actual = crate::violation::type_name(value);
    Violation::new(
        field,
        ViolationReason::FieldValueTypeInvalid,
        format!(
            "Invalid value: \"{actual}\": {field} in body must be of type {expected}: \"{actual}\""
        ),
    )
}

/// A string-typed optional field: `None` when absent or null; a type violation otherwise.
fn string_field<'a>(
    value: Option<&'a Value>,
    field: &str,
    out: &mut Vec<Violation>,
) -> Option<&'a str> {
    match value {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(text),
        Some(other) => {
            out.push(type_violation(field, other, "string"));
            None
        }
    }
}

fn is_alnum_lower(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`
fn is_dns1123_label_shape(text: &str) -> bool {
    let bytes = text.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(&first), Some(&last)) => {
            is_alnum_lower(first)
                && is_alnum_lower(last)
                && bytes.iter().all(|&b| is_alnum_lower(b) || b == b'-')
        }
        _ => false,
    }
}

fn is_dns1123_subdomain_shape(text: &str) -> bool {
    !text.is_empty() && text.split('.').all(is_dns1123_label_shape)
}

fn dns1123_label_problems(text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if text.len() > DNS1123_LABEL_MAX {
        problems.push(format!(
            "must be no more than {DNS1123_LABEL_MAX} characters"
        ));
    }
    if !is_dns1123_label_shape(text) {
        problems.push(DNS1123_LABEL_MSG.to_string());
    }
    problems
}

fn dns1123_subdomain_problems(text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if text.len() > DNS1123_SUBDOMAIN_MAX {
        problems.push(format!(
            "must be no more than {DNS1123_SUBDOMAIN_MAX} characters"
        ));
    }
    if !is_dns1123_subdomain_shape(text) {
        problems.push(DNS1123_SUBDOMAIN_MSG.to_string());
    }
    problems
}

fn name_problems(text: &str, rule: NameRule) -> Vec<String> {
    match rule {
        NameRule::Label => dns1123_label_problems(text),
        NameRule::Subdomain => dns1123_subdomain_problems(text),
    }
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`
fn is_qualified_name_part(text: &str) -> bool {
    let bytes = text.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// `IsQualifiedName`: optional DNS-subdomain prefix and `/`, then a name part of ≤ 63 chars.
pub(crate) fn qualified_name_problems(text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let parts: Vec<&str> = text.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                problems.push("prefix part must be non-empty".to_string());
            } else {
                for problem in dns1123_subdomain_problems(prefix) {
                    problems.push(format!("prefix part {problem}"));
                }
            }
            *name
        }
        _ => {
            problems.push(QUALIFIED_NAME_SHAPE_MSG.to_string());
            return problems;
        }
    };
    if name.is_empty() {
        problems.push("name part must be non-empty".to_string());
    } else if name.len() > QUALIFIED_NAME_MAX {
        problems.push(format!(
            "name part must be no more than {QUALIFIED_NAME_MAX} characters"
        ));
    }
    if !name.is_empty() && !is_qualified_name_part(name) {
        problems.push(QUALIFIED_NAME_MSG.to_string());
    }
    problems
}

fn label_value_problems(text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if text.len() > LABEL_VALUE_MAX {
        problems.push(format!("must be no more than {LABEL_VALUE_MAX} characters"));
    }
    if !text.is_empty() && !is_qualified_name_part(text) {
        problems.push(LABEL_VALUE_MSG.to_string());
    }
    problems
}

/// Label keys and values (`ValidateLabels`); `field` is e.g. `metadata.labels`.
pub(crate) fn validate_labels(labels: &Value, field: &str, out: &mut Vec<Violation>) {
    let Some(map) = labels.as_object() else {
        out.push(type_violation(field, labels, "object"));
        return;
    };
    for (key, value) in map {
        for problem in qualified_name_problems(key) {
            out.push(Violation::invalid(
                field,
                &Value::String(key.clone()),
                &problem,
            ));
        }
        match value {
            Value::String(text) => {
                for problem in label_value_problems(text) {
                    out.push(Violation::invalid(field, value, &problem));
                }
            }
            other => out.push(type_violation(&format!("{field}.{key}"), other, "string")),
        }
    }
}

/// Annotation keys (qualified names, lower-cased prefix rule aside) and total size.
pub(crate) fn validate_annotations(annotations: &Value, field: &str, out: &mut Vec<Violation>) {
    let Some(map) = annotations.as_object() else {
        out.push(type_violation(field, annotations, "object"));
        return;
    };
    let mut total = 0usize;
    for (key, value) in map {
        // ValidateAnnotations lower-cases the key before the qualified-name check.
        for problem in qualified_name_problems(&key.to_lowercase()) {
            out.push(Violation::invalid(
                field,
                &Value::String(key.clone()),
                &problem,
            ));
        }
        match value {
            Value::String(text) => total += key.len() + text.len(),
            other => out.push(type_violation(&format!("{field}.{key}"), other, "string")),
        }
    }
    if total > ANNOTATIONS_MAX_BYTES {
        out.push(Violation::new(
            field,
            ViolationReason::FieldValueTooLong,
            format!("Too long: may not be more than {ANNOTATIONS_MAX_BYTES} bytes"),
        ));
    }
}

fn validate_finalizers(finalizers: &Value, out: &mut Vec<Violation>) {
    let Some(items) = finalizers.as_array() else {
        out.push(type_violation("metadata.finalizers", finalizers, "array"));
        return;
    };
    for (index, item) in items.iter().enumerate() {
        let field = format!("metadata.finalizers[{index}]");
        let Some(text) = item.as_str() else {
            out.push(type_violation(&field, item, "string"));
            continue;
        };
        let problems = qualified_name_problems(text);
        if !problems.is_empty() {
            for problem in problems {
                out.push(Violation::invalid(&field, item, &problem));
            }
        } else if !text.contains('/') && !STANDARD_FINALIZERS.contains(&text) {
            out.push(Violation::new(
                &field,
                ViolationReason::FieldValueForbidden,
                format!("Forbidden: name is neither a standard finalizer name nor is it fully qualified: {}", quote(text)),
            ));
        }
    }
}

fn validate_owner_references(owners: &Value, out: &mut Vec<Violation>) {
    let Some(items) = owners.as_array() else {
        out.push(type_violation("metadata.ownerReferences", owners, "array"));
        return;
    };
    let mut controllers = 0;
    for (index, owner) in items.iter().enumerate() {
        let base = format!("metadata.ownerReferences[{index}]");
        if !owner.is_object() {
            out.push(type_violation(&base, owner, "object"));
            continue;
        }
        for key in ["apiVersion", "kind", "name", "uid"] {
            match owner.get(key) {
                Some(Value::String(text)) if !text.is_empty() => {}
                Some(Value::String(_)) | None | Some(Value::Null) => {
                    out.push(Violation::new(
                        format!("{base}.{key}"),
                        ViolationReason::FieldValueRequired,
                        "Required value",
                    ));
                }
                Some(other) => out.push(type_violation(&format!("{base}.{key}"), other, "string")),
            }
        }
        if owner.get("controller").and_then(Value::as_bool) == Some(true) {
            controllers += 1;
        }
    }
    if controllers > 1 {
        out.push(Violation::invalid(
            "metadata.ownerReferences",
            &Value::String(render_value(owners)),
            "Only one reference can have Controller set to true",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn namespace_names_are_dns_labels() {
        let problems =
            validate_object_meta_with(&json!({"name": "VMBGP-0"}), false, NameRule::Label);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].field, "metadata.name");
        assert_eq!(problems[0].reason, ViolationReason::FieldValueInvalid);
        assert!(
            problems[0]
                .message
                .starts_with("Invalid value: \"VMBGP-0\": a lowercase RFC 1123 label")
        );
        assert!(
            validate_object_meta_with(&json!({"name": "a.b"}), false, NameRule::Label).len() == 1
        );
        assert!(
            validate_object_meta_with(&json!({"name": "a.b"}), false, NameRule::Subdomain)
                .is_empty()
        );
    }

    #[test]
    fn generate_name_prefix_may_end_with_dash() {
        assert!(validate_object_meta(&json!({"generateName": "vm-0001-mig-"}), true).is_empty());
        let missing = validate_object_meta(&json!({}), true);
        assert_eq!(missing[0].reason, ViolationReason::FieldValueRequired);
    }

    #[test]
    fn label_keys_and_values() {
        let meta = json!({"name": "x", "labels": {"k8s.ovn.org/primary-user-defined-network": "", "good": "ok_1"}});
        assert!(validate_object_meta(&meta, true).is_empty());
        let bad = validate_object_meta(
            &json!({"name": "x", "labels": {"Bad/Key/x": "v", "k": "bad value!"}}),
            true,
        );
        assert_eq!(bad.len(), 2);
        assert!(bad.iter().all(|v| v.field == "metadata.labels"));
        let long = "a".repeat(64);
        let too_long = validate_object_meta(&json!({"name": "x", "labels": {"k": long}}), true);
        assert!(
            too_long[0]
                .message
                .contains("must be no more than 63 characters")
        );
    }

    #[test]
    fn annotation_total_size_is_bounded() {
        let big = "x".repeat(ANNOTATIONS_MAX_BYTES);
        let problems = validate_object_meta(&json!({"name": "x", "annotations": {"a": big}}), true);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].reason, ViolationReason::FieldValueTooLong);
    }

    #[test]
    fn finalizers_must_be_qualified() {
        let ok = json!({"name": "x", "finalizers": ["kubevirt.io/persistent-ipam", "kubernetes"]});
        assert!(validate_object_meta(&ok, true).is_empty());
        let bad = validate_object_meta(&json!({"name": "x", "finalizers": ["mine"]}), true);
        assert_eq!(bad[0].reason, ViolationReason::FieldValueForbidden);
    }
}
