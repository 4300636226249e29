"""Fixtures of the Ironic test (module scope: one Ironic, one demo, one image server for both nodes).

- `ironic_venv`: the Ironic venv, built from tests/ironic/requirements.txt when missing (ironic_venv.py).
- `images`: an HTTP server on 127.0.0.1 serving Ironic's `[deploy] http_root`, where the test's boot ISO,
  kernel and ramdisk lie too, and where Ironic puts the ISOs it hands to the BMCs.
- `demo`: `vmbmc demo --redfish --vms 2` (the controller's kbmc pods), as tests/demo_process.py runs it.
- `ironic`: the standalone Ironic (ironic_service.py), started and stopped around the module.
Each is stopped by its fixture, on failure too.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.image_server import serve_images
from tests.ironic.ironic_service import Ironic, listening, session_pids
from tests.ironic.ironic_venv import ensure_venv
from vmbmc_devcluster.testing.demo_process import DemoProcess, start_demo

DEMO_TIMEOUT = 120.0  # seconds until every BMC of the demo answers, on a loaded machine


@dataclass
class Images:
    root: Path  # Ironic's http_root
    url: str

    @property
    def boot_iso(self) -> str:
        return f"{self.url}/small.iso"


@pytest.fixture(scope="module")
def ironic_venv() -> Path:
    missing = [tool for tool in ("socat", "ipmitool") if shutil.which(tool) is None]
    assert not missing, f"the Ironic test needs {missing} (Debian: apt-get install -y socat ipmitool)"
    return ensure_venv()


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Images]:
    root = tmp_path_factory.mktemp("http_root")
    (root / "vmlinuz").write_bytes(b"a kernel the VM would fetch over TFTP\n")
    (root / "initrd").write_bytes(b"a ramdisk the VM would fetch over TFTP\n")
    with serve_images(root) as url:  # writes small.iso, a valid ISO 9660 image
        yield Images(root, url)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoProcess]:
    tmp = tmp_path_factory.mktemp("demo")
    demo = start_demo(tmp, "--vms", "2", "--redfish", "--workdir", str(tmp / "work"), timeout=DEMO_TIMEOUT)
    try:
        yield demo
    finally:
        demo.stop()


@pytest.fixture(scope="module")
def ironic(
    ironic_venv: Path, images: Images, demo: DemoProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Ironic]:
    service = Ironic(ironic_venv, tmp_path_factory.mktemp("ironic"), images.root, images.url)
    try:
        service.start()
        assert service.proc is not None
        addresses = listening(session_pids(service.proc.pid))
        assert addresses and all(a.startswith("127.0.0.1:") for a in addresses), addresses
        yield service
    finally:
        service.stop()
    if service.proc is not None:
        assert session_pids(service.proc.pid) == [], "a process Ironic started outlived it"
