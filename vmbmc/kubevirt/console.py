"""A VM's serial console through KubeVirt: the `virtualmachineinstances/console` subresource (the
WebSocket `virtctl console` uses, subprotocol `plain.kubevirt.io`: raw bytes in binary frames).

One task per open console: it waits (on the VMI watch the machine already has, no polling) until the
VMI is Running, connects, pumps bytes both ways, and when the connection ends (the VMI stopped or was
replaced by a power cycle) waits for the next Running VMI and connects again. Its rights: `get` on
`subresources.kubevirt.io` `virtualmachineinstances/console`, by name (docs/security.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from vmbmc.k8s.client import ApiClient, ApiError
from vmbmc.k8s.informer import Informer
from vmbmc.kubevirt.records import subresource_path
from vmbmc.machine.console import Console, ConsoleState, Output, StateListener

if TYPE_CHECKING:
    from httpx2.websockets import AsyncWebSocketSession

log = logging.getLogger(__name__)

SUBPROTOCOL = "plain.kubevirt.io"
MAX_QUEUED = 64 * 1024  # bytes typed but not yet sent to the guest
REFUSED_RETRY = 5.0  # seconds between attempts while the API refuses the console
NOT_READY_RETRY = 1.0  # the watch says Running but virt-api does not agree yet


def _running(vmi: dict[str, Any] | None) -> str | None:
    """The uid of a Running VMI that is not being deleted."""
    if not vmi or (vmi.get("metadata") or {}).get("deletionTimestamp"):
        return None
    if (vmi.get("status") or {}).get("phase") != "Running":
        return None
    return str(vmi["metadata"].get("uid") or "")


class KubeVirtConsole(Console):
    def __init__(
        self,
        api: ApiClient,
        vmis: Informer,
        namespace: str,
        name: str,
        output: Output,
        state: StateListener,
    ) -> None:
        self.api, self.vmis = api, vmis
        self.namespace, self.name = namespace, name
        self._output, self._state = output, state
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._queued = 0
        self._changed = asyncio.Event()
        self._closed = False
        self._shown: ConsoleState | None = None
        vmis.subscribe(name, self._on_change)
        self._task = asyncio.get_running_loop().create_task(self._run())

    def _on_change(self, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        self._changed.set()

    def _tell(self, state: ConsoleState, detail: str) -> None:
        if self._closed or state is self._shown:
            return
        self._shown = state
        if state is not ConsoleState.CONNECTED:
            self._drop_queue()
        self._state(state, detail)

    def write(self, data: bytes) -> bool:
        # Kept while connecting (typed right after SOL activation); dropped while the VM is off,
        # as keys typed at a powered-off server go nowhere.
        if self._closed or self._shown in (ConsoleState.WAITING, ConsoleState.REFUSED):
            return False
        if self._queued + len(data) > MAX_QUEUED:
            return False
        self._queued += len(data)
        self._queue.put_nowait(data)
        return True

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.vmis.unsubscribe(self.name, self._on_change)
        self._task.cancel()  # leaving the session's block closes the connection

    async def _wait_change(self, timeout: float | None) -> None:
        self._changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)

    async def _run(self) -> None:
        path = subresource_path(self.namespace, self.name, "virtualmachineinstances", "console")
        while not self._closed:
            uid = _running(self.vmis.get(self.name))
            if uid is None:
                self._tell(ConsoleState.WAITING, "the VM is not running")
                await self._wait_change(None)
                continue
            try:
                await self._session(path, uid)
            except ApiError as err:
                if err.code in (404, 409):  # virt-api has not seen it Running yet, or it just ended
                    await self._wait_change(NOT_READY_RETRY)
                    continue
                log.warning(
                    "console refused", extra={"vm": f"{self.namespace}/{self.name}", "error": str(err)}
                )
                self._tell(ConsoleState.REFUSED, err.message)
                await self._wait_change(REFUSED_RETRY)
                continue
            log.info("console disconnected", extra={"vm": f"{self.namespace}/{self.name}", "vmi_uid": uid})
            self._shown = None  # the next state (waiting or connected again) is news
            if _running(self.vmis.get(self.name)) == uid:
                await self._wait_change(NOT_READY_RETRY)  # the same VMI: do not spin on a broken stream

    async def _session(self, path: str, uid: str) -> None:
        """One connection, from the upgrade until either side ends it. Raises ApiError if refused."""
        async with self.api.websocket(path, SUBPROTOCOL) as ws:
            log.info("console connected", extra={"vm": f"{self.namespace}/{self.name}", "vmi_uid": uid})
            self._tell(ConsoleState.CONNECTED, "")
            try:
                await self._pump(ws)
            except Exception as err:  # a broken stream ends this connection, never the console
                log.warning(
                    "console stream failed", extra={"vm": f"{self.namespace}/{self.name}", "error": str(err)}
                )
            finally:
                self._drop_queue()

    async def _pump(self, ws: AsyncWebSocketSession) -> None:
        """Bytes both ways until the server closes, the connection breaks or sending fails."""

        async def send() -> None:
            while True:
                data = await self._queue.get()
                self._queued -= len(data)
                await ws.send_bytes(data)

        sender = asyncio.ensure_future(send())
        receiver = asyncio.ensure_future(self._receive(ws))
        try:
            await asyncio.wait((sender, receiver), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sender, receiver):
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task

    async def _receive(self, ws: AsyncWebSocketSession) -> None:
        from httpx2.websockets import HTTPXWSException  # loaded with the session already

        with contextlib.suppress(HTTPXWSException):  # closed by the server or broken: the end
            while True:
                event = await ws.receive()
                data = getattr(event, "data", b"")  # plain.kubevirt.io: binary frames; text tolerated
                data = data.encode() if isinstance(data, str) else bytes(data)
                if data and not self._closed:
                    self._output(data)

    def _drop_queue(self) -> None:
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queued = 0
