"""The kbmc's Prometheus metrics: what its IPMI and Redfish front ends and the failed-login hold count.

Defined here, below the front ends and vmbmc.auth, so each of them imports these and none imports
another. They live in prometheus_client's default registry, which also carries its `process_*` and
`python_*` collectors; the kbmc's health port serves that registry (the controller has a registry of
its own, vmbmc.controller.metrics).
"""

from __future__ import annotations

from prometheus_client import REGISTRY, Counter

__all__ = [
    "IPMI_DROPPED",
    "IPMI_LOGIN_FAILURES",
    "IPMI_REQUESTS",
    "IPMI_SESSIONS_OPENED",
    "LOGIN_CHECKS_HELD",
    "LOGIN_FAILURES",
    "LOGIN_FAILURES_DELAYED",
    "LOGIN_REFUSED_UNCHECKED",
    "REGISTRY",
]

IPMI_REQUESTS = Counter(
    "vmbmc_ipmi_requests", "IPMI requests answered in a session", ["command", "completion_code"]
)
IPMI_LOGIN_FAILURES = Counter("vmbmc_ipmi_login_failures", "Failed IPMI session set-ups")
IPMI_SESSIONS_OPENED = Counter("vmbmc_ipmi_sessions_opened", "IPMI sessions opened", ["protocol"])
IPMI_DROPPED = Counter(
    "vmbmc_ipmi_datagrams_dropped", "Datagrams dropped as malformed, unauthenticated or replayed"
)

LOGIN_FAILURES = Counter("vmbmc_login_failures", "Failed logins (wrong credentials presented)", ["protocol"])
LOGIN_FAILURES_DELAYED = Counter(
    "vmbmc_login_failures_delayed", "Failed logins answered late because their address was held", ["protocol"]
)
LOGIN_CHECKS_HELD = Counter(
    "vmbmc_login_checks_held",
    "Credential checks made for a held address, each in its turn (at most one per delay per address)",
    ["protocol"],
)
LOGIN_REFUSED_UNCHECKED = Counter(
    "vmbmc_login_refused_unchecked",
    "Logins from a held address refused without a credential check: its queue was full",
    ["protocol"],
)
