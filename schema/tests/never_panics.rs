//! `validate` (and the metadata / controller checks) return on any input instead of panicking:
//! the reference objects are mutated at random nodes with random JSON and fed back in.

use std::sync::OnceLock;

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use vmbgp_schema::{SchemaSet, Strictness, ra_controller_check, validate_object_meta};

fn schemas() -> &'static SchemaSet {
    static SET: OnceLock<SchemaSet> = OnceLock::new();
    SET.get_or_init(|| SchemaSet::embedded().expect("embedded schemas compile"))
}

const FIXTURES: &[&str] = &[
    "namespace.yaml",
    "cudn.yaml",
    "cudn-reserved.yaml",
    "frrconfiguration.yaml",
    "routeadvertisements.yaml",
    "virtualmachine.yaml",
    "vmim.yaml",
    "ipamclaim.yaml",
    "lease.yaml",
    "event.yaml",
];

fn fixtures() -> &'static Vec<Value> {
    static LOADED: OnceLock<Vec<Value>> = OnceLock::new();
    LOADED.get_or_init(|| {
        FIXTURES
            .iter()
            .map(|name| {
                let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
                let text = std::fs::read_to_string(&path).expect("fixture readable");
                serde_saphyr::from_str(&text).expect("fixture is YAML")
            })
            .collect()
    })
}

/// Strings that exercise the CEL checks and name validators (CIDRs, durations, route targets).
fn interesting_string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("10.200.0.0/16".to_string()),
        Just("10.200.0.1".to_string()),
        Just("fd00::/64".to_string()),
        Just("1500ms".to_string()),
        Just("-5s".to_string()),
        Just("*:4294967296".to_string()),
        Just("1.2.3.4:99999".to_string()),
        Just("Layer2".to_string()),
        Just("Layer3".to_string()),
        Just("PodNetwork".to_string()),
        Just("EgressIP".to_string()),
        Just("Primary".to_string()),
        Just("Disabled".to_string()),
        Just("Persistent".to_string()),
        Just("ClusterUserDefinedNetworks".to_string()),
        // MicroTimes Go accepts and refuses.
        Just("2026-12-03T18:30:00.000000Z".to_string()),
        Just("2026-12-03T18:30:00Z".to_string()),
        Just("2026-02-30T24:60:60.1234567+25:61".to_string()),
        Just("Warning".to_string()),
        "\\PC{0,24}",
        "[a-zA-Z0-9:./*-]{0,40}",
    ]
}

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        interesting_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((interesting_string(), inner), 0..6)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<String, Value>>())),
        ]
    })
}

/// Every node of `value` in pre-order, as JSON pointers.
fn pointers(value: &Value, prefix: String, out: &mut Vec<String>) {
    out.push(prefix.clone());
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let escaped = key.replace('~', "~0").replace('/', "~1");
                pointers(child, format!("{prefix}/{escaped}"), out);
            }
        }
        Value::Array(items) => {
            for (index, child) in items.iter().enumerate() {
                pointers(child, format!("{prefix}/{index}"), out);
            }
        }
        _ => {}
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Replace(usize, Value),
    Delete(usize),
    Insert(usize, String, Value),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), arbitrary_json()).prop_map(|(at, value)| Mutation::Replace(at, value)),
        any::<usize>().prop_map(Mutation::Delete),
        (any::<usize>(), interesting_string(), arbitrary_json())
            .prop_map(|(at, key, value)| Mutation::Insert(at, key, value)),
    ]
}

fn apply(object: &mut Value, mutation: &Mutation) {
    let mut all = Vec::new();
    pointers(object, String::new(), &mut all);
    let pick = |at: usize| all[at % all.len()].clone();
    match mutation {
        Mutation::Replace(at, value) => {
            if let Some(node) = object.pointer_mut(&pick(*at)) {
                *node = value.clone();
            }
        }
        Mutation::Delete(at) => {
            let pointer = pick(*at);
            if let Some((parent, key)) = pointer.rsplit_once('/') {
                let key = key.replace("~1", "/").replace("~0", "~");
                match object.pointer_mut(parent) {
                    Some(Value::Object(map)) => {
                        map.remove(&key);
                    }
                    Some(Value::Array(items)) => {
                        if let Ok(index) = key.parse::<usize>()
                            && index < items.len()
                        {
                            items.remove(index);
                        }
                    }
                    _ => {}
                }
            }
        }
        Mutation::Insert(at, key, value) => match object.pointer_mut(&pick(*at)) {
            Some(Value::Object(map)) => {
                map.insert(key.clone(), value.clone());
            }
            Some(Value::Array(items)) => items.push(value.clone()),
            _ => {}
        },
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 768, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_reference_objects_never_panic(
        which in 0..FIXTURES.len(),
        mutations in prop::collection::vec(mutation(), 1..5),
    ) {
        let mut object = fixtures()[which].clone();
        for m in &mutations {
            apply(&mut object, m);
        }
        for mode in [Strictness::Strict, Strictness::Prune] {
            if let Err(violations) = schemas().validate(&object, mode) {
                prop_assert!(!violations.0.is_empty());
                let _ = violations.to_string();
            }
        }
        let mut pruned = object.clone();
        if let Ok(removed) = schemas().prune(&mut pruned) {
            // Prune mode is "prune, then validate": the verdicts agree.
            prop_assert_eq!(
                schemas().validate(&object, Strictness::Prune).is_ok(),
                schemas().validate(&pruned, Strictness::Strict).is_ok()
            );
            // Pruning is idempotent.
            let mut again = pruned.clone();
            prop_assert_eq!(schemas().prune(&mut again).ok(), Some(Vec::new()));
            prop_assert_eq!(&again, &pruned);
            // A strictly valid object has nothing to prune.
            if schemas().validate(&object, Strictness::Strict).is_ok() {
                prop_assert!(removed.is_empty(), "pruned {:?} from a strictly valid object", removed);
            }
        }
        let mut defaulted = object.clone();
        let _ = schemas().apply_defaults(&mut defaulted);
        let meta = object.get("metadata").cloned().unwrap_or(Value::Null);
        let _ = validate_object_meta(&meta, true);
        let _ = ra_controller_check(&object, std::slice::from_ref(&object));
    }

    #[test]
    fn arbitrary_values_never_panic(value in arbitrary_json()) {
        let _ = schemas().validate(&value, Strictness::Strict);
        let _ = validate_object_meta(&value, false);
        let _ = ra_controller_check(&value, std::slice::from_ref(&value));
    }
}

#[test]
fn deep_nesting_is_refused_without_overflowing() {
    // serde_json's parser caps nesting at 128; a value built in code can go deeper.
    // (Built by hand: `json!` re-serialises its argument recursively.)
    let deep = |levels: usize| {
        let mut nested = json!("leaf");
        for _ in 0..levels {
            let mut map = Map::new();
            map.insert("x".into(), nested);
            nested = Value::Object(map);
        }
        nested
    };
    let mut vm = fixtures()[5].clone();
    vm["spec"]["template"]["metadata"]["labels"] = json!({"a": null});
    if let Some(spec) = vm.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert("surprise".into(), deep(300));
    }
    let violations = schemas()
        .validate(&vm, Strictness::Strict)
        .expect_err("unknown field");
    assert!(
        violations.0.iter().any(|v| v.field == "spec.surprise"),
        "{violations}"
    );
    if let Some(spec) = vm.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert("surprise".into(), deep(800));
    }
    let violations = schemas()
        .validate(&vm, Strictness::Strict)
        .expect_err("too deep");
    assert!(
        violations
            .0
            .iter()
            .any(|v| v.message.contains("nesting exceeds 512 levels")),
        "{violations}"
    );
}
