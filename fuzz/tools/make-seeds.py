#!/usr/bin/env python3
"""Writes the committed seed corpus of the fuzz targets from the repository's real inputs.

    python3 fuzz/tools/make-seeds.py          # from the repository root

Every seed is named `seed-*` (files libFuzzer adds are named by their SHA-1 and are not
committed, see .gitignore). Sources:

* bmp_stream: the FRR 8.4.4 BMP captures of harness/bgp/tests/fixtures/, whole and one file per
  distinct message.
* profile: profiles/*.yaml.
* es_bulk_response: `_bulk` response bodies in the shapes the reporters' Elasticsearch test server
  (reporters/src/test_server.rs) and Elasticsearch/OpenSearch answer.
* lab_api_body: the objects of the rendered manifests in workloads/golden/ (one per kind and file,
  moved to the target's namespace `fuzz`), as JSON and YAML create bodies and schema checks, plus
  patch and update bodies for the target's base objects. The first byte selects the request (see
  `lab_api_body` in fuzz/replay/src/lib.rs).
* netlink_route is recorded from the kernel by fuzz/tools/capture-netlink.py (needs root).
"""

import hashlib
import json
import os
import struct
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "fuzz" / "corpus"
NAMESPACE = "fuzz"


def write(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (d / f"seed-{name}").write_bytes(data)


def clear(target):
    d = CORPUS / target
    if d.is_dir():
        for f in d.glob("seed-*"):
            f.unlink()


def bmp():
    clear("bmp_stream")
    seen = set()
    for capture in sorted((ROOT / "harness/bgp/tests/fixtures").glob("*.bmp")):
        stream = capture.read_bytes()
        write("bmp_stream", capture.name, stream)
        rest, i = stream, 0
        while len(rest) >= 6:
            length = struct.unpack(">I", rest[1:5])[0]
            message, rest = rest[:length], rest[length:]
            if message not in seen:
                seen.add(message)
                write("bmp_stream", f"{capture.stem}-msg{i:02d}-type{message[5]}.bmp", message)
            i += 1


def profiles():
    clear("profile")
    for p in sorted((ROOT / "profiles").glob("*.yaml")):
        write("profile", p.name, p.read_bytes())


ES_RESPONSES = {
    # What the reporters' test server answers (reporters/src/test_server.rs).
    "test-server-created": {"took": 1, "errors": False, "items": [
        {"index": {"_index": "vmbgp", "_id": "a1", "result": "created", "status": 201}},
        {"index": {"_index": "vmbgp", "_id": "a2", "result": "updated", "status": 200}}]},
    "test-server-scripted-failures": {"took": 1, "errors": True, "items": [
        {"index": {"_index": "vmbgp", "_id": "a1", "status": 429,
                   "error": {"type": "es_rejected_execution_exception", "reason": "scripted item failure"}}},
        {"index": {"_index": "vmbgp", "_id": "a2", "status": 500,
                   "error": {"type": "mapper_parsing_exception", "reason": "scripted item failure"}}},
        {"index": {"_index": "vmbgp", "_id": "a3", "result": "created", "status": 201}}]},
    # Elasticsearch 8 / OpenSearch 2 shapes.
    "elasticsearch-created": {"took": 30, "errors": False, "items": [
        {"index": {"_index": "vmbgp-bench", "_id": "00000000-0000-4000-8000-000000000000-1",
                   "_version": 1, "result": "created",
                   "_shards": {"total": 2, "successful": 1, "failed": 0},
                   "_seq_no": 0, "_primary_term": 1, "status": 201}}]},
    "elasticsearch-mapping-error": {"took": 3, "errors": True, "items": [
        {"index": {"_index": "vmbgp-bench", "_id": "x", "status": 400,
                   "error": {"type": "document_parsing_exception",
                             "reason": "[1:12] failed to parse field [value] of type [long] in document with id 'x'. Preview of field's value: 'abc'",
                             "caused_by": {"type": "illegal_argument_exception", "reason": "For input string: \"abc\""}}}},
        {"create": {"_index": "vmbgp-bench", "_id": "y", "status": 409,
                    "error": {"type": "version_conflict_engine_exception",
                              "reason": "[y]: version conflict, document already exists (current version [1])",
                              "index_uuid": "aAsFqTI0Tc2W0LCWgPNrOA", "shard": "0", "index": "vmbgp-bench"}}},
        {"update": {"_index": "vmbgp-bench", "_id": "z", "_version": 2, "result": "noop", "status": 200}}]},
    "opensearch-rejected": {"took": 0, "ingest_took": 2, "errors": True, "items": [
        {"index": {"_index": "vmbgp-bench", "_id": "q", "status": 429,
                   "error": {"type": "rejected_execution_exception",
                             "reason": "rejected execution of coordinating operation"}}}]},
    "request-error": {"error": {"root_cause": [{"type": "illegal_argument_exception",
                                                "reason": "The bulk request must be terminated by a newline [\\n]"}],
                                "type": "illegal_argument_exception",
                                "reason": "The bulk request must be terminated by a newline [\\n]"},
                      "status": 400},
}


def es():
    clear("es_bulk_response")
    for name, body in ES_RESPONSES.items():
        write("es_bulk_response", f"{name}.json", json.dumps(body, separators=(",", ":")))


def lab():
    clear("lab_api_body")
    for golden in sorted((ROOT / "workloads/golden").glob("*.yaml")):
        kinds = set()
        for doc in yaml.safe_load_all(golden.read_text()):
            if not doc or doc["kind"] in kinds:
                continue
            kinds.add(doc["kind"])
            if "namespace" in doc.get("metadata", {}):
                doc["metadata"]["namespace"] = NAMESPACE
            stem = f"{golden.stem}-{doc['kind']}"
            as_json = json.dumps(doc, separators=(",", ":")).encode()
            write("lab_api_body", f"{stem}-create.json", b"\x00" + as_json)
            write("lab_api_body", f"{stem}-create.yaml",
                  b"\x01" + yaml.safe_dump(doc, sort_keys=False).encode())
            write("lab_api_body", f"{stem}-schema.json", b"\x07" + as_json)
    # Patches and updates of the base objects (VirtualMachine vm-0-1; 0x08 = the Namespace).
    patches = {
        "merge-vm-halt": (0x02, {"spec": {"runStrategy": "Halted"}}),
        "merge-vm-labels": (0x02, {"metadata": {"labels": {"vmbgp.io/job": None, "x": "y"}}}),
        "merge-vm-status": (0x12, {"status": {"printableStatus": "Running", "ready": True}}),
        "merge-namespace": (0x0A, {"metadata": {"labels": {"k8s.ovn.org/primary-user-defined-network": ""}}}),
        "json-patch-vm": (0x03, [
            {"op": "test", "path": "/spec/runStrategy", "value": "Always"},
            {"op": "replace", "path": "/spec/runStrategy", "value": "Halted"},
            {"op": "add", "path": "/metadata/annotations", "value": {"a": "b"}},
            {"op": "remove", "path": "/metadata/labels/vmbgp.io~1job"}]),
        "json-patch-namespace": (0x0B, [
            {"op": "add", "path": "/metadata/labels/x", "value": "y"},
            {"op": "copy", "from": "/metadata/name", "path": "/metadata/labels/name"},
            {"op": "move", "from": "/metadata/labels/x", "path": "/metadata/labels/z"}]),
        "strategic-namespace": (0x0D, {"metadata": {"annotations": {"a": "b"}}}),
        "strategic-vm-refused": (0x05, {"spec": {"runStrategy": "Halted"}}),
    }
    for name, (selector, body) in patches.items():
        write("lab_api_body", f"{name}.json", bytes([selector]) + json.dumps(body).encode())
    vm = {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
          "metadata": {"name": "vm-0-1", "namespace": NAMESPACE},
          "spec": {"runStrategy": "Halted", "template": {"spec": {"domain": {"devices": {}}}}}}
    write("lab_api_body", "apply-vm.yaml", b"\x04" + yaml.safe_dump(vm, sort_keys=False).encode())
    write("lab_api_body", "apply-vm-force.yaml", b"\x44" + yaml.safe_dump(vm, sort_keys=False).encode())
    write("lab_api_body", "update-vm.json", b"\x06" + json.dumps(vm).encode())
    status = dict(vm, status={"printableStatus": "Stopped"})
    write("lab_api_body", "update-vm-status.json", b"\x16" + json.dumps(status).encode())


def main():
    targets = sys.argv[1:] or ["bmp_stream", "profile", "es_bulk_response", "lab_api_body"]
    for t in targets:
        {"bmp_stream": bmp, "profile": profiles, "es_bulk_response": es, "lab_api_body": lab}[t]()
    for t in sorted(os.listdir(CORPUS)):
        files = list((CORPUS / t).iterdir())
        size = sum(f.stat().st_size for f in files)
        print(f"{t}: {len(files)} files, {size} bytes")


if __name__ == "__main__":
    main()
