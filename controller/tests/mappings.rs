//! `mappings backup` / `mappings restore` round trip with the real binary against the lab: back
//! up, delete the namespace, recreate the VMs without addresses, restore, and the same IPs come
//! back; a VM that asks for other addresses is reported as a conflict and left alone.

use std::time::Duration;

use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use vmbgp_controller::mappings::{ADDRESSES_ANNOTATION, MappingFile, read_file};
use vmbgp_lab_api::launch::{Lab, LabConfig};

mod common;
use common::{LabClient, WAIT, ar, lab_client, running_vmi};

const NS: &str = "vms";

fn vms(client: &Client) -> Api<DynamicObject> {
    Api::namespaced_with(
        client.clone(),
        NS,
        &ar("kubevirt.io", "v1", "VirtualMachine", "virtualmachines"),
    )
}

async fn create(api: &Api<DynamicObject>, value: Value) {
    let object: DynamicObject = serde_json::from_value(value).expect("object");
    api.create(&PostParams::default(), &object)
        .await
        .expect("create");
}

async fn namespace(client: &Client) {
    let api: Api<DynamicObject> =
        Api::all_with(client.clone(), &ar("", "v1", "Namespace", "namespaces"));
    create(&api, json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": NS, "labels": {"k8s.ovn.org/primary-user-defined-network": "", "vmbgp.io/cudn": "net1"}}})).await;
}

fn vm(name: &str, run: &str, addresses: Option<&str>) -> Value {
    let mut template_meta = json!({});
    if let Some(a) = addresses {
        template_meta["annotations"] = json!({ADDRESSES_ANNOTATION: a});
    }
    json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "metadata": {"name": name, "namespace": NS},
        "spec": {"runStrategy": run, "template": {"metadata": template_meta, "spec": {
            "domain": {"devices": {"interfaces": [{"name": "default", "binding": {"name": "l2bridge"}}]},
                "resources": {"requests": {"memory": "1Gi"}}},
            "networks": [{"name": "default", "pod": {}}]}}}})
}

async fn running_ip(lab: &Lab, name: &str) -> String {
    running_vmi(lab, NS, name).await["status"]["interfaces"][0]["ipAddress"]
        .as_str()
        .expect("ip")
        .to_string()
}

/// Runs the binary without blocking the runtime the in-process lab serves from.
async fn controller(args: &[&str], kubeconfig: &std::path::Path) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_vmbgp-controller"))
        .args(args)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .kill_on_drop(true)
        .output()
        .await
        .expect("run vmbgp-controller")
}

#[tokio::test]
async fn backup_delete_recreate_restore_gives_the_same_ips() {
    let LabClient {
        lab,
        client,
        kubeconfig,
        dir,
    } = lab_client(LabConfig {
        nodes: 2,
        ..LabConfig::default()
    })
    .await;
    namespace(&client).await;
    let cudns: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ar(
            "k8s.ovn.org",
            "v1",
            "ClusterUserDefinedNetwork",
            "clusteruserdefinednetworks",
        ),
    );
    create(&cudns, json!({"apiVersion": "k8s.ovn.org/v1", "kind": "ClusterUserDefinedNetwork",
        "metadata": {"name": "net1", "labels": {"vmbgp.io/host-routes": "true"}},
        "spec": {"namespaceSelector": {"matchLabels": {"vmbgp.io/cudn": "net1"}},
            "network": {"topology": "Layer2", "layer2": {"role": "Primary", "subnets": ["198.19.0.0/24"],
                "ipam": {"lifecycle": "Persistent"}}}}})).await;
    create(&vms(&client), vm("vm-1", "Always", None)).await;
    create(&vms(&client), vm("vm-2", "Always", None)).await;
    let ip1 = running_ip(&lab, "vm-1").await;
    let ip2 = running_ip(&lab, "vm-2").await;

    // 1. Back up.
    let file = dir.path().join("mappings.json");
    let out = controller(
        &[
            "mappings",
            "backup",
            "--file",
            file.to_str().expect("utf-8"),
        ],
        &kubeconfig,
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let backup: MappingFile = read_file(&file).expect("backup file");
    let by_name: Vec<(&str, &[String], &str)> = backup
        .mappings
        .iter()
        .map(|m| (m.name.as_str(), m.ips.as_slice(), m.network.as_str()))
        .collect();
    assert_eq!(
        by_name,
        vec![
            ("vm-1", &[ip1.clone()][..], "net1"),
            ("vm-2", &[ip2.clone()][..], "net1")
        ]
    );

    // 2. Delete the namespace (VMs, VMIs and claims go with it).
    let namespaces: Api<DynamicObject> =
        Api::all_with(client.clone(), &ar("", "v1", "Namespace", "namespaces"));
    namespaces
        .delete(NS, &Default::default())
        .await
        .expect("delete namespace");
    tokio::time::timeout(WAIT, async {
        while namespaces.get_opt(NS).await.expect("get").is_some() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("namespace gone");

    // 3. Recreate the VMs, stopped, without addresses; vm-2 asks for another address.
    namespace(&client).await;
    create(&vms(&client), vm("vm-1", "Halted", None)).await;
    let other = "{\"default\": [\"198.19.0.200\"]}";
    create(&vms(&client), vm("vm-2", "Halted", Some(other))).await;

    // 4. Restore: vm-1 restored, vm-2 reported as a conflict (exit status 1) and untouched.
    let out = controller(
        &[
            "mappings",
            "restore",
            "--file",
            file.to_str().expect("utf-8"),
        ],
        &kubeconfig,
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!("vms/vm-1 [\"{ip1}\"]: restored")),
        "{stdout}"
    );
    assert!(
        stdout.contains("vms/vm-2") && stdout.contains("CONFLICT"),
        "{stdout}"
    );
    let vm2 = vms(&client).get("vm-2").await.expect("vm-2");
    let vm2 = serde_json::to_value(&vm2).expect("json");
    assert_eq!(
        vm2["spec"]["template"]["metadata"]["annotations"][ADDRESSES_ANNOTATION],
        other
    );

    // 5. Start vm-1: the same IP comes back.
    vms(&client)
        .patch(
            "vm-1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"runStrategy": "Always"}})),
        )
        .await
        .expect("start vm-1");
    assert_eq!(running_ip(&lab, "vm-1").await, ip1);
    // Restoring again changes nothing for vm-1.
    let out = controller(
        &[
            "mappings",
            "restore",
            "--file",
            file.to_str().expect("utf-8"),
        ],
        &kubeconfig,
    )
    .await;
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("vms/vm-1")
            && String::from_utf8_lossy(&out.stdout).contains("already set")
    );
    lab.stop().await.expect("lab stops");
}
