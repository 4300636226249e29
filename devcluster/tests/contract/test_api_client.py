"""The kubernetes python client against the emulator: CRUD, patches, selectors, watch, GC, finalizers."""

from __future__ import annotations

import threading
import time
import uuid

import kubernetes
import pytest
from kubernetes.client.rest import ApiException


@pytest.fixture(scope="module")
def api(emulator):
    client = kubernetes.config.new_client_from_config(config_file=str(emulator.kubeconfig))
    yield client
    client.close()


def _cm(name: str, labels: dict | None = None, **meta: object) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels or {}, **meta},
        "data": {"k": "v"},
    }


def _name() -> str:
    return f"c-{uuid.uuid4().hex[:8]}"


def test_create_returns_201_with_server_fields_and_conflicts(api):
    core = kubernetes.client.CoreV1Api(api)
    name = _name()
    created = core.create_namespaced_config_map("default", _cm(name))
    assert created is not None  # client 37 returns None unless the answer is 201
    assert created.metadata.uid and created.metadata.resource_version and created.metadata.creation_timestamp
    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map("default", _cm(name))
    assert err.value.status == 409


def test_generate_name_and_stale_resource_version(api):
    core = kubernetes.client.CoreV1Api(api)
    a = core.create_namespaced_config_map("default", {"metadata": {"generateName": "gen-"}, "data": {}})
    b = core.create_namespaced_config_map("default", {"metadata": {"generateName": "gen-"}, "data": {}})
    assert a.metadata.name != b.metadata.name and a.metadata.name.startswith("gen-")
    stale = a.metadata.resource_version
    core.patch_namespaced_config_map(a.metadata.name, "default", {"data": {"x": "1"}})
    a.metadata.resource_version = stale
    with pytest.raises(ApiException) as err:
        core.replace_namespaced_config_map(a.metadata.name, "default", a)
    assert err.value.status == 409


def test_label_and_field_selectors(api):
    core = kubernetes.client.CoreV1Api(api)
    tag = uuid.uuid4().hex[:6]
    for i, tier in enumerate(["web", "db", "web"]):
        core.create_namespaced_config_map("default", _cm(f"sel-{tag}-{i}", {"tag": tag, "tier": tier}))
    names = lambda items: sorted(o.metadata.name for o in items)  # noqa: E731
    assert len(core.list_namespaced_config_map("default", label_selector=f"tag={tag},tier=web").items) == 2
    assert names(
        core.list_namespaced_config_map("default", label_selector=f"tag={tag},tier notin (web)").items
    ) == [f"sel-{tag}-1"]
    assert len(core.list_namespaced_config_map("default", label_selector=f"tag={tag},!tier").items) == 0
    got = core.list_namespaced_config_map("default", field_selector=f"metadata.name=sel-{tag}-2").items
    assert names(got) == [f"sel-{tag}-2"]


def test_watch_resumes_from_a_resource_version(api):
    core = kubernetes.client.CoreV1Api(api)
    name = _name()
    rv = core.list_namespaced_config_map("default").metadata.resource_version
    core.create_namespaced_config_map("default", _cm(name))
    core.patch_namespaced_config_map(name, "default", {"data": {"k": "v2"}})
    core.delete_namespaced_config_map(name, "default")
    seen = []
    w = kubernetes.watch.Watch()
    for ev in w.stream(
        core.list_namespaced_config_map,
        "default",
        resource_version=rv,
        timeout_seconds=2,
        field_selector=f"metadata.name={name}",
    ):
        seen.append(ev["type"])
        if len(seen) == 3:
            w.stop()
    assert seen == ["ADDED", "MODIFIED", "DELETED"]


def _watched(core, name: str, **kwargs: object) -> list[tuple[str, str, str]]:
    """Every event a watch of `name` in `default` sends until its server-side timeout, as (type, name, k)."""
    w = kubernetes.watch.Watch()
    stream = w.stream(
        core.list_namespaced_config_map,
        "default",
        timeout_seconds=2,
        field_selector=f"metadata.name={name}",
        **kwargs,
    )
    return [(ev["type"], ev["object"].metadata.name, (ev["object"].data or {}).get("k")) for ev in stream]


def test_name_limited_watches_get_exactly_their_events_and_resume(api):
    core = kubernetes.client.CoreV1Api(api)
    a, b = _name(), _name()
    rv = core.list_namespaced_config_map("default").metadata.resource_version
    core.create_namespaced_config_map("default", _cm(a))
    core.create_namespaced_config_map("default", _cm(b))
    middle = core.patch_namespaced_config_map(a, "default", {"data": {"k": "a2"}}).metadata.resource_version
    core.patch_namespaced_config_map(b, "default", {"data": {"k": "b2"}})
    core.patch_namespaced_config_map(a, "default", {"data": {"k": "a3"}})
    core.delete_namespaced_config_map(b, "default")
    assert _watched(core, a, resource_version=rv) == [
        ("ADDED", a, "v"),
        ("MODIFIED", a, "a2"),
        ("MODIFIED", a, "a3"),
    ]
    assert _watched(core, b, resource_version=rv) == [
        ("ADDED", b, "v"),
        ("MODIFIED", b, "b2"),
        ("DELETED", b, "b2"),
    ]
    assert _watched(core, a, resource_version=middle) == [("MODIFIED", a, "a3")]
    assert _watched(core, a) == [("ADDED", a, "a3")]  # no resourceVersion: the current state
    core.delete_namespaced_config_map(a, "default")


def test_a_live_name_limited_watch_sees_only_its_own_changes(api):
    core = kubernetes.client.CoreV1Api(api)
    a, b = _name(), _name()
    core.create_namespaced_config_map("default", _cm(a))
    core.create_namespaced_config_map("default", _cm(b))
    seen: list[tuple[str, str, str]] = []
    connected = threading.Event()

    def watch() -> None:
        w = kubernetes.watch.Watch()
        for ev in w.stream(
            core.list_namespaced_config_map,
            "default",
            timeout_seconds=60,
            field_selector=f"metadata.name={a}",
        ):
            seen.append((ev["type"], ev["object"].metadata.name, (ev["object"].data or {}).get("k")))
            connected.set()
            if ev["type"] == "DELETED":
                w.stop()

    reader = threading.Thread(target=watch, daemon=True)
    reader.start()
    assert connected.wait(30)  # the initial ADDED of a: the watch is open
    core.patch_namespaced_config_map(b, "default", {"data": {"k": "b2"}})
    core.patch_namespaced_config_map(a, "default", {"data": {"k": "a2"}})
    core.delete_namespaced_config_map(b, "default")
    core.delete_namespaced_config_map(a, "default")
    reader.join(60)
    assert not reader.is_alive()
    assert seen == [("ADDED", a, "v"), ("MODIFIED", a, "a2"), ("DELETED", a, "a2")]


def test_finalizers_and_deletion_timestamp(api):
    core = kubernetes.client.CoreV1Api(api)
    name = _name()
    core.create_namespaced_config_map("default", _cm(name, finalizers=["example.com/hold"]))
    core.delete_namespaced_config_map(name, "default")
    held = core.read_namespaced_config_map(name, "default")
    assert held.metadata.deletion_timestamp is not None
    core.patch_namespaced_config_map(name, "default", {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as err:
        core.read_namespaced_config_map(name, "default")
    assert err.value.status == 404


def _wait_gone(read, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            read()
        except ApiException as exc:
            if exc.status == 404:
                return True
            raise
        time.sleep(0.1)
    return False


def test_owner_reference_garbage_collection_and_cross_namespace_refs(api):
    core = kubernetes.client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": f"gc-{uuid.uuid4().hex[:6]}"}})
    other = core.list_namespace(label_selector="").items[-1].metadata.name
    owner = core.create_namespaced_config_map("default", _cm(_name()))
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": owner.metadata.name, "uid": owner.metadata.uid}
    child = core.create_namespaced_config_map("default", _cm(_name(), ownerReferences=[ref]))
    # An owner in another namespace does not count: the dependent is collected
    # (Kubernetes ignores an ownerReference across namespaces).
    stray = core.create_namespaced_config_map(other, _cm(_name(), ownerReferences=[ref]))
    assert _wait_gone(lambda: core.read_namespaced_config_map(stray.metadata.name, other))
    core.read_namespaced_config_map(child.metadata.name, "default")  # still there: its owner exists
    core.delete_namespaced_config_map(owner.metadata.name, "default")
    assert _wait_gone(lambda: core.read_namespaced_config_map(child.metadata.name, "default"))


def test_status_subresource_of_a_deployment_and_events_in_both_apis(api):
    core, events = kubernetes.client.CoreV1Api(api), kubernetes.client.EventsV1Api(api)
    name = _name()
    core.create_namespaced_event(
        "default",
        {
            "metadata": {"name": name},
            "involvedObject": {"kind": "ConfigMap", "name": "x", "namespace": "default"},
            "reason": "Tested",
            "message": "one store, two APIs",
            "type": "Normal",
        },
    )
    ev = events.read_namespaced_event(name, "default")
    assert ev.note == "one store, two APIs" and ev.regarding.name == "x"


def test_missing_namespace_is_404(api):
    core = kubernetes.client.CoreV1Api(api)
    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map("no-such-namespace", _cm(_name()))
    assert (err.value.status == 404 and 'namespaces \\"no-such-namespace\\" not found' in err.value.body) or (
        'namespaces "no-such-namespace" not found' in err.value.body
    )
