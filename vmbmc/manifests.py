"""The manifests vmbmc ships: the CRD (`crds/`) and the kustomize base (`deploy/`).

A wheel carries copies of both in `vmbmc/_manifests/`, made when it is built (setup.py); a source
checkout (an editable install) has no copies and reads the top-level directories themselves. Both
are read through importlib.resources, so nothing depends on where the package is installed.
"""

from __future__ import annotations

import importlib.resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from vmbmc import kustomize

PACKAGED = "_manifests"
DIRECTORIES = ("crds", "deploy")
CONTROLLER_IMAGE = "vmbmc"  # the image name deploy/ uses before its `images:` rewrite


def root() -> Traversable:
    """The directory holding `crds/` and `deploy/`: the wheel's copies, else the checkout's."""
    packaged = importlib.resources.files("vmbmc").joinpath(PACKAGED)
    if packaged.joinpath("deploy").joinpath("kustomization.yaml").is_file():
        return packaged
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "deploy" / "kustomization.yaml").is_file():
        return checkout
    raise FileNotFoundError(
        "vmbmc's manifests are missing: this installation has neither vmbmc/_manifests (a wheel) nor a "
        "source checkout's deploy/ and crds/; reinstall vmbmc from its wheel"
    )


def crd_documents() -> list[dict[str, Any]]:
    """The CustomResourceDefinitions in `crds/`."""
    return [d for d in kustomize.render(root(), "crds") if d.get("kind") == "CustomResourceDefinition"]


def deploy_documents() -> list[dict[str, Any]]:
    """The objects `kubectl apply -k deploy/` creates, in its order (the CRD included)."""
    return kustomize.render(root(), "deploy")


def controller_image(objects: list[dict[str, Any]]) -> str:
    """The image the rendered controller Deployment names (after the kustomization's `images:`)."""
    for obj in objects:
        if obj.get("kind") == "Deployment":
            for container in obj["spec"]["template"]["spec"]["containers"]:
                return str(container["image"])
    raise LookupError("the manifests hold no Deployment")
