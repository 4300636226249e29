"""One BMC's front ends over one Machine: IPMI always, Redfish when asked, sharing one failed-login
limiter (failures count per client address across protocols).

Used by `vmbmc kbmc` (one per process), by the demo and by the benchmarks (many per process).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from vmbmc.auth import Credentials, LoginLimiter
from vmbmc.destinations import AllowList
from vmbmc.kbmc.server import DEFAULT_PORT, IpmiServer
from vmbmc.machine.api import Machine

log = logging.getLogger(__name__)

REDFISH_PORT = 8443


@dataclass(frozen=True, slots=True)
class ServiceOptions:
    address: str = "::"
    ipmi_port: int | None = DEFAULT_PORT  # None: no IPMI
    advertised_ipmi_port: int | None = None  # the port clients use (a Service's); None: ipmi_port
    redfish_port: int | None = None  # None: no Redfish
    redfish_http: bool = False
    tls_cert: str | None = None
    tls_key: str | None = None
    # where Redfish events may be pushed (empty: nowhere)
    event_destinations: AllowList = field(default_factory=AllowList)


class BmcService:
    def __init__(
        self,
        machine: Machine,
        credentials: Credentials,
        options: ServiceOptions,
        *,
        limiter: LoginLimiter | None = None,
    ) -> None:
        self.machine = machine
        self.credentials = credentials
        self.options = options
        self.limiter = limiter or LoginLimiter()
        self.ipmi: IpmiServer | None = None
        self.redfish = None  # vmbmc.redfish.RedfishServer when running

    async def start(self) -> BmcService:
        opts = self.options
        try:
            if opts.ipmi_port is not None:
                self.ipmi = await IpmiServer(
                    self.machine,
                    self.credentials,
                    host=opts.address,
                    port=opts.ipmi_port,
                    limiter=self.limiter,
                    advertised_port=opts.advertised_ipmi_port,
                ).start()
            if opts.redfish_port is not None:
                # Imported here: a BMC without Redfish never loads starlette's routing and schemas.
                from vmbmc.redfish.app import create_app
                from vmbmc.redfish.server import serve

                app = create_app(
                    self.machine,
                    self.credentials,
                    limiter=self.limiter,
                    manager_info={
                        "ipmi_port": (opts.advertised_ipmi_port or self.ipmi.port) if self.ipmi else None,
                        "https": not opts.redfish_http,
                    },
                    event_destinations=opts.event_destinations,
                )
                host = "::" if opts.address in ("", "::") else opts.address
                self.redfish = await serve(
                    app,
                    host,
                    opts.redfish_port,
                    tls_cert=opts.tls_cert,
                    tls_key=opts.tls_key,
                    http=opts.redfish_http,
                )
        except BaseException:
            await self.stop()
            raise
        return self

    @property
    def redfish_url(self) -> str | None:
        return self.redfish.service_url if self.redfish is not None else None

    async def stop(self) -> None:
        if self.redfish is not None:
            await self.redfish.stop()
            self.redfish = None
        if self.ipmi is not None:
            await self.ipmi.stop()
            self.ipmi = None
