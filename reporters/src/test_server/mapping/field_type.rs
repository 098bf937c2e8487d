//! The mapped type of a field ([`FieldType`]), with the `dynamic` setting and date formats that
//! shape it, and the JSON type dynamic mapping detects in a new value.

use serde_json::{Map, Value};

use super::scalars::{
    integer_fits, is_optional_time, is_slash_date, parse_finite, parse_java_double,
};

/// What `dynamic` says about fields a document brings that the mapping does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dynamic {
    /// Map them (the default).
    True,
    /// Keep them in `_source` only.
    False,
    /// Refuse the document.
    Strict,
    /// Runtime fields: not indexed, so (here) not type-checked either.
    Runtime,
}

impl Dynamic {
    pub(super) fn parse(value: &Value) -> Option<Dynamic> {
        match value {
            Value::Bool(true) => Some(Dynamic::True),
            Value::Bool(false) => Some(Dynamic::False),
            Value::String(text) => match text.as_str() {
                "true" => Some(Dynamic::True),
                "false" => Some(Dynamic::False),
                "strict" => Some(Dynamic::Strict),
                "runtime" => Some(Dynamic::Runtime),
                _ => None,
            },
            _ => None,
        }
    }
}

/// Date formats the server can check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateFormat {
    /// `strict_date_optional_time` / `date_optional_time`.
    OptionalTime,
    /// `yyyy/MM/dd HH:mm:ss Z||yyyy/MM/dd Z`, the second default dynamic date format.
    SlashDate,
    /// `epoch_millis` / `epoch_second`: numbers and numeric strings.
    Epoch,
    /// Any other format: not checked.
    Unchecked,
}

impl DateFormat {
    /// The formats of a `format` parameter (`a||b`); a date without one takes Elasticsearch's
    /// default `strict_date_optional_time||epoch_millis`.
    pub(super) fn parse_list(format: Option<&str>) -> Vec<DateFormat> {
        let Some(format) = format else {
            return vec![DateFormat::OptionalTime, DateFormat::Epoch];
        };
        let mut formats = Vec::new();
        let mut rest = format;
        while !rest.is_empty() {
            let (part, tail) = rest.split_once("||").unwrap_or((rest, ""));
            rest = tail;
            let format = match part.trim() {
                "strict_date_optional_time" | "date_optional_time" => DateFormat::OptionalTime,
                "epoch_millis" | "epoch_second" => DateFormat::Epoch,
                "yyyy/MM/dd HH:mm:ss Z" | "yyyy/MM/dd Z" | "yyyy/MM/dd HH:mm:ss" | "yyyy/MM/dd" => {
                    DateFormat::SlashDate
                }
                _ => DateFormat::Unchecked,
            };
            if !formats.contains(&format) {
                formats.push(format);
            }
        }
        formats
    }

    pub(super) fn parses(self, text: &str) -> bool {
        match self {
            DateFormat::OptionalTime => is_optional_time(text),
            DateFormat::SlashDate => is_slash_date(text),
            DateFormat::Epoch => parse_finite(text).is_some(),
            DateFormat::Unchecked => true,
        }
    }
}

/// The mapped type of one field path.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldType {
    /// `object` (or `nested`); `enabled: false` keeps the content unparsed.
    Object {
        enabled: bool,
        dynamic: Option<Dynamic>,
    },
    Text,
    Keyword,
    /// `long`, `integer`, `short`, `byte`, `unsigned_long`.
    Integer {
        name: String,
        coerce: bool,
    },
    /// `float`, `double`, `half_float`, `scaled_float`.
    Floating {
        name: String,
        coerce: bool,
    },
    Boolean,
    Date {
        formats: Vec<DateFormat>,
    },
    /// Any other type (`ip`, `flattened`, …): accepted as is.
    Other(String),
}

impl FieldType {
    /// The type name Elasticsearch shows in its messages and `_mapping`.
    pub fn name(&self) -> &str {
        match self {
            FieldType::Object { .. } => "object",
            FieldType::Text => "text",
            FieldType::Keyword => "keyword",
            FieldType::Integer { name, .. } | FieldType::Floating { name, .. } => name,
            FieldType::Boolean => "boolean",
            FieldType::Date { .. } => "date",
            FieldType::Other(name) => name,
        }
    }

    pub fn is_object(&self) -> bool {
        matches!(self, FieldType::Object { .. })
    }

    /// Whether a field of this type takes this value (one element, for an array). For an
    /// enabled object only the kind is judged here; its fields are judged one by one.
    pub fn accepts(&self, value: &Value) -> bool {
        match (self, value) {
            (_, Value::Null) => true,
            (FieldType::Object { enabled: false, .. }, _) => true,
            (FieldType::Object { .. }, value) => value.is_object(),
            (FieldType::Other(kind), Value::Object(_)) => {
                kind == "flattened" || kind == "flat_object"
            }
            (_, Value::Object(_)) => false,
            (_, Value::Array(items)) => items.iter().all(|item| self.accepts(item)),
            (FieldType::Text | FieldType::Keyword | FieldType::Other(_), _) => true,
            (FieldType::Integer { coerce, .. }, Value::Number(n)) => integer_fits(n, *coerce),
            (FieldType::Integer { coerce, .. }, Value::String(text)) => {
                *coerce && parse_java_double(text).is_some_and(|v| v.abs() < 9.3e18)
            }
            (FieldType::Floating { .. }, Value::Number(_)) => true,
            (FieldType::Floating { coerce, .. }, Value::String(text)) => {
                *coerce && parse_java_double(text).is_some_and(f64::is_finite)
            }
            (FieldType::Boolean, Value::Bool(_)) => true,
            (FieldType::Boolean, Value::String(text)) => {
                matches!(text.as_str(), "true" | "false" | "")
            }
            (FieldType::Date { formats }, Value::String(text)) => {
                formats.iter().any(|f| f.parses(text))
            }
            (FieldType::Date { formats }, Value::Number(_)) => formats.contains(&DateFormat::Epoch),
            _ => false,
        }
    }

    /// Reads one mapping definition (`{"type": …, …}` or an object with `properties`).
    pub(super) fn from_definition(definition: &Map<String, Value>) -> FieldType {
        let coerce = definition
            .get("coerce")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        match definition.get("type").and_then(Value::as_str) {
            None | Some("object") | Some("nested") => FieldType::Object {
                enabled: definition.get("enabled").and_then(Value::as_bool) != Some(false),
                dynamic: definition.get("dynamic").and_then(Dynamic::parse),
            },
            Some("text") | Some("match_only_text") => FieldType::Text,
            Some("keyword") | Some("constant_keyword") | Some("wildcard") => FieldType::Keyword,
            Some(name @ ("long" | "integer" | "short" | "byte" | "unsigned_long")) => {
                FieldType::Integer {
                    name: name.to_owned(),
                    coerce,
                }
            }
            Some(name @ ("float" | "double" | "half_float" | "scaled_float")) => {
                FieldType::Floating {
                    name: name.to_owned(),
                    coerce,
                }
            }
            Some("boolean") => FieldType::Boolean,
            Some("date") | Some("date_nanos") => FieldType::Date {
                formats: DateFormat::parse_list(definition.get("format").and_then(Value::as_str)),
            },
            Some(other) => FieldType::Other(other.to_owned()),
        }
    }
}

/// The JSON type a dynamic template's `match_mapping_type` is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Detected {
    String,
    Date,
    Long,
    Double,
    Boolean,
    Object,
}

impl Detected {
    pub(super) fn name(self) -> &'static str {
        match self {
            Detected::String => "string",
            Detected::Date => "date",
            Detected::Long => "long",
            Detected::Double => "double",
            Detected::Boolean => "boolean",
            Detected::Object => "object",
        }
    }

    /// The type a field gets without a dynamic template (`dynamic: true`).
    pub(super) fn default_type(self, format: DateFormat) -> FieldType {
        match self {
            Detected::String => FieldType::Text,
            Detected::Date => FieldType::Date {
                formats: vec![format],
            },
            Detected::Long => FieldType::Integer {
                name: "long".to_owned(),
                coerce: true,
            },
            Detected::Double => FieldType::Floating {
                name: "float".to_owned(),
                coerce: true,
            },
            Detected::Boolean => FieldType::Boolean,
            Detected::Object => FieldType::Object {
                enabled: true,
                dynamic: None,
            },
        }
    }
}
