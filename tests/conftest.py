"""The product's tests: the `emulator` and `kubectl` fixtures come from the development distribution's
pytest plugin (vmbmc_devcluster.testing.plugin, loaded by the addopts in pyproject.toml), which reaches
the emulated cluster as a test reaches a real one."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def pytest_configure(config: object) -> None:
    """A `sushy.Sushy` that a test dropped is closed by the garbage collector whenever it next runs, in
    whichever thread: its `__del__` DELETEs its Redfish session, retrying ten times against a BMC that
    is long gone. During a later test that stalls a BMC's event loop, or a client between its connect
    and its request (the BMC then rightly closes the silent connection). Tests close what they must."""
    import sushy.main

    sushy.main.Sushy.__del__ = lambda self: None  # type: ignore[method-assign]
