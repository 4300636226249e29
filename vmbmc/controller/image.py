"""The kbmc pods' image: the controller's own, so one image (whatever registry, tag or digest an overlay
gives it) runs every pod. kustomize's `images:` rewrites only container `image` fields, so the controller
reads its own Pod (POD_NAME and POD_NAMESPACE from the downward API) instead of a flag naming a second
image. `--kbmc-image` overrides it.

Reading the Pod uses `list` with `fieldSelector=metadata.name=…` (the controller holds `list` on pods to
report why a kbmc pod does not start; a Deployment's pod names are generated, so `get` could not be
limited by name anyway).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from vmbmc.controller import kube
from vmbmc.k8s.client import ApiClient

log = logging.getLogger(__name__)
CONTAINER = "controller"  # deploy/controller.yaml's container name


class ImageUnknown(RuntimeError):
    pass


def container_image(pod: dict[str, Any]) -> str:
    """The image of the pod's `controller` container, or of its only container."""
    containers = (pod.get("spec") or {}).get("containers") or []
    chosen = next((c for c in containers if c.get("name") == CONTAINER), None)
    if chosen is None and len(containers) == 1:
        chosen = containers[0]
    if chosen is None or not chosen.get("image"):
        raise ImageUnknown(
            f"pod {pod.get('metadata', {}).get('name')} has no container named {CONTAINER!r}; "
            "pass --kbmc-image"
        )
    return str(chosen["image"])


async def own_image(api: ApiClient) -> str | None:
    """The image of this controller's pod, or None when it runs outside a pod (no POD_NAME and
    POD_NAMESPACE in its environment)."""
    name, namespace = os.environ.get("POD_NAME"), os.environ.get("POD_NAMESPACE")
    if not name or not namespace:
        return None
    out = await api.request(
        "GET", kube.path("Pod", namespace), params={"fieldSelector": f"metadata.name={name}"}
    )
    items = (out or {}).get("items") or []
    if not items:
        raise ImageUnknown(f"own pod {namespace}/{name} not found; pass --kbmc-image")
    image = container_image(items[0])
    log.info("kbmc pods run the controller's own image %s", image)
    return image


async def kbmc_image(api: ApiClient, override: str | None) -> str:
    """`--kbmc-image`, else the controller's own image, else (outside a pod: a developer's run) the
    image deploy/ names."""
    if override:
        return override
    image = await own_image(api)
    if image is not None:
        return image
    from vmbmc import manifests

    image = manifests.controller_image(manifests.deploy_documents())
    log.warning("not in a pod (POD_NAME/POD_NAMESPACE unset) and no --kbmc-image: kbmc pods get %s", image)
    return image
