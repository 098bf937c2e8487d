//! Turns Kubernetes structural schemas (CRD `openAPIV3Schema`, swagger `definitions`) into JSON
//! Schema the `jsonschema` crate compiles, and maps its errors back to Kubernetes field errors.
//!
//! What the conversion does, and why:
//! - `x-kubernetes-int-or-string` (and swagger `Quantity` / `IntOrString`) → `type: [integer, string]`.
//! - `nullable: true` → `null` added to `type` (and `enum`). Null object members are removed
//!   from the instance before validation, as the API server prunes them.
//! - `x-kubernetes-embedded-resource` → `apiVersion` and `kind` required, `metadata` allowed.
//! - Strict mode: `additionalProperties: false` on every object schema that does not preserve
//!   unknown fields, so unknown fields are reported like kubectl's strict field validation.
//! - The root `metadata` accepts any object: `meta::validate_object_meta` checks it.
//! - Only the formats Kubernetes checks are kept (`date-time`, `ipv4`, `ipv6`, `cidr`).
//! - `x-kubernetes-validations` and `x-kubernetes-list-type` stay, as custom keywords;
//!   `default` stays for defaulting (the validator ignores it).

use jsonschema::ValidationError;
use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::paths::LocationSegment;
use serde_json::{Map, Value, json};

use crate::keywords::Payload;
use crate::violation::{Violation, ViolationReason, quote, render_value, type_name};

/// How unknown fields are treated. (Schema conversion: Strict adds `additionalProperties: false`
/// to every pruning object; the Prune conversion does not and serves tests and tooling.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Strictness {
    /// Unknown fields are violations (kubectl's default `--validate=strict`).
    Strict,
    /// Unknown fields are pruned, then the rest is validated (the API server with
    /// `fieldValidation=Ignore` or `Warn`).
    Prune,
}

const OBJECT_META_REF: &str = "#/definitions/k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta";
const QUANTITY_REF: &str = "#/definitions/k8s.io.apimachinery.pkg.api.resource.Quantity";
const INT_OR_STRING_REF: &str = "#/definitions/k8s.io.apimachinery.pkg.util.intstr.IntOrString";
/// The pattern controller-gen emits for `resource.Quantity`.
const QUANTITY_PATTERN: &str = r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$";
const KEPT_FORMATS: &[&str] = &["date-time", "ipv4", "ipv6", "cidr"];
/// Keywords copied unchanged.
const COPIED: &[&str] = &[
    "enum",
    "pattern",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "uniqueItems",
    "minProperties",
    "maxProperties",
    "multipleOf",
    "required",
    "x-kubernetes-validations",
    "x-kubernetes-list-type",
    // Not a validation keyword: kept for `SchemaSet::apply_defaults`.
    "default",
    "x-kubernetes-list-map-keys",
];

#[derive(Debug, Clone, Copy)]
struct Context {
    strict: bool,
    /// The object's top level: its `metadata` is validated elsewhere.
    root: bool,
    /// Inside `allOf`/`anyOf`/`oneOf`/`not`: constraints only, no pruning semantics.
    value_validation: bool,
}

/// Converts a top-level kind schema.
pub(crate) fn convert_root(schema: &Value, mode: Strictness) -> Value {
    convert(
        schema,
        Context {
            strict: mode == Strictness::Strict,
            root: true,
            value_validation: false,
        },
    )
}

/// Converts a swagger definition referenced from a kind schema.
pub(crate) fn convert_definition(schema: &Value, mode: Strictness) -> Value {
    convert(
        schema,
        Context {
            strict: mode == Strictness::Strict,
            root: false,
            value_validation: false,
        },
    )
}

fn int_or_string() -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("type".into(), json!(["integer", "string"]));
    out
}

fn convert(node: &Value, ctx: Context) -> Value {
    let Some(input) = node.as_object() else {
        return node.clone();
    };
    if let Some(reference) = input.get("$ref").and_then(Value::as_str) {
        return match reference {
            // Nested ObjectMeta (templates): KubeVirt's CRDs keep it as a preserved, nullable object.
            OBJECT_META_REF => json!({"type": ["object", "null"]}),
            QUANTITY_REF => json!({"type": ["integer", "string"], "pattern": QUANTITY_PATTERN}),
            INT_OR_STRING_REF => Value::Object(int_or_string()),
            other => json!({"$ref": other}),
        };
    }
    let child = Context { root: false, ..ctx };
    let preserve = input
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true);
    let mut out = Map::new();

    if input
        .get("x-kubernetes-int-or-string")
        .and_then(Value::as_bool)
        == Some(true)
    {
        out = int_or_string();
    } else if let Some(kind) = input.get("type").and_then(Value::as_str) {
        out.insert("type".into(), Value::String(kind.to_string()));
    }
    for key in COPIED {
        if let Some(value) = input.get(*key) {
            out.insert((*key).to_string(), value.clone());
        }
    }
    if let Some(format) = input.get("format").and_then(Value::as_str)
        && KEPT_FORMATS.contains(&format)
    {
        out.insert("format".into(), Value::String(format.to_string()));
    }
    if input.get("nullable").and_then(Value::as_bool) == Some(true) {
        add_null(&mut out);
    }
    if let Some(Value::Object(properties)) = input.get("properties") {
        let mut converted = Map::new();
        for (name, schema) in properties {
            // The root metadata is checked (types included) by `meta::validate_object_meta`.
            let value = if ctx.root && name == "metadata" {
                json!({})
            } else {
                convert(schema, child)
            };
            converted.insert(name.clone(), value);
        }
        out.insert("properties".into(), Value::Object(converted));
    }
    match input.get("additionalProperties") {
        Some(Value::Object(_)) => {
            let schema = input
                .get("additionalProperties")
                .map(|s| convert(s, child))
                .unwrap_or(Value::Bool(true));
            out.insert("additionalProperties".into(), schema);
        }
        Some(Value::Bool(flag)) => {
            out.insert("additionalProperties".into(), Value::Bool(*flag));
        }
        _ => {}
    }
    if let Some(items) = input.get("items") {
        out.insert("items".into(), convert(items, child));
    }
    for combinator in ["allOf", "anyOf", "oneOf"] {
        if let Some(Value::Array(list)) = input.get(combinator) {
            let inner = Context {
                value_validation: true,
                root: false,
                ..ctx
            };
            out.insert(
                combinator.into(),
                Value::Array(list.iter().map(|s| convert(s, inner)).collect()),
            );
        }
    }
    if let Some(negated) = input.get("not") {
        out.insert(
            "not".into(),
            convert(
                negated,
                Context {
                    value_validation: true,
                    root: false,
                    ..ctx
                },
            ),
        );
    }
    if input
        .get("x-kubernetes-embedded-resource")
        .and_then(Value::as_bool)
        == Some(true)
    {
        embed_resource(&mut out);
    }
    let is_object = input.get("type").and_then(Value::as_str) == Some("object")
        || input.contains_key("properties");
    if ctx.strict
        && !ctx.value_validation
        && is_object
        && !preserve
        && !out.contains_key("additionalProperties")
    {
        out.insert("additionalProperties".into(), Value::Bool(false));
    }
    Value::Object(out)
}

fn add_null(out: &mut Map<String, Value>) {
    match out.get_mut("type") {
        Some(Value::String(kind)) => {
            let kind = std::mem::take(kind);
            out.insert("type".into(), json!([kind, "null"]));
        }
        Some(Value::Array(kinds)) => kinds.push(Value::String("null".into())),
        _ => {}
    }
    if let Some(Value::Array(options)) = out.get_mut("enum") {
        options.push(Value::Null);
    }
}

fn embed_resource(out: &mut Map<String, Value>) {
    let properties = out
        .entry("properties")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(properties) = properties {
        properties
            .entry("apiVersion")
            .or_insert_with(|| json!({"type": "string", "minLength": 1}));
        properties
            .entry("kind")
            .or_insert_with(|| json!({"type": "string", "minLength": 1}));
        properties
            .entry("metadata")
            .or_insert_with(|| json!({"type": "object"}));
    }
    let required = out
        .entry("required")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(required) = required {
        for key in ["apiVersion", "kind"] {
            if !required.iter().any(|r| r.as_str() == Some(key)) {
                required.push(Value::String(key.into()));
            }
        }
    }
}

/// Deepest nesting `validate` accepts. JSON bodies parsed by serde_json are capped at 128
/// levels; deeper values can only be built in code, and cloning or dropping them recursively
/// (serde_json does both) could exhaust the stack.
pub(crate) const MAX_NESTING: usize = 512;

/// What one pass over an object found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shape {
    /// Some object member is `null`.
    pub(crate) has_null_member: bool,
    /// Nesting depth (a scalar is 1), counted up to `MAX_NESTING + 1`.
    pub(crate) depth: usize,
}

/// Scans without recursion (explicit stack), stopping early past `MAX_NESTING`.
pub(crate) fn shape(value: &Value) -> Shape {
    let mut found = Shape {
        has_null_member: false,
        depth: 0,
    };
    let mut pending = vec![(value, 1usize)];
    while let Some((node, depth)) = pending.pop() {
        found.depth = found.depth.max(depth);
        if depth > MAX_NESTING {
            break;
        }
        match node {
            Value::Object(map) => {
                found.has_null_member |= map.values().any(Value::is_null);
                pending.extend(map.values().map(|child| (child, depth + 1)));
            }
            Value::Array(items) => pending.extend(items.iter().map(|child| (child, depth + 1))),
            _ => {}
        }
    }
    found
}

/// A copy of `value` without null object members (the API server prunes them before
/// validation). Call only for values within `MAX_NESTING`.
pub(crate) fn without_null_members(value: &Value) -> Value {
    let mut copy = value.clone();
    let mut pending = vec![&mut copy];
    while let Some(node) = pending.pop() {
        match node {
            Value::Object(map) => {
                map.retain(|_, v| !v.is_null());
                pending.extend(map.values_mut());
            }
            Value::Array(items) => pending.extend(items.iter_mut()),
            _ => {}
        }
    }
    copy
}

/// Kubernetes field path (`spec.layer2.subnets[0]`) of a JSON-pointer instance location.
pub(crate) fn field_path<'a>(segments: impl Iterator<Item = LocationSegment<'a>>) -> String {
    let mut path = String::new();
    for segment in segments {
        match segment {
            LocationSegment::Property(name) => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(&name);
            }
            LocationSegment::Index(index) => {
                path.push('[');
                path.push_str(&index.to_string());
                path.push(']');
            }
        }
    }
    path
}

fn join(path: &str, child: &str) -> String {
    if path.is_empty() {
        child.to_string()
    } else {
        format!("{path}.{child}")
    }
}

fn type_kind_name(kind: &TypeKind) -> String {
    match kind {
        TypeKind::Single(single) => single.to_string(),
        TypeKind::Multiple(set) => {
            let names: Vec<String> = set
                .iter()
                .filter(|t| t.as_str() != "null")
                .map(|t| t.to_string())
                .collect();
            names.join(" or ")
        }
    }
}

fn limit_text(limit: &Value) -> String {
    match limit {
        Value::Number(number) => number.to_string(),
        other => render_value(other),
    }
}

/// Maps one `jsonschema` error to Kubernetes violations (one per unknown field for
/// `additionalProperties`).
///
/// `validated` is the whole instance the error came from: an object schema without
/// `properties` reports `additionalProperties: false` once, at the object, and the unknown
/// field names are read from the instance there.
pub(crate) fn map_error(error: &ValidationError<'_>, validated: &Value) -> Vec<Violation> {
    let path = field_path(error.instance_path().segments());
    let instance: &Value = error.instance();
    let shown = render_value(instance);
    let one = |reason: ViolationReason, message: String| {
        vec![Violation::new(path.clone(), reason, message)]
    };
    match error.kind() {
        ValidationErrorKind::AdditionalProperties { unexpected } => unexpected
            .iter()
            .map(|name| {
                let field = join(&path, name);
                let message = format!("unknown field {}", quote(&field));
                Violation::new(field, ViolationReason::UnknownField, message)
            })
            .collect(),
        ValidationErrorKind::Required { property } => {
            let name = property
                .as_str()
                .map_or_else(|| property.to_string(), str::to_string);
            vec![Violation::required(join(&path, &name))]
        }
        ValidationErrorKind::Type { kind } => {
            let actual = type_name(instance);
            let expected = type_kind_name(kind);
            one(
                ViolationReason::FieldValueTypeInvalid,
                format!(
                    "Invalid value: \"{actual}\": {path} in body must be of type {expected}: \"{actual}\""
                ),
            )
        }
        ValidationErrorKind::Enum { options } => {
            let supported: Vec<String> = options
                .as_array()
                .map(|o| {
                    o.iter()
                        .filter(|v| !v.is_null())
                        .map(render_value)
                        .collect()
                })
                .unwrap_or_default();
            one(
                ViolationReason::FieldValueNotSupported,
                format!(
                    "Unsupported value: {shown}: supported values: {}",
                    supported.join(", ")
                ),
            )
        }
        ValidationErrorKind::Pattern { pattern } => one(
            ViolationReason::FieldValueInvalid,
            format!("Invalid value: {shown}: {path} in body should match '{pattern}'"),
        ),
        ValidationErrorKind::MaxLength { limit } => one(
            ViolationReason::FieldValueTooLong,
            format!("Too long: may not be more than {limit} bytes"),
        ),
        ValidationErrorKind::MinLength { limit } => one(
            ViolationReason::FieldValueInvalid,
            format!("Invalid value: {shown}: {path} in body should be at least {limit} chars long"),
        ),
        ValidationErrorKind::MaxItems { limit } => {
            let count = instance.as_array().map_or(0, Vec::len);
            one(
                ViolationReason::FieldValueTooMany,
                format!("Too many: {count}: must have at most {limit} items"),
            )
        }
        ValidationErrorKind::MinItems { limit } => {
            let count = instance.as_array().map_or(0, Vec::len);
            one(
                ViolationReason::FieldValueInvalid,
                format!(
                    "Invalid value: {count}: {path} in body should have at least {limit} items"
                ),
            )
        }
        ValidationErrorKind::MaxProperties { limit } => {
            let count = instance.as_object().map_or(0, Map::len);
            one(
                ViolationReason::FieldValueTooMany,
                format!("Too many: {count}: must have at most {limit} items"),
            )
        }
        ValidationErrorKind::MinProperties { limit } => one(
            ViolationReason::FieldValueInvalid,
            format!(
                "Invalid value: {shown}: {path} in body should have at least {limit} properties"
            ),
        ),
        ValidationErrorKind::Maximum { limit } => one(
            ViolationReason::FieldValueInvalid,
            format!(
                "Invalid value: {shown}: {path} in body should be less than or equal to {}",
                limit_text(limit)
            ),
        ),
        ValidationErrorKind::Minimum { limit } => one(
            ViolationReason::FieldValueInvalid,
            format!(
                "Invalid value: {shown}: {path} in body should be greater than or equal to {}",
                limit_text(limit)
            ),
        ),
        ValidationErrorKind::ExclusiveMaximum { limit } => one(
            ViolationReason::FieldValueInvalid,
            format!(
                "Invalid value: {shown}: {path} in body should be less than {}",
                limit_text(limit)
            ),
        ),
        ValidationErrorKind::ExclusiveMinimum { limit } => one(
            ViolationReason::FieldValueInvalid,
            format!(
                "Invalid value: {shown}: {path} in body should be greater than {}",
                limit_text(limit)
            ),
        ),
        ValidationErrorKind::Format { format } => {
            let actual = instance.as_str().unwrap_or_default();
            one(
                ViolationReason::FieldValueInvalid,
                format!(
                    "Invalid value: {shown}: {path} in body must be of type {format}: {}",
                    quote(actual)
                ),
            )
        }
        ValidationErrorKind::UniqueItems => one(
            ViolationReason::FieldValueDuplicate,
            format!("Duplicate value: {shown}"),
        ),
        ValidationErrorKind::Custom { message, .. } => match Payload::decode(message) {
            Some(payload) => {
                let field = format!("{path}{}", payload.suffix);
                let reason = ViolationReason::from_cel_reason(&payload.reason)
                    .unwrap_or(ViolationReason::FieldValueInvalid);
                vec![Violation::new(field, reason, payload.body)]
            }
            None => one(
                ViolationReason::FieldValueInvalid,
                format!("Invalid value: {shown}: {message}"),
            ),
        },
        ValidationErrorKind::FalseSchema => {
            let closed_object = error
                .schema_path()
                .as_str()
                .ends_with("/additionalProperties");
            match validated.pointer(error.instance_path().as_str()) {
                Some(Value::Object(members)) if closed_object => members
                    .keys()
                    .map(|name| {
                        let field = join(&path, name);
                        let message = format!("unknown field {}", quote(&field));
                        Violation::new(field, ViolationReason::UnknownField, message)
                    })
                    .collect(),
                _ => one(
                    ViolationReason::FieldValueForbidden,
                    "Forbidden: not allowed".into(),
                ),
            }
        }
        _ => one(
            ViolationReason::FieldValueInvalid,
            format!("Invalid value: {shown}: {error}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_mode_closes_objects_unless_preserved() {
        let schema = json!({
            "type": "object",
            "properties": {
                "a": {"type": "object", "properties": {"b": {"type": "string"}}},
                "p": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                "m": {"type": "object", "additionalProperties": {"type": "string"}}
            }
        });
        let strict = convert_root(&schema, Strictness::Strict);
        assert_eq!(strict["additionalProperties"], json!(false));
        assert_eq!(
            strict["properties"]["a"]["additionalProperties"],
            json!(false)
        );
        assert!(
            strict["properties"]["p"]
                .get("additionalProperties")
                .is_none()
        );
        assert_eq!(
            strict["properties"]["m"]["additionalProperties"],
            json!({"type": "string"})
        );
        let prune = convert_root(&schema, Strictness::Prune);
        assert!(prune.get("additionalProperties").is_none());
    }

    #[test]
    fn int_or_string_and_nullable() {
        let schema = json!({"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]});
        let converted = convert_definition(&schema, Strictness::Strict);
        assert_eq!(converted["type"], json!(["integer", "string"]));
        let nullable = convert_definition(
            &json!({"type": "string", "enum": ["A"], "nullable": true}),
            Strictness::Strict,
        );
        assert_eq!(nullable["type"], json!(["string", "null"]));
        assert_eq!(nullable["enum"], json!(["A", null]));
    }

    #[test]
    fn null_members_are_found_and_removed() {
        assert!(!shape(&json!({"a": {"b": 1}})).has_null_member);
        let with_nulls = json!({"a": {"b": null, "c": [{"d": null}]}});
        assert!(shape(&with_nulls).has_null_member);
        assert_eq!(shape(&with_nulls).depth, 5);
        assert_eq!(without_null_members(&with_nulls), json!({"a": {"c": [{}]}}));
    }
}
