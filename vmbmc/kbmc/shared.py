"""`vmbmc kbmc --shared NAMESPACE`: one process serving every BMC its roster lists (vmbmc.roster).

It watches the roster ConfigMap by name and converges on it: a BMC listed is served on its own ports
(IPMI, and Redfish when enabled: one listener per BMC port, each its own app) with its own
credentials (its Secret, read by name and re-read every `REFRESH` seconds), its own Machine (status,
history and Events on its own VirtualMachineBMC); a BMC no longer listed stops being served. When it
begins serving a BMC it writes `status.serving` (the time), which the controller folds into Ready;
when it stops, it removes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from vmbmc.auth import StaticCredentials
from vmbmc.destinations import AllowList
from vmbmc.kbmc.service import BmcService, ServiceOptions
from vmbmc.machine.api import Machine
from vmbmc.machine.shared import MachineSource
from vmbmc.roster import RosterEntry

log = logging.getLogger("vmbmc.kbmc.shared")

REFRESH = 60.0  # credentials Secrets are read again this often
RETRY = 2.0  # a BMC that could not be started is tried again this soon
STARTS_AT_ONCE = 16  # BMCs being started concurrently (each lists its watches first)


class SecretCredentials(StaticCredentials):
    """A BMC's credentials from its Secret, replaced in place when the Secret changes (rotation)."""

    def update(self, username: str, password: str) -> None:
        if username and password:
            self._username, self._password = username, password


@dataclass
class _Served:
    entry: RosterEntry
    machine: Machine
    service: BmcService
    credentials: SecretCredentials


def _destinations(name: str, entry: RosterEntry) -> AllowList:
    """The BMC's event allow-list from its roster entry; one the controller could not have written
    (edited by hand) admits nothing."""
    try:
        return AllowList.parse(entry.event_destinations)
    except ValueError as err:
        log.warning("roster entry's eventDestinations unreadable: no event is sent",
                    extra={"bmc": name, "error": str(err)})
        return AllowList()


class SharedKbmc:
    def __init__(
        self,
        hub: MachineSource,
        namespace: str,
        *,
        address: str,
        restricted: bool,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        advertised_ipmi_port: int | None = None,
    ) -> None:
        self.hub = hub
        # Every BMC's Service maps the same port (623) onto its own container port: SOL names that one.
        self.advertised_ipmi_port = advertised_ipmi_port
        self.namespace = namespace
        self.address = address
        self.restricted = restricted
        self.tls: tuple[str, str] | None = (tls_cert, tls_key) if tls_cert and tls_key else None
        self.served: dict[str, _Served] = {}
        self.failed: set[str] = set()
        self._changed = asyncio.Event()
        self._roster = hub.shared_roster(namespace)
        self._gate = asyncio.Semaphore(STARTS_AT_ONCE)
        self._tls_lock = asyncio.Lock()
        self._converged = False

    def ready(self) -> bool:
        """Every BMC the roster listed when it was first read has been tried (for /readyz): a restarted
        pod is not Ready while a `status.serving` of its predecessor's says more than it does. Not the
        hub's readiness: a BMC added later has watches not synced yet, and the pod's Ready going false
        then would take every other BMC's Ready with it (each BMC's own is `status.serving`)."""
        return self._converged

    async def run(self, stop: asyncio.Event) -> None:
        self._roster.start(self._changed.set)
        loop = asyncio.get_running_loop()
        next_refresh = loop.time() + REFRESH
        try:
            while not stop.is_set():
                self._changed.clear()
                if self._roster.synced():
                    await self.converge(self._roster.entries())
                    self._converged = True
                if loop.time() >= next_refresh:
                    next_refresh = loop.time() + REFRESH
                    await self._refresh_credentials()
                timeout = RETRY if self.failed or not self._roster.synced() else REFRESH
                waiters = [asyncio.ensure_future(e.wait()) for e in (self._changed, stop)]
                try:
                    await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for w in waiters:
                        w.cancel()
        finally:
            await self._roster.stop()
            await asyncio.gather(*(self._stop(name, clear=False) for name in list(self.served)))

    async def converge(self, roster: dict[str, RosterEntry]) -> None:
        """Serve exactly the BMCs `roster` lists, each as its entry says."""
        gone = [name for name, s in self.served.items() if roster.get(name) != s.entry]
        await asyncio.gather(*(self._stop(name, clear=name not in roster) for name in gone))
        self.failed &= set(roster)
        todo = [(name, entry) for name, entry in roster.items() if name not in self.served]
        await asyncio.gather(*(self._start(name, entry) for name, entry in todo))

    async def _start(self, name: str, entry: RosterEntry) -> None:
        async with self._gate:
            machine = None
            try:
                user, password = await self._roster.credentials(entry.secret)
                creds = SecretCredentials(user, password)
                machine = await self.hub.machine_for_bmc(self.namespace, name, restricted=self.restricted)
                tls = await self._certificate() if entry.redfish and not entry.insecure_http else None
                opts = ServiceOptions(
                    address=self.address,
                    ipmi_port=entry.ipmi_port if entry.ipmi else None,
                    advertised_ipmi_port=self.advertised_ipmi_port,
                    redfish_port=entry.redfish_port if entry.redfish else None,
                    redfish_http=entry.insecure_http,
                    tls_cert=tls[0] if tls else None,
                    tls_key=tls[1] if tls else None,
                    event_destinations=_destinations(name, entry),
                )
                service = await BmcService(machine, creds, opts).start()
            except Exception as err:  # one BMC's trouble (Secret missing, port taken) stops no other
                if machine is not None:
                    await self.hub.release(machine)
                if name not in self.failed:
                    log.warning("cannot serve BMC yet", extra={"bmc": name, "error": str(err)})
                self.failed.add(name)
                return
            self.failed.discard(name)
            self.served[name] = _Served(entry, machine, service, creds)
            log.info(
                "serving BMC",
                extra={"bmc": name, "ipmi_port": opts.ipmi_port, "redfish_port": opts.redfish_port},
            )
            await self._roster.mark_serving(name, True)

    async def _stop(self, name: str, *, clear: bool) -> None:
        served = self.served.pop(name, None)
        if served is None:
            return
        await served.service.stop()
        await self.hub.release(served.machine)
        log.info("stopped serving BMC", extra={"bmc": name})
        if clear:
            await self._roster.mark_serving(name, False)

    async def _refresh_credentials(self) -> None:
        async def one(served: _Served) -> None:
            async with self._gate:
                with contextlib.suppress(ValueError):
                    served.credentials.update(*await self._roster.credentials(served.entry.secret))

        await asyncio.gather(*(one(s) for s in list(self.served.values())))

    async def _certificate(self) -> tuple[str, str]:
        """One self-signed certificate for every HTTPS listener of this process, made once."""
        async with self._tls_lock:
            if self.tls is None:
                from vmbmc.redfish.tls import self_signed_certificate_apart

                names = () if self.address in ("", "::", "0.0.0.0") else (self.address,)
                cert, key = await self_signed_certificate_apart(names)
                self.tls = (str(cert), str(key))
            return self.tls
