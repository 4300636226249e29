"""VirtualMedia: one `Cd` device, reachable from the System and from the Manager (Ironic looks under the
System, bmclib under the Manager first), backed by the
state machine's media operations (a CDI import in the back end).

InsertMedia answers once the import has finished when that takes at most INSERT_WAIT seconds (204, or
400 ActionParameterValueError with CDI's message when it failed); a longer import answers 202 with a
task monitor (`Location`), which answers 202 while the import runs and then the outcome. `Inserted`
reads true only once the import succeeded. gofish's PATCH of `Image`/`Inserted` does the same as the
actions. Advertised only where the back end offers virtual media.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from vmbmc.machine import media as md
from vmbmc.machine.errors import Invalid, MachineError, Refused
from vmbmc.redfish import paths
from vmbmc.redfish.body import is_annotation, read_object
from vmbmc.redfish.context import requester, service
from vmbmc.redfish.errors import RedfishError, from_machine_error
from vmbmc.redfish.resources.base import collection, ok, resource, status
from vmbmc.redfish.resources.systems import resolve, system_path

log = logging.getLogger(__name__)

INSERT_WAIT = 20.0  # seconds InsertMedia waits for the import before answering 202 with a task monitor
DEVICE_ID = "Cd"
INSERT_ACTION = "#VirtualMedia.InsertMedia"
EJECT_ACTION = "#VirtualMedia.EjectMedia"
TASK_MONITORS = f"{paths.ROOT}/TaskService/TaskMonitors"
MAX_TASKS = 16
_INSERT_PARAMS = ("Image", "Inserted", "WriteProtected", "TransferMethod", "TransferProtocolType")
_CREDENTIALS = ("UserName", "Password")
# Nullable in DMTF's VirtualMedia schema, and null while nothing is inserted or importing
EMPTY_NULLS = ("Image", "ImageName", "TransferMethod", "TransferProtocolType")


def offered(request: Request) -> bool:
    return service(request).machine.virtual_media() is not None


def _state(request: Request) -> md.MediaStatus:
    state = service(request).machine.virtual_media()
    if state is None:
        raise RedfishError(404, "ResourceMissingAtURI", request.url.path)
    return state


def _base(request: Request) -> str:
    """The collection's URI under whichever parent the request came through."""
    if request.url.path.startswith(paths.MANAGER):
        return f"{paths.MANAGER}/VirtualMedia"
    return f"{system_path(resolve(request))}/VirtualMedia"


async def media_collection(request: Request) -> Response:
    _state(request)
    base = _base(request)
    return ok(collection("VirtualMediaCollection", base, "Virtual Media Collection", [f"{base}/{DEVICE_ID}"]))


def media_body(base: str, state: md.MediaStatus) -> dict[str, Any]:
    path = f"{base}/{DEVICE_ID}"
    health, conditions = "OK", []
    if state.failed:
        health = "Warning"
        conditions.append({"MessageId": "Base.1.16.0.GeneralError", "Severity": "Warning",
                           "Message": f"Importing {state.image} failed: {state.message}"})
    elif state.importing:
        conditions.append({"MessageId": "Base.1.16.0.ResourceInUse", "Severity": "OK",
                           "Message": f"Importing {state.image} ({state.phase}"
                                      f"{', ' + state.message if state.message else ''})"})
    body = resource(
        "VirtualMedia", path, DEVICE_ID, "Virtual CD",
        Description="A CD-ROM of the VM, imported from a URL by CDI; the VM sees it from its next start",
        MediaTypes=["CD", "DVD"],
        ConnectedVia="URI" if state.inserted else "NotConnected",
        Inserted=state.inserted,
        WriteProtected=True,
        Status={**status(health=health), **({"Conditions": conditions} if conditions else {})},
        Actions={
            INSERT_ACTION: {
                "target": f"{path}/Actions/VirtualMedia.InsertMedia",
                "TransferMethod@Redfish.AllowableValues": ["Stream", "Upload"],
                "TransferProtocolType@Redfish.AllowableValues": ["HTTP", "HTTPS"],
            },
            EJECT_ACTION: {"target": f"{path}/Actions/VirtualMedia.EjectMedia"},
        },
    )
    # Empty media reads as null in every nullable property a client looks for (Image first: Ironic's
    # interop profile reads it in every state), as DMTF's schema allows; nothing is invented.
    body.update(dict.fromkeys(EMPTY_NULLS))
    if state.image:
        body["Image"] = state.image
        body["ImageName"] = state.image_name or None
        body["TransferMethod"] = "Upload"  # CDI copies the whole image into a volume first
        body["TransferProtocolType"] = "HTTPS" if state.image.startswith("https:") else "HTTP"
    return body


def _check_device(request: Request) -> None:
    if request.path_params["media_id"] != DEVICE_ID:
        raise RedfishError(404, "ResourceNotFound", "VirtualMedia", request.path_params["media_id"])


async def get_media(request: Request) -> Response:
    _check_device(request)
    return ok(media_body(_base(request), _state(request)))


def _param_bool(body: dict[str, Any], key: str) -> bool | None:
    if key not in body:
        return None
    value = body[key]
    if not isinstance(value, bool):
        raise RedfishError(400, "ActionParameterValueTypeError", json.dumps(value), key, INSERT_ACTION)
    return value


def _parse_insert(body: dict[str, Any]) -> str:
    """The Image of an InsertMedia body; 400 for anything vmbmc cannot honour, never silently ignored."""
    for key in body:
        if is_annotation(key) or key in _INSERT_PARAMS:
            continue
        if key in _CREDENTIALS:
            raise RedfishError(
                400, "ActionParameterNotSupported", key, INSERT_ACTION,
                resolution="Image server credentials are not supported: serve the image without "
                           "authentication to the cluster.",
            )
        raise RedfishError(400, "ActionParameterUnknown", INSERT_ACTION, key)
    if "Image" not in body:
        raise RedfishError(400, "ActionParameterMissing", INSERT_ACTION, "Image")
    image = body["Image"]
    if not isinstance(image, str):
        raise RedfishError(400, "ActionParameterValueTypeError", json.dumps(image), "Image", INSERT_ACTION)
    if _param_bool(body, "Inserted") is False:
        raise RedfishError(400, "ActionParameterNotSupported", "Inserted", INSERT_ACTION,
                           resolution="Only Inserted true is supported: the image is inserted once imported.")
    if _param_bool(body, "WriteProtected") is False:
        raise RedfishError(400, "ActionParameterNotSupported", "WriteProtected", INSERT_ACTION,
                           resolution="The virtual CD is read-only; omit WriteProtected or send true.")
    method = body.get("TransferMethod")
    if method is not None and method not in ("Stream", "Upload"):
        raise RedfishError(400, "ActionParameterValueNotInList", str(method), "TransferMethod", INSERT_ACTION)
    proto = body.get("TransferProtocolType")
    if proto is not None:
        if proto not in ("HTTP", "HTTPS"):
            raise RedfishError(400, "ActionParameterNotSupported", "TransferProtocolType", INSERT_ACTION,
                               resolution="Only HTTP and HTTPS images are supported (CDI's http source).")
        if not image.lower().startswith(f"{proto.lower()}:"):
            raise RedfishError(400, "ActionParameterValueConflict", "TransferProtocolType", proto,
                               resolution=f"The Image URL does not use {proto}.")
    try:
        md.check_image(image)
    except Invalid as exc:
        raise RedfishError(400, "ActionParameterValueFormatError", image, "Image", INSERT_ACTION,
                           resolution=exc.message) from exc
    return image


async def _insert(request: Request, image: str) -> Response:
    svc = service(request)
    state = _state(request)
    if state.importing:
        raise RedfishError(409, "ResourceInUse",
                           resolution=f"{state.image} is being imported; wait, or eject it.")
    if state.inserted:
        raise RedfishError(409, "ActionParameterValueConflict", "Image", image,
                           resolution=f"{state.image} is inserted; eject it first (EjectMedia).")
    try:
        done = await svc.machine.insert_media(requester(request), image)
    except Refused as exc:
        raise RedfishError(409, "ResourceInUse", resolution=exc.message) from exc
    except MachineError as exc:
        raise from_machine_error(exc, parameter="Image", value=image, action=INSERT_ACTION,
                                 resource=("VirtualMedia", DEVICE_ID)) from exc
    try:
        final = await asyncio.wait_for(asyncio.shield(done), INSERT_WAIT)
    except TimeoutError:
        return _task(request, done)
    return _outcome(final)


def _outcome(final: md.MediaStatus) -> Response:
    if final.failed:
        raise RedfishError(400, "ActionParameterValueError", "Image", INSERT_ACTION,
                           resolution=f"Importing {final.image} failed: {final.message}")
    return Response(status_code=204)


def _tasks(request: Request) -> dict[str, asyncio.Future[md.MediaStatus]]:
    state = request.app.state
    if not hasattr(state, "media_tasks"):
        state.media_tasks = {}
    return state.media_tasks


def _task(request: Request, done: asyncio.Future[md.MediaStatus]) -> Response:
    tasks = _tasks(request)
    while len(tasks) >= MAX_TASKS:
        tasks.pop(next(iter(tasks)))
    task_id = uuid.uuid4().hex[:12]
    tasks[task_id] = done
    location = f"{TASK_MONITORS}/{task_id}"
    return Response(status_code=202, headers={"Location": location, "Retry-After": "2"})


async def task_monitor(request: Request) -> Response:
    """202 while the import runs; then the InsertMedia outcome (204, or 400 with CDI's message)."""
    done = _tasks(request).get(request.path_params["task_id"])
    if done is None:
        raise RedfishError(404, "ResourceMissingAtURI", request.url.path)
    if not done.done():
        return Response(status_code=202, headers={"Location": request.url.path, "Retry-After": "2"})
    if done.cancelled():
        raise RedfishError(409, "ResourceInUse", resolution="The medium was ejected before the import ended.")
    exc = done.exception()
    if isinstance(exc, MachineError):
        raise from_machine_error(exc, parameter="Image", action=INSERT_ACTION)
    return _outcome(done.result())


async def insert_media(request: Request) -> Response:
    _check_device(request)
    _state(request)
    return await _insert(request, _parse_insert(await read_object(request)))


async def eject_media(request: Request) -> Response:
    _check_device(request)
    _state(request)
    body = await read_object(request, allow_empty=True)  # sushy posts no body; others post {}
    for key in body:
        if not is_annotation(key):
            raise RedfishError(400, "ActionParameterUnknown", EJECT_ACTION, key)
    await _eject(request)
    return Response(status_code=204)


async def _eject(request: Request) -> None:
    try:
        await service(request).machine.eject_media(requester(request))
    except MachineError as exc:
        raise from_machine_error(exc, resource=("VirtualMedia", DEVICE_ID)) from exc


async def patch_media(request: Request) -> Response:
    """gofish's way: PATCH {Image, Inserted, WriteProtected, TransferMethod...}; Image null or Inserted
    false ejects."""
    _check_device(request)
    state = _state(request)
    body = await read_object(request)
    if not body:
        raise RedfishError(400, "EmptyJSON")
    readable = media_body(_base(request), state)
    for key in body:
        if is_annotation(key) or key in _INSERT_PARAMS:
            continue
        if key in _CREDENTIALS:
            raise RedfishError(400, "PropertyNotWritable", key,
                               resolution="Image server credentials are not supported.")
        raise RedfishError(400, "PropertyNotWritable" if key in readable else "PropertyUnknown", key)
    image = body.get("Image", state.image or None)
    if body.get("Inserted") is False or ("Image" in body and body["Image"] in (None, "")):
        await _eject(request)
        return Response(status_code=204)
    if not isinstance(image, str):
        raise RedfishError(400, "PropertyMissing", "Image") if image is None else RedfishError(
            400, "PropertyValueTypeError", json.dumps(image), "Image")
    if image == state.image and (state.inserted or state.importing):
        return Response(status_code=204)  # gofish re-sends what it read
    try:
        params = {k: v for k, v in body.items() if k in _INSERT_PARAMS and k != "Image"}
        _parse_insert({"Image": image, **params})
    except RedfishError as exc:
        if exc.messages[0]["MessageId"].endswith("ActionParameterValueFormatError"):
            raise RedfishError(400, "PropertyValueFormatError", image, "Image",
                               resolution=exc.messages[0].get("Resolution")) from exc
        raise
    return await _insert(request, image)

