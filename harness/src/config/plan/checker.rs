//! The checker: the problem collector that picks each value from the command line, the profile or
//! a default, remembers where it came from, and records every problem (with the pick, parse,
//! duration, positive and ASN helpers and the shared name-syntax checks).

use std::time::Duration;

use crate::config::Problem;

/// A value with the name of the place it came from, for error messages.
pub(super) struct Sourced<T> {
    pub(super) value: T,
    pub(super) field: String,
}

/// Collects problems while planning.
pub(super) struct Checker<'a> {
    pub(super) profile: &'a str,
    pub(super) problems: Vec<Problem>,
}

impl Checker<'_> {
    /// Picks the command-line value, else the profile value, else the default, remembering the source.
    pub(super) fn pick<T>(
        &self,
        cli: Option<T>,
        flag: &str,
        profile: Option<T>,
        key: &str,
        default: T,
    ) -> Sourced<T> {
        match (cli, profile) {
            (Some(value), _) => Sourced {
                value,
                field: flag.to_string(),
            },
            (None, Some(value)) => Sourced {
                value,
                field: format!("profile {}: {key}", self.profile),
            },
            (None, None) => Sourced {
                value: default,
                field: format!("{flag} (default)"),
            },
        }
    }

    pub(super) fn problem(
        &mut self,
        field: &str,
        value: impl ToString,
        message: impl Into<String>,
    ) {
        self.problems.push(Problem {
            field: field.to_string(),
            value: value.to_string(),
            message: message.into(),
        });
    }

    pub(super) fn parse<T>(&mut self, source: &Sourced<String>, what: &str) -> Option<T>
    where
        T: std::str::FromStr,
    {
        match source.value.trim().parse::<T>() {
            Ok(v) => Some(v),
            Err(_) => {
                self.problem(&source.field, &source.value, format!("not a valid {what}"));
                None
            }
        }
    }

    pub(super) fn duration(&mut self, source: &Sourced<String>) -> Option<Duration> {
        match humantime::parse_duration(source.value.trim()) {
            Ok(d) if d.is_zero() => {
                self.problem(&source.field, &source.value, "must be greater than zero");
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                self.problem(
                    &source.field,
                    &source.value,
                    format!("not a valid duration ({e}); use e.g. 30s, 5m, 4h, 1h30m"),
                );
                None
            }
        }
    }

    pub(super) fn positive(&mut self, source: &Sourced<u32>) -> Option<u32> {
        if source.value == 0 {
            self.problem(&source.field, source.value, "must be at least 1");
            None
        } else {
            Some(source.value)
        }
    }

    pub(super) fn asn(&mut self, source: &Sourced<u64>) -> Option<u32> {
        // 0 and 4294967295 are reserved (RFC 7607, RFC 7300); 23456 is AS_TRANS (RFC 6793).
        match u32::try_from(source.value) {
            Ok(asn) if asn != 0 && asn != u32::MAX && asn != 23456 => Some(asn),
            _ => {
                self.problem(
                    &source.field,
                    source.value,
                    "ASN out of range: use 1-4294967294 (0, 23456 and 4294967295 are reserved)",
                );
                None
            }
        }
    }
}

/// Kubernetes label value syntax: ≤63 characters, alphanumeric at both ends, `-_.` inside.
pub fn check_label_value(value: &str) -> Result<(), String> {
    if value.len() > 63 {
        return Err(format!("{} characters; at most 63", value.len()));
    }
    if value.is_empty() {
        return Ok(());
    }
    let ok_inner = value
        .chars()
        .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch));
    let ends_ok = value.starts_with(|ch: char| ch.is_ascii_alphanumeric())
        && value.ends_with(|ch: char| ch.is_ascii_alphanumeric());
    if ok_inner && ends_ok {
        Ok(())
    } else {
        Err(
            "only letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
                .into(),
        )
    }
}

/// RFC 1123 DNS label: ≤63 lowercase alphanumerics and '-', alphanumeric at both ends.
pub(super) fn check_dns_label(value: &str) -> Result<(), String> {
    if value.is_empty() || value.len() > 63 {
        return Err(format!("{} characters; must be 1-63", value.len()));
    }
    let ok = value
        .chars()
        .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-')
        && !value.starts_with('-')
        && !value.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(
            "must be lowercase letters, digits and '-', starting and ending with a letter or digit"
                .into(),
        )
    }
}
