"""The Base message registry vmbmc serves and quotes in every error body (`@Message.ExtendedInfo`).

The JSON holds the subset of DMTF's Base registry (DSP8011) messages vmbmc emits, with DMTF's texts,
so a client can look a MessageId up either here or in DMTF's published registry.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from vmbmc.redfish.schemas import odata_type

REGISTRY_ID = "Base.1.16.0"
_FILE = Path(__file__).with_name("registries") / f"{REGISTRY_ID}.json"


@functools.cache
def base_registry() -> dict[str, Any]:
    return json.loads(_FILE.read_text())


def message(message_id: str, *args: object, resolution: str | None = None) -> dict[str, Any]:
    """One `Message` object (Message schema) for `message_id` with its arguments filled in."""
    entry = base_registry()["Messages"][message_id]
    str_args = [str(a) for a in args]
    if len(str_args) != entry["NumberOfArgs"]:
        raise ValueError(f"{message_id} takes {entry['NumberOfArgs']} arguments, got {len(str_args)}")
    text = entry["Message"]
    # Replace from the highest index down so "%1" never eats the start of "%10".
    for i in range(len(str_args), 0, -1):
        text = text.replace(f"%{i}", str_args[i - 1])
    body: dict[str, Any] = {
        "@odata.type": odata_type("Message"),
        "MessageId": f"{REGISTRY_ID}.{message_id}",
        "Message": text,
        "MessageArgs": str_args,
        "MessageSeverity": entry["MessageSeverity"],
        "Resolution": resolution or entry["Resolution"],
    }
    return body
