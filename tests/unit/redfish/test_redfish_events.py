"""The Redfish EventService on the machine double: subscriptions made, read and deleted as a client sees
them, what is refused (a destination outside the allow-list with a message naming --event-destinations,
RetryForever, what the service does not offer), and delivery to a real receiver on 127.0.0.1: each
recorded transition once, with its transition id as EventId, retried as the policy says."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from machine_double import FakeMachine

from tests.event_receiver import Receiver, receiver
from tests.history_entries import entry
from vmbmc.auth import LoginLimiter, StaticCredentials
from vmbmc.destinations import AllowList
from vmbmc.machine.subscriptions import SETTINGS_KEY
from vmbmc.redfish import create_app
from vmbmc_devcluster.testing.waiting import wait_for

ES = "/redfish/v1/EventService"
SUBS = f"{ES}/Subscriptions"
IRONIC = {"Protocol": "Redfish", "Context": "", "EventTypes": ["Alert"]}  # Ironic's create_subscription
NOW = "2031-01-01T00:00:0{}Z"  # entries recorded after the subscription (any time: no clock is compared)
TOKEN = "Sekr1tReceiverToken"
USER, PASSWORD = "admin", "password-for-event-tests"


@pytest.fixture
async def app(machine: FakeMachine) -> AsyncIterator[object]:
    app = create_app(
        machine,
        StaticCredentials(USER, PASSWORD),
        limiter=LoginLimiter(),
        event_destinations=AllowList.parse("127.0.0.0/8"),
    )
    await app.state.events.start()
    yield app
    await app.state.events.stop()


@pytest.fixture
async def client(app: object) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://bmc", auth=(USER, PASSWORD)) as c:
        yield c


@pytest.fixture
def rx() -> object:
    with receiver() as r:
        yield r


async def subscribe(client: httpx.AsyncClient, destination: str, **extra: object) -> str:
    r = await client.post(SUBS, json={**IRONIC, "Destination": destination, **extra})
    assert r.status_code == 201, r.text
    assert r.headers["Location"] == r.json()["@odata.id"]
    return str(r.headers["Location"])


async def test_event_service_lists_what_it_offers(client: httpx.AsyncClient) -> None:
    root = (await client.get("/redfish/v1")).json()
    assert root["EventService"] == {"@odata.id": ES}
    body = (await client.get(ES)).json()
    assert body["EventTypesForSubscription"] == ["Alert"]
    assert body["RegistryPrefixes"] == ["ResourceEvent", "LogService", "Vmbmc"]
    assert body["ResourceTypes"] == ["ComputerSystem", "LogService"]
    assert body["EventFormatTypes"] == ["Event"]
    assert (body["DeliveryRetryAttempts"], body["DeliveryRetryIntervalSeconds"]) == (3, 30)
    assert body["Actions"]["#EventService.SubmitTestEvent"]["target"] == (
        f"{ES}/Actions/EventService.SubmitTestEvent"
    )
    assert (await client.get(SUBS)).json()["Members"] == []


async def test_ironic_subscription_is_created_read_and_deleted(
    client: httpx.AsyncClient, machine: FakeMachine
) -> None:
    headers = [{"X-Auth-Token": TOKEN}]
    location = await subscribe(client, "http://127.0.0.1:9/events", HttpHeaders=headers)
    body = (await client.get(location)).json()
    assert body["Destination"] == "http://127.0.0.1:9/events"
    assert (body["Context"], body["Protocol"], body["EventTypes"]) == ("", "Redfish", ["Alert"])
    assert body["HttpHeaders"] == []  # write-only
    assert TOKEN not in (await client.get(location)).text
    assert (body["DeliveryRetryPolicy"], body["VerifyCertificate"]) == ("TerminateAfterRetries", False)
    assert body["Status"]["State"] == "Enabled"
    assert (await client.get(SUBS)).json()["Members"] == [{"@odata.id": location}]
    # what the store keeps: the headers too (on KubeVirt: a Secret), and the cursor
    stored = await machine.event_subscriptions().load()
    (record,) = [v for k, v in stored.items() if k != SETTINGS_KEY]
    assert record["HttpHeaders"] == headers and record["Cursor"] == {"eventId": "", "time": ""}
    assert (await client.delete(location)).status_code == 204
    assert (await client.get(location)).status_code == 404
    assert await machine.event_subscriptions().load() == {}


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"Destination": "https://192.168.1.50/Destination1"}, "--event-destinations"),  # DMTF's validator
        ({"Destination": "http://10.0.0.1:8080/"}, "--event-destinations"),
        ({"Destination": "http://[::1]:8080/"}, "--event-destinations"),  # the demo admits 127/8, not ::1
        ({"Destination": "http://127.0.0.1/", "Protocol": "FTP"}, "Protocol"),
        ({"Destination": "http://127.0.0.1/", "DeliveryRetryPolicy": "RetryForever"}, "RetryForever"),
        ({"Destination": "http://127.0.0.1/", "DeliveryRetryPolicy": "RetryForeverWithBackoff"}, "Retry"),
        ({"Destination": "http://127.0.0.1/", "EventTypes": ["StatusChange"]}, "EventTypes"),
        ({"Destination": "http://127.0.0.1/", "RegistryPrefixes": ["Task"]}, "RegistryPrefixes"),
        ({"Destination": "http://127.0.0.1/", "HttpHeaders": [{"Host": "x"}]}, "HttpHeaders"),
        ({"Destination": "http://127.0.0.1/", "Unknown": 1}, "Unknown"),
        ({"Destination": "ftp://127.0.0.1/"}, "http://"),
        ({"Destination": "http://user:pw@127.0.0.1/"}, "HttpHeaders"),
        ({"Protocol": "Redfish"}, "Destination"),
    ],
)
async def test_refused_subscriptions(client: httpx.AsyncClient, body: dict, words: str) -> None:
    r = await client.post(SUBS, json={"Protocol": "Redfish", **body})
    assert r.status_code == 400, r.text
    assert words in r.text
    assert (await client.get(SUBS)).json()["Members"] == []


async def test_each_transition_is_delivered_once_with_its_id(
    client: httpx.AsyncClient, machine: FakeMachine, rx: Receiver
) -> None:
    await subscribe(client, rx.url, HttpHeaders=[{"X-Auth-Token": TOKEN}])
    who = "IPMI user admin from 10.0.0.7"
    machine.record(entry("7c1e000000000001", NOW.format(1), "PoweredOn", who, "aa"))
    (first,) = await wait_for(rx.events, what="the power-on event")
    assert first.headers["x-auth-token"] == TOKEN and first.headers["content-type"] == "application/json"
    body = first.body
    assert body["@odata.type"].startswith("#Event.v1_")
    assert (body["Context"], body["Id"]) == ("", "7c1e000000000001")
    (record,) = body["Events"]
    assert record["EventId"] == "7c1e000000000001" and record["EventType"] == "Alert"
    assert record["MessageId"] == "ResourceEvent.1.4.3.ResourcePoweredOn"
    assert record["Message"] == f"The resource 'vm1' has powered on: by {who} (request aa)."
    assert record["OriginOfCondition"] == {"@odata.id": "/redfish/v1/Systems/vm1"}
    assert record["LogEntry"]["@odata.id"].endswith("/LogServices/SEL/Entries/7c1e000000000001")
    machine.record(entry("b00b000000000002", NOW.format(2), "PoweredOff", external="guest shutdown"))
    await wait_for(lambda: len(rx.events()) == 2, what="the power-off event")
    assert rx.event_ids() == ["7c1e000000000001", "b00b000000000002"]  # each once, in order


async def test_filters_pick_what_a_subscription_gets(
    client: httpx.AsyncClient, machine: FakeMachine, rx: Receiver
) -> None:
    await subscribe(client, rx.url + "?only=log", RegistryPrefixes=["LogService"])
    await subscribe(client, rx.url + "?only=system", ResourceTypes=["ComputerSystem"])
    machine.record(entry("7c1e000000000001", NOW.format(1), "PoweredOn", external="guest shutdown"))
    clear = await client.post("/redfish/v1/Systems/vm1/LogServices/SEL/Actions/LogService.ClearLog", json={})
    assert clear.status_code == 204
    await wait_for(lambda: len(rx.events()) == 2, what="one event for each subscription")
    by_path = {r.path: r.body["Events"][0]["MessageId"] for r in rx.events()}
    assert by_path == {"/events?only=log": "LogService.1.1.0.LogCleared",
                       "/events?only=system": "ResourceEvent.1.4.3.ResourcePoweredOn"}


async def test_failing_receiver_gets_the_retries_then_the_subscription_ends(
    client: httpx.AsyncClient, machine: FakeMachine, rx: Receiver
) -> None:
    r = await client.patch(ES, json={"DeliveryRetryAttempts": 2, "DeliveryRetryIntervalSeconds": 1})
    assert r.status_code == 204, r.text
    assert (await machine.event_subscriptions().load())[SETTINGS_KEY]["DeliveryRetryAttempts"] == 2
    location = await subscribe(client, rx.url)
    rx.status = 500
    machine.record(entry("7c1e000000000001", NOW.format(1), "PoweredOn", external="guest shutdown"))
    await wait_for(lambda: len(rx.events()) == 3, timeout=10, what="the first POST and 2 retries")
    await wait_for(lambda: machine.event_subscriptions()._data.keys() == {SETTINGS_KEY}, what="terminated")
    assert (await client.get(location)).status_code == 404
    gaps = [b.at - a.at for a, b in zip(rx.events(), rx.events()[1:], strict=False)]
    assert all(g >= 0.9 for g in gaps), gaps  # spaced by DeliveryRetryIntervalSeconds
    assert rx.event_ids() == ["7c1e000000000001"] * 3


async def test_suspended_after_retries_then_resumed_with_the_kept_events(
    client: httpx.AsyncClient, machine: FakeMachine, rx: Receiver
) -> None:
    await client.patch(ES, json={"DeliveryRetryAttempts": 1, "DeliveryRetryIntervalSeconds": 1})
    location = await subscribe(client, rx.url, DeliveryRetryPolicy="SuspendRetries")
    rx.status = 503
    machine.record(entry("7c1e000000000001", NOW.format(1), "PoweredOn", external="guest shutdown"))

    async def state() -> str:
        return str((await client.get(location)).json()["Status"]["State"])

    await wait_for(lambda: len(rx.events()) == 2, timeout=10, what="the POST and its retry")
    deadline = time.monotonic() + 10  # the suspension follows the retry's failure, on the BMC's loop
    while (current := await state()) != "Disabled":
        assert time.monotonic() < deadline, f"never suspended: {current}"
        await asyncio.sleep(0.05)
    machine.record(entry("b00b000000000002", NOW.format(2), "PoweredOff", external="guest shutdown"))
    rx.status = 200
    r = await client.post(f"{location}/Actions/EventDestination.ResumeSubscription", json={})
    assert r.status_code == 204, r.text
    assert await state() == "Enabled"
    await wait_for(lambda: len(rx.events()) == 4, what="both kept events")
    assert rx.event_ids() == ["7c1e000000000001"] * 3 + ["b00b000000000002"]


async def test_submit_test_event_with_sushys_body(client: httpx.AsyncClient, rx: Receiver) -> None:
    await subscribe(client, rx.url)
    body = {  # what sushy's EventService.submit_test_event sends
        "EventId": "test-1", "EventTimestamp": "2025-06-02T10:00:00Z", "EventType": "Alert",
        "Message": "a test", "MessageArgs": [], "MessageId": "Base.1.16.0.Success",
        "OriginOfCondition": "/redfish/v1/Systems/vm1", "Severity": "OK",
    }  # fmt: skip
    r = await client.post(f"{ES}/Actions/EventService.SubmitTestEvent", json=body)
    assert r.status_code == 204, r.text
    (got,) = await wait_for(rx.events, what="the test event")
    (record,) = got.body["Events"]
    assert (record["EventId"], record["EventType"], record["MessageId"]) == ("test-1", "Alert",
                                                                            "Base.1.16.0.Success")
    assert record["OriginOfCondition"] == {"@odata.id": "/redfish/v1/Systems/vm1"}
    action = f"{ES}/Actions/EventService.SubmitTestEvent"
    missing = await client.post(action, json={"EventType": "Alert"})
    assert missing.status_code == 400 and "MessageId" in missing.text
    bare = await client.post(action, json={"MessageId": body["MessageId"]})
    assert bare.status_code == 204, bare.text
    (_, second) = await wait_for(lambda: len(rx.events()) == 2 and rx.events(), what="the second test event")
    assert len(second.body["Id"]) == 16 and second.event_ids == [second.body["Id"]]  # an EventId of ours


async def test_cursor_survives_a_new_process(machine: FakeMachine, rx: Receiver) -> None:
    """A second EventService over the same store (a restarted kbmc) sends only what the first did not,
    including what was recorded while none ran."""
    allow = AllowList.parse("127.0.0.1")
    first = create_app(machine, StaticCredentials(USER, PASSWORD), event_destinations=allow)
    await first.state.events.start()
    transport = httpx.ASGITransport(app=first, client=("127.0.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://bmc", auth=(USER, PASSWORD)) as c:
        await subscribe(c, rx.url)
    machine.record(entry("7c1e000000000001", NOW.format(1), "PoweredOn", external="guest shutdown"))
    await wait_for(lambda: len(rx.events()) == 1, what="the first event")
    await wait_for(lambda: "7c1e000000000001" in str(machine.event_subscriptions()._data), what="cursor")
    await first.state.events.stop()
    machine.record(entry("b00b000000000002", NOW.format(2), "PoweredOff", external="guest shutdown"))
    second = create_app(machine, StaticCredentials(USER, PASSWORD), event_destinations=allow)
    await second.state.events.start()
    try:
        await wait_for(lambda: len(rx.events()) == 2, what="the event recorded while none ran")
        machine.record(entry("c0de000000000003", NOW.format(3), "PoweredOn", external="guest shutdown"))
        await wait_for(lambda: len(rx.events()) == 3, what="a later event")
    finally:
        await second.state.events.stop()
    assert rx.event_ids() == ["7c1e000000000001", "b00b000000000002", "c0de000000000003"]


async def test_redirect_is_a_failed_delivery_and_headers_stay_out_of_logs(
    client: httpx.AsyncClient, machine: FakeMachine, rx: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await client.patch(ES, json={"DeliveryRetryAttempts": 0})
    location = await subscribe(client, rx.url, HttpHeaders=[{"Authorization": f"Bearer {TOKEN}"}])
    rx.status, rx.location = 307, "http://169.254.169.254/latest/meta-data"
    machine.record(entry("7c1e000000000001", NOW.format(1), "PoweredOn", external="guest shutdown"))
    await wait_for(lambda: len(rx.events()) == 1, what="the one POST")
    await wait_for(lambda: machine.event_subscriptions()._data.keys() == {SETTINGS_KEY}, what="terminated")
    assert (await client.get(location)).status_code == 404
    text = caplog.text + str([r.__dict__ for r in caplog.records])
    assert TOKEN not in text and base64.b64encode(TOKEN.encode()).decode()[:12] not in text
    assert "event delivery failed" in text and "HTTP 307" in text
