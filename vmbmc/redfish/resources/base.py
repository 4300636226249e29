"""Building blocks shared by the resource modules."""

from __future__ import annotations

from typing import Any

from vmbmc.redfish.errors import RedfishJSON
from vmbmc.redfish.schemas import odata_type

_DMTF_JSON = "http://redfish.dmtf.org/schemas/v1"


def ref(path: str) -> dict[str, str]:
    return {"@odata.id": path}


def resource(schema: str, path: str, id_: str, name: str, **props: Any) -> dict[str, Any]:
    """A resource body with the four properties every resource needs, then `props`."""
    return {"@odata.id": path, "@odata.type": odata_type(schema), "Id": id_, "Name": name, **props}


def collection(schema: str, path: str, name: str, members: list[str]) -> dict[str, Any]:
    return {
        "@odata.id": path,
        "@odata.type": odata_type(schema),
        "Name": name,
        "Members@odata.count": len(members),
        "Members": [ref(m) for m in members],
    }


def status(state: str = "Enabled", health: str = "OK") -> dict[str, str]:
    return {"State": state, "Health": health}


def described_by(odata_type_value: str) -> str:
    """The `Link` header naming the DMTF JSON schema of a type (`rel=describedby`, DSP0266 §8.5)."""
    schema = odata_type_value.lstrip("#").rsplit(".", 1)[0]
    return f"<{_DMTF_JSON}/{schema}.json>; rel=describedby"


def ok(body: dict[str, Any], status_code: int = 200, headers: dict[str, str] | None = None) -> RedfishJSON:
    all_headers = {"Link": described_by(body["@odata.type"])} if "@odata.type" in body else {}
    all_headers.update(headers or {})
    return RedfishJSON(body, status_code=status_code, headers=all_headers)
