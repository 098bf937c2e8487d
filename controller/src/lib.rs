//! `vmbgp-controller`: advertises each KubeVirt VM's own host route (/32, /128) from the node
//! that hosts it, through frr-k8s FRRConfigurations, for VMs on OVN-Kubernetes Layer2 primary
//! ClusterUserDefinedNetworks that a RouteAdvertisements already advertises as a whole subnet.
//!
//! The pure part ([`inputs`] → [`desired`] → [`plan`], with [`aggregate`]) computes what to
//! write; the rest watches the cluster and writes it.

pub mod aggregate;
pub mod cli;
pub mod controller;
pub mod desired;
pub mod http;
pub mod inputs;
pub mod leader;
pub mod mappings;
pub mod metrics;
pub mod plan;
