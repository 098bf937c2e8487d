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

mod coverage;
mod dynamic_template;
mod field_type;
mod indexing;
mod scalars;

use std::collections::BTreeMap;

use serde_json::{Map, Value};

pub use coverage::TemplateCoverage;
pub use dynamic_template::{DynamicTemplate, glob};
use field_type::Detected;
pub use field_type::{DateFormat, Dynamic, FieldType};
use indexing::Parse;
use scalars::parse_java_double;

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

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}.{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use super::scalars::{is_optional_time, is_slash_date};

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
