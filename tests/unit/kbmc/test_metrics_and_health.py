"""The health server (vmbmc/health.py) over a real socket on 127.0.0.1: its answers, and the kbmc's
metrics as prometheus_client writes them, read back with prometheus_client's own parser."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from tests.prometheus_text import samples
from vmbmc import health, metrics
from vmbmc.health import HealthServer


@pytest.fixture
async def kbmc_health() -> AsyncIterator[tuple[HealthServer, httpx.AsyncClient]]:
    server = HealthServer(metrics.REGISTRY, "127.0.0.1", 0)
    port = await server.start()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
        yield server, client
    await server.stop()


async def test_kbmc_metrics_are_prometheus_clients_text(kbmc_health) -> None:
    _, client = kbmc_health
    key = ("vmbmc_ipmi_requests_total", (("command", 'Get "Chassis"\\Status\n'), ("completion_code", "0x00")))
    before = samples((await client.get("/metrics")).text).get(key, 0.0)
    metrics.IPMI_REQUESTS.labels('Get "Chassis"\\Status\n', "0x00").inc(2)
    metrics.LOGIN_FAILURES.labels("redfish").inc()
    answer = await client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=")
    found = samples(answer.text)
    assert found[key] == before + 2  # label values escaped and read back intact
    assert found[("vmbmc_login_failures_total", (("protocol", "redfish"),))] >= 1
    assert found[("process_resident_memory_bytes", ())] > 1 << 20  # the process collector
    families = {f.name: f.type for f in text_string_to_metric_families(answer.text)}
    assert families["vmbmc_ipmi_requests"] == "counter"
    assert families["vmbmc_login_checks_held"] == "counter"


async def test_metrics_negotiate_openmetrics_and_gzip(kbmc_health) -> None:
    _, client = kbmc_health
    answer = await client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert answer.headers["content-type"].startswith("application/openmetrics-text")
    assert answer.text.endswith("# EOF\n")
    answer = await client.get("/metrics", headers={"Accept-Encoding": "gzip"})
    assert answer.headers["content-encoding"] == "gzip" and "vmbmc_ipmi_requests" in answer.text


async def test_a_registry_of_its_own() -> None:
    """The controller's registry (vmbmc.controller.metrics) is served as given, nothing else in it."""
    registry = CollectorRegistry()
    Counter("vmbmc_test_things", "Things counted", ["kind"], registry=registry).labels("a").inc(3)
    server = HealthServer(registry, "127.0.0.1", 0)
    port = await server.start()
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    finally:
        await server.stop()
    assert samples(text)[("vmbmc_test_things_total", (("kind", "a"),))] == 3.0
    assert "vmbmc_ipmi_requests" not in text and "process_resident_memory_bytes" not in text


async def test_health_and_readiness_answers(kbmc_health) -> None:
    server, client = kbmc_health
    ready = False
    server.ready_check = lambda: ready
    server.ready_reason = "watch not synced"
    answer = await client.get("/healthz")
    assert (answer.status_code, answer.text) == (200, "ok\n")
    answer = await client.get("/readyz")
    assert (answer.status_code, answer.text) == (503, "not ready: watch not synced\n")
    ready = True
    answer = await client.get("/readyz?verbose")
    assert (answer.status_code, answer.text) == (200, "ok\n")
    answer = await client.head("/metrics")
    assert answer.status_code == 200 and answer.content == b""
    assert (await client.post("/healthz")).status_code == 405
    assert (await client.get("/nope")).status_code == 404
    server.alive = False
    answer = await client.get("/healthz")
    assert (answer.status_code, answer.text) == (503, "stopping\n")


async def test_ready_attribute_when_no_check_is_given() -> None:
    server = HealthServer(CollectorRegistry(), "127.0.0.1", 0)
    port = await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            assert (await client.get("/readyz")).text == "not ready: starting\n"
            server.ready = True
            assert (await client.get("/readyz")).status_code == 200
    finally:
        await server.stop()
        await server.stop()  # twice is fine (the controller's stop paths both call it)


async def test_garbage_gets_400_and_a_silent_connection_is_closed(monkeypatch) -> None:
    monkeypatch.setattr(health, "REQUEST_TIMEOUT", 0.2)
    server = HealthServer(CollectorRegistry(), "127.0.0.1", 0)
    port = await server.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"garbage\r\n\r\n")
        assert (await asyncio.wait_for(reader.read(), 5)).startswith(b"HTTP/1.1 400")
        writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)  # says nothing
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the server
        writer.close()
    finally:
        await server.stop()


async def test_a_busy_port_is_an_oserror() -> None:
    first = HealthServer(CollectorRegistry(), "127.0.0.1", 0)
    port = await first.start()
    try:
        with pytest.raises(OSError):
            await HealthServer(CollectorRegistry(), "127.0.0.1", port).start()
    finally:
        await first.stop()
