//! The real binary against the lab: `vmbgp-controller run --kubeconfig ...` serves /healthz,
//! /readyz and /metrics on loopback, writes a VM's host route, and exits cleanly on SIGTERM.

use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use vmbgp_controller::controller::frr_resource;
use vmbgp_controller::desired::config_name;
use vmbgp_lab_api::launch::LabConfig;

mod common;
use common::{LabClient, WAIT, ar, create, lab_client};

const FRR_NS: &str = "frr-k8s-system";

/// `GET path` on loopback; returns (status code, body).
async fn get(addr: &str, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .expect("request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("response");
    let code = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

#[tokio::test]
async fn binary_serves_endpoints_writes_routes_and_stops_on_sigterm() {
    let LabClient {
        lab,
        client,
        kubeconfig,
        dir: _dir,
    } = lab_client(LabConfig {
        nodes: 1,
        frr_namespace: FRR_NS.into(),
        ..LabConfig::default()
    })
    .await;
    create(&client, None, ar("", "v1", "Namespace", "namespaces"), json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "vms", "labels": {"k8s.ovn.org/primary-user-defined-network": "", "vmbgp.io/cudn": "net1"}}})).await;
    // Opted in by the --network-selector flag, not by the label.
    create(&client, None, ar("k8s.ovn.org", "v1", "ClusterUserDefinedNetwork", "clusteruserdefinednetworks"), json!({
        "apiVersion": "k8s.ovn.org/v1", "kind": "ClusterUserDefinedNetwork",
        "metadata": {"name": "net1", "labels": {"vmbgp.io/advertise": "true"}},
        "spec": {"namespaceSelector": {"matchLabels": {"vmbgp.io/cudn": "net1"}},
            "network": {"topology": "Layer2", "layer2": {"role": "Primary", "subnets": ["198.19.0.0/24"], "ipam": {"lifecycle": "Persistent"}}}}})).await;
    create(&client, Some(FRR_NS), frr_resource(), json!({"apiVersion": "frrk8s.metallb.io/v1beta1", "kind": "FRRConfiguration",
        "metadata": {"name": "peer-ext", "namespace": FRR_NS, "labels": {"vmbgp.io/frr-template": "true"}},
        "spec": {"bgp": {"routers": [{"asn": 64513, "neighbors": [{"address": "198.18.0.155", "asn": 64512}]}]}}})).await;
    create(&client, None, ar("k8s.ovn.org", "v1", "RouteAdvertisements", "routeadvertisements"), json!({
        "apiVersion": "k8s.ovn.org/v1", "kind": "RouteAdvertisements", "metadata": {"name": "ra1"},
        "spec": {"advertisements": ["PodNetwork"], "nodeSelector": {},
            "frrConfigurationSelector": {"matchLabels": {"vmbgp.io/frr-template": "true"}},
            "networkSelectors": [{"networkSelectionType": "ClusterUserDefinedNetworks",
                "clusterUserDefinedNetworkSelector": {"networkSelector": {"matchLabels": {"vmbgp.io/advertise": "true"}}}}]}})).await;

    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_vmbgp-controller"))
        .args([
            "run",
            "--frr-namespace",
            FRR_NS,
            "--network-selector",
            "vmbgp.io/advertise=true",
            "--no-leader-election",
            "--metrics-addr",
            "127.0.0.1:0",
        ])
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let pid = child.id().expect("pid");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let addr = tokio::time::timeout(WAIT, async {
        while let Some(line) = lines.next_line().await.expect("stderr line") {
            if let Some(rest) = line.split("addr=").nth(1) {
                return rest.split_whitespace().next().map(str::to_string);
            }
        }
        None
    })
    .await
    .expect("address logged in time")
    .expect("address logged");
    // Keep draining stderr so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    assert_eq!(get(&addr, "/healthz").await.0, 200);
    tokio::time::timeout(WAIT, async {
        while get(&addr, "/readyz").await.0 != 200 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("ready");

    create(&client, Some("vms"), ar("kubevirt.io", "v1", "VirtualMachine", "virtualmachines"), json!({
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "metadata": {"name": "vm-1", "namespace": "vms"},
        "spec": {"runStrategy": "Always", "template": {
            "metadata": {"annotations": {"network.kubevirt.io/addresses": "{\"default\": [\"198.19.0.20\"]}"}},
            "spec": {"domain": {"devices": {"interfaces": [{"name": "default", "binding": {"name": "l2bridge"}}]},
                "resources": {"requests": {"memory": "1Gi"}}}, "networks": [{"name": "default", "pod": {}}]}}}})).await;
    let config = lab
        .wait_for(
            "frrk8s.metallb.io/v1beta1",
            "FRRConfiguration",
            Some(FRR_NS),
            &config_name("node-1"),
            WAIT,
            |c| c["spec"]["bgp"]["routers"][0]["prefixes"] == json!(["198.19.0.20/32"]),
        )
        .await
        .expect("host route written by the binary");
    assert_eq!(
        config["metadata"]["labels"]["vmbgp.io/controller-instance"],
        "default"
    );
    tokio::time::timeout(WAIT, async {
        while !get(&addr, "/metrics")
            .await
            .1
            .contains("vmbgp_controller_routes_advertised{node=\"node-1\"} 1")
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("metrics show the route");

    // SIGTERM by the PID this test started: a clean exit.
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("exits")
        .expect("wait");
    assert!(exit.success(), "{exit:?}");
    lab.stop().await.expect("lab stops");
}
