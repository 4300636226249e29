"""A seeded Redfish request fuzzer: methods, paths, headers and bodies mutated around the service's
resources, with and without valid credentials, and raw malformed HTTP. Bodies sent with valid
credentials never hold a valid value (a junk alphabet), so a request can never legitimately change
the machine: any state change is a bug."""

from __future__ import annotations

import base64
import json
import random
from dataclasses import dataclass
from typing import Any

PATHS = [
    "/redfish", "/redfish/v1", "/redfish/v1/", "/redfish/v1/$metadata", "/redfish/v1/odata",
    "/redfish/v1/Systems", "/redfish/v1/Systems/{id}",
    "/redfish/v1/Systems/{id}/Actions/ComputerSystem.Reset",
    "/redfish/v1/Systems/{id}/EthernetInterfaces", "/redfish/v1/Systems/{id}/Processors/0",
    "/redfish/v1/Systems/{id}/SimpleStorage", "/redfish/v1/Systems/{id}/SecureBoot",
    "/redfish/v1/Systems/{id}/Bios", "/redfish/v1/Systems/{id}/Bios/Settings",
    "/redfish/v1/Managers", "/redfish/v1/Managers/BMC",
    "/redfish/v1/Managers/BMC/Actions/Manager.Reset", "/redfish/v1/Chassis/1",
    "/redfish/v1/AccountService", "/redfish/v1/AccountService/Accounts/1", "/redfish/v1/SessionService",
    "/redfish/v1/SessionService/Sessions", "/redfish/v1/SessionService/Sessions/{junk}",
    "/redfish/v1/Registries/Base",
]
METHODS = ["GET", "GET", "GET", "HEAD", "POST", "PATCH", "PUT", "DELETE", "OPTIONS", "TRACE"]
# State-changing POST/PATCH endpoints receive bodies whose values are never valid: the fuzzer
# must not be able to power the VM on by luck.
_JUNK = "fz-#%&~\u00e9\u2603\0<>'\""


@dataclass
class Fuzzed:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes | None


def _junk_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(7 if depth < 3 else 4)
    if kind == 0:
        return rng.choice((None, True, False, 0, -1, 2**63, 1.5e308))
    if kind in (1, 2, 3):
        return "fz-" + "".join(rng.choice(_JUNK) for _ in range(rng.randint(0, 40)))
    if kind == 4:
        return [_junk_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    keys = ["ResetType", "Boot", "BootSourceOverrideTarget", "BootSourceOverrideEnabled", "UserName",
            "Password", "AssetTag", "@odata.id", "fz", "Oem", "Attributes", "@Redfish.SettingsApplyTime"]
    return {rng.choice(keys): _junk_value(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def _body(rng: random.Random) -> bytes:
    kind = rng.randrange(5)
    if kind == 0:
        return rng.randbytes(rng.randint(0, 200))
    if kind == 1:
        text = json.dumps(_junk_value(rng))
        return text[: rng.randint(0, len(text))].encode()  # truncated JSON
    if kind == 2:
        return b"{" * rng.randint(1, 2000)  # deep nesting
    return json.dumps(_junk_value(rng, 2 if kind == 3 else 3), ensure_ascii=rng.random() < 0.5).encode()


def _path(rng: random.Random, system_id: str) -> str:
    path = rng.choice(PATHS).replace("{id}", rng.choice((system_id, "nope", "..", "%2e%2e", "x" * 300)))
    path = path.replace("{junk}", "".join(rng.choice("abc%/.") for _ in range(8)))
    r = rng.random()
    if r < 0.1:
        path += "/" + "".join(rng.choice("aZ09%-._~!$&'()*+,;=:@") for _ in range(rng.randint(1, 30)))
    elif r < 0.2:
        path += "?" + rng.choice(("$expand=*", "only", "$select=Id", "a=b&c", "%zz", "$top=-1"))
    elif r < 0.25:
        path = path.replace("/", "//")
    return path


def requests(seed: int, count: int, user: str, password: str, system_id: str) -> list[Fuzzed]:
    rng = random.Random(seed)
    out = []
    wrong = 0
    for _ in range(count):
        method = rng.choice(METHODS)
        headers: dict[str, str] = {}
        auth = rng.choice((0, 0, 0, 1, 2, 3, 4, 5))  # valid credentials half the time: reach the resources
        if auth == 1:  # a few wrong passwords only: the sixth would start the 2 s failed-login hold
            wrong += 1
            auth = 1 if wrong <= 4 else 0
        if auth == 0:
            headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        elif auth == 1:
            headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:fz-guess".encode()).decode()
        elif auth == 2:
            headers["Authorization"] = rng.choice(("Basic", "Basic !!!", "Bearer x", "Basic " + "A" * 5000))
        elif auth == 3:
            headers["X-Auth-Token"] = rng.choice(("", "0" * 64, "fz", "x" * 3000))
        if rng.random() < 0.3:
            headers["Content-Type"] = rng.choice((
                "application/json", "text/plain", "application/json; charset=latin-1",
                "multipart/form-data; boundary=x",
            ))
        if rng.random() < 0.2:
            headers["OData-Version"] = rng.choice(("4.0", "3.0", "", "4.0, 4.0"))
        if rng.random() < 0.2:
            headers["If-Match"] = rng.choice(("*", '"fz"', 'W/"x"', ""))
        body = _body(rng) if method in ("POST", "PATCH", "PUT") or rng.random() < 0.05 else None
        out.append(Fuzzed(method, _path(rng, system_id), headers, body))
    return out


def raw_requests(seed: int, count: int) -> list[bytes]:
    """Malformed HTTP/1.1 that h11 rejects (or must survive)."""
    rng = random.Random(seed)
    shapes = [
        b"GET /redfish/v1 HTTP/1.1\r\nHost bmc\r\n\r\n",
        b"GET /redfish/v1 HTTP/9.9\r\nHost: bmc\r\n\r\n",
        b"GET\r\n\r\n",
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + bytes(32),
        b"POST /redfish/v1/SessionService/Sessions HTTP/1.1\r\nHost: bmc\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GET /redfish/v1 HTTP/1.1\r\nHost: bmc\r\n" + b"X: " + b"a" * 70000 + b"\r\n\r\n",
        b"GET /redfish/v1 HTTP/1.1\r\n" + b"\r\n".join(b"H%d: v" % i for i in range(500)) + b"\r\n\r\n",
        b"G\x00T / HTTP/1.1\r\n\r\n",
    ]
    out = []
    for _ in range(count):
        data = bytearray(rng.choice(shapes))
        if rng.random() < 0.5 and data:
            data[rng.randrange(len(data))] = rng.getrandbits(8)
        out.append(bytes(data))
    return out
