"""Redfish push events in the demo's topology (the real controller with `--event-destinations 127.0.0.0/8`,
each kbmc pod a real process under its own Roles): a subscription made with sushy as Ironic makes it, to a
receiver on 127.0.0.1, gets each power transition once, its EventId the transition's id, also after the
kbmc was killed, the controller restarted and the kbmc's pod replaced (the subscription and its cursor are
in the BMC's Secret);
a destination outside the allow-list is refused with 400 naming --event-destinations.

How long after its Kubernetes Event each event arrives is measured and printed (no timed assertion:
bench/README.md holds the figures)."""

from __future__ import annotations

import base64
import datetime
import json
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sushy
import urllib3

sys.path.insert(0, str(Path(__file__).parents[1] / "machine"))

from history_topology import SYSTEM, TENANT, Topology, topology

from tests.event_receiver import Receiver, receiver
from vmbmc_devcluster.testing.waiting import wait_until

IRONIC = {"Protocol": "Redfish", "Context": "", "EventTypes": ["Alert"]}  # Ironic's create_subscription


@pytest.fixture(scope="module")
def topo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    with topology(tmp_path_factory.mktemp("events-e2e"), 160) as found:
        yield found


@pytest.fixture
def rx() -> Iterator[Receiver]:
    with receiver() as r:
        yield r


def connect(topo: Topology, bmc: str) -> sushy.Sushy:
    _, user, password, url = topo.credentials(bmc)
    warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
    return sushy.Sushy(url + "/redfish/v1", verify=False, auth=sushy.auth.BasicAuth(user, password))


def stored(topo: Topology, bmc: str) -> dict[str, Any]:
    """The subscriptions Secret's keys, decoded (read as an admin)."""
    name = f"{bmc}-event-subscriptions"
    secret = json.loads(topo.kubectl("get", "secret", name, "-n", SYSTEM, "-o", "json"))
    return {k: json.loads(base64.b64decode(v)) for k, v in (secret.get("data") or {}).items()}


def event_time(topo: Topology, bmc: str, transition: str) -> float:
    """When the controller recorded the transition: its BMC Event's microsecond eventTime."""
    (event,) = [e for e in topo.bmc_events(bmc) if e["metadata"]["name"] == f"{bmc}.{transition}"]
    return datetime.datetime.fromisoformat(event["eventTime"].replace("Z", "+00:00")).timestamp()


def delivered(topo: Topology, bmc: str, rx: Receiver, reason: str, count: int) -> tuple[str, float]:
    """The `count`-th transition of `reason`: its id once the receiver has its event, and how long after
    its Kubernetes Event the event arrived (printed)."""
    entry = topo.wait_entries(bmc, reason, count)[-1]
    got = wait_until(lambda: [r for r in rx.events() if entry["id"] in r.event_ids], timeout=30,
                     what=f"the {reason} event {entry['id']}")
    latency = got[0].at - event_time(topo, bmc, entry["id"])
    print(f"{reason} {entry['id']}: event delivered {latency * 1000:.0f} ms after its Kubernetes Event")
    return str(entry["id"]), latency


def test_sushy_subscription_gets_each_transition_once_across_restarts(topo: Topology, rx: Receiver) -> None:
    vm = topo.create_vm(61)
    bmc = f"{TENANT}-{vm}"
    conn = connect(topo, bmc)
    try:
        subscriptions = conn.get_event_service().subscriptions
        created = subscriptions.create({**IRONIC, "Destination": rx.url})
        assert (created.destination, created.context, created.protocol) == (rx.url, "", "Redfish")
        assert created.event_types == ["Alert"]
        # outside the allow-list: 400, naming the flag an operator would change
        with pytest.raises(sushy.exceptions.HTTPError) as refused:
            subscriptions.create({**IRONIC, "Destination": "https://192.168.1.50/Destination1"})
        assert refused.value.status_code == 400 and "--event-destinations" in str(refused.value)
        assert [m.identity for m in subscriptions.get_members()] == [created.identity]
    finally:
        conn._conn.close()
    (record,) = stored(topo, bmc).values()
    assert record["Destination"] == rx.url

    assert topo.ipmitool(bmc, "power", "on") == "Chassis Power Control: Up/On"
    on, _ = delivered(topo, bmc, rx, "PoweredOn", 1)
    wait_until(lambda: stored(topo, bmc)[created.identity]["Cursor"]["eventId"] == on, what="the cursor")

    topo.restart_kbmc(bmc)  # SIGKILL; the pod runner starts it again
    halted = '{"spec":{"runStrategy":"Halted"}}'
    topo.kubectl("patch", "vm", vm, "-n", TENANT, "--type", "merge", "-p", halted)  # kubectl stop
    off, _ = delivered(topo, bmc, rx, "PoweredOff", 1)
    wait_until(lambda: stored(topo, bmc)[created.identity]["Cursor"]["eventId"] == off, what="the cursor")

    topo.stop_controller()  # a controller restart keeps the Secret as the kbmc wrote it
    topo.start_controller()
    topo.replace_pod(bmc)  # the pod deleted: its Deployment's next one serves the BMC
    assert topo.ipmitool(bmc, "power", "on") == "Chassis Power Control: Up/On"
    again, _ = delivered(topo, bmc, rx, "PoweredOn", 2)
    assert rx.event_ids() == [on, off, again]  # each once: nothing sent twice by the new processes
    for got in rx.events():
        (event,) = got.body["Events"]
        assert event["EventType"] == "Alert" and got.body["Context"] == ""
        assert event["OriginOfCondition"] == {"@odata.id": f"/redfish/v1/Systems/{vm}"}
