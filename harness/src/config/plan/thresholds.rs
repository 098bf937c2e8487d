//! Thresholds: checks the profile's thresholds against the shared quantile table and turns them
//! into checked [`Threshold`]s.

use vmbgp_model::quantiles::{self, QUANTILE_METRICS};
use vmbgp_model::{Bound, Statistic, Threshold};

use super::checker::Checker;
use crate::config::profile::{Profile, ThresholdProfile};

pub(super) fn plan_thresholds(c: &mut Checker<'_>, profile: &Profile) -> Vec<Threshold> {
    let mut out = Vec::new();
    for (i, t) in profile.thresholds.iter().flatten().enumerate() {
        let field = |key: &str| format!("profile {}: thresholds[{i}].{key}", profile.name);
        if let Some(threshold) = plan_threshold(c, t, &field) {
            out.push(threshold);
        }
    }
    out
}

fn plan_threshold(
    c: &mut Checker<'_>,
    t: &ThresholdProfile,
    field: &dyn Fn(&str) -> String,
) -> Option<Threshold> {
    let Some(metric) = quantiles::by_measurement(&t.metric) else {
        let names: Vec<&str> = QUANTILE_METRICS.iter().map(|m| m.measurement).collect();
        c.problem(
            &field("metric"),
            &t.metric,
            format!("unknown metric; use one of {}", names.join(", ")),
        );
        return None;
    };
    if !metric.threshold_quantiles().any(|q| q == t.quantile) {
        let names: Vec<&str> = metric.threshold_quantiles().collect();
        c.problem(
            &field("quantile"),
            &t.quantile,
            format!(
                "unknown quantile for {}; use one of {}",
                t.metric,
                names.join(", ")
            ),
        );
        return None;
    }
    let stat = match t.stat.as_deref().map_or(Ok(Statistic::P99), str::parse) {
        Ok(stat) => stat,
        Err(unknown) => {
            c.problem(
                &field("stat"),
                &unknown.value,
                format!("use {}", Statistic::choices()),
            );
            return None;
        }
    };
    let (text, is_max, key) = match (&t.max, &t.min) {
        (Some(max), None) => (max, true, "max"),
        (None, Some(min)) => (min, false, "min"),
        _ => {
            c.problem(&field("max"), "", "give exactly one of max or min");
            return None;
        }
    };
    let text = text.trim();
    let bound = if let Some(percent) = text.strip_suffix('%') {
        match percent.trim().parse::<f64>() {
            Ok(p) if (0.0..=100.0).contains(&p) => {
                if is_max {
                    Bound::MaxPercent(p)
                } else {
                    Bound::MinPercent(p)
                }
            }
            _ => {
                c.problem(&field(key), text, "not a percentage between 0% and 100%");
                return None;
            }
        }
    } else if let Ok(number) = text.parse::<f64>() {
        if !number.is_finite() {
            c.problem(&field(key), text, "must be a finite number");
            return None;
        }
        if is_max {
            Bound::MaxNumber(number)
        } else {
            Bound::MinNumber(number)
        }
    } else {
        match humantime::parse_duration(text) {
            Ok(d) if is_max => Bound::MaxDuration(d),
            Ok(d) => Bound::MinDuration(d),
            Err(_) => {
                c.problem(
                    &field(key),
                    text,
                    "not a bound: use a duration (5s, 250ms), a percentage (99%) or a number",
                );
                return None;
            }
        }
    };
    Some(Threshold {
        metric: t.metric.clone(),
        quantile: t.quantile.clone(),
        stat,
        bound,
    })
}
