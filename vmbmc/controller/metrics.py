"""Prometheus metrics of one controller (a registry of its own, so several can run in one process; its
health port serves it, vmbmc/health.py)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.reconciles = Counter(
            "vmbmc_controller_reconciles", "BMC reconciliations", ["result"], registry=self.registry
        )
        self.transitions = Counter(
            "vmbmc_controller_transitions",
            "power transitions recorded in status.powerHistory, as seen by this controller",
            registry=self.registry,
        )
        self.errors = Counter(
            "vmbmc_controller_errors", "handler errors", ["handler"], registry=self.registry
        )
        self.leader = Gauge(
            "vmbmc_controller_leader", "1 while this replica holds the Lease", registry=self.registry
        )
        self.bmcs = Gauge("vmbmc_controller_bmcs", "BMCs known to this controller", registry=self.registry)
