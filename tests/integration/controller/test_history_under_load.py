"""A power transition is recorded while the controller is still working off a burst of new BMCs.

The controller's calls wait for a free slot of its API client in the order they were made
(vmbmc.k8s.http). Here the API server holds every kbmc Deployment create of a burst of BMCs, and
the first status write the power recorder makes for each of them (a new BMC's initial powerState), so
their reconciles and first observations stay stuck and keep the client's slots full, with more calls
waiting behind them. A VM started meanwhile still gets its PoweredOn recorded (both Events and the
history entry) while none of the burst has got past its Deployment, and exactly once: the same
transition seen again after the burst is released adds nothing.
"""

from __future__ import annotations

import copy
from typing import Any

from tests.integration.controller.conftest import SYSTEM, Api, until
from vmbmc.k8s.client import MAX_REQUESTS
from vmbmc.naming import LABEL_VM_NAMESPACE
from vmbmc_devcluster.demo.samples import sample_vm

QUIET, BURST = "quiet", "burst"
SUBJECT = "subject"
BMC = f"{QUIET}-{SUBJECT}"  # the auto-created BMC's name
# More reconciles than the client has slots: the first MAX_REQUESTS hang on their Deployment create,
# the rest (their creates, reads and writes) wait behind them.
BURST_SIZE = 2 * MAX_REQUESTS + 16
HELD_CREATES = rf"^/apis/apps/v1/namespaces/{SYSTEM}/deployments$"
HELD_STATUS = (
    rf"^/apis/virtualmachine\.kubevirt\.io/v1/namespaces/{SYSTEM}/virtualmachinebmcs/{BURST}-[^/]+/status$"
)
MARKER = "vmbmc.kubevirt.io/last-observed"


def powered_on(api: Api) -> list[dict[str, Any]]:
    """The subject BMC's history entries Off → On (PoweredOn)."""
    bmc = api.get("vmbmc", SYSTEM, BMC) or {}
    history = (bmc.get("status") or {}).get("powerHistory") or []
    return [h for h in history if (h["from"], h["to"]) == ("Off", "On")]


def events(api: Api, ns: str, name: str, reason: str) -> list[dict[str, Any]]:
    return [e for e in api.list("event", ns) if e["involvedObject"]["name"] == name and e["reason"] == reason]


def burst_selector() -> str:
    return f"{LABEL_VM_NAMESPACE}={BURST}"


def test_transition_is_recorded_while_a_burst_is_reconciled(emulator: Any, api: Api, controller: Any) -> None:
    api.vm(QUIET, SUBJECT)
    until(
        lambda: ((api.get("vmbmc", SYSTEM, BMC) or {}).get("status") or {}).get("ready"),
        what="the subject's BMC to be ready",
    )
    until(
        lambda: (
            ((api.get("vmbmc", SYSTEM, BMC) or {}).get("status") or {}).get("powerState") == "Off"
            and MARKER in ((api.get("vmbmc", SYSTEM, BMC) or {})["metadata"].get("annotations") or {})
        ),
        what="the controller observing the subject VM off (status and marker written)",
    )

    faults = emulator.emulator.faults
    held = [
        emulator.call(faults.add, "POST", HELD_CREATES, delay=300.0, hold=True),
        emulator.call(faults.add, "PATCH", HELD_STATUS, delay=300.0, hold=True),
    ]
    try:
        api.namespace(BURST)
        for i in range(BURST_SIZE):
            vm = copy.deepcopy(sample_vm(1, BURST))
            vm["metadata"]["name"] = f"vm-{i}"
            api.create(vm)

        def holding() -> int:
            return int(emulator.call(lambda: sum(rule.holding for rule in held)))

        # The client's slots are full: the API server holds as many of the burst's calls as it has slots.
        until(
            lambda: holding() >= MAX_REQUESTS,
            what=f"the API server holding {MAX_REQUESTS} calls of the burst",
        )

        assert emulator.call(emulator.kubevirt.virtctl, QUIET, SUBJECT, "start") == 202
        (entry,) = until(lambda: powered_on(api), what="PoweredOn in the subject's history")
        assert api.get("event", SYSTEM, f"{BMC}.{entry['id']}") is not None
        until(lambda: events(api, QUIET, SUBJECT, "PoweredOn"), what="the PoweredOn Event on the VM")

        # ... recorded while the burst was still being worked off: the API server still holds a full
        # client's worth of its calls, and none of it has a Deployment or is ready.
        assert holding() >= MAX_REQUESTS
        burst = api.list("vmbmc", SYSTEM, burst_selector())
        assert not api.list("deployment", SYSTEM, burst_selector())
        assert not [b["metadata"]["name"] for b in burst if (b.get("status") or {}).get("ready")]
    finally:
        for rule in held:
            rule.release()

    # The burst is worked off; every observation of the subject since then found the transition recorded.
    until(
        lambda: len(api.list("deployment", SYSTEM, burst_selector())) == BURST_SIZE,
        what="the burst's Deployments once the API server answers again",
    )
    assert len(powered_on(api)) == 1
    assert len(events(api, SYSTEM, BMC, "PoweredOn")) == 1
    assert len(events(api, QUIET, SUBJECT, "PoweredOn")) == 1
    assert ((api.get("vmbmc", SYSTEM, BMC) or {}).get("status") or {}).get("powerState") == "On"
