//! `vmbgp-bench`: the performance and scale harness for KubeVirt VMs on BGP-advertised OVN-Kubernetes
//! Layer2 primary networks. The library holds everything; the binary only wires it together.
//!
//! - [`config`]: profile + flags → validated [`config::Plan`] (pure)
//! - [`workload`]: manifests and the external router's FRR configuration from `workloads/` templates
//! - [`kube`]: cluster access, preflight checks, rate-limited apply, label-selected watches
//! - [`run`]: phase orchestration; [`measure`]: what each measurement records; [`results`]: hand-off to the reporters
//! - [`clock`]: the only place that reads time
//! - [`exit`]: the one exit-code table
//! - [`lab_commands`]: the embedded lab from the command line (`lab up/status/down`, `run --lab`)
//! - [`lab_controller`]: the host-route controller's process next to a lab (`lab up --host-routes`)
//! - [`cli`], [`commands`]: the command line and what each command does

pub mod cli;
pub mod commands;
pub mod config;
pub mod controller_metrics;
pub mod exit;
pub mod kube;
pub mod lab_commands;
pub mod lab_controller;
pub mod measure;
pub mod results;
pub mod run;
pub mod workload;

/// Whether log lines may carry ANSI colour: only on a terminal, and never when `NO_COLOR` is set to a
/// non-empty value (no-color.org), so CI logs and files stay plain text.
pub fn log_colour(on_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    on_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// The one clock (see [`vmbgp_host::clock`]).
pub use vmbgp_host::clock;

/// An error and its causes on one line (`what failed: because: because`), for messages and results.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::log_colour;
    use std::ffi::OsStr;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(log_colour(true, None));
        assert!(log_colour(true, Some(OsStr::new(""))));
        assert!(!log_colour(true, Some(OsStr::new("1"))));
        assert!(!log_colour(false, None));
    }
}
