"""Every kind the lab serves, through the official Python client (`kubernetes` from PyPI).

Run by tests/python_client.rs as `every_kind.py <kubeconfig> <kinds.json>`; kinds.json lists every kind of the
lab's registry with one object of it ({group, version, kind, plural, namespaced, status, namespace, name}).

For each kind: list (all namespaces and per namespace), get, get status, watch from scratch (ADDED) and from the
list's resourceVersion (MODIFIED after a label patch), through the typed API and models where the client has them
(CoreV1Api for Node and Namespace), else CustomObjectsApi, and always DynamicClient; every object's metadata must
fit V1ObjectMeta and every discovery document its model. The client validates on deserialization, so a field
the lab leaves out or mistypes fails here. Each failure is printed as
`kubernetes==<version>: <Kind> (<call>): <field path>: <error>` and the script exits 1.
"""

import inspect
import json
import re
import sys
import traceback

import kubernetes
from kubernetes import client, config, dynamic, watch
from kubernetes.client import models
from kubernetes.client.rest import ApiException

VERSION = kubernetes.__version__
try:  # recent clients validate with pydantic; older ones raise ValueError from their models' setters
    import pydantic

    MODELS = f"pydantic=={pydantic.VERSION}"
except ImportError:
    MODELS = "setter-validated models"
WATCH_SECONDS = 10
PROBE_LABEL = "vmbgp.io/python-probe"


class Report:
    def __init__(self):
        self.failures = []
        self.calls = 0

    def fail(self, kind, call, path, message):
        self.failures.append(f"kubernetes=={VERSION}: {kind} ({call}): {path or '<response>'}: {message}")

    def check(self, condition, kind, call, message):
        if not condition:
            self.fail(kind, call, "", message)


def join(path, key):
    return f"{path}.{key}" if path else str(key)


def model_errors(data, type_name, path=""):
    """Where `data` breaks the client's model `type_name`: [(field path, message)], innermost models first, so a
    nested failure names its full path (pydantic alone names only the innermost model)."""
    m = re.fullmatch(r"Optional\[(.*)\]", type_name)
    if m:
        return [] if data is None else model_errors(data, m.group(1), path)
    m = re.fullmatch(r"List\[(.*)\]", type_name)
    if m:
        if not isinstance(data, list):
            return [(path, f"expected a list, got {json.dumps(data)}")]
        errors = []
        for i, item in enumerate(data):
            # Objects of a list are named by their name: "items[node-2].status...".
            name = item.get("metadata", {}).get("name") if isinstance(item, dict) else None
            errors += model_errors(item, m.group(1), f"{path}[{name if isinstance(name, str) else i}]")
        return errors
    m = re.fullmatch(r"Dict\[str, (.*)\]", type_name)
    if m:
        if not isinstance(data, dict):
            return [(path, f"expected an object, got {json.dumps(data)}")]
        return [e for k, v in data.items() for e in model_errors(v, m.group(1), f"{path}[{k!r}]")]
    klass = getattr(models, type_name, None)
    if klass is None:
        return []  # a primitive: the enclosing model checks it
    if not isinstance(data, dict):
        return [(path, f"expected an object for {type_name}, got {json.dumps(data)}")]
    errors = []
    for attr, key in klass.attribute_map.items():
        if data.get(key) is not None:
            errors += model_errors(data[key], klass.openapi_types[attr], join(path, key))
    if errors:
        return errors
    try:
        from_dict = getattr(klass, "from_dict", None)
        if from_dict:
            from_dict(data)
        else:
            klass(**{attr: data.get(key) for attr, key in klass.attribute_map.items()})
    except Exception as err:
        details = err.errors() if callable(getattr(err, "errors", None)) else None
        for e in details or []:  # pydantic names each field it refused
            loc = ".".join(str(p) for p in e["loc"])
            errors.append((join(path, loc), f"{e['msg']} (got {e.get('input')!r})"))
        if not details:
            errors.append((path, f"{type(err).__name__}: {err}"))
    return errors


def report_model(report, kind, call, data, type_name, path=""):
    for where, message in model_errors(data, type_name, path):
        report.fail(kind, call, where, message)


def raw(fn, *args, **kwargs):
    """The same call, undecoded."""
    return json.loads(fn(*args, _preload_content=False, **kwargs).data)


def typed(report, kind, call, fn, *args, **kwargs):
    """The typed call; when decoding fails, the fields of the raw response that broke the model are reported."""
    report.calls += 1
    try:
        return fn(*args, **kwargs)
    except ApiException as err:
        report.fail(kind, call, "", f"HTTP {err.status}: {err.body}")
    except Exception as err:  # the models' validation errors
        model = return_model(fn)
        located = model_errors(raw(fn, *args, **kwargs), model) if model else []
        for where, message in located:
            report.fail(kind, call, where, message)
        if not located:
            report.fail(kind, call, "", f"{type(err).__name__}: {err}")
    return None


def return_model(fn):
    annotation = inspect.signature(fn).return_annotation
    name = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    return name if hasattr(models, name) else None


def typed_api(api_client, spec):
    """The client's typed API class for the kind's group/version, if it has one serving the kind."""
    group, version = spec["group"], spec["version"]
    if group == "":
        name = f"Core{version.capitalize()}Api"
    else:
        short = group[: -len(".k8s.io")] if group.endswith(".k8s.io") else group
        name = "".join(p.capitalize() for p in re.split(r"[.-]", short)) + version.capitalize() + "Api"
    cls = getattr(client, name, None)
    if cls is None:
        return None
    api = cls(api_client)
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", spec["kind"]).lower()
    return (api, snake) if hasattr(api, f"read_{'namespaced_' if spec['namespaced'] else ''}{snake}") else None


def names(items):
    return [i.metadata.name if hasattr(i, "metadata") else i["metadata"]["name"] for i in items]


def watch_until(report, kind, call, list_fn, want, *args, **kwargs):
    """Streams a watch until an event (type, object name) in `want` arrives; returns the events seen."""
    w = watch.Watch()
    seen = []
    report.calls += 1
    try:
        for event in w.stream(list_fn, *args, timeout_seconds=WATCH_SECONDS, **kwargs):
            obj = event["object"]
            name = obj.metadata.name if hasattr(obj, "metadata") else obj.get("metadata", {}).get("name")
            seen.append((event["type"], name, obj))
            if (event["type"], name) == want:
                w.stop()
                break
    except ApiException as err:
        report.fail(kind, call, "", f"HTTP {err.status}: {err.body}")
        return seen
    except Exception as err:
        model = return_model(list_fn)
        located = []
        if model:
            # Watch events carry single objects: find the one the item model rejects in the listed items.
            listed = raw(list_fn, *args, **{k: v for k, v in kwargs.items() if k != "resource_version"})
            item_model = model[: -len("List")] if model.endswith("List") else model
            located = model_errors(listed.get("items") or [], f"List[{item_model}]", "items")
        for where, message in located:
            report.fail(kind, call, where, message)
        if not located:
            report.fail(kind, call, "", f"{type(err).__name__}: {err}")
        return seen
    report.check(
        any((t, n) == want for t, n, _ in seen),
        kind,
        call,
        f"no {want[0]} event for {want[1]} within {WATCH_SECONDS}s; saw {[(t, n) for t, n, _ in seen]}",
    )
    return seen


def probe_patch(dyn_resource, spec, value):
    """A label change, so a watch from an earlier resourceVersion sees MODIFIED."""
    body = {"metadata": {"labels": {PROBE_LABEL: value}}}
    dyn_resource.patch(
        body=body,
        name=spec["name"],
        namespace=spec["namespace"],
        content_type="application/merge-patch+json",
    )


def check_typed(report, api, snake, spec, dyn_resource):
    kind, ns, name = spec["kind"], spec["namespace"], spec["name"]
    if spec["namespaced"]:
        list_all = getattr(api, f"list_{snake}_for_all_namespaces")
        list_ns = getattr(api, f"list_namespaced_{snake}")
        listed = typed(report, kind, f"{list_all.__name__}", list_all)
        in_ns = typed(report, kind, f"{list_ns.__name__}", list_ns, ns)
        got = typed(report, kind, f"read_namespaced_{snake}", getattr(api, f"read_namespaced_{snake}"), name, ns)
        if spec["status"]:
            typed(report, kind, f"read_namespaced_{snake}_status", getattr(api, f"read_namespaced_{snake}_status"), name, ns)
        if in_ns is not None:
            report.check(name in names(in_ns.items), kind, list_ns.__name__, f"{name} missing")
    else:
        list_all = getattr(api, f"list_{snake}")
        listed = typed(report, kind, list_all.__name__, list_all)
        got = typed(report, kind, f"read_{snake}", getattr(api, f"read_{snake}"), name)
        if spec["status"]:
            typed(report, kind, f"read_{snake}_status", getattr(api, f"read_{snake}_status"), name)
    model = return_model(list_all)
    item_model = model[: -len("List")]
    if listed is not None:
        report.check(name in names(listed.items), kind, list_all.__name__, f"{name} missing")
        report.check(
            all(type(i).__name__ == item_model for i in listed.items), kind, list_all.__name__, "items are not typed"
        )
    if got is not None:
        report.check(got.metadata.name == name, kind, "read", f"got {got.metadata.name}")
    seen = watch_until(report, kind, f"watch {list_all.__name__}", list_all, ("ADDED", name))
    report.check(
        all(type(o).__name__ == item_model for _, _, o in seen), kind, f"watch {list_all.__name__}", "objects are not typed"
    )
    if listed is not None:
        probe_patch(dyn_resource, spec, "typed")
        watch_until(
            report,
            kind,
            f"watch {list_all.__name__} from resourceVersion",
            list_all,
            ("MODIFIED", name),
            resource_version=listed.metadata.resource_version,
        )


def check_custom(report, custom, spec, dyn_resource):
    """A kind without a typed model (a CRD on a real cluster): CustomObjectsApi, whose dicts must still carry
    metadata the client's V1ObjectMeta accepts."""
    kind, group, version, plural = spec["kind"], spec["group"], spec["version"], spec["plural"]
    ns, name = spec["namespace"], spec["name"]
    listed = typed(report, kind, "list_cluster_custom_object", custom.list_cluster_custom_object, group, version, plural)
    if spec["namespaced"]:
        in_ns = typed(
            report, kind, "list_namespaced_custom_object", custom.list_namespaced_custom_object, group, version, ns, plural
        )
        got = typed(
            report, kind, "get_namespaced_custom_object", custom.get_namespaced_custom_object, group, version, ns, plural, name
        )
        if spec["status"]:
            typed(
                report,
                kind,
                "get_namespaced_custom_object_status",
                custom.get_namespaced_custom_object_status,
                group,
                version,
                ns,
                plural,
                name,
            )
        if in_ns is not None:
            report.check(name in names(in_ns["items"]), kind, "list_namespaced_custom_object", f"{name} missing")
    else:
        got = typed(report, kind, "get_cluster_custom_object", custom.get_cluster_custom_object, group, version, plural, name)
        if spec["status"]:
            typed(
                report,
                kind,
                "get_cluster_custom_object_status",
                custom.get_cluster_custom_object_status,
                group,
                version,
                plural,
                name,
            )
    if listed is not None:
        report.check(name in names(listed["items"]), kind, "list_cluster_custom_object", f"{name} missing")
        report_model(report, kind, "list_cluster_custom_object", listed.get("metadata"), "V1ListMeta", "metadata")
        for i, item in enumerate(listed["items"]):
            report_model(report, kind, "list_cluster_custom_object", item.get("metadata"), "V1ObjectMeta", f"items[{i}].metadata")
            report.check(
                item.get("apiVersion") == spec["api_version"] and item.get("kind") == kind,
                kind,
                "list_cluster_custom_object",
                f"items[{i}] has apiVersion/kind {item.get('apiVersion')}/{item.get('kind')}",
            )
    if got is not None:
        report.check(got["metadata"]["name"] == name, kind, "get", f"got {got['metadata']['name']}")
    call = "watch list_cluster_custom_object"
    seen = watch_until(report, kind, call, custom.list_cluster_custom_object, ("ADDED", name), group, version, plural)
    for t, n, o in seen:
        report_model(report, kind, call, o.get("metadata"), "V1ObjectMeta", f"{t} {n}: metadata")
    if listed is not None:
        probe_patch(dyn_resource, spec, "custom")
        watch_until(
            report,
            kind,
            f"{call} from resourceVersion",
            custom.list_cluster_custom_object,
            ("MODIFIED", name),
            group,
            version,
            plural,
            resource_version=listed["metadata"]["resourceVersion"],
        )


def check_dynamic(report, dyn, spec):
    kind, ns, name = spec["kind"], spec["namespace"], spec["name"]
    report.calls += 1
    try:
        res = dyn.resources.get(api_version=spec["api_version"], kind=kind)
    except Exception as err:
        report.fail(kind, "DynamicClient discovery", "", f"{type(err).__name__}: {err}")
        return None
    report.check(res.name == spec["plural"], kind, "DynamicClient discovery", f"resource name {res.name}")
    report.check(res.namespaced == spec["namespaced"], kind, "DynamicClient discovery", f"namespaced {res.namespaced}")
    try:
        listed = res.get()
        report.check(name in [i.metadata.name for i in listed.items], kind, "DynamicClient list", f"{name} missing")
        got = res.get(name=name, namespace=ns)
        report.check(got.metadata.name == name, kind, "DynamicClient get", f"got {got.metadata.name}")
        seen = []
        for event in res.watch(namespace=ns, timeout=WATCH_SECONDS):
            seen.append((event["type"], event["object"].metadata.name))
            if seen[-1] == ("ADDED", name):
                break
        report.check(("ADDED", name) in seen, kind, "DynamicClient watch", f"saw {seen}")
    except Exception as err:
        report.fail(kind, "DynamicClient", "", f"{type(err).__name__}: {err}")
    return res


def check_discovery(report, api_client, kinds):
    """The discovery documents and /version through their typed models."""
    typed(report, "discovery", "VersionApi.get_code", client.VersionApi(api_client).get_code)
    typed(report, "discovery", "CoreApi.get_api_versions", client.CoreApi(api_client).get_api_versions)
    groups = typed(report, "discovery", "ApisApi.get_api_versions", client.ApisApi(api_client).get_api_versions)
    served = {}
    for spec in kinds:
        served.setdefault((spec["group"], spec["version"]), set()).add(spec["plural"])
    if groups is not None:
        listed = {(g.name, v.version) for g in groups.groups for v in g.versions}
        for group, version in served:
            if group:
                report.check((group, version) in listed, "discovery", "ApisApi.get_api_versions", f"{group}/{version} missing")
    custom = client.CustomObjectsApi(api_client)
    for (group, version), plurals in sorted(served.items()):
        if group:
            call = f"CustomObjectsApi.get_api_resources({group}, {version})"
            resources = typed(report, "discovery", call, custom.get_api_resources, group, version)
            # /apis/<group> has no typed call for a CRD group: fetch it with the client's TLS and token, and decode
            # it with the APIGroup model.
            request = api_client.param_serialize("GET", f"/apis/{group}", auth_settings=["BearerToken"])
            resp = api_client.call_api(*request)
            report_model(report, "discovery", f"GET /apis/{group}", json.loads(resp.read()), "V1APIGroup")
        else:
            call = f"CoreV1Api.get_api_resources ({version})"
            resources = typed(report, "discovery", call, client.CoreV1Api(api_client).get_api_resources)
        if resources is not None:
            got = {r.name for r in resources.resources}
            report.check(plurals <= got, "discovery", call, f"missing {sorted(plurals - got)}")


def main(kubeconfig, kinds_file):
    with open(kinds_file) as f:
        kinds = json.load(f)
    api_client = config.new_client_from_config(config_file=kubeconfig)
    dyn = dynamic.DynamicClient(api_client)
    custom = client.CustomObjectsApi(api_client)
    report = Report()
    print(f"python client: kubernetes=={VERSION} ({MODELS}), {len(kinds)} kinds")
    check_discovery(report, api_client, kinds)
    for spec in kinds:
        spec["api_version"] = f"{spec['group']}/{spec['version']}" if spec["group"] else spec["version"]
        try:
            dyn_resource = check_dynamic(report, dyn, spec)
            found = typed_api(api_client, spec)
            if found:
                check_typed(report, found[0], found[1], spec, dyn_resource)
                print(f"{spec['kind']}: typed ({type(found[0]).__name__})")
            else:
                check_custom(report, custom, spec, dyn_resource)
                print(f"{spec['kind']}: CustomObjectsApi")
        except Exception as err:
            report.fail(spec["kind"], "test", "", f"{type(err).__name__}: {err}\n{traceback.format_exc()}")
    for line in report.failures:
        print(f"FAIL {line}")
    if report.failures:
        print(f"python client kubernetes=={VERSION}: {len(report.failures)} failures")
        sys.exit(1)
    print(f"python client kubernetes=={VERSION}: every kind ok ({len(kinds)} kinds, {report.calls} calls)")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
