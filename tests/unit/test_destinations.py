"""The event destinations allow-list (`--event-destinations`): what it reads, what it admits, how a BMC's
`spec.redfish.eventDestinations` narrows the controller's list, and the resolved-address check."""

from __future__ import annotations

import pytest

from vmbmc.destinations import AllowList, narrow
from vmbmc.redfish import egress


def test_parse_and_print_round_trip() -> None:
    text = "127.0.0.0/8, 10.1.2.3,[fd00::7]:8080,receiver.example.com,Ironic.Metal3.svc.:6385,fd00::/8"
    text += ",10.9.9.9:81"
    allow = AllowList.parse(text)
    assert [str(n) for n in allow.networks] == ["127.0.0.0/8", "10.1.2.3/32", "fd00::/8"]
    assert [str(h) for h in allow.hosts] == [
        "[fd00::7]:8080", "receiver.example.com", "ironic.metal3.svc:6385", "10.9.9.9:81"
    ]
    assert AllowList.parse(str(allow)) == allow
    assert not AllowList.parse("") and not AllowList.parse(None) and AllowList.parse(" , ") == AllowList()


@pytest.mark.parametrize("bad", ["10.0.0.0/33", "host:0", "host:99999", "ho st", "-bad.example", "[fd00::1",
                                 "[10.0.0.1]:80", "a:b:c", "host:http"])
def test_bad_entries_are_named(bad: str) -> None:
    with pytest.raises(ValueError, match="'"):
        AllowList.parse(f"127.0.0.0/8,{bad}")


def test_what_it_admits() -> None:
    allow = AllowList.parse("127.0.0.0/8,10.9.9.9:81,receiver.example.com,hook.example.com:8443")
    assert allow.admits_address("127.3.4.5", 1) and allow.admits_address("::ffff:127.0.0.1", 80)
    assert not allow.admits_address("::1", 80) and not allow.admits_address("192.168.1.50", 443)
    assert allow.admits_address("10.9.9.9", 81) and not allow.admits_address("10.9.9.9", 80)
    assert allow.admits_name("RECEIVER.example.com.", 1234)
    assert allow.admits_name("hook.example.com", 8443) and not allow.admits_name("hook.example.com", 443)
    assert not allow.admits_name("other.example.com", 80)
    # a listed name reaches its addresses, but never a link-local one (metadata services)
    assert allow.admits_resolved("receiver.example.com", 80, "10.20.30.40")
    assert not allow.admits_resolved("receiver.example.com", 80, "169.254.169.254")
    assert not allow.admits_resolved("other.example.com", 80, "10.20.30.40")
    assert allow.admits_resolved("other.example.com", 80, "127.0.0.1")  # its address is admitted
    assert not AllowList().admits_address("127.0.0.1", 80)  # empty by default: nothing


def test_narrowing_never_widens() -> None:
    cluster = AllowList.parse("10.0.0.0/8,127.0.0.0/8,hook.example.com,svc.example.com:443")
    same, bad = narrow(cluster, None)
    assert same == cluster and bad == []
    got, bad = narrow(cluster, ["10.1.0.0/16", "0.0.0.0/0", "192.168.0.0/16", "hook.example.com:8080",
                                "svc.example.com", "other.example.com", "10.2.3.4:99", "no good"])
    assert str(got).split(",") == ["10.1.0.0/16", "10.0.0.0/8", "127.0.0.0/8", "hook.example.com:8080",
                                   "svc.example.com:443", "10.2.3.4:99"]
    assert bad == ["no good"]
    nothing, _ = narrow(cluster, [])
    assert not nothing  # an empty list in the spec admits nothing
    assert not narrow(AllowList(), ["127.0.0.0/8"])[0]  # the controller's list is the bound


async def test_check_resolves_names() -> None:
    allow = AllowList.parse("127.0.0.0/8")
    await egress.check(allow, "http://127.0.0.1:8080/x")
    await egress.check(allow, "http://localhost:8080/x")  # resolves to 127.0.0.1 (and maybe ::1)
    for refused in ("http://192.168.1.50/", "https://[::1]/", "http://no-such-host.invalid/"):
        with pytest.raises(egress.Refused, match="--event-destinations"):
            await egress.check(allow, refused)
