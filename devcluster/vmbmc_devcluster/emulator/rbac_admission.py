"""What kube-apiserver's rbac storage does on create/update: validation, then escalation prevention.

Validation (pkg/apis/rbac/validation) runs in every mode. Escalation prevention runs under RBAC:
creating or updating a Role/ClusterRole needs the rules it grants (or `escalate` on it); a binding
needs the rules of the role it references (or `bind` on that role). system:masters and the
emulator's own controllers are exempt (rbacregistry.EscalationAllowed).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from vmbmc_devcluster.emulator.authn import UserInfo
from vmbmc_devcluster.emulator.errors import ApiError, invalid
from vmbmc_devcluster.emulator.rbac import ALL, GROUP, Rule, go_quote_list, rules_of
from vmbmc_devcluster.emulator.requestinfo import Attributes

ROLE_KINDS = ("Role", "ClusterRole")
SUBJECT_KINDS = ("ServiceAccount", "User", "Group")


# --- validation ---------------------------------------------------------------------------------------
def _cause(reason: str, field: str, message: str) -> dict[str, str]:
    return {"reason": reason, "message": message, "field": field}


def _shown(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else f'"{value}"'


def validate_rules(obj: dict, namespaced: bool) -> list[dict[str, str]]:
    causes: list[dict[str, str]] = []
    rules = obj.get("rules")
    if rules is None:
        return causes  # an empty Role is valid: it grants nothing
    if not isinstance(rules, list):
        return [_cause("FieldValueInvalid", "rules", f"Invalid value: {_shown(rules)}: must be a list")]
    for i, raw in enumerate(rules):
        path = f"rules[{i}]"
        if not isinstance(raw, dict):
            causes.append(
                _cause("FieldValueInvalid", path, f"Invalid value: {_shown(raw)}: must be an object")
            )
            continue
        for key in ("verbs", "apiGroups", "resources", "resourceNames", "nonResourceURLs"):
            value = raw.get(key)
            if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
                causes.append(
                    _cause(
                        "FieldValueInvalid",
                        f"{path}.{key}",
                        f"Invalid value: {_shown(value)}: must be a list of strings",
                    )
                )
        if causes:
            continue
        rule = Rule.from_dict(raw)
        if not rule.verbs:
            causes.append(
                _cause(
                    "FieldValueRequired",
                    f"{path}.verbs",
                    "Required value: verbs must contain at least one value",
                )
            )
        if rule.non_resource_urls:
            urls = json.dumps(list(rule.non_resource_urls))
            if namespaced:
                causes.append(
                    _cause(
                        "FieldValueInvalid",
                        f"{path}.nonResourceURLs",
                        f"Invalid value: {urls}: namespaced rules cannot apply to non-resource URLs",
                    )
                )
            if rule.api_groups or rule.resources or rule.resource_names:
                causes.append(
                    _cause(
                        "FieldValueInvalid",
                        f"{path}.nonResourceURLs",
                        f"Invalid value: {urls}: "
                        "rules cannot apply to both regular resources and non-resource URLs",
                    )
                )
            continue
        if not rule.api_groups:
            causes.append(
                _cause(
                    "FieldValueRequired",
                    f"{path}.apiGroups",
                    "Required value: resource rules must supply at least one api group",
                )
            )
        if not rule.resources:
            causes.append(
                _cause(
                    "FieldValueRequired",
                    f"{path}.resources",
                    "Required value: resource rules must supply at least one resource",
                )
            )
    return causes


def validate_binding(obj: dict, namespaced: bool, old: dict | None) -> list[dict[str, str]]:
    causes: list[dict[str, str]] = []
    ref = obj.get("roleRef")
    if not isinstance(ref, dict):
        ref = {}
    if ref.get("apiGroup") != GROUP:
        causes.append(
            _cause(
                "FieldValueNotSupported",
                "roleRef.apiGroup",
                f'Unsupported value: {_shown(ref.get("apiGroup", ""))}: supported values: "{GROUP}"',
            )
        )
    kinds = ROLE_KINDS if namespaced else ("ClusterRole",)
    if ref.get("kind") not in kinds:
        supported = ", ".join(f'"{k}"' for k in kinds)
        causes.append(
            _cause(
                "FieldValueNotSupported",
                "roleRef.kind",
                f"Unsupported value: {_shown(ref.get('kind', ''))}: supported values: {supported}",
            )
        )
    if not ref.get("name"):
        causes.append(_cause("FieldValueRequired", "roleRef.name", "Required value"))
    if old is not None and old.get("roleRef") != obj.get("roleRef"):
        shown = (
            f'rbac.RoleRef{{APIGroup:"{ref.get("apiGroup", "")}", Kind:"{ref.get("kind", "")}", '
            f'Name:"{ref.get("name", "")}"}}'
        )
        causes.append(
            _cause("FieldValueInvalid", "roleRef", f"Invalid value: {shown}: cannot change roleRef")
        )
    subjects = obj.get("subjects") or []
    if not isinstance(subjects, list):
        return [*causes, _cause("FieldValueInvalid", "subjects", "Invalid value: must be a list")]
    for i, subject in enumerate(subjects):
        path = f"subjects[{i}]"
        if not isinstance(subject, dict):
            causes.append(_cause("FieldValueInvalid", path, "Invalid value: must be an object"))
            continue
        if not subject.get("name"):
            causes.append(_cause("FieldValueRequired", f"{path}.name", "Required value"))
        kind = subject.get("kind")
        if kind == "ServiceAccount":
            if subject.get("apiGroup"):
                causes.append(
                    _cause(
                        "FieldValueNotSupported",
                        f"{path}.apiGroup",
                        f'Unsupported value: {_shown(subject["apiGroup"])}: supported values: ""',
                    )
                )
            if not namespaced and not subject.get("namespace"):
                causes.append(_cause("FieldValueRequired", f"{path}.namespace", "Required value"))
        elif kind in ("User", "Group"):
            if subject.get("apiGroup") != GROUP:
                causes.append(
                    _cause(
                        "FieldValueNotSupported",
                        f"{path}.apiGroup",
                        f"Unsupported value: {_shown(subject.get('apiGroup', ''))}: "
                        f'supported values: "{GROUP}"',
                    )
                )
        else:
            causes.append(
                _cause(
                    "FieldValueNotSupported",
                    f"{path}.kind",
                    f"Unsupported value: {_shown(kind or '')}: supported values: "
                    '"ServiceAccount", "User", "Group"',
                )
            )
    return causes


# --- escalation (registry/rbac/validation/policy_comparator.go, rule.go) -------------------------------
def breakdown(rule: Rule) -> list[Rule]:
    out: list[Rule] = []
    for group in rule.api_groups:
        for resource in rule.resources:
            for verb in rule.verbs:
                if rule.resource_names:
                    out += [Rule((verb,), (group,), (resource,), (n,)) for n in rule.resource_names]
                else:
                    out.append(Rule((verb,), (group,), (resource,)))
    for url in rule.non_resource_urls:
        out += [Rule((verb,), non_resource_urls=(url,)) for verb in rule.verbs]
    return out


def _resource_covers_all(owned: tuple[str, ...], requested: tuple[str, ...]) -> bool:
    if ALL in owned:
        return True
    for res in requested:
        if res in owned:
            continue
        # `*/status` owns the status subresource of every resource
        if "/" in res and f"*/{res.split('/', 1)[1]}" in owned:
            continue
        return False
    return True


def _url_covers(owner: str, sub: str) -> bool:
    return owner == sub or (owner.endswith("*") and sub.startswith(owner.rstrip("*")))


def rule_covers(owner: Rule, sub: Rule) -> bool:
    verbs = ALL in owner.verbs or set(sub.verbs) <= set(owner.verbs)
    groups = ALL in owner.api_groups or set(sub.api_groups) <= set(owner.api_groups)
    resources = _resource_covers_all(owner.resources, sub.resources)
    urls = all(any(_url_covers(o, s) for o in owner.non_resource_urls) for s in sub.non_resource_urls)
    if not sub.resource_names:
        names = not owner.resource_names
    else:
        names = not owner.resource_names or set(sub.resource_names) <= set(owner.resource_names)
    return verbs and groups and resources and names and urls


def missing_rules(owned: list[Rule], wanted: list[Rule]) -> list[Rule]:
    missing: list[Rule] = []
    for rule in wanted:
        missing += [sub for sub in breakdown(rule) if not any(rule_covers(o, sub) for o in owned)]
    return missing


def compact(rules: list[Rule]) -> list[Rule]:
    """CompactRules: one rule per simple (group, resource, name) with the verbs of all of them."""
    simple: dict[tuple[str, str, str], Rule] = {}
    out: list[Rule] = []
    for r in rules:
        if (
            len(r.resource_names) <= 1
            and not r.non_resource_urls
            and len(r.api_groups) == len(r.resources) == 1
        ):
            key = (r.api_groups[0], r.resources[0], r.resource_names[0] if r.resource_names else "\0")
            if key in simple:
                have = simple[key]
                simple[key] = Rule(have.verbs + r.verbs, have.api_groups, have.resources, have.resource_names)
            else:
                simple[key] = r
        else:
            out.append(r)
    return out + list(simple.values())


def escalation_message(user: UserInfo, missing: list[Rule], errors: list[Exception]) -> str:
    lines = sorted({r.compact() for r in compact(missing)})
    msg = (
        f'user "{user.name}" (groups={go_quote_list(user.groups)}) is attempting to grant RBAC permissions '
        "not currently held:\n" + "\n".join(lines)
    )
    if errors:
        # RulesFor returns one aggregate error, printed inside a Go []error
        text = str(errors[0]) if len(errors) == 1 else "[" + ", ".join(str(e) for e in errors) + "]"
        msg += f"; resolution errors: [{text}]"
    return msg


# --- the admission hooks -------------------------------------------------------------------------------
def _only_gc_fields_changed(obj: dict, old: dict | None) -> bool:
    """IsOnlyMutatingGCFields: finalizers/ownerReferences edits never need the grantor's rights."""
    if old is None:
        return False

    def strip(o: dict) -> dict:
        meta = {
            k: v
            for k, v in (o.get("metadata") or {}).items()
            if k not in ("ownerReferences", "finalizers", "resourceVersion", "managedFields", "generation")
        }
        return {**o, "metadata": meta}

    return strip(obj) == strip(old)


def install_rbac_admission(emulator: Any) -> None:
    from vmbmc_devcluster.emulator.access import CURRENT_USER

    security = emulator.security

    def hook_for(plural: str) -> Callable[[dict, dict | None], dict]:
        rt = emulator.registry.get(GROUP, "v1", plural)
        is_binding = plural.endswith("bindings")

        def admit(obj: dict, old: dict | None) -> dict:
            name = obj["metadata"].get("name", "")
            namespace = obj["metadata"].get("namespace", "") if rt.namespaced else ""
            if is_binding:
                causes = validate_binding(obj, rt.namespaced, old)
            else:
                causes = validate_rules(obj, rt.namespaced)
            if causes:
                raise invalid(rt, name, causes)
            user = CURRENT_USER.get()
            if not security.rbac_enabled or user is None or user.privileged:
                return obj
            if _only_gc_fields_changed(obj, old):
                return obj
            if is_binding:
                _check_bind(security, user, rt, obj, namespace)
            else:
                _check_escalate(security, user, rt, obj, namespace, "" if old is None else name)
            return obj

        return admit

    for plural in ("roles", "clusterroles", "rolebindings", "clusterrolebindings"):
        rt = emulator.registry.get(GROUP, "v1", plural)
        emulator.store.admission_hooks.setdefault(rt.key, []).append(hook_for(plural))


def _forbidden(rt: Any, name: str, message: str) -> ApiError:
    return ApiError(
        403,
        "Forbidden",
        f'{rt.plural}.{GROUP} "{name}" is forbidden: {message}',
        details={"name": name, "group": GROUP, "kind": rt.plural},
    )


def _check_escalate(security: Any, user: UserInfo, rt: Any, obj: dict, namespace: str, req_name: str) -> None:
    attrs = Attributes(
        verb="escalate",
        resource_request=True,
        api_group=GROUP,
        api_version="*",
        namespace=namespace,
        resource=rt.plural,
        name=req_name,
    )
    if security.authorize(user, attrs).allowed:
        return
    owned, errors = security.rules.rules_for(user, namespace)
    wanted = rules_of(obj)
    if obj.get("aggregationRule") and not rt.namespaced:
        wanted = security.rules.cluster_role_rules(obj)
    missing = missing_rules(owned, wanted)
    if missing:
        raise _forbidden(rt, obj["metadata"]["name"], escalation_message(user, missing, errors))


def _check_bind(security: Any, user: UserInfo, rt: Any, obj: dict, namespace: str) -> None:
    ref = obj.get("roleRef") or {}
    attrs = Attributes(
        verb="bind",
        resource_request=True,
        api_group=str(ref.get("apiGroup", "")),
        namespace=namespace,
        resource="clusterroles" if ref.get("kind") == "ClusterRole" else "roles",
        name=str(ref.get("name", "")),
    )
    if security.authorize(user, attrs).allowed:
        return
    name = obj["metadata"]["name"]
    try:
        wanted = security.rules.role_ref_rules(ref, namespace)
    except LookupError as err:
        raise _forbidden(rt, name, str(err)) from None
    owned, errors = security.rules.rules_for(user, namespace)
    missing = missing_rules(owned, wanted)
    if missing:
        raise _forbidden(rt, name, escalation_message(user, missing, errors))
