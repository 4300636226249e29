"""Authorization attributes of a request, derived exactly as kube-apiserver's RequestInfoFactory does.

RBAC decisions depend on this mapping (GET on a collection is `list`, `?watch` is `watch`, a
`metadata.name` field selector names the object of a list or watch, DELETE on a collection is
`deletecollection`, `/api/v1` and `/apis/G/V` are non-resource paths), so it follows
k8s.io/apiserver/pkg/endpoints/request/requestinfo.go line by line rather than the emulator's router.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from vmbmc_devcluster.emulator.errors import ApiError
from vmbmc_devcluster.emulator.selectors import field_matcher, name_from_field_selector

API_PREFIXES = ("api", "apis")
GROUPLESS_PREFIXES = ("api",)
SPECIAL_VERBS = ("proxy", "watch")
SPECIAL_VERBS_NO_SUBRESOURCES = ("proxy",)
NAMESPACE_SUBRESOURCES = ("status", "finalize")
_METHOD_VERBS = {
    "POST": "create",
    "GET": "get",
    "HEAD": "get",
    "PUT": "update",
    "PATCH": "patch",
    "DELETE": "delete",
}


@dataclass(frozen=True)
class Attributes:
    """What an authorizer sees: the verb and either a resource or a non-resource path."""

    verb: str
    path: str = ""
    resource_request: bool = False
    api_group: str = ""
    api_version: str = ""
    namespace: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""

    @property
    def combined_resource(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource


def _valid_path_segment(name: str) -> bool:
    return name not in (".", "..") and "/" not in name and "%" not in name


def _watch_param(value: str) -> bool:
    # metav1's []string → bool conversion: only "false", "0" and "" are false
    return value.lower() not in ("false", "0", "")


def request_attributes(method: str, path: str, query: Mapping[str, str]) -> Attributes:
    parts = [p for p in path.strip("/").split("/") if p]
    non_resource = Attributes(verb=method.lower(), path=path)
    if len(parts) < 3 or parts[0] not in API_PREFIXES:
        return non_resource
    prefix, parts = parts[0], parts[1:]
    group = ""
    if prefix not in GROUPLESS_PREFIXES:
        if len(parts) < 3:
            return non_resource
        group, parts = parts[0], parts[1:]
    version, parts = parts[0], parts[1:]

    if parts and parts[0] in SPECIAL_VERBS:
        if len(parts) < 2:
            raise ApiError(404, "NotFound", f"unable to determine kind and namespace from url, {path}")
        verb, parts = parts[0], parts[1:]
    else:
        verb = _METHOD_VERBS.get(method.upper(), "")

    namespace = ""
    if parts and parts[0] == "namespaces" and len(parts) > 1:
        namespace = parts[1]
        # /namespaces/NS/status and /finalize are the Namespace's own subresources
        if len(parts) > 2 and parts[2] not in NAMESPACE_SUBRESOURCES:
            parts = parts[2:]

    resource = name = subresource = ""
    if len(parts) >= 3 and verb not in SPECIAL_VERBS_NO_SUBRESOURCES:
        subresource = parts[2]
    if len(parts) >= 2:
        name = parts[1]
    if len(parts) >= 1:
        resource = parts[0]

    if not name and verb == "get":
        verb = "watch" if _watch_param(query.get("watch", "")) else "list"
        selector = query.get("fieldSelector")
        try:
            field_matcher(selector)  # an unparsable selector names nothing (upstream: decode error → list)
            selected = name_from_field_selector(selector)
        except ApiError:
            selected = None
        if selected and _valid_path_segment(selected):
            name = selected
    if not name and verb == "delete":
        verb = "deletecollection"
    return Attributes(
        verb=verb,
        path=path,
        resource_request=True,
        api_group=group,
        api_version=version,
        namespace=namespace,
        resource=resource,
        subresource=subresource,
        name=name,
    )
