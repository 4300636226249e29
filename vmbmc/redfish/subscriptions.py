"""An event subscription (Redfish EventDestination) as vmbmc keeps it: what a client may ask for, how it is
stored (vmbmc.machine.subscriptions: one JSON object per id, with its delivery cursor), and which events
it wants. Pure: no I/O.

What is offered, and listed on the EventService:
- `Protocol: Redfish`, `SubscriptionType: RedfishEvent`, `EventFormatType: Event` (no metric reports, no
  server-sent events);
- `EventTypes` (deprecated by DMTF, still what Ironic sends): `Alert` only, and every event vmbmc sends is
  an `Alert`, so Ironic's `["Alert"]` gets every transition;
- `RegistryPrefixes` and `ResourceTypes` filters over what the events carry (`REGISTRY_PREFIXES`,
  `RESOURCE_TYPES`);
- `HttpHeaders`, sent with every POST, write-only (read back as an empty array, never logged);
- `VerifyCertificate` (default false, as DMTF defines it);
- `DeliveryRetryPolicy` `TerminateAfterRetries` (default) or `SuspendRetries`; the RetryForever policies are
  refused, since a receiver gone for good would be retried for ever.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from vmbmc.machine.history import LogEntry, LogView, parse_time
from vmbmc.redfish.body import is_annotation
from vmbmc.redfish.errors import RedfishError

EVENT_TYPES = ("Alert",)  # EventTypesForSubscription: every event vmbmc sends is an Alert
#: the EventType values DMTF defines (a test event may carry any of them)
ALL_EVENT_TYPES = ("StatusChange", "ResourceUpdated", "ResourceAdded", "ResourceRemoved", "Alert",
                   "MetricReport", "Other")  # fmt: skip
REGISTRY_PREFIXES = ("ResourceEvent", "LogService", "Vmbmc")  # the registries the events' MessageIds name
RESOURCE_TYPES = ("ComputerSystem", "LogService")  # what the events' OriginOfCondition is
POLICIES = ("TerminateAfterRetries", "SuspendRetries")
RETRY_FOREVER = ("RetryForever", "RetryForeverWithBackoff")
DEFAULT_POLICY = "TerminateAfterRetries"
MAX_CONTEXT = 256
MAX_HEADERS = 32
# Headers a client may not set: they frame the POST itself.
RESERVED_HEADERS = {"host", "content-length", "content-type", "transfer-encoding", "connection", "te",
                    "upgrade", "trailer", "keep-alive", "proxy-connection"}  # fmt: skip
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # an HTTP header name (RFC 9110 token)

_WRITABLE = ("Destination", "Protocol", "Context", "EventTypes", "EventFormatType", "SubscriptionType",
             "RegistryPrefixes", "ResourceTypes", "HttpHeaders", "VerifyCertificate",
             "DeliveryRetryPolicy")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Cursor:
    """The last event delivered (or, for a new subscription, the last recorded when it was made): its
    EventId and time, so that after any restart only later events are sent."""

    event_id: str = ""
    time: str = ""  # RFC 3339, whole seconds

    def to_dict(self) -> dict[str, str]:
        return {"eventId": self.event_id, "time": self.time}

    @classmethod
    def from_dict(cls, raw: Any) -> Cursor:
        raw = raw if isinstance(raw, Mapping) else {}
        return cls(str(raw.get("eventId") or ""), str(raw.get("time") or ""))


@dataclass(frozen=True, slots=True)
class Subscription:
    id: str
    destination: str
    context: str = ""
    event_types: tuple[str, ...] | None = None  # None: not given (not a filter)
    registry_prefixes: tuple[str, ...] = ()
    resource_types: tuple[str, ...] = ()
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)  # write-only: never shown
    verify_certificate: bool = False
    retry_policy: str = DEFAULT_POLICY
    enabled: bool = True  # False: suspended (Status.State Disabled) until ResumeSubscription
    cursor: Cursor = Cursor()
    created: str = ""

    def wants(self, message_id: str, resource_type: str, event_type: str = "Alert") -> bool:
        """Whether an event passes this subscription's filters (an empty filter passes everything)."""
        prefix = message_id.split(".", 1)[0]
        if self.registry_prefixes and prefix not in self.registry_prefixes:
            return False
        if self.resource_types and resource_type not in self.resource_types:
            return False
        return self.event_types is None or event_type in self.event_types

    def to_record(self) -> dict[str, Any]:
        """What the store keeps (headers included: the store is a Secret)."""
        return {
            "Destination": self.destination,
            "Context": self.context,
            "EventTypes": list(self.event_types) if self.event_types is not None else None,
            "RegistryPrefixes": list(self.registry_prefixes),
            "ResourceTypes": list(self.resource_types),
            "HttpHeaders": [{name: value} for name, value in self.headers],
            "VerifyCertificate": self.verify_certificate,
            "DeliveryRetryPolicy": self.retry_policy,
            "Enabled": self.enabled,
            "Cursor": self.cursor.to_dict(),
            "Created": self.created,
        }

    @classmethod
    def from_record(cls, sub_id: str, raw: Mapping[str, Any]) -> Subscription:
        """From the store; ValueError when it is not a subscription vmbmc wrote."""
        destination = raw.get("Destination")
        if not isinstance(destination, str) or not destination:
            raise ValueError("no Destination")
        types = raw.get("EventTypes")
        policy = str(raw.get("DeliveryRetryPolicy") or DEFAULT_POLICY)
        try:
            headers = _headers(raw.get("HttpHeaders") or [])
        except RedfishError:
            raise ValueError("unreadable HttpHeaders") from None
        return cls(
            id=sub_id,
            destination=destination,
            context=str(raw.get("Context") or ""),
            event_types=tuple(str(t) for t in types) if isinstance(types, list) else None,
            registry_prefixes=tuple(str(p) for p in raw.get("RegistryPrefixes") or ()),
            resource_types=tuple(str(t) for t in raw.get("ResourceTypes") or ()),
            headers=headers,
            verify_certificate=bool(raw.get("VerifyCertificate", False)),
            retry_policy=policy if policy in POLICIES else DEFAULT_POLICY,
            enabled=bool(raw.get("Enabled", True)),
            cursor=Cursor.from_dict(raw.get("Cursor")),
            created=str(raw.get("Created") or ""),
        )

    def with_cursor(self, cursor: Cursor) -> Subscription:
        return replace(self, cursor=cursor)


def _headers(raw: Any) -> tuple[tuple[str, str], ...]:
    """`HttpHeaders`: an array of objects, each naming one or more headers and their string values."""
    if not isinstance(raw, list) or not all(isinstance(item, Mapping) for item in raw):
        raise RedfishError(400, "PropertyValueTypeError", "<hidden>", "HttpHeaders")
    out: list[tuple[str, str]] = []
    for item in raw:
        for name, value in item.items():
            if not isinstance(value, str):
                raise RedfishError(400, "PropertyValueTypeError", "<hidden>", f"HttpHeaders/{name}")
            if not _TOKEN.match(str(name)) or str(name).lower() in RESERVED_HEADERS or any(
                c in value for c in "\r\n\0"
            ):
                # never echo a value back: it may be a credential
                raise RedfishError(400, "PropertyValueFormatError", "<hidden>", f"HttpHeaders/{name}")
            out.append((str(name), value))
    if len(out) > MAX_HEADERS:
        raise RedfishError(400, "PropertyValueFormatError", f"{len(out)} headers", "HttpHeaders",
                           resolution=f"Send at most {MAX_HEADERS} headers.")
    return tuple(out)


def _strings(body: Mapping[str, Any], key: str, allowed: tuple[str, ...]) -> tuple[str, ...] | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RedfishError(400, "PropertyValueTypeError", str(value), key)
    for item in value:
        if item not in allowed:
            raise RedfishError(400, "PropertyValueNotInList", item, key,
                               resolution=f"This service offers {', '.join(allowed)}.")
    return tuple(dict.fromkeys(value))


def _enum(body: Mapping[str, Any], key: str, allowed: tuple[str, ...], default: str) -> str:
    value = body.get(key, default)
    if not isinstance(value, str):
        raise RedfishError(400, "PropertyValueTypeError", str(value), key)
    if value not in allowed:
        raise RedfishError(400, "PropertyValueNotInList", value, key,
                           resolution=f"This service offers {', '.join(allowed)}.")
    return value


def destination_parts(destination: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an http(s) URL; ValueError otherwise."""
    parts = urlsplit(destination)
    if parts.scheme not in ("http", "https"):
        raise ValueError("the Destination must be an http:// or https:// URL")
    if not parts.hostname:
        raise ValueError("the Destination names no host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("the Destination may not carry credentials: send them in HttpHeaders")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("the Destination's port is not a number from 1 to 65535") from None
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


def parse_create(body: Mapping[str, Any], sub_id: str, now: datetime.datetime) -> Subscription:
    """A new subscription from a POST body, checked property by property (400 with the Base message that
    names what is wrong). The destination's allow-list check comes after (it resolves names)."""
    for key in body:
        if not is_annotation(key) and key not in _WRITABLE:
            raise RedfishError(400, "PropertyUnknown", key)
    for key in ("Destination", "Protocol"):
        if key not in body:
            raise RedfishError(400, "CreateFailedMissingReqProperties", key)
    destination = body["Destination"]
    if not isinstance(destination, str):
        raise RedfishError(400, "PropertyValueTypeError", str(destination), "Destination")
    try:
        destination_parts(destination)
    except ValueError as err:
        raise RedfishError(400, "PropertyValueFormatError", destination, "Destination",
                           resolution=str(err)) from None
    _enum(body, "Protocol", ("Redfish",), "Redfish")
    _enum(body, "SubscriptionType", ("RedfishEvent",), "RedfishEvent")
    _enum(body, "EventFormatType", ("Event",), "Event")
    policy = body.get("DeliveryRetryPolicy", DEFAULT_POLICY)
    if policy in RETRY_FOREVER:
        raise RedfishError(400, "PropertyValueNotInList", policy, "DeliveryRetryPolicy",
                           resolution="Use TerminateAfterRetries or SuspendRetries: a receiver gone for good "
                           "would be retried for ever.")
    policy = _enum(body, "DeliveryRetryPolicy", POLICIES, DEFAULT_POLICY)
    context = body.get("Context", "")
    if not isinstance(context, str):
        raise RedfishError(400, "PropertyValueTypeError", str(context), "Context")
    if len(context) > MAX_CONTEXT:
        raise RedfishError(400, "PropertyValueFormatError", context[:32] + "…", "Context",
                           resolution=f"Send at most {MAX_CONTEXT} characters.")
    verify = body.get("VerifyCertificate", False)
    if not isinstance(verify, bool):
        raise RedfishError(400, "PropertyValueTypeError", str(verify), "VerifyCertificate")
    return Subscription(
        id=sub_id,
        destination=destination,
        context=context,
        event_types=_strings(body, "EventTypes", EVENT_TYPES),
        registry_prefixes=_strings(body, "RegistryPrefixes", REGISTRY_PREFIXES) or (),
        resource_types=_strings(body, "ResourceTypes", RESOURCE_TYPES) or (),
        headers=_headers(body.get("HttpHeaders", [])),
        verify_certificate=verify,
        retry_policy=policy,
        created=rfc3339(now),
    )


_DURATION = re.compile(r"^-?P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$")


def parse_duration(text: str) -> datetime.timedelta:
    """An Edm.Duration (ISO 8601 `PnDTnHnMnS`, as Redfish uses it); ValueError otherwise."""
    match = _DURATION.match(text)
    if not match or text in ("P", "PT") or text.endswith("T") or text.startswith("-"):
        raise ValueError(f"{text!r} is not a duration such as PT1H or P1DT30M")
    days, hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return datetime.timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)


def pending(view: LogView, cursor: Cursor) -> list[LogEntry]:
    """The recorded entries after `cursor`, oldest first: those after its event when the log still shows
    it, else those recorded in its second or later (a receiver drops a repeated EventId)."""
    entries = list(view.entries)
    if cursor.event_id:
        for i, entry in enumerate(entries):
            if entry.id == cursor.event_id:
                return entries[i + 1 :]
    since = parse_time(cursor.time) if cursor.time else None
    if since is None:
        return entries
    return [e for e in entries if e.time >= since and e.id != cursor.event_id]


def cursor_at(entry: LogEntry) -> Cursor:
    return Cursor(entry.id, rfc3339(entry.time))


def rfc3339(at: datetime.datetime) -> str:
    return at.astimezone(datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
