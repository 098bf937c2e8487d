//! Server-side printing: renders objects as the `meta.k8s.io` Table that `kubectl get` asks for, as kube-apiserver
//! does. Nodes and Namespaces use kube-apiserver's built-in printers (`pkg/printers/internalversion/printers.go`);
//! every other kind is a CRD on a real cluster and uses apiextensions-apiserver's table convertor with the CRD's
//! `additionalPrinterColumns` (or its default `Age` column), taken from the embedded CRDs and, for KubeVirt (whose
//! CRDs the virt-operator generates), from `pkg/virt-operator/resource/generate/components/crds.go`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::registry::{KindId, Registry, ResourceKind};

const NAME_DESCRIPTION: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const CREATION_TIMESTAMP_DESCRIPTION: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

/// `(name, type, jsonPath, description, priority)` of KubeVirt's printer columns (crds.go).
type KubeVirtColumn = (&'static str, &'static str, &'static str, &'static str, i64);
const KUBEVIRT_COLUMNS: [(&str, &[KubeVirtColumn]); 3] = [
    (
        "VirtualMachine",
        &[
            ("Age", "date", ".metadata.creationTimestamp", "", 0),
            (
                "Status",
                "string",
                ".status.printableStatus",
                "Human Readable Status",
                0,
            ),
            (
                "Ready",
                "string",
                ".status.conditions[?(@.type=='Ready')].status",
                "",
                0,
            ),
        ],
    ),
    (
        "VirtualMachineInstance",
        &[
            ("Age", "date", ".metadata.creationTimestamp", "", 0),
            ("Phase", "string", ".status.phase", "", 0),
            ("IP", "string", ".status.interfaces[0].ipAddress", "", 0),
            ("NodeName", "string", ".status.nodeName", "", 0),
            (
                "Ready",
                "string",
                ".status.conditions[?(@.type=='Ready')].status",
                "",
                0,
            ),
            (
                "Live-Migratable",
                "string",
                ".status.conditions[?(@.type=='LiveMigratable')].status",
                "",
                1,
            ),
            (
                "Paused",
                "string",
                ".status.conditions[?(@.type=='Paused')].status",
                "",
                1,
            ),
        ],
    ),
    (
        "VirtualMachineInstanceMigration",
        &[
            (
                "Phase",
                "string",
                ".status.phase",
                "The current phase of VM instance migration",
                0,
            ),
            (
                "VMI",
                "string",
                ".spec.vmiName",
                "The name of the VMI to perform the migration on",
                0,
            ),
        ],
    ),
];

/// The Table API version a client accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableVersion {
    V1,
    V1beta1,
}

impl TableVersion {
    fn api_version(self) -> &'static str {
        match self {
            TableVersion::V1 => "meta.k8s.io/v1",
            TableVersion::V1beta1 => "meta.k8s.io/v1beta1",
        }
    }

    /// The response's `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            TableVersion::V1 => "application/json;as=Table;v=v1;g=meta.k8s.io",
            TableVersion::V1beta1 => "application/json;as=Table;v=v1beta1;g=meta.k8s.io",
        }
    }
}

/// What each row carries besides its cells (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncludeObject {
    None,
    /// The default: a `PartialObjectMetadata`.
    #[default]
    Metadata,
    Object,
}

impl IncludeObject {
    /// Parses the `includeObject` query parameter (absent or empty is `Metadata`).
    pub fn parse(value: Option<&str>) -> Result<IncludeObject, String> {
        match value.unwrap_or_default() {
            "" | "Metadata" => Ok(IncludeObject::Metadata),
            "None" => Ok(IncludeObject::None),
            "Object" => Ok(IncludeObject::Object),
            other => Err(format!("unrecognized includeObject value: {other:?}")),
        }
    }
}

/// The Table version the `Accept` header prefers over plain JSON, if any (media ranges by descending `q`, then
/// in the order given; ranges the server cannot produce are skipped, and none at all means plain JSON).
pub fn negotiate(accept: &str) -> Option<TableVersion> {
    crate::accept::preferred_variant(accept, |g, v, as_| match (g, v, as_) {
        (None, None, None) => Some(None),
        (Some("meta.k8s.io"), Some("v1"), Some("Table")) => Some(Some(TableVersion::V1)),
        (Some("meta.k8s.io"), Some("v1beta1"), Some("Table")) => Some(Some(TableVersion::V1beta1)),
        _ => None,
    })
}

/// How a Table is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableOptions {
    pub version: TableVersion,
    pub include: IncludeObject,
}

/// One `TableColumnDefinition`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ColumnDefinition {
    pub name: String,
    #[serde(rename = "type")]
    pub type_: String,
    pub format: String,
    pub description: String,
    pub priority: i64,
}

fn column(
    name: &str,
    type_: &str,
    format: &str,
    description: &str,
    priority: i64,
) -> ColumnDefinition {
    ColumnDefinition {
        name: name.to_string(),
        type_: type_.to_string(),
        format: format.to_string(),
        description: description.to_string(),
        priority,
    }
}

/// A CRD column: its definition and the parsed `jsonPath` (`None` when it does not parse: always empty).
#[derive(Debug, Clone)]
struct CrdColumn {
    definition: ColumnDefinition,
    path: Option<JsonPath>,
}

#[derive(Debug, Clone)]
enum Printer {
    Node,
    Namespace,
    Crd(Vec<CrdColumn>),
}

/// The printer of every served kind, indexed by [`KindId`].
#[derive(Debug)]
pub struct Printers {
    printers: Vec<Printer>,
}

impl Printers {
    /// The printers of `registry`'s kinds.
    pub fn build(registry: &Registry) -> Printers {
        let crd_columns = embedded_crd_columns();
        let printers = registry
            .kinds()
            .iter()
            .map(|k| match (k.group.as_str(), k.kind.as_str()) {
                ("", "Node") => Printer::Node,
                ("", "Namespace") => Printer::Namespace,
                _ => Printer::Crd(crd_printer(k, &crd_columns)),
            })
            .collect();
        Printers { printers }
    }

    /// The column definitions of a kind (empty for an unknown id).
    pub fn columns(&self, kind: KindId) -> Vec<ColumnDefinition> {
        match self.printers.get(kind) {
            Some(Printer::Node) => node_columns(),
            Some(Printer::Namespace) => namespace_columns(),
            Some(Printer::Crd(cols)) => {
                let mut out = vec![name_column()];
                out.extend(cols.iter().map(|c| c.definition.clone()));
                out
            }
            None => Vec::new(),
        }
    }

    /// A Table of a list: `list_metadata` is the list's (resourceVersion, continue, remainingItemCount).
    pub fn list(
        &self,
        kind: KindId,
        items: &[Value],
        list_metadata: Value,
        opts: TableOptions,
    ) -> Value {
        let now = Utc::now();
        let rows: Vec<Value> = items.iter().map(|o| self.row(kind, o, opts, now)).collect();
        self.table(kind, rows, list_metadata, opts, true)
    }

    /// A Table of one object; `headers` is false for every watch event but the first, as kube-apiserver does.
    pub fn object(&self, kind: KindId, object: &Value, opts: TableOptions, headers: bool) -> Value {
        let mut meta = Map::new();
        if let Some(rv) = object.pointer("/metadata/resourceVersion") {
            meta.insert("resourceVersion".to_string(), rv.clone());
        }
        let rows = vec![self.row(kind, object, opts, Utc::now())];
        self.table(kind, rows, Value::Object(meta), opts, headers)
    }

    fn table(
        &self,
        kind: KindId,
        rows: Vec<Value>,
        metadata: Value,
        opts: TableOptions,
        headers: bool,
    ) -> Value {
        let columns = if headers {
            serde_json::to_value(self.columns(kind)).unwrap_or(Value::Null)
        } else {
            Value::Null
        };
        json!({
            "kind": "Table",
            "apiVersion": opts.version.api_version(),
            "metadata": metadata,
            "columnDefinitions": columns,
            "rows": rows,
        })
    }

    fn row(&self, kind: KindId, object: &Value, opts: TableOptions, now: DateTime<Utc>) -> Value {
        let cells = match self.printers.get(kind) {
            Some(Printer::Node) => node_cells(object, now),
            Some(Printer::Namespace) => vec![
                json!(str_at(object, "/metadata/name")),
                json!(str_at(object, "/status/phase")),
                json!(age(object, now)),
            ],
            Some(Printer::Crd(cols)) => {
                let mut cells = vec![json!(str_at(object, "/metadata/name"))];
                cells.extend(cols.iter().map(|c| crd_cell(c, object, now)));
                cells
            }
            None => Vec::new(),
        };
        let mut row = json!({"cells": cells});
        match opts.include {
            IncludeObject::None => {}
            IncludeObject::Metadata => {
                row["object"] = json!({
                    "kind": "PartialObjectMetadata",
                    "apiVersion": opts.version.api_version(),
                    "metadata": object.get("metadata").cloned().unwrap_or_else(|| json!({})),
                });
            }
            IncludeObject::Object => row["object"] = object.clone(),
        }
        row
    }
}

fn name_column() -> ColumnDefinition {
    column("Name", "string", "name", NAME_DESCRIPTION, 0)
}

fn age_column() -> ColumnDefinition {
    column("Age", "string", "", CREATION_TIMESTAMP_DESCRIPTION, 0)
}

fn node_columns() -> Vec<ColumnDefinition> {
    let addresses = "List of addresses reachable to the node. Queried from cloud provider, if available. More info: https://kubernetes.io/docs/reference/node/node-status/#addresses Note: This field is declared as mergeable, but the merge key is not sufficiently unique, which can cause data corruption when it is merged. Callers should instead use a full-replacement patch. See https://pr.k8s.io/79391 for an example. Consumers should assume that addresses can change during the lifetime of a Node. However, there are some exceptions where this may not be possible, such as Pods that inherit a Node's address in its own status or consumers of the downward API (status.hostIP).";
    vec![
        name_column(),
        column("Status", "string", "", "The status of the node", 0),
        column("Roles", "string", "", "The roles of the node", 0),
        age_column(),
        column(
            "Version",
            "string",
            "",
            "Kubelet Version reported by the node.",
            0,
        ),
        column("Internal-IP", "string", "", addresses, 1),
        column("External-IP", "string", "", addresses, 1),
        column(
            "OS-Image",
            "string",
            "",
            "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
            1,
        ),
        column(
            "Kernel-Version",
            "string",
            "",
            "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
            1,
        ),
        column(
            "Container-Runtime",
            "string",
            "",
            "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
            1,
        ),
    ]
}

fn namespace_columns() -> Vec<ColumnDefinition> {
    vec![
        name_column(),
        column("Status", "string", "", "The status of the namespace", 0),
        age_column(),
    ]
}

fn str_at<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// `translateTimestampSince(creationTimestamp)`.
fn age(object: &Value, now: DateTime<Utc>) -> String {
    match parse_time(str_at(object, "/metadata/creationTimestamp")) {
        Some(t) => human_duration(now.signed_duration_since(t)),
        None => "<unknown>".to_string(),
    }
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// `printNode`: Ready → `Ready`/`NotReady` (no condition: `Unknown`), then `SchedulingDisabled`; roles from the
/// `node-role.kubernetes.io/<role>` and `kubernetes.io/role` labels; the wide columns' fallbacks.
fn node_cells(node: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let conditions = node
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut status: Vec<&str> = conditions
        .iter()
        .rfind(|c| c["type"] == "Ready")
        .map(|c| {
            if c["status"] == "True" {
                "Ready"
            } else {
                "NotReady"
            }
        })
        .into_iter()
        .collect();
    if status.is_empty() {
        status.push("Unknown");
    }
    if node.pointer("/spec/unschedulable") == Some(&Value::Bool(true)) {
        status.push("SchedulingDisabled");
    }
    let mut roles: Vec<&str> = node
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| match k.strip_prefix("node-role.kubernetes.io/") {
            Some(role) if !role.is_empty() => Some(role),
            Some(_) => None,
            None if k == "kubernetes.io/role" => v.as_str().filter(|r| !r.is_empty()),
            None => None,
        })
        .collect();
    roles.sort_unstable();
    roles.dedup();
    let roles = if roles.is_empty() {
        "<none>".to_string()
    } else {
        roles.join(",")
    };
    let address = |type_: &str| {
        node.pointer("/status/addresses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|a| a["type"] == type_)
            .and_then(|a| a["address"].as_str())
            .unwrap_or("<none>")
            .to_string()
    };
    let info = |field: &str| {
        let v = str_at(node, &format!("/status/nodeInfo/{field}"));
        if v.is_empty() { "<unknown>" } else { v }.to_string()
    };
    vec![
        json!(str_at(node, "/metadata/name")),
        json!(status.join(",")),
        json!(roles),
        json!(age(node, now)),
        json!(str_at(node, "/status/nodeInfo/kubeletVersion")),
        json!(address("InternalIP")),
        json!(address("ExternalIP")),
        json!(info("osImage")),
        json!(info("kernelVersion")),
        json!(info("containerRuntimeVersion")),
    ]
}

/// (group, version, kind) → the CRD's `additionalPrinterColumns`, from the embedded CRDs.
fn embedded_crd_columns() -> BTreeMap<(String, String, String), Vec<Value>> {
    let mut out = BTreeMap::new();
    for (_, content) in vmbgp_schema::EMBEDDED_FILES {
        let Ok(crd) = serde_saphyr::from_str::<Value>(content) else {
            continue;
        };
        if crd.get("kind").and_then(Value::as_str) != Some("CustomResourceDefinition") {
            continue;
        }
        let group = str_at(&crd, "/spec/group");
        let kind = str_at(&crd, "/spec/names/kind");
        for v in crd
            .pointer("/spec/versions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let columns = v
                .get("additionalPrinterColumns")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            out.insert(
                (
                    group.to_string(),
                    str_at(v, "/name").to_string(),
                    kind.to_string(),
                ),
                columns,
            );
        }
    }
    out
}

/// The CRD convertor's columns for `k` (after `Name`); a CRD without columns gets `Age`
/// (`serveDefaultColumnsIfEmpty`).
fn crd_printer(
    k: &ResourceKind,
    embedded: &BTreeMap<(String, String, String), Vec<Value>>,
) -> Vec<CrdColumn> {
    let kubevirt = (k.group == "kubevirt.io" && k.version == "v1")
        .then(|| KUBEVIRT_COLUMNS.iter().find(|(kind, _)| *kind == k.kind))
        .flatten()
        .map(|(_, cols)| {
            cols.iter()
                .map(|(name, type_, path, description, priority)| {
                    json!({"name": name, "type": type_, "jsonPath": path, "description": description, "priority": priority})
                })
                .collect::<Vec<Value>>()
        });
    let mut defs = kubevirt
        .or_else(|| {
            embedded
                .get(&(k.group.clone(), k.version.clone(), k.kind.clone()))
                .cloned()
        })
        .unwrap_or_default();
    if defs.is_empty() {
        defs.push(
            json!({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp",
            "description": CREATION_TIMESTAMP_DESCRIPTION}),
        );
    }
    defs.iter()
        .map(|d| {
            let path = str_at(d, "/jsonPath");
            let description = match str_at(d, "/description") {
                "" => format!("Custom resource definition column (in JSONPath format): {path}"),
                given => given.to_string(),
            };
            CrdColumn {
                definition: ColumnDefinition {
                    name: str_at(d, "/name").to_string(),
                    type_: str_at(d, "/type").to_string(),
                    format: str_at(d, "/format").to_string(),
                    description,
                    priority: d.get("priority").and_then(Value::as_i64).unwrap_or(0),
                },
                path: JsonPath::parse(path).ok(),
            }
        })
        .collect()
}

/// One CRD cell, as apiextensions' `cellForJSONValue` (and jsonpath printing for `string` columns) makes it.
fn crd_cell(c: &CrdColumn, object: &Value, now: DateTime<Utc>) -> Value {
    let Some(value) = c.path.as_ref().and_then(|p| p.first(object)) else {
        return Value::Null;
    };
    match (c.definition.type_.as_str(), value) {
        ("string", v) => Value::String(print_value(v)),
        (_, Value::Null) => Value::Null,
        ("integer", Value::Number(n)) => match n.as_i64() {
            Some(i) => json!(i),
            // Go converts a float with int64(f), which truncates.
            None => json!(n.as_f64().unwrap_or_default() as i64),
        },
        ("number", Value::Number(n)) => json!(n.as_f64()),
        ("boolean", Value::Bool(b)) => json!(b),
        ("date", Value::String(s)) if s.is_empty() || s == "null" => json!("<unknown>"),
        ("date", Value::String(s)) => match parse_time(s) {
            Some(t) => json!(human_duration(now.signed_duration_since(t))),
            None => json!("<invalid>"),
        },
        _ => Value::Null,
    }
}

/// client-go jsonpath's text for one result: strings as they are, maps and arrays as compact JSON (Go sorts map
/// keys and escapes `<`, `>`, `&`), other scalars as Go's `fmt.Print` does, null as `<no value>`.
fn print_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "<no value>".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(_) | Value::Object(_) => serde_json::to_string(&sorted(v))
            .unwrap_or_default()
            .replace('<', "\\u003c")
            .replace('>', "\\u003e")
            .replace('&', "\\u0026"),
    }
}

fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let ordered: BTreeMap<&String, Value> = m.iter().map(|(k, v)| (k, sorted(v))).collect();
            Value::Object(ordered.into_iter().map(|(k, v)| (k.clone(), v)).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// apimachinery's `duration.HumanDuration`: about two significant figures.
pub fn human_duration(d: chrono::Duration) -> String {
    let seconds = d.num_seconds();
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    if seconds < 0 {
        return "0s".to_string();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        return match seconds % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        return match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        return match hours % 24 {
            0 => format!("{}d", hours / 24),
            h => format!("{}d{h}h", hours / 24),
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        return match (hours / 24) % 365 {
            0 => format!("{}y", hours / 24 / 365),
            dy => format!("{}y{dy}d", hours / 24 / 365),
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// The JSONPath subset CRD printer columns use: `.field`, `['field']`, `[n]` (negative from the end), `[*]` and
/// `[?(@.a.b == literal)]` (also `!=`, or bare `@.a.b` for presence). Missing keys yield no result, as with
/// client-go's `AllowMissingKeys(true)`.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonPath(Vec<Step>);

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Field(String),
    Index(i64),
    All,
    Filter(Filter),
}

#[derive(Debug, Clone, PartialEq)]
struct Filter {
    path: Vec<String>,
    /// `None`: the path only has to exist.
    compare: Option<(bool, Value)>,
}

impl JsonPath {
    /// Parses a path such as `.status.conditions[?(@.type=='Ready')].status` (optionally wrapped in `{}`).
    pub fn parse(text: &str) -> Result<JsonPath, String> {
        let text = text.trim();
        let text = text
            .strip_prefix('{')
            .and_then(|t| t.strip_suffix('}'))
            .unwrap_or(text)
            .trim();
        let text = text.strip_prefix('$').unwrap_or(text);
        let chars: Vec<char> = text.chars().collect();
        let mut steps = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '.' => {
                    let start = i + 1;
                    let mut end = start;
                    while end < chars.len() && chars[end] != '.' && chars[end] != '[' {
                        end += 1;
                    }
                    if end == start {
                        // `..` (recursive descent) is not simple; a trailing `.` means the current value.
                        if end < chars.len() && chars[end] == '.' {
                            return Err(format!("unsupported recursive descent in {text:?}"));
                        }
                    } else {
                        steps.push(Step::Field(chars[start..end].iter().collect()));
                    }
                    i = end;
                }
                '[' => {
                    let close = matching_bracket(&chars, i)
                        .ok_or_else(|| format!("unclosed [ in {text:?}"))?;
                    let inner: String = chars[i + 1..close].iter().collect();
                    steps.push(parse_bracket(inner.trim())?);
                    i = close + 1;
                }
                c => return Err(format!("unexpected {c:?} in {text:?}")),
            }
        }
        Ok(JsonPath(steps))
    }

    /// The first result, as the CRD convertor uses.
    pub fn first<'a>(&self, root: &'a Value) -> Option<&'a Value> {
        let mut current = vec![root];
        for step in &self.0 {
            let mut next = Vec::new();
            for v in current {
                match (step, v) {
                    (Step::Field(f), Value::Object(m)) => next.extend(m.get(f)),
                    (Step::Index(n), Value::Array(a)) => {
                        let idx = if *n < 0 { a.len() as i64 + n } else { *n };
                        if let Ok(idx) = usize::try_from(idx) {
                            next.extend(a.get(idx));
                        }
                    }
                    (Step::All, Value::Array(a)) => next.extend(a.iter()),
                    (Step::All, Value::Object(m)) => next.extend(m.values()),
                    (Step::Filter(f), Value::Array(a)) => {
                        next.extend(a.iter().filter(|e| f.matches(e)));
                    }
                    _ => {}
                }
            }
            current = next;
        }
        current.into_iter().next()
    }
}

impl Filter {
    fn matches(&self, element: &Value) -> bool {
        let mut v = Some(element);
        for f in &self.path {
            v = v.and_then(|x| x.get(f));
        }
        match (&self.compare, v) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some((equal, literal)), Some(found)) => {
                (found == literal || same_number(found, literal)) == *equal
            }
        }
    }
}

fn same_number(a: &Value, b: &Value) -> bool {
    matches!((a.as_f64(), b.as_f64()), (Some(x), Some(y)) if x == y)
}

/// The `]` closing the `[` at `open`, skipping brackets and quotes inside filters.
fn matching_bracket(chars: &[char], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    for (i, &c) in chars.iter().enumerate().skip(open) {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '[') => depth += 1,
            (None, ']') => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

fn parse_bracket(inner: &str) -> Result<Step, String> {
    if inner == "*" {
        return Ok(Step::All);
    }
    if let Some(name) = unquote(inner) {
        return Ok(Step::Field(name));
    }
    if let Ok(n) = inner.parse::<i64>() {
        return Ok(Step::Index(n));
    }
    let Some(expr) = inner
        .strip_prefix("?(")
        .and_then(|e| e.strip_suffix(')'))
        .map(str::trim)
    else {
        return Err(format!("unsupported [{inner}]"));
    };
    let (lhs, compare) = match expr.find("==").or_else(|| expr.find("!=")) {
        Some(at) => {
            let equal = &expr[at..at + 2] == "==";
            let literal = expr[at + 2..].trim();
            let value = match unquote(literal) {
                Some(s) => Value::String(s),
                None => serde_json::from_str::<Value>(literal)
                    .ok()
                    .filter(|v| v.is_number() || v.is_boolean())
                    .ok_or_else(|| format!("unsupported literal {literal:?}"))?,
            };
            (expr[..at].trim(), Some((equal, value)))
        }
        None => (expr, None),
    };
    let path = lhs
        .strip_prefix('@')
        .ok_or_else(|| format!("a filter must start with @: {expr:?}"))?;
    let path: Vec<String> = path.split('.').skip(1).map(str::to_string).collect();
    if path.is_empty() || path.iter().any(String::is_empty) || !lhs.starts_with("@.") {
        return Err(format!("unsupported filter {expr:?}"));
    }
    Ok(Step::Filter(Filter { path, compare }))
}

fn unquote(s: &str) -> Option<String> {
    let quoted = s.len() >= 2
        && ((s.starts_with('\'') && s.ends_with('\'')) || (s.starts_with('"') && s.ends_with('"')));
    quoted.then(|| s[1..s.len() - 1].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_paths_of_the_served_crds_parse_and_evaluate() {
        let vmi = json!({"status": {"phase": "Running", "interfaces": [{"ipAddress": "10.0.0.5"}, {"ipAddress": "x"}],
            "conditions": [{"type": "LiveMigratable", "status": "False"}, {"type": "Ready", "status": "True"}]}});
        let eval = |p: &str| JsonPath::parse(p).unwrap().first(&vmi).cloned();
        assert_eq!(eval(".status.phase"), Some(json!("Running")));
        assert_eq!(
            eval(".status.interfaces[0].ipAddress"),
            Some(json!("10.0.0.5"))
        );
        assert_eq!(eval(".status.interfaces[-1].ipAddress"), Some(json!("x")));
        assert_eq!(eval(".status.interfaces[5].ipAddress"), None);
        assert_eq!(
            eval(".status.conditions[?(@.type=='Ready')].status"),
            Some(json!("True"))
        );
        assert_eq!(
            eval(".status.conditions[?(@.type == \"LiveMigratable\")].status"),
            Some(json!("False"))
        );
        assert_eq!(
            eval(".status.conditions[?(@.type!='Ready')].type"),
            Some(json!("LiveMigratable"))
        );
        assert_eq!(eval(".status.conditions[?(@.type=='Paused')].status"), None);
        assert_eq!(eval(".status['phase']"), Some(json!("Running")));
        assert_eq!(
            eval("{.status.conditions[*].type}"),
            Some(json!("LiveMigratable"))
        );
        assert_eq!(eval(".missing.deeper"), None);
        for bad in [
            "..a",
            ".a[",
            ".a[1:2]",
            ".a[?(type=='x')]",
            "a",
            ".a[?(@.x==y)]",
        ] {
            assert!(JsonPath::parse(bad).is_err(), "{bad}");
        }
        // Every column of every served kind parses.
        let (registry, _) = crate::validation::schema_registry_and_validator().unwrap();
        let printers = Printers::build(&registry);
        for p in &printers.printers {
            if let Printer::Crd(cols) = p {
                for c in cols {
                    assert!(c.path.is_some(), "{:?}", c.definition);
                }
            }
        }
    }

    #[test]
    fn cells_follow_the_column_types() {
        let now = Utc::now();
        let col = |type_: &str, path: &str| CrdColumn {
            definition: column("C", type_, "", "", 0),
            path: JsonPath::parse(path).ok(),
        };
        let o = json!({"a": "x", "n": 3, "f": 2.7, "b": true, "m": {"z": 1, "a": "<"}, "nul": null,
            "t": (now - chrono::Duration::seconds(200)).to_rfc3339(), "bad": "yesterday", "empty": ""});
        assert_eq!(crd_cell(&col("string", ".a"), &o, now), json!("x"));
        assert_eq!(crd_cell(&col("string", ".n"), &o, now), json!("3"));
        assert_eq!(
            crd_cell(&col("string", ".m"), &o, now),
            json!("{\"a\":\"\\u003c\",\"z\":1}")
        );
        assert_eq!(
            crd_cell(&col("string", ".nul"), &o, now),
            json!("<no value>")
        );
        assert_eq!(crd_cell(&col("string", ".missing"), &o, now), Value::Null);
        assert_eq!(crd_cell(&col("integer", ".f"), &o, now), json!(2));
        assert_eq!(crd_cell(&col("integer", ".a"), &o, now), Value::Null);
        assert_eq!(crd_cell(&col("number", ".n"), &o, now), json!(3.0));
        assert_eq!(crd_cell(&col("boolean", ".b"), &o, now), json!(true));
        assert_eq!(crd_cell(&col("date", ".t"), &o, now), json!("3m20s"));
        assert_eq!(crd_cell(&col("date", ".bad"), &o, now), json!("<invalid>"));
        assert_eq!(
            crd_cell(&col("date", ".empty"), &o, now),
            json!("<unknown>")
        );
    }

    #[test]
    fn human_durations_match_apimachinery() {
        let h = |s: i64| human_duration(chrono::Duration::seconds(s));
        assert_eq!(h(-5), "<invalid>");
        assert_eq!(h(-1), "0s");
        assert_eq!(h(119), "119s");
        assert_eq!(h(120), "2m");
        assert_eq!(h(125), "2m5s");
        assert_eq!(h(600), "10m");
        assert_eq!(h(3 * 3600), "3h");
        assert_eq!(h(3 * 3600 + 60), "3h1m");
        assert_eq!(h(8 * 3600), "8h");
        assert_eq!(h(49 * 3600), "2d1h");
        assert_eq!(h(10 * 86400), "10d");
        assert_eq!(h(3 * 365 * 86400 + 86400), "3y1d");
        assert_eq!(h(9 * 365 * 86400), "9y");
    }

    #[test]
    fn accept_header_picks_a_table_by_preference() {
        let kubectl = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(negotiate(kubectl), Some(TableVersion::V1));
        assert_eq!(
            negotiate("application/json;as=Table;v=v1beta1;g=meta.k8s.io, application/json"),
            Some(TableVersion::V1beta1)
        );
        assert_eq!(negotiate("application/json"), None);
        assert_eq!(
            negotiate("application/json;as=Table;v=v2;g=meta.k8s.io,application/json"),
            None
        );
        assert_eq!(
            negotiate("application/json;q=0.5,application/json;as=Table;v=v1;g=meta.k8s.io"),
            Some(TableVersion::V1)
        );
        assert_eq!(
            negotiate(
                "application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io,application/json"
            ),
            None
        );
        assert_eq!(negotiate(""), None);
        assert_eq!(IncludeObject::parse(None), Ok(IncludeObject::Metadata));
        assert_eq!(
            IncludeObject::parse(Some("Object")),
            Ok(IncludeObject::Object)
        );
        assert!(IncludeObject::parse(Some("All")).is_err());
    }

    #[test]
    fn node_and_namespace_rows_follow_the_builtin_printers() {
        let now = Utc::now();
        let mut node = json!({"metadata": {"name": "node-1", "creationTimestamp": (now - chrono::Duration::seconds(30)).to_rfc3339(),
            "labels": {"node-role.kubernetes.io/worker": "", "node-role.kubernetes.io/": "", "kubernetes.io/role": "infra"}},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "Ready", "status": "False"}], "addresses": [{"type": "InternalIP", "address": "198.18.0.1"}],
                "nodeInfo": {"kubeletVersion": "v1.33.0", "kernelVersion": "6.1"}}});
        assert_eq!(
            node_cells(&node, now),
            [
                "node-1",
                "NotReady,SchedulingDisabled",
                "infra,worker",
                "30s",
                "v1.33.0",
                "198.18.0.1",
                "<none>",
                "<unknown>",
                "6.1",
                "<unknown>"
            ]
            .map(|s| json!(s))
        );
        node["status"] = json!({});
        node["metadata"]["labels"] = json!({});
        node["metadata"]["creationTimestamp"] = Value::Null;
        let cells = node_cells(&node, now);
        assert_eq!(cells[1], "Unknown,SchedulingDisabled");
        assert_eq!(cells[2], "<none>");
        assert_eq!(cells[3], "<unknown>");
        assert_eq!(node_columns().len(), cells.len());
    }
}
