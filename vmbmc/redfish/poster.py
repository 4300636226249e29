"""The HTTP POST of one event to one destination, on aiohttp's client (already a dependency of vmbmc).

Imported only once a BMC has a subscription to deliver to (aiohttp costs the kbmc megabytes of memory it
does not need otherwise). Every connection resolves its host afresh through `AllowListResolver`, which
hands aiohttp only the addresses the allow-list admits; address literals, which aiohttp does not resolve,
are checked before the request. No proxy from the environment, no redirects followed (a 3xx is a failed
delivery), no cookies kept.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from vmbmc import __version__
from vmbmc.destinations import FLAG, AllowList
from vmbmc.redfish.egress import DeliveryFailed
from vmbmc.redfish.subscriptions import Subscription, destination_parts

POST_TIMEOUT = 10.0  # a receiver that does not answer within this is a failed delivery
MAX_ANSWER = 64 * 1024  # what is read of a receiver's answer (it is not used)


class AllowListResolver(AbstractResolver):
    """aiohttp's threaded resolver, keeping only the addresses the allow-list admits for the name."""

    def __init__(self, allow: AllowList) -> None:
        self.allow = allow
        self._inner = aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        kept = [r for r in found if self.allow.admits_resolved(host, port, r["host"])]
        if not kept:
            raise OSError(f"{host} resolves to no address that {FLAG} admits")
        return kept

    async def close(self) -> None:
        await self._inner.close()


class Poster:
    """One BMC's HTTP client for its event deliveries (its connections are kept between events)."""

    def __init__(self, allow: AllowList, *, timeout: float = POST_TIMEOUT) -> None:
        self.allow = allow
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                resolver=AllowListResolver(self.allow), use_dns_cache=False, limit=16
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
                headers={"User-Agent": f"vmbmc/{__version__}"},
            )
        return self._session

    async def post(self, sub: Subscription, payload: bytes) -> int:
        """POST `payload` to the subscription's destination; its HTTP status when 2xx, else raises
        DeliveryFailed."""
        _, host, port = destination_parts(sub.destination)
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None and not self.allow.admits_address(literal, port):
            raise DeliveryFailed(f"{host}:{port} is no longer admitted by {FLAG}")
        headers: dict[str, Any] = {"Content-Type": "application/json"}
        headers.update(dict(sub.headers))
        # VerifyCertificate false: no certificate check (DMTF's default); true: the image's trust store.
        verify: bool | ssl.SSLContext = sub.verify_certificate
        try:
            async with self._client().post(
                sub.destination, data=payload, headers=headers, ssl=verify, allow_redirects=False
            ) as resp:
                await resp.content.read(MAX_ANSWER)
                if 200 <= resp.status < 300:
                    return resp.status
                raise DeliveryFailed(f"HTTP {resp.status}")
        except (aiohttp.ClientError, OSError, TimeoutError) as err:
            raise DeliveryFailed(f"{type(err).__name__}: {err}".rstrip(": ")) from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
