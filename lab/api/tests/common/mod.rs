//! Shared helpers for the lab's integration tests: start a lab, write its kubeconfig, build a kube client.

#![allow(dead_code)]

use std::path::PathBuf;

use vmbgp_lab_api::{Lab, LabConfig};

pub struct TestLab {
    pub lab: Lab,
    pub kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestLab {
    pub fn from_parts(lab: Lab, kubeconfig: PathBuf, dir: tempfile::TempDir) -> Self {
        TestLab {
            lab,
            kubeconfig,
            _dir: dir,
        }
    }
}

pub async fn start(config: LabConfig) -> TestLab {
    let lab = Lab::start(config).await.expect("lab starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    lab.write_kubeconfig(&kubeconfig)
        .expect("kubeconfig written");
    TestLab {
        lab,
        kubeconfig,
        _dir: dir,
    }
}

/// Sends raw HTTP bytes to the lab over TLS (trusting its CA, as the kubeconfig does) and reads the reply until
/// the server closes the connection (send HTTP/1.0 or `Connection: close`).
pub async fn raw_exchange(t: &TestLab, request: &[u8]) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(
            rustls::pki_types::CertificateDer::from_pem_slice(t.lab.ca_pem().as_bytes())
                .expect("CA"),
        )
        .expect("root");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(t.lab.addr())
        .await
        .expect("connect");
    let name = rustls::pki_types::ServerName::from(t.lab.addr().ip());
    let mut stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("TLS handshake");
    stream.write_all(request).await.expect("request");
    let mut response = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        stream.read_to_end(&mut response),
    )
    .await
    .expect("response in time");
    // A server closing without close_notify is fine: the body is complete.
    if let Err(e) = read {
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "read: {e}");
    }
    response
}

/// A kube client built from the lab's kubeconfig, with kube's own retries off (faults must be visible).
pub async fn client(t: &TestLab) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(&t.kubeconfig).expect("kubeconfig parses");
    let mut cfg =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .expect("config");
    cfg.default_retry = false;
    kube::Client::try_from(cfg).expect("client")
}

pub fn api_resource(
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
) -> kube::discovery::ApiResource {
    kube::discovery::ApiResource {
        group: group.to_string(),
        version: version.to_string(),
        api_version: if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        },
        kind: kind.to_string(),
        plural: plural.to_string(),
    }
}

pub fn vm_resource() -> kube::discovery::ApiResource {
    api_resource("kubevirt.io", "v1", "VirtualMachine", "virtualmachines")
}

/// One object of a served kind, for tests that must cover every kind.
#[derive(Debug, Clone)]
pub struct Sample {
    pub kind: vmbgp_lab_api::registry::ResourceKind,
    pub namespace: Option<String>,
    pub name: String,
}

/// Namespace of the VM side of [`populate_every_kind`].
pub const SAMPLE_NS: &str = "sample-vms";

/// Builds, in a lab with its controllers on, a small cluster that holds at least one object of every kind the lab
/// serves, written as the harness and the operators write them (VM → VMI, IPAMClaim; CUDN → NAD; RA →
/// generated FRRConfigurations; a migration; frr-k8s' FRRNodeState and BGPSessionState with their status; a
/// namespaced UDN; a controller's Lease and Event), and returns one sample per served kind. Panics naming any served kind it has no object of,
/// so a newly served kind cannot go untested.
pub async fn populate_every_kind(t: &TestLab) -> Vec<Sample> {
    use serde_json::json;
    use std::time::Duration;
    use vmbgp_lab_api::store::{Patch, WriteOptions};

    let wait = Duration::from_secs(20);
    let lab = &t.lab;
    let store = lab.store();
    let opts = WriteOptions::default();
    let frr_ns = lab.config().frr_namespace.clone();
    let id = |api_version: &str, kind: &str| {
        lab.kind(api_version, kind)
            .unwrap_or_else(|| panic!("{api_version} {kind} is not served"))
    };
    let create = |api_version: &str, kind: &str, ns: Option<&str>, object: serde_json::Value| {
        store
            .create(id(api_version, kind), ns, object, &opts)
            .unwrap_or_else(|e| panic!("create {kind}: {e}"))
    };
    let write_status = |api_version: &str, kind: &str, ns: Option<&str>, name: &str, status| {
        store
            .patch(
                id(api_version, kind),
                ns,
                name,
                Patch::Merge(json!({ "status": status })),
                true,
                &opts,
            )
            .unwrap_or_else(|e| panic!("status of {kind} {name}: {e}"))
    };

    create(
        "v1",
        "Namespace",
        None,
        json!({"metadata": {"name": SAMPLE_NS, "labels": {
        "k8s.ovn.org/primary-user-defined-network": "", "vmbgp.io/network": "sample"}}}),
    );
    create(
        "k8s.ovn.org/v1",
        "ClusterUserDefinedNetwork",
        None,
        json!({
        "metadata": {"name": "sample", "labels": {"vmbgp.io/network": "sample"}},
        "spec": {"namespaceSelector": {"matchLabels": {"vmbgp.io/network": "sample"}},
            "network": {"topology": "Layer2", "layer2": {"role": "Primary", "subnets": ["198.19.7.0/24"],
                "ipam": {"lifecycle": "Persistent"}}}}}),
    );
    create(
        "frrk8s.metallb.io/v1beta1",
        "FRRConfiguration",
        Some(&frr_ns),
        json!({
        "metadata": {"name": "sample-peering", "labels": {"vmbgp.io/role": "frr-template"}},
        "spec": {"nodeSelector": {}, "bgp": {"routers": [{"asn": 64513,
            "neighbors": [{"address": "198.18.0.155", "asn": 64512, "holdTime": "9s", "keepaliveTime": "3s"}]}]}}}),
    );
    create(
        "k8s.ovn.org/v1",
        "RouteAdvertisements",
        None,
        json!({
        "metadata": {"name": "sample"},
        "spec": {"advertisements": ["PodNetwork"], "nodeSelector": {},
            "frrConfigurationSelector": {"matchLabels": {"vmbgp.io/role": "frr-template"}},
            "networkSelectors": [{"networkSelectionType": "ClusterUserDefinedNetworks",
                "clusterUserDefinedNetworkSelector": {"networkSelector": {"matchLabels": {"vmbgp.io/network": "sample"}}}}]}}),
    );
    create(
        "kubevirt.io/v1",
        "VirtualMachine",
        Some(SAMPLE_NS),
        json!({
        "metadata": {"name": "sample-vm", "labels": {"vmbgp.io/run": "sample"}},
        "spec": {"runStrategy": "Always", "template": {
            "metadata": {"annotations": {"network.kubevirt.io/addresses": "{\"default\": [\"198.19.7.10\"]}"}},
            "spec": {"domain": {"devices": {"interfaces": [{"name": "default", "binding": {"name": "l2bridge"}}]},
                "resources": {"requests": {"memory": "1Gi"}}},
            "networks": [{"name": "default", "pod": {}}]}}}}),
    );
    // A namespaced UDN, in a namespace of its own (one primary network per namespace).
    create(
        "v1",
        "Namespace",
        None,
        json!({"metadata": {"name": "sample-udn", "labels": {
        "k8s.ovn.org/primary-user-defined-network": ""}}}),
    );
    create(
        "k8s.ovn.org/v1",
        "UserDefinedNetwork",
        Some("sample-udn"),
        json!({
        "metadata": {"name": "sample-udn"},
        "spec": {"topology": "Layer2", "layer2": {"role": "Primary", "subnets": ["198.19.8.0/24"]}}}),
    );
    // What frr-k8s publishes (lab/net's emulation writes the same shapes).
    create(
        "frrk8s.metallb.io/v1beta1",
        "FRRNodeState",
        None,
        json!({"metadata": {"name": "node-1"}, "spec": {}}),
    );
    write_status(
        "frrk8s.metallb.io/v1beta1",
        "FRRNodeState",
        None,
        "node-1",
        json!({
        "runningConfig": "frr version 10.2\nrouter bgp 64513\n", "lastConversionResult": "success",
        "lastReloadResult": "success"}),
    );
    create(
        "frrk8s.metallb.io/v1beta1",
        "BGPSessionState",
        Some(&frr_ns),
        json!({
        "metadata": {"name": "node-1-sample", "labels": {"frrk8s.metallb.io/node": "node-1",
            "frrk8s.metallb.io/peer": "198.18.0.155", "frrk8s.metallb.io/vrf": ""}},
        "spec": {}}),
    );
    write_status(
        "frrk8s.metallb.io/v1beta1",
        "BGPSessionState",
        Some(&frr_ns),
        "node-1-sample",
        json!({
        "node": "node-1", "peer": "198.18.0.155", "vrf": "", "bgpStatus": "Established", "bfdStatus": "N/A"}),
    );

    // A controller's leader-election Lease and the Warning Event it records on a VMI (as client-go and
    // kube-runtime write them: MicroTimes with six fractional digits).
    create(
        "coordination.k8s.io/v1",
        "Lease",
        Some(SAMPLE_NS),
        json!({
        "metadata": {"name": "sample-lock"},
        "spec": {"holderIdentity": "sample-0", "leaseDurationSeconds": 15, "leaseTransitions": 0,
            "acquireTime": "2026-01-01T00:00:00.000000Z", "renewTime": "2026-01-01T00:00:10.123456Z"}}),
    );
    create(
        "events.k8s.io/v1",
        "Event",
        Some(SAMPLE_NS),
        json!({
        "metadata": {"name": "sample-vm.1"},
        "eventTime": "2026-01-01T00:00:00.000000Z", "type": "Warning", "reason": "HostRouteNodeCapped",
        "action": "AdvertiseHostRoute", "note": "sample",
        "reportingController": "vmbgp-controller", "reportingInstance": "vmbgp-controller",
        "regarding": {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
            "namespace": SAMPLE_NS, "name": "sample-vm"}}),
    );

    lab.wait_for(
        "kubevirt.io/v1",
        "VirtualMachineInstance",
        Some(SAMPLE_NS),
        "sample-vm",
        wait,
        |o| o["status"]["phase"] == "Running",
    )
    .await
    .expect("the sample VMI runs");
    create(
        "kubevirt.io/v1",
        "VirtualMachineInstanceMigration",
        Some(SAMPLE_NS),
        json!({
        "metadata": {"name": "sample-vm-mig"}, "spec": {"vmiName": "sample-vm"}}),
    );
    lab.wait_for(
        "kubevirt.io/v1",
        "VirtualMachineInstanceMigration",
        Some(SAMPLE_NS),
        "sample-vm-mig",
        wait,
        |o| o["status"]["phase"] == "Succeeded",
    )
    .await
    .expect("the sample migration succeeds");
    lab.wait_for(
        "k8s.ovn.org/v1",
        "RouteAdvertisements",
        None,
        "sample",
        wait,
        |o| o["status"]["status"] == "Accepted",
    )
    .await
    .expect("the sample RouteAdvertisements is accepted");
    lab.wait_for(
        "k8s.cni.cncf.io/v1alpha1",
        "IPAMClaim",
        Some(SAMPLE_NS),
        "sample-vm.default",
        wait,
        |_| true,
    )
    .await
    .expect("the sample VM's IPAMClaim");
    lab.wait_for(
        "k8s.cni.cncf.io/v1",
        "NetworkAttachmentDefinition",
        Some(SAMPLE_NS),
        "sample",
        wait,
        |_| true,
    )
    .await
    .expect("the sample CUDN's NAD");

    // The named sample of each kind; any other served kind must at least have some object.
    let named: [(&str, &str, Option<&str>, &str); 15] = [
        ("v1", "Namespace", None, SAMPLE_NS),
        (
            "coordination.k8s.io/v1",
            "Lease",
            Some(SAMPLE_NS),
            "sample-lock",
        ),
        ("events.k8s.io/v1", "Event", Some(SAMPLE_NS), "sample-vm.1"),
        ("v1", "Node", None, "node-1"),
        (
            "k8s.cni.cncf.io/v1",
            "NetworkAttachmentDefinition",
            Some(SAMPLE_NS),
            "sample",
        ),
        (
            "k8s.cni.cncf.io/v1alpha1",
            "IPAMClaim",
            Some(SAMPLE_NS),
            "sample-vm.default",
        ),
        (
            "kubevirt.io/v1",
            "VirtualMachine",
            Some(SAMPLE_NS),
            "sample-vm",
        ),
        (
            "kubevirt.io/v1",
            "VirtualMachineInstance",
            Some(SAMPLE_NS),
            "sample-vm",
        ),
        (
            "kubevirt.io/v1",
            "VirtualMachineInstanceMigration",
            Some(SAMPLE_NS),
            "sample-vm-mig",
        ),
        (
            "k8s.ovn.org/v1",
            "ClusterUserDefinedNetwork",
            None,
            "sample",
        ),
        (
            "k8s.ovn.org/v1",
            "UserDefinedNetwork",
            Some("sample-udn"),
            "sample-udn",
        ),
        ("k8s.ovn.org/v1", "RouteAdvertisements", None, "sample"),
        (
            "frrk8s.metallb.io/v1beta1",
            "FRRConfiguration",
            Some(&frr_ns),
            "sample-peering",
        ),
        ("frrk8s.metallb.io/v1beta1", "FRRNodeState", None, "node-1"),
        (
            "frrk8s.metallb.io/v1beta1",
            "BGPSessionState",
            Some(&frr_ns),
            "node-1-sample",
        ),
    ];
    let mut samples = Vec::new();
    let mut missing = Vec::new();
    for kind in store.registry().kinds() {
        let sample = named
            .iter()
            .find(|(av, k, _, _)| *av == kind.api_version() && *k == kind.kind)
            .map(|(_, _, ns, name)| (ns.map(str::to_string), name.to_string()))
            .or_else(|| {
                let id = id(&kind.api_version(), &kind.kind);
                store.metas(id, None).first().map(|m| {
                    (
                        Some(m.namespace.clone()).filter(|n| !n.is_empty()),
                        m.name.clone(),
                    )
                })
            });
        match sample {
            Some((namespace, name)) => {
                let id = id(&kind.api_version(), &kind.kind);
                assert!(
                    store.get_opt(id, namespace.as_deref(), &name).is_some(),
                    "sample {} {name} was not created",
                    kind.kind
                );
                samples.push(Sample {
                    kind: kind.clone(),
                    namespace,
                    name,
                });
            }
            None => missing.push(format!("{} {}", kind.api_version(), kind.kind)),
        }
    }
    assert!(
        missing.is_empty(),
        "the lab serves kinds the test scenario creates no object of: {missing:?}; add one to \
         populate_every_kind in tests/common/mod.rs"
    );
    samples
}
