//! vmbgp-bench library.
