"""The Redfish application of one BMC: a table of resources, then the middleware around it.

Request path (outermost first): access log → OData/security headers → body limit (413) →
authentication (token or Basic) → ETag / If-Match → routes below → exception handlers (Base
registry error bodies).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from vmbmc.auth import Credentials, LoginLimiter
from vmbmc.destinations import AllowList
from vmbmc.machine.api import Machine
from vmbmc.machine.errors import MachineError
from vmbmc.redfish import paths
from vmbmc.redfish.auth import AuthMiddleware
from vmbmc.redfish.context import ManagerInfo, Service
from vmbmc.redfish.errors import RedfishError, from_machine_error
from vmbmc.redfish.etag import ETagMiddleware
from vmbmc.redfish.eventservice import EventService
from vmbmc.redfish.middleware import AccessLogMiddleware, BodyLimitMiddleware, RedfishHeadersMiddleware
from vmbmc.redfish.resources import (
    accounts,
    chassis,
    events,
    firmware,
    inventory,
    logs,
    managers,
    media,
    registries,
    root,
    sessions,
    systems,
)
from vmbmc.redfish.sessions import SessionStore

log = logging.getLogger(__name__)

SYSTEM = f"{paths.SYSTEMS}/{{system_id}}"
SUBSCRIPTION = f"{paths.SUBSCRIPTIONS}/{{subscription_id}}"
LOG = f"{SYSTEM}/LogServices/{{log_id}}"
MEDIA_ACTIONS = "VirtualMedia/{media_id}/Actions/VirtualMedia"

Endpoint = Callable[[Request], Awaitable[Response]]


def route(path: str, **handlers: Endpoint) -> Route:
    """One resource: its URI and an endpoint per HTTP method (HEAD is answered as GET).

    One Route per URI, so a 405 names every method the resource allows in its `Allow` header.
    """

    allow = ", ".join([*handlers, "HEAD"] if "GET" in handlers else handlers)

    async def dispatch(request: Request) -> Response:
        if request.method in ("GET", "HEAD"):
            response = await handlers["GET"](request)
            response.headers["Allow"] = allow
            return response
        return await handlers[request.method](request)

    return Route(path, dispatch, methods=list(handlers), name=path)


ROUTES = [
    route("/redfish",                                   GET=root.versions),
    route("/redfish/",                                  GET=root.versions),
    route(paths.ROOT,                                   GET=root.service_root),
    route(paths.ROOT + "/",                             GET=root.service_root),
    route(paths.ODATA,                                  GET=root.odata),
    route(paths.METADATA,                               GET=root.metadata),
    route(paths.SYSTEMS,                                GET=systems.systems),
    route(SYSTEM,                                       GET=systems.get_system, PATCH=systems.patch_system),
    route(f"{SYSTEM}/Actions/ComputerSystem.Reset",     POST=systems.reset_system),
    route(f"{SYSTEM}/EthernetInterfaces",               GET=inventory.ethernet_interfaces),
    route(f"{SYSTEM}/EthernetInterfaces/{{nic_id}}",    GET=inventory.ethernet_interface),
    route(f"{SYSTEM}/Processors",                       GET=inventory.processors),
    route(f"{SYSTEM}/Processors/{{processor_id}}",      GET=inventory.processor),
    route(f"{SYSTEM}/SimpleStorage",                    GET=inventory.simple_storage_collection),
    route(f"{SYSTEM}/SimpleStorage/{{storage_id}}",     GET=inventory.simple_storage),
    *[
        # one Cd device, under the System (Ironic) and the Manager (bmclib looks there first)
        r
        for parent in (SYSTEM, paths.MANAGER)
        for r in (
            route(f"{parent}/VirtualMedia",             GET=media.media_collection),
            route(f"{parent}/VirtualMedia/{{media_id}}", GET=media.get_media, PATCH=media.patch_media),
            route(f"{parent}/{MEDIA_ACTIONS}.InsertMedia", POST=media.insert_media),
            route(f"{parent}/{MEDIA_ACTIONS}.EjectMedia", POST=media.eject_media),
        )
    ],
    route(f"{SYSTEM}/SecureBoot",                       GET=firmware.get_secure_boot,
                                                        PATCH=firmware.patch_secure_boot),
    route(f"{SYSTEM}/Bios",                             GET=firmware.get_bios),
    route(f"{SYSTEM}/Bios/Settings",                    GET=firmware.get_bios_settings,
                                                        PATCH=firmware.patch_bios_settings),
    route(f"{media.TASK_MONITORS}/{{task_id}}",         GET=media.task_monitor),
    route(f"{SYSTEM}/LogServices",                      GET=logs.log_services),
    route(LOG,                                          GET=logs.log_service),
    route(f"{LOG}/Entries",                             GET=logs.log_entries),
    route(f"{LOG}/Entries/{{entry_id}}",                GET=logs.log_entry),
    route(f"{LOG}/Actions/LogService.ClearLog",         POST=logs.clear_log),
    route(paths.MANAGERS,                               GET=managers.managers),
    route(paths.MANAGER,                                GET=managers.manager),
    route(f"{paths.MANAGER}/Actions/Manager.Reset",     POST=managers.reset_manager),
    route(paths.NETWORK_PROTOCOL,                       GET=managers.network_protocol),
    route(paths.CHASSIS_COLLECTION,                     GET=chassis.chassis_collection),
    route(paths.CHASSIS,                                GET=chassis.chassis),
    route(paths.ACCOUNT_SERVICE,                        GET=accounts.account_service),
    route(paths.ACCOUNTS,                               GET=accounts.accounts),
    route(f"{paths.ACCOUNTS}/{{account_id}}",           GET=accounts.account),
    route(paths.ROLES,                                  GET=accounts.roles),
    route(f"{paths.ROLES}/{{role_id}}",                 GET=accounts.role),
    route(paths.SESSION_SERVICE,                        GET=sessions.session_service),
    route(paths.SESSIONS,                               GET=sessions.sessions, POST=sessions.login),
    route(f"{paths.SESSIONS}/Members",                  POST=sessions.login),
    route(f"{paths.SESSIONS}/{{session_id}}",           GET=sessions.session, DELETE=sessions.logout),
    route(paths.EVENT_SERVICE,                          GET=events.event_service,
          PATCH=events.patch_event_service),
    route(f"{paths.EVENT_SERVICE}/Actions/EventService.SubmitTestEvent", POST=events.submit_test_event),
    route(paths.SUBSCRIPTIONS,                          GET=events.subscriptions, POST=events.subscribe),
    route(SUBSCRIPTION,                                 GET=events.subscription, DELETE=events.unsubscribe),
    route(f"{SUBSCRIPTION}/Actions/EventDestination.ResumeSubscription", POST=events.resume_subscription),
    route(f"{SUBSCRIPTION}/Actions/EventDestination.SuspendSubscription", POST=events.suspend_subscription),
    route(paths.REGISTRIES,                             GET=registries.registries),
    # the Bios attribute registry before the message registries' patterns (the first route that matches wins)
    route(firmware.REGISTRY_FILE,                       GET=firmware.get_registry_file),
    route(firmware.REGISTRY_URI,                        GET=firmware.get_registry),
    route(f"{paths.REGISTRIES}/{{prefix}}",             GET=registries.registry_file),
    route(f"{paths.REGISTRIES}/{{prefix}}/{{registry}}", GET=registries.registry_document),
]


async def _redfish_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RedfishError)
    return exc.response()


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code == 404:
        return RedfishError(404, "ResourceMissingAtURI", request.url.path).response()
    if exc.status_code == 405:
        return RedfishError(405, "OperationNotAllowed", headers=headers).response()
    error = RedfishError(exc.status_code, "GeneralError", resolution=str(exc.detail), headers=headers)
    return error.response()


async def _machine_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, MachineError)
    return from_machine_error(exc).response()


async def _redirect(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, systems.Redirect)
    return exc.response()


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error", extra={"method": request.method, "path": request.url.path})
    return RedfishError(500, "InternalError").response()


def create_app(
    machine: Machine,
    credentials: Credentials,
    *,
    limiter: LoginLimiter | None = None,
    manager_info: dict[str, Any] | None = None,
    session_timeout: float = 1800.0,
    max_sessions: int = 64,
    settle_timeout: float = 30.0,
    max_body: int = 64 * 1024,
    event_destinations: AllowList | None = None,
) -> Starlette:
    """The Redfish service of one BMC: one System (the VM), Manager `BMC`, Chassis `1`.

    `manager_info` keys (all optional): `ipmi_port` (int; None = no IPMI), `redfish_port` (int;
    default: the port a request arrived on), `https` (bool, default True), `version` (str, default
    vmbmc's). `limiter` is shared with the IPMI front end of the same BMC so failed logins count
    across protocols. `event_destinations`: where its EventService may push events (vmbmc.destinations;
    default empty: nowhere). Delivery runs while a server (vmbmc.redfish.server.serve) serves the app.
    """
    app = Starlette(
        routes=ROUTES,
        middleware=[
            Middleware(AccessLogMiddleware),
            Middleware(RedfishHeadersMiddleware),
            Middleware(BodyLimitMiddleware),
            Middleware(AuthMiddleware),
            Middleware(ETagMiddleware),
        ],
        exception_handlers={
            RedfishError: _redfish_error,
            HTTPException: _http_error,
            MachineError: _machine_error,
            systems.Redirect: _redirect,
            Exception: _internal_error,
        },
    )
    app.state.service = Service(
        machine=machine,
        credentials=credentials,
        limiter=limiter or LoginLimiter(),
        sessions=SessionStore(timeout=session_timeout, max_sessions=max_sessions),
        manager=ManagerInfo.from_dict(manager_info),
        settle_timeout=settle_timeout,
        max_body=max_body,
    )
    # its own state entry: serve() starts its delivery and the server's stop() ends it
    app.state.events = EventService(machine, event_destinations or AllowList())
    return app
