"""Redfish front end (starlette + uvicorn): one service per BMC, one System per service.

    app = create_app(machine, credentials, limiter=limiter, manager_info={...})
    server = await serve(app, "0.0.0.0", 8443)        # HTTPS, self-signed unless tls_cert/tls_key
    ...
    await server.stop()

See docs/redfish.md. The names below are loaded on first use: importing one module of this package
(`vmbmc.redfish.tls`) does not load starlette, uvicorn and the schemas.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vmbmc.redfish.app import create_app
    from vmbmc.redfish.connections import ConnectionLimits
    from vmbmc.redfish.server import RedfishServer, run, serve

__all__ = ["ConnectionLimits", "RedfishServer", "create_app", "run", "serve"]

_HOME = {
    "create_app": "vmbmc.redfish.app",
    "ConnectionLimits": "vmbmc.redfish.connections",
    "RedfishServer": "vmbmc.redfish.server",
    "run": "vmbmc.redfish.server",
    "serve": "vmbmc.redfish.server",
}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_HOME[name]), name)
