//! What the controller's lab tests share: an in-process lab with a kubeconfig and a client of it,
//! creating objects of any kind, and waiting for a VMI to run.
#![allow(dead_code)] // each test crate uses a different subset

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kube::api::{DynamicObject, PostParams};
use kube::discovery::ApiResource;
use kube::{Api, Client};
use serde_json::Value;
use vmbgp_lab_api::launch::{Lab, LabConfig};

/// Generous: a wait that fails is a bug, and its length is never asserted.
pub const WAIT: Duration = Duration::from_secs(60);

/// An API resource by group, version, kind and plural, as the controller builds its own.
pub fn ar(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    vmbgp_controller::controller::api_resource(group, version, kind, plural)
}

/// A started lab, the kubeconfig it wrote (inside `dir`, kept alive with it) and a client of it.
pub struct LabClient {
    pub lab: Lab,
    pub client: Client,
    pub kubeconfig: PathBuf,
    pub dir: tempfile::TempDir,
}

pub async fn lab_client(config: LabConfig) -> LabClient {
    let lab = Lab::start(config).await.expect("lab starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    lab.write_kubeconfig(&kubeconfig).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&kubeconfig).expect("read kubeconfig"),
        &Default::default(),
    )
    .await
    .expect("config");
    let client = Client::try_from(config).expect("client");
    LabClient {
        lab,
        client,
        kubeconfig,
        dir,
    }
}

/// Creates `value` as an object of `resource`, namespaced when `ns` is given.
pub async fn create(client: &Client, ns: Option<&str>, resource: ApiResource, value: Value) {
    let api: Api<DynamicObject> = match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    let object: DynamicObject = serde_json::from_value(value).expect("object");
    api.create(&PostParams::default(), &object)
        .await
        .expect("create");
}

/// The VMI `name` in `ns` once it is Running.
pub async fn running_vmi(lab: &Lab, ns: &str, name: &str) -> Arc<Value> {
    lab.wait_for(
        "kubevirt.io/v1",
        "VirtualMachineInstance",
        Some(ns),
        name,
        WAIT,
        |o| o["status"]["phase"] == "Running",
    )
    .await
    .expect("VMI Running")
}
