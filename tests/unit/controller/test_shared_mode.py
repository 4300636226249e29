"""Shared kbmc mode's pure parts: the roster's port allocation and the per-BMC children in shared mode."""

from __future__ import annotations

import json

import pytest

from vmbmc.controller import children as ch
from vmbmc.controller import kube, shared
from vmbmc.controller.reconcile import endpoints
from vmbmc.roster import IPMI_BASE, REDFISH_BASE, RosterEntry, Wanted, parse_roster, plan


def _want(secret: str = "s", redfish: bool = False) -> Wanted:
    return Wanted(ipmi=True, redfish=redfish, insecure_http=False, secret=secret)


def _apply(current: dict[str, RosterEntry], patch: dict[str, str | None]) -> dict[str, RosterEntry]:
    data = {k: v.as_json() for k, v in current.items()}
    for k, v in patch.items():
        if v is None:
            data.pop(k, None)
        else:
            data[k] = v
    return parse_roster({"data": data})


def test_new_bmcs_get_the_lowest_free_slots_and_keep_them() -> None:
    roster = _apply({}, plan({}, {"a": _want("sa"), "b": _want("sb")}))
    assert (roster["a"].ipmi_port, roster["a"].redfish_port) == (IPMI_BASE, REDFISH_BASE)
    assert (roster["b"].ipmi_port, roster["b"].redfish_port) == (IPMI_BASE + 1, REDFISH_BASE + 1)
    # a removed and c added in one write: c does not take the port a's listener may still hold
    roster = _apply(roster, plan(roster, {"a": None, "c": _want("sc")}))
    assert set(roster) == {"b", "c"}
    assert roster["c"].ipmi_port == IPMI_BASE + 2 and roster["b"].ipmi_port == IPMI_BASE + 1
    # a later one takes the lowest free slot, a's
    roster = _apply(roster, plan(roster, {"d": _want("sd")}))
    assert roster["d"].ipmi_port == IPMI_BASE and roster["b"].ipmi_port == IPMI_BASE + 1


def test_a_changed_bmc_keeps_its_ports_and_an_unchanged_one_writes_nothing() -> None:
    roster = _apply({}, plan({}, {"a": _want("sa")}))
    assert plan(roster, {"a": _want("sa")}) == {}
    patch = plan(roster, {"a": _want("sa", redfish=True)})
    entry = json.loads(patch["a"] or "")
    assert entry["redfish"] is True and entry["ipmiPort"] == IPMI_BASE and entry["secret"] == "sa"
    assert plan(roster, {"gone": None}) == {}  # removing what is not listed changes nothing


def test_event_destinations_ride_in_the_roster() -> None:
    roster = _apply({}, plan({}, {"a": _want("sa"), "b": Wanted(True, True, False, "sb", "127.0.0.0/8")}))
    assert (roster["a"].event_destinations, roster["b"].event_destinations) == ("", "127.0.0.0/8")
    assert "eventDestinations" not in roster["a"].as_json()  # absent when empty, as before it existed
    changed = plan(roster, {"b": Wanted(True, True, False, "sb", "127.0.0.1/32")})
    assert json.loads(changed["b"] or "")["eventDestinations"] == "127.0.0.1/32"


def test_a_malformed_entry_is_skipped() -> None:
    good = RosterEntry(IPMI_BASE, REDFISH_BASE, True, False, False, "s").as_json()
    assert set(parse_roster({"data": {"ok": good, "bad": "{not json", "half": '{"ipmiPort": 1}'}})) == {"ok"}


def _info(**kw: object) -> ch.BmcInfo:
    base = dict(namespace="ns", name="b1", uid="u", vm_namespace="ns", vm_name="vm1", redfish=True)
    return ch.BmcInfo(**{**base, **kw})  # type: ignore[arg-type]


def test_shared_service_targets_the_bmcs_own_ports_on_the_shared_pod() -> None:
    svc = ch.service(_info(), (20007, 40007))
    assert [(p["port"], p["targetPort"], p["protocol"]) for p in svc["spec"]["ports"]] == [
        (623, 20007, "UDP"),
        (443, 40007, "TCP"),
    ]
    selector = svc["spec"]["selector"]
    assert selector["app.kubernetes.io/component"] == shared.COMPONENT
    # the dedicated key is null: a merge patch removes it when a BMC switches modes, a create drops it
    assert selector["virtualmachinebmc.kubevirt.io/bmc"] is None
    assert "virtualmachinebmc.kubevirt.io/bmc" not in kube._without_nulls(svc)["spec"]["selector"]
    dedicated = ch.service(_info())
    assert [p["targetPort"] for p in dedicated["spec"]["ports"]] == [ch.IPMI_PORT, ch.REDFISH_PORT]
    assert dedicated["spec"]["selector"]["app.kubernetes.io/component"] == "kbmc"


def test_shared_policy_admits_this_bmcs_ports_on_the_shared_pod() -> None:
    pol = ch.network_policy(_info(), (20007, 40007))
    assert pol["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == shared.COMPONENT
    ports = pol["spec"]["ingress"][0]["ports"]
    assert ports == [{"protocol": "UDP", "port": 20007}, {"protocol": "TCP", "port": 40007}]


def test_shared_rights_bind_the_shared_account_and_add_the_secret_by_name() -> None:
    role = ch.bmc_role(_info(), "b1-credentials")
    secret_rules = [r for r in role["rules"] if r["resources"] == ["secrets"]]
    subscriptions = {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["b1-event-subscriptions"],
                     "verbs": ["get", "update", "patch"]}  # in both modes: its event subscriptions
    assert secret_rules == [
        subscriptions,
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["b1-credentials"], "verbs": ["get"]},
    ]
    assert [r for r in ch.bmc_role(_info())["rules"] if r["resources"] == ["secrets"]] == [subscriptions]
    for binding in (ch.bmc_role_binding(_info(), shared.NAME), ch.vm_role_binding(_info(), shared.NAME)):
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": shared.NAME, "namespace": "ns"}]
    assert ch.bmc_role_binding(_info())["subjects"][0]["name"] == "b1-kbmc"


def test_shared_objects_name_no_bmc_and_read_only_their_roster() -> None:
    dep = shared.deployment("ns", "vmbmc:dev")
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][:3] == ["kbmc", "--shared", "ns"]
    assert [p["containerPort"] for p in container["ports"]] == [shared.HEALTH_PORT]
    assert dep["spec"]["selector"]["matchLabels"] == shared.pod_selector()
    assert dep["spec"]["template"]["spec"]["serviceAccountName"] == shared.NAME
    assert shared.role("ns")["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": [shared.NAME],
            "verbs": ["get", "list", "watch"],
        }
    ]


@pytest.mark.parametrize("redfish", [True, False])
def test_endpoints_record_the_bmcs_own_ports(redfish: bool) -> None:
    ends = endpoints(_info(redfish=redfish), "10.0.0.5", (20003, 40003))
    assert ends["ipmi"] == "10.0.0.5:623" and ends["ipmiTargetPort"] == 20003
    assert ends["redfishTargetPort"] == (40003 if redfish else None)
    dedicated = endpoints(_info(), "10.0.0.5")
    assert dedicated["ipmiTargetPort"] is None and dedicated["redfishTargetPort"] is None
