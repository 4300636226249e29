"""The LogService `SEL` of the System: the power history's entries, their messages, and ClearLog."""

from __future__ import annotations

from typing import Any

import httpx

from tests.history_entries import HISTORY

SYSTEM = "/redfish/v1/Systems/vm1"
LOG = f"{SYSTEM}/LogServices/SEL"
ENTRIES = f"{LOG}/Entries"
CLEAR = f"{LOG}/Actions/LogService.ClearLog"



async def test_the_system_links_its_one_log(client: httpx.AsyncClient) -> None:
    system = (await client.get(SYSTEM)).json()
    services = (await client.get(system["LogServices"]["@odata.id"])).json()
    assert [m["@odata.id"] for m in services["Members"]] == [LOG]
    sel = (await client.get(LOG)).json()
    assert sel["LogEntryType"] == "Event" and sel["OverWritePolicy"] == "WrapsWhenFull"
    assert sel["MaxNumberOfRecords"] == 21  # the history's 20 transitions and a clear
    assert sel["Actions"]["#LogService.ClearLog"]["target"] == CLEAR
    assert (await client.get(sel["Entries"]["@odata.id"])).json()["Members"] == []  # no history yet
    assert (await client.get(f"{SYSTEM}/LogServices/Other")).status_code == 404


async def test_entries_carry_each_transition_and_its_cause(client: httpx.AsyncClient, machine) -> None:
    machine.power_history = HISTORY
    entries = (await client.get(ENTRIES)).json()
    assert entries["Members@odata.count"] == 4
    on, failed, started, restarted = entries["Members"]
    assert [e["Id"] for e in entries["Members"]] == [h["id"] for h in HISTORY]  # the transitions' ids
    assert on == (await client.get(f"{ENTRIES}/3f2a000000000001")).json()
    assert on["EntryType"] == "Event" and on["Severity"] == "OK" and on["EventId"] == on["Id"]
    assert on["Created"] == "2025-06-02T10:00:00+00:00"
    assert on["MessageId"] == "ResourceEvent.1.4.3.ResourcePoweredOn" and on["MessageArgs"] == ["vm1"]
    cause = "by IPMI user admin from 10.0.0.7 (request aa11)"
    assert on["Message"] == f"The resource 'vm1' has powered on: {cause}."
    assert on["Links"]["OriginOfCondition"]["@odata.id"] == SYSTEM
    assert failed["Severity"] == "Warning"  # as its Event: a VMI that failed
    assert failed["MessageId"].endswith(".ResourcePoweredOff")
    assert failed["Message"].endswith(": outside the BMC: VMI failed.")
    assert started["Message"].endswith("outside the BMC: started through the KubeVirt API.")
    assert restarted["MessageId"] == "Vmbmc.1.0.0.ResourceRestarted"
    assert "by Redfish user admin from 10.0.0.8 (request bb22)" in restarted["Message"]
    assert (await client.get(f"{ENTRIES}/ffff000000000000")).status_code == 404


async def test_every_message_id_is_in_a_served_registry(client: httpx.AsyncClient, machine) -> None:
    machine.power_history = HISTORY
    registries = (await client.get("/redfish/v1/Registries")).json()
    served: dict[str, dict[str, Any]] = {}
    for member in registries["Members"]:
        file = (await client.get(member["@odata.id"])).json()
        document = (await client.get(file["Location"][0]["Uri"])).json()
        served[document["Id"]] = document["Messages"]
    assert {"Base.1.16.0", "ResourceEvent.1.4.3", "LogService.1.1.0", "Vmbmc.1.0.0"} <= set(served)
    await client.post(CLEAR, json={})
    machine.log_cleared["time"] = "2025-06-02T09:00:00Z"  # before the history: every entry shows
    for entry in (await client.get(ENTRIES)).json()["Members"]:
        registry_id, key = entry["MessageId"].rsplit(".", 1)
        text = served[registry_id][key]["Message"]
        for i, arg in enumerate(entry["MessageArgs"], start=1):
            text = text.replace(f"%{i}", arg)
        assert entry["Message"].startswith(text[:-1]), entry  # the registry's text, then the cause


async def test_clear_log_hides_earlier_entries_and_is_recorded(client: httpx.AsyncClient, machine) -> None:
    machine.power_history = HISTORY
    r = await client.post(CLEAR, json={})
    assert r.status_code == 204, r.text
    (cleared,) = (await client.get(ENTRIES)).json()["Members"]
    assert cleared["MessageId"] == "LogService.1.1.0.LogCleared" and cleared["MessageArgs"] == ["SEL"]
    request_id = machine.log_cleared["requestId"]
    assert cleared["Id"] == request_id
    cause = f"by Redfish user admin from 127.0.0.1 (request {request_id})"
    assert cleared["Message"] == f"Log 'SEL' was cleared: {cause}."
    # A transition recorded after the clear shows after it.
    later = {**HISTORY[0], "id": "e0e0000000000005", "time": "2999-01-01T00:00:00Z"}
    machine.power_history = [*HISTORY, later]
    ids = [e["Id"] for e in (await client.get(ENTRIES)).json()["Members"]]
    assert ids == [request_id, "e0e0000000000005"]


async def test_clear_log_with_the_entries_etag(client: httpx.AsyncClient, machine) -> None:
    machine.power_history = HISTORY
    etag = (await client.get(ENTRIES)).headers["ETag"]
    machine.power_history = HISTORY[:2]  # the entries changed since the client read them
    r = await client.post(CLEAR, json={"LogEntriesETag": etag})
    assert r.status_code == 428 and machine.log_cleared is None
    etag = (await client.get(ENTRIES)).headers["ETag"]
    assert (await client.post(CLEAR, json={"LogEntriesETag": etag})).status_code == 204
    assert machine.log_cleared is not None


async def test_clear_log_refuses_unknown_parameters(client: httpx.AsyncClient, machine) -> None:
    r = await client.post(CLEAR, json={"Force": True})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "Base.1.16.0.ActionParameterUnknown"
    assert machine.log_cleared is None
    assert (await client.post(CLEAR)).status_code == 204  # sushy-style: no body at all


async def test_clear_log_needs_credentials(anon: httpx.AsyncClient, machine) -> None:
    assert (await anon.post(CLEAR, json={})).status_code == 401
    assert machine.log_cleared is None
