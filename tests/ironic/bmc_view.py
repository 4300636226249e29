"""What vmbmc shows of one demo BMC while Ironic drives it, read as an operator reads it: the VM's state
through the BMC itself (ipmitool, Redfish over httpx), the cluster through kubectl (the BMC's Events, the
DataVolume behind its virtual CD)."""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any

import httpx

from vmbmc_devcluster.testing.plugin import KUBECTL
from vmbmc_devcluster.testing.waiting import wait_until

REQUEST_ID = re.compile(r"\(request ([0-9a-zA-Z-]+)\)")
EVENT_WAIT = 30.0  # seconds for a step's outcome Events (the controller's) to follow its requests


class BmcView:
    def __init__(self, bmc: dict[str, Any], kubeconfig: str) -> None:
        self.bmc = bmc
        self.kubeconfig = kubeconfig
        self.namespace, self.name = bmc["bmc"].split("/")
        self.vm_namespace, self.vm = bmc["vm"].split("/")
        self.system = f"{bmc['redfish']}/Systems/{self.vm}"
        self.redfish = httpx.Client(verify=False, auth=(bmc["username"], bmc["password"]), timeout=30)
        self._seen: set[str] = set()

    # --- the BMC's own answers ------------------------------------------------------------------------
    def get(self, path: str = "") -> dict[str, Any]:
        r = self.redfish.get(f"{self.system}{path}")
        assert r.status_code == 200, r.text
        return dict(r.json())

    def power(self) -> str:
        return str(self.get()["PowerState"])

    def boot(self) -> tuple[str, str, str]:
        """(BootSourceOverrideTarget, ...Enabled, ...Mode) as Redfish reads them."""
        b = self.get()["Boot"]
        return b["BootSourceOverrideTarget"], b["BootSourceOverrideEnabled"], b["BootSourceOverrideMode"]

    def media(self) -> dict[str, Any]:
        return self.get("/VirtualMedia/Cd")

    def ipmitool(self, *args: str) -> str:
        ipmi = self.bmc["ipmi"]
        out = subprocess.run(
            ["ipmitool", "-I", "lanplus", "-H", ipmi["host"], "-p", str(ipmi["port"]),
             "-U", self.bmc["username"], "-P", self.bmc["password"], *args],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert out.returncode == 0, (args, out.stdout, out.stderr)
        return out.stdout

    def ipmi_power(self) -> str:
        return self.ipmitool("chassis", "power", "status").strip()

    def ipmi_boot_flags(self) -> list[str]:
        """`chassis bootparam get 5`'s flag lines: "Boot Flag Valid", "BIOS EFI boot", "Force PXE", …"""
        text = self.ipmitool("chassis", "bootparam", "get", "5")
        flags = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("- ")]
        return [f.lstrip("- ").split(" : ")[-1].strip() for f in flags]

    # --- the cluster ----------------------------------------------------------------------------------
    def kubectl_json(self, *args: str) -> dict[str, Any] | None:
        out = subprocess.run(
            [KUBECTL, "--kubeconfig", self.kubeconfig, "get", *args, "-o", "json"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        if out.returncode != 0:
            assert "NotFound" in out.stderr, out.stderr
            return None
        return dict(json.loads(out.stdout))

    def data_volume(self) -> dict[str, Any] | None:
        return self.kubectl_json("datavolume", "-n", self.vm_namespace, f"vmbmc-{self.name}-media")

    def events(self) -> list[dict[str, Any]]:
        """The BMC's Events, oldest first by their microsecond eventTime."""
        doc = self.kubectl_json("events", "-n", self.namespace)
        assert doc is not None
        mine = [e for e in doc["items"] if e["involvedObject"].get("name") == self.name]
        return sorted(mine, key=lambda e: (e.get("eventTime") or "", e["metadata"]["name"]))

    def mark(self) -> None:
        """From here on, `expect_events` sees only Events that are new."""
        self._seen = {e["metadata"]["name"] for e in self.events()}

    def _grouped(self) -> list[tuple[str, list[str]]]:
        """The new Events, one group per request, in the order the requests were made: (the request's
        reason, the reasons of the Events naming its id after it). An Event that names no request (a
        change from outside the BMC) is a group of its own, as is an outcome whose request came before
        the mark: both then fail the comparison."""
        groups: dict[str, tuple[str, list[str]]] = {}
        for e in self.events():
            if e["metadata"]["name"] in self._seen:
                continue
            found = REQUEST_ID.search(e.get("message") or "")
            key = found.group(1) if found else e["metadata"]["name"]
            if key in groups:
                groups[key][1].append(e["reason"])
            else:  # the first Event naming a request id: the request itself, as its cause comes first
                groups[key] = (e["reason"], [])
        # a request's outcomes come from two writers (the kbmc's MediaEjected, the controller's
        # BootDeviceChanged): no order between them
        return [(request, sorted(outcomes)) for request, outcomes in groups.values()]

    def expect_events(self, expected: list[tuple[str, list[str]]], step: str) -> None:
        """The Events since the last mark are exactly `expected`, in causal order: the requests in the order
        Ironic made them (the kbmc records each before it acts), each followed by its outcomes (in any
        order among themselves). Waits a bounded time for the outcomes."""
        expected = [(request, sorted(outcomes)) for request, outcomes in expected]
        try:
            wait_until(lambda: self._grouped() == expected, EVENT_WAIT, f"the BMC's Events for {step}")
        except AssertionError:
            lines = [f"{e['eventTime']} {e['reason']}: {e['message']}" for e in self.events()
                     if e["metadata"]["name"] not in self._seen]  # fmt: skip
            raise AssertionError(
                f"{step}: expected Events {expected}, got {self._grouped()}:\n" + "\n".join(lines)
            ) from None
        self.mark()
