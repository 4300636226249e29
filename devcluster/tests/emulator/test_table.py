"""Table output (meta.k8s.io/v1) and the JSONPath subset printer columns use."""

from __future__ import annotations

import datetime as dt

import pytest

from vmbmc_devcluster.emulator.table import human_duration, jsonpath, to_table

NOW = dt.datetime(2025, 1, 1, 12, 0, 0, tzinfo=dt.UTC)


def ago(**kw: float) -> str:
    return (NOW - dt.timedelta(**kw)).strftime("%Y-%m-%dT%H:%M:%SZ")


VM_COLUMNS = (
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {
        "name": "Status",
        "type": "string",
        "description": "Human Readable Status",
        "jsonPath": ".status.printableStatus",
    },
    {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
    {"name": "Gen", "type": "integer", "priority": 1, "jsonPath": ".status.observedGeneration"},
)


def vm(name: str, **status: object) -> dict:
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {
            "name": name,
            "namespace": "default",
            "creationTimestamp": ago(minutes=5),
            "uid": "u-" + name,
        },
        "spec": {"runStrategy": "Always"},
        "status": status,
    }


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-5, "<invalid>"),
        (-1, "0s"),
        (0, "0s"),
        (45, "45s"),
        (119, "119s"),
        (120, "2m"),
        (303, "5m3s"),
        (600, "10m"),
        (179 * 60, "179m"),
        (3 * 3600, "3h"),
        (3 * 3600 + 120, "3h2m"),
        (20 * 3600, "20h"),
        (52 * 3600, "2d4h"),
        (3 * 86400, "3d"),
        (100 * 86400, "100d"),
        (400 * 86400, "400d"),
        (3 * 365 * 86400 + 30 * 86400, "3y30d"),
        (10 * 365 * 86400, "10y"),
    ],
)
def test_human_duration(seconds: int, text: str) -> None:
    assert human_duration(seconds) == text


def test_jsonpath_paths_indexes_filters() -> None:
    obj = {
        "a": {"b.c": 1, "l": [{"type": "X", "n": 1}, {"type": "Ready", "n": 2}]},
        "s": ["x", "y", "z"],
    }
    assert jsonpath(obj, ".a.l[1].n") == [2]
    assert jsonpath(obj, "{.a.l[*].type}") == ["X", "Ready"]
    assert jsonpath(obj, ".a['b.c']") == [1]
    assert jsonpath(obj, ".s[-1]") == ["z"]
    assert jsonpath(obj, ".s[0:2]") == ["x", "y"]
    assert jsonpath(obj, '.a.l[?(@.type=="Ready")].n') == [2]
    assert jsonpath(obj, ".a.l[?(@.type!='Ready')].n") == [1]
    assert jsonpath(obj, ".a.l[?(@.n > 1)].type") == ["Ready"]
    assert jsonpath(obj, ".a.l[?(@.missing)].type") == []
    assert jsonpath(obj, ".nope.deeper") == []
    assert jsonpath(obj, ".s[7]") == []
    with pytest.raises(ValueError):
        jsonpath(obj, "..a")


def test_crd_table_shape_and_cells() -> None:
    objs = [
        vm(
            "a",
            printableStatus="Running",
            observedGeneration=2,
            conditions=[{"type": "Paused", "status": "False"}, {"type": "Ready", "status": "True"}],
        ),
        vm("b", printableStatus="Stopped"),
    ]
    table = to_table("VirtualMachine", objs, VM_COLUMNS, resource_version="42", now=NOW)
    assert table["kind"] == "Table" and table["apiVersion"] == "meta.k8s.io/v1"
    assert table["metadata"] == {"resourceVersion": "42"}
    defs = table["columnDefinitions"]
    assert [d["name"] for d in defs] == ["Name", "Age", "Status", "Ready", "Gen"]
    assert defs[0]["format"] == "name" and defs[0]["type"] == "string" and defs[0]["priority"] == 0
    assert defs[1]["type"] == "date" and defs[4]["priority"] == 1
    assert defs[2]["description"] == "Human Readable Status"
    assert set(defs[3]) == {"name", "type", "format", "description", "priority"}
    assert table["rows"][0]["cells"] == ["a", "5m", "Running", "True", 2]
    # Missing values are null cells, not empty strings.
    assert table["rows"][1]["cells"] == ["b", "5m", "Stopped", None, None]


def test_rows_carry_partial_object_metadata_by_default() -> None:
    obj = vm("a")
    row = to_table("VirtualMachine", [obj], VM_COLUMNS, now=NOW)["rows"][0]
    assert row["object"] == {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj["metadata"],
    }
    assert (
        to_table("VirtualMachine", [obj], VM_COLUMNS, include_object="Object", now=NOW)["rows"][0]["object"]
        == obj
    )
    assert (
        to_table("VirtualMachine", [obj], VM_COLUMNS, include_object="None", now=NOW)["rows"][0]["object"]
        is None
    )


@pytest.mark.parametrize(
    ("col_type", "value", "cell"),
    [
        ("string", "x", "x"),
        ("string", 3, "3"),
        ("string", True, "true"),
        ("string", 1.5, "1.5"),
        ("string", {"b": 1, "a": [1, 2]}, '{"a":[1,2],"b":1}'),
        ("integer", 3, 3),
        ("integer", 3.0, 3),
        ("integer", "3", None),
        ("number", 2, 2.0),
        ("number", "x", None),
        ("boolean", False, False),
        ("boolean", "true", None),
        ("date", "not a time", "<invalid>"),
        ("date", 5, None),
    ],
)
def test_crd_cell_types(col_type: str, value: object, cell: object) -> None:
    cols = ({"name": "C", "type": col_type, "jsonPath": ".spec.v"},)
    obj = {"metadata": {"name": "o"}, "spec": {"v": value}}
    got = to_table("Thing", [obj], cols, now=NOW)["rows"][0]["cells"][1]
    assert got == cell and type(got) is type(cell)


def test_crd_without_printer_columns_gets_age() -> None:
    table = to_table("Thing", [{"metadata": {"name": "t", "creationTimestamp": ago(hours=3)}}], (), now=NOW)
    assert [(d["name"], d["type"]) for d in table["columnDefinitions"]] == [
        ("Name", "string"),
        ("Age", "date"),
    ]
    assert table["rows"][0]["cells"] == ["t", "3h"]


def test_empty_list_still_has_columns() -> None:
    table = to_table("VirtualMachine", [], VM_COLUMNS, now=NOW)
    assert table["rows"] == [] and len(table["columnDefinitions"]) == 5


def test_pod_printer() -> None:
    pod = {
        "metadata": {"name": "p", "creationTimestamp": ago(seconds=30)},
        "spec": {"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "node-1"},
        "status": {
            "phase": "Running",
            "podIP": "10.244.0.5",
            "containerStatuses": [
                {"name": "a", "ready": True, "restartCount": 1, "state": {"running": {}}},
                {
                    "name": "b",
                    "ready": False,
                    "restartCount": 2,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                },
            ],
        },
    }
    table = to_table("Pod", [pod], (), now=NOW)
    names = [d["name"] for d in table["columnDefinitions"] if d["priority"] == 0]
    assert names == ["Name", "Ready", "Status", "Restarts", "Age"]
    assert table["rows"][0]["cells"] == [
        "p",
        "1/2",
        "CrashLoopBackOff",
        "3",
        "30s",
        "10.244.0.5",
        "node-1",
        "<none>",
        "<none>",
    ]
    pod["metadata"]["deletionTimestamp"] = ago(seconds=1)
    assert to_table("Pod", [pod], (), now=NOW)["rows"][0]["cells"][2] == "Terminating"


def test_service_printer() -> None:
    svc = {
        "metadata": {"name": "s", "creationTimestamp": ago(days=2)},
        "spec": {
            "type": "NodePort",
            "clusterIP": "10.96.0.10",
            "ports": [{"port": 623, "protocol": "UDP", "nodePort": 30623}, {"port": 443}],
            "selector": {"app": "kbmc"},
        },
    }
    table = to_table("Service", [svc], (), now=NOW)
    assert [d["name"] for d in table["columnDefinitions"]][:6] == [
        "Name",
        "Type",
        "Cluster-IP",
        "External-IP",
        "Port(s)",
        "Age",
    ]
    assert table["rows"][0]["cells"] == [
        "s",
        "NodePort",
        "10.96.0.10",
        "<none>",
        "623:30623/UDP,443/TCP",
        "2d",
        "app=kbmc",
    ]
    svc["spec"]["type"] = "LoadBalancer"
    assert to_table("Service", [svc], (), now=NOW)["rows"][0]["cells"][3] == "<pending>"


def test_deployment_printer() -> None:
    dep = {
        "metadata": {"name": "d", "creationTimestamp": ago(minutes=15)},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "x"}},
            "template": {"spec": {"containers": [{"name": "kbmc", "image": "vmbmc:latest"}]}},
        },
        "status": {"readyReplicas": 1, "updatedReplicas": 2, "availableReplicas": 1},
    }
    table = to_table("Deployment", [dep], (), now=NOW)
    assert [d["name"] for d in table["columnDefinitions"] if d["priority"] == 0] == [
        "Name",
        "Ready",
        "Up-to-date",
        "Available",
        "Age",
    ]
    assert table["rows"][0]["cells"] == ["d", "1/2", 2, 1, "15m", "kbmc", "vmbmc:latest", "app=x"]


def test_simple_builtin_printers() -> None:
    meta = {"name": "x", "creationTimestamp": ago(seconds=10)}
    assert to_table(
        "Secret", [{"metadata": meta, "type": "Opaque", "data": {"a": "", "b": ""}}], (), now=NOW
    )["rows"][0]["cells"] == ["x", "Opaque", "2", "10s"]
    assert to_table("Namespace", [{"metadata": meta, "status": {"phase": "Active"}}], (), now=NOW)["rows"][0][
        "cells"
    ] == ["x", "Active", "10s"]
    assert to_table("Lease", [{"metadata": meta, "spec": {"holderIdentity": "me"}}], (), now=NOW)["rows"][0][
        "cells"
    ] == ["x", "me", "10s"]
    ep = {"metadata": meta, "subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 623}]}]}
    assert to_table("Endpoints", [ep], (), now=NOW)["rows"][0]["cells"] == ["x", "10.0.0.1:623", "10s"]


def test_unknown_builtin_kind_gets_name_and_age() -> None:
    table = to_table(
        "RoleBinding", [{"metadata": {"name": "rb", "creationTimestamp": ago(seconds=5)}}], (), now=NOW
    )
    assert table["rows"][0]["cells"] == ["rb", "5s"]


def test_printer_columns_win_over_builtin_printer() -> None:
    cols = ({"name": "Phase", "type": "string", "jsonPath": ".status.phase"},)
    table = to_table("Pod", [{"metadata": {"name": "p"}, "status": {"phase": "Running"}}], cols, now=NOW)
    assert table["rows"][0]["cells"] == ["p", "Running"]
