"""The shared kbmc's roster (`--kbmc-mode shared`): the ConfigMap `vmbmc-kbmc-shared` in each BMC
namespace, written by the controller (vmbmc.controller.shared) and watched by the shared kbmc
(vmbmc.kbmc.shared). One key per served BMC, the BMC's name; its value JSON:
`{"ipmiPort", "redfishPort", "ipmi", "redfish", "insecureHTTP", "secret", "eventDestinations"}` (the last:
the BMC's allow-list for Redfish events, as `--event-destinations` takes it; absent: empty).

Ports are allocated per BMC from a slot: IPMI on UDP `IPMI_BASE + slot`, Redfish on TCP
`REDFISH_BASE + slot`. A BMC keeps its slot as long as it is listed, so its Service never moves.
Kept apart from the controller so that the kbmc imports neither kopf nor the controller.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

NAME = "vmbmc-kbmc-shared"
COMPONENT = "kbmc-shared"
IPMI_BASE = 20000
REDFISH_BASE = 40000
MAX_SLOTS = 20000  # ports stay below 60000, clear of the usual ephemeral range's top


@dataclass(frozen=True, slots=True)
class RosterEntry:
    """One served BMC as the roster lists it."""

    ipmi_port: int
    redfish_port: int
    ipmi: bool
    redfish: bool
    insecure_http: bool
    secret: str
    event_destinations: str = ""

    def as_json(self) -> str:
        body = {
            "ipmiPort": self.ipmi_port,
            "redfishPort": self.redfish_port,
            "ipmi": self.ipmi,
            "redfish": self.redfish,
            "insecureHTTP": self.insecure_http,
            "secret": self.secret,
        }
        if self.event_destinations:
            body["eventDestinations"] = self.event_destinations
        return json.dumps(body, sort_keys=True)

    @classmethod
    def parse(cls, text: str) -> RosterEntry:
        d = json.loads(text)
        return cls(
            ipmi_port=int(d["ipmiPort"]),
            redfish_port=int(d["redfishPort"]),
            ipmi=bool(d.get("ipmi", True)),
            redfish=bool(d.get("redfish", False)),
            insecure_http=bool(d.get("insecureHTTP", False)),
            secret=str(d["secret"]),
            event_destinations=str(d.get("eventDestinations") or ""),
        )


@dataclass(frozen=True, slots=True)
class Wanted:
    """What the controller wants the roster to say of one BMC (the ports are the roster's to choose)."""

    ipmi: bool
    redfish: bool
    insecure_http: bool
    secret: str
    event_destinations: str = ""


def parse_roster(configmap: dict[str, Any] | None) -> dict[str, RosterEntry]:
    """The roster's entries; a malformed one (edited by hand) is skipped."""
    out: dict[str, RosterEntry] = {}
    for name, text in ((configmap or {}).get("data") or {}).items():
        try:
            out[name] = RosterEntry.parse(str(text))
        except (ValueError, KeyError, TypeError):
            log.warning("roster entry %s is malformed; ignored", name)
    return out


def _slot(entry: RosterEntry) -> int:
    return entry.ipmi_port - IPMI_BASE


def plan(current: dict[str, RosterEntry], wanted: dict[str, Wanted | None]) -> dict[str, str | None]:
    """The ConfigMap data patch turning `current` into what `wanted` says (None: remove); new BMCs get
    the lowest free slots (not one freed in the same write: its listener may not be closed yet). Pure,
    for the unit tests."""
    patch: dict[str, str | None] = {}
    taken = {_slot(e) for e in current.values()}
    free = (s for s in range(MAX_SLOTS) if s not in taken)
    for name, want in sorted(wanted.items()):
        old = current.get(name)
        if want is None:
            if old is not None:
                patch[name] = None
            continue
        if old is not None:
            entry = RosterEntry(old.ipmi_port, old.redfish_port, want.ipmi, want.redfish,
                                want.insecure_http, want.secret, want.event_destinations)  # fmt: skip
        else:
            slot = next(free, None)
            if slot is None:
                raise ValueError(f"namespace full: more than {MAX_SLOTS} BMCs in one shared kbmc")
            entry = RosterEntry(IPMI_BASE + slot, REDFISH_BASE + slot, want.ipmi, want.redfish,
                                want.insecure_http, want.secret, want.event_destinations)  # fmt: skip
        if old != entry:
            patch[name] = entry.as_json()
    return patch


def configmap_path(namespace: str, name: str | None = NAME) -> str:
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    return f"{base}/{name}" if name else base
