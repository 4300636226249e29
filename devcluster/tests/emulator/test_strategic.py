"""Strategic merge patch for built-ins: merge keys, directives, fallbacks."""

from __future__ import annotations

import copy

import pytest

from vmbmc_devcluster.emulator.strategic import StrategicMergeError, list_strategy, strategic_merge


def deployment() -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "b-kbmc",
            "namespace": "ns",
            "labels": {"app": "kbmc"},
            "annotations": {"a": "1", "b": "2"},
            "finalizers": ["x", "y"],
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "A", "name": "a", "uid": "u1"},
                {"apiVersion": "v1", "kind": "B", "name": "b", "uid": "u2"},
            ],
        },
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "kbmc"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
            "template": {
                "metadata": {"labels": {"app": "kbmc"}},
                "spec": {
                    "containers": [
                        {
                            "name": "kbmc",
                            "image": "vmbmc:1",
                            "args": ["--a", "--b"],
                            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                            "ports": [{"containerPort": 623, "protocol": "UDP"}],
                            "volumeMounts": [{"name": "creds", "mountPath": "/creds"}],
                        },
                        {"name": "sidecar", "image": "side:1"},
                    ],
                    "volumes": [{"name": "creds", "secret": {"secretName": "s"}}],
                    "tolerations": [{"key": "a", "operator": "Exists"}],
                },
            },
        },
        "status": {
            "conditions": [{"type": "Available", "status": "True"}, {"type": "Progressing", "status": "True"}]
        },
    }


def containers(obj: dict) -> list[dict]:
    return obj["spec"]["template"]["spec"]["containers"]


def test_container_merged_by_name_keeps_the_others() -> None:
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "kbmc", "image": "vmbmc:2"}]}}}}
    out = strategic_merge(deployment(), patch, "Deployment")
    assert [c["name"] for c in containers(out)] == ["kbmc", "sidecar"]
    assert containers(out)[0]["image"] == "vmbmc:2"
    assert containers(out)[0]["env"] == deployment()["spec"]["template"]["spec"]["containers"][0]["env"]


def test_new_container_is_appended() -> None:
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "new", "image": "n:1"}]}}}}
    assert [c["name"] for c in containers(strategic_merge(deployment(), patch, "Deployment"))] == [
        "kbmc",
        "sidecar",
        "new",
    ]


def test_nested_env_ports_mounts_merge_by_their_keys() -> None:
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "kbmc",
                            "env": [{"name": "B", "value": "two"}, {"name": "C", "value": "3"}],
                            "ports": [{"containerPort": 443, "protocol": "TCP"}],
                            "volumeMounts": [{"name": "creds", "mountPath": "/creds", "readOnly": True}],
                        }
                    ]
                }
            }
        }
    }
    c = containers(strategic_merge(deployment(), patch, "Deployment"))[0]
    assert c["env"] == [
        {"name": "A", "value": "1"},
        {"name": "B", "value": "two"},
        {"name": "C", "value": "3"},
    ]
    assert [p["containerPort"] for p in c["ports"]] == [623, 443]
    assert c["volumeMounts"] == [{"name": "creds", "mountPath": "/creds", "readOnly": True}]


def test_atomic_lists_are_replaced() -> None:
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [{"name": "kbmc", "args": ["--c"]}],
                    "tolerations": [{"key": "b", "operator": "Exists"}],
                }
            }
        }
    }
    out = strategic_merge(deployment(), patch, "Deployment")
    assert containers(out)[0]["args"] == ["--c"]
    assert out["spec"]["template"]["spec"]["tolerations"] == [{"key": "b", "operator": "Exists"}]


def test_delete_list_element_directive() -> None:
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}}}}
    assert [c["name"] for c in containers(strategic_merge(deployment(), patch, "Deployment"))] == ["kbmc"]


def test_replace_list_directive() -> None:
    patch = {
        "spec": {"template": {"spec": {"volumes": [{"$patch": "replace"}, {"name": "v2", "emptyDir": {}}]}}}
    }
    out = strategic_merge(deployment(), patch, "Deployment")
    assert out["spec"]["template"]["spec"]["volumes"] == [{"name": "v2", "emptyDir": {}}]


def test_replace_and_delete_map_directives() -> None:
    patch = {
        "spec": {
            "selector": {"$patch": "replace", "matchLabels": {"x": "y"}},
            "strategy": {"$patch": "delete"},
        }
    }
    out = strategic_merge(deployment(), patch, "Deployment")
    assert out["spec"]["selector"] == {"matchLabels": {"x": "y"}}
    assert "strategy" not in out["spec"]


def test_null_deletes_key() -> None:
    out = strategic_merge(deployment(), {"metadata": {"annotations": {"a": None, "c": "3"}}}, "Deployment")
    assert out["metadata"]["annotations"] == {"b": "2", "c": "3"}


def test_retain_keys_switches_strategy_type() -> None:
    patch = {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}
    out = strategic_merge(deployment(), patch, "Deployment")
    assert out["spec"]["strategy"] == {"type": "Recreate"}


def test_finalizers_merge_as_a_set_and_delete_from_primitive_list() -> None:
    out = strategic_merge(deployment(), {"metadata": {"finalizers": ["y", "z"]}}, "Deployment")
    assert out["metadata"]["finalizers"] == ["x", "y", "z"]
    out = strategic_merge(
        deployment(), {"metadata": {"$deleteFromPrimitiveList/finalizers": ["x"]}}, "Deployment"
    )
    assert out["metadata"]["finalizers"] == ["y"]


def test_owner_references_merge_by_uid() -> None:
    patch = {"metadata": {"ownerReferences": [{"uid": "u2", "controller": True}, {"uid": "u3", "name": "c"}]}}
    refs = strategic_merge(deployment(), patch, "Deployment")["metadata"]["ownerReferences"]
    assert [r["uid"] for r in refs] == ["u1", "u2", "u3"]
    assert refs[1]["controller"] is True and refs[1]["name"] == "b"


def test_status_conditions_merge_by_type() -> None:
    patch = {"status": {"conditions": [{"type": "Progressing", "status": "False"}]}}
    conds = strategic_merge(deployment(), patch, "Deployment")["status"]["conditions"]
    assert conds == [{"type": "Available", "status": "True"}, {"type": "Progressing", "status": "False"}]


def test_set_element_order() -> None:
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "kbmc"}],
                    "containers": [{"name": "kbmc", "image": "vmbmc:3"}],
                }
            }
        }
    }
    out = strategic_merge(deployment(), patch, "Deployment")
    assert [c["name"] for c in containers(out)] == ["sidecar", "kbmc"]
    assert containers(out)[1]["image"] == "vmbmc:3"


def test_pod_spec_paths_for_pod() -> None:
    pod = {"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "1"}]}}
    out = strategic_merge(pod, {"spec": {"containers": [{"name": "b", "image": "2"}]}}, "Pod")
    assert out["spec"]["containers"] == [{"name": "a", "image": "1"}, {"name": "b", "image": "2"}]


def test_service_ports_merge_by_port() -> None:
    svc = {"spec": {"type": "ClusterIP", "ports": [{"name": "ipmi", "port": 623, "protocol": "UDP"}]}}
    patch = {"spec": {"ports": [{"port": 623, "targetPort": 10623}, {"name": "redfish", "port": 443}]}}
    out = strategic_merge(svc, patch, "Service")
    assert out["spec"]["ports"] == [
        {"name": "ipmi", "port": 623, "protocol": "UDP", "targetPort": 10623},
        {"name": "redfish", "port": 443},
    ]


def test_role_rules_and_binding_subjects_are_replaced() -> None:
    role = {"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}
    patch = {"rules": [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["list"]}]}
    assert strategic_merge(role, patch, "Role")["rules"] == patch["rules"]
    binding = {"subjects": [{"kind": "ServiceAccount", "name": "a"}]}
    assert strategic_merge(binding, {"subjects": [{"kind": "User", "name": "u"}]}, "RoleBinding")[
        "subjects"
    ] == [{"kind": "User", "name": "u"}]


def test_secret_and_configmap_data_merge_as_maps() -> None:
    secret = {"type": "Opaque", "data": {"username": "dQ==", "password": "cA=="}}
    out = strategic_merge(secret, {"data": {"password": "cTI=", "username": None}}, "Secret")
    assert out["data"] == {"password": "cTI="}


def test_rollout_restart_annotation_patch() -> None:
    patch = {
        "spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "now"}}}}
    }
    out = strategic_merge(deployment(), patch, "Deployment")
    assert out["spec"]["template"]["metadata"] == {
        "labels": {"app": "kbmc"},
        "annotations": {"kubectl.kubernetes.io/restartedAt": "now"},
    }


def test_unknown_kind_lists_replace() -> None:
    assert list_strategy("Lease", ("spec", "whatever")) == (None, "replace")
    assert list_strategy("Lease", ("metadata", "ownerReferences")) == ("uid", "merge")
    assert list_strategy("Deployment", ("spec", "template", "spec", "containers", "env")) == ("name", "merge")
    assert list_strategy("Pod", ("metadata", "finalizers")) == (None, "merge")
    out = strategic_merge({"spec": {"l": [1, 2]}}, {"spec": {"l": [3]}}, "NetworkPolicy")
    assert out == {"spec": {"l": [3]}}


def test_original_and_patch_are_not_modified() -> None:
    original = deployment()
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "kbmc", "image": "vmbmc:2"}]}}}}
    before_o, before_p = copy.deepcopy(original), copy.deepcopy(patch)
    out = strategic_merge(original, patch, "Deployment")
    assert original == before_o and patch == before_p
    containers(out)[0]["env"].append({"name": "Z"})
    assert original == before_o


def test_directives_do_not_leak_into_new_values() -> None:
    patch = {"spec": {"newmap": {"$patch": "replace", "a": 1}}, "metadata": {"labels": {"x": None}}}
    out = strategic_merge({"spec": {}, "metadata": {}}, patch, "ConfigMap")
    assert out == {"spec": {"newmap": {"a": 1}}, "metadata": {"labels": {}}}


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ([{"op": "add"}], "must be a JSON object"),
        (
            {"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}},
            "does not contain declared merge key: name",
        ),
        ({"spec": {"$patch": "explode"}}, "Unknown patch type: explode"),
        ({"metadata": {"$retainKeys": "name"}}, "$retainKeys"),
        ({"spec": {"template": {"spec": {"containers": ["x"]}}}}, "holds objects"),
    ],
)
def test_malformed_patches(patch: object, message: str) -> None:
    with pytest.raises(StrategicMergeError, match=message.replace("$", r"\$")):
        strategic_merge(deployment(), patch, "Deployment")
