//! The report's SVG plots (plotters, SVG backend, no system fonts): CDFs of route convergence
//! and first reachability, per-iteration aggregates (median, P99, min–max band) of readiness
//! and route convergence, the RTT histogram and a BGP session timeline. A plot without data is
//! replaced by a sentence saying so.

use plotters::prelude::*;
use serde::Serialize;
use serde_json::Value;

use crate::document::{self, Document};
use crate::quantiles::kube_burner_percentile;
use crate::report::{RunView, parse_time};

const WIDTH: u32 = 900;
const HEIGHT: u32 = 380;
const PALETTE: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
];

/// One plot section of the report.
#[derive(Debug, Serialize)]
pub struct Plot {
    pub id: &'static str,
    pub title: &'static str,
    pub svg: Option<String>,
    pub note: String,
    /// How to read the plot, shown above it.
    pub caption: &'static str,
}

impl Plot {
    fn with_caption(mut self, caption: &'static str) -> Self {
        self.caption = caption;
        self
    }
}

const PER_ITERATION_CAPTION: &str = "One point per iteration: the median (thick line) and P99 \
    (thin line) of the iteration's objects, the shaded band from their min to their max; a \
    triangle at the top marks an iteration with missing values.";

/// A session interval on the timeline: from, to (seconds since start), established.
type Interval = (f64, f64, bool);

type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn plot(id: &'static str, title: &'static str, result: Result<Option<String>, String>) -> Plot {
    match result {
        Ok(Some(svg)) => Plot {
            id,
            title,
            svg: Some(svg),
            note: String::new(),
            caption: "",
        },
        Ok(None) => Plot {
            id,
            title,
            svg: None,
            note: "no observed values in this run".to_owned(),
            caption: "",
        },
        Err(error) => Plot {
            id,
            title,
            svg: None,
            note: format!("plot could not be drawn: {error}"),
            caption: "",
        },
    }
}

pub fn all_plots(view: &RunView<'_>) -> Vec<Plot> {
    vec![
        plot(
            "route-convergence-cdf",
            "Route convergence (CDF)",
            route_cdf(view),
        ),
        plot(
            "first-reachability-cdf",
            "First reachability (CDF)",
            reachability_cdf(view),
        ),
        plot(
            "readiness-per-iteration",
            "VM readiness per iteration",
            readiness_per_iteration(view),
        )
        .with_caption(PER_ITERATION_CAPTION),
        plot(
            "routes-per-iteration",
            "Route convergence per iteration",
            routes_per_iteration(view),
        )
        .with_caption(PER_ITERATION_CAPTION),
        plot("rtt-histogram", "RTT histogram", rtt_histogram(view)),
        plot(
            "bgp-session-timeline",
            "BGP session timeline",
            session_timeline(view),
        ),
    ]
}

fn values(documents: &[&Document], field: &str, filter: impl Fn(&Document) -> bool) -> Vec<f64> {
    let mut values: Vec<f64> = documents
        .iter()
        .filter(|d| filter(d))
        .filter_map(|d| d.number(field))
        .collect();
    values.sort_by(f64::total_cmp);
    values
}

fn render(draw: impl FnOnce(&mut String) -> DrawResult) -> Result<Option<String>, String> {
    let mut svg = String::new();
    draw(&mut svg).map_err(|e| e.to_string())?;
    Ok(Some(svg))
}

fn cdf(series: Vec<(String, Vec<f64>)>, x_desc: &str) -> Result<Option<String>, String> {
    let series: Vec<(String, Vec<f64>)> = series.into_iter().filter(|s| !s.1.is_empty()).collect();
    if series.is_empty() {
        return Ok(None);
    }
    let x_max = series
        .iter()
        .filter_map(|s| s.1.last().copied())
        .fold(0.0f64, f64::max)
        .max(1.0)
        * 1.05;
    let x_desc = x_desc.to_owned();
    render(move |svg| {
        let root = SVGBackend::with_string(svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..x_max, 0f64..1.0f64)?;
        chart
            .configure_mesh()
            .x_desc(x_desc.as_str())
            .y_desc("fraction")
            .draw()?;
        for (i, (name, values)) in series.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let n = values.len() as f64;
            let mut points = vec![(0.0, 0.0)];
            for (k, v) in values.iter().enumerate() {
                points.push((*v, k as f64 / n));
                points.push((*v, (k + 1) as f64 / n));
            }
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))?
                .label(format!("{name} (n={})", values.len()))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    })
}

/// The route-convergence series both route plots draw: label, latency field, route scope.
const ROUTE_SERIES: [(&str, &str, &str); 3] = [
    ("network: advertise → FIB", "advertiseFibLatency", "network"),
    (
        "network: advertise → all next hops",
        "advertiseAllNextHopsLatency",
        "network",
    ),
    ("/32: advertise → FIB", "advertiseFibLatency", "hostRoute"),
];

fn in_scope(scope: &str) -> impl Fn(&Document) -> bool + '_ {
    move |d: &Document| d.text("scope") == Some(scope)
}

fn route_cdf(view: &RunView<'_>) -> Result<Option<String>, String> {
    let docs = view.documents(document::ROUTE_CONVERGENCE);
    let mut series: Vec<(String, Vec<f64>)> = ROUTE_SERIES
        .iter()
        .map(|(label, field, scope)| ((*label).to_owned(), values(docs, field, in_scope(scope))))
        .collect();
    series.push((
        "withdraw → FIB".to_owned(),
        values(docs, "withdrawFibLatency", |_| true),
    ));
    cdf(series, "ms after trigger")
}

fn reachability_cdf(view: &RunView<'_>) -> Result<Option<String>, String> {
    let docs = view.documents(document::VM_REACHABILITY);
    cdf(
        vec![
            (
                "first reply".to_owned(),
                values(docs, "firstReplyLatency", |_| true),
            ),
            (
                "sustained reachability".to_owned(),
                values(docs, "sustainedReachabilityLatency", |_| true),
            ),
        ],
        "ms after VM create",
    )
}

/// Seconds from run start to a document's `timestamp`.
fn offset_seconds(view: &RunView<'_>, document: &Document) -> Option<f64> {
    let start = view.start()?;
    let at = parse_time(document.text("timestamp")?)?;
    Some((at - start).num_microseconds()? as f64 / 1e6)
}

/// One iteration's values of one series: min, median, P99 (kube-burner's method), max, and how
/// many objects of the iteration have the value missing.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct IterationStats {
    pub iteration: u64,
    pub min: f64,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
    pub observed: usize,
    pub missing: usize,
}

/// Per-iteration aggregates of `field` over `documents` (by `jobIteration`); an iteration whose
/// objects all lack the value is listed with `observed == 0` only if some were missing.
pub(crate) fn per_iteration(
    documents: &[&Document],
    field: &str,
    filter: impl Fn(&Document) -> bool,
) -> Vec<IterationStats> {
    let mut by_iteration: std::collections::BTreeMap<u64, (Vec<f64>, usize)> =
        std::collections::BTreeMap::new();
    for d in documents.iter().filter(|d| filter(d)) {
        let Some(iteration) = d.body().get("jobIteration").and_then(Value::as_u64) else {
            continue;
        };
        let missing = d.body().get("missing").and_then(|m| m.get(field)).is_some();
        match d.number(field) {
            Some(v) => by_iteration.entry(iteration).or_default().0.push(v),
            None if missing => by_iteration.entry(iteration).or_default().1 += 1,
            None => {}
        }
    }
    by_iteration
        .into_iter()
        .map(|(iteration, (mut values, missing))| {
            values.sort_by(f64::total_cmp);
            let at = |p: f64| kube_burner_percentile(&values, p).unwrap_or(f64::NAN);
            IterationStats {
                iteration,
                min: values.first().copied().unwrap_or(f64::NAN),
                p50: at(50.0),
                p99: at(99.0),
                max: values.last().copied().unwrap_or(f64::NAN),
                observed: values.len(),
                missing,
            }
        })
        .collect()
}

/// Per-iteration aggregates of a few series in ms: per series a min–max band, the median and
/// the P99 as lines, and a mark over each iteration with missing values. Readable from 1 to
/// hundreds of iterations (one point per iteration, not one per object).
fn iteration_plot(series: Vec<(String, Vec<IterationStats>)>) -> Result<Option<String>, String> {
    let series: Vec<(String, Vec<IterationStats>)> = series
        .into_iter()
        .filter(|s| s.1.iter().any(|i| i.observed > 0 || i.missing > 0))
        .collect();
    if series.is_empty() {
        return Ok(None);
    }
    let all = || series.iter().flat_map(|s| s.1.iter());
    let top_ms = all()
        .map(|i| i.max)
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    // Seconds once the values reach seconds; ms below.
    let (scale, unit) = if top_ms >= 2000.0 {
        (1000.0, "s")
    } else {
        (1.0, "ms")
    };
    // Headroom for the legend and the missing-value marks above the data.
    let y_max = (top_ms / scale).max(1e-3) * 1.25;
    let first = all().map(|i| i.iteration).min().unwrap_or(0) as f64;
    let last = all().map(|i| i.iteration).max().unwrap_or(0) as f64;
    let any_missing = all().any(|i| i.missing > 0);
    let markers = all().filter(|i| i.observed > 0).count() / series.len() <= 40;
    render(move |svg| {
        let root = SVGBackend::with_string(svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d((first - 0.5)..(last + 0.5), 0f64..y_max)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_label_formatter(&|x| {
                let i = x.round();
                if (x - i).abs() < 0.01 && i >= 0.0 {
                    format!("{i}")
                } else {
                    String::new()
                }
            })
            .x_desc("iteration")
            .y_desc(unit)
            .draw()?;
        for (k, (name, stats)) in series.iter().enumerate() {
            let color = PALETTE[k % PALETTE.len()];
            let seen: Vec<&IterationStats> = stats.iter().filter(|i| i.observed > 0).collect();
            let point = |i: &IterationStats, v: f64| (i.iteration as f64, v / scale);
            // The min–max band: a polygon over the iterations, or a whisker for a lone one.
            let mut band: Vec<(f64, f64)> = seen.iter().map(|i| point(i, i.min)).collect();
            band.extend(seen.iter().rev().map(|i| point(i, i.max)));
            if seen.len() > 1 {
                chart.draw_series(std::iter::once(Polygon::new(
                    band,
                    color.mix(0.15).filled(),
                )))?;
            } else {
                chart.draw_series(seen.iter().map(|i| {
                    PathElement::new(vec![point(i, i.min), point(i, i.max)], color.mix(0.4))
                }))?;
            }
            chart
                .draw_series(LineSeries::new(
                    seen.iter().map(|i| point(i, i.p50)),
                    color.stroke_width(2),
                ))?
                // One legend entry per series; the caption says which line is which.
                .label(name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            chart.draw_series(LineSeries::new(
                seen.iter().map(|i| point(i, i.p99)),
                color.mix(0.6).stroke_width(1),
            ))?;
            if markers {
                chart.draw_series(
                    seen.iter()
                        .map(|i| Circle::new(point(i, i.p50), 3, color.filled())),
                )?;
            }
        }
        let missing_color = PALETTE[3];
        let at = y_max * 0.97;
        let marks: Vec<f64> = series
            .iter()
            .flat_map(|s| s.1.iter())
            .filter(|i| i.missing > 0)
            .map(|i| i.iteration as f64)
            .collect();
        let triangles = || {
            marks
                .iter()
                .map(|&x| TriangleMarker::new((x, at), 5, missing_color.filled()))
        };
        if any_missing {
            chart
                .draw_series(triangles())?
                .label("iteration with missing values")
                .legend(move |(x, y)| TriangleMarker::new((x + 10, y), 5, missing_color.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        // Again over the legend box, so no iteration's mark hides behind it.
        chart.draw_series(triangles())?;
        root.present()?;
        Ok(())
    })
}

fn readiness_per_iteration(view: &RunView<'_>) -> Result<Option<String>, String> {
    iteration_plot(vec![
        (
            "VM create → Ready".to_owned(),
            per_iteration(
                view.documents(document::VMI_LATENCY),
                "vmReadyLatency",
                |_| true,
            ),
        ),
        (
            "first reply".to_owned(),
            per_iteration(
                view.documents(document::VM_REACHABILITY),
                "firstReplyLatency",
                |_| true,
            ),
        ),
    ])
}

fn routes_per_iteration(view: &RunView<'_>) -> Result<Option<String>, String> {
    let docs = view.documents(document::ROUTE_CONVERGENCE);
    iteration_plot(
        ROUTE_SERIES
            .iter()
            .map(|(label, field, scope)| {
                (
                    (*label).to_owned(),
                    per_iteration(docs, field, in_scope(scope)),
                )
            })
            .collect(),
    )
}

fn rtt_histogram(view: &RunView<'_>) -> Result<Option<String>, String> {
    let Some(rtt) = view
        .quantiles
        .iter()
        .find(|q| q.metric_name == document::VM_REACHABILITY_QUANTILES && q.quantile_name == "RTT")
    else {
        return Ok(None);
    };
    if rtt.histogram.is_empty() {
        return Ok(None);
    }
    let buckets: Vec<(f64, u64)> = rtt.histogram.iter().map(|b| (b.le, b.count)).collect();
    let y_max = buckets.iter().map(|b| b.1).max().unwrap_or(1) as f64 * 1.1;
    let n = buckets.len();
    // Tick k sits on the edge between bucket k-1 and bucket k: label it with bucket k-1's
    // upper bound; the first edge is half the first bound (log2 spacing).
    let edges: Vec<String> = std::iter::once(buckets[0].0 / 2.0)
        .chain(buckets.iter().map(|b| b.0))
        .map(crate::report::format_number)
        .collect();
    render(move |svg| {
        let root = SVGBackend::with_string(svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..n as f64, 0f64..y_max)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n + 1)
            .x_label_formatter(&|x| {
                let k = x.round();
                if (x - k).abs() < 0.01 && k >= 0.0 {
                    edges.get(k as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .x_desc("RTT (ms, log2 buckets)")
            .y_desc("probes")
            .draw()?;
        chart.draw_series(buckets.iter().enumerate().map(|(i, b)| {
            Rectangle::new(
                [(i as f64 + 0.05, 0.0), (i as f64 + 0.95, b.1 as f64)],
                PALETTE[0].filled(),
            )
        }))?;
        root.present()?;
        Ok(())
    })
}

fn session_timeline(view: &RunView<'_>) -> Result<Option<String>, String> {
    // Per peer: intervals in a state, from the initial state and the state changes.
    let mut rows: Vec<(String, Vec<Interval>)> = Vec::new();
    let mut x_max = 1.0f64;
    for d in view.documents(document::BGP_SESSION) {
        let (Some(from), Some(until)) = (
            offset_seconds(view, d),
            d.text("observedUntil")
                .and_then(parse_time)
                .zip(view.start())
                .and_then(|(u, s)| (u - s).num_microseconds().map(|us| us as f64 / 1e6)),
        ) else {
            continue;
        };
        let mut state = d.text("initialState").unwrap_or("unknown").to_owned();
        let mut at = from;
        let mut intervals = Vec::new();
        if let Some(Value::Array(changes)) = d.body().get("stateChanges") {
            for change in changes {
                let Some(offset) = change.get("offset").and_then(Value::as_f64) else {
                    continue;
                };
                let t = offset / 1000.0;
                intervals.push((at, t, state == "Established"));
                at = t;
                state = change
                    .get("to")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown")
                    .to_owned();
            }
        }
        intervals.push((at, until, state == "Established"));
        x_max = x_max.max(until);
        rows.push((d.text("peerAddress").unwrap_or("?").to_owned(), intervals));
    }
    if rows.is_empty() {
        return Ok(None);
    }
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    let x_max = x_max * 1.02;
    let n = rows.len();
    let height = (120 + 30 * n as u32).min(1200);
    render(move |svg| {
        let root = SVGBackend::with_string(svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let names: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(120)
            .build_cartesian_2d(0f64..x_max, -0.5f64..n as f64 - 0.5)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n)
            .y_label_formatter(&|y| {
                let i = y.round();
                if (y - i).abs() < 0.01 && i >= 0.0 {
                    names.get(i as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .x_desc("seconds since run start")
            .draw()?;
        let up = PALETTE[2];
        let down = PALETTE[3];
        for (i, (_, intervals)) in rows.iter().enumerate() {
            let y = i as f64;
            chart.draw_series(intervals.iter().map(|&(from, to, established)| {
                let color = if established { up } else { down };
                Rectangle::new([(from, y - 0.3), (to, y + 0.3)], color.filled())
            }))?;
        }
        root.present()?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vm(iteration: u64, replica: u64, ready: Option<f64>) -> Document {
        let mut body = json!({
            "uuid": "u", "metricName": document::VMI_LATENCY, "jobName": "j",
            "namespace": format!("ns-{iteration}"), "vmName": format!("vm-{replica}"),
            "jobIteration": iteration,
        });
        match ready {
            Some(v) => body["vmReadyLatency"] = json!(v),
            None => body["missing"] = json!({"vmReadyLatency": "not Ready"}),
        }
        Document::from_value(body).unwrap()
    }

    #[test]
    fn per_iteration_aggregates_one_point_per_iteration() {
        let mut documents = Vec::new();
        for iteration in 0..72u64 {
            for replica in 0..10u64 {
                let missing = iteration == 5 && replica == 9;
                let value = (iteration * 10 + replica) as f64;
                documents.push(vm(iteration, replica, (!missing).then_some(value)));
            }
        }
        let refs: Vec<&Document> = documents.iter().collect();
        let stats = per_iteration(&refs, "vmReadyLatency", |_| true);
        assert_eq!(stats.len(), 72);
        assert_eq!(
            stats[3],
            IterationStats {
                iteration: 3,
                min: 30.0,
                // kube-burner's P50 of 10 values is the 5th; its P99 the mean of the 9th and 10th.
                p50: 34.0,
                p99: 38.5,
                max: 39.0,
                observed: 10,
                missing: 0,
            }
        );
        assert_eq!((stats[5].observed, stats[5].missing), (9, 1));
        assert_eq!(stats[5].max, 58.0);
        // A field nobody has, missing nowhere: no iterations, so no plot.
        assert!(per_iteration(&refs, "other", |_| true).is_empty());
        assert_eq!(
            iteration_plot(vec![("none".to_owned(), Vec::new())]),
            Ok(None)
        );
        let svg = iteration_plot(vec![("ready".to_owned(), stats)])
            .unwrap()
            .unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80]);
        assert!(svg.contains("iteration with missing values"));
    }
}
