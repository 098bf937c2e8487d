//! The lab's Node objects, shaped as a v1.33 kubelet registers and reports them on a KubeVirt + OVN-Kubernetes
//! cluster, so that typed clients (the Python client, k8s-openapi) deserialize them and `kubectl get nodes -o wide`
//! prints every column.
//!
//! Sources: kubelet `pkg/kubelet/nodestatus/setters.go` (addresses, machine and version info, conditions and
//! their reasons, daemon endpoints, runtime handlers, features), `pkg/kubelet/kubelet_node_status.go` (labels)
//! and the `NodeSystemInfo` / `NodeStatus` types of k8s-openapi `v1_33`, whose required fields are the Go fields
//! without `omitempty` (a real server always sends them, empty or not).
//! What the node netns really share with the host (kernel, OS image, architecture) is read from the host; the
//! per-node identities are drawn from the lab's seed, so a run is reproducible.

use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

/// `gitVersion` of the lab's API server, reported by every kubelet as its (and kube-proxy's) version.
pub const KUBE_VERSION: &str = "v1.33.0-vmbgp-lab";

/// What a kubelet reads from the machine it runs on: the lab's node netns all run on the host's kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    /// `uname -r`.
    pub kernel_version: String,
    /// `PRETTY_NAME` of os-release.
    pub os_image: String,
    /// Go's `GOARCH` spelling, as kubelet reports it and as the `kubernetes.io/arch` label carries it.
    pub architecture: String,
}

impl HostFacts {
    /// Reads the host; a missing file gives the kubelet's own fallbacks.
    pub fn read() -> HostFacts {
        let kernel_version = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "Unknown".to_string());
        // os-release(5): /etc/os-release, else /usr/lib/os-release; cAdvisor reports "Linux" without one.
        let os_image = ["/etc/os-release", "/usr/lib/os-release"]
            .iter()
            .find_map(|p| std::fs::read_to_string(p).ok())
            .and_then(|text| os_release_value(&text, "PRETTY_NAME"))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "Linux".to_string());
        HostFacts {
            kernel_version,
            os_image,
            architecture: go_arch(std::env::consts::ARCH).to_string(),
        }
    }
}

/// Rust's target architecture name in Go's `GOARCH` spelling.
pub fn go_arch(rust: &str) -> &str {
    match rust {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    }
}

/// One variable of an os-release file (shell-style assignment, optionally quoted, with `\` escapes).
fn os_release_value(text: &str, key: &str) -> Option<String> {
    let raw = text
        .lines()
        .filter_map(|l| l.trim().split_once('='))
        .filter(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim())
        .next_back()?;
    let quoted = raw.len() >= 2
        && ((raw.starts_with('"') && raw.ends_with('"'))
            || (raw.starts_with('\'') && raw.ends_with('\'')));
    let inner = if quoted { &raw[1..raw.len() - 1] } else { raw };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// Identities a machine has: `/etc/machine-id` (32 hex digits), the SMBIOS system UUID and the boot id.
fn identities(seed: u64, index: usize) -> (String, String, String) {
    // Distinct per node and per lab seed, identical across runs with the same seed.
    let mut rng = rand::rngs::StdRng::seed_from_u64(
        seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (index as u64).wrapping_add(0x6E6F_6465),
    );
    let mut bytes = || {
        let mut b = [0u8; 16];
        rng.fill(&mut b);
        b
    };
    let machine_id: String = bytes().iter().map(|b| format!("{b:02x}")).collect();
    let system_uuid = uuid::Builder::from_random_bytes(bytes())
        .into_uuid()
        .to_string();
    let boot_id = uuid::Builder::from_random_bytes(bytes())
        .into_uuid()
        .to_string();
    (machine_id, system_uuid, boot_id)
}

/// Node `node-<index>` as registered: metadata and spec. Its status comes from [`node_status`].
pub fn node_object(index: usize, host: &HostFacts) -> Value {
    let name = node_name(index);
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                // The kubelet's well-known labels (kubelet_node_status.go), still including the beta ones.
                "beta.kubernetes.io/arch": host.architecture,
                "beta.kubernetes.io/os": "linux",
                "kubernetes.io/arch": host.architecture,
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "node-role.kubernetes.io/worker": "",
                // virt-handler's heartbeat marks the node as able to run VMs.
                "kubevirt.io/schedulable": "true",
            },
            "annotations": {
                // The kubelet (attach/detach by the controller) and kube-controller-manager's TTL controller.
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
                "node.alpha.kubernetes.io/ttl": "0",
            },
        },
        // No podCIDR: OVN-Kubernetes allocates node subnets itself (kube-controller-manager's CIDR allocator is
        // off), and a bare-metal node has no providerID.
        "spec": {},
    })
}

/// `node-<index>`.
pub fn node_name(index: usize) -> String {
    format!("node-{index}")
}

/// The status the kubelet of `node-<index>` posts: addresses (InternalIP `198.18.0.<index>`, DESIGN §5),
/// resources, conditions (Ready last, as the kubelet orders them), daemon endpoints and system info.
pub fn node_status(index: usize, seed: u64, host: &HostFacts, now_rfc3339: &str) -> Value {
    let name = node_name(index);
    let address = format!("198.18.0.{}", index.min(254));
    let (machine_id, system_uuid, boot_id) = identities(seed, index);
    let condition = |type_: &str, status: &str, reason: &str, message: &str| {
        json!({"type": type_, "status": status, "lastHeartbeatTime": now_rfc3339,
            "lastTransitionTime": now_rfc3339, "reason": reason, "message": message})
    };
    // An 8-core, 32 GiB worker with KubeVirt's device plugins. Allocatable is what the kubelet computes with
    // its default hard eviction thresholds: memory.available<100Mi, nodefs.available<10%.
    let resources = |memory: &str, storage: &str| {
        json!({
            "cpu": "8",
            "devices.kubevirt.io/kvm": "1k",
            "devices.kubevirt.io/tun": "1k",
            "devices.kubevirt.io/vhost-net": "1k",
            "ephemeral-storage": storage,
            "hugepages-1Gi": "0",
            "hugepages-2Mi": "0",
            "memory": memory,
            "pods": "110",
        })
    };
    let handler_features = json!({"recursiveReadOnlyMounts": true, "userNamespaces": true});
    json!({
        "addresses": [
            {"type": "InternalIP", "address": address},
            {"type": "Hostname", "address": name},
        ],
        "capacity": resources("32866920Ki", "102625208Ki"),
        // 102625208Ki = 105088212992 bytes, less 10 % (10508821299) = 94579391693.
        "allocatable": resources("32764520Ki", "94579391693"),
        "conditions": [
            condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ],
        // The JSON name really is capitalized (`DaemonEndpoint.Port`).
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "features": {"supplementalGroupsPolicy": true},
        "runtimeHandlers": [
            {"name": "", "features": handler_features},
            {"name": "runc", "features": handler_features},
        ],
        "nodeInfo": {
            "architecture": host.architecture,
            "bootID": boot_id,
            "containerRuntimeVersion": "containerd://2.0.5",
            "kernelVersion": host.kernel_version,
            // Deprecated, but a v1.33 kubelet still sets it (DisableNodeKubeProxyVersion is off by default
            // since v1.31.1).
            "kubeProxyVersion": KUBE_VERSION,
            "kubeletVersion": KUBE_VERSION,
            "machineID": machine_id,
            "operatingSystem": "linux",
            "osImage": host.os_image,
            // NodeSwap (on by default): the kubelet reports the swap it found; the lab's nodes have none.
            "swap": {"capacity": 0},
            "systemUUID": system_uuid,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> HostFacts {
        HostFacts {
            kernel_version: "6.1.0-28-amd64".to_string(),
            os_image: "Debian GNU/Linux 12 (bookworm)".to_string(),
            architecture: "amd64".to_string(),
        }
    }

    #[test]
    fn os_release_values_are_unquoted_and_unescaped() {
        let text = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian \\\"12\\\" (bookworm)\"\nID=debian\nBAD\n";
        assert_eq!(
            os_release_value(text, "PRETTY_NAME").as_deref(),
            Some("Debian \"12\" (bookworm)")
        );
        assert_eq!(os_release_value(text, "ID").as_deref(), Some("debian"));
        assert_eq!(os_release_value("X='a b'", "X").as_deref(), Some("a b"));
        assert_eq!(os_release_value("X=\"", "X").as_deref(), Some("\""));
        assert_eq!(os_release_value("X=\\", "X").as_deref(), Some(""));
        assert_eq!(os_release_value(text, "VERSION"), None);
    }

    #[test]
    fn identities_are_well_formed_distinct_and_reproducible() {
        let (m1, s1, b1) = identities(7, 1);
        let (m2, s2, b2) = identities(7, 2);
        assert_eq!(identities(7, 1), (m1.clone(), s1.clone(), b1.clone()));
        assert_ne!(identities(8, 1).0, m1);
        assert!(
            m1.len() == 32
                && m1
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert!(uuid::Uuid::parse_str(&s1).is_ok() && uuid::Uuid::parse_str(&b1).is_ok());
        assert!(m1 != m2 && s1 != s2 && b1 != b2 && s1 != b1);
    }

    #[test]
    fn every_required_node_system_info_field_is_a_string() {
        // The Go fields without omitempty (k8s-openapi v1_33 NodeSystemInfo's non-Option fields).
        let status = node_status(3, 1, &host(), "2026-01-01T00:00:00Z");
        for f in [
            "architecture",
            "bootID",
            "containerRuntimeVersion",
            "kernelVersion",
            "kubeProxyVersion",
            "kubeletVersion",
            "machineID",
            "operatingSystem",
            "osImage",
            "systemUUID",
        ] {
            let v = status["nodeInfo"][f].as_str();
            assert!(v.is_some_and(|s| !s.is_empty()), "nodeInfo.{f}: {v:?}");
        }
        assert_eq!(status["addresses"][0]["address"], "198.18.0.3");
        assert_eq!(status["conditions"][3]["type"], "Ready");
        let node = node_object(3, &host());
        assert_eq!(
            node["metadata"]["labels"]["kubernetes.io/arch"],
            status["nodeInfo"]["architecture"]
        );
    }

    #[test]
    fn go_arch_names() {
        assert_eq!(go_arch("x86_64"), "amd64");
        assert_eq!(go_arch("aarch64"), "arm64");
        assert_eq!(go_arch("s390x"), "s390x");
    }
}
