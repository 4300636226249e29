"""The emulator (an admin token, no real security boundary) listens on loopback only."""

from __future__ import annotations

import pytest

from vmbmc_devcluster.emulator.harness import EmulatorThread


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "192.168.0.1", "example.com", ""])
def test_non_loopback_addresses_are_refused(host: str) -> None:
    with pytest.raises(ValueError, match="loopback only"):
        EmulatorThread(host=host)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.10.0.5", "::1", "localhost"])
def test_loopback_addresses_are_accepted(host: str) -> None:
    assert EmulatorThread(host=host).host == host


def test_default_is_rbac_over_https_on_127_0_0_1() -> None:
    with EmulatorThread(kubevirt=False) as emu:
        assert emu.url.startswith("https://127.0.0.1:")
        assert emu.emulator.security.rbac_enabled
