"""The power table (docs/state-machine.md): every action from every state, for both protocols."""

from __future__ import annotations

import pytest

from vmbmc.machine.power import REQUEST_REASONS, Decision, KubeVirtCall, Verdict, decide, verified
from vmbmc.machine.types import PowerAction as A
from vmbmc.machine.types import PowerState as S
from vmbmc.machine.types import Protocol as P

C, N, R, B = Verdict.CALL, Verdict.NOOP, Verdict.REFUSED, Verdict.BUSY
K = KubeVirtCall

# action → {state: (verdict, call)} for Redfish; IPMI differs only where noted in IPMI_DIFF.
TABLE: dict[A, dict[S, tuple[Verdict, KubeVirtCall | None]]] = {
    A.ON: {
        S.ON: (N, None),
        S.OFF: (C, K.START),
        S.PAUSED: (C, K.UNPAUSE),
        S.POWERING_ON: (N, None),
        S.POWERING_OFF: (B, None),
        S.UNKNOWN: (B, None),
    },
    A.OFF: {
        S.ON: (C, K.STOP_FORCE),
        S.OFF: (N, None),
        S.PAUSED: (C, K.STOP_FORCE),
        S.POWERING_ON: (B, None),
        S.POWERING_OFF: (N, None),
        S.UNKNOWN: (C, K.STOP_FORCE),
    },
    A.SHUTDOWN: {
        S.ON: (C, K.STOP_GRACEFUL),
        S.OFF: (N, None),
        S.PAUSED: (R, None),
        S.POWERING_ON: (B, None),
        S.POWERING_OFF: (N, None),
        S.UNKNOWN: (B, None),
    },
    A.RESET: {
        S.ON: (C, K.RESTART_FORCE),
        S.OFF: (C, K.START),
        S.PAUSED: (C, K.RESTART_FORCE),
        S.POWERING_ON: (B, None),
        S.POWERING_OFF: (B, None),
        S.UNKNOWN: (B, None),
    },
    A.CYCLE: {
        S.ON: (C, K.RESTART_FORCE),
        S.OFF: (C, K.START),
        S.PAUSED: (C, K.RESTART_FORCE),
        S.POWERING_ON: (B, None),
        S.POWERING_OFF: (B, None),
        S.UNKNOWN: (B, None),
    },
    A.GRACEFUL_RESTART: {
        S.ON: (C, K.RESTART_GRACEFUL),
        S.OFF: (C, K.START),
        S.PAUSED: (R, None),
        S.POWERING_ON: (B, None),
        S.POWERING_OFF: (B, None),
        S.UNKNOWN: (B, None),
    },
    A.PAUSE: {
        S.ON: (C, K.PAUSE),
        S.OFF: (R, None),
        S.PAUSED: (N, None),
        S.POWERING_ON: (B, None),
        S.POWERING_OFF: (B, None),
        S.UNKNOWN: (B, None),
    },
    A.RESUME: {
        S.ON: (N, None),
        S.OFF: (R, None),
        S.PAUSED: (C, K.UNPAUSE),
        S.POWERING_ON: (B, None),
        S.POWERING_OFF: (B, None),
        S.UNKNOWN: (B, None),
    },
}
IPMI_DIFF = {(A.RESET, S.OFF): (R, None), (A.CYCLE, S.OFF): (R, None)}

CASES = [
    (proto, action, state, IPMI_DIFF.get((action, state), want) if proto is P.IPMI else want)
    for proto in P
    for action, row in TABLE.items()
    for state, want in row.items()
]


@pytest.mark.parametrize(
    ("proto", "action", "state", "want"), CASES, ids=[f"{p}-{a}-{s}" for p, a, s, _ in CASES]
)
def test_table(proto: P, action: A, state: S, want: tuple[Verdict, KubeVirtCall | None]) -> None:
    d = decide(action, state, proto)
    assert (d.verdict, d.call) == want
    if d.verdict is not Verdict.CALL:
        assert d.why  # every answer that is not a call says why, for the client


def test_every_state_covered() -> None:
    for row in TABLE.values():
        assert set(row) == set(S)


@pytest.mark.parametrize("state", list(S))
@pytest.mark.parametrize("proto", list(P))
def test_nmi_is_not_supported(proto: P, state: S) -> None:
    assert decide(A.NMI, state, proto).verdict is Verdict.NOT_SUPPORTED


@pytest.mark.parametrize("action", [A.RESET, A.CYCLE, A.GRACEFUL_RESTART])
@pytest.mark.parametrize("state", [S.POWERING_OFF, S.POWERING_ON, S.ON])
def test_restart_under_way_is_carried_out(action: A, state: S) -> None:
    assert decide(action, state, P.IPMI, restarting=True) == Decision(
        Verdict.NOOP, why="a restart is already under way"
    )


def test_every_action_has_a_reason() -> None:
    assert set(REQUEST_REASONS) == set(A)
    assert REQUEST_REASONS[A.CYCLE] == "PowerCycleRequested"


@pytest.mark.parametrize(
    ("call", "state", "pending", "ok"),
    [
        (K.START, S.ON, "", True),
        (K.START, S.POWERING_ON, "", True),
        (K.START, S.POWERING_ON, "Stop", False),
        (K.START, S.POWERING_OFF, "", False),
        (K.STOP_FORCE, S.OFF, "", True),
        (K.STOP_GRACEFUL, S.POWERING_OFF, "", True),
        (K.STOP_FORCE, S.POWERING_OFF, "Start", False),
        (K.STOP_FORCE, S.ON, "", False),
        (K.PAUSE, S.PAUSED, "", True),
        (K.UNPAUSE, S.ON, "", True),
        (K.UNPAUSE, S.PAUSED, "", False),
        (K.RESTART_FORCE, S.ON, "", False),
    ],
)
def test_try_then_verify(call: KubeVirtCall, state: S, pending: str, ok: bool) -> None:
    assert verified(call, state, pending) is ok
