//! Fuzz target `lab_api_body`: the body is `vmbgp_fuzz_replay::lab_api_body` (fuzz/replay/src/lib.rs), which the stable
//! replay test also runs over fuzz/corpus/lab_api_body/ and fuzz/artifacts/lab_api_body/.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| vmbgp_fuzz_replay::lab_api_body(data));
