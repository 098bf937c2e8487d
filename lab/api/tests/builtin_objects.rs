//! The lab's Nodes and Namespaces as real clusters serve them, decoded by k8s-openapi's typed `Node` and
//! `Namespace` (which, like the Python client, refuse a missing required field), and server-side printing: the
//! `meta.k8s.io` Tables kubectl asks for, over raw HTTP (list, get, watch, `includeObject`, v1beta1).

mod common;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node};
use kube::api::{Api, ListParams, WatchEvent, WatchParams};
use serde_json::{Value, json};
use vmbgp_lab_api::LabConfig;
use vmbgp_lab_api::store::WriteOptions;

const KUBECTL_ACCEPT: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";

#[tokio::test]
async fn nodes_and_namespaces_decode_into_k8s_openapi_types_with_kubelet_fields() {
    let t = common::start(LabConfig {
        controllers: false,
        nodes: 2,
        ..Default::default()
    })
    .await;
    let client = common::client(&t).await;
    let nodes: Api<Node> = Api::all(client.clone());
    let list = nodes
        .list(&ListParams::default())
        .await
        .expect("NodeList decodes");
    assert_eq!(list.items.len(), 2);
    let mut ids = Vec::new();
    for (i, node) in list.items.iter().enumerate() {
        let name = format!("node-{}", i + 1);
        assert_eq!(node.metadata.name.as_deref(), Some(name.as_str()));
        let status = node.status.as_ref().expect("status");
        let info = status.node_info.as_ref().expect("nodeInfo");
        for (field, value) in [
            ("architecture", &info.architecture),
            ("bootID", &info.boot_id),
            ("containerRuntimeVersion", &info.container_runtime_version),
            ("kernelVersion", &info.kernel_version),
            ("kubeProxyVersion", &info.kube_proxy_version),
            ("kubeletVersion", &info.kubelet_version),
            ("machineID", &info.machine_id),
            ("operatingSystem", &info.operating_system),
            ("osImage", &info.os_image),
            ("systemUUID", &info.system_uuid),
        ] {
            assert!(!value.is_empty(), "{name}: nodeInfo.{field} is empty");
        }
        assert_eq!(info.operating_system, "linux");
        ids.push((
            info.machine_id.clone(),
            info.system_uuid.clone(),
            info.boot_id.clone(),
        ));
        let labels = node.metadata.labels.as_ref().expect("labels");
        assert_eq!(labels["kubernetes.io/hostname"], name);
        assert_eq!(labels["kubernetes.io/os"], "linux");
        assert_eq!(labels["kubernetes.io/arch"], info.architecture);
        assert!(labels.contains_key("node-role.kubernetes.io/worker"));
        let addresses: Vec<(&str, &str)> = status
            .addresses
            .iter()
            .flatten()
            .map(|a| (a.type_.as_str(), a.address.as_str()))
            .collect();
        let ip = format!("198.18.0.{}", i + 1);
        assert_eq!(
            addresses,
            [("InternalIP", ip.as_str()), ("Hostname", name.as_str())]
        );
        let conditions: Vec<(&str, &str)> = status
            .conditions
            .iter()
            .flatten()
            .map(|c| (c.type_.as_str(), c.status.as_str()))
            .collect();
        assert_eq!(
            conditions,
            [
                ("MemoryPressure", "False"),
                ("DiskPressure", "False"),
                ("PIDPressure", "False"),
                ("Ready", "True"),
            ],
            "the kubelet's conditions, Ready last"
        );
        for c in status.conditions.iter().flatten() {
            assert!(c.last_heartbeat_time.is_some() && c.last_transition_time.is_some());
            assert!(c.reason.is_some() && c.message.is_some());
        }
        for resources in [&status.capacity, &status.allocatable] {
            let resources = resources.as_ref().expect("resources");
            for r in ["cpu", "memory", "pods", "ephemeral-storage"] {
                assert!(resources.contains_key(r), "{name}: no {r}");
            }
        }
        let port = status
            .daemon_endpoints
            .as_ref()
            .and_then(|d| d.kubelet_endpoint.as_ref())
            .map(|e| e.port);
        assert_eq!(port, Some(10250));
    }
    let distinct: std::collections::BTreeSet<_> =
        ids.iter().flat_map(|(m, s, b)| [m, s, b]).collect();
    assert_eq!(
        distinct.len(),
        6,
        "every node has its own identities: {ids:?}"
    );
    let node = nodes
        .get_status("node-2")
        .await
        .expect("Node status decodes");
    assert_eq!(node.metadata.name.as_deref(), Some("node-2"));
    let mut events = nodes
        .watch(&WatchParams::default().timeout(2), "0")
        .await
        .expect("watch")
        .boxed();
    match events.next().await {
        Some(Ok(WatchEvent::Added(n))) => assert!(n.status.is_some()),
        other => panic!("a typed ADDED Node, got {other:?}"),
    }

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let list = namespaces
        .list(&ListParams::default())
        .await
        .expect("NamespaceList decodes");
    let names: Vec<&str> = list
        .items
        .iter()
        .filter_map(|n| n.metadata.name.as_deref())
        .collect();
    for ns in ["default", "kube-node-lease", "kube-public", "kube-system"] {
        assert!(names.contains(&ns), "{ns} missing: {names:?}");
    }
    for ns in &list.items {
        let name = ns.metadata.name.as_deref().unwrap_or_default();
        assert_eq!(
            ns.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("kubernetes.io/metadata.name"))
                .map(String::as_str),
            Some(name)
        );
        assert_eq!(
            ns.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Active")
        );
        assert_eq!(
            ns.spec.as_ref().and_then(|s| s.finalizers.clone()),
            Some(vec!["kubernetes".to_string()])
        );
    }
    t.lab.stop().await.expect("stop");
}

/// An HTTP/1.0 GET (the body ends when the server closes): status, content type, body.
async fn get(t: &common::TestLab, path: &str, accept: &str) -> (u16, String, String) {
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: lab\r\nAccept: {accept}\r\nAuthorization: Bearer {}\r\n\r\n",
        t.lab.token()
    );
    let response = common::raw_exchange(t, request.as_bytes()).await;
    let response = String::from_utf8(response).expect("utf-8");
    let (head, body) = response.split_once("\r\n\r\n").expect("head and body");
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    let content_type = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-type")
                .then(|| value.trim().to_string())
        })
        .unwrap_or_default();
    (code, content_type, body.to_string())
}

fn column_names(table: &Value) -> Vec<&str> {
    table["columnDefinitions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect()
}

#[tokio::test]
async fn tables_for_list_get_and_watch_as_kube_apiserver_prints_them() {
    let t = common::start(LabConfig {
        controllers: false,
        ..Default::default()
    })
    .await;
    let (code, content_type, body) = get(&t, "/api/v1/nodes", KUBECTL_ACCEPT).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(content_type, "application/json;as=Table;v=v1;g=meta.k8s.io");
    let table: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(table["kind"], "Table");
    assert_eq!(table["apiVersion"], "meta.k8s.io/v1");
    assert!(table["metadata"]["resourceVersion"].is_string());
    assert_eq!(
        column_names(&table),
        [
            "Name",
            "Status",
            "Roles",
            "Age",
            "Version",
            "Internal-IP",
            "External-IP",
            "OS-Image",
            "Kernel-Version",
            "Container-Runtime"
        ]
    );
    let priorities: Vec<i64> = table["columnDefinitions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["priority"].as_i64())
        .collect();
    assert_eq!(priorities, [0, 0, 0, 0, 0, 1, 1, 1, 1, 1]);
    let rows = table["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["cells"][0], "node-1");
    assert_eq!(rows[0]["cells"][1], "Ready");
    assert_eq!(rows[0]["cells"][5], "198.18.0.1");
    // The default includeObject=Metadata.
    assert_eq!(rows[0]["object"]["kind"], "PartialObjectMetadata");
    assert_eq!(rows[0]["object"]["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(rows[0]["object"]["metadata"]["name"], "node-1");

    let (_, _, body) = get(
        &t,
        "/api/v1/nodes/node-2?includeObject=Object",
        KUBECTL_ACCEPT,
    )
    .await;
    let table: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(table["rows"].as_array().map(Vec::len), Some(1));
    assert_eq!(table["rows"][0]["object"]["kind"], "Node");
    assert_eq!(
        table["rows"][0]["object"]["status"]["addresses"][0]["address"],
        "198.18.0.2"
    );
    let (_, _, body) = get(&t, "/api/v1/namespaces?includeObject=None", KUBECTL_ACCEPT).await;
    let table: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(column_names(&table), ["Name", "Status", "Age"]);
    assert!(table["rows"][0].get("object").is_none());
    assert_eq!(table["rows"][0]["cells"][1], "Active");
    let (code, _, body) = get(&t, "/api/v1/nodes?includeObject=Everything", KUBECTL_ACCEPT).await;
    assert_eq!(code, 400, "{body}");

    let beta = "application/json;as=Table;v=v1beta1;g=meta.k8s.io";
    let (_, content_type, body) = get(&t, "/api/v1/namespaces/default", beta).await;
    assert_eq!(content_type, beta);
    let table: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(table["apiVersion"], "meta.k8s.io/v1beta1");
    assert_eq!(
        table["rows"][0]["object"]["apiVersion"],
        "meta.k8s.io/v1beta1"
    );

    // A CRD kind prints its additionalPrinterColumns; a value that is absent is a null cell.
    let vm = json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "metadata": {"name": "t-vm"},
        "spec": {"runStrategy": "Halted", "template": {"spec": {"domain": {"devices": {}}}}}});
    let vm_kind = t
        .lab
        .kind("kubevirt.io/v1", "VirtualMachine")
        .expect("kind");
    t.lab
        .store()
        .create(vm_kind, Some("default"), vm, &WriteOptions::default())
        .expect("vm");
    let (_, _, body) = get(
        &t,
        "/apis/kubevirt.io/v1/namespaces/default/virtualmachines/t-vm",
        KUBECTL_ACCEPT,
    )
    .await;
    let table: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(column_names(&table), ["Name", "Age", "Status", "Ready"]);
    let cells = &table["rows"][0]["cells"];
    assert_eq!(cells[0], "t-vm");
    assert!(
        cells[1].as_str().is_some_and(|a| a.ends_with('s')),
        "{cells}"
    );
    assert_eq!(cells[2], Value::Null);

    // Plain JSON unless a Table is preferred.
    let (_, content_type, body) = get(&t, "/api/v1/nodes", "application/json").await;
    assert_eq!(content_type, "application/json");
    let list: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(list["kind"], "NodeList");

    // A Table watch: one single-row Table per event, column definitions in the first only.
    let (code, content_type, body) = get(
        &t,
        "/api/v1/nodes?watch=true&timeoutSeconds=1",
        KUBECTL_ACCEPT,
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(content_type, "application/json;as=Table;v=v1;g=meta.k8s.io");
    let events: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).expect("event json"))
        .collect();
    assert_eq!(events.len(), 3, "{body}");
    for (i, ev) in events.iter().enumerate() {
        assert_eq!(ev["type"], "ADDED");
        assert_eq!(ev["object"]["kind"], "Table");
        assert_eq!(ev["object"]["rows"].as_array().map(Vec::len), Some(1));
        assert_eq!(
            ev["object"]["rows"][0]["cells"][0],
            format!("node-{}", i + 1)
        );
        assert_eq!(ev["object"]["columnDefinitions"].is_array(), i == 0);
    }
    t.lab.stop().await.expect("stop");
}
