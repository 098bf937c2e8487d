//! Hand-written Rust equivalents of the CRDs' CEL rules (`x-kubernetes-validations`), keyed by
//! the exact rule text, and the `x-kubernetes-validations` keyword that applies them.
//!
//! Matching by rule text (whitespace-normalised) keeps the link to the CRD explicit: a rule whose
//! text changes upstream is no longer matched, shows up in [`unenforced_rules`] and fails the
//! crate's coverage test instead of being silently mis-evaluated. Transition rules (those that
//! mention `oldSelf`) only run on update in Kubernetes; this crate validates single objects, so
//! they are never enforced here.
//!
//! Each check returns `Some(true)` (rule holds), `Some(false)` (rule fails, or would fail to
//! evaluate, which a real server also reports as invalid) or `None` when the value has a shape the
//! rule cannot apply to; the schema's type checks already report that case.

mod predicates;
mod rules;

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::Value;

use rules::RULES;

/// A Rust check standing in for one CEL rule.
pub(crate) type RuleCheck = fn(&Value) -> Option<bool>;

/// Whitespace-normalised rule text (YAML folding splits long rules over lines).
pub(crate) fn normalize_rule(rule: &str) -> String {
    rule.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// True for transition rules, which Kubernetes evaluates only on update.
pub(crate) fn is_transition_rule(rule: &str) -> bool {
    rule.contains("oldSelf")
}

/// The rule table: normalised CEL text → Rust check.
pub(crate) fn rule_table() -> &'static HashMap<String, RuleCheck> {
    static TABLE: OnceLock<HashMap<String, RuleCheck>> = OnceLock::new();
    TABLE.get_or_init(|| {
        RULES
            .iter()
            .map(|(text, check)| (normalize_rule(text), *check))
            .collect()
    })
}

/// One `x-kubernetes-validations` entry prepared for evaluation.
#[derive(Debug, Clone)]
pub(crate) struct PreparedRule {
    pub(crate) check: RuleCheck,
    pub(crate) message: String,
    pub(crate) field_path: String,
    pub(crate) reason: Option<String>,
}

/// Prepares the enforced rules of one `x-kubernetes-validations` list; transition rules and
/// rules without a Rust equivalent are left out (see [`unenforced_rules`]).
pub(crate) fn prepare_rules(list: &Value) -> Vec<PreparedRule> {
    let Some(items) = list.as_array() else {
        return Vec::new();
    };
    let table = rule_table();
    items
        .iter()
        .filter_map(|item| {
            let rule = item.get("rule")?.as_str()?;
            if is_transition_rule(rule) {
                return None;
            }
            let normalized = normalize_rule(rule);
            let check = *table.get(&normalized)?;
            let message = match item.get("message").and_then(Value::as_str) {
                Some(message) => message.to_string(),
                None => format!("failed rule: {normalized}"),
            };
            Some(PreparedRule {
                check,
                message,
                field_path: item
                    .get("fieldPath")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                reason: item
                    .get("reason")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            })
        })
        .collect()
}

/// Every rule text in a schema document, in document order.
#[cfg(test)]
pub(crate) fn all_rules(schema: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut pending = vec![schema];
    while let Some(node) = pending.pop() {
        match node {
            Value::Object(map) => {
                if let Some(Value::Array(items)) = map.get("x-kubernetes-validations") {
                    out.extend(
                        items
                            .iter()
                            .filter_map(|i| i.get("rule").and_then(Value::as_str))
                            .map(normalize_rule),
                    );
                }
                pending.extend(map.values());
            }
            Value::Array(items) => pending.extend(items),
            _ => {}
        }
    }
    out
}

/// Non-transition rules in a schema document that have no Rust equivalent (expected: none).
#[cfg(test)]
pub(crate) fn unenforced_rules(schema: &Value, out: &mut Vec<String>) {
    match schema {
        Value::Object(map) => {
            if let Some(Value::Array(items)) = map.get("x-kubernetes-validations") {
                for item in items {
                    if let Some(rule) = item.get("rule").and_then(Value::as_str)
                        && !is_transition_rule(rule)
                        && !rule_table().contains_key(&normalize_rule(rule))
                    {
                        out.push(normalize_rule(rule));
                    }
                }
            }
            for value in map.values() {
                unenforced_rules(value, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| unenforced_rules(item, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(rule: &str, value: Value) -> Option<bool> {
        let table = rule_table();
        let check = table
            .get(&normalize_rule(rule))
            .expect("rule is in the table");
        check(&value)
    }

    #[test]
    fn every_table_entry_is_unique_after_normalisation() {
        assert_eq!(rule_table().len(), RULES.len());
    }

    #[test]
    fn layer2_subnets_required_unless_ipam_disabled() {
        let rule = "has(self.ipam) && has(self.ipam.mode) && self.ipam.mode != 'Enabled' || has(self.subnets)";
        assert_eq!(check(rule, json!({"role": "Primary"})), Some(false));
        assert_eq!(
            check(rule, json!({"role": "Primary", "subnets": ["10.0.0.0/16"]})),
            Some(true)
        );
        assert_eq!(
            check(
                rule,
                json!({"role": "Secondary", "ipam": {"mode": "Disabled"}})
            ),
            Some(true)
        );
    }

    #[test]
    fn reserved_subnets_must_sit_inside_subnets() {
        let rule = "!has(self.reservedSubnets) || self.reservedSubnets.all(e, self.subnets.exists(s, cidr(s).containsCIDR(cidr(e))))";
        let inside = json!({"subnets": ["10.200.0.0/16"], "reservedSubnets": ["10.200.255.0/24"]});
        let outside = json!({"subnets": ["10.200.0.0/16"], "reservedSubnets": ["10.201.0.0/24"]});
        assert_eq!(check(rule, inside), Some(true));
        assert_eq!(check(rule, outside), Some(false));
    }

    #[test]
    fn route_target_rules() {
        let colon = "self.split(':').size() == 2";
        assert_eq!(check(colon, json!("65000:100")), Some(true));
        assert_eq!(check(colon, json!("65000")), Some(false));
        let four_byte = "self.split(':').size() != 2 || self.startsWith('*:') || self.split(':')[0].contains('.') || !self.split(':')[0].matches('^[0-9]+$') || !self.split(':')[1].matches('^[0-9]+$') || uint(self.split(':')[0]) <= 65535u || uint(self.split(':')[1]) <= 65535u";
        assert_eq!(check(four_byte, json!("4200000000:100")), Some(true));
        assert_eq!(check(four_byte, json!("4200000000:70000")), Some(false));
        assert_eq!(
            check(four_byte, json!("*:70000")),
            Some(true),
            "wildcard skipped"
        );
        // CEL's `||` is commutative over errors: a true side wins over a `uint()` that overflows,
        // wherever it stands; with no true side the error fails the rule.
        assert_eq!(
            check(four_byte, json!("99999999999999999999:100")),
            Some(true)
        );
        assert_eq!(
            check(four_byte, json!("100:99999999999999999999")),
            Some(true)
        );
        assert_eq!(
            check(four_byte, json!("99999999999999999999:70000")),
            Some(false)
        );
        let frr_unanchored = "self.split(':').size() != 2 || self.split(':')[0].contains('.') || !self.split(':')[0].matches('[0-9]+') || !self.split(':')[1].matches('[0-9]+') || uint(self.split(':')[0]) > 65535u || uint(self.split(':')[1]) <= 4294967295u";
        assert_eq!(check(frr_unanchored, json!("100:5000000000")), Some(false));
        assert_eq!(check(frr_unanchored, json!("70000:5000000000")), Some(true));
        // '[0-9]+' is a search: "a1" passes the pattern, then `uint("a1")` is an error.
        assert_eq!(check(frr_unanchored, json!("a1:5")), Some(true));
        assert_eq!(check(frr_unanchored, json!("1:a5")), Some(false));
        assert_eq!(
            check(frr_unanchored, json!("*:5")),
            Some(true),
            "'*' has no digit"
        );
        assert_eq!(
            check(frr_unanchored, json!("x:y")),
            Some(true),
            "no digit: skipped"
        );
    }

    #[test]
    fn connect_time_rules() {
        let range = "duration(self).getSeconds() >= 1 && duration(self).getSeconds() <= 65535";
        let whole = "duration(self).getMilliseconds() % 1000 == 0";
        assert_eq!(check(range, json!("5s")), Some(true));
        assert_eq!(check(range, json!("500ms")), Some(false));
        assert_eq!(check(whole, json!("1500ms")), Some(false));
        assert_eq!(check(whole, json!("2s")), Some(true));
    }
}
