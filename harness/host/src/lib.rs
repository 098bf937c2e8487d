//! The harness's access to the host it runs on, kept in one small crate so every measuring crate
//! uses the same pieces: [`clock`], the only place that reads time, and [`netns`], which runs code
//! (typically: opens a socket) inside a named network namespace — the harness measures from the
//! external router's namespace (`--netns`), e.g. the lab's `ext`; and [`priority`], which lets the
//! threads that stamp arrivals run ahead of the rest of a busy machine.

pub mod clock;
pub mod netns;
pub mod priority;
