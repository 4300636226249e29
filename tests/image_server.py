"""A small ISO image served over HTTP on 127.0.0.1, for the virtual media tests (CDI fetches it)."""

from __future__ import annotations

import contextlib
import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SECTOR = 2048


def small_iso() -> bytes:
    """An ISO 9660 image: 16 empty sectors, a primary volume descriptor, a terminator, some data."""
    pvd = b"\x01CD001\x01".ljust(SECTOR, b"\x00")
    end = b"\xffCD001\x01".ljust(SECTOR, b"\x00")
    return b"\x00" * (16 * SECTOR) + pvd + end + b"\x00" * (32 * SECTOR)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serve_images(root: Path) -> Iterator[str]:
    """Serve `root/small.iso` (and a 404 for anything else); yields the base URL."""
    (root / "small.iso").write_bytes(small_iso())
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
