"""virt-api's serial console subresource in the emulator, with a fake guest behind it.

``GET /apis/subresources.kubevirt.io/v1/namespaces/NS/virtualmachineinstances/NAME/console`` upgrades to
a WebSocket with the subprotocol ``plain.kubevirt.io``: raw bytes in binary frames, both ways (what
``virtctl console`` speaks). Authorized like any GET of the ``virtualmachineinstances/console``
subresource (the emulator's access middleware runs first). Refused as virt-api refuses it: 404 for a
VMI that does not exist, 409 "VMI is not running" for one that is not Running.

The guest behind each VMI is a getty: the first connection to a VMI sees its boot lines and
``NAME login: ``; every byte typed is echoed, and each Enter (CR or LF; CR LF counts once) prints the
prompt again. A new VMI (a power cycle) is a new guest that boots again. One connection per VMI at a
time, as virt-handler allows: a new one ends the old.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.websockets import WebSocket, WebSocketDisconnect

from vmbmc_devcluster.emulator import kubevirt_state as ks
from vmbmc_devcluster.emulator.errors import ApiError
from vmbmc_devcluster.emulator.kubevirt import VMI_RT
from vmbmc_devcluster.emulator.store import Subscription

if TYPE_CHECKING:
    from vmbmc_devcluster.emulator.emulator import Emulator

log = logging.getLogger("vmbmc.emulator.console")

PATH = "/apis/subresources.kubevirt.io/v1/namespaces/{namespace}/virtualmachineinstances/{name}/console"
SUBPROTOCOL = "plain.kubevirt.io"
MAX_GUESTS = 4096  # guests of VMIs long gone are forgotten beyond this


def boot_lines(name: str) -> bytes:
    return (
        "\r\nSeaBIOS (version vmbmc-emulator)\r\n"
        f"Booting from Hard Disk...\r\n"
        f"[    0.000000] Linux version 6.1.0-vmbmc ({name})\r\n"
        "[    1.234567] Run /sbin/init as init process\r\n"
        f"\r\nvmbmc emulated guest {name} ttyS0\r\n"
    ).encode()


class FakeGuest:
    """The serial side of one VMI: what it answers to what is typed."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.booted = False
        self._after_cr = False

    def prompt(self) -> bytes:
        return f"\r\n{self.name} login: ".encode()

    def connected(self) -> bytes:
        if self.booted:
            return b""
        self.booted = True
        return boot_lines(self.name) + self.prompt()

    def typed(self, data: bytes) -> bytes:
        out = bytearray()
        for byte in data:
            if byte == 0x0A and self._after_cr:  # CR LF: one Enter
                self._after_cr = False
                continue
            self._after_cr = byte == 0x0D
            if byte in (0x0D, 0x0A):
                out += self.prompt()
            else:
                out.append(byte)
        return bytes(out)


class Consoles:
    """The console endpoint of one emulator: a guest and at most one connection per VMI."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.guests: dict[str, FakeGuest] = {}
        self.open: dict[str, WebSocket] = {}

    def _running_vmi(self, namespace: str, name: str) -> dict:
        vmi = self.emulator.store.try_get(VMI_RT, namespace, name)
        if vmi is None:
            raise ApiError(
                404,
                "NotFound",
                f'virtualmachineinstance.kubevirt.io "{name}" not found',
                details={"name": name, "group": "kubevirt.io", "kind": "virtualmachineinstance"},
            )
        if ks.phase(vmi) != ks.RUNNING or ks.is_deleting(vmi):
            raise ApiError(
                409,
                "Conflict",
                "Operation cannot be fulfilled on virtualmachineinstance.kubevirt.io "
                f'"{name}": VMI is not running',
                details={"name": name, "group": "kubevirt.io", "kind": "virtualmachineinstance"},
            )
        return vmi

    def _guest(self, uid: str, name: str) -> FakeGuest:
        guest = self.guests.get(uid)
        if guest is None:
            while len(self.guests) >= MAX_GUESTS:
                self.guests.pop(next(iter(self.guests)))
            guest = self.guests[uid] = FakeGuest(name)
        return guest

    async def plain(self, request: Request) -> JSONResponse:
        """The path without a WebSocket upgrade: refused as virt-api refuses it, the VMI checked first
        (404, 409, the same answers an upgrade gets), then 400 for the missing upgrade."""
        try:
            self._running_vmi(request.path_params["namespace"], request.path_params["name"])
            raise ApiError(400, "BadRequest", "websocket: the client is not using the websocket protocol: "
                           "'upgrade' token not found in 'Connection' header")
        except ApiError as exc:
            return JSONResponse(exc.status(), exc.code)

    async def endpoint(self, websocket: WebSocket) -> None:
        namespace, name = websocket.path_params["namespace"], websocket.path_params["name"]
        try:
            vmi = self._running_vmi(namespace, name)
        except ApiError as exc:
            await websocket.send_denial_response(JSONResponse(exc.status(), exc.code))
            return
        uid = vmi["metadata"]["uid"]
        guest = self._guest(uid, name)
        old = self.open.pop(uid, None)
        if old is not None:
            await _close(old)
        await websocket.accept(subprotocol=SUBPROTOCOL)
        self.open[uid] = websocket
        log.info("console connected", extra={"namespace": namespace, "vmi": name, "vmi_uid": uid})
        watcher = self.emulator.store.subscribe(VMI_RT, namespace=namespace, name=name)
        try:
            greeting = guest.connected()
            if greeting:
                await websocket.send_bytes(greeting)
            await self._serve(websocket, guest, watcher, namespace, name, uid)
        except WebSocketDisconnect:
            pass
        finally:
            watcher.close()
            if self.open.get(uid) is websocket:
                del self.open[uid]
            await _close(websocket)

    def _ended(self, namespace: str, name: str, uid: str) -> bool:
        vmi = self.emulator.store.try_get(VMI_RT, namespace, name)
        return vmi is None or vmi["metadata"]["uid"] != uid or ks.is_deleting(vmi)

    async def _serve(
        self,
        websocket: WebSocket,
        guest: FakeGuest,
        watcher: Subscription,
        namespace: str,
        name: str,
        uid: str,
    ) -> None:
        # The console ends when its VMI does (virt-handler closes it as the domain stops).
        async def vmi_gone() -> None:
            if self._ended(namespace, name, uid):
                return
            async for _ in watcher:
                if self._ended(namespace, name, uid):
                    return

        gone = asyncio.ensure_future(vmi_gone())
        try:
            while True:
                receive = asyncio.ensure_future(websocket.receive())
                done, _ = await asyncio.wait({receive, gone}, return_when=asyncio.FIRST_COMPLETED)
                if gone in done:
                    receive.cancel()
                    return
                message = receive.result()
                if message["type"] == "websocket.disconnect":
                    return
                data = message.get("bytes") or (message.get("text") or "").encode()
                echo = guest.typed(data)
                if echo:
                    await websocket.send_bytes(echo)
        finally:
            gone.cancel()


async def _close(websocket: WebSocket) -> None:
    with contextlib.suppress(Exception):  # already closed by the other side
        await websocket.close()
