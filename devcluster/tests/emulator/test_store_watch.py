"""Watch subscriptions of the store: a subscription limited to a namespace, a name or labels is given
only the events it will send (checked when the event is emitted), the others never reach its queue;
resuming from a resourceVersion gives the same events; closing ends the iteration."""

from __future__ import annotations

import asyncio

import pytest

from vmbmc_devcluster.emulator.builtin import register_builtins
from vmbmc_devcluster.emulator.errors import ApiError
from vmbmc_devcluster.emulator.registry import Registry, ResourceType
from vmbmc_devcluster.emulator.selectors import label_matcher
from vmbmc_devcluster.emulator.store import Store, Subscription, WatchEvent

MERGE = "application/merge-patch+json"


@pytest.fixture
def store() -> Store:
    reg = Registry()
    register_builtins(reg)
    s = Store(reg)
    for ns in ("default", "other"):
        s.create(reg.get("", "v1", "namespaces"), {"metadata": {"name": ns}})
    return s


def _cm(store: Store) -> ResourceType:
    rt = store.registry.get("", "v1", "configmaps")
    assert rt is not None
    return rt


def _taken(sub: Subscription) -> list[tuple[str, str, str]]:
    """The queued events as (type, namespace/name, data.k), taken without waiting."""
    items: list[WatchEvent] = []
    while sub.pending():
        items.append(sub._items.popleft())
    return [
        (e.type, f"{e.object['metadata']['namespace']}/{e.object['metadata']['name']}", e.object["data"]["k"])
        for e in items
    ]


def _churn(store: Store, rt: ResourceType) -> None:
    """Changes to a, b (default) and a (other): created, patched, b deleted."""
    for ns, name in (("default", "a"), ("default", "b"), ("other", "a")):
        store.create(rt, {"metadata": {"name": name, "labels": {"n": name}}, "data": {"k": "1"}}, ns)
    for ns, name in (("default", "b"), ("other", "a"), ("default", "a")):
        store.patch(rt, ns, name, MERGE, b'{"data":{"k":"2"}}')
    store.delete(rt, "default", "b")


def test_an_event_for_another_name_never_reaches_a_name_limited_queue(store: Store) -> None:
    rt = _cm(store)
    only_a = store.subscribe(rt, namespace="default", name="a")
    only_b = store.subscribe(rt, namespace="default", name="b")
    store.create(rt, {"metadata": {"name": "b"}, "data": {"k": "1"}}, "default")
    store.patch(rt, "default", "b", MERGE, b'{"data":{"k":"2"}}')
    store.create(rt, {"metadata": {"name": "a"}, "data": {"k": "1"}}, "other")
    assert only_a.pending() == 0  # b's events and the other namespace's a were never queued for it
    assert only_b.pending() == 2
    store.create(rt, {"metadata": {"name": "a"}, "data": {"k": "1"}}, "default")
    assert _taken(only_a) == [("ADDED", "default/a", "1")]


def test_name_namespace_and_label_limited_subscriptions_get_exactly_their_events(store: Store) -> None:
    rt = _cm(store)
    everything = store.subscribe(rt)
    any_type = store.subscribe()
    named_a = store.subscribe(rt, name="a")  # in every namespace
    default_a = store.subscribe(rt, namespace="default", name="a")
    default_ns = store.subscribe(rt, namespace="default")
    labelled_b = store.subscribe(rt, labels=label_matcher("n=b"))
    secrets = store.subscribe(store.registry.get("", "v1", "secrets"), name="a")
    _churn(store, rt)
    all_events = [
        ("ADDED", "default/a", "1"),
        ("ADDED", "default/b", "1"),
        ("ADDED", "other/a", "1"),
        ("MODIFIED", "default/b", "2"),
        ("MODIFIED", "other/a", "2"),
        ("MODIFIED", "default/a", "2"),
        ("DELETED", "default/b", "2"),
    ]
    assert _taken(any_type) == all_events
    assert _taken(everything) == all_events
    assert _taken(named_a) == [e for e in all_events if e[1].endswith("/a")]
    assert _taken(default_a) == [e for e in all_events if e[1] == "default/a"]
    assert _taken(default_ns) == [e for e in all_events if e[1].startswith("default/")]
    assert _taken(labelled_b) == [e for e in all_events if e[1] == "default/b"]
    assert secrets.pending() == 0


def test_resuming_a_name_limited_watch_gives_its_events_after_the_version(store: Store) -> None:
    rt = _cm(store)
    start = store.resource_version
    _churn(store, rt)
    sub = store.subscribe(rt, namespace="default", name="b")
    events = store.events_since(rt, start, sub)
    assert [(e.type, e.object["data"]["k"]) for e in events] == [
        ("ADDED", "1"),
        ("MODIFIED", "2"),
        ("DELETED", "2"),
    ]
    middle = events[1].rv
    assert [e.type for e in store.events_since(rt, middle, sub)] == ["DELETED"]
    assert store.events_since(rt, store.resource_version, sub) == []
    # every event of the type without a subscription, oldest first
    assert [e.rv for e in store.events_since(rt, start)] == sorted(
        e.rv for e in store.events_since(rt, start)
    )
    assert len(store.events_since(rt, start)) == 7


def test_resuming_from_a_version_older_than_the_history_is_410(store: Store) -> None:
    rt = _cm(store)
    store._history = type(store._history)(maxlen=3)
    _churn(store, rt)
    sub = store.subscribe(rt, namespace="default", name="a")
    with pytest.raises(ApiError) as err:
        store.events_since(rt, 1, sub)
    assert err.value.code == 410


async def test_take_waits_for_an_event_times_out_empty_and_ends_when_closed(store: Store) -> None:
    rt = _cm(store)
    sub = store.subscribe(rt, namespace="default", name="a")
    assert await sub.take(0.01) == []  # nothing for it: the time runs out
    waiter = asyncio.ensure_future(sub.take(30))
    await asyncio.sleep(0)
    store.create(rt, {"metadata": {"name": "b"}, "data": {"k": "1"}}, "default")
    await asyncio.sleep(0)
    assert not waiter.done()  # another name's event does not wake it
    store.create(rt, {"metadata": {"name": "a"}, "data": {"k": "1"}}, "default")
    got = await asyncio.wait_for(waiter, 30)
    assert got is not None and [e.object["metadata"]["name"] for e in got] == ["a"]
    store.patch(rt, "default", "a", MERGE, b'{"data":{"k":"2"}}')
    sub.close()
    assert [e.type for e in await sub.take(30) or []] == ["MODIFIED"]  # queued before the close
    assert await sub.take(30) is None
    store.patch(rt, "default", "a", MERGE, b'{"data":{"k":"3"}}')
    assert sub.pending() == 0 and not store._subs  # closed: no longer indexed


async def test_iteration_yields_each_event_then_stops_when_closed(store: Store) -> None:
    rt = _cm(store)
    sub = store.subscribe(rt)
    seen: list[str] = []

    async def read() -> None:
        async for ev in sub:
            seen.append(ev.object["metadata"]["name"])

    reader = asyncio.ensure_future(read())
    await asyncio.sleep(0)
    for name in ("x", "y"):
        store.create(rt, {"metadata": {"name": name}, "data": {"k": "1"}}, "default")
    store.close_subscriptions()
    await asyncio.wait_for(reader, 30)
    assert seen == ["x", "y"]
