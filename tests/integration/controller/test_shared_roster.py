"""The roster's writer (vmbmc.controller.shared.Roster) keeps a namespace's shared kbmc exactly while the
roster lists a BMC: made before the first is listed, removed (pod, ServiceAccount, Role, RoleBinding,
roster) when the last one leaves, and a BMC added while the last one leaves is never left without a
shared kbmc. Against the emulator, as the controller's ServiceAccount with exactly deploy/rbac.yaml."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.integration.controller.conftest import Api, controller_kubeconfig
from vmbmc.controller import kube, leftovers, shared
from vmbmc.k8s.client import ApiClient

IMAGE = "vmbmc:dev"
OBJECTS = (*shared.KINDS, "ConfigMap")
pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def as_controller(emulator: Any) -> AsyncIterator[ApiClient]:
    client = await ApiClient.connect(controller_kubeconfig(emulator))
    yield client
    await client.close()


def namespace(emulator: Any, name: str) -> str:
    Api(emulator.url, emulator.token, emulator.ca_file).namespace(name)
    return name


async def present(api: ApiClient, ns: str) -> set[str]:
    """Which of the shared kbmc's objects exist in `ns`."""
    return {kind for kind in OBJECTS if await kube.get(api, kind, ns, shared.NAME) is not None}


async def later(delay: float, call: Any) -> Any:
    await asyncio.sleep(delay)
    return await call


def want(secret: str) -> shared.Wanted:
    return shared.Wanted(ipmi=True, redfish=False, insecure_http=False, secret=secret)


async def test_made_for_the_first_bmc_and_removed_with_the_last(
    emulator: Any, as_controller: ApiClient
) -> None:
    ns = namespace(emulator, "roster-first-last")
    roster = shared.Roster(as_controller, ns, IMAGE)
    assert await present(as_controller, ns) == set()
    assert await roster.put("a", want("a-credentials")) is not None
    assert await roster.put("b", want("b-credentials")) is not None
    assert await present(as_controller, ns) == set(OBJECTS)
    assert await roster.put("a", None) is None
    assert await present(as_controller, ns) == set(OBJECTS)  # b is still served
    assert await roster.put("b", None) is None
    assert await present(as_controller, ns) == set()


async def test_a_bmc_added_while_the_last_leaves_keeps_its_shared_kbmc(
    emulator: Any, as_controller: ApiClient
) -> None:
    ns = namespace(emulator, "roster-race")
    roster = shared.Roster(as_controller, ns, IMAGE)
    await roster.put("bmc-0", want("s"))
    for i in range(1, 9):
        # the last listed BMC leaves while the next one is added: in one batch, or the addition arriving
        # while the removal (and the shared kbmc's removal) is under way
        gone, added = await asyncio.gather(
            roster.put(f"bmc-{i - 1}", None), later(i % 4 * 0.02, roster.put(f"bmc-{i}", want("s")))
        )
        assert gone is None and added is not None
        assert await present(as_controller, ns) == set(OBJECTS), i
        listed = await kube.get(as_controller, "ConfigMap", ns, shared.NAME)
        assert sorted((listed or {}).get("data") or {}) == [f"bmc-{i}"]


async def test_a_new_writer_removes_what_an_earlier_run_left_with_nothing_listed(
    emulator: Any, as_controller: ApiClient
) -> None:
    ns = namespace(emulator, "roster-recheck")
    await shared.deploy(as_controller, ns, IMAGE)  # an earlier run's objects, and no roster
    assert await present(as_controller, ns) == set(shared.KINDS)
    roster = shared.Roster(as_controller, ns, IMAGE)
    roster.recheck()
    for _ in range(100):  # recheck returns at once; the writer works after it (bounded poll)
        if not await present(as_controller, ns):
            break
        await asyncio.sleep(0.1)
    assert await present(as_controller, ns) == set()


async def test_a_deleted_shared_kbmc_is_made_again_while_its_roster_lists_a_bmc(
    emulator: Any, as_controller: ApiClient
) -> None:
    ns = namespace(emulator, "roster-redeploy")
    roster = shared.Roster(as_controller, ns, IMAGE)
    await roster.put("a", want("a-credentials"))
    assert await kube.delete(as_controller, "Deployment", ns, shared.NAME)
    roster.recheck()
    for _ in range(100):
        if await kube.get(as_controller, "Deployment", ns, shared.NAME) is not None:
            break
        await asyncio.sleep(0.1)
    assert await present(as_controller, ns) == set(OBJECTS)


async def test_entries_of_bmcs_gone_without_their_finalizer_are_let_go(
    emulator: Any, as_controller: ApiClient
) -> None:
    ns = namespace(emulator, "roster-ghosts")
    admin = Api(emulator.url, emulator.token, emulator.ca_file)
    body = {"apiVersion": "virtualmachine.kubevirt.io/v1", "kind": "VirtualMachineBMC"}
    admin.create(
        {**body, "metadata": {"name": "real", "namespace": ns}, "spec": {"virtualMachineRef": {"name": "vm"}}}
    )
    roster = shared.Roster(as_controller, ns, IMAGE)
    await roster.put("real", want("real-credentials"))
    await roster.put("ghost", want("ghost-credentials"))  # listed, but no such BMC exists
    await leftovers.forget_ghosts(as_controller, roster)
    listed = await kube.get(as_controller, "ConfigMap", ns, shared.NAME)
    assert sorted((listed or {}).get("data") or {}) == ["real"]
    assert await present(as_controller, ns) == set(OBJECTS)
    admin.delete("vmbmc", ns, "real")  # gone without its finalizer's cleanup (no controller runs here)
    await leftovers.forget_ghosts(as_controller, roster)
    assert await present(as_controller, ns) == set()
