//! Quantile summaries: kube-burner's exact percentile method for kube-burner-compatible
//! documents, and HDR histograms for high-rate samples (RTT).
//!
//! kube-burner computes quantiles with `montanaflynn/stats.Percentile` (kube-burner
//! `pkg/measurements/metrics/metrics.go`): sort, `idx = p/100 * n`; a whole `idx` returns
//! `c[idx-1]`, otherwise (if `idx > 1`) the mean of `c[idx-1]` and `c[idx]`; `n = 1` returns the
//! only value. So P99 of 10 values is the mean of the 9th and 10th, not the max. kube-burner then
//! truncates to integer ms; we keep microsecond precision instead, and return `None` where
//! kube-burner would produce NaN (which Go turns into min-int64).

use hdrhistogram::Histogram;

use vmbgp_model::{nanos_to_millis, round3};

/// `montanaflynn/stats.Percentile` over already sorted values; `None` where it returns an error.
pub fn kube_burner_percentile(sorted: &[f64], percent: f64) -> Option<f64> {
    match sorted.len() {
        0 => return None,
        1 => return Some(sorted[0]),
        _ => {}
    }
    if percent <= 0.0 || percent > 100.0 {
        return None;
    }
    // Same f64 arithmetic as the Go code, so boundary cases (e.g. 0.95 * 20) match exactly.
    let index = (percent / 100.0) * sorted.len() as f64;
    if index == index.trunc() {
        let i = index as usize;
        sorted.get(i.checked_sub(1)?).copied()
    } else if index > 1.0 {
        let i = index as usize;
        Some((sorted.get(i - 1)? + sorted.get(i)?) / 2.0)
    } else {
        None
    }
}

/// P99/P95/P50/min/max/avg of one quantile group, in the unit of the input values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub count: u64,
    pub p99: f64,
    pub p95: f64,
    /// Only HDR summaries report P90 (kube-burner documents have no P90 field).
    pub p90: Option<f64>,
    pub p50: f64,
    pub min: f64,
    pub max: f64,
    pub avg: f64,
}

/// kube-burner's summary of latencies given in nanoseconds, returned in milliseconds with
/// microsecond precision. `None` for an empty set: the caller reports it as missing, count 0.
pub fn kube_burner_summary_millis(nanos: &[i64]) -> Option<Summary> {
    let mut sorted: Vec<f64> = nanos.iter().map(|&n| n as f64).collect();
    summarize(&mut sorted).map(|s| Summary {
        count: s.count,
        p99: nanos_to_millis(s.p99),
        p95: nanos_to_millis(s.p95),
        p90: None,
        p50: nanos_to_millis(s.p50),
        min: nanos_to_millis(s.min),
        max: nanos_to_millis(s.max),
        avg: nanos_to_millis(s.avg),
    })
}

/// kube-burner's summary of plain values (percent, bits/s, counts), rounded to 3 decimals.
pub fn kube_burner_summary(values: &[f64]) -> Option<Summary> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    summarize(&mut sorted).map(|s| Summary {
        count: s.count,
        p99: round3(s.p99),
        p95: round3(s.p95),
        p90: None,
        p50: round3(s.p50),
        min: round3(s.min),
        max: round3(s.max),
        avg: round3(s.avg),
    })
}

fn summarize(values: &mut [f64]) -> Option<Summary> {
    values.sort_by(f64::total_cmp);
    let count = values.len();
    let first = *values.first()?;
    let last = *values.last()?;
    let avg = values.iter().sum::<f64>() / count as f64;
    Some(Summary {
        count: count as u64,
        p99: kube_burner_percentile(values, 99.0)?,
        p95: kube_burner_percentile(values, 95.0)?,
        p90: None,
        p50: kube_burner_percentile(values, 50.0)?,
        min: first,
        max: last,
        avg,
    })
}

/// Significant figures of every HDR histogram the reporters create (0.1 % relative error).
pub const HDR_SIGNIFICANT_FIGURES: u8 = 3;

/// A new nanosecond histogram with the project's precision; the harness records RTTs into it on
/// the hot path. Auto-resizing, so no value is ever rejected as out of range.
pub fn new_nanos_histogram() -> Histogram<u64> {
    // 3 significant figures is always a valid precision (hdrhistogram accepts 0..=5).
    #[allow(clippy::expect_used)]
    Histogram::new(HDR_SIGNIFICANT_FIGURES).expect("3 significant figures is a valid precision")
}

/// Summary of a nanosecond HDR histogram in milliseconds. `None` when it holds no samples.
pub fn hdr_summary_millis(histogram: &Histogram<u64>) -> Option<Summary> {
    if histogram.is_empty() {
        return None;
    }
    let at = |q: f64| nanos_to_millis(histogram.value_at_quantile(q) as f64);
    Some(Summary {
        count: histogram.len(),
        p99: at(0.99),
        p95: at(0.95),
        p90: Some(at(0.90)),
        p50: at(0.50),
        min: nanos_to_millis(histogram.min() as f64),
        max: nanos_to_millis(histogram.max() as f64),
        avg: nanos_to_millis(histogram.mean()),
    })
}

/// Log2-spaced buckets of a nanosecond histogram for plotting, as (upper bound ms, count)
/// pairs, contiguous from the first to the last non-empty bucket (so bucket `i` covers
/// `(le[i-1], le[i]]`). Deterministic for a given histogram.
pub fn hdr_buckets_millis(histogram: &Histogram<u64>) -> Vec<(f64, u64)> {
    if histogram.is_empty() {
        return Vec::new();
    }
    // Start at 1 µs and double: 40 doublings reach ~18 minutes, far beyond any RTT.
    let all: Vec<(f64, u64)> = histogram
        .iter_log(1_000, 2.0)
        .map(|step| {
            (
                nanos_to_millis(step.value_iterated_to() as f64),
                step.count_since_last_iteration(),
            )
        })
        .collect();
    let first = all.iter().position(|b| b.1 > 0).unwrap_or(0);
    let last = all.iter().rposition(|b| b.1 > 0).unwrap_or(0);
    all.get(first..=last).map(<[_]>::to_vec).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(values: &[i64]) -> Vec<i64> {
        values.iter().map(|v| v * 1_000_000).collect()
    }

    #[test]
    fn p99_of_ten_values_is_mean_of_ninth_and_tenth() {
        let s = kube_burner_summary_millis(&ms(&[10, 1, 9, 2, 8, 3, 7, 4, 6, 5])).unwrap();
        assert_eq!(s.p99, 9.5);
        assert_eq!(s.p95, 9.5);
        assert_eq!(s.p50, 5.0);
        assert_eq!((s.min, s.max, s.avg, s.count), (1.0, 10.0, 5.5, 10));
    }

    #[test]
    fn known_vectors_match_montanaflynn() {
        // Whole index: 0.5 * 4 = 2 → c[1].
        assert_eq!(
            kube_burner_percentile(&[1.0, 2.0, 3.0, 4.0], 50.0),
            Some(2.0)
        );
        // 0.95 * 20 = 19 exactly in f64 → c[18].
        let twenty: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(kube_burner_percentile(&twenty, 95.0), Some(19.0));
        // 0.99 * 20 = 19.8 → mean(c[18], c[19]).
        assert_eq!(kube_burner_percentile(&twenty, 99.0), Some(19.5));
        // 100 values: 0.99 * 100 = 99 → c[98].
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(kube_burner_percentile(&hundred, 99.0), Some(99.0));
        // n = 1 returns the value; n = 2 at P50 → index 1 → c[0].
        assert_eq!(kube_burner_percentile(&[7.0], 99.0), Some(7.0));
        assert_eq!(kube_burner_percentile(&[3.0, 8.0], 50.0), Some(3.0));
        // n = 2 at P99 → index 1.98 → mean(c[0], c[1]).
        assert_eq!(kube_burner_percentile(&[3.0, 8.0], 99.0), Some(5.5));
        // index below 1 is montanaflynn's BoundsErr (NaN in Go): we return None.
        assert_eq!(kube_burner_percentile(&[1.0, 2.0, 3.0], 10.0), None);
        assert_eq!(kube_burner_percentile(&[], 50.0), None);
        assert_eq!(kube_burner_percentile(&[1.0, 2.0], 0.0), None);
    }

    #[test]
    fn empty_set_has_no_summary() {
        assert!(kube_burner_summary_millis(&[]).is_none());
        assert!(kube_burner_summary(&[f64::NAN]).is_none());
        assert!(hdr_summary_millis(&new_nanos_histogram()).is_none());
    }

    #[test]
    fn microsecond_precision_is_kept() {
        let s = kube_burner_summary_millis(&[1_234_567, 2_345_678]).unwrap();
        assert_eq!(s.min, 1.235);
        assert_eq!(s.max, 2.346);
        assert_eq!(s.p99, 1.79);
    }

    #[test]
    fn hdr_summary_is_within_its_precision() {
        let mut h = new_nanos_histogram();
        for us in 1..=10_000u64 {
            h.record(us * 1_000).unwrap();
        }
        let s = hdr_summary_millis(&h).unwrap();
        assert_eq!(s.count, 10_000);
        assert!((s.p99 - 9.9).abs() / 9.9 < 0.001, "p99 {}", s.p99);
        assert!((s.p50 - 5.0).abs() / 5.0 < 0.001, "p50 {}", s.p50);
        assert!((s.p90.unwrap() - 9.0).abs() / 9.0 < 0.001);
        assert_eq!(s.min, 0.001);
        let buckets = hdr_buckets_millis(&h);
        assert_eq!(buckets.iter().map(|b| b.1).sum::<u64>(), 10_000);
        assert!(buckets.windows(2).all(|w| w[0].0 < w[1].0));
    }

    proptest::proptest! {
        #[test]
        fn summaries_are_ordered_finite_and_within_range(
            values in proptest::collection::vec(-10_000_000_000i64..10_000_000_000, 1..300)
        ) {
            let s = kube_burner_summary_millis(&values).unwrap();
            for v in [s.p50, s.p95, s.p99, s.min, s.max, s.avg] {
                proptest::prop_assert!(v.is_finite());
                proptest::prop_assert!(v >= s.min && v <= s.max);
            }
            proptest::prop_assert!(s.p50 <= s.p95 && s.p95 <= s.p99);
            proptest::prop_assert_eq!(s.count, values.len() as u64);
        }
    }
}
