"""Build hook: the wheel carries copies of crds/ and deploy/ in vmbmc/_manifests/ (vmbmc/manifests.py
reads them), made here at build time so the top-level directories stay the only ones in the repository."""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
MANIFEST_DIRS = ("crds", "deploy")


class BuildPyWithManifests(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:  # an editable install reads the checkout's own directories
            return
        target = Path(self.build_lib) / "vmbmc" / "_manifests"
        shutil.rmtree(target, ignore_errors=True)
        for name in MANIFEST_DIRS:
            shutil.copytree(HERE / name, target / name)


setup(cmdclass={"build_py": BuildPyWithManifests})
