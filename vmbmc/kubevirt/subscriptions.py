"""A BMC's event subscriptions in the Secret `<bmc>-event-subscriptions` (vmbmc.machine.subscriptions).

The controller creates the Secret empty, owned by the BMC, with the BMC's other children; the kbmc's Role
grants get/update/patch on it by name and nothing else, so the kbmc can neither create nor list Secrets.
One key per subscription id, its value the subscription's JSON (base64, as Secret data is); a Secret
because a subscription's `HttpHeaders` often carry a receiver's credentials. Each write is a merge patch
of one key, so writers of different keys never clobber each other and no read precedes a write.

The values are never logged: only keys and the API server's answers are.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from typing import Any

from vmbmc.k8s.client import MERGE_PATCH, ApiClient, ApiError
from vmbmc.machine.errors import BackendUnavailable
from vmbmc.machine.subscriptions import SubscriptionStore

log = logging.getLogger(__name__)


class SecretSubscriptions(SubscriptionStore):
    durable = True

    def __init__(self, api: ApiClient, namespace: str, name: str) -> None:
        self.api = api
        self.namespace, self.name = namespace, name
        self.path = f"/api/v1/namespaces/{namespace}/secrets/{name}"

    def _unavailable(self, err: ApiError, doing: str) -> BackendUnavailable:
        if err.code == 404:
            why = "does not exist (the controller creates it with the BMC's other children)"
        else:
            why = f"could not be {doing}: {err.message}"
        return BackendUnavailable(f"Secret {self.namespace}/{self.name}, where subscriptions are kept, {why}")

    async def load(self) -> dict[str, dict[str, Any]]:
        try:
            secret = await self.api.request("GET", self.path)
        except ApiError as err:
            if err.code == 404:  # not made yet: nothing to deliver; a write says so
                return {}
            raise self._unavailable(err, "read") from err
        out: dict[str, dict[str, Any]] = {}
        for key, raw in ((secret or {}).get("data") or {}).items():
            try:
                value = json.loads(base64.b64decode(str(raw), validate=True))
            except (binascii.Error, ValueError):
                value = None
            if isinstance(value, dict):
                out[str(key)] = value
            else:  # edited by hand: skipped, and said so without its content
                log.warning("unreadable subscription key ignored", extra={"secret": self.name, "key": key})
        return out

    async def _patch(self, data: dict[str, str | None], doing: str) -> None:
        try:
            await self.api.request("PATCH", self.path, body={"data": data}, content_type=MERGE_PATCH)
        except ApiError as err:
            raise self._unavailable(err, doing) from err

    async def put(self, key: str, value: dict[str, Any]) -> None:
        text = json.dumps(value, separators=(",", ":"), sort_keys=True)
        await self._patch({key: base64.b64encode(text.encode()).decode()}, "written")

    async def remove(self, key: str) -> None:
        await self._patch({key: None}, "written")
