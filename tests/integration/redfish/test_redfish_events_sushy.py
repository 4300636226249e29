"""sushy's EventService API, as Ironic calls it, against the real server (HTTPS) on the machine double:
subscribe with Ironic's payload, read the subscription back, submit a test event, get a recorded
transition, delete the subscription. sushy is synchronous (requests): each step runs in a thread while
the loop serves it."""

from __future__ import annotations

import asyncio

from redfish_servers import FakeMachine
from test_redfish_sushy import connect

from tests.event_receiver import receiver
from tests.history_entries import entry
from vmbmc.redfish import RedfishServer
from vmbmc_devcluster.testing.waiting import wait_for

IRONIC = {"Protocol": "Redfish", "Context": "", "EventTypes": ["Alert"]}


async def test_ironic_subscription_test_event_and_a_transition(
    https_server: RedfishServer, machine: FakeMachine
) -> None:
    with receiver() as rx:

        def subscribe() -> str:
            with connect(https_server.url) as conn:
                service = conn.get_event_service()
                assert "Alert" in {t.value for t in service.get_event_types_for_subscription()}
                sub = service.subscriptions.create({**IRONIC, "Destination": rx.url})
                assert (sub.destination, sub.protocol, sub.context, sub.event_types) == (
                    rx.url, "Redfish", "", ["Alert"]
                )
                service.submit_test_event("t-1", "2025-06-02T10:00:00Z", "Alert", "a test", [],
                                          "Base.1.16.0.Success", "/redfish/v1/Systems/vm1", "OK")
                return str(sub.path)

        path = await asyncio.to_thread(subscribe)
        await wait_for(lambda: rx.event_ids() == ["t-1"], what="the test event")
        on = entry("7c1e000000000001", "2031-01-01T00:00:00Z", "PoweredOn", external="guest shutdown")
        machine.record(on)
        await wait_for(lambda: rx.event_ids() == ["t-1", "7c1e000000000001"], what="the transition")

        def unsubscribe() -> list[str]:
            with connect(https_server.url) as conn:
                subscriptions = conn.get_event_service().subscriptions
                subscriptions.get_member(path).delete()
                subscriptions.refresh()
                return [m.path for m in subscriptions.get_members()]

        assert await asyncio.to_thread(unsubscribe) == []
