//! Boot-delay distributions for simulated VMs, drawn from a seeded RNG so runs are reproducible.

use std::time::Duration;

use rand::{Rng, SeedableRng};

/// How long a VMI takes from Scheduled to Running.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BootDelay {
    Fixed {
        ms: u64,
    },
    Uniform {
        min_ms: u64,
        max_ms: u64,
    },
    /// Normal(mean, stddev) truncated to `[min_ms, mean + 4·stddev]`.
    Normal {
        mean_ms: u64,
        stddev_ms: u64,
        min_ms: u64,
    },
}

impl Default for BootDelay {
    fn default() -> Self {
        BootDelay::Fixed { ms: 50 }
    }
}

/// A sampler for one distribution.
#[derive(Debug)]
pub struct BootDelaySampler {
    dist: BootDelay,
    rng: rand::rngs::StdRng,
}

impl BootDelaySampler {
    pub fn new(dist: BootDelay, seed: u64) -> Self {
        BootDelaySampler {
            dist,
            rng: rand::rngs::StdRng::seed_from_u64(seed),
        }
    }

    pub fn sample(&mut self) -> Duration {
        let ms = match &self.dist {
            BootDelay::Fixed { ms } => *ms as f64,
            BootDelay::Uniform { min_ms, max_ms } => {
                let (lo, hi) = (*min_ms.min(max_ms) as f64, *min_ms.max(max_ms) as f64);
                if hi > lo {
                    self.rng.random_range(lo..hi)
                } else {
                    lo
                }
            }
            BootDelay::Normal {
                mean_ms,
                stddev_ms,
                min_ms,
            } => {
                // Box–Muller; u1 in (0, 1] so ln(u1) is finite.
                let u1: f64 = 1.0 - self.rng.random::<f64>();
                let u2: f64 = self.rng.random::<f64>();
                let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
                let mean = *mean_ms as f64;
                let sd = *stddev_ms as f64;
                (mean + z * sd).clamp(*min_ms as f64, mean + 4.0 * sd)
            }
        };
        Duration::from_secs_f64(ms.max(0.0) / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distributions_stay_in_range_and_repeat_with_the_seed() {
        let mut u = BootDelaySampler::new(
            BootDelay::Uniform {
                min_ms: 10,
                max_ms: 20,
            },
            3,
        );
        let a: Vec<_> = (0..200).map(|_| u.sample()).collect();
        assert!(
            a.iter()
                .all(|d| *d >= Duration::from_millis(10) && *d < Duration::from_millis(20))
        );
        let mut u2 = BootDelaySampler::new(
            BootDelay::Uniform {
                min_ms: 10,
                max_ms: 20,
            },
            3,
        );
        assert_eq!(a, (0..200).map(|_| u2.sample()).collect::<Vec<_>>());
        let mut n = BootDelaySampler::new(
            BootDelay::Normal {
                mean_ms: 100,
                stddev_ms: 10,
                min_ms: 80,
            },
            3,
        );
        let xs: Vec<f64> = (0..2000)
            .map(|_| n.sample().as_secs_f64() * 1000.0)
            .collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        assert!((95.0..105.0).contains(&mean), "{mean}");
        assert!(xs.iter().all(|x| *x >= 80.0 && *x <= 140.0));
        let mut f = BootDelaySampler::new(BootDelay::Fixed { ms: 7 }, 0);
        assert_eq!(f.sample(), Duration::from_millis(7));
    }
}
