"""What every handler of one controller shares: the API client, options, metrics and the recorder."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from vmbmc.controller.metrics import Metrics
from vmbmc.controller.options import ControllerOptions
from vmbmc.controller.recorder import PowerRecorder
from vmbmc.controller.shared import Roster
from vmbmc.k8s.client import ApiClient


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
    # the one writer of each BMC namespace's roster ConfigMap (and, in shared mode, of its shared kbmc)
    rosters: dict[str, Roster] = field(default_factory=dict)
    # auto-created BMCs not yet seen by the watch: VM (namespace, name) → (BMC name, monotonic time)
    created_bmcs: dict[tuple[str, str], tuple[str, float]] = field(default_factory=dict)
    # the PVC and DataVolume names each BMC's VM-namespace Role grants (reconcile.follow_vm_disks)
    disk_claims: dict[tuple[str, str], tuple[tuple[str, ...], tuple[str, ...]]] = field(default_factory=dict)
    # shared mode: each namespace's shared kbmc pod readiness, as its Deployment's last event said
    shared_pod_ready: dict[str, bool] = field(default_factory=dict)
    # --vm-namespace-selector: each namespace's labels as its last event showed them
    namespace_labels: dict[str, dict[str, str]] = field(default_factory=dict)
    # the leftovers janitor (vmbmc.controller.leftovers), from kopf's start-up to its clean-up
    janitor: list[asyncio.Task[None]] = field(default_factory=list)

    def roster(self, namespace: str) -> Roster:
        if namespace not in self.rosters:
            image = str(self.options.kbmc_image) if self.shared else None
            self.rosters[namespace] = Roster(self.api, namespace, image)
        return self.rosters[namespace]

    @property
    def shared(self) -> bool:
        return self.options.kbmc_mode == "shared"
