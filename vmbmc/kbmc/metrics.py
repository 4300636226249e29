"""Prometheus metrics of the IPMI front end."""

from __future__ import annotations

from prometheus_client import Counter

REQUESTS = Counter(
    "vmbmc_ipmi_requests", "IPMI requests answered in a session", ["command", "completion_code"]
)
LOGIN_FAILURES = Counter("vmbmc_ipmi_login_failures", "Failed IPMI session set-ups")
SESSIONS_OPENED = Counter("vmbmc_ipmi_sessions_opened", "IPMI sessions opened", ["protocol"])
DROPPED = Counter(
    "vmbmc_ipmi_datagrams_dropped", "Datagrams dropped as malformed, unauthenticated or replayed"
)
