"""vmbmc.kustomize (what `vmbmc demo` renders deploy/ with, since a wheel has no kubectl) gives exactly
what `kubectl kustomize` gives, for the shipped kustomizations and for an overlay renaming the image."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from vmbmc import kustomize, manifests
from vmbmc_devcluster.testing.plugin import KUBECTL


def kubectl_kustomize(path: Path) -> list[dict]:
    out = subprocess.run([KUBECTL, "kustomize", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


@pytest.mark.parametrize("directory", ["deploy", "crds"])
def test_same_objects_in_the_same_order_as_kubectl(directory: str) -> None:
    assert kustomize.render(ROOT, directory) == kubectl_kustomize(ROOT / directory)


def test_manifests_module_renders_deploy_as_kubectl_does() -> None:
    assert manifests.deploy_documents() == kubectl_kustomize(ROOT / "deploy")
    assert manifests.controller_image(manifests.deploy_documents()) == "vmbmc:dev"


def test_overlay_with_namespace_and_images(tmp_path: Path) -> None:
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "resources": ["../base/deploy"],
                "namespace": "elsewhere",
                "images": [
                    {"name": "vmbmc", "newName": "registry.example:5000/v/vmbmc", "digest": "sha256:ab"}
                ],
            }
        )
    )
    base = tmp_path / "base"
    base.mkdir()
    for name in ("deploy", "crds"):
        (base / name).symlink_to(ROOT / name)
    ours = kustomize.render(tmp_path, "overlay")
    assert ours == kubectl_kustomize(overlay)
    assert manifests.controller_image(ours) == "registry.example:5000/v/vmbmc@sha256:ab"


def test_unsupported_fields_are_refused(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: []\ncommonLabels: {a: b}\n")
    with pytest.raises(kustomize.KustomizeError, match="commonLabels"):
        kustomize.render(tmp_path)


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("vmbmc", ("vmbmc", None, None)),
        ("vmbmc:dev", ("vmbmc", "dev", None)),
        ("localhost:5000/vmbmc", ("localhost:5000/vmbmc", None, None)),
        ("r.example/v/vmbmc:1.2.3@sha256:ff", ("r.example/v/vmbmc", "1.2.3", "sha256:ff")),
    ],
)
def test_split_image(ref: str, expected: tuple) -> None:
    assert kustomize.split_image(ref) == expected
