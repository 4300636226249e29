"""RBAC as kube-apiserver evaluates it (plugin/pkg/auth/authorizer/rbac and registry/rbac/validation).

Roles and bindings are ordinary stored objects; every decision reads them from the store, so a
change is effective at the next request, as with upstream's informers (minus their lag).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from vmbmc_devcluster.emulator.authn import UserInfo, split_service_account_username
from vmbmc_devcluster.emulator.requestinfo import Attributes

GROUP = "rbac.authorization.k8s.io"
ALL = "*"


@dataclass(frozen=True)
class Rule:
    verbs: tuple[str, ...] = ()
    api_groups: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    resource_names: tuple[str, ...] = ()
    non_resource_urls: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, raw: Any) -> Rule:
        """Tolerant of junk (stored objects were validated; never raise while deciding)."""
        if not isinstance(raw, dict):
            return cls()

        def strings(key: str) -> tuple[str, ...]:
            value = raw.get(key) or ()
            return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()

        return cls(
            strings("verbs"),
            strings("apiGroups"),
            strings("resources"),
            strings("resourceNames"),
            strings("nonResourceURLs"),
        )

    def to_dict(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {"verbs": list(self.verbs)}
        for key, value in (
            ("apiGroups", self.api_groups),
            ("resources", self.resources),
            ("resourceNames", self.resource_names),
            ("nonResourceURLs", self.non_resource_urls),
        ):
            if value:
                out[key] = list(value)
        return out

    def compact(self) -> str:
        """rbacv1helpers.CompactString, used in escalation messages."""
        parts = []
        for label, value in (
            ("APIGroups", self.api_groups),
            ("Resources", self.resources),
            ("NonResourceURLs", self.non_resource_urls),
            ("ResourceNames", self.resource_names),
            ("Verbs", self.verbs),
        ):
            if value:
                parts.append(f"{label}:{go_quote_list(value)}")
        return "{" + ", ".join(parts) + "}"


def go_quote_list(values: Iterable[str]) -> str:
    """Go's `%q` of a []string: ["a" "b"]."""
    return "[" + " ".join(_go_quote(v) for v in values) + "]"


def _go_quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def rules_of(obj: dict | None) -> list[Rule]:
    rules = (obj or {}).get("rules") or []
    return [Rule.from_dict(r) for r in rules] if isinstance(rules, list) else []


# --- matching (rbac.go RuleAllows and rbacv1helpers) -----------------------------------------------
def verb_matches(rule: Rule, verb: str) -> bool:
    return ALL in rule.verbs or verb in rule.verbs


def api_group_matches(rule: Rule, group: str) -> bool:
    return ALL in rule.api_groups or group in rule.api_groups


def resource_matches(rule: Rule, combined: str, subresource: str) -> bool:
    for res in rule.resources:
        if res in (ALL, combined):
            return True
        # `*/status` matches the status subresource of every resource
        if subresource and res == f"*/{subresource}":
            return True
    return False


def resource_name_matches(rule: Rule, name: str) -> bool:
    return not rule.resource_names or name in rule.resource_names


def non_resource_url_matches(rule: Rule, path: str) -> bool:
    for url in rule.non_resource_urls:
        if url in (ALL, path):
            return True
        if url.endswith("*") and path.startswith(url.rstrip("*")):
            return True
    return False


def rule_allows(attrs: Attributes, rule: Rule) -> bool:
    if attrs.resource_request:
        return (
            verb_matches(rule, attrs.verb)
            and api_group_matches(rule, attrs.api_group)
            and resource_matches(rule, attrs.combined_resource, attrs.subresource)
            and resource_name_matches(rule, attrs.name)
        )
    return verb_matches(rule, attrs.verb) and non_resource_url_matches(rule, attrs.path)


# --- subjects and rule resolution (DefaultRuleResolver) ---------------------------------------------
def applies_to(user: UserInfo, subject: Any, namespace: str) -> bool:
    if not isinstance(subject, dict):
        return False
    kind, name = subject.get("kind"), subject.get("name")
    if kind == "User":
        return user.name == name
    if kind == "Group":
        return name in user.groups
    if kind == "ServiceAccount":
        # a RoleBinding's ServiceAccount subject defaults to the binding's namespace; a
        # ClusterRoleBinding's must name one
        sa_ns = subject.get("namespace") or namespace
        if not sa_ns:
            return False
        return split_service_account_username(user.name) == (sa_ns, name)
    return False


Visitor = Callable[[str, "Rule | None", "Exception | None"], bool]


def _describe(binding: dict, subject: dict, namespace: str) -> str:
    """The `source` in `RBAC: allowed by …` reasons (clusterRoleBindingDescriber / roleBindingDescriber)."""
    ref = binding.get("roleRef") if isinstance(binding.get("roleRef"), dict) else {}
    kind, name = subject.get("kind", ""), str(subject.get("name", ""))
    if kind == "ServiceAccount":
        who = f"{kind} {_go_quote(name + '/' + (subject.get('namespace') or namespace))}"
    else:
        who = f"{kind} {_go_quote(name)}"
    role = f"{ref.get('kind', '')} {_go_quote(str(ref.get('name', '')))}"
    if namespace:
        label = _go_quote(binding["metadata"]["name"] + "/" + namespace)
        return f"RoleBinding {label} of {role} to {who}"
    return f"ClusterRoleBinding {_go_quote(binding['metadata']['name'])} of {role} to {who}"


class RuleSource:
    """Reads Roles/ClusterRoles/bindings from the store and visits the rules that apply to a user."""

    def __init__(self, store: Any, registry: Any) -> None:
        self.store, self.registry = store, registry
        # A Role's parsed rules by (uid, resourceVersion): every request is authorized, and parsing the
        # same Role again for each would cost more than the request (hundreds of kbmc pods each watching).
        self._parsed: dict[tuple[str, str], list[Rule]] = {}

    def _rules(self, role: dict) -> list[Rule]:
        meta = role.get("metadata") or {}
        key = (str(meta.get("uid", "")), str(meta.get("resourceVersion", "")))
        rules = self._parsed.get(key)
        if rules is None:
            if len(self._parsed) > 10_000:  # old versions of changed or deleted Roles
                self._parsed.clear()
            rules = self._parsed[key] = rules_of(role)
        return list(rules)  # a caller may extend its copy (aggregation)

    def _objects(self, plural: str, namespace: str | None = None) -> Iterator[dict]:
        rt = self.registry.get(GROUP, "v1", plural)
        if rt is None:
            return iter(())
        return self.store.iter_raw(rt, namespace)

    def _get(self, plural: str, namespace: str | None, name: str) -> dict | None:
        rt = self.registry.get(GROUP, "v1", plural)
        return None if rt is None else self.store.try_get(rt, namespace, name, copy=False)  # read only

    def role_ref_rules(self, role_ref: Any, binding_namespace: str) -> list[Rule]:
        """GetRoleReferenceRules; raises LookupError with upstream's message when it cannot."""
        if not isinstance(role_ref, dict):
            raise LookupError('unsupported role reference kind: ""')
        kind, name = role_ref.get("kind", ""), str(role_ref.get("name", ""))
        if kind == "Role":
            role = self._get("roles", binding_namespace, name)
            if role is None:
                raise LookupError(f'role.{GROUP} "{name}" not found')
            return self._rules(role)
        if kind == "ClusterRole":
            role = self._get("clusterroles", None, name)
            if role is None:
                raise LookupError(f'clusterrole.{GROUP} "{name}" not found')
            return self.cluster_role_rules(role)
        raise LookupError(f"unsupported role reference kind: {_go_quote(str(kind))}")

    def cluster_role_rules(self, role: dict) -> list[Rule]:
        """A ClusterRole's rules; with an aggregationRule, also those of the ClusterRoles it selects
        (upstream's aggregation controller writes them into `rules`; we resolve them at read time)."""
        rules = self._rules(role)
        aggregation = role.get("aggregationRule")
        if isinstance(aggregation, dict):
            selectors = aggregation.get("clusterRoleSelectors") or []
            matchers = [_selector_matcher(s) for s in selectors if isinstance(s, dict)]
            for other in self._objects("clusterroles"):
                if other["metadata"]["name"] == role["metadata"]["name"] or other.get("aggregationRule"):
                    continue
                if any(m(other) for m in matchers):
                    rules.extend(r for r in self._rules(other) if r not in rules)
        return rules

    def visit(self, user: UserInfo, namespace: str, visitor: Visitor) -> None:
        """Call visitor(source, rule, None) for each applicable rule and visitor(source, None, err) for
        each resolution error, ClusterRoleBindings first, then the RoleBindings of `namespace`, until
        the visitor returns False (VisitRulesFor)."""
        bindings: list[tuple[dict, str]] = [(b, "") for b in self._objects("clusterrolebindings")]
        if namespace:
            bindings += [(b, namespace) for b in self._objects("rolebindings", namespace)]
        for binding, ns in bindings:
            subject = next((s for s in binding.get("subjects") or [] if applies_to(user, s, ns)), None)
            if subject is None:
                continue
            source = _describe(binding, subject, ns)
            try:
                rules = self.role_ref_rules(binding.get("roleRef"), ns)
            except LookupError as err:
                if not visitor(source, None, err):
                    return
                continue
            for rule in rules:
                if not visitor(source, rule, None):
                    return

    def rules_for(self, user: UserInfo, namespace: str) -> tuple[list[Rule], list[Exception]]:
        rules: list[Rule] = []
        errors: list[Exception] = []

        def collect(_source: str, rule: Rule | None, err: Exception | None) -> bool:
            if rule is not None:
                rules.append(rule)
            if err is not None:
                errors.append(err)
            return True

        self.visit(user, namespace, collect)
        return rules, errors


def _selector_matcher(selector: dict) -> Callable[[dict], bool]:
    """A metav1.LabelSelector as a matcher; an empty or unparsable one selects nothing."""
    from vmbmc_devcluster.emulator.errors import ApiError
    from vmbmc_devcluster.emulator.selectors import label_matcher

    labels = selector.get("matchLabels") or {}
    terms = [f"{k}={v}" for k, v in labels.items()] if isinstance(labels, dict) else []
    for expr in selector.get("matchExpressions") or []:
        if not isinstance(expr, dict):
            continue
        op, key, values = expr.get("operator"), expr.get("key"), expr.get("values") or []
        if op == "In":
            terms.append(f"{key} in ({','.join(map(str, values))})")
        elif op == "NotIn":
            terms.append(f"{key} notin ({','.join(map(str, values))})")
        elif op == "Exists":
            terms.append(str(key))
        elif op == "DoesNotExist":
            terms.append(f"!{key}")
    if not terms:
        return lambda _obj: False
    try:
        return label_matcher(",".join(terms))
    except ApiError:
        return lambda _obj: False


# --- the authorizer -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""


class RBACAuthorizer:
    def __init__(self, rules: RuleSource) -> None:
        self.rules = rules

    def authorize(self, user: UserInfo, attrs: Attributes) -> Decision:
        allowed_by = ""
        errors: list[Exception] = []

        def visit(source: str, rule: Rule | None, err: Exception | None) -> bool:
            nonlocal allowed_by
            if err is not None:
                errors.append(err)
                return True
            if rule is not None and rule_allows(attrs, rule):
                allowed_by = source
                return False
            return True

        self.rules.visit(user, attrs.namespace, visit)
        if allowed_by:
            return Decision(True, f"RBAC: allowed by {allowed_by}")
        reason = ""
        if errors:
            # utilerrors.NewAggregate: one error prints bare, several as [a, b]
            text = str(errors[0]) if len(errors) == 1 else "[" + ", ".join(str(e) for e in errors) + "]"
            reason = f"RBAC: {text}"
        return Decision(False, reason)


class AlwaysAllow:
    def authorize(self, user: UserInfo, attrs: Attributes) -> Decision:
        return Decision(True)


Authorizer = RBACAuthorizer | AlwaysAllow


def forbidden_message(user: UserInfo, attrs: Attributes, reason: str = "") -> str:
    """The message of kube-apiserver's 403 (responsewriters.Forbidden + apierrors.NewForbidden)."""
    if not attrs.resource_request:
        msg = f"User {_go_quote(user.name)} cannot {attrs.verb} path {_go_quote(attrs.path)}"
    elif attrs.namespace:
        msg = (
            f"User {_go_quote(user.name)} cannot {attrs.verb} resource {_go_quote(attrs.combined_resource)} "
            f"in API group {_go_quote(attrs.api_group)} in the namespace {_go_quote(attrs.namespace)}"
        )
    else:
        msg = (
            f"User {_go_quote(user.name)} cannot {attrs.verb} resource {_go_quote(attrs.combined_resource)} "
            f"in API group {_go_quote(attrs.api_group)} at the cluster scope"
        )
    if reason:
        msg = f"{msg}: {reason}"
    return forbidden_prefix(attrs) + msg


def forbidden_prefix(attrs: Attributes) -> str:
    """`pods "x" is forbidden: `, `virtualmachines.kubevirt.io is forbidden: `, or `forbidden: `."""
    if not attrs.resource_request or not attrs.resource:
        return "forbidden: "
    qualified = attrs.resource if not attrs.api_group else f"{attrs.resource}.{attrs.api_group}"
    if attrs.name:
        return f"{qualified} {_go_quote(attrs.name)} is forbidden: "
    return f"{qualified} is forbidden: "


def forbidden_details(attrs: Attributes) -> dict[str, str]:
    details: dict[str, str] = {}
    if attrs.name:
        details["name"] = attrs.name
    if attrs.api_group:
        details["group"] = attrs.api_group
    if attrs.resource:
        details["kind"] = attrs.resource
    return details
