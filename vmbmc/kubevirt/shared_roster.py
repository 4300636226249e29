"""The Kubernetes side of a shared kbmc (shared mode): its namespace's roster ConfigMap, each served
BMC's credentials Secret and `status.serving`. The front end (`vmbmc.kbmc.shared`) sees only roster
entries, credentials and a "serving" flag, as every protocol module sees only `vmbmc.machine`."""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from typing import Any

from vmbmc.k8s import clock
from vmbmc.k8s.client import ApiClient, ApiError
from vmbmc.k8s.informer import Informer
from vmbmc.k8s.status import guarded_patch
from vmbmc.naming import bmc_path
from vmbmc.roster import NAME, RosterEntry, configmap_path, parse_roster

log = logging.getLogger("vmbmc.kbmc.shared")


class SharedRoster:
    def __init__(
        self, api: ApiClient, namespace: str, cached: Callable[[str], dict[str, Any] | None] | None = None
    ) -> None:
        self.api = api
        self.namespace = namespace
        # a served BMC as the hub's watch of it last saw it: `status.serving` is computed on it first
        self._cached = cached or (lambda _name: None)
        # by name: the only list/watch a `resourceNames` rule allows
        path = configmap_path(namespace, None)
        self._informer = Informer(api, path, field_selector=f"metadata.name={NAME}")

    def start(self, on_change: Callable[[], None]) -> None:
        self._informer.subscribe(NAME, lambda _old, _new: on_change())
        self._informer.start()

    async def stop(self) -> None:
        await self._informer.stop()

    def synced(self) -> bool:
        return self._informer.synced.is_set()

    def entries(self) -> dict[str, RosterEntry]:
        return parse_roster(self._informer.get(NAME))

    async def credentials(self, secret: str) -> tuple[str, str]:
        """(username, password) of a BMC's Secret; ValueError when it cannot be read or is incomplete."""
        try:
            obj = await self.api.request("GET", f"/api/v1/namespaces/{self.namespace}/secrets/{secret}")
        except ApiError as err:
            raise ValueError(f"Secret {self.namespace}/{secret}: {err}") from err
        data = (obj or {}).get("data") or {}
        user = base64.b64decode(data.get("username") or "").decode()
        password = base64.b64decode(data.get("password") or "").decode()
        if not user or not password:
            raise ValueError(f"Secret {self.namespace}/{secret} needs keys username and password")
        return user, password

    async def mark_serving(self, name: str, serving: bool) -> None:
        """`status.serving` of the BMC: the time it began being served here, or removed."""
        when = clock.rfc3339() if serving else None

        def make_patch(bmc: dict[str, Any]) -> dict[str, Any] | None:
            if when is None and "serving" not in (bmc.get("status") or {}):
                return None
            return {"status": {"serving": when}}

        try:
            # the watch's copy, when it asks for the write, saves a read; a stale one costs a 409 and the read
            current = self._cached(name)
            if current is not None and make_patch(current) is None:
                current = None  # nothing to write by the copy: let the stored BMC decide
            await guarded_patch(
                self.api, bmc_path(self.namespace, name), make_patch, subresource="status", current=current
            )
        except ApiError as err:
            log.warning("could not write status.serving", extra={"bmc": name, "error": str(err)})
