"""A tiny kopf operator for the contract test: create → status → Event, delete → finalizer released."""

from __future__ import annotations

import kopf


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: object) -> None:
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="test.vmbmc.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="test.vmbmc.io")
    settings.watching.server_timeout = 10


@kopf.on.create("example.vmbmc.io", "v1", "gadgets")
def created(patch: kopf.Patch, body: kopf.Body, **_: object) -> None:
    patch.status["phase"] = "Created"
    kopf.info(body, reason="Greeted", message="hello from kopf")


@kopf.on.delete("example.vmbmc.io", "v1", "gadgets")
def deleted(**_: object) -> None:
    return None
