"""The VMI console subresource: the emulator's WebSocket (KubeVirt's `plain.kubevirt.io`) and its fake
guest, through the API client's WebSocket session (httpx2's, framed by wsproto), under RBAC."""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from httpx2.websockets import AsyncWebSocketSession, WebSocketDisconnect

from vmbmc.k8s.client import ApiClient, ApiError
from vmbmc.kubevirt.console import SUBPROTOCOL
from vmbmc_devcluster.demo.samples import sample_vm
from vmbmc_devcluster.emulator.harness import EmulatorThread

NS = "default"


def console_path(name: str) -> str:
    return f"/apis/subresources.kubevirt.io/v1/namespaces/{NS}/virtualmachineinstances/{name}/console"


@pytest.fixture(scope="module")
def emu() -> Iterator[EmulatorThread]:
    # Slow boots, so a VMI is seen before it runs.
    with EmulatorThread(kubevirt_options={"start_delay": 1.5, "stop_delay": 0.1}) as emulator:
        yield emulator


def create_vm(emu: EmulatorThread, name: str) -> None:
    vm = copy.deepcopy(sample_vm(1, NS))
    vm["metadata"]["name"] = name
    rt = emu.emulator.registry.get("kubevirt.io", "v1", "virtualmachines")
    emu.call(emu.emulator.store.create, rt, vm, NS)


def vmi_phase(emu: EmulatorThread, name: str) -> str:
    rt = emu.emulator.registry.get("kubevirt.io", "v1", "virtualmachineinstances")
    vmi = emu.call(emu.emulator.store.try_get, rt, NS, name)
    return str(((vmi or {}).get("status") or {}).get("phase") or "")


def wait_phase(emu: EmulatorThread, name: str, phase: str) -> None:
    deadline = time.monotonic() + 15
    while vmi_phase(emu, name) != phase:
        assert time.monotonic() < deadline, f"VMI {name} never {phase}"
        time.sleep(0.05)


async def read_until(ws: AsyncWebSocketSession, text: bytes, timeout: float = 10.0) -> bytes:
    seen = b""
    async with asyncio.timeout(timeout):
        while text not in seen:
            seen += await ws.receive_bytes()  # raises WebSocketDisconnect if closed before
    return seen


async def refused(api: ApiClient, name: str) -> ApiError:
    with pytest.raises(ApiError) as err:
        async with api.websocket(console_path(name), SUBPROTOCOL):
            pass
    return err.value


async def test_console_of_a_running_vmi_is_a_getty(emu: EmulatorThread) -> None:
    create_vm(emu, "con-a")
    api = await ApiClient.connect(emu.kubeconfig)
    try:
        err = await refused(api, "con-a")  # no VMI: virt-api's 404
        assert err.code == 404 and 'virtualmachineinstance.kubevirt.io "con-a" not found' in err.message
        assert emu.call(emu.kubevirt.virtctl, NS, "con-a", "start") == 202
        wait_phase(emu, "con-a", "Pending")
        err = await refused(api, "con-a")  # not Running yet: refused as virt-api refuses it
        assert err.code == 409 and "VMI is not running" in err.message
        wait_phase(emu, "con-a", "Running")
        async with api.websocket(console_path("con-a"), SUBPROTOCOL) as ws:
            assert ws.subprotocol == SUBPROTOCOL
            boot = await read_until(ws, b"con-a login: ")
            assert b"SeaBIOS" in boot
            await ws.send_bytes(b"root\r\n")  # echoed; CR LF is one Enter
            echo = await read_until(ws, b"con-a login: ")
            assert echo == b"root\r\ncon-a login: "
            # The VMI stops: the console ends.
            assert emu.call(emu.kubevirt.virtctl, NS, "con-a", "stop") == 202
            with pytest.raises(WebSocketDisconnect):
                async with asyncio.timeout(10):
                    while True:
                        await ws.receive_bytes()
    finally:
        await api.close()


async def test_console_needs_get_on_the_subresource(emu: EmulatorThread, tmp_path: Path) -> None:
    rt = emu.emulator.registry.get("", "v1", "serviceaccounts")
    body = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "nobody", "namespace": NS}}
    emu.call(emu.emulator.store.create, rt, body, NS)
    kubeconfig = tmp_path / "nobody.kubeconfig"
    emu.write_service_account_kubeconfig(kubeconfig, NS, "nobody")
    api = await ApiClient.connect(str(kubeconfig))
    try:
        err = await refused(api, "con-a")
        assert err.code == 403
        assert (
            'cannot get resource "virtualmachineinstances/console" in API group "subresources.kubevirt.io"'
            in err.message
        )
    finally:
        await api.close()


async def test_the_console_path_without_an_upgrade_is_refused_as_virt_api_does(emu: EmulatorThread) -> None:
    """The VMI is checked first (404, 409, the answers an upgrade gets), then the missing upgrade (400)."""
    create_vm(emu, "con-c")
    api = await ApiClient.connect(emu.kubeconfig)
    try:
        with pytest.raises(ApiError) as err:
            await api.request("GET", console_path("con-c"), retry=False)
        assert err.value.code == 404
        assert 'virtualmachineinstance.kubevirt.io "con-c" not found' in err.value.message
        assert emu.call(emu.kubevirt.virtctl, NS, "con-c", "start") == 202
        wait_phase(emu, "con-c", "Running")
        with pytest.raises(ApiError) as err:
            await api.request("GET", console_path("con-c"), retry=False)
        assert err.value.code == 400 and "not using the websocket protocol" in err.value.message
    finally:
        await api.close()
