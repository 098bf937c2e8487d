//! Replays every fuzz target's committed seed corpus (`fuzz/corpus/<target>/`) and every kept
//! crash artifact (`fuzz/artifacts/<target>/`) through the same body the cargo-fuzz target runs,
//! on stable Rust, as part of `cargo test`. A missing or empty corpus fails (so a target cannot
//! silently test nothing); every failing file is named.
//!
//! Every artifact is a fixed finding kept as a regression input (docs/RELIABILITY.md, "Findings").

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("fuzz/replay has a parent")
        .to_path_buf()
}

/// The regular files of `dir`, sorted; an absent directory has none.
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.is_file())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| !n.starts_with('.') && !n.ends_with(".md"))
        })
        .collect();
    files.sort();
    files
}

/// Runs `target` over one file; the panic message if it failed.
fn run_one(target: &str, file: &Path) -> Option<String> {
    let run = vmbgp_fuzz_replay::target(target)
        .unwrap_or_else(|| panic!("target {target} is not compiled in"))
        .run;
    let data = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    catch_unwind(AssertUnwindSafe(|| run(&data)))
        .err()
        .map(|payload| {
            payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "(non-string panic)".to_string())
        })
}

/// Replays the corpus and the artifacts of `target`; fails naming every failing file.
fn replay(target: &str) {
    let corpus_dir = fuzz_dir().join("corpus").join(target);
    let corpus = files(&corpus_dir);
    assert!(
        !corpus.is_empty(),
        "{} is missing or empty: the {target} target would test nothing",
        corpus_dir.display()
    );
    let artifacts = files(&fuzz_dir().join("artifacts").join(target));
    let failures: Vec<String> = corpus
        .iter()
        .chain(&artifacts)
        .filter_map(|f| run_one(target, f).map(|why| format!("{}: {why}", f.display())))
        .collect();
    assert!(
        failures.is_empty(),
        "{target}: {} of {} inputs failed:\n{}",
        failures.len(),
        corpus.len() + artifacts.len(),
        failures.join("\n")
    );
    eprintln!(
        "{target}: {} corpus files and {} artifacts replayed",
        corpus.len(),
        artifacts.len()
    );
}

#[test]
fn bmp_stream() {
    replay("bmp_stream");
}

#[test]
fn netlink_route() {
    replay("netlink_route");
}

#[test]
fn profile() {
    replay("profile");
}

#[test]
fn es_bulk_response() {
    replay("es_bulk_response");
}

#[test]
fn lab_api_body() {
    replay("lab_api_body");
}

#[test]
fn every_target_has_a_test_and_a_fuzz_target_file() {
    for t in vmbgp_fuzz_replay::TARGETS {
        let file = fuzz_dir()
            .join("fuzz_targets")
            .join(format!("{}.rs", t.name));
        assert!(file.is_file(), "{} is missing", file.display());
    }
}
