"""The project's CRD as kube-apiserver would treat it: defaults, CEL rules, enums, printer columns."""

from __future__ import annotations

import json

import pytest


def _bmc(name: str, spec: dict) -> str:
    return json.dumps(
        {
            "apiVersion": "virtualmachine.kubevirt.io/v1",
            "kind": "VirtualMachineBMC",
            "metadata": {"name": name},
            "spec": spec,
        }
    )


def test_seed_and_new_shapes_are_accepted_with_defaults(kubectl):
    kubectl(
        "apply",
        "--validate=false",
        "-f",
        "-",
        input=_bmc(
            "seed-shape",
            {"vmNamespace": "default", "vmName": "vm1", "username": "admin", "password": "password"},
        ),
    )
    kubectl(
        "apply",
        "--validate=false",
        "-f",
        "-",
        input=_bmc("new-shape", {"virtualMachineRef": {"name": "vm1"}}),
    )
    spec = json.loads(kubectl("get", "vmbmc", "new-shape", "-o", "json").stdout)["spec"]
    assert spec["ipmi"] == {"enabled": True}
    assert spec["redfish"] == {"enabled": False, "insecureHTTP": False}
    assert spec["service"] == {"type": "ClusterIP"}
    header = kubectl("get", "vmbmc").stdout.splitlines()[0].split()
    assert header == ["NAME", "VM", "POWER", "READY", "SERVICE-IP", "AGE"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"virtualMachineRef": {"name": "a"}, "vmNamespace": "x", "vmName": "b"}, "exactly one of them"),
        ({}, "exactly one of them"),
        ({"vmName": "a"}, "vmNamespace and vmName go together"),
        (
            {
                "virtualMachineRef": {"name": "a"},
                "authSecretRef": {"name": "s"},
                "username": "u",
                "password": "p",
            },
            "give the credentials once",
        ),
        ({"virtualMachineRef": {"name": "a"}, "username": "u"}, "username and password go together"),
        (
            {"virtualMachineRef": {"name": "a"}, "service": {"type": "Bogus"}},
            "spec.service.type: Unsupported value",
        ),
        ({"virtualMachineRef": {}}, "spec.virtualMachineRef.name: Required value"),
    ],
)
def test_invalid_specs_are_rejected_naming_the_problem(kubectl, spec, message):
    out = kubectl("create", "--validate=false", "-f", "-", input=_bmc("invalid", spec), check=False)
    assert out.returncode != 0
    assert "is invalid" in out.stderr and message in out.stderr, out.stderr
