//! A deleted RouteAdvertisements never leaves a generated FRRConfiguration behind, whatever the order and
//! timing of the deletes: many RAs are deleted at once, in random order and interleaved with their CUDN
//! and namespace deletes, round after round. OVN-K regenerates from the current set of RAs, so every
//! `ovnk-generated-*` configuration of a deleted RA must go.

mod common;

use std::time::{Duration, Instant};

use futures::future::join_all;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use rand::seq::SliceRandom;
use serde_json::json;
use vmbgp_lab_api::{BootDelay, LabConfig};

const NODES: usize = 3;
const NETWORKS: usize = 20;
const ROUNDS: usize = 6;
const WAIT: Duration = Duration::from_secs(15);
const RA_LABEL: &str = "k8s.ovn.org/route-advertisements";

fn obj(v: serde_json::Value) -> DynamicObject {
    serde_json::from_value(v).expect("object")
}

struct Apis {
    namespaces: Api<DynamicObject>,
    cudns: Api<DynamicObject>,
    ras: Api<DynamicObject>,
    frr: Api<DynamicObject>,
}

impl Apis {
    fn new(client: &kube::Client) -> Self {
        let all = |group, version, kind, plural| {
            Api::all_with(
                client.clone(),
                &common::api_resource(group, version, kind, plural),
            )
        };
        Apis {
            namespaces: all("", "v1", "Namespace", "namespaces"),
            cudns: all(
                "k8s.ovn.org",
                "v1",
                "ClusterUserDefinedNetwork",
                "clusteruserdefinednetworks",
            ),
            ras: all(
                "k8s.ovn.org",
                "v1",
                "RouteAdvertisements",
                "routeadvertisements",
            ),
            frr: Api::namespaced_with(
                client.clone(),
                "frr-k8s-system",
                &common::api_resource(
                    "frrk8s.metallb.io",
                    "v1beta1",
                    "FRRConfiguration",
                    "frrconfigurations",
                ),
            ),
        }
    }

    /// Names of the RAs that generated FRRConfigurations still name.
    async fn generated_for(&self) -> Vec<String> {
        let list = self
            .frr
            .list(&ListParams::default().labels(RA_LABEL))
            .await
            .expect("list FRRConfigurations");
        let mut names: Vec<String> = list
            .items
            .iter()
            .filter_map(|c| c.metadata.labels.as_ref()?.get(RA_LABEL).cloned())
            .collect();
        names.sort();
        names
    }
}

/// Namespace + CUDN + its own RouteAdvertisements, as one harness iteration creates them.
async fn create_network(apis: &Apis, round: usize, i: usize) {
    let name = format!("n{round}x{i}");
    apis.namespaces
        .create(&PostParams::default(), &obj(json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {"k8s.ovn.org/primary-user-defined-network": "", "stress/net": name}},
        })))
        .await
        .expect("namespace");
    apis.cudns
        .create(&PostParams::default(), &obj(json!({
            "apiVersion": "k8s.ovn.org/v1", "kind": "ClusterUserDefinedNetwork",
            "metadata": {"name": name, "labels": {"stress/net": name}},
            "spec": {"namespaceSelector": {"matchLabels": {"stress/net": name}}, "network": {"topology": "Layer2", "layer2": {
                "role": "Primary", "subnets": [format!("198.19.{}.0/24", round * NETWORKS + i)], "ipam": {"lifecycle": "Persistent"}}}},
        })))
        .await
        .expect("cudn");
    apis.ras
        .create(&PostParams::default(), &obj(json!({
            "apiVersion": "k8s.ovn.org/v1", "kind": "RouteAdvertisements", "metadata": {"name": name},
            "spec": {"advertisements": ["PodNetwork"], "nodeSelector": {},
                "frrConfigurationSelector": {"matchLabels": {"stress/template": "true"}},
                "networkSelectors": [{"networkSelectionType": "ClusterUserDefinedNetworks",
                    "clusterUserDefinedNetworkSelector": {"networkSelector": {"matchLabels": {"stress/net": name}}}}]},
        })))
        .await
        .expect("route advertisements");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_many_route_advertisements_in_any_order_leaves_no_generated_configuration() {
    let t = common::start(LabConfig {
        nodes: NODES,
        boot_delay: BootDelay::Fixed { ms: 20 },
        ..Default::default()
    })
    .await;
    let client = common::client(&t).await;
    let apis = Apis::new(&client);
    apis.frr
        .create(&PostParams::default(), &obj(json!({
            "apiVersion": "frrk8s.metallb.io/v1beta1", "kind": "FRRConfiguration",
            "metadata": {"name": "stress-peer", "namespace": "frr-k8s-system", "labels": {"stress/template": "true"}},
            "spec": {"nodeSelector": {}, "bgp": {"routers": [{"asn": 64513, "neighbors": [{"address": "198.18.0.155", "asn": 64512}]}]}},
        })))
        .await
        .expect("template");

    let mut rng = rand::rng();
    for round in 0..ROUNDS {
        for i in 0..NETWORKS {
            create_network(&apis, round, i).await;
        }
        // Every RA has its configuration on every node before the deletes begin.
        let deadline = Instant::now() + WAIT;
        loop {
            let generated = apis.generated_for().await;
            if generated.len() == NETWORKS * NODES {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: {} of {} generated configurations after {WAIT:?}",
                generated.len(),
                NETWORKS * NODES
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        // Every delete at once, in random order: RAs interleaved with their CUDNs and namespaces.
        let mut deletes: Vec<(&Api<DynamicObject>, String)> = (0..NETWORKS)
            .flat_map(|i| {
                let name = format!("n{round}x{i}");
                [
                    (&apis.ras, name.clone()),
                    (&apis.cudns, name.clone()),
                    (&apis.namespaces, name),
                ]
            })
            .collect();
        deletes.shuffle(&mut rng);
        let results =
            join_all(deletes.iter().map(|(api, name)| async move {
                api.delete(name, &DeleteParams::default()).await
            }))
            .await;
        for ((_, name), result) in deletes.iter().zip(results) {
            result.unwrap_or_else(|e| panic!("round {round}: delete {name}: {e}"));
        }

        let deadline = Instant::now() + WAIT;
        loop {
            let left = apis.generated_for().await;
            if left.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: generated FRRConfigurations of deleted RouteAdvertisements still present after {WAIT:?}: {left:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
