"""The product's tests: the `emulator` and `kubectl` fixtures come from the development distribution's
pytest plugin (vmbmc_devcluster.testing.plugin, loaded by the addopts in pyproject.toml), which reaches
the emulated cluster as a test reaches a real one."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
