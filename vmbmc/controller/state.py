"""What every handler of one controller shares: the API client, options, metrics and the recorder."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from vmbmc.controller.metrics import Metrics
from vmbmc.controller.options import ControllerOptions
from vmbmc.controller.recorder import PowerRecorder
from vmbmc.kubevirt.client import ApiClient


@dataclass
class State:
    api: ApiClient
    options: ControllerOptions
    metrics: Metrics
    recorder: PowerRecorder
    # powerHistory ids seen per BMC, to count transitions for the metrics
    history_ids: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    # one lock per BMC for `ready` (see reconcile.update_ready)
    ready_locks: dict[tuple[str, str], asyncio.Lock] = field(default_factory=dict)
