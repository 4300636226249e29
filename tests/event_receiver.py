"""A Redfish event receiver for the tests: a real HTTP server on 127.0.0.1 (its own thread) that keeps every
POST it gets (when, headers, JSON body) and answers each with the status the test sets."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    at: float  # time.time() when it arrived
    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def event_ids(self) -> list[str]:
        return [str(e.get("EventId")) for e in self.body.get("Events", [])]


class Receiver:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self.status = 204  # what every POST is answered with
        self.location: str | None = None  # with a 3xx status: where it points
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = {"unparsed": raw.decode(errors="replace")}
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver._lock:
                    receiver.received.append(Received(time.time(), self.path, headers, body))
                    status = receiver.status
                self.send_response(status)
                if receiver.location:
                    self.send_header("Location", receiver.location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/events"

    def events(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def event_ids(self) -> list[str]:
        return [i for r in self.events() for i in r.event_ids]


@contextmanager
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    thread = threading.Thread(target=r.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield r
    finally:
        r.server.shutdown()
        r.server.server_close()
        thread.join(timeout=5)
