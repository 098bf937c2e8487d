//! Turns a run profile plus the command line's plan arguments (which override it) into a validated
//! [`Plan`], in one pure function ([`plan`]). Nothing here touches the network or the cluster: bad input is refused before anything
//! is contacted or created, with every problem named by field and value.

mod net;
mod plan;
mod profile;

pub use net::{IpRange, cidr_cover};
pub use plan::{
    BgpPlan, BmpTarget, Bound, EsTarget, Indexing, Layout, Neighbors, NetworkSpec, Plan, ProbePlan,
    Shape, Statistic, Threshold, VmSpec, VmTemplate, check_label_value, plan,
};
pub use profile::{BUILTIN_PROFILES, Profile, load_profile};

use std::fmt;

/// One thing wrong with the input: which field (a `--flag` or a profile key), its value, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub field: String,
    pub value: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.value.is_empty() {
            write!(f, "{}: {}", self.field, self.message)
        } else {
            write!(f, "{} = {:?}: {}", self.field, self.value, self.message)
        }
    }
}

/// Why a profile and the command line could not become a plan. Holds every problem found, not just the first.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "unknown profile {name:?}; built-in profiles are: {available}; or give a path to a YAML file"
    )]
    UnknownProfile { name: String, available: String },
    #[error("cannot read profile file {path}")]
    ReadProfile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("profile {origin}: {message}")]
    ParseProfile { origin: String, message: String },
    #[error("invalid input:\n{}", .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

impl ConfigError {
    /// The problems, for tests and structured output.
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Invalid(problems) => problems,
            _ => &[],
        }
    }
}
