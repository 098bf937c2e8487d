//! The lab's Kubernetes-API-compatible server and the simulated KubeVirt, IPAM and OVN-Kubernetes controllers.
//!
//! A [`Lab`] runs, in-process, an HTTPS API server on 127.0.0.1 that real clients (kube-rs, the Python
//! `kubernetes` client, kubectl) accept, an in-memory [`store::Store`] with Kubernetes semantics, and
//! controllers that behave like KubeVirt, kubevirt-ipam-controller and OVN-Kubernetes' cluster manager. It
//! records a ground-truth log of what it really did and when ([`GroundTruth`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), vmbgp_lab_api::LabError> {
//! use std::time::Duration;
//! use vmbgp_lab_api::{Lab, LabConfig};
//! let lab = Lab::start(LabConfig { nodes: 3, ..Default::default() }).await?;
//! lab.write_kubeconfig(std::path::Path::new("/tmp/lab.kubeconfig"))?;
//! println!("API at {}", lab.url());
//! // ... apply manifests with any client, then wait on the lab's own view:
//! let vmi = lab
//!     .wait_for("kubevirt.io/v1", "VirtualMachineInstance", Some("ns"), "vm-1", Duration::from_secs(30), |o| {
//!         o["status"]["phase"] == "Running"
//!     })
//!     .await?;
//! # let _ = vmi;
//! lab.stop().await
//! # }
//! ```
//!
//! # Access
//!
//! Like kube-apiserver, the lab serves HTTPS only ([`tls`]: a CA and server certificate made at start) and
//! authenticates with a bearer token drawn from the OS RNG at start ([`auth`]). [`Lab::write_kubeconfig`] writes
//! both (`certificate-authority-data`, user `token`) into a 0600 file; every client reads it from there. Without
//! the token only GETs of `/healthz`, `/livez`, `/readyz`, `/version` pass (RBAC's `system:public-info-viewer`);
//! anything else is `401 Unauthorized`, a wrong token everywhere. In-process callers have [`Lab::token`] and
//! [`Lab::ca_pem`].
//!
//! # The seam for part 2 (`vmbgp-lab-net`)
//!
//! * **Dataplane.** Implement [`Dataplane`] and start the lab with
//!   [`Lab::start_with`]`(config, Arc::new(your_dataplane), None)`. The KubeVirt controller calls
//!   [`Dataplane::vm_up`] right after it writes VMI phase `Running` (node + IPs), [`Dataplane::vm_moved`] at a
//!   live migration's switch-over (before the VMI's `nodeName` changes), and [`Dataplane::vm_down`] when the
//!   VMI is being deleted (before its finalizer is removed, so the VMI disappears only after the address
//!   is gone). Each call's return instant is logged to ground truth (`dataplane_up`, `dataplane_moved`,
//!   `dataplane_down`, or `dataplane_failed` with the error). The default [`NoDataplane`] only records.
//! * **frr-k8s emulation.** The OVN-K controller writes `ovnk-generated-*` FRRConfigurations (namespace
//!   [`LabConfig::frr_namespace`], label `k8s.ovn.org/route-advertisements=<ra>`, `nodeSelector`
//!   `kubernetes.io/hostname: node-i`). Part 2 watches them through the HTTP API ([`Lab::url`] /
//!   [`Lab::write_kubeconfig`]) with kube-rs and writes `FRRNodeState` / `BGPSessionState` back; both kinds
//!   are served with their status subresource. Nodes are `node-1..N`, labelled `kubernetes.io/hostname`,
//!   with InternalIP `198.18.0.<i>` (DESIGN §5).
//!
//! # Fidelity notes
//!
//! * Server-side apply is approximated: maps merge recursively, lists and scalars are replaced, there are no
//!   managedFields and no conflicts. Strategic merge patches are refused for custom kinds (415) as on a real
//!   server and treated as merge patches for built-in kinds (core, Lease, Event).
//! * Reads honour `resourceVersion`/`resourceVersionMatch` with kube-apiserver's validation (422 on
//!   `ListOptions`): a list or get at a resourceVersion not reached yet waits 3 s as the watch cache does, then
//!   answers 504 `Timeout` (`ResourceVersionTooLarge`, retry after 1 s); an exact list, and every page of a
//!   paginated one, shows the state at its resourceVersion, rebuilt from the kind's event history
//!   ([`LabConfig::watch_history`]). An exact list older than that history is 410 (etcd compaction is by time, the
//!   lab's by count); a later page whose snapshot left the history shows the current state.
//! * Paths are percent-decoded before they are split, as Go's `URL.Path` is (an encoded `/` splits a segment).
//!   Bodies are JSON or YAML; protobuf is 415 for built-in kinds (the lab speaks none) and 400 for custom
//!   resources (kube-apiserver negotiates it for them, then cannot decode them from it).
//! * Unknown fields are pruned by default and rejected with 400 `strict decoding error` under
//!   `fieldValidation=Strict` (kubectl's default); schema and CEL violations are 422 `Invalid` with
//!   `details.causes[]`. Validation comes from `vmbgp-schema`, including kube-apiserver's own rules for the
//!   built-in `coordination.k8s.io/v1` Lease and `events.k8s.io/v1` Event (leader election and Event
//!   recorders work unchanged): a MicroTime without six fractional digits is 400 as Go's decoder makes it, an
//!   Event's fields but `series` and metadata are immutable. Core `v1` Events are not served.
//! * Nodes carry what a v1.33 kubelet reports ([`nodes`]); kernel, OS image and architecture are the host's, which
//!   the node netns share. `kubectl get` receives server-side printed Tables ([`table`]): the built-in Node and
//!   Namespace printers, the CRDs' printer columns for the rest.
//! * Watch history is bounded per kind ([`LabConfig::watch_history`]); resuming from an older
//!   resourceVersion gets an in-stream `ERROR` event with code 410, which clients answer by re-listing.

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod accept;
pub mod api_ground_truth;
pub mod auth;
pub mod boot;
pub mod controllers;
pub mod dataplane;
pub mod error;
pub mod faults;
pub mod launch;
pub mod nodes;
pub mod object_version;
pub mod openapi;
pub mod registry;
pub mod selector;
pub mod server;
pub mod store;
pub mod table;
pub mod tls;
pub mod validation;

pub use api_ground_truth::{GroundTruth, GroundTruthEvent, GroundTruthKind, ObjectRef};
pub use boot::BootDelay;
pub use dataplane::{Dataplane, DataplaneError, DataplaneFuture, NoDataplane, VmAddress};
pub use error::{ApiError, LabError};
pub use faults::FaultConfig;
pub use launch::{Lab, LabConfig};
