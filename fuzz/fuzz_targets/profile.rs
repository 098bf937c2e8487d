//! Fuzz target `profile`: the body is `vmbgp_fuzz_replay::profile` (fuzz/replay/src/lib.rs), which the stable
//! replay test also runs over fuzz/corpus/profile/ and fuzz/artifacts/profile/.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| vmbgp_fuzz_replay::profile(data));
