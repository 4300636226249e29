"""The controller's options (the command line's flags, or what a test or the demo passes in)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field

from vmbmc.destinations import AllowList
from vmbmc.naming import SYSTEM_NAMESPACE


def default_identity() -> str:
    """The pod name in a cluster (POD_NAME from the downward API), else host and pid."""
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"


@dataclass
class ControllerOptions:
    kubeconfig: str | None = None
    namespace: str = SYSTEM_NAMESPACE
    leader_elect: bool = False
    health_port: int = 8080  # 0: pick a free port (Controller.health_port tells which)
    health_address: str = "0.0.0.0"
    kbmc_mode: str = "dedicated"  # "dedicated": a kbmc pod per BMC; "shared": one per BMC namespace
    kbmc_image: str | None = None  # None: the controller's own image (vmbmc.controller.image)
    auto_create: bool = True
    vm_namespace_selector: str | None = None
    redfish_default: bool = False
    redfish_insecure_http_default: bool = False  # auto-created BMCs get spec.redfish.insecureHTTP: true
    # where kbmcs may push Redfish events (each BMC's spec may narrow it); empty: nowhere
    event_destinations: AllowList = field(default_factory=AllowList)
    identity: str = field(default_factory=default_identity)
    # Intervals, shortened by tests.
    resync_seconds: float = 60.0  # auto-created BMCs whose VM is gone are deleted at least this often
    lease_seconds: float = 15.0
    renew_seconds: float = 5.0
    pod_check_seconds: float = 5.0  # a BMC waiting for its kbmc pod looks at the pod this often
    retry_seconds: float = 2.0  # a waiting replica tries to take the Lease this often
