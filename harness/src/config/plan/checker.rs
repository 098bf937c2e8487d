//! The checker: the problem collector that picks each value from the command line, the profile or
//! a default, remembers where it came from, and records every problem (with the pick, parse,
//! duration, positive and ASN helpers and the shared name-syntax checks).
//!
//! A setting is declared twice: as a field of the clap [`PlanArgs`] (its flag) and as a field of
//! the serde [`Profile`] (its key). The [`flag!`], [`key!`] and [`pick!`] macros name a setting by
//! those fields and spell its `--flag` and profile key the way clap and serde do, so error messages
//! cannot drift from the flags and keys users type.
//!
//! [`PlanArgs`]: crate::cli::PlanArgs
//! [`Profile`]: crate::config::Profile

use std::time::Duration;

use heck::{ToKebabCase, ToLowerCamelCase};

use crate::config::Problem;

/// The `--flag` of a [`PlanArgs`](crate::cli::PlanArgs) field (checked at compile time).
macro_rules! flag {
    ($field:ident) => {{
        let _field_exists = |args: &$crate::cli::PlanArgs| {
            let _ = &args.$field;
        };
        $crate::config::plan::checker::flag_name(stringify!($field))
    }};
}

/// The profile key of a [`Profile`](crate::config::Profile) field path, e.g. `bgp.peerIp`
/// (checked at compile time).
macro_rules! key {
    ($($segment:ident).+) => {{
        let _field_exists = |profile: &$crate::config::Profile| {
            let _ = &profile.$($segment).+;
        };
        $crate::config::plan::checker::key_name(&[$(stringify!($segment)),+])
    }};
}

/// Picks a setting from the command line (`cli.<flag field>`), else the profile
/// (`profile.<key path>`), else the default, as [`Checker::pick`] does. Without a command-line
/// field, the setting is a profile-only one and its key also names its default.
macro_rules! pick {
    ($checker:expr, $cli:ident . $flag:ident, $profile:ident . $($segment:ident).+, $default:expr) => {
        $checker.pick(
            $cli.$flag.clone(),
            &$crate::config::plan::checker::flag!($flag),
            $profile.$($segment).+.clone(),
            &$crate::config::plan::checker::key!($($segment).+),
            $default,
        )
    };
    ($checker:expr, $profile:ident . $($segment:ident).+, $default:expr) => {{
        let key = $crate::config::plan::checker::key!($($segment).+);
        $checker.pick(None, &key, $profile.$($segment).+.clone(), &key, $default)
    }};
}

pub(super) use {flag, key, pick};

/// clap's long flag for a field: `vm_count` → `--vm-count` (a test holds every plan flag to it).
pub(crate) fn flag_name(field: &str) -> String {
    format!("--{}", field.to_kebab_case())
}

/// serde's camelCase key for a field path: `["bgp", "peer_ip"]` → `bgp.peerIp`.
pub(crate) fn key_name(path: &[&str]) -> String {
    path.iter()
        .map(|segment| segment.to_lower_camel_case())
        .collect::<Vec<_>>()
        .join(".")
}

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
                field: self.profile_field(key),
            },
            (None, None) => Sourced {
                value: default,
                field: format!("{flag} (default)"),
            },
        }
    }

    /// How a message names a profile key: `profile <name>: <key>`.
    pub(super) fn profile_field(&self, key: &str) -> String {
        format!("profile {}: {key}", self.profile)
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

#[cfg(test)]
mod tests {
    use clap::{Args, Command};

    use super::*;
    use crate::cli::PlanArgs;

    #[test]
    fn every_plan_flag_is_named_after_its_field() {
        let command = PlanArgs::augment_args(Command::new("plan"));
        for arg in command.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            assert_eq!(
                format!("--{long}"),
                flag_name(arg.get_id().as_str()),
                "messages would name a flag users cannot type"
            );
        }
        assert_eq!(flag!(bgp_peer_ip), "--bgp-peer-ip");
    }

    #[test]
    fn profile_keys_are_spelled_as_serde_reads_them() {
        assert_eq!(key!(vm_count), "vmCount");
        assert_eq!(key!(bgp.hold_time), "bgp.holdTime");
        assert_eq!(
            key!(network.subnet_prefix_length),
            "network.subnetPrefixLength"
        );
        let profile: crate::config::Profile =
            serde_saphyr::from_str("name: x\nshape: scale\nvmCount: 2\nbgp:\n  holdTime: 9s\n")
                .expect("camelCase keys parse");
        assert_eq!(profile.vm_count, Some(2));
        assert_eq!(profile.bgp.hold_time.as_deref(), Some("9s"));
    }

    #[test]
    fn the_command_line_wins_over_the_profile_over_the_default() {
        let c = Checker {
            profile: "p",
            problems: Vec::new(),
        };
        let both = c.pick(Some(1), "--qps", Some(2), "qps", 3);
        assert_eq!((both.value, both.field.as_str()), (1, "--qps"));
        let profile = c.pick(None, "--qps", Some(2), "qps", 3);
        assert_eq!(
            (profile.value, profile.field.as_str()),
            (2, "profile p: qps")
        );
        let default = c.pick(None, "--qps", None, "qps", 3);
        assert_eq!(
            (default.value, default.field.as_str()),
            (3, "--qps (default)")
        );
    }
}
