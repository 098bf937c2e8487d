//! Fuzz target `es_bulk_response`: the body is `vmbgp_fuzz_replay::es_bulk_response` (fuzz/replay/src/lib.rs), which the stable
//! replay test also runs over fuzz/corpus/es_bulk_response/ and fuzz/artifacts/es_bulk_response/.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| vmbgp_fuzz_replay::es_bulk_response(data));
