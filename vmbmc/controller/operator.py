"""Running a controller: health server, leader election, then kopf (clusterwide) until told to stop.

`run_controller(options, stop_flag=..., ready_flag=...)` runs it on the caller's loop (the CLI, the demo);
`ControllerThread` runs it on a thread and loop of its own (tests, and anything synchronous).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import logging
import signal
import threading
from typing import Any

import kopf

from vmbmc.controller.handlers import build_registry, configure_settings
from vmbmc.controller.image import kbmc_image
from vmbmc.controller.leader import LeaderElector
from vmbmc.controller.metrics import Metrics
from vmbmc.controller.options import ControllerOptions
from vmbmc.controller.recorder import PowerRecorder
from vmbmc.controller.state import State
from vmbmc.health import HealthServer
from vmbmc.k8s.client import ApiClient

log = logging.getLogger(__name__)

Flag = asyncio.Event | threading.Event | concurrent.futures.Future[Any] | asyncio.Future[Any]


async def _wait_flag(flag: Flag) -> None:
    if isinstance(flag, asyncio.Event):
        await flag.wait()
    elif isinstance(flag, threading.Event):
        while not flag.is_set():
            await asyncio.sleep(0.1)
    elif isinstance(flag, asyncio.Future):
        await asyncio.shield(flag)
    else:
        await asyncio.wrap_future(flag)


def _set_flag(flag: Flag | None) -> None:
    if flag is None:
        return
    if isinstance(flag, asyncio.Event | threading.Event):
        flag.set()
    elif not flag.done():
        flag.set_result(None)


class Controller:
    def __init__(self, options: ControllerOptions, *, handle_signals: bool = False) -> None:
        self.options = options
        self.handle_signals = handle_signals  # SIGINT/SIGTERM stop it (the CLI; main thread only)
        self.metrics = Metrics()
        self.health = HealthServer(self.metrics.registry, options.health_address, options.health_port)
        self.health_port: int | None = None

    async def run(self, *, stop_flag: Flag | None = None, ready_flag: Flag | None = None) -> None:
        opts = self.options
        stop = asyncio.Event()
        watcher = asyncio.ensure_future(_wait_flag(stop_flag)) if stop_flag is not None else None
        if watcher is not None:
            watcher.add_done_callback(lambda _: stop.set())
        if self.handle_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):  # while waiting for leadership, too
                asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        # a reconcile's call waits for a free request slot without timing out there (a burst queues
        # hundreds of them); the lease and the power recorder have lanes of their own
        api = await ApiClient.connect(opts.kubeconfig, wait_in_timeout=False)
        try:  # one image for every pod: the kbmc pods get the controller's own
            opts = dataclasses.replace(opts, kbmc_image=await kbmc_image(api, opts.kbmc_image))
        except BaseException:
            await api.close()
            raise
        self.health_port = await self.health.start()
        log.info("health, readiness and metrics on port %d", self.health_port)
        elector: LeaderElector | None = None
        holder: asyncio.Task[None] | None = None
        # The recorder gets a lane of its own: a burst of creates keeps hundreds of reconcile calls
        # waiting for the controller's client, and a power transition must not wait behind them. A new
        # BMC's first observation is part of the burst: it waits with the reconciles (`bulk`).
        recorder = PowerRecorder(api.lane(), opts.identity, bulk=api)
        # the lease is renewed on time however many reconcile calls wait for `api`
        lease_api = api.lane()
        try:
            if opts.leader_elect:
                elector = LeaderElector(
                    lease_api,
                    opts.namespace,
                    opts.identity,
                    lease_seconds=opts.lease_seconds,
                    renew_seconds=opts.renew_seconds,
                    retry_seconds=opts.retry_seconds,
                )
                self.health.ready_reason = "waiting for leadership"
                if not await elector.acquire(stop):
                    return
                self.metrics.leader.set(1)
                holder = asyncio.ensure_future(elector.hold(stop, stop.set))
            state = State(api=api, options=opts, metrics=self.metrics, recorder=recorder)
            settings = kopf.OperatorSettings()
            configure_settings(settings)
            kopf_ready, kopf_stop = asyncio.Event(), asyncio.Event()

            async def mark_ready() -> None:
                await kopf_ready.wait()
                if self.handle_signals and threading.current_thread() is threading.main_thread():
                    # kopf put its own SIGINT/SIGTERM handlers in place; ours stop in the order below.
                    loop = asyncio.get_running_loop()
                    for sig in (signal.SIGINT, signal.SIGTERM):
                        loop.add_signal_handler(sig, stop.set)
                self.health.ready = True
                _set_flag(ready_flag)

            async def stopper() -> None:
                await stop.wait()
                # The health server first: kopf waits 5 s for tasks spawned while it ran (the health
                # server's connection handlers for probes among them) before it returns.
                self.health.ready = False
                await self.health.stop()
                kopf_stop.set()

            helpers = [asyncio.ensure_future(mark_ready()), asyncio.ensure_future(stopper())]
            try:
                await kopf.operator(
                    registry=build_registry(state),
                    settings=settings,
                    clusterwide=True,
                    standalone=True,
                    stop_flag=kopf_stop,
                    ready_flag=kopf_ready,
                    memo=kopf.Memo(),
                )
            finally:
                for helper in helpers:
                    helper.cancel()
        finally:
            self.health.ready = False
            self.health.alive = False
            stop.set()
            for task in (holder, watcher):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
            if elector is not None:
                await elector.release()
                self.metrics.leader.set(0)
            close = getattr(recorder, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()
            await self.health.stop()
            await recorder.api.close()
            await lease_api.close()
            await api.close()


async def run_controller(
    options: ControllerOptions,
    *,
    stop_flag: Flag | None = None,
    ready_flag: Flag | None = None,
    handle_signals: bool = False,
) -> None:
    """Run one controller until `stop_flag` is set (or, with leader election, leadership is lost;
    with `handle_signals`, on SIGINT/SIGTERM)."""
    await Controller(options, handle_signals=handle_signals).run(stop_flag=stop_flag, ready_flag=ready_flag)


class ControllerThread:
    """A controller on its own thread and loop: `start()` returns once it runs (or leads, see `wait_ready`),
    `stop()` stops it and joins the thread."""

    def __init__(self, options: ControllerOptions) -> None:
        self.controller = Controller(options)
        self.ready = threading.Event()
        self.stopped = threading.Event()
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._main, name=f"vmbmc-controller-{options.identity}", daemon=True
        )

    @property
    def health_port(self) -> int | None:
        return self.controller.health_port

    def _main(self) -> None:
        try:
            asyncio.run(self.controller.run(stop_flag=self._stop, ready_flag=self.ready))
        except BaseException as exc:  # reported to the test through .error
            self.error = exc
            log.exception("controller thread failed")
        finally:
            self.stopped.set()

    def start(self, *, wait: bool = True, timeout: float = 30.0) -> ControllerThread:
        self._thread.start()
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        if not self.ready.wait(timeout):
            raise TimeoutError(f"the controller was not ready within {timeout} s (error: {self.error!r})")

    def stop(self, timeout: float = 15.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def __enter__(self) -> ControllerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
