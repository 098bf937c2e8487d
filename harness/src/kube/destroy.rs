//! `destroy --uuid`: removes everything a run created, found by its run label, after the run itself
//! could not (SIGKILL, a lost machine). Deletes in dependency order — migrations and VMs before their
//! claims, RouteAdvertisements before their networks, the peering template after them, namespaces
//! last — waits until each step is gone, and is idempotent: a second call finds nothing and succeeds.

use std::collections::BTreeMap;
use std::time::Duration;

use kube::api::{Api, DeleteParams, DynamicObject, ListParams};
use tokio::time::Instant;

use super::{
    CUDN, FRR_CONFIGURATION, IPAM_CLAIM, NAMESPACE, ROUTE_ADVERTISEMENTS, Resource,
    VIRTUAL_MACHINE, VMI, VMIM,
};
use crate::workload::labels;

/// The deletion steps, in order. Claims and VMIs carry no run label: they are selected by the VM
/// label within the run's namespaces and waited for before networks go.
const STEPS: &[&[Resource]] = &[
    &[VMIM, VIRTUAL_MACHINE],
    &[ROUTE_ADVERTISEMENTS],
    &[CUDN, FRR_CONFIGURATION],
    &[NAMESPACE],
];

/// How often the waits look again.
const POLL: Duration = Duration::from_millis(500);

/// Why destroying failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DestroyError {
    #[error("listing {kind} labelled {selector}")]
    List {
        kind: &'static str,
        selector: String,
        #[source]
        source: kube::Error,
    },
    #[error("deleting {kind} {name}")]
    Delete {
        kind: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("after {waited:?}, still present: {left}")]
    StillPresent { waited: Duration, left: String },
}

/// What was deleted, per kind.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Destroyed {
    pub deleted: BTreeMap<&'static str, usize>,
}

impl Destroyed {
    pub fn total(&self) -> usize {
        self.deleted.values().sum()
    }
}

fn api(client: &kube::Client, resource: &Resource, namespace: Option<&str>) -> Api<DynamicObject> {
    match (resource.namespaced, namespace) {
        (true, Some(ns)) => Api::namespaced_with(client.clone(), ns, &resource.api_resource()),
        _ => Api::all_with(client.clone(), &resource.api_resource()),
    }
}

/// (namespace, name) of every object of `resource` matching `selector`.
async fn list(
    client: &kube::Client,
    resource: &Resource,
    selector: &str,
) -> Result<Vec<(Option<String>, String)>, DestroyError> {
    let items = api(client, resource, None)
        .list(&ListParams::default().labels(selector))
        .await
        .map_err(|source| DestroyError::List {
            kind: resource.kind,
            selector: selector.to_string(),
            source,
        })?
        .items;
    let mut out: Vec<(Option<String>, String)> = items
        .into_iter()
        .map(|o| (o.metadata.namespace, o.metadata.name.unwrap_or_default()))
        .collect();
    out.sort();
    Ok(out)
}

/// What of one step is still there: the step's own kinds by run label, and — for the VM step — the
/// VMIs and IPAMClaims of the run's VMs (by their VM label), whose namespaces are the run's.
async fn remaining(
    client: &kube::Client,
    step: &[Resource],
    by_run: &str,
    vms: &[(Option<String>, String)],
) -> Result<Vec<String>, DestroyError> {
    let mut left = Vec::new();
    for resource in step {
        for (ns, name) in list(client, resource, by_run).await? {
            left.push(describe(resource, ns.as_deref(), &name));
        }
    }
    if step.contains(&VIRTUAL_MACHINE) {
        for dependent in [VMI, IPAM_CLAIM] {
            for (ns, name) in list(client, &dependent, "kubevirt.io/vm").await? {
                let of_run_vm = vms.iter().any(|(vm_ns, vm)| {
                    vm_ns == &ns && (name == *vm || name.starts_with(&format!("{vm}.")))
                });
                if of_run_vm {
                    left.push(describe(&dependent, ns.as_deref(), &name));
                }
            }
        }
    }
    Ok(left)
}

fn describe(resource: &Resource, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("{} {ns}/{name}", resource.kind),
        None => format!("{} {name}", resource.kind),
    }
}

/// Deletes every object labelled with run `uuid`, step by step, waiting (up to `timeout` in all)
/// for each step to be gone. `progress` receives one line per step and a line while it waits.
pub async fn destroy(
    client: &kube::Client,
    uuid: &str,
    timeout: Duration,
    progress: &mut dyn FnMut(String),
) -> Result<Destroyed, DestroyError> {
    let by_run = format!("{}={uuid}", labels::UUID);
    let deadline = Instant::now() + timeout;
    let started = Instant::now();
    let mut destroyed = Destroyed::default();
    // Found before they are deleted: their VMIs and claims carry only the VM's name.
    let vms = list(client, &VIRTUAL_MACHINE, &by_run).await?;
    for step in STEPS {
        for resource in *step {
            let objects = list(client, resource, &by_run).await?;
            for (ns, name) in &objects {
                match api(client, resource, ns.as_deref())
                    .delete(name, &DeleteParams::background())
                    .await
                {
                    Ok(_) => {}
                    // Gone meanwhile: what destroy wants.
                    Err(kube::Error::Api(status)) if status.code == 404 => {}
                    Err(source) => {
                        return Err(DestroyError::Delete {
                            kind: resource.kind,
                            name: name.clone(),
                            source,
                        });
                    }
                }
            }
            if !objects.is_empty() {
                *destroyed.deleted.entry(resource.kind).or_default() += objects.len();
                progress(format!(
                    "destroy: deleting {} {}",
                    objects.len(),
                    resource.plural
                ));
            }
        }
        let mut next_report = Instant::now() + Duration::from_secs(5);
        loop {
            let left = remaining(client, step, &by_run, &vms).await?;
            if left.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                return Err(DestroyError::StillPresent {
                    waited: started.elapsed(),
                    left: summarize(&left),
                });
            }
            if Instant::now() >= next_report {
                progress(format!(
                    "destroy: {}s, waiting for {}",
                    started.elapsed().as_secs(),
                    summarize(&left)
                ));
                next_report += Duration::from_secs(5);
            }
            tokio::time::sleep(POLL.min(deadline.saturating_duration_since(Instant::now()))).await;
        }
    }
    Ok(destroyed)
}

/// The first few names and how many more, for one line.
fn summarize(left: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut text = left
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if left.len() > SHOWN {
        text.push_str(&format!(" and {} more", left.len() - SHOWN));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::summarize;

    #[test]
    fn long_lists_name_the_first_five_and_count_the_rest() {
        let left: Vec<String> = (0..8)
            .map(|i| format!("VirtualMachine ns/vm-{i}"))
            .collect();
        assert_eq!(
            summarize(&left),
            "VirtualMachine ns/vm-0, VirtualMachine ns/vm-1, VirtualMachine ns/vm-2, \
             VirtualMachine ns/vm-3, VirtualMachine ns/vm-4 and 3 more"
        );
        assert_eq!(summarize(&left[..1]), "VirtualMachine ns/vm-0");
    }
}
