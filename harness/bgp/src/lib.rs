//! What the harness observes of BGP at the external router: a BMP station, a kernel FIB route watcher and an FRR vty client.
pub mod bmp;
pub mod fib;
pub mod session;
pub mod vty;
