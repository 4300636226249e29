"""Redfish front end (starlette + uvicorn): one service per BMC, one System per service.

    app = create_app(machine, credentials, limiter=limiter, manager_info={...})
    server = await serve(app, "0.0.0.0", 8443)        # HTTPS, self-signed unless tls_cert/tls_key
    ...
    await server.stop()

See docs/redfish.md.
"""

from vmbmc.redfish.app import create_app
from vmbmc.redfish.connections import ConnectionLimits
from vmbmc.redfish.server import RedfishServer, run, serve

__all__ = ["ConnectionLimits", "RedfishServer", "create_app", "run", "serve"]
