"""Conformance of the lab API server with the official Python client (`kubernetes` from PyPI).

Run by tests/python_client.rs with the lab's kubeconfig as the only argument; exits non-zero on failure.
Covers discovery, create, get, list (label selector), watch (from a list resourceVersion and from
scratch), 404/422 errors and delete through `kubernetes.dynamic.DynamicClient`.
"""

import sys

from kubernetes import config, dynamic
from kubernetes.dynamic import exceptions


def vm(name, labels):
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": name, "labels": labels},
        "spec": {"runStrategy": "Halted", "template": {"spec": {"domain": {"devices": {}}}}},
    }


def main(kubeconfig):
    client = dynamic.DynamicClient(config.new_client_from_config(config_file=kubeconfig))
    vms = client.resources.get(api_version="kubevirt.io/v1", kind="VirtualMachine")
    claims = client.resources.get(api_version="k8s.cni.cncf.io/v1alpha1", kind="IPAMClaim")
    assert claims.namespaced, "IPAMClaim is namespaced"
    cudns = client.resources.get(api_version="k8s.ovn.org/v1", kind="ClusterUserDefinedNetwork")
    assert not cudns.namespaced, "CUDN is cluster-scoped"

    created = vms.create(body=vm("py-1", {"py": "yes"}), namespace="default")
    assert created.metadata.resourceVersion, "create returns a resourceVersion"
    got = vms.get(name="py-1", namespace="default")
    assert got.metadata.uid == created.metadata.uid

    listed = vms.get(namespace="default", label_selector="py=yes")
    assert [i.metadata.name for i in listed.items] == ["py-1"], listed.items
    list_rv = listed.metadata.resourceVersion

    vms.create(body=vm("py-2", {"py": "yes"}), namespace="default")
    seen = []
    for event in vms.watch(namespace="default", resource_version=list_rv, timeout=5):
        seen.append((event["type"], event["object"].metadata.name))
        if ("ADDED", "py-2") in seen:
            break
    assert ("ADDED", "py-2") in seen, seen

    initial = []
    for event in vms.watch(namespace="default", label_selector="py=yes", timeout=5):
        initial.append(event["object"].metadata.name)
        if len(initial) == 2:
            break
    assert sorted(initial) == ["py-1", "py-2"], initial

    try:
        vms.get(name="missing", namespace="default")
        raise AssertionError("get of a missing object must fail")
    except exceptions.NotFoundError as err:
        assert err.status == 404

    try:
        vms.create(body=vm("Bad_Name", {}), namespace="default")
        raise AssertionError("an invalid name must be rejected")
    except exceptions.DynamicApiError as err:
        assert err.status == 422, err.status

    try:
        client.resources.get(api_version="ipam.cluster.x-k8s.io/v1alpha1", kind="IPAMClaim")
        raise AssertionError("the Cluster API IPAMClaim must not be served")
    except exceptions.ResourceNotFoundError:
        pass

    vms.delete(name="py-1", namespace="default")
    vms.delete(name="py-2", namespace="default")
    remaining = vms.get(namespace="default", label_selector="py=yes")
    assert remaining.items == [], remaining.items
    print("python dynamic client: ok")


if __name__ == "__main__":
    main(sys.argv[1])
