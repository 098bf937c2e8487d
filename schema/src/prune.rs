//! Structural pruning: removes the fields a kind's schema does not declare, as the API server
//! does for custom resources (`x-kubernetes-preserve-unknown-fields` subtrees and maps are kept).
//!
//! Walks the Strict-converted schema, where exactly the pruning objects carry
//! `additionalProperties: false`; `additionalProperties` schemas are maps (values are walked);
//! objects without `additionalProperties` preserve unknown fields (declared ones are still walked).

use serde_json::{Map, Value};

use crate::violation::quote;

/// Removes undeclared fields from `object` under `schema` (a converted Strict root whose local
/// `$ref`s resolve in `root`). Returns the removed field paths, sorted.
pub(crate) fn prune_object(root: &Value, object: &mut Value, meta_fields: &[&str]) -> Vec<String> {
    let mut removed = Vec::new();
    if let Some(Value::Object(meta)) = object.get_mut("metadata") {
        let unknown: Vec<String> = meta
            .keys()
            .filter(|k| !meta_fields.contains(&k.as_str()))
            .cloned()
            .collect();
        for key in unknown {
            meta.remove(&key);
            removed.push(format!("metadata.{key}"));
        }
    }
    // Explicit stack: nesting depth is bounded by the input, not by our call stack.
    let mut pending: Vec<(&Value, &mut Value, String)> = vec![(root, object, String::new())];
    while let Some((schema, value, path)) = pending.pop() {
        let schema = resolve(root, schema);
        match value {
            Value::Object(map) => {
                let properties = schema.get("properties").and_then(Value::as_object);
                match schema.get("additionalProperties") {
                    Some(Value::Bool(false)) => {
                        let unknown: Vec<String> = map
                            .keys()
                            .filter(|key| !properties.is_some_and(|p| p.contains_key(*key)))
                            .cloned()
                            .collect();
                        for key in unknown {
                            map.remove(&key);
                            removed.push(join(&path, &key));
                        }
                        push_declared(map, properties, &path, &mut pending);
                    }
                    Some(map_values @ Value::Object(_)) => {
                        for (key, child) in map.iter_mut() {
                            pending.push((map_values, child, join(&path, key)));
                        }
                    }
                    _ => push_declared(map, properties, &path, &mut pending),
                }
            }
            Value::Array(items) => {
                if let Some(item_schema) = schema.get("items") {
                    for (index, item) in items.iter_mut().enumerate() {
                        pending.push((item_schema, item, format!("{path}[{index}]")));
                    }
                }
            }
            _ => {}
        }
    }
    removed.sort();
    removed
}

fn push_declared<'s, 'v>(
    map: &'v mut Map<String, Value>,
    properties: Option<&'s Map<String, Value>>,
    path: &str,
    pending: &mut Vec<(&'s Value, &'v mut Value, String)>,
) {
    let Some(properties) = properties else { return };
    for (key, child) in map.iter_mut() {
        if let Some(child_schema) = properties.get(key) {
            pending.push((child_schema, child, join(path, key)));
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Follows local `$ref`s into `root.definitions` (bounded, in case of a ref cycle).
pub(crate) fn resolve<'a>(root: &'a Value, node: &'a Value) -> &'a Value {
    let mut current = node;
    for _ in 0..16 {
        let Some(name) = current
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix("#/definitions/"))
        else {
            break;
        };
        match root.get("definitions").and_then(|d| d.get(name)) {
            Some(target) => current = target,
            None => break,
        }
    }
    current
}

/// The warning text a real server returns for a pruned field (`Warn` field validation).
pub(crate) fn unknown_field_warning(path: &str) -> String {
    format!("unknown field {}", quote(path))
}
