"""Deployment / ReplicaSet / pod-status logic (no server)."""

from __future__ import annotations

from vmbmc_devcluster.emulator.kubelet import qos_class, running_status
from vmbmc_devcluster.emulator.workloads import (
    HASH_LABEL,
    REVISION,
    deployment_status,
    new_pod,
    new_replicaset,
    rolling_params,
    selector_string,
    template_hash,
)

NOW = "2026-01-01T00:00:00Z"


def deployment(replicas: int = 1, image: str = "vmbmc:1", strategy: str = "Recreate") -> dict:
    return {
        "metadata": {"name": "d", "namespace": "ns", "uid": "d-uid", "generation": 2},
        "spec": {
            "replicas": replicas,
            "strategy": {"type": strategy},
            "selector": {"matchLabels": {"app": "kbmc"}},
            "template": {
                "metadata": {"labels": {"app": "kbmc"}},
                "spec": {"containers": [{"name": "kbmc", "image": image}]},
            },
        },
    }


def test_template_hash_is_stable_and_changes_with_template() -> None:
    a = template_hash(deployment()["spec"]["template"])
    assert a == template_hash(deployment()["spec"]["template"])
    assert a != template_hash(deployment(image="vmbmc:2")["spec"]["template"])
    assert a != template_hash(deployment()["spec"]["template"], 1)
    assert set(a) <= set("bcdfghjklmnpqrstvwxz2456789")


def test_selector_string() -> None:
    sel = {
        "matchLabels": {"b": "2", "a": "1"},
        "matchExpressions": [
            {"key": "x", "operator": "In", "values": ["p", "q"]},
            {"key": "y", "operator": "DoesNotExist"},
        ],
    }
    assert selector_string(sel) == "a=1,b=2,x in (p,q),!y"


def test_replicaset_and_pod_from_deployment() -> None:
    d = deployment()
    h = template_hash(d["spec"]["template"])
    rs = new_replicaset(d, h, 3)
    assert rs["metadata"]["name"] == f"d-{h}"
    assert rs["metadata"]["annotations"][REVISION] == "3"
    assert rs["spec"]["selector"]["matchLabels"] == {"app": "kbmc", HASH_LABEL: h}
    assert rs["spec"]["template"]["metadata"]["labels"][HASH_LABEL] == h
    assert rs["metadata"]["ownerReferences"][0]["kind"] == "Deployment"
    rs["metadata"]["uid"] = "rs-uid"
    pod = new_pod(rs)
    assert pod["metadata"]["generateName"] == f"d-{h}-"
    assert pod["metadata"]["ownerReferences"][0] == {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "name": f"d-{h}",
        "uid": "rs-uid",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    assert pod["spec"]["restartPolicy"] == "Always"
    assert pod["spec"]["serviceAccountName"] == "default"


def test_rolling_defaults() -> None:
    assert rolling_params(deployment(1, strategy="RollingUpdate"), 1) == (1, 0)
    assert rolling_params(deployment(4, strategy="RollingUpdate"), 4) == (1, 1)


def test_deployment_status_available() -> None:
    d = deployment()
    rs = {
        "metadata": {"name": "d-abc"},
        "status": {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1},
    }
    st = deployment_status(d, rs, [rs], NOW)
    assert st["observedGeneration"] == 2
    assert st["replicas"] == st["readyReplicas"] == st["availableReplicas"] == st["updatedReplicas"] == 1
    conds = {c["type"]: c for c in st["conditions"]}
    assert conds["Available"]["status"] == "True"
    assert conds["Progressing"]["reason"] == "NewReplicaSetAvailable"
    assert "unavailableReplicas" not in st


def test_deployment_status_unavailable() -> None:
    d = deployment(strategy="RollingUpdate")
    rs = {"metadata": {"name": "d-abc"}, "status": {"replicas": 1}}
    st = deployment_status(d, rs, [rs], NOW)
    conds = {c["type"]: c for c in st["conditions"]}
    assert conds["Available"]["status"] == "False"
    assert conds["Available"]["reason"] == "MinimumReplicasUnavailable"
    assert conds["Progressing"]["reason"] == "NewReplicaSetCreated"
    assert st["unavailableReplicas"] == 1


def test_pod_running_status() -> None:
    pod = {
        "metadata": {"name": "p", "uid": "u"},
        "spec": {"containers": [{"name": "c", "image": "img:1"}]},
        "status": {"conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": "then"}]},
    }
    st = running_status(pod, "10.244.0.7", ready=True, restarts=0, now=NOW, started_at=NOW)
    assert st["phase"] == "Running" and st["podIP"] == "10.244.0.7"
    conds = {c["type"]: c for c in st["conditions"]}
    assert conds["Ready"]["status"] == "True"
    assert conds["PodScheduled"]["lastTransitionTime"] == "then"
    assert st["containerStatuses"][0]["state"]["running"]["startedAt"] == NOW
    assert st["qosClass"] == "BestEffort"


def test_qos() -> None:
    res = {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}
    assert qos_class({"spec": {"containers": [{"resources": res}]}}) == "Guaranteed"
    assert qos_class({"spec": {"containers": [{"resources": {"requests": {"cpu": "1"}}}]}}) == "Burstable"
