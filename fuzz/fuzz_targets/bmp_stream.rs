//! Fuzz target `bmp_stream`: the body is `vmbgp_fuzz_replay::bmp_stream` (fuzz/replay/src/lib.rs), which the stable
//! replay test also runs over fuzz/corpus/bmp_stream/ and fuzz/artifacts/bmp_stream/.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| vmbgp_fuzz_replay::bmp_stream(data));
