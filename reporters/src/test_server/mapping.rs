//! Elasticsearch's field mapping as the test server enforces it, so a type conflict between the
//! documents of one index fails here as it fails on a real cluster.
//!
//! Rules (Elasticsearch "Dynamic field mapping", `DocumentParser`, `DynamicFieldsBuilder`):
//! - the first sight of a field path fixes its type: JSON `true`/`false` → `boolean`, an integer
//!   → `long`, a floating-point number → `float`, an object → `object`, a string → `date` when it
//!   passes date detection (never a pure number), a number when numeric detection is on (off by
//!   default), else `text` with a `.keyword` sub-field; `null` and `[]` map nothing; an array
//!   takes the type of its elements; a dotted key `a.b` is the path `a` → `b`;
//! - a concrete value where an object is mapped, or an object where a concrete type is mapped,
//!   fails the document; so does a value the mapped type cannot parse (numeric fields coerce
//!   numeric strings, `boolean` takes `"true"`, `"false"` and `""`, a `date` takes strings in its
//!   format and numbers only with an `epoch_*` format); `text`/`keyword` take any scalar;
//! - explicit mappings (from an index template or the create-index body) come before dynamic
//!   ones, and `dynamic_templates` before the defaults;
//! - a failed document changes no mapping.
//!
//! The error type is `mapper_parsing_exception`, as Elasticsearch 7 and OpenSearch 1–3 (OpenShift
//! perf CI's indexer) name it; Elasticsearch ≥ 8.8 says `document_parsing_exception` for the same
//! failures. Both are item status 400, which is what the client acts on.
//!
//! Date formats are approximated: `strict_date_optional_time` as `yyyy[-MM[-dd]]` with an
//! optional `THH[:mm[:ss[.fraction]]]` and zone, and the `yyyy/MM/dd[ HH:mm:ss][ Z]` pair; other
//! named or custom formats are not checked.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Number, Value};

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
    fn parse(value: &Value) -> Option<Dynamic> {
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
    fn parse_list(format: Option<&str>) -> Vec<DateFormat> {
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

    fn parses(self, text: &str) -> bool {
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
    fn from_definition(definition: &Map<String, Value>) -> FieldType {
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
enum Detected {
    String,
    Date,
    Long,
    Double,
    Boolean,
    Object,
}

impl Detected {
    fn name(self) -> &'static str {
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
    fn default_type(self, format: DateFormat) -> FieldType {
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
    fn parse(entry: &Value) -> Option<DynamicTemplate> {
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

    fn matches(&self, path: &str, name: &str, detected: Detected) -> bool {
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

    fn field_type(&self, detected: Detected) -> FieldType {
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

/// Why a document was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MappingError {
    #[error(
        "object mapping for [{path}] tried to parse field [{name}] as object, but found a concrete value"
    )]
    ConcreteWhereObject { path: String, name: String },
    #[error(
        "failed to parse field [{path}] of type [{type_name}] in document with id '{id}'. Preview of field's value: '{preview}'"
    )]
    Unparsable {
        path: String,
        type_name: String,
        id: String,
        preview: String,
    },
    #[error(
        "Could not dynamically add mapping for field [{path}]. Existing mapping for [{parent}] must be of type object but found [{type_name}]."
    )]
    ParentNotObject {
        path: String,
        parent: String,
        type_name: String,
    },
    #[error(
        "mapping set to strict, dynamic introduction of [{name}] within [{parent}] is not allowed"
    )]
    Strict { name: String, parent: String },
    #[error("field name cannot be an empty string")]
    EmptyFieldName,
    #[error(
        "object field starting or ending with a [.] makes object resolution ambiguous: [{name}]"
    )]
    AmbiguousDots { name: String },
    #[error("failed to parse: the document source must be a JSON object")]
    NotAnObject,
}

impl MappingError {
    /// The `error.type` of the bulk item.
    pub fn error_type(&self) -> &'static str {
        match self {
            MappingError::Strict { .. } => "strict_dynamic_mapping_exception",
            _ => "mapper_parsing_exception",
        }
    }
}

/// The mapping of one index.
#[derive(Debug, Clone, PartialEq)]
pub struct Mappings {
    /// Full dotted path → type; objects included.
    fields: BTreeMap<String, FieldType>,
    dynamic: Dynamic,
    dynamic_templates: Vec<DynamicTemplate>,
    date_detection: bool,
    numeric_detection: bool,
    dynamic_date_formats: Vec<DateFormat>,
}

impl Default for Mappings {
    fn default() -> Self {
        Mappings {
            fields: BTreeMap::new(),
            dynamic: Dynamic::True,
            dynamic_templates: Vec::new(),
            date_detection: true,
            numeric_detection: false,
            dynamic_date_formats: vec![DateFormat::OptionalTime, DateFormat::SlashDate],
        }
    }
}

impl Mappings {
    /// An empty mapping with Elasticsearch's defaults.
    pub fn new() -> Self {
        Mappings::default()
    }

    /// A `mappings` object (`{"dynamic": …, "dynamic_templates": […], "properties": {…}}`), as in
    /// an index template's `template.mappings`. Anything it does not understand is ignored.
    pub fn from_json(mappings: &Value) -> Self {
        let mut result = Mappings::new();
        result.merge_json(mappings);
        result
    }

    /// Adds a `mappings` object on top of this one (a create-index body over its template).
    pub fn merge_json(&mut self, mappings: &Value) {
        let Some(root) = mappings.as_object() else {
            return;
        };
        if let Some(dynamic) = root.get("dynamic").and_then(Dynamic::parse) {
            self.dynamic = dynamic;
        }
        if let Some(flag) = root.get("date_detection").and_then(Value::as_bool) {
            self.date_detection = flag;
        }
        if let Some(flag) = root.get("numeric_detection").and_then(Value::as_bool) {
            self.numeric_detection = flag;
        }
        if let Some(formats) = root.get("dynamic_date_formats").and_then(Value::as_array) {
            self.dynamic_date_formats = formats
                .iter()
                .filter_map(Value::as_str)
                .flat_map(|f| DateFormat::parse_list(Some(f)))
                .collect();
        }
        if let Some(templates) = root.get("dynamic_templates").and_then(Value::as_array) {
            for template in templates.iter().filter_map(DynamicTemplate::parse) {
                self.dynamic_templates.retain(|t| t.name != template.name);
                self.dynamic_templates.push(template);
            }
        }
        if let Some(properties) = root.get("properties").and_then(Value::as_object) {
            self.add_properties("", properties);
        }
    }

    fn add_properties(&mut self, prefix: &str, properties: &Map<String, Value>) {
        for (name, definition) in properties {
            let Some(definition) = definition.as_object() else {
                continue;
            };
            let path = join(prefix, name);
            let field = FieldType::from_definition(definition);
            let is_object = field.is_object();
            self.fields.insert(path.clone(), field);
            if is_object
                && let Some(inner) = definition.get("properties").and_then(Value::as_object)
            {
                self.add_properties(&path, inner);
            }
        }
    }

    /// The mapped type of a field path (`metadata.k8sVersion`).
    pub fn field(&self, path: &str) -> Option<&FieldType> {
        self.fields.get(path)
    }

    /// Every mapped path and its type.
    pub fn fields(&self) -> &BTreeMap<String, FieldType> {
        &self.fields
    }

    pub fn dynamic_templates(&self) -> &[DynamicTemplate] {
        &self.dynamic_templates
    }

    /// The dynamic template that would map a new field at `path` holding `value`, and the type
    /// it would give the field, if any template matches.
    pub fn dynamic_template_for(
        &self,
        path: &str,
        value: &Value,
    ) -> Option<(&DynamicTemplate, FieldType)> {
        let detected = self.detect(value).0;
        let name = path.rsplit('.').next().unwrap_or(path);
        self.dynamic_templates
            .iter()
            .find(|t| t.matches(path, name, detected))
            .map(|t| (t, t.field_type(detected)))
    }

    /// Checks a document against the mapping and, when it is accepted, adds the fields it
    /// introduced. A refused document leaves the mapping unchanged.
    pub fn index(&mut self, id: &str, document: &Value) -> Result<(), MappingError> {
        let Value::Object(root) = document else {
            return Err(MappingError::NotAnObject);
        };
        let mut parse = Parse {
            mappings: self,
            added: BTreeMap::new(),
            id,
        };
        parse.object("", root)?;
        let added = parse.added;
        self.fields.extend(added);
        Ok(())
    }

    /// The JSON type a new field would be detected as, with the date format that matched.
    fn detect(&self, value: &Value) -> (Detected, DateFormat) {
        let unchecked = DateFormat::Unchecked;
        match value {
            Value::Bool(_) => (Detected::Boolean, unchecked),
            Value::Number(n) if n.is_f64() => (Detected::Double, unchecked),
            Value::Number(_) => (Detected::Long, unchecked),
            Value::Object(_) => (Detected::Object, unchecked),
            Value::String(text) => {
                let long = text.parse::<i64>().is_ok();
                let double = parse_java_double(text).is_some();
                if long && self.numeric_detection {
                    (Detected::Long, unchecked)
                } else if double && self.numeric_detection {
                    (Detected::Double, unchecked)
                } else if !long && !double && self.date_detection {
                    // Elasticsearch refuses to date-detect pure numbers (`2026` is not a year).
                    match self
                        .dynamic_date_formats
                        .iter()
                        .find(|f| **f != DateFormat::Unchecked && f.parses(text))
                    {
                        Some(format) => (Detected::Date, *format),
                        None => (Detected::String, unchecked),
                    }
                } else {
                    (Detected::String, unchecked)
                }
            }
            // Null and arrays are never detected themselves.
            Value::Null | Value::Array(_) => (Detected::String, unchecked),
        }
    }
}

/// How documents stand against an index template: every field path they carry must be mapped
/// by the template (a property, or a dynamic template naming the path) as the JSON type they
/// carry — stricter than Elasticsearch, which would coerce a fraction into a `long` or a number
/// into a `text` field without complaint, leaving the template and the documents disagreeing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TemplateCoverage {
    /// `path: problem`, once per path and problem.
    pub problems: BTreeSet<String>,
    /// Paths mapped by a property that some document carries.
    pub written: BTreeSet<String>,
}

impl TemplateCoverage {
    /// Walks every document. Fields below an object with `dynamic: false` or `enabled: false`
    /// need no mapping: the template keeps them in `_source` only, deliberately.
    pub fn of<'a>(mappings: &Mappings, documents: impl IntoIterator<Item = &'a Value>) -> Self {
        let mut coverage = TemplateCoverage::default();
        for document in documents {
            match document {
                Value::Object(map) => {
                    for (key, value) in map {
                        coverage.field(mappings, "", key, value, false);
                    }
                }
                other => {
                    coverage
                        .problems
                        .insert(format!("document is a {}, not an object", json_kind(other)));
                }
            }
        }
        coverage
    }

    /// Leaf properties of the template that no document carried (a renamed field leaves its
    /// old mapping behind).
    pub fn never_written(&self, mappings: &Mappings) -> Vec<String> {
        mappings
            .fields()
            .iter()
            .filter(|(path, field)| !field.is_object() && !self.written.contains(*path))
            .map(|(path, _)| path.clone())
            .collect()
    }

    fn field(
        &mut self,
        mappings: &Mappings,
        parent: &str,
        key: &str,
        value: &Value,
        unindexed: bool,
    ) {
        if key.is_empty() || key.contains('.') {
            let at = if parent.is_empty() {
                "top level"
            } else {
                parent
            };
            self.problems
                .insert(format!("{at}: key {key:?} is not a plain field name"));
            return;
        }
        let path = join(parent, key);
        self.value(mappings, &path, value, unindexed);
    }

    fn value(&mut self, mappings: &Mappings, path: &str, value: &Value, unindexed: bool) {
        match value {
            Value::Null => return,
            Value::Array(items) => {
                for item in items {
                    self.value(mappings, path, item, unindexed);
                }
                return;
            }
            _ => {}
        }
        let field = match mappings.field(path) {
            Some(field) => {
                self.written.insert(path.to_owned());
                field.clone()
            }
            None => match mappings.dynamic_template_for(path, value) {
                // A template naming the path maps it as deliberately as a property does; one
                // that only names a JSON type is the fallback for fields nobody mapped.
                Some((template, field)) if template.names_fields() => field,
                _ if unindexed => return,
                _ => {
                    self.problems
                        .insert(format!("{path}: not mapped ({})", json_kind(value)));
                    return;
                }
            },
        };
        if !same_kind(&field, value) {
            self.problems.insert(format!(
                "{path}: mapped as {}, documents carry a {}",
                field.name(),
                json_kind(value)
            ));
            return;
        }
        let (
            FieldType::Object {
                enabled: true,
                dynamic,
            },
            Value::Object(map),
        ) = (&field, value)
        else {
            return;
        };
        let unindexed = match dynamic {
            Some(Dynamic::False | Dynamic::Runtime) => true,
            Some(_) => false,
            None => unindexed,
        };
        for (key, inner) in map {
            self.field(mappings, path, key, inner, unindexed);
        }
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "floating-point number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The mapped type is the JSON type the value has (a whole number may go into a floating-point
/// field), and the value parses as it (a date string in the date format).
fn same_kind(field: &FieldType, value: &Value) -> bool {
    let kind = match (field, value) {
        (FieldType::Text | FieldType::Keyword | FieldType::Date { .. }, Value::String(_)) => true,
        (FieldType::Integer { .. }, Value::Number(n)) => !n.is_f64(),
        (FieldType::Floating { .. }, Value::Number(_)) => true,
        (FieldType::Boolean, Value::Bool(_)) => true,
        (FieldType::Object { .. }, Value::Object(_)) => true,
        _ => false,
    };
    kind && field.accepts(value)
}

/// One document being parsed: the fields it introduces stay here until it is accepted.
struct Parse<'a> {
    mappings: &'a Mappings,
    added: BTreeMap<String, FieldType>,
    id: &'a str,
}

impl Parse<'_> {
    fn get(&self, path: &str) -> Option<&FieldType> {
        self.added
            .get(path)
            .or_else(|| self.mappings.fields.get(path))
    }

    /// `dynamic` of the object at `path` ("" is the root), inherited from its parents.
    fn dynamic(&self, path: &str) -> Dynamic {
        let mut current = path;
        loop {
            if current.is_empty() {
                return self.mappings.dynamic;
            }
            if let Some(FieldType::Object {
                dynamic: Some(dynamic),
                ..
            }) = self.get(current)
            {
                return *dynamic;
            }
            current = current.rsplit_once('.').map_or("", |(parent, _)| parent);
        }
    }

    /// Maps a field the document introduces, as `dynamic` at its parent allows. `None`: the
    /// field is not mapped (dynamic false or runtime) and its value is not checked.
    fn introduce(
        &mut self,
        parent: &str,
        path: &str,
        name: &str,
        value: &Value,
    ) -> Result<Option<FieldType>, MappingError> {
        match self.dynamic(parent) {
            Dynamic::Strict => Err(MappingError::Strict {
                name: name.to_owned(),
                parent: if parent.is_empty() {
                    "_doc".to_owned()
                } else {
                    parent.to_owned()
                },
            }),
            Dynamic::False | Dynamic::Runtime => Ok(None),
            Dynamic::True => {
                let field = match self.mappings.dynamic_template_for(path, value) {
                    Some((_, field)) => field,
                    None => {
                        let (detected, format) = self.mappings.detect(value);
                        detected.default_type(format)
                    }
                };
                self.added.insert(path.to_owned(), field.clone());
                Ok(Some(field))
            }
        }
    }

    fn object(&mut self, prefix: &str, map: &Map<String, Value>) -> Result<(), MappingError> {
        for (key, value) in map {
            if key.is_empty() {
                return Err(MappingError::EmptyFieldName);
            }
            if key.starts_with('.') || key.ends_with('.') {
                return Err(MappingError::AmbiguousDots { name: key.clone() });
            }
            // `a.b: 1` is `a: {b: 1}`: every segment but the last is an object.
            let mut parent = prefix.to_owned();
            let mut segments = key.split('.').peekable();
            while let Some(segment) = segments.next() {
                if segment.is_empty() {
                    return Err(MappingError::EmptyFieldName);
                }
                let path = join(&parent, segment);
                if segments.peek().is_none() {
                    self.value(&parent, &path, segment, value)?;
                    break;
                }
                let existing = self.get(&path).cloned();
                let object = match existing {
                    Some(field) => field,
                    None => {
                        match self.introduce(&parent, &path, segment, &Value::Object(Map::new()))? {
                            Some(field) => field,
                            None => break,
                        }
                    }
                };
                match object {
                    FieldType::Object { enabled: false, .. } => break,
                    FieldType::Object { .. } => parent = path,
                    other => {
                        return Err(MappingError::ParentNotObject {
                            path: join(prefix, key),
                            parent: path,
                            type_name: other.name().to_owned(),
                        });
                    }
                }
            }
        }
        Ok(())
    }

    fn value(
        &mut self,
        parent: &str,
        path: &str,
        name: &str,
        value: &Value,
    ) -> Result<(), MappingError> {
        match value {
            Value::Null => Ok(()),
            // Arrays (nested ones flattened) are their elements, one after the other.
            Value::Array(items) => {
                for item in items {
                    self.value(parent, path, name, item)?;
                }
                Ok(())
            }
            _ => {
                let field = match self.get(path).cloned() {
                    Some(field) => field,
                    None => match self.introduce(parent, path, name, value)? {
                        Some(field) => field,
                        None => return Ok(()),
                    },
                };
                self.check(path, name, &field, value)
            }
        }
    }

    fn check(
        &mut self,
        path: &str,
        name: &str,
        field: &FieldType,
        value: &Value,
    ) -> Result<(), MappingError> {
        let id = self.id;
        let unparsable = || MappingError::Unparsable {
            path: path.to_owned(),
            type_name: field.name().to_owned(),
            id: id.to_owned(),
            preview: preview(value),
        };
        match (field, value) {
            // Elasticsearch skips a disabled object's content without looking at it.
            (FieldType::Object { enabled: false, .. }, _) => Ok(()),
            (FieldType::Object { .. }, Value::Object(map)) => self.object(path, map),
            (FieldType::Object { .. }, _) => Err(MappingError::ConcreteWhereObject {
                path: path.to_owned(),
                name: name.to_owned(),
            }),
            _ if field.accepts(value) => Ok(()),
            _ => Err(unparsable()),
        }
    }
}

/// A JSON number into an integer field: whole numbers in range; a fraction only with `coerce`
/// (Elasticsearch truncates it).
fn integer_fits(number: &Number, coerce: bool) -> bool {
    if number.is_i64() || number.is_u64() {
        return true;
    }
    number
        .as_f64()
        .is_some_and(|v| v.abs() < 9.3e18 && (coerce || v.fract() == 0.0))
}

/// Java's `Double.parseDouble` closely enough: surrounding whitespace allowed, `NaN` and
/// `Infinity` spelled as Java spells them, Rust's own spellings of those refused.
fn parse_java_double(text: &str) -> Option<f64> {
    let trimmed = text.trim();
    let unsigned = trimmed.trim_start_matches(['+', '-']);
    match unsigned {
        "NaN" => return Some(f64::NAN),
        "Infinity" => return Some(f64::INFINITY),
        _ => {}
    }
    if unsigned
        .chars()
        .any(|c| c.is_ascii_alphabetic() && c != 'e' && c != 'E')
    {
        return None;
    }
    trimmed.parse::<f64>().ok()
}

fn parse_finite(text: &str) -> Option<f64> {
    parse_java_double(text).filter(|v| v.is_finite())
}

fn digits(text: &str, count: usize) -> Option<(u32, &str)> {
    let head = text.get(..count)?;
    if !head.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((head.parse().ok()?, text.get(count..)?))
}

/// `yyyy[-MM[-dd]]['T'HH[:mm[:ss[.f]]]][zone]`.
fn is_optional_time(text: &str) -> bool {
    let Some((_, mut rest)) = digits(text, 4) else {
        return false;
    };
    let mut has_day = false;
    if let Some(after) = rest.strip_prefix('-') {
        let Some((month, after)) = digits(after, 2) else {
            return false;
        };
        if !(1..=12).contains(&month) {
            return false;
        }
        rest = after;
        if let Some(after) = rest.strip_prefix('-') {
            let Some((day, after)) = digits(after, 2) else {
                return false;
            };
            if !(1..=31).contains(&day) {
                return false;
            }
            rest = after;
            has_day = true;
        }
    }
    if rest.is_empty() {
        return true;
    }
    let Some(time) = rest.strip_prefix('T').filter(|_| has_day) else {
        return false;
    };
    let Some((hour, mut rest)) = digits(time, 2) else {
        return false;
    };
    if hour > 23 {
        return false;
    }
    for limit in [59, 59] {
        let Some(after) = rest.strip_prefix(':') else {
            break;
        };
        let Some((value, after)) = digits(after, 2) else {
            return false;
        };
        if value > limit {
            return false;
        }
        rest = after;
    }
    if let Some(after) = rest.strip_prefix(['.', ',']) {
        let fraction = after.bytes().take_while(u8::is_ascii_digit).count();
        if !(1..=9).contains(&fraction) {
            return false;
        }
        rest = after.get(fraction..).unwrap_or("");
    }
    is_zone(rest, true)
}

/// `` (when optional), `Z`, `±HH`, `±HHmm`, `±HH:mm`.
fn is_zone(text: &str, optional: bool) -> bool {
    if text.is_empty() {
        return optional;
    }
    if text == "Z" {
        return true;
    }
    let Some(offset) = text.strip_prefix(['+', '-']) else {
        return false;
    };
    match offset.len() {
        2 => digits(offset, 2).is_some(),
        4 => digits(offset, 4).is_some(),
        5 => {
            offset.as_bytes().get(2) == Some(&b':')
                && digits(offset, 2).is_some()
                && offset.get(3..).and_then(|m| digits(m, 2)).is_some()
        }
        _ => false,
    }
}

/// `yyyy/MM/dd[ HH:mm:ss][ Z]`.
fn is_slash_date(text: &str) -> bool {
    let parts: Vec<&str> = text.split(' ').collect();
    let Some(date) = parts.first() else {
        return false;
    };
    let fields: Vec<&str> = date.split('/').collect();
    let date_ok = matches!(fields.as_slice(), [y, m, d]
        if y.len() == 4 && digits(y, 4).is_some()
            && digits(m, 2).is_some_and(|(m, rest)| rest.is_empty() && (1..=12).contains(&m))
            && digits(d, 2).is_some_and(|(d, rest)| rest.is_empty() && (1..=31).contains(&d)));
    let time_ok = |t: &str| {
        let hms: Vec<&str> = t.split(':').collect();
        hms.len() == 3 && hms.iter().all(|p| p.len() == 2 && digits(p, 2).is_some())
    };
    date_ok
        && match parts.as_slice() {
            [_] => true,
            [_, second] => time_ok(second) || is_zone(second, false),
            [_, time, zone] => time_ok(time) && is_zone(zone, false),
            _ => false,
        }
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}.{name}")
    }
}

/// Elasticsearch shows at most a short preview of a refused value.
fn preview(value: &Value) -> String {
    let text = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    text.chars().take(20).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn accept(mappings: &mut Mappings, document: Value) {
        if let Err(error) = mappings.index("1", &document) {
            panic!("{document} refused: {error}");
        }
    }

    fn refuse(mappings: &mut Mappings, document: Value) -> MappingError {
        let before = mappings.clone();
        let error = match mappings.index("2", &document) {
            Ok(()) => panic!("{document} accepted"),
            Err(error) => error,
        };
        assert_eq!(*mappings, before, "a refused document changed the mapping");
        error
    }

    #[test]
    fn first_sight_fixes_the_type_of_every_json_kind() {
        let mut m = Mappings::new();
        accept(
            &mut m,
            json!({"b": true, "l": 3, "f": 1.5, "s": "x", "o": {"i": 1}, "n": null, "e": [],
                   "a": [1, 2], "t": "2026-08-20T10:02:12.487913Z", "y": "2026"}),
        );
        fn name<'a>(m: &'a Mappings, path: &str) -> Option<&'a str> {
            m.field(path).map(FieldType::name)
        }
        assert_eq!(name(&m, "b"), Some("boolean"));
        assert_eq!(name(&m, "l"), Some("long"));
        assert_eq!(name(&m, "f"), Some("float"));
        assert_eq!(name(&m, "s"), Some("text"));
        assert_eq!(name(&m, "o"), Some("object"));
        assert_eq!(name(&m, "o.i"), Some("long"));
        assert_eq!(name(&m, "a"), Some("long"));
        assert_eq!(name(&m, "t"), Some("date"));
        // A pure number is never taken for a date, nor (numeric detection off) for a number.
        assert_eq!(name(&m, "y"), Some("text"));
        // null and [] map nothing.
        assert_eq!(name(&m, "n"), None);
        assert_eq!(name(&m, "e"), None);
        // Dotted keys are object paths.
        accept(&mut m, json!({"d.e": 1.0}));
        assert_eq!(name(&m, "d"), Some("object"));
        assert_eq!(name(&m, "d.e"), Some("float"));
    }

    #[test]
    fn an_object_where_a_value_is_mapped_and_the_reverse_are_refused() {
        let mut m = Mappings::new();
        accept(&mut m, json!({"resolution": {"vmReadyLatency": 0.001}}));
        let error = refuse(&mut m, json!({"resolution": 0.001}));
        assert_eq!(error.error_type(), "mapper_parsing_exception");
        assert!(
            error.to_string().contains(
                "tried to parse field [resolution] as object, but found a concrete value"
            ),
            "{error}"
        );

        let mut m = Mappings::new();
        accept(&mut m, json!({"resolution": 0.001}));
        let error = refuse(&mut m, json!({"resolution": {"vmReadyLatency": 0.001}}));
        assert!(
            error
                .to_string()
                .contains("failed to parse field [resolution] of type [float]"),
            "{error}"
        );
        // Through a dotted key too.
        let error = refuse(&mut m, json!({"resolution.vmReadyLatency": 0.001}));
        assert!(
            matches!(error, MappingError::ParentNotObject { .. }),
            "{error}"
        );
        // And inside an array.
        refuse(&mut m, json!({"resolution": [0.5, {"a": 1}]}));
    }

    #[test]
    fn strings_go_into_numbers_only_when_numeric() {
        let mut m = Mappings::new();
        accept(&mut m, json!({"l": 3, "f": 0.5}));
        accept(&mut m, json!({"l": "42", "f": " 2.5 "}));
        // A fraction into long is truncated, not refused (coerce).
        accept(&mut m, json!({"l": 1.5}));
        for bad in [
            json!({"l": "timed out"}),
            json!({"f": "n/a"}),
            json!({"l": true}),
            json!({"f": "NaN"}),
        ] {
            let error = refuse(&mut m, bad);
            assert_eq!(error.error_type(), "mapper_parsing_exception");
        }
        // Text takes any scalar: a number after a string is fine, the reverse is not.
        accept(&mut m, json!({"s": "reason"}));
        accept(&mut m, json!({"s": 12, "l": 12}));
    }

    #[test]
    fn booleans_and_dates_take_only_their_own_values() {
        let mut m = Mappings::new();
        accept(&mut m, json!({"b": false, "t": "2026-08-20T10:02:12Z"}));
        accept(&mut m, json!({"b": "true", "t": "2026-08-20"}));
        accept(&mut m, json!({"b": ""}));
        refuse(&mut m, json!({"b": 1}));
        refuse(&mut m, json!({"b": "yes"}));
        refuse(&mut m, json!({"t": "run in progress"}));
        // A detected date has the detected format only: no epoch numbers.
        refuse(&mut m, json!({"t": 1_750_000_000_000u64}));
        // An explicit date takes strict_date_optional_time||epoch_millis.
        let mut m = Mappings::from_json(&json!({"properties": {"t": {"type": "date"}}}));
        accept(&mut m, json!({"t": 1_750_000_000_000u64}));
        accept(&mut m, json!({"t": "2026-08-20T10:02:12.487913Z"}));
        refuse(&mut m, json!({"t": "2026/08/20"}));
        refuse(&mut m, json!({"t": true}));
    }

    #[test]
    fn explicit_mappings_come_before_dynamic_ones() {
        let template = json!({
            "dynamic_templates": [
                {"reasons": {"path_match": "missing.*", "mapping": {"type": "keyword"}}},
                {"whole_as_double": {"match_mapping_type": "long", "mapping": {"type": "double"}}}
            ],
            "properties": {
                "count": {"type": "long"},
                "ms": {"type": "double"},
                "blob": {"type": "object", "enabled": false},
                "flags": {"type": "object", "dynamic": "strict", "properties": {"known": {"type": "keyword"}}}
            }
        });
        let mut m = Mappings::from_json(&template);
        // An explicit double takes a whole number first; a later fraction is not truncated.
        accept(
            &mut m,
            json!({"ms": 230, "count": 2, "blob": [{"x": 1}, "y", 3]}),
        );
        assert_eq!(m.field("ms").map(FieldType::name), Some("double"));
        accept(
            &mut m,
            json!({"ms": 230.5, "other": 7, "missing": {"P99": "no samples"}}),
        );
        assert_eq!(m.field("other").map(FieldType::name), Some("double"));
        assert_eq!(m.field("missing.P99").map(FieldType::name), Some("keyword"));
        refuse(&mut m, json!({"count": "many"}));
        let error = refuse(&mut m, json!({"flags": {"unknown": "x"}}));
        assert_eq!(error.error_type(), "strict_dynamic_mapping_exception");
        accept(&mut m, json!({"flags": {"known": "x"}}));
    }

    #[test]
    fn field_names_elasticsearch_cannot_resolve_are_refused() {
        let mut m = Mappings::new();
        assert_eq!(refuse(&mut m, json!({"": 1})), MappingError::EmptyFieldName);
        assert!(matches!(
            refuse(&mut m, json!({"reasons": {"timed out after 1.": 1}})),
            MappingError::AmbiguousDots { .. }
        ));
        refuse(&mut m, json!({"a..b": 1}));
        // A reason as a key becomes an object path at each dot: a shorter reason then conflicts.
        accept(
            &mut m,
            json!({"reasons": {"failed: https://198.18.0.1": 1}}),
        );
        let error = refuse(&mut m, json!({"reasons": {"failed: https://198": 1}}));
        assert!(
            matches!(error, MappingError::ConcreteWhereObject { .. }),
            "{error}"
        );
        assert_eq!(refuse(&mut m, json!([1])), MappingError::NotAnObject);
    }

    #[test]
    fn dynamic_false_keeps_unknown_fields_unmapped() {
        let mut m = Mappings::from_json(
            &json!({"properties": {"jobConfig": {"type": "object", "dynamic": false, "properties": {"jobIterations": {"type": "long"}}}}}),
        );
        accept(
            &mut m,
            json!({"jobConfig": {"jobIterations": 2, "bound": {"max": "5s"}}}),
        );
        accept(
            &mut m,
            json!({"jobConfig": {"jobIterations": 3, "bound": 5}}),
        );
        assert_eq!(m.field("jobConfig.bound"), None);
        refuse(&mut m, json!({"jobConfig": {"jobIterations": "two"}}));
    }

    #[test]
    fn date_detection_follows_the_default_formats() {
        for date in [
            "2026-08-20T10:02:12.487913Z",
            "2026-08-20",
            "2026-08",
            "2026-08-20T10:02+02:00",
            "2015/09/02",
            "2015/09/02 10:02:11 +0000",
        ] {
            assert!(is_optional_time(date) || is_slash_date(date), "{date}");
        }
        for text in [
            "2026",
            "v1.33.5",
            "198.19.0.0/24",
            "5a0c3b9e-2f8e-4d1a-9e57-0f3c2a7d9b11",
            "2026-13-01",
            "2026-08-20T25:00",
            "2026-08-20 10:00",
            "0.1.0@d21840e",
            "2026-08-20T",
        ] {
            let mut m = Mappings::new();
            accept(&mut m, json!({"s": text}));
            assert_eq!(m.field("s"), Some(&FieldType::Text), "{text}");
        }
    }

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

    proptest::proptest! {
        #[test]
        fn any_document_is_judged_without_panicking(key in "[a-z.]{0,6}", text in "\\PC{0,24}", number in proptest::num::f64::NORMAL) {
            let mut m = Mappings::new();
            let _ = m.index("p", &json!({key.clone(): text, "n": number}));
            let _ = m.index("p", &json!({key: {"x": number}, "n": text}));
            let _ = is_optional_time(&text);
            let _ = is_slash_date(&text);
        }
    }
}
