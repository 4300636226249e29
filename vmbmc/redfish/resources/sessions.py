"""SessionService: login (POST → 201 + X-Auth-Token + Location), list, read, logout (DELETE)."""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from vmbmc.redfish import paths
from vmbmc.redfish.auth import check_password
from vmbmc.redfish.body import is_annotation, read_object
from vmbmc.redfish.context import client_address, service
from vmbmc.redfish.errors import RedfishError
from vmbmc.redfish.resources.base import collection, ok, ref, resource, status
from vmbmc.redfish.sessions import Session

log = logging.getLogger(__name__)


def session_body(session: Session) -> dict[str, Any]:
    return resource(
        "Session", f"{paths.SESSIONS}/{session.id}", session.id, "User Session",
        Description="A Redfish login session",
        UserName=session.user,
        CreatedTime=session.created.isoformat().replace("+00:00", "Z"),
        ClientOriginIPAddress=session.client,
        SessionType="Redfish",
    )


async def session_service(request: Request) -> Response:
    svc = service(request)
    body = resource(
        "SessionService", paths.SESSION_SERVICE, "SessionService", "Session Service",
        Description="Redfish login sessions; idle sessions expire after SessionTimeout seconds",
        ServiceEnabled=True,
        SessionTimeout=int(svc.sessions.timeout),
        Status=status(),
        Sessions=ref(paths.SESSIONS),
    )
    return ok(body)


async def sessions(request: Request) -> Response:
    members = [f"{paths.SESSIONS}/{s.id}" for s in service(request).sessions.all()]
    return ok(collection("SessionCollection", paths.SESSIONS, "Session Collection", members))


async def login(request: Request) -> Response:
    svc = service(request)
    body = await read_object(request)
    for key in body:
        if not is_annotation(key) and key not in ("UserName", "Password", "Context"):
            raise RedfishError(400, "PropertyUnknown", key)
    for key in ("UserName", "Password"):
        if key not in body:
            raise RedfishError(400, "CreateFailedMissingReqProperties", key)
        if not isinstance(body[key], str):
            # never echo a password back
            shown = "<hidden>" if key == "Password" else str(body[key])
            raise RedfishError(400, "PropertyValueTypeError", shown, key)
    client = client_address(request)
    user = body["UserName"]
    refused = await check_password(svc, client, user, body["Password"], "session")
    if refused is not None:
        raise refused
    session, token = svc.sessions.create(user, client)
    log.info("session created", extra={"session": session.id, "user": user, "client": client})
    location = f"{paths.SESSIONS}/{session.id}"
    return ok(session_body(session), status_code=201, headers={"X-Auth-Token": token, "Location": location})


async def session(request: Request) -> Response:
    session_id = request.path_params["session_id"]
    found = service(request).sessions.get(session_id)
    if found is None:
        raise RedfishError(404, "ResourceNotFound", "Session", session_id)
    return ok(session_body(found))


async def logout(request: Request) -> Response:
    session_id = request.path_params["session_id"]
    if not service(request).sessions.delete(session_id):
        raise RedfishError(404, "ResourceNotFound", "Session", session_id)
    log.info("session deleted", extra={"session": session_id,
                                       "user": request.scope.get("state", {}).get("user", "")})
    return Response(status_code=204)
