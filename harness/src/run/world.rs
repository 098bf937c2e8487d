//! The run's view of the cluster: the last state of every object the watches reported, and the
//! readiness predicates the waits use (VM ready, network ready, migration done).

use std::collections::{BTreeSet, HashMap, HashSet};

use kube::api::DynamicObject;
use serde_json::Value;

use super::CLAIM_VM_LABEL;
use crate::config::VmSpec;
use crate::kube::watch::{Change, WatchMessage};
use crate::kube::{CUDN, IPAM_CLAIM, ROUTE_ADVERTISEMENTS, Resource, VIRTUAL_MACHINE, VMI, VMIM};
use crate::workload::labels;

/// What the waits and the cleanup read of an object: a few fields, not the object (a run watches
/// thousands of objects; keeping them whole was most of the harness's memory).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct ObjectState {
    /// Labelled with this run's uuid.
    pub(super) in_run: bool,
    /// `metadata.deletionTimestamp` is set.
    pub(super) deleting: bool,
    /// `status.phase`.
    pub(super) phase: Option<Box<str>>,
    /// The `Ready` condition is True, or `status.ready` (VirtualMachine).
    pub(super) ready: bool,
    /// `status.status` is Accepted, or the `Accepted` condition is True (RouteAdvertisements).
    pub(super) accepted: bool,
    /// The `NetworkCreated` condition is True (ClusterUserDefinedNetwork).
    pub(super) network_created: bool,
}

impl ObjectState {
    pub(super) fn of(object: &DynamicObject, uuid: &str) -> Self {
        let status = &object.data["status"];
        ObjectState {
            in_run: object
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(labels::UUID))
                .is_some_and(|v| v == uuid),
            deleting: object.metadata.deletion_timestamp.is_some(),
            phase: status["phase"].as_str().map(Into::into),
            ready: condition_true(object, "Ready") || status["ready"] == Value::Bool(true),
            accepted: status["status"] == "Accepted" || condition_true(object, "Accepted"),
            network_created: condition_true(object, "NetworkCreated"),
        }
    }

    pub(super) fn phase_is(&self, phase: &str) -> bool {
        self.phase.as_deref() == Some(phase)
    }
}

/// The last state of every object the watches reported, for the waits.
#[derive(Debug, Default)]
pub(super) struct World {
    /// The run's uuid (its objects' label value).
    pub(super) uuid: String,
    /// (namespace, name) of the run's VMs: claims carry no run label, only their VM's name.
    pub(super) run_vms: HashSet<(String, String)>,
    pub(super) objects: HashMap<(&'static str, String, String), ObjectState>,
    pub(super) synced: BTreeSet<&'static str>,
    /// Kinds being (re-)listed, with the objects the list delivered so far: at `Synced`, objects of
    /// the kind it did not deliver were deleted while the watch was down (410 Gone) and are dropped.
    pub(super) relisting: HashMap<&'static str, HashSet<(String, String)>>,
}

impl World {
    pub(super) fn new(uuid: &str, vms: &[VmSpec]) -> Self {
        World {
            uuid: uuid.to_string(),
            run_vms: vms
                .iter()
                .map(|vm| (vm.namespace.clone(), vm.name.clone()))
                .collect(),
            ..World::default()
        }
    }

    /// Whether an object the watches delivered is this run's business. Kinds the harness creates are
    /// watched by run label; IPAMClaims, made by kubevirt-ipam-controller, are watched by
    /// `kubevirt.io/vm` across the cluster, so only those of this run's VMs count.
    pub(super) fn concerns_run(&self, resource: &Resource, object: &DynamicObject) -> bool {
        if resource.plural != IPAM_CLAIM.plural {
            return true;
        }
        let namespace = object.metadata.namespace.clone().unwrap_or_default();
        let vm = object
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(CLAIM_VM_LABEL))
            .cloned()
            .unwrap_or_default();
        self.run_vms.contains(&(namespace, vm))
    }

    pub(super) fn key(
        resource: &Resource,
        namespace: Option<&str>,
        name: &str,
    ) -> (&'static str, String, String) {
        (
            resource.plural,
            namespace.unwrap_or_default().to_string(),
            name.to_string(),
        )
    }

    pub(super) fn apply(&mut self, message: &WatchMessage) {
        match message {
            WatchMessage::Object {
                resource,
                change,
                object,
                ..
            } => {
                if !self.concerns_run(resource, object) {
                    return;
                }
                let name = object.metadata.name.as_deref().unwrap_or_default();
                let key = Self::key(resource, object.metadata.namespace.as_deref(), name);
                if let Some(listed) = self.relisting.get_mut(resource.plural) {
                    listed.insert((key.1.clone(), key.2.clone()));
                }
                match change {
                    Change::Applied => {
                        self.objects
                            .insert(key, ObjectState::of(object, &self.uuid));
                    }
                    Change::Deleted => {
                        self.objects.remove(&key);
                    }
                }
            }
            WatchMessage::Relisting { resource, .. } => {
                self.relisting.insert(resource.plural, HashSet::new());
            }
            WatchMessage::Synced { resource, .. } => {
                if let Some(listed) = self.relisting.remove(resource.plural) {
                    self.objects.retain(|(plural, ns, name), _| {
                        *plural != resource.plural || listed.contains(&(ns.clone(), name.clone()))
                    });
                }
                self.synced.insert(resource.plural);
            }
            WatchMessage::Error { .. } => {}
        }
    }

    pub(super) fn get(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<&ObjectState> {
        self.objects.get(&Self::key(resource, namespace, name))
    }

    /// Whether any IPAMClaim of VM `vm` in `namespace` is still there. kubevirt-ipam-controller names
    /// a VM's claims `<vm>.<network>`, one per network.
    pub(super) fn has_claims_of(&self, namespace: &str, vm: &str) -> bool {
        let prefix = format!("{vm}.");
        self.objects.keys().any(|(plural, ns, name)| {
            *plural == IPAM_CLAIM.plural && ns == namespace && name.starts_with(&prefix)
        })
    }
}

pub(super) fn condition_true(object: &DynamicObject, kind: &str) -> bool {
    object.data["status"]["conditions"]
        .as_array()
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c["type"] == kind && c["status"] == "True")
        })
}

/// A VM counts as ready when its VM reports Ready and its VMI runs.
pub(super) fn vm_ready(world: &World, namespace: &str, name: &str) -> bool {
    world
        .get(&VIRTUAL_MACHINE, Some(namespace), name)
        .is_some_and(|vm| vm.ready)
        && world
            .get(&VMI, Some(namespace), name)
            .is_some_and(|vmi| vmi.phase_is("Running"))
}

pub(super) fn network_ready(world: &World, name: &str) -> bool {
    world
        .get(&CUDN, None, name)
        .is_some_and(|o| o.network_created)
        && world
            .get(&ROUTE_ADVERTISEMENTS, None, name)
            .is_some_and(|o| o.accepted)
}

pub(super) fn migration_done(world: &World, namespace: &str, name: &str) -> bool {
    world
        .get(&VMIM, Some(namespace), name)
        .is_some_and(|m| m.phase_is("Succeeded") || m.phase_is("Failed"))
}

/// A churned VM is gone when its VM, its VMI and every IPAMClaim of it are.
pub(super) fn vm_gone(world: &World, namespace: &str, name: &str) -> bool {
    world.get(&VMI, Some(namespace), name).is_none()
        && world.get(&VIRTUAL_MACHINE, Some(namespace), name).is_none()
        && !world.has_claims_of(namespace, name)
}

/// Cleanup is done when no object of the run is left that is not being deleted, and no VMI or
/// IPAMClaim of the run is left at all (those go only after their VM).
pub(super) fn run_objects_gone(world: &World) -> bool {
    !world.objects.values().any(|o| o.in_run && !o.deleting)
        && !world
            .objects
            .keys()
            .any(|(plural, _, _)| *plural == VMI.plural || *plural == IPAM_CLAIM.plural)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::clock::MonoStamp;
    use crate::kube::NAMESPACE;

    fn vm(namespace: &str, name: &str) -> VmSpec {
        VmSpec {
            name: name.into(),
            namespace: namespace.into(),
            network: namespace.into(),
            iteration: 0,
            replica: 1,
            static_ip: None,
        }
    }

    fn claim(namespace: &str, vm: &str, change: Change) -> WatchMessage {
        let object: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "k8s.cni.cncf.io/v1alpha1", "kind": "IPAMClaim",
            "metadata": {"name": format!("{vm}.default"), "namespace": namespace, "labels": {CLAIM_VM_LABEL: vm}},
        }))
        .expect("claim");
        WatchMessage::Object {
            at: MonoStamp::from_offset(Duration::ZERO),
            resource: IPAM_CLAIM,
            change,
            object: Arc::new(object),
        }
    }

    #[test]
    fn claims_of_other_vms_are_not_the_runs_business() {
        let mut world = World::new("u", &[vm("vmbgp-0", "vm-1")]);
        // Another VM in another namespace, and a same-named VM in a namespace the run does not own.
        world.apply(&claim("other", "db-1", Change::Applied));
        world.apply(&claim("other", "vm-1", Change::Applied));
        assert!(world.objects.is_empty(), "{:?}", world.objects);
        assert!(!world.has_claims_of("vmbgp-0", "vm-1"));
        world.apply(&claim("vmbgp-0", "vm-1", Change::Applied));
        assert!(world.has_claims_of("vmbgp-0", "vm-1"));
        assert!(
            !world.has_claims_of("vmbgp-0", "vm-10"),
            "vm-10 is not vm-1"
        );
        world.apply(&claim("vmbgp-0", "vm-1", Change::Deleted));
        assert!(!world.has_claims_of("vmbgp-0", "vm-1"));
    }

    /// After 410 Gone the watcher re-lists: an object deleted while the watch was down never gets
    /// a Deleted event, so the re-list is the only news of it (else cleanup waited 5 min for it).
    #[test]
    fn a_relist_drops_objects_deleted_while_the_watch_was_down() {
        let mut world = World::new("u", &[vm("vmbgp-0", "vm-1"), vm("vmbgp-0", "vm-2")]);
        world.apply(&claim("vmbgp-0", "vm-1", Change::Applied));
        world.apply(&claim("vmbgp-0", "vm-2", Change::Applied));
        let at = MonoStamp::from_offset(Duration::ZERO);
        world.apply(&WatchMessage::Relisting {
            at,
            resource: IPAM_CLAIM,
        });
        world.apply(&claim("vmbgp-0", "vm-2", Change::Applied));
        assert!(
            world.has_claims_of("vmbgp-0", "vm-1"),
            "not before the list is complete"
        );
        world.apply(&WatchMessage::Synced {
            at,
            resource: IPAM_CLAIM,
        });
        assert!(!world.has_claims_of("vmbgp-0", "vm-1"), "deleted unseen");
        assert!(world.has_claims_of("vmbgp-0", "vm-2"));
        assert!(world.synced.contains(IPAM_CLAIM.plural));
    }

    /// Applies an object of `resource` with `status`, labelled with run `u` when `in_run`.
    fn put(world: &mut World, resource: Resource, ns: Option<&str>, name: &str, status: Value) {
        let object: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": resource.api_version(), "kind": resource.kind,
            "metadata": {"name": name, "namespace": ns, "labels": {labels::UUID: "u"}},
            "status": status,
        }))
        .expect("object");
        world.apply(&WatchMessage::Object {
            at: MonoStamp::from_offset(Duration::ZERO),
            resource,
            change: Change::Applied,
            object: Arc::new(object),
        });
    }

    fn remove(world: &mut World, resource: Resource, ns: Option<&str>, name: &str) {
        let object: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": resource.api_version(), "kind": resource.kind,
            "metadata": {"name": name, "namespace": ns},
        }))
        .expect("object");
        world.apply(&WatchMessage::Object {
            at: MonoStamp::from_offset(Duration::ZERO),
            resource,
            change: Change::Deleted,
            object: Arc::new(object),
        });
    }

    #[test]
    fn a_vm_is_ready_when_the_vm_says_ready_and_its_vmi_runs() {
        let mut world = World::new("u", &[vm("ns", "vm-1")]);
        assert!(!vm_ready(&world, "ns", "vm-1"), "nothing seen yet");
        put(
            &mut world,
            VIRTUAL_MACHINE,
            Some("ns"),
            "vm-1",
            serde_json::json!({"ready": true}),
        );
        assert!(!vm_ready(&world, "ns", "vm-1"), "no VMI yet");
        put(
            &mut world,
            VMI,
            Some("ns"),
            "vm-1",
            serde_json::json!({"phase": "Scheduled"}),
        );
        assert!(!vm_ready(&world, "ns", "vm-1"), "the VMI is not running");
        put(
            &mut world,
            VMI,
            Some("ns"),
            "vm-1",
            serde_json::json!({"phase": "Running"}),
        );
        assert!(vm_ready(&world, "ns", "vm-1"));
        assert!(!vm_ready(&world, "other", "vm-1"), "another namespace's VM");
        // The Ready condition counts as much as status.ready; a False one does not.
        put(
            &mut world,
            VIRTUAL_MACHINE,
            Some("ns"),
            "vm-1",
            serde_json::json!({"conditions": [{"type": "Ready", "status": "False"}]}),
        );
        assert!(!vm_ready(&world, "ns", "vm-1"));
        put(
            &mut world,
            VIRTUAL_MACHINE,
            Some("ns"),
            "vm-1",
            serde_json::json!({"conditions": [{"type": "Ready", "status": "True"}]}),
        );
        assert!(vm_ready(&world, "ns", "vm-1"));
    }

    #[test]
    fn a_network_is_ready_when_created_and_its_advertisement_accepted() {
        let mut world = World::new("u", &[]);
        let created =
            serde_json::json!({"conditions": [{"type": "NetworkCreated", "status": "True"}]});
        put(&mut world, CUDN, None, "net-0", created.clone());
        assert!(
            !network_ready(&world, "net-0"),
            "no RouteAdvertisements yet"
        );
        put(
            &mut world,
            ROUTE_ADVERTISEMENTS,
            None,
            "net-0",
            serde_json::json!({"status": "Not Accepted"}),
        );
        assert!(!network_ready(&world, "net-0"));
        put(
            &mut world,
            ROUTE_ADVERTISEMENTS,
            None,
            "net-0",
            serde_json::json!({"status": "Accepted"}),
        );
        assert!(network_ready(&world, "net-0"));
        // Either spelling of acceptance counts; a CUDN not (yet) created does not.
        put(
            &mut world,
            ROUTE_ADVERTISEMENTS,
            None,
            "net-1",
            serde_json::json!({"conditions": [{"type": "Accepted", "status": "True"}]}),
        );
        put(
            &mut world,
            CUDN,
            None,
            "net-1",
            serde_json::json!({"conditions": [{"type": "NetworkCreated", "status": "False"}]}),
        );
        assert!(!network_ready(&world, "net-1"));
        put(&mut world, CUDN, None, "net-1", created);
        assert!(network_ready(&world, "net-1"));
    }

    #[test]
    fn a_migration_is_done_when_it_succeeded_or_failed() {
        let mut world = World::new("u", &[]);
        assert!(!migration_done(&world, "ns", "m-1"));
        for (phase, done) in [
            ("Scheduling", false),
            ("Running", false),
            ("Succeeded", true),
            ("Failed", true),
        ] {
            put(
                &mut world,
                VMIM,
                Some("ns"),
                "m-1",
                serde_json::json!({"phase": phase}),
            );
            assert_eq!(migration_done(&world, "ns", "m-1"), done, "{phase}");
        }
    }

    #[test]
    fn a_churned_vm_is_gone_only_with_its_vmi_and_claims() {
        let mut world = World::new("u", &[vm("ns", "vm-1")]);
        put(
            &mut world,
            VIRTUAL_MACHINE,
            Some("ns"),
            "vm-1",
            serde_json::json!({}),
        );
        put(&mut world, VMI, Some("ns"), "vm-1", serde_json::json!({}));
        world.apply(&claim("ns", "vm-1", Change::Applied));
        assert!(!vm_gone(&world, "ns", "vm-1"));
        remove(&mut world, VIRTUAL_MACHINE, Some("ns"), "vm-1");
        assert!(!vm_gone(&world, "ns", "vm-1"), "its VMI remains");
        remove(&mut world, VMI, Some("ns"), "vm-1");
        assert!(!vm_gone(&world, "ns", "vm-1"), "its claim remains");
        world.apply(&claim("ns", "vm-1", Change::Deleted));
        assert!(vm_gone(&world, "ns", "vm-1"));
    }

    #[test]
    fn the_runs_objects_are_gone_when_only_deleting_ones_remain_and_no_vmi_or_claim() {
        let mut world = World::new("u", &[vm("ns", "vm-1")]);
        assert!(run_objects_gone(&world));
        put(&mut world, CUDN, None, "net-0", serde_json::json!({}));
        assert!(!run_objects_gone(&world), "a live object of the run");
        let deleting: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": CUDN.api_version(), "kind": CUDN.kind,
            "metadata": {"name": "net-0", "labels": {labels::UUID: "u"},
                         "deletionTimestamp": "2026-01-01T00:00:00Z"},
        }))
        .expect("object");
        world.apply(&WatchMessage::Object {
            at: MonoStamp::from_offset(Duration::ZERO),
            resource: CUDN,
            change: Change::Applied,
            object: Arc::new(deleting),
        });
        assert!(
            run_objects_gone(&world),
            "being deleted is enough for a labelled object"
        );
        // Another run's object is not this run's business.
        let foreign: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "theirs", "labels": {labels::UUID: "v"}},
        }))
        .expect("object");
        world.apply(&WatchMessage::Object {
            at: MonoStamp::from_offset(Duration::ZERO),
            resource: NAMESPACE,
            change: Change::Applied,
            object: Arc::new(foreign),
        });
        assert!(run_objects_gone(&world));
        // A claim carries no run label, yet the run is not gone while one of its VMs' claims is.
        world.apply(&claim("ns", "vm-1", Change::Applied));
        assert!(!run_objects_gone(&world));
        world.apply(&claim("ns", "vm-1", Change::Deleted));
        put(&mut world, VMI, Some("ns"), "vm-1", serde_json::json!({}));
        assert!(!run_objects_gone(&world), "a VMI goes only after its VM");
    }
}
