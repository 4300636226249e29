"""Leader election with a coordination.k8s.io/v1 Lease, the way client-go's leaderelection does it.

A replica takes the Lease when it is free (no holder), released, or not renewed for leaseDurationSeconds
as this replica observed it (its own clock from when it last saw the record change, so clock skew between
nodes does not matter). The holder renews every `renew_seconds`; it gives up leadership when it could not
renew before the lease would expire. Release on exit clears holderIdentity, so a waiting replica takes
over at once instead of after the lease duration.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from vmbmc.controller import kube
from vmbmc.k8s import clock
from vmbmc.k8s.client import ApiClient, ApiError

log = logging.getLogger(__name__)
LEASE_NAME = "vmbmc-controller"


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to `seconds`, less when `stop` is set; True if it was. Polls rather than
    `wait_for(stop.wait())`: that spawns a task kopf would count as hung at shutdown (5 s wait)."""
    deadline = time.monotonic() + seconds
    while not stop.is_set():
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        await asyncio.sleep(min(left, 0.1))
    return True


class LeaderElector:
    def __init__(
        self,
        api: ApiClient,
        namespace: str,
        identity: str,
        *,
        name: str = LEASE_NAME,
        lease_seconds: float = 15.0,
        renew_seconds: float = 5.0,
        retry_seconds: float = 2.0,
    ) -> None:
        self.api, self.namespace, self.identity, self.name = api, namespace, identity, name
        self.lease_seconds, self.renew_seconds, self.retry_seconds = (
            lease_seconds,
            renew_seconds,
            retry_seconds,
        )
        self.leading = False
        self._observed: tuple[Any, float] | None = None  # (spec we last saw, monotonic time we saw it)

    def _spec(self, transitions: int) -> dict[str, Any]:
        stamp = clock.micro()
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.lease_seconds)),
            "acquireTime": stamp,
            "renewTime": stamp,
            "leaseTransitions": transitions,
        }

    async def try_acquire_or_renew(self) -> bool:
        lease = await kube.get(self.api, "Lease", self.namespace, self.name)
        if lease is None:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(0),
            }
            # None (409): there meanwhile, or made by a lost-answer attempt of ours; the next round reads it
            return await self.api.create(kube.path("Lease", self.namespace), body) is not None
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        seen = (holder, spec.get("renewTime"), spec.get("leaseDurationSeconds"))
        if self._observed is None or self._observed[0] != seen:
            self._observed = (seen, time.monotonic())
        duration = float(spec.get("leaseDurationSeconds") or self.lease_seconds)
        expired = time.monotonic() - self._observed[1] > duration
        if holder and holder != self.identity and not expired:
            return False
        transitions = int(spec.get("leaseTransitions") or 0)
        new = self._spec(transitions if holder == self.identity else transitions + 1)
        if holder == self.identity and spec.get("acquireTime"):
            new["acquireTime"] = spec["acquireTime"]
        lease["spec"] = new  # full update guarded by the resourceVersion we read
        try:
            await self.api.request("PUT", kube.path("Lease", self.namespace, self.name), body=lease)
            return True
        except ApiError as err:
            if err.code in (409, 404):
                return False
            raise

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Wait until this replica leads (True) or `stop` is set (False)."""
        logged = False
        while not stop.is_set():
            try:
                if await self.try_acquire_or_renew():
                    self.leading = True
                    log.info("leading: took Lease %s/%s as %s", self.namespace, self.name, self.identity)
                    return True
            except ApiError as err:
                log.warning("leader election: %s", err)
            if not logged:
                log.info("waiting for Lease %s/%s (another replica leads)", self.namespace, self.name)
                logged = True
            await _sleep_unless(stop, self.retry_seconds)
        return False

    async def hold(self, stop: asyncio.Event, on_lost: Callable[[], Awaitable[None] | None]) -> None:
        """Renew until `stop`; call `on_lost` when the lease could not be renewed in time."""
        last_renew = time.monotonic()
        while not stop.is_set():
            if await _sleep_unless(stop, self.renew_seconds):
                return
            try:
                if await self.try_acquire_or_renew():
                    last_renew = time.monotonic()
                    continue
                reason = "another replica holds the Lease"
            except ApiError as err:
                reason = str(err)
                if time.monotonic() - last_renew < self.lease_seconds:
                    continue  # still ours for a while: try again
            self.leading = False
            log.error("lost leadership: %s", reason)
            result = on_lost()
            if result is not None:
                await result
            return

    async def release(self) -> None:
        if not self.leading:
            return
        self.leading = False
        try:
            lease = await kube.get(self.api, "Lease", self.namespace, self.name)
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            lease["spec"] = {**lease["spec"], "holderIdentity": None, "leaseDurationSeconds": 1}
            await self.api.request("PUT", kube.path("Lease", self.namespace, self.name), body=lease)
            log.info("released Lease %s/%s", self.namespace, self.name)
        except ApiError as err:
            log.warning("could not release the Lease: %s", err)
