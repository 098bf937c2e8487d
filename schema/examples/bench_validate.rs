//! Measures `SchemaSet::embedded()` and `validate()` for the reference objects (release build:
//! `cargo run --release -p vmbgp-schema --example bench_validate`). Figures go to docs/perf-schema.md.

use std::time::{Duration, Instant};

use serde_json::Value;
use vmbgp_schema::{SchemaSet, Strictness};

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("parsing {path}: {e}"))
}

fn per_call(total: Duration, calls: u32) -> f64 {
    total.as_secs_f64() * 1e6 / f64::from(calls)
}

fn main() {
    let start = Instant::now();
    let schemas = SchemaSet::embedded().expect("embedded schemas compile");
    println!(
        "SchemaSet::embedded(): {:.1} ms ({} kinds)",
        start.elapsed().as_secs_f64() * 1e3,
        schemas.kinds().len()
    );

    let iterations: u32 = 20_000;
    let fixture_vm = fixture("virtualmachine.yaml");
    for (name, mode) in [
        ("virtualmachine.yaml", Strictness::Strict),
        ("virtualmachine.yaml", Strictness::Prune),
        ("cudn-reserved.yaml", Strictness::Strict),
        ("routeadvertisements.yaml", Strictness::Strict),
        ("frrconfiguration.yaml", Strictness::Strict),
        ("namespace.yaml", Strictness::Strict),
    ] {
        let object = fixture(name);
        schemas.validate(&object, mode).expect("fixture validates");
        let start = Instant::now();
        for _ in 0..iterations {
            std::hint::black_box(schemas.validate(std::hint::black_box(&object), mode)).ok();
        }
        println!(
            "validate {name:<26} {mode:?}: {:7.2} µs/object",
            per_call(start.elapsed(), iterations)
        );
    }

    // The clone alone, to separate it from prune's own cost below.
    let start = Instant::now();
    for _ in 0..iterations {
        std::hint::black_box(std::hint::black_box(&fixture_vm).clone());
    }
    println!(
        "clone VM (baseline for prune):                    {:7.2} µs/object",
        per_call(start.elapsed(), iterations)
    );

    // prune() of a VM with one undeclared field (clone included: prune mutates).
    let mut with_extra = fixture("virtualmachine.yaml");
    if let Some(spec) = with_extra
        .pointer_mut("/spec")
        .and_then(Value::as_object_mut)
    {
        spec.insert("surprise".into(), Value::Bool(true));
    }
    let start = Instant::now();
    for _ in 0..iterations {
        let mut copy = with_extra.clone();
        std::hint::black_box(schemas.prune(&mut copy)).ok();
    }
    println!(
        "prune VM (1 undeclared field, incl. clone):       {:7.2} µs/object",
        per_call(start.elapsed(), iterations)
    );

    // Prune mode on a VM with an unknown field: Strict pass, clone, prune, second pass.
    let start = Instant::now();
    for _ in 0..iterations {
        std::hint::black_box(
            schemas.validate(std::hint::black_box(&with_extra), Strictness::Prune),
        )
        .ok();
    }
    println!(
        "validate VM with 1 unknown field, Prune:          {:7.2} µs/object",
        per_call(start.elapsed(), iterations)
    );

    // A rejected VM (unknown field + type error): the error path allocates messages.
    let mut bad = fixture("virtualmachine.yaml");
    if let Some(interface) = bad
        .pointer_mut("/spec/template/spec/domain/devices/interfaces/0")
        .and_then(Value::as_object_mut)
    {
        interface.insert("ipamClaimRef".into(), Value::String("x".into()));
    }
    if let Some(spec) = bad
        .pointer_mut("/spec/template/spec")
        .and_then(Value::as_object_mut)
    {
        spec.insert(
            "terminationGracePeriodSeconds".into(),
            Value::String("zero".into()),
        );
    }
    let start = Instant::now();
    for _ in 0..iterations {
        std::hint::black_box(schemas.validate(std::hint::black_box(&bad), Strictness::Strict)).ok();
    }
    println!(
        "validate rejected VM (2 violations)      Strict: {:7.2} µs/object",
        per_call(start.elapsed(), iterations)
    );
}
