"""The watch cache without a server: re-list on 410 Gone, stale on errors, listeners, merge patches."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from vmbmc.k8s import informer as informer_mod
from vmbmc.k8s.client import WATCH_OPEN, ApiError
from vmbmc.k8s.informer import Informer, OwnWrites
from vmbmc.kubevirt.records import merge_diff


def obj(name: str, rv: int, **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "resourceVersion": str(rv)}, "status": status}


class FakeApi:
    """Scripted answers: each list returns the next entry of `lists`; each watch plays the next script."""

    def __init__(self, lists: list[Any], watches: list[list[Any]]) -> None:
        self.lists, self.watches = lists, watches
        self.list_calls = 0
        self.watch_params: list[dict[str, str]] = []

    async def request(self, method: str, path: str, **kw: Any) -> Any:
        self.list_calls += 1
        answer = self.lists.pop(0) if self.lists else ApiError(0, "ConnectionError", "down")
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def watch(self, path: str, params: dict[str, str]) -> AsyncIterator[dict[str, Any]]:
        self.watch_params.append(params)
        script = self.watches.pop(0) if self.watches else [ApiError(0, "ConnectionError", "down")]
        yield {"type": WATCH_OPEN}
        for item in script:
            if isinstance(item, Exception):
                raise item
            if item == "hang":
                await asyncio.sleep(3600)
            yield item


async def settle(pred: Any, timeout: float = 2.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if pred():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


async def test_list_watch_relist_on_gone(monkeypatch: Any) -> None:
    monkeypatch.setattr(informer_mod, "BACKOFF_START", 0.01)
    api = FakeApi(
        lists=[
            {
                "kind": "VirtualMachineList",
                "apiVersion": "kubevirt.io/v1",
                "metadata": {"resourceVersion": "10"},
                "items": [obj("a", 5), obj("b", 6)],
            },
            {
                "kind": "VirtualMachineList",
                "metadata": {"resourceVersion": "30"},
                "items": [obj("a", 25, ready=True)],
            },
        ],
        watches=[
            [
                {"type": "MODIFIED", "object": obj("a", 11, ready=False)},
                {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "12"}}},
                {"type": "ERROR", "object": {"code": 410, "reason": "Expired", "message": "too old"}},
            ],
            ["hang"],
        ],
    )
    inf = Informer(api, "/apis/kubevirt.io/v1/namespaces/default/virtualmachines")  # type: ignore[arg-type]
    seen: list[tuple[Any, Any]] = []
    inf.subscribe("b", lambda old, new: seen.append((old, new)))
    inf.start()
    try:
        await asyncio.wait_for(inf.synced.wait(), 2)
        await settle(lambda: api.list_calls == 2 and inf.get("a")["status"] == {"ready": True})
        assert inf.get("a")["kind"] == "VirtualMachine"  # list items get their kind back
        assert inf.get("b") is None  # gone in the re-list: dropped, listener told
        assert seen[-1][1] is None and seen[-1][0]["metadata"]["name"] == "b"
        assert api.watch_params[0]["resourceVersion"] == "10"
        assert api.watch_params[1]["resourceVersion"] == "30"
        assert not inf.stale and inf.age() == 0.0
    finally:
        await inf.stop()


async def test_outage_marks_stale_and_keeps_objects(monkeypatch: Any) -> None:
    monkeypatch.setattr(informer_mod, "BACKOFF_START", 0.01)
    api = FakeApi(
        lists=[{"metadata": {"resourceVersion": "1"}, "items": [obj("a", 1)]}],
        watches=[[ApiError(0, "ConnectionError", "reset")]],
    )
    inf = Informer(api, "/x", field_selector="metadata.name=a")  # type: ignore[arg-type]
    inf.start()
    try:
        await settle(lambda: inf.stale)
        assert inf.get("a") is not None
        assert inf.age() > 0 and inf.last_error is not None
        assert api.watch_params[0]["fieldSelector"] == "metadata.name=a"
    finally:
        await inf.stop()


def opaque(name: str, rv: str, **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "resourceVersion": rv}, "status": status}


def test_own_writes_follow_the_watch_order_not_the_numbers() -> None:
    """Our write's answer wins until the watch delivers that very version; resourceVersions are opaque
    (these would compare the wrong way as numbers, and one is not a number at all)."""
    inf = Informer(FakeApi([], []), "/x")  # type: ignore[arg-type]
    own = OwnWrites(inf)
    inf._set(opaque("a", "900", step=0))
    own.note(opaque("a", "1000", step=1))
    assert own.current("a")["status"]["step"] == 1  # the cache lags our write
    inf._set(opaque("a", "950", step=0))  # an older event arriving late changes nothing
    assert own.current("a")["status"]["step"] == 1
    inf._set(opaque("a", "1000", step=1))  # the watch delivered our version...
    inf._set(opaque("a", "abc", step=2))  # ...and then someone else's: the cache is newest
    assert own.current("a")["status"]["step"] == 2
    own.note(opaque("a", "zz", step=3))
    inf.lists_started += 1  # a list begun after our write...
    inf.lists_done = inf.lists_started  # ...and completed returns it or newer
    assert own.current("a")["status"]["step"] == 2
    own.note(opaque("a", "q", step=4))
    inf._drop("a")
    assert own.current("a") is None  # deleted: our writes are forgotten too


def test_merge_diff_replaces_exactly() -> None:
    old = {"target": "Cd", "savedFirmware": {"efi": {"secureBoot": True}}, "vmiUID": "x"}
    new = {"target": "Pxe", "savedFirmware": {"bios": {}}}
    assert merge_diff(old, new) == {
        "target": "Pxe",
        "savedFirmware": {"efi": None, "bios": {}},
        "vmiUID": None,
    }
    assert merge_diff(old, None) is None
    assert merge_diff(None, new) == new
