"""Standalone BMCs for the demo: one Machine per sample VM through the KubeVirt back end, served in-process.

Until the controller and its pod runner drive the demo, each VM gets its BMC here: the same
back end (`KubeVirtHub.machine_for_vm`), the same front ends, on a loopback address of its own.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from vmbmc.auth import StaticCredentials
from vmbmc.auth.passwords import generate_password
from vmbmc.kbmc.server import DEFAULT_PORT as IPMI_PORT
from vmbmc.kbmc.service import REDFISH_PORT, BmcService, ServiceOptions
from vmbmc.kubevirt.hub import KubeVirtHub
from vmbmc_devcluster.demo.endpoints import BmcEndpoint
from vmbmc_devcluster.demo.podrunner import kbmc_ports_free

log = logging.getLogger("vmbmc.demo")


def loopback_address(index: int) -> str:
    """127.10.0.N where the OS answers on all of 127/8 (Linux) and the BMC ports are free there;
    127.0.0.1 otherwise (macOS), with ports of its own."""
    candidate = f"127.10.0.{index + 1}"
    return candidate if kbmc_ports_free(candidate) else "127.0.0.1"


@dataclass
class StandaloneBmcs:
    kubeconfig: str
    redfish: bool = False
    redfish_http: bool = False
    hub: KubeVirtHub | None = None
    services: list[BmcService] = field(default_factory=list)
    machines: list[Any] = field(default_factory=list)

    async def start(self, vms: list[tuple[str, str]]) -> list[BmcEndpoint]:
        self.hub = await KubeVirtHub.connect(self.kubeconfig)
        endpoints = []
        for i, (namespace, name) in enumerate(vms):
            machine = await self.hub.machine_for_vm(namespace, name)
            self.machines.append(machine)
            creds = StaticCredentials("admin", generate_password())
            host = loopback_address(i)
            shared = host == "127.0.0.1"  # one address for all: ports of their own
            opts = ServiceOptions(
                address=host,
                ipmi_port=0 if shared else IPMI_PORT,
                redfish_port=(0 if shared else REDFISH_PORT) if self.redfish else None,
                redfish_http=self.redfish_http,
            )
            service = await BmcService(machine, creds, opts).start()
            self.services.append(service)
            assert service.ipmi is not None
            endpoints.append(
                BmcEndpoint(
                    vm=f"{namespace}/{name}",
                    bmc=None,
                    ipmi_host=host,
                    ipmi_port=service.ipmi.port,
                    redfish=service.redfish_url,
                    username=creds.username(),
                    password=creds.password_for(creds.username()) or "",
                )
            )
            log.info(
                "standalone BMC ready",
                extra={"vm": f"{namespace}/{name}", "ipmi": f"{host}:{service.ipmi.port}"},
            )
        return endpoints

    async def stop(self) -> None:
        for service in self.services:
            await service.stop()
        if self.hub is not None:
            for machine in self.machines:
                await self.hub.release(machine)
            await self.hub.close()
