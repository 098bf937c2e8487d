//! Structural pruning: removes the fields a kind's schema does not declare, as the API server
//! does for custom resources (`x-kubernetes-preserve-unknown-fields` subtrees and maps are kept).
//!
//! Walks the Strict-converted schema, where exactly the pruning objects carry
//! `additionalProperties: false`; `additionalProperties` schemas are maps (values are walked);
//! objects without `additionalProperties` preserve unknown fields (declared ones are still walked).

use serde_json::{Map, Value};

use crate::violation::quote;

/// One step of a field path, kept in an arena so paths are only built for removed fields.
#[derive(Debug, Clone, Copy)]
enum Step<'v> {
    Root,
    Key(usize, &'v str),
    Index(usize, usize),
}

fn path_of(steps: &[Step<'_>], mut at: usize) -> String {
    let mut parts = Vec::new();
    loop {
        match steps[at] {
            Step::Root => break,
            Step::Key(parent, key) => {
                parts.push(key.to_string());
                at = parent;
            }
            Step::Index(parent, index) => {
                parts.push(format!("[{index}]"));
                at = parent;
            }
        }
    }
    let mut path = String::new();
    for part in parts.iter().rev() {
        if !path.is_empty() && !part.starts_with('[') {
            path.push('.');
        }
        path.push_str(part);
    }
    path
}

/// Removes undeclared fields from `object` under `root` (a converted Strict root schema whose
/// local `$ref`s resolve in its `definitions`). Returns the removed field paths, sorted.
/// Key order of the kept fields is preserved.
pub(crate) fn prune_object(root: &Value, object: &mut Value, meta_fields: &[&str]) -> Vec<String> {
    let mut removed = Vec::new();
    if let Some(Value::Object(meta)) = object.get_mut("metadata") {
        meta.retain(|key, _| {
            let known = meta_fields.contains(&key.as_str());
            if !known {
                removed.push(format!("metadata.{key}"));
            }
            known
        });
    }
    let mut steps: Vec<Step<'_>> = vec![Step::Root];
    // Explicit stack: nesting depth is bounded by the input, not by our call stack.
    let mut pending: Vec<(&Value, &mut Value, usize)> = vec![(root, object, 0)];
    while let Some((schema, value, at)) = pending.pop() {
        let schema = resolve(root, schema);
        match value {
            Value::Object(map) => {
                let properties = schema.get("properties").and_then(Value::as_object);
                let declared = |key: &str| properties.is_some_and(|p| p.contains_key(key));
                match schema.get("additionalProperties") {
                    Some(Value::Bool(false)) => {
                        let mut dropped = Vec::new();
                        map.retain(|key, _| {
                            let keep = declared(key);
                            if !keep {
                                dropped.push(key.clone());
                            }
                            keep
                        });
                        if !dropped.is_empty() {
                            let base = path_of(&steps, at);
                            removed.extend(dropped.iter().map(|key| join(&base, key)));
                        }
                        push_declared(map, properties, at, &mut steps, &mut pending);
                    }
                    Some(map_values @ Value::Object(_)) => {
                        for (key, child) in map.iter_mut() {
                            steps.push(Step::Key(at, key));
                            pending.push((map_values, child, steps.len() - 1));
                        }
                    }
                    _ => push_declared(map, properties, at, &mut steps, &mut pending),
                }
            }
            Value::Array(items) => {
                if let Some(item_schema) = schema.get("items") {
                    for (index, item) in items.iter_mut().enumerate() {
                        steps.push(Step::Index(at, index));
                        pending.push((item_schema, item, steps.len() - 1));
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
    at: usize,
    steps: &mut Vec<Step<'v>>,
    pending: &mut Vec<(&'s Value, &'v mut Value, usize)>,
) {
    let Some(properties) = properties else { return };
    for (key, child) in map.iter_mut() {
        if let Some(child_schema) = properties.get(key) {
            steps.push(Step::Key(at, key));
            pending.push((child_schema, child, steps.len() - 1));
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

/// Fills absent fields that have a schema `default` (inside objects that are present), as the
/// API server's structural defaulting does, then descends into every present field. Returns the
/// defaulted field paths, sorted.
pub(crate) fn default_object(root: &Value, object: &mut Value) -> Vec<String> {
    let mut defaulted = Vec::new();
    let mut pending: Vec<(&Value, &mut Value, String)> = vec![(root, object, String::new())];
    while let Some((schema, value, path)) = pending.pop() {
        let schema = resolve(root, schema);
        match value {
            Value::Object(map) => {
                if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
                    for (key, property) in properties {
                        let property = resolve(root, property);
                        if let Some(default) = property.get("default")
                            && map.get(key).is_none_or(Value::is_null)
                        {
                            map.insert(key.clone(), default.clone());
                            defaulted.push(join(&path, key));
                        }
                    }
                    for (key, child) in map.iter_mut() {
                        if let Some(child_schema) = properties.get(key) {
                            pending.push((child_schema, child, join(&path, key)));
                        }
                    }
                } else if let Some(values @ Value::Object(_)) = schema.get("additionalProperties") {
                    for (key, child) in map.iter_mut() {
                        pending.push((values, child, join(&path, key)));
                    }
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
    defaulted.sort();
    defaulted
}
