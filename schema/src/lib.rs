//! Validates Kubernetes objects (`serde_json::Value`) the way a real API server would, against
//! the real schemas: the CRDs of OVN-Kubernetes, frr-k8s and ipamclaims, KubeVirt's OpenAPI
//! definitions, and a few core kinds. Users: the harness's render tests (every rendered manifest
//! must validate) and the lab API server (422 Invalid with these violations).
//!
//! ```
//! use vmbgp_schema::{SchemaSet, Strictness};
//! let schemas = SchemaSet::embedded().expect("embedded schemas compile");
//! let ns = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "Bad_Name"}});
//! let err = schemas.validate(&ns, Strictness::Strict).unwrap_err();
//! assert_eq!(err.0[0].field, "metadata.name");
//! ```
//!
//! # What is checked
//! - `apiVersion`/`kind` must be a served kind ([`ViolationReason::UnknownKind`] otherwise;
//!   e.g. the Cluster-API group `ipam.cluster.x-k8s.io` is unknown).
//! - `metadata` by [`validate_object_meta`] (names, namespace, labels, annotations, finalizers,
//!   owner references); namespaces need RFC 1123 *label* names.
//! - The rest by the kind's schema, converted to JSON Schema (see the `convert` module) and
//!   compiled once, in [`SchemaSet::embedded`]: types, enums, patterns, ranges, required fields,
//!   `x-kubernetes-list-type` set/map uniqueness, formats `date-time`/`ipv4`/`ipv6`/`cidr`, and in
//!   [`Strictness::Strict`] unknown fields.
//! - CEL rules (`x-kubernetes-validations`) by hand-written Rust equivalents, matched by rule text.
//! - For the built-in `coordination.k8s.io/v1` Lease and `events.k8s.io/v1` Event, what
//!   kube-apiserver's own validation adds to their OpenAPI schemas (Lease spec ranges, an Event's
//!   reporting fields, type and namespace rules), and `MicroTime` decoding: Go accepts only
//!   `RFC3339Micro` (six fractional digits); anything else is [`ViolationReason::Undecodable`]
//!   (HTTP 400), reported alone as the server does.
//!
//! Not checked: immutability and other transition rules (need the old object; the lab API server
//! owns updates, with [`transition_violations`] for an Event's immutable fields), defaulting, and
//! webhooks (KubeVirt's virt-api admission, ipam-extensions).
//! A body's `status` is validated like the rest; a server with a status subresource drops it on
//! create before validating, so callers that emulate that should strip it first.
//!
//! # Using it in an API server (the lab)
//!
//! Per create/update body, after resolving the kind from the URL:
//! 1. [`SchemaSet::served_kind`] — `Err` means `404 NotFound` (`no matches for kind ...`).
//! 2. `fieldValidation=Strict` (kubectl's default): [`SchemaSet::validate`] with
//!    [`Strictness::Strict`]. `Ignore`/`Warn`: [`SchemaSet::prune`] (what a server stores), then
//!    `validate` with [`Strictness::Prune`]; with `Warn`, send one `Warning` header per removed
//!    path, worded by [`unknown_field_warning`].
//!    On create, [`SchemaSet::apply_defaults`] fills CRD defaults the way the server does.
//! 3. On `Err(violations)`: HTTP status [`Violations::http_status`] (400 for unknown fields,
//!    422 otherwise), `Status.message` from [`Violations::invalid_status_message`], and one
//!    `details.causes[]` entry per violation: `reason` = [`ViolationReason::as_str`],
//!    `field` = [`Violation::field`], `message` = [`Violation::message`] (Kubernetes puts the
//!    body there, without the field; the `Display` of a violation is the full line).
//!
//! # CEL rules
//!
//! Counts are per CRD file (all versions); the test `cel_rule_counts_match_the_doc_table`
//! keeps them true.
//!
//! | CRD | CEL rules | enforced here | not enforced |
//! |---|---|---|---|
//! | RouteAdvertisements | 7 | 7: `nodeSelector` must be `{}` (no `matchLabels`/`matchExpressions`) when `PodNetwork` is advertised; only `DefaultNetwork`/`ClusterUserDefinedNetworks` selections; each `*Selector` present exactly when its `networkSelectionType` is chosen (4 rules); `advertisements` items unique | — |
//! | ClusterUserDefinedNetwork | 90 | 78: topology ↔ `layer2`/`layer3`/`localnet` block; `NoOverlay`/`EVPN` transport rules and their `noOverlay`/`evpn` blocks; `uplinks` only for primary L2/L3 and not with EVPN; Layer2: subnets required unless `ipam.mode: Disabled` and forbidden when disabled, `Disabled` only for Secondary, `lifecycle: Persistent` needs ipam enabled, `joinSubnets`/`reservedSubnets`/`infrastructureSubnets`/`defaultGatewayIPs` only for Primary and only with subnets, gateways inside subnets (and infrastructureSubnets), one gateway per family, reserved/infrastructure subnets inside subnets, masked, not overlapping, MTU ≥ 1280 with IPv6, `isIP`/`isCIDR` items, two items of different families; Layer3: subnet count/family/overlap/duplicate/hostSubnet rules; Localnet: subnets vs ipam mode, `excludeSubnets` needs subnets, `physicalNetworkName` without `,`/`:`, VLAN access block; EVPN route-target syntax | 12 transition rules (update only): Layer2/Localnet/NoOverlay/Topology/Transport/uplinks/joinSubnets/mtu/role/hostSubnet immutable, "Removing existing subnets is not allowed", "Subnets is immutable for Secondary role" |
//! | UserDefinedNetwork | 49 | 41: the same Layer2/Layer3 and topology rules at `spec` | 8 transition rules (as above) |
//! | FRRConfiguration | 40 | 40: neighbor `connectTime` 1..65535 whole seconds; EVPN route-target / route-distinguisher syntax | — |
//! | FRRNodeState, BGPSessionState, IPAMClaim | 0 | — | — |
//!
//! Rules are matched by their exact (whitespace-normalised) text; the test
//! `every_embedded_cel_rule_is_enforced_or_a_transition_rule` fails when an upstream refresh adds
//! or rewrites a rule, so no rule is silently skipped. A rule without `message` reports
//! `failed rule: <rule>` as Kubernetes does; `fieldPath` and `reason` are honoured.
//! [`ra_controller_check`] adds what the RA controller (not admission) refuses: EgressIP
//! advertisement of a Layer2 network, non-primary and non-L2/L3 networks.

mod builtin_rules;
mod cel;
mod controller;
mod convert;
mod error;
mod keywords;
mod meta;
mod net;
mod prune;
mod sources;
mod violation;

use std::collections::HashMap;

use jsonschema::{Draft, PatternOptions, Validator};
use serde_json::Value;

pub use builtin_rules::transition_violations;
pub use controller::ra_controller_check;
pub use convert::Strictness;
pub use error::SchemaError;
pub use meta::{NameRule, validate_object_meta, validate_object_meta_with};
pub use sources::EMBEDDED_FILES;

/// The warning a real API server returns for a field it pruned (`unknown field \"spec.x\"`).
pub fn unknown_field_warning(field_path: &str) -> String {
    prune::unknown_field_warning(field_path)
}
pub use violation::{Violation, ViolationReason, Violations};

/// One served (or listed but unserved) kind: the shared kind facts, read from the embedded CRDs.
pub use vmbgp_model::KindInfo;

/// The facts of every embedded kind (served or not), sorted by group, version, kind, without
/// compiling a validator: what a server needs to route requests.
pub fn embedded_kinds() -> Result<Vec<KindInfo>, SchemaError> {
    let mut kinds: Vec<KindInfo> = sources::load_all()?
        .into_iter()
        .map(|kind| kind.info)
        .collect();
    kinds.sort();
    Ok(kinds)
}

/// A compiled kind.
struct KindEntry {
    info: KindInfo,
    name_rule: NameRule,
    /// Compiled from `schema`.
    validator: Validator,
    /// Whether `schema`'s `default`s are applied by [`SchemaSet::apply_defaults`].
    server_defaults: bool,
    /// The converted Strict schema, walked by [`SchemaSet::has_field`] and [`SchemaSet::prune`]
    /// (its `additionalProperties: false` marks exactly the objects the API server prunes).
    schema: Value,
}

/// Every known kind with its validators, compiled once. `Send + Sync`; share it with `Arc`.
pub struct SchemaSet {
    /// Sorted by (group, version, kind).
    entries: Vec<KindEntry>,
    /// apiVersion → kind → index into `entries`.
    index: HashMap<String, HashMap<String, usize>>,
}

impl std::fmt::Debug for SchemaSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaSet")
            .field("kinds", &self.entries.len())
            .finish()
    }
}

/// ObjectMeta fields a client may send; `has_field("...", "metadata.<x>")` answers from this list.
const OBJECT_META_FIELDS: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "labels",
    "annotations",
    "finalizers",
    "ownerReferences",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

fn compile(schema: &Value) -> Result<Validator, String> {
    jsonschema::options()
        // Draft 7: whole-number floats (`1400.0`) count as integers, as the API server's JSON
        // decoding and OpenAPI validation treat them; CRDs use no draft-4-only keyword form.
        .with_draft(Draft::Draft7)
        .should_validate_formats(true)
        .should_ignore_unknown_formats(true)
        .with_format("cidr", |text: &str| net::parse_cidr(text).is_some())
        // Kubernetes patterns are RE2: the linear-time `regex` engine matches their semantics.
        .with_pattern_options(PatternOptions::regex())
        .with_keyword("x-kubernetes-validations", keywords::cel_keyword_factory)
        .with_keyword(
            "x-kubernetes-list-type",
            keywords::list_type_keyword_factory,
        )
        .build(schema)
        .map_err(|error| error.to_string())
}

impl SchemaSet {
    /// Loads the embedded schema copies and compiles one validator per kind (the Strict schema;
    /// Prune mode prunes, then uses the same validator).
    pub fn embedded() -> Result<SchemaSet, SchemaError> {
        let mut raw = sources::load_all()?;
        raw.sort_by(|a, b| a.info.cmp(&b.info));
        let mut entries = Vec::with_capacity(raw.len());
        for kind in raw {
            let schema = kind.source.converted(Strictness::Strict);
            let server_defaults = kind.source.has_server_defaults();
            let validator = compile(&schema).map_err(|detail| SchemaError::CompileSchema {
                api_version: kind.info.api_version(),
                kind: kind.info.kind.clone(),
                detail,
            })?;
            entries.push(KindEntry {
                info: kind.info,
                name_rule: kind.name_rule,
                validator,
                server_defaults,
                schema,
            });
        }
        let mut index: HashMap<String, HashMap<String, usize>> = HashMap::new();
        for (position, entry) in entries.iter().enumerate() {
            index
                .entry(entry.info.api_version())
                .or_default()
                .insert(entry.info.kind.clone(), position);
        }
        Ok(SchemaSet { entries, index })
    }

    /// Every known kind (served or not), sorted by group, version, kind.
    pub fn kinds(&self) -> Vec<KindInfo> {
        self.entries
            .iter()
            .map(|entry| entry.info.clone())
            .collect()
    }

    fn entry(&self, api_version: &str, kind: &str) -> Option<&KindEntry> {
        let position = *self.index.get(api_version)?.get(kind)?;
        self.entries.get(position)
    }

    /// The kind for `apiVersion` (`k8s.ovn.org/v1`, `v1`) and `kind`, if known.
    pub fn lookup(&self, api_version: &str, kind: &str) -> Option<&KindInfo> {
        self.entry(api_version, kind).map(|entry| &entry.info)
    }

    /// Like [`lookup`](Self::lookup) but only for served kinds, with an error naming the kind.
    pub fn served_kind(&self, api_version: &str, kind: &str) -> Result<&KindInfo, SchemaError> {
        self.lookup(api_version, kind)
            .filter(|info| info.served)
            .ok_or_else(|| SchemaError::UnknownKind {
                api_version: api_version.to_string(),
                kind: kind.to_string(),
            })
    }

    /// Validates a whole object. All violations are returned, metadata first.
    ///
    /// [`Strictness::Prune`] behaves as the API server without strict field validation: unknown
    /// fields are pruned first (see [`prune`](Self::prune)), then the rest is validated, so a
    /// field emptied by pruning can still violate e.g. `minProperties`.
    pub fn validate(&self, obj: &Value, mode: Strictness) -> Result<(), Violations> {
        let entry = self.kind_of(obj)?;
        let found = self.check(entry, obj);
        let has_unknown = found
            .iter()
            .any(|v| v.reason == ViolationReason::UnknownField);
        if mode == Strictness::Prune && has_unknown {
            // Pruning removes exactly what Strict reported as unknown; re-check the pruned copy.
            let mut pruned = obj.clone();
            prune::prune_object(&entry.schema, &mut pruned, OBJECT_META_FIELDS);
            let rest: Vec<Violation> = self
                .check(entry, &pruned)
                .into_iter()
                .filter(|v| v.reason != ViolationReason::UnknownField)
                .collect();
            return if rest.is_empty() {
                Ok(())
            } else {
                Err(Violations(rest))
            };
        }
        if found.is_empty() {
            Ok(())
        } else {
            Err(Violations(found))
        }
    }

    /// The served kind an object names, or the violation a server answers instead.
    fn kind_of(&self, obj: &Value) -> Result<&KindEntry, Violations> {
        let Some(map) = obj.as_object() else {
            return Err(Violations(vec![Violation::new(
                "",
                ViolationReason::FieldValueTypeInvalid,
                format!(
                    "Invalid value: {}: object must be a JSON object",
                    violation::render_value(obj)
                ),
            )]));
        };
        let api_version = map
            .get("apiVersion")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty());
        let kind = map
            .get("kind")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty());
        let (Some(api_version), Some(kind)) = (api_version, kind) else {
            let mut missing = Vec::new();
            if api_version.is_none() {
                missing.push(Violation::required("apiVersion"));
            }
            if kind.is_none() {
                missing.push(Violation::required("kind"));
            }
            return Err(Violations(missing));
        };
        match self.entry(api_version, kind) {
            Some(entry) if entry.info.served => Ok(entry),
            _ => {
                let error = SchemaError::UnknownKind {
                    api_version: api_version.into(),
                    kind: kind.into(),
                };
                Err(Violations(vec![Violation::new(
                    "kind",
                    ViolationReason::UnknownKind,
                    error.to_string(),
                )]))
            }
        }
    }

    /// Every violation of `obj` under the Strict rules (unknown fields included).
    fn check(&self, entry: &KindEntry, obj: &Value) -> Vec<Violation> {
        let undecodable = builtin_rules::decode_violations(&entry.info, obj);
        if !undecodable.is_empty() {
            return undecodable;
        }
        let metadata = obj.get("metadata").filter(|m| !m.is_null());
        let mut out = match metadata {
            Some(meta) => {
                meta::validate_object_meta_with(meta, entry.info.namespaced, entry.name_rule)
            }
            None => vec![Violation::new(
                "metadata.name",
                ViolationReason::FieldValueRequired,
                "Required value: name or generateName is required",
            )],
        };
        if let Some(Value::Object(meta)) = metadata {
            for key in meta
                .keys()
                .filter(|key| !OBJECT_META_FIELDS.contains(&key.as_str()))
            {
                let field = format!("metadata.{key}");
                let message = format!("unknown field {}", violation::quote(&field));
                out.push(Violation::new(
                    field,
                    ViolationReason::UnknownField,
                    message,
                ));
            }
        }
        let shape = convert::shape(obj);
        if shape.depth > convert::MAX_NESTING {
            out.push(Violation::new(
                "",
                ViolationReason::FieldValueInvalid,
                format!(
                    "Invalid value: \"object\": nesting exceeds {} levels",
                    convert::MAX_NESTING
                ),
            ));
            return out;
        }
        let stripped = shape
            .has_null_member
            .then(|| convert::without_null_members(obj));
        let instance = stripped.as_ref().unwrap_or(obj);
        for error in entry.validator.iter_errors(instance) {
            out.extend(convert::map_error(&error, instance));
        }
        out.extend(builtin_rules::violations(&entry.info, instance));
        if shape.has_null_member {
            // Null members were removed before validation (the server prunes them), but an
            // undeclared field is unknown whatever its value: find those on the original.
            let mut probe = obj.clone();
            for field in prune::prune_object(&entry.schema, &mut probe, OBJECT_META_FIELDS) {
                let known = out
                    .iter()
                    .any(|v| v.reason == ViolationReason::UnknownField && v.field == field);
                if !known {
                    let message = format!("unknown field {}", violation::quote(&field));
                    out.push(Violation::new(
                        field,
                        ViolationReason::UnknownField,
                        message,
                    ));
                }
            }
        }
        out
    }

    /// Removes the fields the kind's schema does not declare, as the API server prunes custom
    /// resources (maps and `x-kubernetes-preserve-unknown-fields` subtrees are kept; unknown
    /// `metadata` fields are dropped). Returns the removed field paths, sorted; a server in
    /// `fieldValidation=Warn` mode reports each as [`unknown_field_warning`]. Validating the
    /// pruned object in either mode gives the verdict [`Strictness::Prune`] gives the original.
    pub fn prune(&self, obj: &mut Value) -> Result<Vec<String>, SchemaError> {
        let api_version = obj
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let kind = obj
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        match self.entry(&api_version, &kind) {
            Some(entry) if entry.info.served => {
                Ok(prune::prune_object(&entry.schema, obj, OBJECT_META_FIELDS))
            }
            _ => Err(SchemaError::UnknownKind { api_version, kind }),
        }
    }

    /// Applies the schema's defaults as the API server does on create (structural defaulting of
    /// custom resources: an absent or null field with a `default` inside a present object gets
    /// it; e.g. FRRConfiguration `toReceive.allowed.mode: filtered`). Returns the defaulted
    /// paths, sorted. KubeVirt and core kinds have no schema defaults here (empty result).
    pub fn apply_defaults(&self, obj: &mut Value) -> Result<Vec<String>, SchemaError> {
        let api_version = obj
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let kind = obj
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        match self.entry(&api_version, &kind) {
            Some(entry) if entry.info.served => {
                if entry.server_defaults && convert::shape(obj).depth <= convert::MAX_NESTING {
                    Ok(prune::default_object(&entry.schema, obj))
                } else {
                    Ok(Vec::new())
                }
            }
            _ => Err(SchemaError::UnknownKind { api_version, kind }),
        }
    }

    /// Whether the kind's schema declares the field at `dotted_path`
    /// (`spec.network.layer2.ipam.lifecycle`). List items are stepped through transparently
    /// (`spec.template.spec.domain.devices.interfaces.binding`; `[0]`/`[]` suffixes are ignored).
    /// Map keys and preserved-unknown fields are not declared fields. Unknown kinds give `false`.
    pub fn has_field(&self, api_version: &str, kind: &str, dotted_path: &str) -> bool {
        let Some(entry) = self.entry(api_version, kind) else {
            return false;
        };
        let segments: Vec<&str> = dotted_path
            .split('.')
            .map(|s| s.split_once('[').map_or(s, |(name, _)| name))
            .collect();
        if segments.iter().any(|s| s.is_empty()) {
            return false;
        }
        if segments[0] == "metadata" {
            return match segments.as_slice() {
                ["metadata"] => true,
                ["metadata", field] => OBJECT_META_FIELDS.contains(field),
                _ => false,
            };
        }
        let root = &entry.schema;
        let mut node = root;
        for segment in segments {
            node = prune::resolve(root, node);
            if node.get("properties").is_none()
                && let Some(items) = node.get("items")
            {
                node = prune::resolve(root, items);
            }
            match node.get("properties").and_then(|p| p.get(segment)) {
                Some(child) => node = child,
                None => return false,
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn schema_set_is_send_and_sync() {
        assert_send_sync::<SchemaSet>();
    }

    #[test]
    fn cel_rule_counts_match_the_doc_table() {
        // (file, total, transition) as stated in the crate docs.
        let expected = [
            ("frrk8s.metallb.io_frrconfigurations.yaml", 40, 0),
            ("k8s.ovn.org_clusteruserdefinednetworks.yaml", 90, 12),
            ("k8s.ovn.org_routeadvertisements.yaml", 7, 0),
            ("k8s.ovn.org_userdefinednetworks.yaml", 49, 8),
            ("frrk8s.metallb.io_bgpsessionstates.yaml", 0, 0),
            ("frrk8s.metallb.io_frrnodestates.yaml", 0, 0),
            ("k8s.cni.cncf.io_ipamclaims.yaml", 0, 0),
        ];
        for (file, total, transition) in expected {
            let content = EMBEDDED_FILES
                .iter()
                .find(|(name, _)| *name == file)
                .map(|(_, c)| *c)
                .expect("embedded");
            let document: Value = serde_saphyr::from_str(content).expect("yaml");
            let rules = cel::all_rules(&document);
            assert_eq!(rules.len(), total, "{file}: total rules");
            assert_eq!(
                rules.iter().filter(|r| cel::is_transition_rule(r)).count(),
                transition,
                "{file}: transition"
            );
        }
    }

    #[test]
    fn every_embedded_cel_rule_is_enforced_or_a_transition_rule() {
        let mut missing = Vec::new();
        for kind in sources::load_all().expect("embedded schemas load") {
            for document in kind.source.documents() {
                cel::unenforced_rules(document, &mut missing);
            }
        }
        assert!(
            missing.is_empty(),
            "CEL rules without a Rust equivalent: {missing:#?}"
        );
    }
}
