"""Pure parts of the controller: selectors, manifests, status merging."""

from __future__ import annotations

import string

import pytest

from vmbmc import selectors
from vmbmc.auth import passwords
from vmbmc.controller import children as ch
from vmbmc.controller import conditions, kube
from vmbmc.controller.cli import configure
from vmbmc.destinations import AllowList, narrow


def test_label_selectors() -> None:
    m = selectors.parse("env=prod,tier!=db,zone in (a, b),!legacy,team")
    assert m({"env": "prod", "zone": "a", "team": "x"})
    assert not m({"env": "prod", "zone": "c", "team": "x"})
    assert not m({"env": "prod", "zone": "a", "team": "x", "legacy": ""})
    assert not m({"env": "prod", "zone": "a"})
    assert not m({"env": "prod", "zone": "a", "team": "x", "tier": "db"})
    assert selectors.parse("")({})
    assert selectors.parse("x notin (1)")({"x": "2"})
    with pytest.raises(ValueError):
        selectors.parse("a in b c")


def info(**kw: object) -> ch.BmcInfo:
    base: dict[str, object] = {
        "namespace": "ns", "name": "b", "uid": "u", "vm_namespace": "vmns", "vm_name": "vm",
    }  # fmt: skip
    return ch.BmcInfo(**{**base, **kw})  # type: ignore[arg-type]


def test_deployment_has_no_secret_literal_and_redfish_flags() -> None:
    dep = ch.deployment(info(redfish=True, insecure_http=True), "img:1", "sec")
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert "--redfish-http" in c["args"]
    assert all("valueFrom" in e and "secretKeyRef" not in e["valueFrom"] for e in c["env"])
    assert {p["containerPort"] for p in c["ports"]} == {10623, 8443, 8081}
    plain = ch.deployment(info(redfish=True), "img:1", "sec")
    assert "--redfish-http" not in plain["spec"]["template"]["spec"]["containers"][0]["args"]


def test_event_destinations_reach_the_kbmc_narrowed_by_the_spec() -> None:
    """The kbmc gets the controller's --event-destinations narrowed by spec.redfish.eventDestinations, and
    an empty Secret for its subscriptions, owned by the BMC."""
    body = {"metadata": {"namespace": "ns", "name": "b", "uid": "u"},
            "spec": {"virtualMachineRef": {"name": "vm"}, "redfish": {"eventDestinations": ["127.0.0.1"]}}}
    b = ch.BmcInfo.from_body(body)
    assert b.event_destinations == ("127.0.0.1",) and info().event_destinations is None
    narrowed, _ = narrow(AllowList.parse("127.0.0.0/8"), b.event_destinations)
    (c,) = ch.deployment(b, "img:1", "sec", str(narrowed))["spec"]["template"]["spec"]["containers"]
    assert c["args"][-2:] == ["--event-destinations", "127.0.0.1/32"]
    (c,) = ch.deployment(b, "img:1", "sec")["spec"]["template"]["spec"]["containers"]
    assert "--event-destinations" not in c["args"]  # empty: the kbmc's default, nowhere
    secret = ch.subscriptions_secret(b)
    assert (secret["metadata"]["name"], secret["data"]) == ("b-event-subscriptions", {})
    assert secret["metadata"]["ownerReferences"][0]["uid"] == "u"


def test_vm_namespace_rbac_has_no_cross_namespace_owner() -> None:
    assert "ownerReferences" not in ch.vm_role(info())["metadata"]
    assert ch.vm_role(info(vm_namespace="ns"))["metadata"]["ownerReferences"][0]["uid"] == "u"
    assert ch.vm_role_binding(info())["metadata"]["namespace"] == "vmns"


def test_generated_passwords_have_16_random_characters() -> None:
    """RAKP exposes a hash to anyone who reaches the port, so 16 random letters and digits (about 95
    bits), the most IPMI 1.5 (`ipmitool -I lan`) accepts."""
    passwords = [ch.generate_password() for _ in range(700)]
    assert all(len(p) == 16 for p in passwords)
    assert len(set(passwords)) == len(passwords)
    used = set("".join(passwords))
    assert used <= set(string.ascii_letters + string.digits)
    assert len(used) == 62  # every symbol turns up across 10,000 draws: no narrowed alphabet


def test_passwords_come_from_the_secrets_module(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(passwords.secrets, "choice", lambda seq: calls.append(seq) or seq[0])
    assert ch.generate_password() == "a" * 16 and len(calls) == 16


def test_contains_and_field_patch() -> None:
    assert kube.contains({"a": 1, "b": [{"x": 1, "y": 2}]}, {"b": [{"x": 1}]})
    assert not kube.contains({"b": [{"x": 1}, {"x": 2}]}, {"b": [{"x": 1}]})
    patch = kube._field_patch(
        {"endpoints": {"ipmi": "a", "redfish": "b"}}, {"endpoints": {"ipmi": "a", "redfish": None}}
    )
    assert patch == {"endpoints": {"ipmi": "a", "redfish": None}}
    assert (
        kube._field_patch({"endpoints": {"ipmi": "a"}}, {"endpoints": {"ipmi": "a", "redfish": None}}) == {}
    )
    assert kube._field_patch({}, {"endpoints": {"ipmi": None}}) == {}


def test_merge_conditions_keeps_transition_time() -> None:
    old = [
        {"type": "Ready", "status": "True", "reason": "r", "message": "m", "lastTransitionTime": "T0"},
        {"type": "PoweredOn", "status": "False", "reason": "x", "message": "y", "lastTransitionTime": "T1"},
    ]
    merged = conditions.merge(old, [conditions.condition("Ready", True, "r2", "m2")], "T9", 3)
    ready = next(c for c in merged if c["type"] == "Ready")
    assert (
        ready["lastTransitionTime"] == "T0" and ready["reason"] == "r2" and ready["observedGeneration"] == 3
    )
    assert any(c["type"] == "PoweredOn" and c["lastTransitionTime"] == "T1" for c in merged)
    flipped = conditions.merge(old, [conditions.condition("Ready", False, "r", "m")], "T9", 3)
    assert next(c for c in flipped if c["type"] == "Ready")["lastTransitionTime"] == "T9"
    assert [c["type"] for c in flipped] == ["Ready", "PoweredOn"]  # a list-map: order kept


def test_cli_flags() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    configure(parser)
    args = parser.parse_args(
        [
            *("--namespace=virtualmachinebmc-system", "--leader-elect", "--health-port=8080"),
            *("--kbmc-image=vmbmc:dev", "--no-auto-create", "--vm-namespace-selector", "a=b"),
            *("--redfish-default", "-v", "--kubeconfig", "k", "--event-destinations", "127.0.0.0/8,h:80"),
        ]
    )
    assert args.leader_elect and args.no_auto_create and args.redfish_default and args.verbose
    assert args.event_destinations == "127.0.0.0/8,h:80"
    assert args.vm_namespace_selector == "a=b" and args.kbmc_image == "vmbmc:dev"


def test_ready_is_a_promise() -> None:
    """`ready` only when the credentials Secret, the Service IP and the endpoints are stored and the kbmc
    pod of the current Deployment is ready; never for a refused BMC."""
    from types import SimpleNamespace

    from vmbmc.controller import reconcile

    state = SimpleNamespace(options=SimpleNamespace(namespace="virtualmachinebmc-system"))
    meta = {"name": "b", "namespace": "virtualmachinebmc-system", "uid": "u"}
    spec = {"virtualMachineRef": {"namespace": "t", "name": "vm"}}
    complete = {
        "credentialsSecret": "b-credentials",
        "serviceIP": "10.0.0.1",
        "endpoints": {"ipmi": "10.0.0.1:623"},
    }
    bmc = {"metadata": meta, "spec": spec, "status": complete}
    ready = kube.condition("Ready", True, "KbmcReady", "the kbmc pod is ready")
    assert reconcile.readiness(state, bmc, True) == (True, ready)
    assert reconcile.readiness(state, bmc, False)[1]["reason"] == "KbmcNotReady"
    for field in complete:
        partial = {**bmc, "status": {k: v for k, v in complete.items() if k != field}}
        ok, cond = reconcile.readiness(state, partial, True)
        assert not ok and cond["reason"] == "Reconciling" and field in cond["message"]
    tenant = {**bmc, "metadata": {**meta, "namespace": "tenant"}}
    ok, cond = reconcile.readiness(state, tenant, True)
    assert not ok and cond["reason"] == "Refused"


def test_deployment_ready_means_the_current_pod() -> None:
    from vmbmc.controller.reconcile import deployment_ready

    def deployment(generation: int, observed: int, updated: int, ready: int) -> dict[str, object]:
        status = {"observedGeneration": observed, "updatedReplicas": updated, "readyReplicas": ready}
        return {"metadata": {"generation": generation}, "status": status}

    assert deployment_ready(deployment(2, 2, 1, 1))
    assert not deployment_ready(deployment(3, 2, 1, 1))  # a new spec not seen yet: the old pod's readiness
    assert not deployment_ready(deployment(2, 2, 0, 1))
    assert not deployment_ready(deployment(2, 2, 1, 0))
    assert not deployment_ready(None)
