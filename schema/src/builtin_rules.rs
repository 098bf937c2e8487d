//! What kube-apiserver refuses in the built-in kinds the lab serves beyond their OpenAPI schemas:
//! MicroTime decoding, the Lease spec rules and the Event create/update rules, each mirrored from
//! the Kubernetes source named at its function.

use serde_json::Value;

use crate::KindInfo;
use crate::meta::qualified_name_problems;
use crate::violation::{Violation, ViolationReason, render_value};

/// Go's `metav1.RFC3339Micro`, the only layout `MicroTime.UnmarshalJSON` accepts.
pub(crate) const RFC3339_MICRO: &str = "2006-01-02T15:04:05.000000Z07:00";

/// Where each built-in kind keeps its `MicroTime`s (JSON pointers).
fn micro_time_fields(info: &KindInfo) -> &'static [&'static str] {
    match (info.group.as_str(), info.kind.as_str()) {
        ("coordination.k8s.io", "Lease") => &["/spec/acquireTime", "/spec/renewTime"],
        ("events.k8s.io", "Event") => &["/eventTime", "/series/lastObservedTime"],
        _ => &[],
    }
}

/// The body's decoding errors: a `MicroTime` string that Go's `time.Parse(RFC3339Micro, _)`
/// refuses (it wants exactly six fractional digits: `...:05Z` and `...:05.123Z` fail). A real
/// server answers these with 400 before any validation. Other types are left to the schema.
pub(crate) fn decode_violations(info: &KindInfo, obj: &Value) -> Vec<Violation> {
    micro_time_fields(info)
        .iter()
        .filter_map(|pointer| {
            let text = obj.pointer(pointer)?.as_str()?;
            let problem = parse_micro_time(text).err()?;
            Some(Violation::new(
                pointer.trim_start_matches('/').replace('/', "."),
                ViolationReason::Undecodable,
                format!("parsing time {}{problem}", crate::violation::quote(text)),
            ))
        })
        .collect()
}

/// `time.Parse(RFC3339Micro, text)`'s verdict; the error is the part of Go's `ParseError` text
/// after `parsing time "<value>"`. Works on bytes, so no input can split a character.
pub(crate) fn parse_micro_time(text: &str) -> Result<(), String> {
    let bad = |rest: &[u8], element: &str| -> Result<(), String> {
        Err(format!(
            " as {}: cannot parse {} as {}",
            crate::violation::quote(RFC3339_MICRO),
            crate::violation::quote(&String::from_utf8_lossy(rest)),
            crate::violation::quote(element)
        ))
    };
    let range = |what: &str| -> Result<(), String> { Err(format!(": {what} out of range")) };
    let mut rest = text.as_bytes();
    // (literal before the element, element, digits, range) as Go's layout chunks run.
    let fields: [(&str, &str, usize, std::ops::RangeInclusive<u32>, &str); 6] = [
        ("", "2006", 4, 0..=9999, "year"),
        ("-", "01", 2, 1..=12, "month"),
        // Any two-digit day: Go checks it against the month once everything parsed.
        ("-", "02", 2, 0..=99, "day"),
        ("T", "15", 2, 0..=23, "hour"),
        (":", "04", 2, 0..=59, "minute"),
        (":", "05", 2, 0..=59, "second"),
    ];
    let mut values = [0u32; 6];
    for (index, (literal, element, digits, allowed, name)) in fields.iter().enumerate() {
        match rest.strip_prefix(literal.as_bytes()) {
            Some(after) => rest = after,
            None => return bad(rest, literal),
        }
        // Go's hour element (`15`) also takes a single digit; the others want exactly `digits`.
        let width = if *element == "15"
            && rest.first().is_some_and(u8::is_ascii_digit)
            && !rest.get(1).is_some_and(u8::is_ascii_digit)
        {
            1
        } else {
            *digits
        };
        let Some(number) = rest
            .get(..width)
            .filter(|d| d.iter().all(u8::is_ascii_digit))
        else {
            return bad(rest, element);
        };
        let value = number
            .iter()
            .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'));
        if !allowed.contains(&value) {
            return range(name);
        }
        values[index] = value;
        rest = &rest[width..];
    }
    // `.000000`: exactly a separator and six digits.
    let fraction = rest
        .get(..7)
        .filter(|f| matches!(f[0], b'.' | b',') && f[1..].iter().all(u8::is_ascii_digit));
    if fraction.is_none() {
        return bad(rest, ".000000");
    }
    rest = &rest[7..];
    match rest.first() {
        Some(b'Z') => rest = &rest[1..],
        _ => {
            let Some(offset) = rest.get(..6).filter(|o| {
                o[1..3].iter().all(u8::is_ascii_digit)
                    && o[3] == b':'
                    && o[4..6].iter().all(u8::is_ascii_digit)
            }) else {
                return bad(rest, "Z07:00");
            };
            // Go tests the ranges (with `>`: offsets of 24 h or 60 min pass) before the sign.
            let two = |d: &[u8]| u32::from(d[0] - b'0') * 10 + u32::from(d[1] - b'0');
            if two(&offset[1..3]) > 24 {
                return range("time zone offset hour");
            }
            if two(&offset[4..6]) > 60 {
                return range("time zone offset minute");
            }
            if !matches!(offset[0], b'+' | b'-') {
                return bad(rest, "Z07:00");
            }
            rest = &rest[6..];
        }
    }
    if !rest.is_empty() {
        let extra = crate::violation::quote(&String::from_utf8_lossy(rest));
        return Err(format!(": extra text: {extra}"));
    }
    let [year, month, day, ..] = values;
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if day < 1 || day > days {
        return range("day");
    }
    Ok(())
}

/// Validation a real server applies on create and update, by kind.
pub(crate) fn violations(info: &KindInfo, obj: &Value) -> Vec<Violation> {
    match (info.group.as_str(), info.kind.as_str()) {
        ("coordination.k8s.io", "Lease") => lease_violations(obj),
        ("events.k8s.io", "Event") => event_violations(obj),
        _ => Vec::new(),
    }
}

fn text<'a>(obj: &'a Value, pointer: &str) -> &'a str {
    obj.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// `ValidateLeaseSpec` (kubernetes `pkg/apis/coordination/validation/validation.go`).
fn lease_violations(lease: &Value) -> Vec<Violation> {
    let mut out = Vec::new();
    let number = |pointer: &str| lease.pointer(pointer).and_then(Value::as_i64);
    if let Some(duration) = number("/spec/leaseDurationSeconds")
        && duration <= 0
    {
        out.push(Violation::invalid(
            "spec.leaseDurationSeconds",
            &Value::from(duration),
            "must be greater than 0",
        ));
    }
    if let Some(transitions) = number("/spec/leaseTransitions")
        && transitions < 0
    {
        out.push(Violation::invalid(
            "spec.leaseTransitions",
            &Value::from(transitions),
            "must be greater than or equal to 0",
        ));
    }
    let strategy = lease.pointer("/spec/strategy").and_then(Value::as_str);
    if let Some(strategy) = strategy {
        // `ValidateCoordinatedLeaseStrategy`: a bare name must be Kubernetes' own; a
        // `prefix/name` must be a qualified name. It appends `strategy` to a path that already
        // ends in it, hence the doubled name a real server reports.
        if strategy.contains('/') {
            for problem in qualified_name_problems(strategy) {
                out.push(Violation::invalid(
                    "spec.strategy.strategy",
                    &Value::from(strategy),
                    &problem,
                ));
            }
        } else if strategy != "OldestEmulationVersion" {
            out.push(Violation::new(
                "spec.strategy.strategy",
                ViolationReason::FieldValueNotSupported,
                format!(
                    "Unsupported value: {}: supported values: \"OldestEmulationVersion\"",
                    render_value(&Value::from(strategy))
                ),
            ));
        }
    }
    if !text(lease, "/spec/preferredHolder").is_empty() && strategy.is_none_or(str::is_empty) {
        out.push(Violation::new(
            "spec.preferredHolder",
            ViolationReason::FieldValueForbidden,
            "Forbidden: may only be specified if `strategy` is defined",
        ));
    }
    out
}

/// Event limits (kubernetes `pkg/apis/core/validation/events.go`).
const REPORTING_INSTANCE_MAX: usize = 128;
const ACTION_MAX: usize = 128;
const REASON_MAX: usize = 128;
const NOTE_MAX: usize = 1024;

/// `ValidateEventCreate` for an `events.k8s.io/v1` request: `legacyValidateEvent` plus the strict
/// v1 rules. Field paths are those of the server's internal (core) Event, as a real server
/// reports them even through `events.k8s.io`: `involvedObject` for `regarding`, `message` for
/// `note`, `count`/`source`/`firstTimestamp`/`lastTimestamp` for the `deprecated*` fields.
/// On update the same rules hold for the new object: the ones Kubernetes checks on create only
/// concern fields [`event_update_violations`] keeps immutable.
fn event_violations(event: &Value) -> Vec<Violation> {
    let mut out = Vec::new();
    let namespace = text(event, "/metadata/namespace");
    let regarding_namespace = text(event, "/regarding/namespace");
    let has_event_time = event.get("eventTime").is_some_and(|t| !t.is_null());
    let mismatch = || {
        Violation::invalid(
            "involvedObject.namespace",
            &Value::from(regarding_namespace),
            "does not match event.namespace",
        )
    };
    if !has_event_time {
        // The legacy branch (objects without eventTime); `eventTime` itself is required below.
        let fits = if regarding_namespace.is_empty() {
            namespace.is_empty() || namespace == "default"
        } else {
            namespace == regarding_namespace
        };
        if !fits {
            out.push(mismatch());
        }
    } else {
        if regarding_namespace.is_empty() && namespace != "default" && namespace != "kube-system" {
            out.push(mismatch());
        }
        let controller = text(event, "/reportingController");
        if controller.is_empty() {
            out.push(Violation::required("reportingController"));
        }
        for problem in qualified_name_problems(controller) {
            out.push(Violation::invalid(
                "reportingController",
                &Value::from(controller),
                &problem,
            ));
        }
        let empty = Value::from("");
        for (field, pointer, limit) in [
            (
                "reportingInstance",
                "/reportingInstance",
                REPORTING_INSTANCE_MAX,
            ),
            ("action", "/action", ACTION_MAX),
            ("reason", "/reason", REASON_MAX),
        ] {
            let value = text(event, pointer);
            if value.is_empty() {
                out.push(Violation::required(field));
            }
            if value.len() > limit {
                out.push(Violation::invalid(
                    field,
                    &empty,
                    &format!("can have at most {limit} characters"),
                ));
            }
        }
        if text(event, "/note").len() > NOTE_MAX {
            out.push(Violation::invalid(
                "message",
                &empty,
                &format!("can have at most {NOTE_MAX} characters"),
            ));
        }
    }
    // The strict events.k8s.io/v1 rules. A missing `eventTime`, `series.count` or
    // `series.lastObservedTime` is the schema's `required` (same field, same "Required value").
    let empty = Value::from("");
    if let Some(count) = event.pointer("/series/count").and_then(Value::as_i64)
        && count < 2
    {
        out.push(Violation::invalid(
            "series.count",
            &empty,
            "should be at least 2",
        ));
    }
    let event_type = text(event, "/type");
    if event_type != "Normal" && event_type != "Warning" {
        out.push(Violation::invalid(
            "type",
            &empty,
            &format!("has invalid value: {event_type}"),
        ));
    }
    let set = |key: &str| event.get(key).is_some_and(|v| !v.is_null());
    if set("deprecatedFirstTimestamp") {
        out.push(Violation::invalid(
            "firstTimestamp",
            &empty,
            "needs to be unset",
        ));
    }
    if set("deprecatedLastTimestamp") {
        out.push(Violation::invalid(
            "lastTimestamp",
            &empty,
            "needs to be unset",
        ));
    }
    if event
        .get("deprecatedCount")
        .and_then(Value::as_i64)
        .is_some_and(|c| c != 0)
    {
        out.push(Violation::invalid("count", &empty, "needs to be unset"));
    }
    if !text(event, "/deprecatedSource/component").is_empty()
        || !text(event, "/deprecatedSource/host").is_empty()
    {
        out.push(Violation::invalid("source", &empty, "needs to be unset"));
    }
    out
}

/// An Event's fields `ValidateEventUpdate` keeps immutable: (v1 name, internal name it reports).
const EVENT_IMMUTABLE: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("reason", "reason"),
    ("note", "message"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
    ("type", "type"),
    ("eventTime", "eventTime"),
    ("action", "action"),
    ("related", "related"),
    ("reportingController", "reportingController"),
    ("reportingInstance", "reportingInstance"),
];

/// Go compares the decoded structs, where an absent field is its zero value: absent, `null`,
/// `""`, `0` and empty objects are all the same.
fn zeroed(value: Option<&Value>) -> Option<Value> {
    match value? {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::Number(n) if n.as_f64() == Some(0.0) => None,
        Value::Object(map) => {
            let kept: serde_json::Map<String, Value> = map
                .iter()
                .filter_map(|(k, v)| zeroed(Some(v)).map(|v| (k.clone(), v)))
                .collect();
            (!kept.is_empty()).then_some(Value::Object(kept))
        }
        other => Some(other.clone()),
    }
}

/// What a real server refuses in an update of `old` to `new` that [`violations`] cannot see:
/// an Event's immutable fields (`ValidateEventUpdate`, `pkg/apis/core/validation/events.go`).
/// Go prints a changed struct with `%#v`; here it is `"object"`, as elsewhere in this crate.
pub fn transition_violations(info: &KindInfo, old: &Value, new: &Value) -> Vec<Violation> {
    if (info.group.as_str(), info.kind.as_str()) != ("events.k8s.io", "Event") {
        return Vec::new();
    }
    EVENT_IMMUTABLE
        .iter()
        .filter(|(key, _)| zeroed(old.get(*key)) != zeroed(new.get(*key)))
        .map(|(key, reported)| {
            Violation::invalid(
                *reported,
                new.get(*key).unwrap_or(&Value::from("")),
                "field is immutable",
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kind(group: &str, kind: &str) -> KindInfo {
        KindInfo {
            group: group.into(),
            version: "v1".into(),
            kind: kind.into(),
            plural: String::new(),
            namespaced: true,
            has_status_subresource: false,
            served: true,
            singular: String::new(),
            short_names: Vec::new(),
        }
    }

    #[test]
    fn micro_times_need_exactly_six_fractional_digits_as_go_parses_them() {
        assert_eq!(parse_micro_time("2026-12-03T18:30:00.123456Z"), Ok(()));
        assert_eq!(parse_micro_time("2026-12-03T18:30:00.123456+01:00"), Ok(()));
        assert_eq!(parse_micro_time("2024-02-29T08:05:00.000000Z"), Ok(()));
        // Go's own wording (time.ParseError) for what clients most often send.
        assert_eq!(
            parse_micro_time("2026-12-03T18:30:00Z").expect_err("refused"),
            " as \"2006-01-02T15:04:05.000000Z07:00\": cannot parse \"Z\" as \".000000\""
        );
        assert_eq!(
            parse_micro_time("2026-12-03T18:30:00.123Z").expect_err("refused"),
            " as \"2006-01-02T15:04:05.000000Z07:00\": cannot parse \".123Z\" as \".000000\""
        );
        assert_eq!(
            parse_micro_time("2026-12-03T18:30:00.1234567Z").expect_err("refused"),
            " as \"2006-01-02T15:04:05.000000Z07:00\": cannot parse \"7Z\" as \"Z07:00\""
        );
        assert_eq!(
            parse_micro_time("2026-13-03T18:30:00.000000Z").expect_err("refused"),
            ": month out of range"
        );
        assert_eq!(
            parse_micro_time("2025-02-29T18:30:00.000000Z").expect_err("refused"),
            ": day out of range"
        );
        assert_eq!(
            parse_micro_time("2026-12-03T18:30:00.000000Zjunk").expect_err("refused"),
            ": extra text: \"junk\""
        );
        for bad in [
            "",
            "é",
            "2026-12-03",
            "2026-12-03T18:30:00.12345é",
            "2026-12-03 18:30:00.000000Z",
        ] {
            assert!(parse_micro_time(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn lease_spec_rules_follow_validate_lease_spec() {
        let lease = |spec: Value| json!({"spec": spec});
        let lease_kind = kind("coordination.k8s.io", "Lease");
        assert!(
            violations(
                &lease_kind,
                &lease(json!({"holderIdentity": "a", "leaseDurationSeconds": 15, "leaseTransitions": 0}))
            )
            .is_empty()
        );
        let found = violations(
            &lease_kind,
            &lease(
                json!({"leaseDurationSeconds": 0, "leaseTransitions": -1, "preferredHolder": "b"}),
            ),
        );
        let fields: Vec<&str> = found.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.leaseDurationSeconds",
                "spec.leaseTransitions",
                "spec.preferredHolder"
            ]
        );
        assert_eq!(found[0].message, "Invalid value: 0: must be greater than 0");
        let strategy = violations(&lease_kind, &lease(json!({"strategy": "Newest"})));
        assert_eq!(strategy[0].reason, ViolationReason::FieldValueNotSupported);
        assert!(
            violations(
                &lease_kind,
                &lease(json!({"strategy": "example.com/mine", "preferredHolder": "b"}))
            )
            .is_empty()
        );
    }

    fn event() -> Value {
        json!({
            "metadata": {"name": "vm-1.1", "namespace": "vms"},
            "eventTime": "2026-12-03T18:30:00.000000Z",
            "regarding": {"kind": "VirtualMachineInstance", "namespace": "vms", "name": "vm-1"},
            "reportingController": "vmbgp-controller", "reportingInstance": "vmbgp-controller",
            "action": "AdvertiseHostRoute", "reason": "HostRouteNodeCapped", "type": "Warning",
            "note": "capped"
        })
    }

    #[test]
    fn events_follow_validate_event_create_for_events_k8s_io_v1() {
        let event_kind = kind("events.k8s.io", "Event");
        assert!(violations(&event_kind, &event()).is_empty());
        let mut bad = event();
        bad["regarding"]["namespace"] = json!("");
        bad["reportingController"] = json!("not a name!");
        bad["reportingInstance"] = json!("");
        bad["action"] = json!("a".repeat(129));
        bad["type"] = json!("Bogus");
        bad["deprecatedCount"] = json!(3);
        bad["series"] = json!({"count": 1});
        let found = violations(&event_kind, &bad);
        let fields: Vec<&str> = found.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "involvedObject.namespace",
                "reportingController",
                "reportingInstance",
                "action",
                "series.count",
                "type",
                "count"
            ]
        );
        assert_eq!(
            found[5].message,
            "Invalid value: \"\": has invalid value: Bogus"
        );
        // Without regarding's namespace only default and kube-system Events are accepted.
        let mut system = event();
        system["metadata"]["namespace"] = json!("kube-system");
        system["regarding"] = json!({"kind": "Node", "name": "node-1"});
        assert!(violations(&event_kind, &system).is_empty());
        // Without eventTime, the legacy namespace rule applies (eventTime's absence is the schema's).
        let mut legacy = event();
        if let Some(o) = legacy.as_object_mut() {
            o.remove("eventTime");
        }
        legacy["regarding"]["namespace"] = json!("other");
        let found = violations(&event_kind, &legacy);
        let fields: Vec<&str> = found.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["involvedObject.namespace"]);
    }

    #[test]
    fn an_events_fields_are_immutable_except_series_and_metadata() {
        let event_kind = kind("events.k8s.io", "Event");
        let old = event();
        let mut next = event();
        next["series"] = json!({"count": 2, "lastObservedTime": "2026-12-03T18:31:00.000000Z"});
        next["metadata"]["labels"] = json!({"a": "b"});
        next["related"] = json!({});
        next["deprecatedCount"] = json!(0);
        assert!(transition_violations(&event_kind, &old, &next).is_empty());
        next["note"] = json!("other");
        next["regarding"]["name"] = json!("vm-2");
        let found = transition_violations(&event_kind, &old, &next);
        let fields: Vec<&str> = found.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["involvedObject", "message"]);
        assert_eq!(
            found[1].message,
            "Invalid value: \"other\": field is immutable"
        );
        assert!(
            transition_violations(&kind("coordination.k8s.io", "Lease"), &old, &next).is_empty()
        );
    }

    #[test]
    fn bad_micro_times_are_decode_errors_named_by_field() {
        let mut lease = json!({"spec": {"renewTime": "2026-12-03T18:30:00Z", "acquireTime": "2026-12-03T18:30:00.000001Z"}});
        let found = decode_violations(&kind("coordination.k8s.io", "Lease"), &lease);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].field, "spec.renewTime");
        assert_eq!(found[0].reason, ViolationReason::Undecodable);
        assert!(
            found[0]
                .message
                .starts_with("parsing time \"2026-12-03T18:30:00Z\" as"),
            "{}",
            found[0].message
        );
        lease["spec"]["renewTime"] = json!("2026-12-03T18:30:00.000000Z");
        assert!(decode_violations(&kind("coordination.k8s.io", "Lease"), &lease).is_empty());
    }
}
