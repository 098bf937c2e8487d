//! One clock: every instant the harness measures or reports comes from `vmbgp_host::clock`
//! (`harness/host/src/clock.rs`). Deadlines, pacing and backoff read tokio's clock
//! (`tokio::time::Instant`, which tests can pause); nothing else reads time. This test fails,
//! naming file and line, when the standard library's or chrono's clocks are read anywhere else in
//! the harness's and reporters' sources.

use std::path::{Path, PathBuf};

/// The only file allowed to read the wall and monotonic clocks.
const CLOCK: &str = "harness/host/src/clock.rs";

/// Exempt: the in-repo Elasticsearch double logs when requests reach it (a test server's own
/// record, never a measurement of the harness).
const EXEMPT: &[&str] = &["reporters/src/test_server.rs"];

/// Source trees whose instants end up in results.
const TREES: &[&str] = &[
    "harness/src",
    "harness/host/src",
    "harness/probe/src",
    "harness/bgp/src",
    "reporters/src",
];

/// Text that reads, or imports for reading, a clock other than the one clock and tokio's.
const FORBIDDEN: &[&str] = &[
    "SystemTime::now",
    "Utc::now",
    "Local::now",
    "std::time::Instant",
    "std::time::SystemTime",
];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("harness/ has a parent")
        .to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `use std::time::{Duration, Instant};` and the like, possibly over several lines.
fn imports_a_std_clock(text: &str) -> Vec<usize> {
    let mut found = Vec::new();
    let mut rest = text;
    let mut offset = 0;
    while let Some(at) = rest.find("std::time::{") {
        let start = offset + at;
        let group_end = text[start..].find('}').map_or(text.len(), |e| start + e);
        let group = &text[start..group_end];
        if group
            .split(|c: char| !c.is_alphanumeric() && c != '_')
            .any(|word| word == "Instant" || word == "SystemTime")
        {
            found.push(text[..start].lines().count().max(1));
        }
        offset = group_end;
        rest = &text[group_end..];
    }
    found
}

fn violations(root: &Path) -> Vec<String> {
    let mut files = Vec::new();
    for tree in TREES {
        rust_files(&root.join(tree), &mut files);
    }
    assert!(files.len() > 20, "found only {} source files", files.len());
    let mut found = Vec::new();
    for file in files {
        let relative = file
            .strip_prefix(root)
            .expect("under the root")
            .to_string_lossy()
            .replace('\\', "/");
        if relative == CLOCK || EXEMPT.contains(&relative.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("readable source");
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            for pattern in FORBIDDEN {
                if code.contains(pattern) {
                    found.push(format!("{relative}:{}: {pattern}", n + 1));
                }
            }
        }
        for line in imports_a_std_clock(&text) {
            found.push(format!(
                "{relative}:{line}: imports std's Instant/SystemTime"
            ));
        }
    }
    found
}

#[test]
fn only_the_clock_module_reads_the_wall_or_monotonic_clock() {
    let found = violations(&repo_root());
    assert!(
        found.is_empty(),
        "read the time through vmbgp_host::clock (instants) or tokio::time::Instant (deadlines):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_check_finds_what_it_forbids() {
    let dir = tempfile::tempdir().expect("tempdir");
    for tree in TREES {
        std::fs::create_dir_all(dir.path().join(tree)).expect("mkdir");
    }
    for n in 0..21 {
        std::fs::write(
            dir.path().join(format!("harness/src/ok{n}.rs")),
            "fn f() {}\n",
        )
        .expect("write");
    }
    std::fs::write(
        dir.path().join("harness/src/bad.rs"),
        "use std::time::{\n    Duration,\n    Instant,\n};\nfn f() { let _ = std::time::SystemTime::now(); }\n// Utc::now in a comment is fine\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join(CLOCK),
        "fn now() { std::time::Instant::now(); }\n",
    )
    .expect("write");
    let found = violations(dir.path());
    assert_eq!(
        found,
        [
            "harness/src/bad.rs:5: SystemTime::now",
            "harness/src/bad.rs:5: std::time::SystemTime",
            "harness/src/bad.rs:1: imports std's Instant/SystemTime",
        ],
        "{found:?}"
    );
}
