//! Human units for the HTML report: `18596235637.057 bps` reads as `18.6 Gbit/s`, `2842.75 ms`
//! as `2.84 s`. The documents keep their units and full values; the report shows the raw value
//! on hover (a `title` attribute).

use serde::Serialize;

/// A value as the report shows it: `text` in a human unit, `raw` the document's value and unit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Shown {
    pub text: String,
    pub raw: String,
}

impl Shown {
    /// No value: a dash, never 0.
    pub fn none() -> Self {
        Shown {
            text: "-".to_owned(),
            raw: String::new(),
        }
    }
}

/// `value` (in the document's `unit`: `ms`, `bps`, `percent`, `count` or other) for display.
pub fn shown(value: Option<f64>, unit: &str) -> Shown {
    match value {
        Some(value) => Shown {
            text: human(value, unit),
            raw: raw(value, unit),
        },
        None => Shown::none(),
    }
}

/// The document's value, unrounded, with its unit.
pub fn raw(value: f64, unit: &str) -> String {
    if unit.is_empty() || unit == "count" {
        format!("{value}")
    } else {
        format!("{value} {unit}")
    }
}

/// `value` in the largest fitting human unit, three significant digits (never fewer integer
/// digits): ms → `ms` or `s`, bps → `bit/s`, `kbit/s`, `Mbit/s` or `Gbit/s`, percent → `%`.
pub fn human(value: f64, unit: &str) -> String {
    let magnitude = value.abs();
    match unit {
        "ms" if magnitude >= 1000.0 => format!("{} s", significant(value / 1000.0)),
        "ms" => format!("{} ms", significant(value)),
        "bps" => {
            let (scaled, name) = if magnitude >= 1e9 {
                (value / 1e9, "Gbit/s")
            } else if magnitude >= 1e6 {
                (value / 1e6, "Mbit/s")
            } else if magnitude >= 1e3 {
                (value / 1e3, "kbit/s")
            } else {
                (value, "bit/s")
            };
            format!("{} {name}", significant(scaled))
        }
        // Percentages near 100 matter to the last digit (an uptime threshold of 99.9 %): keep
        // the document's 3 decimals.
        "percent" => format!("{} %", crate::report::format_number(value)),
        "count" | "" => crate::report::format_number(value),
        other => format!("{} {other}", crate::report::format_number(value)),
    }
}

/// Three significant digits, trailing zeros dropped; at least the integer digits.
fn significant(value: f64) -> String {
    let magnitude = value.abs();
    let decimals = if magnitude >= 100.0 {
        0
    } else if magnitude >= 10.0 {
        1
    } else if magnitude >= 1.0 {
        2
    } else {
        3
    };
    let text = format!("{value:.decimals$}");
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        &text
    };
    if text == "-0" {
        "0".to_owned()
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throughput_reads_in_bits_per_second_units() {
        assert_eq!(human(18_596_235_637.057, "bps"), "18.6 Gbit/s");
        assert_eq!(human(9.41e9, "bps"), "9.41 Gbit/s");
        assert_eq!(human(940_000_000.0, "bps"), "940 Mbit/s");
        assert_eq!(human(12_345_678.0, "bps"), "12.3 Mbit/s");
        assert_eq!(human(5_500.0, "bps"), "5.5 kbit/s");
        assert_eq!(human(12.0, "bps"), "12 bit/s");
    }

    #[test]
    fn durations_read_in_ms_or_s() {
        assert_eq!(human(250.012, "ms"), "250 ms");
        assert_eq!(human(14.5, "ms"), "14.5 ms");
        assert_eq!(human(0.347, "ms"), "0.347 ms");
        assert_eq!(human(0.001, "ms"), "0.001 ms");
        assert_eq!(human(9.0, "ms"), "9 ms");
        assert_eq!(human(999.6, "ms"), "1000 ms");
        assert_eq!(human(1000.0, "ms"), "1 s");
        assert_eq!(human(2842.75, "ms"), "2.84 s");
        assert_eq!(human(42_600.0, "ms"), "42.6 s");
        assert_eq!(human(5_400_000.0, "ms"), "5400 s");
        assert_eq!(human(0.0, "ms"), "0 ms");
        assert_eq!(human(-0.0001, "ms"), "0 ms");
    }

    #[test]
    fn percentages_counts_and_other_units() {
        assert_eq!(human(97.885, "percent"), "97.885 %");
        assert_eq!(human(100.0, "percent"), "100 %");
        assert_eq!(human(600.0, "count"), "600");
        assert_eq!(human(0.5, "count"), "0.5");
        assert_eq!(human(3.0, "widgets"), "3 widgets");
    }

    #[test]
    fn the_raw_value_is_kept_for_the_title() {
        let goodput = shown(Some(18_596_235_637.057), "bps");
        assert_eq!(goodput.text, "18.6 Gbit/s");
        assert_eq!(goodput.raw, "18596235637.057 bps");
        assert_eq!(shown(Some(2.0), "count").raw, "2");
        assert_eq!(shown(None, "ms"), Shown::none());
        assert_eq!(Shown::none().text, "-");
    }
}
