//! Lab API benchmark (`cargo bench -p vmbgp-lab-api`): create throughput over HTTP with kube-rs, watch
//! fan-out latency to 10 HTTP watchers, and resident memory with 10,000 running VMs and their claims.
//! Figures go to docs/perf-lab-api.md. Sizes can be scaled with `LAB_BENCH_CREATES` and `LAB_BENCH_VMS`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, DynamicObject, PostParams, WatchEvent, WatchParams};
use serde_json::{Value, json};
use vmbgp_lab_api::store::WriteOptions;
use vmbgp_lab_api::{BootDelay, GroundTruthKind, Lab, LabConfig};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn vm(name: &str) -> Value {
    json!({
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
        "metadata": {"name": name, "labels": {"vmbgp.io/uuid": "bench", "vmbgp.io/job": "bench"}},
        "spec": {"runStrategy": "Always", "template": {"metadata": {"labels": {"vmbgp.io/uuid": "bench"}}, "spec": {
            "domain": {"devices": {"interfaces": [{"name": "default", "binding": {"name": "l2bridge"}}],
                "disks": [{"name": "containerdisk", "disk": {"bus": "virtio"}}]}, "resources": {"requests": {"memory": "1Gi"}}},
            "networks": [{"name": "default", "pod": {}}],
            "volumes": [{"name": "containerdisk", "containerDisk": {"image": "quay.io/containerdisks/fedora:40"}}],
        }}},
    })
}

async fn client(lab: &Lab, dir: &std::path::Path) -> kube::Client {
    let path = dir.join("kubeconfig");
    lab.write_kubeconfig(&path).expect("kubeconfig");
    let kc = kube::config::Kubeconfig::read_from(&path).expect("read kubeconfig");
    let mut cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("config");
    cfg.default_retry = false;
    kube::Client::try_from(cfg).expect("client")
}

fn vm_api(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    let ar = kube::discovery::ApiResource {
        group: "kubevirt.io".into(),
        version: "v1".into(),
        api_version: "kubevirt.io/v1".into(),
        kind: "VirtualMachine".into(),
        plural: "virtualmachines".into(),
    };
    Api::namespaced_with(client.clone(), ns, &ar)
}

fn rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

async fn bench_creates(dir: &std::path::Path) {
    let n = env_usize("LAB_BENCH_CREATES", 10_000);
    let lab = Lab::start(LabConfig {
        controllers: false,
        ..Default::default()
    })
    .await
    .expect("lab");
    let client = client(&lab, dir).await;
    let api = vm_api(&client, "default");
    let objects: Vec<DynamicObject> = (0..n)
        .map(|i| serde_json::from_value(vm(&format!("c-{i}"))).expect("vm"))
        .collect();
    let start = Instant::now();
    futures::stream::iter(objects.iter())
        .map(|o| {
            let api = api.clone();
            async move { api.create(&PostParams::default(), o).await }
        })
        .buffer_unordered(64)
        .try_for_each(|_| async { Ok(()) })
        .await
        .expect("creates succeed");
    let secs = start.elapsed().as_secs_f64();
    // The benchmark's own 10,000 request objects are not the lab's memory.
    drop(objects);
    println!(
        "creates: {n} VirtualMachines over HTTP (kube-rs, 64 in flight, schema validation on): {secs:.2} s = {:.0} creates/s",
        n as f64 / secs
    );
    println!(
        "creates: process RSS with {n} VMs stored, controllers off: {} MB",
        rss_mb()
            .map(|m| format!("{m:.0}"))
            .unwrap_or_else(|| "unavailable".into())
    );
    lab.stop().await.expect("stop");
}

async fn bench_watch_fanout(dir: &std::path::Path) {
    let writes = 2000usize;
    let lab = Lab::start(LabConfig {
        controllers: false,
        ..Default::default()
    })
    .await
    .expect("lab");
    let client = client(&lab, dir).await;
    let api = vm_api(&client, "default");
    let received: Arc<Mutex<Vec<HashMap<String, Instant>>>> =
        Arc::new(Mutex::new(vec![HashMap::new(); 10]));
    let rv = lab.store().resource_version().to_string();
    let mut tasks = Vec::new();
    for w in 0..10 {
        let api = api.clone();
        let received = received.clone();
        let rv = rv.clone();
        let mut stream = api
            .watch(&WatchParams::default().timeout(120), &rv)
            .await
            .expect("watch")
            .boxed();
        tasks.push(tokio::spawn(async move {
            let mut count = 0;
            while let Some(ev) = stream.next().await {
                if let Ok(WatchEvent::Added(o)) = ev {
                    let at = Instant::now();
                    if let Some(n) = o.metadata.name
                        && let Ok(mut r) = received.lock()
                    {
                        r[w].insert(n, at);
                    }
                    count += 1;
                    if count == writes {
                        break;
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let kind = lab.kind("kubevirt.io/v1", "VirtualMachine").expect("kind");
    let mut written = HashMap::new();
    for i in 0..writes {
        let name = format!("w-{i}");
        let w = lab
            .store()
            .create(kind, Some("default"), vm(&name), &WriteOptions::default())
            .expect("create");
        written.insert(name, w.at);
        // Paced writes (one every 500 µs) so the figure is latency, not queueing behind a burst.
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("watchers finish")
            .expect("join");
    }
    let mut hist =
        hdrhistogram::Histogram::<u64>::new_with_bounds(1, 10_000_000, 3).expect("histogram");
    let received = received.lock().map(|r| r.clone()).expect("lock");
    for r in received.iter() {
        for (name, at) in r {
            if let Some(w) = written.get(name) {
                let _ = hist.record(at.saturating_duration_since(*w).as_micros().max(1) as u64);
            }
        }
    }
    println!(
        "watch fan-out: {} deliveries ({} writes x 10 HTTP watchers, kube-rs): p50 {} us, p99 {} us, max {} us (write commit -> watcher has the event)",
        hist.len(),
        writes,
        hist.value_at_quantile(0.5),
        hist.value_at_quantile(0.99),
        hist.max()
    );
    lab.stop().await.expect("stop");
}

async fn bench_memory(dir: &std::path::Path) {
    let n = env_usize("LAB_BENCH_VMS", 10_000);
    let before = rss_mb();
    let lab = Lab::start(LabConfig {
        nodes: 10,
        boot_delay: BootDelay::Fixed { ms: 0 },
        phase_step_ms: 0,
        watch_history: env_usize("LAB_BENCH_HISTORY", LabConfig::default().watch_history),
        watch_channel: env_usize("LAB_BENCH_CHANNEL", LabConfig::default().watch_channel),
        ..Default::default()
    })
    .await
    .expect("lab");
    let client = client(&lab, dir).await;
    let ns_kind = lab.kind("v1", "Namespace").expect("ns");
    let cudn_kind = lab
        .kind("k8s.ovn.org/v1", "ClusterUserDefinedNetwork")
        .expect("cudn");
    lab.store()
        .create(ns_kind, None, json!({"metadata": {"name": "scale", "labels": {"k8s.ovn.org/primary-user-defined-network": "", "net": "scale"}}}), &WriteOptions::default())
        .expect("ns");
    lab.store()
        .create(cudn_kind, None, json!({"apiVersion": "k8s.ovn.org/v1", "kind": "ClusterUserDefinedNetwork", "metadata": {"name": "scale"},
            "spec": {"namespaceSelector": {"matchLabels": {"net": "scale"}}, "network": {"topology": "Layer2", "layer2": {
                "role": "Primary", "subnets": ["198.19.0.0/16"], "ipam": {"lifecycle": "Persistent"}}}}}), &WriteOptions::default())
        .expect("cudn");
    lab.wait_for(
        "k8s.cni.cncf.io/v1",
        "NetworkAttachmentDefinition",
        Some("scale"),
        "scale",
        Duration::from_secs(10),
        |_| true,
    )
    .await
    .expect("nad");
    let api = vm_api(&client, "scale");
    let start = Instant::now();
    // Objects are built lazily so the benchmark's own copies do not inflate the lab's figure.
    futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            async move {
                let o: DynamicObject =
                    serde_json::from_value(vm(&format!("vm-{i:05}"))).expect("vm");
                api.create(&PostParams::default(), &o).await
            }
        })
        .buffer_unordered(64)
        .try_for_each(|_| async { Ok(()) })
        .await
        .expect("creates");
    let created = start.elapsed();
    let vmi_kind = lab
        .kind("kubevirt.io/v1", "VirtualMachineInstance")
        .expect("vmi");
    let claim_kind = lab
        .kind("k8s.cni.cncf.io/v1alpha1", "IPAMClaim")
        .expect("claim");
    let deadline = Instant::now() + Duration::from_secs(600);
    // Counted from ground truth: listing 10,000 VMIs every poll would itself churn memory.
    loop {
        let running = lab.ground_truth().count(GroundTruthKind::VmiRunning);
        if running >= n || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let settled = start.elapsed();
    let running = lab.ground_truth().count(GroundTruthKind::VmiRunning);
    let claims = lab.store().count(claim_kind);
    let after = rss_mb();
    let json_bytes: usize = [
        lab.kind("kubevirt.io/v1", "VirtualMachine").expect("vm"),
        vmi_kind,
        claim_kind,
    ]
    .iter()
    .flat_map(|k| lab.store().all_stored(*k))
    .map(|o| o.json.len())
    .sum();
    println!(
        "memory detail: stored VM+VMI+claim objects serialize to {:.1} MB of JSON; {} ground-truth events in memory",
        json_bytes as f64 / 1e6,
        lab.ground_truth().len()
    );
    println!(
        "memory: {n} VMs created in {:.1} s; {running} VMIs Running and {claims} IPAMClaims after {:.1} s; process RSS {} MB (before the lab: {} MB)",
        created.as_secs_f64(),
        settled.as_secs_f64(),
        after
            .map(|m| format!("{m:.0}"))
            .unwrap_or_else(|| "unavailable".into()),
        before
            .map(|m| format!("{m:.0}"))
            .unwrap_or_else(|| "unavailable".into()),
    );
    lab.stop().await.expect("stop");
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let which = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    rt.block_on(async {
        if which.as_deref().is_none_or(|w| w == "creates") {
            bench_creates(dir.path()).await;
        }
        if which.as_deref().is_none_or(|w| w == "watch") {
            bench_watch_fanout(dir.path()).await;
        }
        if which.as_deref().is_none_or(|w| w == "memory") {
            bench_memory(dir.path()).await;
        }
    });
}
