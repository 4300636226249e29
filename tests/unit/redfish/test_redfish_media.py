"""VirtualMedia's answers that the end-to-end suite cannot reach quickly: an import longer than
InsertMedia's bound (202 and the task monitor), and a second insert while an import runs."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from machine_double import FakeMachine

from tests.redfish_csdl import nullable_properties
from vmbmc.machine import media as md
from vmbmc.machine.types import Requester
from vmbmc.redfish.resources import media as media_resource

CD = "/redfish/v1/Systems/vm1/VirtualMedia/Cd"
INSERT = f"{CD}/Actions/VirtualMedia.InsertMedia"
IMAGE = "http://127.0.0.1:8080/boot.iso"


class MediaMachine(FakeMachine):
    """A FakeMachine whose CD-ROM import ends when the test says so."""

    def __init__(self) -> None:
        super().__init__()
        self.media = md.MediaStatus()
        self.import_done: asyncio.Future[md.MediaStatus] | None = None
        self.inserts: list[str] = []

    def virtual_media(self) -> md.MediaStatus:
        return self.media

    async def insert_media(self, requester: Requester, image: str) -> asyncio.Future[md.MediaStatus]:
        self.inserts.append(image)
        self.media = md.MediaStatus(image, False, "dv", md.IN_PROGRESS, "progress 10.00%")
        self.import_done = asyncio.get_running_loop().create_future()
        return self.import_done

    def finish(self, ok: bool) -> None:
        assert self.import_done is not None
        if ok:
            self.media = md.MediaStatus(self.media.image, True, "dv", md.SUCCEEDED, "")
        else:
            self.media = md.MediaStatus(self.media.image, False, "", md.FAILED, "got 404")
        self.import_done.set_result(self.media)


@pytest.fixture
async def machine() -> FakeMachine:
    return MediaMachine()


@pytest.fixture(autouse=True)
def short_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(media_resource, "INSERT_WAIT", 0.05)


@pytest.mark.parametrize("ok", [True, False])
async def test_a_long_import_answers_202_with_a_task_monitor(
    client: httpx.AsyncClient, machine: MediaMachine, ok: bool
) -> None:
    started = await client.post(INSERT, json={"Image": IMAGE})
    assert started.status_code == 202, started.text
    monitor = started.headers["Location"]
    assert monitor.startswith("/redfish/v1/TaskService/TaskMonitors/")
    running = await client.get(CD)
    body = running.json()
    assert body["Inserted"] is False and body["Image"] == IMAGE and body["ConnectedVia"] == "NotConnected"
    assert "progress 10.00%" in body["Status"]["Conditions"][0]["Message"]
    assert (await client.get(monitor)).status_code == 202
    again = await client.post(INSERT, json={"Image": IMAGE})
    assert again.status_code == 409
    assert again.json()["error"]["code"].endswith("ResourceInUse")
    assert machine.inserts == [IMAGE]  # the refused insert reached nothing
    machine.finish(ok)
    outcome = await client.get(monitor)
    if ok:
        assert outcome.status_code == 204
        assert (await client.get(CD)).json()["Inserted"] is True
    else:
        assert outcome.status_code == 400
        assert outcome.json()["error"]["code"].endswith("ActionParameterValueError")
        assert "got 404" in outcome.json()["error"]["@Message.ExtendedInfo"][0]["Resolution"]


async def test_unknown_task_monitor(client: httpx.AsyncClient) -> None:
    assert (await client.get("/redfish/v1/TaskService/TaskMonitors/nope")).status_code == 404


async def test_not_offered_without_a_back_end(client: httpx.AsyncClient, app) -> None:
    app.state.service.machine = FakeMachine()
    assert (await client.get(CD)).status_code == 404
    assert "VirtualMedia" not in (await client.get("/redfish/v1/Systems/vm1")).json()
    assert "VirtualMedia" not in (await client.get("/redfish/v1/Managers/BMC")).json()


@pytest.mark.parametrize("path", [CD, "/redfish/v1/Managers/BMC/VirtualMedia/Cd"])
async def test_empty_media_reads_null_where_the_schema_allows_it(
    client: httpx.AsyncClient, path: str
) -> None:
    """Ironic's interop profile reads `Image` in every state: an empty device says null, in exactly the
    nullable properties DMTF's VirtualMedia schema has, and nothing else is null."""
    body = (await client.get(path)).json()
    nulls = {key for key, value in body.items() if value is None}
    assert nulls == {"Image", "ImageName", "TransferMethod", "TransferProtocolType"}, body
    assert nulls <= nullable_properties("VirtualMedia")
    assert body["Inserted"] is False and body["ConnectedVia"] == "NotConnected"


async def test_inserted_media_has_no_nulls(client: httpx.AsyncClient, machine: MediaMachine) -> None:
    machine.media = md.MediaStatus(IMAGE, True, "dv", md.SUCCEEDED, "")
    body = (await client.get(CD)).json()
    assert [key for key, value in body.items() if value is None] == []
    assert body["Image"] == IMAGE and body["ImageName"] == "boot.iso"
    assert body["TransferProtocolType"] == "HTTP"
