"""Pod Security Standards checks and the PodSecurity admission plug-in (no kubectl)."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from vmbmc_devcluster.emulator import apiwarnings
from vmbmc_devcluster.emulator.emulator import Emulator
from vmbmc_devcluster.emulator.errors import ApiError
from vmbmc_devcluster.emulator.podsecurity import (
    BASELINE,
    PRIVILEGED,
    RESTRICTED,
    LevelVersion,
    Policy,
    checks_for,
    evaluate,
    evaluate_pod,
    policy_to_evaluate,
)
from vmbmc_devcluster.emulator.server import create_app

RESTRICTED_SC = {
    "allowPrivilegeEscalation": False,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def pod(*, name: str = "x", meta: dict | None = None, **spec: Any) -> dict:
    """A restricted-compliant pod with one container "c"; keyword arguments replace spec fields."""
    body: dict[str, Any] = {
        "containers": [{"name": "c", "image": "busybox", "securityContext": copy.deepcopy(RESTRICTED_SC)}]
    }
    body.update(spec)
    return {"metadata": {"name": name, **(meta or {})}, "spec": body}


def container(name: str = "c", **sc: Any) -> dict:
    """A container with the restricted securityContext, fields replaced (None removes one)."""
    merged = {**copy.deepcopy(RESTRICTED_SC), **sc}
    return {
        "name": name,
        "image": "busybox",
        "securityContext": {k: v for k, v in merged.items() if v is not None},
    }


# (pod, violations at baseline, violations at restricted) as forbidden reasons
CASES: dict[str, tuple[dict, list[str], list[str]]] = {
    "compliant": (pod(), [], []),
    "bare container": (
        {"metadata": {"name": "x"}, "spec": {"containers": [{"name": "c", "image": "i"}]}},
        [],
        [
            "allowPrivilegeEscalation != false",
            "unrestricted capabilities",
            "runAsNonRoot != true",
            "seccompProfile",
        ],
    ),
    "hostNetwork": (pod(hostNetwork=True), ["host namespaces"], ["host namespaces"]),
    "hostPID and hostIPC": (pod(hostPID=True, hostIPC=True), ["host namespaces"], ["host namespaces"]),
    "privileged": (
        pod(containers=[container(privileged=True)]),
        ["privileged"],
        ["privileged"],
    ),
    "missing drop ALL": (
        pod(containers=[container(capabilities={"drop": ["NET_RAW"]})]),
        [],
        ["unrestricted capabilities"],
    ),
    "NET_BIND_SERVICE allowed": (
        pod(containers=[container(capabilities={"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]})]),
        [],
        [],
    ),
    "baseline capability CHOWN": (
        pod(containers=[container(capabilities={"drop": ["ALL"], "add": ["CHOWN"]})]),
        [],
        ["unrestricted capabilities"],
    ),
    "NET_ADMIN": (
        pod(containers=[container(capabilities={"drop": ["ALL"], "add": ["NET_ADMIN"]})]),
        ["non-default capabilities"],
        ["unrestricted capabilities"],
    ),
    "seccomp missing": (pod(containers=[container(seccompProfile=None)]), [], ["seccompProfile"]),
    "seccomp on the pod only": (
        pod(
            containers=[container(seccompProfile=None)],
            securityContext={"seccompProfile": {"type": "Localhost"}},
        ),
        [],
        [],
    ),
    "seccomp Unconfined": (
        pod(containers=[container(seccompProfile={"type": "Unconfined"})]),
        ["seccompProfile"],
        ["seccompProfile"],
    ),
    "runAsNonRoot on the pod only": (
        pod(containers=[container(runAsNonRoot=None)], securityContext={"runAsNonRoot": True}),
        [],
        [],
    ),
    "runAsNonRoot false": (pod(containers=[container(runAsNonRoot=False)]), [], ["runAsNonRoot != true"]),
    "runAsUser 0": (pod(securityContext={"runAsUser": 0}), [], ["runAsUser=0"]),
    "runAsUser 1000": (pod(securityContext={"runAsUser": 1000}), [], []),
    "user namespace relaxes runAsNonRoot and runAsUser": (
        pod(containers=[container(runAsNonRoot=None, runAsUser=0)], hostUsers=False),
        [],
        [],
    ),
    "allowPrivilegeEscalation true": (
        pod(containers=[container(allowPrivilegeEscalation=True)]),
        [],
        ["allowPrivilegeEscalation != false"],
    ),
    "hostPath": (
        pod(volumes=[{"name": "h", "hostPath": {"path": "/"}}]),
        ["hostPath volumes"],
        ["restricted volume types"],
    ),
    "nfs volume": (
        pod(volumes=[{"name": "n", "nfs": {"server": "s", "path": "/"}}]),
        [],
        ["restricted volume types"],
    ),
    "allowed volumes": (
        pod(
            volumes=[
                {"name": "a", "secret": {"secretName": "s"}},
                {"name": "b", "emptyDir": {}},
                {"name": "c", "configMap": {"name": "m"}},
                {"name": "d", "projected": {"sources": []}},
                {"name": "e", "persistentVolumeClaim": {"claimName": "p"}},
            ]
        ),
        [],
        [],
    ),
    "hostPort": (
        pod(containers=[{**container(), "ports": [{"containerPort": 80, "hostPort": 8080}]}]),
        ["hostPort"],
        ["hostPort"],
    ),
    "AppArmor Unconfined": (
        pod(containers=[container(appArmorProfile={"type": "Unconfined"})]),
        ["forbidden AppArmor profile"],
        ["forbidden AppArmor profile"],
    ),
    "SELinux user": (
        pod(securityContext={"seLinuxOptions": {"user": "system_u"}}),
        ["seLinuxOptions"],
        ["seLinuxOptions"],
    ),
    "procMount Unmasked": (
        pod(containers=[container(procMount="Unmasked")]),
        ["procMount"],
        ["procMount"],
    ),
    "unsafe sysctl": (
        pod(securityContext={"sysctls": [{"name": "kernel.msgmax", "value": "1"}]}),
        ["forbidden sysctls"],
        ["forbidden sysctls"],
    ),
    "safe sysctl": (
        pod(securityContext={"sysctls": [{"name": "net.ipv4.tcp_syncookies", "value": "1"}]}),
        [],
        [],
    ),
    "probe host": (
        pod(containers=[{**container(), "livenessProbe": {"httpGet": {"host": "1.2.3.4", "port": 80}}}]),
        ["probe or lifecycle host"],
        ["probe or lifecycle host"],
    ),
    "windows hostProcess": (
        pod(securityContext={"windowsOptions": {"hostProcess": True}}),
        ["hostProcess"],
        ["hostProcess"],
    ),
    "bad init container": (
        pod(initContainers=[{"name": "init", "image": "i"}]),
        [],
        [
            "allowPrivilegeEscalation != false",
            "unrestricted capabilities",
            "runAsNonRoot != true",
            "seccompProfile",
        ],
    ),
    "bad ephemeral container": (
        pod(ephemeralContainers=[{"name": "debug", "image": "i", "securityContext": {"privileged": True}}]),
        ["privileged"],
        [
            "privileged",
            "allowPrivilegeEscalation != false",
            "unrestricted capabilities",
            "runAsNonRoot != true",
            "seccompProfile",
        ],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_levels(case: str) -> None:
    obj, baseline, restricted = CASES[case]
    assert evaluate_pod(obj, PRIVILEGED).allowed
    assert [r for r, _ in evaluate_pod(obj, BASELINE).violations] == baseline
    assert [r for r, _ in evaluate_pod(obj, RESTRICTED).violations] == restricted


def test_upstream_message_for_a_bare_privileged_pod() -> None:
    obj = {
        "metadata": {"name": "x"},
        "spec": {
            "hostNetwork": True,
            "containers": [{"name": "c", "image": "i", "securityContext": {"privileged": True}}],
        },
    }
    assert evaluate_pod(obj).forbidden_detail == (
        "host namespaces (hostNetwork=true), "
        'privileged (container "c" must not set securityContext.privileged=true), '
        "allowPrivilegeEscalation != false "
        '(container "c" must set securityContext.allowPrivilegeEscalation=false), '
        'unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"]), '
        'runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true), '
        'seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to '
        '"RuntimeDefault" or "Localhost")'
    )


def test_exact_messages_for_several_containers_and_volumes() -> None:
    obj = pod(
        containers=[
            container("a", capabilities={"drop": ["ALL"], "add": ["SYS_ADMIN", "NET_RAW"]}),
            container("b", capabilities={"add": ["NET_BIND_SERVICE"]}),
        ],
        volumes=[{"name": "h", "hostPath": {"path": "/"}}, {"name": "g", "gitRepo": {"repository": "r"}}],
        securityContext={"runAsUser": 0, "seccompProfile": {"type": "Unconfined"}},
    )
    assert evaluate_pod(obj).forbidden_detail == (
        'unrestricted capabilities (container "b" must set securityContext.capabilities.drop=["ALL"]; '
        'container "a" must not include "NET_RAW", "SYS_ADMIN" in securityContext.capabilities.add), '
        'restricted volume types (volumes "h", "g" use restricted volume types "gitRepo", "hostPath"), '
        "runAsUser=0 (pod must not set runAsUser=0), "
        'seccompProfile (pod must not set securityContext.seccompProfile.type to "Unconfined")'
    )
    assert evaluate_pod(obj, BASELINE).forbidden_detail == (
        'non-default capabilities (container "a" must not include "NET_RAW", "SYS_ADMIN" in '
        "securityContext.capabilities.add), "
        'hostPath volumes (volume "h"), '
        'seccompProfile (pod must not set securityContext.seccompProfile.type to "Unconfined")'
    )


def test_versions() -> None:
    # runAsUser arrived in v1.23, hostProbesAndHostLifecycle in v1.34; newer versions than known mean latest
    root = pod(securityContext={"runAsUser": 0})
    assert evaluate(LevelVersion(RESTRICTED, (1, 22)), root["metadata"], root["spec"]).allowed
    assert not evaluate(LevelVersion(RESTRICTED, (1, 23)), root["metadata"], root["spec"]).allowed
    ids = [cid for cid, _ in checks_for(LevelVersion(BASELINE, (1, 33)))]
    assert "hostProbesAndHostLifecycle" not in ids
    assert checks_for(LevelVersion(RESTRICTED, (1, 99))) == checks_for(LevelVersion(RESTRICTED))
    # the restricted checks replace their baseline counterparts
    ids = [cid for cid, _ in checks_for(LevelVersion(RESTRICTED))]
    assert "capabilities_baseline" not in ids and "hostPathVolumes" not in ids
    assert ids[:2] == ["appArmorProfile", "hostNamespaces"] and ids[-1] == "seccompProfile_restricted"
    assert checks_for(LevelVersion(PRIVILEGED)) == []


def test_windows_pods_skip_linux_only_checks() -> None:
    obj = {"metadata": {}, "spec": {"os": {"name": "windows"}, "containers": [{"name": "c", "image": "i"}]}}
    assert [r for r, _ in evaluate_pod(obj).violations] == ["runAsNonRoot != true"]


def test_policy_labels() -> None:
    p, errors = policy_to_evaluate({"pod-security.kubernetes.io/enforce": "restricted"})
    assert not errors
    assert str(p.enforce) == "restricted:latest" and str(p.warn) == "restricted:latest"
    assert p.audit.level == PRIVILEGED
    p, _ = policy_to_evaluate(
        {
            "pod-security.kubernetes.io/enforce": "baseline",
            "pod-security.kubernetes.io/enforce-version": "v1.25",
            "pod-security.kubernetes.io/warn": "restricted",
            "pod-security.kubernetes.io/audit": "restricted",
            "pod-security.kubernetes.io/audit-version": "v1.30",
        }
    )
    assert (str(p.enforce), str(p.warn), str(p.audit)) == (
        "baseline:v1.25",
        "restricted:latest",
        "restricted:v1.30",
    )
    # enforce fails closed, warn and audit fail open, a bad version is latest
    p, errors = policy_to_evaluate(
        {
            "pod-security.kubernetes.io/enforce": "strict",
            "pod-security.kubernetes.io/warn": "strict",
            "pod-security.kubernetes.io/audit-version": "1.30",
        }
    )
    assert (str(p.enforce), str(p.warn), str(p.audit)) == (
        "restricted:latest",
        "privileged:latest",
        "privileged:latest",
    )
    assert [e["field"] for e in errors] == [
        "metadata.labels[pod-security.kubernetes.io/enforce]",
        "metadata.labels[pod-security.kubernetes.io/audit-version]",
        "metadata.labels[pod-security.kubernetes.io/warn]",
    ]
    assert errors[0]["message"] == 'Invalid value: "strict": must be one of privileged, baseline, restricted'
    assert errors[1]["message"] == 'Invalid value: "1.30": must be "latest" or "v1.x"'
    assert policy_to_evaluate(None) == (Policy(), [])


def test_warning_header_quoting() -> None:
    assert apiwarnings.header_value('would violate PodSecurity "restricted:latest": x\\y') == (
        '299 - "would violate PodSecurity \\"restricted:latest\\": x\\\\y"'
    )
    apiwarnings.add_warning("outside a request: dropped")
    with apiwarnings.recording() as got:
        apiwarnings.add_warning("a")
        apiwarnings.add_warning("a")
        apiwarnings.add_warning("b")
    assert got == ["a", "b"]


# --- admission ----------------------------------------------------------------------------------------
ENFORCED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/audit": "restricted",
}


@pytest.fixture
def emu() -> Emulator:
    asyncio.set_event_loop(asyncio.new_event_loop())  # earlier tests may have closed the loop
    emu = Emulator(authorization="AlwaysAllow")
    ns_rt = emu.registry.get("", "v1", "namespaces")
    emu.store.create(ns_rt, {"metadata": {"name": "locked", "labels": ENFORCED}})
    emu.store.create(ns_rt, {"metadata": {"name": "open"}})
    emu.store.create(
        ns_rt, {"metadata": {"name": "warned", "labels": {"pod-security.kubernetes.io/warn": "baseline"}}}
    )
    return emu


def _rt(emu: Emulator, group: str, plural: str) -> Any:
    return emu.registry.get(group, "v1", plural)


def _patch(emu: Emulator, rt: Any, ns: str | None, name: str, patch: dict) -> dict:
    return emu.store.patch(rt, ns, name, "application/merge-patch+json", json.dumps(patch))


def test_enforce_refuses_a_violating_pod(emu: Emulator) -> None:
    bad = pod(name="bad", hostNetwork=True)
    with pytest.raises(ApiError) as err:
        emu.store.create(_rt(emu, "", "pods"), bad, "locked")
    assert err.value.code == 403 and err.value.reason == "Forbidden"
    assert err.value.message == (
        'pods "bad" is forbidden: violates PodSecurity "restricted:latest": '
        "host namespaces (hostNetwork=true)"
    )
    assert err.value.details == {"name": "bad", "kind": "pods"}
    (record,) = [a for a in emu.pod_security.audit if a["name"] == "bad"]
    assert record["annotations"] == {
        "pod-security.kubernetes.io/enforce-policy": "restricted:latest",
        "pod-security.kubernetes.io/audit-violations": (
            'would violate PodSecurity "restricted:latest": host namespaces (hostNetwork=true)'
        ),
    }
    emu.store.create(_rt(emu, "", "pods"), pod(name="good"), "locked")
    emu.store.create(_rt(emu, "", "pods"), bad, "open")  # no labels: privileged


def test_generated_names_appear_in_the_message(emu: Emulator) -> None:
    bad = pod(name="", hostNetwork=True)
    bad["metadata"] = {"generateName": "web-"}
    with pytest.raises(ApiError) as err:
        emu.store.create(_rt(emu, "", "pods"), bad, "locked")
    assert err.value.message.startswith('pods "web-') and '" is forbidden: violates' in err.value.message


def test_pod_updates_are_checked_only_when_an_image_changes(emu: Emulator) -> None:
    pods = _rt(emu, "", "pods")
    emu.store.create(pods, pod(name="p", hostNetwork=True), "open")
    _patch(emu, _rt(emu, "", "namespaces"), None, "open", {"metadata": {"labels": ENFORCED}})
    _patch(emu, pods, "open", "p", {"metadata": {"labels": {"a": "b"}}})  # metadata only: allowed
    current = emu.store.get(pods, "open", "p")
    emu.store.replace(pods, "open", "p", {**current, "status": {"phase": "Running"}}, subresource="status")
    current = emu.store.get(pods, "open", "p")
    current["spec"]["containers"][0]["image"] = "busybox:2"
    with pytest.raises(ApiError) as err:
        emu.store.replace(pods, "open", "p", current)
    assert err.value.code == 403


def test_invalid_namespace_labels_are_refused(emu: Emulator) -> None:
    ns_rt = _rt(emu, "", "namespaces")
    with pytest.raises(ApiError) as err:
        emu.store.create(
            ns_rt, {"metadata": {"name": "typo", "labels": {"pod-security.kubernetes.io/enforce": "x"}}}
        )
    assert err.value.code == 422
    assert err.value.message == (
        'Namespace "typo" is invalid: metadata.labels[pod-security.kubernetes.io/enforce]: '
        'Invalid value: "x": must be one of privileged, baseline, restricted'
    )


def test_stricter_enforce_warns_about_existing_pods(emu: Emulator) -> None:
    pods = _rt(emu, "", "pods")
    for name in ("a", "b", "c"):
        emu.store.create(pods, pod(name=name, hostNetwork=True), "open")
    emu.store.create(pods, pod(name="d", hostPID=True, containers=[container(privileged=True)]), "open")
    emu.store.create(pods, pod(name="e"), "open")
    ns_rt = _rt(emu, "", "namespaces")
    with apiwarnings.recording() as warnings:
        _patch(
            emu,
            ns_rt,
            None,
            "open",
            {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "baseline"}}},
        )
    assert warnings == [
        'existing pods in namespace "open" violate the new PodSecurity enforce level "baseline:latest"',
        "a (and 2 other pods): host namespaces",
        "d: host namespaces, privileged",
    ]


def test_workloads_get_warnings_but_are_not_refused(emu: Emulator) -> None:
    deployment = {
        "metadata": {"name": "web"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [{"name": "c", "image": "i", "securityContext": {"privileged": True}}]
                },
            },
        },
    }
    deployments = _rt(emu, "apps", "deployments")
    for ns, expected in (
        ("locked", 'would violate PodSecurity "restricted:latest": privileged ('),
        ("warned", 'would violate PodSecurity "baseline:latest": privileged ('),
    ):
        with apiwarnings.recording() as warnings:
            emu.store.create(deployments, deployment, ns)
        (warning,) = warnings
        assert warning.startswith(expected)
    with apiwarnings.recording() as warnings:
        emu.store.create(deployments, deployment, "open")
    assert warnings == []
    # a status write (the status subresource) is not evaluated
    current = emu.store.get(deployments, "locked", "web")
    with apiwarnings.recording() as warnings:
        emu.store.replace(
            deployments, "locked", "web", {**current, "status": {"replicas": 0}}, subresource="status"
        )
    assert warnings == []
    # a label change to the Deployment itself is (upstream evaluates every update but the subresources')
    with apiwarnings.recording() as warnings:
        _patch(emu, deployments, "locked", "web", {"metadata": {"labels": {"a": "b"}}})
    assert len(warnings) == 1


@pytest.fixture
def client(emu: Emulator) -> Iterator[TestClient]:
    with TestClient(create_app(emu), base_url="http://emulator") as c:
        yield c


def test_http_warning_header_and_forbidden_status(client: TestClient) -> None:
    bad = {"apiVersion": "v1", "kind": "Pod", **pod(name="bad", containers=[{"name": "c", "image": "i"}])}
    r = client.post("/api/v1/namespaces/warned/pods", json=bad)
    assert r.status_code == 201
    assert r.headers.get_list("warning") == []  # baseline allows a bare container
    bad["spec"]["hostIPC"] = True
    bad["metadata"]["name"] = "bad2"
    r = client.post("/api/v1/namespaces/warned/pods", json=bad)
    assert r.status_code == 201
    assert r.headers.get_list("warning") == [
        '299 - "would violate PodSecurity \\"baseline:latest\\": host namespaces (hostIPC=true)"'
    ]
    r = client.post("/api/v1/namespaces/locked/pods", json=bad)
    assert r.status_code == 403 and r.headers.get_list("warning") == []
    assert r.json()["message"].startswith(
        'pods "bad2" is forbidden: violates PodSecurity "restricted:latest": '
    )
