"""Whether a subscription's Destination may be sent events: the allow-list (vmbmc.destinations), with names
resolved. Checked when a subscription is made (a refusal is a 400 naming `--event-destinations`) and again
on every connection (vmbmc.redfish.poster), so neither a name that moves nor a narrower list after a
restart lets an event leave for somewhere the operator did not admit.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket

from vmbmc.destinations import FLAG, AllowList
from vmbmc.redfish.subscriptions import destination_parts

RESOLVE_TIMEOUT = 5.0


class Refused(Exception):
    """The destination is not admitted; the message says why and what to change."""


class DeliveryFailed(Exception):
    """An event POST got no 2xx answer: the reason, for the log (never the headers)."""


def refusal(allow: AllowList, where: str, why: str = "") -> Refused:
    return Refused(
        f"the event destination {where} is not admitted{why}: this BMC sends events only where the "
        f"cluster operator's allow-list admits (the controller's {FLAG} flag, narrowed per BMC by "
        f"spec.redfish.eventDestinations; now {allow.describe()})"
    )


async def resolve(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to (TCP), bounded in time; [] when it does not resolve."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError, UnicodeError):
        return []
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def check(allow: AllowList, destination: str) -> None:
    """Raises Refused unless the allow-list admits `destination` (an http(s) URL): its address literal, or
    its name as listed, or an address the name resolves to (the connection then goes only to admitted
    addresses)."""
    _, host, port = destination_parts(destination)
    where = f"{host}:{port}"
    try:
        literal: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        if not allow.admits_address(literal, port):
            raise refusal(allow, where)
        return
    if allow.admits_name(host, port):
        return  # listed by name: its addresses are checked when it is connected to
    addresses = await resolve(host, port)
    if not addresses:
        raise refusal(allow, where, " (the name does not resolve, so it cannot be checked)")
    if not any(allow.admits_resolved(host, port, a) for a in addresses):
        raise refusal(allow, where, f" (it resolves to {', '.join(addresses)})")
