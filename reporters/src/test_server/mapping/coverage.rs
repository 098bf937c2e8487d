//! How a set of documents stands against an index template: fields the template does not map,
//! or maps as another JSON type, and template properties no document writes.

use std::collections::BTreeSet;

use serde_json::Value;

use super::{Dynamic, FieldType, Mappings, join};

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
