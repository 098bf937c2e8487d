//! The fault suite (issue #11 §2: "proof, not anecdotes"): every fault of the matrix is injected into
//! a small lab run of the real binary, and every case checks the same three invariants:
//!
//! - **nothing lost** ([`nothing_lost`]): every file in the run's results directory that holds JSON
//!   parses; every document's declared fields ([`DECLARED`]) are each a value or listed under
//!   `missing` / `notApplicable` with a non-empty reason; every VM and network of the plan has its
//!   documents (a run cut short: every VM that has one document has all of its kinds);
//! - **nothing leaked** ([`cluster_clean`], [`host_clean`]): after the run, listing every kind by the
//!   run's uuid label (and VMIs / IPAMClaims in the run's namespaces) through the lab's own API
//!   returns nothing — so runs go against a lab that outlives them (`lab up`, then the run with the
//!   lab's kubeconfig, as a user on a real cluster would); then `lab down`, after which no network
//!   namespace with the lab's id, no process naming its state directory and no state directory
//!   remain. Cases that must use `run --lab` (a signal during the lab's own bring-up) have no
//!   cluster left to list: their lab is checked gone on the host;
//! - **the exit code** is the README table's for the cause.
//!
//! One `#[test]` runs the cases one after the other (they share two cores and would distort each
//! other's timing), records a row per case in `target/tmp/fault-suite/` and prints the matrix; with
//! `VMBGP_WRITE_RELIABILITY=1` it rewrites the "Fault suite" table of docs/RELIABILITY.md between
//! `<!-- fault-suite:begin -->` and `<!-- fault-suite:end -->`. A failing case does not stop the
//! others; the test fails at the end, naming every failed case.
//!
//! Run it: `cargo test -p vmbgp-bench --test faults -- --include-ignored`;
//! some cases only: `VMBGP_FAULT_CASES=bmp,sigint` (substrings of case names; never writes the doc).

use std::fmt::Write as _;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;
use vmbgp_reporters::test_server::{Behaviour, EsTestServer};

mod common;
use common::{netns_of, processes_naming, require_lab_prerequisites};

/// The suite's run: the default shape and thresholds, 2 iterations of 2 VMs.
const PROFILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/faults.yaml");
const FRR_NAMESPACE: &str = "openshift-frr-k8s";
const INDEX: &str = "ripsaw-kube-burner-vm-bgp";
/// A run of the suite that has not ended after this long is killed and reported as hung.
const RUN_LIMIT: Duration = Duration::from_secs(150);
/// How long a signal case waits for its phase to come.
const PHASE_LIMIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Rows of the matrix

/// One invariant or case check: held (with what shows it) or not (with what is wrong).
#[derive(Debug, Clone, serde::Serialize)]
struct Check {
    name: String,
    held: bool,
    detail: String,
}

impl Check {
    fn new(name: &str, result: Result<String, String>) -> Check {
        let (held, detail) = match result {
            Ok(d) => (true, d),
            Err(d) => (false, d),
        };
        Check {
            name: name.to_string(),
            held,
            detail,
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
struct Row {
    case: String,
    fault: String,
    injected: String,
    expected: String,
    observed: String,
    exit_held: bool,
    lost: Check,
    leaked: Check,
    checks: Vec<Check>,
    seconds: f64,
    /// The end of the run's output.
    output: String,
}

impl Row {
    fn passed(&self) -> bool {
        self.exit_held && self.lost.held && self.leaked.held && self.checks.iter().all(|c| c.held)
    }
}

/// What a case found; the runner adds the name, the description and the duration.
struct Outcome {
    expected: String,
    observed: String,
    exit_held: bool,
    lost: Result<String, String>,
    leaked: Result<String, String>,
    checks: Vec<Check>,
    /// The end of the run's output (in the row's JSON, for a failure's diagnosis).
    output: String,
}

impl Outcome {
    /// A case that could not get as far as its run (its lab did not come up, ...).
    fn broken(expected: &str, why: String) -> Outcome {
        Outcome {
            expected: expected.to_string(),
            observed: "not run".to_string(),
            exit_held: false,
            lost: Err(why.clone()),
            leaked: Err(why),
            checks: Vec::new(),
            output: String::new(),
        }
    }
}

/// All results combined: every part held, or the first problems.
fn all_held(parts: Vec<Result<String, String>>) -> Result<String, String> {
    let problems: Vec<String> = parts.iter().filter_map(|p| p.clone().err()).collect();
    if problems.is_empty() {
        Ok(parts
            .into_iter()
            .filter_map(Result::ok)
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("; "))
    } else {
        Err(problems.join("; "))
    }
}

// ---------------------------------------------------------------------------------------------
// Running the binary

#[derive(Debug, Clone, PartialEq, Eq)]
enum Exit {
    Code(i32),
    Signal(i32),
    /// Still running after [`RUN_LIMIT`]: killed.
    Hung,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "{c}"),
            Exit::Signal(9) => write!(f, "killed (SIGKILL)"),
            Exit::Signal(s) => write!(f, "killed by signal {s}"),
            Exit::Hung => write!(f, "hung (killed after {}s)", RUN_LIMIT.as_secs()),
        }
    }
}

/// A `vmbgp-bench` process of the suite, its output collected as it comes.
struct Running {
    child: tokio::process::Child,
    pid: u32,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<tokio::task::JoinHandle<()>>,
    started: Instant,
}

struct Finished {
    exit: Exit,
    stdout: String,
    stderr: String,
}

impl Finished {
    /// The end of the output, for a failure message: stderr's last lines and stdout's verdicts.
    fn tail(&self) -> String {
        let err: Vec<&str> = self.stderr.lines().collect();
        let mut parts: Vec<&str> = err[err.len().saturating_sub(6)..].to_vec();
        parts.extend(self.stdout.lines().filter(|l| {
            [
                "PASSED",
                "FAILED",
                "execution errors",
                "indexing",
                "not indexed",
                "VIOLATED",
            ]
            .iter()
            .any(|w| l.contains(w))
        }));
        parts.join(" / ")
    }
}

fn collect<R: tokio::io::AsyncRead + Unpin + Send + 'static>(
    reader: R,
    into: Arc<Mutex<String>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(reader).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let mut text = into.lock().expect("output");
            text.push_str(&line);
            text.push('\n');
        }
    })
}

impl Running {
    fn spawn(args: &[String]) -> Running {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_vmbgp-bench"))
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn vmbgp-bench");
        let pid = child.id().expect("pid");
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let readers = vec![
            collect(child.stdout.take().expect("stdout"), stdout.clone()),
            collect(child.stderr.take().expect("stderr"), stderr.clone()),
        ];
        Running {
            child,
            pid,
            stdout,
            stderr,
            readers,
            started: Instant::now(),
        }
    }

    fn stderr_has(&self, text: &str) -> bool {
        self.stderr.lock().expect("stderr").contains(text)
    }

    fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Waits until stderr shows `text`; false if the process ended or `limit` passed first.
    async fn wait_stderr(&mut self, text: &str, limit: Duration) -> bool {
        let until = Instant::now() + limit;
        while Instant::now() < until {
            if self.stderr_has(text) {
                return true;
            }
            if self.exited() {
                return self.stderr_has(text);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(self.pid).expect("pid")),
            signal,
        );
    }

    /// Waits for the end (at most [`RUN_LIMIT`] from the start; then it is killed as hung).
    async fn finish(mut self) -> Finished {
        let left = RUN_LIMIT.saturating_sub(self.started.elapsed());
        let exit = match tokio::time::timeout(left, self.child.wait()).await {
            Ok(Ok(status)) => match (status.code(), status.signal()) {
                (Some(code), _) => Exit::Code(code),
                (None, Some(signal)) => Exit::Signal(signal),
                (None, None) => Exit::Hung,
            },
            _ => {
                let _ = self.child.start_kill();
                let _ = self.child.wait().await;
                Exit::Hung
            }
        };
        for reader in self.readers.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(5), reader).await;
        }
        let stdout = self.stdout.lock().expect("stdout").clone();
        let stderr = self.stderr.lock().expect("stderr").clone();
        Finished {
            exit,
            stdout,
            stderr,
        }
    }
}

/// Runs the binary to its end.
async fn bench(args: &[String]) -> Finished {
    Running::spawn(args).finish().await
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

// ---------------------------------------------------------------------------------------------
// Labs

/// A lab that outlives the runs against it (`lab up`), so the cluster can be listed afterwards.
struct KeptLab {
    id: String,
    state_dir: PathBuf,
    client: kube::Client,
    down: bool,
}

impl KeptLab {
    async fn up(id: &str, flags: &[String]) -> Result<KeptLab, String> {
        let state_dir = PathBuf::from(format!("/run/vmbgp-fault-suite-{id}"));
        let mut args = strings(&["lab", "up", "--lab-id", id, "--state-dir"]);
        args.push(state_dir.display().to_string());
        args.extend(flags.iter().cloned());
        let up = bench(&args).await;
        if up.exit != Exit::Code(0) {
            let _ = bench(&strings(&[
                "lab",
                "down",
                "--state-dir",
                &state_dir.display().to_string(),
            ]))
            .await;
            return Err(format!("lab up exited {}: {}", up.exit, up.tail()));
        }
        let client = common::client_for(&state_dir.join("kubeconfig")).await;
        Ok(KeptLab {
            id: id.to_string(),
            state_dir,
            client,
            down: false,
        })
    }

    fn kubeconfig(&self) -> String {
        self.state_dir.join("kubeconfig").display().to_string()
    }

    /// `run` against this lab (its kubeconfig; BMP, FIB watch and probes in its ext netns).
    fn run_args(&self, uuid: &str, results: &Path, profile: &str, extra: &[String]) -> Vec<String> {
        let mut args = strings(&["run", "--profile", profile, "--uuid", uuid]);
        args.extend(strings(&[
            "--kubeconfig",
            &self.kubeconfig(),
            "--netns",
            &format!("vmbgp-{}-ext", self.id),
            "--frr-namespace",
            FRR_NAMESPACE,
            "--results-dir",
            &results.display().to_string(),
        ]));
        args.extend(extra.iter().cloned());
        args
    }

    /// The lab's network ground truth so far.
    fn net_ground_truth(&self) -> Vec<Value> {
        std::fs::read_to_string(self.state_dir.join("net-ground-truth.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// What the lab's `lab serve` process logged so far (scheduled faults say when they struck).
    fn serve_log(&self) -> String {
        std::fs::read_to_string(self.state_dir.join("serve.log")).unwrap_or_default()
    }

    /// `lab down`, then nothing of the lab may be left on the host.
    async fn down(mut self) -> Result<String, String> {
        self.down = true;
        let down = bench(&strings(&[
            "lab",
            "down",
            "--state-dir",
            &self.state_dir.display().to_string(),
        ]))
        .await;
        let said = if down.exit == Exit::Code(0) {
            Ok(String::new())
        } else {
            Err(format!("lab down exited {}: {}", down.exit, down.tail()))
        };
        all_held(vec![said, host_clean(&self.id, &self.state_dir)])
    }
}

impl Drop for KeptLab {
    fn drop(&mut self) {
        // A case that panicked: still leave nothing behind.
        if !self.down {
            let _ = std::process::Command::new(env!("CARGO_BIN_EXE_vmbgp-bench"))
                .args(["lab", "down", "--state-dir"])
                .arg(&self.state_dir)
                .output();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The invariants

/// Nothing of lab `lab_id` is left on the host: no network namespace with its id, no process whose
/// command line names its state directory, no state directory.
fn host_clean(lab_id: &str, state_dir: &Path) -> Result<String, String> {
    let mut problems = Vec::new();
    let netns = netns_of(lab_id);
    if !netns.is_empty() {
        problems.push(format!("network namespaces left: {netns:?}"));
    }
    let processes = processes_naming(&state_dir.display().to_string());
    if !processes.is_empty() {
        problems.push(format!("processes left: {processes:?}"));
    }
    if state_dir.exists() {
        problems.push(format!("{} left", state_dir.display()));
    }
    if problems.is_empty() {
        Ok("no netns, process or state dir left".to_string())
    } else {
        Err(problems.join("; "))
    }
}

/// Nothing of run `uuid` is left in the cluster: no object of any kind carries its uuid label, and
/// no VMI or IPAMClaim (they carry no run label) is left in its namespaces (`vmbgp-*`; each case's
/// lab holds one run).
async fn cluster_clean(client: &kube::Client, uuid: &str) -> Result<String, String> {
    let mut left = common::labelled(client, uuid).await?;
    for kind in common::KINDS
        .iter()
        .filter(|k| k.2 == "VirtualMachineInstance" || k.2 == "IPAMClaim")
    {
        let all = common::list_retrying(&common::api(client, kind), &Default::default()).await?;
        for o in all {
            let ns = o.metadata.namespace.clone().unwrap_or_default();
            if ns.starts_with("vmbgp-") {
                left.push(format!(
                    "{} {ns}/{}",
                    kind.2,
                    o.metadata.name.unwrap_or_default()
                ));
            }
        }
    }
    if left.is_empty() {
        Ok(format!(
            "no object labelled vmbgp.io/uuid={uuid} (of {} kinds)",
            common::KINDS.len()
        ))
    } else {
        Err(format!("left in the cluster: {}", left.join(", ")))
    }
}

/// Declared fields of each per-object document: each must be a value, or be listed under `missing`
/// or `notApplicable` with its reason.
const DECLARED: &[(&str, &[&str])] = &[
    (
        "routeConvergenceMeasurement",
        &[
            "advertiseAdjRibInLatency",
            "advertiseFibLatency",
            "advertiseAllNextHopsLatency",
            "withdrawAdjRibInLatency",
            "withdrawFibLatency",
            "staleRouteWindow",
            "observedNextHops",
        ],
    ),
    (
        "vmReachabilityMeasurement",
        &[
            "reachable",
            "firstReplyLatency",
            "sustainedReachabilityLatency",
            "lossDerivedConvergence",
            "rttP50",
            "rttP90",
            "rttP99",
            "rttMax",
            "lossPercent",
        ],
    ),
    (
        "vmThroughputMeasurement",
        &["goodputBitsPerSecond", "retransmits", "duration"],
    ),
    ("vmEgressMeasurement", &["sourceAddressSeen", "unNATed"]),
    (
        "bgpSessionMeasurement",
        &["uptimePercent", "prefixesReceived"],
    ),
    (
        "vmMigrationMeasurement",
        &[
            "lossPeriod",
            "longestGap",
            "reachableAfterSwitchoverLatency",
            "nextHopFollowLatency",
            "tcpSurvived",
            "tcpLongestStall",
        ],
    ),
];

/// The declared fields of a metric (VM lifecycle: every phase of the reporters' own list).
fn declared(metric: &str) -> Option<Vec<String>> {
    if metric == "vmiLatencyMeasurement" {
        let mut fields: Vec<String> = vmbgp_reporters::samples::VmPhase::ALL
            .iter()
            .map(|p| p.field_name().to_string())
            .collect();
        fields.push(vmbgp_reporters::samples::CLAIM_RELEASED_FIELD.to_string());
        return Some(fields);
    }
    DECLARED
        .iter()
        .find(|(m, _)| *m == metric)
        .map(|(_, f)| f.iter().map(|s| s.to_string()).collect())
}

/// Per-VM document kinds by the `measurements` name jobSummary lists.
const PER_VM: &[(&str, &str)] = &[
    ("vmLatency", "vmiLatencyMeasurement"),
    ("vmReachability", "vmReachabilityMeasurement"),
    ("vmEgress", "vmEgressMeasurement"),
];

fn reason_of(doc: &Value, section: &str, field: &str) -> Option<String> {
    doc[section][field].as_str().map(str::to_string)
}

/// Checks one document's fields; returns how many were missing or not applicable (with reasons).
fn check_fields(doc: &Value, where_: &str, problems: &mut Vec<String>) -> usize {
    let metric = doc["metricName"].as_str().unwrap_or_default();
    let mut explained = 0;
    for section in ["missing", "notApplicable"] {
        if let Some(map) = doc[section].as_object() {
            for (field, reason) in map {
                explained += 1;
                if reason.as_str().is_none_or(|r| r.trim().is_empty()) {
                    problems.push(format!("{where_}: {section}.{field} has no reason"));
                }
                if doc.get(field).is_some_and(|v| !v.is_null()) {
                    problems.push(format!("{where_}: {field} is both a value and {section}"));
                }
            }
        }
    }
    if let Some(object) = doc.as_object() {
        for (key, value) in object {
            if value.is_null() {
                problems.push(format!(
                    "{where_}: {key} is null (a value or a reason, never null)"
                ));
            }
        }
    }
    let Some(fields) = declared(metric) else {
        return explained;
    };
    for field in fields {
        let value = doc.get(&field).is_some_and(|v| !v.is_null());
        let reason =
            reason_of(doc, "missing", &field).or_else(|| reason_of(doc, "notApplicable", &field));
        if !value && reason.is_none() {
            problems.push(format!(
                "{where_}: {field} is neither a value nor missing with a reason"
            ));
        }
    }
    explained
}

/// Nothing the run measured is lost: see the module documentation.
fn nothing_lost(dir: &Path) -> Result<String, String> {
    if !dir.is_dir() {
        return Err(format!("no results directory {}", dir.display()));
    }
    let mut problems = Vec::new();
    let mut files = 0;
    let mut docs: Vec<(String, Value)> = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(|e| format!("{}: {e}", d.display()))? {
            let path = entry.map_err(|e| e.to_string())?.path();
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if name.starts_with('.') && name.contains(".tmp-") {
                problems.push(format!("temporary file left: {name}"));
                continue;
            }
            let text = std::fs::read_to_string(&path);
            if name.ends_with(".json") {
                files += 1;
                match text
                    .ok()
                    .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                {
                    Some(Value::Array(items)) => {
                        docs.extend(items.into_iter().map(|d| (name.clone(), d)));
                    }
                    Some(_) => problems.push(format!("{name}: not an array of documents")),
                    None => problems.push(format!("{name}: not valid JSON")),
                }
            } else if name.ends_with(".jsonl") {
                files += 1;
                let text = text.unwrap_or_default();
                if let Some((n, _)) = text.lines().enumerate().find(|(_, l)| {
                    !l.trim().is_empty() && serde_json::from_str::<Value>(l).is_err()
                }) {
                    problems.push(format!("{name}: line {} is not valid JSON", n + 1));
                }
            }
        }
    }
    let summaries: Vec<&Value> = docs
        .iter()
        .filter(|(f, _)| f == "jobSummary.json")
        .map(|(_, d)| d)
        .collect();
    let Some(summary) = summaries.first() else {
        problems.push("no jobSummary.json".to_string());
        return Err(problems.join("; "));
    };
    // kube-burner's jobSummary carries executionErrors as one "; "-joined string.
    let errors: Vec<String> = match &summary["executionErrors"] {
        Value::String(joined) => joined.split("; ").map(str::to_string).collect(),
        Value::Array(items) => items
            .iter()
            .filter_map(|e| e.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    };
    // A run cut short (signal, timeout, killed, failed): its plan was not carried out whole.
    let cut_short = summary.get("endTimestamp").is_none()
        || errors.iter().any(|e| {
            [
                "interrupted",
                "did not finish",
                "timed out",
                "the run failed",
                "expired",
            ]
            .iter()
            .any(|w| e.contains(w))
        });
    let mut explained = 0;
    let mut per_object = 0;
    for (file, doc) in &docs {
        let metric = doc["metricName"].as_str().unwrap_or_default();
        let who = doc["vmName"]
            .as_str()
            .or(doc["network"].as_str())
            .or(doc["peerAddress"].as_str())
            .or(doc["quantileName"].as_str())
            .unwrap_or_default();
        let where_ = format!("{file} {who}");
        explained += check_fields(doc, &where_, &mut problems);
        if metric.ends_with("QuantilesMeasurement") {
            // No sample: the reasons say why.
            if doc["count"].as_u64() == Some(0)
                && doc["missingReasons"].as_array().is_none_or(Vec::is_empty)
                && doc["notApplicable"]
                    .as_object()
                    .is_none_or(serde_json::Map::is_empty)
                && doc["missing"]
                    .as_object()
                    .is_none_or(serde_json::Map::is_empty)
            {
                problems.push(format!("{where_}: no sample and no reason"));
            }
        } else if metric != "jobSummary" {
            per_object += 1;
        }
    }
    // Coverage: every VM and network of the plan has its documents.
    let enabled: Vec<&str> = summary["measurements"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let has = |metric: &str, key: &str, value: &str| {
        docs.iter()
            .any(|(_, d)| d["metricName"] == metric && d[key] == value)
    };
    let vms: Vec<(String, String)> = summary["jobConfig"]["vms"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|v| {
                    (
                        v["namespace"].as_str().unwrap_or_default().to_string(),
                        v["name"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let per_vm: Vec<&str> = PER_VM
        .iter()
        .filter(|(kind, _)| enabled.contains(kind))
        .map(|(_, metric)| *metric)
        .collect();
    let mut documented = 0;
    for (_, vm) in &vms {
        let present: Vec<&str> = per_vm
            .iter()
            .copied()
            .filter(|m| has(m, "vmName", vm))
            .collect();
        if !present.is_empty() {
            documented += 1;
        }
        if (!cut_short || !present.is_empty()) && present.len() < per_vm.len() {
            let absent: Vec<&&str> = per_vm.iter().filter(|m| !present.contains(m)).collect();
            problems.push(format!("VM {vm}: no {absent:?} document"));
        }
    }
    if !cut_short && enabled.contains(&"routeConvergence") {
        for network in summary["jobConfig"]["networks"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let name = network["name"].as_str().unwrap_or_default();
            if !has("routeConvergenceMeasurement", "network", name) {
                problems.push(format!(
                    "network {name}: no routeConvergenceMeasurement document"
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(format!(
            "{files} files valid JSON; {per_object} documents, {explained} fields missing or n/a, each with its reason; {documented}/{} VMs documented{}",
            vms.len(),
            if cut_short { " (run cut short)" } else { "" }
        ))
    } else {
        problems.truncate(8);
        Err(problems.join("; "))
    }
}

/// [`nothing_lost`], except for a run that stopped before it measured anything (refused by its
/// preflight: no results directory, and it never said where its results would go).
fn lost_unless_never_started(dir: &Path, run: &Finished) -> Result<String, String> {
    if !dir.exists() && !run.stderr.contains("results in") {
        Ok("the run stopped before measuring anything; no results to lose".to_string())
    } else {
        nothing_lost(dir)
    }
}

/// The exit-code invariant.
fn exit_is(expected: &Exit, observed: &Exit) -> bool {
    expected == observed
}

/// Documents of one metric in a results directory.
fn docs_of(dir: &Path, metric: &str) -> Vec<Value> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("{metric}-"))
        })
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|t| serde_json::from_str::<Value>(&t).ok())
        .filter_map(|v| v.as_array().cloned())
        .flatten()
        .collect()
}

/// How many documents a results directory holds (what `index` must upload).
fn saved_documents(dir: &Path) -> usize {
    vmbgp_reporters::local::load_documents(dir)
        .map(|d| d.len())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// The cases

struct Suite {
    pid: u32,
    n: usize,
}

impl Suite {
    /// A lab id and run uuid unique to this case of this suite run.
    fn ids(&mut self, case: &str) -> (String, String) {
        self.n += 1;
        (
            format!("fs{}-{}", self.n, self.pid),
            format!("fault-{case}-{}", self.pid),
        )
    }
}

/// A plain fault case: `lab up` with `lab_flags`, one run against it with `run_extra`, the three
/// invariants, and `checks` on what the run left (results directory, stdout, the lab's ground
/// truth) before the lab goes down.
async fn lab_case(
    suite: &mut Suite,
    case: &str,
    lab_flags: &[String],
    run_extra: &[String],
    expected: Exit,
    checks: impl FnOnce(&Path, &Finished, &KeptLab) -> Vec<Check>,
) -> Outcome {
    let (id, uuid) = suite.ids(case);
    let lab = match KeptLab::up(&id, lab_flags).await {
        Ok(lab) => lab,
        Err(e) => return Outcome::broken(&expected.to_string(), e),
    };
    let results = tempfile::tempdir().expect("tempdir");
    let run = bench(&lab.run_args(&uuid, results.path(), PROFILE, run_extra)).await;
    let dir = results.path().join(&uuid);
    let case_checks = checks(&dir, &run, &lab);
    let cluster = cluster_clean(&lab.client, &uuid).await;
    let host = lab.down().await;
    Outcome {
        expected: expected.to_string(),
        observed: run.exit.to_string(),
        exit_held: exit_is(&expected, &run.exit),
        lost: lost_unless_never_started(&dir, &run),
        leaked: all_held(vec![cluster, host]),
        checks: case_checks,
        output: run.tail(),
    }
}

fn lab_flags(flags: &[&str]) -> Vec<String> {
    strings(flags)
}

/// Route convergence of every network observed (advertise and withdraw at the FIB).
fn routes_observed(dir: &Path) -> Result<String, String> {
    let docs = docs_of(dir, "routeConvergenceMeasurement");
    if docs.is_empty() {
        return Err("no routeConvergenceMeasurement document".into());
    }
    for d in &docs {
        for field in ["advertiseFibLatency", "withdrawFibLatency"] {
            if !d[field].is_number() {
                return Err(format!(
                    "{} {field} not observed: {}",
                    d["network"], d["missing"][field]
                ));
            }
        }
    }
    Ok(format!(
        "{} networks: advertise and withdraw observed",
        docs.len()
    ))
}

/// The BGP session of `peer` at the external router: its flaps and uptime.
fn session_of(dir: &Path, peer: &str) -> Option<(u64, f64)> {
    docs_of(dir, "bgpSessionMeasurement")
        .into_iter()
        .find(|d| d["peerAddress"] == peer)
        .map(|d| {
            (
                d["flaps"].as_u64().unwrap_or(0),
                d["uptimePercent"].as_f64().unwrap_or(-1.0),
            )
        })
}

fn flap_recorded(dir: &Path, peer: &str) -> Result<String, String> {
    match session_of(dir, peer) {
        Some((flaps, uptime)) if flaps >= 1 => {
            Ok(format!("{peer}: {flaps} flap(s), uptime {uptime} %"))
        }
        Some((_, uptime)) => Err(format!(
            "{peer}'s session went down and came back, but bgpSessionMeasurement shows no flap (uptime {uptime} %)"
        )),
        None => Err(format!("no bgpSessionMeasurement for {peer}")),
    }
}

/// The peer's uptime is not a number but missing, with the reason that its session was replaced
/// without a Peer Down.
fn uptime_unknown_said_why(dir: &Path, peer: &str) -> Result<String, String> {
    let Some(doc) = docs_of(dir, "bgpSessionMeasurement")
        .into_iter()
        .find(|d| d["peerAddress"] == peer)
    else {
        return Err(format!("no bgpSessionMeasurement for {peer}"));
    };
    let reason = doc["missing"]["uptimePercent"].as_str().unwrap_or_default();
    if doc["uptimePercent"].is_number() || !reason.contains("without a Peer Down") {
        return Err(format!(
            "{peer}: uptimePercent {} (missing: {reason:?}); its outage was not observed, so it \
             must be missing with that reason",
            doc["uptimePercent"]
        ));
    }
    Ok(format!("{peer}: uptime missing: {reason}"))
}

fn ground_truth_has(lab: &KeptLab, event: &str, router: &str) -> Result<String, String> {
    let events: Vec<Value> = lab
        .net_ground_truth()
        .into_iter()
        .filter(|e| e["event"] == event && e["router"] == router)
        .collect();
    if events.is_empty() {
        Err(format!(
            "the lab's ground truth has no {event} for {router}: the fault did not happen"
        ))
    } else {
        Ok(format!(
            "ground truth: {event} {router} at {}",
            events[0]["wall"]
        ))
    }
}

async fn api_errors(s: &mut Suite) -> Outcome {
    lab_case(
        s,
        "api-errors",
        &lab_flags(&[
            "--lab-fault-api-error-rate-500",
            "0.1",
            "--lab-fault-api-error-rate-429",
            "0.1",
        ]),
        &strings(&["--timeout", "45s"]),
        Exit::Code(0),
        |dir, run, _| {
            vec![
                Check::new("every VM measured", vm_ready_everywhere(dir)),
                Check::new("retries reported", retries_reported(run)),
            ]
        },
    )
    .await
}

/// The run said how many API requests it retried, and the count is not zero.
fn retries_reported(run: &Finished) -> Result<String, String> {
    let line = run
        .stdout
        .lines()
        .find(|l| l.contains("the Kubernetes API answered"))
        .ok_or("the run did not report its API retries")?;
    if line.contains(" 0 request(s) with 429 and 0 with 5xx") {
        return Err(format!("no retry counted under injected faults: {line}"));
    }
    Ok(line.to_string())
}

/// Every VM's lifecycle reached Ready (faults must not cost measurements).
fn vm_ready_everywhere(dir: &Path) -> Result<String, String> {
    let docs = docs_of(dir, "vmiLatencyMeasurement");
    let not: Vec<String> = docs
        .iter()
        .filter(|d| !d["vmReadyLatency"].is_number())
        .map(|d| format!("{}: {}", d["vmName"], d["missing"]["vmReadyLatency"]))
        .collect();
    if docs.is_empty() {
        Err("no vmiLatencyMeasurement document".into())
    } else if !not.is_empty() {
        Err(format!("VMs without VMReady: {}", not.join("; ")))
    } else {
        Ok(format!("{} VMs Ready", docs.len()))
    }
}

async fn watch_cuts(s: &mut Suite) -> Outcome {
    lab_case(
        s,
        "watch-cut",
        &lab_flags(&["--lab-fault-watch-cut-every", "1s"]),
        &[],
        Exit::Code(0),
        |dir, _, _| {
            vec![
                Check::new("every VM measured", vm_ready_everywhere(dir)),
                Check::new("routes measured", routes_observed(dir)),
            ]
        },
    )
    .await
}

async fn watch_expired(s: &mut Suite) -> Outcome {
    let mut flags = Vec::new();
    for at in ["1s", "2500ms", "4s", "5500ms", "7s"] {
        flags.extend(strings(&["--lab-fault-watch-expire", at]));
    }
    lab_case(s, "watch-410", &flags, &[], Exit::Code(0), |dir, _, lab| {
        let struck = lab
            .serve_log()
            .matches(
                "expire the API's watch history and cut every watch (410 Gone on resume): done",
            )
            .count();
        let happened = if struck >= 3 {
            Ok(format!("the lab logged {struck} expiries during the run"))
        } else {
            Err(format!(
                "the lab logged {struck} expiries (at least 3 expected during the run)"
            ))
        };
        vec![
            Check::new("fault happened", happened),
            Check::new("every VM measured", vm_ready_everywhere(dir)),
        ]
    })
    .await
}

async fn gone_on_resume(s: &mut Suite) -> Outcome {
    lab_case(
        s,
        "watch-410-always",
        &lab_flags(&["--lab-fault-gone-on-resume"]),
        &[],
        Exit::Code(0),
        |dir, _, _| vec![Check::new("every VM measured", vm_ready_everywhere(dir))],
    )
    .await
}

const NODE_IPS: &str = "198.18.0.1,198.18.0.2,198.18.0.3";

async fn bgpd_restart_static(s: &mut Suite) -> Outcome {
    lab_case(
        s,
        "bgpd-restart",
        &lab_flags(&[
            "--node-ips",
            NODE_IPS,
            "--lab-fault-bgpd-restart",
            "node-1@5s",
        ]),
        &strings(&["--node-ips", NODE_IPS]),
        Exit::Code(3),
        |dir, _, lab| {
            vec![
                Check::new(
                    "fault happened",
                    ground_truth_has(lab, "routerRestarted", "node-1"),
                ),
                Check::new("flap measured", flap_recorded(dir, "198.18.0.1")),
            ]
        },
    )
    .await
}

async fn bgpd_restart_dynamic(s: &mut Suite) -> Outcome {
    lab_case(
        s,
        "bgpd-restart-listen",
        &lab_flags(&["--lab-fault-bgpd-restart", "node-1@5s"]),
        &[],
        // The outage's length is unknown, so no uptime threshold can fail on it; the other
        // sessions' uptimes pass.
        Exit::Code(0),
        |dir, _, lab| {
            vec![
                Check::new(
                    "fault happened",
                    ground_truth_has(lab, "routerRestarted", "node-1"),
                ),
                Check::new("flap measured", flap_recorded(dir, "198.18.0.1")),
                Check::new(
                    "uptime unknown, said why",
                    uptime_unknown_said_why(dir, "198.18.0.1"),
                ),
            ]
        },
    )
    .await
}

async fn bmp_drop(s: &mut Suite) -> Outcome {
    lab_case(
        s,
        "bmp-drop",
        &lab_flags(&["--lab-fault-bmp-drop", "4s"]),
        &[],
        Exit::Code(0),
        |dir, _, lab| {
            let dropped = lab
                .net_ground_truth()
                .into_iter()
                .find(|e| e["event"] == "bmpSessionDropped");
            let happened = match dropped {
                Some(e) if e["connections"].as_u64().unwrap_or(0) >= 1 => {
                    ground_truth_has(lab, "bmpSessionReestablished", "ext")
                        .map(|again| format!("{} connection(s) aborted; {again}", e["connections"]))
                }
                Some(e) => Err(format!("no BMP connection was there to drop: {e}")),
                None => Err("the lab's ground truth has no bmpSessionDropped".into()),
            };
            let no_flap = ["198.18.0.1", "198.18.0.2", "198.18.0.3"]
                .iter()
                .map(|p| match session_of(dir, p) {
                    Some((0, _)) => Ok(String::new()),
                    Some((flaps, _)) => {
                        Err(format!("{p}: {flaps} flap(s) invented from a BMP drop"))
                    }
                    None => Err(format!("no bgpSessionMeasurement for {p}")),
                })
                .collect();
            vec![
                Check::new("fault happened", happened),
                Check::new(
                    "no BGP flap invented",
                    all_held(no_flap).map(|_| "0 flaps".into()),
                ),
                Check::new("routes measured", routes_observed(dir)),
            ]
        },
    )
    .await
}

/// Runs that only exercise indexing skip probes and BGP observation (faster; the same upload).
fn quick_run() -> Vec<String> {
    strings(&["--probe-vms", "false", "--observe-bgp", "false"])
}

/// A port nothing listens on now (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port()
}

async fn es_down(s: &mut Suite) -> Outcome {
    let (id, uuid) = s.ids("es-down");
    let expected = "6, then `index` 0";
    let lab = match KeptLab::up(&id, &[]).await {
        Ok(lab) => lab,
        Err(e) => return Outcome::broken(expected, e),
    };
    let results = tempfile::tempdir().expect("tempdir");
    let mut extra = quick_run();
    extra.extend(strings(&[
        "--es-server",
        &format!("http://127.0.0.1:{}", free_port()),
        "--es-index",
        INDEX,
        "--es-timeout",
        "2s",
    ]));
    let run = bench(&lab.run_args(&uuid, results.path(), PROFILE, &extra)).await;
    let dir = results.path().join(&uuid);
    let es = EsTestServer::start().await.expect("es");
    let index = bench(&strings(&[
        "index",
        &dir.display().to_string(),
        "--es-server",
        &es.url,
        "--es-index",
        INDEX,
    ]))
    .await;
    let saved = saved_documents(&dir);
    let uploaded = if es.document_count() == saved && saved > 0 {
        Ok(format!("{saved} documents kept, all indexed later"))
    } else {
        Err(format!(
            "{} of {saved} documents indexed later: {}",
            es.document_count(),
            index.tail()
        ))
    };
    let said = if run
        .stdout
        .contains("upload them later with `vmbgp-bench index`")
    {
        Ok("the run says how to upload later".into())
    } else {
        Err(format!("no hint to upload later: {}", run.tail()))
    };
    let cluster = cluster_clean(&lab.client, &uuid).await;
    let host = lab.down().await;
    Outcome {
        expected: expected.into(),
        observed: format!("{}, then `index` {}", run.exit, index.exit),
        exit_held: run.exit == Exit::Code(6) && index.exit == Exit::Code(0),
        lost: nothing_lost(&dir),
        leaked: all_held(vec![cluster, host]),
        checks: vec![
            Check::new("indexed later", uploaded),
            Check::new("message", said),
        ],
        output: run.tail(),
    }
}

async fn es_items(s: &mut Suite, case: &str, items: Vec<u16>, expected: Exit) -> Outcome {
    let es = EsTestServer::start().await.expect("es");
    es.script([Behaviour::Items(items.clone())]);
    let mut extra = quick_run();
    extra.extend(strings(&[
        "--es-server",
        &es.url,
        "--es-index",
        INDEX,
        "--es-timeout",
        "30s",
    ]));
    let refused = items.iter().filter(|&&s| s != 429 && s >= 400).count();
    let es_check = es.clone();
    lab_case(s, case, &[], &extra, expected, move |dir, run, _| {
        let saved = saved_documents(dir);
        let indexed = es_check.document_count();
        let counted = if indexed + refused == saved {
            Ok(format!(
                "{indexed} of {saved} documents indexed, {refused} refused"
            ))
        } else {
            Err(format!(
                "{indexed} of {saved} indexed, {refused} refused: {}",
                run.tail()
            ))
        };
        let listed = if refused == 0 || run.stdout.contains("not indexed:") {
            Ok(String::new())
        } else {
            Err("the refused document is not listed".into())
        };
        vec![Check::new(
            "documents indexed",
            all_held(vec![counted, listed]),
        )]
    })
    .await
}

// Signals --------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Creation,
    Probing,
    Throughput,
    Cleanup,
}

/// The profile of the signal cases: one iteration of 2 VMs, every phase long enough to be hit —
/// creates and deletes at 2/s, probes at 20/s (100 replies in a row take 5 s), 3 s of throughput.
fn signal_profile(dir: &Path) -> PathBuf {
    let base = std::fs::read_to_string(PROFILE).expect("profile");
    let text = base
        .replace("iterations: 2", "iterations: 1")
        .replace("qps: 20", "qps: 2")
        .replace("burst: 20", "burst: 2")
        .replace("convergingRate: 100", "convergingRate: 20")
        .replace("throughputDuration: 2s", "throughputDuration: 3s");
    assert_ne!(text, base);
    let path = dir.join("signals.yaml");
    std::fs::write(&path, text).expect("profile");
    path
}

/// The run's VMs in the lab: (existing, ready, being deleted).
async fn vm_states(client: &kube::Client, uuid: &str) -> (usize, usize, usize) {
    let params = kube::api::ListParams::default().labels(&format!("vmbgp.io/uuid={uuid}"));
    let Ok(list) = common::api(client, &common::KINDS[4]).list(&params).await else {
        return (0, 0, 0);
    };
    let ready = list
        .items
        .iter()
        .filter(|v| v.data["status"]["ready"] == true)
        .count();
    let deleting = list
        .items
        .iter()
        .filter(|v| v.metadata.deletion_timestamp.is_some())
        .count();
    (list.items.len(), ready, deleting)
}

/// Waits for `phase` of a signal-profile run and proves it came: what was seen at the signal.
async fn reach_phase(
    run: &mut Running,
    lab: &KeptLab,
    uuid: &str,
    phase: Phase,
) -> Result<String, String> {
    let until = Instant::now() + PHASE_LIMIT;
    let too_late = |run: &Running, line: &str| {
        if run.stderr_has(line) {
            Err(format!("too late: {line:?} was already logged"))
        } else {
            Ok(())
        }
    };
    match phase {
        Phase::Creation => {
            while Instant::now() < until && !run.exited() {
                let (vms, _, _) = vm_states(&lab.client, uuid).await;
                if vms > 0 {
                    return if vms < 2 {
                        Ok(format!("{vms} of 2 VMs created"))
                    } else {
                        Err("too late: both VMs were created".into())
                    };
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        Phase::Probing => {
            while Instant::now() < until && !run.exited() {
                if vm_states(&lab.client, uuid).await.1 == 2 {
                    // Probing for "sustained" (100 replies in a row at 20/s) until throughput.
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    too_late(run, "TCP throughput")?;
                    return Ok("both VMs Ready, throughput not started".into());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Phase::Throughput => {
            if run.wait_stderr("TCP throughput", PHASE_LIMIT).await {
                tokio::time::sleep(Duration::from_secs(1)).await;
                too_late(run, "iteration 1/1:")?;
                return Ok("1 s into the 3 s throughput test".into());
            }
        }
        Phase::Cleanup => {
            if run.wait_stderr("iteration 1/1:", PHASE_LIMIT).await {
                while Instant::now() < until && !run.exited() {
                    let (vms, _, deleting) = vm_states(&lab.client, uuid).await;
                    if vms < 2 || deleting > 0 {
                        too_late(run, "cleanup: ")?;
                        return Ok(format!(
                            "cleanup deleting ({vms} VMs left, {deleting} being deleted)"
                        ));
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }
    Err(format!(
        "the phase never came: {}",
        run.stderr
            .lock()
            .expect("stderr")
            .lines()
            .last()
            .unwrap_or_default()
    ))
}

fn signal_name(signal: nix::sys::signal::Signal) -> &'static str {
    match signal {
        nix::sys::signal::Signal::SIGINT => "SIGINT",
        nix::sys::signal::Signal::SIGTERM => "SIGTERM",
        _ => "SIGKILL",
    }
}

/// A signal during a phase of a run against a kept lab. SIGINT/SIGTERM: exit 130 and the run
/// cleaned up itself. SIGKILL: the run cannot clean up; `destroy --uuid` must (exit 0).
async fn signal_case(s: &mut Suite, phase: Phase, signal: nix::sys::signal::Signal) -> Outcome {
    let case = format!("{}-{:?}", signal_name(signal).to_lowercase(), phase).to_lowercase();
    let (id, uuid) = s.ids(&case);
    let kill = signal == nix::sys::signal::Signal::SIGKILL;
    let expected = if kill {
        "SIGKILL, then `destroy` 0"
    } else {
        "130"
    };
    let lab = match KeptLab::up(&id, &[]).await {
        Ok(lab) => lab,
        Err(e) => return Outcome::broken(expected, e),
    };
    let results = tempfile::tempdir().expect("tempdir");
    let profile = signal_profile(results.path());
    let mut run = Running::spawn(&lab.run_args(
        &uuid,
        &results.path().join("r"),
        &profile.display().to_string(),
        &[],
    ));
    let hit = reach_phase(&mut run, &lab, &uuid, phase).await;
    if hit.is_ok() {
        run.signal(signal);
    } else {
        run.signal(nix::sys::signal::Signal::SIGKILL);
    }
    let finished = run.finish().await;
    let dir = results.path().join("r").join(&uuid);
    let (observed, exit_held) = if kill {
        let destroy = bench(&strings(&[
            "destroy",
            "--uuid",
            &uuid,
            "--kubeconfig",
            &lab.kubeconfig(),
        ]))
        .await;
        (
            format!("{}, then `destroy` {}", finished.exit, destroy.exit),
            finished.exit == Exit::Signal(9) && destroy.exit == Exit::Code(0),
        )
    } else {
        (finished.exit.to_string(), finished.exit == Exit::Code(130))
    };
    let checks = vec![Check::new(
        &format!("{} during {phase:?}", signal_name(signal)),
        hit,
    )];
    let cluster = cluster_clean(&lab.client, &uuid).await;
    let host = lab.down().await;
    Outcome {
        expected: expected.into(),
        observed,
        exit_held,
        lost: nothing_lost(&dir),
        leaked: all_held(vec![cluster, host]),
        checks,
        output: finished.tail(),
    }
}

/// A signal during `run --lab`'s own bring-up: the lab it was making must be gone afterwards
/// (SIGKILL: after `lab down --state-dir`, the command the run's second-signal message names).
async fn bring_up_signal(s: &mut Suite, signal: nix::sys::signal::Signal) -> Outcome {
    let case = format!("{}-bring-up", signal_name(signal).to_lowercase());
    let (id, uuid) = s.ids(&case);
    let kill = signal == nix::sys::signal::Signal::SIGKILL;
    let expected = if kill {
        "SIGKILL, then `lab down` 0"
    } else {
        "130"
    };
    let results = tempfile::tempdir().expect("tempdir");
    let mut args = strings(&[
        "run",
        "--lab",
        "--lab-id",
        &id,
        "--profile",
        PROFILE,
        "--uuid",
        &uuid,
    ]);
    args.extend(strings(&[
        "--results-dir",
        &results.path().display().to_string(),
    ]));
    let mut run = Running::spawn(&args);
    let state_dir = PathBuf::from(format!("/run/vmbgp-bench-run-{}", run.pid));
    let mut hit = Err("the lab's namespaces never appeared".to_string());
    if run.wait_stderr("bringing up the lab", PHASE_LIMIT).await {
        let until = Instant::now() + PHASE_LIMIT;
        while Instant::now() < until && !run.exited() {
            if !netns_of(&id).is_empty() {
                hit = if run.stderr_has("results in") {
                    Err("too late: the run had started".into())
                } else {
                    Ok(format!(
                        "{} lab namespaces made, run not started",
                        netns_of(&id).len()
                    ))
                };
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    run.signal(if hit.is_ok() {
        signal
    } else {
        nix::sys::signal::Signal::SIGKILL
    });
    let finished = run.finish().await;
    let (observed, exit_held) = if kill {
        let down = bench(&strings(&[
            "lab",
            "down",
            "--state-dir",
            &state_dir.display().to_string(),
        ]))
        .await;
        (
            format!("{}, then `lab down` {}", finished.exit, down.exit),
            finished.exit == Exit::Signal(9) && down.exit == Exit::Code(0),
        )
    } else {
        (finished.exit.to_string(), finished.exit == Exit::Code(130))
    };
    let mut checks = vec![Check::new(
        &format!("{} during bring-up", signal_name(signal)),
        hit,
    )];
    if !kill {
        checks.push(Check::new(
            "says nothing was created",
            if finished.stderr.contains("nothing was created") {
                Ok("\"interrupted during lab bring-up: nothing was created\"".into())
            } else {
                Err(finished.tail())
            },
        ));
    }
    // The run never got to write results: nothing to lose, and nothing may have been written.
    let lost = match std::fs::read_dir(results.path()).map(|d| d.count()) {
        Ok(0) => Ok("nothing measured yet, no results written".to_string()),
        _ => nothing_lost(&results.path().join(&uuid)),
    };
    Outcome {
        expected: expected.into(),
        observed,
        exit_held,
        lost,
        // The lab's API lived in the run's process: with it gone, no object of the run can exist.
        leaked: host_clean(&id, &state_dir).map(|h| format!("lab API gone with the run; {h}")),
        checks,
        output: finished.tail(),
    }
}

// Results directory ----------------------------------------------------------------------------

/// A tmpfs mounted on a directory of the case's tempdir; unmounted when dropped.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, options: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).expect("mountpoint");
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "vmbgp-fault-suite"])
            .arg(dir)
            .status()
            .expect("mount");
        assert!(status.success(), "mount tmpfs on {}", dir.display());
        Tmpfs {
            dir: dir.to_path_buf(),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.dir).status();
    }
}

async fn results_unwritable(s: &mut Suite, case: &str, options: &str, needle: &str) -> Outcome {
    let (id, uuid) = s.ids(case);
    let lab = match KeptLab::up(&id, &[]).await {
        Ok(lab) => lab,
        Err(e) => return Outcome::broken("1", e),
    };
    let scratch = tempfile::tempdir().expect("tempdir");
    let mountpoint = scratch.path().join("results");
    let tmpfs = Tmpfs::mount(&mountpoint, options);
    let run = bench(&lab.run_args(&uuid, &mountpoint, PROFILE, &[])).await;
    let dir = mountpoint.join(&uuid);
    let said = if run.stderr.contains("cannot write results") && run.stderr.contains(needle) {
        Ok(format!("says: cannot write results … {needle}"))
    } else {
        Err(format!("no clear message: {}", run.tail()))
    };
    // Whatever was written must be valid; with no directory at all, nothing was measured.
    let lost = if dir.exists() {
        nothing_lost_partial(&dir)
    } else {
        Ok("no results directory could be made; the run stopped before measuring".to_string())
    };
    let cluster = cluster_clean(&lab.client, &uuid).await;
    drop(tmpfs);
    let mounted = if std::fs::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .contains(&mountpoint.display().to_string())
    {
        Err("the tmpfs is still mounted".to_string())
    } else {
        Ok(String::new())
    };
    let host = lab.down().await;
    Outcome {
        expected: "1".into(),
        observed: run.exit.to_string(),
        exit_held: run.exit == Exit::Code(1),
        lost,
        leaked: all_held(vec![cluster, host, mounted]),
        checks: vec![Check::new("message", said)],
        output: run.tail(),
    }
}

/// For a results directory the disk could not hold: every file there is valid JSON and no
/// temporary file is left (the rest could not be written, and the run said so).
fn nothing_lost_partial(dir: &Path) -> Result<String, String> {
    let mut problems = Vec::new();
    let mut files = 0;
    for entry in std::fs::read_dir(dir).map_err(|e| e.to_string())?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.contains(".tmp-") {
            problems.push(format!("temporary file left: {name}"));
        } else if name.ends_with(".json") {
            files += 1;
            let ok = std::fs::read_to_string(entry.path())
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .is_some();
            if !ok {
                problems.push(format!("{name}: not valid JSON"));
            }
        }
    }
    if problems.is_empty() {
        Ok(format!(
            "the {files} files written are valid JSON; no temporary file left"
        ))
    } else {
        Err(problems.join("; "))
    }
}

// Foreign objects ------------------------------------------------------------------------------

async fn foreign_objects(s: &mut Suite) -> Outcome {
    let (id, uuid) = s.ids("foreign");
    let lab = match KeptLab::up(&id, &[]).await {
        Ok(lab) => lab,
        Err(e) => return Outcome::broken("0", e),
    };
    common::create_foreign_objects(&lab.client, FRR_NAMESPACE).await;
    let before = common::labelled(&lab.client, "someone-else").await;
    let results = tempfile::tempdir().expect("tempdir");
    let started = Instant::now();
    let run = bench(&lab.run_args(&uuid, results.path(), PROFILE, &[])).await;
    let took = started.elapsed();
    let after = common::labelled(&lab.client, "someone-else").await;
    let untouched = match (&before, &after) {
        (Ok(b), Ok(a)) if a == b => Ok(format!("{} foreign objects untouched", b.len())),
        _ => Err(format!(
            "foreign objects before {before:?}, after {after:?}"
        )),
    };
    let prompt = if took < Duration::from_secs(60) {
        Ok(format!(
            "ended in {}s (no wait on others' objects)",
            took.as_secs()
        ))
    } else {
        Err(format!("took {}s", took.as_secs()))
    };
    let dir = results.path().join(&uuid);
    let checks = vec![Check::new(
        "foreign objects",
        all_held(vec![untouched, prompt]),
    )];
    let cluster = cluster_clean(&lab.client, &uuid).await;
    let host = lab.down().await;
    Outcome {
        expected: "0".into(),
        observed: run.exit.to_string(),
        exit_held: run.exit == Exit::Code(0),
        lost: nothing_lost(&dir),
        leaked: all_held(vec![cluster, host]),
        checks,
        output: run.tail(),
    }
}

// ---------------------------------------------------------------------------------------------
// The matrix

/// (case, fault, injected how), in the issue's order.
const CASES: &[(&str, &str, &str)] = &[
    (
        "api-errors",
        "API 5xx and 429 on 10 % of requests",
        "`--lab-fault-api-error-rate-500 0.1 --lab-fault-api-error-rate-429 0.1` (every resource request of every client: harness, frr-k8s)",
    ),
    (
        "watch-cut",
        "watch connections cut every 10 s (here 1 s)",
        "`--lab-fault-watch-cut-every 1s`",
    ),
    (
        "watch-410",
        "a stale resourceVersion (410) mid-watch",
        "`--lab-fault-watch-expire` at 1, 2.5, 4, 5.5 and 7 s: the API forgets its watch history and cuts every watch; each resume gets 410 Gone",
    ),
    (
        "watch-410-always",
        "410 Gone on every resume (clients live on re-lists)",
        "`--lab-fault-gone-on-resume`",
    ),
    (
        "bgpd-restart",
        "bgpd on one node restarted mid-run (ext with static neighbours)",
        "`--lab-fault-bgpd-restart node-1@5s`, `--node-ips` (ext sends BMP Peer Down)",
    ),
    (
        "bgpd-restart-listen",
        "bgpd on one node restarted mid-run (ext with `bgp listen range`, the default)",
        "`--lab-fault-bgpd-restart node-1@5s`",
    ),
    (
        "bmp-drop",
        "the external router's BMP session dropped and re-established",
        "`--lab-fault-bmp-drop 4s` (`ss -K` on bgpd's BMP connection in ext's netns; bgpd reconnects)",
    ),
    (
        "es-down",
        "Elasticsearch down for the whole run, then `index` later",
        "`--es-server` on a closed port, `--es-timeout 2s`; then `index` into the in-repo ES server",
    ),
    (
        "es-items-429",
        "ES item failures: 429, then success",
        "in-repo ES server: the first `_bulk` answers 429 for 3 items",
    ),
    (
        "es-items-400",
        "ES item failures: 400",
        "in-repo ES server: the first `_bulk` answers 400 for 1 item",
    ),
    (
        "sigint-bring-up",
        "SIGINT during bring-up",
        "`run --lab`: once the lab's namespaces exist",
    ),
    (
        "sigterm-bring-up",
        "SIGTERM during bring-up",
        "`run --lab`: once the lab's namespaces exist",
    ),
    (
        "sigkill-bring-up",
        "SIGKILL during bring-up, then `lab down --state-dir`",
        "`run --lab`: once the lab's namespaces exist",
    ),
    (
        "sigint-creation",
        "SIGINT during creation",
        "first of 2 VMs created (creates at 2/s)",
    ),
    (
        "sigterm-creation",
        "SIGTERM during creation",
        "first of 2 VMs created (creates at 2/s)",
    ),
    (
        "sigkill-creation",
        "SIGKILL during creation, then `destroy --uuid`",
        "first of 2 VMs created (creates at 2/s)",
    ),
    (
        "sigint-probing",
        "SIGINT during probing",
        "1 s after both VMs are Ready, while probes await 100 replies in a row (5 s)",
    ),
    (
        "sigterm-probing",
        "SIGTERM during probing",
        "1 s after both VMs are Ready, while probes await 100 replies in a row (5 s)",
    ),
    (
        "sigkill-probing",
        "SIGKILL during probing, then `destroy --uuid`",
        "1 s after both VMs are Ready, while probes await 100 replies in a row (5 s)",
    ),
    (
        "sigint-throughput",
        "SIGINT during throughput",
        "1 s into the 3 s TCP throughput test",
    ),
    (
        "sigterm-throughput",
        "SIGTERM during throughput",
        "1 s into the 3 s TCP throughput test",
    ),
    (
        "sigkill-throughput",
        "SIGKILL during throughput, then `destroy --uuid`",
        "1 s into the 3 s TCP throughput test",
    ),
    (
        "sigint-cleanup",
        "SIGINT during cleanup",
        "once cleanup's first delete is seen (deletes at 2/s)",
    ),
    (
        "sigterm-cleanup",
        "SIGTERM during cleanup",
        "once cleanup's first delete is seen (deletes at 2/s)",
    ),
    (
        "sigkill-cleanup",
        "SIGKILL during cleanup, then `destroy --uuid`",
        "once cleanup's first delete is seen (deletes at 2/s)",
    ),
    (
        "results-readonly",
        "results directory not writable",
        "`--results-dir` on a read-only tmpfs",
    ),
    (
        "disk-full",
        "disk full",
        "`--results-dir` on a 64 KiB tmpfs",
    ),
    (
        "foreign-objects",
        "foreign objects of every kind in the cluster",
        "another run's namespace, CUDN, RouteAdvertisements, FRRConfiguration and persistent-IP VM (its VMI and IPAMClaim) in the lab",
    ),
];

async fn run_case(s: &mut Suite, case: &str) -> Outcome {
    use nix::sys::signal::Signal::{SIGINT, SIGKILL, SIGTERM};
    let signal = |name: &str| match name {
        n if n.starts_with("sigint") => SIGINT,
        n if n.starts_with("sigterm") => SIGTERM,
        _ => SIGKILL,
    };
    match case {
        "api-errors" => api_errors(s).await,
        "watch-cut" => watch_cuts(s).await,
        "watch-410" => watch_expired(s).await,
        "watch-410-always" => gone_on_resume(s).await,
        "bgpd-restart" => bgpd_restart_static(s).await,
        "bgpd-restart-listen" => bgpd_restart_dynamic(s).await,
        "bmp-drop" => bmp_drop(s).await,
        "es-down" => es_down(s).await,
        "es-items-429" => es_items(s, case, vec![429, 429, 429], Exit::Code(0)).await,
        "es-items-400" => es_items(s, case, vec![400], Exit::Code(6)).await,
        "results-readonly" => {
            results_unwritable(s, case, "ro,size=1m", "Read-only file system").await
        }
        "disk-full" => results_unwritable(s, case, "size=64k", "No space left on device").await,
        "foreign-objects" => foreign_objects(s).await,
        c if c.ends_with("-bring-up") => bring_up_signal(s, signal(c)).await,
        c => {
            let phase = match c.rsplit('-').next() {
                Some("creation") => Phase::Creation,
                Some("probing") => Phase::Probing,
                Some("throughput") => Phase::Throughput,
                _ => Phase::Cleanup,
            };
            signal_case(s, phase, signal(c)).await
        }
    }
}

/// One table cell: held, or the problem (shortened; the full text is in target/tmp/fault-suite/).
fn cell(check: &Check) -> String {
    if check.held {
        "held".to_string()
    } else {
        let mut d = check.detail.replace('|', "/").replace('\n', " ");
        if d.chars().count() > 160 {
            d = d.chars().take(160).collect::<String>() + "…";
        }
        format!("**no**: {d}")
    }
}

fn matrix(rows: &[Row], total: Duration) -> String {
    let mut out = String::new();
    let passed = rows.iter().filter(|r| r.passed()).count();
    let _ = writeln!(
        out,
        "Generated by `VMBGP_WRITE_RELIABILITY=1 cargo test -p vmbgp-bench --test faults -- --include-ignored` \
         ({} cases, {passed} passed, {} failed; {} s in all on {} cores).\n",
        rows.len(),
        rows.len() - passed,
        total.as_secs(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let _ = writeln!(
        out,
        "| # | fault | injected how | expected exit | observed exit | nothing lost | nothing leaked | case checks | result | time |\n\
         |---|---|---|---|---|---|---|---|---|---|"
    );
    for (i, r) in rows.iter().enumerate() {
        let checks: Vec<String> = r
            .checks
            .iter()
            .map(|c| format!("{}: {}", c.name, cell(c)))
            .collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} s |",
            i + 1,
            r.fault,
            r.injected,
            r.expected,
            r.observed,
            cell(&r.lost),
            cell(&r.leaked),
            if checks.is_empty() {
                "—".to_string()
            } else {
                checks.join("; ")
            },
            if r.passed() { "pass" } else { "**FAIL**" },
            r.seconds
        );
    }
    let failed: Vec<&Row> = rows.iter().filter(|r| !r.passed()).collect();
    if !failed.is_empty() {
        let _ = writeln!(out, "\nWhy the failed cases failed:\n");
        for r in failed {
            let mut why = Vec::new();
            if !r.exit_held {
                why.push(format!(
                    "exit {} where the table gives {}",
                    r.observed, r.expected
                ));
            }
            for c in std::iter::once(&r.lost).chain([&r.leaked]).chain(&r.checks) {
                if !c.held {
                    why.push(format!("{}: {}", c.name, c.detail));
                }
            }
            let _ = writeln!(
                out,
                "- `{}`: {}.",
                r.case,
                why.join("; ").replace('\n', " ")
            );
        }
    }
    out
}

const SECTION_INTRO: &str = "## Fault suite

`harness/tests/faults.rs` injects each fault of issue #11's matrix into a small lab run of the real
binary (2 iterations of 2 VMs, `harness/tests/fixtures/faults.yaml`; the signal cases 1 iteration
with every phase slowed so it can be hit) and checks, for every case, the same three invariants:

- **nothing lost**: every JSON file in the run's results directory parses; every per-object
  document's declared fields are each a value or listed under `missing`/`notApplicable` with a
  reason; every VM and network of the plan has its documents (a run cut short: every VM with one
  document has all of its kinds); every quantile without a sample says why; no temporary file left.
- **nothing leaked**: the runs go against a lab that outlives them (`vmbgp-bench lab up` with the
  fault flags, then `run` with the lab's kubeconfig), so afterwards every kind is listed by the
  run's `vmbgp.io/uuid` label through the lab's API, plus VMIs and IPAMClaims in the run's
  namespaces: nothing may be there. Then `lab down`, and no network namespace with the lab's id,
  no process naming its state directory and no state directory may remain. A signal during
  `run --lab`'s own bring-up has no cluster left to list (the lab's API lived in the run's
  process); there the host check is the proof.
- **exit code**: the README's table for the cause (SIGKILL has none: the recovery command's is
  checked instead).

The table between the markers is written by the suite (`VMBGP_WRITE_RELIABILITY=1`); full details
of each row are in `target/tmp/fault-suite/<case>.json` after a run.
";

/// Rewrites the generated part of docs/RELIABILITY.md's "Fault suite" section (creating the file or
/// the section when missing); everything else in the file is kept.
fn write_reliability(table: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/RELIABILITY.md");
    let (begin, end) = ("<!-- fault-suite:begin -->", "<!-- fault-suite:end -->");
    let generated = format!("{begin}\n{table}{end}");
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    let new = match (old.find(begin), old.find(end)) {
        (Some(b), Some(e)) if b < e => format!("{}{generated}{}", &old[..b], &old[e + end.len()..]),
        _ if old.trim().is_empty() => format!("# Reliability\n\n{SECTION_INTRO}\n{generated}\n"),
        _ => format!("{}\n\n{SECTION_INTRO}\n{generated}\n", old.trim_end()),
    };
    std::fs::write(&path, new).expect("write docs/RELIABILITY.md");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root, FRR and iproute2; ci/test.sh runs it (cargo test -- --include-ignored)"]
async fn fault_suite() {
    require_lab_prerequisites();
    let filter: Option<Vec<String>> = std::env::var("VMBGP_FAULT_CASES")
        .ok()
        .filter(|f| !f.trim().is_empty())
        .map(|f| f.split(',').map(|s| s.trim().to_string()).collect());
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fault-suite");
    std::fs::create_dir_all(&out_dir).expect("row directory");
    let mut suite = Suite {
        pid: std::process::id(),
        n: 0,
    };
    let started = Instant::now();
    let mut rows = Vec::new();
    for (case, fault, injected) in CASES {
        if filter
            .as_ref()
            .is_some_and(|f| !f.iter().any(|part| case.contains(part.as_str())))
        {
            continue;
        }
        let case_started = Instant::now();
        let outcome = run_case(&mut suite, case).await;
        let row = Row {
            case: case.to_string(),
            fault: fault.to_string(),
            injected: injected.to_string(),
            expected: outcome.expected,
            observed: outcome.observed,
            exit_held: outcome.exit_held,
            lost: Check::new("nothing lost", outcome.lost),
            leaked: Check::new("nothing leaked", outcome.leaked),
            checks: outcome.checks,
            seconds: case_started.elapsed().as_secs_f64(),
            output: outcome.output,
        };
        eprintln!(
            "fault suite: {case}: {} (expected {}, observed {}) in {:.1} s",
            if row.passed() { "pass" } else { "FAIL" },
            row.expected,
            row.observed,
            row.seconds
        );
        std::fs::write(
            out_dir.join(format!("{case}.json")),
            serde_json::to_string_pretty(&row).expect("row"),
        )
        .expect("write row");
        rows.push(row);
    }
    let table = matrix(&rows, started.elapsed());
    std::fs::write(out_dir.join("matrix.md"), &table).expect("matrix");
    eprintln!("{table}");
    if std::env::var("VMBGP_WRITE_RELIABILITY").as_deref() == Ok("1") {
        assert!(
            filter.is_none(),
            "VMBGP_WRITE_RELIABILITY=1 needs the whole suite (no VMBGP_FAULT_CASES)"
        );
        write_reliability(&table);
    }
    let failed: Vec<String> = rows
        .iter()
        .filter(|r| !r.passed())
        .map(|r| {
            let mut why = Vec::new();
            if !r.exit_held {
                why.push(format!("exit {} (expected {})", r.observed, r.expected));
            }
            for c in std::iter::once(&r.lost).chain([&r.leaked]).chain(&r.checks) {
                if !c.held {
                    why.push(format!("{}: {}", c.name, c.detail));
                }
            }
            format!("{}: {}\n    output: {}", r.case, why.join("; "), r.output)
        })
        .collect();
    assert!(!rows.is_empty(), "no case matched VMBGP_FAULT_CASES");
    assert!(
        failed.is_empty(),
        "{} of {} fault cases failed:\n{}",
        failed.len(),
        rows.len(),
        failed.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// The fault flags themselves (no root: bad input is refused before anything is checked or made)

#[test]
fn lab_fault_flags_are_validated_naming_flag_and_value() {
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["run", "--lab", "--lab-fault-api-error-rate-500", "1.5"],
            &["--lab-fault-api-error-rate-500", "1.5", "from 0 to 1"],
        ),
        (
            &[
                "run",
                "--lab",
                "--lab-fault-api-error-rate-500",
                "0.7",
                "--lab-fault-api-error-rate-429",
                "0.4",
            ],
            &["--lab-fault-api-error-rate-429", "0.4", "at most 1"],
        ),
        (
            &[
                "run",
                "--lab",
                "--nodes",
                "2",
                "--lab-fault-bgpd-restart",
                "node-3@5s",
            ],
            &["--lab-fault-bgpd-restart", "node-3@5s", "node-1..node-2"],
        ),
        (
            &["run", "--lab", "--lab-fault-bgpd-restart", "sw@5s"],
            &["--lab-fault-bgpd-restart", "sw@5s", "unknown router"],
        ),
        (
            &["run", "--lab", "--lab-fault-bgpd-restart", "node-1"],
            &["--lab-fault-bgpd-restart", "node-1", "ROUTER@OFFSET"],
        ),
        (
            &["run", "--lab", "--lab-fault-link-flap", "node-1@5s"],
            &["--lab-fault-link-flap", "node-1@5s", "ROUTER@OFFSET+DOWN"],
        ),
        (
            &["run", "--lab", "--lab-fault-watch-cut-every", "50ms"],
            &["--lab-fault-watch-cut-every", "50ms", "from 100ms"],
        ),
        (
            &["run", "--lab", "--lab-fault-watch-expire", "25h"],
            &["--lab-fault-watch-expire", "25h", "from 0s to 1day"],
        ),
        (
            &["run", "--lab", "--lab-fault-bmp-drop", "soon"],
            &["--lab-fault-bmp-drop", "soon"],
        ),
        (
            &["run", "--lab-fault-bmp-drop", "5s"],
            &["--lab-fault-bmp-drop", "need --lab"],
        ),
        (
            &[
                "lab",
                "up",
                "--state-dir",
                "/nonexistent/vmbgp-fault-flags",
                "--nodes",
                "1",
                "--lab-fault-link-flap",
                "node-2@1s+1s",
            ],
            &["--lab-fault-link-flap", "node-2@1s+1s", "node-1..node-1"],
        ),
    ];
    for (args, expect) in cases {
        let (code, _, stderr) = common::bench_blocking(args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        for e in *expect {
            assert!(stderr.contains(e), "{args:?}: {e:?} not in: {stderr}");
        }
    }
    assert!(!Path::new("/nonexistent/vmbgp-fault-flags").exists());
}

/// The declared-fields check catches what it must: a field with neither value nor reason, an empty
/// reason, a null.
#[test]
fn the_nothing_lost_check_is_not_vacuous() {
    let dir = tempfile::tempdir().expect("tempdir");
    let summary = json!([{"metricName": "jobSummary", "endTimestamp": "x", "executionErrors": [],
        "measurements": ["vmEgress"], "jobConfig": {"vms": [{"namespace": "n", "name": "vm-1"}, {"namespace": "n", "name": "vm-2"}], "networks": []}}]);
    std::fs::write(dir.path().join("jobSummary.json"), summary.to_string()).expect("write");
    let good = json!([{"metricName": "vmEgressMeasurement", "vmName": "vm-1", "sourceAddressSeen": "198.19.0.10", "unNATed": true},
        {"metricName": "vmEgressMeasurement", "vmName": "vm-2", "missing": {"sourceAddressSeen": "never called", "unNATed": "never called"}}]);
    let egress = dir.path().join("vmEgressMeasurement-x.json");
    std::fs::write(&egress, good.to_string()).expect("write");
    assert!(
        nothing_lost(dir.path()).is_ok(),
        "{:?}",
        nothing_lost(dir.path())
    );
    for bad in [
        json!([{"metricName": "vmEgressMeasurement", "vmName": "vm-1", "sourceAddressSeen": "198.19.0.10"},
               {"metricName": "vmEgressMeasurement", "vmName": "vm-2", "missing": {"sourceAddressSeen": "x", "unNATed": "x"}}]),
        json!([{"metricName": "vmEgressMeasurement", "vmName": "vm-1", "sourceAddressSeen": "198.19.0.10", "unNATed": true},
               {"metricName": "vmEgressMeasurement", "vmName": "vm-2", "missing": {"sourceAddressSeen": "", "unNATed": "x"}}]),
        json!([{"metricName": "vmEgressMeasurement", "vmName": "vm-1", "sourceAddressSeen": null, "unNATed": true},
               {"metricName": "vmEgressMeasurement", "vmName": "vm-2", "missing": {"sourceAddressSeen": "x", "unNATed": "x"}}]),
        json!([{"metricName": "vmEgressMeasurement", "vmName": "vm-1", "sourceAddressSeen": "198.19.0.10", "unNATed": true}]),
    ] {
        std::fs::write(&egress, bad.to_string()).expect("write");
        assert!(nothing_lost(dir.path()).is_err(), "accepted {bad}");
    }
    std::fs::write(&egress, "[{").expect("write");
    assert!(
        nothing_lost(dir.path())
            .expect_err("corrupt JSON accepted")
            .contains("not valid JSON")
    );
}

/// A run interrupted before its second VM was created has no documents for that VM, and that is
/// not a loss. The jobSummary says so the way the harness writes it (kube-burner's
/// `executionErrors` is one string): read as an array, the interruption went unseen and the case
/// failed whenever the signal beat the second create.
#[test]
fn an_interrupted_run_need_not_document_vms_it_never_created() {
    let dir = tempfile::tempdir().expect("tempdir");
    let summary = json!([{"metricName": "jobSummary", "endTimestamp": "x",
        "executionErrors": "interrupted by a signal; VirtualMachine n/vm-1: 500",
        "measurements": ["vmEgress"], "jobConfig": {"vms": [{"namespace": "n", "name": "vm-1"}, {"namespace": "n", "name": "vm-2"}], "networks": []}}]);
    std::fs::write(dir.path().join("jobSummary.json"), summary.to_string()).expect("write");
    let only_first = json!([{"metricName": "vmEgressMeasurement", "vmName": "vm-1", "sourceAddressSeen": "198.19.0.10", "unNATed": true}]);
    std::fs::write(
        dir.path().join("vmEgressMeasurement-x.json"),
        only_first.to_string(),
    )
    .expect("write");
    let held = nothing_lost(dir.path());
    assert!(
        held.as_ref().is_ok_and(|s| s.contains("cut short")),
        "{held:?}"
    );
}
