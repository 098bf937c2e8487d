//! Helpers the harness's integration tests share: running the real binary, and a kubeconfig for a
//! local API address.
#![allow(dead_code)] // each test crate uses a different subset

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

/// Exit code, stdout and stderr of one run of the binary.
pub type Outcome = (Option<i32>, String, String);

fn outcome(output: Output) -> Outcome {
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Runs `vmbgp-bench` with `args` without blocking the runtime (tests that serve the lab in-process).
pub async fn bench<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Outcome {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_vmbgp-bench"))
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .expect("run binary");
    outcome(output)
}

/// Runs `vmbgp-bench` with `args`, blocking.
pub fn bench_blocking<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Outcome {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_vmbgp-bench"))
        .args(args)
        .output()
        .expect("run binary");
    outcome(output)
}

/// A kubeconfig file whose only cluster is `http://127.0.0.1:PORT`.
pub fn kubeconfig_for(port: u16) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("tempfile");
    write!(
        file,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: local\n  cluster:\n    server: http://127.0.0.1:{port}\n\
         contexts:\n- name: local\n  context:\n    cluster: local\ncurrent-context: local\n"
    )
    .expect("write kubeconfig");
    file
}

/// The network namespaces of one lab.
pub fn netns_of(lab_id: &str) -> Vec<String> {
    let output = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.contains(&format!("-{lab_id}-")))
        .map(str::to_string)
        .collect()
}

/// The documents of one kind in a results directory (`prefix`: the file name's start).
pub fn documents(dir: &Path, prefix: &str) -> Vec<Value> {
    let file = std::fs::read_dir(dir)
        .expect("results")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix))
        })
        .unwrap_or_else(|| panic!("no {prefix} file in {}", dir.display()));
    let text = std::fs::read_to_string(file).expect("read");
    serde_json::from_str::<Value>(&text)
        .expect("json")
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Fails with what is missing unless the full lab can run here (root, FRR).
pub fn require_lab_prerequisites() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the lab tests need root (network namespaces, FRR); ci/test.sh runs as root"
    );
    assert!(
        Path::new("/usr/lib/frr/bgpd").exists(),
        "FRR is missing: apt-get install frr (ci/test.sh installs it)"
    );
}

/// Every process whose command line names `marker` (e.g. a lab's state directory).
pub fn processes_naming(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().parse::<u32>().is_err() {
            continue;
        }
        if let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(marker) {
                found.push(cmd);
            }
        }
    }
    found
}

/// Every kind a run creates, plus the claims and VMIs made for it: (group, version, kind, plural).
pub const KINDS: &[(&str, &str, &str, &str)] = &[
    ("", "v1", "Namespace", "namespaces"),
    (
        "k8s.ovn.org",
        "v1",
        "ClusterUserDefinedNetwork",
        "clusteruserdefinednetworks",
    ),
    (
        "k8s.ovn.org",
        "v1",
        "RouteAdvertisements",
        "routeadvertisements",
    ),
    (
        "frrk8s.metallb.io",
        "v1beta1",
        "FRRConfiguration",
        "frrconfigurations",
    ),
    ("kubevirt.io", "v1", "VirtualMachine", "virtualmachines"),
    (
        "kubevirt.io",
        "v1",
        "VirtualMachineInstance",
        "virtualmachineinstances",
    ),
    ("k8s.cni.cncf.io", "v1alpha1", "IPAMClaim", "ipamclaims"),
    (
        "kubevirt.io",
        "v1",
        "VirtualMachineInstanceMigration",
        "virtualmachineinstancemigrations",
    ),
];

/// The API resource of one of [`KINDS`].
pub fn api_resource(kind: &(&str, &str, &str, &str)) -> kube::discovery::ApiResource {
    let (group, version, kind, plural) = *kind;
    kube::discovery::ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: if group.is_empty() {
            version.into()
        } else {
            format!("{group}/{version}")
        },
        kind: kind.into(),
        plural: plural.into(),
    }
}

/// All objects of one of [`KINDS`], cluster-wide.
pub fn api(
    client: &kube::Client,
    kind: &(&str, &str, &str, &str),
) -> kube::Api<kube::api::DynamicObject> {
    kube::Api::all_with(client.clone(), &api_resource(kind))
}

/// A client for a kubeconfig the lab wrote (its server, CA and bearer token), with kube's own
/// retries off.
pub async fn client_for(kubeconfig: &Path) -> kube::Client {
    let mut config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(kubeconfig).expect("read kubeconfig"),
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .expect("kubeconfig");
    config.default_retry = false;
    kube::Client::try_from(config).expect("client")
}

/// Objects of every kind in [`KINDS`] carrying `uuid`'s run label, as `Kind namespace/name`.
/// Errors (an API with injected faults) are retried for a while; the last one is returned.
pub async fn labelled(client: &kube::Client, uuid: &str) -> Result<Vec<String>, String> {
    let selector = format!("vmbgp.io/uuid={uuid}");
    let mut found = Vec::new();
    for kind in KINDS {
        let params = kube::api::ListParams::default().labels(&selector);
        for o in list_retrying(&api(client, kind), &params).await? {
            found.push(format!(
                "{} {}/{}",
                kind.2,
                o.metadata.namespace.unwrap_or_default(),
                o.metadata.name.unwrap_or_default()
            ));
        }
    }
    Ok(found)
}

/// A list, retried (up to ~10 s) while the API answers errors.
pub async fn list_retrying(
    api: &kube::Api<kube::api::DynamicObject>,
    params: &kube::api::ListParams,
) -> Result<Vec<kube::api::DynamicObject>, String> {
    let mut last = String::new();
    for _ in 0..100 {
        match api.list(params).await {
            Ok(list) => return Ok(list.items),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Err(format!("listing failed for 10 s: {last}"))
}

/// Creates objects of every kind that belong to someone else — a namespace, a CUDN,
/// RouteAdvertisements and an FRRConfiguration labelled with another run's uuid
/// (`someone-else`), and a persistent-IP VM in that namespace, whose VMI and IPAMClaim the lab
/// makes — and waits until the foreign VM has its claim.
pub async fn create_foreign_objects(client: &kube::Client, frr_namespace: &str) {
    use kube::api::PostParams;
    let create = |kind: (&'static str, &'static str, &'static str, &'static str),
                  namespace: Option<String>,
                  body: Value| {
        let client = client.clone();
        async move {
            let ar = api_resource(&kind);
            let api: kube::Api<kube::api::DynamicObject> = match namespace {
                Some(ns) => kube::Api::namespaced_with(client, &ns, &ar),
                None => kube::Api::all_with(client, &ar),
            };
            api.create(
                &PostParams::default(),
                &serde_json::from_value(body).expect("object"),
            )
            .await
            .unwrap_or_else(|e| panic!("foreign {}: {e}", kind.2));
        }
    };
    let other = serde_json::json!({"vmbgp.io/uuid": "someone-else"});
    create(KINDS[0], None, serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "other-team", "labels": {"k8s.ovn.org/primary-user-defined-network": "", "team": "other"}}})).await;
    create(KINDS[1], None, serde_json::json!({"apiVersion": "k8s.ovn.org/v1", "kind": "ClusterUserDefinedNetwork",
        "metadata": {"name": "other-net", "labels": other},
        "spec": {"namespaceSelector": {"matchLabels": {"team": "other"}}, "network": {"topology": "Layer2", "layer2": {
            "role": "Primary", "subnets": ["198.19.200.0/24"], "ipam": {"lifecycle": "Persistent"}}}}})).await;
    create(KINDS[2], None, serde_json::json!({"apiVersion": "k8s.ovn.org/v1", "kind": "RouteAdvertisements",
        "metadata": {"name": "other-net", "labels": other},
        "spec": {"advertisements": ["PodNetwork"], "nodeSelector": {}, "frrConfigurationSelector": {"matchLabels": {"team": "other"}},
            "networkSelectors": [{"networkSelectionType": "ClusterUserDefinedNetworks",
                "clusterUserDefinedNetworkSelector": {"networkSelector": {"matchLabels": {"vmbgp.io/uuid": "someone-else"}}}}]}})).await;
    create(KINDS[3], Some(frr_namespace.to_string()), serde_json::json!({"apiVersion": "frrk8s.metallb.io/v1beta1", "kind": "FRRConfiguration",
        "metadata": {"name": "other-peering", "namespace": frr_namespace, "labels": {"team": "other", "vmbgp.io/uuid": "someone-else"}},
        "spec": {"bgp": {"routers": [{"asn": 64513, "neighbors": [{"address": "198.18.0.155", "asn": 64512}]}]}}})).await;
    // A persistent-IP VM of another team: the lab's KubeVirt and IPAM make its VMI and claim.
    create(KINDS[4], Some("other-team".to_string()), serde_json::json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
        "metadata": {"name": "db-1", "namespace": "other-team", "labels": other},
        "spec": {"runStrategy": "Always", "template": {"spec": {
            "domain": {"devices": {"interfaces": [{"name": "default", "binding": {"name": "l2bridge"}}]}, "resources": {"requests": {"memory": "1Gi"}}},
            "networks": [{"name": "default", "pod": {}}]}}}})).await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let claims = api(client, &KINDS[6])
            .list(&kube::api::ListParams::default())
            .await
            .expect("claims");
        if claims
            .items
            .iter()
            .any(|c| c.metadata.namespace.as_deref() == Some("other-team"))
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the foreign VM never got its claim"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
