//! The embedded schema copies must equal the shared originals (catches drift after a refresh).

use std::path::Path;

/// The shared tree beside the checkout (where CI puts it), else the workplace's copy.
const SHARED_CRDS_CANDIDATES: [&str; 2] = [
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/crds"),
    "/work/shared/crds",
];

#[test]
fn embedded_copies_equal_the_shared_originals() {
    let Some(shared) = SHARED_CRDS_CANDIDATES
        .iter()
        .map(Path::new)
        .find(|p| p.is_dir())
    else {
        // Outside the project's machines the shared tree does not exist; CI always has it.
        eprintln!("no shared/crds beside the checkout or at /work/shared: drift check skipped");
        return;
    };
    let shared_crds = shared.display().to_string();
    for (name, embedded) in vmbgp_schema::EMBEDDED_FILES {
        let original = std::fs::read_to_string(shared.join(name))
            .unwrap_or_else(|e| panic!("reading {name}: {e}"));
        assert!(
            original == *embedded,
            "crds/{name} differs from {shared_crds}/{name}: copy it again"
        );
    }
    let mut shared_schema_files: Vec<String> = std::fs::read_dir(shared)
        .expect("list shared crds")
        .filter_map(|entry| {
            entry
                .ok()
                .map(|e| e.file_name().to_string_lossy().into_owned())
        })
        .filter(|name| name.ends_with(".yaml") || name.ends_with(".json"))
        .collect();
    shared_schema_files.sort();
    let mut embedded_names: Vec<String> = vmbgp_schema::EMBEDDED_FILES
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    embedded_names.sort();
    assert_eq!(
        shared_schema_files, embedded_names,
        "every shared schema file is embedded"
    );
}
