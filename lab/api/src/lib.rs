//! The lab's Kubernetes-API-compatible server and the simulated KubeVirt, IPAM and OVN-Kubernetes controllers.
