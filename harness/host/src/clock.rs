//! The only place that reads time. Harness-measured durations are differences of two monotonic
//! readings ([`MonoStamp`]); the wall clock is read once per run, at the anchor, and wall times are
//! derived from it for output ([`WallStamp`]). Timestamps reported by other systems (API server,
//! router) are a separate type ([`ExternalStamp`]) that cannot be subtracted from a monotonic one.

use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Utc};

/// The run's clock: a pair of (monotonic, wall) readings taken together once.
#[derive(Debug, Clone, Copy)]
pub struct RunClock {
    anchor_mono: Instant,
    anchor_wall: DateTime<Utc>,
}

/// An instant on the harness's monotonic clock, as an offset from the run anchor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MonoStamp(Duration);

/// A wall-clock time derived from a [`MonoStamp`] and the anchor; for output only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct WallStamp(pub DateTime<Utc>);

/// Where an externally reported timestamp came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExternalSource {
    /// A Kubernetes API server field (creationTimestamp, lastTransitionTime, ...).
    ApiServer,
    /// A router's own timestamp (for example a BMP per-peer header).
    Router(String),
}

/// A timestamp reported by another system, with its resolution. Kept for cross-checking only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalStamp {
    pub source: ExternalSource,
    pub at: DateTime<Utc>,
    pub resolution: Duration,
}

impl RunClock {
    /// Reads both clocks once. Call this once per run.
    pub fn start() -> Self {
        let anchor_mono = Instant::now();
        let anchor_wall = DateTime::<Utc>::from(SystemTime::now());
        RunClock {
            anchor_mono,
            anchor_wall,
        }
    }

    /// Now, on the monotonic clock.
    pub fn now(&self) -> MonoStamp {
        MonoStamp(self.anchor_mono.elapsed())
    }

    /// The wall time of the anchor (the run's start).
    pub fn started_at(&self) -> WallStamp {
        WallStamp(self.anchor_wall)
    }

    /// The wall time corresponding to a monotonic instant.
    pub fn wall(&self, at: MonoStamp) -> WallStamp {
        let offset = chrono::Duration::from_std(at.0).unwrap_or(chrono::Duration::MAX);
        WallStamp(self.anchor_wall + offset)
    }
}

impl MonoStamp {
    /// A stamp at a given offset from the anchor (for tests and for replaying recorded offsets).
    pub fn from_offset(offset: Duration) -> Self {
        MonoStamp(offset)
    }

    /// Offset from the run anchor.
    pub fn since_anchor(self) -> Duration {
        self.0
    }

    /// The duration from `earlier` to `self`, or `None` when `earlier` is later (never a negative value).
    pub fn since(self, earlier: MonoStamp) -> Option<Duration> {
        self.0.checked_sub(earlier.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_differences_never_go_negative() {
        let clock = RunClock::start();
        let a = clock.now();
        let b = clock.now();
        assert!(b.since(a).is_some());
        assert_eq!(a.since(b).filter(|d| !d.is_zero()), None);
    }

    #[test]
    fn wall_time_is_derived_from_the_anchor() {
        let clock = RunClock::start();
        let stamp = MonoStamp(Duration::from_millis(1500));
        let wall = clock.wall(stamp).0 - clock.started_at().0;
        assert_eq!(wall, chrono::Duration::milliseconds(1500));
    }
}
