//! The crate's ES-compatible test server (feature `test-server`).

// Not every test binary that includes `common` talks to Elasticsearch.
#[allow(unused_imports)]
pub use vmbgp_reporters::test_server::*;
