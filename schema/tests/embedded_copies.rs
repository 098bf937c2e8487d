//! The embedded schema copies must equal the shared originals (catches drift after a refresh).

use std::path::Path;

const SHARED_CRDS: &str = "/work/shared/crds";

#[test]
fn embedded_copies_equal_the_shared_originals() {
    let shared = Path::new(SHARED_CRDS);
    if !shared.is_dir() {
        // Outside the project's machines the shared tree does not exist; CI always has it.
        eprintln!("{SHARED_CRDS} is absent: drift check skipped");
        return;
    }
    for (name, embedded) in vmbgp_schema::EMBEDDED_FILES {
        let original = std::fs::read_to_string(shared.join(name))
            .unwrap_or_else(|e| panic!("reading {name}: {e}"));
        assert!(
            original == *embedded,
            "crds/{name} differs from {SHARED_CRDS}/{name}: copy it again"
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
