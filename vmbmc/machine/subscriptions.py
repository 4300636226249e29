"""Where a BMC keeps its event subscriptions, so that they outlive its process.

The Redfish front end owns what a subscription means (vmbmc.redfish.subscriptions); a back end only keeps
JSON objects by key, each written whole: one key per subscription id (with its delivery cursor) and the
EventService's own settings under `SETTINGS_KEY`. On KubeVirt that is the Secret
`<bmc>-event-subscriptions` (vmbmc.kubevirt.subscriptions); a back end with nothing durable to write to
(standalone mode, the test doubles) keeps them in this process's memory (`MemoryStore`).
"""

from __future__ import annotations

import abc
import copy
from typing import Any

SETTINGS_KEY = "EventService"  # not a subscription id (those are hex digits)


class SubscriptionStore(abc.ABC):
    #: whether what is written survives a restart of the process
    durable: bool = False

    @abc.abstractmethod
    async def load(self) -> dict[str, dict[str, Any]]:
        """Every key and its object, read afresh. Raises BackendUnavailable when they cannot be read."""

    @abc.abstractmethod
    async def put(self, key: str, value: dict[str, Any]) -> None:
        """Write one key whole. Raises BackendUnavailable when it could not be stored."""

    @abc.abstractmethod
    async def remove(self, key: str) -> None:
        """Remove one key (nothing when it is not there). Raises BackendUnavailable."""


class MemoryStore(SubscriptionStore):
    """Kept in this process only: gone with it."""

    def __init__(self) -> None:
        self._data: dict[str, dict[str, Any]] = {}

    async def load(self) -> dict[str, dict[str, Any]]:
        return copy.deepcopy(self._data)

    async def put(self, key: str, value: dict[str, Any]) -> None:
        self._data[key] = copy.deepcopy(value)

    async def remove(self, key: str) -> None:
        self._data.pop(key, None)
