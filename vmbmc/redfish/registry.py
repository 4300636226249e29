"""The message registries vmbmc serves: DMTF's Base (quoted in every error body, `@Message.ExtendedInfo`),
DMTF's ResourceEvent and LogService (the log entries' messages) and vmbmc's own (log entry messages DMTF
has none for).

Each JSON holds the subset of a registry's messages vmbmc emits, with its owner's texts, so a client can
look a MessageId up either here or in the owner's published registry.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from vmbmc.redfish.schemas import odata_type

#: registry prefix -> the registry's Id (a file in registries/)
REGISTRIES = {
    "Base": "Base.1.16.0",
    "ResourceEvent": "ResourceEvent.1.4.3",
    "LogService": "LogService.1.1.0",
    "Vmbmc": "Vmbmc.1.0.0",
}
REGISTRY_ID = REGISTRIES["Base"]
_DIR = Path(__file__).with_name("registries")


@functools.cache
def registry(prefix: str) -> dict[str, Any]:
    return json.loads((_DIR / f"{REGISTRIES[prefix]}.json").read_text())


def base_registry() -> dict[str, Any]:
    return registry("Base")


def filled(prefix: str, message_id: str, *args: object) -> tuple[str, list[str], dict[str, Any]]:
    """(the full MessageId, its text with `args` filled in, the args as strings, the registry entry)."""
    entry = registry(prefix)["Messages"][message_id]
    str_args = [str(a) for a in args]
    if len(str_args) != entry["NumberOfArgs"]:
        raise ValueError(f"{message_id} takes {entry['NumberOfArgs']} arguments, got {len(str_args)}")
    text = entry["Message"]
    # Replace from the highest index down so "%1" never eats the start of "%10".
    for i in range(len(str_args), 0, -1):
        text = text.replace(f"%{i}", str_args[i - 1])
    return f"{REGISTRIES[prefix]}.{message_id}", text, str_args, entry


def message(message_id: str, *args: object, resolution: str | None = None) -> dict[str, Any]:
    """One `Message` object (Message schema) for the Base registry's `message_id`, arguments filled in."""
    full_id, text, str_args, entry = filled("Base", message_id, *args)
    return {
        "@odata.type": odata_type("Message"),
        "MessageId": full_id,
        "Message": text,
        "MessageArgs": str_args,
        "MessageSeverity": entry["MessageSeverity"],
        "Resolution": resolution or entry["Resolution"],
    }
