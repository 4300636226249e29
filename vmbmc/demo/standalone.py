"""Standalone BMCs for the demo: one Machine per sample VM through the KubeVirt back end, served in-process.

Until the controller and its pod runner drive the demo, each VM gets its BMC here (contracts §7): the same
back end (`KubeVirtHub.machine_for_vm`), the same front ends, on a loopback address of its own.
"""

from __future__ import annotations

import logging
import secrets
import socket
import string
from dataclasses import dataclass, field
from typing import Any

from vmbmc.auth import LoginLimiter, StaticCredentials
from vmbmc.demo.endpoints import BmcEndpoint
from vmbmc.kubevirt.hub import KubeVirtHub
from vmbmc.redfish.app import create_app
from vmbmc.redfish.server import RedfishServer, serve

log = logging.getLogger("vmbmc.demo")
REDFISH_PORT = 8443  # the container port (contracts §6)


def generate_password(length: int = 24) -> str:
    """RAKP lets anyone who reaches the port try passwords offline: ≥ 20 random characters (contracts §8)."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


def loopback_address(index: int) -> str:
    """127.10.0.N where the OS answers on all of 127/8 (Linux); 127.0.0.1 elsewhere (macOS)."""
    candidate = f"127.10.0.{index + 1}"
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((candidate, 0))
        return candidate
    except OSError:
        return "127.0.0.1"


@dataclass
class StandaloneBmcs:
    kubeconfig: str
    redfish_http: bool = False
    hub: KubeVirtHub | None = None
    servers: list[RedfishServer] = field(default_factory=list)
    machines: list[Any] = field(default_factory=list)

    async def start(self, vms: list[tuple[str, str]]) -> list[BmcEndpoint]:
        self.hub = await KubeVirtHub.connect(self.kubeconfig)
        endpoints = []
        for i, (namespace, name) in enumerate(vms):
            machine = await self.hub.machine_for_vm(namespace, name)
            self.machines.append(machine)
            creds = StaticCredentials("admin", generate_password())
            host = loopback_address(i)
            port = REDFISH_PORT if host != "127.0.0.1" else 0
            app = create_app(
                machine,
                creds,
                limiter=LoginLimiter(),
                manager_info={"redfish_port": port, "https": not self.redfish_http},
            )
            try:
                server = await serve(app, host, port, http=self.redfish_http)
            except OSError:
                server = await serve(app, host, 0, http=self.redfish_http)
            self.servers.append(server)
            endpoints.append(
                BmcEndpoint(
                    vm=f"{namespace}/{name}",
                    bmc=None,
                    ipmi_host=None,
                    ipmi_port=None,
                    redfish=f"{server.url}/redfish/v1",
                    username=creds.username(),
                    password=creds.password_for(creds.username()) or "",
                )
            )
            log.info("standalone BMC ready", extra={"vm": f"{namespace}/{name}", "redfish": server.url})
        return endpoints

    async def stop(self) -> None:
        for server in self.servers:
            await server.stop()
        if self.hub is not None:
            for machine in self.machines:
                await self.hub.release(machine)
            await self.hub.close()
