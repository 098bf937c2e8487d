//! IP-mapping backup and restore: `mappings backup` writes every selected VM's name, namespace,
//! network, interface, IPs and node to a file; `mappings restore` gives recreated VMs the same
//! addresses again through their `network.kubevirt.io/addresses` template annotation (KubeVirt's
//! day-0 static IP request), only on VMs that lack it. A VM whose annotation differs is a
//! conflict: reported, never overwritten.

use std::collections::BTreeMap;
use std::net::IpAddr;

use kube::api::{DynamicObject, ListParams, Patch, PatchParams};
use kube::{Api, Client};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::controller::{
    claim_resource, cudn_resource, namespace_resource, ra_resource, vmi_resource,
};
use crate::desired::{Settings, addresses_of, network_selected, vm_selected};
use crate::inputs::{Inputs, RawObjects};

/// KubeVirt's (ipam-extensions') static address request on a VM template.
pub const ADDRESSES_ANNOTATION: &str = "network.kubevirt.io/addresses";

/// One VM's addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mapping {
    pub namespace: String,
    pub name: String,
    /// The ClusterUserDefinedNetwork.
    pub network: String,
    /// The VM's `pod: {}` network name, the key of the addresses annotation.
    pub interface: String,
    /// Bare addresses, as the annotation wants them.
    pub ips: Vec<String>,
    /// Where it ran at backup time (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// The backup file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MappingFile {
    pub version: u32,
    pub mappings: Vec<Mapping>,
}

/// Why a backup or restore failed.
#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    #[error("listing {kind}: {source}")]
    List { kind: String, source: kube::Error },
    #[error("reading VM {vm}: {source}")]
    Get { vm: String, source: kube::Error },
    #[error("file {path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
    #[error("file {path} is not a mapping file: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
}

/// The mappings of every selected VM, sorted by namespace and name.
pub fn mappings(settings: &Settings, inputs: &Inputs) -> Vec<Mapping> {
    let mut out = BTreeMap::new();
    for vmi in &inputs.vmis {
        if !vm_selected(settings, vmi) {
            continue;
        }
        let Some(labels) = inputs.namespaces.get(&vmi.namespace).map(|n| &n.labels) else {
            continue;
        };
        let Some(network) = inputs
            .networks
            .iter()
            .filter(|n| network_selected(settings, n))
            .find(|n| n.namespace_selector.matches(labels))
        else {
            continue;
        };
        let ips: Vec<String> = addresses_of(inputs, vmi)
            .iter()
            .filter(|a| network.subnets.iter().any(|s| s.contains(*a)))
            .map(IpAddr::to_string)
            .collect();
        if ips.is_empty() {
            continue;
        }
        out.insert(
            (vmi.namespace.clone(), vmi.name.clone()),
            Mapping {
                namespace: vmi.namespace.clone(),
                name: vmi.name.clone(),
                network: network.name.clone(),
                interface: vmi.pod_network.clone(),
                ips,
                node: vmi.hosting_node().map(str::to_string),
            },
        );
    }
    out.into_values().collect()
}

/// What restore does with one mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The annotation was added.
    Restored,
    /// The VM already asks for exactly these addresses.
    AlreadySet,
    /// The VM asks for other addresses (or its annotation is unreadable): left alone.
    Conflict { existing: String },
    /// No such VM (recreate it first).
    VmMissing,
    /// The VM changed between read and write; run restore again.
    Raced,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Restored => write!(f, "restored"),
            Outcome::AlreadySet => write!(f, "already set"),
            Outcome::Conflict { existing } => {
                write!(f, "CONFLICT: the VM asks for {existing}; not overwritten")
            }
            Outcome::VmMissing => write!(f, "no such VM"),
            Outcome::Raced => write!(f, "the VM changed meanwhile; run restore again"),
        }
    }
}

/// The annotation value for a mapping: `{"<interface>": ["ip", ...]}`.
pub fn annotation_value(mapping: &Mapping) -> String {
    json!({ mapping.interface.clone(): mapping.ips }).to_string()
}

/// Decides from the VM as read: `Ok(patch)` to write, or the outcome without writing.
pub fn decide(mapping: &Mapping, vm: Option<&Value>) -> Result<Value, Outcome> {
    let Some(vm) = vm else {
        return Err(Outcome::VmMissing);
    };
    let existing = vm
        .pointer("/spec/template/metadata/annotations")
        .and_then(|a| a.get(ADDRESSES_ANNOTATION))
        .and_then(Value::as_str);
    if let Some(existing) = existing {
        let wanted: Value = json!({ mapping.interface.clone(): mapping.ips });
        return match serde_json::from_str::<Value>(existing) {
            Ok(parsed) if parsed == wanted => Err(Outcome::AlreadySet),
            _ => Err(Outcome::Conflict {
                existing: existing.to_string(),
            }),
        };
    }
    // The resourceVersion makes the merge patch conditional: a VM changed since it was read is
    // refused (409) instead of being overwritten blindly.
    Ok(json!({
        "metadata": {"resourceVersion": vm.pointer("/metadata/resourceVersion").cloned().unwrap_or(Value::Null)},
        "spec": {"template": {"metadata": {"annotations": {ADDRESSES_ANNOTATION: annotation_value(mapping)}}}}
    }))
}

async fn list(
    client: &Client,
    resource: &kube::discovery::ApiResource,
) -> Result<Vec<Value>, MappingError> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), resource);
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(|source| MappingError::List {
            kind: resource.kind.clone(),
            source,
        })?;
    Ok(list
        .items
        .iter()
        .map(|o| serde_json::to_value(o).unwrap_or(Value::Null))
        .collect())
}

/// Reads the cluster and returns the backup.
pub async fn backup(client: &Client, settings: &Settings) -> Result<MappingFile, MappingError> {
    let raw = RawObjects {
        vmis: list(client, &vmi_resource()).await?,
        claims: list(client, &claim_resource()).await?,
        networks: list(client, &cudn_resource()).await?,
        namespaces: list(client, &namespace_resource()).await?,
        advertisements: list(client, &ra_resource()).await?,
        generated: Vec::new(),
    };
    let (inputs, _) = Inputs::from_objects(&raw);
    Ok(MappingFile {
        version: 1,
        mappings: mappings(settings, &inputs),
    })
}

fn vm_resource() -> kube::discovery::ApiResource {
    kube::discovery::ApiResource {
        group: "kubevirt.io".into(),
        version: "v1".into(),
        api_version: "kubevirt.io/v1".into(),
        kind: "VirtualMachine".into(),
        plural: "virtualmachines".into(),
    }
}

/// Applies the backup to the VMs that exist now; one outcome per mapping, in file order.
pub async fn restore(
    client: &Client,
    file: &MappingFile,
) -> Result<Vec<(Mapping, Outcome)>, MappingError> {
    let mut outcomes = Vec::new();
    for mapping in &file.mappings {
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &mapping.namespace, &vm_resource());
        let vm = api
            .get_opt(&mapping.name)
            .await
            .map_err(|source| MappingError::Get {
                vm: format!("{}/{}", mapping.namespace, mapping.name),
                source,
            })?
            .map(|o| serde_json::to_value(&o).unwrap_or(Value::Null));
        let outcome = match decide(mapping, vm.as_ref()) {
            Err(outcome) => outcome,
            Ok(patch) => match api
                .patch(
                    &mapping.name,
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
            {
                Ok(_) => Outcome::Restored,
                Err(kube::Error::Api(s)) if s.code == 409 => Outcome::Raced,
                Err(kube::Error::Api(s)) if s.code == 404 => Outcome::VmMissing,
                Err(source) => {
                    return Err(MappingError::Get {
                        vm: format!("{}/{}", mapping.namespace, mapping.name),
                        source,
                    });
                }
            },
        };
        outcomes.push((mapping.clone(), outcome));
    }
    Ok(outcomes)
}

/// Writes the file (pretty JSON, one mapping per object).
pub fn write_file(path: &std::path::Path, file: &MappingFile) -> Result<(), MappingError> {
    let text = serde_json::to_string_pretty(file).unwrap_or_default();
    std::fs::write(path, text + "\n").map_err(|source| MappingError::File {
        path: path.display().to_string(),
        source,
    })
}

pub fn read_file(path: &std::path::Path) -> Result<MappingFile, MappingError> {
    let text = std::fs::read_to_string(path).map_err(|source| MappingError::File {
        path: path.display().to_string(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| MappingError::Parse {
        path: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping() -> Mapping {
        Mapping {
            namespace: "vms".into(),
            name: "vm-1".into(),
            network: "net1".into(),
            interface: "default".into(),
            ips: vec!["198.19.0.10".into()],
            node: Some("node-1".into()),
        }
    }

    #[test]
    fn restore_never_overwrites() {
        let m = mapping();
        assert_eq!(decide(&m, None), Err(Outcome::VmMissing));
        let bare =
            json!({"metadata": {"resourceVersion": "7"}, "spec": {"template": {"spec": {}}}});
        let patch = decide(&m, Some(&bare)).expect("patch");
        assert_eq!(patch["metadata"]["resourceVersion"], "7");
        assert_eq!(
            patch["spec"]["template"]["metadata"]["annotations"][ADDRESSES_ANNOTATION],
            "{\"default\":[\"198.19.0.10\"]}"
        );
        let same = json!({"spec": {"template": {"metadata": {"annotations": {ADDRESSES_ANNOTATION: "{\"default\": [\"198.19.0.10\"]}"}}}}});
        assert_eq!(decide(&m, Some(&same)), Err(Outcome::AlreadySet));
        let other = json!({"spec": {"template": {"metadata": {"annotations": {ADDRESSES_ANNOTATION: "{\"default\": [\"198.19.0.99\"]}"}}}}});
        assert!(matches!(
            decide(&m, Some(&other)),
            Err(Outcome::Conflict { .. })
        ));
        let junk = json!({"spec": {"template": {"metadata": {"annotations": {ADDRESSES_ANNOTATION: "not json"}}}}});
        assert!(matches!(
            decide(&m, Some(&junk)),
            Err(Outcome::Conflict { .. })
        ));
    }

    #[test]
    fn file_round_trips_and_bad_files_are_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("m.json");
        let file = MappingFile {
            version: 1,
            mappings: vec![mapping()],
        };
        write_file(&path, &file).expect("write");
        assert_eq!(read_file(&path).expect("read"), file);
        std::fs::write(&path, "{\"version\": \"x\"}").expect("write junk");
        assert!(matches!(read_file(&path), Err(MappingError::Parse { .. })));
    }
}
