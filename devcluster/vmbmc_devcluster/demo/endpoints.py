"""The demo's endpoints file: JSON of one fixed shape, written atomically once every BMC answers."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class BmcEndpoint:
    vm: str  # "NS/NAME"
    bmc: str | None  # "NS/NAME" of the VirtualMachineBMC, None in standalone mode
    ipmi_host: str | None  # None while no IPMI front end serves this BMC
    ipmi_port: int | None
    redfish: str | None  # base URL ".../redfish/v1" or None
    username: str
    password: str

    def as_json(self) -> dict[str, object]:
        return {
            "vm": self.vm,
            "bmc": self.bmc,
            "ipmi": None if self.ipmi_host is None else {"host": self.ipmi_host, "port": self.ipmi_port},
            "redfish": self.redfish,
            "username": self.username,
            "password": self.password,
        }


def write_endpoints(path: str | os.PathLike[str], kubeconfig: str, bmcs: list[BmcEndpoint]) -> None:
    """Write the file atomically (temporary file in the same directory, then rename)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    doc = {"kubeconfig": str(kubeconfig), "bmcs": [b.as_json() for b in bmcs]}
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
        os.chmod(tmp, 0o600)  # it holds passwords
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
