"""What every handler of one controller shares: the API client, options, metrics and the recorder."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Protocol

from vmbmc.controller.metrics import Metrics
from vmbmc.controller.options import ControllerOptions
from vmbmc.kubevirt.client import ApiClient


class Recorder(Protocol):
    """vmbmc.controller.recorder.PowerRecorder's interface (written elsewhere; see contracts §4)."""

    async def observe(
        self, bmc: dict[str, Any], vm: dict[str, Any] | None, vmi: dict[str, Any] | None
    ) -> None: ...

    def forget(self, bmc_namespace: str, bmc_name: str) -> None: ...


class NullRecorder:
    """Stands in while no recorder module is available: the controller works, without power history."""

    async def observe(
        self, bmc: dict[str, Any], vm: dict[str, Any] | None, vmi: dict[str, Any] | None
    ) -> None:
        return None

    def forget(self, bmc_namespace: str, bmc_name: str) -> None:
        return None


def make_recorder(api: ApiClient, instance: str) -> Recorder:
    try:
        from vmbmc.controller.recorder import PowerRecorder
    except ImportError:  # the recorder is another work package; run without it
        return NullRecorder()
    return PowerRecorder(api, instance)


@dataclass
class State:
    api: ApiClient
    options: ControllerOptions
    metrics: Metrics
    recorder: Recorder
    # powerHistory ids seen per BMC, to count transitions for the metrics
    history_ids: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    # one lock per BMC for `ready` (see reconcile.update_ready)
    ready_locks: dict[tuple[str, str], asyncio.Lock] = field(default_factory=dict)
