//! The one exit-code table. Every way `vmbgp-bench` ends maps to exactly one of these codes, here and
//! nowhere else, so CI scripts can tell a broken harness from a failed threshold from a missing cluster.

use std::fmt;

/// Process exit codes of `vmbgp-bench`, documented in the README and in `--help`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ExitCode {
    /// Everything ran and every threshold passed.
    Ok = 0,
    /// The harness itself failed (a bug, an unexpected API answer, an I/O error).
    Internal = 1,
    /// The input was invalid: flags, profile, ranges. Nothing was contacted or created.
    InvalidInput = 2,
    /// The run completed but one or more thresholds were violated.
    ThresholdsViolated = 3,
    /// The environment is unavailable: no reachable cluster, a missing CRD, not root, FRR missing,
    /// no host-route controller binary for `lab up --host-routes`.
    EnvironmentUnavailable = 4,
    /// The global `--timeout` (or a bounded wait) expired.
    Timeout = 5,
    /// Results were measured and kept locally but could not all be indexed.
    NotIndexed = 6,
    /// `compare` found a regression.
    Regression = 7,
    /// SIGINT or SIGTERM ended the run (128 + SIGINT, the shell convention).
    Interrupted = 130,
}

impl ExitCode {
    /// Every code, in table order (used by `--help` and the README test).
    pub const ALL: [ExitCode; 9] = [
        ExitCode::Ok,
        ExitCode::Internal,
        ExitCode::InvalidInput,
        ExitCode::ThresholdsViolated,
        ExitCode::EnvironmentUnavailable,
        ExitCode::Timeout,
        ExitCode::NotIndexed,
        ExitCode::Regression,
        ExitCode::Interrupted,
    ];

    /// The numeric process status.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// One line saying what the code means.
    pub fn meaning(self) -> &'static str {
        match self {
            ExitCode::Ok => "success: the run completed and every threshold passed",
            ExitCode::Internal => "harness error (bug, unexpected API answer, I/O error)",
            ExitCode::InvalidInput => "invalid input (flags, profile, ranges); nothing was created",
            ExitCode::ThresholdsViolated => "one or more thresholds were violated",
            ExitCode::EnvironmentUnavailable => {
                "environment unavailable (cluster/API unreachable, CRD missing, not root, FRR missing, host-route controller binary missing)"
            }
            ExitCode::Timeout => "the global --timeout or a bounded wait expired",
            ExitCode::NotIndexed => "results kept locally but not all documents could be indexed",
            ExitCode::Regression => "compare found a regression",
            ExitCode::Interrupted => "interrupted by SIGINT/SIGTERM; partial results kept",
        }
    }

    /// The table as text, for `--help`.
    pub fn table() -> String {
        let mut out = String::from("Exit codes:\n");
        for code in Self::ALL {
            out.push_str(&format!("  {:>3}  {}\n", code.code(), code.meaning()));
        }
        out
    }
}

impl fmt::Display for ExitCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code())
    }
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(code: ExitCode) -> Self {
        std::process::ExitCode::from(code.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_table_lists_each_once() {
        let mut seen = std::collections::BTreeSet::new();
        for code in ExitCode::ALL {
            assert!(seen.insert(code.code()), "duplicate exit code {code}");
        }
        let table = ExitCode::table();
        for code in ExitCode::ALL {
            assert_eq!(table.matches(code.meaning()).count(), 1);
        }
        assert_eq!(ExitCode::InvalidInput.code(), 2);
        assert_eq!(ExitCode::Interrupted.code(), 130);
    }
}
