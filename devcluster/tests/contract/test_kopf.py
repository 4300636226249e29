"""A real kopf operator (kopf.testing.KopfRunner) against the emulator: the path vmbmc's controller takes."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kopf.testing import KopfRunner

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "gadgets.example.vmbmc.io"},
    "spec": {
        "group": "example.vmbmc.io",
        "scope": "Namespaced",
        "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                            "status": {"type": "object", "properties": {"phase": {"type": "string"}}},
                        },
                    }
                },
            }
        ],
    },
}


def _until(fn, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.2)
    return fn()


@pytest.fixture
def kopf_logging() -> Iterator[None]:
    """`kopf run` configures logging for the whole process (the root logger at DEBUG with --verbose, its
    handler, asyncio's logger): put it back, so the tests after this one do not log every API body (and
    celpy every object, secrets included) at DEBUG."""
    root, aio = logging.getLogger(), logging.getLogger("asyncio")
    saved = (root.level, list(root.handlers), aio.propagate, list(aio.handlers), aio.level)
    yield
    root.setLevel(saved[0])
    root.handlers[:] = saved[1]
    aio.propagate, aio.handlers[:] = saved[2], saved[3]
    aio.setLevel(saved[4])


@pytest.mark.usefixtures("kopf_logging")
def test_kopf_create_status_event_finalizer_delete(emulator, kubectl):
    kubectl("apply", "--validate=false", "-f", "-", input=json.dumps(CRD))
    kubectl("wait", "--for=condition=established", "crd/gadgets.example.vmbmc.io", "--timeout=20s")
    module = str(Path(__file__).with_name("kopf_operator.py"))
    args = ["run", "--standalone", "--verbose", "--namespace", "default", module]
    with KopfRunner(args, timeout=60, env={"KUBECONFIG": str(emulator.kubeconfig)}) as runner:
        kubectl(
            "create",
            "--validate=false",
            "-f",
            "-",
            input=json.dumps(
                {
                    "apiVersion": "example.vmbmc.io/v1",
                    "kind": "Gadget",
                    "metadata": {"name": "g1"},
                    "spec": {},
                }
            ),
        )

        def phase() -> str:
            out = kubectl("get", "gadget", "g1", "-o", "json", check=False)
            return json.loads(out.stdout).get("status", {}).get("phase", "") if out.returncode == 0 else ""

        assert _until(phase) == "Created"
        obj = json.loads(kubectl("get", "gadget", "g1", "-o", "json").stdout)
        assert obj["metadata"].get("finalizers"), "kopf adds its finalizer before running the create handler"
        events = _until(lambda: "Greeted" in kubectl("get", "events", "-o", "json").stdout)
        assert events
        kubectl("delete", "gadget", "g1", "--wait=false")
        gone = _until(lambda: kubectl("get", "gadget", "g1", check=False).returncode != 0)
        assert gone, "kopf released its finalizer and the object went away"
    if runner.exception is not None:
        pytest.fail(f"kopf crashed: {runner.exception!r}")
