"""Where a BMC may push Redfish events: the operator's allow-list (`--event-destinations`). Pure, no I/O.

A list is comma-separated entries, each either a network in CIDR notation (`127.0.0.0/8`, `10.2.0.0/16`,
`fd00::/8`; a bare address is a /32 or /128), admitting every port of every address in it, or a host
with an optional port (`receiver.example.com`, `ironic.metal3.svc:6385`, `10.0.0.7:8080`,
`[fd00::7]:8080`), admitting that host (by name, or that one address) on that port or on any port.
Empty by default: nothing is admitted, so a BMC pushes events nowhere until an operator says where.

A destination given by name is admitted when the list names it, or else when an address it resolves to
lies in a listed network; the one who connects (vmbmc.redfish.egress) resolves the name and connects
only to admitted addresses, so a name cannot smuggle a connection past the list. Link-local,
multicast and unspecified addresses (cloud metadata services live on link-local ones) are admitted
only by a network that names them explicitly, never through a listed name.

The controller narrows its own list by a BMC's `spec.redfish.eventDestinations` (`narrow`): the BMC
gets what both admit, never more than the controller's list.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

FLAG = "--event-destinations"  # named in every refusal, so an operator knows what to change

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Addresses a listed *name* never reaches (a network entry must name them): metadata services and the like.
_NEVER_BY_NAME = (
    ipaddress.ip_network("169.254.0.0/16"),
    ipaddress.ip_network("fe80::/10"),
    ipaddress.ip_network("224.0.0.0/4"),
    ipaddress.ip_network("ff00::/8"),
    ipaddress.ip_network("0.0.0.0/32"),
    ipaddress.ip_network("::/128"),
)


@dataclass(frozen=True, slots=True)
class Host:
    """A host entry: a lower-case name or an address literal, and a port (None: any)."""

    host: str
    port: int | None = None

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"

    def admits_port(self, port: int) -> bool:
        return self.port is None or self.port == port


def _address(text: str) -> IpAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def normal_host(host: str) -> str:
    """A host as entries compare it: lower case, no trailing dot, an IPv6 literal without brackets and in
    its compressed form."""
    host = host.strip().strip("[]").rstrip(".").lower()
    address = _address(host)
    return str(address) if address is not None else host


def _valid_name(name: str) -> bool:
    labels = name.split(".")
    return bool(name) and len(name) <= 253 and all(
        0 < len(label) <= 63 and label[0] != "-" and label[-1] != "-"
        and all(c.isascii() and (c.isalnum() or c == "-") for c in label)
        for label in labels
    )


def _parse_host(text: str) -> Host:
    port: int | None = None
    host = text
    if text.startswith("["):  # [v6]:port or [v6]
        end = text.find("]")
        if end < 0:
            raise ValueError(f"{text!r}: no closing ']'")
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"{text!r}: expected ':PORT' after ']'")
            port = _port(text, rest[1:])
        if not isinstance(_address(host), ipaddress.IPv6Address):
            raise ValueError(f"{text!r}: brackets hold an IPv6 address")
    elif text.count(":") == 1:
        host, _, raw_port = text.partition(":")
        port = _port(text, raw_port)
    elif text.count(":") > 1 and _address(text) is None:  # only a bare IPv6 address has several ':'
        raise ValueError(f"{text!r} is neither an address, a CIDR nor host[:port]")
    host = normal_host(host)
    if _address(host) is None and not _valid_name(host):
        raise ValueError(f"{text!r}: {host!r} is not a host name")
    return Host(host, port)


def _port(entry: str, raw: str) -> int:
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ValueError(f"{entry!r}: port {raw!r} is not a number from 1 to 65535")
    return int(raw)


@dataclass(frozen=True, slots=True)
class AllowList:
    networks: tuple[IpNetwork, ...] = ()
    hosts: tuple[Host, ...] = ()

    @classmethod
    def parse(cls, text: str | Iterable[str] | None) -> AllowList:
        """From the flag's comma-separated text (or a list of entries); ValueError names a bad entry."""
        raw = text.split(",") if isinstance(text, str) else list(text or ())
        networks: list[IpNetwork] = []
        hosts: list[Host] = []
        for item in raw:
            entry = str(item).strip()
            if not entry:
                continue
            if "/" in entry:
                try:
                    networks.append(ipaddress.ip_network(entry, strict=False))
                except ValueError as err:
                    raise ValueError(f"{entry!r} is not a CIDR: {err}") from None
            else:
                host = _parse_host(entry)
                address = _address(host.host)
                if address is not None and host.port is None:
                    networks.append(ipaddress.ip_network(address))
                else:
                    hosts.append(host)
        return cls(tuple(dict.fromkeys(networks)), tuple(dict.fromkeys(hosts)))

    def __str__(self) -> str:
        """The flag's form: what `parse` reads back as the same list."""
        return ",".join([*(str(n) for n in self.networks), *(str(h) for h in self.hosts)])

    def __bool__(self) -> bool:
        return bool(self.networks or self.hosts)

    # --- what it admits --------------------------------------------------------------------------
    def admits_address(self, address: str | IpAddress, port: int) -> bool:
        """An address literal on `port`: in a listed network, or listed as a host with that port."""
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # ::ffff:a.b.c.d is a.b.c.d
        if any(ip in net for net in self.networks):
            return True
        return any(h.host == str(ip) and h.admits_port(port) for h in self.hosts)

    def admits_name(self, name: str, port: int) -> bool:
        """A host name on `port`, listed by name."""
        host = normal_host(name)
        return any(h.host == host and h.admits_port(port) for h in self.hosts)

    def admits_resolved(self, name: str, port: int, address: str | IpAddress) -> bool:
        """One address `name` resolved to: the name is listed (and the address is not one only a
        network may admit), or the address is admitted itself."""
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
        if self.admits_address(ip, port):
            return True
        return self.admits_name(name, port) and not any(ip in net for net in _NEVER_BY_NAME)

    def describe(self) -> str:
        return str(self) or "empty: no destination is admitted"


def _narrow_networks(mine: Iterable[IpNetwork], theirs: Iterable[IpNetwork]) -> list[IpNetwork]:
    """The networks both lists admit: each pair's smaller one when one holds the other."""
    out: list[IpNetwork] = []
    for a in mine:
        for b in theirs:
            if a.version != b.version:
                continue
            if a.subnet_of(b):  # type: ignore[arg-type]
                out.append(a)
            elif b.subnet_of(a):  # type: ignore[arg-type]
                out.append(b)
    return out


def _narrow_host(host: Host, cluster: AllowList) -> Host | None:
    """The part of one host entry of a BMC's list that the cluster's list admits too."""
    address = _address(host.host)
    if address is not None and any(address in net for net in cluster.networks):
        return host
    for other in cluster.hosts:
        if other.host != host.host:
            continue
        if other.port is None or host.port == other.port:
            return host
        if host.port is None:
            return other
    return None


def narrow(cluster: AllowList, bmc: Iterable[str] | None) -> tuple[AllowList, list[str]]:
    """The controller's list narrowed by a BMC's `spec.redfish.eventDestinations` (None: not set, the
    controller's list as it is), and the BMC's entries that could not be read (they admit nothing)."""
    if bmc is None:
        return cluster, []
    entries: list[str] = []
    bad: list[str] = []
    for item in bmc:
        try:
            AllowList.parse([item])
            entries.append(str(item))
        except ValueError:
            bad.append(str(item))
    wanted = AllowList.parse(entries)
    networks = _narrow_networks(wanted.networks, cluster.networks)
    hosts = [h for h in (_narrow_host(h, cluster) for h in wanted.hosts) if h is not None]
    return AllowList(tuple(dict.fromkeys(networks)), tuple(dict.fromkeys(hosts))), bad
