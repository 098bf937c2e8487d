//! Validation findings in the shape a Kubernetes API server reports them (`field.Error`).

use std::fmt;

use serde_json::Value;

/// Why a field was rejected. The names follow Kubernetes' `metav1.CauseType` strings
/// (see [`ViolationReason::as_str`]), so the lab API server can copy them into a `Status`'s
/// `details.causes[].reason` unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ViolationReason {
    /// `FieldValueInvalid`: wrong value (pattern, range, CEL rule, malformed name, ...).
    FieldValueInvalid,
    /// `FieldValueRequired`: a required field is missing.
    FieldValueRequired,
    /// `FieldValueNotSupported`: a value outside an enum.
    FieldValueNotSupported,
    /// `FieldValueForbidden`: the field may not be set (in this context).
    FieldValueForbidden,
    /// `FieldValueTooLong`: a string (or annotation set) longer than allowed.
    FieldValueTooLong,
    /// `FieldValueTooMany`: a list or map with more items than allowed.
    FieldValueTooMany,
    /// `FieldValueDuplicate`: a repeated item in a `set` or `map` list.
    FieldValueDuplicate,
    /// `FieldValueTypeInvalid`: the JSON type does not match the schema (string for integer, ...).
    FieldValueTypeInvalid,
    /// A field the schema does not declare (Strict mode only). A real API server reports these
    /// with HTTP 400 `strict decoding error: unknown field "..."`, not as a 422 cause.
    UnknownField,
    /// The `apiVersion`/`kind` pair is not a served kind (`no matches for kind ...`; HTTP 404).
    UnknownKind,
    /// The body does not decode into the kind's Go type (a `MicroTime` Go cannot parse). A real
    /// API server answers HTTP 400 `<Kind> in version "<v>" cannot be handled as a <Kind>: ...`
    /// before validating anything, so this violation comes alone.
    Undecodable,
}

impl ViolationReason {
    /// The Kubernetes cause-type string (`FieldValueInvalid`, ...). `UnknownField` and
    /// `UnknownKind` and `Undecodable` have no Kubernetes cause type; they are returned as named here.
    pub fn as_str(self) -> &'static str {
        match self {
            ViolationReason::FieldValueInvalid => "FieldValueInvalid",
            ViolationReason::FieldValueRequired => "FieldValueRequired",
            ViolationReason::FieldValueNotSupported => "FieldValueNotSupported",
            ViolationReason::FieldValueForbidden => "FieldValueForbidden",
            ViolationReason::FieldValueTooLong => "FieldValueTooLong",
            ViolationReason::FieldValueTooMany => "FieldValueTooMany",
            ViolationReason::FieldValueDuplicate => "FieldValueDuplicate",
            ViolationReason::FieldValueTypeInvalid => "FieldValueTypeInvalid",
            ViolationReason::UnknownField => "UnknownField",
            ViolationReason::UnknownKind => "UnknownKind",
            ViolationReason::Undecodable => "Undecodable",
        }
    }

    /// Parses a CEL rule's `reason` (`FieldValueInvalid`, `FieldValueForbidden`, ...).
    pub(crate) fn from_cel_reason(reason: &str) -> Option<Self> {
        match reason {
            "FieldValueInvalid" => Some(ViolationReason::FieldValueInvalid),
            "FieldValueForbidden" => Some(ViolationReason::FieldValueForbidden),
            "FieldValueRequired" => Some(ViolationReason::FieldValueRequired),
            "FieldValueDuplicate" => Some(ViolationReason::FieldValueDuplicate),
            _ => None,
        }
    }
}

impl fmt::Display for ViolationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One rejected field.
///
/// `message` is the error body as Kubernetes words it (`Unsupported value: "Foo": supported
/// values: "Primary", "Secondary"`); `Display` prefixes the field path, giving the full line a
/// real API server prints (`spec.network.layer2.role: Unsupported value: ...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Dotted field path with `[i]` list indices, e.g. `spec.network.layer2.role`.
    pub field: String,
    pub reason: ViolationReason,
    pub message: String,
}

impl Violation {
    pub(crate) fn new(
        field: impl Into<String>,
        reason: ViolationReason,
        message: impl Into<String>,
    ) -> Self {
        Violation {
            field: field.into(),
            reason,
            message: message.into(),
        }
    }

    pub(crate) fn required(field: impl Into<String>) -> Self {
        Violation::new(field, ViolationReason::FieldValueRequired, "Required value")
    }

    pub(crate) fn invalid(field: impl Into<String>, value: &Value, detail: &str) -> Self {
        Violation::new(
            field,
            ViolationReason::FieldValueInvalid,
            format!("Invalid value: {}: {detail}", render_value(value)),
        )
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// Every violation found in one object (never empty when returned as an error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violations(pub Vec<Violation>);

impl Violations {
    /// True when some violation has this field and reason (handy in tests and callers).
    pub fn contains(&self, field: &str, reason: ViolationReason) -> bool {
        self.0
            .iter()
            .any(|v| v.field == field && v.reason == reason)
    }

    /// The HTTP status a real API server answers a create/update with these findings:
    /// 404 when the kind is unknown, 400 (`BadRequest`) when the body does not decode or a
    /// Strict validation found unknown fields ("strict decoding error"), else 422 (`Invalid`).
    pub fn http_status(&self) -> u16 {
        if self
            .0
            .iter()
            .any(|v| v.reason == ViolationReason::UnknownKind)
        {
            404
        } else if self.0.iter().any(|v| {
            matches!(
                v.reason,
                ViolationReason::UnknownField | ViolationReason::Undecodable
            )
        }) {
            400
        } else {
            422
        }
    }

    /// The `Status.message` a real API server returns with `422 Invalid`:
    /// `ClusterUserDefinedNetwork.k8s.ovn.org "net1" is invalid: [a: ..., b: ...]`.
    /// `group` is empty for the core group.
    pub fn invalid_status_message(&self, kind: &str, group: &str, name: &str) -> String {
        let qualified = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        let joined: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        if joined.len() == 1 {
            format!("{qualified} \"{name}\" is invalid: {}", joined[0])
        } else {
            format!("{qualified} \"{name}\" is invalid: [{}]", joined.join(", "))
        }
    }
}

impl fmt::Display for Violations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, violation) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{violation}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Violations {}

/// Renders a value the way Kubernetes prints it after `Invalid value:`: strings quoted,
/// scalars bare, composites by their type name (`"object"`, `"array"`), as CEL errors do.
pub(crate) fn render_value(value: &Value) -> String {
    match value {
        Value::String(text) => quote(text),
        Value::Number(number) => number.to_string(),
        Value::Bool(flag) => flag.to_string(),
        Value::Null => "null".to_string(),
        Value::Object(_) => "\"object\"".to_string(),
        Value::Array(_) => "\"array\"".to_string(),
    }
}

/// The JSON type name Kubernetes uses in type errors.
pub(crate) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::String(_) => "string",
        Value::Number(number) if number.is_i64() || number.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::Bool(_) => "boolean",
        Value::Null => "null",
        Value::Object(_) => "object",
        Value::Array(_) => "array",
    }
}

/// Go-style `%q` quoting (JSON string escaping is the same for the characters that matter here).
pub(crate) fn quote(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| format!("\"{text}\""))
}
