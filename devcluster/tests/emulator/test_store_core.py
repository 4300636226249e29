"""Store semantics without HTTP: resourceVersions, generation, 410 for a too-old resourceVersion."""

from __future__ import annotations

import pytest

from vmbmc_devcluster.emulator import store as store_mod
from vmbmc_devcluster.emulator.builtin import register_builtins
from vmbmc_devcluster.emulator.errors import ApiError
from vmbmc_devcluster.emulator.registry import Registry
from vmbmc_devcluster.emulator.store import Store


@pytest.fixture
def store():
    reg = Registry()
    register_builtins(reg)
    s = Store(reg)
    s.create(reg.get("", "v1", "namespaces"), {"metadata": {"name": "default"}})
    return s


def _cm_rt(store):
    return store.registry.get("", "v1", "configmaps")


def test_resource_version_is_monotonic_and_noop_patch_bumps_nothing(store):
    rt = _cm_rt(store)
    a = store.create(rt, {"metadata": {"name": "a"}, "data": {"x": "1"}}, "default")
    b = store.patch(rt, "default", "a", "application/merge-patch+json", b'{"data":{"x":"2"}}')
    assert int(b["metadata"]["resourceVersion"]) > int(a["metadata"]["resourceVersion"])
    c = store.patch(rt, "default", "a", "application/merge-patch+json", b'{"data":{"x":"2"}}')
    assert c["metadata"]["resourceVersion"] == b["metadata"]["resourceVersion"]


def test_generation_bumps_only_outside_metadata_and_status(store):
    rt = store.registry.get("apps", "v1", "deployments")
    store.create(rt, {"metadata": {"name": "d"}, "spec": {"replicas": 1}}, "default")
    d = store.patch(rt, "default", "d", "application/merge-patch+json", b'{"metadata":{"labels":{"a":"b"}}}')
    assert d["metadata"]["generation"] == 1
    d = store.patch(rt, "default", "d", "application/merge-patch+json", b'{"spec":{"replicas":2}}')
    assert d["metadata"]["generation"] == 2


def test_failed_json_patch_test_op_is_422_and_changes_nothing(store):
    rt = _cm_rt(store)
    store.create(rt, {"metadata": {"name": "t"}, "data": {"x": "1"}}, "default")
    with pytest.raises(ApiError) as err:
        store.patch(
            rt,
            "default",
            "t",
            "application/json-patch+json",
            b'[{"op":"test","path":"/data/x","value":"9"},{"op":"replace","path":"/data/x","value":"2"}]',
        )
    assert err.value.code == 422
    assert store.get(rt, "default", "t")["data"] == {"x": "1"}


def test_too_old_resource_version_is_410(store, monkeypatch):
    monkeypatch.setattr(store_mod, "HISTORY", 5)
    s = Store(store.registry)
    s._history = type(s._history)(maxlen=5)
    s.create(store.registry.get("", "v1", "namespaces"), {"metadata": {"name": "default"}})
    rt = _cm_rt(s)
    for i in range(10):
        s.create(rt, {"metadata": {"name": f"c{i}"}}, "default")
    with pytest.raises(ApiError) as err:
        s.events_since(rt, 1)
    assert err.value.code == 410
    assert [e.type for e in s.events_since(rt, s.resource_version - 1)] == ["ADDED"]


def test_malformed_bodies_are_400(store):
    rt = _cm_rt(store)
    store.create(rt, {"metadata": {"name": "m"}}, "default")
    for ctype, body in [("application/merge-patch+json", b"{"), ("application/json-patch+json", b'{"op":1}')]:
        with pytest.raises(ApiError) as err:
            store.patch(rt, "default", "m", ctype, body)
        assert err.value.code == 400
    with pytest.raises(ApiError) as err:
        store.patch(rt, "default", "m", "text/plain", b"{}")
    assert err.value.code == 415
