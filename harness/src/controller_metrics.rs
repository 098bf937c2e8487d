//! The host-route controller's own figures, from its Prometheus `/metrics` (one GET, parsed with
//! prometheus-parse): reconcile p99 from the `reconcile_duration_seconds` histogram, the counters,
//! and `routes_advertised` / `node_capped` per node. Read once, when the run's measuring ends.

use std::collections::BTreeMap;
use std::time::Duration;

use prometheus_parse::{Scrape, Value};

/// Metric names as `controller/src/metrics.rs` registers them (prefix `vmbgp_controller`).
const RECONCILE_DURATION: &str = "vmbgp_controller_reconcile_duration_seconds";
const RECONCILE_ERRORS: &str = "vmbgp_controller_reconcile_errors";
const MIGRATIONS_FOLLOWED: &str = "vmbgp_controller_migrations_followed";
const ROUTES_ADVERTISED: &str = "vmbgp_controller_routes_advertised";
const NODE_CAPPED: &str = "vmbgp_controller_node_capped";
const NOT_ADVERTISED_VMS: &str = "vmbgp_controller_not_advertised_vms";

/// How long the scrape may take.
pub const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

/// What one scrape said.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ControllerFigures {
    /// `reconcile_duration_seconds` buckets: (upper bound in seconds, cumulative count), ascending.
    pub reconcile_buckets: Vec<(f64, u64)>,
    pub reconciles: Option<u64>,
    pub reconcile_errors: Option<u64>,
    pub migrations_followed: Option<u64>,
    pub not_advertised_vms: Option<u64>,
    pub routes_advertised: BTreeMap<String, u64>,
    pub capped: BTreeMap<String, bool>,
}

fn scalar(value: &Value) -> Option<f64> {
    match value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(*v),
        Value::Histogram(_) | Value::Summary(_) => None,
    }
}

/// A non-negative finite sample as a count.
fn count(value: f64) -> Option<u64> {
    (value.is_finite() && value >= 0.0).then(|| value.round() as u64)
}

impl ControllerFigures {
    /// Reads the text exposition (Prometheus or OpenMetrics). Unknown series are ignored; a
    /// figure whose series is absent stays `None`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
            .map_err(|e| format!("not Prometheus text: {e}"))?;
        let mut figures = ControllerFigures::default();
        for sample in &scrape.samples {
            // OpenMetrics counters carry `_total`; the histogram's count is `_count`.
            let name = sample.metric.as_str();
            let base = name.strip_suffix("_total").unwrap_or(name);
            match (&sample.value, base) {
                (Value::Histogram(buckets), RECONCILE_DURATION) => {
                    figures.reconcile_buckets = buckets
                        .iter()
                        .filter_map(|b| Some((b.less_than, count(b.count)?)))
                        .collect();
                    figures
                        .reconcile_buckets
                        .sort_by(|a, b| a.0.total_cmp(&b.0));
                }
                (value, _) => {
                    let Some(v) = scalar(value).and_then(count) else {
                        continue;
                    };
                    let node = sample.labels.get("node").map(str::to_string);
                    match (base, node) {
                        (RECONCILE_ERRORS, _) => figures.reconcile_errors = Some(v),
                        (MIGRATIONS_FOLLOWED, _) => figures.migrations_followed = Some(v),
                        (NOT_ADVERTISED_VMS, _) => figures.not_advertised_vms = Some(v),
                        (ROUTES_ADVERTISED, Some(node)) => {
                            figures.routes_advertised.insert(node, v);
                        }
                        (NODE_CAPPED, Some(node)) => {
                            figures.capped.insert(node, v > 0);
                        }
                        _ if name == format!("{RECONCILE_DURATION}_count") => {
                            figures.reconciles = Some(v);
                        }
                        _ => {}
                    }
                }
            }
        }
        if figures.reconciles.is_none() {
            figures.reconciles = figures
                .reconcile_buckets
                .iter()
                .find(|(le, _)| le.is_infinite())
                .map(|(_, n)| *n);
        }
        Ok(figures)
    }

    /// The reconcile duration at quantile `q` (0–1), interpolated linearly inside its bucket as
    /// PromQL's `histogram_quantile` does, with that bucket's width as the resolution. `None`
    /// without reconciles, or when the quantile falls in the `+Inf` bucket.
    pub fn reconcile_quantile(&self, q: f64) -> Option<(Duration, Duration)> {
        let total = self.reconcile_buckets.last()?.1;
        if total == 0 {
            return None;
        }
        let rank = q * total as f64;
        let mut lower = (0.0, 0u64);
        for &(le, cumulative) in &self.reconcile_buckets {
            if cumulative as f64 >= rank {
                if le.is_infinite() {
                    return None;
                }
                let in_bucket = (cumulative - lower.1) as f64;
                let fraction = if in_bucket > 0.0 {
                    (rank - lower.1 as f64) / in_bucket
                } else {
                    1.0
                };
                let value = lower.0 + (le - lower.0) * fraction.clamp(0.0, 1.0);
                return Some((
                    Duration::from_secs_f64(value),
                    Duration::from_secs_f64(le - lower.0),
                ));
            }
            lower = (le, cumulative);
        }
        None
    }
}

/// GETs `url` (the controller's `/metrics`) and parses it.
pub async fn scrape(url: &str) -> Result<ControllerFigures, String> {
    let client = reqwest::Client::builder()
        .timeout(SCRAPE_TIMEOUT)
        .build()
        .map_err(|e| format!("building the HTTP client: {e}"))?;
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("GET {url}: HTTP {status}"));
    }
    let text = response
        .text()
        .await
        .map_err(|e| format!("GET {url}: reading the body: {e}"))?;
    ControllerFigures::parse(&text).map_err(|e| format!("{url}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What prometheus-client 0.26 encodes for the controller (OpenMetrics text), abridged.
    const EXPOSITION: &str = "\
# HELP vmbgp_controller_routes_advertised Host-route prefixes in the node's FRRConfiguration as last written.
# TYPE vmbgp_controller_routes_advertised gauge
vmbgp_controller_routes_advertised{node=\"node-1\"} 3
vmbgp_controller_routes_advertised{node=\"node-2\"} 1
# HELP vmbgp_controller_node_capped 1 when the node is past --max-routes-per-node.
# TYPE vmbgp_controller_node_capped gauge
vmbgp_controller_node_capped{node=\"node-1\"} 0
vmbgp_controller_node_capped{node=\"node-2\"} 1
# HELP vmbgp_controller_reconcile_duration_seconds Time to compute and write the desired state once.
# TYPE vmbgp_controller_reconcile_duration_seconds histogram
vmbgp_controller_reconcile_duration_seconds_sum 0.35
vmbgp_controller_reconcile_duration_seconds_count 100
vmbgp_controller_reconcile_duration_seconds_bucket{le=\"0.001\"} 0
vmbgp_controller_reconcile_duration_seconds_bucket{le=\"0.002\"} 50
vmbgp_controller_reconcile_duration_seconds_bucket{le=\"0.004\"} 90
vmbgp_controller_reconcile_duration_seconds_bucket{le=\"0.008\"} 100
vmbgp_controller_reconcile_duration_seconds_bucket{le=\"+Inf\"} 100
# HELP vmbgp_controller_reconcile_errors Reconciles that failed to write.
# TYPE vmbgp_controller_reconcile_errors counter
vmbgp_controller_reconcile_errors_total 2
# HELP vmbgp_controller_migrations_followed Completed live migrations.
# TYPE vmbgp_controller_migrations_followed counter
vmbgp_controller_migrations_followed_total 7
# TYPE vmbgp_controller_not_advertised_vms gauge
vmbgp_controller_not_advertised_vms 0
# EOF
";

    #[test]
    fn every_figure_is_read_from_the_exposition() {
        let figures = ControllerFigures::parse(EXPOSITION).expect("parsed");
        assert_eq!(figures.reconciles, Some(100));
        assert_eq!(figures.reconcile_errors, Some(2));
        assert_eq!(figures.migrations_followed, Some(7));
        assert_eq!(figures.not_advertised_vms, Some(0));
        assert_eq!(figures.routes_advertised["node-1"], 3);
        assert_eq!(figures.capped.get("node-2"), Some(&true));
        assert_eq!(figures.capped.get("node-1"), Some(&false));
        assert_eq!(figures.reconcile_buckets.len(), 5);
    }

    #[test]
    fn the_p99_is_interpolated_inside_its_bucket() {
        let figures = ControllerFigures::parse(EXPOSITION).expect("parsed");
        // Rank 99 of 100 lies in (4 ms, 8 ms], which holds ranks 91..100: 9/10 of the way.
        let (p99, resolution) = figures.reconcile_quantile(0.99).expect("p99");
        assert!((p99.as_secs_f64() - 0.0076).abs() < 1e-9, "{p99:?}");
        assert_eq!(resolution, Duration::from_millis(4));
        // Rank 50 is the top of (1 ms, 2 ms].
        let (p50, _) = figures.reconcile_quantile(0.5).expect("p50");
        assert!((p50.as_secs_f64() - 0.002).abs() < 1e-9, "{p50:?}");
    }

    #[test]
    fn no_reconcile_or_a_quantile_past_the_last_bound_gives_no_value() {
        let empty = ControllerFigures::parse("# EOF\n").expect("parsed");
        assert_eq!(empty.reconcile_quantile(0.99), None);
        assert_eq!(empty.reconciles, None);
        let beyond = ControllerFigures {
            reconcile_buckets: vec![(0.001, 1), (f64::INFINITY, 10)],
            ..ControllerFigures::default()
        };
        assert_eq!(beyond.reconcile_quantile(0.99), None);
    }
}
