"""EventService, its Subscriptions (EventDestination: create, read, delete; suspend and resume) and the
SubmitTestEvent action. What is offered is in vmbmc.redfish.subscriptions; delivery in
vmbmc.redfish.eventservice; the destination check in vmbmc.redfish.egress.

A destination the allow-list does not admit is refused with 400 and a message naming
`--event-destinations`, before anything is stored. The subscriptions live in the BMC's store (its Secret);
while it cannot be read or written the collection answers 503 with Retry-After.
"""

from __future__ import annotations

import datetime
import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from vmbmc.machine.errors import BackendUnavailable
from vmbmc.redfish import egress, paths
from vmbmc.redfish import subscriptions as subs
from vmbmc.redfish.body import is_annotation, read_object
from vmbmc.redfish.errors import RedfishError, from_machine_error
from vmbmc.redfish.eventservice import EventService, Settings
from vmbmc.redfish.resources.base import collection, ok, ref, resource, status

log = logging.getLogger(__name__)

TEST_ACTION = "#EventService.SubmitTestEvent"
RESUME_ACTION = "#EventDestination.ResumeSubscription"
SUSPEND_ACTION = "#EventDestination.SuspendSubscription"
MAX_RETRY_ATTEMPTS = 20
MAX_RETRY_INTERVAL = 3600


def _events(request: Request) -> EventService:
    events: EventService = request.app.state.events
    return events


async def _loaded(request: Request) -> EventService:
    events = _events(request)
    try:
        await events.loaded()
    except BackendUnavailable as exc:
        raise from_machine_error(exc) from exc
    return events


def _subscription(request: Request, events: EventService) -> subs.Subscription:
    sub_id = request.path_params["subscription_id"]
    found = events.subscriptions.get(sub_id)
    if found is None:
        raise RedfishError(404, "ResourceNotFound", "EventDestination", sub_id)
    return found


def _path(sub_id: str) -> str:
    return f"{paths.SUBSCRIPTIONS}/{sub_id}"


# --- EventService -------------------------------------------------------------------------------------
def service_body(events: EventService) -> dict[str, Any]:
    return resource(
        "EventService", paths.EVENT_SERVICE, "EventService", "Event Service",
        Description="Pushes every recorded power transition of the VM (and a log clear) to subscribers, "
        "as the log entries say it",
        ServiceEnabled=True,
        Status=status(),
        DeliveryRetryAttempts=events.settings.attempts,
        DeliveryRetryIntervalSeconds=events.settings.interval,
        EventTypesForSubscription=list(subs.EVENT_TYPES),
        EventFormatTypes=["Event"],
        RegistryPrefixes=list(subs.REGISTRY_PREFIXES),
        ResourceTypes=list(subs.RESOURCE_TYPES),
        SubordinateResourcesSupported=False,
        IncludeOriginOfConditionSupported=False,
        Subscriptions=ref(paths.SUBSCRIPTIONS),
        Actions={TEST_ACTION: {"target": f"{paths.EVENT_SERVICE}/Actions/EventService.SubmitTestEvent"}},
    )


async def event_service(request: Request) -> Response:
    return ok(service_body(await _loaded(request)))


def _retry_setting(body: dict[str, Any], key: str, current: int, low: int, high: int) -> int:
    value = body.get(key, current)
    if not isinstance(value, int) or isinstance(value, bool):
        raise RedfishError(400, "PropertyValueTypeError", str(value), key)
    if not low <= value <= high:
        raise RedfishError(400, "PropertyValueNotInList", str(value), key,
                           resolution=f"Use a value from {low} to {high}.")
    return value


async def patch_event_service(request: Request) -> Response:
    events = await _loaded(request)
    body = await read_object(request)
    if not body:
        raise RedfishError(400, "EmptyJSON")
    readable = service_body(events)
    writable = ("DeliveryRetryAttempts", "DeliveryRetryIntervalSeconds")
    for key in body:
        if is_annotation(key) or key in writable:
            continue
        raise RedfishError(400, "PropertyNotWritable" if key in readable else "PropertyUnknown", key)
    settings = Settings(
        _retry_setting(body, writable[0], events.settings.attempts, 0, MAX_RETRY_ATTEMPTS),
        _retry_setting(body, writable[1], events.settings.interval, 1, MAX_RETRY_INTERVAL),
    )
    try:
        await events.set_settings(settings)
    except BackendUnavailable as exc:
        raise from_machine_error(exc) from exc
    return Response(status_code=204)


_TEST_PARAMETERS = {
    "EventType": str, "EventId": str, "EventTimestamp": str, "Severity": str, "MessageSeverity": str,
    "Message": str, "MessageId": str, "MessageArgs": list, "OriginOfCondition": str, "EventGroupId": int,
}  # fmt: skip


def parse_test_event(body: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """SubmitTestEvent's parameters (sushy sends all but EventGroupId and MessageSeverity) as one event
    record, and its EventType."""
    for key, value in body.items():
        if is_annotation(key):
            continue
        kind = _TEST_PARAMETERS.get(key)
        if kind is None:
            raise RedfishError(400, "ActionParameterUnknown", TEST_ACTION, key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise RedfishError(400, "ActionParameterValueTypeError", str(value), key, TEST_ACTION)
    if "MessageId" not in body:
        raise RedfishError(400, "ActionParameterMissing", TEST_ACTION, "MessageId")
    event_type = body.get("EventType")
    if event_type is not None and event_type not in subs.ALL_EVENT_TYPES:
        raise RedfishError(400, "ActionParameterValueNotInList", event_type, "EventType", TEST_ACTION)
    if "MessageArgs" in body and not all(isinstance(a, str) for a in body["MessageArgs"]):
        raise RedfishError(400, "ActionParameterValueTypeError", str(body["MessageArgs"]), "MessageArgs",
                           TEST_ACTION)
    if "EventTimestamp" in body:
        try:
            datetime.datetime.fromisoformat(body["EventTimestamp"].replace("Z", "+00:00"))
        except ValueError:
            raise RedfishError(400, "ActionParameterValueFormatError", body["EventTimestamp"],
                               "EventTimestamp", TEST_ACTION) from None
    record: dict[str, Any] = {"MemberId": "0"}
    for key in _TEST_PARAMETERS:
        if key == "OriginOfCondition" and key in body:
            record[key] = ref(body[key])  # a URI in the action, a reference in the event
        elif key in body:
            record[key] = body[key]
    return record, event_type


async def submit_test_event(request: Request) -> Response:
    events = await _loaded(request)
    record, event_type = parse_test_event(await read_object(request))
    queued = await events.submit_test(record, event_type)
    log.info("test event submitted", extra={"subscriptions": queued, "message_id": record["MessageId"]})
    return Response(status_code=204)


# --- Subscriptions --------------------------------------------------------------------------------------
def subscription_body(sub: subs.Subscription) -> dict[str, Any]:
    path = _path(sub.id)
    extra: dict[str, Any] = {} if sub.event_types is None else {"EventTypes": list(sub.event_types)}
    return resource(
        "EventDestination", path, sub.id, f"Event Subscription {sub.id}",
        Destination=sub.destination,
        Context=sub.context,
        Protocol="Redfish",
        SubscriptionType="RedfishEvent",
        EventFormatType="Event",
        **extra,
        RegistryPrefixes=list(sub.registry_prefixes),
        ResourceTypes=list(sub.resource_types),
        HttpHeaders=[],  # write-only: DMTF's preferred answer (its schema does not allow null)
        VerifyCertificate=sub.verify_certificate,
        DeliveryRetryPolicy=sub.retry_policy,
        Status=status("Enabled" if sub.enabled else "Disabled"),
        Actions={
            RESUME_ACTION: {"target": f"{path}/Actions/EventDestination.ResumeSubscription"},
            SUSPEND_ACTION: {"target": f"{path}/Actions/EventDestination.SuspendSubscription"},
        },
    )


async def subscriptions(request: Request) -> Response:
    events = await _loaded(request)
    members = [_path(s) for s in sorted(events.subscriptions)]
    return ok(collection("EventDestinationCollection", paths.SUBSCRIPTIONS, "Event Subscriptions", members))


async def subscribe(request: Request) -> Response:
    events = await _loaded(request)
    body = await read_object(request)
    now = datetime.datetime.now(datetime.UTC)
    try:
        sub = await events.create(lambda sub_id: subs.parse_create(body, sub_id, now))
    except egress.Refused as exc:
        raise RedfishError(400, "PropertyValueNotInList", body.get("Destination", ""), "Destination",
                           resolution=str(exc)) from exc
    except BackendUnavailable as exc:
        raise from_machine_error(exc) from exc
    return ok(subscription_body(sub), status_code=201, headers={"Location": _path(sub.id)})


async def subscription(request: Request) -> Response:
    return ok(subscription_body(_subscription(request, await _loaded(request))))


async def unsubscribe(request: Request) -> Response:
    events = await _loaded(request)
    sub = _subscription(request, events)
    try:
        await events.delete(sub.id)
    except BackendUnavailable as exc:
        raise from_machine_error(exc) from exc
    return Response(status_code=204)


async def resume_subscription(request: Request) -> Response:
    events = await _loaded(request)
    sub = _subscription(request, events)
    body = await read_object(request, allow_empty=True)
    buffered: datetime.timedelta | None = None
    for key, value in body.items():
        if is_annotation(key):
            continue
        if key != "DeliverBufferedEventDuration":
            raise RedfishError(400, "ActionParameterUnknown", RESUME_ACTION, key)
        try:
            buffered = subs.parse_duration(str(value))
        except ValueError as err:
            raise RedfishError(400, "ActionParameterValueFormatError", str(value), key, RESUME_ACTION,
                               resolution=str(err)) from None
    await _set_enabled(events, sub, True, buffered)
    return Response(status_code=204)


async def suspend_subscription(request: Request) -> Response:
    events = await _loaded(request)
    sub = _subscription(request, events)
    body = await read_object(request, allow_empty=True)
    for key in body:
        if not is_annotation(key):
            raise RedfishError(400, "ActionParameterUnknown", SUSPEND_ACTION, key)
    await _set_enabled(events, sub, False)
    return Response(status_code=204)


async def _set_enabled(
    events: EventService, sub: subs.Subscription, enabled: bool, buffered: datetime.timedelta | None = None
) -> None:
    try:
        await events.set_enabled(sub.id, enabled, buffered)
    except BackendUnavailable as exc:
        raise from_machine_error(exc) from exc
