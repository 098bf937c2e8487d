//! Fault injection for the API server: added latency, 500s and 429s (with `Retry-After`), periodic watch cuts
//! and forced `410 Gone`; all changeable while the lab runs.

use std::sync::{Mutex, RwLock};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use tokio::sync::watch;

/// The knobs. `Default` is "no faults".
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FaultConfig {
    /// Added to every resource request before it is handled.
    #[serde(default, with = "humantime_opt")]
    pub latency: Option<Duration>,
    /// Probability (0..=1) that a resource request fails with 500 InternalError.
    #[serde(default)]
    pub error_rate_500: f64,
    /// Probability (0..=1) that a resource request fails with 429 TooManyRequests.
    #[serde(default)]
    pub error_rate_429: f64,
    /// `Retry-After` seconds sent with a 429.
    #[serde(default = "default_retry_after")]
    pub retry_after_seconds: u64,
    /// Every watch stream is ended this long after it started.
    #[serde(default, with = "humantime_opt")]
    pub watch_cut_every: Option<Duration>,
    /// Every watch that resumes from an explicit resourceVersion is answered with an in-stream 410 Gone.
    #[serde(default)]
    pub gone_on_resume: bool,
}

fn default_retry_after() -> u64 {
    1
}

mod humantime_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&format!("{}ms", d.as_millis())),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        text.map(|t| parse(&t).map_err(serde::de::Error::custom))
            .transpose()
    }

    fn parse(t: &str) -> Result<Duration, String> {
        let t = t.trim();
        let (num, unit) = t.split_at(
            t.find(|c: char| !c.is_ascii_digit() && c != '.')
                .unwrap_or(t.len()),
        );
        let n: f64 = num.parse().map_err(|_| format!("invalid duration {t:?}"))?;
        let secs = match unit {
            "ms" => n / 1000.0,
            "s" | "" => n,
            "m" => n * 60.0,
            _ => return Err(format!("invalid duration unit in {t:?} (use ms, s or m)")),
        };
        Ok(Duration::from_secs_f64(secs))
    }
}

/// What the server should do with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InjectedError {
    Internal,
    TooManyRequests { retry_after_seconds: u64 },
}

/// Runtime fault state shared by the server.
#[derive(Debug)]
pub struct Faults {
    config: RwLock<FaultConfig>,
    rng: Mutex<rand::rngs::StdRng>,
    /// Bumped to make every open watch stream end now.
    cut_all: watch::Sender<u64>,
}

impl Faults {
    pub fn new(config: FaultConfig, seed: u64) -> Self {
        Faults {
            config: RwLock::new(config),
            rng: Mutex::new(rand::rngs::StdRng::seed_from_u64(seed ^ 0x5eed_fa17)),
            cut_all: watch::channel(0).0,
        }
    }

    /// The current knobs.
    pub fn config(&self) -> FaultConfig {
        self.config.read().map(|c| c.clone()).unwrap_or_default()
    }

    /// Replaces the knobs; takes effect for the next request (and the next watch started).
    pub fn set(&self, config: FaultConfig) {
        if let Ok(mut c) = self.config.write() {
            *c = config;
        }
    }

    /// Ends every open watch stream now (clients reconnect with their last resourceVersion).
    pub fn cut_watches(&self) {
        self.cut_all.send_modify(|g| *g += 1);
    }

    /// A receiver that changes when [`Faults::cut_watches`] is called.
    pub fn cut_signal(&self) -> watch::Receiver<u64> {
        self.cut_all.subscribe()
    }

    /// Draws the fault (if any) for one resource request.
    pub fn draw(&self) -> (Option<Duration>, Option<InjectedError>) {
        let c = self.config();
        let error = if c.error_rate_500 > 0.0 || c.error_rate_429 > 0.0 {
            let x: f64 = self
                .rng
                .lock()
                .map(|mut r| r.random::<f64>())
                .unwrap_or(1.0);
            if x < c.error_rate_500 {
                Some(InjectedError::Internal)
            } else if x < c.error_rate_500 + c.error_rate_429 {
                Some(InjectedError::TooManyRequests {
                    retry_after_seconds: c.retry_after_seconds,
                })
            } else {
                None
            }
        } else {
            None
        };
        (c.latency, error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_rates_are_honoured_and_seeded() {
        let f = Faults::new(
            FaultConfig {
                error_rate_500: 0.25,
                error_rate_429: 0.25,
                ..Default::default()
            },
            7,
        );
        let draws: Vec<_> = (0..4000).map(|_| f.draw().1).collect();
        let internal = draws
            .iter()
            .filter(|d| **d == Some(InjectedError::Internal))
            .count();
        let throttled = draws
            .iter()
            .filter(|d| matches!(d, Some(InjectedError::TooManyRequests { .. })))
            .count();
        assert!((800..1200).contains(&internal), "{internal}");
        assert!((800..1200).contains(&throttled), "{throttled}");
        let g = Faults::new(
            FaultConfig {
                error_rate_500: 0.25,
                error_rate_429: 0.25,
                ..Default::default()
            },
            7,
        );
        let again: Vec<_> = (0..4000).map(|_| g.draw().1).collect();
        assert_eq!(draws, again);
        f.set(FaultConfig::default());
        assert_eq!(f.draw(), (None, None));
    }

    #[test]
    fn config_parses_durations() {
        let c: FaultConfig =
            serde_json::from_str(r#"{"latency": "5ms", "watch_cut_every": "2s"}"#).unwrap();
        assert_eq!(c.latency, Some(Duration::from_millis(5)));
        assert_eq!(c.watch_cut_every, Some(Duration::from_secs(2)));
        assert_eq!(c.retry_after_seconds, 1);
    }
}
