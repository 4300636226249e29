"""Redfish front end (starlette + uvicorn): one service per BMC, one System per service.

    app = create_app(machine, credentials, limiter=limiter, manager_info={...})
    server = await serve(app, "0.0.0.0", 8443)        # HTTPS, self-signed unless tls_cert/tls_key
    ...
    await server.stop()

See docs/redfish.md. The names below are loaded on first use: importing one module of this package
(`vmbmc.redfish.tls`) does not load starlette, uvicorn and the schemas.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vmbmc import lazy

if TYPE_CHECKING:
    from vmbmc.redfish.app import create_app
    from vmbmc.redfish.connections import ConnectionLimits
    from vmbmc.redfish.server import RedfishServer, run, serve

__all__ = ["ConnectionLimits", "RedfishServer", "create_app", "run", "serve"]

__getattr__ = lazy.exports(
    __name__,
    {
        "create_app": "vmbmc.redfish.app",
        "ConnectionLimits": "vmbmc.redfish.connections",
        "RedfishServer": "vmbmc.redfish.server",
        "run": "vmbmc.redfish.server",
        "serve": "vmbmc.redfish.server",
    },
)
