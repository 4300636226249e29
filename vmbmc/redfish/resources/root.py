"""ServiceRoot, `/redfish`, the OData service document and `$metadata` (all without authentication)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from vmbmc.redfish import paths
from vmbmc.redfish.context import service
from vmbmc.redfish.errors import RedfishJSON
from vmbmc.redfish.resources.base import ok, ref, resource
from vmbmc.redfish.schemas import metadata_xml

REDFISH_VERSION = "1.17.0"

_SINGLETONS = {
    "Systems": paths.SYSTEMS,
    "Chassis": paths.CHASSIS_COLLECTION,
    "Managers": paths.MANAGERS,
    "AccountService": paths.ACCOUNT_SERVICE,
    "SessionService": paths.SESSION_SERVICE,
    "Registries": paths.REGISTRIES,
    "EventService": paths.EVENT_SERVICE,
}


async def versions(request: Request) -> Response:
    return RedfishJSON({"v1": paths.ROOT + "/"})


async def service_root(request: Request) -> Response:
    svc = service(request)
    body = resource(
        "ServiceRoot", paths.ROOT, "RootService", "vmbmc Redfish service",
        RedfishVersion=REDFISH_VERSION,
        UUID=svc.derived_uuid("service-root"),
        Vendor="vmbmc",
        Product="vmbmc virtual BMC for KubeVirt",
        ProtocolFeaturesSupported={
            "ExpandQuery": {"ExpandAll": False, "Levels": False, "Links": False, "NoLinks": False},
            "FilterQuery": False,
            "SelectQuery": False,
            "OnlyMemberQuery": False,
            "ExcerptQuery": False,
        },
        Links={"Sessions": ref(paths.SESSIONS)},
        **{name: ref(path) for name, path in _SINGLETONS.items()},
    )
    return ok(body)


async def odata(request: Request) -> Response:
    body = {
        "@odata.context": paths.METADATA,
        "value": [
            {"name": "Service", "kind": "Singleton", "url": paths.ROOT + "/"},
            *({"name": name, "kind": "Singleton", "url": path} for name, path in _SINGLETONS.items()),
        ],
    }
    return RedfishJSON(body)


async def metadata(request: Request) -> Response:
    return Response(metadata_xml(), media_type="application/xml")
