"""No secret in a kbmc's log, at debug level, after everything that handles one: IPMI 1.5 and 2.0
logins, Redfish Basic and session logins (tokens issued, used, deleted), wrong passwords from a held
address, a rotated password. (Every other kbmc a test runs is checked when it stops:
kbmc_process.KbmcProcess.stop.)"""

from __future__ import annotations

from pathlib import Path

import httpx
from kbmc_process import serve_new_bmc
from machine_cluster import Cluster

from tests.log_secrets import kubeconfig_tokens, leaks
from vmbmc_devcluster.emulator.harness import EmulatorThread
from vmbmc_devcluster.testing.waiting import wait_until

WRONG = ("wrong-secret-1", "wrong-secret-2", "wrong-secret-3", "wrong-secret-4", "wrong-secret-5",
         "wrong-secret-6")
ROTATED = "rotated-pw-0042x"


def test_kbmc_log_holds_no_password_or_token(emu: EmulatorThread, cluster: Cluster, tmp_path: Path) -> None:
    served = serve_new_bmc(emu, cluster, tmp_path, "logs", redfish="https", extra=("--verbose",))
    kbmc, kubeconfig, url = served.kbmc, served.kubeconfig, served.redfish
    tokens: list[str] = []
    try:
        assert kbmc.ipmitool("chassis", "power", "status").returncode == 0
        assert kbmc.ipmitool("chassis", "power", "status", interface="lan").returncode == 0
        for wrong in WRONG[:3]:
            kbmc.ipmitool("chassis", "power", "status", interface="lan", password=wrong, extra=("-R", "1"))
        with httpx.Client(base_url=url, verify=False, timeout=15) as http:
            for wrong in WRONG[3:]:
                assert http.get("/redfish/v1/Systems", auth=(kbmc.user, wrong)).status_code == 401
            assert http.get("/redfish/v1/Systems", auth=(kbmc.user, kbmc.password)).status_code == 200
            login = http.post("/redfish/v1/SessionService/Sessions",
                              json={"UserName": kbmc.user, "Password": kbmc.password})
            assert login.status_code == 201
            tokens.append(login.headers["X-Auth-Token"])
            headers = {"X-Auth-Token": tokens[0]}
            assert http.get("/redfish/v1/Systems", headers=headers).status_code == 200
            assert http.delete(login.headers["Location"], headers=headers).status_code == 204
            # a rotated Secret: the new password is read from the file and works
            (tmp_path / "credentials" / "password").write_text(ROTATED + "\n")
            wait_until(lambda: http.get("/redfish/v1/Systems", auth=(kbmc.user, ROTATED)).status_code == 200,
                       15, "the rotated password")
            login = http.post("/redfish/v1/SessionService/Sessions",
                              json={"UserName": kbmc.user, "Password": ROTATED})
            tokens.append(login.headers["X-Auth-Token"])
        assert "failed-login limit reached" in kbmc.logs()  # the held path ran, and was logged
    finally:
        kbmc.stop()
    log = kbmc.logs()
    assert "DEBUG" in log or "debug" in log.lower()
    given = [kbmc.password, ROTATED, *WRONG, *tokens, *kubeconfig_tokens(kubeconfig)]
    assert leaks(log, given, kbmc.user) == []
