//! The time and attempts one operation may spend ([`Budget`]), and the account of why it gave
//! up ([`GaveUp`]).

use std::time::Duration;

/// Seconds as people read them: `0.8 s`, `2.0 s`, `180 s`.
pub(super) fn seconds(value: f64) -> String {
    if value < 10.0 {
        format!("{value:.1} s")
    } else {
        format!("{value:.0} s")
    }
}

/// Why an operation stopped retrying: its deadline passed (or would have before the next
/// attempt), or one request used up its attempts.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GaveUp {
    /// What was being attempted, e.g. "checking index `ripsaw-kube-burner-vm-bgp`".
    pub what: String,
    /// Requests sent by the whole operation, retries included.
    pub attempts: u32,
    pub elapsed_seconds: f64,
    /// The operation's deadline (`--es-timeout`).
    pub deadline_seconds: f64,
    /// `true` when the deadline ended the retries, `false` when the attempt limit did.
    pub deadline_passed: bool,
    pub last_problem: String,
}

impl std::fmt::Display for GaveUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plural = if self.attempts == 1 { "" } else { "s" };
        if self.deadline_passed {
            // Retrying stops early when the next backoff would end past the deadline.
            let early = if self.elapsed_seconds + 0.05 < self.deadline_seconds {
                ", no time left for another attempt"
            } else {
                ""
            };
            write!(
                f,
                "{}: gave up after {} and {} attempt{plural} (--es-timeout {}{early}); last problem: {}",
                self.what,
                seconds(self.elapsed_seconds),
                self.attempts,
                seconds(self.deadline_seconds),
                self.last_problem
            )
        } else {
            write!(
                f,
                "{}: gave up after {} attempt{plural} in {}; last problem: {}",
                self.what,
                self.attempts,
                seconds(self.elapsed_seconds),
                self.last_problem
            )
        }
    }
}

/// The time and attempts one operation may still spend: created when it starts (an upload, a
/// health check, a `compare`'s searches) and shared by every request and retry in it.
#[derive(Debug, Clone)]
pub struct Budget {
    started: tokio::time::Instant,
    pub(super) limit: Duration,
    pub(super) attempts: u32,
    pub(super) last_problem: Option<String>,
}

impl Budget {
    pub fn new(limit: Duration) -> Self {
        Budget {
            started: tokio::time::Instant::now(),
            limit,
            attempts: 0,
            last_problem: None,
        }
    }

    /// Requests sent so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn remaining(&self) -> Duration {
        self.limit.saturating_sub(self.elapsed())
    }

    /// The timeout of the next request, or `None` when the deadline has passed.
    pub(super) fn request_timeout(&self, cap: Duration) -> Option<Duration> {
        let remaining = self.remaining();
        (!remaining.is_zero()).then(|| remaining.min(cap))
    }

    pub(super) fn gave_up(&self, what: &str, deadline_passed: bool) -> GaveUp {
        GaveUp {
            what: what.to_owned(),
            attempts: self.attempts,
            elapsed_seconds: crate::measured::round3(self.elapsed().as_secs_f64()),
            deadline_seconds: crate::measured::round3(self.limit.as_secs_f64()),
            deadline_passed,
            last_problem: self
                .last_problem
                .clone()
                .unwrap_or_else(|| "no request could be sent in time".to_owned()),
        }
    }
}
