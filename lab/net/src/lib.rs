//! The lab's network half: real FRR routers in network namespaces, frr-k8s emulation and the VM dataplane.
