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
