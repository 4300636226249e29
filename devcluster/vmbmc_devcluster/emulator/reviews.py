"""The review APIs: create-only resources that answer instead of being stored.

authorization.k8s.io/v1 SelfSubjectAccessReview, SelfSubjectRulesReview (`kubectl auth can-i`,
`--list`), SubjectAccessReview, LocalSubjectAccessReview; authentication.k8s.io/v1
SelfSubjectReview (`kubectl auth whoami`) and TokenReview.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from typing import Any

from vmbmc_devcluster.emulator.authn import AUTHENTICATED, UserInfo, rfc3339
from vmbmc_devcluster.emulator.errors import ApiError, bad_request, invalid
from vmbmc_devcluster.emulator.registry import ResourceType
from vmbmc_devcluster.emulator.requestinfo import Attributes

AUTHZ = "authorization.k8s.io"
AUTHN = "authentication.k8s.io"
_CREATE = ("create",)

SSAR = ResourceType(
    AUTHZ, "v1", "selfsubjectaccessreviews", "SelfSubjectAccessReview", False, served_verbs=_CREATE
)
SSRR = ResourceType(
    AUTHZ, "v1", "selfsubjectrulesreviews", "SelfSubjectRulesReview", False, served_verbs=_CREATE
)
SAR = ResourceType(AUTHZ, "v1", "subjectaccessreviews", "SubjectAccessReview", False, served_verbs=_CREATE)
LSAR = ResourceType(
    AUTHZ, "v1", "localsubjectaccessreviews", "LocalSubjectAccessReview", True, served_verbs=_CREATE
)
SSR = ResourceType(AUTHN, "v1", "selfsubjectreviews", "SelfSubjectReview", False, served_verbs=_CREATE)
TOKEN_REVIEW = ResourceType(AUTHN, "v1", "tokenreviews", "TokenReview", False, served_verbs=_CREATE)

# handler(emulator, namespace, body) → the answered object
CreateHandler = Callable[[Any, str, dict], dict]


def _caller() -> UserInfo:
    from vmbmc_devcluster.emulator.access import CURRENT_USER

    user = CURRENT_USER.get()
    if user is None:  # reached without the middleware (an in-process call): the loopback admin
        from vmbmc_devcluster.emulator.authn import ADMIN

        return ADMIN
    return user


def _answer(rt: ResourceType, body: dict, status: dict, namespace: str = "") -> dict:
    meta = copy.deepcopy(body.get("metadata") or {})
    if not isinstance(meta, dict):
        meta = {}
    meta["creationTimestamp"] = rfc3339(time.time())
    if namespace:
        meta["namespace"] = namespace
    return {
        "kind": rt.kind,
        "apiVersion": rt.api_version,
        "metadata": meta,
        "spec": copy.deepcopy(body.get("spec") or {}),
        "status": status,
    }


_JSON_TYPES = {dict: "object", list: "array", str: "string", bool: "bool", int: "number", float: "number"}
_STRING_FIELDS = {
    "resourceAttributes": ("namespace", "verb", "group", "version", "resource", "subresource", "name"),
    "nonResourceAttributes": ("path", "verb"),
}


def _cannot_unmarshal(rt: ResourceType, value: Any, go_field: str, go_type: str) -> ApiError:
    """kube-apiserver's 400 for a field of the wrong JSON type (its decoder fails before any check)."""
    json_type = _JSON_TYPES.get(type(value), "value")
    return bad_request(
        f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: json: cannot unmarshal '
        f"{json_type} into Go struct field {go_field} of type {go_type}"
    )


def _typed_spec(rt: ResourceType, body: dict) -> dict:
    """The body's spec (null → {}) once every field the review reads has its Go type; else the 400 the
    decoder answers. A JSON null is Go's zero value, as upstream."""
    spec = body.get("spec")
    if spec is None:
        return {}
    if not isinstance(spec, dict):
        raise _cannot_unmarshal(rt, spec, f"{rt.kind}.spec", f"v1.{rt.kind.removeprefix('Local')}Spec")
    for part, names in _STRING_FIELDS.items():
        attrs = spec.get(part)
        if attrs is None:
            continue
        go_struct = part[0].upper() + part[1:]
        if not isinstance(attrs, dict):
            raise _cannot_unmarshal(rt, attrs, f"{rt.kind}Spec.spec.{part}", f"v1.{go_struct}")
        for name in names:
            value = attrs.get(name)
            if value is not None and not isinstance(value, str):
                raise _cannot_unmarshal(rt, value, f"{go_struct}.spec.{part}.{name}", "string")
    for name in ("user", "uid", "namespace", "token"):
        value = spec.get(name)
        if value is not None and not isinstance(value, str):
            raise _cannot_unmarshal(rt, value, f"{rt.kind}Spec.spec.{name}", "string")
    groups = spec.get("groups")
    if groups is not None and not (isinstance(groups, list) and all(isinstance(g, str) for g in groups)):
        raise _cannot_unmarshal(rt, groups, f"{rt.kind}Spec.spec.groups", "[]string")
    extra = spec.get("extra")
    if extra is not None:
        if not isinstance(extra, dict):
            raise _cannot_unmarshal(rt, extra, f"{rt.kind}Spec.spec.extra", "map[string]v1.ExtraValue")
        for value in extra.values():
            if value is not None and not isinstance(value, list):
                raise _cannot_unmarshal(rt, value, f"{rt.kind}Spec.spec.extra", "v1.ExtraValue")
            if any(not isinstance(x, str) for x in value or ()):
                bad = next(x for x in value if not isinstance(x, str))
                raise _cannot_unmarshal(rt, bad, f"{rt.kind}Spec.spec.extra", "string")
    return spec


def _attributes(rt: ResourceType, spec: Any) -> Attributes:
    if not isinstance(spec, dict):
        spec = {}
    res, non = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
    if res is not None and non is not None:
        raise invalid(
            rt,
            "",
            [
                {
                    "reason": "FieldValueInvalid",
                    "field": "spec.nonResourceAttributes",
                    "message": f"Invalid value: {json.dumps(non)}: cannot be specified in combination with "
                    "resourceAttributes",
                }
            ],
        )
    if res is None and non is None:
        raise invalid(
            rt,
            "",
            [
                {
                    "reason": "FieldValueInvalid",
                    "field": "spec.resourceAttributes",
                    "message": 'Invalid value: "null": exactly one of nonResourceAttributes or '
                    "resourceAttributes must be specified",
                }
            ],
        )
    if non is not None:
        if not isinstance(non, dict):
            raise bad_request("spec.nonResourceAttributes must be an object")
        return Attributes(verb=str(non.get("verb", "")), path=str(non.get("path", "")))
    if not isinstance(res, dict):
        raise bad_request("spec.resourceAttributes must be an object")
    return Attributes(
        verb=str(res.get("verb", "")),
        resource_request=True,
        api_group=str(res.get("group", "")),
        api_version=str(res.get("version", "")),
        namespace=str(res.get("namespace", "")),
        resource=str(res.get("resource", "")),
        subresource=str(res.get("subresource", "")),
        name=str(res.get("name", "")),
    )


def _decide(emulator: Any, user: UserInfo, attrs: Attributes) -> dict[str, Any]:
    decision = emulator.security.authorize(user, attrs)
    status: dict[str, Any] = {"allowed": decision.allowed}
    if decision.reason:
        status["reason"] = decision.reason
    return status


def _subject(spec: dict) -> UserInfo:
    groups = spec.get("groups") or []
    extra = spec.get("extra") or {}
    return UserInfo(
        str(spec.get("user", "")),
        tuple(str(g) for g in groups) if isinstance(groups, list) else (),
        str(spec.get("uid", "")),
        extra if isinstance(extra, dict) else {},
    )


def self_subject_access_review(emulator: Any, namespace: str, body: dict) -> dict:
    attrs = _attributes(SSAR, _typed_spec(SSAR, body))
    return _answer(SSAR, body, _decide(emulator, _caller(), attrs))


_NO_SUBJECT = {
    "reason": "FieldValueInvalid",
    "field": "spec.user",
    "message": 'Invalid value: "": at least one of user or group must be specified',
}


def subject_access_review(emulator: Any, namespace: str, body: dict) -> dict:
    spec = _typed_spec(SAR, body)
    attrs = _attributes(SAR, spec)
    if not spec.get("user") and not spec.get("groups"):
        raise invalid(SAR, "", [_NO_SUBJECT])
    return _answer(SAR, body, _decide(emulator, _subject(spec), attrs))


def local_subject_access_review(emulator: Any, namespace: str, body: dict) -> dict:
    """As upstream: the object's namespace defaults to the URL's (another one is a 400), then
    ValidateLocalSubjectAccessReview's 422s: neither or both attributes, no user or group, a
    resourceAttributes.namespace other than metadata.namespace, nonResourceAttributes at all."""
    spec = _typed_spec(LSAR, body)
    meta = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
    if meta.get("namespace") not in (None, "", namespace):
        raise bad_request(
            "the namespace of the provided object does not match the namespace sent on the request"
        )
    attrs = _attributes(LSAR, spec)
    causes = []
    if not spec.get("user") and not spec.get("groups"):
        causes.append(_NO_SUBJECT)
    if attrs.resource_request and attrs.namespace != namespace:
        causes.append(
            {
                "reason": "FieldValueInvalid",
                "field": "spec.resourceAttributes.namespace",
                "message": f"Invalid value: {json.dumps(attrs.namespace)}: must match metadata.namespace",
            }
        )
    if not attrs.resource_request:
        non = json.dumps(spec.get("nonResourceAttributes"))
        causes.append(
            {
                "reason": "FieldValueInvalid",
                "field": "spec.nonResourceAttributes",
                "message": f"Invalid value: {non}: disallowed on this kind of request",
            }
        )
    if causes:
        raise invalid(LSAR, "", causes)
    return _answer(LSAR, body, _decide(emulator, _subject(spec), attrs), namespace)


def self_subject_rules_review(emulator: Any, namespace: str, body: dict) -> dict:
    spec = _typed_spec(SSRR, body)
    ns = str(spec.get("namespace") or "")
    if not ns:
        raise bad_request("no namespace on request")
    security = emulator.security
    if not security.rbac_enabled:  # the AlwaysAllow authorizer's RulesFor
        status: dict[str, Any] = {
            "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
            "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
            "incomplete": False,
        }
        return _answer(SSRR, body, status)
    rules, errors = security.rules.rules_for(_caller(), ns)
    resource_rules, non_resource_rules = [], []
    for rule in rules:
        if rule.resources:
            entry = {
                "verbs": list(rule.verbs),
                "apiGroups": list(rule.api_groups),
                "resources": list(rule.resources),
            }
            if rule.resource_names:
                entry["resourceNames"] = list(rule.resource_names)
            resource_rules.append(entry)
        if rule.non_resource_urls:
            non_resource_rules.append(
                {"verbs": list(rule.verbs), "nonResourceURLs": list(rule.non_resource_urls)}
            )
    status = {"resourceRules": resource_rules, "nonResourceRules": non_resource_rules, "incomplete": False}
    if errors:
        text = str(errors[0]) if len(errors) == 1 else "[" + ", ".join(str(e) for e in errors) + "]"
        status["evaluationError"] = text
    return _answer(SSRR, body, status)


def self_subject_review(emulator: Any, namespace: str, body: dict) -> dict:
    answer = _answer(SSR, body, {"userInfo": _caller().as_review_user()})
    answer.pop("spec")
    return answer


def token_review(emulator: Any, namespace: str, body: dict) -> dict:
    spec = _typed_spec(TOKEN_REVIEW, body)
    token = str(spec.get("token") or "")
    status: dict[str, Any] = {"user": {}}
    try:
        user = emulator.security.authn.authenticate(f"Bearer {token}") if token else None
    except ApiError:
        user = None
    if user is not None and AUTHENTICATED in user.groups:
        status = {"authenticated": True, "user": user.as_review_user()}
    else:
        status["error"] = "[invalid bearer token, token lookup failed]"
    return _answer(TOKEN_REVIEW, body, status)


HANDLERS: dict[ResourceType, CreateHandler] = {
    SSAR: self_subject_access_review,
    SSRR: self_subject_rules_review,
    SAR: subject_access_review,
    LSAR: local_subject_access_review,
    SSR: self_subject_review,
    TOKEN_REVIEW: token_review,
}


def install_reviews(emulator: Any) -> None:
    for rt, handler in HANDLERS.items():
        emulator.registry.register(rt)
        emulator.create_handlers[rt.key] = handler
