"""Prometheus metrics of the kbmc: the IPMI front end's counters and the process's own figures, in the
Prometheus text format (version 0.0.4), as prometheus_client writes them.

A few counters of our own rather than prometheus_client: importing it (with its HTTP server, WSGI and
push-gateway code) costs ~4 MiB of RSS in every kbmc pod (docs/kbmc.md, "Memory"). The kbmc is one
asyncio loop: the front ends update the counters and the health server reads them on it, so no lock.
"""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path

_counters: list[Counter] = []
_STARTED = time.time()


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return repr(float(value))


class _Child:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class Counter:
    """A counter with optional labels; exposed as `<name>_total`."""

    def __init__(self, name: str, documentation: str, labelnames: tuple[str, ...] | list[str] = ()) -> None:
        self.name, self.documentation, self.labelnames = name, documentation, tuple(labelnames)
        self._children: dict[tuple[str, ...], _Child] = {}
        if not self.labelnames:
            self._children[()] = _Child()
        _counters.append(self)

    def labels(self, *values: str) -> _Child:
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}")
        key = tuple(str(v) for v in values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = _Child()
        return child

    def inc(self, amount: float = 1.0) -> None:
        if self.labelnames:
            raise ValueError(f"{self.name} has labels: use .labels(...).inc()")
        self._children[()].inc(amount)

    def render(self) -> list[str]:
        name = f"{self.name}_total"
        lines = [f"# HELP {name} {self.documentation}", f"# TYPE {name} counter"]
        samples = [(key, child.value) for key, child in self._children.items()]
        for key, value in samples:
            labels = ",".join(f'{n}="{_escape(v)}"' for n, v in zip(self.labelnames, key, strict=True))
            lines.append(f"{name}{{{labels}}} {_number(value)}" if labels else f"{name} {_number(value)}")
        return lines


def _process_metrics() -> list[str]:
    """process_* as prometheus_client's process collector names them (from /proc where it exists)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    gauges = [
        (
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            usage.ru_utime + usage.ru_stime,
        ),
        (
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            _STARTED,
        ),
    ]
    try:
        pages = Path("/proc/self/statm").read_text().split()
        page = os.sysconf("SC_PAGE_SIZE")
        gauges += [
            ("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", int(pages[0]) * page),
            (
                "process_resident_memory_bytes",
                "gauge",
                "Resident memory size in bytes.",
                int(pages[1]) * page,
            ),
            (
                "process_open_fds",
                "gauge",
                "Number of open file descriptors.",
                len(os.listdir("/proc/self/fd")),
            ),
        ]
    except OSError:
        pass  # not Linux: CPU and start time only
    lines = []
    for name, kind, doc, value in gauges:
        lines += [f"# HELP {name} {doc}", f"# TYPE {name} {kind}", f"{name} {_number(value)}"]
    return lines


def render() -> bytes:
    """Every metric, in the Prometheus text format."""
    lines = _process_metrics()
    for counter in _counters:
        lines += counter.render()
    return ("\n".join(lines) + "\n").encode()


REQUESTS = Counter(
    "vmbmc_ipmi_requests", "IPMI requests answered in a session", ["command", "completion_code"]
)
LOGIN_FAILURES = Counter("vmbmc_ipmi_login_failures", "Failed IPMI session set-ups")
SESSIONS_OPENED = Counter("vmbmc_ipmi_sessions_opened", "IPMI sessions opened", ["protocol"])
DROPPED = Counter(
    "vmbmc_ipmi_datagrams_dropped", "Datagrams dropped as malformed, unauthenticated or replayed"
)
