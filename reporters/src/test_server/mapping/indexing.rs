//! One document checked against the mapping as `_bulk` indexes it: dotted keys resolved, new
//! fields introduced as `dynamic` allows, values checked against their mapped types.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{Dynamic, FieldType, MappingError, Mappings, join};

/// One document being parsed: the fields it introduces stay here until it is accepted.
pub(super) struct Parse<'a> {
    pub(super) mappings: &'a Mappings,
    pub(super) added: BTreeMap<String, FieldType>,
    pub(super) id: &'a str,
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

    pub(super) fn object(
        &mut self,
        prefix: &str,
        map: &Map<String, Value>,
    ) -> Result<(), MappingError> {
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

/// Elasticsearch shows at most a short preview of a refused value.
fn preview(value: &Value) -> String {
    let text = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    text.chars().take(20).collect()
}
