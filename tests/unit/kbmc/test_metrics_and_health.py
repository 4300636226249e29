"""The kbmc's counters in the Prometheus text format, and the health server's answers, over a real
socket on 127.0.0.1."""

from __future__ import annotations

import asyncio

from vmbmc.health import HealthServer
from vmbmc.kbmc import metrics


def test_counters_render_as_prometheus_text() -> None:
    counter = metrics.Counter("vmbmc_test_things", "Things counted", ["kind"])
    counter.labels('a "quoted"\\name\n').inc()
    counter.labels("plain").inc(2)
    plain = metrics.Counter("vmbmc_test_plain", "Plain")
    plain.inc()
    text = metrics.render().decode()
    assert "# HELP vmbmc_test_things_total Things counted\n# TYPE vmbmc_test_things_total counter\n" in text
    assert 'vmbmc_test_things_total{kind="a \\"quoted\\"\\\\name\\n"} 1.0\n' in text
    assert 'vmbmc_test_things_total{kind="plain"} 2.0\n' in text
    assert "vmbmc_test_plain_total 1.0\n" in text
    rss = next(line for line in text.splitlines() if line.startswith("process_resident_memory_bytes "))
    assert float(rss.split()[1]) > 1 << 20
    assert "# TYPE process_cpu_seconds_total counter" in text


async def raw(port: int, request: bytes) -> tuple[str, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 5)  # the server closes after one answer
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return head.decode(), body


async def test_health_server_answers() -> None:
    ready = False
    health = HealthServer(lambda: b"m 1.0\n", "127.0.0.1", 0, ready_check=lambda: ready)
    health.ready_reason = "watch not synced"
    port = await health.start()
    try:
        head, body = await raw(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert head.startswith("HTTP/1.1 200 OK") and body == b"ok\n"
        head, body = await raw(port, b"GET /readyz HTTP/1.1\r\n\r\n")
        assert head.startswith("HTTP/1.1 503") and body == b"not ready: watch not synced\n"
        ready = True
        head, body = await raw(port, b"GET /readyz?verbose HTTP/1.1\r\n\r\n")
        assert head.startswith("HTTP/1.1 200") and body == b"ok\n"
        head, body = await raw(port, b"GET /metrics HTTP/1.0\r\n\r\n")
        assert "Content-Type: text/plain; version=0.0.4; charset=utf-8" in head and body == b"m 1.0\n"
        head, body = await raw(port, b"HEAD /metrics HTTP/1.1\r\n\r\n")
        assert "Content-Length: 6" in head and body == b""
        assert (await raw(port, b"POST /healthz HTTP/1.1\r\n\r\n"))[0].startswith("HTTP/1.1 405")
        assert (await raw(port, b"GET /nope HTTP/1.1\r\n\r\n"))[0].startswith("HTTP/1.1 404")
        assert (await raw(port, b"garbage\r\n\r\n"))[0].startswith("HTTP/1.1 400")
        health.alive = False
        head, body = await raw(port, b"GET /healthz HTTP/1.1\r\n\r\n")
        assert head.startswith("HTTP/1.1 503") and body == b"stopping\n"
    finally:
        await health.stop()
