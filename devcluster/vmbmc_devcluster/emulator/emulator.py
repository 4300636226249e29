"""The in-memory cluster: registry + store + the controllers that make it behave like a cluster."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from vmbmc_devcluster.emulator.builtin import install_builtin_defaults, register_builtins
from vmbmc_devcluster.emulator.registry import Registry
from vmbmc_devcluster.emulator.store import Store

log = logging.getLogger("vmbmc.emulator")

DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


class Controller(Protocol):
    async def run(self, emulator: Emulator) -> None: ...


@dataclass
class FaultRule:
    """Answer matching requests with `status` (a Status body) and/or add `delay` seconds."""

    method: str  # "*" for any
    path: str  # a regular expression matched against the URL path
    status: int | None = None
    delay: float = 0.0
    count: int | None = None  # None: until removed
    message: str = "injected fault"
    hold: bool = False  # `delay` is the longest wait: `release()` ends it sooner (a hung API server)
    released: bool = field(default=False, init=False)
    holding: int = field(default=0, init=False)  # requests held right now (tests wait for a stall)
    _pattern: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._pattern = re.compile(self.path)

    def release(self) -> None:
        """End the hold: held requests go on as if the server had come back (thread-safe: a flag)."""
        self.released = True

    async def wait(self) -> None:
        """The delay; a held request polls its flag (set from any thread) until released or `delay`."""
        if not self.hold:
            await asyncio.sleep(self.delay)
            return
        loop = asyncio.get_running_loop()
        end = loop.time() + self.delay
        self.holding += 1
        try:
            while not self.released and loop.time() < end:
                await asyncio.sleep(min(0.05, max(0.0, end - loop.time())))
        finally:
            self.holding -= 1

    def matches(self, method: str, path: str) -> bool:
        return (self.method in ("*", method)) and bool(self._pattern.search(path))


class FaultInjector:
    def __init__(self) -> None:
        self.rules: list[FaultRule] = []

    def add(
        self,
        method: str,
        path: str,
        *,
        status: int | None = None,
        delay: float = 0.0,
        count: int | None = None,
        message: str = "injected fault",
        hold: bool = False,
    ) -> FaultRule:
        rule = FaultRule(method.upper() if method != "*" else "*", path, status, delay, count, message, hold)
        self.rules.append(rule)
        return rule

    def clear(self) -> None:
        self.rules.clear()

    def take(self, method: str, path: str) -> FaultRule | None:
        for rule in self.rules:
            if rule.matches(method, path):
                if rule.count is not None:
                    rule.count -= 1
                    if rule.count <= 0:
                        self.rules.remove(rule)
                return rule
        return None


class Emulator:
    def __init__(self, *, authorization: str | None = None) -> None:
        """`authorization`: "RBAC" (the default) or "AlwaysAllow" (see vmbmc_devcluster.emulator.access)."""
        self.registry = Registry()
        register_builtins(self.registry)
        self.store = Store(self.registry)
        install_builtin_defaults(self.store)
        self.faults = FaultInjector()
        # create-only resources answered by code (the review APIs), keyed by storage key
        self.create_handlers: dict[tuple[str, str], Callable[[Emulator, str, dict], dict]] = {}
        self.loop: asyncio.AbstractEventLoop = asyncio.get_event_loop_policy().get_event_loop()
        self._controllers: list[Controller] = []
        self._tasks: list[asyncio.Task[Any]] = []
        self.started = False
        from vmbmc_devcluster.emulator.crds import install_crd_support

        install_crd_support(self)
        ns_rt = self.registry.get("", "v1", "namespaces")
        assert ns_rt is not None
        for ns in DEFAULT_NAMESPACES:
            self.store.create(
                ns_rt,
                {
                    "metadata": {"name": ns},
                    "spec": {"finalizers": ["kubernetes"]},
                    "status": {"phase": "Active"},
                },
            )
        from vmbmc_devcluster.emulator.access import install_security

        self.security = install_security(self, authorization)
        from vmbmc_devcluster.emulator.podsecurity import install_pod_security

        # kube-apiserver's built-in PodSecurity admission plug-in (namespace labels pick the level)
        self.pod_security = install_pod_security(self)

    def add_controller(self, controller: Controller) -> None:
        self._controllers.append(controller)
        if self.started:
            self._tasks.append(self.loop.create_task(self._supervise(controller)))

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.started = True
        self._tasks.append(self.loop.create_task(self._garbage_collector()))
        for c in self._controllers:
            self._tasks.append(self.loop.create_task(self._supervise(c)))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self.store.close_subscriptions()
        self.started = False

    async def _supervise(self, controller: Controller) -> None:
        name = type(controller).__name__
        while True:
            try:
                await controller.run(self)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("emulator controller crashed; restarting", extra={"controller": name})
                await asyncio.sleep(0.2)

    async def _garbage_collector(self) -> None:
        while True:
            await asyncio.sleep(0.2)
            if self.store.gc_dirty:
                try:
                    self.store.collect_garbage()
                except Exception:
                    log.exception("garbage collection failed")
