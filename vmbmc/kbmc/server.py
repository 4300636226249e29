"""The IPMI endpoint of one BMC: a UDP socket on the asyncio loop, feeding its LAN channel.

Many `IpmiServer`s may share one loop (one per BMC, each on its own address:port with its own
credentials), started and stopped at run time. Handling a datagram never waits: crypto is
microseconds, reads come from the machine's cache and actions are submitted to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import uuid

from vmbmc.auth import Credentials, LoginLimiter
from vmbmc.kbmc.commands import Commands
from vmbmc.kbmc.lan import Deferred, Identity, LanChannel, Later
from vmbmc.kbmc.sessions import SessionTable
from vmbmc.kbmc.sol import SolPayload
from vmbmc.machine.api import Machine

log = logging.getLogger(__name__)

DEFAULT_PORT = 10623
PRUNE_INTERVAL = 10.0
RECEIVE_BUFFER = 4 * 1024 * 1024
MAX_PENDING_LATE = 1024  # delayed failed-login answers waiting on one endpoint


def _bmc_guid(machine: Machine) -> bytes:
    try:
        return uuid.UUID(machine.inventory().uuid).bytes
    except Exception:  # VM not cached yet or no UUID: a stable one from the names
        return uuid.uuid5(uuid.NAMESPACE_URL, f"vmbmc:{machine.bmc or machine.vm}").bytes


def _peer(addr: tuple[str, int] | tuple[str, int, int, int]) -> tuple[str, int]:
    host = addr[0]
    if host.startswith("::ffff:") and "." in host:  # IPv4 client on a dual-stack socket
        host = host[7:]
    return host, addr[1]


def bind_udp(host: str, port: int) -> socket.socket:
    """A UDP socket on host:port; `::` (or "") is dual-stack, IPv6 and IPv4."""
    host = host or "::"
    family, _, _, _, sockaddr = socket.getaddrinfo(
        host, port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if family == socket.AF_INET6 and host == "::":
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.setblocking(False)
        # Room for a burst while the loop is busy elsewhere (a flood of junk would otherwise crowd out
        # a real client's datagram); the kernel caps it at net.core.rmem_max.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        sock.bind(sockaddr)
    except OSError:
        sock.close()
        raise
    return sock


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, server: IpmiServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None
        self.pending = 0  # delayed answers not yet sent
        self.deferred: set[asyncio.Task[None]] = set()  # answers waiting for KubeVirt
        self._timers: set[asyncio.TimerHandle] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            out = self.server.lan.handle(data, _peer(addr))
        except Exception:  # never let one datagram take the endpoint down
            log.exception("IPMI datagram handling failed", extra={"client": addr[0]})
            return
        if isinstance(out, Later):
            self._later(out, addr)
        elif isinstance(out, Deferred):
            task = asyncio.get_running_loop().create_task(self._deferred(out, addr))
            self.deferred.add(task)
            task.add_done_callback(self.deferred.discard)
        elif out is not None and self.transport is not None:
            self.transport.sendto(out, addr)

    async def _deferred(self, out: Deferred, addr: tuple[str, int]) -> None:
        """Send an answer once KubeVirt has given it (bounded by Commands.ANSWER_WAIT)."""
        try:
            datagram = await out.datagram
        except Exception:
            log.exception("IPMI answer failed", extra={"client": addr[0]})
            return
        if datagram is not None and self.transport is not None:
            self.transport.sendto(datagram, addr)

    def _later(self, out: Later, addr: tuple[str, int]) -> None:
        """A held address's failed login: answered after the delay by the event loop (a timer, never
        a sleep). Bounded, so a spoofed flood of failures cannot pile up timers; beyond the bound
        the answer is dropped, which a client sees as the same wait."""
        if self.pending >= MAX_PENDING_LATE:
            self.server.lan.bad.note(addr[0], "dropped a delayed answer: too many pending")
            return

        def send() -> None:
            self.pending -= 1
            self._timers.discard(timer)
            if self.transport is not None:
                self.transport.sendto(out.datagram, addr)

        self.pending += 1
        timer = asyncio.get_running_loop().call_later(out.delay, send)
        self._timers.add(timer)

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in self._timers:  # the endpoint is closed: nothing left to answer on
            timer.cancel()
        self._timers.clear()
        for task in self.deferred:  # their KubeVirt calls go on (shielded); only the answers are dropped
            task.cancel()
        self.transport = None

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP error", extra={"error": str(exc)})


class IpmiServer:
    def __init__(
        self,
        machine: Machine,
        credentials: Credentials,
        *,
        host: str = "::",
        port: int = DEFAULT_PORT,
        limiter: LoginLimiter | None = None,
        table: SessionTable | None = None,
        advertised_port: int | None = None,
    ) -> None:
        self.machine = machine
        self.host, self._port = host, port
        # The port clients reach us on (a Service's 623, not the container's): SOL names it.
        self.advertised_port = advertised_port
        self.commands = Commands(machine, on_bmc_reset=self._reset_soon)
        table = table if table is not None else SessionTable()
        sol = SolPayload(machine, table, self._send, lambda: self.advertised_port or self._port)
        identity = Identity(lambda: _bmc_guid(machine))
        self.lan = LanChannel(self.commands, credentials, limiter or LoginLimiter(), identity, table, sol)
        self._transport: asyncio.DatagramTransport | None = None
        self._pruner: asyncio.TimerHandle | None = None

    @property
    def port(self) -> int:
        return self._port

    async def start(self) -> IpmiServer:
        loop = asyncio.get_running_loop()
        sock = bind_udp(self.host, self._port)
        self._port = sock.getsockname()[1]
        transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(self), sock=sock)
        self._transport = transport  # type: ignore[assignment]
        self._schedule_prune()
        log.info("IPMI listening", extra={"host": self.host, "port": self._port, "vm": self.machine.vm})
        return self

    def _send(self, datagram: bytes, client: tuple[str, int]) -> None:
        """A datagram the BMC sends on its own (SOL output) to a client of its sessions."""
        transport = self._transport
        if transport is None:
            return
        sock = transport.get_extra_info("socket")
        host = client[0]
        if sock is not None and sock.family == socket.AF_INET6 and "." in host:
            host = "::ffff:" + host  # an IPv4 client of the dual-stack socket (see _peer)
        transport.sendto(datagram, (host, client[1]))

    def _schedule_prune(self) -> None:
        loop = asyncio.get_running_loop()

        def prune() -> None:
            for s in self.lan.table.prune():
                log.info("session expired", extra={"user": s.user, "client": s.client[0]})
            self._pruner = loop.call_later(PRUNE_INTERVAL, prune)

        self._pruner = loop.call_later(PRUNE_INTERVAL, prune)

    def _reset_soon(self) -> None:
        # After the reply has gone out, as a BMC resets after answering Cold Reset.
        asyncio.get_running_loop().call_later(0.2, self.lan.reset)

    async def stop(self) -> None:
        if self._pruner:
            self._pruner.cancel()
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        with contextlib.suppress(Exception):
            self.lan.reset()
