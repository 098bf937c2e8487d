//! Validates Kubernetes objects against the real CRD and KubeVirt schemas, plus the CEL rules the schemas alone do not express.
