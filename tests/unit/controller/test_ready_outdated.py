"""When the watch handlers fold readiness (reconcile.ready_outdated): only when `update_ready` would change
the BMC version they hold; never while the pod's readiness does not matter (not reconciled to the end);
and a reconcile's fields and Ready are decided together (`update_ready`'s view of the status to be)."""

from __future__ import annotations

from typing import Any, cast

from vmbmc import naming as n
from vmbmc.controller.metrics import Metrics
from vmbmc.controller.options import ControllerOptions
from vmbmc.controller.reconcile import _with_status, readiness, ready_outdated
from vmbmc.controller.state import State

STATE = State(
    api=cast(Any, None),  # never called: the functions under test only compute
    options=ControllerOptions(kbmc_mode="shared"),
    metrics=Metrics(),
    recorder=cast(Any, None),
)


def _bmc(pod_ready: bool | None = None, serving: bool = False, reconciled: bool = True) -> dict[str, Any]:
    status: dict[str, Any] = {}
    if reconciled:
        status.update(
            observedGeneration=1,
            credentialsSecret="s",
            serviceIP="10.0.0.1",
            endpoints={"ipmi": "10.0.0.1:623"},
        )
    if serving:
        status["serving"] = "2026-01-01T00:00:00Z"
    bmc: dict[str, Any] = {
        "metadata": {"namespace": n.SYSTEM_NAMESPACE, "name": "b", "generation": 1},
        "spec": {"virtualMachineRef": {"namespace": "vms", "name": "vm"}},
        "status": status,
    }
    if pod_ready is not None:  # as update_ready last wrote it, the pod then ready as `pod_ready` says
        ok, cond = readiness(STATE, bmc, pod_ready, shared=True)
        status["ready"] = ok
        status["conditions"] = [{**cond, "observedGeneration": 1, "lastTransitionTime": "t"}]
    return bmc


def test_served_bmc_whose_ready_lags_is_folded_and_a_settled_one_is_not() -> None:
    lagging = _bmc(pod_ready=True, serving=False)  # written before serving: KbmcNotServing
    lagging["status"]["serving"] = "2026-01-01T00:00:00Z"
    assert ready_outdated(STATE, lagging, True)
    assert ready_outdated(STATE, lagging, None)  # the pod's readiness not known yet: either way may be
    settled = _bmc(pod_ready=True, serving=True)
    assert settled["status"]["ready"] is True
    assert not ready_outdated(STATE, settled, True)


def test_a_ready_bmc_is_folded_when_its_pod_is_known_unready() -> None:
    assert ready_outdated(STATE, _bmc(pod_ready=True, serving=True), False)
    assert not ready_outdated(STATE, _bmc(pod_ready=False, serving=True), False)


def test_a_bmc_not_reconciled_to_the_end_is_left_to_its_reconcile() -> None:
    assert not ready_outdated(STATE, _bmc(serving=True, reconciled=False), True)
    assert not ready_outdated(STATE, _bmc(serving=True, reconciled=False), None)


def test_readiness_sees_the_fields_written_with_it() -> None:
    bare = _bmc(serving=True, reconciled=False)
    fields = {
        "credentialsSecret": "s",
        "serviceIP": "10.0.0.1",
        "endpoints": {"ipmi": "10.0.0.1:623", "redfish": None},
    }
    view = _with_status(bare, fields, [], ())
    assert readiness(STATE, view, True, shared=True)[0] is True
    assert view["status"]["endpoints"] == {"ipmi": "10.0.0.1:623"}  # a null removes the key
    assert readiness(STATE, _with_status(view, {}, [], ("serving",)), True, shared=True)[0] is False
    assert "serviceIP" not in bare["status"]  # the BMC itself is left as it is
