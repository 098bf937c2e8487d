//! Fuzz target `netlink_route`: the body is `vmbgp_fuzz_replay::netlink_route` (fuzz/replay/src/lib.rs), which the stable
//! replay test also runs over fuzz/corpus/netlink_route/ and fuzz/artifacts/netlink_route/.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| vmbgp_fuzz_replay::netlink_route(data));
