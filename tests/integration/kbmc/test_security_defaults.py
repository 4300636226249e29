"""The protocol security defaults (session auth types, cipher suites, lockout, session table), one test
each, on a real `vmbmc kbmc` process.

The controller-side defaults (generated passwords, inline credentials, NetworkPolicy, Pod Security,
resources, RBAC) are proven in tests/integration/controller and tests/contract; docs/security.md maps
every default to its test.
"""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from kbmc_process import PASSWORD, USER, KbmcProcess, serve_new_bmc
from machine_cluster import Cluster

from vmbmc_devcluster.emulator.harness import EmulatorThread

LIMIT_LOG = "failed-login limit reached"
ONE_TRY = ("-R", "1", "-N", "1")  # a refusal must not wait for ipmitool's retries


def _wrong_ipmi_login(kbmc: KbmcProcess) -> bool:
    """An IPMI 1.5 login with a wrong password; True if it failed. (Over RMCP+ ipmitool notices a wrong
    password itself in RAKP 2 and gives up without RAKP 3, so the BMC never sees that attempt fail.)"""
    return not _ok(kbmc.ipmitool("power", "status", interface="lan", password="wrong-pass", extra=ONE_TRY))


@pytest.fixture
def bmc(emu: EmulatorThread, cluster: Cluster, tmp_path: Path) -> Iterator[tuple[KbmcProcess, str]]:
    """A fresh kbmc (so a fresh failed-login count) serving IPMI and Redfish with default options."""
    served = serve_new_bmc(emu, cluster, tmp_path, "sec", redfish="https")
    yield served.kbmc, served.redfish
    served.kbmc.stop()


def _ok(proc: object) -> bool:
    return getattr(proc, "returncode", 1) == 0


def test_ipmi_15_sessions_use_md5_only(bmc: tuple[KbmcProcess, str]) -> None:
    kbmc, _ = bmc
    assert _ok(kbmc.ipmitool("-A", "MD5", "power", "status", interface="lan"))
    for auth_type in ("NONE", "PASSWORD", "MD2"):
        proc = kbmc.ipmitool("-A", auth_type, "power", "status", interface="lan", extra=ONE_TRY)
        assert not _ok(proc), (auth_type, proc.stdout)


def test_ipmi_20_offers_cipher_suites_3_and_17_only(bmc: tuple[KbmcProcess, str]) -> None:
    kbmc, _ = bmc
    accepted = {
        suite
        for suite in range(18)
        if _ok(kbmc.ipmitool("power", "status", extra=("-C", str(suite), *ONE_TRY)))
    }
    assert accepted == {3, 17}


def test_no_null_or_anonymous_user(bmc: tuple[KbmcProcess, str]) -> None:
    kbmc, _ = bmc
    for interface in ("lanplus", "lan"):
        proc = kbmc.ipmitool("power", "status", interface=interface, user="", password="", extra=("-R", "1"))
        assert not _ok(proc), interface
    # the real user still gets in
    assert _ok(kbmc.ipmitool("power", "status"))


def test_failed_login_limit_is_shared_logged_once_and_never_refuses_correct_credentials(
    bmc: tuple[KbmcProcess, str],
) -> None:
    kbmc, redfish = bmc
    systems = f"{redfish}/redfish/v1/Systems"
    with httpx.Client(verify=False, timeout=10) as http:  # the kbmc's self-signed certificate
        # 3 wrong IPMI logins and 2 wrong Redfish ones from 127.0.0.1 reach the limit of 5 together
        for _ in range(3):
            assert _wrong_ipmi_login(kbmc)
        assert LIMIT_LOG not in kbmc.logs()
        for _ in range(2):
            assert http.get(systems, auth=("admin", "wrong-password")).status_code == 401
        deadline = time.monotonic() + 5
        while LIMIT_LOG not in kbmc.logs() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert kbmc.logs().count(LIMIT_LOG) == 1
        # blocked: further failures are still answered (with one try, no retries), and not logged again
        assert _wrong_ipmi_login(kbmc)
        assert http.get(systems, auth=("admin", "wrong-password")).status_code == 401
        assert kbmc.logs().count(LIMIT_LOG) == 1
        # correct credentials are never refused, on either protocol, from the same address
        assert _ok(kbmc.ipmitool("power", "status")), kbmc.logs()[-2000:]
        assert _ok(kbmc.ipmitool("power", "status", interface="lan"))
        assert http.get(systems, auth=(USER, PASSWORD)).status_code == 200


def test_redfish_is_https_by_default(bmc: tuple[KbmcProcess, str]) -> None:
    _, redfish = bmc
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with urllib.request.urlopen(f"{redfish}/redfish/v1/", context=context, timeout=10) as answer:
        assert json.loads(answer.read())["@odata.id"] == "/redfish/v1"
    plain = redfish.replace("https://", "http://")
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        urllib.request.urlopen(f"{plain}/redfish/v1/", timeout=10).read()
